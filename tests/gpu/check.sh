#!/usr/bin/env bash
# tests/gpu/check.sh — the GPU check of the CUDA backend (issue #4), in one run on a fresh GPU
# machine with nvcc and PyTorch, no network:
#   1. build the library with the CUDA backend + the GPU test and benchmark programs;
#   2. correctness: CUDA vs CPU backend (stories260K when found, else a synthetic model of its
#      shape), batch 1 and 8, streams crossing hundreds of evictions, fp16 / own kernels / bf16,
#      plus device sampling;
#   3. decode benchmark on a Llama-2-7B-shaped fp16 random model: ours (batch 1, 8, 32; sinks 4,
#      window 2044, positions past 4096) and a PyTorch eager StreamingLLM baseline on the same
#      shapes; then a table: ours, PyTorch, ratio, and our batch-1 fraction of the
#      memory-bandwidth roofline (weight bytes per token / measured device copy bandwidth).
# Usage: bash tests/gpu/check.sh      (from anywhere; exit status != 0 when a check fails)
# Env: CUDA_ARCHS (default: the visible GPU's, else "80 90"), SS_SHARED (test material folder),
#      SS_BENCH_STEPS (timed decode steps, default 32), SKIP_TORCH=1 (no baseline).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
START=$(date +%s)
OUT=$(mktemp -d)
fail=0
elapsed() { echo "$(($(date +%s) - START))s"; }

echo "== device"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIP: tests/gpu/check.sh: no NVIDIA GPU visible (nvidia-smi); nothing to check here"
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
"$NVCC" --version | tail -n 2

if [ -z "${CUDA_ARCHS:-}" ]; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')
  CUDA_ARCHS=${cc:-"80 90"}
fi
echo "== build (CUDA_ARCHS=$CUDA_ARCHS) [$(elapsed)]"
if ! make -C csrc -j"$(nproc)" NVCC="$NVCC" CUDA_ARCHS="$CUDA_ARCHS" cuda cuda-test >"$OUT/build.log" 2>&1; then
  tail -n 60 "$OUT/build.log"
  echo "FAIL: build"
  exit 1
fi
echo "built csrc/build/libsinkstream.so (with CUDA) and csrc/build/cuda/{gpu_test_cuda_vs_cpu,gpu_bench_decode}"

# cuBLAS: the backend dlopens it; point it at PyTorch's copy when the toolkit has none on the path
if [ -z "${SS_CUBLAS_PATH:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so'; then
  cand=$(python3 - <<'EOF' 2>/dev/null
import glob, os
paths = []
try:
    import nvidia.cublas
    for p in nvidia.cublas.__path__:
        paths += glob.glob(os.path.join(p, "lib", "libcublas.so*"))
except Exception:
    pass
try:
    import torch
    paths += glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libcublas.so*"))
except Exception:
    pass
print(sorted(paths)[-1] if paths else "")
EOF
)
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -z "$cand" ] && cand=$(ls "$d"/libcublas.so.* 2>/dev/null | head -n1)
  done
  if [ -n "$cand" ]; then export SS_CUBLAS_PATH="$cand"; echo "cuBLAS: $cand"; fi
fi

echo "== correctness: CUDA vs CPU [$(elapsed)]"
export SS_SHARED=${SS_SHARED:-$ROOT/../shared}
[ -d "$SS_SHARED" ] || SS_SHARED=$ROOT/shared
if ! (cd csrc && ./build/cuda/gpu_test_cuda_vs_cpu); then
  echo "FAIL: gpu_test_cuda_vs_cpu"
  fail=1
fi

echo "== benchmark: ours (Llama-2-7B shape, fp16 random weights) [$(elapsed)]"
if ! (cd csrc && SS_BENCH_STEPS=${SS_BENCH_STEPS:-32} ./build/cuda/gpu_bench_decode) | tee "$OUT/ours.txt"; then
  echo "FAIL: gpu_bench_decode"
  fail=1
fi

if [ "${SKIP_TORCH:-0}" != 1 ]; then
  echo "== benchmark: PyTorch eager StreamingLLM baseline [$(elapsed)]"
  if ! python3 tests/gpu/torch_streaming_baseline.py --batches 1,8,32 | tee "$OUT/torch.txt"; then
    echo "WARN: PyTorch baseline failed (table shows n/a)"
  fi
fi

echo "== summary [$(elapsed)]"
python3 - "$OUT/ours.txt" "$OUT/torch.txt" <<'EOF'
import re, sys
def parse(path):
    d = {}
    try:
        for line in open(path):
            if not line.startswith("BENCH "):
                continue
            parts = line.split()
            kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            d.setdefault(parts[1], []).append(kv)
    except FileNotFoundError:
        pass
    return d
ours, torch = parse(sys.argv[1]), parse(sys.argv[2])
o = {int(r["batch"]): float(r["tok_s"]) for r in ours.get("ours", [])}
t = {int(r["batch"]): float(r["tok_s"]) for r in torch.get("torch", [])}
roof = ours.get("roofline", [{}])[0]
print(f"{'batch':>5} | {'ours tok/s':>11} | {'PyTorch tok/s':>13} | {'ratio':>6}")
for b in sorted(set(o) | set(t)):
    ob, tb = o.get(b), t.get(b)
    ratio = f"{ob / tb:.2f}x" if ob and tb else "n/a"
    print(f"{b:>5} | {ob if ob else float('nan'):>11.1f} | {tb if tb else float('nan'):>13.1f} | {ratio:>6}")
if roof and 1 in o:
    rt = float(roof["tok_s"])
    print(f"batch-1 roofline: {rt:.1f} tok/s (weights {float(roof['weight_bytes'])/1e9:.2f} GB per token, "
          f"copy bandwidth {float(roof['copy_bw'])/1e12:.2f} TB/s); ours = {100 * o[1] / rt:.1f}% of roofline "
          f"(target >= 80%)")
if 1 in o and 32 in o:
    print(f"batch 32 aggregate / batch 1 = {o[32] / o[1]:.1f}x (target >= 10x)")
if 1 in o and 1 in t:
    print(f"ours / PyTorch at batch 1 = {o[1] / t[1]:.2f}x (target >= 3x)")
EOF
echo "total time: $(elapsed)"
rm -rf "$OUT"
exit $fail
