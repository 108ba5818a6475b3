"""`sdr convert` / `sdr simulate` on a run trained from user npz data, and the fan-in cap contract:
training under a profile's cap always converts for that profile; without it, conversion is refused."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from spiking_deepr.cli import main as sdr

from .stocks import write_stocks_npz

LOIHI2 = Path(__file__).resolve().parents[2] / "conf" / "hardware" / "loihi2.yaml"


def _tight_profile(tmp_path: Path, max_fan_in: int) -> Path:
    profile = yaml.safe_load(LOIHI2.read_text())
    profile.update(name="tight", max_fan_in=max_fan_in)
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.fixture(scope="module")
def stocks_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("npzrun")
    data = write_stocks_npz(tmp / "stocks")
    run = tmp / "run"
    assert sdr(["train", "task=npz", f"task.path={data}", "model=lsnn", "model.hidden=[40]", "model.n_alif=10",
                "train.epochs=1", "train.progress=false", f"run.dir={run}"]) == 0
    return run


@pytest.mark.slow
def test_convert_and_simulate_a_run_trained_on_npz_data(stocks_run):
    assert sdr(["convert", str(stocks_run), "--profile", "loihi2"]) == 0
    resources = json.loads((stocks_run / "resources.json").read_text())
    assert {"profile", "fits", "cores", "neurons", "synapses", "max_fan_in", "violations", "layers"} <= set(resources)
    assert resources["fits"] and resources["neurons"] >= 40 + 6

    assert sdr(["simulate", str(stocks_run), "--precision", "float", "--engine", "lava", "--samples", "6"]) == 0
    float_eval = json.loads((stocks_run / "lava_eval_float.json").read_text())["lava"]
    assert {"sequences", "frames", "torch_frame_accuracy", "frame_accuracy", "spike_agreement",
            "prediction_agreement", "sequence_accuracy", "steps_per_second"} <= set(float_eval)
    assert float_eval["sequences"] == 6 and float_eval["equal_to_emulator"]
    assert float_eval["spike_agreement"] >= 0.999
    assert float_eval["prediction_agreement"] >= 0.999
    # a sequence task: both sides pooled the same way (train.pooling) over the same valid frames
    assert float_eval["sequence_accuracy"] == float_eval["torch_sequence_accuracy"]
    assert float_eval["sequence_prediction_agreement"] == 1.0

    # fixed point: the emulator scores the whole test split, Lava verifies it on 5 sequences
    assert sdr(["simulate", str(stocks_run), "--precision", "fixed"]) == 0
    assert sdr(["simulate", str(stocks_run), "--precision", "fixed", "--engine", "lava", "--samples", "5"]) == 0
    fixed_eval = json.loads((stocks_run / "lava_eval.json").read_text())
    n_test = len(np.load(stocks_run.parent / "stocks" / "test.npz")["y"])
    assert fixed_eval["precision"] == "fixed"
    assert fixed_eval["calibration"]["split"] == "train"
    emu, lava = fixed_eval["emulator"], fixed_eval["lava"]
    assert emu["sequences"] == n_test and lava["sequences"] == 5
    assert lava["equal_to_emulator"]
    assert 0 <= emu["frame_accuracy"] <= 1 and 0 <= emu["sequence_accuracy"] <= 1


@pytest.mark.slow
def test_training_under_a_profile_cap_always_converts(tmp_path):
    profile = _tight_profile(tmp_path, max_fan_in=10)
    base = ["task=smoke", "task.size=tiny", "model=lif", "model.hidden=[30]", "train.epochs=1",
            "train.max_batches_per_epoch=2", "train.progress=false", "rewiring.temperature=0.01"]
    capped, free = tmp_path / "capped", tmp_path / "free"
    # each matrix capped at 10 // 2 = 5 inputs per neuron: input + recurrent <= 10
    assert sdr(["train", *base, "rewiring.connectivity=0.15", "model.readout_connectivity=0.15",
                f"hardware.profile={profile}", f"run.dir={capped}"]) == 0
    assert sdr(["convert", str(capped), "--profile", str(profile)]) == 0
    report = json.loads((capped / "resources.json").read_text())
    assert report["fits"] and report["max_fan_in"] <= 10

    # no cap and denser: ~19 inputs per neuron
    assert sdr(["train", *base, "rewiring.connectivity=0.5", f"run.dir={free}"]) == 0
    assert sdr(["convert", str(free), "--profile", str(profile)]) == 1
    report = json.loads((free / "resources.json").read_text())
    assert not report["fits"]
    fan_in = [v for v in report["violations"] if "fan" in v["what"]]
    assert fan_in and all(v["value"] > v["limit"] == 10 for v in fan_in)


@pytest.mark.slow
def test_core_aware_training_fits_the_requested_cores(tmp_path):
    profile = yaml.safe_load(LOIHI2.read_text())
    profile.update(name="small_cores", neurons_per_core=16, input_axons_per_core=12)
    path = tmp_path / "small_cores.yaml"
    path.write_text(yaml.safe_dump(profile))
    base = ["task=smoke", "task.size=tiny", "model=lif", "model.hidden=[30]", "train.epochs=1",
            "train.max_batches_per_epoch=3", "train.progress=false", "rewiring.connectivity=0.15",
            "model.readout_connectivity=0.15", "rewiring.temperature=0.01", f"hardware.profile={path}"]
    aware, free = tmp_path / "aware", tmp_path / "free"
    assert sdr(["train", *base, "hardware.max_cores=3", f"run.dir={aware}"]) == 0
    assert sdr(["convert", str(aware), "--profile", str(path)]) == 0
    report = json.loads((aware / "resources.json").read_text())
    assert report["fits"] and report["cores"] <= 3
    # the same network trained without the core constraints needs more cores
    assert sdr(["train", *base, f"run.dir={free}"]) == 0
    sdr(["convert", str(free), "--profile", str(path)])
    assert json.loads((free / "resources.json").read_text())["cores"] > 3


@pytest.mark.slow
def test_convert_an_lstm_run_reports_lstm_is_not_neuromorphic(tmp_path, capsys):
    run = tmp_path / "lstm"
    assert sdr(["train", "task=smoke", "task.size=tiny", "model=lstm", "model.hidden=[8]", "train.epochs=1",
                "train.max_batches_per_epoch=1", "train.progress=false", f"run.dir={run}"]) == 0
    assert sdr(["convert", str(run), "--profile", "loihi2"]) == 2
    out = capsys.readouterr().out
    assert "cannot run on loihi2" in out and "layer 'layer0': neuron_model: needs LSTM neurons" in out
    report = json.loads((run / "resources.json").read_text())
    assert {"layer": "layer0", "capability": "neuron_model", "needs": "lstm", "has": ["lif", "alif"]} \
        in report["capability_violations"]
    assert report["layers"][0]["neurons"] == 8


@pytest.mark.slow
def test_loihi1_compatible_config_converts_and_runs_on_binary_input_spikes(tmp_path):
    run = tmp_path / "loihi1"
    assert sdr(["train", "task=smoke", "task.size=tiny", "model=lif", "model.hidden=[20]",
                "model.input_encoding=delta", "train.epochs=1", "train.max_batches_per_epoch=2",
                "train.progress=false", "hardware=loihi1", f"run.dir={run}"]) == 0
    assert sdr(["convert", str(run), "--profile", "loihi1"]) == 0
    report = json.loads((run / "resources.json").read_text())
    assert report["fits"] and report["capability_violations"] == []
    assert not [r for r in report["requirements"] if r["capability"] == "graded_spikes"]
    cost = report["cost_per_inference"]
    assert cost["synaptic_ops_per_sample"]["effective_macs"] == 0     # binary input: accumulates only
    assert 0 < cost["ops_fraction_of_dense"] < 1 and cost["energy_per_sample_uj"] > 0
    # Lava runs the spike-encoded input (binary Sparse) exactly as PyTorch and the emulator
    for precision in ("float", "fixed"):
        assert sdr(["simulate", str(run), "--precision", precision, "--engine", "lava", "--samples", "3"]) == 0
        lava = json.loads((run / f"lava_eval_{precision}.json").read_text())["lava"]
        assert lava["equal_to_emulator"] is True
        assert "cost_per_inference" in lava
    assert lava_float_parity(run)


def lava_float_parity(run):
    lava = json.loads((run / "lava_eval_float.json").read_text())["lava"]
    return lava["spike_agreement"] == 1.0 and lava["prediction_agreement"] == 1.0
