"""TIMIT phone sets and the standard 61 -> 48 -> 39 folding (Lee & Hon 1989, Kaldi ``phones.60-48-39.map``).

The glottal stop ``q`` has no target in the 48- or 39-set: as in Kaldi it is removed, i.e. its frames get
label ``-1`` (ignored) in every label set. Hence the "61" training label set has 60 classes (the 61 TIMIT
labels without ``q``). Class indices are positions in the alphabetically sorted phone lists below.
"""

from __future__ import annotations

import numpy as np

#: 61-set label -> (48-set label, 39-set label); ``q`` -> None (deleted). Verbatim from Kaldi's map.
_MAP = {
    "aa": ("aa", "aa"), "ae": ("ae", "ae"), "ah": ("ah", "ah"), "ao": ("ao", "aa"), "aw": ("aw", "aw"),
    "ax": ("ax", "ah"), "ax-h": ("ax", "ah"), "axr": ("er", "er"), "ay": ("ay", "ay"), "b": ("b", "b"),
    "bcl": ("vcl", "sil"), "ch": ("ch", "ch"), "d": ("d", "d"), "dcl": ("vcl", "sil"), "dh": ("dh", "dh"),
    "dx": ("dx", "dx"), "eh": ("eh", "eh"), "el": ("el", "l"), "em": ("m", "m"), "en": ("en", "n"),
    "eng": ("ng", "ng"), "epi": ("epi", "sil"), "er": ("er", "er"), "ey": ("ey", "ey"), "f": ("f", "f"),
    "g": ("g", "g"), "gcl": ("vcl", "sil"), "h#": ("sil", "sil"), "hh": ("hh", "hh"), "hv": ("hh", "hh"),
    "ih": ("ih", "ih"), "ix": ("ix", "ih"), "iy": ("iy", "iy"), "jh": ("jh", "jh"), "k": ("k", "k"),
    "kcl": ("cl", "sil"), "l": ("l", "l"), "m": ("m", "m"), "n": ("n", "n"), "ng": ("ng", "ng"),
    "nx": ("n", "n"), "ow": ("ow", "ow"), "oy": ("oy", "oy"), "p": ("p", "p"), "pau": ("sil", "sil"),
    "pcl": ("cl", "sil"), "q": None, "r": ("r", "r"), "s": ("s", "s"), "sh": ("sh", "sh"), "t": ("t", "t"),
    "tcl": ("cl", "sil"), "th": ("th", "th"), "uh": ("uh", "uh"), "uw": ("uw", "uw"), "ux": ("uw", "uw"),
    "v": ("v", "v"), "w": ("w", "w"), "y": ("y", "y"), "z": ("z", "z"), "zh": ("zh", "sh"),
}

#: All 61 TIMIT labels (including ``q``), sorted.
PHONES_61: list[str] = sorted(_MAP)
#: The 48-set of Lee & Hon, sorted.
PHONES_48: list[str] = sorted({v[0] for v in _MAP.values() if v})
#: The 39-set used for scoring, sorted.
PHONES_39: list[str] = sorted({v[1] for v in _MAP.values() if v})
#: Labels that are ignored (frame label -1) in every label set.
IGNORED = ("q",)

LABEL_SETS = (39, 48, 61)


def class_names(label_set: int) -> list[str]:
    """Training class names for ``label_set`` in {39, 48, 61}; the 61-set drops ``q`` (60 classes)."""
    if label_set == 39:
        return list(PHONES_39)
    if label_set == 48:
        return list(PHONES_48)
    if label_set == 61:
        return [p for p in PHONES_61 if p not in IGNORED]
    raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")


def fold(phone61: str, label_set: int) -> str | None:
    """Map one 61-set label to its name in ``label_set``; ``None`` for ``q``. Raises KeyError if unknown."""
    target = _MAP[phone61]
    if target is None:
        return None
    return {39: target[1], 48: target[0], 61: phone61}[label_set]


def lookup_61(label_set: int) -> np.ndarray:
    """int64 [61]: index into :data:`PHONES_61` -> class index in ``label_set`` (-1 for ``q``)."""
    names = class_names(label_set)
    index = {p: i for i, p in enumerate(names)}
    out = np.full(len(PHONES_61), -1, dtype=np.int64)
    for i, p in enumerate(PHONES_61):
        f = fold(p, label_set)
        if f is not None:
            out[i] = index[f]
    return out


def eval_fold(label_set: int) -> np.ndarray | None:
    """int64 [n_classes(label_set)]: training class -> 39-set class, or ``None`` for ``label_set=39``.

    A trainer folds both its argmax predictions and its targets through this array before scoring.
    """
    if label_set == 39:
        return None
    index39 = {p: i for i, p in enumerate(PHONES_39)}
    if label_set == 48:
        to39 = {v[0]: v[1] for v in _MAP.values() if v}
        return np.array([index39[to39[p]] for p in PHONES_48], dtype=np.int64)
    return np.array([index39[fold(p, 39)] for p in class_names(61)], dtype=np.int64)


def fold_matrix(label_set: int) -> np.ndarray:
    """float32 [n_classes(label_set), 39] 0/1 matrix M with ``M[c, eval_fold[c]] = 1``.

    ``probs @ M`` sums class probabilities into 39-set probabilities (identity for ``label_set=39``).
    """
    n = len(class_names(label_set))
    f = eval_fold(label_set)
    f = np.arange(n) if f is None else f
    m = np.zeros((n, len(PHONES_39)), dtype=np.float32)
    m[np.arange(n), f] = 1.0
    return m
