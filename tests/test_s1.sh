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
# every flag a command's --help lists is one it accepts: given with a dummy value and
# nothing else, it fails on its value or on the missing required flags, never as
# an unknown or refused argument
for c in sample eval; do
    bad=""
    for f in $($S1 $c --help | grep -oE -- '^  --[a-z-]+'); do
        err=$($S1 $c "$f" 1 2>&1 >/dev/null </dev/null)
        case "$err" in *"unknown argument '$f'"*|*"are ./s1 sample's"*) bad="$bad $f";; esac
    done
    expect_eq "s1 $c --help lists only flags $c accepts" "$bad" ""
done
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

# ---- s1's run and its alternatives (issue 12): --last-batch, --loss-norm, --exempt-norms
for f in --last-batch --loss-norm --loss-ranks --exempt-norms; do
    expect_eq "train --help lists $f" "$($S1 train --help | grep -cE -- "^  $f ")" "1"
done
X=(--model $TIED --data "$TMP/tied.shard" --out "$TMP/x")
expect_error "--decay-norms is gone (norm weights decay by default)" "unknown argument '--decay-norms'" $S1 train "${X[@]}" --decay-norms
expect_error "--last-batch takes s1 or short" "--last-batch: 'all' is not s1 or short" $S1 train "${X[@]}" --last-batch all
expect_error "--loss-norm takes sequence or tokens" "--loss-norm: 'mean' is not sequence or tokens" $S1 train "${X[@]}" --loss-norm mean
expect_error "--loss-ranks without --loss-norm tokens" "--loss-ranks applies to --loss-norm tokens only" $S1 train "${X[@]}" --loss-ranks 2
expect_error "--loss-ranks must divide the batch" "--loss-ranks 3 does not divide the batch of 2 sequences" \
    $S1 train "${X[@]}" --batch 2 --loss-norm tokens --loss-ranks 3
expect_error "--exempt-norms is a run setting, refused with --resume" "--exempt-norms cannot be combined with --resume" \
    $S1 train --resume "$TMP/r2" --data "$TMP/tied.shard" --out "$TMP/r3" --exempt-norms
# 4 sequences in steps of 3: the second step of each epoch holds the left-over sequence and, by
# default, the epoch's first two again (accelerate's even_batches): 3 sequences in the log's
# tokens/s line's count, and a different loss from --last-batch short's one sequence
L=(--model $TIED --data "$TMP/tied.shard" --epochs 3 --batch 3 --lr 1e-3 --threads 1)
$S1 train "${L[@]}" --out "$TMP/lb1" >"$TMP/lb1.log"
$S1 train "${L[@]}" --last-batch short --out "$TMP/lb2" >"$TMP/lb2.log"
expect_eq "2 steps per epoch either way (6 in all)" "$(grep -c '^step [0-9]/6 ' "$TMP/lb1.log") $(grep -c '^step [0-9]/6 ' "$TMP/lb2.log")" "6 6"
expect_eq "the first step is the same, the epoch's last one is not" \
    "$(diff <(grep '^step 1/' "$TMP/lb1.log" | cut -d'|' -f2) <(grep '^step 1/' "$TMP/lb2.log" | cut -d'|' -f2) >/dev/null && echo same),$(diff <(grep '^step 2/' "$TMP/lb1.log" | cut -d'|' -f2) <(grep '^step 2/' "$TMP/lb2.log" | cut -d'|' -f2) >/dev/null && echo same)" "same,"
# resume through filled last steps, with token weighting over micro-batches of 2: bit for bit
$S1 train "${L[@]}" --loss-norm tokens --micro-batch 2 --out "$TMP/t1" >/dev/null
$S1 train "${L[@]}" --loss-norm tokens --micro-batch 2 --stop-at 3 --out "$TMP/t2" >/dev/null
$S1 train --resume "$TMP/t2" --data "$TMP/tied.shard" --out "$TMP/t2" --micro-batch 2 --threads 1 >/dev/null
expect_ok "resume with --loss-norm tokens across filled last steps: bit-identical weights" cmp "$TMP/t1/model.safetensors" "$TMP/t2/model.safetensors"
expect_ok "... and optimizer state" cmp "$TMP/t1/optimizer.bin" "$TMP/t2/optimizer.bin"
expect_eq "--loss-norm tokens trains differently from the sequence mean" "$(cmp -s "$TMP/t1/model.safetensors" "$TMP/lb1/model.safetensors" || echo differs)" "differs"
# An optimizer.bin of version 2 (before issue 12: the header without last_batch, loss_norm and
# loss_ranks, 24 bytes at offset 144) resumes the way it was trained: short last batches, the
# sequence mean. Made here from a version 3 file by cutting those bytes and writing version 2.
$S1 train "${L[@]}" --last-batch short --stop-at 1 --out "$TMP/v2" >/dev/null
f="$TMP/v2/optimizer.bin"
{ head -c 4 "$f"; printf '\x02\x00\x00\x00'; tail -c +9 "$f" | head -c 136; tail -c +169 "$f"; } >"$TMP/v2.bin" && mv "$TMP/v2.bin" "$f"
$S1 train --resume "$TMP/v2" --data "$TMP/tied.shard" --out "$TMP/v2" --threads 1 >/dev/null
expect_ok "a version 2 optimizer.bin resumes with --last-batch short, as it was trained" cmp "$TMP/lb2/model.safetensors" "$TMP/v2/model.safetensors"
printf '\x01' | dd of="$TMP/v2/optimizer.bin" bs=1 seek=4 conv=notrunc status=none
expect_error "an optimizer.bin of version 1 is refused" "optimizer.bin: not an s1.c optimizer state \(bad magic or version\)" \
    $S1 train --resume "$TMP/v2" --data "$TMP/tied.shard" --out "$TMP/v2"

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
