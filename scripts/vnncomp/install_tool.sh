#!/usr/bin/env bash
# VNN-COMP: install_tool.sh v1 — a virtual environment in the repository with mlrobust in it.
set -euo pipefail
VERSION="${1:-v1}"
[ "$VERSION" = "v1" ] || { echo "install_tool.sh: unknown interface version $VERSION (expected v1)" >&2; exit 1; }
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
python3 -m venv "$REPO/.venv"
"$REPO/.venv/bin/pip" install -q -e "$REPO"
"$REPO/.venv/bin/mlrobust" --version
