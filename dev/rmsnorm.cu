/*
 * dev/rmsnorm.cu: the RMSNorm workbench (forward and backward), naive to fast,
 * each version checked against s1.c's rmsnorm_forward()/rmsnorm_backward().
 *
 *   make dev && dev/run rmsnorm [VERSION]     (build/dev/rmsnorm --list names the versions)
 *
 * Forward, y = bf16(bf16(x * r) * w) with r = rsqrt(mean(x^2) + eps):
 *   v1  one thread per row. Simple, but at each step the 32 lanes of a warp read
 *       32 different rows, C elements apart: 32 sectors per request, 16x the
 *       bytes a GPU must move for the 64 it uses.
 *   v2  one warp per row (common/rmsnorm.cuh's rmsnorm_forward_kernel, the
 *       programs' fallback for C % 8 != 0): lane l reads elements l, l+32, ...:
 *       a request covers 64 contiguous bytes, 2 sectors; the row's sum is a warp
 *       shuffle reduction (warp_sum).
 *   v3  v2 with the residual add fused in: the transformer computes
 *       h = h + branch and then RMSNorm(h); fused, h is read once and written
 *       once instead of read twice, written once and read again (exercise 2).
 *   v4  v2 with 16-byte accesses (rmsnorm_forward_vec_kernel, what the programs
 *       run): lane l reads elements 8l..8l+7, a request is 512 contiguous bytes
 *       (16 sectors, all used), 8x fewer load instructions for the same bytes.
 * Backward (dinp += r (g - y mean(g y)), dweight += sum_n dout y, g = w dout):
 *   b1  one thread per row for dinp, one thread per column for dweight.
 *   b2  common/rmsnorm.cuh: a warp per row, and dweight as fixed-order
 *       per-block column sums (coalesced and deterministic).
 */
#include "dev/dev.cuh"
#include "common/rmsnorm.cuh"   // v2, v4 and b2 are the programs' kernels: included, never copied

#define N_CHECK 64               // rows and columns of the profiled check: a multiple of 32, so no lane idles
#define C_CHECK 256
#define N_BENCH 16384            // the benchmark: 16K tokens of a 1024-wide model
#define C_BENCH 1024
static const float eps_norm = 1e-6f;

// ----------------------------------------------------------------------------
// v1: one thread per row

__global__ void rmsnorm_forward_v1_kernel(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C,
                                          float eps) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    const floatX *x = inp + (size_t)row * C;
    float ss = 0.0f;
    for (int i = 0; i < C; i++) {
        float xi = __bfloat162float(cu_ld(&x[i]));   // lane l reads row l: the lanes are C elements apart
        ss += xi * xi;
    }
    float r = rsqrtf(ss / (float)C + eps);
    if (rstd != NULL) rstd[row] = r;
    floatX *o = out + (size_t)row * C;
    for (int i = 0; i < C; i++) {
        float y = __bfloat162float(round_bf16(__bfloat162float(cu_ld(&x[i])) * r));
        cu_st(&o[i], round_bf16(__bfloat162float(cu_ld(&weight[i])) * y));
    }
}

static void rmsnorm_forward_v1(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    CU_LAUNCH(rmsnorm_forward_v1_kernel, (N + 63) / 64, 64, 0, 0)(out, rstd, inp, weight, N, C, eps);
    cudaCheck(cudaGetLastError());
}

// v2: the programs' one-bf16-per-access kernel, launched directly (rmsnorm_forward()
// runs it only when rows are not whole 16-byte vectors)
static void rmsnorm_forward_v2(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    CU_LAUNCH(rmsnorm_forward_kernel, grid_for((size_t)N, 256 / WARP_SIZE), 256, 0, 0)(out, rstd, inp, weight, N, C, eps);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// v3: the residual add fused in. residual (N,C) += inp (N,C) in fp32, rounded to
// bf16 (the stream the GPU keeps), then out = RMSNorm(residual). One warp per row.

__global__ void rmsnorm_residual_forward_kernel(floatX *residual, floatX *out, float *rstd, const floatX *inp,
                                                const floatX *weight, int N, int C, float eps) {
    int warps = blockDim.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    for (int row = blockIdx.x * warps + threadIdx.x / WARP_SIZE; row < N; row += gridDim.x * warps) {
        floatX *h = residual + (size_t)row * C;
        const floatX *b = inp + (size_t)row * C;
        float ss = 0.0f;
        for (int i = lane; i < C; i += WARP_SIZE) {
            floatX hi = round_bf16(__bfloat162float(cu_ld(&h[i])) + __bfloat162float(cu_ld(&b[i])));
            cu_st(&h[i], hi);   // the lane reads it back below: its own element, no barrier needed
            float v = __bfloat162float(hi);
            ss += v * v;
        }
        float r = rsqrtf(warp_sum(ss) / (float)C + eps);
        if (rstd != NULL && lane == 0) rstd[row] = r;
        floatX *o = out + (size_t)row * C;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float y = __bfloat162float(round_bf16(__bfloat162float(cu_ld(&h[i])) * r));
            cu_st(&o[i], round_bf16(__bfloat162float(cu_ld(&weight[i])) * y));
        }
    }
}

static void rmsnorm_residual_forward(floatX *residual, floatX *out, float *rstd, const floatX *inp, const floatX *weight,
                                     int N, int C, float eps) {
    CU_LAUNCH(rmsnorm_residual_forward_kernel, grid_for((size_t)N, 8), 256, 0, 0)(residual, out, rstd, inp, weight, N, C, eps);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// b1: the backward pass, one thread per row (dinp) and one per column (dweight)

__global__ void rmsnorm_backward_v1_dinp_kernel(float *dinp, const float *dout, const floatX *inp, const floatX *weight,
                                                const float *rstd, int N, int C) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    const floatX *x = inp + (size_t)row * C;
    const float *d = dout + (size_t)row * C;
    float r = rstd[row], gy = 0.0f;
    for (int i = 0; i < C; i++)
        gy += __bfloat162float(cu_ld(&weight[i])) * cu_ld(&d[i]) * (__bfloat162float(cu_ld(&x[i])) * r);
    gy /= (float)C;
    float *dx = dinp + (size_t)row * C;
    for (int i = 0; i < C; i++)
        cu_st(&dx[i], cu_ld(&dx[i]) + r * (__bfloat162float(cu_ld(&weight[i])) * cu_ld(&d[i]) -
                                           (__bfloat162float(cu_ld(&x[i])) * r) * gy));
}

__global__ void rmsnorm_backward_v1_dweight_kernel(float *dweight, const float *dout, const floatX *inp, const float *rstd,
                                                   int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int n = 0; n < N; n++) {   // lane l reads column l of row n: coalesced, but one thread walks all N rows
        float y = __bfloat162float(round_bf16(__bfloat162float(cu_ld(&inp[(size_t)n * C + c])) * cu_ld(&rstd[n])));
        s += cu_ld(&dout[(size_t)n * C + c]) * y;
    }
    cu_st(&dweight[c], cu_ld(&dweight[c]) + s);
}

static void rmsnorm_backward_v1(float *dinp, float *dweight, const float *dout, const floatX *inp, const floatX *weight,
                                const float *rstd, int N, int C) {
    CU_LAUNCH(rmsnorm_backward_v1_dinp_kernel, (N + 63) / 64, 64, 0, 0)(dinp, dout, inp, weight, rstd, N, C);
    cudaCheck(cudaGetLastError());
    CU_LAUNCH(rmsnorm_backward_v1_dweight_kernel, (C + 63) / 64, 64, 0, 0)(dweight, dout, inp, rstd, N, C);
    cudaCheck(cudaGetLastError());
}

static void rmsnorm_backward_v2(float *dinp, float *dweight, const float *dout, const floatX *inp, const floatX *weight,
                                const float *rstd, int N, int C) {
    float *scratch = dev_alloc<float>(rmsnorm_backward_scratch_floats(N, C));
    rmsnorm_backward(dinp, NULL, dweight, scratch, dout, inp, weight, rstd, N, C, 0);
    cudaCheck(cudaFree(scratch));
}

// ----------------------------------------------------------------------------
// the checks

typedef void (*ForwardFn)(floatX *, float *, const floatX *, const floatX *, int, int, float);
typedef void (*ResidualFn)(floatX *, floatX *, float *, const floatX *, const floatX *, int, int, float);
typedef void (*BackwardFn)(float *, float *, const float *, const floatX *, const floatX *, const float *, int, int);

// y vs s1.c: each side rounds y and w*y to bf16 once (2u); r may differ in its
// last bits with the order of the row's sum, which can move y's rounding by one more u.
static void check_forward(const char *label, ForwardFn fwd, ResidualFn fused, int N, int C) {
    char name[160];
    snprintf(name, sizeof name, "rmsnorm %s vs s1.c, N=%d, C=%d (bound 3u|ref| + 1e-6)", label, N, C);
    TEST_BEGIN(name);
    kt_seed(7);
    float *x = host_random((size_t)N * C, 3.0f), *w = host_random(C, 1.5f), *ref = (float *)mallocCheck((size_t)N * C * sizeof(float));
    float *branch = host_random((size_t)N * C, 2.0f);
    float *h = (float *)mallocCheck((size_t)N * C * sizeof(float));
    memcpy(h, x, (size_t)N * C * sizeof(float));
    if (fused) {   // the reference: s1.c's residual add, rounded to the bf16 stream, then s1.c's RMSNorm
        s1ref_residual(h, branch, (size_t)N * C);
        for (size_t i = 0; i < (size_t)N * C; i++) h[i] = __bfloat162float(__float2bfloat16(h[i]));
    }
    s1ref_rmsnorm(ref, h, w, N, C, eps_norm);
    floatX *d_x = to_device(x, (size_t)N * C), *d_w = to_device(w, C), *d_b = to_device(branch, (size_t)N * C);
    floatX *d_out = dev_alloc<floatX>((size_t)N * C);
    if (fused) fused(d_x, d_out, NULL, d_b, d_w, N, C, eps_norm);
    else fwd(d_out, NULL, d_x, d_w, N, C, eps_norm);
    float *got = from_device(d_out, (size_t)N * C);
    check_close("rmsnorm", got, ref, (size_t)N * C, 3 * DEV_U, 1e-6f, NULL);
    if (fused) {
        float *got_h = from_device(d_x, (size_t)N * C);
        check_close("residual", got_h, h, (size_t)N * C, 0.0f, 0.0f, NULL);
        free(got_h);
    }
    free(x); free(w); free(ref); free(branch); free(h); free(got);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_out));
    TEST_END();
}

// Both sides get s1.c's r. dinp: the row's mean(g y) is a sum of C terms in
// different orders (2 C eps S / C each, S = sum |g y|), times r |y|, plus a few
// roundings; dweight: the kernel's y is bf16(x r) (HF's cast), s1.c's is not: u per
// term, plus the two orders of N terms.
static void check_backward(const char *label, BackwardFn bwd, int N, int C) {
    char name[160];
    snprintf(name, sizeof name, "rmsnorm backward %s vs s1.c, N=%d, C=%d", label, N, C);
    TEST_BEGIN(name);
    kt_seed(11);
    float *x = host_random((size_t)N * C, 3.0f), *w = host_random(C, 1.5f), *dout = host_random((size_t)N * C, 1.0f);
    float *ref_dinp = (float *)calloc((size_t)N * C, sizeof(float)), *ref_dw = (float *)calloc(C, sizeof(float));
    float *rstd = (float *)calloc(N, sizeof(float));
    float *extra_dinp = (float *)calloc((size_t)N * C, sizeof(float)), *extra_dw = (float *)calloc(C, sizeof(float));
    if (!ref_dinp || !ref_dw || !rstd || !extra_dinp || !extra_dw) { fprintf(stderr, "out of memory\n"); exit(1); }
    s1ref_rmsnorm_backward(ref_dinp, ref_dw, rstd, dout, x, w, N, C, eps_norm);
    for (int n = 0; n < N; n++) {
        float r = rstd[n], S = 0.0f, m = 0.0f;
        for (int i = 0; i < C; i++) {
            float g = w[i] * dout[(size_t)n * C + i], y = x[(size_t)n * C + i] * r;
            S += fabsf(g * y);
            m += g * y;
        }
        m /= (float)C;
        for (int i = 0; i < C; i++) {
            float g = w[i] * dout[(size_t)n * C + i], y = x[(size_t)n * C + i] * r;
            extra_dinp[(size_t)n * C + i] = r * fabsf(y) * 2.0f * (C + 2) * DEV_EPS * S / C + 12.0f * DEV_EPS * r * (fabsf(g) + fabsf(y * m));
            extra_dw[i] += fabsf(dout[(size_t)n * C + i] * y);
        }
    }
    for (int i = 0; i < C; i++) extra_dw[i] = (DEV_U + 2.0f * (N + 3) * DEV_EPS) * extra_dw[i];
    floatX *d_x = to_device(x, (size_t)N * C), *d_w = to_device(w, C);
    float *d_dout = device_copy(dout, (size_t)N * C), *d_rstd = device_copy(rstd, N);
    float *d_dinp = dev_alloc<float>((size_t)N * C), *d_dw = dev_alloc<float>(C);
    bwd(d_dinp, d_dw, d_dout, d_x, d_w, d_rstd, N, C);
    float *got_dinp = host_from(d_dinp, (size_t)N * C), *got_dw = host_from(d_dw, C);
    check_close("dinp", got_dinp, ref_dinp, (size_t)N * C, 2 * DEV_EPS, 0.0f, extra_dinp);
    check_close("dweight", got_dw, ref_dw, C, 2 * DEV_EPS, 0.0f, extra_dw);
    free(x); free(w); free(dout); free(ref_dinp); free(ref_dw); free(rstd); free(extra_dinp); free(extra_dw);
    free(got_dinp); free(got_dw);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_rstd));
    cudaCheck(cudaFree(d_dinp)); cudaCheck(cudaFree(d_dw));
    TEST_END();
}

static void check_v1(void) { check_forward("v1", rmsnorm_forward_v1, NULL, N_CHECK, C_CHECK); check_forward("v1", rmsnorm_forward_v1, NULL, 7, 100); }
static void check_v2(void) { check_forward("v2", rmsnorm_forward_v2, NULL, N_CHECK, C_CHECK); check_forward("v2", rmsnorm_forward_v2, NULL, 7, 100); }
// the programs' launcher on the default stream, in the checker's signature
static void rmsnorm_forward_v4(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    rmsnorm_forward(out, rstd, inp, weight, N, C, eps, 0);
}
static void check_v4(void) {   // C = 104: 13 vectors a row, lanes 13..31 idle; C = 100: rmsnorm_forward() falls back to v2
    check_forward("v4", rmsnorm_forward_v4, NULL, N_CHECK, C_CHECK);
    check_forward("v4", rmsnorm_forward_v4, NULL, 7, 104);
    check_forward("v4", rmsnorm_forward_v4, NULL, 7, 100);
}
static void check_v3(void) { check_forward("v3 (+ residual)", NULL, rmsnorm_residual_forward, N_CHECK, C_CHECK); check_forward("v3 (+ residual)", NULL, rmsnorm_residual_forward, 7, 100); }
static void check_b1(void) { check_backward("b1", rmsnorm_backward_v1, N_CHECK, C_CHECK); check_backward("b1", rmsnorm_backward_v1, 5, 33); }
static void check_b2(void) { check_backward("b2", rmsnorm_backward_v2, N_CHECK, C_CHECK); check_backward("b2", rmsnorm_backward_v2, 5, 33); }

// bytes model: read x, write y (bf16), the weight once: 4 N C + 2 C; fused: read h and
// the branch, write h and y: 8 N C + 2 C. FLOPs: about 4 per element.
#define FWD_BYTES (4.0 * N_BENCH * C_BENCH + 2.0 * C_BENCH)
#define RES_BYTES (8.0 * N_BENCH * C_BENCH + 2.0 * C_BENCH)
#define FWD_FLOPS (4.0 * N_BENCH * C_BENCH)

// the benchmark's buffers, made on first use
static floatX *bx, *bw, *bout, *bb;
static void bench_setup(void) {
    if (bx) return;
    bx = dev_alloc<floatX>((size_t)N_BENCH * C_BENCH);
    bb = dev_alloc<floatX>((size_t)N_BENCH * C_BENCH);
    bout = dev_alloc<floatX>((size_t)N_BENCH * C_BENCH);
    bw = dev_alloc<floatX>(C_BENCH);
}
static void bench_v1(void) { bench_setup(); rmsnorm_forward_v1(bout, NULL, bx, bw, N_BENCH, C_BENCH, eps_norm); }
static void bench_v2(void) { bench_setup(); rmsnorm_forward_v2(bout, NULL, bx, bw, N_BENCH, C_BENCH, eps_norm); }
static void bench_v4(void) { bench_setup(); rmsnorm_forward(bout, NULL, bx, bw, N_BENCH, C_BENCH, eps_norm, 0); }
static void bench_v3(void) { bench_setup(); rmsnorm_residual_forward(bx, bout, NULL, bb, bw, N_BENCH, C_BENCH, eps_norm); }

#ifdef DEV_EXERCISE   // dev/grade: a student's file (exercise 1 or 2), listed as version "x"
#include DEV_EXERCISE
#if DEV_EXERCISE_NUMBER == 1
static void check_x(void) { check_forward("x (exercise 1)", exercise_rmsnorm_forward, NULL, N_CHECK, C_CHECK); check_forward("x (exercise 1)", exercise_rmsnorm_forward, NULL, 7, 100); }
static void bench_x(void) { bench_setup(); exercise_rmsnorm_forward(bout, NULL, bx, bw, N_BENCH, C_BENCH, eps_norm); }
#define X_BYTES FWD_BYTES
#else
static void check_x(void) { check_forward("x (exercise 2)", NULL, exercise_rmsnorm_residual_forward, N_CHECK, C_CHECK); check_forward("x (exercise 2)", NULL, exercise_rmsnorm_residual_forward, 7, 100); }
static void bench_x(void) { bench_setup(); exercise_rmsnorm_residual_forward(bx, bout, NULL, bb, bw, N_BENCH, C_BENCH, eps_norm); }
#define X_BYTES RES_BYTES
#endif
#endif

static const DevVersion versions[] = {
    {"1", "forward, one thread per row (lanes read 32 rows: 32 sectors per request)", check_v1, bench_v1, FWD_BYTES, FWD_FLOPS},
    {"2", "forward, one warp per row (common/rmsnorm.cuh's fallback: 2 sectors per request)", check_v2, bench_v2, FWD_BYTES, FWD_FLOPS},
    {"3", "forward with the residual add fused (h read once, written once)", check_v3, bench_v3, RES_BYTES, FWD_FLOPS},
    {"4", "forward, one warp per row, 16-byte accesses (common/rmsnorm.cuh: 16 sectors per request, 8x fewer requests)", check_v4, bench_v4, FWD_BYTES, FWD_FLOPS},
    {"b1", "backward, one thread per row and one per column", check_b1, NULL, 0, 0},
    {"b2", "backward, a warp per row, fixed-order column sums (common/rmsnorm.cuh)", check_b2, NULL, 0, 0},
#ifdef DEV_EXERCISE
    {"x", "the exercise file given to dev/grade", check_x, bench_x, X_BYTES, FWD_FLOPS},
#endif
};

int main(int argc, char **argv) { return dev_main("rmsnorm", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
