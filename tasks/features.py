"""Frame-level acoustic features for 16 kHz speech (Kaldi/HTK-style recipe in numpy).

Recipe (both kinds), for int16-scaled audio ``x`` (float64, values as in the int16 file):

1. Framing: 25 ms windows (400 samples) every 10 ms (160 samples), "snip edges" as in Kaldi:
   ``T = 1 + (n_samples - 400) // 160`` frames, frame ``t`` covers samples ``[160 t, 160 t + 400)``
   and its centre is sample ``160 t + 200`` (used for frame labels).
2. Per frame: remove the DC offset; log energy ``E = log(max(sum(x^2), eps))`` is taken here (Kaldi's raw
   energy); pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` (``y[0] = x[0] - 0.97 x[0]``); symmetric Hamming window.
3. Power spectrum ``|rfft(frame, 512)|^2`` (257 bins).
4. Triangular filterbank on the HTK mel scale ``mel(f) = 2595 log10(1 + f / 700)``, band edges equally spaced in
   mel between 20 Hz and 8 kHz, triangles evaluated at the 257 FFT bin frequencies, unit peak (identical to
   ``librosa.filters.mel(sr=16000, n_fft=512, fmin=20, fmax=8000, htk=True, norm=None)``); natural log
   floored at ``eps = float32 machine epsilon``.
5. ``mfcc``: 23 mel bands -> orthonormal DCT-II -> first 13 coefficients (c0 kept, no energy replacement,
   Kaldi's ``--use-energy=false``) -> cepstral liftering ``c_i *= 1 + 11 sin(pi i / 22)``. 13 statics.
   ``fbank``: 40 log-mel bands followed by the log energy ``E``. 41 statics.
6. Deltas: HTK regression over +-2 frames, ``d_t = sum_{n=1..2} n (c_{t+n} - c_{t-n}) / 10`` with the
   first/last frame replicated at the edges; delta-deltas are the same regression applied to the deltas.
   Output ``[statics, deltas, delta-deltas]``: 39 (mfcc) or 123 (fbank) features per frame.

No dither is applied, so features are deterministic. Normalisation (training-set mean/std) is done by the
dataset loader, not here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.fft import dct

SAMPLE_RATE = 16000
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
PREEMPH = 0.97
EPS = float(np.finfo(np.float32).eps)
N_MELS = {"mfcc": 23, "fbank": 40}
N_CEPS = 13
LIFTER = 22
DELTA_WINDOW = 2
#: Feature kind -> dimension after deltas.
FEATURE_DIMS = {"mfcc": 39, "fbank": 123}


def n_frames(n_samples: int) -> int:
    """Number of 25 ms / 10 ms frames for ``n_samples`` (0 when shorter than one window)."""
    return max(0, 1 + (n_samples - WIN_LENGTH) // HOP_LENGTH)


def frame_centres(n: int) -> np.ndarray:
    """int64 [n]: sample index of the centre of each frame (``160 t + 200``)."""
    return np.arange(n, dtype=np.int64) * HOP_LENGTH + WIN_LENGTH // 2


def frame_signal(x: np.ndarray) -> np.ndarray:
    """float64 [T, 400] overlapping frames of ``x`` [n_samples] (no padding)."""
    t = n_frames(len(x))
    idx = np.arange(t)[:, None] * HOP_LENGTH + np.arange(WIN_LENGTH)[None, :]
    return np.asarray(x, dtype=np.float64)[idx]


@lru_cache(maxsize=4)
def mel_filters(n_mels: int, fmin: float = 20.0, fmax: float = SAMPLE_RATE / 2) -> np.ndarray:
    """float64 [n_mels, N_FFT // 2 + 1] unit-peak triangular filters on the HTK mel scale."""
    mel_edges = np.linspace(2595 * np.log10(1 + fmin / 700), 2595 * np.log10(1 + fmax / 700), n_mels + 2)
    hz = 700.0 * (10.0 ** (mel_edges / 2595.0) - 1.0)
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    rising = (fft_hz[None, :] - hz[:-2, None]) / (hz[1:-1] - hz[:-2])[:, None]
    falling = (hz[2:, None] - fft_hz[None, :]) / (hz[2:] - hz[1:-1])[:, None]
    return np.maximum(0.0, np.minimum(rising, falling))


def _lifter() -> np.ndarray:
    i = np.arange(N_CEPS)
    return 1.0 + (LIFTER / 2.0) * np.sin(np.pi * i / LIFTER)


def log_mel_and_energy(x: np.ndarray, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-4 of the recipe: (log-mel float64 [T, n_mels], log energy float64 [T])."""
    frames = frame_signal(x)
    frames = frames - frames.mean(axis=1, keepdims=True)
    log_e = np.log(np.maximum((frames ** 2).sum(axis=1), EPS))
    shifted = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - PREEMPH * shifted) * np.hamming(WIN_LENGTH)[None, :]
    power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)) ** 2
    return np.log(np.maximum(power @ mel_filters(n_mels).T, EPS)), log_e


def deltas(feat: np.ndarray, window: int = DELTA_WINDOW) -> np.ndarray:
    """HTK regression deltas of ``feat`` [T, D] over ``+-window`` frames, edges replicated -> [T, D]."""
    if len(feat) == 0:
        return feat.copy()
    padded = np.concatenate([np.repeat(feat[:1], window, 0), feat, np.repeat(feat[-1:], window, 0)])
    t = len(feat)
    num = sum(n * (padded[window + n: window + n + t] - padded[window - n: window - n + t])
              for n in range(1, window + 1))
    return num / (2.0 * sum(n * n for n in range(1, window + 1)))


def static_features(x: np.ndarray, kind: str) -> np.ndarray:
    """Static features of int16-scaled audio ``x`` [n_samples]: mfcc [T, 13] or fbank [T, 41]."""
    if kind not in FEATURE_DIMS:
        raise ValueError(f"features must be one of {sorted(FEATURE_DIMS)}, got {kind!r}")
    log_mel, log_e = log_mel_and_energy(x, N_MELS[kind])
    if kind == "mfcc":
        return dct(log_mel, type=2, norm="ortho", axis=1)[:, :N_CEPS] * _lifter()[None, :]
    return np.concatenate([log_mel, log_e[:, None]], axis=1)


def compute_features(x: np.ndarray, kind: str) -> np.ndarray:
    """Full feature vectors: float32 [T, 39] (``mfcc``) or [T, 123] (``fbank``) for audio ``x`` [n_samples].

    ``x`` is int16 audio (or floats on the int16 scale); ``T = n_frames(len(x))``.
    """
    s = static_features(np.asarray(x, dtype=np.float64), kind)
    d = deltas(s)
    return np.concatenate([s, d, deltas(d)], axis=1).astype(np.float32)
