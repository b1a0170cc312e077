/*
 * s1_ref.c: s1.c's layer functions and model, callable from the C++ kernel
 * tests (tests/emu_kernels.cu). s1.c is C and keeps its functions static, so
 * this shim includes it (S1_NO_MAIN) and exports thin extern wrappers; the
 * Makefile compiles it with gcc and links it into build/tests/emu_kernels.
 * Every wrapper calls the oracle unchanged: no arithmetic happens here.
 * tests/kernel_test.h declares every wrapper (extern "C") for the tests: a
 * wrapper added or changed here is added or changed there too.
 */
#pragma GCC diagnostic ignored "-Wunused-function"   // the shim uses a part of s1.c
// The oracle's arithmetic is its source's: one rounding per operation. gcc's
// default for -std=gnu11 -march=native is -ffp-contract=fast, which fuses
// a*b + c into an FMA wherever it likes (in qwen2_update it does), so the AdamW
// step the GPU must match bit for bit (tests/emu_kernels_backward.cu) would
// depend on the compiler's choices and the build machine.
#pragma GCC optimize("fp-contract=off")
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

// s1.c's own fp32 RoPE tables (rope_table_ensure on a Qwen2 that holds only
// them) for head dim HD and base theta, at least len positions; the caller frees m->rope_cos, m->rope_sin
static void ref_rope_tables(Qwen2 *m, size_t HD, double theta, size_t len) {
    memset(m, 0, sizeof *m);
    m->config.head_dim = HD;
    m->config.rope_theta = theta;
    rope_table_ensure(m, len);
}

// x (N,NH,HD) rotated in place by s1.c's rope_forward or rope_backward (rotate)
// at positions pos, with s1.c's own fp32 tables
typedef void (*RopeFn)(float *x, const size_t *pos, const float *cos_t, const float *sin_t, size_t N, size_t NH, size_t HD);
static void ref_rope_apply(RopeFn rotate, float *x, const size_t *pos, size_t N, size_t NH, size_t HD, double theta) {
    size_t max_pos = 0;
    for (size_t n = 0; n < N; n++) max_pos = pos[n] > max_pos ? pos[n] : max_pos;
    Qwen2 m;
    ref_rope_tables(&m, HD, theta, max_pos + 1);
    rotate(x, pos, m.rope_cos, m.rope_sin, N, NH, HD);
    free(m.rope_cos);
    free(m.rope_sin);
}

// cos_t, sin_t (P,HD/2): s1.c's fp32 tables for positions [0, P)
void s1ref_rope_table(float *cos_t, float *sin_t, size_t P, size_t HD, double theta) {
    Qwen2 m;
    ref_rope_tables(&m, HD, theta, P);
    memcpy(cos_t, m.rope_cos, P * (HD / 2) * sizeof(float));
    memcpy(sin_t, m.rope_sin, P * (HD / 2) * sizeof(float));
    free(m.rope_cos);
    free(m.rope_sin);
}

// x (N,NH,HD) rotated in place at positions pos, with s1.c's own fp32 tables
void s1ref_rope(float *x, const size_t *pos, size_t N, size_t NH, size_t HD, double theta) {
    ref_rope_apply(rope_forward, x, pos, N, NH, HD, theta);
}

// one sequence of T tokens: out (T,NQ,HD)
void s1ref_attention(float *out, const float *q, const float *k, const float *v, size_t T, size_t NQ, size_t NKV, size_t HD) {
    float *lse = (float *)mallocCheck(T * NQ * sizeof(float));
    size_t offsets[2] = {0, T};
    attention_forward(out, lse, q, k, v, offsets, 1, NQ, NKV, HD);
    free(lse);
}

// one new token: out (NQ,HD) = the last row's attention over ntok keys, as s1.c's decoder
// computes it (attention_row() on the transposed heads); q (NQ,HD), k v (ntok,NKV,HD)
void s1ref_attention_decode(float *out, const float *q, const float *k, const float *v, size_t ntok, size_t NQ, size_t NKV,
                            size_t HD) {
    size_t KD = NKV * HD, G = NQ / NKV;
    float *kt = (float *)mallocCheck(2 * KD * ntok * sizeof(float)), *vt = kt + KD * ntok;
    float *scores = (float *)mallocCheck(ntok * sizeof(float)), lse;
    transpose_heads(kt, k, ntok, NKV, HD, ntok);
    transpose_heads(vt, v, ntok, NKV, HD, ntok);
    for (size_t h = 0; h < NQ; h++)
        attention_row(out + h * HD, &lse, q + h * HD, kt + (h / G) * HD * ntok, vt + (h / G) * HD * ntok, ntok, ntok, HD,
                      1.0f / sqrtf((float)HD), scores);
    free(kt);
    free(scores);
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

// one sequence of T tokens: out (T,NQ,HD) and lse (T,NQ), s1.c's forward as the backward pass gets it
void s1ref_attention_lse(float *out, float *lse, const float *q, const float *k, const float *v, size_t T, size_t NQ, size_t NKV, size_t HD) {
    size_t offsets[2] = {0, T};
    attention_forward(out, lse, q, k, v, offsets, 1, NQ, NKV, HD);
}

// one sequence of T tokens: dq (T,NQ,HD), dk dv (T,NKV,HD), zeroed first (s1.c accumulates into them)
void s1ref_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                              const float *q, const float *k, const float *v, size_t T, size_t NQ, size_t NKV, size_t HD) {
    size_t offsets[2] = {0, T};
    float *dsum = (float *)mallocCheck(T * NQ * sizeof(float));
    memset(dq, 0, T * NQ * HD * sizeof(float));
    memset(dk, 0, T * NKV * HD * sizeof(float));
    memset(dv, 0, T * NKV * HD * sizeof(float));
    attention_backward(dq, dk, dv, dsum, dout, out, lse, q, k, v, offsets, 1, NQ, NKV, HD);
    free(dsum);
}

// ---- backward passes and the optimizer (tests/emu_kernels_backward.cu)
// s1.c's backward functions ADD into their outputs: the caller zeroes them
// (or pre-fills them, to check accumulation).

void s1ref_embedding_backward(float *dtable, const float *dout, const uint32_t *ids, size_t N, size_t C) {
    embedding_backward(dtable, dout, ids, N, C);
}

// rstd (N,) comes from s1.c's own rmsnorm_forward (its output is discarded) and
// is returned, so the kernel under test can be fed the very same r.
void s1ref_rmsnorm_backward(float *dinp, float *dweight, float *rstd, const float *dout, const float *inp,
                            const float *weight, size_t N, size_t C, float eps) {
    float *out = (float *)mallocCheck(N * C * sizeof(float));
    rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
    rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
    free(out);
}

void s1ref_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, size_t N, size_t C, size_t OC) {
    matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

// dx (N,NH,HD) rotated back in place, with s1.c's own fp32 tables (as s1ref_rope)
void s1ref_rope_backward(float *dx, const size_t *pos, size_t N, size_t NH, size_t HD, double theta) {
    ref_rope_apply(rope_backward, dx, pos, N, NH, HD, theta);
}

void s1ref_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
    swiglu_backward(dgate, dup, dout, gate, up, n);
}

// The LM head's training step as qwen2_forward + qwen2_backward run it:
// logits = x . w^T, loss = crossentropy_forward, dlogits = crossentropy_backward
// (in place), then matmul_backward: dx (N,H) += dlogits . w, dw (V,H) += dlogits^T . x.
// dlogits (N,V) receives a copy of the fp32 dlogits (NULL: not wanted). Returns the loss.
float s1ref_classifier_backward(float *dx, float *dw, float *dlogits, const float *x, const float *w,
                                const uint32_t *targets, const float *weights, float grad_scale, size_t N, size_t H, size_t V) {
    float *logits = (float *)mallocCheck(N * V * sizeof(float)), *lse = (float *)mallocCheck(N * sizeof(float));
    matmul_forward(logits, x, w, NULL, N, H, V);
    float loss = crossentropy_forward(lse, logits, targets, weights, N, V);
    crossentropy_backward(logits, logits, lse, targets, weights, grad_scale, N, V);
    if (dlogits != NULL) memcpy(dlogits, logits, N * V * sizeof(float));
    matmul_backward(dx, dw, NULL, logits, x, w, N, H, V);
    free(logits);
    free(lse);
    return loss;
}

// qwen2_grad_norm over the n floats of g: a Qwen2 that only holds the gradients
float s1ref_grad_norm(const float *g, size_t n) {
    Qwen2 m;
    memset(&m, 0, sizeof m);
    m.grads_memory = (float *)g;
    m.num_parameters = n;
    return qwen2_grad_norm(&m);
}

// A randomly initialised tiny Qwen2 (qwen2_init_random) whose AdamW step the
// GPU kernel must reproduce; its flat buffers are handed out for the test to
// fill (params, grads) and read (params, adam_m, adam_v after an update).
void *s1ref_tiny_model(size_t V, size_t H, size_t I, size_t L, size_t NQ, size_t NKV, size_t HD, int tied, uint64_t seed) {
    Qwen2Config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = V; c.hidden_size = H; c.intermediate_size = I; c.num_layers = L;
    c.num_heads = NQ; c.num_kv_heads = NKV; c.head_dim = HD; c.max_position_embeddings = 64;
    c.rope_theta = 10000.0; c.rms_norm_eps = 1e-6; c.tie_word_embeddings = tied;
    c.bos_token_id = c.eos_token_id = -1;
    Qwen2 *m = (Qwen2 *)mallocCheck(sizeof(Qwen2));
    qwen2_init_random(m, &c, seed);
    m->grads_memory = (float *)callocCheck(m->num_parameters, sizeof(float));
    carve_parameters(&m->grads, m->grads_memory, &m->config);
    return m;
}

size_t s1ref_model_num_parameters(void *model) { return ((Qwen2 *)model)->num_parameters; }
float *s1ref_model_params(void *model) { return ((Qwen2 *)model)->params_memory; }
float *s1ref_model_grads(void *model) { return ((Qwen2 *)model)->grads_memory; }
float *s1ref_model_adam_m(void *model) { return ((Qwen2 *)model)->adam_m; }   // NULL before the first update
float *s1ref_model_adam_v(void *model) { return ((Qwen2 *)model)->adam_v; }
int s1ref_num_parameter_tensors(void) { return NUM_PARAMETER_TENSORS; }
// elements of parameter tensor i (all layers) and its kind (KIND_WEIGHT 0, KIND_BIAS 1, KIND_NORM 2)
size_t s1ref_model_tensor(void *model, int i, int *kind) {
    *kind = parameter_info[i].kind;
    return parameter_numel(&((Qwen2 *)model)->config, i);
}

// one qwen2_update (clip to max_grad_norm, one AdamW step); returns the norm before clipping
float s1ref_model_update(void *model, double lr, float beta1, float beta2, float eps, float weight_decay,
                         float max_grad_norm, int decay_norm_weights) {
    AdamWConfig cfg = {beta1, beta2, eps, weight_decay, max_grad_norm, decay_norm_weights};
    return qwen2_update((Qwen2 *)model, lr, &cfg);
}

// ---- the whole model's training step (tests/emu_kernels_train.cu)

// zero the gradients, then qwen2_backward(grad_scale) after an s1ref_model_loss with a mask
void s1ref_model_zero_grad(void *model) { qwen2_zero_grad((Qwen2 *)model); }
void s1ref_model_backward(void *model, float grad_scale) { qwen2_backward((Qwen2 *)model, grad_scale); }
// the model's gradients, NULL before the first backward
const float *s1ref_model_grads_memory(void *model) { return ((Qwen2 *)model)->grads_memory; }

// ---- for the kernel workbench (dev/*.cu)

// out (n,) += inp (n,): s1.c's residual add
void s1ref_residual(float *out, const float *inp, size_t n) { residual_forward(out, inp, n); }

// s1.c's cross-entropy over given logits (N,V): lse (N,) and the summed loss; with
// dlogits != NULL also its backward, dlogits (N,V) = grad_scale * w * (softmax - onehot)
float s1ref_crossentropy(float *lse, float *dlogits, const float *logits, const uint32_t *targets, const float *weights,
                         float grad_scale, size_t N, size_t V) {
    float loss = crossentropy_forward(lse, logits, targets, weights, N, V);
    if (dlogits) crossentropy_backward(dlogits, logits, lse, targets, weights, grad_scale, N, V);
    return loss;
}
