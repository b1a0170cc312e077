/*
 * rope.cuh: rotary position embedding (rotate-half, as HF Qwen2) on the GPU.
 * Twins of s1.c's rope_forward() and rope_backward() (both s1.c's
 * rope_rotate()); tested by tests/emu_kernels.cu and tests/emu_kernels_backward.cu.
 */
#ifndef S1C_ROPE_CUH
#define S1C_ROPE_CUH

#include "common/cuda_common.cuh"

// Rotary embedding, rotate-half (NeoX) convention as HF Qwen2, in place. The
// angles pos * theta^(-2i/HD), cos and sin are fp32 (as HF, and as s1.c's
// tables); cos and sin are cast to bf16 (HF's cast point); the rotation sums in
// fp32 and rounds once. One thread per rotated pair, grid-stride.
// direction +1 rotates by +angle (the forward pass), -1 by -angle (the backward
// pass: the rotation is orthogonal, so the gradient goes back through its
// transpose), as s1.c's rope_rotate(): sin is negated after its bf16 cast, an
// exact operation, so both directions see the same cos and sin values.
__global__ void __launch_bounds__(256) rope_forward_kernel(floatX *x, const int *pos, int N, int NH, int HD, float theta, float direction) {
    // x (N,NH,HD), pos (N,); x'[i] = x[i] cos - x[i+HD/2] sin, x'[i+HD/2] = x[i+HD/2] cos + x[i] sin
    int half = HD / 2;
    size_t total = (size_t)N * NH * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t row = idx / half;   // (n, head)
        int n = (int)(row / NH);
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
        float angle = (float)pos[n] * inv_freq;
        float c = __bfloat162float(round_bf16(cosf(angle)));
        float s = direction * __bfloat162float(round_bf16(sinf(angle)));
        floatX *v = x + row * HD;
        // cu_ld/cu_st: counted by the emulator's profile (dev/rope.cu v2)
        float a = __bfloat162float(cu_ld(&v[i])), b = __bfloat162float(cu_ld(&v[i + half]));
        cu_st(&v[i], round_bf16(a * c - b * s));
        cu_st(&v[i + half], round_bf16(b * c + a * s));
    }
}

static void rope_rotate(floatX *x, const int *pos, int N, int NH, int HD, float theta, float direction, cudaStream_t stream) {
    CU_LAUNCH(rope_forward_kernel, grid_for((size_t)N * NH * (HD / 2), 256), 256, 0, stream)(x, pos, N, NH, HD, theta, direction);
    cudaCheck(cudaGetLastError());
}

// x (N,NH,HD) bf16 rotated in place at positions pos (N,)
static void rope_forward(floatX *x, const int *pos, int N, int NH, int HD, float theta, cudaStream_t stream) {
    rope_rotate(x, pos, N, NH, HD, theta, 1.0f, stream);
}

// Backward, twin of s1.c's rope_backward(): dx (N,NH,HD) bf16 rotated back in
// place, by -angle. The kernel above with direction -1, one rounding per element.
static void rope_backward(floatX *dx, const int *pos, int N, int NH, int HD, float theta, cudaStream_t stream) {
    rope_rotate(dx, pos, N, NH, HD, theta, -1.0f, stream);
}

#endif // S1C_ROPE_CUH
