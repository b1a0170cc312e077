/*
 * emu_kernels_budget.cu: budget forcing on the GPU decoder (sample.cu's
 * gpu_decoder_*() behind common/budget.h's Decoder), checked in lockstep
 * against s1.c's KV-cache decoder on the HF fixture models.
 *
 * budget.h itself is tested against hand-derived harness traces
 * (tests/test_budget.c); what is new here is the GPU side of the interface:
 * feeding a prompt in one pass and then single tokens, banning stop ids for
 * min_tokens, and rewinding the cache when the thinking is cut to its budget.
 * The controller drives a "lockstep" decoder that forwards every call to both
 * the GPU decoder and s1.c's, and at every next() checks that
 *   - both saw the same context (same length: feeds and rewinds agree),
 *   - the GPU's logits equal s1.c's within 4u max|logit| (the bound derived in
 *     tests/emu_kernels.cu), so a stale cache row or a wrong position shows,
 *   - the GPU's choice is not banned and is an argmax of s1.c's logits up to
 *     twice that bound (random tiny models have near-ties, where either
 *     decoder may pick its own winner; the run follows the GPU's choice).
 * The delimiter ids are arbitrary ids of the tiny vocabularies, chosen among
 * what these models generate so that every path runs: stops ignored with
 * "Wait", the cut to the budget with its rewind and the forced exit, the
 * README variant; the test checks that they did run. test_rewind() checks the
 * rewind rejection sampling makes, to the prompt and straight into a draw.
 */
#define SAMPLE_NO_MAIN
#include "../sample.cu"
#include "tests/kernel_test.h"   // the s1.c oracle (s1ref_*)

// ----------------------------------------------------------------------------
// s1.c's decoder and the lockstep pair

typedef struct {
    void *model, *kv;
    const float *logits;
} CpuDecoder;

typedef struct {
    Decoder gpu;
    GpuDecoder *g;
    CpuDecoder cpu;
    uint32_t n_valid;
    float bound;          // on |gpu logit - s1.c logit|
    float worst_logit;    // the largest difference seen
    int steps;
} Lockstep;

static void lock_feed(void *ctx, const uint32_t *ids, size_t n) {
    Lockstep *L = (Lockstep *)ctx;
    L->gpu.feed(L->gpu.ctx, ids, n);
    for (size_t i = 0; i < n; i++) L->cpu.logits = s1ref_decode_step(L->cpu.model, L->cpu.kv, ids[i]);
}

static uint32_t lock_next(void *ctx, const uint32_t *banned, size_t n_banned) {
    Lockstep *L = (Lockstep *)ctx;
    uint32_t id = L->gpu.next(L->gpu.ctx, banned, n_banned);
    const float *g = L->g->logits, *c = L->cpu.logits;
    CHECK(c != NULL, "s1.c's decoder has no logits at step %d (fed nothing since a rewind)", L->steps);
    if (c == NULL) return id;
    CHECK(L->gpu.length(L->gpu.ctx) == s1ref_kvcache_len(L->cpu.kv), "step %d: contexts of %zu and %zu tokens", L->steps,
          L->gpu.length(L->gpu.ctx), s1ref_kvcache_len(L->cpu.kv));
    for (uint32_t i = 0; i < L->n_valid; i++) {
        float err = fabsf(g[i] - c[i]);
        L->worst_logit = fmaxf(L->worst_logit, err);
        if (err > L->bound) { CHECK(0, "step %d, logit %u: gpu %.6g, s1.c %.6g", L->steps, i, g[i], c[i]); break; }
    }
    uint32_t best = sample_argmax(c, L->n_valid, banned, n_banned);
    CHECK(!sampler_is_banned(id, banned, n_banned), "step %d: the GPU chose banned id %u", L->steps, id);
    CHECK(c[id] >= c[best] - 2.0f * L->bound, "step %d: the GPU chose %u (s1.c logit %.6g), s1.c's best is %u (%.6g)",
          L->steps, id, c[id], best, c[best]);
    L->steps++;
    return id;
}

static size_t lock_length(void *ctx) { return ((Lockstep *)ctx)->gpu.length(((Lockstep *)ctx)->gpu.ctx); }

static void lock_rewind(void *ctx, size_t len) {
    Lockstep *L = (Lockstep *)ctx;
    L->gpu.rewind(L->gpu.ctx, len);
    s1ref_kvcache_truncate(L->cpu.kv, len);
    L->cpu.logits = NULL;
}

// ----------------------------------------------------------------------------

typedef struct { long budget; int n_ignore; int readme; } Case;

static int waits, forced, rewound, answers_stopped;   // runs that took each path, over all tests

static const uint32_t wait_ids[] = {77, 78};
static const uint32_t end_ids[] = {299, 298};
static const uint32_t end_max_ids[] = {299, 298, 10, 11, 12};
static const uint32_t newline_ids[] = {10};
static const uint32_t prompt[] = {5, 17, 250, 3, 41, 9};

// think_stop: two ids the model generates after the prompt (so rounds end on a stop)
static void test_budget(const char *dir, const uint32_t think_stop[2]) {
    const Case cases[] = {{6, 2, 0}, {3, -1, 0}, {4, 1, 0}, {12, 3, 0}, {1, 0, 0}, {2, 2, 0}, {8, 2, 1}, {5, 0, 1}};
    const size_t n_cases = sizeof cases / sizeof cases[0], context = 64;
    char name[256];
    snprintf(name, sizeof name, "budget_run on the GPU decoder in lockstep with s1.c's, %zu configs, %s", n_cases, dir);
    TEST_BEGIN(name);
    GpuModel m;
    gpu_model_load(&m, dir, 1, stream);
    void *ref_model = s1ref_model_load(dir, 1);
    uint32_t n_valid = (uint32_t)s1ref_model_vocab(ref_model);
    float worst = 0.0f;
    for (size_t k = 0; k < n_cases; k++) {
        BudgetConfig c;
        memset(&c, 0, sizeof c);
        c.max_thinking = cases[k].budget;
        c.n_ignore = cases[k].n_ignore;
        c.readme_variant = cases[k].readme;
        c.ignore_str = IdSpan{wait_ids, 2};
        c.think_stop = IdSpan{think_stop, 2};
        c.thinking_end = IdSpan{end_ids, 2};
        c.thinking_end_max = IdSpan{end_max_ids, 5};
        c.newline = IdSpan{newline_ids, 1};
        c.answer_stop = IdSpan{think_stop, 1};
        c.max_answer = 5;
        c.context_limit = context;

        GpuKVCache kv;
        gpu_kvcache_create(&kv, &m, context);
        Sampler greedy;
        sampler_init(&greedy, n_valid, 0.0f, 1.0f, 1);
        GpuDecoder g = {&m, &kv, NULL, &greedy, {NULL, 0, 0}};
        Lockstep L;
        memset(&L, 0, sizeof L);
        L.gpu = gpu_decoder(&g);
        L.g = &g;
        L.cpu = CpuDecoder{ref_model, s1ref_kvcache_create(ref_model, context), NULL};
        L.n_valid = n_valid;
        Decoder d = {&L, lock_feed, lock_next, lock_length, lock_rewind};
        d.feed(d.ctx, prompt, sizeof prompt / sizeof prompt[0]);
        for (uint32_t i = 0; i < n_valid; i++) L.bound = fmaxf(L.bound, 4.0f * (1.0f / 256.0f) * fabsf(L.cpu.logits[i]));
        BudgetResult r;
        budget_run(&d, &c, &r);
        printf("note: %s B=%ld ignore=%d%s: %d steps, %d rounds, %d waits, thinking %zu of %zu generated, %s%s, "
               "answer %zu (%s); logits within %.3g (bound %.3g)\n", dir, c.max_thinking, c.n_ignore,
               c.readme_variant ? " readme" : "", L.steps, r.rounds, r.waits, r.thinking.len, r.generated,
               finish_reason_name(r.think_finish), r.forced_exit ? " forced exit" : "", r.answer.len,
               finish_reason_name(r.answer_finish), L.worst_logit, L.bound);
        waits += r.waits > 0;
        forced += r.forced_exit;
        rewound += !c.readme_variant && r.generated > r.thinking.len + (r.think_finish == FINISH_STOP);
        answers_stopped += r.answer_finish == FINISH_STOP;
        worst = fmaxf(worst, L.worst_logit);
        budget_result_free(&r);
        idlist_free(&g.ids);
        gpu_kvcache_free(&kv);
        sampler_free(&greedy);
        s1ref_kvcache_free(L.cpu.kv);
    }
    printf("note: %s: GPU logits within %.3g of s1.c's at every step\n", dir, worst);
    gpu_model_free(&m);
    s1ref_model_free(ref_model);
    TEST_END();
}

// A rewind leaves the logits after the new last id, as s1.c's decoder does
// (rejection sampling draws a new thinking right after the prompt):
// gpu_decoder_rewind() feeds that id again. After a prompt and three more ids,
// a rewind to the prompt must give s1.c's logits after the prompt, within the
// bound above (the prompt's last row is now decoded alone, not in the prompt's pass).
static void test_rewind(const char *dir) {
    char name[256];
    snprintf(name, sizeof name, "gpu_decoder_rewind() to the prompt: s1.c's logits after the prompt, %s", dir);
    TEST_BEGIN(name);
    const size_t n = sizeof prompt / sizeof prompt[0], context = 16;
    GpuModel m;
    gpu_model_load(&m, dir, 1, stream);
    void *ref_model = s1ref_model_load(dir, 1), *ref_kv = s1ref_kvcache_create(ref_model, context);
    size_t V = s1ref_model_vocab(ref_model);
    const float *ref = NULL;
    for (size_t i = 0; i < n; i++) ref = s1ref_decode_step(ref_model, ref_kv, prompt[i]);
    float bound = 4.0f * (1.0f / 256.0f) * max_abs(ref, V), worst = 0.0f;
    GpuKVCache kv;
    gpu_kvcache_create(&kv, &m, context);
    Sampler greedy;
    sampler_init(&greedy, (uint32_t)V, 0.0f, 1.0f, 1);
    GpuDecoder g = {&m, &kv, NULL, &greedy, {NULL, 0, 0}};
    Decoder d = gpu_decoder(&g);
    const uint32_t more[] = {7, 8, 9};
    d.feed(d.ctx, prompt, n);
    d.feed(d.ctx, more, 1);
    d.feed(d.ctx, more + 1, 2);
    d.rewind(d.ctx, n);
    CHECK(d.length(d.ctx) == n && g.ids.len == n, "rewound to %zu ids, %zu in the list; want %zu", d.length(d.ctx), g.ids.len, n);
    CHECK(g.logits != NULL, "no logits after the rewind");
    for (size_t i = 0; g.logits != NULL && i < V; i++) {
        float err = fabsf(g.logits[i] - ref[i]);
        worst = fmaxf(worst, err);
        if (err > bound) { CHECK(0, "logit %zu: gpu %.6g, s1.c %.6g (bound %.3g)", i, g.logits[i], ref[i], bound); break; }
    }
    printf("note: %s: logits after a rewind to the prompt within %.3g of s1.c's (bound %.3g)\n", dir, worst, bound);
    idlist_free(&g.ids);
    sampler_free(&greedy);
    gpu_kvcache_free(&kv);
    gpu_model_free(&m);
    s1ref_kvcache_free(ref_kv);
    s1ref_model_free(ref_model);
    TEST_END();
}

int main(void) {
    const uint32_t tied_stops[2] = {9, 78}, gqa_stops[2] = {2, 264};
    test_budget("tests/fixtures/qwen-tiny-tied", tied_stops);
    test_budget("tests/fixtures/qwen-tiny-gqa", gqa_stops);
    test_rewind("tests/fixtures/qwen-tiny-tied");
    test_rewind("tests/fixtures/qwen-tiny-gqa");
    TEST_BEGIN("the lockstep runs took every path: waits, cuts to the budget (rewinds), forced exits, stopped answers");
    CHECK(waits > 0 && forced > 0 && rewound > 0 && answers_stopped > 0,
          "paths not exercised: %d runs with waits, %d forced exits, %d rewinds, %d answers ended by a stop",
          waits, forced, rewound, answers_stopped);
    TEST_END();
    return test_summary();
}
