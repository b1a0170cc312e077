/*
 * s1.c: Qwen2.5 training and inference in plain C, fp32, on the CPU.
 *
 * This is the readable reference of everything s1 computes on the model side:
 * the Qwen2.5 forward pass exactly as Hugging Face transformers computes it, the
 * backward pass for every parameter, PyTorch's AdamW with HF's cosine schedule,
 * s1's loss normalisation, HF safetensors checkpoints in and out, and a KV-cache
 * decoder. It is the oracle every CUDA kernel is tested against, and it is itself
 * tested against transformers (tests/test_s1.c). No intrinsics, no BLAS: plain
 * loops that the compiler vectorises, OpenMP across cores.
 *
 *   make s1
 *   ./s1 train --init-config config.json --data train.shard --out ckpt   # from scratch
 *   ./s1 train --model Qwen2.5-0.5B-Instruct --data train.shard --out ckpt
 *   ./s1 train --resume ckpt --data train.shard --out ckpt             # after a kill
 *   ./s1 loss --model ckpt --data val.shard                            # last line "loss: <float>"
 *   ./s1 bench [--hidden 256 --layers 4 ...]                           # "s1 tokens/s: <float>"
 *   ./s1 <command> --help
 *
 * Dimension letters used in the shape comments:
 *   V vocabulary rows of the embedding (may exceed the tokenizer's size)
 *   H hidden size, I MLP intermediate size, L layers
 *   NQ query heads, NKV key/value heads (GQA group G = NQ/NKV), HD head dim
 *   QD = NQ*HD, KD = NKV*HD
 *   N tokens of a batch (all sequences back to back), T tokens of one sequence
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "common/util.h"
#include "common/detmath.h"   // log, exp, sin, cos, pow with the same bits on every CPU (libm's differ)
#include "common/json.h"
#include "common/shard.h"
#include "common/qwen2_config.h"   // Qwen2Config, config_read()
#include "common/qwen2_weights.h"  // the parameter layout, checkpoint folders in and out
#include "common/train.h"          // schedule, data order, settings and flags shared with sft train
#include "common/safetensors.h"   // safetensors_open() and the dtype conversions

// ----------------------------------------------------------------------------
// vector helpers
//
// Every sum in the file runs in a fixed order that does not depend on the
// number of threads, so a resumed run is bit-identical to an uninterrupted one.
// dot() keeps LANES independent partial sums and adds them up at the end: the
// lane-wise accumulation lets the compiler vectorise without -ffast-math.

#define LANES 16

// Loops with less work than this (multiply-adds or elements) run on the calling
// thread: for the tiny models of the CPU demo, waking the thread team would
// cost more than it saves.
#define MIN_PARALLEL_WORK 262144

static inline float dot(const float *a, const float *b, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j] * b[i + j];
    for (int w = LANES / 2; w > 0; w /= 2)  // pairwise, in a fixed order
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float s = acc[0];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// e^x in a form the compiler can vectorise (a call to libm's expf blocks that
// without -ffast-math). Cephes' expf: e^x = 2^k e^r with k = round(x log2(e)),
// r = x - k ln(2) (ln 2 split in two parts so r is exact), e^r from a degree-7
// polynomial; relative error about 1e-7 (1-2 ulp) on [-87, 88]. Below -87 the
// result is 0, above 88 it saturates: far outside anything a softmax or a
// sigmoid here can tell apart. A NaN stays a NaN. The input is clamped to
// [-88, 88] first (a NaN to -88) so that k converts to an int in range and
// the exponent bits k + 127 are never negative: converting NaN or 1e30 to
// int32, or shifting a negative value, is undefined behaviour.
static inline float exp_fast(float x) {
    float xc = x >= -88.0f ? (x > 88.0f ? 88.0f : x) : -88.0f;
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest: 1.5 * 2^23 shifts the fraction out
    float r = xc - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;   // 2^k; k in [-127, 127]
    float scale;
    memcpy(&scale, &bits, 4);
    return x != x ? x : x < -87.0f ? 0.0f : y * scale;
}

// max_i x[i] (n >= 1), lane-wise so that it vectorises
static inline float max_lanes(const float *x, size_t n) {
    float acc[LANES];
    for (int j = 0; j < LANES; j++) acc[j] = x[0];
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    float mx = acc[0];
    for (int j = 1; j < LANES; j++) mx = acc[j] > mx ? acc[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

// sum_i e^(x[i] - shift), with LANES partial sums in a fixed order
static inline float sum_exp(const float *x, float shift, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += exp_fast(x[i + j] - shift);
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float s = acc[0];
    for (; i < n; i++) s += exp_fast(x[i] - shift);
    return s;
}

// y += alpha * x
static inline void axpy(float *y, const float *x, float alpha, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

// ----------------------------------------------------------------------------
// all the individual layers' forward and backward passes
// Backward functions ADD into their gradient outputs (+=).

// Token embedding: out[n] = table[ids[n]].
static void embedding_forward(float *out, const uint32_t *ids, const float *table, size_t N, size_t C) {
    // out (N,C), table (V,C)
    #pragma omp parallel for schedule(static) if(N * C >= MIN_PARALLEL_WORK)
    for (size_t n = 0; n < N; n++) memcpy(out + n * C, table + (size_t)ids[n] * C, C * sizeof(float));
}

static void embedding_backward(float *dtable, const float *dout, const uint32_t *ids, size_t N, size_t C) {
    // serial over tokens: two tokens with the same id add into the same row
    for (size_t n = 0; n < N; n++) axpy(dtable + (size_t)ids[n] * C, dout + n * C, 1.0f, C);
}

// RMSNorm as Qwen2RMSNorm: y = x * rsqrt(mean(x^2) + eps), out = weight * y.
static void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, size_t N, size_t C, float eps) {
    // out (N,C), rstd (N,), inp (N,C), weight (C,)
    #pragma omp parallel for schedule(static) if(N * C >= MIN_PARALLEL_WORK)
    for (size_t n = 0; n < N; n++) {
        const float *x = inp + n * C;
        float r = 1.0f / sqrtf(dot(x, x, C) / (float)C + eps);
        float *o = out + n * C;
        for (size_t i = 0; i < C; i++) o[i] = weight[i] * (x[i] * r);
        rstd[n] = r;
    }
}

static void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                             const float *rstd, size_t N, size_t C) {
    // with y = x*r and g = weight*dout: dx = r * (g - y * mean(g*y)),  dweight = sum_n dout*y
    #pragma omp parallel for schedule(static) if(N * C >= MIN_PARALLEL_WORK)
    for (size_t n = 0; n < N; n++) {
        const float *x = inp + n * C, *d = dout + n * C;
        float r = rstd[n];
        float gy = 0.0f;
        for (size_t i = 0; i < C; i++) gy += weight[i] * d[i] * (x[i] * r);
        gy /= (float)C;
        float *dx = dinp + n * C;
        for (size_t i = 0; i < C; i++) dx[i] += r * (weight[i] * d[i] - (x[i] * r) * gy);
    }
    // dweight is a sum over tokens: one serial pass keeps the order fixed
    for (size_t n = 0; n < N; n++) {
        const float *x = inp + n * C, *d = dout + n * C;
        float r = rstd[n];
        for (size_t i = 0; i < C; i++) dweight[i] += d[i] * (x[i] * r);
    }
}

// Linear layer y = x W^T + b with W stored (OC, C) as in HF checkpoints.
// Both directions run on one register-tiled kernel:
// out[r, c] += sum_k a[r*a_row + k*a_k] * b[k*ldb + c] for a block of
// nr <= TILE_ROWS rows and nc <= TILE_COLS columns. The TILE_ROWS x TILE_COLS
// accumulators stay in registers while k runs: each step broadcasts TILE_ROWS
// scalars of a and multiplies one contiguous row of b. Each element sums over k in order.
#define TILE_ROWS 8
#define TILE_COLS 32
static void matmul_accumulate_tile(float *out, size_t ldo, const float *a, size_t a_row, size_t a_k, const float *b,
                                   size_t ldb, size_t K, size_t nr, size_t nc) {
    float acc[TILE_ROWS][TILE_COLS] = {{0}};
    if (nr == TILE_ROWS && nc == TILE_COLS) {
        for (size_t k = 0; k < K; k++) {
            float ak[TILE_ROWS];
            for (int r = 0; r < TILE_ROWS; r++) ak[r] = a[r * a_row + k * a_k];
            const float *bk = b + k * ldb;
            #pragma GCC unroll 8
            for (int r = 0; r < TILE_ROWS; r++)
                for (int c = 0; c < TILE_COLS; c++) acc[r][c] += ak[r] * bk[c];
        }
    } else {
        for (size_t k = 0; k < K; k++)
            for (size_t r = 0; r < nr; r++)
                for (size_t c = 0; c < nc; c++) acc[r][c] += a[r * a_row + k * a_k] * b[k * ldb + c];
    }
    for (size_t r = 0; r < nr; r++)
        for (size_t c = 0; c < nc; c++) out[r * ldo + c] += acc[r][c];
}

// Forward. A batch: each work item packs a TILE_COLS-wide block of W^T
// (C, TILE_COLS) so its rows are contiguous, then runs the tile kernel over a
// group of tokens. Tokens are split into just enough groups to give every
// thread work, so a block is packed as few times as possible. Who computes an
// element never changes its value. A handful of tokens (decoding, N = 1): one
// dot() per output, straight down the weight rows, where packing would cost as
// much as the product.
static void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C, size_t OC) {
    // out (N,OC) = inp (N,C) . weight (OC,C)^T + bias (OC,) [bias may be NULL]
    if (N < TILE_ROWS) {
        #pragma omp parallel for collapse(2) schedule(static) if(N * C * OC >= MIN_PARALLEL_WORK)
        for (size_t n = 0; n < N; n++)
            for (size_t o = 0; o < OC; o++) out[n * OC + o] = dot(inp + n * C, weight + o * C, C) + (bias ? bias[o] : 0.0f);
        return;
    }
    size_t OB = (OC + TILE_COLS - 1) / TILE_COLS, row_blocks = (N + TILE_ROWS - 1) / TILE_ROWS;
    size_t NG = (2 * (size_t)omp_get_max_threads() + OB - 1) / OB;
    NG = NG < row_blocks ? NG : row_blocks;
    size_t group_rows = (row_blocks + NG - 1) / NG * TILE_ROWS;
    #pragma omp parallel if(N * C * OC >= MIN_PARALLEL_WORK)
    {
        float *packed = (float *)mallocCheck(C * TILE_COLS * sizeof(float));  // (C, TILE_COLS)
        #pragma omp for collapse(2) schedule(static)
        for (size_t ob = 0; ob < OB; ob++)
            for (size_t g = 0; g < NG; g++) {
                size_t o0 = ob * TILE_COLS, nc = OC - o0 < TILE_COLS ? OC - o0 : TILE_COLS;
                size_t n_begin = g * group_rows, n_end = n_begin + group_rows < N ? n_begin + group_rows : N;
                if (n_begin >= N) continue;
                for (size_t j = 0; j < nc; j++)
                    for (size_t c = 0; c < C; c++) packed[c * TILE_COLS + j] = weight[(o0 + j) * C + c];
                for (size_t n0 = n_begin; n0 < n_end; n0 += TILE_ROWS) {
                    size_t nr = n_end - n0 < TILE_ROWS ? n_end - n0 : TILE_ROWS;
                    for (size_t r = 0; r < nr; r++)
                        for (size_t j = 0; j < nc; j++) out[(n0 + r) * OC + o0 + j] = bias ? bias[o0 + j] : 0.0f;
                    matmul_accumulate_tile(out + n0 * OC + o0, OC, inp + n0 * C, C, 1, packed, TILE_COLS, C, nr, nc);
                }
            }
        free(packed);
    }
}

static void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, size_t N, size_t C, size_t OC) {
    size_t CB = (C + TILE_COLS - 1) / TILE_COLS;
    // dinp (N,C) += dout (N,OC) . weight (OC,C)
    #pragma omp parallel for collapse(2) schedule(static) if(N * C * OC >= MIN_PARALLEL_WORK)
    for (size_t n0 = 0; n0 < N; n0 += TILE_ROWS)
        for (size_t cb = 0; cb < CB; cb++) {
            size_t c0 = cb * TILE_COLS, nr = N - n0 < TILE_ROWS ? N - n0 : TILE_ROWS, nc = C - c0 < TILE_COLS ? C - c0 : TILE_COLS;
            matmul_accumulate_tile(dinp + n0 * C + c0, C, dout + n0 * OC, OC, 1, weight + c0, C, OC, nr, nc);
        }
    // dweight (OC,C) += dout^T (OC,N) . inp (N,C)
    #pragma omp parallel for collapse(2) schedule(static) if(N * C * OC >= MIN_PARALLEL_WORK)
    for (size_t o0 = 0; o0 < OC; o0 += TILE_ROWS)
        for (size_t cb = 0; cb < CB; cb++) {
            size_t c0 = cb * TILE_COLS, nr = OC - o0 < TILE_ROWS ? OC - o0 : TILE_ROWS, nc = C - c0 < TILE_COLS ? C - c0 : TILE_COLS;
            matmul_accumulate_tile(dweight + o0 * C + c0, C, dout + o0, 1, OC, inp + c0, C, N, nr, nc);
        }
    // dbias (OC,) += column sums of dout
    if (dbias != NULL) {
        #pragma omp parallel for schedule(static) if(N * OC >= MIN_PARALLEL_WORK)
        for (size_t o = 0; o < OC; o++) {
            float sum = 0.0f;
            for (size_t n = 0; n < N; n++) sum += dout[n * OC + o];
            dbias[o] += sum;
        }
    }
}

// Rotary embedding, rotate-half (NeoX) convention as HF Qwen2, in place.
// cos/sin tables are (P, HD/2): row p holds cos/sin(p * inv_freq[i]).
// direction +1 rotates by +angle (forward), -1 by -angle (backward).
static void rope_rotate(float *x, const size_t *pos, const float *cos_t, const float *sin_t, size_t N, size_t NH, size_t HD, float direction) {
    // x (N, NH, HD); x'[i] = x[i] cos - x[i+HD/2] sin, x'[i+HD/2] = x[i+HD/2] cos + x[i] sin
    size_t half = HD / 2;
    #pragma omp parallel for schedule(static) if(N * NH * HD >= MIN_PARALLEL_WORK)
    for (size_t n = 0; n < N; n++) {
        const float *c = cos_t + pos[n] * half, *s = sin_t + pos[n] * half;
        for (size_t h = 0; h < NH; h++) {
            float *v = x + (n * NH + h) * HD;
            for (size_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], sn = direction * s[i];
                v[i] = a * c[i] - b * sn;
                v[i + half] = b * c[i] + a * sn;
            }
        }
    }
}

static void rope_forward(float *x, const size_t *pos, const float *cos_t, const float *sin_t, size_t N, size_t NH, size_t HD) {
    rope_rotate(x, pos, cos_t, sin_t, N, NH, HD, 1.0f);
}

static void rope_backward(float *dx, const size_t *pos, const float *cos_t, const float *sin_t, size_t N, size_t NH, size_t HD) {
    // the rotation is orthogonal: the gradient goes back through its transpose, the rotation by -angle
    rope_rotate(dx, pos, cos_t, sin_t, N, NH, HD, -1.0f);
}

// Attention works on K, V (and in the backward pass Q, dout) transposed to
// (heads, HD, T) per sequence: scores and output sums then run along the token
// axis, long loops the compiler vectorises, instead of one short dot product
// per key. x (T, NH, HD) rows -> xt (NH, HD, ld) with ld >= T.
static void transpose_heads(float *xt, const float *x, size_t T, size_t NH, size_t HD, size_t ld) {
    #pragma omp parallel for collapse(2) schedule(static) if(T * NH * HD >= MIN_PARALLEL_WORK)
    for (size_t h = 0; h < NH; h++)
        for (size_t i = 0; i < HD; i++)
            for (size_t t = 0; t < T; t++) xt[(h * HD + i) * ld + t] = x[(t * NH + h) * HD + i];
}

// scores[u] = scale * q . k_u for u < ntok, with kt (HD, ld) one KV head's keys
// transposed: a sum over the head dimension, in order, of whole token rows.
static void attention_scores(float *scores, const float *q, const float *kt, size_t ntok, size_t ld, size_t HD, float scale) {
    for (size_t u = 0; u < ntok; u++) scores[u] = 0.0f;
    for (size_t i = 0; i < HD; i++) axpy(scores, kt + i * ld, q[i], ntok);
    for (size_t u = 0; u < ntok; u++) scores[u] *= scale;
}

// One query row of causal attention: out (HD,) = softmax(scores) . V over the
// first ntok keys, *lse = log-sum-exp of the scores (saved for the backward
// pass). kt, vt (HD, ld): the KV head transposed. scores: scratch for ntok
// floats, one row, never a T x T matrix.
static void attention_row(float *out, float *lse, const float *q, const float *kt, const float *vt, size_t ntok,
                          size_t ld, size_t HD, float scale, float *scores) {
    attention_scores(scores, q, kt, ntok, ld, HD, scale);
    float mx = max_lanes(scores, ntok), sum = sum_exp(scores, mx, ntok);
    for (size_t u = 0; u < ntok; u++) scores[u] = exp_fast(scores[u] - mx) / sum;
    for (size_t i = 0; i < HD; i++) out[i] = dot(scores, vt + i * ld, ntok);
    *lse = mx + det_logf(sum);
}

// Causal GQA attention over a batch of sequences stored back to back
// (seq_offsets (S+1,)). Query head h reads KV head h / G; K/V are never repeated.
static void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                              const size_t *seq_offsets, size_t S, size_t NQ, size_t NKV, size_t HD) {
    // out (N,NQ,HD), lse (N,NQ), q (N,NQ,HD), k v (N,NKV,HD)
    size_t QD = NQ * HD, KD = NKV * HD, G = NQ / NKV;
    float scale = 1.0f / sqrtf((float)HD);
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
        float *kt = (float *)mallocCheck(2 * KD * T * sizeof(float)), *vt = kt + KD * T;  // (NKV, HD, T) each
        transpose_heads(kt, k + n0 * KD, T, NKV, HD, T);
        transpose_heads(vt, v + n0 * KD, T, NKV, HD, T);
        #pragma omp parallel if(T * T * QD >= MIN_PARALLEL_WORK)
        {
            float *scores = (float *)mallocCheck(T * sizeof(float));
            #pragma omp for collapse(2) schedule(static)
            for (size_t t = 0; t < T; t++)
                for (size_t h = 0; h < NQ; h++) {
                    size_t n = n0 + t, kvh = h / G;
                    attention_row(out + n * QD + h * HD, lse + n * NQ + h, q + n * QD + h * HD, kt + kvh * HD * T,
                                  vt + kvh * HD * T, t + 1, T, HD, scale, scores);
                }
            free(scores);
        }
        free(kt);
    }
}

// With p = softmax(s), dp_u = dout . v_u and D = dout . out = sum_u p_u dp_u:
//   ds_u = p_u (dp_u - D),  dq = scale sum_u ds_u k_u,  dk_u += scale ds_u q,  dv_u += p_u dout.
// Probabilities are recomputed from the saved lse. Two passes keep every
// gradient element owned by one thread: query rows (dq), then key rows (dk, dv).
static void attention_backward(float *dq, float *dk, float *dv, float *dsum, const float *dout, const float *out,
                               const float *lse, const float *q, const float *k, const float *v,
                               const size_t *seq_offsets, size_t S, size_t NQ, size_t NKV, size_t HD) {
    // dq (N,NQ,HD), dk dv (N,NKV,HD), dsum (N,NQ) scratch for D
    size_t QD = NQ * HD, KD = NKV * HD, G = NQ / NKV;
    float scale = 1.0f / sqrtf((float)HD);
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
        // this sequence transposed: q, dout (NQ, HD, T); k, v (NKV, HD, T); lse, D (NQ, T)
        float *qt = (float *)mallocCheck((2 * QD + 2 * KD + 2 * NQ) * T * sizeof(float));
        float *dt = qt + QD * T, *kt = dt + QD * T, *vt = kt + KD * T, *lset = vt + KD * T, *Dt = lset + NQ * T;
        transpose_heads(qt, q + n0 * QD, T, NQ, HD, T);
        transpose_heads(dt, dout + n0 * QD, T, NQ, HD, T);
        transpose_heads(kt, k + n0 * KD, T, NKV, HD, T);
        transpose_heads(vt, v + n0 * KD, T, NKV, HD, T);
        transpose_heads(lset, lse + n0 * NQ, T, NQ, 1, T);
        #pragma omp parallel if(T * T * QD >= MIN_PARALLEL_WORK)
        {
            float *p = (float *)mallocCheck(2 * T * sizeof(float)), *dp = p + T;  // one row of p (then ds) and dp
            #pragma omp for collapse(2) schedule(static)
            for (size_t t = 0; t < T; t++)
                for (size_t h = 0; h < NQ; h++) {  // pass 1: dq of query row (t, h), over keys u <= t
                    size_t n = n0 + t, kvh = h / G;
                    const float *dor = dout + n * QD + h * HD, *kth = kt + kvh * HD * T;
                    float D = dot(dor, out + n * QD + h * HD, HD), L = lse[n * NQ + h];
                    dsum[n * NQ + h] = D;
                    attention_scores(p, q + n * QD + h * HD, kth, t + 1, T, HD, scale);
                    attention_scores(dp, dor, vt + kvh * HD * T, t + 1, T, HD, 1.0f);
                    for (size_t u = 0; u <= t; u++) p[u] = exp_fast(p[u] - L) * (dp[u] - D);
                    float *dqr = dq + n * QD + h * HD;
                    for (size_t i = 0; i < HD; i++) dqr[i] += scale * dot(p, kth + i * T, t + 1);
                }
            #pragma omp single
            transpose_heads(Dt, dsum + n0 * NQ, T, NQ, 1, T);
            #pragma omp for collapse(2) schedule(static)
            for (size_t u = 0; u < T; u++)
                for (size_t kvh = 0; kvh < NKV; kvh++) {  // pass 2: dk, dv of key row (u, kvh), over queries t >= u
                    size_t m = T - u;
                    const float *kr = k + (n0 + u) * KD + kvh * HD, *vr = v + (n0 + u) * KD + kvh * HD;
                    float *dkr = dk + (n0 + u) * KD + kvh * HD, *dvr = dv + (n0 + u) * KD + kvh * HD;
                    for (size_t h = kvh * G; h < (kvh + 1) * G; h++) {
                        const float *qth = qt + h * HD * T + u, *dth = dt + h * HD * T + u;
                        attention_scores(p, kr, qth, m, T, HD, scale);
                        attention_scores(dp, vr, dth, m, T, HD, 1.0f);
                        const float *Lh = lset + h * T + u, *Dh = Dt + h * T + u;
                        for (size_t j = 0; j < m; j++) p[j] = exp_fast(p[j] - Lh[j]);
                        for (size_t i = 0; i < HD; i++) dvr[i] += dot(p, dth + i * T, m);
                        for (size_t j = 0; j < m; j++) p[j] *= dp[j] - Dh[j];
                        for (size_t i = 0; i < HD; i++) dkr[i] += scale * dot(p, qth + i * T, m);
                    }
                }
            free(p);
        }
        free(qt);
    }
}

// SwiGLU: out = silu(gate) * up, silu(z) = z * sigmoid(z).
static void swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    #pragma omp parallel for schedule(static) if(n >= MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + exp_fast(-gate[i])) * up[i];
}

static void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
    // d silu(z)/dz = sigmoid(z) * (1 + z * (1 - sigmoid(z)))
    #pragma omp parallel for schedule(static) if(n >= MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + exp_fast(-gate[i]));
        dgate[i] += dout[i] * up[i] * sig * (1.0f + gate[i] * (1.0f - sig));
        dup[i] += dout[i] * gate[i] * sig;
    }
}

// Weighted cross-entropy: loss = sum_n weight[n] * (lse_n - logits[n, target[n]]).
// The weights carry the loss mask and s1's normalisation (see qwen2_forward).
static float crossentropy_forward(float *lse, const float *logits, const uint32_t *targets, const float *weights,
                                  size_t N, size_t V) {
    // lse (N,), logits (N,V)
    #pragma omp parallel for schedule(static) if(N * V >= MIN_PARALLEL_WORK)
    for (size_t n = 0; n < N; n++) {
        if (weights[n] == 0.0f) { lse[n] = 0.0f; continue; }
        const float *l = logits + n * V;
        float mx = max_lanes(l, V);
        lse[n] = mx + det_logf(sum_exp(l, mx, V));
    }
    double loss = 0.0;
    for (size_t n = 0; n < N; n++)
        if (weights[n] != 0.0f) loss += (double)weights[n] * (double)(lse[n] - logits[n * V + targets[n]]);
    return (float)loss;
}

static void crossentropy_backward(float *dlogits, const float *logits, const float *lse, const uint32_t *targets,
                                  const float *weights, float grad_scale, size_t N, size_t V) {
    // dlogits (N,V) = grad_scale * weight * (softmax - onehot); may alias logits (computed in place)
    #pragma omp parallel for schedule(static) if(N * V >= MIN_PARALLEL_WORK)
    for (size_t n = 0; n < N; n++) {
        float w = grad_scale * weights[n];
        float *d = dlogits + n * V;
        const float *l = logits + n * V;
        if (w == 0.0f) { memset(d, 0, V * sizeof(float)); continue; }
        for (size_t i = 0; i < V; i++) d[i] = w * exp_fast(l[i] - lse[n]);
        d[targets[n]] -= w;
    }
}

static void residual_forward(float *out, const float *inp, size_t n) {
    // out += inp; the gradient of a residual add flows through to both inputs unchanged
    #pragma omp parallel for schedule(static) if(n >= MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] + out[i];
}

// ----------------------------------------------------------------------------
// Qwen2 model definition
//
// The config (Qwen2Config, config_read()) lives in common/qwen2_config.h and
// the parameter layout (P_EMBED ... P_LMW, parameter_info, the HF tensor
// names) in common/qwen2_weights.h, shared with the GPU programs: any Qwen2.5
// size, tied or untied, any GQA ratio.

typedef struct {
    float *embed;  // (V, H)       model.embed_tokens.weight
    float *ln1w;   // (L, H)       input_layernorm.weight
    float *qw;     // (L, QD, H)   self_attn.q_proj.weight
    float *qb;     // (L, QD)      self_attn.q_proj.bias
    float *kw;     // (L, KD, H)
    float *kb;     // (L, KD)
    float *vw;     // (L, KD, H)
    float *vb;     // (L, KD)
    float *ow;     // (L, H, QD)   self_attn.o_proj.weight (no bias)
    float *ln2w;   // (L, H)       post_attention_layernorm.weight
    float *gatew;  // (L, I, H)    mlp.gate_proj.weight
    float *upw;    // (L, I, H)    mlp.up_proj.weight
    float *downw;  // (L, H, I)    mlp.down_proj.weight
    float *normw;  // (H)          model.norm.weight
    float *lmw;    // (V, H)       lm_head.weight; 0 floats when tied (the head is embed)
} ParameterTensors;

// Carves one allocation into the named tensors (used for params, grads and AdamW m, v).
static void carve_parameters(ParameterTensors *p, float *memory, const Qwen2Config *c) {
    float **ptrs[NUM_PARAMETER_TENSORS] = {&p->embed, &p->ln1w, &p->qw, &p->qb, &p->kw, &p->kb, &p->vw, &p->vb,
                                           &p->ow, &p->ln2w, &p->gatew, &p->upw, &p->downw, &p->normw, &p->lmw};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *ptrs[i] = memory;
        memory += parameter_numel(c, i);
    }
}

typedef struct {
    size_t num_tokens, num_seqs;
    size_t capacity;       // tokens the buffers below hold
    float *res;            // (L+1, N, H) residual stream entering each layer, and the final one
    float *resmid;         // (L, N, H) residual after attention
    float *ln1, *rstd1;    // (L, N, H), (L, N)
    float *q;              // (L, N, QD) after RoPE
    float *k, *v;          // (L, N, KD) k after RoPE
    float *att, *attlse;   // (L, N, QD), (L, N, NQ)
    float *ln2, *rstd2;    // (L, N, H), (L, N)
    float *gate, *up;      // (L, N, I) pre-activation projections
    float *mlp;            // (L, N, I) silu(gate) * up
    float *lnf, *rstdf;    // (N, H), (N)
    float *logits;         // (N, V); holds dlogits after qwen2_backward
    float *celse;          // (N,) log-sum-exp of each scored row
    // gradient scratch, one layer's worth
    float *dres, *dln;     // (N, H)
    float *dq, *datt;      // (N, QD)
    float *dk, *dv;        // (N, KD)
    float *dsum;           // (N, NQ)
    float *dgate, *dup, *dmlp;  // (N, I)
    // the batch
    uint32_t *ids;         // (N,)
    uint32_t *targets;     // (N,) token each position predicts (the next one)
    float *weights;        // (N,) loss weight of each position, 0 where nothing is scored
    size_t *pos;           // (N,) position within its sequence (RoPE restarts at 0 per sequence)
    size_t *seq_offsets;   // (S+1,)
    size_t seq_capacity;
} Activations;

typedef struct {
    Qwen2Config config;
    ParameterTensors params;
    float *params_memory;
    size_t num_parameters;
    TensorInfo *tensors;   // the HF tensors, in checkpoint order
    size_t num_tensors;
    ParameterTensors grads;       // allocated at the first backward
    float *grads_memory;
    float *adam_m, *adam_v;       // allocated at the first update
    size_t step;                  // AdamW steps taken
    Activations acts;
    float *rope_cos, *rope_sin;   // (rope_len, HD/2)
    size_t rope_len;
    int backward_ready;           // a forward with a loss mask ran since the last backward
} Qwen2;

static float *lm_head(const ParameterTensors *p, const Qwen2Config *c) { return c->tie_word_embeddings ? p->embed : p->lmw; }

// Allocates the parameters of a config (uninitialised); what names the config
// (its file) in errors, so a config too large for this machine says which one.
static void qwen2_build_named(Qwen2 *m, const Qwen2Config *c, const char *what) {
    memset(m, 0, sizeof *m);
    config_validate(c, what);
    m->config = *c;
    m->num_parameters = parameter_count(c);
    m->params_memory = (float *)malloc(m->num_parameters * sizeof(float));   // config_validate bounds the count: no overflow
    if (m->params_memory == NULL)
        die("%s: a model of %zu parameters needs %.1f GB for its fp32 weights, more than this machine can allocate", what,
            m->num_parameters, 4e-9 * (double)m->num_parameters);
    carve_parameters(&m->params, m->params_memory, c);
    m->tensors = qwen2_tensor_list(c, &m->num_tensors);
}

static void qwen2_build(Qwen2 *m, const Qwen2Config *c) { qwen2_build_named(m, c, "model config"); }

// HF's from-scratch initialisation: weights N(0, 0.02), biases 0, RMSNorm weights 1.
__attribute__((unused)) static void qwen2_init_random(Qwen2 *m, const Qwen2Config *c, uint64_t seed) {
    qwen2_build(m, c);
    qwen2_init_parameters(m->params_memory, c, seed);
}

// ----------------------------------------------------------------------------
// checkpoints in and out: HF folders through common/qwen2_weights.h (every
// name, shape and dtype checked against the config; safetensors format:
// docs/qwen2.5.md section 4.1)

static void qwen2_read_tensor(void *ctx, const TensorInfo *t, SafetensorsFile *f, const SafetensorsEntry *e) {
    safetensors_read_f32(f, e, ((Qwen2 *)ctx)->params_memory + t->offset);
}

// Loads a HF model folder: config.json plus model.safetensors, or the shards
// listed in model.safetensors.index.json. Any tensor may be F32, F16 or BF16.
static void qwen2_load(Qwen2 *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    Qwen2Config c;
    config_read(&c, path);
    qwen2_build_named(m, &c, path);
    m->step = qwen2_checkpoint_read(dir, &c, qwen2_read_tensor, m);
}

// Writes dir/config.json and dir/model.safetensors (F32, one file): a folder
// that transformers' from_pretrained loads.
__attribute__((unused)) static void qwen2_save(const Qwen2 *m, const char *dir) {
    qwen2_checkpoint_write(dir, &m->config, m->params_memory, 0, m->step);
}

// ----------------------------------------------------------------------------
// the model's forward, backward and update

// cos/sin of pos * inv_freq[i] for positions [0, len), in fp32 as HF computes them.
static void rope_table_ensure(Qwen2 *m, size_t len) {
    if (len <= m->rope_len) return;
    size_t half = m->config.head_dim / 2, cap = len > 2 * m->rope_len ? len : 2 * m->rope_len;
    m->rope_cos = (float *)reallocCheck(m->rope_cos, cap * half * sizeof(float));
    m->rope_sin = (float *)reallocCheck(m->rope_sin, cap * half * sizeof(float));
    for (size_t i = 0; i < half; i++) {
        float inv_freq = 1.0f / det_powf((float)m->config.rope_theta, (float)(2 * i) / (float)m->config.head_dim);
        for (size_t p = 0; p < cap; p++) {
            float angle = (float)p * inv_freq;
            m->rope_cos[p * half + i] = det_cosf(angle);
            m->rope_sin[p * half + i] = det_sinf(angle);
        }
    }
    m->rope_len = cap;
}

static void activations_ensure(Qwen2 *m, size_t N, size_t S) {
    Activations *a = &m->acts;
    if (S + 1 > a->seq_capacity) {
        a->seq_capacity = S + 1;
        a->seq_offsets = (size_t *)reallocCheck(a->seq_offsets, (S + 1) * sizeof(size_t));
    }
    if (N <= a->capacity) return;
    const Qwen2Config *c = &m->config;
    size_t L = c->num_layers, H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    size_t QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim, NQ = c->num_heads;
    float **ptrs[] = {&a->res, &a->resmid, &a->ln1, &a->rstd1, &a->q, &a->k, &a->v, &a->att, &a->attlse, &a->ln2,
                      &a->rstd2, &a->gate, &a->up, &a->mlp, &a->lnf, &a->rstdf, &a->logits, &a->celse,
                      &a->dres, &a->dln, &a->dq, &a->datt, &a->dk, &a->dv, &a->dsum, &a->dgate, &a->dup, &a->dmlp, &a->weights};
    size_t sizes[] = {(L + 1) * H, L * H, L * H, L, L * QD, L * KD, L * KD, L * QD, L * NQ, L * H,
                      L, L * I, L * I, L * I, H, 1, V, 1,
                      H, H, QD, QD, KD, KD, NQ, I, I, I, 1};  // floats per token
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        free(*ptrs[i]);
        size_t bytes;   // a batch of N tokens times a vocabulary must neither wrap nor die without a word
        if (__builtin_mul_overflow(N, sizes[i] * sizeof(float), &bytes) || (*ptrs[i] = (float *)malloc(bytes)) == NULL)
            die("the activations of %zu tokens (%zu floats per token for one of them) do not fit in memory; "
                "use a smaller --batch, --micro-batch or --max-seq-len", N, sizes[i]);
    }
    free(a->ids); free(a->targets); free(a->pos);
    a->ids = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    a->targets = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    a->pos = (size_t *)mallocCheck(N * sizeof(size_t));
    a->capacity = N;
}

// Forward pass over S sequences stored back to back: ids (N,), seq_offsets
// (S+1,) with seq_offsets[0] = 0. mask (N,) marks the loss targets with the
// shard convention (mask[t] = 1: token t is predicted from the tokens before
// it; a sequence's first token is never scored). Logits land in
// m->acts.logits (N, V). Returns s1's loss:
//
//     loss = (1/S) * sum_s (1/n_s) * sum_{t in targets of s} -log p(ids[t] | ids[<t])
//
// the mean over sequences of each sequence's token-mean (s1-spec.md 3.2). A
// sequence without targets contributes 0 but still counts in S, so every
// sequence of an optimizer step has the same weight. The GPU trainer must
// match this. mask == NULL computes the logits only and returns 0.
// seq_weights (S,), or NULL for 1/S each: the loss is then
// sum_s seq_weights[s] * (token mean of s) (train_loss_weights(), --loss-norm).
static float qwen2_forward_weighted(Qwen2 *m, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S,
                                    const double *seq_weights) {
    const Qwen2Config *c = &m->config;
    size_t N = seq_offsets[S], L = c->num_layers, H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    size_t NQ = c->num_heads, NKV = c->num_kv_heads, HD = c->head_dim, QD = NQ * HD, KD = NKV * HD;
    activations_ensure(m, N, S);
    Activations *a = &m->acts;
    a->num_tokens = N;
    a->num_seqs = S;
    memcpy(a->seq_offsets, seq_offsets, (S + 1) * sizeof(size_t));
    size_t max_len = 0;
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], n1 = seq_offsets[s + 1], targets = 0;
        if (n1 < n0) die("qwen2_forward: sequence offsets decrease at sequence %zu", s);
        max_len = n1 - n0 > max_len ? n1 - n0 : max_len;
        for (size_t n = n0 + 1; n < n1 && mask; n++) targets += mask[n] != 0;
        for (size_t n = n0; n < n1; n++) {
            if (ids[n] >= V) die("qwen2_forward: token id %u at position %zu is outside the %zu-row embedding", ids[n], n, V);
            a->ids[n] = ids[n];
            a->pos[n] = n - n0;
            int scored = mask != NULL && n + 1 < n1 && mask[n + 1];
            a->targets[n] = scored ? ids[n + 1] : 0;
            double w = seq_weights != NULL ? seq_weights[s] / (double)targets : 1.0 / ((double)S * (double)targets);
            a->weights[n] = scored ? (float)w : 0.0f;
        }
    }
    rope_table_ensure(m, max_len);
    const ParameterTensors *p = &m->params;
    embedding_forward(a->res, a->ids, p->embed, N, H);
    for (size_t l = 0; l < L; l++) {
        float *res = a->res + l * N * H, *resmid = a->resmid + l * N * H, *resout = a->res + (l + 1) * N * H;
        float *ln1 = a->ln1 + l * N * H, *rstd1 = a->rstd1 + l * N, *ln2 = a->ln2 + l * N * H, *rstd2 = a->rstd2 + l * N;
        float *q = a->q + l * N * QD, *k = a->k + l * N * KD, *v = a->v + l * N * KD;
        float *att = a->att + l * N * QD, *attlse = a->attlse + l * N * NQ;
        float *gate = a->gate + l * N * I, *up = a->up + l * N * I, *mlp = a->mlp + l * N * I;
        rmsnorm_forward(ln1, rstd1, res, p->ln1w + l * H, N, H, (float)c->rms_norm_eps);
        matmul_forward(q, ln1, p->qw + l * QD * H, p->qb + l * QD, N, H, QD);
        matmul_forward(k, ln1, p->kw + l * KD * H, p->kb + l * KD, N, H, KD);
        matmul_forward(v, ln1, p->vw + l * KD * H, p->vb + l * KD, N, H, KD);
        rope_forward(q, a->pos, m->rope_cos, m->rope_sin, N, NQ, HD);
        rope_forward(k, a->pos, m->rope_cos, m->rope_sin, N, NKV, HD);
        attention_forward(att, attlse, q, k, v, a->seq_offsets, S, NQ, NKV, HD);
        matmul_forward(resmid, att, p->ow + l * H * QD, NULL, N, QD, H);
        residual_forward(resmid, res, N * H);
        rmsnorm_forward(ln2, rstd2, resmid, p->ln2w + l * H, N, H, (float)c->rms_norm_eps);
        matmul_forward(gate, ln2, p->gatew + l * I * H, NULL, N, H, I);
        matmul_forward(up, ln2, p->upw + l * I * H, NULL, N, H, I);
        swiglu_forward(mlp, gate, up, N * I);
        matmul_forward(resout, mlp, p->downw + l * H * I, NULL, N, I, H);
        residual_forward(resout, resmid, N * H);
    }
    rmsnorm_forward(a->lnf, a->rstdf, a->res + L * N * H, p->normw, N, H, (float)c->rms_norm_eps);
    matmul_forward(a->logits, a->lnf, lm_head(p, c), NULL, N, H, V);
    m->backward_ready = mask != NULL;
    if (mask == NULL) return 0.0f;
    return crossentropy_forward(a->celse, a->logits, a->targets, a->weights, N, V);
}

static float qwen2_forward(Qwen2 *m, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S) {
    return qwen2_forward_weighted(m, ids, mask, seq_offsets, S, NULL);
}

static void qwen2_zero_grad(Qwen2 *m) {
    if (m->grads_memory != NULL) memset(m->grads_memory, 0, m->num_parameters * sizeof(float));
}

// Adds grad_scale * d(loss of the last qwen2_forward)/d(parameters) into
// m->grads. With micro-batches of S_i sequences out of a step's S, use
// grad_scale = S_i / S so the sum is the gradient of the step's s1 loss.
// Overwrites the logits with dlogits.
static void qwen2_backward(Qwen2 *m, float grad_scale) {
    if (!m->backward_ready) die("qwen2_backward: call qwen2_forward with a loss mask first");
    m->backward_ready = 0;
    if (m->grads_memory == NULL) {
        m->grads_memory = (float *)callocCheck(m->num_parameters, sizeof(float));
        carve_parameters(&m->grads, m->grads_memory, &m->config);
    }
    const Qwen2Config *c = &m->config;
    Activations *a = &m->acts;
    size_t N = a->num_tokens, S = a->num_seqs, L = c->num_layers, H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    size_t NQ = c->num_heads, NKV = c->num_kv_heads, HD = c->head_dim, QD = NQ * HD, KD = NKV * HD;
    const ParameterTensors *p = &m->params;
    ParameterTensors *g = &m->grads;
    crossentropy_backward(a->logits, a->logits, a->celse, a->targets, a->weights, grad_scale, N, V);
    memset(a->dres, 0, N * H * sizeof(float));
    memset(a->dln, 0, N * H * sizeof(float));
    matmul_backward(a->dln, lm_head(g, c), NULL, a->logits, a->lnf, lm_head(p, c), N, H, V);
    rmsnorm_backward(a->dres, g->normw, a->dln, a->res + L * N * H, p->normw, a->rstdf, N, H);
    for (size_t l = L; l-- > 0;) {  // a->dres holds dloss/d(output of layer l)
        float *res = a->res + l * N * H, *resmid = a->resmid + l * N * H;
        float *ln1 = a->ln1 + l * N * H, *rstd1 = a->rstd1 + l * N, *ln2 = a->ln2 + l * N * H, *rstd2 = a->rstd2 + l * N;
        float *q = a->q + l * N * QD, *k = a->k + l * N * KD, *v = a->v + l * N * KD;
        float *att = a->att + l * N * QD, *attlse = a->attlse + l * N * NQ;
        float *gate = a->gate + l * N * I, *up = a->up + l * N * I, *mlp = a->mlp + l * N * I;
        // MLP branch; its residual add passes dres through unchanged
        memset(a->dmlp, 0, N * I * sizeof(float));
        memset(a->dgate, 0, N * I * sizeof(float));
        memset(a->dup, 0, N * I * sizeof(float));
        memset(a->dln, 0, N * H * sizeof(float));
        matmul_backward(a->dmlp, g->downw + l * H * I, NULL, a->dres, mlp, p->downw + l * H * I, N, I, H);
        swiglu_backward(a->dgate, a->dup, a->dmlp, gate, up, N * I);
        matmul_backward(a->dln, g->gatew + l * I * H, NULL, a->dgate, ln2, p->gatew + l * I * H, N, H, I);
        matmul_backward(a->dln, g->upw + l * I * H, NULL, a->dup, ln2, p->upw + l * I * H, N, H, I);
        rmsnorm_backward(a->dres, g->ln2w + l * H, a->dln, resmid, p->ln2w + l * H, rstd2, N, H);
        // attention branch
        memset(a->datt, 0, N * QD * sizeof(float));
        memset(a->dq, 0, N * QD * sizeof(float));
        memset(a->dk, 0, N * KD * sizeof(float));
        memset(a->dv, 0, N * KD * sizeof(float));
        memset(a->dln, 0, N * H * sizeof(float));
        matmul_backward(a->datt, g->ow + l * H * QD, NULL, a->dres, att, p->ow + l * H * QD, N, QD, H);
        attention_backward(a->dq, a->dk, a->dv, a->dsum, a->datt, att, attlse, q, k, v, a->seq_offsets, S, NQ, NKV, HD);
        rope_backward(a->dq, a->pos, m->rope_cos, m->rope_sin, N, NQ, HD);
        rope_backward(a->dk, a->pos, m->rope_cos, m->rope_sin, N, NKV, HD);
        matmul_backward(a->dln, g->qw + l * QD * H, g->qb + l * QD, a->dq, ln1, p->qw + l * QD * H, N, H, QD);
        matmul_backward(a->dln, g->kw + l * KD * H, g->kb + l * KD, a->dk, ln1, p->kw + l * KD * H, N, H, KD);
        matmul_backward(a->dln, g->vw + l * KD * H, g->vb + l * KD, a->dv, ln1, p->vw + l * KD * H, N, H, KD);
        rmsnorm_backward(a->dres, g->ln1w + l * H, a->dln, res, p->ln1w + l * H, rstd1, N, H);
    }
    embedding_backward(g->embed, a->dres, a->ids, N, H);
}

typedef struct {
    float beta1, beta2, eps;
    float weight_decay;
    float max_grad_norm;        // <= 0: no clipping
    // 1: RMSNorm weights decay too, as in s1's run. transformers 4.46.1 exempted only biases and
    // what sits in an nn.LayerNorm: get_decay_parameter_names (trainer.py:1131-1140) filters
    // get_parameter_names(model, ALL_LAYERNORM_LAYERS) (trainer_pt_utils.py:1128-1141), with
    // ALL_LAYERNORM_LAYERS = [nn.LayerNorm] (pytorch_utils.py:27), and Qwen2RMSNorm is a plain
    // nn.Module (models/qwen2/modeling_qwen2.py:67). 0: --exempt-norms, newer transformers' rule.
    int decay_norm_weights;
} AdamWConfig;

// Global L2 norm of all gradients: in double, on one thread, with LANES
// partial sums in a fixed order, so it never depends on the thread count.
static float qwen2_grad_norm(const Qwen2 *m) {
    double acc[LANES] = {0};
    const float *g = m->grads_memory;
    size_t i = 0, n = m->num_parameters;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    double sumsq = 0.0;
    for (int j = 0; j < LANES; j++) sumsq += acc[j];
    for (; i < n; i++) sumsq += (double)g[i] * (double)g[i];
    return (float)sqrt(sumsq);
}

// Clips the gradients to a global norm (torch clip_grad_norm_) and takes one
// torch.optim.AdamW step with learning rate lr. Returns the norm before clipping.
static float qwen2_update(Qwen2 *m, double lr, const AdamWConfig *cfg) {
    if (m->grads_memory == NULL) die("qwen2_update: no gradients (call qwen2_backward first)");
    if (m->adam_m == NULL) {
        m->adam_m = (float *)callocCheck(m->num_parameters, sizeof(float));
        m->adam_v = (float *)callocCheck(m->num_parameters, sizeof(float));
    }
    float norm = qwen2_grad_norm(m);
    float clip = 1.0f;
    if (cfg->max_grad_norm > 0) {
        clip = cfg->max_grad_norm / (norm + 1e-6f);
        if (clip > 1.0f) clip = 1.0f;
    }
    m->step++;
    // the scalars as torch computes them: in double, used as float
    double bias_correction1 = 1.0 - det_pow(cfg->beta1, (double)m->step);
    double bias_correction2 = 1.0 - det_pow(cfg->beta2, (double)m->step);
    float step_size = (float)(lr / bias_correction1), bc2_sqrt = (float)sqrt(bias_correction2);
    float w1 = (float)(1.0 - (double)cfg->beta1), w2 = (float)(1.0 - (double)cfg->beta2);
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = parameter_numel(&m->config, i);
        int kind = parameter_info[i].kind;
        int decays = kind == KIND_WEIGHT || (kind == KIND_NORM && cfg->decay_norm_weights);
        float shrink = (float)(1.0 - lr * (decays ? (double)cfg->weight_decay : 0.0));
        float *p = m->params_memory + offset, *g = m->grads_memory + offset, *mm = m->adam_m + offset, *vv = m->adam_v + offset;
        #pragma omp parallel for schedule(static) if(n >= MIN_PARALLEL_WORK)
        for (size_t j = 0; j < n; j++) {
            float grad = g[j] * clip;
            p[j] = p[j] * shrink;
            mm[j] = mm[j] + w1 * (grad - mm[j]);              // exp_avg.lerp_(grad, 1 - beta1)
            vv[j] = vv[j] * cfg->beta2 + w2 * grad * grad;     // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            float denom = sqrtf(vv[j]) / bc2_sqrt + cfg->eps;
            p[j] = p[j] + (-step_size) * (mm[j] / denom);
        }
        offset += n;
    }
    return norm;
}

static void qwen2_free(Qwen2 *m) {
    Activations *a = &m->acts;
    float *bufs[] = {a->res, a->resmid, a->ln1, a->rstd1, a->q, a->k, a->v, a->att, a->attlse, a->ln2, a->rstd2,
                     a->gate, a->up, a->mlp, a->lnf, a->rstdf, a->logits, a->celse, a->dres, a->dln, a->dq, a->datt,
                     a->dk, a->dv, a->dsum, a->dgate, a->dup, a->dmlp, a->weights};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(a->ids); free(a->targets); free(a->pos); free(a->seq_offsets);
    free(m->params_memory); free(m->tensors); free(m->grads_memory); free(m->adam_m); free(m->adam_v);
    free(m->rope_cos); free(m->rope_sin);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// KV-cache decoding: one token at a time, for sampling

typedef struct {
    size_t max_len, len;   // capacity and tokens cached (the next token's position)
    float *kt, *vt;        // (L, NKV, HD, max_len) keys after RoPE, values: transposed, as attention_row() reads them
    float *x, *xn, *tmp;   // (H,) residual stream, normed, branch output
    float *q, *att;        // (QD,)
    float *k, *v;          // (KD,) the new token's key and value
    float *gate, *up;      // (I,)
    float *logits;         // (V,)
    float *scores;         // (NQ, max_len) attention scratch, one row per head
    float rstd;
} KVCache;

__attribute__((unused)) static KVCache *kvcache_create(const Qwen2Config *c, size_t max_len) {
    KVCache *kv = (KVCache *)callocCheck(1, sizeof(KVCache));
    size_t KD = c->num_kv_heads * c->head_dim, QD = c->num_heads * c->head_dim;
    kv->max_len = max_len;
    kv->kt = (float *)mallocCheck(c->num_layers * max_len * KD * sizeof(float));
    kv->vt = (float *)mallocCheck(c->num_layers * max_len * KD * sizeof(float));
    kv->k = (float *)mallocCheck(KD * sizeof(float));
    kv->v = (float *)mallocCheck(KD * sizeof(float));
    kv->x = (float *)mallocCheck(c->hidden_size * sizeof(float));
    kv->xn = (float *)mallocCheck(c->hidden_size * sizeof(float));
    kv->tmp = (float *)mallocCheck(c->hidden_size * sizeof(float));
    kv->q = (float *)mallocCheck(QD * sizeof(float));
    kv->att = (float *)mallocCheck(QD * sizeof(float));
    kv->gate = (float *)mallocCheck(c->intermediate_size * sizeof(float));
    kv->up = (float *)mallocCheck(c->intermediate_size * sizeof(float));
    kv->logits = (float *)mallocCheck(c->vocab_size * sizeof(float));
    kv->scores = (float *)mallocCheck(c->num_heads * max_len * sizeof(float));
    return kv;
}

// Forgets every token from position len on (e.g. to rewind a budget-forced continuation).
__attribute__((unused)) static void kvcache_truncate(KVCache *kv, size_t len) {
    if (len < kv->len) kv->len = len;
}

__attribute__((unused)) static void kvcache_free(KVCache *kv) {
    if (kv == NULL) return;
    free(kv->kt); free(kv->vt); free(kv->k); free(kv->v); free(kv->x); free(kv->xn); free(kv->tmp);
    free(kv->q); free(kv->att); free(kv->gate); free(kv->up); free(kv->logits); free(kv->scores);
    free(kv);
}

// Appends token at position kv->len and returns the logits (V,) for the next
// token, valid until the next call. The same layer functions as qwen2_forward
// with N = 1, so the result matches the batched forward pass.
__attribute__((unused)) static const float *qwen2_decode_step(Qwen2 *m, KVCache *kv, uint32_t token) {
    const Qwen2Config *c = &m->config;
    size_t L = c->num_layers, H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    size_t NQ = c->num_heads, NKV = c->num_kv_heads, HD = c->head_dim, QD = NQ * HD, KD = NKV * HD, G = NQ / NKV;
    if (kv->len >= kv->max_len) die("qwen2_decode_step: KV cache is full (%zu tokens)", kv->max_len);
    if (token >= V) die("qwen2_decode_step: token id %u is outside the %zu-row embedding", token, V);
    size_t pos = kv->len;
    rope_table_ensure(m, pos + 1);
    const ParameterTensors *p = &m->params;
    float scale = 1.0f / sqrtf((float)HD);
    embedding_forward(kv->x, &token, p->embed, 1, H);
    for (size_t l = 0; l < L; l++) {
        float *kt = kv->kt + l * KD * kv->max_len, *vt = kv->vt + l * KD * kv->max_len;  // (NKV, HD, max_len)
        rmsnorm_forward(kv->xn, &kv->rstd, kv->x, p->ln1w + l * H, 1, H, (float)c->rms_norm_eps);
        matmul_forward(kv->q, kv->xn, p->qw + l * QD * H, p->qb + l * QD, 1, H, QD);
        matmul_forward(kv->k, kv->xn, p->kw + l * KD * H, p->kb + l * KD, 1, H, KD);
        matmul_forward(kv->v, kv->xn, p->vw + l * KD * H, p->vb + l * KD, 1, H, KD);
        rope_forward(kv->q, &pos, m->rope_cos, m->rope_sin, 1, NQ, HD);
        rope_forward(kv->k, &pos, m->rope_cos, m->rope_sin, 1, NKV, HD);
        for (size_t j = 0; j < KD; j++) {  // append as column pos of the transposed cache
            kt[j * kv->max_len + pos] = kv->k[j];
            vt[j * kv->max_len + pos] = kv->v[j];
        }
        #pragma omp parallel for schedule(static) if((pos + 1) * QD >= MIN_PARALLEL_WORK)
        for (size_t h = 0; h < NQ; h++) {
            float lse;
            attention_row(kv->att + h * HD, &lse, kv->q + h * HD, kt + (h / G) * HD * kv->max_len, vt + (h / G) * HD * kv->max_len,
                          pos + 1, kv->max_len, HD, scale, kv->scores + h * kv->max_len);
        }
        matmul_forward(kv->tmp, kv->att, p->ow + l * H * QD, NULL, 1, QD, H);
        residual_forward(kv->x, kv->tmp, H);
        rmsnorm_forward(kv->xn, &kv->rstd, kv->x, p->ln2w + l * H, 1, H, (float)c->rms_norm_eps);
        matmul_forward(kv->gate, kv->xn, p->gatew + l * I * H, NULL, 1, H, I);
        matmul_forward(kv->up, kv->xn, p->upw + l * I * H, NULL, 1, H, I);
        swiglu_forward(kv->gate, kv->gate, kv->up, I);
        matmul_forward(kv->tmp, kv->gate, p->downw + l * H * I, NULL, 1, I, H);
        residual_forward(kv->x, kv->tmp, H);
    }
    rmsnorm_forward(kv->xn, &kv->rstd, kv->x, p->normw, 1, H, (float)c->rms_norm_eps);
    matmul_forward(kv->logits, kv->xn, lm_head(p, c), NULL, 1, H, V);
    kv->len++;
    return kv->logits;
}

// ----------------------------------------------------------------------------
// training: the loop (its schedule, data order and settings: common/train.h)

// The model (F32, its own master copy) and optimizer.bin, as one unit (common/train.h).
static void save_checkpoint(const Qwen2 *m, const TrainSettings *s, const char *dir) {
    train_checkpoint_write(dir, &m->config, m->params_memory, 0, m->step, s, m->adam_m, m->adam_v, NULL);
}

// Runs (or resumes) a training run. Returns the loss of the last step.
static float train_run(TrainOptions *o) {
    Qwen2 model;
    TrainSettings *s = &o->settings;
    const char *source = o->resume_dir ? o->resume_dir : o->model_dir ? o->model_dir : o->init_config;
    if (o->resume_dir != NULL) {
        checkpoint_recover(o->resume_dir);   // a kill between the two renames of a fallback swap
        qwen2_load(&model, o->resume_dir);
    } else if (o->model_dir != NULL) {
        qwen2_load(&model, o->model_dir);
        model.step = 0;
    } else {
        Qwen2Config c;
        config_read(&c, o->init_config);
        qwen2_build_named(&model, &c, o->init_config);
        qwen2_init_parameters(model.params_memory, &c, o->init_seed);
    }
    // gradients and AdamW moments up front: a model too large to train fails here, by name
    size_t P = model.num_parameters;
    model.grads_memory = (float *)calloc(P, sizeof(float));
    model.adam_m = (float *)calloc(P, sizeof(float));
    model.adam_v = (float *)calloc(P, sizeof(float));
    if (model.grads_memory == NULL || model.adam_m == NULL || model.adam_v == NULL)
        die("%s: training %zu parameters needs %.1f GB (weights, gradients, two AdamW moments), more than this machine can allocate",
            source, P, 16e-9 * (double)P);
    carve_parameters(&model.grads, model.grads_memory, &model.config);
    if (o->resume_dir != NULL)
        optstate_read(o->resume_dir, model.step, model.num_parameters, s, model.adam_m, model.adam_v, model.params_memory);
    DataLoader loader;
    size_t total, warmup, end;
    train_data_open(o, &loader, model.config.vocab_size, &total, &warmup, &end);
    AdamWConfig adamw = {(float)s->beta1, (float)s->beta2, (float)s->eps, (float)s->weight_decay, (float)s->max_grad_norm, (int)s->decay_norm_weights};
    if (!o->quiet) {
        printf("model: %zu parameters, %zu layers | data: %llu sequences (longest %zu tokens), %zu steps/epoch | %zu steps, %zu warmup | threads %d\n",
               model.num_parameters, model.config.num_layers, (unsigned long long)s->num_sequences, dataloader_longest(&loader),
               dataloader_steps_per_epoch(&loader), total, warmup, omp_get_max_threads());
        printf("memory: weights, gradients and AdamW moments %.1f MB (16 bytes per parameter), plus activations\n",
               16.0 * (double)model.num_parameters / 1e6);
    }
    float loss = 0.0f;
    double t_start = now_seconds();
    double *seq_weights = (double *)mallocCheck((size_t)s->batch_size * sizeof(double));
    size_t tokens_done = 0, first_step = model.step, last_saved = SIZE_MAX;
    for (size_t step = model.step; step < end; step++) {
        double t0 = now_seconds();
        double lr = schedule_lr(step, total, warmup, s->lr);
        dataloader_batch(&loader, step);
        train_loss_weights(&loader, s, seq_weights);   // each sequence's share of the step's loss (--loss-norm)
        qwen2_zero_grad(&model);
        loss = 0.0f;
        for (size_t i = 0; i < loader.num_seqs; i += o->micro_batch) {  // gradient accumulation over micro-batches
            size_t k = i + o->micro_batch < loader.num_seqs ? o->micro_batch : loader.num_seqs - i;
            size_t offs[k + 1], n0 = dataloader_micro_batch(&loader, i, k, offs);
            loss += qwen2_forward_weighted(&model, loader.ids + n0, loader.mask + n0, offs, k, seq_weights + i);
            qwen2_backward(&model, 1.0f);   // the weights are the step's: the micro-batches' gradients add up to its
        }
        float norm = qwen2_update(&model, lr, &adamw);
        train_check_step("train", step + 1, loss, norm, o->out_dir, last_saved);   // diverged: stop, save nothing
        size_t ntok = loader.seq_offsets[loader.num_seqs];
        tokens_done += ntok;
        double t1 = now_seconds();
        if (!o->quiet) {
            char eta[32];
            double per_step = (t1 - t_start) / (double)(step + 1 - first_step);
            printf("step %zu/%zu | loss %.6f | grad norm %.4f | lr %.3e | %.0f tokens/s | ETA %s\n", step + 1, total, loss,
                   norm, lr, (double)ntok / (t1 - t0), format_duration(per_step * (double)(end - step - 1), eta, sizeof eta));
            fflush(stdout);
        }
        if ((o->save_every > 0 && (step + 1) % o->save_every == 0) || step + 1 == end) {
            save_checkpoint(&model, s, o->out_dir);
            last_saved = step + 1;
        }
    }
    if (!o->quiet) printf("done: %zu steps, %zu tokens in %.1fs; checkpoint in %s\n", end - first_step, tokens_done, now_seconds() - t_start, o->out_dir);
    free(seq_weights);
    dataloader_free(&loader);
    qwen2_free(&model);
    return loss;
}

// ----------------------------------------------------------------------------
// command line

#ifndef S1_NO_MAIN

static void usage_train(void) {
    printf("usage: ./s1 train --data SHARD --out DIR (--model DIR | --init-config CONFIG.json | --resume DIR) [options]\n"
           "\n"
           "Fine-tunes Qwen2.5 on a token shard (from ./data) with s1's recipe: AdamW, cosine schedule with\n"
           "linear warmup, global grad-norm clipping, loss = mean over sequences of each sequence's token mean.\n"
           "Everything is fp32 here (s1's run: fp32 weights and AdamW, bf16 forward, backward and gradient\n"
           "reduce-scatter under FSDP; tutorial/optimizer.md). Writes DIR/model.safetensors + config.json\n"
           "(loadable by HF transformers) and DIR/optimizer.bin.\n"
           "\n");
    train_flags_help();
}

static int main_train(int argc, char **argv) {
    TrainOptions o;
    train_options_defaults(&o);
    const char *settings_flag = NULL;
    for (int i = 0; i < argc; i++) {
        if (flag_is(argv[i], "--help") || flag_is(argv[i], "-h")) { usage_train(); return 0; }
        if (!train_flag(argc, argv, &i, &o, &settings_flag)) die("train: unknown argument '%s' (see ./s1 train --help)", argv[i]);
    }
    train_options_check(&o, settings_flag, "train");
    if (o.threads > 0) omp_set_num_threads(o.threads);
    train_run(&o);
    return 0;
}

static void usage_loss(void) {
    printf("usage: ./s1 loss --model DIR --data SHARD [--max-seq-len N] [--threads N]\n"
           "\n"
           "Prints the masked loss of a checkpoint on a shard, normalised as in training: the mean over\n"
           "sequences of each sequence's mean target-token cross-entropy. The last line is \"loss: <float>\".\n");
}

static int main_loss(int argc, char **argv) {
    const char *model_dir = NULL, *data_path = NULL;
    size_t max_seq_len = 32768;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_loss(); return 0; }
        else if (flag_is(a, "--model")) model_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--data")) data_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--max-seq-len")) max_seq_len = flag_count_max(argc, argv, &i, 0, TRAIN_MAX_SEQ_LEN);
        else if (flag_is(a, "--threads")) omp_set_num_threads(flag_threads(argc, argv, &i));
        else die("loss: unknown argument '%s' (see ./s1 loss --help)", a);
    }
    if (model_dir == NULL || data_path == NULL) die("loss: --model and --data are required (see ./s1 loss --help)");
    Qwen2 model;
    qwen2_load(&model, model_dir);
    DataLoader loader;
    dataloader_init(&loader, data_path, 1, max_seq_len, 0);
    if (loader.shard.header.vocab_size > model.config.vocab_size)
        die("%s: shard vocab_size %u exceeds the model's %zu embedding rows", data_path, loader.shard.header.vocab_size, model.config.vocab_size);
    size_t S = (size_t)loader.shard.header.num_sequences, targets = 0;
    double sum = 0.0, t0 = now_seconds();
    for (size_t i = 0; i < S; i++) {
        size_t start = (size_t)loader.shard.offsets[i], len = shard_seq_len(&loader.shard, i);
        if (len > max_seq_len) len = max_seq_len;
        size_t offs[2] = {0, len};
        sum += qwen2_forward(&model, loader.shard.ids + start, loader.shard.mask + start, offs, 1);
        for (size_t t = 1; t < len; t++) targets += loader.shard.mask[start + t];
        print_progress("sequences", i + 1, S, t0);
    }
    printf("sequences: %zu, target tokens: %zu\n", S, targets);
    printf("loss: %.6f\n", sum / (double)S);
    dataloader_free(&loader);
    qwen2_free(&model);
    return 0;
}

static void usage_bench(void) {
    printf("usage: ./s1 bench [--hidden N] [--layers N] [--heads N] [--kv-heads N] [--intermediate N]\n"
           "                  [--vocab N] [--tied] [--seq-len N] [--steps N] [--threads N]\n"
           "\n"
           "Times full training steps (forward, backward, clipping, AdamW) of a random model on one random\n"
           "sequence per step, after one warm-up step. Prints \"s1 tokens/s: <float>\". Defaults: the CPU\n"
           "demo's model (hidden 64, 2 layers, 4/2 heads, intermediate 192, vocab 416, untied), 128 tokens,\n"
           "20 steps. bench/train_cpu runs it beside PyTorch.\n");
}

static int main_bench(int argc, char **argv) {
    Qwen2Config c = {.vocab_size = 416, .hidden_size = 64, .intermediate_size = 192, .num_layers = 2, .num_heads = 4,
                     .num_kv_heads = 2, .max_position_embeddings = 32768, .rope_theta = 1e6, .rms_norm_eps = 1e-6,
                     .tie_word_embeddings = 0, .bos_token_id = -1, .eos_token_id = -1};
    size_t T = 128, steps = 20;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_bench(); return 0; }
        else if (flag_is(a, "--hidden")) c.hidden_size = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--layers")) c.num_layers = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--heads")) c.num_heads = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--kv-heads")) c.num_kv_heads = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--intermediate")) c.intermediate_size = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--vocab")) c.vocab_size = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--tied")) c.tie_word_embeddings = 1;
        else if (flag_is(a, "--seq-len")) T = flag_count_max(argc, argv, &i, 0, TRAIN_MAX_SEQ_LEN);
        else if (flag_is(a, "--steps")) steps = flag_count_max(argc, argv, &i, 0, 1u << 30);
        else if (flag_is(a, "--threads")) omp_set_num_threads(flag_threads(argc, argv, &i));
        else die("bench: unknown argument '%s' (see ./s1 bench --help)", a);
    }
    if (c.num_heads == 0 || c.hidden_size % c.num_heads != 0) die("bench: --hidden must be a multiple of --heads");
    c.head_dim = c.hidden_size / c.num_heads;
    Qwen2 model;
    qwen2_build_named(&model, &c, "bench");
    qwen2_init_parameters(model.params_memory, &c, 1234);
    uint32_t *ids = (uint32_t *)mallocCheck(T * sizeof(uint32_t));
    uint8_t *mask = (uint8_t *)mallocCheck(T);
    uint64_t state = 42;
    for (size_t t = 0; t < T; t++) { ids[t] = (uint32_t)(rng_next(&state) % c.vocab_size); mask[t] = t > 0; }
    size_t offs[2] = {0, T};
    AdamWConfig adamw = {0.9f, 0.95f, 1e-8f, 1e-4f, 1.0f, 0};
    double t0 = 0.0;
    for (size_t step = 0; step <= steps; step++) {
        if (step == 1) t0 = now_seconds();  // step 0 warms up (allocations, page faults)
        qwen2_zero_grad(&model);
        qwen2_forward(&model, ids, mask, offs, 1);
        qwen2_backward(&model, 1.0f);
        qwen2_update(&model, 1e-5, &adamw);
    }
    double elapsed = now_seconds() - t0;
    printf("config: hidden %zu, layers %zu, heads %zu/%zu, intermediate %zu, vocab %zu%s, seq-len %zu, threads %d, %zu steps\n",
           c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.intermediate_size, c.vocab_size,
           c.tie_word_embeddings ? " (tied)" : "", T, omp_get_max_threads(), steps);
    printf("s1 tokens/s: %.1f\n", (double)(steps * T) / elapsed);
    free(ids);
    free(mask);
    qwen2_free(&model);
    return 0;
}

// ----------------------------------------------------------------------------
// sampling with budget forcing, evaluation, and the demo
//
//   ./s1 sample --model DIR --tokenizer DIR --prompts FILE.jsonl [--max-thinking B|auto] [--wait N]
//   ./s1 eval   --model DIR --tokenizer DIR --problems FILE.jsonl --budgets 32,64,auto --waits 0,1,2
//   ./s1 demo   [--out DIR]        the whole miniature s1 run on a laptop
//
// The control logic of budget forcing lives in common/budget.h, and what the
// samplers do around it (flags, prompts, delimiters, one generation, the JSONL
// line) in common/generate.h, both shared with sample.cu; here they drive the
// CPU KV-cache decoder through the Decoder interface. The delimiter and stop ids
// always come from the tokenizer (the demo's small trained tokenizer numbers its
// added tokens differently from Qwen2.5). Scoring (common/score.h) needs no LLM judge.

#define TOKENIZER_NO_MAIN
#include "tokenizer.c"
#include "common/sampler.h"
#include "common/budget.h"
#include "common/generate.h"
#include "common/score.h"
#include "common/svg.h"

// The CPU decoder behind the Decoder interface. It keeps the context's ids so
// that a rewind can recompute the logits after the new last id.
typedef struct {
    Qwen2 *model;
    KVCache *kv;
    Sampler *sampler;
    IdList ids;            // the context, as fed
    const float *logits;   // (V,) after the last fed id
} CpuDecoder;

static void cpu_decoder_feed(void *ctx, const uint32_t *ids, size_t n) {
    CpuDecoder *d = (CpuDecoder *)ctx;
    for (size_t i = 0; i < n; i++) {
        idlist_push(&d->ids, ids[i]);
        d->logits = qwen2_decode_step(d->model, d->kv, ids[i]);
    }
}

static uint32_t cpu_decoder_next(void *ctx, const uint32_t *banned, size_t n_banned) {
    CpuDecoder *d = (CpuDecoder *)ctx;
    if (d->logits == NULL) die("decoder: next() before any id was fed");
    return sampler_sample(d->sampler, d->logits, d->model->config.vocab_size, banned, n_banned);
}

static size_t cpu_decoder_length(void *ctx) { return ((CpuDecoder *)ctx)->ids.len; }

static void cpu_decoder_rewind(void *ctx, size_t len) {
    CpuDecoder *d = (CpuDecoder *)ctx;
    if (len == 0 || len > d->ids.len) die("decoder: cannot rewind %zu ids to %zu", d->ids.len, len);
    // drop one more id and feed it again: its logits are the ones next() needs
    uint32_t last = d->ids.data[len - 1];
    kvcache_truncate(d->kv, len - 1);
    d->ids.len = len - 1;
    cpu_decoder_feed(d, &last, 1);
}

// A model and tokenizer ready to generate.
typedef struct {
    Qwen2 model;
    Tokenizer *tok;
    Delimiters delim;
} Generator;

static void generator_init(Generator *g, const char *model_dir, const char *tok_dir, const char *ignore_str) {
    memset(g, 0, sizeof *g);
    qwen2_load(&g->model, model_dir);
    g->tok = tokenizer_load(tok_dir);
    check_tokenizer_fits(g->tok, tok_dir, g->model.config.vocab_size, model_dir);
    delimiters_init(&g->delim, g->tok, tok_dir, ignore_str);
}

static void generator_free(Generator *g) {
    delimiters_free(&g->delim);
    tokenizer_free(g->tok);
    qwen2_free(&g->model);
}

// One generation from an encoded prompt (ending in "<|im_start|>think") into
// a caller-owned KV cache. Reads g only, so threads with their own caches and
// samplers can run it side by side.
static void generate(const Generator *g, KVCache *kv, const SampleSettings *s, long budget, Sampler *sampler,
                     const IdList *prompt, Generation *out) {
    kvcache_truncate(kv, 0);
    CpuDecoder cd = {(Qwen2 *)&g->model, kv, sampler, {NULL, 0, 0}, NULL};
    Decoder dec = {&cd, cpu_decoder_feed, cpu_decoder_next, cpu_decoder_length, cpu_decoder_rewind};
    generation_run(&dec, g->tok, &g->delim, s, budget, kv->max_len, prompt, out);
    idlist_free(&cd.ids);
}

// mkdir -p: every missing folder on the path
static void make_dirs(const char *path) {
    char *p = strdup(path);
    for (char *q = p + 1; *q; q++)
        if (*q == '/') { *q = '\0'; make_dir(p); *q = '/'; }
    make_dir(p);
    free(p);
}

// Generates jobs [start, end) into gens[0 .. end-start), in parallel: job j is
// sample j % k of problem j / k (k samples per problem, for maj@k and cov@k), and
// draws from seed + j, so with k = 1 problem i draws from seed + i, and the results
// are the same for any thread count. Progress goes to stderr when total > 0.
static void generate_batch(Generator *g, const SampleSettings *s, long budget, size_t context, const ProblemSet *ps, size_t k,
                           size_t start, size_t end, Generation *gens, size_t *done, size_t total, double t0) {
    rope_table_ensure(&g->model, context);   // grown here, read-only inside the threads
    #pragma omp parallel
    {
        KVCache *kv = kvcache_create(&g->model.config, context);
        #pragma omp for schedule(dynamic, 1)
        for (size_t i = start; i < end; i++) {
            Sampler sampler;
            sampler_init(&sampler, tokenizer_size(g->tok), s->temperature, s->topp, s->seed + i);
            generate(g, kv, s, budget, &sampler, &ps->items[i / k].prompt, &gens[i - start]);
            sampler_free(&sampler);
            if (total) {
                #pragma omp critical
                print_progress("generate", ++*done, total, t0);
            }
        }
        kvcache_free(kv);
    }
}

// ----------------------------------------------------------------------------
// shared flags of sample and eval

// 1 if argv[*i] is a sampling flag of common/generate.h or --threads (consumed), else 0
static int parse_cpu_sample_flag(int argc, char **argv, int *i, SampleSettings *s) {
    if (flag_is(argv[*i], "--threads")) { omp_set_num_threads(flag_threads(argc, argv, i)); return 1; }
    return parse_sample_flag(argc, argv, i, s);
}

#define THREADS_FLAG_HELP "  --threads N          OpenMP threads (default: all cores)\n"

// ----------------------------------------------------------------------------
// ./s1 sample

static void usage_sample(void) {
    printf("usage: ./s1 sample --model DIR --tokenizer DIR --prompts FILE.jsonl [--out FILE.jsonl] [options]\n"
           "\n"
           SAMPLE_ABOUT_HELP
           "\n"
           SAMPLE_BUDGET_FLAGS_HELP
           SAMPLE_FLAGS_HELP
           THREADS_FLAG_HELP);
}

static int main_sample(int argc, char **argv) {
    const char *model_dir = NULL, *tok_dir = NULL, *prompts_path = NULL, *out_path = NULL;
    SampleSettings s;
    sample_settings_default(&s);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_sample(); return 0; }
        else if (flag_is(a, "--model")) model_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--tokenizer")) tok_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--prompts")) prompts_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--out")) out_path = flag_value(argc, argv, &i);
        else if (!parse_budget_flag(argc, argv, &i, &s) && !parse_cpu_sample_flag(argc, argv, &i, &s))
            die("sample: unknown argument '%s' (see ./s1 sample --help)", a);
    }
    if (!model_dir || !tok_dir || !prompts_path) die("sample: --model, --tokenizer and --prompts are required (see ./s1 sample --help)");
    ProblemSet ps;
    problems_read(&ps, prompts_path, 0);
    Generator g;
    generator_init(&g, model_dir, tok_dir, s.ignore_str);
    size_t longest = problems_encode_control(&ps, g.tok, &s.control, s.max_thinking);
    long budget = resolve_budget(&g.delim, s.max_thinking, s.max_gen_toks, longest);
    AtomicFile af;
    FILE *fp = stdout;
    if (out_path) { af = atomic_open(out_path); fp = af.fp; }
    // a chunk at a time, so that the output streams in order
    const size_t chunk = 4 * (size_t)omp_get_max_threads();
    Generation *gens = (Generation *)callocCheck(chunk, sizeof(Generation));
    size_t context = sample_context(&s, g.model.config.max_position_embeddings, longest), done = 0;
    double t0 = now_seconds();
    for (size_t start = 0; start < ps.n; start += chunk) {
        size_t end = start + chunk < ps.n ? start + chunk : ps.n;
        generate_batch(&g, &s, budget, context, &ps, 1, start, end, gens, &done, out_path ? ps.n : 0, t0);
        for (size_t i = start; i < end; i++) {
            write_generation(fp, i, &gens[i - start]);
            generation_free(&gens[i - start]);
        }
        fflush(fp);
    }
    free(gens);
    if (out_path) atomic_commit(&af);
    generator_free(&g);
    problems_free(&ps);
    return 0;
}

// ----------------------------------------------------------------------------
// ./s1 eval: the test-time scaling table
//
// A setting is one method (budget forcing, or rejection sampling), one control
// prompt, one Wait count and one budget; a curve is every budget of one method,
// control and Wait count. Every setting runs over every problem of every
// --problems file (s1's tasks) k times (--samples).

typedef struct {
    int rejection;            // 0 = budget forcing, 1 = rejection sampling
    ControlPrompt control;
    long budget;              // as given; -1 = auto
    long resolved;            // the budget used
    int waits;
    size_t correct, n, defaulted;   // pass@1: the first sample of each problem
    size_t *set_correct, *set_n;    // the same per --problems file
    double thinking_tokens;   // mean of s1's statistic (compute_sample_stats.py), the first samples
    double thinking_ids;      // mean of ours: the ids the answer phase saw
    size_t max_thinking_seen; // s1's statistic, for the Control metric
    long a_max;               // the Control metric's upper bound: the instructed tokens (token:N), else B
    double waits_mean, forced_exits, tries_mean;
    size_t capped;            // rejection sampling: problems where no try fitted
    size_t maj[16], cov[16];  // maj@2^(i+1), cov@2^(i+1) over the problems
} SettingResult;

// A comma-separated list of integers in [lo, hi] (and "auto" -> -1 with
// allow_auto). Every item must be there: "8,,16", a leading or a trailing
// comma is an error, as is a value that overflows.
static size_t parse_list(const char *v, const char *flag, long *out, size_t max, int allow_auto, long lo, long hi) {
    size_t n = 0;
    for (const char *t = v;; t++) {
        const char *comma = strchr(t, ',');
        size_t len = comma ? (size_t)(comma - t) : strlen(t);
        char item[32];
        if (len == 0) die("%s: empty item in '%s'", flag, v);
        if (n == max) die("%s: at most %zu values", flag, max);
        if (len >= sizeof item) die("%s: '%.*s' is not a valid value", flag, (int)len, t);
        memcpy(item, t, len);
        item[len] = '\0';
        if (allow_auto && strcmp(item, "auto") == 0) out[n++] = -1;
        else {
            char *end;
            errno = 0;
            long x = strtol(item, &end, 10);
            if (errno != 0 || *end != '\0' || item[0] < '0' || item[0] > '9' || x < lo || x > hi)
                die("%s: '%s' is not a valid value (an integer from %ld to %ld%s)", flag, item, lo, hi, allow_auto ? ", or auto" : "");
            out[n++] = x;
        }
        if (comma == NULL) break;
        t = comma;
    }
    return n;
}

// --controls: a comma-separated list of control prompts
static size_t parse_controls(const char *v, ControlPrompt *out, size_t max) {
    size_t n = 0;
    for (const char *t = v;; t++) {
        const char *comma = strchr(t, ',');
        size_t len = comma ? (size_t)(comma - t) : strlen(t);
        char item[64];
        if (len == 0 || len >= sizeof item) die("--controls: empty or overlong item in '%s'", v);
        if (n == max) die("--controls: at most %zu values", max);
        memcpy(item, t, len);
        item[len] = '\0';
        if (!control_parse(item, &out[n++])) die("--controls: '%s' is not none, token:N, token, step:N, long or short", item);
        if (comma == NULL) break;
        t = comma;
    }
    return n;
}

// The answer check for one problem: multiple choice when the ground truth is a letter A-D,
// else AIME/MATH rules (digit strings as integers, else the normaliser).
static int score_output(const char *output, const char *gt, int *defaulted, char **candidate_out) {
    ExtractKind kind;
    char *cand = score_extract(output, &kind);
    int ok;
    *defaulted = 0;
    if (score_is_choice(gt)) ok = score_choice(cand, defaulted) == gt[0];
    else ok = score_math_equal(cand, gt);
    *candidate_out = cand;
    return ok;
}

// Control, Scaling and Performance (s1-spec 7.4) over the settings, with a in
// mean thinking tokens (s1's statistic) and f(a) in accuracy points.
static void scaling_metrics(const SettingResult *r, size_t n, size_t stride, double *control, double *scaling, double *performance) {
    size_t within = 0, pairs = 0;
    double slopes = 0.0;
    *performance = 0.0;
    for (size_t a = 0; a < n; a++) {
        const SettingResult *ri = &r[a * stride];
        within += ri->max_thinking_seen <= (size_t)ri->a_max;   // a_min = 0
        double fi = 100.0 * (double)ri->correct / (double)ri->n;
        if (fi > *performance) *performance = fi;
        for (size_t b = 0; b < n; b++) {
            const SettingResult *rj = &r[b * stride];
            double fj = 100.0 * (double)rj->correct / (double)rj->n;
            if (rj->thinking_tokens > ri->thinking_tokens) {
                slopes += (fj - fi) / (rj->thinking_tokens - ri->thinking_tokens);
                pairs++;
            }
        }
    }
    *control = 100.0 * (double)within / (double)n;
    *scaling = pairs ? 100.0 * slopes / (double)pairs : 0.0;   // per 100 thinking tokens
}

static void usage_eval(void) {
    printf("usage: ./s1 eval --model DIR --tokenizer DIR --problems FILE.jsonl [--problems FILE2.jsonl ...]\n"
           "                 [--budgets LIST] [--waits LIST] [--out DIR] [--limit N] [options]\n"
           "\n"
           "Sweeps thinking budgets and Wait counts over held-out problems (JSONL with \"question\" and\n"
           "\"answer\"; ./data bench makes them from AIME24, MATH500, GPQA Diamond and AIME25) and prints the\n"
           "test-time scaling table: accuracy and mean thinking tokens per setting, then Control / Scaling /\n"
           "Performance (s1-spec 7.4) per curve. Answers are extracted and compared as the s1 harness does,\n"
           "with a deterministic normaliser instead of the LLM judge (common/score.h). Thinking tokens are\n"
           "s1's statistic (eval/compute_sample_stats.py: the uncut thinking text re-tokenized, minus its\n"
           "first and last lines); the ids the answer phase saw are the second column.\n"
           "\n"
           "  --problems FILE      a problems file; repeat it to run several (s1's tasks) in one batch: the\n"
           "                       'auto' budget then uses the longest prompt of all of them, as lm-eval did\n"
           "  --budgets LIST       thinking budgets, e.g. 32,64,128,auto (default auto)\n"
           "  --waits LIST         Wait counts, e.g. 0,1,2 (default 0); every budget is run with every count\n"
           "  --methods LIST       forcing (budget forcing) and/or rejection (rejection sampling, one curve per\n"
           "                       control; Waits do not apply), e.g. forcing,rejection (default forcing)\n"
           "  --max-tries T        rejection sampling's cap on tries per problem (default 64)\n"
           "  --controls LIST      control prompts, each a curve: none, token:N, token (N = the budget),\n"
           "                       step:N, long, short (s1's TCC, SCC, CCC; default none)\n"
           "  --samples K          K samples per problem (use --temperature 1): adds maj@k and cov@k for\n"
           "                       k = 2, 4, ..., K; accuracy and thinking tokens stay those of the first sample\n"
           "  --out DIR            writes DIR/eval.jsonl (every output and its score), DIR/scaling.md (the\n"
           "                       tables) and DIR/scaling.svg (accuracy against mean thinking tokens)\n"
           "  --limit N            only the first N problems of each file (lm-eval's --limit)\n"
           SAMPLE_FLAGS_HELP
           THREADS_FLAG_HELP);
}

#define EVAL_MAX_SETS 16

static int main_eval(int argc, char **argv) {
    const char *model_dir = NULL, *tok_dir = NULL, *out_dir = NULL, *problem_paths[EVAL_MAX_SETS];
    long budgets[32] = {-1}, waits[32] = {0};
    ControlPrompt controls[16] = {{CONTROL_NONE, 0}};
    int methods[2] = {0, 1}, n_methods = 1;
    size_t n_budgets = 1, n_waits = 1, n_controls = 1, n_sets = 0, limit = 0, k = 1;
    long max_tries = 64;
    SampleSettings s;
    sample_settings_default(&s);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_eval(); return 0; }
        else if (flag_is(a, "--model")) model_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--tokenizer")) tok_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--problems")) {
            if (n_sets == EVAL_MAX_SETS) die("eval: at most %d --problems files", EVAL_MAX_SETS);
            problem_paths[n_sets++] = flag_value(argc, argv, &i);
        }
        else if (flag_is(a, "--out")) out_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--limit")) limit = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--samples")) k = flag_count_max(argc, argv, &i, 0, 64);
        else if (flag_is(a, "--max-tries")) max_tries = (long)flag_count_max(argc, argv, &i, 0, 1000000);
        else if (flag_is(a, "--budgets")) { const char *f = a; n_budgets = parse_list(flag_value(argc, argv, &i), f, budgets, 32, 1, 1, SAMPLE_MAX_TOKENS); }
        else if (flag_is(a, "--waits")) { const char *f = a; n_waits = parse_list(flag_value(argc, argv, &i), f, waits, 32, 0, 0, SAMPLE_MAX_WAITS); }
        else if (flag_is(a, "--controls")) n_controls = parse_controls(flag_value(argc, argv, &i), controls, 16);
        else if (flag_is(a, "--methods")) {
            const char *v = flag_value(argc, argv, &i);
            n_methods = 0;
            if (strcmp(v, "forcing") == 0) methods[n_methods++] = 0;
            else if (strcmp(v, "rejection") == 0) methods[n_methods++] = 1;
            else if (strcmp(v, "forcing,rejection") == 0) { methods[n_methods++] = 0; methods[n_methods++] = 1; }
            else if (strcmp(v, "rejection,forcing") == 0) { methods[n_methods++] = 1; methods[n_methods++] = 0; }
            else die("--methods: '%s' is not forcing, rejection or both, comma-separated", v);
        }
        else if (!parse_cpu_sample_flag(argc, argv, &i, &s)) die("eval: unknown argument '%s' (see ./s1 eval --help)", a);
    }
    if (!model_dir || !tok_dir || n_sets == 0) die("eval: --model, --tokenizer and --problems are required (see ./s1 eval --help)");
    if (s.max_tries || s.control.kind != CONTROL_NONE) die("eval: use --methods and --controls (--rejection and --control are ./s1 sample's)");

    // every file's problems (the first --limit of each) in one batch, as lm-eval runs its tasks
    ProblemSet ps = {NULL, 0};
    size_t *set_of = NULL, set_size[EVAL_MAX_SETS] = {0};
    for (size_t f = 0; f < n_sets; f++) {
        ProblemSet one;
        problems_read(&one, problem_paths[f], 1);
        size_t n = limit && limit < one.n ? limit : one.n;
        ps.items = (Problem *)reallocCheck(ps.items, (ps.n + n) * sizeof(Problem));
        set_of = (size_t *)reallocCheck(set_of, (ps.n + n) * sizeof(size_t));
        for (size_t i = 0; i < one.n; i++) {
            if (i < n) { ps.items[ps.n] = one.items[i]; set_of[ps.n++] = f; }
            else { free(one.items[i].question); free(one.items[i].answer); }
        }
        set_size[f] = n;
        free(one.items);
    }
    const size_t n_eval = ps.n, n_jobs = n_eval * k;
    Generator g;
    generator_init(&g, model_dir, tok_dir, s.ignore_str);

    // the settings: method x control x Wait count x budget (rejection sampling: no Waits)
    size_t n_settings = 0, n_curves = 0;
    SettingResult *res = (SettingResult *)callocCheck((size_t)n_methods * n_controls * n_waits * n_budgets, sizeof(SettingResult));
    for (int m = 0; m < n_methods; m++)
        for (size_t c = 0; c < n_controls; c++)
            for (size_t w = 0; w < (methods[m] ? 1 : n_waits); w++, n_curves++)
                for (size_t b = 0; b < n_budgets; b++) {
                    SettingResult *r = &res[n_settings++];
                    r->rejection = methods[m];
                    r->control = controls[c];
                    r->budget = budgets[b];
                    r->waits = methods[m] ? 0 : (int)waits[w];
                }
    FILE *detail = NULL;
    AtomicFile detail_af;
    char path[4096];
    if (out_dir) {
        make_dirs(out_dir);
        snprintf(path, sizeof path, "%s/eval.jsonl", out_dir);
        detail_af = atomic_open(path);
        detail = detail_af.fp;
    }
    printf("eval: %zu problems from %zu file%s x %zu settings%s, %s decoding, %d threads\n", n_eval, n_sets, n_sets > 1 ? "s" : "",
           n_settings, k > 1 ? " x samples" : "", s.temperature == 0.0f ? "greedy" : "sampled", omp_get_max_threads());
    fflush(stdout);
    Generation *gens = (Generation *)callocCheck(n_jobs, sizeof(Generation));
    char **cands = (char **)callocCheck(n_jobs, sizeof(char *));
    int *oks = (int *)callocCheck(n_jobs, sizeof(int));
    double t0 = now_seconds();
    size_t done = 0;
    for (size_t si = 0; si < n_settings; si++) {
        SettingResult *r = &res[si];
        SampleSettings st = s;
        st.max_thinking = r->budget;
        st.waits = r->waits;
        st.max_tries = r->rejection ? max_tries : 0;
        r->set_correct = (size_t *)callocCheck(n_sets, sizeof(size_t));
        r->set_n = (size_t *)callocCheck(n_sets, sizeof(size_t));
        // the prompts of this control; 'auto' from the longest of them over every file (one lm-eval batch)
        size_t longest = problems_encode_control(&ps, g.tok, &r->control, r->budget);
        r->resolved = resolve_budget(&g.delim, st.max_thinking, st.max_gen_toks, longest);
        r->a_max = r->control.kind == CONTROL_TOKENS ? (r->control.n ? r->control.n : r->resolved) : r->resolved;
        size_t context = sample_context(&st, g.model.config.max_position_embeddings, longest);
        generate_batch(&g, &st, r->resolved, context, &ps, k, 0, n_jobs, gens, &done, n_settings * n_jobs, t0);
        char cname[32];
        control_name(&r->control, cname, sizeof cname);
        for (size_t j = 0; j < n_jobs; j++) {
            const size_t i = j / k;
            Generation *gen = &gens[j];
            int defaulted;
            oks[j] = score_output(gen->text, ps.items[i].answer, &defaulted, &cands[j]);
            if (j % k == 0) {   // pass@1 and the thinking statistics: the first sample, as s1's filtered_resps[0]
                r->correct += oks[j];
                r->set_correct[set_of[i]] += oks[j];
                r->set_n[set_of[i]]++;
                r->defaulted += defaulted;
                r->n++;
                r->thinking_tokens += (double)gen->thinking_tokens;
                r->thinking_ids += (double)gen->thinking_ids;
                if (gen->thinking_tokens > r->max_thinking_seen) r->max_thinking_seen = gen->thinking_tokens;
                r->waits_mean += gen->waits;
                r->forced_exits += gen->forced_exit;
                r->tries_mean += (double)gen->tries;
                r->capped += (size_t)gen->capped;
            }
            if (detail) {
                fprintf(detail, "{\"set\": ");
                json_write_string(detail, problem_paths[set_of[i]], strlen(problem_paths[set_of[i]]));
                fprintf(detail, ", \"method\": \"%s\", \"control\": \"%s\", \"budget\": %ld, \"wait\": %d, \"sample\": %zu, ",
                        r->rejection ? "rejection" : "forcing", cname, r->resolved, r->waits, j % k);
                write_generation_fields(detail, i, gen);
                fprintf(detail, ", \"extracted\": ");
                json_write_string(detail, cands[j], strlen(cands[j]));
                fprintf(detail, ", \"gt\": ");
                json_write_string(detail, ps.items[i].answer, strlen(ps.items[i].answer));
                fprintf(detail, ", \"correct\": %s}\n", oks[j] ? "true" : "false");
            }
            generation_free(gen);
        }
        // maj@k and cov@k for k = 2, 4, ..., K (s1: n_res_list = [2**i for i in range(1, K.bit_length())])
        for (size_t i = 0; i < n_eval; i++) {
            for (size_t e = 0; ((size_t)2 << e) <= k; e++) {
                int maj, cov;
                score_maj_cov(cands + i * k, oks + i * k, (size_t)2 << e, ps.items[i].answer, &maj, &cov);
                r->maj[e] += (size_t)maj;
                r->cov[e] += (size_t)cov;
            }
        }
        for (size_t j = 0; j < n_jobs; j++) { free(cands[j]); cands[j] = NULL; }
        r->thinking_tokens /= (double)r->n;
        r->thinking_ids /= (double)r->n;
        r->waits_mean /= (double)r->n;
        r->forced_exits /= (double)r->n;
        r->tries_mean /= (double)r->n;
    }
    free(gens); free(cands); free(oks);
    if (detail) atomic_commit(&detail_af);

    // the table, on stdout and in DIR/scaling.md
    int any_rejection = 0, any_control = 0;
    for (size_t si = 0; si < n_settings; si++) {
        any_rejection |= res[si].rejection;
        any_control |= res[si].control.kind != CONTROL_NONE;
    }
    ByteBuf table = {NULL, 0, 0};
    char line[1024];
    char (*names)[96] = (char (*)[96])mallocCheck(n_settings * 96);   // the curve of each setting
    for (size_t si = 0; si < n_settings; si++) {
        const SettingResult *r = &res[si];
        char cname[32];
        control_name(&r->control, cname, sizeof cname);
        int len = 0;
        if (r->rejection) len = snprintf(names[si], 96, "rejection sampling");
        else len = snprintf(names[si], 96, r->waits ? "Wait x%d" : "no forcing (cap only)", r->waits);
        if (r->control.kind != CONTROL_NONE) snprintf(names[si] + len, 96 - (size_t)len, ", control %s", cname);
    }
    bytebuf_puts(&table, "| budget | Wait |");
    if (any_rejection) bytebuf_puts(&table, " method | mean tries |");
    if (any_control) bytebuf_puts(&table, " control |");
    bytebuf_puts(&table, " accuracy | mean thinking tokens (s1) | mean thinking ids (ours) | mean Waits | forced exits |");
    for (size_t e = 0; ((size_t)2 << e) <= k; e++) {
        snprintf(line, sizeof line, " maj@%zu | cov@%zu |", (size_t)2 << e, (size_t)2 << e);
        bytebuf_puts(&table, line);
    }
    bytebuf_puts(&table, "\n|---|---|");
    if (any_rejection) bytebuf_puts(&table, "---|---|");
    if (any_control) bytebuf_puts(&table, "---|");
    bytebuf_puts(&table, "---|---|---|---|---|");
    for (size_t e = 0; ((size_t)2 << e) <= k; e++) bytebuf_puts(&table, "---|---|");
    bytebuf_puts(&table, "\n");
    for (size_t si = 0; si < n_settings; si++) {
        const SettingResult *r = &res[si];
        char bud[32];
        if (r->budget < 0) snprintf(bud, sizeof bud, "auto (%ld)", r->resolved);
        else snprintf(bud, sizeof bud, "%ld", r->resolved);
        snprintf(line, sizeof line, "| %s | %d |", bud, r->waits);
        bytebuf_puts(&table, line);
        if (any_rejection) {
            snprintf(line, sizeof line, " %s | %.1f%s |", r->rejection ? "rejection" : "forcing", r->tries_mean,
                     r->capped ? " (capped)" : "");
            bytebuf_puts(&table, line);
        }
        if (any_control) {
            char cname[32];
            control_name(&r->control, cname, sizeof cname);
            snprintf(line, sizeof line, " %s |", cname);
            bytebuf_puts(&table, line);
        }
        snprintf(line, sizeof line, " %.1f%% (%zu/%zu) | %.1f | %.1f | %.2f | %.0f%% |", 100.0 * (double)r->correct / (double)r->n,
                 r->correct, r->n, r->thinking_tokens, r->thinking_ids, r->waits_mean, 100.0 * r->forced_exits);
        bytebuf_puts(&table, line);
        for (size_t e = 0; ((size_t)2 << e) <= k; e++) {
            snprintf(line, sizeof line, " %.1f%% | %.1f%% |", 100.0 * (double)r->maj[e] / (double)r->n, 100.0 * (double)r->cov[e] / (double)r->n);
            bytebuf_puts(&table, line);
        }
        bytebuf_puts(&table, "\n");
    }
    // accuracy per problems file (lm-eval reports each task)
    if (n_sets > 1) {
        bytebuf_puts(&table, "\n| setting |");
        for (size_t f = 0; f < n_sets; f++) {
            snprintf(line, sizeof line, " %s (%zu) |", problem_paths[f], set_size[f]);
            bytebuf_puts(&table, line);
        }
        bytebuf_puts(&table, "\n|---|");
        for (size_t f = 0; f < n_sets; f++) bytebuf_puts(&table, "---|");
        bytebuf_puts(&table, "\n");
        for (size_t si = 0; si < n_settings; si++) {
            snprintf(line, sizeof line, "| %s, B=%ld |", names[si], res[si].resolved);
            bytebuf_puts(&table, line);
            for (size_t f = 0; f < n_sets; f++) {
                snprintf(line, sizeof line, " %.1f%% |", 100.0 * (double)res[si].set_correct[f] / (double)res[si].set_n[f]);
                bytebuf_puts(&table, line);
            }
            bytebuf_puts(&table, "\n");
        }
    }
    // the metrics per curve (every budget of one method, control and Wait count), then over every setting
    bytebuf_puts(&table, "\n| settings | Control | Scaling (accuracy points per 100 thinking tokens) | Performance |\n"
                         "|---|---|---|---|\n");
    for (size_t cv = 0; cv <= n_curves; cv++) {
        double control, scaling, performance;
        if (cv < n_curves) scaling_metrics(res + cv * n_budgets, n_budgets, 1, &control, &scaling, &performance);
        else scaling_metrics(res, n_settings, 1, &control, &scaling, &performance);
        if (cv < n_curves) snprintf(line, sizeof line, "| %s, all budgets | %.0f%% | %.2f | %.1f%% |\n", names[cv * n_budgets], control, scaling, performance);
        else snprintf(line, sizeof line, "| all settings | %.0f%% | %.2f | %.1f%% |\n", control, scaling, performance);
        bytebuf_puts(&table, line);
    }
    size_t defaulted = 0;
    for (size_t si = 0; si < n_settings; si++) defaulted += res[si].defaulted;
    if (defaulted) {
        snprintf(line, sizeof line, "multiple choice: %zu answers defaulted to \"A\" (nothing recognised)\n", defaulted);
        bytebuf_puts(&table, line);
    }
    fputs(table.data, stdout);
    if (out_dir) {
        snprintf(path, sizeof path, "%s/scaling.md", out_dir);
        AtomicFile af = atomic_open(path);
        fwriteCheck(table.data, 1, table.len, af.fp, path);
        atomic_commit(&af);
        // one series per curve, its points in budget order
        double *xs = (double *)mallocCheck(n_settings * sizeof(double)), *ys = (double *)mallocCheck(n_settings * sizeof(double));
        char **labels = (char **)callocCheck(n_settings, sizeof(char *));
        SvgSeries *series = (SvgSeries *)callocCheck(n_curves, sizeof(SvgSeries));
        for (size_t cv = 0; cv < n_curves; cv++) {
            for (size_t b = 0; b < n_budgets; b++) {
                size_t si = cv * n_budgets + b;
                xs[si] = res[si].thinking_tokens;
                ys[si] = 100.0 * (double)res[si].correct / (double)res[si].n;
                labels[si] = (char *)mallocCheck(32);
                snprintf(labels[si], 32, "B=%ld", res[si].resolved);
            }
            series[cv] = (SvgSeries){names[cv * n_budgets], xs + cv * n_budgets, ys + cv * n_budgets, n_budgets,
                                     (const char *const *)(labels + cv * n_budgets)};
        }
        snprintf(path, sizeof path, "%s/scaling.svg", out_dir);
        svg_line_plot_file(path, "Test-time scaling with budget forcing", "mean thinking tokens (s1's count)", "accuracy (%)", series, n_curves);
        printf("wrote %s/eval.jsonl, %s/scaling.md, %s/scaling.svg\n", out_dir, out_dir, out_dir);
        for (size_t si = 0; si < n_settings; si++) free(labels[si]);
        free(labels); free(series); free(xs); free(ys);
    }
    for (size_t si = 0; si < n_settings; si++) { free(res[si].set_correct); free(res[si].set_n); }
    free(names);
    bytebuf_free(&table);
    free(res);
    free(set_of);
    generator_free(&g);
    problems_free(&ps);
    return 0;
}

// ----------------------------------------------------------------------------
// ./s1 demo: s1 in miniature. Each stage runs a sibling program as a
// subprocess and prints the command first, so any stage can be re-run by hand.

typedef struct {
    const char *out_dir;
    size_t pool, train, eval, vocab, hidden, layers, heads, kv_heads, intermediate, epochs, batch, max_digits;
    double lr;
    const char *budgets, *waits;
    uint64_t seed;
    int threads;
} DemoSettings;

static void demo_defaults(DemoSettings *d, int quick) {
    memset(d, 0, sizeof *d);
    d->out_dir = "out/demo";
    d->seed = 1;
    d->max_digits = 2;
    d->lr = 2e-3;
    d->batch = 8;
    d->heads = 4;
    d->kv_heads = 2;
    if (!quick) {
        d->pool = 12000; d->train = 4000; d->eval = 100; d->vocab = 400;
        d->hidden = 64; d->layers = 2; d->intermediate = 192; d->epochs = 24;
        d->budgets = "8,16,32,64,128,auto"; d->waits = "0,1,2";
    } else {   // the CI version: every stage, a fraction of the work
        d->pool = 600; d->train = 150; d->eval = 12; d->vocab = 300;
        d->hidden = 32; d->layers = 1; d->intermediate = 64; d->epochs = 1;
        d->budgets = "16,auto"; d->waits = "0,1";
    }
}

// appends s to b, single-quoted for the shell where needed
static void shell_quote(ByteBuf *b, const char *s) {
    int plain = *s != '\0';
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/._-,=:+", *p)) plain = 0;
    if (plain) { bytebuf_puts(b, s); return; }
    bytebuf_puts(b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'') bytebuf_puts(b, "'\\''");
        else bytebuf_append(b, p, 1);
    }
    bytebuf_puts(b, "'");
}

// The command line of a stage: program, then arguments (NULL-terminated), each quoted.
static char *demo_command(const char *bin_prefix, const char *program, ...) {
    ByteBuf b = {NULL, 0, 0};
    bytebuf_puts(&b, bin_prefix);
    bytebuf_puts(&b, program);
    va_list ap;
    va_start(ap, program);
    for (const char *arg; (arg = va_arg(ap, const char *)) != NULL;) {
        bytebuf_puts(&b, " ");
        shell_quote(&b, arg);
    }
    va_end(ap);
    return b.data;
}

typedef struct {
    double *x, *y;   // the training loss by step
    size_t n, cap;
} LossCurve;

// Runs one stage: prints its header and command, streams its output (training
// steps thinned to about 20 lines; the full log goes to log_path), and dies if it fails.
static void demo_stage(int k, int n_stages, const char *title, const char *cmd, const char *log_path, LossCurve *curve,
                       double t_start) {
    char el[32];
    printf("\n[%d/%d] %s   (demo time so far %s)\n$ %s\n", k, n_stages, title,
           format_duration(now_seconds() - t_start, el, sizeof el), cmd);
    fflush(stdout);
    ByteBuf full = {NULL, 0, 0};
    bytebuf_puts(&full, cmd);
    bytebuf_puts(&full, " 2>&1");
    FILE *p = popen(full.data, "r");
    if (p == NULL) die("demo: cannot run: %s: %s", cmd, strerror(errno));
    FILE *log = log_path ? fopenCheck(log_path, "w") : NULL;
    char line[4096];
    while (fgets(line, sizeof line, p)) {
        if (log) fputs(line, log);
        size_t step, total;
        double loss;
        if (sscanf(line, "step %zu/%zu | loss %lf", &step, &total, &loss) == 3) {
            if (curve) {
                if (curve->n == curve->cap) {
                    curve->cap = curve->cap ? 2 * curve->cap : 256;
                    curve->x = (double *)reallocCheck(curve->x, curve->cap * sizeof(double));
                    curve->y = (double *)reallocCheck(curve->y, curve->cap * sizeof(double));
                }
                curve->x[curve->n] = (double)step;
                curve->y[curve->n++] = loss;
            }
            size_t every = total >= 20 ? total / 20 : 1;
            if (step % every != 0 && step != total) continue;
        }
        fputs("  ", stdout);
        fputs(line, stdout);
        fflush(stdout);
    }
    if (log) fcloseCheck(log, log_path);
    int status = pclose(p);
    if (status != 0) die("demo: stage %d (%s) failed with status %d: %s", k, title, status, cmd);
    bytebuf_free(&full);
}

static void usage_demo(void) {
    printf("usage: ./s1 demo [--out DIR] [--quick] [options]\n"
           "\n"
           "s1 in miniature, on the CPU, end to end: a synthetic pool of arithmetic problems whose thinking\n"
           "traces give a quick, often wrong answer and sometimes, after \"Wait\", work it out carefully and\n"
           "fix it (./data synth), the s1K selection\n"
           "(./data select), a small BPE (./tokenizer train), s1's training layout (./data tokenize), a small\n"
           "Qwen2.5-architecture model trained from scratch (./s1 train), then held-out problems at several\n"
           "thinking budgets and Wait counts (./s1 eval). Each command is printed before it runs. Writes, in DIR:\n"
           "loss.svg (the training loss), scaling.svg and scaling.md (the test-time scaling table), and every\n"
           "intermediate file.\n"
           "\n"
           "  --out DIR            output folder (default out/demo)\n"
           "  --quick              a much smaller run that only checks that every stage works (CI)\n"
           "  --pool N --train N --eval N   pool rows, selected training rows, held-out problems (12000, 4000, 100)\n"
           "  --max-digits N       operand digits of the synthetic problems (2)\n"
           "  --vocab N            BPE vocabulary before the 3 added tokens (400)\n"
           "  --hidden N --layers N --intermediate N   model size (64, 2, 192; 4 query and 2 KV heads)\n"
           "  --epochs N --batch N --lr X                training (24, 8, 2e-3)\n"
           "  --budgets LIST --waits LIST                the sweep (8,16,32,64,128,auto and 0,1,2)\n"
           "  --seed N             data seed (1)\n"
           "  --threads N          threads for training and evaluation (default: 1 for training, whose\n"
           "                       matrices are too small to share; all cores for evaluation)\n");
}

static int main_demo(int argc, char **argv) {
    int quick = 0;
    for (int i = 0; i < argc; i++) if (flag_is(argv[i], "--quick")) quick = 1;
    DemoSettings d;
    demo_defaults(&d, quick);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_demo(); return 0; }
        else if (flag_is(a, "--quick")) continue;
        else if (flag_is(a, "--out")) d.out_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--pool")) d.pool = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--train")) d.train = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--eval")) d.eval = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--max-digits")) d.max_digits = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--vocab")) d.vocab = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--hidden")) d.hidden = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--layers")) d.layers = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--intermediate")) d.intermediate = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--epochs")) d.epochs = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--batch")) d.batch = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--lr")) d.lr = flag_number(argc, argv, &i);
        else if (flag_is(a, "--budgets")) d.budgets = flag_value(argc, argv, &i);
        else if (flag_is(a, "--waits")) d.waits = flag_value(argc, argv, &i);
        else if (flag_is(a, "--seed")) d.seed = flag_count(argc, argv, &i, 1);
        else if (flag_is(a, "--threads")) d.threads = flag_threads(argc, argv, &i);
        else die("demo: unknown argument '%s' (see ./s1 demo --help)", a);
    }
    if (d.hidden % d.heads != 0) die("demo: --hidden %zu must be a multiple of the %zu heads", d.hidden, d.heads);
    // the sibling programs live next to this one
    char exe[4096], bin_prefix[4200], cwd[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) die("demo: cannot find this program's folder (/proc/self/exe)");
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    if (getcwd(cwd, sizeof cwd) && strcmp(cwd, exe) == 0) snprintf(bin_prefix, sizeof bin_prefix, "./");
    else {
        ByteBuf q = {NULL, 0, 0};
        shell_quote(&q, exe);
        snprintf(bin_prefix, sizeof bin_prefix, "%s/", q.data);
        bytebuf_free(&q);
    }
    for (const char *prog = "data"; prog; prog = strcmp(prog, "data") == 0 ? "tokenizer" : NULL) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", exe, prog);
        if (access(path, X_OK) != 0) die("demo: %s is missing; run make first", path);
    }
    make_dirs(d.out_dir);
    char pool[4200], evalp[4200], train[4200], corpus[4200], tok[4200], shard[4200], config[4200], model[4200], log[4200],
         num[8][32], svg[4200];
    snprintf(pool, sizeof pool, "%s/pool.jsonl", d.out_dir);
    snprintf(evalp, sizeof evalp, "%s/heldout.jsonl", d.out_dir);
    snprintf(train, sizeof train, "%s/train.jsonl", d.out_dir);
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", d.out_dir);
    snprintf(tok, sizeof tok, "%s/tokenizer", d.out_dir);
    snprintf(shard, sizeof shard, "%s/train.shard", d.out_dir);
    snprintf(config, sizeof config, "%s/config.json", d.out_dir);
    snprintf(model, sizeof model, "%s/model", d.out_dir);
    snprintf(log, sizeof log, "%s/train.log", d.out_dir);
    // Training runs on one thread unless --threads says otherwise: the demo's matrices are so small
    // that OpenMP's barriers cost more than the work, and with another busy process on a 2-core
    // machine two threads ran 15x slower than one. Evaluation splits the problems across threads
    // (no barriers inside a generation), so it uses every core.
    char train_threads[32], eval_threads[32];
    snprintf(train_threads, sizeof train_threads, "%d", d.threads > 0 ? d.threads : 1);
    snprintf(eval_threads, sizeof eval_threads, "%d", d.threads > 0 ? d.threads : omp_get_max_threads());
    const int S = 9;
    double t0 = now_seconds();
    printf("s1 demo: the whole s1 recipe in miniature, into %s (%s run)\n", d.out_dir, quick ? "quick" : "full");

    snprintf(num[0], 32, "%zu", d.pool); snprintf(num[1], 32, "%llu", (unsigned long long)d.seed); snprintf(num[2], 32, "%zu", d.max_digits);
    char *cmd = demo_command(bin_prefix, "data", "synth", "--out", pool, "--n", num[0], "--seed", num[1], "--max-digits", num[2], NULL);
    demo_stage(1, S, "a synthetic pool of problems with thinking traces", cmd, NULL, NULL, t0);
    free(cmd);

    snprintf(num[0], 32, "%zu", d.eval);
    cmd = demo_command(bin_prefix, "data", "synth", "--eval-set", "--out", evalp, "--n", num[0], "--seed", num[1], "--max-digits", num[2], NULL);
    demo_stage(2, S, "held-out evaluation problems (never in a pool)", cmd, NULL, NULL, t0);
    free(cmd);

    snprintf(num[0], 32, "%zu", d.train);
    cmd = demo_command(bin_prefix, "data", "select", pool, "--out", train, "--eval", evalp, "--n", num[0], "--seed", num[1], NULL);
    demo_stage(3, S, "the s1K selection: quality, difficulty, diversity", cmd, NULL, NULL, t0);
    free(cmd);

    cmd = demo_command(bin_prefix, "data", "render", train, "--out", corpus, NULL);
    demo_stage(4, S, "the training texts in s1's chat layout, as the tokenizer's corpus", cmd, NULL, NULL, t0);
    free(cmd);

    snprintf(num[0], 32, "%zu", d.vocab);
    cmd = demo_command(bin_prefix, "tokenizer", "train", "--vocab-size", num[0], "--out", tok, corpus, NULL);
    demo_stage(5, S, "a small byte-level BPE", cmd, NULL, NULL, t0);
    free(cmd);

    cmd = demo_command(bin_prefix, "data", "tokenize", train, "--tokenizer", tok, "--out", shard, NULL);
    demo_stage(6, S, "s1's training layout and loss mask, as a token shard", cmd, NULL, NULL, t0);
    free(cmd);

    // the model: Qwen2.5's architecture at a laptop's size; the embedding is padded past the
    // tokenizer to a multiple of 16 rows, as Qwen2.5 pads its own, so eval meets unused rows too
    Tokenizer *t = tokenizer_load(tok);
    size_t V = ((size_t)tokenizer_size(t) + 16) / 16 * 16;
    tokenizer_free(t);
    printf("\n[7/%d] a Qwen2.5-architecture model from scratch: %s\n", S, config);
    AtomicFile af = atomic_open(config);
    fprintf(af.fp, "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"hidden_act\": \"silu\",\n"
                   " \"vocab_size\": %zu, \"hidden_size\": %zu, \"intermediate_size\": %zu, \"num_hidden_layers\": %zu,\n"
                   " \"num_attention_heads\": %zu, \"num_key_value_heads\": %zu, \"max_position_embeddings\": 1024,\n"
                   " \"rope_theta\": 10000.0, \"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": true, \"torch_dtype\": \"float32\"}\n",
            V, d.hidden, d.intermediate, d.layers, d.heads, d.kv_heads);
    atomic_commit(&af);
    snprintf(num[0], 32, "%zu", d.epochs); snprintf(num[3], 32, "%zu", d.batch); snprintf(num[4], 32, "%g", d.lr);
    cmd = demo_command(bin_prefix, "s1", "train", "--init-config", config, "--data", shard, "--out", model, "--epochs", num[0],
                       "--batch", num[3], "--lr", num[4], "--threads", train_threads, NULL);
    LossCurve curve = {NULL, NULL, 0, 0};
    demo_stage(8, S, "training (s1's recipe: AdamW, cosine schedule, masked loss)", cmd, log, &curve, t0);
    free(cmd);
    snprintf(svg, sizeof svg, "%s/loss.svg", d.out_dir);
    SvgSeries ls = {"training loss (per step)", curve.x, curve.y, curve.n, NULL};
    svg_line_plot_file(svg, "Training loss", "optimizer step", "loss (nats per target token)", &ls, 1);
    printf("  wrote %s\n", svg);
    free(curve.x);
    free(curve.y);

    cmd = demo_command(bin_prefix, "s1", "eval", "--model", model, "--tokenizer", tok, "--problems", evalp, "--budgets", d.budgets,
                       "--waits", d.waits, "--max-gen-toks", "512", "--out", d.out_dir, "--threads", eval_threads, NULL);
    demo_stage(9, S, "held-out accuracy at several thinking budgets and Wait counts", cmd, NULL, NULL, t0);
    free(cmd);
    char el[32];
    printf("\ndemo done in %s. Plots: %s/loss.svg, %s/scaling.svg; table: %s/scaling.md\n",
           format_duration(now_seconds() - t0, el, sizeof el), d.out_dir, d.out_dir, d.out_dir);
    return 0;
}

// Subcommands: add a row here (and its main_ function) to extend ./s1.
static const struct { const char *name; int (*run)(int, char **); const char *help; } commands[] = {
    {"train", main_train, "train or fine-tune on a token shard (resumable)"},
    {"loss", main_loss, "masked loss of a checkpoint on a shard"},
    {"bench", main_bench, "tokens/s of full training steps on a random model"},
    {"sample", main_sample, "generate with budget forcing (thinking budget, Wait) from JSONL prompts"},
    {"eval", main_eval, "test-time scaling table: accuracy over thinking budgets and Wait counts"},
    {"demo", main_demo, "s1 in miniature: data, tokenizer, training, scaling table (start here)"},
};

static void usage(void) {
    printf("usage: ./s1 <command> [options]    (./s1 <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) printf("  %-8s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || flag_is(argv[1], "--help") || flag_is(argv[1], "-h")) { usage(); return argc < 2; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (flag_is(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    die("unknown command '%s' (see ./s1 --help)", argv[1]);
}

#endif // S1_NO_MAIN
