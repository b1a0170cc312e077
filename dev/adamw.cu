/*
 * dev/adamw.cu: one AdamW step (torch.optim.AdamW after gradient clipping) on fp32
 * master weights and moments with a bf16 copy of the weights, checked BIT FOR BIT
 * against s1.c's qwen2_update() on a tiny model, over 3 steps.
 *
 *   make dev && dev/run adamw [VERSION]
 *
 *   v1  one kernel per line of the update (the moment m, the moment v, the master
 *       weight, the bf16 copy): each reads its inputs from memory and writes its
 *       output back, so an element's state crosses DRAM 4 times: 4 launches and
 *       46 bytes an element against v2's 30 (the models below).
 *   v2  common/adamw.cuh's adamw_kernel: the four lines fused in one kernel,
 *       each element read once and written once. An optimizer step is purely
 *       memory-bound, so its time is its bytes: fusion is the main optimisation.
 *   v3  common/adamw.cuh's adamw_vec_kernel (what sft train runs): v2 with 8
 *       elements per thread in 16-byte accesses (two float4 of each fp32 array,
 *       one uint4 of bf16 weights): the same bytes in 4x (fp32) and 8x (bf16)
 *       fewer memory instructions; a scalar head brings a tensor's slice, which
 *       starts at any offset of the flat buffers, to its 16-byte boundary.
 * All do s1.c's float operations in s1.c's order with one rounding each
 * (__fmul_rn and friends: nvcc may not contract them into FMAs), hence the same bits.
 */
#include "dev/dev.cuh"
#include "common/adamw.cuh"   // v2 and v3 are the programs' kernels: included, never copied

#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__global__ void adamw_v1_m_kernel(float *m, const float *grads, size_t n, float clip, AdamWScalars s) {
    GRID_STRIDE(i, n) {
        float grad = __fmul_rn(cu_ld(&grads[i]), clip), mi = cu_ld(&m[i]);
        cu_st(&m[i], __fadd_rn(mi, __fmul_rn(s.w1, __fsub_rn(grad, mi))));
    }
}
__global__ void adamw_v1_v_kernel(float *v, const float *grads, size_t n, float clip, AdamWScalars s) {
    GRID_STRIDE(i, n) {
        float grad = __fmul_rn(cu_ld(&grads[i]), clip);
        cu_st(&v[i], __fadd_rn(__fmul_rn(cu_ld(&v[i]), s.beta2), __fmul_rn(__fmul_rn(s.w2, grad), grad)));
    }
}
__global__ void adamw_v1_master_kernel(float *master, const float *m, const float *v, size_t n, AdamWScalars s) {
    GRID_STRIDE(i, n) {
        float p = __fmul_rn(cu_ld(&master[i]), s.shrink);
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(cu_ld(&v[i])), s.bc2_sqrt), s.eps);
        cu_st(&master[i], __fadd_rn(p, __fmul_rn(-s.step_size, __fdiv_rn(cu_ld(&m[i]), denom))));
    }
}
__global__ void adamw_v1_copy_kernel(floatX *params, const float *master, size_t n) {
    GRID_STRIDE(i, n) cu_st(&params[i], round_bf16(cu_ld(&master[i])));
}

static void adamw_update_v1(floatX *params, float *master, float *m, float *v, const float *grads, size_t n, float clip,
                            const AdamWScalars *s) {
    int grid = grid_for(n, 256);
    CU_LAUNCH(adamw_v1_m_kernel, grid, 256, 0, 0)(m, grads, n, clip, *s);
    cudaCheck(cudaGetLastError());
    CU_LAUNCH(adamw_v1_v_kernel, grid, 256, 0, 0)(v, grads, n, clip, *s);
    cudaCheck(cudaGetLastError());
    CU_LAUNCH(adamw_v1_master_kernel, grid, 256, 0, 0)(master, m, v, n, *s);
    cudaCheck(cudaGetLastError());
    CU_LAUNCH(adamw_v1_copy_kernel, grid, 256, 0, 0)(params, master, n);
    cudaCheck(cudaGetLastError());
}

// v2: the programs' one-element-per-thread kernel, launched directly (adamw_update()
// runs it only when the fp32 arrays and the bf16 weights are at different 16-byte phases)
static void adamw_update_v2(floatX *params, float *master, float *m, float *v, const float *grads, size_t n, float clip,
                            const AdamWScalars *s) {
    CU_LAUNCH(adamw_kernel, grid_for(n, 256), 256, 0, 0)(params, master, m, v, grads, n, clip, *s);
    cudaCheck(cudaGetLastError());
}

typedef void (*AdamFn)(floatX *, float *, float *, float *, const float *, size_t, float, const AdamWScalars *);

// tests/emu_kernels_backward.cu's check: a tiny Qwen2, 3 steps with fresh gradients,
// every tensor group with its own decay, the clip factor from s1.c's norm; master
// weights and both moments bit for bit, the bf16 weights = bf16(master).
static void check_adamw(const char *label, AdamFn fn) {
    char name[160];
    snprintf(name, sizeof name, "adamw %s == s1.c qwen2_update bit for bit, 3 steps, weight decay 0.1, clipped", label);
    TEST_BEGIN(name);
    kt_seed(51);
    const float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f, max_grad_norm = 1.0f;
    const double lrs[3] = {1e-3, 7.5e-4, 2e-4};
    void *model = s1ref_tiny_model(37, 12, 20, 2, 2, 1, 6, 0, 77);
    size_t n = s1ref_model_num_parameters(model);
    float *params = s1ref_model_params(model), *grads = s1ref_model_grads(model);
    float *d_master = device_copy(params, n), *d_m = dev_alloc<float>(n), *d_v = dev_alloc<float>(n), *d_g = dev_alloc<float>(n);
    floatX *d_params = to_device(params, n);
    for (int step = 1; step <= 3; step++) {
        for (size_t i = 0; i < n; i++) grads[i] = frand(0.5f) * (1.0f + (float)(i % 7) / 1024.0f);   // not only bf16 values
        cudaCheck(cudaMemcpy(d_g, grads, n * sizeof(float), cudaMemcpyHostToDevice));
        double lr = lrs[step - 1];
        float norm = s1ref_model_update(model, lr, beta1, beta2, eps, weight_decay, max_grad_norm, 0);
        float clip = adamw_clip_factor(norm, max_grad_norm);
        size_t off = 0;
        for (int t = 0; t < s1ref_num_parameter_tensors(); t++) {
            int kind;
            size_t numel = s1ref_model_tensor(model, t, &kind);
            AdamWScalars s = adamw_scalars(lr, (size_t)step, beta1, beta2, eps, kind == 0 ? (double)weight_decay : 0.0);   // weights decay
            if (numel > 0) fn(d_params + off, d_master + off, d_m + off, d_v + off, d_g + off, numel, clip, &s);
            off += numel;
        }
        float *master = host_from(d_master, n), *m = host_from(d_m, n), *v = host_from(d_v, n), *pb = from_device(d_params, n);
        CHECK(memcmp(master, params, n * sizeof(float)) == 0, "step %d: master weights differ from s1.c's", step);
        CHECK(memcmp(m, s1ref_model_adam_m(model), n * sizeof(float)) == 0, "step %d: exp_avg differs", step);
        CHECK(memcmp(v, s1ref_model_adam_v(model), n * sizeof(float)) == 0, "step %d: exp_avg_sq differs", step);
        int same = 1;
        for (size_t i = 0; i < n; i++) same &= pb[i] == __bfloat162float(__float2bfloat16(master[i]));
        CHECK(same, "step %d: bf16 weights != bf16(master)", step);
        free(master); free(m); free(v); free(pb);
    }
    s1ref_model_free(model);
    cudaCheck(cudaFree(d_master)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_params));
    TEST_END();
}

static void check_v1(void) { check_adamw("v1", adamw_update_v1); }
static void check_v2(void) { check_adamw("v2", adamw_update_v2); }
// the programs' launcher on the default stream, in the checker's signature
static void adamw_update_v3(floatX *params, float *master, float *m, float *v, const float *grads, size_t n, float clip,
                            const AdamWScalars *s) {
    adamw_update(params, master, m, v, grads, n, clip, s, 0);
}
static void check_v3(void) { check_adamw("v3", adamw_update_v3); }

#define NB ((size_t)494 << 20)   // the benchmark: 494M parameters, Qwen2.5-0.5B
static floatX *bp;
static float *bmaster, *bm, *bv, *bg;
static AdamWScalars bs;
static void bench_setup(void) {
    if (bp) return;
    bp = dev_alloc<floatX>(NB);
    bmaster = dev_alloc<float>(NB); bm = dev_alloc<float>(NB); bv = dev_alloc<float>(NB); bg = dev_alloc<float>(NB);
    bs = adamw_scalars(1e-5, 1, 0.9f, 0.95f, 1e-8f, 1e-4);
}
static void bench_v1(void) { bench_setup(); adamw_update_v1(bp, bmaster, bm, bv, bg, NB, 1.0f, &bs); }
static void bench_v2(void) { bench_setup(); adamw_update_v2(bp, bmaster, bm, bv, bg, NB, 1.0f, &bs); }
static void bench_v3(void) { bench_setup(); adamw_update(bp, bmaster, bm, bv, bg, NB, 1.0f, &bs, 0); }

// models (bytes an element): v2 reads grad, master, m, v (16) and writes master, m, v, the
// bf16 copy (14): 30. v1 moves 12 (m) + 12 (v) + 16 (master) + 6 (copy) = 46 of them;
// the roofline share below is against the 30 every version must move. ~15 FLOPs an element.
static const DevVersion versions[] = {
    {"1", "one kernel per line of the update (4 launches: each element crosses memory 4 times)", check_v1, bench_v1, 30.0 * NB, 15.0 * NB},
    {"2", "the update fused in one kernel (common/adamw.cuh's fallback)", check_v2, bench_v2, 30.0 * NB, 15.0 * NB},
    {"3", "fused, 8 elements per thread in 16-byte accesses (common/adamw.cuh)", check_v3, bench_v3, 30.0 * NB, 15.0 * NB},
};

int main(int argc, char **argv) { return dev_main("adamw", versions, (int)(sizeof versions / sizeof versions[0]), argc, argv); }
