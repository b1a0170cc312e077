/*
 * rope.cuh: rotary position embedding (rotate-half, as HF Qwen2) on the GPU.
 * Twins of s1.c's rope_table_ensure(), rope_forward() and rope_backward() (both
 * s1.c's rope_rotate()); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu, versions in dev/rope.cu.
 *
 * cos and sin come from a table, (P, HD/2) bf16 each, built once per model on
 * the host (rope_table_create()): the kernels read 2 bytes of cos and 2 of sin
 * per rotated pair where they would otherwise spend ~100 FLOPs on a
 * full-precision powf, cosf and sinf (tutorial/cuda.md's roofline table).
 * Element-wise, so memory-bound: the programs run the 16-byte vector kernel
 * (8 pairs a thread) when HD/2 is a multiple of 8 and x is 16-byte aligned,
 * the one-pair-per-thread kernel otherwise; both rotate each pair with
 * rope_pair(), so they give the same bits.
 */
#ifndef S1C_ROPE_CUH
#define S1C_ROPE_CUH

#include "common/cuda_common.cuh"
#include "common/detmath.h"

// The tables: row p holds cos and sin of p * inv_freq[i], inv_freq[i] =
// theta^(-2i/HD), for positions [0, positions).
typedef struct {
    floatX *cos, *sin;   // (positions, HD/2) bf16, device
    int positions;
} RopeTable;

// Builds the tables on the host with s1.c's rope_table_ensure() expressions:
// the angle and its cos and sin in fp32 through common/detmath.h (the same bits
// on every CPU, and exactly s1.c's table entries), each rounded to bf16 (HF's
// cast point), then copied up. The kernels therefore see bf16(s1.c's values).
static void rope_table_create(RopeTable *t, int positions, int HD, double theta) {
    size_t half = (size_t)HD / 2, n = (size_t)positions * half;
    uint16_t *c = (uint16_t *)mallocCheck(n * sizeof(uint16_t)), *s = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
    for (size_t i = 0; i < half; i++) {
        float inv_freq = 1.0f / det_powf((float)theta, (float)(2 * i) / (float)HD);
        for (size_t p = 0; p < (size_t)positions; p++) {
            float angle = (float)p * inv_freq;
            c[p * half + i] = float_to_bf16(det_cosf(angle));
            s[p * half + i] = float_to_bf16(det_sinf(angle));
        }
    }
    t->positions = positions;
    cudaCheck(cudaMalloc((void **)&t->cos, n * sizeof(floatX)));
    cudaCheck(cudaMalloc((void **)&t->sin, n * sizeof(floatX)));
    cudaCheck(cudaMemcpy(t->cos, c, n * sizeof(floatX), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(t->sin, s, n * sizeof(floatX), cudaMemcpyHostToDevice));
    free(c);
    free(s);
}

static void rope_table_free(RopeTable *t) {
    cudaCheck(cudaFree(t->cos));
    cudaCheck(cudaFree(t->sin));
    memset(t, 0, sizeof *t);
}

// The kernels read row pos[n] of the tables unchecked: whoever fills pos
// (gpu_batch_upload(), gpu_decode()) stops a position beyond them on the host.
static void rope_check_positions(const RopeTable *t, size_t last, const char *what) {
    if (last >= (size_t)t->positions)
        die("%s: position %zu is beyond the model's max_position_embeddings (%d), the RoPE table's rows", what, last,
            t->positions);
}

// One rotated pair (a, b) = (x[i], x[i + HD/2]) by cos c and sin s (bf16
// values), in fp32: x'[i] = a c - b s, x'[i + HD/2] = b c + a s, each rounded
// once by the caller. direction +1 rotates by +angle (the forward pass), -1 by
// -angle (the backward pass: the rotation is orthogonal, so the gradient goes
// back through its transpose), as s1.c's rope_rotate(): sin negated, an exact
// operation, so both directions see the same cos and sin values.
__device__ __forceinline__ void rope_pair(float a, float b, float c, float s, float direction, float *ra, float *rb) {
    s *= direction;
    *ra = a * c - b * s;
    *rb = b * c + a * s;
}

// One thread per rotated pair, grid-stride (dev/rope.cu v3).
__global__ void __launch_bounds__(256) rope_forward_kernel(floatX *x, const int *pos, const floatX *cos_t, const floatX *sin_t,
                                                           int N, int NH, int HD, float direction) {
    // x (N,NH,HD) in place, pos (N,), cos_t sin_t (P,HD/2)
    int half = HD / 2;
    size_t total = (size_t)N * NH * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t row = idx / half;   // (n, head)
        size_t t = (size_t)pos[row / NH] * half + i;
        floatX *v = x + row * HD;
        // cu_ld/cu_st: counted by the emulator's profile (dev/rope.cu v3)
        float ra, rb;
        rope_pair(__bfloat162float(cu_ld(&v[i])), __bfloat162float(cu_ld(&v[i + half])), __bfloat162float(cu_ld(&cos_t[t])),
                  __bfloat162float(cu_ld(&sin_t[t])), direction, &ra, &rb);
        cu_st(&v[i], round_bf16(ra));
        cu_st(&v[i + half], round_bf16(rb));
    }
}

// 8 pairs per thread and step: 16-byte loads of x[i..i+7], x[i+HD/2..], and of
// the tables' cos and sin, two 16-byte stores (dev/rope.cu v4). HD/2 a
// multiple of 8 and x 16-byte aligned (rope_rotate() checks): every row, its
// halves and the tables' rows then start on 16-byte boundaries.
__global__ void __launch_bounds__(256) rope_forward_vec_kernel(floatX *x, const int *pos, const floatX *cos_t,
                                                               const floatX *sin_t, int N, int NH, int HD, float direction) {
    // x (N,NH,HD) in place, pos (N,), cos_t sin_t (P,HD/2)
    int half = HD / 2, per_row = half / VEC;
    size_t total = (size_t)N * NH * per_row;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % per_row) * VEC;
        size_t row = idx / per_row;
        size_t t = (size_t)pos[row / NH] * half + i;
        floatX *v = x + row * HD;
        float a[VEC], b[VEC], c[VEC], s[VEC], ra[VEC], rb[VEC];
        bf16x8_unpack(cu_ld((const uint4 *)(v + i)), a);
        bf16x8_unpack(cu_ld((const uint4 *)(v + i + half)), b);
        bf16x8_unpack(cu_ld((const uint4 *)(cos_t + t)), c);
        bf16x8_unpack(cu_ld((const uint4 *)(sin_t + t)), s);
#pragma unroll
        for (int k = 0; k < VEC; k++) rope_pair(a[k], b[k], c[k], s[k], direction, &ra[k], &rb[k]);
        cu_st((uint4 *)(v + i), bf16x8_pack(ra));
        cu_st((uint4 *)(v + i + half), bf16x8_pack(rb));
    }
}

static void rope_rotate(floatX *x, const int *pos, const RopeTable *t, int N, int NH, int HD, float direction,
                        cudaStream_t stream) {
    if ((HD / 2) % VEC == 0 && is_aligned16(x))   // cudaMalloc'd tables are 256-byte aligned
        CU_LAUNCH(rope_forward_vec_kernel, grid_for((size_t)N * NH * (HD / 2 / VEC), 256), 256, 0, stream)(x, pos, t->cos, t->sin, N,
                                                                                                       NH, HD, direction);
    else
        CU_LAUNCH(rope_forward_kernel, grid_for((size_t)N * NH * (HD / 2), 256), 256, 0, stream)(x, pos, t->cos, t->sin, N, NH, HD,
                                                                                             direction);
    cudaCheck(cudaGetLastError());
}

// x (N,NH,HD) bf16 rotated in place at positions pos (N,), each below t->positions
static void rope_forward(floatX *x, const int *pos, const RopeTable *t, int N, int NH, int HD, cudaStream_t stream) {
    rope_rotate(x, pos, t, N, NH, HD, 1.0f, stream);
}

// Backward, twin of s1.c's rope_backward(): dx (N,NH,HD) bf16 rotated back in
// place, by -angle. The kernels above with direction -1, one rounding per element.
static void rope_backward(floatX *dx, const int *pos, const RopeTable *t, int N, int NH, int HD, cudaStream_t stream) {
    rope_rotate(dx, pos, t, N, NH, HD, -1.0f, stream);
}

#endif // S1C_ROPE_CUH
