"""TIMIT loader: layout (any case), splits, frame labels, normalisation, cache, errors."""

import json
import shutil

import numpy as np
import pytest
from corpus_helpers import make_corpus, standard_corpus, write_utterance

from tasks import phones, timit
from tasks.timit import TimitLayoutError, frame_labels_61, load_timit, read_phn


def test_standard_splits(std_corpus, tmp_path):
    task = load_timit(std_corpus, cache_dir=tmp_path / "c")
    assert task.info["speaker_lists"] == "kaldi"
    assert task.info["n_speakers"] == {"train": 8, "valid": 50, "test": 24}
    assert task.info["n_utterances"] == {"train": 16, "valid": 100, "test": 48}  # SA dropped
    spk = lambda ds: {i.split("/")[2] for i in ds.ids}
    assert spk(task.valid) == set(timit.DEV_SPEAKERS) and spk(task.test) == set(timit.CORE_TEST_SPEAKERS)
    assert "MXTR0" not in spk(task.valid) | spk(task.test)
    assert all("/SA" not in i for ds in (task.train, task.valid, task.test) for i in ds.ids)
    assert all(i.startswith("TRAIN/") for i in task.train.ids)
    assert task.n_classes == 39 and task.eval_fold is None and task.n_eval_classes == 39


def test_lowercase_layout_is_equivalent(tmp_path):
    upper = standard_corpus(tmp_path / "UP")
    lower = standard_corpus(tmp_path / "low", lowercase=True)
    assert (lower / "test" / "dr1" / "faks0" / "sx3.wav").exists()
    a = load_timit(upper, use_cache=False)
    b = load_timit(lower, use_cache=False)
    assert a.valid.ids == b.valid.ids and a.test.ids == b.test.ids
    assert all(np.array_equal(x, y) for x, y in zip(a.train.xs, b.train.xs))


def test_frame_labels_at_boundaries(tmp_path):
    """Hand-computed: 1200 samples -> 6 frames with centres 200, 360, 520, 680, 840, 1000 (begin <= c < end)."""
    segs = [(0, 360, "h#"), (360, 520, "q"), (520, 840, "ao"), (840, 1000, "zh")]
    d = tmp_path / "c"
    write_utterance(d, "SX1", 1200, segs)
    labels = frame_labels_61(read_phn(d / "SX1.PHN"), 6)
    assert [phones.PHONES_61[i] if i >= 0 else None for i in labels] == ["h#", "q", "ao", "ao", "zh", None]
    for ls, expected in ((39, ["sil", None, "aa", "aa", "sh", None]), (48, ["sil", None, "ao", "ao", "zh", None]),
                         (61, ["h#", None, "ao", "ao", "zh", None])):
        folded = np.where(labels >= 0, phones.lookup_61(ls)[labels], -1)
        names = phones.class_names(ls)
        assert [names[i] if i >= 0 else None for i in folded] == expected


def test_label_sets_and_eval_fold(tmp_path):
    root = make_corpus(tmp_path / "T", {"DR1": ["MAAA0"]}, {"DR1": ["MBBB0", "FCCC0"]})
    segs = [(0, 360, "h#"), (360, 520, "q"), (520, 840, "ao"), (840, 1200, "zh")]
    write_utterance(root / "TRAIN" / "DR1" / "MAAA0", "SX3", 1200, segs)  # overwrite with a known labelling
    for ls, n in ((39, 39), (48, 48), (61, 60)):
        task = load_timit(root, label_set=ls, test_speakers=["mbbb0"], dev_speakers=["fccc0"], use_cache=False)
        assert task.n_classes == n == len(task.class_names)
        y = task.train.ys[task.train.ids.index("TRAIN/DR1/MAAA0/SX3")]
        assert y[1] == -1  # q ignored
        scored = y[y >= 0] if task.eval_fold is None else task.eval_fold[y[y >= 0]]
        assert [phones.PHONES_39[i] for i in scored] == ["sil", "aa", "aa", "sh", "sh"]


def test_normalisation_uses_train_stats(std_corpus, tmp_path):
    task = load_timit(std_corpus, features="fbank", cache_dir=tmp_path / "c")
    assert task.n_features == 123 and task.train.xs[0].shape[1] == 123
    tr = np.concatenate(task.train.xs)
    assert np.allclose(tr.mean(0), 0, atol=1e-4) and np.allclose(tr.std(0), 1, atol=1e-3)
    te = np.concatenate(task.test.xs)
    assert np.abs(te.mean(0)).max() > 1e-3  # test set is not re-centred
    raw = np.concatenate([np.asarray(x) for x in task.test.xs]) * task.info["feature_std"] + task.info["feature_mean"]
    assert np.isfinite(raw).all()


def test_cache_is_used_second_time(tmp_path, monkeypatch):
    root = make_corpus(tmp_path / "T", {"DR1": ["MAAA0"]}, {"DR1": ["MBBB0", "FCCC0"]})
    kw = dict(dev_speakers=["FCCC0"], test_speakers=["MBBB0"])
    first = load_timit(root, **kw)
    assert list((tmp_path / ".sdr_cache").glob("timit_mfcc_*.npz"))  # default <corpus>/../.sdr_cache

    def boom(*a, **k):
        raise AssertionError("features recomputed despite the cache")
    monkeypatch.setattr(timit, "compute_features", boom)
    second = load_timit(root, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(first.test.xs, second.test.xs))
    # a changed file invalidates the key
    write_utterance(root / "TEST" / "DR1" / "MBBB0", "SX3", 1600, [(0, 1600, "aa")], seed=9)
    with pytest.raises(AssertionError, match="recomputed"):
        load_timit(root, **kw)


def test_speakers_json_and_explicit_lists(tmp_path):
    root = make_corpus(tmp_path / "T", {"DR2": ["MAAA0"]}, {"DR5": ["MBBB0", "FCCC0", "MDDD0"]})
    with pytest.raises(TimitLayoutError, match="no TRAIN/DR1 under"):
        load_timit(root, use_cache=False)  # standard lists demand a full corpus
    (root / "speakers.json").write_text(json.dumps({"dev": ["fccc0"], "test": ["MBBB0", "mddd0"]}))
    task = load_timit(root, use_cache=False)
    assert task.info["speaker_lists"] == "SPEAKERS.json"
    assert task.info["n_speakers"] == {"train": 1, "valid": 1, "test": 2}
    task = load_timit(root, dev_speakers=["MDDD0"], test_speakers=["mbbb0"], use_cache=False)
    assert task.info["speaker_lists"] == "arguments" and {i.split("/")[2] for i in task.test.ids} == {"MBBB0"}
    with pytest.raises(ValueError, match="both the dev and the test list"):
        load_timit(root, dev_speakers=["MBBB0"], use_cache=False)


def test_missing_pieces_are_named(tmp_path):
    with pytest.raises(TimitLayoutError, match="does not exist"):
        load_timit(tmp_path / "nope")
    root = make_corpus(tmp_path / "T", {"DR1": ["MAAA0"]}, {"DR1": ["MBBB0"]})
    shutil.rmtree(root / "TEST")
    with pytest.raises(TimitLayoutError, match=r"no TEST directory \(any case\) under"):
        load_timit(root)
    root = make_corpus(tmp_path / "U", {"DR1": ["MAAA0"]}, {"DR1": ["MBBB0", "FCCC0"]})
    kw = dict(dev_speakers=["FCCC0"], test_speakers=["MBBB0"], use_cache=False)
    (root / "TRAIN" / "DR1" / "MAAA0" / "SA1.PHN").unlink()
    with pytest.raises(TimitLayoutError, match=r"MAAA0 has no \.PHN for SA1\.WAV"):
        load_timit(root, **kw)
    with pytest.warns(UserWarning, match="no .PHN for SA1.WAV"):
        load_timit(root, allow_partial=True, **kw)
    write_utterance(root / "TRAIN" / "DR1" / "MAAA0", "SA1", 1200, [(0, 1200, "h#")])
    with pytest.raises(TimitLayoutError, match="speaker FAKS0 of the dev list not found under TEST"):
        load_timit(root, dev_speakers=["faks0"], test_speakers=["MBBB0"], use_cache=False)
    with pytest.raises(TimitLayoutError, match="speaker MAAA0 of the dev list not found under TEST .it is under TRAIN"):
        load_timit(root, dev_speakers=["MAAA0"], test_speakers=["MBBB0"], use_cache=False)
    with pytest.warns(UserWarning, match="FAKS0"):
        task = load_timit(root, dev_speakers=["faks0", "fccc0"], test_speakers=["MBBB0"], allow_partial=True,
                          use_cache=False)
    assert task.info["n_speakers"]["valid"] == 1


def test_non_sphere_wav_and_bad_phn(tmp_path):
    root = make_corpus(tmp_path / "T", {"DR1": ["MAAA0"]}, {"DR1": ["MBBB0", "FCCC0"]})
    kw = dict(dev_speakers=["FCCC0"], test_speakers=["MBBB0"], use_cache=False)
    wav = root / "TEST" / "DR1" / "MBBB0" / "SX3.WAV"
    wav.write_bytes(b"RIFF" + bytes(2000))
    with pytest.raises(ValueError, match=r"SX3.WAV is not NIST SPHERE"):
        load_timit(root, **kw)
    write_utterance(wav.parent, "SX3", 1200, [(0, 600, "h#"), (600, 1200, "xx")])
    with pytest.raises(ValueError, match=r"SX3.PHN:2: unknown phone 'xx'"):
        load_timit(root, **kw)
