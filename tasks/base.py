"""Common task interface: sequence datasets, time-major batching, the Task record, its config and ``build_task``.

A task is a set of variable-length sequences ``x`` [T_i, F] with frame labels ``y`` [T_i] (``-1`` = ignore
this frame) and, for sequence-classification tasks, one label per sequence. Batches are time-major
``[T, B, ...]`` like Norse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from spiking_deepr.errors import UserError

TASK_NAMES = ("synthetic_timit", "timit", "npz", "smoke")


class SequenceDataset(Dataset):
    """In-memory variable-length sequences.

    Item ``i`` is ``(x, y, seq_label)``: ``x`` float32 Tensor [T_i, F], ``y`` int64 Tensor [T_i] frame labels
    (``-1`` = ignore), ``seq_label`` int (``-1`` when the task is not a sequence task).

    Args:
        xs: per-sequence float arrays [T_i, F].
        ys: per-sequence int arrays [T_i] of frame labels.
        seq_labels: int [N] one label per sequence, or ``None`` (then every ``seq_label`` is -1).
        ids: optional names of the sequences (e.g. ``TEST/DR1/FAKS0/SX13``), for reporting.
    """

    def __init__(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                 seq_labels: Optional[np.ndarray] = None, ids: Optional[Sequence[str]] = None):
        if len(xs) != len(ys):
            raise ValueError(f"SequenceDataset: {len(xs)} inputs but {len(ys)} label arrays")
        self.xs = [np.ascontiguousarray(x, dtype=np.float32) for x in xs]
        self.ys = [np.asarray(y, dtype=np.int64) for y in ys]
        for i, (x, y) in enumerate(zip(self.xs, self.ys)):
            if x.ndim != 2 or y.shape != (x.shape[0],):
                raise ValueError(f"SequenceDataset item {i}: x {x.shape} and y {y.shape} do not match [T, F] / [T]")
        self.sequence_labels = None if seq_labels is None else np.asarray(seq_labels, dtype=np.int64)
        if self.sequence_labels is not None and self.sequence_labels.shape != (len(self.xs),):
            raise ValueError(f"SequenceDataset: seq_labels shape {self.sequence_labels.shape}, expected ({len(xs)},)")
        self.ids = list(ids) if ids is not None else [str(i) for i in range(len(self.xs))]

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        seq = -1 if self.sequence_labels is None else int(self.sequence_labels[i])
        return torch.from_numpy(self.xs[i]), torch.from_numpy(self.ys[i]), seq

    @property
    def lengths(self) -> np.ndarray:
        """int64 [N] sequence lengths in frames."""
        return np.array([len(x) for x in self.xs], dtype=np.int64)

    def n_frames(self) -> int:
        """Total number of frames (including ignored ones)."""
        return int(self.lengths.sum())

    def chunked(self, max_frames: int) -> "SequenceDataset":
        """Split every sequence into consecutive chunks of at most ``max_frames`` frames (ids get ``@k``)."""
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        xs, ys, seqs, ids = [], [], [], []
        for i, (x, y) in enumerate(zip(self.xs, self.ys)):
            for k, start in enumerate(range(0, max(len(x), 1), max_frames)):
                xs.append(x[start:start + max_frames])
                ys.append(y[start:start + max_frames])
                ids.append(f"{self.ids[i]}@{k}")
                if self.sequence_labels is not None:
                    seqs.append(self.sequence_labels[i])
        return SequenceDataset(xs, ys, None if self.sequence_labels is None else np.array(seqs), ids)


class Batch(NamedTuple):
    """A time-major batch: ``x`` float32 [T, B, F] (zero-padded), ``y`` int64 [T, B] (padded with -1),
    ``lengths`` int64 [B], ``seq_labels`` int64 [B] (-1 when not a sequence task)."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor
    seq_labels: torch.Tensor


def collate_time_major(batch: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> Batch:
    """Stack ``SequenceDataset`` items into a time-major :class:`Batch` (T = longest item)."""
    lengths = torch.tensor([len(x) for x, _, _ in batch], dtype=torch.int64)
    t_max = int(lengths.max()) if len(batch) else 0
    n_feat = batch[0][0].shape[1] if len(batch) else 0
    x = torch.zeros(t_max, len(batch), n_feat, dtype=torch.float32)
    y = torch.full((t_max, len(batch)), -1, dtype=torch.int64)
    for b, (xi, yi, _) in enumerate(batch):
        x[: len(xi), b] = xi
        y[: len(yi), b] = yi
    seq = torch.tensor([int(s) for _, _, s in batch], dtype=torch.int64)
    return Batch(x, y, lengths, seq)


@dataclass
class Task:
    """A dataset-backed task as consumed by the trainer.

    Attributes:
        name: task name (``TaskConfig.name``).
        n_features: F, input features per frame.
        n_classes: number of training classes (network outputs).
        train, valid, test: the three splits.
        class_names: names of the training classes, or ``None``.
        sequence_task: True when each sequence has one label (``seq_label``); the trainer then also scores
            per sequence by averaging the readout over the valid frames.
        eval_fold: int64 [n_classes] mapping a training class to a scoring class (48->39 for TIMIT), or
            ``None`` when classes are scored as they are. Fold both predictions and targets before scoring.
        n_eval_classes: number of scoring classes (``n_classes`` when ``eval_fold`` is None).
        eval_class_names: names of the scoring classes, or ``None``.
        info: free-form provenance (corpus path, speaker counts, normalisation mean/std, ...).
    """

    name: str
    n_features: int
    n_classes: int
    train: SequenceDataset
    valid: SequenceDataset
    test: SequenceDataset
    class_names: Optional[List[str]]
    sequence_task: bool
    eval_fold: Optional[np.ndarray]
    n_eval_classes: int
    eval_class_names: Optional[List[str]] = None
    info: dict[str, Any] = field(default_factory=dict)


class TaskConfigError(UserError, ValueError):
    """A task setting is missing or invalid (the message names the ``task.`` field)."""


@dataclass
class TaskConfig:
    """Structured config (omegaconf-compatible) selecting and parameterising a task.

    Attributes:
        name: one of ``synthetic_timit`` (generated TIMIT-layout corpus read by the real TIMIT loader; the
            default), ``timit`` (a user's LDC TIMIT copy), ``npz`` (bring-your-own arrays), ``smoke``.
        path: corpus root (``timit``), directory holding ``train.npz``/``test.npz`` (``npz``), or for
            ``synthetic_timit`` the directory to generate into (default
            ``data/synthetic_timit_<size>_s<seed>``, relative to the working directory). Unused by ``smoke``.
        size: ``tiny`` | ``small`` | ``medium`` for ``synthetic_timit``; ``tiny`` | ``small`` for ``smoke``.
        seed: generation seed (synthetic and smoke) and seed of the npz train/valid split.
        features: ``mfcc`` (39 = 13 MFCC + deltas + delta-deltas) or ``fbank`` (123 = 40 log-mel + log energy,
            with deltas) for the TIMIT-style tasks.
        label_set: 39 | 48 | 61 training phone set (61 means the 60 labels other than ``q``); scoring always
            folds to 39 via ``Task.eval_fold``.
        cache_dir: where computed TIMIT features are cached (default ``<corpus>/../.sdr_cache``).
        max_frames: if set, training sequences are cut into consecutive chunks of at most this many frames
            (faster BPTT); validation and test sequences stay whole.
        dev_speakers, test_speakers: explicit TIMIT speaker lists (speaker directory names, any case) that
            override both the ``SPEAKERS.json`` of the corpus and the standard Kaldi dev / core-test lists.
        allow_partial: accept an incomplete TIMIT corpus (missing dialect regions, listed speakers or .PHN
            files are skipped with a warning instead of raising).
        valid_fraction: fraction of ``train.npz`` held out (seeded) when an npz directory has no ``valid.npz``.
        valid_min_per_class: ``npz`` with one label per sequence: the hold-out is stratified by class and
            holds at least this many sequences of each class (GunPoint: 10 of 50 instead of 5, so early
            stopping is not decided by 5 sequences that every run gets right).
        frame_stack: ``npz`` sequence tasks: stack non-overlapping windows of this many frames into one
            frame (``k * F`` features; lossless); null: automatic, the smallest k that brings the longest
            training sequence to at most ``frame_stack_target`` frames (PLAID's 1,344 samples -> k = 11).
            1 disables it.
        normalize: ``npz``: standardise every input feature with its mean and standard deviation over the
            valid frames of the training split (after the validation hold-out); false: inputs as given.
        sequence_normalize: ``npz`` (default true): first standardise every sequence with its own per-feature mean and std
            (UCR-style z-normalisation; before ``normalize`` and frame stacking). Removes each sequence's
            offset and scale (PLAID's currents span four orders of magnitude within a class).
        feature_mean, feature_std: ``npz`` standardisation statistics [F] to use instead of computing them.
            Normally null: ``sdr train`` computes them and saves them in the run (``input_stats.json``),
            from where ``--resume``, ``sdr evaluate``, ``convert`` and ``simulate`` take them, so every
            command sees identical inputs.
    """

    name: str = "synthetic_timit"
    path: Optional[str] = None
    size: str = "small"
    seed: int = 0
    features: str = "mfcc"
    label_set: int = 39
    cache_dir: Optional[str] = None
    max_frames: Optional[int] = None
    dev_speakers: Optional[List[str]] = None
    test_speakers: Optional[List[str]] = None
    allow_partial: bool = False
    valid_fraction: float = 0.1
    valid_min_per_class: int = 5
    frame_stack: Optional[int] = None
    frame_stack_target: int = 128
    normalize: bool = True
    sequence_normalize: bool = True
    feature_mean: Optional[List[float]] = None
    feature_std: Optional[List[float]] = None


def build_task(cfg: TaskConfig) -> Task:
    """Build the task named by ``cfg.name`` (see :class:`TaskConfig`); ``ValueError`` for an unknown name."""
    if cfg.name == "synthetic_timit":
        from tasks.synthetic import build_synthetic_timit
        task = build_synthetic_timit(cfg)
    elif cfg.name == "timit":
        from tasks.timit import build_timit
        task = build_timit(cfg)
    elif cfg.name == "npz":
        from tasks.npz import build_npz
        task = build_npz(cfg)
    elif cfg.name == "smoke":
        from tasks.smoke import build_smoke
        task = build_smoke(cfg)
    else:
        raise TaskConfigError(f"task.name: expected one of {list(TASK_NAMES)}, found {cfg.name!r}")
    if cfg.max_frames is not None:
        task.train = task.train.chunked(cfg.max_frames)
    return task
