// tests/test_tokenizer.c: tokenizer.c against independent oracles.
//   - the 837 HF Qwen2.5 vectors (tests/fixtures/qwen2.5-vectors.jsonl), loaded
//     from tokenizer.json and from vocab.json + merges.txt;
//   - ids and decodings that PyPI `tokenizers` produced for seeded random strings
//     and id sequences (tests/fixtures/tok_hf_qwen.jsonl, scripts/gen_tokenizer_fixtures.py);
//   - a small trained tokenizer (tests/fixtures/tok_trained/tokenizer.json) and the ids
//     HF gives with it (tests/fixtures/tok_trained_hf.jsonl);
//   - the chat layouts' token vectors of qwen2.5.md section 6 and s1-spec.md 2.2, and
//     texts that transformers' apply_chat_template rendered (tests/fixtures/tok_chat_hf.jsonl,
//     tests/fixtures/s1-layout.jsonl).
// Run from the repo root: build/tests/test_tokenizer
#define TOKENIZER_NO_MAIN
#include "../tokenizer.c"
#include "test.h"

#define QWEN_DIR "tokenizers/qwen2.5"
#define VECTORS "tests/fixtures/qwen2.5-vectors.jsonl"
#define HF_FIXTURE "tests/fixtures/tok_hf_qwen.jsonl"
#define TRAINED_DIR "tests/fixtures/tok_trained"
#define TRAINED_FIXTURE "tests/fixtures/tok_trained_hf.jsonl"

// One case of a JSONL fixture: a text (or ids to decode) and the expected result.
typedef struct {
    char *text;
    size_t text_len;
    IdList ids;
    ByteBuf pretokens;          // "pretokens" field: the pieces, each followed by a NUL
    int has_pretokens;
    char *decoded;              // "decoded" field, if any
    size_t decoded_len;
} Case;

static uint32_t *read_ids(const JsonValue *arr, IdList *out) {
    for (size_t k = 0; arr && k < arr->len; k++) idlist_push(out, (uint32_t)arr->items[k].integer);
    return out->data;
}

// Reads {"text": ..., "ids": [...], "decoded": ...} lines.
static Case *read_cases(const char *path, size_t *n_out) {
    size_t len;
    char *text = read_file_check(path, &len);
    Case *cases = NULL;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && text[end] != '\n') end++;
        JsonDoc doc;
        char err[256];
        if (json_parse(text + i, end - i, &doc, err, sizeof err) != 0) die("%s: line %zu: %s", path, n + 1, err);
        cases = (Case *)reallocCheck(cases, (n + 1) * sizeof(Case));
        Case *c = &cases[n++];
        memset(c, 0, sizeof *c);
        const JsonValue *t = json_get(doc.root, "text"), *d = json_get(doc.root, "decoded");
        if (t) { c->text = (char *)mallocCheck(t->len + 1); memcpy(c->text, t->str, t->len + 1); c->text_len = t->len; }
        if (d) { c->decoded = (char *)mallocCheck(d->len + 1); memcpy(c->decoded, d->str, d->len + 1); c->decoded_len = d->len; }
        read_ids(json_get(doc.root, "ids"), &c->ids);
        const JsonValue *p = json_get(doc.root, "pretokens");
        for (size_t k = 0; p && k < p->len; k++) bytebuf_append(&c->pretokens, p->items[k].str, p->items[k].len + 1);
        c->has_pretokens = p != NULL;
        json_free(&doc);
        i = end + 1;
    }
    free(text);
    *n_out = n;
    return cases;
}

static void free_cases(Case *cases, size_t n) {
    for (size_t k = 0; k < n; k++) {
        free(cases[k].text); free(cases[k].decoded); idlist_free(&cases[k].ids); bytebuf_free(&cases[k].pretokens);
    }
    free(cases);
}

static int ids_equal(const IdList *a, const uint32_t *b, size_t n) {
    return a->len == n && (n == 0 || memcmp(a->data, b, n * sizeof(uint32_t)) == 0);
}

// first index where two id lists differ
static size_t first_diff(const IdList *a, const IdList *b) {
    size_t k = 0;
    while (k < a->len && k < b->len && a->data[k] == b->data[k]) k++;
    return k;
}

// Encodes every case that has a text and checks the ids.
static void check_encode_cases(Tokenizer *tok, const Case *cases, size_t n, const char *what) {
    size_t bad = 0, n_text = 0;
    IdList got = {0};
    for (size_t k = 0; k < n; k++) {
        if (cases[k].text == NULL || cases[k].has_pretokens) continue;
        n_text++;
        got.len = 0;
        tokenizer_encode(tok, cases[k].text, cases[k].text_len, 1, &got);
        if (!ids_equal(&got, cases[k].ids.data, cases[k].ids.len)) {
            size_t d = first_diff(&got, &cases[k].ids);
            CHECK(0, "%s case %zu (\"%.40s\"): %zu ids vs %zu, first difference at %zu: got %u want %u", what, k + 1,
                  cases[k].text, got.len, cases[k].ids.len, d, d < got.len ? got.data[d] : 0,
                  d < cases[k].ids.len ? cases[k].ids.data[d] : 0);
            bad++;
        }
    }
    printf("note: %s: %zu/%zu cases exact\n", what, n_text - bad, n_text);
    idlist_free(&got);
}

static void nfc_string(const char *s, size_t n, ByteBuf *out) {
    uint32_t *cps = NULL;
    size_t cap = 0;
    nfc_append((const unsigned char *)s, n, out, &cps, &cap);
    free(cps);
}

// decode(encode(x)) == NFC(x)
static int roundtrip_ok(Tokenizer *tok, const char *s, size_t n) {
    IdList ids = {0};
    ByteBuf got = {0}, want = {0};
    tokenizer_encode(tok, s, n, 1, &ids);
    tokenizer_decode(tok, ids.data, ids.len, 0, &got);
    nfc_string(s, n, &want);
    int ok = got.len == want.len && memcmp(got.data, want.data, got.len) == 0;
    idlist_free(&ids);
    bytebuf_free(&got);
    bytebuf_free(&want);
    return ok;
}

// xorshift64*
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rng_next(void) {
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

// A random valid UTF-8 string: code points from ASCII, Latin with combining marks,
// Hangul jamo, CJK, emoji, white space and all of Unicode (no surrogates).
static void random_utf8(ByteBuf *b, int n_chars) {
    static const uint32_t ranges[][2] = {{0x20, 0x7E}, {0x09, 0x0D}, {0x300, 0x36F}, {0xC0, 0x24F}, {0x1100, 0x11FF},
                                          {0x4E00, 0x9FFF}, {0x1F300, 0x1F6FF}, {0x2000, 0x206F}, {0x0900, 0x097F},
                                          {0x1, 0x10FFFF}, {0x30, 0x39}, {0xAC00, 0xD7A3}};
    b->len = 0;
    for (int k = 0; k < n_chars; k++) {
        const uint32_t *r = ranges[rng_next() % (sizeof ranges / sizeof ranges[0])];
        uint32_t cp = r[0] + rng_next() % (r[1] - r[0] + 1);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
        utf8_put(b, cp);
    }
}

static void test_vectors(Tokenizer *from_json, Tokenizer *from_vocab) {
    size_t n;
    Case *cases = read_cases(VECTORS, &n);
    TEST_BEGIN("HF Qwen2.5 vectors: all 837 exact from tokenizer.json");
    CHECK(n == 837, "expected 837 vectors, read %zu", n);
    check_encode_cases(from_json, cases, n, "tokenizer.json");
    TEST_END();
    TEST_BEGIN("HF Qwen2.5 vectors: all 837 exact from vocab.json + merges.txt");
    check_encode_cases(from_vocab, cases, n, "vocab.json+merges.txt");
    TEST_END();
    TEST_BEGIN("HF Qwen2.5 vectors: decoding the vector ids gives NFC(text)");
    for (size_t k = 0; k < n; k++) {
        ByteBuf got = {0}, want = {0};
        tokenizer_decode(from_json, cases[k].ids.data, cases[k].ids.len, 0, &got);
        nfc_string(cases[k].text, cases[k].text_len, &want);
        CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0, "case %zu", k + 1);
        bytebuf_free(&got);
        bytebuf_free(&want);
    }
    TEST_END();
    TEST_BEGIN("round trip decode(encode(x)) == NFC(x): vectors");
    for (size_t k = 0; k < n; k++) CHECK(roundtrip_ok(from_json, cases[k].text, cases[k].text_len), "case %zu", k + 1);
    TEST_END();
    free_cases(cases, n);
}

static void test_roundtrip_random(Tokenizer *tok) {
    TEST_BEGIN("round trip decode(encode(x)) == NFC(x): 2000 seeded random UTF-8 strings");
    ByteBuf s = {0};
    for (int k = 0; k < 2000; k++) {
        random_utf8(&s, 1 + (int)(rng_next() % 60));
        CHECK(roundtrip_ok(tok, s.data, s.len), "random string %d", k);
    }
    bytebuf_free(&s);
    TEST_END();
}

static void test_hf_fixture(Tokenizer *tok) {
    size_t n;
    Case *cases = read_cases(HF_FIXTURE, &n);
    TEST_BEGIN("PyPI tokenizers fixture: encode (seeded random strings, edge cases)");
    size_t n_enc = 0;
    for (size_t k = 0; k < n; k++) n_enc += cases[k].text != NULL;
    CHECK(n_enc >= 500, "only %zu encode cases", n_enc);
    check_encode_cases(tok, cases, n, "tokenizers fixture");
    TEST_END();
    TEST_BEGIN("PyPI tokenizers fixture: pre-tokenizer pieces of NFC(text) identical to HF's Split regex");
    size_t n_pre = 0;
    for (size_t k = 0; k < n; k++) {
        if (!cases[k].has_pretokens) continue;
        n_pre++;
        ByteBuf norm = {0}, pieces = {0};
        nfc_string(cases[k].text, cases[k].text_len, &norm);
        for (size_t i = 0; i < norm.len;) {
            size_t j = pretoken_end((const unsigned char *)norm.data, norm.len, i);
            bytebuf_append(&pieces, norm.data + i, j - i);
            bytebuf_append(&pieces, "", 1);   // the NUL after each piece
            i = j;
        }
        CHECK(pieces.len == cases[k].pretokens.len && memcmp(pieces.data, cases[k].pretokens.data, pieces.len) == 0,
              "pre-token case %zu (\"%.40s\")", k + 1, cases[k].text);
        bytebuf_free(&norm);
        bytebuf_free(&pieces);
    }
    CHECK(n_pre >= 300, "only %zu pre-token cases", n_pre);
    TEST_END();
    TEST_BEGIN("PyPI tokenizers fixture: decode of random ids (invalid UTF-8 -> U+FFFD like HF)");
    size_t n_dec = 0;
    for (size_t k = 0; k < n; k++) {
        if (cases[k].decoded == NULL) continue;
        n_dec++;
        ByteBuf got = {0};
        tokenizer_decode(tok, cases[k].ids.data, cases[k].ids.len, 0, &got);
        CHECK(got.len == cases[k].decoded_len && memcmp(got.data, cases[k].decoded, got.len) == 0,
              "decode case %zu: got \"%.60s\" want \"%.60s\"", k + 1, got.data, cases[k].decoded);
        bytebuf_free(&got);
    }
    CHECK(n_dec >= 100, "only %zu decode cases", n_dec);
    TEST_END();
    free_cases(cases, n);
}

static void test_table_vectors(Tokenizer *tok) {
    // qwen2.5.md 5.7 and 5.2 (verified there against HF)
    static const struct { const char *text; uint32_t ids[16]; int n; } v[] = {
        {"Hello, world!", {9707, 11, 1879, 0}, 4},
        {"x  \n  y", {87, 2303, 220, 379}, 4},
        {"\t(x", {197, 2075}, 2},
        {"<think>x</think> <tool_call>", {13708, 766, 28257, 522, 26865, 29, 220, 151657}, 8},
    };
    TEST_BEGIN("qwen2.5.md table vectors");
    IdList got = {0};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        got.len = 0;
        tokenizer_encode(tok, v[k].text, strlen(v[k].text), 1, &got);
        CHECK(ids_equal(&got, v[k].ids, (size_t)v[k].n), "\"%s\"", v[k].text);
    }
    TEST_END();
    TEST_BEGIN("added tokens as plain text, token ids, special flags, size");
    got.len = 0;
    tokenizer_encode(tok, "<|im_end|>", 10, 0, &got);
    CHECK(got.len > 1 && got.data[0] != 151645, "<|im_end|> as text should be several ordinary tokens");
    ByteBuf dec = {0};
    tokenizer_decode(tok, got.data, got.len, 0, &dec);
    CHECK(dec.len == 10 && memcmp(dec.data, "<|im_end|>", 10) == 0, "round trip of <|im_end|> as text");
    CHECK(tokenizer_size(tok) == 151665, "size %u", tokenizer_size(tok));
    CHECK(tokenizer_token_id(tok, "<|im_start|>") == 151644, "<|im_start|>");
    CHECK(tokenizer_token_id(tok, "<tool_call>") == 151657, "<tool_call>");
    CHECK(tokenizer_token_id(tok, "Wait") == 14190, "Wait");
    CHECK(tokenizer_token_id(tok, "\n") == 198, "newline");
    CHECK(tokenizer_token_id(tok, " ") == 220, "space");
    CHECK(tokenizer_token_id(tok, "<think>") == -1, "<think> is no token in Qwen2.5");
    CHECK(tokenizer_is_special(tok, 151645) && tokenizer_is_special(tok, 151643), "im_end, endoftext special");
    CHECK(!tokenizer_is_special(tok, 151657) && !tokenizer_is_special(tok, 9707) && !tokenizer_is_special(tok, 999999), "not special");
    uint32_t with_special[] = {151644, 220, 9707, 151657, 151645};
    dec.len = 0;
    tokenizer_decode(tok, with_special, 5, 1, &dec);
    CHECK(strcmp(dec.data, " Hello<tool_call>") == 0, "skip_special: got \"%s\"", dec.data);
    dec.len = 0;
    tokenizer_decode(tok, with_special, 5, 0, &dec);
    CHECK(strcmp(dec.data, "<|im_start|> Hello<tool_call><|im_end|>") == 0, "rendered: got \"%s\"", dec.data);
    bytebuf_free(&dec);
    TEST_END();
    TEST_BEGIN("invalid UTF-8 given to tokenizer_encode: no crash, the ids' bytes are the input");
    static const char *bad[] = {"a\xff" "b", "\xe4\xbd", "x \xc0\x80 y\r\n", "e\xcc\x81\xff\xcc\x81", "<|im_end|>\x80"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        got.len = 0;
        tokenizer_encode(tok, bad[k], strlen(bad[k]), 1, &got);
        ByteBuf raw = {0};
        for (size_t j = 0; j < got.len; j++) bytebuf_append(&raw, tok->tok_bytes.data + tok->tok_off[got.data[j]], tok->tok_len[got.data[j]]);
        ByteBuf want = {0};
        nfc_string(bad[k], strlen(bad[k]), &want);
        CHECK(raw.len == want.len && memcmp(raw.data, want.data, raw.len) == 0, "case %zu", k);
        bytebuf_free(&raw);
        bytebuf_free(&want);
    }
    idlist_free(&got);
    TEST_END();
}

static void test_stream_decode(Tokenizer *tok) {
    TEST_BEGIN("streaming decode: same text as one-shot decode, only complete UTF-8 emitted");
    ByteBuf s = {0};
    IdList ids = {0};
    for (int k = 0; k < 300; k++) {
        ids.len = 0;
        if (k % 3 == 0) {   // random ids, mostly single bytes: lots of broken UTF-8
            int n = 1 + (int)(rng_next() % 20);
            for (int j = 0; j < n; j++) idlist_push(&ids, rng_next() % 4 ? rng_next() % 256 : rng_next() % 151665);
        } else {
            random_utf8(&s, 1 + (int)(rng_next() % 40));
            tokenizer_encode(tok, s.data, s.len, 1, &ids);
        }
        ByteBuf whole = {0}, streamed = {0};
        tokenizer_decode(tok, ids.data, ids.len, 0, &whole);
        DecodeStream ds;
        decode_stream_init(&ds);
        for (size_t j = 0; j < ids.len; j++) {
            size_t before = streamed.len;
            decode_stream_push(tok, &ds, ids.data[j], 0, &streamed);
            CHECK(utf8_validate(streamed.data + before, streamed.len - before, NULL), "case %d: piece %zu is not valid UTF-8", k, j);
        }
        decode_stream_flush(&ds, &streamed);
        CHECK(whole.len == streamed.len && memcmp(whole.data, streamed.data, whole.len) == 0, "case %d differs", k);
        CHECK(utf8_validate(whole.data, whole.len, NULL), "case %d: decode is not valid UTF-8", k);
        bytebuf_free(&whole);
        bytebuf_free(&streamed);
    }
    // "😀" is 4 bytes = byte tokens: nothing comes out until the last one
    const unsigned char emoji[4] = {0xF0, 0x9F, 0x98, 0x80};
    DecodeStream ds;
    decode_stream_init(&ds);
    ByteBuf out = {0};
    for (int j = 0; j < 3; j++) {
        decode_stream_push(tok, &ds, tok->byte_id[emoji[j]], 0, &out);
        CHECK(out.len == 0, "emitted %zu bytes after %d of 4", out.len, j + 1);
    }
    decode_stream_push(tok, &ds, tok->byte_id[emoji[3]], 0, &out);
    CHECK(out.len == 4 && memcmp(out.data, emoji, 4) == 0, "emoji complete");
    // a truncated sequence at the end becomes U+FFFD on flush
    decode_stream_push(tok, &ds, tok->byte_id[0xE4], 0, &out);
    decode_stream_flush(&ds, &out);
    CHECK(out.len == 7 && memcmp(out.data + 4, "\xEF\xBF\xBD", 3) == 0, "flush of a truncated sequence");
    bytebuf_free(&out);
    bytebuf_free(&s);
    idlist_free(&ids);
    TEST_END();
}

static int parse_ids(const char *s, uint32_t *ids) {
    int n = 0;
    for (char *end; *s; s = end) {
        while (*s == ' ' || *s == '|') s++;
        if (!*s) break;
        ids[n++] = (uint32_t)strtoul(s, &end, 10);
    }
    return n;
}

static void check_chat(Tokenizer *tok, const char *name, char *text, const char *want_text, const char *want_ids) {
    CHECK(strcmp(text, want_text) == 0, "%s: text \"%s\"", name, text);
    uint32_t want[256];
    int n = parse_ids(want_ids, want);
    IdList got = {0};
    tokenizer_encode(tok, text, strlen(text), 1, &got);
    CHECK(ids_equal(&got, want, (size_t)n), "%s: %zu ids, want %d", name, got.len, n);
    idlist_free(&got);
    free(text);
}

static void test_chat(Tokenizer *tok) {
    TEST_BEGIN("chat layouts: Qwen2.5 template, s1 training text (55 ids), s1 eval prompt");
    const char *sys = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
    const char *sys_ids = "151644 8948 198 2610 525 1207 16948 11 3465 553 54364 14817 13 1446 525 264 10950 17847 13 151645 198 ";
    const char *roles1[] = {"user"}, *hi[] = {"Hi!"};
    char want[1024], want_ids[2048];
    snprintf(want, sizeof want, "%s<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", sys);
    snprintf(want_ids, sizeof want_ids, "%s151644 872 198 13048 0 151645 198 151644 77091 198", sys_ids);
    check_chat(tok, "qwen default system", chat_qwen(NULL, roles1, hi, 1, 1), want, want_ids);
    const char *roles4[] = {"system", "user", "assistant", "user"}, *msgs4[] = {"You are a cat.", "hello", "Meow!", "Why?"};
    char *two = chat_qwen(NULL, roles4, msgs4, 4, 1);
    CHECK(strcmp(two, "<|im_start|>system\nYou are a cat.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
                      "Meow!<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n") == 0, "explicit system: \"%s\"", two);
    free(two);
    char *explicit_sys = chat_qwen("You are a cat.", roles4 + 1, msgs4 + 1, 3, 1);
    char *from_role = chat_qwen(NULL, roles4, msgs4, 4, 1);
    CHECK(strcmp(explicit_sys, from_role) == 0, "system argument == leading system message");
    free(explicit_sys);
    free(from_role);
    // s1-spec.md 2.2
    snprintf(want, sizeof want, "%s<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
             "<|im_start|>think\n1+1=2.\n<|im_start|>answer\nAnswer: 2<|im_end|>\n", sys);
    snprintf(want_ids, sizeof want_ids, "%s151644 872 198 3838 374 220 16 10 16 30 151645 198 151644 77091 198 | "
             "151644 26865 198 16 10 16 28 17 624 151644 9217 198 16141 25 220 17 151645 198", sys_ids);
    check_chat(tok, "s1 training text", chat_s1_train("What is 1+1?", "1+1=2.", "2"), want, want_ids);
    // Python 3.11's str.isspace() is true for exactly these code points
    static const uint32_t py_space[] = {0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
        0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000};
    size_t n_space = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        int want = n_space < sizeof py_space / sizeof py_space[0] && py_space[n_space] == cp;
        n_space += (size_t)want;
        CHECK(py_isspace(cp) == want, "py_isspace(U+%04X)", cp);
    }
    // str.strip() semantics (Unicode white space, incl. U+3000 and \x1c) and the "Answer:" rule
    char *t = chat_s1_train("Q", "\x1c\u3000 \n think \t\n", " The Answer: 4\n\n");
    CHECK(strstr(t, "<|im_start|>think\nthink\n<|im_start|>answer\nThe Answer: 4<|im_end|>\n") != NULL, "strip: \"%s\"", t);
    free(t);
    t = chat_s1_train("Q", "", "   ");
    CHECK(strstr(t, "<|im_start|>think\n\n<|im_start|>answer\nAnswer:<|im_end|>\n") != NULL, "empty parts: \"%s\"", t);
    free(t);
    snprintf(want, sizeof want, "%s<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n<|im_start|>think", sys);
    snprintf(want_ids, sizeof want_ids, "%s151644 872 198 3838 374 220 16 10 16 30 151645 198 151644 77091 198 151644 26865", sys_ids);
    check_chat(tok, "s1 eval prompt", chat_s1_prompt("What is 1+1?"), want, want_ids);
    TEST_END();
}

// tests/fixtures/tok_chat_hf.jsonl: transformers' apply_chat_template renderings.
static void test_chat_fixture(void) {
    TEST_BEGIN("chat_qwen() == transformers apply_chat_template (tests/fixtures/tok_chat_hf.jsonl)");
    size_t len;
    char *text = read_file_check("tests/fixtures/tok_chat_hf.jsonl", &len);
    int n = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && text[end] != '\n') end++;
        JsonDoc doc;
        char err[256];
        if (json_parse(text + i, end - i, &doc, err, sizeof err) != 0) die("tok_chat_hf.jsonl: %s", err);
        const JsonValue *roles = json_get(doc.root, "roles"), *contents = json_get(doc.root, "contents");
        const char *r[16], *c[16];
        for (size_t k = 0; k < roles->len && k < 16; k++) { r[k] = roles->items[k].str; c[k] = contents->items[k].str; }
        char *got = chat_qwen(NULL, r, c, (int)roles->len, json_get(doc.root, "add_generation_prompt")->type == JSON_TRUE);
        CHECK(strcmp(got, json_get(doc.root, "text")->str) == 0, "chat %d: got \"%s\"", n + 1, got);
        free(got);
        json_free(&doc);
        n++;
        i = end + 1;
    }
    CHECK(n >= 7, "only %d chats", n);
    free(text);
    TEST_END();
}

// tests/fixtures/s1-layout.jsonl (scripts/gen_s1_layout_fixture.py): s1 samples that
// transformers' apply_chat_template rendered and tokenised.
static void test_s1_layout_fixture(Tokenizer *tok) {
    TEST_BEGIN("chat_s1_train() == HF apply_chat_template text and ids (tests/fixtures/s1-layout.jsonl)");
    size_t len;
    char *text = read_file_check("tests/fixtures/s1-layout.jsonl", &len);
    int n = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && text[end] != '\n') end++;
        JsonDoc doc;
        char err[256];
        if (json_parse(text + i, end - i, &doc, err, sizeof err) != 0) die("s1-layout.jsonl: %s", err);
        const JsonValue *traj = json_get(doc.root, "thinking_trajectories");
        ByteBuf thinking = {0};
        for (size_t k = 0; k < traj->len; k++) {
            if (k) bytebuf_append(&thinking, "\n", 1);
            bytebuf_append(&thinking, traj->items[k].str, traj->items[k].len);
        }
        char *got = chat_s1_train(json_get(doc.root, "question")->str, thinking.len ? thinking.data : "",
                                  json_get(doc.root, "attempt")->str);
        const char *name = json_get(doc.root, "name")->str;
        CHECK(strcmp(got, json_get(doc.root, "text")->str) == 0, "%s: text differs", name);
        IdList ids = {0}, want = {0};
        tokenizer_encode(tok, got, strlen(got), 1, &ids);
        read_ids(json_get(doc.root, "ids"), &want);
        CHECK(ids_equal(&ids, want.data, want.len), "%s: ids differ", name);
        n++;
        free(got);
        bytebuf_free(&thinking);
        idlist_free(&ids);
        idlist_free(&want);
        json_free(&doc);
        i = end + 1;
    }
    CHECK(n >= 10, "only %d samples", n);
    free(text);
    TEST_END();
}

static void test_trained(void) {
    Tokenizer *tok = tokenizer_load(TRAINED_DIR);
    size_t n;
    Case *cases = read_cases(TRAINED_FIXTURE, &n);
    TEST_BEGIN("trained tokenizer: ids identical to HF tokenizers loading the same tokenizer.json");
    CHECK(n >= 100, "only %zu cases", n);
    check_encode_cases(tok, cases, n, "trained tokenizer");
    TEST_END();
    TEST_BEGIN("trained tokenizer: round trip on its cases and random strings");
    for (size_t k = 0; k < n; k++) CHECK(roundtrip_ok(tok, cases[k].text, cases[k].text_len), "case %zu", k + 1);
    ByteBuf s = {0};
    for (int k = 0; k < 500; k++) {
        random_utf8(&s, 1 + (int)(rng_next() % 40));
        CHECK(roundtrip_ok(tok, s.data, s.len), "random string %d", k);
    }
    bytebuf_free(&s);
    TEST_END();
    free_cases(cases, n);
    tokenizer_free(tok);
}

// The committed trained tokenizer was made by `./tokenizer train --vocab-size 768`
// on the vectors' texts (scripts/gen_tokenizer_fixtures.py); training again
// must give the same file, byte for byte.
static void test_train_reproducible(void) {
    TEST_BEGIN("trainer: retraining on the vectors' texts reproduces tests/fixtures/tok_trained exactly");
    size_t n;
    Case *cases = read_cases(VECTORS, &n);
    ByteBuf corpus = {0};
    for (size_t k = 0; k < n; k++) { bytebuf_append(&corpus, cases[k].text, cases[k].text_len); bytebuf_append(&corpus, "\n", 1); }
    const char *texts[1] = {corpus.data};
    size_t lens[1] = {corpus.len};
    const char *added[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    Tokenizer *tok = tokenizer_train(texts, lens, 1, 768, added, 3, 0);
    CHECK(tokenizer_size(tok) == 768 + 3, "size %u", tokenizer_size(tok));
    CHECK(tokenizer_token_id(tok, "<|im_end|>") == 770, "<|im_end|> id %d", tokenizer_token_id(tok, "<|im_end|>"));
    char dir[] = "/tmp/s1c_tok_train_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    tokenizer_save(tok, dir);
    char *path = path_join(dir, "tokenizer.json");
    size_t la, lb;
    char *a = read_file_check(path, &la), *b = read_file_check(TRAINED_DIR "/tokenizer.json", &lb);
    CHECK(la == lb && memcmp(a, b, la) == 0, "retrained tokenizer.json differs (%zu vs %zu bytes)", la, lb);
    Tokenizer *reloaded = tokenizer_load(dir);
    CHECK(reloaded->n_merges == tok->n_merges && tokenizer_size(reloaded) == tokenizer_size(tok), "reload");
    // the trained tokenizer compresses its own corpus
    IdList ids = {0};
    tokenizer_encode(reloaded, corpus.data, corpus.len, 1, &ids);
    CHECK(3 * ids.len < 2 * corpus.len, "%zu ids for %zu bytes", ids.len, corpus.len);   // (1.75 bytes per id)
    idlist_free(&ids);
    remove(path);
    rmdir(dir);
    free(path); free(a); free(b);
    tokenizer_free(reloaded);
    tokenizer_free(tok);
    bytebuf_free(&corpus);
    free_cases(cases, n);
    TEST_END();
}

static void test_utf8(void) {
    TEST_BEGIN("utf8_validate and U+FFFD replacement (maximal subparts)");
    size_t bad = 99;
    CHECK(utf8_validate("abc\xE4\xBD\xA0", 6, &bad), "valid");
    CHECK(!utf8_validate("ab\xC0\x80", 4, &bad) && bad == 2, "overlong, bad %zu", bad);
    CHECK(!utf8_validate("\xED\xA0\x80", 3, &bad) && bad == 0, "surrogate");
    CHECK(!utf8_validate("a\xF4\x90\x80\x80", 5, &bad) && bad == 1, "above U+10FFFF");
    CHECK(!utf8_validate("xy\xE4\xBD", 4, &bad) && bad == 2, "truncated");
    static const struct { const char *in; size_t n; const char *out; } v[] = {
        {"a\x80z", 3, "a\xEF\xBF\xBDz"},
        {"\xE4\xBD" "z", 3, "\xEF\xBF\xBDz"},                 // truncated 3-byte sequence: one U+FFFD
        {"\xF0\x80\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},   // F0 80: bad second byte, three
        {"\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},   // a surrogate: three
        {"\xF4\x8F\xBF", 3, "\xEF\xBF\xBD"},                  // truncated at the end
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        ByteBuf out = {0};
        utf8_lossy_append((const unsigned char *)v[k].in, v[k].n, &out, 1);
        CHECK(out.len == strlen(v[k].out) && memcmp(out.data, v[k].out, out.len) == 0, "lossy case %zu", k);
        bytebuf_free(&out);
    }
    TEST_END();
}

int main(void) {
    double t0 = now_seconds();
    Tokenizer *from_json = tokenizer_load(QWEN_DIR);
    double t1 = now_seconds();
    Tokenizer *from_vocab = tokenizer_load_vocab_merges(QWEN_DIR);
    printf("note: loaded tokenizer.json in %.2f s\n", t1 - t0);
    TEST_BEGIN("both loaders build the same tokenizer");
    CHECK(tokenizer_size(from_json) == tokenizer_size(from_vocab) && from_json->n_merges == from_vocab->n_merges &&
          from_json->n_merges == 151387, "sizes %u/%u merges %u/%u", tokenizer_size(from_json), tokenizer_size(from_vocab),
          from_json->n_merges, from_vocab->n_merges);
    for (uint32_t r = 0; r < from_json->n_merges && r < from_vocab->n_merges; r++)
        CHECK(from_json->merge_new[r] == from_vocab->merge_new[r] && from_json->merge_new[r] == 256 + r, "merge %u", r);
    TEST_END();
    TEST_BEGIN("byte-level symbols: a bijection, and Qwen's ids 0..255 are the bytes in symbol order");
    for (int b = 0; b < 256; b++) {
        CHECK(bytelevel_byte_of_cp(bytelevel_cp_of_byte(b)) == b, "byte %d", b);
        CHECK(from_json->byte_id[bytelevel_byte_of_rank(b)] == (uint32_t)b, "id %d", b);
    }
    CHECK(bytelevel_cp_of_byte(' ') == 0x120 && bytelevel_cp_of_byte('\n') == 0x10A && bytelevel_cp_of_byte(0xAD) == 0x143, "Ġ Ċ Ń");
    CHECK(bytelevel_byte_of_cp(' ') == -1 && bytelevel_byte_of_cp(0x144) == -1 && bytelevel_byte_of_cp(0xAD) == -1, "not symbols");
    TEST_END();
    test_utf8();
    test_table_vectors(from_json);
    test_vectors(from_json, from_vocab);
    test_roundtrip_random(from_json);
    test_hf_fixture(from_json);
    test_stream_decode(from_json);
    test_chat(from_json);
    test_chat_fixture();
    test_s1_layout_fixture(from_json);
    test_trained();
    test_train_reproducible();
    tokenizer_free(from_json);
    tokenizer_free(from_vocab);
    return test_summary();
}
