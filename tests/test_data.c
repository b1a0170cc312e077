/*
 * tests/test_data.c: the s1K pipeline (data.c) against its specification.
 *
 *   make build/tests/test_data && build/tests/test_data     (from the repo root)
 *
 * Filter rules on crafted questions, positive and negative (the expected
 * values of the bold-digit rule were computed with Python's re on the same
 * strings); selection properties (size, seed set, domain coverage, the
 * 2^-rank preference for long traces, seeds, the phase boundary, ablation
 * modes); the JSONL reader on the three schemas; and the training layout
 * against Hugging Face (tests/fixtures/s1-layout.jsonl, made by
 * scripts/gen_s1_layout_fixture.py): ids, mask boundary and truncation.
 */
#define DATA_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"   // the commands' helpers this test does not call
#include "../data.c"
#include "test.h"

// ----------------------------------------------------------------------------
// helpers

static char *write_temp(const char *content) {
    char *path = xstrdup("/tmp/test_data_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) die("mkstemp failed");
    FILE *fp = fdopen(fd, "wb");
    fputs(content, fp);
    fclose(fp);
    return path;
}

// A pool row built in memory (only what the stages look at).
static PoolRow mkrow(const char *question, const char *domain, const char *source, int q7, int q32, int gem, int64_t len) {
    PoolRow r;
    memset(&r, 0, sizeof r);
    r.question = xstrdup(question);
    r.question_len = strlen(question);
    r.domain = domain ? xstrdup(domain) : NULL;
    r.source_type = xstrdup(source);
    r.qwen7b = q7;
    r.qwen32b = q32;
    r.gemini = gem;
    r.has_trace = 1;
    r.length = len;
    return r;
}

static void free_rows(PoolRow *rows, size_t n) {
    for (size_t i = 0; i < n; i++) { free(rows[i].question); free(rows[i].domain); free(rows[i].source_type); }
}

// ----------------------------------------------------------------------------
// filter rules

static int quality(const char *q, const char *source) { return passes_quality(q, strlen(q), source); }

static void test_quality_rules(void) {
    TEST_BEGIN("quality: [asy] dropped unless the source is AIME");
    CHECK(!quality("Find x. [asy]draw((0,0)--(1,1));[/asy]", "qfq/openaimath/Geometry"), "[asy] from MATH must be dropped");
    CHECK(quality("Find x. [asy]draw((0,0)--(1,1));[/asy]", SOURCE_AIME), "[asy] from AIME must be kept");
    CHECK(quality("[asy]x[/asy] ![Image](a.png) p3. **7**", "xyz AIME xyz"), "AIME [asy] skips the other checks");
    CHECK(!quality("[asy]x[/asy]", "aime"), "the AIME test is case-sensitive");
    CHECK(quality("Find x in the figure [as y].", "MATH"), "a near miss must pass");
    CHECK(!quality("p3. a plain question from AIME", SOURCE_AIME), "without [asy] an AIME question gets every check");
    TEST_END();

    TEST_BEGIN("quality: ![Image] dropped");
    CHECK(!quality("See ![Image](fig.png) and answer.", "MATH"), "image link must be dropped");
    CHECK(quality("See ![image](fig.png) and answer.", "MATH"), "the match is case-sensitive");
    CHECK(quality("See !Image and answer.", "MATH"), "near miss must pass");
    TEST_END();

    TEST_BEGIN("quality: p{i}. for i = 1..999");
    struct { const char *q; int flagged; } cases[] = {
        {"p1.", 1}, {"p12.", 1}, {"p999.", 1}, {"ap1.", 1}, {"p1.5", 1}, {"sp3.x", 1}, {"p0.", 0}, {"p1000.", 0},
        {"p01.", 0}, {"p.", 0}, {"P1.", 0}, {"p1", 0}, {"p 1.", 0}, {"p99", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = has_p_number_dot(cases[i].q, strlen(cases[i].q));
        CHECK(got == cases[i].flagged, "%s: got %d, Python says %d", cases[i].q, got, cases[i].flagged);
        CHECK(quality(cases[i].q, "MATH") == !cases[i].flagged, "%s: quality disagrees", cases[i].q);
    }
    TEST_END();

    TEST_BEGIN("quality: bold with digit, as Python re.search(r'\\*\\*(?=.*\\d)[^\\s\\]]*\\*\\*', q)");
    struct { const char *q; int flagged; } bold[] = {
        {"**12**", 1}, {"**Q7** text", 1}, {"**Problem 7**: find", 0}, {"**bold** and 5", 1}, {"**x**\n5", 0},
        {"**a]b** 3", 0}, {"**a**b** 3", 1}, {"****5", 1}, {"** 1**", 0}, {"**1** ", 1}, {"no stars 123", 0},
        {"*1*", 0}, {"**1*", 0}, {"**\xef\xbc\x91**", 1} /* fullwidth 1 */, {"**\xd9\xa3**", 1} /* Arabic-Indic 3 */,
        {"a **b\xc2\xa0" "c** 7", 0} /* no-break space */, {"**b\xe2\x80\x83** 7", 0} /* em space */, {"**p2** ", 1},
        {"**3** then\nmore", 1}, {"**\n3**", 0}, {"** **9", 0}, {"x**y**z 4", 1}, {"**\xc3\xa9**1", 1}, {"***1***", 1},
        {"**[1]**", 0}, {"**1]**", 0}};
    for (size_t i = 0; i < sizeof bold / sizeof bold[0]; i++) {
        int got = has_bold_with_digit(bold[i].q, strlen(bold[i].q));
        CHECK(got == bold[i].flagged, "case %zu \"%s\": got %d, Python says %d", i, bold[i].q, got, bold[i].flagged);
    }
    TEST_END();
}

static void test_quality_fixture(void) {
    TEST_BEGIN("quality: 2000 random strings agree with Python (tests/fixtures/data-quality-cases.jsonl)");
    JsonlReader r;
    jsonl_open(&r, "tests/fixtures/data-quality-cases.jsonl", 0);
    const JsonValue *obj;
    size_t cases = 0, positives = 0;
    while ((obj = jsonl_next(&r)) != NULL) {
        const JsonValue *q = json_get(obj, "q");
        const char *src = json_get(obj, "source_type")->str;
        int bold = has_bold_with_digit(q->str, q->len), pnum = has_p_number_dot(q->str, q->len);
        int keep = passes_quality(q->str, q->len, src);
        CHECK(bold == (int)json_get(obj, "bold")->integer, "line %zu: bold %d, Python %lld", r.line_no, bold, (long long)json_get(obj, "bold")->integer);
        CHECK(pnum == (int)json_get(obj, "pnum")->integer, "line %zu: p-number %d", r.line_no, pnum);
        CHECK(keep == (int)json_get(obj, "keep")->integer, "line %zu: keep %d", r.line_no, keep);
        cases++;
        positives += (size_t)bold;
    }
    CHECK(cases == 2000 && positives > 50, "%zu cases, %zu bold positives", cases, positives);
    jsonl_close(&r);
    TEST_END();
}

static void test_na_and_difficulty(void) {
    TEST_BEGIN("na: any missing feature drops the row");
    PoolRow ok = mkrow("q", "Algebra", "MATH", 0, 0, 1, 10);
    CHECK(!row_has_na(&ok), "a complete row is not NA");
    PoolRow r = ok; r.domain = NULL; CHECK(row_has_na(&r), "no domain");
    r = ok; r.qwen7b = -1; CHECK(row_has_na(&r), "no 7B grade");
    r = ok; r.qwen32b = -1; CHECK(row_has_na(&r), "no 32B grade");
    r = ok; r.gemini = -1; CHECK(row_has_na(&r), "no Gemini grade");
    r = ok; r.length = -1; CHECK(row_has_na(&r), "no gemini_length");
    r = ok; r.has_trace = 0; CHECK(row_has_na(&r), "no trace");
    r = ok; r.gemini = 0; r.length = 0; CHECK(!row_has_na(&r), "false and 0 are values, not NA");
    free_rows(&ok, 1);
    TEST_END();

    TEST_BEGIN("difficulty: dropped if either Qwen model solved it");
    PoolRow rows[4] = {mkrow("a", "d", "s", 0, 0, 1, 1), mkrow("b", "d", "s", 1, 0, 1, 1), mkrow("c", "d", "s", 0, 1, 1, 1),
                       mkrow("e", "d", "s", 1, 1, 1, 1)};
    CHECK(!solved_by_qwen(&rows[0]), "unsolved must stay");
    CHECK(solved_by_qwen(&rows[1]), "7B solved must go");
    CHECK(solved_by_qwen(&rows[2]), "32B solved must go");
    CHECK(solved_by_qwen(&rows[3]), "both solved must go");
    free_rows(rows, 4);
    TEST_END();
}

static void test_decontaminate_and_dedup(void) {
    TEST_BEGIN("decontaminate: shared lowercased, whitespace-collapsed word 8-gram");
    NgramIndex ix = {0};
    const char *eval_q = "Let  ABC be a triangle\nwith sides 3, 4 and 5. Find its area.";
    ngram_index_add(&ix, eval_q, strlen(eval_q));
    const char *hit = "PROOF: let abc be A TRIANGLE with   sides 3, 4 and 7.";        // "let abc be a triangle with sides 3," 8 words
    const char *miss7 = "let abc be a triangle with sides";                            // 7 words: no 8-gram
    const char *punct = "let abc be a triangle with sides 3 4 and";                    // "3," vs "3": punctuation stays attached
    const char *other = "A completely different question with many more than eight words in it.";
    CHECK(ngram_index_hits(&ix, hit, strlen(hit)), "case and whitespace must not matter");
    CHECK(!ngram_index_hits(&ix, miss7, strlen(miss7)), "fewer than 8 words is never flagged");
    CHECK(!ngram_index_hits(&ix, punct, strlen(punct)), "words keep their punctuation");
    CHECK(!ngram_index_hits(&ix, other, strlen(other)), "unrelated question flagged");
    CHECK(ngram_index_hits(&ix, eval_q, strlen(eval_q)), "the eval question itself");
    const char *accent = "\xc3\x89tudiez la fonction f sur R et trouvez son maximum global.";   // "Étudiez"
    ngram_index_add(&ix, accent, strlen(accent));
    const char *lower = "\xc3\xa9tudiez la fonction f sur r et trouvez";                          // "étudiez", 8 words
    CHECK(ngram_index_hits(&ix, lower, strlen(lower)), "non-ASCII capitals lowercase like str.lower()");
    ngram_index_free(&ix);
    TEST_END();

    TEST_BEGIN("dedup: exact duplicates only, first kept");
    PoolRow rows[4] = {mkrow("What is 2+2?", "d", "s", 0, 0, 1, 1), mkrow("What is 2+2? ", "d", "s", 0, 0, 1, 1),
                       mkrow("What is 2+2?", "d", "s", 0, 0, 1, 1), mkrow("what is 2+2?", "d", "s", 0, 0, 1, 1)};
    Pool pool = {rows, 4, 4, 0, 0};
    size_t cand[4] = {0, 1, 2, 3};
    size_t n = filter_dedup(&pool, cand, 4);
    CHECK(n == 3, "kept %zu, want 3", n);
    CHECK(cand[0] == 0 && cand[1] == 1 && cand[2] == 3, "kept rows %zu %zu %zu, want 0 1 3", cand[0], cand[1], cand[2]);
    free_rows(rows, 4);
    TEST_END();
}

// ----------------------------------------------------------------------------
// selection

static void test_draw_rank(void) {
    TEST_BEGIN("draw_rank: P(rank k) = 2^-k / sum, so the longest is drawn about half the time");
    Rng rng;
    rng_init(&rng, 7);
    enum { DRAWS = 40000, M = 10 };
    size_t counts[M] = {0};
    for (int i = 0; i < DRAWS; i++) {
        size_t k = draw_rank(&rng, M);
        CHECK(k < M, "rank %zu out of range", k);
        if (k < M) counts[k]++;
    }
    double total = 2.0 - ldexp(1.0, 1 - M);
    for (int k = 0; k < 4; k++) {
        double want = ldexp(1.0, -k) / total, got = (double)counts[k] / DRAWS;
        double sd = sqrt(want * (1 - want) / DRAWS);   // binomial standard deviation; 5 sd is a 1-in-3.5M false alarm
        CHECK(fabs(got - want) < 5 * sd, "rank %d: frequency %.4f, want %.4f +- %.4f", k, got, want, 5 * sd);
    }
    CHECK(draw_rank(&rng, 1) == 0, "a single item is rank 0");
    TEST_END();
}

// A pool of nd domains x per rows; lengths distinct; a few GPQA/AIME/MATH rows.
static PoolRow *make_select_pool(size_t nd, size_t per, size_t *n_out) {
    static const char *names[] = {"Algebra", "Biology", "Combinatorics", "Geometry", "Number theory", "Physics"};
    size_t n = nd * per;
    PoolRow *rows = (PoolRow *)mallocCheck(n * sizeof(PoolRow));
    char q[64];
    for (size_t i = 0; i < n; i++) {
        size_t d = i % nd, k = i / nd;
        const char *src = "numina";
        if (k == 0 && d == 0) src = SOURCE_AIME;        // seeds: AIME in domain 0, GPQA in domain 1
        if (k == 1 && d == 0) src = SOURCE_AIME;
        if (k == 0 && d == 1) src = SOURCE_GPQA;
        if (k == 2 && d == 2) src = "qfq/openaimath/Algebra";
        snprintf(q, sizeof q, "question %zu", i);
        rows[i] = mkrow(q, names[d], src, 0, 0, k != 1 || d != 0 ? 1 : 0, (int64_t)(1000 + 37 * ((i * 7919) % n)));
    }
    rows[2 * nd + 2].length = 6000;   // the MATH row: a seed only with a long trace
    *n_out = n;
    return rows;
}

static size_t run_select(PoolRow *rows, size_t n, SelectMode mode, size_t want, uint64_t seed, size_t *out, SelectStats *st) {
    size_t *cand = (size_t *)mallocCheck(n * sizeof(size_t));
    for (size_t i = 0; i < n; i++) cand[i] = i;
    SelectConfig cfg = {mode, want, seed, 5600};
    size_t got = select_rows(rows, n, cand, n, &cfg, out, st);
    free(cand);
    return got;
}

static void test_select_s1(void) {
    size_t n;
    PoolRow *rows = make_select_pool(5, 60, &n);   // 300 rows
    size_t want = 100, out[300], out2[300];
    SelectStats st;

    TEST_BEGIN("select s1: exactly n distinct rows, the seed set included, every domain covered");
    size_t got = run_select(rows, n, MODE_S1, want, 1, out, &st);
    CHECK(got == want, "selected %zu, want %zu", got, want);
    unsigned char *hit = (unsigned char *)callocCheck(n, 1);
    for (size_t i = 0; i < got; i++) { CHECK(!hit[out[i]], "row %zu selected twice", out[i]); hit[out[i]] = 1; }
    // seeds: Gemini-correct AIME (row 0; row 5 is AIME but wrong), GPQA (row 1), MATH with length > 5600 (row 12)
    CHECK(st.num_seeds == 3, "seed set has %zu rows, want 3", st.num_seeds);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == 12, "seeds first: got %zu %zu %zu", out[0], out[1], out[2]);
    int domain_hit[5] = {0};
    for (size_t i = 0; i < got; i++) domain_hit[out[i] % 5] = 1;
    for (int d = 0; d < 5; d++) CHECK(domain_hit[d], "domain %d not covered", d);
    free(hit);
    TEST_END();

    TEST_BEGIN("select s1: the MATH seed rule needs gemini_length > 5600");
    rows[12].length = 5600;
    run_select(rows, n, MODE_S1, want, 1, out, &st);
    CHECK(st.num_seeds == 2, "a 5600-token MATH trace made the seed set (%zu seeds)", st.num_seeds);
    rows[12].length = 6000;
    TEST_END();

    TEST_BEGIN("select s1: same seed same rows, different seed different rows");
    run_select(rows, n, MODE_S1, want, 1, out, &st);
    run_select(rows, n, MODE_S1, want, 1, out2, &st);
    CHECK(memcmp(out, out2, want * sizeof(size_t)) == 0, "seed 1 twice gave different selections");
    run_select(rows, n, MODE_S1, want, 2, out2, &st);
    CHECK(memcmp(out, out2, want * sizeof(size_t)) != 0, "seeds 1 and 2 gave the same selection");
    TEST_END();

    TEST_BEGIN("select s1: from 70% of n on, domains come from the benchmark histogram");
    // benchmark weights: AIME rows (2) in Algebra and GPQA (1) in Biology: w = 2 + int(1 * 0.5*2/1) = 2 and 1
    run_select(rows, n, MODE_S1, want, 3, out, &st);
    CHECK(st.phase_boundary == 70, "boundary %zu, want 70", st.phase_boundary);
    size_t early_other = 0;
    for (size_t i = 0; i < want; i++) {
        size_t d = out[i] % 5;
        if (i >= 70) CHECK(d == 0 || d == 1, "selection %zu is from domain %zu, not a benchmark domain", i, d);
        else early_other += d >= 2;
    }
    CHECK(early_other > 20, "before the boundary all domains are drawn uniformly (%zu from the others)", early_other);
    TEST_END();

    TEST_BEGIN("select s1: longer traces preferred, p(longest in a domain) ~ 0.5");
    // one domain, n = 1, no seeds: the chosen row is the longest with probability 1/(2 - 2^-19)
    PoolRow one[20];
    for (int i = 0; i < 20; i++) {
        char q[32];
        snprintf(q, sizeof q, "q%d", i);
        one[i] = mkrow(q, "Algebra", "numina", 0, 0, 1, 100 + (i * 7) % 20);
    }
    size_t longest = 0;
    for (size_t i = 0; i < 20; i++) if (one[i].length > one[longest].length) longest = i;
    int trials = 4000, hits = 0, second = 0;
    for (int s = 0; s < trials; s++) {
        size_t pick;
        run_select(one, 20, MODE_S1, 1, (uint64_t)s, &pick, &st);
        hits += pick == longest;
        second += one[pick].length == one[longest].length - 1;
    }
    double p = (double)hits / trials, p2 = (double)second / trials, sd = sqrt(0.25 / trials);
    CHECK(fabs(p - 0.5) < 5 * sd, "p(longest) = %.3f, want 0.5 +- %.3f", p, 5 * sd);
    CHECK(fabs(p2 - 0.25) < 5 * sd, "p(second longest) = %.3f, want 0.25 +- %.3f", p2, 5 * sd);
    free_rows(one, 20);
    TEST_END();

    TEST_BEGIN("select s1: a pool smaller than n gives all of it, no more");
    got = run_select(rows, 40, MODE_S1, 100, 1, out, &st);
    CHECK(got == 40, "selected %zu of a 40-row pool", got);
    TEST_END();
    free_rows(rows, n);
    free(rows);
}

static void test_select_ablations(void) {
    size_t n;
    PoolRow *rows = make_select_pool(4, 100, &n);   // 400 rows
    size_t out[400], out2[400];
    SelectStats st;

    TEST_BEGIN("select random: n distinct rows, reproducible, roughly uniform");
    size_t got = run_select(rows, n, MODE_RANDOM, 200, 5, out, &st);
    CHECK(got == 200, "selected %zu", got);
    unsigned char hit[400] = {0};
    size_t first_half = 0;
    for (size_t i = 0; i < got; i++) { CHECK(!hit[out[i]], "row %zu twice", out[i]); hit[out[i]] = 1; first_half += out[i] < 200; }
    CHECK(first_half > 70 && first_half < 130, "%zu of 200 from the first half of the pool", first_half);
    run_select(rows, n, MODE_RANDOM, 200, 5, out2, &st);
    CHECK(memcmp(out, out2, 200 * sizeof(size_t)) == 0, "not reproducible");
    TEST_END();

    TEST_BEGIN("select diverse: uniform over domains, uniform within (no length preference)");
    got = run_select(rows, n, MODE_DIVERSE, 200, 5, out, &st);
    CHECK(got == 200, "selected %zu", got);
    size_t per_domain[4] = {0};
    double mean_rank = 0;
    for (size_t i = 0; i < got; i++) {
        per_domain[out[i] % 4]++;
        size_t rank = 0;   // rank of the row's length inside its domain (0 = longest)
        for (size_t j = out[i] % 4; j < n; j += 4) rank += rows[j].length > rows[out[i]].length;
        mean_rank += (double)rank / (double)got;
    }
    for (int d = 0; d < 4; d++) CHECK(per_domain[d] > 25 && per_domain[d] < 75, "domain %d got %zu of 200", d, per_domain[d]);
    CHECK(mean_rank > 40 && mean_rank < 59, "mean rank %.1f, uniform within a domain gives about 49.5", mean_rank);
    TEST_END();

    TEST_BEGIN("select longest: the n longest traces");
    got = run_select(rows, n, MODE_LONGEST, 50, 5, out, &st);
    CHECK(got == 50, "selected %zu", got);
    int64_t shortest_in = INT64_MAX, longest_out = -1;
    memset(hit, 0, sizeof hit);
    for (size_t i = 0; i < got; i++) { hit[out[i]] = 1; if (rows[out[i]].length < shortest_in) shortest_in = rows[out[i]].length; }
    for (size_t i = 0; i < n; i++) if (!hit[i] && rows[i].length > longest_out) longest_out = rows[i].length;
    CHECK(shortest_in >= longest_out, "a left-out row (%lld) is longer than a chosen one (%lld)", (long long)longest_out, (long long)shortest_in);
    TEST_END();
    free_rows(rows, n);
    free(rows);
}

// ----------------------------------------------------------------------------
// reading the three schemas

static void test_jsonl_reader(void) {
    TEST_BEGIN("jsonl: escapes, surrogate pairs, nested metadata, blank lines, the three schemas");
    char *path = write_temp(
        "{\"question\": \"Q\\u00e9 \\ud83d\\ude00 \\\"x\\\"\\n\", \"domain\": 11, \"source_type\": \"a\", \"isqwen7bcorrect\": false,"
        " \"isqwen32bcorrect\": null, \"isgeminicorrect\": true, \"gemini_length\": 12, \"thinking_trajectories\": [\"a\", \"b\"],"
        " \"attempt\": \"x\", \"metadata\": {\"k\": [1, {\"z\": null}]}}\n"
        "\n"
        "{\"question\": \"s1K\", \"thinking_trajectories\": [\"t1\"], \"attempt\": \"A\", \"cot\": null}\n"
        "{\"question\": \"s1.1\", \"gemini_thinking_trajectory\": \"g\", \"gemini_attempt\": \"ga\","
        " \"deepseek_thinking_trajectory\": \"d\", \"deepseek_attempt\": \"da\"}\n");
    JsonlReader r;
    jsonl_open(&r, path, 0);
    ByteBuf thinking = {0};
    PoolRow row;
    int counted;
    const JsonValue *obj = jsonl_next(&r);
    CHECK(obj != NULL && read_pool_row(&r, obj, NULL, &thinking, &row, &counted) == 0, "pool row not read");
    CHECK(strcmp(row.question, "Q\xc3\xa9 \xf0\x9f\x98\x80 \"x\"\n") == 0, "question decoded as \"%s\"", row.question);
    CHECK(strcmp(row.domain, "11") == 0, "numeric domain read as \"%s\"", row.domain);
    CHECK(row.qwen7b == 0 && row.qwen32b == -1 && row.gemini == 1 && row.length == 12, "features %d %d %d %lld", row.qwen7b,
          row.qwen32b, row.gemini, (long long)row.length);
    CHECK(strcmp(thinking.data, "a\nb") == 0, "trajectories joined as \"%s\"", thinking.data);
    CHECK(row.line_no == 1 && row.offset == 0, "line %zu offset %ld", row.line_no, row.offset);
    CHECK(row_has_na(&row), "a null grade is NA");
    free(row.question); free(row.domain); free(row.source_type);
    const char *q, *attempt;
    int has_trace;
    obj = jsonl_next(&r);
    CHECK(obj && read_question_and_trace(&r, obj, TRACES_GEMINI, &q, &thinking, &attempt, &has_trace) == 0, "s1K row");
    CHECK(r.line_no == 3, "blank line not skipped: line %zu", r.line_no);
    CHECK(has_trace && !strcmp(thinking.data, "t1") && !strcmp(attempt, "A"), "s1K trace");
    obj = jsonl_next(&r);
    CHECK(obj && read_question_and_trace(&r, obj, TRACES_DEEPSEEK, &q, &thinking, &attempt, &has_trace) == 0, "s1.1 row");
    CHECK(has_trace && !strcmp(thinking.data, "d") && !strcmp(attempt, "da"), "deepseek trace: %s / %s", thinking.data, attempt);
    CHECK(read_question_and_trace(&r, obj, TRACES_GEMINI, &q, &thinking, &attempt, &has_trace) == 0 &&
          !strcmp(thinking.data, "g") && !strcmp(attempt, "ga"), "gemini trace: %s / %s", thinking.data, attempt);
    CHECK(jsonl_next(&r) == NULL, "end of file");
    jsonl_close(&r);
    unlink(path);
    free(path);
    TEST_END();

    TEST_BEGIN("jsonl: bad lines are counted and skipped with skip_bad");
    path = write_temp("{\"question\": \"ok\", \"thinking_trajectories\": [\"t\"], \"attempt\": \"a\"}\n"
                      "{\"question\": \"broken\n"
                      "[1, 2]\n"
                      "{\"thinking_trajectories\": [\"t\"], \"attempt\": \"a\"}\n"
                      "{\"question\": \"q\", \"thinking_trajectories\": [1], \"attempt\": \"a\"}\n"
                      "{\"question\": \"\xff\"}\n");
    jsonl_open(&r, path, 1);
    size_t good = 0;
    while ((obj = jsonl_next(&r)) != NULL)
        if (read_question_and_trace(&r, obj, TRACES_GEMINI, &q, &thinking, &attempt, &has_trace) == 0) good++;
    CHECK(good == 1 && r.num_bad == 5, "good %zu bad %zu, want 1 and 5", good, r.num_bad);
    jsonl_close(&r);
    unlink(path);
    free(path);
    bytebuf_free(&thinking);
    TEST_END();
}

// ----------------------------------------------------------------------------
// the training layout against Hugging Face

// Counts the positions where mask differs from the fixture's target spans.
static size_t mask_mismatches(const uint8_t *mask, size_t n, const JsonValue *spans) {
    uint8_t *want = (uint8_t *)callocCheck(n, 1);
    for (size_t k = 0; k < spans->len; k++)
        for (int64_t t = spans->items[k].items[0].integer; t < spans->items[k].items[1].integer && (size_t)t < n; t++) want[t] = 1;
    size_t bad = 0;
    for (size_t t = 0; t < n; t++) bad += mask[t] != want[t];
    free(want);
    return bad;
}

// TRL's masking on hand-made id sequences (R = response template 7 8, H = instruction template 7 9),
// the expected masks derived by hand from TRL 0.12's torch_call.
static void test_trl_mask_rules(void) {
    TEST_BEGIN("tokenize: TRL completion-only masking rules on crafted ids");
    MaskTemplates mt = {0};
    idlist_push(&mt.response, 7); idlist_push(&mt.response, 8);
    idlist_push(&mt.instruction, 7); idlist_push(&mt.instruction, 9);
    struct { uint32_t ids[12]; size_t n; uint8_t want[12]; const char *what; } cases[] = {
        {{7, 9, 1, 7, 8, 2, 3}, 7, {0, 0, 0, 0, 0, 1, 1}, "H..R..: targets after R"},
        {{1, 7, 8, 2, 3}, 5, {0, 0, 0, 0, 0}, "R but no H: nothing"},
        {{7, 9, 1, 2, 3}, 5, {0, 0, 0, 0, 0}, "H but no R: nothing"},
        {{7, 9, 1, 7, 8, 2, 7, 9, 4, 7, 8, 5}, 12, {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1}, "two exchanges: each human turn masked"},
        {{7, 9, 1, 7, 8, 2, 7, 9, 4, 5}, 10, {0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, "a last human turn without response: tail masked"},
        {{1, 7, 8, 2, 7, 9, 3, 7, 8, 4}, 10, {0, 0, 0, 1, 0, 0, 0, 0, 0, 1}, "R before the first H: TRL prepends 0 to the human list"},
        {{7, 9, 1, 7}, 4, {0, 0, 0, 0}, "template cut by truncation"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t mask[12];
        size_t targets = trl_completion_mask(cases[i].ids, cases[i].n, &mt, mask), want_targets = 0;
        for (size_t t = 0; t < cases[i].n; t++) want_targets += cases[i].want[t];
        CHECK(memcmp(mask, cases[i].want, cases[i].n) == 0 && targets == want_targets, "%s", cases[i].what);
    }
    mask_templates_free(&mt);
    TEST_END();
}

static void test_s1_layout(void) {
    TEST_BEGIN("tokenize: s1 layout ids, loss mask and truncation equal HF + TRL (tests/fixtures/s1-layout.jsonl)");
    Tokenizer *tok = tokenizer_load("tokenizers/qwen2.5");
    MaskTemplates mt;
    mask_templates_init(tok, &mt);
    CHECK(mt.response.len == 3 && mt.response.data[0] == 151644 && mt.response.data[1] == 77091 && mt.response.data[2] == 198,
          "response template ids");
    CHECK(mt.instruction.len == 2 && mt.instruction.data[0] == 151644 && mt.instruction.data[1] == 872, "instruction template ids");
    JsonlReader r;
    jsonl_open(&r, "tests/fixtures/s1-layout.jsonl", 0);
    ByteBuf thinking = {0}, mask = {0};
    IdList seq = {0};
    const JsonValue *obj;
    size_t samples = 0, blocks = 0, quirks = 0;
    while ((obj = jsonl_next(&r)) != NULL) {
        const char *q, *attempt;
        int has_trace, truncated;
        const char *name = json_get(obj, "name")->str;
        if (read_question_and_trace(&r, obj, TRACES_GEMINI, &q, &thinking, &attempt, &has_trace)) continue;
        const JsonValue *ids = json_get(obj, "ids"), *targets = json_get(obj, "targets");
        s1_encode(tok, &mt, q, thinking.data, attempt, 1 << 20, &seq, &mask, &truncated);
        char *text = chat_s1_train(q, thinking.data, attempt);
        CHECK(strcmp(text, json_get(obj, "text")->str) == 0, "%s: text differs from apply_chat_template", name);
        free(text);
        CHECK(seq.len == ids->len, "%s: %zu ids, HF has %zu", name, seq.len, ids->len);
        size_t bad = 0;
        for (size_t t = 0; t < seq.len && t < ids->len; t++) bad += seq.data[t] != (uint32_t)ids->items[t].integer;
        CHECK(bad == 0, "%s: %zu ids differ from HF", name, bad);
        CHECK(!truncated, "%s: truncated at 1M tokens", name);
        bad = mask_mismatches((const uint8_t *)mask.data, seq.len, targets);
        CHECK(bad == 0, "%s: mask differs from TRL's at %zu positions", name, bad);
        // an ordinary sample: targets are exactly the tokens after the first response template
        int64_t start = json_get(obj, "mask_start")->integer;
        quirks += !(targets->len == 1 && targets->items[0].items[0].integer == start &&
                    targets->items[0].items[1].integer == (int64_t)ids->len);
        const JsonValue *tr = json_get(obj, "truncations");
        for (size_t k = 0; k < tr->len; k++) {
            size_t block = (size_t)json_get(&tr->items[k], "block_size")->integer;
            s1_encode(tok, &mt, q, thinking.data, attempt, block, &seq, &mask, &truncated);
            size_t want_len = block < ids->len ? block : ids->len;
            CHECK(seq.len == want_len, "%s, block %zu: length %zu, want %zu", name, block, seq.len, want_len);
            CHECK(truncated == (block < ids->len), "%s, block %zu: truncated flag %d", name, block, truncated);
            bad = mask_mismatches((const uint8_t *)mask.data, seq.len, json_get(&tr->items[k], "targets"));
            CHECK(bad == 0, "%s, block %zu: mask differs from TRL's at %zu positions", name, block, bad);
            blocks++;
        }
        samples++;
    }
    CHECK(samples >= 15 && blocks >= 75, "only %zu samples, %zu truncations checked", samples, blocks);
    CHECK(quirks == 3, "%zu samples where TRL's mask is not 'everything after the first template', the fixture has 3", quirks);
    jsonl_close(&r);
    bytebuf_free(&thinking);
    bytebuf_free(&mask);
    mask_templates_free(&mt);
    idlist_free(&seq);
    tokenizer_free(tok);
    TEST_END();
}

// The demo trains its own small BPE, where "assistant" is several tokens and
// every id differs from Qwen's: the mask must still start right after the
// template, found by encoding "<|im_start|>assistant\n" with that tokenizer.
static void test_small_tokenizer_layout(void) {
    TEST_BEGIN("tokenize: the response template is found with a small trained tokenizer too");
    Rng rng;
    rng_init(&rng, 3);
    ByteBuf q = {0}, thinking = {0}, attempt = {0}, corpus = {0};
    StringSet seen = {0};
    for (int i = 0; i < 200; i++) {
        Problem p = next_problem(&rng, 4, 0, &seen, &q);
        synth_trace(&p, &rng, &thinking, &attempt);
        bprintf(&corpus, "%s\n%s\n%s\n", q.data, thinking.data, attempt.data);
    }
    const char *texts[1] = {corpus.data};
    const char *added[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    Tokenizer *tok = tokenizer_train(texts, &corpus.len, 1, 400, added, 3, 0);
    MaskTemplates mt;
    mask_templates_init(tok, &mt);
    CHECK(mt.response.len > 3, "\"assistant\" should take several tokens in a 400-token vocabulary (template has %zu)",
          mt.response.len);
    IdList seq = {0};
    ByteBuf mask = {0};
    int truncated;
    size_t targets = s1_encode(tok, &mt, q.data, thinking.data, attempt.data, 1 << 20, &seq, &mask, &truncated);
    size_t start = 0;
    while (start < seq.len && !mask.data[start]) start++;
    for (size_t t = start; t < seq.len; t++) CHECK(mask.data[t], "mask has a hole at %zu", t);
    CHECK(targets == seq.len - start, "%zu targets, %zu after the first", targets, seq.len - start);
    char *text = chat_s1_train(q.data, thinking.data, attempt.data);
    ByteBuf prefix = {0}, decoded = {0};
    CHECK(start < seq.len, "no template found");
    if (start < seq.len) {
        tokenizer_decode(tok, seq.data, start, 0, &prefix);
        tokenizer_decode(tok, seq.data, seq.len, 0, &decoded);
        const char *at = strstr(text, RESPONSE_TEMPLATE);
        CHECK(prefix.len == (size_t)(at - text) + strlen(RESPONSE_TEMPLATE) && memcmp(prefix.data, text, prefix.len) == 0,
              "the masked prefix decodes to \"%s\"", prefix.data);
        CHECK(decoded.len == strlen(text) && memcmp(decoded.data, text, decoded.len) == 0, "ids do not decode to the text");
    }
    free(text);
    bytebuf_free(&prefix);
    bytebuf_free(&decoded);
    bytebuf_free(&q);
    bytebuf_free(&thinking);
    bytebuf_free(&attempt);
    bytebuf_free(&corpus);
    string_set_free(&seen);
    mask_templates_free(&mt);
    idlist_free(&seq);
    bytebuf_free(&mask);
    tokenizer_free(tok);
    TEST_END();
}

static void test_shard_roundtrip(void) {
    TEST_BEGIN("tokenize: the shard builder writes what shard_read reads");
    ShardBuilder b = {0};
    IdList a = {0}, c = {0};
    for (uint32_t i = 0; i < 7; i++) idlist_push(&a, 10 + i);
    for (uint32_t i = 0; i < 4; i++) idlist_push(&c, 20 + i);
    const uint8_t mask_a[7] = {0, 0, 0, 1, 1, 1, 1}, mask_c[4] = {0, 0, 0, 0};
    shard_builder_add(&b, &a, mask_a);
    shard_builder_add(&b, &c, mask_c);   // no template: no targets
    char path[] = "/tmp/test_data_shard_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    shard_write(path, 100, b.num_sequences, b.offsets, b.ids.data, (const uint8_t *)b.mask.data);
    Shard s;
    shard_read(&s, path);
    CHECK(s.header.num_sequences == 2 && s.header.num_tokens == 11, "counts %llu %llu",
          (unsigned long long)s.header.num_sequences, (unsigned long long)s.header.num_tokens);
    const uint8_t want_mask[11] = {0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0};
    CHECK(memcmp(s.mask, want_mask, 11) == 0, "mask differs");
    CHECK(s.ids[0] == 10 && s.ids[7] == 20 && s.offsets[1] == 7, "ids/offsets differ");
    shard_free(&s);
    unlink(path);
    shard_builder_free(&b);
    idlist_free(&a);
    idlist_free(&c);
    TEST_END();
}

// ----------------------------------------------------------------------------
// the synthetic pool

// The number after the last '=' or before " is larger" in the line that starts at s (a glance or a "So" line).
static long long stated_answer(const char *s) {
    const char *eol = strchr(s, '\n'), *end = eol ? eol : s + strlen(s), *eq = NULL;
    for (const char *c = s; c < end; c++) if (*c == '=') eq = c;
    if (eq) return atoll(eq + 1);
    const char *num = s;
    while (num < end && (*num < '0' || *num > '9')) num++;
    return atoll(num);
}

static void test_synth(void) {
    TEST_BEGIN("synth: a glance, then (sometimes) Wait and careful work that ends right; flags match; eval class");
    Rng rng;
    rng_init(&rng, 11);
    ByteBuf q = {0}, thinking = {0}, attempt = {0};
    StringSet seen = {0};
    size_t wrong = 0, checks = 0, slips = 0, fixed = 0;
    for (int i = 0; i < 2000; i++) {
        Problem p = next_problem(&rng, 2 + i % 4, i % 2, &seen, &q);
        CHECK(is_eval_question(&q) == i % 2, "class of \"%s\"", q.data);
        int correct = synth_trace(&p, &rng, &thinking, &attempt);
        long long right = (long long)problem_answer(&p);
        char want[64];
        snprintf(want, sizeof want, "%lld", right);
        // the attempt gives the thinking's last stated answer, and the flag says whether that is right
        const char *last = strrchr(thinking.data, '\n');
        last = last ? last + 1 : thinking.data;
        long long final = stated_answer(last);
        const char *given = strstr(attempt.data, "\\boxed{") ? strstr(attempt.data, "\\boxed{") + 7 : strstr(attempt.data, "Answer: ");
        CHECK(given && atoll(given + (given[0] == 'A' ? 8 : 0)) == final, "attempt \"%s\" after \"%s\"", attempt.data, last);
        CHECK(correct == (final == right), "\"%s\": flag %d, final %lld, answer %s", q.data, correct, final, want);
        wrong += !correct;
        // every trace opens with a glance at the answer; it is right or off (never negative)
        CHECK(!strncmp(thinking.data, "At a glance, ", 13), "no glance: \"%s\"", thinking.data);
        long long glance = stated_answer(thinking.data);
        CHECK(glance > 0, "glance %lld in \"%s\"", glance, thinking.data);
        slips += glance != right;
        // a trace checks at most once, and a check always ends in the right answer, naming the glance's slip
        // (first_wait - 1 only when there is a Wait: NULL - 1 is undefined behaviour)
        const char *wait = strstr(thinking.data, "\nWait, let me "), *first_wait = strstr(thinking.data, "Wait");
        CHECK(first_wait ? wait == first_wait - 1 : !wait, "\"%s\"", thinking.data);
        if (wait) {
            checks++;
            CHECK(strstr(wait + 2, "Wait") == NULL, "two checks in \"%s\"", thinking.data);
            CHECK(correct && !strncmp(last, "So ", 3), "a check that does not end right: \"%s\"", thinking.data);
            char tail[64];
            if (glance == right) snprintf(tail, sizeof tail, ", as the glance said.");
            else snprintf(tail, sizeof tail, ", not %lld.", glance);
            CHECK(strlen(last) > strlen(tail) && !strcmp(last + strlen(last) - strlen(tail), tail), "\"%s\" after glance %lld", last, glance);
            fixed += glance != right;
        } else {
            CHECK(strchr(thinking.data, '\n') == NULL && correct == (glance == right), "a trace without a check: \"%s\"", thinking.data);
        }
        for (size_t k = 0; k < q.len + thinking.len; k++) {
            unsigned char ch = k < q.len ? (unsigned char)q.data[k] : (unsigned char)thinking.data[k - q.len];
            CHECK(ch == '\n' || (ch >= 0x20 && ch < 0x7f), "non-ASCII byte in \"%s\"", q.data);
        }
    }
    // the two rates, each within 5 standard deviations of 2000 draws
    double pc = SYNTH_CHECK_PERCENT / 100.0, ps = SYNTH_SLIP_PERCENT / 100.0;
    CHECK(fabs((double)checks - 2000 * pc) < 5 * sqrt(2000 * pc * (1 - pc)), "%zu traces with Wait of 2000", checks);
    CHECK(fabs((double)slips - 2000 * ps) < 5 * sqrt(2000 * ps * (1 - ps)), "%zu glances with a slip of 2000", slips);
    CHECK(wrong == slips - fixed, "%zu wrong traces, %zu slips, %zu fixed by a check", wrong, slips, fixed);
    CHECK(checks < 1000, "checking traces must stay a minority: %zu of 2000", checks);
    // a slipped arithmetic glance has the right answer's length, but its digits are no guide to the right
    // ones: each digit agrees with the right answer's digit in that place about 1 time in 10 (not 9 in 10)
    size_t places = 0, agree = 0;
    for (int i = 0; i < 2000; i++) {
        Problem p = random_problem(&rng, 2 + i % 3);
        if (p.op == OP_CMP) continue;
        int64_t right = problem_answer(&p), slipped = slipped_answer(&p, &rng);
        CHECK(slipped != right && slipped > 0 && num_digits(slipped) == num_digits(right), "slip %lld for %lld",
              (long long)slipped, (long long)right);
        for (int64_t r = right, s = slipped; r > 0; r /= 10, s /= 10, places++) agree += r % 10 == s % 10;
    }
    CHECK(agree < places / 5, "%zu of %zu digits of slipped glances agree with the right answer", agree, places);
    // linear-equation answers solve the equation
    for (int i = 0; i < 200; i++) {
        Problem p = random_problem(&rng, 4);
        if (p.op == OP_LIN) CHECK(p.a * problem_answer(&p) + p.b == p.c, "%lldx+%lld=%lld", (long long)p.a, (long long)p.b, (long long)p.c);
        if (p.op == OP_SUB) CHECK(problem_answer(&p) > 0, "negative difference");
    }
    bytebuf_free(&q);
    bytebuf_free(&thinking);
    bytebuf_free(&attempt);
    string_set_free(&seen);
    TEST_END();
}

int main(void) {
    test_quality_rules();
    test_quality_fixture();
    test_na_and_difficulty();
    test_decontaminate_and_dedup();
    test_draw_rank();
    test_select_s1();
    test_select_ablations();
    test_jsonl_reader();
    test_trl_mask_rules();
    test_s1_layout();
    test_small_tokenizer_layout();
    test_shard_roundtrip();
    test_synth();
    return test_summary();
}
