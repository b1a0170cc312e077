/*
 * cuda_common.cuh: what every kernel header of the GPU programs shares: the
 * element type (bf16), launch helpers and warp reductions. Included by the
 * per-operation headers (embedding.cuh, rmsnorm.cuh, matmul.cuh, rope.cuh,
 * attention.cuh, swiglu.cuh, classifier.cuh) and, through them, by kernels.cuh.
 *
 * Under nvcc, common/cuemu.h only defines CU_LAUNCH, CU_EXTERN_SHARED and the
 * checked-call macros; under g++ it is the CUDA emulator (docs: tutorial/cuda.md).
 */
#ifndef S1C_CUDA_COMMON_CUH
#define S1C_CUDA_COMMON_CUH

#include "common/cuemu.h"   // CU_LAUNCH, CU_EXTERN_SHARED, cudaCheck, cublasCheck (nvcc: just those)
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <nccl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include "common/util.h"
#include "common/json.h"
#include "common/qwen2_config.h"
#include "common/safetensors.h"
#include "common/qwen2_weights.h"   // the parameter layout (P_EMBED ... P_LMW) and checkpoint folders, shared with s1.c

typedef __nv_bfloat16 floatX;   // the element type of weights and activations

// ----------------------------------------------------------------------------
// launch helpers

#define WARP_SIZE 32
#define MAX_GRID_BLOCKS 1056   // 8 blocks per SM of an H100; larger problems loop (grid-stride)

// Every launcher takes the stream it runs on as its last parameter (llm.c's
// style), and so does everything above them: the programs give all their work
// to one non-blocking compute stream (tutorial/cuda.md, "Streams").
static inline int grid_for(size_t work, int per_block) {
    size_t blocks = (work + (size_t)per_block - 1) / (size_t)per_block;
    return blocks == 0 ? 1 : blocks > MAX_GRID_BLOCKS ? MAX_GRID_BLOCKS : (int)blocks;
}

__device__ inline float warp_sum(float v) {
    for (int off = WARP_SIZE / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int off = WARP_SIZE / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__device__ inline floatX round_bf16(float x) { return __float2bfloat16(x); }

// ----------------------------------------------------------------------------
// 16-byte vector access, for the memory-bound kernels (swiglu.cuh, rmsnorm.cuh, adamw.cuh)
//
// A memory-bound kernel runs at the speed it keeps bytes in flight. With one bf16
// per lane a warp's load moves 64 bytes; with a uint4 (8 bf16) or a float4 per lane,
// 512: 8x (bf16) or 4x (fp32) fewer load/store instructions and address
// computations for the same bytes (llm.c's Packed128). The price: the address must
// be 16-byte aligned or the GPU faults, and the emulator's cu_ld/cu_st check it
// (common/cuemu_profile.h). So the launchers split n elements as
//   [0, head)                   scalar: before the first 16-byte boundary
//   [head, head + 8*nvec)       one uint4 (8 bf16) or two float4 (8 fp32) per thread per step
//   [head + 8*nvec, n)          scalar: the tail, n - head not a multiple of 8
// and run the whole thing scalar when the pointers do not share one alignment phase.
#define VEC 8   // elements per vector step: 8 bf16 = 16 bytes (and 8 fp32 = two float4)

// 8 bf16 <-> 8 floats in the 16 bytes of one uint4, element k in bits 16k..16k+15
// (little-endian, as memory holds them). A bf16 is the top half of a float, so
// the unpacking is exact: shifts and masks in registers, as the GPU does it.
__device__ __forceinline__ void bf16x8_unpack(uint4 u, float f[VEC]) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = __uint_as_float(w[k] << 16);
        f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}
__device__ __forceinline__ uint4 bf16x8_pack(const float f[VEC]) {   // each rounded to bf16 once (round_bf16)
    unsigned w[4];
#pragma unroll
    for (int k = 0; k < 4; k++)
        w[k] = (unsigned)__bfloat16_as_ushort(round_bf16(f[2 * k])) | (unsigned)__bfloat16_as_ushort(round_bf16(f[2 * k + 1])) << 16;
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// Copies between the host and the device in `stream`'s order that return once
// the copy is done: the host may then read, reuse or free its buffer. A plain
// cudaMemcpy runs on the legacy default stream, which a non-blocking stream's
// work does not wait for, nor waits for.
static inline void copy_to_device(void *dst, const void *src, size_t bytes, cudaStream_t stream) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    cudaCheck(cudaStreamSynchronize(stream));
}
static inline void copy_to_host(void *dst, const void *src, size_t bytes, cudaStream_t stream) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
}

static inline int is_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// elements of `size` bytes from p to the first 16-byte boundary, at most n
static inline int vec_head(const void *p, size_t size, int n) {
    int head = (int)(((16 - ((uintptr_t)p & 15)) & 15) / size);
    return head < n ? head : n;
}

// The element of the scalar part (head and tail, at most 7 + 7) this thread
// takes, or -1: threads 0..15 of block 0 take them, whatever the grid.
__device__ __forceinline__ int vec_rest_element(int n, int head) {
    if (blockIdx.x != 0 || threadIdx.x >= 2 * VEC) return -1;
    int t = threadIdx.x;
    if (t < VEC) return t < head ? t : -1;
    int i = head + (n - head) / VEC * VEC + (t - VEC);   // the tail's element t - 8
    return i < n ? i : -1;
}

// The kernels index with int (32-bit math: one register, cheaper address arithmetic
// than size_t): a size beyond it stops the program here instead of wrapping.
static inline int int_size(size_t n, const char *what) {
    if (n > (size_t)INT_MAX) die("%s: %zu elements, over the 2^31 - 1 its kernel's 32-bit indices allow", what, n);
    return (int)n;
}

#endif // S1C_CUDA_COMMON_CUH
