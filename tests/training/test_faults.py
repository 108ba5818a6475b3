"""Fault injection: a real training process is killed with SIGKILL several times — at random moments,
in the middle of writing a checkpoint (half the temporary file written), and between the checkpoint
and its metrics line — and resumed each time; the final summary.json and metrics.jsonl must equal
those of an uninterrupted run.

Processes are forked from a forkserver that has already imported the project, so each start costs
milliseconds instead of seconds of imports."""
import json
import multiprocessing
import os
import random
import signal
import tempfile
import time
from pathlib import Path

import pytest

from spiking_deepr.config import load_config
from spiking_deepr.train import train

from .test_train import QUICK

RUN = [*QUICK, "train.epochs=5", "train.max_batches_per_epoch=3", "train.threads=1"]
TIMING = ("wall_s", "seconds", "time")  # fields that measure time differ between any two runs


def _train_child(run_dir: str, kill_at) -> None:
    """Train or resume ``run_dir``; with ``kill_at = (moment, file name, n)`` SIGKILL this process on
    the n-th write of that file: ``"during"`` after half of its temporary file, ``"after"`` once it is
    in place (for checkpoint.pt: before the epoch's metrics line)."""
    import spiking_deepr.checkpoint as checkpoint

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1), os.dup2(devnull, 2)
    if kill_at is not None:
        moment, name, nth = kill_at
        real_write, writes = checkpoint.atomic_write_bytes, []

        def write_then_die(path, data):
            if Path(path).name == name:
                writes.append(path)
                if len(writes) == nth and moment == "during":
                    fd, _ = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
                    os.write(fd, data[: len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
                real_write(path, data)
                if len(writes) == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
                return
            real_write(path, data)

        checkpoint.atomic_write_bytes = write_then_die
    run = Path(run_dir)
    if (run / "config.yaml").exists():
        train(resume=run)
    else:
        train(load_config([*RUN, f"run.dir={run}"]))


def _results(run: Path):
    def strip(record):
        return {k: v for k, v in record.items() if not any(t in k for t in TIMING)}
    metrics = [strip(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return strip(json.loads((run / "summary.json").read_text())), metrics


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    start = time.perf_counter()
    train(load_config([*RUN, f"run.dir={reference}"]))
    epoch_s = (time.perf_counter() - start) / 5

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["spiking_deepr.train", __name__])
    rng = random.Random(13)
    # A random kill lets at most about one epoch finish (its window includes the restart), so the
    # deterministic kills always land before the 5 epochs are done; epoch 1 always writes best.pt.
    faults = [("during", "best.pt", 1), ("time", rng.uniform(0.2, 1.0) * epoch_s), ("during", "checkpoint.pt", 1),
              ("time", rng.uniform(0.2, 1.0) * epoch_s), ("after", "checkpoint.pt", 1),
              ("time", rng.uniform(0.2, 1.0) * epoch_s)]
    kills = 0
    for fault in faults:
        proc = ctx.Process(target=_train_child, args=(str(killed), None if fault[0] == "time" else fault))
        proc.start()
        proc.join(fault[1] if fault[0] == "time" else 120)
        if proc.is_alive():
            proc.kill()
        proc.join()
        assert proc.exitcode in (0, -signal.SIGKILL), proc.exitcode
        kills += proc.exitcode == -signal.SIGKILL
        if proc.exitcode == 0:
            break
    assert kills >= 4, f"only {kills} kills landed before the run finished"
    proc = ctx.Process(target=_train_child, args=(str(killed), None))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0

    assert _results(killed) == _results(reference)
    assert not list(killed.glob(".*.tmp")), "temporary files left behind"
