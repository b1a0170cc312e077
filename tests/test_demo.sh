# The shortened demo (./s1 demo --quick) end to end: every stage must leave its
# outputs; then budget forcing through the real CPU decoder on the model it
# trained: thinking never exceeds B, a forced exit comes at exactly B tokens,
# Wait counts stay within N, seeds reproduce, threads do not change results,
# and bad input gets a one-line error. Runs in well under 2 minutes on 2 cores.
. tests/lib.sh
D=$TMP/not/yet/there   # the demo creates missing folders

./s1 demo --quick --out "$D" >"$TMP/demo.log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then pass "s1 demo --quick runs to the end"; else fail "s1 demo --quick runs to the end" "exit $rc: $(tail -5 "$TMP/demo.log")"; fi

for f in pool.jsonl heldout.jsonl train.jsonl corpus.txt tokenizer/tokenizer.json train.shard config.json \
         model/model.safetensors model/config.json train.log loss.svg eval.jsonl scaling.md scaling.svg; do
    if [ -s "$D/$f" ]; then pass "demo stage output $f"; else fail "demo stage output $f" "missing or empty"; fi
done
# the pool's traces: every one opens with a glance; every one that checks after "Wait" ends right
expect_eq "demo pool: every trace opens with a glance" \
    "$(grep -v '"thinking_trajectories": null' "$D/pool.jsonl" | grep -vc '"thinking_trajectories": \["At a glance, ')" "0"
checked=$(grep '"thinking_trajectories": \["At a glance, [^"]*\\nWait, let me ' "$D/pool.jsonl" | grep -v '"isgeminicorrect": null')
expect_ok "demo pool: some traces check after Wait" test "$(echo "$checked" | grep -c .)" -gt 100
expect_eq "demo pool: every trace that checks after Wait is marked correct" "$(echo "$checked" | grep -vc '"isgeminicorrect": true')" "0"
expect_eq "demo prints all 9 stage headers" "$(grep -cE '^\[[1-9]/9\]' "$TMP/demo.log")" "9"
expect_eq "every stage command is printed for re-running" "$(grep -c '^\$ ' "$TMP/demo.log")" "8"
expect_eq "the scaling table has one row per setting (2 budgets x 2 Wait counts)" \
    "$(grep -cE '^\| (16|auto \([0-9]+\)) \| [01] \|' "$D/scaling.md")" "4"
expect_eq "eval.jsonl has one line per problem and setting" "$(wc -l <"$D/eval.jsonl")" "$((12 * 4))"
steps=$(grep -c '^step ' "$D/train.log")
points=$(grep -o '<circle' "$D/loss.svg" | wc -l)
expect_eq "the loss plot has one point per training step" "$points" "$steps"
# Control reads s1's thinking statistic (the uncut text re-tokenized), which a Wait round can carry past B
expect_eq "Control/Scaling/Performance per curve and overall" \
    "$(grep -cE '^\| (no forcing \(cap only\), all budgets|Wait x1, all budgets|all settings) \| [0-9]+% \| -?[0-9.]+ \| [0-9.]+% \|$' "$D/scaling.md")" "3"
expect_eq "the table has s1's thinking statistic and ours" \
    "$(grep -c '| mean thinking tokens (s1) | mean thinking ids (ours) |' "$D/scaling.md")" "1"

# budget forcing through the real decoder, on the demo's model
M="--model $D/model --tokenizer $D/tokenizer --prompts $D/heldout.jsonl"
check_jsonl() {   # check_jsonl NAME FILE B N: every line within the budget, forced exits at exactly B, waits <= N
    local name=$1 file=$2 B=$3 N=$4
    local bad
    bad=$(awk -v B="$B" -v N="$N" '
        { t = $0; sub(/.*"thinking_ids": /, "", t); t += 0
          w = $0; sub(/.*"waits": /, "", w); w += 0
          f = ($0 ~ /"forced_exit": true/)
          if (t > B || w > N || (f && t != B) || (f && $0 !~ /<\|im_start\|>answer\\nFinal Answer:/)) print NR }' "$file")
    local lines; lines=$(wc -l <"$file")
    if [ -z "$bad" ] && [ "$lines" -eq 12 ]; then pass "$name"; else fail "$name" "bad lines: $bad (of $lines)"; fi
}
./s1 sample $M --max-thinking 7 --out "$TMP/b7.jsonl" 2>/dev/null
check_jsonl "sample: B=7 caps thinking at 7, forced exits at exactly 7 with Final Answer" "$TMP/b7.jsonl" 7 0
expect_eq "sample: a model that never stops by itself is cut at B every time" \
    "$(grep -c '"thinking_ids": 7, "waits": 0, "forced_exit": true' "$TMP/b7.jsonl")" \
    "$(grep -c '"forced_exit": true' "$TMP/b7.jsonl")"
./s1 sample $M --max-thinking 40 --wait 3 --out "$TMP/w3.jsonl" 2>/dev/null
check_jsonl "sample: B=40 with Wait x3 stays within B and 3 Waits" "$TMP/w3.jsonl" 40 3
./s1 sample $M --max-thinking 12 --wait 2 --readme-variant --out "$TMP/readme.jsonl" 2>/dev/null
expect_eq "sample --readme-variant: no forced delimiter, no Final Answer" \
    "$(grep -c '"forced_exit": false' "$TMP/readme.jsonl") $(grep -c 'Final Answer:' "$TMP/readme.jsonl")" "12 0"
./s1 sample $M --max-gen-toks 300 --out "$TMP/auto.jsonl" 2>/dev/null
# auto = max_gen_toks - longest prompt - 2 - len(forced-exit delimiter) - 100; eval ran at 512, so here it is 212 less
auto300=$(( $(grep -o 'auto ([0-9]*)' "$D/scaling.md" | head -1 | tr -dc 0-9) - 212 ))
check_jsonl "sample: the auto budget (max_gen_toks - longest prompt - delimiters - 100) caps thinking" "$TMP/auto.jsonl" "$auto300" 0
./s1 sample $M --max-thinking 20 --temperature 1 --top-p 0.9 --seed 7 --out "$TMP/s7a.jsonl" 2>/dev/null
./s1 sample $M --max-thinking 20 --temperature 1 --top-p 0.9 --seed 7 --threads 1 --out "$TMP/s7b.jsonl" 2>/dev/null
./s1 sample $M --max-thinking 20 --temperature 1 --top-p 0.9 --seed 8 --out "$TMP/s8.jsonl" 2>/dev/null
if cmp -s "$TMP/s7a.jsonl" "$TMP/s7b.jsonl"; then pass "sample: same seed, same samples (2 threads vs 1)"; else fail "sample: same seed, same samples (2 threads vs 1)"; fi
if ! cmp -s "$TMP/s7a.jsonl" "$TMP/s8.jsonl"; then pass "sample: another seed, other samples"; else fail "sample: another seed, other samples"; fi
./s1 eval --model "$D/model" --tokenizer "$D/tokenizer" --problems "$D/heldout.jsonl" --budgets 16 --waits 1 --threads 1 --out "$TMP/e1" >/dev/null 2>&1
./s1 eval --model "$D/model" --tokenizer "$D/tokenizer" --problems "$D/heldout.jsonl" --budgets 16 --waits 1 --threads 2 --out "$TMP/e2" >/dev/null 2>&1
if [ -s "$TMP/e1/eval.jsonl" ] && cmp -s "$TMP/e1/eval.jsonl" "$TMP/e2/eval.jsonl"; then pass "eval: results do not depend on the thread count"
else fail "eval: results do not depend on the thread count"; fi

# several --problems files are one batch: 'auto' comes from the longest prompt of all of them
# (vllm_causallms.py:264 over every request lm-eval batches), so adding a file with a longer
# prompt lowers the budget of the others to that file's own
long_q=$(printf 'What is 1+1? %.0s' $(seq 1 12))
printf '{"question": "%s", "answer": "2"}\n' "$long_q" >"$TMP/long.jsonl"
E="./s1 eval --model $D/model --tokenizer $D/tokenizer --budgets auto --max-gen-toks 512 --threads 2"
auto_of() { "$@" 2>/dev/null | grep -o 'auto ([0-9]*)' | head -1 | tr -dc 0-9; }
a_held=$(auto_of $E --problems "$D/heldout.jsonl"); a_long=$(auto_of $E --problems "$TMP/long.jsonl")
a_both=$(auto_of $E --problems "$D/heldout.jsonl" --problems "$TMP/long.jsonl")
expect_ok "eval: the long file's budget is smaller ($a_long < $a_held)" test "$a_long" -lt "$a_held"
expect_eq "eval: two --problems files get the auto budget of the longest prompt of both" "$a_both" "$a_long"
expect_eq "eval: one accuracy column per --problems file" \
    "$($E --problems "$D/heldout.jsonl" --problems "$TMP/long.jsonl" 2>/dev/null | grep -c "^| setting | $D/heldout.jsonl (12) | $TMP/long.jsonl (1) |$")" "1"
# the modes of issue 12 item 9: rejection sampling, control prompts, maj@k / cov@k
$E --problems "$D/heldout.jsonl" --budgets 16 --methods forcing,rejection --max-tries 3 --controls none,token:8 \
    --samples 4 --temperature 1 --out "$TMP/modes" >"$TMP/modes.out" 2>&1
expect_eq "eval modes: 2 methods x 2 controls x 12 problems x 4 samples" "$(wc -l <"$TMP/modes/eval.jsonl")" "192"
expect_eq "eval modes: rejection sampling stops at --max-tries" "$(grep '"method": "rejection"' "$TMP/modes/eval.jsonl" | grep -o '"tries": [0-9]*' | sort -u | awk '$2 > 3' | wc -l)" "0"
expect_eq "eval modes: the table has maj@2, cov@2, maj@4, cov@4" "$(grep -c '| maj@2 | cov@2 | maj@4 | cov@4 |' "$TMP/modes.out")" "1"
expect_ok "eval modes: a control prompt lengthens the prompt" \
    test "$(grep '"control": "token:8"' "$TMP/modes/eval.jsonl" | head -1 | grep -o '"prompt_tokens": [0-9]*' | tr -dc 0-9)" \
    -gt "$(grep '"control": "none"' "$TMP/modes/eval.jsonl" | head -1 | grep -o '"prompt_tokens": [0-9]*' | tr -dc 0-9)"
expect_error "eval: a bare token control needs a numeric budget" "control 'token' .* needs a number" \
    $E --problems "$D/heldout.jsonl" --controls token
expect_error "eval: an unknown control" "--controls: 'tokens:5'" $E --problems "$D/heldout.jsonl" --controls tokens:5
expect_error "sample: --think-stops takes vllm or ids" "--think-stops: 'x'" ./s1 sample $M --think-stops x

# errors: one line, non-zero exit, no crash
printf '{"question": "ok"}\n{"question": \n' >"$TMP/bad.jsonl"
expect_error "sample: malformed prompts name file:line" "bad.jsonl:2" ./s1 sample $M --prompts "$TMP/bad.jsonl"
printf '{"prompt_text": "x"}\n' >"$TMP/nofield.jsonl"
expect_error "sample: a prompt without a question" "nofield.jsonl:1: no \"question\"" ./s1 sample --model "$D/model" --tokenizer "$D/tokenizer" --prompts "$TMP/nofield.jsonl"
printf '{"question": "What is 1+1?"}\n' >"$TMP/noanswer.jsonl"
expect_error "eval: problems without answers" "noanswer.jsonl:1: no \"answer\"" ./s1 eval --model "$D/model" --tokenizer "$D/tokenizer" --problems "$TMP/noanswer.jsonl"
expect_error "eval: a zero budget is refused" "--budgets" ./s1 eval --model "$D/model" --tokenizer "$D/tokenizer" --problems "$D/heldout.jsonl" --budgets 0
expect_error "sample: missing arguments" "required" ./s1 sample --model "$D/model"
expect_error "sample: a tokenizer larger than the model" "embedding rows" ./s1 sample --model tests/fixtures/qwen-tiny-tied --tokenizer "$D/tokenizer" --prompts "$D/heldout.jsonl"
expect_error "demo: unknown option" "unknown argument" ./s1 demo --bogus

# the shared headers stay plain C: they must also compile as C++17 (sample.cu's host code)
for h in sampler budget score svg; do
    printf '#include "common/%s.h"\nint main() { return 0; }\n' $h >"$TMP/h_$h.cpp"
    expect_ok "common/$h.h compiles as C++17" g++ -std=c++17 -Wall -Wextra -Werror -I. -fsyntax-only "$TMP/h_$h.cpp"
done
summary
