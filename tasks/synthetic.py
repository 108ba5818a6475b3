"""Synthetic TIMIT-like corpus: a seeded formant synthesiser writing the real TIMIT layout.

``generate_corpus(root, size, seed)`` writes ``root/TRAIN|TEST/DRn/<SPEAKER>/<SA|SX|SI><n>.WAV`` (NIST SPHERE,
1024-byte header, 16 kHz int16 little-endian PCM) with ``.PHN`` files in the TIMIT 61-set, a ``SPEAKERS.json``
naming its dev and test speakers (read by :mod:`tasks.timit` instead of the Kaldi lists) and a
``SYNTHETIC.json`` manifest written last. A corpus with a matching manifest is reused as is.

How an utterance is made:

* **Sentence**: ``h#`` + a phone sequence over the 38 non-silence classes of the 39-set drawn from a seeded
  bigram grammar (consonant/vowel alternation with sparse Dirichlet preferences, so context is informative)
  + ``h#``; occasional ``pau``. SA1/SA2 are two fixed sentences read by everyone (dropped by the loader).
* **61-set realisation**: each 39-class becomes TIMIT labels that fold back to it: stops and affricates are a
  closure (``bcl dcl gcl pcl tcl kcl``, folds to ``sil``) plus the release (``b``...``ch jh``); ``aa`` is
  ``aa``/``ao``, ``ah`` is ``ah``/``ax``/``ax-h``, ``ih`` is ``ih``/``ix``, ``n`` is ``n``/``en``/``nx``, ...;
  a glottal stop ``q`` (ignored by the loader) sometimes precedes a vowel.
* **Acoustics** (per 61-label targets): formants F1-F3 (plus fixed F4, F5) in a cascade of resonators excited by
  a glottal pulse train (voicing) and/or noise (aspiration through the formants; frication as a band of noise
  with label-specific centre and width; release bursts at the start of stops); nasals add an anti-resonance;
  diphthongs glide between two targets. Formant tracks are linearly interpolated between per-phone targets
  (coarticulation: consonants pull neighbouring vowel edges towards their locus, ``hh``/``q`` take their
  neighbours' formants). Synthesis is by time-varying filtering in the STFT domain (512-point FFT, 16 ms
  window, 4 ms hop).
* **Variation**: per speaker vocal-tract length factor (0.84-1.22, scaling all formants), pitch (male ~115 Hz,
  female ~205 Hz), per-phone formant offsets ("accent"), speaking rate and a channel colouring; per token
  formant and duration jitter; per utterance pitch declination, loudness and additive coloured noise
  (0-18 dB SNR).
"""

from __future__ import annotations

import json
import os
import shutil
import string
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import fft as sfft

from spiking_deepr.errors import UserFileExistsError
from spiking_deepr.checkpoint import dumps_strict
from tasks import phones
from tasks.base import Task, TaskConfig
from tasks.sphere import write_sphere

GENERATOR_VERSION = 1
MANIFEST = "SYNTHETIC.json"
SR = 16000
N_FFT, WIN, HOP = 512, 256, 64


@dataclass(frozen=True)
class CorpusSize:
    """Corpus dimensions: speakers per split, non-SA sentences per speaker (+2 SA each), phones per sentence."""

    n_train: int
    n_dev: int
    n_test: int
    n_extra_test: int  # TEST speakers in neither list (must be ignored by the loader)
    n_sx: int
    n_si: int
    min_phones: int
    max_phones: int


SIZES = {
    "tiny": CorpusSize(n_train=4, n_dev=1, n_test=1, n_extra_test=1, n_sx=2, n_si=1, min_phones=6, max_phones=12),
    "small": CorpusSize(n_train=40, n_dev=4, n_test=6, n_extra_test=1, n_sx=5, n_si=3, min_phones=10,
                        max_phones=24),
    "medium": CorpusSize(n_train=160, n_dev=16, n_test=24, n_extra_test=2, n_sx=5, n_si=3, min_phones=12,
                         max_phones=30),
}

# --------------------------------------------------------------------------------------------------------------
# Phone inventory: acoustic targets per 61-set label.
#   F: (F1, F2, F3) Hz targets (None: take the neighbours' formants); F_end: second target of a diphthong;
#   av/ah/af: voicing / aspiration / frication amplitude; fc, fbw: frication band centre and width (Hz);
#   nz: nasal anti-resonance (Hz) or 0; burst: release burst amplitude; dur: mean duration (ms).


@dataclass(frozen=True)
class PhoneSpec:
    F: Optional[tuple[float, float, float]]
    av: float = 0.0
    ah: float = 0.0
    af: float = 0.0
    fc: float = 4000.0
    fbw: float = 3000.0
    nz: float = 0.0
    burst: float = 0.0
    dur: float = 80.0
    F_end: Optional[tuple[float, float, float]] = None


def _v(f1, f2, f3, dur, end=None, av=1.0, ah=0.0):
    return PhoneSpec(F=(f1, f2, f3), av=av, ah=ah, dur=dur, F_end=end)


LABIAL, DENTAL, ALVEOLAR, POSTALV, VELAR = (250, 900, 2200), (300, 1400, 2600), (300, 1700, 2700), \
    (280, 2000, 2600), (280, 2100, 2300)

SPECS: dict[str, PhoneSpec] = {
    # vowels
    "iy": _v(270, 2290, 3010, 110), "ih": _v(390, 1990, 2550, 70), "ix": _v(400, 1800, 2500, 55),
    "eh": _v(530, 1840, 2480, 80), "ae": _v(660, 1720, 2410, 115), "aa": _v(730, 1090, 2440, 110),
    "ao": _v(600, 880, 2410, 115), "ah": _v(640, 1190, 2390, 75), "ax": _v(500, 1400, 2500, 50),
    "ax-h": _v(500, 1400, 2500, 40, av=0.15, ah=0.5), "uh": _v(440, 1020, 2240, 70),
    "uw": _v(300, 870, 2240, 100), "ux": _v(320, 1450, 2250, 90), "er": _v(490, 1350, 1690, 110),
    "axr": _v(480, 1350, 1720, 70),
    "ey": _v(480, 1900, 2500, 120, end=(320, 2200, 2800)), "ay": _v(700, 1200, 2500, 140, end=(380, 2050, 2700)),
    "aw": _v(700, 1250, 2500, 150, end=(420, 950, 2300)), "oy": _v(550, 850, 2400, 150, end=(380, 2000, 2650)),
    "ow": _v(540, 1050, 2400, 120, end=(380, 850, 2300)),
    # liquids and glides
    "l": _v(360, 1000, 2800, 55, av=0.7), "el": _v(420, 1000, 2700, 80, av=0.75),
    "r": _v(350, 1150, 1500, 55, av=0.7), "w": _v(300, 700, 2200, 50, av=0.65),
    "y": _v(280, 2200, 3000, 45, av=0.65),
    # nasals
    "m": PhoneSpec(F=(260, 1000, 2200), av=0.55, nz=900, dur=65), "em": PhoneSpec(F=(260, 1000, 2200), av=0.55,
                                                                                  nz=900, dur=85),
    "n": PhoneSpec(F=(260, 1550, 2600), av=0.55, nz=1600, dur=60), "en": PhoneSpec(F=(280, 1550, 2600), av=0.55,
                                                                                   nz=1600, dur=85),
    "nx": PhoneSpec(F=(280, 1550, 2600), av=0.5, nz=1600, dur=30),
    "ng": PhoneSpec(F=(270, 2000, 2400), av=0.55, nz=2600, dur=65), "eng": PhoneSpec(F=(270, 2000, 2400),
                                                                                     av=0.55, nz=2600, dur=85),
    # closures (fold to sil); voiced ones carry a weak voice bar
    "bcl": PhoneSpec(F=LABIAL, av=0.07, dur=55), "dcl": PhoneSpec(F=ALVEOLAR, av=0.07, dur=50),
    "gcl": PhoneSpec(F=VELAR, av=0.07, dur=55), "pcl": PhoneSpec(F=LABIAL, dur=65),
    "tcl": PhoneSpec(F=ALVEOLAR, dur=60), "kcl": PhoneSpec(F=VELAR, dur=65),
    # stop releases: burst then aspiration (voiceless) or voicing onset (voiced); F is the locus
    "p": PhoneSpec(F=LABIAL, ah=0.35, af=0.05, fc=1200, fbw=2500, burst=0.5, dur=45),
    "t": PhoneSpec(F=ALVEOLAR, ah=0.35, af=0.1, fc=4500, fbw=3000, burst=0.8, dur=50),
    "k": PhoneSpec(F=VELAR, ah=0.35, af=0.08, fc=2400, fbw=900, burst=0.8, dur=55),
    "b": PhoneSpec(F=LABIAL, av=0.45, fc=1200, fbw=2500, burst=0.3, dur=20),
    "d": PhoneSpec(F=ALVEOLAR, av=0.45, fc=4500, fbw=3000, burst=0.45, dur=22),
    "g": PhoneSpec(F=VELAR, av=0.45, fc=2400, fbw=900, burst=0.45, dur=28),
    "dx": PhoneSpec(F=ALVEOLAR, av=0.45, dur=25),
    # affricates (after tcl/dcl)
    "ch": PhoneSpec(F=POSTALV, af=0.7, fc=3000, fbw=1800, burst=0.6, dur=75),
    "jh": PhoneSpec(F=POSTALV, av=0.3, af=0.5, fc=3000, fbw=1800, burst=0.4, dur=65),
    # fricatives
    "s": PhoneSpec(F=ALVEOLAR, af=0.8, fc=5500, fbw=2500, dur=105), "z": PhoneSpec(F=ALVEOLAR, av=0.3, af=0.5,
                                                                                   fc=5500, fbw=2500, dur=80),
    "sh": PhoneSpec(F=POSTALV, af=0.85, fc=3000, fbw=1800, dur=110),
    "zh": PhoneSpec(F=POSTALV, av=0.3, af=0.55, fc=3000, fbw=1800, dur=75),
    "f": PhoneSpec(F=LABIAL, af=0.22, fc=4500, fbw=7000, dur=95), "v": PhoneSpec(F=LABIAL, av=0.35, af=0.12,
                                                                                 fc=4500, fbw=7000, dur=55),
    "th": PhoneSpec(F=DENTAL, af=0.18, fc=5200, fbw=6000, dur=90), "dh": PhoneSpec(F=DENTAL, av=0.4, af=0.1,
                                                                                   fc=5200, fbw=6000, dur=40),
    # h and glottal stop: formants of the neighbours
    "hh": PhoneSpec(F=None, ah=0.55, dur=60), "hv": PhoneSpec(F=None, av=0.3, ah=0.45, dur=55),
    "q": PhoneSpec(F=None, av=0.12, dur=40),
    # silences
    "h#": PhoneSpec(F=None, dur=120), "pau": PhoneSpec(F=None, dur=150), "epi": PhoneSpec(F=None, dur=35),
}

#: 39-set class -> [(61-set label sequence, probability), ...]; each sequence folds back to the class.
REALISATIONS: dict[str, list[tuple[tuple[str, ...], float]]] = {
    "aa": [(("aa",), 0.7), (("ao",), 0.3)], "ah": [(("ah",), 0.5), (("ax",), 0.4), (("ax-h",), 0.1)],
    "er": [(("er",), 0.6), (("axr",), 0.4)], "ih": [(("ih",), 0.55), (("ix",), 0.45)],
    "uw": [(("uw",), 0.6), (("ux",), 0.4)], "l": [(("l",), 0.85), (("el",), 0.15)],
    "m": [(("m",), 0.9), (("em",), 0.1)], "n": [(("n",), 0.75), (("en",), 0.1), (("nx",), 0.15)],
    "ng": [(("ng",), 0.9), (("eng",), 0.1)], "hh": [(("hh",), 0.6), (("hv",), 0.4)],
    "sh": [(("sh",), 0.85), (("zh",), 0.15)],
    "ch": [(("tcl", "ch"), 0.9), (("ch",), 0.1)], "jh": [(("dcl", "jh"), 0.9), (("jh",), 0.1)],
    **{s: [((c, s), 0.9), ((s,), 0.1)] for s, c in
       (("p", "pcl"), ("t", "tcl"), ("k", "kcl"), ("b", "bcl"), ("d", "dcl"), ("g", "gcl"))},
}
CLASSES = [c for c in phones.PHONES_39 if c != "sil"]  # the 38 classes the grammar draws from
VOWELS = {"aa", "ae", "ah", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}


def _realisations(cls: str) -> list[tuple[tuple[str, ...], float]]:
    return REALISATIONS.get(cls, [((cls,), 1.0)])


# --------------------------------------------------------------------------------------------------------------
# Grammar, speakers, sentences


def make_grammar(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded bigram over :data:`CLASSES`: (initial probabilities [38], transition matrix [38, 38]).

    Rows mix a consonant/vowel alternation prior with sparse Dirichlet(0.1) preferences.
    """
    n = len(CLASSES)
    is_v = np.array([c in VOWELS for c in CLASSES])
    trans = rng.dirichlet(np.full(n, 0.1), size=n)
    for i in range(n):
        cat = np.where(is_v, 0.2 if is_v[i] else 0.7, 0.8 if is_v[i] else 0.3)
        trans[i] = 0.9 * trans[i] * cat + 0.1 * cat / cat.sum()
        trans[i, i] *= 0.1
        trans[i] /= trans[i].sum()
    init = rng.dirichlet(np.full(n, 1.0))
    return init, trans


def sample_classes(rng: np.random.Generator, grammar: tuple[np.ndarray, np.ndarray], n: int) -> list[str]:
    """``n`` classes from the bigram ``grammar``."""
    init, trans = grammar
    seq = [rng.choice(len(CLASSES), p=init)]
    for _ in range(n - 1):
        seq.append(rng.choice(len(CLASSES), p=trans[seq[-1]]))
    return [CLASSES[i] for i in seq]


def realise(rng: np.random.Generator, classes: list[str]) -> list[str]:
    """39-set classes -> 61-set label sequence with ``h#`` at both ends, occasional ``pau``/``epi`` and ``q``."""
    labels = ["h#"]
    for i, cls in enumerate(classes):
        if i > 0 and rng.random() < 0.03:
            labels.append("pau" if rng.random() < 0.7 else "epi")
        if cls in VOWELS and rng.random() < 0.04:
            labels.append("q")
        options = _realisations(cls)
        k = rng.choice(len(options), p=[p for _, p in options])
        labels.extend(options[k][0])
    labels.append("h#")
    return labels


@dataclass(frozen=True)
class Speaker:
    """Speaker identity and voice: name (TIMIT-style, e.g. ``FABC0``), sex, vocal-tract factor ``alpha``,
    base pitch ``f0`` (Hz), speaking ``rate`` (duration factor) and a seed for accent and channel."""

    name: str
    sex: str
    alpha: float
    f0: float
    rate: float
    seed: int


def make_speakers(rng: np.random.Generator, n: int, taken: set[str]) -> list[Speaker]:
    """``n`` new speakers with unique names (not in ``taken``, which is updated)."""
    out = []
    while len(out) < n:
        sex = "F" if rng.random() < 0.35 else "M"
        name = sex + "".join(rng.choice(list(string.ascii_uppercase), 3)) + str(rng.integers(0, 10))
        if name in taken:
            continue
        taken.add(name)
        female = sex == "F"
        alpha = float(np.clip(rng.normal(1.15 if female else 0.95, 0.04), 0.84, 1.22))
        f0 = float(np.clip(rng.normal(205 if female else 115, 18 if female else 14), 80, 280))
        out.append(Speaker(name, sex, alpha, f0, float(np.exp(rng.normal(0, 0.12))), int(rng.integers(2**31))))
    return out


# --------------------------------------------------------------------------------------------------------------
# Rendering

_FIXED_FORMANTS = ((3500.0, 250.0), (4500.0, 300.0))
_BANDWIDTHS = (80.0, 100.0, 140.0)


_WINDOW = np.hanning(WIN + 1)[:-1]  # periodic Hann


def _stft(x: np.ndarray, n_frames: int) -> np.ndarray:
    """complex [n_frames, N_FFT // 2 + 1] STFT of ``x``; frame ``k`` is centred on sample ``k * HOP``."""
    padded = np.concatenate([np.zeros(WIN // 2), x, np.zeros(WIN)])
    idx = np.arange(n_frames)[:, None] * HOP + np.arange(WIN)[None, :]
    return sfft.rfft(padded[idx] * _WINDOW, n=N_FFT, axis=1)


def _istft(spec: np.ndarray, n_samples: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`_stft` -> float [n_samples]."""
    frames = sfft.irfft(spec, n=N_FFT, axis=1)[:, :WIN] * _WINDOW
    total = len(spec) * HOP + WIN
    out, norm = np.zeros(total), np.zeros(total)
    idx = (np.arange(len(spec))[:, None] * HOP + np.arange(WIN)[None, :]).ravel()
    np.add.at(out, idx, frames.ravel())
    np.add.at(norm, idx, np.tile(_WINDOW ** 2, len(spec)))
    return (out / np.maximum(norm, 1e-3))[WIN // 2: WIN // 2 + n_samples]


def _cascade(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """|H| [T, K] of cascaded 2-pole resonators, unit gain at DC. formants, bandwidths: [T, n] Hz."""
    f = freqs[None, None, :]
    fi = formants[:, :, None]
    bi = bandwidths[:, :, None]
    mag = fi ** 2 / np.sqrt((fi ** 2 - f ** 2) ** 2 + (f * bi) ** 2)
    return mag.prod(axis=1)


def render(rng: np.random.Generator, labels: list[str], spk: Speaker) -> tuple[np.ndarray, list[tuple]]:
    """Synthesise one utterance -> (int16 audio [n_samples], .PHN segments [(begin, end, label61)])."""
    srng = np.random.default_rng(spk.seed)  # speaker constants: accent per label, channel colouring
    accent = {lab: np.exp(srng.normal(0, 0.12, 3)) for lab in SPECS}
    freqs = np.linspace(0, SR / 2, N_FFT // 2 + 1)
    channel = np.ones_like(freqs)
    for _ in range(3):
        channel *= 10 ** (srng.normal(0, 3.0) * np.exp(-0.5 * ((freqs - srng.uniform(200, 7000)) / 800) ** 2) / 20)

    # durations (samples) and segment boundaries
    durs = []
    for lab in labels:
        ms = SPECS[lab].dur * spk.rate * np.exp(rng.normal(0, 0.25))
        durs.append(max(int(ms * SR / 1000), 160))
    bounds = np.concatenate([[0], np.cumsum(durs)])
    n_samples = int(bounds[-1])
    n_frames = 1 + n_samples // HOP
    t = np.arange(n_frames) * HOP

    # formant keypoints (coarticulation = linear interpolation between targets)
    key_t, key_f = [], []
    src = np.zeros((n_frames, 7))  # av, ah, af, fc, fbw, nz, burst
    src[:, 3], src[:, 4] = 4000.0, 3000.0
    for i, lab in enumerate(labels):
        spec = SPECS[lab]
        s, e = bounds[i], bounds[i + 1]
        d = e - s
        if spec.F is not None:
            jitter = np.exp(rng.normal(0, 0.08, 3)) * accent[lab] * spk.alpha
            f_a = np.array(spec.F) * jitter
            f_b = np.array(spec.F_end) * jitter if spec.F_end is not None else f_a
            if lab in ("p", "t", "k", "b", "d", "g"):
                key_t.append(s), key_f.append(f_a)  # release starts at the locus, then moves on
            elif lab.endswith("cl"):
                key_t.append(s + d / 2), key_f.append(f_a)
            else:
                edge = 0.2 if spec.F_end is not None else 0.3
                key_t += [s + edge * d, e - edge * d]
                key_f += [f_a, f_b]
        m = (t >= s) & (t < e)
        src[m] = [spec.av, spec.ah, spec.af, spec.fc * spk.alpha, spec.fbw, spec.nz * spk.alpha, 0.0]
        if spec.burst:
            src[(t >= s) & (t < s + 0.012 * SR), 6] = spec.burst * np.exp(rng.normal(0, 0.2))
    key_t = np.array(key_t, dtype=float)
    key_f = np.array(key_f)
    if len(key_t) == 0:  # only silences
        key_t, key_f = np.array([0.0]), np.array([[500.0, 1500.0, 2500.0]])
    formants = np.stack([np.interp(t, key_t, key_f[:, j]) for j in range(3)], axis=1)
    kernel = np.array([0.25, 0.5, 0.25])
    for j in range(3):  # soften source on/offsets (~8 ms)
        src[:, j] = np.convolve(src[:, j], kernel, mode="same")

    # spectral envelopes [T, K]
    all_f = np.concatenate([formants, np.tile([f for f, _ in _FIXED_FORMANTS], (n_frames, 1)) * spk.alpha], 1)
    all_b = np.tile(list(_BANDWIDTHS) + [b for _, b in _FIXED_FORMANTS], (n_frames, 1))
    vt = _cascade(freqs, all_f, all_b)
    nz = src[:, 5:6]
    nasal = nz > 0
    zero = np.sqrt((np.maximum(nz, 1.0) ** 2 - freqs[None] ** 2) ** 2 + (freqs[None] * 100.0) ** 2)
    zero = zero / np.maximum(nz, 1.0) ** 2
    vt = np.where(nasal, vt * np.minimum(zero, 1.5) * np.exp(-freqs[None] / 2500.0), vt)
    tilt = 1.0 / np.sqrt(1.0 + (freqs / 150.0) ** 2)
    band = np.exp(-0.5 * ((freqs[None] - src[:, 3:4]) / (src[:, 4:5] / 2)) ** 2)
    burst_band = np.exp(-0.5 * ((freqs[None] - src[:, 3:4]) / (src[:, 4:5] / 1.5)) ** 2)
    g_voice = src[:, 0:1] * vt * tilt[None] * 6.0
    g_noise = (src[:, 1:2] * vt * 0.15 + 0.04 * src[:, 0:1] * vt * tilt[None]
               + src[:, 2:3] * band * 0.6 + src[:, 6:7] * burst_band * 1.2)

    # sources: glottal pulse train (unit power) and white noise
    f0_frames = spk.f0 * np.linspace(1.1, 0.85, n_frames) * (
        1 + 0.06 * np.sin(2 * np.pi * (t / SR) * rng.uniform(0.5, 2.0) + rng.uniform(0, 6.3)))
    f0 = np.interp(np.arange(n_samples + WIN), t, f0_frames) * np.exp(rng.normal(0, 0.01, n_samples + WIN))
    phase = np.cumsum(f0 / SR)
    pulses = np.zeros(n_samples + WIN)
    idx = np.nonzero(np.diff(np.floor(phase)) > 0)[0] + 1
    pulses[idx] = np.sqrt(SR / f0[idx])
    noise = rng.standard_normal(n_samples + WIN)
    spec = (_stft(pulses, n_frames) * g_voice + _stft(noise, n_frames) * g_noise) * channel[None]
    speech = _istft(spec, n_samples)

    # additive coloured background noise at a random SNR, then random loudness
    bg_tilt = rng.uniform(-1.0, 0.3)  # spectral slope exponent
    bg = _istft(_stft(rng.standard_normal(n_samples + WIN), n_frames) * (np.maximum(freqs, 50) / 1000.0) ** bg_tilt,
                n_samples)
    rms = np.sqrt(np.mean(speech ** 2)) + 1e-9
    snr_db = rng.uniform(0, 18)
    audio = speech + bg * rms / (np.sqrt(np.mean(bg ** 2)) + 1e-9) / 10 ** (snr_db / 20)
    audio *= rng.uniform(0.25, 0.7) * 32767 / (np.abs(audio).max() + 1e-9)
    segments = [(int(bounds[i]), int(bounds[i + 1]), lab) for i, lab in enumerate(labels)]
    return audio.astype(np.int16), segments


# --------------------------------------------------------------------------------------------------------------
# Corpus


def _manifest(size: str, seed: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "size": size, "seed": seed, "params": asdict(SIZES[size])}


def _is_complete(root: Path, manifest: dict) -> bool:
    try:
        with open(root / MANIFEST) as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return False
    return all(found.get(k) == v for k, v in manifest.items()) and all(
        (root / f).exists() for f in found.get("files", []))


def _write_speaker(root: Path, part: str, dialect: str, spk: Speaker, sentences: list[tuple[str, list[str]]],
                   rng: np.random.Generator) -> list[str]:
    d = root / part / dialect / spk.name
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for sent_id, classes in sentences:
        audio, segments = render(rng, realise(rng, classes), spk)
        write_sphere(d / f"{sent_id}.WAV", audio)
        with open(d / f"{sent_id}.PHN", "w") as fh:
            fh.writelines(f"{b} {e} {lab}\n" for b, e, lab in segments)
        written += [str((d / f"{sent_id}.{ext}").relative_to(root)) for ext in ("WAV", "PHN")]
    return written


def generate_corpus(root: str | Path, size: str = "small", seed: int = 0) -> Path:
    """Generate (or reuse) a synthetic TIMIT-layout corpus of ``size`` (tiny | small | medium) at ``root``.

    Idempotent: returns at once when ``root`` holds a complete corpus with the same size, seed and generator
    version. A synthetic corpus with other parameters at ``root`` is replaced; any other existing non-empty
    directory is an error. The corpus is written to a temporary sibling directory and renamed into place.
    Returns ``root`` as a resolved Path.
    """
    if size not in SIZES:
        raise ValueError(f"synthetic corpus size must be one of {list(SIZES)}, got {size!r}")
    root = Path(root).expanduser().resolve()
    manifest = _manifest(size, seed)
    if _is_complete(root, manifest):
        return root
    if root.exists() and any(root.iterdir()) and not (root / MANIFEST).exists():
        raise UserFileExistsError(f"{root} exists and is not a synthetic corpus (no {MANIFEST}); "
                                  "choose another task.path or remove it")
    p = SIZES[size]
    tmp = root.with_name(f".{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng([seed, 0])
    grammar = make_grammar(rng)
    sa = [sample_classes(rng, grammar, int(rng.integers(p.min_phones, p.max_phones + 1))) for _ in range(2)]
    taken: set[str] = set()
    parts = {"train": ("TRAIN", make_speakers(rng, p.n_train, taken)),
             "dev": ("TEST", make_speakers(rng, p.n_dev, taken)),
             "test": ("TEST", make_speakers(rng, p.n_test, taken)),
             "extra": ("TEST", make_speakers(rng, p.n_extra_test, taken))}
    files = []
    k = 0
    for role, (part, speakers) in parts.items():
        for spk in speakers:
            urng = np.random.default_rng([seed, 1, k])
            sentences = [("SA1", sa[0]), ("SA2", sa[1])]
            for j in range(p.n_sx + p.n_si):
                kind, num = ("SX", 3 + 5 * k + j) if j < p.n_sx else ("SI", 453 + 3 * k + j)
                n = int(urng.integers(p.min_phones, p.max_phones + 1))
                sentences.append((f"{kind}{num}", sample_classes(urng, grammar, n)))
            files += _write_speaker(tmp, part, f"DR{k % 8 + 1}", spk, sentences, urng)
            k += 1
    with open(tmp / "SPEAKERS.json", "w") as fh:
        fh.write(dumps_strict({"dev": [s.name for s in parts["dev"][1]], "test": [s.name for s in parts["test"][1]]},
                              indent=1))
    with open(tmp / MANIFEST, "w") as fh:
        fh.write(dumps_strict({**manifest, "speakers": {r: [asdict(s) for s in spk] for r, (_, spk) in parts.items()},
                               "files": files}, indent=1))
    if root.exists():
        if _is_complete(root, manifest):  # another process finished first
            shutil.rmtree(tmp)
            return root
        warnings.warn(f"replacing the synthetic corpus at {root} (different size/seed/version)", stacklevel=2)
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return root


def default_path(size: str, seed: int) -> Path:
    """Default corpus directory ``data/synthetic_timit_<size>_s<seed>`` (relative to the working directory)."""
    return Path("data") / f"synthetic_timit_{size}_s{seed}"


def build_synthetic_timit(cfg: TaskConfig) -> Task:
    """``build_task`` entry for ``name: synthetic_timit``: generate if needed, then load with the TIMIT loader."""
    from tasks.timit import load_timit

    root = generate_corpus(cfg.path if cfg.path is not None else default_path(cfg.size, cfg.seed),
                           cfg.size, cfg.seed)
    task = load_timit(root, features=cfg.features, label_set=cfg.label_set, cache_dir=cfg.cache_dir,
                      dev_speakers=cfg.dev_speakers, test_speakers=cfg.test_speakers,
                      allow_partial=cfg.allow_partial, name=cfg.name)
    task.info["synthetic"] = {"size": cfg.size, "seed": cfg.seed, "generator_version": GENERATOR_VERSION}
    return task
