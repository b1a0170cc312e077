// Tests of common/sampler.h: greedy, temperature and top-p sampling, seeds,
// banned ids, and the padded embedding rows that must never be sampled.
#include "../common/sampler.h"
#include "test.h"

#define N_VALID 6
#define N_ROWS 9   // three padding rows, like Qwen2.5's 151,665 tokens in 151,936 rows

int main(void) {
    {
        TEST_BEGIN("greedy: argmax, lowest id on ties, banned ids skipped");
        Sampler s;
        sampler_init(&s, N_VALID, 0.0f, 1.0f, 1);
        float logits[N_ROWS] = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f, 0.0f, 9.0f, 9.0f, 9.0f};
        CHECK(sampler_sample(&s, logits, N_ROWS, NULL, 0) == 1, "argmax should be id 1 (tie with 3, padding ignored)");
        const uint32_t banned[] = {1, 3};
        CHECK(sampler_sample(&s, logits, N_ROWS, banned, 2) == 4, "with 1 and 3 banned the argmax is 4");
        sampler_free(&s);
        TEST_END();
    }
    {
        TEST_BEGIN("padding rows are never sampled, even with the largest logits");
        float logits[N_ROWS] = {0, 0, 0, 0, 0, 0, 50.0f, 50.0f, 50.0f};
        int bad = 0;
        for (int t = 0; t < 3; t++) {
            float temp = t == 0 ? 0.0f : t == 1 ? 1.0f : 5.0f;
            Sampler s;
            sampler_init(&s, N_VALID, temp, t == 2 ? 0.9f : 1.0f, 7);
            for (int i = 0; i < 5000; i++) bad += sampler_sample(&s, logits, N_ROWS, NULL, 0) >= N_VALID;
            sampler_free(&s);
        }
        CHECK(bad == 0, "%d samples fell on padding rows", bad);
        TEST_END();
    }
    {
        TEST_BEGIN("same seed, same samples; another seed, other samples");
        float logits[N_ROWS] = {1, 1, 1, 1, 1, 1, 0, 0, 0};
        Sampler a, b, c;
        sampler_init(&a, N_VALID, 1.0f, 0.95f, 1234);
        sampler_init(&b, N_VALID, 1.0f, 0.95f, 1234);
        sampler_init(&c, N_VALID, 1.0f, 0.95f, 1235);
        int same_ab = 1, same_ac = 1;
        for (int i = 0; i < 200; i++) {
            uint32_t x = sampler_sample(&a, logits, N_ROWS, NULL, 0);
            uint32_t y = sampler_sample(&b, logits, N_ROWS, NULL, 0);
            uint32_t z = sampler_sample(&c, logits, N_ROWS, NULL, 0);
            same_ab &= x == y;
            same_ac &= x == z;
        }
        CHECK(same_ab, "the same seed gave different samples");
        CHECK(!same_ac, "seeds 1234 and 1235 gave the same 200 samples");
        sampler_free(&a); sampler_free(&b); sampler_free(&c);
        TEST_END();
    }
    {
        TEST_BEGIN("temperature sampling follows softmax(logits / T)");
        // frequencies within 5 standard deviations of n*p (a false alarm has probability < 1e-5 per id)
        float logits[N_ROWS] = {0.0f, 1.0f, 2.0f, -1.0f, 0.5f, 1.5f, 0, 0, 0};
        const float T = 0.7f;
        const int n = 40000;
        double p[N_VALID], z = 0;
        for (int i = 0; i < N_VALID; i++) { p[i] = exp(logits[i] / T); z += p[i]; }
        int count[N_VALID] = {0};
        Sampler s;
        sampler_init(&s, N_VALID, T, 1.0f, 99);
        for (int i = 0; i < n; i++) count[sampler_sample(&s, logits, N_ROWS, NULL, 0)]++;
        for (int i = 0; i < N_VALID; i++) {
            double mean = n * p[i] / z, sd = sqrt(n * (p[i] / z) * (1 - p[i] / z));
            CHECK(fabs(count[i] - mean) < 5 * sd, "id %d: %d samples, expected %.0f +- %.0f", i, count[i], mean, sd);
        }
        sampler_free(&s);
        TEST_END();
    }
    {
        TEST_BEGIN("top-p: only the nucleus is sampled, in its own proportions");
        // probabilities 0.4 0.3 0.2 0.1 (0 0): the smallest set with mass > 0.5 is {0, 1}
        float logits[N_ROWS] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f), -INFINITY, -INFINITY, 5, 5, 5};
        Sampler s;
        sampler_init(&s, N_VALID, 1.0f, 0.5f, 5);
        int count[N_VALID] = {0};
        const int n = 20000;
        for (int i = 0; i < n; i++) count[sampler_sample(&s, logits, N_ROWS, NULL, 0)]++;
        CHECK(count[2] + count[3] + count[4] + count[5] == 0, "ids outside the nucleus were sampled");
        double frac0 = (double)count[0] / n, want = 0.4 / 0.7, sd = sqrt(want * (1 - want) / n);
        CHECK(fabs(frac0 - want) < 5 * sd, "id 0 fraction %.4f, want %.4f", frac0, want);
        // a tiny top-p is greedy
        Sampler g;
        sampler_init(&g, N_VALID, 1.0f, 1e-6f, 5);
        int not_top = 0;
        for (int i = 0; i < 1000; i++) not_top += sampler_sample(&g, logits, N_ROWS, NULL, 0) != 0;
        CHECK(not_top == 0, "top-p 1e-6 should always give the top token, %d did not", not_top);
        sampler_free(&s); sampler_free(&g);
        TEST_END();
    }
    {
        TEST_BEGIN("banned ids are never sampled at temperature > 0");
        float logits[N_ROWS] = {5, 5, 0, 0, 0, 0, 0, 0, 0};
        const uint32_t banned[] = {0, 1};
        Sampler s;
        sampler_init(&s, N_VALID, 1.0f, 1.0f, 3);
        int hits = 0;
        for (int i = 0; i < 5000; i++) { uint32_t id = sampler_sample(&s, logits, N_ROWS, banned, 2); hits += id == 0 || id == 1; }
        CHECK(hits == 0, "%d banned samples", hits);
        sampler_free(&s);
        TEST_END();
    }
    {
        TEST_BEGIN("rng_f32 stays in [0, 1)");
        Rng r;
        rng_seed(&r, 0);
        int bad = 0;
        double sum = 0;
        for (int i = 0; i < 100000; i++) { float u = rng_f32(&r); bad += !(u >= 0.0f && u < 1.0f); sum += u; }
        CHECK(bad == 0 && fabs(sum / 100000 - 0.5) < 0.01, "bad %d mean %f", bad, sum / 100000);
        TEST_END();
    }
    return test_summary();
}
