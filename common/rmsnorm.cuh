/*
 * rmsnorm.cuh: RMSNorm (Qwen2RMSNorm) on the GPU. Twin of s1.c's
 * rmsnorm_forward(); tested by tests/emu_kernels.cu.
 */
#ifndef S1C_RMSNORM_CUH
#define S1C_RMSNORM_CUH

#include "common/cuda_common.cuh"

// RMSNorm as Qwen2RMSNorm in bf16: y = x * rsqrt(mean(x^2) + eps) in fp32, cast
// to bf16, THEN multiplied by the weight (HF's order). One warp per row.
// rstd (N,) keeps r for the backward pass (NULL: not kept).
__global__ void rmsnorm_forward_kernel(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    // out (N,C), rstd (N,), inp (N,C), weight (C,)
    int warps = blockDim.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    for (int row = blockIdx.x * warps + threadIdx.x / WARP_SIZE; row < N; row += gridDim.x * warps) {
        const floatX *x = inp + (size_t)row * C;
        float ss = 0.0f;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float xi = __bfloat162float(x[i]);
            ss += xi * xi;
        }
        float r = rsqrtf(warp_sum(ss) / (float)C + eps);
        if (rstd != NULL && lane == 0) rstd[row] = r;
        floatX *o = out + (size_t)row * C;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float y = __bfloat162float(round_bf16(__bfloat162float(x[i]) * r));
            o[i] = round_bf16(__bfloat162float(weight[i]) * y);
        }
    }
}

static void rmsnorm_forward(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    const int block = 256;
    CU_LAUNCH(rmsnorm_forward_kernel, grid_for((size_t)N, block / WARP_SIZE), block, 0, 0)(out, rstd, inp, weight, N, C, eps);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_RMSNORM_CUH
