"""How far are the dense default models from the best the project gets with tuning? (issue 10)

For each data set and model kind, trains the DENSE model (``rewiring.algorithm=dense``) with the
default configuration and with one change at a time to the settings a user would tune first —
peak learning rate ×0.3 / ×3, twice the hidden units, three times the step budget and, for the
LSNN, three simulation steps per input frame (``model.n_repeat=3``; its default is 2) — over
several seeds via `spiking_deepr.sweep.sweep` (so interrupted runs resume and finished ones are
reused). The best variant is chosen on the VALIDATION mean (ties: the first listed, so the default
wins a tie); its test mean is then reported next to the default's test mean. Writes JSON and a
Markdown table.

    python benchmarks/tune_dense.py --datasets GunPoint PLAID --models lstm lsnn --seeds 3 \\
        --runs runs/tuning --out docs/sweeps/dense_tuning
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spiking_deepr.checkpoint import atomic_write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
COMMON = ["task=npz", "train.threads=1", "train.progress=false"]
VARIANTS = {
    "default": [],
    "lr x0.3": ["optim.lr=0.003"],
    "lr x3": ["optim.lr=0.03"],
    "hidden x2": ["model.hidden=[256]"],
    "steps x3": ["train.max_steps=4500"],
    "n_repeat=3": ["model.n_repeat=3"],
}
ONLY = {"n_repeat=3": {"lsnn"}}  # variants that exist for some model kinds only


def tune(dataset: str, model: str, seeds: int, runs: Path) -> dict:
    """Every variant's dense cell over ``seeds``; the best variant by validation mean."""
    from spiking_deepr.sweep import sweep

    rows = {}
    for name, overrides in VARIANTS.items():
        if model not in ONLY.get(name, {model}):
            continue
        out = runs / f"{dataset}_{model}" / name.replace(" ", "_").replace("=", "_")
        (cell,) = sweep([*COMMON, f"task.path={DATA / dataset}", *overrides], out, models=[model],
                        algorithms=["dense"], connectivities=[1.0], seeds=seeds)["results"]
        rows[name] = {"overrides": overrides, **{k: cell[k] for k in (
            "metric", "n", "valid_mean", "valid_std", "valid_accuracies", "mean", "std", "accuracies")}}
    best = max(rows, key=lambda k: rows[k]["valid_mean"])
    return {"dataset": dataset, "model": model, "variants": rows, "best_on_validation": best,
            "default_test": rows["default"]["mean"], "best_test": rows[best]["mean"],
            "gap_points": 100 * (rows[best]["mean"] - rows["default"]["mean"])}


def markdown(results: list) -> str:
    lines = ["Dense models: default vs one change at a time; sequence accuracy, mean ± std over seeds. "
             "The best variant (**bold**) is chosen on validation (ties: the first listed); gap = its test mean − "
             "the default's.", "",
             "| data | model | variant | valid | test | n |", "|---|---|---|---|---|---|"]
    for r in results:
        for name, v in r["variants"].items():
            label = f"**{name}**" if name == r["best_on_validation"] else name
            lines.append(f"| {r['dataset']} | {r['model']} | {label} | {v['valid_mean']:.3f} ± {v['valid_std']:.3f} | "
                         f"{v['mean']:.3f} ± {v['std']:.3f} | {v['n']} |")
        lines.append(f"| {r['dataset']} | {r['model']} | gap (best − default), test | | "
                     f"{r['gap_points']:+.1f} points | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["GunPoint", "PLAID"])
    ap.add_argument("--models", nargs="+", default=["lstm", "lsnn"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs", type=Path, default=Path("runs/tuning"))
    ap.add_argument("--out", type=Path, default=Path("docs/sweeps/dense_tuning"))
    args = ap.parse_args(argv)
    results = [tune(d, m, args.seeds, args.runs) for d in args.datasets for m in args.models]
    table = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), {"variants": VARIANTS, "seeds": args.seeds, "results": results})
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
