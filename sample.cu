/*
 * sample.cu: greedy decoding of Qwen2.5 on the GPU with a KV cache, with s1's
 * budget forcing.
 *
 *   make cuda   -> build/cuda/sample (nvcc, sm_90)
 *   make emu    -> build/emu/sample  (the same source on the CPU, through common/cuemu.h)
 *
 *   # greedy continuation of token ids: prints the generated ids
 *   build/cuda/sample --model Qwen2.5-0.5B-Instruct --prompt-ids 151644,8948,198 --max-new 64
 *   # s1's evaluation: the question in s1's prompt, thinking cut at 4000 tokens, "Wait" twice
 *   build/cuda/sample --model s1-32B --tokenizer tokenizers/qwen2.5 --question "What is 2+2?" \
 *                     --think 4000 --ignore 2
 *
 * The prompt goes through gpu_decode() of common/kernels.cuh in one pass, then
 * each generated token on its own: the layer kernels of the training forward
 * pass, K and V appended to the cache, attention over the cached keys. The
 * next token comes from sampler_sample() of common/sampler.h: the argmax (s1
 * evaluates greedily) or temperature / top-p sampling, over the real token
 * ids only (the padding rows of the embedding are never chosen).
 * Budget forcing is common/budget.h's controller, the one the CPU decoder
 * uses, driving the GPU through its Decoder interface (gpu_decoder_*() below).
 *
 * Not here yet: batching several prompts.
 */
#define TOKENIZER_NO_MAIN
#include "tokenizer.c"
#include "common/kernels.cuh"
#include "common/sampler.h"
#include "common/budget.h"

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

// ----------------------------------------------------------------------------
// budget forcing with s1's delimiters, spelled by the tokenizer

typedef struct {
    IdList think_stop, thinking_end, thinking_end_max, newline, answer_stop, wait;
} S1Delimiters;

static IdList encode_text(Tokenizer *tok, const char *text) {
    IdList ids = {NULL, 0, 0};
    tokenizer_encode(tok, text, strlen(text), 1, &ids);
    return ids;
}

static uint32_t special_id(const Tokenizer *tok, const char *name, const char *dir) {
    int id = tokenizer_token_id(tok, name);
    if (id < 0) die("%s: the tokenizer has no %s token", dir, name);
    return (uint32_t)id;
}

// s1-spec 5.1: stop on <|im_start|>/<|im_end|> while thinking, "<|im_start|>answer"
// (or "...\nFinal Answer:" on a forced exit) to change phase, <|im_end|> ends the answer.
static S1Delimiters s1_delimiters(Tokenizer *tok, const char *dir, const char *wait) {
    S1Delimiters s;
    memset(&s, 0, sizeof s);
    uint32_t im_start = special_id(tok, "<|im_start|>", dir), im_end = special_id(tok, "<|im_end|>", dir);
    idlist_push(&s.think_stop, im_start);
    idlist_push(&s.think_stop, im_end);
    idlist_push(&s.answer_stop, im_end);
    s.thinking_end = encode_text(tok, "<|im_start|>answer");
    s.thinking_end_max = encode_text(tok, "<|im_start|>answer\nFinal Answer:");
    s.newline = encode_text(tok, "\n");
    s.wait = encode_text(tok, wait);
    return s;
}

static void s1_delimiters_free(S1Delimiters *s) {
    IdList *lists[] = {&s->think_stop, &s->thinking_end, &s->thinking_end_max, &s->newline, &s->answer_stop, &s->wait};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) idlist_free(lists[i]);
}

static IdSpan span(const IdList *l) { IdSpan s = {l->data, l->len}; return s; }

// the harness tests the detokenized thinking (special tokens skipped) for a final newline
static int text_ends_with_newline(void *tok, const uint32_t *ids, size_t n) {
    ByteBuf text = {NULL, 0, 0};
    tokenizer_decode((const Tokenizer *)tok, ids, n, 1, &text);
    int nl = text.len > 0 && text.data[text.len - 1] == '\n';
    bytebuf_free(&text);
    return nl;
}

static void print_text(const Tokenizer *tok, const uint32_t *ids, size_t n) {
    ByteBuf text = {NULL, 0, 0};
    tokenizer_decode(tok, ids, n, 0, &text);
    fwrite(text.data, 1, text.len, stdout);
    bytebuf_free(&text);
}

// ----------------------------------------------------------------------------
// command line

#ifndef SAMPLE_NO_MAIN

static void usage(void) {
    printf("usage: sample --model DIR (--prompt-ids ID,ID,... | --tokenizer DIR --question TEXT) [options]\n"
           "\n"
           "Decoding with a KV cache on the GPU: greedy by default, as s1 evaluates.\n"
           "\n"
           "  --prompt-ids IDS   the prompt as comma-separated token ids; prints the generated ids\n"
           "  --tokenizer DIR    a Qwen2.5 tokenizer folder (tokenizer.json, or vocab.json + merges.txt)\n"
           "  --question TEXT    with --tokenizer: s1's evaluation prompt (chat template, default system\n"
           "                     prompt, one user turn, \"<|im_start|>think\"); prints the generated text\n"
           "  --max-new N        tokens to generate without --think (default 32)\n"
           "  --stop ID          without --think: stop after generating ID (repeatable; default: the\n"
           "                     config's eos_token_id)\n"
           "  --vocab N          only ids below N are generated (default: the tokenizer's size, else the\n"
           "                     embedding rows but at most %d; the padding rows are never chosen)\n"
           "  --temperature T    sample from softmax(logits / T) instead of the argmax (default 0: greedy)\n"
           "  --topp P           with a temperature: sample within the top-p nucleus (default 1: all)\n"
           "  --seed N           the sampler's seed (default 1234)\n"
           "\n"
           "Budget forcing (s1-spec section 5, the evaluation harness's semantics; needs --question):\n"
           "  --think B          thinking budget in tokens; the thinking is cut at B\n"
           "  --ignore N         suppress the end of thinking N times, appending --wait each time\n"
           "  --wait TEXT        the string appended when the end of thinking is suppressed (default Wait)\n"
           "  --max-answer N     answer-phase limit in tokens (default 32768)\n"
           "  --readme           the README example's semantics instead (remaining budget per round)\n"
           "  --context N        KV-cache length, prompt included (default: the config's\n"
           "                     max_position_embeddings); running out ends the phase, as vLLM's max_model_len\n",
           QWEN25_TOKENIZER_SIZE);
}

static size_t parse_size(const char *flag, const char *value, int allow_zero) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || (v == 0 && !allow_zero) || v > UINT32_MAX)
        die("sample: %s needs a %s integer, got '%s'", flag, allow_zero ? "non-negative" : "positive", value);
    return (size_t)v;
}

static float parse_float(const char *flag, const char *value) {
    char *end;
    errno = 0;
    float v = strtof(value, &end);
    if (errno != 0 || end == value || *end != '\0') die("sample: %s needs a number, got '%s'", flag, value);
    return v;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *tok_dir = NULL, *question = NULL, *wait = "Wait";
    size_t max_new = 32, vocab = 0, think = 0, max_answer = 32768, context = 0, seed = 1234;
    float temperature = 0.0f, topp = 1.0f;
    long n_ignore = -1;
    int readme = 0;
    IdList stops = {NULL, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(); return 0; }
        int has_value = i + 1 < argc;
        if (strcmp(a, "--readme") == 0) readme = 1;
        else if (strcmp(a, "--model") == 0 && has_value) model_dir = argv[++i];
        else if (strcmp(a, "--prompt-ids") == 0 && has_value) prompt = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0 && has_value) tok_dir = argv[++i];
        else if (strcmp(a, "--question") == 0 && has_value) question = argv[++i];
        else if (strcmp(a, "--wait") == 0 && has_value) wait = argv[++i];
        else if (strcmp(a, "--max-new") == 0 && has_value) max_new = parse_size(a, argv[++i], 1);
        else if (strcmp(a, "--stop") == 0 && has_value) idlist_push(&stops, (uint32_t)parse_size(a, argv[++i], 1));
        else if (strcmp(a, "--vocab") == 0 && has_value) vocab = parse_size(a, argv[++i], 0);
        else if (strcmp(a, "--think") == 0 && has_value) think = parse_size(a, argv[++i], 1);
        else if (strcmp(a, "--ignore") == 0 && has_value) n_ignore = (long)parse_size(a, argv[++i], 1);
        else if (strcmp(a, "--max-answer") == 0 && has_value) max_answer = parse_size(a, argv[++i], 1);
        else if (strcmp(a, "--context") == 0 && has_value) context = parse_size(a, argv[++i], 1);
        else if (strcmp(a, "--seed") == 0 && has_value) seed = parse_size(a, argv[++i], 0);
        else if (strcmp(a, "--temperature") == 0 && has_value) temperature = parse_float(a, argv[++i]);
        else if (strcmp(a, "--topp") == 0 && has_value) topp = parse_float(a, argv[++i]);
        else die("sample: unknown argument or missing value '%s' (see sample --help)", a);
    }
    if (model_dir == NULL) die("sample: --model is required (see sample --help)");
    if ((prompt == NULL) == (question == NULL)) die("sample: give exactly one of --prompt-ids and --question (see sample --help)");
    if (question != NULL && tok_dir == NULL) die("sample: --question needs --tokenizer");
    if (think == 0 && (n_ignore >= 0 || readme)) die("sample: --ignore and --readme need --think");
    if (think > 0 && question == NULL) die("sample: --think needs --question (and --tokenizer)");

    Tokenizer *tok = tok_dir ? tokenizer_load(tok_dir) : NULL;
    IdList ids = {NULL, 0, 0};
    if (question != NULL) {
        char *text = chat_s1_prompt(question);
        tokenizer_encode(tok, text, strlen(text), 1, &ids);
        free(text);
    } else {
        for (const char *p = prompt; *p;) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p, &end, 10);
            if (errno != 0 || end == p || *p == '-' || v > UINT32_MAX || (*end != ',' && *end != '\0'))
                die("sample: --prompt-ids must be comma-separated token ids, got '%s'", prompt);
            idlist_push(&ids, (uint32_t)v);
            p = *end == ',' ? end + 1 : end;
        }
    }
    if (ids.len == 0) die("sample: the prompt is empty");

    GpuModel model;
    gpu_model_load(&model, model_dir, 1);
    size_t V = model.config.vocab_size;
    if (vocab == 0) vocab = tok ? tokenizer_size(tok) : V < QWEN25_TOKENIZER_SIZE ? V : QWEN25_TOKENIZER_SIZE;
    if (vocab > V) die("sample: %zu token ids but the model has %zu embedding rows", vocab, V);
    for (size_t i = 0; i < ids.len; i++)
        if (ids.data[i] >= V) die("sample: prompt token id %u is outside the model's %zu embedding rows", ids.data[i], V);
    if (context == 0) context = think ? model.config.max_position_embeddings : ids.len + max_new;
    if (context <= ids.len) die("sample: the prompt has %zu tokens, no room left in a %zu-token context", ids.len, context);

    Sampler sampler;
    sampler_init(&sampler, (uint32_t)vocab, temperature, topp, seed);
    GpuKVCache kv;
    gpu_kvcache_create(&kv, &model, context);
    GpuDecoder g = {&model, &kv, NULL, &sampler};
    Decoder d = gpu_decoder(&g);
    d.feed(d.ctx, ids.data, ids.len);   // the prompt, in one pass
    if (think == 0) {
        if (stops.len == 0 && model.config.eos_token_id >= 0) idlist_push(&stops, (uint32_t)model.config.eos_token_id);
        DecodeStream ds;   // with a tokenizer, text as it comes (a character split over tokens waits for its end)
        decode_stream_init(&ds);
        ByteBuf text = {NULL, 0, 0};
        for (size_t n = 0; n < max_new && kv.len < context; n++) {
            uint32_t next = d.next(d.ctx, NULL, 0);
            if (tok) {
                text.len = 0;
                decode_stream_push(tok, &ds, next, 0, &text);
                fwrite(text.data, 1, text.len, stdout);
            } else {
                printf(n ? " %u" : "%u", next);
            }
            fflush(stdout);
            int stop = 0;
            for (size_t s = 0; s < stops.len; s++) stop |= stops.data[s] == next;
            if (stop || n + 1 == max_new) break;
            d.feed(d.ctx, &next, 1);
        }
        text.len = 0;
        decode_stream_flush(&ds, &text);
        fwrite(text.data, 1, text.len, stdout);
        bytebuf_free(&text);
        printf("\n");
    } else {
        S1Delimiters s1 = s1_delimiters(tok, tok_dir, wait);
        BudgetConfig c;
        memset(&c, 0, sizeof c);
        c.max_thinking = (long)think;
        c.n_ignore = (int)n_ignore;
        c.ignore_str = span(&s1.wait);
        c.think_stop = span(&s1.think_stop);
        c.thinking_end = span(&s1.thinking_end);
        c.thinking_end_max = span(&s1.thinking_end_max);
        c.newline = span(&s1.newline);
        c.answer_stop = span(&s1.answer_stop);
        c.max_answer = (long)max_answer;
        c.context_limit = context;
        c.readme_variant = readme;
        c.ends_with_newline = text_ends_with_newline;
        c.text_ctx = tok;
        BudgetResult r;
        budget_run(&d, &c, &r);
        // the scored text: "<|im_start|>think" (end of the prompt) + thinking + delimiter + answer
        printf("<|im_start|>think");
        print_text(tok, r.thinking.data, r.thinking.len);
        print_text(tok, r.transition.data, r.transition.len);
        print_text(tok, r.answer.data, r.answer.len);
        printf("\n");
        fprintf(stderr, "sample: prompt %zu tokens; thinking %zu tokens (%zu generated, %d rounds, %d waits, ended by %s%s); "
                "answer %zu tokens (ended by %s)\n", ids.len, r.thinking.len, r.generated, r.rounds, r.waits,
                finish_reason_name(r.think_finish), r.forced_exit ? ", forced exit" : "", r.answer.len,
                finish_reason_name(r.answer_finish));
        budget_result_free(&r);
        s1_delimiters_free(&s1);
    }
    gpu_kvcache_free(&kv);
    sampler_free(&sampler);
    gpu_model_free(&model);
    if (tok) tokenizer_free(tok);
    idlist_free(&ids);
    idlist_free(&stops);
    return 0;
}
#endif // SAMPLE_NO_MAIN
