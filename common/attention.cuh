/*
 * attention.cuh: causal GQA flash attention on the GPU, for training rows and
 * for one decoded token, and its backward pass (FlashAttention-2). Twins of
 * s1.c's attention_forward(), attention_row() and attention_backward(); tested
 * by tests/emu_kernels.cu, tests/emu_kernels_attention.cu and
 * tests/emu_kernels_attention_tc.cu. Two versions of the training kernels: on
 * the CUDA cores (attention_forward_cuda_cores(), attention_backward_cuda_cores():
 * the readable reference, any even head dim up to 128) and on the tensor cores
 * (attention_forward_tc(), attention_backward_tc(): mma.sync, ldmatrix, cp.async;
 * head dims 64 and 128). attention_forward() and attention_backward() pick the
 * tensor cores where they can, unless attention_tensor_cores is cleared.
 */
#ifndef S1C_ATTENTION_CUH
#define S1C_ATTENTION_CUH

#include "common/cuda_common.cuh"
#include "common/mma.cuh"   // mma.sync, ldmatrix, cp.async: the tensor-core kernels

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

__global__ void __launch_bounds__(ATT_WARPS * WARP_SIZE)
attention_forward_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
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
    // Per-row state in registers: every loop that indexes it is unrolled, so each index is a
    // compile-time constant (a runtime index would put the arrays in a local-memory stack frame).
    float m[ATT_ROWS], l[ATT_ROWS], acc[ATT_ROWS][ATT_DIMS];
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; rr++) {
        m[rr] = -INFINITY;
        l[rr] = 0.0f;
#pragma unroll
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
#pragma unroll
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
#pragma unroll
            for (int i = 0; i < ATT_DIMS; i++) {
                int d = lane + WARP_SIZE * i;
                if (d >= HD) continue;
                float a = acc[rr][i] * c;
                for (int j = 0; j < ATT_BK; j++) a += ps[warp * ATT_BK + j] * vs[j * HD + d];
                acc[rr][i] = a;
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS; rr++) {
        int t = q0 + warp * ATT_ROWS + rr;
        if (t >= Tq) continue;
        float sum = warp_sum(l[rr]);
#pragma unroll
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

// ----------------------------------------------------------------------------
// The same forward pass on tensor cores (FlashAttention-2 style), what
// attention_forward() runs by default at head dims 64 and 128.
//
// A block takes ATC_BQ = 64 query rows of one query head; each of its 4 warps
// owns 16 rows (one m16 tile) and keeps their Q fragments in registers. K and V
// tiles of ATC_BK = 64 keys go through two shared-memory stages filled by
// cp.async (the copy of tile j+1 is in flight while tile j is used; keys past
// the end are zero-filled). Per tile, S = Q K^T by mma.sync (K rows as the
// "col" operand: plain ldmatrix), the causal mask and the online softmax in
// fp32 registers (a row's 4 owners, one quad, share max and sum by shuffles),
// then P is rounded to bf16, reused straight from the S accumulators as the A
// fragment (the m16n8 C layout of two n8 tiles is the m16k16 A layout), and
// O += P V by mma.sync (V by ldmatrix.trans). Query blocks run latest first:
// they have the most keys, so the long blocks start early. Shared memory:
// (BQ + 4 BK) (HD + 8) bf16 = 46,080 bytes at HD 64, 87,040 at HD 128 (opt-in).
//
// Precision. Scores: exact bf16 products, fp32 sums (as the CUDA-core kernel).
// The running sum l adds the fp32 p, but P V uses p~ = bf16(p), |p~ - p| <= u p
// (u = 2^-8), so with w_tu = p_tu / l_t the output moves by at most
//     |sum_u (p~_tu - p_tu) v_ud| / l_t <= u sum_u w_tu |v_ud|   (<= u max|v|)
// on top of the CUDA-core kernel's bound; tests/emu_kernels_attention_tc.cu
// checks that (the weights computed in double from the inputs).
//
// A block takes one query head: each query head's block reads its group's K and V
// again (from L2 mostly). Packing the group's heads into the block's 64 rows would
// not cut those bytes (the blocks would cover 64/G positions each: the same tiles,
// as many blocks); only more rows per block would (tutorial/cuda.md, "GQA: why the
// forward's blocks take one query head").
#define ATC_BQ 64
#define ATC_BK 64
#define ATC_WARPS 4
#define ATC_PAD 8   // bf16: rows stay 16-byte aligned for ldmatrix/cp.async, and start in different banks

// The programs' choice: true (the default) runs attention on the tensor cores wherever the head dim
// allows (64 and 128: every Qwen2.5 size); false keeps the CUDA-core kernels, the readable reference.
static bool attention_tensor_cores = true;

// --attention tensor-cores|cuda-cores (sft, sample): sets attention_tensor_cores.
#define ATTENTION_FLAG_HELP                                                                                   \
    "  --attention K        tensor-cores (default: the tensor-core kernels at head_dim 64 and 128, the\n"     \
    "                       CUDA-core ones at other head dims) or cuda-cores (the CUDA-core kernels, the\n"  \
    "                       readable reference)\n"
static void attention_flag(const char *v) {
    if (strcmp(v, "tensor-cores") != 0 && strcmp(v, "cuda-cores") != 0)
        die("--attention: '%s' is not tensor-cores or cuda-cores", v);
    attention_tensor_cores = strcmp(v, "tensor-cores") == 0;
}

// O (16 query rows x HD, the warp's m16n8 accumulators: o[i] holds dims 8i..8i+7) += P (16 rows x
// ATC_BK keys, bf16 A fragments: pf[kk] holds keys 16kk..16kk+15) . V (ATC_BK keys x HD, shared
// memory, row stride LD): the P.V step of attention_forward_tc_kernel, a class of its own so that
// dev/attention.cu can swap in exercise 6's version (dev/exercises/06-attention-pv-tensor-cores.md).
// On tensor cores: V's k16 x n8 B fragments come straight from shared memory by ldmatrix.trans.
struct AtcPvTensorCores {
    template <int HD, int LD>
    __device__ static __forceinline__ void accumulate(float (&o)[HD / 8][4], const uint32_t (&pf)[ATC_BK / 16][4],
                                                      const floatX *vst, int lane) {
#pragma unroll
        for (int kk2 = 0; kk2 < ATC_BK / 16; kk2++) {
#pragma unroll
            for (int dp = 0; dp < HD / 16; dp++) {   // dims dp*16..+15: two n8 tiles per ldmatrix.x4.trans
                uint32_t b4[4];
                ldmatrix<4, true>(b4, &vst[(kk2 * 16 + lane % 8 + (lane / 8 % 2) * 8) * LD + dp * 16 + lane / 16 * 8]);
                uint32_t b0[2] = {b4[0], b4[1]}, b1[2] = {b4[2], b4[3]};
                mma_bf16_16816(o[2 * dp], pf[kk2], b0, o[2 * dp]);
                mma_bf16_16816(o[2 * dp + 1], pf[kk2], b1, o[2 * dp + 1]);
            }
        }
    }
};

template <int HD, class PV = AtcPvTensorCores>
__global__ void __launch_bounds__(ATC_WARPS * WARP_SIZE)
attention_forward_tc_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v, int Tq, int past,
                            int NQ, int NKV, float scale) {
    // out q (Tq,NQ,HD), lse (Tq,NQ) or NULL, k v (past+Tq,NKV,HD)
    constexpr int LD = HD + ATC_PAD, CH = HD / 8;   // row stride; 16-byte chunks per row
    CU_EXTERN_SHARED(float4, atc_smem);       // float4: 16-byte aligned, as ldmatrix and cp.async need
    floatX *smem = reinterpret_cast<floatX *>(atc_smem);
    floatX *qs = smem;                        // (BQ, LD)
    floatX *ks = qs + ATC_BQ * LD;            // (2, BK, LD) two stages
    floatX *vs = ks + 2 * ATC_BK * LD;        // (2, BK, LD)
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, g = lane / 4, t = lane % 4;
    int q0 = (gridDim.x - 1 - blockIdx.x) * ATC_BQ, h = blockIdx.y, kvh = h / (NQ / NKV);
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD;
    int num_keys = past + min(q0 + ATC_BQ, Tq);   // the keys the block's last row sees
    int ntiles = (num_keys + ATC_BK - 1) / ATC_BK;

    for (int c = threadIdx.x; c < ATC_BQ * CH; c += blockDim.x) {   // rows past Tq: zeros
        int r = c / CH, d = c % CH * 8;
        bool ok = q0 + r < Tq;
        cp_async_zfill<16>(&qs[r * LD + d], ok ? q + (size_t)(q0 + r) * QD + (size_t)h * HD + d : q, ok ? 16 : 0);
    }
    auto load_kv = [&](int stage, int k0) {
        for (int c = threadIdx.x; c < ATC_BK * CH; c += blockDim.x) {
            int j = c / CH, d = c % CH * 8, u = k0 + j;
            bool ok = u < num_keys;   // zeros past the end: p = 0 there, and 0 * zero is no NaN
            size_t off = (size_t)u * KD + (size_t)kvh * HD + d;
            cp_async_zfill<16>(&ks[(stage * ATC_BK + j) * LD + d], ok ? k + off : k, ok ? 16 : 0);
            cp_async_zfill<16>(&vs[(stage * ATC_BK + j) * LD + d], ok ? v + off : v, ok ? 16 : 0);
        }
    };
    load_kv(0, 0);
    cp_async_commit();   // group 0: Q and the first K, V tile

    uint32_t qf[HD / 16][4];
    float o[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};   // rows g and g+8; l: this lane's part
    int row0 = q0 + warp * 16 + g;                              // rows row0 and row0 + 8 (of Tq)
    int qpos[2] = {past + row0, past + row0 + 8};
    int warp_last = past + q0 + warp * 16 + 15;                 // the warp's last query position

    for (int kt = 0; kt < ntiles; kt++) {
        if (kt + 1 < ntiles) load_kv((kt + 1) & 1, (kt + 1) * ATC_BK);
        cp_async_commit();    // (empty on the last tile: the count stays uniform)
        cp_async_wait<1>();   // all but the newest group: tile kt (and Q) landed
        __syncthreads();      // ... for every thread's copies
        if (kt == 0) {
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) ldmatrix<4>(qf[kk], &qs[(warp * 16 + lane % 16) * LD + kk * 16 + lane / 16 * 8]);
        }
        int k0 = kt * ATC_BK;
        const floatX *kst = ks + (kt & 1) * ATC_BK * LD, *vst = vs + (kt & 1) * ATC_BK * LD;
        if (k0 <= warp_last) {   // warp-uniform: a tile wholly in the warp's future is skipped
            float s[ATC_BK / 8][4];
#pragma unroll
            for (int j = 0; j < ATC_BK / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
                for (int np = 0; np < ATC_BK / 16; np++) {   // keys np*16..+15: two n8 tiles per ldmatrix.x4
                    uint32_t b4[4];
                    ldmatrix<4>(b4, &kst[(np * 16 + lane % 8 + lane / 16 * 8) * LD + kk * 16 + (lane / 8 % 2) * 8]);
                    uint32_t b0[2] = {b4[0], b4[1]}, b1[2] = {b4[2], b4[3]};
                    mma_bf16_16816(s[2 * np], qf[kk], b0, s[2 * np]);
                    mma_bf16_16816(s[2 * np + 1], qf[kk], b1, s[2 * np + 1]);
                }
            }
            float mx[2] = {m[0], m[1]};
#pragma unroll
            for (int j = 0; j < ATC_BK / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = e / 2, u = k0 + j * 8 + 2 * t + e % 2;
                    s[j][e] = u <= qpos[r] ? s[j][e] * scale : -INFINITY;   // causal mask
                    mx[r] = fmaxf(mx[r], s[j][e]);
                }
            float c[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {   // finite: key 0 is in every row's first tile
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                c[r] = expf(m[r] - mx[r]);   // rescales what was accumulated (0 on the first tile)
                m[r] = mx[r];
                l[r] *= c[r];
            }
#pragma unroll
            for (int i = 0; i < HD / 8; i++) { o[i][0] *= c[0]; o[i][1] *= c[0]; o[i][2] *= c[1]; o[i][3] *= c[1]; }
            uint32_t pf[ATC_BK / 16][4];   // P as bf16 A fragments: keys 16*kk2 .. +15
#pragma unroll
            for (int j = 0; j < ATC_BK / 8; j++) {
                float p[4];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    p[e] = expf(s[j][e] - m[e / 2]);
                    l[e / 2] += p[e];
                }
                pf[j / 2][(j % 2) * 2 + 0] = pack_bf16x2(p[0], p[1]);   // row g, keys 2t, 2t+1 (+8 for odd j)
                pf[j / 2][(j % 2) * 2 + 1] = pack_bf16x2(p[2], p[3]);   // row g+8
            }
            PV::template accumulate<HD, LD>(o, pf, vst, lane);
        }
        __syncthreads();   // every warp is done with stage kt & 1 before tile kt+2's copy overwrites it
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        int row = row0 + 8 * r;
        if (row >= Tq) continue;
        floatX *orow = out + (size_t)row * QD + (size_t)h * HD;
#pragma unroll
        for (int i = 0; i < HD / 8; i++) {
            orow[i * 8 + 2 * t] = round_bf16(o[i][2 * r] / l[r]);
            orow[i * 8 + 2 * t + 1] = round_bf16(o[i][2 * r + 1] / l[r]);
        }
        if (lse != NULL && t == 0) lse[(size_t)row * NQ + h] = m[r] + logf(l[r]);
    }
}

static size_t attention_tc_smem_bytes(int HD) { return (size_t)(ATC_BQ + 4 * ATC_BK) * (HD + ATC_PAD) * sizeof(floatX); }

// attention_forward() on tensor cores: the same contract, HD 64 or 128. PV: the P.V step (above).
template <class PV = AtcPvTensorCores>
static void attention_forward_tc(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v, int Tq,
                                 int past, int NQ, int NKV, int HD, cudaStream_t stream) {
    if (HD != 64 && HD != 128) die("attention_forward_tc: head_dim %d is not supported (64 or 128)", HD);
    if (NQ % NKV != 0) die("attention_forward_tc: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    if (NQ > 65535) die("attention_forward_tc: %d query heads exceed the grid's y limit", NQ);
    if (Tq <= 0) return;
    dim3 grid((unsigned)((Tq + ATC_BQ - 1) / ATC_BQ), (unsigned)NQ);
    float scale = 1.0f / sqrtf((float)HD);
    size_t smem = attention_tc_smem_bytes(HD);
    void (*attention_forward_tc_kernel_hd)(floatX *, float *, const floatX *, const floatX *, const floatX *, int, int, int, int, float) =
        HD == 64 ? attention_forward_tc_kernel<64, PV> : attention_forward_tc_kernel<128, PV>;
    cudaCheck(cudaFuncSetAttribute(attention_forward_tc_kernel_hd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    CU_LAUNCH(attention_forward_tc_kernel_hd, grid, ATC_WARPS * WARP_SIZE, smem, stream)(out, lse, q, k, v, Tq, past, NQ, NKV, scale);
    cudaCheck(cudaGetLastError());
}

// out (Tq,NQ,HD) = causal attention of the Tq query rows at positions past.. over
// the past+Tq keys/values (k, v: (past+Tq, NKV, HD), a sequence's or a KV cache's).
// lse (Tq,NQ), when not NULL, receives each row's log-sum-exp of its scaled
// scores (s1.c's layout), which attention_backward() needs.
static void attention_forward_cuda_cores(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v, int Tq,
                                         int past, int NQ, int NKV, int HD, cudaStream_t stream) {
    if (HD > ATT_MAX_HD || HD % 2 != 0) die("attention_forward: head_dim %d is not supported (even, at most %d)", HD, ATT_MAX_HD);
    if (NQ % NKV != 0) die("attention_forward: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    dim3 grid((unsigned)((Tq + ATT_BQ - 1) / ATT_BQ), (unsigned)NQ);
    float scale = 1.0f / sqrtf((float)HD);
    CU_LAUNCH(attention_forward_kernel, grid, ATT_WARPS * WARP_SIZE, attention_smem_bytes(HD), stream)(out, lse, q, k, v, Tq, past,
                                                                                                       NQ, NKV, HD, scale);
    cudaCheck(cudaGetLastError());
}

// The programs' entry point: the tensor-core kernel where the head dim allows it
// and attention_tensor_cores is set (the default), else the CUDA-core kernel.
static void attention_forward(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v, int Tq, int past,
                              int NQ, int NKV, int HD, cudaStream_t stream) {
    if (attention_tensor_cores && (HD == 64 || HD == 128)) attention_forward_tc(out, lse, q, k, v, Tq, past, NQ, NKV, HD, stream);
    else attention_forward_cuda_cores(out, lse, q, k, v, Tq, past, NQ, NKV, HD, stream);
}

// ----------------------------------------------------------------------------
// Backward: FlashAttention-2, without its atomics. The twin of s1.c's
// attention_backward(); tested by tests/emu_kernels_attention.cu.
//
// With p_tu = exp(scale q_t.k_u - lse_t) (recomputed from the forward's lse, so
// no T x T matrix is ever stored), dp_tu = dout_t.v_u and D_t = dout_t.out_t:
//   ds_tu = p_tu (dp_tu - D_t),  dq_t = scale sum_{u<=t} ds_tu k_u,
//   dk_u = scale sum_h sum_{t>=u} ds_tu q_t,  dv_u = sum_h sum_{t>=u} p_tu dout_t,
// where h runs over the G = NQ/NKV query heads that read k_u's KV head.
//
// Three launches, every output element owned by one thread, sums in a fixed
// order: deterministic, with no atomics.
//  1. attention_backward_D_kernel: D (T,NQ) fp32 into scratch, one warp per (t,h).
//  2. attention_backward_dkdv_kernel: a block owns ATTB_BKV key rows of one KV
//     head (grid: key tiles x NKV). It walks the G query heads of the group and,
//     for each, the query rows t >= its first key in tiles of ATTB_BQ = 32 rows
//     (q, dout, lse, D staged in shared memory). Each warp owns ATTB_KV_ROWS key
//     rows; for one key row, lane i scores query i of the tile (p, ds), the
//     warp shares them through shared memory, and lane owns dims lane, lane+32,
//     ... of that key row's dk and dv accumulators, in registers. The group sum
//     of dk, dv is thus a plain loop: no second kernel, no atomics.
//  3. attention_backward_dq_kernel: a block owns ATT_BQ query rows of one query
//     head, like the forward kernel, and walks the key tiles u <= t; lane j
//     recomputes p and ds for key j, and lane owns dims of dq. (FA2 instead adds
//     dq from kernel 2 with atomicAdd, which saves recomputing p and dp but
//     makes the sum order, and the bits, vary from run to run.)
// All arithmetic is fp32; each output is rounded to bf16 once.
//
// Shared memory. Rows read by "lane = row" (a query row in kernel 2, a key or
// value row in kernel 3) are padded to HD+1 floats, so the 32 lanes hit 32
// banks; rows read by "lane = dim" or broadcast are not. Kernel 2 holds
// 2*BKV*HD + 2*BQ*(HD+1) + 2*BQ + 2*WARPS*BQ floats: 50,688 bytes at HD 128;
// kernel 3 holds 2*ATT_BQ*HD + 2*32*(HD+1) + WARPS*32 floats: 49,920 bytes at
// HD 128. That is over the 48 KiB default (kernel 2 from HD 126, kernel 3 at
// 128), so the launcher opts in with cudaFuncSetAttribute (H100: up to 227 KiB).
#define ATTB_BKV 16        // key rows per block of the dk/dv kernel
#define ATTB_BQ 32         // == WARP_SIZE: query rows per tile of the dk/dv kernel; lane i scores query i
#define ATTB_KV_ROWS (ATTB_BKV / ATT_WARPS)

// D[t*NQ + h] = sum_d dout[t,h,d] * out[t,h,d], one warp per row (t,h), lanes over d.
__global__ void __launch_bounds__(ATT_WARPS * WARP_SIZE)
attention_backward_D_kernel(float *D, const floatX *dout, const floatX *out, size_t rows, int HD) {
    int warps_per_block = blockDim.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    size_t first = (size_t)blockIdx.x * warps_per_block + threadIdx.x / WARP_SIZE;
    for (size_t row = first; row < rows; row += (size_t)gridDim.x * warps_per_block) {
        const floatX *dor = dout + row * HD, *outr = out + row * HD;
        float acc = 0.0f;
        for (int d = lane; d < HD; d += WARP_SIZE) acc += __bfloat162float(dor[d]) * __bfloat162float(outr[d]);   // D = dout . out
        acc = warp_sum(acc);
        if (lane == 0) D[row] = acc;
    }
}

__global__ void __launch_bounds__(ATT_WARPS * WARP_SIZE)
attention_backward_dkdv_kernel(floatX *dk, floatX *dv, const float *D, const floatX *dout, const float *lse,
                               const floatX *q, const floatX *k, const floatX *v,
                               int T, int NQ, int NKV, int HD, float scale) {
    // dk dv k v (T,NKV,HD), dout q (T,NQ,HD), lse D (T,NQ)
    CU_EXTERN_SHARED(float, smem);
    float *ks = smem;                          // (BKV, HD) the block's key rows (broadcast reads)
    float *vs = ks + ATTB_BKV * HD;            // (BKV, HD) and value rows
    float *qs = vs + ATTB_BKV * HD;            // (BQ, HD+1) query tile, padded: lane i reads row i
    float *dos = qs + ATTB_BQ * (HD + 1);      // (BQ, HD+1) dout tile, padded
    float *lses = dos + ATTB_BQ * (HD + 1);    // (BQ,) the tile's lse
    float *Ds = lses + ATTB_BQ;                // (BQ,) and D
    float *ps = Ds + ATTB_BQ;                  // (WARPS, BQ) one key row's p over the tile, per warp
    float *dss = ps + ATT_WARPS * ATTB_BQ;     // (WARPS, BQ) and its ds
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int k0 = blockIdx.x * ATTB_BKV, kvh = blockIdx.y, G = NQ / NKV;
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD;

    for (int i = threadIdx.x; i < ATTB_BKV * HD; i += blockDim.x) {
        int j = i / HD, d = i % HD, u = k0 + j;
        ks[i] = u < T ? __bfloat162float(k[(size_t)u * KD + kvh * HD + d]) : 0.0f;
        vs[i] = u < T ? __bfloat162float(v[(size_t)u * KD + kvh * HD + d]) : 0.0f;
    }
    float dk_acc[ATTB_KV_ROWS][ATT_DIMS], dv_acc[ATTB_KV_ROWS][ATT_DIMS];
    for (int rr = 0; rr < ATTB_KV_ROWS; rr++)
        for (int i = 0; i < ATT_DIMS; i++) dk_acc[rr][i] = dv_acc[rr][i] = 0.0f;
    for (int g = 0; g < G; g++) {   // the GQA group sum: every query head that reads this KV head
        int h = kvh * G + g;
        for (int t0 = k0; t0 < T; t0 += ATTB_BQ) {   // query rows t < k0 see none of the block's keys
            __syncthreads();   // dkdv: every warp is done with the previous query tile
            for (int i = threadIdx.x; i < ATTB_BQ * HD; i += blockDim.x) {
                int r = i / HD, d = i % HD, t = t0 + r;
                // rows past the end are zero: their p is 0, and 0 * garbage could be NaN
                qs[r * (HD + 1) + d] = t < T ? __bfloat162float(q[(size_t)t * QD + h * HD + d]) : 0.0f;
                dos[r * (HD + 1) + d] = t < T ? __bfloat162float(dout[(size_t)t * QD + h * HD + d]) : 0.0f;
            }
            for (int r = threadIdx.x; r < ATTB_BQ; r += blockDim.x) {
                int t = t0 + r;
                lses[r] = t < T ? lse[(size_t)t * NQ + h] : 0.0f;
                Ds[r] = t < T ? D[(size_t)t * NQ + h] : 0.0f;
            }
            __syncthreads();   // dkdv: the query tile is loaded
            #pragma unroll   // constant indices keep dk_acc, dv_acc in registers (else: local memory)
            for (int rr = 0; rr < ATTB_KV_ROWS; rr++) {
                int r = warp * ATTB_KV_ROWS + rr, u = k0 + r;
                if (u >= T) continue;   // warp-uniform: no such key row
                int t = t0 + lane;
                float p = 0.0f, ds = 0.0f;
                if (t < T && t >= u) {   // causal: query t sees keys u <= t
                    float s = 0.0f, dp = 0.0f;
                    for (int d = 0; d < HD; d++) s += qs[lane * (HD + 1) + d] * ks[r * HD + d];
                    for (int d = 0; d < HD; d++) dp += dos[lane * (HD + 1) + d] * vs[r * HD + d];
                    p = expf(s * scale - lses[lane]);
                    ds = p * (dp - Ds[lane]);
                }
                __syncwarp();   // the warp's previous key row is done reading ps, dss
                ps[warp * ATTB_BQ + lane] = p;
                dss[warp * ATTB_BQ + lane] = ds;
                __syncwarp();
                for (int i = 0; i < ATT_DIMS; i++) {
                    int d = lane + WARP_SIZE * i;
                    if (d >= HD) break;
                    float a = dk_acc[rr][i], b = dv_acc[rr][i];
                    for (int j = 0; j < ATTB_BQ; j++) {
                        a += dss[warp * ATTB_BQ + j] * qs[j * (HD + 1) + d];
                        b += ps[warp * ATTB_BQ + j] * dos[j * (HD + 1) + d];
                    }
                    dk_acc[rr][i] = a;
                    dv_acc[rr][i] = b;
                }
            }
        }
    }
    for (int rr = 0; rr < ATTB_KV_ROWS; rr++) {
        int u = k0 + warp * ATTB_KV_ROWS + rr;
        if (u >= T) continue;
        for (int i = 0; i < ATT_DIMS; i++) {
            int d = lane + WARP_SIZE * i;
            if (d >= HD) break;
            dk[(size_t)u * KD + kvh * HD + d] = round_bf16(scale * dk_acc[rr][i]);
            dv[(size_t)u * KD + kvh * HD + d] = round_bf16(dv_acc[rr][i]);
        }
    }
}

__global__ void __launch_bounds__(ATT_WARPS * WARP_SIZE)
attention_backward_dq_kernel(floatX *dq, const float *D, const floatX *dout, const float *lse,
                             const floatX *q, const floatX *k, const floatX *v,
                             int T, int NQ, int NKV, int HD, float scale) {
    // dq dout q (T,NQ,HD), k v (T,NKV,HD), lse D (T,NQ)
    CU_EXTERN_SHARED(float, smem);
    float *qs = smem;                          // (BQ, HD) the block's query rows (broadcast reads)
    float *dos = qs + ATT_BQ * HD;             // (BQ, HD) and dout rows
    float *ks = dos + ATT_BQ * HD;             // (BK, HD+1) key tile, padded: lane j reads row j
    float *vs = ks + ATT_BK * (HD + 1);        // (BK, HD+1) value tile, padded
    float *dss = vs + ATT_BK * (HD + 1);       // (WARPS, BK) one query row's ds over the tile, per warp
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int q0 = blockIdx.x * ATT_BQ, h = blockIdx.y, kvh = h / (NQ / NKV);
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD;

    for (int i = threadIdx.x; i < ATT_BQ * HD; i += blockDim.x) {
        int r = i / HD, d = i % HD, t = q0 + r;
        qs[i] = t < T ? __bfloat162float(q[(size_t)t * QD + h * HD + d]) : 0.0f;
        dos[i] = t < T ? __bfloat162float(dout[(size_t)t * QD + h * HD + d]) : 0.0f;
    }
    float L[ATT_ROWS], Dt[ATT_ROWS], acc[ATT_ROWS][ATT_DIMS];
    for (int rr = 0; rr < ATT_ROWS; rr++) {
        int t = q0 + warp * ATT_ROWS + rr;
        L[rr] = t < T ? lse[(size_t)t * NQ + h] : 0.0f;
        Dt[rr] = t < T ? D[(size_t)t * NQ + h] : 0.0f;
        for (int i = 0; i < ATT_DIMS; i++) acc[rr][i] = 0.0f;
    }
    int num_keys = min(q0 + ATT_BQ, T);   // the keys the block's last row sees
    for (int k0 = 0; k0 < num_keys; k0 += ATT_BK) {
        __syncthreads();   // dq: every warp is done with the previous key tile
        for (int i = threadIdx.x; i < ATT_BK * HD; i += blockDim.x) {
            int j = i / HD, d = i % HD, u = k0 + j;
            ks[j * (HD + 1) + d] = u < num_keys ? __bfloat162float(k[(size_t)u * KD + kvh * HD + d]) : 0.0f;
            vs[j * (HD + 1) + d] = u < num_keys ? __bfloat162float(v[(size_t)u * KD + kvh * HD + d]) : 0.0f;
        }
        __syncthreads();   // dq: the key tile is loaded
        #pragma unroll   // constant indices keep acc in registers (else: local memory)
        for (int rr = 0; rr < ATT_ROWS; rr++) {
            int r = warp * ATT_ROWS + rr, t = q0 + r;
            if (t >= T || k0 > t) continue;   // warp-uniform: no such row, or the tile is all future
            int u = k0 + lane;
            float ds = 0.0f;
            if (u <= t) {   // causal
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < HD; d++) s += qs[r * HD + d] * ks[lane * (HD + 1) + d];
                for (int d = 0; d < HD; d++) dp += dos[r * HD + d] * vs[lane * (HD + 1) + d];
                ds = expf(s * scale - L[rr]) * (dp - Dt[rr]);
            }
            __syncwarp();   // the warp's previous row is done reading dss
            dss[warp * ATT_BK + lane] = ds;
            __syncwarp();
            for (int i = 0; i < ATT_DIMS; i++) {
                int d = lane + WARP_SIZE * i;
                if (d >= HD) break;
                float a = acc[rr][i];
                for (int j = 0; j < ATT_BK; j++) a += dss[warp * ATT_BK + j] * ks[j * (HD + 1) + d];
                acc[rr][i] = a;
            }
        }
    }
    for (int rr = 0; rr < ATT_ROWS; rr++) {
        int t = q0 + warp * ATT_ROWS + rr;
        if (t >= T) continue;
        for (int i = 0; i < ATT_DIMS; i++) {
            int d = lane + WARP_SIZE * i;
            if (d < HD) dq[(size_t)t * QD + h * HD + d] = round_bf16(scale * acc[rr][i]);
        }
    }
}

static size_t attention_backward_dkdv_smem_bytes(int HD) {
    return (size_t)(2 * ATTB_BKV * HD + 2 * ATTB_BQ * (HD + 1) + 2 * ATTB_BQ + 2 * ATT_WARPS * ATTB_BQ) * sizeof(float);
}

static size_t attention_backward_dq_smem_bytes(int HD) {
    return (size_t)(2 * ATT_BQ * HD + 2 * ATT_BK * (HD + 1) + ATT_WARPS * ATT_BK) * sizeof(float);
}

// Floats of device scratch attention_backward() needs: D (T,NQ).
static size_t attention_backward_scratch_floats(int T, int NQ) { return (size_t)T * NQ; }

// D (T,NQ) = rowsum(dout * out), the first step of both backward passes
static void attention_backward_D(float *D, const floatX *dout, const floatX *out, int T, int NQ, int HD, cudaStream_t stream) {
    size_t rows = (size_t)T * NQ;
    CU_LAUNCH(attention_backward_D_kernel, grid_for(rows, ATT_WARPS), ATT_WARPS * WARP_SIZE, 0, stream)(D, dout, out, rows, HD);
    cudaCheck(cudaGetLastError());
}
// ----------------------------------------------------------------------------
// The backward pass on tensor cores (HD 64 and 128), selected by
// attention_tensor_cores like the forward: the same three steps and the same
// ownership as the CUDA-core kernels above (deterministic, no atomics), with the
// five T x T products on mma.sync m16n8k16. The D kernel is shared.
//
//  2. attention_backward_dkdv_tc_kernel: a block owns ATCB_BKV = 64 key rows of
//     one KV head, its K and V tiles staged once in shared memory; each of its 4
//     warps owns 16 key rows and their dk, dv accumulators (fp32 registers).
//     It walks the G query heads of the group and, for each, the query tiles of
//     ATCB_BQ = 32 rows from the one holding its first key (q, dout, lse, D
//     double-buffered by cp.async). Per tile, a warp computes, transposed (keys
//     as the m16 rows, so its accumulators stay its own):
//        S^T = K Q^T, P^T = exp(scale S^T - lse) (causal mask), dV += P^T dO,
//        dP^T = V dO^T, dS^T = P^T (dP^T - D), dK += dS^T Q,
//     with P^T and dS^T rounded to bf16 and reused straight from the
//     accumulators as A fragments (the forward's trick), K and V fragments by
//     ldmatrix, Q and dO as the "col" operand (plain ldmatrix) for S^T and dP^T
//     and as the k-major B operand (ldmatrix.trans) for dV and dK.
//  3. attention_backward_dq_tc_kernel: a block owns 64 query rows of one query
//     head (latest first, as the forward), its warps 16 rows each with their Q
//     and dO fragments in registers; per key tile of 32 (K and V double-buffered)
//        S = Q K^T, P, dP = dO V^T, dS = P (dP - D), dQ += dS K.
// Shared memory: (2 x 64 + 4 x 32) (HD + 8) bf16 (+ 256 floats for the dk/dv
// kernel's lse and D): 36,864 (37,376) bytes at HD 64, 69,632 (70,144) at 128.
//
// Precision: the products are exact and summed in fp32, as in the CUDA-core
// kernels; what is new is one bf16 rounding of each p (for dV) and each ds (for
// dK and dQ), |x~ - x| <= u|x|, so on top of the CUDA-core bound
//     |d dv_ud| <= u sum_{h,t} p_tu |dout_td|,
//     |d dk_ud| <= u scale sum_{h,t} |ds_tu| |q_td|,  |d dq_td| <= u scale sum_u |ds_tu| |k_ud|,
// derived and checked in tests/emu_kernels_attention.cu.
#define ATCB_BKV 64   // key rows per block of the dk/dv kernel: 4 warps x 16
#define ATCB_BQ 32    // query rows per tile of the dk/dv kernel
#define ATCB_DQ_BQ 64 // query rows per block of the dq kernel: 4 warps x 16
#define ATCB_DQ_BK 32 // key rows per tile of the dq kernel

// The n8 tiles of a 16 x 32 fp32 accumulator (rows g, g+8; columns 8j + 2t, +1),
// rounded to bf16 as the two m16k16 A fragments of its 32 columns.
__device__ __forceinline__ void atc_accumulator_to_a(uint32_t (&a)[2][4], const float (&c)[4][4]) {
#pragma unroll
    for (int j = 0; j < 4; j++) {
        a[j / 2][(j % 2) * 2 + 0] = pack_bf16x2(c[j][0], c[j][1]);
        a[j / 2][(j % 2) * 2 + 1] = pack_bf16x2(c[j][2], c[j][3]);
    }
}

// acc (16 x 32, four n8 tiles) += A (16 x HD: the warp's rows of as, row stride LD)
// . B^T (B: 32 rows of bs x HD): both operands row-major along HD (plain ldmatrix).
template <int HD, int LD>
__device__ __forceinline__ void atc_mma_abt(float (&acc)[4][4], const floatX *as, const floatX *bs, int lane) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t a[4];
        ldmatrix<4>(a, &as[(lane % 16) * LD + kk * 16 + lane / 16 * 8]);
#pragma unroll
        for (int np = 0; np < 2; np++) {
            uint32_t b4[4];
            ldmatrix<4>(b4, &bs[(np * 16 + lane % 8 + lane / 16 * 8) * LD + kk * 16 + (lane / 8 % 2) * 8]);
            uint32_t b0[2] = {b4[0], b4[1]}, b1[2] = {b4[2], b4[3]};
            mma_bf16_16816(acc[2 * np], a, b0, acc[2 * np]);
            mma_bf16_16816(acc[2 * np + 1], a, b1, acc[2 * np + 1]);
        }
    }
}

// acc (16 x HD) += A (16 x 32, bf16 A fragments) . B (32 rows of bs x HD, row stride LD: ldmatrix.trans)
template <int HD, int LD>
__device__ __forceinline__ void atc_mma_ab(float (&acc)[HD / 8][4], const uint32_t (&a)[2][4], const floatX *bs, int lane) {
#pragma unroll
    for (int kk = 0; kk < 2; kk++) {
#pragma unroll
        for (int dp = 0; dp < HD / 16; dp++) {
            uint32_t b4[4];
            ldmatrix<4, true>(b4, &bs[(kk * 16 + lane % 8 + (lane / 8 % 2) * 8) * LD + dp * 16 + lane / 16 * 8]);
            uint32_t b0[2] = {b4[0], b4[1]}, b1[2] = {b4[2], b4[3]};
            mma_bf16_16816(acc[2 * dp], a[kk], b0, acc[2 * dp]);
            mma_bf16_16816(acc[2 * dp + 1], a[kk], b1, acc[2 * dp + 1]);
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(ATC_WARPS * WARP_SIZE)
attention_backward_dkdv_tc_kernel(floatX *dk, floatX *dv, const float *D, const floatX *dout, const float *lse,
                                  const floatX *q, const floatX *k, const floatX *v, int T, int NQ, int NKV, float scale) {
    // dk dv k v (T,NKV,HD), dout q (T,NQ,HD), lse D (T,NQ)
    constexpr int LD = HD + ATC_PAD, CH = HD / 8;
    CU_EXTERN_SHARED(float4, atcb_smem);
    floatX *ks = reinterpret_cast<floatX *>(atcb_smem);   // (BKV, LD)
    floatX *vs = ks + ATCB_BKV * LD;                      // (BKV, LD)
    floatX *qs = vs + ATCB_BKV * LD;                      // (2, BQ, LD) two stages
    floatX *dos = qs + 2 * ATCB_BQ * LD;                  // (2, BQ, LD)
    float *lses = reinterpret_cast<float *>(dos + 2 * ATCB_BQ * LD);   // (2, BQ)
    float *Ds = lses + 2 * ATCB_BQ;                                    // (2, BQ)
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, g = lane / 4, t = lane % 4;
    int k0 = blockIdx.x * ATCB_BKV, kvh = blockIdx.y, G = NQ / NKV;
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD;

    for (int c = threadIdx.x; c < ATCB_BKV * CH; c += blockDim.x) {   // key rows past T: zeros
        int r = c / CH, d = c % CH * 8;
        bool ok = k0 + r < T;
        size_t off = (size_t)(k0 + r) * KD + (size_t)kvh * HD + d;
        cp_async_zfill<16>(&ks[r * LD + d], ok ? k + off : k, ok ? 16 : 0);
        cp_async_zfill<16>(&vs[r * LD + d], ok ? v + off : v, ok ? 16 : 0);
    }
    // the steps: for each head of the group, the query tiles from the one holding key k0
    int first_tile = k0 / ATCB_BQ, tiles = (T + ATCB_BQ - 1) / ATCB_BQ - first_tile, steps = G * tiles;
    auto load_q = [&](int stage, int step) {
        int h = kvh * G + step / tiles, q0 = (first_tile + step % tiles) * ATCB_BQ;
        for (int c = threadIdx.x; c < ATCB_BQ * CH; c += blockDim.x) {
            int r = c / CH, d = c % CH * 8;
            bool ok = q0 + r < T;
            size_t off = (size_t)(q0 + r) * QD + (size_t)h * HD + d;
            cp_async_zfill<16>(&qs[(stage * ATCB_BQ + r) * LD + d], ok ? q + off : q, ok ? 16 : 0);
            cp_async_zfill<16>(&dos[(stage * ATCB_BQ + r) * LD + d], ok ? dout + off : dout, ok ? 16 : 0);
        }
        for (int r = threadIdx.x; r < ATCB_BQ; r += blockDim.x) {
            bool ok = q0 + r < T;
            size_t off = (size_t)(q0 + r) * NQ + h;
            cp_async_zfill<4>(&lses[stage * ATCB_BQ + r], ok ? lse + off : lse, ok ? 4 : 0);
            cp_async_zfill<4>(&Ds[stage * ATCB_BQ + r], ok ? D + off : D, ok ? 4 : 0);
        }
    };
    load_q(0, 0);
    cp_async_commit();   // group 0: K, V and the first tile

    float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[i][e] = dva[i][e] = 0.0f;
    int wk0 = k0 + warp * 16;   // the warp's first key
    for (int step = 0; step < steps; step++) {
        if (step + 1 < steps) load_q((step + 1) & 1, step + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        int stage = step & 1, q0 = (first_tile + step % tiles) * ATCB_BQ;
        const floatX *qst = qs + stage * ATCB_BQ * LD, *dost = dos + stage * ATCB_BQ * LD;
        if (wk0 < T && q0 + ATCB_BQ - 1 >= wk0) {   // warp-uniform: some query of the tile sees the warp's keys
            float s[4][4], dp[4][4];
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
            atc_mma_abt<HD, LD>(s, ks + warp * 16 * LD, qst, lane);     // S^T = K Q^T
            atc_mma_abt<HD, LD>(dp, vs + warp * 16 * LD, dost, lane);   // dP^T = V dO^T
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int col = 8 * j + 2 * t + e % 2, tq = q0 + col, u = wk0 + g + (e / 2) * 8;
                    float p = tq < T && u <= tq ? expf(s[j][e] * scale - lses[stage * ATCB_BQ + col]) : 0.0f;
                    s[j][e] = p;                                               // P^T
                    dp[j][e] = p * (dp[j][e] - Ds[stage * ATCB_BQ + col]);     // dS^T
                }
            uint32_t pa[2][4], dsa[2][4];
            atc_accumulator_to_a(pa, s);
            atc_accumulator_to_a(dsa, dp);
            atc_mma_ab<HD, LD>(dva, pa, dost, lane);    // dV += P^T dO
            atc_mma_ab<HD, LD>(dka, dsa, qst, lane);    // dK += dS^T Q
        }
        __syncthreads();   // every warp is done with this stage before the tile after next overwrites it
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int u = wk0 + g + 8 * r;
        if (u >= T) continue;
        size_t off = (size_t)u * KD + (size_t)kvh * HD;
#pragma unroll
        for (int i = 0; i < HD / 8; i++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                dk[off + i * 8 + 2 * t + e] = round_bf16(dka[i][2 * r + e] * scale);
                dv[off + i * 8 + 2 * t + e] = round_bf16(dva[i][2 * r + e]);
            }
    }
}

template <int HD>
__global__ void __launch_bounds__(ATC_WARPS * WARP_SIZE)
attention_backward_dq_tc_kernel(floatX *dq, const float *D, const floatX *dout, const float *lse, const floatX *q,
                                const floatX *k, const floatX *v, int T, int NQ, int NKV, float scale) {
    // dq dout q (T,NQ,HD), k v (T,NKV,HD), lse D (T,NQ)
    constexpr int LD = HD + ATC_PAD, CH = HD / 8;
    CU_EXTERN_SHARED(float4, atcq_smem);
    floatX *qs = reinterpret_cast<floatX *>(atcq_smem);   // (BQ, LD)
    floatX *dos = qs + ATCB_DQ_BQ * LD;                   // (BQ, LD)
    floatX *ks = dos + ATCB_DQ_BQ * LD;                   // (2, BK, LD) two stages
    floatX *vs = ks + 2 * ATCB_DQ_BK * LD;                // (2, BK, LD)
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, g = lane / 4, t = lane % 4;
    int q0 = (gridDim.x - 1 - blockIdx.x) * ATCB_DQ_BQ, h = blockIdx.y, kvh = h / (NQ / NKV);
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD;
    int num_keys = min(q0 + ATCB_DQ_BQ, T), ntiles = (num_keys + ATCB_DQ_BK - 1) / ATCB_DQ_BK;

    for (int c = threadIdx.x; c < ATCB_DQ_BQ * CH; c += blockDim.x) {   // rows past T: zeros
        int r = c / CH, d = c % CH * 8;
        bool ok = q0 + r < T;
        size_t off = (size_t)(q0 + r) * QD + (size_t)h * HD + d;
        cp_async_zfill<16>(&qs[r * LD + d], ok ? q + off : q, ok ? 16 : 0);
        cp_async_zfill<16>(&dos[r * LD + d], ok ? dout + off : dout, ok ? 16 : 0);
    }
    auto load_kv = [&](int stage, int kt0) {
        for (int c = threadIdx.x; c < ATCB_DQ_BK * CH; c += blockDim.x) {
            int j = c / CH, d = c % CH * 8;
            bool ok = kt0 + j < num_keys;
            size_t off = (size_t)(kt0 + j) * KD + (size_t)kvh * HD + d;
            cp_async_zfill<16>(&ks[(stage * ATCB_DQ_BK + j) * LD + d], ok ? k + off : k, ok ? 16 : 0);
            cp_async_zfill<16>(&vs[(stage * ATCB_DQ_BK + j) * LD + d], ok ? v + off : v, ok ? 16 : 0);
        }
    };
    load_kv(0, 0);
    cp_async_commit();   // group 0: Q, dO and the first K, V tile

    int row0 = q0 + warp * 16 + g, warp_last = q0 + warp * 16 + 15;
    float lse_r[2], D_r[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = row0 + 8 * r;
        lse_r[r] = row < T ? lse[(size_t)row * NQ + h] : 0.0f;
        D_r[r] = row < T ? D[(size_t)row * NQ + h] : 0.0f;
    }
    float dqa[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++) dqa[i][0] = dqa[i][1] = dqa[i][2] = dqa[i][3] = 0.0f;
    for (int kt = 0; kt < ntiles; kt++) {
        if (kt + 1 < ntiles) load_kv((kt + 1) & 1, (kt + 1) * ATCB_DQ_BK);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        int kt0 = kt * ATCB_DQ_BK;
        const floatX *kst = ks + (kt & 1) * ATCB_DQ_BK * LD, *vst = vs + (kt & 1) * ATCB_DQ_BK * LD;
        if (kt0 <= warp_last) {   // warp-uniform: a tile wholly in the warp's future is skipped
            float s[4][4], dp[4][4];
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
            atc_mma_abt<HD, LD>(s, qs + warp * 16 * LD, kst, lane);     // S = Q K^T
            atc_mma_abt<HD, LD>(dp, dos + warp * 16 * LD, vst, lane);   // dP = dO V^T
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = e / 2, u = kt0 + 8 * j + 2 * t + e % 2, row = row0 + 8 * r;
                    float p = row < T && u <= row ? expf(s[j][e] * scale - lse_r[r]) : 0.0f;
                    dp[j][e] = p * (dp[j][e] - D_r[r]);   // dS
                }
            uint32_t dsa[2][4];
            atc_accumulator_to_a(dsa, dp);
            atc_mma_ab<HD, LD>(dqa, dsa, kst, lane);   // dQ += dS K
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = row0 + 8 * r;
        if (row >= T) continue;
        floatX *dqr = dq + (size_t)row * QD + (size_t)h * HD;
#pragma unroll
        for (int i = 0; i < HD / 8; i++) {
            dqr[i * 8 + 2 * t] = round_bf16(dqa[i][2 * r] * scale);
            dqr[i * 8 + 2 * t + 1] = round_bf16(dqa[i][2 * r + 1] * scale);
        }
    }
}

static size_t attention_backward_dkdv_tc_smem_bytes(int HD) {
    return (size_t)(2 * ATCB_BKV + 4 * ATCB_BQ) * (HD + ATC_PAD) * sizeof(floatX) + 4 * ATCB_BQ * sizeof(float);
}
static size_t attention_backward_dq_tc_smem_bytes(int HD) {
    return (size_t)(2 * ATCB_DQ_BQ + 4 * ATCB_DQ_BK) * (HD + ATC_PAD) * sizeof(floatX);
}

// attention_backward() on tensor cores: the same contract, HD 64 or 128.
static void attention_backward_tc(floatX *dq, floatX *dk, floatX *dv, float *scratch, const floatX *dout, const floatX *out,
                                  const float *lse, const floatX *q, const floatX *k, const floatX *v,
                                  int T, int NQ, int NKV, int HD, cudaStream_t stream) {
    if (HD != 64 && HD != 128) die("attention_backward_tc: head_dim %d is not supported (64 or 128)", HD);
    if (NQ % NKV != 0) die("attention_backward_tc: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    if (NQ > 65535) die("attention_backward_tc: %d query heads exceed the grid's y limit", NQ);
    if (T <= 0) return;
    float scale = 1.0f / sqrtf((float)HD), *D = scratch;
    attention_backward_D(D, dout, out, T, NQ, HD, stream);

    typedef void (*DkdvKernel)(floatX *, floatX *, const float *, const floatX *, const float *, const floatX *,
                               const floatX *, const floatX *, int, int, int, float);
    DkdvKernel attention_backward_dkdv_tc_kernel_hd =
        HD == 64 ? attention_backward_dkdv_tc_kernel<64> : attention_backward_dkdv_tc_kernel<128>;
    size_t smem = attention_backward_dkdv_tc_smem_bytes(HD);
    cudaCheck(cudaFuncSetAttribute(attention_backward_dkdv_tc_kernel_hd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid_kv((unsigned)((T + ATCB_BKV - 1) / ATCB_BKV), (unsigned)NKV);
    CU_LAUNCH(attention_backward_dkdv_tc_kernel_hd, grid_kv, ATC_WARPS * WARP_SIZE, smem, stream)(dk, dv, D, dout, lse, q, k, v, T, NQ, NKV, scale);
    cudaCheck(cudaGetLastError());

    typedef void (*DqKernel)(floatX *, const float *, const floatX *, const float *, const floatX *, const floatX *,
                             const floatX *, int, int, int, float);
    DqKernel attention_backward_dq_tc_kernel_hd = HD == 64 ? attention_backward_dq_tc_kernel<64> : attention_backward_dq_tc_kernel<128>;
    smem = attention_backward_dq_tc_smem_bytes(HD);
    cudaCheck(cudaFuncSetAttribute(attention_backward_dq_tc_kernel_hd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid_q((unsigned)((T + ATCB_DQ_BQ - 1) / ATCB_DQ_BQ), (unsigned)NQ);
    CU_LAUNCH(attention_backward_dq_tc_kernel_hd, grid_q, ATC_WARPS * WARP_SIZE, smem, stream)(dq, D, dout, lse, q, k, v, T, NQ, NKV, scale);
    cudaCheck(cudaGetLastError());
}

// dq (T,NQ,HD), dk dv (T,NKV,HD) bf16, WRITTEN (not accumulated: they are per-step activation gradients);
// dout out q (T,NQ,HD), k v (T,NKV,HD) bf16, lse (T,NQ) fp32 from attention_forward; one sequence, positions 0..T-1.
// scratch: at least attention_backward_scratch_floats(T, NQ) floats of device memory (D = rowsum(dout*out)).
static void attention_backward_cuda_cores(floatX *dq, floatX *dk, floatX *dv, float *scratch, const floatX *dout,
                                          const floatX *out, const float *lse, const floatX *q, const floatX *k,
                                          const floatX *v, int T, int NQ, int NKV, int HD, cudaStream_t stream) {
    if (HD > ATT_MAX_HD || HD % 2 != 0) die("attention_backward: head_dim %d is not supported (even, at most %d)", HD, ATT_MAX_HD);
    if (NQ % NKV != 0) die("attention_backward: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    if (NQ > 65535) die("attention_backward: %d query heads exceed the grid's y limit", NQ);
    if (T <= 0) return;
    float scale = 1.0f / sqrtf((float)HD), *D = scratch;
    int block = ATT_WARPS * WARP_SIZE;
    attention_backward_D(D, dout, out, T, NQ, HD, stream);

    size_t smem = attention_backward_dkdv_smem_bytes(HD);
    cudaCheck(cudaFuncSetAttribute(attention_backward_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid_kv((unsigned)((T + ATTB_BKV - 1) / ATTB_BKV), (unsigned)NKV);
    CU_LAUNCH(attention_backward_dkdv_kernel, grid_kv, block, smem, stream)(dk, dv, D, dout, lse, q, k, v, T, NQ, NKV, HD, scale);
    cudaCheck(cudaGetLastError());

    smem = attention_backward_dq_smem_bytes(HD);
    cudaCheck(cudaFuncSetAttribute(attention_backward_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid_q((unsigned)((T + ATT_BQ - 1) / ATT_BQ), (unsigned)NQ);
    CU_LAUNCH(attention_backward_dq_kernel, grid_q, block, smem, stream)(dq, D, dout, lse, q, k, v, T, NQ, NKV, HD, scale);
    cudaCheck(cudaGetLastError());
}

// The programs' entry point, chosen as attention_forward() chooses.
static void attention_backward(floatX *dq, floatX *dk, floatX *dv, float *scratch, const floatX *dout, const floatX *out,
                               const float *lse, const floatX *q, const floatX *k, const floatX *v,
                               int T, int NQ, int NKV, int HD, cudaStream_t stream) {
    if (attention_tensor_cores && (HD == 64 || HD == 128)) attention_backward_tc(dq, dk, dv, scratch, dout, out, lse, q, k, v, T, NQ, NKV, HD, stream);
    else attention_backward_cuda_cores(dq, dk, dv, scratch, dout, out, lse, q, k, v, T, NQ, NKV, HD, stream);
}

// Decoding: one new query token per head against the cached keys 0..pos (itself
// included, at row pos). The position is read from device memory, not passed as
// an argument, so that one captured CUDA graph of the decode step (gpu_decode())
// replays at every position: a graph freezes its kernels' arguments. A single
// query row would leave 3 of attention_forward_kernel's 4 warps idle, so here a
// block takes one query head and its DEC_WARPS warps split the keys: warp w walks
// key tiles w, w + DEC_WARPS, ... with the same online softmax (lane j scores key
// j of the tile), then the warps' (max, sum, output) triples are merged in shared
// memory, each rescaled to the common max. This is the fallback for head dims
// flash-decoding (attention_decode_flash() below, keys split across blocks) does
// not take.
#define DEC_WARPS 8

__global__ void __launch_bounds__(DEC_WARPS * WARP_SIZE)
attention_decode_kernel(floatX *out, const floatX *q, const floatX *k, const floatX *v, const int *pos,
                        int NQ, int NKV, int HD, float scale) {
    // out q (NQ,HD), k v (>= ntok,NKV,HD), pos (1,): the new token's position, so ntok = *pos + 1 keys
    CU_EXTERN_SHARED(float, smem);
    float *qs = smem;                      // (HD,)
    float *ps = qs + HD;                   // (WARPS, 32) one tile's probabilities, per warp
    float *warp_m = ps + DEC_WARPS * WARP_SIZE, *warp_l = warp_m + DEC_WARPS;   // (WARPS,) each
    float *warp_acc = warp_l + DEC_WARPS;  // (WARPS, HD)
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int h = blockIdx.x, kvh = h / (NQ / NKV), ntok = *pos + 1;
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

// out (NQ,HD) = attention of one new token's queries q (NQ,HD) over keys/values
// 0..*pos of the cache (k, v: (max, NKV, HD), the new token's at row *pos; pos
// in device memory).
static void attention_decode(floatX *out, const floatX *q, const floatX *k, const floatX *v, const int *pos, int NQ, int NKV, int HD, cudaStream_t stream) {
    if (HD > ATT_MAX_HD || HD % 2 != 0) die("attention_decode: head_dim %d is not supported (even, at most %d)", HD, ATT_MAX_HD);
    if (NQ % NKV != 0) die("attention_decode: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    size_t smem = (size_t)(HD + DEC_WARPS * WARP_SIZE + 2 * DEC_WARPS + DEC_WARPS * HD) * sizeof(float);
    CU_LAUNCH(attention_decode_kernel, NQ, DEC_WARPS * WARP_SIZE, smem, stream)(out, q, k, v, pos, NQ, NKV, HD, 1.0f / sqrtf((float)HD));
    cudaCheck(cudaGetLastError());
}

// One sequence of a batched decode step (gpu_decode_batch()), as the batched
// kernels below find it in device memory. Each sequence's cache is its own
// allocation, so one launch for all of them needs their addresses in an array
// on the device (uploaded with the positions); the layer is an offset the
// kernels add, the same for every sequence (all caches have one capacity).
typedef struct {
    floatX *k, *v;     // (L, max, NKV, HD) the sequence's keys after RoPE, values
    float *scratch;    // its flash-decoding splits (attention_decode_scratch_floats(max, NQ, HD) floats)
} DecodeSeq;

// The new token's rows into a layer's cache: k_cache, v_cache (max, NKV, HD)
// get k, v (KD = NKV * HD each, k after RoPE) at row *pos, the position read from
// device memory as the kernels above read it. s1.c's twin: the append loop of
// qwen2_decode_step() (column pos of its transposed cache).
__device__ __forceinline__ void kv_cache_append_row(floatX *k_cache, floatX *v_cache, const floatX *k, const floatX *v,
                                                    size_t row, int KD) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < KD; i += gridDim.x * blockDim.x) {
        k_cache[row + i] = k[i];
        v_cache[row + i] = v[i];
    }
}

__global__ void __launch_bounds__(256) kv_cache_append_kernel(floatX *k_cache, floatX *v_cache, const floatX *k,
                                                              const floatX *v, const int *pos, int KD) {
    size_t row = (size_t)*pos * KD;
    kv_cache_append_row(k_cache, v_cache, k, v, row, KD);
}

// The same for B sequences in one launch, block row y = sequence n: row n of k, v (B, KD) into layer `layer`
// (an element offset) of seqs[n]'s cache at row pos[n]. s1.c's twin: that append loop once per sequence.
__global__ void __launch_bounds__(256) kv_cache_append_seqs_kernel(const DecodeSeq *seqs, size_t layer, const floatX *k,
                                                                   const floatX *v, const int *pos, int KD) {
    int n = blockIdx.y;
    DecodeSeq s = seqs[n];
    kv_cache_append_row(s.k + layer, s.v + layer, k + (size_t)n * KD, v + (size_t)n * KD, (size_t)pos[n] * KD, KD);
}

static void kv_cache_append(floatX *k_cache, floatX *v_cache, const floatX *k, const floatX *v, const int *pos, int KD,
                            cudaStream_t stream) {
    CU_LAUNCH(kv_cache_append_kernel, grid_for((size_t)KD, 256), 256, 0, stream)(k_cache, v_cache, k, v, pos, KD);
    cudaCheck(cudaGetLastError());
}

// seqs, pos: (B,) in device memory
static void kv_cache_append_seqs(const DecodeSeq *seqs, size_t layer, const floatX *k, const floatX *v, const int *pos, int B,
                                 int KD, cudaStream_t stream) {
    if (B <= 0 || B > 65535) die("kv_cache_append_seqs: %d sequences, outside the grid's y range 1..65535", B);
    dim3 grid((unsigned)grid_for((size_t)KD, 256), (unsigned)B);
    CU_LAUNCH(kv_cache_append_seqs_kernel, grid, 256, 0, stream)(seqs, layer, k, v, pos, KD);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// Flash-decoding: one new token over a long cache, split across blocks. The
// kernel above gives each query head one block, so a 40-head model runs 40
// blocks on 132 SMs and reads each key row with 2-byte loads at a 2 KB stride.
// Here the cache is cut into splits of FDEC_KEYS keys; block (split, KV head)
// scores its keys for all G query heads of the group (so K and V are read once
// per group, not once per head), lanes over the head dim with one 16-byte load
// (8 bf16) each: a key row is HD/8 lanes, and a warp scores 32/(HD/8) keys at
// once (2 at HD 128, 4 at HD 64), each such lane group a "stream" with its own
// online softmax (m, l, o) per head. The block merges its streams in shared
// memory and writes the split's (o unnormalised, m, l) per head to scratch;
// attention_decode_combine_kernel merges the splits in order. The split size is
// fixed, not tuned to the GPU, so the bits do not depend on the card. The grid
// covers the cache's capacity (a graph cannot resize it per token): a block
// whose split starts past the current length *pos + 1 exits at once, and the
// combine reads only the splits that length has, so the bits are those of a
// grid sized to the length. All fp32:
// the bound of the kernel above (u|ref| + 1e-5 max|v|) holds.
// Head dims 64 and 128 (every Qwen2.5 size) and G <= 8; attention_decode_flash()
// falls back to the kernel above otherwise.
// Batched decoding (sample --batch) runs the same block code for B sequences in
// one launch of each kernel (attention_decode_flash_seqs()): a grid dimension
// more for the sequence, each with its own length, cache and scratch, found
// through a DecodeSeq array in device memory.
#define FDEC_KEYS 256   // keys per split
#define FDEC_WARPS 4
#define FDEC_MAX_G 8    // query heads per KV head the registers hold

__host__ __device__ inline int attention_decode_splits(int ntok) { return (ntok + FDEC_KEYS - 1) / FDEC_KEYS; }
// floats of scratch attention_decode_flash() needs for caches of up to max_ntok tokens
static inline size_t attention_decode_scratch_floats(int max_ntok, int NQ, int HD) {
    return (size_t)attention_decode_splits(max_ntok) * NQ * (HD + 2);
}

// Block (split blockIdx.x, KV head blockIdx.y) of one sequence's split kernel, shared by the one-sequence
// kernel and the batched one (the same code, so the same bits per sequence).
template <int HD>
__device__ __forceinline__ void attention_decode_split_block(float *part, const floatX *q, const floatX *k, const floatX *v,
                                                             int ntok, int NQ, int NKV, float scale) {
    // part (splits, NQ, HD + 2): per split and query head o (HD,), m, l; q (NQ,HD), k v (>= ntok,NKV,HD)
    constexpr int LPK = HD / 8, KPW = WARP_SIZE / LPK, STREAMS = FDEC_WARPS * KPW;
    CU_EXTERN_SHARED(float, fdec_smem);   // (STREAMS, G, HD + 2): each stream's o, m, l
    int u0 = blockIdx.x * FDEC_KEYS;
    if (u0 >= ntok) return;   // a split past the current length: the whole block leaves, before any barrier
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int sub = lane / LPK, d0 = (lane % LPK) * 8, stream = warp * KPW + sub;
    int G = NQ / NKV, kvh = blockIdx.y, u1 = min(u0 + FDEC_KEYS, ntok);
    size_t KD = (size_t)NKV * HD;
    float qr[FDEC_MAX_G][8], o[FDEC_MAX_G][8], m[FDEC_MAX_G], l[FDEC_MAX_G];
#pragma unroll
    for (int g = 0; g < FDEC_MAX_G; g++) {
        if (g < G) bf16x8_unpack(cu_ld(reinterpret_cast<const uint4 *>(q + (size_t)(kvh * G + g) * HD + d0)), qr[g]);
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) o[g][i] = 0.0f;
    }
    // the warp's key groups in step (the same trip count for every lane: the shuffles need the whole warp)
    for (int base = u0 + warp * KPW; base < u1; base += STREAMS) {
        int u = base + sub;
        bool ok = u < u1;
        float kf[8], vf[8];
        if (ok) {
            bf16x8_unpack(cu_ld(reinterpret_cast<const uint4 *>(k + (size_t)u * KD + (size_t)kvh * HD + d0)), kf);
            bf16x8_unpack(cu_ld(reinterpret_cast<const uint4 *>(v + (size_t)u * KD + (size_t)kvh * HD + d0)), vf);
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) kf[i] = vf[i] = 0.0f;
        }
#pragma unroll
        for (int g = 0; g < FDEC_MAX_G; g++) {
            if (g >= G) break;   // uniform across the warp
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) dot += qr[g][i] * kf[i];
#pragma unroll
            for (int off = LPK / 2; off >= 1; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);   // the key row's lanes
            if (ok) {
                float s = dot * scale, m_new = fmaxf(m[g], s), c = expf(m[g] - m_new), p = expf(s - m_new);
                l[g] = l[g] * c + p;
#pragma unroll
                for (int i = 0; i < 8; i++) o[g][i] = o[g][i] * c + p * vf[i];
                m[g] = m_new;
            }
        }
    }
#pragma unroll
    for (int g = 0; g < FDEC_MAX_G; g++) {   // unrolled: o, m, l stay in registers (indexed by constants)
        if (g >= G) break;
        float *row = fdec_smem + ((size_t)stream * G + g) * (HD + 2);
#pragma unroll
        for (int i = 0; i < 8; i++) row[d0 + i] = o[g][i];
        if (d0 == 0) { row[HD] = m[g]; row[HD + 1] = l[g]; }
    }
    __syncthreads();
    // merge the streams in order; a stream that saw no key has m = -inf and weighs exp(-inf) = 0
    for (int t = threadIdx.x; t < G * HD; t += blockDim.x) {
        int g = t / HD, d = t % HD;
        float mx = -INFINITY;   // finite: stream 0 scored key u0
        for (int st = 0; st < STREAMS; st++) mx = fmaxf(mx, fdec_smem[((size_t)st * G + g) * (HD + 2) + HD]);
        float num = 0.0f, den = 0.0f;
        for (int st = 0; st < STREAMS; st++) {
            const float *row = fdec_smem + ((size_t)st * G + g) * (HD + 2);
            float w = expf(row[HD] - mx);
            num += w * row[d];
            den += w * row[HD + 1];
        }
        float *out = part + ((size_t)blockIdx.x * NQ + (size_t)kvh * G + g) * (HD + 2);
        out[d] = num;
        if (d == 0) { out[HD] = mx; out[HD + 1] = den; }
    }
}

// pos (1,): the new token's position, so *pos + 1 keys; grid (splits, NKV)
template <int HD>
__global__ void __launch_bounds__(FDEC_WARPS * WARP_SIZE)
attention_decode_split_kernel(float *part, const floatX *q, const floatX *k, const floatX *v, const int *pos, int NQ, int NKV,
                              float scale) {
    attention_decode_split_block<HD>(part, q, k, v, *pos + 1, NQ, NKV, scale);
}

// B sequences in one launch, grid (splits of the longest, NKV, B): sequence n = blockIdx.z, its query row n
// of q (B, NQ, HD) at position pos[n] over layer `layer` (an element offset) of seqs[n]'s cache, its splits
// to seqs[n]'s scratch. A split past the sequence's own length leaves at once, as in a graph's capacity grid.
template <int HD>
__global__ void __launch_bounds__(FDEC_WARPS * WARP_SIZE)
attention_decode_split_seqs_kernel(const DecodeSeq *seqs, size_t layer, const floatX *q, const int *pos, int NQ, int NKV,
                                   float scale) {
    int n = blockIdx.z;
    DecodeSeq s = seqs[n];
    attention_decode_split_block<HD>(s.scratch, q + (size_t)n * NQ * HD, s.k + layer, s.v + layer, pos[n] + 1, NQ, NKV, scale);
}

// out (NQ,HD) = the splits of part that ntok keys fill, merged in order, normalised, rounded to bf16 once;
// head h = blockIdx.x
__device__ __forceinline__ void attention_decode_combine_head(floatX *out, const float *part, int ntok, int NQ, int HD) {
    int h = blockIdx.x, splits = attention_decode_splits(ntok);
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float mx = -INFINITY;
        for (int s = 0; s < splits; s++) mx = fmaxf(mx, part[((size_t)s * NQ + h) * (HD + 2) + HD]);
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < splits; s++) {
            const float *row = part + ((size_t)s * NQ + h) * (HD + 2);
            float w = expf(row[HD] - mx);
            num += w * row[d];
            den += w * row[HD + 1];
        }
        out[(size_t)h * HD + d] = round_bf16(num / den);
    }
}

// pos (1,): *pos + 1 keys; grid (NQ,)
__global__ void __launch_bounds__(ATT_MAX_HD) attention_decode_combine_kernel(floatX *out, const float *part, const int *pos, int NQ, int HD) {
    attention_decode_combine_head(out, part, *pos + 1, NQ, HD);
}

// B sequences, grid (NQ, B): sequence n = blockIdx.y, its row n of out (B, NQ, HD) from seqs[n]'s scratch
__global__ void __launch_bounds__(ATT_MAX_HD) attention_decode_combine_seqs_kernel(floatX *out, const DecodeSeq *seqs,
                                                                                   const int *pos, int NQ, int HD) {
    int n = blockIdx.y;
    attention_decode_combine_head(out + (size_t)n * NQ * HD, seqs[n].scratch, pos[n] + 1, NQ, HD);
}

// Whether flash-decoding takes these heads (else attention_decode() runs), and its split kernel's shared memory.
static bool attention_decode_flash_heads(int NQ, int NKV, int HD) {
    if (NQ % NKV != 0) die("attention_decode: %d query heads are not a multiple of %d KV heads", NQ, NKV);
    if (NKV > 65535) die("attention_decode: %d KV heads exceed the grid's y limit", NKV);
    return (HD == 64 || HD == 128) && NQ / NKV <= FDEC_MAX_G;
}
static size_t attention_decode_split_smem(int NQ, int NKV, int HD) {
    return (size_t)FDEC_WARPS * (WARP_SIZE / (HD / 8)) * (NQ / NKV) * (HD + 2) * sizeof(float);
}

// attention_decode()'s contract, split across blocks, for a cache of max_ntok
// rows (*pos < max_ntok). scratch: at least attention_decode_scratch_floats(max_ntok,
// NQ, HD) floats of device memory; q, k and v 16-byte aligned (as cudaMalloc'd
// buffers and HD-multiple offsets are).
static void attention_decode_flash(floatX *out, float *scratch, const floatX *q, const floatX *k, const floatX *v, const int *pos,
                                   int max_ntok, int NQ, int NKV, int HD, cudaStream_t stream) {
    if (!attention_decode_flash_heads(NQ, NKV, HD) || !is_aligned16(q) || !is_aligned16(k) || !is_aligned16(v)) {
        attention_decode(out, q, k, v, pos, NQ, NKV, HD, stream);
        return;
    }
    if (max_ntok <= 0) die("attention_decode: a cache without rows");
    int splits = attention_decode_splits(max_ntok);
    float scale = 1.0f / sqrtf((float)HD);
    dim3 grid((unsigned)splits, (unsigned)NKV);
    void (*attention_decode_split_kernel_hd)(float *, const floatX *, const floatX *, const floatX *, const int *, int, int, float) =
        HD == 64 ? attention_decode_split_kernel<64> : attention_decode_split_kernel<128>;
    CU_LAUNCH(attention_decode_split_kernel_hd, grid, FDEC_WARPS * WARP_SIZE, attention_decode_split_smem(NQ, NKV, HD), stream)(
        scratch, q, k, v, pos, NQ, NKV, scale);
    cudaCheck(cudaGetLastError());
    CU_LAUNCH(attention_decode_combine_kernel, NQ, HD, 0, stream)(out, scratch, pos, NQ, HD);
    cudaCheck(cudaGetLastError());
}

// attention_decode_flash() for B sequences decoding together, one launch of each kernel whatever B: row n of
// q and out (B, NQ, HD) is sequence n's new token at position pos[n], over layer `layer` (an element offset)
// of seqs[n]'s cache, with seqs[n]'s scratch. seqs and pos: (B,) in device memory; seqs_host: the same array
// in host memory. max_ntok >= every pos[n] + 1: the split grid covers it and a sequence's blocks past its own
// length leave, so each sequence gets the bits attention_decode_flash() gives it alone on a grid of its
// length. s1.c's twin: attention_row() of qwen2_decode_step(), once per sequence.
// Heads flash-decoding does not take run attention_decode() once per sequence (B launches): no Qwen2.5 size
// has them (head dim 64 or 128, G <= 7), only the tests' small models.
static void attention_decode_flash_seqs(floatX *out, const DecodeSeq *seqs, const DecodeSeq *seqs_host, size_t layer,
                                        const floatX *q, const int *pos, int max_ntok, int B, int NQ, int NKV, int HD,
                                        cudaStream_t stream) {
    if (B <= 0 || B > 65535) die("attention_decode_flash_seqs: %d sequences, outside the grid's range 1..65535", B);
    bool aligned = is_aligned16(q);
    for (int n = 0; n < B; n++) aligned = aligned && is_aligned16(seqs_host[n].k + layer) && is_aligned16(seqs_host[n].v + layer);
    if (!attention_decode_flash_heads(NQ, NKV, HD) || !aligned) {
        size_t QD = (size_t)NQ * HD;
        for (int n = 0; n < B; n++)
            attention_decode(out + n * QD, q + n * QD, seqs_host[n].k + layer, seqs_host[n].v + layer, pos + n, NQ, NKV, HD, stream);
        return;
    }
    if (max_ntok <= 0) die("attention_decode_flash_seqs: caches without rows");
    dim3 grid((unsigned)attention_decode_splits(max_ntok), (unsigned)NKV, (unsigned)B);
    void (*attention_decode_split_seqs_kernel_hd)(const DecodeSeq *, size_t, const floatX *, const int *, int, int, float) =
        HD == 64 ? attention_decode_split_seqs_kernel<64> : attention_decode_split_seqs_kernel<128>;
    CU_LAUNCH(attention_decode_split_seqs_kernel_hd, grid, FDEC_WARPS * WARP_SIZE, attention_decode_split_smem(NQ, NKV, HD), stream)(
        seqs, layer, q, pos, NQ, NKV, 1.0f / sqrtf((float)HD));
    cudaCheck(cudaGetLastError());
    CU_LAUNCH(attention_decode_combine_seqs_kernel, dim3((unsigned)NQ, (unsigned)B), HD, 0, stream)(out, seqs, pos, NQ, HD);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_ATTENTION_CUH
