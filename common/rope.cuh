/*
 * rope.cuh: rotary position embedding (rotate-half, as HF Qwen2) on the GPU.
 * Twins of s1.c's rope_table_ensure(), rope_forward() and rope_backward() (both
 * s1.c's rope_rotate()); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu, versions in dev/rope.cu.
 *
 * The layer computes q, k and v in one fused GEMM, (N, QD+2KD) rows of NQ + 2 NKV
 * heads; the kernels here apply RoPE as those rows move into q, k and v of
 * their own (the forward pass; in decoding k and v are KV cache rows) and as
 * dq, dk, dv move back into one fused gradient (the backward pass), so the
 * rotation costs no pass over memory of its own.
 *
 * cos and sin come from a table, (P, HD/2) bf16 each, built once per model on
 * the host (rope_table_create()): the kernels read 2 bytes of cos and 2 of sin
 * per rotated pair where they would otherwise spend ~100 FLOPs on a
 * full-precision powf, cosf and sinf (tutorial/cuda.md's roofline table).
 * Element-wise, so memory-bound: the programs run the 16-byte vector kernel
 * (8 pairs a thread) when HD/2 is a multiple of 8 and the buffers are 16-byte
 * aligned, the one-pair-per-thread kernel otherwise; both rotate each pair with
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
// cast point), then copied up on `stream`, the stream of the kernels that read
// them (a synchronous cudaMemcpy would run on the legacy default stream, which
// a non-blocking stream does not wait for, and from pageable memory may return
// before its DMA has landed). The kernels therefore see bf16(s1.c's values).
static void rope_table_create(RopeTable *t, int positions, int HD, double theta, cudaStream_t stream) {
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
    copy_to_device(t->cos, c, n * sizeof(floatX), stream);   // synchronised: c and s may be freed
    copy_to_device(t->sin, s, n * sizeof(floatX), stream);
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

// The heads of a q|k|v activation, token n's rows at q + n q_stride, k + n kv_stride and v + n kv_stride
// (elements): three buffers (N,QD), (N,KD), (N,KD) (qkv_split()), or the three column blocks of one fused
// projection (N,QD+2KD) (qkv_fused()). T: floatX, or const floatX for the side a kernel reads.
template <class T> struct QkvHeads {
    T *q, *k, *v;
    int q_stride, kv_stride;
};

template <class T> static QkvHeads<T> qkv_split(T *q, T *k, T *v, int NQ, int NKV, int HD) {
    return QkvHeads<T>{q, k, v, NQ * HD, NKV * HD};
}
template <class T> static QkvHeads<T> qkv_fused(T *qkv, int NQ, int NKV, int HD) {
    int QD = NQ * HD, KD = NKV * HD;
    return QkvHeads<T>{qkv, qkv + QD, qkv + QD + KD, QD + 2 * KD, QD + 2 * KD};
}

// Head h of token n, h in [0, NQ + 2 NKV): the NQ query heads, then the NKV
// key heads, then the NKV value heads, the order of a fused row. 32-bit
// offsets: the launcher stops N (QD + 2 KD) >= 2^31.
template <class T> __device__ __forceinline__ T *qkv_head(QkvHeads<T> x, int n, int h, int NQ, int NKV, int HD) {
    if (h < NQ) return x.q + n * x.q_stride + h * HD;
    if (h < NQ + NKV) return x.k + n * x.kv_stride + (h - NQ) * HD;
    return x.v + n * x.kv_stride + (h - NQ - NKV) * HD;
}

// RoPE applied while q, k and v move between their fused projection and their
// own buffers: pair (i, i + HD/2) of every head of src is rotated by
// `direction` times its angle (a q or k head) or copied (a v head: a bf16 goes
// through fp32 and back unchanged), and written to the same head of dst. The
// forward pass splits the fused rows (direction +1), the backward pass merges
// dq, dk, dv back into them (direction -1). One thread per pair, grid-stride
// (dev/rope.cu v3).
__global__ void __launch_bounds__(256) rope_qkv_kernel(QkvHeads<floatX> dst, QkvHeads<const floatX> src, const int *pos,
                                                       const floatX *cos_t, const floatX *sin_t, int N, int NQ, int NKV,
                                                       int HD, float direction) {
    // dst src: (N, NQ + 2 NKV, HD) heads; pos (N,); cos_t sin_t (P,HD/2)
    int half = HD / 2, heads = NQ + 2 * NKV, total = N * heads * half;
    for (int idx = (int)(blockIdx.x * blockDim.x + threadIdx.x); idx < total; idx += (int)(gridDim.x * blockDim.x)) {
        int i = idx % half, n = idx / half / heads, h = idx / half % heads;
        const floatX *x = qkv_head(src, n, h, NQ, NKV, HD);
        floatX *y = qkv_head(dst, n, h, NQ, NKV, HD);
        // cu_ld/cu_st: counted by the emulator's profile (dev/rope.cu v3)
        float ra = __bfloat162float(cu_ld(&x[i])), rb = __bfloat162float(cu_ld(&x[i + half]));
        if (h < NQ + NKV) {
            int t = pos[n] * half + i;   // < 2^24 rows * 64 pairs (gpu_model_create_rank's limits)
            rope_pair(ra, rb, __bfloat162float(cu_ld(&cos_t[t])), __bfloat162float(cu_ld(&sin_t[t])), direction, &ra, &rb);
        }
        cu_st(&y[i], round_bf16(ra));
        cu_st(&y[i + half], round_bf16(rb));
    }
}

// 8 pairs per thread and step: 16-byte loads of x[i..i+7], x[i+HD/2..], and of
// the tables' cos and sin, two 16-byte stores (dev/rope.cu v4); a v head's two
// vectors are copied as they are. HD/2 a multiple of 8 and the six base
// pointers 16-byte aligned (rope_qkv() checks): every head, its halves and the
// tables' rows then start on 16-byte boundaries.
__global__ void __launch_bounds__(256) rope_qkv_vec_kernel(QkvHeads<floatX> dst, QkvHeads<const floatX> src, const int *pos,
                                                           const floatX *cos_t, const floatX *sin_t, int N, int NQ, int NKV,
                                                           int HD, float direction) {
    // dst src: (N, NQ + 2 NKV, HD) heads; pos (N,); cos_t sin_t (P,HD/2)
    int half = HD / 2, per_head = half / VEC, heads = NQ + 2 * NKV, total = N * heads * per_head;
    for (int idx = (int)(blockIdx.x * blockDim.x + threadIdx.x); idx < total; idx += (int)(gridDim.x * blockDim.x)) {
        int i = idx % per_head * VEC, n = idx / per_head / heads, h = idx / per_head % heads;
        const floatX *x = qkv_head(src, n, h, NQ, NKV, HD);
        floatX *y = qkv_head(dst, n, h, NQ, NKV, HD);
        uint4 va = cu_ld((const uint4 *)(x + i)), vb = cu_ld((const uint4 *)(x + i + half));
        if (h < NQ + NKV) {
            int t = pos[n] * half + i;
            float a[VEC], b[VEC], c[VEC], s[VEC], ra[VEC], rb[VEC];
            bf16x8_unpack(va, a);
            bf16x8_unpack(vb, b);
            bf16x8_unpack(cu_ld((const uint4 *)(cos_t + t)), c);
            bf16x8_unpack(cu_ld((const uint4 *)(sin_t + t)), s);
#pragma unroll
            for (int k = 0; k < VEC; k++) rope_pair(a[k], b[k], c[k], s[k], direction, &ra[k], &rb[k]);
            va = bf16x8_pack(ra);
            vb = bf16x8_pack(rb);
        }
        cu_st((uint4 *)(y + i), va);
        cu_st((uint4 *)(y + i + half), vb);
    }
}

template <class T> static int qkv_aligned16(QkvHeads<T> x) { return is_aligned16(x.q) && is_aligned16(x.k) && is_aligned16(x.v); }

static void rope_qkv(QkvHeads<floatX> dst, QkvHeads<const floatX> src, const int *pos, const RopeTable *t, int N, int NQ,
                     int NKV, int HD, float direction, cudaStream_t stream) {
    int pairs = int_size((size_t)N * (size_t)(NQ + 2 * NKV) * (size_t)HD, "rope_qkv") / 2;
    if ((HD / 2) % VEC == 0 && qkv_aligned16(src) && qkv_aligned16(dst))   // cudaMalloc'd tables are 256-byte aligned
        CU_LAUNCH(rope_qkv_vec_kernel, grid_for((size_t)pairs / VEC, 256), 256, 0, stream)(dst, src, pos, t->cos, t->sin, N, NQ,
                                                                                          NKV, HD, direction);
    else
        CU_LAUNCH(rope_qkv_kernel, grid_for((size_t)pairs, 256), 256, 0, stream)(dst, src, pos, t->cos, t->sin, N, NQ, NKV, HD,
                                                                                direction);
    cudaCheck(cudaGetLastError());
}

// Forward, twin of s1.c's rope_forward() on q and on k: the fused projection
// qkv (N,QD+2KD) of N tokens at positions pos (N,), each below t->positions,
// into q (N,QD) and k (N,KD) rotated and v (N,KD) copied. In decoding k and v
// are the KV cache's rows, so this is also the cache write. With NKV = 0, q may
// be qkv itself: x (N,NQ,HD) rotated in place (dev/rope.cu), a thread reading
// its pair before writing it.
static void rope_qkv_forward(floatX *q, floatX *k, floatX *v, const floatX *qkv, const int *pos, const RopeTable *t, int N,
                             int NQ, int NKV, int HD, cudaStream_t stream) {
    rope_qkv(qkv_split(q, k, v, NQ, NKV, HD), qkv_fused(qkv, NQ, NKV, HD), pos, t, N, NQ, NKV, HD, 1.0f, stream);
}

// Backward, twin of s1.c's rope_backward() on dq and on dk: dqkv (N,QD+2KD),
// the gradient of the fused projection, = dq (N,QD) and dk (N,KD) rotated back
// by -angle, and dv (N,KD) copied, one rounding per element. With NKV = 0,
// dqkv may be dq itself (in place, as the forward).
static void rope_qkv_backward(floatX *dqkv, const floatX *dq, const floatX *dk, const floatX *dv, const int *pos,
                              const RopeTable *t, int N, int NQ, int NKV, int HD, cudaStream_t stream) {
    rope_qkv(qkv_fused(dqkv, NQ, NKV, HD), qkv_split(dq, dk, dv, NQ, NKV, HD), pos, t, N, NQ, NKV, HD, -1.0f, stream);
}

#endif // S1C_ROPE_CUH
