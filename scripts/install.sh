#!/usr/bin/env bash
# Set up ishwh on a fresh machine: a virtual environment in .venv with the pinned
# dependencies of requirements.lock (the one place versions are pinned) and ishwh itself.
# Usage: scripts/install.sh            (editable install, for development)
#        VENV=/path scripts/install.sh (another venv location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first, pinned exactly (on these machines it is served from local disk).
"$VENV/bin/python" -m pip install --quiet $(grep -E '^(torch|torchvision)==' requirements.lock)
"$VENV/bin/python" -m pip install --quiet -r requirements.lock
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/ishwh" --help >/dev/null
echo "ishwh installed in $VENV (activate with: source $VENV/bin/activate)"
