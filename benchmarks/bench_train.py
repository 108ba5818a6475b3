"""End-to-end training throughput: one full training epoch of the DEEP R LSTM and LSNN against the
dense model of the same size, on the synthetic TIMIT-like corpus, same data, batch and run.

For every corpus size (``small``, ``medium``), network and training (DEEP R at 1 % and 10 %,
``rewiring.algorithm=dense``) one epoch runs in a fresh child process (so its peak memory is its
own) through the trainer's own epoch loop (`spiking_deepr.train._train_epoch`: forward, loss,
backward, optimizer and rewiring steps). Networks (``--networks``):

- ``lstm``, ``lsnn``: the ``conf/model`` defaults (128 LSTM units; LSNN 96 LIF + 32 ALIF);
- ``lstm-400``, ``lsnn-400``: the size of the TIMIT presets (``conf/timit_lstm.yaml``: 400 LSTM
  units; ``conf/timit_lsnn.yaml``: 300 LIF + 100 ALIF), the rest of ``conf/model`` unchanged.

Before the timed epoch each child runs one training step on a second copy of the network (built
from the same configuration): that step loads the compiled numba kernels from their cache and does
torch's first-call set-up, a cost paid once per process, not per epoch (``warmup_s``). The timed
epoch is then the epoch a training run repeats. Configurations alternate inside each repetition
(every one sees the same machine load).

Reported per epoch: wall and process CPU seconds, labelled frames per second, the speed-up of the
DEEP R epoch over the dense epoch of the same corpus/network/repetition (paired; median and range
over ``--repeat``; wall and CPU time), peak resident memory of the child process (and what it held
before the epoch), and the split of the epoch (`spiking_deepr.train.EpochClock`): data (dataset
items + batch collation), forward (model + loss), backward, optimizer (gradient checks, lr,
optimizer steps) of which rewiring (the exact-K core's removal/regrowth/index rebuild), and the
rest. Building the task — corpus generation on the first use, MFCC feature extraction and caching,
loading a cached corpus — is timed once per size in the parent (``task_build``, cold and warm).

    python benchmarks/bench_train.py [--sizes small medium] [--networks lstm lsnn lstm-400 lsnn-400]
                                     [--repeat 1] [--threads 1]

Writes ``benchmarks/results/bench_train.json`` (with the load average before and after) and prints a
Markdown table.
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
#: network name -> (conf/model group, overrides of it)
NETWORKS = {
    "lstm": ("lstm", []),
    "lsnn": ("lsnn", []),
    "lstm-400": ("lstm", ["model.hidden=[400]"]),
    "lsnn-400": ("lsnn", ["model.hidden=[400]", "model.n_alif=100"]),
}


def _overrides(size: str, network: str, algorithm: str, connectivity: float, threads: int, batch_size: int):
    group, extra = NETWORKS[network]
    return ["task=synthetic_timit", f"task.size={size}", f"model={group}", *extra, f"rewiring.algorithm={algorithm}",
            f"rewiring.connectivity={connectivity}", f"train.threads={threads}", "train.progress=false",
            "train.epochs=1", f"train.batch_size={batch_size}"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_epoch(size: str, network: str, algorithm: str, connectivity: float, threads: int, batch_size: int) -> dict:
    """One training epoch (in this process) after a one-step warm-up; returns its measurements."""
    warnings.filterwarnings("ignore")
    import numba
    import torch

    from spiking_deepr import train as tr
    from spiking_deepr.config import load_config

    cfg = load_config(_overrides(size, network, algorithm, connectivity, threads, batch_size))
    torch.set_num_threads(threads)  # as `train` sets up its process
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    tr.keep_freed_memory()
    t0 = time.perf_counter()
    task = tr.build_run_task(cfg)
    task_s = time.perf_counter() - t0
    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold, dtype=torch.long)
    budget = tr.Budget.of(cfg, task)

    def build():
        model = tr.build_model(cfg, task)
        return model, tr.build_optimizers(cfg, model)

    warm_model, warm_opts = build()  # a separate copy: the timed network starts untouched
    t0 = time.perf_counter()
    tr._train_epoch(cfg, task, warm_model, warm_opts, 0, 0, tr.Budget(1, 1, budget.schedule, budget.warmup_fraction),
                    fold, tr.Distributed())
    warmup_s = time.perf_counter() - t0
    del warm_model, warm_opts
    model, opts = build()
    frames = sum(int((task.train[i][1] >= 0).sum()) for i in range(len(task.train)))
    clock = tr.EpochClock()
    rewiring = [0.0]
    if hasattr(opts.sparse, "_rewire"):  # the exact-K core's removal + regrowth + index rebuild
        rewire = opts.sparse._rewire

        def timed_rewire(removed):
            r0 = time.perf_counter()
            rewire(removed)
            rewiring[0] += time.perf_counter() - r0

        opts.sparse._rewire = timed_rewire
    rss_before = _rss_mb()
    w0, c0 = time.perf_counter(), time.process_time()
    stats, _ = tr._train_epoch(cfg, task, model, opts, 0, 0, budget, fold, tr.Distributed(), clock)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    mats = model.sparse_matrices().values()
    split = {f"{k}_s": v for k, v in clock.seconds.items()}
    split["rewiring_s"] = rewiring[0]  # part of optimizer_s
    split["rest_s"] = wall - sum(clock.seconds.values())
    return dict(size=size, network=network, model=cfg.model.kind, hidden=list(cfg.model.hidden), algorithm=algorithm,
                connectivity=connectivity, threads=threads, batch_size=batch_size, utterances=len(task.train),
                frames=frames, batches=stats["batches"], epoch_s=wall, epoch_cpu_s=cpu, frames_per_s=frames / wall,
                **split, warmup_s=warmup_s, task_load_s=task_s, peak_rss_mb=_rss_mb(), rss_before_epoch_mb=rss_before,
                active_connections=sum(m.nnz for m in mats),
                possible_connections=sum(m.statistics()["possible"] for m in mats), train_loss=stats["train_loss"])


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


SPLIT = ("data_s", "forward_s", "backward_s", "optimizer_s", "rewiring_s", "rest_s")


def summarise(rows: list) -> list:
    """Per (size, network, training): medians over repetitions and the paired speed-ups vs dense."""
    summary = []
    keys = dict.fromkeys((r["size"], r["network"], r["algorithm"], r["connectivity"]) for r in rows)
    for size, network, algorithm, conn in keys:
        mine = [r for r in rows if (r["size"], r["network"], r["algorithm"], r["connectivity"]) ==
                (size, network, algorithm, conn)]
        dense = {r["repeat"]: r for r in rows if (r["size"], r["network"], r["algorithm"]) == (size, network, "dense")}
        paired = [r for r in mine if r["repeat"] in dense]
        ratios = [dense[r["repeat"]]["epoch_s"] / r["epoch_s"] for r in paired]
        cpu_ratios = [dense[r["repeat"]]["epoch_cpu_s"] / r["epoch_cpu_s"] for r in paired]
        med = {k: statistics.median(r[k] for r in mine) for k in ("epoch_s", "epoch_cpu_s", "frames_per_s",
                                                                    "warmup_s", *SPLIT)}
        summary.append(dict(
            size=size, network=network, model=mine[0]["model"], hidden=mine[0]["hidden"], algorithm=algorithm,
            connectivity=conn, **med,
            speedup_vs_dense=statistics.median(ratios) if ratios else None,
            speedup_min=min(ratios, default=None), speedup_max=max(ratios, default=None),
            speedup_cpu_vs_dense=statistics.median(cpu_ratios) if cpu_ratios else None,
            peak_rss_mb=max(r["peak_rss_mb"] for r in mine),
            rss_before_epoch_mb=max(r["rss_before_epoch_mb"] for r in mine),
            frames=mine[0]["frames"], utterances=mine[0]["utterances"], batches=mine[0]["batches"],
            active_connections=mine[0]["active_connections"], repeats=len(mine)))
    return summary


def _fmt(x, spec):
    return "–" if x is None else format(x, spec)


def markdown(summary: list) -> str:
    lines = ["| corpus | network | training | active connections | epoch (s) | epoch CPU (s) | frames/s | "
             "speed-up vs dense (range) | same, CPU time | data / forward / backward / optimizer (rewiring) / "
             "rest (s) | peak memory (MB) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for s in summary:
        training = "dense" if s["algorithm"] == "dense" else f"DEEP R {100 * s['connectivity']:g} %"
        split = (f"{s['data_s']:.2f} / {s['forward_s']:.2f} / {s['backward_s']:.2f} / {s['optimizer_s']:.2f} "
                 f"({s['rewiring_s']:.2f}) / {s['rest_s']:.2f}")
        lines.append(
            f"| {s['size']} ({s['frames']:,} frames) | {s['network']} | {training} | {s['active_connections']:,} | "
            f"{s['epoch_s']:.2f} | {s['epoch_cpu_s']:.2f} | {s['frames_per_s']:,.0f} | "
            f"{_fmt(s['speedup_vs_dense'], '.1f')}× ({_fmt(s['speedup_min'], '.1f')}–{_fmt(s['speedup_max'], '.1f')}) | "
            f"{_fmt(s['speedup_cpu_vs_dense'], '.1f')}× | {split} | {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["small", "medium"])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(dumps_strict(run_epoch(**json.loads(args.child))))
        return None

    load_before = os.getloadavg()
    rows, tasks = [], {}
    for size in args.sizes:
        tasks[size] = {"first_build_s": _build_task_timed(size), "cached_build_s": _build_task_timed(size)}
        print(f"task {size}: {tasks[size]}", flush=True)
        for rep in range(args.repeat):
            for network in args.networks:
                for algorithm, conn in TRAININGS:
                    spec = dict(size=size, network=network, algorithm=algorithm, connectivity=conn,
                                threads=args.threads, batch_size=args.batch_size)
                    r = _child(spec)
                    r["repeat"] = rep
                    rows.append(r)
                    print(f"{size} {network} {algorithm} {conn:g}: {r['epoch_s']:.2f} s (CPU {r['epoch_cpu_s']:.2f} s), "
                          f"{r['frames_per_s']:.0f} frames/s, data {r['data_s']:.3f} s, load {os.getloadavg()[0]:.1f}",
                          flush=True)
    summary = summarise(rows)
    import torch

    meta = dict(torch=torch.__version__, cpu_count=os.cpu_count(), machine=platform.processor() or platform.machine(),
                threads=args.threads, batch_size=args.batch_size, repeat=args.repeat, task_build=tasks,
                load_average_before=load_before, load_average_after=os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(dumps_strict(dict(meta=meta, summary=summary, runs=rows), indent=2))
    tmp.replace(args.out)
    print(f"\n{meta}\n")
    print(markdown(summary))
    print(f"\nwritten to {args.out}")
    return summary


if __name__ == "__main__":
    main()
