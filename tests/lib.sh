# tests/lib.sh: helpers for shell tests (tests/test_*.sh). Source it, then
# call the checks; each prints "PASS <name>" or "FAIL <name>" like test.h.
# End the script with `summary`, which exits non-zero if any check failed.
#
#   expect_ok NAME CMD...            CMD exits 0
#   expect_error NAME PATTERN CMD... CMD exits non-zero, prints exactly one line on
#                                    stderr, that line matches PATTERN (grep -E),
#                                    and it did not crash (no signal, no sanitizer report)
#   expect_eq NAME GOT WANT          two strings are equal

_passed=0
_failed=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS $1"; _passed=$((_passed + 1)); }
fail() { echo "FAIL $1"; shift; [ $# -gt 0 ] && echo "  $*"; _failed=$((_failed + 1)); }

expect_ok() {
    local name=$1; shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$name"
    else fail "$name" "exit $?: $(head -c 500 "$TMP/err")"; fi
}

expect_error() {
    local name=$1 pattern=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$?
    local lines; lines=$(wc -l <"$TMP/err")
    if [ $rc -eq 0 ]; then fail "$name" "expected a non-zero exit, got 0"
    elif [ $rc -ge 128 ]; then fail "$name" "crashed with signal $((rc - 128))"
    elif [ "$lines" -ne 1 ]; then fail "$name" "expected one line on stderr, got $lines: $(head -c 500 "$TMP/err")"
    elif ! grep -qE -- "$pattern" "$TMP/err"; then fail "$name" "stderr '$(cat "$TMP/err")' does not match /$pattern/"
    else pass "$name"; fi
}

expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$(printf %s "$2" | head -c 300)', want '$(printf %s "$3" | head -c 300)'"; fi
}

summary() {
    echo "$_passed passed, $_failed failed"
    [ $_failed -eq 0 ]
}
