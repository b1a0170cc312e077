#!/usr/bin/env bash
# tests/test_malformed.sh: the malformed-input corpus, tests/malformed/cases.txt.
#
# Each case feeds one command line a bad input or a bad flag: truncated and
# lying checkpoints, NaN weights, absurd configs, corrupt shards, binary junk
# and 100 MB lines as JSONL, invalid UTF-8, out-of-range and overflowing
# flags, unwritable outputs; through ./tokenizer, ./data, ./s1 and the
# emulated sft (build/emu/sft). For every case it asserts:
#   - a non-zero exit, and no signal (no crash, no sanitizer abort);
#   - exactly one line on stderr, matching the case's pattern, which names
#     the bad file or flag;
#   - no file left behind or changed: the case's folder holds the same files
#     with the same contents before and after (no partial output, no *.tmp.*);
#   - a bounded time: at most 30 s (the slowest case, the 100 MB line, takes
#     about a second).
#
# cases.txt holds blocks of four lines, separated by blank lines:
#   case:  a name
#   setup: shell run in the case's empty folder $W to make the inputs (may be empty)
#   run:   the command, run in $W (programs: $S1 $DATA $TOK $SFT; shared valid
#          inputs: $FIX/model, $FIX/shard, $FIX/tok, $FIX/gen, $FIX/prompts.jsonl)
#   error: an extended regex the stderr line must match
# The setup helpers are the functions below (model, st_set_header, ...).
set -u
cd "$(dirname "$0")/.."
source tests/lib.sh
ROOT=$PWD
S1=$ROOT/s1 DATA=$ROOT/data TOK=$ROOT/tokenizer SFT=$ROOT/build/emu/sft
FIX=$TMP/fix
mkdir -p "$FIX"

# ---------------------------------------------------------------------------
# shared valid inputs

cp -r tests/fixtures/qwen-tiny-tied "$FIX/model"            # vocab 300, tied, F32
make_shard tests/fixtures/qwen-tiny-tied "$FIX/shard"       # its reference batch
cp -r tests/fixtures/tok_trained "$FIX/tok"                 # a trained BPE of 771 ids
# a model that fits the trained tokenizer, for sample and eval
printf '{"model_type": "qwen2", "vocab_size": 784, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512, "tie_word_embeddings": true}\n' >"$FIX/gen.json"
$S1 train --init-config "$FIX/gen.json" --data "$FIX/shard" --out "$FIX/gen" --batch 4 --epochs 1 --threads 1 >/dev/null 2>&1 ||
    { echo "FAIL malformed: cannot make the sample model"; exit 1; }
printf '{"question": "What is 2 + 3?", "answer": "5"}\n{"question": "What is 7 - 4?", "answer": "3"}\n' >"$FIX/prompts.jsonl"
export S1 DATA TOK SFT FIX ROOT

# ---------------------------------------------------------------------------
# setup helpers (run inside the case's folder)

model() { cp -r "$FIX/model" "$1"; }                                       # model DIR: a copy of the valid model
shard() { cp "$FIX/shard" "$1"; }
st_len() { od -An -t u8 -N8 "$1" | tr -d ' '; }                            # the header length of a safetensors file
# st_set_header FILE JSON: replace the header (the data stays); JSON is padded to the old length when shorter
st_set_header() {
    local f=$1 hdr=$2 n; n=$(st_len "$f")
    local data; data=$(mktemp); tail -c +$((9 + n)) "$f" >"$data"
    while [ ${#hdr} -lt "$n" ]; do hdr="$hdr "; done
    { le64 ${#hdr}; printf '%s' "$hdr"; cat "$data"; } >"$f"; rm -f "$data"
}
le64() { le32 $(($1 & 0xffffffff)); le32 $(($1 >> 32)); }
# st_poke FILE BYTE_OFFSET_IN_DATA HEX...: overwrite bytes of the data section
st_poke() {
    local f=$1 off=$2; shift 2
    local n; n=$(st_len "$f")
    printf "$(printf '\\x%s' "$@")" | dd of="$f" bs=1 seek=$((8 + n + off)) conv=notrunc status=none
}
# json_set FILE KEY VALUE: set a top-level number/literal field of a JSON object file (one key per line or not)
json_set() { sed -E -i "s/\"$2\": *[^,}]*/\"$2\": $3/" "$1"; }
json_del() { sed -E -i "/\"$2\":/d" "$1"; }
# shard_poke FILE OFFSET HEX...: overwrite bytes of a shard
poke() { local f=$1 off=$2; shift 2; printf "$(printf '\\x%s' "$@")" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none; }
junk() { head -c "${2:-4096}" /dev/urandom >"$1"; }                        # junk FILE [BYTES]: binary junk
nested() { { printf '%*s' "$2" '' | tr ' ' '['; printf '%*s' "$2" '' | tr ' ' ']'; echo; } >"$1"; }   # nested FILE DEPTH
export -f model shard st_len st_set_header le64 le32 st_poke json_set json_del poke junk nested

# ---------------------------------------------------------------------------
# the cases

snapshot() { (cd "$1" && find . \( -type f -o -type l \) -print0 | sort -z | xargs -0 -r md5sum); }

run_case() {   # run_case NAME SETUP RUN PATTERN
    local name=$1 setup=$2 cmd=$3 pattern=$4
    local W; W=$(mktemp -d "$TMP/case.XXXXXX")
    if ! (cd "$W" && bash -c "set -e; $setup") >"$TMP/setup.log" 2>&1; then
        fail "$name" "setup failed: $(head -c 300 "$TMP/setup.log")"; return
    fi
    local before; before=$(snapshot "$W")
    local start=$SECONDS
    (cd "$W" && W=$W timeout 30 bash -c "$cmd") >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$? lines; lines=$(wc -l <"$TMP/err")
    local after; after=$(snapshot "$W")
    # under `make test SANITIZE=1`, ASan announces an allocation it refuses (a model too large for
    # memory) on stderr before malloc returns NULL: that line is the sanitizer's, not the program's
    sed -i '/^==[0-9]*==WARNING: AddressSanitizer failed to allocate/d' "$TMP/err"
    lines=$(wc -l <"$TMP/err")
    if [ $rc -eq 124 ]; then fail "$name" "timed out (30 s)"
    elif [ $rc -eq 0 ]; then fail "$name" "expected a non-zero exit, got 0"
    elif [ $rc -ge 128 ]; then fail "$name" "killed by signal $((rc - 128)): $(head -c 300 "$TMP/err")"
    elif [ "$lines" -ne 1 ]; then fail "$name" "expected one line on stderr, got $lines: $(head -c 400 "$TMP/err")"
    elif ! grep -qE -- "$pattern" "$TMP/err"; then fail "$name" "stderr '$(cat "$TMP/err")' does not match /$pattern/"
    elif [ "$before" != "$after" ]; then fail "$name" "files changed: $(diff <(echo "$before") <(echo "$after") | head -5 | tr '\n' ' ')"
    else pass "$name ($((SECONDS - start))s)"; fi
    rm -rf "$W"
}

n=0
declare -A by_program
name= setup= cmd= pattern=
flush() {
    [ -n "$name" ] || return
    run_case "$name" "$setup" "$cmd" "$pattern"
    n=$((n + 1))
    local p; p=$(echo "$cmd" | grep -oE '\$(S1|DATA|TOK|SFT)( [a-z]+)?' | head -1)
    by_program[$p]=$((${by_program[$p]:-0} + 1))
    name= setup= cmd= pattern=
}
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        "#"*) ;;
        "case: "*) flush; name=${line#case: } ;;
        "setup:"*) setup=${line#setup:}; setup=${setup# } ;;
        "run: "*) cmd=${line#run: } ;;
        "error: "*) pattern=${line#error: } ;;
        "") flush ;;
        *) echo "FAIL malformed: cases.txt: cannot read line: $line"; _failed=$((_failed + 1)) ;;
    esac
done <tests/malformed/cases.txt
flush
summary_line=""
for p in "${!by_program[@]}"; do summary_line="$summary_line ${p//\$/}: ${by_program[$p]},"; done
echo "note: $n malformed-input cases ($(echo "$summary_line" | tr -s ' ' | sed 's/,$//' | tr 'A-Z' 'a-z'))"
summary
