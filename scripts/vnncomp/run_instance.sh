#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT — the answer (sat with
# its witness / unsat / timeout / unknown) goes to RESULTS_FILE; `mlrobust verify` keeps the
# time limit itself (a hard wall-clock limit: its worker is stopped at TIMEOUT).
# MLROBUST overrides the command (default: the repository's .venv, else mlrobust on PATH);
# MLROBUST_CHAIN overrides the verifier chain (default: attack() -> bounds() -> milp()).
set -uo pipefail
VERSION="$1"; CATEGORY="$2"; ONNX="$3"; VNNLIB="$4"; RESULTS="$5"; TIMEOUT="$6"
[ "$VERSION" = "v1" ] || { echo "run_instance.sh: unknown interface version $VERSION" >&2; exit 1; }
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${MLROBUST:-}" ]; then
    if [ -x "$REPO/.venv/bin/mlrobust" ]; then MLROBUST="$REPO/.venv/bin/mlrobust"; else MLROBUST="mlrobust"; fi
fi
ARGS=(verify "$ONNX" "$VNNLIB" --timeout "$TIMEOUT" --out "$RESULTS")
[ -n "${MLROBUST_CHAIN:-}" ] && ARGS+=(--chain "$MLROBUST_CHAIN")
echo "mlrobust on $CATEGORY: $(basename "$ONNX") $(basename "$VNNLIB"), $TIMEOUT s" >&2
"$MLROBUST" "${ARGS[@]}" >&2
STATUS=$?
# a user or internal error leaves no answer: say unknown rather than nothing
[ -s "$RESULTS" ] || echo "unknown" > "$RESULTS"
exit $STATUS
