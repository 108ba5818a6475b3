"""SPHERE reading/writing: header round trip through soundfile and clear rejections."""

import numpy as np
import pytest
import soundfile as sf

from tasks.sphere import HEADER_BYTES, SphereError, read_header, read_sphere, write_sphere


def test_round_trip_through_soundfile(tmp_path):
    x = (np.random.default_rng(0).standard_normal(5000) * 4000).astype(np.int16)
    path = tmp_path / "a.WAV"
    write_sphere(path, x)
    raw = path.read_bytes()
    assert raw[:8] == b"NIST_1A\n" and raw[8:16] == b"   1024\n"
    assert len(raw) == HEADER_BYTES + 2 * len(x)
    assert np.array_equal(np.frombuffer(raw[HEADER_BYTES:], dtype="<i2"), x)  # little-endian payload
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("NIST", "PCM_16", 16000, 1)
    h = read_header(path)
    assert h["sample_count"] == 5000 and h["sample_byte_format"] == "01" and "sample_coding" not in h
    assert np.array_equal(read_sphere(path), x)


def _with_field(tmp_path, line: str):
    path = tmp_path / "b.wav"
    write_sphere(path, np.zeros(100, dtype=np.int16))
    raw = bytearray(path.read_bytes())
    header = raw[:HEADER_BYTES].replace(b"end_head", line.encode() + b"\nend_head", 1)[:HEADER_BYTES]
    path.write_bytes(bytes(header) + bytes(raw[HEADER_BYTES:]))
    return path


def test_shorten_is_rejected_with_hint(tmp_path):
    path = _with_field(tmp_path, "sample_coding -s26 pcm,embedded-shorten-v2.00")
    with pytest.raises(SphereError, match="shorten compression.*sph2pipe"):
        read_sphere(path)


def test_other_coding_and_rate_rejected(tmp_path):
    with pytest.raises(SphereError, match="sample_coding 'ulaw'"):
        read_sphere(_with_field(tmp_path, "sample_coding -s4 ulaw"))
    path = tmp_path / "c.wav"
    write_sphere(path, np.zeros(10, dtype=np.int16), sample_rate=8000)
    with pytest.raises(SphereError, match="sample_rate 8000"):
        read_sphere(path)


def test_riff_and_garbage_are_not_sphere(tmp_path):
    riff = tmp_path / "x.wav"
    sf.write(str(riff), np.zeros(100, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(SphereError, match=r"x.wav is not NIST SPHERE.*RIFF"):
        read_sphere(riff)
    junk = tmp_path / "j.wav"
    junk.write_bytes(b"hello")
    with pytest.raises(SphereError, match="is not NIST SPHERE"):
        read_sphere(junk)
