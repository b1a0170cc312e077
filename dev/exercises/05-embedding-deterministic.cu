/*
 * dev/exercises/05-embedding-deterministic.cu: the stub of exercise 5 (sheet:
 * 05-embedding-deterministic.md). Copy it, write it, grade your copy:
 *
 *   dev/grade 5 my-embedding.cu
 *
 * #included by dev/embedding_backward.cu. As given it compiles, adds nothing, and fails.
 */

// dtable (V,C) fp32 += dout[n] (N,C) fp32 at row ids_host[n] (the ids are in HOST
// memory: you may sort or group them on the host), adding the positions of one id
// in increasing n, as s1.c does: the same bits in every schedule, no atomics.
// scratch: 3N+1 ints of device memory you may use.
__global__ void exercise_embedding_backward_kernel(float *dtable, const float *dout, const int *scratch, int U, int C) {
    // TODO
    (void)dtable; (void)dout; (void)scratch; (void)U; (void)C;
}

static void exercise_embedding_backward(float *dtable, const float *dout, const uint32_t *ids_host, int N, int C, int *scratch) {
    (void)ids_host;
    // TODO: group the positions by id on the host, copy the grouping into scratch
    CU_LAUNCH(exercise_embedding_backward_kernel, 1, 256, 0, 0)(dtable, dout, scratch, N, C);
    cudaCheck(cudaGetLastError());
}
