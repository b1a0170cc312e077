/*
 * matmul.cuh: the linear layers through cuBLAS (bf16 in, fp32 accumulation),
 * their bias kernels and the deterministic column sums (the bias gradient;
 * rmsnorm.cuh shares them). Twins of s1.c's matmul_forward() and
 * matmul_backward(); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu.
 */
#ifndef S1C_MATMUL_CUH
#define S1C_MATMUL_CUH

#include "common/cuda_common.cuh"


// Linear layer y = x W^T + b with W stored (OC, C), as HF checkpoints store it.
// cuBLAS is column-major: the row-major out (N,OC) is the column-major (OC,N)
// matrix W x^T, so A = W read transposed (op T, lda C) and B = x (op N, ldb C).
// The bias is written into out first and the GEMM adds onto it (beta = 1), so
// the fp32 sum is rounded to bf16 once, as torch's addmm does.
__global__ void __launch_bounds__(256) bias_fill_kernel(floatX *out, const floatX *bias, int N, int OC) {
    // out (N,OC) = bias (OC,) in every row
    size_t total = (size_t)N * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias[i % OC];
}

// out (N,OC) = inp (N,C) . weight (OC,C)^T + beta * out, out of type out_type
// (bf16 or fp32), fp32 accumulation. A cuBLAS handle runs its GEMMs on the
// stream it was last given, so each GEMM wrapper gives it `stream` first (a
// host-side setting, no synchronisation).
static void gemm_nt(cublasHandle_t handle, void *out, cudaDataType out_type, const floatX *inp, const floatX *weight,
                    int N, int C, int OC, float beta, cudaStream_t stream) {
    const float alpha = 1.0f;
    cublasCheck(cublasSetStream(handle, stream));
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &alpha, weight, CUDA_R_16BF, C, inp,
                             CUDA_R_16BF, C, &beta, out, out_type, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out (N,OC) = inp (N,C) . weight (OC,C)^T + bias (OC,) [bias may be NULL].
// residual != 0 adds the product onto out instead (the residual stream's
// "h = h + o_proj(...)", rounded once).
static void matmul_forward(cublasHandle_t handle, floatX *out, const floatX *inp, const floatX *weight,
                           const floatX *bias, int N, int C, int OC, int residual, cudaStream_t stream) {
    if (bias != NULL) {
        CU_LAUNCH(bias_fill_kernel, grid_for((size_t)N * OC, 256), 256, 0, stream)(out, bias, N, OC);
        cudaCheck(cudaGetLastError());
    }
    gemm_nt(handle, out, CUDA_R_16BF, inp, weight, N, C, OC, bias != NULL || residual ? 1.0f : 0.0f, stream);
}

// ----------------------------------------------------------------------------
// backward

// out (N,C) = dout (N,OC) . weight (OC,C) + beta * out, out of type out_type
// (bf16 or fp32), fp32 accumulation; dout's rows are ld_dout elements apart
// (OC, or more for a matrix that lives inside a wider buffer: the classifier's
// in-place dlogits). Column-major: the row-major out (N,C) is the column-major
// (C,N) matrix weight^T dout^T. The row-major weight (OC,C) is the
// column-major (C,OC) matrix weight^T, so A = weight as stored (op N, lda C);
// the row-major dout (N,OC) is the column-major (OC,N) matrix dout^T, so
// B = dout as stored (op N, ldb ld_dout); m = C, n = N, k = OC.
static void gemm_nn(cublasHandle_t handle, void *out, cudaDataType out_type, const floatX *dout, int ld_dout,
                    const floatX *weight, int N, int C, int OC, float beta, cudaStream_t stream) {
    const float alpha = 1.0f;
    cublasCheck(cublasSetStream(handle, stream));
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &alpha, weight, CUDA_R_16BF, C, dout,
                             CUDA_R_16BF, ld_dout, &beta, out, out_type, C, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// dweight (OC,C) fp32 += dout (N,OC)^T . inp (N,C), fp32 accumulation, the sum
// rounded once onto the old value (beta = 1); dout's rows are ld_dout apart.
// Column-major: the row-major dweight (OC,C) is the column-major (C,OC) matrix
// inp^T dout. The row-major inp (N,C) is the column-major (C,N) matrix inp^T,
// so A = inp as stored (op N, lda C); the row-major dout (N,OC) is the
// column-major (OC,N) matrix dout^T, read transposed to dout (op T, ldb
// ld_dout); m = C, n = OC, k = N.
static void gemm_tn_accumulate(cublasHandle_t handle, float *dweight, const floatX *dout, int ld_dout,
                               const floatX *inp, int N, int C, int OC, cudaStream_t stream) {
    const float alpha = 1.0f, beta = 1.0f;
    cublasCheck(cublasSetStream(handle, stream));
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &alpha, inp, CUDA_R_16BF, C, dout,
                             CUDA_R_16BF, ld_dout, &beta, dweight, CUDA_R_32F, C, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Deterministic column sums of a (N,C) matrix, in two stages of fixed order,
// no atomics. Stage 1: the rows are cut into column_sum_blocks(N) contiguous
// ranges, one per block; the block's threads take the columns and each sums
// its column over the block's rows in increasing order into partials (blocks,C).
// Stage 2: one thread per column adds the blocks' partials in block order and
// adds that sum onto the output (one rounding, as s1.c's dbias += sum). The
// grid depends on N alone, so every run adds the same numbers in the same
// order: the result is bit-identical run to run. rmsnorm_backward() fuses its
// own stage 1 (the terms are dout*y) and shares the rest.
#define COLUMN_SUM_ROWS_PER_BLOCK 32   // stage 1's rows per block, until the grid reaches MAX_GRID_BLOCKS

static inline int column_sum_blocks(int N) { return grid_for((size_t)N, COLUMN_SUM_ROWS_PER_BLOCK); }

// floats of the partials buffer for a (N,C) column sum
static inline size_t column_sum_scratch_floats(int N, int C) { return (size_t)column_sum_blocks(N) * C; }

// The rows [*begin, *end) of this block in a grid of column_sum_blocks(N) blocks.
__device__ inline void column_sum_rows(int N, int *begin, int *end) {
    int per = (N + (int)gridDim.x - 1) / (int)gridDim.x;
    *begin = min(N, (int)blockIdx.x * per);
    *end = min(N, *begin + per);
}

__global__ void __launch_bounds__(256) column_sum_partials_kernel(float *partials, const floatX *x, int N, int C) {
    // partials (gridDim.x, C), x (N,C)
    int begin, end;
    column_sum_rows(N, &begin, &end);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int n = begin; n < end; n++) s += __bfloat162float(x[(size_t)n * C + c]);
        partials[(size_t)blockIdx.x * C + c] = s;
    }
}

__global__ void __launch_bounds__(256) column_sum_finish_kernel(float *out, const float *partials, int blocks, int C) {
    // out (C,) += sum over b of partials (blocks, C), b in increasing order
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int b = 0; b < blocks; b++) s += cu_ld(&partials[(size_t)b * C + c]);
        cu_st(&out[c], cu_ld(&out[c]) + s);
    }
}

static void column_sum_finish(float *out, const float *partials, int N, int C, cudaStream_t stream) {
    CU_LAUNCH(column_sum_finish_kernel, grid_for((size_t)C, 256), 256, 0, stream)(out, partials, column_sum_blocks(N), C);
    cudaCheck(cudaGetLastError());
}

// out (C,) fp32 += the column sums of x (N,C); scratch: column_sum_scratch_floats(N, C)
static void column_sum(float *out, float *scratch, const floatX *x, int N, int C, cudaStream_t stream) {
    CU_LAUNCH(column_sum_partials_kernel, column_sum_blocks(N), 256, 0, stream)(scratch, x, N, C);
    cudaCheck(cudaGetLastError());
    column_sum_finish(out, scratch, N, C, stream);
}

// floats of scratch matmul_backward() needs (for the bias gradient)
static inline size_t matmul_backward_scratch_floats(int N, int OC) { return column_sum_scratch_floats(N, OC); }

// Backward of out = inp . weight^T + bias, twin of s1.c's matmul_backward(),
// all on cuBLAS but the bias:
//   dinp (N,C) = dout (N,OC) . weight (OC,C)  [+= when accumulate_dinp], of type
//                dinp_type (CUDA_R_16BF: an activation gradient that feeds the
//                next GEMM; CUDA_R_32F); dinp NULL: not wanted
//   dweight (OC,C) fp32 += dout^T . inp       (parameter gradients accumulate)
//   dbias (OC,) fp32 += column sums of dout   (when dbias != NULL; scratch:
//                matmul_backward_scratch_floats(N, OC) floats, else unused)
// dout (N,OC), inp (N,C), weight (OC,C) bf16.
static void matmul_backward(cublasHandle_t handle, void *dinp, cudaDataType dinp_type, int accumulate_dinp,
                            float *dweight, float *dbias, float *scratch, const floatX *dout, const floatX *inp,
                            const floatX *weight, int N, int C, int OC, cudaStream_t stream) {
    if (dinp != NULL) gemm_nn(handle, dinp, dinp_type, dout, OC, weight, N, C, OC, accumulate_dinp ? 1.0f : 0.0f, stream);
    gemm_tn_accumulate(handle, dweight, dout, OC, inp, N, C, OC, stream);
    if (dbias != NULL) column_sum(dbias, scratch, dout, N, OC, stream);
}

#endif // S1C_MATMUL_CUH
