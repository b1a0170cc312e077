# tests/test_data.sh: the ./data command line on the committed synthetic pool,
# and its errors on bad input (one line naming file:line, non-zero exit).
. tests/lib.sh
POOL=tests/fixtures/data-sample-pool.jsonl
EVAL=tests/fixtures/data-sample-eval.jsonl
TOK=tokenizers/qwen2.5

# --- synth: the committed sample is exactly the generator's default output
./data synth --out "$TMP/pool.jsonl" >/dev/null
./data synth --eval-set --n 40 --out "$TMP/eval.jsonl" >/dev/null
expect_ok "synth reproduces $POOL" cmp "$TMP/pool.jsonl" "$POOL"
expect_ok "synth --eval-set reproduces $EVAL" cmp "$TMP/eval.jsonl" "$EVAL"
./data synth --seed 2 --n 50 --out "$TMP/pool2.jsonl" >/dev/null
expect_eq "synth: another seed, another pool" "$(cmp -s "$TMP/pool2.jsonl" <(head -50 "$POOL") && echo same || echo differs)" "differs"
# train and eval questions are disjoint classes: a pool's only eval-class rows are its deliberately
# contaminated ones, which copy the first eval questions of the same seed (decontaminate removes them)
./data synth --eval-set --n 2000 --seed 2 --out "$TMP/eval2.jsonl" >/dev/null
./data synth --eval-set --n 2000 --seed 3 --out "$TMP/eval3.jsonl" >/dev/null
./data synth --n 2000 --seed 3 --out "$TMP/pool3.jsonl" >/dev/null
questions() { grep -o '"question": "[^"]*"' "$@" | sed 's/^"question": //; s/^"[^"]*\\n//' | sort -u; }
contaminated=$(comm -12 <(questions "$TMP/pool3.jsonl") <(questions "$TMP/eval3.jsonl") | wc -l)
expect_eq "synth: the pool copies some eval questions of its seed" "$(( contaminated > 20 ))" "1"
expect_eq "synth: no other pool question is an eval question of any seed" \
    "$(comm -23 <(questions "$TMP/pool3.jsonl") <(questions "$TMP/eval3.jsonl") | comm -12 - <(questions "$TMP/eval2.jsonl") | wc -l)" "0"

# the demo's proportions (it selects nearly every row that survives the filters): although the 2^-rank draw
# prefers long traces, which are the checking ones, checks stay under half of the selection, so a model trained
# on it prefers to end its thinking after the glance (tutorial/demo.md)
./data synth --n 3000 --max-digits 2 --out "$TMP/demo_pool.jsonl" >/dev/null
survivors=$(./data select "$TMP/demo_pool.jsonl" --n 1000000 --out "$TMP/demo_sel.jsonl" 2>&1 | grep -o 'only [0-9]*' | tr -dc 0-9)
./data select "$TMP/demo_pool.jsonl" --n $((survivors * 95 / 100)) --out "$TMP/demo_sel.jsonl" >/dev/null
expect_eq "synth + select: checking traces are a minority of the demo-like selection (95% of $survivors survivors)" \
    "$(awk -v w="$(grep -c 'Wait' "$TMP/demo_sel.jsonl")" -v n="$(wc -l <"$TMP/demo_sel.jsonl")" 'BEGIN { print (n > 900 && w > 0.3 * n && w < 0.5 * n) }')" "1"

# --- select: one line per stage, in order, each doing visible work on the sample
./data select "$POOL" --eval "$EVAL" --n 100 --seed 7 --out "$TMP/sel.jsonl" >"$TMP/select.out" 2>"$TMP/select.err"
expect_eq "select: stage lines" "$(grep -E '^[a-z]+: [0-9]+ -> [0-9]+$' "$TMP/select.out")" "na: 500 -> 481
quality: 481 -> 448
difficulty: 448 -> 269
decontaminate: 269 -> 264
dedup: 264 -> 257
select: 257 -> 100"
expect_eq "select: exactly --n rows" "$(wc -l <"$TMP/sel.jsonl")" "100"
expect_eq "select: every row is a pool line, verbatim" "$(grep -cvFxf "$POOL" "$TMP/sel.jsonl")" "0"
expect_eq "select: no NA, no solved, no duplicate rows" \
    "$(grep -cE '"domain": null|"isqwen7bcorrect": true|"isqwen32bcorrect": true|"gemini_length": null' "$TMP/sel.jsonl"), $(grep -o '"question": "[^"]*"' "$TMP/sel.jsonl" | sort | uniq -d | wc -l)" "0, 0"
expect_eq "select: the report has counts, domains and lengths" \
    "$(grep -cE '^  (na|select) |^per-domain histogram|^trace length|^  selected ' "$TMP/sel.jsonl.report.txt")" "5"
./data select "$POOL" --eval "$EVAL" --n 100 --seed 7 --out "$TMP/sel2.jsonl" --report "$TMP/r2.txt" >/dev/null
expect_ok "select: the same seed gives the same rows" cmp "$TMP/sel.jsonl" "$TMP/sel2.jsonl"
./data select "$POOL" --eval "$EVAL" --n 100 --seed 8 --out "$TMP/sel3.jsonl" >/dev/null
expect_eq "select: another seed gives other rows" "$(cmp -s "$TMP/sel.jsonl" "$TMP/sel3.jsonl" && echo same || echo differs)" "differs"
# every seed-set row (Gemini-correct AIME/GPQA) that survives the filters is selected
./data select "$POOL" --eval "$EVAL" --n 257 --seed 7 --out "$TMP/all.jsonl" >/dev/null
seeds=$(grep -E '"source_type": "(qq8933/AIME_1983_2024|Idavidrein/gpqa)"' "$TMP/all.jsonl" | grep -c '"isgeminicorrect": true')
got=$(grep -E '"source_type": "(qq8933/AIME_1983_2024|Idavidrein/gpqa)"' "$TMP/sel.jsonl" | grep -c '"isgeminicorrect": true')
expect_eq "select: the seed set ($seeds rows) is in the selection" "$got" "$seeds"
expect_eq "select: all five domains covered" "$(grep -o '"domain": "[a-z ]*"' "$TMP/sel.jsonl" | sort -u | wc -l)" "5"
./data select "$POOL" --n 100 --out "$TMP/noeval.jsonl" | grep decontaminate >"$TMP/de.txt"
expect_eq "select: without --eval nothing is decontaminated" "$(cat "$TMP/de.txt")" "decontaminate: 269 -> 269"
for mode in random diverse longest; do
    ./data select "$POOL" --n 100 --mode $mode --out "$TMP/$mode.jsonl" >"$TMP/$mode.out"
    expect_eq "select --mode $mode: quality-filtered pool, no difficulty filter, n rows" \
        "$(grep -E '^(difficulty|select):' "$TMP/$mode.out" | tr '\n' ' ')$(wc -l <"$TMP/$mode.jsonl")" \
        "difficulty: 448 -> 448 select: 439 -> 100 100"
done 2>/dev/null
expect_eq "select --mode longest: the 100 longest traces" \
    "$(grep -o '"gemini_length": [0-9]*' "$TMP/longest.jsonl" | awk '{print $2}' | sort -n | head -1)" \
    "$(./data select "$POOL" --n 439 --mode longest --out "$TMP/l2.jsonl" >/dev/null; grep -o '"gemini_length": [0-9]*' "$TMP/l2.jsonl" | awk '{print $2}' | sort -rn | sed -n 100p)"
expect_eq "select --mode random: solved questions are not filtered" "$(grep -c '"isqwen32bcorrect": true' "$TMP/random.jsonl" | awk '{print ($1 > 0)}')" "1"

# --- tokenize and show
./data tokenize "$TMP/sel.jsonl" --tokenizer $TOK --out "$TMP/sel.bin" >"$TMP/tok.out" 2>"$TMP/tok.err"
expect_ok "tokenize: sample selection" test -s "$TMP/sel.bin"
expect_eq "tokenize: statistics" "$(grep -cE '^wrote .*: 100 sequences, [0-9]+ tokens|^tokens per sample: mean .* max .* p50 .* p90 .* p99|^truncated 0 of 100' "$TMP/tok.out")" "3"
./data show "$TMP/sel.bin" >"$TMP/show.jsonl"
expect_eq "show: one JSON line per sequence" "$(wc -l <"$TMP/show.jsonl")" "100"
# the mask turns on right after the first 151644 77091 198 and stays on
first=$(head -1 "$TMP/show.jsonl")
ids=$(echo "$first" | sed 's/.*"ids": \[\([^]]*\)\].*/\1/' | tr -d ' ' | tr ',' '\n')
mask=$(echo "$first" | sed 's/.*"mask": \[\([^]]*\)\].*/\1/' | tr -d ' ' | tr ',' '\n')
start=$(echo "$ids" | awk 'NR>2 && p2==151644 && p1==77091 && $1==198 {print NR; exit} {p2=p1; p1=$1}')
expect_eq "show: mask = 0 up to the response template, then 1 to the end" \
    "$(echo "$mask" | awk -v s="$start" 'BEGIN{bad=0} {if ((NR<=s && $1!=0) || (NR>s && $1!=1)) bad++} END{print bad}')" "0"
./data show "$TMP/sel.bin" --text --tokenizer $TOK >"$TMP/show.txt"
expect_eq "show --text: targets marked from <|im_start|>think to the final <|im_end|>" \
    "$(head -1 "$TMP/show.txt" | grep -c 'assistant\\n⟦<|im_start|>think\\n.*<|im_start|>answer\\n.*<|im_end|>\\n⟧"}$')" "1"
./data tokenize "$TMP/sel.jsonl" --tokenizer $TOK --out "$TMP/short.bin" --block-size 120 >"$TMP/short.out" 2>/dev/null
expect_eq "tokenize --block-size: truncated samples counted" \
    "$(grep -oE '^truncated [0-9]+ of 100 samples at 120' "$TMP/short.out" | awk '{print ($2 > 0)}')" "1"
expect_eq "tokenize --block-size: the longest sequence is exactly the block" \
    "$(./data show "$TMP/short.bin" | sed 's/.*"ids": \[\([^]]*\)\].*/\1/' | awk -F', ' '{if (NF > m) m = NF} END{print m}')" "120"
printf '%s\n' '{"question": "q", "solution": null, "gemini_thinking_trajectory": "g", "gemini_attempt": "Answer: 1", "deepseek_thinking_trajectory": "dd", "deepseek_attempt": "2"}' >"$TMP/s11.jsonl"
./data tokenize "$TMP/s11.jsonl" --tokenizer $TOK --traces deepseek --out "$TMP/s11.bin" >/dev/null
expect_eq "tokenize --traces deepseek: s1K-1.1 schema" "$(./data show "$TMP/s11.bin" --text --tokenizer $TOK | grep -c 'think\\ndd\\n<|im_start|>answer\\nAnswer: 2')" "1"

# --- render: the same texts as plain text, e.g. the corpus of the demo's small tokenizer
./data render "$TMP/sel.jsonl" --out "$TMP/sel.txt" >/dev/null
expect_eq "render: one training text per row" "$(grep -c '^<|im_start|>system$' "$TMP/sel.txt")" "100"
expect_eq "render: the s1 layout" "$(head -c 200 "$TMP/sel.txt" | sed -n 3,4p)" "<|im_start|>user
Find the sum of 7192 and 6446 in base ten.<|im_end|>"
if [ -x ./tokenizer ]; then
    ./tokenizer train --vocab-size 400 --out "$TMP/smalltok" "$TMP/sel.txt" 2>/dev/null
    ./data tokenize "$TMP/sel.jsonl" --tokenizer "$TMP/smalltok" --out "$TMP/small.bin" >/dev/null
    expect_eq "render -> ./tokenizer train -> tokenize: the mask starts after the template" \
        "$(./data show "$TMP/small.bin" --text --tokenizer "$TMP/smalltok" | grep -c '<|im_end|>\\n<|im_start|>assistant\\n⟦<|im_start|>think\\n')" "100"
fi

# --- bad input: one line "file:line: reason", non-zero exit, no output file
head -2 "$POOL" >"$TMP/bad.jsonl"; echo '{"question": "x", ' >>"$TMP/bad.jsonl"
expect_error "select: malformed JSON line" "bad.jsonl:3: invalid JSON: col [0-9]+: " ./data select "$TMP/bad.jsonl" --out "$TMP/o.jsonl"
expect_eq "select: no output after an error" "$(ls "$TMP"/o.jsonl* 2>/dev/null | wc -l)" "0"
sed -n 1p "$POOL" | sed 's/"domain": "[a-z ]*", //' >"$TMP/nodomain.jsonl"
expect_error "select: missing field" 'nodomain.jsonl:1: missing field "domain"' ./data select "$TMP/nodomain.jsonl" --out "$TMP/o.jsonl"
sed -n 1p "$POOL" | sed 's/"isqwen7bcorrect": [a-z]*/"isqwen7bcorrect": "yes"/' >"$TMP/badtype.jsonl"
expect_error "select: wrong type" 'badtype.jsonl:1: field "isqwen7bcorrect": expected true, false or null, got string' \
    ./data select "$TMP/badtype.jsonl" --out "$TMP/o.jsonl"
sed -n 1p "$POOL" | sed 's/"gemini_length": [0-9]*, //' >"$TMP/nolen.jsonl"
expect_error "select: gemini_length missing and no tokenizer" 'nolen.jsonl:1: gemini_length is missing; pass --tokenizer' \
    ./data select "$TMP/nolen.jsonl" --n 1 --out "$TMP/o.jsonl"
echo '{"question": "q", "domain": "Algebra", "source_type": "x", "isqwen7bcorrect": false, "isqwen32bcorrect": false, "isgeminicorrect": true, "thinking_trajectories": ["Hello world", "not counted"], "attempt": "a"}' >"$TMP/len.jsonl"
./data select "$TMP/len.jsonl" --n 1 --tokenizer $TOK --out "$TMP/len.out" >/dev/null
expect_eq "select --tokenizer: gemini_length = Qwen tokens of the first trajectory ('Hello world' = 9707 1879)" \
    "$(grep -oE '^  selected +n +1 +total +[0-9]+' "$TMP/len.out.report.txt" | awk '{print $NF}')" "2"
expect_eq "select --tokenizer: a missing gemini_length is counted with the tokenizer" \
    "$(./data select "$TMP/nolen.jsonl" --n 1 --mode random --tokenizer $TOK --out "$TMP/len.jsonl" | grep -c '^counted the trace tokens of 1 rows')" "1"
printf '\xff\n' >>"$TMP/badtype.jsonl"
expect_error "select: non-UTF-8 byte" "badtype.jsonl:1: " ./data select "$TMP/badtype.jsonl" --out "$TMP/o.jsonl"
{ cat "$TMP/bad.jsonl"; cat "$TMP/nodomain.jsonl"; printf '[1]\n\xff\n'; sed -n 5,40p "$POOL"; } >"$TMP/mixed.jsonl"
./data select "$TMP/mixed.jsonl" --skip-bad --n 5 --out "$TMP/skip.jsonl" >"$TMP/skip.out" 2>"$TMP/skip.err"
expect_eq "select --skip-bad: bad lines skipped and counted" "$(grep -c '^warning: skipping' "$TMP/skip.err"), $(grep -o 'skipped [0-9]* bad lines' "$TMP/skip.err")" "4, skipped 4 bad lines"
expect_eq "select --skip-bad: the good lines are used" "$(head -1 "$TMP/skip.out")" "na: 38 -> 36"
expect_error "select: --n larger than what survives" "only 257 questions survive the filters, fewer than --n 1000" \
    ./data select "$POOL" --eval "$EVAL" --out "$TMP/o.jsonl"
echo '{"text": "no question here"}' >"$TMP/badeval.jsonl"
expect_error "select: eval file without question" 'badeval.jsonl:1: missing field "question" \(or "problem"\)' \
    ./data select "$POOL" --eval "$TMP/badeval.jsonl" --out "$TMP/o.jsonl"
expect_error "select: unknown mode" '--mode: expected s1, random, diverse or longest' ./data select "$POOL" --mode best --out "$TMP/o.jsonl"
expect_error "select: missing --out" 'select needs POOL.jsonl and --out' ./data select "$POOL"
sed -n 1p "$POOL" | sed 's/"thinking_trajectories": \[[^]]*\]/"thinking_trajectories": null/' >"$TMP/notrace.jsonl"
expect_error "tokenize: a row without a trace" 'notrace.jsonl:1: no thinking trace or attempt' \
    ./data tokenize "$TMP/notrace.jsonl" --tokenizer $TOK --out "$TMP/o.bin"
{ sed -n 1p "$POOL"; echo '{"question": "q", "thinking_trajectories": ["t"]}'; } >"$TMP/noattempt.jsonl"
expect_error "tokenize: missing attempt" 'noattempt.jsonl:2: missing field "attempt"' \
    ./data tokenize "$TMP/noattempt.jsonl" --tokenizer $TOK --out "$TMP/o.bin"
expect_eq "tokenize: no shard after an error" "$(ls "$TMP"/o.bin* 2>/dev/null | wc -l)" "0"
head -c 100 "$TMP/sel.bin" >"$TMP/cut.bin"
expect_error "show: truncated shard" 'cut.bin: truncated or corrupt shard' ./data show "$TMP/cut.bin"
expect_error "show --text needs a tokenizer" 'show --text needs --tokenizer DIR' ./data show "$TMP/sel.bin" --text
expect_error "unknown command" 'unknown command "frobnicate"' ./data frobnicate
expect_eq "--help: usage on stdout, exit 0" "$(./data select --help | grep -c '^  ./data select POOL.jsonl'; echo "rc=${PIPESTATUS[0]}")" "1
rc=0"
expect_error "select: absurd --n" '--n must be between 1 and 1000000000' ./data select "$POOL" --n 99999999999 --out "$TMP/o.jsonl"
# ---- ./data bench: the benchmark files as s1's harness tasks prompt them. The expected files come
# from scripts/gen_bench_fixtures.py, which restates s1's task code in CPython (GPQA: random.shuffle)
B=tests/fixtures/bench
for k in aime24 aime25 math500; do
    ./data bench $k $B/$k.jsonl --out "$TMP/$k.jsonl" >/dev/null
    expect_ok "bench $k: the prompts and answers s1's task builds" cmp "$TMP/$k.jsonl" $B/$k.expected.jsonl
done
./data bench gpqa $B/gpqa_diamond.csv --out "$TMP/gpqa.jsonl" >/dev/null
expect_ok "bench gpqa: CPython's shuffle after random.seed(1234) (the default)" cmp "$TMP/gpqa.jsonl" $B/gpqa.seed1234.expected.jsonl
./data bench gpqa $B/gpqa_diamond.csv --seed 0 --out "$TMP/gpqa0.jsonl" >/dev/null
expect_ok "bench gpqa --seed 0: lm-eval's own seed" cmp "$TMP/gpqa0.jsonl" $B/gpqa.seed0.expected.jsonl
printf 'Question,Correct Answer\n"open,x\n' >"$TMP/bad.csv"
expect_error "bench: an unclosed quote names the file and line" "bad.csv:2: a quoted field is not closed" ./data bench gpqa "$TMP/bad.csv" --out "$TMP/x.jsonl"
printf 'Question,Correct Answer\nq,a\n' >"$TMP/cols.csv"
expect_error "bench gpqa: a missing column" "cols.csv: row 1 has no \"Incorrect Answer 1\" column" ./data bench gpqa "$TMP/cols.csv" --out "$TMP/x.jsonl"
printf '{"problem": "p"}\n' >"$TMP/noans.jsonl"
expect_error "bench aime24: a row without an answer" "noans.jsonl: row 1 has no \"answer\"" ./data bench aime24 "$TMP/noans.jsonl" --out "$TMP/x.jsonl"
printf 'PAR1xxxx' >"$TMP/x.parquet"
expect_error "bench: Parquet is refused with a way out" "a Parquet file; export it as JSONL" ./data bench math500 "$TMP/x.parquet" --out "$TMP/x.jsonl"
expect_error "bench: an unknown benchmark" "unknown benchmark \"mmlu\"" ./data bench mmlu $B/aime24.jsonl --out "$TMP/x.jsonl"

summary
