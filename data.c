/*
 * data.c: the s1K data pipeline in plain C.
 *
 * s1 ("s1: Simple test-time scaling") trains on 1,000 questions chosen from a
 * 59K pool by three ideas: quality, difficulty and diversity. This program
 * re-runs that selection (s1-spec.md section 4, simplescaling/s1
 * data/filter.ipynb) and turns the chosen examples into training shards in
 * s1's exact text layout with TRL's loss mask (s1-spec.md sections 2-3).
 *
 *   ./data select POOL.jsonl --out OUT.jsonl [--eval FILE]... [--seed N] [--n 1000]
 *                 [--mode s1|random|diverse|longest] [--report FILE] [--tokenizer DIR]
 *   ./data tokenize IN.jsonl --tokenizer DIR --out SHARD [--block-size 32768] [--traces gemini|deepseek]
 *   ./data render IN.jsonl --out FILE.txt [--traces gemini|deepseek]
 *   ./data show SHARD [--text --tokenizer DIR]
 *   ./data synth --out POOL.jsonl [--n 500] [--seed 1] [--max-digits 4] [--eval-set]
 *   ./data bench aime24|aime25|math500|gpqa FILE --out OUT.jsonl [--seed 1234]
 *
 * `select` runs the stages na, quality, difficulty, decontaminate, dedup and
 * select, printing one line "<stage>: <in> -> <out>" each. `tokenize` writes
 * the shard format of common/shard.h; `render` writes the same training texts
 * as plain text. `show` prints a shard back as JSONL.
 * `synth` writes a small synthetic pool (multi-digit arithmetic; traces that
 * answer at a glance and sometimes check after "Wait") on which every stage
 * does visible work; its default output is committed as
 * tests/fixtures/data-sample-pool.jsonl.
 *
 * Inputs are JSONL in one of three schemas (s1-spec.md 4.6): the featurised
 * pool (question, solution, cot_type, source_type, domain, isqwen7bcorrect,
 * isqwen32bcorrect, isgeminicorrect, gemini_length, thinking_trajectories,
 * attempt, metadata), s1K (question, thinking_trajectories, attempt, ...) and
 * s1K-1.1 (gemini_/deepseek_thinking_trajectory and _attempt; --traces picks).
 * A malformed line or a missing field stops the run with "file:line: reason";
 * --skip-bad skips and counts such lines instead. Outputs are written to a
 * temporary name and renamed, so a killed run never leaves half a file.
 *
 * Tutorial: tutorial/data.md.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/util.h"
#include "common/json.h"
#include "common/shard.h"
#define TOKENIZER_NO_MAIN
#include "tokenizer.c"

// ----------------------------------------------------------------------------
// a small seeded random number generator: splitmix64 (Steele, Lea, Flood 2014).
// One 64-bit state, passes BigCrush, and is the same on every machine, so a
// --seed reproduces a selection anywhere. (The original notebook used an
// unseeded np.random, so s1K itself cannot be regenerated exactly.)

typedef struct {
    uint64_t state;
} Rng;

static void rng_init(Rng *rng, uint64_t seed) { rng->state = seed; }

static uint64_t rng_u64(Rng *rng) {
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// uniform in [0, 1) with 53 random bits
static double rng_uniform(Rng *rng) { return (double)(rng_u64(rng) >> 11) * 0x1.0p-53; }

// uniform integer in [0, n), n > 0, without modulo bias (rejection)
static uint64_t rng_below(Rng *rng, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_u64(rng); while (x >= limit);
    return x % n;
}

// ----------------------------------------------------------------------------
// characters as Python's re and str see them. The quality rule is a Python
// regex and the n-gram rule uses str.lower()/str.split(); to match them on real
// (non-ASCII) questions we decode UTF-8 and use the same character classes.

// The code point at s[*i] (tokenizer.c's utf8_at), advancing *i past it.
static uint32_t next_code_point(const char *s, size_t n, size_t *i) {
    size_t len;
    uint32_t cp = utf8_at((const unsigned char *)s, n, *i, &len);
    *i += len;
    return cp;
}

// re's \s for str patterns is Python's str.isspace(): tokenizer.c's py_isspace().
// re's \d for str patterns: Unicode category Nd. Every Nd character belongs to
// a run of ten consecutive digits 0..9; these are the code points of the zeros
// (Unicode 14, from Python's unicodedata).
static int py_isdigit(uint32_t c) {
    static const uint32_t zeros[] = {
        0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xde6, 0xe50,
        0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50, 0x1bb0, 0x1c40,
        0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10, 0x104a0, 0x10d30, 0x11066,
        0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0, 0x11950,
        0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6,
        0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0};
    for (size_t k = 0; k < sizeof zeros / sizeof zeros[0]; k++)
        if (c >= zeros[k] && c <= zeros[k] + 9) return 1;
    return 0;
}

// str.lower() for ASCII, Latin-1, Greek and Cyrillic capitals. Other scripts
// are left as they are (a deliberate simplification: the n-gram rule then
// differs from Python only for 8-grams with capitals outside these blocks).
static uint32_t py_lower(uint32_t c) {
    if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

// ----------------------------------------------------------------------------
// reading JSONL: one JSON object per line, streamed, parsed by common/json.h.
// Every problem is reported as "file:line: reason"; with skip_bad the line is
// counted and skipped instead of stopping the run.

typedef struct {
    const char *path;
    FILE *fp;
    char *line;          // the current line, without its newline
    size_t line_cap;
    size_t line_len;
    size_t line_no;      // 1-based number of the current line
    long line_offset;    // byte offset of the current line in the file
    int skip_bad;
    size_t num_bad;      // lines skipped
    JsonDoc doc;
    int has_doc;
} JsonlReader;

static void jsonl_open(JsonlReader *r, const char *path, int skip_bad) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->fp = fopen(path, "rb");
    if (r->fp == NULL) die("%s: cannot open: %s", path, strerror(errno));
    r->skip_bad = skip_bad;
}

// Reports a bad line. Stops the program unless skip_bad; returns -1 so the
// caller can write `return jsonl_bad(...)`.
static int jsonl_bad(JsonlReader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jsonl_bad(JsonlReader *r, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!r->skip_bad) die("%s:%zu: %s", r->path, r->line_no, msg);
    if (r->num_bad < 5) fprintf(stderr, "warning: skipping %s:%zu: %s\n", r->path, r->line_no, msg);
    r->num_bad++;
    return -1;
}

// The next well-formed JSON object, or NULL at the end of the file. Blank
// lines are ignored. The object lives until the next call.
static const JsonValue *jsonl_next(JsonlReader *r) {
    for (;;) {
        if (r->has_doc) { json_free(&r->doc); r->has_doc = 0; }
        r->line_offset = ftell(r->fp);
        ssize_t got = getline(&r->line, &r->line_cap, r->fp);
        if (got < 0) {
            if (ferror(r->fp)) die("%s: read error after line %zu", r->path, r->line_no);
            return NULL;
        }
        r->line_no++;
        size_t len = (size_t)got;
        while (len > 0 && (r->line[len - 1] == '\n' || r->line[len - 1] == '\r')) len--;
        r->line[len] = '\0';
        r->line_len = len;
        size_t k = 0;
        while (k < len && (r->line[k] == ' ' || r->line[k] == '\t')) k++;
        if (k == len) continue;
        char err[256];
        if (json_parse(r->line, len, &r->doc, err, sizeof err) != 0) {
            // the parser counts lines inside the text; ours is always line 1
            const char *e = strncmp(err, "line 1 ", 7) == 0 ? err + 7 : err;
            jsonl_bad(r, "invalid JSON: %s", e);
            continue;
        }
        r->has_doc = 1;
        if (r->doc.root->type != JSON_OBJECT) {
            jsonl_bad(r, "expected a JSON object, got %s", json_type_name(r->doc.root->type));
            continue;
        }
        return r->doc.root;
    }
}

static void jsonl_close(JsonlReader *r) {
    if (r->has_doc) json_free(&r->doc);
    fclose(r->fp);
    free(r->line);
}

// Field access. Each returns 0 on success and -1 (after jsonl_bad) when the
// field is missing (and required) or has the wrong type. A JSON null is a
// value, "not available" (NA): *out = NULL, or -1 for booleans/integers.

static int field_string(JsonlReader *r, const JsonValue *obj, const char *key, int required, const char **out) {
    const JsonValue *v = json_get(obj, key);
    *out = NULL;
    if (v == NULL) return required ? jsonl_bad(r, "missing field \"%s\"", key) : 0;
    if (v->type == JSON_NULL) return 0;
    if (v->type != JSON_STRING) return jsonl_bad(r, "field \"%s\": expected a string, got %s", key, json_type_name(v->type));
    *out = v->str;
    return 0;
}

static int field_bool(JsonlReader *r, const JsonValue *obj, const char *key, int *out) {
    const JsonValue *v = json_get(obj, key);
    *out = -1;
    if (v == NULL) return jsonl_bad(r, "missing field \"%s\"", key);
    if (v->type == JSON_NULL) return 0;
    if (v->type != JSON_TRUE && v->type != JSON_FALSE)
        return jsonl_bad(r, "field \"%s\": expected true, false or null, got %s", key, json_type_name(v->type));
    *out = v->type == JSON_TRUE;
    return 0;
}

// A thinking trace: a list of strings joined by "\n" (as s1's tokenization.py
// does) or a single string (s1K-1.1). NULL when the field is null.
static int field_trace(JsonlReader *r, const JsonValue *obj, const char *key, ByteBuf *out, int *present) {
    const JsonValue *v = json_get(obj, key);
    out->len = 0;
    bytebuf_append(out, "", 0);
    *present = 0;
    if (v == NULL) return jsonl_bad(r, "missing field \"%s\"", key);
    if (v->type == JSON_NULL) return 0;
    if (v->type == JSON_STRING) { bytebuf_append(out, v->str, v->len); *present = 1; return 0; }
    if (v->type != JSON_ARRAY) return jsonl_bad(r, "field \"%s\": expected a list of strings, got %s", key, json_type_name(v->type));
    for (size_t i = 0; i < v->len; i++) {
        if (v->items[i].type != JSON_STRING)
            return jsonl_bad(r, "field \"%s\": item %zu is %s, not a string", key, i, json_type_name(v->items[i].type));
        if (i > 0) bytebuf_append(out, "\n", 1);
        bytebuf_append(out, v->items[i].str, v->items[i].len);
    }
    *present = 1;
    return 0;
}

// Which trace an s1K-1.1 row contributes: Gemini's (s1K) or DeepSeek r1's (s1.1).
typedef enum { TRACES_GEMINI, TRACES_DEEPSEEK } TraceSource;

// Reads the question, thinking and attempt of any of the three schemas.
// thinking/attempt are left empty with *has_trace = 0 when the row has none.
static int read_question_and_trace(JsonlReader *r, const JsonValue *obj, TraceSource traces, const char **question,
                                   ByteBuf *thinking, const char **attempt, int *has_trace) {
    if (field_string(r, obj, "question", 1, question)) return -1;
    if (*question == NULL) return jsonl_bad(r, "field \"question\" is null");
    const char *trace_key = "thinking_trajectories", *attempt_key = "attempt";
    if (json_get(obj, trace_key) == NULL &&
        (json_get(obj, "gemini_thinking_trajectory") || json_get(obj, "deepseek_thinking_trajectory"))) {
        trace_key = traces == TRACES_GEMINI ? "gemini_thinking_trajectory" : "deepseek_thinking_trajectory";
        attempt_key = traces == TRACES_GEMINI ? "gemini_attempt" : "deepseek_attempt";
    }
    int has_thinking;
    if (field_trace(r, obj, trace_key, thinking, &has_thinking)) return -1;
    if (field_string(r, obj, attempt_key, 1, attempt)) return -1;
    *has_trace = has_thinking && *attempt != NULL;
    return 0;
}

// The next example that has a trace and an attempt (the input of tokenize and
// render): 1, or 0 at the end of the file. A row without one is a bad line.
static int next_training_example(JsonlReader *r, TraceSource traces, const char **question, ByteBuf *thinking,
                                 const char **attempt) {
    const JsonValue *obj;
    while ((obj = jsonl_next(r)) != NULL) {
        int has_trace;
        if (read_question_and_trace(r, obj, traces, question, thinking, attempt, &has_trace)) continue;
        if (!has_trace) { jsonl_bad(r, "no thinking trace or attempt (null)"); continue; }
        return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the featurised pool: one PoolRow per input line, holding what the stages
// need. The full line (traces and all) stays in the file; `select` copies the
// chosen lines from there, so memory holds questions, not 59K traces.

typedef struct {
    char *question;
    size_t question_len;
    char *domain;            // NULL: NA
    char *source_type;       // "" when absent or null
    int qwen7b, qwen32b;     // isqwen7bcorrect, isqwen32bcorrect: 1, 0, or -1 for NA
    int gemini;              // isgeminicorrect: 1, 0 or -1
    int has_trace;           // thinking_trajectories and attempt are present
    int64_t length;          // gemini_length: tokens of the thinking trace; -1 for NA
    long offset;             // where the row's line starts in the input
    size_t nbytes;           // its length without the newline
    size_t line_no;
} PoolRow;

typedef struct {
    PoolRow *rows;
    size_t len, cap;
    size_t num_bad;          // lines skipped by --skip-bad
    size_t num_counted;      // gemini_length values computed with the tokenizer
} Pool;

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = (char *)mallocCheck(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

// Reads one pool row. tok (may be NULL) counts the tokens of a trace whose
// gemini_length is missing. Returns -1 for a bad line (already reported).
static int read_pool_row(JsonlReader *r, const JsonValue *obj, Tokenizer *tok, ByteBuf *thinking, PoolRow *row,
                         int *counted) {
    memset(row, 0, sizeof *row);
    *counted = 0;
    const char *question, *attempt, *domain = NULL, *source_type;
    if (read_question_and_trace(r, obj, TRACES_GEMINI, &question, thinking, &attempt, &row->has_trace)) return -1;
    const JsonValue *dv = json_get(obj, "domain");
    if (dv == NULL) return jsonl_bad(r, "missing field \"domain\"");
    char code[32];
    if (dv->type == JSON_NUMBER && dv->is_integer) {   // an MSC code stored as a number
        snprintf(code, sizeof code, "%lld", (long long)dv->integer);
        domain = code;
    } else if (field_string(r, obj, "domain", 1, &domain)) return -1;
    if (field_string(r, obj, "source_type", 0, &source_type)) return -1;
    if (field_bool(r, obj, "isqwen7bcorrect", &row->qwen7b) || field_bool(r, obj, "isqwen32bcorrect", &row->qwen32b) ||
        field_bool(r, obj, "isgeminicorrect", &row->gemini))
        return -1;
    row->length = -1;
    const JsonValue *lv = json_get(obj, "gemini_length");
    if (lv != NULL && lv->type != JSON_NULL) {
        if (lv->type != JSON_NUMBER || !lv->is_integer || lv->integer < 0)
            return jsonl_bad(r, "field \"gemini_length\": expected a non-negative integer");
        row->length = lv->integer;
    } else if (row->has_trace) {
        // data/featurization.py: len(tokenizer.encode(thinking_trajectories[0])) with Qwen2.5's tokenizer
        if (tok == NULL) return jsonl_bad(r, "gemini_length is missing; pass --tokenizer DIR to count the trace's tokens");
        const JsonValue *tv = json_get(obj, "thinking_trajectories");
        const char *first = thinking->data;
        size_t first_len = thinking->len;
        if (tv != NULL && tv->type == JSON_ARRAY && tv->len > 0) { first = tv->items[0].str; first_len = tv->items[0].len; }
        IdList ids = {0};
        tokenizer_encode(tok, first, first_len, 1, &ids);
        row->length = (int64_t)ids.len;
        idlist_free(&ids);
        *counted = 1;
    }
    row->question_len = strlen(question);
    row->question = xstrdup(question);
    row->domain = domain ? xstrdup(domain) : NULL;
    row->source_type = xstrdup(source_type ? source_type : "");
    row->offset = r->line_offset;
    row->nbytes = r->line_len;
    row->line_no = r->line_no;
    return 0;
}

static void pool_read(Pool *pool, const char *path, Tokenizer *tok, int skip_bad) {
    memset(pool, 0, sizeof *pool);
    JsonlReader r;
    jsonl_open(&r, path, skip_bad);
    ByteBuf thinking = {0};
    const JsonValue *obj;
    while ((obj = jsonl_next(&r)) != NULL) {
        if (pool->len == pool->cap) {
            pool->cap = pool->cap ? 2 * pool->cap : 1024;
            pool->rows = (PoolRow *)reallocCheck(pool->rows, pool->cap * sizeof(PoolRow));
        }
        int counted;
        if (read_pool_row(&r, obj, tok, &thinking, &pool->rows[pool->len], &counted) == 0) {
            pool->len++;
            pool->num_counted += (size_t)counted;
        }
    }
    pool->num_bad = r.num_bad;
    bytebuf_free(&thinking);
    jsonl_close(&r);
}

static void pool_free(Pool *pool) {
    for (size_t i = 0; i < pool->len; i++) {
        free(pool->rows[i].question);
        free(pool->rows[i].domain);
        free(pool->rows[i].source_type);
    }
    free(pool->rows);
    memset(pool, 0, sizeof *pool);
}

// ----------------------------------------------------------------------------
// the filter rules (s1-spec.md 4.4, data/filter.ipynb), one function each

// drop NA: every feature must be present (the notebook keeps a question only
// if none of its features is None).
static int row_has_na(const PoolRow *row) {
    return row->domain == NULL || row->qwen7b < 0 || row->qwen32b < 0 || row->gemini < 0 || row->length < 0 ||
           !row->has_trace;
}

// any(f"p{i}." in q for i in range(1, 1000)): a 'p', then 1 to 3 digits
// without a leading zero, then a '.'.
static int has_p_number_dot(const char *q, size_t n) {
    for (size_t i = 0; i + 2 < n; i++) {
        if (q[i] != 'p' || q[i + 1] < '1' || q[i + 1] > '9') continue;
        size_t k = 1;
        while (k < 3 && i + 1 + k < n && q[i + 1 + k] >= '0' && q[i + 1 + k] <= '9') k++;
        if (i + 1 + k < n && q[i + 1 + k] == '.') return 1;
    }
    return 0;
}

// re.search(r'\*\*(?=.*\d)[^\s\]]*\*\*', q) with Python semantics, by hand:
// at some "**", (1) a digit follows later on the same line ('.' does not match
// a newline), and (2) the run of characters after it that are neither
// whitespace nor ']' contains another "**". Catches bold numbers such as
// "**12**" or "**Q7**" (markup left over from scraped pages).
static int has_bold_with_digit(const char *q, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (q[i] != '*' || q[i + 1] != '*') continue;
        size_t start = i + 2, j;
        int digit_ahead = 0;
        for (j = start; j < n && q[j] != '\n';)
            if (py_isdigit(next_code_point(q, n, &j))) { digit_ahead = 1; break; }
        if (!digit_ahead) continue;
        for (j = start; j < n;) {
            size_t at = j;
            uint32_t c = next_code_point(q, n, &j);
            if (py_isspace(c) || c == ']') break;
            if (c == '*' && at + 1 < n && q[at + 1] == '*') return 1;
        }
    }
    return 0;
}

// quality: no Asymptote figure, no image link, no "p12."-style problem
// numbering, no bold digits. Exception: an [asy] question from an AIME source
// is kept whatever else it contains.
static int contains(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0) return 1;
    return 0;
}

static int passes_quality(const char *q, size_t n, const char *source_type) {
    int has_asy = contains(q, n, "[asy]");
    if (has_asy && strstr(source_type, "AIME") != NULL) return 1;
    return !has_asy && !contains(q, n, "![Image]") && !has_p_number_dot(q, n) && !has_bold_with_digit(q, n);
}

// difficulty: a question either Qwen2.5 model answered correctly is too easy.
static int solved_by_qwen(const PoolRow *row) { return row->qwen7b == 1 || row->qwen32b == 1; }

// ----------------------------------------------------------------------------
// a set of byte strings (open addressing, FNV-1a hashes, strings compared on
// a hash hit, so a collision can never drop a question). Used for word
// 8-grams (decontaminate) and whole questions (dedup).

typedef struct {
    uint64_t hash;
    size_t offset, len;      // the string is text.data[offset, offset+len)
    int used;
} StringSlot;

typedef struct {
    StringSlot *slots;
    size_t cap, count;
    ByteBuf text;
} StringSet;

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 0x100000001b3ull; }
    return h;
}

static StringSlot *string_set_find(const StringSet *set, const char *s, size_t n, uint64_t h) {
    size_t i = (size_t)h & (set->cap - 1);
    for (;; i = (i + 1) & (set->cap - 1)) {
        StringSlot *slot = &set->slots[i];
        if (!slot->used) return slot;
        if (slot->hash == h && slot->len == n && memcmp(set->text.data + slot->offset, s, n) == 0) return slot;
    }
}

// Adds s; returns 1 if it was new, 0 if it was already there.
static int string_set_add(StringSet *set, const char *s, size_t n) {
    if (2 * (set->count + 1) > set->cap) {
        StringSet grown = {0};
        grown.cap = set->cap ? 2 * set->cap : 1024;
        grown.slots = (StringSlot *)callocCheck(grown.cap, sizeof(StringSlot));
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i].used) {
                const StringSlot *old = &set->slots[i];
                *string_set_find(&grown, set->text.data + old->offset, old->len, old->hash) = *old;
            }
        free(set->slots);
        set->slots = grown.slots;
        set->cap = grown.cap;
    }
    uint64_t h = fnv1a(s, n);
    StringSlot *slot = string_set_find(set, s, n, h);
    if (slot->used) return 0;
    slot->used = 1;
    slot->hash = h;
    slot->offset = set->text.len;
    slot->len = n;
    bytebuf_append(&set->text, s, n);
    set->count++;
    return 1;
}

static int string_set_has(const StringSet *set, const char *s, size_t n) {
    return set->cap > 0 && string_set_find(set, s, n, fnv1a(s, n))->used;
}

static void string_set_free(StringSet *set) {
    free(set->slots);
    bytebuf_free(&set->text);
    memset(set, 0, sizeof *set);
}

// ----------------------------------------------------------------------------
// decontamination (s1-spec.md 4.2, data/decontaminate_util.py): lowercase,
// collapse whitespace, split into words (punctuation stays attached), and
// flag a question that shares any word 8-gram with any evaluation question.

#define NGRAM_WORDS 8

// Lowercases text and joins its whitespace-separated words with single
// spaces into norm; starts[k] is where word k begins. Returns the word count.
static size_t normalize_words(const char *text, size_t n, ByteBuf *norm, size_t **starts, size_t *starts_cap) {
    norm->len = 0;
    bytebuf_append(norm, "", 0);
    size_t words = 0;
    int in_word = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = next_code_point(text, n, &i);
        if (py_isspace(c)) { in_word = 0; continue; }
        if (!in_word) {
            if (words > 0) bytebuf_append(norm, " ", 1);
            if (words == *starts_cap) {
                *starts_cap = *starts_cap ? 2 * *starts_cap : 64;
                *starts = (size_t *)reallocCheck(*starts, *starts_cap * sizeof(size_t));
            }
            (*starts)[words++] = norm->len;
            in_word = 1;
        }
        utf8_put(norm, py_lower(c));
    }
    return words;
}

typedef struct {
    StringSet grams;
    ByteBuf norm;
    size_t *starts, starts_cap;
} NgramIndex;

// The byte range of word 8-gram k of the last normalised text.
static size_t ngram_at(const NgramIndex *ix, size_t words, size_t k, const char **s) {
    size_t end = k + NGRAM_WORDS < words ? ix->starts[k + NGRAM_WORDS] - 1 : ix->norm.len;
    *s = ix->norm.data + ix->starts[k];
    return end - ix->starts[k];
}

static void ngram_index_add(NgramIndex *ix, const char *text, size_t n) {
    size_t words = normalize_words(text, n, &ix->norm, &ix->starts, &ix->starts_cap);
    for (size_t k = 0; k + NGRAM_WORDS <= words; k++) {
        const char *s;
        size_t len = ngram_at(ix, words, k, &s);
        string_set_add(&ix->grams, s, len);
    }
}

// Questions of fewer than 8 words have no 8-gram and are never flagged.
static int ngram_index_hits(NgramIndex *ix, const char *text, size_t n) {
    size_t words = normalize_words(text, n, &ix->norm, &ix->starts, &ix->starts_cap);
    for (size_t k = 0; k + NGRAM_WORDS <= words; k++) {
        const char *s;
        size_t len = ngram_at(ix, words, k, &s);
        if (string_set_has(&ix->grams, s, len)) return 1;
    }
    return 0;
}

static void ngram_index_free(NgramIndex *ix) {
    string_set_free(&ix->grams);
    bytebuf_free(&ix->norm);
    free(ix->starts);
}

// Adds every question of an evaluation JSONL file ("question" or "problem").
static size_t ngram_index_add_file(NgramIndex *ix, const char *path, int skip_bad) {
    JsonlReader r;
    jsonl_open(&r, path, skip_bad);
    size_t count = 0;
    const JsonValue *obj;
    while ((obj = jsonl_next(&r)) != NULL) {
        const JsonValue *q = json_get(obj, "question");
        if (q == NULL) q = json_get(obj, "problem");
        if (q == NULL) { jsonl_bad(&r, "missing field \"question\" (or \"problem\")"); continue; }
        if (q->type != JSON_STRING) { jsonl_bad(&r, "question: expected a string, got %s", json_type_name(q->type)); continue; }
        ngram_index_add(ix, q->str, q->len);
        count++;
    }
    jsonl_close(&r);
    return count;
}

// ----------------------------------------------------------------------------
// selection (s1-spec.md 4.5): a seed set, then domain draws (uniform up to
// 70% of n, weighted by the benchmarks' domain histogram after that), and
// inside a domain a draw that prefers long traces with weight 2^-rank.

typedef enum { MODE_S1, MODE_RANDOM, MODE_DIVERSE, MODE_LONGEST } SelectMode;
static const char *mode_names[] = {"s1", "random", "diverse", "longest"};

#define SOURCE_AIME "qq8933/AIME_1983_2024"
#define SOURCE_GPQA "Idavidrein/gpqa"
#define SOURCE_MATH "qfq/openaimath"

typedef struct {
    SelectMode mode;
    size_t n;                    // questions to select (s1: 1000)
    uint64_t seed;
    int64_t math_seed_length;    // a correct MATH question enters the seed set above this gemini_length (5600)
} SelectConfig;

// The seed set: every question Gemini got right that comes from GPQA or AIME,
// and every correct MATH question with a long trace (the notebook's code).
static int is_seed_row(const PoolRow *row, int64_t math_seed_length) {
    if (row->gemini != 1) return 0;
    if (strcmp(row->source_type, SOURCE_GPQA) == 0 || strcmp(row->source_type, SOURCE_AIME) == 0) return 1;
    return strstr(row->source_type, SOURCE_MATH) != NULL && row->length > math_seed_length;
}

// Candidates grouped by domain (domains sorted by name), each domain's rows
// ordered longest trace first, so a row's position is its rank (rank 0 =
// longest; equal lengths keep input order, where numpy's order is arbitrary).
typedef struct {
    size_t count;
    char **names;
    size_t **rows;
    size_t *len;
    int64_t *weight;             // benchmark weight w_d (0: not a benchmark domain)
} Domains;

static const PoolRow *sort_rows_base;   // the rows the index comparators below look at

static int cmp_size_t(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_domain_then_length(const void *a, const void *b) {
    const PoolRow *x = &sort_rows_base[*(const size_t *)a], *y = &sort_rows_base[*(const size_t *)b];
    int c = strcmp(x->domain, y->domain);
    if (c) return c;
    if (x->length != y->length) return x->length > y->length ? -1 : 1;
    return cmp_size_t(a, b);
}

static int cmp_length_desc(const void *a, const void *b) {
    const PoolRow *x = &sort_rows_base[*(const size_t *)a], *y = &sort_rows_base[*(const size_t *)b];
    if (x->length != y->length) return x->length > y->length ? -1 : 1;
    return cmp_size_t(a, b);
}

// Benchmark weights: a_d AIME and g_d GPQA questions per domain in the pool;
// r = 0.5 * sum(a) / sum(g); w_d = a_d + int(g_d * r). So AIME and GPQA count
// about 2:1, whatever their sizes. (With no GPQA question the weights are the
// AIME counts alone, where the notebook would divide by zero.)
static void domains_benchmark_weights(Domains *d, const PoolRow *rows) {
    int64_t *aime = (int64_t *)callocCheck(d->count, sizeof(int64_t));
    int64_t *gpqa = (int64_t *)callocCheck(d->count, sizeof(int64_t));
    int64_t sum_aime = 0, sum_gpqa = 0;
    for (size_t k = 0; k < d->count; k++)
        for (size_t i = 0; i < d->len[k]; i++) {
            const char *src = rows[d->rows[k][i]].source_type;
            if (strcmp(src, SOURCE_AIME) == 0) { aime[k]++; sum_aime++; }
            if (strcmp(src, SOURCE_GPQA) == 0) { gpqa[k]++; sum_gpqa++; }
        }
    double ratio = sum_gpqa > 0 ? 0.5 * (double)sum_aime / (double)sum_gpqa : 0.0;
    for (size_t k = 0; k < d->count; k++) d->weight[k] = aime[k] + (int64_t)((double)gpqa[k] * ratio);
    free(aime);
    free(gpqa);
}

static void domains_build(Domains *d, const PoolRow *rows, const size_t *cand, size_t ncand) {
    size_t *sorted = (size_t *)mallocCheck(ncand * sizeof(size_t));
    memcpy(sorted, cand, ncand * sizeof(size_t));
    sort_rows_base = rows;
    qsort(sorted, ncand, sizeof(size_t), cmp_domain_then_length);
    memset(d, 0, sizeof *d);
    size_t cap = ncand ? ncand : 1;
    d->names = (char **)mallocCheck(cap * sizeof(char *));
    d->rows = (size_t **)mallocCheck(cap * sizeof(size_t *));
    d->len = (size_t *)mallocCheck(cap * sizeof(size_t));
    d->weight = (int64_t *)callocCheck(cap, sizeof(int64_t));
    for (size_t i = 0; i < ncand;) {
        size_t j = i;
        while (j < ncand && strcmp(rows[sorted[j]].domain, rows[sorted[i]].domain) == 0) j++;
        d->names[d->count] = rows[sorted[i]].domain;
        d->len[d->count] = j - i;
        d->rows[d->count] = (size_t *)mallocCheck((j - i) * sizeof(size_t));
        memcpy(d->rows[d->count], sorted + i, (j - i) * sizeof(size_t));
        d->count++;
        i = j;
    }
    free(sorted);
    domains_benchmark_weights(d, rows);
}

static void domains_free(Domains *d) {
    for (size_t k = 0; k < d->count; k++) free(d->rows[k]);
    free(d->names);
    free(d->rows);
    free(d->len);
    free(d->weight);
    memset(d, 0, sizeof *d);
}

// Draws a rank in [0, m) with P(k) proportional to 2^-k: the longest trace
// is picked half the time, the second longest a quarter, and so on.
static size_t draw_rank(Rng *rng, size_t m) {
    double total = 2.0 - ldexp(1.0, 1 - (int)(m < 1100 ? m : 1100));   // sum of 2^-k, k < m
    double u = rng_uniform(rng) * total, p = 1.0;
    for (size_t k = 0; k + 1 < m; k++) {
        if (u < p) return k;
        u -= p;
        p *= 0.5;
    }
    return m - 1;
}

// Removes and returns item k of a domain, keeping the others in rank order.
static size_t domain_take(Domains *d, size_t dom, size_t k) {
    size_t row = d->rows[dom][k];
    memmove(d->rows[dom] + k, d->rows[dom] + k + 1, (d->len[dom] - k - 1) * sizeof(size_t));
    d->len[dom]--;
    return row;
}

typedef struct {
    size_t num_seeds;            // questions in the seed set
    size_t num_draws;            // domain draws made
    size_t num_repeats;          // draws that hit an already selected question (a wasted iteration, as in the notebook)
    size_t phase_boundary;       // |S| from which domains are drawn by benchmark weight
} SelectStats;

// The notebook's loop. The domain lists keep the seed questions, so drawing
// one again adds nothing: S is a set.
static size_t select_s1(const PoolRow *rows, size_t num_rows, const size_t *cand, size_t ncand, const SelectConfig *cfg,
                        Rng *rng, size_t *out, SelectStats *st) {
    unsigned char *chosen = (unsigned char *)callocCheck(num_rows, 1);
    size_t count = 0;
    for (size_t i = 0; i < ncand && count < cfg->n; i++)
        if (is_seed_row(&rows[cand[i]], cfg->math_seed_length)) { chosen[cand[i]] = 1; out[count++] = cand[i]; }
    st->num_seeds = count;
    st->phase_boundary = cfg->n * 7 / 10;
    Domains d;
    domains_build(&d, rows, cand, ncand);
    size_t *active = (size_t *)mallocCheck((d.count ? d.count : 1) * sizeof(size_t));
    size_t num_active = 0;
    int64_t bench_total = 0;
    for (size_t k = 0; k < d.count; k++) { active[num_active++] = k; bench_total += d.weight[k]; }
    while (count < cfg->n && num_active > 0) {
        size_t a;
        if (count < st->phase_boundary || bench_total == 0) {
            a = (size_t)rng_below(rng, num_active);
        } else {
            // categorical over the non-empty benchmark domains, weights w_d
            int64_t u = (int64_t)rng_below(rng, (uint64_t)bench_total);
            for (a = 0; a < num_active; a++) {
                u -= d.weight[active[a]];
                if (u < 0) break;
            }
        }
        size_t dom = active[a];
        size_t row = domain_take(&d, dom, draw_rank(rng, d.len[dom]));
        st->num_draws++;
        if (chosen[row]) st->num_repeats++;
        else { chosen[row] = 1; out[count++] = row; }
        if (d.len[dom] == 0) {
            bench_total -= d.weight[dom];
            memmove(active + a, active + a + 1, (num_active - a - 1) * sizeof(size_t));
            num_active--;
        }
    }
    free(active);
    free(chosen);
    domains_free(&d);
    return count;
}

// 1K-diverse (paper Table 2): a domain uniformly, then a question uniformly.
static size_t select_diverse(const PoolRow *rows, const size_t *cand, size_t ncand, size_t n, Rng *rng, size_t *out) {
    Domains d;
    domains_build(&d, rows, cand, ncand);
    size_t count = 0;
    size_t *active = (size_t *)mallocCheck((d.count ? d.count : 1) * sizeof(size_t));
    size_t num_active = 0;
    for (size_t k = 0; k < d.count; k++) active[num_active++] = k;
    while (count < n && num_active > 0) {
        size_t a = (size_t)rng_below(rng, num_active), dom = active[a];
        out[count++] = domain_take(&d, dom, (size_t)rng_below(rng, d.len[dom]));
        if (d.len[dom] == 0) { memmove(active + a, active + a + 1, (num_active - a - 1) * sizeof(size_t)); num_active--; }
    }
    free(active);
    domains_free(&d);
    return count;
}

// Selects up to cfg->n rows from the candidates; out receives them in the
// order they were chosen. Returns how many were chosen (fewer than n only if
// the candidates run out).
static size_t select_rows(const PoolRow *rows, size_t num_rows, const size_t *cand, size_t ncand, const SelectConfig *cfg,
                          size_t *out, SelectStats *st) {
    memset(st, 0, sizeof *st);
    Rng rng;
    rng_init(&rng, cfg->seed);
    size_t n = cfg->n < ncand ? cfg->n : ncand;
    switch (cfg->mode) {
        case MODE_S1: return select_s1(rows, num_rows, cand, ncand, cfg, &rng, out, st);
        case MODE_DIVERSE: return select_diverse(rows, cand, ncand, cfg->n, &rng, out);
        case MODE_RANDOM: {   // 1K-random: a uniform sample without replacement (partial Fisher-Yates)
            size_t *perm = (size_t *)mallocCheck((ncand ? ncand : 1) * sizeof(size_t));
            memcpy(perm, cand, ncand * sizeof(size_t));
            for (size_t i = 0; i < n; i++) {
                size_t j = i + (size_t)rng_below(&rng, ncand - i);
                size_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
                out[i] = perm[i];
            }
            free(perm);
            return n;
        }
        case MODE_LONGEST: {  // 1K-longest: the n longest traces
            size_t *sorted = (size_t *)mallocCheck((ncand ? ncand : 1) * sizeof(size_t));
            memcpy(sorted, cand, ncand * sizeof(size_t));
            sort_rows_base = rows;
            qsort(sorted, ncand, sizeof(size_t), cmp_length_desc);
            memcpy(out, sorted, n * sizeof(size_t));
            free(sorted);
            return n;
        }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the select command: the stages in order, one line each, then the report

#define MAX_STAGES 8

typedef struct {
    const char *name[MAX_STAGES];
    size_t in[MAX_STAGES], out[MAX_STAGES];
    int count;
} StageLog;

static void stage_done(StageLog *log, const char *name, size_t in, size_t out) {
    printf("%s: %zu -> %zu\n", name, in, out);
    fflush(stdout);
    log->name[log->count] = name;
    log->in[log->count] = in;
    log->out[log->count] = out;
    log->count++;
}

// Keeps the candidates for which keep(row) holds; returns the new count.
static size_t filter_rows(const Pool *pool, size_t *cand, size_t ncand, int (*keep)(const PoolRow *)) {
    size_t k = 0;
    for (size_t i = 0; i < ncand; i++)
        if (keep(&pool->rows[cand[i]])) cand[k++] = cand[i];
    return k;
}

static int keep_not_na(const PoolRow *row) { return !row_has_na(row); }
static int keep_quality(const PoolRow *row) { return passes_quality(row->question, row->question_len, row->source_type); }
static int keep_unsolved(const PoolRow *row) { return !solved_by_qwen(row); }

static size_t filter_decontaminate(const Pool *pool, size_t *cand, size_t ncand, NgramIndex *ix) {
    size_t k = 0;
    for (size_t i = 0; i < ncand; i++) {
        const PoolRow *row = &pool->rows[cand[i]];
        if (!ngram_index_hits(ix, row->question, row->question_len)) cand[k++] = cand[i];
    }
    return k;
}

// Exact-string dedup on the question; the first occurrence is kept.
static size_t filter_dedup(const Pool *pool, size_t *cand, size_t ncand) {
    StringSet seen = {0};
    size_t k = 0;
    for (size_t i = 0; i < ncand; i++) {
        const PoolRow *row = &pool->rows[cand[i]];
        if (string_set_add(&seen, row->question, row->question_len)) cand[k++] = cand[i];
    }
    string_set_free(&seen);
    return k;
}

// The nearest-rank percentile p (0..100) of sorted[0..n).
static int64_t percentile(const int64_t *sorted, size_t n, double p) {
    if (n == 0) return 0;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    return sorted[k > 0 ? k - 1 : 0];
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void report_lengths(FILE *fp, const char *what, const PoolRow *rows, const size_t *idx, size_t n) {
    int64_t *len = (int64_t *)mallocCheck((n ? n : 1) * sizeof(int64_t));
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) { len[i] = rows[idx[i]].length; total += len[i]; }
    qsort(len, n, sizeof(int64_t), cmp_i64);
    fprintf(fp, "  %-10s n %6zu  total %9lld  mean %8.1f  min %6lld  p10 %6lld  p25 %6lld  p50 %6lld  p75 %6lld  p90 %6lld  max %6lld\n",
            what, n, (long long)total, n ? (double)total / (double)n : 0.0, (long long)(n ? len[0] : 0),
            (long long)percentile(len, n, 10), (long long)percentile(len, n, 25), (long long)percentile(len, n, 50),
            (long long)percentile(len, n, 75), (long long)percentile(len, n, 90), (long long)(n ? len[n - 1] : 0));
    free(len);
}

static void write_report(FILE *fp, const char *pool_path, const SelectConfig *cfg, size_t num_eval_questions,
                         const StageLog *log, const Pool *pool, const size_t *cand, size_t ncand, const size_t *sel,
                         size_t nsel, const SelectStats *st) {
    fprintf(fp, "s1K selection report\n\ninput %s, mode %s, seed %llu, n %zu\n", pool_path, mode_names[cfg->mode],
            (unsigned long long)cfg->seed, cfg->n);
    fprintf(fp, "decontaminated against %zu eval questions; %zu bad input lines skipped\n\nstages\n", num_eval_questions,
            pool->num_bad);
    for (int s = 0; s < log->count; s++) fprintf(fp, "  %-14s %7zu -> %7zu\n", log->name[s], log->in[s], log->out[s]);
    if (cfg->mode != MODE_S1)
        fprintf(fp, "  (--mode %s selects from the quality-filtered pool: the difficulty stage keeps every row)\n",
                mode_names[cfg->mode]);
    else
        fprintf(fp, "\nseed set %zu questions; %zu domain draws, %zu of them repeats of a chosen question; benchmark-weighted draws from |S| = %zu\n",
                st->num_seeds, st->num_draws, st->num_repeats, st->phase_boundary);
    Domains d;
    domains_build(&d, pool->rows, cand, ncand);
    fprintf(fp, "\nper-domain histogram (selected / selection pool, benchmark weight)\n");
    for (size_t k = 0; k < d.count; k++) {
        size_t hits = 0;
        for (size_t i = 0; i < nsel; i++) hits += strcmp(pool->rows[sel[i]].domain, d.names[k]) == 0;
        fprintf(fp, "  %-30s %6zu / %6zu  w %lld\n", d.names[k], hits, d.len[k], (long long)d.weight[k]);
    }
    domains_free(&d);
    fprintf(fp, "\ntrace length (gemini_length)\n");
    report_lengths(fp, "selected", pool->rows, sel, nsel);
    report_lengths(fp, "pool", pool->rows, cand, ncand);
}

// Copies the selected rows' lines, in input order, from the pool file.
static void write_selected_lines(AtomicFile *af, const char *pool_path, const Pool *pool, size_t *sel, size_t nsel) {
    qsort(sel, nsel, sizeof(size_t), cmp_size_t);
    FILE *in = fopenCheck(pool_path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < nsel; i++) {
        const PoolRow *row = &pool->rows[sel[i]];
        if (row->nbytes + 1 > cap) { cap = row->nbytes + 1; buf = (char *)reallocCheck(buf, cap); }
        if (fseek(in, row->offset, SEEK_SET) != 0) die("%s: cannot seek to line %zu", pool_path, row->line_no);
        freadCheck(buf, 1, row->nbytes, in, pool_path);
        fwriteCheck(buf, 1, row->nbytes, af->fp, af->tmp_path);
        fwriteCheck("\n", 1, 1, af->fp, af->tmp_path);
    }
    free(buf);
    fclose(in);
}

// ----------------------------------------------------------------------------
// s1's training layout and TRL's loss mask (s1-spec.md 2-3)

#define RESPONSE_TEMPLATE "<|im_start|>assistant\n"
#define INSTRUCTION_TEMPLATE "<|im_start|>user"

// The two templates of s1's collator (train/sft.py), each tokenised on its own
// as TRL does. Never hard-coded: a small trained tokenizer has other ids, and
// often several tokens for "assistant".
typedef struct {
    IdList response;             // "<|im_start|>assistant\n": Qwen 151644 77091 198
    IdList instruction;          // "<|im_start|>user": Qwen 151644 872
} MaskTemplates;

static void mask_templates_init(Tokenizer *tok, MaskTemplates *mt) {
    int im_start = tokenizer_token_id(tok, "<|im_start|>");
    if (im_start < 0 || tokenizer_token_id(tok, "<|im_end|>") < 0)
        die("tokenizer has no <|im_start|>/<|im_end|> tokens, so it cannot encode s1's chat layout");
    memset(mt, 0, sizeof *mt);
    tokenizer_encode(tok, RESPONSE_TEMPLATE, strlen(RESPONSE_TEMPLATE), 1, &mt->response);
    tokenizer_encode(tok, INSTRUCTION_TEMPLATE, strlen(INSTRUCTION_TEMPLATE), 1, &mt->instruction);
    if (mt->response.len < 2 || mt->response.data[0] != (uint32_t)im_start || mt->instruction.len < 2)
        die("tokenizer does not encode \"<|im_start|>assistant\\n\" as the <|im_start|> token and text");
}

static void mask_templates_free(MaskTemplates *mt) {
    idlist_free(&mt->response);
    idlist_free(&mt->instruction);
}

// Start positions of every occurrence of tmpl in ids (ids must be long enough for tmpl).
static size_t find_all(const uint32_t *ids, size_t n, const IdList *tmpl, size_t *at) {
    size_t count = 0;
    for (size_t i = 0; i + tmpl->len <= n; i++)
        if (memcmp(ids + i, tmpl->data, tmpl->len * sizeof(uint32_t)) == 0) at[count++] = i;
    return count;
}

// The loss mask of TRL 0.12's DataCollatorForCompletionOnlyLM with s1's
// instruction and response templates (s1-spec.md 3.1): mask[t] = 1 if token t
// is a target. Human turns start at each "<|im_start|>user", responses after
// each "<|im_start|>assistant\n"; everything from 0 to the first response, and
// from each later human turn to its response, is masked, and so is the tail
// after the last human turn when it has no response. For an s1 sample that
// leaves every token after "<|im_start|>assistant\n" (the closing <|im_end|>
// and "\n" included). No complete response or human template (truncation cut
// it): no targets at all. Returns the number of targets.
static size_t trl_completion_mask(const uint32_t *ids, size_t n, const MaskTemplates *mt, uint8_t *mask) {
    size_t *resp = (size_t *)mallocCheck((n + 1) * sizeof(size_t)), *human = (size_t *)mallocCheck((n + 2) * sizeof(size_t));
    size_t nr = find_all(ids, n, &mt->response, resp), nh = find_all(ids, n, &mt->instruction, human + 1);
    for (size_t k = 0; k < nr; k++) resp[k] += mt->response.len;   // a response starts after its template
    size_t *h = human + 1;
    if (nr > 0 && nh > 0 && h[0] > resp[0]) { h = human; h[0] = 0; nh++; }   // TRL's [0] + human_idxs
    memset(mask, nr > 0 && nh > 0, n);
    if (nr > 0 && nh > 0) {
        for (size_t k = 0; k < nr && k < nh; k++)
            for (size_t t = k == 0 ? 0 : h[k]; t < resp[k]; t++) mask[t] = 0;
        if (nr < nh) memset(mask + h[nh - 1], 0, n - h[nh - 1]);
    }
    free(resp);
    free(human);
    size_t targets = 0;
    for (size_t t = 0; t < n; t++) targets += mask[t];
    return targets;
}

// Tokenises one example in the s1 layout, right-truncated at block_size, and
// masks it (TRL masks the truncated sequence). seq and mask are overwritten;
// *truncated says whether anything was cut. Returns the number of targets.
static size_t s1_encode(Tokenizer *tok, const MaskTemplates *mt, const char *question, const char *thinking,
                        const char *attempt, size_t block_size, IdList *seq, ByteBuf *mask, int *truncated) {
    char *text = chat_s1_train(question, thinking, attempt);
    seq->len = 0;
    tokenizer_encode(tok, text, strlen(text), 1, seq);
    free(text);
    *truncated = seq->len > block_size;
    if (*truncated) seq->len = block_size;
    mask->len = 0;
    for (size_t t = 0; t < seq->len; t++) bytebuf_append(mask, "", 1);   // room for one byte per token
    return trl_completion_mask(seq->data, seq->len, mt, (uint8_t *)mask->data);
}

typedef struct {
    uint64_t *offsets;           // (num_sequences+1,)
    size_t num_sequences, offsets_cap;
    IdList ids;
    ByteBuf mask;
} ShardBuilder;

static void shard_builder_add(ShardBuilder *b, const IdList *seq, const uint8_t *mask) {
    if (b->num_sequences + 2 > b->offsets_cap) {
        b->offsets_cap = b->offsets_cap ? 2 * b->offsets_cap : 1024;
        b->offsets = (uint64_t *)reallocCheck(b->offsets, b->offsets_cap * sizeof(uint64_t));
    }
    if (b->num_sequences == 0) b->offsets[0] = 0;
    for (size_t t = 0; t < seq->len; t++) idlist_push(&b->ids, seq->data[t]);
    bytebuf_append(&b->mask, mask, seq->len);
    b->num_sequences++;
    b->offsets[b->num_sequences] = b->ids.len;
}

static void shard_builder_free(ShardBuilder *b) {
    free(b->offsets);
    idlist_free(&b->ids);
    bytebuf_free(&b->mask);
}

// ----------------------------------------------------------------------------
// the synthetic pool: multi-digit arithmetic; traces that glance, then sometimes check.
//
// Five domains (addition, subtraction, multiplication by one digit,
// comparison, linear equations). Every question has 8 or more words and each
// of its word 8-grams holds all its numbers, so two questions share an 8-gram
// only if they are the same question. A trace opens with a glance, the answer
// written down at once ("At a glance, 47+38=85."), often wrong; most traces
// end there, the others write "Wait", work the problem out carefully in a
// fixed line format ("7+8+0=15: write 5, carry 1.") and end with the right
// answer (synth_trace() has the details). This is the behaviour s1's budget
// forcing exploits, in miniature: a model trained on these traces ends its
// thinking too early, and what it writes after a forced "Wait" is more
// reliable than its glance (tutorial/demo.md). isgeminicorrect says whether
// the trace's final answer is right. The attempt ends in "Answer: <n>" or
// "\boxed{<n>}". Only ASCII letters, digits, space, newline and ".,:;=+-*/?!()[]{}\"
// appear, so a small BPE vocabulary covers it. gemini_length is the trace's
// length in bytes (a stand-in for its token count).
//
// Train and eval questions never coincide, for any seeds: a question is an
// eval question iff FNV-1a(question) % 8 == 0. A few pool rows are
// deliberately contaminated: they copy the first eval questions of the same
// seed, so `select --eval` with `synth --eval-set` of that seed removes them.

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_CMP, OP_LIN, NUM_OPS } SynthOp;
static const char *op_domains[NUM_OPS] = {"addition", "subtraction", "multiplication", "comparison", "linear equations"};

typedef struct {
    SynthOp op;
    int64_t a, b, c;             // ADD/SUB/MUL/CMP: a op b; LIN: a*x + b = c
} Problem;

// How often a trace checks its first answer after "Wait", and how often that
// first answer (the glance) has a slip, in percent. The two are drawn
// independently, so nothing a model can see says whether a trace will check;
// checks stay a minority, so a model trained on these traces prefers to end
// its thinking after the glance, as s1's models end theirs too early.
enum { SYNTH_CHECK_PERCENT = 45, SYNTH_SLIP_PERCENT = 65 };

static void bprintf(ByteBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(ByteBuf *b, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    bytebuf_append(b, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

static int64_t pow10i(int d) { int64_t p = 1; while (d-- > 0) p *= 10; return p; }

static int64_t random_number(Rng *rng, int digits) { return pow10i(digits - 1) + (int64_t)rng_below(rng, (uint64_t)(9 * pow10i(digits - 1))); }

static int num_digits(int64_t x) { int d = 1; while (x >= 10) { x /= 10; d++; } return d; }

static Problem random_problem(Rng *rng, int max_digits) {
    Problem p = {0};
    p.op = (SynthOp)rng_below(rng, NUM_OPS);
    int da = 2 + (int)rng_below(rng, (uint64_t)(max_digits - 1)), db = 2 + (int)rng_below(rng, (uint64_t)(max_digits - 1));
    switch (p.op) {
        case OP_ADD: p.a = random_number(rng, da); p.b = random_number(rng, db); break;
        case OP_SUB:
            p.a = random_number(rng, da); p.b = random_number(rng, db);
            if (p.a < p.b) { int64_t t = p.a; p.a = p.b; p.b = t; }
            if (p.a == p.b) p.a++;
            break;
        case OP_MUL: p.a = random_number(rng, da); p.b = 2 + (int64_t)rng_below(rng, 8); break;
        case OP_CMP:
            p.a = random_number(rng, da);
            if (rng_below(rng, 4) == 0) p.b = random_number(rng, db);      // often a different length
            else {                                                          // same length, one digit differs
                int64_t place = pow10i((int)rng_below(rng, (uint64_t)da));
                int64_t digit = p.a / place % 10, other = (digit + 1 + (int64_t)rng_below(rng, 9)) % 10;
                p.b = p.a + (other - digit) * place;
                if (num_digits(p.b) != da) p.b = p.a + place * (digit < 9 ? 1 : -1);
            }
            if (p.a == p.b) p.b = p.a + 1;
            break;
        case OP_LIN: {
            int64_t x = 2 + (int64_t)rng_below(rng, (uint64_t)pow10i(da - 1) * 2);
            p.a = 2 + (int64_t)rng_below(rng, 8);
            p.b = 1 + (int64_t)rng_below(rng, (uint64_t)pow10i(db) - 1);
            p.c = p.a * x + p.b;
            break;
        }
        default: break;
    }
    return p;
}

static int64_t problem_answer(const Problem *p) {
    switch (p->op) {
        case OP_ADD: return p->a + p->b;
        case OP_SUB: return p->a - p->b;
        case OP_MUL: return p->a * p->b;
        case OP_CMP: return p->a > p->b ? p->a : p->b;
        case OP_LIN: return (p->c - p->b) / p->a;
        default: return 0;
    }
}

static void problem_question(const Problem *p, ByteBuf *q) {
    q->len = 0;
    bytebuf_append(q, "", 0);
    long long a = p->a, b = p->b, c = p->c;
    switch (p->op) {
        case OP_ADD: bprintf(q, "Find the sum of %lld and %lld in base ten.", a, b); break;
        case OP_SUB: bprintf(q, "Find the difference of %lld minus %lld in base ten.", a, b); break;
        case OP_MUL: bprintf(q, "Find the product of %lld times %lld in base ten.", a, b); break;
        case OP_CMP: bprintf(q, "Which number is larger, %lld or %lld? Give the larger one.", a, b); break;
        case OP_LIN: bprintf(q, "Solve %lldx+%lld=%lld for x and state the value.", a, b, c); break;
        default: break;
    }
}

static const char *op_symbol(SynthOp op) { return op == OP_ADD ? "+" : op == OP_SUB ? "-" : "*"; }

// The glance's slip: a wrong answer with as many digits as the right one,
// drawn at random, so that a slipped glance says nothing about the right
// answer's digits (a check that copies the glance's digits instead of working
// them out gains nothing). A comparison names the smaller number.
static int64_t slipped_answer(const Problem *p, Rng *rng) {
    int64_t right = problem_answer(p);
    if (p->op == OP_CMP) return p->a + p->b - right;
    int digits = num_digits(right);
    int64_t low = digits == 1 ? 1 : pow10i(digits - 1), span = pow10i(digits) - low;
    int64_t slipped = low + (int64_t)rng_below(rng, (uint64_t)(span - 1));
    return slipped >= right ? slipped + 1 : slipped;   // uniform over the other numbers of that length
}

// "47+38=85" for an arithmetic answer, "x=23" for an equation, "57 is larger" for a comparison
static void state_answer(const Problem *p, int64_t answer, ByteBuf *t) {
    long long a = p->a, b = p->b, v = answer;
    if (p->op == OP_CMP) bprintf(t, "%lld is larger", v);
    else if (p->op == OP_LIN) bprintf(t, "x=%lld", v);
    else bprintf(t, "%lld%s%lld=%lld", a, op_symbol(p->op), b, v);
}

// The column-by-column work of an addition, subtraction or multiplication,
// least significant digit first, one line per column; it always arrives at the
// right answer.
static void work_columns(const Problem *p, ByteBuf *t) {
    int64_t a = p->a, b = p->b;
    int carry = 0;
    for (int col = 0; a > 0 || (p->op != OP_MUL && b > 0) || carry > 0; col++) {
        int x = (int)(a % 10), y = p->op == OP_MUL ? (int)b : (int)(b % 10);
        if (p->op == OP_ADD || p->op == OP_MUL) {
            int s = p->op == OP_ADD ? x + y + carry : x * y + carry;
            bprintf(t, "%d%s%d+%d=%d: write %d, carry %d.\n", x, op_symbol(p->op), y, carry, s, s % 10, s / 10);
            carry = s / 10;
        } else {
            int borrow = x - y - carry < 0, top = x + 10 * borrow, d = top - y - carry;
            bprintf(t, "%d-%d-%d=%d: write %d, borrow %d.\n", top, y, carry, d, d, borrow);
            carry = borrow;
        }
        a /= 10;
        if (p->op != OP_MUL) b /= 10;
    }
}

// Comparison from the left, digit by digit (or by the number of digits).
static void work_compare(const Problem *p, ByteBuf *t) {
    long long a = p->a, b = p->b;
    int da = num_digits(p->a), db = num_digits(p->b);
    if (da != db) { bprintf(t, "%lld has %d digits and %lld has %d digits. More digits means larger.\n", a, da, b, db); return; }
    bprintf(t, "Both numbers have %d digits. Compare from the left.\n", da);
    for (int k = da - 1; k >= 0; k--) {
        int x = (int)(p->a / pow10i(k) % 10), y = (int)(p->b / pow10i(k) % 10);
        if (x == y) { bprintf(t, "%d and %d: equal.\n", x, y); continue; }
        bprintf(t, "%d and %d: %d is larger.\n", x, y, x > y ? x : y);
        return;
    }
}

// The equation solved step by step, then the solution put back in.
static void work_linear(const Problem *p, ByteBuf *t) {
    long long k = p->a, c = p->b, r = p->c, m = r - c, x = problem_answer(p);
    bprintf(t, "Subtract %lld from both sides: %lldx=%lld-%lld=%lld.\nDivide both sides by %lld: x=%lld.\n", c, k, r, c, m, k, x);
    bprintf(t, "Put it back: %lld*%lld+%lld=%lld+%lld=%lld.\n", k, x, c, k * x, c, r);
}

// Trace and attempt for p; returns whether the final answer is right.
//
// Every trace starts with a glance: the answer written down at once, with no
// work shown ("At a glance, 47+38=85."). It has a slip SYNTH_SLIP_PERCENT of
// the time. Most traces end there, right or wrong. The others write "Wait",
// then work the problem carefully (columns, digits from the left, or the
// equation step by step) and state the result of that work, which is always
// right: "So 47+38=85, as the glance said." or "So 47+38=85, not 86." The
// attempt gives the last answer the thinking stated.
static int synth_trace(const Problem *p, Rng *rng, ByteBuf *thinking, ByteBuf *attempt) {
    static const char *nouns[NUM_OPS] = {"sum", "difference", "product", "larger number", "value of x"};
    static const char *careful[NUM_OPS] = {"add column by column from the right", "subtract column by column from the right",
                                           "multiply column by column from the right", "compare digit by digit",
                                           "solve it step by step"};
    int checks = rng_below(rng, 100) < SYNTH_CHECK_PERCENT, slips = rng_below(rng, 100) < SYNTH_SLIP_PERCENT;
    int64_t right = problem_answer(p), glance = slips ? slipped_answer(p, rng) : right, final = glance;
    thinking->len = 0;
    bytebuf_append(thinking, "", 0);
    bprintf(thinking, "At a glance, ");
    state_answer(p, glance, thinking);
    bprintf(thinking, ".");
    if (checks) {
        bprintf(thinking, "\nWait, let me %s.\n", careful[p->op]);
        if (p->op == OP_CMP) work_compare(p, thinking);
        else if (p->op == OP_LIN) work_linear(p, thinking);
        else work_columns(p, thinking);
        bprintf(thinking, "So ");
        state_answer(p, right, thinking);
        if (glance == right) bprintf(thinking, ", as the glance said.");
        else bprintf(thinking, ", not %lld.", (long long)glance);
        final = right;
    }
    attempt->len = 0;
    bytebuf_append(attempt, "", 0);
    if (rng_below(rng, 2)) bprintf(attempt, "The %s is %lld.\nAnswer: %lld", nouns[p->op], (long long)final, (long long)final);
    else bprintf(attempt, "The %s is \\boxed{%lld}.", nouns[p->op], (long long)final);
    return final == right;
}

static int is_eval_question(const ByteBuf *q) { return fnv1a(q->data, q->len) % 8 == 0; }

// The next problem of the given class (train or eval) not seen before.
static Problem next_problem(Rng *rng, int max_digits, int want_eval, StringSet *seen, ByteBuf *q) {
    for (int tries = 0; tries < 100000; tries++) {
        Problem p = random_problem(rng, max_digits);
        problem_question(&p, q);
        if (is_eval_question(q) == want_eval && string_set_add(seen, q->data, q->len)) return p;
    }
    die("synth: ran out of new problems with up to %d digits; use a larger --max-digits or a smaller --n", max_digits);
}

// What a featurised row of the pool can be, to make every stage work.
typedef enum {
    ROW_CLEAN, ROW_NA_DOMAIN, ROW_NA_GRADES, ROW_NA_TRACE, ROW_ASY, ROW_ASY_AIME, ROW_IMAGE, ROW_PNUM, ROW_BOLD,
    ROW_CONTAMINATED, ROW_DUPLICATE, NUM_ROW_KINDS
} RowKind;
// percent of rows of each kind (ROW_CLEAN takes the rest)
static const int row_kind_percent[NUM_ROW_KINDS] = {0, 2, 2, 2, 2, 2, 1, 1, 2, 3, 3};

static RowKind random_row_kind(Rng *rng) {
    int u = (int)rng_below(rng, 100);
    for (int k = 1; k < NUM_ROW_KINDS; k++) {
        if (u < row_kind_percent[k]) return (RowKind)k;
        u -= row_kind_percent[k];
    }
    return ROW_CLEAN;
}

// Sources: AIME-like rows lean to multiplication and equations, GPQA-like
// rows to comparison and subtraction, so the benchmark weights differ by domain.
static const char *random_source(Rng *rng, SynthOp op) {
    static const int aime[NUM_OPS] = {3, 0, 12, 0, 12}, gpqa[NUM_OPS] = {0, 5, 0, 15, 0};
    int u = (int)rng_below(rng, 100);
    if (u < aime[op]) return SOURCE_AIME;
    u -= aime[op];
    if (u < gpqa[op]) return SOURCE_GPQA;
    u -= gpqa[op];
    if (u < 30) return "qfq/openaimath/Prealgebra";
    return "AI-MO/NuminaMath-CoT/synthetic_math";
}

static void write_json_field(FILE *fp, const char *key, const char *value, int first) {
    fprintf(fp, "%s\"%s\": ", first ? "{" : ", ", key);
    if (value) json_write_string(fp, value, strlen(value));
    else fputs("null", fp);
}

static const char *json_bool(int v) { return v < 0 ? "null" : v ? "true" : "false"; }

typedef struct {
    size_t n;
    uint64_t seed;
    int max_digits;
    int eval_set;
} SynthConfig;

static void synth_eval_set(FILE *fp, const SynthConfig *cfg) {
    Rng rng;
    rng_init(&rng, cfg->seed ^ 0xe7a15e7e7a15e7e7ull);
    StringSet seen = {0};
    ByteBuf q = {0};
    for (size_t i = 0; i < cfg->n; i++) {
        Problem p = next_problem(&rng, cfg->max_digits, 1, &seen, &q);
        char answer[32];
        snprintf(answer, sizeof answer, "%lld", (long long)problem_answer(&p));
        write_json_field(fp, "question", q.data, 1);
        write_json_field(fp, "answer", answer, 0);
        write_json_field(fp, "domain", op_domains[p.op], 0);
        fputs("}\n", fp);
    }
    bytebuf_free(&q);
    string_set_free(&seen);
}

static void synth_pool(FILE *fp, const SynthConfig *cfg) {
    Rng rng, eval_rng, trace_rng;
    rng_init(&rng, cfg->seed);
    rng_init(&eval_rng, cfg->seed ^ 0xe7a15e7e7a15e7e7ull);   // the stream synth_eval_set draws from
    rng_init(&trace_rng, cfg->seed ^ 0x7ace7ace7ace7aceull);  // traces have their own stream, so the
                                                                // questions do not depend on the trace design
    StringSet seen = {0}, eval_seen = {0};
    ByteBuf q = {0}, thinking = {0}, attempt = {0}, text = {0};
    Problem *made = (Problem *)mallocCheck((cfg->n ? cfg->n : 1) * sizeof(Problem));
    for (size_t i = 0; i < cfg->n; i++) {
        RowKind kind = random_row_kind(&rng);
        if (kind == ROW_DUPLICATE && i == 0) kind = ROW_CLEAN;
        Problem p;
        if (kind == ROW_DUPLICATE) { p = made[rng_below(&rng, i)]; problem_question(&p, &q); }
        else if (kind == ROW_CONTAMINATED) p = next_problem(&eval_rng, cfg->max_digits, 1, &eval_seen, &q);
        else p = next_problem(&rng, cfg->max_digits, 0, &seen, &q);
        made[i] = p;
        text.len = 0;
        bytebuf_append(&text, "", 0);
        switch (kind) {   // the markup each quality rule looks for
            case ROW_ASY: case ROW_ASY_AIME: bprintf(&text, "[asy]draw((0,0)--(%lld,0));[/asy]\n", (long long)p.a % 97); break;
            case ROW_IMAGE: bprintf(&text, "![Image](figure%lld.png)\n", (long long)p.a % 97); break;
            case ROW_PNUM: bprintf(&text, "Problem p%d. ", 1 + (int)(p.a % 999)); break;
            case ROW_BOLD: bprintf(&text, "**Q%d** ", 1 + (int)(p.a % 99)); break;
            default: break;
        }
        bytebuf_append(&text, q.data, q.len);
        int correct = synth_trace(&p, &trace_rng, &thinking, &attempt);
        // how often the two Qwen models solve it falls with the operands' size;
        // bits of a hash of the question decide (independently for the two
        // models), so a duplicate gets the same grades
        int digits = num_digits(p.a) > num_digits(p.b) ? num_digits(p.a) : num_digits(p.b);
        uint64_t h = fnv1a(q.data, q.len);
        double u32 = (double)(h >> 40) * 0x1.0p-24, u7 = (double)(h >> 16 & 0xFFFFFF) * 0x1.0p-24, p32 = 0.7 - 0.12 * digits;
        int solved32 = u32 < p32, solved7 = u7 < 0.5 * p32;
        char solution[32], length[32], metadata[64];
        snprintf(solution, sizeof solution, "%lld", (long long)problem_answer(&p));
        snprintf(length, sizeof length, "%zu", thinking.len);
        snprintf(metadata, sizeof metadata, "{'synth_id': %zu, 'digits': %d}", i, digits);
        int na_grades = kind == ROW_NA_GRADES, na_trace = kind == ROW_NA_TRACE;
        write_json_field(fp, "question", text.data, 1);
        write_json_field(fp, "solution", na_grades ? NULL : solution, 0);
        write_json_field(fp, "cot_type", "math", 0);
        write_json_field(fp, "source_type", kind == ROW_ASY_AIME ? SOURCE_AIME : random_source(&rng, p.op), 0);
        write_json_field(fp, "domain", kind == ROW_NA_DOMAIN ? NULL : op_domains[p.op], 0);
        fprintf(fp, ", \"isqwen7bcorrect\": %s", json_bool(na_grades ? -1 : solved7));
        fprintf(fp, ", \"isqwen32bcorrect\": %s", json_bool(na_grades ? -1 : solved32));
        fprintf(fp, ", \"isgeminicorrect\": %s", json_bool(na_grades || na_trace ? -1 : correct));
        fprintf(fp, ", \"gemini_length\": %s", na_trace ? "null" : length);
        fputs(", \"thinking_trajectories\": ", fp);
        if (na_trace) fputs("null", fp);
        else { fputc('[', fp); json_write_string(fp, thinking.data, thinking.len); fputc(']', fp); }
        write_json_field(fp, "attempt", na_trace ? NULL : attempt.data, 0);
        write_json_field(fp, "metadata", metadata, 0);
        fputs("}\n", fp);
    }
    free(made);
    bytebuf_free(&q);
    bytebuf_free(&thinking);
    bytebuf_free(&attempt);
    bytebuf_free(&text);
    string_set_free(&seen);
    string_set_free(&eval_seen);
}

// ----------------------------------------------------------------------------
// the commands

static void usage(int status) {
    fprintf(status ? stderr : stdout,
            "usage:\n"
            "  ./data select POOL.jsonl --out OUT.jsonl [--eval FILE]... [--seed N] [--n 1000]\n"
            "                [--mode s1|random|diverse|longest] [--report FILE] [--tokenizer DIR]\n"
            "                [--math-seed-length 5600] [--skip-bad]\n"
            "      the s1K selection: stages na, quality, difficulty, decontaminate, dedup, select.\n"
            "      Writes the chosen lines (input order) and a report (default OUT.report.txt).\n"
            "      --tokenizer counts trace tokens where gemini_length is missing.\n"
            "  ./data tokenize IN.jsonl --tokenizer DIR --out SHARD [--block-size 32768]\n"
            "                [--traces gemini|deepseek] [--skip-bad]\n"
            "      s1's training text and TRL's loss mask, as a token shard (common/shard.h).\n"
            "  ./data render IN.jsonl --out FILE.txt [--traces gemini|deepseek] [--skip-bad]\n"
            "      the training texts themselves, one after another (e.g. a corpus for ./tokenizer train).\n"
            "  ./data show SHARD [--text --tokenizer DIR]\n"
            "      one JSON line per sequence: {\"ids\": [...], \"mask\": [...]}; --text decodes it,\n"
            "      with the loss targets between \xe2\x9f\xa6 and \xe2\x9f\xa7.\n"
            "  ./data synth --out FILE [--n 500] [--seed 1] [--max-digits 4] [--eval-set]\n"
            "      a synthetic featurised pool of arithmetic problems (or, with --eval-set,\n"
            "      held-out {\"question\", \"answer\"} problems that never occur in a pool).\n"
            "  ./data bench aime24|aime25|math500|gpqa FILE --out OUT.jsonl [--seed 1234]\n"
            "      a benchmark file you downloaded (JSONL or CSV; GPQA: gpqa_diamond.csv) as problems for\n"
            "      ./s1 eval, each question exactly the prompt s1's harness task builds. GPQA's choices are\n"
            "      shuffled as the task did (random.shuffle per row): --seed 1234 is the state vLLM's worker\n"
            "      left Python's random in (it reseeds with its seed, 1234, after lm-eval's random.seed(0));\n"
            "      --seed 0 is lm-eval's own seed (a run without vLLM).\n");
    exit(status);
}

// Command-line flags are "--name value" or "--name" (common/util.h's flag_*());
// anything else is the one positional argument.

static int cmd_select(int argc, char **argv) {
    const char *pool_path = NULL, *out_path = NULL, *report_path = NULL, *tok_dir = NULL;
    const char *eval_paths[64];
    int num_eval = 0, skip_bad = 0;
    SelectConfig cfg = {MODE_S1, 1000, 0, 5600};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (flag_is(f, "--out")) out_path = flag_value(argc, argv, &i);
        else if (flag_is(f, "--eval")) { if (num_eval == 64) die("too many --eval files (at most 64)"); eval_paths[num_eval++] = flag_value(argc, argv, &i); }
        else if (flag_is(f, "--seed")) cfg.seed = flag_count(argc, argv, &i, 1);
        else if (flag_is(f, "--n")) cfg.n = flag_count(argc, argv, &i, 1);
        else if (flag_is(f, "--report")) report_path = flag_value(argc, argv, &i);
        else if (flag_is(f, "--tokenizer")) tok_dir = flag_value(argc, argv, &i);
        else if (flag_is(f, "--math-seed-length")) cfg.math_seed_length = (int64_t)flag_count(argc, argv, &i, 1);
        else if (flag_is(f, "--skip-bad")) skip_bad = 1;
        else if (flag_is(f, "--mode")) {
            const char *m = flag_value(argc, argv, &i);
            int k;
            for (k = 0; k < 4 && strcmp(m, mode_names[k]); k++) {}
            if (k == 4) die("--mode: expected s1, random, diverse or longest, got \"%s\"", m);
            cfg.mode = (SelectMode)k;
        } else if (f[0] == '-' && f[1] == '-') die("select: unknown option %s (see ./data --help)", f);
        else if (pool_path == NULL) pool_path = f;
        else die("select: more than one input file (%s and %s)", pool_path, f);
    }
    if (pool_path == NULL || out_path == NULL) die("select needs POOL.jsonl and --out OUT.jsonl (see ./data --help)");
    if (cfg.n == 0 || cfg.n > 1000000000) die("--n must be between 1 and 1000000000, got %zu", cfg.n);
    char default_report[4096];
    if (report_path == NULL) {
        snprintf(default_report, sizeof default_report, "%s.report.txt", out_path);
        report_path = default_report;
    }
    // both outputs open before any work, so an unwritable path fails first; committed together at the end
    AtomicFile report_af = atomic_open(report_path), out_af = atomic_open(out_path);
    Tokenizer *tok = tok_dir ? tokenizer_load(tok_dir) : NULL;
    Pool pool;
    pool_read(&pool, pool_path, tok, skip_bad);
    if (tok) tokenizer_free(tok);
    if (pool.num_bad) fprintf(stderr, "%s: skipped %zu bad lines\n", pool_path, pool.num_bad);
    if (pool.num_counted) printf("counted the trace tokens of %zu rows without gemini_length\n", pool.num_counted);
    NgramIndex ix = {0};
    size_t num_eval_questions = 0;
    for (int e = 0; e < num_eval; e++) num_eval_questions += ngram_index_add_file(&ix, eval_paths[e], skip_bad);

    StageLog log = {0};
    size_t *cand = (size_t *)mallocCheck((pool.len ? pool.len : 1) * sizeof(size_t));
    size_t n = pool.len, m;
    for (size_t i = 0; i < n; i++) cand[i] = i;
    m = filter_rows(&pool, cand, n, keep_not_na);
    stage_done(&log, "na", n, m);
    n = m;
    m = filter_rows(&pool, cand, n, keep_quality);
    stage_done(&log, "quality", n, m);
    n = m;
    // the paper's ablations (Table 2) sample the quality-filtered pool: no difficulty filter
    m = cfg.mode == MODE_S1 ? filter_rows(&pool, cand, n, keep_unsolved) : n;
    stage_done(&log, "difficulty", n, m);
    n = m;
    m = filter_decontaminate(&pool, cand, n, &ix);
    stage_done(&log, "decontaminate", n, m);
    n = m;
    m = filter_dedup(&pool, cand, n);
    stage_done(&log, "dedup", n, m);
    n = m;
    size_t *sel = (size_t *)mallocCheck((n ? n : 1) * sizeof(size_t));   // select never picks more than it is given
    SelectStats st;
    size_t nsel = select_rows(pool.rows, pool.len, cand, n, &cfg, sel, &st);
    stage_done(&log, "select", n, nsel);
    if (nsel < cfg.n) die("only %zu questions survive the filters, fewer than --n %zu", nsel, cfg.n);
    write_report(report_af.fp, pool_path, &cfg, num_eval_questions, &log, &pool, cand, n, sel, nsel, &st);
    write_selected_lines(&out_af, pool_path, &pool, sel, nsel);
    atomic_commit(&report_af);
    atomic_commit(&out_af);
    printf("wrote %s (%zu rows) and %s\n", out_path, nsel, report_path);
    free(sel);
    free(cand);
    ngram_index_free(&ix);
    pool_free(&pool);
    return 0;
}

// Options of the commands that read training examples (tokenize, render).
typedef struct {
    const char *in_path, *out_path, *tok_dir;
    size_t block_size;
    int skip_bad;
    TraceSource traces;
} ExampleOptions;

static ExampleOptions parse_example_options(const char *cmd, int argc, char **argv) {
    ExampleOptions opt = {NULL, NULL, NULL, 32768, 0, TRACES_GEMINI};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (flag_is(f, "--out")) opt.out_path = flag_value(argc, argv, &i);
        else if (flag_is(f, "--tokenizer")) opt.tok_dir = flag_value(argc, argv, &i);
        else if (flag_is(f, "--block-size")) opt.block_size = flag_count_max(argc, argv, &i, 1, (size_t)1 << 24);   // the trainers read at most 2^24 tokens a sequence
        else if (flag_is(f, "--skip-bad")) opt.skip_bad = 1;
        else if (flag_is(f, "--traces")) {
            const char *t = flag_value(argc, argv, &i);
            if (!strcmp(t, "gemini")) opt.traces = TRACES_GEMINI;
            else if (!strcmp(t, "deepseek")) opt.traces = TRACES_DEEPSEEK;
            else die("--traces: expected gemini or deepseek, got \"%s\"", t);
        } else if (f[0] == '-' && f[1] == '-') die("%s: unknown option %s (see ./data --help)", cmd, f);
        else if (opt.in_path == NULL) opt.in_path = f;
        else die("%s: more than one input file (%s and %s)", cmd, opt.in_path, f);
    }
    if (opt.in_path == NULL || opt.out_path == NULL) die("%s needs IN.jsonl and --out FILE (see ./data --help)", cmd);
    return opt;
}

static int cmd_tokenize(int argc, char **argv) {
    ExampleOptions opt = parse_example_options("tokenize", argc, argv);
    const char *in_path = opt.in_path, *out_path = opt.out_path;
    size_t block_size = opt.block_size;
    if (opt.tok_dir == NULL) die("tokenize needs --tokenizer DIR (see ./data --help)");
    if (block_size < 2) die("--block-size must be at least 2");
    AtomicFile out = atomic_open(out_path);   // an unwritable --out fails now, before any work or progress line
    Tokenizer *tok = tokenizer_load(opt.tok_dir);
    MaskTemplates mt;
    mask_templates_init(tok, &mt);
    IdList seq = {0};
    ByteBuf mask = {0};
    JsonlReader r;
    jsonl_open(&r, in_path, opt.skip_bad);
    double t0 = now_seconds();   // progress over the bytes of the input
    long total_bytes = 0;
    if (fseek(r.fp, 0, SEEK_END) == 0) { total_bytes = ftell(r.fp); rewind(r.fp); }
    ShardBuilder b = {0};
    ByteBuf thinking = {0};
    size_t num_truncated = 0, num_untrained = 0, num_targets = 0, lens_cap = 0;
    int64_t *lens = NULL;
    const char *question, *attempt;
    while (next_training_example(&r, opt.traces, &question, &thinking, &attempt)) {
        int truncated;
        size_t targets = s1_encode(tok, &mt, question, thinking.data, attempt, block_size, &seq, &mask, &truncated);
        num_truncated += (size_t)truncated;
        num_untrained += targets == 0;
        num_targets += targets;
        shard_builder_add(&b, &seq, (const uint8_t *)mask.data);
        if (b.num_sequences > lens_cap) {
            lens_cap = lens_cap ? 2 * lens_cap : 1024;
            lens = (int64_t *)reallocCheck(lens, lens_cap * sizeof(int64_t));
        }
        lens[b.num_sequences - 1] = (int64_t)seq.len;
        if (total_bytes > 0) print_progress("tokenize (bytes read)", (size_t)ftell(r.fp), (size_t)total_bytes, t0);
    }
    if (r.num_bad) fprintf(stderr, "%s: skipped %zu bad lines\n", in_path, r.num_bad);
    if (b.num_sequences == 0) die("%s: no examples to tokenize", in_path);
    shard_write_fp(out.fp, out_path, tokenizer_size(tok), b.num_sequences, b.offsets, b.ids.data, (const uint8_t *)b.mask.data);
    atomic_commit(&out);
    size_t ns = b.num_sequences;
    qsort(lens, ns, sizeof(int64_t), cmp_i64);
    printf("wrote %s: %zu sequences, %zu tokens (%zu loss targets), block size %zu\n", out_path, ns, b.ids.len, num_targets, block_size);
    printf("tokens per sample: mean %.1f, max %lld, p50 %lld, p90 %lld, p99 %lld\n", (double)b.ids.len / (double)ns,
           (long long)lens[ns - 1], (long long)percentile(lens, ns, 50), (long long)percentile(lens, ns, 90),
           (long long)percentile(lens, ns, 99));
    printf("truncated %zu of %zu samples at %zu tokens", num_truncated, ns, block_size);
    if (num_untrained) printf("; %zu samples have no loss targets (no complete response template)", num_untrained);
    printf("\n");
    if (num_truncated) fprintf(stderr, "warning: %zu samples are longer than --block-size %zu and were cut (s1-spec 3.3)\n", num_truncated, block_size);
    free(lens);
    bytebuf_free(&thinking);
    shard_builder_free(&b);
    jsonl_close(&r);
    mask_templates_free(&mt);
    idlist_free(&seq);
    bytebuf_free(&mask);
    tokenizer_free(tok);
    return 0;
}

// The training texts themselves, one after another: what tokenize encodes,
// for reading, or as the corpus of a small tokenizer (./tokenizer train).
static int cmd_render(int argc, char **argv) {
    ExampleOptions opt = parse_example_options("render", argc, argv);
    JsonlReader r;
    jsonl_open(&r, opt.in_path, opt.skip_bad);
    AtomicFile af = atomic_open(opt.out_path);
    ByteBuf thinking = {0};
    const char *question, *attempt;
    size_t count = 0, bytes = 0;
    while (next_training_example(&r, opt.traces, &question, &thinking, &attempt)) {
        char *text = chat_s1_train(question, thinking.data, attempt);
        size_t n = strlen(text);
        fwriteCheck(text, 1, n, af.fp, af.tmp_path);
        free(text);
        count++;
        bytes += n;
    }
    if (r.num_bad) fprintf(stderr, "%s: skipped %zu bad lines\n", opt.in_path, r.num_bad);
    if (count == 0) die("%s: no examples to render", opt.in_path);
    atomic_commit(&af);
    printf("wrote %s: %zu training texts, %zu bytes\n", opt.out_path, count, bytes);
    bytebuf_free(&thinking);
    jsonl_close(&r);
    return 0;
}

// One sequence of a shard decoded, loss targets between ⟦ and ⟧.
static void shard_sequence_text(Tokenizer *tok, const Shard *s, size_t i, ByteBuf *out) {
    out->len = 0;
    bytebuf_append(out, "", 0);
    size_t t = (size_t)s->offsets[i], end = (size_t)s->offsets[i + 1];
    while (t < end) {
        size_t run = t;
        while (run < end && s->mask[run] == s->mask[t]) run++;
        if (s->mask[t]) bytebuf_puts(out, "\xe2\x9f\xa6");
        tokenizer_decode(tok, s->ids + t, run - t, 0, out);
        if (s->mask[t]) bytebuf_puts(out, "\xe2\x9f\xa7");
        t = run;
    }
}

static int cmd_show(int argc, char **argv) {
    const char *shard_path = NULL, *tok_dir = NULL;
    int text = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (flag_is(f, "--text")) text = 1;
        else if (flag_is(f, "--tokenizer")) tok_dir = flag_value(argc, argv, &i);
        else if (f[0] == '-' && f[1] == '-') die("show: unknown option %s (see ./data --help)", f);
        else if (shard_path == NULL) shard_path = f;
        else die("show: more than one shard (%s and %s)", shard_path, f);
    }
    if (shard_path == NULL) die("show needs a SHARD (see ./data --help)");
    if (text && tok_dir == NULL) die("show --text needs --tokenizer DIR");
    Shard s;
    shard_read(&s, shard_path);
    Tokenizer *tok = text ? tokenizer_load(tok_dir) : NULL;
    if (tok && tokenizer_size(tok) < s.header.vocab_size)
        die("%s: vocab_size %u is larger than the tokenizer's %u: wrong --tokenizer?", shard_path, s.header.vocab_size, tokenizer_size(tok));
    ByteBuf buf = {0};
    for (size_t i = 0; i < s.header.num_sequences; i++) {
        if (text) {
            shard_sequence_text(tok, &s, i, &buf);
            fputs("{\"text\": ", stdout);
            json_write_string(stdout, buf.data, buf.len);
            fputs("}\n", stdout);
            continue;
        }
        fputs("{\"ids\": [", stdout);
        for (uint64_t t = s.offsets[i]; t < s.offsets[i + 1]; t++) printf(t > s.offsets[i] ? ", %u" : "%u", s.ids[t]);
        fputs("], \"mask\": [", stdout);
        for (uint64_t t = s.offsets[i]; t < s.offsets[i + 1]; t++) printf(t > s.offsets[i] ? ", %u" : "%u", s.mask[t]);
        fputs("]}\n", stdout);
    }
    bytebuf_free(&buf);
    if (tok) tokenizer_free(tok);
    shard_free(&s);
    return 0;
}

static int cmd_synth(int argc, char **argv) {
    const char *out_path = NULL;
    SynthConfig cfg = {500, 1, 4, 0};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (flag_is(f, "--out")) out_path = flag_value(argc, argv, &i);
        else if (flag_is(f, "--n")) cfg.n = flag_count(argc, argv, &i, 1);
        else if (flag_is(f, "--seed")) cfg.seed = flag_count(argc, argv, &i, 1);
        else if (flag_is(f, "--max-digits")) cfg.max_digits = (int)flag_count(argc, argv, &i, 1);
        else if (flag_is(f, "--eval-set")) cfg.eval_set = 1;
        else die("synth: unknown argument %s (see ./data --help)", f);
    }
    if (out_path == NULL) die("synth needs --out FILE (see ./data --help)");
    if (cfg.max_digits < 2 || cfg.max_digits > 9) die("--max-digits must be between 2 and 9, got %d", cfg.max_digits);
    if (cfg.n > 1000000) die("--n %zu is too large for the synthetic problem space (at most 1000000)", cfg.n);
    AtomicFile af = atomic_open(out_path);
    if (cfg.eval_set) synth_eval_set(af.fp, &cfg);
    else synth_pool(af.fp, &cfg);
    atomic_commit(&af);
    printf("wrote %s: %zu %s (seed %llu, up to %d digits)\n", out_path, cfg.n, cfg.eval_set ? "eval problems" : "pool rows",
           (unsigned long long)cfg.seed, cfg.max_digits);
    return 0;
}

// ----------------------------------------------------------------------------
// ./data bench: the benchmarks as s1's harness prompts them
//
// s1 evaluated AIME24 (simplescaling/aime24_nofigures), MATH500 (simplescaling/
// openaimath, test), GPQA Diamond (Idavidrein/gpqa, gpqa_diamond) and AIME25
// (TIGER-Lab/AIME25) through its lm-evaluation-harness tasks. Users download the
// files themselves (GPQA's CSV is behind a click-through licence); `bench`
// turns one into our problems JSONL {"question", "answer", "id"}, "question"
// being exactly the user turn the task builds (doc_to_text), so ./s1 eval runs
// the same prompts. Inputs: JSONL (one object per line; `datasets` exports it
// with to_json) or CSV with a header row (RFC 4180: quoted fields may hold
// commas, quotes and newlines).

#include "common/pyrandom.h"

typedef struct {
    size_t n;
    char **keys, **vals;   // vals[i] NULL for a JSON null
} BenchRow;

typedef struct {
    BenchRow *rows;
    size_t n;
} BenchTable;

static void bench_row_add(BenchRow *r, const char *k, const char *v, size_t vlen) {
    r->keys = reallocCheck(r->keys, (r->n + 1) * sizeof(char *));
    r->vals = reallocCheck(r->vals, (r->n + 1) * sizeof(char *));
    r->keys[r->n] = strdup(k);
    r->vals[r->n] = v ? strndup(v, vlen) : NULL;
    r->n++;
}

static const char *bench_get(const BenchRow *r, const char *k) {
    for (size_t i = 0; i < r->n; i++) if (strcmp(r->keys[i], k) == 0) return r->vals[i];
    return NULL;
}

static void bench_table_push(BenchTable *t, BenchRow row) {
    t->rows = reallocCheck(t->rows, (t->n + 1) * sizeof(BenchRow));
    t->rows[t->n++] = row;
}

static void bench_table_free(BenchTable *t) {
    for (size_t i = 0; i < t->n; i++) {
        for (size_t j = 0; j < t->rows[i].n; j++) { free(t->rows[i].keys[j]); free(t->rows[i].vals[j]); }
        free(t->rows[i].keys); free(t->rows[i].vals);
    }
    free(t->rows);
}

// JSONL (jsonl_next()): strings as they are, integers in decimal (AIME25's answers may be numbers),
// null as NULL; other values are not fields a task reads
static void bench_read_jsonl(const char *path, BenchTable *t) {
    JsonlReader r;
    jsonl_open(&r, path, 0);
    for (const JsonValue *obj; (obj = jsonl_next(&r)) != NULL;) {
        BenchRow row = {0, NULL, NULL};
        for (size_t i = 0; i < obj->len; i++) {
            const JsonValue *v = &obj->items[i];
            char num[32];
            if (v->type == JSON_STRING) bench_row_add(&row, obj->keys[i], v->str, v->len);
            else if (v->type == JSON_NUMBER && v->is_integer) {
                snprintf(num, sizeof num, "%lld", (long long)v->integer);
                bench_row_add(&row, obj->keys[i], num, strlen(num));
            } else if (v->type == JSON_NULL) bench_row_add(&row, obj->keys[i], NULL, 0);
        }
        bench_table_push(t, row);
    }
    jsonl_close(&r);
}

// CSV (RFC 4180) with a header row; blank lines are skipped, as pandas.read_csv does
static void bench_read_csv(const char *path, const char *text, size_t len, BenchTable *t) {
    char **header = NULL;
    size_t n_header = 0, line_no = 1;
    ByteBuf field = {NULL, 0, 0};
    char **fields = NULL;
    size_t n_fields = 0, cap_fields = 0;
    size_t i = 0;
    while (i < len) {
        // one record
        n_fields = 0;
        size_t record_line = line_no;
        if (text[i] == '\n' || (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')) {   // a blank line
            i += text[i] == '\r' ? 2 : 1;
            line_no++;
            continue;
        }
        for (;;) {
            field.len = 0;
            bytebuf_append(&field, "", 0);
            if (i < len && text[i] == '"') {
                i++;
                for (;;) {
                    if (i >= len) die("%s:%zu: a quoted field is not closed", path, record_line);
                    if (text[i] == '"') {
                        if (i + 1 < len && text[i + 1] == '"') { bytebuf_append(&field, "\"", 1); i += 2; continue; }
                        i++;
                        break;
                    }
                    if (text[i] == '\n') line_no++;
                    bytebuf_append(&field, text + i, 1);
                    i++;
                }
                if (i < len && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
                    die("%s:%zu: text after a closing quote", path, record_line);
            } else {
                size_t s0 = i;
                while (i < len && text[i] != ',' && text[i] != '\n' && !(text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')) {
                    if (text[i] == '"') die("%s:%zu: a quote inside an unquoted field", path, record_line);
                    i++;
                }
                bytebuf_append(&field, text + s0, i - s0);
            }
            if (n_fields == cap_fields) { cap_fields = cap_fields ? 2 * cap_fields : 16; fields = reallocCheck(fields, cap_fields * sizeof(char *)); }
            fields[n_fields++] = strdup(field.data);
            if (i < len && text[i] == ',') { i++; continue; }
            if (i < len && text[i] == '\r') i++;
            if (i < len && text[i] == '\n') { i++; line_no++; }
            break;
        }
        if (header == NULL) { header = fields; n_header = n_fields; fields = NULL; cap_fields = 0; continue; }
        if (n_fields != n_header) die("%s:%zu: %zu fields, the header has %zu", path, record_line, n_fields, n_header);
        BenchRow row = {0, NULL, NULL};
        for (size_t f = 0; f < n_fields; f++) { bench_row_add(&row, header[f], fields[f], strlen(fields[f])); free(fields[f]); }
        bench_table_push(t, row);
    }
    if (header == NULL) die("%s: no header row", path);
    for (size_t f = 0; f < n_header; f++) free(header[f]);
    free(header); free(fields);
    bytebuf_free(&field);
}

static void bench_read(const char *path, BenchTable *t) {
    size_t len;
    char *text = read_file_check(path, &len);
    memset(t, 0, sizeof *t);
    if (len >= 4 && memcmp(text, "PAR1", 4) == 0)
        die("%s: a Parquet file; export it as JSONL (datasets: ds.to_json(\"x.jsonl\")) or CSV first", path);
    size_t k = 0;
    while (k < len && isspace((unsigned char)text[k])) k++;
    int jsonl = k < len && text[k] == '{';
    if (!jsonl) bench_read_csv(path, text, len, t);
    free(text);
    if (jsonl) bench_read_jsonl(path, t);
    if (t->n == 0) die("%s: no rows", path);
}

static void bench_write(FILE *fp, const char *question, const char *answer, const char *id) {
    fputs("{\"question\": ", fp);
    json_write_string(fp, question, strlen(question));
    fputs(", \"answer\": ", fp);
    json_write_string(fp, answer, strlen(answer));
    if (id) { fputs(", \"id\": ", fp); json_write_string(fp, id, strlen(id)); }
    fputs("}\n", fp);
}

static int cmd_bench(int argc, char **argv) {
    const char *kind = NULL, *in_path = NULL, *out_path = NULL;
    int64_t seed = 1234;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (flag_is(f, "--out")) out_path = flag_value(argc, argv, &i);
        else if (flag_is(f, "--seed")) seed = (int64_t)flag_count_max(argc, argv, &i, 1, (size_t)INT64_MAX);
        else if (f[0] == '-' && f[1] == '-') die("bench: unknown flag %s (see ./data --help)", f);
        else if (!kind) kind = f;
        else if (!in_path) in_path = f;
        else die("bench: unexpected argument \"%s\"", f);
    }
    if (!kind || !in_path || !out_path) die("bench: expected ./data bench aime24|aime25|math500|gpqa FILE --out OUT.jsonl");
    int gpqa = strcmp(kind, "gpqa") == 0;
    if (!gpqa && strcmp(kind, "aime24") && strcmp(kind, "aime25") && strcmp(kind, "math500"))
        die("bench: unknown benchmark \"%s\" (expected aime24, aime25, math500 or gpqa)", kind);
    BenchTable t;
    bench_read(in_path, &t);
    AtomicFile af = atomic_open(out_path);
    PyRandom rng;
    pyrandom_seed(&rng, seed);
    for (size_t r = 0; r < t.n; r++) {
        const BenchRow *row = &t.rows[r];
        char id[32];
        snprintf(id, sizeof id, "%zu", r);
        if (gpqa) {
            // process_docs (gpqa/openai/utils.py:221-242): choices = [Incorrect 1, 2, 3, Correct], one
            // random.shuffle per row in file order, answer = the letter the correct one lands on; then
            // doc_to_text_gpqa: QUERY_TEMPLATE = "{Question}\n\nA) {choice1}\nB) {choice2}\nC) {choice3}\nD) {choice4}" (:12, :286-287)
            static const char *const cols[5] = {"Question", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3", "Correct Answer"};
            const char *v[5];
            for (int c = 0; c < 5; c++)
                if (!(v[c] = bench_get(row, cols[c]))) die("%s: row %zu has no \"%s\" column", in_path, r + 1, cols[c]);
            size_t perm[4] = {0, 1, 2, 3};   // indices into choices = v[1..4]
            pyrandom_shuffle(&rng, perm, 4);
            ByteBuf q = {NULL, 0, 0};
            bytebuf_puts(&q, v[0]);
            bytebuf_puts(&q, "\n");
            char answer[2] = {0, 0};
            for (int c = 0; c < 4; c++) {
                char label[5] = {'\n', (char)('A' + c), ')', ' ', 0};
                bytebuf_puts(&q, label);
                bytebuf_puts(&q, v[1 + perm[c]]);
                // choices.index(doc["Correct Answer"]): the first choice EQUAL to the correct text
                if (!answer[0] && strcmp(v[1 + perm[c]], v[4]) == 0) answer[0] = (char)('A' + c);
            }
            const char *rid = bench_get(row, "Record ID");
            bench_write(af.fp, q.data, answer, rid ? rid : id);
            bytebuf_free(&q);
        } else {
            // aime/utils.py and openai_math/utils.py: process_docs (problem = doc.get("problem",
            // doc.get("question")); answer = doc.get("answer", doc.get("orig_answer", ...))) and
            // doc_to_text = QUERY_TEMPLATE.format(Question=problem), QUERY_TEMPLATE = "{Question}"
            const char *q = bench_get(row, "problem"), *a = bench_get(row, "answer");
            if (!q) q = bench_get(row, "question");
            if (!q) q = bench_get(row, "Problem");   // some AIME exports capitalise
            if (!a) a = bench_get(row, "orig_answer");
            if (!a) a = bench_get(row, "orig_orig_answer");
            if (!a) a = bench_get(row, "Answer");
            if (!q) die("%s: row %zu has no \"problem\" or \"question\"", in_path, r + 1);
            if (!a) die("%s: row %zu has no \"answer\"", in_path, r + 1);
            const char *rid = bench_get(row, "id");
            if (!rid) rid = bench_get(row, "unique_id");
            if (!rid) rid = bench_get(row, "ID");
            bench_write(af.fp, q, a, rid ? rid : id);
        }
    }
    atomic_commit(&af);
    printf("wrote %s: %zu %s problems%s\n", out_path, t.n, kind, gpqa ? "" : "");
    if (gpqa) printf("choices shuffled as CPython's random.shuffle after random.seed(%lld)\n", (long long)seed);
    bench_table_free(&t);
    return 0;
}

#ifndef DATA_NO_MAIN
int main(int argc, char **argv) {
    if (argc < 2) usage(1);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) usage(0);
    if (!strcmp(argv[1], "select")) return cmd_select(argc, argv);
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(argv[1], "show")) return cmd_show(argc, argv);
    if (!strcmp(argv[1], "render")) return cmd_render(argc, argv);
    if (!strcmp(argv[1], "synth")) return cmd_synth(argc, argv);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc, argv);
    die("unknown command \"%s\" (expected select, tokenize, render, show, synth or bench; see ./data --help)", argv[1]);
}
#endif
