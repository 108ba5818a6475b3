"""Do the options of the authors' LSNN recipe help? Validation accuracy, several seeds.

Trains a small DEEP R LSNN with the default neuron model and with each recipe option alone
(``model.reset=subtract``, ``model.refractory=1``, ``model.surrogate=lsnn``, ``model.n_repeat=2``)
and all together, on the synthetic TIMIT-like corpus (frame accuracy) and on GunPoint (sequence
accuracy), for several seeds; reports the VALIDATION metric of the best epoch (the test split is
not looked at here) as mean ± std. Writes JSON and a Markdown table (see docs/lsnn_recipe.md).

    python benchmarks/lsnn_recipe.py --seeds 3 --datasets synthetic --out benchmarks/results/lsnn_recipe_synthetic.json
    python benchmarks/lsnn_recipe.py --report benchmarks/results/lsnn_recipe_*.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]

OPTIONS = {
    "default": [],
    "reset=subtract": ["model.reset=subtract"],
    "refractory=1": ["model.refractory=1"],
    "surrogate=lsnn": ["model.surrogate=lsnn"],
    "n_repeat=2": ["model.n_repeat=2"],
    "all four": ["model.reset=subtract", "model.refractory=1", "model.surrogate=lsnn", "model.n_repeat=2"],
    # control for n_repeat=2: the same decay per frame (time constants halved) without repetition
    "time constants / 2": ["model.tau_mem_inv=100.0", "model.tau_syn_inv=400.0", "model.tau_adapt_inv=10.0"],
}

DATASETS = {
    "synthetic": ["task=synthetic_timit", "task.size=small", "task.max_frames=50", "train.epochs=6",
                  "train.batch_size=32"],
    "GunPoint": ["task=npz", f"task.path={ROOT.parent / 'shared' / 'data' / 'GunPoint'}", "task.valid_fraction=0.3",
                 "train.epochs=100", "train.patience=null", "train.batch_size=8"],
}

# a small LSNN (README sweep settings): DEEP R at 10 % on the recurrent matrix, every input and
# readout connection kept (GunPoint has a single input feature)
COMMON = ["model=lsnn", "model.hidden=[64]", "model.n_alif=16", "model.input_connectivity=1.0",
          "model.readout=linear", "model.readout_connectivity=1.0", "optim.lr=0.01", "train.threads=1",
          "train.progress=false"]


def run_cell(dataset: str, option: str, seed: int, root: Path) -> dict:
    from spiking_deepr.config import load_config
    from spiking_deepr.train import train

    run_dir = root / f"{dataset}-{option.replace('=', '_').replace(' ', '_')}-{seed}"
    overrides = COMMON + DATASETS[dataset] + OPTIONS[option] + [
        f"train.seed={seed}", f"model.seed={seed}", f"run.dir={run_dir}"]
    summary = train(load_config(overrides))
    metric = summary["monitor"]
    return {"dataset": dataset, "option": option, "seed": seed, "metric": metric,
            "valid": summary["valid"][metric], "valid_loss": summary["valid"]["loss"],
            "best_epoch": summary["best_epoch"], "wall_s": summary["wall_s"]}


def table(rows: list) -> str:
    """Markdown: one line per option, one column per data set, mean ± std over seeds."""
    datasets = sorted({r["dataset"] for r in rows}, key=list(DATASETS).index)
    lines = ["| option | " + " | ".join(f"{d} valid ({rows_for(rows, d)[0]['metric'].replace('_', ' ')})"
                                         for d in datasets) + " |",
             "|---|" + "---|" * len(datasets)]
    for option in OPTIONS:
        cells = []
        for d in datasets:
            vals = [r["valid"] for r in rows_for(rows, d) if r["option"] == option]
            if not vals:
                cells.append("")
                continue
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {std:.3f} ({len(vals)} seeds)")
        lines.append(f"| {option} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_for(rows, dataset):
    return [r for r in rows if r["dataset"] == dataset]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lsnn_recipe.json")
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                    help="print the table of these result files (no training)")
    args = ap.parse_args(argv)
    if args.report:
        print(table([r for path in args.report for r in json.loads(path.read_text())["rows"]]))
        return 0
    from spiking_deepr.checkpoint import atomic_write_json

    rows = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    done = {(r["dataset"], r["option"], r["seed"]) for r in rows}
    cells = [(d, o, s) for s in range(args.seeds) for d in args.datasets for o in args.options if (d, o, s) not in done]
    with tempfile.TemporaryDirectory(prefix="lsnn_recipe_") as tmp:
        for d, o, s in tqdm(cells, desc="lsnn recipe", file=sys.stderr):
            rows.append(run_cell(d, o, s, Path(tmp)))
            atomic_write_json(args.out, {"rows": rows, "settings": {"common": COMMON, "datasets": DATASETS,
                                                                     "options": OPTIONS}})
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
