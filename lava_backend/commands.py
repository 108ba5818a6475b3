"""`sdr convert` and `sdr simulate`: a trained run directory -> Loihi resource report / Lava simulation."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from spiking_deepr.checkpoint import atomic_write_json
from spiking_deepr.errors import UserError
from spiking_deepr.rundir import ensure_writable
from spiking_deepr.pooling import pool_logits


def convert_run(run_dir: Path, profile: str = "loihi2") -> Dict:
    """Map the run's network onto ``profile``; writes ``resources.json`` and prints a summary.

    The report has ``{"profile", "fits", "cores", "neurons", "synapses", "max_fan_in",
    "capability_violations", "violations", "requirements", "layers"}``; a network that needs a
    capability the profile lacks, or breaks a limit, is reported (fits = false) with every
    violation (`sdr convert` exits with 2 for missing capabilities, 1 for broken limits)."""
    from spiking_deepr.train import load_run

    from .hardware import describe_capability_violation, map_network

    _, task, model = load_run(run_dir)
    ensure_writable(Path(run_dir))  # before the work whose report could not be saved
    spec = model.to_spec()
    report = map_network(spec, profile)
    report["cost_per_inference"] = test_split_cost(model, task, spec, profile, report)
    atomic_write_json(Path(run_dir) / "resources.json", report)
    missing = report["capability_violations"]
    if missing:
        print(f"sdr convert: {run_dir} cannot run on {report['profile']}: the network needs "
              f"{len(missing)} capability(ies) the profile lacks:\n"
              + "\n".join("  " + describe_capability_violation(v, report["profile"]) for v in missing))
    print(f"profile {report['profile']}: {'fits' if report['fits'] else 'DOES NOT FIT'} — "
          f"{report['cores']} cores, {report['neurons']:,} neurons, {report['synapses']:,} synapses, "
          f"max fan-in {report['max_fan_in']}")
    for v in report["violations"][:20]:
        print(f"  violation: layer {v['layer']!r} neuron {v['neuron']}: {v['what']} = {v['value']} > {v['limit']}")
    if len(report["violations"]) > 20:
        print(f"  ... {len(report['violations']) - 20} more in resources.json")
    cost = report["cost_per_inference"]
    if cost:
        print(cost_line(cost))
    print(f"written {Path(run_dir) / 'resources.json'}")
    return report


def test_split_cost(model, task, spec, profile, mapping, batch_size: int = 64) -> Optional[Dict]:
    """Cost per inference (`lava_backend.cost`) from the PyTorch model's activity on the whole
    test split."""
    from tasks.base import collate_time_major

    from .cost import CostCounter

    if len(task.test) == 0:
        return None
    counter = CostCounter(spec)
    for start in range(0, len(task.test), batch_size):
        batch = collate_time_major([task.test[i] for i in range(start, min(start + batch_size, len(task.test)))])
        layers, _ = torch_outputs(model, batch.x, batch.lengths)
        counter.add(network_input(model, batch), batch.lengths.numpy(), layers)
    return counter.report(profile, mapping)


def cost_line(cost: Dict) -> str:
    """One line: the cost per inference."""
    ops = cost["synaptic_ops_per_sample"]
    rate = cost["spikes_per_neuron_per_step"]
    return (f"cost per inference ({cost['profile']}, {cost['sequences']} test sequences, "
            f"{cost['steps_per_sample']:.0f} steps): connection sparsity {cost['connection_sparsity']:.3f}, "
            + (f"{rate:.4f} spikes/neuron/step, " if rate is not None else "")
            + f"{ops['effective_total']:,.0f} synaptic ops vs {ops['dense_equivalent_macs']:,.0f} dense MACs "
            f"({cost['ops_fraction_of_dense']:.2%}), ~{cost['energy_per_sample_uj']:.2f} uJ, "
            f"~{cost['latency_per_sample_us']:.0f} us (estimates)")


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


QUANT_FILE = "quantization.json"


def network_input(model, batch) -> np.ndarray:
    """The network's input for a time-major batch as the converted network receives it:
    [N, T, F] float64 (spike-encoded first if the model has an input encoder)."""
    return model.encode_input(batch.x).transpose(0, 1).double().numpy()


def calibration_inputs(task, samples: int = 64, seed: int = 0, model=None) -> Tuple[np.ndarray, np.ndarray]:
    """x [N, T, F] (float64) and lengths [N] of ``samples`` training sequences drawn with a seeded
    generator: what fixed-point scales are calibrated on (never the sequences that are scored).
    With ``model``, x is the network input it makes of them (`network_input`)."""
    from tasks.base import collate_time_major

    n = min(int(samples), len(task.train))
    if n < 1:
        raise ValueError("calibration needs training sequences, but the training split is empty")
    idx = np.sort(np.random.default_rng(seed).choice(len(task.train), size=n, replace=False))
    batch = collate_time_major([task.train[int(i)] for i in idx])
    x = batch.x.transpose(0, 1).double().numpy() if model is None else network_input(model, batch)
    return x, batch.lengths.numpy()


def run_quantization(run_dir: Path, task, spec, calib_samples: int = 64, model=None):
    """(QuantizedNetwork, how it was made) for a run: the formats saved by ``sdr finetune --qat``
    (``quantization.json``) if present, else scales calibrated on training sequences."""
    from .quantize import QuantFormats, quantize_network

    path = Path(run_dir) / QUANT_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        formats = QuantFormats.from_dict(saved.get("formats", {}), where=str(path))
        return quantize_network(spec, formats=formats), {"source": str(path), **saved.get("calibration", {})}
    x, lengths = calibration_inputs(task, calib_samples, model=model)
    q = quantize_network(spec, calib_x=x, calib_lengths=lengths)
    return q, {"source": "calibrated", "split": "train", "sequences": int(len(lengths)),
               "frames": int(lengths.sum())}


class _Scores:
    """Counts for one engine against the PyTorch model over batches of test sequences."""

    def __init__(self, task, spiking: bool, pooling: str = "mean") -> None:
        self.fold = task.eval_fold if task.eval_fold is not None else np.arange(task.n_classes)
        self.sequence_task, self.spiking, self.pooling = task.sequence_task, spiking, pooling
        self.c = dict(sequences=0, frames=0, steps=0, torch_correct=0, correct=0, agree=0,
                      spikes_equal=0, spikes_total=0, torch_seq_correct=0, seq_correct=0, seq_agree=0)

    def add(self, batch, torch_layers, torch_logits, result) -> None:
        """batch: time-major Batch; torch_* / result: [N, T, ...] of the same sequences."""
        c, fold = self.c, self.fold
        y = batch.y.transpose(0, 1).numpy()
        lengths = batch.lengths.numpy()
        valid = np.arange(y.shape[1])[None, :] < lengths[:, None]
        labelled = (y >= 0) & valid
        pred, tpred = result.readout.argmax(-1), torch_logits.argmax(-1)
        truth = fold[np.maximum(y, 0)]
        c["sequences"] += len(lengths)
        c["frames"] += int(labelled.sum())
        c["steps"] += int(valid.sum())
        c["torch_correct"] += int((fold[tpred] == truth)[labelled].sum())
        c["correct"] += int((fold[pred] == truth)[labelled].sum())
        c["agree"] += int((pred == tpred)[valid].sum())
        for a, b in zip(torch_layers, result.layers):
            steps = np.repeat(valid, a.shape[1] // valid.shape[1], axis=1)  # n_repeat steps per frame
            same = (a == b) if self.spiking else (np.abs(a - b) <= 1e-5)
            c["spikes_equal"] += int(same[steps].sum())
            c["spikes_total"] += int(steps.sum()) * a.shape[-1]
        if self.sequence_task:  # as training scores sequences: the run's pooling over valid frames
            sp, tp = (pool_logits(torch.from_numpy(r).transpose(0, 1), batch.lengths, self.pooling).argmax(-1).numpy()
                      for r in (result.readout, torch_logits))
            labels = batch.seq_labels.numpy()
            c["torch_seq_correct"] += int((tp == labels).sum())
            c["seq_correct"] += int((sp == labels).sum())
            c["seq_agree"] += int((sp == tp).sum())

    def report(self) -> Dict:
        c = self.c
        f, s = max(c["frames"], 1), max(c["sequences"], 1)
        out = {"sequences": c["sequences"], "frames": c["frames"],
               "torch_frame_accuracy": c["torch_correct"] / f, "frame_accuracy": c["correct"] / f,
               "prediction_agreement": c["agree"] / max(c["steps"], 1),
               "spike_agreement": c["spikes_equal"] / max(c["spikes_total"], 1)}
        out["accuracy_drop"] = out["torch_frame_accuracy"] - out["frame_accuracy"]
        if self.sequence_task:
            out.update(torch_sequence_accuracy=c["torch_seq_correct"] / s,
                       sequence_accuracy=c["seq_correct"] / s,
                       sequence_prediction_agreement=c["seq_agree"] / s)
        return out


def simulate_run(run_dir: Path, precision: str = "float", engine: str = "emulator",
                 samples: Optional[int] = None, timeout: float = 600.0, calib_samples: int = 64,
                 batch_size: int = 64, progress: bool = True) -> Dict:
    """Score the run's network as Lava runs it, against the float PyTorch model; writes
    ``lava_eval_<precision>.json`` and a copy as ``lava_eval.json``.

    engine "emulator" (default): the bit-exact batched emulator (:mod:`.emulator`) on the first
    ``samples`` test sequences (default: the whole test split), in batches of similar length.
    engine "lava": Lava's CPU simulator on the first ``samples`` (default 8) test sequences, the
    verification path; the emulator runs on the same sequences and ``equal_to_emulator`` says
    whether every spike and readout value agree (fixed point: bit for bit; float: readout
    within 1e-9). Each engine's section is kept in the file until the checkpoint changes.

    Fixed point is quantised with the formats saved by ``sdr finetune --qat`` if the run has
    them, else with scales calibrated on ``calib_samples`` *training* sequences.
    Per engine: sequences, frames (labelled), frame accuracy of both, prediction agreement
    (steps where both predict the same class), spike agreement ((neuron, step) pairs; LSTM:
    outputs within 1e-5), for sequence tasks sequence accuracy and agreement."""
    from spiking_deepr.train import load_run
    from tasks.base import collate_time_major

    from .cost import CostCounter
    from .emulator import emulate, length_batches

    if engine not in ("emulator", "lava"):
        raise ValueError(f"engine must be 'emulator' or 'lava', got {engine!r}")
    if samples is not None and samples < 1:
        raise UserError(f"samples: expected at least 1 test sequence to simulate, found {samples}")
    run_dir = Path(run_dir)
    cfg, task, model = load_run(run_dir)
    ensure_writable(run_dir)  # before the work whose result could not be saved
    if len(task.test) < 1:
        raise UserError(f"{run_dir}: expected a non-empty test split, found 0 sequences")
    n = len(task.test) if samples is None and engine == "emulator" else min(samples or 8, len(task.test))
    spec = model.to_spec()
    quant, calibration = (run_quantization(run_dir, task, spec, calib_samples, model) if precision == "fixed"
                          else (None, None))
    scores = _Scores(task, spiking=cfg.model.kind != "lstm", pooling=cfg.train.pooling)
    section: Dict = {}
    cost = CostCounter(spec)  # activity of the simulated network -> cost per inference
    t0 = time.perf_counter()
    if engine == "emulator":
        lengths = task.test.lengths[:n]
        batches = list(length_batches(lengths, batch_size))
        for idx in _progress(batches, progress, f"emulating {n} test sequences ({precision})"):
            batch = collate_time_major([task.test[int(i)] for i in idx])
            x, L = network_input(model, batch), batch.lengths.numpy()
            result = emulate(spec, x, L, precision, quant)
            scores.add(batch, *torch_outputs(model, batch.x, batch.lengths), result)
            cost.add(x, L, result.layers)
    else:
        from .simulate import simulate

        import_lava_runtime()
        batch = collate_time_major([task.test[i] for i in range(n)])
        x, L = network_input(model, batch), batch.lengths.numpy()
        result = simulate(spec, x, L, precision=precision, quant=quant, timeout=timeout)
        scores.add(batch, *torch_outputs(model, batch.x, batch.lengths), result)
        cost.add(x, L, result.layers)
        section.update(equal_to_emulator=_equal(result, emulate(spec, x, L, precision, quant), precision),
                       steps_per_second=float(result.steps_per_second),
                       sequence_steps_per_second=float(result.sequence_steps_per_second),
                       lava_steps=int(result.lava_steps), lanes=int(result.lanes))
    section = {**scores.report(), **section, "seconds": time.perf_counter() - t0,
               "cost_per_inference": cost.report(cfg.hardware.profile or "loihi2")}

    out = run_dir / f"lava_eval_{precision}.json"
    weights = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "checkpoint.pt"
    fingerprint = _file_digest(weights)                 # the weights load_run used
    report = json.loads(out.read_text()) if out.is_file() else {}
    if report.get("checkpoint") != fingerprint or report.get("calibration") != calibration:
        report = {}                                  # the other engine's numbers are stale
    report.update(precision=precision, checkpoint=fingerprint, calibration=calibration)
    if quant is not None:
        report["quantization"] = quant.report()
    report[engine] = section
    for path in (out, run_dir / "lava_eval.json"):   # one per precision, and the latest
        atomic_write_json(path, report)
    print(_summary_line(precision, engine, section))
    print(f"written {out} (and lava_eval.json)")
    return report


def _summary_line(precision: str, engine: str, r: Dict) -> str:
    line = (f"{engine} ({precision}) on {r['sequences']} test sequences, {r['frames']:,} frames: frame accuracy "
            f"{r['frame_accuracy']:.4f} vs PyTorch {r['torch_frame_accuracy']:.4f}; prediction agreement "
            f"{r['prediction_agreement']:.4f}; spike agreement {r['spike_agreement']:.4f}")
    if "sequence_accuracy" in r:
        line += (f"; sequence accuracy {r['sequence_accuracy']:.4f} vs PyTorch {r['torch_sequence_accuracy']:.4f}")
    if "equal_to_emulator" in r:
        line += f"; equal to the emulator: {r['equal_to_emulator']}; {r['steps_per_second']:.0f} Lava steps/s"
    return line


def _equal(a, b, precision: str) -> bool:
    """Lava result == emulator result: every layer output, and the readout (fixed: raw integers)."""
    layers = all(np.array_equal(x, y) for x, y in zip(a.layers, b.layers))
    if precision == "fixed":
        return layers and np.array_equal(a.readout_int, b.readout_int)
    return layers and bool(np.abs(a.readout - b.readout).max(initial=0.0) <= 1e-9)


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None)
