"""benchmarks/tune_dense.py: the best variant is chosen on validation (a tie goes to the default), the gap
is taken on test, and the LSNN-only variant is skipped for the LSTM — with the sweep replaced by canned cells."""
import importlib.util
from pathlib import Path

import pytest

import spiking_deepr.sweep as sweep_module

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "tune_dense.py"


@pytest.fixture()
def tune_dense():
    spec = importlib.util.spec_from_file_location("tune_dense", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_sweep(valid_test):
    calls = []

    def fake(overrides, out, models, algorithms, connectivities, seeds):
        assert algorithms == ["dense"] and connectivities == [1.0]
        name = out.name
        calls.append(name)
        v, t = valid_test[name]
        return {"results": [{"metric": "sequence_accuracy", "n": seeds, "valid_mean": v, "valid_std": 0.0,
                             "valid_accuracies": [v] * seeds, "mean": t, "std": 0.0, "accuracies": [t] * seeds}]}
    return fake, calls


def test_choice_on_validation_gap_on_test(tune_dense, monkeypatch, tmp_path):
    cells = {"default": (0.80, 0.70), "lr_x0.3": (0.70, 0.90), "lr_x3": (0.82, 0.74), "hidden_x2": (0.81, 0.95),
             "steps_x3": (0.79, 0.60), "n_repeat_3": (0.85, 0.77)}
    fake, calls = _fake_sweep(cells)
    monkeypatch.setattr(sweep_module, "sweep", fake)
    lstm = tune_dense.tune("PLAID", "lstm", 3, tmp_path)
    assert "n_repeat_3" not in calls and lstm["best_on_validation"] == "lr x3"   # not the best test (hidden x2)
    assert lstm["gap_points"] == pytest.approx(4.0)
    lsnn = tune_dense.tune("PLAID", "lsnn", 3, tmp_path)
    assert lsnn["best_on_validation"] == "n_repeat=3" and lsnn["gap_points"] == pytest.approx(7.0)
    assert "| PLAID | lsnn | **n_repeat=3** | 0.850 ± 0.000 | 0.770 ± 0.000 | 3 |" in tune_dense.markdown([lsnn])


def test_a_tie_on_validation_goes_to_the_default(tune_dense, monkeypatch, tmp_path):
    fake, _ = _fake_sweep({n: (1.0, t) for n, t in [("default", 0.9), ("lr_x0.3", 0.95), ("lr_x3", 0.8),
                                                      ("hidden_x2", 0.99), ("steps_x3", 0.7)]})
    monkeypatch.setattr(sweep_module, "sweep", fake)
    result = tune_dense.tune("GunPoint", "lstm", 2, tmp_path)
    assert result["best_on_validation"] == "default" and result["gap_points"] == 0.0
