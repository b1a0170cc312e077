/*
 * sample.cu: s1's sampler on the GPU. Decoding of Qwen2.5 with a KV cache and
 * budget forcing, with exactly the command line and the JSONL output of the
 * CPU reference, ./s1 sample.
 *
 *   make cuda   -> build/cuda/sample (nvcc, sm_90)
 *   make emu    -> build/emu/sample  (the same source on the CPU, through common/cuemu.h)
 *
 *   # s1's evaluation: thinking cut at 4000 tokens, "Wait" twice; one JSON line per prompt
 *   build/cuda/sample --model s1-32B --tokenizer tokenizers/qwen2.5 --prompts aime24.jsonl \
 *                     --max-thinking 4000 --wait 2 --out aime24.jsonl
 *   # the same on the CPU reference: the same flags, the same fields
 *   ./s1 sample --model s1-32B --tokenizer tokenizers/qwen2.5 --prompts aime24.jsonl --max-thinking 4000 --wait 2
 *   # continuation of raw token ids (no tokenizer, no budget forcing): prints the generated ids
 *   build/cuda/sample --model Qwen2.5-0.5B-Instruct --prompt-ids 151644,8948,198 --max-gen-toks 64
 *   # the same, 8 prompts decoding together (one line per prompt all the same, in the prompts' order)
 *   build/cuda/sample --model s1-32B --tokenizer tokenizers/qwen2.5 --prompts aime24.jsonl \
 *                     --max-thinking 4000 --wait 2 --batch 8 --out aime24.jsonl
 *   # the time model of a decode step: bytes per step against the HBM bandwidth, at batch 1 and 8
 *   build/cuda/sample --plan --config configs/qwen2.5-32b-instruct.json
 *   build/cuda/sample --plan --config configs/qwen2.5-32b-instruct.json --batch 8
 *
 * Everything around the decoder is common/generate.h, shared with s1.c: the
 * flags and their defaults, reading the prompts, the delimiters, the 'auto'
 * budget, one generation (generation_run(): the prompt, common/budget.h's
 * controller, the decoded text) and its JSON line. What is GPU here is the
 * decoder behind budget.h's Decoder interface (gpu_decoder_*() below): the
 * prompt goes through gpu_decode() of common/kernels.cuh in one pass, then
 * each generated token on its own (one launch of a CUDA graph of the step
 * unless --graph off), and the next token comes from
 * sampler_sample() of common/sampler.h over the real token ids only (the
 * padding rows of the embedding are never chosen).
 *
 * The GPU keeps bf16 weights and activations, s1.c fp32: the logits agree
 * within the bound tests/emu_kernels_budget.cu checks, so greedy decoding
 * picks the same tokens except after a near-tie.
 *
 * With --batch B up to B prompts decode together (sample_prompts()): one step
 * runs the current token of each through gpu_decode_batch(), so the weights
 * are read once for B tokens, and each generation keeps its own cache,
 * budget-forcing state and sampler, so its line is the one it would get alone
 * (bit for bit in the emulator; on a GPU up to the bound
 * tests/emu_kernels_batch.cu checks, as cuBLAS may sum B rows in another order
 * than one).
 */
#include <pthread.h>

#define TOKENIZER_NO_MAIN
#include "tokenizer.c"
#include "common/kernels.cuh"
#include "common/sampler.h"
#include "common/budget.h"
#include "common/generate.h"

#define QWEN25_TOKENIZER_SIZE 151665   // ids 0..151664 are tokens; the embedding pads beyond
#define SAMPLE_MAX_BATCH 1024          // --batch: sequences decoding together (each holds a KV cache of the whole context)

// ----------------------------------------------------------------------------
// the GPU model as budget.h's Decoder

typedef struct {
    GpuModel *model;
    GpuKVCache *kv;
    const float *logits;   // after the last fed id
    Sampler *sampler;      // greedy, or temperature / top-p; its n_valid keeps the padding rows out
    IdList ids;            // the context, as fed: a rewind feeds its last id again (gpu_decoder_cut())
} GpuDecoder;

static void gpu_decoder_feed(void *ctx, const uint32_t *ids, size_t n) {
    GpuDecoder *g = (GpuDecoder *)ctx;
    for (size_t i = 0; i < n; i++) idlist_push(&g->ids, ids[i]);
    g->logits = gpu_decode(g->model, g->kv, ids, n);
}

static uint32_t gpu_decoder_next(void *ctx, const uint32_t *banned, size_t n_banned) {
    GpuDecoder *g = (GpuDecoder *)ctx;
    if (g->logits == NULL) die("gpu_decoder_next: no logits (nothing fed yet)");
    return sampler_sample(g->sampler, g->logits, g->model->config.vocab_size, banned, n_banned);
}

static size_t gpu_decoder_length(void *ctx) { return ((GpuDecoder *)ctx)->kv->len; }

// A rewind to len ids, as s1.c's cpu_decoder_rewind(): the context is cut to
// len - 1 ids (the rows beyond are overwritten by the next feed) and the id at
// len - 1 is returned for the caller to feed again, since its logits are the
// ones next() needs (rejection sampling draws a new thinking right after the
// prompt).
static uint32_t gpu_decoder_cut(GpuDecoder *g, size_t len) {
    if (len == 0 || len > g->ids.len) die("gpu_decoder_rewind: cannot rewind %zu ids to %zu", g->ids.len, len);
    g->ids.len = len - 1;
    g->kv->len = len - 1;
    return g->ids.data[len - 1];
}

static void gpu_decoder_rewind(void *ctx, size_t len) {
    uint32_t last = gpu_decoder_cut((GpuDecoder *)ctx, len);
    gpu_decoder_feed(ctx, &last, 1);
}

static Decoder gpu_decoder(GpuDecoder *g) {
    Decoder d = {g, gpu_decoder_feed, gpu_decoder_next, gpu_decoder_length, gpu_decoder_rewind};
    return d;
}

#ifndef SAMPLE_NO_MAIN

// ----------------------------------------------------------------------------
// batched prompts: several generations decoding together
//
// generation_run() is a pull loop: budget.h's controller calls the decoder's
// feed() and next() when it needs them, with its state (the round, the Waits,
// the banned ids, a rewind) on its stack. To run B of them in lockstep without
// touching the controller (./s1 runs the same one), each generation runs in a
// thread of its own used as a coroutine: a baton says who runs, and only one
// thread ever does. A generation runs until it feeds its decoder
// (batch_feed() posts the ids and hands the baton to the scheduler), and the
// scheduler, once every generation of the batch waits on a feed, runs them
// all (batch_run_feeds(): the single tokens in one gpu_decode_batch() step,
// longer feeds, a prompt, a "Wait" or a delimiter, one sequence at a time),
// then hands the baton to each generation in turn. Everything happens in one
// fixed order, so a run repeats bit for bit, and the host code of the
// generations (samplers, the tokenizer's caches) never runs concurrently.

#define BATON_SCHEDULER (-1)

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int turn;   // the slot whose generation runs, or BATON_SCHEDULER
} Baton;

static void pthread_check(int rc, const char *what) {
    if (rc != 0) die("sample: %s failed: %s", what, strerror(rc));
}

// blocks until it is `me`'s turn
static void baton_wait(Baton *b, int me) {
    pthread_check(pthread_mutex_lock(&b->lock), "pthread_mutex_lock");
    while (b->turn != me) pthread_check(pthread_cond_wait(&b->changed, &b->lock), "pthread_cond_wait");
    pthread_check(pthread_mutex_unlock(&b->lock), "pthread_mutex_unlock");
}

// hands the baton to `to`
static void baton_give(Baton *b, int to) {
    pthread_check(pthread_mutex_lock(&b->lock), "pthread_mutex_lock");
    b->turn = to;
    pthread_check(pthread_cond_broadcast(&b->changed), "pthread_cond_broadcast");
    pthread_check(pthread_mutex_unlock(&b->lock), "pthread_mutex_unlock");
}

// hands the baton to `to` and waits until it comes back to `me`
static void baton_pass(Baton *b, int to, int me) {
    baton_give(b, to);
    baton_wait(b, me);
}

// what every generation of a run shares (generation_run()'s arguments but the decoder and the prompt)
typedef struct {
    const Tokenizer *tok;
    const Delimiters *delim;
    const SampleSettings *s;
    long budget;
    size_t context;
    uint32_t n_valid;   // the sampler's ids: the tokenizer's
    Baton baton;
} BatchRun;

// One place in the batch: a decoder with its own cache and sampler, which
// holds one prompt's generation at a time.
typedef struct {
    GpuDecoder g;               // first: gpu_decoder_next() and _length() take the slot as their GpuDecoder
    GpuKVCache kv;
    Sampler sampler;
    int id;                     // the slot's turn on the baton
    BatchRun *run;
    const uint32_t *feed_ids;   // the feed the generation waits on (feed_n 0: none); the caller's buffer,
    size_t feed_n;              // which lives while it waits
    size_t index;               // the prompt
    const IdList *prompt;
    Generation gen;
    int busy, ended;            // holds a generation; it has returned
    pthread_t thread;
} BatchSlot;

// budget.h's feed(): posts the ids and waits until the scheduler has run them
static void batch_feed(void *ctx, const uint32_t *ids, size_t n) {
    BatchSlot *sl = (BatchSlot *)ctx;
    for (size_t i = 0; i < n; i++) idlist_push(&sl->g.ids, ids[i]);
    sl->feed_ids = ids;
    sl->feed_n = n;
    baton_pass(&sl->run->baton, BATON_SCHEDULER, sl->id);
}

// budget.h's rewind(): gpu_decoder_rewind()'s, its feed posted as any other
static void batch_rewind(void *ctx, size_t len) {
    uint32_t last = gpu_decoder_cut(&((BatchSlot *)ctx)->g, len);
    batch_feed(ctx, &last, 1);
}

static void *batch_slot_main(void *arg) {
    BatchSlot *sl = (BatchSlot *)arg;
    BatchRun *r = sl->run;
    baton_wait(&r->baton, sl->id);
    Decoder d = {sl, batch_feed, gpu_decoder_next, gpu_decoder_length, batch_rewind};
    generation_run(&d, r->tok, r->delim, r->s, r->budget, r->context, sl->prompt, &sl->gen);
    sl->ended = 1;
    baton_give(&r->baton, BATON_SCHEDULER);
    return NULL;
}

// Starts prompt i's generation in a free slot; it runs until its first feed (the prompt).
static void batch_slot_start(BatchSlot *sl, size_t i, const IdList *prompt) {
    const SampleSettings *s = sl->run->s;
    sampler_init(&sl->sampler, sl->run->n_valid, s->temperature, s->topp, s->seed + i);   // seed + i, as ./s1 sample
    sl->kv.len = 0;   // the previous prompt's cache rows are overwritten
    sl->g.ids.len = 0;
    sl->g.logits = NULL;
    sl->index = i;
    sl->prompt = prompt;
    sl->busy = 1;
    sl->ended = 0;
    pthread_check(pthread_create(&sl->thread, NULL, batch_slot_main, sl), "pthread_create");
    baton_pass(&sl->run->baton, sl->id, BATON_SCHEDULER);
}

// Runs the feeds the generations wait on: the single tokens as one batched
// step, the longer feeds one sequence at a time. A lone single token goes
// through gpu_decode(), as at --batch 1. Returns the single tokens decoded.
static size_t batch_run_feeds(GpuModel *m, BatchSlot *slots, size_t B) {
    GpuKVCache **kvs = (GpuKVCache **)mallocCheck(B * sizeof(GpuKVCache *));
    uint32_t *ids = (uint32_t *)mallocCheck(B * sizeof(uint32_t));
    BatchSlot **stepped = (BatchSlot **)mallocCheck(B * sizeof(BatchSlot *));
    size_t n = 0;
    for (size_t b = 0; b < B; b++) {
        BatchSlot *sl = &slots[b];
        if (!sl->busy || sl->feed_n == 0) continue;
        if (sl->feed_n == 1) { kvs[n] = &sl->kv; ids[n] = sl->feed_ids[0]; stepped[n++] = sl; }
        else sl->g.logits = gpu_decode(m, &sl->kv, sl->feed_ids, sl->feed_n);
        sl->feed_n = 0;
    }
    if (n == 1) stepped[0]->g.logits = gpu_decode(m, kvs[0], ids, 1);
    else if (n > 1) {
        gpu_decode_batch(m, kvs, ids, n);
        for (size_t i = 0; i < n; i++) stepped[i]->g.logits = kvs[i]->logits;
    }
    free(stepped);
    free(ids);
    free(kvs);
    return n;
}

// ----------------------------------------------------------------------------
// the prompts of a JSONL file, as ./s1 sample runs them

// One JSON line per prompt on fp, in the prompts' order. Up to `batch` prompts
// decode together; a prompt that ends hands its slot to the next one
// (continuous batching). Prompt i samples with seed + i, as in ./s1 sample, so
// the lines do not depend on what runs together.
static void sample_prompts(const char *model_dir, const char *tok_dir, const char *prompts_path, const SampleSettings *s,
                           size_t batch, FILE *fp, int progress, cudaStream_t stream) {
    ProblemSet ps;
    problems_read(&ps, prompts_path, 0);
    size_t B = batch < ps.n ? batch : ps.n;
    GpuModel model;
    gpu_model_load(&model, model_dir, (int)B, stream);   // chunk_rows B: the LM head's rows of a batched step
    Tokenizer *tok = tokenizer_load(tok_dir);
    check_tokenizer_fits(tok, tok_dir, model.config.vocab_size, model_dir);
    Delimiters delim;
    delimiters_init(&delim, tok, tok_dir, s->ignore_str);
    size_t longest = problems_encode_control(&ps, tok, &s->control, s->max_thinking);
    BatchRun run = {tok, &delim, s, 0, 0, tokenizer_size(tok), {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, BATON_SCHEDULER}};
    run.budget = resolve_budget(&delim, s->max_thinking, s->max_gen_toks, longest);
    run.context = sample_context(s, model.config.max_position_embeddings, longest);
    BatchSlot *slots = (BatchSlot *)callocCheck(B, sizeof(BatchSlot));
    for (size_t b = 0; b < B; b++) {
        BatchSlot *sl = &slots[b];
        gpu_kvcache_create(&sl->kv, &model, run.context);
        sl->g = GpuDecoder{&model, &sl->kv, NULL, &sl->sampler, {NULL, 0, 0}};
        sl->id = (int)b;
        sl->run = &run;
    }
    Generation *gens = (Generation *)callocCheck(ps.n, sizeof(Generation));
    unsigned char *done = (unsigned char *)callocCheck(ps.n, 1);
    size_t started = 0, ended = 0, written = 0, steps = 0, tokens = 0;
    double t0 = now_seconds();
    while (ended < ps.n) {
        for (size_t b = 0; b < B && started < ps.n; b++)
            if (!slots[b].busy) { batch_slot_start(&slots[b], started, &ps.items[started].prompt); started++; }
        size_t n = batch_run_feeds(&model, slots, B);
        steps += n > 0;
        tokens += n;
        for (size_t b = 0; b < B; b++) {
            BatchSlot *sl = &slots[b];
            if (!sl->busy) continue;
            baton_pass(&run.baton, sl->id, BATON_SCHEDULER);   // to its next feed, or its end
            if (!sl->ended) continue;
            pthread_check(pthread_join(sl->thread, NULL), "pthread_join");
            gens[sl->index] = sl->gen;
            done[sl->index] = 1;
            sampler_free(&sl->sampler);
            sl->busy = 0;
            ended++;
            if (progress) print_progress("generate", ended, ps.n, t0);
        }
        for (; written < ps.n && done[written]; written++) {   // the lines in the prompts' order
            write_generation(fp, written, &gens[written]);
            fflush(fp);
            generation_free(&gens[written]);
        }
    }
    if (progress && B > 1)
        fprintf(stderr, "generate: %zu decode steps, %.2f sequences each on average (--batch %zu)\n", steps,
                steps ? (double)tokens / (double)steps : 0.0, batch);
    free(done);
    free(gens);
    for (size_t b = 0; b < B; b++) {
        gpu_kvcache_free(&slots[b].kv);
        idlist_free(&slots[b].g.ids);
    }
    free(slots);
    delimiters_free(&delim);
    tokenizer_free(tok);
    gpu_model_free(&model);
    problems_free(&ps);
}

// ----------------------------------------------------------------------------
// raw token ids: a plain continuation, for models without a tokenizer

// Up to max_gen_toks ids after the prompt, ending early at the config's
// eos_token_id or when the context is full; prints the ids on one line.
static void continue_ids(const char *model_dir, const char *ids_arg, const SampleSettings *s, FILE *fp, cudaStream_t stream) {
    IdList ids = {NULL, 0, 0};
    for (const char *p = ids_arg; *p;) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno != 0 || end == p || *p == '-' || v > UINT32_MAX || (*end != ',' && *end != '\0'))
            die("sample: --prompt-ids must be comma-separated token ids, got '%s'", ids_arg);
        idlist_push(&ids, (uint32_t)v);
        p = *end == ',' ? end + 1 : end;
    }
    if (ids.len == 0) die("sample: the prompt is empty");
    GpuModel model;
    gpu_model_load(&model, model_dir, 1, stream);
    size_t V = model.config.vocab_size;
    for (size_t i = 0; i < ids.len; i++)
        if (ids.data[i] >= V) die("sample: prompt token id %u is outside the model's %zu embedding rows", ids.data[i], V);
    // the context: --max-context, else the prompt plus max_gen_toks, at most the model's positions
    size_t context = s->max_context ? s->max_context : ids.len + (size_t)s->max_gen_toks;
    if (context > model.config.max_position_embeddings) context = model.config.max_position_embeddings;
    if (context <= ids.len) die("sample: the prompt has %zu tokens, no room left in a %zu-token context", ids.len, context);
    Sampler sampler;   // without a tokenizer: Qwen2.5's token ids, or every embedding row of a smaller model
    sampler_init(&sampler, (uint32_t)(V < QWEN25_TOKENIZER_SIZE ? V : QWEN25_TOKENIZER_SIZE), s->temperature, s->topp, s->seed);
    GpuKVCache kv;
    gpu_kvcache_create(&kv, &model, context);
    GpuDecoder g = {&model, &kv, NULL, &sampler, {NULL, 0, 0}};
    Decoder d = gpu_decoder(&g);
    d.feed(d.ctx, ids.data, ids.len);   // the prompt, in one pass
    for (long n = 0; n < s->max_gen_toks && kv.len < context; n++) {
        uint32_t next = d.next(d.ctx, NULL, 0);
        fprintf(fp, n ? " %u" : "%u", next);
        if ((long long)next == model.config.eos_token_id || n + 1 == s->max_gen_toks) break;
        d.feed(d.ctx, &next, 1);
    }
    fprintf(fp, "\n");
    idlist_free(&g.ids);
    gpu_kvcache_free(&kv);
    sampler_free(&sampler);
    gpu_model_free(&model);
    idlist_free(&ids);
}

// ----------------------------------------------------------------------------
// sample --plan: what one decode step costs, on paper. A step decodes one
// token of each of the batch's B sequences. Every weight is read once per step
// (bf16; of an untied embedding only the tokens' rows, while the LM head reads
// its whole matrix), whatever B, and the attention reads each sequence's whole
// KV cache (bf16 K and V of every layer); the FLOPs (2 per weight and token,
// plus 4 L NQ HD per cached token) stay far below what the bandwidth allows
// while B is small (a few hundred tokens a step on an H100), so the time is the
// bytes over the HBM bandwidth, and the weights' share of a token is 1/B of
// batch 1's.

static void decode_plan(const char *config_path, double gbps, size_t context, size_t batch) {
    Qwen2Config c;
    config_read(&c, config_path);
    size_t n = parameter_count(&c), VH = c.vocab_size * c.hidden_size;
    double weights = 2.0 * (double)(c.tie_word_embeddings ? n : n - VH + batch * c.hidden_size);
    double kv_per_token = 2.0 * 2.0 * (double)c.num_layers * (double)(c.num_kv_heads * c.head_dim);   // K and V, bf16
    printf("model: %s, %zu parameters (%zu layers, %zu KV heads of %zu, %s) | HBM %.0f GB/s\n", config_path, n, c.num_layers,
           c.num_kv_heads, c.head_dim, c.tie_word_embeddings ? "tied" : "untied", gbps);
    printf("per step: weights %.3f GB (bf16, read once), KV cache %.1f KB per cached token of each sequence\n", weights / 1e9,
           kv_per_token / 1e3);
    printf("batch %zu: a step decodes one token of each of %zu sequences, all at the context below\n", batch, batch);
    printf("%12s %14s %14s %12s %12s\n", "context", "KV cache GB", "bytes GB", "ms/step", "tokens/s");
    size_t contexts[] = {0, 1024, 4096, 16384, 32768, context};
    for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
        if (i == 5 && (context == 0 || context == 1024 || context == 4096 || context == 16384 || context == 32768)) break;
        double kv = kv_per_token * (double)contexts[i] * (double)batch, bytes = weights + kv, ms = bytes / (gbps * 1e9) * 1e3;
        printf("%12zu %14.3f %14.3f %12.2f %12.1f\n", contexts[i], kv / 1e9, bytes / 1e9, ms, 1e3 * (double)batch / ms);
    }
}

// ----------------------------------------------------------------------------
// command line: the flags of ./s1 sample (common/generate.h)

static void usage(void) {
    printf("usage: sample --model DIR --tokenizer DIR --prompts FILE.jsonl [--out FILE.jsonl] [options]\n"
           "       sample --model DIR --prompt-ids ID,ID,... [--max-gen-toks N] [--temperature T] [--top-p P] [--seed N]\n"
           "       sample --plan --config CONFIG.json [--context N] [--hbm-gbps X] [--batch B]\n"
           "\n"
           "The GPU twin of ./s1 sample: the same flags, the same JSON lines.\n"
           SAMPLE_ABOUT_HELP
           "\n"
           SAMPLE_BUDGET_FLAGS_HELP
           SAMPLE_FLAGS_HELP
           "  --batch B            decode up to B prompts together, one token of each per step: the weights are\n"
           "                       read once for the B tokens; a prompt that ends hands its place to the next.\n"
           "                       Each keeps its own KV cache of the whole context, budget forcing and seed, and\n"
           "                       the lines stay in the prompts' order (default 1)\n"
           "  --prompt-ids IDS     instead of --prompts and --tokenizer: continue these comma-separated token ids\n"
           "                       (no chat template, no budget forcing) for up to --max-gen-toks tokens or the\n"
           "                       config's eos_token_id; prints the generated ids\n"
           "  --plan               the time model of one decode step at --batch B (no GPU needed): every bf16 weight\n"
           "                       once and each sequence's KV cache, over the HBM bandwidth, at contexts 0 to 32768 and N\n"
           "  --config FILE        the model's config.json for --plan (configs/qwen2.5-32b-instruct.json, ...)\n"
           "  --context N          a context length to add to --plan's table\n"
           "  --hbm-gbps X         the bandwidth for --plan in GB/s (default 3350, an H100 SXM)\n"
           ATTENTION_FLAG_HELP
           GRAPH_FLAG_HELP);
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *tok_dir = NULL, *prompts_path = NULL, *prompt_ids = NULL, *out_path = NULL;
    SampleSettings s;
    sample_settings_default(&s);
    int forcing = 0;   // a budget-forcing flag was given
    const char *plan_config = NULL;
    int plan = 0;
    double hbm_gbps = 3350.0;
    size_t plan_context = 0, batch = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage(); return 0; }
        else if (flag_is(a, "--plan")) plan = 1;
        else if (flag_is(a, "--config")) plan_config = flag_value(argc, argv, &i);
        else if (flag_is(a, "--context")) plan_context = flag_count_max(argc, argv, &i, 0, 1u << 24);
        else if (flag_is(a, "--hbm-gbps")) hbm_gbps = flag_number_max(argc, argv, &i, 1e6);
        else if (flag_is(a, "--model")) model_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--tokenizer")) tok_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--prompts")) prompts_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--prompt-ids")) prompt_ids = flag_value(argc, argv, &i);
        else if (flag_is(a, "--out")) out_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--batch")) batch = flag_count_max(argc, argv, &i, 0, SAMPLE_MAX_BATCH);
        else if (flag_is(a, "--attention")) attention_flag(flag_value(argc, argv, &i));
        else if (flag_is(a, "--graph")) graph_flag(flag_value(argc, argv, &i));
        else if (parse_budget_flag(argc, argv, &i, &s)) forcing = 1;
        else if (!parse_sample_flag(argc, argv, &i, &s)) die("sample: unknown argument '%s' (see sample --help)", a);
        forcing |= strcmp(a, "--ignore-str") == 0 || strcmp(a, "--readme-variant") == 0;
    }
    if (plan || plan_config) {
        if (!plan || !plan_config) die("sample: --plan needs --config CONFIG.json, and --config goes with --plan (see sample --help)");
        if (hbm_gbps <= 0) die("sample: --hbm-gbps must be positive");
        decode_plan(plan_config, hbm_gbps, plan_context, batch);
        return 0;
    }
    if (prompt_ids) {
        if (!model_dir) die("sample: --prompt-ids needs --model (see sample --help)");
        if (tok_dir || prompts_path || forcing || batch != 1)
            die("sample: --prompt-ids continues raw ids: no --tokenizer, --prompts, --batch or budget forcing (see sample --help)");
    } else if (!model_dir || !tok_dir || !prompts_path) {
        die("sample: --model, --tokenizer and --prompts are required (see sample --help)");
    }
    AtomicFile af;
    FILE *fp = stdout;
    if (out_path) { af = atomic_open(out_path); fp = af.fp; }
    cudaStream_t stream;   // all of the decoder's work (no legacy default stream: tutorial/cuda.md, "Streams")
    cudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    if (prompt_ids) continue_ids(model_dir, prompt_ids, &s, fp, stream);
    else sample_prompts(model_dir, tok_dir, prompts_path, &s, batch, fp, out_path != NULL, stream);
    cudaCheck(cudaStreamDestroy(stream));
    if (out_path) atomic_commit(&af);
    return 0;
}
#endif // SAMPLE_NO_MAIN
