/*
 * tests/fuzz/fuzz_jsonl.c: a JSONL file through data.c's readers.
 *
 * The first byte picks the reader; the rest is the file:
 *   0  ./data select's pool rows (pool_read(), read_pool_row()), stopping at
 *      the first bad line, as without --skip-bad
 *   1  the same with --skip-bad: every bad line is skipped, none stops it
 *   2  ./data tokenize/render's training examples (next_training_example(),
 *      both trace schemas) and s1's chat layout of each
 *   3  ./data select --eval's questions (ngram_index_add_file(), the
 *      decontamination index), stopping at the first bad line
 * An accepted row must hold what the selection stages read (a question
 * string of the stated length, booleans -1/0/1, a length >= -1).
 * (tests/fuzz/fuzz.h: how it is built and run.)
 */
#define DATA_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "data.c"
#include "tests/fuzz/fuzz.h"

static const char *path;
static int mode;

static void read_pool(void *ctx) {
    (void)ctx;
    Pool pool;
    pool_read(&pool, path, NULL, mode == 1);
    for (size_t i = 0; i < pool.len; i++) {
        const PoolRow *r = &pool.rows[i];
        FUZZ_ASSERT(r->question != NULL && strlen(r->question) == r->question_len, "row %zu: question", i);
        FUZZ_ASSERT(r->qwen7b >= -1 && r->qwen7b <= 1 && r->qwen32b >= -1 && r->qwen32b <= 1 && r->gemini >= -1 && r->gemini <= 1,
                    "row %zu: booleans", i);
        FUZZ_ASSERT(r->length >= -1 && r->source_type != NULL, "row %zu: length or source", i);
        (void)passes_quality(r->question, r->question_len, r->source_type);
    }
    pool_free(&pool);
}

static void read_examples(void *ctx) {
    (void)ctx;
    for (int traces = 0; traces < 2; traces++) {
        JsonlReader r;
        jsonl_open(&r, path, 1);
        ByteBuf thinking = {0};
        const char *question, *attempt;
        while (next_training_example(&r, (TraceSource)traces, &question, &thinking, &attempt)) {
            char *text = chat_s1_train(question, thinking.data, attempt);
            FUZZ_ASSERT(text != NULL, "no text");
            free(text);
        }
        bytebuf_free(&thinking);
        jsonl_close(&r);
    }
}

static void read_eval(void *ctx) {
    (void)ctx;
    NgramIndex ix = {0};
    ngram_index_add_file(&ix, path, 0);
    (void)ngram_index_hits(&ix, "What is 12 + 34 ? Give the answer as a number please", 52);
    ngram_index_free(&ix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    mode = data[0] % 4;
    path = fuzz_file("input.jsonl", data + 1, size - 1);
    fuzz_run(mode <= 1 ? read_pool : mode == 2 ? read_examples : read_eval, NULL);
    return 0;
}
