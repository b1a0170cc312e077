/*
 * global_norm.cuh: the global L2 norm of the gradients on the GPU, for
 * gradient clipping. Twin of s1.c's qwen2_grad_norm(); tested by
 * tests/emu_kernels_backward.cu.
 *
 * Deterministic, no atomics, in double as s1.c: each square g*g of a float is
 * exact in double (24 + 24 significant bits < 53), and the double sums lose
 * about n * 2^-53 relative, far below the float the norm is returned as. So
 * this differs from s1.c (which sums in another order) only when the double
 * sums straddle a float rounding boundary: by at most one float ulp.
 */
#ifndef S1C_GLOBAL_NORM_CUH
#define S1C_GLOBAL_NORM_CUH

#include "common/cuda_common.cuh"

// Stage 1 runs a FIXED grid, whatever n is, so the partition of the elements,
// and with it every sum's order, never changes: bit-identical run to run.
#define GLOBAL_NORM_BLOCKS 264    // 2 per SM of an H100/H200
#define GLOBAL_NORM_THREADS 256

// doubles of scratch global_norm() needs: the blocks' partial sums, then the total
#define GLOBAL_NORM_SCRATCH (GLOBAL_NORM_BLOCKS + 1)

// The sum of v over the block, in a fixed order (lanes by xor shuffles, then the
// warps' sums in warp order by thread 0); the result is valid in thread 0.
__device__ inline double block_sum_double(double v) {
    __shared__ double warp_sums[32];
    for (int off = WARP_SIZE / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x % WARP_SIZE == 0) warp_sums[threadIdx.x / WARP_SIZE] = v;
    __syncthreads();
    double total = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < (int)(blockDim.x / WARP_SIZE); w++) total += warp_sums[w];
    return total;
}

// Stage 1: block b sums g[i]^2 over its grid-stride share of i into partials[b].
__global__ void __launch_bounds__(GLOBAL_NORM_THREADS) global_norm_partials_kernel(double *partials, const float *g, size_t n) {
    // partials (gridDim.x,), g (n,)
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += (double)g[i] * (double)g[i];
    double total = block_sum_double(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// Stage 2: one block adds the partials in a fixed order.
__global__ void __launch_bounds__(GLOBAL_NORM_THREADS) global_norm_finish_kernel(double *out, const double *partials, int count) {
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
    double total = block_sum_double(s);
    if (threadIdx.x == 0) *out = total;
}

// *out_device = sum of g[i]^2 over the n floats of g (device), in double.
// scratch: GLOBAL_NORM_BLOCKS doubles of device memory (may be the first part of
// a GLOBAL_NORM_SCRATCH buffer whose last element is out_device).
static void global_norm_squared(double *out_device, const float *g, size_t n, double *scratch, cudaStream_t stream) {
    CU_LAUNCH(global_norm_partials_kernel, GLOBAL_NORM_BLOCKS, GLOBAL_NORM_THREADS, 0, stream)(scratch, g, n);
    cudaCheck(cudaGetLastError());
    CU_LAUNCH(global_norm_finish_kernel, 1, GLOBAL_NORM_THREADS, 0, stream)(out_device, scratch, GLOBAL_NORM_BLOCKS);
    cudaCheck(cudaGetLastError());
}

// The L2 norm of the n floats of g (device), as s1.c's qwen2_grad_norm returns
// it: sqrt in double, then cast to float. Reads the scalar back to the host
// (the clip factor of the AdamW step is computed on the host, as s1.c does).
// scratch: GLOBAL_NORM_SCRATCH doubles of device memory.
static float global_norm(const float *g, size_t n, double *scratch, cudaStream_t stream) {
    double sumsq;
    global_norm_squared(scratch + GLOBAL_NORM_BLOCKS, g, n, scratch, stream);
    copy_to_host(&sumsq, scratch + GLOBAL_NORM_BLOCKS, sizeof(double), stream);
    return (float)sqrt(sumsq);
}

#endif // S1C_GLOBAL_NORM_CUH
