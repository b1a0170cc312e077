// Kernels with the tensor-core bugs the CUDA emulation must catch (common/mma.cuh), one per mode:
//   build/tests/cuemu_neg_mma MODE
// tests/test_mma.sh runs each mode in every schedule and checks the message; "ok" must run
// clean (also under ASan). Also compiles with nvcc (make build/cuda/cuemu_neg_mma.o).
#include "common/cuemu.h"
#include "common/mma.cuh"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define N 256

// Half the warp reaches one mma.sync, the other half another: .aligned forbids it.
__global__ void diverged_mma_kernel(float *out) {
    int lane = threadIdx.x % 32;
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float d[4] = {0, 0, 0, 0};
    if (lane < 16) mma_bf16_16816(d, a, b, d);  // lanes 0-15 multiply here
    else mma_bf16_16816(d, a, b, d);            // lanes 16-31 multiply here
    out[threadIdx.x] = d[0];
}

// Copies a tile to shared memory with cp.async and commits it, but never waits
// for it: each thread then reads what another thread copied.
__global__ void missing_wait_kernel(float *out, const float *in) {
    __shared__ __align__(16) float s[N];
    int t = threadIdx.x;
    if (t < N / 4) cp_async<16>(&s[4 * t], &in[4 * t]);
    cp_async_commit();
    // cp_async_wait<0>() belongs here
    __syncthreads();
    out[t] = s[(t + 5) % N];
}

// Two groups in flight, and a wait that lets the newer one stay in flight
// (wait_group 1) before reading it.
__global__ void wrong_group_kernel(float *out, const float *in) {
    __shared__ __align__(16) float s[N];
    int t = threadIdx.x;
    if (t < N / 8) cp_async<16>(&s[4 * t], &in[4 * t]);                  // group 0: the first half
    cp_async_commit();
    if (t < N / 8) cp_async<16>(&s[N / 2 + 4 * t], &in[N / 2 + 4 * t]);  // group 1: the second half
    cp_async_commit();
    cp_async_wait<1>();  // group 0 only: should be wait_group 0
    __syncthreads();
    out[t] = s[t];
}

// ldmatrix row addresses 8 bytes off a 16-byte boundary.
__global__ void misaligned_ldmatrix_kernel(float *out) {
    __shared__ __align__(16) __nv_bfloat16 s[8 * 16 + 8];
    int lane = threadIdx.x;
    for (int i = lane; i < 8 * 16 + 8; i += 32) s[i] = __float2bfloat16(1.0f);
    __syncthreads();
    uint32_t r[4];
    ldmatrix<4>(r, &s[4 + (lane % 8) * 16]);  // the rows start at element 4: 8 bytes off
    out[lane] = (float)r[0];
}

// A 16-byte cp.async from a source only 8-byte aligned.
__global__ void misaligned_cp_async_kernel(float *out, const float *in) {
    __shared__ __align__(16) float s[8];
    if (threadIdx.x == 0) cp_async<16>(s, in + 2);  // in + 8 bytes: not 16-byte aligned
    cp_async_wait_all();
    out[threadIdx.x] = s[0];
}

// Clean: a 16x8x16 product of ones from shared memory through cp.async and ldmatrix.
__global__ void ok_kernel(float *out, const __nv_bfloat16 *in) {
    __shared__ __align__(16) __nv_bfloat16 s[16 * 16];
    int lane = threadIdx.x;
    cp_async<16>(&s[8 * lane], &in[8 * lane]);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t a[4], b[2];
    ldmatrix<4>(a, &s[(lane % 16) * 16 + lane / 16 * 8]);
    ldmatrix<2>(b, &s[(lane % 8) * 16 + (lane / 8 % 2) * 8]);
    float d[4] = {0, 0, 0, 0};
    mma_bf16_16816(d, a, b, d);
    for (int i = 0; i < 4; i++) out[lane * 4 + i] = d[i];
}

static int count_wrong(const float *got, const float *in, int shift) {
    int wrong = 0;
    for (int t = 0; t < N; t++) wrong += !(got[t] == in[(t + shift) % N]);  // NaN (poison) counts as wrong
    return wrong;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    float *d_in, *d_out, in[N], out[4 * N];
    for (int i = 0; i < N; i++) in[i] = (float)(i + 1);
    cudaCheck(cudaMalloc(&d_in, sizeof in));
    cudaCheck(cudaMalloc(&d_out, sizeof out));
    cudaCheck(cudaMemcpy(d_in, in, sizeof in, cudaMemcpyHostToDevice));
    if (!strcmp(mode, "diverged_mma")) {
        CU_LAUNCH(diverged_mma_kernel, 1, 32, 0, 0)(d_out);
    } else if (!strcmp(mode, "missing_wait") || !strcmp(mode, "wrong_group")) {
        bool missing = mode[0] == 'm';
        if (missing) CU_LAUNCH(missing_wait_kernel, 1, N, 0, 0)(d_out, d_in);
        else CU_LAUNCH(wrong_group_kernel, 1, N, 0, 0)(d_out, d_in);
        cudaCheck(cudaGetLastError());
        cudaCheck(cudaMemcpy(out, d_out, N * sizeof(float), cudaMemcpyDeviceToHost));
        int wrong = count_wrong(out, in, missing ? 5 : 0);
        if (wrong) {
            fprintf(stderr, "%s: %d of %d values wrong\n", mode, wrong, N);
            return 1;
        }
        printf("%s: every value right\n", mode);
    } else if (!strcmp(mode, "misaligned_ldmatrix")) {
        CU_LAUNCH(misaligned_ldmatrix_kernel, 1, 32, 0, 0)(d_out);
    } else if (!strcmp(mode, "misaligned_cp_async")) {
        CU_LAUNCH(misaligned_cp_async_kernel, 1, 32, 0, 0)(d_out, d_in);
    } else if (!strcmp(mode, "ok")) {
        __nv_bfloat16 ones[16 * 16], *d_ones;
        for (int i = 0; i < 16 * 16; i++) ones[i] = __float2bfloat16(1.0f);
        cudaCheck(cudaMalloc(&d_ones, sizeof ones));
        cudaCheck(cudaMemcpy(d_ones, ones, sizeof ones, cudaMemcpyHostToDevice));
        CU_LAUNCH(ok_kernel, 1, 32, 0, 0)(d_out, d_ones);
        cudaCheck(cudaGetLastError());
        cudaCheck(cudaMemcpy(out, d_out, 128 * sizeof(float), cudaMemcpyDeviceToHost));
        for (int i = 0; i < 128; i++)
            if (out[i] != 16.0f) {
                fprintf(stderr, "ok: D element %d = %g, want 16\n", i, out[i]);
                return 1;
            }
        cudaCheck(cudaFree(d_ones));
        printf("ok: 128 values right\n");
    } else {
        fprintf(stderr, "usage: %s diverged_mma|missing_wait|wrong_group|misaligned_ldmatrix|misaligned_cp_async|ok\n",
                argv[0]);
        return 2;
    }
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaFree(d_in));
    cudaCheck(cudaFree(d_out));
    return 0;
}
