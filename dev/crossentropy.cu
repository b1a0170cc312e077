/*
 * dev/crossentropy.cu: softmax and cross-entropy, fused with its backward pass,
 * checked against s1.c's crossentropy_forward() and crossentropy_backward():
 *   losses[n] = w_n (logsumexp(logits[n]) - logits[n, target_n])
 *   dlogits[n] = grad_scale w_n (softmax(logits[n]) - onehot(target_n)), bf16, written
 *   IN PLACE over the fp32 logits (row n's bf16 gradient in its first 2V bytes),
 *   as the programs' chunked classifier does (common/classifier.cuh).
 *
 *   make dev && dev/run crossentropy [VERSION]
 *
 *   v1  one thread per row, three passes over the vocabulary (max, sum, gradient).
 *       The lanes of a warp read 32 rows V floats apart: 32 sectors per request,
 *       and a warp has 32 rows' worth of serial work; with V = 151,936 (Qwen2.5)
 *       that is 150K dependent steps per thread.
 *   v2  one block per row (common/classifier.cuh, what the programs run): each
 *       thread keeps an online (max, sum) over its stride of the row (one pass
 *       instead of two, one exp per element: online_max_sum()), merged by warp
 *       shuffles then across warps in shared memory; lane l reads element
 *       base + l: 4 sectors per request.
 */
#include "dev/dev.cuh"
#include "common/classifier.cuh"   // v2 is the programs' kernel: included, never copied

__global__ void crossentropy_v1_kernel(float *losses, float *logits, const uint32_t *targets, const float *weights,
                                       float grad_scale, int N, int V) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    float w = weights[row];
    float *x = logits + (size_t)row * V;
    floatX *d = (floatX *)x;   // the bf16 gradient, in place: element i overwrites half of fp32 element i/2 <= i
    if (w == 0.0f) {
        losses[row] = 0.0f;
        for (int i = 0; i < V; i++) cu_st(&d[i], round_bf16(0.0f));
        return;
    }
    float m = -INFINITY, s = 0.0f;
    for (int i = 0; i < V; i++) m = fmaxf(m, cu_ld(&x[i]));   // lanes are V floats apart
    for (int i = 0; i < V; i++) s += expf(cu_ld(&x[i]) - m);
    float lse = m + logf(s);
    losses[row] = w * (lse - x[targets[row]]);
    float scale = grad_scale * w;
    for (int i = 0; i < V; i++) cu_st(&d[i], dlogit(cu_ld(&x[i]), i, lse, scale, (int)targets[row]));   // reads x[i] first
}

static void crossentropy_v1(float *losses, float *logits, const uint32_t *targets, const float *weights, float grad_scale, int N, int V) {
    CU_LAUNCH(crossentropy_v1_kernel, (N + 63) / 64, 64, 0, 0)(losses, logits, targets, weights, grad_scale, N, V);
    cudaCheck(cudaGetLastError());
}

static void crossentropy_v2(float *losses, float *logits, const uint32_t *targets, const float *weights, float grad_scale, int N, int V) {
    CU_LAUNCH(crossentropy_forward_kernel, grid_for((size_t)N, 1), 256, 0, 0)(losses, logits, (floatX *)logits, targets, weights,
                                                                              grad_scale, N, V);
    cudaCheck(cudaGetLastError());
}

typedef void (*CeFn)(float *, float *, const uint32_t *, const float *, float, int, int);

// losses: each side sums V exponentials in another order, s1.c with its exp_fast
// (tests/emu_kernels.cu's bound for the loss: 3e-5 relative, plus 1e-5); dlogits:
// one bf16 rounding (u |ref|) plus scale * 3e-5 for the probabilities' difference.
// The profiled shape (first) scores every row: a masked row is a branch on the lane in v1.
static void check_ce(const char *label, CeFn fn, int N, int V, int masked) {
    char name[160];
    snprintf(name, sizeof name, "crossentropy %s vs s1.c, N=%d, V=%d%s", label, N, V, masked ? ", some rows unscored" : "");
    TEST_BEGIN(name);
    kt_seed(41);
    const float grad_scale = 0.5f;
    float *logits = host_random((size_t)N * V, 8.0f), *weights = (float *)mallocCheck(N * sizeof(float));
    uint32_t *targets = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    for (int n = 0; n < N; n++) {
        targets[n] = (uint32_t)((n * 37) % V);
        weights[n] = masked && n % 5 == 3 ? 0.0f : 1.0f / (float)(1 + n % 3);   // masked rows, and s1's per-row weights
    }
    float *lse = (float *)mallocCheck(N * sizeof(float)), *ref_d = (float *)mallocCheck((size_t)N * V * sizeof(float));
    s1ref_crossentropy(lse, ref_d, logits, targets, weights, grad_scale, N, V);
    float *ref_loss = (float *)mallocCheck(N * sizeof(float));
    for (int n = 0; n < N; n++) ref_loss[n] = weights[n] == 0.0f ? 0.0f : weights[n] * (lse[n] - logits[(size_t)n * V + targets[n]]);
    float *d_logits = device_copy(logits, (size_t)N * V), *d_w = device_copy(weights, N), *d_losses = dev_alloc<float>(N);
    uint32_t *d_t = device_copy(targets, N);
    fn(d_losses, d_logits, d_t, d_w, grad_scale, N, V);
    float *got_loss = host_from(d_losses, N), *raw = host_from(d_logits, (size_t)N * V);
    float *got_d = (float *)mallocCheck((size_t)N * V * sizeof(float));
    for (int n = 0; n < N; n++)   // row n's bf16 gradient: its first 2V bytes
        for (int i = 0; i < V; i++) got_d[(size_t)n * V + i] = __bfloat162float(((const floatX *)(raw + (size_t)n * V))[i]);
    check_close("losses", got_loss, ref_loss, N, 3e-5f, 1e-5f, NULL);
    check_close("dlogits", got_d, ref_d, (size_t)N * V, DEV_U, 3e-5f * grad_scale, NULL);
    free(logits); free(weights); free(targets); free(lse); free(ref_d); free(ref_loss); free(got_loss); free(raw); free(got_d);
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_t));
    TEST_END();
}

static void check_v1(void) { check_ce("v1", crossentropy_v1, 64, 512, 0); check_ce("v1", crossentropy_v1, 7, 1000, 1); }
static void check_v2(void) { check_ce("v2", crossentropy_v2, 64, 512, 0); check_ce("v2", crossentropy_v2, 7, 1000, 1); }

#define NB 64          // the benchmark: 64 rows of Qwen2.5's vocabulary (a chunk of sft's classifier)
#define VB 151936
static float *blogits, *blosses, *bweights;
static uint32_t *btargets;
static void bench_setup(void) {
    if (blogits) return;
    blogits = dev_alloc<float>((size_t)NB * VB);
    blosses = dev_alloc<float>(NB);
    bweights = dev_alloc<float>(NB);
    btargets = dev_alloc<uint32_t>(NB);
}
static void bench_v1(void) { bench_setup(); crossentropy_v1(blosses, blogits, btargets, bweights, 1.0f, NB, VB); }
static void bench_v2(void) { bench_setup(); crossentropy_v2(blosses, blogits, btargets, bweights, 1.0f, NB, VB); }

// model: the fp32 logits read once and their bf16 gradient written: 6 bytes an element
// (v1 reads them three times, which is its cost); ~4 FLOPs an element plus expf
#define CE_BYTES (6.0 * NB * VB)
#define CE_FLOPS (4.0 * NB * VB)
static const DevVersion versions[] = {
    {"1", "one thread per row, three passes (lanes V floats apart: 32 sectors per request)", check_v1, bench_v1, CE_BYTES, CE_FLOPS},
    {"2", "one block per row, online max and sum, shuffle reductions (common/classifier.cuh)", check_v2, bench_v2, CE_BYTES, CE_FLOPS},
};

int main(int argc, char **argv) { return dev_main("crossentropy", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
