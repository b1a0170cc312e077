/*
 * dev/dev.cuh: what every file of the kernel workbench (dev/OP.cu) shares: the
 * list of an operation's numbered versions, the command line, and the GPU
 * benchmark. tutorial/kernels.md is the guide; run a file with
 *
 *   dev/run OP [VERSION]          checks (3 schedules, emulated), the profile, and on a GPU the benchmark
 *   build/dev/OP [VERSION]        one check in the current CUEMU_SCHEDULE (make dev builds it)
 *   build/dev/OP --list           the versions and what each changes
 *   build/cuda/dev/OP --bench [VERSION]   on a GPU (make cuda): cudaEvent timing and the roofline share
 *
 * An op file defines its versions as DevVersion entries (id, one line on what
 * changed, the check, the benchmark body) and calls dev_main(). A check is a
 * test.h case against the CPU reference, which calls s1.c through tests/s1_ref.c.
 * Before each version the program prints "== OP vID: what" on stderr, so the
 * profile lines (CUEMU_PROFILE=1, common/cuemu_profile.h) that follow are that
 * version's. With -DDEV_EXERCISE="FILE" (dev/grade) an op file also includes a
 * student's file and lists it as version "x".
 */
#ifndef S1C_DEV_CUH
#define S1C_DEV_CUH

#include "common/cuda_common.cuh"
#include "tests/kernel_test.h"   // the s1.c oracle's wrappers, seeded inputs, to_device/from_device, check_close

#define DEV_U (1.0f / 256.0f)        // bf16's unit roundoff (8 significand bits): the rounding of one bf16 store
#define DEV_EPS (1.0f / 16777216.0f) // fp32's unit roundoff

struct DevVersion {
    const char *id;      // "1", "2", ... (naive to fast); "x" for a student's file
    const char *what;    // what changed and why it is faster on a GPU
    void (*check)(void); // one or more test.h cases against the reference
    void (*bench)(void); // runs the version once on the benchmark's problem (GPU only); NULL: no benchmark
    double bytes, flops; // the model of one run of bench: DRAM bytes that must move, FLOPs
};

// H100 SXM (sm_90) peaks the roofline percentages are taken against.
#define H100_GBPS 3350.0          // HBM3 bandwidth, GB/s
#define H100_FP32_TFLOPS 67.0     // fp32 on the CUDA cores (no tensor cores)

// Times v.bench with cudaEvents (3 warm-up runs, then the mean of 20) and prints
// the achieved bandwidth and FLOP rate against the model's bytes and FLOPs.
static void dev_bench(const char *op, const DevVersion &v) {
    if (!v.bench) { printf("bench %s v%s: no benchmark\n", op, v.id); return; }
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    for (int i = 0; i < 3; i++) v.bench();
    const int reps = 20;
    cudaCheck(cudaEventRecord(start, 0));
    for (int i = 0; i < reps; i++) v.bench();
    cudaCheck(cudaEventRecord(stop, 0));
    cudaCheck(cudaEventSynchronize(stop));
    float ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&ms, start, stop));
    ms /= reps;
    double gbps = v.bytes / (ms * 1e-3) / 1e9, tflops = v.flops / (ms * 1e-3) / 1e12;
    printf("bench %s v%s: %.4f ms, %.1f GB/s (%.1f%% of %.0f GB/s), %.3f TFLOP/s (%.1f%% of %.0f fp32)\n", op, v.id, ms,
           gbps, 100.0 * gbps / H100_GBPS, H100_GBPS, tflops, 100.0 * tflops / H100_FP32_TFLOPS, H100_FP32_TFLOPS);
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
}

// build/dev/OP [--list] [--bench] [VERSION]: checks every version, or VERSION.
static int dev_main(const char *op, const DevVersion *versions, int n, int argc, char **argv) {
    const char *only = NULL;
    int bench = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) {
            for (int k = 0; k < n; k++) printf("%s v%s: %s\n", op, versions[k].id, versions[k].what);
            return 0;
        } else if (!strcmp(argv[i], "--bench")) bench = 1;
        else if (argv[i][0] == '-') { fprintf(stderr, "%s: unknown flag %s (usage: [--list] [--bench] [VERSION])\n", op, argv[i]); return 2; }
        else only = argv[i];
    }
    int found = 0;
    for (int k = 0; k < n; k++) {
        if (only && strcmp(only, versions[k].id) != 0) continue;
        found = 1;
        fprintf(stderr, "== %s v%s: %s\n", op, versions[k].id, versions[k].what);
        fflush(stderr);
        versions[k].check();
#if defined(__CUDACC__)
        if (bench) dev_bench(op, versions[k]);
#else
        if (bench) printf("bench %s v%s: needs a GPU (build/cuda/dev/%s)\n", op, versions[k].id, op);
#endif
    }
    if (!found) { fprintf(stderr, "%s: no version %s (--list shows them)\n", op, only); return 2; }
    return test_summary();
}

// device buffers of n elements
template <class T> static T *dev_alloc(size_t n) {
    T *d;
    cudaCheck(cudaMalloc((void **)&d, n * sizeof(T)));
    cudaCheck(cudaMemset(d, 0, n * sizeof(T)));
    return d;
}

#endif // S1C_DEV_CUH
