"""NIST SPHERE audio (the TIMIT ``.WAV`` format): header check, reading through soundfile, writing.

A SPHERE file starts with a plain-text header: ``NIST_1A\\n``, the header size in bytes (``   1024\\n``),
then ``name -type value`` lines up to ``end_head``, padded to the header size. TIMIT uses 16 kHz, mono,
16-bit little-endian PCM with no ``sample_coding`` field. Shorten-compressed copies
(``sample_coding -s.. pcm,embedded-shorten-v2.00``) cannot be read by libsndfile and are rejected here with a hint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from spiking_deepr.errors import UserError

MAGIC = b"NIST_1A"
HEADER_BYTES = 1024


class SphereError(UserError, ValueError):
    """A file is not readable NIST SPHERE PCM audio."""


def read_header(path: str | Path) -> dict[str, str | int]:
    """Parse the SPHERE header of ``path`` into ``{field: value}`` (``-i`` fields as int).

    Raises :class:`SphereError` naming the file when the magic is missing or the header is malformed.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    if not head.startswith(MAGIC + b"\n"):
        found = head[:4]
        hint = " (it is a RIFF/WAVE file)" if found == b"RIFF" else ""
        raise SphereError(f"{path} is not NIST SPHERE: expected magic {MAGIC!r}, found {head[:8]!r}{hint}")
    lines = head.split(b"\n")
    try:
        size = int(lines[1].strip())
    except (IndexError, ValueError):
        raise SphereError(f"{path} is not NIST SPHERE: bad header-size line {lines[1:2]!r}") from None
    if size > len(head):
        with open(path, "rb") as fh:
            lines = fh.read(size).split(b"\n")
    fields: dict[str, str | int] = {}
    for raw in lines[2:]:
        line = raw.decode("ascii", errors="replace").strip()
        if line == "end_head":
            return fields
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].startswith("-"):
            fields[parts[0]] = int(parts[2]) if parts[1] == "-i" else parts[2]
    raise SphereError(f"{path} is not NIST SPHERE: no end_head within the {size}-byte header")


def read_sphere(path: str | Path, expected_rate: int = 16000) -> np.ndarray:
    """Read a 16-bit PCM SPHERE file -> int16 [n_samples] (mono).

    Checks the header first so that unsupported files fail with a clear message naming ``path``:
    a ``sample_coding`` other than ``pcm`` (shorten: "convert with sph2pipe"), another sample rate,
    or more than one channel; then that the file holds the header's ``sample_count`` samples (a file
    cut short, e.g. by an interrupted copy, is refused).
    """
    path = Path(path)
    h = read_header(path)
    coding = str(h.get("sample_coding", "pcm"))
    if "shorten" in coding:
        raise SphereError(f"{path} uses shorten compression ({coding}); convert it with sph2pipe, "
                          "e.g. `sph2pipe -f sph in.wav out.wav`")
    if coding != "pcm":
        raise SphereError(f"{path} uses sample_coding {coding!r}; only uncompressed pcm is supported")
    if h.get("sample_rate", expected_rate) != expected_rate:
        raise SphereError(f"{path} has sample_rate {h['sample_rate']}, expected {expected_rate}")
    if h.get("channel_count", 1) != 1 or h.get("sample_n_bytes", 2) != 2:
        raise SphereError(f"{path}: expected mono 16-bit audio, header says channel_count="
                          f"{h.get('channel_count')} sample_n_bytes={h.get('sample_n_bytes')}")
    try:
        data, _ = sf.read(str(path), dtype="int16", always_2d=False)
    except sf.LibsndfileError as exc:  # e.g. a CRLF-mangled header
        raise SphereError(f"{path} could not be decoded as NIST SPHERE by libsndfile: {exc}") from None
    expected = h.get("sample_count")
    if isinstance(expected, int) and len(data) != expected:
        raise SphereError(f"{path}: expected sample_count {expected} samples (header), found {len(data)} "
                          f"in the file{' (truncated)' if len(data) < expected else ''}")
    return data


def write_sphere(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Write int16 [n_samples] mono PCM as a TIMIT-style SPHERE file (1024-byte header, little-endian)."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(f"write_sphere needs int16 [n_samples], got {samples.dtype} {samples.shape}")
    fields = [
        "database_id -s5 TIMIT",
        "database_version -s3 1.0",
        "channel_count -i 1",
        f"sample_count -i {len(samples)}",
        f"sample_rate -i {sample_rate}",
        "sample_min -i {}".format(int(samples.min()) if len(samples) else 0),
        "sample_max -i {}".format(int(samples.max()) if len(samples) else 0),
        "sample_n_bytes -i 2",
        "sample_byte_format -s2 01",
        "sample_sig_bits -i 16",
        "end_head",
    ]
    header = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\n").encode("ascii")
    header = header.ljust(HEADER_BYTES, b" ")
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(samples.astype("<i2").tobytes())
