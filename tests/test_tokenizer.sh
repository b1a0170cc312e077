# tests/test_tokenizer.sh: the ./tokenizer command line: encode, decode, --jsonl,
# train, --help, and one-line errors with a non-zero exit on bad input.
. tests/lib.sh
Q=tokenizers/qwen2.5
T=tests/fixtures/tok_trained

# --- encode / decode
expect_eq "encode Hello, world!" "$(printf 'Hello, world!' | ./tokenizer encode $Q)" "9707 11 1879 0"
expect_eq "encode splits added tokens" "$(printf 'Hi  <|im_end|>' | ./tokenizer encode $Q)" "13048 256 151645"
got=$(printf '<|im_end|>' | ./tokenizer encode $Q --added-as-text)
expect_eq "--added-as-text: plain text, same bytes back" "$(echo "$got" | ./tokenizer decode $Q)" "<|im_end|>"
[ "$got" != "151645" ] && pass "--added-as-text gives no added-token id" || fail "--added-as-text gives no added-token id" "$got"
printf 'Hello' | ./tokenizer encode $T --stats >/dev/null 2>"$TMP/stats"
grep -qE '^encoded 5 bytes into [0-9]+ ids in [0-9.]+ s, [0-9.]+ s CPU \([0-9.]+ MB/s, [0-9.]+ MB/s CPU\)$' "$TMP/stats" && pass "--stats line" || fail "--stats line" "$(cat "$TMP/stats")"
expect_eq "encode of empty input" "$(./tokenizer encode $Q </dev/null)" ""
expect_eq "decode" "$(echo '151644 872 198 13048 0 151645' | ./tokenizer decode $Q)" "<|im_start|>user
Hi!<|im_end|>"
expect_eq "decode --skip-special" "$(echo '151644 872 198 13048 0 151645' | ./tokenizer decode $Q --skip-special)" "user
Hi!"
text='Les « élèves » naïfs; 你好 😀 x=3.14'
expect_eq "CLI round trip" "$(printf '%s' "$text" | ./tokenizer encode $Q | ./tokenizer decode $Q)" "$text"
# NFC: e + U+0301 comes back as U+00E9
expect_eq "encode applies NFC" "$(printf 'e\xcc\x81' | ./tokenizer encode $T | ./tokenizer decode $T | od -An -tx1 | tr -d ' ')" "c3a9"

# --- vocab.json + merges.txt (+ tokenizer_config.json) directory
mkdir -p "$TMP/vm"
for f in vocab.json merges.txt tokenizer_config.json; do ln -s "$PWD/$Q/$f" "$TMP/vm/$f"; done
s='Hello world. It'"'"'s a test; <|im_start|>user'
expect_eq "vocab.json + merges.txt gives the same ids" "$(printf '%s' "$s" | ./tokenizer encode "$TMP/vm")" "$(printf '%s' "$s" | ./tokenizer encode $Q)"

# --- both merge encodings ("a b" and ["a", "b"]), and a "#version" line atop merges.txt
mkdir -p "$TMP/pairs"
sed -E 's/^      "([^" ]+) ([^" ]+)"(,?)$/      ["\1", "\2"]\3/' $T/tokenizer.json > "$TMP/pairs/tokenizer.json"
n_pairs=$(grep -cE '^      \[".*", ".*"\],?$' "$TMP/pairs/tokenizer.json")
[ "$n_pairs" -gt 400 ] && pass "pair-form merges written ($n_pairs)" || fail "pair-form merges written" "$n_pairs"
s2='Hello <|im_start|>world, ünïcödé 12 😀'
expect_eq "[\"a\", \"b\"] merges give the same ids" "$(printf '%s' "$s2" | ./tokenizer encode "$TMP/pairs")" "$(printf '%s' "$s2" | ./tokenizer encode $T)"
mkdir -p "$TMP/vmh"
ln -s "$PWD/$Q/vocab.json" "$TMP/vmh/vocab.json"; ln -s "$PWD/$Q/tokenizer_config.json" "$TMP/vmh/tokenizer_config.json"
{ printf '#version: 0.2\n'; cat $Q/merges.txt; } > "$TMP/vmh/merges.txt"
expect_eq "merges.txt with a #version header" "$(printf '%s' "$s" | ./tokenizer encode "$TMP/vmh")" "$(printf '%s' "$s" | ./tokenizer encode $Q)"

# --- --jsonl
printf '{"text": "Hello, world!"}\n{"text": "12345", "other": 1}\n{"text": ""}\n' > "$TMP/in.jsonl"
expect_eq "--jsonl: one line per input line, in order" "$(./tokenizer encode $Q --jsonl < "$TMP/in.jsonl")" '{"ids": [9707, 11, 1879, 0]}
{"ids": [16, 17, 18, 19, 20]}
{"ids": []}'

# --- --help
for cmd in encode decode train; do
    expect_ok "$cmd --help" ./tokenizer $cmd --help
    grep -q "^usage: ./tokenizer $cmd" "$TMP/out" && pass "$cmd --help prints its usage" || fail "$cmd --help prints its usage"
done

# --- train
python_free_corpus="$TMP/corpus.txt"
for i in $(seq 1 40); do echo "The quick brown fox $i jumps over the lazy dog. <|endoftext|> Ünïcödé $i"; done > "$python_free_corpus"
expect_ok "train --vocab-size 300" ./tokenizer train --vocab-size 300 --out "$TMP/trained" "$python_free_corpus"
t='The lazy fox <|im_end|> jumps ünïcödé 42 😀'
expect_eq "trained tokenizer: CLI round trip" "$(printf '%s' "$t" | ./tokenizer encode "$TMP/trained" | ./tokenizer decode "$TMP/trained")" "$t"
expect_eq "trained tokenizer: added tokens follow the vocabulary" "$(printf '<|endoftext|><|im_start|><|im_end|>' | ./tokenizer encode "$TMP/trained")" "300 301 302"
expect_ok "train --added-tokens" ./tokenizer train --vocab-size 260 --added-tokens '<a>,<b>' --out "$TMP/trained2" "$python_free_corpus"
expect_eq "custom added tokens" "$(printf 'x<b>' | ./tokenizer encode "$TMP/trained2")" "$(printf 'x' | ./tokenizer encode "$TMP/trained2") 261"

# --- errors: one line naming the file and what is wrong, non-zero exit
expect_error "missing tokenizer directory" "^error: $TMP/none/tokenizer.json: cannot open" ./tokenizer encode "$TMP/none"
mkdir -p "$TMP/bad"
printf '{"version": "1.0", "model": {"vocab": ' > "$TMP/bad/tokenizer.json"
expect_error "malformed JSON" "^error: $TMP/bad/tokenizer.json: line 1 col [0-9]+: " ./tokenizer encode "$TMP/bad"
sed 's/^      "Ġ Ġ",$/      "Ġ ZZZ",/' $T/tokenizer.json > "$TMP/bad/tokenizer.json"
expect_error "merge naming an unknown symbol" "^error: $TMP/bad/tokenizer.json: line [0-9]+ col [0-9]+: model.merges\[0\]: merge names an unknown symbol \"ZZZ\"" ./tokenizer encode "$TMP/bad"
sed 's/^      "Ġ Ġ",$/      "Ġ Ġ Ġ",/' $T/tokenizer.json > "$TMP/bad/tokenizer.json"
expect_error "merge that is not two symbols" "model.merges\[0\]: expected" ./tokenizer encode "$TMP/bad"
awk '/"vocab": \{/ { print "    \"vocab\": {}, \"merges\": []}}"; exit } { print }' $T/tokenizer.json > "$TMP/bad/tokenizer.json"
expect_error "empty vocabulary" "^error: $TMP/bad/tokenizer.json: line [0-9]+ col [0-9]+: the vocabulary is empty" ./tokenizer encode "$TMP/bad"
sed 's/"Regex": "/"Regex": "x/' $T/tokenizer.json > "$TMP/bad/tokenizer.json"
expect_error "unsupported pre-tokenizer" "tokenizer.json: line [0-9]+ col [0-9]+: unsupported pre_tokenizer" ./tokenizer encode "$TMP/bad"
sed 's/^      "!": 0,$/      "!": -3,/' $T/tokenizer.json > "$TMP/bad/tokenizer.json"
expect_error "negative id" "tokenizer.json: line [0-9]+ col [0-9]+: model.vocab\[\"!\"\]: the id is not a non-negative integer" ./tokenizer encode "$TMP/bad"
mkdir -p "$TMP/badvm"
cp $Q/vocab.json $Q/tokenizer_config.json "$TMP/badvm/"
printf 'Ġ Ġ\ni n\nq QZXQZXQ\n' > "$TMP/badvm/merges.txt"
expect_error "merges.txt: unknown symbol" "^error: $TMP/badvm/merges.txt: line 3: merge names an unknown symbol \"QZXQZXQ\"" ./tokenizer encode "$TMP/badvm"
rm "$TMP/badvm/tokenizer_config.json"
printf 'Ġ Ġ\n' > "$TMP/badvm/merges.txt"
expect_error "missing tokenizer_config.json" "^error: $TMP/badvm/tokenizer_config.json: cannot read" ./tokenizer encode "$TMP/badvm"
# invalid UTF-8 on stdin is rejected (policy: encode takes valid UTF-8 only)
expect_error "invalid UTF-8 on stdin" '^error: stdin: byte 2: invalid UTF-8$' bash -c "printf 'ab\xff' | ./tokenizer encode $T"
expect_error "truncated UTF-8 on stdin" '^error: stdin: byte 1: invalid UTF-8$' bash -c "printf 'x\xe4\xbd' | ./tokenizer encode $T"
expect_error "jsonl: malformed line" '^error: stdin: line 2: line 1 col [0-9]+: ' bash -c "printf '{\"text\": \"a\"}\n{\"text\": \n' | ./tokenizer encode $T --jsonl"
expect_error "jsonl: no text" '^error: stdin: line 1: expected an object with a string "text"' bash -c "printf '{\"txt\": \"a\"}\n' | ./tokenizer encode $T --jsonl"
expect_error "decode: not an id" '^error: stdin: token 2: not an id: "x1"' bash -c "echo '1 x1 2' | ./tokenizer decode $T"
expect_error "decode: id out of range" '^error: stdin: token 1: id 151665 is not in the tokenizer' bash -c "echo '151665' | ./tokenizer decode $Q"
printf 'ok\n\xc3(\n' > "$TMP/bad.txt"
expect_error "train: invalid UTF-8 in a corpus file" "^error: $TMP/bad.txt: byte 3: invalid UTF-8" ./tokenizer train --vocab-size 300 --out "$TMP/t3" "$TMP/bad.txt"
expect_error "train: missing file" "^error: $TMP/nofile.txt: cannot read" ./tokenizer train --vocab-size 300 --out "$TMP/t3" "$TMP/nofile.txt"
expect_error "train: bad --vocab-size" "^error: train: --vocab-size must be in 257..1000000" ./tokenizer train --vocab-size 10 --out "$TMP/t3" "$python_free_corpus"
expect_error "unknown option" "^error: encode: unexpected argument '--frobnicate'" ./tokenizer encode $Q --frobnicate
summary
