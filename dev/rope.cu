/*
 * dev/rope.cu: the rotary embedding workbench (rotate-half, as HF Qwen2), in
 * place on x (N,NH,HD), checked against s1.c's rope_forward() and rope_backward().
 *
 *   make dev && dev/run rope [VERSION]
 *
 *   v1  one thread per (token, head) rotates its HD/2 pairs in a loop: the 32
 *       lanes of a warp are HD elements apart at each step, one sector each.
 *   v2  one thread per pair, grid-stride (common/rope.cuh, what the programs
 *       run): lane l rotates pair base + l, so a warp's reads of x[i] and of
 *       x[i + HD/2] are each 64 contiguous bytes: 2 sectors.
 *   b1  the backward pass: v2 with the angle negated (common/rope.cuh).
 */
#include "dev/dev.cuh"
#include "common/rope.cuh"   // v2 and b1 are the programs' kernels: included, never copied

__global__ void rope_forward_v1_kernel(floatX *x, const int *pos, int N, int NH, int HD, float theta) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;   // (token, head)
    if (row >= N * NH) return;
    int half = HD / 2, n = row / NH;
    floatX *v = x + (size_t)row * HD;
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
        float angle = (float)pos[n] * inv_freq;
        float c = __bfloat162float(round_bf16(cosf(angle))), s = __bfloat162float(round_bf16(sinf(angle)));
        float a = __bfloat162float(cu_ld(&v[i])), b = __bfloat162float(cu_ld(&v[i + half]));
        cu_st(&v[i], round_bf16(a * c - b * s));
        cu_st(&v[i + half], round_bf16(b * c + a * s));
    }
}

static void rope_forward_v1(floatX *x, const int *pos, int N, int NH, int HD, float theta) {
    CU_LAUNCH(rope_forward_v1_kernel, (N * NH + 63) / 64, 64, 0, 0)(x, pos, N, NH, HD, theta);
    cudaCheck(cudaGetLastError());
}

typedef void (*RopeFn)(floatX *, const int *, int, int, int, float);

// bound as tests/emu_kernels.cu: one bf16 rounding (u |ref|) and cos, sin rounded to bf16 (u (|a| + |b|))
static void check_rope(const char *label, RopeFn fn, int backward, int N, int NH, int HD, double theta) {
    char name[160];
    snprintf(name, sizeof name, "rope %s vs s1.c, N=%d, NH=%d, HD=%d, theta=%g", label, N, NH, HD, theta);
    TEST_BEGIN(name);
    kt_seed(31);
    size_t n = (size_t)N * NH * HD, half = HD / 2;
    size_t *pos = (size_t *)mallocCheck(N * sizeof(size_t));
    int *pos_i = (int *)mallocCheck(N * sizeof(int));
    for (int i = 0; i < N; i++) pos_i[i] = (int)(pos[i] = (size_t)(i * 517) % 32768);
    float *x = host_random(n, 2.0f), *ref = (float *)mallocCheck(n * sizeof(float)), *extra = (float *)mallocCheck(n * sizeof(float));
    memcpy(ref, x, n * sizeof(float));
    if (backward) s1ref_rope_backward(ref, pos, N, NH, HD, theta);
    else s1ref_rope(ref, pos, N, NH, HD, theta);
    for (size_t r = 0; r < (size_t)N * NH; r++)
        for (size_t i = 0; i < half; i++)
            extra[r * HD + i] = extra[r * HD + i + half] = DEV_U * (fabsf(x[r * HD + i]) + fabsf(x[r * HD + i + half]));
    floatX *d_x = to_device(x, n);
    int *d_pos = device_copy(pos_i, N);
    fn(d_x, d_pos, N, NH, HD, (float)theta);
    float *got = from_device(d_x, n);
    check_close("rope", got, ref, n, DEV_U, 1e-6f, extra);
    free(pos); free(pos_i); free(x); free(ref); free(extra); free(got);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_pos));
    TEST_END();
}

static void check_v1(void) { check_rope("v1", rope_forward_v1, 0, 32, 4, 128, 1e6); check_rope("v1", rope_forward_v1, 0, 7, 3, 16, 1e4); }
// the programs' launcher on the default stream, in the checker's signature
static void rope_forward_v2(floatX *x, const int *pos, int N, int NH, int HD, float theta) { rope_forward(x, pos, N, NH, HD, theta, 0); }
static void rope_backward_b1(floatX *x, const int *pos, int N, int NH, int HD, float theta) { rope_backward(x, pos, N, NH, HD, theta, 0); }
static void check_v2(void) { check_rope("v2", rope_forward_v2, 0, 32, 4, 128, 1e6); check_rope("v2", rope_forward_v2, 0, 7, 3, 16, 1e4); }
static void check_b1(void) { check_rope("b1", rope_backward_b1, 1, 32, 4, 128, 1e6); }

#define NB 16384   // the benchmark: 16K tokens, 14 heads of 64 (Qwen2.5-0.5B's queries)
#define NHB 14
#define HDB 64
static floatX *bx;
static int *bpos;
static void bench_setup(void) {
    if (bx) return;
    bx = dev_alloc<floatX>((size_t)NB * NHB * HDB);
    bpos = dev_alloc<int>(NB);
}
static void bench_v1(void) { bench_setup(); rope_forward_v1(bx, bpos, NB, NHB, HDB, 1e6f); }
static void bench_v2(void) { bench_setup(); rope_forward(bx, bpos, NB, NHB, HDB, 1e6f, 0); }
static void bench_b1(void) { bench_setup(); rope_backward(bx, bpos, NB, NHB, HDB, 1e6f, 0); }

// model: x read and written once (bf16): 4 bytes an element; ~6 FLOPs a pair plus the angle's powf, cosf, sinf
#define ROPE_BYTES (4.0 * NB * NHB * HDB)
#define ROPE_FLOPS (3.0 * NB * NHB * HDB)
static const DevVersion versions[] = {
    {"1", "one thread per (token, head), a loop over the pairs (lanes HD elements apart)", check_v1, bench_v1, ROPE_BYTES, ROPE_FLOPS},
    {"2", "one thread per pair, grid-stride (common/rope.cuh: 2 sectors per request)", check_v2, bench_v2, ROPE_BYTES, ROPE_FLOPS},
    {"b1", "backward: v2 rotating by -angle (common/rope.cuh)", check_b1, bench_b1, ROPE_BYTES, ROPE_FLOPS},
};

int main(int argc, char **argv) { return dev_main("rope", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
