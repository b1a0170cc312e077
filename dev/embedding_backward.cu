/*
 * dev/embedding_backward.cu: the embedding's backward pass, dtable[ids[n]] += dout[n],
 * checked against s1.c's embedding_backward() (a serial loop over n).
 *
 *   make dev && dev/run embedding_backward [VERSION]
 *
 *   v1  one thread per (position, column), atomicAdd into the table row. Simple
 *       and coalesced, but positions with the same id add in whatever order the
 *       threads arrive: the fp32 sum, hence the bits of the gradient, change
 *       from run to run (here: from schedule to schedule).
 *   v2  common/embedding.cuh (what sft train runs): the host sorts the positions
 *       by (id, position), one block owns each distinct id and its threads add
 *       that id's rows in increasing position: s1.c's order, bit for bit, every
 *       run, with no atomics (exercise 5 asks for this).
 */
#include "dev/dev.cuh"
#include "common/embedding.cuh"   // v2 is the programs' kernel: included, never copied

__global__ void embedding_backward_v1_kernel(float *dtable, const float *dout, const uint32_t *ids, int N, int C) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    atomicAdd(&dtable[(size_t)ids[n] * C + c], cu_ld(&dout[i]));   // the order of equal ids is the threads' order
}

// same signature as common/embedding.cuh's (ids on the host; scratch unused here)
static void embedding_backward_v1(float *dtable, const float *dout, const uint32_t *ids_host, int N, int C, int *scratch) {
    (void)scratch;
    uint32_t *d_ids = device_copy(ids_host, (size_t)N);
    CU_LAUNCH(embedding_backward_v1_kernel, (unsigned)(((size_t)N * C + 255) / 256), 256, 0, 0)(dtable, dout, d_ids, N, C);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaFree(d_ids));
}

typedef void (*EmbBwdFn)(float *, const float *, const uint32_t *, int, int, int *);

// exact: want the bits of s1.c (v2, the exercise); otherwise the sum of each
// row's k terms in another order: 2 (k + 1) eps (|prev| + sum |dout|).
static void check_embedding_backward(const char *label, EmbBwdFn fn, int exact, int N, int C, int V) {
    char name[192];
    snprintf(name, sizeof name, "embedding backward %s vs s1.c, N=%d, C=%d, V=%d, repeated ids%s", label, N, C, V,
             exact ? " (bit for bit)" : "");
    TEST_BEGIN(name);
    kt_seed(3);
    uint32_t *ids = (uint32_t *)mallocCheck((size_t)N * sizeof(uint32_t));
    for (int n = 0; n < N; n++) ids[n] = (uint32_t)((n * 7 + n / 13) % V);
    float *dout = host_random((size_t)N * C, 1.0f), *prev = host_random((size_t)V * C, 1.0f);
    for (size_t i = 0; i < (size_t)N * C; i++) dout[i] *= 1.0f + (float)(i % 7) / 1024.0f;   // not only bf16 values
    float *ref = (float *)mallocCheck((size_t)V * C * sizeof(float)), *extra = (float *)calloc((size_t)V * C, sizeof(float));
    int *count = (int *)calloc(V, sizeof(int));
    if (!extra || !count) { fprintf(stderr, "out of memory\n"); exit(1); }
    memcpy(ref, prev, (size_t)V * C * sizeof(float));
    s1ref_embedding_backward(ref, dout, ids, N, C);
    for (int n = 0; n < N; n++) {
        count[ids[n]]++;
        for (int c = 0; c < C; c++) extra[(size_t)ids[n] * C + c] += fabsf(dout[(size_t)n * C + c]);
    }
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++)
            extra[(size_t)v * C + c] = exact ? 0.0f : 2.0f * (count[v] + 1) * DEV_EPS * (extra[(size_t)v * C + c] + fabsf(prev[(size_t)v * C + c]));
    float *d_dout = device_copy(dout, (size_t)N * C), *d_table = device_copy(prev, (size_t)V * C);
    int *d_scratch = dev_alloc<int>(embedding_backward_scratch_ints(N));
    fn(d_table, d_dout, ids, N, C, d_scratch);
    float *got = host_from(d_table, (size_t)V * C);
    check_close("dtable", got, ref, (size_t)V * C, 0.0f, 0.0f, extra);
    if (exact) CHECK(memcmp(got, ref, (size_t)V * C * sizeof(float)) == 0, "dtable is not bit-identical to s1.c's");
    free(ids); free(dout); free(prev); free(ref); free(extra); free(count); free(got);
    cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_table)); cudaCheck(cudaFree(d_scratch));
    TEST_END();
}

static void check_v1(void) { check_embedding_backward("v1", embedding_backward_v1, 0, 300, 64, 11); }
// the programs' launcher on the default stream, in the checker's signature
static void embedding_backward_v2(float *dtable, const float *dout, const uint32_t *ids_host, int N, int C, int *scratch) {
    embedding_backward(dtable, dout, ids_host, N, C, scratch, 0);
}
static void check_v2(void) { check_embedding_backward("v2", embedding_backward_v2, 1, 300, 64, 11); }

#define NB 16384   // the benchmark: 16K positions of a 1024-wide table of 32K rows
#define CB 1024
#define VB 32768
static float *bdout, *btable;
static uint32_t *bids;
static int *bscratch;
static void bench_setup(void) {
    if (bdout) return;
    bdout = dev_alloc<float>((size_t)NB * CB);
    btable = dev_alloc<float>((size_t)VB * CB);
    bscratch = dev_alloc<int>(embedding_backward_scratch_ints(NB));
    bids = (uint32_t *)mallocCheck(NB * sizeof(uint32_t));
    for (int n = 0; n < NB; n++) bids[n] = (uint32_t)((n * 2654435761u) % VB);
}
static void bench_v1(void) { bench_setup(); embedding_backward_v1(btable, bdout, bids, NB, CB, bscratch); }
static void bench_v2(void) { bench_setup(); embedding_backward(btable, bdout, bids, NB, CB, bscratch, 0); }

#ifdef DEV_EXERCISE   // dev/grade: a student's file (exercise 5), listed as version "x"
#include DEV_EXERCISE
static void check_x(void) { check_embedding_backward("x (exercise 5)", exercise_embedding_backward, 1, 300, 64, 11); }
static void bench_x(void) { bench_setup(); exercise_embedding_backward(btable, bdout, bids, NB, CB, bscratch); }
#endif

// model: read dout, read and write the touched table rows (at most N of them), fp32: 12 N C bytes; N C FLOPs
#define EB_BYTES (12.0 * NB * CB)
#define EB_FLOPS (1.0 * NB * CB)
static const DevVersion versions[] = {
    {"1", "one thread per element, atomicAdd (fast to write, order and bits vary)", check_v1, bench_v1, EB_BYTES, EB_FLOPS},
    {"2", "positions grouped by id on the host, a block per id, s1.c's order (common/embedding.cuh)", check_v2, bench_v2, EB_BYTES, EB_FLOPS},
#ifdef DEV_EXERCISE
    {"x", "the exercise file given to dev/grade", check_x, bench_x, EB_BYTES, EB_FLOPS},
#endif
};

int main(int argc, char **argv) {
    return dev_main("embedding_backward", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv);
}
