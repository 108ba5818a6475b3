"""A run directory stays consistent: NaN/inf stops training before anything is saved, one process
per run directory, checkpoint before metrics line, stale temporaries removed, a full disk is a clear
error that keeps the previous checkpoint, every JSON file is strict."""
import errno
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

import spiking_deepr.checkpoint as checkpoint_module
import spiking_deepr.train as train_module
from spiking_deepr.checkpoint import DiskFullError, atomic_write_bytes, atomic_write_json, load_checkpoint
from spiking_deepr.cli import main as sdr
from spiking_deepr.config import load_config
from spiking_deepr.errors import TrainingDivergedError
from spiking_deepr.rundir import RunDirectoryError, RunLock
from spiking_deepr.train import train

from .test_train import QUICK, _metrics


def _strict_load(path):
    def refuse(name):
        raise ValueError(f"{path} holds the non-JSON constant {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def _all_finite(state) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


# ----------------------------------------------------------------------------------------- NaN / inf
def test_diverging_run_stops_with_one_line_and_exit_2(tmp_path, capsys):
    """The issue's command: lr=1e37 without clipping used to train NaN for every epoch and exit 0."""
    run = tmp_path / "run"
    code = sdr(["train", *QUICK, "model.readout_connectivity=1.0", "optim.lr=1e37", "optim.grad_clip=null",
                "train.epochs=3", f"run.dir={run}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "training diverged at epoch 1, step" in err and "optim.lr=1e+37" in err
    assert "no checkpoint was written" in err
    assert not (run / "checkpoint.pt").exists() and not (run / "summary.json").exists()
    assert (run / "metrics.jsonl").read_text() == ""


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config([*QUICK, "train.epochs=3", f"run.dir={run}"]), stop_after_epoch=0)
    before = (run / "checkpoint.pt").read_bytes()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["optim"].update(lr=1e37, grad_clip=None)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert sdr(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "training diverged at epoch 2" in err and f"{run / 'checkpoint.pt'} keeps epoch 1" in err
    assert (run / "checkpoint.pt").read_bytes() == before
    assert _all_finite(load_checkpoint(run / "checkpoint.pt")["model"])
    assert [r["epoch"] for r in _metrics(run)] == [1]
    assert not (run / "summary.json").exists()


def test_nan_gradient_stops_before_any_optimizer_step(tmp_path, monkeypatch):
    """A finite loss with NaN gradients must not reach DEEP R (its global budget would shift)."""
    real = train_module.masked_loss_and_counts

    def nan_gradient_loss(logits, y, fold=None):
        loss, c, n = real(logits, y, fold)
        return loss + (logits.sum() * 0).sqrt(), c, n  # value + 0, gradient 0 * inf = NaN

    steps = []
    real_step = train_module.DeepRAdam.step
    monkeypatch.setattr(train_module, "masked_loss_and_counts", nan_gradient_loss)
    monkeypatch.setattr(train_module.DeepRAdam, "step", lambda self, *a, **k: steps.append(1) or real_step(self, *a, **k))
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1: the gradient of \S+ is not finite"):
        train(load_config([*QUICK, "train.epochs=2", f"run.dir={tmp_path / 'run'}"]))
    assert steps == []


def test_weights_overflowing_on_the_last_step_are_not_checkpointed(tmp_path):
    """One step with a huge lr (the epoch's only step, so no later loss sees it): the epoch-end check
    refuses to save the weights."""
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="diverged in epoch 1: "):
        train(load_config([*QUICK, "train.max_batches_per_epoch=1", "optim.lr=1e37", "optim.grad_clip=null",
                           "model.readout_connectivity=1.0", "train.epochs=2", f"run.dir={run}"]))
    assert not (run / "checkpoint.pt").exists()


def test_json_files_are_strict(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": {"d": math.nan}})
    assert _strict_load(path) == {"a": None, "b": [None, None, 1.5], "c": {"d": None}}


# ----------------------------------------------------------------------------------------- locking
def test_second_run_on_a_locked_directory_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    with RunLock(run):
        assert sdr(["train", *QUICK, "train.epochs=1", f"run.dir={run}"]) == 2
        err = capsys.readouterr().err
        assert f"{run} is in use by another run (pid " in err and len(err.strip().splitlines()) == 1
        assert not (run / "config.yaml").exists()
    assert sdr(["train", *QUICK, "train.epochs=1", f"run.dir={run}"]) == 0  # released on exit


def test_lock_of_a_live_process_blocks_and_of_a_killed_one_does_not(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from spiking_deepr.rundir import RunLock
        RunLock({str(run)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=rf"in use by another run \(pid {holder.pid}\)"):
            RunLock(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run):  # the lock file remains, but its flock died with the process
        assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_lock_is_released_when_training_raises(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(train_module, "build_task", lambda cfg: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        train(load_config([*QUICK, f"run.dir={run}"]))
    RunLock(run).acquire().release()


# ----------------------------------------------------------------------------------------- crashes
@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "full"
    train(load_config([*QUICK, "train.epochs=2", f"run.dir={run}"]))
    return run


@pytest.mark.parametrize("damage", ["duplicated_line", "missing_line"])
def test_resume_repairs_metrics_and_removes_temporaries(tmp_path, reference_run, damage):
    """A crash between checkpoint and metrics line (either order) neither repeats nor loses an epoch."""
    run = tmp_path / "run"
    train(load_config([*QUICK, "train.epochs=2", f"run.dir={run}"]), stop_after_epoch=0)
    lines = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(lines + lines if damage == "duplicated_line" else "")
    stale = run / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(resume=run)
    assert _metrics(run) == _metrics(reference_run)
    assert not stale.exists()


def test_checkpoint_is_written_before_the_metrics_line(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_save = train_module.save_checkpoint

    def crash_on_second(path, state):
        if state["epoch"] == 1:
            raise KeyboardInterrupt("killed while writing the checkpoint")
        real_save(path, state)

    monkeypatch.setattr(train_module, "save_checkpoint", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        train(load_config([*QUICK, "train.epochs=3", f"run.dir={run}"]))
    assert [r["epoch"] for r in _metrics(run)] == [1]
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 0


def test_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"previous")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=rf"no space left on device writing {path} .*previous checkpoint.pt is kept"):
        atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.fixture
def small_filesystem(tmp_path):
    """A 2 MiB tmpfs mounted at tmp_path/fs (needs root; elsewhere the monkeypatched test above covers it)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_real_full_disk_during_training_is_one_line_and_keeps_the_checkpoint(small_filesystem, capsys):
    run = small_filesystem / "run"
    train(load_config([*QUICK, "train.epochs=3", f"run.dir={run}"]), stop_after_epoch=0)
    before = (run / "checkpoint.pt").read_bytes()
    filler = small_filesystem / "filler"
    with open(filler, "wb") as f:  # fill the file system, then free 3 pages: room for config and metrics only
        try:
            while True:
                f.write(bytes(64 * 1024))
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    os.truncate(filler, filler.stat().st_size - 3 * 4096)
    assert sdr(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"sdr train: error: no space left on device writing \S+/run/\S+ \([\d,]+ bytes\); "
                        r"the previous \S+ is kept", err), err
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob(".*.tmp"))
