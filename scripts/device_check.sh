#!/usr/bin/env bash
# bab on a CUDA device: the checks issue 17 asks of `device = cuda`, in one call of the device
# tool, sized to fit its budget (about 9 minutes of a 10-minute command).
#
# Here first:  bash scripts/device_wheels.sh
# Then (device tool): run(command="bash scripts/device_check.sh", carry=[".whl"], timeout_s=600)
#
# 1. the bab properties of tests/test_bab.py and the bab / window-split tests of
#    tests/test_graph_networks.py with `--device cuda`: sound on sampled and attacked points,
#    agreeing with the exact MILP, splits only tightening, pieces bounding their regions;
# 2. bench/bab_device.py: the PGD model's boxes on the CPU and on cuda (two batch sizes):
#    verdicts must agree, and it prints the time ratio;
# 3. the main job with bab (`specs/double_mnist_pgd_bab.mlr`) on cuda, if time is left.
# Logs land in $OUT (the device tool brings them back). DEVICE=cpu rehearses it all on a
# machine without a GPU (with wheels for its Python: PYTHON_VERSION=3.11 device_wheels.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-/tmp/mlrobust-device-check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PYTHON="${PYTHON:-python3}"
started=$(date +%s)
BUDGET="${BUDGET:-540}"  # seconds for the three steps together
left() { echo $((BUDGET - ($(date +%s) - started))); }
# `timeout 0` would mean no limit at all: a step with under 20 s left does not start
within() { local seconds; seconds=$(left); [ "$seconds" -ge 20 ] || { echo "(no time left)"; return 124; }; timeout "$seconds" "$@"; }

{
    echo "== machine"
    nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
    # the image's torch, numpy, onnx... stay; only what it lacks is added, then the project itself
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade .whl/*.whl || exit 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
    "$PYTHON" -c "import torch, mlrobust.verify.bab, mlrobust.verify.milp; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
} 2>&1 | tee "$OUT/setup.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "setup failed: see setup.log"; exit 1; }

echo "== 1. bab's properties on $DEVICE"
within "$PYTHON" -m pytest -q -p no:cacheprovider --device "$DEVICE" tests/test_bab.py \
    "tests/test_graph_networks.py" -k "bab or window" 2>&1 | tee "$OUT/pytest.log"
tests=${PIPESTATUS[0]}

echo "== 2. the PGD model's boxes, cpu against $DEVICE ($(left) s left)"
devices=(cpu)
[ "$DEVICE" = cpu ] || devices+=("$DEVICE")
within "$PYTHON" bench/bab_device.py --devices "${devices[@]}" --canvases 4 --factors 1.05 1.3 \
    --limit 10 --batch 64 256 --threads 8 2>&1 | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}

main=skipped
if [ "$(left)" -gt 150 ]; then
    echo "== 3. the main job with bab on $DEVICE ($(left) s left)"
    within "$PYTHON" -m mlrobust run specs/double_mnist_pgd_bab.mlr --device "$DEVICE" --out /tmp/mainjob-device \
        --force 2>&1 | tail -40 | tee "$OUT/mainjob.log"
    main=${PIPESTATUS[0]}
    cp /tmp/mainjob-device/result.json "$OUT/mainjob-result.json" 2>/dev/null
fi
echo "== exit codes: tests $tests, bench $bench, main job $main; $(( $(date +%s) - started )) s"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
