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
 *   rmsnorm.cuh      rmsnorm_forward()        rmsnorm_forward_vec_kernel (16-byte)   rmsnorm_forward()
 *                    rmsnorm_backward()       rmsnorm_backward_kernel + column sums  rmsnorm_backward()
 *   matmul.cuh       matmul_forward()         cublasLtMatmul, bias in the epilogue   matmul_forward()
 *                    matmul_backward()        2 x cublasLtMatmul + column sums       matmul_backward()
 *   rope.cuh         rope_table_create()      (host: bf16 cos/sin, (P,HD/2) each)    rope_table_ensure()
 *                    rope_qkv_forward()       rope_qkv_vec_kernel (16-byte, +1):     rope_forward()
 *                                             fused q|k|v rows split into q, k, v
 *                    rope_qkv_backward()      rope_qkv_vec_kernel (direction -1):    rope_backward()
 *                                             dq, dk, dv merged into fused rows
 *   attention.cuh    attention_forward()      attention_forward_tc_kernel (flash,    attention_forward()
 *                                             tensor cores) or _forward_kernel
 *                    attention_backward()     _D_, _dkdv_tc_, _dq_tc_kernel (FA2,    attention_backward()
 *                                             tensor cores) or _dkdv_, _dq_kernel
 *                    attention_decode()       attention_decode_kernel                attention_row() (KV cache)
 *                    attention_decode_flash() _split_kernel + _combine_kernel        attention_row() (KV cache)
 *                    kv_cache_append()        kv_cache_append_kernel                 qwen2_decode_step()'s append
 *                    attention_decode_        _split_seqs_kernel +                   attention_row(), the append,
 *                    flash_seqs(), kv_cache_  _combine_seqs_kernel,                  per sequence
 *                    append_seqs()            kv_cache_append_seqs_kernel: B
 *                                             sequences at once (batched decoding)
 *   swiglu.cuh       swiglu_forward()         swiglu_forward_vec_kernel (16-byte,    swiglu_forward()
 *                                             fused gate|up rows)
 *                    swiglu_backward()        swiglu_backward_vec_kernel (16-byte)   swiglu_backward()
 *   classifier.cuh   lm_head_loss()           cublasLtMatmul per chunk of rows +     matmul_forward() (head) +
 *                    classifier_forward_      crossentropy_forward_kernel (+ bf16    crossentropy_forward(),
 *                    backward()               dlogits in place) + 2 GEMMs, sum_kernel  _backward(), matmul_backward()
 *   global_norm.cuh  global_norm()            fixed-grid partials + one block        qwen2_grad_norm()
 *   adamw.cuh        adamw_update()           adamw_vec_kernel (16-byte)             qwen2_update()
 *   (16-byte: 8 elements a thread in 16-byte loads and stores, the one-element
 *   kernel beside it where the pointers' alignment rules vectors out)
 * A layer runs one GEMM for q|k|v and one for gate|up, against the fused
 * matrices its unit holds (gpu_units_build()), and RoPE as the fused q|k|v rows
 * split into q, k and v.
 *
 * then the model: gpu_model_load() (a HF checkpoint folder into bf16 GPU
 * memory), gpu_forward() (the masked s1 loss of a batch, as s1.c's
 * qwen2_forward()), gpu_decode() (tokens appended to a KV cache, as s1.c's
 * qwen2_decode_step()), gpu_decode_batch() (one token for each of several
 * sequences with their own caches, the GEMMs over all of them: s1.c's
 * qwen2_decode_step() per sequence), and for training gpu_forward_backward()
 * (s1.c's qwen2_forward() + qwen2_backward(), with activation checkpointing)
 * and gpu_update() (s1.c's qwen2_update()).
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
 * Several GPUs: the parameters live in units sharded over W ranks (ZeRO-3,
 * below: gpu_unit_weights(), gpu_unit_reduce()).
 *
 * Attention runs on the tensor cores (mma.sync, ldmatrix, cp.async) at head
 * dims 64 and 128 unless --attention cuda-cores picks the CUDA-core kernels,
 * the readable reference. The GEMMs go through cuBLASLt (matmul.cuh's Gemm).
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
// the model's parameters, in units sharded over the ranks (ZeRO-3)
//
// The GPU holds the parameters in *units*, the pieces the forward pass uses
// one at a time: unit 0 the embedding, unit 1 + l layer l's twelve tensors,
// unit L + 1 the final norm and (untied) the LM head. A unit is its tensors
// back to back, in P_* order (common/qwen2_weights.h) but for a layer's
// (gpu_layer_order): its weights Wq, Wk, Wv side by side, then the biases bq,
// bk, bv, so [Wq;Wk;Wv] is one (QD+2KD, H) matrix and [bq;bk;bv] one vector,
// and [Wgate;Wup] one (2I, H) matrix: the layer runs one fused GEMM for q|k|v
// and one for gate|up (gpu_layer_forward()). With W ranks each unit
// is padded to W equal shards of S_u elements, and rank r owns elements
// [r S_u, (r + 1) S_u) of every unit: its flat buffers (bf16 weights, fp32
// master weights, AdamW moments, gradients) are its shards of all units back
// to back, 1/W of the model each. Before a unit is used its bf16 weights are
// all-gathered (gpu_unit_weights()); after its backward pass its gradients are
// reduce-scattered to their owners (gpu_unit_reduce()). With W = 1 the shard
// is the whole unit: the weights are used in place and nothing is gathered.
//
// Checkpoints keep s1.c's layout and names: gpu_tensor_location() maps each
// HF tensor to its unit and offset.

typedef struct {
    int count;                             // tensors in the unit
    int tensor[NUM_PARAMETER_TENSORS];     // their P_* indices, in order
    size_t offset[NUM_PARAMETER_TENSORS];  // offset[i]: where P_* tensor i starts in the unit (if a member)
    size_t layer;                          // the layer of a layer unit
    size_t numel;                          // n_u
    size_t shard;                          // S_u = ceil(n_u / W)
    size_t shard_offset;                   // where this unit's shard starts in a rank's flat buffers
} GpuUnit;

typedef struct {
    Qwen2Config config;
    size_t num_parameters;         // P, the model's
    int rank, world;               // this rank, and W
    ncclComm_t nccl;               // the ranks' communicator (W > 1)
    int reduce_f32;                // 1: reduce-scatter gradients in fp32; 0: in bf16, as s1's FSDP
    GpuUnit *units;                // (L + 2,)
    size_t num_units;
    size_t shard_numel;            // sum of S_u: the length of this rank's flat buffers
    floatX *params_memory;         // (shard_numel,) bf16 working weights
    // training state (gpu_model_create with training = 1), fp32, this rank's shards
    float *master_memory;          // master weights; params_memory is their bf16 rounding
    float *grads_memory;           // gradients, accumulated over a step's micro-batches
    float *adam_m, *adam_v;        // AdamW moments
    size_t step;                   // AdamW steps taken
    // W > 1: the gathered units and their full gradients (one layer, and the embedding and head)
    floatX *gathered_layer, *gathered_big;   // (W S_u,) bf16 of the largest layer unit, and of units 0 and L + 1
    float *unit_grads_layer;       // (W S_u,) fp32 full gradients of the layer being differentiated
    float *unit_grads_big;         // the embedding's and the head's: untied, one after the other in the same
                                   // buffer (the head's are reduced before the embedding's start); tied, side by side
    void *reduce_send;             // (W S_u,) the gradients in the reduce dtype
    void *reduce_recv;             // (S_u,) this rank's reduced shard
    // --overlap (W > 1): the layers' collectives on their own stream, so the next layer's all-gather and
    // the last layer's reduce-scatter run while a layer computes; two of each layer buffer, and events
    int overlap;
    cudaStream_t comm;
    floatX *gathered_layer_alt;
    float *unit_grads_layer_alt;
    cudaEvent_t gathered_ev[2], used_ev[2], grads_ev[2], reduced_ev[2];
    size_t allocated_bytes;        // GPU memory this model allocated (the log's "mem" figure)
    cudaStream_t stream;           // the compute stream (the caller's, non-blocking): every kernel, GEMM, copy and
                                   // collective of the model runs on it, but --overlap's layer collectives (comm)
    Gemm *gemm;                    // cuBLASLt and its workspace (GEMM_WORKSPACE_BYTES): every GEMM, on stream
    int chunk_rows;                // rows of the LM head per chunk
    // the batch: for up to `batch_capacity` tokens
    size_t batch_capacity;
    float *logits;                 // (chunk_rows,V) fp32: one chunk of the LM head
    float *losses, *weights;       // (N,) fp32
    float *loss;                   // (1,)
    uint32_t *targets;             // (N,)
    // ids (N,) and pos (N,) (each token's position within its sequence) point into `upload`, re-pointed by
    // each upload (gpu_upload()): the ids, the positions right after them and, for a batched decoding step,
    // its sequences' DecodeSeq from the next 16-byte boundary, so that one copy from the pinned host twin
    // `upload_host` sends them all
    uint32_t *ids;
    int *pos;
    void *upload, *upload_host;
    size_t upload_capacity;        // bytes of each
    RopeTable rope;                // cos/sin (max_position_embeddings, HD/2) bf16: a position beyond is refused
    double *norm_scratch;          // the global gradient norm's partial sums (training)
    // inference activations (gpu_forward, gpu_decode), for up to `capacity` tokens (bf16)
    size_t capacity;
    floatX *res;                   // (N,H) the residual stream
    floatX *ln;                    // (N,H) normed input of the current sublayer
    floatX *q, *att;               // (N,QD)
    floatX *k, *v;                 // (N,KD)
    floatX *gateup;                // (N,F) the fused projections: q|k|v (N,QD+2KD), then gate|up (N,2I) (gpu_fused_width())
    floatX *mlp;                   // (N,I) silu(gate) * up
} GpuModel;

// A layer unit's tensors, in the order they lie in the unit: the q, k, v
// weights back to back, then their biases, then the gate and up weights back to
// back, which gpu_layer_forward() multiplies as fused matrices.
#define GPU_LAYER_TENSORS 12
static const int gpu_layer_order[GPU_LAYER_TENSORS] = {P_LN1W, P_QW, P_KW, P_VW, P_QB, P_KB, P_VB,
                                                       P_OW,   P_LN2W, P_GATEW, P_UPW, P_DOWNW};

static size_t gpu_tensor_numel(const Qwen2Config *c, int i) {
    size_t dims[2];
    parameter_shape(c, i, dims);
    return dims[0] * (dims[1] ? dims[1] : 1);
}

// The fused matrices are plain pointers into a layer unit: tensor `next` must
// start where tensor `first` ends.
static void gpu_check_adjacent(const GpuUnit *un, const Qwen2Config *c, int first, int next) {
    if (un->offset[next] != un->offset[first] + gpu_tensor_numel(c, first))
        die("gpu_units_build: %s does not follow %s in layer %zu's unit: the fused GEMMs read them as one matrix",
            parameter_info[next].name, parameter_info[first].name, un->layer);
}

// The units of a config over W ranks (m->units, m->shard_numel).
static void gpu_units_build(GpuModel *m) {
    const Qwen2Config *c = &m->config;
    size_t L = c->num_layers, off = 0;
    m->num_units = L + 2;
    m->units = (GpuUnit *)callocCheck(m->num_units, sizeof(GpuUnit));
    for (size_t u = 0; u < m->num_units; u++) {
        GpuUnit *un = &m->units[u];
        int is_layer = u >= 1 && u <= L;
        for (int j = 0; j < (is_layer ? GPU_LAYER_TENSORS : NUM_PARAMETER_TENSORS); j++) {
            int i = is_layer ? gpu_layer_order[j] : j;
            int member = is_layer ? parameter_info[i].per_layer : u == 0 ? i == P_EMBED : (i == P_NORMW || i == P_LMW);
            size_t n = gpu_tensor_numel(c, i);
            if (!member || n == 0) continue;   // a tied model's LM head is the embedding
            un->tensor[un->count++] = i;
            un->offset[i] = un->numel;
            un->numel += n;
        }
        un->layer = is_layer ? u - 1 : 0;
        if (is_layer) {
            int fused[][2] = {{P_QW, P_KW}, {P_KW, P_VW}, {P_QB, P_KB}, {P_KB, P_VB}, {P_GATEW, P_UPW}};
            for (size_t f = 0; f < sizeof fused / sizeof fused[0]; f++) gpu_check_adjacent(un, c, fused[f][0], fused[f][1]);
        }
        un->shard = (un->numel + (size_t)m->world - 1) / (size_t)m->world;
        un->shard_offset = off;
        off += un->shard;
    }
    m->shard_numel = off;
}

// Where HF tensor t lives: its unit, and its first element's offset in the unit.
static size_t gpu_tensor_location(const GpuModel *m, const TensorInfo *t, size_t *offset) {
    size_t layer = parameter_info[t->param].per_layer ? (t->offset - parameter_offset(&m->config, t->param)) / t->numel : 0;
    size_t u = t->param == P_EMBED ? 0 : parameter_info[t->param].per_layer ? 1 + layer : m->config.num_layers + 1;
    *offset = m->units[u].offset[t->param];
    return u;
}

// Pointers to the tensors of unit u whose full (gathered) buffer is base: w[i]
// for each member i; the others are left alone.
template <class T> static void gpu_unit_pointers(const GpuModel *m, size_t u, T *base, T **w) {
    const GpuUnit *un = &m->units[u];
    for (int j = 0; j < un->count; j++) w[un->tensor[j]] = base + un->offset[un->tensor[j]];
}

// cudaMalloc that counts what the model holds.
static void *gpu_alloc(GpuModel *m, size_t bytes) {
    void *p = NULL;
    if (bytes > 0) cudaCheck(cudaMalloc(&p, bytes));
    m->allocated_bytes += bytes;
    return p;
}

// The RoPE tables' GPU bytes: cos and sin, (max_position_embeddings, HD/2) bf16 each.
static size_t gpu_rope_table_bytes(const Qwen2Config *c) {
    return 2 * c->max_position_embeddings * (c->head_dim / 2) * sizeof(floatX);
}

// F: the width of the buffer that holds a layer's fused projections, one after
// the other: q|k|v (QD+2KD) before RoPE, then gate|up (2I). 2I is the wider in
// every Qwen2.5 size (32B: 55296 against 7168), so the q|k|v rows cost no memory.
static size_t gpu_fused_width(const Qwen2Config *c) {
    size_t qkv = (c->num_heads + 2 * c->num_kv_heads) * c->head_dim, gateup = 2 * c->intermediate_size;
    return qkv > gateup ? qkv : gateup;
}

// Allocates rank `rank` of a W-rank model of config c (weights
// uninitialised). training = 1 adds the fp32 master weights, gradients and
// AdamW moments (16 bytes per parameter with the bf16 weights, s1-spec
// section 8; each rank holds 1/W of them). chunk_rows: rows per LM-head chunk
// (memory: chunk_rows * V * 4 bytes). nccl: the ranks' communicator (W > 1).
// stream: the compute stream, the caller's (a non-blocking one: tutorial/cuda.md, "Streams").
static void gpu_model_create_rank(GpuModel *m, const Qwen2Config *c, int chunk_rows, int training, int rank, int world,
                                  ncclComm_t nccl, int reduce_f32, int overlap, cudaStream_t stream) {
    memset(m, 0, sizeof *m);
    m->config = *c;
    if (c->head_dim > ATT_MAX_HD) die("config: head_dim %zu exceeds the attention kernel's %d", c->head_dim, ATT_MAX_HD);
    if (c->hidden_size > (1u << 30) || c->vocab_size > (1u << 30) || c->intermediate_size > (1u << 30))
        die("config: a model size exceeds the kernels' int range");
    if (c->max_position_embeddings > (1u << 24))   // detmath.h's sin and cos: angles of positions < 2^24
        die("config: max_position_embeddings %zu exceeds the RoPE table's 2^24 rows", c->max_position_embeddings);
    if (world < 1 || rank < 0 || rank >= world) die("gpu_model_create: rank %d of %d", rank, world);
    if (world > 1 && !training) die("gpu_model_create: several ranks are for training");
    m->rank = rank;
    m->world = world;
    m->nccl = nccl;
    m->reduce_f32 = reduce_f32;
    m->stream = stream;
    m->num_parameters = parameter_count(c);
    gpu_units_build(m);
    size_t S = m->shard_numel;
    m->params_memory = (floatX *)gpu_alloc(m, S * sizeof(floatX));
    if (training) {
        m->master_memory = (float *)gpu_alloc(m, S * sizeof(float));
        m->grads_memory = (float *)gpu_alloc(m, S * sizeof(float));
        m->adam_m = (float *)gpu_alloc(m, S * sizeof(float));
        m->adam_v = (float *)gpu_alloc(m, S * sizeof(float));
        float *zero[] = {m->master_memory, m->grads_memory, m->adam_m, m->adam_v};   // the padding stays 0
        for (size_t i = 0; i < 4; i++) cudaCheck(cudaMemsetAsync(zero[i], 0, S * sizeof(float), stream));
        cudaCheck(cudaMemsetAsync(m->params_memory, 0, S * sizeof(floatX), stream));
        m->norm_scratch = (double *)gpu_alloc(m, GLOBAL_NORM_SCRATCH * sizeof(double));
    }
    if (world > 1) {
        size_t L = c->num_layers, layer_full = m->units[1].shard * world;
        size_t big = (m->units[0].shard > m->units[L + 1].shard ? m->units[0].shard : m->units[L + 1].shard) * world;
        size_t head = (m->units[L + 1].shard + (c->tie_word_embeddings ? m->units[0].shard : 0)) * world;   // tied: norm + embedding
        m->gathered_layer = (floatX *)gpu_alloc(m, layer_full * sizeof(floatX));
        m->gathered_big = (floatX *)gpu_alloc(m, (big > head ? big : head) * sizeof(floatX));
        m->unit_grads_layer = (float *)gpu_alloc(m, layer_full * sizeof(float));
        m->unit_grads_big = (float *)gpu_alloc(m, (c->tie_word_embeddings ? head : big) * sizeof(float));
        size_t elem = reduce_f32 ? sizeof(float) : sizeof(floatX), largest = big > layer_full ? big : layer_full;   // any unit
        m->reduce_send = gpu_alloc(m, largest * elem);
        m->reduce_recv = gpu_alloc(m, largest / world * elem);
        if (overlap) {
            m->overlap = 1;
            cudaCheck(cudaStreamCreateWithFlags(&m->comm, cudaStreamNonBlocking));
            m->gathered_layer_alt = (floatX *)gpu_alloc(m, layer_full * sizeof(floatX));
            m->unit_grads_layer_alt = (float *)gpu_alloc(m, layer_full * sizeof(float));
            cudaEvent_t *evs[] = {m->gathered_ev, m->used_ev, m->grads_ev, m->reduced_ev};
            for (size_t i = 0; i < 4; i++)
                for (int j = 0; j < 2; j++) cudaCheck(cudaEventCreateWithFlags(&evs[i][j], cudaEventDisableTiming));
        }
    }
    rope_table_create(&m->rope, (int)c->max_position_embeddings, (int)c->head_dim, c->rope_theta, stream);
    m->allocated_bytes += gpu_rope_table_bytes(c);
    m->gemm = gemm_create();
    m->allocated_bytes += GEMM_WORKSPACE_BYTES;
    m->chunk_rows = chunk_rows > 0 ? chunk_rows : 1;
}

// One GPU, all of the model.
static void gpu_model_create(GpuModel *m, const Qwen2Config *c, int chunk_rows, int training, cudaStream_t stream) {
    gpu_model_create_rank(m, c, chunk_rows, training, 0, 1, NULL, 0, 0, stream);
}

// Uploads the n fp32 values of unit u that start at its element `offset`
// into this rank's shard: the bf16 weights get their rounding (round to
// nearest even, as the AdamW kernel rounds), the master weights, when
// training, the values themselves. Elements of other ranks' shards are skipped.
static void gpu_upload_unit(GpuModel *m, size_t u, size_t offset, const float *values, size_t n) {
    const GpuUnit *un = &m->units[u];
    size_t lo = (size_t)m->rank * un->shard, hi = lo + un->shard;
    size_t begin = offset > lo ? offset : lo, end = offset + n < hi ? offset + n : hi;
    if (begin >= end) return;
    size_t count = end - begin, dst = un->shard_offset + (begin - lo);
    const float *src = values + (begin - offset);
    uint16_t *bf = (uint16_t *)mallocCheck(count * sizeof(uint16_t));
    for (size_t j = 0; j < count; j++) bf[j] = float_to_bf16(src[j]);
    copy_to_device(m->params_memory + dst, bf, count * sizeof(uint16_t), m->stream);
    if (m->master_memory != NULL) copy_to_device(m->master_memory + dst, src, count * sizeof(float), m->stream);
    free(bf);
}

// The model's state between this rank's shards (unit-major, fp32, device)
// and a full host buffer in s1.c's layout (parameter_count() floats), for
// checkpoints. gpu_gather_to_host() is collective with W > 1: every rank calls
// it, rank 0's host buffer receives the model (the others may pass NULL).
static void gpu_gather_to_host(GpuModel *m, const float *shards, float *host) {
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(&m->config, &count);
    size_t largest = 0;
    for (size_t u = 0; u < m->num_units; u++) largest = m->units[u].shard > largest ? m->units[u].shard : largest;
    float *unit_host = (float *)mallocCheck(largest * m->world * sizeof(float)), *unit_dev = NULL;
    if (m->world > 1) cudaCheck(cudaMalloc((void **)&unit_dev, largest * m->world * sizeof(float)));
    for (size_t u = 0; u < m->num_units; u++) {
        const GpuUnit *un = &m->units[u];
        const float *src = shards + un->shard_offset;
        if (m->world > 1) {
            ncclCheck(ncclAllGather(src, unit_dev, un->shard, ncclFloat32, m->nccl, m->stream));
            src = unit_dev;
        }
        copy_to_host(unit_host, src, un->shard * m->world * sizeof(float), m->stream);
        for (size_t i = 0; i < count && host != NULL; i++) {
            size_t offset;
            if (gpu_tensor_location(m, &tensors[i], &offset) == u)
                memcpy(host + tensors[i].offset, unit_host + offset, tensors[i].numel * sizeof(float));
        }
    }
    cudaCheck(cudaFree(unit_dev));
    free(unit_host);
    free(tensors);
}

// The inverse, each rank keeping its shards: shards (device) from host (s1.c's layout).
static void gpu_scatter_from_host(GpuModel *m, float *shards, const float *host) {
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(&m->config, &count);
    for (size_t i = 0; i < count; i++) {
        size_t offset, u = gpu_tensor_location(m, &tensors[i], &offset);
        const GpuUnit *un = &m->units[u];
        size_t lo = (size_t)m->rank * un->shard, hi = lo + un->shard, end = offset + tensors[i].numel;
        size_t begin = offset > lo ? offset : lo;
        end = end < hi ? end : hi;
        if (begin < end)
            copy_to_device(shards + un->shard_offset + (begin - lo), host + tensors[i].offset + (begin - offset),
                           (end - begin) * sizeof(float), m->stream);
    }
    free(tensors);
}

// Uploads the whole model from a flat fp32 buffer in s1.c's layout: the master
// weights (training) and their bf16 rounding.
static void gpu_upload_parameters(GpuModel *m, const float *params) {
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(&m->config, &count);
    for (size_t i = 0; i < count; i++) {
        size_t offset, u = gpu_tensor_location(m, &tensors[i], &offset);
        gpu_upload_unit(m, u, offset, params + tensors[i].offset, tensors[i].numel);
    }
    free(tensors);
}

static void gpu_read_tensor(void *ctx, const TensorInfo *t, SafetensorsFile *f, const SafetensorsEntry *e) {
    GpuModel *m = (GpuModel *)ctx;
    float *host = (float *)mallocCheck(t->numel * sizeof(float));
    safetensors_read_f32(f, e, host);
    size_t offset, u = gpu_tensor_location(m, t, &offset);
    gpu_upload_unit(m, u, offset, host, t->numel);
    free(host);
}

// Reads the weights of a HF checkpoint folder (config.json plus
// model.safetensors or the shards of an index; F32, F16 or BF16; checked by
// common/qwen2_weights.h exactly as s1.c checks them), one tensor at a time,
// each rank keeping its shards. Returns the checkpoint's AdamW step (0 for a
// plain HF checkpoint).
static size_t gpu_model_read(GpuModel *m, const char *dir) {
    return qwen2_checkpoint_read(dir, &m->config, gpu_read_tensor, m);
}

// Loads a HF model folder: its config, then its weights into bf16 GPU memory
// and, with training = 1, into fp32 master weights too. Returns the
// checkpoint's AdamW step.
static size_t gpu_model_open(GpuModel *m, const char *dir, int chunk_rows, int training, cudaStream_t stream) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    Qwen2Config c;
    config_read(&c, path);
    gpu_model_create(m, &c, chunk_rows, training, stream);
    return gpu_model_read(m, dir);
}

// Loads a HF model folder into bf16 GPU memory, for inference.
static void gpu_model_load(GpuModel *m, const char *dir, int chunk_rows, cudaStream_t stream) {
    gpu_model_open(m, dir, chunk_rows, 0, stream);
}

// out (n,) = bf16(in (n,))
__global__ void __launch_bounds__(256) convert_to_bf16_kernel(floatX *out, const float *in, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) out[i] = round_bf16(in[i]);
}

// params = bf16(master) for this rank's shards (after loading master weights directly).
static void gpu_round_master(GpuModel *m) {
    CU_LAUNCH(convert_to_bf16_kernel, grid_for(m->shard_numel, 256), 256, 0, m->stream)(m->params_memory, m->master_memory, m->shard_numel);
    cudaCheck(cudaGetLastError());
}

// The bf16 weights of unit u, ready to use: this rank's shard in place when
// W = 1; else all ranks' shards all-gathered into a working buffer (every rank
// must make the same calls in the same order). w[i]: each member tensor.
static void gpu_unit_weights(GpuModel *m, size_t u, const floatX **w) {
    const GpuUnit *un = &m->units[u];
    const floatX *base = m->params_memory + un->shard_offset;
    if (m->world > 1) {
        floatX *dst = u == 0 || u == m->num_units - 1 ? m->gathered_big : m->gathered_layer;
        ncclCheck(ncclAllGather(m->params_memory + un->shard_offset, dst, un->shard, ncclBfloat16, m->nccl, m->stream));
        base = dst;
    }
    gpu_unit_pointers(m, u, base, w);
}

// The LM head's weights (V,H): the head unit's own, or with tied embeddings
// the embedding (unit 0, in place; gathered again when W > 1). w: the head
// unit's pointers (gpu_unit_weights(m, L + 1, w)).
static const floatX *gpu_lm_head(GpuModel *m, const floatX **w) {
    if (!m->config.tie_word_embeddings) return w[P_LMW];
    const floatX *e[NUM_PARAMETER_TENSORS];
    if (m->world > 1) {   // the head unit (final norm) sits at the start of gathered_big: gather the embedding behind it
        const GpuUnit *un = &m->units[0];
        floatX *dst = m->gathered_big + m->units[m->num_units - 1].shard * m->world;
        ncclCheck(ncclAllGather(m->params_memory + un->shard_offset, dst, un->shard, ncclBfloat16, m->nccl, m->stream));
        return dst + un->offset[P_EMBED];
    }
    gpu_unit_pointers(m, 0, (const floatX *)m->params_memory + m->units[0].shard_offset, e);
    return e[P_EMBED];
}

// W > 1: the buffer of unit u's full gradients.
static float *gpu_unit_grads_buffer(const GpuModel *m, size_t u) {
    if (u == 0) return m->unit_grads_big;
    if (u + 1 < m->num_units) return m->unit_grads_layer;
    return m->unit_grads_big + (m->config.tie_word_embeddings ? m->units[0].shard * m->world : 0);
}

// Where the backward pass adds unit u's gradients: this rank's gradients in
// place when W = 1; else the unit's full fp32 gradient buffer, zeroed (its sum
// over the ranks then goes to the owners through gpu_unit_reduce()). g[i]: each member.
static void gpu_unit_grads(GpuModel *m, size_t u, float **g) {
    const GpuUnit *un = &m->units[u];
    float *base = m->grads_memory + un->shard_offset;
    if (m->world > 1) {
        base = gpu_unit_grads_buffer(m, u);
        cudaCheck(cudaMemsetAsync(base, 0, un->shard * m->world * sizeof(float), m->stream));
    }
    gpu_unit_pointers(m, u, base, g);
}

__device__ inline float as_float(float x) { return x; }
__device__ inline float as_float(floatX x) { return __bfloat162float(x); }

// acc (n,) += x (n,), x fp32 or bf16
template <class T> __global__ void __launch_bounds__(256) accumulate_kernel(float *acc, const T *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) acc[i] += as_float(x[i]);
}

// After unit u's backward pass (W > 1): the ranks' full gradients of the unit
// are summed and each rank adds its shard of the sum into its fp32 gradients.
// The sum runs in bf16 (s1's FSDP MixedPrecision reduce_dtype) or, with
// reduce_f32, in fp32. W = 1: nothing to do, the gradients are in place.
static void gpu_unit_reduce_from(GpuModel *m, size_t u, const float *g, cudaStream_t stream) {
    const GpuUnit *un = &m->units[u];
    size_t full = un->shard * m->world;
    float *acc = m->grads_memory + un->shard_offset;
    if (m->reduce_f32) {
        ncclCheck(ncclReduceScatter(g, m->reduce_recv, un->shard, ncclFloat32, ncclSum, m->nccl, stream));
        CU_LAUNCH(accumulate_kernel<float>, grid_for(un->shard, 256), 256, 0, stream)(acc, (const float *)m->reduce_recv, un->shard);
    } else {
        CU_LAUNCH(convert_to_bf16_kernel, grid_for(full, 256), 256, 0, stream)((floatX *)m->reduce_send, g, full);
        cudaCheck(cudaGetLastError());
        ncclCheck(ncclReduceScatter(m->reduce_send, m->reduce_recv, un->shard, ncclBfloat16, ncclSum, m->nccl, stream));
        CU_LAUNCH(accumulate_kernel<floatX>, grid_for(un->shard, 256), 256, 0, stream)(acc, (const floatX *)m->reduce_recv, un->shard);
    }
    cudaCheck(cudaGetLastError());
}

static void gpu_unit_reduce(GpuModel *m, size_t u) {
    if (m->world > 1) gpu_unit_reduce_from(m, u, gpu_unit_grads_buffer(m, u), m->stream);
}

// --overlap: the layer units' collectives on m->comm, ahead of or behind the
// compute on m->stream, each buffer guarded by events: a layer's gathered
// weights are used only after gathered_ev and overwritten only after used_ev
// (the compute that last read them); its gradients are reduced only after
// grads_ev, and their buffer reused only after reduced_ev. The same operations
// in the same order, every sum included: the same bits as without --overlap.
static floatX *gpu_layer_slot_weights(const GpuModel *m, int s) { return s ? m->gathered_layer_alt : m->gathered_layer; }
static float *gpu_layer_slot_grads(const GpuModel *m, int s) { return s ? m->unit_grads_layer_alt : m->unit_grads_layer; }

// All-gathers layer unit u into slot s, on m->comm, once nothing reads the slot.
static void gpu_prefetch_layer(GpuModel *m, size_t u, int s) {
    const GpuUnit *un = &m->units[u];
    cudaCheck(cudaStreamWaitEvent(m->comm, m->used_ev[s], 0));
    ncclCheck(ncclAllGather(m->params_memory + un->shard_offset, gpu_layer_slot_weights(m, s), un->shard, ncclBfloat16,
                            m->nccl, m->comm));
    cudaCheck(cudaEventRecord(m->gathered_ev[s], m->comm));
}

// The compute waits for slot s's all-gather; w: the layer's weights there.
static void gpu_layer_ready(GpuModel *m, size_t u, int s, const floatX **w) {
    cudaCheck(cudaStreamWaitEvent(m->stream, m->gathered_ev[s], 0));
    gpu_unit_pointers(m, u, (const floatX *)gpu_layer_slot_weights(m, s), w);
}

// Gradient slot s for layer unit u, zeroed once its previous reduce-scatter is done.
static void gpu_layer_grads_slot(GpuModel *m, size_t u, int s, float **g) {
    cudaCheck(cudaStreamWaitEvent(m->stream, m->reduced_ev[s], 0));
    float *base = gpu_layer_slot_grads(m, s);
    cudaCheck(cudaMemsetAsync(base, 0, m->units[u].shard * m->world * sizeof(float), m->stream));
    gpu_unit_pointers(m, u, base, g);
}

// After layer unit u's backward pass: its reduce-scatter on m->comm, behind the compute.
static void gpu_reduce_layer_async(GpuModel *m, size_t u, int s) {
    cudaCheck(cudaEventRecord(m->used_ev[s], m->stream));
    cudaCheck(cudaEventRecord(m->grads_ev[s], m->stream));
    cudaCheck(cudaStreamWaitEvent(m->comm, m->grads_ev[s], 0));
    gpu_unit_reduce_from(m, u, gpu_layer_slot_grads(m, s), m->comm);
    cudaCheck(cudaEventRecord(m->reduced_ev[s], m->comm));
}

// Elements per token of the bf16 activation buffers res, ln, q, att, k, v, gateup, mlp.
#define GPU_ACT_BUFFERS 8
static void gpu_activation_widths(const Qwen2Config *c, size_t widths[GPU_ACT_BUFFERS]) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t w[GPU_ACT_BUFFERS] = {H, H, QD, QD, KD, KD, gpu_fused_width(c), I};
    memcpy(widths, w, sizeof w);
}

// GPU bytes of the activations of an N-token forward pass (the LM-head chunk aside).
static size_t gpu_activation_bytes(const Qwen2Config *c, size_t N) {
    size_t widths[GPU_ACT_BUFFERS], per_token = 2 * sizeof(float) + 2 * sizeof(uint32_t) + sizeof(int);   // losses weights ids targets pos
    gpu_activation_widths(c, widths);
    for (int i = 0; i < GPU_ACT_BUFFERS; i++) per_token += widths[i] * sizeof(floatX);
    return N * per_token;
}

// Bytes of an upload of n tokens' ids and positions and, for a batched decoding step, B sequences' DecodeSeq.
static size_t gpu_upload_bytes(size_t n, size_t B) {
    size_t tokens = n * (sizeof(uint32_t) + sizeof(int));
    return B == 0 ? tokens : (tokens + 15) / 16 * 16 + B * sizeof(DecodeSeq);
}

// Grows the upload buffers (device, and its pinned host twin) to `bytes`. No copy from the old host buffer
// can be in flight: every upload's step synchronises the stream before the next (gpu_upload()).
static void gpu_upload_ensure(GpuModel *m, size_t bytes) {
    if (bytes <= m->upload_capacity) return;
    cudaCheck(cudaFree(m->upload));
    cudaCheck(cudaFreeHost(m->upload_host));
    m->allocated_bytes -= m->upload_capacity;
    m->upload = gpu_alloc(m, bytes);
    cudaCheck(cudaMallocHost(&m->upload_host, bytes));
    m->upload_capacity = bytes;
}

// A step's ids (n,), positions (n,) and, for a batched decoding step, its sequences' caches seqs (B,) to the
// device in ONE asynchronous copy from the pinned host buffer; m->ids and m->pos then point at them. Returns
// the device copy of seqs (NULL for B = 0). The host buffer is rewritten by the next upload, so the copy
// must be done by then: each caller's step synchronises the stream before it returns (gpu_decode() and
// gpu_decode_batch() copy the logits to the host, gpu_batch_upload() copies the targets with copy_to_device()).
static const DecodeSeq *gpu_upload(GpuModel *m, const uint32_t *ids, const int *pos, size_t n, const DecodeSeq *seqs, size_t B) {
    size_t bytes = gpu_upload_bytes(n, B), seqs_at = bytes - B * sizeof(DecodeSeq);
    gpu_upload_ensure(m, bytes);
    char *host = (char *)m->upload_host, *dev = (char *)m->upload;
    memcpy(host, ids, n * sizeof(uint32_t));
    memcpy(host + n * sizeof(uint32_t), pos, n * sizeof(int));
    if (B > 0) memcpy(host + seqs_at, seqs, B * sizeof(DecodeSeq));
    cudaCheck(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, m->stream));
    m->ids = (uint32_t *)dev;
    m->pos = (int *)(dev + n * sizeof(uint32_t));
    return B > 0 ? (const DecodeSeq *)(dev + seqs_at) : NULL;
}

// Grows the batch buffers (the upload of ids and positions, targets, loss
// weights, per-token losses) to N tokens; the first call also allocates the LM-head chunk.
static void gpu_batch_ensure(GpuModel *m, size_t N) {
    if (N <= m->batch_capacity) return;
    void *old[] = {m->targets, m->weights, m->losses};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) cudaCheck(cudaFree(old[i]));
    m->allocated_bytes -= m->batch_capacity * (sizeof(uint32_t) + 2 * sizeof(float));
    gpu_upload_ensure(m, gpu_upload_bytes(N, 0));
    m->targets = (uint32_t *)gpu_alloc(m, N * sizeof(uint32_t));
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
    floatX **bf[GPU_ACT_BUFFERS] = {&m->res, &m->ln, &m->q, &m->att, &m->k, &m->v, &m->gateup, &m->mlp};
    size_t widths[GPU_ACT_BUFFERS];
    gpu_activation_widths(&m->config, widths);
    for (int i = 0; i < GPU_ACT_BUFFERS; i++) {
        cudaCheck(cudaFree(*bf[i]));
        m->allocated_bytes -= m->capacity * widths[i] * sizeof(floatX);
        *bf[i] = (floatX *)gpu_alloc(m, N * widths[i] * sizeof(floatX));
    }
    m->capacity = N;
}

// One decoded token's layer of a GpuKVCache (gpu_decode()): the token's k, v rows
// (a LayerActs' k, v) go to row m->pos[0] of k, v, and attention reads rows 0..m->pos[0].
typedef struct {
    floatX *k, *v;    // (rows, KD) the layer's keys after RoPE, values
    int rows;         // keys the attention's grid covers: the capacity (a graph's), or the length
    float *scratch;   // attention_decode_flash()'s splits, for `rows` keys
} LayerCache;

// One layer of the caches of a batched decoding step (gpu_decode_batch()): row n
// of a LayerActs is sequence n's one new token, at position m->pos[n].
typedef struct {
    const DecodeSeq *dev;    // (B,) the sequences' caches and scratch, in the step's upload (device memory)
    const DecodeSeq *host;   // (B,) the same in host memory
    size_t layer;            // this layer's element offset in every cache: l * max_len * KD
    int rows;                // keys the attention's grid covers: the longest sequence's length
} SeqCaches;

// One layer's forward activations (bf16 unless noted), as gpu_layer_forward()
// writes them. Inference aliases them to save memory (resmid = the layer's
// input: the residual adds happen in place; ln2 = ln1; no rstd, no lse);
// training keeps each one for the backward pass, or recomputes them.
typedef struct {
    floatX *ln1;      // (N,H) input_layernorm output
    float *rstd1;     // (N,) fp32, or NULL
    floatX *qkv;      // (N,QD+2KD) the fused q|k|v projection before RoPE: gateup's memory, free until the MLP
    floatX *q;        // (N,QD) after RoPE
    floatX *k, *v;    // (N,KD) k after RoPE (rows of a KV cache when decoding)
    floatX *att;      // (N,QD) attention output, before o_proj
    float *lse;       // (N,NQ) fp32 log-sum-exp of each attention row, or NULL
    floatX *resmid;   // (N,H) residual stream after the attention block
    floatX *ln2;      // (N,H) post_attention_layernorm output
    float *rstd2;     // (N,) fp32, or NULL
    floatX *gateup;   // (N,2I) the MLP's fused projection: row n is gate (I,), then up (I,)
    floatX *mlp;      // (N,I) silu(gate) * up
    const LayerCache *cache;   // one decoded token: where its k, v go and attention reads, or NULL
    const SeqCaches *seqs;     // batched decoding: N sequences' caches, one new token each, or NULL
} LayerActs;

// Batched decoding's attention: row n of a->q (one new token of sequence n, at
// position pos[n], device) against sequence n's own cache: the N new k, v rows
// appended to their caches in one launch, then the flash-decoding pair over all
// N sequences, each with its own length: three launches whatever N, each
// sequence's bits those of gpu_decode()'s kernels on it alone. s1.c twin: the
// cache write and attention_row() of qwen2_decode_step(), once per sequence.
static void attention_decode_seqs(const LayerActs *a, const int *pos, int N, int NQ, int NKV, int HD, cudaStream_t stream) {
    const SeqCaches *c = a->seqs;
    kv_cache_append_seqs(c->dev, c->layer, a->k, a->v, pos, N, NKV * HD, stream);
    attention_decode_flash_seqs(a->att, c->dev, c->host, c->layer, a->q, pos, c->rows, N, NQ, NKV, HD, stream);
}

// One transformer layer over N tokens, its weights w[P_LN1W .. P_DOWNW]
// (gpu_unit_weights()): res (N,H) in, out (N,H) = the
// residual stream after the layer (out may be a->resmid, and a->resmid may be
// res: the adds then run in place; out NULL skips the MLP's down projection,
// which a recomputation for the backward pass does not need). Attention runs
// over each of the S sequences (seq_offsets), or, with seq_offsets NULL, over
// N new tokens of one sequence after `past` cached ones: a->k, a->v then point
// at row `past` of the (past+N, KD) cache, whose rows before it are read too;
// or, with a->cache, over one token (N = 1) at the position m->pos[0] holds in
// device memory (past unused): nothing launched depends on the host's count of
// cached tokens, so a CUDA graph of the step replays at every position;
// or, with a->seqs, over N sequences' caches, one new token each.
static void gpu_layer_forward(GpuModel *m, const floatX *const *w, int N, const size_t *seq_offsets, size_t S,
                              const LayerActs *a, const floatX *res, floatX *out, int past) {
    const Qwen2Config *c = &m->config;
    int H = (int)c->hidden_size, I = (int)c->intermediate_size, NQ = (int)c->num_heads, NKV = (int)c->num_kv_heads;
    int HD = (int)c->head_dim, QD = NQ * HD, KD = NKV * HD;
    float eps = (float)c->rms_norm_eps;
    rmsnorm_forward(a->ln1, a->rstd1, res, w[P_LN1W], N, H, eps, m->stream);
    // one GEMM against [Wq;Wk;Wv] (QD+2KD,H) with the bias [bq;bk;bv] (the unit's order, gpu_units_build()),
    // then RoPE as its rows split into q, k and v
    matmul_forward(m->gemm, a->qkv, a->ln1, w[P_QW], w[P_QB], N, H, QD + 2 * KD, 0, m->stream);
    rope_qkv_forward(a->q, a->k, a->v, a->qkv, m->pos, &m->rope, N, NQ, NKV, HD, m->stream);
    if (a->seqs != NULL) {
        attention_decode_seqs(a, m->pos, N, NQ, NKV, HD, m->stream);
    } else if (a->cache != NULL) {
        kv_cache_append(a->cache->k, a->cache->v, a->k, a->v, m->pos, KD, m->stream);
        attention_decode_flash(a->att, a->cache->scratch, a->q, a->cache->k, a->cache->v, m->pos, a->cache->rows, NQ, NKV, HD,
                               m->stream);
    } else if (seq_offsets == NULL) {
        attention_forward(a->att, a->lse, a->q, a->k - (size_t)past * KD, a->v - (size_t)past * KD, N, past, NQ, NKV, HD, m->stream);
    } else {
        for (size_t s = 0; s < S; s++) {
            size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
            if (T > 0) attention_forward(a->att + n0 * QD, a->lse ? a->lse + n0 * NQ : NULL, a->q + n0 * QD, a->k + n0 * KD,
                                         a->v + n0 * KD, (int)T, 0, NQ, NKV, HD, m->stream);
        }
    }
    // resmid = res + o_proj(att): the GEMM adds onto a copy of res (rounded once)
    if (a->resmid != res)
        cudaCheck(cudaMemcpyAsync(a->resmid, res, (size_t)N * H * sizeof(floatX), cudaMemcpyDeviceToDevice, m->stream));
    matmul_forward(m->gemm, a->resmid, a->att, w[P_OW], NULL, N, QD, H, 1, m->stream);
    rmsnorm_forward(a->ln2, a->rstd2, a->resmid, w[P_LN2W], N, H, eps, m->stream);
    matmul_forward(m->gemm, a->gateup, a->ln2, w[P_GATEW], NULL, N, H, 2 * I, 0, m->stream);   // [Wgate;Wup] (2I,H)
    swiglu_forward(a->mlp, a->gateup, N, I, m->stream);
    if (out == NULL) return;
    if (out != a->resmid)
        cudaCheck(cudaMemcpyAsync(out, a->resmid, (size_t)N * H * sizeof(floatX), cudaMemcpyDeviceToDevice, m->stream));
    matmul_forward(m->gemm, out, a->mlp, w[P_DOWNW], NULL, N, I, H, 1, m->stream);
}

// The inference buffers as a LayerActs: everything in place, one layer at a time.
static LayerActs gpu_inference_acts(GpuModel *m, floatX *k, floatX *v) {
    LayerActs a = {m->ln, NULL, m->gateup, m->q, k, v, m->att, NULL, m->res, m->ln, NULL, m->gateup, m->mlp, NULL, NULL};
    return a;
}

// Uploads a batch (ids (N,), the sequences at seq_offsets (S+1,), the loss
// mask (N,)) with its loss targets, as s1.c's qwen2_forward() makes them:
// targets[n] = ids[n+1] where mask[n+1] marks it a target of the same
// sequence; weights[n] = 1 / (S * targets of n's sequence) there, 0 elsewhere,
// so the weighted sum is s1's loss (seq_weights[s] / targets with seq_weights,
// the sequences' shares of the step's loss: train_loss_weights()); pos[n] = n's
// position in its sequence. Returns the weights in host memory (malloc'd): the
// LM head skips chunks without a target.
static float *gpu_batch_upload(GpuModel *m, const uint32_t *ids, const uint8_t *mask, const size_t *seq_offsets, size_t S,
                               const double *seq_weights) {
    size_t N = seq_offsets[S], V = m->config.vocab_size;
    uint32_t *targets = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    float *weights = (float *)mallocCheck(N * sizeof(float));
    int *pos = (int *)mallocCheck(N * sizeof(int));
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], n1 = seq_offsets[s + 1], count = 0;
        if (n1 < n0) die("gpu_forward: sequence offsets decrease at sequence %zu", s);
        if (n1 > n0) rope_check_positions(&m->rope, n1 - n0 - 1, "gpu_forward");
        for (size_t n = n0 + 1; n < n1; n++) count += mask[n] != 0;
        for (size_t n = n0; n < n1; n++) {
            if (ids[n] >= V) die("gpu_forward: token id %u at position %zu is outside the %zu-row embedding", ids[n], n, V);
            int scored = n + 1 < n1 && mask[n + 1];
            pos[n] = (int)(n - n0);
            targets[n] = scored ? ids[n + 1] : 0;
            double w = seq_weights != NULL ? seq_weights[s] / (double)count : 1.0 / ((double)S * (double)count);
            weights[n] = scored ? (float)w : 0.0f;
        }
    }
    // behind the stream's earlier work, which may still read the previous batch
    gpu_upload(m, ids, pos, N, NULL, 0);
    copy_to_device(m->targets, targets, N * sizeof(uint32_t), m->stream);
    copy_to_device(m->weights, weights, N * sizeof(float), m->stream);
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
    float *weights = gpu_batch_upload(m, ids, mask, seq_offsets, S, NULL);

    const floatX *w[NUM_PARAMETER_TENSORS];
    gpu_unit_weights(m, 0, w);
    embedding_forward(m->res, m->ids, w[P_EMBED], (int)N, (int)H, m->stream);
    LayerActs acts = gpu_inference_acts(m, m->k, m->v);
    for (size_t l = 0; l < L; l++) {
        gpu_unit_weights(m, 1 + l, w);
        gpu_layer_forward(m, w, (int)N, seq_offsets, S, &acts, m->res, m->res, 0);
    }
    gpu_unit_weights(m, L + 1, w);
    rmsnorm_forward(m->ln, NULL, m->res, w[P_NORMW], (int)N, (int)H, (float)c->rms_norm_eps, m->stream);
    lm_head_loss(m->gemm, m->loss, m->losses, m->logits, m->ln, gpu_lm_head(m, w), m->targets, m->weights, weights,
                 (int)N, (int)H, (int)V, m->chunk_rows, m->stream);
    float loss;
    copy_to_host(&loss, m->loss, sizeof(float), m->stream);
    free(weights);
    return loss;
}

// ----------------------------------------------------------------------------
// decoding with a KV cache: one token at a time, for sample.cu
//
// A decoded token runs 11 launches per layer (tutorial/cuda.md, "One decoded
// token as a CUDA graph"), each a few microseconds of CPU work, so the step is
// captured once as a CUDA graph and replayed with one cudaGraphLaunch per token.
// A graph replays its launches with the arguments they had at capture: so the
// one-token step takes nothing per token from the host (its id and position
// are copied into m->ids, m->pos before the launch, the kernels read the
// position there: where the new K/V row goes and how many keys attention reads).

// --graph on|off (sample): the one-token step as a CUDA graph (true, the default), or launched kernel by kernel
static bool decode_graph = true;
#define GRAPH_FLAG_HELP                                                                                       \
    "  --graph on|off       on (default): each decoded token replays one CUDA graph of the step; off: its\n"  \
    "                       kernels are launched one by one (the same kernels, the same bits)\n"
static void graph_flag(const char *v) {
    if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) die("--graph: '%s' is not on or off", v);
    decode_graph = strcmp(v, "on") == 0;
}

typedef struct {
    size_t max_len, len;   // capacity and tokens cached (the next token's position)
    floatX *k, *v;         // (L, max_len, KD) keys after RoPE, values
    float *scratch;        // flash-decoding's per-split partial outputs (attention_decode_scratch_floats)
    float *logits;         // (V,) host copy of the last step's logits
    // the one-token step as a CUDA graph (gpu_decode_graph()), captured on first use, or NULL; and what it
    // was captured with: the model and the capacities of the buffers it reads (the activations, the upload
    // of ids and positions; they move only when those grow)
    cudaGraphExec_t step;
    const GpuModel *step_model;
    size_t step_capacity, step_upload_capacity;
} GpuKVCache;

static void gpu_kvcache_create(GpuKVCache *kv, const GpuModel *m, size_t max_len) {
    const Qwen2Config *c = &m->config;
    size_t bytes = c->num_layers * max_len * c->num_kv_heads * c->head_dim * sizeof(floatX);
    memset(kv, 0, sizeof *kv);
    kv->max_len = max_len;
    cudaCheck(cudaMalloc((void **)&kv->k, bytes));
    cudaCheck(cudaMalloc((void **)&kv->v, bytes));
    size_t scratch = attention_decode_scratch_floats((int)max_len, (int)c->num_heads, (int)c->head_dim);
    cudaCheck(cudaMalloc((void **)&kv->scratch, scratch * sizeof(float)));
    kv->logits = (float *)mallocCheck(c->vocab_size * sizeof(float));
}

static void gpu_kvcache_free(GpuKVCache *kv) {
    if (kv->step != NULL) cudaCheck(cudaGraphExecDestroy(kv->step));
    cudaCheck(cudaFree(kv->k));
    cudaCheck(cudaFree(kv->v));
    cudaCheck(cudaFree(kv->scratch));
    free(kv->logits);
    memset(kv, 0, sizeof *kv);
}

// The launches of n new tokens, whose ids and positions are in m->ids, m->pos:
// the layer kernels of gpu_forward(), then the LM head of the last token into
// m->logits (V,). A prompt (n > 1) writes K/V straight into the cache rows
// after kv->len and attends over them with attention_forward(); one token
// writes its K/V at the position m->pos[0] holds (kv_cache_append()) and
// attends with attention_decode_flash(), so that its launches do not depend on
// kv->len and can be replayed as a graph.
static void gpu_decode_launch(GpuModel *m, GpuKVCache *kv, size_t n) {
    const Qwen2Config *c = &m->config;
    size_t H = c->hidden_size, V = c->vocab_size, L = c->num_layers, KD = c->num_kv_heads * c->head_dim;
    const floatX *w[NUM_PARAMETER_TENSORS];
    gpu_unit_weights(m, 0, w);
    embedding_forward(m->res, m->ids, w[P_EMBED], (int)n, (int)H, m->stream);
    for (size_t l = 0; l < L; l++) {
        floatX *k = kv->k + l * kv->max_len * KD, *v = kv->v + l * kv->max_len * KD;   // (max_len, KD) layer l's cache
        LayerCache cache = {k, v, (int)kv->max_len, kv->scratch};
        LayerActs acts = n == 1 ? gpu_inference_acts(m, m->k, m->v) : gpu_inference_acts(m, k + kv->len * KD, v + kv->len * KD);
        if (n == 1) acts.cache = &cache;
        gpu_unit_weights(m, 1 + l, w);
        gpu_layer_forward(m, w, (int)n, NULL, 1, &acts, m->res, m->res, n == 1 ? 0 : (int)kv->len);
    }
    gpu_unit_weights(m, L + 1, w);
    const floatX *last = m->res + (n - 1) * H;
    rmsnorm_forward(m->ln, NULL, last, w[P_NORMW], 1, (int)H, (float)c->rms_norm_eps, m->stream);
    gemm_nt(m->gemm, m->logits, CUDA_R_32F, m->ln, gpu_lm_head(m, w), NULL, 1, (int)H, (int)V, 0.0f, m->stream);
}

// One token's gpu_decode_launch() through kv's graph: captured on the first
// token (again if the model's buffers have moved since), then replayed.
// Capture records the launches without running them (thread-local mode: this
// thread may not synchronise or allocate meanwhile, which the emulator checks).
static void gpu_decode_graph(GpuModel *m, GpuKVCache *kv) {
    bool moved = kv->step_model != m || kv->step_capacity != m->capacity || kv->step_upload_capacity != m->upload_capacity;
    if (kv->step == NULL || moved) {
        if (kv->step != NULL) cudaCheck(cudaGraphExecDestroy(kv->step));
        cudaGraph_t graph;
        cudaCheck(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal));
        gpu_decode_launch(m, kv, 1);
        cudaCheck(cudaStreamEndCapture(m->stream, &graph));
        cudaCheck(cudaGraphInstantiate(&kv->step, graph, 0));
        cudaCheck(cudaGraphDestroy(graph));
        kv->step_model = m;
        kv->step_capacity = m->capacity;
        kv->step_upload_capacity = m->upload_capacity;
    }
    cudaCheck(cudaGraphLaunch(kv->step, m->stream));
}

// Appends n tokens at positions kv->len.. (a prompt in one pass, or one
// generated token) and returns the logits (V,) that follow the last of them
// (host memory, valid until the next call). Only the last token goes through
// the LM head. One token replays the step's graph unless --graph off.
static const float *gpu_decode(GpuModel *m, GpuKVCache *kv, const uint32_t *ids, size_t n) {
    size_t V = m->config.vocab_size;
    if (n == 0) die("gpu_decode: no tokens to feed");
    if (kv->len + n > kv->max_len) die("gpu_decode: KV cache is full (%zu tokens, %zu more requested)", kv->max_len, n);
    rope_check_positions(&m->rope, kv->len + n - 1, "gpu_decode");
    gpu_activations_ensure(m, n);
    int *pos = (int *)mallocCheck(n * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= V) die("gpu_decode: token id %u is outside the %zu-row embedding", ids[i], V);
        pos[i] = (int)(kv->len + i);
    }
    // outside any graph: the values change every token (one token's always land at the same addresses,
    // the ones the graph reads)
    gpu_upload(m, ids, pos, n, NULL, 0);
    free(pos);
    if (n == 1 && decode_graph) gpu_decode_graph(m, kv);
    else gpu_decode_launch(m, kv, n);
    copy_to_host(kv->logits, m->logits, V * sizeof(float), m->stream);   // synchronises: the upload is done too
    kv->len += n;
    return kv->logits;
}

// One new token for each of B sequences decoding together, each with its own
// cache (kvs (B,), all of one max_len): ids[b] goes in at position
// kvs[b]->len. The GEMMs run over the B rows, so every weight is read once for
// the B tokens (the point of batching: a decoded token costs the weights'
// bytes, tutorial/cuda.md); the attention runs each sequence on its own cache,
// one launch per kernel for all of them (attention_decode_seqs()), and the ids,
// positions and caches go to the device in one copy (gpu_upload()). Afterwards
// each cache holds its logits (host) and one more token, as
// gpu_decode(m, kvs[b], &ids[b], 1) would leave it: the same
// kernels row by row, so the logits are the same up to the order in which the
// GEMMs sum (the emulator's does not depend on the rows, cuBLAS may pick
// another algorithm for B rows than for 1). B is at most m->chunk_rows: the LM
// head writes the B rows of logits into m->logits.
static void gpu_decode_batch(GpuModel *m, GpuKVCache *const *kvs, const uint32_t *ids, size_t B) {
    const Qwen2Config *c = &m->config;
    size_t H = c->hidden_size, V = c->vocab_size, L = c->num_layers, KD = c->num_kv_heads * c->head_dim;
    if (B == 0) die("gpu_decode_batch: no sequences");
    if (B > (size_t)m->chunk_rows) die("gpu_decode_batch: %zu sequences exceed the LM head's %d rows of logits", B, m->chunk_rows);
    size_t max_len = kvs[0]->max_len;
    int *pos = (int *)mallocCheck(B * sizeof(int));
    DecodeSeq *seqs = (DecodeSeq *)mallocCheck(B * sizeof(DecodeSeq));
    int rows = 0;   // the attention grid covers the longest sequence, not the capacity a graph needs
    for (size_t b = 0; b < B; b++) {
        const GpuKVCache *kv = kvs[b];
        if (kv->max_len != max_len) die("gpu_decode_batch: caches of %zu and %zu tokens in one batch", max_len, kv->max_len);
        if (kv->len + 1 > max_len) die("gpu_decode_batch: KV cache %zu is full (%zu tokens)", b, max_len);
        if (ids[b] >= V) die("gpu_decode_batch: token id %u is outside the %zu-row embedding", ids[b], V);
        rope_check_positions(&m->rope, kv->len, "gpu_decode_batch");
        pos[b] = (int)kv->len;
        seqs[b] = {kv->k, kv->v, kv->scratch};
        rows = pos[b] + 1 > rows ? pos[b] + 1 : rows;
    }
    gpu_activations_ensure(m, B);
    SeqCaches caches = {gpu_upload(m, ids, pos, B, seqs, B), seqs, 0, rows};
    const floatX *w[NUM_PARAMETER_TENSORS];
    gpu_unit_weights(m, 0, w);
    embedding_forward(m->res, m->ids, w[P_EMBED], (int)B, (int)H, m->stream);
    for (size_t l = 0; l < L; l++) {
        caches.layer = l * max_len * KD;
        LayerActs acts = gpu_inference_acts(m, m->k, m->v);   // K, V rows computed here, then appended to the caches
        acts.seqs = &caches;
        gpu_unit_weights(m, 1 + l, w);
        gpu_layer_forward(m, w, (int)B, NULL, 1, &acts, m->res, m->res, 0);
    }
    gpu_unit_weights(m, L + 1, w);
    rmsnorm_forward(m->ln, NULL, m->res, w[P_NORMW], (int)B, (int)H, (float)c->rms_norm_eps, m->stream);
    gemm_nt(m->gemm, m->logits, CUDA_R_32F, m->ln, gpu_lm_head(m, w), NULL, (int)B, (int)H, (int)V, 0.0f, m->stream);
    for (size_t b = 0; b < B; b++)
        cudaCheck(cudaMemcpyAsync(kvs[b]->logits, m->logits + b * V, V * sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));   // the logits, and the upload done before the next step's
    for (size_t b = 0; b < B; b++) kvs[b]->len++;
    free(seqs);
    free(pos);
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
    floatX *dmlp;             // (N,I) d loss / d mlp (the fused gradients take the layer's gateup: gpu_layer_backward())
    float *scratch;           // reductions and attention's D (gpu_train_scratch_floats)
    int *ids_scratch;         // the embedding backward's buckets
    floatX *bf16_memory;
    float *f32_memory;
    size_t bytes;             // what these buffers take (counted in the model's allocated_bytes)
} GpuTrainActs;

// Per-token sizes of one kept layer: bf16 elements and fp32 elements.
static size_t gpu_layer_bf16_per_token(const Qwen2Config *c) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    return 3 * H + 2 * QD + 2 * KD + gpu_fused_width(c) + I;   // ln1 q k v att resmid ln2 gateup (qkv before it) mlp
}
static size_t gpu_layer_f32_per_token(const Qwen2Config *c) { return 2 + c->num_heads; }   // rstd1 rstd2 lse

// fp32 scratch of the backward pass for N tokens: the largest of the
// reductions' partial sums (RMSNorm's over H columns, the fused bias's over
// QD+2KD) and attention's D (T*NQ for the longest sequence <= N).
static size_t gpu_train_scratch_floats(const Qwen2Config *c, size_t N) {
    size_t H = c->hidden_size, QKV = (c->num_heads + 2 * c->num_kv_heads) * c->head_dim;
    size_t need = attention_backward_scratch_floats((int)N, (int)c->num_heads);
    size_t red = rmsnorm_backward_scratch_floats((int)N, (int)H);
    size_t bias = matmul_backward_scratch_floats((int)N, (int)QKV);
    need = need > red ? need : red;
    return need > bias ? need : bias;
}

// The memory of rank r of a W-rank training run, in bytes: exactly what
// gpu_model_create_rank() and the first gpu_forward_backward() allocate, for
// micro-batches of up to N tokens (tests/test_sft.sh compares the two).
typedef struct {
    double weights, master, adam_m, adam_v, grads;   // the training state: this rank's shards
    double gathered;                                 // W > 1: gathered units, their full gradients, reduce buffers
    double activations;                              // kept for the backward pass
    double scratch;                                  // one layer's gradients, reductions, the batch, the RoPE tables,
                                                     // the GEMM workspace
    double logits;                                   // one LM-head chunk
    double total;
} GpuMemoryPlan;

static GpuMemoryPlan gpu_memory_plan(const Qwen2Config *c, size_t N, int recompute, int chunk_rows, int world, int reduce_f32,
                                     int overlap) {
    GpuModel shape;   // only its units: the shard sizes
    memset(&shape, 0, sizeof shape);
    shape.config = *c;
    shape.world = world;
    gpu_units_build(&shape);
    GpuMemoryPlan p;
    memset(&p, 0, sizeof p);
    double S = (double)shape.shard_numel, n = (double)N, L = (double)c->num_layers, H = (double)c->hidden_size, W = world;
    double I = (double)c->intermediate_size, QD = (double)(c->num_heads * c->head_dim), KD = (double)(c->num_kv_heads * c->head_dim);
    p.weights = 2 * S;
    p.master = p.adam_m = p.adam_v = p.grads = 4 * S;
    if (world > 1) {
        double s0 = (double)shape.units[0].shard, s1 = (double)shape.units[1].shard, sh = (double)shape.units[c->num_layers + 1].shard;
        double big = (s0 > sh ? s0 : sh) * W, head = (sh + (c->tie_word_embeddings ? s0 : 0)) * W;
        double largest = big > W * s1 ? big : W * s1;
        p.gathered = 2 * W * s1 + 2 * (big > head ? big : head) + 4 * (W * s1 + (c->tie_word_embeddings ? head : big))
                     + (reduce_f32 ? 4 : 2) * (largest + largest / W)
                     + (overlap ? (2 + 4) * W * s1 : 0);   // --overlap: a second gathered layer and its gradients
    }
    double slots = recompute ? 1 : L;
    p.activations = n * (2 * (L + 1) * H + slots * (2.0 * (double)gpu_layer_bf16_per_token(c) + 4.0 * (double)gpu_layer_f32_per_token(c))
                         + 2 * H + 4);   // res (L+1 layers), the kept layers, lnf and rstdf
    p.scratch = n * (4 * H + 2 * H + 4 * H + 2 * (2 * QD + 2 * KD + I))   // dres, dres_bf16, dln, datt dq dk dv dmlp
                + 4.0 * (double)gpu_train_scratch_floats(c, N) + 4.0 * (double)embedding_backward_scratch_ints((int)N)
                + n * 4 * 5 + 8.0 * GLOBAL_NORM_SCRATCH   // the batch (ids targets pos weights losses), the norm's partials
                + (double)gpu_rope_table_bytes(c) + (double)GEMM_WORKSPACE_BYTES;
    p.logits = (double)chunk_rows * (double)c->vocab_size * 4 + 4;
    p.total = p.weights + p.master + p.adam_m + p.adam_v + p.grads + p.gathered + p.activations + p.scratch + p.logits;
    free(shape.units);
    return p;
}

// Grows the training buffers to N tokens (and switches recompute).
static void gpu_train_acts_ensure(GpuModel *m, GpuTrainActs *t, size_t N, int recompute) {
    if (N <= t->capacity && recompute == t->recompute && t->layer != NULL) return;
    const Qwen2Config *c = &m->config;
    size_t L = c->num_layers, H = c->hidden_size, I = c->intermediate_size;
    size_t QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim, NQ = c->num_heads;
    void *old[] = {t->res, t->lnf, t->rstdf, t->dres, t->dres_bf16, t->dln, t->datt, t->dq, t->dk, t->dv, t->dmlp,
                   t->scratch, t->ids_scratch, t->bf16_memory, t->f32_memory};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) cudaCheck(cudaFree(old[i]));
    free(t->layer);
    m->allocated_bytes -= t->bytes;
    size_t before = m->allocated_bytes;
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
        a->gateup = a->qkv = b; b += N * gpu_fused_width(c);
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
    t->dmlp = (floatX *)gpu_alloc(m, N * I * sizeof(floatX));
    t->scratch = (float *)gpu_alloc(m, gpu_train_scratch_floats(c, N) * sizeof(float));
    t->ids_scratch = (int *)gpu_alloc(m, embedding_backward_scratch_ints((int)N) * sizeof(int));
    t->bytes = m->allocated_bytes - before;
}

static void gpu_train_acts_free(GpuTrainActs *t) {
    void *bufs[] = {t->res, t->lnf, t->rstdf, t->dres, t->dres_bf16, t->dln, t->datt, t->dq, t->dk, t->dv, t->dmlp,
                    t->scratch, t->ids_scratch, t->bf16_memory, t->f32_memory};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaCheck(cudaFree(bufs[i]));
    free(t->layer);
    memset(t, 0, sizeof *t);
}

// Backward of a layer (twin of one iteration of qwen2_backward()'s layer
// loop): w its weights, g where its gradients add up. On entry t->dres holds
// d loss / d(output of the layer) and t->dres_bf16 its bf16 copy; on exit both
// hold d loss / d(input of the layer). a: the layer's activations (kept, or
// just recomputed), used up: nothing reads gateup after SwiGLU's backward, so
// the fused gradients take its memory, [dgate | dup] in place of gate|up, then
// [dq | dk | dv] (a->qkv), each the dout of one GEMM over the unit's fused
// matrices (gpu_units_build()). res: the layer's input.
static void gpu_layer_backward(GpuModel *m, GpuTrainActs *t, const floatX *const *w, float *const *g, int N,
                               const size_t *seq_offsets, size_t S, const LayerActs *a, const floatX *res) {
    const Qwen2Config *c = &m->config;
    int H = (int)c->hidden_size, I = (int)c->intermediate_size, NQ = (int)c->num_heads, NKV = (int)c->num_kv_heads;
    int HD = (int)c->head_dim, QD = NQ * HD, KD = NKV * HD;
    Gemm *h = m->gemm;
    // MLP branch; its residual add passes dres through unchanged
    matmul_backward(h, t->dmlp, CUDA_R_16BF, 0, g[P_DOWNW], NULL, t->scratch, t->dres_bf16, a->mlp,
                    w[P_DOWNW], N, I, H, m->stream);
    swiglu_backward(a->gateup, t->dmlp, a->gateup, N, I, m->stream);                        // [dgate | dup] (N,2I)
    matmul_backward(h, t->dln, CUDA_R_32F, 0, g[P_GATEW], NULL, t->scratch, a->gateup, a->ln2,
                    w[P_GATEW], N, H, 2 * I, m->stream);                                    // [Wgate;Wup] (2I,H)
    rmsnorm_backward(t->dres, t->dres_bf16, g[P_LN2W], t->scratch, t->dln, a->resmid, w[P_LN2W], a->rstd2, N, H, m->stream);
    // attention branch
    matmul_backward(h, t->datt, CUDA_R_16BF, 0, g[P_OW], NULL, t->scratch, t->dres_bf16, a->att,
                    w[P_OW], N, QD, H, m->stream);
    for (size_t s = 0; s < S; s++) {
        size_t n0 = seq_offsets[s], T = seq_offsets[s + 1] - n0;
        if (T > 0) attention_backward(t->dq + n0 * QD, t->dk + n0 * KD, t->dv + n0 * KD, t->scratch, t->datt + n0 * QD,
                                      a->att + n0 * QD, a->lse + n0 * NQ, a->q + n0 * QD, a->k + n0 * KD, a->v + n0 * KD,
                                      (int)T, NQ, NKV, HD, m->stream);
    }
    rope_qkv_backward(a->qkv, t->dq, t->dk, t->dv, m->pos, &m->rope, N, NQ, NKV, HD, m->stream);   // [dq | dk | dv]
    matmul_backward(h, t->dln, CUDA_R_32F, 0, g[P_QW], g[P_QB], t->scratch, a->qkv, a->ln1,
                    w[P_QW], N, H, QD + 2 * KD, m->stream);                                 // [Wq;Wk;Wv], [bq;bk;bv]
    rmsnorm_backward(t->dres, t->dres_bf16, g[P_LN1W], t->scratch, t->dln, res, w[P_LN1W], a->rstd1, N, H, m->stream);
}

// One micro-batch: forward and backward over S sequences stored back to back
// (ids, mask, seq_offsets as gpu_forward()), adding grad_scale * d(loss)/d(parameters)
// into this rank's gradients (twin of s1.c's qwen2_forward() + qwen2_backward(m,
// grad_scale)). Returns s1's loss of the micro-batch (the mean over its
// sequences of each sequence's token-mean cross-entropy). With W > 1 every rank
// must call it the same number of times: a rank without a sequence in a round
// (S = 0, a short batch) computes nothing but makes every collective, in the
// same order, since NCCL needs every rank in every call. seq_weights (S,): the
// sequences' shares of the step's loss, as s1.c's qwen2_forward_weighted()
// takes them (NULL: 1/S each, gpu_forward_backward()).
static float gpu_forward_backward_weighted(GpuModel *m, GpuTrainActs *t, const uint32_t *ids, const uint8_t *mask,
                                           const size_t *seq_offsets, size_t S, const double *seq_weights, float grad_scale,
                                           int recompute) {
    const Qwen2Config *c = &m->config;
    size_t N = seq_offsets[S], H = c->hidden_size, V = c->vocab_size, L = c->num_layers;
    int busy = N > 0, ov = m->overlap;
    if (m->grads_memory == NULL) die("gpu_forward_backward: the model was not created for training");
    if (!busy && m->world == 1) return 0.0f;
    if (N > (1u << 30)) die("gpu_forward_backward: %zu tokens exceed the kernels' int range", N);
    float *weights = NULL;
    if (busy) {
        gpu_batch_ensure(m, N);
        gpu_train_acts_ensure(m, t, N, recompute);
        weights = gpu_batch_upload(m, ids, mask, seq_offsets, S, seq_weights);
    }
    // forward, keeping each layer's activations (or only its input)
    const floatX *w[NUM_PARAMETER_TENSORS];
    float *g[NUM_PARAMETER_TENSORS];
    gpu_unit_weights(m, 0, w);
    if (busy) embedding_forward(t->res, m->ids, w[P_EMBED], (int)N, (int)H, m->stream);
    // the comm stream's step starts behind all earlier compute (the last step's
    // AdamW update wrote the shards it gathers): then its stream order and the
    // events below keep it there
    if (ov) cudaCheck(cudaEventRecord(m->used_ev[0], m->stream));
    if (ov) gpu_prefetch_layer(m, 1, 0);
    for (size_t l = 0; l < L; l++) {
        if (ov) {
            gpu_layer_ready(m, 1 + l, (int)(l % 2), w);
            if (l + 1 < L) gpu_prefetch_layer(m, 2 + l, (int)((l + 1) % 2));
        } else {
            gpu_unit_weights(m, 1 + l, w);
        }
        if (busy) gpu_layer_forward(m, w, (int)N, seq_offsets, S, &t->layer[recompute ? 0 : l], t->res + l * N * H, t->res + (l + 1) * N * H, 0);
        if (ov) cudaCheck(cudaEventRecord(m->used_ev[l % 2], m->stream));
    }
    gpu_unit_weights(m, L + 1, w);
    const floatX *head_w = gpu_lm_head(m, w);
    if (busy) rmsnorm_forward(t->lnf, t->rstdf, t->res + L * N * H, w[P_NORMW], (int)N, (int)H, (float)c->rms_norm_eps, m->stream);
    // the loss and its gradient, chunk by chunk of rows: dlnf into dln, the head's gradient into its grad
    float *embed_g[NUM_PARAMETER_TENSORS];   // untied, the embedding's gradients take the head's buffer after it is reduced
    if (c->tie_word_embeddings) gpu_unit_grads(m, 0, embed_g);
    gpu_unit_grads(m, L + 1, g);
    float *head_g = c->tie_word_embeddings ? embed_g[P_EMBED] : g[P_LMW];
    if (busy) {
        classifier_forward_backward(m->gemm, m->loss, m->losses, m->logits, t->dln, head_g, t->lnf, head_w,
                                    m->targets, m->weights, weights, grad_scale, (int)N, (int)H, (int)V, m->chunk_rows, m->stream);
        cudaCheck(cudaMemsetAsync(t->dres, 0, N * H * sizeof(float), m->stream));
        rmsnorm_backward(t->dres, t->dres_bf16, g[P_NORMW], t->scratch, t->dln, t->res + L * N * H, w[P_NORMW],
                         t->rstdf, (int)N, (int)H, m->stream);
    }
    gpu_unit_reduce(m, L + 1);
    if (!c->tie_word_embeddings) gpu_unit_grads(m, 0, embed_g);
    if (ov) gpu_prefetch_layer(m, L, 0);   // layer L - 1's unit
    for (size_t i = 0; i < L; i++) {
        size_t l = L - 1 - i;
        int slot = (int)(i % 2);
        const floatX *res = busy ? t->res + l * N * H : NULL;
        if (ov) {
            gpu_layer_ready(m, 1 + l, slot, w);   // gathered again: the buffers have held other layers since
            if (l > 0) gpu_prefetch_layer(m, l, 1 - slot);
            gpu_layer_grads_slot(m, 1 + l, slot, g);
        } else {
            gpu_unit_weights(m, 1 + l, w);
            gpu_unit_grads(m, 1 + l, g);
        }
        if (busy && recompute) gpu_layer_forward(m, w, (int)N, seq_offsets, S, &t->layer[0], res, NULL, 0);
        if (busy) gpu_layer_backward(m, t, w, g, (int)N, seq_offsets, S, &t->layer[recompute ? 0 : l], res);
        if (ov) gpu_reduce_layer_async(m, 1 + l, slot);
        else gpu_unit_reduce(m, 1 + l);
    }
    if (ov) cudaCheck(cudaStreamSynchronize(m->comm));   // every layer reduced before the embedding's reduce and the update
    if (busy) embedding_backward(embed_g[P_EMBED], t->dres, ids, (int)N, (int)H, t->ids_scratch, m->stream);
    gpu_unit_reduce(m, 0);
    float loss = 0.0f;
    if (busy) copy_to_host(&loss, m->loss, sizeof(float), m->stream);
    free(weights);
    return loss;
}

static inline float gpu_forward_backward(GpuModel *m, GpuTrainActs *t, const uint32_t *ids, const uint8_t *mask,
                                         const size_t *seq_offsets, size_t S, float grad_scale, int recompute) {
    return gpu_forward_backward_weighted(m, t, ids, mask, seq_offsets, S, NULL, grad_scale, recompute);
}

// The global L2 norm of the gradients of all ranks, as s1.c's
// qwen2_grad_norm() returns it: each rank's sum of squares in double, in a
// fixed order (global_norm_squared()); with W > 1 the W sums are all-gathered
// as raw bits and added on every rank in rank order, so every rank gets the
// same float, whatever the transport would have summed in.
static float gpu_grad_norm(GpuModel *m) {
    if (m->world == 1) return global_norm(m->grads_memory, m->shard_numel, m->norm_scratch, m->stream);
    global_norm_squared(m->norm_scratch + GLOBAL_NORM_BLOCKS, m->grads_memory, m->shard_numel, m->norm_scratch, m->stream);
    double *all;
    cudaCheck(cudaMalloc((void **)&all, (size_t)m->world * sizeof(double)));
    ncclCheck(ncclAllGather(m->norm_scratch + GLOBAL_NORM_BLOCKS, all, 2, ncclUint32, m->nccl, m->stream));
    double *host = (double *)mallocCheck((size_t)m->world * sizeof(double)), sumsq = 0.0;
    copy_to_host(host, all, (size_t)m->world * sizeof(double), m->stream);
    for (int r = 0; r < m->world; r++) sumsq += host[r];
    free(host);
    cudaCheck(cudaFree(all));
    return (float)sqrt(sumsq);
}

// Adds every rank's value of x in rank order (a loss, a token count): the same double on every rank.
static double gpu_sum_over_ranks(GpuModel *m, double x) {
    if (m->world == 1) return x;
    double *d;
    cudaCheck(cudaMalloc((void **)&d, (size_t)(m->world + 1) * sizeof(double)));
    copy_to_device(d + m->world, &x, sizeof(double), m->stream);
    ncclCheck(ncclAllGather(d + m->world, d, 2, ncclUint32, m->nccl, m->stream));
    double *host = (double *)mallocCheck((size_t)m->world * sizeof(double)), sum = 0.0;
    copy_to_host(host, d, (size_t)m->world * sizeof(double), m->stream);
    for (int r = 0; r < m->world; r++) sum += host[r];
    free(host);
    cudaCheck(cudaFree(d));
    return sum;
}

// Clips the gradients to a global norm (torch clip_grad_norm_: the norm is
// fp64, computed in a fixed order) and takes one AdamW step on the master
// weights, then rounds them to the bf16 weights. Decay groups as s1.c's
// qwen2_update(): weights decay; biases never; RMSNorm weights with
// decay_norm_weights. Returns the norm before clipping.
static float gpu_update(GpuModel *m, double lr, double beta1, double beta2, double eps, double weight_decay,
                        double max_grad_norm, int decay_norm_weights) {
    float norm = gpu_grad_norm(m);
    float clip = adamw_clip_factor(norm, (float)max_grad_norm);
    m->step++;
    for (size_t u = 0; u < m->num_units; u++) {   // each member tensor's part of this rank's shard of the unit
        const GpuUnit *un = &m->units[u];
        size_t lo = (size_t)m->rank * un->shard, hi = lo + un->shard;
        for (int j = 0; j < un->count; j++) {
            int i = un->tensor[j];
            size_t begin = un->offset[i], end = begin + gpu_tensor_numel(&m->config, i);
            begin = begin > lo ? begin : lo;
            end = end < hi ? end : hi;
            if (begin >= end) continue;
            int kind = parameter_info[i].kind;
            int decays = kind == KIND_WEIGHT || (kind == KIND_NORM && decay_norm_weights);
            AdamWScalars k = adamw_scalars(lr, m->step, (float)beta1, (float)beta2, (float)eps, decays ? weight_decay : 0.0);
            size_t off = un->shard_offset + (begin - lo);
            adamw_update(m->params_memory + off, m->master_memory + off, m->adam_m + off, m->adam_v + off,
                         m->grads_memory + off, end - begin, clip, &k, m->stream);
        }
    }
    return norm;
}

static void gpu_model_free(GpuModel *m) {
    void *bufs[] = {m->params_memory, m->master_memory, m->grads_memory, m->adam_m, m->adam_v, m->res, m->ln, m->q,
                    m->att, m->k, m->v, m->gateup, m->mlp, m->logits, m->losses, m->weights, m->loss, m->upload, m->targets,
                    m->norm_scratch, m->gathered_layer, m->gathered_big, m->unit_grads_layer, m->unit_grads_big,
                    m->reduce_send, m->reduce_recv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaCheck(cudaFree(bufs[i]));
    cudaCheck(cudaFreeHost(m->upload_host));
    if (m->overlap) {
        cudaCheck(cudaFree(m->gathered_layer_alt));
        cudaCheck(cudaFree(m->unit_grads_layer_alt));
        cudaEvent_t *evs[] = {m->gathered_ev, m->used_ev, m->grads_ev, m->reduced_ev};
        for (size_t i = 0; i < 4; i++)
            for (int j = 0; j < 2; j++) cudaCheck(cudaEventDestroy(evs[i][j]));
        cudaCheck(cudaStreamDestroy(m->comm));
    }
    rope_table_free(&m->rope);
    free(m->units);
    gemm_destroy(m->gemm);
    memset(m, 0, sizeof *m);
}

#endif // S1C_KERNELS_CUH
