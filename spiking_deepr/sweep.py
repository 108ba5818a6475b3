"""`sdr sweep`: test accuracy vs connectivity for DEEP R and the baselines over seeds, as Markdown, JSON, PNG.

For every model kind, algorithm and connectivity below 100 %, ``seeds`` runs are trained with the same
settings (``overrides`` apply to all; run k sets ``train.seed=k`` and ``model.seed=k``, so data order,
initial weights and rewiring noise all change); the 100 % column is the dense model, also over the
seeds. Each row of the table gives the requested connectivity next to the *final measured* one (over
the hidden matrices; per matrix in the JSON), the trainable connections at the end, and the test
accuracy as mean ± sample standard deviation over the seeds (sequence accuracy for sequence-labelled
tasks, frame accuracy otherwise), next to the same metric on the validation split at the best epoch
(what a choice between cells may rest on; the test column never should; the JSON also holds the best
epoch's validation loss, a tie-break where accuracies sit at a ceiling). The readout policy (see
`spiking_deepr.train.model_config_for`) is stated above the table.

A cell's run is reused (summary.json) or resumed (checkpoint.pt) only when its saved config equals the
requested one, so an interrupted sweep continues where it stopped; a cell trained with other settings
is refused with the differing fields (``rerun_stale=True``, ``sdr sweep --rerun-stale``: retrain it).
A reused cell trained on other code (another commit or library version, see
`spiking_deepr.provenance`) is reported on one line, and each run's commit is in the JSON.
"""
from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Dict, List, Sequence

from omegaconf import DictConfig, OmegaConf

from .checkpoint import atomic_write_json
from .config import load_config, saved_config
from .errors import UserError
from .provenance import code_changed

#: config fields that do not change a run's results (a cell is still reused when only these differ)
IGNORED = ("run.", "train.progress", "train.threads")
LABELS = {"deepr": "DEEP R", "soft_deepr": "soft-DEEP R", "set": "SET", "rigl": "RigL",
          "fixed": "fixed random sparse", "magnitude_pruning": "magnitude pruning", "dense": "dense"}


class StaleRunError(UserError):
    """A sweep cell's run directory holds a run trained with other settings than requested."""


def sweep(overrides: Sequence[str], out: Path, models: Sequence[str], algorithms: Sequence[str],
          connectivities: Sequence[float], seeds: int = 1, rerun_stale: bool = False) -> Dict:
    """Train (or reuse) every cell ``seeds`` times; write sweep.md, sweep.json and sweep.png in ``out``."""
    from .train import train

    if seeds < 1:
        raise UserError(f"sdr sweep: --seeds must be >= 1, got {seeds}")
    out.mkdir(parents=True, exist_ok=True)
    cells = [(model, algo, p) for model in models for algo in algorithms for p in connectivities if p < 1.0]
    cells += [(model, "dense", 1.0) for model in models if any(p >= 1.0 for p in connectivities)]
    runs = [_one(train, overrides, out, model, algo, p, k, rerun_stale)
            for model, algo, p in cells for k in range(seeds)]
    results = aggregate(runs)
    table = markdown(results)
    (out / "sweep.md").write_text(table + "\n")
    atomic_write_json(out / "sweep.json", {"overrides": list(overrides), "seeds": seeds, "results": results,
                                           "runs": runs})
    plot(results, out / "sweep.png")
    print(table)
    print(f"written {out / 'sweep.md'}, {out / 'sweep.json'}, {out / 'sweep.png'}")
    return {"results": results, "runs": runs}


def _one(train, overrides, out: Path, model: str, algo: str, p: float, seed: int, rerun_stale: bool) -> Dict:
    run_dir = out / (f"{model}_{algo}_{p:g}" + (f"_seed{seed}" if seed else ""))
    summary_path = run_dir / "summary.json"
    seeding = [f"train.seed={seed}", f"model.seed={seed}"] if seed else []
    cfg = load_config([f"model={model}", *overrides, *seeding, f"rewiring.algorithm={algo}",
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
        other_code = code_changed(summary.get("provenance"))
        if other_code:
            print(f"[sweep] {run_dir}: reused, trained on other code: {other_code}", flush=True)
    elif (run_dir / "checkpoint.pt").exists():
        summary = train(resume=run_dir)
    else:
        print(f"[sweep] {model} {algo} {p:g} seed {seed} -> {run_dir}", flush=True)
        summary = train(cfg)
    test, valid, conn = summary["test"], summary["valid"], summary["connectivity"]
    metric = "sequence_accuracy" if test.get("sequence_accuracy") is not None else "frame_accuracy"
    return {"model": model, "algorithm": algo, "connectivity": p, "seed": seed, "metric": metric,
            "accuracy": test[metric], "valid_accuracy": valid[metric], "valid_loss": valid["loss"],
            "test_frame_accuracy": test["frame_accuracy"], "test_sequence_accuracy": test.get("sequence_accuracy"),
            "measured_connectivity": conn["measured"],
            "per_matrix": {k: v["connectivity"] for k, v in conn["per_matrix"].items()},
            "trainable_connections": conn["trainable_connections"], "readout_policy": conn["readout"]["policy"],
            "best_epoch": summary.get("best_epoch"), "epochs": summary.get("epochs"),
            "wall_s": summary.get("wall_s"), "run_dir": str(run_dir),
            "git_commit": (summary.get("provenance") or {}).get("git_commit")}


def aggregate(runs: List[Dict]) -> List[Dict]:
    """One row per (model, algorithm, requested connectivity): mean and sample std over its seeds."""
    groups: Dict[tuple, List[Dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["algorithm"], r["connectivity"]), []).append(r)
    rows = []
    for (model, algo, p), rs in groups.items():
        acc, val = [r["accuracy"] for r in rs], [r["valid_accuracy"] for r in rs]
        rows.append({
            "model": model, "algorithm": algo, "connectivity": p, "n": len(rs), "metric": rs[0]["metric"],
            "mean": statistics.fmean(acc), "std": _std(acc), "accuracies": acc,
            "valid_mean": statistics.fmean(val), "valid_std": _std(val), "valid_accuracies": val,
            "valid_loss_mean": statistics.fmean(r["valid_loss"] for r in rs),
            "measured_connectivity": statistics.fmean(r["measured_connectivity"] for r in rs),
            "per_matrix": {k: statistics.fmean(r["per_matrix"][k] for r in rs) for k in rs[0]["per_matrix"]},
            "trainable_connections": round(statistics.fmean(r["trainable_connections"] for r in rs)),
            "readout_policy": rs[0]["readout_policy"],
            "wall_s": statistics.fmean(r["wall_s"] or 0.0 for r in rs),
        })
    return rows


def _std(xs: List[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def config_differences(run_dir: Path, requested: DictConfig) -> List[str]:
    """``["FIELD: SAVED in the run, REQUESTED requested", ...]`` between ``run_dir/config.yaml`` (filled
    up with today's defaults, as ``--resume`` reads it) and ``requested``; empty when there is no
    saved config or only :data:`IGNORED` fields differ."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return []
    saved = _flat(OmegaConf.to_container(saved_config(path), resolve=True))
    wanted = _flat(OmegaConf.to_container(requested, resolve=True))
    return [f"{key}: {saved.get(key, '(absent)')!r} in the run, {wanted.get(key, '(absent)')!r} requested"
            for key in sorted(set(saved) | set(wanted))
            if saved.get(key) != wanted.get(key) and not key.startswith(IGNORED)]


def _flat(tree, prefix: str = "") -> Dict:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def markdown(results: List[Dict]) -> str:
    """Rows: model, algorithm, requested and measured connectivity, trainable connections, validation and
    test mean ± std (n)."""
    if not results:
        return "(no runs)"
    metric = results[0]["metric"].replace("_", " ")
    lines = [f"{metric.capitalize()}, mean ± std over seeds (n): validation (best epoch) and test. Measured: "
             f"final connectivity of the input and recurrent matrices. Readout: {results[0]['readout_policy']}.", "",
             "| model | algorithm | requested | measured | trainable connections | valid | test | n |",
             "|---|---|---|---|---|---|---|---|"]
    order = {a: i for i, a in enumerate(LABELS)}
    for r in sorted(results, key=lambda r: (r["model"], r["connectivity"], order.get(r["algorithm"], 99))):
        lines.append(f"| {r['model']} | {LABELS.get(r['algorithm'], r['algorithm'])} | {r['connectivity']:.0%} | "
                     f"{r['measured_connectivity']:.2%} | {r['trainable_connections']:,} | "
                     f"{r['valid_mean']:.3f} ± {r['valid_std']:.3f} | {r['mean']:.3f} ± {r['std']:.3f} | {r['n']} |")
    return "\n".join(lines)


def plot(results: List[Dict], path: Path) -> None:
    """Accuracy vs requested connectivity per model, one line per algorithm with ±1 std error bars;
    dense as a horizontal line with its ±1 std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in results})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in results if r["model"] == model]
        for algo in [a for a in LABELS if a != "dense" and any(r["algorithm"] == a for r in rows)]:
            pts = sorted((r["connectivity"], r["mean"], r["std"]) for r in rows if r["algorithm"] == algo)
            ax.errorbar([p for p, _, _ in pts], [m for _, m, _ in pts], yerr=[s for _, _, s in pts], marker="o",
                        capsize=3, label=LABELS[algo])
        for r in (r for r in rows if r["algorithm"] == "dense"):
            ax.axhline(r["mean"], color="k", ls="--", label="dense")
            ax.axhspan(r["mean"] - r["std"], r["mean"] + r["std"], color="k", alpha=0.1)
        ax.set_xscale("log"), ax.set_xlabel("requested connectivity")
        ax.set_ylabel(f"test {rows[0]['metric'].replace('_', ' ')}" if rows else "accuracy")
        ax.set_title(model), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
