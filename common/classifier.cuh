/*
 * classifier.cuh: the LM head and s1's masked cross-entropy, in chunks of
 * rows so the T x V logits never exist, forward only (lm_head_loss) or fused
 * with the backward pass for training (classifier_forward_backward). Twin of
 * s1.c's matmul_forward() (the head) + crossentropy_forward(), and for
 * training + crossentropy_backward() + matmul_backward() (the head); tested by
 * tests/emu_kernels.cu and tests/emu_kernels_backward.cu.
 */
#ifndef S1C_CLASSIFIER_CUH
#define S1C_CLASSIFIER_CUH

#include "common/cuda_common.cuh"
#include "common/matmul.cuh"   // gemm_nt, gemm_nn, gemm_tn_accumulate

// Weighted cross-entropy of one chunk of rows: losses[n] = weights[n] *
// (logsumexp(logits[n]) - logits[n, targets[n]]), 0 where the weight is 0 (the
// row is not scored and its logits are not read). One block per row: each
// thread keeps an online (max, sum) over its stride of the vocabulary
// (online_max_sum(), one exp per logit), then the block merges the pairs
// (merge_max_sum(): warp shuffles, then the warps' pairs in shared memory).
__device__ inline void merge_max_sum(float *m, float *s, float m2, float s2) {
    if (m2 == -INFINITY) return;   // the other side saw nothing
    float mx = fmaxf(*m, m2);
    *s = *s * expf(*m - mx) + s2 * expf(m2 - mx);
    *m = mx;
}

// One logit x into a thread's (max, sum): merge_max_sum(m, s, x, 1) with its
// factor e^0 = 1 not computed, so one exp per element instead of two (llm.c's
// fused classifier). The same bits: s * e^0 + e^(x - m) = s + e^(x - m) when
// x <= m, and s * e^(m - x) + 1 * e^0 = s * e^(m - x) + 1 when x > m.
__device__ inline void online_max_sum(float *m, float *s, float x) {
    if (x > *m) {
        *s = *s * expf(*m - x) + 1.0f;
        *m = x;
    } else if (x != -INFINITY) {   // e^-inf adds nothing, and -inf - -inf would be NaN
        *s += expf(x - *m);
    }
}

// One element of the loss's gradient, in s1.c's order: d = w * e^(l - lse), then
// d[target] -= w; rounded to bf16.
__device__ inline floatX dlogit(float logit, int i, float lse, float scale, int target) {
    return round_bf16(scale * expf(logit - lse) - (i == target ? scale : 0.0f));
}

// With dlogits != NULL the kernel also writes the loss's gradient, twin of
// s1.c's crossentropy_backward(): dlogits[n] = grad_scale * weights[n] *
// (softmax(logits[n]) - onehot(targets[n])) in bf16, 0 for unscored rows.
// dlogits lives IN PLACE in the logits buffer: the fp32 row n (4V bytes) gets
// its bf16 dlogits in its first 2V bytes, a bf16 matrix with rows 2V elements
// apart. Element i of the bf16 row overwrites (half of) fp32 element i/2 <= i,
// so the block walks the row in chunks of 2*blockDim elements: each thread
// reads its two fp32 values of the chunk into registers, a barrier, then
// writes their bf16 gradients, which land on fp32 elements [k B, (k+1) B) of
// chunk k (B = blockDim): all read before that barrier (chunk <= k). The
// target's logit and the lse are read in the first pass, before any write.
__global__ void __launch_bounds__(256) crossentropy_forward_kernel(float *losses, const float *logits, floatX *dlogits, const uint32_t *targets,
                                            const float *weights, float grad_scale, int N, int V) {
    // losses (N,), logits (N,V) fp32, dlogits (N, 2V) bf16 over the same memory or NULL, targets weights (N,)
    __shared__ float warp_m[32], warp_s[32], row_lse;
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE, warps = blockDim.x / WARP_SIZE;
    for (int row = blockIdx.x; row < N; row += gridDim.x) {
        float w = weights[row];
        floatX *d = dlogits != NULL ? dlogits + (size_t)row * 2 * V : NULL;
        if (w == 0.0f) {   // block-uniform
            if (threadIdx.x == 0) losses[row] = 0.0f;
            if (d != NULL)
                for (int i = threadIdx.x; i < V; i += blockDim.x) d[i] = round_bf16(0.0f);
            continue;
        }
        const float *x = logits + (size_t)row * V;
        float m = -INFINITY, s = 0.0f;
        for (int i = threadIdx.x; i < V; i += blockDim.x) online_max_sum(&m, &s, cu_ld(&x[i]));   // cu_ld: counted by CUEMU_PROFILE (dev/crossentropy.cu v2)
        for (int off = WARP_SIZE / 2; off > 0; off /= 2) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
            merge_max_sum(&m, &s, m2, s2);
        }
        if (lane == 0) { warp_m[warp] = m; warp_s[warp] = s; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int i = 1; i < warps; i++) merge_max_sum(&m, &s, warp_m[i], warp_s[i]);
            row_lse = m + logf(s);
            losses[row] = w * (row_lse - x[targets[row]]);
        }
        __syncthreads();   // row_lse is set, every read of the first pass is done
        if (d != NULL) {
            float lse = row_lse, scale = grad_scale * w;   // s1.c: w = grad_scale * weights[n]
            int target = (int)targets[row];
            for (int base = 0; base < V; base += 2 * blockDim.x) {
                int i0 = base + threadIdx.x, i1 = i0 + blockDim.x;
                float x0 = i0 < V ? x[i0] : 0.0f, x1 = i1 < V ? x[i1] : 0.0f;
                __syncthreads();   // the whole chunk is in registers
                if (i0 < V) d[i0] = dlogit(x0, i0, lse, scale, target);
                if (i1 < V) d[i1] = dlogit(x1, i1, lse, scale, target);
            }
        }
        __syncthreads();   // warp_m, warp_s and row_lse are free for the next row
    }
}

// *out = sum of x[0..n), in one block and a fixed order: deterministic, no atomics.
__global__ void __launch_bounds__(256) sum_kernel(float *out, const float *x, int n) {
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

// The chunked LM head and loss, and for training its backward pass:
//   *loss = sum_n weights[n] * CE(x[n] . weight^T, targets[n])
// Rows go through in chunks of chunk_rows: GEMM the chunk's fp32 logits into
// logits (chunk_rows, V), reduce them to per-token losses (losses (N,) is
// scratch), reuse the buffer. Peak memory is chunk_rows x V floats whatever N
// is. Chunks without a scored row are skipped (s1 masks the prompt): no GEMM.
//
// Training (dx, dweight != NULL): the same kernel turns each chunk's logits
// into bf16 dlogits = grad_scale * weights[n] * (softmax - onehot) in place
// (rows 2V elements apart, see crossentropy_forward_kernel), then
//   dx (rows,H) fp32 = dlogits . weight       (gemm_nn, written)
//   dweight (V,H) fp32 += dlogits^T . x       (gemm_tn_accumulate)
// and dx rows of skipped chunks are zeroed. With tied embeddings the caller
// passes the embedding's gradient as dweight, so the head's gradient adds
// into it. dx and dweight NULL: the forward pass only (lm_head_loss).
// x (N,H), weight (V,H) bf16; targets weights (N,) device, weights_host (N,) host.
static void classifier_forward_backward(Gemm *g, float *loss, float *losses, float *logits, float *dx,
                                        float *dweight, const floatX *x, const floatX *weight, const uint32_t *targets,
                                        const float *weights, const float *weights_host, float grad_scale, int N,
                                        int H, int V, int chunk_rows, cudaStream_t stream) {
    const int block = 256;
    int backward = dx != NULL;
    if (backward != (dweight != NULL)) die("classifier_forward_backward: pass both dx and dweight, or neither");
    for (int n0 = 0; n0 < N; n0 += chunk_rows) {
        int rows = N - n0 < chunk_rows ? N - n0 : chunk_rows;
        int scored = 0;
        for (int n = n0; n < n0 + rows && !scored; n++) scored = weights_host[n] != 0.0f;
        if (!scored) {
            cudaCheck(cudaMemsetAsync(losses + n0, 0, (size_t)rows * sizeof(float), stream));
            if (backward) cudaCheck(cudaMemsetAsync(dx + (size_t)n0 * H, 0, (size_t)rows * H * sizeof(float), stream));
            continue;
        }
        const floatX *xc = x + (size_t)n0 * H;
        gemm_nt(g, logits, CUDA_R_32F, xc, weight, NULL, rows, H, V, 0.0f, stream);
        floatX *dlogits = backward ? (floatX *)logits : NULL;   // (rows, 2V) bf16, in place
        CU_LAUNCH(crossentropy_forward_kernel, grid_for((size_t)rows, 1), block, 0, stream)(
            losses + n0, logits, dlogits, targets + n0, weights + n0, grad_scale, rows, V);
        cudaCheck(cudaGetLastError());
        if (backward) {
            gemm_nn(g, dx + (size_t)n0 * H, CUDA_R_32F, dlogits, 2 * V, weight, rows, H, V, 0.0f, stream);
            gemm_tn_accumulate(g, dweight, dlogits, 2 * V, xc, rows, H, V, stream);
        }
    }
    CU_LAUNCH(sum_kernel, 1, 256, 0, stream)(loss, losses, N);
    cudaCheck(cudaGetLastError());
}

// The forward pass alone: *loss of the chunked head (see above), for evaluation.
static void lm_head_loss(Gemm *g, float *loss, float *losses, float *logits, const floatX *x,
                         const floatX *lm_w, const uint32_t *targets, const float *weights, const float *weights_host,
                         int N, int H, int V, int chunk_rows, cudaStream_t stream) {
    classifier_forward_backward(g, loss, losses, logits, NULL, NULL, x, lm_w, targets, weights, weights_host,
                                1.0f, N, H, V, chunk_rows, stream);
}

#endif // S1C_CLASSIFIER_CUH
