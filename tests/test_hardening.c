/*
 * tests/test_hardening.c: undefined behaviour found in the numeric code and
 * the JSON parser, pinned down (issue 13, items 2 and 8).
 *
 *   exp_fast() on NaN, infinities and huge inputs: it used to convert them to
 *   int32 and shift a negative value (UBSan, reached from the attention); it
 *   must keep NaN a NaN, saturate above 88 and give 0 below -87, and give the
 *   same bits as before on every input where the old code was defined.
 *   json_parse() of empty containers: it used to memcpy from a NULL scratch
 *   stack (UBSan); they must parse to len 0.
 *   common/detmath.h, the log/exp/sin/cos/pow that replace libm's in the
 *   numeric path (libm's give different bits on CPUs with and without FMA):
 *   as accurate as its header says, against glibc on 2 million inputs each.
 *
 * The values are checked everywhere; the undefined behaviour itself is caught
 * when this runs under `make test SANITIZE=1` (UBSan with float-cast-overflow
 * aborts the old code here).
 */
#define S1_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../s1.c"
#include "test.h"

// exp_fast as it was, valid where its int conversion and shift are defined (x in [-87, 88])
static float exp_fast_before(float x) {
    x = x > 88.0f ? 88.0f : x;
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return x < -87.0f ? 0.0f : y * scale;
}

static uint32_t bits_of(float x) { uint32_t b; memcpy(&b, &x, 4); return b; }

int main(void) {
    TEST_BEGIN("exp_fast: NaN stays NaN, huge inputs saturate or vanish, no undefined conversion");
    volatile float inf = INFINITY, nan_ = NAN;   // volatile: evaluated at run time, where UBSan sees it
    CHECK(isnan(exp_fast(nan_)), "exp_fast(NaN) = %g", (double)exp_fast(nan_));
    CHECK(isnan(exp_fast(-nan_)), "exp_fast(-NaN) = %g", (double)exp_fast(-nan_));
    CHECK(exp_fast(inf) == exp_fast(88.0f) && isfinite(exp_fast(inf)), "exp_fast(inf) = %g", (double)exp_fast(inf));
    CHECK(exp_fast(-inf) == 0.0f, "exp_fast(-inf) = %g", (double)exp_fast(-inf));
    CHECK(exp_fast(1e30f) == exp_fast(88.0f), "exp_fast(1e30) = %g", (double)exp_fast(1e30f));
    CHECK(exp_fast(-1e30f) == 0.0f && exp_fast(-88.5f) == 0.0f && exp_fast(-87.5f) == 0.0f, "below -87");
    CHECK(fabsf(exp_fast(1.0f) - 2.7182817f) < 1e-6f, "exp_fast(1) = %.9g", (double)exp_fast(1.0f));
    TEST_END();

    TEST_BEGIN("exp_fast: the same bits as before on [-87, 88] (no numeric change)");
    size_t differ = 0, n = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.000173f, n++) differ += bits_of(exp_fast(x)) != bits_of(exp_fast_before(x));
    for (uint32_t b = 0; b < 0x3f800000u; b += 4099, n++) {   // tiny magnitudes, both signs
        float x; memcpy(&x, &b, 4);
        differ += bits_of(exp_fast(x)) != bits_of(exp_fast_before(x)) || bits_of(exp_fast(-x)) != bits_of(exp_fast_before(-x));
    }
    CHECK(differ == 0, "%zu of %zu inputs differ", differ, n);
    TEST_END();

    TEST_BEGIN("sum_exp and the softmax stay defined on rows with NaN and -inf");
    float row[40];
    for (int i = 0; i < 40; i++) row[i] = i == 3 ? -INFINITY : (float)i * 0.25f;
    float s = sum_exp(row, max_lanes(row, 40), 40);
    CHECK(isfinite(s) && s > 1.0f, "sum %g", (double)s);
    row[7] = NAN;
    CHECK(isnan(sum_exp(row, 0.0f, 40)), "a NaN in the row must show in the sum");
    TEST_END();

    TEST_BEGIN("json: empty containers parse to len 0 without touching a NULL stack");
    const char *docs[] = {"[]", "{}", "[[],{}]", " { \"a\" : [ ] , \"b\" : { } } ", "[[[[]]]]"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        JsonDoc doc;
        char err[256];
        int rc = json_parse(docs[i], strlen(docs[i]), &doc, err, sizeof err);
        CHECK(rc == 0, "%s: %s", docs[i], err);
        if (rc != 0) continue;
        CHECK(doc.root->type == JSON_ARRAY || doc.root->type == JSON_OBJECT, "%s: root type", docs[i]);
        if (i < 2) CHECK(doc.root->len == 0 && doc.root->items == NULL, "%s: len %zu", docs[i], doc.root->len);
        if (i == 3) {
            const JsonValue *a = json_get(doc.root, "a"), *b = json_get(doc.root, "b");
            CHECK(a && a->type == JSON_ARRAY && a->len == 0 && b && b->type == JSON_OBJECT && b->len == 0, "members a, b");
            CHECK(json_get(b, "x") == NULL, "lookup in an empty object");
        }
        json_free(&doc);
    }
    TEST_END();
    TEST_BEGIN("detmath: log and exp within 1 ulp, sin and cos within 2.5, pow within 3 + 2 |e log b| ulps (glibc as the reference)");
    double worst[5] = {0};
    uint64_t state = 7;
    for (int i = 0; i < 2000000; i++) {
        double u = rng_uniform(&state), v = rng_uniform(&state);
        double x = exp((u - 0.5) * 1400.0), y = (u - 0.5) * 1400.0;
        double z = (v - 0.5) * 2.0 * (i % 3 == 0 ? 7.0 : i % 3 == 1 ? 1e5 : 1.6e7);
        // pow as AdamW uses it: a beta in [0.8, 1) to the step, where beta^step still matters next to 1
        double b = 0.8 + 0.1999 * v, e = (double)(1 + i % 2000);
        if (e * -log(b) > 40.0) e = floor(40.0 / -log(b));
        double got[5] = {det_log(x), det_exp(y), det_sin(z), det_cos(z), det_pow(b, e)};
        double want[5] = {log(x), exp(y), sin(z), cos(z), pow(b, e)};
        for (int k = 0; k < 5; k++) {
            if (!isfinite(want[k]) || want[k] == 0.0 || fabs(want[k]) < 1e-3) continue;   // sin, cos near zero: absolute error below
            double ulp = nextafter(fabs(want[k]), INFINITY) - fabs(want[k]), err = fabs(got[k] - want[k]) / ulp;
            if (k == 4) err /= 3.0 + 2.0 * e * -log(b);   // pow: in units of its bound
            worst[k] = err > worst[k] ? err : worst[k];
        }
        CHECK(fabs(det_sin(z) - sin(z)) < 1e-15 && fabs(det_cos(z) - cos(z)) < 1e-15, "sin/cos(%.17g)", z);
    }
    const double bound[5] = {1.0, 1.0, 2.5, 2.5, 1.0};   // pow: 3 + 2 |e log b| ulps
    const char *names[5] = {"log", "exp", "sin", "cos", "pow"};
    for (int k = 0; k < 5; k++) {
        CHECK(worst[k] <= bound[k], "%s: %.2f ulps (bound %.1f)", names[k], worst[k], bound[k]);
        printf("note: detmath %s: at most %.2f %s from glibc\n", names[k], worst[k], k == 4 ? "of its bound" : "ulps");
    }
    CHECK(isnan(det_log(-1.0)) && det_log(0.0) == -INFINITY && det_exp(-1000.0) == 0.0 && det_exp(1000.0) == INFINITY &&
          det_log(1.0) == 0.0 && det_exp(0.0) == 1.0 && det_cos(0.0) == 1.0 && det_sin(0.0) == 0.0 && det_pow(0.9, 0.0) == 1.0 && det_pow(0.9, 1.0) == 0.9,
          "special values");
    TEST_END();
    return test_summary();
}
