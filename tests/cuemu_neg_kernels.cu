// Kernels with the bugs the CUDA emulation must catch, one per mode:
//   build/tests/cuemu_neg_kernels MODE
// tests/test_cuemu.sh runs each mode and checks the message (and that "ok"
// runs clean under ASan, TSan and Valgrind). Also compiles with nvcc.
#include "common/cuemu.h"
#include <cuda_bf16.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <thread>

#define N 256

// Each thread reads its left neighbour's value from shared memory, but the
// barrier between the write and the read is missing. In forward order the
// neighbour always ran first, so the bug only shows in other orders.
__global__ void shift_missing_barrier_kernel(int *out, const int *in) {
    __shared__ int s[N];
    int t = threadIdx.x;
    s[t] = in[t];
    // __syncthreads() belongs here
    out[t] = t > 0 ? s[t - 1] : 0;
}

__global__ void divergent_barrier_kernel(int *out) {
    int t = threadIdx.x;
    if (t % 2 == 0) {
        out[t] = 1;
        __syncthreads();  // even threads wait here
    } else {
        out[t] = 2;
        __syncthreads();  // odd threads wait here: a different barrier
    }
}

__global__ void mask_excludes_caller_kernel(float *out) {
    float v = (float)threadIdx.x;
    v += __shfl_xor_sync(0xfffffffe, v, 1);  // lane 0 calls with a mask without lane 0
    out[threadIdx.x] = v;
}

__global__ void mismatched_ops_kernel(float *out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x % 2 == 0) v = __shfl_xor_sync(0xffffffff, v, 1);
    else v = __shfl_down_sync(0xffffffff, v, 1);  // the same mask, another operation
    out[threadIdx.x] = v;
}

__global__ void mismatched_masks_kernel(float *out) {
    float v = (float)threadIdx.x;
    unsigned mask = threadIdx.x % 2 == 0 ? 0xffffffffu : 0xfffffffeu;  // lanes 1 and 2 disagree
    v += __shfl_xor_sync(mask, v, 1);
    out[threadIdx.x] = v;
}

#ifndef __CUDACC__  // nvcc refuses it without -rdc; the emulator must refuse it at run time
__global__ void launch_in_kernel_kernel(float *out) {
    CU_LAUNCH(mismatched_masks_kernel, 1, 32, 0, 0)(out);  // dynamic parallelism
}
#endif

__global__ void warp_deadlock_kernel(float *out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x == 0) __syncthreads();  // lane 0 never reaches the shuffle the others wait in
    else v = __shfl_down_sync(0xffffffff, v, 1);
    out[threadIdx.x] = v;
}

__global__ void shuffle_after_exit_kernel(float *out) {
    if (threadIdx.x >= 16) return;  // half the warp has left
    out[threadIdx.x] = __shfl_down_sync(0xffffffff, (float)threadIdx.x, 1);
}

// Writes one float past the end of its dynamic shared memory.
__global__ void dynamic_smem_overflow_kernel(float *out, int n) {
    CU_EXTERN_SHARED(float, buf);
    buf[threadIdx.x + 1] = (float)threadIdx.x;  // thread n-1 writes buf[n]
    __syncthreads();
    out[threadIdx.x] = buf[threadIdx.x < (unsigned)n - 1 ? threadIdx.x + 1 : 0];
}

// Writes one element past the end of a static __shared__ array.
__global__ void static_smem_overflow_kernel(float *out) {
    __shared__ float tile[64];
    tile[threadIdx.x + 1] = 1.0f;  // thread 63 writes tile[64]
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}

// 128 KiB of locals: more than the default 64 KiB fiber stack, so it must hit the
// guard page (a SIGSEGV) instead of silently overwriting another fiber's stack.
__global__ void big_locals_kernel(float *out) {
    volatile float local[32 * 1024];
    for (int i = 0; i < 32 * 1024; i++) local[i] = (float)i;
    out[threadIdx.x] = local[threadIdx.x * 1000];
}

// Every block adds to one counter without an atomic: a race *between* blocks, which
// ThreadSanitizer sees when blocks run on 2 OS threads (CUEMU_THREADS=2).
__global__ void cross_block_race_kernel(float *counter, const float *in) {
    float s = 0.0f;
    for (int i = 0; i < 256; i++) s += in[(blockIdx.x * 256 + i) % (8 * N)];
    if (threadIdx.x == 0) *counter += s;  // not atomicAdd
}

__global__ void scale_kernel(float *x, float a) { x[threadIdx.x] *= a; }

// Vector accesses whose address is not a multiple of their width: fine on x86, a
// "misaligned address" fault on the GPU. cu_ld/cu_st must refuse them, as the
// vectorised kernels (common/swiglu.cuh, rmsnorm.cuh, adamw.cuh) rely on.
__global__ void misaligned_load_kernel(float *out, const float *in) {
    int t = threadIdx.x;
    float4 v = cu_ld((const float4 *)(in + 4 * t + 1));  // in + 1: a float4 load 4 bytes past a 16-byte boundary
    cu_st(&out[t], v.x + v.y + v.z + v.w);
}
__global__ void misaligned_store_kernel(__nv_bfloat16 *out) {
    __nv_bfloat162 two = __floats2bfloat162_rn(1.0f, 2.0f);
    cu_st((__nv_bfloat162 *)(out + 2 * threadIdx.x + 1), two);  // out + 1: a bf16 pair stored 2 bytes past a 4-byte boundary
}
__global__ void aligned_vectors_kernel(float *out, const float *in) {  // the same accesses, aligned: no error
    int t = threadIdx.x;
    float4 v = cu_ld((const float4 *)(in + 4 * t));
    cu_st((float4 *)(out + 4 * t), v);
    cu_st((__nv_bfloat162 *)(out + 4 * N) + t, __floats2bfloat162_rn(v.x, v.y));
}

// A clean kernel that uses everything (barriers, shuffles, dynamic shared
// memory): sums each block's values.
__global__ void block_sum_kernel(float *out, const float *in) {
    CU_EXTERN_SHARED(float, warp_sums);
    float v = in[blockIdx.x * blockDim.x + threadIdx.x];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffff, v, offset);
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (unsigned w = 0; w < blockDim.x / 32; w++) s += warp_sums[w];
        out[blockIdx.x] = s;
    }
}

// Two ranks whose collective sequences differ: rank 1 skips the all-reduce, so rank 0
// waits for it forever on a GPU. The emulator gives up after CUEMU_NCCL_TIMEOUT seconds.
static void nccl_mismatch(float *buf) {
    ncclUniqueId id;
    ncclCheck(ncclGetUniqueId(&id));
    std::thread rank1([&] {
        ncclComm_t comm;
        ncclCheck(ncclCommInitRank(&comm, 2, id, 1));
    });
    ncclComm_t comm;
    ncclCheck(ncclCommInitRank(&comm, 2, id, 0));
    rank1.join();
    ncclCheck(ncclAllReduce(buf, buf, 16, ncclFloat, ncclSum, comm, 0));
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    int *d_in, *d_out;
    float *f_in, *f_out;
    cudaCheck(cudaMalloc(&d_in, N * sizeof(int)));
    cudaCheck(cudaMalloc(&d_out, N * sizeof(int)));
    cudaCheck(cudaMalloc(&f_in, 8 * N * sizeof(float)));
    cudaCheck(cudaMalloc(&f_out, 8 * N * sizeof(float)));
    int host[N];
    for (int i = 0; i < N; i++) host[i] = 1000 + i;
    cudaCheck(cudaMemcpy(d_in, host, sizeof host, cudaMemcpyHostToDevice));

    if (!strcmp(mode, "missing_barrier")) {
        CU_LAUNCH(shift_missing_barrier_kernel, 1, N, 0, 0)(d_out, d_in);
        cudaCheck(cudaGetLastError());
        cudaCheck(cudaMemcpy(host, d_out, sizeof host, cudaMemcpyDeviceToHost));
        int wrong = 0;
        for (int t = 1; t < N; t++) wrong += host[t] != 1000 + t - 1;
        if (wrong) {
            fprintf(stderr, "missing_barrier: %d of %d values wrong\n", wrong, N - 1);
            return 1;
        }
        printf("missing_barrier: every value right\n");
    } else if (!strcmp(mode, "divergent_barrier")) {
        CU_LAUNCH(divergent_barrier_kernel, 1, 64, 0, 0)(d_out);
    } else if (!strcmp(mode, "mask_excludes_caller")) {
        CU_LAUNCH(mask_excludes_caller_kernel, 1, 32, 0, 0)(f_out);
    } else if (!strcmp(mode, "mismatched_ops")) {
        CU_LAUNCH(mismatched_ops_kernel, 1, 32, 0, 0)(f_out);
    } else if (!strcmp(mode, "mismatched_masks")) {
        CU_LAUNCH(mismatched_masks_kernel, 1, 32, 0, 0)(f_out);
#ifndef __CUDACC__
    } else if (!strcmp(mode, "launch_in_kernel")) {
        CU_LAUNCH(launch_in_kernel_kernel, 1, 1, 0, 0)(f_out);
#endif
    } else if (!strcmp(mode, "warp_deadlock")) {
        CU_LAUNCH(warp_deadlock_kernel, 1, 32, 0, 0)(f_out);
    } else if (!strcmp(mode, "shuffle_after_exit")) {
        CU_LAUNCH(shuffle_after_exit_kernel, 1, 32, 0, 0)(f_out);
    } else if (!strcmp(mode, "dynamic_smem_overflow")) {
        CU_LAUNCH(dynamic_smem_overflow_kernel, 1, 64, 64 * sizeof(float), 0)(f_out, 64);
    } else if (!strcmp(mode, "static_smem_overflow")) {
        CU_LAUNCH(static_smem_overflow_kernel, 1, 64, 0, 0)(f_out);
    } else if (!strcmp(mode, "host_pointer_arg")) {
        static float host_array[32];  // not from cudaMalloc: the GPU would fault on it
        CU_LAUNCH(scale_kernel, 1, 32, 0, 0)(host_array, 2.0f);
    } else if (!strcmp(mode, "misaligned_load")) {
        CU_LAUNCH(misaligned_load_kernel, 1, 32, 0, 0)(f_out, f_in);
    } else if (!strcmp(mode, "misaligned_store")) {
        CU_LAUNCH(misaligned_store_kernel, 1, 32, 0, 0)((__nv_bfloat16 *)f_out);
    } else if (!strcmp(mode, "aligned_vectors")) {
        CU_LAUNCH(aligned_vectors_kernel, 1, 32, 0, 0)(f_out, f_in);
        cudaCheck(cudaGetLastError());
        printf("aligned_vectors: ran\n");
    } else if (!strcmp(mode, "cross_block_race")) {
        cudaCheck(cudaMemset(f_in, 0, 8 * N * sizeof(float)));
        CU_LAUNCH(cross_block_race_kernel, 256, 32, 0, 0)(f_out, f_in);
        cudaCheck(cudaGetLastError());
    } else if (!strcmp(mode, "nccl_mismatch")) {
        nccl_mismatch(f_out);
    } else if (!strcmp(mode, "big_locals")) {
        CU_LAUNCH(big_locals_kernel, 1, 2, 0, 0)(f_out);
        cudaCheck(cudaGetLastError());
        printf("big_locals: ran\n");
    } else if (!strcmp(mode, "ok")) {
        float h[8 * N];
        for (int i = 0; i < 8 * N; i++) h[i] = (float)(i % 13);
        cudaCheck(cudaMemcpy(f_in, h, sizeof h, cudaMemcpyHostToDevice));
        CU_LAUNCH(block_sum_kernel, 8, N, (N / 32) * sizeof(float), 0)(f_out, f_in);
        cudaCheck(cudaGetLastError());
        float sums[8];
        cudaCheck(cudaMemcpy(sums, f_out, sizeof sums, cudaMemcpyDeviceToHost));
        for (int b = 0; b < 8; b++) {
            float want = 0.0f;
            for (int i = 0; i < N; i++) want += h[b * N + i];
            if (sums[b] != want) {  // small integers: exact in any order
                fprintf(stderr, "ok: block %d sums to %g, want %g\n", b, sums[b], want);
                return 1;
            }
        }
        printf("ok: 8 block sums right\n");
    } else {
        fprintf(stderr, "usage: %s missing_barrier|divergent_barrier|mask_excludes_caller|mismatched_ops|"
                        "mismatched_masks|launch_in_kernel|warp_deadlock|shuffle_after_exit|dynamic_smem_overflow|static_smem_overflow|host_pointer_arg|misaligned_load|misaligned_store|aligned_vectors|"
                        "cross_block_race|nccl_mismatch|big_locals|ok\n", argv[0]);
        return 2;
    }
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaFree(d_in));
    cudaCheck(cudaFree(d_out));
    cudaCheck(cudaFree(f_in));
    cudaCheck(cudaFree(f_out));
    return 0;
}
