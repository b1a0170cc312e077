/*
 * bench/attention_gpu.cu: the attention kernels of common/attention.cuh timed on a
 * GPU with cudaEvents, at Qwen2.5-32B's heads (40 query heads, 8 KV heads,
 * head_dim 128) by default: the CUDA-core forward (the programs' default), the
 * tensor-core forward (attention_forward_tc) and the backward, with a cuBLAS bf16
 * GEMM as the measured ceiling of the same card. bench/attention_gpu runs it
 * beside PyTorch's scaled_dot_product_attention on the same shapes and prints the
 * ratios.
 *
 *   make cuda && build/cuda/bench/attention_gpu [--heads 40] [--kv-heads 8] [--head-dim 128] [T ...]
 *
 * FLOPs counted (the causal half only, as FlashAttention's papers count them):
 * forward 2 T^2 NQ HD (QK^T and PV, each 2 T^2/2 NQ HD multiply-adds x 2);
 * backward 2.5 times that (five T x T products instead of two). Our backward
 * recomputes P in two kernels, so it does more work than it is credited with.
 * Each figure is the mean of 10 runs after 2 warm-ups. Needs a GPU: under the
 * emulator it would take hours, so it is built with `make cuda` only.
 */
#include "common/attention.cuh"
#include "common/matmul.cuh"   // gemm_nt: the ceiling

// ----------------------------------------------------------------------------
// inputs: random bf16 in [-1, 1) from a fixed LCG (the values do not change the
// time, but zeros would let the tensor cores skip work)

static floatX *random_device(size_t n, uint64_t seed) {
    floatX *host = (floatX *)mallocCheck(n * sizeof(floatX));
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        host[i] = __float2bfloat16((float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0));
    }
    floatX *dev;
    cudaCheck(cudaMalloc(&dev, n * sizeof(floatX)));
    cudaCheck(cudaMemcpy(dev, host, n * sizeof(floatX), cudaMemcpyHostToDevice));
    free(host);
    return dev;
}

// mean milliseconds of fn over 10 runs after 2 warm-ups
template <typename F>
static float time_ms(F fn) {
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    for (int i = 0; i < 2; i++) fn();
    cudaCheck(cudaEventRecord(start));
    for (int i = 0; i < 10; i++) fn();
    cudaCheck(cudaEventRecord(stop));
    cudaCheck(cudaEventSynchronize(stop));
    float ms;
    cudaCheck(cudaEventElapsedTime(&ms, start, stop));
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return ms / 10.0f;
}

static void report(const char *what, int T, float ms, double flops) {
    printf("ours %-22s T=%-6d %9.3f ms %8.1f TFLOP/s\n", what, T, ms, flops / (ms * 1e-3) / 1e12);
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    int NQ = 40, NKV = 8, HD = 128, nT = 0, Ts[16];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--heads") && i + 1 < argc) NQ = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-heads") && i + 1 < argc) NKV = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--head-dim") && i + 1 < argc) HD = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s [--heads 40] [--kv-heads 8] [--head-dim 128] [T ...] (default T: 4096 16384)\n", argv[0]);
            return 0;
        } else if (argv[i][0] != '-' && nT < 16 && atoi(argv[i]) > 0) Ts[nT++] = atoi(argv[i]);
        else { fprintf(stderr, "error: %s: bad argument '%s' (see --help)\n", argv[0], argv[i]); return 1; }
    }
    if (nT == 0) { Ts[0] = 4096; Ts[1] = 16384; nT = 2; }
    if (NQ <= 0 || NKV <= 0 || NQ % NKV != 0 || (HD != 64 && HD != 128)) {
        fprintf(stderr, "error: %s: heads %d, kv-heads %d, head-dim %d: need NQ a multiple of NKV, HD 64 or 128\n", argv[0], NQ, NKV, HD);
        return 1;
    }
    int device;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    printf("device: %s, %d SMs; heads %d, kv-heads %d, head-dim %d\n", prop.name, prop.multiProcessorCount, NQ, NKV, HD);

    // the ceiling: an 8192^3 bf16 GEMM with fp32 accumulation through cuBLASLt, as the programs call it
    {
        const int n = 8192;
        floatX *a = random_device((size_t)n * n, 1), *b = random_device((size_t)n * n, 2), *c = random_device((size_t)n * n, 3);
        Gemm *gemm = gemm_create();
        float ms = time_ms([&] { gemm_nt(gemm, c, CUDA_R_16BF, a, b, NULL, n, n, n, 0.0f, 0); });
        printf("ours %-22s n=%-6d %9.3f ms %8.1f TFLOP/s\n", "cublaslt_gemm_bf16", n, ms, 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12);
        gemm_destroy(gemm);
        cudaCheck(cudaFree(a)); cudaCheck(cudaFree(b)); cudaCheck(cudaFree(c));
    }

    for (int i = 0; i < nT; i++) {
        int T = Ts[i];
        size_t nq = (size_t)T * NQ * HD, nk = (size_t)T * NKV * HD;
        floatX *q = random_device(nq, 11), *k = random_device(nk, 12), *v = random_device(nk, 13), *dout = random_device(nq, 14);
        floatX *out, *dq, *dk, *dv;
        float *lse, *scratch;
        cudaCheck(cudaMalloc(&out, nq * sizeof(floatX)));
        cudaCheck(cudaMalloc(&dq, nq * sizeof(floatX)));
        cudaCheck(cudaMalloc(&dk, nk * sizeof(floatX)));
        cudaCheck(cudaMalloc(&dv, nk * sizeof(floatX)));
        cudaCheck(cudaMalloc(&lse, (size_t)T * NQ * sizeof(float)));
        cudaCheck(cudaMalloc(&scratch, attention_backward_scratch_floats(T, NQ) * sizeof(float)));
        double fwd = 2.0 * T * (double)T * NQ * HD;
        report("forward_cuda_cores", T, time_ms([&] { attention_forward(out, lse, q, k, v, T, 0, NQ, NKV, HD, 0); }), fwd);
        report("forward_tensor_cores", T, time_ms([&] { attention_forward_tc(out, lse, q, k, v, T, 0, NQ, NKV, HD, 0); }), fwd);
        report("backward_cuda_cores", T,
               time_ms([&] { attention_backward(dq, dk, dv, scratch, dout, out, lse, q, k, v, T, NQ, NKV, HD, 0); }), 2.5 * fwd);
        cudaCheck(cudaFree(q)); cudaCheck(cudaFree(k)); cudaCheck(cudaFree(v)); cudaCheck(cudaFree(dout));
        cudaCheck(cudaFree(out)); cudaCheck(cudaFree(dq)); cudaCheck(cudaFree(dk)); cudaCheck(cudaFree(dv));
        cudaCheck(cudaFree(lse)); cudaCheck(cudaFree(scratch));
    }
    return 0;
}
