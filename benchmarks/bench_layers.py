"""Training-step speed of the sparse layers against their dense baselines, in the same run.

One training step = forward over T steps + backward (+ a DEEP R step for the sparse layers;
a plain SGD step for the dense baselines):

- ``lif``:  SparseLIFRecurrent, N=4096 neurons, 1 % input and recurrent connectivity, T=100, B=32,
  100 input features, against ``norse.torch.LIFRecurrent`` (dense, same sizes). The layer runs its
  fused CPU kernels (`spiking_deepr.layers.recurrence`); ``--also-steps`` adds a row for the same
  layer with ``fused=False`` (per-step autograd through `lif_step`).
- ``lstm``: SparseLSTM, H=512, 10 % connectivity, against ``torch.nn.LSTM``.

Writes ``benchmarks/results/bench_layers.json`` and prints a Markdown table. ``--quick`` uses small
sizes (a smoke run). Timings are medians of ``--repeat`` steps after a warm-up step, sparse and
dense steps alternating (both see the same machine load); wall-clock and process CPU time.

    python benchmarks/bench_layers.py [--quick] [--repeat 3] [--threads 1 2] [--profile] [--also-steps]

Threads: torch and numba each keep an OpenMP pool; on a small (2-core, shared) machine with both
at 2 threads they spin against each other, which hurts the many small per-step ops of a recurrent
layer (see the LSTM row at 2 threads). Compare settings with ``--threads 1 2``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")

import norse.torch as norse  # noqa: E402
from norse.torch.functional.lif import LIFParameters  # noqa: E402

from spiking_deepr.layers import SparseLIFRecurrent, SparseLSTM  # noqa: E402
from spiking_deepr.rewiring import DeepR  # noqa: E402
from spiking_deepr.checkpoint import dumps_strict  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_layers.json"


def _time_pair(sparse_step, dense_step, repeat: int):
    """Alternate sparse and dense steps (so both see the same machine load); wall and CPU seconds."""
    sparse_step(), dense_step()  # warm-up (numba load, allocator)
    runs = {"sparse": [], "dense": [], "sparse_cpu": [], "dense_cpu": []}
    for _ in range(repeat):
        for name, step in (("sparse", sparse_step), ("dense", dense_step)):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            runs[name].append(time.perf_counter() - w0)
            runs[name + "_cpu"].append(time.process_time() - c0)
    return {k: statistics.median(v) for k, v in runs.items()}, runs


def _row(layer, config, baseline, med, runs, **extra):
    return dict(layer=layer, config=config, baseline=baseline, sparse_s=med["sparse"], dense_s=med["dense"],
                speedup=med["dense"] / med["sparse"], sparse_cpu_s=med["sparse_cpu"], dense_cpu_s=med["dense_cpu"],
                speedup_cpu=med["dense_cpu"] / med["sparse_cpu"], runs=runs, **extra)


def bench_lif(N, T, B, F, conn, repeat, profile=False, fused=True):
    p = LIFParameters(v_th=torch.as_tensor(1.0), method="super")
    torch.manual_seed(0)
    x = torch.rand(T, B, F) * (torch.rand(T, B, F) < 0.2)  # sparse-ish positive input
    sparse = SparseLIFRecurrent(F, N, p, input_connectivity=conn, recurrent_connectivity=conn,
                                input_init_std=0.5, fused=fused, seed=0)  # ~5 % spikes per step
    # a small lr keeps the activity (~5 % spikes per step) from drifting between timed steps
    opt = DeepR([sparse.w_in, sparse.w_rec], lr=1e-5, temperature=1e-8)
    rate = {}

    def sparse_step():
        opt.zero_grad()
        z, _ = sparse(x)
        z.sum().backward()
        opt.step()
        rate["sparse"] = float(z.detach().mean())

    dense = norse.LIFRecurrent(F, N, p=p)
    with torch.no_grad():  # same weights as the sparse layer, densified
        dense.input_weights.copy_(sparse.w_in.to_dense())
        dense.recurrent_weights.copy_(sparse.w_rec.to_dense())
    dopt = torch.optim.SGD(dense.parameters(), lr=1e-5)

    def dense_step():
        dopt.zero_grad()
        z, _ = dense(x)
        z.sum().backward()
        dopt.step()
        rate["dense"] = float(z.detach().mean())

    med, runs = _time_pair(sparse_step, dense_step, repeat)
    if profile:
        _profile(sparse_step)
    return _row("LIF recurrent" + ("" if fused else " (step functions)"), f"N={N}, conn={conn:g}, T={T}, B={B}, F={F}",
                "norse.torch.LIFRecurrent (dense)", med, runs, nnz_rec=sparse.w_rec.nnz,
                nnz_in=sparse.w_in.nnz, spike_rate=rate.get("sparse"))


def bench_lstm(H, T, B, F, conn, repeat, profile=False):
    torch.manual_seed(0)
    x = torch.randn(T, B, F)
    sparse = SparseLSTM(F, H, input_connectivity=conn, recurrent_connectivity=conn, seed=0)
    opt = DeepR([sparse.w_ih[0], sparse.w_hh[0]], lr=1e-3, temperature=1e-8)
    bopt = torch.optim.SGD([sparse.bias], lr=1e-3)

    def sparse_step():
        opt.zero_grad(), bopt.zero_grad()
        h, _ = sparse(x)
        h.sum().backward()
        opt.step(), bopt.step()

    dense = torch.nn.LSTM(F, H)
    dopt = torch.optim.SGD(dense.parameters(), lr=1e-3)

    def dense_step():
        dopt.zero_grad()
        h, _ = dense(x)
        h.sum().backward()
        dopt.step()

    med, runs = _time_pair(sparse_step, dense_step, repeat)
    if profile:
        _profile(sparse_step)
    return _row("LSTM", f"H={H}, conn={conn:g}, T={T}, B={B}, F={F}", "torch.nn.LSTM (dense)", med, runs,
                nnz_rec=sparse.w_hh[0].nnz, nnz_in=sparse.w_ih[0].nnz)


def _profile(step):
    with torch.autograd.profiler.profile() as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="*", default=None,
                    help="torch+numba thread counts to run, e.g. --threads 1 2 (default: library default)")
    ap.add_argument("--profile", action="store_true", help="print an autograd profile of one sparse step")
    ap.add_argument("--only", choices=["lif", "lstm"], default=None)
    ap.add_argument("--also-steps", action="store_true",
                    help="also time the LIF layer with fused=False (per-step autograd)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    import numba

    rows = []
    for threads in args.threads or [None]:
        if threads:
            torch.set_num_threads(threads)
            numba.set_num_threads(threads)
        lif_sizes = (512, 50, 8, 20, 0.05) if args.quick else (4096, 100, 32, 100, 0.01)
        first = len(rows)
        if args.only in (None, "lif"):
            rows.append(bench_lif(*lif_sizes, args.repeat, args.profile))
            if args.also_steps:
                rows.append(bench_lif(*lif_sizes, args.repeat, args.profile, fused=False))
        if args.only in (None, "lstm"):
            rows.append(bench_lstm(*((128, 50, 8, 20, 0.1) if args.quick else (512, 100, 32, 100, 0.1)),
                                   args.repeat, args.profile))
        for r in rows[first:]:
            r.setdefault("threads", torch.get_num_threads())

    meta = dict(torch=torch.__version__, norse=norse.__version__ if hasattr(norse, "__version__") else "1.1.0",
                cpu_count=__import__("os").cpu_count(),
                machine=platform.processor() or platform.machine(), quick=args.quick, repeat=args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps_strict(dict(meta=meta, results=rows), indent=2))
    print(f"\n{meta}\n")
    print("| layer | config | threads | baseline | sparse step (s) | dense step (s) | speed-up | "
          "speed-up (CPU time) |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['layer']} | {r['config']} | {r['threads']} | {r['baseline']} | {r['sparse_s']:.3f} | "
              f"{r['dense_s']:.3f} | {r['speedup']:.1f}x | {r['speedup_cpu']:.1f}x |")
    print(f"\nwritten to {args.out}")
    return rows


if __name__ == "__main__":
    main()
