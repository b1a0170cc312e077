# tests/test_mutations.sh: deliberate breakages of the training and decoding code, each of
# which a test must catch in all three thread schedules of the CUDA emulator.
#
# A test that passes is only evidence if it would fail on the bug it guards
# against. Each case below copies the sources into a scratch tree, changes ONE
# line of a kernel or of the trainer (a literal string replaced, or a line
# deleted), builds the test that guards it there, and runs it under the forward,
# reverse and random schedules: the case passes when every run FAILS. The
# unbroken sources pass the same tests in tests/run.sh.
#
# Needs `make test`'s build (the s1.c oracle object, ./s1 and the tools).
#
# A case is mostly one g++ build of an emulated test, and the cases are
# independent, so they run in lanes, one scratch tree and one process each:
# MUTATION_LANES of them (default: the cores, at most 4), case i in lane
# i % MUTATION_LANES. The lanes' lines are printed lane by lane, then the total.
# sanitize: skip (emulated CUDA builds of mutated sources: no C program of ours is rebuilt with the sanitizers here)
. tests/lib.sh
ROOT=$PWD
if [ -z "${MUTATION_LANE:-}" ]; then
    lanes=${MUTATION_LANES:-$(nproc 2>/dev/null || echo 1)}
    [ "$lanes" -gt 4 ] && [ -z "${MUTATION_LANES:-}" ] && lanes=4
    [ "$lanes" -ge 1 ] 2>/dev/null || lanes=1
    for ((lane = 0; lane < lanes; lane++)); do
        MUTATION_LANE=$lane MUTATION_LANES=$lanes bash "${BASH_SOURCE[0]}" >"$TMP/lane$lane.log" 2>&1 &
        pids[lane]=$!
    done
    for ((lane = 0; lane < lanes; lane++)); do
        wait "${pids[lane]}"; rc=$?
        grep -E '^(PASS|FAIL) |^  ' "$TMP/lane$lane.log"
        _passed=$((_passed + $(grep -c '^PASS ' "$TMP/lane$lane.log")))
        _failed=$((_failed + $(grep -c '^FAIL ' "$TMP/lane$lane.log")))
        if [ $rc -ne 0 ] && ! grep -q '^FAIL ' "$TMP/lane$lane.log"; then
            fail "mutation lane $lane" "exit status $rc: $(tail -c 300 "$TMP/lane$lane.log")"
        fi
    done
    summary
    exit
fi
CASE=0
TREE=$TMP/tree
mkdir -p "$TREE/build/tests" "$TREE/build/emu"
cp -r Makefile ./*.c ./*.cu common "$TREE/"
mkdir -p "$TREE/tests" && cp tests/*.c tests/*.cu tests/*.h tests/*.sh "$TREE/tests/"
ln -s "$ROOT/tests/fixtures" "$TREE/tests/fixtures"
cp -p build/tests/s1_ref.o "$TREE/build/tests/"   # the oracle is not mutated: reuse it (make -o below)
ln -s "$ROOT/s1" "$TREE/s1"
for tool in build/tests/tool_ckpt_diff build/emu/sample; do ln -s "$ROOT/$tool" "$TREE/$tool"; done
SCHEDULES="forward reverse random:${CUEMU_SEED:-1234}"

# mutate NAME FILE OLD NEW TARGET CMD...: in a fresh copy of FILE, replace the one
# line containing the literal OLD by the same line with OLD replaced by NEW
# (NEW = "<delete>": drop the line), build TARGET, run CMD in each schedule.
mutate() {
    local name=$1 file=$2 old=$3 new=$4 target=$5; shift 5
    CASE=$((CASE + 1))
    [ $(((CASE - 1) % MUTATION_LANES)) -eq "$MUTATION_LANE" ] || return 0
    cp "$ROOT/$file" "$TREE/$file"
    awk -v old="$old" -v new="$new" '
        { i = index($0, old) }
        i && new == "<delete>" { hits++; next }
        i { $0 = substr($0, 1, i - 1) new substr($0, i + length(old)); hits++ }
        { print }
        END { if (hits != 1) exit 3 }' "$ROOT/$file" >"$TREE/$file"
    local rc=$?
    if [ $rc -ne 0 ]; then fail "$name" "the line to break is not in $file exactly once"; return; fi
    if ! make -s -C "$TREE" -o build/tests/s1_ref.o "$target" >"$TMP/build.log" 2>&1; then
        fail "$name" "the broken tree does not build: $(head -c 300 "$TMP/build.log")"
        cp "$ROOT/$file" "$TREE/$file"
        return
    fi
    local caught=0 sched
    for sched in $SCHEDULES; do
        (cd "$TREE" && CUEMU_SCHEDULE=$sched "$@") >"$TMP/run.log" 2>&1 || caught=$((caught + 1))
    done
    cp "$ROOT/$file" "$TREE/$file"
    rm -f "$TREE/$target"
    if [ $caught -eq 3 ]; then pass "$name: caught in all 3 schedules"
    else fail "$name" "caught in $caught of 3 schedules"; fi
}

ATT=build/tests/emu_kernels_attention
BWD=build/tests/emu_kernels_backward
TRAIN=build/tests/emu_kernels_train
FWD=build/tests/emu_kernels

# the GEMMs through cuBLASLt (common/matmul.cuh)
mutate "GEMM: the DEFAULT epilogue where the bias needs BIAS (the bias pointer alone adds nothing)" common/matmul.cuh \
    "cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;" "cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;" $FWD $FWD
mutate "GEMM: the algorithm cache compares the sizes but not the alignments" common/matmul.cuh \
    "memcmp(&slot->problem, p, sizeof *p) == 0" "memcmp(&slot->problem, p, 9 * sizeof(int)) == 0" $FWD $FWD

# FlashAttention-2 backward (common/attention.cuh)
mutate "attention backward: the GQA group sum of dK, dV dropped (first head only)" common/attention.cuh \
    "for (int g = 0; g < G; g++) {" "for (int g = 0; g < 1; g++) {" $ATT $ATT
mutate "attention backward: the causal mask off by one" common/attention.cuh \
    "if (t < T && t >= u) {" "if (t < T && t > u) {" $ATT $ATT
mutate "attention backward: a missing barrier after loading the query tile" common/attention.cuh \
    "__syncthreads();   // dkdv: the query tile is loaded" "<delete>" $ATT $ATT
mutate "attention backward: D = rowsum(out * out) instead of rowsum(dout * out)" common/attention.cuh \
    "acc += __bfloat162float(dor[d]) * __bfloat162float(outr[d]);" \
    "acc += __bfloat162float(outr[d]) * __bfloat162float(outr[d]) + 0.0f * __bfloat162float(dor[d]);" $ATT $ATT
# decoding: flash-decoding with the position in device memory, and the step as a CUDA graph
GRAPH=build/tests/emu_kernels_graph
mutate "flash-decoding: the new token's own key left out (ntok = pos)" common/attention.cuh \
    "(part, q, k, v, *pos + 1, NQ, NKV, scale);" "(part, q, k, v, *pos, NQ, NKV, scale);" $ATT $ATT
mutate "batched flash-decoding: every sequence's splits score the first sequence's query row" common/attention.cuh \
    "(s.scratch, q + (size_t)n * NQ * HD," "(s.scratch, q," $ATT $ATT
mutate "batched flash-decoding: the combine merges the splits of the first sequence's length" common/attention.cuh \
    "seqs[n].scratch, pos[n] + 1, NQ, HD);" "seqs[n].scratch, pos[0] + 1, NQ, HD);" $ATT $ATT
mutate "decode: the new K/V row written one row past its position" common/attention.cuh \
    "size_t row = (size_t)*pos * KD;" "size_t row = (size_t)(*pos + 1) * KD;" $GRAPH $GRAPH
mutate "decode graph: not captured again after the model's buffers moved (only the model compared)" common/kernels.cuh \
    "kv->step_model != m || kv->step_capacity != m->capacity || kv->step_upload_capacity != m->upload_capacity;" \
    "kv->step_model != m;" $GRAPH $GRAPH
# the other backward kernels and the optimizer
mutate "linear backward: dbias not accumulated (= instead of +=)" common/matmul.cuh \
    "cu_st(&out[c], cu_ld(&out[c]) + s);" "cu_st(&out[c], s);" $BWD $BWD
mutate "AdamW: the bias correction off by one step" common/adamw.cuh \
    "pow(beta1, (double)step)" "pow(beta1, (double)(step + 1))" $BWD $BWD
mutate "RMSNorm backward: dweight sums dout * x instead of dout * y" common/rmsnorm.cuh \
    "float y = __bfloat162float(round_bf16(__bfloat162float(cu_ld(&inp[(size_t)n * C + c])) * cu_ld(&rstd[n])));" \
    "float y = __bfloat162float(cu_ld(&inp[(size_t)n * C + c]));" $BWD $BWD
mutate "SwiGLU backward: silu'(z) with sig instead of 1 - sig" common/swiglu.cuh \
    "(1.0f + g * (1.0f - sig))" "(1.0f + g * sig)" $BWD $BWD
mutate "embedding backward: a repeated id keeps only its last position" common/embedding.cuh \
    "for (int j = starts[k]; j < starts[k + 1]; j++)" "for (int j = starts[k + 1] - 1; j < starts[k + 1]; j++)" $BWD $BWD
mutate "classifier: dlogits without the -1 at the target" common/classifier.cuh \
    "(i == target ? scale : 0.0f)" "(i == target ? 0.0f : 0.0f)" $BWD $BWD
mutate "classifier: the online sum not rescaled at a new maximum" common/classifier.cuh \
    "*s = *s * expf(*m - x) + 1.0f;" "*s = *s + 1.0f;" $BWD $BWD
mutate "RoPE backward: sin not negated (the table's rotation by +angle)" common/rope.cuh \
    "s *= direction;" "s *= direction * direction;" $BWD $BWD
mutate "RoPE on fused q|k|v rows: the v heads at the k heads' place" common/rope.cuh \
    "return x.v + n * x.kv_stride + (h - NQ - NKV) * HD;" "return x.k + n * x.kv_stride + (h - NQ - NKV) * HD;" $BWD $BWD
mutate "SwiGLU on fused gate|up rows: row n read n elements on, not n I" common/swiglu.cuh \
    "{ return e + e / I * I; }" "{ return e + e / I; }" $BWD $BWD
# the model's training step (common/kernels.cuh) and the trainer (sft.cu)
mutate "fused GEMMs: a layer unit with the k bias between Wk and Wv (caught by the unit's adjacency check)" common/kernels.cuh \
    "{P_LN1W, P_QW, P_KW, P_VW, P_QB, P_KB, P_VB," "{P_LN1W, P_QW, P_KW, P_KB, P_VW, P_QB, P_VB," $TRAIN $TRAIN
mutate "fused GEMMs: the q|k|v backward over q|k only (dv and the v weights' gradient dropped)" common/kernels.cuh \
    "w[P_QW], N, H, QD + 2 * KD, m->stream);" "w[P_QW], N, H, QD + KD, m->stream);" $TRAIN $TRAIN
mutate "activation checkpointing: the layer not recomputed before its backward" common/kernels.cuh \
    "if (busy && recompute) gpu_layer_forward(" "if (0) gpu_layer_forward(" $TRAIN $TRAIN
mutate "micro-batches: the gradient not scaled by the micro-batch's share of the step" common/kernels.cuh \
    "weights, grad_scale, (int)N, (int)H" "weights, grad_scale / grad_scale, (int)N, (int)H" $TRAIN $TRAIN
mutate "sft train: the update (clipping included) before the step's accumulation ends" sft.cu \
    "for (size_t round = 0; round < rounds; round++) {" "for (size_t round = 0; round < rounds && round < 1; round++) {" \
    build/emu/sft bash tests/test_sft.sh
mutate "sft train --overlap: the compute does not wait for the prefetched layer" common/kernels.cuh \
    "    cudaCheck(cudaStreamWaitEvent(m->stream, m->gathered_ev[s], 0));" "<delete>" build/emu/sft bash tests/test_sharding.sh
# batched decoding (common/kernels.cuh and attention.cuh's kernels over all the sequences, sample --batch)
BATCH=build/tests/emu_kernels_batch
mutate "gpu_decode_batch: every sequence appends the first one's V row" common/attention.cuh \
    "k + (size_t)n * KD, v + (size_t)n * KD," "k + (size_t)n * KD, v," $BATCH $BATCH
mutate "gpu_decode_batch: the LM head over the first sequence's row only" common/kernels.cuh \
    "gpu_lm_head(m, w), NULL, (int)B, (int)H" "gpu_lm_head(m, w), NULL, 1, (int)H" $BATCH $BATCH
summary
