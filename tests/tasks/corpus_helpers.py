"""Helpers for the tasks tests: hand-made TIMIT-layout corpora (SPHERE .WAV + .PHN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.sphere import write_sphere
from tasks.timit import CORE_TEST_SPEAKERS, DEV_SPEAKERS


def write_utterance(spk_dir: Path, sentence: str, n_samples: int, segments, lowercase: bool = False,
                    seed: int = 0, phn: bool = True) -> None:
    """Write ``<sentence>.WAV`` (noise) and ``.PHN`` (``segments`` = [(begin, end, label)]) into ``spk_dir``."""
    spk_dir.mkdir(parents=True, exist_ok=True)
    name = sentence.lower() if lowercase else sentence
    audio = (np.random.default_rng(seed).standard_normal(n_samples) * 1000).astype(np.int16)
    write_sphere(spk_dir / f"{name}.{'wav' if lowercase else 'WAV'}", audio)
    if phn:
        with open(spk_dir / f"{name}.{'phn' if lowercase else 'PHN'}", "w") as fh:
            fh.writelines(f"{b} {e} {lab}\n" for b, e, lab in segments)


def make_corpus(root: Path, train: dict[str, list[str]], test: dict[str, list[str]], lowercase: bool = False,
                n_samples: int = 1200) -> Path:
    """A TIMIT-layout corpus: ``{dialect: [speaker, ...]}`` per part, each speaker with SA1, SX3, SI5."""
    segs = [(0, 300, "h#"), (300, 700, "aa"), (700, n_samples, "s")]
    k = 0
    for part, regions in (("TRAIN", train), ("TEST", test)):
        for dr, speakers in regions.items():
            for spk in speakers:
                d = root / (part.lower() if lowercase else part) / (dr.lower() if lowercase else dr)
                d = d / (spk.lower() if lowercase else spk)
                for sent in ("SA1", "SX3", "SI5"):
                    write_utterance(d, sent, n_samples, segs, lowercase, seed=k)
                    k += 1
    return root


def standard_corpus(root: Path, lowercase: bool = False) -> Path:
    """Corpus with one train speaker per region and all Kaldi dev/core-test speakers (+1 extra) under TEST."""
    train = {f"DR{i}": [f"MTRN{i}"] for i in range(1, 9)}
    test = {f"DR{i}": [] for i in range(1, 9)}
    for j, spk in enumerate(list(DEV_SPEAKERS) + list(CORE_TEST_SPEAKERS) + ["MXTR0"]):
        test[f"DR{j % 8 + 1}"].append(spk)
    return make_corpus(root, train, test, lowercase)
