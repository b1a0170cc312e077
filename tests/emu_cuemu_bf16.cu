// Tests of bf16 in the CUDA emulation: round-to-nearest-even conversions
// (against an independent integer implementation), the device-only bf16
// functions common/cuemu.h supplies, and bf16 through shuffles and atomics.
#include "common/cuemu.h"
#include "tests/test.h"
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

// The reference: float -> bf16 by integer arithmetic on the bits, round to
// nearest, ties to even; every NaN becomes the canonical 0x7FFF.
static uint16_t bf16_bits_rne(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
    uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)((u + 0x7FFFu + lsb) >> 16);
}

static float float_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t bits_of(__nv_bfloat16 h) { return __bfloat16_as_ushort(h); }

static void test_conversion(void) {
    TEST_BEGIN("float -> bf16 rounds to nearest even (ties, NaN, Inf, denormals, 2^24 samples)");
    // hand-picked: exact ties go to the even neighbour
    struct { uint32_t in; uint16_t want; } cases[] = {
        {0x3F808000u, 0x3F80},  // 1 + 2^-8: halfway between 1 and 1 + 2^-7, even is 1
        {0x3F818000u, 0x3F82},  // 1 + 3*2^-8: halfway, even is 1 + 2^-6
        {0x3F808001u, 0x3F81},  // just above halfway rounds up
        {0x3F807FFFu, 0x3F80},  // just below halfway rounds down
        {0x7F7FFFFFu, 0x7F80},  // FLT_MAX rounds to +Inf
        {0x7F800000u, 0x7F80},  // +Inf stays
        {0xFF800000u, 0xFF80},  // -Inf stays
        {0x7FC00000u, 0x7FFF},  // NaN becomes the canonical NaN
        {0x00008000u, 0x0000},  // a denormal tie to even (0)
        {0x00018000u, 0x0002},  // a denormal tie to even (2)
        {0x80000000u, 0x8000},  // -0
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = bits_of(__float2bfloat16(float_from_bits(cases[i].in)));
        CHECK(got == cases[i].want, "0x%08x -> 0x%04x, want 0x%04x", cases[i].in, got, cases[i].want);
    }
    // every 256th float bit pattern (all exponents, sign and low-mantissa patterns) against the reference
    for (uint64_t u = 0x5Au; u <= 0xFFFFFFFFu; u += 256) {
        float f = float_from_bits((uint32_t)u);
        uint16_t got = bits_of(__float2bfloat16(f)), want = bf16_bits_rne(f);
        CHECK(got == want, "0x%08x -> 0x%04x, want 0x%04x", (uint32_t)u, got, want);
    }
    // bf16 -> float is exact: every bf16 value
    for (uint32_t b = 0; b < 65536; b++) {
        __nv_bfloat16 h = __ushort_as_bfloat16((unsigned short)b);
        float f = __bfloat162float(h);
        uint32_t u;
        memcpy(&u, &f, 4);
        bool nan = (b & 0x7FFF) > 0x7F80;
        CHECK(nan ? isnan(f) : u == b << 16, "bf16 0x%04x -> float 0x%08x", b, u);
    }
    TEST_END();
}

// ----------------------------------------------------------------------------
// The device-only functions, in a kernel

__global__ void bf16_math_kernel(float *out, const __nv_bfloat16 *x) {
    int i = threadIdx.x;
    __nv_bfloat16 v = x[i];
    out[0 * 32 + i] = __bfloat162float(__hfma(v, v, v));
    out[1 * 32 + i] = __bfloat162float(hexp(v));
    out[2 * 32 + i] = __bfloat162float(hsqrt(__habs(v)));
    out[3 * 32 + i] = __bfloat162float(hrsqrt(__habs(v)));
    // a warp reduction in bf16 through shuffles (exact for these small integers)
    __nv_bfloat16 s = __float2bfloat16((float)(i % 4));
    for (int offset = 16; offset > 0; offset >>= 1) s = __hadd(s, __shfl_xor_sync(0xffffffff, s, offset));
    out[4 * 32 + i] = __bfloat162float(s);
    __nv_bfloat162 pair = __floats2bfloat162_rn((float)i, (float)-i);
    pair = __shfl_down_sync(0xffffffff, pair, 1);
    out[5 * 32 + i] = __low2float(pair) + 1000.0f * __high2float(pair);
}

__global__ void bf16_atomic_kernel(__nv_bfloat16 *acc) { atomicAdd(acc, __float2bfloat16(1.0f)); }

static float bf16_round(float f) { return __bfloat162float(__float2bfloat16(f)); }

static void test_device_functions(void) {
    TEST_BEGIN("bf16 device functions: __hfma, hexp, hsqrt, hrsqrt, shuffles, atomicAdd");
    __nv_bfloat16 x[32];
    for (int i = 0; i < 32; i++) x[i] = __float2bfloat16(0.25f * (float)(i - 16) + 0.0625f);
    __nv_bfloat16 *d_x;
    float *d_out, out[6 * 32];
    cudaCheck(cudaMalloc(&d_x, sizeof x));
    cudaCheck(cudaMalloc(&d_out, sizeof out));
    cudaCheck(cudaMemcpy(d_x, x, sizeof x, cudaMemcpyHostToDevice));
    CU_LAUNCH(bf16_math_kernel, 1, 32, 0, 0)(d_out, d_x);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 32; i++) {
        float v = __bfloat162float(x[i]);
        // each result is the exact value rounded once to bf16: within half a bf16 ulp (2^-8 relative)
        float want[4] = {v * v + v, expf(v), sqrtf(fabsf(v)), 1.0f / sqrtf(fabsf(v))};
        for (int k = 0; k < 4; k++)
            CHECK(fabsf(out[k * 32 + i] - want[k]) <= fabsf(want[k]) * (1.0f / 256.0f) &&
                      out[k * 32 + i] == bf16_round(out[k * 32 + i]),
                  "function %d of %g: %g, want %g", k, v, out[k * 32 + i], want[k]);
        CHECK(out[4 * 32 + i] == 48.0f, "bf16 warp sum at lane %d: %g, want 48", i, out[4 * 32 + i]);
        int src = i < 31 ? i + 1 : i;
        CHECK(out[5 * 32 + i] == (float)src - 1000.0f * (float)src, "bf162 shuffle at lane %d: %g", i,
              out[5 * 32 + i]);
    }
    __nv_bfloat16 *d_acc, acc = __float2bfloat16(0.0f);
    cudaCheck(cudaMalloc(&d_acc, sizeof acc));
    cudaCheck(cudaMemcpy(d_acc, &acc, sizeof acc, cudaMemcpyHostToDevice));
    CU_LAUNCH(bf16_atomic_kernel, 2, 100, 0, 0)(d_acc);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaMemcpy(&acc, d_acc, sizeof acc, cudaMemcpyDeviceToHost));
    CHECK(__bfloat162float(acc) == 200.0f, "200 bf16 atomicAdds of 1: %g", __bfloat162float(acc));  // exact to 256
    cudaCheck(cudaFree(d_x));
    cudaCheck(cudaFree(d_out));
    cudaCheck(cudaFree(d_acc));
    TEST_END();
}

int main(void) {
    test_conversion();
    test_device_functions();
    return test_summary();
}
