#!/usr/bin/env bash
# tests/test_fuzz_replay.sh: every input of the fuzz regression corpus,
# tests/fuzz/corpus/<target>/, through its harness (build/tests/fuzz_<target>,
# the gcc build with tests/fuzz/replay.c as main): the seeds, the inputs of
# the issues found by hand (found*) and every input a fuzzing run crashed on
# (crash-*), so a fixed crash stays fixed without clang. Under
# `make test SANITIZE=1` the harnesses run with ASan and UBSan.
set -u
cd "$(dirname "$0")/.."
source tests/lib.sh
# the harnesses free what a rejected input leaves (tests/fuzz/track.h): any leak is a finding
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1"   # last wins: run.sh turns leaks off for shell tests

for dir in tests/fuzz/corpus/*/; do
    t=$(basename "$dir")
    bin=build/tests/fuzz_$t
    if [ ! -x "$bin" ]; then fail "fuzz replay $t" "$bin is not built"; continue; fi
    n=$(ls "$dir" | wc -l)
    if "$bin" "$dir" >"$TMP/log" 2>&1; then pass "fuzz replay $t: $n inputs"
    else fail "fuzz replay $t" "$(grep -v '^warning: skipping' "$TMP/log" | tail -15)"; fi
done
for src in tests/fuzz/fuzz_*.c; do
    t=${src#tests/fuzz/fuzz_}; t=${t%.c}
    [ -d "tests/fuzz/corpus/$t" ] || fail "fuzz target $t has a corpus folder tests/fuzz/corpus/$t"
done
summary
