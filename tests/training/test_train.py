"""Training runs: run directory contents, resume equals an uninterrupted run, checkpoints, CLI, npz data."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spiking_deepr.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spiking_deepr.cli import main as sdr
from spiking_deepr.config import ALGORITHMS, load_config
from spiking_deepr import train as train_module
from spiking_deepr.train import build_model, train
from tasks.base import build_task

from .stocks import write_stocks_npz

REAL_EVALUATE_RUN = train_module.evaluate_run

QUICK = ["task=smoke", "task.size=tiny", "model=lif", "model.hidden=[24]", "train.batch_size=32",
         "train.max_batches_per_epoch=3", "train.progress=false", "rewiring.temperature=1e-4"]


def _metrics(run_dir: Path):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("wall_s", None)
    return rows


def test_run_directory_contents(tmp_path):
    run = tmp_path / "run"
    summary = train(load_config([*QUICK, "train.epochs=2", f"run.dir={run}"]))
    for name in ("config.yaml", "checkpoint.pt", "best.pt", "metrics.jsonl", "summary.json", "curves.png",
                 "connectivity.png"):
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert set(on_disk["test"]) >= {"frame_accuracy", "sequence_accuracy", "loss"}
    assert on_disk["test"]["sequence_accuracy"] is None  # frame-labelled task
    assert on_disk["epochs"] == 2 and on_disk["wall_s"] > 0
    for layer in on_disk["layers"]:
        assert set(layer) >= {"name", "active", "possible", "connectivity", "max_fan_in", "fan_in_cap"}
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "valid_frame_accuracy", "connectivity", "rewired"} <= set(rows[0])
    # DEEP R (global budget by default) kept the total number of connections
    assert sum(rows[0]["active"].values()) == sum(rows[1]["active"].values())
    # the rewiring diagnostic adds up: per epoch and per matrix, and the final K per matrix is the model's
    activity = on_disk["rewiring_activity"]
    per = activity["per_matrix"]
    assert activity["rewired_total"] == sum(r["rewired"] for r in rows) > 0
    assert sum(v["rewired"] for v in per.values()) == activity["rewired_total"]
    assert all(sum(r["rewired_per_matrix"].values()) == r["rewired"] for r in rows)
    # final_active: the kept weights' counts, i.e. the best epoch's (not necessarily the last one's)
    assert {name: v["final_active"] for name, v in per.items()} == rows[on_disk["best_epoch"] - 1]["active"]
    assert sum(v["final_active"] for v in per.values()) == sum(v["built_with"] for v in per.values())


class ScriptedValid:
    """Replaces the validation metric (frame accuracy) of successive validation passes by ``script``
    (and the validation loss by a constant);
    the weights a run trains are independent of what validation reports, so everything else is real."""

    def __init__(self, monkeypatch, script):
        self.script, self.calls = list(script), 0
        real = REAL_EVALUATE_RUN

        def fake(cfg, model, task, split, progress=False):
            result = real(cfg, model, task, split, progress)
            if split == "valid":  # a constant loss: patience counts the scripted metric alone
                result["frame_accuracy"], result["loss"] = self.script[self.calls], 1.0
                self.calls += 1
            return result

        monkeypatch.setattr(train_module, "evaluate_run", fake)


@pytest.mark.parametrize("sparse_lr_scale", ["none", "init"])
def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch, sparse_lr_scale):
    """Bit-exact resume, including the lr schedule position (with per-matrix lr scales too) and the
    early-stopping state: the run stops early (best epoch 1, patience 2) one epoch after the resume point."""
    full, part = tmp_path / "full", tmp_path / "part"
    base = [*QUICK, "train.epochs=5", "train.patience=2", f"optim.sparse_lr_scale={sparse_lr_scale}"]
    script = [0.5, 0.4, 0.45, 0.3, 0.2]
    ScriptedValid(monkeypatch, script)
    expected = train(load_config([*base, f"run.dir={full}"]))
    assert expected["stop_reason"] == "early_stopping" and expected["epochs"] == 3 and expected["best_epoch"] == 1
    scales = expected["sparse_lr_scale"]  # per matrix, as recorded for reading metrics.jsonl's base lr
    assert scales and all((s > 1) if sparse_lr_scale == "init" else s == 1 for s in scales.values())
    ScriptedValid(monkeypatch, script)
    train(load_config([*base, f"run.dir={part}"]), stop_after_epoch=1)
    assert len(_metrics(part)) == 2
    resumed = train(resume=part)
    assert _metrics(part) == _metrics(full)
    assert resumed["test"] == expected["test"] and resumed["valid_curve"] == expected["valid_curve"] == script[:3]
    for name in ("checkpoint.pt", "best.pt"):
        a, b = load_checkpoint(full / name), load_checkpoint(part / name)
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), (name, key)


class GuardedTestSplit(torch.utils.data.Dataset):
    """A test split that fails when read before training has finished (``ready()`` false) and counts
    full passes over it."""

    def __init__(self, inner, ready):
        self.inner, self.ready, self.passes = inner, ready, 0

    def __len__(self):
        assert self.ready(), "test split read during training"
        return len(self.inner)

    @property
    def lengths(self):
        assert self.ready(), "test split read during training"
        return self.inner.lengths

    def __getitem__(self, i):
        assert self.ready(), "test split read during training"
        self.passes += i == 0
        return self.inner[i]


def test_early_stopping_restores_best_epoch_and_reads_test_once(tmp_path, monkeypatch):
    run, reference = tmp_path / "run", tmp_path / "reference"
    base = [*QUICK, "train.epochs=8", "train.patience=3"]
    script = [0.3, 0.6, 0.5, 0.55, 0.4, 0.9, 0.9, 0.9]  # best epoch 2; stops after epoch 5
    valid = ScriptedValid(monkeypatch, script)
    guards = []
    real_build = train_module.build_task

    def guarded_build(cfg):
        task = real_build(cfg)
        task.test = GuardedTestSplit(task.test, ready=lambda: valid.calls >= 5)
        guards.append(task.test)
        return task

    monkeypatch.setattr(train_module, "build_task", guarded_build)
    summary = train(load_config([*base, f"run.dir={run}"]))
    assert summary["stop_reason"] == "early_stopping" and summary["epochs"] == 5 and valid.calls == 5
    assert summary["best_epoch"] == 2 and summary["valid_curve"] == script[:5]
    assert [r["best"] for r in _metrics(run)] == [True, True, False, False, False]
    assert guards[0].passes == 1  # the test split was evaluated exactly once, after training
    monkeypatch.setattr(train_module, "build_task", real_build)

    # independent reference: the same run stopped after its 2nd epoch holds epoch 2's weights
    ScriptedValid(monkeypatch, script)
    train(load_config([*base, f"run.dir={reference}"]), stop_after_epoch=1)
    epoch2 = load_checkpoint(reference / "checkpoint.pt")["model"]
    best = load_checkpoint(run / "best.pt")["model"]
    assert all(torch.equal(best[k], v) for k, v in epoch2.items())
    last = load_checkpoint(run / "checkpoint.pt")["model"]
    assert not all(torch.equal(last[k], v) for k, v in epoch2.items())  # training did move on
    cfg, task, model = train_module.load_run(run)  # what sdr evaluate / convert / simulate load
    assert all(torch.equal(model.state_dict()[k], v) for k, v in epoch2.items())
    test = train_module.evaluate_run(cfg, model, task, "test")
    assert summary["test"]["frame_accuracy"] == test["frame_accuracy"] and summary["test"]["loss"] == test["loss"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_runs_from_its_defaults(tmp_path, algorithm):
    base = [o for o in QUICK if not o.startswith("rewiring.")]
    summary = train(load_config([*base, "train.epochs=2", f"rewiring.algorithm={algorithm}",
                                 f"run.dir={tmp_path / algorithm}"]))
    conn = summary["connectivity"]
    assert summary["rewiring"]["algorithm"] == algorithm and None not in summary["rewiring"].values()
    assert conn["readout"]["in_budget"] is False and conn["per_matrix"]["readout"]["connectivity"] == 1.0
    assert conn["trainable_connections"] == sum(v["active"] for v in conn["per_matrix"].values())
    if algorithm in ("fixed", "dense", "magnitude_pruning"):  # nothing regrows
        assert summary["rewiring_activity"]["rewired_total"] == 0
    if algorithm == "dense":
        assert conn["requested"] == conn["measured"] == 1.0
    elif algorithm != "soft_deepr":  # exact budgets (pruning reaches it by the middle of the run)
        assert conn["requested"] == 0.1 and conn["measured"] == pytest.approx(0.1, abs=0.005)
        assert conn["per_matrix"]["layer0.w_rec"]["connectivity"] == pytest.approx(0.1, abs=0.01)


def test_magnitude_pruning_ends_within_the_step_budget(tmp_path):
    # 1,000 epochs allowed but 12 steps of 3 per epoch budgeted: the run spans 4 epochs, so pruning must
    # end after epoch 4 // 2 - 1 = 1 (not 499) and the last two epochs train at the target.
    base = [o for o in QUICK if not o.startswith("rewiring.")]
    summary = train(load_config([*base, "train.epochs=1000", "train.max_steps=12", "train.patience=1000",
                                 "rewiring.algorithm=magnitude_pruning", f"run.dir={tmp_path / 'prune'}"]))
    assert summary["budget"]["steps"] == 12 and summary["epochs"] == 4
    assert summary["rewiring"]["prune_end_epoch"] == 1
    assert summary["connectivity"]["measured"] == pytest.approx(0.1, abs=0.005)


def test_magnitude_pruning_follows_the_budget_allocation(tmp_path):
    # With the Erdos-Renyi split, pruning from dense must end at the split the other algorithms start
    # from (a model built at the target connectivity), not at 10 % in every matrix.
    base = [o for o in QUICK if not o.startswith("rewiring.")]
    cfg = load_config([*base, "train.epochs=2", "model.allocation=erdos_renyi", "rewiring.algorithm=magnitude_pruning",
                       f"run.dir={tmp_path / 'prune'}"])
    summary = train(cfg)
    built = load_config([*base, "model.allocation=erdos_renyi", "rewiring.algorithm=fixed"])
    reference = build_model(built, build_task(built.task)).sparse_matrices()
    active = {name: m["active"] for name, m in summary["connectivity"]["per_matrix"].items() if name in reference}
    assert active == {name: m.nnz for name, m in reference.items()}
    assert active["layer0.w_in"] / reference["layer0.w_in"].statistics()["possible"] > 0.12  # not the uniform 10 %


def test_soft_deepr_ends_at_the_requested_connectivity(tmp_path):
    summary = train(load_config(["task=smoke", "task.size=tiny", "model=lif", "model.hidden=[24]",
                                 "train.batch_size=4", "train.max_batches_per_epoch=10", "train.epochs=3",
                                 "train.progress=false",
                                 "rewiring.algorithm=soft_deepr", "rewiring.connectivity=0.05",
                                 f"run.dir={tmp_path / 'soft'}"]))
    conn = summary["connectivity"]
    assert conn["measured"] == pytest.approx(0.05, rel=0.1)


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    train(load_config([*QUICK, "train.epochs=1", f"run.dir={run}"]))
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(load_config([*QUICK, "train.epochs=1", f"run.dir={run}"]))


def test_checkpoints_are_atomic_and_corruption_is_reported(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"format": "spiking_deepr/1", "x": torch.ones(3)})
    assert not [p for p in tmp_path.iterdir() if p.name != "checkpoint.pt"]  # no temp file left behind
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a spiking_deepr checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_cli_train_evaluate_and_errors(tmp_path, capsys):
    run = tmp_path / "cli"
    assert sdr(["train", *QUICK, "train.epochs=1", f"run.dir={run}"]) == 0
    assert "test frame accuracy" in capsys.readouterr().out
    assert sdr(["evaluate", str(run), "--split", "valid"]) == 0
    result = json.loads((run / "eval_valid.json").read_text())
    assert result["split"] == "valid" and 0 <= result["frame_accuracy"] <= 1
    assert sdr(["train", "rewiring.connectivity=2"]) == 2
    assert "rewiring.connectivity" in capsys.readouterr().err
    assert sdr(["evaluate", str(tmp_path / "nothing")]) == 2


def test_npz_real_dataset_sequence_labels(tmp_path):
    data = write_stocks_npz(tmp_path / "stocks")
    run = tmp_path / "stocks_run"
    summary = train(load_config(["task=npz", f"task.path={data}", "model=lsnn", "model.hidden=[32]",
                                 "model.n_alif=8", "train.epochs=2", "train.progress=false", f"run.dir={run}"]))
    assert summary["task"] == "npz" and summary["monitor"] == "sequence_accuracy"
    assert 0.0 <= summary["test"]["sequence_accuracy"] <= 1.0
    assert summary["test"]["frame_accuracy"] > 0
    # the input standardisation is part of the run: later commands see the inputs training saw, even
    # if the data directory's training file changes afterwards
    stats = json.loads((run / "input_stats.json").read_text())
    trained_on = train_module.build_task(load_config(["task=npz", f"task.path={data}"]).task)
    assert stats == {k: trained_on.info[k] for k in ("feature_mean", "feature_std")}
    arrays = dict(np.load(data / "train.npz"))
    np.savez(data / "train.npz", **{**arrays, "x": arrays["x"] * 10 + 3})
    _, task, _ = train_module.load_run(run)
    assert all(np.array_equal(a, b) for a, b in zip(task.test.xs, trained_on.test.xs))


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_result(tmp_path):
    """SIGKILL a real `sdr train` after its first checkpoint, resume it, compare with a clean run."""
    base = [*QUICK, "train.max_batches_per_epoch=6", "train.epochs=4"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    sdr_cmd = [sys.executable, "-m", "spiking_deepr.cli"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run([*sdr_cmd, "train", *base, f"run.dir={clean}"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*sdr_cmd, "train", *base, f"run.dir={killed}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "metrics.jsonl").exists() or \
            (killed / "metrics.jsonl").exists() and not (killed / "metrics.jsonl").read_text().strip():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_metrics(killed))
    assert 1 <= done < 4, "the kill should land mid-run"
    subprocess.run([*sdr_cmd, "train", "--resume", str(killed)], check=True, env=env, capture_output=True)
    assert _metrics(killed) == _metrics(clean)
    a = json.loads((clean / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert a["test"] == b["test"] and a["layers"] == b["layers"]


def test_epoch_clock_times_sections_without_changing_training():
    """`_train_epoch` with an EpochClock trains exactly as without one (same loss, same weights) and
    records every section, the sections together within the epoch's wall time."""
    cfg = load_config([*QUICK, "train.epochs=1"])
    results = []
    for clock in (None, train_module.EpochClock()):
        task = train_module.build_run_task(cfg)
        model = train_module.build_model(cfg, task)
        opts = train_module.build_optimizers(cfg, model)
        budget = train_module.Budget.of(cfg, task)
        t0 = time.perf_counter()
        stats, step = train_module._train_epoch(cfg, task, model, opts, 0, 0, budget, None,
                                                train_module.Distributed(), clock)
        results.append((stats, step, model.state_dict(), clock, time.perf_counter() - t0))
    (stats, step, weights, _, _), (stats_c, step_c, weights_c, clock, wall) = results
    assert stats == stats_c and step == step_c == 3
    assert all(torch.equal(weights[k], weights_c[k]) for k in weights)
    assert set(clock.seconds) == set(train_module.EpochClock.SECTIONS)
    assert all(s > 0 for s in clock.seconds.values())
    assert sum(clock.seconds.values()) <= wall
