/*
 * dev/exercises/03-gemm-bank-conflicts.cu: the stub of exercise 3 (sheet:
 * 03-gemm-bank-conflicts.md). Copy it, fix it, grade your copy:
 *
 *   dev/grade 3 my-gemm.cu
 *
 * #included by dev/gemm.cu. As given it is correct but its weight tile is read
 * with a 32-way bank conflict, and it is MISSING the load of that tile: it fails.
 */

// out (N,OC) = inp (N,C) . weight (OC,C)^T in 32x32 tiles (dev/gemm.cu, version 2).
__global__ void exercise_gemm_kernel(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    __shared__ float As[32][32];
    __shared__ float Bs[32][32];   // read as Bs[tx][k]: every lane in bank k
    int tx = threadIdx.x, ty = threadIdx.y;
    int n0 = blockIdx.y * 32, oc0 = blockIdx.x * 32;
    float acc[4] = {0.0f};
    for (int k0 = 0; k0 < C; k0 += 32) {
        for (int i = 0; i < 4; i++) {
            int r = ty + 8 * i, k = k0 + tx;
            floatX a = n0 + r < N && k < C ? cu_ld(&inp[(size_t)(n0 + r) * C + k]) : round_bf16(0.0f);
            cu_st(&As[r][tx], __bfloat162float(a));
            cu_st(&Bs[r][tx], 0.0f);   // TODO: the weight tile: weight[oc0 + r][k0 + tx] (zero outside)
        }
        __syncthreads();
        for (int k = 0; k < 32; k++) {
            float b = cu_ld(&Bs[tx][k]);
            for (int i = 0; i < 4; i++) acc[i] += cu_ld(&As[ty + 8 * i][k]) * b;
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        int n = n0 + ty + 8 * i, oc = oc0 + tx;
        if (n < N && oc < OC) cu_st(&out[(size_t)n * OC + oc], round_bf16(acc[i]));
    }
    (void)weight;
}

static void exercise_gemm(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC) {
    dim3 block(32, 8), grid((OC + 31) / 32, (N + 31) / 32);
    CU_LAUNCH(exercise_gemm_kernel, grid, block, 0, 0)(out, inp, weight, N, C, OC);
    cudaCheck(cudaGetLastError());
}
