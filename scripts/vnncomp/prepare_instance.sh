#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB — nothing to prepare beyond checking
# that both files exist (the model is loaded and checked against onnxruntime by run_instance).
set -uo pipefail
VERSION="$1"; CATEGORY="$2"; ONNX="$3"; VNNLIB="$4"
[ "$VERSION" = "v1" ] || { echo "prepare_instance.sh: unknown interface version $VERSION" >&2; exit 1; }
[ -f "$ONNX" ] || { echo "prepare_instance.sh: no model $ONNX (category $CATEGORY)" >&2; exit 1; }
[ -f "$VNNLIB" ] || { echo "prepare_instance.sh: no property $VNNLIB (category $CATEGORY)" >&2; exit 1; }
exit 0
