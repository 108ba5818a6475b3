"""Synthetic corpus: TIMIT layout, SPHERE files, 61-set labels, determinism, loading through the real loader."""

import json

import numpy as np
import pytest
import soundfile as sf

from tasks import TaskConfig, build_task, phones
from tasks.synthetic import CLASSES, MANIFEST, SIZES, generate_corpus, realise
from tasks.timit import read_phn, scan_corpus


def test_layout_and_files(tiny_corpus):
    p = SIZES["tiny"]
    corpus = scan_corpus(tiny_corpus, require_dialects=False)
    assert len(corpus["TRAIN"]) == p.n_train
    assert len(corpus["TEST"]) == p.n_dev + p.n_test + p.n_extra_test
    utt = next(iter(corpus["TRAIN"].values()))
    assert sorted(u.sentence[:2] for u in utt).count("SA") == 2 and len(utt) == 2 + p.n_sx + p.n_si
    for u in utt:
        raw = u.wav.read_bytes()
        assert raw[:16] == b"NIST_1A\n   1024\n"
        info = sf.info(str(u.wav))
        assert (info.format, info.subtype, info.samplerate) == ("NIST", "PCM_16", 16000)
        segs = read_phn(u.phn)
        assert segs[0][2] == "h#" and segs[-1][2] == "h#" and segs[0][0] == 0
        assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))  # contiguous
        assert segs[-1][1] == info.frames
    spk = json.loads((tiny_corpus / "SPEAKERS.json").read_text())
    assert len(spk["dev"]) == p.n_dev and len(spk["test"]) == p.n_test


def test_realisations_fold_back():
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        for _ in range(20):
            labels = realise(rng, [cls])[1:-1]
            folded = [phones.fold(lab, 39) for lab in labels if lab not in ("q", "pau", "epi")]
            assert folded[-1] == cls and set(folded[:-1]) <= {"sil"}


def test_idempotent_and_deterministic(tiny_corpus, tmp_path):
    mtime = (tiny_corpus / MANIFEST).stat().st_mtime_ns
    assert generate_corpus(tiny_corpus, "tiny", 0) == tiny_corpus
    assert (tiny_corpus / MANIFEST).stat().st_mtime_ns == mtime  # skipped
    other = generate_corpus(tmp_path / "again", "tiny", 0)
    files = json.loads((tiny_corpus / MANIFEST).read_text())["files"]
    assert all((other / f).read_bytes() == (tiny_corpus / f).read_bytes() for f in files[:6])
    seed1 = generate_corpus(tmp_path / "s1", "tiny", 1)
    assert json.loads((seed1 / MANIFEST).read_text())["files"] != files


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a synthetic corpus"):
        generate_corpus(tmp_path / "mine", "tiny", 0)
    with pytest.raises(ValueError, match="size must be one of"):
        generate_corpus(tmp_path / "x", "huge", 0)


def test_build_task_through_timit_loader(tiny_corpus, tmp_path):
    cfg = TaskConfig(name="synthetic_timit", path=str(tiny_corpus), size="tiny", label_set=48,
                     cache_dir=str(tmp_path / "cache"), max_frames=50)
    task = build_task(cfg)
    p = SIZES["tiny"]
    assert task.name == "synthetic_timit" and task.n_features == 39 and task.n_classes == 48
    assert task.info["speaker_lists"] == "SPEAKERS.json"
    assert task.info["n_utterances"] == {"train": p.n_train * (p.n_sx + p.n_si), "valid": p.n_dev * (p.n_sx + p.n_si),
                                         "test": p.n_test * (p.n_sx + p.n_si)}
    assert task.train.lengths.max() <= 50 and task.test.lengths.max() > 50  # only train is chunked
    y = np.concatenate(task.train.ys)
    assert y.min() >= -1 and y.max() < 48
    assert len(np.unique(task.eval_fold[y[y >= 0]])) > 15  # many 39-classes present
    x, yy, seq = task.train[0]
    assert x.dtype.is_floating_point and x.shape[1] == 39 and yy.shape == (x.shape[0],) and seq == -1
