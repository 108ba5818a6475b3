"""Structured configuration: dataclasses validated by omegaconf, YAML presets in ``conf/``, CLI dotlists.

A run is described by one :class:`Config` with the groups ``task``, ``model``, ``rewiring``,
``optim``, ``train``, ``hardware`` and ``run``. :func:`load_config` builds it in this order:

1. the dataclass defaults;
2. ``preset=NAME`` — ``conf/NAME.yaml`` (e.g. ``timit_lsnn``, ``demo``), if given;
3. group selections ``task=NAME`` and ``model=NAME`` — ``conf/GROUP/NAME.yaml``
   (``sdr train model=lsnn task=npz``); ``hardware=NAME`` is short for ``hardware.profile=NAME``
   (a profile in ``conf/hardware/``);
4. the remaining ``key=value`` dotlist overrides (``rewiring.connectivity=0.05 train.epochs=3``).

Unknown keys and values of the wrong type are rejected by omegaconf; :func:`validate` then checks
ranges and choices, naming the field, what was expected and what was found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tasks.base import TASK_NAMES, TaskConfig
from tasks.features import FEATURE_DIMS
from tasks.phones import LABEL_SETS

from .errors import UserError
from .model import KINDS, ModelConfig
from .pooling import POOLINGS
from .schedule import SCHEDULES, SPARSE_LR_SCALES

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("task", "model")
ALGORITHMS = ("deepr", "soft_deepr", "set", "rigl", "fixed", "dense", "magnitude_pruning")


@dataclass
class RewiringConfig:
    """How the sparse matrices are trained. Every algorithm runs from ``rewiring.algorithm=NAME`` alone:
    settings left at ``null`` take that algorithm's default (:data:`ALGORITHM_DEFAULTS`, resolved by
    :func:`rewiring_settings` and recorded in summary.json).

    algorithm: ``deepr`` (hard budget, the library's method), ``soft_deepr`` (budget on average),
        ``set`` (SET: prune smallest |w|, regrow at random), ``rigl`` (RigL: prune smallest |w|, regrow
        at the largest dense gradient), ``fixed`` (random sparse, never rewired), ``dense`` (every entry
        active, no rewiring) or ``magnitude_pruning`` (Han et al. 2015: start dense, prune the
        smallest |w| to the budget).
    connectivity: fraction of admissible entries active in every rewired matrix (the budget K).
        Readout policy (one for presets and ``model=`` configs alike): the readout is a dense weight
        trained by Adam, outside the budget, unless ``model.readout_connectivity`` is set — then it is
        a sparse matrix at that connectivity, rewired with the others and counted in the budget.
    temperature: DEEP R / soft-DEEP R temperature T (noise std sqrt(2 lr T) per step).
    l1: L1 coefficient alpha (soft-DEEP R: its initial value, see ``connectivity_control``).
    global_budget: one K over all matrices instead of one per matrix (each matrix still respects its
        fan-in cap). DEEP R's default follows the authors' LSNN recipe (Adam, alpha = 1e-2, T = 0,
        global budget): on the synthetic corpus at 1 % this beat per-matrix budgets by ~4 points,
        because connections migrate to the matrices where they help most. SET and RigL default to
        per-matrix budgets, as in their papers.
    adam: use Adam directions (DeepRAdam; SoftDeepR(adam=True)) instead of plain gradient steps.
    drop_fraction, update_every, decay_end: SET / RigL topology updates — replace ``drop_fraction`` of
        each matrix's connections every ``update_every`` optimizer steps, the fraction decaying to 0
        (cosine) at ``decay_end`` x the planned optimizer steps.
    connectivity_control: soft-DEEP R only — adapt alpha and theta_min during training so the measured
        connectivity tracks ``connectivity`` (see :class:`spiking_deepr.rewiring.SoftDeepR`).
    prune_start_epoch, prune_end_epoch: magnitude pruning ramps the budget from dense to
        ``connectivity`` between these epochs (0-based, inclusive; cubic schedule of Zhu & Gupta 2017),
        then fine-tunes; ``prune_end_epoch`` null: the middle of the planned run (``E // 2 - 1`` for the
        E epochs the step budget spans: ``min(train.epochs, ceil(train.max_steps / batches per epoch))``),
        so the second half trains at the target.
    """

    algorithm: str = "deepr"
    connectivity: float = 0.1
    temperature: Optional[float] = None
    l1: Optional[float] = None
    global_budget: Optional[bool] = None
    adam: bool = True
    drop_fraction: float = 0.3
    update_every: int = 20
    decay_end: float = 0.75
    connectivity_control: bool = True
    prune_start_epoch: int = 0
    prune_end_epoch: Optional[int] = None


# Per-algorithm values of the rewiring settings left at null (README, "Rewiring algorithms").
ALGORITHM_DEFAULTS = {
    "deepr": dict(temperature=0.0, l1=1e-2, global_budget=True),
    "soft_deepr": dict(temperature=1e-5, l1=1e-2, global_budget=False),
    "set": dict(temperature=0.0, l1=0.0, global_budget=False),
    "rigl": dict(temperature=0.0, l1=0.0, global_budget=False),
    "fixed": dict(temperature=0.0, l1=0.0, global_budget=False),
    "dense": dict(temperature=0.0, l1=0.0, global_budget=False),
    "magnitude_pruning": dict(temperature=0.0, l1=0.0, global_budget=False),
}


def rewiring_settings(cfg: DictConfig, planned_epochs: Optional[int] = None) -> dict:
    """The ``rewiring`` group of ``cfg`` as a plain dict with every null replaced by its default.

    ``planned_epochs``: epochs the run's step budget spans (``train.Budget.epochs``; None:
    ``train.epochs``) — the default end of magnitude pruning is the middle of it."""
    settings = OmegaConf.to_container(cfg.rewiring, resolve=True)
    for key, value in ALGORITHM_DEFAULTS[settings["algorithm"]].items():
        if settings.get(key) is None:
            settings[key] = value
    if settings["prune_end_epoch"] is None:
        epochs = cfg.train.epochs if planned_epochs is None else planned_epochs
        settings["prune_end_epoch"] = max(settings["prune_start_epoch"], epochs // 2 - 1)
    return settings


@dataclass
class OptimConfig:
    """Learning rate and Adam settings shared by the rewiring optimizer and the dense parameters.

    lr: the peak learning rate.
    schedule: ``cosine`` (linear warm-up, then cosine decay to 0 over the training budget) or
        ``constant`` (after the warm-up); see :mod:`spiking_deepr.schedule`.
    warmup_fraction: fraction of the budget's optimizer steps spent ramping the lr up linearly.
    grad_clip: clip the global gradient norm to this (null: no clipping).
    sparse_lr_scale: ``auto`` (the model kind's default, :data:`SPARSE_LR_SCALE_DEFAULTS`; resolved when
        the config is loaded, so config.yaml holds ``none`` or ``init``), ``none`` (every parameter
        steps with ``lr``) or ``init`` (the magnitudes of each
        sparse matrix step with ``lr / sqrt(p)``, p its connectivity at initialisation: the ratio of its
        initial magnitude std, sigma / sqrt(p), to the dense one, so Adam moves theta by the same
        *relative* amount at any connectivity). Applies to every algorithm (fixed, DEEP R, SET, RigL,
        soft-DEEP R; magnitude pruning starts dense, p = 1); the lr schedule multiplies it. DEEP R's L1
        and noise steps use the matrix's lr too (the paper's update with eta = lr / sqrt(p)): in units of
        the initial scale the L1 step is then alpha * lr, as in a dense matrix, while the noise shrinks by
        p^(1/4) (moot at the default T = 0).
    """

    lr: float = 1e-2
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: Optional[float] = 1.0
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    sparse_lr_scale: str = "auto"


#: ``optim.sparse_lr_scale=auto`` per model kind, chosen on validation splits (README "Default configurations")
SPARSE_LR_SCALE_DEFAULTS = {"lif": "init", "lsnn": "init", "lstm": "none"}


@dataclass
class TrainConfig:
    """Training loop.

    epochs: the budget in epochs (passes over the training set).
    max_steps: the budget in optimizer steps (null: ``epochs`` alone). Training ends when either is
        spent, or earlier by early stopping; the lr schedule spans the budget.
    patience: stop after this many epochs in a row in which neither the validation metric reached a new
        best nor the validation loss a new low (null: never). The metric (sequence accuracy for sequence
        tasks, else frame accuracy; ties broken by the loss) picks the best epoch; see
        :mod:`spiking_deepr.stopping`.
    min_delta: a new best must beat the best metric by more than this (or tie it with a lower loss).
    loss_min_delta: the validation loss counts as progress for the patience only when it falls more
        than this below the last loss that counted (a tie on the metric with a lower loss still becomes
        the best epoch, without resetting the patience); see :mod:`spiking_deepr.stopping`.
    early_stop_from: early stopping may end a run only after this fraction of the step budget: LSTMs
        on GunPoint sit on a loss plateau for ~300 steps before they learn, which a patience alone
        mistakes for convergence.
    sequence_loss: for sequence tasks (one label per sequence), cross entropy on the pooled logits; false:
        cross entropy on every valid frame with the sequence's label.
    pooling: how a sequence task's frame logits become one sequence score, for the sequence loss and
        every sequence accuracy (training, ``sdr evaluate``, ``sdr simulate``): ``mean`` over valid
        frames, ``last`` valid frame, or ``max`` (see :mod:`spiking_deepr.pooling`).
    length_pool: form each batch of sequences of similar length within pools of this many batches of the
        shuffled order (less padding computed; null: plain shuffled batches); see ``train.epoch_batches``.
    firing_rate_target / firing_rate_weight: LSNN regulariser weight * mean((rate - target)^2), rate in
        spikes per step (0 weight disables it).
    threads: torch and numba threads (None: leave the defaults).
    max_batches_per_epoch: cap for quick runs (None: the whole training set).
    """

    epochs: int = 1000
    max_steps: Optional[int] = 1500
    patience: Optional[int] = 20
    min_delta: float = 0.0
    loss_min_delta: float = 0.01
    early_stop_from: float = 0.5
    sequence_loss: bool = True
    pooling: str = "mean"
    batch_size: int = 16
    length_pool: Optional[int] = 8
    eval_batch_size: int = 64
    seed: int = 0
    firing_rate_target: float = 0.02
    firing_rate_weight: float = 0.0
    threads: Optional[int] = None
    max_batches_per_epoch: Optional[int] = None
    progress: bool = True


@dataclass
class HardwareConfig:
    """Target neuromorphic chip. With ``profile`` set and ``cap_fan_in`` true, every matrix is trained
    under the profile's fan-in cap, so `sdr convert` for that profile always fits.

    max_cores: core-aware training — the profile's per-core limits (neurons, input axons, synaptic
        memory) become constraints of initialisation and every regrowth, with a fixed neuron-to-core
        assignment, so the trained network maps onto at most this many cores under `sdr convert`
        (spiking LIF/LSNN models with a sparse readout; see `spiking_deepr.rewiring.cores`).
    """

    profile: Optional[str] = None
    cap_fan_in: bool = True
    max_cores: Optional[int] = None


@dataclass
class RunConfig:
    """Where a run writes: ``dir`` (default ``runs/<UTC timestamp>``)."""

    dir: Optional[str] = None


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rewiring: RewiringConfig = field(default_factory=RewiringConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    run: RunConfig = field(default_factory=RunConfig)


class ConfigError(UserError, ValueError):
    """A configuration value or key is invalid; the message names the field."""


def load_config(overrides: Sequence[str] = (), base: Optional[DictConfig] = None) -> DictConfig:
    """Build a validated config from presets and ``key=value`` overrides (see module docstring)."""
    cfg = OmegaConf.structured(Config) if base is None else base
    plain: List[str] = []
    try:
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            key, value = item.split("=", 1)
            if (key == "preset" or key in GROUPS) and not re.fullmatch(r"\w[\w.-]*", value):
                raise ConfigError(f"{key}: expected a name from {CONF_DIR if key == 'preset' else CONF_DIR / key}, "
                                  f"found {value!r}")
            if key == "preset":
                cfg = OmegaConf.merge(cfg, _read_yaml(CONF_DIR / f"{value}.yaml", "preset"))
            elif key == "hardware":
                plain.append(f"hardware.profile={value}")
            elif key in GROUPS:
                cfg = OmegaConf.merge(cfg, {key: _read_yaml(CONF_DIR / key / f"{value}.yaml", key)})
            else:
                plain.append(item)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(plain))
        OmegaConf.resolve(cfg)  # a broken ${interpolation} fails here, naming its key
        if cfg.optim.sparse_lr_scale == "auto" and cfg.model.kind in SPARSE_LR_SCALE_DEFAULTS:
            cfg.optim.sparse_lr_scale = SPARSE_LR_SCALE_DEFAULTS[cfg.model.kind]
        validate(cfg)
    except (OmegaConfBaseException, yaml.YAMLError) as err:  # YAMLError: e.g. control characters in a value
        key = getattr(err, "full_key", None)
        message = str(err).strip().split("\n")[0]
        raise ConfigError(f"invalid configuration{f' at {key}' if key else ''}: {message}") from None
    return cfg


def saved_config(path: Path) -> DictConfig:
    """A run's saved ``config.yaml`` filled up with today's defaults, as ``--resume`` reads it. A file
    written before ``optim.sparse_lr_scale`` existed trained with ``none``, which it then says."""
    saved = OmegaConf.load(path)
    if OmegaConf.select(saved, "optim.sparse_lr_scale") is None:
        saved = OmegaConf.merge(saved, {"optim": {"sparse_lr_scale": "none"}})
    return load_config(base=OmegaConf.merge(OmegaConf.structured(Config), saved))


def _read_yaml(path: Path, what: str) -> DictConfig:
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{what} {path.stem!r} not found: no {path}; available: {', '.join(choices) or 'none'}")
    return OmegaConf.load(path)


def _require(ok: bool, key: str, expected: str, found) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, found {found!r}")


def validate(cfg: DictConfig) -> None:
    """Range and choice checks that types alone cannot express."""
    r, o, t = cfg.rewiring, cfg.optim, cfg.train
    _require(r.algorithm in ALGORITHMS, "rewiring.algorithm", f"one of {ALGORITHMS}", r.algorithm)
    _require(0.0 < r.connectivity <= 1.0, "rewiring.connectivity", "a fraction in (0, 1]", r.connectivity)
    _require(r.temperature is None or r.temperature >= 0, "rewiring.temperature", ">= 0 or null", r.temperature)
    _require(r.l1 is None or r.l1 >= 0, "rewiring.l1", ">= 0 or null", r.l1)
    _require(0.0 <= r.drop_fraction < 1.0, "rewiring.drop_fraction", "a fraction in [0, 1)", r.drop_fraction)
    _require(r.update_every >= 1, "rewiring.update_every", ">= 1", r.update_every)
    _require(0.0 < r.decay_end <= 1.0, "rewiring.decay_end", "a fraction in (0, 1]", r.decay_end)
    _require(0 <= r.prune_start_epoch and (r.prune_end_epoch is None or r.prune_start_epoch <= r.prune_end_epoch),
             "rewiring.prune_start_epoch", "0 <= prune_start_epoch <= prune_end_epoch",
             (r.prune_start_epoch, r.prune_end_epoch))
    if r.algorithm == "soft_deepr":
        rs = rewiring_settings(cfg)
        _require(rs["temperature"] > 0 and rs["l1"] > 0 and r.connectivity < 1, "rewiring",
                 "temperature > 0, l1 > 0 and connectivity < 1 for soft_deepr",
                 dict(temperature=rs["temperature"], l1=rs["l1"], connectivity=r.connectivity))
    _require(o.lr > 0, "optim.lr", "> 0", o.lr)
    _require(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas", "two values in [0, 1)", list(o.betas))
    _require(o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip", "> 0 or null", o.grad_clip)
    _require(o.schedule in SCHEDULES, "optim.schedule", f"one of {SCHEDULES}", o.schedule)
    _require(0 <= o.warmup_fraction < 1, "optim.warmup_fraction", "in [0, 1)", o.warmup_fraction)
    _require(cfg.model.kind in KINDS, "model.kind", f"one of {KINDS}", cfg.model.kind)  # before auto's check
    _require(o.sparse_lr_scale in SPARSE_LR_SCALES, "optim.sparse_lr_scale", f"one of {('auto', *SPARSE_LR_SCALES)}",
             o.sparse_lr_scale)
    _require(t.epochs >= 1, "train.epochs", ">= 1", t.epochs)
    _require(t.max_steps is None or t.max_steps >= 1, "train.max_steps", ">= 1 or null", t.max_steps)
    _require(t.patience is None or t.patience >= 1, "train.patience", ">= 1 or null", t.patience)
    _require(t.min_delta >= 0, "train.min_delta", ">= 0", t.min_delta)
    _require(t.loss_min_delta >= 0, "train.loss_min_delta", ">= 0", t.loss_min_delta)
    _require(0 <= t.early_stop_from <= 1, "train.early_stop_from", "a fraction in [0, 1]", t.early_stop_from)
    _require(t.pooling in POOLINGS, "train.pooling", f"one of {POOLINGS}", t.pooling)
    _require(t.batch_size >= 1, "train.batch_size", ">= 1", t.batch_size)
    _require(t.length_pool is None or t.length_pool >= 1, "train.length_pool", ">= 1 or null", t.length_pool)
    _require(t.eval_batch_size >= 1, "train.eval_batch_size", ">= 1", t.eval_batch_size)
    _require(t.firing_rate_weight >= 0, "train.firing_rate_weight", ">= 0", t.firing_rate_weight)
    _require(t.threads is None or t.threads >= 1, "train.threads", ">= 1 or null", t.threads)
    h = cfg.hardware
    if h.max_cores is not None:
        _require(h.max_cores >= 1, "hardware.max_cores", ">= 1 or null", h.max_cores)
        _require(bool(h.profile), "hardware.profile", "a profile when hardware.max_cores is set", h.profile)
        _require(cfg.model.kind != "lstm", "model.kind", "a spiking model (lif, lsnn) with hardware.max_cores",
                 cfg.model.kind)
        _require(not cfg.model.bidirectional, "model.bidirectional", "false with hardware.max_cores",
                 cfg.model.bidirectional)
        _require(not cfg.model.dense_readout and cfg.model.readout_connectivity is not None,
                 "model.readout_connectivity", "a value (a sparse readout, placed on its cores) with "
                 "hardware.max_cores; a dense readout cannot be placed", cfg.model.readout_connectivity)
    _require(t.max_batches_per_epoch is None or t.max_batches_per_epoch >= 1, "train.max_batches_per_epoch",
             ">= 1 or null", t.max_batches_per_epoch)
    k = cfg.task
    _require(k.name in TASK_NAMES, "task.name", f"one of {TASK_NAMES}", k.name)
    _require(k.features in FEATURE_DIMS, "task.features", f"one of {tuple(FEATURE_DIMS)}", k.features)
    _require(k.label_set in LABEL_SETS, "task.label_set", f"one of {LABEL_SETS}", k.label_set)
    _require(0 < k.valid_fraction < 1, "task.valid_fraction", "a fraction in (0, 1)", k.valid_fraction)
    _require(k.valid_min_per_class >= 1, "task.valid_min_per_class", ">= 1", k.valid_min_per_class)
    _require(k.frame_stack is None or k.frame_stack >= 1, "task.frame_stack", ">= 1 or null", k.frame_stack)
    _require(k.frame_stack_target >= 1, "task.frame_stack_target", ">= 1", k.frame_stack_target)
    _require(k.max_frames is None or k.max_frames >= 1, "task.max_frames", ">= 1 or null", k.max_frames)
    try:
        OmegaConf.to_object(cfg.model)  # ModelConfig.__post_init__ checks the architecture
    except ValueError as err:
        raise ConfigError(str(err).replace("ModelConfig.", "model.", 1)) from None
    if cfg.hardware.profile:
        from lava_backend.hardware import ProfileError, load_profile  # numpy + yaml only: no lava import

        try:
            load_profile(cfg.hardware.profile)
        except ProfileError as err:
            raise ConfigError(f"hardware.profile: {err}") from None


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
