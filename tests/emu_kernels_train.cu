/*
 * emu_kernels_train.cu: the GPU training step of the whole model against s1.c,
 * on the CPU through the CUDA emulator (tests/run.sh runs it in the forward,
 * reverse and random thread schedules): gpu_forward_backward()'s gradients on
 * both HF fixture models against s1.c's qwen2_backward() (with the weights
 * rounded to bf16, as the GPU holds them), with sequences of several lengths
 * in one step; micro-batches; activation checkpointing (bit-identical
 * gradients); determinism; a model of head dim 64, whose attention runs on the
 * tensor cores (test_tensor_core_model()); and gpu_update() against s1.c's
 * qwen2_update().
 *
 * The bound on the gradients. The GPU and the oracle run the same arithmetic
 * on the same bf16 weights; they differ by the GPU's bf16 roundings of
 * activations and activation gradients (each a relative error <= u = 2^-8)
 * and by fp32 summation order (negligible beside u). A parameter's gradient is
 * a product of the Jacobians along the path from the loss to it, each factor
 * evaluated at rounded values, so to first order its relative error is the sum
 * of the relative errors of the roundings on that path. Per layer the path
 * crosses ROUNDINGS_PER_LAYER of them: forward 10 (RMSNorm 2, q/k/v 1, RoPE 1,
 * attention 1, residual 1, RMSNorm 2, gate/up 1, SwiGLU 1, counted once each)
 * plus backward 8 (the residual gradient's bf16 copy 2, dmlp 1, dgate/dup 1,
 * datt 1, dq/dk/dv 1, RoPE 1, the LM head's dlogits 1 shared), and the head
 * adds 4 (final RMSNorm 2, dlogits 1, its dx 1). The roundings are independent,
 * so over a tensor's many elements the errors add in quadrature: a normwise
 * relative error of about sqrt(R) u for R roundings on the longest path. We
 * allow GRAD_SAFETY = 2 times that for the Jacobians' amplification (these
 * random tiny models are well conditioned: their layers are near identity):
 *
 *     ||g_gpu - g_s1||_2 <= 2 sqrt(18 L + 4) u ||g_s1||_2    per tensor
 *
 * (L = 2: 5.0%; L = 3: 5.9%). A dropped GQA group sum, an off-by-one causal
 * mask, a missing scale or a wrong sign each move a tensor by tens of percent.
 * The loss has the forward pass's bound (tests/emu_kernels.cu): 2 * 4u * max|logit|.
 */
#include "common/kernels.cuh"
#include <thread>
#include <vector>
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*), max_abs

static const double U = 1.0 / 256.0;   // 2^-8: one bf16 rounding, relative
#define ROUNDINGS_PER_LAYER 18
#define HEAD_ROUNDINGS 4
#define GRAD_SAFETY 2.0
#define LOGIT_ROUNDINGS 4.0f

static double grad_bound(size_t L) { return GRAD_SAFETY * sqrt((double)(ROUNDINGS_PER_LAYER * L + HEAD_ROUNDINGS)) * U; }

// The gradients in s1.c's layout (the GPU keeps them by units; W > 1: rank 0's copy, the others get NULL back).
static float *device_grads(GpuModel *m) {
    float *g = m->rank == 0 ? (float *)mallocCheck(m->num_parameters * sizeof(float)) : NULL;
    gpu_gather_to_host(m, m->grads_memory, g);
    return g;
}

// Per tensor: ||got - ref|| <= bound ||ref||; prints the worst ratio.
static void check_grads(const char *what, const Qwen2Config *c, const float *got, const float *ref, double bound) {
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(c, &count);
    double worst = 0.0;
    const char *worst_name = "";
    for (size_t i = 0; i < count; i++) {
        const TensorInfo *t = &tensors[i];
        double err = 0.0, norm = 0.0;
        for (size_t j = 0; j < t->numel; j++) {
            double d = (double)got[t->offset + j] - (double)ref[t->offset + j];
            err += d * d;
            norm += (double)ref[t->offset + j] * ref[t->offset + j];
        }
        err = sqrt(err);
        norm = sqrt(norm);
        double rel = norm > 0 ? err / norm : err;
        CHECK(rel <= bound, "%s: %s: ||gpu - s1|| / ||s1|| = %.3g > bound %.3g", what, t->name, rel, bound);
        if (rel > worst) { worst = rel; worst_name = t->name; }
    }
    printf("note: %s: worst tensor %s, ||gpu - s1||/||s1|| = %.3g (bound %.3g, %.2f of it)\n", what, worst_name, worst, bound, worst / bound);
    free(tensors);
}

// The fixture's batch (4 sequences of lengths 7, 13, 20, 5 / 9, 24, 16, 4: none a
// multiple of the attention tiles) in one micro-batch and in two of two
// sequences (grad_scale 1/2 each, as the trainer weighs them); recompute on and
// off; twice for determinism.
static void test_fixture_gradients(const char *dir) {
    char name[256];
    snprintf(name, sizeof name, "gpu_forward_backward gradients == s1.c qwen2_backward per tensor (bf16 weights), %s", dir);
    TEST_BEGIN(name);
    uint32_t *ids;
    uint8_t *mask;
    size_t *offsets;
    float hf_loss;
    size_t S = s1ref_fixture_batch(dir, &ids, &mask, &offsets, &hf_loss), N = offsets[S];
    void *ref = s1ref_model_load(dir, 1);
    s1ref_model_zero_grad(ref);
    float ref_loss = s1ref_model_loss(ref, ids, mask, offsets, S);
    float logit_scale = max_abs(s1ref_model_logits(ref), N * s1ref_model_vocab(ref));
    s1ref_model_backward(ref, 1.0f);
    const float *ref_grads = s1ref_model_grads_memory(ref);

    GpuModel m;
    gpu_model_open(&m, dir, 16, 1, stream);   // 16-row LM-head chunks: partial chunks, and chunks without targets
    GpuTrainActs acts;
    memset(&acts, 0, sizeof acts);
    float loss = gpu_forward_backward(&m, &acts, ids, mask, offsets, S, 1.0f, 0);
    float *g_keep = device_grads(&m);
    float loss_bound = 2.0f * LOGIT_ROUNDINGS * (float)U * logit_scale;
    CHECK(fabsf(loss - ref_loss) <= loss_bound, "loss %.7f vs s1.c %.7f (bound %.3g)", loss, ref_loss, loss_bound);
    printf("note: %s: loss gpu %.7f, s1.c %.7f, |diff| %.3g (bound %.3g)\n", dir, loss, ref_loss, fabsf(loss - ref_loss), loss_bound);
    check_grads(dir, &m.config, g_keep, ref_grads, grad_bound(m.config.num_layers));

    // activation checkpointing: the same gradients to the bit
    cudaCheck(cudaMemsetAsync(m.grads_memory, 0, m.shard_numel * sizeof(float), stream));
    float loss_rec = gpu_forward_backward(&m, &acts, ids, mask, offsets, S, 1.0f, 1);
    float *g_rec = device_grads(&m);
    CHECK(loss_rec == loss && memcmp(g_rec, g_keep, m.num_parameters * sizeof(float)) == 0,
          "--recompute changes the gradients (loss %.9g vs %.9g)", loss_rec, loss);
    // determinism: the same call again, the same bits
    cudaCheck(cudaMemsetAsync(m.grads_memory, 0, m.shard_numel * sizeof(float), stream));
    gpu_forward_backward(&m, &acts, ids, mask, offsets, S, 1.0f, 0);
    float *g_again = device_grads(&m);
    CHECK(memcmp(g_again, g_keep, m.num_parameters * sizeof(float)) == 0, "a second run gives other gradients");

    // two micro-batches of two sequences, each weighted 2/4, accumulate into the step's gradient
    cudaCheck(cudaMemsetAsync(m.grads_memory, 0, m.shard_numel * sizeof(float), stream));
    float loss_micro = 0.0f;
    for (size_t i = 0; i < S; i += 2) {
        size_t offs[3] = {0, offsets[i + 1] - offsets[i], offsets[i + 2] - offsets[i]};
        loss_micro += 0.5f * gpu_forward_backward(&m, &acts, ids + offsets[i], mask + offsets[i], offs, 2, 0.5f, 0);
    }
    float *g_micro = device_grads(&m);
    CHECK(fabsf(loss_micro - ref_loss) <= loss_bound, "micro-batched loss %.7f vs s1.c %.7f", loss_micro, ref_loss);
    char what[300];
    snprintf(what, sizeof what, "%s, 2 micro-batches", dir);
    check_grads(what, &m.config, g_micro, ref_grads, grad_bound(m.config.num_layers));
    free(g_keep); free(g_rec); free(g_again); free(g_micro);
    gpu_train_acts_free(&acts);
    gpu_model_free(&m);
    s1ref_model_free(ref);
    free(ids); free(mask); free(offsets);
    TEST_END();
}

// Longer sequences than the fixture's: 77 tokens (2.4 key tiles, 4.8 query
// tiles), a 1-token sequence (nothing to score) and 40 tokens, random ids and
// masks with gaps, on the GQA 4:1 fixture model.
static void test_long_sequences(const char *dir) {
    char name[256];
    snprintf(name, sizeof name, "gpu_forward_backward gradients == s1.c with sequences of 77, 1 and 40 tokens, %s", dir);
    TEST_BEGIN(name);
    const size_t S = 3;
    size_t offsets[S + 1] = {0, 77, 78, 118}, N = offsets[S];
    uint32_t ids[118];
    uint8_t mask[118];
    uint32_t state = 99;
    for (size_t n = 0; n < N; n++) {
        state = state * 1664525u + 1013904223u;
        ids[n] = (state >> 8) % 300;
        mask[n] = (state >> 4) % 5 != 0;
    }
    void *ref = s1ref_model_load(dir, 1);
    s1ref_model_zero_grad(ref);
    float ref_loss = s1ref_model_loss(ref, ids, mask, offsets, S);
    float loss_bound = 2.0f * LOGIT_ROUNDINGS * (float)U * max_abs(s1ref_model_logits(ref), N * s1ref_model_vocab(ref));
    s1ref_model_backward(ref, 1.0f);
    GpuModel m;
    gpu_model_open(&m, dir, 64, 1, stream);
    GpuTrainActs acts;
    memset(&acts, 0, sizeof acts);
    float loss = gpu_forward_backward(&m, &acts, ids, mask, offsets, S, 1.0f, 0);
    float *g = device_grads(&m);
    printf("note: %s, T = 77/1/40: loss gpu %.7f, s1.c %.7f, |diff| %.3g (bound %.3g)\n", dir, loss, ref_loss, fabsf(loss - ref_loss), loss_bound);
    CHECK(fabsf(loss - ref_loss) <= loss_bound, "loss %.7f vs s1.c %.7f (bound %.3g)", loss, ref_loss, loss_bound);
    char what[300];
    snprintf(what, sizeof what, "%s, T = 77/1/40", dir);
    check_grads(what, &m.config, g, s1ref_model_grads_memory(ref), grad_bound(m.config.num_layers));
    free(g);
    gpu_train_acts_free(&acts);
    gpu_model_free(&m);
    s1ref_model_free(ref);
    TEST_END();
}


// The fixtures' head dims (16, 12) take the CUDA-core attention; at head dim 64 the
// programs run it on tensor cores (attention_tensor_cores, the default). A random
// Qwen2 with 2 query heads of 64 and 1 KV head, weights N(0, 0.1) so that the scores
// are far from uniform, written as a checkpoint and trained on sequences of 77 and
// 40 tokens. Tensor cores add two bf16 roundings per layer to a gradient's path (P
// before P V and dV, dS before dK and dQ): the bound counts ROUNDINGS_PER_LAYER + 2.
// The CUDA-core kernels, on the same model, keep the fixtures' bound.
static void test_tensor_core_model(void) {
    TEST_BEGIN("gpu_forward_backward gradients == s1.c at head dim 64: attention on tensor cores, and on CUDA cores");
    Qwen2Config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 300; c.hidden_size = 128; c.intermediate_size = 192; c.num_layers = 2;
    c.num_heads = 2; c.num_kv_heads = 1; c.head_dim = 64; c.max_position_embeddings = 256;
    c.rope_theta = 10000.0; c.rms_norm_eps = 1e-6; c.tie_word_embeddings = 0; c.bos_token_id = c.eos_token_id = -1;
    size_t count, n = parameter_count(&c);
    float *params = (float *)mallocCheck(n * sizeof(float));
    TensorInfo *tensors = qwen2_tensor_list(&c, &count);
    uint64_t state = 2024;
    for (size_t i = 0; i < count; i++) {
        int kind = parameter_info[tensors[i].param].kind;
        for (size_t j = 0; j < tensors[i].numel; j++)
            params[tensors[i].offset + j] = kind == KIND_NORM ? 1.0f : (kind == KIND_WEIGHT ? 0.1f : 0.05f) * rng_normal(&state);
    }
    free(tensors);
    char tmp[] = "/tmp/s1c-tc-XXXXXX", dir[64];
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp failed");
    snprintf(dir, sizeof dir, "%s/model", tmp);
    qwen2_checkpoint_write(dir, &c, params, 0, 0);

    const size_t S = 2;
    size_t offsets[S + 1] = {0, 77, 117}, N = offsets[S];
    uint32_t ids[117];
    uint8_t mask[117];
    uint32_t lcg = 7;
    for (size_t i = 0; i < N; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        ids[i] = (lcg >> 8) % 300;
        mask[i] = i != offsets[0] && i != offsets[1] && (lcg >> 4) % 4 != 0;
    }
    void *ref = s1ref_model_load(dir, 1);
    s1ref_model_zero_grad(ref);
    float ref_loss = s1ref_model_loss(ref, ids, mask, offsets, S);
    float loss_bound = 2.0f * LOGIT_ROUNDINGS * (float)U * max_abs(s1ref_model_logits(ref), N * s1ref_model_vocab(ref));
    s1ref_model_backward(ref, 1.0f);
    GpuModel m;
    gpu_model_open(&m, dir, 64, 1, stream);
    GpuTrainActs acts;
    memset(&acts, 0, sizeof acts);
    for (int tc = 1; tc >= 0; tc--) {
        attention_tensor_cores = tc != 0;
        cudaCheck(cudaMemsetAsync(m.grads_memory, 0, m.shard_numel * sizeof(float), stream));
        float loss = gpu_forward_backward(&m, &acts, ids, mask, offsets, S, 1.0f, 0);
        float *g = device_grads(&m);
        printf("note: head dim 64 on %s: loss gpu %.7f, s1.c %.7f, |diff| %.3g (bound %.3g)\n", tc ? "tensor cores" : "CUDA cores",
               loss, ref_loss, fabsf(loss - ref_loss), loss_bound);
        CHECK(fabsf(loss - ref_loss) <= loss_bound, "loss %.7f vs s1.c %.7f (bound %.3g)", loss, ref_loss, loss_bound);
        double bound = GRAD_SAFETY * sqrt((double)((ROUNDINGS_PER_LAYER + (tc ? 2 : 0)) * c.num_layers + HEAD_ROUNDINGS)) * U;
        check_grads(tc ? "head dim 64, tensor cores" : "head dim 64, CUDA cores", &m.config, g, s1ref_model_grads_memory(ref), bound);
        free(g);
    }
    attention_tensor_cores = true;
    gpu_train_acts_free(&acts);
    gpu_model_free(&m);
    s1ref_model_free(ref);
    free(params);
    char path[96];
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) { snprintf(path, sizeof path, "%s/%s", dir, files[i]); unlink(path); }
    CHECK(rmdir(dir) == 0 && rmdir(tmp) == 0, "the checkpoint %s holds other files than its two", dir);
    TEST_END();
}

// ----------------------------------------------------------------------------
// ZeRO-3 over W ranks (ranks as threads of this process, over the emulator's NCCL)
//
// With the fixture's 4 sequences, one per micro-batch, rank r trains
// sequences r, r + W, ... (sft's rule: sequence j to rank j mod W), one per
// round, and each round's unit gradients are reduce-scattered to their owners.
// Each rank computes each of its sequences' gradient g_s exactly as one GPU
// does (the same kernels on the same bf16 weights, into zeroed buffers), so the
// only differences from one GPU, whose gradient is g = sum_s g_s accumulated
// in sequence order, are:
//   - the reduce dtype: bf16 rounds each rank's g_s once before the sum, and the
//     sum once after it (a bf16 collective's result is bf16), so
//     |err| <= u sum_s |g_s| + u |sum of a round| <= 2u sum_s |g_s|;
//   - the order of the fp32 sums: at most 2 S 2^-24 sum_s |g_s| for S sequences
//     (Higham's gamma_S, with room for the kernels' own accumulate-into);
//   - the embedding rows, which one GPU accumulates position by position across
//     sequences: their reassociation is bounded by the same gamma over the
//     positions' terms, which we cover with 2^-20 max_j sum_s |g_s| absolute.
// So per element: |g_W - g| <= (2u [bf16 reduce] + 2 S 2^-24) sum_s |g_s| + 2^-20 max sum_s |g_s|.

struct ShardRun {
    const char *dir;
    int rank, world, reduce_f32;
    ncclUniqueId id;
    const uint32_t *ids;
    const uint8_t *mask;
    const size_t *offsets;
    size_t S;
    float *grads;     // rank 0: the gathered gradients (s1.c's layout)
    double loss;      // the ranks' summed loss
};

static void shard_rank(ShardRun *run) {
    ncclComm_t comm;
    ncclCheck(ncclCommInitRank(&comm, run->world, run->id, run->rank));
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", run->dir);
    Qwen2Config c;
    config_read(&c, path);
    cudaStream_t rank_stream;   // each rank's own, on its own device
    cudaCheck(cudaStreamCreateWithFlags(&rank_stream, cudaStreamNonBlocking));
    GpuModel m;
    gpu_model_create_rank(&m, &c, 16, 1, run->rank, run->world, comm, run->reduce_f32, 0, rank_stream);
    gpu_model_read(&m, run->dir);
    GpuTrainActs acts;
    memset(&acts, 0, sizeof acts);
    double loss = 0.0;
    for (size_t seq = (size_t)run->rank; seq < run->S; seq += (size_t)run->world) {
        size_t offs[2] = {0, run->offsets[seq + 1] - run->offsets[seq]};
        loss += gpu_forward_backward(&m, &acts, run->ids + run->offsets[seq], run->mask + run->offsets[seq], offs, 1,
                                     1.0f / (float)run->S, 0) / (double)run->S;
    }
    run->loss = gpu_sum_over_ranks(&m, loss);
    run->grads = device_grads(&m);
    gpu_train_acts_free(&acts);
    gpu_model_free(&m);
    cudaCheck(cudaStreamDestroy(rank_stream));
    ncclCheck(ncclCommDestroy(comm));
}

static void test_sharded_gradients(const char *dir, int W, int reduce_f32) {
    char name[256];
    snprintf(name, sizeof name, "ZeRO-3 over %d ranks (%s reduce-scatter) == one GPU, per element within the reduction's bound, %s",
             W, reduce_f32 ? "fp32" : "bf16", dir);
    TEST_BEGIN(name);
    uint32_t *ids;
    uint8_t *mask;
    size_t *offsets;
    float hf_loss;
    size_t S = s1ref_fixture_batch(dir, &ids, &mask, &offsets, &hf_loss);
    // one GPU: the step's gradient g (the sequences in order), and each sequence's g_s for the bound
    GpuModel m;
    gpu_model_open(&m, dir, 16, 1, stream);
    GpuTrainActs acts;
    memset(&acts, 0, sizeof acts);
    size_t P = m.num_parameters;
    double *abs_sum = (double *)callocCheck(P, sizeof(double)), one_loss = 0.0;
    for (size_t seq = 0; seq < S; seq++) {
        cudaCheck(cudaMemsetAsync(m.grads_memory, 0, m.shard_numel * sizeof(float), stream));
        size_t offs[2] = {0, offsets[seq + 1] - offsets[seq]};
        one_loss += gpu_forward_backward(&m, &acts, ids + offsets[seq], mask + offsets[seq], offs, 1, 1.0f / (float)S, 0) / (double)S;
        float *gs = device_grads(&m);
        for (size_t j = 0; j < P; j++) abs_sum[j] += fabs((double)gs[j]);
        free(gs);
    }
    cudaCheck(cudaMemsetAsync(m.grads_memory, 0, m.shard_numel * sizeof(float), stream));
    for (size_t seq = 0; seq < S; seq++) {
        size_t offs[2] = {0, offsets[seq + 1] - offsets[seq]};
        gpu_forward_backward(&m, &acts, ids + offsets[seq], mask + offsets[seq], offs, 1, 1.0f / (float)S, 0);
    }
    float *g = device_grads(&m);
    // W ranks
    ncclUniqueId id;
    ncclCheck(ncclGetUniqueId(&id));
    std::vector<ShardRun> runs((size_t)W);
    std::vector<std::thread> threads;
    for (int r = 0; r < W; r++) {
        runs[r] = ShardRun{dir, r, W, reduce_f32, id, ids, mask, offsets, S, NULL, 0.0};
        threads.emplace_back(shard_rank, &runs[r]);
    }
    for (std::thread &t : threads) t.join();
    const float *gw = runs[0].grads;
    double max_abs_sum = 0.0, worst = 0.0;
    for (size_t j = 0; j < P; j++) max_abs_sum = abs_sum[j] > max_abs_sum ? abs_sum[j] : max_abs_sum;
    double rel = (reduce_f32 ? 0.0 : 2.0 * U) + 2.0 * (double)S * ldexp(1.0, -24), floor_abs = ldexp(max_abs_sum, -20);
    size_t bad = 0;
    for (size_t j = 0; j < P; j++) {
        double err = fabs((double)gw[j] - (double)g[j]), bound = rel * abs_sum[j] + floor_abs;
        if (err > bound && bad++ < 5) CHECK(0, "element %zu: %d ranks %.9g, one GPU %.9g, |diff| %.3g > bound %.3g", j, W, gw[j], g[j], err, bound);
        worst = bound > 0 && err / bound > worst ? err / bound : worst;
    }
    CHECK(bad == 0, "%zu elements outside the bound", bad);
    CHECK(fabs(runs[0].loss - one_loss) <= 2.0 * (double)S * ldexp(fabs(one_loss), -24), "loss %.9g over %d ranks, %.9g on one GPU", runs[0].loss, W, one_loss);
    printf("note: %s, %d ranks, %s reduce: worst element at %.2f of its bound; loss %.7f vs %.7f\n", dir, W,
           reduce_f32 ? "fp32" : "bf16", worst, runs[0].loss, one_loss);
    for (int r = 0; r < W; r++) free(runs[r].grads);
    free(g); free(abs_sum);
    gpu_train_acts_free(&acts);
    gpu_model_free(&m);
    free(ids); free(mask); free(offsets);
    TEST_END();
}

int main(void) {
    test_fixture_gradients("tests/fixtures/qwen-tiny-tied");
    test_fixture_gradients("tests/fixtures/qwen-tiny-gqa");
    test_long_sequences("tests/fixtures/qwen-tiny-gqa");
    test_tensor_core_model();
    test_sharded_gradients("tests/fixtures/qwen-tiny-gqa", 2, 0);
    test_sharded_gradients("tests/fixtures/qwen-tiny-gqa", 4, 0);
    test_sharded_gradients("tests/fixtures/qwen-tiny-gqa", 4, 1);
    test_sharded_gradients("tests/fixtures/qwen-tiny-tied", 2, 0);
    return test_summary();
}
