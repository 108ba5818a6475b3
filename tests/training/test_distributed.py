"""Two-process data-parallel training (torchrun, gloo on CPU): connectivity stays identical on every rank."""
import json
import os
import subprocess
import sys

import pytest

from .test_train import QUICK


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_connectivity(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "spiking_deepr.cli", "train", *QUICK, "train.epochs=2", "train.threads=1",
           "rewiring.temperature=0.05", "rewiring.l1=1.0", "rewiring.global_budget=true", f"run.dir={run}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["ranks_identical"] is True  # fingerprints of every matrix's indices, all-gathered
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and sum(r["rewired"] for r in rows) > 0  # rewiring really happened
