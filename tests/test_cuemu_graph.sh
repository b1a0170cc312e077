# CUDA graph capture in the emulation (common/cuemu.h, "Graphs"): the calls a
# capture forbids fail as on a GPU, named at their file and line; a clean
# capture replays. Runs tests/cuemu_neg_graph.cu (built by `make emu`).
# sanitize: skip (no C program here: `make test SANITIZE=1` does not rebuild these)
. tests/lib.sh
NEG=build/tests/cuemu_neg_graph
NEG_ASAN=build/tests/asan/cuemu_neg_graph
SRC=tests/cuemu_neg_graph.cu
[ -x "$NEG" ] || { fail "$NEG is built" "run make emu first"; summary; exit; }

line_of() { grep -n -- "$1" "$SRC" | head -1 | cut -d: -f1; }   # the source line holding a marker comment
refused="CUDA error: operation not permitted when stream is capturing"

expect_ok "a clean capture replays: 3 launches, 3 additions" $NEG ok
expect_error "a synchronous cudaMemcpy during the capture is refused at its line" \
    "^$SRC:$(line_of "a synchronous copy in the capture"): $refused \(cudaMemcpy\(" $NEG sync_memcpy
expect_error "cudaStreamSynchronize of the capturing stream is refused at its line" \
    "^$SRC:$(line_of "waits for the capturing stream"): $refused \(cudaStreamSynchronize\(s\)\)" $NEG stream_sync
expect_error "cudaDeviceSynchronize during the capture is refused at its line" \
    "^$SRC:$(line_of "waits for the whole device"): $refused \(cudaDeviceSynchronize\(\)\)" $NEG device_sync
expect_error "cudaMalloc during the capture is refused at its line" \
    "^$SRC:$(line_of "an allocation a replay would not repeat"): $refused \(cudaMalloc\(" $NEG malloc
expect_error "a launch on the legacy default stream during the capture stops at its CU_LAUNCH line" \
    "^cuemu: $SRC:$(line_of "the legacy default stream in the capture"): CU_LAUNCH\(add_kernel\) on the legacy default stream while a graph is being captured" \
    $NEG legacy_launch
expect_error "a refused call invalidates the capture: cudaStreamEndCapture fails" \
    "^$SRC:$(line_of "so ending it fails"): CUDA error: operation failed due to a previous error during capture \(cudaStreamEndCapture" \
    $NEG invalidated
expect_error "a graph replayed after cudaFree of a buffer it was captured with stops at the kernel's launch line" \
    "^cuemu: $SRC:$(line_of "CU_LAUNCH(add_kernel, 1, N, 0, s)"): CU_LAUNCH\(add_kernel\): argument 1 is 0x[0-9a-f]+, which is no longer memory from cudaMalloc" \
    $NEG replay_after_free
if [ -x "$NEG_ASAN" ]; then
    expect_ok "ASan+UBSan: a clean capture and its replays, no report" \
        env ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1 $NEG_ASAN ok
else
    echo "note: $NEG_ASAN not built (make emu), the ASan check did not run"
fi
summary
