"""Training-step speed of the sparse layers against their dense baselines, in the same run.

One training step = forward over T steps + backward (+ a DEEP R step for the sparse layers;
a plain SGD step for the dense baselines):

- ``lif``:  SparseLIFRecurrent, N=4096 neurons, 1 % input and recurrent connectivity, T=100, B=32,
  100 input features, against ``norse.torch.LIFRecurrent`` (dense, same sizes). The layer runs its
  fused CPU kernels (`spiking_deepr.layers.recurrence`); ``--also-steps`` adds a row for the same
  layer with ``fused=False`` (per-step autograd through `lif_step`).
- ``lstm``: SparseLSTM (fused CPU kernels, `spiking_deepr.layers.lstm_recurrence`) at H=512 with 10 %
  and 1 %, and H=1024 with 1 % connectivity (T=100, B=32, F=100), against ``torch.nn.LSTM``.

Distance to the floor: every row states the multiply-adds its sparse step really needs
(``sparse_macs``: from K, B, T and, for spiking layers, the measured spike and input-event counts;
see `_lstm_macs` / `_lif_macs`) and the rate achieved per CPU-second (``sparse_gmacs``), next to the dense
baseline's multiply-adds and rate and a single-core dense GEMM rate measured in the same run
(``meta.gemm_gmacs_1thread``, float32 1024³ ``torch.mm``): ``floor_fraction`` = achieved /
GEMM rate says how far a kernel is from what one core does on dense data.

Writes ``benchmarks/results/bench_layers.json`` and prints a Markdown table. ``--quick`` uses small
sizes (a smoke run). Timings are medians of ``--repeat`` steps after a warm-up step, sparse and
dense steps alternating (both see the same machine load); wall-clock and process CPU time; the
spread is the range of the per-repetition (paired) speed-ups. Every row records the 1-minute load
average before and after it (``loadavg``): on a shared machine timings vary with it. With
``--only``, the rows of the other layer are kept from the existing JSON (each row says when it
was measured).

    python benchmarks/bench_layers.py [--quick] [--repeat 3] [--threads 1 2] [--profile] [--also-steps]

Threads: torch and numba each keep an OpenMP pool; on a small (2-core, shared) machine with both
at 2 threads they spin against each other, and on an oversubscribed machine every parallel
region waits for a descheduled thread. The fused LSTM splits the batch into one chunk per numba
thread (no synchronisation inside the time loop). Compare settings with ``--threads 1 2``.
"""
from __future__ import annotations

import argparse
import json
import os
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


def gemm_rate(threads: int = 1, n: int = 1024, repeat: int = 5) -> float:
    """Dense float32 GEMM rate (10⁹ multiply-adds per CPU-second, best of ``repeat``) of ``torch.mm``
    on ``threads`` threads: what the cores do on dense data. CPU time, not wall-clock: on a shared
    machine the process's own CPU seconds are what other users' load distorts least."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - t0)
    torch.set_num_threads(before)
    return n ** 3 / best / 1e9


def _row(layer, config, baseline, med, runs, sparse_macs, dense_macs, **extra):
    paired = [d / s for s, d in zip(runs["sparse"], runs["dense"])]
    return dict(layer=layer, config=config, baseline=baseline, sparse_s=med["sparse"], dense_s=med["dense"],
                speedup=med["dense"] / med["sparse"], speedup_min=min(paired), speedup_max=max(paired),
                sparse_cpu_s=med["sparse_cpu"], dense_cpu_s=med["dense_cpu"],
                speedup_cpu=med["dense_cpu"] / med["sparse_cpu"], sparse_macs=sparse_macs, dense_macs=dense_macs,
                sparse_gmacs=sparse_macs / med["sparse_cpu"] / 1e9, dense_gmacs=dense_macs / med["dense_cpu"] / 1e9,
                runs=runs, **extra)


def _lstm_macs(T, B, F, H, k_ih, k_hh):
    """Multiply-adds of one LSTM training step (x needs no gradient): forward T·B·(K_ih + K_hh),
    backward W_hhᵀδ T·B·K_hh and both weight gradients T·B·(K_ih + K_hh). Dense: K = 4H·F, 4H·H."""
    return T * B * (2 * k_ih + 3 * k_hh)


def _lif_macs(T, B, k_in, k_rec, F, N, input_events, spikes):
    """Multiply-adds of one LIF training step, event-driven where the kernels are: forward input
    (input events × fan-out) and recurrent (spikes × fan-out) products, backward the input weight
    gradient (input events × fan-out), the recurrent Wᵀδ (dense δ: T·B·K_rec) and the recurrent
    weight gradient (spikes × fan-out). ``input_events``/``spikes``: nonzeros of x / of z[t-1]."""
    fan_in_events = input_events * k_in / F
    fan_rec_events = spikes * k_rec / N
    return 2 * fan_in_events + 2 * fan_rec_events + T * B * k_rec


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
    spikes = rate["sparse"] * T * B * N  # z[t-1] over the steps (z[T-1] feeds no step; ~ the same)
    macs = _lif_macs(T, B, sparse.w_in.nnz, sparse.w_rec.nnz, F, N, int(torch.count_nonzero(x)), spikes)
    dense_macs = T * B * N * (F + N) * 3  # Norse: dense forward, input and weight gradients
    return _row("LIF recurrent" + ("" if fused else " (step functions)"), f"N={N}, conn={conn:g}, T={T}, B={B}, F={F}",
                "norse.torch.LIFRecurrent (dense)", med, runs, macs, dense_macs, nnz_rec=sparse.w_rec.nnz,
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
    k_ih, k_hh = sparse.w_ih[0].nnz, sparse.w_hh[0].nnz
    return _row("LSTM", f"H={H}, conn={conn:g}, T={T}, B={B}, F={F}", "torch.nn.LSTM (dense)", med, runs,
                _lstm_macs(T, B, F, H, k_ih, k_hh), _lstm_macs(T, B, F, H, 4 * H * F, 4 * H * H),
                nnz_rec=k_hh, nnz_in=k_ih)


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
        load_before = os.getloadavg()[0]
        if args.only in (None, "lif"):
            rows.append(bench_lif(*lif_sizes, args.repeat, args.profile))
            if args.also_steps:
                rows.append(bench_lif(*lif_sizes, args.repeat, args.profile, fused=False))
        if args.only in (None, "lstm"):
            lstm_sizes = [(128, 50, 8, 20, 0.1)] if args.quick else [
                (512, 100, 32, 100, 0.1), (512, 100, 32, 100, 0.01), (1024, 100, 32, 100, 0.01)]
            for sizes in lstm_sizes:
                rows.append(bench_lstm(*sizes, args.repeat, args.profile))
        for r in rows[first:]:
            r.setdefault("threads", torch.get_num_threads())
            r["loadavg"] = [load_before, os.getloadavg()[0]]
            r["measured"] = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())

    gemm = gemm_rate(1)
    for r in rows:
        r["floor_fraction"] = r["sparse_gmacs"] / gemm
    if args.only and args.out.exists():  # keep the other layer's rows of the previous run
        kept = [r for r in json.loads(args.out.read_text())["results"]
                if not r["layer"].lower().startswith(args.only)]
        rows = kept + rows
    meta = dict(gemm_gmacs_1thread=gemm, loadavg_1_5_15=list(os.getloadavg()), torch=torch.__version__,
                norse=norse.__version__ if hasattr(norse, "__version__") else "1.1.0", cpu_count=os.cpu_count(),
                machine=platform.processor() or platform.machine(), quick=args.quick, repeat=args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps_strict(dict(meta=meta, results=rows), indent=2))
    print(f"\n{meta}\n")
    print("| layer | config | threads | baseline | sparse step (s) | dense step (s) | speed-up (range) | "
          "speed-up (CPU time) | sparse MACs | sparse GMAC/CPU-s | dense GMAC/CPU-s | of 1-core GEMM | load |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['layer']} | {r['config']} | {r['threads']} | {r['baseline']} | {r['sparse_s']:.3f} | "
              f"{r['dense_s']:.3f} | {r['speedup']:.1f}x ({r['speedup_min']:.1f}–{r['speedup_max']:.1f}) | "
              f"{r['speedup_cpu']:.1f}x | {r['sparse_macs'] / 1e9:.2f} G | {r['sparse_gmacs']:.1f} | "
              f"{r['dense_gmacs']:.1f} | {100 * r['floor_fraction']:.0f} % | "
              f"{'–'.join(f'{v:.1f}' for v in r.get('loadavg', []))} |")
    print(f"\nsingle-core float32 GEMM: {gemm:.1f} GMAC/s")
    print(f"\nwritten to {args.out}")
    return rows


if __name__ == "__main__":
    main()
