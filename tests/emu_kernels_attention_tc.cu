/*
 * emu_kernels_attention_tc.cu: the tensor-core attention forward kernel of
 * common/attention.cuh (attention_forward_tc_kernel: mma.sync, ldmatrix,
 * cp.async double buffering, P in bf16), reached through attention_forward()
 * (attention_tensor_cores: on by default), against s1.c's attention (the fp32 CPU
 * oracle, through tests/s1_ref.c), on the CPU through the CUDA emulator;
 * tests/run.sh runs it in the forward, reverse and random thread schedules.
 *
 * Shapes: head_dim 64 and 128; GQA ratios 1, 5 and 8; T up to 2048, so blocks of
 * 64 query rows and key tiles of 64 end part-way (the zero-filled remainder
 * paths), a single row, an exact tile, and rows after a KV cache (past > 0).
 *
 * The bound (derived in common/attention.cuh): the CUDA-core kernel's,
 * u|ref| + 1e-5 max|v| (tests/emu_kernels.cu; u = 2^-8, one bf16 rounding of the
 * output), plus what bf16 P adds, u sum_u w_tu |v_ud| with w the exact softmax
 * weights, computed here in double from the inputs.
 * The lse: each implementation's scores are off by at most (HD+1) e sig_tu
 * (e = 2^-24, sig_tu = scale sum_d |q_td k_ud|), its exps by 4e relative, its
 * sum of T terms by T e, its log and max by e|lse|; the two differ by at most
 * twice that: Lambda_t = 2e((HD+1) max_u sig_tu + T + 4 + |lse_t|) (first order).
 */
#include "common/attention.cuh"
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*), seeded inputs, copies, check_close

static const float U = 1.0f / 256.0f;   // 2^-8: one bf16 rounding, relative

// extra (T,NQ,HD): u sum_u w_tu |v_ud|; Lambda (T,NQ): the lse bound. In double from the inputs.
static void tc_bounds(float *extra, float *Lambda, const float *q, const float *k, const float *v, const float *lse,
                      size_t T, size_t NQ, size_t NKV, size_t HD) {
    double scale = 1.0 / sqrt((double)HD), e = ldexp(1.0, -24);
    double *s = (double *)mallocCheck(T * sizeof(double));
    size_t QD = NQ * HD, KD = NKV * HD;
    for (size_t h = 0; h < NQ; h++) {
        size_t kvh = h / (NQ / NKV);
        for (size_t t = 0; t < T; t++) {
            double mx = -INFINITY, sum = 0.0, sig_max = 0.0;
            for (size_t u = 0; u <= t; u++) {
                double dot = 0.0, sig = 0.0;
                for (size_t d = 0; d < HD; d++) {
                    double p = (double)q[t * QD + h * HD + d] * (double)k[u * KD + kvh * HD + d];
                    dot += p;
                    sig += fabs(p);
                }
                s[u] = dot * scale;
                mx = fmax(mx, s[u]);
                sig_max = fmax(sig_max, sig * scale);
            }
            for (size_t u = 0; u <= t; u++) sum += exp(s[u] - mx);
            for (size_t d = 0; d < HD; d++) {
                double a = 0.0;
                for (size_t u = 0; u <= t; u++) a += exp(s[u] - mx) / sum * fabs((double)v[u * KD + kvh * HD + d]);
                extra[t * QD + h * HD + d] = (float)(U * a);
            }
            Lambda[t * NQ + h] = (float)(2 * e * ((double)(HD + 1) * sig_max + (double)T + 4 + fabs(lse[t * NQ + h])));
        }
    }
    free(s);
}

// Tq = T - past query rows after `past` cached keys: rows past..T-1 of s1.c's attention.
static void test_attention_tc(size_t T, size_t past, size_t NQ, size_t NKV, size_t HD, const char *why) {
    char name[200];
    snprintf(name, sizeof name, "attention_forward on tensor cores vs s1.c, %zu rows after %zu cached, NQ=%zu, NKV=%zu, "
             "HD=%zu (%s)", T - past, past, NQ, NKV, HD, why);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD, Tq = T - past;
    float *q = host_random(T * QD, 2.0f), *k = host_random(T * KD, 2.0f), *v = host_random(T * KD, 1.0f);
    float *ref = (float *)mallocCheck(T * QD * sizeof(float)), *lse = (float *)mallocCheck(T * NQ * sizeof(float));
    float *extra = (float *)mallocCheck(T * QD * sizeof(float)), *Lambda = (float *)mallocCheck(T * NQ * sizeof(float));
    s1ref_attention_lse(ref, lse, q, k, v, T, NQ, NKV, HD);
    tc_bounds(extra, Lambda, q, k, v, lse, T, NQ, NKV, HD);
    floatX *d_q = to_device(q + past * QD, Tq * QD), *d_k = to_device(k, T * KD), *d_v = to_device(v, T * KD), *d_out;
    float *d_lse;
    cudaCheck(cudaMalloc((void **)&d_out, Tq * QD * sizeof(floatX)));
    cudaCheck(cudaMalloc((void **)&d_lse, Tq * NQ * sizeof(float)));
    cudaCheck(cudaMemsetAsync(d_out, 0xFF, Tq * QD * sizeof(floatX), stream));   // NaN: a row never written fails
    cudaCheck(cudaMemsetAsync(d_lse, 0xFF, Tq * NQ * sizeof(float), stream));
    attention_forward(d_out, d_lse, d_q, d_k, d_v, (int)Tq, (int)past, (int)NQ, (int)NKV, (int)HD, stream);   // the default: tensor cores
    float *got = from_device(d_out, Tq * QD), *got_lse = host_from(d_lse, Tq * NQ);
    check_close("attention_tc", got, ref + past * QD, Tq * QD, U, 1e-5f, extra + past * QD);   // max|v| = 1
    check_close("attention_tc lse", got_lse, lse + past * NQ, Tq * NQ, 0.0f, 0.0f, Lambda + past * NQ);
    free(q); free(k); free(v); free(ref); free(lse); free(extra); free(Lambda); free(got); free(got_lse);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_out));
    cudaCheck(cudaFree(d_lse));
    TEST_END();
}

int main(void) {
    kt_seed(4242);
    test_attention_tc(1, 0, 2, 1, 64, "a single row");
    test_attention_tc(64, 0, 2, 2, 64, "exactly one query block and one key tile, GQA 1:1");
    test_attention_tc(300, 0, 2, 2, 128, "GQA 1:1, 5 query blocks and key tiles, the last partial");
    test_attention_tc(257, 0, 10, 2, 64, "GQA 5:1, one row past 4 full tiles");
    test_attention_tc(130, 0, 16, 2, 128, "GQA 8:1, HD 128");
    test_attention_tc(200, 137, 8, 1, 64, "GQA 8:1 after a KV cache: 63 rows over 200 keys");
    test_attention_tc(150, 71, 5, 1, 128, "GQA 5:1 after a KV cache, HD 128");
    test_attention_tc(2048, 0, 2, 1, 64, "a long sequence: 32 query blocks over up to 32 key tiles");
    return test_summary();
}
