// Tests of the cuBLAS and cuBLASLt subsets (common/cuemu_blas.h): the column-major
// argument conventions as llm.c-style code calls them, against plain row-major C loops;
// both GEMM entry points captured into a CUDA graph.
#include "common/cuemu.h"
#include "tests/test.h"
#include <cublas_v2.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static float frand(uint32_t *state) {  // deterministic inputs in [-1, 1)
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

static void *device_copy(const void *host, size_t bytes) {
    void *d;
    cudaCheck(cudaMalloc(&d, bytes));
    cudaCheck(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    return d;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {  // NaN if any difference is NaN
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (isnan(d) || d > m) m = d;
        if (isnan(m)) break;
    }
    return m;
}

// The linear layer out (BT,OC) = inp (BT,C) @ weight (OC,C)^T, row-major, as llm.c writes it.
// Read column-major, the row-major out is the (OC,BT) matrix weight·inp^T where weight is
// stored as a (C,OC) column-major matrix (so op = T) and inp as (C,BT) (op = N):
// gemm(T, N, OC, BT, C, weight, ldw = C, inp, ldx = C, out, ldy = OC).
static void linear_reference(float *out, const float *inp, const float *weight, int BT, int C, int OC) {
    for (int t = 0; t < BT; t++)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[t * C + c] * weight[o * C + c];
            out[t * OC + o] = (float)s;
        }
}

static void test_linear_fp32(cublasHandle_t handle) {
    TEST_BEGIN("cublasGemmEx fp32: llm.c's linear layer (T, N), beta = 0 never reads C");
    const int BT = 13, C = 24, OC = 17;
    float inp[BT * C], weight[OC * C], out[BT * OC], ref[BT * OC], nan_fill[BT * OC];
    uint32_t seed = 11;
    for (int i = 0; i < BT * C; i++) inp[i] = frand(&seed);
    for (int i = 0; i < OC * C; i++) weight[i] = frand(&seed);
    for (int i = 0; i < BT * OC; i++) nan_fill[i] = NAN;
    float *d_inp = (float *)device_copy(inp, sizeof inp), *d_w = (float *)device_copy(weight, sizeof weight);
    float *d_out = (float *)device_copy(nan_fill, sizeof nan_fill);  // beta = 0: the NaNs must not leak
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, BT, C, &one, d_w, CUDA_R_32F, C, d_inp,
                             CUDA_R_32F, C, &zero, d_out, CUDA_R_32F, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    linear_reference(ref, inp, weight, BT, C, OC);
    // 24-term dot products of values in [-1,1): fp32 rounding stays below 1e-5
    float err = max_abs_diff(out, ref, BT * OC);
    CHECK(err < 1e-5f, "max error %g (NaN means C was read)", err);
    // beta = 1 accumulates, as the backward pass's weight gradients do
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, BT, C, &one, d_w, CUDA_R_32F, C, d_inp,
                             CUDA_R_32F, C, &one, d_out, CUDA_R_32F, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    for (int i = 0; i < BT * OC; i++) ref[i] *= 2.0f;
    err = max_abs_diff(out, ref, BT * OC);
    CHECK(err < 2e-5f, "beta = 1: max error %g", err);
    cudaCheck(cudaFree(d_inp));
    cudaCheck(cudaFree(d_w));
    cudaCheck(cudaFree(d_out));
    TEST_END();
}

// All four transpose combinations through cublasSgemm with padded leading dimensions,
// against C(i,j) = sum_p op(A)(i,p) op(B)(p,j) written directly from the column-major definition.
static void test_sgemm_transposes(cublasHandle_t handle) {
    TEST_BEGIN("cublasSgemm: N/T combinations, padded lda/ldb/ldc, alpha and beta");
    const int m = 7, n = 5, k = 9, pad = 3;
    uint32_t seed = 12;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
            int lda = a_rows + pad, ldb = b_rows + pad, ldc = m + pad;
            float A[(9 + 3) * 9], B[(9 + 3) * 9], C0[(7 + 3) * 5], C[(7 + 3) * 5];
            for (int i = 0; i < lda * a_cols; i++) A[i] = frand(&seed);
            for (int i = 0; i < ldb * b_cols; i++) B[i] = frand(&seed);
            for (int i = 0; i < ldc * n; i++) C0[i] = frand(&seed);
            float *dA = (float *)device_copy(A, sizeof(float) * lda * a_cols);
            float *dB = (float *)device_copy(B, sizeof(float) * ldb * b_cols);
            float *dC = (float *)device_copy(C0, sizeof(float) * ldc * n);
            const float alpha = 0.5f, beta = -2.0f;
            cublasCheck(cublasSgemm(handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
                                    &alpha, dA, lda, dB, ldb, &beta, dC, ldc));
            cudaCheck(cudaMemcpy(C, dC, sizeof(float) * ldc * n, cudaMemcpyDeviceToHost));
            for (int j = 0; j < n; j++)
                for (int i = 0; i < ldc; i++) {
                    if (i >= m) {  // the padding rows are not part of C and must be untouched
                        CHECK(C[i + j * ldc] == C0[i + j * ldc], "ta %d tb %d: padding C[%d,%d] changed", ta, tb,
                              i, j);
                        continue;
                    }
                    double s = 0.0;
                    for (int p = 0; p < k; p++)
                        s += (double)(ta ? A[p + i * lda] : A[i + p * lda]) * (tb ? B[j + p * ldb] : B[p + j * ldb]);
                    double want = alpha * s + beta * C0[i + j * ldc];
                    CHECK(fabs(C[i + j * ldc] - want) < 1e-5, "ta %d tb %d: C[%d,%d] = %g, want %g", ta, tb, i, j,
                          C[i + j * ldc], want);
                }
            cudaCheck(cudaFree(dA));
            cudaCheck(cudaFree(dB));
            cudaCheck(cudaFree(dC));
        }
    TEST_END();
}

static void test_bf16_gemm(cublasHandle_t handle) {
    TEST_BEGIN("cublasGemmEx bf16 in and out, fp32 compute: within one bf16 rounding");
    const int BT = 8, C = 32, OC = 12;
    float inp[BT * C], weight[OC * C], ref[BT * OC];
    __nv_bfloat16 inp16[BT * C], w16[OC * C], out16[BT * OC];
    uint32_t seed = 13;
    for (int i = 0; i < BT * C; i++) { inp16[i] = __float2bfloat16(frand(&seed)); inp[i] = __bfloat162float(inp16[i]); }
    for (int i = 0; i < OC * C; i++) { w16[i] = __float2bfloat16(frand(&seed)); weight[i] = __bfloat162float(w16[i]); }
    void *d_inp = device_copy(inp16, sizeof inp16), *d_w = device_copy(w16, sizeof w16), *d_out;
    cudaCheck(cudaMalloc(&d_out, sizeof out16));
    const float one = 1.0f, zero = 0.0f;  // with CUBLAS_COMPUTE_32F alpha and beta are floats even for bf16
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, BT, C, &one, d_w, CUDA_R_16BF, C, d_inp,
                             CUDA_R_16BF, C, &zero, d_out, CUDA_R_16BF, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cudaCheck(cudaMemcpy(out16, d_out, sizeof out16, cudaMemcpyDeviceToHost));
    linear_reference(ref, inp, weight, BT, C, OC);
    for (int i = 0; i < BT * OC; i++) {
        float got = __bfloat162float(out16[i]);
        // the exact sum (of exact bf16 products) rounded once to bf16: half an ulp, 2^-8 relative
        CHECK(fabsf(got - ref[i]) <= fabsf(ref[i]) / 256.0f + 1e-6f, "out[%d] = %g, want %g", i, got, ref[i]);
    }
    cudaCheck(cudaFree(d_inp));
    cudaCheck(cudaFree(d_w));
    cudaCheck(cudaFree(d_out));
    TEST_END();
}

// Attention scores as llm.c computes them: per (b, h), preatt (T,T) = q (T,hs) @ k (T,hs)^T with
// q and k rows HS apart inside a (B*NH, T, HS) buffer: strides in elements.
static void test_strided_batched(cublasHandle_t handle) {
    TEST_BEGIN("cublasGemmStridedBatchedEx and cublasSgemmStridedBatched: attention scores");
    const int batch = 3, T = 6, HS = 8;
    float q[batch * T * HS], k[batch * T * HS], att[batch * T * T], att2[batch * T * T];
    uint32_t seed = 14;
    for (int i = 0; i < batch * T * HS; i++) { q[i] = frand(&seed); k[i] = frand(&seed); }
    float *dq = (float *)device_copy(q, sizeof q), *dk = (float *)device_copy(k, sizeof k), *datt;
    cudaCheck(cudaMalloc(&datt, sizeof att));
    const float scale = 1.0f / sqrtf((float)HS), zero = 0.0f;
    // row-major att[t][s] is column-major C(s,t) = sum_c k[s][c] q[t][c]: k read as (HS,T) with op = T,
    // q as (HS,T) with op = N: gemm(T, N, T, T, HS, k, HS, q, HS, att, T), strides in elements
    cublasCheck(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &scale, dk, CUDA_R_32F, HS,
                                           T * HS, dq, CUDA_R_32F, HS, T * HS, &zero, datt, CUDA_R_32F, T, T * T,
                                           batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cudaCheck(cudaMemcpy(att, datt, sizeof att, cudaMemcpyDeviceToHost));
    cublasCheck(cublasSgemmStridedBatched(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &scale, dk, HS, T * HS, dq, HS,
                                          T * HS, &zero, datt, T, T * T, batch));
    cudaCheck(cudaMemcpy(att2, datt, sizeof att2, cudaMemcpyDeviceToHost));
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < T; t++)
            for (int s = 0; s < T; s++) {
                double dot = 0.0;
                for (int c = 0; c < HS; c++) dot += (double)q[(b * T + t) * HS + c] * k[(b * T + s) * HS + c];
                float want = (float)(dot * scale), got = att[(b * T + t) * T + s];
                CHECK(fabsf(got - want) < 1e-6f, "batch %d att[%d,%d] = %g, want %g", b, t, s, got, want);
                CHECK(att2[(b * T + t) * T + s] == got, "Sgemm and GemmEx disagree at batch %d [%d,%d]", b, t, s);
            }
    cudaCheck(cudaFree(dq));
    cudaCheck(cudaFree(dk));
    cudaCheck(cudaFree(datt));
    TEST_END();
}

static void test_invalid_arguments(cublasHandle_t handle) {
    TEST_BEGIN("cuBLAS argument checks: lda too small, negative sizes");
    float *d;
    cudaCheck(cudaMalloc(&d, 64 * sizeof(float)));
    const float one = 1.0f;
    // op(A) = A (N) is m x k: lda must be >= m = 4
    cublasStatus_t s = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, &one, d, 3, d, 3, &one, d, 4);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "lda 3 < m 4: status %d", (int)s);
    // op(A) = A^T: A is stored k x m, lda must be >= k = 3, so 3 is valid
    s = cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, 4, 2, 3, &one, d, 3, d, 3, &one, d, 4);
    CHECK(s == CUBLAS_STATUS_SUCCESS, "lda 3 = k for a transposed A: status %d", (int)s);
    s = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, &one, d, 4, d, 3, &one, d, 3);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "ldc 3 < m 4: status %d", (int)s);
    s = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, -1, 2, 3, &one, d, 4, d, 3, &one, d, 4);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "m = -1: status %d", (int)s);
    cudaCheck(cudaFree(d));
    TEST_END();
}

// The accumulation order, by hand: x = [2^24, 1 x 63] . [1 x 64]. In blocks of 32
// summed in fp32: the first block's 31 ones each round away (2^24 + 1 is a tie,
// rounded to even), the second block is 32, so 2^24 + 32 (representable). One
// running fp32 sum would lose all 63 ones; a double sum keeps them (2^24 + 63).
static void test_fp32_blocked_sum(cublasHandle_t handle) {
    TEST_BEGIN("cublasSgemm sums in fp32 in blocks of 32 along k: [2^24, 1 x 63] . [1 x 64] = 2^24 + 32");
    float a[64], b[64], c = -1.0f;
    for (int i = 0; i < 64; i++) { a[i] = 1.0f; b[i] = 1.0f; }
    a[0] = 16777216.0f;
    void *dA = device_copy(a, sizeof a), *dB = device_copy(b, sizeof b), *dC;
    cudaCheck(cudaMalloc(&dC, sizeof(float)));
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, 1, 1, 64, &one, (const float *)dA, 64, (const float *)dB, 64,
                            &zero, (float *)dC, 1));
    cudaCheck(cudaMemcpy(&c, dC, sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(c == 16777216.0f + 32.0f, "got 2^24 + %g, want 2^24 + 32", (double)c - 16777216.0);
    cudaCheck(cudaFree(dA)); cudaCheck(cudaFree(dB)); cudaCheck(cudaFree(dC));
    TEST_END();
}

// cublasLtMatmul as common/matmul.cuh calls it: the linear layer out (BT,OC) = inp (BT,C) . weight^T
// + bias, read column-major as D (OC,BT) = op(weight) (T) . inp (N) + bias per row of D.
struct LtMatmul {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
};
static LtMatmul lt_linear(cudaDataType type, int BT, int C, int OC, cublasLtEpilogue_t epilogue, const void *bias) {
    LtMatmul l;
    cublasOperation_t t = CUBLAS_OP_T;
    cublasCheck(cublasLtMatmulDescCreate(&l.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(l.desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));
    cublasCheck(cublasLtMatmulDescSetAttribute(l.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    if (bias) cublasCheck(cublasLtMatmulDescSetAttribute(l.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    cublasCheck(cublasLtMatrixLayoutCreate(&l.a, type, C, OC, C));    // weight (OC,C) row-major = (C,OC) column-major
    cublasCheck(cublasLtMatrixLayoutCreate(&l.b, type, C, BT, C));    // inp
    cublasCheck(cublasLtMatrixLayoutCreate(&l.c, type, OC, BT, OC));  // out
    return l;
}
static void lt_free(LtMatmul *l) {
    cublasCheck(cublasLtMatmulDescDestroy(l->desc));
    cublasCheck(cublasLtMatrixLayoutDestroy(l->a));
    cublasCheck(cublasLtMatrixLayoutDestroy(l->b));
    cublasCheck(cublasLtMatrixLayoutDestroy(l->c));
}
// The heuristic's algorithm for matrices aligned to `alignment` bytes (0: the default promise, 256)
static cublasStatus_t lt_heuristic(cublasLtHandle_t lt, const LtMatmul *l, uint32_t alignment,
                                   cublasLtMatmulHeuristicResult_t *r, int *count) {
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t workspace = 32u << 20;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    const cublasLtMatmulPreferenceAttributes_t attrs[4] = {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                           CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4 && alignment != 0; i++)
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &alignment, sizeof alignment));
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt, l->desc, l->a, l->b, l->c, l->c, pref, 1, r, count);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    return s;
}

// By hand, the linear layer with inp (2,2) rows (1,2), (3,4), weight (2,2) rows (1,1), (1,-1) and
// bias (10, 20): out rows (1+2+10, 1-2+20) = (13, 19) and (3+4+10, 3-4+20) = (17, 19); with
// beta = 1 onto out (the residual stream's add), the same again on top: (26, 38), (34, 38).
static void test_lt_bias_by_hand(cublasLtHandle_t lt, cudaStream_t stream) {
    TEST_BEGIN("cublasLtMatmul with the BIAS epilogue, fp32, by hand; beta = 1 adds onto D (C = D)");
    float inp[4] = {1, 2, 3, 4}, weight[4] = {1, 1, 1, -1}, bias[2] = {10, 20}, out[4] = {NAN, NAN, NAN, NAN};
    void *d_inp = device_copy(inp, sizeof inp), *d_w = device_copy(weight, sizeof weight), *d_b = device_copy(bias, sizeof bias);
    void *d_out = device_copy(out, sizeof out);
    LtMatmul l = lt_linear(CUDA_R_32F, 2, 2, 2, CUBLASLT_EPILOGUE_BIAS, d_b);
    cublasLtMatmulHeuristicResult_t r;
    int count = 0;
    cublasCheck(lt_heuristic(lt, &l, 4, &r, &count));   // rows of 2 floats: 8-byte leading dimensions
    CHECK(count == 1 && r.state == CUBLAS_STATUS_SUCCESS, "heuristic: %d algorithms", count);
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &zero, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream));
    cudaCheck(cudaMemcpyAsync(out, d_out, sizeof out, cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    CHECK(out[0] == 13 && out[1] == 19 && out[2] == 17 && out[3] == 19, "out = %g %g %g %g, want 13 19 17 19", out[0], out[1], out[2], out[3]);
    cublasCheck(cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &one, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream));
    cudaCheck(cudaMemcpyAsync(out, d_out, sizeof out, cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    CHECK(out[0] == 26 && out[1] == 38 && out[2] == 34 && out[3] == 38, "out = %g %g %g %g, want 26 38 34 38", out[0], out[1], out[2], out[3]);
    lt_free(&l);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// The BIAS epilogue adds the bias in fp32 before D's one rounding to bf16: the same bits as
// cublasGemmEx onto a D prefilled with the bias (beta = 1), the rounding the programs had before.
static void test_lt_bias_bf16(cublasHandle_t handle, cublasLtHandle_t lt, cudaStream_t stream) {
    TEST_BEGIN("cublasLtMatmul bf16 with the BIAS epilogue: the bits of GemmEx onto the bias");
    const int BT = 9, C = 70, OC = 11;   // k = 70: two full blocks of 32 and a tail
    __nv_bfloat16 inp[BT * C], w[OC * C], bias[OC], filled[BT * OC], lt_out[BT * OC], ex_out[BT * OC];
    uint32_t seed = 21;
    for (int i = 0; i < BT * C; i++) inp[i] = __float2bfloat16(frand(&seed));
    for (int i = 0; i < OC * C; i++) w[i] = __float2bfloat16(frand(&seed));
    for (int i = 0; i < OC; i++) bias[i] = __float2bfloat16(4.0f * frand(&seed));
    for (int i = 0; i < BT * OC; i++) filled[i] = bias[i % OC];
    void *d_inp = device_copy(inp, sizeof inp), *d_w = device_copy(w, sizeof w), *d_b = device_copy(bias, sizeof bias);
    void *d_lt, *d_ex = device_copy(filled, sizeof filled);
    cudaCheck(cudaMalloc(&d_lt, sizeof lt_out));
    LtMatmul l = lt_linear(CUDA_R_16BF, BT, C, OC, CUBLASLT_EPILOGUE_BIAS, d_b);
    cublasLtMatmulHeuristicResult_t r;
    int count = 0;
    cublasCheck(lt_heuristic(lt, &l, 2, &r, &count));   // rows of 70 bf16: 140-byte leading dimensions
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &zero, d_lt, l.c, d_lt, l.c, &r.algo, NULL, 0, stream));
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, BT, C, &one, d_w, CUDA_R_16BF, C, d_inp, CUDA_R_16BF, C,
                             &one, d_ex, CUDA_R_16BF, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cudaCheck(cudaMemcpyAsync(lt_out, d_lt, sizeof lt_out, cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    cudaCheck(cudaMemcpy(ex_out, d_ex, sizeof ex_out, cudaMemcpyDeviceToHost));
    int same = 0;
    for (int i = 0; i < BT * OC; i++) same += memcmp(&lt_out[i], &ex_out[i], sizeof lt_out[i]) == 0;
    CHECK(same == BT * OC, "%d of %d outputs have the same bits", same, BT * OC);
    lt_free(&l);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_lt)); cudaCheck(cudaFree(d_ex));
    TEST_END();
}

// Both GEMM entry points on a capturing stream are recorded into the graph (the handle's stream for
// cublasGemmEx, the call's for cublasLtMatmul), not run; each launch of the graph runs them. The
// by-hand linear layer above, with beta = 1 onto zeros: each launch adds (13, 19, 17, 19) through
// cuBLASLt (bias included) and (3, -1, 7, -1) through cublasGemmEx (no bias).
static void test_gemms_in_graph(cublasHandle_t handle, cublasLtHandle_t lt, cudaStream_t stream) {
    TEST_BEGIN("cublasGemmEx and cublasLtMatmul in a captured graph: recorded, then run at each launch");
    float inp[4] = {1, 2, 3, 4}, weight[4] = {1, 1, 1, -1}, bias[2] = {10, 20}, zeros[4] = {0, 0, 0, 0}, out[4], out2[4];
    void *d_inp = device_copy(inp, sizeof inp), *d_w = device_copy(weight, sizeof weight), *d_b = device_copy(bias, sizeof bias);
    void *d_out = device_copy(zeros, sizeof zeros), *d_out2 = device_copy(zeros, sizeof zeros);
    LtMatmul l = lt_linear(CUDA_R_32F, 2, 2, 2, CUBLASLT_EPILOGUE_BIAS, d_b);
    cublasLtMatmulHeuristicResult_t r;
    int count = 0;
    cublasCheck(lt_heuristic(lt, &l, 4, &r, &count));
    const float one = 1.0f;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaCheck(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    cublasCheck(cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &one, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream));
    cublasCheck(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 2, &one, d_w, CUDA_R_32F, 2, d_inp, CUDA_R_32F, 2, &one,
                             d_out2, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cudaCheck(cudaStreamEndCapture(stream, &graph));
    cudaCheck(cudaGraphInstantiate(&exec, graph, 0));
    cudaCheck(cudaMemcpyAsync(out, d_out, sizeof out, cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    CHECK(out[0] == 0 && out[3] == 0, "the captured GEMM ran during the capture: %g %g", out[0], out[3]);
    for (int i = 0; i < 2; i++) cudaCheck(cudaGraphLaunch(exec, stream));
    cudaCheck(cudaMemcpyAsync(out, d_out, sizeof out, cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaMemcpyAsync(out2, d_out2, sizeof out2, cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    CHECK(out[0] == 26 && out[1] == 38 && out[2] == 34 && out[3] == 38, "cuBLASLt after 2 launches: %g %g %g %g, want 26 38 34 38",
          out[0], out[1], out[2], out[3]);
    CHECK(out2[0] == 6 && out2[1] == -2 && out2[2] == 14 && out2[3] == -2, "GemmEx after 2 launches: %g %g %g %g, want 6 -2 14 -2",
          out2[0], out2[1], out2[2], out2[3]);
    cudaCheck(cudaGraphExecDestroy(exec));
    cudaCheck(cudaGraphDestroy(graph));
    lt_free(&l);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_out2));
    TEST_END();
}

static void test_lt_refusals(cublasLtHandle_t lt) {
    TEST_BEGIN("cublasLt subset: an epilogue it does not model and mismatched shapes are refused");
    LtMatmul l = lt_linear(CUDA_R_16BF, 4, 8, 6, CUBLASLT_EPILOGUE_GELU, NULL);
    cublasLtMatmulHeuristicResult_t r;
    int count = -1;
    cublasStatus_t s = lt_heuristic(lt, &l, 2, &r, &count);
    CHECK(s == CUBLAS_STATUS_NOT_SUPPORTED && count == 0, "GELU epilogue: status %d, %d algorithms", (int)s, count);
    lt_free(&l);
    l = lt_linear(CUDA_R_16BF, 4, 8, 6, CUBLASLT_EPILOGUE_BIAS, NULL);
    s = lt_heuristic(lt, &l, 2, &r, &count);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "BIAS without a bias pointer: status %d", (int)s);
    lt_free(&l);
    l = lt_linear(CUDA_R_16BF, 4, 8, 6, CUBLASLT_EPILOGUE_DEFAULT, NULL);
    cublasCheck(cublasLtMatrixLayoutDestroy(l.b));
    cublasCheck(cublasLtMatrixLayoutCreate(&l.b, CUDA_R_16BF, 7, 4, 8));   // k 7 against op(A)'s 8
    s = lt_heuristic(lt, &l, 2, &r, &count);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "k mismatch: status %d", (int)s);
    lt_free(&l);
    TEST_END();
}

// The algorithm assumes the alignment the preference promised (default 256 bytes) and the bias
// pointer's at the query: a call on less aligned buffers is refused, however the sizes match.
static void test_lt_alignment(cublasLtHandle_t lt, cudaStream_t stream) {
    TEST_BEGIN("cublasLtMatmul refuses buffers less aligned than its algorithm was chosen for");
    const int BT = 4, C = 8, OC = 8;   // bf16 rows of 16 bytes
    __nv_bfloat16 *d_inp, *d_w, *d_b, *d_out;
    cudaCheck(cudaMalloc((void **)&d_inp, 2 * BT * C * sizeof(__nv_bfloat16)));   // room for a shifted copy
    cudaCheck(cudaMalloc((void **)&d_w, OC * C * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMalloc((void **)&d_b, 2 * OC * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMalloc((void **)&d_out, BT * OC * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMemsetAsync(d_inp, 0, 2 * BT * C * sizeof(__nv_bfloat16), stream));
    cudaCheck(cudaMemsetAsync(d_w, 0, OC * C * sizeof(__nv_bfloat16), stream));
    cudaCheck(cudaMemsetAsync(d_b, 0, 2 * OC * sizeof(__nv_bfloat16), stream));
    const float one = 1.0f, zero = 0.0f;
    cublasLtMatmulHeuristicResult_t r;
    int count = 0;
    LtMatmul l = lt_linear(CUDA_R_16BF, BT, C, OC, CUBLASLT_EPILOGUE_BIAS, d_b);
    cublasCheck(lt_heuristic(lt, &l, 0, &r, &count));   // the default promise: 256 bytes, more than a 16-byte row
    cublasStatus_t s = cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &zero, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "16-byte rows, 256 promised: status %d", (int)s);
    cublasCheck(lt_heuristic(lt, &l, 16, &r, &count));
    cublasCheck(cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &zero, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream));
    s = cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp + 1, l.b, &zero, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "B one element past 16 promised: status %d", (int)s);
    const __nv_bfloat16 *shifted = d_b + 1;   // the algorithm was chosen for the aligned bias
    cublasCheck(cublasLtMatmulDescSetAttribute(l.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &shifted, sizeof shifted));
    s = cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &zero, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "a bias less aligned than at the query: status %d", (int)s);
    cublasCheck(lt_heuristic(lt, &l, 16, &r, &count));   // queried with the shifted bias: runs
    cublasCheck(cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &zero, d_out, l.c, d_out, l.c, &r.algo, NULL, 0, stream));
    cublasLtMatmulAlgo_t none;
    memset(&none, 0, sizeof none);
    s = cublasLtMatmul(lt, l.desc, &one, d_w, l.a, d_inp, l.b, &zero, d_out, l.c, d_out, l.c, &none, NULL, 0, stream);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "an algorithm not from the heuristic: status %d", (int)s);
    cudaCheck(cudaStreamSynchronize(stream));
    lt_free(&l);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

int main(void) {
    cublasHandle_t handle;
    cublasCheck(cublasCreate(&handle));
    cublasCheck(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
    cudaStream_t stream;
    cudaCheck(cudaStreamCreate(&stream));
    cublasCheck(cublasSetStream(handle, stream));
    test_linear_fp32(handle);
    test_sgemm_transposes(handle);
    test_bf16_gemm(handle);
    test_strided_batched(handle);
    test_invalid_arguments(handle);
    test_fp32_blocked_sum(handle);
    cublasLtHandle_t lt;
    cublasCheck(cublasLtCreate(&lt));
    test_lt_bias_by_hand(lt, stream);
    test_lt_bias_bf16(handle, lt, stream);
    test_lt_refusals(lt);
    test_gemms_in_graph(handle, lt, stream);
    test_lt_alignment(lt, stream);
    cublasCheck(cublasLtDestroy(lt));
    cublasCheck(cublasDestroy(handle));
    cudaCheck(cudaStreamDestroy(stream));
    return test_summary();
}
