// Tests of what ./s1 eval computes around budget forcing (issue 12, items 5, 6 and 9), each against
// values taken from s1's sources or from Hugging Face's tokenizer, never from our own output:
//   s1_thinking_tokens()   eval/compute_sample_stats.py:89-90,104 on texts whose token counts come from
//                          PyPI tokenizers (tests/fixtures/tok_hf_qwen.jsonl)
//   control_suffix()       the QUERY_TEMPLATEs of lm_eval/tasks/{aime,openai_math,gpqa/openai}/utils.py
//   score_maj_cov()        process_results() of lm_eval/tasks/aime/utils.py:249-300
//   budget_auto over sets  vllm_causallms.py:264 (max over every request of the batch)
#define TOKENIZER_NO_MAIN
#include "../tokenizer.c"
#include "../common/generate.h"
#include "../common/score.h"
#include "test.h"

int main(void) {
    Tokenizer *tok = tokenizer_load("tokenizers/qwen2.5");
    {
        TEST_BEGIN("s1's thinking statistic: split at <|im_start|>answer, drop the first and last lines, re-tokenize");
        // HF's ids of each fixture text T; T is put between a first line and a last line, as
        // "<|im_start|>think" + thinking text + delimiter + answer is stored, so steps = T's lines
        size_t len;
        char *text = read_file_check("tests/fixtures/tok_hf_qwen.jsonl", &len);
        int checked = 0;
        for (char *line = text; line < text + len;) {
            char *end = memchr(line, '\n', (size_t)(text + len - line));
            size_t n = end ? (size_t)(end - line) : (size_t)(text + len - line);
            JsonDoc doc;
            char err[128];
            if (json_parse(line, n, &doc, err, sizeof err) == 0) {
                const JsonValue *t = json_get(doc.root, "text"), *ids = json_get(doc.root, "ids");
                if (t && ids && t->type == JSON_STRING && strlen(t->str) == t->len && !strstr(t->str, "<|im_start|>answer")) {
                    ByteBuf b = {NULL, 0, 0};
                    bytebuf_puts(&b, "<|im_start|>thinkFirst, the question.\n");
                    bytebuf_puts(&b, t->str);
                    bytebuf_puts(&b, "\nSo the answer is 3.<|im_start|>answer\nAnswer: 3");
                    size_t got = s1_thinking_tokens(tok, b.data, b.len);
                    CHECK(got == ids->len, "fixture text %d: %zu tokens, HF has %zu", checked, got, ids->len);
                    checked++;
                    bytebuf_free(&b);
                }
                json_free(&doc);
            }
            line = end ? end + 1 : text + len;
        }
        free(text);
        CHECK(checked > 500, "only %d fixture texts", checked);
        TEST_END();
    }
    {
        TEST_BEGIN("s1's thinking statistic: the edge cases of split(\"\\n\")[1:-1]");
        // no newline or a single one before the delimiter: no steps, 0 tokens
        const char *none = "<|im_start|>thinkabc<|im_start|>answer\nx";
        const char *one = "<|im_start|>think\nabc<|im_start|>answer\nx";
        CHECK(s1_thinking_tokens(tok, none, strlen(none)) == 0, "no newline");
        CHECK(s1_thinking_tokens(tok, one, strlen(one)) == 0, "one newline");
        // "<|im_start|>think\n1\n\n" -> lines ["<|im_start|>think", "1", "", ""][1:-1] = ["1", ""] -> "1\n": 2 tokens
        const char *blank = "<|im_start|>think\n1\n\n<|im_start|>answer\n7";
        CHECK(s1_thinking_tokens(tok, blank, strlen(blank)) == 2, "got %zu", s1_thinking_tokens(tok, blank, strlen(blank)));
        // split(...)[0]: the FIRST delimiter ends the thinking; the text after it does not count
        const char *two = "<|im_start|>think\nA\nB\nC<|im_start|>answer\nD\nE\n<|im_start|>answer\nF";
        // lines A, B count: "A\nB" = A, \n, B -> 3 tokens
        CHECK(s1_thinking_tokens(tok, two, strlen(two)) == 3, "got %zu", s1_thinking_tokens(tok, two, strlen(two)));
        // without any delimiter (a cut-off output) the whole text is the thinking
        const char *cut = "<|im_start|>think\nA\nB\nC";
        CHECK(s1_thinking_tokens(tok, cut, strlen(cut)) == 3, "got %zu", s1_thinking_tokens(tok, cut, strlen(cut)));
        TEST_END();
    }
    {
        TEST_BEGIN("control prompts: s1's QUERY_TEMPLATE suffixes (aime/utils.py:11-20, gpqa/openai/utils.py:15-22)");
        char buf[512];
        ControlPrompt c;
        CHECK(control_parse("token:2048", &c) && c.kind == CONTROL_TOKENS && c.n == 2048, "token:2048");
        control_suffix(&c, 0, buf, sizeof buf);
        CHECK(strcmp(buf, "\n\nThink for up to 2048 tokens.") == 0, "token: '%s'", buf);
        CHECK(control_parse("token", &c) && c.n == 0, "token");
        control_suffix(&c, 4096, buf, sizeof buf);   // PROMPTTOKEN=4096 with max_tokens_thinking=4096 (commands.sh)
        CHECK(strcmp(buf, "\n\nThink for up to 4096 tokens.") == 0, "token = budget: '%s'", buf);
        CHECK(control_parse("step:64", &c), "step:64");
        control_suffix(&c, 0, buf, sizeof buf);
        CHECK(strcmp(buf, "\n\nThink for up to 64 steps.") == 0, "step: '%s'", buf);
        CHECK(control_parse("long", &c), "long");
        control_suffix(&c, 0, buf, sizeof buf);
        CHECK(strcmp(buf, "\n\nAnswer after a long amount of thinking. If you feel like you are finished early, spend the extra "
                          "time trying to double-check your work until you are absolutely sure that you have the correct answer.") == 0,
              "long: '%s'", buf);
        CHECK(control_parse("short", &c), "short");
        control_suffix(&c, 0, buf, sizeof buf);
        CHECK(strcmp(buf, "\n\nAnswer after a short amount of thinking. Do not spend excessive time double-checking your work.") == 0,
              "short: '%s'", buf);
        CHECK(!control_parse("token:0", &c) && !control_parse("step:", &c) && !control_parse("tokens:5", &c), "bad controls accepted");
        TEST_END();
    }
    {
        TEST_BEGIN("maj@k, cov@k as s1's process_results (Counter.most_common: first seen wins a tie)");
        // answers, their correctness against gt "5" and the expected maj/cov, worked out with
        // collections.Counter by hand: most_common(1) on a tie returns the first inserted key
        struct { const char *a[4]; size_t k; int maj, cov; } cases[] = {
            {{"5", "7", "7", "5"}, 4, 1, 1},   // 5:2, 7:2, "5" first
            {{"7", "5", "5", "7"}, 4, 0, 1},   // tie, "7" first
            {{"7", "5", "5", "7"}, 2, 0, 1},   // maj@2 over the first two: tie, "7"
            {{"7", "5", "5", "9"}, 4, 1, 1},   // 5:2 wins
            {{"7", "9", "7", "8"}, 4, 0, 0},
            {{"05", "7", "005", "7"}, 4, 1, 1},   // digit strings compare as integers (str(int(a)))
        };
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            char *c[4];
            int ok[4], maj, cov;
            for (size_t i = 0; i < cases[t].k; i++) { c[i] = strdup(cases[t].a[i]); ok[i] = score_math_equal(c[i], "5"); }
            score_maj_cov(c, ok, cases[t].k, "5", &maj, &cov);
            CHECK(maj == cases[t].maj && cov == cases[t].cov, "case %zu: maj %d cov %d, want %d %d", t, maj, cov, cases[t].maj, cases[t].cov);
            for (size_t i = 0; i < cases[t].k; i++) free(c[i]);
        }
        // GPQA: an unrecognised answer defaults to "A" before counting (gpqa/openai/utils.py:201-205)
        char *g[3] = {strdup("zzz"), strdup("B"), strdup("A")};
        int ok[3], maj, cov, d;
        for (int i = 0; i < 3; i++) ok[i] = score_choice(g[i], &d) == 'A';
        score_maj_cov(g, ok, 3, "A", &maj, &cov);
        CHECK(maj == 1 && cov == 1, "GPQA default A: maj %d cov %d", maj, cov);
        for (int i = 0; i < 3; i++) free(g[i]);
        TEST_END();
    }
    {
        TEST_BEGIN("auto budget over several problem sets: the longest prompt of all (vllm_causallms.py:264)");
        // two sets; the longer question is in the second. lm-eval batches both tasks (same gen_kwargs),
        // so B = max_gen_toks - max(len(request)) - len(thinking_start) - len(thinking_end_max) - 100
        ProblemSet ps = {NULL, 0};
        ps.items = callocCheck(2, sizeof(Problem));
        ps.items[0].question = strdup("What is 1+1?");
        ps.items[1].question = strdup("What is the sum of the first one hundred positive integers, written in base ten?");
        ps.n = 2;
        Delimiters d;
        delimiters_init(&d, tok, "tokenizers/qwen2.5", "Wait");
        size_t longest = problems_encode(&ps, tok);
        // the chat prompt of question 2 with "<|im_start|>think" (s1-spec 2.2's ids): system turn 21, user turn
        // 3 + question + 2, "<|im_start|>assistant\n" 3, "<|im_start|>think" 2
        IdList q = {NULL, 0, 0};
        encode_text(tok, ps.items[1].question, &q);
        CHECK(longest == 21 + 3 + q.len + 2 + 3 + 2, "longest %zu, question %zu ids", longest, q.len);
        long b = resolve_budget(&d, -1, 32768, longest);
        CHECK(b == 32768 - (long)(longest - 2) - 2 - 6 - 100, "auto budget %ld", b);
        idlist_free(&q);
        delimiters_free(&d);
        problems_free(&ps);
        TEST_END();
    }
    tokenizer_free(tok);
    return test_summary();
}
