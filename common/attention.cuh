/*
 * attention.cuh: causal GQA flash attention on the GPU, for training rows and
 * for one decoded token. Twins of s1.c's attention_forward() and
 * attention_row(); tested by tests/emu_kernels.cu.
 */
#ifndef S1C_ATTENTION_CUH
#define S1C_ATTENTION_CUH

#include "common/cuda_common.cuh"

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

__global__ void attention_forward_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                         int Tq, int past, int NQ, int NKV, int HD, float scale) {
    // out q (Tq,NQ,HD), lse (Tq,NQ) or NULL, k v (past+Tq,NKV,HD)
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
        if (lse != NULL && lane == 0) lse[(size_t)t * NQ + h] = m[rr] + logf(sum);   // the backward pass recomputes P from it
    }
}

static size_t attention_smem_bytes(int HD) {
    return (size_t)(ATT_BQ * HD + ATT_BK * (HD + 1) + ATT_BK * HD + ATT_WARPS * ATT_BK) * sizeof(float);
}

// out (Tq,NQ,HD) = causal attention of the Tq query rows at positions past.. over
// the past+Tq keys/values (k, v: (past+Tq, NKV, HD), a sequence's or a KV cache's).
// lse (Tq,NQ), when not NULL, receives each row's log-sum-exp of its scaled
// scores (s1.c's layout), which attention_backward() needs.
static void attention_forward(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v, int Tq, int past,
                              int NQ, int NKV, int HD) {
    if (HD > ATT_MAX_HD || HD % 2 != 0) die("attention_forward: head_dim %d is not supported (even, at most %d)", HD, ATT_MAX_HD);
    if (NQ % NKV != 0) die("attention_forward: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    dim3 grid((unsigned)((Tq + ATT_BQ - 1) / ATT_BQ), (unsigned)NQ);
    float scale = 1.0f / sqrtf((float)HD);
    CU_LAUNCH(attention_forward_kernel, grid, ATT_WARPS * WARP_SIZE, attention_smem_bytes(HD), 0)(out, lse, q, k, v, Tq, past, NQ, NKV, HD, scale);
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

#endif // S1C_ATTENTION_CUH
