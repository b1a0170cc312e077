#!/usr/bin/env bash
# tests/run_gpu.sh: the tests that need an NVIDIA GPU (sm_90), for the day one is lent;
# CI has none and never runs this. Last line "N passed, N failed", as tests/run.sh.
#
#   make && make cuda && make build/tests/tool_ckpt_diff && tests/run_gpu.sh
#
# 1. The kernel tests, build/cuda/tests/emu_kernels*: the sources of the emulated kernel
#    tests (tests/emu_kernels*.cu) built with nvcc and linked to the s1.c oracle, so every
#    kernel meets on the GPU the same bound it meets in the emulator.
# 2. tests/test_sft.sh with SFT=build/cuda/sft SAMPLE=build/cuda/sample: the GPU programs'
#    command lines against ./s1 (sft loss, sft train, resume, determinism, sample).
# 3. The workbench, build/cuda/dev/OP: every version's check on the GPU, then its benchmark
#    (the "bench" lines are printed as notes, nothing asserts a speed).
# The several-rank tests (tests/test_sharding.sh) need one GPU per rank: NCCL refuses two
# ranks on one device, so they are left to a machine with several GPUs.
set -u
cd "$(dirname "$0")/.."
passed=0 failed=0
count() {   # count LABEL LOG RC: adds the log's PASS/FAIL lines; a non-zero exit with no FAIL line is one failure
    local p f
    p=$(grep -c '^PASS ' "$2") f=$(grep -c '^FAIL ' "$2")
    if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)) failed=$((failed + f))
    echo "$1: $p passed, $f failed"
    grep -E '^(FAIL|  )' "$2" | head -40
    grep -E '^note:|^bench ' "$2"
    if [ "$3" -ne 0 ] && [ "$(grep -c '^FAIL ' "$2")" -eq 0 ]; then echo "  exit status $3 without a FAIL line:"; tail -5 "$2"; fi
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in build/cuda/tests/emu_kernels*; do
    start=$SECONDS
    timeout 300 "$t" >"$log" 2>&1
    count "$t ($((SECONDS - start)) s)" "$log" $?
done
start=$SECONDS
SFT=build/cuda/sft SAMPLE=build/cuda/sample timeout 600 bash tests/test_sft.sh >"$log" 2>&1
count "tests/test_sft.sh on build/cuda ($((SECONDS - start)) s)" "$log" $?
for d in build/cuda/dev/*; do
    timeout 300 "$d" --bench >"$log" 2>&1
    count "$d --bench" "$log" $?
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
