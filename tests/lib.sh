# tests/lib.sh: helpers for shell tests (tests/test_*.sh). Source it, then
# call the checks; each prints "PASS <name>" or "FAIL <name>" like test.h.
# End the script with `summary`, which exits non-zero if any check failed.
#
#   expect_ok NAME CMD...            CMD exits 0
#   expect_error NAME PATTERN CMD... CMD exits non-zero, prints exactly one line on
#                                    stderr, that line matches PATTERN (grep -E),
#                                    and it did not crash (no signal, no sanitizer report)
#   expect_eq NAME GOT WANT          two strings are equal
#   make_shard FIXTURE_DIR OUT       the fixture's reference batch as a token shard

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

# Fixture helpers (tests/fixtures/qwen-tiny-*): a shard made from the reference batch.
# The shard layout (common/shard.h) is
# header, uint64 offsets, uint32 ids, uint8 mask: exactly the bytes of the reference's
# seq_offsets (I64), input_ids (I32, all >= 0) and target_mask (U8) tensors.
st_header() { # st_header FILE: the JSON header of a safetensors file
    local n; n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    dd if="$1" bs=1 skip=8 count="$n" 2>/dev/null
}
st_bytes() { # st_bytes FILE NAME: the raw bytes of one tensor
    local n hdr range b e
    n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    hdr=$(st_header "$1")
    range=$(printf '%s' "$hdr" | grep -oE "\"$2\":\{[^}]*\}" | grep -oE '"data_offsets":\[[0-9]+,[0-9]+\]' | grep -oE '[0-9]+,[0-9]+')
    b=${range%,*}; e=${range#*,}
    tail -c +$((8 + n + b + 1)) "$1" | head -c $((e - b))
}
le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
make_shard() { # make_shard FIXTURE_DIR OUT: the fixture's 4 sequences as a shard (vocab 300)
    local ref=$1/reference.safetensors ntok
    ntok=$(($(st_bytes "$ref" target_mask | wc -c)))
    { printf 'S1C1'; le32 1; le32 4; le32 0; le32 "$ntok"; le32 0; le32 300; head -c 36 /dev/zero
      st_bytes "$ref" seq_offsets; st_bytes "$ref" input_ids; st_bytes "$ref" target_mask; } >"$2"
}
summary() {
    echo "$_passed passed, $_failed failed"
    [ $_failed -eq 0 ]
}
