"""Atomic checkpoints: written to a temporary file in the same directory, fsynced, then renamed.

A run killed mid-write leaves the previous checkpoint intact. Loading uses ``weights_only=True``
(no arbitrary code from a checkpoint file) and turns a truncated or foreign file into one clear error.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or not a spiking_deepr checkpoint."""


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2) + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(data))


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    atomic_write_bytes(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "format" not in state or state["format"] != "spiking_deepr/1":
        raise CheckpointError(f"{path} is not a spiking_deepr checkpoint (missing format 'spiking_deepr/1')")
    return state
