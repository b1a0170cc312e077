# The tensor-core primitives in the CUDA emulation (common/mma.cuh) must catch the bugs
# they exist for: runs the kernels of tests/cuemu_neg_mma.cu (built by `make emu`) in
# every schedule and checks each message (file:line where the emulator can name it),
# and that the clean kernel stays clean, also under ASan+UBSan (lanes read each
# other's fragments on their fiber stacks).
# sanitize: skip (no C program here: `make test SANITIZE=1` does not rebuild these)
. tests/lib.sh
NEG=build/tests/cuemu_neg_mma
NEG_ASAN=build/tests/asan/cuemu_neg_mma
SRC=tests/cuemu_neg_mma.cu
SEED=${CUEMU_SEED:-1234}
for bin in $NEG $NEG_ASAN; do
    [ -x "$bin" ] || { fail "$bin is built" "run make emu first"; summary; exit; }
done
line_of() { grep -n -- "$1" "$SRC" | head -1 | cut -d: -f1; }   # the source line holding a marker comment

lo=$(line_of "lanes 0-15 multiply here")
hi=$(line_of "lanes 16-31 multiply here")
ldm=$(line_of "the rows start at element 4")
cpa=$(line_of "in + 8 bytes: not 16-byte aligned")
for s in forward reverse random:$SEED; do
    expect_error "a diverged mma.sync names both call sites [$s]" \
        "^cuemu: block \(0,0,0\): divergent mma\.sync: thread \(0,0,0\) at $SRC:$lo, thread \(16,0,0\) at $SRC:$hi \(all 32 lanes of a warp must execute the same mma\.sync together\)$" \
        env CUEMU_SCHEDULE=$s $NEG diverged_mma
    expect_error "a missing cp.async.wait_group reads poison [$s]" "^missing_wait: 256 of 256 values wrong$" \
        env CUEMU_SCHEDULE=$s $NEG missing_wait
    expect_error "a wait_group that leaves the group read in flight reads poison [$s]" "^wrong_group: 128 of 256 values wrong$" \
        env CUEMU_SCHEDULE=$s $NEG wrong_group
    expect_error "a misaligned ldmatrix row address [$s]" \
        "^cuemu: block \(0,0,0\): thread \(([0-9]+),0,0\) \(lane \1\) gives ldmatrix\.x4 the row address 0x[0-9a-f]+, which is not 16-byte aligned, at $SRC:$ldm$" \
        env CUEMU_SCHEDULE=$s $NEG misaligned_ldmatrix
    expect_error "a misaligned cp.async source [$s]" \
        "^cuemu: block \(0,0,0\): thread \(0,0,0\): cp\.async of 16 bytes with a source address 0x[0-9a-f]+ that is not 16-byte aligned, at $SRC:$cpa$" \
        env CUEMU_SCHEDULE=$s $NEG misaligned_cp_async
    expect_ok "cp.async + ldmatrix + mma.sync: clean kernel [$s]" env CUEMU_SCHEDULE=$s $NEG ok
    expect_ok "ASan+UBSan: clean kernel, no false report [$s]" \
        env ASAN_OPTIONS=detect_stack_use_after_return=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
        CUEMU_SCHEDULE=$s $NEG_ASAN ok
done
summary
