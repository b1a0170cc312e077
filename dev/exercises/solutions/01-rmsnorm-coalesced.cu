/*
 * dev/exercises/solutions/01-rmsnorm-coalesced.cu: exercise 1's solution is
 * version 2 of dev/rmsnorm.cu, which is common/rmsnorm.cuh's rmsnorm_forward_kernel
 * (the programs run it where rows are not whole 16-byte vectors; elsewhere
 * version 4, the same with 16-byte accesses). This file only gives it the
 * exercise's name for the grader:
 *   dev/grade 1 dev/exercises/solutions/01-rmsnorm-coalesced.cu
 */
static void exercise_rmsnorm_forward(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps) {
    rmsnorm_forward_v2(out, rstd, inp, weight, N, C, eps);
}
