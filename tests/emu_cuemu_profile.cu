// Tests of the emulator's memory-access profile (CUEMU_PROFILE=1, common/cuemu_profile.h)
// on kernels whose figures are derived by hand. One block of one warp (32 lanes) each:
//   coalesced copy of 32 floats: 128 contiguous bytes = 4 sectors of 32 B per request
//   stride-32 copy: lane l touches float 32*l, 128 B apart: 32 sectors per request
//   transposed shared read tile[l][0] of float tile[32][32]: word 32*l, bank 0 for
//     every lane: 32 distinct words in one bank = 32 wavefronts, 31 conflicts
//   the same read of a padded tile[32][33]: word 33*l, bank l: 1 wavefront, 0 conflicts
//   broadcast: every lane reads tile[0][0]: one word, 1 wavefront, 0 conflicts
//   lanes that branch to different loads: the figures are "not exact"
//   tensor cores (common/mma.cuh): 2 blocks of 2 warps, each thread one 16-byte cp.async,
//     each warp one ldmatrix.x4 and 3 mma.sync: 128 cp.async (2048 B), 4 ldmatrix, 12 mma
// Run by tests/run.sh in all three schedules (the figures do not depend on the
// order: accesses are paired per lane, not by time), or alone:
//   build/tests/emu_cuemu_profile      (it sets CUEMU_PROFILE=1 itself; the report goes to stderr)
#include "common/cuemu.h"
#include "common/mma.cuh"
#include "tests/test.h"
#include <stdlib.h>

__global__ void copy_coalesced(float *out, const float *in) {
    int l = threadIdx.x;
    cu_st(&out[l], cu_ld(&in[l]));
}

__global__ void copy_stride32(float *out, const float *in) {
    int l = threadIdx.x;
    cu_st(&out[32 * l], cu_ld(&in[32 * l]));
}

// Fills the tile row by row (lane l writes column l: conflict-free), then reads a column.
template <int PAD>
__global__ void transposed_read(float *out, const float *in) {
    __shared__ float tile[32][32 + PAD];
    int l = threadIdx.x;
    for (int r = 0; r < 32; r++) cu_st(&tile[r][l], cu_ld(&in[r * 32 + l]));
    __syncthreads();
    cu_st(&out[l], cu_ld(&tile[l][0]));
}

__global__ void broadcast_read(float *out, const float *in) {
    __shared__ float tile[32];
    int l = threadIdx.x;
    cu_st(&tile[l], cu_ld(&in[l]));
    __syncthreads();
    cu_st(&out[l], cu_ld(&tile[0]));
}

__global__ void divergent(float *out, const float *in) {
    int l = threadIdx.x;
    float x;
    if (l & 1) x = cu_ld(&in[l]);   // odd and even lanes: two instructions (on their own lines: sites are lines)
    else x = cu_ld(&in[32 + l]);
    cu_st(&out[l], x);
}

// Each warp stages 32 x 16 bytes (four 8x8 bf16 matrices) by cp.async, loads them as an
// ldmatrix.x4 A fragment and multiplies it 3 times (the values do not matter here).
__global__ void tensor_ops(float *out, const float *in) {
    __shared__ __align__(16) uint16_t tile[2][32][8];
    int warp = threadIdx.x / 32, l = threadIdx.x % 32;
    cp_async<16>(&tile[warp][l][0], &in[4 * l]);
    cp_async_wait_all();
    __syncwarp();
    uint32_t a[4], b[2] = {0, 0};
    ldmatrix<4>(a, &tile[warp][l][0]);
    float d[4] = {0, 0, 0, 0};
    for (int i = 0; i < 3; i++) mma_bf16_16816(d, a, b, d);
    out[blockIdx.x * 64 + threadIdx.x] = d[0];
}

// The figures are the emulator's (under nvcc the accessors are plain loads and
// stores, and this file only compiles: `make cuda` builds every test).
#ifndef __CUDACC__
static float *d_in, *d_out;

static const cuemu::prof::Figures &last(bool shared, bool store) { return cuemu::profile_last(shared, store); }

static void check_global(const char *name, double want_sectors) {
    TEST_BEGIN(name);
    const cuemu::prof::Figures &ld = last(false, false), &st = last(false, true);
    CHECK(ld.inexact_warps == 0 && st.inexact_warps == 0, "exact warps expected");
    CHECK(ld.bytes == 128 && st.bytes == 128, "bytes loaded %llu, stored %llu, want 128 each",
          (unsigned long long)ld.bytes, (unsigned long long)st.bytes);
    CHECK(ld.requests == 1 && st.requests == 1, "requests %llu/%llu, want 1", (unsigned long long)ld.requests,
          (unsigned long long)st.requests);
    CHECK(ld.units == want_sectors && st.units == want_sectors, "sectors per request load %llu store %llu, want %.0f",
          (unsigned long long)ld.units, (unsigned long long)st.units, want_sectors);
    TEST_END();
}

int main(void) {
    if (setenv("CUEMU_PROFILE", "1", 1) != 0) { perror("setenv"); return 1; }
    cudaCheck(cudaMalloc((void **)&d_in, 32 * 32 * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_out, 32 * 32 * sizeof(float)));
    cudaCheck(cudaMemset(d_in, 0, 32 * 32 * sizeof(float)));

    CU_LAUNCH(copy_coalesced, 1, 32, 0, 0)(d_out, d_in);
    cudaCheck(cudaDeviceSynchronize());
    check_global("profile: coalesced copy of 32 floats is 4 sectors per request", 4);

    CU_LAUNCH(copy_stride32, 1, 32, 0, 0)(d_out, d_in);
    cudaCheck(cudaDeviceSynchronize());
    check_global("profile: stride-32 copy is 32 sectors per request", 32);

    TEST_BEGIN("profile: transposed shared read of tile[32][32] is a 32-way conflict (31 extra wavefronts)");
    CU_LAUNCH(transposed_read<0>, 1, 32, 0, 0)(d_out, d_in);
    cudaCheck(cudaDeviceSynchronize());
    {
        const cuemu::prof::Figures &rd = last(true, false), &wr = last(true, true);
        CHECK(rd.requests == 1 && rd.units == 32 && rd.ideal == 1 && rd.worst_way == 32,
              "read: %llu requests, %llu wavefronts, ideal %llu, worst %d-way; want 1, 32, 1, 32",
              (unsigned long long)rd.requests, (unsigned long long)rd.units, (unsigned long long)rd.ideal, rd.worst_way);
        CHECK(wr.requests == 32 && wr.units == 32 && wr.ideal == 32, "row writes: %llu requests %llu wavefronts, want 32, 32",
              (unsigned long long)wr.requests, (unsigned long long)wr.units);
        CHECK(cuemu::prof::state().last_static == 32 * 32 * 4, "static shared touched %zu, want 4096",
              cuemu::prof::state().last_static);
    }
    TEST_END();

    TEST_BEGIN("profile: the same read of a padded tile[32][33] has no conflict");
    CU_LAUNCH(transposed_read<1>, 1, 32, 0, 0)(d_out, d_in);
    cudaCheck(cudaDeviceSynchronize());
    {
        const cuemu::prof::Figures &rd = last(true, false);
        CHECK(rd.requests == 1 && rd.units == 1 && rd.ideal == 1 && rd.worst_way == 1,
              "read: %llu requests, %llu wavefronts, worst %d-way; want 1, 1, 1", (unsigned long long)rd.requests,
              (unsigned long long)rd.units, rd.worst_way);
    }
    TEST_END();

    TEST_BEGIN("profile: a broadcast read (every lane the same word) has no conflict");
    CU_LAUNCH(broadcast_read, 1, 32, 0, 0)(d_out, d_in);
    cudaCheck(cudaDeviceSynchronize());
    {
        const cuemu::prof::Figures &rd = last(true, false);
        CHECK(rd.requests == 1 && rd.units == 1 && rd.ideal == 1, "read: %llu requests, %llu wavefronts; want 1, 1",
              (unsigned long long)rd.requests, (unsigned long long)rd.units);
    }
    TEST_END();

    TEST_BEGIN("profile: lanes on different load paths are reported as not exact, bytes still counted");
    CU_LAUNCH(divergent, 1, 32, 0, 0)(d_out, d_in);
    cudaCheck(cudaDeviceSynchronize());
    {
        const cuemu::prof::Figures &ld = last(false, false);
        CHECK(ld.inexact_warps > 0, "the divergent warp was counted as exact");
        CHECK(ld.requests == 0, "%llu requests counted from a divergent warp", (unsigned long long)ld.requests);
        CHECK(ld.bytes == 128, "bytes %llu, want 128", (unsigned long long)ld.bytes);
    }
    TEST_END();

    TEST_BEGIN("profile: a partial last warp and two blocks: each warp is a request (coalesced: 4 sectors)");
    CU_LAUNCH(copy_coalesced, 2, 64, 0, 0)(d_out, d_in);   // 2 blocks x 2 warps, each warp 128 contiguous bytes
    cudaCheck(cudaDeviceSynchronize());
    {
        const cuemu::prof::Figures &ld = last(false, false);
        CHECK(ld.requests == 4 && ld.units == 16, "%llu requests %llu sectors, want 4, 16", (unsigned long long)ld.requests,
              (unsigned long long)ld.units);
    }
    TEST_END();

    TEST_BEGIN("profile: tensor-core instructions: 12 mma.sync and 4 ldmatrix (per warp), 128 cp.async of 2048 B");
    CU_LAUNCH(tensor_ops, 2, 64, 0, 0)(d_out, d_in);
    cudaCheck(cudaDeviceSynchronize());
    {
        const cuemu::prof::TensorOps &ops = cuemu::profile_last_tensor_ops();
        CHECK(ops.mma == 12 && ops.ldmatrix == 4 && ops.cp_async == 128 && ops.cp_async_bytes == 2048,
              "%llu mma, %llu ldmatrix, %llu cp.async (%llu B); want 12, 4, 128 (2048 B)", (unsigned long long)ops.mma,
              (unsigned long long)ops.ldmatrix, (unsigned long long)ops.cp_async, (unsigned long long)ops.cp_async_bytes);
    }
    TEST_END();

    cudaCheck(cudaFree(d_in));
    cudaCheck(cudaFree(d_out));
    return test_summary();
}
#else
int main(void) {
    printf("the memory-access profile is the emulator's: run the g++ build (make emu)\n");
    return 0;
}
#endif  // __CUDACC__
