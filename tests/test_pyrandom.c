// Tests of common/pyrandom.h against CPython: tests/fixtures/pyrandom.jsonl holds what CPython's
// random module printed (scripts/gen_pyrandom_fixture.py) for several seeds: getrandbits(32),
// random(), randrange(n) and 200 consecutive shuffles of [0, 1, 2, 3] (s1's GPQA choice order).
#include "../common/util.h"
#include "../common/json.h"
#include "../common/pyrandom.h"
#include "test.h"

int main(void) {
    size_t len;
    char *text = read_file_check("tests/fixtures/pyrandom.jsonl", &len);
    int rows = 0;
    TEST_BEGIN("CPython random: seed, getrandbits(32), random(), randrange(n), shuffle");
    for (char *line = text; line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = end ? (size_t)(end - line) : (size_t)(text + len - line);
        JsonDoc doc;
        char err[128];
        int parsed = n && json_parse(line, n, &doc, err, sizeof err) == 0;
        if (parsed && json_get(doc.root, "seed")) {
            const JsonValue *seed = json_get(doc.root, "seed");
            int64_t sd = seed->integer;
            PyRandom r;
            pyrandom_seed(&r, sd);
            const JsonValue *u = json_get(doc.root, "uint32");
            for (size_t i = 0; i < u->len; i++) {
                uint32_t got = pyrandom_uint32(&r);
                CHECK(got == (uint32_t)u->items[i].integer, "seed %lld draw %zu: %u, CPython %lld", (long long)sd, i, got, (long long)u->items[i].integer);
            }
            const JsonValue *f = json_get(doc.root, "random");
            for (size_t i = 0; i < f->len; i++) {
                double got = pyrandom_random(&r), want = strtod(f->items[i].str, NULL);
                CHECK(got == want, "seed %lld random() %zu: %.17g, CPython %s", (long long)sd, i, got, f->items[i].str);
            }
            const JsonValue *rb = json_get(doc.root, "randbelow");
            for (size_t i = 0; i < rb->len; i++) {
                uint64_t nn = (uint64_t)rb->items[i].items[0].integer, want = (uint64_t)rb->items[i].items[1].integer;
                uint64_t got = pyrandom_randbelow(&r, nn);
                CHECK(got == want, "seed %lld randrange(%llu): %llu, CPython %llu", (long long)sd, (unsigned long long)nn,
                      (unsigned long long)got, (unsigned long long)want);
            }
            pyrandom_seed(&r, sd);
            const JsonValue *s4 = json_get(doc.root, "shuffle4");
            for (size_t i = 0; i < s4->len; i++) {
                size_t x[4] = {0, 1, 2, 3};
                pyrandom_shuffle(&r, x, 4);
                char got[5] = {(char)('0' + x[0]), (char)('0' + x[1]), (char)('0' + x[2]), (char)('0' + x[3]), 0};
                CHECK(strcmp(got, s4->items[i].str) == 0, "seed %lld shuffle %zu: %s, CPython %s", (long long)sd, i, got, s4->items[i].str);
            }
            const JsonValue *s10 = json_get(doc.root, "shuffle10");
            size_t x[10];
            for (size_t i = 0; i < 10; i++) x[i] = i;
            pyrandom_shuffle(&r, x, 10);
            for (size_t i = 0; i < 10; i++)
                CHECK(x[i] == (size_t)s10->items[i].integer, "seed %lld shuffle10[%zu]: %zu, CPython %lld", (long long)sd, i, x[i],
                      (long long)s10->items[i].integer);
            rows++;
        }
        if (parsed) json_free(&doc);   // lines without a seed too (the fixture's header)
        line = end ? end + 1 : text + len;
    }
    CHECK(rows == 8, "%d seeds in the fixture, want 8", rows);
    TEST_END();
    free(text);
    return test_summary();
}
