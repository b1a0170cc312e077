/*
 * json.h: a small, strict JSON parser (RFC 8259) and a string writer.
 *
 * Used for tokenizer.json, config.json, safetensors headers and every JSONL
 * line that data.c reads. The whole document is parsed into a tree whose nodes
 * and decoded strings live in one arena, freed with json_free.
 *
 *   JsonDoc doc;
 *   char err[256];
 *   if (json_parse(text, len, &doc, err, sizeof err) != 0) die("%s: %s", path, err);
 *   const JsonValue *v = json_get(doc.root, "vocab_size");
 *   ...
 *   json_free(&doc);
 *
 * Errors name the line and column ("line 3 col 17: expected ':'").
 * Strings are decoded: escapes resolved, \u surrogate pairs joined, the
 * result is UTF-8 (a lone surrogate is an error). Invalid UTF-8 in the input
 * is an error. Strings may contain NUL bytes, so use .len, not strlen.
 * Objects keep their keys in document order; duplicate keys are kept too
 * (json_get returns the first).
 */
#ifndef S1C_JSON_H
#define S1C_JSON_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/util.h"   // die(): out of memory is a one-line error like every other

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue {
    JsonType type;
    size_t len;                 // string: bytes; array/object: number of items
    double number;              // JSON_NUMBER
    int is_integer;             // JSON_NUMBER written without fraction or exponent, fits int64
    int64_t integer;            // exact value when is_integer
    char *str;                  // JSON_STRING: decoded UTF-8, NUL-terminated
    struct JsonValue *items;    // JSON_ARRAY / JSON_OBJECT: len children
    char **keys;                // JSON_OBJECT: len decoded keys (NUL-terminated)
    size_t *key_lens;           // JSON_OBJECT: byte length of each key
    size_t offset;              // byte offset of the value in the input (for error messages)
} JsonValue;

typedef struct JsonArenaBlock {
    struct JsonArenaBlock *next;
    size_t used, cap;
    // data follows
} JsonArenaBlock;

typedef struct {
    JsonValue *root;
    JsonArenaBlock *blocks;
    const char *text;           // the input, for json_line_col
} JsonDoc;

// ----------------------------------------------------------------------------
// arena

static inline void *json_arena_alloc(JsonDoc *doc, size_t n) {
    n = (n + 15) & ~(size_t)15;
    JsonArenaBlock *b = doc->blocks;
    if (b == NULL || b->used + n > b->cap) {
        // blocks double from 4 KB up to 1 MB: a JSONL line or a config.json needs a few KB, and
        // a 1 MB block per document made every line of a JSONL file an mmap and an munmap
        size_t grow = b == NULL ? (1u << 12) : b->cap >= (1u << 19) ? (1u << 20) : 2 * b->cap;
        size_t cap = n > grow ? n : grow;
        b = (JsonArenaBlock *)malloc(sizeof(JsonArenaBlock) + 16 + cap);
        if (b == NULL) die("out of memory parsing JSON");
        b->next = doc->blocks;
        b->used = 0;
        b->cap = cap;
        doc->blocks = b;
    }
    char *base = (char *)(b + 1);
    base += (16 - ((uintptr_t)base & 15)) & 15;
    void *p = base + b->used;
    b->used += n;
    return p;
}

static inline void json_free(JsonDoc *doc) {
    JsonArenaBlock *b = doc->blocks;
    while (b) { JsonArenaBlock *next = b->next; free(b); b = next; }
    doc->blocks = NULL;
    doc->root = NULL;
}

// line and column (1-based, column in bytes) of a byte offset
static inline void json_line_col(const char *text, size_t offset, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < offset && text[i]; i++) {
        if (text[i] == '\n') { l++; c = 1; } else c++;
    }
    *line = l;
    *col = c;
}

// ----------------------------------------------------------------------------
// parser

typedef struct {
    const char *s;
    size_t n, i;
    JsonDoc *doc;
    char *err;
    size_t errlen;
    int failed;
    int depth;
    // scratch stack of values while an array/object is being read
    JsonValue *stack;
    size_t stack_len, stack_cap;
    char **kstack;
    size_t *klstack;
    size_t kstack_len, kstack_cap;
    char *sbuf;                 // scratch for decoding one string
    size_t sbuf_cap;
} JsonParser;

static inline void json_fail(JsonParser *p, const char *msg) {
    if (p->failed) return;
    p->failed = 1;
    int line, col;
    json_line_col(p->s, p->i < p->n ? p->i : p->n, &line, &col);
    snprintf(p->err, p->errlen, "line %d col %d: %s", line, col, msg);
}

static inline void json_skip_ws(JsonParser *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->i++;
        else break;
    }
}

static inline void json_sbuf_put(JsonParser *p, size_t *len, const char *bytes, size_t k) {
    if (*len + k + 1 > p->sbuf_cap) {
        size_t cap = p->sbuf_cap ? p->sbuf_cap : 256;
        while (*len + k + 1 > cap) cap *= 2;
        char *nb = (char *)realloc(p->sbuf, cap);
        if (!nb) die("out of memory parsing JSON");
        p->sbuf = nb;
        p->sbuf_cap = cap;
    }
    memcpy(p->sbuf + *len, bytes, k);
    *len += k;
}

static inline int json_hex4(JsonParser *p, unsigned *out) {
    if (p->i + 4 > p->n) { json_fail(p, "truncated \\u escape"); return -1; }
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else { json_fail(p, "bad hex digit in \\u escape"); return -1; }
    }
    p->i += 4;
    *out = v;
    return 0;
}

static inline int json_utf8_encode(unsigned cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid.
// Rejects overlong forms, surrogates and code points above U+10FFFF.
static inline int json_utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int k;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) { k = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { k = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { k = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)k > n) return 0;
    for (int j = 1; j < k; j++) {
        if ((s[j] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

// Parses the string at p->i (which is at the opening quote) into p->sbuf.
static inline int json_parse_string_raw(JsonParser *p, size_t *out_len) {
    p->i++; // opening quote
    size_t len = 0;
    for (;;) {
        // copy a run of plain bytes at once
        size_t start = p->i;
        while (p->i < p->n) {
            unsigned char c = (unsigned char)p->s[p->i];
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
            p->i++;
        }
        if (p->i > start) json_sbuf_put(p, &len, p->s + start, p->i - start);
        if (p->i >= p->n) { json_fail(p, "unterminated string"); return -1; }
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') { p->i++; break; }
        if (c < 0x20) { json_fail(p, "control character in string"); return -1; }
        if (c >= 0x80) {
            int k = json_utf8_valid_len((const unsigned char *)p->s + p->i, p->n - p->i);
            if (k == 0) { json_fail(p, "invalid UTF-8 in string"); return -1; }
            json_sbuf_put(p, &len, p->s + p->i, (size_t)k);
            p->i += (size_t)k;
            continue;
        }
        // backslash escape
        p->i++;
        if (p->i >= p->n) { json_fail(p, "unterminated escape"); return -1; }
        char e = p->s[p->i++];
        char ch;
        switch (e) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case '/': ch = '/'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                unsigned cp;
                if (json_hex4(p, &cp)) return -1;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->i + 2 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
                        json_fail(p, "unpaired high surrogate in \\u escape");
                        return -1;
                    }
                    p->i += 2;
                    if (json_hex4(p, &lo)) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) { json_fail(p, "bad low surrogate in \\u escape"); return -1; }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    json_fail(p, "unpaired low surrogate in \\u escape");
                    return -1;
                }
                char buf[4];
                int k = json_utf8_encode(cp, buf);
                json_sbuf_put(p, &len, buf, (size_t)k);
                continue;
            }
            default: p->i--; json_fail(p, "bad escape in string"); return -1;
        }
        json_sbuf_put(p, &len, &ch, 1);
    }
    *out_len = len;
    return 0;
}

static inline char *json_arena_strdup(JsonDoc *doc, const char *s, size_t n) {
    char *d = (char *)json_arena_alloc(doc, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static inline int json_parse_number(JsonParser *p, JsonValue *v) {
    size_t start = p->i;
    int is_int = 1;
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    if (p->i >= p->n) { json_fail(p, "truncated number"); return -1; }
    if (p->s[p->i] == '0') p->i++;
    else if (p->s[p->i] >= '1' && p->s[p->i] <= '9') { while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++; }
    else { json_fail(p, "bad number"); return -1; }
    if (p->i < p->n && p->s[p->i] == '.') {
        is_int = 0;
        p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') { json_fail(p, "bad number: digit expected after '.'"); return -1; }
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        is_int = 0;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') { json_fail(p, "bad number: digit expected in exponent"); return -1; }
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    char buf[64];
    size_t k = p->i - start;
    char *tmp = k < sizeof buf ? buf : (char *)malloc(k + 1);
    if (!tmp) die("out of memory parsing JSON");
    memcpy(tmp, p->s + start, k);
    tmp[k] = '\0';
    v->type = JSON_NUMBER;
    v->number = strtod(tmp, NULL);
    v->is_integer = 0;
    if (is_int) {
        errno = 0;
        long long ll = strtoll(tmp, NULL, 10);
        if (errno == 0) { v->is_integer = 1; v->integer = (int64_t)ll; }
    }
    if (tmp != buf) free(tmp);
    return 0;
}

static inline int json_parse_value(JsonParser *p, JsonValue *v);

static inline void json_push(JsonParser *p, const JsonValue *v) {
    if (p->stack_len == p->stack_cap) {
        p->stack_cap = p->stack_cap ? p->stack_cap * 2 : 64;
        p->stack = (JsonValue *)realloc(p->stack, p->stack_cap * sizeof(JsonValue));
        if (!p->stack) die("out of memory parsing JSON");
    }
    p->stack[p->stack_len++] = *v;
}

static inline void json_push_key(JsonParser *p, char *k, size_t klen) {
    if (p->kstack_len == p->kstack_cap) {
        p->kstack_cap = p->kstack_cap ? p->kstack_cap * 2 : 64;
        p->kstack = (char **)realloc(p->kstack, p->kstack_cap * sizeof(char *));
        p->klstack = (size_t *)realloc(p->klstack, p->kstack_cap * sizeof(size_t));
        if (!p->kstack || !p->klstack) die("out of memory parsing JSON");
    }
    p->kstack[p->kstack_len] = k;
    p->klstack[p->kstack_len++] = klen;
}

static inline int json_parse_container(JsonParser *p, JsonValue *v, int is_object) {
    if (++p->depth > 512) { json_fail(p, "nesting too deep"); return -1; }
    char close = is_object ? '}' : ']';
    p->i++; // opening bracket
    size_t base = p->stack_len, kbase = p->kstack_len;
    json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
    } else {
        for (;;) {
            json_skip_ws(p);
            if (is_object) {
                if (p->i >= p->n || p->s[p->i] != '"') { json_fail(p, "expected string key"); return -1; }
                size_t klen;
                if (json_parse_string_raw(p, &klen)) return -1;
                json_push_key(p, json_arena_strdup(p->doc, p->sbuf ? p->sbuf : "", klen), klen);
                json_skip_ws(p);
                if (p->i >= p->n || p->s[p->i] != ':') { json_fail(p, "expected ':'"); return -1; }
                p->i++;
                json_skip_ws(p);
            }
            JsonValue child;
            if (json_parse_value(p, &child)) return -1;
            json_push(p, &child);
            json_skip_ws(p);
            if (p->i >= p->n) { json_fail(p, is_object ? "unterminated object" : "unterminated array"); return -1; }
            if (p->s[p->i] == ',') { p->i++; continue; }
            if (p->s[p->i] == close) { p->i++; break; }
            json_fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
            return -1;
        }
    }
    size_t count = p->stack_len - base;
    v->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    v->len = count;
    // an empty container keeps NULL arrays: the scratch stacks may never have been
    // allocated, and memcpy from NULL (even of 0 bytes) is undefined behaviour
    if (count > 0) {
        v->items = (JsonValue *)json_arena_alloc(p->doc, count * sizeof(JsonValue));
        memcpy(v->items, p->stack + base, count * sizeof(JsonValue));
        if (is_object) {
            v->keys = (char **)json_arena_alloc(p->doc, count * sizeof(char *));
            v->key_lens = (size_t *)json_arena_alloc(p->doc, count * sizeof(size_t));
            memcpy(v->keys, p->kstack + kbase, count * sizeof(char *));
            memcpy(v->key_lens, p->klstack + kbase, count * sizeof(size_t));
        }
    }
    p->stack_len = base;
    if (is_object) p->kstack_len = kbase;
    p->depth--;
    return 0;
}

static inline int json_parse_value(JsonParser *p, JsonValue *v) {
    memset(v, 0, sizeof *v);
    json_skip_ws(p);
    v->offset = p->i;
    if (p->i >= p->n) { json_fail(p, "unexpected end of input"); return -1; }
    char c = p->s[p->i];
    if (c == '{') return json_parse_container(p, v, 1);
    if (c == '[') return json_parse_container(p, v, 0);
    if (c == '"') {
        size_t len;
        if (json_parse_string_raw(p, &len)) return -1;
        v->type = JSON_STRING;
        v->len = len;
        v->str = json_arena_strdup(p->doc, p->sbuf ? p->sbuf : "", len);
        return 0;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return json_parse_number(p, v);
    if (p->n - p->i >= 4 && memcmp(p->s + p->i, "true", 4) == 0) { v->type = JSON_TRUE; p->i += 4; return 0; }
    if (p->n - p->i >= 5 && memcmp(p->s + p->i, "false", 5) == 0) { v->type = JSON_FALSE; p->i += 5; return 0; }
    if (p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) { v->type = JSON_NULL; p->i += 4; return 0; }
    json_fail(p, "unexpected character");
    return -1;
}

// Parses text[0..n). Returns 0 on success; otherwise -1 with a message in err.
static inline int json_parse(const char *text, size_t n, JsonDoc *doc, char *err, size_t errlen) {
    memset(doc, 0, sizeof *doc);
    doc->text = text;
    JsonParser p;
    memset(&p, 0, sizeof p);
    p.s = text;
    p.n = n;
    p.doc = doc;
    p.err = err;
    p.errlen = errlen;
    JsonValue *root = (JsonValue *)json_arena_alloc(doc, sizeof(JsonValue));
    int rc = json_parse_value(&p, root);
    if (rc == 0) {
        json_skip_ws(&p);
        if (p.i != p.n) { json_fail(&p, "trailing characters after JSON value"); rc = -1; }
    }
    free(p.stack);
    free(p.kstack);
    free(p.klstack);
    free(p.sbuf);
    if (rc != 0) { json_free(doc); return -1; }
    doc->root = root;
    return 0;
}

// ----------------------------------------------------------------------------
// access

// First member of an object with this key, or NULL (also NULL if obj is not an object).
static inline const JsonValue *json_get(const JsonValue *obj, const char *key) {
    if (obj == NULL || obj->type != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++)
        if (obj->key_lens[i] == kl && memcmp(obj->keys[i], key, kl) == 0) return &obj->items[i];
    return NULL;
}

static inline const char *json_type_name(JsonType t) {
    static const char *names[] = {"null", "false", "true", "number", "string", "array", "object"};
    return names[t];
}

// ----------------------------------------------------------------------------
// writing

// Writes s[0..n) as a JSON string literal: quotes, backslashes and control
// characters escaped, everything else (including non-ASCII UTF-8) raw.
static inline void json_write_string(FILE *fp, const char *s, size_t n) {
    fputc('"', fp);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        fwrite(s + run, 1, i - run, fp);
        run = i + 1;
        switch (c) {
            case '"': fputs("\\\"", fp); break;
            case '\\': fputs("\\\\", fp); break;
            case '\n': fputs("\\n", fp); break;
            case '\r': fputs("\\r", fp); break;
            case '\t': fputs("\\t", fp); break;
            case '\b': fputs("\\b", fp); break;
            case '\f': fputs("\\f", fp); break;
            default: fprintf(fp, "\\u%04x", c); break;
        }
    }
    fwrite(s + run, 1, n - run, fp);
    fputc('"', fp);
}

#endif // S1C_JSON_H
