/*
 * kernels.cuh: the Qwen2.5 model on the GPU, shared by sft.cu and sample.cu.
 *
 * The kernels live one header per operation, like llm.c's llmc/, each
 * forward kernel beside its backward twin; this file holds the model built
 * from them. Each is the GPU twin of an s1.c layer function (the fp32 CPU
 * oracle) and is tested against it on the CPU through the CUDA emulator
 * (common/cuemu.h) in three thread schedules (tests/emu_kernels*.cu):
 *
 *   header           launcher                 kernels                                s1.c twin
 *   embedding.cuh    embedding_forward()      embedding_forward_kernel               embedding_forward()
 *                    embedding_backward()     embedding_backward_kernel (per id)     embedding_backward()
 *   rmsnorm.cuh      rmsnorm_forward()        rmsnorm_forward_kernel                 rmsnorm_forward()
 *                    rmsnorm_backward()       rmsnorm_backward_kernel + column sums  rmsnorm_backward()
 *   matmul.cuh       matmul_forward()         cublasGemmEx + bias_fill_kernel        matmul_forward()
 *                    matmul_backward()        2 x cublasGemmEx + column sums (dbias) matmul_backward()
 *   rope.cuh         rope_forward()           rope_forward_kernel (direction +1)     rope_forward()
 *                    rope_backward()          rope_forward_kernel (direction -1)     rope_backward()
 *   attention.cuh    attention_forward()      attention_forward_kernel (flash)       attention_forward()
 *                    attention_backward()     _D_, _dkdv_, _dq_kernel (FA2)          attention_backward()
 *                    attention_decode()       attention_decode_kernel                attention_row() (KV cache)
 *   swiglu.cuh       swiglu_forward()         swiglu_forward_kernel                  swiglu_forward()
 *                    swiglu_backward()        swiglu_backward_kernel                 swiglu_backward()
 *   classifier.cuh   lm_head_loss()           cublasGemmEx per chunk of rows +       matmul_forward() (head) +
 *                    classifier_forward_      crossentropy_forward_kernel (+ bf16    crossentropy_forward(),
 *                    backward()               dlogits in place) + 2 GEMMs, sum_kernel  _backward(), matmul_backward()
 *   global_norm.cuh  global_norm()            fixed-grid partials + one block        qwen2_grad_norm()
 *   adamw.cuh        adamw_update()           adamw_kernel                           qwen2_update()
 *
 * then the model: gpu_model_load() (a HF checkpoint folder into bf16 GPU
 * memory), gpu_forward() (the masked s1 loss of a batch, as s1.c's
 * qwen2_forward()), gpu_decode() (tokens appended to a KV cache, as s1.c's
 * qwen2_decode_step()), and for training gpu_forward_backward() (s1.c's
 * qwen2_forward() + qwen2_backward(), with activation checkpointing) and
 * gpu_update() (s1.c's qwen2_update()).
 *
 * Precision, as Hugging Face runs a bf16 Qwen2 (docs/qwen2.5.md section 3):
 * weights and activations are bf16 (floatX), every sum and statistic is fp32
 * (RMSNorm's mean square, the GEMMs' accumulation, the softmax and the
 * cross-entropy), and each kernel rounds its output to bf16 once (RMSNorm twice,
 * at HF's cast point before the weight multiply). Logits are
 * fp32 (HF upcasts them before the loss). Training adds fp32 master weights,
 * AdamW moments and parameter gradients; the residual stream's gradient is
 * fp32, and the activation gradients that feed GEMMs are bf16.
 *
 * Two memory rules make 32K-token sequences fit (s1-spec.md section 8): the
 * attention never materialises the T x T score matrix (flash attention: tiles
 * of keys in shared memory, an online softmax; its backward recomputes the
 * probabilities from the saved log-sum-exp), and the loss never holds the
 * T x V logits (20 GB in fp32 at 32768 x 152064): the LM head runs on chunks
 * of rows, each reduced to per-token losses (and, training, to its gradients)
 * before the next.
 *
 * Determinism: no floating-point atomics; every reduction runs in a fixed
 * order on a grid that depends only on the sizes, so a run repeats bit for bit.
 *
 * Not here yet: NCCL data parallelism (a later issue); the kernels are written
 * for clarity first (no tensor cores in the attention, no flash-decoding split
 * of long KV caches).
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
#include "common/global_norm.cuh"
#include "common/adamw.cuh"

// ----------------------------------------------------------------------------
// the model: parameters in one bf16 allocation, carved in s1.c's layout
// (common/qwen2_weights.h: P_EMBED ... P_LMW); for training, fp32 master
// weights, gradients and AdamW moments in the same layout, one flat buffer each
// (so a later data-parallel version can shard every buffer by ranges)

typedef struct {
    Qwen2Config config;
    size_t num_parameters;         // P
    floatX *params_memory;         // (P,) bf16 working weights, carved into param[]
    floatX *param[NUM_PARAMETER_TENSORS];   // e.g. param[P_QW]: (L, QD, H); param[P_LMW]: (V, H), empty when tied
    // training state (gpu_model_create with training = 1), fp32
    float *master_memory;          // (P,) master weights; params_memory is their bf16 rounding
    float *grads_memory;           // (P,) gradients, accumulated over a step's micro-batches
    float *grad[NUM_PARAMETER_TENSORS];
    float *adam_m, *adam_v;        // (P,) AdamW moments
    size_t step;                   // AdamW steps taken
    size_t allocated_bytes;        // GPU memory this model allocated (the log's "mem" figure)
    cublasHandle_t cublas;
    int chunk_rows;                // rows of the LM head per chunk
    // the batch: for up to `batch_capacity` tokens
    size_t batch_capacity;
    float *logits;                 // (chunk_rows,V) fp32: one chunk of the LM head
    float *losses, *weights;       // (N,) fp32
    float *loss;                   // (1,)
    uint32_t *ids, *targets;       // (N,)
    int *pos;                      // (N,) position within its sequence
    double *norm_scratch;          // the global gradient norm's partial sums (training)
    // inference activations (gpu_forward, gpu_decode), for up to `capacity` tokens (bf16)
    size_t capacity;
    floatX *res;                   // (N,H) the residual stream
    floatX *ln;                    // (N,H) normed input of the current sublayer
    floatX *q, *att;               // (N,QD)
    floatX *k, *v;                 // (N,KD)
    floatX *gate, *up;             // (N,I); gate then holds silu(gate) * up
} GpuModel;

static const floatX *gpu_lm_head(const GpuModel *m) {
    return m->config.tie_word_embeddings ? m->param[P_EMBED] : m->param[P_LMW];
}

// cudaMalloc that counts what the model holds.
static void *gpu_alloc(GpuModel *m, size_t bytes) {
    void *p = NULL;
    if (bytes > 0) cudaCheck(cudaMalloc(&p, bytes));
    m->allocated_bytes += bytes;
    return p;
}

// Allocates a model of config c (weights uninitialised). training = 1 adds
// the fp32 master weights, gradients and AdamW moments (16 bytes per parameter
// with the bf16 weights, s1-spec section 8). chunk_rows: rows per LM-head
// chunk (memory: chunk_rows * V * 4 bytes).
static void gpu_model_create(GpuModel *m, const Qwen2Config *c, int chunk_rows, int training) {
    memset(m, 0, sizeof *m);
    m->config = *c;
    if (c->head_dim > ATT_MAX_HD) die("config: head_dim %zu exceeds the attention kernel's %d", c->head_dim, ATT_MAX_HD);
    if (c->hidden_size > (1u << 30) || c->vocab_size > (1u << 30) || c->intermediate_size > (1u << 30))
        die("config: a model size exceeds the kernels' int range");
    size_t P = m->num_parameters = parameter_count(c);
    m->params_memory = (floatX *)gpu_alloc(m, P * sizeof(floatX));
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) m->param[i] = m->params_memory + parameter_offset(c, i);
    if (training) {
        m->master_memory = (float *)gpu_alloc(m, P * sizeof(float));
        m->grads_memory = (float *)gpu_alloc(m, P * sizeof(float));
        m->adam_m = (float *)gpu_alloc(m, P * sizeof(float));
        m->adam_v = (float *)gpu_alloc(m, P * sizeof(float));
        cudaCheck(cudaMemset(m->grads_memory, 0, P * sizeof(float)));
        cudaCheck(cudaMemset(m->adam_m, 0, P * sizeof(float)));
        cudaCheck(cudaMemset(m->adam_v, 0, P * sizeof(float)));
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) m->grad[i] = m->grads_memory + parameter_offset(c, i);
        m->norm_scratch = (double *)gpu_alloc(m, GLOBAL_NORM_SCRATCH * sizeof(double));
    }
    cublasCheck(cublasCreate(&m->cublas));
    m->chunk_rows = chunk_rows > 0 ? chunk_rows : 1;
}

// Uploads n fp32 values to the parameters at `offset`: the bf16 weights get
// their rounding (round to nearest even, as the AdamW kernel rounds), the
// master weights, when training, the values themselves.
static void gpu_upload_parameters(GpuModel *m, size_t offset, const float *values, size_t n) {
    uint16_t *bf = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
    for (size_t j = 0; j < n; j++) bf[j] = float_to_bf16(values[j]);
    cudaCheck(cudaMemcpy(m->params_memory + offset, bf, n * sizeof(uint16_t), cudaMemcpyHostToDevice));
    if (m->master_memory != NULL) cudaCheck(cudaMemcpy(m->master_memory + offset, values, n * sizeof(float), cudaMemcpyHostToDevice));
    free(bf);
}

static void gpu_read_tensor(void *ctx, const TensorInfo *t, SafetensorsFile *f, const SafetensorsEntry *e) {
    float *host = (float *)mallocCheck(t->numel * sizeof(float));
    safetensors_read_f32(f, e, host);
    gpu_upload_parameters((GpuModel *)ctx, t->offset, host, t->numel);
    free(host);
}

// Reads the weights of a HF checkpoint folder (config.json plus
// model.safetensors or the shards of an index; F32, F16 or BF16; checked by
// common/qwen2_weights.h exactly as s1.c checks them), one tensor at a time.
// Returns the checkpoint's AdamW step (0 for a plain HF checkpoint).
static size_t gpu_model_read(GpuModel *m, const char *dir) {
    return qwen2_checkpoint_read(dir, &m->config, gpu_read_tensor, m);
}

// Loads a HF model folder: its config, then its weights into bf16 GPU memory
// and, with training = 1, into fp32 master weights too. Returns the
// checkpoint's AdamW step.
static size_t gpu_model_open(GpuModel *m, const char *dir, int chunk_rows, int training) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    Qwen2Config c;
    config_read(&c, path);
    gpu_model_create(m, &c, chunk_rows, training);
    return gpu_model_read(m, dir);
}

// Loads a HF model folder into bf16 GPU memory, for inference.
static void gpu_model_load(GpuModel *m, const char *dir, int chunk_rows) { gpu_model_open(m, dir, chunk_rows, 0); }

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

// Grows the batch buffers (ids, targets, pos, loss weights, per-token losses)
// to N tokens; the first call also allocates the LM-head chunk.
static void gpu_batch_ensure(GpuModel *m, size_t N) {
    if (N <= m->batch_capacity) return;
    void *old[] = {m->ids, m->targets, m->pos, m->weights, m->losses};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) cudaCheck(cudaFree(old[i]));
    m->allocated_bytes -= m->batch_capacity * (2 * sizeof(uint32_t) + sizeof(int) + 2 * sizeof(float));
    m->ids = (uint32_t *)gpu_alloc(m, N * sizeof(uint32_t));
    m->targets = (uint32_t *)gpu_alloc(m, N * sizeof(uint32_t));
    m->pos = (int *)gpu_alloc(m, N * sizeof(int));
    m->weights = (float *)gpu_alloc(m, N * sizeof(float));
    m->losses = (float *)gpu_alloc(m, N * sizeof(float));
    if (m->logits == NULL) {
        m->logits = (float *)gpu_alloc(m, (size_t)m->chunk_rows * m->config.vocab_size * sizeof(float));
        m->loss = (float *)gpu_alloc(m, sizeof(float));
    }
    m->batch_capacity = N;
}

// Grows the inference buffers (the batch's and one layer's activations) to N tokens.
static void gpu_activations_ensure(GpuModel *m, size_t N) {
    gpu_batch_ensure(m, N);
    if (N <= m->capacity) return;
    floatX **bf[GPU_ACT_BUFFERS] = {&m->res, &m->ln, &m->q, &m->att, &m->k, &m->v, &m->gate, &m->up};
    size_t widths[GPU_ACT_BUFFERS];
    gpu_activation_widths(&m->config, widths);
    for (int i = 0; i < GPU_ACT_BUFFERS; i++) {
        cudaCheck(cudaFree(*bf[i]));
        m->allocated_bytes -= m->capacity * widths[i] * sizeof(floatX);
        *bf[i] = (floatX *)gpu_alloc(m, N * widths[i] * sizeof(floatX));
    }
    m->capacity = N;
}

// One layer's forward activations (bf16 unless noted), as gpu_layer_forward()
// writes them. Inference aliases them to save memory (resmid = the layer's
// input: the residual adds happen in place; mlp = gate; no rstd, no lse);
// training keeps each one for the backward pass, or recomputes them.
typedef struct {
    floatX *ln1;      // (N,H) input_layernorm output
    float *rstd1;     // (N,) fp32, or NULL
    floatX *q;        // (N,QD) after RoPE
    floatX *k, *v;    // (N,KD) k after RoPE (rows of a KV cache when decoding)
    floatX *att;      // (N,QD) attention output, before o_proj
    float *lse;       // (N,NQ) fp32 log-sum-exp of each attention row, or NULL
    floatX *resmid;   // (N,H) residual stream after the attention block
    floatX *ln2;      // (N,H) post_attention_layernorm output
    float *rstd2;     // (N,) fp32, or NULL
    floatX *gate, *up;  // (N,I) the MLP's projections
    floatX *mlp;      // (N,I) silu(gate) * up
} LayerActs;

// One transformer layer l over N tokens: res (N,H) in, out (N,H) = the
// residual stream after the layer (out may be a->resmid, and a->resmid may be
// res: the adds then run in place; out NULL skips the MLP's down projection,
// which a recomputation for the backward pass does not need). Attention runs
// over each of the S sequences (seq_offsets), or, with seq_offsets NULL, over
// N new tokens of one sequence after `past` cached ones: a->k, a->v then point
// at row `past` of the (past+N, KD) cache, whose rows before it are read too.
static void gpu_layer_forward(GpuModel *m, size_t l, int N, const size_t *seq_offsets, size_t S, const LayerActs *a,
                              const floatX *res, floatX *out, int past) {
    const Qwen2Config *c = &m->config;
    int H = (int)c->hidden_size, I = (int)c->intermediate_size, NQ = (int)c->num_heads, NKV = (int)c->num_kv_heads;
    int HD = (int)c->head_dim, QD = NQ * HD, KD = NKV * HD;
    float eps = (float)c->rms_norm_eps, theta = (float)c->rope_theta;
    floatX *const *p = m->param;
    rmsnorm_forward(a->ln1, a->rstd1, res, p[P_LN1W] + l * H, N, H, eps);
    matmul_forward(m->cublas, a->q, a->ln1, p[P_QW] + l * QD * H, p[P_QB] + l * QD, N, H, QD, 0);
    matmul_forward(m->cublas, a->k, a->ln1, p[P_KW] + l * KD * H, p[P_KB] + l * KD, N, H, KD, 0);
    matmul_forward(m->cublas, a->v, a->ln1, p[P_VW] + l * KD * H, p[P_VB] + l * KD, N, H, KD, 0);
    rope_forward(a->q, m->pos, N, NQ, HD, theta);
    rope_forward(a->k, m->pos, N, NKV, HD, theta);
    if (seq_offsets == NULL && N == 1) {
        attention_decode(a->att, a->q, a->k - (size_t)past * KD, a->v - (size_t)past * KD, past + 1, NQ, NKV, HD);
    } else if (seq_offsets == NULL) {
        attention_forward(a->att, a->lse, a->q, a->k - (size_t)past * KD, a->v - (size_t)past * KD, N, past, NQ, NKV, HD);
    } else {
        for (size_t s = 0; s < S; s++) {
            size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
            if (T > 0) attention_forward(a->att + n0 * QD, a->lse ? a->lse + n0 * NQ : NULL, a->q + n0 * QD, a->k + n0 * KD,
                                         a->v + n0 * KD, (int)T, 0, NQ, NKV, HD);
        }
    }
    // resmid = res + o_proj(att): the GEMM adds onto a copy of res (rounded once)
    if (a->resmid != res) cudaCheck(cudaMemcpy(a->resmid, res, (size_t)N * H * sizeof(floatX), cudaMemcpyDeviceToDevice));
    matmul_forward(m->cublas, a->resmid, a->att, p[P_OW] + l * H * QD, NULL, N, QD, H, 1);
    rmsnorm_forward(a->ln2, a->rstd2, a->resmid, p[P_LN2W] + l * H, N, H, eps);
    matmul_forward(m->cublas, a->gate, a->ln2, p[P_GATEW] + l * I * H, NULL, N, H, I, 0);
    matmul_forward(m->cublas, a->up, a->ln2, p[P_UPW] + l * I * H, NULL, N, H, I, 0);
    swiglu_forward(a->mlp, a->gate, a->up, (size_t)N * I);
    if (out == NULL) return;
    if (out != a->resmid) cudaCheck(cudaMemcpy(out, a->resmid, (size_t)N * H * sizeof(floatX), cudaMemcpyDeviceToDevice));
    matmul_forward(m->cublas, out, a->mlp, p[P_DOWNW] + l * H * I, NULL, N, I, H, 1);
}

// The inference buffers as a LayerActs: everything in place, one layer at a time.
static LayerActs gpu_inference_acts(GpuModel *m, floatX *k, floatX *v) {
    LayerActs a = {m->ln, NULL, m->q, k, v, m->att, NULL, m->res, m->ln, NULL, m->gate, m->up, m->gate};
    return a;
}

// Uploads a batch (ids (N,), the sequences at seq_offsets (S+1,), the loss
// mask (N,)) with its loss targets, as s1.c's qwen2_forward() makes them:
// targets[n] = ids[n+1] where mask[n+1] marks it a target of the same
// sequence; weights[n] = 1 / (S * targets of n's sequence) there, 0 elsewhere,
// so the weighted sum is s1's loss; pos[n] = n's position in its sequence.
// Returns the weights in host memory (malloc'd): the LM head skips chunks
// without a target.
static float *gpu_batch_upload(GpuModel *m, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S) {
    size_t N = seq_offsets[S], V = m->config.vocab_size;
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
    free(targets);
    free(pos);
    return weights;
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
    float *weights = gpu_batch_upload(m, ids, mask, seq_offsets, S);

    embedding_forward(m->res, m->ids, m->param[P_EMBED], (int)N, (int)H);
    LayerActs acts = gpu_inference_acts(m, m->k, m->v);
    for (size_t l = 0; l < L; l++) gpu_layer_forward(m, l, (int)N, seq_offsets, S, &acts, m->res, m->res, 0);
    rmsnorm_forward(m->ln, NULL, m->res, m->param[P_NORMW], (int)N, (int)H, (float)c->rms_norm_eps);
    lm_head_loss(m->cublas, m->loss, m->losses, m->logits, m->ln, gpu_lm_head(m), m->targets, m->weights, weights,
                 (int)N, (int)H, (int)V, m->chunk_rows);
    float loss;
    cudaCheck(cudaMemcpy(&loss, m->loss, sizeof(float), cudaMemcpyDeviceToHost));
    free(weights);
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
    embedding_forward(m->res, m->ids, m->param[P_EMBED], (int)n, (int)H);
    for (size_t l = 0; l < L; l++) {
        size_t row = l * kv->max_len * KD + kv->len * KD;   // the new tokens' rows of layer l's cache
        LayerActs acts = gpu_inference_acts(m, kv->k + row, kv->v + row);
        gpu_layer_forward(m, l, (int)n, NULL, 1, &acts, m->res, m->res, (int)kv->len);
    }
    const floatX *last = m->res + (n - 1) * H;
    rmsnorm_forward(m->ln, NULL, last, m->param[P_NORMW], 1, (int)H, (float)c->rms_norm_eps);
    gemm_nt(m->cublas, m->logits, CUDA_R_32F, m->ln, gpu_lm_head(m), 1, (int)H, (int)V, 0.0f);
    cudaCheck(cudaMemcpy(kv->logits, m->logits, V * sizeof(float), cudaMemcpyDeviceToHost));
    kv->len += n;
    return kv->logits;
}

// ----------------------------------------------------------------------------
// training: the activations kept for the backward pass, the backward pass of
// the whole model (each layer's kernels in reverse, twin of s1.c's
// qwen2_backward()), and the AdamW step (twin of s1.c's qwen2_update())
//
// Precision: weights and activations bf16; parameter gradients fp32, added
// (+=) across a step's micro-batches; the residual stream's gradient fp32
// (with a bf16 copy for the GEMMs, which take A and B of one type); every sum fp32.
//
// Activation checkpointing (recompute = 1): only each layer's input (the
// residual stream res) is kept; the backward pass recomputes layer l's
// activations into the one slot just before its backward. The recomputation
// runs the same kernels on the same inputs, so the gradients are bit-identical.

typedef struct {
    size_t capacity;          // tokens the buffers hold
    int recompute;
    size_t slots;             // layers whose activations are kept: L, or 1 with recompute
    floatX *res;              // (L+1, N, H) the residual stream entering each layer, and the final one
    LayerActs *layer;         // (slots,) carved from bf16_memory and f32_memory
    floatX *lnf;              // (N,H) final norm
    float *rstdf;             // (N,)
    // backward scratch: one layer's worth
    float *dres;              // (N,H) d loss / d residual stream, fp32
    floatX *dres_bf16;        // (N,H) its bf16 copy, the GEMMs' input
    float *dln;               // (N,H) d loss / d normed input, fp32 (sums of GEMMs)
    floatX *datt, *dq;        // (N,QD)
    floatX *dk, *dv;          // (N,KD)
    floatX *dgate, *dup;      // (N,I); dgate first holds d loss / d mlp
    float *scratch;           // reductions and attention's D (gpu_train_scratch_floats)
    int *ids_scratch;         // the embedding backward's buckets
    floatX *bf16_memory;
    float *f32_memory;
} GpuTrainActs;

// Per-token sizes of one kept layer: bf16 elements and fp32 elements.
static size_t gpu_layer_bf16_per_token(const Qwen2Config *c) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    return 3 * H + 2 * QD + 2 * KD + 3 * I;   // ln1 q k v att resmid ln2 gate up mlp
}
static size_t gpu_layer_f32_per_token(const Qwen2Config *c) { return 2 + c->num_heads; }   // rstd1 rstd2 lse

// fp32 scratch of the backward pass for N tokens: the larger of the
// reductions' partial sums and attention's D (T*NQ for the longest sequence <= N).
static size_t gpu_train_scratch_floats(const Qwen2Config *c, size_t N) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim;
    size_t widest = H > I ? H : I;
    widest = widest > QD ? widest : QD;
    size_t need = attention_backward_scratch_floats((int)N, (int)c->num_heads);
    size_t red = rmsnorm_backward_scratch_floats((int)N, (int)widest);
    size_t bias = matmul_backward_scratch_floats((int)N, (int)widest);
    need = need > red ? need : red;
    return need > bias ? need : bias;
}

// The memory of a training run on one GPU, in bytes: what gpu_train_acts_ensure()
// and gpu_model_create() allocate, for sequences of up to N tokens per micro-batch.
typedef struct {
    double weights, master, adam_m, adam_v, grads;   // the training state
    double activations;                              // kept for the backward pass
    double scratch;                                  // one layer's gradients, reductions
    double logits;                                   // one LM-head chunk
    double total;
} GpuMemoryPlan;

static GpuMemoryPlan gpu_memory_plan(const Qwen2Config *c, size_t N, int recompute, int chunk_rows) {
    GpuMemoryPlan p;
    double P = (double)parameter_count(c), n = (double)N, L = (double)c->num_layers, H = (double)c->hidden_size;
    double I = (double)c->intermediate_size, QD = (double)(c->num_heads * c->head_dim), KD = (double)(c->num_kv_heads * c->head_dim);
    p.weights = 2 * P;
    p.master = p.adam_m = p.adam_v = p.grads = 4 * P;
    double slots = recompute ? 1 : L;
    p.activations = n * ((L + 1) * H * 2 + slots * (2.0 * (double)gpu_layer_bf16_per_token(c) + 4.0 * (double)gpu_layer_f32_per_token(c))
                         + H * 2 + 4);   // res (L+1 layers), the kept layers, lnf and rstdf
    p.scratch = n * (4 * H + 2 * H + 4 * H + 2 * (2 * QD + 2 * KD + 2 * I)) + 4.0 * (double)gpu_train_scratch_floats(c, N)
                + n * 4 * 2 + n * 4 * 6;   // dres, dres_bf16, dln, datt dq dk dv dgate dup; scratch; ids buckets; the batch (ids targets pos weights losses)
    p.logits = (double)chunk_rows * (double)c->vocab_size * 4;
    p.total = p.weights + p.master + p.adam_m + p.adam_v + p.grads + p.activations + p.scratch + p.logits;
    return p;
}

// Grows the training buffers to N tokens (and switches recompute).
static void gpu_train_acts_ensure(GpuModel *m, GpuTrainActs *t, size_t N, int recompute) {
    if (N <= t->capacity && recompute == t->recompute && t->layer != NULL) return;
    const Qwen2Config *c = &m->config;
    size_t L = c->num_layers, H = c->hidden_size, I = c->intermediate_size;
    size_t QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim, NQ = c->num_heads;
    void *old[] = {t->res, t->lnf, t->rstdf, t->dres, t->dres_bf16, t->dln, t->datt, t->dq, t->dk, t->dv, t->dgate,
                   t->dup, t->scratch, t->ids_scratch, t->bf16_memory, t->f32_memory};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) cudaCheck(cudaFree(old[i]));
    free(t->layer);
    N = N > t->capacity ? N : t->capacity;
    t->capacity = N;
    t->recompute = recompute;
    t->slots = recompute ? 1 : L;
    t->res = (floatX *)gpu_alloc(m, (L + 1) * N * H * sizeof(floatX));
    t->bf16_memory = (floatX *)gpu_alloc(m, t->slots * N * gpu_layer_bf16_per_token(c) * sizeof(floatX));
    t->f32_memory = (float *)gpu_alloc(m, t->slots * N * gpu_layer_f32_per_token(c) * sizeof(float));
    t->layer = (LayerActs *)callocCheck(t->slots, sizeof(LayerActs));
    floatX *b = t->bf16_memory;
    float *f = t->f32_memory;
    for (size_t i = 0; i < t->slots; i++) {
        LayerActs *a = &t->layer[i];
        a->ln1 = b; b += N * H;
        a->q = b; b += N * QD;
        a->k = b; b += N * KD;
        a->v = b; b += N * KD;
        a->att = b; b += N * QD;
        a->resmid = b; b += N * H;
        a->ln2 = b; b += N * H;
        a->gate = b; b += N * I;
        a->up = b; b += N * I;
        a->mlp = b; b += N * I;
        a->rstd1 = f; f += N;
        a->rstd2 = f; f += N;
        a->lse = f; f += N * NQ;
    }
    t->lnf = (floatX *)gpu_alloc(m, N * H * sizeof(floatX));
    t->rstdf = (float *)gpu_alloc(m, N * sizeof(float));
    t->dres = (float *)gpu_alloc(m, N * H * sizeof(float));
    t->dres_bf16 = (floatX *)gpu_alloc(m, N * H * sizeof(floatX));
    t->dln = (float *)gpu_alloc(m, N * H * sizeof(float));
    t->datt = (floatX *)gpu_alloc(m, N * QD * sizeof(floatX));
    t->dq = (floatX *)gpu_alloc(m, N * QD * sizeof(floatX));
    t->dk = (floatX *)gpu_alloc(m, N * KD * sizeof(floatX));
    t->dv = (floatX *)gpu_alloc(m, N * KD * sizeof(floatX));
    t->dgate = (floatX *)gpu_alloc(m, N * I * sizeof(floatX));
    t->dup = (floatX *)gpu_alloc(m, N * I * sizeof(floatX));
    t->scratch = (float *)gpu_alloc(m, gpu_train_scratch_floats(c, N) * sizeof(float));
    t->ids_scratch = (int *)gpu_alloc(m, embedding_backward_scratch_ints((int)N) * sizeof(int));
}

static void gpu_train_acts_free(GpuTrainActs *t) {
    void *bufs[] = {t->res, t->lnf, t->rstdf, t->dres, t->dres_bf16, t->dln, t->datt, t->dq, t->dk, t->dv, t->dgate,
                    t->dup, t->scratch, t->ids_scratch, t->bf16_memory, t->f32_memory};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaCheck(cudaFree(bufs[i]));
    free(t->layer);
    memset(t, 0, sizeof *t);
}

// Backward of layer l (twin of one iteration of qwen2_backward()'s layer
// loop). On entry t->dres holds d loss / d(output of layer l) and t->dres_bf16
// its bf16 copy; on exit both hold d loss / d(input of layer l). a: the
// layer's activations (kept, or just recomputed); res: its input.
static void gpu_layer_backward(GpuModel *m, GpuTrainActs *t, size_t l, int N, const size_t *seq_offsets, size_t S,
                               const LayerActs *a, const floatX *res) {
    const Qwen2Config *c = &m->config;
    int H = (int)c->hidden_size, I = (int)c->intermediate_size, NQ = (int)c->num_heads, NKV = (int)c->num_kv_heads;
    int HD = (int)c->head_dim, QD = NQ * HD, KD = NKV * HD;
    float theta = (float)c->rope_theta;
    floatX *const *p = m->param;
    float *const *g = m->grad;
    cublasHandle_t h = m->cublas;
    // MLP branch; its residual add passes dres through unchanged
    matmul_backward(h, t->dgate, CUDA_R_16BF, 0, g[P_DOWNW] + l * H * I, NULL, t->scratch, t->dres_bf16, a->mlp,
                    p[P_DOWNW] + l * H * I, N, I, H);                                                  // dmlp (N,I)
    swiglu_backward(t->dgate, t->dup, t->dgate, a->gate, a->up, (size_t)N * I);
    matmul_backward(h, t->dln, CUDA_R_32F, 0, g[P_GATEW] + l * I * H, NULL, t->scratch, t->dgate, a->ln2,
                    p[P_GATEW] + l * I * H, N, H, I);
    matmul_backward(h, t->dln, CUDA_R_32F, 1, g[P_UPW] + l * I * H, NULL, t->scratch, t->dup, a->ln2,
                    p[P_UPW] + l * I * H, N, H, I);
    rmsnorm_backward(t->dres, t->dres_bf16, g[P_LN2W] + l * H, t->scratch, t->dln, a->resmid, p[P_LN2W] + l * H, a->rstd2, N, H);
    // attention branch
    matmul_backward(h, t->datt, CUDA_R_16BF, 0, g[P_OW] + l * H * QD, NULL, t->scratch, t->dres_bf16, a->att,
                    p[P_OW] + l * H * QD, N, QD, H);
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
        if (T > 0) attention_backward(t->dq + n0 * QD, t->dk + n0 * KD, t->dv + n0 * KD, t->scratch, t->datt + n0 * QD,
                                      a->att + n0 * QD, a->lse + n0 * NQ, a->q + n0 * QD, a->k + n0 * KD, a->v + n0 * KD,
                                      (int)T, NQ, NKV, HD);
    }
    rope_backward(t->dq, m->pos, N, NQ, HD, theta);
    rope_backward(t->dk, m->pos, N, NKV, HD, theta);
    matmul_backward(h, t->dln, CUDA_R_32F, 0, g[P_QW] + l * QD * H, g[P_QB] + l * QD, t->scratch, t->dq, a->ln1,
                    p[P_QW] + l * QD * H, N, H, QD);
    matmul_backward(h, t->dln, CUDA_R_32F, 1, g[P_KW] + l * KD * H, g[P_KB] + l * KD, t->scratch, t->dk, a->ln1,
                    p[P_KW] + l * KD * H, N, H, KD);
    matmul_backward(h, t->dln, CUDA_R_32F, 1, g[P_VW] + l * KD * H, g[P_VB] + l * KD, t->scratch, t->dv, a->ln1,
                    p[P_VW] + l * KD * H, N, H, KD);
    rmsnorm_backward(t->dres, t->dres_bf16, g[P_LN1W] + l * H, t->scratch, t->dln, res, p[P_LN1W] + l * H, a->rstd1, N, H);
}

// One micro-batch: forward and backward over S sequences stored back to back
// (ids, mask, seq_offsets as gpu_forward()), adding grad_scale * d(loss)/d(parameters)
// into m->grad (twin of s1.c's qwen2_forward() + qwen2_backward(m, grad_scale)).
// Returns s1's loss of the micro-batch (the mean over its sequences of each
// sequence's token-mean cross-entropy).
static float gpu_forward_backward(GpuModel *m, GpuTrainActs *t, const uint32_t *ids, const uint8_t *mask,
                                  const size_t *seq_offsets, size_t S, float grad_scale, int recompute) {
    const Qwen2Config *c = &m->config;
    size_t N = seq_offsets[S], H = c->hidden_size, V = c->vocab_size, L = c->num_layers;
    if (m->grads_memory == NULL) die("gpu_forward_backward: the model was not created for training");
    if (N == 0) return 0.0f;
    if (N > (1u << 30)) die("gpu_forward_backward: %zu tokens exceed the kernels' int range", N);
    gpu_batch_ensure(m, N);
    gpu_train_acts_ensure(m, t, N, recompute);
    float *weights = gpu_batch_upload(m, ids, mask, seq_offsets, S);
    // forward, keeping each layer's activations (or only its input)
    embedding_forward(t->res, m->ids, m->param[P_EMBED], (int)N, (int)H);
    for (size_t l = 0; l < L; l++)
        gpu_layer_forward(m, l, (int)N, seq_offsets, S, &t->layer[recompute ? 0 : l], t->res + l * N * H,
                          t->res + (l + 1) * N * H, 0);
    rmsnorm_forward(t->lnf, t->rstdf, t->res + L * N * H, m->param[P_NORMW], (int)N, (int)H, (float)c->rms_norm_eps);
    // the loss and its gradient, chunk by chunk of rows: dlnf into dln, the head's gradient into its grad
    float *lm_grad = c->tie_word_embeddings ? m->grad[P_EMBED] : m->grad[P_LMW];
    classifier_forward_backward(m->cublas, m->loss, m->losses, m->logits, t->dln, lm_grad, t->lnf, gpu_lm_head(m),
                                m->targets, m->weights, weights, grad_scale, (int)N, (int)H, (int)V, m->chunk_rows);
    cudaCheck(cudaMemset(t->dres, 0, N * H * sizeof(float)));
    rmsnorm_backward(t->dres, t->dres_bf16, m->grad[P_NORMW], t->scratch, t->dln, t->res + L * N * H, m->param[P_NORMW],
                     t->rstdf, (int)N, (int)H);
    for (size_t l = L; l-- > 0;) {
        const floatX *res = t->res + l * N * H;
        if (recompute) gpu_layer_forward(m, l, (int)N, seq_offsets, S, &t->layer[0], res, NULL, 0);
        gpu_layer_backward(m, t, l, (int)N, seq_offsets, S, &t->layer[recompute ? 0 : l], res);
    }
    embedding_backward(m->grad[P_EMBED], t->dres, ids, (int)N, (int)H, t->ids_scratch);
    float loss;
    cudaCheck(cudaMemcpy(&loss, m->loss, sizeof(float), cudaMemcpyDeviceToHost));
    free(weights);
    return loss;
}

// Clips the gradients to a global norm (torch clip_grad_norm_: the norm is
// fp64, computed in a fixed order) and takes one AdamW step on the master
// weights, then rounds them to the bf16 weights. Decay groups as s1.c's
// qwen2_update(): weights decay; biases never; RMSNorm weights with
// decay_norm_weights. Returns the norm before clipping.
static float gpu_update(GpuModel *m, double lr, double beta1, double beta2, double eps, double weight_decay,
                        double max_grad_norm, int decay_norm_weights) {
    float norm = global_norm(m->grads_memory, m->num_parameters, m->norm_scratch);
    float clip = adamw_clip_factor(norm, (float)max_grad_norm);
    m->step++;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = parameter_numel(&m->config, i), off = parameter_offset(&m->config, i);
        if (n == 0) continue;
        int kind = parameter_info[i].kind;
        int decays = kind == KIND_WEIGHT || (kind == KIND_NORM && decay_norm_weights);
        AdamWScalars k = adamw_scalars(lr, m->step, (float)beta1, (float)beta2, (float)eps, decays ? weight_decay : 0.0);
        adamw_update(m->params_memory + off, m->master_memory + off, m->adam_m + off, m->adam_v + off,
                     m->grads_memory + off, n, clip, &k);
    }
    return norm;
}

static void gpu_model_free(GpuModel *m) {
    void *bufs[] = {m->params_memory, m->master_memory, m->grads_memory, m->adam_m, m->adam_v, m->res, m->ln, m->q,
                    m->att, m->k, m->v, m->gate, m->up, m->logits, m->losses, m->weights, m->loss, m->ids, m->targets, m->pos,
                    m->norm_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaCheck(cudaFree(bufs[i]));
    cublasCheck(cublasDestroy(m->cublas));
    memset(m, 0, sizeof *m);
}

#endif // S1C_KERNELS_CUH
