"""Smoke task: seeded delayed cue recall, tiny and quickly learnable by a small recurrent network.

Each sequence shows a noisy class prototype (a random +-1 pattern over the ``N_CHANNELS`` input channels) for
``CUE_FRAMES`` frames, then noise only for a random delay of ``MIN_DELAY``..``MAX_DELAY`` frames, then a
"go" signal (the last input channel = 1) for ``RECALL_FRAMES`` frames during which the class must be reported.
Frame labels are the class in the recall window and ``-1`` elsewhere, so solving it needs memory across
the delay. Inputs: float32 [T, N_CHANNELS + 1] with T = CUE + delay + RECALL (variable), ``N_CLASSES`` classes.
"""

from __future__ import annotations

import numpy as np

from tasks.base import SequenceDataset, Task, TaskConfig

N_CLASSES = 4
N_CHANNELS = 8
CUE_FRAMES = 5
MIN_DELAY, MAX_DELAY = 5, 15
RECALL_FRAMES = 4
NOISE = 0.4
#: size -> (n_train, n_valid, n_test) sequences.
SIZES = {"tiny": (256, 64, 64), "small": (2048, 256, 256)}


def _make(rng: np.random.Generator, prototypes: np.ndarray, n: int) -> SequenceDataset:
    xs, ys = [], []
    for _ in range(n):
        c = int(rng.integers(N_CLASSES))
        t = CUE_FRAMES + int(rng.integers(MIN_DELAY, MAX_DELAY + 1)) + RECALL_FRAMES
        x = np.zeros((t, N_CHANNELS + 1), dtype=np.float32)
        x[:, :N_CHANNELS] = NOISE * rng.standard_normal((t, N_CHANNELS))
        x[:CUE_FRAMES, :N_CHANNELS] += prototypes[c]
        x[-RECALL_FRAMES:, N_CHANNELS] = 1.0
        y = np.full(t, -1, dtype=np.int64)
        y[-RECALL_FRAMES:] = c
        xs.append(x)
        ys.append(y)
    return SequenceDataset(xs, ys)


def make_smoke_task(size: str = "tiny", seed: int = 0, name: str = "smoke") -> Task:
    """Delayed cue recall :class:`Task` of ``size`` (``tiny`` | ``small``), deterministic given ``seed``."""
    if size not in SIZES:
        raise ValueError(f"smoke task size must be one of {list(SIZES)}, got {size!r}")
    rng = np.random.default_rng([seed, 7])
    prototypes = rng.choice([-1.0, 1.0], size=(N_CLASSES, N_CHANNELS))
    n_train, n_valid, n_test = SIZES[size]
    splits = [_make(rng, prototypes, n) for n in (n_train, n_valid, n_test)]
    names = [f"class{i}" for i in range(N_CLASSES)]
    return Task(name=name, n_features=N_CHANNELS + 1, n_classes=N_CLASSES, train=splits[0], valid=splits[1],
                test=splits[2], class_names=names, sequence_task=False, eval_fold=None, n_eval_classes=N_CLASSES,
                eval_class_names=names, info={"size": size, "seed": seed})


def build_smoke(cfg: TaskConfig) -> Task:
    """``build_task`` entry for ``name: smoke``; ``cfg.size`` other than tiny/small falls back to tiny."""
    return make_smoke_task(cfg.size if cfg.size in SIZES else "tiny", cfg.seed, cfg.name)
