"""Training, evaluation and resumable runs.

A run directory holds::

    config.yaml        the resolved configuration
    checkpoint.pt      model + optimizers + rewiring + history + early-stopping state after the last
                       finished epoch (atomic)
    best.pt            the model weights of the epoch with the best validation metric (atomic)
    input_stats.json   npz tasks: the per-feature input standardisation of the training split
    metrics.jsonl      one JSON object per epoch (loss, accuracies, lr, connectivity and rewiring counts)
    summary.json       test metrics of the best epoch, the best epoch, why training stopped, the
                       validation curve, per-matrix connectivity, epochs, wall time
    curves.png, connectivity.png

Training length follows the validation split: the run stops when its budget (epochs or optimizer
steps) is spent or when the validation metric has not improved for ``train.patience`` epochs; the lr
follows a warm-up + cosine schedule over the budget. The test split is evaluated once, at the end,
with the best weights; `sdr evaluate/convert/simulate` load the same best weights.

`train` resumes from ``checkpoint.pt`` when asked: data order, DEEP R noise and regrowth are all
seeded or stored, so a killed and resumed run ends with the same numbers as an uninterrupted one.
Under ``torchrun`` (WORLD_SIZE > 1) each rank takes a slice of every batch, gradients are averaged
with all-reduce before the optimizer steps, and since every rank's rewiring generator starts from the
same seed, connectivity stays identical on all ranks (checked at the end).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from tasks.base import Batch, Task, build_task, collate_time_major

from .checkpoint import (atomic_write_bytes, atomic_write_json, dumps_strict, load_checkpoint, load_model_state,
                         save_checkpoint)
from .config import load_config, rewiring_settings, saved_config, to_yaml
from .errors import TrainingDivergedError, UserFileNotFoundError
from .model import SequenceModel
from .pooling import pool_logits
from .provenance import provenance
from .schedule import SPARSE_LR_SCALES, lr_factor, set_lr
from .sparse import SparseMatrix
from .stopping import EarlyStopping
from .rewiring import SET, DeepR, DeepRAdam, MagnitudePruning, RigL, SoftDeepR
from .rundir import RunExistsError, RunLock, remove_stale_temporaries

FORMAT = "spiking_deepr/1"


# ----------------------------------------------------------------------------------------- set-up
def model_config_for(cfg: DictConfig) -> DictConfig:
    """The model config with the rewiring budget, the readout policy and the hardware fan-in cap filled in.

    Readout policy (the same for presets and ``model=`` configs): with ``model.readout_connectivity``
    unset the readout is a dense weight trained by Adam and is *not* part of the connection budget;
    set it and the readout is a sparse matrix at that connectivity, rewired and counted like the
    others. :func:`connectivity_summary` reports which applies."""
    mcfg = cfg.model.copy()
    algo = cfg.rewiring.algorithm
    mcfg.connectivity = 1.0 if algo in ("dense", "magnitude_pruning") else cfg.rewiring.connectivity
    if mcfg.readout_connectivity is None:
        mcfg.dense_readout = True
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


STATS_FILE = "input_stats.json"


def build_run_task(cfg: DictConfig, run_dir: Optional[Path] = None) -> Task:
    """The run's task. If ``run_dir`` holds ``input_stats.json`` (written by training: the npz input
    standardisation statistics of its training split), those exact statistics are used, so resumed
    training, evaluation, conversion and simulation see the inputs training saw."""
    tcfg = cfg.task
    path = None if run_dir is None else Path(run_dir) / STATS_FILE
    if path is not None and path.is_file():
        stats = json.loads(path.read_text())
        tcfg = tcfg.copy()
        tcfg.feature_mean, tcfg.feature_std = stats["feature_mean"], stats["feature_std"]
    return build_task(tcfg)


def build_model(cfg: DictConfig, task: Task) -> SequenceModel:
    model = SequenceModel(model_config_for(cfg), n_features=task.n_features, n_classes=task.n_classes)
    if cfg.hardware.max_cores:
        constrain_model_to_cores(model, cfg.hardware.profile, cfg.hardware.max_cores)
    return model


def constrain_model_to_cores(model: SequenceModel, profile: str, max_cores: int) -> None:
    """Core-aware training: put every population (each layer, the readout) on fixed cores of
    ``profile`` so that initialisation and every regrowth keep the network within ``max_cores``
    (see `spiking_deepr.rewiring.cores`)."""
    from lava_backend.hardware import load_profile

    from .config import ConfigError
    from .rewiring.cores import constrain_to_cores

    populations = {}
    for name, m in model.sparse_matrices().items():  # "layer{l}.w_in", "layer{l}.w_rec", "readout"
        populations.setdefault(name.split(".")[0], []).append(m)
    try:
        constrain_to_cores([(pop, mats[0].n_out, mats) for pop, mats in populations.items()],
                           load_profile(profile).core_limits(), max_cores, seed=model.cfg.seed)
    except ValueError as err:
        raise ConfigError(f"hardware.max_cores={max_cores} ({profile}): {err}") from None


@dataclass
class Optimizers:
    """The optimizers of a run: ``sparse`` steps the SparseMatrix magnitudes (a rewiring optimizer or
    Adam), ``dense`` the other parameters; ``pruning`` is the magnitude-pruning schedule if used."""

    sparse: torch.optim.Optimizer
    dense: Optional[torch.optim.Optimizer]
    pruning: Optional[MagnitudePruning] = None

    def all(self) -> List[torch.optim.Optimizer]:
        return [o for o in (self.sparse, self.dense) if o is not None]


def sparse_lr_scale(m: SparseMatrix, mode: str) -> float:
    """The factor on ``optim.lr`` for matrix ``m``'s magnitudes: 1 (``none``) or, for ``init``,
    1 / sqrt(p) with p = ``m.built_density`` — the ratio of its initial magnitude std (sigma / sqrt(p),
    see SparseMatrix) to the dense matrix's sigma."""
    if mode not in SPARSE_LR_SCALES:  # "auto" is resolved by load_config; a config built otherwise must say
        raise ValueError(f"optim.sparse_lr_scale must be one of {SPARSE_LR_SCALES} here, got {mode!r}")
    return 1.0 if mode == "none" else 1.0 / math.sqrt(m.built_density)


def _sparse_groups(mats: List[SparseMatrix], o: DictConfig, key: str) -> list:
    """Parameter groups for the sparse optimizer: the matrices as they are (``key="matrices"``, a
    rewiring optimizer) or their theta (``"params"``, Adam); with a scale, one group per matrix with
    its ``lr_scale`` (which `set_lr` multiplies into the scheduled lr)."""
    if o.sparse_lr_scale == "none":
        return mats if key == "matrices" else [m.theta for m in mats]
    groups = []
    for m in mats:
        scale = sparse_lr_scale(m, o.sparse_lr_scale)
        groups.append({key: [m] if key == "matrices" else [m.theta], "lr": o.lr * scale, "lr_scale": scale})
    return groups


def build_optimizers(cfg: DictConfig, model: SequenceModel, budget: Optional["Budget"] = None) -> Optimizers:
    """The run's optimizers for ``rewiring.algorithm`` with its defaults filled in (`rewiring_settings`).

    ``budget``: the optimizer steps the run is set up for (SET / RigL end their drop-fraction decay
    at ``rewiring.decay_end`` of it, magnitude pruning ends at the middle of its epochs; None: a
    constant drop fraction and ``train.epochs``)."""
    r, o = rewiring_settings(cfg, None if budget is None else budget.epochs), cfg.optim
    mats = list(model.sparse_matrices().values())
    groups = _sparse_groups(mats, o, "matrices")
    dense_params = list(model.dense_parameters())
    betas = tuple(o.betas)
    dense = torch.optim.Adam(dense_params, lr=o.lr, betas=betas) if dense_params else None
    seed = cfg.train.seed
    algo = r["algorithm"]
    if algo == "deepr":
        cls_kwargs = dict(betas=betas) if r["adam"] else {}
        cls = DeepRAdam if r["adam"] else DeepR
        sparse = cls(groups, lr=o.lr, temperature=r["temperature"], l1=r["l1"], global_budget=r["global_budget"],
                     seed=seed, **cls_kwargs)
        return Optimizers(sparse, dense)
    if algo == "soft_deepr":
        sparse = SoftDeepR(groups, lr=o.lr, temperature=r["temperature"], l1=r["l1"], connectivity=r["connectivity"],
                           adam=r["adam"], betas=betas, control=r["connectivity_control"], seed=seed)
        return Optimizers(sparse, dense)
    if algo in ("set", "rigl"):
        decay = None if budget is None else max(1, round(r["decay_end"] * budget.steps))
        sparse = (RigL if algo == "rigl" else SET)(
            groups, lr=o.lr, betas=betas, drop_fraction=r["drop_fraction"], update_every=r["update_every"],
            decay_steps=decay, global_budget=r["global_budget"], seed=seed)
        return Optimizers(sparse, dense)
    # fixed / dense / pruning: the magnitudes are ordinary weights (theta may change sign)
    sparse = torch.optim.Adam(_sparse_groups(mats, o, "params"), lr=o.lr, betas=betas)
    pruning = None
    if algo == "magnitude_pruning":
        targets = model.matrix_connectivities(r["connectivity"])  # the allocation's split, not one value
        pruning = MagnitudePruning(mats, list(targets.values()), r["prune_start_epoch"], r["prune_end_epoch"], sparse)
    return Optimizers(sparse, dense, pruning)


def connectivity_summary(cfg: DictConfig, model: SequenceModel) -> Dict:
    """What was asked and what the trained network has: requested and final measured connectivity
    (over the hidden matrices, and per matrix), the readout policy, trainable connections.

    ``measured`` counts the input and recurrent matrices (sparse: active entries; dense weights:
    all); the readout is listed on its own. ``trainable_connections`` counts every weight entry the
    run trains (sparse active entries and dense weight matrices, readout included; biases not)."""
    sparse = model.sparse_matrices()
    per_matrix = {name: {"active": m.nnz, "possible": m.statistics()["possible"]} for name, m in sparse.items()}
    sparse_ids = {id(m.theta) for m in sparse.values()}
    readout_weight = getattr(model.readout, "weight", None)
    for name, p in model.named_parameters():
        if p.dim() >= 2 and id(p) not in sparse_ids:
            key = "readout" if p is readout_weight else name
            per_matrix[key] = {"active": p.numel(), "possible": p.numel()}
    for v in per_matrix.values():
        v["connectivity"] = v["active"] / v["possible"]
    hidden = [v for k, v in per_matrix.items() if k != "readout"]
    readout = per_matrix.get("readout")
    in_budget = "readout" in sparse
    return {
        "requested": 1.0 if cfg.rewiring.algorithm == "dense" else float(cfg.rewiring.connectivity),
        "measured": sum(v["active"] for v in hidden) / max(1, sum(v["possible"] for v in hidden)),
        "per_matrix": per_matrix,
        "readout": {"in_budget": in_budget, "connectivity": readout["connectivity"] if readout else None,
                    "policy": ("sparse readout, rewired and counted in the budget (model.readout_connectivity set)"
                               if in_budget else "dense readout trained by Adam, outside the budget")},
        "trainable_connections": sum(v["active"] for v in per_matrix.values()),
        "budgeted_connections": sum(m.nnz for m in sparse.values()),
    }


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


@dataclass
class Counts:
    """Summed loss and hit counts over batches; ``loss_sum`` is weighted by frames (frame loss) or by
    sequences (sequence loss), whichever the loss averaged over."""

    loss_sum: float = 0.0
    loss_n: int = 0
    correct: int = 0
    frames: int = 0
    seq_correct: int = 0
    seqs: int = 0

    def add(self, other: "Counts") -> None:
        for k in ("loss_sum", "loss_n", "correct", "frames", "seq_correct", "seqs"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def metrics(self, sequence_task: bool) -> Dict:
        return {"loss": self.loss_sum / max(self.loss_n, 1), "frame_accuracy": self.correct / max(self.frames, 1),
                "sequence_accuracy": self.seq_correct / max(self.seqs, 1) if sequence_task else None,
                "frames": self.frames}


def batch_loss(logits: torch.Tensor, batch: Batch, task: Task, fold: Optional[torch.Tensor],
               pooling: str, sequence_loss: bool):
    """The training loss of one batch and its :class:`Counts`.

    Frame tasks: cross entropy over labelled frames. Sequence tasks: with ``sequence_loss``, cross
    entropy of the logits pooled over each sequence's valid frames (``pooling``) against its label,
    else the frame loss with every frame labelled by its sequence; sequence accuracy always uses the
    pooled logits."""
    loss, c, n = masked_loss_and_counts(logits, batch.y, fold)
    counts = Counts(correct=c, frames=n)
    if task.sequence_task:
        pooled = pool_logits(logits, batch.lengths, pooling)
        counts.seq_correct = int((pooled.argmax(-1) == batch.seq_labels).sum())
        counts.seqs = batch.seq_labels.numel()
        if sequence_loss:
            loss = torch.nn.functional.cross_entropy(pooled, batch.seq_labels)
    counts.loss_n = counts.seqs if task.sequence_task and sequence_loss else n
    counts.loss_sum = float(loss.detach()) * counts.loss_n
    return loss, counts


def monitored_metric(task: Task) -> str:
    """The validation metric that early stopping and the best checkpoint follow."""
    return "sequence_accuracy" if task.sequence_task else "frame_accuracy"


@torch.no_grad()
def evaluate(model: SequenceModel, task: Task, split: str, batch_size: int, progress: bool = False, *,
             pooling: str = "mean", sequence_loss: bool = False) -> Dict:
    """Mean loss, frame accuracy (folded for scoring) and, for sequence tasks, sequence accuracy of the
    logits pooled with ``pooling``; the loss is the training loss (:func:`batch_loss`)."""
    dataset = getattr(task, split)
    lengths = dataset.lengths
    by_length = sorted(range(len(dataset)), key=lambda i: int(lengths[i]))  # less padding to compute
    loader = DataLoader(dataset, batch_sampler=[by_length[i:i + batch_size] for i in range(0, len(dataset), batch_size)],
                        collate_fn=collate_time_major)
    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold, dtype=torch.long)
    model.eval()
    total = Counts()
    for batch in _progress(loader, progress, f"eval {split}"):
        _, counts = batch_loss(model(batch.x, batch.lengths), batch, task, fold, pooling, sequence_loss)
        total.add(counts)
    return total.metrics(task.sequence_task)


def evaluate_run(cfg: DictConfig, model: SequenceModel, task: Task, split: str, progress: bool = False) -> Dict:
    """:func:`evaluate` with the run's batch size, pooling and loss."""
    t = cfg.train
    return evaluate(model, task, split, t.eval_batch_size, progress, pooling=t.pooling, sequence_loss=t.sequence_loss)


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


def shutdown_distributed() -> None:
    """Destroy the torchrun process group before the interpreter exits: left to exit handlers, gloo's
    threads can abort a rank ("terminate called without an active exception")."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def new_run_dir(cfg: DictConfig) -> Path:
    if cfg.run.dir:
        return Path(cfg.run.dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / stamp


def train(cfg: Optional[DictConfig] = None, *, resume: Optional[Path] = None,
          stop_after_epoch: Optional[int] = None) -> Dict:
    """Train (or resume) a run; returns the summary dict (also written to summary.json).

    Every epoch ends with a validation pass; the epoch with the best validation metric is kept in
    ``best.pt``. Training ends when the budget (``train.epochs`` / ``train.max_steps``) is spent or
    after ``train.patience`` epochs without a new best; then the best weights are restored and the test
    split is evaluated, once.

    The main process holds the run directory's lock (:class:`~spiking_deepr.rundir.RunLock`) until
    it returns or raises. Every epoch first writes ``best.pt`` (when the epoch is a new best), then
    ``checkpoint.pt``, then appends the metrics line; resuming rewrites ``metrics.jsonl`` from the
    checkpoint's history, so a crash between the writes neither loses nor repeats an epoch. A NaN/inf
    loss, gradient or weight stops training with :class:`~spiking_deepr.errors.TrainingDivergedError`
    before anything is saved. ``stop_after_epoch`` ends the process's work after that (0-based) epoch
    as if it had been killed there (used to test resumption)."""
    dist = Distributed()
    if resume is not None:
        run_dir = Path(resume)
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise UserFileNotFoundError(f"cannot resume: no config.yaml in {run_dir}")
        cfg = saved_config(cfg_path)
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
    keep_freed_memory()
    torch.manual_seed(t.seed)
    task = build_run_task(cfg, run_dir if resume is not None else None)
    model = build_model(cfg, task)
    budget = Budget.of(cfg, task)
    opts = build_optimizers(cfg, model, budget)
    stopping = EarlyStopping(t.patience, t.min_delta, t.loss_min_delta)
    history: List[Dict] = []
    start_epoch, step, stop_reason = 0, 0, None
    best_state = None
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
        step, stop_reason = ck["step"], ck["stop_reason"]
        stopping.load_state_dict(ck["early_stopping"])
        best_state = load_checkpoint(run_dir / "best.pt")["model"]
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", to_yaml(cfg).encode())
        if "feature_mean" in task.info:
            atomic_write_json(run_dir / STATS_FILE, {k: task.info[k] for k in ("feature_mean", "feature_std")})
        # the checkpoint's history is the truth: drops a line written after it, restores one never written
        atomic_write_bytes(run_dir / "metrics.jsonl", "".join(dumps_strict(r) + "\n" for r in history).encode())
    dist.barrier()

    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold, dtype=torch.long)
    monitor = monitored_metric(task)
    t0 = time.perf_counter()
    mats = model.sparse_matrices()
    epoch = start_epoch
    while stop_reason is None:
        try:
            stats, step = _train_epoch(cfg, task, model, opts, epoch, step, budget, fold, dist)
        except TrainingDivergedError as err:
            raise TrainingDivergedError(f"{err}; {_kept_checkpoint(run_dir, history)}") from None
        if opts.pruning is not None:
            stats["pruned"] = sum(opts.pruning.end_of_epoch(epoch))
        valid = evaluate_run(cfg, model, task, "valid", progress=t.progress and dist.main)
        budget_spent = "step_budget" if step >= budget.steps else "epoch_budget" if epoch + 1 >= t.epochs else None
        # magnitude pruning: only epochs at the final connectivity may become the best one
        eligible = (opts.pruning is None or epoch >= opts.pruning.end
                    or (budget_spent is not None and stopping.best_epoch is None))
        improved = eligible and stopping.update(epoch + 1, valid[monitor], valid["loss"])
        if improved:
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        may_stop = step >= t.early_stop_from * budget.steps
        stop_reason = "early_stopping" if stopping.should_stop and may_stop else budget_spent
        record = {"epoch": epoch + 1, "step": step, "lr": cfg.optim.lr * budget.lr_factor(step - 1), **stats,
                  "valid_loss": valid["loss"], "valid_frame_accuracy": valid["frame_accuracy"],
                  "valid_sequence_accuracy": valid["sequence_accuracy"], "best": improved,
                  "connectivity": {n: m.nnz / m.statistics()["possible"] for n, m in mats.items()},
                  "active": {n: m.nnz for n, m in mats.items()},
                  "spike_rates": _spike_rates(model)}
        _check_finite_epoch(model, record, run_dir, history)
        history.append(record)
        if dist.main:
            # best.pt before checkpoint.pt: a checkpoint never names a best epoch that best.pt lacks
            if improved:
                save_checkpoint(run_dir / "best.pt", {"format": FORMAT, "epoch": epoch, "model": best_state,
                                                      "valid": valid})
            save_checkpoint(run_dir / "checkpoint.pt", {
                "format": FORMAT, "epoch": epoch, "step": step, "model": model.state_dict(),
                "sparse_optimizer": opts.sparse.state_dict(),
                "dense_optimizer": opts.dense.state_dict() if opts.dense is not None else None,
                "pruning": opts.pruning.state_dict() if opts.pruning is not None else None,
                "torch_rng": torch.get_rng_state(), "history": history,
                "early_stopping": stopping.state_dict(), "stop_reason": stop_reason,
                "wall_s": wall_before + time.perf_counter() - t0,
            })
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(dumps_strict(record) + "\n")
            print(_epoch_line(record, monitor), flush=True)
        dist.barrier()
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return {"stopped_after_epoch": epoch}
        epoch += 1

    model.load_state_dict(best_state)  # the test split is read only here, once, with the best weights
    test = evaluate_run(cfg, model, task, "test", progress=t.progress and dist.main)
    fingerprints = dist.gather(connectivity_fingerprint(model))
    best = history[stopping.best_epoch - 1]
    summary = {
        "test": {k: test[k] for k in ("frame_accuracy", "sequence_accuracy", "loss")},
        "monitor": monitor,
        "valid": {"frame_accuracy": best["valid_frame_accuracy"], "sequence_accuracy": best["valid_sequence_accuracy"],
                  "loss": best["valid_loss"]},
        "best_epoch": stopping.best_epoch,
        "stop_reason": stop_reason,
        "valid_curve": [h[f"valid_{monitor}"] for h in history],
        "layers": model.connectivity_report(),
        "epochs": len(history),
        "steps": step,
        "budget": {"epochs": t.epochs, "steps": budget.steps},
        "wall_s": wall_before + time.perf_counter() - t0,
        "algorithm": cfg.rewiring.algorithm,
        "rewiring": rewiring_settings(cfg, budget.epochs),
        "sparse_lr_scale": {name: sparse_lr_scale(m, cfg.optim.sparse_lr_scale)   # metrics.jsonl's lr x this
                            for name, m in model.sparse_matrices().items()},
        "connectivity": connectivity_summary(cfg, model),
        "rewiring_activity": rewiring_activity(model, history),
        "model": cfg.model.kind,
        "task": cfg.task.name,
        "world_size": dist.world,
        "connectivity_fingerprint": fingerprints[0],
        "ranks_identical": len(set(fingerprints)) == 1,
        "provenance": provenance(),
    }
    if dist.main:
        atomic_write_json(run_dir / "summary.json", summary)
        plot_run(run_dir, history, monitor, stopping.best_epoch)
    if not summary["ranks_identical"]:
        raise RuntimeError(f"connectivity differs between ranks: {fingerprints}")
    return summary


def keep_freed_memory() -> bool:
    """Let glibc's malloc serve large blocks from the heap and keep what is freed (process-wide).

    Every training step allocates its per-sequence tensors afresh (a fused layer's [T, B, ·] buffers:
    ~100 MB per batch for a 400-unit LSTM). By default glibc maps each block over 32 MB (less after
    start-up) with mmap and unmaps it on free, so every batch touches new pages: one page fault per
    4 KiB, up to half of a sparse step (400-unit LSTM at 1 %: forward 160 → 80 ms per batch).
    With mmap off and a high trim threshold the freed blocks are reused: an epoch of
    `benchmarks/bench_train.py` (medium corpus) took 17–39 % less CPU time, dense and sparse alike,
    for 5–150 MB more peak resident memory (heap fragmentation); resident memory stays at the peak
    between batches.
    Returns False where it does not apply (not glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))


@dataclass
class Budget:
    """Optimizer steps per epoch and in all (``min(epochs * per_epoch, max_steps)``); the lr schedule
    spans ``steps``."""

    per_epoch: int
    steps: int
    schedule: str
    warmup_fraction: float

    @classmethod
    def of(cls, cfg: DictConfig, task: Task) -> "Budget":
        t = cfg.train
        per_epoch = -(-len(task.train) // t.batch_size)
        if t.max_batches_per_epoch:
            per_epoch = min(per_epoch, t.max_batches_per_epoch)
        steps = t.epochs * per_epoch if t.max_steps is None else min(t.epochs * per_epoch, t.max_steps)
        return cls(per_epoch, steps, cfg.optim.schedule, cfg.optim.warmup_fraction)

    @property
    def epochs(self) -> int:
        """Epochs the step budget spans (the last one may be partial)."""
        return -(-self.steps // self.per_epoch)

    def lr_factor(self, step: int) -> float:
        return lr_factor(step, self.steps, self.schedule, self.warmup_fraction)


def epoch_batches(lengths, batch_size: int, length_pool: Optional[int], gen: torch.Generator) -> List[List[int]]:
    """One epoch's batches of training indices from the seeded generator ``gen``.

    Without ``length_pool``: consecutive slices of a random permutation. With it: the permutation is cut
    into pools of ``length_pool * batch_size`` sequences, each pool is sorted by length and sliced into
    batches, and the batches are shuffled — batches hold sequences of similar length, so less padding is
    computed (PLAID, lengths 100-1,344: 1.33x the valid frames instead of 2.16x at batch 32, pools of 8),
    while every epoch still mixes different sequences into a batch."""
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if not length_pool:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pool = length_pool * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: int(lengths[i]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


class EpochClock:
    """Wall seconds per section of :func:`_train_epoch`, summed over its batches (for benchmarks):
    ``data`` (dataset items and batch collation), ``forward`` (model and loss), ``backward``
    (zero_grad and backpropagation), ``optimizer`` (gradient checks, clipping, lr, optimizer and
    rewiring steps)."""

    SECTIONS = ("data", "forward", "backward", "optimizer")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.SECTIONS, 0.0)

    @contextmanager
    def __call__(self, section: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[section] += time.perf_counter() - t0


def _no_clock(section: str):
    return nullcontext()


def _train_epoch(cfg, task, model, opts: Optimizers, epoch: int, step: int, budget: Budget, fold,
                 dist: Distributed, clock: Optional[EpochClock] = None):
    """One pass over the training set (cut short where the step budget ends) -> (stats, step after it).

    ``clock``: an :class:`EpochClock` that receives the time of each section (None: not timed)."""
    t = cfg.train
    section = _no_clock if clock is None else clock
    gen = torch.Generator().manual_seed(t.seed * 100_003 + epoch)  # the epoch's data order, resumable
    batches = epoch_batches(task.train.lengths, t.batch_size, t.length_pool, gen)
    batches = batches[: min(budget.per_epoch, budget.steps - step)]
    model.train()
    total = Counts()
    rewired = [0] * len(getattr(opts.sparse, "last_rewired", ()))  # removed (= regrown) per matrix
    params = [p for o in opts.all() for g in o.param_groups for p in g["params"]]
    names = {id(p): name for name, p in model.named_parameters()}
    for idx in _progress(batches, t.progress and dist.main, f"epoch {epoch + 1}/{t.epochs}"):
        idx = idx[dist.rank::dist.world] or idx[:1]
        with section("data"):
            batch = collate_time_major([task.train[i] for i in idx])

        def forward_loss(batch=batch):
            logits = model(batch.x, batch.lengths)
            loss, counts = batch_loss(logits, batch, task, fold, t.pooling, t.sequence_loss)
            if t.firing_rate_weight > 0:
                loss = loss + t.firing_rate_weight * model.firing_rate_loss(t.firing_rate_target)
            return loss, counts

        with section("forward"):
            loss, counts = forward_loss()
            if not torch.isfinite(loss):
                raise _diverged(cfg, epoch, step, f"the loss is {float(loss.detach())}")
        with section("backward"):
            for o in opts.all():
                o.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(params)
        with section("optimizer"):
            bad = _first_nonfinite(params, "grad")
            if bad is not None:  # checked before any optimizer step: a NaN never reaches the rewiring budget
                raise _diverged(cfg, epoch, step,
                                f"the gradient of {names.get(id(bad), 'a parameter')} is not finite")
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], cfg.optim.grad_clip)
            set_lr(opts.all(), cfg.optim.lr * budget.lr_factor(step))
            for o in opts.all():  # RigL re-evaluates the batch to read dense gradients at its updates
                o.step(lambda: forward_loss()[0]) if isinstance(o, RigL) else o.step()
        step += 1
        for i, n in enumerate(getattr(opts.sparse, "last_rewired", ())):
            rewired[i] += n
        total.add(counts)
    m = total.metrics(task.sequence_task)
    return {"train_loss": m["loss"], "train_frame_accuracy": m["frame_accuracy"],
            "train_sequence_accuracy": m["sequence_accuracy"], "rewired": sum(rewired),
            "rewired_per_matrix": _per_matrix_names(model, opts.sparse, rewired), "batches": len(batches)}, step


def _per_matrix_names(model: SequenceModel, optimizer, values: List[int]) -> Dict[str, int]:
    """``values`` (one per matrix of a rewiring optimizer, in its order) keyed by the model's matrix names."""
    if not values:
        return {}
    names = {id(m): name for name, m in model.sparse_matrices().items()}
    return {names[id(m)]: int(v) for m, v in zip(optimizer.matrices(), values)}


def rewiring_activity(model: SequenceModel, history: List[Dict]) -> Dict:
    """How much the topology moved over a run: connections rewired (removed and regrown) in all and per
    matrix, and per matrix the budget K it was built with next to its active count in the weights the
    run keeps, those of the best epoch (under a global budget the difference is what migrated between
    matrices)."""
    per = {name: {"rewired": sum(h.get("rewired_per_matrix", {}).get(name, 0) for h in history),
                  "built_with": m.budget, "final_active": m.nnz}
           for name, m in model.sparse_matrices().items()}
    return {"rewired_total": sum(h["rewired"] for h in history), "per_matrix": per}


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


def _epoch_line(r: Dict, monitor: str) -> str:
    conn = sum(r["active"].values())
    seq = f" seq {r['valid_sequence_accuracy']:.3f}" if monitor == "sequence_accuracy" else ""
    return (f"epoch {r['epoch']:3d}  lr {r['lr']:.2e}  train loss {r['train_loss']:.4f} acc {r['train_frame_accuracy']:.3f}  "
            f"valid loss {r['valid_loss']:.4f} acc {r['valid_frame_accuracy']:.3f}{seq}{' *' if r['best'] else ''}  "
            f"active {conn:,}  rewired {r['rewired']:,}")


def plot_run(run_dir: Path, history: List[Dict], monitor: str, best_epoch: int) -> None:
    """Learning curves (train/valid loss and accuracies, the best epoch marked) and connectivity per
    matrix over epochs, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot(epochs, [h["valid_loss"] for h in history], label="valid")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.set_yscale("log")
    kinds = ["frame_accuracy", "sequence_accuracy"] if monitor == "sequence_accuracy" else ["frame_accuracy"]
    for kind in kinds:
        for split, style in (("train", "-"), ("valid", "--")):
            b.plot(epochs, [h[f"{split}_{kind}"] for h in history], style, label=f"{split} {kind.replace('_', ' ')}")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy")
    for ax in (a, b):
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.legend(fontsize=7)
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


def load_run(run_dir: Path, weights: str = "best"):
    """(config, task, model) of a finished or interrupted run.

    ``weights="best"``: the best validation epoch (``best.pt``; runs from before best.pt existed fall
    back to the last checkpoint), ``"last"``: the last finished epoch (``checkpoint.pt``)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserFileNotFoundError(f"{run_dir} is not a run directory: no config.yaml")
    if weights not in ("best", "last"):
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    cfg = saved_config(cfg_path)
    task = build_run_task(cfg, run_dir)
    model = build_model(cfg, task)
    path = run_dir / "best.pt"
    if weights == "last" or not path.exists():
        path = run_dir / "checkpoint.pt"
    load_model_state(model, load_checkpoint(path)["model"], path)
    model.eval()
    return cfg, task, model
