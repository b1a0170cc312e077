/*
 * adamw.cuh: one torch.optim.AdamW step on the GPU, after gradient clipping.
 * Twin of the per-element loop of s1.c's qwen2_update(); tested, bit for bit,
 * by tests/emu_kernels_backward.cu and dev/adamw.cu (its versions).
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

// One element of the step. Each line is the s1.c line beside it. g: the raw
// fp32 gradient; p, mi, vi: master weight and moments, updated in place.
__device__ __forceinline__ void adamw_element(float g, float *p, float *mi, float *vi, float clip, const AdamWScalars &s) {
    float grad = __fmul_rn(g, clip);                                                  // grad = g * clip
    float w = __fmul_rn(*p, s.shrink);                                                // p = p * shrink
    *mi = __fadd_rn(*mi, __fmul_rn(s.w1, __fsub_rn(grad, *mi)));                      // m = m + w1 * (grad - m)
    *vi = __fadd_rn(__fmul_rn(*vi, s.beta2), __fmul_rn(__fmul_rn(s.w2, grad), grad));  // v = v * beta2 + w2 * grad * grad
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(*vi), s.bc2_sqrt), s.eps);           // denom = sqrt(v) / bc2_sqrt + eps
    *p = __fadd_rn(w, __fmul_rn(-s.step_size, __fdiv_rn(*mi, denom)));                // p = p + (-step_size) * (m / denom)
}

// Element i read from memory, stepped, written back: one element per access.
__device__ __forceinline__ void adamw_scalar(size_t i, floatX *params, float *master, float *m, float *v, const float *grads,
                                             float clip, const AdamWScalars &s) {
    float p = cu_ld(&master[i]), mi = cu_ld(&m[i]), vi = cu_ld(&v[i]);
    adamw_element(cu_ld(&grads[i]), &p, &mi, &vi, clip, s);
    cu_st(&m[i], mi);
    cu_st(&v[i], vi);
    cu_st(&master[i], p);
    cu_st(&params[i], round_bf16(p));
}

// One thread per element, grid-stride (dev/adamw.cu v2); the fallback for
// pointers whose 16-byte phases differ.
__global__ void __launch_bounds__(256) adamw_kernel(floatX *params, float *master, float *m, float *v, const float *grads,
                                                    size_t n, float clip, AdamWScalars s) {
    // params (n,) bf16; master m v grads (n,) fp32
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        adamw_scalar(i, params, master, m, v, grads, clip, s);
}

// 8 elements per thread and step (dev/adamw.cu v3, what sft train runs): two
// float4 loads of each of grads, master, m, v; two float4 stores of each of
// master, m, v; one uint4 store of the 8 bf16 weights. params + head and the
// fp32 arrays + head are 16-byte aligned (adamw_update() checks); block 0 does
// the scalar head and tail. The same adamw_element() as adamw_kernel: the same bits.
__global__ void __launch_bounds__(256) adamw_vec_kernel(floatX *params, float *master, float *m, float *v, const float *grads,
                                                        int n, int head, float clip, AdamWScalars s) {
    // params (n,) bf16; master m v grads (n,) fp32
    int nvec = (n - head) / VEC, stride = (int)(gridDim.x * blockDim.x);
    for (int t = (int)(blockIdx.x * blockDim.x + threadIdx.x); t < nvec; t += stride) {
        int i = head + t * VEC;
        float p[VEC], g[VEC], mi[VEC], vi[VEC];
#pragma unroll
        for (int h = 0; h < VEC; h += 4) {   // the two float4 halves of the 8 elements
            float4 g4 = cu_ld((const float4 *)(grads + i + h)), p4 = cu_ld((const float4 *)(master + i + h));
            float4 m4 = cu_ld((const float4 *)(m + i + h)), v4 = cu_ld((const float4 *)(v + i + h));
            g[h] = g4.x; g[h + 1] = g4.y; g[h + 2] = g4.z; g[h + 3] = g4.w;
            p[h] = p4.x; p[h + 1] = p4.y; p[h + 2] = p4.z; p[h + 3] = p4.w;
            mi[h] = m4.x; mi[h + 1] = m4.y; mi[h + 2] = m4.z; mi[h + 3] = m4.w;
            vi[h] = v4.x; vi[h + 1] = v4.y; vi[h + 2] = v4.z; vi[h + 3] = v4.w;
        }
#pragma unroll
        for (int k = 0; k < VEC; k++) adamw_element(g[k], &p[k], &mi[k], &vi[k], clip, s);
#pragma unroll
        for (int h = 0; h < VEC; h += 4) {
            cu_st((float4 *)(m + i + h), make_float4(mi[h], mi[h + 1], mi[h + 2], mi[h + 3]));
            cu_st((float4 *)(v + i + h), make_float4(vi[h], vi[h + 1], vi[h + 2], vi[h + 3]));
            cu_st((float4 *)(master + i + h), make_float4(p[h], p[h + 1], p[h + 2], p[h + 3]));
        }
        cu_st((uint4 *)(params + i), bf16x8_pack(p));
    }
    int i = vec_rest_element(n, head);
    if (i >= 0) adamw_scalar((size_t)i, params, master, m, v, grads, clip, s);
}

// One AdamW step on n elements: params (n,) bf16 = bf16(master) after the step;
// master m v (n,) fp32 updated in place; grads (n,) fp32 scaled by clip
// (adamw_clip_factor()); s: the tensor group's adamw_scalars().
// The callers pass a tensor's slice of flat buffers (base + offset, any offset):
// the head of up to 7 elements brings params to a 16-byte boundary, which is
// where the fp32 arrays reach theirs too when the bases are 16-byte aligned
// (cudaMalloc gives 256); otherwise the step runs one element per thread.
static void adamw_update(floatX *params, float *master, float *m, float *v, const float *grads, size_t n, float clip,
                         const AdamWScalars *s, cudaStream_t stream) {
    int n32 = int_size(n, "adamw_update");
    int head = vec_head(params, sizeof(floatX), n32);
    if (is_aligned16(master + head) && is_aligned16(m + head) && is_aligned16(v + head) && is_aligned16(grads + head))
        CU_LAUNCH(adamw_vec_kernel, grid_for((size_t)(n32 - head) / VEC, 256), 256, 0, stream)(params, master, m, v, grads, n32,
                                                                                          head, clip, *s);
    else
        CU_LAUNCH(adamw_kernel, grid_for(n, 256), 256, 0, stream)(params, master, m, v, grads, n, clip, *s);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_ADAMW_CUH
