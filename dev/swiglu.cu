/*
 * dev/swiglu.cu: the SwiGLU workbench, out = silu(gate) * up, checked against
 * s1.c's swiglu_forward() and swiglu_backward().
 *
 *   make dev && dev/run swiglu [VERSION]
 *
 * gate and up are the two halves of each row of the fused projection (N,2I),
 * as the model's one gate|up GEMM writes them (common/swiglu.cuh).
 *
 *   v1  each thread takes 8 consecutive elements. It looks cache-friendly on a
 *       CPU, but on a GPU the 32 lanes of a warp then read elements 8 apart at
 *       each step: a request spans 512 bytes, 16 sectors, for 64 useful bytes.
 *   v2  one thread per element, grid-stride (common/swiglu.cuh's swiglu_forward_kernel,
 *       the programs' fallback): lane l reads element base + l, 64 contiguous
 *       bytes, 2 sectors.
 *   v3  8 elements per thread in one 16-byte access (common/swiglu.cuh's
 *       swiglu_forward_vec_kernel, what the programs run): a warp's request is
 *       512 contiguous bytes, 16 sectors, all used, so 8x fewer load and store
 *       instructions (and index computations) move the same bytes; the scalar
 *       kernel where I is not a multiple of 8 or a buffer is off a 16-byte boundary.
 *   b1  the backward pass, one thread per element (swiglu_backward_kernel).
 *   b2  the backward pass with 16-byte accesses (swiglu_backward_vec_kernel, what the programs run).
 * An element-wise operation is memory-bound: its speed is bytes / bandwidth, so
 * the sectors a request costs, then the instructions it takes to keep enough of
 * them in flight, are the whole story.
 */
#include "dev/dev.cuh"
#include "common/swiglu.cuh"   // v2, v3, b1 and b2 are the programs' kernels: included, never copied

#define PER_THREAD 8

__global__ void swiglu_forward_v1_kernel(floatX *out, const floatX *gateup, int N, int I) {
    int first = (int)(blockIdx.x * blockDim.x + threadIdx.x) * PER_THREAD;
    for (int e = first; e < first + PER_THREAD && e < N * I; e++) {   // lanes are PER_THREAD elements apart
        int gi = swiglu_gate_index(e, I);
        float g = __bfloat162float(cu_ld(&gateup[gi]));
        cu_st(&out[e], round_bf16(g / (1.0f + expf(-g)) * __bfloat162float(cu_ld(&gateup[gi + I]))));
    }
}

static void swiglu_forward_v1(floatX *out, const floatX *gateup, int N, int I) {
    size_t threads = ((size_t)N * I + PER_THREAD - 1) / PER_THREAD;
    CU_LAUNCH(swiglu_forward_v1_kernel, (unsigned)((threads + 255) / 256), 256, 0, 0)(out, gateup, N, I);
    cudaCheck(cudaGetLastError());
}

// the programs' one-element-per-thread kernels, launched directly (swiglu_forward() and
// swiglu_backward() run them only where I % 8 != 0 or a buffer is off a 16-byte boundary)
static void swiglu_forward_v2(floatX *out, const floatX *gateup, int N, int I) {
    CU_LAUNCH(swiglu_forward_kernel, grid_for((size_t)N * I, 256), 256, 0, 0)(out, gateup, N, I);
    cudaCheck(cudaGetLastError());
}
static void swiglu_backward_b1(floatX *dgateup, const floatX *dout, const floatX *gateup, int N, int I) {
    CU_LAUNCH(swiglu_backward_kernel, grid_for((size_t)N * I, 256), 256, 0, 0)(dgateup, dout, gateup, N, I);
    cudaCheck(cudaGetLastError());
}

// Every version reads gate and up as the model holds them: the halves of the fused rows gateup (N,2I)
typedef void (*SwigluFn)(floatX *out, const floatX *gateup, int N, int I);
typedef void (*SwigluBackwardFn)(floatX *dgateup, const floatX *dout, const floatX *gateup, int N, int I);

// gate (N,I) and up (N,I) as the fused rows (N,2I), on the host
static float *fused_rows(const float *g, const float *u, int N, int I) {
    float *gu = (float *)mallocCheck((size_t)N * 2 * I * sizeof(float));
    copy_columns(gu, 2 * (size_t)I, g, I, N, I);
    copy_columns(gu + I, 2 * (size_t)I, u, I, N, I);
    return gu;
}

// bound as tests/emu_kernels.cu: one bf16 rounding (u |ref|) + 1e-6 for expf
static void check_forward(const char *label, SwigluFn fn, int N, int I) {
    char name[160];
    snprintf(name, sizeof name, "swiglu %s vs s1.c, N=%d, I=%d (bound u|ref| + 1e-6)", label, N, I);
    TEST_BEGIN(name);
    kt_seed(21);
    size_t n = (size_t)N * I;
    float *g = host_random(n, 8.0f), *u = host_random(n, 2.0f), *gu = fused_rows(g, u, N, I);
    float *ref = (float *)mallocCheck(n * sizeof(float));
    s1ref_swiglu(ref, g, u, n);
    floatX *d_gu = to_device(gu, 2 * n), *d_out = dev_alloc<floatX>(n);
    fn(d_out, d_gu, N, I);
    float *got = from_device(d_out, n);
    check_close("swiglu", got, ref, n, DEV_U, 1e-6f, NULL);
    free(g); free(u); free(gu); free(ref); free(got);
    cudaCheck(cudaFree(d_gu)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// each output rounded to bf16 once (u |ref|) from fp32 math in another order (1e-5: |dout| <= 1, |up| <= 2);
// in place over gateup, as the model calls it
static void check_backward(const char *label, SwigluBackwardFn fn, int N, int I) {
    char name[160];
    snprintf(name, sizeof name, "swiglu backward %s vs s1.c, N=%d, I=%d (bound u|ref| + 1e-5)", label, N, I);
    TEST_BEGIN(name);
    kt_seed(22);
    size_t n = (size_t)N * I;
    float *g = host_random(n, 8.0f), *u = host_random(n, 2.0f), *dout = host_random(n, 1.0f), *gu = fused_rows(g, u, N, I);
    float *ref_dg = (float *)calloc(n, sizeof(float)), *ref_du = (float *)calloc(n, sizeof(float));
    float *got_dg = (float *)calloc(n, sizeof(float)), *got_du = (float *)calloc(n, sizeof(float));
    if (!ref_dg || !ref_du || !got_dg || !got_du) { fprintf(stderr, "out of memory\n"); exit(1); }
    s1ref_swiglu_backward(ref_dg, ref_du, dout, g, u, n);
    floatX *d_gu = to_device(gu, 2 * n), *d_dout = to_device(dout, n);
    fn(d_gu, d_dout, d_gu, N, I);
    float *got = from_device(d_gu, 2 * n);
    copy_columns(got_dg, I, got, 2 * (size_t)I, N, I);
    copy_columns(got_du, I, got + I, 2 * (size_t)I, N, I);
    check_close("dgate", got_dg, ref_dg, n, DEV_U, 1e-5f, NULL);
    check_close("dup", got_du, ref_du, n, DEV_U, 1e-5f, NULL);
    free(g); free(u); free(dout); free(gu); free(ref_dg); free(ref_du); free(got); free(got_dg); free(got_du);
    cudaCheck(cudaFree(d_gu)); cudaCheck(cudaFree(d_dout));
    TEST_END();
}

// the programs' launchers on the default stream, in the checkers' signatures
static void swiglu_forward_v3(floatX *out, const floatX *gateup, int N, int I) { swiglu_forward(out, gateup, N, I, 0); }
static void swiglu_backward_b2(floatX *dgateup, const floatX *dout, const floatX *gateup, int N, int I) {
    swiglu_backward(dgateup, dout, gateup, N, I, 0);
}
// (8, 1024): rows of 1024, which no warp's 256 elements straddle; (7, 136): the tiny GQA fixture's I
static void check_v1(void) { check_forward("v1", swiglu_forward_v1, 8, 1024); check_forward("v1", swiglu_forward_v1, 7, 136); }
static void check_v2(void) { check_forward("v2", swiglu_forward_v2, 8, 1024); check_forward("v2", swiglu_forward_v2, 7, 136); }
static void check_v3(void) { check_forward("v3", swiglu_forward_v3, 8, 1024); check_forward("v3", swiglu_forward_v3, 7, 136); }
static void check_b1(void) { check_backward("b1", swiglu_backward_b1, 8, 1024); check_backward("b1", swiglu_backward_b1, 7, 136); }
static void check_b2(void) { check_backward("b2", swiglu_backward_b2, 8, 1024); check_backward("b2", swiglu_backward_b2, 7, 136); }

#define NB_ROWS 16384   // the benchmark: 16K tokens of Qwen2.5-0.5B's MLP width
#define NB_I 4864
#define NB ((size_t)NB_ROWS * NB_I)
static floatX *bgu, *bo, *bd;
static void bench_setup(void) {
    if (bgu) return;
    bgu = dev_alloc<floatX>(2 * NB); bo = dev_alloc<floatX>(NB); bd = dev_alloc<floatX>(NB);
}
static void bench_v1(void) { bench_setup(); swiglu_forward_v1(bo, bgu, NB_ROWS, NB_I); }
static void bench_v2(void) { bench_setup(); swiglu_forward_v2(bo, bgu, NB_ROWS, NB_I); }
static void bench_v3(void) { bench_setup(); swiglu_forward(bo, bgu, NB_ROWS, NB_I, 0); }
static void bench_b1(void) { bench_setup(); swiglu_backward_b1(bgu, bd, bgu, NB_ROWS, NB_I); }
static void bench_b2(void) { bench_setup(); swiglu_backward(bgu, bd, bgu, NB_ROWS, NB_I, 0); }

// models: forward reads gate and up, writes out (bf16): 6 bytes and ~5 FLOPs an element;
// backward reads 3 and writes 2: 10 bytes, ~10 FLOPs
static const DevVersion versions[] = {
    {"1", "8 consecutive elements per thread (lanes 8 apart: 16 sectors per request)", check_v1, bench_v1, 6.0 * NB, 5.0 * NB},
    {"2", "one element per thread, grid-stride (common/swiglu.cuh's fallback: 2 sectors per request)", check_v2, bench_v2, 6.0 * NB, 5.0 * NB},
    {"3", "8 elements per thread in 16-byte accesses (common/swiglu.cuh: 16 sectors per request, 8x fewer requests)", check_v3, bench_v3, 6.0 * NB, 5.0 * NB},
    {"b1", "backward, one element per thread (common/swiglu.cuh's fallback)", check_b1, bench_b1, 10.0 * NB, 10.0 * NB},
    {"b2", "backward, 16-byte accesses (common/swiglu.cuh)", check_b2, bench_b2, 10.0 * NB, 10.0 * NB},
};

int main(int argc, char **argv) { return dev_main("swiglu", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
