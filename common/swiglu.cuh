/*
 * swiglu.cuh: the MLP's SwiGLU activation on the GPU. Twin of s1.c's
 * swiglu_forward(); tested by tests/emu_kernels.cu.
 */
#ifndef S1C_SWIGLU_CUH
#define S1C_SWIGLU_CUH

#include "common/cuda_common.cuh"


// SwiGLU: out = silu(gate) * up, silu(z) = z * sigmoid(z), fp32 math, one rounding.
__global__ void swiglu_forward_kernel(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    // out may alias gate: each element is read before it is written, by the same thread
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = __bfloat162float(gate[i]);
        out[i] = round_bf16(g / (1.0f + expf(-g)) * __bfloat162float(up[i]));
    }
}

static void swiglu_forward(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    CU_LAUNCH(swiglu_forward_kernel, grid_for(n, 256), 256, 0, 0)(out, gate, up, n);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_SWIGLU_CUH
