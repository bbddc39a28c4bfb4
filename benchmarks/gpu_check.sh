#!/usr/bin/env bash
# The first-GPU check of nfkit: on one NVIDIA GPU (H100/H200 class; an A100 runs everything but the flash3 backend),
# in about 8 minutes, it runs
#   1. the tests that skip without CUDA: bf16 autocast, the flash-attn 2 and Hopper (FA3/FA4) attention backends
#      against the reference attention, cached decoding steps included;
#   2. `nf train` of TarFlow under torchrun with one process: DistributedDataParallel over nccl, bf16, on the GPU;
#   3. benchmarks/tarflow.py in bf16 at the small, medium and ImageNet-64-sized configurations (3x64x64, patch 4,
#      768 channels, 8 blocks x 8 layers), with model FLOPs utilisation (MFU) of training and sampling;
#   4. benchmarks/denseflow.py in bf16, with MFU of training and sampling;
#   5. with OFFICIAL_ROOT set (a folder holding apple/ml-tarflow's transformer_flow.py): the side-by-side comparison
#      with the official TarFlow on the GPU, nf's compiled sampler included (at most 1.5 more minutes).
# Everything goes under one folder: a log per step, the benchmark tables, the test report, environment.txt and
# summary.txt (each step's exit status and seconds, and every test skipped with its reason; a test that still skips
# for want of CUDA fails the check). Each step has a time limit, so one hung step cannot eat the rest; the limits add
# up to 8 minutes (6.5 without OFFICIAL_ROOT).
#
# The exit status is 0 only when every step passed.
#
# Usage, from the repository root with the packages installed (pip install -e each package, or `nox -s dev`):
#     benchmarks/gpu_check.sh [OUT_DIR]                    # default OUT_DIR: gpu_check_<UTC time>
#     PYTHON=.venv/bin/python OFFICIAL_ROOT=/tmp/tarflow_official benchmarks/gpu_check.sh /tmp/gpu_check
# On a machine that holds PyTorch but reaches no package index, install the three packages it needs without their
# dependencies (numpy, einops, pluggy, tqdm, matplotlib, torchvision and scikit-learn must be there, and setuptools 77
# or newer), as benchmarks/README.md shows:
#     python3 -m pip install --no-deps --no-build-isolation --no-index -e packages/nf-core -e packages/nf-arch-tarflow -e packages/nf-arch-denseflow
set -uo pipefail

OUT=${1:-gpu_check_$(date -u +%Y%m%dT%H%M%SZ)}
PY=${PYTHON:-python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: > "$OUT/summary.txt"
failed=0

# step NAME SECONDS COMMAND...: run COMMAND with a time limit, its output in NAME.log, its status in summary.txt.
step() {
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (limit ${limit}s)"
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    [ "$rc" = 0 ] || failed=1
    echo "$name: exit $rc after $(( $(date +%s) - start ))s$([ "$rc" = 124 ] && echo ' (time limit)')" \
        | tee -a "$OUT/summary.txt"
}

step environment 30 "$PY" - <<'EOF'
import importlib.metadata as metadata, shutil, subprocess, torch
print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout if shutil.which("nvidia-smi") else "no nvidia-smi")
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), "compute capability", torch.cuda.get_device_capability(0))
for name in ("flash-attn", "flash_attn_3", "flash-attn-3", "flash-attn-4", "nfkit-core", "nfkit-tarflow"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "not installed")
EOF
cp "$OUT/environment.log" "$OUT/environment.txt"

step tests 80 "$PY" -m pytest -q -rs -p no:cacheprovider --import-mode=importlib --junitxml "$OUT/tests.xml" \
    packages/nf-core/tests/test_attention_kernels.py packages/nf-arch-tarflow/tests/test_attention_backends.py
grep "^SKIPPED" "$OUT/tests.log" | sed 's/^/tests: /' | tee -a "$OUT/summary.txt"
if grep -q "^SKIPPED.*CUDA" "$OUT/tests.log"; then
    echo "tests: FAILED: tests skipped for want of CUDA on a CUDA machine (see tests.log)" | tee -a "$OUT/summary.txt"
    failed=1
fi

step ddp_nccl_train 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m nfkit_core.cli train \
    --arch tarflow --data digits --set train.device=cuda --set train.precision=bf16 --set train.steps=40 \
    --set train.log_every=10 --set train.val_every=40 --set train.sample_every=40 --set train.checkpoint_every=40 \
    --set train.num_samples=16 --set train.progress=false --out "$OUT/ddp_nccl_train"

step tarflow_bf16 160 "$PY" benchmarks/tarflow.py --device cuda --bf16 --configs small medium imagenet64 \
    --samples 3 --warmup 1 --memory-rounds 1 --output "$OUT/tarflow_cuda_bf16.md"

step denseflow_bf16 60 "$PY" benchmarks/denseflow.py --device cuda --bf16 --samples 3 --warmup 1 --memory-rounds 1 \
    --output "$OUT/denseflow_cuda_bf16.md"

if [ -n "${OFFICIAL_ROOT:-}" ]; then
    # One process: the compiled sampler's graphs (two configurations, with and without guidance) compile once.
    step tarflow_vs_official 90 "$PY" benchmarks/tarflow.py --device cuda --official-root "$OFFICIAL_ROOT" \
        --fixtures packages/nf-arch-tarflow/tests/fixtures --samples 3 --warmup 1 --processes 1 \
        --output "$OUT/tarflow_vs_official_cuda.md"
fi

echo "results in $OUT:"
cat "$OUT/summary.txt"
exit "$failed"
