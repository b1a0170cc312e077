/*
 * dev/exercises/01-rmsnorm-coalesced.cu: the stub of exercise 1 (sheet:
 * 01-rmsnorm-coalesced.md). Copy it, fill in the kernel, and grade your copy:
 *
 *   dev/grade 1 my-rmsnorm.cu
 *
 * It is #included by dev/rmsnorm.cu (after its versions, so you may call its
 * helpers: warp_sum, round_bf16, cu_ld, cu_st). As given it compiles, writes
 * nothing, and fails the grader.
 */

// out (N,C) = RMSNorm(inp (N,C)) * weight (C,), as version 1 of dev/rmsnorm.cu;
// rstd (N,) gets each row's r when not NULL. Read and write memory with
// cu_ld(&x[i]) and cu_st(&o[i], value) so that the profile can count your sectors.
__global__ void exercise_rmsnorm_kernel(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    // TODO: one warp per row; lane l takes elements l, l + 32, ... of the row.
    (void)out; (void)rstd; (void)inp; (void)weight; (void)N; (void)C; (void)eps;
}

static void exercise_rmsnorm_forward(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    CU_LAUNCH(exercise_rmsnorm_kernel, (N + 7) / 8, 256, 0, 0)(out, rstd, inp, weight, N, C, eps);   // 8 warps a block
    cudaCheck(cudaGetLastError());
}
