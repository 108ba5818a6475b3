"""Configuration: presets, groups, dotlists, and clear errors for bad keys and values."""
import pytest

from spiking_deepr.config import ConfigError, load_config


def test_defaults_and_dotlist():
    cfg = load_config(["rewiring.connectivity=0.05", "train.epochs=3", "model=lsnn"])
    assert cfg.rewiring.connectivity == 0.05 and cfg.train.epochs == 3
    assert cfg.model.kind == "lsnn" and cfg.model.n_alif == 32  # from conf/model/lsnn.yaml
    assert cfg.model.allocation == "erdos_renyi" and cfg.model.n_repeat == 2
    assert load_config(["preset=npz"]).model.allocation == "erdos_renyi"  # the npz preset is model=lsnn
    assert load_config(["preset=demo"]).model.allocation == "uniform"  # the demo's choice (cost per inference)
    assert load_config(["model=lstm"]).model.allocation == "uniform"


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
        ("model.kind=gru", "model.kind: expected one of \\('lif', 'lsnn', 'lstm'\\), found 'gru'"),
        ("preset=nope", "preset 'nope' not found"),
        ("justakey", "not of the form key=value"),
    ],
)
def test_bad_config_is_a_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config([override])


@pytest.mark.parametrize("kind", ["lif", "lsnn", "lstm"])
def test_sparse_lr_scale_auto_resolves_per_model_kind(kind):
    """``auto`` (the default) becomes the kind's validated choice at load time, so config.yaml and
    summary.json name the mode that ran; an explicit value wins."""
    from spiking_deepr.config import SPARSE_LR_SCALE_DEFAULTS

    assert load_config([f"model={kind}"]).optim.sparse_lr_scale == SPARSE_LR_SCALE_DEFAULTS[kind]
    assert load_config([f"model={kind}", "optim.sparse_lr_scale=auto"]).optim.sparse_lr_scale == \
        SPARSE_LR_SCALE_DEFAULTS[kind]
    for mode in ("none", "init"):
        assert load_config([f"model={kind}", f"optim.sparse_lr_scale={mode}"]).optim.sparse_lr_scale == mode


def test_saved_config_without_sparse_lr_scale_reads_as_none(tmp_path):
    """A run directory written before the option existed trained with ``none``; resuming it or comparing
    it in a sweep must not switch it to the kind's ``auto`` choice."""
    from omegaconf import OmegaConf

    from spiking_deepr.config import saved_config, to_yaml

    cfg = load_config(["model=lsnn"])
    assert cfg.optim.sparse_lr_scale == "init"
    current, old = tmp_path / "current.yaml", tmp_path / "old.yaml"
    current.write_text(to_yaml(cfg))
    assert saved_config(current) == cfg
    written_before = OmegaConf.create(to_yaml(cfg))
    del written_before.optim["sparse_lr_scale"]
    old.write_text(OmegaConf.to_yaml(written_before))
    assert saved_config(old).optim.sparse_lr_scale == "none"
