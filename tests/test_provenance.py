"""Run provenance: the code and library versions that summary.json records."""
import subprocess
from pathlib import Path

import numpy

from spiking_deepr.provenance import code_changed, provenance

ROOT = Path(__file__).resolve().parents[1]


def test_provenance_names_this_checkout_and_the_libraries():
    p = provenance()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert p["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert p["git_dirty"] in ((True, False) if p["git_commit"] else (None,))
    assert p["numpy"] == numpy.__version__ and p["python"].count(".") == 2


def test_code_changed_names_what_differs():
    now = provenance()
    assert code_changed(None) is None and code_changed({}) is None
    assert code_changed(dict(now)) is None
    other = {**now, "git_commit": "0123456789" * 4, "numpy": "0.0.1"}
    message = code_changed(other)
    assert f"numpy 0.0.1 (now {now['numpy']})" in message
    if now["git_commit"]:  # a checkout: the commit is compared too
        assert message.startswith(f"commit 0123456 (now {now['git_commit'][:7]})")
