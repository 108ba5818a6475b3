"""``sdr``: the command line of spiking_deepr.

    sdr train [key=value ...] [--resume RUN_DIR]     train a model (see conf/ and spiking_deepr.config)
    sdr evaluate RUN_DIR [--split test]             evaluate a run's best checkpoint
    sdr sweep [key=value ...]                       accuracy vs connectivity table for several algorithms
    sdr convert RUN_DIR [--profile loihi2]          Loihi resource report (resources.json)
    sdr simulate RUN_DIR [--precision float|fixed]  score the network as Lava runs it, compare with PyTorch
    sdr export RUN_DIR --format nir|netx [--out F]  the trained network as a NIR graph / lava-dl netx HDF5
    sdr import-nir FILE [--dt S] [--out DIR]        a NIR LIF graph -> SequenceModel, checked in Lava
    sdr finetune RUN_DIR [--qat]                    fine-tune (quantisation-aware) into a new run
    sdr demo [key=value ...]                        the whole path on the built-in synthetic corpus

Every command writes machine-readable JSON beside its human-readable output. Bad input (a
:class:`~spiking_deepr.errors.UserError`) is reported as one line, ``sdr COMMAND: error: ...``, with
exit code 2; ``--debug`` or ``SDR_DEBUG=1`` shows its traceback. Other exceptions are bugs and keep
their traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from . import __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sdr", description="DEEP R training of sparse recurrent networks and "
                                "their conversion to Intel Lava / Loihi.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Overrides are omegaconf dotlists, e.g. "
                                       "`sdr train model=lsnn rewiring.connectivity=0.05 train.epochs=3 run.dir=runs/x`.")
    p.add_argument("--version", action="version", version=f"sdr (spiking_deepr) {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of input errors too "
                   "(same as SDR_DEBUG=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model; writes a run directory",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Training length and selection (see spiking_deepr/config.py):\n"
                              "  train.epochs=N train.max_steps=N   the budget (epochs / optimizer steps)\n"
                              "  train.patience=N train.min_delta=X early stopping on the validation metric\n"
                              "                                     (sequence accuracy for sequence tasks)\n"
                              "  train.loss_min_delta=X             a loss drop that counts as progress\n"
                              "  optim.schedule=cosine|constant optim.warmup_fraction=X   lr schedule\n"
                              "  optim.sparse_lr_scale=auto|none|init   init: each sparse matrix's lr x 1/sqrt(p)\n"
                              "                                     (its initial scale); auto: init for lif/lsnn, none for lstm\n"
                              "  train.pooling=mean|last|max train.sequence_loss=BOOL     sequence tasks\n"
                              "  task.normalize=BOOL                standardise npz inputs (training stats)\n"
                              "  task.sequence_normalize=BOOL       npz: z-normalise each sequence first\n"
                              "  task.frame_stack=K|null            npz: K frames -> one (null: automatic,\n"
                              "                                     at most task.frame_stack_target frames)\n"
                              "  task.valid_min_per_class=N         npz: stratified hold-out, >= N per class\n"
                              "  model.lstm_forget_bias=X|null      initial LSTM forget-gate bias (null: torch)\n"
                              "  model.allocation=uniform|erdos_renyi   the budget's split over input and recurrent\n"
                              "                                     matrices (model=lsnn: erdos_renyi)\n"
                              "The best validation epoch is kept in best.pt; the test split is scored once, with it.\n"
                              "LSNN recipe neuron options (docs/lsnn_recipe.md; preset=timit_lsnn_eprop):\n"
                              "  model.reset=value|subtract model.refractory=STEPS model.surrogate=lsnn\n"
                              "  model.n_repeat=N                   each input frame presented N steps")
    t.add_argument("overrides", nargs="*", help="key=value config overrides (preset=, task=, model=, hardware= select YAML)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")

    e = sub.add_parser("evaluate", help="evaluate a run's best (or last) checkpoint on a split")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--weights", default="best", choices=["best", "last"],
                   help="best: the best validation epoch (best.pt); last: the last epoch (checkpoint.pt)")

    s = sub.add_parser("sweep", help="accuracy vs connectivity for DEEP R and baselines (Markdown + PNG)")
    s.add_argument("overrides", nargs="*")
    s.add_argument("--out", default="runs/sweep", help="directory for the sweep's runs, table and plot")
    s.add_argument("--models", nargs="+", default=["lstm", "lsnn"])
    s.add_argument("--algorithms", nargs="+", default=["deepr", "set", "rigl", "fixed", "magnitude_pruning"],
                   help="rewiring algorithms (also soft_deepr); the 100%% column is the dense model")
    s.add_argument("--connectivity", nargs="+", type=float, default=[0.01, 0.05, 0.1, 1.0])
    s.add_argument("--seeds", type=int, default=1, help="runs per cell (seeds 0..K-1: train.seed and model.seed); "
                   "the table gives mean ± std")
    s.add_argument("--rerun-stale", action="store_true", help="retrain cells whose run directory holds a run "
                   "with other settings (default: refuse and list the differing fields)")

    c = sub.add_parser(
        "convert", help="map a trained run onto a Loihi profile; writes resources.json",
        description="Check the capabilities the network needs (neuron models, graded spikes, bit widths) "
                    "against the profile and pack it onto cores. Exit 0: fits; 1: a resource limit is "
                    "broken; 2: the profile lacks a capability (each listed: layer, capability, need).")
    c.add_argument("run_dir")
    c.add_argument("--profile", default="loihi2",
                   help="loihi1, loihi2 (conf/hardware/) or a profile YAML path")

    m = sub.add_parser("simulate", help="score a run as Lava runs it (emulator on the whole test split, or "
                       "Lava itself on a few sequences); writes lava_eval.json")
    m.add_argument("run_dir")
    m.add_argument("--precision", default="float", choices=["float", "fixed"],
                   help="Lava floating_pt or bit-accurate fixed_pt (Loihi) models")
    m.add_argument("--engine", default="emulator", choices=["emulator", "lava"],
                   help="emulator: bit-exact batched numpy emulation, default the whole test split; "
                        "lava: Lava's CPU simulator (verification: also checks the emulator gives the same "
                        "spikes and readout)")
    m.add_argument("--samples", type=_positive(int), default=None,
                   help="the first N test sequences (default: all for the emulator, 8 for lava)")
    m.add_argument("--calib-samples", type=_positive(int), default=64,
                   help="training sequences the fixed-point scales are calibrated on (unless the run has "
                        "quantization.json from `sdr finetune --qat`)")
    m.add_argument("--timeout", type=_positive(float), default=600.0, help="seconds before the Lava run is stopped")

    x = sub.add_parser(
        "export", help="write a trained unidirectional LIF network in an exchange format",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Formats:\n"
                    "  nir   NIR graph (HDF5, nir 1.0): input Linear -> CubaLIF (LIF when the synaptic current\n"
                    "        decays within one step) with its recurrent Linear self-loop, per layer -> Affine, or\n"
                    "        Linear -> CubaLI/LI [-> Affine(I, bias)] readout. Continuous-time parameters for\n"
                    "        forward-Euler readers with unit spikes (tau = 1/tau_inv, w_in = tau_syn/dt, r = 1);\n"
                    "        dt is in the graph metadata. Weights are DENSE: dormant connections are stored as 0.\n"
                    "        ALIF layers are refused (NIR has no adaptive neuron) unless --drop-adaptation;\n"
                    "        LSTM and bidirectional models are refused.\n"
                    "  netx  lava-dl netx HDF5 (netx.hdf5.Network, lava-dl 0.6.0) of the fixed-point network: per\n"
                    "        layer a dense_rec block (Lava Dense + LIF, CUBA neuron, integer weights sharing one\n"
                    "        exponent per layer), quantised as `sdr simulate --precision fixed` with every weight\n"
                    "        exponent at -1 (what netx can hold exactly). LIF layers only; the readout is not\n"
                    "        included. Run one sequence per network run (netx resets only every reset_interval).\n"
                    "Writes FILE, FILE.json (what was written; netx: quantisation report and the fixed-point\n"
                    "test frame accuracy with the netx weights vs the default quantisation) and, with\n"
                    "--drop-adaptation, FILE.adaptation.json (test frame accuracy with and without\n"
                    "adaptation).")
    x.add_argument("run_dir")
    x.add_argument("--format", default="nir", choices=["nir", "netx"], help="exchange format (default nir)")
    x.add_argument("--out", help="output file (default RUN_DIR/network.nir or RUN_DIR/network.netx.h5)")
    x.add_argument("--drop-adaptation", action="store_true",
                   help="export ALIF layers as plain LIF (beta = 0), measuring the accuracy change")

    i = sub.add_parser("import-nir", help="build a SequenceModel from a NIR LIF graph and check it in Lava")
    i.add_argument("file")
    i.add_argument("--dt", type=float, default=1e-3,
                   help="simulation step in seconds the graph's time constants are read with (NIR files do not "
                        "store it; snnTorch exports for 1e-4; default 1e-3)")
    i.add_argument("--out", default="runs/imported", help="directory for model.pt and import.json")
    i.add_argument("--check", type=int, default=4,
                   help="random input sequences to run in Lava against the PyTorch model (0: skip)")

    f = sub.add_parser("finetune", help="more epochs of a trained run on its fixed connectivity; --qat: "
                       "quantisation-aware (the converter's fixed-point formats), weights snapped onto them")
    f.add_argument("run_dir")
    f.add_argument("--qat", action="store_true", help="straight-through fake quantisation with the formats "
                   "`sdr simulate --precision fixed` uses (8-bit weights, decays, threshold, 8-bit input); "
                   "writes quantization.json, which `sdr simulate` then uses")
    f.add_argument("--epochs", type=_positive(int), default=2)
    f.add_argument("--lr", type=_positive(float), default=None,
                   help="Adam learning rate (default: a third of the run's)")
    f.add_argument("--out", default=None, help="the new run directory (default RUN_DIR_qat, or RUN_DIR_ft)")
    f.add_argument("--calib-samples", type=_positive(int), default=64,
                   help="training sequences the fixed-point scales are calibrated on")

    d = sub.add_parser("demo", help="synthetic corpus -> DEEP R LSNN under the Loihi 2 fan-in cap -> Lava")
    d.add_argument("overrides", nargs="*")
    return p


def _positive(kind):
    """argparse type: a number of ``kind`` (int or float) greater than 0."""
    expected = f"{'an integer' if kind is int else 'a number'} > 0"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}")
        return value
    return parse


def main(argv: Optional[List[str]] = None) -> int:
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")  # raised by norse's import
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 0
    from .errors import UserError

    try:
        return _COMMANDS[args.command](args)
    except UserError as err:
        if args.debug or os.environ.get("SDR_DEBUG", "") not in ("", "0"):
            raise
        message = " ".join(str(err).split())  # one line, whatever the message held
        print(f"sdr {args.command}: error: {message}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from .config import load_config
    from .train import shutdown_distributed, train

    if args.resume and args.overrides:
        print("sdr train: --resume continues a run with its saved config; overrides are not allowed", file=sys.stderr)
        return 2
    try:
        summary = train(resume=Path(args.resume)) if args.resume else train(load_config(args.overrides))
    finally:
        shutdown_distributed()
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    test = summary["test"]
    print(f"best epoch {summary['best_epoch']} of {summary['epochs']} ({summary['stop_reason'].replace('_', ' ')}); "
          f"valid {summary['monitor'].replace('_', ' ')} {summary['valid'][summary['monitor']]:.4f}")
    print(f"test frame accuracy {test['frame_accuracy']:.4f}  loss {test['loss']:.4f}"
          + (f"  sequence accuracy {test['sequence_accuracy']:.4f}" if test.get("sequence_accuracy") is not None else ""))
    for layer in summary["layers"]:
        print(f"  {layer['name']:<16} active {layer['active']:>9,} / {layer['possible']:>11,} "
              f"({layer['connectivity']:.2%})  max fan-in {layer['max_fan_in']}"
              + (f" (cap {layer['fan_in_cap']})" if layer.get("fan_in_cap") else ""))


def _evaluate(args) -> int:
    from .checkpoint import atomic_write_json, dumps_strict
    from .rundir import ensure_writable
    from .train import evaluate_run, load_run

    cfg, task, model = load_run(Path(args.run_dir), args.weights)
    ensure_writable(Path(args.run_dir))  # before computing a result that could not be saved
    result = {"split": args.split, "weights": args.weights, **evaluate_run(cfg, model, task, args.split)}
    out = Path(args.run_dir) / f"eval_{args.split}.json"
    atomic_write_json(out, result)
    print(dumps_strict(result, indent=2))
    print(f"written {out}")
    return 0


def _sweep(args) -> int:
    from .sweep import sweep

    sweep(args.overrides, Path(args.out), args.models, args.algorithms, args.connectivity, seeds=args.seeds,
          rerun_stale=args.rerun_stale)
    return 0


def _convert(args) -> int:
    from lava_backend.commands import convert_run

    report = convert_run(Path(args.run_dir), args.profile)
    if report["capability_violations"]:
        return 2
    return 0 if report["fits"] else 1


def _simulate(args) -> int:
    from lava_backend.commands import simulate_run

    from lava_backend.params import ConversionError

    try:
        simulate_run(Path(args.run_dir), args.precision, args.engine, args.samples, args.timeout,
                     args.calib_samples)
    except ConversionError as err:
        print(f"sdr simulate: error: {args.run_dir}: {err}", file=sys.stderr)
        return 2
    return 0


def _finetune(args) -> int:
    from .finetune import finetune

    summary = finetune(Path(args.run_dir), args.out and Path(args.out), args.qat, args.epochs, args.lr,
                       args.calib_samples)
    _print_summary(summary)
    return 0


def _demo(args) -> int:
    from .demo import demo

    demo(args.overrides)
    return 0


def _export(args) -> int:
    from .interop import export_run
    from .rundir import ensure_writable

    target = Path(args.out).parent if args.out else Path(args.run_dir)
    if target.is_dir():  # a read-only destination fails before converting, not after
        ensure_writable(target)
    report = export_run(Path(args.run_dir), args.format, args.out, args.drop_adaptation)
    print(f"written {report['file']} ({report['format']}: {report['summary']})")
    if "dropped_adaptation" in report:
        c = report["dropped_adaptation"]
        print(f"adaptation dropped: test frame accuracy {c['frame_accuracy_with_adaptation']:.4f} -> "
              f"{c['frame_accuracy_without_adaptation']:.4f}")
    return 0


def _import_nir(args) -> int:
    from .checkpoint import dumps_strict
    from .interop import import_nir

    report = import_nir(Path(args.file), args.dt, Path(args.out), args.check)
    print(dumps_strict(report, indent=2))
    print(f"written {Path(args.out) / 'import.json'}")
    return 0


_COMMANDS = {"train": _train, "evaluate": _evaluate, "sweep": _sweep, "convert": _convert,
             "simulate": _simulate, "finetune": _finetune, "demo": _demo,
             "export": _export, "import-nir": _import_nir}


if __name__ == "__main__":
    sys.exit(main())
