# The kernel workbench (dev/, tutorial/kernels.md): every version of every
# operation passes its check against s1.c in the three schedules (dev/run); the
# profile shows the ladders improving; every exercise's solution passes its
# grader and every stub fails it (dev/grade), as do correct but slow versions
# that miss a sheet's target. Needs `make dev` (make test builds it).
# sanitize: skip (no C program here: `make test SANITIZE=1` does not rebuild these)
. tests/lib.sh
shopt -s nullglob
for f in dev/*.cu; do
    op=$(basename "$f" .cu)
    [ -x "build/dev/$op" ] || { fail "build/dev/$op is built" "run make dev first"; continue; }
    dev/run "$op" >"$TMP/run" 2>&1
    rc=$?
    n=$(grep -c '^PASS ' "$TMP/run")
    if [ $rc -eq 0 ] && [ "$n" -gt 0 ]; then pass "dev/run $op: every version passes in 3 schedules ($n checks in forward)"
    else fail "dev/run $op: every version passes in 3 schedules" "$(grep -E '^(FAIL|  check)|FAILED' "$TMP/run" | head -5)"; fi
done

# The profile's first launch of a version: its totals line for KIND ("global load", "shared load").
first_total() {   # first_total OP VERSION KIND FIELD_REGEX
    CUEMU_PROFILE=1 "build/dev/$1" "$2" 2>&1 >/dev/null | grep -E "^cuemu profile:   $3: " | head -1 | sed -E "s|.* ([0-9.]+) $4.*|\1|"
}
expect_eq "profile: rmsnorm v1 (a thread per row) reads 21.67 sectors per load request" "$(first_total rmsnorm 1 'global load' 'sectors/request')" 21.67
expect_eq "profile: rmsnorm v2 (a warp per row) reads 2.00 (bf16: 64 B per request)" "$(first_total rmsnorm 2 'global load' 'sectors/request')" 2.00
expect_eq "profile: gemm v1 (naive) reads 16.50 sectors per load request" "$(first_total gemm 1 'global load' 'sectors/request')" 16.50
expect_eq "profile: gemm v2 (tiles) reads 2.00" "$(first_total gemm 2 'global load' 'sectors/request')" 2.00
expect_eq "profile: gemm v2's shared loads have 6.20 bank conflicts per request (the 32-way reads of the weight tile)" \
    "$(first_total gemm 2 'shared load' 'bank conflicts/request')" 6.20
expect_eq "profile: gemm v3 (padded tile) has 0 bank conflicts" "$(first_total gemm 3 'shared load' 'bank conflicts/request')" 0.00

expect_eq "profile: swiglu v1 (8 elements per thread) 16.00 sectors per load request" "$(first_total swiglu 1 'global load' 'sectors/request')" 16.00
expect_eq "profile: swiglu v2 (one per thread) 2.00" "$(first_total swiglu 2 'global load' 'sectors/request')" 2.00
expect_eq "profile: swiglu v3 (16-byte accesses) 16.00 sectors per load request, all used" "$(first_total swiglu 3 'global load' 'sectors/request')" 16.00
expect_eq "profile: swiglu v3 loads in 64 requests where v2 needs 512" "$(first_total swiglu 3 'global load' 'requests')/$(first_total swiglu 2 'global load' 'requests')" 64/512
expect_eq "profile: rmsnorm v4 (16-byte accesses) 16.00 sectors per load request, all used" "$(first_total rmsnorm 4 'global load' 'sectors/request')" 16.00
expect_eq "profile: rope v1 (a thread per row) 32.00 sectors per load request" "$(first_total rope 1 'global load' 'sectors/request')" 32.00
expect_eq "profile: rope v2 (a thread per pair) 2.00" "$(first_total rope 2 'global load' 'sectors/request')" 2.00
expect_eq "profile: rope v3 (v2 reading the cos/sin tables) 2.00" "$(first_total rope 3 'global load' 'sectors/request')" 2.00
expect_eq "profile: rope v4 (16-byte accesses) loads in 128 requests where v3 needs 1024" \
    "$(first_total rope 4 'global load' 'requests')/$(first_total rope 3 'global load' 'requests')" 128/1024
expect_eq "profile: crossentropy v1 (a thread per row) 32.00 sectors per load request" "$(first_total crossentropy 1 'global load' 'sectors/request')" 32.00
expect_eq "profile: crossentropy v2 (a block per row) 4.00 (fp32: 128 B per request)" "$(first_total crossentropy 2 'global load' 'sectors/request')" 4.00

# The graders: solutions pass, stubs fail, slow-but-correct versions miss the target.
make -s build/tests/s1_ref.o || fail "make build/tests/s1_ref.o"   # up to date before two graders use it at once
for i in 1 2 3 4 5 6; do
    sol=(dev/exercises/solutions/0$i-*.cu)
    stub=dev/exercises/$(basename "${sol[0]}")
    # the two grades at once (2 cores): each builds its own binary
    dev/grade $i "${sol[0]}" >"$TMP/s" 2>&1 & sol_pid=$!
    dev/grade $i "$stub" >"$TMP/g" 2>&1 & stub_pid=$!
    wait $sol_pid; sol_rc=$?
    wait $stub_pid; stub_rc=$?
    if [ $sol_rc -eq 0 ] && tail -1 "$TMP/s" | grep -q "^PASS exercise $i$"; then pass "dev/grade $i: the solution passes"
    else fail "dev/grade $i: the solution passes" "$(tail -5 "$TMP/s")"; fi
    if [ $stub_rc -ne 0 ] && tail -1 "$TMP/g" | grep -q "^FAIL exercise $i: "; then pass "dev/grade $i: the stub fails ($(tail -1 "$TMP/g" | cut -d: -f2-))"
    else fail "dev/grade $i: the stub fails" "$(tail -3 "$TMP/g")"; fi
done

# correct but not what the sheet asks: each misses the target the grader checks
cat >"$TMP/ex1_naive.cu" <<'X'
static void exercise_rmsnorm_forward(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    rmsnorm_forward_v1(out, rstd, inp, weight, N, C, eps);
}
X
expect_grade_fail() {   # expect_grade_fail NAME EXERCISE FILE WHY_REGEX
    dev/grade "$2" "$3" >"$TMP/g" 2>&1
    if [ $? -ne 0 ] && tail -1 "$TMP/g" | grep -qE "$4"; then pass "$1"; else fail "$1" "$(tail -2 "$TMP/g")"; fi
}
expect_grade_fail "dev/grade 1: version 1 (correct, one thread per row) misses 'at most 4 sectors'" 1 "$TMP/ex1_naive.cu" \
    "FAIL exercise 1: 21.67 sectors per global load request"
cat >"$TMP/ex2_unfused.cu" <<'X'
__global__ void add_kernel(floatX *h, const floatX *b, size_t n) {   // the residual add on its own
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) cu_st(&h[i], round_bf16(__bfloat162float(cu_ld(&h[i])) + __bfloat162float(cu_ld(&b[i]))));
}
static void exercise_rmsnorm_residual_forward(floatX *residual, floatX *out, float *rstd, const floatX *inp,
                                              const floatX *weight, int N, int C, float eps) {
    CU_LAUNCH(add_kernel, (unsigned)(((size_t)N * C + 255) / 256), 256, 0, 0)(residual, inp, (size_t)N * C);
    rmsnorm_forward(out, rstd, residual, weight, N, C, eps, 0);   // version 2: a second launch
}
X
expect_grade_fail "dev/grade 2: two launches per call miss 'one kernel launch'" 2 "$TMP/ex2_unfused.cu" "FAIL exercise 2: 4 kernel launches"
cat >"$TMP/ex3_conflicts.cu" <<'X'
static void exercise_gemm(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) { gemm_v2(out, inp, weight, N, C, OC); }
X
expect_grade_fail "dev/grade 3: version 2 (correct, unpadded tile) misses '0 bank conflicts'" 3 "$TMP/ex3_conflicts.cu" \
    "FAIL exercise 3: 6.20 bank conflicts"
cat >"$TMP/ex5_atomic.cu" <<'X'
static void exercise_embedding_backward(float *dtable, const float *dout, const uint32_t *ids_host, int N, int C, int *scratch) {
    embedding_backward_v1(dtable, dout, ids_host, N, C, scratch);   // atomicAdd inside
}
X
expect_grade_fail "dev/grade 5: version 1 (atomics) is refused" 5 "$TMP/ex5_atomic.cu" "FAIL exercise 5: (wrong results|the file uses atomics)"
summary
