/*
 * swiglu.cuh: the MLP's SwiGLU activation on the GPU. Twins of s1.c's
 * swiglu_forward() and swiglu_backward(); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu, versions in dev/swiglu.cu.
 *
 * The layer computes gate and up in one fused GEMM against [Wgate;Wup]: row n
 * of gateup (N,2I) is gate (I,) then up (I,). The kernels read the two halves
 * of each row; the backward pass writes dgate and dup the same way, into one
 * (N,2I) gradient that feeds one fused GEMM back.
 *
 * Element-wise, so memory-bound: the programs run the 16-byte vector kernels
 * (*_vec_kernel: 8 bf16 per load) when I is a multiple of 8 (every Qwen2.5
 * size: 4864 ... 27648) and the buffers are 16-byte aligned, so that no vector
 * straddles a half row; the one-element-per-thread kernels are the fallback,
 * and version 2 / b1 of the workbench. Both paths compute each element with
 * the same function, so they give the same bits. 32-bit indices: the
 * launchers stop N * 2I >= 2^31.
 */
#ifndef S1C_SWIGLU_CUH
#define S1C_SWIGLU_CUH

#include "common/cuda_common.cuh"

// SwiGLU: out = silu(gate) * up, silu(z) = z * sigmoid(z), fp32 math, one rounding (by the caller).
__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// Element e = n I + j of an (N,I) matrix has its gate at e + n I of the fused
// (N,2I) rows (n 2I + j) and its up I further.
__device__ __forceinline__ int swiglu_gate_index(int e, int I) { return e + e / I * I; }

// One thread per element, grid-stride (dev/swiglu.cu v2).
__global__ void __launch_bounds__(256) swiglu_forward_kernel(floatX *out, const floatX *gateup, int N, int I) {
    // out (N,I), gateup (N,2I)
    for (int e = (int)(blockIdx.x * blockDim.x + threadIdx.x); e < N * I; e += (int)(gridDim.x * blockDim.x)) {
        int g = swiglu_gate_index(e, I);
        // cu_ld/cu_st: counted by the emulator's profile (dev/swiglu.cu v2)
        cu_st(&out[e], round_bf16(swiglu_value(__bfloat162float(cu_ld(&gateup[g])), __bfloat162float(cu_ld(&gateup[g + I])))));
    }
}

// 8 elements per thread and step: one 16-byte load of gate and of up, one
// 16-byte store (dev/swiglu.cu v3). I a multiple of 8, out and gateup 16-byte
// aligned (swiglu_forward() checks): every vector lies inside one half row.
__global__ void __launch_bounds__(256) swiglu_forward_vec_kernel(floatX *out, const floatX *gateup, int N, int I) {
    // out (N,I), gateup (N,2I)
    for (int e = (int)(blockIdx.x * blockDim.x + threadIdx.x) * VEC; e < N * I; e += (int)(gridDim.x * blockDim.x) * VEC) {
        int gi = swiglu_gate_index(e, I);
        float g[VEC], u[VEC], o[VEC];
        bf16x8_unpack(cu_ld((const uint4 *)(gateup + gi)), g);
        bf16x8_unpack(cu_ld((const uint4 *)(gateup + gi + I)), u);
#pragma unroll
        for (int k = 0; k < VEC; k++) o[k] = swiglu_value(g[k], u[k]);
        cu_st((uint4 *)(out + e), bf16x8_pack(o));
    }
}

// out (N,I) = silu(gate) * up of the fused rows gateup (N,2I)
static void swiglu_forward(floatX *out, const floatX *gateup, int N, int I, cudaStream_t stream) {
    size_t n = (size_t)int_size((size_t)N * 2 * (size_t)I, "swiglu_forward") / 2;
    if (I % VEC == 0 && is_aligned16(out) && is_aligned16(gateup))
        CU_LAUNCH(swiglu_forward_vec_kernel, grid_for(n / VEC, 256), 256, 0, stream)(out, gateup, N, I);
    else
        CU_LAUNCH(swiglu_forward_kernel, grid_for(n, 256), 256, 0, stream)(out, gateup, N, I);
    cudaCheck(cudaGetLastError());
}

// Backward, twin of s1.c's swiglu_backward(), with sig = sigmoid(gate):
//   dgate = dout * up * sig * (1 + gate * (1 - sig))   (d silu(z)/dz = sig (1 + z (1 - sig)))
//   dup   = dout * gate * sig
// fp32 math, each output rounded to bf16 once. The outputs are WRITTEN, not
// accumulated: they are activation gradients that feed the gate|up GEMM.
// dgateup may alias gateup (the model overwrites the layer's activations with
// their gradients): each element is read before it is written, by the same thread.
__device__ __forceinline__ void swiglu_backward_value(float d, float g, float u, float *dg, float *du) {
    float sig = 1.0f / (1.0f + expf(-g));
    *dg = d * u * sig * (1.0f + g * (1.0f - sig));
    *du = d * g * sig;
}

// One thread per element, grid-stride (dev/swiglu.cu b1).
__global__ void __launch_bounds__(256) swiglu_backward_kernel(floatX *dgateup, const floatX *dout, const floatX *gateup,
                                                              int N, int I) {
    // dgateup gateup (N,2I), dout (N,I)
    for (int e = (int)(blockIdx.x * blockDim.x + threadIdx.x); e < N * I; e += (int)(gridDim.x * blockDim.x)) {
        int g = swiglu_gate_index(e, I);
        float dg, du;
        swiglu_backward_value(__bfloat162float(cu_ld(&dout[e])), __bfloat162float(cu_ld(&gateup[g])),
                              __bfloat162float(cu_ld(&gateup[g + I])), &dg, &du);
        cu_st(&dgateup[g], round_bf16(dg));
        cu_st(&dgateup[g + I], round_bf16(du));
    }
}

// 8 elements per thread and step: three 16-byte loads, two 16-byte stores
// (dev/swiglu.cu b2); the alignment as in the forward kernel.
__global__ void __launch_bounds__(256) swiglu_backward_vec_kernel(floatX *dgateup, const floatX *dout, const floatX *gateup,
                                                                  int N, int I) {
    // dgateup gateup (N,2I), dout (N,I)
    for (int e = (int)(blockIdx.x * blockDim.x + threadIdx.x) * VEC; e < N * I; e += (int)(gridDim.x * blockDim.x) * VEC) {
        int gi = swiglu_gate_index(e, I);
        float d[VEC], g[VEC], u[VEC], dg[VEC], du[VEC];
        bf16x8_unpack(cu_ld((const uint4 *)(dout + e)), d);
        bf16x8_unpack(cu_ld((const uint4 *)(gateup + gi)), g);
        bf16x8_unpack(cu_ld((const uint4 *)(gateup + gi + I)), u);
#pragma unroll
        for (int k = 0; k < VEC; k++) swiglu_backward_value(d[k], g[k], u[k], &dg[k], &du[k]);
        cu_st((uint4 *)(dgateup + gi), bf16x8_pack(dg));
        cu_st((uint4 *)(dgateup + gi + I), bf16x8_pack(du));
    }
}

// dgateup (N,2I) = [dgate | dup] of dout (N,I) and the fused rows gateup (N,2I)
static void swiglu_backward(floatX *dgateup, const floatX *dout, const floatX *gateup, int N, int I, cudaStream_t stream) {
    size_t n = (size_t)int_size((size_t)N * 2 * (size_t)I, "swiglu_backward") / 2;
    if (I % VEC == 0 && is_aligned16(dgateup) && is_aligned16(dout) && is_aligned16(gateup))
        CU_LAUNCH(swiglu_backward_vec_kernel, grid_for(n / VEC, 256), 256, 0, stream)(dgateup, dout, gateup, N, I);
    else
        CU_LAUNCH(swiglu_backward_kernel, grid_for(n, 256), 256, 0, stream)(dgateup, dout, gateup, N, I);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_SWIGLU_CUH
