/*
 * pyrandom.h: CPython's `random` module, bit for bit, as far as s1's GPQA task
 * uses it: random.seed(int), getrandbits(k), random(), the rejection sampler
 * _randbelow() behind randrange() and shuffle().
 *
 * Why: the GPQA Diamond prompt s1 evaluated lists the four answers in an order
 * drawn by random.shuffle() in the task's process_docs()
 * (lm_eval/tasks/gpqa/openai/utils.py:221-242), one shuffle per row, in file
 * order, from the process-wide Random that lm-eval seeds (evaluator.py:147-150)
 * and that vLLM's worker reseeds (see ./data bench --help). Reproducing the
 * prompt means reproducing that generator exactly.
 *
 * The sources transcribed (CPython 3.10, the version s1 ran; unchanged since 3.2
 * in these parts): Modules/_randommodule.c (init_genrand, init_by_array,
 * genrand_uint32, random_seed for an int, random_random, getrandbits) and
 * Lib/random.py (_randbelow_with_getrandbits, shuffle). tests/test_pyrandom.c
 * checks them against values CPython printed (scripts/gen_pyrandom_fixture.py).
 */
#ifndef S1C_PYRANDOM_H
#define S1C_PYRANDOM_H

#include <stddef.h>
#include <stdint.h>

#define PYRANDOM_N 624
#define PYRANDOM_M 397

typedef struct {
    uint32_t mt[PYRANDOM_N];
    int index;
} PyRandom;

static inline void pyrandom_init_genrand(PyRandom *r, uint32_t s) {
    r->mt[0] = s;
    for (int i = 1; i < PYRANDOM_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->index = PYRANDOM_N;
}

static inline void pyrandom_init_by_array(PyRandom *r, const uint32_t *key, size_t len) {
    pyrandom_init_genrand(r, 19650218u);
    size_t i = 1, j = 0;
    for (size_t k = PYRANDOM_N > len ? PYRANDOM_N : len; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++; j++;
        if (i >= PYRANDOM_N) { r->mt[0] = r->mt[PYRANDOM_N - 1]; i = 1; }
        if (j >= len) j = 0;
    }
    for (size_t k = PYRANDOM_N - 1; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= PYRANDOM_N) { r->mt[0] = r->mt[PYRANDOM_N - 1]; i = 1; }
    }
    r->mt[0] = 0x80000000u;   // MSB is 1, assuring a non-zero initial array
}

// random.seed(n) for an int n: the key is |n| in 32-bit words, least significant first, and
// [0] for n = 0 (random_seed() in _randommodule.c; a negative seed uses its absolute value)
static inline void pyrandom_seed(PyRandom *r, int64_t n) {
    uint64_t a = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    uint32_t key[2] = {(uint32_t)a, (uint32_t)(a >> 32)};
    pyrandom_init_by_array(r, key, key[1] ? 2 : 1);
}

static inline uint32_t pyrandom_uint32(PyRandom *r) {
    static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
    uint32_t y;
    if (r->index >= PYRANDOM_N) {
        int kk;
        for (kk = 0; kk < PYRANDOM_N - PYRANDOM_M; kk++) {
            y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
            r->mt[kk] = r->mt[kk + PYRANDOM_M] ^ (y >> 1) ^ mag01[y & 1u];
        }
        for (; kk < PYRANDOM_N - 1; kk++) {
            y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
            r->mt[kk] = r->mt[kk + (PYRANDOM_M - PYRANDOM_N)] ^ (y >> 1) ^ mag01[y & 1u];
        }
        y = (r->mt[PYRANDOM_N - 1] & 0x80000000u) | (r->mt[0] & 0x7fffffffu);
        r->mt[PYRANDOM_N - 1] = r->mt[PYRANDOM_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
        r->index = 0;
    }
    y = r->mt[r->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

// random.random(): 53 random bits, a = 27 and b = 26 of them
static inline double pyrandom_random(PyRandom *r) {
    uint32_t a = pyrandom_uint32(r) >> 5, b = pyrandom_uint32(r) >> 6;
    return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

// getrandbits(k) for 0 < k <= 64: one 32-bit draw per word, least significant word first, the
// last word's draw shifted down to its bits (as _random_Random_getrandbits_impl fills an int)
static inline uint64_t pyrandom_getrandbits(PyRandom *r, int k) {
    if (k <= 32) return pyrandom_uint32(r) >> (32 - k);
    uint64_t lo = pyrandom_uint32(r);
    uint64_t hi = pyrandom_uint32(r) >> (64 - k);
    return lo | (hi << 32);
}

// _randbelow_with_getrandbits(n): k = n.bit_length() bits, redrawn until below n (n >= 1)
static inline uint64_t pyrandom_randbelow(PyRandom *r, uint64_t n) {
    int k = 0;
    for (uint64_t m = n; m; m >>= 1) k++;
    uint64_t v = pyrandom_getrandbits(r, k);
    while (v >= n) v = pyrandom_getrandbits(r, k);
    return v;
}

// random.shuffle(x) on an array of n indices: for i in reversed(range(1, n)): j = randbelow(i + 1)
static inline void pyrandom_shuffle(PyRandom *r, size_t *x, size_t n) {
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)pyrandom_randbelow(r, (uint64_t)i + 1);
        size_t t = x[i]; x[i] = x[j]; x[j] = t;
    }
}

#endif // S1C_PYRANDOM_H
