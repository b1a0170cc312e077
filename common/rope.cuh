/*
 * rope.cuh: rotary position embedding (rotate-half, as HF Qwen2) on the GPU.
 * Twin of s1.c's rope_forward(); tested by tests/emu_kernels.cu.
 */
#ifndef S1C_ROPE_CUH
#define S1C_ROPE_CUH

#include "common/cuda_common.cuh"

}

// Rotary embedding, rotate-half (NeoX) convention as HF Qwen2, in place. The
// angles pos * theta^(-2i/HD), cos and sin are fp32 (as HF, and as s1.c's
// tables); cos and sin are cast to bf16 (HF's cast point); the rotation sums in
// fp32 and rounds once. One thread per rotated pair, grid-stride.
__global__ void rope_forward_kernel(floatX *x, const int *pos, int N, int NH, int HD, float theta) {
    // x (N,NH,HD), pos (N,); x'[i] = x[i] cos - x[i+HD/2] sin, x'[i+HD/2] = x[i+HD/2] cos + x[i] sin
    int half = HD / 2;
    size_t total = (size_t)N * NH * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t row = idx / half;   // (n, head)
        int n = (int)(row / NH);
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
        float angle = (float)pos[n] * inv_freq;
        float c = __bfloat162float(round_bf16(cosf(angle))), s = __bfloat162float(round_bf16(sinf(angle)));
        floatX *v = x + row * HD;
        float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
        v[i] = round_bf16(a * c - b * s);
        v[i + half] = round_bf16(b * c + a * s);
    }
}

static void rope_forward(floatX *x, const int *pos, int N, int NH, int HD, float theta) {
    CU_LAUNCH(rope_forward_kernel, grid_for((size_t)N * NH * (HD / 2), 256), 256, 0, 0)(x, pos, N, NH, HD, theta);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_ROPE_CUH
