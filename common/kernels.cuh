/*
 * kernels.cuh: the Qwen2.5 model on the GPU, shared by sft.cu and sample.cu.
 *
 * The kernels live one header per operation, like llm.c's llmc/ (forward and
 * backward side by side): common/embedding.cuh, rmsnorm.cuh, matmul.cuh,
 * rope.cuh, attention.cuh, swiglu.cuh, classifier.cuh, over cuda_common.cuh.
 * This file holds the model built from them.
 *
 * Each kernel is the GPU twin of an s1.c layer function (the fp32 CPU oracle)
 * and is tested against it by tests/emu_kernels.cu, on the CPU through the CUDA
 * emulator (common/cuemu.h) in three thread schedules:
 *
 *   embedding_forward()     embedding_forward_kernel          s1.c embedding_forward()
 *   rmsnorm_forward()       rmsnorm_forward_kernel            s1.c rmsnorm_forward()
 *   matmul_forward()        cublasGemmEx + bias_fill_kernel   s1.c matmul_forward()
 *   rope_forward()          rope_forward_kernel               s1.c rope_forward()
 *   attention_forward()     attention_forward_kernel (flash)  s1.c attention_forward()
 *   attention_decode()      attention_decode_kernel           s1.c attention_row() (one token, KV cache)
 *   swiglu_forward()        swiglu_forward_kernel             s1.c swiglu_forward()
 *   lm_head_loss()          cublasGemmEx per chunk of rows +  s1.c matmul_forward() (the head)
 *                           crossentropy_forward_kernel +       + crossentropy_forward()
 *                           sum_kernel
 *
 * then the model: gpu_model_load() (a HF checkpoint folder into bf16 GPU
 * memory), gpu_forward() (the masked s1 loss of a batch, as s1.c's
 * qwen2_forward()) and gpu_decode() (tokens appended to a KV cache, as s1.c's
 * qwen2_decode_step()).
 *
 * Precision, as Hugging Face runs a bf16 Qwen2 (docs/qwen2.5.md section 3):
 * weights and activations are bf16 (floatX), every sum and statistic is fp32
 * (RMSNorm's mean square, the GEMMs' accumulation, the softmax and the
 * cross-entropy), and each kernel rounds its output to bf16 once (RMSNorm twice,
 * at HF's cast point before the weight multiply). Logits are
 * fp32 (HF upcasts them before the loss).
 *
 * Two memory rules make 32K-token sequences fit (s1-spec.md section 8): the
 * attention never materialises the T x T score matrix (flash attention: tiles
 * of keys in shared memory, an online softmax), and the loss never holds the
 * T x V logits (20 GB in fp32 at 32768 x 152064): the LM head runs on chunks
 * of rows, each reduced to per-token losses before the next.
 *
 * Not here yet: the backward kernels, AdamW and NCCL data parallelism (a later
 * issue); the kernels are written for clarity first (no tensor cores in the
 * attention, no flash-decoding split of long KV caches).
 *
 * Dimension letters: N tokens of a batch, T of one sequence, H hidden, I MLP,
 * NQ query heads, NKV key/value heads, HD head dim, QD = NQ*HD, KD = NKV*HD,
 * V vocabulary rows, L layers.
 */
#ifndef S1C_KERNELS_CUH
#define S1C_KERNELS_CUH

#include "common/cuda_common.cuh"
#include "common/embedding.cuh"
#include "common/rmsnorm.cuh"
#include "common/matmul.cuh"
#include "common/rope.cuh"
#include "common/attention.cuh"
#include "common/swiglu.cuh"
#include "common/classifier.cuh"

// ----------------------------------------------------------------------------
// the model: parameters in one bf16 allocation, carved as s1.c carves its fp32 ones

enum { GP_EMBED, GP_LN1W, GP_QW, GP_QB, GP_KW, GP_KB, GP_VW, GP_VB, GP_OW, GP_LN2W, GP_GATEW, GP_UPW, GP_DOWNW,
       GP_NORMW, GP_LMW, GP_NUM };

static const struct { const char *name; int per_layer; } gpu_param_info[GP_NUM] = {
    {"model.embed_tokens.weight", 0}, {"input_layernorm.weight", 1}, {"self_attn.q_proj.weight", 1},
    {"self_attn.q_proj.bias", 1}, {"self_attn.k_proj.weight", 1}, {"self_attn.k_proj.bias", 1},
    {"self_attn.v_proj.weight", 1}, {"self_attn.v_proj.bias", 1}, {"self_attn.o_proj.weight", 1},
    {"post_attention_layernorm.weight", 1}, {"mlp.gate_proj.weight", 1}, {"mlp.up_proj.weight", 1},
    {"mlp.down_proj.weight", 1}, {"model.norm.weight", 0}, {"lm_head.weight", 0},
};

typedef struct {
    Qwen2Config config;
    floatX *params_memory;         // one allocation, carved into param[]
    floatX *param[GP_NUM];         // e.g. param[GP_QW]: (L, QD, H); param[GP_LMW]: (V, H), or the embedding when tied
    size_t param_dims[GP_NUM][2];  // one layer's slice (dims[1] = 0 for vectors)
    size_t num_parameters;
    cublasHandle_t cublas;
    int chunk_rows;                // rows of the LM head per chunk
    // activations of one forward, for up to `capacity` tokens (bf16 unless noted)
    size_t capacity;
    floatX *res;                   // (N,H) the residual stream
    floatX *ln;                    // (N,H) normed input of the current sublayer
    floatX *q, *att;               // (N,QD)
    floatX *k, *v;                 // (N,KD)
    floatX *gate, *up;             // (N,I); gate then holds silu(gate) * up
    float *logits;                 // (chunk_rows,V) fp32: one chunk of the LM head
    float *losses, *weights;       // (N,) fp32
    float *loss;                   // (1,)
    uint32_t *ids, *targets;       // (N,)
    int *pos;                      // (N,) position within its sequence
} GpuModel;

static size_t gpu_param_numel(const GpuModel *m, int i) {
    size_t n = m->param_dims[i][0] * (m->param_dims[i][1] ? m->param_dims[i][1] : 1);
    return gpu_param_info[i].per_layer ? n * m->config.num_layers : n;
}

static const floatX *gpu_lm_head(const GpuModel *m) {
    return m->config.tie_word_embeddings ? m->param[GP_EMBED] : m->param[GP_LMW];
}

// Copies the tensors of weight file `file` of a checkpoint folder into the GPU
// parameters. loaded[i * L + l] marks tensor i (layer l) as read, so duplicates
// and gaps are caught.
static void gpu_read_safetensors(GpuModel *m, const SafetensorsFolder *files, size_t file, char *loaded) {
    size_t L = m->config.num_layers;
    SafetensorsFile f;
    safetensors_folder_open_file(files, file, &f);
    const char *path = f.path;
    for (size_t e = 0; e < f.num_entries; e++) {
        const SafetensorsEntry *en = &f.entries[e];
        int found = -1;
        size_t layer = 0;
        for (int i = 0; i < GP_NUM && found < 0; i++) {
            if (gpu_param_info[i].per_layer) {
                const char *prefix = "model.layers.";
                size_t plen = strlen(prefix);
                if (strncmp(en->name, prefix, plen) != 0) continue;
                char *end;
                unsigned long long l = strtoull(en->name + plen, &end, 10);
                if (end == en->name + plen || *end != '.' || strcmp(end + 1, gpu_param_info[i].name) != 0) continue;
                if (l >= L) die("%s: tensor %s: layer %llu, but the config has %zu layers", path, en->name, l, L);
                layer = (size_t)l;
                found = i;
            } else if (strcmp(en->name, gpu_param_info[i].name) == 0) {
                found = i;
            }
        }
        if (found == GP_LMW && m->config.tie_word_embeddings) continue;   // a copy of the embedding
        if (found < 0) die("%s: unexpected tensor %s (not part of a Qwen2 model with this config)", path, en->name);
        const size_t *dims = m->param_dims[found];
        size_t ndim = dims[1] ? 2 : 1;
        if (en->ndim != ndim || en->dims[0] != dims[0] || (ndim == 2 && en->dims[1] != dims[1])) {
            if (ndim == 2) die("%s: tensor %s: the config implies shape [%zu, %zu]", path, en->name, dims[0], dims[1]);
            die("%s: tensor %s: the config implies shape [%zu]", path, en->name, dims[0]);
        }
        if (strcmp(en->dtype, "F32") != 0 && strcmp(en->dtype, "F16") != 0 && strcmp(en->dtype, "BF16") != 0)
            die("%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", path, en->name, en->dtype);
        char *mark = &loaded[found * L + layer];
        if (*mark) die("%s: tensor %s appears more than once", path, en->name);
        *mark = 1;
        uint16_t *host = (uint16_t *)mallocCheck(en->numel * sizeof(uint16_t));
        safetensors_read_bf16(&f, en, host);
        cudaCheck(cudaMemcpy(m->param[found] + layer * en->numel, host, en->numel * sizeof(uint16_t), cudaMemcpyHostToDevice));
        free(host);
    }
    safetensors_close(&f);
}

// Loads a HF model folder (config.json plus model.safetensors, or the shards
// listed in model.safetensors.index.json; tensors F32, F16 or BF16) into bf16
// GPU memory. chunk_rows: rows per LM-head chunk (memory: chunk_rows * V * 4 bytes).
static void gpu_model_load(GpuModel *m, const char *dir, int chunk_rows) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    config_read(&m->config, path);
    const Qwen2Config *c = &m->config;
    if (c->head_dim > ATT_MAX_HD) die("%s: head_dim %zu exceeds the attention kernel's %d", path, c->head_dim, ATT_MAX_HD);
    if (c->hidden_size > (1u << 30) || c->vocab_size > (1u << 30) || c->intermediate_size > (1u << 30))
        die("%s: a model size exceeds the kernels' int range", path);
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t dims[GP_NUM][2] = {{c->vocab_size, H}, {H, 0}, {QD, H}, {QD, 0}, {KD, H}, {KD, 0}, {KD, H}, {KD, 0},
                              {H, QD}, {H, 0}, {I, H}, {I, H}, {H, I}, {H, 0}, {c->tie_word_embeddings ? 0 : c->vocab_size, H}};
    memcpy(m->param_dims, dims, sizeof dims);
    for (int i = 0; i < GP_NUM; i++) m->num_parameters += gpu_param_numel(m, i);
    cudaCheck(cudaMalloc((void **)&m->params_memory, m->num_parameters * sizeof(floatX)));
    floatX *p = m->params_memory;
    for (int i = 0; i < GP_NUM; i++) { m->param[i] = p; p += gpu_param_numel(m, i); }

    size_t L = c->num_layers;
    char *loaded = (char *)callocCheck(GP_NUM * L, 1);
    SafetensorsFolder files;
    safetensors_folder_open(&files, dir);
    for (size_t i = 0; i < files.num_files; i++) gpu_read_safetensors(m, &files, i, loaded);
    safetensors_folder_close(&files);
    for (int i = 0; i < GP_NUM; i++)
        for (size_t l = 0; l < (gpu_param_info[i].per_layer ? L : 1); l++)
            if (!loaded[i * L + l] && !(i == GP_LMW && c->tie_word_embeddings)) {
                if (gpu_param_info[i].per_layer) die("%s: missing tensor model.layers.%zu.%s", dir, l, gpu_param_info[i].name);
                die("%s: missing tensor %s", dir, gpu_param_info[i].name);
            }
    free(loaded);
    cublasCheck(cublasCreate(&m->cublas));
    m->chunk_rows = chunk_rows > 0 ? chunk_rows : 1;
}

// Elements per token of the bf16 activation buffers res, ln, q, att, k, v, gate, up.
#define GPU_ACT_BUFFERS 8
static void gpu_activation_widths(const Qwen2Config *c, size_t widths[GPU_ACT_BUFFERS]) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t w[GPU_ACT_BUFFERS] = {H, H, QD, QD, KD, KD, I, I};
    memcpy(widths, w, sizeof w);
}

// GPU bytes of the activations of an N-token forward pass (the LM-head chunk aside).
static size_t gpu_activation_bytes(const Qwen2Config *c, size_t N) {
    size_t widths[GPU_ACT_BUFFERS], per_token = 2 * sizeof(float) + 2 * sizeof(uint32_t) + sizeof(int);   // losses weights ids targets pos
    gpu_activation_widths(c, widths);
    for (int i = 0; i < GPU_ACT_BUFFERS; i++) per_token += widths[i] * sizeof(floatX);
    return N * per_token;
}

// Grows the activation buffers to hold N tokens.
static void gpu_activations_ensure(GpuModel *m, size_t N) {
    if (N <= m->capacity) return;
    const Qwen2Config *c = &m->config;
    floatX **bf[GPU_ACT_BUFFERS] = {&m->res, &m->ln, &m->q, &m->att, &m->k, &m->v, &m->gate, &m->up};
    size_t widths[GPU_ACT_BUFFERS];
    gpu_activation_widths(c, widths);
    for (int i = 0; i < GPU_ACT_BUFFERS; i++) {
        cudaCheck(cudaFree(*bf[i]));
        cudaCheck(cudaMalloc((void **)bf[i], N * widths[i] * sizeof(floatX)));
    }
    float **fl[] = {&m->losses, &m->weights};
    for (size_t i = 0; i < 2; i++) {
        cudaCheck(cudaFree(*fl[i]));
        cudaCheck(cudaMalloc((void **)fl[i], N * sizeof(float)));
    }
    cudaCheck(cudaFree(m->ids)); cudaCheck(cudaFree(m->targets)); cudaCheck(cudaFree(m->pos));
    cudaCheck(cudaMalloc((void **)&m->ids, N * sizeof(uint32_t)));
    cudaCheck(cudaMalloc((void **)&m->targets, N * sizeof(uint32_t)));
    cudaCheck(cudaMalloc((void **)&m->pos, N * sizeof(int)));
    if (m->logits == NULL) {
        cudaCheck(cudaMalloc((void **)&m->logits, (size_t)m->chunk_rows * c->vocab_size * sizeof(float)));
        cudaCheck(cudaMalloc((void **)&m->loss, sizeof(float)));
    }
    m->capacity = N;
}

// One transformer layer l over N tokens whose keys/values go to kc, vc
// (rows [past, past+N) of a (past+N, KD) buffer): attention of each of the S
// sequences (seq_offsets), or, with seq_offsets NULL, of N new tokens of one
// sequence after `past` cached ones.
static void gpu_layer_forward(GpuModel *m, size_t l, int N, const size_t *seq_offsets, size_t S, floatX *kc, floatX *vc, int past) {
    const Qwen2Config *c = &m->config;
    int H = (int)c->hidden_size, I = (int)c->intermediate_size, NQ = (int)c->num_heads, NKV = (int)c->num_kv_heads;
    int HD = (int)c->head_dim, QD = NQ * HD, KD = NKV * HD;
    float eps = (float)c->rms_norm_eps, theta = (float)c->rope_theta;
    floatX *const *p = m->param;
    floatX *k = kc + (size_t)past * KD, *v = vc + (size_t)past * KD;
    rmsnorm_forward(m->ln, NULL, m->res, p[GP_LN1W] + l * H, N, H, eps);
    matmul_forward(m->cublas, m->q, m->ln, p[GP_QW] + l * QD * H, p[GP_QB] + l * QD, N, H, QD, 0);
    matmul_forward(m->cublas, k, m->ln, p[GP_KW] + l * KD * H, p[GP_KB] + l * KD, N, H, KD, 0);
    matmul_forward(m->cublas, v, m->ln, p[GP_VW] + l * KD * H, p[GP_VB] + l * KD, N, H, KD, 0);
    rope_forward(m->q, m->pos, N, NQ, HD, theta);
    rope_forward(k, m->pos, N, NKV, HD, theta);
    if (seq_offsets == NULL && N == 1) {
        attention_decode(m->att, m->q, kc, vc, past + 1, NQ, NKV, HD);
    } else if (seq_offsets == NULL) {
        attention_forward(m->att, NULL, m->q, kc, vc, N, past, NQ, NKV, HD);
    } else {
        for (size_t s = 0; s < S; s++) {
            size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
            if (T > 0) attention_forward(m->att + n0 * QD, NULL, m->q + n0 * QD, k + n0 * KD, v + n0 * KD, (int)T, 0, NQ, NKV, HD);
        }
    }
    matmul_forward(m->cublas, m->res, m->att, p[GP_OW] + l * H * QD, NULL, N, QD, H, 1);
    rmsnorm_forward(m->ln, NULL, m->res, p[GP_LN2W] + l * H, N, H, eps);
    matmul_forward(m->cublas, m->gate, m->ln, p[GP_GATEW] + l * I * H, NULL, N, H, I, 0);
    matmul_forward(m->cublas, m->up, m->ln, p[GP_UPW] + l * I * H, NULL, N, H, I, 0);
    swiglu_forward(m->gate, m->gate, m->up, (size_t)N * I);
    matmul_forward(m->cublas, m->res, m->gate, p[GP_DOWNW] + l * H * I, NULL, N, I, H, 1);
}

// Forward pass over S sequences stored back to back, with s1.c's conventions
// (see qwen2_forward() there): ids (N,), seq_offsets (S+1,), mask (N,) marks
// the loss targets (mask[t] = 1: token t is predicted from the tokens before
// it). Returns s1's loss, the mean over sequences of each sequence's
// token-mean cross-entropy; a sequence without targets counts with loss 0.
static float gpu_forward(GpuModel *m, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S) {
    const Qwen2Config *c = &m->config;
    size_t N = seq_offsets[S], H = c->hidden_size, V = c->vocab_size, L = c->num_layers;
    if (N == 0) return 0.0f;
    if (N > (1u << 30)) die("gpu_forward: %zu tokens exceed the kernels' int range", N);
    gpu_activations_ensure(m, N);
    uint32_t *targets = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    float *weights = (float *)mallocCheck(N * sizeof(float));
    int *pos = (int *)mallocCheck(N * sizeof(int));
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], n1 = seq_offsets[s + 1], count = 0;
        if (n1 < n0) die("gpu_forward: sequence offsets decrease at sequence %zu", s);
        for (size_t n = n0 + 1; n < n1; n++) count += mask[n] != 0;
        for (size_t n = n0; n < n1; n++) {
            if (ids[n] >= V) die("gpu_forward: token id %u at position %zu is outside the %zu-row embedding", ids[n], n, V);
            int scored = n + 1 < n1 && mask[n + 1];
            pos[n] = (int)(n - n0);
            targets[n] = scored ? ids[n + 1] : 0;
            weights[n] = scored ? (float)(1.0 / ((double)S * (double)count)) : 0.0f;
        }
    }
    cudaCheck(cudaMemcpy(m->ids, ids, N * sizeof(uint32_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->targets, targets, N * sizeof(uint32_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->weights, weights, N * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->pos, pos, N * sizeof(int), cudaMemcpyHostToDevice));

    embedding_forward(m->res, m->ids, m->param[GP_EMBED], (int)N, (int)H);
    for (size_t l = 0; l < L; l++) gpu_layer_forward(m, l, (int)N, seq_offsets, S, m->k, m->v, 0);
    rmsnorm_forward(m->ln, NULL, m->res, m->param[GP_NORMW], (int)N, (int)H, (float)c->rms_norm_eps);
    lm_head_loss(m->cublas, m->loss, m->losses, m->logits, m->ln, gpu_lm_head(m), m->targets, m->weights, weights,
                 (int)N, (int)H, (int)V, m->chunk_rows);
    float loss;
    cudaCheck(cudaMemcpy(&loss, m->loss, sizeof(float), cudaMemcpyDeviceToHost));
    free(targets); free(weights); free(pos);
    return loss;
}

// ----------------------------------------------------------------------------
// decoding with a KV cache: one token at a time, for sample.cu

typedef struct {
    size_t max_len, len;   // capacity and tokens cached (the next token's position)
    floatX *k, *v;         // (L, max_len, KD) keys after RoPE, values
    float *logits;         // (V,) host copy of the last step's logits
} GpuKVCache;

static void gpu_kvcache_create(GpuKVCache *kv, const GpuModel *m, size_t max_len) {
    const Qwen2Config *c = &m->config;
    size_t bytes = c->num_layers * max_len * c->num_kv_heads * c->head_dim * sizeof(floatX);
    kv->max_len = max_len;
    kv->len = 0;
    cudaCheck(cudaMalloc((void **)&kv->k, bytes));
    cudaCheck(cudaMalloc((void **)&kv->v, bytes));
    kv->logits = (float *)mallocCheck(c->vocab_size * sizeof(float));
}

static void gpu_kvcache_free(GpuKVCache *kv) {
    cudaCheck(cudaFree(kv->k));
    cudaCheck(cudaFree(kv->v));
    free(kv->logits);
    memset(kv, 0, sizeof *kv);
}

// Appends n tokens at positions kv->len.. (a prompt in one pass, or one
// generated token) and returns the logits (V,) that follow the last of them
// (host memory, valid until the next call). The layer kernels of gpu_forward():
// K/V go straight into the cache rows, and attention reads the cached keys as
// `past` (attention_decode() when n = 1, attention_forward() for a prompt).
// Only the last token goes through the LM head.
static const float *gpu_decode(GpuModel *m, GpuKVCache *kv, const uint32_t *ids, size_t n) {
    const Qwen2Config *c = &m->config;
    size_t H = c->hidden_size, V = c->vocab_size, L = c->num_layers, KD = c->num_kv_heads * c->head_dim;
    if (n == 0) die("gpu_decode: no tokens to feed");
    if (kv->len + n > kv->max_len) die("gpu_decode: KV cache is full (%zu tokens, %zu more requested)", kv->max_len, n);
    gpu_activations_ensure(m, n);
    int *pos = (int *)mallocCheck(n * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= V) die("gpu_decode: token id %u is outside the %zu-row embedding", ids[i], V);
        pos[i] = (int)(kv->len + i);
    }
    cudaCheck(cudaMemcpy(m->ids, ids, n * sizeof(uint32_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->pos, pos, n * sizeof(int), cudaMemcpyHostToDevice));
    free(pos);
    embedding_forward(m->res, m->ids, m->param[GP_EMBED], (int)n, (int)H);
    for (size_t l = 0; l < L; l++)
        gpu_layer_forward(m, l, (int)n, NULL, 1, kv->k + l * kv->max_len * KD, kv->v + l * kv->max_len * KD, (int)kv->len);
    const floatX *last = m->res + (n - 1) * H;
    rmsnorm_forward(m->ln, NULL, last, m->param[GP_NORMW], 1, (int)H, (float)c->rms_norm_eps);
    gemm_nt(m->cublas, m->logits, CUDA_R_32F, m->ln, gpu_lm_head(m), 1, (int)H, (int)V, 0.0f);
    cudaCheck(cudaMemcpy(kv->logits, m->logits, V * sizeof(float), cudaMemcpyDeviceToHost));
    kv->len += n;
    return kv->logits;
}

static void gpu_model_free(GpuModel *m) {
    void *bufs[] = {m->params_memory, m->res, m->ln, m->q, m->att, m->k, m->v, m->gate, m->up, m->logits,
                    m->losses, m->weights, m->loss, m->ids, m->targets, m->pos};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaCheck(cudaFree(bufs[i]));
    cublasCheck(cublasDestroy(m->cublas));
    memset(m, 0, sizeof *m);
}

#endif // S1C_KERNELS_CUH
