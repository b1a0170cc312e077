/*
 * cuemu_blas.h: the cuBLAS subset the project calls, on the CPU.
 *
 * Included by cuemu.h in the emulated build (never under nvcc, where the real
 * cublas_v2.h and libcublas are used). These are definitions of the functions
 * the toolkit's cublas_v2.h declares, so the compiler checks every call and
 * every signature against the real API; no CUDA library is linked.
 *
 * The cuBLASLt subset (cublasLtMatmul with its descriptors, the DEFAULT and BIAS
 * epilogues) follows in its own section; both share gemm_one().
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
#include <cublasLt.h>

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math_mode;
};

namespace cuemu {

#define GEMM_K_BLOCK 32

// The matrix types of both subsets: fp32 and bf16.
inline bool type_supported(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF; }

inline float load_element(const void *base, cudaDataType type, size_t i) {
    if (type == CUDA_R_32F) return static_cast<const float *>(base)[i];
    return __bfloat162float(static_cast<const __nv_bfloat16 *>(base)[i]);
}

// One batch of the GEMM: the shared core of all the entry points.
// D = alpha op(A) op(B) + beta C + bias, op(A) m x k, op(B) k x n, C and D m x n
// (the classic API passes C as D too), bias (m,) or NULL (cuBLASLt's BIAS
// epilogue: one value per row of D, added in fp32 before D's single rounding).
inline void gemm_one(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, float alpha,
                     const void *A, cudaDataType atype, int lda, const void *B, cudaDataType btype, int ldb,
                     float beta, const void *C, cudaDataType ctype, int ldc, void *D, cudaDataType dtype, int ldd,
                     const void *bias, cudaDataType bias_type, std::vector<float> &a_rows, std::vector<float> &b_cols) {
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
            float out = alpha * sum;
            if (beta != 0.0f) out += beta * load_element(C, ctype, i + (size_t)j * ldc);  // beta == 0: C is not read
            if (bias != nullptr) out += load_element(bias, bias_type, (size_t)i);
            size_t d = i + (size_t)j * ldd;
            if (dtype == CUDA_R_32F) static_cast<float *>(D)[d] = out;
            else static_cast<__nv_bfloat16 *>(D)[d] = __float2bfloat16(out);
        }
    }
}

inline cublasStatus_t gemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const void *alpha, const void *A, cudaDataType atype, int lda, long long stride_a,
                           const void *B, cudaDataType btype, int ldb, long long stride_b, const void *beta, void *C,
                           cudaDataType ctype, int ldc, long long stride_c, int batch) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    auto op_ok = [](cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; };
    if (!type_supported(atype) || !type_supported(btype) || !type_supported(ctype)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    // lda etc. must cover the rows of the matrix as stored
    int a_rows = transa == CUBLAS_OP_N ? m : k, b_rows = transb == CUBLAS_OP_N ? k : n;
    if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    // alpha and beta are read now (host pointer mode); the product runs in the handle's stream order
    float a = *static_cast<const float *>(alpha), b = *static_cast<const float *>(beta);
    cudaError_t queued = on_stream(handle->stream, [=] {
        size_t asz = atype == CUDA_R_32F ? 4 : 2, bsz = btype == CUDA_R_32F ? 4 : 2, csz = ctype == CUDA_R_32F ? 4 : 2;
        std::vector<float> a_tmp, b_tmp;
        for (int i = 0; i < batch; i++) {
            char *c = static_cast<char *>(C) + (size_t)(i * stride_c) * csz;
            gemm_one(transa, transb, m, n, k, a, static_cast<const char *>(A) + (size_t)(i * stride_a) * asz, atype,
                     lda, static_cast<const char *>(B) + (size_t)(i * stride_b) * bsz, btype, ldb, b, c, ctype, ldc,
                     c, ctype, ldc, nullptr, CUDA_R_32F, a_tmp, b_tmp);
        }
    });
    return queued == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;  // refused in a capture
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

// ----------------------------------------------------------------------------
// cuBLASLt: cublasLtMatmul and the descriptors it takes, as sft.cu and sample.cu
// call it (common/matmul.cuh): column-major layouts of one matrix each (no
// batch, no other orders), fp32 compute and scale, bf16 or fp32 matrices, the
// DEFAULT and BIAS epilogues. Anything else is CUBLAS_STATUS_NOT_SUPPORTED,
// from the heuristic query and from the call, so code that relies on more
// fails here first. The descriptors are the toolkit's opaque structs; the
// emulator keeps its fields inside their storage.
//
// Alignment, as cublasLt.h documents it: the heuristic picks an algorithm for
// the buffer alignment the preference promises (CUBLASLT_MATMUL_PREF_MIN_
// ALIGNMENT_{A,B,C,D}_BYTES, default 256; an algorithm's requirement covers the
// pointer and the leading dimension in bytes) and for the alignment of the bias
// pointer the descriptor holds at the query. The emulated algorithm records
// those, and cublasLtMatmul refuses (CUBLAS_STATUS_INVALID_VALUE) a matrix or
// bias less aligned than its algorithm assumed: a GPU algorithm may read it
// with vector loads that fault or misread, so code that reuses an algorithm
// for other pointers fails here first.

struct cublasLtContext {
    int unused;
};

namespace cuemu {

struct LtLayout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
    bool unsupported;   // an attribute this subset does not model was set
};
struct LtDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t transa, transb;
    cublasLtEpilogue_t epilogue;
    const void *bias;
    int32_t bias_type;   // -1: D's type (cuBLASLt's default)
    bool unsupported;
};
struct LtPref {
    uint32_t min_alignment[4];   // bytes the caller promises for A, B, C, D
};
struct LtAlgo {
    uint32_t alignment[4];       // A, B, C, D: what the algorithm assumes (0: not from the heuristic)
    uint32_t bias_alignment;
};
static_assert(sizeof(LtLayout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "LtLayout fits the opaque layout");
static_assert(sizeof(LtDesc) <= sizeof(cublasLtMatmulDescOpaque_t), "LtDesc fits the opaque descriptor");
static_assert(sizeof(LtPref) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "LtPref fits the opaque preference");
static_assert(sizeof(LtAlgo) <= sizeof(cublasLtMatmulAlgo_t), "LtAlgo fits the algorithm");
inline LtLayout *lt_layout(cublasLtMatrixLayout_t l) { return reinterpret_cast<LtLayout *>(l->data); }
inline LtDesc *lt_desc(cublasLtMatmulDesc_t d) { return reinterpret_cast<LtDesc *>(d->data); }
inline LtPref *lt_pref(cublasLtMatmulPreference_t p) { return reinterpret_cast<LtPref *>(p->data); }

// The largest power of two up to 256 that divides bits (an address, or an address | a stride in bytes).
inline uint32_t lt_alignment(uintptr_t bits) {
    bits |= 256;
    return (uint32_t)(bits & (~bits + 1));
}
// A matrix's alignment: its pointer's and its leading dimension's in bytes
inline uint32_t lt_matrix_alignment(const void *p, const LtLayout &l) {
    return lt_alignment((uintptr_t)p | (uintptr_t)l.ld * (l.type == CUDA_R_32F ? 4 : 2));
}

// CUBLAS_STATUS_SUCCESS if this subset runs the matmul, with (m, n, k) from the layouts
inline cublasStatus_t lt_check(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                               cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc, int *m, int *n, int *k) {
    if (!desc || !Adesc || !Bdesc || !Cdesc || !Ddesc) return CUBLAS_STATUS_INVALID_VALUE;
    const LtDesc *d = lt_desc(desc);
    const LtLayout *a = lt_layout(Adesc), *b = lt_layout(Bdesc), *c = lt_layout(Cdesc), *o = lt_layout(Ddesc);
    if (d->unsupported || a->unsupported || b->unsupported || c->unsupported || o->unsupported ||
        !compute_is_fp32(d->compute) || d->scale != CUDA_R_32F || !type_supported(a->type) || !type_supported(b->type) ||
        !type_supported(c->type) || !type_supported(o->type) || c->type != o->type ||
        (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && d->epilogue != CUBLASLT_EPILOGUE_BIAS) ||
        (d->epilogue == CUBLASLT_EPILOGUE_BIAS && d->bias_type != -1 && !type_supported((cudaDataType)d->bias_type)))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && d->bias == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    // op(A) is m x k, op(B) k x n, C and D m x n; each ld covers its matrix's rows as stored
    uint64_t am = d->transa == CUBLAS_OP_N ? a->rows : a->cols, ak = d->transa == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t bk = d->transb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->transb == CUBLAS_OP_N ? b->cols : b->rows;
    if (am != o->rows || bn != o->cols || ak != bk || c->rows != o->rows || c->cols != o->cols) return CUBLAS_STATUS_INVALID_VALUE;
    for (const LtLayout *l : {a, b, c, o})
        if (l->ld < (int64_t)(l->rows > 1 ? l->rows : 1) || l->ld > INT32_MAX || l->rows > INT32_MAX || l->cols > INT32_MAX)
            return CUBLAS_STATUS_INVALID_VALUE;
    *m = (int)o->rows;
    *n = (int)o->cols;
    *k = (int)ak;
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace cuemu

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    *handle = new cublasLtContext{0};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type, uint64_t rows,
                                                 uint64_t cols, int64_t ld) {
    *layout = new cublasLtMatrixLayoutOpaque_t();
    *cuemu::lt_layout(*layout) = cuemu::LtLayout{type, rows, cols, ld, false};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute, cudaDataType_t scale) {
    *desc = new cublasLtMatmulDescOpaque_t();
    *cuemu::lt_desc(*desc) = cuemu::LtDesc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr, -1, false};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                                     const void *buf, size_t size) {
    if (!desc || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    cuemu::LtDesc *d = cuemu::lt_desc(desc);
    auto take = [&](void *field, size_t want) {
        if (size != want) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(field, buf, want);
        return CUBLAS_STATUS_SUCCESS;
    };
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return take(&d->transa, sizeof(int32_t));
    case CUBLASLT_MATMUL_DESC_TRANSB: return take(&d->transb, sizeof(int32_t));
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return take(&d->epilogue, sizeof(uint32_t));
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return take(&d->bias, sizeof(void *));
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return take(&d->bias_type, sizeof(int32_t));
    default: d->unsupported = true; return CUBLAS_STATUS_SUCCESS;   // accepted, then refused by the matmul
    }
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    *pref = new cublasLtMatmulPreferenceOpaque_t();
    *cuemu::lt_pref(*pref) = cuemu::LtPref{{256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                           cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                           size_t size) {
    // the workspace limit (the emulation needs no workspace) and the alignments the caller promises
    if (!pref || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return size == sizeof(uint64_t) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    int which = attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES ? 0 : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES ? 1
              : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES ? 2 : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES ? 3 : -1;
    if (which < 0 || size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&cuemu::lt_pref(pref)->min_alignment[which], buf, sizeof(uint32_t));
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                                     cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                                     cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                                     cublasLtMatmulPreference_t pref, int requested,
                                                     cublasLtMatmulHeuristicResult_t results[], int *count) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!pref || requested < 1 || !results || !count) return CUBLAS_STATUS_INVALID_VALUE;
    int m, n, k;
    cublasStatus_t st = cuemu::lt_check(desc, Adesc, Bdesc, Cdesc, Ddesc, &m, &n, &k);
    *count = 0;
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    memset(&results[0], 0, sizeof results[0]);   // one algorithm, no workspace, for the promised alignments
    cuemu::LtAlgo *algo = reinterpret_cast<cuemu::LtAlgo *>(results[0].algo.data);
    for (int i = 0; i < 4; i++) algo->alignment[i] = cuemu::lt_alignment(cuemu::lt_pref(pref)->min_alignment[i]);
    const cuemu::LtDesc *d = cuemu::lt_desc(desc);
    algo->bias_alignment = d->epilogue == CUBLASLT_EPILOGUE_BIAS ? cuemu::lt_alignment((uintptr_t)d->bias) : 1;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *count = 1;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha,
                                     const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
                                     cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
                                     cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                                     const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                                     cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    int m, n, k;
    cublasStatus_t st = cuemu::lt_check(desc, Adesc, Bdesc, Cdesc, Ddesc, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (!alpha || !beta || !algo || (workspace_bytes > 0 && !workspace)) return CUBLAS_STATUS_INVALID_VALUE;
    // alpha, beta and the descriptors are read now (host pointer mode); the product runs in stream order
    const cuemu::LtDesc d = *cuemu::lt_desc(desc);
    const cuemu::LtLayout a = *cuemu::lt_layout(Adesc), b = *cuemu::lt_layout(Bdesc), c = *cuemu::lt_layout(Cdesc),
                          o = *cuemu::lt_layout(Ddesc);
    float al = *static_cast<const float *>(alpha), be = *static_cast<const float *>(beta);
    const void *bias = d.epilogue == CUBLASLT_EPILOGUE_BIAS ? d.bias : nullptr;
    // the algorithm runs on buffers at least as aligned as it was chosen for
    const cuemu::LtAlgo *chosen = reinterpret_cast<const cuemu::LtAlgo *>(algo->data);
    const void *ptrs[4] = {A, B, C, D};
    const cuemu::LtLayout *layouts[4] = {&a, &b, &c, &o};
    for (int i = 0; i < 4; i++)
        if (chosen->alignment[i] == 0 || cuemu::lt_matrix_alignment(ptrs[i], *layouts[i]) < chosen->alignment[i])
            return CUBLAS_STATUS_INVALID_VALUE;
    if (bias != nullptr && cuemu::lt_alignment((uintptr_t)bias) < chosen->bias_alignment) return CUBLAS_STATUS_INVALID_VALUE;
    cudaDataType bias_type = d.bias_type == -1 ? o.type : (cudaDataType)d.bias_type;
    cudaError_t queued = cuemu::on_stream(stream, [=] {
        std::vector<float> a_tmp, b_tmp;
        cuemu::gemm_one(d.transa, d.transb, m, n, k, al, A, a.type, (int)a.ld, B, b.type, (int)b.ld, be, C, c.type,
                        (int)c.ld, D, o.type, (int)o.ld, bias, bias_type, a_tmp, b_tmp);
    });
    return queued == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;  // refused in a capture
}

#endif  // S1C_CUEMU_BLAS_H
