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
 *   # the per-token time model of batch-1 decoding: bytes per token against the HBM bandwidth
 *   build/cuda/sample --plan --config configs/qwen2.5-32b-instruct.json
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
 * Not here yet: batching several prompts (they run one after another).
 */
#define TOKENIZER_NO_MAIN
#include "tokenizer.c"
#include "common/kernels.cuh"
#include "common/sampler.h"
#include "common/budget.h"
#include "common/generate.h"

#define QWEN25_TOKENIZER_SIZE 151665   // ids 0..151664 are tokens; the embedding pads beyond

// ----------------------------------------------------------------------------
// the GPU model as budget.h's Decoder

typedef struct {
    GpuModel *model;
    GpuKVCache *kv;
    const float *logits;   // after the last fed id; NULL after a rewind (a feed must come first)
    Sampler *sampler;      // greedy, or temperature / top-p; its n_valid keeps the padding rows out
} GpuDecoder;

static void gpu_decoder_feed(void *ctx, const uint32_t *ids, size_t n) {
    GpuDecoder *g = (GpuDecoder *)ctx;
    g->logits = gpu_decode(g->model, g->kv, ids, n);
}

static uint32_t gpu_decoder_next(void *ctx, const uint32_t *banned, size_t n_banned) {
    GpuDecoder *g = (GpuDecoder *)ctx;
    if (g->logits == NULL) die("gpu_decoder_next: no logits (nothing fed since the start or a rewind)");
    return sampler_sample(g->sampler, g->logits, g->model->config.vocab_size, banned, n_banned);
}

static size_t gpu_decoder_length(void *ctx) { return ((GpuDecoder *)ctx)->kv->len; }

static void gpu_decoder_rewind(void *ctx, size_t len) {
    GpuDecoder *g = (GpuDecoder *)ctx;
    if (len > g->kv->len) die("gpu_decoder_rewind: %zu is beyond the %zu cached tokens", len, g->kv->len);
    g->kv->len = len;   // the rows beyond are overwritten by the next feed
    g->logits = NULL;
}

static Decoder gpu_decoder(GpuDecoder *g) {
    Decoder d = {g, gpu_decoder_feed, gpu_decoder_next, gpu_decoder_length, gpu_decoder_rewind};
    return d;
}

#ifndef SAMPLE_NO_MAIN

// ----------------------------------------------------------------------------
// the prompts of a JSONL file, as ./s1 sample runs them

// One JSON line per prompt on fp, in order. Prompt i samples with seed + i, as
// in ./s1 sample, so the two agree whatever runs together.
static void sample_prompts(const char *model_dir, const char *tok_dir, const char *prompts_path, const SampleSettings *s,
                           FILE *fp, int progress, cudaStream_t stream) {
    ProblemSet ps;
    problems_read(&ps, prompts_path, 0);
    GpuModel model;
    gpu_model_load(&model, model_dir, 1, stream);
    Tokenizer *tok = tokenizer_load(tok_dir);
    check_tokenizer_fits(tok, tok_dir, model.config.vocab_size, model_dir);
    Delimiters delim;
    delimiters_init(&delim, tok, tok_dir, s->ignore_str);
    size_t longest = problems_encode_control(&ps, tok, &s->control, s->max_thinking);
    long budget = resolve_budget(&delim, s->max_thinking, s->max_gen_toks, longest);
    size_t context = sample_context(s, model.config.max_position_embeddings, longest);
    GpuKVCache kv;
    gpu_kvcache_create(&kv, &model, context);
    double t0 = now_seconds();
    for (size_t i = 0; i < ps.n; i++) {
        Sampler sampler;
        sampler_init(&sampler, tokenizer_size(tok), s->temperature, s->topp, s->seed + i);
        GpuDecoder g = {&model, &kv, NULL, &sampler};
        Decoder d = gpu_decoder(&g);
        d.rewind(d.ctx, 0);   // the previous prompt's cache rows are overwritten
        Generation gen;
        generation_run(&d, tok, &delim, s, budget, context, &ps.items[i].prompt, &gen);
        write_generation(fp, i, &gen);
        fflush(fp);
        generation_free(&gen);
        sampler_free(&sampler);
        if (progress) print_progress("generate", i + 1, ps.n, t0);
    }
    gpu_kvcache_free(&kv);
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
    GpuDecoder g = {&model, &kv, NULL, &sampler};
    Decoder d = gpu_decoder(&g);
    d.feed(d.ctx, ids.data, ids.len);   // the prompt, in one pass
    for (long n = 0; n < s->max_gen_toks && kv.len < context; n++) {
        uint32_t next = d.next(d.ctx, NULL, 0);
        fprintf(fp, n ? " %u" : "%u", next);
        if ((long long)next == model.config.eos_token_id || n + 1 == s->max_gen_toks) break;
        d.feed(d.ctx, &next, 1);
    }
    fprintf(fp, "\n");
    gpu_kvcache_free(&kv);
    sampler_free(&sampler);
    gpu_model_free(&model);
    idlist_free(&ids);
}

// ----------------------------------------------------------------------------
// sample --plan: what one decoded token costs at batch 1, on paper. Every
// weight is read once per token (bf16; of an untied embedding only the token's
// row, while the LM head reads its whole matrix), and the attention reads the
// whole KV cache (bf16 K and V of every layer); the FLOPs (2 per weight, plus
// 4 L NQ HD per cached token) are far below what the bandwidth allows, so the
// time is the bytes over the HBM bandwidth.

static void decode_plan(const char *config_path, double gbps, size_t context) {
    Qwen2Config c;
    config_read(&c, config_path);
    size_t n = parameter_count(&c), VH = c.vocab_size * c.hidden_size;
    double weights = 2.0 * (double)(c.tie_word_embeddings ? n : n - VH + c.hidden_size);
    double kv_per_token = 2.0 * 2.0 * (double)c.num_layers * (double)(c.num_kv_heads * c.head_dim);   // K and V, bf16
    printf("model: %s, %zu parameters (%zu layers, %zu KV heads of %zu, %s) | HBM %.0f GB/s\n", config_path, n, c.num_layers,
           c.num_kv_heads, c.head_dim, c.tie_word_embeddings ? "tied" : "untied", gbps);
    printf("per token: weights %.3f GB (bf16, read once), KV cache %.1f KB per cached token\n", weights / 1e9, kv_per_token / 1e3);
    printf("%12s %14s %14s %12s %12s\n", "context", "KV cache GB", "bytes GB", "ms/token", "tokens/s");
    size_t contexts[] = {0, 1024, 4096, 16384, 32768, context};
    for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
        if (i == 5 && (context == 0 || context == 1024 || context == 4096 || context == 16384 || context == 32768)) break;
        double kv = kv_per_token * (double)contexts[i], bytes = weights + kv, ms = bytes / (gbps * 1e9) * 1e3;
        printf("%12zu %14.3f %14.3f %12.2f %12.1f\n", contexts[i], kv / 1e9, bytes / 1e9, ms, 1e3 / ms);
    }
}

// ----------------------------------------------------------------------------
// command line: the flags of ./s1 sample (common/generate.h)

static void usage(void) {
    printf("usage: sample --model DIR --tokenizer DIR --prompts FILE.jsonl [--out FILE.jsonl] [options]\n"
           "       sample --model DIR --prompt-ids ID,ID,... [--max-gen-toks N] [--temperature T] [--top-p P] [--seed N]\n"
           "       sample --plan --config CONFIG.json [--context N] [--hbm-gbps X]\n"
           "\n"
           "The GPU twin of ./s1 sample: the same flags, the same JSON lines.\n"
           SAMPLE_ABOUT_HELP
           "\n"
           SAMPLE_BUDGET_FLAGS_HELP
           SAMPLE_FLAGS_HELP
           "  --prompt-ids IDS     instead of --prompts and --tokenizer: continue these comma-separated token ids\n"
           "                       (no chat template, no budget forcing) for up to --max-gen-toks tokens or the\n"
           "                       config's eos_token_id; prints the generated ids\n"
           "  --plan               the time model of one decoded token at batch 1 (no GPU needed): every bf16 weight\n"
           "                       and the KV cache read once, over the HBM bandwidth, at contexts 0 to 32768 and N\n"
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
    size_t plan_context = 0;
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
        else if (flag_is(a, "--attention")) attention_flag(flag_value(argc, argv, &i));
        else if (flag_is(a, "--graph")) graph_flag(flag_value(argc, argv, &i));
        else if (parse_budget_flag(argc, argv, &i, &s)) forcing = 1;
        else if (!parse_sample_flag(argc, argv, &i, &s)) die("sample: unknown argument '%s' (see sample --help)", a);
        forcing |= strcmp(a, "--ignore-str") == 0 || strcmp(a, "--readme-variant") == 0;
    }
    if (plan || plan_config) {
        if (!plan || !plan_config) die("sample: --plan needs --config CONFIG.json, and --config goes with --plan (see sample --help)");
        if (hbm_gbps <= 0) die("sample: --hbm-gbps must be positive");
        decode_plan(plan_config, hbm_gbps, plan_context);
        return 0;
    }
    if (prompt_ids) {
        if (!model_dir) die("sample: --prompt-ids needs --model (see sample --help)");
        if (tok_dir || prompts_path || forcing)
            die("sample: --prompt-ids continues raw ids: no --tokenizer, --prompts or budget forcing (see sample --help)");
    } else if (!model_dir || !tok_dir || !prompts_path) {
        die("sample: --model, --tokenizer and --prompts are required (see sample --help)");
    }
    AtomicFile af;
    FILE *fp = stdout;
    if (out_path) { af = atomic_open(out_path); fp = af.fp; }
    cudaStream_t stream;   // all of the decoder's work (no legacy default stream: tutorial/cuda.md, "Streams")
    cudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    if (prompt_ids) continue_ids(model_dir, prompt_ids, &s, fp, stream);
    else sample_prompts(model_dir, tok_dir, prompts_path, &s, fp, out_path != NULL, stream);
    cudaCheck(cudaStreamDestroy(stream));
    if (out_path) atomic_commit(&af);
    return 0;
}
#endif // SAMPLE_NO_MAIN
