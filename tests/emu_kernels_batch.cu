/*
 * emu_kernels_batch.cu: gpu_decode_batch() (several sequences decoding
 * together, one token each, sample --batch) against the same sequences
 * decoded alone with gpu_decode() and against s1.c's KV-cache decoder
 * (qwen2_decode_step(), the fp32 oracle).
 *
 * Three sequences with prompts of different lengths are prefilled one at a
 * time, then decoded together for a few steps; in the middle steps the second
 * sits out (a batch of two that skips a cache, as when a sequence waits on a
 * longer feed), and the last step runs the first alone. At every step each
 * sequence's batched logits are checked
 *   - against s1.c's within 4u max|logit| (u = 2^-8: the bound derived in
 *     tests/emu_kernels.cu, LOGIT_ROUNDINGS, for bf16 weights and activations),
 *   - against its gpu_decode() twin decoded alone within twice that (both are
 *     within the bound of s1.c's), and, in the emulator, bit for bit: the rows
 *     go through the same kernels, and the emulated GEMM sums each output
 *     element in blocks of 32 products in an order that does not depend on the
 *     number of rows (common/cuemu_blas.h), so a row's sums are the same at
 *     N = 1 and N = 3. On a GPU cuBLAS may pick another algorithm (tiles,
 *     split-k) for 3 rows than for 1, so there only the bound holds, and
 *     greedy decoding may part after a near-tie.
 * The models: the two HF fixtures (head dim 12: attention_decode()), and a
 * random one with head dim 64, where the attention is flash-decoding
 * (attention_decode_flash()), as at every Qwen2.5 size.
 */
#include "common/kernels.cuh"
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*)

static const float U = 1.0f / 256.0f;   // 2^-8: one bf16 rounding, relative
#define LOGIT_ROUNDINGS 4.0f            // tests/emu_kernels.cu, test_model_loss()

#define SEQS 3
#define STEPS 6

// which sequences decode together at each step (1 = in the batch)
static const int in_batch[STEPS][SEQS] = {{1, 1, 1}, {1, 1, 1}, {1, 0, 1}, {1, 0, 1}, {1, 1, 1}, {1, 0, 0}};

// s1.c's decoder and the GPU's, solo and batched, on the same model
static void test_decode_batch(const char *what, GpuModel *m, void *ref_model) {
    char name[256];
    snprintf(name, sizeof name, "gpu_decode_batch logits == gpu_decode alone (bit for bit in the emulator) and s1.c's within 4u max|logit|, %s", what);
    TEST_BEGIN(name);
    const size_t V = m->config.vocab_size, context = 40, prompt_len[SEQS] = {7, 3, 12};
    GpuKVCache solo[SEQS], batch[SEQS];
    void *ref_kv[SEQS];
    const float *ref[SEQS];
    float worst_ref = 0.0f, worst_solo = 0.0f;
    int same_bits = 1;
    for (size_t b = 0; b < SEQS; b++) {
        gpu_kvcache_create(&solo[b], m, context);
        gpu_kvcache_create(&batch[b], m, context);
        ref_kv[b] = s1ref_kvcache_create(ref_model, context);
        uint32_t prompt[16];
        for (size_t t = 0; t < prompt_len[b]; t++) {
            prompt[t] = (uint32_t)((5 + 11 * t + 29 * b) % V);
            ref[b] = s1ref_decode_step(ref_model, ref_kv[b], prompt[t]);
        }
        gpu_decode(m, &solo[b], prompt, prompt_len[b]);
        gpu_decode(m, &batch[b], prompt, prompt_len[b]);
    }
    for (int step = 0; step < STEPS; step++) {
        GpuKVCache *kvs[SEQS];
        uint32_t ids[SEQS];
        size_t seq[SEQS], n = 0;
        for (size_t b = 0; b < SEQS; b++) {
            if (!in_batch[step][b]) continue;
            seq[n] = b;
            kvs[n] = &batch[b];
            ids[n++] = (uint32_t)((3 + 7 * step + 13 * b) % V);
        }
        gpu_decode_batch(m, kvs, ids, n);
        for (size_t i = 0; i < n; i++) {
            size_t b = seq[i];
            const float *alone = gpu_decode(m, &solo[b], &ids[i], 1), *got = batch[b].logits;
            ref[b] = s1ref_decode_step(ref_model, ref_kv[b], ids[i]);
            float bound = LOGIT_ROUNDINGS * U * max_abs(ref[b], V);
            for (size_t v = 0; v < V; v++) {
                float e_ref = fabsf(got[v] - ref[b][v]), e_solo = fabsf(got[v] - alone[v]);
                worst_ref = fmaxf(worst_ref, e_ref / bound);
                worst_solo = fmaxf(worst_solo, e_solo / bound);
                same_bits &= memcmp(&got[v], &alone[v], sizeof(float)) == 0;
                CHECK(e_ref <= bound, "step %d, sequence %zu, logit %zu: batched %.7g, s1.c %.7g (bound %.3g)", step, b, v,
                      got[v], ref[b][v], bound);
                CHECK(e_solo <= 2.0f * bound, "step %d, sequence %zu, logit %zu: batched %.7g, alone %.7g (bound %.3g)", step,
                      b, v, got[v], alone[v], 2.0f * bound);
            }
            CHECK(batch[b].len == solo[b].len && batch[b].len == s1ref_kvcache_len(ref_kv[b]),
                  "step %d, sequence %zu: caches of %zu (batched), %zu (alone), %zu (s1.c) tokens", step, b, batch[b].len,
                  solo[b].len, s1ref_kvcache_len(ref_kv[b]));
        }
    }
#ifndef __CUDACC__
    CHECK(same_bits, "the emulator's batched logits differ from the same sequences decoded alone");
#endif
    printf("note: %s: batched logits off s1.c's by %.3g of the bound, off gpu_decode()'s by %.3g (%s)\n", what, worst_ref,
           worst_solo, same_bits ? "bit for bit" : "not bit for bit");
    for (size_t b = 0; b < SEQS; b++) {
        gpu_kvcache_free(&solo[b]);
        gpu_kvcache_free(&batch[b]);
        s1ref_kvcache_free(ref_kv[b]);
    }
    TEST_END();
}

static void test_fixture(const char *dir) {
    GpuModel m;
    gpu_model_load(&m, dir, SEQS, stream);   // chunk_rows: the LM head's rows of a batched step
    void *ref_model = s1ref_model_load(dir, 1);
    test_decode_batch(dir, &m, ref_model);
    gpu_model_free(&m);
    s1ref_model_free(ref_model);
}

// a random model with head dim 64 (flash-decoding), its weights rounded to bf16
// so that s1.c and the GPU start from the same numbers
static void test_head_dim_64(void) {
    Qwen2Config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 61; c.hidden_size = 64; c.intermediate_size = 96; c.num_layers = 2;
    c.num_heads = 4; c.num_kv_heads = 2; c.head_dim = 64; c.max_position_embeddings = 64;
    c.rope_theta = 10000.0; c.rms_norm_eps = 1e-6; c.tie_word_embeddings = 0;
    c.bos_token_id = c.eos_token_id = -1;
    void *ref_model = s1ref_tiny_model(c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads,
                                       c.num_kv_heads, c.head_dim, c.tie_word_embeddings, 99);
    float *params = s1ref_model_params(ref_model);
    for (size_t i = 0, n = s1ref_model_num_parameters(ref_model); i < n; i++) params[i] = __bfloat162float(__float2bfloat16(params[i]));
    GpuModel m;
    gpu_model_create(&m, &c, SEQS, 0, stream);
    gpu_upload_parameters(&m, params);
    test_decode_batch("random model, head dim 64 (flash-decoding)", &m, ref_model);
    gpu_model_free(&m);
    s1ref_model_free(ref_model);
}

int main(void) {
    test_fixture("tests/fixtures/qwen-tiny-tied");
    test_fixture("tests/fixtures/qwen-tiny-gqa");
    test_head_dim_64();
    return test_summary();
}
