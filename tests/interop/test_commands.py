"""`sdr export --format nir` on a trained LSNN run (ALIF refused, then --drop-adaptation) and
`sdr import-nir` of the exported file (built, saved and run in Lava against PyTorch)."""
import json

import nir
import pytest

from spiking_deepr.cli import main as sdr


@pytest.fixture(scope="module")
def lsnn_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("interop") / "run"
    # n_repeat=1: NIR has no repeated-frame input (the LSNN default repeats each frame twice)
    assert sdr(["train", "task=smoke", "model=lsnn", "model.n_repeat=1", "model.hidden=[16]", "model.n_alif=4",
                "train.epochs=1", "train.progress=false", "train.threads=1", f"run.dir={run}"]) == 0
    return run


@pytest.mark.slow
def test_export_and_import_nir_commands(lsnn_run, tmp_path, capsys):
    assert sdr(["export", str(lsnn_run), "--format", "nir"]) == 2
    assert "--drop-adaptation" in capsys.readouterr().err
    out = tmp_path / "net.nir"
    with pytest.warns(UserWarning, match="ALIF layers as LIF"):
        assert sdr(["export", str(lsnn_run), "--drop-adaptation", "--out", str(out)]) == 0
    change = json.loads((tmp_path / "net.nir.adaptation.json").read_text())
    assert change["change"] == pytest.approx(change["frame_accuracy_without_adaptation"]
                                             - change["frame_accuracy_with_adaptation"])
    report = json.loads((tmp_path / "net.nir.json").read_text())
    assert report["nodes"]["layer0"] == "CubaLIF" and report["stored_weights"] > report["active_connections"]
    graph = nir.read(str(out))
    assert ("layer0", "layer0.w_rec") in [tuple(e) for e in graph.edges]
    imported = tmp_path / "imported"
    assert sdr(["import-nir", str(out), "--dt", str(graph.metadata["dt"]), "--out", str(imported),
                "--check", "2"]) == 0
    check = json.loads((imported / "import.json").read_text())["lava_check"]
    assert check["spike_agreement"] == [1.0] and check["spikes"][0] > 0
    assert (imported / "model.pt").is_file()
    assert sdr(["import-nir", str(tmp_path / "missing.nir")]) == 2


@pytest.mark.slow
def test_export_netx_command(lsnn_run, tmp_path, capsys):
    pytest.importorskip("lava.lib.dl.netx")
    import h5py

    assert sdr(["export", str(lsnn_run), "--format", "netx"]) == 2
    assert "only LIF layers" in capsys.readouterr().err
    out = tmp_path / "net.netx.h5"
    with pytest.warns(UserWarning, match="ALIF layers as LIF"):
        assert sdr(["export", str(lsnn_run), "--format", "netx", "--drop-adaptation", "--out", str(out)]) == 0
    report = json.loads((tmp_path / "net.netx.h5.json").read_text())
    assert report["layers"] == [{"n": 16, "type": "dense_rec", "stored_weights": 16 * (9 + 16)}]
    assert set(report["test_frame_accuracy_fixed_point"]) == {"netx", "default"}
    assert all(0 <= a <= 1 for a in report["test_frame_accuracy_fixed_point"].values())
    with h5py.File(out, "r") as f:
        assert f["layer/1/weight_rec"].shape == (16, 16) and f["layer/1/neuron/type"][()] == b"CUBA"
