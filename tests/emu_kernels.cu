/*
 * emu_kernels.cu: the forward kernels of common/kernels.cuh against s1.c, the
 * fp32 CPU oracle (linked in through tests/s1_ref.c), on the CPU through the
 * CUDA emulator; tests/run.sh runs it in the forward, reverse and random thread
 * schedules. Shapes are small but cut across the kernels' tiles and blocks
 * (attention tiles of 16 query rows x 32 keys, warps of 32 lanes, LM-head chunks).
 *
 * Tolerances. Inputs are bf16 numbers (generated, then rounded), so the kernel
 * and the oracle start from identical values and differ only by the kernel's
 * bf16 roundings and fp32 summation order. bf16 keeps 8 significant bits (7
 * stored + the implicit one), so one round-to-nearest moves a value by at most
 * half a unit in the last place, u = 2^-8 of itself (2^-9 is only reached at
 * the top of a binade: 0.61397 rounds to 0.6171875, 0.52% off). Per kernel:
 *   embedding     a copy: exact
 *   RMSNorm       y = x*r rounded, then weight*y rounded: 2 roundings, |err| <= 2u|ref| + 1e-6
 *   linear        fp32 sum rounded once: u|ref|, plus the oracle's own fp32 summation
 *                 error (<= C * 2^-24 * sum|x w|, at most 1e-4 for these shapes)
 *   RoPE          cos, sin rounded to bf16 (HF's cast point) and the result rounded:
 *                 u(|a| + |b|) + u|ref| + 1e-6 (a, b the rotated pair); v copied: exact
 *   attention     fp32 inside, output rounded once: u|ref| + 1e-5 max|v|
 *   SwiGLU        one rounding: u|ref| + 1e-6
 *   LM head + CE  fp32 throughout (logits are fp32, as HF upcasts them): 3e-5
 *                 relative (fp32 sums of <= 301 terms)
 * The whole model's tolerance is derived at test_model_loss below.
 */
#include "common/kernels.cuh"
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*), seeded inputs, copies, check_close

static const float U = 1.0f / 256.0f;   // 2^-8: one bf16 rounding, relative

// ----------------------------------------------------------------------------
// the layers

static void test_embedding(void) {
    TEST_BEGIN("embedding_forward == s1.c (exact copy), N=9, C=50, repeated ids");
    const size_t V = 37, C = 50, N = 9;
    uint32_t ids[N] = {3, 0, 36, 3, 17, 17, 1, 35, 3};
    float *table = host_random(V * C, 1.0f), *ref = (float *)mallocCheck(N * C * sizeof(float));
    s1ref_embedding(ref, ids, table, N, C);
    floatX *d_table = to_device(table, V * C), *d_out;
    uint32_t *d_ids = device_copy(ids, N);
    cudaCheck(cudaMalloc((void **)&d_out, N * C * sizeof(floatX)));
    embedding_forward(d_out, d_ids, d_table, N, C, stream);
    float *got = from_device(d_out, N * C);
    check_close("embedding", got, ref, N * C, 0.0f, 0.0f, NULL);
    free(table); free(ref); free(got);
    cudaCheck(cudaFree(d_table)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_ids));
    TEST_END();
}

// shift: elements the input starts past a 16-byte boundary (not 0: the scalar fallback)
static void test_rmsnorm(size_t N, size_t C, size_t shift) {
    char name[128];
    if (shift == 0) snprintf(name, sizeof name, "rmsnorm_forward vs s1.c, N=%zu, C=%zu (bound 2u|ref| + 1e-6)", N, C);
    else snprintf(name, sizeof name, "rmsnorm_forward vs s1.c, N=%zu, C=%zu, input at +%zu elements (bound 2u|ref| + 1e-6)", N, C, shift);
    TEST_BEGIN(name);
    float *x = host_random(N * C, 3.0f), *w = host_random(C, 1.5f), *ref = (float *)mallocCheck(N * C * sizeof(float));
    s1ref_rmsnorm(ref, x, w, N, C, 1e-6f);
    floatX *d_x = to_device_shifted(x, N * C, shift), *d_w = to_device(w, C), *d_out;
    cudaCheck(cudaMalloc((void **)&d_out, N * C * sizeof(floatX)));
    rmsnorm_forward(d_out, NULL, d_x, d_w, N, C, 1e-6f, stream);
    float *got = from_device(d_out, N * C);
    check_close("rmsnorm", got, ref, N * C, 2 * U, 1e-6f, NULL);
    free(x); free(w); free(ref); free(got);
    cudaCheck(cudaFree(d_x - shift)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

static void test_matmul(int with_bias, int residual) {
    const size_t N = 7, C = 40, OC = 19;
    char name[160];
    snprintf(name, sizeof name, "matmul_forward (cuBLASLt%s%s) vs s1.c, N=%zu, C=%zu, OC=%zu (bound u|ref| + 1e-4)",
             with_bias ? ", bias epilogue" : "", residual ? ", residual add" : "", N, C, OC);
    TEST_BEGIN(name);
    float *x = host_random(N * C, 1.0f), *w = host_random(OC * C, 1.0f), *b = host_random(OC, 1.0f);
    float *prev = host_random(N * OC, 4.0f), *ref = (float *)mallocCheck(N * OC * sizeof(float));
    s1ref_matmul(ref, x, w, with_bias ? b : NULL, N, C, OC);
    if (residual) for (size_t i = 0; i < N * OC; i++) ref[i] += prev[i];
    floatX *d_x = to_device(x, N * C), *d_w = to_device(w, OC * C), *d_b = to_device(b, OC), *d_out = to_device(prev, N * OC);
    Gemm *gemm = gemm_create();
    matmul_forward(gemm, d_out, d_x, d_w, with_bias ? d_b : NULL, N, C, OC, residual, stream);
    float *got = from_device(d_out, N * OC);
    check_close("matmul", got, ref, N * OC, U, 1e-4f, NULL);
    gemm_destroy(gemm);
    free(x); free(w); free(b); free(prev); free(ref); free(got);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// The table is s1.c's, rounded: every bf16 entry is float_to_bf16 of s1.c's
// fp32 entry (both computed through common/detmath.h), bit for bit.
// gemm_lt() caches the heuristic's algorithm per problem, alignments included: the same shape on
// buffers one element past a 16-byte boundary needs an algorithm of its own, since cuBLASLt (and the
// emulator, common/cuemu_blas.h) refuses buffers less aligned than their algorithm was chosen for.
// One Gemm runs the shape aligned, shifted, and both again from the cache; each result against s1.c
// (not against each other: on a GPU two algorithms may sum in different orders).
static void test_matmul_alignments(void) {
    const size_t N = 8, C = 64, OC = 24;   // rows of 128 and 48 bytes: 16-byte aligned at offset 0
    TEST_BEGIN("matmul_forward: one shape at two alignments, twice each (the algorithm cache), vs s1.c");
    float *x = host_random(N * C, 1.0f), *w = host_random(OC * C, 1.0f), *b = host_random(OC, 1.0f);
    float *zero = (float *)callocCheck(N * OC, sizeof(float)), *ref = (float *)mallocCheck(N * OC * sizeof(float));
    s1ref_matmul(ref, x, w, b, N, C, OC);
    Gemm *gemm = gemm_create();
    for (int round = 0; round < 2; round++)
        for (size_t shift = 0; shift < 2; shift++) {
            floatX *d_x = to_device_shifted(x, N * C, shift), *d_w = to_device_shifted(w, OC * C, shift);
            floatX *d_b = to_device_shifted(b, OC, shift), *d_out = to_device_shifted(zero, N * OC, shift);
            matmul_forward(gemm, d_out, d_x, d_w, d_b, N, C, OC, 0, stream);
            float *got = from_device(d_out, N * OC);
            check_close(shift ? "matmul, buffers 2-byte aligned" : "matmul, buffers 16-byte aligned", got, ref, N * OC, U, 1e-4f, NULL);
            free(got);
            floatX *bufs[] = {d_x, d_w, d_b, d_out};
            for (size_t i = 0; i < 4; i++) cudaCheck(cudaFree(bufs[i] - shift));
        }
    gemm_destroy(gemm);
    free(x); free(w); free(b); free(zero); free(ref);
    TEST_END();
}

static void test_rope_table(size_t HD, double theta) {
    const size_t P = 32768, half = HD / 2, n = P * half;
    char name[160];
    snprintf(name, sizeof name, "rope_table_create = bf16(s1.c's rope_table_ensure()) bit for bit, HD=%zu, theta=%g, %zu positions",
             HD, theta, P);
    TEST_BEGIN(name);
    float *cos_ref = (float *)mallocCheck(n * sizeof(float)), *sin_ref = (float *)mallocCheck(n * sizeof(float));
    s1ref_rope_table(cos_ref, sin_ref, P, HD, theta);
    RopeTable t;
    rope_table_create(&t, (int)P, (int)HD, theta, stream);
    uint16_t *c = (uint16_t *)mallocCheck(n * sizeof(uint16_t)), *s = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
    cudaCheck(cudaMemcpy(c, t.cos, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(s, t.sin, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    size_t bad = 0, first = n;
    for (size_t j = 0; j < n; j++)
        if ((c[j] != float_to_bf16(cos_ref[j]) || s[j] != float_to_bf16(sin_ref[j])) && bad++ == 0) first = j;
    CHECK(bad == 0, "%zu entries differ, the first at position %zu, pair %zu", bad, first / half, first % half);
    rope_table_free(&t);
    free(cos_ref); free(sin_ref); free(c); free(s);
    TEST_END();
}

// The fused projection rows qkv (N, NQ + 2 NKV, HD) into q and k rotated as
// s1.c's rope_forward() rotates them, and v copied (bit for bit). shift:
// elements qkv starts past a 16-byte boundary (not 0: the scalar fallback).
static void test_rope_qkv(size_t N, size_t NQ, size_t NKV, size_t HD, double theta, size_t shift) {
    char name[192];
    snprintf(name, sizeof name, "rope_qkv_forward vs s1.c, N=%zu, NQ=%zu, NKV=%zu, HD=%zu, theta=%g, qkv at +%zu elements, "
             "positions up to 32767", N, NQ, NKV, HD, theta, shift);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD, W = QD + 2 * KD;
    size_t *pos = (size_t *)mallocCheck(N * sizeof(size_t));
    int *pos_i = (int *)mallocCheck(N * sizeof(int));
    rope_test_positions(pos, pos_i, N);
    float *x = host_random(N * W, 2.0f), *ref = (float *)mallocCheck(N * W * sizeof(float));
    float *extra = (float *)mallocCheck(N * W * sizeof(float)), *got = (float *)mallocCheck(N * W * sizeof(float));
    rope_qkv_reference(ref, extra, x, pos, N, NQ, NKV, HD, theta, 0, U);
    floatX *d_qkv = to_device_shifted(x, N * W, shift), *d_q, *d_k, *d_v;
    cudaCheck(cudaMalloc((void **)&d_q, N * QD * sizeof(floatX)));
    cudaCheck(cudaMalloc((void **)&d_k, N * KD * sizeof(floatX)));
    cudaCheck(cudaMalloc((void **)&d_v, N * KD * sizeof(floatX)));
    floatX *outs[3] = {d_q, d_k, d_v};
    size_t widths[3] = {QD, KD, KD};
    for (int b = 0; b < 3; b++)   // NaNs: an element left unwritten fails
        cudaCheck(cudaMemsetAsync(outs[b], 0xff, N * widths[b] * sizeof(floatX), stream));
    int *d_pos = device_copy(pos_i, N);
    RopeTable table;
    rope_table_create(&table, 32768, (int)HD, theta, stream);
    rope_qkv_forward(d_q, d_k, d_v, d_qkv, d_pos, &table, (int)N, (int)NQ, (int)NKV, (int)HD, stream);
    float *got_q = from_device(d_q, N * QD), *got_k = from_device(d_k, N * KD), *got_v = from_device(d_v, N * KD);
    copy_columns(got, W, got_q, QD, N, QD);
    copy_columns(got + QD, W, got_k, KD, N, KD);
    copy_columns(got + QD + KD, W, got_v, KD, N, KD);
    check_qkv_close("rope_qkv_forward", got, ref, extra, N, NQ, NKV, HD, U);
    rope_table_free(&table);
    free(pos); free(pos_i); free(x); free(ref); free(extra); free(got); free(got_q); free(got_k); free(got_v);
    cudaCheck(cudaFree(d_qkv - shift)); cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v));
    cudaCheck(cudaFree(d_pos));
    TEST_END();
}

// Tq query rows after `past` keys: the rows past..past+Tq-1 of s1.c's attention
// over the whole past+Tq sequence (past = 0: a training sequence; past > 0: the
// KV-cache path of decoding).
static void test_attention(size_t T, size_t past, size_t NQ, size_t NKV, size_t HD) {
    char name[160];
    snprintf(name, sizeof name, "attention_forward vs s1.c, %zu rows after %zu cached, NQ=%zu, NKV=%zu, HD=%zu",
             T - past, past, NQ, NKV, HD);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD, Tq = T - past;
    float *q = host_random(T * QD, 2.0f), *k = host_random(T * KD, 2.0f), *v = host_random(T * KD, 1.0f);
    float *ref = (float *)mallocCheck(T * QD * sizeof(float));
    s1ref_attention(ref, q, k, v, T, NQ, NKV, HD);
    floatX *d_q = to_device(q + past * QD, Tq * QD), *d_k = to_device(k, T * KD), *d_v = to_device(v, T * KD), *d_out;
    cudaCheck(cudaMalloc((void **)&d_out, Tq * QD * sizeof(floatX)));
    attention_forward_cuda_cores(d_out, NULL, d_q, d_k, d_v, (int)Tq, (int)past, (int)NQ, (int)NKV, (int)HD, stream);
    float *got = from_device(d_out, Tq * QD);
    check_close("attention", got, ref + past * QD, Tq * QD, U, 1e-5f, NULL);   // max|v| = 1
    free(q); free(k); free(v); free(ref); free(got);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// One new token against ntok cached keys (its own included): the last row of
// s1.c's attention. As gpu_decode() runs it: the position ntok - 1 in device
// memory, the cache longer than ntok (its rows past ntok NaN bytes: a read past
// the length fails).
static void test_attention_decode(size_t ntok, size_t NQ, size_t NKV, size_t HD) {
    char name[160];
    snprintf(name, sizeof name, "attention_decode vs s1.c, 1 token over %zu keys, NQ=%zu, NKV=%zu, HD=%zu", ntok, NQ, NKV, HD);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD, rows = ntok + 40;
    float *q = host_random(ntok * QD, 2.0f), *k = host_random(ntok * KD, 2.0f), *v = host_random(ntok * KD, 1.0f);
    float *ref = (float *)mallocCheck(ntok * QD * sizeof(float));
    s1ref_attention(ref, q, k, v, ntok, NQ, NKV, HD);
    floatX *d_q = to_device(q + (ntok - 1) * QD, QD), *d_k = to_device_nan_tail(k, ntok * KD, rows * KD);
    floatX *d_v = to_device_nan_tail(v, ntok * KD, rows * KD), *d_out;
    int pos = (int)ntok - 1, *d_pos = device_copy(&pos, 1);
    cudaCheck(cudaMalloc((void **)&d_out, QD * sizeof(floatX)));
    attention_decode(d_out, d_q, d_k, d_v, d_pos, (int)NQ, (int)NKV, (int)HD, stream);
    float *got = from_device(d_out, QD);
    check_close("attention_decode", got, ref + (ntok - 1) * QD, QD, U, 1e-5f, NULL);   // max|v| = 1
    free(q); free(k); free(v); free(ref); free(got);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_pos));
    cudaCheck(cudaFree(d_out));
    TEST_END();
}

// gate and up as the model holds them, the two halves of each fused row gateup
// (N,2I). shift: elements gateup starts past a 16-byte boundary (not 0, or I
// not a multiple of 8: the scalar fallback).
static void test_swiglu(size_t N, size_t I, size_t shift) {
    char name[160];
    snprintf(name, sizeof name, "swiglu_forward vs s1.c, N=%zu, I=%zu, gateup at +%zu elements, gate in [-8, 8] (bound u|ref| + 1e-6)",
             N, I, shift);
    TEST_BEGIN(name);
    size_t n = N * I;
    float *g = host_random(n, 8.0f), *u = host_random(n, 2.0f), *gu = (float *)mallocCheck(2 * n * sizeof(float));
    float *ref = (float *)mallocCheck(n * sizeof(float));
    copy_columns(gu, 2 * I, g, I, N, I);
    copy_columns(gu + I, 2 * I, u, I, N, I);
    s1ref_swiglu(ref, g, u, n);
    floatX *d_gu = to_device_shifted(gu, 2 * n, shift), *d_out;
    cudaCheck(cudaMalloc((void **)&d_out, n * sizeof(floatX)));
    swiglu_forward(d_out, d_gu, (int)N, (int)I, stream);
    float *got = from_device(d_out, n);
    check_close("swiglu", got, ref, n, U, 1e-6f, NULL);
    free(g); free(u); free(gu); free(ref); free(got);
    cudaCheck(cudaFree(d_gu - shift)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// The chunked LM head + masked CE against s1.c's full (N,V) logits + CE. Rows
// 16..31 are all unscored, so with 16-row chunks a whole chunk is skipped.
static void test_lm_head_loss(int chunk_rows) {
    const size_t N = 37, H = 24, V = 301;
    char name[160];
    snprintf(name, sizeof name, "lm_head_loss vs s1.c, N=%zu, V=%zu, chunks of %d rows (bound 3e-5 relative)", N, V, chunk_rows);
    TEST_BEGIN(name);
    float *x = host_random(N * H, 2.0f), *w = host_random(V * H, 1.0f), weights[N];
    uint32_t targets[N];
    for (size_t n = 0; n < N; n++) {
        int scored = (n % 3 != 0) && !(n >= 16 && n < 32);
        weights[n] = scored ? 1.0f / (float)(n + 3) : 0.0f;
        targets[n] = scored ? (uint32_t)((n * 97 + 5) % V) : 0;
    }
    float ref = s1ref_lm_head_loss(x, w, targets, weights, N, H, V);
    floatX *d_x = to_device(x, N * H), *d_w = to_device(w, V * H);
    uint32_t *d_t = device_copy(targets, N);
    float *d_weights = device_copy(weights, N), *d_losses, *d_logits, *d_loss, got;
    cudaCheck(cudaMalloc((void **)&d_losses, N * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_logits, (size_t)chunk_rows * V * sizeof(float)));   // one chunk, never (N,V)
    cudaCheck(cudaMalloc((void **)&d_loss, sizeof(float)));
    Gemm *gemm = gemm_create();
    lm_head_loss(gemm, d_loss, d_losses, d_logits, d_x, d_w, d_t, d_weights, weights, N, H, V, chunk_rows, stream);
    copy_to_host(&got, d_loss, sizeof(float), stream);
    check_close("lm_head_loss", &got, &ref, 1, 3e-5f, 0.0f, NULL);
    gemm_destroy(gemm);
    free(x); free(w);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_t)); cudaCheck(cudaFree(d_weights));
    cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_loss));
    TEST_END();
}

// ----------------------------------------------------------------------------
// the whole model on the HF fixtures

// Tolerance of the whole forward pass. The oracle runs s1.c with the weights
// rounded to bf16, as the GPU holds them, so only the activations' roundings
// differ. Logits: each is a dot product of the final RMSNorm's output (2 bf16
// roundings, 2u relative) with the head, fed by a residual stream that went
// through ~10 roundings per layer, most of them independent (so they grow
// like the square root of their count and partly average out in the dot
// products). We allow LOGIT_ROUNDINGS * u of the largest logit magnitude: the
// final norm's 2 roundings plus as much again for everything upstream
// (measured: 0.65u tied, 1.5u gqa). Loss: a mean of cross-entropies, and
// d CE / d logits = softmax - onehot has an L1 norm <= 2, so
// |loss error| <= 2 max|logit error|.
#define LOGIT_ROUNDINGS 4.0f

static void test_model_loss(const char *dir) {
    char name[256];
    snprintf(name, sizeof name, "gpu_forward loss == s1.c loss (bf16 weights), == mean of per-sequence losses, %s, chunks of 16 and 1000 rows", dir);
    TEST_BEGIN(name);
    uint32_t *ids;
    uint8_t *mask;
    size_t *offsets;
    float hf_loss;
    size_t S = s1ref_fixture_batch(dir, &ids, &mask, &offsets, &hf_loss), N = offsets[S];
    void *ref_model = s1ref_model_load(dir, 1);
    float ref = s1ref_model_loss(ref_model, ids, mask, offsets, S);
    size_t V = s1ref_model_vocab(ref_model);
    float logit_scale = max_abs(s1ref_model_logits(ref_model), N * V);
    GpuModel m;
    gpu_model_load(&m, dir, 16, stream);   // 16 rows per chunk: 45 and 53 tokens end in partial chunks
    float got = gpu_forward(&m, ids, mask, offsets, S);
    // s1's normalisation, checked on its own (the bf16 bound above is too loose
    // to tell a per-sequence mean from a global token mean, which moves the tied
    // fixture's loss by 0.02): the batch loss is the mean of the sequences'
    // losses, each run alone. Per token the same arithmetic runs either way, so
    // only the fp32 sum of <= 53 terms differs: 1e-4 leaves room for a GPU
    // whose GEMMs pick another algorithm per shape.
    double mean = 0.0;
    for (size_t s = 0; s < S; s++) {
        size_t one[2] = {0, offsets[s + 1] - offsets[s]};
        mean += gpu_forward(&m, ids + offsets[s], mask + offsets[s], one, 1) / (double)S;
    }
    CHECK(fabs(got - mean) <= 1e-4, "batch loss %.7f != mean of per-sequence losses %.7f", got, mean);
    gpu_model_free(&m);
    gpu_model_load(&m, dir, 1000, stream);   // one chunk: chunking must not change a bit
    float got_one_chunk = gpu_forward(&m, ids, mask, offsets, S);
    gpu_model_free(&m);
    float bound = 2.0f * LOGIT_ROUNDINGS * U * logit_scale;
    printf("note: %s: loss gpu %.7f, s1.c (bf16 weights) %.7f, HF fp32 %.7f; |gpu - s1| %.3g, bound %.3g (max |logit| %.3g)\n",
           dir, got, ref, hf_loss, fabsf(got - ref), bound, logit_scale);
    CHECK(fabsf(got - ref) <= bound, "loss %.7f vs s1.c %.7f: error %.3g > bound %.3g", got, ref, fabsf(got - ref), bound);
    CHECK(got == got_one_chunk, "16-row chunks give %.9g, one chunk %.9g", got, got_one_chunk);
    s1ref_model_free(ref_model);
    free(ids); free(mask); free(offsets);
    TEST_END();
}

// Decoding with the KV cache vs s1.c's batched logits of the same sequence
// (the second one of the fixture batch), same logit bound. The tokens go in as
// a 7-token prompt, 4 single tokens, a 5-token chunk after 11 cached (the
// prompt path with past > 0), then single tokens: every path of gpu_decode().
static void test_decode(const char *dir) {
    char name[256];
    snprintf(name, sizeof name, "gpu_decode logits == s1.c batched logits (prompt, single tokens, chunk after cache), %s", dir);
    TEST_BEGIN(name);
    uint32_t *ids;
    uint8_t *mask;
    size_t *offsets;
    float hf_loss;
    s1ref_fixture_batch(dir, &ids, &mask, &offsets, &hf_loss);
    size_t T = offsets[2] - offsets[1];
    const uint32_t *seq = ids + offsets[1];
    void *ref_model = s1ref_model_load(dir, 1);
    size_t V = s1ref_model_vocab(ref_model), seq_off[2] = {0, T};
    s1ref_model_loss(ref_model, seq, NULL, seq_off, 1);
    const float *ref = s1ref_model_logits(ref_model);
    float bound = LOGIT_ROUNDINGS * U * max_abs(ref, T * V), worst = 0.0f;
    GpuModel m;
    gpu_model_load(&m, dir, 4, stream);
    GpuKVCache kv;
    gpu_kvcache_create(&kv, &m, T);
    size_t steps = 0;
    for (size_t t = 0; t < T; steps++) {
        size_t n = t == 0 ? 7 : t == 11 ? 5 : 1;
        if (n > T - t) n = T - t;
        const float *got = gpu_decode(&m, &kv, seq + t, n);
        t += n;
        for (size_t i = 0; i < V; i++) {
            float err = fabsf(got[i] - ref[(t - 1) * V + i]);
            worst = fmaxf(worst, err);
            CHECK(err <= bound, "position %zu, logit %zu: got %.7g, want %.7g (bound %.3g)", t - 1, i, got[i], ref[(t - 1) * V + i], bound);
        }
    }
    CHECK(kv.len == T, "cache holds %zu tokens, fed %zu", kv.len, T);
    printf("note: %s: decode logits max error %.3g over %zu calls, bound %.3g\n", dir, worst, steps, bound);
    gpu_kvcache_free(&kv);
    gpu_model_free(&m);
    s1ref_model_free(ref_model);
    free(ids); free(mask); free(offsets);
    TEST_END();
}

int main(void) {
    kt_seed(12345);
    test_embedding();
    test_rmsnorm(7, 100, 0);              // C % 8 != 0: one bf16 per access
    test_rmsnorm(3, 33, 0);
    test_rmsnorm(5, 896, 0);              // Qwen2.5-0.5B's hidden size: 16-byte vectors, 3.5 per lane
    test_rmsnorm(3, 40, 0);               // 5 vectors per row: lanes 5..31 idle
    test_rmsnorm(9, 5120, 0);             // Qwen2.5-32B's hidden size: 20 vectors per lane, 2 blocks of 8 rows
    test_rmsnorm(4, 64, 3);               // the input off a 16-byte boundary: the scalar fallback
    test_matmul(1, 0);
    test_matmul(0, 1);
    test_matmul(0, 0);
    test_matmul_alignments();
    test_rope_table(128, 1e6);            // Qwen2.5-32B's head dim and base, 32K positions
    test_rope_table(12, 1e4);
    test_rope_qkv(6, 2, 2, 64, 1e6, 0);     // GQA 1, HD 64: 16-byte vectors of 8 pairs, 4 per head
    test_rope_qkv(6, 5, 1, 128, 1e6, 0);    // GQA 5, HD 128, 8 vectors per head
    test_rope_qkv(7, 8, 1, 64, 1e4, 0);     // GQA 8, 280 vectors: one full block of 256 and a partial one
    test_rope_qkv(5, 3, 3, 12, 1e4, 0);     // HD/2 = 6: one pair per thread
    test_rope_qkv(6, 5, 1, 64, 1e6, 3);     // qkv off a 16-byte boundary: the scalar fallback
    test_rope_qkv(617, 40, 8, 128, 1e6, 0); // Qwen2.5-32B's heads, 276,416 vectors: over one grid, the loop strides
    test_attention(1, 0, 2, 1, 16);      // a single row
    test_attention(5, 0, 4, 2, 12);      // less than one tile, GQA 2:1
    test_attention(16, 0, 4, 1, 16);     // exactly one query tile
    test_attention(50, 0, 8, 2, 12);     // 4 query tiles (last partial), 2 key tiles
    test_attention(37, 0, 2, 1, 128);    // the largest head dim (4 dims per lane)
    test_attention(200, 0, 14, 2, 64);   // Qwen2.5-0.5B's heads (GQA 7:1, HD 64), 13 query tiles x 7 key tiles
    test_attention(41, 40, 4, 2, 16);    // decode: 1 new row after 40 cached keys
    test_attention(70, 63, 4, 2, 12);    // 7 new rows after 63 cached: they straddle key tiles
    test_attention_decode(1, 2, 1, 16);       // the first token: one key
    test_attention_decode(33, 4, 2, 12);      // two warps busy, the second with one key
    test_attention_decode(300, 14, 2, 64);    // GQA 7:1 as Qwen2.5-0.5B; every warp walks 1-2 tiles
    test_attention_decode(70, 2, 1, 128);     // the largest head dim
    test_swiglu(7, 136, 0);       // 17 vectors per half row (the tiny GQA fixture's I)
    test_swiglu(1, 4864, 0);      // one row of Qwen2.5-0.5B's MLP
    test_swiglu(5, 100, 0);       // I % 8 != 0: a vector would straddle two half rows, the scalar fallback
    test_swiglu(7, 136, 3);       // gateup off a 16-byte boundary: the scalar fallback
    test_swiglu(79, 27648, 0);    // Qwen2.5-32B's I, over one grid of 1056 x 256 threads x 8: the vector loop strides
    test_lm_head_loss(16);
    test_lm_head_loss(37);
    test_lm_head_loss(1);
    test_model_loss("tests/fixtures/qwen-tiny-tied");
    test_model_loss("tests/fixtures/qwen-tiny-gqa");
    test_decode("tests/fixtures/qwen-tiny-tied");
    test_decode("tests/fixtures/qwen-tiny-gqa");
    return test_summary();
}
