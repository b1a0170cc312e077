/*
 * dev/swiglu.cu: the SwiGLU workbench, out = silu(gate) * up, checked against
 * s1.c's swiglu_forward() and swiglu_backward().
 *
 *   make dev && dev/run swiglu [VERSION]
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
 *       instructions (and index computations) move the same bytes; a scalar head
 *       and tail where the pointers or n are not multiples of 16 bytes.
 *   b1  the backward pass, one thread per element (swiglu_backward_kernel).
 *   b2  the backward pass with 16-byte accesses (swiglu_backward_vec_kernel, what the programs run).
 * An element-wise operation is memory-bound: its speed is bytes / bandwidth, so
 * the sectors a request costs, then the instructions it takes to keep enough of
 * them in flight, are the whole story.
 */
#include "dev/dev.cuh"
#include "common/swiglu.cuh"   // v2, v3, b1 and b2 are the programs' kernels: included, never copied

#define PER_THREAD 8

__global__ void swiglu_forward_v1_kernel(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    size_t first = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * PER_THREAD;
    for (size_t i = first; i < first + PER_THREAD && i < n; i++) {   // lanes are PER_THREAD elements apart
        float g = __bfloat162float(cu_ld(&gate[i]));
        cu_st(&out[i], round_bf16(g / (1.0f + expf(-g)) * __bfloat162float(cu_ld(&up[i]))));
    }
}

static void swiglu_forward_v1(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    size_t threads = (n + PER_THREAD - 1) / PER_THREAD;
    CU_LAUNCH(swiglu_forward_v1_kernel, (unsigned)((threads + 255) / 256), 256, 0, 0)(out, gate, up, n);
    cudaCheck(cudaGetLastError());
}

// the programs' one-element-per-thread kernels, launched directly (swiglu_forward() and
// swiglu_backward() run them only for pointers at different 16-byte phases)
static void swiglu_forward_v2(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    CU_LAUNCH(swiglu_forward_kernel, grid_for(n, 256), 256, 0, 0)(out, gate, up, n);
    cudaCheck(cudaGetLastError());
}
static void swiglu_backward_b1(floatX *dgate, floatX *dup, const floatX *dout, const floatX *gate, const floatX *up, size_t n) {
    CU_LAUNCH(swiglu_backward_kernel, grid_for(n, 256), 256, 0, 0)(dgate, dup, dout, gate, up, n);
    cudaCheck(cudaGetLastError());
}

typedef void (*SwigluFn)(floatX *, const floatX *, const floatX *, size_t);
typedef void (*SwigluBackwardFn)(floatX *, floatX *, const floatX *, const floatX *, const floatX *, size_t);

// bound as tests/emu_kernels.cu: one bf16 rounding (u |ref|) + 1e-6 for expf
static void check_forward(const char *label, SwigluFn fn, size_t n) {
    char name[160];
    snprintf(name, sizeof name, "swiglu %s vs s1.c, n=%zu (bound u|ref| + 1e-6)", label, n);
    TEST_BEGIN(name);
    kt_seed(21);
    float *g = host_random(n, 8.0f), *u = host_random(n, 2.0f), *ref = (float *)mallocCheck(n * sizeof(float));
    s1ref_swiglu(ref, g, u, n);
    floatX *d_g = to_device(g, n), *d_u = to_device(u, n), *d_out = dev_alloc<floatX>(n);
    fn(d_out, d_g, d_u, n);
    float *got = from_device(d_out, n);
    check_close("swiglu", got, ref, n, DEV_U, 1e-6f, NULL);
    free(g); free(u); free(ref); free(got);
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_u)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// each output rounded to bf16 once (u |ref|) from fp32 math in another order (1e-5: |dout| <= 1, |up| <= 2)
static void check_backward(const char *label, SwigluBackwardFn fn, size_t n) {
    char name[160];
    snprintf(name, sizeof name, "swiglu backward %s vs s1.c, n=%zu (bound u|ref| + 1e-5)", label, n);
    TEST_BEGIN(name);
    kt_seed(22);
    float *g = host_random(n, 8.0f), *u = host_random(n, 2.0f), *dout = host_random(n, 1.0f);
    float *ref_dg = (float *)calloc(n, sizeof(float)), *ref_du = (float *)calloc(n, sizeof(float));
    if (!ref_dg || !ref_du) { fprintf(stderr, "out of memory\n"); exit(1); }
    s1ref_swiglu_backward(ref_dg, ref_du, dout, g, u, n);
    floatX *d_g = to_device(g, n), *d_u = to_device(u, n), *d_dout = to_device(dout, n);
    floatX *d_dg = dev_alloc<floatX>(n), *d_du = dev_alloc<floatX>(n);
    fn(d_dg, d_du, d_dout, d_g, d_u, n);
    float *got_dg = from_device(d_dg, n), *got_du = from_device(d_du, n);
    check_close("dgate", got_dg, ref_dg, n, DEV_U, 1e-5f, NULL);
    check_close("dup", got_du, ref_du, n, DEV_U, 1e-5f, NULL);
    free(g); free(u); free(dout); free(ref_dg); free(ref_du); free(got_dg); free(got_du);
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_u)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dg)); cudaCheck(cudaFree(d_du));
    TEST_END();
}

static void check_v1(void) { check_forward("v1", swiglu_forward_v1, 8192); check_forward("v1", swiglu_forward_v1, 1000); }
static void check_v2(void) { check_forward("v2", swiglu_forward_v2, 8192); check_forward("v2", swiglu_forward_v2, 1000); }
// the programs' launcher on the default stream, in the checker's signature
static void swiglu_forward_v3(floatX *out, const floatX *gate, const floatX *up, size_t n) { swiglu_forward(out, gate, up, n, 0); }
static void swiglu_backward_b2(floatX *dgate, floatX *dup, const floatX *dout, const floatX *gate, const floatX *up, size_t n) {
    swiglu_backward(dgate, dup, dout, gate, up, n, 0);
}
static void check_v3(void) { check_forward("v3", swiglu_forward_v3, 8192); check_forward("v3", swiglu_forward_v3, 1003); }   // 1003: a tail of 3
static void check_b1(void) { check_backward("b1", swiglu_backward_b1, 8192); check_backward("b1", swiglu_backward_b1, 1000); }
static void check_b2(void) { check_backward("b2", swiglu_backward_b2, 8192); check_backward("b2", swiglu_backward_b2, 1003); }

#define NB ((size_t)16384 * 4864)   // the benchmark: 16K tokens of Qwen2.5-0.5B's MLP width
static floatX *bg, *bu, *bo, *bd, *bdu;
static void bench_setup(void) {
    if (bg) return;
    bg = dev_alloc<floatX>(NB); bu = dev_alloc<floatX>(NB); bo = dev_alloc<floatX>(NB);
    bd = dev_alloc<floatX>(NB); bdu = dev_alloc<floatX>(NB);
}
static void bench_v1(void) { bench_setup(); swiglu_forward_v1(bo, bg, bu, NB); }
static void bench_v2(void) { bench_setup(); swiglu_forward_v2(bo, bg, bu, NB); }
static void bench_v3(void) { bench_setup(); swiglu_forward(bo, bg, bu, NB, 0); }
static void bench_b1(void) { bench_setup(); swiglu_backward_b1(bd, bdu, bo, bg, bu, NB); }
static void bench_b2(void) { bench_setup(); swiglu_backward(bd, bdu, bo, bg, bu, NB, 0); }

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
