#!/usr/bin/env bash
# Set up ishwh on a fresh machine: a virtual environment in .venv with the pinned
# dependencies of requirements.lock (the one place versions are pinned) and ishwh itself.
# Usage: scripts/install.sh                  (editable install, for development)
#        VENV=/path scripts/install.sh       (another venv location)
#        ISHWH_EXTRAS=ray scripts/install.sh (also the optional extras named, comma-separated:
#                                             their pins are the lock lines tagged `# extra: NAME`)
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
# The base pins, plus the lines of the extras asked for.
LOCK="$(mktemp)"
trap 'rm -f "$LOCK"' EXIT
awk -v extras=",${ISHWH_EXTRAS:-}," '
    match($0, /# extra: [a-z]+$/) { name = substr($0, RSTART + 9); if (index(extras, "," name ",") == 0) next }
    { print }' requirements.lock > "$LOCK"
"$VENV/bin/python" -m pip install --quiet -r "$LOCK"
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/ishwh" --help >/dev/null
echo "ishwh installed in $VENV (activate with: source $VENV/bin/activate)"
