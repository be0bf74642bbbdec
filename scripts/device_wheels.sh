#!/usr/bin/env bash
# Run here, where PyPI is reachable: fetches into .whl/ (git-ignored) the wheels that the GPU
# machine's image lacks for scripts/device_check.sh. That machine has Python 3.12 with torch
# (CUDA), numpy, scipy, onnx, onnxruntime, rich, matplotlib, pillow, pytest, hypothesis and
# setuptools (/work/.library/device/KINDS.md), and reaches no package registry.
#
#   bash scripts/device_wheels.sh            # wheels for the GPU machine (CPython 3.12, x86-64)
#   PYTHON_VERSION=3.11 bash scripts/device_wheels.sh   # for a rehearsal here (see device_check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# the project's own needs that the image lacks: the spec grammar's parser and the MILP solver
WHEELS=(lark==1.3.1 highspy==1.16.0)
version="${PYTHON_VERSION:-3.12}"
platforms=()
for n in 17 27 28 31 34 35; do
    platforms+=(--platform "manylinux_2_${n}_x86_64")
done
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
