/*
 * classifier.cuh: the LM head and s1's masked cross-entropy, in chunks of
 * rows so the T x V logits never exist. Twin of s1.c's matmul_forward() (the
 * head) + crossentropy_forward(); tested by tests/emu_kernels.cu.
 */
#ifndef S1C_CLASSIFIER_CUH
#define S1C_CLASSIFIER_CUH

#include "common/cuda_common.cuh"
#include "common/matmul.cuh"   // gemm_nt

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

#endif // S1C_CLASSIFIER_CUH
