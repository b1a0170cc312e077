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
 *   ./s1 bench --hidden 256 --layers 4 ...                             # "s1 tokens/s: <float>"
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
#include "common/json.h"
#include "common/shard.h"

// ----------------------------------------------------------------------------
// vector helpers
//
// Every dot product in the file goes through dot(): LANES independent partial
// sums, then a fixed reduction. The fixed order makes every result independent
// of the thread count and of matmul tiling (so a resumed run is bit-identical
// and the KV-cache decoder matches the batched forward), and the lane-wise
// accumulation lets the compiler vectorise without -ffast-math.

#define LANES 16

static inline float lanes_sum(const float *acc) {
    float s = 0.0f;
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

static inline float dot(const float *a, const float *b, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j] * b[i + j];
    float s = lanes_sum(acc);
    for (; i < n; i++) s += a[i] * b[i];
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
    #pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) memcpy(out + n * C, table + (size_t)ids[n] * C, C * sizeof(float));
}

static void embedding_backward(float *dtable, const float *dout, const uint32_t *ids, size_t N, size_t C) {
    // serial over tokens: two tokens with the same id add into the same row
    for (size_t n = 0; n < N; n++) axpy(dtable + (size_t)ids[n] * C, dout + n * C, 1.0f, C);
}

// RMSNorm as Qwen2RMSNorm: y = x * rsqrt(mean(x^2) + eps), out = weight * y.
static void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, size_t N, size_t C, float eps) {
    // out (N,C), rstd (N,), inp (N,C), weight (C,)
    #pragma omp parallel for schedule(static)
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
    #pragma omp parallel for schedule(static)
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
// Forward: tiles of 4 tokens x 4 output features, 16 dot products whose LANES
// partial sums stay in registers while the rows stream by. Every element is
// the same reduction as dot(), so tiling never changes a result.
static void matmul_tile4x4(float *out, const float *inp, const float *weight, size_t C, size_t OC) {
    float acc[16][LANES] = {{0}};
    const float *x0 = inp, *x1 = inp + C, *x2 = inp + 2 * C, *x3 = inp + 3 * C;
    const float *w0 = weight, *w1 = weight + C, *w2 = weight + 2 * C, *w3 = weight + 3 * C;
    size_t i = 0;
    for (; i + LANES <= C; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float a0 = x0[i + j], a1 = x1[i + j], a2 = x2[i + j], a3 = x3[i + j];
            float b0 = w0[i + j], b1 = w1[i + j], b2 = w2[i + j], b3 = w3[i + j];
            acc[0][j] += a0 * b0;  acc[1][j] += a0 * b1;  acc[2][j] += a0 * b2;  acc[3][j] += a0 * b3;
            acc[4][j] += a1 * b0;  acc[5][j] += a1 * b1;  acc[6][j] += a1 * b2;  acc[7][j] += a1 * b3;
            acc[8][j] += a2 * b0;  acc[9][j] += a2 * b1;  acc[10][j] += a2 * b2; acc[11][j] += a2 * b3;
            acc[12][j] += a3 * b0; acc[13][j] += a3 * b1; acc[14][j] += a3 * b2; acc[15][j] += a3 * b3;
        }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            float s = lanes_sum(acc[4 * r + c]);
            for (size_t k = i; k < C; k++) s += inp[r * C + k] * weight[c * C + k];
            out[r * OC + c] = s;
        }
}

static void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C, size_t OC) {
    // out (N,OC) = inp (N,C) . weight (OC,C)^T + bias (OC,) [bias may be NULL]
    size_t NB = (N + 3) / 4, OB = (OC + 3) / 4;
    #pragma omp parallel for collapse(2) schedule(static)
    for (size_t nb = 0; nb < NB; nb++) {
        for (size_t ob = 0; ob < OB; ob++) {
            size_t n0 = nb * 4, o0 = ob * 4;
            if (n0 + 4 <= N && o0 + 4 <= OC) {
                matmul_tile4x4(out + n0 * OC + o0, inp + n0 * C, weight + o0 * C, C, OC);
            } else {
                for (size_t n = n0; n < N && n < n0 + 4; n++)
                    for (size_t o = o0; o < OC && o < o0 + 4; o++) out[n * OC + o] = dot(inp + n * C, weight + o * C, C);
            }
            if (bias != NULL)
                for (size_t n = n0; n < N && n < n0 + 4; n++)
                    for (size_t o = o0; o < OC && o < o0 + 4; o++) out[n * OC + o] += bias[o];
        }
    }
}

// Backward: out[r, c] += sum_k a[r*a_row + k*a_k] * b[k*ldb + c] for a block of
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

static void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, size_t N, size_t C, size_t OC) {
    size_t CB = (C + TILE_COLS - 1) / TILE_COLS;
    // dinp (N,C) += dout (N,OC) . weight (OC,C)
    #pragma omp parallel for collapse(2) schedule(static)
    for (size_t n0 = 0; n0 < N; n0 += TILE_ROWS)
        for (size_t cb = 0; cb < CB; cb++) {
            size_t c0 = cb * TILE_COLS, nr = N - n0 < TILE_ROWS ? N - n0 : TILE_ROWS, nc = C - c0 < TILE_COLS ? C - c0 : TILE_COLS;
            matmul_accumulate_tile(dinp + n0 * C + c0, C, dout + n0 * OC, OC, 1, weight + c0, C, OC, nr, nc);
        }
    // dweight (OC,C) += dout^T (OC,N) . inp (N,C)
    #pragma omp parallel for collapse(2) schedule(static)
    for (size_t o0 = 0; o0 < OC; o0 += TILE_ROWS)
        for (size_t cb = 0; cb < CB; cb++) {
            size_t c0 = cb * TILE_COLS, nr = OC - o0 < TILE_ROWS ? OC - o0 : TILE_ROWS, nc = C - c0 < TILE_COLS ? C - c0 : TILE_COLS;
            matmul_accumulate_tile(dweight + o0 * C + c0, C, dout + o0, 1, OC, inp + c0, C, N, nr, nc);
        }
    // dbias (OC,) += column sums of dout
    if (dbias != NULL) {
        #pragma omp parallel for schedule(static)
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
    #pragma omp parallel for schedule(static)
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

// One query row of causal attention with an online softmax (no T x T buffer):
// out (HD,) = softmax(q.k_u * scale) . v_u over u < ntok; *lse = log-sum-exp of the scaled scores.
// k and v rows are kv_stride floats apart (the other KV heads sit in between).
static void attention_row(float *out, float *lse, const float *q, const float *k, const float *v, size_t ntok,
                          size_t kv_stride, size_t HD, float scale) {
    float mx = -INFINITY, sum = 0.0f;
    for (size_t i = 0; i < HD; i++) out[i] = 0.0f;
    for (size_t u = 0; u < ntok; u++) {
        float s = dot(q, k + u * kv_stride, HD) * scale;
        if (s > mx) {  // new running max: rescale what was accumulated so far
            float c = expf(mx - s);
            sum *= c;
            for (size_t i = 0; i < HD; i++) out[i] *= c;
            mx = s;
        }
        float p = expf(s - mx);
        sum += p;
        axpy(out, v + u * kv_stride, p, HD);
    }
    for (size_t i = 0; i < HD; i++) out[i] /= sum;
    *lse = mx + logf(sum);
}

// Causal GQA attention over a batch of sequences stored back to back
// (seq_offsets (S+1,)). Query head h reads KV head h / G; K/V are never copied.
static void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                              const size_t *seq_offsets, size_t S, size_t NQ, size_t NKV, size_t HD) {
    // out (N,NQ,HD), lse (N,NQ), q (N,NQ,HD), k v (N,NKV,HD)
    size_t QD = NQ * HD, KD = NKV * HD, G = NQ / NKV;
    float scale = 1.0f / sqrtf((float)HD);
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
        #pragma omp parallel for collapse(2) schedule(static)
        for (size_t t = 0; t < T; t++)
            for (size_t h = 0; h < NQ; h++) {
                size_t n = n0 + t, kvh = h / G;
                attention_row(out + n * QD + h * HD, lse + n * NQ + h, q + n * QD + h * HD, k + n0 * KD + kvh * HD,
                              v + n0 * KD + kvh * HD, t + 1, KD, HD, scale);
            }
    }
}

// With p = softmax(s), dp_u = dout . v_u and D = dout . out = sum_u p_u dp_u:
//   ds_u = p_u (dp_u - D),  dq = scale sum_u ds_u k_u,  dk_u += scale ds_u q,  dv_u += p_u dout.
// Probabilities are recomputed from the saved lse. Two passes keep every
// gradient element owned by one thread: queries (dq), then keys (dk, dv).
static void attention_backward(float *dq, float *dk, float *dv, float *dsum, const float *dout, const float *out,
                               const float *lse, const float *q, const float *k, const float *v,
                               const size_t *seq_offsets, size_t S, size_t NQ, size_t NKV, size_t HD) {
    // dq (N,NQ,HD), dk dv (N,NKV,HD), dsum (N,NQ) scratch for D
    size_t QD = NQ * HD, KD = NKV * HD, G = NQ / NKV;
    float scale = 1.0f / sqrtf((float)HD);
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
        #pragma omp parallel for collapse(2) schedule(static)
        for (size_t t = 0; t < T; t++)
            for (size_t h = 0; h < NQ; h++) {
                size_t n = n0 + t, kvh = h / G;
                const float *qr = q + n * QD + h * HD, *dor = dout + n * QD + h * HD;
                float D = dot(dor, out + n * QD + h * HD, HD);
                dsum[n * NQ + h] = D;
                float *dqr = dq + n * QD + h * HD;
                for (size_t u = 0; u <= t; u++) {
                    const float *kr = k + (n0 + u) * KD + kvh * HD, *vr = v + (n0 + u) * KD + kvh * HD;
                    float p = expf(dot(qr, kr, HD) * scale - lse[n * NQ + h]);
                    float ds = p * (dot(dor, vr, HD) - D);
                    axpy(dqr, kr, scale * ds, HD);
                }
            }
        #pragma omp parallel for collapse(2) schedule(static)
        for (size_t u = 0; u < T; u++)
            for (size_t kvh = 0; kvh < NKV; kvh++) {
                const float *kr = k + (n0 + u) * KD + kvh * HD, *vr = v + (n0 + u) * KD + kvh * HD;
                float *dkr = dk + (n0 + u) * KD + kvh * HD, *dvr = dv + (n0 + u) * KD + kvh * HD;
                for (size_t h = kvh * G; h < (kvh + 1) * G; h++)
                    for (size_t t = u; t < T; t++) {
                        size_t n = n0 + t;
                        const float *qr = q + n * QD + h * HD, *dor = dout + n * QD + h * HD;
                        float p = expf(dot(qr, kr, HD) * scale - lse[n * NQ + h]);
                        float ds = p * (dot(dor, vr, HD) - dsum[n * NQ + h]);
                        axpy(dvr, dor, p, HD);
                        axpy(dkr, qr, scale * ds, HD);
                    }
            }
    }
}

// SwiGLU: out = silu(gate) * up, silu(z) = z * sigmoid(z).
static void swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
    // d silu(z)/dz = sigmoid(z) * (1 + z * (1 - sigmoid(z)))
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-gate[i]));
        dgate[i] += dout[i] * up[i] * sig * (1.0f + gate[i] * (1.0f - sig));
        dup[i] += dout[i] * gate[i] * sig;
    }
}

// Weighted cross-entropy: loss = sum_n weight[n] * (lse_n - logits[n, target[n]]).
// The weights carry the loss mask and s1's normalisation (see qwen2_forward).
static float crossentropy_forward(float *lse, const float *logits, const uint32_t *targets, const float *weights,
                                  size_t N, size_t V) {
    // lse (N,), logits (N,V)
    #pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        if (weights[n] == 0.0f) { lse[n] = 0.0f; continue; }
        const float *l = logits + n * V;
        float mx = -INFINITY;
        for (size_t i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        float sum = 0.0f;
        for (size_t i = 0; i < V; i++) sum += expf(l[i] - mx);
        lse[n] = mx + logf(sum);
    }
    double loss = 0.0;
    for (size_t n = 0; n < N; n++)
        if (weights[n] != 0.0f) loss += (double)weights[n] * (double)(lse[n] - logits[n * V + targets[n]]);
    return (float)loss;
}

static void crossentropy_backward(float *dlogits, const float *logits, const float *lse, const uint32_t *targets,
                                  const float *weights, float grad_scale, size_t N, size_t V) {
    // dlogits (N,V) = grad_scale * weight * (softmax - onehot); may alias logits (computed in place)
    #pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        float w = grad_scale * weights[n];
        float *d = dlogits + n * V;
        const float *l = logits + n * V;
        if (w == 0.0f) { memset(d, 0, V * sizeof(float)); continue; }
        for (size_t i = 0; i < V; i++) d[i] = w * expf(l[i] - lse[n]);
        d[targets[n]] -= w;
    }
}

static void residual_forward(float *out, const float *inp, size_t n) {
    // out += inp; the gradient of a residual add flows through to both inputs unchanged
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] + out[i];
}

// ----------------------------------------------------------------------------
// Qwen2 model definition

typedef struct {
    size_t vocab_size;            // V, embedding rows (>= the tokenizer's size)
    size_t hidden_size;           // H
    size_t intermediate_size;     // I
    size_t num_layers;            // L
    size_t num_heads;             // NQ
    size_t num_kv_heads;          // NKV
    size_t head_dim;              // HD ("head_dim" in config.json, else H/NQ)
    size_t max_position_embeddings;
    double rope_theta;
    double rms_norm_eps;
    int tie_word_embeddings;
    long long bos_token_id, eos_token_id;   // -1 when absent; copied to the saved config
} Qwen2Config;

enum { P_EMBED, P_LN1W, P_QW, P_QB, P_KW, P_KB, P_VW, P_VB, P_OW, P_LN2W, P_GATEW, P_UPW, P_DOWNW, P_NORMW, P_LMW,
       NUM_PARAMETER_TENSORS };

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

// How each parameter tensor is named in HF checkpoints, and whether it gets weight decay.
enum { KIND_WEIGHT, KIND_BIAS, KIND_NORM };
static const struct { const char *name; int per_layer; int kind; } parameter_info[NUM_PARAMETER_TENSORS] = {
    {"model.embed_tokens.weight", 0, KIND_WEIGHT},
    {"input_layernorm.weight", 1, KIND_NORM},
    {"self_attn.q_proj.weight", 1, KIND_WEIGHT},
    {"self_attn.q_proj.bias", 1, KIND_BIAS},
    {"self_attn.k_proj.weight", 1, KIND_WEIGHT},
    {"self_attn.k_proj.bias", 1, KIND_BIAS},
    {"self_attn.v_proj.weight", 1, KIND_WEIGHT},
    {"self_attn.v_proj.bias", 1, KIND_BIAS},
    {"self_attn.o_proj.weight", 1, KIND_WEIGHT},
    {"post_attention_layernorm.weight", 1, KIND_NORM},
    {"mlp.gate_proj.weight", 1, KIND_WEIGHT},
    {"mlp.up_proj.weight", 1, KIND_WEIGHT},
    {"mlp.down_proj.weight", 1, KIND_WEIGHT},
    {"model.norm.weight", 0, KIND_NORM},
    {"lm_head.weight", 0, KIND_WEIGHT},
};

// Shape of one layer's slice (or of the whole tensor for global ones); dims[1] = 0 for vectors.
static void parameter_shape(const Qwen2Config *c, int i, size_t dims[2]) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t shapes[NUM_PARAMETER_TENSORS][2] = {
        {c->vocab_size, H}, {H, 0}, {QD, H}, {QD, 0}, {KD, H}, {KD, 0}, {KD, H}, {KD, 0}, {H, QD}, {H, 0},
        {I, H}, {I, H}, {H, I}, {H, 0}, {c->tie_word_embeddings ? 0 : c->vocab_size, H}};
    dims[0] = shapes[i][0];
    dims[1] = shapes[i][1];
}

static size_t parameter_numel(const Qwen2Config *c, int i) {
    size_t dims[2];
    parameter_shape(c, i, dims);
    size_t n = dims[0] * (dims[1] ? dims[1] : 1);
    return parameter_info[i].per_layer ? n * c->num_layers : n;
}

// Carves one allocation into the named tensors (used for params, grads and AdamW m, v).
static void carve_parameters(ParameterTensors *p, float *memory, const Qwen2Config *c) {
    float **ptrs[NUM_PARAMETER_TENSORS] = {&p->embed, &p->ln1w, &p->qw, &p->qb, &p->kw, &p->kb, &p->vw, &p->vb,
                                           &p->ow, &p->ln2w, &p->gatew, &p->upw, &p->downw, &p->normw, &p->lmw};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *ptrs[i] = memory;
        memory += parameter_numel(c, i);
    }
}

// One tensor as HF names it: a layer's slice of a ParameterTensors entry.
typedef struct {
    char name[96];
    int param;         // P_* index
    size_t offset;     // floats from the start of the parameter memory
    size_t dims[2];    // dims[1] == 0 for a vector
    size_t numel;
} TensorInfo;

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

static void config_validate(const Qwen2Config *c, const char *what) {
    if (c->vocab_size == 0 || c->hidden_size == 0 || c->intermediate_size == 0 || c->num_layers == 0 ||
        c->num_heads == 0 || c->num_kv_heads == 0 || c->head_dim == 0)
        die("%s: every model size must be positive", what);
    if (c->num_heads % c->num_kv_heads != 0)
        die("%s: num_attention_heads %zu is not a multiple of num_key_value_heads %zu", what, c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2 != 0) die("%s: head_dim %zu must be even for RoPE", what, c->head_dim);
    if (c->vocab_size > (1ull << 32)) die("%s: vocab_size %zu does not fit 32-bit token ids", what, c->vocab_size);
    if (!(c->rope_theta > 0) || !(c->rms_norm_eps > 0)) die("%s: rope_theta and rms_norm_eps must be positive", what);
}

// Builds the model's tensors for a config and allocates the parameters (uninitialised).
static void qwen2_build(Qwen2 *m, const Qwen2Config *c) {
    memset(m, 0, sizeof *m);
    config_validate(c, "config");
    m->config = *c;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) m->num_parameters += parameter_numel(c, i);
    m->params_memory = (float *)mallocCheck(m->num_parameters * sizeof(float));
    carve_parameters(&m->params, m->params_memory, c);
    // HF order: embedding, the layers, final norm, lm_head
    size_t L = c->num_layers, count = 2 + L * (NUM_PARAMETER_TENSORS - 3) + (c->tie_word_embeddings ? 0 : 1);
    m->tensors = (TensorInfo *)callocCheck(count, sizeof(TensorInfo));
    size_t offsets[NUM_PARAMETER_TENSORS], off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { offsets[i] = off; off += parameter_numel(c, i); }
    for (int pass = 0; pass < 3; pass++) {  // globals before the layers, layers, globals after
        size_t layers = pass == 1 ? L : 1;
        for (size_t l = 0; l < layers; l++)
            for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
                int wanted = pass == 1 ? parameter_info[i].per_layer : !parameter_info[i].per_layer && ((pass == 0) == (i == P_EMBED));
                if (!wanted || (i == P_LMW && c->tie_word_embeddings)) continue;
                TensorInfo *t = &m->tensors[m->num_tensors++];
                t->param = i;
                parameter_shape(c, i, t->dims);
                t->numel = t->dims[0] * (t->dims[1] ? t->dims[1] : 1);
                t->offset = offsets[i] + (parameter_info[i].per_layer ? l * t->numel : 0);
                if (parameter_info[i].per_layer) snprintf(t->name, sizeof t->name, "model.layers.%zu.%s", l, parameter_info[i].name);
                else snprintf(t->name, sizeof t->name, "%s", parameter_info[i].name);
            }
    }
    if (m->num_tensors != count) die("internal error: built %zu tensors, expected %zu", m->num_tensors, count);
}

// ----------------------------------------------------------------------------
// random numbers: splitmix64 (seeding, shuffles, initialisation)

static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1.0p-53; }  // [0, 1)

static float rng_normal(uint64_t *state) {  // Box-Muller
    double u1 = rng_uniform(state), u2 = rng_uniform(state);
    return (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2));
}

// HF's from-scratch initialisation: weights N(0, 0.02), biases 0, RMSNorm weights 1.
static void qwen2_init_random(Qwen2 *m, const Qwen2Config *c, uint64_t seed) {
    qwen2_build(m, c);
    uint64_t state = seed;
    for (size_t i = 0; i < m->num_tensors; i++) {
        TensorInfo *t = &m->tensors[i];
        float *p = m->params_memory + t->offset;
        int kind = parameter_info[t->param].kind;
        for (size_t j = 0; j < t->numel; j++) p[j] = kind == KIND_WEIGHT ? 0.02f * rng_normal(&state) : kind == KIND_NORM ? 1.0f : 0.0f;
    }
}

// ----------------------------------------------------------------------------
// config.json in and out

static const JsonValue *config_field(const JsonValue *root, const char *key, JsonType type, const char *path, int required) {
    const JsonValue *v = json_get(root, key);
    if (v == NULL || v->type == JSON_NULL) {
        if (required) die("%s: missing field \"%s\"", path, key);
        return NULL;
    }
    if (v->type != type && !(type == JSON_TRUE && v->type == JSON_FALSE))
        die("%s: field \"%s\" is a %s, expected a %s", path, key, json_type_name(v->type), type == JSON_TRUE ? "boolean" : json_type_name(type));
    return v;
}

static size_t config_size(const JsonValue *root, const char *key, const char *path, int required, size_t fallback) {
    const JsonValue *v = config_field(root, key, JSON_NUMBER, path, required);
    if (v == NULL) return fallback;
    if (!v->is_integer || v->integer <= 0) die("%s: field \"%s\" must be a positive integer", path, key);
    return (size_t)v->integer;
}

static void config_read(Qwen2Config *c, const char *path) {
    size_t len;
    char *text = read_file_or_null(path, &len);
    if (text == NULL) die("%s: cannot read model config: %s", path, strerror(errno));
    JsonDoc doc;
    char err[256];
    if (json_parse(text, len, &doc, err, sizeof err) != 0) die("%s: invalid JSON: %s", path, err);
    const JsonValue *root = doc.root;
    if (root->type != JSON_OBJECT) die("%s: expected a JSON object", path);
    const JsonValue *v = config_field(root, "model_type", JSON_STRING, path, 0);
    if (v != NULL && strcmp(v->str, "qwen2") != 0) die("%s: model_type \"%s\" is not qwen2", path, v->str);
    v = config_field(root, "hidden_act", JSON_STRING, path, 0);
    if (v != NULL && strcmp(v->str, "silu") != 0) die("%s: hidden_act \"%s\" is not supported (silu only)", path, v->str);
    v = config_field(root, "use_sliding_window", JSON_TRUE, path, 0);
    if (v != NULL && v->type == JSON_TRUE) die("%s: use_sliding_window=true is not supported", path);
    if (json_get(root, "rope_scaling") != NULL && json_get(root, "rope_scaling")->type != JSON_NULL)
        die("%s: rope_scaling is not supported (plain RoPE only)", path);
    memset(c, 0, sizeof *c);
    c->vocab_size = config_size(root, "vocab_size", path, 1, 0);
    c->hidden_size = config_size(root, "hidden_size", path, 1, 0);
    c->intermediate_size = config_size(root, "intermediate_size", path, 1, 0);
    c->num_layers = config_size(root, "num_hidden_layers", path, 1, 0);
    c->num_heads = config_size(root, "num_attention_heads", path, 1, 0);
    c->num_kv_heads = config_size(root, "num_key_value_heads", path, 0, c->num_heads);
    c->head_dim = config_size(root, "head_dim", path, 0, c->hidden_size / c->num_heads);
    c->max_position_embeddings = config_size(root, "max_position_embeddings", path, 0, 32768);
    v = config_field(root, "rope_theta", JSON_NUMBER, path, 0);
    const JsonValue *rope = config_field(root, "rope_parameters", JSON_OBJECT, path, 0);  // transformers 5 moved it here
    if (v == NULL && rope != NULL) {
        const JsonValue *type = config_field(rope, "rope_type", JSON_STRING, path, 0);
        if (type != NULL && strcmp(type->str, "default") != 0) die("%s: rope_type \"%s\" is not supported (plain RoPE only)", path, type->str);
        v = config_field(rope, "rope_theta", JSON_NUMBER, path, 0);
    }
    c->rope_theta = v ? v->number : 10000.0;  // Qwen2Config's default
    v = config_field(root, "rms_norm_eps", JSON_NUMBER, path, 0);
    c->rms_norm_eps = v ? v->number : 1e-6;
    v = config_field(root, "tie_word_embeddings", JSON_TRUE, path, 0);
    c->tie_word_embeddings = v != NULL && v->type == JSON_TRUE;
    v = config_field(root, "bos_token_id", JSON_NUMBER, path, 0);
    c->bos_token_id = v && v->is_integer ? v->integer : -1;
    v = config_field(root, "eos_token_id", JSON_NUMBER, path, 0);
    c->eos_token_id = v && v->is_integer ? v->integer : -1;
    if (c->head_dim == 0) die("%s: hidden_size %zu is smaller than num_attention_heads %zu", path, c->hidden_size, c->num_heads);
    json_free(&doc);
    free(text);
    config_validate(c, path);
}

static void config_write(const Qwen2Config *c, const char *path) {
    AtomicFile af = atomic_open(path);
    FILE *fp = af.fp;
    fprintf(fp, "{\n  \"architectures\": [\"Qwen2ForCausalLM\"],\n  \"model_type\": \"qwen2\",\n");
    fprintf(fp, "  \"hidden_act\": \"silu\",\n  \"attention_dropout\": 0.0,\n  \"initializer_range\": 0.02,\n");
    fprintf(fp, "  \"vocab_size\": %zu,\n  \"hidden_size\": %zu,\n  \"intermediate_size\": %zu,\n", c->vocab_size, c->hidden_size, c->intermediate_size);
    fprintf(fp, "  \"num_hidden_layers\": %zu,\n  \"num_attention_heads\": %zu,\n  \"num_key_value_heads\": %zu,\n", c->num_layers, c->num_heads, c->num_kv_heads);
    fprintf(fp, "  \"head_dim\": %zu,\n  \"max_position_embeddings\": %zu,\n", c->head_dim, c->max_position_embeddings);
    fprintf(fp, "  \"rope_theta\": %.17g,\n  \"rms_norm_eps\": %.17g,\n", c->rope_theta, c->rms_norm_eps);
    fprintf(fp, "  \"tie_word_embeddings\": %s,\n  \"use_sliding_window\": false,\n", c->tie_word_embeddings ? "true" : "false");
    if (c->bos_token_id >= 0) fprintf(fp, "  \"bos_token_id\": %lld,\n", c->bos_token_id);
    if (c->eos_token_id >= 0) fprintf(fp, "  \"eos_token_id\": %lld,\n", c->eos_token_id);
    fprintf(fp, "  \"torch_dtype\": \"float32\"\n}\n");
    atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// safetensors in and out (format: docs/qwen2.5.md section 4.1)

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13);          // inf, nan
    else if (exp != 0) bits = sign | ((exp + 112) << 23) | (mant << 13); // normal: rebias 15 -> 127
    else if (mant == 0) bits = sign;                                     // zero
    else {                                                               // subnormal: normalise
        int e = -1;
        do { e++; mant <<= 1; } while ((mant & 0x400) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// One tensor of a safetensors header, validated against the file.
typedef struct {
    const char *name;
    const char *dtype;     // "F32", "BF16", "I64", ...
    size_t dtype_size;
    size_t dims[8];
    size_t ndim;
    size_t numel;
    size_t begin, end;     // byte range in the data buffer
} SafetensorsEntry;

typedef struct {
    const char *path;
    FILE *fp;
    size_t data_start;     // 8 + header length
    char *header;
    JsonDoc doc;
    const JsonValue *metadata;   // the "__metadata__" object or NULL
    SafetensorsEntry *entries;
    size_t num_entries;
} SafetensorsFile;

static size_t safetensors_dtype_size(const char *dtype) {
    static const struct { const char *name; size_t size; } dtypes[] = {
        {"F32", 4}, {"BF16", 2}, {"F16", 2}, {"F64", 8}, {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4}, {"I16", 2},
        {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}};
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtype, dtypes[i].name) == 0) return dtypes[i].size;
    return 0;
}

static int compare_entries(const void *a, const void *b) {
    const SafetensorsEntry *x = *(const SafetensorsEntry *const *)a, *y = *(const SafetensorsEntry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

// Opens a safetensors file and validates its whole header: the length, the
// JSON, every entry's dtype, shape and byte range (inside the file, matching
// the shape, no two tensors overlapping). Any problem is a one-line error.
static void safetensors_open(SafetensorsFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    f->fp = fopen(path, "rb");
    if (f->fp == NULL) die("%s: cannot open: %s", path, strerror(errno));
    if (fseeko(f->fp, 0, SEEK_END) != 0) die("%s: cannot seek", path);
    size_t file_size = (size_t)ftello(f->fp);
    rewind(f->fp);
    if (file_size < 8) die("%s: truncated safetensors file: %zu bytes, shorter than the 8-byte header length", path, file_size);
    uint8_t lenbuf[8];
    freadCheck(lenbuf, 1, 8, f->fp, path);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | lenbuf[i];
    if (header_len > 100000000ull) die("%s: safetensors header length %llu is implausible (over 100 MB)", path, (unsigned long long)header_len);
    if (8 + header_len > file_size)
        die("%s: truncated safetensors file: header length %llu exceeds the file size %zu", path, (unsigned long long)header_len, file_size);
    f->data_start = 8 + (size_t)header_len;
    size_t data_size = file_size - f->data_start;
    f->header = (char *)mallocCheck((size_t)header_len + 1);
    freadCheck(f->header, 1, (size_t)header_len, f->fp, path);
    f->header[header_len] = '\0';
    char err[256];
    if (json_parse(f->header, (size_t)header_len, &f->doc, err, sizeof err) != 0) die("%s: safetensors header is not valid JSON: %s", path, err);
    const JsonValue *root = f->doc.root;
    if (root->type != JSON_OBJECT) die("%s: safetensors header is not a JSON object", path);
    f->entries = (SafetensorsEntry *)callocCheck(root->len, sizeof(SafetensorsEntry));
    for (size_t i = 0; i < root->len; i++) {
        const char *name = root->keys[i];
        const JsonValue *e = &root->items[i];
        if (strcmp(name, "__metadata__") == 0) { f->metadata = e; continue; }
        for (size_t j = 0; j < f->num_entries; j++)
            if (strcmp(f->entries[j].name, name) == 0) die("%s: tensor %s appears twice in the header", path, name);
        const JsonValue *dtype = json_get(e, "dtype"), *shape = json_get(e, "shape"), *offs = json_get(e, "data_offsets");
        if (dtype == NULL || dtype->type != JSON_STRING || shape == NULL || shape->type != JSON_ARRAY || offs == NULL ||
            offs->type != JSON_ARRAY || offs->len != 2)
            die("%s: tensor %s: header entry needs dtype, shape and data_offsets [begin, end]", path, name);
        SafetensorsEntry *se = &f->entries[f->num_entries++];
        se->name = name;
        se->dtype = dtype->str;
        se->dtype_size = safetensors_dtype_size(dtype->str);
        if (se->dtype_size == 0) die("%s: tensor %s has unknown dtype %s", path, name, dtype->str);
        if (shape->len > 8) die("%s: tensor %s has %zu dimensions", path, name, shape->len);
        se->ndim = shape->len;
        se->numel = 1;
        for (size_t d = 0; d < shape->len; d++) {
            const JsonValue *x = &shape->items[d];
            if (x->type != JSON_NUMBER || !x->is_integer || x->integer < 0 || x->integer > (1ll << 40))
                die("%s: tensor %s: shape entries must be non-negative integers", path, name);
            se->dims[d] = (size_t)x->integer;
            se->numel *= se->dims[d];
        }
        for (int j = 0; j < 2; j++)
            if (offs->items[j].type != JSON_NUMBER || !offs->items[j].is_integer || offs->items[j].integer < 0)
                die("%s: tensor %s: data_offsets must be non-negative integers", path, name);
        se->begin = (size_t)offs->items[0].integer;
        se->end = (size_t)offs->items[1].integer;
        if (se->begin > se->end) die("%s: tensor %s: data_offsets [%zu, %zu) run backwards", path, name, se->begin, se->end);
        if (se->end > data_size)
            die("%s: tensor %s: data_offsets [%zu, %zu) lie outside the %zu-byte data buffer (truncated file?)", path, name, se->begin, se->end, data_size);
        if (se->end - se->begin != se->numel * se->dtype_size)
            die("%s: tensor %s: data_offsets span %zu bytes, but shape and dtype need %zu", path, name, se->end - se->begin, se->numel * se->dtype_size);
    }
    SafetensorsEntry **sorted = (SafetensorsEntry **)mallocCheck(f->num_entries * sizeof(SafetensorsEntry *));
    for (size_t i = 0; i < f->num_entries; i++) sorted[i] = &f->entries[i];
    qsort(sorted, f->num_entries, sizeof(SafetensorsEntry *), compare_entries);
    for (size_t i = 1; i < f->num_entries; i++)
        if (sorted[i]->begin < sorted[i - 1]->end) die("%s: tensors %s and %s overlap in the data buffer", path, sorted[i - 1]->name, sorted[i]->name);
    free(sorted);
}

__attribute__((unused)) static const SafetensorsEntry *safetensors_find(const SafetensorsFile *f, const char *name) {
    for (size_t i = 0; i < f->num_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

// Reads a tensor's bytes as stored (any dtype).
static void safetensors_read_raw(SafetensorsFile *f, const SafetensorsEntry *e, void *dst) {
    if (fseeko(f->fp, (off_t)(f->data_start + e->begin), SEEK_SET) != 0) die("%s: cannot seek to tensor %s", f->path, e->name);
    freadCheck(dst, 1, e->end - e->begin, f->fp, f->path);
}

// Reads a F32, F16 or BF16 tensor as fp32.
static void safetensors_read_f32(SafetensorsFile *f, const SafetensorsEntry *e, float *dst) {
    int f32 = strcmp(e->dtype, "F32") == 0, bf16 = strcmp(e->dtype, "BF16") == 0;
    if (!f32 && !bf16 && strcmp(e->dtype, "F16") != 0) die("%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", f->path, e->name, e->dtype);
    if (f32) { safetensors_read_raw(f, e, dst); return; }
    uint16_t *raw = (uint16_t *)mallocCheck(e->numel * sizeof(uint16_t));
    safetensors_read_raw(f, e, raw);
    for (size_t j = 0; j < e->numel; j++) dst[j] = bf16 ? bf16_to_float(raw[j]) : half_to_float(raw[j]);
    free(raw);
}

static void safetensors_close(SafetensorsFile *f) {
    fclose(f->fp);
    json_free(&f->doc);
    free(f->header);
    free(f->entries);
    memset(f, 0, sizeof *f);
}

static TensorInfo *find_tensor(Qwen2 *m, const char *name) {
    for (size_t i = 0; i < m->num_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

static void format_shape(char *buf, size_t n, const size_t *dims, size_t ndim) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (size_t i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %zu" : "%zu", dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Reads the model tensors of one safetensors file. index_file (NULL when the
// checkpoint is a single file) is this file's name in the index, whose
// weight_map must agree. loaded[i] marks m->tensors[i] as read.
static void qwen2_read_safetensors(Qwen2 *m, const char *path, const JsonValue *weight_map, const char *index_file, char *loaded) {
    SafetensorsFile f;
    safetensors_open(&f, path);
    const JsonValue *step = json_get(f.metadata, "s1c_step");
    if (step != NULL && step->type == JSON_STRING) m->step = (size_t)strtoull(step->str, NULL, 10);
    for (size_t i = 0; i < f.num_entries; i++) {  // check every entry before reading any data
        const SafetensorsEntry *e = &f.entries[i];
        TensorInfo *t = find_tensor(m, e->name);
        if (t == NULL) {
            if (m->config.tie_word_embeddings && strcmp(e->name, "lm_head.weight") == 0) continue;  // a copy of the embedding
            die("%s: unexpected tensor %s (not part of a Qwen2 model with this config)", path, e->name);
        }
        size_t idx = (size_t)(t - m->tensors);
        if (loaded[idx]) die("%s: tensor %s appears in more than one file", path, e->name);
        if (weight_map != NULL) {
            const JsonValue *w = json_get(weight_map, e->name);
            if (w == NULL || w->type != JSON_STRING || strcmp(w->str, index_file) != 0)
                die("%s: tensor %s is in this file but the index maps it to %s", path, e->name, w && w->type == JSON_STRING ? w->str : "nothing");
        }
        size_t ndim = t->dims[1] ? 2 : 1;
        if (e->ndim != ndim || e->dims[0] != t->dims[0] || (ndim == 2 && e->dims[1] != t->dims[1])) {
            char got[128], want[128];
            format_shape(got, sizeof got, e->dims, e->ndim);
            format_shape(want, sizeof want, t->dims, ndim);
            die("%s: tensor %s has shape %s, the config implies %s", path, e->name, got, want);
        }
        if (strcmp(e->dtype, "F32") != 0 && strcmp(e->dtype, "F16") != 0 && strcmp(e->dtype, "BF16") != 0)
            die("%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", path, e->name, e->dtype);
    }
    for (size_t i = 0; i < f.num_entries; i++) {
        TensorInfo *t = find_tensor(m, f.entries[i].name);
        if (t == NULL) continue;
        safetensors_read_f32(&f, &f.entries[i], m->params_memory + t->offset);
        loaded[t - m->tensors] = 1;
    }
    safetensors_close(&f);
}

// Loads a HF model folder: config.json plus model.safetensors, or the shards
// listed in model.safetensors.index.json. Any tensor may be F32, F16 or BF16.
static void qwen2_load(Qwen2 *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    Qwen2Config c;
    config_read(&c, path);
    qwen2_build(m, &c);
    char *loaded = (char *)callocCheck(m->num_tensors, 1);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    size_t len;
    char *index = read_file_or_null(path, &len);
    if (index == NULL) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        qwen2_read_safetensors(m, path, NULL, NULL, loaded);
    } else {
        JsonDoc doc;
        char err[256];
        if (json_parse(index, len, &doc, err, sizeof err) != 0) die("%s: invalid JSON: %s", path, err);
        const JsonValue *map = json_get(doc.root, "weight_map");
        if (map == NULL || map->type != JSON_OBJECT) die("%s: no \"weight_map\" object", path);
        for (size_t i = 0; i < map->len; i++) {
            const JsonValue *f = &map->items[i];
            if (f->type != JSON_STRING || strchr(f->str, '/') != NULL || f->len == 0)
                die("%s: weight_map entry %s must be a file name in the same folder", path, map->keys[i]);
            if (find_tensor(m, map->keys[i]) == NULL && !(c.tie_word_embeddings && strcmp(map->keys[i], "lm_head.weight") == 0))
                die("%s: unexpected tensor %s in weight_map", path, map->keys[i]);
            int seen = 0;  // read each shard once, at its first mention
            for (size_t j = 0; j < i && !seen; j++) seen = strcmp(map->items[j].str, f->str) == 0;
            if (seen) continue;
            char shard[4096];
            snprintf(shard, sizeof shard, "%s/%s", dir, f->str);
            qwen2_read_safetensors(m, shard, map, f->str, loaded);
        }
        json_free(&doc);
        free(index);
    }
    for (size_t i = 0; i < m->num_tensors; i++)
        if (!loaded[i]) die("%s: missing tensor %s", dir, m->tensors[i].name);
    free(loaded);
}

static void make_dir(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("%s: cannot create directory: %s", dir, strerror(errno));
}

static uint16_t float_to_bf16(float f) {  // round to nearest even, as torch's .to(bfloat16)
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // keep NaN a NaN
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

// Writes the model tensors [first, first + count) to a safetensors file, as F32
// or BF16, through a temporary name. Metadata records the AdamW step, so a
// resume can check that the model and optimizer files belong together.
static void safetensors_write(const Qwen2 *m, const char *path, size_t first, size_t count, int bf16) {
    ByteBuf hdr = {0};
    char buf[512];
    size_t elem = bf16 ? 2 : 4, off = 0;
    snprintf(buf, sizeof buf, "{\"__metadata__\":{\"format\":\"pt\",\"s1c_step\":\"%zu\"}", m->step);
    bytebuf_puts(&hdr, buf);
    for (size_t i = first; i < first + count; i++) {
        const TensorInfo *t = &m->tensors[i];
        char shape[64];
        if (t->dims[1]) snprintf(shape, sizeof shape, "%zu,%zu", t->dims[0], t->dims[1]);
        else snprintf(shape, sizeof shape, "%zu", t->dims[0]);
        snprintf(buf, sizeof buf, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}", t->name,
                 bf16 ? "BF16" : "F32", shape, off, off + elem * t->numel);
        bytebuf_puts(&hdr, buf);
        off += elem * t->numel;
    }
    bytebuf_puts(&hdr, "}");
    while ((8 + hdr.len) % 8 != 0) bytebuf_puts(&hdr, " ");  // writers pad so the data starts 8-aligned
    AtomicFile af = atomic_open(path);
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hdr.len >> (8 * i));
    fwriteCheck(lenbuf, 1, 8, af.fp, af.tmp_path);
    fwriteCheck(hdr.data, 1, hdr.len, af.fp, af.tmp_path);
    for (size_t i = first; i < first + count; i++) {
        const float *p = m->params_memory + m->tensors[i].offset;
        size_t n = m->tensors[i].numel;
        if (!bf16) { fwriteCheck(p, sizeof(float), n, af.fp, af.tmp_path); continue; }
        for (size_t j = 0; j < n; j++) {
            uint16_t b = float_to_bf16(p[j]);
            fwriteCheck(&b, 2, 1, af.fp, af.tmp_path);
        }
    }
    atomic_commit(&af);
    bytebuf_free(&hdr);
}

// Writes dir/config.json and dir/model.safetensors (F32, one file): a folder
// that transformers' from_pretrained loads.
static void qwen2_save(const Qwen2 *m, const char *dir) {
    make_dir(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    config_write(&m->config, path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    safetensors_write(m, path, 0, m->num_tensors, 0);
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
        float inv_freq = 1.0f / powf((float)m->config.rope_theta, (float)(2 * i) / (float)m->config.head_dim);
        for (size_t p = 0; p < cap; p++) {
            float angle = (float)p * inv_freq;
            m->rope_cos[p * half + i] = cosf(angle);
            m->rope_sin[p * half + i] = sinf(angle);
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
        *ptrs[i] = (float *)mallocCheck(N * sizes[i] * sizeof(float));
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
static float qwen2_forward(Qwen2 *m, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S) {
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
            a->weights[n] = scored ? (float)(1.0 / ((double)S * (double)targets)) : 0.0f;
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
    int decay_norm_weights;     // 1: transformers 4.46.1, which decays RMSNorm weights too (s1-spec 1.3)
} AdamWConfig;

// Global L2 norm of all gradients (in double, serially, so it never depends on the thread count).
static float qwen2_grad_norm(const Qwen2 *m) {
    double sumsq = 0.0;
    for (size_t i = 0; i < m->num_parameters; i++) sumsq += (double)m->grads_memory[i] * (double)m->grads_memory[i];
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
    double bias_correction1 = 1.0 - pow(cfg->beta1, (double)m->step);
    double bias_correction2 = 1.0 - pow(cfg->beta2, (double)m->step);
    float step_size = (float)(lr / bias_correction1), bc2_sqrt = (float)sqrt(bias_correction2);
    float w1 = (float)(1.0 - (double)cfg->beta1), w2 = (float)(1.0 - (double)cfg->beta2);
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = parameter_numel(&m->config, i);
        int kind = parameter_info[i].kind;
        int decays = kind == KIND_WEIGHT || (kind == KIND_NORM && cfg->decay_norm_weights);
        float shrink = (float)(1.0 - lr * (decays ? (double)cfg->weight_decay : 0.0));
        float *p = m->params_memory + offset, *g = m->grads_memory + offset, *mm = m->adam_m + offset, *vv = m->adam_v + offset;
        #pragma omp parallel for schedule(static)
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
    free(m->params_memory); free(m->grads_memory); free(m->adam_m); free(m->adam_v);
    free(m->tensors); free(m->rope_cos); free(m->rope_sin);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// KV-cache decoding: one token at a time, for sampling

typedef struct {
    size_t max_len, len;   // capacity and tokens cached (the next token's position)
    float *k, *v;          // (L, max_len, KD) keys after RoPE, values
    float *x, *xn, *tmp;   // (H,) residual stream, normed, branch output
    float *q, *att;        // (QD,)
    float *gate, *up;      // (I,)
    float *logits;         // (V,)
    float rstd, lse;
} KVCache;

__attribute__((unused)) static KVCache *kvcache_create(const Qwen2Config *c, size_t max_len) {
    KVCache *kv = (KVCache *)callocCheck(1, sizeof(KVCache));
    size_t KD = c->num_kv_heads * c->head_dim, QD = c->num_heads * c->head_dim;
    kv->max_len = max_len;
    kv->k = (float *)mallocCheck(c->num_layers * max_len * KD * sizeof(float));
    kv->v = (float *)mallocCheck(c->num_layers * max_len * KD * sizeof(float));
    kv->x = (float *)mallocCheck(c->hidden_size * sizeof(float));
    kv->xn = (float *)mallocCheck(c->hidden_size * sizeof(float));
    kv->tmp = (float *)mallocCheck(c->hidden_size * sizeof(float));
    kv->q = (float *)mallocCheck(QD * sizeof(float));
    kv->att = (float *)mallocCheck(QD * sizeof(float));
    kv->gate = (float *)mallocCheck(c->intermediate_size * sizeof(float));
    kv->up = (float *)mallocCheck(c->intermediate_size * sizeof(float));
    kv->logits = (float *)mallocCheck(c->vocab_size * sizeof(float));
    return kv;
}

// Forgets every token from position len on (e.g. to rewind a budget-forced continuation).
__attribute__((unused)) static void kvcache_truncate(KVCache *kv, size_t len) {
    if (len < kv->len) kv->len = len;
}

__attribute__((unused)) static void kvcache_free(KVCache *kv) {
    if (kv == NULL) return;
    free(kv->k); free(kv->v); free(kv->x); free(kv->xn); free(kv->tmp);
    free(kv->q); free(kv->att); free(kv->gate); free(kv->up); free(kv->logits);
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
        float *kc = kv->k + l * kv->max_len * KD, *vc = kv->v + l * kv->max_len * KD;
        rmsnorm_forward(kv->xn, &kv->rstd, kv->x, p->ln1w + l * H, 1, H, (float)c->rms_norm_eps);
        matmul_forward(kv->q, kv->xn, p->qw + l * QD * H, p->qb + l * QD, 1, H, QD);
        matmul_forward(kc + pos * KD, kv->xn, p->kw + l * KD * H, p->kb + l * KD, 1, H, KD);
        matmul_forward(vc + pos * KD, kv->xn, p->vw + l * KD * H, p->vb + l * KD, 1, H, KD);
        rope_forward(kv->q, &pos, m->rope_cos, m->rope_sin, 1, NQ, HD);
        rope_forward(kc + pos * KD, &pos, m->rope_cos, m->rope_sin, 1, NKV, HD);
        #pragma omp parallel for schedule(static)
        for (size_t h = 0; h < NQ; h++) {
            float lse;
            attention_row(kv->att + h * HD, &lse, kv->q + h * HD, kc + (h / G) * HD, vc + (h / G) * HD, pos + 1, KD, HD, scale);
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
// learning-rate schedule: HF get_cosine_schedule_with_warmup

// Warmup steps as HF computes them from a ratio: ceil(ratio * total).
static size_t schedule_warmup_steps(size_t total_steps, double warmup_ratio) {
    return (size_t)ceil((double)total_steps * warmup_ratio);
}

// lr for optimizer step k = 0, 1, ...: linear from 0 over the warmup, then a half cosine to 0.
static double schedule_lr(size_t k, size_t total_steps, size_t warmup_steps, double lr0) {
    if (k < warmup_steps) return lr0 * (double)k / (double)(warmup_steps > 1 ? warmup_steps : 1);
    size_t decay = total_steps - warmup_steps;
    double progress = (double)(k - warmup_steps) / (double)(decay > 1 ? decay : 1);
    double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    return lr0 * (f > 0.0 ? f : 0.0);
}

// ----------------------------------------------------------------------------
// data loader: whole sequences from a shard, reshuffled every epoch

typedef struct {
    Shard shard;
    size_t batch_size;       // sequences per optimizer step
    size_t max_seq_len;      // longer sequences are right-truncated (TRL's block size)
    uint64_t seed;
    size_t *order;           // (num_sequences,) this epoch's permutation
    size_t order_epoch;      // which epoch order holds, SIZE_MAX for none
    // the current batch, gathered back to back
    uint32_t *ids;
    uint8_t *mask;
    size_t *seq_offsets;     // (batch_size + 1,)
    size_t num_seqs;
} DataLoader;

static void dataloader_init(DataLoader *d, const char *path, size_t batch_size, size_t max_seq_len, uint64_t seed) {
    memset(d, 0, sizeof *d);
    shard_read(&d->shard, path);
    if (d->shard.header.num_sequences == 0) die("%s: the shard has no sequences", path);
    d->batch_size = batch_size;
    d->max_seq_len = max_seq_len;
    d->seed = seed;
    size_t S = (size_t)d->shard.header.num_sequences;
    d->order = (size_t *)mallocCheck(S * sizeof(size_t));
    d->order_epoch = SIZE_MAX;
    d->ids = (uint32_t *)mallocCheck(batch_size * max_seq_len * sizeof(uint32_t));
    d->mask = (uint8_t *)mallocCheck(batch_size * max_seq_len);
    d->seq_offsets = (size_t *)mallocCheck((batch_size + 1) * sizeof(size_t));
}

static size_t dataloader_steps_per_epoch(const DataLoader *d) {
    return ((size_t)d->shard.header.num_sequences + d->batch_size - 1) / d->batch_size;
}

// The permutation of an epoch depends only on (seed, epoch), so a resumed run
// needs nothing but the step number to continue the same data order.
static void dataloader_shuffle(DataLoader *d, size_t epoch) {
    size_t S = (size_t)d->shard.header.num_sequences;
    uint64_t state = d->seed ^ (0xD1B54A32D192ED03ull * (epoch + 1));
    for (size_t i = 0; i < S; i++) d->order[i] = i;
    for (size_t i = S - 1; i > 0; i--) {  // Fisher-Yates
        size_t j = (size_t)(rng_uniform(&state) * (double)(i + 1));
        size_t t = d->order[i]; d->order[i] = d->order[j]; d->order[j] = t;
    }
    d->order_epoch = epoch;
}

// Gathers the sequences of optimizer step k. The last step of an epoch takes
// the remaining sequences (fewer than batch_size when it does not divide).
static void dataloader_batch(DataLoader *d, size_t step) {
    size_t spe = dataloader_steps_per_epoch(d), epoch = step / spe, b = step % spe, S = (size_t)d->shard.header.num_sequences;
    if (d->order_epoch != epoch) dataloader_shuffle(d, epoch);
    size_t first = b * d->batch_size, last = first + d->batch_size < S ? first + d->batch_size : S;
    d->num_seqs = last - first;
    d->seq_offsets[0] = 0;
    for (size_t i = 0; i < d->num_seqs; i++) {
        size_t seq = d->order[first + i], start = (size_t)d->shard.offsets[seq], len = shard_seq_len(&d->shard, seq);
        if (len > d->max_seq_len) len = d->max_seq_len;
        memcpy(d->ids + d->seq_offsets[i], d->shard.ids + start, len * sizeof(uint32_t));
        memcpy(d->mask + d->seq_offsets[i], d->shard.mask + start, len);
        d->seq_offsets[i + 1] = d->seq_offsets[i] + len;
    }
}

// FNV-1a over the shard's offsets, ids and mask.
static uint64_t shard_hash(const Shard *sh) {
    uint64_t h = 0xcbf29ce484222325ull;
    const uint8_t *parts[3] = {(const uint8_t *)sh->offsets, (const uint8_t *)sh->ids, sh->mask};
    size_t sizes[3] = {(size_t)(sh->header.num_sequences + 1) * 8, (size_t)sh->header.num_tokens * 4, (size_t)sh->header.num_tokens};
    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < sizes[p]; i++) h = (h ^ parts[p][i]) * 0x100000001b3ull;
    return h;
}

static void dataloader_free(DataLoader *d) {
    shard_free(&d->shard);
    free(d->order); free(d->ids); free(d->mask); free(d->seq_offsets);
}

// ----------------------------------------------------------------------------
// training: settings, optimizer-state checkpoints, the loop

typedef struct {
    // the schedule and the optimizer: fixed for a run, stored in optimizer.bin
    double lr;
    double warmup_ratio;
    double weight_decay;
    double max_grad_norm;
    double beta1, beta2, eps;
    uint64_t decay_norm_weights;
    uint64_t epochs;
    uint64_t batch_size;
    uint64_t max_seq_len;
    uint64_t seed;
    uint64_t num_sequences;   // of the training shard,
    uint64_t data_hash;       // and a hash of its contents, to catch a resume on other data
} TrainSettings;

#define OPTSTATE_MAGIC 0x504F3153u   // "S1OP"
#define OPTSTATE_VERSION 1u

typedef struct {
    uint32_t magic, version;
    uint64_t step;             // optimizer steps done
    uint64_t num_parameters;
    TrainSettings settings;
} OptStateHeader;              // then float m[num_parameters], v[num_parameters]

// optimizer.bin next to the HF files: AdamW moments, step and the run's settings.
static void optstate_save(const Qwen2 *m, const TrainSettings *s, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    OptStateHeader h;
    memset(&h, 0, sizeof h);
    h.magic = OPTSTATE_MAGIC;
    h.version = OPTSTATE_VERSION;
    h.step = m->step;
    h.num_parameters = m->num_parameters;
    h.settings = *s;
    AtomicFile af = atomic_open(path);
    fwriteCheck(&h, sizeof h, 1, af.fp, af.tmp_path);
    fwriteCheck(m->adam_m, sizeof(float), m->num_parameters, af.fp, af.tmp_path);
    fwriteCheck(m->adam_v, sizeof(float), m->num_parameters, af.fp, af.tmp_path);
    atomic_commit(&af);
}

static void optstate_load(Qwen2 *m, TrainSettings *s, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) die("%s: cannot open optimizer state: %s", path, strerror(errno));
    OptStateHeader h;
    if (fread(&h, sizeof h, 1, fp) != 1) die("%s: truncated optimizer state header", path);
    if (h.magic != OPTSTATE_MAGIC || h.version != OPTSTATE_VERSION) die("%s: not an s1.c optimizer state (bad magic or version)", path);
    if (h.num_parameters != m->num_parameters)
        die("%s: optimizer state has %llu parameters, the model %zu", path, (unsigned long long)h.num_parameters, m->num_parameters);
    if (h.step != m->step)
        die("%s: optimizer state is at step %llu but model.safetensors at step %zu (interrupted save?)", path, (unsigned long long)h.step, m->step);
    m->adam_m = (float *)mallocCheck(m->num_parameters * sizeof(float));
    m->adam_v = (float *)mallocCheck(m->num_parameters * sizeof(float));
    freadCheck(m->adam_m, sizeof(float), m->num_parameters, fp, path);
    freadCheck(m->adam_v, sizeof(float), m->num_parameters, fp, path);
    if (fgetc(fp) != EOF) die("%s: trailing bytes after the optimizer state", path);
    fclose(fp);
    *s = h.settings;
}

typedef struct {
    const char *data_path;
    const char *model_dir;       // fine-tune this HF checkpoint
    const char *init_config;     // or start from random weights with this config.json
    const char *resume_dir;      // or continue a run from its checkpoint
    const char *out_dir;
    uint64_t init_seed;
    size_t micro_batch;          // sequences per forward/backward
    size_t save_every;           // 0: only at the end
    size_t stop_at;              // stop (and save) after this many steps; 0: run to the end
    int threads;
    int quiet;
    TrainSettings settings;
} TrainOptions;

static void save_checkpoint(const Qwen2 *m, const TrainSettings *s, const char *dir) {
    qwen2_save(m, dir);
    optstate_save(m, s, dir);
}

// Runs (or resumes) a training run. Returns the loss of the last step.
static float train_run(TrainOptions *o) {
    Qwen2 model;
    TrainSettings *s = &o->settings;
    if (o->resume_dir != NULL) {
        qwen2_load(&model, o->resume_dir);
        optstate_load(&model, s, o->resume_dir);
    } else if (o->model_dir != NULL) {
        qwen2_load(&model, o->model_dir);
        model.step = 0;
    } else {
        Qwen2Config c;
        config_read(&c, o->init_config);
        qwen2_init_random(&model, &c, o->init_seed);
    }
    DataLoader loader;
    dataloader_init(&loader, o->data_path, (size_t)s->batch_size, (size_t)s->max_seq_len, s->seed);
    uint64_t hash = shard_hash(&loader.shard);
    if (o->resume_dir != NULL && (s->num_sequences != loader.shard.header.num_sequences || s->data_hash != hash))
        die("%s: not the data this run was trained on (%llu sequences, content hash %016llx; this shard: %llu, %016llx)",
            o->data_path, (unsigned long long)s->num_sequences, (unsigned long long)s->data_hash,
            (unsigned long long)loader.shard.header.num_sequences, (unsigned long long)hash);
    s->num_sequences = loader.shard.header.num_sequences;
    s->data_hash = hash;
    if (loader.shard.header.vocab_size > model.config.vocab_size)
        die("%s: shard vocab_size %u exceeds the model's %zu embedding rows", o->data_path, loader.shard.header.vocab_size, model.config.vocab_size);
    size_t total = (size_t)s->epochs * dataloader_steps_per_epoch(&loader), warmup = schedule_warmup_steps(total, s->warmup_ratio);
    size_t end = o->stop_at > 0 && o->stop_at < total ? o->stop_at : total;
    AdamWConfig adamw = {(float)s->beta1, (float)s->beta2, (float)s->eps, (float)s->weight_decay, (float)s->max_grad_norm, (int)s->decay_norm_weights};
    if (!o->quiet)
        printf("model: %zu parameters, %zu layers | data: %llu sequences, %zu steps/epoch | %zu steps, %zu warmup | threads %d\n",
               model.num_parameters, model.config.num_layers, (unsigned long long)s->num_sequences,
               dataloader_steps_per_epoch(&loader), total, warmup, omp_get_max_threads());
    float loss = 0.0f;
    double t_start = now_seconds();
    size_t tokens_done = 0, first_step = model.step;
    for (size_t step = model.step; step < end; step++) {
        double t0 = now_seconds();
        double lr = schedule_lr(step, total, warmup, s->lr);
        dataloader_batch(&loader, step);
        qwen2_zero_grad(&model);
        loss = 0.0f;
        for (size_t i = 0; i < loader.num_seqs; i += o->micro_batch) {  // gradient accumulation over micro-batches
            size_t k = i + o->micro_batch < loader.num_seqs ? o->micro_batch : loader.num_seqs - i;
            size_t offs[k + 1];
            for (size_t j = 0; j <= k; j++) offs[j] = loader.seq_offsets[i + j] - loader.seq_offsets[i];
            size_t n0 = loader.seq_offsets[i];
            float weight = (float)k / (float)loader.num_seqs;
            loss += weight * qwen2_forward(&model, loader.ids + n0, loader.mask + n0, offs, k);
            qwen2_backward(&model, weight);
        }
        float norm = qwen2_update(&model, lr, &adamw);
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
        if ((o->save_every > 0 && (step + 1) % o->save_every == 0) || step + 1 == end) save_checkpoint(&model, s, o->out_dir);
    }
    if (!o->quiet) printf("done: %zu steps, %zu tokens in %.1fs; checkpoint in %s\n", end - first_step, tokens_done, now_seconds() - t_start, o->out_dir);
    dataloader_free(&loader);
    qwen2_free(&model);
    return loss;
}

// ----------------------------------------------------------------------------
// command line

#ifndef S1_NO_MAIN

static int arg_is(const char *arg, const char *name) { return strcmp(arg, name) == 0; }

// The value after a flag; dies with the flag's name when it is missing.
static const char *arg_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) die("%s needs a value", argv[*i]);
    return argv[++*i];
}

static size_t arg_size(int argc, char **argv, int *i, int allow_zero) {
    const char *flag = argv[*i], *v = arg_value(argc, argv, i);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || v[0] == '-' || (!allow_zero && x == 0)) die("%s: '%s' is not a %s integer", flag, v, allow_zero ? "non-negative" : "positive");
    return (size_t)x;
}

static double arg_double(int argc, char **argv, int *i) {
    const char *flag = argv[*i], *v = arg_value(argc, argv, i);
    char *end;
    double x = strtod(v, &end);
    if (*end != '\0' || end == v || !isfinite(x) || x < 0) die("%s: '%s' is not a non-negative number", flag, v);
    return x;
}

static void usage_train(void) {
    printf("usage: ./s1 train --data SHARD --out DIR (--model DIR | --init-config CONFIG.json | --resume DIR) [options]\n"
           "\n"
           "Fine-tunes Qwen2.5 on a token shard (from ./data) with s1's recipe: AdamW, cosine schedule with\n"
           "linear warmup, global grad-norm clipping, loss = mean over sequences of each sequence's token mean.\n"
           "Writes DIR/model.safetensors + config.json (loadable by HF transformers) and DIR/optimizer.bin.\n"
           "\n"
           "  --model DIR          start from this HF checkpoint (safetensors, single or sharded)\n"
           "  --init-config FILE   start from random weights, N(0,0.02), for this config.json\n"
           "  --init-seed N        seed of the random weights (default 1234)\n"
           "  --resume DIR         continue the run checkpointed in DIR (same settings, same data order;\n"
           "                       the schedule flags below are taken from DIR/optimizer.bin)\n"
           "  --epochs N           passes over the shard (default 5)\n"
           "  --batch N            sequences per optimizer step (default 16)\n"
           "  --micro-batch N      sequences per forward/backward; gradients accumulate (default 1)\n"
           "  --lr X               peak learning rate (default 1e-5)\n"
           "  --warmup-ratio X     warmup steps = ceil(X * total steps) (default 0.05)\n"
           "  --weight-decay X     AdamW decoupled weight decay (default 1e-4)\n"
           "  --decay-norms        also decay RMSNorm weights, as transformers 4.46.1 did (default: biases and\n"
           "                       norm weights are exempt)\n"
           "  --clip X             max global gradient norm, 0 = off (default 1.0)\n"
           "  --max-seq-len N      right-truncate longer sequences (default 32768)\n"
           "  --seed N             data-order seed (default 42)\n"
           "  --save-every N       also checkpoint every N steps (default 0: only at the end)\n"
           "  --stop-at N          stop after step N and checkpoint; the schedule still spans the full run\n"
           "  --threads N          OpenMP threads (default: all cores)\n");
}

static int main_train(int argc, char **argv) {
    TrainOptions o;
    memset(&o, 0, sizeof o);
    TrainSettings *s = &o.settings;
    *s = (TrainSettings){.lr = 1e-5, .warmup_ratio = 0.05, .weight_decay = 1e-4, .max_grad_norm = 1.0, .beta1 = 0.9,
                         .beta2 = 0.95, .eps = 1e-8, .epochs = 5, .batch_size = 16, .max_seq_len = 32768, .seed = 42};
    o.init_seed = 1234;
    o.micro_batch = 1;
    const char *settings_flag = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (arg_is(a, "--help") || arg_is(a, "-h")) { usage_train(); return 0; }
        else if (arg_is(a, "--data")) o.data_path = arg_value(argc, argv, &i);
        else if (arg_is(a, "--model")) o.model_dir = arg_value(argc, argv, &i);
        else if (arg_is(a, "--init-config")) o.init_config = arg_value(argc, argv, &i);
        else if (arg_is(a, "--init-seed")) o.init_seed = arg_size(argc, argv, &i, 1);
        else if (arg_is(a, "--resume")) o.resume_dir = arg_value(argc, argv, &i);
        else if (arg_is(a, "--out")) o.out_dir = arg_value(argc, argv, &i);
        else if (arg_is(a, "--micro-batch")) o.micro_batch = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--save-every")) o.save_every = arg_size(argc, argv, &i, 1);
        else if (arg_is(a, "--stop-at")) o.stop_at = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--threads")) o.threads = (int)arg_size(argc, argv, &i, 0);
        else {
            settings_flag = a;
            if (arg_is(a, "--epochs")) s->epochs = arg_size(argc, argv, &i, 0);
            else if (arg_is(a, "--batch")) s->batch_size = arg_size(argc, argv, &i, 0);
            else if (arg_is(a, "--lr")) s->lr = arg_double(argc, argv, &i);
            else if (arg_is(a, "--warmup-ratio")) s->warmup_ratio = arg_double(argc, argv, &i);
            else if (arg_is(a, "--weight-decay")) s->weight_decay = arg_double(argc, argv, &i);
            else if (arg_is(a, "--decay-norms")) s->decay_norm_weights = 1;
            else if (arg_is(a, "--clip")) s->max_grad_norm = arg_double(argc, argv, &i);
            else if (arg_is(a, "--max-seq-len")) s->max_seq_len = arg_size(argc, argv, &i, 0);
            else if (arg_is(a, "--seed")) s->seed = arg_size(argc, argv, &i, 1);
            else die("train: unknown argument '%s' (see ./s1 train --help)", a);
        }
    }
    if (o.data_path == NULL || o.out_dir == NULL) die("train: --data and --out are required (see ./s1 train --help)");
    if ((o.model_dir != NULL) + (o.init_config != NULL) + (o.resume_dir != NULL) != 1)
        die("train: give exactly one of --model, --init-config or --resume");
    if (o.resume_dir != NULL && settings_flag != NULL)
        die("train: %s cannot be combined with --resume: the run's settings come from %s/optimizer.bin", settings_flag, o.resume_dir);
    if (s->warmup_ratio > 1.0) die("train: --warmup-ratio must be at most 1");
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
        if (arg_is(a, "--help") || arg_is(a, "-h")) { usage_loss(); return 0; }
        else if (arg_is(a, "--model")) model_dir = arg_value(argc, argv, &i);
        else if (arg_is(a, "--data")) data_path = arg_value(argc, argv, &i);
        else if (arg_is(a, "--max-seq-len")) max_seq_len = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--threads")) omp_set_num_threads((int)arg_size(argc, argv, &i, 0));
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
        if (isatty(fileno(stderr))) {
            char eta[32];
            double el = now_seconds() - t0;
            fprintf(stderr, "\r%zu/%zu sequences, ETA %s   ", i + 1, S, format_duration(el / (double)(i + 1) * (double)(S - i - 1), eta, sizeof eta));
        }
    }
    if (isatty(fileno(stderr))) fprintf(stderr, "\n");
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
           "Times full training steps (forward, backward, AdamW) of a random model on one random sequence\n"
           "per step, after one warm-up step. Prints \"s1 tokens/s: <float>\". bench/train_cpu runs it\n"
           "beside PyTorch.\n");
}

static int main_bench(int argc, char **argv) {
    Qwen2Config c = {.vocab_size = 4096, .hidden_size = 256, .intermediate_size = 768, .num_layers = 4, .num_heads = 4,
                     .num_kv_heads = 2, .max_position_embeddings = 32768, .rope_theta = 1e6, .rms_norm_eps = 1e-6,
                     .tie_word_embeddings = 0, .bos_token_id = -1, .eos_token_id = -1};
    size_t T = 256, steps = 10;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (arg_is(a, "--help") || arg_is(a, "-h")) { usage_bench(); return 0; }
        else if (arg_is(a, "--hidden")) c.hidden_size = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--layers")) c.num_layers = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--heads")) c.num_heads = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--kv-heads")) c.num_kv_heads = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--intermediate")) c.intermediate_size = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--vocab")) c.vocab_size = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--tied")) c.tie_word_embeddings = 1;
        else if (arg_is(a, "--seq-len")) T = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--steps")) steps = arg_size(argc, argv, &i, 0);
        else if (arg_is(a, "--threads")) omp_set_num_threads((int)arg_size(argc, argv, &i, 0));
        else die("bench: unknown argument '%s' (see ./s1 bench --help)", a);
    }
    if (c.num_heads == 0 || c.hidden_size % c.num_heads != 0) die("bench: --hidden must be a multiple of --heads");
    c.head_dim = c.hidden_size / c.num_heads;
    Qwen2 model;
    qwen2_init_random(&model, &c, 1234);
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

// Subcommands: add a row here (and its main_ function) to extend ./s1.
static const struct { const char *name; int (*run)(int, char **); const char *help; } commands[] = {
    {"train", main_train, "train or fine-tune on a token shard (resumable)"},
    {"loss", main_loss, "masked loss of a checkpoint on a shard"},
    {"bench", main_bench, "tokens/s of full training steps on a random model"},
};

static void usage(void) {
    printf("usage: ./s1 <command> [options]    (./s1 <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) printf("  %-8s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || arg_is(argv[1], "--help") || arg_is(argv[1], "-h")) { usage(); return argc < 2; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (arg_is(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    die("unknown command '%s' (see ./s1 --help)", argv[1]);
}

#endif // S1_NO_MAIN
