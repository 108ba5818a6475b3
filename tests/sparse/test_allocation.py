"""Splitting one connection budget over matrices: uniform and Erdős–Rényi (SET / RigL), against
hand-computed cases, and in a model (the total K is the uniform one)."""
import pytest

from spiking_deepr.model import ModelConfig, SequenceModel
from spiking_deepr.sparse.allocation import allocate


def test_erdos_renyi_hand_computed():
    # [10, 2] (20 entries) and [10, 10] without diagonal (90 entries) at p = 0.2: K = 22.
    # scales (n_out + n_in) / (n_out n_in): 0.6 and 0.2; eps = 22 / (0.6 * 20 + 0.2 * 90) = 22 / 30
    p_in, p_rec = allocate([(10, 2, 20), (10, 10, 90)], 0.2, "erdos_renyi")
    assert p_in == pytest.approx(0.6 * 22 / 30) and p_rec == pytest.approx(0.2 * 22 / 30)
    assert p_in * 20 + p_rec * 90 == pytest.approx(22)


def test_erdos_renyi_caps_at_dense_and_resolves_the_rest():
    # [10, 1] would get eps * 1.1 > 1 (eps = 55 / 31): it is dense (10 entries), the other 45 of the
    # K = 55 go to the [10, 10] matrix: 45 / 100
    assert allocate([(10, 1, 10), (10, 10, 100)], 0.5, "erdos_renyi") == pytest.approx([1.0, 0.45])


def test_uniform_and_errors():
    assert allocate([(3, 4, 12), (5, 5, 20)], 0.3) == [0.3, 0.3]
    assert allocate([(3, 4, 12), (5, 5, 20)], 1.0, "erdos_renyi") == [1.0, 1.0]
    with pytest.raises(ValueError, match="allocation must be one of"):
        allocate([(3, 4, 12)], 0.3, "random")
    with pytest.raises(ValueError, match="allocation: splits model.connectivity over the matrices itself"):
        ModelConfig(kind="lif", hidden=[8], allocation="erdos_renyi", input_connectivity=0.5)


@pytest.mark.parametrize("kind, budget", [("lsnn", "joint"), ("lstm", "joint"), ("lstm", "per_gate")])
def test_model_keeps_the_total_budget(kind, budget):
    """Two layers, 5 input features: the input matrices get a larger share than the recurrent ones and
    the total active count is the uniform allocation's (up to rounding, one per matrix)."""
    common = dict(kind=kind, hidden=[24, 16], n_alif=4 if kind == "lsnn" else 0, connectivity=0.1,
                  dense_readout=True, lstm_budget=budget)
    report = {a: SequenceModel(ModelConfig(allocation=a, **common), 5, 3).connectivity_report()
              for a in ("uniform", "erdos_renyi")}
    total = {a: sum(r["active"] for r in rows) for a, rows in report.items()}
    assert abs(total["erdos_renyi"] - total["uniform"]) <= len(report["uniform"])
    conn = {r["name"]: r["connectivity"] for r in report["erdos_renyi"]}
    inputs = [v for k, v in conn.items() if "w_in" in k or "w_ih" in k]
    recurrent = [v for k, v in conn.items() if "w_rec" in k or "w_hh" in k]
    assert min(inputs[:1]) > 0.2 > max(recurrent)  # layer 0's 5-feature input matrix is the small one


@pytest.mark.parametrize("extra", [dict(kind="lsnn", n_alif=4, hidden=[24, 16]),
                                   dict(kind="lstm", lstm_budget="per_gate", hidden=[12]),
                                   dict(kind="lsnn", n_alif=4, hidden=[12], bidirectional=True),
                                   dict(kind="lif", hidden=[12], readout_connectivity=0.3, dense_readout=False),
                                   dict(kind="lif", hidden=[12], input_connectivity=0.5, allocation="uniform")])
def test_matrix_connectivities_is_the_split_a_model_is_built_with(extra):
    """What magnitude pruning prunes a dense model down to: every matrix's connectivity in a model
    built at that budget (up to rounding to whole connections)."""
    cfg = {"allocation": "erdos_renyi", **extra}
    dense = SequenceModel(ModelConfig(connectivity=1.0, **cfg), 5, 3)
    built = SequenceModel(ModelConfig(connectivity=0.1, **cfg), 5, 3).sparse_matrices()
    targets = dense.matrix_connectivities(0.1)
    assert targets.keys() == built.keys()
    for name, m in built.items():
        assert targets[name] == pytest.approx(m.statistics()["connectivity"], abs=1.0 / m.statistics()["possible"])
