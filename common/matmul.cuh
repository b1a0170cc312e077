/*
 * matmul.cuh: the linear layers through cuBLASLt (bf16 in, fp32 accumulation,
 * the bias in the GEMM's epilogue) and the deterministic column sums (the bias
 * gradient; rmsnorm.cuh shares them). Twins of s1.c's matmul_forward() and
 * matmul_backward(); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu.
 */
#ifndef S1C_MATMUL_CUH
#define S1C_MATMUL_CUH

#include "common/cuda_common.cuh"
#include <cublasLt.h>

// ----------------------------------------------------------------------------
// The GEMM context: every GEMM of the programs is one cublasLtMatmul() (llm.c's
// matmul_cublaslt), which takes what the classic cublasGemmEx() hides: its
// workspace, the algorithm, and an epilogue that adds the bias before D's one
// rounding. One context per model; all its GEMMs run on the compute stream, in
// order, so they share the one workspace.
//
// The workspace is ours, allocated once: an algorithm that splits k across
// blocks sums the partial products there. 32 MiB is what cuBLAS recommends for
// Hopper (cublasSetWorkspace()). A workspace we own is what makes a GEMM legal
// inside a CUDA graph capture (the library allocates nothing), and cuBLAS's
// reproducibility note names it as the way to keep results bitwise repeatable
// when several streams are active.
#define GEMM_WORKSPACE_BYTES ((size_t)32 << 20)

// The heuristic's answer depends on the problem (ops, sizes, leading dimensions,
// the output type, the bias) and on the alignment of every buffer, so a chosen
// algorithm is cached under all of those (GemmProblem): a transformer repeats a handful of
// shapes per micro-batch, and a query costs tens of microseconds of host time,
// as much as a decode step's small GEMM. Direct-mapped: a shape takes slot
// hash % GEMM_ALGO_SLOTS, and a different shape there replaces it.
#define GEMM_ALGO_SLOTS 64

typedef struct {   // a GEMM as the heuristic sees it (all ints: compared and hashed as bytes)
    int transa, transb, m, n, k, lda, ldb, ldd, dtype;
    int align_a, align_b, align_d, align_bias;   // bytes, from gemm_alignment(); align_bias 0: no bias
} GemmProblem;

typedef struct {
    GemmProblem problem;
    int filled;
    cublasLtMatmulAlgo_t algo;
} GemmAlgoSlot;

typedef struct {
    cublasLtHandle_t lt;
    void *workspace;                       // GEMM_WORKSPACE_BYTES of device memory
    GemmAlgoSlot algos[GEMM_ALGO_SLOTS];
} Gemm;

static Gemm *gemm_create(void) {
    Gemm *g = (Gemm *)callocCheck(1, sizeof(Gemm));
    cublasCheck(cublasLtCreate(&g->lt));
    cudaCheck(cudaMalloc(&g->workspace, GEMM_WORKSPACE_BYTES));
    return g;
}

static void gemm_destroy(Gemm *g) {
    cudaCheck(cudaFree(g->workspace));
    cublasCheck(cublasLtDestroy(g->lt));
    free(g);
}

// The largest power of two up to 256 that divides a buffer's address and its
// leading dimension in bytes: the alignment the algorithm may assume. cuBLASLt's
// heuristic assumes 256 unless told (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES),
// and a row or chunk inside a buffer is often less aligned than that.
static inline int gemm_alignment(const void *p, size_t ld_bytes) {
    uintptr_t bits = (uintptr_t)p | ld_bytes | 256;
    return (int)(bits & (~bits + 1));
}

// The heuristic's best algorithm for problem p, which the descriptors hold,
// promising its alignments (C is D): from the cache, or asked once.
static const cublasLtMatmulAlgo_t *gemm_algo(Gemm *g, const GemmProblem *p, cublasLtMatmulDesc_t desc,
                                             cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t d) {
    uint32_t h = 2166136261u;   // FNV-1a over the problem's ints
    const int *words = (const int *)p;
    for (size_t i = 0; i < sizeof *p / sizeof(int); i++) h = (h ^ (uint32_t)words[i]) * 16777619u;
    GemmAlgoSlot *slot = &g->algos[h % GEMM_ALGO_SLOTS];
    if (slot->filled && memcmp(&slot->problem, p, sizeof *p) == 0) return &slot->algo;
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t workspace = GEMM_WORKSPACE_BYTES;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const uint32_t align[4] = {(uint32_t)p->align_a, (uint32_t)p->align_b, (uint32_t)p->align_d, (uint32_t)p->align_d};
    for (int i = 0; i < 4; i++) cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &align[i], sizeof align[i]));
    cublasLtMatmulHeuristicResult_t result;
    int count = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(g->lt, desc, a, b, d, d, pref, 1, &result, &count));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (count == 0) die("gemm: cuBLASLt has no algorithm for m %d, n %d, k %d (lda %d, ldb %d, ldd %d)", p->m, p->n, p->k,
                        p->lda, p->ldb, p->ldd);
    slot->problem = *p;
    slot->filled = 1;
    slot->algo = result.algo;
    return &slot->algo;
}

// D (m,n) = op(A) (m,k) . op(B) (k,n) + beta * D [+ bias (m,) in every column],
// column-major as cuBLAS, leading dimensions in elements: A and B bf16, D of
// type dtype (bf16 or fp32), the sum and the bias in fp32, rounded to dtype
// once. D is also the C that beta scales (C = D). The one place the programs
// call cuBLAS(Lt); the descriptors are host objects, made per call.
static void gemm_lt(Gemm *g, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const floatX *A,
                    int lda, const floatX *B, int ldb, void *D, cudaDataType dtype, int ldd, float beta, const floatX *bias,
                    cudaStream_t stream) {
    const float alpha = 1.0f;
    size_t dsize = dtype == CUDA_R_32F ? sizeof(float) : sizeof(floatX);
    cublasLtMatmulDesc_t desc;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb));
    if (bias != NULL) {   // D's rows are the output features: one bias value per row
        cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
        int32_t bias_type = CUDA_R_16BF;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
    }
    cublasLtMatrixLayout_t a, b, d;   // each as stored: op(X) = X^T reads a matrix of the transposed shape
    cublasCheck(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, transa == CUBLAS_OP_N ? m : k, transa == CUBLAS_OP_N ? k : m, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, transb == CUBLAS_OP_N ? k : n, transb == CUBLAS_OP_N ? n : k, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&d, dtype, m, n, ldd));
    const GemmProblem problem = {(int)transa, (int)transb, m, n, k, lda, ldb, ldd, (int)dtype,
                                 gemm_alignment(A, (size_t)lda * sizeof(floatX)), gemm_alignment(B, (size_t)ldb * sizeof(floatX)),
                                 gemm_alignment(D, (size_t)ldd * dsize), bias != NULL ? gemm_alignment(bias, 0) : 0};
    const cublasLtMatmulAlgo_t *algo = gemm_algo(g, &problem, desc, a, b, d);
    cublasCheck(cublasLtMatmul(g->lt, desc, &alpha, A, a, B, b, &beta, D, d, D, d, algo, g->workspace,
                               GEMM_WORKSPACE_BYTES, stream));
    cublasCheck(cublasLtMatrixLayoutDestroy(a));
    cublasCheck(cublasLtMatrixLayoutDestroy(b));
    cublasCheck(cublasLtMatrixLayoutDestroy(d));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
}

// Linear layer y = x W^T + b with W stored (OC, C), as HF checkpoints store it.
// cuBLAS is column-major: the row-major out (N,OC) is the column-major (OC,N)
// matrix W x^T, so A = W read transposed (op T, lda C) and B = x (op N, ldb C).
// out (N,OC) = inp (N,C) . weight (OC,C)^T [+ bias (OC,)] + beta * out, out of
// type out_type (bf16 or fp32), fp32 accumulation, rounded once.
static void gemm_nt(Gemm *g, void *out, cudaDataType out_type, const floatX *inp, const floatX *weight,
                    const floatX *bias, int N, int C, int OC, float beta, cudaStream_t stream) {
    gemm_lt(g, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, C, inp, C, out, out_type, OC, beta, bias, stream);
}

// out (N,OC) = inp (N,C) . weight (OC,C)^T + bias (OC,) [bias may be NULL].
// The bias rides in the GEMM's epilogue: added to the fp32 sum before the one
// rounding to bf16, as torch's addmm. residual != 0 adds the product onto out
// instead (beta = 1: the residual stream's "h = h + o_proj(...)", rounded once).
static void matmul_forward(Gemm *g, floatX *out, const floatX *inp, const floatX *weight, const floatX *bias, int N,
                           int C, int OC, int residual, cudaStream_t stream) {
    gemm_nt(g, out, CUDA_R_16BF, inp, weight, bias, N, C, OC, residual ? 1.0f : 0.0f, stream);
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
static void gemm_nn(Gemm *g, void *out, cudaDataType out_type, const floatX *dout, int ld_dout,
                    const floatX *weight, int N, int C, int OC, float beta, cudaStream_t stream) {
    gemm_lt(g, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, C, dout, ld_dout, out, out_type, C, beta, NULL, stream);
}

// dweight (OC,C) fp32 += dout (N,OC)^T . inp (N,C), fp32 accumulation, the sum
// rounded once onto the old value (beta = 1); dout's rows are ld_dout apart.
// Column-major: the row-major dweight (OC,C) is the column-major (C,OC) matrix
// inp^T dout. The row-major inp (N,C) is the column-major (C,N) matrix inp^T,
// so A = inp as stored (op N, lda C); the row-major dout (N,OC) is the
// column-major (OC,N) matrix dout^T, read transposed to dout (op T, ldb
// ld_dout); m = C, n = OC, k = N.
static void gemm_tn_accumulate(Gemm *g, float *dweight, const floatX *dout, int ld_dout, const floatX *inp, int N, int C,
                               int OC, cudaStream_t stream) {
    gemm_lt(g, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, ld_dout, dweight, CUDA_R_32F, C, 1.0f, NULL, stream);
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
// all on cuBLASLt but the bias:
//   dinp (N,C) = dout (N,OC) . weight (OC,C)  [+= when accumulate_dinp], of type
//                dinp_type (CUDA_R_16BF: an activation gradient that feeds the
//                next GEMM; CUDA_R_32F); dinp NULL: not wanted
//   dweight (OC,C) fp32 += dout^T . inp       (parameter gradients accumulate)
//   dbias (OC,) fp32 += column sums of dout   (when dbias != NULL; scratch:
//                matmul_backward_scratch_floats(N, OC) floats, else unused)
// dout (N,OC), inp (N,C), weight (OC,C) bf16.
// The bias gradient is column_sum(), not cuBLASLt's CUBLASLT_EPILOGUE_BGRADB
// (the column sums of B fused into the weight-gradient GEMM): cublasLt.h says
// that epilogue *stores* the bias gradient, where the micro-batches of a step
// must add into it (+=), and it does not say in what order it sums, so its bits
// may change with the algorithm or the cuBLAS version. column_sum() adds in a
// fixed order and repeats bit for bit (tutorial/cuda.md, "cuBLASLt").
static void matmul_backward(Gemm *g, void *dinp, cudaDataType dinp_type, int accumulate_dinp, float *dweight,
                            float *dbias, float *scratch, const floatX *dout, const floatX *inp, const floatX *weight,
                            int N, int C, int OC, cudaStream_t stream) {
    if (dinp != NULL) gemm_nn(g, dinp, dinp_type, dout, OC, weight, N, C, OC, accumulate_dinp ? 1.0f : 0.0f, stream);
    gemm_tn_accumulate(g, dweight, dout, OC, inp, N, C, OC, stream);
    if (dbias != NULL) column_sum(dbias, scratch, dout, N, OC, stream);
}

#endif // S1C_MATMUL_CUH
