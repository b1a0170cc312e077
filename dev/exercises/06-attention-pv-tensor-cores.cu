/*
 * dev/exercises/06-attention-pv-tensor-cores.cu: the stub of exercise 6 (sheet:
 * 06-attention-pv-tensor-cores.md). Copy it, write it, grade your copy:
 *
 *   dev/grade 6 my-pv.cu
 *
 * #included by dev/attention.cu, which runs version 3's kernel
 * (attention_forward_tc_kernel, common/attention.cuh) with this P.V step in
 * place of AtcPvTensorCores. As given it is correct, but on the CUDA cores: the
 * four lanes of a quad hold one row's 16 probabilities of a key slice, so each
 * lane gathers them by shuffles and does 16 fp32 multiply-adds per output
 * element. The grader passes it on correctness and fails it on the target.
 */

// o (16 rows x HD: o[n][0..1] row g, dims 8n+2t, 8n+2t+1; o[n][2..3] the same for row g+8;
// g = lane/4, t = lane%4) += P (16 rows x ATC_BK keys: pf[kk] is the m16k16 bf16 A fragment of
// keys 16kk..16kk+15) . V (ATC_BK keys x HD, bf16 in shared memory, row stride LD).
struct ExercisePv {
    template <int HD, int LD>
    __device__ static __forceinline__ void accumulate(float (&o)[HD / 8][4], const uint32_t (&pf)[ATC_BK / 16][4],
                                                      const floatX *vst, int lane) {
        int g = lane / 4, t = lane % 4;
        for (int kk = 0; kk < ATC_BK / 16; kk++) {
            for (int u = 0; u < 16; u++) {
                // key u of the slice: held by lane 4g + (u%8)/2, register (u<8 ? 0 : 2) for row g and
                // the next one for row g+8, low half for even u (the m16k16 A layout of the PTX ISA)
                int src = 4 * g + (u % 8) / 2, reg = u < 8 ? 0 : 2;
                uint32_t rg = __shfl_sync(0xffffffffu, pf[kk][reg], src);
                uint32_t rg8 = __shfl_sync(0xffffffffu, pf[kk][reg + 1], src);
                float pg = __uint_as_float(u % 2 ? rg & 0xffff0000u : rg << 16);   // bf16 -> fp32: exact
                float pg8 = __uint_as_float(u % 2 ? rg8 & 0xffff0000u : rg8 << 16);
                const floatX *vrow = vst + (kk * 16 + u) * LD;
                for (int n = 0; n < HD / 8; n++)
                    for (int e = 0; e < 2; e++) {
                        float x = __bfloat162float(vrow[8 * n + 2 * t + e]);
                        o[n][e] += pg * x;
                        o[n][2 + e] += pg8 * x;
                    }
            }
        }
    }
};
