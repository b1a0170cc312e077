/*
 * emu_kernels_graph.cu: one decoded token as a CUDA graph (gpu_decode() of
 * common/kernels.cuh with decode_graph on) against the same step launched
 * kernel by kernel, and against s1.c's KV-cache decoder, on random models whose
 * heads take flash-decoding (head dims 64 and 128, GQA 1:1, 5:1, 8:1).
 *
 * A graph replays its launches with the arguments they had at capture, so what
 * it must get right is everything that changes per token: the token id and its
 * position (copied into device memory before each launch), the cache row the
 * new K and V go to and the keys attention reads (both from that position, on
 * the device), the number of flash-decoding splits (the grid covers the cache's
 * capacity). Both runs execute the same kernels on the same inputs, so the
 * graph's logits must equal the eager ones bit for bit, and its greedy tokens
 * too. The two runs interleave on one model (they share its activation
 * buffers), rewind, feed a chunk that grows the model's buffers (the graph
 * must then be captured again) and cross a split boundary (256 keys).
 */
#include "common/kernels.cuh"
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*), seeded inputs

// A config as s1ref_tiny_model() makes it (tests/s1_ref.c), with `positions` positions.
static Qwen2Config tiny_config(size_t V, size_t H, size_t I, size_t L, size_t NQ, size_t NKV, size_t HD, size_t positions) {
    Qwen2Config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = V; c.hidden_size = H; c.intermediate_size = I; c.num_layers = L;
    c.num_heads = NQ; c.num_kv_heads = NKV; c.head_dim = HD; c.max_position_embeddings = positions;
    c.rope_theta = 10000.0; c.rms_norm_eps = 1e-6; c.tie_word_embeddings = 0;
    c.bos_token_id = c.eos_token_id = -1;
    return c;
}

static uint32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return (uint32_t)best;
}

// One token through gpu_decode() with the graph on or off.
static const float *decode_one(GpuModel *m, GpuKVCache *kv, uint32_t id, bool graph) {
    decode_graph = graph;
    return gpu_decode(m, kv, &id, 1);
}

// steps single tokens (greedy) after a 5-token prompt, in two caches of one
// model: one eager, one through the graph. After a third of them both get a
// 9-token chunk (the model's buffers grow: a new capture), after two thirds
// both rewind by 7 tokens.
static void test_graph_vs_eager(size_t NQ, size_t NKV, size_t HD, size_t steps) {
    char name[256];
    snprintf(name, sizeof name, "gpu_decode through the graph == kernel by kernel, bit for bit, %zu tokens, NQ=%zu, NKV=%zu, HD=%zu",
             steps, NQ, NKV, HD);
    TEST_BEGIN(name);
    const size_t V = 97, max_len = steps + 20;
    Qwen2Config c = tiny_config(V, 64, 96, 2, NQ, NKV, HD, max_len);
    float *params = host_random(parameter_count(&c), 0.5f);
    GpuModel m;
    gpu_model_create(&m, &c, 1, 0, stream);
    gpu_upload_parameters(&m, params);
    GpuKVCache eager, graph;
    gpu_kvcache_create(&eager, &m, max_len);
    gpu_kvcache_create(&graph, &m, max_len);
    const uint32_t prompt[5] = {5, 17, 90, 3, 41};
    uint32_t chunk[9];
    for (size_t i = 0; i < 9; i++) chunk[i] = (uint32_t)(7 * i + 2);
    decode_graph = false;   // a prompt is eager whatever the flag: both caches take the same path
    const float *le = gpu_decode(&m, &eager, prompt, 5), *lg = gpu_decode(&m, &graph, prompt, 5);
    size_t recaptures = 0, differ = 0;
    for (size_t s = 0; s < steps && !differ; s++) {
        uint32_t te = argmax(le, V), tg = argmax(lg, V);
        CHECK(te == tg, "step %zu: eager picks %u, the graph %u", s, te, tg);
        if (s == steps / 3) {
            size_t capacity = m.capacity;
            le = gpu_decode(&m, &eager, chunk, 9);
            lg = gpu_decode(&m, &graph, chunk, 9);
            CHECK(m.capacity > capacity, "the chunk did not grow the buffers (%zu tokens)", m.capacity);
        } else if (s == 2 * steps / 3) {
            eager.len -= 7;   // as gpu_decoder_rewind(): the rows beyond are overwritten
            graph.len -= 7;
        }
        size_t captured_at = graph.step_capacity;   // the model's capacity at the last capture
        le = decode_one(&m, &eager, te, false);
        lg = decode_one(&m, &graph, tg, true);
        recaptures += graph.step_capacity != captured_at;
        differ = memcmp(le, lg, V * sizeof(float)) != 0;
        CHECK(!differ, "step %zu (position %zu): the graph's logits differ from eager decoding's", s, graph.len - 1);
    }
    CHECK(eager.step == NULL && graph.step != NULL, "the eager cache has a graph, or the graph cache none");
    CHECK(recaptures == 2, "the graph was captured %zu times, want 2 (first token, after the chunk)", recaptures);
    CHECK(eager.len == graph.len, "caches of %zu and %zu tokens", eager.len, graph.len);
    CHECK(steps < 300 || graph.len > 256, "the long run ended at %zu tokens, within one split", graph.len);
    printf("note: graph == eager over %zu tokens (positions up to %zu, %d flash-decoding splits at the end)\n", steps,
           graph.len - 1, attention_decode_splits((int)graph.len));
    decode_graph = true;
    gpu_kvcache_free(&eager);
    gpu_kvcache_free(&graph);
    gpu_model_free(&m);
    free(params);
    TEST_END();
}

// The graph against s1.c's decoder (qwen2_decode_step()) on s1ref_tiny_model()'s
// random weights, rounded to bf16 for both: a 5-token prompt, then greedy
// single tokens up to its 64 positions. The logit bound is tests/emu_kernels.cu's
// (LOGIT_ROUNDINGS = 4 bf16 roundings of the largest logit).
static void test_graph_vs_s1(size_t NQ, size_t NKV, size_t HD) {
    char name[256];
    snprintf(name, sizeof name, "gpu_decode through the graph vs s1.c's decoder, 64 positions, NQ=%zu, NKV=%zu, HD=%zu (bound 4u max|logit|)",
             NQ, NKV, HD);
    TEST_BEGIN(name);
    const size_t V = 97, positions = 64;   // s1ref_tiny_model()'s
    void *ref = s1ref_tiny_model(V, 64, 96, 2, NQ, NKV, HD, 0, 99);
    float *params = s1ref_model_params(ref);
    for (size_t i = 0; i < s1ref_model_num_parameters(ref); i++) params[i] = __bfloat162float(__float2bfloat16(params[i]));
    Qwen2Config c = tiny_config(V, 64, 96, 2, NQ, NKV, HD, positions);
    GpuModel m;
    gpu_model_create(&m, &c, 1, 0, stream);
    gpu_upload_parameters(&m, params);
    GpuKVCache kv;
    gpu_kvcache_create(&kv, &m, positions);
    void *ref_kv = s1ref_kvcache_create(ref, positions);
    const uint32_t prompt[5] = {5, 17, 90, 3, 41};
    decode_graph = true;
    const float *got = gpu_decode(&m, &kv, prompt, 5), *want = NULL;
    for (size_t i = 0; i < 5; i++) want = s1ref_decode_step(ref, ref_kv, prompt[i]);
    float worst = 0.0f;   // the largest error as a fraction of its bound
    while (kv.len < positions) {
        float bound = 4.0f * (1.0f / 256.0f) * max_abs(want, V);
        for (size_t i = 0; i < V; i++) {
            float err = fabsf(got[i] - want[i]);
            worst = fmaxf(worst, err / bound);
            CHECK(err <= bound, "position %zu, logit %zu: got %.7g, want %.7g (bound %.3g)", kv.len - 1, i, got[i], want[i], bound);
            if (err > bound) break;
        }
        uint32_t next = argmax(got, V);
        got = gpu_decode(&m, &kv, &next, 1);
        want = s1ref_decode_step(ref, ref_kv, next);
    }
    CHECK(kv.step != NULL, "no graph was captured");
    printf("note: graph vs s1.c: logit errors at most %.2f of the bound\n", worst);
    gpu_kvcache_free(&kv);
    s1ref_kvcache_free(ref_kv);
    gpu_model_free(&m);
    s1ref_model_free(ref);
    TEST_END();
}

int main(void) {
    kt_seed(2024);
    test_graph_vs_eager(8, 1, 64, 300);    // GQA 8:1, past one split of 256 keys
    test_graph_vs_eager(5, 1, 128, 40);    // GQA 5:1 at HD 128
    test_graph_vs_eager(2, 2, 64, 40);     // no GQA
    test_graph_vs_s1(8, 1, 64);
    test_graph_vs_s1(10, 2, 128);
    return test_summary();
}
