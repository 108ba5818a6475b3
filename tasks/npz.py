"""Bring-your-own data: a directory of ``train.npz``, ``test.npz`` and optionally ``valid.npz``.

Each file holds:

* ``x``: float [N, T, F] inputs (zero padding beyond each sequence's length is ignored);
* ``lengths`` (optional): int [N], valid frames per sequence, ``1 <= lengths <= T`` (default: all T);
* ``y``: either int [N, T] frame labels (``-1`` = ignore this frame) or int [N] one label per sequence.
  With per-sequence labels the task is a sequence task: every valid frame is trained on the sequence's label
  and ``SequenceDataset.sequence_labels`` holds the labels so the trainer can also score per sequence;
* ``n_classes`` (optional): int scalar; otherwise ``1 + max label`` of ``train.npz``;
* ``class_names`` (optional): str [n_classes].

Without ``valid.npz``, a seeded ``valid_fraction`` of ``train.npz`` is held out; with per-sequence labels
the hold-out is **stratified** by class: ``valid_fraction`` of every class but at least ``valid_min_per_class``
sequences (while leaving one in training), so that early stopping on a small set (GunPoint: 50 sequences) sees more
than a handful of sequences; with frame labels it is a plain seeded 10 % (at least one sequence).
All files must agree on F, on the label kind and on ``n_classes``; every violation raises ``ValueError``
naming the file, the field, what was expected and what was found.

Inputs are standardised per feature by default: ``(x - mean) / std`` with the mean and standard deviation
over the valid frames of the *training* split (after the validation hold-out), or with given statistics;
``Task.info["feature_mean"]`` / ``["feature_std"]`` hold the values used. Raw features of very different
scales (PLAID's current spans -22 ... 461 A) otherwise saturate LSTM gates and spiking thresholds.

**Frame stacking** (after standardisation, sequence tasks): non-overlapping windows of ``k`` frames become one
frame of ``k * F`` features (``stack_frames``; lossless, the last window zero-padded), so a sequence of
``T`` frames becomes ``ceil(T / k)`` frames and BPTT runs ``k`` times fewer steps. ``frame_stack=None``
picks the smallest ``k`` that brings the longest training sequence to at most ``frame_stack_target`` frames
(PLAID: 1,344 samples -> k = 11, <= 123 frames; GunPoint: 150 -> k = 2, 75 frames); ``Task.info`` records
``frame_stack``. Frame-labelled data is never stacked (its labels are per frame).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from spiking_deepr.errors import UserError, UserFileNotFoundError
from tasks.base import SequenceDataset, Task, TaskConfig, TaskConfigError


class NpzFormatError(UserError, ValueError):
    """An npz task file does not have the documented fields, shapes, dtypes or label ranges."""


def _err(file: Path, field: str, expected: str, found: object) -> NpzFormatError:
    return NpzFormatError(f"{file}: field {field!r}: expected {expected}, found {found}")


ZIP_MAGICS, NPY_MAGIC = (b"PK\x03\x04", b"PK\x05\x06"), b"\x93NUMPY"  # a zip with entries / an empty one


def read_npz(file: Path, what: str = "an npz archive (np.savez)") -> dict[str, np.ndarray]:
    """All arrays of an npz archive, without pickles; any unreadable file raises :class:`NpzFormatError`
    naming it (a ``.npy`` array, random bytes, a truncated or corrupt archive)."""
    with open(file, "rb") as fh:
        head = fh.read(6)
    if head.startswith(NPY_MAGIC):
        raise NpzFormatError(f"{file}: expected {what}, found a single .npy array (np.save); "
                             f"save the fields with np.savez(path, x=..., y=...)")
    if not head.startswith(ZIP_MAGICS):
        raise NpzFormatError(f"{file}: expected {what}, found {'an empty file' if not head else f'bytes {head!r}'}")
    try:
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise NpzFormatError(f"{file}: expected numeric arrays, found an object array (pickled Python "
                                 f"objects are refused)") from None
        raise NpzFormatError(f"{file}: expected {what}, found a truncated or corrupt archive ({err})") from None
    except Exception as err:  # zipfile.BadZipFile, EOFError, zlib.error, OSError: damaged archive
        raise NpzFormatError(f"{file}: expected {what}, found a truncated or corrupt archive "
                             f"({type(err).__name__}: {err})") from None


def _read(file: Path) -> dict[str, np.ndarray]:
    if not file.exists():
        raise UserFileNotFoundError(f"npz task: {file} does not exist (need train.npz and test.npz, valid.npz optional)")
    data = read_npz(file)
    for key in ("x", "y"):
        if key not in data:
            raise _err(file, key, "an array", f"no such field (fields: {sorted(data)})")
    x, y = data["x"], data["y"]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
        raise _err(file, "x", "float array [N, T, F]", f"{x.dtype} array of shape {x.shape}")
    n, t, _ = x.shape
    if n == 0 or t == 0:
        raise _err(file, "x", "N >= 1 sequences of T >= 1 frames", f"shape {x.shape}")
    if not np.isfinite(x).all():
        raise _err(file, "x", "finite values", "NaN or inf")
    if not np.issubdtype(y.dtype, np.integer):
        raise _err(file, "y", "an integer array", f"dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.unsignedinteger) and y.size and y.max() == np.iinfo(y.dtype).max:
        raise _err(file, "y", "signed integer labels (-1 = ignore)",
                   f"{y.dtype} labels containing {np.iinfo(y.dtype).max}, i.e. -1 wrapped around; save y as int")
    if y.shape not in ((n,), (n, t)):
        raise _err(file, "y", f"shape ({n},) or ({n}, {t}) to match x {x.shape}", f"shape {y.shape}")
    if "lengths" in data:
        lengths = data["lengths"]
        if not np.issubdtype(lengths.dtype, np.integer) or lengths.shape != (n,):
            raise _err(file, "lengths", f"int array of shape ({n},)", f"{lengths.dtype} array of shape {lengths.shape}")
        if lengths.min() < 1 or lengths.max() > t:
            raise _err(file, "lengths", f"values in [1, T={t}]", f"range [{lengths.min()}, {lengths.max()}]")
    else:
        data["lengths"] = np.full(n, t, dtype=np.int64)
    return data


def _check_labels(file: Path, data: dict[str, np.ndarray], n_classes: int, source: str) -> None:
    y = data["y"]
    if y.ndim == 1:
        lo, allowed = y.min(), f"labels in [0, {n_classes - 1}] (n_classes={n_classes} from {source})"
        if lo < 0 or y.max() >= n_classes:
            raise _err(file, "y", allowed, f"range [{lo}, {y.max()}]")
        return
    valid = np.arange(y.shape[1])[None, :] < data["lengths"][:, None]
    vals = y[valid]
    if vals.min() < -1 or vals.max() >= n_classes:
        raise _err(file, "y", f"labels in [-1, {n_classes - 1}] (n_classes={n_classes} from {source})",
                   f"range [{vals.min()}, {vals.max()}]")


def _dataset(data: dict[str, np.ndarray], idx: np.ndarray) -> SequenceDataset:
    x, y, lengths = data["x"], data["y"], data["lengths"]
    xs = [x[i, : lengths[i]] for i in idx]
    if y.ndim == 1:
        ys = [np.full(lengths[i], y[i], dtype=np.int64) for i in idx]
        return SequenceDataset(xs, ys, y[idx].astype(np.int64), [str(i) for i in idx])
    return SequenceDataset(xs, [y[i, : lengths[i]] for i in idx], None, [str(i) for i in idx])


def stack_frames(x: np.ndarray, k: int) -> np.ndarray:
    """Non-overlapping windows of ``k`` frames as one frame: x [T, F] -> [ceil(T / k), k * F], frame j holding
    ``x[j*k], ..., x[j*k + k - 1]`` in that order (feature-minor); the last window is zero-padded."""
    t, f = x.shape
    n = -(-t // k)
    padded = np.zeros((n * k, f), dtype=x.dtype)
    padded[:t] = x
    return padded.reshape(n, k * f)


def auto_frame_stack(max_length: int, target: int) -> int:
    """The smallest k with ``ceil(max_length / k) <= target``."""
    return max(1, -(-max_length // target))


def stratified_split(labels: np.ndarray, valid_fraction: float, min_per_class: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded class-stratified hold-out -> (train indices, valid indices), both sorted, disjoint.

    Class c (n_c sequences) holds out ``max(round(valid_fraction * n_c), min_per_class)`` sequences, at most
    ``n_c - 1`` (one always stays in training); if that leaves nothing (every class a single sequence),
    one random sequence."""
    rng = np.random.default_rng(seed)
    valid = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = min(max(int(round(valid_fraction * len(members))), min_per_class), len(members) - 1)
        valid.append(rng.permutation(members)[:n])
    valid = np.concatenate(valid)
    if len(valid) == 0:
        valid = rng.permutation(len(labels))[:1]
    return np.setdiff1d(np.arange(len(labels)), valid), np.sort(valid)


def normalize_sequence(x: np.ndarray) -> np.ndarray:
    """One sequence x [T, F] standardised per feature with its own mean and std over its frames (a constant
    feature is only centred): the per-series z-normalisation of the UCR archive."""
    x64 = x.astype(np.float64)
    std = x64.std(0)
    return ((x64 - x64.mean(0)) / np.where(std > 1e-12, std, 1.0)).astype(np.float32)


def feature_statistics(dataset: SequenceDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation [F] (float64) over all frames of ``dataset``; a constant
    feature gets std 1 (it is only centred)."""
    frames = np.concatenate(dataset.xs).astype(np.float64)
    std = frames.std(0)
    return frames.mean(0), np.where(std > 1e-12, std, 1.0)


def load_npz_task(directory: str | Path, valid_fraction: float = 0.1, seed: int = 0, name: str = "npz",
                  normalize: bool = True, sequence_normalize: bool = False, mean: Optional[Sequence[float]] = None,
                  std: Optional[Sequence[float]] = None, valid_min_per_class: int = 5,
                  frame_stack: Optional[int] = 1, frame_stack_target: int = 128) -> Task:
    """Load and validate an npz task directory (see module docstring) -> :class:`Task`; with ``normalize``,
    standardised with ``mean``/``std`` [F] if given, else with the training split's statistics; then
    frames stacked by ``frame_stack`` (None: automatic, see module docstring)."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UserFileNotFoundError(f"npz task directory {directory} does not exist")
    files = {s: directory / f"{s}.npz" for s in ("train", "valid", "test")}
    data = {s: _read(f) for s, f in files.items() if s != "valid" or f.exists()}
    ref_file, ref = files["train"], data["train"]
    n_feat, seq_kind = ref["x"].shape[2], ref["y"].ndim == 1
    for split, d in data.items():
        if d["x"].shape[2] != n_feat:
            raise _err(files[split], "x", f"F={n_feat} features like {ref_file.name}", f"F={d['x'].shape[2]}")
        if (d["y"].ndim == 1) != seq_kind:
            kind = "per-sequence labels [N]" if seq_kind else "frame labels [N, T]"
            raise _err(files[split], "y", f"{kind} like {ref_file.name}", f"shape {d['y'].shape}")
    declared = {s: int(d["n_classes"]) for s, d in data.items() if "n_classes" in d}
    if declared:
        split0, n_classes = next(iter(declared.items()))
        for split, n in declared.items():
            if n != n_classes:
                raise _err(files[split], "n_classes", f"{n_classes} as in {files[split0].name}", n)
        source = files[split0].name
    else:
        n_classes, source = int(ref["y"].max()) + 1, f"max label of {ref_file.name}"
        if n_classes < 1:
            raise _err(ref_file, "y", "at least one label >= 0", "only ignored (-1) labels")
    for split, d in data.items():
        _check_labels(files[split], d, n_classes, source)
    class_names: Optional[list[str]] = None
    if "class_names" in ref:
        class_names = [str(c) for c in ref["class_names"]]
        if len(class_names) != n_classes:
            raise _err(ref_file, "class_names", f"{n_classes} names", len(class_names))

    n_train = len(ref["x"])
    if "valid" in data:
        train, valid = _dataset(ref, np.arange(n_train)), _dataset(data["valid"], np.arange(len(data["valid"]["x"])))
    else:
        if n_train < 2:
            raise _err(ref_file, "x", "at least 2 sequences to split off a validation set", f"N={n_train}")
        if seq_kind:
            train_idx, valid_idx = stratified_split(ref["y"], valid_fraction, valid_min_per_class, seed)
        else:
            perm = np.random.default_rng(seed).permutation(n_train)
            n_valid = min(max(1, int(round(valid_fraction * n_train))), n_train - 1)
            train_idx, valid_idx = np.sort(perm[n_valid:]), np.sort(perm[:n_valid])
        train, valid = _dataset(ref, train_idx), _dataset(ref, valid_idx)
    test = _dataset(data["test"], np.arange(len(data["test"]["x"])))
    if sequence_normalize:
        for ds in (train, valid, test):
            ds.xs = [normalize_sequence(x) for x in ds.xs]
    info = {"path": str(directory), "valid_from": "valid.npz" if "valid" in data else
            (f"{valid_fraction:.0%} of train.npz" + (f", stratified, >= {valid_min_per_class} per class" if seq_kind else ""))}
    if normalize:
        if mean is None or std is None:
            mean, std = feature_statistics(train)
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean.shape != (n_feat,) or std.shape != (n_feat,) or not (std > 0).all():
            raise TaskConfigError(f"task.feature_mean / task.feature_std: expected {n_feat} values each "
                                  f"(std > 0), found {mean.tolist()} / {std.tolist()}")
        for ds in (train, valid, test):
            ds.xs = [((x - mean) / std).astype(np.float32) for x in ds.xs]
        info.update(feature_mean=mean.tolist(), feature_std=std.tolist())
    if frame_stack is None:
        frame_stack = auto_frame_stack(int(ref["x"].shape[1]), frame_stack_target) if seq_kind else 1
    if frame_stack > 1:
        if not seq_kind:
            raise TaskConfigError(f"task.frame_stack: expected 1 (or null) for frame-labelled data "
                                  f"({ref_file} has y [N, T]), found {frame_stack}")
        for ds in (train, valid, test):
            ds.xs = [stack_frames(x, frame_stack) for x in ds.xs]
            ds.ys = [y[: len(x)] for x, y in zip(ds.xs, ds.ys)]
    info["frame_stack"] = int(frame_stack)
    return Task(name=name, n_features=int(n_feat) * int(frame_stack), n_classes=n_classes, train=train, valid=valid, test=test,
                class_names=class_names, sequence_task=bool(seq_kind), eval_fold=None, n_eval_classes=n_classes,
                eval_class_names=class_names, info=info)


def build_npz(cfg: TaskConfig) -> Task:
    """``build_task`` entry for ``name: npz``: ``cfg.path`` is the directory with the npz files (required)."""
    if cfg.path is None:
        raise TaskConfigError("task.path: expected a directory with train.npz and test.npz for task.name=npz, "
                              "found null")
    return load_npz_task(cfg.path, valid_fraction=cfg.valid_fraction, seed=cfg.seed, name=cfg.name,
                         normalize=cfg.normalize, sequence_normalize=cfg.sequence_normalize, mean=cfg.feature_mean, std=cfg.feature_std,
                         valid_min_per_class=cfg.valid_min_per_class, frame_stack=cfg.frame_stack,
                         frame_stack_target=cfg.frame_stack_target)
