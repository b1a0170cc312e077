/*
 * dev/exercises/04-gqa-sum.cu: the stub of exercise 4 (sheet: 04-gqa-sum.md).
 * Copy it, write it, grade your copy:
 *
 *   dev/grade 4 my-gqa.cu
 *
 * #included by dev/attention.cu. As given it compiles, writes nothing, and fails.
 */

// dk (T,NKV,HD) = for each KV head, the sum over its G = NQ/NKV query heads
// h = kvh*G .. kvh*G+G-1 of part (T,NQ,HD), added in increasing h starting
// from 0.0f. No atomics: the result must be the same bits in every schedule.
__global__ void exercise_gqa_sum_kernel(float *dk, const float *part, int T, int NQ, int NKV, int HD) {
    // TODO
    (void)dk; (void)part; (void)T; (void)NQ; (void)NKV; (void)HD;
}

static void exercise_gqa_sum(float *dk, const float *part, int T, int NQ, int NKV, int HD) {
    CU_LAUNCH(exercise_gqa_sum_kernel, (unsigned)(((size_t)T * NKV * HD + 255) / 256), 256, 0, 0)(dk, part, T, NQ, NKV, HD);
    cudaCheck(cudaGetLastError());
}
