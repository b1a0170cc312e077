# tests/test_sft.sh: the GPU programs' command lines, run through the CUDA
# emulator (build/emu/sft, build/emu/sample: the same sources `make cuda` builds):
# sft's loss against ./s1 loss on the HF fixtures, greedy sampling, budget forcing, help and
# one-line errors for bad input.
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

# ---- greedy sampling
out=$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-new 10 2>/dev/null)
expect_eq "sample prints 10 ids below the vocabulary" "$(echo "$out" | tr ' ' '\n' | awk '$1 < 317' | wc -l)" "10"
expect_eq "sample is deterministic" "$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-new 10 2>/dev/null)" "$out"
first=${out%% *}
expect_eq "sample stops after a --stop id" "$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-new 10 --stop $first 2>/dev/null)" "$first"
expect_eq "--vocab 1 can only produce id 0" "$($SAMPLE --model $GQA --prompt-ids 5 --max-new 3 --vocab 1 2>/dev/null)" "0 0 0"

# ---- budget forcing and text, on a random model whose embedding covers the trained test
# tokenizer (771 ids; made by ./s1 from a config, learning rate 0 so the weights stay random).
# tests/emu_kernels_budget.cu checks the decoding itself against s1.c; this checks the command line.
TOK=tests/fixtures/tok_trained
cat >"$TMP/bf.json" <<'JSON'
{"model_type": "qwen2", "hidden_act": "silu", "vocab_size": 800, "hidden_size": 32, "intermediate_size": 48,
 "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
 "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true}
JSON
$S1 train --init-config "$TMP/bf.json" --data "$TMP/gqa.shard" --out "$TMP/bf" --epochs 1 --batch 4 --lr 0 --threads 1 >/dev/null 2>&1
$SAMPLE --model "$TMP/bf" --tokenizer $TOK --question "What is 2+2?" --think 5 --ignore 1 --max-answer 8 >"$TMP/bf.out" 2>"$TMP/bf.err"
expect_eq "budget forcing: the text starts with the thinking delimiter" "$(head -c 17 "$TMP/bf.out")" "<|im_start|>think"
expect_eq "budget forcing: the answer delimiter follows" "$(grep -c '<|im_start|>answer' "$TMP/bf.out")" "1"
n_think=$(grep -oE 'thinking [0-9]+ tokens' "$TMP/bf.err" | grep -oE '[0-9]+')
expect_eq "budget forcing: the thinking is cut to the budget of 5 ($n_think tokens)" "$([ -n "$n_think" ] && [ "$n_think" -le 5 ] && echo yes)" "yes"
expect_eq "budget forcing is deterministic" \
    "$($SAMPLE --model "$TMP/bf" --tokenizer $TOK --question "What is 2+2?" --think 5 --ignore 1 --max-answer 8 2>/dev/null)" "$(cat "$TMP/bf.out")"
t1=$($SAMPLE --model "$TMP/bf" --tokenizer $TOK --question "Hi" --max-new 12 --temperature 1 --seed 7 2>/dev/null)
expect_eq "temperature sampling is reproducible with a seed" "$($SAMPLE --model "$TMP/bf" --tokenizer $TOK --question "Hi" --max-new 12 --temperature 1 --seed 7 2>/dev/null)" "$t1"
t2=$($SAMPLE --model "$TMP/bf" --tokenizer $TOK --question "Hi" --max-new 12 --temperature 1 --seed 8 2>/dev/null)
expect_eq "another seed samples another text (a random model: ~771 near-equal choices per token)" "$([ "$t1" != "$t2" ] && echo differ)" "differ"
expect_eq "temperature 0 is greedy" "$($SAMPLE --model $GQA --prompt-ids 5,17,250,3 --max-new 10 --temperature 0 --seed 9 2>/dev/null)" "$out"
expect_ok "greedy text continuation of a question" $SAMPLE --model "$TMP/bf" --tokenizer $TOK --question "Hi" --max-new 5

# ---- errors: one line, non-zero exit
expect_error "sample --think without --question" "--think needs --question" $SAMPLE --model $GQA --prompt-ids 5 --think 4
expect_error "sample --question without --tokenizer" "--question needs --tokenizer" $SAMPLE --model $GQA --question "Hi"
expect_error "sample --ignore without --think" "--ignore and --readme need --think" $SAMPLE --model $GQA --prompt-ids 5 --ignore 2
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
expect_error "sft with a checkpoint that does not fit its config" "model.safetensors: tensor model.layers.0.mlp.(down_proj.weight: the config implies shape \[96, 128\]|(gate|up)_proj.weight: the config implies shape \[128, 96\])" \
    $SFT --model "$TMP/wrong" --data "$TMP/gqa.shard"
expect_error "sft with a shard that is not one" "not a shard" $SFT --model $GQA --data $GQA/config.json
expect_error "sample with a bad prompt" "--prompt-ids must be comma-separated token ids" $SAMPLE --model $GQA --prompt-ids 5,x
expect_error "sample with an id outside the embedding" "prompt token id 999 is outside" $SAMPLE --model $GQA --prompt-ids 5,999
summary
