/*
 * dev/gemm.cu: a teaching GEMM, out (N,OC) = inp (N,C) . weight (OC,C)^T (the
 * layout of nn.Linear and of s1.c's matmul_forward(), its reference). The
 * programs keep cuBLAS (common/matmul.cuh); these versions exist to be read.
 *
 *   make dev && dev/run gemm [VERSION]
 *
 *   v1  one thread per output, straight from global memory. Lane l of a warp
 *       computes column oc0 + l and reads weight row oc0 + l: the 32 lanes are
 *       C elements apart, 32 sectors per request, and every element of inp and
 *       weight is read again by every thread that needs it (C/1 reuse: none).
 *   v2  32x32 tiles staged in shared memory: a block loads a tile of inp and of
 *       weight once (coalesced: lane = k) and each thread then reads them 32
 *       times from shared memory, so global traffic falls by the tile width.
 *       But the weight tile is read as Bs[lane][k]: 32 lanes, one column of a
 *       32-float-wide array, all in bank k mod 32: a 32-way bank conflict.
 *   v3  the same with the weight tile padded to 33 floats a row: Bs[lane][k]
 *       is word 33 lane + k, bank (lane + k) mod 32, all different: no conflict
 *       (exercise 3 asks for this).
 */
#include "dev/dev.cuh"

#define TILE 32
#define ROWS_PER_THREAD 4    // a block of 32 x 8 threads computes a 32 x 32 tile: 4 rows per thread

// ----------------------------------------------------------------------------
// v1: naive

__global__ void gemm_v1_kernel(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    int oc = blockIdx.x * blockDim.x + threadIdx.x, n = blockIdx.y * blockDim.y + threadIdx.y;
    if (n >= N || oc >= OC) return;
    float acc = 0.0f;
    for (int k = 0; k < C; k++)
        acc += __bfloat162float(cu_ld(&inp[(size_t)n * C + k])) * __bfloat162float(cu_ld(&weight[(size_t)oc * C + k]));
    cu_st(&out[(size_t)n * OC + oc], round_bf16(acc));
}

static void gemm_v1(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    dim3 block(32, 8), grid((OC + 31) / 32, (N + 7) / 8);
    CU_LAUNCH(gemm_v1_kernel, grid, block, 0, 0)(out, inp, weight, N, C, OC);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// v2 (PAD 0) and v3 (PAD 1): shared-memory tiles. Block (32, 8) owns the output
// tile rows n0..n0+31, columns oc0..oc0+31; thread (tx, ty) computes rows
// ty, ty+8, ty+16, ty+24 of column tx. Tiles outside the matrices load zeros.

template <int PAD>
__global__ void gemm_tiled_kernel(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    __shared__ float As[TILE][TILE];         // As[r][k] = inp[n0 + r][k0 + k]: read as As[ty..][k], a broadcast
    __shared__ float Bs[TILE][TILE + PAD];   // Bs[o][k] = weight[oc0 + o][k0 + k]: read as Bs[tx][k]
    int tx = threadIdx.x, ty = threadIdx.y;
    int n0 = blockIdx.y * TILE, oc0 = blockIdx.x * TILE;
    float acc[ROWS_PER_THREAD] = {0.0f};
    for (int k0 = 0; k0 < C; k0 += TILE) {
        for (int i = 0; i < ROWS_PER_THREAD; i++) {   // lane = k: each warp loads 32 contiguous elements of a row
            int r = ty + 8 * i, k = k0 + tx;
            bool a_in = n0 + r < N && k < C, b_in = oc0 + r < OC && k < C;
            floatX a = a_in ? cu_ld(&inp[(size_t)(n0 + r) * C + k]) : round_bf16(0.0f);
            floatX b = b_in ? cu_ld(&weight[(size_t)(oc0 + r) * C + k]) : round_bf16(0.0f);
            cu_st(&As[r][tx], __bfloat162float(a));
            cu_st(&Bs[r][tx], __bfloat162float(b));
        }
        __syncthreads();
        for (int k = 0; k < TILE; k++) {
            float b = cu_ld(&Bs[tx][k]);   // lane tx reads row tx: PAD 0 puts all 32 in one bank
            for (int i = 0; i < ROWS_PER_THREAD; i++) acc[i] += cu_ld(&As[ty + 8 * i][k]) * b;
        }
        __syncthreads();   // the tiles are overwritten next round
    }
    for (int i = 0; i < ROWS_PER_THREAD; i++) {
        int n = n0 + ty + 8 * i, oc = oc0 + tx;
        if (n < N && oc < OC) cu_st(&out[(size_t)n * OC + oc], round_bf16(acc[i]));
    }
}

static void gemm_v2(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    dim3 block(32, 8), grid((OC + TILE - 1) / TILE, (N + TILE - 1) / TILE);
    CU_LAUNCH(gemm_tiled_kernel<0>, grid, block, 0, 0)(out, inp, weight, N, C, OC);
    cudaCheck(cudaGetLastError());
}

static void gemm_v3(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    dim3 block(32, 8), grid((OC + TILE - 1) / TILE, (N + TILE - 1) / TILE);
    CU_LAUNCH(gemm_tiled_kernel<1>, grid, block, 0, 0)(out, inp, weight, N, C, OC);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// the checks

typedef void (*GemmFn)(floatX *, const floatX *, const floatX *, int, int, int);

// Both sides sum C products of bf16 values in fp32, in different orders:
// 2 C eps sum_k |x w| each, so 2 (C + 1) eps S bounds their difference; the
// kernel rounds the result to bf16 once more (u |ref|).
static void check_gemm(const char *label, GemmFn fn, int N, int C, int OC) {
    char name[160];
    snprintf(name, sizeof name, "gemm %s vs s1.c matmul_forward, N=%d, C=%d, OC=%d (bound u|ref| + 2(C+1)eps sum|xw|)", label, N, C, OC);
    TEST_BEGIN(name);
    kt_seed(5);
    float *x = host_random((size_t)N * C, 1.0f), *w = host_random((size_t)OC * C, 1.0f);
    float *ref = (float *)mallocCheck((size_t)N * OC * sizeof(float)), *extra = (float *)mallocCheck((size_t)N * OC * sizeof(float));
    s1ref_matmul(ref, x, w, NULL, N, C, OC);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            float S = 0.0f;
            for (int k = 0; k < C; k++) S += fabsf(x[(size_t)n * C + k] * w[(size_t)o * C + k]);
            extra[(size_t)n * OC + o] = 2.0f * (C + 1) * DEV_EPS * S;
        }
    floatX *d_x = to_device(x, (size_t)N * C), *d_w = to_device(w, (size_t)OC * C), *d_out = dev_alloc<floatX>((size_t)N * OC);
    fn(d_out, d_x, d_w, N, C, OC);
    float *got = from_device(d_out, (size_t)N * OC);
    check_close("gemm", got, ref, (size_t)N * OC, DEV_U, 0.0f, extra);
    free(x); free(w); free(ref); free(extra); free(got);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// a profiled shape (multiples of 32: no lane idles) and a ragged one
static void check_v1(void) { check_gemm("v1", gemm_v1, 64, 64, 64); check_gemm("v1", gemm_v1, 7, 40, 19); }
static void check_v2(void) { check_gemm("v2", gemm_v2, 64, 64, 64); check_gemm("v2", gemm_v2, 7, 40, 19); }
static void check_v3(void) { check_gemm("v3", gemm_v3, 64, 64, 64); check_gemm("v3", gemm_v3, 7, 40, 19); }

#define NB 4096   // the benchmark: 4096 x 4096 x 4096
static floatX *bx, *bw, *bo;
static void bench_setup(void) {
    if (bx) return;
    bx = dev_alloc<floatX>((size_t)NB * NB);
    bw = dev_alloc<floatX>((size_t)NB * NB);
    bo = dev_alloc<floatX>((size_t)NB * NB);
}
static void bench_v1(void) { bench_setup(); gemm_v1(bo, bx, bw, NB, NB, NB); }
static void bench_v2(void) { bench_setup(); gemm_v2(bo, bx, bw, NB, NB, NB); }
static void bench_v3(void) { bench_setup(); gemm_v3(bo, bx, bw, NB, NB, NB); }

#ifdef DEV_EXERCISE   // dev/grade: a student's file (exercise 3), listed as version "x"
#include DEV_EXERCISE
static void check_x(void) { check_gemm("x (exercise 3)", exercise_gemm, 64, 64, 64); check_gemm("x (exercise 3)", exercise_gemm, 7, 40, 19); }
static void bench_x(void) { bench_setup(); exercise_gemm(bo, bx, bw, NB, NB, NB); }
#endif

// model: the three matrices once in bf16 (6 NB^2 bytes), 2 NB^3 FLOPs (fp32 CUDA cores: no tensor cores here)
#define GEMM_BYTES (6.0 * NB * NB)
#define GEMM_FLOPS (2.0 * NB * NB * NB)
static const DevVersion versions[] = {
    {"1", "one thread per output from global memory (weight reads: 32 sectors per request)", check_v1, bench_v1, GEMM_BYTES, GEMM_FLOPS},
    {"2", "32x32 tiles in shared memory (reuse 32x; the weight tile read down a column: 32-way bank conflict)", check_v2, bench_v2, GEMM_BYTES, GEMM_FLOPS},
    {"3", "tiles with the weight tile padded to 33 floats a row: no bank conflict", check_v3, bench_v3, GEMM_BYTES, GEMM_FLOPS},
#ifdef DEV_EXERCISE
    {"x", "the exercise file given to dev/grade", check_x, bench_x, GEMM_BYTES, GEMM_FLOPS},
#endif
};

int main(int argc, char **argv) { return dev_main("gemm", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
