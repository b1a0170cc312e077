/*
 * dev/attention.cu: causal GQA attention, forward and decode, and the GQA group
 * sum of the backward pass, checked against s1.c's attention_forward() (and, for
 * the group sum, a loop in s1.c's order: query heads of a group in increasing h).
 *
 *   make dev && dev/run attention [VERSION]
 *
 * Forward, out_t = sum_{u<=t} softmax_u(q_t.k_u / sqrt(HD)) v_u:
 *   v1  one thread per (row, head), two passes over the keys (max, then sum and
 *       output) straight from global memory. Lane l takes row t0 + l: its q, k
 *       and v reads are NQ*HD (or NKV*HD) elements apart, and each key row is
 *       read by every query row again.
 *   v2  common/attention.cuh (what the programs run): FlashAttention with an
 *       online softmax; a block stages key and value tiles in shared memory
 *       once for 16 query rows, lanes own keys (scores) and then dims (output).
 *   v3  common/attention.cuh's attention_forward_tc(): the same online softmax
 *       with S = QK^T and O += PV on the tensor cores (mma.sync m16n8k16 bf16,
 *       fp32 accumulators), K and V tiles double-buffered by cp.async, P kept in
 *       registers as bf16. On an H100 the tensor cores give ~15x the bf16 FLOPs
 *       of the CUDA cores' fp32 FMAs, and the kernel no longer waits on two
 *       shared-memory loads per FMA. The price is bf16 P: the bound widens by
 *       u max|v| (derived in common/attention.cuh). Exercise 6 is its P.V step.
 * Decode, one new query row per head over the cached keys:
 *   d1  one thread per head, the same two passes.
 *   d2  common/attention.cuh: a block per head, 8 warps split the keys, merged
 *       in shared memory.
 *   d3  common/attention.cuh's flash-decoding: the cache cut into splits of 256
 *       keys across blocks (hundreds of blocks at a long context instead of one
 *       per head), a block per (split, KV head) scoring for all the group's
 *       query heads (K and V read once per group), 16-byte loads with lanes over
 *       the head dim; a second kernel merges the splits.
 * GQA group sum (the backward pass's dk = sum of the G = NQ/NKV query heads'
 * contributions to their shared KV head):
 *   g1  one thread per (row, query head, dim), atomicAdd into the KV head's dk:
 *       the G heads arrive in the threads' order, so the bits vary.
 *   g2  one thread per (row, KV head, dim) sums its G heads in increasing h: no
 *       atomics, a fixed order, s1.c's bits (exercise 4 asks for this; the
 *       programs do it inside attention_backward_dkdv_kernel's loop over h).
 */
#include "dev/dev.cuh"
#include "common/attention.cuh"   // v2 and d2 are the programs' kernels: included, never copied

// ----------------------------------------------------------------------------
// v1 and d1: one thread per (query row, head), two passes over the keys.
// q (Tq,NQ,HD) at positions past.., k v (past+Tq,NKV,HD), out (Tq,NQ,HD).

__global__ void attention_naive_kernel(floatX *out, const floatX *q, const floatX *k, const floatX *v, int Tq, int past,
                                       int NQ, int NKV, int HD, float scale) {
    int t = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y;
    if (t >= Tq) return;
    int kvh = h / (NQ / NKV), last = past + t;
    const floatX *qt = q + ((size_t)t * NQ + h) * HD;
    float m = -INFINITY;
    for (int u = 0; u <= last; u++) {
        const floatX *ku = k + ((size_t)u * NKV + kvh) * HD;
        float s = 0.0f;
        for (int d = 0; d < HD; d++) s += __bfloat162float(cu_ld(&qt[d])) * __bfloat162float(cu_ld(&ku[d]));
        m = fmaxf(m, s * scale);
    }
    float acc[ATT_MAX_HD] = {0.0f}, l = 0.0f;
    for (int u = 0; u <= last; u++) {
        const floatX *ku = k + ((size_t)u * NKV + kvh) * HD, *vu = v + ((size_t)u * NKV + kvh) * HD;
        float s = 0.0f;
        for (int d = 0; d < HD; d++) s += __bfloat162float(cu_ld(&qt[d])) * __bfloat162float(cu_ld(&ku[d]));
        float p = expf(s * scale - m);
        l += p;
        for (int d = 0; d < HD; d++) acc[d] += p * __bfloat162float(cu_ld(&vu[d]));
    }
    floatX *o = out + ((size_t)t * NQ + h) * HD;
    for (int d = 0; d < HD; d++) cu_st(&o[d], round_bf16(acc[d] / l));
}

static void attention_forward_v1(floatX *out, const floatX *q, const floatX *k, const floatX *v, int Tq, int past, int NQ,
                                 int NKV, int HD) {
    dim3 grid((unsigned)((Tq + 31) / 32), (unsigned)NQ);
    CU_LAUNCH(attention_naive_kernel, grid, 32, 0, 0)(out, q, k, v, Tq, past, NQ, NKV, HD, 1.0f / sqrtf((float)HD));
    cudaCheck(cudaGetLastError());
}

static void attention_forward_v2(floatX *out, const floatX *q, const floatX *k, const floatX *v, int Tq, int past, int NQ,
                                 int NKV, int HD) {
    attention_forward_cuda_cores(out, NULL, q, k, v, Tq, past, NQ, NKV, HD, 0);
}

// decode: the last row, one thread per head
static void attention_decode_v1(floatX *out, const floatX *q, const floatX *k, const floatX *v, int ntok, int NQ, int NKV, int HD) {
    dim3 grid(1, (unsigned)NQ);
    CU_LAUNCH(attention_naive_kernel, grid, 32, 0, 0)(out, q, k, v, 1, ntok - 1, NQ, NKV, HD, 1.0f / sqrtf((float)HD));
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// g1 and g2: dk (T,NKV,HD) = sum over the G query heads h of a group of part (T,NQ,HD)

__global__ void gqa_sum_v1_kernel(float *dk, const float *part, int T, int NQ, int NKV, int HD) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)T * NQ * HD) return;
    int d = (int)(i % HD), h = (int)(i / HD % NQ);
    size_t t = i / ((size_t)HD * NQ);
    atomicAdd(&dk[(t * NKV + h / (NQ / NKV)) * HD + d], cu_ld(&part[i]));
}

static void gqa_sum_v1(float *dk, const float *part, int T, int NQ, int NKV, int HD) {
    cudaCheck(cudaMemset(dk, 0, (size_t)T * NKV * HD * sizeof(float)));
    CU_LAUNCH(gqa_sum_v1_kernel, (unsigned)(((size_t)T * NQ * HD + 255) / 256), 256, 0, 0)(dk, part, T, NQ, NKV, HD);
    cudaCheck(cudaGetLastError());
}

__global__ void gqa_sum_v2_kernel(float *dk, const float *part, int T, int NQ, int NKV, int HD) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;   // (t, kvh, d): lanes over d, coalesced
    if (i >= (size_t)T * NKV * HD) return;
    int d = (int)(i % HD), kvh = (int)(i / HD % NKV), G = NQ / NKV;
    size_t t = i / ((size_t)HD * NKV);
    float acc = 0.0f;
    for (int j = 0; j < G; j++) acc += cu_ld(&part[(t * NQ + (size_t)kvh * G + j) * HD + d]);   // increasing h
    cu_st(&dk[i], acc);
}

static void gqa_sum_v2(float *dk, const float *part, int T, int NQ, int NKV, int HD) {
    CU_LAUNCH(gqa_sum_v2_kernel, (unsigned)(((size_t)T * NKV * HD + 255) / 256), 256, 0, 0)(dk, part, T, NQ, NKV, HD);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// the checks

typedef void (*ForwardFn)(floatX *, const floatX *, const floatX *, const floatX *, int, int, int, int, int);
typedef void (*DecodeFn)(floatX *, const floatX *, const floatX *, const floatX *, int, int, int, int);
typedef void (*GqaFn)(float *, const float *, int, int, int, int);

// Tq rows after past cached ones; the bound is tests/emu_kernels.cu's: one bf16
// rounding of the output (u |ref|) plus 1e-5 for the fp32 sums (max |v| = 1);
// bf16_p: P is rounded to bf16 (the tensor-core kernels), which adds u max|v| = u.
static void check_forward(const char *label, ForwardFn fn, int T, int past, int NQ, int NKV, int HD, int bf16_p = 0) {
    char name[192];
    snprintf(name, sizeof name, "attention %s vs s1.c, %d rows after %d, NQ=%d, NKV=%d, HD=%d (bound u|ref| + 1e-5%s)", label,
             T - past, past, NQ, NKV, HD, bf16_p ? " + u" : "");
    TEST_BEGIN(name);
    kt_seed(9);
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD, Tq = (size_t)(T - past);
    float *q = host_random(T * QD, 2.0f), *k = host_random(T * KD, 2.0f), *v = host_random(T * KD, 1.0f);
    float *ref = (float *)mallocCheck(T * QD * sizeof(float));
    s1ref_attention(ref, q, k, v, T, NQ, NKV, HD);
    floatX *d_q = to_device(q + past * QD, Tq * QD), *d_k = to_device(k, T * KD), *d_v = to_device(v, T * KD);
    floatX *d_out = dev_alloc<floatX>(Tq * QD);
    fn(d_out, d_q, d_k, d_v, (int)Tq, past, NQ, NKV, HD);
    float *got = from_device(d_out, Tq * QD);
    check_close("attention", got, ref + past * QD, Tq * QD, DEV_U, 1e-5f + (bf16_p ? DEV_U : 0.0f), NULL);
    free(q); free(k); free(v); free(ref); free(got);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// one new token over ntok keys (its own included): the last row of s1.c's attention
static void check_decode(const char *label, DecodeFn fn, int ntok, int NQ, int NKV, int HD) {
    char name[192];
    snprintf(name, sizeof name, "attention decode %s vs s1.c, 1 token over %d keys, NQ=%d, NKV=%d, HD=%d", label, ntok, NQ, NKV, HD);
    TEST_BEGIN(name);
    kt_seed(10);
    size_t QD = (size_t)NQ * HD, KD = (size_t)NKV * HD;
    float *q = host_random(ntok * QD, 2.0f), *k = host_random(ntok * KD, 2.0f), *v = host_random(ntok * KD, 1.0f);
    float *ref = (float *)mallocCheck(ntok * QD * sizeof(float));
    s1ref_attention(ref, q, k, v, ntok, NQ, NKV, HD);
    floatX *d_q = to_device(q + (ntok - 1) * QD, QD), *d_k = to_device(k, ntok * KD), *d_v = to_device(v, ntok * KD);
    floatX *d_out = dev_alloc<floatX>(QD);
    fn(d_out, d_q, d_k, d_v, ntok, NQ, NKV, HD);
    float *got = from_device(d_out, QD);
    check_close("decode", got, ref + (ntok - 1) * QD, QD, DEV_U, 1e-5f, NULL);
    free(q); free(k); free(v); free(ref); free(got);
    cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// The reference sums a group's heads in increasing h from 0.0f, as s1.c's
// attention_backward() accumulates dk head by head. exact: want those bits.
static void check_gqa(const char *label, GqaFn fn, int exact, int T, int NQ, int NKV, int HD) {
    char name[192];
    snprintf(name, sizeof name, "GQA group sum %s, T=%d, NQ=%d, NKV=%d, HD=%d%s", label, T, NQ, NKV, HD,
             exact ? " (bit for bit)" : " (bound 2(G+1)eps sum|part|)");
    TEST_BEGIN(name);
    kt_seed(4);
    int G = NQ / NKV;
    size_t np = (size_t)T * NQ * HD, nk = (size_t)T * NKV * HD;
    float *part = host_random(np, 1.0f), *ref = (float *)calloc(nk, sizeof(float)), *extra = (float *)calloc(nk, sizeof(float));
    if (!ref || !extra) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < np; i++) part[i] *= 1.0f + (float)(i % 5) / 512.0f;   // more significant bits than bf16
    for (int t = 0; t < T; t++)
        for (int kvh = 0; kvh < NKV; kvh++)
            for (int j = 0; j < G; j++)
                for (int d = 0; d < HD; d++) {
                    size_t o = ((size_t)t * NKV + kvh) * HD + d;
                    float p = part[((size_t)t * NQ + (size_t)kvh * G + j) * HD + d];
                    ref[o] += p;
                    extra[o] += exact ? 0.0f : 2.0f * (G + 1) * DEV_EPS * fabsf(p);
                }
    float *d_part = device_copy(part, np), *d_dk = dev_alloc<float>(nk);
    fn(d_dk, d_part, T, NQ, NKV, HD);
    float *got = host_from(d_dk, nk);
    check_close("dk", got, ref, nk, 0.0f, 0.0f, extra);
    if (exact) CHECK(memcmp(got, ref, nk * sizeof(float)) == 0, "dk is not bit-identical to the fixed order");
    free(part); free(ref); free(extra); free(got);
    cudaCheck(cudaFree(d_part)); cudaCheck(cudaFree(d_dk));
    TEST_END();
}

static void check_v1(void) { check_forward("v1", attention_forward_v1, 64, 0, 4, 2, 64); check_forward("v1", attention_forward_v1, 70, 63, 4, 2, 12); }
static void check_v2(void) { check_forward("v2", attention_forward_v2, 64, 0, 4, 2, 64); check_forward("v2", attention_forward_v2, 70, 63, 4, 2, 12); }
// v3 (and exercise 6): the tensor-core kernel, whose P.V step is the class PV
template <class PV>
static void attention_forward_v3(floatX *out, const floatX *q, const floatX *k, const floatX *v, int Tq, int past, int NQ,
                                 int NKV, int HD) {
    attention_forward_tc<PV>(out, NULL, q, k, v, Tq, past, NQ, NKV, HD, 0);
}
// exercise 6 grades its P.V by the mma.sync count of these two calls against v3's (dev/grade)
template <class PV>
static void check_tc(const char *label) {
    check_forward(label, attention_forward_v3<PV>, 80, 0, 4, 2, 64, 1);
    check_forward(label, attention_forward_v3<PV>, 70, 63, 4, 1, 128, 1);
}
static void check_v3(void) { check_tc<AtcPvTensorCores>("v3"); }
// The new token's position ntok - 1 in device memory, where the programs' decode launchers read it
// (a CUDA graph of the step replays at any position); copied only when it changes, so a benchmark
// times the kernels alone.
static const int *position_on_device(int ntok) {
    static int *d_pos, last = -1;
    if (!d_pos) cudaCheck(cudaMalloc((void **)&d_pos, sizeof(int)));
    if (ntok - 1 != last) {
        last = ntok - 1;
        cudaCheck(cudaMemcpy(d_pos, &last, sizeof last, cudaMemcpyHostToDevice));
    }
    return d_pos;
}
static void attention_decode_v3(floatX *out, const floatX *q, const floatX *k, const floatX *v, int ntok, int NQ, int NKV, int HD) {
    static float *scratch;   // enough for the checks' and the benchmark's shapes
    static size_t floats;
    size_t need = attention_decode_scratch_floats(ntok, NQ, HD);
    if (need > floats) {
        if (scratch) cudaCheck(cudaFree(scratch));
        cudaCheck(cudaMalloc((void **)&scratch, need * sizeof(float)));
        floats = need;
    }
    attention_decode_flash(out, scratch, q, k, v, position_on_device(ntok), ntok, NQ, NKV, HD, 0);
}
static void check_d1(void) { check_decode("d1", attention_decode_v1, 70, 4, 2, 64); }
// the programs' launcher on the default stream, in the checker's signature
static void attention_decode_v2(floatX *out, const floatX *q, const floatX *k, const floatX *v, int ntok, int NQ, int NKV, int HD) {
    attention_decode(out, q, k, v, position_on_device(ntok), NQ, NKV, HD, 0);
}
static void check_d2(void) { check_decode("d2", attention_decode_v2, 70, 4, 2, 64); }
static void check_d3(void) { check_decode("d3", attention_decode_v3, 300, 4, 2, 64); check_decode("d3", attention_decode_v3, 70, 10, 2, 128); }
static void check_g1(void) { check_gqa("g1", gqa_sum_v1, 0, 64, 8, 2, 64); }
static void check_g2(void) { check_gqa("g2", gqa_sum_v2, 1, 64, 8, 2, 64); }

// the benchmark: 4096 rows, Qwen2.5-0.5B's heads (14 query, 2 KV, HD 64)
#define TB 4096
#define NQB 14
#define NKVB 2
#define HDB 64
static floatX *bq, *bk, *bv, *bo;
static float *bpart, *bdk;
static void bench_setup(void) {
    if (bq) return;
    bq = dev_alloc<floatX>((size_t)TB * NQB * HDB);
    bo = dev_alloc<floatX>((size_t)TB * NQB * HDB);
    bk = dev_alloc<floatX>((size_t)TB * NKVB * HDB);
    bv = dev_alloc<floatX>((size_t)TB * NKVB * HDB);
    bpart = dev_alloc<float>((size_t)TB * NQB * HDB);
    bdk = dev_alloc<float>((size_t)TB * NKVB * HDB);
}
static void bench_v1(void) { bench_setup(); attention_forward_v1(bo, bq, bk, bv, TB, 0, NQB, NKVB, HDB); }
static void bench_v2(void) { bench_setup(); attention_forward_v2(bo, bq, bk, bv, TB, 0, NQB, NKVB, HDB); }
static void bench_v3(void) { bench_setup(); attention_forward_v3<AtcPvTensorCores>(bo, bq, bk, bv, TB, 0, NQB, NKVB, HDB); }
static void bench_d1(void) { bench_setup(); attention_decode_v1(bo, bq, bk, bv, TB, NQB, NKVB, HDB); }
static void bench_d2(void) { bench_setup(); attention_decode_v2(bo, bq, bk, bv, TB, NQB, NKVB, HDB); }
static void bench_d3(void) { bench_setup(); attention_decode_v3(bo, bq, bk, bv, TB, NQB, NKVB, HDB); }
static void bench_g1(void) { bench_setup(); gqa_sum_v1(bdk, bpart, TB, NQB, NKVB, HDB); }
static void bench_g2(void) { bench_setup(); gqa_sum_v2(bdk, bpart, TB, NQB, NKVB, HDB); }

#ifdef DEV_EXERCISE   // dev/grade: a student's file (exercise 4 or 6), listed as version "x"
#include DEV_EXERCISE
#if DEV_EXERCISE_NUMBER == 6   // the P.V step of v3: struct ExercisePv
static void check_x(void) { check_tc<ExercisePv>("x (exercise 6)"); }
static void bench_x(void) { bench_setup(); attention_forward_v3<ExercisePv>(bo, bq, bk, bv, TB, 0, NQB, NKVB, HDB); }
#define X_BYTES FWD_BYTES
#define X_FLOPS FWD_FLOPS
#else
static void check_x(void) { check_gqa("x (exercise 4)", exercise_gqa_sum, 1, 64, 8, 2, 64); }
static void bench_x(void) { bench_setup(); exercise_gqa_sum(bdk, bpart, TB, NQB, NKVB, HDB); }
#define X_BYTES GQA_BYTES
#define X_FLOPS GQA_FLOPS
#endif
#endif

// models: forward reads q, k, v and writes out once (bf16), 4 T^2/2 NQ HD FLOPs (causal QK^T and PV);
// decode reads the cache once; the group sum reads part and writes dk (fp32).
#define FWD_BYTES (2.0 * TB * HDB * (2 * NQB + 2 * NKVB))
#define FWD_FLOPS (2.0 * TB * (double)TB * NQB * HDB)
#define DEC_BYTES (2.0 * TB * HDB * 2 * NKVB)
#define DEC_FLOPS (4.0 * TB * NQB * HDB)
#define GQA_BYTES (4.0 * TB * HDB * (NQB + NKVB))
#define GQA_FLOPS (1.0 * TB * NQB * HDB)
static const DevVersion versions[] = {
    {"1", "forward, one thread per (row, head), two passes from global memory", check_v1, bench_v1, FWD_BYTES, FWD_FLOPS},
    {"2", "forward, flash attention with key/value tiles in shared memory (common/attention.cuh)", check_v2, bench_v2, FWD_BYTES, FWD_FLOPS},
    {"3", "forward on tensor cores: mma.sync for QK^T and PV, cp.async double buffering (common/attention.cuh)", check_v3, bench_v3, FWD_BYTES, FWD_FLOPS},
    {"d1", "decode, one thread per head", check_d1, bench_d1, DEC_BYTES, DEC_FLOPS},
    {"d2", "decode, a block per head, 8 warps split the keys (common/attention.cuh)", check_d2, bench_d2, DEC_BYTES, DEC_FLOPS},
    {"d3", "flash-decoding: splits of 256 keys across blocks, a block per (split, KV head), 16-byte loads (common/attention.cuh)", check_d3, bench_d3, DEC_BYTES, DEC_FLOPS},
    {"g1", "GQA group sum of dk with atomicAdd (order and bits vary)", check_g1, bench_g1, GQA_BYTES, GQA_FLOPS},
    {"g2", "GQA group sum, a thread per output summing its heads in order: no atomics", check_g2, bench_g2, GQA_BYTES, GQA_FLOPS},
#ifdef DEV_EXERCISE
    {"x", "the exercise file given to dev/grade", check_x, bench_x, X_BYTES, X_FLOPS},
#endif
};

int main(int argc, char **argv) { return dev_main("attention", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
