"""`sdr convert` and `sdr simulate`: a trained run directory -> Loihi resource report / Lava simulation."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from spiking_deepr.checkpoint import atomic_write_json


def convert_run(run_dir: Path, profile: str = "loihi2") -> Dict:
    """Map the run's network onto ``profile``; writes ``resources.json`` and prints a summary.

    The report has ``{"profile", "fits", "cores", "neurons", "synapses", "max_fan_in", "violations",
    "layers"}``; a network that breaks a limit is reported (fits = false) with every violation."""
    from spiking_deepr.train import load_run

    from .hardware import map_network

    _, _, model = load_run(run_dir)
    report = map_network(model.to_spec(), profile)
    atomic_write_json(Path(run_dir) / "resources.json", report)
    print(f"profile {report['profile']}: {'fits' if report['fits'] else 'DOES NOT FIT'} — "
          f"{report['cores']} cores, {report['neurons']:,} neurons, {report['synapses']:,} synapses, "
          f"max fan-in {report['max_fan_in']}")
    for v in report["violations"][:20]:
        print(f"  violation: layer {v['layer']!r} neuron {v['neuron']}: {v['what']} = {v['value']} > {v['limit']}")
    if len(report["violations"]) > 20:
        print(f"  ... {len(report['violations']) - 20} more in resources.json")
    print(f"written {Path(run_dir) / 'resources.json'}")
    return report


def torch_outputs(model, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[List[np.ndarray], np.ndarray]:
    """Per-layer outputs [N, T, n] and readout [N, T, C] of the PyTorch model for x [T, N, F]."""
    captured: List[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda mod, inp, out: captured.append(out[0].detach()))
             for layer in model.layers]
    try:
        with torch.no_grad():
            logits = model(x, lengths)
    finally:
        for h in hooks:
            h.remove()
    layers = [c.transpose(0, 1).double().numpy() for c in captured]
    return layers, logits.transpose(0, 1).double().numpy()


def import_lava_runtime() -> None:
    """Import Lava's runtime even after numba or torch fixed the multiprocessing start method.

    Lava calls ``multiprocessing.set_start_method('fork')`` when its runtime is first imported, which
    raises if the method is already set — and numba's parallel kernels set it (to 'fork') on first use.
    Clearing an already-'fork' default lets Lava set the very same method; anything else is refused."""
    import multiprocessing
    import sys

    if "lava.magma.runtime.runtime" in sys.modules:
        return
    default = multiprocessing.context._default_context
    current = default.get_start_method(allow_none=True)
    if current not in (None, "fork"):
        raise RuntimeError(f"Lava needs the 'fork' multiprocessing start method, but {current!r} is already set")
    default._actual_context = None
    import lava.magma.runtime.runtime  # noqa: F401


def simulate_run(run_dir: Path, precision: str = "float", samples: int = 8, timeout: float = 600.0) -> Dict:
    """Run the first ``samples`` test sequences through Lava and through PyTorch; writes lava_eval.json.

    Reports frame accuracy of both (on labelled frames, folded for scoring like training),
    ``spike_agreement`` (fraction of equal (neuron, step) spike values over valid steps of all
    spiking layers; for LSTMs the fraction of outputs within 1e-5), ``prediction_agreement`` (frames
    where both predict the same class) and Lava's ``steps_per_second``. Also kept as
    ``lava_eval_<precision>.json`` so float and fixed results live side by side."""
    from spiking_deepr.train import load_run
    from tasks.base import collate_time_major

    from .simulate import simulate

    import_lava_runtime()
    cfg, task, model = load_run(run_dir)
    n = min(samples, len(task.test))
    if n < 1:
        raise ValueError(f"{run_dir}: the test split is empty")
    batch = collate_time_major([task.test[i] for i in range(n)])
    torch_layers, torch_logits = torch_outputs(model, batch.x, batch.lengths)
    spec = model.to_spec()
    x = batch.x.transpose(0, 1).double().numpy()
    lengths = batch.lengths.numpy()
    result = simulate(spec, x, lengths, precision=precision, timeout=timeout)

    y = batch.y.transpose(0, 1).numpy()  # [N, T]
    valid_steps = np.arange(x.shape[1])[None, :] < lengths[:, None]
    labelled = (y >= 0) & valid_steps
    fold = task.eval_fold if task.eval_fold is not None else np.arange(task.n_classes)
    lava_pred, torch_pred = result.readout.argmax(-1), torch_logits.argmax(-1)
    report = {
        "precision": precision,
        "samples": n,
        "frames": int(labelled.sum()),
        "torch_frame_accuracy": float((fold[torch_pred] == fold[np.maximum(y, 0)])[labelled].mean()),
        "lava_frame_accuracy": float((fold[lava_pred] == fold[np.maximum(y, 0)])[labelled].mean()),
        "prediction_agreement": float((lava_pred == torch_pred)[valid_steps].mean()),
        "spike_agreement": _agreement(torch_layers, result.layers, valid_steps, spiking=cfg.model.kind != "lstm"),
        "steps_per_second": float(result.steps_per_second),
        "sequence_steps_per_second": float(result.sequence_steps_per_second),
        "lava_steps": int(result.lava_steps),
    }
    report["accuracy_drop"] = report["torch_frame_accuracy"] - report["lava_frame_accuracy"]
    for name in ("lava_eval.json", f"lava_eval_{precision}.json"):  # the latest, and one per precision
        atomic_write_json(Path(run_dir) / name, report)
    print(json.dumps(report, indent=2))
    print(f"written {Path(run_dir) / 'lava_eval.json'} (and lava_eval_{precision}.json)")
    return report


def _agreement(torch_layers, lava_layers, valid_steps, spiking: bool) -> float:
    equal, total = 0, 0
    for a, b in zip(torch_layers, lava_layers):
        same = (a == b) if spiking else (np.abs(a - b) <= 1e-5)
        equal += int(same[valid_steps].sum())
        total += int(valid_steps.sum()) * a.shape[-1]
    return equal / max(total, 1)
