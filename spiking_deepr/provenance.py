"""Where a run came from: this package's version and git commit (with whether the checkout had
uncommitted changes) and the versions of the libraries that shape the numbers. Recorded in
summary.json, so a figure can be traced to the code that produced it, and compared by `sdr sweep`
when it reuses a cell (a reused cell trained on other code is reported, not refused: most commits
do not change results, but some do)."""
from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

__all__ = ["provenance", "code_changed"]

_LIBRARIES = ("torch", "numpy", "norse", "numba")


def _git(*args: str) -> Optional[str]:
    """``git args`` in this package's checkout; None outside a git checkout or without git."""
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def provenance() -> Dict[str, object]:
    """{"spiking_deepr", "git_commit", "git_dirty", "python", and one entry per library}; a value is
    None where it cannot be known (an installed copy has no git commit)."""
    # this file tracked in the enclosing repository: a checkout of this package, not a site-packages
    # copy that merely sits inside some other repository
    tracked = _git("ls-files", "--error-unmatch", Path(__file__).name) is not None
    commit = _git("rev-parse", "HEAD") if tracked else None
    status = None if commit is None else _git("status", "--porcelain", "--untracked-files=no")
    return {"spiking_deepr": _version("spiking_deepr"), "git_commit": commit,
            "git_dirty": None if status is None else bool(status), "python": platform.python_version(),
            **{lib: _version(lib) for lib in _LIBRARIES}}


def code_changed(recorded: Optional[Dict[str, object]]) -> Optional[str]:
    """A short description of how the code that trained a run (its summary's ``provenance``) differs
    from the running code — another commit, or another library version — or None when nothing
    recorded differs (or nothing was recorded)."""
    if not recorded:
        return None
    now = provenance()
    diffs = []
    if recorded.get("git_commit") and now["git_commit"] and recorded["git_commit"] != now["git_commit"]:
        diffs.append(f"commit {str(recorded['git_commit'])[:7]} (now {str(now['git_commit'])[:7]})")
    for lib in ("spiking_deepr", *_LIBRARIES):
        if recorded.get(lib) and now[lib] and recorded[lib] != now[lib]:
            diffs.append(f"{lib} {recorded[lib]} (now {now[lib]})")
    return ", ".join(diffs) or None
