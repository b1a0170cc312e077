// Tests of the tensor-core primitives of common/mma.cuh in the CUDA emulation:
// the ldmatrix and mma.sync m16n8k16 register layouts element by element
// against the PTX ISA's tables (written out again here, independently of the
// emulator's code), one 16x8x16 product against plain C, cp.async's group and
// zero-fill semantics, and a tiled GEMM built from cp.async double buffering,
// ldmatrix (plain and .trans) and mma.sync against a double-precision
// reference within the bound stated in mma.cuh. Runs under every schedule
// (tests/run.sh); also compiles with nvcc (make build/cuda/emu_mma.o).
#include "common/cuemu.h"
#include "common/mma.cuh"
#include "tests/test.h"
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng_next(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}
static int irand(uint32_t *s, int lo, int hi) { return lo + (int)(rng_next(s) % (uint32_t)(hi - lo + 1)); }
static float frand(uint32_t *s) { return (float)rng_next(s) / 8388608.0f - 1.0f; }  // [-1, 1)

static uint16_t bf16_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16(x)); }
static float bf16_value(uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }

template <typename T>
static T *device_copy(const T *host, size_t n) {
    T *d;
    cudaCheck(cudaMalloc(&d, n * sizeof(T)));
    cudaCheck(cudaMemcpy(d, host, n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// ----------------------------------------------------------------------------
// The PTX ISA's fragment tables for mma.m16n8k16 (.bf16 A and B, .f32 C and D),
// as the ISA writes them: per element index i of the fragment (two bf16 per
// .b32 register for A and B, lower i in the low half), groupID = lane >> 2,
// threadID_in_group = lane % 4.

static void a_elem(int lane, int i, int *row, int *col) {  // i = 0..7
    int g = lane >> 2, t = lane % 4;
    *row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
    *col = i < 4 ? t * 2 + (i & 1) : t * 2 + (i & 1) + 8;
}
static void b_elem(int lane, int i, int *row, int *col) {  // i = 0..3; row is k, col is n
    int g = lane >> 2, t = lane % 4;
    *row = i < 2 ? t * 2 + (i & 1) : t * 2 + (i & 1) + 8;
    *col = g;
}
static void c_elem(int lane, int i, int *row, int *col) {  // i = 0..3
    int g = lane >> 2, t = lane % 4;
    *row = i < 2 ? g : g + 8;
    *col = t * 2 + (i & 1);
}

// Packs A (16x16), B (16x8, k x n), C (16x8) into the 32 lanes' registers.
static void pack_fragments(uint32_t *a, uint32_t *b, float *c, const float *A, const float *B, const float *C) {
    memset(a, 0, 32 * 4 * sizeof(uint32_t));
    memset(b, 0, 32 * 2 * sizeof(uint32_t));
    for (int lane = 0; lane < 32; lane++) {
        int r, k;
        for (int i = 0; i < 8; i++) {
            a_elem(lane, i, &r, &k);
            a[lane * 4 + i / 2] |= (uint32_t)bf16_bits(A[r * 16 + k]) << (16 * (i & 1));
        }
        for (int i = 0; i < 4; i++) {
            b_elem(lane, i, &k, &r);
            b[lane * 2 + i / 2] |= (uint32_t)bf16_bits(B[k * 8 + r]) << (16 * (i & 1));
        }
        for (int i = 0; i < 4; i++) {
            c_elem(lane, i, &r, &k);
            c[lane * 4 + i] = C[r * 8 + k];
        }
    }
}

// One warp per block: block b multiplies fragments b.
__global__ void mma_kernel(float *d, const uint32_t *a, const uint32_t *b, const float *c) {
    int lane = threadIdx.x, f = blockIdx.x;
    uint32_t ra[4], rb[2];
    float rc[4], rd[4];
    for (int i = 0; i < 4; i++) ra[i] = a[(f * 32 + lane) * 4 + i];
    for (int i = 0; i < 2; i++) rb[i] = b[(f * 32 + lane) * 2 + i];
    for (int i = 0; i < 4; i++) rc[i] = c[(f * 32 + lane) * 4 + i];
    mma_bf16_16816(rd, ra, rb, rc);
    for (int i = 0; i < 4; i++) d[(f * 32 + lane) * 4 + i] = rd[i];
}

// Runs nf products (A, B, C given per product) and unpacks D through the table.
static void run_mma(float *D, const float *A, const float *B, const float *C, int nf) {
    uint32_t *a = (uint32_t *)malloc((size_t)nf * 128 * 4), *b = (uint32_t *)malloc((size_t)nf * 64 * 4);
    float *c = (float *)malloc((size_t)nf * 128 * 4), *d = (float *)malloc((size_t)nf * 128 * 4);
    for (int f = 0; f < nf; f++)
        pack_fragments(a + f * 128, b + f * 64, c + f * 128, A + f * 256, B + f * 128, C + f * 128);
    uint32_t *da = device_copy(a, (size_t)nf * 128), *db = device_copy(b, (size_t)nf * 64);
    float *dc = device_copy(c, (size_t)nf * 128), *dd;
    cudaCheck(cudaMalloc(&dd, (size_t)nf * 128 * sizeof(float)));
    CU_LAUNCH(mma_kernel, nf, 32, 0, 0)(dd, da, db, dc);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(d, dd, (size_t)nf * 128 * sizeof(float), cudaMemcpyDeviceToHost));
    for (int f = 0; f < nf; f++)
        for (int lane = 0; lane < 32; lane++)
            for (int i = 0; i < 4; i++) {
                int r, col;
                c_elem(lane, i, &r, &col);
                D[f * 128 + r * 8 + col] = d[(f * 32 + lane) * 4 + i];
            }
    cudaCheck(cudaFree(da));
    cudaCheck(cudaFree(db));
    cudaCheck(cudaFree(dc));
    cudaCheck(cudaFree(dd));
    free(a); free(b); free(c); free(d);
}

static void test_mma_layout_one_hot(void) {
    TEST_BEGIN("mma.sync m16n8k16 layouts element by element: every one-hot A[i][k] and B[k][j]");
    // 256 products with A = e_ik (B distinct integers): D = C + row i of D gets B[k][:], and
    // 128 products with B = e_kj (A distinct integers): D column j gets A[:][k]. C = 1000 * (r*8+c)
    // marks every D position.
    int nf = 256 + 128;
    float *A = (float *)calloc((size_t)nf * 256, sizeof(float)), *B = (float *)calloc((size_t)nf * 128, sizeof(float));
    float *C = (float *)malloc((size_t)nf * 128 * sizeof(float)), *D = (float *)malloc((size_t)nf * 128 * sizeof(float));
    for (int f = 0; f < nf; f++) {
        for (int e = 0; e < 128; e++) C[f * 128 + e] = 1000.0f * (float)e;
        if (f < 256) {
            A[f * 256 + f] = 1.0f;
            for (int e = 0; e < 128; e++) B[f * 128 + e] = (float)(e + 1);
        } else {
            B[f * 128 + (f - 256)] = 1.0f;
            for (int e = 0; e < 256; e++) A[f * 256 + e] = (float)(e + 1);   // integers <= 256: exact in bf16
        }
    }
    run_mma(D, A, B, C, nf);
    for (int f = 0; f < nf; f++)
        for (int r = 0; r < 16; r++)
            for (int j = 0; j < 8; j++) {
                float want = 1000.0f * (float)(r * 8 + j);
                if (f < 256) { int i = f / 16, k = f % 16; if (r == i) want += (float)(k * 8 + j + 1); }
                else { int k = (f - 256) / 8, jj = (f - 256) % 8; if (j == jj) want += (float)(r * 16 + k + 1); }
                CHECK(D[f * 128 + r * 8 + j] == want, "product %d: D[%d][%d] = %g, want %g", f, r, j,
                      D[f * 128 + r * 8 + j], want);
            }
    free(A); free(B); free(C); free(D);
    TEST_END();
}

static void test_mma_product(void) {
    TEST_BEGIN("mma.sync m16n8k16: a 16x8x16 product against plain C (integers exactly, reals within 2*gamma_16)");
    uint32_t s = 7;
    float A[2 * 256], B[2 * 128], C[2 * 128], D[2 * 128];
    // product 0: small integers, every sum exact in fp32 whatever the order
    for (int e = 0; e < 256; e++) A[e] = (float)irand(&s, -8, 8);
    for (int e = 0; e < 128; e++) B[e] = (float)irand(&s, -8, 8);
    for (int e = 0; e < 128; e++) C[e] = (float)irand(&s, -100, 100);
    // product 1: reals of mixed sizes (inputs rounded to bf16 first: what the registers hold)
    for (int e = 0; e < 256; e++) A[256 + e] = bf16_value(bf16_bits(frand(&s) * ldexpf(1.0f, irand(&s, -6, 6))));
    for (int e = 0; e < 128; e++) B[128 + e] = bf16_value(bf16_bits(frand(&s) * ldexpf(1.0f, irand(&s, -6, 6))));
    for (int e = 0; e < 128; e++) C[128 + e] = frand(&s) * 10.0f;
    run_mma(D, A, B, C, 2);
    double u = ldexp(1.0, -24), gamma16 = 16 * u / (1 - 16 * u), worst = 0.0;
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 8; j++) {
                double exact = C[f * 128 + i * 8 + j], mag = fabs(exact);
                for (int k = 0; k < 16; k++) {
                    double p = (double)A[f * 256 + i * 16 + k] * (double)B[f * 128 + k * 8 + j];
                    exact += p;
                    mag += fabs(p);
                }
                double got = D[f * 128 + i * 8 + j], err = fabs(got - exact);
                if (f == 0) CHECK(got == exact, "integers: D[%d][%d] = %g, want %g", i, j, got, exact);
                else {
                    CHECK(err <= 2 * gamma16 * mag, "reals: D[%d][%d] = %.9g, exact %.9g, error %.3g > bound %.3g", i, j,
                          got, exact, err, 2 * gamma16 * mag);
                    if (mag > 0 && err / (gamma16 * mag) > worst) worst = err / (gamma16 * mag);
                }
            }
    printf("note: mma 16x8x16 on reals: worst error %.3f x gamma_16 * sum|terms| (bound 2)\n", worst);
    TEST_END();
}

// ----------------------------------------------------------------------------
// ldmatrix: four 8x8 matrices in shared memory, rows 32 bytes apart (16 bf16, the
// matrix in the first 8) so that each row address counts. Element (m, r, c) holds
// the integer 64m + 8r + c (exact in bf16).

template <int NUM, bool TRANS>
__device__ void ldmatrix_one(uint32_t *out, const __nv_bfloat16 (*s)[8][16]) {
    int lane = threadIdx.x;
    uint32_t r[NUM];
    ldmatrix<NUM, TRANS>(r, &s[(lane / 8) % NUM][lane % 8][0]);
    for (int m = 0; m < NUM; m++) out[lane * 4 + m] = r[m];
}

__global__ void ldmatrix_kernel(uint32_t *out, const __nv_bfloat16 *in) {
    __shared__ __align__(16) __nv_bfloat16 s[4][8][16];
    for (int i = threadIdx.x; i < 4 * 8 * 16; i += 32) (&s[0][0][0])[i] = in[i];
    __syncthreads();
    ldmatrix_one<1, false>(out + 0 * 128, s);
    ldmatrix_one<2, false>(out + 1 * 128, s);
    ldmatrix_one<4, false>(out + 2 * 128, s);
    ldmatrix_one<1, true>(out + 3 * 128, s);
    ldmatrix_one<2, true>(out + 4 * 128, s);
    ldmatrix_one<4, true>(out + 5 * 128, s);
}

static void test_ldmatrix_layout(void) {
    TEST_BEGIN("ldmatrix .x1/.x2/.x4 and .trans layouts element by element (PTX ISA: lane l gets row l/4, "
               "columns 2(l%4), 2(l%4)+1)");
    __nv_bfloat16 in[4 * 8 * 16];
    for (int m = 0; m < 4; m++)
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 16; c++) in[(m * 8 + r) * 16 + c] = __float2bfloat16(c < 8 ? (float)(64 * m + 8 * r + c) : -1.0f);
    __nv_bfloat16 *din = device_copy(in, 4 * 8 * 16);
    uint32_t *dout, out[6 * 128];
    cudaCheck(cudaMalloc(&dout, sizeof out));
    cudaCheck(cudaMemset(dout, 0, sizeof out));
    CU_LAUNCH(ldmatrix_kernel, 1, 32, 0, 0)(dout, din);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost));
    const int nums[6] = {1, 2, 4, 1, 2, 4};
    for (int v = 0; v < 6; v++) {
        bool trans = v >= 3;
        for (int lane = 0; lane < 32; lane++)
            for (int m = 0; m < nums[v]; m++)
                for (int half = 0; half < 2; half++) {
                    int g = lane / 4, t = lane % 4;
                    int row = trans ? 2 * t + half : g, col = trans ? g : 2 * t + half;
                    float want = (float)(64 * m + 8 * row + col);
                    float got = bf16_value((uint16_t)(out[v * 128 + lane * 4 + m] >> (16 * half)));
                    CHECK(got == want, "ldmatrix.x%d%s lane %d reg %d half %d: %g, want %g", nums[v],
                          trans ? ".trans" : "", lane, m, half, got, want);
                }
    }
    cudaCheck(cudaFree(din));
    cudaCheck(cudaFree(dout));
    TEST_END();
}

// ----------------------------------------------------------------------------
// cp.async: groups land at their wait; zero-fill

__global__ void cp_async_kernel(float *out, const float *in) {
    __shared__ __align__(16) float s[32 * 8];
    int t = threadIdx.x;
    float *mine = s + t * 8;
    cp_async<4>(mine + 0, in + t * 8 + 0);        // group 0: 4 + 4 + 8 bytes
    cp_async<4>(mine + 1, in + t * 8 + 1);
    cp_async<8>(mine + 2, in + t * 8 + 2);
    cp_async_commit();
    cp_async<16>(mine + 4, in + t * 8 + 4);       // group 1: 16 bytes
    cp_async_commit();
    cp_async_wait<1>();                           // group 0 has landed; group 1 may not have
    for (int i = 0; i < 4; i++) out[t * 32 + i] = mine[i];
    cp_async_wait<0>();
    for (int i = 0; i < 8; i++) out[t * 32 + 4 + i] = mine[i];
    cp_async_zfill<16>(mine, in + t * 8, 4 * (t % 5));  // 0, 4, 8, 12 or 16 bytes read, the rest zero
    cp_async_wait_all();                                 // also lands what was never committed
    for (int i = 0; i < 4; i++) out[t * 32 + 12 + i] = mine[i];
}

static void test_cp_async(void) {
    TEST_BEGIN("cp.async 4/8/16 bytes: groups land at wait_group, wait_all lands uncommitted copies, zero-fill");
    float in[32 * 8], out[32 * 32];
    for (int i = 0; i < 32 * 8; i++) in[i] = (float)(i + 1);
    float *din = device_copy(in, 32 * 8), *dout;
    cudaCheck(cudaMalloc(&dout, sizeof out));
    CU_LAUNCH(cp_async_kernel, 1, 32, 0, 0)(dout, din);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost));
    for (int t = 0; t < 32; t++) {
        for (int i = 0; i < 4; i++) CHECK(out[t * 32 + i] == in[t * 8 + i], "thread %d: after wait_group 1, [%d] = %g", t, i, out[t * 32 + i]);
        for (int i = 0; i < 8; i++) CHECK(out[t * 32 + 4 + i] == in[t * 8 + i], "thread %d: after wait_group 0, [%d] = %g", t, i, out[t * 32 + 4 + i]);
        for (int i = 0; i < 4; i++) {
            float want = i < t % 5 ? in[t * 8 + i] : 0.0f;
            CHECK(out[t * 32 + 12 + i] == want, "thread %d: zero-fill of %d bytes, [%d] = %g, want %g", t, 4 * (t % 5), i,
                  out[t * 32 + 12 + i], want);
        }
    }
    cudaCheck(cudaFree(din));
    cudaCheck(cudaFree(dout));
    TEST_END();
}

#ifndef __CUDACC__
// The emulator's own promise (a GPU may land a copy early): before its wait, the
// destination is poison.
__global__ void cp_async_poison_kernel(float *out, const float *in) {
    __shared__ __align__(16) float s[4];
    cp_async<16>(s, in);
    cp_async_commit();
    out[0] = s[0];   // no wait: poison
    cp_async_wait<0>();
    out[1] = s[0];
}

static void test_cp_async_poison(void) {
    TEST_BEGIN("cp.async (emulator): the destination is poison (NaN) until the wait");
    float in[4] = {1, 2, 3, 4}, out[2];
    float *din = device_copy(in, 4), *dout;
    cudaCheck(cudaMalloc(&dout, sizeof out));
    CU_LAUNCH(cp_async_poison_kernel, 1, 1, 0, 0)(dout, din);
    cudaCheck(cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost));
    const char *poison = getenv("CUEMU_POISON");   // CUEMU_POISON=0 turns the poison off
    if (!poison || strcmp(poison, "0") != 0) CHECK(isnan(out[0]), "before the wait: %g, want NaN", out[0]);
    CHECK(out[1] == 1.0f, "after the wait: %g, want 1", out[1]);
    cudaCheck(cudaFree(din));
    cudaCheck(cudaFree(dout));
    TEST_END();
}
#endif

// ----------------------------------------------------------------------------
// A tiled GEMM: C (M x N, fp32) = A (M x K) * B, bf16 in. B is (N x K) row-major
// (an nn.Linear weight: B fragments by plain ldmatrix) or, with BT, (K x N)
// row-major (fragments by ldmatrix.trans). Blocks of 64 x 64 outputs, 4 warps of
// 32 x 32, K in steps of 32 through two shared-memory stages filled by cp.async:
// the copy of step kt+1 is in flight while step kt is multiplied. Rows past M are
// zero-filled (cp.async with 0 source bytes) and not stored. N % 64 == 0, K % 32 == 0.

#define G_BM 64
#define G_BN 64
#define G_BK 32
#define G_PAD 8   // rows of 80 bytes: still 16-byte aligned, and ldmatrix's 8 rows hit different banks

template <bool BT>
__global__ void __launch_bounds__(128) gemm_kernel(float *c, const __nv_bfloat16 *a, const __nv_bfloat16 *b,
                                                   int M, int N, int K) {
    __shared__ __align__(16) __nv_bfloat16 As[2][G_BM][G_BK + G_PAD];
    __shared__ __align__(16) __nv_bfloat16 Bs[2][BT ? G_BK : G_BN][BT ? G_BN + G_PAD : G_BK + G_PAD];
    int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, wm = warp / 2, wn = warp % 2;
    int m0 = blockIdx.y * G_BM, n0 = blockIdx.x * G_BN;

    auto load = [&](int stage, int k0) {
        for (int ch = tid; ch < G_BM * G_BK / 8; ch += 128) {   // 16-byte chunks of 8 bf16
            int r = ch / (G_BK / 8), col = ch % (G_BK / 8) * 8;
            bool ok = m0 + r < M;
            cp_async_zfill<16>(&As[stage][r][col], ok ? a + (size_t)(m0 + r) * K + k0 + col : a, ok ? 16 : 0);
        }
        for (int ch = tid; ch < G_BN * G_BK / 8; ch += 128) {
            if (BT) {
                int r = ch / (G_BN / 8), col = ch % (G_BN / 8) * 8;
                cp_async<16>(&Bs[stage][r][col], b + (size_t)(k0 + r) * N + n0 + col);
            } else {
                int r = ch / (G_BK / 8), col = ch % (G_BK / 8) * 8;
                cp_async<16>(&Bs[stage][r][col], b + (size_t)(n0 + r) * K + k0 + col);
            }
        }
    };

    float acc[2][4][4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    int KT = K / G_BK;
    load(0, 0);
    cp_async_commit();
    for (int kt = 0; kt < KT; kt++) {
        if (kt + 1 < KT) load((kt + 1) & 1, (kt + 1) * G_BK);
        cp_async_commit();       // (an empty group on the last step keeps the count uniform)
        cp_async_wait<1>();      // everything but the newest group: stage kt & 1 has landed
        __syncthreads();         // ... for every thread's copies
        int st = kt & 1;
        for (int ks = 0; ks < G_BK; ks += 16) {
            uint32_t af[2][4], bf[4][2];
            for (int mi = 0; mi < 2; mi++)   // matrices: rows 0-7|8-15 x k 0-7|8-15, in a[0..3] order
                ldmatrix<4>(af[mi], &As[st][wm * 32 + mi * 16 + lane % 16][ks + lane / 16 * 8]);
            for (int np = 0; np < 2; np++) {  // two n8 tiles per ldmatrix.x4: (n 0-7, k lo), (n 0-7, k hi), (n 8-15, ...)
                uint32_t q[4];
                if (BT)
                    ldmatrix<4, true>(q, &Bs[st][ks + lane % 8 + (lane / 8 % 2) * 8][wn * 32 + np * 16 + lane / 16 * 8]);
                else
                    ldmatrix<4>(q, &Bs[st][wn * 32 + np * 16 + lane % 8 + lane / 16 * 8][ks + (lane / 8 % 2) * 8]);
                bf[2 * np][0] = q[0];
                bf[2 * np][1] = q[1];
                bf[2 * np + 1][0] = q[2];
                bf[2 * np + 1][1] = q[3];
            }
            for (int mi = 0; mi < 2; mi++)
                for (int ni = 0; ni < 4; ni++) mma_bf16_16816(acc[mi][ni], af[mi], bf[ni], acc[mi][ni]);
        }
        __syncthreads();         // every warp is done with stage kt & 1 before step kt+2's copy overwrites it
    }
    int g = lane / 4, t = lane % 4;
    for (int mi = 0; mi < 2; mi++)
        for (int ni = 0; ni < 4; ni++)
            for (int e = 0; e < 4; e++) {
                int row = m0 + wm * 32 + mi * 16 + g + (e / 2) * 8, col = n0 + wn * 32 + ni * 8 + 2 * t + e % 2;
                if (row < M) c[(size_t)row * N + col] = acc[mi][ni][e];
            }
}

static void test_gemm(bool bt) {
    TEST_BEGIN(bt ? "tiled GEMM (cp.async double buffer, ldmatrix.trans, mma.sync), B (K x N): within 2*gamma_K"
                  : "tiled GEMM (cp.async double buffer, ldmatrix, mma.sync), B (N x K): within 2*gamma_K");
    int M = 100, N = 128, K = 96;   // M: a partial block (zero-filled rows); K: 3 steps, both stages, odd count
    uint32_t s = bt ? 11 : 5;
    __nv_bfloat16 *a = (__nv_bfloat16 *)malloc((size_t)M * K * 2), *b = (__nv_bfloat16 *)malloc((size_t)N * K * 2);
    for (int i = 0; i < M * K; i++) a[i] = __float2bfloat16(frand(&s));
    for (int i = 0; i < N * K; i++) b[i] = __float2bfloat16(frand(&s));
    __nv_bfloat16 *da = device_copy(a, (size_t)M * K), *db = device_copy(b, (size_t)N * K);
    float *dc, *c = (float *)malloc((size_t)M * N * sizeof(float));
    cudaCheck(cudaMalloc(&dc, (size_t)M * N * sizeof(float)));
    dim3 grid(N / G_BN, (M + G_BM - 1) / G_BM);
    if (bt) CU_LAUNCH(gemm_kernel<true>, grid, 128, 0, 0)(dc, da, db, M, N, K);
    else CU_LAUNCH(gemm_kernel<false>, grid, 128, 0, 0)(dc, da, db, M, N, K);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(c, dc, (size_t)M * N * sizeof(float), cudaMemcpyDeviceToHost));
    double u = ldexp(1.0, -24), gammaK = K * u / (1 - K * u), worst = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double exact = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double bv = __bfloat162float(bt ? b[(size_t)k * N + j] : b[(size_t)j * K + k]);
                double p = (double)__bfloat162float(a[(size_t)i * K + k]) * bv;
                exact += p;
                mag += fabs(p);
            }
            double err = fabs(c[(size_t)i * N + j] - exact);
            CHECK(err <= 2 * gammaK * mag, "C[%d][%d] = %.9g, exact %.9g: error %.3g > %.3g", i, j, c[(size_t)i * N + j],
                  exact, err, 2 * gammaK * mag);
            if (mag > 0 && err / (gammaK * mag) > worst) worst = err / (gammaK * mag);
        }
    printf("note: GEMM %dx%dx%d%s: worst error %.3f x gamma_K * sum|a b| (bound 2)\n", M, N, K, bt ? " (B^T)" : "", worst);
    cudaCheck(cudaFree(da));
    cudaCheck(cudaFree(db));
    cudaCheck(cudaFree(dc));
    free(a); free(b); free(c);
    TEST_END();
}

int main(void) {
    test_ldmatrix_layout();
    test_mma_layout_one_hot();
    test_mma_product();
    test_cp_async();
#ifndef __CUDACC__
    test_cp_async_poison();
#endif
    test_gemm(false);
    test_gemm(true);
    return test_summary();
}
