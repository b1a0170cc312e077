/*
 * embedding.cuh: the token embedding on the GPU. Twin of s1.c's
 * embedding_forward(); tested by tests/emu_kernels.cu.
 */
#ifndef S1C_EMBEDDING_CUH
#define S1C_EMBEDDING_CUH

#include "common/cuda_common.cuh"

// Token embedding: out[n] = table[ids[n]]. One thread per element, grid-stride.
__global__ void embedding_forward_kernel(floatX *out, const uint32_t *ids, const floatX *table, int N, int C) {
    // out (N,C), ids (N,), table (V,C)
    size_t total = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / C, c = i % C;
        out[i] = table[(size_t)ids[n] * C + c];
    }
}

static void embedding_forward(floatX *out, const uint32_t *ids, const floatX *table, int N, int C) {
    CU_LAUNCH(embedding_forward_kernel, grid_for((size_t)N * C, 256), 256, 0, 0)(out, ids, table, N, C);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_EMBEDDING_CUH
