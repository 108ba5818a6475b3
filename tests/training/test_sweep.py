"""`sdr sweep` reuses a cell only when the cell's saved config equals the requested one."""
import json

import pytest

from spiking_deepr.cli import main as sdr
from spiking_deepr.sweep import StaleRunError, sweep

from .test_train import QUICK

CELL = dict(models=["lif"], algorithms=["deepr"], connectivities=[0.1])


def test_sweep_reuses_only_cells_with_the_requested_config(tmp_path, capsys):
    out = tmp_path / "sweep"
    first = sweep([*QUICK, "train.epochs=1"], out, **CELL)
    summary = out / "lif_deepr_0.1" / "summary.json"
    written = summary.stat().st_mtime_ns
    again = sweep([*QUICK, "train.epochs=1", "train.progress=true"], out, **CELL)  # same run settings
    assert summary.stat().st_mtime_ns == written and again == first

    with pytest.raises(StaleRunError, match=r"lif_deepr_0.1: expected a run with the requested config, found one "
                                            r"trained with train.epochs: 1 in the run, 2 requested; pass --rerun-stale"):
        sweep([*QUICK, "train.epochs=2"], out, **CELL)
    assert json.loads(summary.read_text())["epochs"] == 1
    assert sdr(["sweep", *QUICK, "train.epochs=2", "--out", str(out), "--models", "lif", "--algorithms", "deepr",
                "--connectivity", "0.1"]) == 2
    assert "pass --rerun-stale" in capsys.readouterr().err

    sweep([*QUICK, "train.epochs=2"], out, rerun_stale=True, **CELL)
    assert json.loads(summary.read_text())["epochs"] == 2
    recorded = json.loads((out / "sweep.json").read_text())
    assert "train.epochs=2" in recorded["overrides"]


def test_sweep_seeds_mean_std_measured_connectivity(tmp_path):
    out = tmp_path / "seeds"
    result = sweep([*QUICK, "train.epochs=1"], out, models=["lif"], algorithms=["set"], connectivities=[0.1], seeds=2)
    runs = result["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and runs[0]["run_dir"] != runs[1]["run_dir"]
    summaries = [json.loads((tmp_path / r["run_dir"] / "summary.json").read_text()) for r in runs]
    assert summaries[1]["rewiring"]["algorithm"] == "set"
    accs = [s["test"]["frame_accuracy"] for s in summaries]
    vals = [s["valid"]["frame_accuracy"] for s in summaries]
    assert [r["valid_accuracy"] for r in runs] == vals  # the best epoch's validation metric, not the test one
    losses = [s["valid"]["loss"] for s in summaries]
    assert [r["git_commit"] for r in runs] == [s["provenance"]["git_commit"] for s in summaries]
    assert [r["valid_loss"] for r in runs] == losses
    (row,) = result["results"]
    assert row["mean"] == pytest.approx(sum(accs) / 2)
    assert row["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    assert row["valid_mean"] == pytest.approx(sum(vals) / 2)
    assert row["valid_std"] == pytest.approx(abs(vals[0] - vals[1]) / 2 ** 0.5)
    assert row["valid_loss_mean"] == pytest.approx(sum(losses) / 2)  # a tie-break when accuracies tie
    assert row["measured_connectivity"] == pytest.approx(summaries[0]["connectivity"]["measured"])
    assert row["trainable_connections"] == summaries[0]["connectivity"]["trainable_connections"]
    table = (out / "sweep.md").read_text()
    assert f"{row['valid_mean']:.3f} ± {row['valid_std']:.3f} | {row['mean']:.3f} ± {row['std']:.3f} | 2 |" in table and "dense readout" in table
    assert "| lif | SET | 10% | 10.03% |" in table
    assert json.loads((out / "sweep.json").read_text())["seeds"] == 2 and (out / "sweep.png").stat().st_size > 0


def test_sweep_reports_a_reused_cell_trained_on_other_code(tmp_path, capsys):
    out = tmp_path / "sweep"
    sweep([*QUICK, "train.epochs=1"], out, **CELL)
    path = out / "lif_deepr_0.1" / "summary.json"
    summary = json.loads(path.read_text())
    summary["provenance"]["numpy"] = "0.0.1"  # as if trained with another numpy
    path.write_text(json.dumps(summary))
    capsys.readouterr()
    sweep([*QUICK, "train.epochs=1"], out, **CELL)
    assert "lif_deepr_0.1: reused, trained on other code: numpy 0.0.1" in capsys.readouterr().out
