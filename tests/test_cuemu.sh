# The CUDA emulation (common/cuemu.h) must catch the bugs it exists for.
# Runs the purpose-built kernels of tests/cuemu_neg_kernels.cu (built by `make emu`:
# a normal build and an ASan+UBSan single-thread build) and checks the messages;
# checks that clean kernels stay clean under ASan and Valgrind, and that the kernel
# tests pass with the ucontext switch and with 2 OS threads.
# sanitize: skip (no C program here: `make test SANITIZE=1` does not rebuild these)
. tests/lib.sh
NEG=build/tests/cuemu_neg_kernels
NEG_ASAN=build/tests/asan/cuemu_neg_kernels
NEG_TSAN=build/tests/tsan/cuemu_neg_kernels
SRC=tests/cuemu_neg_kernels.cu
SEED=${CUEMU_SEED:-1234}
SCHEDULES="forward reverse random:$SEED"

for bin in $NEG $NEG_ASAN $NEG_TSAN build/tests/ucontext/emu_cuemu_kernels build/tests/emu_cuemu_kernels; do
    [ -x "$bin" ] || { fail "$bin is built" "run make emu first"; summary; exit; }
done

line_of() { grep -n -- "$1" "$SRC" | head -1 | cut -d: -f1; }   # the source line holding a marker comment

# A missing barrier: right by luck in forward order, wrong in the others.
expect_ok "missing barrier: forward order happens to hide it" env CUEMU_SCHEDULE=forward $NEG missing_barrier
expect_error "missing barrier: wrong output in reverse order" "missing_barrier: [1-9][0-9]* of 255 values wrong" \
    env CUEMU_SCHEDULE=reverse $NEG missing_barrier
expect_error "missing barrier: wrong output in random order" "missing_barrier: [1-9][0-9]* of 255 values wrong" \
    env CUEMU_SCHEDULE=random:$SEED $NEG missing_barrier

# Errors the scheduler reports, with block, threads and source lines, in every order.
even=$(line_of "even threads wait here")
odd=$(line_of "odd threads wait here")
excl=$(line_of "lane 0 calls with a mask without lane 0")
synct=$(line_of "lane 0 never reaches the shuffle")
ldv=$(line_of "a float4 load 4 bytes past a 16-byte boundary")
stv=$(line_of "a bf16 pair stored 2 bytes past a 4-byte boundary")
for s in $SCHEDULES; do
    expect_error "divergent __syncthreads names both call sites [$s]" \
        "^cuemu: divergent __syncthreads\(\) in block \(0,0,0\): thread \([0-9]+,0,0\) waits at $SRC:($even|$odd), thread \([0-9]+,0,0\) at $SRC:($even|$odd)$" \
        env CUEMU_SCHEDULE=$s $NEG divergent_barrier
    if grep -qE "$SRC:$even(,|\$)" "$TMP/err" && grep -qE "$SRC:$odd(,|\$)" "$TMP/err"; then
        pass "divergent __syncthreads: lines $even and $odd both named [$s]"
    else fail "divergent __syncthreads: lines $even and $odd both named [$s]" "$(cat "$TMP/err")"; fi
    expect_error "shuffle mask excluding the caller [$s]" \
        "^cuemu: block \(0,0,0\): thread \(0,0,0\) \(lane 0\) calls __shfl_xor_sync with mask 0xfffffffe, which excludes the calling lane, at $SRC:$excl$" \
        env CUEMU_SCHEDULE=$s $NEG mask_excludes_caller
    expect_error "lanes in different warp operations [$s]" \
        "^cuemu: block \(0,0,0\): mismatched warp operations: .*(__shfl_xor_sync.*__shfl_down_sync|__shfl_down_sync.*__shfl_xor_sync)" \
        env CUEMU_SCHEDULE=$s $NEG mismatched_ops
    expect_error "lanes with different masks that name each other [$s]" \
        "^cuemu: block \(0,0,0\): mismatched warp operations: .*mask 0x(fffffffe|ffffffff).*mask 0x(ffffffff|fffffffe), width 32\) at $SRC:[0-9]+$" \
        env CUEMU_SCHEDULE=$s $NEG mismatched_masks
    expect_error "shuffle whose partner waits at __syncthreads: deadlock [$s]" \
        "^cuemu: deadlock in block \(0,0,0\): thread \([0-9]+,0,0\) waits in __shfl_down_sync\(mask 0xffffffff\) at $SRC:[0-9]+, but thread \(0,0,0\) waits at __syncthreads\(\) at $SRC:$synct$" \
        env CUEMU_SCHEDULE=$s $NEG warp_deadlock
    expect_error "shuffle with lanes that exited [$s]" "^cuemu: block \(0,0,0\): .*(exited while .* waits for it in|lane [0-9]+ has exited)" \
        env CUEMU_SCHEDULE=$s $NEG shuffle_after_exit
    expect_error "a float4 cu_ld 4 bytes off its 16-byte alignment is an error, as the GPU's fault [$s]" \
        "^cuemu: block \(0,0,0\): thread \([0-9]+,0,0\): cu_ld of 16 bytes at 0x[0-9a-f]+, which is not 16-byte aligned \(a GPU faults: misaligned address\), at $SRC:$ldv$" \
        env CUEMU_SCHEDULE=$s $NEG misaligned_load
    expect_error "a __nv_bfloat162 cu_st 2 bytes off its 4-byte alignment is an error [$s]" \
        "^cuemu: block \(0,0,0\): thread \([0-9]+,0,0\): cu_st of 4 bytes at 0x[0-9a-f]+, which is not 4-byte aligned \(a GPU faults: misaligned address\), at $SRC:$stv$" \
        env CUEMU_SCHEDULE=$s $NEG misaligned_store
    expect_ok "the same vector accesses, aligned, run [$s]" env CUEMU_SCHEDULE=$s $NEG aligned_vectors
done
expect_error "a launch from inside a kernel is refused" \
    "^cuemu: block \(0,0,0\), thread \(0,0,0\): kernel launch from inside a kernel" $NEG launch_in_kernel
expect_error "a host pointer given to a kernel is refused" \
    "^cuemu: $SRC:$(line_of "CU_LAUNCH(scale_kernel"): CU_LAUNCH\(scale_kernel\): argument 1 is 0x[0-9a-f]+, which is not memory from cudaMalloc" \
    $NEG host_pointer_arg
expect_error "NCCL: a rank that skips a collective stops the other after the timeout, naming where each is, no hang" \
    "^cuemu: ncclAllReduce: rank 0 of 2 waited 1 s for the other ranks in call #1 ncclAllReduce\(count 16, f32, sum\); rank 1 has made no collective call \(mismatched collectives, or a rank died\?\)$" \
    env CUEMU_NCCL_TIMEOUT=1 $NEG nccl_mismatch
expect_error "a bad CUEMU_SCHEDULE is refused" "CUEMU_SCHEDULE=sideways: expected forward, reverse or random" \
    env CUEMU_SCHEDULE=sideways $NEG ok

# A stack overflow hits the guard page (SIGSEGV) instead of another fiber's stack; a bigger stack fixes it.
rc=$( { env CUEMU_STACK_KB=64 $NEG big_locals >/dev/null 2>&1; echo $?; } 2>/dev/null )  # no "Segmentation fault" line
expect_eq "128 KiB of locals on a 64 KiB fiber stack faults (SIGSEGV)" "$rc" 139
expect_ok "... and runs with CUEMU_STACK_KB=256" env CUEMU_STACK_KB=256 $NEG big_locals

# Overflows of shared memory, under ASan (single-thread build: static __shared__ is a plain global).
asan_expect() {   # asan_expect NAME MODE REPORT KERNEL_LINE
    local name=$1 mode=$2 report=$3 line=$4
    $NEG_ASAN "$mode" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -eq 0 ]; then fail "$name" "exited 0, want an ASan report"
    elif ! grep -q "ERROR: AddressSanitizer: $report" "$TMP/err"; then fail "$name" "no $report: $(head -c 400 "$TMP/err")"
    elif ! grep -qE "#0 .* in ${mode}_kernel.* $SRC:$line" "$TMP/err"; then fail "$name" "the report does not point at $SRC:$line"
    else pass "$name"; fi
}
asan_expect "ASan: dynamic shared memory written one past its end" dynamic_smem_overflow heap-buffer-overflow \
    "$(line_of "thread n-1 writes buf\[n\]")"
asan_expect "ASan: static __shared__ array written one past its end" static_smem_overflow global-buffer-overflow \
    "$(line_of "thread 63 writes tile\[64\]")"
for s in $SCHEDULES; do
    expect_ok "ASan+UBSan: clean kernel, no false report (use-after-return checks on) [$s]" \
        env ASAN_OPTIONS=detect_stack_use_after_return=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
        CUEMU_SCHEDULE=$s $NEG_ASAN ok
done

# ThreadSanitizer (fibers announced to it): clean with blocks on 2 OS threads, and it sees a race between blocks.
expect_ok "TSan: clean kernel with CUEMU_THREADS=2, no report" env TSAN_OPTIONS=halt_on_error=1 CUEMU_THREADS=2 $NEG_TSAN ok
env TSAN_OPTIONS=exitcode=66 CUEMU_THREADS=2 $NEG_TSAN cross_block_race >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 66 ] && grep -q "WARNING: ThreadSanitizer: data race" "$TMP/err" && grep -qE "cross_block_race_kernel.* $SRC:$(line_of "not atomicAdd")" "$TMP/err"
then pass "TSan: a race between blocks on 2 OS threads is reported at the kernel line"
else fail "TSan: a race between blocks on 2 OS threads is reported at the kernel line" "exit $rc: $(head -c 400 "$TMP/err")"; fi

# Valgrind: fiber stacks are registered, so a clean kernel gives no error.
if command -v valgrind >/dev/null 2>&1; then
    expect_ok "Valgrind memcheck: clean kernel, 0 errors" valgrind -q --error-exitcode=9 $NEG ok
else
    echo "note: valgrind not found, the Valgrind check did not run"
fi

# The kernel tests with the ucontext switch, and with blocks on 2 OS threads.
for s in $SCHEDULES; do
    expect_ok "kernel tests with the ucontext switch [$s]" env CUEMU_SCHEDULE=$s build/tests/ucontext/emu_cuemu_kernels
done
expect_ok "kernel tests with CUEMU_THREADS=2 [random:$SEED]" env CUEMU_THREADS=2 CUEMU_SCHEDULE=random:$SEED \
    build/tests/emu_cuemu_kernels
summary
