/*
 * tests/fuzz/fuzz_json.c: common/json.h's parser on arbitrary bytes.
 *
 * Every input is parsed (never NUL-terminated: the parser must respect the
 * length). An accepted document is walked whole, checking what the parser
 * promises: every string and key is valid UTF-8 and NUL-terminated at its
 * length, containers hold exactly len items; and every string, written back
 * with json_write_string() and parsed again, comes back byte for byte. A
 * rejected one must come with a message. (tests/fuzz/fuzz.h: how it is built and run.)
 */
#include "common/json.h"
#include "tests/fuzz/fuzz.h"

static void check_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int k = json_utf8_valid_len((const unsigned char *)s + i, n - i);
        FUZZ_ASSERT(k > 0, "a decoded string holds invalid UTF-8 at byte %zu", i);
        i += (size_t)k;
    }
    FUZZ_ASSERT(s[n] == '\0', "a decoded string is not NUL-terminated at its length");
}

// json_write_string() then json_parse() gives the same bytes back
static void check_round_trip(const char *s, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    FUZZ_ASSERT(fp != NULL, "open_memstream failed");
    json_write_string(fp, s, n);
    FUZZ_ASSERT(fclose(fp) == 0, "memstream close failed");
    JsonDoc doc;
    char err[256];
    FUZZ_ASSERT(json_parse(buf, len, &doc, err, sizeof err) == 0, "a written string does not parse back: %s", err);
    FUZZ_ASSERT(doc.root->type == JSON_STRING && doc.root->len == n && memcmp(doc.root->str, s, n) == 0,
                "a string written and parsed back differs");
    json_free(&doc);
    free(buf);
}

static void walk(const JsonValue *v, int depth) {
    FUZZ_ASSERT(depth <= 513, "nesting deeper than the parser's limit was accepted");
    switch (v->type) {
        case JSON_STRING: check_utf8(v->str, v->len); check_round_trip(v->str, v->len); break;
        case JSON_NUMBER: if (v->is_integer) FUZZ_ASSERT((double)v->integer == v->number || fabs(v->number) > 9e15, "integer %lld vs %g", (long long)v->integer, v->number); break;
        case JSON_ARRAY:
        case JSON_OBJECT:
            FUZZ_ASSERT(v->len == 0 || v->items != NULL, "a non-empty container without items");
            for (size_t i = 0; i < v->len; i++) {
                if (v->type == JSON_OBJECT) {
                    check_utf8(v->keys[i], v->key_lens[i]);
                    // json_get finds a key (the first of duplicates) unless it holds a NUL
                    const JsonValue *got = json_get(v, v->keys[i]);
                    FUZZ_ASSERT(strlen(v->keys[i]) != v->key_lens[i] || (got != NULL && got <= &v->items[i]), "json_get misses key %zu", i);
                }
                walk(&v->items[i], depth + 1);
            }
            break;
        default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    JsonDoc doc;
    char err[256];
    err[0] = '\0';
    if (json_parse((const char *)data, size, &doc, err, sizeof err) == 0) {
        walk(doc.root, 0);
        json_free(&doc);
    } else {
        FUZZ_ASSERT(err[0] != '\0' && strchr(err, '\n') == NULL, "a rejection without a one-line message");
    }
    return 0;
}
