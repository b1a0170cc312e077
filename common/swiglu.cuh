/*
 * swiglu.cuh: the MLP's SwiGLU activation on the GPU. Twins of s1.c's
 * swiglu_forward() and swiglu_backward(); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu.
 */
#ifndef S1C_SWIGLU_CUH
#define S1C_SWIGLU_CUH

#include "common/cuda_common.cuh"


// SwiGLU: out = silu(gate) * up, silu(z) = z * sigmoid(z), fp32 math, one rounding.
__global__ void swiglu_forward_kernel(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    // out may alias gate: each element is read before it is written, by the same thread
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = __bfloat162float(cu_ld(&gate[i]));   // cu_ld/cu_st: counted by the emulator's profile (dev/swiglu.cu v2)
        cu_st(&out[i], round_bf16(g / (1.0f + expf(-g)) * __bfloat162float(cu_ld(&up[i]))));
    }
}

static void swiglu_forward(floatX *out, const floatX *gate, const floatX *up, size_t n) {
    CU_LAUNCH(swiglu_forward_kernel, grid_for(n, 256), 256, 0, 0)(out, gate, up, n);
    cudaCheck(cudaGetLastError());
}

// Backward, twin of s1.c's swiglu_backward(), with sig = sigmoid(gate):
//   dgate = dout * up * sig * (1 + gate * (1 - sig))   (d silu(z)/dz = sig (1 + z (1 - sig)))
//   dup   = dout * gate * sig
// fp32 math, each output rounded to bf16 once. The outputs are WRITTEN, not
// accumulated: they are activation gradients that feed the gate/up GEMMs.
// dgate may alias dout (the model reuses the buffer): each element is read
// before it is written, by the same thread. One thread per element, grid-stride.
__global__ void swiglu_backward_kernel(floatX *dgate, floatX *dup, const floatX *dout, const floatX *gate,
                                       const floatX *up, size_t n) {
    // dgate dup dout gate up (n,)
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float d = __bfloat162float(cu_ld(&dout[i])), g = __bfloat162float(cu_ld(&gate[i])), u = __bfloat162float(cu_ld(&up[i]));
        float sig = 1.0f / (1.0f + expf(-g));
        cu_st(&dgate[i], round_bf16(d * u * sig * (1.0f + g * (1.0f - sig))));
        cu_st(&dup[i], round_bf16(d * g * sig));
    }
}

static void swiglu_backward(floatX *dgate, floatX *dup, const floatX *dout, const floatX *gate, const floatX *up, size_t n) {
    CU_LAUNCH(swiglu_backward_kernel, grid_for(n, 256), 256, 0, 0)(dgate, dup, dout, gate, up, n);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_SWIGLU_CUH
