"""Configuration: presets, groups, dotlists, and clear errors for bad keys and values."""
import pytest

from spiking_deepr.config import ConfigError, load_config


def test_defaults_and_dotlist():
    cfg = load_config(["rewiring.connectivity=0.05", "train.epochs=3", "model=lsnn"])
    assert cfg.rewiring.connectivity == 0.05 and cfg.train.epochs == 3
    assert cfg.model.kind == "lsnn" and cfg.model.n_alif == 32  # from conf/model/lsnn.yaml


def test_presets_load():
    for preset in ("demo", "timit_lsnn", "timit_lstm", "npz", "synthetic_demo"):
        cfg = load_config([f"preset={preset}"])
        assert cfg.model.kind in ("lif", "lsnn", "lstm")


def test_hardware_shorthand():
    assert load_config(["hardware=loihi1"]).hardware.profile == "loihi1"


@pytest.mark.parametrize(
    "override, message",
    [
        ("rewiring.conectivity=0.1", "conectivity"),
        ("train.epochs=many", "epochs"),
        ("rewiring.connectivity=1.5", "rewiring.connectivity: expected a fraction in \\(0, 1\\], found 1.5"),
        ("rewiring.algorithm=magic", "rewiring.algorithm: expected one of"),
        ("rewiring.temperature=-1", "rewiring.temperature: expected >= 0"),
        ("optim.lr=0", "optim.lr: expected > 0"),
        ("optim.sparse_lr_scale=sqrt", "optim.sparse_lr_scale: expected one of"),
        ("model=transformer", "model 'transformer' not found"),
        ("preset=nope", "preset 'nope' not found"),
        ("justakey", "not of the form key=value"),
    ],
)
def test_bad_config_is_a_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config([override])
