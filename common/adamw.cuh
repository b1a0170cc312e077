/*
 * adamw.cuh: one torch.optim.AdamW step on the GPU, after gradient clipping.
 * Twin of the per-element loop of s1.c's qwen2_update(); tested, bit for bit,
 * by tests/emu_kernels_backward.cu.
 *
 * The optimizer keeps fp32 master weights and fp32 moments m, v; the bf16
 * weights the forward pass reads are a copy, refreshed from the master after
 * every step (params = bf16(master)).
 *
 * Same rounding as s1.c. The host computes the step's scalars exactly as s1.c
 * does (adamw_scalars(): bias corrections in double, used as float), and the
 * kernel does s1.c's float operations in s1.c's order with one rounding each:
 * __fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn and __fsqrt_rn are never fused
 * into FMAs (nvcc contracts a*b + c by default) nor approximated (not even
 * under -use_fast_math). Given the same fp32 gradients and state, the result
 * is then bit-identical to s1.c's update, provided s1.c too rounds every
 * operation (gcc -ffp-contract=off; tests/s1_ref.c builds the oracle so).
 */
#ifndef S1C_ADAMW_CUH
#define S1C_ADAMW_CUH

#include "common/cuda_common.cuh"
#include "common/detmath.h"

// The scalars of one step for one group of tensors, as s1.c computes them.
typedef struct {
    float shrink;      // 1 - lr * weight_decay (decoupled decay; 1 for tensors that do not decay)
    float beta2;
    float w1, w2;      // 1 - beta1, 1 - beta2
    float eps;
    float step_size;   // lr / (1 - beta1^step)
    float bc2_sqrt;    // sqrt(1 - beta2^step)
} AdamWScalars;

// torch's clip_grad_norm_ factor, as s1.c: max_grad_norm / (norm + 1e-6), at
// most 1; max_grad_norm <= 0: no clipping.
static inline float adamw_clip_factor(float norm, float max_grad_norm) {
    if (max_grad_norm <= 0) return 1.0f;
    float clip = max_grad_norm / (norm + 1e-6f);
    return clip > 1.0f ? 1.0f : clip;
}

// step: the number of this step, counting from 1 (s1.c increments m->step
// first). weight_decay: this tensor group's (s1.c: the configured one for
// weights, and for RMSNorm weights when decay_norm_weights; 0 for the rest).
static inline AdamWScalars adamw_scalars(double lr, size_t step, float beta1, float beta2, float eps, double weight_decay) {
    AdamWScalars s;
    // the scalars as torch computes them: in double, used as float
    double bias_correction1 = 1.0 - det_pow(beta1, (double)step);   // common/detmath.h, as s1.c: libm's pow differs by CPU
    double bias_correction2 = 1.0 - det_pow(beta2, (double)step);
    s.step_size = (float)(lr / bias_correction1);
    s.bc2_sqrt = (float)sqrt(bias_correction2);
    s.w1 = (float)(1.0 - (double)beta1);
    s.w2 = (float)(1.0 - (double)beta2);
    s.shrink = (float)(1.0 - lr * weight_decay);
    s.beta2 = beta2;
    s.eps = eps;
    return s;
}

// One thread per element, grid-stride. Each line is the s1.c line beside it.
__global__ void adamw_kernel(floatX *params, float *master, float *m, float *v, const float *grads, size_t n,
                             float clip, AdamWScalars s) {
    // params (n,) bf16; master m v grads (n,) fp32
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float grad = __fmul_rn(cu_ld(&grads[i]), clip);                             // grad = g * clip
        float p = __fmul_rn(cu_ld(&master[i]), s.shrink);                           // p = p * shrink
        float mi = cu_ld(&m[i]), vi = cu_ld(&v[i]);
        mi = __fadd_rn(mi, __fmul_rn(s.w1, __fsub_rn(grad, mi)));                   // m = m + w1 * (grad - m)
        vi = __fadd_rn(__fmul_rn(vi, s.beta2), __fmul_rn(__fmul_rn(s.w2, grad), grad));  // v = v * beta2 + w2 * grad * grad
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);      // denom = sqrt(v) / bc2_sqrt + eps
        p = __fadd_rn(p, __fmul_rn(-s.step_size, __fdiv_rn(mi, denom)));            // p = p + (-step_size) * (m / denom)
        cu_st(&m[i], mi);
        cu_st(&v[i], vi);
        cu_st(&master[i], p);
        cu_st(&params[i], round_bf16(p));
    }
}

// One AdamW step on n elements: params (n,) bf16 = bf16(master) after the step;
// master m v (n,) fp32 updated in place; grads (n,) fp32 scaled by clip
// (adamw_clip_factor()); s: the tensor group's adamw_scalars().
static void adamw_update(floatX *params, float *master, float *m, float *v, const float *grads, size_t n, float clip,
                         const AdamWScalars *s) {
    CU_LAUNCH(adamw_kernel, grid_for(n, 256), 256, 0, 0)(params, master, m, v, grads, n, clip, *s);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_ADAMW_CUH
