/*
 * matmul.cuh: the linear layers through cuBLAS (bf16 in, fp32 accumulation)
 * and their bias kernel. Twin of s1.c's matmul_forward(); tested by
 * tests/emu_kernels.cu.
 */
#ifndef S1C_MATMUL_CUH
#define S1C_MATMUL_CUH

#include "common/cuda_common.cuh"


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

#endif // S1C_MATMUL_CUH
