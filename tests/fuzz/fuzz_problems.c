/*
 * tests/fuzz/fuzz_problems.c: the prompts and problems of ./s1 sample and
 * ./s1 eval (and sample.cu): common/generate.h's problems_read() on an
 * arbitrary JSONL file, then each question in s1's chat prompt.
 *
 * The first byte says whether an answer is required (eval) or not (sample).
 * An accepted problem has a question and, for eval, an answer; its chat
 * prompt contains the question. (tests/fuzz/fuzz.h: how it is built and run.)
 */
#define TOKENIZER_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "tokenizer.c"
#include "common/budget.h"
#include "common/generate.h"
#include "tests/fuzz/fuzz.h"

static const char *path;
static int need_answer;

static void read_problems(void *ctx) {
    (void)ctx;
    ProblemSet ps;
    problems_read(&ps, path, need_answer);
    for (size_t i = 0; i < ps.n; i++) {
        FUZZ_ASSERT(ps.items[i].question != NULL && (!need_answer || ps.items[i].answer != NULL), "problem %zu", i);
        char *prompt = chat_s1_prompt(ps.items[i].question);
        FUZZ_ASSERT(strstr(prompt, ps.items[i].question) != NULL, "problem %zu: the prompt lost its question", i);
        free(prompt);
    }
    problems_free(&ps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    need_answer = data[0] & 1;
    path = fuzz_file("problems.jsonl", data + 1, size - 1);
    fuzz_run(read_problems, NULL);
    return 0;
}
