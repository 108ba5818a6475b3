"""Bring-your-own npz tasks: frame and sequence labels, validation split, error messages."""

import numpy as np
import pytest

from tasks import TaskConfig, build_task
from tasks.npz import NpzFormatError, auto_frame_stack, load_npz_task, stack_frames, stratified_split


def _save(d, name, **arrays):
    d.mkdir(exist_ok=True)
    np.savez(d / f"{name}.npz", **arrays)


def _frame_data(n=10, t=6, f=3, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((n, t, f)).astype(np.float32), y=rng.integers(-1, k, (n, t)),
                lengths=rng.integers(1, t + 1, n))


def test_frame_labels_and_valid_split(tmp_path):
    tr = _frame_data()
    tr["y"][0, 0] = 3  # ensure n_classes = 4
    _save(tmp_path, "train", **tr)
    _save(tmp_path, "test", **_frame_data(n=4, seed=1))
    task = build_task(TaskConfig(name="npz", path=str(tmp_path), seed=3))
    assert (task.n_features, task.n_classes, task.sequence_task) == (3, 4, False)
    assert len(task.train) == 9 and len(task.valid) == 1  # 10 % held out
    assert sorted(task.train.ids + task.valid.ids, key=int) == [str(i) for i in range(10)]
    i = int(task.valid.ids[0])
    x, y, seq = task.valid[0]
    assert x.shape == (tr["lengths"][i], 3) and np.array_equal(y.numpy(), tr["y"][i, : tr["lengths"][i]])
    assert seq == -1 and task.train.sequence_labels is None


def test_sequence_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7, 2))
    _save(tmp_path, "train", x=x, y=np.array([0, 1, 2, 1, 0]), lengths=np.array([7, 3, 5, 1, 2]))
    _save(tmp_path, "valid", x=x[:2], y=np.array([2, 2]))
    _save(tmp_path, "test", x=x[:3], y=np.array([1, 0, 2]), class_names=np.array(["a", "b", "c"]))
    task = load_npz_task(tmp_path)
    assert task.sequence_task and task.n_classes == 3 and len(task.valid) == 2
    assert task.train.sequence_labels.tolist() == [0, 1, 2, 1, 0]
    x1, y1, s1 = task.train[1]
    assert x1.shape == (3, 2) and y1.tolist() == [1, 1, 1] and s1 == 1


@pytest.mark.parametrize("mutate,match", [
    (lambda tr, te: tr.update(x=tr["x"].astype(np.int32)), r"train.npz: field 'x': expected float array"),
    (lambda tr, te: tr.update(x=tr["x"][0]), r"train.npz: field 'x': expected float array \[N, T, F\]"),
    (lambda tr, te: tr.update(y=tr["y"][:, :2]), r"train.npz: field 'y': expected shape \(10,\) or \(10, 6\)"),
    (lambda tr, te: tr.update(y=tr["y"].astype(float)), r"field 'y': expected an integer array, found dtype float"),
    (lambda tr, te: tr.update(lengths=np.full(10, 7)), r"field 'lengths': expected values in \[1, T=6\]"),
    (lambda tr, te: tr.update(lengths=np.ones(3, int)), r"field 'lengths': expected int array of shape \(10,\)"),
    (lambda tr, te: te.update(x=te["x"][:, :, :2]), r"test.npz: field 'x': expected F=3 features like train.npz"),
    (lambda tr, te: te.update(y=np.full((4, 6), 9)), r"test.npz: field 'y': expected labels in \[-1, 3\] "
                                                      r"\(n_classes=4 from max label of train.npz\), found range"),
    (lambda tr, te: te.update(y=np.zeros(4, int)), r"test.npz: field 'y': expected frame labels \[N, T\]"),
    (lambda tr, te: (tr.update(n_classes=4), te.update(n_classes=5)), r"test.npz: field 'n_classes': expected 4"),
    (lambda tr, te: tr.pop("y"), r"train.npz: field 'y': expected an array, found no such field"),
])
def test_validation_errors(tmp_path, mutate, match):
    tr, te = _frame_data(), _frame_data(n=4, seed=1)
    tr["y"][0, 0] = 3
    te["y"][:] = 0
    mutate(tr, te)
    _save(tmp_path, "train", **tr)
    _save(tmp_path, "test", **te)
    with pytest.raises(NpzFormatError, match=match):
        load_npz_task(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_npz_task(tmp_path / "nope")
    _save(tmp_path, "train", **_frame_data())
    with pytest.raises(FileNotFoundError, match="test.npz does not exist"):
        load_npz_task(tmp_path)
    with pytest.raises(ValueError, match="task.path"):
        build_task(TaskConfig(name="npz"))


def test_inputs_standardised_with_training_statistics(tmp_path):
    """Per-feature mean/std over the valid frames of the training split only (not the held-out
    validation sequences, not test, not padding), applied to every split; optional; given stats win."""
    tr = _frame_data(n=20, f=2, seed=2)
    tr["x"] = (tr["x"] * np.array([0.01, 300.0]) + np.array([5.0, -40.0])).astype(np.float32)
    tr["x"][np.arange(6)[None, :] >= tr["lengths"][:, None]] = 1e6  # padding must not count
    te = _frame_data(n=4, f=2, seed=3)
    te["x"] = (te["x"] * 1000).astype(np.float32)  # test values must not move the statistics
    _save(tmp_path, "train", **tr)
    _save(tmp_path, "test", **te)
    task = load_npz_task(tmp_path, valid_fraction=0.25, seed=1)
    rows = [tr["x"][int(i), : tr["lengths"][int(i)]].astype(np.float64) for i in task.train.ids]
    frames = np.concatenate(rows)
    mean, std = frames.mean(0), frames.std(0)
    np.testing.assert_allclose(task.info["feature_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(task.info["feature_std"], std, rtol=1e-12)
    standardised = np.concatenate(task.train.xs).astype(np.float64)
    np.testing.assert_allclose(standardised.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(standardised.std(0), 1, rtol=1e-5)
    i = int(task.valid.ids[0])
    np.testing.assert_allclose(task.valid.xs[0], (tr["x"][i, : tr["lengths"][i]] - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(task.test.xs[1], (te["x"][1, : te["lengths"][1]] - mean) / std, rtol=1e-5, atol=1e-6)

    raw = load_npz_task(tmp_path, valid_fraction=0.25, seed=1, normalize=False)
    assert np.array_equal(raw.test.xs[1], te["x"][1, : te["lengths"][1]]) and "feature_mean" not in raw.info
    given = build_task(TaskConfig(name="npz", path=str(tmp_path), valid_fraction=0.25, seed=1,
                                  sequence_normalize=False, feature_mean=[1.0, 2.0], feature_std=[2.0, 4.0]))
    np.testing.assert_allclose(given.test.xs[1], (te["x"][1, : te["lengths"][1]] - [1, 2]) / [2, 4], rtol=1e-6)
    with pytest.raises(ValueError, match="task.feature_mean / task.feature_std: expected 2 values"):
        build_task(TaskConfig(name="npz", path=str(tmp_path), feature_mean=[0.0], feature_std=[1.0]))


def test_stack_frames_hand_computed():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)  # frames [0 1] [2 3] [4 5] [6 7] [8 9]
    np.testing.assert_array_equal(stack_frames(x, 2), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]])
    np.testing.assert_array_equal(stack_frames(x, 1), x)
    np.testing.assert_array_equal(stack_frames(x, 5), x.reshape(1, 10))
    assert [auto_frame_stack(t, 128) for t in (1, 128, 129, 150, 1344)] == [1, 1, 2, 2, 11]


def _sequence_data(n, t, f, n_classes, seed):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((n, t, f)).astype(np.float32), y=rng.integers(0, n_classes, n),
                lengths=rng.integers(1, t + 1, n))


def test_frame_stacking_keeps_lengths_labels_and_values(tmp_path):
    """Automatic k from the longest training sequence; every split stacked with the same k after
    standardisation; lengths become ceil(L / k) and padding beyond a sequence's length never enters."""
    tr, te = _sequence_data(30, 23, 2, 3, 0), _sequence_data(6, 23, 2, 3, 1)
    tr["x"][np.arange(23)[None, :] >= tr["lengths"][:, None]] = 1e6  # padding: must not leak into frames
    _save(tmp_path, "train", **tr)
    _save(tmp_path, "test", **te)
    flat = build_task(TaskConfig(name="npz", path=str(tmp_path), frame_stack=1))
    auto = build_task(TaskConfig(name="npz", path=str(tmp_path), frame_stack_target=5))  # 23 -> k = 5
    assert auto.info["frame_stack"] == 5 and flat.info["frame_stack"] == 1
    assert (auto.n_features, flat.n_features) == (10, 2)
    for a, b in ((auto.train, flat.train), (auto.valid, flat.valid), (auto.test, flat.test)):
        assert a.ids == b.ids and np.array_equal(a.sequence_labels, b.sequence_labels)
        assert np.array_equal(a.lengths, -(-b.lengths // 5))
        for i in range(len(a)):
            xa, ya, sa = a[i]
            length = len(b.xs[i])
            unstacked = xa.numpy().reshape(-1, 2)
            np.testing.assert_array_equal(unstacked[:length], b.xs[i])
            assert not unstacked[length:].any() and (ya == sa).all() and len(ya) == len(xa)
    explicit = build_task(TaskConfig(name="npz", path=str(tmp_path), frame_stack=3))
    assert explicit.info["frame_stack"] == 3 and explicit.n_features == 6
    frames = _frame_data()
    _save(tmp_path / "frames", "train", **frames)
    _save(tmp_path / "frames", "test", **frames)
    assert build_task(TaskConfig(name="npz", path=str(tmp_path / "frames"))).info["frame_stack"] == 1
    with pytest.raises(ValueError, match=r"task.frame_stack: expected 1 \(or null\) for frame-labelled data"):
        build_task(TaskConfig(name="npz", path=str(tmp_path / "frames"), frame_stack=2))


def test_stratified_validation_split():
    labels = np.repeat(np.arange(4), [100, 40, 7, 1])
    train, valid = stratified_split(labels, 0.1, 5, seed=3)
    assert np.intersect1d(train, valid).size == 0 and np.union1d(train, valid).tolist() == list(range(148))
    # 10 % of each class, at least 5, at most all but one
    assert np.bincount(labels[valid], minlength=4).tolist() == [10, 5, 5, 0]
    again_train, again_valid = stratified_split(labels, 0.1, 5, seed=3)
    assert np.array_equal(valid, again_valid) and not np.array_equal(valid, stratified_split(labels, 0.1, 5, 4)[1])
    assert stratified_split(np.arange(3), 0.1, 5, seed=0)[1].size == 1  # singleton classes: one random sequence


def test_sequence_task_split_is_stratified(tmp_path):
    data = _sequence_data(50, 4, 1, 2, 0)
    data["y"] = np.array([0] * 24 + [1] * 26)  # GunPoint's counts
    _save(tmp_path, "train", **data)
    _save(tmp_path, "test", **data)
    task = build_task(TaskConfig(name="npz", path=str(tmp_path)))
    assert np.bincount(task.valid.sequence_labels).tolist() == [5, 5] and len(task.train) == 40
    assert not set(task.valid.ids) & set(task.train.ids)


def test_sequence_normalize_standardises_each_sequence_over_its_valid_frames(tmp_path):
    data = _sequence_data(12, 9, 2, 3, 4)
    data["x"] = (data["x"] * np.geomspace(0.01, 300, 12)[:, None, None] + 7).astype(np.float32)
    data["lengths"][0] = 1  # a one-frame sequence: std 0, only centred
    data["x"][np.arange(9)[None, :] >= data["lengths"][:, None]] = 1e6  # padding must not count
    _save(tmp_path, "train", **data)
    _save(tmp_path, "test", **data)
    task = build_task(TaskConfig(name="npz", path=str(tmp_path), sequence_normalize=True, normalize=False,
                                 frame_stack=1))
    for i, x in enumerate(task.test.xs):
        raw = data["x"][i, : data["lengths"][i]].astype(np.float64)
        scale = raw.std(0) if len(raw) > 1 else 1.0
        np.testing.assert_allclose(x, (raw - raw.mean(0)) / scale, rtol=1e-5, atol=1e-5)
        if len(raw) > 1:
            np.testing.assert_allclose(x.std(0), 1, rtol=1e-4)
