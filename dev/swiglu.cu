/*
 * dev/swiglu.cu: the SwiGLU workbench, out = silu(gate) * up, checked against
 * s1.c's swiglu_forward() and swiglu_backward().
 *
 *   make dev && dev/run swiglu [VERSION]
 *
 *   v1  each thread takes 8 consecutive elements. It looks cache-friendly on a
 *       CPU, but on a GPU the 32 lanes of a warp then read elements 8 apart at
 *       each step: a request spans 512 bytes, 16 sectors, for 64 useful bytes.
 *   v2  one thread per element, grid-stride (common/swiglu.cuh, what the programs
 *       run): lane l reads element base + l, 64 contiguous bytes, 2 sectors.
 *   b1  the backward pass, one thread per element (common/swiglu.cuh).
 * An element-wise operation is memory-bound: its speed is bytes / bandwidth, so
 * the sectors a request costs are the whole story.
 */
#include "dev/dev.cuh"
#include "common/swiglu.cuh"   // v2 and b1 are the programs' kernels: included, never copied

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

typedef void (*SwigluFn)(floatX *, const floatX *, const floatX *, size_t);

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
static void check_backward(size_t n) {
    char name[160];
    snprintf(name, sizeof name, "swiglu backward b1 vs s1.c, n=%zu (bound u|ref| + 1e-5)", n);
    TEST_BEGIN(name);
    kt_seed(22);
    float *g = host_random(n, 8.0f), *u = host_random(n, 2.0f), *dout = host_random(n, 1.0f);
    float *ref_dg = (float *)calloc(n, sizeof(float)), *ref_du = (float *)calloc(n, sizeof(float));
    if (!ref_dg || !ref_du) { fprintf(stderr, "out of memory\n"); exit(1); }
    s1ref_swiglu_backward(ref_dg, ref_du, dout, g, u, n);
    floatX *d_g = to_device(g, n), *d_u = to_device(u, n), *d_dout = to_device(dout, n);
    floatX *d_dg = dev_alloc<floatX>(n), *d_du = dev_alloc<floatX>(n);
    swiglu_backward(d_dg, d_du, d_dout, d_g, d_u, n);
    float *got_dg = from_device(d_dg, n), *got_du = from_device(d_du, n);
    check_close("dgate", got_dg, ref_dg, n, DEV_U, 1e-5f, NULL);
    check_close("dup", got_du, ref_du, n, DEV_U, 1e-5f, NULL);
    free(g); free(u); free(dout); free(ref_dg); free(ref_du); free(got_dg); free(got_du);
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_u)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dg)); cudaCheck(cudaFree(d_du));
    TEST_END();
}

static void check_v1(void) { check_forward("v1", swiglu_forward_v1, 8192); check_forward("v1", swiglu_forward_v1, 1000); }
static void check_v2(void) { check_forward("v2", swiglu_forward, 8192); check_forward("v2", swiglu_forward, 1000); }
static void check_b1(void) { check_backward(8192); check_backward(1000); }

#define NB ((size_t)16384 * 4864)   // the benchmark: 16K tokens of Qwen2.5-0.5B's MLP width
static floatX *bg, *bu, *bo, *bd, *bdu;
static void bench_setup(void) {
    if (bg) return;
    bg = dev_alloc<floatX>(NB); bu = dev_alloc<floatX>(NB); bo = dev_alloc<floatX>(NB);
    bd = dev_alloc<floatX>(NB); bdu = dev_alloc<floatX>(NB);
}
static void bench_v1(void) { bench_setup(); swiglu_forward_v1(bo, bg, bu, NB); }
static void bench_v2(void) { bench_setup(); swiglu_forward(bo, bg, bu, NB); }
static void bench_b1(void) { bench_setup(); swiglu_backward(bd, bdu, bo, bg, bu, NB); }

// models: forward reads gate and up, writes out (bf16): 6 bytes and ~5 FLOPs an element;
// backward reads 3 and writes 2: 10 bytes, ~10 FLOPs
static const DevVersion versions[] = {
    {"1", "8 consecutive elements per thread (lanes 8 apart: 16 sectors per request)", check_v1, bench_v1, 6.0 * NB, 5.0 * NB},
    {"2", "one element per thread, grid-stride (common/swiglu.cuh: 2 sectors per request)", check_v2, bench_v2, 6.0 * NB, 5.0 * NB},
    {"b1", "backward, one element per thread (common/swiglu.cuh)", check_b1, bench_b1, 10.0 * NB, 10.0 * NB},
};

int main(int argc, char **argv) { return dev_main("swiglu", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
