# tests/test_sft.sh: the GPU programs' command lines, run through the CUDA
# emulator (build/emu/sft, build/emu/sample: the same sources `make cuda` builds):
# sft's loss against ./s1 loss on the HF fixtures; sample against ./s1 sample (the same
# flags, the same JSON lines; common/generate.h), raw-id continuation, help and one-line
# errors for bad input.
. tests/lib.sh
SFT=build/emu/sft
SAMPLE=build/emu/sample
S1=./s1
GQA=tests/fixtures/qwen-tiny-gqa
TIED=tests/fixtures/qwen-tiny-tied

make_shard $GQA "$TMP/gqa.shard"
make_shard $TIED "$TMP/tied.shard"

# ---- help
expect_ok "sft --help" $SFT --help
expect_eq "sft --help says training is not implemented yet" "$($SFT --help | grep -c 'not')" "1"
expect_ok "sample --help" $SAMPLE --help

# ---- loss == ./s1 loss. The GPU path holds bf16 weights and activations; the
# bound is the one derived in tests/emu_kernels.cu (2 * 4u * max|logit| >= 0.0219
# for these fixtures, u = 2^-8); measured differences are ~1e-4.
for f in $TIED $GQA; do
    name=${f#tests/fixtures/qwen-tiny-}
    got=$($SFT --model $f --data "$TMP/$name.shard" 2>/dev/null | tail -n 1 | sed 's/^loss: //')
    want=$($S1 loss --model $f --data "$TMP/$name.shard" --threads 1 2>/dev/null | tail -n 1 | sed 's/^loss: //')
    ok=$(awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; print (a != "" && d <= 0.02) ? "yes" : "no" }')
    expect_eq "sft loss $got == ./s1 loss $want within 0.02 ($name)" "$ok" "yes"
done
got2=$($SFT --model $GQA --data "$TMP/gqa.shard" --chunk-rows 3 2>/dev/null | tail -n 1)
got1=$($SFT --model $GQA --data "$TMP/gqa.shard" 2>/dev/null | tail -n 1)
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
        { line = $0; t = $0; sub(/.*"thinking_tokens": /, "", t); t += 0
          w = $0; sub(/.*"waits": /, "", w); w += 0
          f = ($0 ~ /"forced_exit": true/)
          if (t > B || w > N || (X && f && t != B)) print "bad:" NR
          sub(/"thinking_tokens": [0-9]+/, "\"thinking_tokens\": T", line); sub(/"waits": [0-9]+/, "\"waits\": W", line)
          sub(/"forced_exit": (true|false)/, "\"forced_exit\": F", line)
          sub(/"thinking_stop": "(stop|length)"/, "\"thinking_stop\": R", line); sub(/"stop": "(stop|length)"/, "\"stop\": R", line)
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
    "$(grep -o '"thinking_tokens": [0-9]*' "$TMP/auto.jsonl" | sort -u)" "$($S1 sample $P --max-gen-toks 200 2>/dev/null | grep -o '"thinking_tokens": [0-9]*' | sort -u)"
B1="--max-thinking 5 --wait 1 --max-gen-toks 8 --max-context 200"
$SAMPLE $P $B1 --out "$TMP/out.jsonl" 2>"$TMP/out.err"
expect_eq "sample --out writes what stdout shows" "$(cat "$TMP/out.jsonl")" "$($SAMPLE $P $B1 2>/dev/null)"
expect_eq "sample --out reports progress on stderr" "$(tail -n 1 "$TMP/out.err" | grep -c '^generate: 3/3')" "1"
t1=$($SAMPLE $P --max-thinking 12 --temperature 1 --seed 7 --max-gen-toks 8 --max-context 200 2>/dev/null)
expect_eq "temperature sampling is reproducible with a seed" "$($SAMPLE $P --max-thinking 12 --temperature 1 --seed 7 --max-gen-toks 8 --max-context 200 2>/dev/null)" "$t1"
t2=$($SAMPLE $P --max-thinking 12 --temperature 1 --seed 8 --max-gen-toks 8 --max-context 200 2>/dev/null)
expect_eq "another seed samples another text (a random model: ~771 near-equal choices per token)" "$([ "$t1" != "$t2" ] && echo differ)" "differ"

# ---- one language: --help of both lists the same sampling flags. The only differences:
# ./s1's --threads (CPU cores) and sample's --prompt-ids (raw ids, for models without a tokenizer).
flags() { "$@" --help | grep -oE '^  --[a-z-]+' | sed 's/^  //'; }
expect_eq "sample --help and ./s1 sample --help: the same flags but --threads / --prompt-ids" \
    "$(diff <(flags $S1 sample) <(flags $SAMPLE) | grep '^[<>]' | tr '\n' ' ')" "< --threads > --prompt-ids "
expect_eq "sample --help lists the budget flags" "$(flags $SAMPLE | grep -cE '^--(max-thinking|wait|ignore-str|max-gen-toks|max-context|readme-variant|top-p)$')" "7"
printf '#define TOKENIZER_NO_MAIN\n#include "tokenizer.c"\n#include "common/generate.h"\nint main() { return 0; }\n' >"$TMP/h_generate.cpp"
expect_ok "common/generate.h compiles as C++17" g++ -std=c++17 -Wall -Wextra -Werror -I. -fsyntax-only "$TMP/h_generate.cpp"
cp "$TMP/h_generate.cpp" "$TMP/h_generate.c"
expect_ok "common/generate.h compiles as C" gcc -std=gnu11 -Wall -Wextra -Werror -I. -fsyntax-only "$TMP/h_generate.c"

# ---- errors: one line, non-zero exit
expect_error "sample --prompt-ids with budget forcing" "--prompt-ids continues raw ids" $SAMPLE --model $GQA --prompt-ids 5 --max-thinking 4
expect_error "sample --prompts without --tokenizer" "--model, --tokenizer and --prompts are required" $SAMPLE --model $GQA --prompts "$TMP/prompts.jsonl"
expect_error "sample with an unknown flag" "unknown argument '--think'" $SAMPLE $P --think 4
expect_error "sample --wait takes a count, as in ./s1 sample" "--wait: 'Hmm' is not a non-negative integer" $SAMPLE $P --wait Hmm
printf '{"question": "ok"}\n{"question": \n' >"$TMP/bad.jsonl"
expect_error "sample: malformed prompts name file:line" "bad.jsonl:2" $SAMPLE --model "$TMP/bf" --tokenizer $TOK --prompts "$TMP/bad.jsonl"
printf '{"prompt_text": "x"}\n' >"$TMP/nofield.jsonl"
expect_error "sample: a prompt without a question" "nofield.jsonl:1: no \"question\"" $SAMPLE --model "$TMP/bf" --tokenizer $TOK --prompts "$TMP/nofield.jsonl"
expect_error "sample: a tokenizer larger than the model" "embedding rows" $SAMPLE --model $GQA --tokenizer $TOK --prompts "$TMP/prompts.jsonl"
expect_error "sample: an auto budget below 1" "the thinking budget comes out at" $SAMPLE $P --max-gen-toks 100
expect_error "sft without --data" "--model and --data are required" $SFT --model $GQA
expect_error "sft with a missing model" "no-such-dir/config.json: cannot read model config" $SFT --model "$TMP/no-such-dir" --data "$TMP/gqa.shard"
mkdir -p "$TMP/trunc"
cp $GQA/config.json "$TMP/trunc/"
head -c 500000 $GQA/model.safetensors >"$TMP/trunc/model.safetensors"
expect_error "sft with a truncated checkpoint" "model.safetensors: tensor .* outside the .* data buffer \(truncated file\?\)" \
    $SFT --model "$TMP/trunc" --data "$TMP/gqa.shard"
mkdir -p "$TMP/wrong"
sed 's/"intermediate_size": 136/"intermediate_size": 128/' $GQA/config.json >"$TMP/wrong/config.json"
cp $GQA/model.safetensors "$TMP/wrong/"
expect_error "sft with a checkpoint that does not fit its config" "model.safetensors: tensor model.layers.0.mlp.(down|gate|up)_proj.weight has shape \[[0-9, ]+\], the config implies \[[0-9, ]+\]" \
    $SFT --model "$TMP/wrong" --data "$TMP/gqa.shard"
expect_error "sft with a shard that is not one" "not a shard" $SFT --model $GQA --data $GQA/config.json
expect_error "sample with a bad prompt" "--prompt-ids must be comma-separated token ids" $SAMPLE --model $GQA --prompt-ids 5,x
expect_error "sample with an id outside the embedding" "prompt token id 999 is outside" $SAMPLE --model $GQA --prompt-ids 5,999
summary
