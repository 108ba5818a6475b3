"""Every bad input listed in docs/bad_inputs.md: ``sdr`` exits 2 with one line naming the file or field,
what was expected and what was found, and no traceback (``--debug`` / ``SDR_DEBUG=1`` show it).

Each case is a function ``(tmp, run) -> argv`` registered with the message it must produce; ``run`` is
a tiny trained run directory (copy it before damaging it). The docs table is checked against CASES."""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from spiking_deepr.cli import main as sdr
from spiking_deepr.config import load_config
from spiking_deepr.train import train
from tasks.sphere import write_sphere

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["task=smoke", "task.size=tiny", "model=lif", "model.hidden=[24]", "train.batch_size=32",
         "train.max_batches_per_epoch=2", "train.progress=false"]
CASES = {}


def case(regex: str):
    def register(fn):
        CASES[fn.__name__] = (fn, regex)
        return fn
    return register


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "run"
    train(load_config([*QUICK, "train.epochs=1", f"run.dir={path}"]))
    return path


def _copy(run: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(run, tmp / "copy", ignore=shutil.ignore_patterns(".lock")))


def _set_config(run: Path, **changes) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for key, value in changes.items():
        group, field = key.split("__")
        cfg[group][field] = value
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def _npz_dir(tmp: Path, **train_fields) -> Path:
    rng = np.random.default_rng(0)
    d = tmp / "npz"
    d.mkdir()
    fields = dict(x=rng.standard_normal((6, 5, 3)).astype(np.float32), y=rng.integers(0, 3, (6, 5)))
    np.savez(d / "test.npz", **fields)
    np.savez(d / "train.npz", **{**fields, **train_fields})
    return d


def _train_npz(d: Path, tmp: Path):
    return ["train", "task=npz", f"task.path={d}", *QUICK[2:], "train.epochs=1", f"run.dir={tmp / 'out'}"]


def _corpus(tmp: Path) -> Path:
    """A minimal TIMIT-layout corpus (SPEAKERS.json lists dev and test speakers), 1200-sample utterances."""
    root = tmp / "TIMIT"
    for part, spk in (("TRAIN", "MAAA0"), ("TEST", "MBBB0"), ("TEST", "FCCC0")):
        d = root / part / "DR1" / spk
        d.mkdir(parents=True)
        for k, sent in enumerate(("SX3", "SI5")):
            write_sphere(d / f"{sent}.WAV", (np.random.default_rng(k).standard_normal(1200) * 900).astype(np.int16))
            (d / f"{sent}.PHN").write_text("0 300 h#\n300 700 aa\n700 1200 s\n")
    (root / "SPEAKERS.json").write_text('{"dev": ["FCCC0"], "test": ["MBBB0"]}')
    return root


def _train_timit(root: Path, tmp: Path):
    return ["train", "task=timit", f"task.path={root}", f"task.cache_dir={tmp / 'cache'}", *QUICK[2:],
            "train.epochs=1", f"run.dir={tmp / 'out'}"]


# ----------------------------------------------------------------------------------------- configuration
@case(r"model.kind: expected one of \('lif', 'lsnn', 'lstm'\), found 'gru'")
def model_kind_unknown(tmp, run):
    return ["train", "model.kind=gru"]


@case(r"model.hidden: must be a non-empty list of positive layer sizes, got \[0\]")
def model_hidden_zero(tmp, run):
    return ["train", "model.hidden=[0]"]


@case(r"task.path: expected a directory with train.npz and test.npz for task.name=npz, found null")
def npz_without_path(tmp, run):
    return ["train", "task=npz", f"run.dir={tmp / 'out'}"]


@case(r"invalid configuration at rewiring.conectivity: Key 'conectivity' not in 'RewiringConfig'")
def config_key_misspelt(tmp, run):
    return ["train", "rewiring.conectivity=0.1"]


@case(r"task.label_set: expected one of \(39, 48, 61\), found 40")
def task_label_set_unknown(tmp, run):
    return ["train", "task.label_set=40"]


@case(r"hardware.profile: unknown hardware profile 'loihi9'; known: \['loihi1', 'loihi2'\]")
def hardware_profile_unknown_in_train(tmp, run):
    return ["train", "hardware=loihi9"]


# ----------------------------------------------------------------------------------------- npz data
@case(r"train.npz: expected an npz archive \(np.savez\), found a truncated or corrupt archive \(BadZipFile")
def npz_truncated(tmp, run):
    d = _npz_dir(tmp)
    data = (d / "train.npz").read_bytes()
    (d / "train.npz").write_bytes(data[: len(data) // 2])
    return _train_npz(d, tmp)


@case(r"train.npz: expected an npz archive \(np.savez\), found bytes ")
def npz_random_bytes(tmp, run):
    d = _npz_dir(tmp)
    (d / "train.npz").write_bytes(np.random.default_rng(1).bytes(300))
    return _train_npz(d, tmp)


@case(r"train.npz: expected an npz archive \(np.savez\), found a single .npy array \(np.save\)")
def npy_saved_as_npz(tmp, run):
    d = _npz_dir(tmp)
    with open(d / "train.npz", "wb") as f:
        np.save(f, np.zeros((6, 5, 3), np.float32))
    return _train_npz(d, tmp)


@case(r"train.npz: expected numeric arrays, found an object array \(pickled Python objects are refused\)")
def npz_with_pickled_objects(tmp, run):
    return _train_npz(_npz_dir(tmp, y=np.array([{"label": 1}] * 6, dtype=object)), tmp)


@case(r"train.npz: field 'y': expected signed integer labels \(-1 = ignore\), found uint8 labels containing 255")
def npz_uint8_labels_with_255(tmp, run):
    y = np.random.default_rng(0).integers(0, 3, (6, 5)).astype(np.uint8)
    y[:, 0] = 255  # what -1 (ignore) becomes in uint8
    return _train_npz(_npz_dir(tmp, y=y), tmp)


@case(r"train.npz: field 'x': expected finite values, found NaN or inf")
def npz_nan_input(tmp, run):
    x = np.ones((6, 5, 3), np.float32)
    x[2, 1, 0] = np.nan
    return _train_npz(_npz_dir(tmp, x=x), tmp)


@case(r"npz task: .*test.npz does not exist \(need train.npz and test.npz")
def npz_missing_test_file(tmp, run):
    d = _npz_dir(tmp)
    (d / "test.npz").unlink()
    return _train_npz(d, tmp)


# ----------------------------------------------------------------------------------------- TIMIT / SPHERE
@case(r"SX3.WAV: expected sample_count 16989 samples \(header\), found 0 in the file \(truncated\)")
def sphere_truncated_after_header(tmp, run):
    root = _corpus(tmp)
    wav = root / "TRAIN" / "DR1" / "MAAA0" / "SX3.WAV"
    header = wav.read_bytes()[:1024].replace(b"sample_count -i 1200", b"sample_count -i 16989")
    wav.write_bytes(header)
    return _train_timit(root, tmp)


@case(r"SI5.PHN: segment '700 5000 s' ends after the audio: expected END <= 1200 \(the samples in SI5.WAV\), "
      r"found 5000")
def phn_past_the_audio(tmp, run):
    root = _corpus(tmp)
    (root / "TEST" / "DR1" / "MBBB0" / "SI5.PHN").write_text("0 300 h#\n300 700 aa\n700 5000 s\n")
    return _train_timit(root, tmp)


@case(r"SX3.PHN: expected 'BEGIN END LABEL' lines, found no segment \(empty file\)")
def phn_empty(tmp, run):
    root = _corpus(tmp)
    (root / "TRAIN" / "DR1" / "MAAA0" / "SX3.PHN").write_text("")
    return _train_timit(root, tmp)


@case(r"1 utterance\(s\) have no labelled frame .*SX3.WAV")
def utterance_without_labelled_frame(tmp, run):
    root = _corpus(tmp)
    (root / "TRAIN" / "DR1" / "MAAA0" / "SX3.PHN").write_text("0 1200 q\n")  # q frames are ignored
    return _train_timit(root, tmp)


@case(r"SX3.WAV is not NIST SPHERE: expected magic b'NIST_1A', found b'RIFF.*\(it is a RIFF/WAVE file\)")
def wav_not_sphere(tmp, run):
    root = _corpus(tmp)
    (root / "TEST" / "DR1" / "MBBB0" / "SX3.WAV").write_bytes(b"RIFF" + bytes(2000))
    return _train_timit(root, tmp)


@case(r"timit_fbank_\w+.npz: expected a TIMIT feature cache \(x, labels, lengths\), found a truncated or corrupt "
      r"archive .*; delete .* to recompute the features")
def feature_cache_truncated(tmp, run):
    root = _corpus(tmp)
    from tasks.timit import load_timit

    load_timit(root, features="fbank", cache_dir=tmp / "cache")  # conf/task/timit.yaml's features
    for cache in (tmp / "cache").glob("*.npz"):
        cache.write_bytes(cache.read_bytes()[:200])
    return _train_timit(root, tmp)


# ----------------------------------------------------------------------------------------- runs and checkpoints
@case(r"best.pt is not a readable checkpoint \(")
def checkpoint_truncated(tmp, run):
    run = _copy(run, tmp)
    data = (run / "best.pt").read_bytes()  # the weights `sdr evaluate` reads
    (run / "best.pt").write_bytes(data[: len(data) // 3])
    return ["evaluate", str(run)]


@case(r"best.pt: expected the model described by config.yaml, found .* \(a checkpoint of another model "
      r"kind or size\?\)")
def checkpoint_of_another_model_size(tmp, run):
    run = _copy(run, tmp)
    _set_config(run, model__hidden=[16])
    return ["evaluate", str(run)]


@case(r"is not a run directory: no config.yaml")
def evaluate_not_a_run(tmp, run):
    return ["evaluate", str(tmp)]


@case(r"cannot resume: no config.yaml in ")
def resume_not_a_run(tmp, run):
    return ["train", "--resume", str(tmp / "nothing")]


@case(r"already holds a run; resume it with --resume ")
def train_into_existing_run(tmp, run):
    return ["train", *QUICK, f"run.dir={run}"]


@case(r"expected a writable directory, found: (read-only file system|permission denied)")
def evaluate_read_only_run(tmp, run):
    return ["evaluate", str(_read_only(_copy(run, tmp)))]


# ----------------------------------------------------------------------------------------- hardware and Lava
@case(r"unknown hardware profile 'loihi9'; known: \['loihi1', 'loihi2'\]")
def convert_unknown_profile(tmp, run):
    return ["convert", str(_copy(run, tmp)), "--profile", "loihi9"]


@case(r"hardware profile .*broken.yaml: expected a YAML mapping, found list")
def convert_profile_not_a_mapping(tmp, run):
    (tmp / "broken.yaml").write_text("- 1\n- 2\n")
    return ["convert", str(_copy(run, tmp)), "--profile", str(tmp / "broken.yaml")]


@case(r"bidirectional models cannot be converted")
def convert_bidirectional(tmp, run):
    out = tmp / "bi"
    train(load_config([*QUICK, "model.bidirectional=true", "train.epochs=1", "train.max_batches_per_epoch=1",
                       f"run.dir={out}"]))
    return ["convert", str(out)]


@case(r"argument --samples: expected an integer > 0, found '0'")
def simulate_zero_samples(tmp, run):
    return ["simulate", str(run), "--samples", "0"]


# ----------------------------------------------------------------------------------------- the tests
def _read_only(path: Path) -> Path:
    """Make ``path`` read-only for this process: chmod, or for root a read-only bind mount."""
    path.chmod(0o555)
    probe = path / ".probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return path  # chmod was enough (not root)
    probe.unlink()
    mounted = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0 and \
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("running as root without permission to mount: cannot make a read-only directory")
    _MOUNTS.append(path)
    return path


_MOUNTS = []


@pytest.fixture(autouse=True)
def _unmount():
    yield
    while _MOUNTS:
        subprocess.run(["umount", str(_MOUNTS.pop())], check=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_with_exit_code_2(name, tmp_path, run, capsys, monkeypatch):
    monkeypatch.delenv("SDR_DEBUG", raising=False)
    make, regex = CASES[name]
    argv = make(tmp_path, run)
    capsys.readouterr()
    with pytest.raises(SystemExit) if argv[0] == "simulate" else _no_exit() as exited:
        code = sdr(argv)
    err = capsys.readouterr().err.strip()
    if exited is not None:  # argparse's own errors: usage line + one error line, exit 2
        code, err = exited.value.code, err.splitlines()[-1]
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"sdr {argv[0]}: error: "), err
    assert re.search(regex, err), f"{regex!r} not in {err!r}"


class _no_exit:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_debug_shows_the_traceback(monkeypatch):
    from spiking_deepr.config import ConfigError

    with pytest.raises(ConfigError, match="model.kind"):  # --debug re-raises: Python prints the traceback
        sdr(["--debug", "train", "model.kind=gru"])
    monkeypatch.setenv("SDR_DEBUG", "1")
    with pytest.raises(ConfigError, match="model.kind"):
        sdr(["train", "model.kind=gru"])
    monkeypatch.setenv("SDR_DEBUG", "0")
    assert sdr(["train", "model.kind=gru"]) == 2


def test_internal_errors_keep_their_traceback(monkeypatch):
    import spiking_deepr.train as train_module

    monkeypatch.setattr(train_module, "build_task", lambda cfg: [][0])
    with pytest.raises(IndexError):
        sdr(["train", *QUICK, "run.dir=/tmp/never-written"])


def test_docs_table_lists_every_case():
    table = (ROOT / "docs" / "bad_inputs.md").read_text()
    documented = set(re.findall(r"`test_bad_inputs::(\w+)`", table))
    assert documented == set(CASES), (documented ^ set(CASES))
    for module, test in re.findall(r"`(test_\w+)::(test_\w+)`", table):
        if module != "test_bad_inputs":
            path = next(ROOT.glob(f"tests/**/{module}.py"))
            assert f"def {test}(" in path.read_text(), (module, test)
