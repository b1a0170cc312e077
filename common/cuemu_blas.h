/*
 * cuemu_blas.h: the cuBLAS subset the project calls, on the CPU.
 *
 * Included by cuemu.h in the emulated build (never under nvcc, where the real
 * cublas_v2.h and libcublas are used). These are definitions of the functions
 * the toolkit's cublas_v2.h declares, so the compiler checks every call and
 * every signature against the real API; no CUDA library is linked.
 *
 * Semantics (column-major, as cuBLAS): C = alpha * op(A) * op(B) + beta * C with
 * op(A)(i,p) = A[i + p*lda] (CUBLAS_OP_N) or A[p + i*lda] (CUBLAS_OP_T).
 * Matrices are fp32 or bf16, the compute type is fp32 (alpha and beta are host
 * floats), and with beta == 0 C is never read (so NaN in an uninitialised
 * output does not leak). Strides of the batched calls are in elements.
 *
 * Sums are accumulated in fp32, as the GPU's tensor cores do, in a blocked
 * order: the k products of a dot product in blocks of GEMM_K_BLOCK (a tile's
 * depth: an mma.sync chain), each block summed in fp32 and added into the fp32
 * accumulator. A GPU's cuBLAS may pick other tiles or split k across blocks, so
 * its sums are in another order, with errors of the same size (n e per term,
 * e = 2^-24): a test bound that holds here, derived for fp32 sums, holds there.
 * (It used to be double, which hid fp32's accumulation error from the tests.)
 */
#ifndef S1C_CUEMU_BLAS_H
#define S1C_CUEMU_BLAS_H

#include <cublas_v2.h>

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math_mode;
};

namespace cuemu {

#define GEMM_K_BLOCK 32

inline float load_element(const void *base, cudaDataType type, size_t i) {
    if (type == CUDA_R_32F) return static_cast<const float *>(base)[i];
    return __bfloat162float(static_cast<const __nv_bfloat16 *>(base)[i]);
}

// One batch of the GEMM: the shared core of all four entry points.
// op(A) is m x k, op(B) is k x n, C is m x n.
inline void gemm_one(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, float alpha,
                     const void *A, cudaDataType atype, int lda, const void *B, cudaDataType btype, int ldb,
                     float beta, void *C, cudaDataType ctype, int ldc, std::vector<float> &a_rows,
                     std::vector<float> &b_cols) {
    // op(A) as rows and op(B) as columns, so that every dot product runs over contiguous floats
    a_rows.resize((size_t)m * k);
    b_cols.resize((size_t)n * k);
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++)
            a_rows[(size_t)i * k + p] = load_element(A, atype, transa == CUBLAS_OP_N ? i + (size_t)p * lda : p + (size_t)i * lda);
    for (int j = 0; j < n; j++)
        for (int p = 0; p < k; p++)
            b_cols[(size_t)j * k + p] = load_element(B, btype, transb == CUBLAS_OP_N ? p + (size_t)j * ldb : j + (size_t)p * ldb);
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            const float *a = &a_rows[(size_t)i * k], *b = &b_cols[(size_t)j * k];
            float sum = 0.0f;
            for (int p0 = 0; p0 < k; p0 += GEMM_K_BLOCK) {
                float block = 0.0f;
                for (int p = p0; p < k && p < p0 + GEMM_K_BLOCK; p++) block += a[p] * b[p];
                sum += block;
            }
            size_t c = i + (size_t)j * ldc;
            float out = alpha * sum;
            if (beta != 0.0f) out += beta * load_element(C, ctype, c);  // beta == 0: C is not read
            if (ctype == CUDA_R_32F) static_cast<float *>(C)[c] = out;
            else static_cast<__nv_bfloat16 *>(C)[c] = __float2bfloat16(out);
        }
    }
}

inline cublasStatus_t gemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const void *alpha, const void *A, cudaDataType atype, int lda, long long stride_a,
                           const void *B, cudaDataType btype, int ldb, long long stride_b, const void *beta, void *C,
                           cudaDataType ctype, int ldc, long long stride_c, int batch) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    auto op_ok = [](cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; };
    auto type_ok = [](cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF; };
    if (!type_ok(atype) || !type_ok(btype) || !type_ok(ctype)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    // lda etc. must cover the rows of the matrix as stored
    int a_rows = transa == CUBLAS_OP_N ? m : k, b_rows = transb == CUBLAS_OP_N ? k : n;
    if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    // alpha and beta are read now (host pointer mode); the product runs in the handle's stream order
    float a = *static_cast<const float *>(alpha), b = *static_cast<const float *>(beta);
    on_stream(handle->stream, [=] {
        size_t asz = atype == CUDA_R_32F ? 4 : 2, bsz = btype == CUDA_R_32F ? 4 : 2, csz = ctype == CUDA_R_32F ? 4 : 2;
        std::vector<float> a_tmp, b_tmp;
        for (int i = 0; i < batch; i++)
            gemm_one(transa, transb, m, n, k, a, static_cast<const char *>(A) + (size_t)(i * stride_a) * asz, atype,
                     lda, static_cast<const char *>(B) + (size_t)(i * stride_b) * bsz, btype, ldb, b,
                     static_cast<char *>(C) + (size_t)(i * stride_c) * csz, ctype, ldc, a_tmp, b_tmp);
    });
    return CUBLAS_STATUS_SUCCESS;
}

inline bool compute_is_fp32(cublasComputeType_t t) {
    return t == CUBLAS_COMPUTE_32F || t == CUBLAS_COMPUTE_32F_PEDANTIC || t == CUBLAS_COMPUTE_32F_FAST_TF32 ||
           t == CUBLAS_COMPUTE_32F_FAST_16BF || t == CUBLAS_COMPUTE_32F_FAST_16F;
}

}  // namespace cuemu

inline cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
    *handle = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math_mode = mode;  // TF32 and friends would only lose precision; the emulation stays exact
    return CUBLAS_STATUS_SUCCESS;
}
inline const char *cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
inline cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                     int n, int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                     const float *beta, float *C, int ldc) {
    return cuemu::gemm(handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0, beta, C,
                       CUDA_R_32F, ldc, 0, 1);
}
inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                cublasOperation_t transb, int m, int n, int k, const float *alpha,
                                                const float *A, int lda, long long int strideA, const float *B,
                                                int ldb, long long int strideB, const float *beta, float *C, int ldc,
                                                long long int strideC, int batchCount) {
    return cuemu::gemm(handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, strideA, B, CUDA_R_32F, ldb,
                       strideB, beta, C, CUDA_R_32F, ldc, strideC, batchCount);
}
inline cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                   int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                                   const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                                   cudaDataType Ctype, int ldc, cublasComputeType_t computeType, cublasGemmAlgo_t) {
    if (!cuemu::compute_is_fp32(computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;
    return cuemu::gemm(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta, C, Ctype,
                       ldc, 0, 1);
}
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                                 cublasOperation_t transb, int m, int n, int k, const void *alpha,
                                                 const void *A, cudaDataType Atype, int lda, long long int strideA,
                                                 const void *B, cudaDataType Btype, int ldb, long long int strideB,
                                                 const void *beta, void *C, cudaDataType Ctype, int ldc,
                                                 long long int strideC, int batchCount,
                                                 cublasComputeType_t computeType, cublasGemmAlgo_t) {
    if (!cuemu::compute_is_fp32(computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;
    return cuemu::gemm(handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB, beta,
                       C, Ctype, ldc, strideC, batchCount);
}

#endif  // S1C_CUEMU_BLAS_H
