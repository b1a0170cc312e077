/*
 * mma.cuh: the tensor-core primitives as small inline functions: mma.sync
 * m16n8k16 (bf16 in, fp32 accumulate), ldmatrix (.x1/.x2/.x4, .trans) and
 * cp.async (4/8/16 bytes, commit_group, wait_group N, wait_all).
 *
 * Under nvcc each is the one PTX instruction (sm_80 or newer; `make cuda`
 * builds for sm_90). Under g++ (common/cuemu.h) each is an exact emulation:
 *
 *   - Register layouts: exactly those of the PTX ISA, section "Warp-level matrix
 *     fragment mma.m16n8k16" (.bf16 A, B, and the .f32 C/D fragments) and
 *     "ldmatrix" (each 8x8 matrix: lane l gets row l/4, columns 2(l%4) and
 *     2(l%4)+1; with .trans the transposed matrix). The low 16 bits of a
 *     .b32 register hold the element with the lower column (or row) index.
 *     With groupID g = lane/4 and t = lane%4:
 *       A (16x16, row-major)  a[0] = A[g][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
 *                             a[2] = A[g][2t+8..2t+9]  a[3] = A[g+8][2t+8..2t+9]
 *       B (16x8, k x n)       b[0] = B[2t..2t+1][g]    b[1] = B[2t+8..2t+9][g]
 *       C, D (16x8, fp32)     c[0], c[1] = C[g][2t], C[g][2t+1]
 *                             c[2], c[3] = C[g+8][2t], C[g+8][2t+1]
 *     tests/emu_mma.cu checks them element by element.
 *   - Warp-wide: mma.sync and ldmatrix are .aligned: all 32 lanes must reach the
 *     same call together. They run as a warp collective of cuemu.h (a warp
 *     barrier), so a lane at another call site, a lane that exited or one that
 *     waits at __syncthreads() is an error naming file:line.
 *   - Alignment: every row address ldmatrix uses must be 16-byte aligned;
 *     cp.async copies 4, 8 or 16 bytes (a compile-time size), with source and
 *     destination aligned to that size, from memory of cudaMalloc. Else an error.
 *   - cp.async: the destination is poisoned (0xFF bytes: NaN in bf16 and fp32)
 *     when the copy is issued, and the copy lands only when the issuing thread
 *     waits for its group (cp_async_wait<N>: all but the N newest committed groups;
 *     cp_async_wait_all: every copy, committed or not, as PTX defines it; CUEMU_POISON=0
 *     turns the poison off, as for dynamic shared memory). A
 *     missing or too-weak wait reads poison. The source is read at issue (one
 *     order the GPU may take: writing the source before the wait is a race).
 *     Copies never waited for when the block ends are dropped (their shared
 *     memory is gone; on the GPU they land in memory no one reads).
 *   - Arithmetic of mma: each product a*b of two bf16 is exact in fp32 (8-bit
 *     significands: a 16-bit product); D[i][j] = C[i][j] + p_0 + ... + p_15 is summed
 *     in fp32 with round-to-nearest, in the order k = 0..15. So, with u = 2^-24 and
 *     gamma_n = n*u / (1 - n*u), against exact arithmetic
 *         |D - exact| <= gamma_16 * (|C| + sum_k |A[i][k] B[k][j]|)
 *     and K/16 chained mma's on one accumulator are one sum of K terms:
 *         |D - exact| <= gamma_K * (|C0| + sum_k |A[i][k] B[k][j]|).
 *     The GPU's order and rounding inside one mma are not documented (measured:
 *     exact products, aligned and truncated sums, so at most 2u per addition);
 *     tests therefore use 2 * gamma_K, which holds for both. (Products below fp32's
 *     normal range add an absolute 2^-149 per term here; the GPU may flush them.)
 *
 * Every function is called by each thread like an intrinsic; under g++ the call
 * site (file:line) is recorded through default arguments, as for __shfl_sync.
 */
#ifndef S1C_MMA_CUH
#define S1C_MMA_CUH

#include "common/cuemu.h"
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "common/mma.cuh: mma.sync bf16, ldmatrix and cp.async need sm_80 or newer"
#endif

#if defined(__CUDACC__)
#define MMA_SITE
#define MMA_SITE_ONLY
#else
#define MMA_SITE , const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define MMA_SITE_ONLY const char *file = __builtin_FILE(), int line = __builtin_LINE()
#endif

// Two floats as one bf16x2 register (round to nearest even): lo in bits 0-15, as
// the fragments above want (e.g. softmax probabilities as an A fragment).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &h, 4);
    return r;
}

#if defined(__CUDACC__)
// ----------------------------------------------------------------------------
// nvcc: the PTX instructions

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// D = A * B + C, one m16n8k16 tile per warp (D may be C).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                               const float (&c)[4]) {
#ifdef __CUDA_ARCH__
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// NUM (1, 2 or 4) 8x8 b16 matrices from shared memory: lane 8m+r gives the
// address of row r of matrix m; r[m] is this lane's part of matrix m.
template <int NUM, bool TRANS = false>
__device__ __forceinline__ void ldmatrix(uint32_t (&r)[NUM], const void *row) {
    static_assert(NUM == 1 || NUM == 2 || NUM == 4, "ldmatrix: .x1, .x2 or .x4");
#ifdef __CUDA_ARCH__
    uint32_t p = smem_u32(row);
    if constexpr (NUM == 1 && !TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(p) : "memory");
    else if constexpr (NUM == 1)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(p) : "memory");
    else if constexpr (NUM == 2 && !TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1]) : "r"(p) : "memory");
    else if constexpr (NUM == 2)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1]) : "r"(p) : "memory");
    else if constexpr (!TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p) : "memory");
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p) : "memory");
#endif
}

// Copies N bytes global -> shared asynchronously (16 bytes bypass L1: .cg).
template <int N>
__device__ __forceinline__ void cp_async(void *smem_dst, const void *gmem_src) {
    static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
#ifdef __CUDA_ARCH__
    if constexpr (N == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(smem_dst)), "l"(gmem_src) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(smem_u32(smem_dst)), "l"(gmem_src), "n"(N)
                     : "memory");
#endif
}

// The same, reading only the first src_bytes (0..N) and zero-filling the rest:
// the tails of tiles that run past the end of a matrix.
template <int N>
__device__ __forceinline__ void cp_async_zfill(void *smem_dst, const void *gmem_src, int src_bytes) {
    static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
#ifdef __CUDA_ARCH__
    if constexpr (N == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem_dst)), "l"(gmem_src),
                     "r"(src_bytes) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_u32(smem_dst)), "l"(gmem_src),
                     "n"(N), "r"(src_bytes) : "memory");
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most N of this thread's newest committed groups are in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ void cp_async_wait_all() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

#else
// ----------------------------------------------------------------------------
// g++: the emulation (see the rules at the top)

namespace cuemu {
namespace mma {

inline float bf16_lo(uint32_t r) { return __uint_as_float(r << 16); }          // bf16 -> fp32 is exact
inline float bf16_hi(uint32_t r) { return __uint_as_float(r & 0xffff0000u); }

struct MmaLane { const uint32_t *a, *b; const float *c; float *d; };

// The whole warp's m16n8k16: gather A, B, C from the fragments, compute, scatter D.
inline void mma_16816_run(void *const lanes[32]) {
    prof::count_tensor_op('m', 0);   // CUEMU_PROFILE=1 (common/cuemu_profile.h)
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const MmaLane *p = (const MmaLane *)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; i++) {   // a[i]: rows g (+8 for odd i), columns 2t (+8 for i >= 2)
            int row = g + (i & 1) * 8, col = 2 * t + (i >> 1) * 8;
            A[row][col] = bf16_lo(p->a[i]);
            A[row][col + 1] = bf16_hi(p->a[i]);
        }
        for (int i = 0; i < 2; i++) {   // b[i]: rows (k) 2t (+8 for i = 1), column g
            B[2 * t + 8 * i][g] = bf16_lo(p->b[i]);
            B[2 * t + 8 * i + 1][g] = bf16_hi(p->b[i]);
        }
        for (int i = 0; i < 4; i++) C[g + (i >> 1) * 8][2 * t + (i & 1)] = p->c[i];
    }
    for (int l = 0; l < 32; l++) {      // after the gather: d may be the same registers as c
        const MmaLane *p = (const MmaLane *)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; i++) {
            int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
            float acc = C[row][col];
            for (int k = 0; k < 16; k++) acc += A[row][k] * B[k][col];  // exact product, one fp32 rounding per add
            p->d[i] = acc;
        }
    }
}

struct LdmLane { const unsigned char *row; uint32_t *r; };

template <int NUM, bool TRANS>
inline void ldmatrix_run(void *const lanes[32]) {
    prof::count_tensor_op('l', 0);
    uint16_t M[4][8][8];
    for (int m = 0; m < NUM; m++)
        for (int r = 0; r < 8; r++) memcpy(M[m][r], ((const LdmLane *)lanes[8 * m + r])->row, 16);
    for (int l = 0; l < 32; l++) {
        const LdmLane *p = (const LdmLane *)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int m = 0; m < NUM; m++) {
            uint32_t lo = TRANS ? M[m][2 * t][g] : M[m][g][2 * t];
            uint32_t hi = TRANS ? M[m][2 * t + 1][g] : M[m][g][2 * t + 1];
            p->r[m] = lo | hi << 16;
        }
    }
}

// cp.async state of one CUDA thread of the block in flight on this OS thread.
struct CpCopy {
    unsigned char *dst;
    unsigned char bytes[16];
    int size;
    uint64_t group;    // the number of commits before it was issued
};
struct CpThread {
    uint64_t block_serial = 0;
    uint64_t committed = 0;
    std::vector<CpCopy> pending;
};
inline thread_local std::vector<CpThread> cp_threads;

inline CpThread &cp_thread(const char *what) {
    Fiber *f = running_fiber(what);
    Worker &w = worker();
    if (cp_threads.size() <= (size_t)f->tid) cp_threads.resize((size_t)f->tid + 1);
    CpThread &s = cp_threads[(size_t)f->tid];
    if (s.block_serial != w.block_serial) {  // a new block: what the last one left is dropped (see the top)
        s.block_serial = w.block_serial;
        s.committed = 0;
        s.pending.clear();
    }
    return s;
}

inline void cp_issue(void *dst, const void *src, int size, int src_bytes, const char *file, int line) {
    Fiber *f = running_fiber("cp.async");
    const char *bad = ((uintptr_t)dst % (uintptr_t)size) ? "destination"
                      : src_bytes > 0 && ((uintptr_t)src % (uintptr_t)size) ? "source" : nullptr;
    char b[64];
    if (bad) {
        block_location(b, sizeof b);
        cuemu_fail("%s: %s: cp.async of %d bytes with a %s address %p that is not %d-byte aligned, at %s:%d", b,
                   ThreadName(f).s, size, bad, bad[0] == 'd' ? dst : src, size, file, line);
    }
    if (src_bytes < 0 || src_bytes > size) {
        block_location(b, sizeof b);
        cuemu_fail("%s: %s: cp.async of %d bytes reading %d source bytes (must be 0..%d), at %s:%d", b,
                   ThreadName(f).s, size, src_bytes, size, file, line);
    }
    if (src_bytes > 0 && !in_allocation(src, (size_t)src_bytes, true)) {
        block_location(b, sizeof b);
        cuemu_fail("%s: %s: cp.async source %p is not global memory from cudaMalloc, at %s:%d", b, ThreadName(f).s,
                   src, file, line);
    }
    prof::count_tensor_op('c', size);
    CpThread &s = cp_thread("cp.async");
    CpCopy c;
    c.dst = (unsigned char *)dst;
    memset(c.bytes, 0, sizeof c.bytes);
    if (src_bytes > 0) memcpy(c.bytes, src, (size_t)src_bytes);
    c.size = size;
    c.group = s.committed;
    s.pending.push_back(c);
    if (settings().poison) memset(dst, 0xFF, (size_t)size);  // until the wait: a missing wait reads NaN
}

// Lands, in issue order, every pending copy of a group older than `below`.
inline void cp_land(CpThread &s, uint64_t below) {
    size_t keep = 0;
    for (size_t i = 0; i < s.pending.size(); i++) {
        CpCopy &c = s.pending[i];
        if (c.group < below) memcpy(c.dst, c.bytes, (size_t)c.size);
        else s.pending[keep++] = c;
    }
    s.pending.resize(keep);
}

}  // namespace mma
}  // namespace cuemu

// D = A * B + C, one m16n8k16 tile per warp (D may be C).
inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]
                           MMA_SITE) {
    cuemu::mma::MmaLane me{a, b, c, d};
    cuemu::warp_collective(cuemu::OP_MMA, 0, cuemu::mma::mma_16816_run, &me, file, line);
}

// NUM (1, 2 or 4) 8x8 b16 matrices from shared memory: lane 8m+r gives the
// address of row r of matrix m; r[m] is this lane's part of matrix m.
template <int NUM, bool TRANS = false>
inline void ldmatrix(uint32_t (&r)[NUM], const void *row MMA_SITE) {
    static_assert(NUM == 1 || NUM == 2 || NUM == 4, "ldmatrix: .x1, .x2 or .x4");
    cuemu::Fiber *f = cuemu::running_fiber("ldmatrix");
    int lane = f->tid & 31;
    if (lane < 8 * NUM && ((uintptr_t)row & 15)) {  // only lanes 0 .. 8*NUM-1 give addresses
        char b[64];
        cuemu::block_location(b, sizeof b);
        cuemu_fail("%s: %s (lane %d) gives ldmatrix.x%d%s the row address %p, which is not 16-byte aligned, at %s:%d",
                   b, cuemu::ThreadName(f).s, lane, NUM, TRANS ? ".trans" : "", row, file, line);
    }
    cuemu::mma::LdmLane me{(const unsigned char *)row, r};
    cuemu::warp_collective(cuemu::OP_LDMATRIX, NUM * 2 + TRANS, cuemu::mma::ldmatrix_run<NUM, TRANS>, &me, file, line);
}

template <int N>
inline void cp_async(void *smem_dst, const void *gmem_src MMA_SITE) {
    static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
    cuemu::mma::cp_issue(smem_dst, gmem_src, N, N, file, line);
}

template <int N>
inline void cp_async_zfill(void *smem_dst, const void *gmem_src, int src_bytes MMA_SITE) {
    static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
    cuemu::mma::cp_issue(smem_dst, gmem_src, N, src_bytes, file, line);
}

inline void cp_async_commit(MMA_SITE_ONLY) {
    (void)file, (void)line;
    cuemu::mma::cp_thread("cp.async.commit_group").committed++;
}

template <int N>
inline void cp_async_wait(MMA_SITE_ONLY) {
    static_assert(N >= 0, "cp.async.wait_group N: N >= 0");
    (void)file, (void)line;
    cuemu::mma::CpThread &s = cuemu::mma::cp_thread("cp.async.wait_group");
    if (s.committed > (uint64_t)N) cuemu::mma::cp_land(s, s.committed - (uint64_t)N);
}

inline void cp_async_wait_all(MMA_SITE_ONLY) {  // PTX: commit_group, then wait_group 0
    (void)file, (void)line;
    cuemu::mma::CpThread &s = cuemu::mma::cp_thread("cp.async.wait_all");
    s.committed++;
    cuemu::mma::cp_land(s, s.committed);
}

#endif  // __CUDACC__
#endif  // S1C_MMA_CUH
