/*
 * kernels.cuh: the Qwen2.5 forward pass on the GPU, shared by sft.cu and sample.cu.
 *
 * Each kernel is the GPU twin of an s1.c layer function (the fp32 CPU oracle)
 * and is tested against it by tests/emu_kernels.cu, on the CPU through the CUDA
 * emulator (common/cuemu.h) in three thread schedules:
 *
 *   embedding_forward()     embedding_forward_kernel          s1.c embedding_forward()
 *   rmsnorm_forward()       rmsnorm_forward_kernel            s1.c rmsnorm_forward()
 *   matmul_forward()        cublasGemmEx + bias_fill_kernel   s1.c matmul_forward()
 *   rope_forward()          rope_forward_kernel               s1.c rope_forward()
 *   attention_forward()     attention_forward_kernel (flash)  s1.c attention_forward()
 *   attention_decode()      attention_decode_kernel           s1.c attention_row() (one token, KV cache)
 *   swiglu_forward()        swiglu_forward_kernel             s1.c swiglu_forward()
 *   lm_head_loss()          cublasGemmEx per chunk of rows +  s1.c matmul_forward() (the head)
 *                           crossentropy_forward_kernel +       + crossentropy_forward()
 *                           sum_kernel
 *
 * then the model: gpu_model_load() (a HF checkpoint folder into bf16 GPU
 * memory), gpu_forward() (the masked s1 loss of a batch, as s1.c's
 * qwen2_forward()) and gpu_decode() (tokens appended to a KV cache, as s1.c's
 * qwen2_decode_step()).
 *
 * Precision, as Hugging Face runs a bf16 Qwen2 (docs/qwen2.5.md section 3):
 * weights and activations are bf16 (floatX), every sum and statistic is fp32
 * (RMSNorm's mean square, the GEMMs' accumulation, the softmax and the
 * cross-entropy), and each kernel rounds its output to bf16 once (RMSNorm twice,
 * at HF's cast point before the weight multiply). Logits are
 * fp32 (HF upcasts them before the loss).
 *
 * Two memory rules make 32K-token sequences fit (s1-spec.md section 8): the
 * attention never materialises the T x T score matrix (flash attention: tiles
 * of keys in shared memory, an online softmax), and the loss never holds the
 * T x V logits (20 GB in fp32 at 32768 x 152064): the LM head runs on chunks
 * of rows, each reduced to per-token losses before the next.
 *
 * Not here yet: the backward kernels, AdamW and NCCL data parallelism (a later
 * issue); the kernels are written for clarity first (no tensor cores in the
 * attention, no flash-decoding split of long KV caches).
 *
 * Dimension letters: N tokens of a batch, T of one sequence, H hidden, I MLP,
 * NQ query heads, NKV key/value heads, HD head dim, QD = NQ*HD, KD = NKV*HD,
 * V vocabulary rows, L layers.
 */
#ifndef S1C_KERNELS_CUH
#define S1C_KERNELS_CUH

#include "common/cuemu.h"   // CU_LAUNCH, CU_EXTERN_SHARED, cudaCheck, cublasCheck (nvcc: just those)
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "common/json.h"
#include "common/qwen2_config.h"
#include "common/safetensors.h"

typedef __nv_bfloat16 floatX;   // the element type of weights and activations

// ----------------------------------------------------------------------------
// launch helpers

#define WARP_SIZE 32
#define MAX_GRID_BLOCKS 1056   // 8 blocks per SM of an H100; larger problems loop (grid-stride)

static inline int grid_for(size_t work, int per_block) {
    size_t blocks = (work + (size_t)per_block - 1) / (size_t)per_block;
    return blocks == 0 ? 1 : blocks > MAX_GRID_BLOCKS ? MAX_GRID_BLOCKS : (int)blocks;
}

__device__ inline float warp_sum(float v) {
    for (int off = WARP_SIZE / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int off = WARP_SIZE / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__device__ inline floatX round_bf16(float x) { return __float2bfloat16(x); }

// ----------------------------------------------------------------------------
// the layers' kernels, each next to its launcher

// Token embedding: out[n] = table[ids[n]]. One thread per element, grid-stride.
__global__ void embedding_forward_kernel(floatX *out, const uint32_t *ids, const floatX *table, int N, int C) {
    // out (N,C), ids (N,), table (V,C)
    size_t total = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / C, c = i % C;
        out[i] = table[(size_t)ids[n] * C + c];
    }
}

static void embedding_forward(floatX *out, const uint32_t *ids, const floatX *table, int N, int C) {
    CU_LAUNCH(embedding_forward_kernel, grid_for((size_t)N * C, 256), 256, 0, 0)(out, ids, table, N, C);
    cudaCheck(cudaGetLastError());
}

// RMSNorm as Qwen2RMSNorm in bf16: y = x * rsqrt(mean(x^2) + eps) in fp32, cast
// to bf16, THEN multiplied by the weight (HF's order). One warp per row.
__global__ void rmsnorm_forward_kernel(floatX *out, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    // out (N,C), inp (N,C), weight (C,)
    int warps = blockDim.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    for (int row = blockIdx.x * warps + threadIdx.x / WARP_SIZE; row < N; row += gridDim.x * warps) {
        const floatX *x = inp + (size_t)row * C;
        float ss = 0.0f;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float xi = __bfloat162float(x[i]);
            ss += xi * xi;
        }
        float r = rsqrtf(warp_sum(ss) / (float)C + eps);
        floatX *o = out + (size_t)row * C;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float y = __bfloat162float(round_bf16(__bfloat162float(x[i]) * r));
            o[i] = round_bf16(__bfloat162float(weight[i]) * y);
        }
    }
}

static void rmsnorm_forward(floatX *out, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    const int block = 256;
    CU_LAUNCH(rmsnorm_forward_kernel, grid_for((size_t)N, block / WARP_SIZE), block, 0, 0)(out, inp, weight, N, C, eps);
    cudaCheck(cudaGetLastError());
}

// Linear layer y = x W^T + b with W stored (OC, C), as HF checkpoints store it.
// cuBLAS is column-major: the row-major out (N,OC) is the column-major (OC,N)
// matrix W x^T, so A = W read transposed (op T, lda C) and B = x (op N, ldb C).
// The bias is written into out first and the GEMM adds onto it (beta = 1), so
// the fp32 sum is rounded to bf16 once, as torch's addmm does.
__global__ void bias_fill_kernel(floatX *out, const floatX *bias, int N, int OC) {
    // out (N,OC) = bias (OC,) in every row
    size_t total = (size_t)N * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias[i % OC];
}

// out (N,OC) = inp (N,C) . weight (OC,C)^T + beta * out, out of type out_type
// (bf16 or fp32), fp32 accumulation.
static void gemm_nt(cublasHandle_t handle, void *out, cudaDataType out_type, const floatX *inp, const floatX *weight,
                    int N, int C, int OC, float beta) {
    const float alpha = 1.0f;
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &alpha, weight, CUDA_R_16BF, C, inp,
                             CUDA_R_16BF, C, &beta, out, out_type, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out (N,OC) = inp (N,C) . weight (OC,C)^T + bias (OC,) [bias may be NULL].
// residual != 0 adds the product onto out instead (the residual stream's
// "h = h + o_proj(...)", rounded once).
static void matmul_forward(cublasHandle_t handle, floatX *out, const floatX *inp, const floatX *weight,
                           const floatX *bias, int N, int C, int OC, int residual) {
    if (bias != NULL) {
        CU_LAUNCH(bias_fill_kernel, grid_for((size_t)N * OC, 256), 256, 0, 0)(out, bias, N, OC);
        cudaCheck(cudaGetLastError());
    }
    gemm_nt(handle, out, CUDA_R_16BF, inp, weight, N, C, OC, bias != NULL || residual ? 1.0f : 0.0f);
}

// Rotary embedding, rotate-half (NeoX) convention as HF Qwen2, in place. The
// angles pos * theta^(-2i/HD), cos and sin are fp32 (as HF, and as s1.c's
// tables); cos and sin are cast to bf16 (HF's cast point); the rotation sums in
// fp32 and rounds once. One thread per rotated pair, grid-stride.
__global__ void rope_forward_kernel(floatX *x, const int *pos, int N, int NH, int HD, float theta) {
    // x (N,NH,HD), pos (N,); x'[i] = x[i] cos - x[i+HD/2] sin, x'[i+HD/2] = x[i+HD/2] cos + x[i] sin
    int half = HD / 2;
    size_t total = (size_t)N * NH * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t row = idx / half;   // (n, head)
        int n = (int)(row / NH);
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
        float angle = (float)pos[n] * inv_freq;
        float c = __bfloat162float(round_bf16(cosf(angle))), s = __bfloat162float(round_bf16(sinf(angle)));
        floatX *v = x + row * HD;
        float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
        v[i] = round_bf16(a * c - b * s);
        v[i + half] = round_bf16(b * c + a * s);
    }
}

static void rope_forward(floatX *x, const int *pos, int N, int NH, int HD, float theta) {
    CU_LAUNCH(rope_forward_kernel, grid_for((size_t)N * NH * (HD / 2), 256), 256, 0, 0)(x, pos, N, NH, HD, theta);
    cudaCheck(cudaGetLastError());
}

// Causal GQA flash attention (one sequence, or new tokens after a KV cache).
//
// Query rows t = 0..Tq-1 sit at positions past + t and attend to keys
// u = 0..past+t. A block takes ATT_BQ query rows of one query head h and reads
// the keys and values of KV head h / (NQ/NKV) in place (no repeated copies).
// It walks the keys in tiles of ATT_BK rows staged in shared memory; each warp
// owns ATT_BQ / ATT_WARPS query rows and keeps, per row, the running max m,
// the running sum l (a partial sum per lane) and the output accumulator (lane
// owns dims lane, lane+32, ...). Per tile, lane j scores key j, and a new max
// rescales what was accumulated (the online softmax of s1.c's attention_row()).
// Scores live one tile at a time: the T x T matrix never exists. The shared
// memory is (BQ*HD + BK*(HD+1) + BK*HD + WARPS*BK) floats: 41,600 bytes at HD 128.
#define ATT_BQ 16
#define ATT_BK 32          // == WARP_SIZE: lane j scores key j of the tile
#define ATT_WARPS 4
#define ATT_ROWS (ATT_BQ / ATT_WARPS)
#define ATT_MAX_HD 128     // every Qwen2.5 size: HD 64 or 128
#define ATT_DIMS (ATT_MAX_HD / WARP_SIZE)

__global__ void attention_forward_kernel(floatX *out, const floatX *q, const floatX *k, const floatX *v,
                                         int Tq, int past, int NQ, int NKV, int HD, float scale) {
    // out q (Tq,NQ,HD), k v (past+Tq,NKV,HD)
    CU_EXTERN_SHARED(float, smem);
    float *qs = smem;                          // (BQ, HD) the block's query rows
    float *ks = qs + ATT_BQ * HD;              // (BK, HD+1) key tile, padded: lane j reads row j without bank conflicts
    float *vs = ks + ATT_BK * (HD + 1);        // (BK, HD) value tile
    float *ps = vs + ATT_BK * HD;              // (WARPS, BK) one row's probabilities, per warp
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int q0 = blockIdx.x * ATT_BQ, h = blockIdx.y, kvh = h / (NQ / NKV);
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD;

    for (int i = threadIdx.x; i < ATT_BQ * HD; i += blockDim.x) {
        int r = i / HD, d = i % HD;
        qs[i] = q0 + r < Tq ? __bfloat162float(q[(q0 + r) * QD + h * HD + d]) : 0.0f;
    }
    float m[ATT_ROWS], l[ATT_ROWS], acc[ATT_ROWS][ATT_DIMS];
    for (int rr = 0; rr < ATT_ROWS; rr++) {
        m[rr] = -INFINITY;
        l[rr] = 0.0f;
        for (int i = 0; i < ATT_DIMS; i++) acc[rr][i] = 0.0f;
    }
    int last_row = min(q0 + ATT_BQ, Tq) - 1;
    int num_keys = past + last_row + 1;   // the keys the block's last row sees
    for (int k0 = 0; k0 < num_keys; k0 += ATT_BK) {
        __syncthreads();   // every warp is done with the previous tile
        for (int i = threadIdx.x; i < ATT_BK * HD; i += blockDim.x) {
            int j = i / HD, d = i % HD, u = k0 + j;
            // keys past the end are zero: their probability is 0, and 0 * garbage could be NaN
            ks[j * (HD + 1) + d] = u < num_keys ? __bfloat162float(k[u * KD + kvh * HD + d]) : 0.0f;
            vs[j * HD + d] = u < num_keys ? __bfloat162float(v[u * KD + kvh * HD + d]) : 0.0f;
        }
        __syncthreads();
        for (int rr = 0; rr < ATT_ROWS; rr++) {
            int r = warp * ATT_ROWS + rr, qpos = past + q0 + r;
            if (q0 + r >= Tq || k0 > qpos) continue;   // warp-uniform: no such row, or the tile is all future
            int u = k0 + lane;
            float s = -INFINITY;
            if (u <= qpos) {
                float dot = 0.0f;
                for (int d = 0; d < HD; d++) dot += qs[r * HD + d] * ks[lane * (HD + 1) + d];
                s = dot * scale;
            }
            float m_new = fmaxf(m[rr], warp_max(s));   // finite: key k0 <= qpos is scored by lane 0
            float c = expf(m[rr] - m_new);               // rescales the old sums (0 on the first tile)
            float p = u <= qpos ? expf(s - m_new) : 0.0f;
            m[rr] = m_new;
            l[rr] = l[rr] * c + p;
            __syncwarp();   // the warp's previous row is done reading ps
            ps[warp * ATT_BK + lane] = p;
            __syncwarp();
            for (int i = 0; i < ATT_DIMS; i++) {
                int d = lane + WARP_SIZE * i;
                if (d >= HD) break;
                float a = acc[rr][i] * c;
                for (int j = 0; j < ATT_BK; j++) a += ps[warp * ATT_BK + j] * vs[j * HD + d];
                acc[rr][i] = a;
            }
        }
    }
    for (int rr = 0; rr < ATT_ROWS; rr++) {
        int t = q0 + warp * ATT_ROWS + rr;
        if (t >= Tq) continue;
        float sum = warp_sum(l[rr]);
        for (int i = 0; i < ATT_DIMS; i++) {
            int d = lane + WARP_SIZE * i;
            if (d < HD) out[t * QD + h * HD + d] = round_bf16(acc[rr][i] / sum);
        }
    }
}

static size_t attention_smem_bytes(int HD) {
    return (size_t)(ATT_BQ * HD + ATT_BK * (HD + 1) + ATT_BK * HD + ATT_WARPS * ATT_BK) * sizeof(float);
}

// out (Tq,NQ,HD) = causal attention of the Tq query rows at positions past.. over
// the past+Tq keys/values (k, v: (past+Tq, NKV, HD), a sequence's or a KV cache's).
static void attention_forward(floatX *out, const floatX *q, const floatX *k, const floatX *v, int Tq, int past,
                              int NQ, int NKV, int HD) {
    if (HD > ATT_MAX_HD || HD % 2 != 0) die("attention_forward: head_dim %d is not supported (even, at most %d)", HD, ATT_MAX_HD);
    if (NQ % NKV != 0) die("attention_forward: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    dim3 grid((unsigned)((Tq + ATT_BQ - 1) / ATT_BQ), (unsigned)NQ);
    float scale = 1.0f / sqrtf((float)HD);
    CU_LAUNCH(attention_forward_kernel, grid, ATT_WARPS * WARP_SIZE, attention_smem_bytes(HD), 0)(out, q, k, v, Tq, past, NQ, NKV, HD, scale);
    cudaCheck(cudaGetLastError());
}

// Decoding: one new query token per head against the ntok cached keys (itself
// included). A single query row would leave 3 of attention_forward_kernel's 4
// warps idle, so here a block takes one query head and its DEC_WARPS warps split
// the keys: warp w walks key tiles w, w + DEC_WARPS, ... with the same online
// softmax (lane j scores key j of the tile), then the warps' (max, sum, output)
// triples are merged in shared memory, each rescaled to the common max.
// (Flash-decoding would also split the keys across blocks for long caches.)
#define DEC_WARPS 8

__global__ void attention_decode_kernel(floatX *out, const floatX *q, const floatX *k, const floatX *v, int ntok,
                                        int NQ, int NKV, int HD, float scale) {
    // out q (NQ,HD), k v (ntok,NKV,HD)
    CU_EXTERN_SHARED(float, smem);
    float *qs = smem;                      // (HD,)
    float *ps = qs + HD;                   // (WARPS, 32) one tile's probabilities, per warp
    float *warp_m = ps + DEC_WARPS * WARP_SIZE, *warp_l = warp_m + DEC_WARPS;   // (WARPS,) each
    float *warp_acc = warp_l + DEC_WARPS;  // (WARPS, HD)
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int h = blockIdx.x, kvh = h / (NQ / NKV);
    size_t KD = (size_t)NKV * HD;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) qs[d] = __bfloat162float(q[h * HD + d]);
    __syncthreads();
    float m = -INFINITY, l = 0.0f, acc[ATT_DIMS] = {0.0f};
    for (int k0 = warp * WARP_SIZE; k0 < ntok; k0 += DEC_WARPS * WARP_SIZE) {
        int u = k0 + lane;
        float s = -INFINITY;
        if (u < ntok) {
            const floatX *kr = k + u * KD + kvh * HD;
            float dot = 0.0f;
            for (int d = 0; d < HD; d++) dot += qs[d] * __bfloat162float(kr[d]);
            s = dot * scale;
        }
        float m_new = fmaxf(m, warp_max(s));   // finite: key k0 < ntok is scored by lane 0
        float c = expf(m - m_new);
        float p = u < ntok ? expf(s - m_new) : 0.0f;
        m = m_new;
        l = l * c + p;
        __syncwarp();   // the warp's previous tile is done reading ps
        ps[warp * WARP_SIZE + lane] = p;
        __syncwarp();
        int keys = min(WARP_SIZE, ntok - k0);
        for (int i = 0; i < ATT_DIMS; i++) {
            int d = lane + WARP_SIZE * i;
            if (d >= HD) break;
            float a = acc[i] * c;
            for (int j = 0; j < keys; j++) a += ps[warp * WARP_SIZE + j] * __bfloat162float(v[(k0 + j) * KD + kvh * HD + d]);
            acc[i] = a;
        }
    }
    l = warp_sum(l);
    if (lane == 0) { warp_m[warp] = m; warp_l[warp] = l; }
    for (int i = 0; i < ATT_DIMS; i++) {
        int d = lane + WARP_SIZE * i;
        if (d < HD) warp_acc[warp * HD + d] = acc[i];
    }
    __syncthreads();
    float mx = -INFINITY;   // warp 0 always saw key 0, so mx is finite; warps without keys weigh exp(-inf) = 0
    for (int w = 0; w < DEC_WARPS; w++) mx = fmaxf(mx, warp_m[w]);
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float num = 0.0f, den = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) {
            float scale_w = expf(warp_m[w] - mx);
            num += scale_w * warp_acc[w * HD + d];
            den += scale_w * warp_l[w];
        }
        out[h * HD + d] = round_bf16(num / den);
    }
}

// out (NQ,HD) = attention of one new token's queries q (NQ,HD) over the ntok
// keys/values of the cache (k, v: (ntok, NKV, HD), the new token's included).
static void attention_decode(floatX *out, const floatX *q, const floatX *k, const floatX *v, int ntok, int NQ, int NKV, int HD) {
    if (HD > ATT_MAX_HD || HD % 2 != 0) die("attention_decode: head_dim %d is not supported (even, at most %d)", HD, ATT_MAX_HD);
    if (NQ % NKV != 0) die("attention_decode: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    size_t smem = (size_t)(HD + DEC_WARPS * WARP_SIZE + 2 * DEC_WARPS + DEC_WARPS * HD) * sizeof(float);
    CU_LAUNCH(attention_decode_kernel, NQ, DEC_WARPS * WARP_SIZE, smem, 0)(out, q, k, v, ntok, NQ, NKV, HD, 1.0f / sqrtf((float)HD));
    cudaCheck(cudaGetLastError());
}

// SwiGLU: out = silu(gate) * up, silu(z) = z * sigmoid(z), fp32 math, one rounding.
__global__ void swiglu_forward_kernel(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    // out may alias gate: each element is read before it is written, by the same thread
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = __bfloat162float(gate[i]);
        out[i] = round_bf16(g / (1.0f + expf(-g)) * __bfloat162float(up[i]));
    }
}

static void swiglu_forward(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    CU_LAUNCH(swiglu_forward_kernel, grid_for(n, 256), 256, 0, 0)(out, gate, up, n);
    cudaCheck(cudaGetLastError());
}

// Weighted cross-entropy of one chunk of rows: losses[n] = weights[n] *
// (logsumexp(logits[n]) - logits[n, targets[n]]), 0 where the weight is 0 (the
// row is not scored and its logits are not read). One block per row: each
// thread keeps an online (max, sum) over its stride of the vocabulary, then the
// block merges the pairs (warp shuffles, then the warps' pairs in shared memory).
__device__ inline void merge_max_sum(float *m, float *s, float m2, float s2) {
    if (m2 == -INFINITY) return;   // the other side saw nothing
    float mx = fmaxf(*m, m2);
    *s = *s * expf(*m - mx) + s2 * expf(m2 - mx);
    *m = mx;
}

__global__ void crossentropy_forward_kernel(float *losses, const float *logits, const uint32_t *targets,
                                            const float *weights, int N, int V) {
    // losses (N,), logits (N,V) fp32, targets weights (N,)
    __shared__ float warp_m[32], warp_s[32];
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE, warps = blockDim.x / WARP_SIZE;
    for (int row = blockIdx.x; row < N; row += gridDim.x) {
        float w = weights[row];
        if (w == 0.0f) {   // block-uniform
            if (threadIdx.x == 0) losses[row] = 0.0f;
            continue;
        }
        const float *x = logits + (size_t)row * V;
        float m = -INFINITY, s = 0.0f;
        for (int i = threadIdx.x; i < V; i += blockDim.x) merge_max_sum(&m, &s, x[i], 1.0f);
        for (int off = WARP_SIZE / 2; off > 0; off /= 2) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
            merge_max_sum(&m, &s, m2, s2);
        }
        if (lane == 0) { warp_m[warp] = m; warp_s[warp] = s; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int i = 1; i < warps; i++) merge_max_sum(&m, &s, warp_m[i], warp_s[i]);
            losses[row] = w * (m + logf(s) - x[targets[row]]);
        }
        __syncthreads();   // warp_m / warp_s are free for the next row
    }
}

// *out = sum of x[0..n), in one block and a fixed order: deterministic, no atomics.
__global__ void sum_kernel(float *out, const float *x, int n) {
    __shared__ float partial[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    s = warp_sum(s);
    if (threadIdx.x % WARP_SIZE == 0) partial[threadIdx.x / WARP_SIZE] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int i = 0; i < (int)(blockDim.x / WARP_SIZE); i++) total += partial[i];
        *out = total;
    }
}

// The chunked LM head and loss: *loss = sum_n weights[n] * CE(x[n] . lm_w^T, targets[n]).
// Rows go through in chunks of chunk_rows: GEMM the chunk's fp32 logits into
// logits (chunk_rows, V), reduce them to per-token losses, reuse the buffer.
// Peak memory is chunk_rows x V floats whatever N is. losses (N,) is scratch.
// Chunks without a scored row are skipped (s1 masks the prompt).
static void lm_head_loss(cublasHandle_t handle, float *loss, float *losses, float *logits, const floatX *x,
                         const floatX *lm_w, const uint32_t *targets, const float *weights, const float *weights_host,
                         int N, int H, int V, int chunk_rows) {
    const int block = 256;
    for (int n0 = 0; n0 < N; n0 += chunk_rows) {
        int rows = N - n0 < chunk_rows ? N - n0 : chunk_rows;
        int scored = 0;
        for (int n = n0; n < n0 + rows && !scored; n++) scored = weights_host[n] != 0.0f;
        if (!scored) {
            cudaCheck(cudaMemset(losses + n0, 0, (size_t)rows * sizeof(float)));
            continue;
        }
        gemm_nt(handle, logits, CUDA_R_32F, x + (size_t)n0 * H, lm_w, rows, H, V, 0.0f);
        CU_LAUNCH(crossentropy_forward_kernel, grid_for((size_t)rows, 1), block, 0, 0)(losses + n0, logits, targets + n0, weights + n0, rows, V);
        cudaCheck(cudaGetLastError());
    }
    CU_LAUNCH(sum_kernel, 1, 256, 0, 0)(loss, losses, N);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// the model: parameters in one bf16 allocation, carved as s1.c carves its fp32 ones

enum { GP_EMBED, GP_LN1W, GP_QW, GP_QB, GP_KW, GP_KB, GP_VW, GP_VB, GP_OW, GP_LN2W, GP_GATEW, GP_UPW, GP_DOWNW,
       GP_NORMW, GP_LMW, GP_NUM };

static const struct { const char *name; int per_layer; } gpu_param_info[GP_NUM] = {
    {"model.embed_tokens.weight", 0}, {"input_layernorm.weight", 1}, {"self_attn.q_proj.weight", 1},
    {"self_attn.q_proj.bias", 1}, {"self_attn.k_proj.weight", 1}, {"self_attn.k_proj.bias", 1},
    {"self_attn.v_proj.weight", 1}, {"self_attn.v_proj.bias", 1}, {"self_attn.o_proj.weight", 1},
    {"post_attention_layernorm.weight", 1}, {"mlp.gate_proj.weight", 1}, {"mlp.up_proj.weight", 1},
    {"mlp.down_proj.weight", 1}, {"model.norm.weight", 0}, {"lm_head.weight", 0},
};

typedef struct {
    Qwen2Config config;
    floatX *params_memory;         // one allocation, carved into param[]
    floatX *param[GP_NUM];         // e.g. param[GP_QW]: (L, QD, H); param[GP_LMW]: (V, H), or the embedding when tied
    size_t param_dims[GP_NUM][2];  // one layer's slice (dims[1] = 0 for vectors)
    size_t num_parameters;
    cublasHandle_t cublas;
    int chunk_rows;                // rows of the LM head per chunk
    // activations of one forward, for up to `capacity` tokens (bf16 unless noted)
    size_t capacity;
    floatX *res;                   // (N,H) the residual stream
    floatX *ln;                    // (N,H) normed input of the current sublayer
    floatX *q, *att;               // (N,QD)
    floatX *k, *v;                 // (N,KD)
    floatX *gate, *up;             // (N,I); gate then holds silu(gate) * up
    float *logits;                 // (chunk_rows,V) fp32: one chunk of the LM head
    float *losses, *weights;       // (N,) fp32
    float *loss;                   // (1,)
    uint32_t *ids, *targets;       // (N,)
    int *pos;                      // (N,) position within its sequence
} GpuModel;

static size_t gpu_param_numel(const GpuModel *m, int i) {
    size_t n = m->param_dims[i][0] * (m->param_dims[i][1] ? m->param_dims[i][1] : 1);
    return gpu_param_info[i].per_layer ? n * m->config.num_layers : n;
}

static const floatX *gpu_lm_head(const GpuModel *m) {
    return m->config.tie_word_embeddings ? m->param[GP_EMBED] : m->param[GP_LMW];
}

// Copies the tensors of weight file `file` of a checkpoint folder into the GPU
// parameters. loaded[i * L + l] marks tensor i (layer l) as read, so duplicates
// and gaps are caught.
static void gpu_read_safetensors(GpuModel *m, const SafetensorsFolder *files, size_t file, char *loaded) {
    size_t L = m->config.num_layers;
    SafetensorsFile f;
    safetensors_folder_open_file(files, file, &f);
    const char *path = f.path;
    for (size_t e = 0; e < f.num_entries; e++) {
        const SafetensorsEntry *en = &f.entries[e];
        int found = -1;
        size_t layer = 0;
        for (int i = 0; i < GP_NUM && found < 0; i++) {
            if (gpu_param_info[i].per_layer) {
                const char *prefix = "model.layers.";
                size_t plen = strlen(prefix);
                if (strncmp(en->name, prefix, plen) != 0) continue;
                char *end;
                unsigned long long l = strtoull(en->name + plen, &end, 10);
                if (end == en->name + plen || *end != '.' || strcmp(end + 1, gpu_param_info[i].name) != 0) continue;
                if (l >= L) die("%s: tensor %s: layer %llu, but the config has %zu layers", path, en->name, l, L);
                layer = (size_t)l;
                found = i;
            } else if (strcmp(en->name, gpu_param_info[i].name) == 0) {
                found = i;
            }
        }
        if (found == GP_LMW && m->config.tie_word_embeddings) continue;   // a copy of the embedding
        if (found < 0) die("%s: unexpected tensor %s (not part of a Qwen2 model with this config)", path, en->name);
        const size_t *dims = m->param_dims[found];
        size_t ndim = dims[1] ? 2 : 1;
        if (en->ndim != ndim || en->dims[0] != dims[0] || (ndim == 2 && en->dims[1] != dims[1])) {
            if (ndim == 2) die("%s: tensor %s: the config implies shape [%zu, %zu]", path, en->name, dims[0], dims[1]);
            die("%s: tensor %s: the config implies shape [%zu]", path, en->name, dims[0]);
        }
        if (strcmp(en->dtype, "F32") != 0 && strcmp(en->dtype, "F16") != 0 && strcmp(en->dtype, "BF16") != 0)
            die("%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", path, en->name, en->dtype);
        char *mark = &loaded[found * L + layer];
        if (*mark) die("%s: tensor %s appears more than once", path, en->name);
        *mark = 1;
        uint16_t *host = (uint16_t *)mallocCheck(en->numel * sizeof(uint16_t));
        safetensors_read_bf16(&f, en, host);
        cudaCheck(cudaMemcpy(m->param[found] + layer * en->numel, host, en->numel * sizeof(uint16_t), cudaMemcpyHostToDevice));
        free(host);
    }
    safetensors_close(&f);
}

// Loads a HF model folder (config.json plus model.safetensors, or the shards
// listed in model.safetensors.index.json; tensors F32, F16 or BF16) into bf16
// GPU memory. chunk_rows: rows per LM-head chunk (memory: chunk_rows * V * 4 bytes).
static void gpu_model_load(GpuModel *m, const char *dir, int chunk_rows) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    config_read(&m->config, path);
    const Qwen2Config *c = &m->config;
    if (c->head_dim > ATT_MAX_HD) die("%s: head_dim %zu exceeds the attention kernel's %d", path, c->head_dim, ATT_MAX_HD);
    if (c->hidden_size > (1u << 30) || c->vocab_size > (1u << 30) || c->intermediate_size > (1u << 30))
        die("%s: a model size exceeds the kernels' int range", path);
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t dims[GP_NUM][2] = {{c->vocab_size, H}, {H, 0}, {QD, H}, {QD, 0}, {KD, H}, {KD, 0}, {KD, H}, {KD, 0},
                              {H, QD}, {H, 0}, {I, H}, {I, H}, {H, I}, {H, 0}, {c->tie_word_embeddings ? 0 : c->vocab_size, H}};
    memcpy(m->param_dims, dims, sizeof dims);
    for (int i = 0; i < GP_NUM; i++) m->num_parameters += gpu_param_numel(m, i);
    cudaCheck(cudaMalloc((void **)&m->params_memory, m->num_parameters * sizeof(floatX)));
    floatX *p = m->params_memory;
    for (int i = 0; i < GP_NUM; i++) { m->param[i] = p; p += gpu_param_numel(m, i); }

    size_t L = c->num_layers;
    char *loaded = (char *)callocCheck(GP_NUM * L, 1);
    SafetensorsFolder files;
    safetensors_folder_open(&files, dir);
    for (size_t i = 0; i < files.num_files; i++) gpu_read_safetensors(m, &files, i, loaded);
    safetensors_folder_close(&files);
    for (int i = 0; i < GP_NUM; i++)
        for (size_t l = 0; l < (gpu_param_info[i].per_layer ? L : 1); l++)
            if (!loaded[i * L + l] && !(i == GP_LMW && c->tie_word_embeddings)) {
                if (gpu_param_info[i].per_layer) die("%s: missing tensor model.layers.%zu.%s", dir, l, gpu_param_info[i].name);
                die("%s: missing tensor %s", dir, gpu_param_info[i].name);
            }
    free(loaded);
    cublasCheck(cublasCreate(&m->cublas));
    m->chunk_rows = chunk_rows > 0 ? chunk_rows : 1;
}

// Elements per token of the bf16 activation buffers res, ln, q, att, k, v, gate, up.
#define GPU_ACT_BUFFERS 8
static void gpu_activation_widths(const Qwen2Config *c, size_t widths[GPU_ACT_BUFFERS]) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t w[GPU_ACT_BUFFERS] = {H, H, QD, QD, KD, KD, I, I};
    memcpy(widths, w, sizeof w);
}

// GPU bytes of the activations of an N-token forward pass (the LM-head chunk aside).
static size_t gpu_activation_bytes(const Qwen2Config *c, size_t N) {
    size_t widths[GPU_ACT_BUFFERS], per_token = 2 * sizeof(float) + 2 * sizeof(uint32_t) + sizeof(int);   // losses weights ids targets pos
    gpu_activation_widths(c, widths);
    for (int i = 0; i < GPU_ACT_BUFFERS; i++) per_token += widths[i] * sizeof(floatX);
    return N * per_token;
}

// Grows the activation buffers to hold N tokens.
static void gpu_activations_ensure(GpuModel *m, size_t N) {
    if (N <= m->capacity) return;
    const Qwen2Config *c = &m->config;
    floatX **bf[GPU_ACT_BUFFERS] = {&m->res, &m->ln, &m->q, &m->att, &m->k, &m->v, &m->gate, &m->up};
    size_t widths[GPU_ACT_BUFFERS];
    gpu_activation_widths(c, widths);
    for (int i = 0; i < GPU_ACT_BUFFERS; i++) {
        cudaCheck(cudaFree(*bf[i]));
        cudaCheck(cudaMalloc((void **)bf[i], N * widths[i] * sizeof(floatX)));
    }
    float **fl[] = {&m->losses, &m->weights};
    for (size_t i = 0; i < 2; i++) {
        cudaCheck(cudaFree(*fl[i]));
        cudaCheck(cudaMalloc((void **)fl[i], N * sizeof(float)));
    }
    cudaCheck(cudaFree(m->ids)); cudaCheck(cudaFree(m->targets)); cudaCheck(cudaFree(m->pos));
    cudaCheck(cudaMalloc((void **)&m->ids, N * sizeof(uint32_t)));
    cudaCheck(cudaMalloc((void **)&m->targets, N * sizeof(uint32_t)));
    cudaCheck(cudaMalloc((void **)&m->pos, N * sizeof(int)));
    if (m->logits == NULL) {
        cudaCheck(cudaMalloc((void **)&m->logits, (size_t)m->chunk_rows * c->vocab_size * sizeof(float)));
        cudaCheck(cudaMalloc((void **)&m->loss, sizeof(float)));
    }
    m->capacity = N;
}

// One transformer layer l over N tokens whose keys/values go to kc, vc
// (rows [past, past+N) of a (past+N, KD) buffer): attention of each of the S
// sequences (seq_offsets), or, with seq_offsets NULL, of N new tokens of one
// sequence after `past` cached ones.
static void gpu_layer_forward(GpuModel *m, size_t l, int N, const size_t *seq_offsets, size_t S, floatX *kc, floatX *vc, int past) {
    const Qwen2Config *c = &m->config;
    int H = (int)c->hidden_size, I = (int)c->intermediate_size, NQ = (int)c->num_heads, NKV = (int)c->num_kv_heads;
    int HD = (int)c->head_dim, QD = NQ * HD, KD = NKV * HD;
    float eps = (float)c->rms_norm_eps, theta = (float)c->rope_theta;
    floatX *const *p = m->param;
    floatX *k = kc + (size_t)past * KD, *v = vc + (size_t)past * KD;
    rmsnorm_forward(m->ln, m->res, p[GP_LN1W] + l * H, N, H, eps);
    matmul_forward(m->cublas, m->q, m->ln, p[GP_QW] + l * QD * H, p[GP_QB] + l * QD, N, H, QD, 0);
    matmul_forward(m->cublas, k, m->ln, p[GP_KW] + l * KD * H, p[GP_KB] + l * KD, N, H, KD, 0);
    matmul_forward(m->cublas, v, m->ln, p[GP_VW] + l * KD * H, p[GP_VB] + l * KD, N, H, KD, 0);
    rope_forward(m->q, m->pos, N, NQ, HD, theta);
    rope_forward(k, m->pos, N, NKV, HD, theta);
    if (seq_offsets == NULL && N == 1) {
        attention_decode(m->att, m->q, kc, vc, past + 1, NQ, NKV, HD);
    } else if (seq_offsets == NULL) {
        attention_forward(m->att, m->q, kc, vc, N, past, NQ, NKV, HD);
    } else {
        for (size_t s = 0; s < S; s++) {
            size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
            if (T > 0) attention_forward(m->att + n0 * QD, m->q + n0 * QD, k + n0 * KD, v + n0 * KD, (int)T, 0, NQ, NKV, HD);
        }
    }
    matmul_forward(m->cublas, m->res, m->att, p[GP_OW] + l * H * QD, NULL, N, QD, H, 1);
    rmsnorm_forward(m->ln, m->res, p[GP_LN2W] + l * H, N, H, eps);
    matmul_forward(m->cublas, m->gate, m->ln, p[GP_GATEW] + l * I * H, NULL, N, H, I, 0);
    matmul_forward(m->cublas, m->up, m->ln, p[GP_UPW] + l * I * H, NULL, N, H, I, 0);
    swiglu_forward(m->gate, m->gate, m->up, (size_t)N * I);
    matmul_forward(m->cublas, m->res, m->gate, p[GP_DOWNW] + l * H * I, NULL, N, I, H, 1);
}

// Forward pass over S sequences stored back to back, with s1.c's conventions
// (see qwen2_forward() there): ids (N,), seq_offsets (S+1,), mask (N,) marks
// the loss targets (mask[t] = 1: token t is predicted from the tokens before
// it). Returns s1's loss, the mean over sequences of each sequence's
// token-mean cross-entropy; a sequence without targets counts with loss 0.
static float gpu_forward(GpuModel *m, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S) {
    const Qwen2Config *c = &m->config;
    size_t N = seq_offsets[S], H = c->hidden_size, V = c->vocab_size, L = c->num_layers;
    if (N == 0) return 0.0f;
    if (N > (1u << 30)) die("gpu_forward: %zu tokens exceed the kernels' int range", N);
    gpu_activations_ensure(m, N);
    uint32_t *targets = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    float *weights = (float *)mallocCheck(N * sizeof(float));
    int *pos = (int *)mallocCheck(N * sizeof(int));
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], n1 = seq_offsets[s + 1], count = 0;
        if (n1 < n0) die("gpu_forward: sequence offsets decrease at sequence %zu", s);
        for (size_t n = n0 + 1; n < n1; n++) count += mask[n] != 0;
        for (size_t n = n0; n < n1; n++) {
            if (ids[n] >= V) die("gpu_forward: token id %u at position %zu is outside the %zu-row embedding", ids[n], n, V);
            int scored = n + 1 < n1 && mask[n + 1];
            pos[n] = (int)(n - n0);
            targets[n] = scored ? ids[n + 1] : 0;
            weights[n] = scored ? (float)(1.0 / ((double)S * (double)count)) : 0.0f;
        }
    }
    cudaCheck(cudaMemcpy(m->ids, ids, N * sizeof(uint32_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->targets, targets, N * sizeof(uint32_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->weights, weights, N * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->pos, pos, N * sizeof(int), cudaMemcpyHostToDevice));

    embedding_forward(m->res, m->ids, m->param[GP_EMBED], (int)N, (int)H);
    for (size_t l = 0; l < L; l++) gpu_layer_forward(m, l, (int)N, seq_offsets, S, m->k, m->v, 0);
    rmsnorm_forward(m->ln, m->res, m->param[GP_NORMW], (int)N, (int)H, (float)c->rms_norm_eps);
    lm_head_loss(m->cublas, m->loss, m->losses, m->logits, m->ln, gpu_lm_head(m), m->targets, m->weights, weights,
                 (int)N, (int)H, (int)V, m->chunk_rows);
    float loss;
    cudaCheck(cudaMemcpy(&loss, m->loss, sizeof(float), cudaMemcpyDeviceToHost));
    free(targets); free(weights); free(pos);
    return loss;
}

// ----------------------------------------------------------------------------
// decoding with a KV cache: one token at a time, for sample.cu

typedef struct {
    size_t max_len, len;   // capacity and tokens cached (the next token's position)
    floatX *k, *v;         // (L, max_len, KD) keys after RoPE, values
    float *logits;         // (V,) host copy of the last step's logits
} GpuKVCache;

static void gpu_kvcache_create(GpuKVCache *kv, const GpuModel *m, size_t max_len) {
    const Qwen2Config *c = &m->config;
    size_t bytes = c->num_layers * max_len * c->num_kv_heads * c->head_dim * sizeof(floatX);
    kv->max_len = max_len;
    kv->len = 0;
    cudaCheck(cudaMalloc((void **)&kv->k, bytes));
    cudaCheck(cudaMalloc((void **)&kv->v, bytes));
    kv->logits = (float *)mallocCheck(c->vocab_size * sizeof(float));
}

static void gpu_kvcache_free(GpuKVCache *kv) {
    cudaCheck(cudaFree(kv->k));
    cudaCheck(cudaFree(kv->v));
    free(kv->logits);
    memset(kv, 0, sizeof *kv);
}

// Appends n tokens at positions kv->len.. (a prompt in one pass, or one
// generated token) and returns the logits (V,) that follow the last of them
// (host memory, valid until the next call). The layer kernels of gpu_forward():
// K/V go straight into the cache rows, and attention reads the cached keys as
// `past` (attention_decode() when n = 1, attention_forward() for a prompt).
// Only the last token goes through the LM head.
static const float *gpu_decode(GpuModel *m, GpuKVCache *kv, const uint32_t *ids, size_t n) {
    const Qwen2Config *c = &m->config;
    size_t H = c->hidden_size, V = c->vocab_size, L = c->num_layers, KD = c->num_kv_heads * c->head_dim;
    if (n == 0) die("gpu_decode: no tokens to feed");
    if (kv->len + n > kv->max_len) die("gpu_decode: KV cache is full (%zu tokens, %zu more requested)", kv->max_len, n);
    gpu_activations_ensure(m, n);
    int *pos = (int *)mallocCheck(n * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= V) die("gpu_decode: token id %u is outside the %zu-row embedding", ids[i], V);
        pos[i] = (int)(kv->len + i);
    }
    cudaCheck(cudaMemcpy(m->ids, ids, n * sizeof(uint32_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->pos, pos, n * sizeof(int), cudaMemcpyHostToDevice));
    free(pos);
    embedding_forward(m->res, m->ids, m->param[GP_EMBED], (int)n, (int)H);
    for (size_t l = 0; l < L; l++)
        gpu_layer_forward(m, l, (int)n, NULL, 1, kv->k + l * kv->max_len * KD, kv->v + l * kv->max_len * KD, (int)kv->len);
    const floatX *last = m->res + (n - 1) * H;
    rmsnorm_forward(m->ln, last, m->param[GP_NORMW], 1, (int)H, (float)c->rms_norm_eps);
    gemm_nt(m->cublas, m->logits, CUDA_R_32F, m->ln, gpu_lm_head(m), 1, (int)H, (int)V, 0.0f);
    cudaCheck(cudaMemcpy(kv->logits, m->logits, V * sizeof(float), cudaMemcpyDeviceToHost));
    kv->len += n;
    return kv->logits;
}

static void gpu_model_free(GpuModel *m) {
    void *bufs[] = {m->params_memory, m->res, m->ln, m->q, m->att, m->k, m->v, m->gate, m->up, m->logits,
                    m->losses, m->weights, m->loss, m->ids, m->targets, m->pos};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaCheck(cudaFree(bufs[i]));
    cublasCheck(cublasDestroy(m->cublas));
    memset(m, 0, sizeof *m);
}

#endif // S1C_KERNELS_CUH
