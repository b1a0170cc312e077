/*
 * sampler.h: choosing the next token from a vector of logits. Greedy
 * (argmax), temperature, and top-p (nucleus) sampling, driven by a seeded RNG
 * so that the same seed gives the same samples on every machine.
 *
 * Host-side plain C (compiles as C11 and as C++17), shared by the CPU decoder
 * in s1.c and the host code of sample.cu.
 *
 *   Sampler s;
 *   sampler_init(&s, tokenizer_size(tok), 0.7f, 0.95f, 1234);
 *   uint32_t id = sampler_sample(&s, logits, n_rows, NULL, 0);
 *   sampler_free(&s);
 *
 * The logits vector has one entry per embedding row (n_rows; Qwen2.5 pads the
 * embedding to 151,936 or 152,064 rows) but only the first n_valid rows are
 * real tokens (151,665 for Qwen2.5). The padding rows are never chosen: s1's
 * README lists "Token id ... is out of vocabulary" from vLLM at temperature 1,
 * caused by exactly these rows (s1-spec section 9). Callers can also ban a few
 * ids for one step (vLLM's min_tokens masks the stop ids that way).
 *
 * Top-p uses the llama2.c cutoff trick: a token with probability below
 * (1 - p) / (n - 1) cannot be inside the nucleus, so only the candidates
 * above that cutoff are sorted, not the whole vocabulary.
 */
#ifndef S1C_SAMPLER_H
#define S1C_SAMPLER_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/detmath.h"   // exp with the same bits on every CPU (libm's differs)

// ----------------------------------------------------------------------------
// seeded RNG: xorshift64* (as in llama2.c); the state must never be zero

typedef struct {
    uint64_t state;
} Rng;

static inline void rng_seed(Rng *r, uint64_t seed) {
    // splitmix64 of the seed, so that seeds 0, 1, 2, ... give unrelated streams
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->state = z ? z : 0x2545F4914F6CDD1Dull;
}

static inline uint32_t rng_u32(Rng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

// uniform in [0, 1): the top 24 bits, exactly representable in a float
static inline float rng_f32(Rng *r) { return (float)(rng_u32(r) >> 8) / 16777216.0f; }

// ----------------------------------------------------------------------------
// the sampler

typedef struct {
    float prob;
    uint32_t index;
} ProbIndex;

typedef struct {
    uint32_t n_valid;   // ids >= n_valid (padding rows) are never returned
    float temperature;  // 0 = greedy
    float topp;         // nucleus mass in (0, 1]; 1 = plain sampling from the softmax
    Rng rng;
    float *probs;       // (n_valid,) scratch
    ProbIndex *order;   // (n_valid,) scratch for top-p
} Sampler;

static inline void sampler_init(Sampler *s, uint32_t n_valid, float temperature, float topp, uint64_t seed) {
    if (n_valid == 0) die("sampler: the vocabulary is empty");
    if (!(temperature >= 0.0f) || !isfinite(temperature)) die("sampler: temperature must be >= 0, got %g", (double)temperature);
    if (!(topp > 0.0f && topp <= 1.0f)) die("sampler: top-p must be in (0, 1], got %g", (double)topp);
    s->n_valid = n_valid;
    s->temperature = temperature;
    s->topp = topp;
    rng_seed(&s->rng, seed);
    s->probs = (float *)mallocCheck((size_t)n_valid * sizeof(float));
    s->order = (ProbIndex *)mallocCheck((size_t)n_valid * sizeof(ProbIndex));
}

static inline void sampler_free(Sampler *s) {
    free(s->probs);
    free(s->order);
    s->probs = NULL;
    s->order = NULL;
}

static inline int sampler_is_banned(uint32_t id, const uint32_t *banned, size_t n_banned) {
    for (size_t i = 0; i < n_banned; i++) if (banned[i] == id) return 1;
    return 0;
}

// argmax over the allowed ids; ties go to the lowest id (what torch.argmax does)
static inline uint32_t sample_argmax(const float *logits, uint32_t n_valid, const uint32_t *banned, size_t n_banned) {
    uint32_t best = UINT32_MAX;
    for (uint32_t i = 0; i < n_valid; i++) {
        if (sampler_is_banned(i, banned, n_banned)) continue;
        if (best == UINT32_MAX || logits[i] > logits[best]) best = i;
    }
    if (best == UINT32_MAX) die("sampler: every token id is banned");
    return best;
}

// index drawn from the distribution probs[0..n) (sums to 1), given coin in [0, 1)
static inline uint32_t sample_mult(const float *probs, uint32_t n, float coin) {
    float cdf = 0.0f;
    uint32_t last = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (probs[i] <= 0.0f) continue;
        cdf += probs[i];
        last = i;
        if (coin < cdf) return i;
    }
    return last;   // rounding left the cdf a hair below 1: the last possible token
}

static inline int prob_index_desc(const void *a, const void *b) {
    const ProbIndex *x = (const ProbIndex *)a, *y = (const ProbIndex *)b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return x->index < y->index ? -1 : (x->index > y->index);   // deterministic order of ties
}

// top-p: sample among the smallest set of most likely tokens whose mass exceeds topp
static inline uint32_t sample_topp(const float *probs, uint32_t n, float topp, ProbIndex *order, float coin) {
    // tokens below the cutoff cannot be in the nucleus (llama2.c): sort only the rest
    const float cutoff = n > 1 ? (1.0f - topp) / (float)(n - 1) : 0.0f;
    uint32_t n0 = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (probs[i] > 0.0f && probs[i] >= cutoff) { order[n0].index = i; order[n0].prob = probs[i]; n0++; }
    }
    if (n0 == 0) {
        // a tiny topp can put the cutoff above every probability; the nucleus is then the top token alone
        uint32_t best = 0;
        for (uint32_t i = 1; i < n; i++) if (probs[i] > probs[best]) best = i;
        return best;
    }
    qsort(order, n0, sizeof(ProbIndex), prob_index_desc);
    float cumulative = 0.0f;
    uint32_t last = n0 - 1;
    for (uint32_t i = 0; i < n0; i++) {
        cumulative += order[i].prob;
        if (cumulative > topp) { last = i; break; }
    }
    float r = coin * cumulative;   // the nucleus is not renormalised: scale the coin instead
    float cdf = 0.0f;
    for (uint32_t i = 0; i <= last; i++) {
        cdf += order[i].prob;
        if (r < cdf) return order[i].index;
    }
    return order[last].index;
}

// The next token id, in [0, n_valid), never one of banned[]. logits has
// n_rows >= n_valid entries; it is not modified.
static inline uint32_t sampler_sample(Sampler *s, const float *logits, size_t n_rows, const uint32_t *banned, size_t n_banned) {
    if (n_rows < s->n_valid) die("sampler: %zu logits for a vocabulary of %u tokens", n_rows, s->n_valid);
    if (s->temperature == 0.0f) return sample_argmax(logits, s->n_valid, banned, n_banned);
    // softmax(logits / T) over the allowed ids, in double for the normaliser
    float maxv = -INFINITY;
    for (uint32_t i = 0; i < s->n_valid; i++) {
        if (!sampler_is_banned(i, banned, n_banned) && logits[i] > maxv) maxv = logits[i];
    }
    if (maxv == -INFINITY) die("sampler: every token id is banned or has probability zero");
    double sum = 0.0;
    for (uint32_t i = 0; i < s->n_valid; i++) {
        float p = sampler_is_banned(i, banned, n_banned) ? 0.0f : det_expf((logits[i] - maxv) / s->temperature);
        s->probs[i] = p;
        sum += p;
    }
    for (uint32_t i = 0; i < s->n_valid; i++) s->probs[i] = (float)(s->probs[i] / sum);
    float coin = rng_f32(&s->rng);
    if (s->topp >= 1.0f) return sample_mult(s->probs, s->n_valid, coin);
    return sample_topp(s->probs, s->n_valid, s->topp, s->order, coin);
}

#endif // S1C_SAMPLER_H
