# tests/test_s1.sh: the ./s1 command line: help, `loss` against the HF fixture's loss,
# `train` from scratch / fine-tuning / resume, and one-line errors for bad checkpoints.
. tests/lib.sh
S1=./s1
GQA=tests/fixtures/qwen-tiny-gqa
TIED=tests/fixtures/qwen-tiny-tied

# ---- help
expect_ok "s1 --help" $S1 --help
expect_eq "s1 --help lists the subcommands" "$($S1 --help | grep -cE '^  (train|loss|bench) ')" "3"
for c in train loss bench; do expect_ok "s1 $c --help" $S1 $c --help; done
expect_error "unknown subcommand" "unknown command 'frobnicate'" $S1 frobnicate

# ---- the fixtures' reference batches as shards (make_shard, tests/lib.sh)
make_shard $GQA "$TMP/gqa.shard"
make_shard $TIED "$TMP/tied.shard"

# ---- loss: one sequence at a time must give the HF batch loss (s1's mean of per-sequence means)
ref_loss() { st_bytes "$1/reference.safetensors" loss | od -An -t f4 | tr -d ' '; }
out=$($S1 loss --model $GQA --data "$TMP/gqa.shard" --threads 2 2>&1)
got=$(printf '%s\n' "$out" | tail -n 1)
expect_eq "loss: last line format" "$(printf '%s' "$got" | grep -cE '^loss: [0-9]+\.[0-9]+$')" "1"
for f in $GQA $TIED; do
    name=$(basename $f)
    got=$($S1 loss --model $f --data "$TMP/${name#qwen-tiny-}.shard" --threads 2 | tail -n 1 | sed 's/^loss: //')
    want=$(ref_loss $f)
    # printed with 6 decimals; the fp32 forward agrees with HF to ~1e-6 relative
    expect_eq "loss of $name matches transformers ($got vs $want)" "$(awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; print (d <= 2e-6 * b + 1e-6) ? "ok" : "off" }')" "ok"
done

# ---- train: from scratch, logging, checkpoint files
expect_ok "train from --init-config" $S1 train --init-config $GQA/config.json --data "$TMP/gqa.shard" --out "$TMP/scratch" \
    --epochs 2 --batch 3 --lr 1e-3 --threads 2
log=$(cat "$TMP/out")
expect_eq "train logs every step (2 epochs x 2 steps)" "$(printf '%s\n' "$log" | grep -cE '^step [0-9]+/4 \| loss [0-9.]+ \| grad norm [0-9.]+ \| lr [0-9.e+-]+ \| [0-9]+ tokens/s \| ETA ')" "4"
for f in model.safetensors config.json optimizer.bin; do
    expect_ok "checkpoint has $f" test -s "$TMP/scratch/$f"
done
expect_ok "a trained checkpoint loads again" $S1 loss --model "$TMP/scratch" --data "$TMP/gqa.shard"

# ---- fine-tune: the loss on the training data goes down
before=$($S1 loss --model $TIED --data "$TMP/tied.shard" | tail -n 1 | sed 's/^loss: //')
expect_ok "fine-tune with --model" $S1 train --model $TIED --data "$TMP/tied.shard" --out "$TMP/ft" --epochs 8 --batch 2 \
    --lr 3e-3 --warmup-ratio 0.1 --micro-batch 2 --save-every 4
after=$($S1 loss --model "$TMP/ft" --data "$TMP/tied.shard" | tail -n 1 | sed 's/^loss: //')
expect_eq "fine-tuning lowers the loss ($before -> $after)" "$(awk -v a="$after" -v b="$before" 'BEGIN { print (a < b - 0.1) ? "ok" : "no" }')" "ok"

# ---- resume through the command line is bitwise equal to a straight run
$S1 train --model $TIED --data "$TMP/tied.shard" --out "$TMP/r1" --epochs 3 --batch 2 --lr 1e-3 >/dev/null
$S1 train --model $TIED --data "$TMP/tied.shard" --out "$TMP/r2" --epochs 3 --batch 2 --lr 1e-3 --stop-at 4 >/dev/null
$S1 train --resume "$TMP/r2" --data "$TMP/tied.shard" --out "$TMP/r2" >/dev/null
expect_ok "CLI resume gives bit-identical weights" cmp "$TMP/r1/model.safetensors" "$TMP/r2/model.safetensors"
expect_error "a schedule flag with --resume is refused" "--lr cannot be combined with --resume" \
    $S1 train --resume "$TMP/r2" --data "$TMP/tied.shard" --out "$TMP/r3" --lr 1e-4
expect_error "resume on other data is refused" "gqa.shard: not the data this run was trained on" \
    $S1 train --resume "$TMP/r2" --data "$TMP/gqa.shard" --out "$TMP/r3"

# ---- bad checkpoints: one line on stderr naming the file and the problem, non-zero exit
bad() { rm -rf "$TMP/bad"; mkdir "$TMP/bad"; cp $GQA/config.json $GQA/model.safetensors "$TMP/bad/"; }
bad; head -c 500000 $GQA/model.safetensors >"$TMP/bad/model.safetensors"
expect_error "truncated checkpoint" "model.safetensors: tensor .* lie outside the [0-9]+-byte data buffer \(truncated file\?\)" \
    $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; head -c 100 $GQA/model.safetensors >"$TMP/bad/model.safetensors"
expect_error "checkpoint cut inside its header" "model.safetensors: truncated safetensors file: header length" \
    $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; hdr='{"model.embed_tokens.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16000]}}'
{ le32 ${#hdr}; le32 0; printf '%s' "$hdr"; head -c 16 /dev/zero; } >"$TMP/bad/model.safetensors"
expect_error "header offsets out of bounds" "tensor model.embed_tokens.weight: data_offsets \[0, 16000\) lie outside the 16-byte data buffer" \
    $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; hdr='{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
{ le32 ${#hdr}; le32 0; printf '%s' "$hdr"; head -c 12 /dev/zero; } >"$TMP/bad/model.safetensors"
expect_error "overlapping tensors" "tensors a and b overlap" $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; hdr='{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]'
{ le32 ${#hdr}; le32 0; printf '%s' "$hdr"; head -c 8 /dev/zero; } >"$TMP/bad/model.safetensors"
expect_error "header is not JSON" "model.safetensors: safetensors header is not valid JSON" $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; sed -i 's/"intermediate_size": 136/"intermediate_size": 140/' "$TMP/bad/config.json"
expect_error "wrong shape" "tensor model.layers.0.mlp.(down|gate|up)_proj.weight has shape \[[0-9, ]+\], the config implies \[[0-9, ]+\]" \
    $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; sed -i 's/"num_hidden_layers": 3/"num_hidden_layers": 4/' "$TMP/bad/config.json"
expect_error "missing tensor" "missing tensor model.layers.3.input_layernorm.weight" $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; sed -i 's/"num_hidden_layers": 3/"num_hidden_layers": 2/' "$TMP/bad/config.json"
expect_error "unexpected tensor" "unexpected tensor model.layers.2\." $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; rm "$TMP/bad/model.safetensors"
expect_error "no weights at all" "model.safetensors: cannot open" $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; sed -i 's/"num_key_value_heads": 2/"num_key_value_heads": 3/' "$TMP/bad/config.json"
expect_error "config with an impossible GQA ratio" "config.json: num_attention_heads 8 is not a multiple of num_key_value_heads 3" \
    $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"
bad; sed -i 's/"hidden_size": 96,//' "$TMP/bad/config.json"
expect_error "config without hidden_size" "config.json: missing field \"hidden_size\"" $S1 loss --model "$TMP/bad" --data "$TMP/gqa.shard"

summary
