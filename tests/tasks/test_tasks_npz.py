"""Bring-your-own npz tasks: frame and sequence labels, validation split, error messages."""

import numpy as np
import pytest

from tasks import TaskConfig, build_task
from tasks.npz import NpzFormatError, load_npz_task


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
                                  feature_mean=[1.0, 2.0], feature_std=[2.0, 4.0]))
    np.testing.assert_allclose(given.test.xs[1], (te["x"][1, : te["lengths"][1]] - [1, 2]) / [2, 4], rtol=1e-6)
    with pytest.raises(ValueError, match="task.feature_mean / task.feature_std: expected 2 values"):
        build_task(TaskConfig(name="npz", path=str(tmp_path), feature_mean=[0.0], feature_std=[1.0]))
