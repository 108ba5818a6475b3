"""Core-aware placement: per-core limits as a placement rule of the exact-K core, checked against the
independent core mapper of `sdr convert` (lava_backend.hardware.map_network)."""
import numpy as np
import pytest
import torch
import yaml
from pathlib import Path

from lava_backend.hardware import load_profile, map_network
from spiking_deepr.model import ModelConfig, SequenceModel
from spiking_deepr.rewiring import DeepR, DeepRAdam
from spiking_deepr.rewiring.cores import CoreBudget, allocate_cores
from spiking_deepr.sparse import SparseMatrix
from spiking_deepr.train import constrain_model_to_cores

LOIHI2 = Path(__file__).resolve().parents[2] / "conf" / "hardware" / "loihi2.yaml"


def small_cores(**kw):
    """Loihi 2's accounting with tiny cores: 16 neurons and 12 input axons each."""
    prof = yaml.safe_load(LOIHI2.read_text())
    prof.update(dict(name="small_cores", neurons_per_core=16, input_axons_per_core=12), **kw)
    return prof


def test_allocate_cores():
    assert allocate_cores([30, 4], [200, 20], 16, 3) == [2, 1]
    # spare cores go by connection budget (largest remainder), never more cores than neurons
    assert allocate_cores([30, 4], [300, 100], 16, 6) == [4, 2]
    assert allocate_cores([2, 4], [300, 100], 16, 9) == [2, 3]
    with pytest.raises(ValueError, match="below the 3 cores"):
        allocate_cores([30, 4], [1, 1], 16, 2)


def _per_core_usage(budget, mats, limits):
    """Brute force: distinct sources and synapse bits per core over all matrices."""
    axons, bits = np.zeros(budget.n_cores, int), np.zeros(budget.n_cores, int)
    for m in mats:
        rows, cols = m.rows.numpy(), m.cols.numpy()
        for c in range(budget.n_cores):
            on = budget.core_of[rows] == c
            src, k = np.unique(cols[on], return_counts=True)
            axons[c] += src.size
            bits[c] += int(sum(limits.row_bits[x] for x in k))
    return axons, bits


@pytest.mark.parametrize("global_budget", [False, True])
def test_regrowth_keeps_every_core_within_limits(global_budget):
    limits = load_profile(small_cores(synapse_bits_per_core=1600)).core_limits()
    w_in = SparseMatrix(30, 9, connectivity=0.2, seed=1)
    w_rec = SparseMatrix(30, 30, connectivity=0.2, exclude_diagonal=True, seed=2)
    budget = CoreBudget("layer0", 30, 2, limits)
    gen = torch.Generator().manual_seed(0)
    budget.place([w_in, w_rec], gen)
    other = SparseMatrix(4, 30, connectivity=0.5, seed=3)  # unconstrained, shares the global budget
    opt = DeepR([w_in, w_rec, other], lr=0.05, temperature=0.05, global_budget=global_budget, seed=0)
    total = w_in.nnz + w_rec.nnz + other.nnz
    rewired = 0
    for _ in range(40):
        for m in (w_in, w_rec, other):
            m.theta.grad = torch.randn(m.nnz)
        opt.step()
        rewired += sum(opt.last_rewired)
        axons, bits = _per_core_usage(budget, [w_in, w_rec], limits)
        assert axons.max() <= 12 and bits.max() <= 1600
        assert (np.asarray(budget.usage()[0]) == axons).all() and (budget.usage()[1] == bits).all()
        for m in (w_in, w_rec):
            m.check_invariants()
        assert w_in.nnz + w_rec.nnz + other.nnz == total
    assert rewired > 100  # the limits were exercised by real rewiring


def test_core_aware_model_maps_onto_max_cores():
    profile = small_cores()
    cfg = ModelConfig(kind="lif", hidden=[30], readout="li", connectivity=0.2, seed=0)
    free = SequenceModel(cfg, n_features=9, n_classes=4)
    assert map_network(free.to_spec(), profile)["cores"] > 3
    model = SequenceModel(cfg, n_features=9, n_classes=4)
    constrain_model_to_cores(model, profile, 3)
    opt = DeepRAdam(list(model.sparse_matrices().values()), lr=0.02, temperature=0.02,
                    global_budget=True, seed=0)
    for _ in range(15):
        for m in model.sparse_matrices().values():
            m.theta.grad = torch.randn(m.nnz)
        opt.step()
        report = map_network(model.to_spec(), profile)
        assert report["fits"] and report["cores"] <= 3


def test_budget_that_cannot_fit_is_named():
    from spiking_deepr.config import ConfigError

    model = SequenceModel(ModelConfig(kind="lif", hidden=[30], connectivity=0.9), n_features=9, n_classes=4)
    with pytest.raises(ConfigError, match="layer0: only .* connections fit its 2 core"):
        constrain_model_to_cores(model, small_cores(), 3)


def test_admit_takes_preferred_candidates_within_all_rules():
    m = SparseMatrix(4, 4, nnz=2, exclude_diagonal=True, fan_in_cap=2, seed=0)
    m.set_active(torch.tensor([1, 2]), torch.ones(2))          # row 0 holds (0,1), (0,2): at its cap
    order = torch.tensor([3, 5, 6, 6, 2, 9, 7, 8])             # (0,3) capped, (1,1) diagonal, dup, taken
    assert m.admit(order, 3).tolist() == [6, 7, 9]
    # a placement rule sees the candidates in the same order, after the other rules
    limits = load_profile(small_cores(neurons_per_core=4, input_axons_per_core=2)).core_limits()
    budget = CoreBudget("p", 4, 1, limits)
    budget.members = [m]
    m.placement = budget
    # sources 1 and 2 hold the core's two input axons: only candidates from them are admitted
    assert m.admit(order, 3).tolist() == [6, 9]


@pytest.mark.parametrize("overrides, field", [
    (["hardware.max_cores=2"], "hardware.profile"),
    (["hardware=loihi2", "hardware.max_cores=2"], "model.readout_connectivity"),     # dense readout
    (["hardware=loihi2", "hardware.max_cores=2", "model=lstm", "model.readout_connectivity=0.5"], "model.kind"),
    (["hardware=loihi2", "hardware.max_cores=0"], "hardware.max_cores"),
])
def test_core_aware_config_errors_name_the_field(overrides, field):
    from spiking_deepr.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=field):
        load_config(overrides)
