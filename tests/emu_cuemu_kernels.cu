// Tests of the CUDA emulation itself (common/cuemu.h): kernels against plain C
// references, the warp-shuffle rules, launch limits, streams, graphs, memory checks. Runs under every schedule
// (tests/run.sh); also compiles with nvcc (make cuda-tests).
#include "common/cuemu.h"
#include "tests/test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float *to_device(const float *host, size_t n) {
    float *d;
    cudaCheck(cudaMalloc(&d, n * sizeof(float)));
    cudaCheck(cudaMemcpy(d, host, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

static void to_host(float *host, const float *dev, size_t n) {
    cudaCheck(cudaMemcpy(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
}

static float frand(uint32_t *state) {  // deterministic inputs in [-1, 1)
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

// ----------------------------------------------------------------------------
// Reduction: warp shuffles, a barrier, shared memory, atomicAdd

__device__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

// grid-stride: each block sums its share, thread 0 adds the block's sum to *out
__global__ void sum_kernel(float *out, const float *in, int n) {
    __shared__ float warp_sums[32];
    float v = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += in[i];
    v = warp_sum(v);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x / 32) ? warp_sums[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) atomicAdd(out, v);
    }
}

static void test_reduction(void) {
    TEST_BEGIN("reduction with shuffles, shared memory and atomicAdd");
    const int n = 100003;
    float *x = (float *)malloc(n * sizeof(float));
    uint32_t seed = 1;
    double ref = 0.0;
    for (int i = 0; i < n; i++) { x[i] = frand(&seed); ref += x[i]; }
    float *d_x = to_device(x, n), *d_out, out;
    cudaCheck(cudaMalloc(&d_out, sizeof(float)));
    cudaCheck(cudaMemset(d_out, 0, sizeof(float)));
    CU_LAUNCH(sum_kernel, 24, 256, 0, 0)(d_out, d_x, n);
    cudaCheck(cudaGetLastError());
    to_host(&out, d_out, 1);
    // fp32 partial sums of ~100k values in [-1,1): the rounding error is far below 1e-3
    CHECK(fabs(out - ref) < 1e-3, "sum %.6f, reference %.6f", out, ref);
    cudaCheck(cudaFree(d_x));
    cudaCheck(cudaFree(d_out));
    free(x);
    TEST_END();
}

// ----------------------------------------------------------------------------
// Tiled matmul: 16x16 tiles in shared memory, ragged shapes

#define TILE 16
// C (M,N) = A (M,K) @ B (K,N), row-major
__global__ void matmul_tiled_kernel(float *c, const float *a, const float *b, int M, int N, int K) {
    __shared__ float as[TILE][TILE];
    __shared__ float bs[TILE][TILE];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int t = 0; t < K; t += TILE) {
        as[threadIdx.y][threadIdx.x] = row < M && t + (int)threadIdx.x < K ? a[row * K + t + threadIdx.x] : 0.0f;
        bs[threadIdx.y][threadIdx.x] = col < N && t + (int)threadIdx.y < K ? b[(t + threadIdx.y) * N + col] : 0.0f;
        __syncthreads();
        for (int p = 0; p < TILE; p++) acc += as[threadIdx.y][p] * bs[p][threadIdx.x];
        __syncthreads();
    }
    if (row < M && col < N) c[row * N + col] = acc;
}

static void test_matmul(void) {
    TEST_BEGIN("tiled matmul, ragged 70x45 @ 45x33");
    const int M = 70, N = 33, K = 45;
    float a[M * K], b[K * N], c[M * N];
    uint32_t seed = 2;
    for (int i = 0; i < M * K; i++) a[i] = frand(&seed);
    for (int i = 0; i < K * N; i++) b[i] = frand(&seed);
    float *d_a = to_device(a, M * K), *d_b = to_device(b, K * N), *d_c;
    cudaCheck(cudaMalloc(&d_c, sizeof c));
    dim3 grid((N + TILE - 1) / TILE, (M + TILE - 1) / TILE), block(TILE, TILE);
    CU_LAUNCH(matmul_tiled_kernel, grid, block, 0, 0)(d_c, d_a, d_b, M, N, K);
    cudaCheck(cudaGetLastError());
    to_host(c, d_c, M * N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float ref = 0.0f;  // the same summation order as the kernel
            for (int p = 0; p < K; p++) ref += a[i * K + p] * b[p * N + j];
            // the order is the same; only FMA contraction may differ: 1e-5 relative to a sum of ~45 unit terms
            CHECK(fabsf(c[i * N + j] - ref) <= 1e-5f * 45, "C[%d,%d] = %g, reference %g", i, j, c[i * N + j], ref);
        }
    cudaCheck(cudaFree(d_a));
    cudaCheck(cudaFree(d_b));
    cudaCheck(cudaFree(d_c));
    TEST_END();
}

// ----------------------------------------------------------------------------
// Dynamic shared memory: an inclusive block scan, double-buffered

// out[i] = in[0] + ... + in[i] within each block of blockDim.x values
__global__ void scan_kernel(float *out, const float *in, int n) {
    CU_EXTERN_SHARED(float, buf);  // 2 * blockDim.x floats
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t, nt = blockDim.x;
    float *src = buf, *dst = buf + nt;
    src[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int offset = 1; offset < nt; offset *= 2) {
        dst[t] = t >= offset ? src[t] + src[t - offset] : src[t];
        __syncthreads();
        float *tmp = src; src = dst; dst = tmp;
    }
    if (i < n) out[i] = src[t];
}

// Emulator only: dynamic shared memory starts every block filled with 0xFF bytes (a NaN
// pattern), so a kernel that reads before it writes sees NaN, not the last block's data.
__global__ void smem_first_read_kernel(unsigned *out) {
    CU_EXTERN_SHARED(unsigned, words);
    out[blockIdx.x * blockDim.x + threadIdx.x] = words[threadIdx.x];  // read before any write
    __syncthreads();
    words[threadIdx.x] = 0;
}

static void test_dynamic_smem(void) {
    TEST_BEGIN("dynamic shared memory: block scan; 0xFF poison at every block start");
    const int n = 1000, nt = 128;
    float x[n], y[n];
    for (int i = 0; i < n; i++) x[i] = (float)(i % 5);  // small integers: every partial sum is exact
    float *d_x = to_device(x, n), *d_y;
    cudaCheck(cudaMalloc(&d_y, sizeof y));
    CU_LAUNCH(scan_kernel, (n + nt - 1) / nt, nt, 2 * nt * sizeof(float), 0)(d_y, d_x, n);
    cudaCheck(cudaGetLastError());
    to_host(y, d_y, n);
    float ref = 0.0f;
    for (int i = 0; i < n; i++) {
        ref = i % nt == 0 ? x[i] : ref + x[i];
        CHECK(y[i] == ref, "out[%d] = %g, reference %g", i, y[i], ref);
    }
    cudaCheck(cudaFree(d_x));
    cudaCheck(cudaFree(d_y));
#ifndef __CUDACC__
    unsigned *d_words, words[3 * 32];
    cudaCheck(cudaMalloc(&d_words, sizeof words));
    CU_LAUNCH(smem_first_read_kernel, 3, 32, 32 * sizeof(unsigned), 0)(d_words);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(words, d_words, sizeof words, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 3 * 32; i++) CHECK(words[i] == 0xFFFFFFFFu, "block %d read 0x%08x before writing", i / 32, words[i]);
    cudaCheck(cudaFree(d_words));
#endif
    TEST_END();
}

// ----------------------------------------------------------------------------
// Warp-per-row softmax and a template kernel

template <int ROWS_PER_BLOCK>
__global__ void softmax_rows_kernel(float *out, const float *in, int rows, int cols) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps leave early: the others' shuffles are unaffected
    const float *x = in + (size_t)row * cols;
    float m = -INFINITY;
    for (int j = lane; j < cols; j += 32) m = fmaxf(m, x[j]);
    for (int offset = 16; offset > 0; offset >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, offset));
    float s = 0.0f;
    for (int j = lane; j < cols; j += 32) s += expf(x[j] - m);
    s = warp_sum(s);
    for (int j = lane; j < cols; j += 32) out[(size_t)row * cols + j] = expf(x[j] - m) / s;
}

static void test_softmax(void) {
    TEST_BEGIN("warp-per-row softmax, template kernel, early return");
    const int rows = 37, cols = 100;
    float x[rows * cols], y[rows * cols];
    uint32_t seed = 3;
    for (int i = 0; i < rows * cols; i++) x[i] = 4.0f * frand(&seed);
    float *d_x = to_device(x, rows * cols), *d_y;
    cudaCheck(cudaMalloc(&d_y, sizeof y));
    CU_LAUNCH(CU_T(softmax_rows_kernel<4>), (rows + 3) / 4, 128, 0, 0)(d_y, d_x, rows, cols);
    cudaCheck(cudaGetLastError());
    to_host(y, d_y, rows * cols);
    for (int r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0.0;
        for (int j = 0; j < cols; j++) m = fmax(m, x[r * cols + j]);
        for (int j = 0; j < cols; j++) s += exp(x[r * cols + j] - m);
        for (int j = 0; j < cols; j++) {
            double ref = exp(x[r * cols + j] - m) / s;
            // fp32 exp and a 100-term fp32 sum: relative error well below 1e-5
            CHECK(fabs(y[r * cols + j] - ref) <= 1e-5 * ref + 1e-9, "row %d col %d: %g, reference %g", r, j,
                  y[r * cols + j], ref);
        }
    }
    cudaCheck(cudaFree(d_x));
    cudaCheck(cudaFree(d_y));
    TEST_END();
}

// ----------------------------------------------------------------------------
// Warp semantics probe: every shuffle kind with width 32, 16 and 8, and the votes.
// Expected values are written from the PTX ISA's shfl.sync pseudo-code: lanes form
// segments of `width`; idx reads base + (srcLane mod width); up/down read lane -/+
// delta unless that leaves the segment (then the caller's own value); xor reads
// lane ^ mask unless that lands in a later segment.

enum { PROBE_IDX, PROBE_UP, PROBE_DOWN, PROBE_XOR };
__global__ void shuffle_probe_kernel(int *out, int kind, int arg, int width) {
    int lane = threadIdx.x, v = 100 + lane, r = 0;
    if (kind == PROBE_IDX) r = __shfl_sync(0xffffffff, v, arg, width);
    if (kind == PROBE_UP) r = __shfl_up_sync(0xffffffff, v, arg, width);
    if (kind == PROBE_DOWN) r = __shfl_down_sync(0xffffffff, v, arg, width);
    if (kind == PROBE_XOR) r = __shfl_xor_sync(0xffffffff, v, arg, width);
    out[lane] = r;
}

// lanes 0..15 and 16..31 shuffle as two independent groups with their own masks
__global__ void split_mask_kernel(int *out) {
    int lane = threadIdx.x;
    unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    out[lane] = __shfl_down_sync(mask, lane, 1, 16);
    __syncwarp();
}

static void test_shuffle_rules(void) {
    TEST_BEGIN("shuffle rules (idx, up, down, xor) with width 32, 16, 8");
    int *d_out, out[32];
    cudaCheck(cudaMalloc(&d_out, sizeof out));
    const int widths[3] = {32, 16, 8};
    const int args[3] = {1, 5, 13};
    for (int wi = 0; wi < 3; wi++)
        for (int kind = PROBE_IDX; kind <= PROBE_XOR; kind++)
            for (int ai = 0; ai < 3; ai++) {
                int w = widths[wi], a = args[ai];
                CU_LAUNCH(shuffle_probe_kernel, 1, 32, 0, 0)(d_out, kind, a, w);
                cudaCheck(cudaGetLastError());
                cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
                for (int lane = 0; lane < 32; lane++) {
                    int base = lane / w * w, src = lane;
                    if (kind == PROBE_IDX) src = base + a % w;
                    if (kind == PROBE_UP) src = lane - a >= base ? lane - a : lane;
                    if (kind == PROBE_DOWN) src = lane + a < base + w ? lane + a : lane;
                    if (kind == PROBE_XOR) src = (lane ^ a) < base + w ? lane ^ a : lane;
                    CHECK(out[lane] == 100 + src, "kind %d arg %d width %d lane %d: got %d, want %d", kind, a, w,
                          lane, out[lane], 100 + src);
                }
            }
    // two spot checks written out by hand from the rules
    CU_LAUNCH(shuffle_probe_kernel, 1, 32, 0, 0)(d_out, PROBE_XOR, 13, 8);  // lane 2 ^ 13 = 15: a later segment
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    CHECK(out[2] == 102 && out[15] == 102, "xor 13 width 8: lane 2 got %d (want 102), lane 15 got %d (want 102)",
          out[2], out[15]);
    CU_LAUNCH(shuffle_probe_kernel, 1, 32, 0, 0)(d_out, PROBE_IDX, 13, 8);  // 13 mod 8 = 5 in each segment
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    CHECK(out[0] == 105 && out[9] == 113 && out[31] == 129, "idx 13 width 8: %d %d %d", out[0], out[9], out[31]);
    CU_LAUNCH(split_mask_kernel, 1, 32, 0, 0)(d_out);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    for (int lane = 0; lane < 32; lane++) {
        int want = lane % 16 == 15 ? lane : lane + 1;
        CHECK(out[lane] == want, "split masks, lane %d: got %d, want %d", lane, out[lane], want);
    }
    cudaCheck(cudaFree(d_out));
    TEST_END();
}

__global__ void vote_kernel(unsigned *out) {
    int lane = threadIdx.x;
    unsigned b = __ballot_sync(0xffffffff, lane % 3 == 0);
    int any = __any_sync(0xffffffff, lane == 17);
    int none = __any_sync(0xffffffff, 0);
    int all_but = __all_sync(0xffffffff, lane < 31);
    int all = __all_sync(0xffffffff, lane < 32);
    if (lane == 0) { out[0] = b; out[1] = any; out[2] = none; out[3] = all_but; out[4] = all; }
}

static void test_votes(void) {
    TEST_BEGIN("ballot, any, all");
    unsigned *d_out, out[5];
    cudaCheck(cudaMalloc(&d_out, sizeof out));
    CU_LAUNCH(vote_kernel, 1, 32, 0, 0)(d_out);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    unsigned want = 0;
    for (int lane = 0; lane < 32; lane += 3) want |= 1u << lane;
    CHECK(out[0] == want, "ballot 0x%08x, want 0x%08x", out[0], want);
    CHECK(out[1] == 1 && out[2] == 0, "any: %u %u, want 1 0", out[1], out[2]);
    CHECK(out[3] == 0 && out[4] == 1, "all: %u %u, want 0 1", out[3], out[4]);
    cudaCheck(cudaFree(d_out));
    TEST_END();
}

// ----------------------------------------------------------------------------
// __syncthreads_count, 2-D/3-D blocks and launch limits

__global__ void count_kernel(int *out) {
    int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int n = __syncthreads_count(t % 4 == 1);
    if (t == 0) out[blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z)] = n;
}

__global__ void mark_kernel(int *flag) { *flag = 1; }

static int launch_ran(dim3 grid, dim3 block, size_t smem, cudaError_t *err) {
    int *d_flag, flag = 0;
    cudaCheck(cudaMalloc(&d_flag, sizeof(int)));
    cudaCheck(cudaMemset(d_flag, 0, sizeof(int)));
    CU_LAUNCH(mark_kernel, grid, block, smem, 0)(d_flag);
    *err = cudaGetLastError();
    cudaCheck(cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost));
    cudaCheck(cudaFree(d_flag));
    return flag;
}

static void test_launch_limits(void) {
    TEST_BEGIN("3-D launch, __syncthreads_count, CUDA's launch limits");
    int *d_out, out[12];
    cudaCheck(cudaMalloc(&d_out, sizeof out));
    CU_LAUNCH(count_kernel, dim3(3, 2, 2), dim3(8, 4, 3), 0, 0)(d_out);  // 96 threads, 24 with t % 4 == 1
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    for (int b = 0; b < 12; b++) CHECK(out[b] == 24, "block %d counted %d, want 24", b, out[b]);
    cudaCheck(cudaFree(d_out));

    struct { dim3 grid, block; size_t smem; cudaError_t want; const char *what; } cases[] = {
        {dim3(1), dim3(1024), 0, cudaSuccess, "1024 threads"},
        {dim3(1), dim3(1025), 0, cudaErrorInvalidConfiguration, "1025 threads"},
        {dim3(1), dim3(32, 33), 0, cudaErrorInvalidConfiguration, "32x33 threads"},
        {dim3(1), dim3(1, 1, 65), 0, cudaErrorInvalidConfiguration, "block.z 65"},
        {dim3(0), dim3(32), 0, cudaErrorInvalidConfiguration, "empty grid"},
        {dim3(1, 65536), dim3(32), 0, cudaErrorInvalidConfiguration, "grid.y 65536"},
        {dim3(1), dim3(32), 48 * 1024, cudaSuccess, "48 KiB dynamic shared memory"},
        {dim3(1), dim3(32), 48 * 1024 + 1, cudaErrorInvalidValue, "48 KiB + 1 without opt-in"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cudaError_t err;
        int ran = launch_ran(cases[i].grid, cases[i].block, cases[i].smem, &err);
        CHECK(err == cases[i].want, "%s: error %s, want %s", cases[i].what, cudaGetErrorName(err),
              cudaGetErrorName(cases[i].want));
        CHECK(ran == (cases[i].want == cudaSuccess), "%s: the kernel %s", cases[i].what, ran ? "ran" : "did not run");
    }
    cudaCheck(cudaFuncSetAttribute(mark_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024));
    cudaError_t err;
    int ran = launch_ran(dim3(1), dim3(32), 100 * 1024, &err);
    CHECK(err == cudaSuccess && ran, "100 KiB after opt-in: %s, ran %d", cudaGetErrorName(err), ran);
    ran = launch_ran(dim3(1), dim3(32), 100 * 1024 + 4, &err);
    CHECK(err == cudaErrorInvalidValue && !ran, "100 KiB + 4 after a 100 KiB opt-in: %s", cudaGetErrorName(err));
    CHECK(cudaFuncSetAttribute(mark_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) ==
              cudaErrorInvalidValue, "an opt-in above 227 KiB must fail");
    (void)cudaGetLastError();
    TEST_END();
}

// ----------------------------------------------------------------------------
// Kernels without arguments, templates with several parameters, __device__ and __constant__ symbols

__device__ int launches_seen;
__constant__ float coefficients[4];

__global__ void count_launch_kernel() { atomicAdd(&launches_seen, 1); }

template <typename T, int SCALE>
__global__ void scaled_coefficients_kernel(T *out) { out[threadIdx.x] = (T)(SCALE * coefficients[threadIdx.x]); }

static void test_symbols_and_templates(void) {
    TEST_BEGIN("zero-argument kernel, two-parameter template kernel, __device__ and __constant__ symbols");
    int zero = 0, seen = -1;
    cudaCheck(cudaMemcpyToSymbol(launches_seen, &zero, sizeof zero));
    CU_LAUNCH(count_launch_kernel, 3, 5, 0, 0)();
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpyFromSymbol(&seen, launches_seen, sizeof seen));
    CHECK(seen == 15, "3 blocks of 5 threads counted %d", seen);
    const float c[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    cudaCheck(cudaMemcpyToSymbol(coefficients, c, sizeof c));
    int *d_out, out[4];
    cudaCheck(cudaMalloc(&d_out, sizeof out));
    CU_LAUNCH(CU_T(scaled_coefficients_kernel<int, 3>), 1, 4, 0, 0)(d_out);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 4; i++) CHECK(out[i] == 3 * (i + 1), "out[%d] = %d, want %d", i, out[i], 3 * (i + 1));
    cudaCheck(cudaFree(d_out));
    TEST_END();
}

// ----------------------------------------------------------------------------
// Streams: work on a created stream runs when something waits for it, so missing
// synchronisation shows as stale data. The stale reads are checked only in the
// emulator (on a GPU they are races that may or may not show).

__global__ void fill_kernel(float *x, float value, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = value;
}

__global__ void copy_kernel(float *dst, const float *src, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = src[i];
}

static void test_streams(void) {
    TEST_BEGIN("streams: queued work, event dependencies, default-stream waits, event timing");
    const int n = 64;
    float *x, *y, host[n];
    cudaCheck(cudaMalloc(&x, n * sizeof(float)));
    cudaCheck(cudaMalloc(&y, n * sizeof(float)));
    cudaCheck(cudaMemset(x, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(y, 0, n * sizeof(float)));
    cudaStream_t a, b, free_running;
    cudaCheck(cudaStreamCreate(&a));
    cudaCheck(cudaStreamCreate(&b));
    cudaCheck(cudaStreamCreateWithFlags(&free_running, cudaStreamNonBlocking));
    cudaEvent_t written, start, stop;
    cudaCheck(cudaEventCreate(&written));
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));

    // an asynchronous copy to the host is there only after the stream is synchronised
    for (int i = 0; i < n; i++) host[i] = -1.0f;
    cudaCheck(cudaEventRecord(start, a));
    CU_LAUNCH(fill_kernel, 1, n, 0, a)(x, 1.0f, n);
    cudaCheck(cudaMemcpyAsync(host, x, n * sizeof(float), cudaMemcpyDeviceToHost, a));
    cudaCheck(cudaEventRecord(stop, a));
#ifndef __CUDACC__
    float ms;
    CHECK(host[0] == -1.0f, "an unsynchronised copy already arrived (%g)", host[0]);
    CHECK(cudaEventElapsedTime(&ms, start, stop) == cudaErrorNotReady, "events not reached yet must be NotReady");
    (void)cudaGetLastError();
#endif
    cudaCheck(cudaStreamSynchronize(a));
    CHECK(host[0] == 1.0f && host[n - 1] == 1.0f, "after cudaStreamSynchronize: %g %g", host[0], host[n - 1]);
    float elapsed = -1.0f;
    cudaCheck(cudaEventElapsedTime(&elapsed, start, stop));
    CHECK(elapsed >= 0.0f, "elapsed time %g ms", elapsed);

    // stream b reads what stream a writes: right with the event, stale without it
    CU_LAUNCH(fill_kernel, 1, n, 0, a)(x, 2.0f, n);
    cudaCheck(cudaEventRecord(written, a));
    cudaCheck(cudaStreamWaitEvent(b, written, 0));
    CU_LAUNCH(copy_kernel, 1, n, 0, b)(y, x, n);
    cudaCheck(cudaStreamSynchronize(b));
    cudaCheck(cudaMemcpy(host, y, n * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(host[5] == 2.0f, "with the event, b read %g, want 2", host[5]);
#ifndef __CUDACC__
    CU_LAUNCH(fill_kernel, 1, n, 0, a)(x, 3.0f, n);
    CU_LAUNCH(copy_kernel, 1, n, 0, b)(y, x, n);  // the missing cudaStreamWaitEvent
    cudaCheck(cudaStreamSynchronize(b));
    cudaCheck(cudaMemcpy(host, y, n * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(host[5] == 2.0f, "without the event b must read the old value 2 here, read %g", host[5]);
#endif
    cudaCheck(cudaDeviceSynchronize());

    // the default stream waits for blocking streams, not for non-blocking ones
    CU_LAUNCH(fill_kernel, 1, n, 0, a)(x, 4.0f, n);
    cudaCheck(cudaMemcpy(host, x, n * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(host[7] == 4.0f, "cudaMemcpy after work on a blocking stream read %g, want 4", host[7]);
    CU_LAUNCH(fill_kernel, 1, n, 0, free_running)(x, 5.0f, n);
#ifndef __CUDACC__
    cudaCheck(cudaMemcpy(host, x, n * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(host[7] == 4.0f, "cudaMemcpy must not wait for a non-blocking stream: read %g", host[7]);
#endif
    cudaCheck(cudaStreamSynchronize(free_running));
    cudaCheck(cudaMemcpy(host, x, n * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(host[7] == 5.0f, "after synchronising the non-blocking stream: %g", host[7]);

    cudaCheck(cudaEventDestroy(written));
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    cudaCheck(cudaStreamDestroy(a));
    cudaCheck(cudaStreamDestroy(b));
    cudaCheck(cudaStreamDestroy(free_running));
    cudaCheck(cudaFree(x));
    cudaCheck(cudaFree(y));
    TEST_END();
}

// ----------------------------------------------------------------------------
// Graphs: stream capture records the work instead of running it, with the
// arguments of the moment of capture; each launch of the graph replays it.

__global__ void scale_add_kernel(float *y, const float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i];
}

static void test_graphs(void) {
    TEST_BEGIN("graphs: capture records without running, each launch replays in stream order, copies read their source then");
    const int n = 40;
    float *x, *y, host[n], ones[n];
    for (int i = 0; i < n; i++) ones[i] = 1.0f;
    cudaCheck(cudaMalloc(&x, n * sizeof(float)));
    cudaCheck(cudaMalloc(&y, n * sizeof(float)));
    cudaCheck(cudaMemset(y, 0, n * sizeof(float)));
    cudaStream_t s, other;
    cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaCheck(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking));
    cudaStreamCaptureStatus status;
    cudaCheck(cudaStreamIsCapturing(s, &status));
    CHECK(status == cudaStreamCaptureStatusNone, "a fresh stream is capturing");

    // the graph: x = 1 (a copy from pinned host memory), y += 2 x twice, x = 0 (a memset)
    float *pinned;
    cudaCheck(cudaMallocHost((void **)&pinned, n * sizeof(float)));
    memcpy(pinned, ones, sizeof ones);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cudaCheck(cudaStreamIsCapturing(s, &status));
    CHECK(status == cudaStreamCaptureStatusActive, "capturing: status %d", (int)status);
    cudaCheck(cudaMemcpyAsync(x, pinned, n * sizeof(float), cudaMemcpyHostToDevice, s));
    CU_LAUNCH(scale_add_kernel, 2, 32, 0, s)(y, x, 2.0f, n);
    CU_LAUNCH(scale_add_kernel, 2, 32, 0, s)(y, x, 2.0f, n);
    cudaCheck(cudaMemsetAsync(x, 0, n * sizeof(float), s));
    cudaCheck(cudaStreamEndCapture(s, &graph));
    cudaCheck(cudaGraphInstantiate(&exec, graph, 0));
    cudaCheck(cudaGraphDestroy(graph));   // the instantiated graph stays usable
    cudaCheck(cudaStreamSynchronize(s));
    cudaCheck(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost));
    CHECK(host[0] == 0.0f && host[n - 1] == 0.0f, "captured work ran during the capture: y = %g", host[0]);

    cudaCheck(cudaGraphLaunch(exec, s));
    cudaCheck(cudaStreamSynchronize(s));
    cudaCheck(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost));
    CHECK(host[0] == 4.0f && host[n - 1] == 4.0f, "after one launch y = %g %g, want 4", host[0], host[n - 1]);
    cudaCheck(cudaMemcpy(host, x, sizeof host, cudaMemcpyDeviceToHost));
    CHECK(host[3] == 0.0f, "the graph's memset did not run: x = %g", host[3]);

    // the copy node reads the pinned memory at each launch; two launches on another stream run in its order
    for (int i = 0; i < n; i++) pinned[i] = 0.5f;
    cudaCheck(cudaGraphLaunch(exec, other));
    cudaCheck(cudaGraphLaunch(exec, other));
    cudaCheck(cudaStreamSynchronize(other));
    cudaCheck(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost));
    CHECK(host[0] == 8.0f && host[n - 1] == 8.0f, "after three launches y = %g %g, want 4 + 2 x 2", host[0], host[n - 1]);

    cudaCheck(cudaGraphExecDestroy(exec));
    cudaCheck(cudaFreeHost(pinned));
    cudaCheck(cudaStreamDestroy(s));
    cudaCheck(cudaStreamDestroy(other));
    cudaCheck(cudaFree(x));
    cudaCheck(cudaFree(y));
    TEST_END();
}

// ----------------------------------------------------------------------------
// The emulator's memory checks: cudaMalloc blocks are recorded, so host pointers and
// overflowing copies fail as on a GPU instead of silently working on the CPU.

__global__ void add_one_kernel(float *x, int n) {
    if ((int)threadIdx.x < n) x[threadIdx.x] += 1.0f;
}

static void test_memory_checks(void) {
    TEST_BEGIN("memory checks: bad frees and copies fail, slices and nullptr are fine");
    float *d, host[8] = {0};
    cudaCheck(cudaMalloc(&d, sizeof host));
    cudaCheck(cudaMemset(d, 0, sizeof host));
    CU_LAUNCH(add_one_kernel, 1, 32, 0, 0)(d + 4, 4);  // a slice of an allocation
    CU_LAUNCH(add_one_kernel, 1, 32, 0, 0)(d + 8, 0);  // an empty slice at its end
    CU_LAUNCH(add_one_kernel, 1, 32, 0, 0)(nullptr, 0);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost));
    CHECK(host[3] == 0.0f && host[4] == 1.0f && host[7] == 1.0f, "slice: %g %g %g", host[3], host[4], host[7]);
#ifndef __CUDACC__
    CHECK(cudaMemcpy(d, host, sizeof host + 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the end of the allocation must fail");
    CHECK(cudaMemcpy(host, host + 4, 16, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
          "a device-to-host copy from host memory must fail");
    CHECK(cudaMemset(host, 0, 4) == cudaErrorInvalidValue, "cudaMemset of host memory must fail");
    CHECK(cudaFree(host) == cudaErrorInvalidValue, "cudaFree of host memory must fail");
    CHECK(cudaFree(d + 1) == cudaErrorInvalidValue, "cudaFree inside an allocation must fail");
    (void)cudaGetLastError();
#endif
    cudaCheck(cudaFree(d));
#ifndef __CUDACC__
    CHECK(cudaFree(d) == cudaErrorInvalidValue, "a second cudaFree must fail");
    (void)cudaGetLastError();
#endif
    TEST_END();
}

int main(void) {
    test_reduction();
    test_matmul();
    test_dynamic_smem();
    test_softmax();
    test_shuffle_rules();
    test_votes();
    test_launch_limits();
    test_symbols_and_templates();
    test_streams();
    test_graphs();
    test_memory_checks();
    return test_summary();
}
