/*
 * emu_kernels_backward.cu: the training kernels (the backward passes of
 * embedding.cuh, rmsnorm.cuh, matmul.cuh, rope.cuh, swiglu.cuh and
 * classifier.cuh, then global_norm.cuh and adamw.cuh) against their s1.c twins
 * (linked in through tests/s1_ref.c), on the CPU through the CUDA emulator;
 * tests/run.sh runs it in the forward, reverse and random thread schedules.
 * Shapes cut across warps (32), blocks (256 threads), the column sums' row
 * ranges (32 rows per block) and the classifier's chunks.
 *
 * Tolerances. Inputs are bf16 numbers (generated, then rounded) wherever the
 * kernel reads bf16, so the kernel and the oracle start from identical values
 * and differ only by the kernel's roundings and the fp32 summation order.
 *   u   = 2^-8, one bf16 rounding (relative, see tests/emu_kernels.cu)
 *   eps = 2^-24, one fp32 rounding
 *   an fp32 sum of n terms is off from the exact sum by at most
 *   gamma_n = n * eps times the sum of the terms' magnitudes, in any order;
 *   kernel and oracle each make that error, hence the factors 2 below.
 * Each test derives its bound next to it. Every reduction kernel is also run
 * twice and must give bit-identical results (fixed-order sums, no atomics).
 */
#include "common/kernels.cuh"
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*), seeded inputs, copies, check_close

static const float U = 1.0f / 256.0f;         // 2^-8: one bf16 rounding, relative
static const float EPS = 1.0f / 16777216.0f;  // 2^-24: one fp32 rounding, relative

// ----------------------------------------------------------------------------
// helpers (the shared ones are in tests/kernel_test.h)

static float frand_f32(float scale) {   // uniform in [-scale, scale), any fp32 number (gradients); frand's generator
    float a = (float)(kt_next() >> 8) / 16777216.0f;
    return (2.0f * a - 1.0f + (float)(kt_next() >> 8) * 1e-9f) * scale;
}

static float *host_zeros(size_t n) { return (float *)callocCheck(n, sizeof(float)); }

static float *host_copy(const float *x, size_t n) {
    float *y = (float *)mallocCheck(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

// bit-for-bit equality of two arrays (determinism, exactness)
static int check_bits(const char *what, const void *a, const void *b, size_t bytes) {
    int same = memcmp(a, b, bytes) == 0;
    CHECK(same, "%s: not bit-identical", what);
    return same;
}

// ----------------------------------------------------------------------------
// embedding

// Bound: exact. The kernel adds the rows of one id in increasing position order
// onto the old value, as s1.c's serial loop does: the same fp32 additions in the
// same order.
static void test_embedding_backward(size_t N, size_t C, size_t V, const uint32_t *ids) {
    char name[160];
    snprintf(name, sizeof name, "embedding_backward == s1.c bit for bit, N=%zu, C=%zu, V=%zu, repeated ids, accumulates", N, C, V);
    TEST_BEGIN(name);
    float *dout = (float *)mallocCheck(N * C * sizeof(float)), *prev = host_random(V * C, 1.0f);
    for (size_t i = 0; i < N * C; i++) dout[i] = frand_f32(1.0f);   // fp32 gradients: any float
    float *ref = host_copy(prev, V * C);
    s1ref_embedding_backward(ref, dout, ids, N, C);
    float *d_dout = device_copy(dout, N * C), *d_table = device_copy(prev, V * C), *d_table2 = device_copy(prev, V * C);
    int *d_scratch;
    cudaCheck(cudaMalloc((void **)&d_scratch, embedding_backward_scratch_ints((int)N) * sizeof(int)));
    embedding_backward(d_table, d_dout, ids, (int)N, (int)C, d_scratch, stream);
    embedding_backward(d_table2, d_dout, ids, (int)N, (int)C, d_scratch, stream);   // again: determinism
    float *got = host_from(d_table, V * C), *got2 = host_from(d_table2, V * C);
    check_close("embedding_backward", got, ref, V * C, 0.0f, 0.0f, NULL);
    check_bits("embedding_backward (exact)", got, ref, V * C * sizeof(float));
    check_bits("embedding_backward run twice", got, got2, V * C * sizeof(float));
    free(dout); free(prev); free(ref); free(got); free(got2);
    cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_table)); cudaCheck(cudaFree(d_table2)); cudaCheck(cudaFree(d_scratch));
    TEST_END();
}

// ----------------------------------------------------------------------------
// RMSNorm

// Both sides get the same r (s1.c's, uploaded), so they differ by:
// dinp_i = prev_i + r (g_i - y_i m), g = w*dout, y = x*r, m = sum_i g_i y_i / C.
//   m: each side sums C terms of 3 roundings each: |dm| <= 2 (C+2) eps S / C, S = sum |g y|
//   dinp_i: r |y_i| |dm| + 2 * 6 eps r (|g_i| + |y_i m|) (the products and the
//   difference, each side) + 2 eps |ref| (the final add, each side)
// dweight_c = prev_c + sum_n dout_nc y_nc, the kernel's y rounded to bf16 (HF's
// cast, see rmsnorm.cuh), s1.c's not: u T_c for the rounding with T_c = sum_n
// |dout y|, plus the two fp32 sums of N+2 terms (products and the partials),
// plus the additions onto prev: (u + 2 (N+3) eps) T_c + 2 (N+1) eps |prev_c|.
// dinp_bf16 must be bf16(dinp) exactly. rstd of rmsnorm_forward vs s1.c: the
// mean square is an fp32 sum of C squares on both sides (2 gamma_C relative),
// rsqrt halves it, plus a few roundings: (C + 4) eps relative.
static void test_rmsnorm_backward(size_t N, size_t C, int with_bf16) {
    char name[192];
    snprintf(name, sizeof name, "rmsnorm_backward vs s1.c, N=%zu, C=%zu (%d blocks)%s", N, C, column_sum_blocks((int)N),
             with_bf16 ? ", with the bf16 copy" : "");
    TEST_BEGIN(name);
    const float eps_norm = 1e-6f;
    float *x = host_random(N * C, 3.0f), *w = host_random(C, 1.5f), *dout = host_random(N * C, 1.0f);
    float *prev_dinp = host_random(N * C, 2.0f), *prev_dw = host_random(C, 4.0f);
    float *ref_dinp = host_copy(prev_dinp, N * C), *ref_dw = host_copy(prev_dw, C), *rstd = host_zeros(N);
    s1ref_rmsnorm_backward(ref_dinp, ref_dw, rstd, dout, x, w, N, C, eps_norm);
    // the bounds' magnitudes
    float *extra_dinp = host_zeros(N * C), *extra_dw = host_zeros(C);
    for (size_t n = 0; n < N; n++) {
        float r = rstd[n], S = 0.0f, m = 0.0f;
        for (size_t i = 0; i < C; i++) {
            float g = w[i] * dout[n * C + i], y = x[n * C + i] * r;
            S += fabsf(g * y);
            m += g * y;
        }
        m /= (float)C;
        for (size_t i = 0; i < C; i++) {
            float g = w[i] * dout[n * C + i], y = x[n * C + i] * r;
            extra_dinp[n * C + i] = r * fabsf(y) * 2.0f * (C + 2) * EPS * S / C + 12.0f * EPS * r * (fabsf(g) + fabsf(y * m));
            extra_dw[i] += fabsf(dout[n * C + i] * y);
        }
    }
    for (size_t i = 0; i < C; i++) extra_dw[i] = (U + 2.0f * (N + 3) * EPS) * extra_dw[i] + 2.0f * (N + 1) * EPS * fabsf(prev_dw[i]);

    floatX *d_x = to_device(x, N * C), *d_w = to_device(w, C), *d_dinp_bf16 = NULL, *d_out;
    float *d_dout = device_copy(dout, N * C), *d_rstd = device_copy(rstd, N), *d_scratch, *d_rstd_fwd;
    cudaCheck(cudaMalloc((void **)&d_scratch, rmsnorm_backward_scratch_floats((int)N, (int)C) * sizeof(float)));
    if (with_bf16) cudaCheck(cudaMalloc((void **)&d_dinp_bf16, N * C * sizeof(floatX)));
    float *got_dinp[2], *got_dw[2];
    for (int run = 0; run < 2; run++) {   // twice from the same state: determinism
        float *d_dinp = device_copy(prev_dinp, N * C), *d_dw = device_copy(prev_dw, C);
        rmsnorm_backward(d_dinp, d_dinp_bf16, d_dw, d_scratch, d_dout, d_x, d_w, d_rstd, (int)N, (int)C, stream);
        got_dinp[run] = host_from(d_dinp, N * C);
        got_dw[run] = host_from(d_dw, C);
        cudaCheck(cudaFree(d_dinp)); cudaCheck(cudaFree(d_dw));
    }
    check_close("rmsnorm_backward dinp", got_dinp[0], ref_dinp, N * C, 2 * EPS, 0.0f, extra_dinp);
    check_close("rmsnorm_backward dweight", got_dw[0], ref_dw, C, 0.0f, 0.0f, extra_dw);
    check_bits("rmsnorm_backward dinp run twice", got_dinp[0], got_dinp[1], N * C * sizeof(float));
    check_bits("rmsnorm_backward dweight run twice", got_dw[0], got_dw[1], C * sizeof(float));
    if (with_bf16) {
        float *got_bf16 = from_device(d_dinp_bf16, N * C);
        int same = 1;
        for (size_t i = 0; i < N * C; i++) same &= got_bf16[i] == __bfloat162float(__float2bfloat16(got_dinp[1][i]));
        CHECK(same, "dinp_bf16 != bf16(dinp)");
        free(got_bf16);
    }
    // the rstd the forward kernel keeps for this pass
    cudaCheck(cudaMalloc((void **)&d_out, N * C * sizeof(floatX)));
    cudaCheck(cudaMalloc((void **)&d_rstd_fwd, N * sizeof(float)));
    rmsnorm_forward(d_out, d_rstd_fwd, d_x, d_w, (int)N, (int)C, eps_norm, stream);
    float *got_rstd = host_from(d_rstd_fwd, N);
    check_close("rmsnorm_forward rstd", got_rstd, rstd, N, (C + 4) * EPS, 0.0f, NULL);
    free(x); free(w); free(dout); free(prev_dinp); free(prev_dw); free(ref_dinp); free(ref_dw); free(rstd);
    free(extra_dinp); free(extra_dw); free(got_rstd);
    for (int run = 0; run < 2; run++) { free(got_dinp[run]); free(got_dw[run]); }
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_rstd));
    cudaCheck(cudaFree(d_scratch)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_rstd_fwd));
    if (d_dinp_bf16) cudaCheck(cudaFree(d_dinp_bf16));
    TEST_END();
}

// ----------------------------------------------------------------------------
// linear layers

// dinp_nc = [prev_nc +] sum_o dout_no w_oc: two fp32 sums of OC terms (s1.c's
// and cuBLAS's, whatever its order): 2 (OC+1) eps A_nc, A = sum_o |dout w|
// (+ 2 eps |prev| for the add); then one output rounding: u |ref| in bf16, 2 eps in fp32.
// dweight_oc = prev_oc + sum_n dout_no x_nc: 2 (N+1) eps B_oc + 2 eps (|prev| + |ref|), B = sum_n |dout x|.
// dbias_o = prev_o + sum_n dout_no: 2 (N+1) eps sum_n |dout_no| + 2 eps (|prev| + |ref|).
static void test_matmul_backward(size_t N, size_t C, size_t OC, cudaDataType dinp_type, int accumulate, int want_dinp, int with_bias) {
    char name[224];
    snprintf(name, sizeof name, "matmul_backward vs s1.c, N=%zu, C=%zu, OC=%zu, dinp %s%s, dbias %s", N, C, OC,
             !want_dinp ? "NULL" : dinp_type == CUDA_R_16BF ? "bf16" : "fp32", want_dinp ? (accumulate ? " +=" : " =") : "",
             with_bias ? "+= (two-stage column sum)" : "NULL");
    TEST_BEGIN(name);
    float *dout = host_random(N * OC, 1.0f), *x = host_random(N * C, 1.0f), *w = host_random(OC * C, 1.0f);
    float *prev_dinp = host_random(N * C, 2.0f), *prev_dw = host_random(OC * C, 1.0f), *prev_db = host_random(OC, 3.0f);
    float *ref_dinp = accumulate ? host_copy(prev_dinp, N * C) : host_zeros(N * C);
    float *ref_dw = host_copy(prev_dw, OC * C), *ref_db = host_copy(prev_db, OC);
    s1ref_matmul_backward(ref_dinp, ref_dw, with_bias ? ref_db : NULL, dout, x, w, N, C, OC);
    float *extra_dinp = host_zeros(N * C), *extra_dw = host_zeros(OC * C), *extra_db = host_zeros(OC);
    for (size_t n = 0; n < N; n++)
        for (size_t c = 0; c < C; c++) {
            float A = 0.0f;
            for (size_t o = 0; o < OC; o++) A += fabsf(dout[n * OC + o] * w[o * C + c]);
            extra_dinp[n * C + c] = 2.0f * (OC + 1) * EPS * A + (accumulate ? 2.0f * EPS * fabsf(prev_dinp[n * C + c]) : 0.0f);
        }
    for (size_t o = 0; o < OC; o++) {
        float Sb = 0.0f;
        for (size_t n = 0; n < N; n++) Sb += fabsf(dout[n * OC + o]);
        extra_db[o] = 2.0f * (N + 1) * EPS * Sb + 2.0f * EPS * fabsf(prev_db[o]);
        for (size_t c = 0; c < C; c++) {
            float B = 0.0f;
            for (size_t n = 0; n < N; n++) B += fabsf(dout[n * OC + o] * x[n * C + c]);
            extra_dw[o * C + c] = 2.0f * (N + 1) * EPS * B + 2.0f * EPS * fabsf(prev_dw[o * C + c]);
        }
    }
    floatX *d_dout = to_device(dout, N * OC), *d_x = to_device(x, N * C), *d_w = to_device(w, OC * C);
    float *d_scratch;
    cudaCheck(cudaMalloc((void **)&d_scratch, matmul_backward_scratch_floats((int)N, (int)OC) * sizeof(float)));
    Gemm *gemm = gemm_create();
    float *got_dinp = NULL, *got_dw[2], *got_db[2];
    for (int run = 0; run < 2; run++) {   // twice from the same state: determinism
        // dinp starts at prev even when overwriting: the kernel must not read it then
        void *d_dinp = NULL;
        if (want_dinp) d_dinp = dinp_type == CUDA_R_16BF ? (void *)to_device(prev_dinp, N * C) : (void *)device_copy(prev_dinp, N * C);
        float *d_dw = device_copy(prev_dw, OC * C), *d_db = device_copy(prev_db, OC);
        matmul_backward(gemm, d_dinp, dinp_type, accumulate, d_dw, with_bias ? d_db : NULL, d_scratch, d_dout, d_x, d_w,
                        (int)N, (int)C, (int)OC, stream);
        if (run == 0 && want_dinp)
            got_dinp = dinp_type == CUDA_R_16BF ? from_device((floatX *)d_dinp, N * C) : host_from((float *)d_dinp, N * C);
        got_dw[run] = host_from(d_dw, OC * C);
        got_db[run] = host_from(d_db, OC);
        if (d_dinp) cudaCheck(cudaFree(d_dinp));
        cudaCheck(cudaFree(d_dw)); cudaCheck(cudaFree(d_db));
    }
    if (want_dinp) check_close("matmul_backward dinp", got_dinp, ref_dinp, N * C, dinp_type == CUDA_R_16BF ? U : 2 * EPS, 0.0f, extra_dinp);
    check_close("matmul_backward dweight", got_dw[0], ref_dw, OC * C, 2 * EPS, 0.0f, extra_dw);
    if (with_bias) {
        check_close("matmul_backward dbias", got_db[0], ref_db, OC, 2 * EPS, 0.0f, extra_db);
        check_bits("matmul_backward dbias run twice", got_db[0], got_db[1], OC * sizeof(float));
    } else {
        check_bits("matmul_backward dbias NULL: untouched", got_db[0], prev_db, OC * sizeof(float));
    }
    gemm_destroy(gemm);
    free(dout); free(x); free(w); free(prev_dinp); free(prev_dw); free(prev_db); free(ref_dinp); free(ref_dw); free(ref_db);
    free(extra_dinp); free(extra_dw); free(extra_db); free(got_dinp);
    for (int run = 0; run < 2; run++) { free(got_dw[run]); free(got_db[run]); }
    cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_scratch));
    TEST_END();
}

// ----------------------------------------------------------------------------
// RoPE

// dq, dk, dv merged into the fused gradient dqkv (N, NQ + 2 NKV, HD): dq and
// dk rotated back as s1.c's rope_backward() rotates them, dv copied (bit for
// bit). As the forward test: cos and sin rounded to bf16 (HF's cast point)
// move a rotated pair by u(|a| + |b|), the result is rounded once (u|ref|),
// + 1e-6 for s1.c's own fp32 roundings. shift: elements dq starts past a
// 16-byte boundary (not 0: the scalar fallback).
static void test_rope_qkv_backward(size_t N, size_t NQ, size_t NKV, size_t HD, double theta, size_t shift) {
    char name[192];
    snprintf(name, sizeof name, "rope_qkv_backward vs s1.c, N=%zu, NQ=%zu, NKV=%zu, HD=%zu, theta=%g, dq at +%zu elements, "
             "positions up to 32767", N, NQ, NKV, HD, theta, shift);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD, W = QD + 2 * KD;
    size_t *pos = (size_t *)mallocCheck(N * sizeof(size_t));
    int *pos_i = (int *)mallocCheck(N * sizeof(int));
    rope_test_positions(pos, pos_i, N);
    float *dq = host_random(N * QD, 2.0f), *dk = host_random(N * KD, 2.0f), *dv = host_random(N * KD, 2.0f);
    float *x = host_zeros(N * W), *ref = host_zeros(N * W), *extra = host_zeros(N * W);
    copy_columns(x, W, dq, QD, N, QD);
    copy_columns(x + QD, W, dk, KD, N, KD);
    copy_columns(x + QD + KD, W, dv, KD, N, KD);
    rope_qkv_reference(ref, extra, x, pos, N, NQ, NKV, HD, theta, 1, U);
    floatX *d_dq = to_device_shifted(dq, N * QD, shift), *d_dk = to_device(dk, N * KD), *d_dv = to_device(dv, N * KD);
    floatX *d_dqkv;
    cudaCheck(cudaMalloc((void **)&d_dqkv, N * W * sizeof(floatX)));
    cudaCheck(cudaMemsetAsync(d_dqkv, 0xff, N * W * sizeof(floatX), stream));   // NaNs: an element left unwritten fails
    int *d_pos = device_copy(pos_i, N);
    RopeTable table;
    rope_table_create(&table, 32768, (int)HD, theta, stream);
    rope_qkv_backward(d_dqkv, d_dq, d_dk, d_dv, d_pos, &table, (int)N, (int)NQ, (int)NKV, (int)HD, stream);
    float *got = from_device(d_dqkv, N * W);
    check_qkv_close("rope_qkv_backward", got, ref, extra, N, NQ, NKV, HD, U);
    rope_table_free(&table);
    free(pos); free(pos_i); free(dq); free(dk); free(dv); free(x); free(ref); free(extra); free(got);
    cudaCheck(cudaFree(d_dq - shift)); cudaCheck(cudaFree(d_dk)); cudaCheck(cudaFree(d_dv)); cudaCheck(cudaFree(d_dqkv));
    cudaCheck(cudaFree(d_pos));
    TEST_END();
}

// ----------------------------------------------------------------------------
// SwiGLU

// With sig = sigmoid(g): sig is off by at most 4 eps on either side (exp to
// 2 ulp, the add and the division), the factor sig (1 + g (1 - sig)) moves by
// at most (1 + |g|) times that, and the products add 6 roundings of at most
// |dout up| (1 + |g|): |d dgate| <= u|ref| + 16 eps |dout up| (1 + |g|).
// dup = dout g sig: u|ref| + 8 eps |dout g|. The outputs are written over the
// fused rows gateup (N,2I) they are computed from, [dgate | dup] in place of
// [gate | up], as the model calls it. shift_gu, shift_d: elements gateup and
// dout start past a 16-byte boundary (not 0, or I not a multiple of 8: the
// scalar fallback).
static void test_swiglu_backward(size_t N, size_t I, size_t shift_gu, size_t shift_d) {
    char name[192];
    snprintf(name, sizeof name, "swiglu_backward vs s1.c, N=%zu, I=%zu, gate in [-8, 8], in place over gateup (at +%zu elements), "
             "dout at +%zu", N, I, shift_gu, shift_d);
    TEST_BEGIN(name);
    size_t n = N * I;
    float *g = host_random(n, 8.0f), *u = host_random(n, 2.0f), *d = host_random(n, 1.0f), *gu = host_zeros(2 * n);
    float *ref_dg = host_zeros(n), *ref_du = host_zeros(n), *extra_dg = host_zeros(n), *extra_du = host_zeros(n);
    copy_columns(gu, 2 * I, g, I, N, I);
    copy_columns(gu + I, 2 * I, u, I, N, I);
    s1ref_swiglu_backward(ref_dg, ref_du, d, g, u, n);
    for (size_t i = 0; i < n; i++) {
        extra_dg[i] = 16.0f * EPS * fabsf(d[i] * u[i]) * (1.0f + fabsf(g[i]));
        extra_du[i] = 8.0f * EPS * fabsf(d[i] * g[i]);
    }
    floatX *d_gu = to_device_shifted(gu, 2 * n, shift_gu), *d_d = to_device_shifted(d, n, shift_d);
    swiglu_backward(d_gu, d_d, d_gu, (int)N, (int)I, stream);
    float *got = from_device(d_gu, 2 * n), *got_dg = host_zeros(n), *got_du = host_zeros(n);
    copy_columns(got_dg, I, got, 2 * I, N, I);
    copy_columns(got_du, I, got + I, 2 * I, N, I);
    check_close("swiglu_backward dgate", got_dg, ref_dg, n, U, 0.0f, extra_dg);
    check_close("swiglu_backward dup", got_du, ref_du, n, U, 0.0f, extra_du);
    free(g); free(u); free(d); free(gu); free(ref_dg); free(ref_du); free(extra_dg); free(extra_du);
    free(got); free(got_dg); free(got_du);
    cudaCheck(cudaFree(d_gu - shift_gu)); cudaCheck(cudaFree(d_d - shift_d));
    TEST_END();
}

// ----------------------------------------------------------------------------
// the classifier: LM head + masked CE, forward and backward in one pass

// Bounds, per row n with scale_n = grad_scale * weights[n], p = softmax(L):
//   logits: two fp32 dot products of H terms, |dL| <= 2 (H+1) eps A, A = sum_h |x w|;
//     dL_n the largest over the row
//   lse: the sum of V exponentials (2 ulp each), the online merges' rescalings (3
//     roundings each, at most V), the log: |dlse_n| <= dL_n + 4 (V+16) eps + 4 eps |lse_n|
//   p: relative delta_n = dL_n + dlse_n + 4 eps (1 + max_v |L - lse|) (the exp of a
//     rounded difference, each side)
//   dlogits: the bf16 rounding u |d| plus scale_n p delta_n
//   dx_nh = sum_v d_nv w_vh: the dlogits' errors times |w|, plus two fp32 sums of V
//     terms: 2 (V+1) eps (1+u) sum_v |d w|
//   dweight_vh = prev + sum_n d_nv x_nh: the same with |x| over N rows; the kernel
//     adds K = ceil(N / chunk_rows) chunk sums onto prev one by one, an fp32 sum of
//     K+1 numbers: 2 (N+K+1) eps (1+u) sum |d x| + (K+2) eps |prev|
//   loss = sum_n weights[n] (lse_n - L_n,target): sum_n weights[n] (dlse_n + dL_n)
//     + (N+3) eps sum_n |loss_n| (s1.c adds in double, the kernel in fp32)
// The bounds' magnitudes (A, L, lse) come from an fp64 evaluation here: they only
// scale the bounds, the compared values are s1.c's.
static void test_classifier(size_t N, size_t H, size_t V, int chunk_rows, float grad_scale, int tied) {
    char name[224];
    snprintf(name, sizeof name, "classifier_forward_backward vs s1.c, N=%zu, H=%zu, V=%zu, chunks of %d rows, grad_scale %g, %s",
             N, H, V, chunk_rows, grad_scale, tied ? "tied (dweight accumulates onto the embedding's)" : "untied");
    TEST_BEGIN(name);
    float *x = host_random(N * H, 2.0f), *w = host_random(V * H, 1.0f);
    float *weights = host_zeros(N), *prev_dw = tied ? host_random(V * H, 0.5f) : host_zeros(V * H);
    uint32_t *targets = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    for (size_t n = 0; n < N; n++) {   // rows 16..31 unscored: with 16-row chunks one chunk is skipped
        int scored = (n % 3 != 0) && !(n >= 16 && n < 32);
        weights[n] = scored ? 1.0f / (float)(n + 3) : 0.0f;
        targets[n] = scored ? (uint32_t)((n * 97 + 5) % V) : 0;
    }
    float *ref_dx = host_zeros(N * H), *ref_dw = host_copy(prev_dw, V * H), *ref_dl = host_zeros(N * V);
    float ref_loss = s1ref_classifier_backward(ref_dx, ref_dw, ref_dl, x, w, targets, weights, grad_scale, N, H, V);

    // the bounds
    const size_t K = (N + chunk_rows - 1) / chunk_rows;   // chunks
    float *delta = host_zeros(N), *pw = host_zeros(N * V), *extra_dx = host_zeros(N * H), *extra_dw = host_zeros(V * H);
    double *L = (double *)mallocCheck(V * sizeof(double));
    float loss_bound = 0.0f;
    for (size_t n = 0; n < N; n++) {
        if (weights[n] == 0.0f) continue;
        double mx = -INFINITY, s = 0.0, dL = 0.0;
        for (size_t v = 0; v < V; v++) {
            double dot = 0.0, A = 0.0;
            for (size_t h = 0; h < H; h++) { dot += (double)x[n * H + h] * w[v * H + h]; A += fabs((double)x[n * H + h] * w[v * H + h]); }
            L[v] = dot;
            mx = fmax(mx, dot);
            dL = fmax(dL, 2.0 * (H + 1) * EPS * A + EPS * fabs(dot));
        }
        double far = 0.0;
        for (size_t v = 0; v < V; v++) s += exp(L[v] - mx);
        double lse = mx + log(s);
        for (size_t v = 0; v < V; v++) far = fmax(far, fabs(L[v] - lse));
        double dlse = dL + 4.0 * (V + 16) * EPS + 4.0 * EPS * fabs(lse);
        delta[n] = (float)(dL + dlse + 4.0 * EPS * (1.0 + far));
        float scale = grad_scale * weights[n];
        for (size_t v = 0; v < V; v++) pw[n * V + v] = (float)(fabs(scale) * exp(L[v] - lse));
        loss_bound += weights[n] * (float)(dlse + dL) + (N + 3) * EPS * weights[n] * (float)fabs(lse - L[targets[n]]);
    }
    loss_bound += EPS * fabsf(ref_loss);
    for (size_t n = 0; n < N; n++)
        for (size_t v = 0; v < V; v++) {
            float d = fabsf(ref_dl[n * V + v]), e = U * d + pw[n * V + v] * delta[n];   // error of one dlogit
            float sx = 2.0f * (V + 1) * EPS * (1.0f + U) * d, sw = 2.0f * (N + K + 1) * EPS * (1.0f + U) * d;
            for (size_t h = 0; h < H; h++) {
                extra_dx[n * H + h] += (e + sx) * fabsf(w[v * H + h]);
                extra_dw[v * H + h] += (e + sw) * fabsf(x[n * H + h]);
            }
        }
    for (size_t i = 0; i < V * H; i++) extra_dw[i] += (K + 2) * EPS * fabsf(prev_dw[i]);

    floatX *d_x = to_device(x, N * H), *d_w = to_device(w, V * H);
    uint32_t *d_t = device_copy(targets, N);
    float *d_weights = device_copy(weights, N), *d_losses, *d_logits, *d_loss;
    cudaCheck(cudaMalloc((void **)&d_losses, N * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_logits, (size_t)chunk_rows * V * sizeof(float)));   // one chunk, never (N,V)
    cudaCheck(cudaMalloc((void **)&d_loss, sizeof(float)));
    Gemm *gemm = gemm_create();
    float *junk = host_random(N * H, 7.0f), got_loss[2], *got_dx[2], *got_dw[2];
    for (int run = 0; run < 2; run++) {   // twice from the same state: determinism
        float *d_dx = device_copy(junk, N * H), *d_dw = device_copy(prev_dw, V * H);   // dx is written, skipped rows zeroed
        classifier_forward_backward(gemm, d_loss, d_losses, d_logits, d_dx, d_dw, d_x, d_w, d_t, d_weights, weights,
                                    grad_scale, (int)N, (int)H, (int)V, chunk_rows, stream);
        copy_to_host(&got_loss[run], d_loss, sizeof(float), stream);
        got_dx[run] = host_from(d_dx, N * H);
        got_dw[run] = host_from(d_dw, V * H);
        cudaCheck(cudaFree(d_dx)); cudaCheck(cudaFree(d_dw));
    }
    float fwd_loss;   // the forward-only path shares the kernel: the same loss, bit for bit
    lm_head_loss(gemm, d_loss, d_losses, d_logits, d_x, d_w, d_t, d_weights, weights, (int)N, (int)H, (int)V, chunk_rows, stream);
    copy_to_host(&fwd_loss, d_loss, sizeof(float), stream);

    check_close("classifier loss", &got_loss[0], &ref_loss, 1, 0.0f, loss_bound, NULL);
    check_close("classifier dx", got_dx[0], ref_dx, N * H, 0.0f, 0.0f, extra_dx);
    check_close("classifier dweight", got_dw[0], ref_dw, V * H, 0.0f, 0.0f, extra_dw);
    CHECK(got_loss[0] == got_loss[1], "loss run twice: %.9g vs %.9g", got_loss[0], got_loss[1]);
    check_bits("classifier dx run twice", got_dx[0], got_dx[1], N * H * sizeof(float));
    check_bits("classifier dweight run twice", got_dw[0], got_dw[1], V * H * sizeof(float));
    CHECK(fwd_loss == got_loss[0], "lm_head_loss %.9g != classifier_forward_backward loss %.9g", fwd_loss, got_loss[0]);
    gemm_destroy(gemm);
    free(x); free(w); free(weights); free(prev_dw); free(targets); free(ref_dx); free(ref_dw); free(ref_dl);
    free(delta); free(pw); free(extra_dx); free(extra_dw); free(L); free(junk);
    for (int run = 0; run < 2; run++) { free(got_dx[run]); free(got_dw[run]); }
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_t)); cudaCheck(cudaFree(d_weights));
    cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_loss));
    TEST_END();
}

// ----------------------------------------------------------------------------
// the optimizer: global norm and AdamW

// Both sum the exact double squares in double (relative error < n 2^-53, under
// 2^-35 here) and cast sqrt to float: they can differ only where that straddles
// a float rounding boundary, by one float ulp: |err| <= 2^-23 |ref|.
static void test_global_norm(size_t n) {
    char name[160];
    snprintf(name, sizeof name, "global_norm vs s1.c qwen2_grad_norm, n=%zu (%d blocks x %d threads)", n, GLOBAL_NORM_BLOCKS, GLOBAL_NORM_THREADS);
    TEST_BEGIN(name);
    float *g = (float *)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) g[i] = frand_f32(i % 7 == 0 ? 3.0f : 1e-3f);   // magnitudes apart
    float ref = s1ref_grad_norm(g, n);
    float *d_g = device_copy(g, n);
    double *d_scratch, sumsq[2];
    cudaCheck(cudaMalloc((void **)&d_scratch, GLOBAL_NORM_SCRATCH * sizeof(double)));
    float got = global_norm(d_g, n, d_scratch, stream);
    copy_to_host(&sumsq[0], d_scratch + GLOBAL_NORM_BLOCKS, sizeof(double), stream);
    float got2 = global_norm(d_g, n, d_scratch, stream);
    copy_to_host(&sumsq[1], d_scratch + GLOBAL_NORM_BLOCKS, sizeof(double), stream);
    check_close("global_norm", &got, &ref, 1, 2 * 1.0f / 16777216.0f, 0.0f, NULL);
    check_bits("global_norm sum of squares run twice", &sumsq[0], &sumsq[1], sizeof(double));
    CHECK(got == got2, "global_norm run twice: %.9g vs %.9g", got, got2);
    free(g);
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_scratch));
    TEST_END();
}

// AdamW: bit-identical to s1.c's qwen2_update on a tiny Qwen2 (qwen2_init_random)
// over 3 steps with fresh fp32 gradients each step: every tensor group with its
// own decay (weights decay, biases never, RMSNorm weights when
// decay_norm_weights), the clip factor from s1.c's norm (the GPU's norm is
// checked above; it may differ by one ulp, which would change the clip).
// The bf16 weights must equal bf16(master) after every step.
// Each tensor's slice starts at its offset in the flat buffers, so the vector
// kernel's scalar head and tail are hit at most tensors. shift: elements the bf16
// weights start past a 16-byte boundary (not a multiple of 4: the fp32 arrays never
// reach their 16-byte boundary with them, so every step takes the scalar fallback).
static void test_adamw(int tied, float weight_decay, float max_grad_norm, int decay_norm_weights, float grad_scale, size_t shift) {
    char name[256];
    snprintf(name, sizeof name, "adamw_update == s1.c qwen2_update bit for bit, 3 steps, %s, weight_decay %g%s, max_grad_norm %g%s",
             tied ? "tied" : "untied", weight_decay, decay_norm_weights ? " (norm weights too)" : "", max_grad_norm,
             shift ? ", bf16 weights off the 16-byte phase of the rest" : "");
    TEST_BEGIN(name);
    const float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
    const double lrs[3] = {1e-3, 7.5e-4, 2e-4};
    void *model = s1ref_tiny_model(37, 12, 20, 2, 2, 1, 6, tied, 77);
    size_t n = s1ref_model_num_parameters(model);
    float *params = s1ref_model_params(model), *grads = s1ref_model_grads(model);
    float *d_master = device_copy(params, n), *d_m, *d_v, *d_g;
    floatX *d_params = to_device_shifted(params, n, shift);
    cudaCheck(cudaMalloc((void **)&d_m, n * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_v, n * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_g, n * sizeof(float)));
    cudaCheck(cudaMemsetAsync(d_m, 0, n * sizeof(float), stream));
    cudaCheck(cudaMemsetAsync(d_v, 0, n * sizeof(float), stream));
    float clip_seen = 1.0f;
    for (int step = 1; step <= 3; step++) {
        for (size_t i = 0; i < n; i++) grads[i] = frand_f32(grad_scale);
        copy_to_device(d_g, grads, n * sizeof(float), stream);
        double lr = lrs[step - 1];
        float norm = s1ref_model_update(model, lr, beta1, beta2, eps, weight_decay, max_grad_norm, decay_norm_weights);
        float clip = adamw_clip_factor(norm, max_grad_norm);
        clip_seen = fminf(clip_seen, clip);
        size_t off = 0;
        for (int t = 0; t < s1ref_num_parameter_tensors(); t++) {
            int kind;
            size_t numel = s1ref_model_tensor(model, t, &kind);
            int decays = kind == 0 || (kind == 2 && decay_norm_weights);   // KIND_WEIGHT, KIND_NORM
            AdamWScalars s = adamw_scalars(lr, (size_t)step, beta1, beta2, eps, decays ? (double)weight_decay : 0.0);
            if (numel > 0) adamw_update(d_params + off, d_master + off, d_m + off, d_v + off, d_g + off, numel, clip, &s, stream);
            off += numel;
        }
        CHECK(off == n, "tensors cover %zu of %zu parameters", off, n);
        float *master = host_from(d_master, n), *m = host_from(d_m, n), *v = host_from(d_v, n), *pb = from_device(d_params, n);
        char what[64];
        snprintf(what, sizeof what, "step %d master weights", step);
        check_bits(what, master, params, n * sizeof(float));
        snprintf(what, sizeof what, "step %d exp_avg", step);
        check_bits(what, m, s1ref_model_adam_m(model), n * sizeof(float));
        snprintf(what, sizeof what, "step %d exp_avg_sq", step);
        check_bits(what, v, s1ref_model_adam_v(model), n * sizeof(float));
        int same = 1;
        for (size_t i = 0; i < n; i++) same &= pb[i] == __bfloat162float(__float2bfloat16(master[i]));
        CHECK(same, "step %d: bf16 weights != bf16(master)", step);
        free(master); free(m); free(v); free(pb);
    }
    printf("note: adamw %zu parameters, 3 steps bit-identical, smallest clip factor %.4g\n", n, clip_seen);
    CHECK(max_grad_norm <= 0 || max_grad_norm > 1e3f || clip_seen < 1.0f, "the clipping case never clipped");
    s1ref_model_free(model);
    cudaCheck(cudaFree(d_master)); cudaCheck(cudaFree(d_params - shift)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_g));
    TEST_END();
}

int main(void) {
    kt_seed(4242);
    const uint32_t ids9[9] = {3, 0, 36, 3, 17, 17, 1, 35, 3};
    test_embedding_backward(9, 50, 37, ids9);
    uint32_t ids300[300];
    for (int i = 0; i < 300; i++) ids300[i] = (uint32_t)((i * 7 + i / 13) % 11);   // 11 ids, ~27 positions each
    test_embedding_backward(300, 70, 13, ids300);
    test_rmsnorm_backward(5, 33, 1);      // one block, C under a warp's stride
    test_rmsnorm_backward(100, 70, 1);    // 4 blocks of 25 rows
    test_rmsnorm_backward(70, 896, 0);    // 3 blocks (24, 24, 22 rows), Qwen2.5-0.5B's hidden size
    test_matmul_backward(70, 40, 19, CUDA_R_16BF, 0, 1, 1);   // 3 blocks for dbias
    test_matmul_backward(70, 40, 19, CUDA_R_16BF, 1, 1, 0);
    test_matmul_backward(7, 33, 45, CUDA_R_32F, 1, 1, 1);
    test_matmul_backward(33, 17, 9, CUDA_R_32F, 0, 1, 0);
    test_matmul_backward(40, 9, 300, CUDA_R_16BF, 0, 0, 1);   // dinp NULL; OC over a block of threads
    test_rope_qkv_backward(6, 2, 2, 64, 1e6, 0);     // GQA 1, HD 64: 16-byte vectors of 8 pairs
    test_rope_qkv_backward(6, 5, 1, 128, 1e6, 0);    // GQA 5, HD 128
    test_rope_qkv_backward(7, 8, 1, 64, 1e4, 0);     // GQA 8, 280 vectors: a full block of 256 and a partial one
    test_rope_qkv_backward(5, 3, 3, 12, 1e4, 0);     // HD/2 = 6: one pair per thread
    test_rope_qkv_backward(6, 5, 1, 64, 1e6, 3);     // dq off a 16-byte boundary: the scalar fallback
    test_rope_qkv_backward(617, 40, 8, 128, 1e6, 0); // Qwen2.5-32B's heads: over one grid, the loop strides
    test_swiglu_backward(7, 136, 0, 0);     // 17 vectors per half row
    test_swiglu_backward(5, 100, 0, 0);     // I % 8 != 0: the scalar fallback
    test_swiglu_backward(7, 136, 3, 3);     // gateup and dout off a 16-byte boundary: the scalar fallback
    test_swiglu_backward(7, 136, 0, 2);     // dout alone off it: the scalar fallback
    test_swiglu_backward(79, 27648, 0, 0);  // Qwen2.5-32B's I: over one grid, the vector loop strides
    test_classifier(37, 24, 301, 16, 1.0f, 0);    // chunk 16..31 skipped, partial last chunk (5 rows)
    test_classifier(37, 24, 301, 1, 0.37f, 1);    // one row per chunk: unscored rows skipped one by one
    test_classifier(37, 24, 301, 37, 2.5f, 1);    // one chunk
    test_classifier(9, 16, 1100, 4, 1.0f, 0);     // V over 2 x 256: the in-place walk takes 3 chunks of the row
    test_global_norm(1);
    test_global_norm(1000);
    test_global_norm(150001);                     // over one grid stride (264 x 256)
    test_adamw(0, 0.1f, 1.0f, 0, 0.5f, 0);        // clipped (norm ~ 20), RMSNorm weights not decayed
    test_adamw(1, 0.05f, 1.0f, 1, 0.5f, 0);       // tied, RMSNorm weights decayed
    test_adamw(0, 0.0f, 0.0f, 0, 1e-3f, 0);       // no decay, no clipping (clip = 1)
    test_adamw(1, 0.1f, 1e4f, 0, 1e-3f, 0);       // clipping on but the norm is under it: clip = 1
    test_adamw(0, 0.1f, 1.0f, 0, 0.5f, 3);        // the scalar fallback, as the first
    return test_summary();
}
