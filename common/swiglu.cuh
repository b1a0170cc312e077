/*
 * swiglu.cuh: the MLP's SwiGLU activation on the GPU. Twins of s1.c's
 * swiglu_forward() and swiglu_backward(); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu, versions in dev/swiglu.cu.
 *
 * Element-wise, so memory-bound: the programs run the 16-byte vector kernels
 * (*_vec_kernel: 8 bf16 per load, cuda_common.cuh's VEC layout with a scalar
 * head and tail); the one-element-per-thread kernels are the fallback for
 * pointers at different 16-byte phases, and version 2 / b1 of the workbench.
 * Both paths compute each element with the same function, so they give the same bits.
 */
#ifndef S1C_SWIGLU_CUH
#define S1C_SWIGLU_CUH

#include "common/cuda_common.cuh"

// SwiGLU: out = silu(gate) * up, silu(z) = z * sigmoid(z), fp32 math, one rounding (by the caller).
__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// One thread per element, grid-stride (dev/swiglu.cu v2).
__global__ void __launch_bounds__(256) swiglu_forward_kernel(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    // out may alias gate: each element is read before it is written, by the same thread
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = __bfloat162float(cu_ld(&gate[i]));   // cu_ld/cu_st: counted by the emulator's profile (dev/swiglu.cu v2)
        cu_st(&out[i], round_bf16(swiglu_value(g, __bfloat162float(cu_ld(&up[i])))));
    }
}

// 8 elements per thread and step: one 16-byte load of gate and of up, one
// 16-byte store (dev/swiglu.cu v3). out + head, gate + head, up + head are
// 16-byte aligned (swiglu_forward() checks); block 0 does the scalar head and tail.
__global__ void __launch_bounds__(256) swiglu_forward_vec_kernel(floatX *out, const floatX *gate, const floatX *up, int n,
                                                                 int head) {
    // out gate up (n,); out may alias gate (a thread reads its 8 elements before writing them)
    int nvec = (n - head) / VEC, stride = (int)(gridDim.x * blockDim.x);
    for (int v = (int)(blockIdx.x * blockDim.x + threadIdx.x); v < nvec; v += stride) {
        int i = head + v * VEC;
        float g[VEC], u[VEC], o[VEC];
        bf16x8_unpack(cu_ld((const uint4 *)(gate + i)), g);
        bf16x8_unpack(cu_ld((const uint4 *)(up + i)), u);
#pragma unroll
        for (int k = 0; k < VEC; k++) o[k] = swiglu_value(g[k], u[k]);
        cu_st((uint4 *)(out + i), bf16x8_pack(o));
    }
    int i = vec_rest_element(n, head);
    if (i >= 0) cu_st(&out[i], round_bf16(swiglu_value(__bfloat162float(cu_ld(&gate[i])), __bfloat162float(cu_ld(&up[i])))));
}

static void swiglu_forward(floatX *out, const floatX *gate, const floatX *up, size_t n, cudaStream_t stream) {
    int n32 = int_size(n, "swiglu_forward");
    int head = vec_head(out, sizeof(floatX), n32);
    if (is_aligned16(gate + head) && is_aligned16(up + head))
        CU_LAUNCH(swiglu_forward_vec_kernel, grid_for((size_t)(n32 - head) / VEC, 256), 256, 0, stream)(out, gate, up, n32, head);
    else   // no element where all three reach a 16-byte boundary together
        CU_LAUNCH(swiglu_forward_kernel, grid_for(n, 256), 256, 0, stream)(out, gate, up, n);
    cudaCheck(cudaGetLastError());
}

// Backward, twin of s1.c's swiglu_backward(), with sig = sigmoid(gate):
//   dgate = dout * up * sig * (1 + gate * (1 - sig))   (d silu(z)/dz = sig (1 + z (1 - sig)))
//   dup   = dout * gate * sig
// fp32 math, each output rounded to bf16 once. The outputs are WRITTEN, not
// accumulated: they are activation gradients that feed the gate/up GEMMs.
// dgate may alias dout (the model reuses the buffer): each element is read
// before it is written, by the same thread.
__device__ __forceinline__ void swiglu_backward_value(float d, float g, float u, float *dg, float *du) {
    float sig = 1.0f / (1.0f + expf(-g));
    *dg = d * u * sig * (1.0f + g * (1.0f - sig));
    *du = d * g * sig;
}

// Element i read from memory, differentiated, written back: one element per access.
__device__ __forceinline__ void swiglu_backward_scalar(size_t i, floatX *dgate, floatX *dup, const floatX *dout,
                                                       const floatX *gate, const floatX *up) {
    float dg, du;
    swiglu_backward_value(__bfloat162float(cu_ld(&dout[i])), __bfloat162float(cu_ld(&gate[i])),
                          __bfloat162float(cu_ld(&up[i])), &dg, &du);
    cu_st(&dgate[i], round_bf16(dg));
    cu_st(&dup[i], round_bf16(du));
}

// One thread per element, grid-stride (dev/swiglu.cu b1).
__global__ void __launch_bounds__(256) swiglu_backward_kernel(floatX *dgate, floatX *dup, const floatX *dout,
                                                              const floatX *gate, const floatX *up, size_t n) {
    // dgate dup dout gate up (n,)
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        swiglu_backward_scalar(i, dgate, dup, dout, gate, up);
}

// 8 elements per thread and step: three 16-byte loads, two 16-byte stores
// (dev/swiglu.cu b2); the alignment and the scalar rest as in the forward kernel.
__global__ void __launch_bounds__(256) swiglu_backward_vec_kernel(floatX *dgate, floatX *dup, const floatX *dout,
                                                                  const floatX *gate, const floatX *up, int n, int head) {
    // dgate dup dout gate up (n,)
    int nvec = (n - head) / VEC, stride = (int)(gridDim.x * blockDim.x);
    for (int v = (int)(blockIdx.x * blockDim.x + threadIdx.x); v < nvec; v += stride) {
        int i = head + v * VEC;
        float d[VEC], g[VEC], u[VEC], dg[VEC], du[VEC];
        bf16x8_unpack(cu_ld((const uint4 *)(dout + i)), d);
        bf16x8_unpack(cu_ld((const uint4 *)(gate + i)), g);
        bf16x8_unpack(cu_ld((const uint4 *)(up + i)), u);
#pragma unroll
        for (int k = 0; k < VEC; k++) swiglu_backward_value(d[k], g[k], u[k], &dg[k], &du[k]);
        cu_st((uint4 *)(dgate + i), bf16x8_pack(dg));
        cu_st((uint4 *)(dup + i), bf16x8_pack(du));
    }
    int i = vec_rest_element(n, head);
    if (i >= 0) swiglu_backward_scalar((size_t)i, dgate, dup, dout, gate, up);
}

static void swiglu_backward(floatX *dgate, floatX *dup, const floatX *dout, const floatX *gate, const floatX *up, size_t n, cudaStream_t stream) {
    int n32 = int_size(n, "swiglu_backward");
    int head = vec_head(dgate, sizeof(floatX), n32);
    if (is_aligned16(dup + head) && is_aligned16(dout + head) && is_aligned16(gate + head) && is_aligned16(up + head))
        CU_LAUNCH(swiglu_backward_vec_kernel, grid_for((size_t)(n32 - head) / VEC, 256), 256, 0, stream)(dgate, dup, dout, gate, up,
                                                                                                    n32, head);
    else
        CU_LAUNCH(swiglu_backward_kernel, grid_for(n, 256), 256, 0, stream)(dgate, dup, dout, gate, up, n);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_SWIGLU_CUH
