/*
 * dev/exercises/solutions/03-gemm-bank-conflicts.cu: exercise 3's solution is
 * version 3 of dev/gemm.cu (the weight tile padded to 33 floats a row); this names it:
 *   dev/grade 3 dev/exercises/solutions/03-gemm-bank-conflicts.cu
 */
static void exercise_gemm(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    gemm_v3(out, inp, weight, N, C, OC);
}
