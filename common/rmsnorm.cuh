/*
 * rmsnorm.cuh: RMSNorm (Qwen2RMSNorm) on the GPU. Twins of s1.c's
 * rmsnorm_forward() and rmsnorm_backward(); tested by tests/emu_kernels.cu and
 * tests/emu_kernels_backward.cu, versions in dev/rmsnorm.cu.
 */
#ifndef S1C_RMSNORM_CUH
#define S1C_RMSNORM_CUH

#include "common/cuda_common.cuh"
#include "common/matmul.cuh"   // the fixed-order column sums (column_sum_blocks, column_sum_finish)

// RMSNorm as Qwen2RMSNorm in bf16: y = x * rsqrt(mean(x^2) + eps) in fp32, cast
// to bf16, THEN multiplied by the weight (HF's order). One warp per row.
// rstd (N,) keeps r for the backward pass (NULL: not kept).
// Version 2 of dev/rmsnorm.cu (the coalesced one): loads and stores go through
// cu_ld/cu_st (common/cuemu_profile.h: plain accesses on the GPU) so that the
// emulator's CUEMU_PROFILE=1 can count its sectors. The programs run it when
// rows are not whole 16-byte vectors (C % 8 != 0) or a pointer is misaligned.
__global__ void __launch_bounds__(256) rmsnorm_forward_kernel(floatX *out, float *rstd, const floatX *inp, const floatX *weight,
                                                              int N, int C, float eps) {
    // out (N,C), rstd (N,), inp (N,C), weight (C,)
    int warps = blockDim.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    for (int row = blockIdx.x * warps + threadIdx.x / WARP_SIZE; row < N; row += gridDim.x * warps) {
        const floatX *x = inp + (size_t)row * C;
        float ss = 0.0f;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float xi = __bfloat162float(cu_ld(&x[i]));
            ss += xi * xi;
        }
        float r = rsqrtf(warp_sum(ss) / (float)C + eps);
        if (rstd != NULL && lane == 0) rstd[row] = r;
        floatX *o = out + (size_t)row * C;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float y = __bfloat162float(round_bf16(__bfloat162float(cu_ld(&x[i])) * r));
            cu_st(&o[i], round_bf16(__bfloat162float(cu_ld(&weight[i])) * y));
        }
    }
}

// Version 4 of dev/rmsnorm.cu, what the programs run: version 2 with 16-byte
// accesses. Lane l takes the 8 elements 8l..8l+7, then 8(l+32).., so a warp's
// load covers 512 contiguous bytes (16 sectors, all used) with one instruction
// where version 2 needs 8. C % 8 == 0 and inp, out, weight 16-byte aligned
// (rmsnorm_forward() checks), so every row starts on a 16-byte boundary.
// The sum of squares adds in another order than version 2's (each lane sums its
// 8 elements first): within the same bound, not the same bits.
__global__ void __launch_bounds__(256) rmsnorm_forward_vec_kernel(floatX *out, float *rstd, const floatX *inp,
                                                                  const floatX *weight, int N, int C, float eps) {
    // out (N,C), rstd (N,), inp (N,C), weight (C,); N*C < 2^31 (32-bit offsets)
    int warps = blockDim.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    for (int row = blockIdx.x * warps + threadIdx.x / WARP_SIZE; row < N; row += gridDim.x * warps) {
        const floatX *x = inp + row * C;
        float ss = 0.0f;
        for (int i = lane * VEC; i < C; i += WARP_SIZE * VEC) {
            float xv[VEC];
            bf16x8_unpack(cu_ld((const uint4 *)(x + i)), xv);
#pragma unroll
            for (int k = 0; k < VEC; k++) ss += xv[k] * xv[k];
        }
        float r = rsqrtf(warp_sum(ss) / (float)C + eps);
        if (rstd != NULL && lane == 0) rstd[row] = r;
        floatX *o = out + row * C;
        for (int i = lane * VEC; i < C; i += WARP_SIZE * VEC) {   // x again: the row is in L1/L2 by now
            float xv[VEC], wv[VEC], ov[VEC];
            bf16x8_unpack(cu_ld((const uint4 *)(x + i)), xv);
            bf16x8_unpack(cu_ld((const uint4 *)(weight + i)), wv);
#pragma unroll
            for (int k = 0; k < VEC; k++) ov[k] = wv[k] * __bfloat162float(round_bf16(xv[k] * r));
            cu_st((uint4 *)(o + i), bf16x8_pack(ov));
        }
    }
}

static void rmsnorm_forward(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C, float eps, cudaStream_t stream) {
    const int block = 256;
    int_size((size_t)N * C, "rmsnorm_forward");
    if (C % VEC == 0 && is_aligned16(out) && is_aligned16(inp) && is_aligned16(weight))
        CU_LAUNCH(rmsnorm_forward_vec_kernel, grid_for((size_t)N, block / WARP_SIZE), block, 0, stream)(out, rstd, inp, weight, N, C, eps);
    else   // rows that do not start on 16-byte boundaries: one bf16 per access
        CU_LAUNCH(rmsnorm_forward_kernel, grid_for((size_t)N, block / WARP_SIZE), block, 0, stream)(out, rstd, inp, weight, N, C, eps);
    cudaCheck(cudaGetLastError());
}

// Backward, twin of s1.c's rmsnorm_backward(). With r = rstd[n], y = x*r and
// g = weight*dout:
//   dinp (N,C) fp32 += r * (g - y * mean(g*y))   then dinp_bf16 = bf16(dinp)
//   dweight (C,) fp32 += sum_n dout * y
// Which y. HF computes y = x*r in fp32, casts it to bf16, multiplies by the
// weight in bf16. Autograd therefore sees weight * bf16(y): dweight's terms use
// y = bf16(x*r) (as float), the value the forward pass multiplied. The cast is
// a straight-through copy for the gradient, and the normalisation itself ran in
// fp32, so dinp uses the unrounded y = x*r, as s1.c does (dout is the fp32
// gradient of the norm's output; g = weight*dout is not rounded either).
//
// dinp is the residual stream's gradient (fp32, accumulated across the layer's
// two branches); dinp_bf16 (may be NULL) receives its bf16 copy in the same
// pass, the input of the next GEMMs' backward.
//
// Parallel decomposition. The grid is column_sum_blocks(N) blocks of 256
// threads, each owning a contiguous range of rows (matmul.cuh): one warp per
// row for dinp (the row's mean(g*y) by lanes, then warp_sum); then the block's
// threads take the columns and sum dout*y over the block's rows in increasing
// order into scratch (stage 1); column_sum_finish() adds the blocks' partials
// in block order onto dweight (stage 2). The grid depends on N alone: dweight
// is bit-identical run to run. rstd (N,) is what rmsnorm_forward() kept.
__global__ void __launch_bounds__(256) rmsnorm_backward_kernel(float *dinp, floatX *dinp_bf16, float *partials, const float *dout,
                                        const floatX *inp, const floatX *weight, const float *rstd, int N, int C) {
    // dinp (N,C), dinp_bf16 (N,C) or NULL, partials (gridDim.x, C), dout (N,C), inp (N,C), weight (C,), rstd (N,)
    int begin, end;
    column_sum_rows(N, &begin, &end);
    int warps = blockDim.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    for (int row = begin + (int)threadIdx.x / WARP_SIZE; row < end; row += warps) {
        const floatX *x = inp + (size_t)row * C;
        const float *d = dout + (size_t)row * C;
        float r = cu_ld(&rstd[row]), gy = 0.0f;
        for (int i = lane; i < C; i += WARP_SIZE)
            gy += __bfloat162float(cu_ld(&weight[i])) * cu_ld(&d[i]) * (__bfloat162float(cu_ld(&x[i])) * r);
        gy = warp_sum(gy) / (float)C;
        float *dx = dinp + (size_t)row * C;
        for (int i = lane; i < C; i += WARP_SIZE) {
            float v = cu_ld(&dx[i]) + r * (__bfloat162float(cu_ld(&weight[i])) * cu_ld(&d[i]) - (__bfloat162float(cu_ld(&x[i])) * r) * gy);
            cu_st(&dx[i], v);
            if (dinp_bf16 != NULL) cu_st(&dinp_bf16[(size_t)row * C + i], round_bf16(v));
        }
    }
    // stage 1 of dweight: this block's rows, in order, per column
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int n = begin; n < end; n++) {
            float y = __bfloat162float(round_bf16(__bfloat162float(cu_ld(&inp[(size_t)n * C + c])) * cu_ld(&rstd[n])));
            s += cu_ld(&dout[(size_t)n * C + c]) * y;
        }
        cu_st(&partials[(size_t)blockIdx.x * C + c], s);
    }
}

// floats of scratch rmsnorm_backward() needs: the blocks' partial dweight sums
static inline size_t rmsnorm_backward_scratch_floats(int N, int C) { return column_sum_scratch_floats(N, C); }

static void rmsnorm_backward(float *dinp, floatX *dinp_bf16, float *dweight, float *scratch, const float *dout,
                             const floatX *inp, const floatX *weight, const float *rstd, int N, int C, cudaStream_t stream) {
    CU_LAUNCH(rmsnorm_backward_kernel, column_sum_blocks(N), 256, 0, stream)(dinp, dinp_bf16, scratch, dout, inp, weight, rstd, N, C);
    cudaCheck(cudaGetLastError());
    column_sum_finish(dweight, scratch, N, C, stream);
}

#endif // S1C_RMSNORM_CUH
