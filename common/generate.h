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

// A control prompt appended to the question, as s1's task utils build them from the environment
// (PROMPTTOKEN, PROMPTSTEP, PROMPTLONG, PROMPTSHORT: lm_eval/tasks/aime/utils.py:11-20,
// openai_math/utils.py:11-20; gpqa/openai/utils.py:15-22 appends the same text after the choices).
typedef enum { CONTROL_NONE = 0, CONTROL_TOKENS, CONTROL_STEPS, CONTROL_LONG, CONTROL_SHORT } ControlKind;

typedef struct {
    ControlKind kind;
    long n;   // tokens or steps; 0 with CONTROL_TOKENS = the setting's budget (TCC + budget forcing)
} ControlPrompt;

// Parses none, token:N, token, step:N, long, short. 1 if it is one of them.
static inline int control_parse(const char *v, ControlPrompt *c) {
    c->kind = CONTROL_NONE;
    c->n = 0;
    if (strcmp(v, "none") == 0) return 1;
    if (strcmp(v, "long") == 0) { c->kind = CONTROL_LONG; return 1; }
    if (strcmp(v, "short") == 0) { c->kind = CONTROL_SHORT; return 1; }
    if (strcmp(v, "token") == 0) { c->kind = CONTROL_TOKENS; return 1; }
    const char *num = NULL;
    if (strncmp(v, "token:", 6) == 0) { c->kind = CONTROL_TOKENS; num = v + 6; }
    else if (strncmp(v, "step:", 5) == 0) { c->kind = CONTROL_STEPS; num = v + 5; }
    else return 0;
    char *end;
    errno = 0;
    long n = strtol(num, &end, 10);
    if (errno != 0 || *end != '\0' || num[0] < '0' || num[0] > '9' || n < 1 || n > (1l << 24)) return 0;
    c->n = n;
    return 1;
}

// the control's name, as --controls spells it
static inline void control_name(const ControlPrompt *c, char *buf, size_t size) {
    switch (c->kind) {
    case CONTROL_NONE: snprintf(buf, size, "none"); break;
    case CONTROL_TOKENS: if (c->n) snprintf(buf, size, "token:%ld", c->n); else snprintf(buf, size, "token"); break;
    case CONTROL_STEPS: snprintf(buf, size, "step:%ld", c->n); break;
    case CONTROL_LONG: snprintf(buf, size, "long"); break;
    case CONTROL_SHORT: snprintf(buf, size, "short"); break;
    }
}

// The text s1's templates append to the question ("{Question}" + this); `budget` stands in for a
// bare "token". Empty for none.
static inline void control_suffix(const ControlPrompt *c, long budget, char *buf, size_t size) {
    switch (c->kind) {
    case CONTROL_NONE: buf[0] = '\0'; break;
    case CONTROL_TOKENS: snprintf(buf, size, "\n\nThink for up to %ld tokens.", c->n ? c->n : budget); break;
    case CONTROL_STEPS: snprintf(buf, size, "\n\nThink for up to %ld steps.", c->n); break;
    case CONTROL_LONG:
        snprintf(buf, size, "\n\nAnswer after a long amount of thinking. If you feel like you are finished early, spend the "
                            "extra time trying to double-check your work until you are absolutely sure that you have the "
                            "correct answer.");
        break;
    case CONTROL_SHORT:
        snprintf(buf, size, "\n\nAnswer after a short amount of thinking. Do not spend excessive time double-checking your work.");
        break;
    }
}

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
    int plain_stops;           // 1: stop thinking on <|im_start|>/<|im_end|> ids in every round (--think-stops ids)
    long max_tries;            // rejection sampling: > 0 = at most this many tries (--rejection T); 0 = forcing
    ControlPrompt control;     // appended to every question (--control)
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
    s->plain_stops = 0;
    s->max_tries = 0;
    s->control.kind = CONTROL_NONE;
    s->control.n = 0;
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
    else if (flag_is(a, "--think-stops")) {
        const char *v = flag_value(argc, argv, i);
        if (strcmp(v, "vllm") == 0) s->plain_stops = 0;
        else if (strcmp(v, "ids") == 0) s->plain_stops = 1;
        else die("%s: '%s' is neither 'vllm' nor 'ids'", a, v);
    }
    else if (flag_is(a, "--rejection")) s->max_tries = (long)flag_count_max(argc, argv, i, 1, 1000000);
    else if (flag_is(a, "--control")) {
        const char *v = flag_value(argc, argv, i);
        if (!control_parse(v, &s->control)) die("%s: '%s' is not none, token:N, token, step:N, long or short", a, v);
    }
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

// the one-run flags of the samplers (./s1 eval sweeps them instead: --budgets, --waits, --methods, --controls)
#define SAMPLE_BUDGET_FLAGS_HELP \
    "  --max-thinking B     thinking budget in tokens, or 'auto' = max-gen-toks - longest prompt -\n" \
    "                       the two delimiters - 100 (s1-spec 5.2: 108 tokens with Qwen2.5's; default auto)\n" \
    "  --wait N             ignore the end of thinking up to N times, appending \"Wait\"; each round gets\n" \
    "                       the full budget B again, then the thinking is cut to B (default 0 = never)\n" \
    "  --rejection T        rejection sampling (s1's Table 3 baseline): resample the whole thinking until it\n" \
    "                       ends by itself within B tokens, at most T tries (the T-th is budget-forced);\n" \
    "                       Waits are ignored, as in the harness. Use with --temperature 1, as s1 did\n" \
    "  --control C          a control prompt appended to each question, from s1's task utils: token:N\n" \
    "                       (\"Think for up to N tokens.\"), token (N = the budget B), step:N, long, short\n"

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
    "                       remaining budget, no truncation to B, no delimiter, no \"Final Answer:\"\n" \
    "  --think-stops M      what ends a thinking round: 'vllm' (default) as vLLM 0.6.4.post1 ran the harness:\n" \
    "                       <|endoftext|> too (generation_config.json), and without --wait only <|im_end|>\n" \
    "                       and <|endoftext|> (the string stop \"<|im_start|>\" never matches a skipped\n" \
    "                       special token); 'ids': <|im_start|> and <|im_end|> in every round\n"

// ----------------------------------------------------------------------------
// s1's delimiters, spelled by the tokenizer (the demo's small BPE numbers its
// added tokens differently from Qwen2.5)

typedef struct {
    IdList ignore, thinking_end, thinking_end_max, newline, thinking_start;
    uint32_t think_stop[2], answer_stop[2];   // think_stop: the harness's until_thinking ids, in its order
    size_t n_answer_stop;
    int eot;                                  // <|endoftext|>, or -1 if the tokenizer has none
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
    d->eot = eot;
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

// problems_encode() with a control prompt appended to every question ("{Question}" + suffix, as
// s1's QUERY_TEMPLATEs); a bare "token" instructs `budget` tokens, so it needs a number.
static inline size_t problems_encode_control(ProblemSet *ps, Tokenizer *tok, const ControlPrompt *c, long budget) {
    if (c->kind == CONTROL_NONE) return problems_encode(ps, tok);
    if (c->kind == CONTROL_TOKENS && c->n == 0 && budget < 1)
        die("control 'token' instructs the thinking budget, so it needs a number, not auto (or use token:N)");
    char suffix[512];
    control_suffix(c, budget, suffix, sizeof suffix);
    size_t longest = 0;
    ByteBuf q = {NULL, 0, 0};
    for (size_t i = 0; i < ps->n; i++) {
        q.len = 0;
        bytebuf_puts(&q, ps->items[i].question);
        bytebuf_puts(&q, suffix);
        char *prompt = chat_s1_prompt(q.data);
        encode_text(tok, prompt, &ps->items[i].prompt);
        if (ps->items[i].prompt.len > longest) longest = ps->items[i].prompt.len;
        free(prompt);
    }
    bytebuf_free(&q);
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
    char *text;                // "<|im_start|>think" + UNCUT thinking + delimiter + answer: what the harness
                               // stores (filtered_resps) and scores
    char *answer_text;         // the answer phase alone
    size_t text_len, answer_len;   // in bytes: a generated byte token can be a NUL
    size_t thinking_tokens;    // s1's statistic (s1_thinking_tokens() on text): the x-axis of s1's curves
    size_t thinking_ids;       // ours: the thinking ids the answer phase saw (cut to B, "Wait"s included)
    size_t prompt_tokens;
    int waits, forced_exit;
    long tries;                // rejection sampling: the tries it took (1 otherwise)
    int capped;                // rejection sampling: no try fitted, the last was budget-forced
    FinishReason think_finish, answer_finish;
} Generation;

static inline void generation_free(Generation *g) { free(g->text); free(g->answer_text); }

static inline IdSpan id_span(const uint32_t *ids, size_t n) {
    IdSpan s = {ids, n};
    return s;
}

// s1's thinking-token count of one stored output (eval/compute_sample_stats.py:89-90,104, the
// branch every budget-forcing run takes): the text before the first "<|im_start|>answer", split
// on "\n", minus its first line ("<|im_start|>think" and what follows it) and its last line,
// joined again and re-tokenized (tok.tokenize: no special tokens added). It reads the UNCUT
// thinking the harness stores, so it can exceed B, and it is not our count of the ids the answer
// phase saw ("Wait"s and a first or last partial line differ too).
static inline size_t s1_thinking_tokens(const Tokenizer *tok, const char *text, size_t len) {
    static const char delim[] = "<|im_start|>answer";
    size_t end = len;
    for (size_t i = 0; i + sizeof delim - 1 <= len; i++)
        if (memcmp(text + i, delim, sizeof delim - 1) == 0) { end = i; break; }
    const char *first = (const char *)memchr(text, '\n', end);
    if (first == NULL) return 0;
    size_t last = end;
    while (last > 0 && text[last - 1] != '\n') last--;
    last--;   // the last '\n' before end
    if (text + last == first) return 0;   // two lines: [1:-1] is empty
    IdList ids = {NULL, 0, 0};
    // the encoder's pre-token cache is not thread-safe, and generation_run() runs in threads
#ifdef _OPENMP
    #pragma omp critical(s1c_tokenizer_encode)
#endif
    tokenizer_encode((Tokenizer *)tok, first + 1, (size_t)(text + last - (first + 1)), 1, &ids);
    size_t n = ids.len;
    idlist_free(&ids);
    return n;
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
    // The stops of a thinking round, as vLLM 0.6.4.post1 ran the harness. With --wait the harness
    // passes stop_token_ids = [<|im_start|>, <|im_end|>] (vllm_causallms.py:273-280); without, the
    // stop *strings* "<|im_start|>", "<|im_end|>" (:282), which never match: SamplingParams skips
    // special tokens in the text by default (skip_special_tokens=True), so the text a stop string is
    // searched in never holds them (vllm-project/vllm#2123), and such a round ends on the model's
    // eos <|im_end|> alone (the tokenizer's eos_token, which vLLM stops on unless ignore_eos). In both
    // cases SamplingParams.update_from_generation_config() adds the generation config's other eos id
    // (Qwen2.5-Instruct: eos_token_id [151645, 151643], so <|endoftext|>) to stop_token_ids and to
    // the ids min_tokens masks. The harness strips only its own stop ids off a round (strip), so a
    // round that ends on <|endoftext|> keeps it (common/budget.h). --think-stops ids: the ids alone.
    uint32_t stops[3];
    size_t n_stops = 0;
    if (s->plain_stops || s->waits > 0) stops[n_stops++] = d->think_stop[0];
    stops[n_stops++] = d->think_stop[1];
    if (!s->plain_stops && d->eot >= 0) stops[n_stops++] = (uint32_t)d->eot;
    c.think_stop = id_span(stops, n_stops);
    c.strip = id_span(d->think_stop, 2);
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
    out->tries = 1;
    out->capped = 0;
    if (s->max_tries > 0) {
        // Rejection sampling: no ignoring (the harness's rejection branch comes before its Wait
        // branch, vllm_causallms.py:286-331), limit B+1, keep the first try that stopped within B.
        // The harness has no cap and refills its batch with copies of unfinished requests (:320-327),
        // which only reorders the random draws; here each try continues the problem's own sampler.
        // After max_tries - 1 rejected tries the last one is budget-forced at B instead.
        const size_t prompt_len = dec->length(dec->ctx);
        c.n_ignore = -1;
        for (;; out->tries++) {
            const int last = out->tries >= s->max_tries;
            c.max_thinking = last ? budget : budget + 1;
            c.accept_within = last ? 0 : budget;
            budget_run(dec, &c, &r);
            if (!r.rejected) break;
            budget_result_free(&r);
            dec->rewind(dec->ctx, prompt_len);
        }
        out->capped = c.accept_within == 0;
    } else budget_run(dec, &c, &r);
    // the scored text: thinking_start + thinking + delimiter + answer, special tokens of the
    // generated parts skipped as vLLM's detokenizer does (the harness appends the delimiters as text)
    // The harness stores the UNCUT thinking text: each round's text is concatenated (:353, :371) and
    // only token_ids are cut to B (:382-384), so the text keeps what the model wrote past B.
    ByteBuf text = {NULL, 0, 0}, answer = {NULL, 0, 0};
    bytebuf_puts(&text, "<|im_start|>think");
    tokenizer_decode(tok, r.uncut.data, r.uncut.len, !s->readme_variant, &text);
    tokenizer_decode(tok, r.transition.data, r.transition.len, 0, &text);
    tokenizer_decode(tok, r.answer.data, r.answer.len, !s->readme_variant, &answer);
    bytebuf_append(&answer, "", 0);   // allocated even when empty
    bytebuf_append(&text, answer.data, answer.len);
    out->text = text.data;
    out->text_len = text.len;
    out->answer_text = answer.data;
    out->answer_len = answer.len;
    out->thinking_ids = r.thinking.len;
    out->thinking_tokens = s1_thinking_tokens(tok, text.data, text.len);
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
    fprintf(fp, ", \"prompt_tokens\": %zu, \"thinking_tokens\": %zu, \"thinking_ids\": %zu, \"waits\": %d, \"forced_exit\": %s, \"thinking_stop\": \"%s\", \"stop\": \"%s\"",
            gen->prompt_tokens, gen->thinking_tokens, gen->thinking_ids, gen->waits, gen->forced_exit ? "true" : "false", finish_reason_name(gen->think_finish),
            finish_reason_name(gen->answer_finish));
    if (gen->tries > 1 || gen->capped) fprintf(fp, ", \"tries\": %ld, \"capped\": %s", gen->tries, gen->capped ? "true" : "false");
}

// one generation as a JSON line
static inline void write_generation(FILE *fp, size_t index, const Generation *gen) {
    fputc('{', fp);
    write_generation_fields(fp, index, gen);
    fprintf(fp, "}\n");
}

#endif // S1C_GENERATE_H
