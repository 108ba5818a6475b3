"""TIMIT loader: LDC layout, standard splits, frame labels, cached features -> :class:`tasks.base.Task`.

Layout (names matched case-insensitively, so ``TRAIN/DR1/FCJF0/SA1.WAV`` and ``train/dr1/fcjf0/sa1.wav``
both work)::

    <root>/TRAIN|TEST/DR1..DR8/<SPEAKER>/<SA|SI|SX><n>.WAV   NIST SPHERE, 16 kHz int16 PCM
                                          <SA|SI|SX><n>.PHN   "BEGIN_SAMPLE END_SAMPLE LABEL" lines (61-set)

Other files (``.TXT``, ``.WRD``, converted ``*.WAV.wav`` copies) are ignored.

Splits (SA sentences are dropped everywhere, as in Kaldi):

* train: every speaker under ``TRAIN`` (462 in the full corpus, 3696 utterances);
* valid: the 50-speaker Kaldi dev list (400 utterances), taken from ``TEST``;
* test: the 24-speaker core test list (192 utterances), taken from ``TEST``.

Speaker lists are chosen in this order: explicit ``dev_speakers`` / ``test_speakers`` arguments, else a
``SPEAKERS.json`` file in the corpus root (``{"dev": [...], "test": [...]}``, speaker directory names, any case;
the synthetic generator writes one), else the standard Kaldi lists. Listed speakers must exist under ``TEST``.
Only with the standard lists is the corpus also required to have ``DR1``..``DR8`` under both ``TRAIN`` and
``TEST``. ``allow_partial=True`` turns missing regions, listed speakers and ``.PHN`` files into warnings.

Frame labels: frame ``t`` (see :mod:`tasks.features`) gets the phone whose ``[begin, end)`` sample interval
contains its centre sample ``160 t + 200``; frames outside every segment and ``q`` frames get ``-1``.
Labels are folded to the requested ``label_set`` (39, 48 or 61-without-q) with :mod:`tasks.phones`.

Features are z-normalised with the per-dimension mean and standard deviation of all training frames.
Unnormalised features and 61-set labels of each split are cached in ``cache_dir`` (default
``<root>/../.sdr_cache``) under a key hashing the split's file list, file sizes and mtimes and the feature
config, so a second load only reads one ``.npz`` per split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from tasks import phones
from spiking_deepr.errors import UserError
from tasks.base import SequenceDataset, Task, TaskConfig, TaskConfigError
from tasks.features import FEATURE_DIMS, compute_features, frame_centres
from tasks.npz import NpzFormatError, read_npz
from tasks.sphere import read_sphere

log = logging.getLogger(__name__)

#: Kaldi egs/timit/s5/conf/dev_spk.list (50 speakers, file order).
DEV_SPEAKERS: tuple[str, ...] = tuple(s.upper() for s in """
faks0 fdac1 fjem0 mgwt0 mjar0 mmdb1 mmdm2 mpdf0 fcmh0 fkms0
mbdg0 mbwm0 mcsh0 fadg0 fdms0 fedw0 mgjf0 mglb0 mrtk0 mtaa0
mtdt0 mthc0 mwjg0 fnmr0 frew0 fsem0 mbns0 mmjr0 mdls0 mdlf0
mdvc0 mers0 fmah0 fdrw0 mrcs0 mrjm4 fcal1 mmwh0 fjsj0 majc0
mjsw0 mreb0 fgjd0 fjmg0 mroa0 mteb0 mjfc0 mrjr0 fmml0 mrws1
""".split())
#: Kaldi egs/timit/s5/conf/test_spk.list = the 24-speaker core test set (file order).
CORE_TEST_SPEAKERS: tuple[str, ...] = tuple(s.upper() for s in """
mdab0 mwbt0 felc0 mtas1 mwew0 fpas0 mjmp0 mlnt0
fpkt0 mlll0 mtls0 fjlm0 mbpm0 mklt0 fnlp0 mcmj0
mjdh0 fmgd0 mgrt0 mnjm0 fdhc0 mjln0 mpam0 fmld0
""".split())

SPEAKERS_FILE = "SPEAKERS.json"
DIALECTS = tuple(f"DR{i}" for i in range(1, 9))
CACHE_VERSION = 1
_WAV_RE = re.compile(r"^(s[aix]\d+)\.wav$", re.IGNORECASE)


class TimitLayoutError(UserError, FileNotFoundError):
    """The corpus directory does not have the expected TIMIT layout."""


class TimitDataError(UserError, ValueError):
    """A TIMIT file is malformed or inconsistent (the message names the file)."""


@dataclass(frozen=True)
class Utterance:
    """One TIMIT recording: ``part`` (``TRAIN``/``TEST``), dialect (``DR1``), speaker and sentence
    (``SX13``) upper-cased, and the actual ``wav`` / ``phn`` paths."""

    part: str
    dialect: str
    speaker: str
    sentence: str
    wav: Path
    phn: Path

    @property
    def uid(self) -> str:
        return f"{self.part}/{self.dialect}/{self.speaker}/{self.sentence}"


def _children(directory: Path) -> dict[str, Path]:
    """Upper-cased entry name -> path for the entries of ``directory``.

    If names differ only in case (``SA1.WAV`` and ``SA1.wav``), the first in sorted order (upper case) wins.
    """
    out: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        out.setdefault(p.name.upper(), p)
    return out


def _subdir(parent: Path, name: str) -> Optional[Path]:
    p = _children(parent).get(name.upper())
    return p if p is not None and p.is_dir() else None


def _problem(msg: str, allow_partial: bool) -> None:
    if not allow_partial:
        raise TimitLayoutError(msg)
    warnings.warn(msg + " (skipped: allow_partial=True)", stacklevel=3)


def scan_corpus(root: str | Path, allow_partial: bool = False,
                require_dialects: bool = True) -> dict[str, dict[str, list[Utterance]]]:
    """Index a TIMIT copy: ``{"TRAIN"|"TEST": {speaker: [Utterance, ...]}}`` (all sentences, SA included).

    Raises :class:`TimitLayoutError` naming the missing piece: ``TRAIN``/``TEST`` directory, a dialect
    region (when ``require_dialects``), or the ``.PHN`` of a ``.WAV``; with ``allow_partial`` the last two
    are warnings.
    """
    root = Path(root)
    if not root.is_dir():
        raise TimitLayoutError(f"TIMIT corpus directory {root} does not exist")
    part_dirs = {part: _subdir(root, part) for part in ("TRAIN", "TEST")}
    for part, part_dir in part_dirs.items():
        if part_dir is None:
            raise TimitLayoutError(f"no {part} directory (any case) under {root}")
    corpus: dict[str, dict[str, list[Utterance]]] = {}
    for part, part_dir in part_dirs.items():
        speakers: dict[str, list[Utterance]] = {}
        regions = {n: p for n, p in _children(part_dir).items() if re.fullmatch(r"DR\d", n) and p.is_dir()}
        if require_dialects:
            for dr in DIALECTS:
                if dr not in regions:
                    _problem(f"no {part}/{dr} under {root}", allow_partial)
        for dr, dr_dir in sorted(regions.items()):
            for spk, spk_dir in _children(dr_dir).items():
                if not spk_dir.is_dir():
                    continue
                files = _children(spk_dir)
                utts = []
                for upper, wav in files.items():
                    m = _WAV_RE.match(upper)
                    if not m:
                        continue
                    sent = m.group(1).upper()
                    phn = files.get(f"{sent}.PHN")
                    if phn is None:
                        _problem(f"{spk_dir} has no .PHN for {wav.name}", allow_partial)
                        continue
                    utts.append(Utterance(part, dr, spk, sent, wav, phn))
                if utts:
                    speakers.setdefault(spk, []).extend(utts)
        if not speakers:
            raise TimitLayoutError(f"no speaker with .WAV/.PHN files under {part_dir}")
        corpus[part] = speakers
    return corpus


def speaker_lists(root: str | Path, dev_speakers: Optional[Sequence[str]] = None,
                  test_speakers: Optional[Sequence[str]] = None) -> tuple[list[str], list[str], str]:
    """Resolve the dev and test speaker lists -> (dev, test, source) with upper-cased names.

    ``source`` is ``"arguments"``, ``"SPEAKERS.json"`` or ``"kaldi"`` (see module docstring); explicit
    arguments override per list, the other list then comes from ``SPEAKERS.json`` or Kaldi.
    """
    file_lists: dict[str, list[str]] = {}
    spk_file = _children(Path(root)).get(SPEAKERS_FILE.upper()) if Path(root).is_dir() else None
    if spk_file is not None:
        try:
            with open(spk_file) as fh:
                data = json.load(fh)
        except ValueError as err:
            raise TimitDataError(f"{spk_file}: expected JSON {{\"dev\": [...], \"test\": [...]}}, found {err}") from None
        if not isinstance(data, dict):
            raise TimitDataError(f"{spk_file}: expected a JSON object with 'dev' and 'test', found {type(data).__name__}")
        for key in ("dev", "test"):
            if not isinstance(data.get(key), list):
                raise TimitDataError(f"{spk_file}: field {key!r}: expected a list of speaker names, "
                                     f"found {data.get(key)!r}")
            file_lists[key] = [str(s).upper() for s in data[key]]
    dev = [s.upper() for s in dev_speakers] if dev_speakers is not None else file_lists.get("dev", list(DEV_SPEAKERS))
    test = ([s.upper() for s in test_speakers] if test_speakers is not None
            else file_lists.get("test", list(CORE_TEST_SPEAKERS)))
    if dev_speakers is not None or test_speakers is not None:
        source = "arguments"
    else:
        source = SPEAKERS_FILE if spk_file is not None else "kaldi"
    overlap = sorted(set(dev) & set(test))
    if overlap:
        raise TimitDataError(f"speakers {overlap} are in both the dev and the test list ({source})")
    return dev, test, source


def select_splits(corpus: dict[str, dict[str, list[Utterance]]], dev: Sequence[str], test: Sequence[str],
                  allow_partial: bool = False) -> dict[str, list[Utterance]]:
    """Pick ``{"train", "valid", "test"}`` utterances (SA dropped): train = all ``TRAIN`` speakers,
    valid/test = the ``dev`` / ``test`` speakers from ``TEST`` (each must exist unless ``allow_partial``)."""
    def no_sa(utts: Iterable[Utterance]) -> list[Utterance]:
        return sorted((u for u in utts if not u.sentence.startswith("SA")), key=lambda u: u.uid)

    out = {"train": no_sa(u for utts in corpus["TRAIN"].values() for u in utts)}
    for split, names, list_name in (("valid", dev, "dev"), ("test", test, "test")):
        utts = []
        for spk in names:
            if spk not in corpus["TEST"]:
                where = " (it is under TRAIN)" if spk in corpus["TRAIN"] else ""
                _problem(f"speaker {spk} of the {list_name} list not found under TEST{where}", allow_partial)
                continue
            utts.extend(corpus["TEST"][spk])
        out[split] = no_sa(utts)
    for split, utts in out.items():
        if not utts:
            raise TimitLayoutError(f"the {split} split is empty (no non-SA utterances)")
    return out


def read_phn(path: str | Path) -> list[tuple[int, int, str]]:
    """Parse a ``.PHN`` file -> ``[(begin_sample, end_sample, label61), ...]``; errors name file and line."""
    segments = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                begin, end, label = int(parts[0]), int(parts[1]), parts[2].lower()
            except (IndexError, ValueError):
                raise TimitDataError(f"{path}:{lineno}: expected 'BEGIN END LABEL', found {line.strip()!r}") from None
            if label not in phones.PHONES_61:
                raise TimitDataError(f"{path}:{lineno}: unknown phone {label!r} (not in the TIMIT 61-set)")
            if not 0 <= begin <= end:
                raise TimitDataError(f"{path}:{lineno}: bad sample interval [{begin}, {end})")
            segments.append((begin, end, label))
    if not segments:
        raise TimitDataError(f"{path}: expected 'BEGIN END LABEL' lines, found no segment (empty file)")
    return segments


def check_segments(phn: Path, segments: Sequence[tuple[int, int, str]], n_samples: int, wav: Path) -> None:
    """Refuse ``.PHN`` segments that end after the audio (``n_samples`` samples of ``wav``)."""
    for begin, end, label in segments:
        if end > n_samples:
            raise TimitDataError(f"{phn}: segment '{begin} {end} {label}' ends after the audio: expected "
                                 f"END <= {n_samples} (the samples in {wav.name}), found {end}")


def frame_labels_61(segments: Sequence[tuple[int, int, str]], n_frames: int) -> np.ndarray:
    """int64 [n_frames]: index into :data:`tasks.phones.PHONES_61` of the phone at each frame centre, -1 if none.

    Later segments win where segments overlap.
    """
    centres = frame_centres(n_frames)
    labels = np.full(n_frames, -1, dtype=np.int64)
    index = {p: i for i, p in enumerate(phones.PHONES_61)}
    for begin, end, label in segments:
        labels[(centres >= begin) & (centres < end)] = index[label]
    return labels


def _cache_key(utts: Sequence[Utterance], root: Path, features: str) -> str:
    files = []
    for u in utts:
        for p in (u.wav, u.phn):
            st = p.stat()
            files.append((os.path.relpath(p, root), st.st_size, st.st_mtime_ns))
    blob = json.dumps({"version": CACHE_VERSION, "features": features, "files": files})
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_split(utts: Sequence[Utterance], features: str, root: Path,
               cache_dir: Optional[Path]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Unnormalised features (float32 [T_i, F]) and 61-set frame labels (int64 [T_i]) of ``utts``.

    Read from ``cache_dir`` when a matching cache file exists, else computed and written there.
    Computing checks every file: audio against its header's ``sample_count``, ``.PHN`` segments against
    the audio length, and that every utterance has at least one labelled frame.
    """
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"timit_{features}_{_cache_key(utts, root, features)}.npz"
        if cache_file.exists():
            return _read_cache(cache_file)
    xs, ys = [], []
    for u in tqdm(utts, desc=f"features ({features})", unit="utt", disable=None, leave=False):
        audio = read_sphere(u.wav)
        segments = read_phn(u.phn)
        check_segments(u.phn, segments, len(audio), u.wav)
        feat = compute_features(audio, features)
        xs.append(feat)
        ys.append(frame_labels_61(segments, len(feat)))
    ignored = [phones.PHONES_61.index(p) for p in phones.IGNORED]
    unlabelled = [u for u, y in zip(utts, ys) if not ((y >= 0) & ~np.isin(y, ignored)).any()]
    if unlabelled:
        names = ", ".join(str(u.wav) for u in unlabelled[:3]) + (" ..." if len(unlabelled) > 3 else "")
        raise TimitDataError(f"{len(unlabelled)} utterance(s) have no labelled frame (audio shorter than one "
                             f"25 ms frame, or no .PHN segment covers a frame centre): {names}")
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
            np.savez(tmp, x=np.concatenate(xs), labels=np.concatenate(ys).astype(np.int16),
                     lengths=np.array([len(x) for x in xs], dtype=np.int64))
            os.replace(tmp, cache_file)
        except OSError as exc:
            warnings.warn(f"could not write the TIMIT feature cache {cache_file}: {exc}", stacklevel=2)
    return xs, ys


def _read_cache(cache_file: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    hint = f"; delete {cache_file} to recompute the features"
    try:
        z = read_npz(cache_file, "a TIMIT feature cache (x, labels, lengths)")
    except NpzFormatError as err:
        raise TimitDataError(f"{err}{hint}") from None
    if (not {"x", "labels", "lengths"} <= set(z) or int(z["lengths"].sum()) != len(z["x"])
            or len(z["x"]) != len(z["labels"])):
        raise TimitDataError(f"{cache_file}: expected fields x, labels, lengths of matching sizes, found "
                             f"{ {k: v.shape for k, v in z.items()} }{hint}")
    bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
    x, lab = z["x"], z["labels"].astype(np.int64)
    log.info("TIMIT features from cache %s", cache_file)
    return ([x[a:b] for a, b in zip(bounds[:-1], bounds[1:])], [lab[a:b] for a, b in zip(bounds[:-1], bounds[1:])])


def load_timit(root: str | Path, features: str = "mfcc", label_set: int = 39,
               cache_dir: Optional[str | Path] = None, dev_speakers: Optional[Sequence[str]] = None,
               test_speakers: Optional[Sequence[str]] = None, allow_partial: bool = False,
               use_cache: bool = True, name: str = "timit") -> Task:
    """Load a TIMIT-layout corpus as a frame-classification :class:`Task`.

    Args:
        root: corpus directory containing ``TRAIN`` and ``TEST`` (any case).
        features: ``mfcc`` (F = 39) or ``fbank`` (F = 123), see :mod:`tasks.features`.
        label_set: training classes: 39, 48 or 61 (60 classes, ``q`` ignored). ``Task.eval_fold`` folds to 39.
        cache_dir: feature cache directory (default ``<root>/../.sdr_cache``).
        dev_speakers, test_speakers: override the speaker lists (see :func:`speaker_lists`).
        allow_partial: tolerate a partial corpus (warnings instead of errors).
        use_cache: read/write the feature cache.
        name: the ``Task.name`` to report.

    Returns:
        Task whose items are ``x`` float32 [T, F] normalised with training mean/std, ``y`` int64 [T].
    """
    if features not in FEATURE_DIMS:
        raise TaskConfigError(f"task.features: expected one of {sorted(FEATURE_DIMS)}, found {features!r}")
    names = phones.class_names(label_set)
    root = Path(root).expanduser().resolve()
    dev, test, source = speaker_lists(root, dev_speakers, test_speakers)
    corpus = scan_corpus(root, allow_partial, require_dialects=(source == "kaldi"))
    splits = select_splits(corpus, dev, test, allow_partial)
    cache = None
    if use_cache:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else root.parent / ".sdr_cache"
    fold61 = phones.lookup_61(label_set)
    loaded = {}
    for split, utts in splits.items():
        xs, labs = load_split(utts, features, root, cache)
        ys = [np.where(lab >= 0, fold61[lab], -1) for lab in labs]
        loaded[split] = (xs, ys, [u.uid for u in utts])
    train_x = np.concatenate(loaded["train"][0]).astype(np.float64)
    mean = train_x.mean(axis=0)
    std = np.maximum(train_x.std(axis=0), 1e-8)
    datasets = {
        split: SequenceDataset([((x - mean) / std).astype(np.float32) for x in xs], ys, None, ids)
        for split, (xs, ys, ids) in loaded.items()
    }
    info = {
        "corpus": str(root), "speaker_lists": source, "features": features, "label_set": label_set,
        "n_speakers": {"train": len(corpus["TRAIN"]), "valid": len({u.speaker for u in splits["valid"]}),
                       "test": len({u.speaker for u in splits["test"]})},
        "n_utterances": {k: len(v) for k, v in splits.items()},
        "feature_mean": mean.astype(np.float32), "feature_std": std.astype(np.float32),
        "cache_dir": None if cache is None else str(cache),
    }
    return Task(name=name, n_features=FEATURE_DIMS[features], n_classes=len(names), train=datasets["train"],
                valid=datasets["valid"], test=datasets["test"], class_names=names, sequence_task=False,
                eval_fold=phones.eval_fold(label_set), n_eval_classes=len(phones.PHONES_39),
                eval_class_names=list(phones.PHONES_39), info=info)


def build_timit(cfg: TaskConfig) -> Task:
    """``build_task`` entry for ``name: timit``: ``cfg.path`` is the user's TIMIT copy (required)."""
    if cfg.path is None:
        raise TaskConfigError("task.path: expected a TIMIT copy (the directory holding TRAIN/ and TEST/) "
                              "for task.name=timit, found null")
    return load_timit(cfg.path, features=cfg.features, label_set=cfg.label_set, cache_dir=cfg.cache_dir,
                      dev_speakers=cfg.dev_speakers, test_speakers=cfg.test_speakers,
                      allow_partial=cfg.allow_partial, name=cfg.name)
