// Tests of the NCCL subset (common/cuemu_nccl.h): the four collectives across
// 4 ranks, first as 4 threads of this process, then as 4 forked processes, with
// NCCL's buffer layouts (in place and out of place, several chunks, fp32 and
// bf16, count 0); then the errors NCCL leaves undefined (collectives that differ
// across ranks in count, kind, order, type, op or root; a rank that never comes;
// buffers that overlap outside the in-place layout), each in a forked child
// whose stderr must be the emulator's one-line message.
// Inputs are small integers, so every sum (in float or bf16) is exact and the
// results are compared exactly.
#include "common/cuemu.h"
#include "tests/test.h"
#include <cuda_bf16.h>
#include <nccl.h>
#include <algorithm>
#include <fcntl.h>
#include <functional>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <time.h>
#include <unistd.h>
#include <vector>

#define NRANKS 4
#define COUNT 1000        // elements per rank in the small cases
#define BIG 300001        // > 1 MiB of floats: collectives that take several chunks
#define RS_BIG 70001      // recvcount of a reduce-scatter over several chunks (its chunk is 1 MiB / 4 B / 4 ranks)

// Rank r's element i: distinct across ranks and positions, so a misplaced chunk shows.
static float value(int rank, size_t i) { return (float)((int)(i % 97) - 40 + 3 * rank); }

static float sum_over_ranks(size_t i) {
    float s = 0.0f;
    for (int r = 0; r < NRANKS; r++) s += value(r, i);
    return s;
}

template <typename T> static T to_t(float v);
template <> float to_t<float>(float v) { return v; }
template <> __nv_bfloat16 to_t<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
static float to_f(float v) { return v; }
static float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> static ncclDataType_t nccl_type();
template <> ncclDataType_t nccl_type<float>() { return ncclFloat; }
template <> ncclDataType_t nccl_type<__nv_bfloat16>() { return ncclBfloat16; }
template <typename T> static const char *type_name();
template <> const char *type_name<float>() { return "f32"; }
template <> const char *type_name<__nv_bfloat16>() { return "bf16"; }

// n device elements, element j = value(rank, offset + j)
template <typename T> static T *device_values(int rank, size_t n, size_t offset) {
    std::vector<T> h(n ? n : 1);
    for (size_t i = 0; i < n; i++) h[i] = to_t<T>(value(rank, offset + i));
    T *d;
    cudaCheck(cudaMalloc(&d, (n ? n : 1) * sizeof(T)));
    cudaCheck(cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// Compares n device elements with want(i); prints the first difference. Returns 1 on a difference.
template <typename T>
static int check_values(const char *what, int rank, const T *d_buf, size_t n, const std::function<float(size_t)> &want) {
    std::vector<T> got(n ? n : 1);
    cudaCheck(cudaMemcpy(got.data(), d_buf, n * sizeof(T), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++)
        if (to_f(got[i]) != want(i)) {
            printf("  rank %d %s (%s): [%zu] = %g, want %g\n", rank, what, type_name<T>(), i, to_f(got[i]), want(i));
            return 1;
        }
    return 0;
}

// NCCL's reduce-scatter and all-gather layouts, in place and out of place, for one type.
template <typename T> static int layouts(ncclComm_t comm, int rank, cudaStream_t stream) {
    int failures = 0;
    const size_t full_n = (size_t)NRANKS * COUNT;
    auto mine = [rank](size_t i) { return value(rank, i); };

    // reduce-scatter, out of place: rank r gets the sum of every rank's send[r*COUNT, (r+1)*COUNT)
    T *send = device_values<T>(rank, full_n, 0), *recv;
    cudaCheck(cudaMalloc(&recv, COUNT * sizeof(T)));
    ncclCheck(ncclReduceScatter(send, recv, COUNT, nccl_type<T>(), ncclSum, comm, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    failures += check_values<T>("reduce-scatter", rank, recv, COUNT, [rank](size_t i) { return sum_over_ranks((size_t)rank * COUNT + i); });
    failures += check_values<T>("reduce-scatter leaves sendbuff alone", rank, send, full_n, mine);

    // reduce-scatter, in place: recvbuff == sendbuff + rank*recvcount; the rest of sendbuff is left alone
    ncclCheck(ncclReduceScatter(send, send + (size_t)rank * COUNT, COUNT, nccl_type<T>(), ncclSum, comm, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    failures += check_values<T>("reduce-scatter in place", rank, send, full_n, [rank](size_t i) {
        return i / COUNT == (size_t)rank ? sum_over_ranks(i) : value(rank, i);
    });
    cudaCheck(cudaFree(send));
    cudaCheck(cudaFree(recv));

    // all-gather, out of place: recv[q*COUNT + i] = rank q's send[i]; sendbuff is left alone
    T *part = device_values<T>(rank, COUNT, 0), *all;
    cudaCheck(cudaMalloc(&all, full_n * sizeof(T)));
    ncclCheck(ncclAllGather(part, all, COUNT, nccl_type<T>(), comm, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    failures += check_values<T>("all-gather", rank, all, full_n, [](size_t i) { return value((int)(i / COUNT), i % COUNT); });
    failures += check_values<T>("all-gather leaves sendbuff alone", rank, part, COUNT, mine);

    // all-gather, in place: sendbuff == recvbuff + rank*sendcount; the other slices start as garbage
    cudaCheck(cudaMemset(all, 0xff, full_n * sizeof(T)));
    cudaCheck(cudaMemcpy(all + (size_t)rank * COUNT, part, COUNT * sizeof(T), cudaMemcpyDeviceToDevice));
    ncclCheck(ncclAllGather(all + (size_t)rank * COUNT, all, COUNT, nccl_type<T>(), comm, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    failures += check_values<T>("all-gather in place", rank, all, full_n, [](size_t i) { return value((int)(i / COUNT), i % COUNT); });
    cudaCheck(cudaFree(part));
    cudaCheck(cudaFree(all));
    return failures;
}

// Collectives of several chunks, in place (the case where a chunk could overwrite what a later one reads).
static int several_chunks(ncclComm_t comm, int rank, cudaStream_t stream) {
    int failures = 0;
    const size_t rs_full = (size_t)NRANKS * RS_BIG;
    float *buf = device_values<float>(rank, rs_full, 0);
    ncclCheck(ncclReduceScatter(buf, buf + (size_t)rank * RS_BIG, RS_BIG, ncclFloat, ncclSum, comm, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    failures += check_values<float>("reduce-scatter in place, 2 chunks", rank, buf, rs_full, [rank](size_t i) {
        return i / RS_BIG == (size_t)rank ? sum_over_ranks(i) : value(rank, i);
    });
    cudaCheck(cudaFree(buf));

    const size_t ag_full = (size_t)NRANKS * BIG;
    float *all;
    cudaCheck(cudaMalloc(&all, ag_full * sizeof(float)));
    float *part = device_values<float>(rank, BIG, 0);
    cudaCheck(cudaMemcpy(all + (size_t)rank * BIG, part, BIG * sizeof(float), cudaMemcpyDeviceToDevice));
    ncclCheck(ncclAllGather(all + (size_t)rank * BIG, all, BIG, ncclFloat, comm, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    failures += check_values<float>("all-gather in place, 2 chunks", rank, all, ag_full,
                                    [](size_t i) { return value((int)(i / BIG), i % BIG); });
    cudaCheck(cudaFree(part));
    cudaCheck(cudaFree(all));
    return failures;
}

// One rank's part of every positive test; returns the number of failed checks.
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
    float *buf = device_values<float>(rank, BIG, 0);
    ncclCheck(ncclAllReduce(buf, buf, BIG, ncclFloat, ncclSum, comm, stream));
    failures += check_values<float>("all-reduce sum in place", rank, buf, BIG, sum_over_ranks);
    cudaCheck(cudaFree(buf));
    float *send = device_values<float>(rank, COUNT, 0), *recv;
    cudaCheck(cudaMalloc(&recv, NRANKS * COUNT * sizeof(float)));
    ncclCheck(ncclAllReduce(send, recv, COUNT, ncclFloat, ncclAvg, comm, stream));
    failures += check_values<float>("all-reduce average", rank, recv, COUNT, [](size_t i) { return sum_over_ranks(i) / NRANKS; });

    // bf16 all-reduce in place: the same small integers are exact in bf16
    __nv_bfloat16 *b16 = device_values<__nv_bfloat16>(rank, COUNT, 0);
    ncclCheck(ncclAllReduce(b16, b16, COUNT, ncclBfloat16, ncclSum, comm, stream));
    failures += check_values<__nv_bfloat16>("all-reduce in place", rank, b16, COUNT, sum_over_ranks);
    cudaCheck(cudaFree(b16));

    failures += layouts<float>(comm, rank, stream);
    failures += layouts<__nv_bfloat16>(comm, rank, stream);
    failures += several_chunks(comm, rank, stream);

    // broadcast from rank 2
    ncclCheck(ncclBroadcast(send, recv, COUNT, ncclFloat, 2, comm, stream));
    failures += check_values<float>("broadcast from rank 2", rank, recv, COUNT, [](size_t i) { return value(2, i); });

    // count 0: every collective is a no-op that still meets the others (the next call stays matched)
    ncclCheck(ncclAllReduce(send, recv, 0, ncclFloat, ncclSum, comm, stream));
    ncclCheck(ncclReduceScatter(send, recv, 0, ncclFloat, ncclSum, comm, stream));
    ncclCheck(ncclAllGather(send, recv, 0, ncclFloat, comm, stream));
    ncclCheck(ncclBroadcast(send, recv, 0, ncclFloat, 0, comm, stream));
    ncclCheck(ncclAllReduce(send, recv, COUNT, ncclFloat, ncclSum, comm, stream));
    failures += check_values<float>("all-reduce after count-0 calls", rank, recv, COUNT, sum_over_ranks);

    cudaCheck(cudaFree(send));
    cudaCheck(cudaFree(recv));
    cudaCheck(cudaStreamDestroy(stream));
    ncclCheck(ncclCommDestroy(comm));
    return failures;
}

static void test_rank_threads(void) {
    TEST_BEGIN("4 ranks as threads: all-reduce, reduce-scatter and all-gather in and out of place (f32, bf16, 2 chunks), broadcast, count 0");
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

// ----------------------------------------------------------------------------
// Errors. Not under nvcc: with the real NCCL these calls hang (that is the point).
#ifndef __CUDACC__

struct ChildRun {
    int status = 0;
    bool timed_out = false;
    double seconds = 0;
    std::string err;
};

static double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Runs body in a forked child with stderr in a file; waits at most limit_s (then SIGKILL).
static ChildRun run_child(const std::function<void()> &body, double limit_s) {
    ChildRun out;
    char path[] = "/tmp/s1c-emu-nccl-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { out.status = -1; out.err = "mkstemp failed"; return out; }
    fflush(stdout);
    fflush(stderr);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        if (dup2(fd, 2) < 0) _exit(99);
        body();
        fflush(NULL);
        _exit(0);
    }
    close(fd);
    for (;;) {
        pid_t r = pid > 0 ? waitpid(pid, &out.status, WNOHANG) : -1;
        if (r == pid || r < 0) break;
        if (now_s() - t0 > limit_s && !out.timed_out) { out.timed_out = true; kill(pid, SIGKILL); }
        usleep(5000);
    }
    out.seconds = now_s() - t0;
    FILE *fp = fopen(path, "rb");
    char buf[4096];
    size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    buf[n] = '\0';
    if (fp) fclose(fp);
    unlink(path);
    out.err = buf;
    return out;
}

// Two ranks as threads of this (child) process, each running body(comm, rank) on the default stream.
static void two_ranks(const std::function<void(ncclComm_t, int)> &body) {
    ncclUniqueId id;
    ncclCheck(ncclGetUniqueId(&id));
    auto rank = [&](int r) {
        cudaCheck(cudaSetDevice(r));
        ncclComm_t comm;
        ncclCheck(ncclCommInitRank(&comm, 2, id, r));
        body(comm, r);
        ncclCheck(ncclCommDestroy(comm));
    };
    std::thread t1(rank, 1);
    rank(0);
    t1.join();
}

static float *dev_floats(size_t n) {
    float *d;
    cudaCheck(cudaMalloc(&d, n * sizeof(float)));
    cudaCheck(cudaMemset(d, 0, n * sizeof(float)));
    return d;
}

// Every line of the child's stderr is `want` (both ranks may report the same mismatch), exit status 1.
#define CHECK_NCCL_ERROR(run, want) do {                                                                      \
    const ChildRun &run_ = (run);                                                                           \
    std::string want_ = (want);                                                                             \
    bool lines_ok_ = !run_.err.empty();                                                                     \
    for (size_t p_ = 0; p_ < run_.err.size();) {                                                            \
        size_t e_ = run_.err.find('\n', p_);                                                                \
        if (e_ == std::string::npos || run_.err.compare(p_, e_ - p_, want_) != 0 || e_ - p_ != want_.size()) \
            lines_ok_ = false;                                                                              \
        p_ = e_ == std::string::npos ? run_.err.size() : e_ + 1;                                            \
    }                                                                                                       \
    CHECK(!run_.timed_out && WIFEXITED(run_.status) && WEXITSTATUS(run_.status) == 1,                       \
          "want exit 1, got status 0x%x%s", run_.status, run_.timed_out ? " (timed out)" : "");             \
    CHECK(lines_ok_, "stderr:\n%s  want every line to be:\n  %s", run_.err.c_str(), want_.c_str());         \
} while (0)

static void test_mismatched_calls(void) {
    TEST_BEGIN("collectives that differ across ranks (count, kind, order, type, op, root) stop both with both calls named");
    ChildRun run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(32);
            ncclCheck(ncclAllReduce(b, b, r == 0 ? 16 : 32, ncclFloat, ncclSum, comm, 0));
        });
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: collectives differ across ranks: rank 0 call #1 ncclAllReduce(count 16, f32, sum), "
                          "rank 1 call #1 ncclAllReduce(count 32, f32, sum)");

    run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            __nv_bfloat16 *s, *d;
            cudaCheck(cudaMalloc(&s, 16 * sizeof(__nv_bfloat16)));
            cudaCheck(cudaMalloc(&d, 16 * sizeof(__nv_bfloat16)));
            if (r == 0) ncclCheck(ncclAllGather(s, d, 8, ncclBfloat16, comm, 0));
            else ncclCheck(ncclReduceScatter(s, d, 8, ncclBfloat16, ncclSum, comm, 0));
        });
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: collectives differ across ranks: rank 0 call #1 ncclAllGather(sendcount 8, bf16), "
                          "rank 1 call #1 ncclReduceScatter(recvcount 8, bf16, sum)");

    run = run_child([] {   // the same two calls in another order, after one that matches
        two_ranks([](ncclComm_t comm, int r) {
            float *s = dev_floats(16), *d = dev_floats(16);
            ncclCheck(ncclAllReduce(s, d, 16, ncclFloat, ncclSum, comm, 0));
            if (r == 0) {
                ncclCheck(ncclAllGather(s, d, 8, ncclFloat, comm, 0));
                ncclCheck(ncclReduceScatter(s, d, 8, ncclFloat, ncclSum, comm, 0));
            } else {
                ncclCheck(ncclReduceScatter(s, d, 8, ncclFloat, ncclSum, comm, 0));
                ncclCheck(ncclAllGather(s, d, 8, ncclFloat, comm, 0));
            }
        });
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: collectives differ across ranks: rank 0 call #2 ncclAllGather(sendcount 8, f32), "
                          "rank 1 call #2 ncclReduceScatter(recvcount 8, f32, sum)");

    run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(16);
            ncclCheck(ncclAllReduce(b, b, 16, r == 0 ? ncclFloat : ncclBfloat16, ncclSum, comm, 0));
        });
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: collectives differ across ranks: rank 0 call #1 ncclAllReduce(count 16, f32, sum), "
                          "rank 1 call #1 ncclAllReduce(count 16, bf16, sum)");

    run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(16);
            ncclCheck(ncclAllReduce(b, b, 16, ncclFloat, r == 0 ? ncclSum : ncclMax, comm, 0));
        });
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: collectives differ across ranks: rank 0 call #1 ncclAllReduce(count 16, f32, sum), "
                          "rank 1 call #1 ncclAllReduce(count 16, f32, max)");

    run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(16);
            ncclCheck(ncclBroadcast(b, b, 16, ncclFloat, r, comm, 0));
        });
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: collectives differ across ranks: rank 0 call #1 ncclBroadcast(count 16, f32, root 0), "
                          "rank 1 call #1 ncclBroadcast(count 16, f32, root 1)");

    // as processes: each rank stops on its own, with the same line
    run = run_child([] {
        ncclUniqueId id;
        ncclCheck(ncclGetUniqueId(&id));
        pid_t pid[2];
        for (int r = 0; r < 2; r++) {
            pid[r] = fork();
            if (pid[r] < 0) _exit(3);
            if (pid[r] == 0) {
                ncclComm_t comm;
                ncclCheck(ncclCommInitRank(&comm, 2, id, r));
                float *b = dev_floats(32);
                ncclCheck(ncclAllReduce(b, b, r == 0 ? 16 : 32, ncclFloat, ncclSum, comm, 0));
                _exit(0);
            }
        }
        int bad = 0;
        for (int r = 0; r < 2; r++) {
            int st = 0;
            waitpid(pid[r], &st, 0);
            bad += WIFEXITED(st) && WEXITSTATUS(st) == 1;
        }
        _exit(bad == 2 ? 1 : 4);   // 1: both ranks stopped with status 1
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: collectives differ across ranks: rank 0 call #1 ncclAllReduce(count 16, f32, sum), "
                          "rank 1 call #1 ncclAllReduce(count 32, f32, sum)");
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 2, "two processes, two lines: %s", run.err.c_str());
    TEST_END();
}

static void test_missing_rank(void) {
    TEST_BEGIN("a rank that skips a collective: the other stops after CUEMU_NCCL_TIMEOUT, saying where each rank is");
    ChildRun run = run_child([] {
        setenv("CUEMU_NCCL_TIMEOUT", "1", 1);
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(16);
            ncclCheck(ncclAllReduce(b, b, 16, ncclFloat, ncclSum, comm, 0));
            if (r == 0) ncclCheck(ncclAllReduce(b, b, 16, ncclFloat, ncclSum, comm, 0));
        });
    }, 20);
    CHECK_NCCL_ERROR(run, "cuemu: ncclAllReduce: rank 0 of 2 waited 1 s for the other ranks in call #2 ncclAllReduce(count "
                          "16, f32, sum); rank 1's latest call: #1 ncclAllReduce(count 16, f32, sum) (mismatched "
                          "collectives, or a rank died?)");
    CHECK(run.seconds < 5, "stopped after %.1f s", run.seconds);
    TEST_END();
}

static void test_bad_overlap(void) {
    TEST_BEGIN("buffers that overlap outside NCCL's in-place layout are refused, naming the layout");
    ChildRun run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(16);
            ncclCheck(ncclAllGather(b, b, 8, ncclFloat, comm, 0));   // in place only for rank 0
            (void)r;
        });
    }, 20);
    CHECK(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 1, "exit 1: status 0x%x", run.status);
    CHECK(run.err.rfind("cuemu: ncclAllGather: rank 1: sendbuff 0x", 0) == 0 &&
          run.err.find("overlap, but not in NCCL's in-place layout (sendbuff == recvbuff + rank * sendcount)\n") != std::string::npos &&
          std::count(run.err.begin(), run.err.end(), '\n') == 1, "stderr: %s", run.err.c_str());

    run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(16);
            ncclCheck(ncclReduceScatter(b, b, 8, ncclFloat, ncclSum, comm, 0));   // in place only for rank 0
            (void)r;
        });
    }, 20);
    CHECK(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 1, "exit 1: status 0x%x", run.status);
    CHECK(run.err.rfind("cuemu: ncclReduceScatter: rank 1: sendbuff 0x", 0) == 0 &&
          run.err.find("(recvbuff == sendbuff + rank * recvcount)\n") != std::string::npos &&
          std::count(run.err.begin(), run.err.end(), '\n') == 1, "stderr: %s", run.err.c_str());

    run = run_child([] {
        two_ranks([](ncclComm_t comm, int r) {
            float *b = dev_floats(17);
            ncclCheck(ncclAllReduce(b + 1, b, 16, ncclFloat, ncclSum, comm, 0));   // shifted by one: never in place
            (void)r;
        });
    }, 20);
    CHECK(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 1 &&
          run.err.find("overlap, but not in NCCL's in-place layout (sendbuff == recvbuff)") != std::string::npos,
          "status 0x%x, stderr: %s", run.status, run.err.c_str());
    TEST_END();
}
#endif  // __CUDACC__

int main(void) {
    test_rank_threads();
    test_rank_processes();
#ifndef __CUDACC__
    test_mismatched_calls();
    test_missing_rank();
    test_bad_overlap();
#endif
    return test_summary();
}
