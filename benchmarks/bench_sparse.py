"""Benchmark: one sparse matrix's training step (forward + backward + rewire) against dense masking.

For each N (square matrix N x N), connectivity p and implementation, one step on R = B*T rows
(default 32 x 100 = 3,200, spike input at 5 % rate):

    sparse:        y = sparse_linear(x, SparseMatrix)  ->  backward  ->  DeepR.step()
    dense_masked:  y = x (W ⊙ M)ᵀ with dense W, M      ->  backward  ->  the same DEEP R rule on dense
                   tensors (update, remove crossings, regrow uniformly among dormant entries of M)

Each case runs in its own subprocess so its peak resident memory (ru_maxrss above the idle
interpreter) is its own. Writes JSON (default benchmarks/results/bench_sparse.json) and prints a
Markdown table with the dense/sparse ratios.

    python benchmarks/bench_sparse.py [--sizes 1024 4096] [--connectivity 0.01 0.1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from spiking_deepr.checkpoint import dumps_strict

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _dense_masked_step(w, mask, x, grad_out, lr, gen):
    t0 = time.perf_counter()
    y = torch.nn.functional.linear(x, w * mask)
    y.backward(grad_out)
    t1 = time.perf_counter()
    with torch.no_grad():
        # same DEEP R rule, dense: magnitudes |w| with fixed signs, masked update, crossings removed
        sign = torch.sign(w)
        theta = w.abs() - lr * (w.grad * sign) * mask
        removed = (theta < 0) & mask.bool()
        theta.clamp_(min=0)
        n = int(removed.sum())
        mask[removed] = 0
        dormant = torch.nonzero(mask.reshape(-1) == 0).squeeze(1)
        new = dormant[torch.randperm(dormant.numel(), generator=gen)[:n]]
        mask.view(-1)[new] = 1
        theta.view(-1)[new] = 0
        w.copy_(sign * theta)
        w.grad = None
    return t1 - t0, time.perf_counter() - t1


def _sparse_step(m, opt, x, grad_out):
    from spiking_deepr.sparse import sparse_linear

    t0 = time.perf_counter()
    y = sparse_linear(x, m)
    y.backward(grad_out)
    t1 = time.perf_counter()
    opt.step()
    return t1 - t0, time.perf_counter() - t1


def _warm_up_kernels() -> None:
    from spiking_deepr.sparse import SparseMatrix, sparse_linear

    m = SparseMatrix(64, 64, connectivity=0.1)
    for x in (torch.rand(200, 64), (torch.rand(200, 64) < 0.05).float()):  # dense and event-driven paths
        sparse_linear(x.requires_grad_(True), m).sum().backward()


def run_case(impl: str, n: int, p: float, rows: int, repeats: int, rate: float) -> dict:
    """Run one case in this process; returns timings (s) and memory (MiB)."""
    sys.path.insert(0, str(ROOT))
    from spiking_deepr.rewiring import DeepR
    from spiking_deepr.sparse import SparseMatrix

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(rows, n, generator=gen) < rate).float()
    grad_out = torch.randn(rows, n, generator=gen) * 1e-3
    _warm_up_kernels()  # numba's JIT/cache loading is a one-off per process, not memory of the step
    rss0 = _rss_mib()
    m = SparseMatrix(n, n, connectivity=p, exclude_diagonal=True, seed=0)
    if impl == "sparse":
        opt = DeepR([m], lr=0.05, seed=0)
        step = lambda: _sparse_step(m, opt, x, grad_out)  # noqa: E731
        state_bytes = sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))
    else:
        w = m.to_dense().clone().requires_grad_(True)
        mask = (w.detach() != 0).float()
        del m
        step = lambda: _dense_masked_step(w, mask, x, grad_out, 0.05, gen)  # noqa: E731
        state_bytes = 2 * w.numel() * w.element_size()
    step()  # warm-up (numba compilation, allocator)
    fb, rw = [], []
    for _ in range(repeats):
        a, b = step()
        fb.append(a)
        rw.append(b)
    fb_s, rw_s = min(fb), min(rw)
    return {
        "impl": impl, "n": n, "connectivity": p, "rows": rows,
        "nnz": int(round(p * (n * n - n))),
        "forward_backward_s": fb_s, "rewire_s": rw_s, "step_s": fb_s + rw_s,
        "rewire_fraction": rw_s / (fb_s + rw_s),
        "state_mib": state_bytes / 2**20,
        "peak_rss_above_inputs_mib": _rss_mib() - rss0,  # above inputs, imports and compiled kernels
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--connectivity", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100, help="time steps T; rows = batch * steps")
    ap.add_argument("--rate", type=float, default=0.05, help="spike probability of the binary input")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_sparse.json"))
    ap.add_argument("--case", nargs=3, metavar=("IMPL", "N", "P"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    rows = args.batch * args.steps
    if args.case:
        impl, n, p = args.case
        print(dumps_strict(run_case(impl, int(n), float(p), rows, args.repeats, args.rate)))
        return

    results = []
    for n in args.sizes:
        for p in args.connectivity:
            pair = {}
            for impl in ("sparse", "dense_masked"):
                cmd = [sys.executable, __file__, "--case", impl, str(n), str(p), "--batch", str(args.batch),
                       "--steps", str(args.steps), "--repeats", str(args.repeats), "--rate", str(args.rate)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                pair[impl] = json.loads(out.strip().splitlines()[-1])
                print(f"  N={n} p={p} {impl}: {pair[impl]['step_s']:.3f} s", file=sys.stderr)
            s, d = pair["sparse"], pair["dense_masked"]
            results.append({**{k: s[k] for k in ("n", "connectivity", "rows", "nnz")}, "sparse": s, "dense_masked": d,
                            "speedup": d["step_s"] / s["step_s"],
                            "memory_ratio": d["state_mib"] / s["state_mib"]})

    report = {
        "benchmark": "bench_sparse",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(dumps_strict(report, indent=2))
    print(markdown_table(results))
    print(f"\nJSON: {args.out}")


def markdown_table(results) -> str:
    lines = [
        "| N | p | K | sparse step (s) | of which rewire | dense-masked step (s) | speed-up | state MiB sparse / dense | peak RSS MiB sparse / dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, d = r["sparse"], r["dense_masked"]
        lines.append(
            f"| {r['n']} | {r['connectivity']:.0%} | {r['nnz']:,} | {s['step_s']:.3f} | {s['rewire_fraction']:.1%} "
            f"| {d['step_s']:.3f} | {r['speedup']:.1f}× | {s['state_mib']:.1f} / {d['state_mib']:.0f} "
            f"| {s['peak_rss_above_inputs_mib']:.0f} / {d['peak_rss_above_inputs_mib']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
