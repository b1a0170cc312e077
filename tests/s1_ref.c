/*
 * s1_ref.c: s1.c's layer functions and model, callable from the C++ kernel
 * tests (tests/emu_kernels.cu). s1.c is C and keeps its functions static, so
 * this shim includes it (S1_NO_MAIN) and exports thin extern wrappers; the
 * Makefile compiles it with gcc and links it into build/tests/emu_kernels.
 * Every wrapper calls the oracle unchanged: no arithmetic happens here.
 */
#pragma GCC diagnostic ignored "-Wunused-function"   // the shim uses a part of s1.c
#define S1_NO_MAIN
#include "../s1.c"

void s1ref_embedding(float *out, const uint32_t *ids, const float *table, size_t N, size_t C) {
    embedding_forward(out, ids, table, N, C);
}

void s1ref_rmsnorm(float *out, const float *inp, const float *weight, size_t N, size_t C, float eps) {
    float *rstd = (float *)mallocCheck(N * sizeof(float));
    rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
    free(rstd);
}

void s1ref_matmul(float *out, const float *inp, const float *weight, const float *bias, size_t N, size_t C, size_t OC) {
    matmul_forward(out, inp, weight, bias, N, C, OC);
}

// x (N,NH,HD) rotated in place at positions pos, with s1.c's own fp32 tables
void s1ref_rope(float *x, const size_t *pos, size_t N, size_t NH, size_t HD, double theta) {
    Qwen2 m;
    memset(&m, 0, sizeof m);
    m.config.head_dim = HD;
    m.config.rope_theta = theta;
    size_t max_pos = 0;
    for (size_t n = 0; n < N; n++) max_pos = pos[n] > max_pos ? pos[n] : max_pos;
    rope_table_ensure(&m, max_pos + 1);
    rope_forward(x, pos, m.rope_cos, m.rope_sin, N, NH, HD);
    free(m.rope_cos);
    free(m.rope_sin);
}

// one sequence of T tokens: out (T,NQ,HD)
void s1ref_attention(float *out, const float *q, const float *k, const float *v, size_t T, size_t NQ, size_t NKV, size_t HD) {
    float *lse = (float *)mallocCheck(T * NQ * sizeof(float));
    size_t offsets[2] = {0, T};
    attention_forward(out, lse, q, k, v, offsets, 1, NQ, NKV, HD);
    free(lse);
}

void s1ref_swiglu(float *out, const float *gate, const float *up, size_t n) { swiglu_forward(out, gate, up, n); }

// sum_n weights[n] * CE(x[n] . w^T, targets[n]) with the fp32 LM head of s1.c
float s1ref_lm_head_loss(const float *x, const float *w, const uint32_t *targets, const float *weights, size_t N, size_t H, size_t V) {
    float *logits = (float *)mallocCheck(N * V * sizeof(float)), *lse = (float *)mallocCheck(N * sizeof(float));
    matmul_forward(logits, x, w, NULL, N, H, V);
    float loss = crossentropy_forward(lse, logits, targets, weights, N, V);
    free(logits);
    free(lse);
    return loss;
}

// ---- the whole model

// Loads a checkpoint folder; round_bf16 != 0 rounds every weight to bf16 (as the
// GPU holds them), so a comparison sees only the activations' rounding.
void *s1ref_model_load(const char *dir, int round_bf16) {
    Qwen2 *m = (Qwen2 *)mallocCheck(sizeof(Qwen2));
    qwen2_load(m, dir);
    if (round_bf16)
        for (size_t i = 0; i < m->num_parameters; i++) m->params_memory[i] = bf16_to_float(float_to_bf16(m->params_memory[i]));
    return m;
}

float s1ref_model_loss(void *model, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S) {
    return qwen2_forward((Qwen2 *)model, ids, mask, seq_offsets, S);
}

// the logits (N,V) of the last s1ref_model_loss
const float *s1ref_model_logits(void *model) { return ((Qwen2 *)model)->acts.logits; }

size_t s1ref_model_vocab(void *model) { return ((Qwen2 *)model)->config.vocab_size; }

void s1ref_model_free(void *model) {
    qwen2_free((Qwen2 *)model);
    free(model);
}

// The fixture's reference batch (tests/fixtures/README.md): input_ids, seq_offsets,
// target_mask, and HF's loss. Returns S; the arrays are malloc'd.
size_t s1ref_fixture_batch(const char *dir, uint32_t **ids, uint8_t **mask, size_t **offsets, float *hf_loss) {
    char path[4096];
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    SafetensorsFile f;
    safetensors_open(&f, path);
    const SafetensorsEntry *e_ids = safetensors_find(&f, "input_ids"), *e_off = safetensors_find(&f, "seq_offsets");
    const SafetensorsEntry *e_mask = safetensors_find(&f, "target_mask"), *e_loss = safetensors_find(&f, "loss");
    if (!e_ids || !e_off || !e_mask || !e_loss || strcmp(e_ids->dtype, "I32") || strcmp(e_off->dtype, "I64") ||
        strcmp(e_mask->dtype, "U8") || strcmp(e_loss->dtype, "F32"))
        die("%s: expected input_ids I32, seq_offsets I64, target_mask U8, loss F32", path);
    size_t S = e_off->numel - 1;
    int32_t *ids32 = (int32_t *)mallocCheck(e_ids->numel * 4);
    int64_t *off64 = (int64_t *)mallocCheck(e_off->numel * 8);
    *mask = (uint8_t *)mallocCheck(e_mask->numel);
    safetensors_read_raw(&f, e_ids, ids32);
    safetensors_read_raw(&f, e_off, off64);
    safetensors_read_raw(&f, e_mask, *mask);
    safetensors_read_raw(&f, e_loss, hf_loss);
    *ids = (uint32_t *)mallocCheck(e_ids->numel * sizeof(uint32_t));
    *offsets = (size_t *)mallocCheck((S + 1) * sizeof(size_t));
    for (size_t i = 0; i < e_ids->numel; i++) (*ids)[i] = (uint32_t)ids32[i];
    for (size_t i = 0; i <= S; i++) (*offsets)[i] = (size_t)off64[i];
    free(ids32);
    free(off64);
    safetensors_close(&f);
    return S;
}

// KV-cache decoding with s1.c: the logits (V,) after feeding token, valid until the next call
void *s1ref_kvcache_create(void *model, size_t max_len) { return kvcache_create(&((Qwen2 *)model)->config, max_len); }
const float *s1ref_decode_step(void *model, void *kv, uint32_t token) { return qwen2_decode_step((Qwen2 *)model, (KVCache *)kv, token); }
void s1ref_kvcache_free(void *kv) { kvcache_free((KVCache *)kv); }
size_t s1ref_kvcache_len(void *kv) { return ((KVCache *)kv)->len; }
void s1ref_kvcache_truncate(void *kv, size_t len) { kvcache_truncate((KVCache *)kv, len); }
