#!/usr/bin/env bash
# tests/gpu/check.sh — the GPU check of the CUDA backend (issue #4), in one run on a fresh GPU
# machine with nvcc and PyTorch, no network (see docs/gpu_runbook.md):
#   1. build the library with the CUDA backend + the GPU test and benchmark programs;
#   2. correctness: CUDA vs CPU backend (stories260K when found, else a synthetic model of its
#      shape), batch 1 and 8, streams crossing hundreds of evictions, fp16 / own kernels / bf16,
#      plus device sampling;
#   3. decode benchmark on a Llama-2-7B-shaped fp16 random model: ours (batch 1, 8, 32; sinks 4,
#      window 2044, positions past 4096) and then, in a separate process once ours has exited, a
#      PyTorch eager StreamingLLM baseline on the same shapes; then a table: ours, PyTorch, ratio,
#      and our batch-1 fraction of the memory-bandwidth roofline.
# Every stage runs under `timeout` inside an overall budget (CHECK_BUDGET_S, default 330 s), and
# a failing or timed-out stage does not stop the later ones: the summary shows what was measured.
# Usage: bash tests/gpu/check.sh      (from anywhere; exit status != 0 when a check fails)
# Output: the full log and the table go to $OUT/gpu_check.log and $OUT/gpu_table.md when OUT is
#      set (the device tool collects $OUT), else to csrc/build/gpu_check/.
# Rehearsal without a GPU: SS_CHECK_EMULATOR=1 runs the same stages through the CUDA emulator
# (csrc/tests/cuda_emu) at small sizes (tests/gpu/check_script.test.ts does, in CI).
# Env: PYTHON (the interpreter with torch, default python3),
#      CUDA_ARCHS (default: the visible GPU's compute capability), SS_SHARED (test material
#      folder; default ../shared, then ./shared), SS_BENCH_STEPS (timed decode steps, default 32),
#      SKIP_TORCH=1 (no baseline), CHECK_BUDGET_S.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
START=$(date +%s)
BUDGET=${CHECK_BUDGET_S:-330}
LOGDIR=${OUT:-$ROOT/csrc/build/gpu_check}
mkdir -p "$LOGDIR"
WORK=$(mktemp -d)
LOG=$LOGDIR/gpu_check.log
TABLE=$LOGDIR/gpu_table.md
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1
fail=0
declare -a RESULTS=()
elapsed() { echo "$(($(date +%s) - START))s"; }
# seconds a stage may take: its own cap, but never past the overall budget (at least 20 s)
allow() {
  local left=$((BUDGET - ($(date +%s) - START)))
  local cap=$1
  [ "$left" -lt "$cap" ] && cap=$left
  [ "$cap" -lt 20 ] && cap=20
  echo "$cap"
}
# run a stage: name, cap seconds, output copy file, command...; records PASS / FAIL (rc) / TIMEOUT
# (not in a pipeline, so RESULTS survives)
stage() {
  local name=$1 cap out=$3
  cap=$(allow "$2")
  shift 3
  echo "== $name [$(elapsed), limit ${cap}s]"
  timeout -k 10 "$cap" "$@" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  if [ $rc -eq 0 ]; then
    RESULTS+=("| $name | PASS |")
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    RESULTS+=("| $name | TIMEOUT after ${cap}s |")
    echo "TIMEOUT: $name after ${cap}s"
  else
    RESULTS+=("| $name | FAIL (exit $rc) |")
    echo "FAIL: $name (exit $rc)"
  fi
  return $rc
}

JOBS=$(nproc 2>/dev/null || echo 4)
echo "== device [$(date -u +%FT%TZ)]"
EMULATE=${SS_CHECK_EMULATOR:-0}
BIN=build/cuda
BENCH_ENV=()
BENCH_LABEL="Llama-2-7B shape"
PYTHON=${PYTHON:-python3}
TORCH_SKIPPED="SKIP_TORCH=1"
TORCH_ARGS=(--batches 1,8,32)
if [ "$EMULATE" = 1 ]; then
  # rehearsal on a machine without a GPU: the same stages through the CUDA emulator
  # (csrc/tests/cuda_emu), at small sizes; it checks this script, the programs and the table, and
  # the numbers it prints are CPU timings of an emulator, not GPU results
  DEVICE_NAME="CUDA emulator rehearsal on the CPU (SS_CHECK_EMULATOR=1; timings are not GPU numbers)"
  echo "$DEVICE_NAME"
  BIN=build/cuda-emu
  BUILD_CMD='make -C csrc -j"$1" cuda-emu >"$4" 2>&1'
  export SS_GPU_TEST_STEPS=${SS_GPU_TEST_STEPS:-6}
  SS_BENCH_STEPS=${SS_BENCH_STEPS:-2}
  BENCH_ENV=(SS_BENCH_SHAPE=tiny SS_BENCH_WINDOW=60 SS_BENCH_PREFILL=130 SS_BENCH_BW_MIB=16)
  TORCH_ARGS+=(--device cpu --dtype float32 --layers 2 --dim 128 --hidden 352 --heads 4 --vocab 512 --window 60
    --steps 2 --warmup 1)
  BENCH_LABEL="tiny Llama shape, emulated"
  if [ "${SKIP_TORCH:-0}" != 1 ] && ! timeout 60 "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
    echo "torch: not importable by $PYTHON; the PyTorch stage is skipped"
    SKIP_TORCH=1
    TORCH_SKIPPED="torch not importable by $PYTHON"
  fi
  CUDA_ARCHS=emulated
  NVCC=nvcc
else
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! timeout 30 nvidia-smi -L >/dev/null 2>&1; then
    echo "SKIP: tests/gpu/check.sh: no NVIDIA GPU visible (nvidia-smi); nothing to check here"
    echo "      (SS_CHECK_EMULATOR=1 rehearses it on the CPU through the CUDA emulator)"
    exit 0
  fi
  DEVICE_NAME=$(timeout 30 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n1)
  timeout 30 nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
  timeout 30 nvidia-smi | grep -m1 "CUDA Version" || true
  NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  "$NVCC" --version | tail -n 2
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null ||
    echo "torch: not importable"
  if [ -z "${CUDA_ARCHS:-}" ]; then
    cc=$(timeout 30 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')
    case "$cc" in
      [0-9][0-9] | [0-9][0-9][0-9]) CUDA_ARCHS=$cc ;;
      *) CUDA_ARCHS="80 90" ;;
    esac
  fi
  BUILD_CMD='make -C csrc -j"$1" NVCC="$2" CUDA_ARCHS="$3" cuda cuda-test >"$4" 2>&1'
fi

# 1. build (about 10 s of nvcc on 2 cores here; -j on the GPU machine's cores)
if ! stage "build (CUDA_ARCHS=$CUDA_ARCHS)" 240 /dev/null \
  bash -c "$BUILD_CMD" _ "$JOBS" "$NVCC" "$CUDA_ARCHS" "$WORK/build.log"; then
  tail -n 60 "$WORK/build.log"
  cp "$WORK/build.log" "$LOGDIR/gpu_build.log" 2>/dev/null
  { echo "# GPU check $(date -u +%F)"; echo; echo "| stage | result |"; echo "| --- | --- |";
    printf '%s\n' "${RESULTS[@]}"; } >"$TABLE"
  echo "FAIL: build; see $LOGDIR/gpu_build.log"
  exit 1
fi
echo "built csrc/$BIN/{gpu_test_cuda_vs_cpu,gpu_bench_decode}"

# cuBLAS: the backend dlopens libcublas.so.<runtime major> (then .13/.12/.11): find one for it
# when the loader cannot (CUDA 13 pip wheels keep it in site-packages/nvidia/cu13/lib)
if [ "$EMULATE" != 1 ] && [ -z "${SS_CUBLAS_PATH:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.'; then
  major=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p' | head -n1)
  cand=""
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -z "$cand" ] && cand=$(ls "$d"/libcublas.so."$major"* 2>/dev/null | head -n1)
  done
  if [ -z "$cand" ]; then
    cand=$(MAJOR="$major" timeout 60 python3 - <<'EOF' 2>/dev/null
import glob, os, sys
major = os.environ.get("MAJOR", "")
pats = ["nvidia/cu*/lib/libcublas.so.*", "nvidia/cublas/lib/libcublas.so.*", "torch/lib/libcublas.so.*"]
found = []
for base in sys.path:
    for p in pats:
        found += glob.glob(os.path.join(base, p))
found = sorted(set(found), key=lambda f: (os.path.basename(f).startswith("libcublas.so." + major + "."), f))
print(found[-1] if found else "")
EOF
)
  fi
  if [ -n "$cand" ]; then
    export SS_CUBLAS_PATH="$cand"
    echo "cuBLAS: SS_CUBLAS_PATH=$cand"
  else
    echo "cuBLAS: none found; the own wmma kernels do the large matmuls (slower prefill / batch-32 decode)"
  fi
fi

# 2. correctness
export SS_SHARED=${SS_SHARED:-$ROOT/../shared}
[ -f "$SS_SHARED/models/stories260K/stories260K.bin" ] || { [ -d "$ROOT/shared" ] && SS_SHARED=$ROOT/shared; }
stage "correctness: CUDA vs CPU" 150 "$WORK/test.txt" bash -c "cd csrc && ./$BIN/gpu_test_cuda_vs_cpu" || fail=1
if grep -q '^SKIP' "$WORK/test.txt"; then
  echo "FAIL: nvidia-smi sees a GPU but the CUDA backend does not (see the SKIP line: driver/runtime mismatch?)"
  RESULTS+=("| CUDA backend sees the GPU | FAIL |")
  fail=1
fi

# 3a. our benchmark (its process exits before PyTorch starts: both never hold GPU memory at once)
stage "benchmark: ours ($BENCH_LABEL)" 200 "$WORK/ours.txt" \
  env "${BENCH_ENV[@]}" SS_BENCH_STEPS="${SS_BENCH_STEPS:-32}" bash -c "cd csrc && ./$BIN/gpu_bench_decode" || fail=1
if ! grep -q '^BENCH ours ' "$WORK/ours.txt"; then
  RESULTS+=("| benchmark: ours produced decode numbers | FAIL |")
  fail=1
fi

# 3b. PyTorch baseline (a failure here is reported, not counted as a backend failure)
: >"$WORK/torch.txt"
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  stage "benchmark: PyTorch eager StreamingLLM" 150 "$WORK/torch.txt" \
    "$PYTHON" tests/gpu/torch_streaming_baseline.py "${TORCH_ARGS[@]}" ||
    echo "WARN: PyTorch baseline failed or was cut short (table shows n/a where missing)"
else
  RESULTS+=("| benchmark: PyTorch eager StreamingLLM | SKIPPED ($TORCH_SKIPPED) |")
fi

echo "== summary [$(elapsed)]"
timeout 60 python3 - "$WORK/ours.txt" "$WORK/torch.txt" "$WORK/test.txt" >"$WORK/summary.md" <<'EOF'
import shlex, sys
def parse(path):
    d = {}
    try:
        for line in open(path):
            if not line.startswith("BENCH "):
                continue
            try:
                parts = shlex.split(line)  # gemm="..." holds spaces
            except ValueError:
                parts = line.split()
            kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            d.setdefault(parts[1], []).append(kv)
    except FileNotFoundError:
        pass
    return d
ours, torch = parse(sys.argv[1]), parse(sys.argv[2])
o = {int(r["batch"]): float(r["tok_s"]) for r in ours.get("ours", []) if "batch" in r and "tok_s" in r}
t = {int(r["batch"]): float(r["tok_s"]) for r in torch.get("torch", []) if "batch" in r and "tok_s" in r}
roof = (ours.get("roofline") or [{}])[0]
info = {k: v for r in ours.get("info", []) for k, v in r.items()}
if info.get("model", "").startswith("tiny"):
    print("Decode, tiny Llama shape through the CUDA emulator (a rehearsal: CPU timings, not GPU numbers):")
else:
    print("Decode, Llama-2-7B shape (fp16 random weights), 4 sinks + 2044 window, stream positions past 4096:")
print()
print("| batch | ours tok/s | PyTorch tok/s | ratio |")
print("| ---: | ---: | ---: | ---: |")
for b in sorted(set(o) | set(t)):
    ob, tb = o.get(b), t.get(b)
    ratio = f"{ob / tb:.2f}x" if ob and tb else "n/a"
    print(f"| {b} | {f'{ob:.1f}' if ob else 'n/a'} | {f'{tb:.1f}' if tb else 'n/a'} | {ratio} |")
print()
if roof and 1 in o:
    rt = float(roof["tok_s"])
    print(f"- batch-1 roofline: {rt:.1f} tok/s (weights {float(roof['weight_bytes'])/1e9:.2f} GB per token, "
          f"copy bandwidth {float(roof['copy_bw'])/1e12:.2f} TB/s); ours = {100 * o[1] / rt:.1f}% of roofline "
          f"(target >= 80%)")
if 1 in o and 32 in o:
    print(f"- batch 32 aggregate / batch 1 = {o[32] / o[1]:.1f}x (target >= 10x)")
if 1 in o and 1 in t:
    print(f"- ours / PyTorch at batch 1 = {o[1] / t[1]:.2f}x (target >= 3x)")
for r in ours.get("gemv", []):
    print(f"- batch-1 GEMV {r['name']} ({r['n']}x{r['k']}) alone: {float(r['us']):.1f} us, {float(r['gb_s']):.0f} GB/s "
          f"= {100 * float(r['of_copy_bw']):.0f}% of copy bandwidth")
for r in ours.get("step_split", []):
    print(f"- batch-1 step {float(r['batch1_step_us']):.0f} us = GEMVs alone {float(r['gemv_us']):.0f} us "
          f"+ everything else {float(r['other_us']):.0f} us (attention, norms, small kernels, launch gaps)")
for r in ours.get("info", []):
    print("- ours: " + ", ".join(f"{k}={v}" for k, v in r.items()))
for r in torch.get("torch_info", []):
    print("- PyTorch: " + ", ".join(f"{k}={v}" for k, v in r.items()))
try:
    lines = [l.rstrip() for l in open(sys.argv[3]) if l.startswith(("pass ", "  ", "model:", "gpu_test", "SKIP"))]
    if lines:
        print()
        print("Correctness (CUDA vs CPU):")
        print()
        print("```")
        print("\n".join(lines))
        print("```")
except FileNotFoundError:
    pass
EOF
{
  echo "# GPU check $(date -u +%F) — $DEVICE_NAME"
  echo
  echo "| stage | result |"
  echo "| --- | --- |"
  printf '%s\n' "${RESULTS[@]}"
  echo
  cat "$WORK/summary.md"
  echo
  echo "total time: $(elapsed)"
} >"$TABLE"
cat "$TABLE"
cp "$WORK/build.log" "$LOGDIR/gpu_build.log" 2>/dev/null
rm -rf "$WORK"
echo "log: $LOG; table: $TABLE"
exit $fail
