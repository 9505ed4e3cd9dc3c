#!/usr/bin/env bash
# The CUDA checks, for a GPU machine with PyTorch 2.11 and transformers in
# its python3 (no Rust needed): run from the repo root with a release
# mmsr-host built elsewhere and tools-wasm/dist/ in place.
#   tests/gpu/check.sh BIN OUT_DIR [SECONDS_PER_FULL_DEMO [SEEDS]]
# CHECKS picks among generate, rollout and quick (default: all three). Each
# check's output goes to OUT_DIR/NAME.log; this prints each one's exit code,
# wall time and tail.
set -u
BIN=$1
OUT=$2
FULL=${3:-0}
SEEDS=${4:-0}
mkdir -p "$OUT"
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
NV_LIBS=$(python3 -c 'import glob, os, torch; r = os.path.dirname(os.path.dirname(torch.__file__)); print(":".join(sorted(glob.glob(r + "/nvidia/*/lib") + glob.glob(r + "/nvidia/cu*/lib"))))')
export LD_LIBRARY_PATH="$TORCH_LIB:$NV_LIBS:${LD_LIBRARY_PATH:-}"
export MMSR_PYTHON=$(command -v python3) MMSR_REPO=$PWD
nvidia-smi -L
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

check() {
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc=$rc in $((SECONDS - t0)) s"
    tail -n 14 "$OUT/$name.log"
}

# bf16 copies of the demo configs: the chain on CUDA in bf16.
BF16=$(mktemp -d)
cp -r configs/demo/. "$BF16/"
sed -i 's/^dtype = "f32"/dtype = "bf16"/' "$BF16"/*.toml

for what in ${CHECKS:-generate rollout quick}; do
    case $what in
    generate)
        check generate_bf16 150 "$BIN" bench generate --device cuda --dtype bf16
        check generate_f32 150 "$BIN" bench generate --device cuda --dtype f32 ;;
    rollout)
        # Each batch runs sync, async and continuous batching; the scripted
        # scheduler runs never touch the GPU (--sched-step-ms 0 skips them).
        check rollout_bf16 240 "$BIN" bench rollout --device cuda --dtype bf16 --sched-step-ms 0
        check rollout_f32 240 "$BIN" bench rollout --device cuda --dtype f32 --sched-step-ms 0
        # Does lingering for sibling results cut bf16's many small calls?
        check rollout_bf16_linger 240 "$BIN" bench rollout --device cuda --dtype bf16 --batch-linger-ms 2 --sched-step-ms 0 ;;
    quick)
        check demo_quick_bf16 150 "$BIN" demo --quick --configs "$BF16" --world /tmp/gpu-qw --runs /tmp/gpu-qr
        check demo_quick_f32 150 "$BIN" demo --quick --world /tmp/gpu-qw32 --runs /tmp/gpu-qr32 ;;
    esac
done
if [ "$FULL" -gt 0 ]; then
    for seed in $SEEDS; do
        check "demo_full_f32_seed$seed" "$FULL" "$BIN" demo --seed "$seed" --world "/tmp/gpu-w$seed" --runs "/tmp/gpu-r$seed"
        cp "/tmp/gpu-r$seed/evidence.json" "$OUT/evidence_seed$seed.json" 2>/dev/null
    done
fi
nvidia-smi --query-gpu=name,memory.used --format=csv
