"""Atomic checkpoints and strict JSON: written to a temporary file in the same directory, fsynced,
then renamed.

A run killed mid-write leaves the previous file intact; a full disk raises :class:`DiskFullError`
(the previous file is kept, the temporary file removed). Loading uses ``weights_only=True`` (no
arbitrary code from a checkpoint file) and turns a truncated or foreign file into one clear error.
JSON files are strict (RFC 8259): NaN and infinities are written as ``null``.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read back the process umask: temp files get the permissions a plain open() would give


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, corrupt, not a spiking_deepr checkpoint or of another model."""


class DiskFullError(UserError, OSError):
    """No space left to write a file; the previous version of that file is kept."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        _discard(tmp, path, err, f" ({len(data):,} bytes)")
        raise


def _discard(tmp: str, path: Path, err: BaseException, size: str = "") -> None:
    """Remove the temporary file of a failed atomic write; a full disk becomes :class:`DiskFullError`."""
    if os.path.exists(tmp):
        os.unlink(tmp)
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        raise DiskFullError(f"no space left on device writing {path}{size}{kept}") from None


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, so it serialises as strict JSON
    (numpy arrays and scalars become lists and Python numbers)."""
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def dumps_strict(obj: Any, **kwargs) -> str:
    """``json.dumps`` that never writes NaN/Infinity (they become null)."""
    return json.dumps(strict_json(obj), allow_nan=False, **kwargs)


def atomic_write_file(path: Path, write_to) -> None:
    """Call ``write_to(tmp_path)`` for writers that need a file name (h5py), then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        write_to(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        _discard(tmp, path, err)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (dumps_strict(obj, indent=2) + "\n").encode())


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    buffer = io.BytesIO()  # serialise first: a full disk then fails as an OSError on our write
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(state, dict) or "format" not in state or state["format"] != "spiking_deepr/1":
        raise CheckpointError(f"{path} is not a spiking_deepr checkpoint (missing format 'spiking_deepr/1')")
    return state


def load_model_state(model, state: dict, path: Path) -> None:
    """``model.load_state_dict(state)``, refusing a checkpoint of another architecture with one line
    naming the first mismatching tensor (torch's own message, e.g. ``size mismatch for layers.0.beta``)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()] or [str(err)]
        raise CheckpointError(f"{path}: expected the model described by config.yaml, found {details[0]} "
                              f"(a checkpoint of another model kind or size?)") from None
