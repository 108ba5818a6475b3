"""Core-aware training vs unconstrained DEEP R on Loihi 2: cores needed and accuracy cost.

The network: the demo recipe as of these runs (synthetic TIMIT-like corpus, `preset=demo` with a
linear readout at 100 % initial connectivity, rewired under the global budget, Adam) with one layer of 1,024 neurons (768 LIF + 256 ALIF) at 11.5 %
connectivity, 3 epochs, one thread. With 1,024 neurons the layer needs one Loihi 2 core by its
neuron count, but ~127,000 synapses in nengo-loihi's accounting take just over a core's 1 Mbit of
synaptic memory, so `sdr convert`'s mapper needs a second core for it: 3 cores with the readout.
Trained with ``hardware.max_cores=2`` the same network is kept on 2 cores (layer 1, readout 1).

    python benchmarks/core_aware.py --seeds 0 1 2 --runs runs/core_aware      # train, convert, collect
    python benchmarks/core_aware.py --seeds 0 1 2 --runs runs/core_aware --collect-only

writes ``benchmarks/results/core_aware.json``: per seed and mode the test frame accuracy, the
cores `sdr convert` needs on loihi2, whether it fits 2 cores, and the layer's synaptic memory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from spiking_deepr.checkpoint import dumps_strict


RECIPE = ["preset=demo", "model.readout=linear", "model.readout_tau_mem_inv=null", "model.readout_tau_syn_inv=null",
          "model.readout_connectivity=1.0", "model.hidden=[1024]", "model.n_alif=256", "rewiring.connectivity=0.115",
          "train.epochs=3", "train.threads=1", "train.progress=false", "hardware=loihi2"]
MODES = {"unconstrained": [], "core_aware": ["hardware.max_cores=2"]}
MAX_CORES = 2


def run(seed: int, mode: str, runs: Path) -> Path:
    out = runs / f"{mode}_s{seed}"
    if not (out / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "spiking_deepr.cli", "train", *RECIPE, f"train.seed={seed}",
                        f"model.seed={seed}", *MODES[mode], f"run.dir={out}"], check=True)
    subprocess.run([sys.executable, "-m", "spiking_deepr.cli", "convert", str(out), "--profile", "loihi2"])
    return out


def collect(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    res = json.loads((out / "resources.json").read_text())
    layer = res["layers"][0]
    return {"test_frame_accuracy": summary["test"]["frame_accuracy"], "cores": res["cores"],
            "fits_max_cores": res["cores"] <= MAX_CORES and not res["violations"],
            "layer_cores": layer["cores"], "layer_synapses": layer["synapses"],
            "layer_max_synapse_bits": layer["max_synapse_bits"],
            "connections": {l["name"]: l["active"] for l in summary["layers"]},
            "cost_per_inference": {k: res["cost_per_inference"][k] for k in (
                "connection_sparsity", "spikes_per_neuron_per_step", "synaptic_ops_per_sample",
                "energy_per_sample_uj", "latency_per_sample_us")},
            "train_seconds": summary.get("wall_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", default="runs/core_aware")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "core_aware.json"))
    args = ap.parse_args()
    runs = Path(args.runs)
    result = {"recipe": RECIPE, "max_cores": MAX_CORES, "profile": "loihi2", "runs": {}}
    for seed in args.seeds:
        for mode in MODES:
            out = runs / f"{mode}_s{seed}" if args.collect_only else run(seed, mode, runs)
            result["runs"][f"{mode}_s{seed}"] = collect(out)
    for mode in MODES:
        acc = [result["runs"][f"{mode}_s{s}"]["test_frame_accuracy"] for s in args.seeds]
        result[mode] = {"mean_test_frame_accuracy": sum(acc) / len(acc), "min": min(acc), "max": max(acc),
                        "cores": [result["runs"][f"{mode}_s{s}"]["cores"] for s in args.seeds]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(dumps_strict(result, indent=2) + "\n")
    print(dumps_strict({m: result[m] for m in MODES}, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
