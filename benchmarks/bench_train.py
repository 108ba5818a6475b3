"""End-to-end training throughput: one full training epoch of the DEEP R LSTM and LSNN against the
dense model of the same size, on the synthetic TIMIT-like corpus, same data, batch and run.

For every corpus size (``small``, ``medium``), model (``lstm``: 200 units; ``lsnn``: 300 LIF + 100
ALIF, the ``conf/model`` defaults) and training (DEEP R at 1 % and 10 %, ``rewiring.algorithm=dense``)
one epoch runs in a fresh child process (so its peak memory is its own) through the trainer's own
epoch loop (`spiking_deepr.train._train_epoch`: forward, loss, backward, optimizer and rewiring
steps). Configurations alternate inside each repetition (every one sees the same machine load).

Reported per epoch: wall and process CPU seconds, labelled frames per second, the speed-up of the
DEEP R epoch over the dense epoch of the same size/model/repetition (paired; median and range over
``--repeat``), peak resident memory of the child process (and what it held before the epoch),
and the split of the epoch into data (dataset item access + batch collation) and compute (the
rest). Building the task — corpus generation on the first use, MFCC feature extraction and caching,
loading a cached corpus — is timed once per size in the parent (``task_build_s``, cold and warm).

    python benchmarks/bench_train.py [--sizes small medium] [--repeat 1] [--threads 1]

Writes ``benchmarks/results/bench_train.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from spiking_deepr.checkpoint import dumps_strict  # stdlib only: imports no torch

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
TRAININGS = (("deepr", 0.01), ("deepr", 0.1), ("dense", 1.0))
MODELS = ("lstm", "lsnn")


def _overrides(size: str, model: str, algorithm: str, connectivity: float, threads: int, batch_size: int):
    return ["task=synthetic_timit", f"task.size={size}", f"model={model}", f"rewiring.algorithm={algorithm}",
            f"rewiring.connectivity={connectivity}", f"train.threads={threads}", "train.progress=false",
            "train.epochs=1", f"train.batch_size={batch_size}"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TimedDataset:
    """Wraps a dataset; adds the seconds spent in item access to ``clock["data"]``."""

    def __init__(self, dataset, clock):
        self.dataset, self.clock = dataset, clock

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # lengths etc. of the wrapped dataset
        return getattr(self.dataset, name)

    def __getitem__(self, i):
        t0 = time.perf_counter()
        item = self.dataset[i]
        self.clock["data"] += time.perf_counter() - t0
        return item


def run_epoch(size: str, model_name: str, algorithm: str, connectivity: float, threads: int,
              batch_size: int) -> dict:
    """One training epoch (in this process); returns its measurements."""
    warnings.filterwarnings("ignore")
    import torch

    from spiking_deepr import train as tr
    from spiking_deepr.config import load_config

    cfg = load_config(_overrides(size, model_name, algorithm, connectivity, threads, batch_size))
    torch.set_num_threads(threads)
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    t0 = time.perf_counter()
    task = tr.build_run_task(cfg)
    task_s = time.perf_counter() - t0
    model = tr.build_model(cfg, task)
    opts = tr.build_optimizers(cfg, model)
    budget = tr.Budget.of(cfg, task)
    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold, dtype=torch.long)
    frames = sum(int((task.train[i][1] >= 0).sum()) for i in range(len(task.train)))
    clock = {"data": 0.0}
    task.train = _TimedDataset(task.train, clock)
    collate = tr.collate_time_major

    def timed_collate(items):
        c0 = time.perf_counter()
        out = collate(items)
        clock["data"] += time.perf_counter() - c0
        return out

    tr.collate_time_major = timed_collate
    rss_before = _rss_mb()
    w0, c0 = time.perf_counter(), time.process_time()
    stats, _ = tr._train_epoch(cfg, task, model, opts, 0, 0, budget, fold, tr.Distributed())
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    active = sum(m.nnz for m in model.sparse_matrices().values())
    possible = sum(m.statistics()["possible"] for m in model.sparse_matrices().values())
    return dict(size=size, model=model_name, algorithm=algorithm, connectivity=connectivity, threads=threads,
                batch_size=batch_size, utterances=len(task.train), frames=frames, batches=stats["batches"],
                epoch_s=wall, epoch_cpu_s=cpu, frames_per_s=frames / wall, data_s=clock["data"],
                compute_s=wall - clock["data"], task_load_s=task_s, peak_rss_mb=_rss_mb(),
                rss_before_epoch_mb=rss_before, active_connections=active, possible_connections=possible,
                train_loss=stats["train_loss"])


def _child(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", dumps_strict(spec)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=os.getcwd())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _build_task_timed(size: str) -> float:
    """Seconds to build the task of ``size`` in a fresh process (generation + features on first use)."""
    code = ("import time, warnings; warnings.filterwarnings('ignore'); from spiking_deepr.config import load_config; "
            "from spiking_deepr.train import build_run_task; t=time.perf_counter(); "
            f"build_run_task(load_config({_overrides(size, 'lstm', 'deepr', 0.01, 1, 32)!r})); "
            "print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["small", "medium"])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(dumps_strict(run_epoch(**json.loads(args.child))))
        return None

    rows, tasks = [], {}
    for size in args.sizes:
        tasks[size] = {"first_build_s": _build_task_timed(size), "cached_build_s": _build_task_timed(size)}
        print(f"task {size}: {tasks[size]}", flush=True)
        for rep in range(args.repeat):
            for model in args.models:
                for algorithm, conn in TRAININGS:
                    spec = dict(size=size, model_name=model, algorithm=algorithm, connectivity=conn,
                                threads=args.threads, batch_size=args.batch_size)
                    r = _child(spec)
                    r["repeat"] = rep
                    rows.append(r)
                    print(f"{size} {model} {algorithm} {conn:g}: {r['epoch_s']:.1f} s, "
                          f"{r['frames_per_s']:.0f} frames/s, data {r['data_s']:.2f} s", flush=True)
    summary = []
    for size in args.sizes:
        for model in args.models:
            for algorithm, conn in TRAININGS:
                mine = [r for r in rows if (r["size"], r["model"], r["algorithm"], r["connectivity"]) ==
                        (size, model, algorithm, conn)]
                dense = {r["repeat"]: r for r in rows if (r["size"], r["model"], r["algorithm"]) ==
                         (size, model, "dense")}
                ratios = [dense[r["repeat"]]["epoch_s"] / r["epoch_s"] for r in mine]
                summary.append(dict(
                    size=size, model=model, algorithm=algorithm, connectivity=conn,
                    epoch_s=statistics.median(r["epoch_s"] for r in mine),
                    frames_per_s=statistics.median(r["frames_per_s"] for r in mine),
                    speedup_vs_dense=statistics.median(ratios), speedup_min=min(ratios), speedup_max=max(ratios),
                    data_s=statistics.median(r["data_s"] for r in mine),
                    peak_rss_mb=max(r["peak_rss_mb"] for r in mine),
                    rss_before_epoch_mb=max(r["rss_before_epoch_mb"] for r in mine),
                    frames=mine[0]["frames"], utterances=mine[0]["utterances"],
                    active_connections=mine[0]["active_connections"]))
    import torch

    meta = dict(torch=torch.__version__, cpu_count=os.cpu_count(), machine=platform.processor() or platform.machine(),
                threads=args.threads, batch_size=args.batch_size, repeat=args.repeat, task_build=tasks,
                load_average=os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(dumps_strict(dict(meta=meta, summary=summary, runs=rows), indent=2))
    tmp.replace(args.out)
    print(f"\n{meta}\n")
    print("| corpus | model | training | active connections | epoch (s) | frames/s | speed-up vs dense (range) | "
          "data (s) | peak memory (MB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for s in summary:
        training = "dense" if s["algorithm"] == "dense" else f"DEEP R {100 * s['connectivity']:g} %"
        print(f"| {s['size']} ({s['utterances']} utt., {s['frames']} frames) | {s['model']} | {training} | "
              f"{s['active_connections']} | {s['epoch_s']:.1f} | {s['frames_per_s']:.0f} | "
              f"{s['speedup_vs_dense']:.1f}x ({s['speedup_min']:.1f}–{s['speedup_max']:.1f}) | {s['data_s']:.2f} | "
              f"{s['peak_rss_mb']:.0f} |")
    print(f"\nwritten to {args.out}")
    return summary


if __name__ == "__main__":
    main()
