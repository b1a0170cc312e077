/*
 * dev/exercises/02-rmsnorm-residual.cu: the stub of exercise 2 (sheet:
 * 02-rmsnorm-residual.md). Copy it, fill it in, grade your copy:
 *
 *   dev/grade 2 my-fused.cu
 *
 * #included by dev/rmsnorm.cu. As given it compiles, writes nothing, and fails.
 */

// residual (N,C) = bf16(residual + inp) (the residual stream, updated in place),
// then out (N,C) = RMSNorm(residual) * weight, as dev/rmsnorm.cu's version 2 computes it;
// rstd (N,) gets r when not NULL. ONE kernel launch. Use cu_ld/cu_st for memory.
__global__ void exercise_rmsnorm_residual_kernel(floatX *residual, floatX *out, float *rstd, const floatX *inp,
                                                 const floatX *weight, int N, int C, float eps) {
    // TODO
    (void)residual; (void)out; (void)rstd; (void)inp; (void)weight; (void)N; (void)C; (void)eps;
}

static void exercise_rmsnorm_residual_forward(floatX *residual, floatX *out, float *rstd, const floatX *inp,
                                              const floatX *weight, int N, int C, float eps) {
    CU_LAUNCH(exercise_rmsnorm_residual_kernel, (N + 7) / 8, 256, 0, 0)(residual, out, rstd, inp, weight, N, C, eps);
    cudaCheck(cudaGetLastError());
}
