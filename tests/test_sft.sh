# tests/test_sft.sh: the GPU programs' command lines, run through the CUDA
# emulator (build/emu/sft, build/emu/sample: the same sources `make cuda` builds):
# sft loss against ./s1 loss on the HF fixtures; sft train against ./s1 train (the same
# flags, 3 steps from the same checkpoint, resume and determinism bit for bit); sample against ./s1 sample (the same
# flags, the same JSON lines; common/generate.h), raw-id continuation, help and one-line
# errors for bad input.
. tests/lib.sh
SFT=${SFT:-build/emu/sft}      # tests/run_gpu.sh: build/cuda/sft
SAMPLE=${SAMPLE:-build/emu/sample}
S1=./s1
GQA=tests/fixtures/qwen-tiny-gqa
TIED=tests/fixtures/qwen-tiny-tied

make_shard $GQA "$TMP/gqa.shard"
make_shard $TIED "$TMP/tied.shard"

# ---- help
expect_ok "sft --help" $SFT --help
expect_eq "sft --help lists the subcommands train and loss" "$($SFT --help | grep -cE '^  (train|loss) ')" "2"
expect_ok "sft train --help" $SFT train --help
expect_ok "sft loss --help" $SFT loss --help
expect_ok "sample --help" $SAMPLE --help

# ---- loss == ./s1 loss. The GPU path holds bf16 weights and activations; the
# bound is the one derived in tests/emu_kernels.cu (2 * 4u * max|logit| >= 0.0219
# for these fixtures, u = 2^-8); measured differences are ~1e-4.
for f in $TIED $GQA; do
    name=${f#tests/fixtures/qwen-tiny-}
    got=$($SFT loss --model $f --data "$TMP/$name.shard" 2>/dev/null | tail -n 1 | sed 's/^loss: //')
    want=$($S1 loss --model $f --data "$TMP/$name.shard" --threads 1 2>/dev/null | tail -n 1 | sed 's/^loss: //')
    ok=$(awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; print (a != "" && d <= 0.02) ? "yes" : "no" }')
    expect_eq "sft loss $got == ./s1 loss $want within 0.02 ($name)" "$ok" "yes"
done
got2=$($SFT loss --model $GQA --data "$TMP/gqa.shard" --chunk-rows 3 2>/dev/null | tail -n 1)
got1=$($SFT loss --model $GQA --data "$TMP/gqa.shard" 2>/dev/null | tail -n 1)
expect_eq "the LM-head chunk size does not change the loss" "$got2" "$got1"

# ---- raw token ids (--prompt-ids): continuation without a tokenizer
out=$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-gen-toks 10 2>/dev/null)
expect_eq "sample --prompt-ids prints 10 ids below the vocabulary" "$(echo "$out" | tr ' ' '\n' | awk '$1 < 317' | wc -l)" "10"
expect_eq "sample --prompt-ids is deterministic" "$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-gen-toks 10 2>/dev/null)" "$out"
expect_eq "temperature 0 is greedy" "$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-gen-toks 10 --temperature 0 --seed 9 2>/dev/null)" "$out"
expect_eq "the model's 128 positions end a continuation: 124 ids after 4" \
    "$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-gen-toks 1000 2>/dev/null | wc -w)" "124"

# ---- sample == ./s1 sample: the same prompts file, the same flags, the same JSON lines.
# A random model whose embedding covers the trained test tokenizer (771 ids; made by ./s1
# from a config, learning rate 0 so the weights stay random).
TOK=tests/fixtures/tok_trained
cat >"$TMP/bf.json" <<'JSON'
{"model_type": "qwen2", "hidden_act": "silu", "vocab_size": 800, "hidden_size": 32, "intermediate_size": 48,
 "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
 "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true}
JSON
$S1 train --init-config "$TMP/bf.json" --data "$TMP/gqa.shard" --out "$TMP/bf" --epochs 1 --batch 4 --lr 0 --threads 1 >/dev/null 2>&1
printf '{"question": "What is 2+2?"}\n{"question": "Hi"}\n\n{"problem": "Name a prime.", "answer": "7"}\n' >"$TMP/prompts.jsonl"
P="--model $TMP/bf --tokenizer $TOK --prompts $TMP/prompts.jsonl"
# What must agree whatever bf16 vs fp32 rounding picks: the fields in order, the index and
# the prompt tokens, the budget (thinking <= B, a forced exit at exactly B followed by
# "Final Answer:"), waits <= N. The tokens themselves may part after a near-tie (the GPU
# rounds to bf16, s1.c is fp32); that the logits agree within 4u max|logit| at every step of
# budget forcing is proven by the lockstep test, tests/emu_kernels_budget.cu.
structure() {   # structure FILE B N: per line the fields, values elided but index and prompt_tokens; "bad" on a broken rule
    # (EXACT=0: a full context may force the exit before B)
    sed -E 's/"(text|answer)": "([^"\\]|\\.)*"/"\1": S/g' "$1" | awk -v B="$2" -v N="$3" -v X="${EXACT:-1}" '
        { line = $0; t = $0; sub(/.*"thinking_ids": /, "", t); t += 0
          w = $0; sub(/.*"waits": /, "", w); w += 0
          f = ($0 ~ /"forced_exit": true/)
          if (t > B || w > N || (X && f && t != B)) print "bad:" NR
          sub(/"thinking_tokens": [0-9]+/, "\"thinking_tokens\": T", line); sub(/"thinking_ids": [0-9]+/, "\"thinking_ids\": I", line)
          sub(/"waits": [0-9]+/, "\"waits\": W", line)
          sub(/"forced_exit": (true|false)/, "\"forced_exit\": F", line)
          sub(/"thinking_stop": "(stop|length)"/, "\"thinking_stop\": R", line); sub(/"stop": "(stop|length)"/, "\"stop\": R", line)
          sub(/, "tries": [0-9]+, "capped": (true|false)/, "", line)
          print line }'
}
same_as_s1() {   # same_as_s1 NAME B N FLAGS...: both samplers on the prompts file
    local name=$1 B=$2 N=$3; shift 3
    $S1 sample $P "$@" >"$TMP/cpu.jsonl" 2>"$TMP/cpu.err"
    $SAMPLE $P "$@" >"$TMP/gpu.jsonl" 2>"$TMP/gpu.err"
    local want; want=$(structure "$TMP/cpu.jsonl" "$B" "$N")
    local got; got=$(structure "$TMP/gpu.jsonl" "$B" "$N")
    if [ "$(wc -l <"$TMP/gpu.jsonl")" -eq 3 ] && [ -n "$want" ] && [ "$got" = "$want" ] && ! echo "$got" | grep -q '^bad:' \
        && [ "$(grep -c 'Final Answer:' "$TMP/gpu.jsonl")" = "$(grep -c '"forced_exit": true' "$TMP/gpu.jsonl")" ]; then
        pass "sample == ./s1 sample: $name"
    else fail "sample == ./s1 sample: $name" "gpu: $(head -c 300 "$TMP/gpu.jsonl" "$TMP/gpu.err") cpu: $(head -c 300 "$TMP/cpu.jsonl" "$TMP/cpu.err")"; fi
    echo "note: $name: $(paste -d '\n' "$TMP/cpu.jsonl" "$TMP/gpu.jsonl" | paste - - | awk -F '\t' '$1 == $2' | wc -l) of 3 lines byte-identical"
}
same_as_s1 "greedy, B=5, Wait x1" 5 1 --max-thinking 5 --wait 1 --max-gen-toks 8 --max-context 200
# auto = 200 - longest prompt (61) - 2 - 12 (the delimiters) - 100 = 25
same_as_s1 "greedy, auto budget (max_gen_toks 200: B = 25)" 25 0 --max-gen-toks 200
same_as_s1 "README variant, B=9, Wait x2" 9 2 --max-thinking 9 --wait 2 --readme-variant --max-gen-toks 10 --max-context 100
EXACT=0 same_as_s1 "context limit 90 under B=30" 30 2 --max-thinking 30 --wait 2 --max-gen-toks 10 --max-context 90
# a high temperature makes the random model write the end-of-thinking ids now and then:
# the Wait path and a thinking that stops by itself, through both command lines
same_as_s1 "temperature 10, B=300, Wait x2, --ignore-str Hmm" 300 2 --max-thinking 300 --wait 2 --ignore-str Hmm --temperature 10 --top-p 0.95 --seed 2 --max-gen-toks 8 --max-context 512
expect_eq "the Wait path ran (a Wait inserted in both)" "$(grep -c '"waits": [12]' "$TMP/cpu.jsonl" "$TMP/gpu.jsonl" | awk -F: '$2 > 0' | wc -l)" "2"
same_as_s1 "temperature 10, B=300, no Wait" 300 0 --max-thinking 300 --temperature 10 --seed 1 --max-gen-toks 8 --max-context 512
expect_eq "a thinking that stopped by itself (no forced exit) in both" \
    "$(grep -c '"forced_exit": false, "thinking_stop": "stop"' "$TMP/cpu.jsonl" "$TMP/gpu.jsonl" | awk -F: '$2 > 0' | wc -l)" "2"
# the auto budget is resolved the same way: longest prompt 61 tokens, 200 - 61 - 2 - 12 - 100 = 25 here
$SAMPLE $P --max-gen-toks 200 >"$TMP/auto.jsonl" 2>/dev/null
expect_eq "auto budget: the thinking of every prompt is cut at the same B as ./s1's" \
    "$(grep -o '"thinking_ids": [0-9]*' "$TMP/auto.jsonl" | sort -u)" "$($S1 sample $P --max-gen-toks 200 2>/dev/null | grep -o '"thinking_ids": [0-9]*' | sort -u)"
B1="--max-thinking 5 --wait 1 --max-gen-toks 8 --max-context 200"
$SAMPLE $P $B1 --out "$TMP/out.jsonl" 2>"$TMP/out.err"
expect_eq "sample --out writes what stdout shows" "$(cat "$TMP/out.jsonl")" "$($SAMPLE $P $B1 2>/dev/null)"
expect_eq "sample --out reports progress on stderr" "$(tail -n 1 "$TMP/out.err" | grep -c '^generate: 3/3')" "1"
t1=$($SAMPLE $P --max-thinking 12 --temperature 1 --seed 7 --max-gen-toks 8 --max-context 200 2>/dev/null)
expect_eq "temperature sampling is reproducible with a seed" "$($SAMPLE $P --max-thinking 12 --temperature 1 --seed 7 --max-gen-toks 8 --max-context 200 2>/dev/null)" "$t1"
t2=$($SAMPLE $P --max-thinking 12 --temperature 1 --seed 8 --max-gen-toks 8 --max-context 200 2>/dev/null)
expect_eq "another seed samples another text (a random model: ~771 near-equal choices per token)" "$([ "$t1" != "$t2" ] && echo differ)" "differ"

# ---- --batch B: up to B prompts decode together, one gpu_decode_batch() step for their single tokens,
# each with its own KV cache, budget forcing (Waits, the cut to B and its rewind, the forced exit) and
# seed + i, and a prompt that ends hands its place to the next. Every line must be the one the prompt
# gets alone, in the prompts' order: bit for bit in the emulator, whose GEMM sums each output in an order
# that does not depend on the rows (tests/emu_kernels_batch.cu). On a GPU cuBLAS may sum B rows in another
# order than one, so the tokens may part after a near-tie: there the lines must agree as ./s1's do above
# (structure()), and the checks of particular values are the emulator's.
# Five prompts of different lengths, at batch 2 and 3 (places refilled), 5 and 8 (more than the prompts).
case $SAMPLE in build/emu/*) emulated=1 ;; *) emulated=0 ;; esac
printf '{"question": "What is 2+2?"}\n{"question": "Hi"}\n{"problem": "Name a prime.", "answer": "7"}\n{"question": "Why is the sky blue? Answer in one word."}\n{"question": "x"}\n' >"$TMP/prompts5.jsonl"
P5="--tokenizer $TOK --prompts $TMP/prompts5.jsonl"
same_batched() {   # same_batched NAME MODEL B N FLAGS...: --batch 2, 3, 5, 8 write the lines of --batch 1
    local name=$1 model=$2 B=$3 N=$4; shift 4
    $SAMPLE --model "$model" $P5 "$@" >"$TMP/batch1.jsonl" 2>/dev/null
    local bad="" b
    for b in 2 3 5 8; do
        $SAMPLE --model "$model" $P5 "$@" --batch $b --out "$TMP/batch$b.jsonl" 2>"$TMP/batch$b.err"
        if [ $emulated = 1 ]; then cmp -s "$TMP/batch1.jsonl" "$TMP/batch$b.jsonl" || bad="$bad $b"
        else [ "$(structure "$TMP/batch1.jsonl" "$B" "$N")" = "$(structure "$TMP/batch$b.jsonl" "$B" "$N")" ] || bad="$bad $b"; fi
    done
    if [ "$(wc -l <"$TMP/batch1.jsonl")" -eq 5 ] && [ -z "$bad" ] && ! structure "$TMP/batch1.jsonl" "$B" "$N" | grep -q '^bad:'; then
        pass "sample --batch 2, 3, 5, 8 == --batch 1: $name"
    else fail "sample --batch 2, 3, 5, 8 == --batch 1: $name" "differs at --batch$bad: $(head -c 300 "$TMP/batch1.jsonl")"; fi
}
# greedy on an untied random model (the tied one repeats each prompt's last token whatever the prompt)
sed 's/"tie_word_embeddings": true/"tie_word_embeddings": false/' "$TMP/bf.json" >"$TMP/bfu.json"
$S1 train --init-config "$TMP/bfu.json" --data "$TMP/gqa.shard" --out "$TMP/bfu" --epochs 1 --batch 4 --lr 0 --threads 1 >/dev/null 2>&1
same_batched "greedy, untied, B=5, Wait x1" "$TMP/bfu" 5 1 --max-thinking 5 --wait 1 --max-gen-toks 8 --max-context 200
[ $emulated = 1 ] && expect_eq "greedy, untied: the answers differ between prompts" "$(grep -o '"answer": "[^"]*"' "$TMP/batch1.jsonl" | sort -u | wc -l)" "2"
same_batched "README variant, B=9, Wait x2, temperature 10" "$TMP/bf" 9 2 --max-thinking 9 --wait 2 --readme-variant --temperature 10 --seed 5 --max-gen-toks 10 --max-context 100
same_batched "temperature 10, top-p 0.95, B=300, Wait x2" "$TMP/bf" 300 2 --max-thinking 300 --wait 2 --ignore-str Hmm --temperature 10 --top-p 0.95 --seed 2 --max-gen-toks 8 --max-context 512
# in that run prompt 2 stops thinking by itself at 140 ids while the others run to the cut at 300,
# Waits differ, and each line is still its own prompt's, in order
[ $emulated = 1 ] && expect_eq "--batch: prompts that end at different steps (thinking ids per line)" \
    "$(grep -o '"thinking_ids": [0-9]*, "waits": [0-9]*' "$TMP/batch5.jsonl" | sed -E 's/[^0-9]+([0-9]+)[^0-9]+([0-9]+)/\1 \2/' | tr '\n' ';')" \
    "300 2;300 1;140 2;300 2;300 1;"
[ $emulated = 1 ] && expect_eq "--batch 5: the five decoded together, more than 4 sequences a step on average" \
    "$(awk '/decode steps,/ { print ($5 > 4) ? "yes" : $5 }' "$TMP/batch5.err")" "yes"
expect_eq "--batch 8 over 5 prompts: the same steps as --batch 5" \
    "$(sed 's/--batch 8/--batch 5/' "$TMP/batch8.err" | tail -n 1)" "$(tail -n 1 "$TMP/batch5.err")"
expect_eq "--batch 3 writes the progress of every prompt" "$(grep -c '^generate: 5/5' "$TMP/batch3.err")" "1"
# rejection sampling rewinds each rejected try to the prompt and draws again from the logits after it
same_batched "rejection sampling, B=150, 4 tries, temperature 10" "$TMP/bf" 150 0 --max-thinking 150 --rejection 4 --temperature 10 --seed 3 --max-gen-toks 8 --max-context 512
expect_eq "--rejection: tries after a rewind to the prompt (gpu_decoder_rewind() feeds the prompt's last id again)" \
    "$(grep -c '"tries": [2-4]' "$TMP/batch1.jsonl" | awk '{ print ($1 > 0) ? "yes" : $1 }')" "yes"
t3=$($SAMPLE --model "$TMP/bf" $P5 --max-thinking 12 --temperature 1 --seed 7 --max-gen-toks 8 --max-context 200 2>/dev/null | head -n 3)
[ $emulated = 1 ] && expect_eq "--batch: prompt i samples with seed + i whatever runs beside it (the first 3 of 5 = the 3-prompt file at --batch 3)" \
    "$t3" "$($SAMPLE $P --max-thinking 12 --temperature 1 --seed 7 --max-gen-toks 8 --max-context 200 --batch 3 2>/dev/null)"
expect_error "sample --batch 0" "--batch: '0' is not a positive integer" $SAMPLE --model "$TMP/bf" $P5 --batch 0
expect_error "sample --batch with --prompt-ids" "--prompt-ids continues raw ids" $SAMPLE --model $GQA --prompt-ids 5 --batch 2

# ---- one language: --help of both lists the same sampling flags. The only differences:
# ./s1's --threads (CPU cores), sample's --batch (prompts decoding together), --prompt-ids (raw ids, for models without a tokenizer) and
# sample's --plan with its --config, --context, --hbm-gbps (the decoder's time model), --attention (which kernels)
# and --graph (the decode step as a CUDA graph or kernel by kernel).
flags() { "$@" --help | grep -oE '^  --[a-z-]+' | sed 's/^  //'; }
expect_eq "sample --help and ./s1 sample --help: the same flags but --threads / --batch, --prompt-ids and --plan's" \
    "$(diff <(flags $S1 sample) <(flags $SAMPLE) | grep '^[<>]' | tr '\n' ' ')" "< --threads > --batch > --prompt-ids > --plan > --config > --context > --hbm-gbps > --attention > --graph "
expect_eq "sample --help lists the budget flags" "$(flags $SAMPLE | grep -cE '^--(max-thinking|wait|ignore-str|max-gen-toks|max-context|readme-variant|top-p)$')" "7"
printf '#define TOKENIZER_NO_MAIN\n#include "tokenizer.c"\n#include "common/generate.h"\nint main() { return 0; }\n' >"$TMP/h_generate.cpp"
expect_ok "common/generate.h compiles as C++17" g++ -std=c++17 -Wall -Wextra -Werror -I. -fsyntax-only "$TMP/h_generate.cpp"
cp "$TMP/h_generate.cpp" "$TMP/h_generate.c"
expect_ok "common/generate.h compiles as C" gcc -std=gnu11 -Wall -Wextra -Werror -I. -fsyntax-only "$TMP/h_generate.c"


# ---- sft train speaks ./s1 train's language: the same flags (common/train.h), then the GPU's own
expect_eq "sft train --help lists exactly ./s1 train's flags before its GPU-only ones" \
    "$(diff <(flags $S1 train) <($SFT train --help | sed '/^GPU only:/,$d' | grep -oE '^  --[a-z-]+' | sed 's/^  //') && echo same)" "same"
expect_eq "sft train --help: the GPU-only flags" \
    "$($SFT train --help | sed -n '/^GPU only:/,$p' | grep -oE '^  --[a-z-]+' | sed 's/^  //' | tr '\n' ' ')" \
    "--save-dtype --recompute --no-recompute --gpu-mem --peak-tflops --chunk-rows --overlap --balance --reduce-dtype --attention --nproc "

# ---- sft train == ./s1 train: 3 steps from the gqa fixture on its 4 sequences, 2 per step, one per
# micro-batch (accumulation), warmup 2 of 4 steps (step 1 has lr 0), clipping at 0.5 (the gradient norm
# is above it), weight decay 1.0 on weights and norms (norms decay by default). Per step: the same lr (one schedule), the loss
# within the forward bound (2 * 4u * max|logit| >= 0.0219 here, tests/emu_kernels.cu), the gradient norm
# within the gradient bound of tests/emu_kernels_train.cu (2 sqrt(18 L + 4) u = 5.9% at L = 3). The
# weights after 3 steps: tests/tool_ckpt_diff.c's bounds (|A - B| <= sum 2 lr_t C_t, derived from
# AdamW). A run that did not move would pass that bound; step 3's loss, taken after the step-2 update,
# would not (5.822 with lr 0 against 5.638: 8 times the bound).
RUN="--data $TMP/gqa.shard --batch 2 --epochs 2 --lr 1e-3 --warmup-ratio 0.5 --clip 0.5 --weight-decay 1.0"
$S1 train --model $GQA $RUN --stop-at 3 --out "$TMP/s1run" --threads 1 >"$TMP/s1.log" 2>&1
$SFT train --model $GQA $RUN --stop-at 3 --save-dtype f32 --out "$TMP/sftrun" >"$TMP/sft.log" 2>&1
expect_eq "sft train ran 3 steps" "$(grep -c '^step ' "$TMP/sft.log")" "3"
expect_eq "sft train logs loss, grad norm, lr, tokens/s, MFU, memory and ETA" \
    "$(grep -cE '^step 3/4 \| loss [0-9.]+ \| grad norm [0-9.]+ \| lr [0-9.e+-]+ \| [0-9]+ tokens/s \| MFU [0-9.]+% \| mem [0-9.]+ [MG]B \| ETA ' "$TMP/sft.log")" "1"
field() { grep '^step ' "$1" | sed -E "s/.*\| $2 ([^ |]+).*/\1/"; }
expect_eq "the same learning rate at every step" "$(field "$TMP/sft.log" lr | tr '\n' ' ')" "$(field "$TMP/s1.log" lr | tr '\n' ' ')"
expect_eq "clipping is exercised (a gradient norm above 0.5)" "$(field "$TMP/s1.log" 'grad norm' | awk '$1 > 0.5' | wc -l | tr -d ' ' | sed 's/^[1-9][0-9]*$/yes/')" "yes"
ok=$(paste <(field "$TMP/sft.log" loss) <(field "$TMP/s1.log" loss) <(field "$TMP/sft.log" 'grad norm') <(field "$TMP/s1.log" 'grad norm') |
     awk 'function abs(x) { return x < 0 ? -x : x } { if (abs($1 - $2) > 0.0219 || abs($3 - $4) > 0.059 * $4) bad = 1; n++ } END { print (n == 3 && !bad) ? "yes" : "no" }')
expect_eq "every step's loss and gradient norm match ./s1 train within their bounds" "$ok" "yes"
expect_ok "the weights after 3 steps match ./s1 train's within the AdamW bounds (tool_ckpt_diff)" \
    build/tests/tool_ckpt_diff $GQA "$TMP/s1run" "$TMP/sftrun" "$(field "$TMP/s1.log" lr | tr '\n' ',' | sed 's/,$//')"
echo "note: $(build/tests/tool_ckpt_diff $GQA "$TMP/s1run" "$TMP/sftrun" "$(field "$TMP/s1.log" lr | tr '\n' ',' | sed 's/,$//')" | tail -n 1)"
expect_ok "./s1 loss reads sft train's checkpoint" $S1 loss --model "$TMP/sftrun" --data "$TMP/gqa.shard" --threads 1

# ---- --loss-norm tokens (issue 12): every target token of a rank's window alike, 2 windows of 2 sequences, in
# micro-batches of 2 (the weights come from the whole step's data, common/train.h train_loss_weights()):
# the same loss and gradient norm as ./s1 train within the bounds above, and not those of the sequence mean
T="--model $GQA --data $TMP/gqa.shard --batch 4 --epochs 1 --lr 1e-3 --micro-batch 2"
$S1 train $T --loss-norm tokens --loss-ranks 2 --out "$TMP/s1tok" --threads 1 >"$TMP/s1tok.log" 2>&1
$S1 train $T --out "$TMP/s1seq" --threads 1 >"$TMP/s1seq.log" 2>&1
$SFT train $T --loss-norm tokens --loss-ranks 2 --save-dtype f32 --out "$TMP/sfttok" >"$TMP/sfttok.log" 2>&1
ok=$(paste <(field "$TMP/sfttok.log" loss) <(field "$TMP/s1tok.log" loss) <(field "$TMP/sfttok.log" 'grad norm') <(field "$TMP/s1tok.log" 'grad norm') \
           <(field "$TMP/s1seq.log" 'grad norm') |
     awk 'function abs(x) { return x < 0 ? -x : x } { ok = abs($1 - $2) <= 0.0219 && abs($3 - $4) <= 0.059 * $4 && abs($5 - $4) > 0.059 * $4; n++ }
          END { print (n == 1 && ok) ? "yes" : "no" }')
expect_eq "--loss-norm tokens: sft train's loss and gradient norm are ./s1 train's, not the sequence mean's" "$ok" "yes"

# ---- resume and determinism, bit for bit (bf16 checkpoints: the fp32 master weights travel in optimizer.bin)
RUN2="--model $GQA --data $TMP/gqa.shard --batch 2 --epochs 2 --lr 1e-3 --warmup-ratio 0.25 --clip 0.5"
$SFT train $RUN2 --out "$TMP/u1" >/dev/null 2>&1
$SFT train $RUN2 --out "$TMP/u2" >/dev/null 2>&1
$SFT train $RUN2 --stop-at 2 --out "$TMP/r" >/dev/null 2>&1
$SFT train --resume "$TMP/r" --data "$TMP/gqa.shard" --out "$TMP/r" >"$TMP/resume.log" 2>&1
expect_eq "sft train resumed at step 3" "$(grep -c '^step [34]/4' "$TMP/resume.log")" "2"
same() { cmp -s "$1/model.safetensors" "$2/model.safetensors" && cmp -s "$1/optimizer.bin" "$2/optimizer.bin" && echo same; }
expect_eq "two runs of the same command give the same checkpoint, bit for bit" "$(same "$TMP/u1" "$TMP/u2")" "same"
expect_eq "a run killed after step 2 and resumed gives the uninterrupted checkpoint, bit for bit" "$(same "$TMP/u1" "$TMP/r")" "same"
$SFT train $RUN2 --recompute --out "$TMP/rc" >"$TMP/rc.log" 2>&1
expect_eq "--recompute gives the same checkpoint, bit for bit" "$(same "$TMP/u1" "$TMP/rc")" "same"
# --attention: the gqa fixture's head_dim is 96 / 8 = 12, where the tensor-core kernels do not run
# (64 and 128 only), so tensor-cores (the default) and cuda-cores run the same kernels: the same bits
$SFT train $RUN2 --attention cuda-cores --out "$TMP/cc" >/dev/null 2>&1
expect_eq "--attention cuda-cores gives the same checkpoint, bit for bit (head_dim 12: CUDA cores either way)" "$(same "$TMP/u1" "$TMP/cc")" "same"
expect_eq "sft loss --attention cuda-cores: the same loss (head_dim 12)" \
    "$($SFT loss --model $GQA --data "$TMP/gqa.shard" --attention cuda-cores 2>/dev/null | tail -n 1)" "$($SFT loss --model $GQA --data "$TMP/gqa.shard" 2>/dev/null | tail -n 1)"
expect_error "sft train: a bad --attention" "--attention: 'tensor' is not tensor-cores or cuda-cores" $SFT train $RUN2 --out "$TMP/x" --attention tensor
expect_error "sft loss: a bad --attention" "--attention: 'gpu' is not tensor-cores or cuda-cores" $SFT loss --model $GQA --data "$TMP/gqa.shard" --attention gpu
expect_eq "the memory plan says recompute is on" "$(grep -c '^recompute: on (as asked' "$TMP/rc.log")" "1"
expect_eq "the memory plan decides recompute from --gpu-mem" "$($SFT train $RUN2 --stop-at 1 --gpu-mem 0.000001 --out "$TMP/gm" 2>/dev/null | grep -c '^recompute: on (the plan without it does not fit')" "1"
expect_eq "sft train from --init-config starts from ./s1 train's random weights" \
    "$($SFT train --init-config $GQA/config.json --data "$TMP/gqa.shard" --batch 2 --epochs 1 --lr 0 --save-dtype f32 --out "$TMP/init_sft" >/dev/null 2>&1;
       $S1 train --init-config $GQA/config.json --data "$TMP/gqa.shard" --batch 2 --epochs 1 --lr 0 --out "$TMP/init_s1" --threads 1 >/dev/null 2>&1;
       cmp -s "$TMP/init_sft/model.safetensors" "$TMP/init_s1/model.safetensors" && echo same)" "same"
expect_error "sft train: a settings flag with --resume" "--lr cannot be combined with --resume" $SFT train --resume "$TMP/r" --data "$TMP/gqa.shard" --out "$TMP/r" --lr 1
expect_error "sft train: a bad --save-dtype" "--save-dtype: 'fp16' is not bf16 or f32" $SFT train $RUN2 --out "$TMP/x" --save-dtype fp16
expect_error "sft train without --out" "--data and --out are required" $SFT train --model $GQA --data "$TMP/gqa.shard"
expect_error "sft with an unknown command" "unknown command 'tran'" $SFT tran

# ---- errors: one line, non-zero exit
expect_error "sample --prompt-ids with budget forcing" "--prompt-ids continues raw ids" $SAMPLE --model $GQA --prompt-ids 5 --max-thinking 4
expect_error "sample --prompts without --tokenizer" "--model, --tokenizer and --prompts are required" $SAMPLE --model $GQA --prompts "$TMP/prompts.jsonl"
expect_error "sample: a bad --attention" "--attention: 'cuda' is not tensor-cores or cuda-cores" $SAMPLE --model $GQA --prompt-ids 5 --attention cuda
expect_eq "sample --attention cuda-cores: the same ids (head_dim 12: CUDA cores either way)" \
    "$($SAMPLE --model $GQA --prompt-ids 5,6,7 --max-gen-toks 6 --attention cuda-cores 2>/dev/null)" "$($SAMPLE --model $GQA --prompt-ids 5,6,7 --max-gen-toks 6 2>/dev/null)"
expect_error "sample: a bad --graph" "--graph: 'yes' is not on or off" $SAMPLE --model $GQA --prompt-ids 5 --graph yes
expect_eq "sample --graph off: the same ids as the graph (the same kernels)" \
    "$($SAMPLE --model $GQA --prompt-ids 5,6,7 --max-gen-toks 6 --graph off 2>/dev/null)" "$($SAMPLE --model $GQA --prompt-ids 5,6,7 --max-gen-toks 6 2>/dev/null)"
expect_error "sample with an unknown flag" "unknown argument '--think'" $SAMPLE $P --think 4
expect_error "sample --wait takes a count, as in ./s1 sample" "--wait: 'Hmm' is not a non-negative integer" $SAMPLE $P --wait Hmm
printf '{"question": "ok"}\n{"question": \n' >"$TMP/bad.jsonl"
expect_error "sample: malformed prompts name file:line" "bad.jsonl:2" $SAMPLE --model "$TMP/bf" --tokenizer $TOK --prompts "$TMP/bad.jsonl"
printf '{"prompt_text": "x"}\n' >"$TMP/nofield.jsonl"
expect_error "sample: a prompt without a question" "nofield.jsonl:1: no \"question\"" $SAMPLE --model "$TMP/bf" --tokenizer $TOK --prompts "$TMP/nofield.jsonl"
expect_error "sample: a tokenizer larger than the model" "embedding rows" $SAMPLE --model $GQA --tokenizer $TOK --prompts "$TMP/prompts.jsonl"
expect_error "sample: an auto budget below 1" "the thinking budget comes out at" $SAMPLE $P --max-gen-toks 100
expect_error "sft loss without --data" "--model and --data are required" $SFT loss --model $GQA
expect_error "sft with a missing model" "no-such-dir/config.json: cannot read model config" $SFT loss --model "$TMP/no-such-dir" --data "$TMP/gqa.shard"
mkdir -p "$TMP/trunc"
cp $GQA/config.json "$TMP/trunc/"
head -c 500000 $GQA/model.safetensors >"$TMP/trunc/model.safetensors"
expect_error "sft with a truncated checkpoint" "model.safetensors: tensor .* outside the .* data buffer \(truncated file\?\)" \
    $SFT loss --model "$TMP/trunc" --data "$TMP/gqa.shard"
mkdir -p "$TMP/wrong"
sed 's/"intermediate_size": 136/"intermediate_size": 128/' $GQA/config.json >"$TMP/wrong/config.json"
cp $GQA/model.safetensors "$TMP/wrong/"
expect_error "sft with a checkpoint that does not fit its config" "model.safetensors: tensor model.layers.0.mlp.(down|gate|up)_proj.weight has shape \[[0-9, ]+\], the config implies \[[0-9, ]+\]" \
    $SFT loss --model "$TMP/wrong" --data "$TMP/gqa.shard"
expect_error "sft with a shard that is not one" "not a shard" $SFT loss --model $GQA --data $GQA/config.json
mkdir -p "$TMP/short"   # RoPE's table has max_position_embeddings rows: a longer sequence is refused, never read past
sed 's/"max_position_embeddings": 128/"max_position_embeddings": 8/' $GQA/config.json >"$TMP/short/config.json"
cp $GQA/model.safetensors "$TMP/short/"
$SFT loss --model "$TMP/short" --data "$TMP/gqa.shard" >/dev/null 2>"$TMP/short.err"   # after sft's two lines on the model and data
expect_eq "sft with a sequence longer than max_position_embeddings: refused on the host" "$? $(tail -n 1 "$TMP/short.err")" \
    "1 error: gpu_forward: position 8 is beyond the model's max_position_embeddings (8), the RoPE table's rows"
expect_error "sample with a bad prompt" "--prompt-ids must be comma-separated token ids" $SAMPLE --model $GQA --prompt-ids 5,x
expect_error "sample with an id outside the embedding" "prompt token id 999 is outside" $SAMPLE --model $GQA --prompt-ids 5,999
summary
