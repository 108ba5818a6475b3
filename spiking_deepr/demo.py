"""`sdr demo` / `make demo`: the whole path on built-in data.

synthetic TIMIT-like corpus (generated in the LDC layout, read by the real TIMIT loader)
-> DEEP R training of an LSNN under the Loihi 2 fan-in cap -> Loihi 2 resource report
-> fixed point of the trained network (emulator, whole test split)
-> quantisation-aware fine-tuning (``sdr finetune --qat``, 2 epochs) into ``<run>_qat``
-> the fine-tuned network in floating and fixed point: the bit-exact emulator on the whole test
   split, Lava itself on a few utterances (verifying the emulator)
-> a short report (report.json + printed table).
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from .checkpoint import atomic_write_json
from .config import load_config


def demo(overrides: List[str] = ()) -> dict:
    cfg = load_config(["preset=demo", "run.dir=runs/demo", *overrides])
    run_dir = Path(cfg.run.dir)
    from .train import train

    if (run_dir / "summary.json").exists():
        print(f"[demo] {run_dir} already holds a finished run; reusing it (delete it to retrain)")
        import json

        summary = json.loads((run_dir / "summary.json").read_text())
    elif (run_dir / "checkpoint.pt").exists():
        print(f"[demo] resuming the interrupted run in {run_dir}")
        summary = train(resume=run_dir)
    else:
        print(f"[demo] training an LSNN with DEEP R under the {cfg.hardware.profile} fan-in cap -> {run_dir}")
        summary = train(cfg)

    from lava_backend.commands import convert_run, cost_line, simulate_run

    print("[demo] mapping onto", cfg.hardware.profile)
    resources = convert_run(run_dir, cfg.hardware.profile)
    samples = 8
    print("[demo] fixed point of the trained network (emulator, whole test split, scales from training data)")
    before_qat = simulate_run(run_dir, "fixed", "emulator", progress=False)["emulator"]
    from .finetune import finetune

    qat_dir = run_dir.with_name(run_dir.name + "_qat")
    if (qat_dir / "summary.json").exists():
        print(f"[demo] {qat_dir} already holds the fine-tuned run; reusing it")
    else:
        print(f"[demo] quantisation-aware fine-tuning -> {qat_dir}")
        finetune(run_dir, qat_dir, qat=True, epochs=2)
    lava = {}
    for precision in ("float", "fixed"):
        print(f"[demo] {'floating' if precision == 'float' else 'fixed'} point: the emulator on the whole test split, Lava on {samples} test utterances")
        simulate_run(qat_dir, precision, "emulator", progress=False)
        lava[precision] = simulate_run(qat_dir, precision, "lava", samples, progress=False)
    lava_float, lava_fixed = lava["float"], lava["fixed"]
    report = {
        "run_dir": str(run_dir),
        "test_frame_accuracy": summary["test"]["frame_accuracy"],
        "connectivity": {l["name"]: l["connectivity"] for l in summary["layers"]},
        "max_fan_in": max(l["max_fan_in"] for l in summary["layers"]),
        "profile": resources["profile"], "fits": resources["fits"], "cores": resources["cores"],
        "fixed_before_qat": before_qat, "qat_run_dir": str(qat_dir),
        "lava_float": lava_float, "lava_fixed": lava_fixed,
        # fixed-point activity on the whole test split (emulator), per-op figures of the profile
        "cost_per_inference": lava_fixed["emulator"]["cost_per_inference"],
    }
    atomic_write_json(run_dir / "report.json", report)
    print()
    print("=" * 72)
    print(f"DEEP R LSNN on the synthetic TIMIT-like corpus  ({run_dir})")
    print(f"  PyTorch test frame accuracy (all test utterances): {report['test_frame_accuracy']:.3f}")
    for l in summary["layers"]:
        print(f"  {l['name']:<14} {l['active']:>7,} / {l['possible']:>9,} connections ({l['connectivity']:.1%}), "
              f"max fan-in {l['max_fan_in']}")
    print(f"  {resources['profile']}: {'fits' if resources['fits'] else 'does NOT fit'} on {resources['cores']} cores")
    b = before_qat
    print(f"  fixed point before fine-tuning ({b['sequences']} test utterances, emulator): frame accuracy "
          f"{b['frame_accuracy']:.3f} vs PyTorch {b['torch_frame_accuracy']:.3f}; predictions equal "
          f"{b['prediction_agreement']:.1%}")
    print(f"  after quantisation-aware fine-tuning ({qat_dir}):")
    for name, r in (("float", lava_float), ("fixed", lava_fixed)):
        e, v = r["emulator"], r["lava"]
        print(f"  {'floating' if name == 'float' else 'fixed':<8} point, whole test split ({e['sequences']} utterances, emulator): frame accuracy "
              f"{e['frame_accuracy']:.3f} vs PyTorch {e['torch_frame_accuracy']:.3f}; predictions equal "
              f"{e['prediction_agreement']:.1%}, spikes equal {e['spike_agreement']:.2%}")
        print(f"           Lava on {v['sequences']} utterances: equal to the emulator: {v['equal_to_emulator']}; "
              f"{v['steps_per_second']:.0f} steps/s")
    print("  " + cost_line(report["cost_per_inference"]))
    print(f"  report: {run_dir / 'report.json'}")
    print("=" * 72)
    return report
