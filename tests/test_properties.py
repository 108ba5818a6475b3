"""Property-based tests (hypothesis) of the two parsers of user input: the npz task loader and the
config parser. Whatever they are given, they either succeed with the documented result or raise the
documented UserError subclass (one line naming the file or field), never anything else."""
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spiking_deepr.config import ConfigError, load_config, to_yaml
from spiking_deepr.errors import UserError
from tasks.npz import NpzFormatError, load_npz_task

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _write(d: Path, name: str, arrays: dict) -> None:
    np.savez(d / f"{name}.npz", **arrays)


@st.composite
def frame_datasets(draw):
    """A valid npz split: x float [N, T, F], lengths in [1, T], y int [N, T] in [-1, K-1] or [N] in [0, K-1]."""
    n, t, f = draw(st.integers(2, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)
    x = draw(hnp.arrays(np.float32, (n, t, f), elements=floats))
    lengths = draw(hnp.arrays(np.int64, (n,), elements=st.integers(1, t)))
    if draw(st.booleans()):
        y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    else:
        y = draw(hnp.arrays(np.int64, (n, t), elements=st.integers(-1, k - 1)))
        y[0, 0] = k - 1  # n_classes is 1 + the largest training label
    return {"x": x, "y": y, "lengths": lengths}, k


@SETTINGS
@given(frame_datasets(), st.integers(0, 2 ** 16))
def test_valid_npz_data_loads_exactly(dataset, seed):
    data, k = dataset
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write(d, "train", data)
        _write(d, "test", data)
        task = load_npz_task(d, seed=seed, normalize=False)
    n, sequence_task = len(data["x"]), data["y"].ndim == 1
    assert task.n_classes == (int(data["y"].max()) + 1) and task.sequence_task == sequence_task
    ids = sorted(int(i) for i in task.train.ids + task.valid.ids)
    assert ids == list(range(n)) and len(task.valid) >= 1  # a partition of train.npz
    for split in (task.train, task.valid):
        for pos, sid in enumerate(split.ids):
            i, length = int(sid), int(data["lengths"][int(sid)])
            x, y, _ = split[pos]
            assert np.array_equal(x.numpy(), data["x"][i, :length])
            expected = np.full(length, data["y"][i]) if sequence_task else data["y"][i, :length]
            assert np.array_equal(y.numpy(), expected)


def _valid_npz_bytes() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.standard_normal((4, 3, 2)).astype(np.float32), y=rng.integers(0, 2, (4, 3)))
    return buffer.getvalue()


VALID = _valid_npz_bytes()


@st.composite
def damaged_files(draw):
    kind = draw(st.sampled_from(["truncated", "random", "flipped"]))
    if kind == "truncated":
        return VALID[: draw(st.integers(0, len(VALID) - 1))]
    if kind == "random":
        return draw(st.binary(max_size=400))
    data = bytearray(VALID)
    for pos in draw(st.lists(st.integers(0, len(VALID) - 1), min_size=1, max_size=8)):
        data[pos] ^= 0xFF
    return bytes(data)


@SETTINGS
@given(damaged_files())
def test_damaged_npz_files_fail_with_one_clear_error(content):
    """Truncated, random or bit-flipped archives: NpzFormatError naming the file, or (a flip that
    only hit unused bytes) a successful load; never a raw BadZipFile / zlib / pickle error."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "train.npz").write_bytes(content)
        (d / "test.npz").write_bytes(VALID)
        try:
            load_npz_task(d, normalize=False)
        except NpzFormatError as err:
            message = str(err)
            assert message.startswith(str(d / "train.npz")) and "\n" not in message
            assert "expected" in message and "found" in message


ARRAYS = hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint8, np.bool_]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["x", "y", "lengths", "n_classes", "extra"]), ARRAYS, max_size=5))
def test_arbitrary_fields_either_load_or_name_the_field(fields):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write(d, "train", fields)
        _write(d, "test", fields)
        try:
            load_npz_task(d, normalize=False)
        except NpzFormatError as err:
            assert "train.npz: field '" in str(err) or "test.npz: field '" in str(err)


# ----------------------------------------------------------------------------------------- config parser
KEYS = ["rewiring.connectivity", "rewiring.algorithm", "rewiring.temperature", "optim.lr", "optim.betas",
        "optim.grad_clip", "train.epochs", "train.batch_size", "model.hidden", "model.kind", "model.n_alif",
        "task.label_set", "task.features", "task.name", "hardware", "model", "task", "preset", "nonsense.key",
        "train", ""]
VALUES = st.one_of(st.text(max_size=12), st.integers(-10, 10).map(str), st.floats(allow_nan=True).map(str),
                   st.sampled_from(["null", "[1,2]", "[0]", "lstm", "gru", "loihi2", "${oops}", "{a: 1}", "[]"]))


@SETTINGS
@given(st.lists(st.one_of(st.tuples(st.sampled_from(KEYS), VALUES).map("=".join), st.text(max_size=10)),
                max_size=4))
def test_any_override_list_loads_or_raises_config_error(overrides):
    try:
        cfg = load_config(overrides)
    except ConfigError as err:
        assert "\n" not in str(err).strip() and str(err)
        return
    except UserError:  # e.g. a hardware profile is checked by its own loader, still one line
        return
    assert load_config(base=cfg) == cfg  # a loaded config is valid: validating it again changes nothing


@settings(SETTINGS, max_examples=25)
@given(st.floats(1e-6, 1.0), st.integers(1, 1000), st.lists(st.integers(1, 512), min_size=1, max_size=3),
       st.sampled_from(["lif", "lsnn", "lstm"]))
def test_valid_values_round_trip_through_yaml(connectivity, epochs, hidden, kind):
    cfg = load_config([f"rewiring.connectivity={connectivity!r}", f"train.epochs={epochs}",
                       f"model.hidden={hidden}", f"model.kind={kind}", "model.n_alif=0"])
    assert cfg.rewiring.connectivity == pytest.approx(connectivity, rel=1e-12)
    assert (cfg.train.epochs, list(cfg.model.hidden), cfg.model.kind) == (epochs, hidden, kind)
    from omegaconf import OmegaConf

    assert load_config(base=OmegaConf.merge(load_config(), OmegaConf.create(to_yaml(cfg)))) == cfg
