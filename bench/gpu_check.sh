#!/usr/bin/env bash
# The one-shot device check, for the first session (or user) with an NVIDIA GPU. From the
# repository root:
#
#   bash bench/gpu_check.sh [FOLDER]        # default runs/gpu_check; FOLDER/summary.txt at the end
#
# It installs tinygan with the cuda extra that matches the machine's CUDA (or, where CuPy is
# already installed, tinygan alone, offline), then, each part under its own time limit, writing
# everything into FOLDER:
#   env.txt          GPU, driver, CuPy/NVRTC/NCCL versions
#   nvrtc.log        every CUDA kernel compiled for this GPU (bench/nvrtc_check.py)
#   gpu_tests.log    the gpu-marked tests on hardware, every device path against the CPU (junit
#                    XML beside it; without a GPU the same tests run on tests/cupy_standin.py)
#   step.log         the InfoGAN step against PyTorch CUDA at batch 64 and 128 (bench_step.py)
#   infogan/         the paper's InfoGAN trained on the GPU (metrics.json, figures, log)
# Environment: TINYGAN_DATA (the MNIST folder), GPU_CHECK_STEPS (default 5000),
# GPU_CHECK_SPLIT (default train; test where only MNIST's test split is at hand), GPU_CHECK_ARGS
# (more flags for examples/infogan_mnist.py).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_check}
steps=${GPU_CHECK_STEPS:-5000}
split=${GPU_CHECK_SPLIT:-train}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg HYPOTHESIS_PROFILE=ci
py=${PYTHON:-python3}
status=0
start=$(date +%s)

part() {  # part NAME SECONDS COMMAND...: run with a limit, log to FOLDER/NAME.log, note the result
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    [ $rc -ne 0 ] && status=1
    printf '%-10s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$(tail -n 1 "$out/$name.log")" |
        tee -a "$out/summary.txt"
}

: >"$out/summary.txt"
if $py -c "import cupy" 2>/dev/null; then  # CuPy is there: install tinygan alone (works offline)
    $py -m pip install --quiet --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 ||
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else  # the extra for the driver's CUDA version (README, "GPU"): cuda13 from 13 on, else cuda12
    major=$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -n 1)
    extra=cuda12
    [ "${major:-12}" -ge 13 ] && extra=cuda13
    $py -m pip install --quiet -e ".[test,$extra]" >"$out/install.log" 2>&1 || status=1
fi

{
    nvidia-smi
    $py - <<'EOF'
import cupy, numpy, tinygan
from cupy.cuda import nccl, nvrtc
print("tinygan", tinygan.__version__, "numpy", numpy.__version__, "cupy", cupy.__version__)
print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "NVRTC", nvrtc.getVersion())
print("NCCL available", nccl.available, nccl.get_version() if nccl.available else "")
print("device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
      "compute capability", cupy.cuda.Device(0).compute_capability)
EOF
} >"$out/env.txt" 2>&1 || status=1
tail -n 4 "$out/env.txt" | tee -a "$out/summary.txt"

part nvrtc 120 $py bench/nvrtc_check.py --arch native
per_test=()
$py -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 90)
part gpu_tests 240 $py -m pytest -m gpu -p no:cacheprovider -q -rfE "${per_test[@]}" \
    --junitxml="$out/gpu_tests.xml" tests
part step 150 $py bench/bench_step.py --device cuda --batches 64 128 --repeats 20 --warmup 5

data=()
[ -n "${TINYGAN_DATA:-}" ] && data=(--data-dir "$TINYGAN_DATA")
part infogan 420 $py examples/infogan_mnist.py --device cuda --steps "$steps" --split "$split" \
    "${data[@]}" --out "$out/infogan" --overwrite --no-progress ${GPU_CHECK_ARGS:-}

echo "total $(($(date +%s) - start)) s, status $status" | tee -a "$out/summary.txt"
exit $status
