"""Strict JSON: NaN/inf become null, numpy values become numbers, and every JSON file the project writes
goes through the strict writer (no module calls ``json.dump``/``json.dumps`` itself, except to hash)."""
import re
from pathlib import Path

import numpy as np

from spiking_deepr.checkpoint import dumps_strict


def test_numpy_values_and_non_finite_numbers_serialise_as_strict_json():
    # task.info of the TIMIT loader holds float32 arrays (feature statistics)
    obj = {"mean": np.array([1.5, np.nan], dtype=np.float32), "x": np.float64(np.inf), "n": np.int64(3)}
    assert dumps_strict(obj) == '{"mean": [1.5, null], "x": null, "n": 3}'


ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {("spiking_deepr/checkpoint.py", "json.dumps(strict_json(obj)"),   # the strict writer itself
           ("tasks/timit.py", "blob = json.dumps(")}                         # hashed, never written


def test_no_module_writes_json_around_the_strict_writer():
    offenders = []
    for package in ("spiking_deepr", "lava_backend", "tasks", "benchmarks", "scripts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line in path.read_text().splitlines():
                if re.search(r"\bjson\.dumps?\(", line) and not any(rel == f and s in line for f, s in ALLOWED):
                    offenders.append(f"{rel}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
