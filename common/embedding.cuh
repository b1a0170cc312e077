/*
 * embedding.cuh: the token embedding on the GPU. Twins of s1.c's
 * embedding_forward() and embedding_backward(); tested by tests/emu_kernels.cu
 * and tests/emu_kernels_backward.cu.
 */
#ifndef S1C_EMBEDDING_CUH
#define S1C_EMBEDDING_CUH

#include "common/cuda_common.cuh"

// Token embedding: out[n] = table[ids[n]]. One thread per element, grid-stride.
__global__ void __launch_bounds__(256) embedding_forward_kernel(floatX *out, const uint32_t *ids, const floatX *table, int N, int C) {
    // out (N,C), ids (N,), table (V,C)
    size_t total = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / C, c = i % C;
        out[i] = table[(size_t)ids[n] * C + c];
    }
}

static void embedding_forward(floatX *out, const uint32_t *ids, const floatX *table, int N, int C, cudaStream_t stream) {
    CU_LAUNCH(embedding_forward_kernel, grid_for((size_t)N * C, 256), 256, 0, stream)(out, ids, table, N, C);
    cudaCheck(cudaGetLastError());
}

// Backward, twin of s1.c's embedding_backward(): dtable[ids[n]] += dout[n] for
// every position n. Positions with the same id add into the same row, so
// instead of atomics (whose order, hence rounding, varies run to run) the host,
// which knows the ids, groups the positions by id (sorted by (id, position)),
// and one block owns each distinct id: its threads take the columns and add the
// id's rows of dout in increasing position order. That is exactly s1.c's order
// (a serial loop over n), so the result is bit-identical to it and to itself.
//
// The grouping travels in an int scratch buffer on the device, laid out as
//   unique (U,)      the distinct ids, ascending
//   starts (U+1,)    id k's positions are positions[starts[k] .. starts[k+1])
//   positions (N,)   the token positions, grouped by id, increasing within a group
// U <= N, so embedding_backward_scratch_ints(N) = 3N + 1 ints always suffice.
static inline size_t embedding_backward_scratch_ints(int N) { return 3 * (size_t)N + 1; }

__global__ void __launch_bounds__(256) embedding_backward_kernel(float *dtable, const float *dout, const int *scratch, int U, int C) {
    // dtable (V,C) fp32, dout (N,C) fp32, scratch as above
    const int *unique = scratch, *starts = scratch + U, *positions = scratch + 2 * U + 1;
    for (int k = blockIdx.x; k < U; k += gridDim.x) {
        float *row = dtable + (size_t)(uint32_t)unique[k] * C;   // ids are stored as their bits
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float acc = cu_ld(&row[c]);   // cu_ld/cu_st: the emulator's profile counts them (dev/embedding_backward.cu v2)
            for (int j = starts[k]; j < starts[k + 1]; j++) acc += cu_ld(&dout[(size_t)positions[j] * C + c]);
            cu_st(&row[c], acc);
        }
    }
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// dtable (V,C) fp32 += the rows of dout (N,C) fp32 at ids_host (N,) (HOST memory).
// scratch: embedding_backward_scratch_ints(N) ints of device memory.
static void embedding_backward(float *dtable, const float *dout, const uint32_t *ids_host, int N, int C, int *scratch, cudaStream_t stream) {
    if (N == 0) return;
    // sort (id, position) pairs: one 64-bit key each, so positions stay in increasing order within an id
    uint64_t *keys = (uint64_t *)mallocCheck((size_t)N * sizeof(uint64_t));
    for (int n = 0; n < N; n++) keys[n] = (uint64_t)ids_host[n] << 32 | (uint32_t)n;
    qsort(keys, (size_t)N, sizeof(uint64_t), compare_u64);
    int *host = (int *)mallocCheck(embedding_backward_scratch_ints(N) * sizeof(int));
    int U = 0;
    for (int n = 0; n < N; n++) {
        uint32_t id = (uint32_t)(keys[n] >> 32);
        if (n == 0 || id != (uint32_t)(keys[n - 1] >> 32)) host[U++] = (int)id;   // a new group starts at n
    }
    int *starts = host + U, *positions = host + 2 * U + 1;
    for (int n = 0, k = 0; n < N; n++) {
        if (n == 0 || (keys[n] >> 32) != (keys[n - 1] >> 32)) starts[k++] = n;
        positions[n] = (int)(uint32_t)keys[n];
    }
    starts[U] = N;
    copy_to_device(scratch, host, (2 * (size_t)U + 1 + N) * sizeof(int), stream);   // after the stream's earlier uses of scratch
    free(keys);
    free(host);
    CU_LAUNCH(embedding_backward_kernel, grid_for((size_t)U, 1), 256, 0, stream)(dtable, dout, scratch, U, C);
    cudaCheck(cudaGetLastError());
}

#endif // S1C_EMBEDDING_CUH
