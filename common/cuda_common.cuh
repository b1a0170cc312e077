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

#endif // S1C_CUDA_COMMON_CUH
