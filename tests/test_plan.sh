# tests/test_plan.sh: `sft plan` (the audit of the $50 run) against arithmetic done here by hand,
# for Qwen2.5-32B-Instruct (configs/), and its one-line errors.
. tests/lib.sh
SFT=build/emu/sft
C32=configs/qwen2.5-32b-instruct.json

# ---- the shipped configs imply the published parameter counts (the model notes' table)
for pair in 0.5b:494032768 1.5b:1543714304 7b:7615616512 32b:32763876352; do
    size=${pair%%:*} want=${pair#*:}
    got=$($SFT plan --config configs/qwen2.5-$size-instruct.json --gpus 1 | sed -nE 's/.*, ([0-9]+) parameters.*/\1/p')
    expect_eq "configs/qwen2.5-$size-instruct.json: $want parameters" "$got" "$want"
done

# ---- FLOPs, by hand: per sequence of T tokens 6 N_mm T + 6 L NQ HD T (T+1), N_mm = all parameters but the
# untied embedding (a lookup): 32,763,876,352 - 152,064 * 5,120 = 31,985,308,672. s1K as 1,000 sequences of
# 4,700 tokens, trained as s1 did: 63 steps of 16 per epoch, the last refilled with 8 of the epoch's first
# (--last-batch s1), so an epoch trains 1008 * (6 * 31985308672 * 4700 + 6 * 64 * 40 * 128 * 4700 * 4701); 5 epochs.
out=$($SFT plan --config $C32)
per_seq='(6 * 31985308672 * 4700 + 6 * 64 * 40 * 128 * 4700 * 4701)'
epoch=$(awk "BEGIN { printf \"%.4g\", 1008 * $per_seq }")
run=$(awk "BEGIN { printf \"%.4g\", 5 * 1008 * $per_seq }")
expect_eq "32B: s1K's data" "$(echo "$out" | grep -c '^  data: 1000 sequences, 4700000 tokens (mean 4700)$')" "1"
expect_eq "32B: an epoch is 63 steps of 16, 1008 sequences trained" "$(echo "$out" | grep -c 'epoch: 63 steps of 16, 1008 sequences trained (--last-batch s1)')" "1"
expect_eq "32B: the FLOPs of an epoch of s1K" "$(echo "$out" | sed -nE 's/.*sequences trained \(--last-batch s1\), ([0-9.e+]+) FLOP.*/\1/p')" "$epoch"
expect_eq "32B: the FLOPs of the run" "$(echo "$out" | sed -nE 's/.*run: 5 epochs, ([0-9.e+]+) FLOP/\1/p')" "$run"
expect_eq "32B --last-batch short: an epoch trains the 1000 sequences" \
    "$($SFT plan --config $C32 --last-batch short | sed -nE 's/.*epoch: 63 steps of 16, 1000 sequences trained \(--last-batch short\), ([0-9.e+]+) FLOP.*/\1/p')" \
    "$(awk "BEGIN { printf \"%.4g\", 1000 * $per_seq }")"
expect_eq "32B --batch 8: 125 steps, nothing to refill" "$($SFT plan --config $C32 --batch 8 | grep -c 'epoch: 125 steps of 8, 1000 sequences trained')" "1"
# s1's 26 minutes on 16 H100 at 989 TFLOP/s each imply run / (1560 * 16 * 989e12)
mfu=$(awk -v r="$run" 'BEGIN { printf "%.1f", 100 * r / (1560 * 16 * 989e12) }')
expect_eq "32B: the MFU s1's 26 minutes imply ($mfu%)" "$(echo "$out" | sed -nE 's/.*26 minutes on 16 H100, implies MFU ([0-9.]+)%/\1/p')" "$mfu"
near() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; print (a != "" && d <= tol) ? "yes" : "no (" a " vs " b ")" }'; }   # printed figures, last digit
minutes=$(awk -v r="$run" 'BEGIN { printf "%.3f", r / (0.035 * 16 * 989e12) / 60 }')
expect_eq "32B: the run at 3.5% MFU on 16 GPUs takes $minutes minutes" \
    "$(near "$(echo "$out" | sed -nE 's/.*at MFU 3.5% on 16 GPUs: ([0-9.]+) minutes.*/\1/p')" "$minutes" 0.06)" "yes"
dollars=$(awk -v r="$run" 'BEGIN { printf "%.3f", r / (0.035 * 16 * 989e12) / 3600 * 16 * 2 }')
expect_eq "32B: and costs \$$dollars at \$2 per GPU-hour" "$(near "$(echo "$out" | sed -nE 's/.*GPU-hours, \$([0-9.]+) at.*/\1/p')" "$dollars" 0.006)" "yes"

# ---- memory per GPU, by hand: each rank holds one shard of every unit (the embedding, each of the 64
# layers, the final norm + LM head), ceil(unit / 16) elements: 2 bytes of bf16 weights and 4 each of
# master, m, v and gradients. Units: 778,567,680; 64 x 487,605,248; 5,120 + 778,567,680.
shard=$(awk 'function ceil(x) { return x == int(x) ? x : int(x) + 1 }
             BEGIN { printf "%.0f", ceil(778567680 / 16) + 64 * ceil(487605248 / 16) + ceil((5120 + 778567680) / 16) }')
expect_eq "32B: the bf16 weight shard is $shard x 2 bytes" "$(echo "$out" | sed -nE 's/.*bf16 weights \(this rank.s shard\) +([0-9.]+) GB/\1/p')" \
    "$(awk -v s="$shard" 'BEGIN { printf "%.2f", 2 * s / 1e9 }')"
expect_eq "32B: each fp32 shard is $shard x 4 bytes" "$(echo "$out" | grep -cE "fp32 (master weights|AdamW m|AdamW v|gradients) \(shard\) +$(awk -v s="$shard" 'BEGIN { printf "%.2f", 4 * s / 1e9 }') GB")" "4"
# activations kept for a 32K sequence: per token and layer 3H + 2QD + 2KD + 3I bf16 (the fused gate|up rows 2I, which
# hold the fused q|k|v rows first, and mlp I) and 2 + NQ fp32, plus the
# residual stream entering each layer (L + 1) and the final norm: 32768 * (2 * 65 * 5120 + 64 * (2 * (3 * 5120 +
# 2 * 5120 + 2 * 1024 + 3 * 27648) + 4 * 42) + 2 * 5120 + 4); recompute keeps one layer instead of 64
kept=$(awk 'BEGIN { printf "%.2f", 32768 * (2 * 65 * 5120 + 64 * (2 * (3 * 5120 + 2 * 5120 + 2 * 1024 + 3 * 27648) + 4 * 42) + 2 * 5120 + 4) / 1e9 }')
rec=$(awk 'BEGIN { printf "%.2f", 32768 * (2 * 65 * 5120 + 1 * (2 * (3 * 5120 + 2 * 5120 + 2 * 1024 + 3 * 27648) + 4 * 42) + 2 * 5120 + 4) / 1e9 }')
expect_eq "32B at 32K: activations kept $kept GB, with recompute $rec GB" \
    "$(echo "$out" | sed -nE 's/.*\(kept: ([0-9.]+) GB; --recompute: ([0-9.]+) GB\)/\1 \2/p')" "$kept $rec"
expect_eq "32B on 16 x 80 GiB at block 32768: fits with recompute (the default it picks)" "$(echo "$out" | tail -n 1 | grep -cE '^plan: [0-9.]+ GB per GPU of 85.9 GB: fits$')" "1"
expect_eq "32B on 16 x 80 GiB at block 32768: does not fit without recompute" \
    "$($SFT plan --config $C32 --no-recompute | tail -n 1 | grep -cE '^plan: [0-9.]+ GB per GPU of 85.9 GB: does not fit$')" "1"
expect_eq "32B with --overlap (a second gathered layer and its fp32 gradients, 2.9 GB): 84.9 GB, fits with 1 GB to spare" \
    "$($SFT plan --config $C32 --overlap | tail -n 1)" "plan: 84.9 GB per GPU of 85.9 GB: fits"
expect_eq "32B on one GPU: does not fit (590 GB of training state)" \
    "$($SFT plan --config $C32 --gpus 1 | tail -n 1 | grep -c 'does not fit')" "1"
expect_eq "0.5B on one GPU with recompute at 32K: fits" \
    "$($SFT plan --config configs/qwen2.5-0.5b-instruct.json --gpus 1 --recompute | tail -n 1 | grep -c ': fits$')" "1"

# ---- --data: the shard's own lengths
make_shard tests/fixtures/qwen-tiny-gqa "$TMP/gqa.shard"
expect_eq "--data counts the shard's 4 sequences and 53 tokens" \
    "$($SFT plan --config tests/fixtures/qwen-tiny-gqa/config.json --data "$TMP/gqa.shard" --gpus 2 | grep -c 'data: 4 sequences, 53 tokens')" "1"
# at batch 3 the second step takes the left-over sequence and refills 2 from the epoch's start: 6 per epoch
expect_eq "--data at --batch 3: 2 steps, 6 sequences trained per epoch" \
    "$($SFT plan --config tests/fixtures/qwen-tiny-gqa/config.json --data "$TMP/gqa.shard" --batch 3 | grep -c 'epoch: 2 steps of 3, 6 sequences trained')" "1"
expect_eq "--data at --batch 3 --last-batch short: 4 per epoch" \
    "$($SFT plan --config tests/fixtures/qwen-tiny-gqa/config.json --data "$TMP/gqa.shard" --batch 3 --last-batch short | grep -c 'epoch: 2 steps of 3, 4 sequences trained')" "1"

# ---- sample --plan: batch-1 decoding reads every bf16 weight once per token (of the untied embedding only
# the token's row) and the whole KV cache. By hand for 32B: 2 * (32,763,876,352 - 152,064 * 5,120 + 5,120)
# = 63,970,627,584 bytes; the KV cache 2 (K, V) * 2 bytes * 64 layers * 8 * 128 = 262,144 bytes per token.
SAMPLE=build/emu/sample
dec=$($SAMPLE --plan --config $C32 --context 2000)
expect_eq "sample --plan 32B: weights 63.971 GB per token" "$(echo "$dec" | grep -c 'weights 63.971 GB')" "1"
expect_eq "sample --plan 32B: 262.1 KB of KV cache per cached token" "$(echo "$dec" | grep -c 'KV cache 262.1 KB per cached token')" "1"
for ctx in 0 32768 2000; do
    want=$(awk -v c=$ctx 'BEGIN { b = 63970627584 + 262144 * c; printf "%.2f %.1f", b / 3350e9 * 1e3, 3350e9 / b }')
    expect_eq "sample --plan 32B at context $ctx: $want ms/token, tokens/s at 3350 GB/s" \
        "$(echo "$dec" | awk -v c=$ctx '$1 == c { print $4, $5 }')" "$want"
done
# --batch 8: a step reads the weights once (plus 7 more embedding rows, 2 * 7 * 5,120 bytes) and the
# 8 sequences' caches, and decodes 8 tokens
dec8=$($SAMPLE --plan --config $C32 --context 2000 --batch 8)
for ctx in 0 2000; do
    want=$(awk -v c=$ctx 'BEGIN { b = 63970627584 + 2 * 7 * 5120 + 8 * 262144 * c; printf "%.2f %.1f", b / 3350e9 * 1e3, 8 * 3350e9 / b }')
    expect_eq "sample --plan 32B --batch 8 at context $ctx: $want ms/step, tokens/s at 3350 GB/s" \
        "$(echo "$dec8" | awk -v c=$ctx '$1 == c { print $4, $5 }')" "$want"
done
expect_error "sample --plan without --config" "--plan needs --config" $SAMPLE --plan
expect_error "sample --plan with a zero bandwidth" "--hbm-gbps must be positive" $SAMPLE --plan --config $C32 --hbm-gbps 0

# ---- errors: one line, non-zero exit
expect_error "plan without --config" "--config is required" $SFT plan
expect_error "plan with --data and --tokens" "give --data or --tokens/--sequences, not both" $SFT plan --config $C32 --data "$TMP/gqa.shard" --tokens 5 --sequences 1
expect_error "plan with --tokens alone" "--tokens and --sequences go together" $SFT plan --config $C32 --tokens 5
expect_error "plan with --batch 0" "--batch" $SFT plan --config $C32 --batch 0
expect_error "plan with a bad --last-batch" "--last-batch: 'x' is not s1 or short" $SFT plan --config $C32 --last-batch x
expect_error "plan with an MFU above 1" "--mfu must be in" $SFT plan --config $C32 --mfu 2
expect_error "plan with a missing config" "no-such.json: cannot read model config" $SFT plan --config "$TMP/no-such.json"
summary
