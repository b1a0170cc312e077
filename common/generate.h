/*
 * generate.h: what the CPU sampler (./s1 sample, ./s1 eval) and the GPU
 * sampler (sample.cu) share around budget forcing, written once so that both
 * speak the same command line and write the same JSONL:
 *
 *   SampleSettings      the sampling and budget flags, their defaults, their
 *                       parser (parse_budget_flag(), parse_sample_flag()) and
 *                       their --help text (SAMPLE_*_HELP)
 *   ProblemSet          prompts / problems read from JSONL (problems_read(),
 *                       errors name file:line), encoded in s1's chat prompt
 *   Delimiters          s1's delimiter and stop ids, spelled by the tokenizer
 *   resolve_budget()    --max-thinking auto as the harness computes it
 *   generation_run()    one generation on any Decoder (common/budget.h): the
 *                       prompt, budget forcing, the decoded text
 *   write_generation()  one generation as a JSON line
 *
 * The decoder is the caller's: s1.c's KV cache on the CPU, gpu_decode() in
 * sample.cu. Plain C that also compiles as C++17 (sample.cu's host code).
 * Include tokenizer.c (with TOKENIZER_NO_MAIN) first: the prompts and the
 * delimiters need the tokenizer.
 */
#ifndef S1C_GENERATE_H
#define S1C_GENERATE_H

#ifndef QWEN_DEFAULT_SYSTEM
#error "include tokenizer.c (with TOKENIZER_NO_MAIN) before common/generate.h"
#endif

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "common/json.h"
#include "common/budget.h"

// ----------------------------------------------------------------------------
// settings and flags

// Everything a generation needs besides the prompt.
typedef struct {
    long max_thinking;         // B; < 0 = auto
    int waits;                 // N; 0 = no forcing (the harness's thinking_n_ignore unset)
    const char *ignore_str;
    float temperature, topp;
    uint64_t seed;
    long max_gen_toks;         // the harness's max_gen_toks: auto budget and answer limit
    size_t max_context;        // the whole context (vLLM's max_model_len); 0 = max_gen_toks, at most the model's positions
    int readme_variant;
} SampleSettings;

static inline void sample_settings_default(SampleSettings *s) {
    s->max_thinking = -1;
    s->waits = 0;
    s->ignore_str = "Wait";
    s->temperature = 0.0f;
    s->topp = 1.0f;
    s->seed = 1234;
    s->max_gen_toks = 32768;
    s->max_context = 0;
    s->readme_variant = 0;
}

// Bounds of the sampling flags: token counts beyond any context a Qwen2 model
// has (2^24 positions, common/qwen2_config.h) are refused, so none of them can
// overflow the int and long they are kept in; a temperature above 100 is a
// uniform draw in all but name.
#define SAMPLE_MAX_TOKENS (1l << 24)
#define SAMPLE_MAX_WAITS 1024
#define SAMPLE_MAX_TEMPERATURE 100.0

// 1 if argv[*i] is --max-thinking or --wait (consumed into s), else 0.
// ./s1 eval sweeps lists of both instead (--budgets, --waits).
static inline int parse_budget_flag(int argc, char **argv, int *i, SampleSettings *s) {
    const char *a = argv[*i];
    if (flag_is(a, "--max-thinking")) {
        const char *v = flag_value(argc, argv, i);
        if (strcmp(v, "auto") == 0) s->max_thinking = -1;
        else {
            char *end;
            errno = 0;
            long b = strtol(v, &end, 10);
            if (errno != 0 || *end != '\0' || end == v || v[0] < '0' || v[0] > '9' || b < 1 || b > SAMPLE_MAX_TOKENS)
                die("%s: '%s' is neither a positive integer up to %ld nor 'auto'", a, v, SAMPLE_MAX_TOKENS);
            s->max_thinking = b;
        }
    } else if (flag_is(a, "--wait")) s->waits = (int)flag_count_max(argc, argv, i, 1, SAMPLE_MAX_WAITS);
    else return 0;
    return 1;
}

// 1 if argv[*i] is one of the other sampling flags (consumed into s), else 0
static inline int parse_sample_flag(int argc, char **argv, int *i, SampleSettings *s) {
    const char *a = argv[*i];
    if (flag_is(a, "--ignore-str")) s->ignore_str = flag_value(argc, argv, i);
    else if (flag_is(a, "--temperature")) s->temperature = (float)flag_number_max(argc, argv, i, SAMPLE_MAX_TEMPERATURE);
    else if (flag_is(a, "--top-p")) s->topp = (float)flag_number_max(argc, argv, i, 1.0);
    else if (flag_is(a, "--seed")) s->seed = flag_count(argc, argv, i, 1);
    else if (flag_is(a, "--max-gen-toks")) s->max_gen_toks = (long)flag_count_max(argc, argv, i, 0, SAMPLE_MAX_TOKENS);
    else if (flag_is(a, "--max-context")) s->max_context = flag_count_max(argc, argv, i, 0, SAMPLE_MAX_TOKENS);
    else if (flag_is(a, "--readme-variant")) s->readme_variant = 1;
    else return 0;
    return 1;
}

// what a sampler does, for its --help
#define SAMPLE_ABOUT_HELP \
    "Generates an answer for each prompt (JSONL objects with a \"question\") with budget forcing exactly\n" \
    "as the s1 evaluation harness does it: thinking after \"<|im_start|>think\", capped at B tokens\n" \
    "(then \"<|im_start|>answer\\nFinal Answer:\" is forced), each early end of thinking replaced by\n" \
    "\"Wait\" up to N times. Writes one JSON object per prompt: the full text, the thinking-token count,\n" \
    "the answer text, the waits inserted and why each phase stopped (\"stop\" or \"length\").\n"

#define SAMPLE_BUDGET_FLAGS_HELP \
    "  --max-thinking B     thinking budget in tokens, or 'auto' = max-gen-toks - longest prompt -\n" \
    "                       the two delimiters - 100 (s1-spec 5.2: 108 tokens with Qwen2.5's; default auto)\n" \
    "  --wait N             ignore the end of thinking up to N times, appending \"Wait\"; each round gets\n" \
    "                       the full budget B again, then the thinking is cut to B (default 0 = never)\n"

#define SAMPLE_FLAGS_HELP \
    "  --ignore-str S       the string appended on each ignored stop (default \"Wait\")\n" \
    "  --temperature T      0 = greedy, as s1's evaluation (default 0)\n" \
    "  --top-p P            nucleus mass for T > 0 (default 1)\n" \
    "  --seed N             sampling seed (default 1234)\n" \
    "  --max-gen-toks N     the harness's max_gen_toks: the answer limit and the 'auto' budget (default 32768)\n" \
    "  --max-context N      the context in tokens, prompt included (vLLM's max_model_len; default\n" \
    "                       max-gen-toks, at most the model's max_position_embeddings); reaching it ends a\n" \
    "                       phase like a length limit\n" \
    "  --readme-variant     the README example's forcing instead of the harness's: each Wait round gets the\n" \
    "                       remaining budget, no truncation to B, no delimiter, no \"Final Answer:\"\n"

// ----------------------------------------------------------------------------
// s1's delimiters, spelled by the tokenizer (the demo's small BPE numbers its
// added tokens differently from Qwen2.5)

typedef struct {
    IdList ignore, thinking_end, thinking_end_max, newline, thinking_start;
    uint32_t think_stop[2], answer_stop[2];
    size_t n_answer_stop;
} Delimiters;

static inline uint32_t added_token_id(const Tokenizer *tok, const char *text, const char *dir) {
    int id = tokenizer_token_id(tok, text);
    if (id < 0) die("%s: the tokenizer has no %s token, which s1's chat format needs", dir, text);
    return (uint32_t)id;
}

static inline void encode_text(Tokenizer *tok, const char *text, IdList *out) {
    out->len = 0;
    tokenizer_encode(tok, text, strlen(text), 1, out);
}

// s1-spec 5.1: stop on <|im_start|>/<|im_end|> while thinking, "<|im_start|>answer"
// (or "...\nFinal Answer:" on a forced exit) to change phase, <|im_end|> ends the answer.
static inline void delimiters_init(Delimiters *d, Tokenizer *tok, const char *tok_dir, const char *ignore_str) {
    memset(d, 0, sizeof *d);
    d->think_stop[0] = added_token_id(tok, "<|im_start|>", tok_dir);
    d->think_stop[1] = added_token_id(tok, "<|im_end|>", tok_dir);
    d->answer_stop[d->n_answer_stop++] = d->think_stop[1];
    int eot = tokenizer_token_id(tok, "<|endoftext|>");   // Qwen2.5's second eos id (generation_config.json)
    if (eot >= 0) d->answer_stop[d->n_answer_stop++] = (uint32_t)eot;
    encode_text(tok, ignore_str, &d->ignore);
    encode_text(tok, "<|im_start|>answer", &d->thinking_end);
    encode_text(tok, "<|im_start|>answer\nFinal Answer:", &d->thinking_end_max);
    encode_text(tok, "\n", &d->newline);
    encode_text(tok, "<|im_start|>think", &d->thinking_start);
}

static inline void delimiters_free(Delimiters *d) {
    idlist_free(&d->ignore); idlist_free(&d->thinking_end); idlist_free(&d->thinking_end_max);
    idlist_free(&d->newline); idlist_free(&d->thinking_start);
}

// The harness tests the detokenized thinking text (special tokens skipped) for
// a final '\n'. A few ids before the last non-special one are decoded with it,
// so a '\n' inside a merged token (".\n", "\n\n") counts too.
static inline int text_ends_with_newline(void *tok_ctx, const uint32_t *ids, size_t n) {
    const Tokenizer *tok = (const Tokenizer *)tok_ctx;
    while (n > 0 && tokenizer_is_special(tok, ids[n - 1])) n--;
    if (n == 0) return 0;
    size_t from = n > 4 ? n - 4 : 0;
    ByteBuf b = {NULL, 0, 0};
    tokenizer_decode(tok, ids + from, n - from, 1, &b);
    int nl = b.len > 0 && b.data[b.len - 1] == '\n';
    bytebuf_free(&b);
    return nl;
}

// the model must have an embedding row for every id the tokenizer can produce
static inline void check_tokenizer_fits(const Tokenizer *tok, const char *tok_dir, size_t embedding_rows, const char *model_dir) {
    if (tokenizer_size(tok) > embedding_rows)
        die("%s: the tokenizer has %u ids but the model in %s only %zu embedding rows", tok_dir, tokenizer_size(tok),
            model_dir, embedding_rows);
}

// ----------------------------------------------------------------------------
// JSONL problems

typedef struct {
    char *question, *answer;   // answer may be NULL (sample needs none)
    IdList prompt;             // the s1 chat prompt, encoded (problems_encode)
} Problem;

typedef struct {
    Problem *items;
    size_t n;
} ProblemSet;

// the first of keys that is a string field of obj
static inline const char *json_string_field(const JsonValue *obj, const char *const *keys) {
    for (size_t k = 0; keys[k]; k++) {
        const JsonValue *v = json_get(obj, keys[k]);
        if (v && v->type == JSON_STRING) return v->str;
    }
    return NULL;
}

// Reads a JSONL file of objects with a "question" (or "problem"/"prompt") string and,
// when need_answer, an "answer" (string or integer; else "solution").
static inline void problems_read(ProblemSet *ps, const char *path, int need_answer) {
    static const char *const question_keys[] = {"question", "problem", "prompt", NULL};
    size_t len;
    char *text = read_file_check(path, &len);
    memset(ps, 0, sizeof *ps);
    size_t cap = 0, line_no = 0;
    for (char *line = text; line < text + len;) {
        char *end = (char *)memchr(line, '\n', (size_t)(text + len - line));
        size_t n = end ? (size_t)(end - line) : (size_t)(text + len - line);
        line_no++;
        int blank = 1;
        for (size_t i = 0; i < n; i++) if (!isspace((unsigned char)line[i])) blank = 0;
        if (!blank) {
            JsonDoc doc;
            char err[256];
            if (json_parse(line, n, &doc, err, sizeof err) != 0) die("%s:%zu: %s", path, line_no, err);
            if (doc.root->type != JSON_OBJECT) die("%s:%zu: expected a JSON object", path, line_no);
            const char *q = json_string_field(doc.root, question_keys);
            if (q == NULL) die("%s:%zu: no \"question\" string", path, line_no);
            char *answer = NULL;
            const JsonValue *a = json_get(doc.root, "answer");
            if (a == NULL || a->type == JSON_NULL) a = json_get(doc.root, "solution");
            if (a && a->type == JSON_STRING) answer = strdup(a->str);
            else if (a && a->type == JSON_NUMBER && a->is_integer) {
                char buf[32];
                snprintf(buf, sizeof buf, "%lld", (long long)a->integer);
                answer = strdup(buf);
            }
            if (need_answer && answer == NULL) die("%s:%zu: no \"answer\" (string or integer)", path, line_no);
            if (ps->n == cap) { cap = cap ? 2 * cap : 64; ps->items = (Problem *)reallocCheck(ps->items, cap * sizeof(Problem)); }
            memset(&ps->items[ps->n], 0, sizeof(Problem));
            ps->items[ps->n].question = strdup(q);
            ps->items[ps->n].answer = answer;
            ps->n++;
            json_free(&doc);
        }
        line = end ? end + 1 : text + len;
    }
    free(text);
    if (ps->n == 0) die("%s: no problems in the file", path);
}

static inline void problems_free(ProblemSet *ps) {
    for (size_t i = 0; i < ps->n; i++) { free(ps->items[i].question); free(ps->items[i].answer); idlist_free(&ps->items[i].prompt); }
    free(ps->items);
}

// Encodes every problem's prompt: the chat template with the default system
// prompt, then "<|im_start|>think" (s1-spec 5.1). Returns the longest.
static inline size_t problems_encode(ProblemSet *ps, Tokenizer *tok) {
    size_t longest = 0;
    for (size_t i = 0; i < ps->n; i++) {
        char *prompt = chat_s1_prompt(ps->items[i].question);
        encode_text(tok, prompt, &ps->items[i].prompt);
        if (ps->items[i].prompt.len > longest) longest = ps->items[i].prompt.len;
        free(prompt);
    }
    return longest;
}

// ----------------------------------------------------------------------------
// the budget and the context of a run

// The budget a setting runs with; 'auto' as the harness computes it from the
// longest prompt (the harness's prompts do not include thinking_start yet, ours do).
static inline long resolve_budget(const Delimiters *d, long max_thinking, long max_gen_toks, size_t longest_prompt) {
    size_t n_start = d->thinking_start.len;
    long b = max_thinking >= 0 ? max_thinking
                               : budget_auto(max_gen_toks, longest_prompt - n_start, n_start, d->thinking_end_max.len);
    if (b < 1) die("the thinking budget comes out at %ld tokens; raise --max-gen-toks", b);
    return b;
}

// The KV-cache length of a run, the whole context prompt included (vLLM's max_model_len):
// --max-context, else max_gen_toks (the harness runs both at 32768), at most the model's positions.
static inline size_t sample_context(const SampleSettings *s, size_t max_positions, size_t longest_prompt) {
    size_t ctx = s->max_context ? s->max_context : (size_t)s->max_gen_toks;
    if (ctx > max_positions) ctx = max_positions;
    if (ctx <= longest_prompt + 1)
        die("a prompt of %zu tokens leaves no room in a context of %zu (see --max-context, --max-gen-toks)", longest_prompt, ctx);
    return ctx;
}

// ----------------------------------------------------------------------------
// one generation

// One prompt's generation, decoded.
typedef struct {
    char *text;                // "<|im_start|>think" + thinking + transition + answer: what the harness scores
    char *answer_text;         // the answer phase alone
    size_t text_len, answer_len;   // in bytes: a generated byte token can be a NUL
    size_t thinking_tokens, prompt_tokens;
    int waits, forced_exit;
    FinishReason think_finish, answer_finish;
} Generation;

static inline void generation_free(Generation *g) { free(g->text); free(g->answer_text); }

static inline IdSpan id_span(const uint32_t *ids, size_t n) {
    IdSpan s = {ids, n};
    return s;
}

// One generation from an encoded prompt (ending in "<|im_start|>think") on a
// decoder that holds nothing yet, within a context of `context` ids. Reads tok
// and d only, so threads with their own decoders can run it side by side.
static inline void generation_run(const Decoder *dec, const Tokenizer *tok, const Delimiters *d, const SampleSettings *s,
                                  long budget, size_t context, const IdList *prompt, Generation *out) {
    if (prompt->len + 1 >= context) die("a prompt of %zu tokens does not fit the context of %zu", prompt->len, context);
    dec->feed(dec->ctx, prompt->data, prompt->len);
    BudgetConfig c;
    memset(&c, 0, sizeof c);
    c.max_thinking = budget;
    c.n_ignore = s->waits > 0 ? s->waits : -1;
    c.ignore_str = id_span(d->ignore.data, d->ignore.len);
    c.think_stop = id_span(d->think_stop, 2);
    c.thinking_end = id_span(d->thinking_end.data, d->thinking_end.len);
    c.thinking_end_max = id_span(d->thinking_end_max.data, d->thinking_end_max.len);
    c.newline = id_span(d->newline.data, d->newline.len);
    c.answer_stop = id_span(d->answer_stop, d->n_answer_stop);
    c.max_answer = s->max_gen_toks;
    c.context_limit = context;
    c.readme_variant = s->readme_variant;
    c.ends_with_newline = text_ends_with_newline;
    c.text_ctx = (void *)tok;
    BudgetResult r;
    budget_run(dec, &c, &r);
    // the scored text: thinking_start + thinking + delimiter + answer, special tokens of the
    // generated parts skipped as vLLM's detokenizer does (the harness appends the delimiters as text)
    ByteBuf text = {NULL, 0, 0}, answer = {NULL, 0, 0};
    bytebuf_puts(&text, "<|im_start|>think");
    tokenizer_decode(tok, r.thinking.data, r.thinking.len, !s->readme_variant, &text);
    tokenizer_decode(tok, r.transition.data, r.transition.len, 0, &text);
    tokenizer_decode(tok, r.answer.data, r.answer.len, !s->readme_variant, &answer);
    bytebuf_append(&answer, "", 0);   // allocated even when empty
    bytebuf_append(&text, answer.data, answer.len);
    out->text = text.data;
    out->text_len = text.len;
    out->answer_text = answer.data;
    out->answer_len = answer.len;
    out->thinking_tokens = r.thinking.len;
    out->prompt_tokens = prompt->len;
    out->waits = r.waits;
    out->forced_exit = r.forced_exit;
    out->think_finish = r.think_finish;
    out->answer_finish = r.answer_finish;
    budget_result_free(&r);
}

// ----------------------------------------------------------------------------
// output

// the fields of one generation, without braces
static inline void write_generation_fields(FILE *fp, size_t index, const Generation *gen) {
    fprintf(fp, "\"index\": %zu, \"text\": ", index);
    json_write_string(fp, gen->text, gen->text_len);
    fprintf(fp, ", \"answer\": ");
    json_write_string(fp, gen->answer_text, gen->answer_len);
    fprintf(fp, ", \"prompt_tokens\": %zu, \"thinking_tokens\": %zu, \"waits\": %d, \"forced_exit\": %s, \"thinking_stop\": \"%s\", \"stop\": \"%s\"",
            gen->prompt_tokens, gen->thinking_tokens, gen->waits, gen->forced_exit ? "true" : "false", finish_reason_name(gen->think_finish),
            finish_reason_name(gen->answer_finish));
}

// one generation as a JSON line
static inline void write_generation(FILE *fp, size_t index, const Generation *gen) {
    fputc('{', fp);
    write_generation_fields(fp, index, gen);
    fprintf(fp, "}\n");
}

#endif // S1C_GENERATE_H
