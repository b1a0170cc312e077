# tests/test_sft.sh: the GPU programs' command lines, run through the CUDA
# emulator (build/emu/sft, build/emu/sample: the same sources `make cuda` builds):
# sft's loss against ./s1 loss on the HF fixtures, greedy sampling, help and
# one-line errors for bad input.
. tests/lib.sh
SFT=build/emu/sft
SAMPLE=build/emu/sample
S1=./s1
GQA=tests/fixtures/qwen-tiny-gqa
TIED=tests/fixtures/qwen-tiny-tied

# the fixture-to-shard helpers (st_header, st_bytes, le32, make_shard) have one
# definition, in tests/test_s1.sh: take them from there
eval "$(sed -n '/^st_header() {/,/^}/p; /^st_bytes() {/,/^}/p; /^le32() {/p; /^make_shard() {/,/^}/p' tests/test_s1.sh)"
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

# ---- errors: one line, non-zero exit
expect_error "sft without --data" "--model and --data are required" $SFT --model $GQA
expect_error "sft with a missing model" "no-such-dir/config.json: cannot read model config" $SFT --model "$TMP/no-such-dir" --data "$TMP/gqa.shard"
mkdir -p "$TMP/trunc"
cp $GQA/config.json "$TMP/trunc/"
head -c 500000 $GQA/model.safetensors >"$TMP/trunc/model.safetensors"
expect_error "sft with a truncated checkpoint" "model.safetensors: tensor .* outside the .* data buffer \(truncated file\?\)" \
    $SFT --model "$TMP/trunc" --data "$TMP/gqa.shard"
expect_error "sft with a shard that is not one" "not a shard" $SFT --model $GQA --data $GQA/config.json
expect_error "sample with a bad prompt" "--prompt-ids must be comma-separated token ids" $SAMPLE --model $GQA --prompt-ids 5,x
expect_error "sample with an id outside the embedding" "prompt token id 999 is outside" $SAMPLE --model $GQA --prompt-ids 5,999
summary
