"""`sdr sweep`: test accuracy vs connectivity for DEEP R and the baselines, as Markdown, JSON and PNG.

For every model kind and algorithm and every connectivity below 100 %, one run is trained with the
same settings (``overrides`` apply to all); the 100 % column is one dense run per model. A cell's
run is reused (summary.json) or resumed (checkpoint.pt) only when its saved config equals the
requested one, so an interrupted sweep continues where it stopped; a cell trained with other settings
is refused with the differing fields (``rerun_stale=True``, ``sdr sweep --rerun-stale``: retrain it).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Sequence

from omegaconf import DictConfig, OmegaConf

from .checkpoint import atomic_write_json
from .config import load_config
from .errors import UserError

#: config fields that do not change a run's results (a cell is still reused when only these differ)
IGNORED = ("run.", "train.progress", "train.threads")


class StaleRunError(UserError):
    """A sweep cell's run directory holds a run trained with other settings than requested."""

# soft-DEEP R needs T > 0 (its theta_min = -T (1 - p) / (alpha p)); users may override it.
ALGORITHM_DEFAULTS = {"soft_deepr": ["rewiring.temperature=1e-5"]}
LABELS = {"deepr": "DEEP R", "soft_deepr": "soft-DEEP R", "fixed": "fixed random sparse",
          "magnitude_pruning": "magnitude pruning", "dense": "dense"}


def sweep(overrides: Sequence[str], out: Path, models: Sequence[str], algorithms: Sequence[str],
          connectivities: Sequence[float], rerun_stale: bool = False) -> Dict:
    from .train import train

    out.mkdir(parents=True, exist_ok=True)
    results: List[Dict] = []
    for model in models:
        for algo in algorithms:
            for p in connectivities:
                if p >= 1.0:
                    continue
                results.append(_one(train, overrides, out, model, algo, p, rerun_stale))
        if any(p >= 1.0 for p in connectivities):
            results.append(_one(train, overrides, out, model, "dense", 1.0, rerun_stale))
    table = markdown(results, models, algorithms, connectivities)
    (out / "sweep.md").write_text(table + "\n")
    atomic_write_json(out / "sweep.json", {"overrides": list(overrides), "results": results})
    plot(results, out / "sweep.png")
    print(table)
    print(f"written {out / 'sweep.md'}, {out / 'sweep.json'}, {out / 'sweep.png'}")
    return {"results": results}


def _one(train, overrides, out: Path, model: str, algo: str, p: float, rerun_stale: bool) -> Dict:
    run_dir = out / f"{model}_{algo}_{p:g}"
    summary_path = run_dir / "summary.json"
    cfg = load_config([f"model={model}", *ALGORITHM_DEFAULTS.get(algo, []), *overrides, f"rewiring.algorithm={algo}",
                       f"rewiring.connectivity={p}", f"run.dir={run_dir}"])
    changed = config_differences(run_dir, cfg)
    if changed and not rerun_stale:
        raise StaleRunError(f"{run_dir}: expected a run with the requested config, found one trained with "
                            f"{'; '.join(changed)}; pass --rerun-stale to retrain it, or choose another --out")
    if changed:
        print(f"[sweep] {run_dir} was trained with other settings; retraining it", flush=True)
        shutil.rmtree(run_dir)
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    elif (run_dir / "checkpoint.pt").exists():
        summary = train(resume=run_dir)
    else:
        print(f"[sweep] {model} {algo} {p:g} -> {run_dir}", flush=True)
        summary = train(cfg)
    active = sum(l["active"] for l in summary["layers"])
    possible = sum(l["possible"] for l in summary["layers"])
    return {"model": model, "algorithm": algo, "connectivity": p, "overall_connectivity": active / possible,
            "test_frame_accuracy": summary["test"]["frame_accuracy"], "run_dir": str(run_dir)}


def config_differences(run_dir: Path, requested: DictConfig) -> List[str]:
    """``["FIELD: SAVED in the run, REQUESTED requested", ...]`` between ``run_dir/config.yaml`` (filled
    up with today's defaults, as ``--resume`` reads it) and ``requested``; empty when there is no
    saved config or only :data:`IGNORED` fields differ."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return []
    saved = _flat(OmegaConf.to_container(load_config(base=OmegaConf.merge(load_config(), OmegaConf.load(path))),
                                         resolve=True))
    wanted = _flat(OmegaConf.to_container(requested, resolve=True))
    return [f"{key}: {saved.get(key, '(absent)')!r} in the run, {wanted.get(key, '(absent)')!r} requested"
            for key in sorted(set(saved) | set(wanted))
            if saved.get(key) != wanted.get(key) and not key.startswith(IGNORED)]


def _flat(tree, prefix: str = "") -> Dict:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def markdown(results: List[Dict], models, algorithms, connectivities) -> str:
    cols = sorted(set(connectivities))
    lines = ["| model | algorithm | " + " | ".join(f"{p:.0%}" for p in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    acc = {(r["model"], r["algorithm"], r["connectivity"]): r["test_frame_accuracy"] for r in results}
    for model in models:
        for algo in algorithms:
            cells = []
            for p in cols:
                key = (model, "dense" if p >= 1.0 else algo, p)
                cells.append(f"{acc[key]:.3f}" if key in acc else "–")
            lines.append(f"| {model} | {LABELS.get(algo, algo)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: List[Dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in results})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in results if r["model"] == model]
        dense = [r for r in rows if r["algorithm"] == "dense"]
        for algo in sorted({r["algorithm"] for r in rows} - {"dense"}):
            pts = sorted((r["connectivity"], r["test_frame_accuracy"]) for r in rows if r["algorithm"] == algo)
            ax.plot([p for p, _ in pts], [a for _, a in pts], marker="o", label=LABELS.get(algo, algo))
        if dense:
            ax.axhline(dense[0]["test_frame_accuracy"], color="k", ls="--", label="dense")
        ax.set_xscale("log"), ax.set_xlabel("connectivity"), ax.set_ylabel("test frame accuracy")
        ax.set_title(model), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
