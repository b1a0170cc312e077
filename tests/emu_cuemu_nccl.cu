// Tests of the NCCL subset (common/cuemu_nccl.h): the four collectives across
// 4 ranks, first as 4 threads of this process, then as 4 forked processes.
// Inputs are small integers, so every sum (in float or bf16) is exact and the
// results are compared exactly.
#include "common/cuemu.h"
#include "tests/test.h"
#include <cuda_bf16.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#define NRANKS 4
#define COUNT 1000        // elements per rank in the small cases
#define BIG 300001        // > 1 MiB of floats: collectives that take several chunks

static float value(int rank, size_t i) { return (float)((int)(i % 97) - 40 + 3 * rank); }

static int check_floats(const char *what, int rank, const float *d_buf, size_t n, float (*want)(size_t)) {
    std::vector<float> got(n);
    cudaCheck(cudaMemcpy(got.data(), d_buf, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++)
        if (got[i] != want(i)) {
            printf("  rank %d %s: [%zu] = %g, want %g\n", rank, what, i, got[i], want(i));
            return 1;
        }
    return 0;
}

static float *device_values(int rank, size_t n, size_t offset) {
    std::vector<float> h(n);
    for (size_t i = 0; i < n; i++) h[i] = value(rank, offset + i);
    float *d;
    cudaCheck(cudaMalloc(&d, n * sizeof(float)));
    cudaCheck(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

static float sum_over_ranks(size_t i) {
    float s = 0.0f;
    for (int r = 0; r < NRANKS; r++) s += value(r, i);
    return s;
}
static float avg_over_ranks(size_t i) { return sum_over_ranks(i) / NRANKS; }
static float gathered(size_t i) { return value((int)(i / COUNT), i % COUNT); }
static float from_root(size_t i) { return value(2, i); }

// One rank's part of every test; returns the number of failed checks.
static int rank_main(ncclUniqueId id, int rank) {
    int failures = 0;
    cudaCheck(cudaSetDevice(rank));
    ncclComm_t comm;
    ncclCheck(ncclCommInitRank(&comm, NRANKS, id, rank));
    int count, me;
    ncclCheck(ncclCommCount(comm, &count));
    ncclCheck(ncclCommUserRank(comm, &me));
    if (count != NRANKS || me != rank) { printf("  rank %d: comm says rank %d of %d\n", rank, me, count); failures++; }
    cudaStream_t stream;
    cudaCheck(cudaStreamCreate(&stream));

    // all-reduce, in place, sum and average, over several chunks
    float *buf = device_values(rank, BIG, 0);
    ncclCheck(ncclAllReduce(buf, buf, BIG, ncclFloat, ncclSum, comm, stream));
    failures += check_floats("all-reduce sum in place", rank, buf, BIG, sum_over_ranks);
    cudaCheck(cudaFree(buf));
    float *send = device_values(rank, COUNT, 0), *recv;
    cudaCheck(cudaMalloc(&recv, NRANKS * COUNT * sizeof(float)));
    ncclCheck(ncclAllReduce(send, recv, COUNT, ncclFloat, ncclAvg, comm, stream));
    failures += check_floats("all-reduce average", rank, recv, COUNT, avg_over_ranks);

    // bf16 all-reduce in place: the same small integers are exact in bf16
    std::vector<__nv_bfloat16> h16(COUNT);
    for (size_t i = 0; i < COUNT; i++) h16[i] = __float2bfloat16(value(rank, i));
    __nv_bfloat16 *b16;
    cudaCheck(cudaMalloc(&b16, COUNT * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMemcpy(b16, h16.data(), COUNT * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice));
    ncclCheck(ncclAllReduce(b16, b16, COUNT, ncclBfloat16, ncclSum, comm, stream));
    cudaCheck(cudaMemcpy(h16.data(), b16, COUNT * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < COUNT; i++)
        if (__bfloat162float(h16[i]) != sum_over_ranks(i)) {
            printf("  rank %d bf16 all-reduce: [%zu] = %g, want %g\n", rank, i, __bfloat162float(h16[i]),
                   sum_over_ranks(i));
            failures++;
            break;
        }
    cudaCheck(cudaFree(b16));

    // reduce-scatter: rank r gets the sum of every rank's r-th slice of NRANKS*COUNT values
    float *full = device_values(rank, (size_t)NRANKS * COUNT, 0);
    ncclCheck(ncclReduceScatter(full, recv, COUNT, ncclFloat, ncclSum, comm, stream));
    std::vector<float> got(COUNT);
    cudaCheck(cudaMemcpy(got.data(), recv, COUNT * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < COUNT; i++)
        if (got[i] != sum_over_ranks((size_t)rank * COUNT + i)) {
            printf("  rank %d reduce-scatter: [%zu] = %g, want %g\n", rank, i, got[i],
                   sum_over_ranks((size_t)rank * COUNT + i));
            failures++;
            break;
        }
    cudaCheck(cudaFree(full));

    // all-gather, in place: each rank's contribution already sits at its slice of the output
    std::vector<float> mine(COUNT);
    for (size_t i = 0; i < COUNT; i++) mine[i] = value(rank, i);
    cudaCheck(cudaMemcpy(recv + (size_t)rank * COUNT, mine.data(), COUNT * sizeof(float), cudaMemcpyHostToDevice));
    ncclCheck(ncclAllGather(recv + (size_t)rank * COUNT, recv, COUNT, ncclFloat, comm, stream));
    failures += check_floats("all-gather in place", rank, recv, (size_t)NRANKS * COUNT, gathered);

    // broadcast from rank 2
    ncclCheck(ncclBroadcast(send, recv, COUNT, ncclFloat, 2, comm, stream));
    failures += check_floats("broadcast from rank 2", rank, recv, COUNT, from_root);

    cudaCheck(cudaFree(send));
    cudaCheck(cudaFree(recv));
    cudaCheck(cudaStreamDestroy(stream));
    ncclCheck(ncclCommDestroy(comm));
    return failures;
}

static void test_rank_threads(void) {
    TEST_BEGIN("4 ranks as threads: all-reduce (sum, avg, bf16, in place), reduce-scatter, all-gather, broadcast");
    ncclUniqueId id;
    ncclCheck(ncclGetUniqueId(&id));
    int failures[NRANKS] = {0};
    std::vector<std::thread> ranks;
    for (int r = 0; r < NRANKS; r++) ranks.emplace_back([&, r] { failures[r] = rank_main(id, r); });
    for (std::thread &t : ranks) t.join();
    for (int r = 0; r < NRANKS; r++) CHECK(failures[r] == 0, "rank %d: %d failed checks", r, failures[r]);
    TEST_END();
}

static void test_rank_processes(void) {
    TEST_BEGIN("4 ranks as processes over shared memory: the same collectives");
    ncclUniqueId id;
    ncclCheck(ncclGetUniqueId(&id));
    fflush(stdout);
    pid_t pids[NRANKS];
    for (int r = 0; r < NRANKS; r++) {
        pids[r] = fork();
        CHECK(pids[r] >= 0, "fork failed");
        if (pids[r] == 0) {
            int failures = rank_main(id, r);
            fflush(stdout);
            _exit(failures ? 1 : 0);
        }
    }
    for (int r = 0; r < NRANKS; r++) {
        int status = 0;
        if (pids[r] > 0) waitpid(pids[r], &status, 0);
        CHECK(pids[r] > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "rank %d process: status 0x%x", r, status);
    }
    TEST_END();
}

int main(void) {
    test_rank_threads();
    test_rank_processes();
    return test_summary();
}
