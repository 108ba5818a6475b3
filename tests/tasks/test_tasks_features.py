"""Feature recipe vs independent references (loop implementation, librosa, scipy)."""

import librosa
import numpy as np
import pytest
from scipy.fft import dct

from tasks import features as F


def _reference_static(x, kind):
    """Straightforward per-frame loop of the documented recipe (independent of the vectorised code)."""
    n_mels = 23 if kind == "mfcc" else 40
    mel = librosa.filters.mel(sr=16000, n_fft=512, n_mels=n_mels, fmin=20, fmax=8000, htk=True, norm=None)
    win = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(400) / 399)
    rows = []
    for start in range(0, len(x) - 400 + 1, 160):
        fr = x[start:start + 400].astype(np.float64)
        fr = fr - fr.mean()
        energy = np.log(max(np.sum(fr ** 2), np.finfo(np.float32).eps))
        pre = np.empty_like(fr)
        pre[0] = fr[0] - 0.97 * fr[0]
        pre[1:] = fr[1:] - 0.97 * fr[:-1]
        spec = np.abs(np.fft.rfft(pre * win, 512)) ** 2
        logmel = np.log(np.maximum(mel @ spec, np.finfo(np.float32).eps))
        if kind == "mfcc":
            c = dct(logmel, type=2, norm="ortho")[:13]
            rows.append(c * (1 + 11 * np.sin(np.pi * np.arange(13) / 22)))
        else:
            rows.append(np.append(logmel, energy))
    return np.array(rows)


@pytest.mark.parametrize("kind,dim", [("mfcc", 39), ("fbank", 123)])
def test_shapes_and_reference(kind, dim):
    x = (np.random.default_rng(1).standard_normal(4000) * 2000).astype(np.int16)
    feat = F.compute_features(x, kind)
    assert feat.dtype == np.float32 and feat.shape == (1 + (4000 - 400) // 160, dim) == (F.n_frames(4000), dim)
    n_static = dim // 3
    ref = _reference_static(x, kind)
    assert np.allclose(feat[:, :n_static], ref, rtol=1e-4, atol=1e-3)
    # deltas: HTK regression (window 2, edges replicated) == librosa's Savitzky-Golay slope, mode="nearest"
    d_ref = librosa.feature.delta(ref.T, width=5, order=1, mode="nearest").T
    assert np.allclose(feat[:, n_static:2 * n_static], d_ref, rtol=1e-4, atol=1e-3)
    dd_ref = librosa.feature.delta(d_ref.T, width=5, order=1, mode="nearest").T
    assert np.allclose(feat[:, 2 * n_static:], dd_ref, rtol=1e-4, atol=1e-3)


def test_mel_filters_match_librosa():
    for n in (23, 40):
        ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=n, fmin=20, fmax=8000, htk=True, norm=None)
        assert np.allclose(F.mel_filters(n), ref, atol=1e-6)


def test_frame_geometry_and_short_input():
    assert F.n_frames(399) == 0 and F.n_frames(400) == 1 and F.n_frames(560) == 2
    assert F.frame_centres(3).tolist() == [200, 360, 520]
    assert F.compute_features(np.zeros(100, dtype=np.int16), "mfcc").shape == (0, 39)
    with pytest.raises(ValueError, match="features must be one of"):
        F.compute_features(np.zeros(1000), "plp")
