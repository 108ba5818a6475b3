#!/usr/bin/env bash
# Install the project into .venv with a Python 3.10 interpreter (lava-nc 0.10.0 needs >=3.10,<3.11).
# Order: uv (installed with pip if absent) -> a python3.10 on PATH -> pyenv's versions directory
# -> `uv python install 3.10`. Then `uv sync --frozen` from the committed uv.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
    echo "bootstrap: installing uv with pip" >&2
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
    export PATH="$HOME/.local/bin:$PATH"
fi

is_py310() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }

find_python310() {
    local candidate
    for candidate in "$(command -v python3.10 2>/dev/null || true)" \
                     "$(command -v python3 2>/dev/null || true)"; do
        if [ -n "$candidate" ] && is_py310 "$candidate"; then echo "$candidate"; return 0; fi
    done
    local root
    root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
    for candidate in "$root"/versions/3.10.*/bin/python3.10; do
        if is_py310 "$candidate"; then echo "$candidate"; return 0; fi
    done
    return 1
}

if [ -x .venv/bin/python ] && is_py310 .venv/bin/python; then
    python=.venv/bin/python
elif python="$(find_python310)"; then
    :
else
    echo "bootstrap: no Python 3.10 found on PATH or in pyenv; asking uv to install one" >&2
    uv python install 3.10
    python="$(uv python find 3.10)"
fi

uv sync --frozen --python "$python"
