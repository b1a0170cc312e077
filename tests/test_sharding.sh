# tests/test_sharding.sh: sft train over W ranks (ZeRO-3), W processes on this CPU over the CUDA
# emulator's NCCL (--nproc forks them, as torchrun --nproc_per_node does): the same training as one
# rank, bit for bit where the reduction order allows it and within a stated bound where it does not,
# memory per rank as planned, resume, and clear errors instead of hangs.
. tests/lib.sh
SFT=build/emu/sft
GQA=tests/fixtures/qwen-tiny-gqa
make_shard $GQA "$TMP/gqa.shard"
export SFT_LAUNCH_TIMEOUT=20

# ---- W = 1, 2, 4: 3 steps of 4 sequences (one per rank and micro-batch with W = 4), warmup, clipping, decay
RUN="--model $GQA --data $TMP/gqa.shard --batch 4 --epochs 4 --stop-at 3 --lr 1e-3 --warmup-ratio 0.25 --clip 0.5 --weight-decay 1.0 --save-dtype f32"
for w in 1 2 4; do $SFT train $RUN --nproc $w --out "$TMP/w$w" >"$TMP/w$w.log" 2>&1; done
for w in 1 2 4; do $SFT train $RUN --nproc $w --reduce-dtype f32 --out "$TMP/f$w" >"$TMP/f$w.log" 2>&1; done
$SFT train $RUN --nproc 2 --balance --out "$TMP/b2" >"$TMP/b2.log" 2>&1
field() { grep '^step ' "$1" | sed -E "s/.*\| $2 ([^ |]+).*/\1/"; }
lrs=$(field "$TMP/w1.log" lr | tr '\n' ',' | sed 's/,$//')
expect_eq "every run took 3 steps" "$(cat "$TMP"/w1.log "$TMP"/w2.log "$TMP"/w4.log "$TMP"/f2.log "$TMP"/f4.log "$TMP"/b2.log | grep -c '^step ')" "18"
# Step 1 starts from the same weights: its loss is the same sum of the same per-sequence losses in
# another order (a few fp32 ulps); from step 2 on the weights differ by the reductions' rounding.
expect_eq "step 1's loss is the same over 1, 2 and 4 ranks (to 6 digits)" \
    "$(for f in w1 w2 w4 f2 f4 b2; do field "$TMP/$f.log" loss | head -n 1; done | sort -u | wc -l | tr -d ' ')" "1"
# The weights: each rank computes each sequence's gradient exactly as one rank does; the sum over ranks
# differs by rounding (bf16 reduce-scatter: 2u per sequence gradient, tests/emu_kernels_train.cu; fp32:
# the order of additions), which AdamW can turn into at most 2 lr_t C_t per step and weight
# (tests/tool_ckpt_diff.c), the bound checked here.
for f in w2 w4 f2 f4 b2; do
    expect_ok "$f: the weights after 3 steps are those of one rank within AdamW's bound" build/tests/tool_ckpt_diff $GQA "$TMP/w1" "$TMP/$f" "$lrs"
done
echo "note: bf16 reduce, 4 ranks: $(build/tests/tool_ckpt_diff $GQA "$TMP/w1" "$TMP/w4" "$lrs" | tail -n 1)"
echo "note: fp32 reduce, 4 ranks: $(build/tests/tool_ckpt_diff $GQA "$TMP/w1" "$TMP/f4" "$lrs" | tail -n 1)"
expect_eq "./s1 loss reads the 4-rank checkpoint" "$(./s1 loss --model "$TMP/w4" --data "$TMP/gqa.shard" --threads 1 2>/dev/null | grep -c '^loss: ')" "1"

# ---- --overlap (the layers' collectives on a second stream, guarded by events): the same bits
$SFT train $RUN --nproc 2 --overlap --out "$TMP/o2" >/dev/null 2>&1
$SFT train $RUN --nproc 4 --overlap --balance --recompute --out "$TMP/o4" >/dev/null 2>&1
$SFT train $RUN --nproc 4 --balance --recompute --out "$TMP/n4" >/dev/null 2>&1
expect_eq "--overlap over 2 ranks: the same weights, bit for bit" "$(cmp -s "$TMP/w2/model.safetensors" "$TMP/o2/model.safetensors" && echo same)" "same"
expect_eq "--overlap over 4 ranks with --balance and --recompute: the same weights, bit for bit" \
    "$(cmp -s "$TMP/n4/model.safetensors" "$TMP/o4/model.safetensors" && echo same)" "same"
# A short last batch (--last-batch short): 4 sequences in batches of 3 over 3 ranks leave 2 ranks
# without a sequence in the second step; they still make every collective (with and without --overlap)
RUN3="--model $GQA --data $TMP/gqa.shard --batch 3 --epochs 2 --stop-at 2 --lr 1e-3 --warmup-ratio 0.25 --save-dtype f32"
$SFT train $RUN3 --last-batch short --out "$TMP/s1r" >"$TMP/s1r.log" 2>&1
$SFT train $RUN3 --last-batch short --nproc 3 --out "$TMP/s3" >"$TMP/s3.log" 2>&1
$SFT train $RUN3 --last-batch short --nproc 3 --overlap --out "$TMP/s3o" >/dev/null 2>&1
expect_ok "3 ranks, a step with one sequence: the weights of one rank within AdamW's bound" \
    build/tests/tool_ckpt_diff $GQA "$TMP/s1r" "$TMP/s3" "$(field "$TMP/s1r.log" lr | tr '\n' ',' | sed 's/,$//')"
expect_eq "and the same bits with --overlap" "$(cmp -s "$TMP/s3/model.safetensors" "$TMP/s3o/model.safetensors" && echo same)" "same"
# The default (--last-batch s1): that step holds the left-over sequence and the epoch's first two again,
# one per rank, as s1's 16 ranks held theirs (accelerate's even_batches)
$SFT train $RUN3 --out "$TMP/e1r" >"$TMP/e1r.log" 2>&1
$SFT train $RUN3 --nproc 3 --out "$TMP/e3" >/dev/null 2>&1
expect_ok "3 ranks, the last step filled to 3 sequences: the weights of one rank within AdamW's bound" \
    build/tests/tool_ckpt_diff $GQA "$TMP/e1r" "$TMP/e3" "$(field "$TMP/e1r.log" lr | tr '\n' ',' | sed 's/,$//')"
expect_eq "and not the short step's weights" "$(cmp -s "$TMP/e1r/model.safetensors" "$TMP/s1r/model.safetensors" || echo differ)" "differ"

# ---- memory per rank: what each rank allocated is the plan's count, and the training state is 1/W
for w in 1 2 4; do
    line=$(grep '^memory: rank 0 allocated' "$TMP/w$w.log")
    got=$(echo "$line" | sed -E 's/.*allocated ([0-9]+) bytes.*/\1/')
    plan=$(echo "$line" | sed -E 's/.*tokens\) ([0-9]+) bytes.*/\1/')
    expect_eq "$w ranks: rank 0 allocated exactly the plan's $plan bytes" "$got" "$plan"
    share=$(echo "$line" | awk '{ for (i = 1; i <= NF; i++) if ($i == "state") s = $(i + 1); for (i = 1; i <= NF; i++) if ($i == "of") f = $(i + 1) }
                                END { n = '"$w"'; print (s >= f / n && s <= f / n + 18 * 5 * n) ? "yes" : "no: " s " of " f }')
    expect_eq "$w ranks: the training state per rank is 1/$w of the model's (plus < 1 element per unit of padding)" "$share" "yes"
done

# ---- determinism and resume, bit for bit (the same W)
$SFT train $RUN --nproc 2 --out "$TMP/w2b" >/dev/null 2>&1
same() { cmp -s "$1/model.safetensors" "$2/model.safetensors" && cmp -s "$1/rank0-of-2/optimizer.bin" "$2/rank0-of-2/optimizer.bin" &&
         cmp -s "$1/rank1-of-2/optimizer.bin" "$2/rank1-of-2/optimizer.bin" && echo same; }
expect_eq "two 2-rank runs give the same checkpoint, bit for bit" "$(same "$TMP/w2" "$TMP/w2b")" "same"
$SFT train ${RUN/--stop-at 3/--stop-at 2} --nproc 2 --out "$TMP/r2" >/dev/null 2>&1
$SFT train --resume "$TMP/r2" --data "$TMP/gqa.shard" --stop-at 3 --nproc 2 --save-dtype f32 --out "$TMP/r2" >"$TMP/r2.log" 2>&1
expect_eq "a 2-rank run resumed after step 2 gives the uninterrupted checkpoint, bit for bit" "$(same "$TMP/w2" "$TMP/r2")" "same"

# ---- errors: one line, a non-zero exit, no hang
expect_error "resume a 2-rank checkpoint with 4 ranks" "saved by another number of ranks, this run has 4" \
    $SFT train --resume "$TMP/r2" --data "$TMP/gqa.shard" --nproc 4 --out "$TMP/x"
expect_error "resume a 1-rank checkpoint with 2 ranks" "saved by 1 rank, this run has 2" \
    $SFT train --resume "$TMP/w1" --data "$TMP/gqa.shard" --nproc 2 --out "$TMP/x"
expect_error "3 ranks do not divide a batch of 4" "3 ranks do not divide the batch of 4 sequences" $SFT train $RUN --nproc 3 --out "$TMP/x"
port=$((20000 + RANDOM % 20000))   # a loopback port nothing listens on
while (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((20000 + RANDOM % 20000)); done
expect_error "rank 1 of 2 without MASTER_ADDR" "MASTER_ADDR" env -u MASTER_ADDR RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_PORT=$port $SFT train $RUN --out "$TMP/x"
expect_error "rank 1 of 2 with nobody at MASTER_ADDR:MASTER_PORT" "cannot connect to rank 0" \
    env RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port SFT_LAUNCH_TIMEOUT=2 $SFT train $RUN --out "$TMP/x"
expect_error "rank 0 of 2 whose peer never comes" "did not connect within 2 s" \
    env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port SFT_LAUNCH_TIMEOUT=2 $SFT train $RUN --out "$TMP/x"
# a rank killed mid-run: the run stops within the timeout, the message names it, no checkpoint is left
LONG="--model $GQA --data $TMP/gqa.shard --batch 2 --epochs 2000 --lr 1e-3"
start=$SECONDS
$SFT train $LONG --nproc 2 --out "$TMP/dead" >"$TMP/dead.out" 2>"$TMP/dead.err" &
pid=$!
for i in $(seq 50); do grep -q '^step 3/' "$TMP/dead.out" && break; sleep 0.2; done
pkill -9 -f -n "sft train $LONG" 2>/dev/null   # the newest: a rank (the parent started first)
wait $pid
rc=$?
expect_eq "a killed rank ends the run with a non-zero exit within 30 s" "$([ $rc -ne 0 ] && [ $((SECONDS - start)) -lt 30 ] && echo yes)" "yes"
expect_eq "and the message names the rank" "$(grep -cE 'rank [01] .*(killed|signal)' "$TMP/dead.err" | sed 's/^[1-9][0-9]*$/yes/')" "yes"
expect_eq "and no checkpoint was written" "$([ ! -e "$TMP/dead/model.safetensors" ] && echo none)" "none"
summary
