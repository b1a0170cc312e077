// Tests of common/budget.h: the budget-forcing controller against hand-derived
// traces of the s1 harness (s1-spec 5), run on a scripted fake decoder, plus a
// randomized comparison with a literal transcription of the harness's Python
// loop (re-prefill per round, concatenate, truncate, strip).
#include "../common/budget.h"
#include "test.h"

// ----------------------------------------------------------------------------
// a tiny vocabulary

enum { A = 1, B_ = 2, C = 3, D = 4, E = 5, F = 6, G = 7, NL = 10, WAIT = 11, IM_START = 12, IM_END = 13,
       ANSWER = 14, FINAL = 15, ANSW = 16, COLON = 17, FILL = 19, EOT = 20, DOTNL = 21 };

static const uint32_t think_stop_ids[] = {IM_START, IM_END};
// what vLLM 0.6.4.post1 stopped on (common/generate.h, generation_run()): with Wait, the harness's
// stop_token_ids plus the generation config's <|endoftext|>; without, the eos <|im_end|> and
// <|endoftext|> (the stop string "<|im_start|>" never matches a skipped special token)
static const uint32_t vllm_wait_stop_ids[] = {IM_START, IM_END, EOT};
static const uint32_t vllm_plain_stop_ids[] = {IM_END, EOT};
static const uint32_t vllm_answer_stop_ids[] = {IM_END, EOT};
static const uint32_t answer_stop_ids[] = {IM_END};
static const uint32_t wait_ids[] = {WAIT};
static const uint32_t end_ids[] = {IM_START, ANSWER};
static const uint32_t end_max_ids[] = {IM_START, ANSWER, NL, FINAL, ANSW, COLON};
static const uint32_t nl_ids[] = {NL};

// the decoded text ends in '\n' if the last non-special id is "\n" or ".\n"
static int fake_ends_with_newline(void *ctx, const uint32_t *ids, size_t n) {
    (void)ctx;
    while (n > 0 && (ids[n - 1] == IM_START || ids[n - 1] == IM_END || ids[n - 1] == EOT)) n--;
    return n > 0 && (ids[n - 1] == NL || ids[n - 1] == DOTNL);
}

// ----------------------------------------------------------------------------
// the scripted decoder: next() returns the script's choices in order. A banned
// choice (min_tokens) makes it return FILL instead, keeping the choice for
// the next call, as masking a logit makes the runner-up win.

typedef struct {
    const uint32_t *script;
    size_t n_script, pos;
    IdList context;   // everything fed, as the KV cache would hold it
    int next_calls;
} Fake;

static void fake_feed(void *ctx, const uint32_t *ids, size_t n) {
    Fake *f = (Fake *)ctx;
    for (size_t i = 0; i < n; i++) idlist_push(&f->context, ids[i]);
}
static uint32_t fake_next(void *ctx, const uint32_t *banned, size_t n_banned) {
    Fake *f = (Fake *)ctx;
    f->next_calls++;
    uint32_t id = f->pos < f->n_script ? f->script[f->pos] : G;
    for (size_t i = 0; i < n_banned; i++) if (banned[i] == id) return FILL;
    f->pos++;
    return id;
}
static size_t fake_length(void *ctx) { return ((Fake *)ctx)->context.len; }
static void fake_rewind(void *ctx, size_t len) {
    Fake *f = (Fake *)ctx;
    if (len > f->context.len) { printf("  rewind beyond the context\n"); return; }
    f->context.len = len;
}

static const uint32_t prompt_ids[] = {100, 101, IM_START, 102};   // "...<|im_start|>think"

static BudgetConfig base_config(long B, int n_ignore) {
    BudgetConfig c;
    memset(&c, 0, sizeof c);
    c.max_thinking = B;
    c.n_ignore = n_ignore;
    c.ignore_str = (IdSpan){wait_ids, 1};
    c.think_stop = (IdSpan){think_stop_ids, 2};
    c.thinking_end = (IdSpan){end_ids, 2};
    c.thinking_end_max = (IdSpan){end_max_ids, 6};
    c.newline = (IdSpan){nl_ids, 1};
    c.answer_stop = (IdSpan){answer_stop_ids, 1};
    c.max_answer = 50;
    c.ends_with_newline = fake_ends_with_newline;
    return c;
}

// the stops vLLM ran the harness with; the harness strips only <|im_start|>, <|im_end|>
static BudgetConfig vllm_config(long B, int n_ignore) {
    BudgetConfig c = base_config(B, n_ignore);
    c.think_stop = n_ignore >= 0 ? (IdSpan){vllm_wait_stop_ids, 3} : (IdSpan){vllm_plain_stop_ids, 2};
    c.strip = (IdSpan){think_stop_ids, 2};
    c.answer_stop = (IdSpan){vllm_answer_stop_ids, 2};
    return c;
}

typedef struct {
    BudgetResult res;
    Fake fake;
} Run;

static Run run_script(const BudgetConfig *c, const uint32_t *script, size_t n) {
    Run r;
    memset(&r, 0, sizeof r);
    r.fake.script = script;
    r.fake.n_script = n;
    fake_feed(&r.fake, prompt_ids, 4);
    Decoder d = {&r.fake, fake_feed, fake_next, fake_length, fake_rewind};
    budget_run(&d, c, &r.res);
    return r;
}

static void run_free(Run *r) { budget_result_free(&r->res); idlist_free(&r->fake.context); }

static int ids_eq(const IdList *l, const uint32_t *want, size_t n) {
    if (l->len != n) return 0;
    for (size_t i = 0; i < n; i++) if (l->data[i] != want[i]) return 0;
    return 1;
}

static void print_ids(const char *what, const IdList *l) {
    printf("  %s:", what);
    for (size_t i = 0; i < l->len; i++) printf(" %u", l->data[i]);
    printf("\n");
}

#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CHECK_IDS(list, ...) do {                                                  \
    const uint32_t want_[] = {__VA_ARGS__};                                        \
    int ok_ = ids_eq(&(list), want_, LEN(want_));                                  \
    if (!ok_) print_ids(#list, &(list));                                           \
    CHECK(ok_, "%s differs from the hand-derived trace", #list);                   \
} while (0)

// the context must be prompt + thinking + transition + answer, in that order
static int context_consistent(const Run *r) {
    const IdList *ctx = &r->fake.context;
    size_t want = 4 + r->res.thinking.len + r->res.transition.len + r->res.answer.len;
    if (ctx->len != want) return 0;
    size_t k = 4;
    for (size_t i = 0; i < r->res.thinking.len; i++) if (ctx->data[k++] != r->res.thinking.data[i]) return 0;
    for (size_t i = 0; i < r->res.transition.len; i++) if (ctx->data[k++] != r->res.transition.data[i]) return 0;
    for (size_t i = 0; i < r->res.answer.len; i++) if (ctx->data[k++] != r->res.answer.data[i]) return 0;
    return 1;
}

// ----------------------------------------------------------------------------
// a literal transcription of the harness loop (vllm_causallms.py), for the
// randomized comparison: each round re-runs the model on the whole prompt,
// ids are concatenated in Python-list style, truncated, stripped.

typedef struct {
    uint32_t thinking[512], transition[8], answer[64];
    size_t n_thinking, n_transition, n_answer;
    int waits;
} HarnessOut;

// vllm = 1: the stops vLLM 0.6.4.post1 used (<|endoftext|> from generation_config.json; without
// ignoring only the eos ids, as the string stops never match), of which the harness strips only its own.
static int is_stop(uint32_t t, int vllm, int ignoring) {
    if (!vllm) return t == IM_START || t == IM_END;
    return t == IM_END || t == EOT || (ignoring && t == IM_START);
}

static void harness_reference(const uint32_t *script, size_t n_script, long B, int n_ignore, long max_answer, int vllm, HarnessOut *o) {
    memset(o, 0, sizeof *o);
    size_t pos = 0;   // the model's next choice
    // min_tokens masks every id in _all_stop_token_ids (vLLM adds the generation config's eos ids to it)
    #define MODEL_CHOICE(banned_stops) \
        ((banned_stops) && pos < n_script && is_stop(script[pos], vllm, 1) ? (uint32_t)FILL \
         : (pos < n_script ? script[pos++] : (uint32_t)G))
    uint32_t out[512];
    size_t n_out = 0;
    const char *finish = "length";
    int rounds = n_ignore < 0 ? 1 : n_ignore + 1;
    for (int i = 0; i < rounds; i++) {
        // generate(max_tokens=B, min_tokens=1 if ignoring, stop_token_ids=[<|im_start|>, <|im_end|>])
        uint32_t cont[512];
        size_t n_cont = 0;
        finish = "length";
        while ((long)n_cont < B) {
            uint32_t t = MODEL_CHOICE(n_ignore >= 0 && n_cont == 0);
            cont[n_cont++] = t;
            if (is_stop(t, vllm, n_ignore >= 0)) { finish = "stop"; break; }
        }
        if (strcmp(finish, "length") == 0 || i == rounds - 1) {
            memcpy(out + n_out, cont, n_cont * sizeof(uint32_t));
            n_out += n_cont;
            break;
        }
        // for toks in until_thinking_tok: if cont[-len(toks):] == toks: cont = cont[:-len(toks)]
        if (cont[n_cont - 1] == IM_START) n_cont--;
        if (n_cont && cont[n_cont - 1] == IM_END) n_cont--;
        cont[n_cont++] = WAIT;
        o->waits++;
        memcpy(out + n_out, cont, n_cont * sizeof(uint32_t));
        n_out += n_cont;
    }
    // text[-1] == "\n" on the untruncated text
    int ends_nl = fake_ends_with_newline(NULL, out, n_out);
    if ((long)n_out > B) n_out = (size_t)B;
    if (n_out && out[n_out - 1] == IM_START) n_out--;
    if (n_out && out[n_out - 1] == IM_END) n_out--;
    memcpy(o->thinking, out, n_out * sizeof(uint32_t));
    o->n_thinking = n_out;
    if (strcmp(finish, "length") == 0) {
        if (!ends_nl) o->transition[o->n_transition++] = NL;
        memcpy(o->transition + o->n_transition, end_max_ids, sizeof end_max_ids);
        o->n_transition += LEN(end_max_ids);
    } else {
        memcpy(o->transition, end_ids, sizeof end_ids);
        o->n_transition = 2;
    }
    // answer: generate(max_tokens=max_gen_toks, stop=<|im_end|>)
    while ((long)o->n_answer < max_answer) {
        uint32_t t = MODEL_CHOICE(0);
        if (t == IM_END || (vllm && t == EOT)) break;
        o->answer[o->n_answer++] = t;
    }
    #undef MODEL_CHOICE
}

// ----------------------------------------------------------------------------
// the randomized comparison: 2000 random scripts through budget_run() and the
// transcription; returns the mismatches and counts what the scripts exercised

typedef struct { int forced, cut, quirk, kept_eot, over_budget, forced_not_at_b; } Coverage;

static int randomized_compare(uint64_t state, int vllm, Coverage *cov) {
    int mismatches = 0;
    memset(cov, 0, sizeof *cov);
    for (int trial = 0; trial < 2000; trial++) {
        uint32_t s[200];
        for (size_t i = 0; i < LEN(s); i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t r = (uint32_t)(state >> 33) % (vllm ? 14 : 12);
            s[i] = r < 2 ? IM_END : r < 3 ? IM_START : r < 4 ? NL : (vllm && r < 6) ? EOT : (uint32_t)(A + r % 5);
        }
        long B = 1 + (long)(trial % 9);
        int n_ignore = trial % 6 - 1;
        BudgetConfig c = vllm ? vllm_config(B, n_ignore) : base_config(B, n_ignore);
        c.max_answer = 20;
        Run r = run_script(&c, s, LEN(s));
        HarnessOut h;
        harness_reference(s, LEN(s), B, n_ignore, 20, vllm, &h);
        IdList th = {h.thinking, h.n_thinking, 0}, tr = {h.transition, h.n_transition, 0}, an = {h.answer, h.n_answer, 0};
        int same = ids_eq(&r.res.thinking, th.data, th.len) && ids_eq(&r.res.transition, tr.data, tr.len) &&
                   ids_eq(&r.res.answer, an.data, an.len) && r.res.waits == h.waits && context_consistent(&r);
        if (!same && mismatches++ < 3) {
            printf("  trial %d (B=%ld N=%d) differs\n", trial, B, n_ignore);
            print_ids("ours thinking", &r.res.thinking); print_ids("harness thinking", &th);
            print_ids("ours transition", &r.res.transition); print_ids("harness transition", &tr);
        }
        cov->over_budget += r.res.thinking.len > (size_t)B;
        if (r.res.forced_exit) {
            cov->forced++;
            cov->forced_not_at_b += r.res.thinking.len != (size_t)B;
        }
        if (r.res.generated > r.res.thinking.len + 1) cov->cut++;
        if (!r.res.forced_exit && r.res.generated > (size_t)B + 1) cov->quirk++;
        for (size_t i = 0; i < r.res.thinking.len; i++) cov->kept_eot += r.res.thinking.data[i] == EOT;
        run_free(&r);
    }
    return mismatches;
}

int main(void) {
    {
        TEST_BEGIN("no forcing: the model stops by itself, normal transition");
        const uint32_t s[] = {A, B_, C, IM_END, E, F, IM_END};
        BudgetConfig c = base_config(10, -1);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_, C);
        CHECK_IDS(r.res.transition, IM_START, ANSWER);
        CHECK_IDS(r.res.answer, E, F);
        CHECK(r.res.think_finish == FINISH_STOP && !r.res.forced_exit && r.res.waits == 0, "finish/waits");
        CHECK(r.res.answer_finish == FINISH_STOP, "answer should stop on <|im_end|>");
        CHECK(context_consistent(&r), "the decoder context is not prompt+thinking+transition+answer");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("budget: forced exit at exactly B thinking tokens, \\n + Final Answer appended");
        const uint32_t s[] = {A, B_, C, D, E, F, IM_END};
        BudgetConfig c = base_config(4, -1);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_, C, D);
        CHECK_IDS(r.res.transition, NL, IM_START, ANSWER, NL, FINAL, ANSW, COLON);
        CHECK_IDS(r.res.answer, E, F);
        CHECK(r.res.think_finish == FINISH_LENGTH && r.res.forced_exit, "should be a forced exit");
        CHECK(context_consistent(&r), "context");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("budget: no extra newline when the thinking text already ends in one (\".\\n\" token)");
        const uint32_t s[] = {A, B_, C, DOTNL, E, IM_END};
        BudgetConfig c = base_config(4, -1);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_, C, DOTNL);
        CHECK_IDS(r.res.transition, IM_START, ANSWER, NL, FINAL, ANSW, COLON);
        CHECK_IDS(r.res.answer, E);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("budget: a stop id that would be token B+1 comes too late (length wins)");
        const uint32_t s[] = {A, B_, C, IM_END, E, IM_END};
        BudgetConfig c = base_config(3, -1);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_, C);
        CHECK(r.res.forced_exit, "forced exit expected");
        // the answer phase sees the model's next choice, the <|im_end|> it wanted to write
        CHECK(r.res.answer.len == 0 && r.res.answer_finish == FINISH_STOP, "answer should be empty, stopped");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("no forcing: a stop on the very first token is allowed (no min_tokens)");
        const uint32_t s[] = {IM_START, E, IM_END};
        BudgetConfig c = base_config(5, -1);
        Run r = run_script(&c, s, LEN(s));
        CHECK(r.res.thinking.len == 0, "thinking should be empty, got %zu ids", r.res.thinking.len);
        CHECK_IDS(r.res.transition, IM_START, ANSWER);
        CHECK_IDS(r.res.answer, E);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("Wait x2: both stop ids dropped, Wait inserted exactly twice, last stop stripped");
        const uint32_t s[] = {A, IM_END, B_, C, IM_START, D, IM_END, E, IM_END};
        BudgetConfig c = base_config(10, 2);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, WAIT, B_, C, WAIT, D);
        CHECK_IDS(r.res.transition, IM_START, ANSWER);
        CHECK_IDS(r.res.answer, E);
        CHECK(r.res.waits == 2 && r.res.rounds == 3, "waits %d rounds %d", r.res.waits, r.res.rounds);
        CHECK(r.res.generated == 7, "generated %zu, want 7 (incl. the final stop id)", r.res.generated);
        CHECK(context_consistent(&r), "context");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("Wait xN with a model that keeps stopping: exactly N Waits for N = 0..5");
        const uint32_t s[] = {A, IM_END, A, IM_END, A, IM_END, A, IM_END, A, IM_END, A, IM_END, A, IM_END, E, IM_END};
        for (int n = 0; n <= 5; n++) {
            BudgetConfig c = base_config(100, n);
            Run r = run_script(&c, s, LEN(s));
            int waits_in_ids = 0;
            for (size_t i = 0; i < r.res.thinking.len; i++) waits_in_ids += r.res.thinking.data[i] == WAIT;
            CHECK(r.res.waits == n && waits_in_ids == n, "N=%d: %d waits, %d Wait ids", n, r.res.waits, waits_in_ids);
            CHECK(r.res.thinking.len == (size_t)(2 * n + 1), "N=%d: %zu thinking ids", n, r.res.thinking.len);
            CHECK(context_consistent(&r), "N=%d: context", n);
            run_free(&r);
        }
        TEST_END();
    }
    {
        TEST_BEGIN("min_tokens=1 after Wait: an immediate stop id is masked");
        const uint32_t s[] = {A, IM_END, IM_END, E, IM_END};
        BudgetConfig c = base_config(10, 1);
        Run r = run_script(&c, s, LEN(s));
        // round 1's first choice <|im_end|> is banned, FILL wins, then <|im_end|> stops the last round
        CHECK_IDS(r.res.thinking, A, WAIT, FILL);
        CHECK_IDS(r.res.answer, E);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("quirk 5.4: a stopped last round cut by the B truncation gets the plain delimiter");
        const uint32_t s[] = {A, B_, IM_END, C, D, E, IM_END, F, IM_END};
        BudgetConfig c = base_config(5, 1);
        Run r = run_script(&c, s, LEN(s));
        // rounds: [A B <end>] -> [A B Wait]; [C D E <end>] (full budget 5 again); 7 ids cut to 5
        CHECK_IDS(r.res.thinking, A, B_, WAIT, C, D);
        CHECK_IDS(r.res.transition, IM_START, ANSWER);   // no "\n", no "Final Answer:"
        CHECK_IDS(r.res.answer, F);
        CHECK(!r.res.forced_exit && r.res.think_finish == FINISH_STOP, "the last round stopped");
        CHECK(r.res.generated == 7, "generated %zu", r.res.generated);
        CHECK(context_consistent(&r), "the cache was not rewound to the truncated thinking");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("a middle round hitting B is final; truncation to B; forced exit");
        const uint32_t s[] = {A, IM_END, B_, C, D, E, IM_END};
        BudgetConfig c = base_config(3, 3);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, WAIT, B_);
        CHECK_IDS(r.res.transition, NL, IM_START, ANSWER, NL, FINAL, ANSW, COLON);
        CHECK_IDS(r.res.answer, E);
        CHECK(r.res.waits == 1 && r.res.rounds == 2 && r.res.forced_exit, "waits %d rounds %d", r.res.waits, r.res.rounds);
        CHECK(context_consistent(&r), "context");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("quirk: the newline test reads the untruncated text");
        const uint32_t s[] = {A, IM_END, B_, C, NL, E, IM_END};
        BudgetConfig c = base_config(3, 1);
        Run r = run_script(&c, s, LEN(s));
        // untruncated [A Wait B C \n] ends in "\n", so no "\n" is added although [A Wait B] does not
        CHECK_IDS(r.res.thinking, A, WAIT, B_);
        CHECK_IDS(r.res.transition, IM_START, ANSWER, NL, FINAL, ANSW, COLON);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("no ignore string (Table 4 'no string'): the stop id is just dropped");
        const uint32_t s[] = {A, IM_END, B_, IM_END, E, IM_END};
        BudgetConfig c = base_config(10, 1);
        c.ignore_str.n = 0;
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_);
        CHECK(r.res.waits == 1, "waits %d", r.res.waits);
        CHECK_IDS(r.res.answer, E);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("answer phase: max_answer tokens, then finish reason length");
        const uint32_t s[] = {A, IM_END, E, F, G, G, IM_END};
        BudgetConfig c = base_config(10, -1);
        c.max_answer = 2;
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.answer, E, F);
        CHECK(r.res.answer_finish == FINISH_LENGTH, "answer finish");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("context limit ends thinking as 'length'");
        const uint32_t s[] = {A, B_, C, D, E, F, IM_END};
        BudgetConfig c = base_config(10, -1);
        c.context_limit = 4 + 3;
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_, C);
        CHECK(r.res.forced_exit && r.res.answer.len == 0 && r.res.answer_finish == FINISH_LENGTH, "limit");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("context limit: no room for Wait ends thinking as 'length', nothing overflows");
        const uint32_t s[] = {A, B_, IM_END, C, IM_END};
        BudgetConfig c = base_config(10, 1);
        c.context_limit = 4 + 3;
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_);
        CHECK(r.res.waits == 0 && r.res.forced_exit && r.res.answer.len == 0, "waits %d forced %d", r.res.waits, r.res.forced_exit);
        CHECK(r.fake.context.len <= 7, "the context grew to %zu ids, beyond the limit 7", r.fake.context.len);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("README variant: remaining budget per round, no truncation, no delimiter");
        const uint32_t s[] = {A, B_, IM_END, C, IM_END, D, E, IM_END};
        BudgetConfig c = base_config(6, 2);
        c.readme_variant = 1;
        Run r = run_script(&c, s, LEN(s));
        // round 0: A B <end> (3 of 6); round 1 gets 3: C <end> (2); round 2 gets 1: D (length)
        CHECK_IDS(r.res.thinking, A, B_, WAIT, C, WAIT, D);
        CHECK(r.res.transition.len == 0, "the README appends no delimiter");
        CHECK_IDS(r.res.answer, E);
        CHECK(r.res.waits == 2 && r.res.rounds == 3 && r.res.think_finish == FINISH_LENGTH, "waits %d rounds %d",
              r.res.waits, r.res.rounds);
        CHECK(context_consistent(&r), "context");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("README variant: no Wait once the budget is spent");
        const uint32_t s[] = {A, B_, C, D, IM_END};
        BudgetConfig c = base_config(3, 3);
        c.readme_variant = 1;
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_, C);
        CHECK(r.res.waits == 0 && r.res.rounds == 1, "waits %d", r.res.waits);
        CHECK_IDS(r.res.answer, D);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("budget_auto matches s1-spec 5.2");
        // 32768 - prompt 300 - "<|im_start|>think" 2 - "<|im_start|>answer\nFinal Answer:" 6 - 100
        CHECK(budget_auto(32768, 300, 2, 6) == 32360, "got %ld", budget_auto(32768, 300, 2, 6));
        TEST_END();
    }
    {
        TEST_BEGIN("randomized: controller == literal harness transcription (2000 scripts)");
        Coverage cov;
        int mismatches = randomized_compare(42, 0, &cov);
        CHECK(mismatches == 0, "%d of 2000 scripts differ from the harness transcription", mismatches);
        CHECK(cov.over_budget == 0, "thinking longer than B in %d scripts", cov.over_budget);
        CHECK(cov.forced_not_at_b == 0, "a forced exit must come at exactly B thinking ids (%d did not)", cov.forced_not_at_b);
        // the random scripts must exercise every branch, or the comparison proves little
        CHECK(cov.forced > 100 && cov.cut > 100 && cov.quirk > 20, "coverage: forced %d, cut %d, quirk %d", cov.forced, cov.cut, cov.quirk);
        TEST_END();
    }
    // ---- stop ids as vLLM 0.6.4.post1 ran the harness (issue 12 item 7). Expected traces follow
    // vllm_causallms.py: a round's cont loses only a trailing until_thinking id (:361-364, :396-399),
    // the next round's prompt is requests + cont (:377), the answer prompt cont + thinking_end (:411).
    {
        TEST_BEGIN("vLLM stops, Wait x1: a round ending on <|endoftext|> keeps it, then Wait");
        const uint32_t s[] = {A, EOT, B_, IM_END, E, IM_END};
        BudgetConfig c = vllm_config(10, 1);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, EOT, WAIT, B_);
        CHECK_IDS(r.res.transition, IM_START, ANSWER);
        CHECK_IDS(r.res.answer, E);
        CHECK(r.res.waits == 1 && r.res.think_finish == FINISH_STOP, "waits %d", r.res.waits);
        CHECK(context_consistent(&r), "the kept <|endoftext|> must be in the context before Wait");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("vLLM stops, no Wait: <|im_start|> does not stop (string stop on a skipped special token)");
        const uint32_t s[] = {A, IM_START, ANSWER, C, IM_END, E, IM_END};
        BudgetConfig c = vllm_config(10, -1);
        Run r = run_script(&c, s, LEN(s));
        // the round runs through the model's own "<|im_start|>answer C" to the eos <|im_end|>, which is
        // stripped; the harness then appends "<|im_start|>answer" and the answer phase runs again
        CHECK_IDS(r.res.thinking, A, IM_START, ANSWER, C);
        CHECK_IDS(r.res.transition, IM_START, ANSWER);
        CHECK_IDS(r.res.answer, E);
        CHECK(context_consistent(&r), "context");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("vLLM stops, no Wait: a final <|endoftext|> is not stripped and precedes the delimiter");
        const uint32_t s[] = {A, B_, EOT, E, EOT};
        BudgetConfig c = vllm_config(10, -1);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.thinking, A, B_, EOT);
        CHECK_IDS(r.res.transition, IM_START, ANSWER);
        CHECK_IDS(r.res.answer, E);   // the answer phase stops on <|endoftext|> too
        CHECK(r.res.answer_finish == FINISH_STOP, "answer finish");
        CHECK(context_consistent(&r), "the final <|endoftext|> must be fed before the delimiter");
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("vLLM stops: min_tokens masks <|endoftext|> too (it is in _all_stop_token_ids)");
        const uint32_t s[] = {A, IM_END, EOT, B_, IM_END, E, IM_END};
        BudgetConfig c = vllm_config(10, 1);
        Run r = run_script(&c, s, LEN(s));
        // round 1: EOT banned as first token -> FILL, then EOT stops the last round and stays
        CHECK_IDS(r.res.thinking, A, WAIT, FILL, EOT);
        CHECK_IDS(r.res.answer, B_);
        run_free(&r);
        TEST_END();
    }
    {
        TEST_BEGIN("randomized, vLLM stops: controller == literal harness transcription (2000 scripts)");
        Coverage cov;
        int mismatches = randomized_compare(7, 1, &cov);
        CHECK(mismatches == 0, "%d of 2000 scripts differ from the harness transcription", mismatches);
        CHECK(cov.kept_eot > 100, "coverage: only %d kept <|endoftext|> ids", cov.kept_eot);
        TEST_END();
    }
    // ---- rejection sampling (vllm_causallms.py:268-269: max_tokens = B+1; :299: keep len(token_ids) <= B)
    {
        TEST_BEGIN("rejection sampling: accept only a thinking that stops within B ids, stop id included");
        struct { uint32_t s[6]; size_t n; int rejected; } cases[] = {
            {{A, B_, IM_END, E, IM_END}, 5, 0},      // 3 ids <= B = 3: kept
            {{A, B_, C, IM_END, E, IM_END}, 6, 1},   // stopped, but 4 ids > 3
            {{A, B_, C, D, E, IM_END}, 6, 1},        // length (B+1 = 4 ids)
        };
        for (size_t t = 0; t < LEN(cases); t++) {
            BudgetConfig c = vllm_config(4, -1);
            c.accept_within = 3;
            Run r = run_script(&c, cases[t].s, cases[t].n);
            CHECK(r.res.rejected == cases[t].rejected, "case %zu: rejected %d", t, r.res.rejected);
            if (!r.res.rejected) {
                CHECK_IDS(r.res.thinking, A, B_);
                CHECK_IDS(r.res.transition, IM_START, ANSWER);
                CHECK_IDS(r.res.answer, E);
            } else CHECK(r.res.answer.len == 0 && r.res.transition.len == 0, "a rejected run has no answer phase");
            run_free(&r);
        }
        TEST_END();
    }
    {
        TEST_BEGIN("uncut ids: what the stored text decodes, before the cut to B");
        const uint32_t s[] = {A, B_, IM_END, C, D, E, IM_END, F, IM_END};
        BudgetConfig c = base_config(5, 1);
        Run r = run_script(&c, s, LEN(s));
        CHECK_IDS(r.res.uncut, A, B_, WAIT, C, D, E, IM_END);
        CHECK_IDS(r.res.thinking, A, B_, WAIT, C, D);
        run_free(&r);
        TEST_END();
    }
    return test_summary();
}
