"""Training, evaluation and resumable runs.

A run directory holds::

    config.yaml        the resolved configuration
    checkpoint.pt      model + optimizers + rewiring + history after the last finished epoch (atomic)
    metrics.jsonl      one JSON object per epoch (loss, frame accuracy, connectivity and rewiring counts)
    summary.json       final test metrics, per-matrix connectivity, epochs, wall time
    curves.png, connectivity.png

`train` resumes from ``checkpoint.pt`` when asked: data order, DEEP R noise and regrowth are all
seeded or stored, so a killed and resumed run ends with the same numbers as an uninterrupted one.
Under ``torchrun`` (WORLD_SIZE > 1) each rank takes a slice of every batch, gradients are averaged
with all-reduce before the optimizer steps, and since every rank's rewiring generator starts from the
same seed, connectivity stays identical on all ranks (checked at the end).
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from tasks.base import Task, build_task, collate_time_major

from .checkpoint import (atomic_write_bytes, atomic_write_json, dumps_strict, load_checkpoint, load_model_state,
                         save_checkpoint)
from .config import load_config, to_yaml
from .errors import TrainingDivergedError, UserFileNotFoundError
from .model import SequenceModel
from .rewiring import DeepR, DeepRAdam, MagnitudePruning, SoftDeepR
from .rundir import RunExistsError, RunLock, remove_stale_temporaries

FORMAT = "spiking_deepr/1"


# ----------------------------------------------------------------------------------------- set-up
def model_config_for(cfg: DictConfig) -> DictConfig:
    """The model config with the rewiring budget and the hardware fan-in cap filled in."""
    mcfg = cfg.model.copy()
    algo = cfg.rewiring.algorithm
    mcfg.connectivity = 1.0 if algo in ("dense", "magnitude_pruning") else cfg.rewiring.connectivity
    if algo == "dense":
        for key in ("input_connectivity", "recurrent_connectivity", "readout_connectivity"):
            if key in mcfg:
                mcfg[key] = None
    if cfg.hardware.profile and cfg.hardware.cap_fan_in:
        from lava_backend.hardware import fan_in_cap

        # The profile caps a neuron's *total* fan-in; a recurrent layer's neuron is fed by two
        # matrices (input and recurrent), each capped on its own, so each gets half.
        cap = max(1, fan_in_cap(cfg.hardware.profile) // 2)
        mcfg.fan_in_cap = cap if mcfg.fan_in_cap is None else min(cap, mcfg.fan_in_cap)
    return mcfg


def build_model(cfg: DictConfig, task: Task) -> SequenceModel:
    return SequenceModel(model_config_for(cfg), n_features=task.n_features, n_classes=task.n_classes)


@dataclass
class Optimizers:
    """The optimizers of a run: ``sparse`` steps the SparseMatrix magnitudes (a rewiring optimizer or
    Adam), ``dense`` the other parameters; ``pruning`` is the magnitude-pruning schedule if used."""

    sparse: torch.optim.Optimizer
    dense: Optional[torch.optim.Optimizer]
    pruning: Optional[MagnitudePruning] = None

    def all(self) -> List[torch.optim.Optimizer]:
        return [o for o in (self.sparse, self.dense) if o is not None]


def build_optimizers(cfg: DictConfig, model: SequenceModel) -> Optimizers:
    r, o = cfg.rewiring, cfg.optim
    mats = list(model.sparse_matrices().values())
    dense_params = list(model.dense_parameters())
    betas = tuple(o.betas)
    dense = torch.optim.Adam(dense_params, lr=o.lr, betas=betas) if dense_params else None
    seed = cfg.train.seed
    if r.algorithm == "deepr":
        cls_kwargs = dict(betas=betas) if r.adam else {}
        cls = DeepRAdam if r.adam else DeepR
        sparse = cls(mats, lr=o.lr, temperature=r.temperature, l1=r.l1, global_budget=r.global_budget,
                     seed=seed, **cls_kwargs)
        return Optimizers(sparse, dense)
    if r.algorithm == "soft_deepr":
        sparse = SoftDeepR(mats, lr=o.lr, temperature=r.temperature, l1=r.l1, connectivity=r.connectivity,
                           adam=r.adam, betas=betas, seed=seed)
        return Optimizers(sparse, dense)
    # fixed / dense / pruning: the magnitudes are ordinary weights (theta may change sign)
    sparse = torch.optim.Adam([m.theta for m in mats], lr=o.lr, betas=betas)
    pruning = None
    if r.algorithm == "magnitude_pruning":
        pruning = MagnitudePruning(mats, r.connectivity, r.prune_start_epoch, r.prune_end_epoch, sparse)
    return Optimizers(sparse, dense, pruning)


# ----------------------------------------------------------------------------------------- metrics
def masked_loss_and_counts(logits: torch.Tensor, y: torch.Tensor, fold: Optional[torch.Tensor] = None):
    """Cross entropy over labelled frames (y >= 0) and frame-accuracy counts.

    logits [T, B, C], y [T, B] (-1 = ignore). ``fold`` maps a training class to a scoring class
    (TIMIT 48 -> 39); accuracy is counted after folding both prediction and label.
    Returns (mean loss, correct frames, labelled frames)."""
    valid = y >= 0
    n = int(valid.sum())
    if n == 0:
        return logits.sum() * 0.0, 0, 0
    flat_logits, flat_y = logits[valid], y[valid]
    loss = torch.nn.functional.cross_entropy(flat_logits, flat_y)
    pred = flat_logits.argmax(-1)
    if fold is not None:
        pred, flat_y = fold[pred], fold[flat_y]
    return loss, int((pred == flat_y).sum()), n


@torch.no_grad()
def evaluate(model: SequenceModel, task: Task, split: str, batch_size: int, progress: bool = False) -> Dict:
    """Frame accuracy (folded for scoring), mean loss and, for sequence tasks, sequence accuracy."""
    dataset = getattr(task, split)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_time_major)
    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold, dtype=torch.long)
    model.eval()
    loss_sum, correct, frames, seq_correct, seqs = 0.0, 0, 0, 0, 0
    for batch in _progress(loader, progress, f"eval {split}"):
        logits = model(batch.x, batch.lengths)
        loss, c, n = masked_loss_and_counts(logits, batch.y, fold)
        loss_sum += float(loss) * n
        correct += c
        frames += n
        if task.sequence_task:
            valid = (batch.y >= 0).unsqueeze(-1)
            mean_logits = (logits * valid).sum(0) / valid.sum(0).clamp(min=1)
            seq_correct += int((mean_logits.argmax(-1) == batch.seq_labels).sum())
            seqs += batch.seq_labels.numel()
    return {
        "loss": loss_sum / max(frames, 1),
        "frame_accuracy": correct / max(frames, 1),
        "sequence_accuracy": (seq_correct / seqs) if task.sequence_task else None,
        "frames": frames,
    }


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None)  # None: off without a TTY


def connectivity_fingerprint(model: SequenceModel) -> str:
    h = hashlib.sha256()
    for name, m in model.sparse_matrices().items():
        h.update(name.encode())
        h.update(m.indices.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------- training
class Distributed:
    """torch.distributed helpers; a no-op world of one without torchrun."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, params: List[torch.Tensor]) -> None:
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def gather(self, obj):
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def new_run_dir(cfg: DictConfig) -> Path:
    if cfg.run.dir:
        return Path(cfg.run.dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / stamp


def train(cfg: Optional[DictConfig] = None, *, resume: Optional[Path] = None,
          stop_after_epoch: Optional[int] = None) -> Dict:
    """Train (or resume) a run; returns the summary dict (also written to summary.json).

    The main process holds the run directory's lock (:class:`~spiking_deepr.rundir.RunLock`) until
    it returns or raises. Every epoch first writes ``checkpoint.pt``, then appends the metrics line;
    resuming rewrites ``metrics.jsonl`` from the checkpoint's history, so a crash between the two
    neither loses nor repeats an epoch. A NaN/inf loss, gradient or weight stops training with
    :class:`~spiking_deepr.errors.TrainingDivergedError` before anything is saved.
    ``stop_after_epoch`` ends the process's work after that epoch as if it had been killed there
    (used to test resumption)."""
    dist = Distributed()
    if resume is not None:
        run_dir = Path(resume)
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise UserFileNotFoundError(f"cannot resume: no config.yaml in {run_dir}")
        cfg = load_config(base=OmegaConf.merge(load_config(), OmegaConf.load(cfg_path)))
    else:
        cfg = cfg if cfg is not None else load_config()
        run_dir = new_run_dir(cfg)
    cfg.run.dir = str(run_dir)
    with RunLock(run_dir) if dist.main else nullcontext():
        return _train_locked(cfg, run_dir, resume, dist, stop_after_epoch)


def _train_locked(cfg: DictConfig, run_dir: Path, resume: Optional[Path], dist: Distributed,
                  stop_after_epoch: Optional[int]) -> Dict:
    if resume is None and (run_dir / "checkpoint.pt").exists():
        raise RunExistsError(f"{run_dir} already holds a run; resume it with --resume {run_dir} "
                             f"or choose another run.dir")
    if dist.main:
        remove_stale_temporaries(run_dir)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
        import numba

        numba.set_num_threads(min(t.threads, numba.config.NUMBA_NUM_THREADS))
    torch.manual_seed(t.seed)
    task = build_task(cfg.task)
    model = build_model(cfg, task)
    opts = build_optimizers(cfg, model)
    history: List[Dict] = []
    start_epoch = 0
    wall_before = 0.0
    if resume is not None and (run_dir / "checkpoint.pt").exists():
        ck = load_checkpoint(run_dir / "checkpoint.pt")
        load_model_state(model, ck["model"], run_dir / "checkpoint.pt")
        opts.sparse.load_state_dict(ck["sparse_optimizer"])
        if opts.dense is not None:
            opts.dense.load_state_dict(ck["dense_optimizer"])
        if opts.pruning is not None:
            opts.pruning.load_state_dict(ck["pruning"])
        torch.set_rng_state(ck["torch_rng"])
        history, start_epoch, wall_before = ck["history"], ck["epoch"] + 1, ck["wall_s"]
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", to_yaml(cfg).encode())
        # the checkpoint's history is the truth: drops a line written after it, restores one never written
        atomic_write_bytes(run_dir / "metrics.jsonl", "".join(dumps_strict(r) + "\n" for r in history).encode())
    dist.barrier()

    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold, dtype=torch.long)
    t0 = time.perf_counter()
    mats = model.sparse_matrices()
    for epoch in range(start_epoch, t.epochs):
        lr = cfg.optim.lr * cfg.optim.lr_decay ** epoch
        for opt in opts.all():
            for g in opt.param_groups:
                g["lr"] = lr
        try:
            stats = _train_epoch(cfg, task, model, opts, epoch, fold, dist)
        except TrainingDivergedError as err:
            raise TrainingDivergedError(f"{err}; {_kept_checkpoint(run_dir, history)}") from None
        if opts.pruning is not None:
            stats["pruned"] = sum(opts.pruning.end_of_epoch(epoch))
        valid = evaluate(model, task, "valid", t.eval_batch_size, progress=t.progress and dist.main)
        record = {"epoch": epoch + 1, "lr": lr, **stats,
                  "valid_loss": valid["loss"], "valid_frame_accuracy": valid["frame_accuracy"],
                  "valid_sequence_accuracy": valid["sequence_accuracy"],
                  "connectivity": {n: m.nnz / m.statistics()["possible"] for n, m in mats.items()},
                  "active": {n: m.nnz for n, m in mats.items()},
                  "spike_rates": _spike_rates(model)}
        _check_finite_epoch(model, record, run_dir, history)
        history.append(record)
        if dist.main:
            save_checkpoint(run_dir / "checkpoint.pt", {
                "format": FORMAT, "epoch": epoch, "model": model.state_dict(),
                "sparse_optimizer": opts.sparse.state_dict(),
                "dense_optimizer": opts.dense.state_dict() if opts.dense is not None else None,
                "pruning": opts.pruning.state_dict() if opts.pruning is not None else None,
                "torch_rng": torch.get_rng_state(), "history": history,
                "wall_s": wall_before + time.perf_counter() - t0,
            })
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(dumps_strict(record) + "\n")
            print(_epoch_line(record), flush=True)
        dist.barrier()
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return {"stopped_after_epoch": epoch}

    test = evaluate(model, task, "test", t.eval_batch_size, progress=t.progress and dist.main)
    fingerprints = dist.gather(connectivity_fingerprint(model))
    summary = {
        "test": {k: test[k] for k in ("frame_accuracy", "sequence_accuracy", "loss")},
        "valid": history[-1]["valid_frame_accuracy"] if history else None,
        "layers": model.connectivity_report(),
        "epochs": len(history),
        "wall_s": wall_before + time.perf_counter() - t0,
        "algorithm": cfg.rewiring.algorithm,
        "model": cfg.model.kind,
        "task": cfg.task.name,
        "world_size": dist.world,
        "connectivity_fingerprint": fingerprints[0],
        "ranks_identical": len(set(fingerprints)) == 1,
    }
    if dist.main:
        atomic_write_json(run_dir / "summary.json", summary)
        plot_run(run_dir, history)
    if not summary["ranks_identical"]:
        raise RuntimeError(f"connectivity differs between ranks: {fingerprints}")
    return summary


def _train_epoch(cfg, task, model, opts: Optimizers, epoch: int, fold, dist: Distributed) -> Dict:
    t = cfg.train
    gen = torch.Generator().manual_seed(t.seed * 100_003 + epoch)  # the epoch's data order, resumable
    order = torch.randperm(len(task.train), generator=gen).tolist()
    batches = [order[i:i + t.batch_size] for i in range(0, len(order), t.batch_size)]
    if t.max_batches_per_epoch:
        batches = batches[: t.max_batches_per_epoch]
    model.train()
    loss_sum, correct, frames, rewired = 0.0, 0, 0, 0
    params = [p for o in opts.all() for g in o.param_groups for p in g["params"]]
    names = {id(p): name for name, p in model.named_parameters()}
    for step, idx in enumerate(_progress(batches, t.progress and dist.main, f"epoch {epoch + 1}/{t.epochs}")):
        idx = idx[dist.rank::dist.world] or idx[:1]
        batch = collate_time_major([task.train[i] for i in idx])
        logits = model(batch.x, batch.lengths)
        loss, c, n = masked_loss_and_counts(logits, batch.y, fold)
        total = loss
        if t.firing_rate_weight > 0:
            total = total + t.firing_rate_weight * model.firing_rate_loss(t.firing_rate_target)
        if not torch.isfinite(total):
            raise _diverged(cfg, epoch, step, f"the loss is {float(total.detach())}")
        for o in opts.all():
            o.zero_grad(set_to_none=True)
        total.backward()
        dist.average_gradients(params)
        bad = _first_nonfinite(params, "grad")
        if bad is not None:  # checked before any optimizer step: a NaN never reaches the rewiring budget
            raise _diverged(cfg, epoch, step, f"the gradient of {names.get(id(bad), 'a parameter')} is not finite")
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], cfg.optim.grad_clip)
        for o in opts.all():
            o.step()
        if isinstance(opts.sparse, DeepR):
            rewired += sum(opts.sparse.last_rewired)
        loss_sum += loss.item() * n
        correct += c
        frames += n
    return {"train_loss": loss_sum / max(frames, 1), "train_frame_accuracy": correct / max(frames, 1),
            "rewired": rewired, "batches": len(batches)}


def _first_nonfinite(tensors, attr: Optional[str] = None) -> Optional[torch.Tensor]:
    """The first tensor (or its ``.grad`` when ``attr='grad'``) holding a NaN or inf, else None."""
    values = [t if attr is None else getattr(t, attr) for t in tensors]
    pairs = [(t, v) for t, v in zip(tensors, values) if v is not None]
    if not pairs or bool(torch.stack([v.isfinite().all() for _, v in pairs]).all()):
        return None
    return next(t for t, v in pairs if not bool(v.isfinite().all()))


def _diverged(cfg, epoch: int, step: int, what: str) -> TrainingDivergedError:
    return TrainingDivergedError(f"training diverged at epoch {epoch + 1}, step {step + 1}: {what} "
                                 f"(optim.lr={cfg.optim.lr:g}, optim.grad_clip={cfg.optim.grad_clip}); "
                                 f"try a smaller optim.lr or set optim.grad_clip")


def _check_finite_epoch(model: SequenceModel, record: Dict, run_dir: Path, history: List[Dict]) -> None:
    """Refuse to checkpoint an epoch whose weights or losses are NaN/inf (e.g. overflow on the last step)."""
    names = {id(p): name for name, p in model.named_parameters()}
    bad = _first_nonfinite(list(model.parameters()))
    what = None if bad is None else f"weight {names[id(bad)]} is not finite"
    for key in ("train_loss", "valid_loss"):
        if what is None and not math.isfinite(record[key]):
            what = f"{key} is {record[key]}"
    if what is not None:
        raise TrainingDivergedError(f"training diverged in epoch {record['epoch']}: {what} (optim.lr={record['lr']:g}); "
                                    f"try a smaller optim.lr or set optim.grad_clip; {_kept_checkpoint(run_dir, history)}")


def _kept_checkpoint(run_dir: Path, history: List[Dict]) -> str:
    if not history:
        return "no checkpoint was written"
    return f"{run_dir / 'checkpoint.pt'} keeps epoch {history[-1]['epoch']}"


def _spike_rates(model: SequenceModel) -> Dict[str, float]:
    """Mean spikes per step of each spiking layer in the last forward (empty for LSTMs)."""
    return {name: s["mean_rate"] for name, s in model.spike_statistics().items()}


def _epoch_line(r: Dict) -> str:
    conn = sum(r["active"].values())
    return (f"epoch {r['epoch']:3d}  train loss {r['train_loss']:.4f} acc {r['train_frame_accuracy']:.3f}  "
            f"valid loss {r['valid_loss']:.4f} acc {r['valid_frame_accuracy']:.3f}  "
            f"active {conn:,}  rewired {r['rewired']:,}")


def plot_run(run_dir: Path, history: List[Dict]) -> None:
    """Learning curves and connectivity per matrix over epochs, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot(epochs, [h["valid_loss"] for h in history], label="valid")
    a.set_xlabel("epoch"), a.set_ylabel("cross entropy"), a.legend()
    b.plot(epochs, [h["train_frame_accuracy"] for h in history], label="train")
    b.plot(epochs, [h["valid_frame_accuracy"] for h in history], label="valid")
    b.set_xlabel("epoch"), b.set_ylabel("frame accuracy"), b.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in history[0]["connectivity"] if history else []:
        ax.plot(epochs, [h["connectivity"][name] for h in history], marker="o", label=name)
    ax.set_xlabel("epoch"), ax.set_ylabel("connectivity"), ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "connectivity.png", dpi=110)
    plt.close(fig)


def load_run(run_dir: Path):
    """(config, task, model) of a finished or interrupted run, weights from its checkpoint."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserFileNotFoundError(f"{run_dir} is not a run directory: no config.yaml")
    cfg = load_config(base=OmegaConf.merge(load_config(), OmegaConf.load(cfg_path)))
    task = build_task(cfg.task)
    model = build_model(cfg, task)
    ck = load_checkpoint(run_dir / "checkpoint.pt")
    load_model_state(model, ck["model"], run_dir / "checkpoint.pt")
    model.eval()
    return cfg, task, model
