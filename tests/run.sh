#!/usr/bin/env bash
# tests/run.sh: runs every test and prints "N passed, N failed" as its last line.
# Called by `make test` after everything is built. Exits non-zero on any failure.
#
#   build/tests/test_*   C test programs, run once
#   build/tests/emu_*    emulated CUDA tests, run under each thread schedule:
#                        forward, reverse and random:$CUEMU_SEED (default 1234)
#   tests/test_*.sh      shell tests of the command-line programs
# With S1C_SANITIZE=1 (make test SANITIZE=1) the emulated tests and the shell
# tests marked "# sanitize: skip" are left out (see below).
#
# A program that exits non-zero without printing a FAIL line (a crash, an
# abort) is counted as one failure, so nothing can fail silently. Lines a test
# prints as "note: ..." (measured errors, speeds) are shown; the rest of its
# output only when it fails.
set -u
cd "$(dirname "$0")/.."
# With `make test SANITIZE=1` the C programs and tests carry ASan + UBSan. An
# allocation too large for the machine must come back NULL (and be reported
# by the program as one error line), not abort inside ASan. The C test
# programs run with LeakSanitizer; the command lines of the shell tests run
# without it, since a program that stops with die() leaves its allocations to
# the exit on purpose (the fuzz replays, which free what a die() leaves,
# turn it back on).
export ASAN_OPTIONS="allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
passed=0
failed=0
seed=${CUEMU_SEED:-1234}

run_one() {   # run_one LABEL SHOW_NOTES CMD...: SHOW_NOTES=1 echoes the test's "note:" lines
    local label=$1 show_notes=$2; shift 2
    local log; log=$(mktemp)
    local start=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local p f
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $label (exit status $rc)" >>"$log"
        f=1
    fi
    if [ "$f" -gt 0 ]; then cat "$log"
    elif [ "$show_notes" = 1 ]; then grep -E '^note:' "$log" | sed 's/^/  /'; fi
    echo "$label: $p passed, $f failed ($((SECONDS - start))s)"
    passed=$((passed + p))
    failed=$((failed + f))
    rm -f "$log"
}

for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" 1 "$t"
done
# Under S1C_SANITIZE=1 (make test SANITIZE=1) only what the sanitizers rebuilt
# runs again: the emulated CUDA tests, and shell tests marked "# sanitize: skip"
# (they run no C program), are the same binaries the plain `make test` ran.
sanitize=${S1C_SANITIZE:-}
for t in build/tests/emu_*; do
    [ -x "$t" ] || continue
    [ "$sanitize" = 1 ] && continue
    for sched in forward reverse "random:$seed"; do
        # the notes (measured errors) are the same in every order: show them once
        show=0; [ "$sched" = forward ] && show=1
        run_one "$(basename "$t") [$sched]" $show env CUEMU_SCHEDULE="$sched" "$t"
    done
done
for t in tests/test_*.sh; do
    [ -f "$t" ] || continue
    [ "$sanitize" = 1 ] && grep -q '^# sanitize: skip' "$t" && continue
    run_one "$(basename "$t")" 1 env ASAN_OPTIONS="detect_leaks=0:$ASAN_OPTIONS" bash "$t"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
