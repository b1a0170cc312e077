/*
 * emu_kernels_attention.cu: the attention backward passes of common/attention.cuh
 * (FlashAttention-2 on the CUDA cores, attention_backward_cuda_cores(), and on the
 * tensor cores, attention_backward_tc()) against s1.c's attention_backward(),
 * the fp32 CPU oracle (linked in through tests/s1_ref.c), on the CPU through the
 * CUDA emulator; tests/run.sh runs it in the forward, reverse and random thread
 * schedules. Also the forward kernel's lse, which the backward pass consumes,
 * and the decoding kernels: flash-decoding (test_decode_flash()) and its batched
 * form, several sequences in one launch (test_decode_seqs()).
 *
 * Each case runs the pipeline of a training step: s1.c's forward gives out and
 * lse; the GPU forward gives its own lse (checked against s1.c's, bound below);
 * the backward kernels get q, k, v, dout, out rounded to bf16 (as a forward
 * kernel stores it) and the GPU's lse; s1.c's backward gets the same bf16 q, k,
 * v, dout and its own fp32 out and lse. The kernel's outputs are pre-filled with
 * NaN bytes, so an output that is accumulated into, or never written, fails.
 *
 * Shapes cut across the tiles: the dk/dv kernel takes 16 key rows per block and
 * query tiles of 32 rows starting at the block's first key; the dq kernel takes
 * 16 query rows per block and key tiles of 32. On tensor cores (head dims 64 and
 * 128): 64 key rows per block, query tiles of 32; 64 query rows, key tiles of 32;
 * GQA ratios 1, 5 and 8; up to T = 2048.
 *
 * ---- The error bound (derived, not fitted) -------------------------------------
 * u = 2^-8 (one bf16 rounding, relative), e = 2^-24 (one fp32 rounding). For
 * head h, query t, key u (u <= t) write, in exact arithmetic on the inputs:
 *   sig_tu = scale sum_d |q_td k_ud|   (magnitude of the score s_tu)
 *   a_tu   = sum_d |dout_td v_ud|      (magnitude of dp_tu)
 *   b_t    = sum_d |dout_td out_td|    (magnitude of D_t)
 *   p_tu   = exp(s_tu - lse_t),  c_tu = p_tu (a_tu + b_t)  (magnitude of ds_tu)
 * Both implementations, to first order in e (a sum of n terms is off by at most
 * n e times the sum of its terms' magnitudes; expf and s1.c's exp_fast are within
 * 2 ulp, <= 4e relative):
 *   p:  the score (HD products, a scale multiply) is off by (HD+1) e sig; the
 *       exponent's subtraction by e|s - lse| <= e(sig + |lse|); the exp by 4e:
 *       |dp/p| <= pi_tu = e((HD+3) sig_tu + |lse_t| + 4)
 *   ds = p (dp - D): dp and D are HD-term sums, one subtraction, one product:
 *       |d ds| <= c_tu eps_tu,  eps_tu = pi_tu + (HD+2) e
 *   dq_td = scale sum_{u<=t} ds_tu k_ud: <= T+2 more roundings per term
 *   dk_ud = scale sum_h sum_{t>=u} ds_tu q_td, dv_ud = sum_h sum_{t>=u} p_tu dout_td:
 *       G*T terms (G query heads per KV head), G*T+2 roundings per term.
 * The kernel's own extras:
 *   out is bf16: |out_fed - out| <= u|out|, so its D is off by at most
 *       Delta_t = u b_t, which moves ds_tu by p_tu Delta_t (dq, dk; not dv);
 *   its lse is the GPU forward's, off from s1.c's by at most Lambda_t (below),
 *       which scales every p_tu by at most lam_t = expm1(Lambda_t).
 * The oracle's error and the kernel's fp32 error each stay within the e-terms,
 * hence the factor 2. With E the sum of all of that, the kernel's fp32 value x'
 * is within E of the oracle's ref, and its one bf16 rounding adds u|x'| <=
 * u(|ref| + E):
 *   |got - ref| <= u|ref| + (1+u) E, where per element
 *   E(dq_td) = scale sum_u |k_ud| (c_tu (2(eps_tu + (T+2)e) + lam_t) + p_tu Delta_t)
 *   E(dk_ud) = scale sum_{h,t} |q_td| (c_tu (2(eps_tu + (GT+2)e) + lam_t) + p_tu Delta_t)
 *   E(dv_ud) = sum_{h,t} |dout_td| p_tu (2(pi_tu + (GT+2)e) + lam_t)
 * computed below in double from the inputs (attention_backward_bound()). In
 * practice the u|ref| term (the final rounding) dominates: the e-terms are
 * ~1e-4 relative at these sizes, Delta_t ~ u of D's magnitude.
 *
 * On tensor cores each p is also rounded to bf16 before dv's product, each ds
 * before dk's and dq's: |x~ - x| <= u|x|, which adds u p_tu |dout_td| per term to
 * E(dv), u scale c_tu |q_td| to E(dk) and u scale c_tu |k_ud| to E(dq).
 *
 * lse, per implementation: the scores are off by (HD+1) e sig, which moves the
 * log-sum-exp by at most (HD+1) e sigmax_t (d lse/d s_u = p_u, summing to 1);
 * each exp(s - m) by e(2 sigmax_t + 4) (|s - m| <= 2 sigmax_t); the sum of t+1
 * positive terms by (t+1) e relative; the online softmax of the GPU kernel
 * rescales its running sums once per key tile, ntiles = t/32 + 1 times, each
 * rescale exp(m_old - m_new) * l off by e(2 sigmax_t + 5); the log by
 * e log(t+1), the final m + log by e|lse_t|. Both together:
 *   Lambda_t = e (2(HD+1) sigmax_t + 2(2 sigmax_t + 4) + 2(t+1) + ntiles (2 sigmax_t + 5)
 *                 + 2 log(t+1) + 2|lse_t|)
 */
#include "common/attention.cuh"
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*), seeded inputs, copies, check_close

static const float U = 1.0f / 256.0f;               // 2^-8: one bf16 rounding, relative
static const double EPS32 = 1.0 / 16777216.0;       // 2^-24: one fp32 rounding, relative

// ----------------------------------------------------------------------------
// the bounds of the header comment, in double from the inputs

// Lambda (T,NQ): the bound on |GPU lse - s1.c lse|.
static void lse_bound(double *Lambda, const float *q, const float *k, const float *lse, size_t T, size_t NQ, size_t NKV, size_t HD) {
    size_t QD = NQ * HD, KD = NKV * HD, G = NQ / NKV;
    double scale = 1.0 / sqrt((double)HD);
    for (size_t t = 0; t < T; t++)
        for (size_t h = 0; h < NQ; h++) {
            const float *qr = q + t * QD + h * HD;
            double sigmax = 0.0;
            for (size_t u = 0; u <= t; u++) {
                const float *kr = k + u * KD + (h / G) * HD;
                double sig = 0.0;
                for (size_t d = 0; d < HD; d++) sig += fabs((double)qr[d] * kr[d]);
                sigmax = fmax(sigmax, scale * sig);
            }
            double ntiles = (double)(t / 32 + 1);
            Lambda[t * NQ + h] = EPS32 * (2.0 * (HD + 1) * sigmax + 2.0 * (2.0 * sigmax + 4.0) + 2.0 * (t + 1) +
                                          ntiles * (2.0 * sigmax + 5.0) + 2.0 * log((double)(t + 1)) + 2.0 * fabs(lse[t * NQ + h]));
        }
}

// E(dq), E(dk), E(dv) of the header comment, each already times (1+u): the
// check is then |got - ref| <= u|ref| + extra.
// tc: the tensor-core kernels' bf16 p (for dv) and ds (for dk, dq) add u p |dout|,
// u scale c |q| and u scale c |k| per term (c >= |ds|).
static void attention_backward_bound(float *Edq, float *Edk, float *Edv, const float *q, const float *k, const float *v,
                                     const float *dout, const float *out, const float *lse, const double *Lambda,
                                     size_t T, size_t NQ, size_t NKV, size_t HD, int tc) {
    size_t QD = NQ * HD, KD = NKV * HD, G = NQ / NKV;
    double scale = 1.0 / sqrt((double)HD), e = EPS32;
    double *eq = (double *)calloc(T * QD, sizeof(double)), *ek = (double *)calloc(T * KD, sizeof(double));
    double *ev = (double *)calloc(T * KD, sizeof(double));
    for (size_t h = 0; h < NQ; h++) {
        size_t kvh = h / G;
        for (size_t t = 0; t < T; t++) {
            const float *qr = q + t * QD + h * HD, *dor = dout + t * QD + h * HD, *outr = out + t * QD + h * HD;
            double L = lse[t * NQ + h], b = 0.0;
            for (size_t d = 0; d < HD; d++) b += fabs((double)dor[d] * outr[d]);
            double Delta = (double)U * b, lam = expm1(Lambda[t * NQ + h]);
            for (size_t u = 0; u <= t; u++) {
                const float *kr = k + u * KD + kvh * HD, *vr = v + u * KD + kvh * HD;
                double s = 0.0, sig = 0.0, a = 0.0;
                for (size_t d = 0; d < HD; d++) {
                    s += (double)qr[d] * kr[d];
                    sig += fabs((double)qr[d] * kr[d]);
                    a += fabs((double)dor[d] * vr[d]);
                }
                s *= scale;
                sig *= scale;
                double p = exp(s - L), c = p * (a + b);
                double pi = e * ((HD + 3) * sig + fabs(L) + 4.0), eps = pi + (HD + 2) * e;
                double wq = scale * (c * (2.0 * (eps + (T + 2) * e) + lam + (tc ? U : 0.0)) + p * Delta);
                double wk = scale * (c * (2.0 * (eps + (G * T + 2) * e) + lam + (tc ? U : 0.0)) + p * Delta);
                double wv = p * (2.0 * (pi + (G * T + 2) * e) + lam + (tc ? U : 0.0));
                double *eqr = eq + t * QD + h * HD, *ekr = ek + u * KD + kvh * HD, *evr = ev + u * KD + kvh * HD;
                for (size_t d = 0; d < HD; d++) {
                    eqr[d] += wq * fabs(kr[d]);
                    ekr[d] += wk * fabs(qr[d]);
                    evr[d] += wv * fabs(dor[d]);
                }
            }
        }
    }
    for (size_t i = 0; i < T * QD; i++) Edq[i] = (float)((1.0 + U) * eq[i]);
    for (size_t i = 0; i < T * KD; i++) {
        Edk[i] = (float)((1.0 + U) * ek[i]);
        Edv[i] = (float)((1.0 + U) * ev[i]);
    }
    free(eq); free(ek); free(ev);
}

// checksum of the bits, to compare runs across thread schedules by eye
static uint32_t fnv1a(const float *x, size_t n) {
    uint32_t hsh = 2166136261u;
    const unsigned char *b = (const unsigned char *)x;
    for (size_t i = 0; i < n * sizeof(float); i++) hsh = (hsh ^ b[i]) * 16777619u;
    return hsh;
}

// ----------------------------------------------------------------------------
// the cases

// tc: the backward pass on tensor cores (attention_backward_tc()); the forward's lse
// comes from the CUDA-core kernel either way (its bound Lambda is derived above)
static void test_attention_backward(size_t T, size_t NQ, size_t NKV, size_t HD, const char *why, int tc = 0) {
    char name[256];
    snprintf(name, sizeof name, "attention_backward%s vs s1.c, T=%zu, NQ=%zu, NKV=%zu, HD=%zu (%s)", tc ? " on tensor cores" : "",
             T, NQ, NKV, HD, why);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD;
    float *q = host_random(T * QD, 2.0f), *k = host_random(T * KD, 2.0f), *v = host_random(T * KD, 1.0f);
    float *dout = host_random(T * QD, 1.0f);
    float *out = (float *)mallocCheck(T * QD * sizeof(float)), *lse = (float *)mallocCheck(T * NQ * sizeof(float));
    s1ref_attention_lse(out, lse, q, k, v, T, NQ, NKV, HD);
    float *dq = (float *)mallocCheck(T * QD * sizeof(float)), *dk = (float *)mallocCheck(T * KD * sizeof(float));
    float *dv = (float *)mallocCheck(T * KD * sizeof(float));
    s1ref_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, T, NQ, NKV, HD);

    floatX *d_q = to_device(q, T * QD), *d_k = to_device(k, T * KD), *d_v = to_device(v, T * KD);
    floatX *d_dout = to_device(dout, T * QD), *d_out = to_device(out, T * QD);   // out as a forward kernel stores it: bf16
    // the GPU forward's lse, as a training step feeds it to the backward pass
    floatX *d_out_gpu = device_alloc_nan<floatX>(T * QD);
    float *d_lse = device_alloc_nan<float>(T * NQ), *lse_gpu = (float *)mallocCheck(T * NQ * sizeof(float));
    attention_forward_cuda_cores(d_out_gpu, d_lse, d_q, d_k, d_v, (int)T, 0, (int)NQ, (int)NKV, (int)HD, stream);
    copy_to_host(lse_gpu, d_lse, T * NQ * sizeof(float), stream);
    double *Lambda = (double *)mallocCheck(T * NQ * sizeof(double));
    float *Lf = (float *)mallocCheck(T * NQ * sizeof(float));
    lse_bound(Lambda, q, k, lse, T, NQ, NKV, HD);
    for (size_t i = 0; i < T * NQ; i++) Lf[i] = (float)Lambda[i];
    check_close("forward lse", lse_gpu, lse, T * NQ, 0.0f, 0.0f, Lf);

    floatX *d_dq = device_alloc_nan<floatX>(T * QD), *d_dk = device_alloc_nan<floatX>(T * KD), *d_dv = device_alloc_nan<floatX>(T * KD);
    float *d_scratch = device_alloc_nan<float>(attention_backward_scratch_floats((int)T, (int)NQ));
    if (tc) attention_backward_tc(d_dq, d_dk, d_dv, d_scratch, d_dout, d_out, d_lse, d_q, d_k, d_v, (int)T, (int)NQ, (int)NKV, (int)HD, stream);
    else attention_backward_cuda_cores(d_dq, d_dk, d_dv, d_scratch, d_dout, d_out, d_lse, d_q, d_k, d_v, (int)T, (int)NQ, (int)NKV, (int)HD, stream);
    float *got_dq = from_device(d_dq, T * QD), *got_dk = from_device(d_dk, T * KD), *got_dv = from_device(d_dv, T * KD);

    float *Edq = (float *)mallocCheck(T * QD * sizeof(float)), *Edk = (float *)mallocCheck(T * KD * sizeof(float));
    float *Edv = (float *)mallocCheck(T * KD * sizeof(float));
    attention_backward_bound(Edq, Edk, Edv, q, k, v, dout, out, lse, Lambda, T, NQ, NKV, HD, tc);
    check_close("dq", got_dq, dq, T * QD, U, 0.0f, Edq);
    check_close("dk", got_dk, dk, T * KD, U, 0.0f, Edk);
    check_close("dv", got_dv, dv, T * KD, U, 0.0f, Edv);
    printf("note: T=%zu NQ=%zu NKV=%zu HD=%zu bits of dq dk dv: %08x %08x %08x (the same in every thread schedule)\n",
           T, NQ, NKV, HD, fnv1a(got_dq, T * QD), fnv1a(got_dk, T * KD), fnv1a(got_dv, T * KD));

    free(q); free(k); free(v); free(dout); free(out); free(lse); free(dq); free(dk); free(dv); free(lse_gpu);
    free(Lambda); free(Lf); free(got_dq); free(got_dk); free(got_dv); free(Edq); free(Edk); free(Edv);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_dout));
    cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_out_gpu)); cudaCheck(cudaFree(d_lse)); cudaCheck(cudaFree(d_dq));
    cudaCheck(cudaFree(d_dk)); cudaCheck(cudaFree(d_dv)); cudaCheck(cudaFree(d_scratch));
    TEST_END();
}

// Flash-decoding (attention_decode_flash()): one new token over ntok cached keys,
// against s1.c's decoder row (attention_row()). All fp32 as the single-block
// decode kernel, so its bound: one bf16 rounding of the output, u|ref|, plus
// 1e-5 for the fp32 sums (max |v| = 1; tests/emu_kernels.cu). The position
// ntok - 1 is in device memory and the cache has `rows` >= ntok rows, as
// gpu_decode() runs it: the grid covers all rows, so the splits past ntok must
// leave at once. Cache rows past ntok, the scratch and the output are NaN bytes,
// so a split that reads past the length, or a combine that merges a split it
// should not (or misses one), fails. The same call on a cache of exactly ntok
// rows must give the same bits: the capacity does not change the result.
static void test_decode_flash(size_t ntok, size_t rows, size_t NQ, size_t NKV, size_t HD, const char *why) {
    char name[256];
    snprintf(name, sizeof name, "attention_decode_flash vs s1.c, 1 token over %zu keys of a %zu-row cache, NQ=%zu, NKV=%zu, HD=%zu (%s)",
             ntok, rows, NQ, NKV, HD, why);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD;
    float *q = host_random(QD, 2.0f), *k = host_random(ntok * KD, 2.0f), *v = host_random(ntok * KD, 1.0f);
    float *ref = (float *)mallocCheck(QD * sizeof(float));
    s1ref_attention_decode(ref, q, k, v, ntok, NQ, NKV, HD);
    floatX *d_q = to_device(q, QD), *d_kn = to_device(k, ntok * KD), *d_vn = to_device(v, ntok * KD);
    floatX *d_k = to_device_nan_tail(k, ntok * KD, rows * KD), *d_v = to_device_nan_tail(v, ntok * KD, rows * KD);
    int pos = (int)ntok - 1, *d_pos = device_copy(&pos, 1);
    floatX *d_out = device_alloc_nan<floatX>(QD), *d_out_exact = device_alloc_nan<floatX>(QD);
    float *d_scratch = device_alloc_nan<float>(attention_decode_scratch_floats((int)rows, (int)NQ, (int)HD));
    attention_decode_flash(d_out, d_scratch, d_q, d_k, d_v, d_pos, (int)rows, (int)NQ, (int)NKV, (int)HD, stream);
    float *got = from_device(d_out, QD);
    check_close("decode", got, ref, QD, U, 1e-5f, NULL);
    attention_decode_flash(d_out_exact, d_scratch, d_q, d_kn, d_vn, d_pos, (int)ntok, (int)NQ, (int)NKV, (int)HD, stream);
    floatX *a = host_from(d_out, QD), *b = host_from(d_out_exact, QD);
    CHECK(memcmp(a, b, QD * sizeof(floatX)) == 0, "a %zu-row cache gives other bits than a %zu-row one", rows, ntok);
    free(q); free(k); free(v); free(ref); free(got); free(a); free(b);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_kn)); cudaCheck(cudaFree(d_vn)); cudaCheck(cudaFree(d_k));
    cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_pos)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_out_exact));
    cudaCheck(cudaFree(d_scratch));
    TEST_END();
}

// Batched decoding's kernels, one launch each for B sequences (kv_cache_append_seqs(),
// attention_decode_flash_seqs()), against the launches per sequence that
// gpu_decode_batch() made before them (kv_cache_append() and
// attention_decode_flash() on a grid of the sequence's length): the same caches
// and outputs bit for bit, and each sequence's output against s1.c's decoder row
// (the bound of test_decode_flash()). Sequence n appends row n of the new K, V
// at position lens[n] - 1 of its own cache, two layers of the longest length
// (the second is used: the kernels add the layer's offset), and attends to its
// lens[n] keys. The first layer, the rows past each sequence's cached ones, the
// scratch and the outputs are NaN bytes, so a block that reads another
// sequence's cache, layer, scratch or query row, or a combine that merges a split
// its length does not fill, fails.
static void test_decode_seqs(const size_t *lens, size_t B, size_t NQ, size_t NKV, size_t HD, const char *why) {
    char name[320];
    snprintf(name, sizeof name, "attention_decode_flash_seqs + kv_cache_append_seqs == per-sequence launches and s1.c, "
             "%zu sequences, NQ=%zu, NKV=%zu, HD=%zu (%s)", B, NQ, NKV, HD, why);
    TEST_BEGIN(name);
    size_t QD = NQ * HD, KD = NKV * HD, rows = 0;
    for (size_t n = 0; n < B; n++) rows = lens[n] > rows ? lens[n] : rows;
    size_t layer = rows * KD, cache = 2 * layer;   // layer 1 of (2, rows, NKV, HD) caches
    float *q = host_random(B * QD, 2.0f), *knew = host_random(B * KD, 2.0f), *vnew = host_random(B * KD, 1.0f);
    float *ref = (float *)mallocCheck(B * QD * sizeof(float));
    floatX *d_q = to_device(q, B * QD), *d_knew = to_device(knew, B * KD), *d_vnew = to_device(vnew, B * KD);
    int *pos = (int *)mallocCheck(B * sizeof(int));
    DecodeSeq *one = (DecodeSeq *)mallocCheck(B * sizeof(DecodeSeq)), *all = (DecodeSeq *)mallocCheck(B * sizeof(DecodeSeq));
    size_t scratch = attention_decode_scratch_floats((int)rows, (int)NQ, (int)HD);
    for (size_t n = 0; n < B; n++) {
        size_t T = lens[n];
        pos[n] = (int)T - 1;
        float *k = host_random(T * KD, 2.0f), *v = host_random(T * KD, 1.0f);
        memcpy(k + (T - 1) * KD, knew + n * KD, KD * sizeof(float));   // the new row, as s1.c's cache holds it
        memcpy(v + (T - 1) * KD, vnew + n * KD, KD * sizeof(float));
        s1ref_attention_decode(ref + n * QD, q + n * QD, k, v, T, NQ, NKV, HD);
        DecodeSeq *both[2] = {&one[n], &all[n]};
        for (int i = 0; i < 2; i++) {
            both[i]->k = to_device_in_nan(k, (T - 1) * KD, layer, cache);
            both[i]->v = to_device_in_nan(v, (T - 1) * KD, layer, cache);
            both[i]->scratch = device_alloc_nan<float>(scratch);
        }
        free(k); free(v);
    }
    int *d_pos = device_copy(pos, B);
    DecodeSeq *d_all = device_copy(all, B);
    floatX *d_out_one = device_alloc_nan<floatX>(B * QD), *d_out_all = device_alloc_nan<floatX>(B * QD);
    for (size_t n = 0; n < B; n++) {
        kv_cache_append(one[n].k + layer, one[n].v + layer, d_knew + n * KD, d_vnew + n * KD, d_pos + n, (int)KD, stream);
        attention_decode_flash(d_out_one + n * QD, one[n].scratch, d_q + n * QD, one[n].k + layer, one[n].v + layer, d_pos + n,
                               (int)lens[n], (int)NQ, (int)NKV, (int)HD, stream);
    }
    kv_cache_append_seqs(d_all, layer, d_knew, d_vnew, d_pos, (int)B, (int)KD, stream);
    attention_decode_flash_seqs(d_out_all, d_all, all, layer, d_q, d_pos, (int)rows, (int)B, (int)NQ, (int)NKV, (int)HD, stream);
    float *got = from_device(d_out_all, B * QD);
    check_close("decode", got, ref, B * QD, U, 1e-5f, NULL);
    floatX *a = host_from(d_out_one, B * QD), *b = host_from(d_out_all, B * QD);
    CHECK(memcmp(a, b, B * QD * sizeof(floatX)) == 0, "the batched outputs differ from the per-sequence ones");
    free(a); free(b);
    for (size_t n = 0; n < B; n++) {
        const floatX *caches[2][2] = {{one[n].k, all[n].k}, {one[n].v, all[n].v}};
        for (int kv = 0; kv < 2; kv++) {
            floatX *x = host_from(caches[kv][0], cache), *y = host_from(caches[kv][1], cache);
            CHECK(memcmp(x, y, cache * sizeof(floatX)) == 0, "sequence %zu (%zu keys): the batched append left another %s cache",
                  n, lens[n], kv ? "V" : "K");
            free(x); free(y);
        }
        DecodeSeq *both[2] = {&one[n], &all[n]};
        for (int i = 0; i < 2; i++) {
            cudaCheck(cudaFree(both[i]->k)); cudaCheck(cudaFree(both[i]->v)); cudaCheck(cudaFree(both[i]->scratch));
        }
    }
    free(q); free(knew); free(vnew); free(ref); free(pos); free(one); free(all); free(got);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_knew)); cudaCheck(cudaFree(d_vnew)); cudaCheck(cudaFree(d_pos));
    cudaCheck(cudaFree(d_all)); cudaCheck(cudaFree(d_out_one)); cudaCheck(cudaFree(d_out_all));
    TEST_END();
}

int main(void) {
    kt_seed(4242);
    // flash-decoding: splits of 256 keys; 4 warps x 2 (HD 128) or 4 (HD 64) key streams per block, so 8 or
    // 16 keys in step. In a 1024-row cache (4 splits) at both head dims and GQA 1:1, 5:1, 8:1: lengths with
    // every remainder that matters (of a split: 0, 1, 255; of a step of the streams: 0, 1, 7, 8, 9, 15).
    const size_t lengths[] = {1, 2, 8, 9, 15, 16, 17, 255, 256, 257, 511, 513, 767, 1024};
    const size_t groups[][2] = {{2, 2}, {5, 1}, {16, 2}};   // NQ, NKV
    for (size_t hd = 64; hd <= 128; hd *= 2)
        for (size_t g = 0; g < 3; g++)
            for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
                test_decode_flash(lengths[i], 1024, groups[g][0], groups[g][1], hd, "remainders of splits and key steps");
    test_decode_flash(4100, 4100, 40, 8, 128, "Qwen2.5-32B's heads, 17 splits");
    test_decode_flash(70, 100, 6, 2, 12, "head dim 12: the single-block kernel");
    test_attention_backward(1, 2, 1, 16, "a single row");
    test_attention_backward(5, 4, 2, 12, "less than one tile, GQA 2:1");
    test_attention_backward(16, 4, 1, 16, "exactly one dk/dv key block and dq query block, GQA 4:1");
    test_attention_backward(32, 2, 2, 64, "exactly one query tile of 32, no GQA");
    test_attention_backward(33, 4, 2, 64, "one row past a query tile: a second tile with one row");
    test_attention_backward(37, 4, 2, 128, "the largest head dim: 4 dims per lane, shared memory over 48 KiB");
    test_attention_backward(48, 4, 1, 16, "3 key blocks of 16; the query tiles of 32 start at 0, 16, 32");
    test_attention_backward(50, 8, 2, 12, "GQA 4:1, partial tiles everywhere");
    test_attention_backward(77, 14, 2, 16, "GQA 7:1 as Qwen2.5-0.5B, T a multiple of no tile");
    test_attention_backward(100, 14, 2, 128, "GQA 7:1 at HD 128");
    test_attention_backward(300, 14, 2, 64, "Qwen2.5-0.5B's heads, 19 key blocks x 10 query tiles");
    // tensor cores: key blocks of 64 and query tiles of 32 (dk, dv), query blocks of 64 and key tiles of 32 (dq)
    test_attention_backward(1, 2, 1, 64, "a single row", 1);
    test_attention_backward(31, 4, 4, 64, "less than one tile, no GQA", 1);
    test_attention_backward(64, 5, 1, 128, "exactly one block, GQA 5:1, HD 128", 1);
    test_attention_backward(65, 8, 1, 64, "one row past a block, GQA 8:1", 1);
    test_attention_backward(100, 10, 2, 128, "GQA 5:1 at HD 128, partial tiles", 1);
    test_attention_backward(300, 8, 1, 64, "GQA 8:1, 5 key blocks x 10 query tiles per head", 1);
    test_attention_backward(2048, 2, 1, 64, "a long sequence: 32 key blocks x 64 query tiles per head", 1);
    // batched decoding (last: the cases above keep their seeded inputs): one key; a split's end exactly and
    // one key past it (256, 257, 512, 513); 6 splits beside sequences of 1 and 3 keys
    const size_t seq_lengths[] = {1, 256, 257, 1500, 3, 512, 513};
    for (size_t hd = 64; hd <= 128; hd *= 2)
        for (size_t g = 0; g < 3; g++)
            test_decode_seqs(seq_lengths, 7, groups[g][0], groups[g][1], hd, "lengths across split boundaries");
    const size_t small_lengths[] = {70, 1, 33};
    test_decode_seqs(small_lengths, 3, 6, 2, 12, "head dim 12: attention_decode() per sequence");
    return test_summary();
}
