/*
 * tests/fuzz/fuzz_encode.c: encoding arbitrary bytes with the real Qwen2.5
 * tokenizer (tokenizers/qwen2.5, or $S1C_TOKENIZER).
 *
 * The first byte picks whether added tokens ("<|im_end|>") are split out of
 * the text; the rest is the text, any bytes, valid UTF-8 or not. Checked for
 * every input: each id is below the tokenizer's size; for valid UTF-8,
 * decoding the ids and encoding the result again gives the same ids (decoding
 * is byte-exact, and NFC is idempotent, so encode(decode(encode(x))) ==
 * encode(x)); and the
 * decoded text equals the input when the input is ASCII, which NFC leaves
 * alone. (tests/fuzz/fuzz.h: how it is built and run.)
 */
#define TOKENIZER_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "tokenizer.c"
#include "tests/fuzz/fuzz.h"

static Tokenizer *tok;

static void load(void *ctx) {
    const char *dir = getenv("S1C_TOKENIZER");
    tok = tokenizer_load(dir ? dir : (const char *)ctx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (fuzz_run(load, (void *)"tokenizers/qwen2.5") != 0) {
        fprintf(stderr, "fuzz_encode: cannot load the tokenizer (run from the repo root, or set S1C_TOKENIZER)\n");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int split = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    IdList ids = {NULL, 0, 0}, again = {NULL, 0, 0};
    tokenizer_encode(tok, text, n, split, &ids);
    for (size_t i = 0; i < ids.len; i++) FUZZ_ASSERT(ids.data[i] < tokenizer_size(tok), "id %u >= size %u", ids.data[i], tokenizer_size(tok));
    ByteBuf out = {NULL, 0, 0};
    bytebuf_append(&out, "", 0);
    tokenizer_decode(tok, ids.data, ids.len, 0, &out);
    int ascii = 1;
    for (size_t i = 0; i < n; i++) ascii &= (unsigned char)text[i] < 0x80;
    if (ascii) FUZZ_ASSERT(out.len == n && memcmp(out.data, text, n) == 0, "ASCII text does not decode back to itself");
    int valid = utf8_validate(text, n, NULL);
    if (valid) {   // decoding turns invalid UTF-8 into U+FFFD (as Hugging Face does): the round trip needs valid text
        tokenizer_encode(tok, out.data, out.len, split, &again);
        FUZZ_ASSERT(again.len == ids.len && (ids.len == 0 || memcmp(again.data, ids.data, ids.len * 4) == 0),
                    "encode(decode(encode(x))) != encode(x): %zu ids, then %zu", ids.len, again.len);
    }
    bytebuf_free(&out);
    idlist_free(&ids);
    idlist_free(&again);
    return 0;
}
