/*
 * tests/fuzz/fuzz_tokenizer_json.c: tokenizer.c's tokenizer.json loader on
 * arbitrary bytes.
 *
 * The input is written as DIR/tokenizer.json and loaded with tokenizer_load().
 * A tokenizer it accepts must be usable: a sample text with special tokens,
 * non-ASCII letters and digits encodes to ids below its size, and those ids
 * decode (with and without the special tokens). (tests/fuzz/fuzz.h: how it
 * is built and run; the seeds are the repo's tokenizers cut down.)
 */
#define TOKENIZER_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "tokenizer.c"
#include "tests/fuzz/fuzz.h"

static const char *dir;

static void load(void *ctx) {
    (void)ctx;
    Tokenizer *tok = tokenizer_load(dir);
    static const char sample[] = "<|im_start|>user\nWhat is 17 + 25?\xc3\xa9\xe4\xb8\xad<|im_end|>\n \t x";
    IdList ids = {NULL, 0, 0};
    tokenizer_encode(tok, sample, sizeof sample - 1, 1, &ids);
    for (size_t i = 0; i < ids.len; i++) FUZZ_ASSERT(ids.data[i] < tokenizer_size(tok), "id %u >= size %u", ids.data[i], tokenizer_size(tok));
    ByteBuf out = {NULL, 0, 0};
    tokenizer_decode(tok, ids.data, ids.len, 0, &out);
    tokenizer_decode(tok, ids.data, ids.len, 1, &out);
    bytebuf_free(&out);
    idlist_free(&ids);
    tokenizer_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[600];
    if (path[0] == '\0') {
        snprintf(path, sizeof path, "%s/tok", fuzz_tmpdir());
        if (mkdir(path, 0755) != 0 && errno != EEXIST) { perror(path); abort(); }
    }
    dir = path;
    fuzz_file("tok/tokenizer.json", data, size);
    fuzz_run(load, NULL);
    return 0;
}
