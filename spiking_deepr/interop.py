"""`sdr export` and `sdr import-nir`: a trained run -> NIR file; a NIR file -> SequenceModel checked in Lava."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from .checkpoint import atomic_write_json

FORMATS = ("nir", "netx")
SUFFIX = {"nir": ".nir", "netx": ".netx.h5"}


def _without_adaptation(model):
    """A copy of ``model`` whose ALIF neurons have beta = 0 (plain LIF): what --drop-adaptation exports."""
    from .layers.alif import SparseALIFRecurrent

    plain = copy.deepcopy(model)
    for layer in plain.layers:
        if isinstance(layer, SparseALIFRecurrent):
            layer.beta.zero_()
    return plain


def export_run(run_dir: Path, fmt: str = "nir", out: Optional[Path] = None, drop_adaptation: bool = False) -> Dict:
    """Write the run's network as ``fmt`` (default ``RUN/network.nir`` / ``RUN/network.netx.h5``) and
    ``<out>.json`` beside it (also returned).

    nir: see :mod:`.nir_export`. With ``drop_adaptation`` ALIF layers are exported as LIF; the
    test-split accuracy of the model with and without adaptation is written to ``<out>.adaptation.json``.
    netx: the fixed-point network (quantised as ``sdr simulate --precision fixed`` does, then with
    netx's one-exponent-per-layer integer weights, :mod:`lava_backend.netx_export`)."""
    from .errors import UserError
    from .export import ALIFLayerSpec
    from .nir_export import drop_adaptation as drop
    from .train import evaluate, load_run

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {FORMATS}, got {fmt!r}")
    cfg, task, model = load_run(Path(run_dir))
    spec = model.to_spec()
    out = Path(out) if out else Path(run_dir) / f"network{SUFFIX[fmt]}"
    report = {"format": fmt, "file": str(out), "run": str(run_dir)}
    if any(isinstance(ls, ALIFLayerSpec) for ls in spec.layers) and drop_adaptation:
        warnings.warn("exporting ALIF layers as LIF (--drop-adaptation): the exported network differs from "
                      "the trained one", stacklevel=2)
        with torch.no_grad():
            before = evaluate(model, task, "test", cfg.train.eval_batch_size)
            after = evaluate(_without_adaptation(model), task, "test", cfg.train.eval_batch_size)
        change = {"split": "test", "frame_accuracy_with_adaptation": before["frame_accuracy"],
                  "frame_accuracy_without_adaptation": after["frame_accuracy"],
                  "change": after["frame_accuracy"] - before["frame_accuracy"]}
        atomic_write_json(out.with_name(out.name + ".adaptation.json"), change)
        report["dropped_adaptation"] = change
        spec = drop(spec)
    report.update(_write_nir(spec, out, run_dir) if fmt == "nir" else _write_netx(spec, out, run_dir, task))
    atomic_write_json(out.with_name(out.name + ".json"), report)
    return report


def _write_nir(spec, out: Path, run_dir: Path) -> Dict:
    from .nir_export import spec_to_nir, write_nir

    graph = spec_to_nir(spec, source=str(run_dir))
    write_nir(graph, out)
    stored = sum(int(np.asarray(n.weight).size) for n in graph.nodes.values() if hasattr(n, "weight"))
    active = sum(ls.w_in.nnz + (ls.w_rec.nnz if ls.w_rec is not None else 0) for ls in spec.layers)
    active += spec.readout.weights.nnz
    return {"weights": "dense (dormant connections are 0)", "dt": spec.dt,
            "nodes": {k: type(v).__name__ for k, v in graph.nodes.items()}, "edges": graph.edges,
            "stored_weights": stored, "active_connections": active,
            "summary": f"{len(graph.nodes)} nodes, {stored:,} stored weights for {active:,} active connections"}


def _write_netx(spec, out: Path, run_dir: Path, task) -> Dict:
    from lava_backend.commands import run_quantization
    from lava_backend.netx_export import netx_quantization, write_netx

    base, calibration = run_quantization(run_dir, task, spec)
    q = netx_quantization(base)
    written = write_netx(q, out)
    acc = _fixed_point_accuracy(task, spec, {"netx": q, "default": base})
    return {**written, "calibration": calibration, "quantization": q.report(),
            "default_quantization": base.report(),
            "test_frame_accuracy_fixed_point": acc,
            "readout": "not exported (netx layers emit spikes; the readout stays in the run)",
            "summary": f"{len(q.layers)} CUBA layers, weight_exp -1; fixed-point test frame accuracy "
                       f"{acc['netx']:.4f} with the netx weights vs {acc['default']:.4f} with the default "
                       f"quantisation (bit-exact emulator)"}


def _fixed_point_accuracy(task, spec, quants: Dict, batch_size: int = 64) -> Dict[str, float]:
    """Test-split frame accuracy of each fixed-point quantisation, by the bit-exact emulator."""
    from lava_backend.emulator import emulate, length_batches
    from tasks.base import collate_time_major

    from .train import masked_loss_and_counts

    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold, dtype=torch.long)
    correct, frames = dict.fromkeys(quants, 0), 0
    for idx in length_batches(task.test.lengths, batch_size):
        batch = collate_time_major([task.test[int(i)] for i in idx])
        x, lengths = batch.x.transpose(0, 1).double().numpy(), batch.lengths.numpy()
        for name, q in quants.items():
            y = torch.as_tensor(emulate(spec, x, lengths, "fixed", q).readout).transpose(0, 1)
            _, c, n = masked_loss_and_counts(y, batch.y, fold)
            correct[name] += c
        frames += n
    return {name: c / max(frames, 1) for name, c in correct.items()}


def import_nir(path: Path, dt: float, out: Path, check_sequences: int = 4, steps: int = 50,
               timeout: float = 300.0) -> Dict:
    """Build a SequenceModel from a NIR file, save it (``out/model.pt``), and run it in Lava (float) on
    ``check_sequences`` random input sequences against the PyTorch model; writes ``out/import.json``."""
    from dataclasses import asdict

    from lava_backend.commands import import_lava_runtime, torch_outputs

    import io

    from .checkpoint import atomic_write_bytes
    from .nir_import import read_nir_model

    model, spec = read_nir_model(path, dt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"model_config": asdict(model.cfg), "n_features": model.n_features, "n_classes": model.n_classes,
                "state_dict": model.state_dict()}, buffer)
    atomic_write_bytes(out / "model.pt", buffer.getvalue())
    report = {"file": str(path), "dt": dt, "layers": [{"n": ls.n, "recurrent": ls.w_rec is not None,
                                                        "connections": ls.w_in.nnz + (ls.w_rec.nnz if ls.w_rec else 0)}
                                                       for ls in spec.layers],
              "readout": spec.readout.kind, "model": str(out / "model.pt")}
    if check_sequences > 0:
        import_lava_runtime()
        from lava_backend.simulate import simulate

        x = torch.randn(steps, check_sequences, spec.n_input, generator=torch.Generator().manual_seed(0))
        layers, _ = torch_outputs(model, x, torch.full((check_sequences,), steps))
        res = simulate(model.to_spec(), x.transpose(0, 1).numpy(), timeout=timeout)
        agree = [float(np.mean(a == b)) for a, b in zip(res.layers, layers)]
        report["lava_check"] = {"sequences": check_sequences, "steps": steps, "spike_agreement": agree,
                                "spikes": [int(b.sum()) for b in layers]}
    atomic_write_json(out / "import.json", report)
    return report
