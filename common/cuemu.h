/*
 * cuemu.h: run CUDA kernels on the CPU, so they can be tested without a GPU.
 *
 * The same .cu file compiles two ways:
 *   nvcc -c -arch=sm_90 file.cu                             real GPU code; this header only
 *                                                           adds CU_LAUNCH, CU_EXTERN_SHARED,
 *                                                           CU_T and the *Check macros
 *   g++ -std=c++17 -x c++ -include common/cuemu.h file.cu   the kernels run on the CPU
 * (the Makefile's `make emu` does the second, `make cuda` the first).
 *
 * How it works (the design is /work/shared/docs/cuda-emulation.md, tutorial/cuda.md
 * walks through it):
 *   - a block runs on one OS thread, to completion; blocks are dealt out to
 *     CUEMU_THREADS OS threads (default 1, which makes every run deterministic);
 *   - each CUDA thread of a block is a fiber: its own mmap'd stack with a guard
 *     page, switched by a 15-instruction x86-64 routine (swapcontext elsewhere);
 *   - __syncthreads() is a block barrier and the __shfl_*_sync family is a warp
 *     barrier: a fiber that must wait hands the CPU straight to the next
 *     runnable fiber; the scheduler reports divergent barriers and deadlocks;
 *   - CUEMU_SCHEDULE=forward|reverse|random:SEED picks the order in which the
 *     fibers run between barriers, which exposes missing barriers;
 *   - __shared__ is `static thread_local` (one copy per block in flight);
 *   - bf16 comes from the toolkit's own cuda_bf16.h (host mode), the runtime
 *     API functions are definitions of the toolkit's declarations, so the
 *     compiler checks every signature. cuemu_blas.h and cuemu_nccl.h do the
 *     same for the cuBLAS and NCCL subsets.
 *
 * Not emulated: speed, bit-exact GPU floating point, inline PTX (but common/mma.cuh
 * wraps mma.sync, ldmatrix and cp.async, emulated exactly here), textures,
 * dynamic parallelism, cooperative launch, graphs other than captured ones.
 * Work on created streams is queued and runs when something waits for it (see
 * "Streams"); stream capture records it into a graph instead (see "Graphs").
 *
 * Knobs: env CUEMU_THREADS, CUEMU_SCHEDULE, CUEMU_STACK_KB, CUEMU_POISON,
 * CUEMU_NCCL_TIMEOUT, CUEMU_PROFILE (the memory-access profile, cuemu_profile.h); macros CUEMU_UCONTEXT, CUEMU_SINGLE_THREAD,
 * CUEMU_NO_ASAN_FIBER_HOOKS, CUEMU_NO_VALGRIND. ASan, TSan and Valgrind are
 * told about every fiber and its stack.
 *
 * Every error the emulator detects goes through cuemu_fail(): one line on
 * stderr, exit status 1. In gdb, `break cuemu_fail` stops at it.
 */
#ifndef S1C_CUEMU_H
#define S1C_CUEMU_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// Both compilers: the portability macros and checked calls

#if defined(__CUDACC__)
#define CU_LAUNCH(k, grid, block, smem, stream) k<<<grid, block, smem, stream>>>
#define CU_EXTERN_SHARED(T, name) extern __shared__ T name[]
#else
#define CU_LAUNCH(k, grid, block, smem, stream) cuemu::launcher(k, grid, block, smem, stream, #k)
#define CU_EXTERN_SHARED(T, name) T *name = reinterpret_cast<T *>(cuemu::dynamic_smem())
#endif
#define CU_T(...) __VA_ARGS__  // protects the commas of a template kernel's name

// Each prints "file:line: <library> error: <message> (<call>)" and exits 1.
#define cudaCheck(call) do {                                                                     \
    cudaError_t cuemu_err_ = (call);                                                             \
    if (cuemu_err_ != cudaSuccess) {                                                             \
        fprintf(stderr, "%s:%d: CUDA error: %s (%s)\n", __FILE__, __LINE__,                      \
                cudaGetErrorString(cuemu_err_), #call);                                          \
        exit(1);                                                                                 \
    }                                                                                            \
} while (0)
#define cublasCheck(call) do {                                                                   \
    cublasStatus_t cuemu_status_ = (call);                                                       \
    if (cuemu_status_ != CUBLAS_STATUS_SUCCESS) {                                                \
        fprintf(stderr, "%s:%d: cuBLAS error: %s (%s)\n", __FILE__, __LINE__,                    \
                cublasGetStatusString(cuemu_status_), #call);                                    \
        exit(1);                                                                                 \
    }                                                                                            \
} while (0)
#define ncclCheck(call) do {                                                                     \
    ncclResult_t cuemu_result_ = (call);                                                         \
    if (cuemu_result_ != ncclSuccess) {                                                          \
        fprintf(stderr, "%s:%d: NCCL error: %s (%s)\n", __FILE__, __LINE__,                      \
                ncclGetErrorString(cuemu_result_), #call);                                       \
        exit(1);                                                                                 \
    }                                                                                            \
} while (0)

#if !defined(__CUDACC__)
#ifndef __cplusplus
#error "cuemu.h emulates CUDA in C++17: compile the .cu file with g++ -x c++ -std=c++17"
#endif

#include <cuda_runtime.h>  // host mode: dim3, float4, the runtime API declarations and their C++ templates
#include <cuda_bf16.h>     // host mode: bf16 with round-to-nearest-even
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(__x86_64__) && !defined(CUEMU_UCONTEXT)
#define CUEMU_UCONTEXT
#endif
#ifdef CUEMU_UCONTEXT
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif
#if defined(CUEMU_ASAN) && defined(CUEMU_NO_ASAN_FIBER_HOOKS)
#undef CUEMU_ASAN
#endif
#ifdef CUEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#define CUEMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CUEMU_TSAN 1
#endif
#endif
#ifdef CUEMU_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if !defined(CUEMU_NO_VALGRIND) && __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CUEMU_VALGRIND 1
#endif

// ----------------------------------------------------------------------------
// The kernel language as C++

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __managed__
#undef __grid_constant__
#undef __launch_bounds__
#undef __forceinline__
#undef __noinline__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#ifdef CUEMU_SINGLE_THREAD
#define __shared__ static  // one OS thread: plain statics get ASan redzones
#else
#define __shared__ static thread_local  // one copy per OS thread = per block in flight
#endif

// The built-in variables. The scheduler stores the next fiber's threadIdx
// before every switch; blockIdx/blockDim/gridDim are set per block.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

// Every error the emulator finds ends here: one line on stderr, exit status 1.
// In gdb, `break cuemu_fail` stops with the faulty CUDA thread on the stack.
__attribute__((noreturn, noinline, format(printf, 1, 2)))
inline void cuemu_fail(const char *fmt, ...) {
    fflush(stdout);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuemu: %s\n", msg);
    fflush(stderr);
    _exit(1);
}

namespace cuemu {

// ----------------------------------------------------------------------------
// Settings from the environment (read once per process)

enum Schedule { FORWARD, REVERSE, RANDOM };

struct Settings {
    int os_threads = 1;
    Schedule schedule = FORWARD;
    uint64_t seed = 0;
    size_t stack_bytes = 64 * 1024;
    bool poison = true;
};

inline long env_long(const char *name, long dflt, long lo, long hi) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) cuemu_fail("%s=%s: expected an integer in [%ld, %ld]", name, s, lo, hi);
    return v;
}

inline const Settings &settings() {
    static const Settings s = [] {
        Settings r;
        r.os_threads = (int)env_long("CUEMU_THREADS", 1, 1, 1024);
#ifdef CUEMU_SINGLE_THREAD
        r.os_threads = 1;
#endif
#ifdef CUEMU_ASAN
        r.stack_bytes = 256 * 1024;
#endif
        r.stack_bytes = (size_t)env_long("CUEMU_STACK_KB", (long)(r.stack_bytes / 1024), 16, 1 << 20) * 1024;
        r.poison = env_long("CUEMU_POISON", 1, 0, 1) != 0;
        const char *s = getenv("CUEMU_SCHEDULE");
        if (!s || !*s || !strcmp(s, "forward")) r.schedule = FORWARD;
        else if (!strcmp(s, "reverse")) r.schedule = REVERSE;
        else if (!strcmp(s, "random")) {  // no seed given: draw one and say which
            r.schedule = RANDOM;
            r.seed = (uint64_t)time(nullptr) ^ ((uint64_t)getpid() << 16);
            r.seed %= 1000000;
            fprintf(stderr, "cuemu: CUEMU_SCHEDULE=random:%llu\n", (unsigned long long)r.seed);
        } else if (!strncmp(s, "random:", 7) && s[7]) {
            char *end;
            r.schedule = RANDOM;
            r.seed = strtoull(s + 7, &end, 10);
            if (*end) cuemu_fail("CUEMU_SCHEDULE=%s: the seed must be a decimal integer", s);
        } else {
            cuemu_fail("CUEMU_SCHEDULE=%s: expected forward, reverse or random[:SEED]", s);
        }
        return r;
    }();
    return s;
}

// ----------------------------------------------------------------------------
// Context switch: x86-64 assembly, or ucontext elsewhere
//
// cuemu_switch(&from_sp, to_sp) pushes the six callee-saved registers, stores
// rsp in *from_sp, loads to_sp and pops the other context's registers. It is an
// opaque out-of-line function (COMDAT, weak, hidden, so that several
// translation units can include this header), so the compiler must assume it
// reads and writes all memory: nothing (threadIdx, shared data) is cached in a
// register across a barrier.

#ifndef CUEMU_UCONTEXT
extern "C" void cuemu_switch(void **from_sp, void *to_sp);
__asm__(
    ".pushsection .text.cuemu_switch,\"axG\",@progbits,cuemu_switch,comdat\n"
    ".weak cuemu_switch\n"
    ".hidden cuemu_switch\n"
    ".type cuemu_switch,@function\n"
    "cuemu_switch:\n"
    "  .cfi_startproc\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    "  .cfi_endproc\n"
    ".size cuemu_switch,.-cuemu_switch\n"
    ".popsection\n");
struct Context { void *sp = nullptr; };
inline void raw_switch(Context *from, Context *to) { cuemu_switch(&from->sp, to->sp); }
#else
struct Context { ucontext_t uc; };
inline void raw_switch(Context *from, Context *to) {
    if (swapcontext(&from->uc, &to->uc) != 0) cuemu_fail("swapcontext failed");
}
#endif

// ----------------------------------------------------------------------------
// Fibers and the per-OS-thread scheduler state

enum FiberState { RUNNABLE, AT_SYNCTHREADS, AT_WARP_OP, DONE };
enum WarpOp { OP_SYNCWARP, OP_SHFL_IDX, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_ANY, OP_ALL,
              OP_MMA, OP_LDMATRIX };  // the last two: warp collectives (see "Warp collectives")
inline const char *warp_op_name(int op) {
    static const char *names[] = {"__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                  "__shfl_xor_sync", "__ballot_sync", "__any_sync", "__all_sync",
                                  "mma.sync", "ldmatrix"};
    return names[op];
}

struct Fiber {
    Context ctx;
    char *map = nullptr;     // mmap'd region: guard page, then the stack
    char *stack_lo = nullptr;
    size_t stack_size = 0;
    unsigned valgrind_id = 0;
    void *tsan_fiber = nullptr;
    // the CUDA thread it runs in the current block
    int tid = 0;
    uint3 tidx{};
    FiberState state = DONE;
    const char *file = "";   // where it waits
    int line = 0;
    int pred = 0;            // __syncthreads_count/and/or predicate
    // the pending warp operation
    int op = 0, arg = 0, width = 32, size = 0;
    unsigned mask = 0;
    alignas(16) unsigned char val[16];
    alignas(16) unsigned char res[16];
};

struct WarpGroup {         // lanes waiting in one warp operation over `mask`
    uint32_t mask, arrived;
};

struct Warp {
    uint32_t exist_mask;  // lanes that exist in this block
    uint32_t done_mask;   // lanes that exited
    uint32_t wait_mask;   // lanes waiting in a warp operation
    int ngroups;          // the operations in progress: usually one, more when parts of the warp use their own masks
    WarpGroup groups[32];
};

struct Job {                       // one launch, type-erased
    void (*run_thread)(const Job *);  // runs the kernel for the current CUDA thread
    const void *kernel;
    const void *params;
    dim3 grid, block;
    size_t smem;
};

struct Worker {
    std::vector<Fiber *> pool;  // pool[t] runs CUDA thread t; grows to the largest block
    Context main_ctx;
    Fiber *current = nullptr;   // the running fiber; nullptr on the OS thread's own stack
    const Job *job = nullptr;
    // the block in flight
    int nthreads = 0, ndone = 0, nsync = 0;
    int sync_count = 0;         // __syncthreads_count's result: threads with a true predicate
    int sync_live = 0;          // ... out of this many
    Warp warps[32];
    int queue[1024];            // ring of runnable fibers, head first
    int qhead = 0, qlen = 0;
    uint64_t block_serial = 0;  // counts the blocks run here: per-thread state (cp.async) knows a new block
    int order[1024];
    uint64_t rng = 0;
    unsigned char *dyn_smem = nullptr;
    size_t dyn_smem_bytes = 0;
#ifdef CUEMU_ASAN
    const void *main_stack_lo = nullptr;
    size_t main_stack_size = 0;
#endif
#ifdef CUEMU_TSAN
    void *tsan_main = __tsan_get_current_fiber();
#endif

    ~Worker() {
        for (Fiber *f : pool) {
#ifdef CUEMU_TSAN
            __tsan_destroy_fiber(f->tsan_fiber);
#endif
#ifdef CUEMU_VALGRIND
            VALGRIND_STACK_DEREGISTER(f->valgrind_id);
#endif
#ifdef CUEMU_ASAN
            __asan_unpoison_memory_region(f->stack_lo, f->stack_size);
#endif
            munmap(f->map, f->stack_size + (size_t)sysconf(_SC_PAGESIZE));
            delete f;
        }
        free(dyn_smem);
    }
};

// The OS thread's scheduler state, made on first use and deleted when the thread ends.
// The hot paths read a plain thread-local pointer (no TLS wrapper call).
inline thread_local Worker *this_worker = nullptr;
struct WorkerOwner {
    ~WorkerOwner() { delete this_worker; this_worker = nullptr; }
};
inline Worker &worker() {
    if (__builtin_expect(!this_worker, 0)) {
        static thread_local WorkerOwner owner;
        (void)owner;
        this_worker = new Worker;
    }
    return *this_worker;
}

inline void *dynamic_smem() { return worker().dyn_smem; }

// Switches from the running context (a fiber, or the OS thread's stack when
// from == nullptr) to `to` (a fiber, or the OS thread's stack when nullptr),
// telling ASan which stack it is about to run on.
inline void switch_to(Worker &w, Fiber *from, Fiber *to) {
    w.current = to;
    if (to) threadIdx = to->tidx;
#ifdef CUEMU_ASAN
    void *fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, to ? to->stack_lo : w.main_stack_lo,
                                   to ? to->stack_size : w.main_stack_size);
#endif
#ifdef CUEMU_TSAN
    __tsan_switch_to_fiber(to ? to->tsan_fiber : w.tsan_main, 0);
#endif
    raw_switch(from ? &from->ctx : &w.main_ctx, to ? &to->ctx : &w.main_ctx);
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

inline void block_location(char *buf, size_t n) {
    snprintf(buf, n, "block (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z);
}

// "thread (x,y,z)" of the current block, for messages
struct ThreadName {
    char s[48];
    explicit ThreadName(const Fiber *f) { snprintf(s, sizeof s, "thread (%u,%u,%u)", f->tidx.x, f->tidx.y, f->tidx.z); }
};

// ----------------------------------------------------------------------------
// The run queue and the schedules

inline uint64_t next_random(uint64_t *state) {  // splitmix64
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Puts the fibers ids[0..n) (given in ascending thread order) in schedule
// order, then into the run queue: at the front (a released warp runs next,
// which keeps its stacks hot) or at the back.
inline void enqueue(Worker &w, int *ids, int n, bool front) {
    Schedule s = settings().schedule;
    if (s == REVERSE) {
        for (int i = 0; i < n / 2; i++) std::swap(ids[i], ids[n - 1 - i]);
    } else if (s == RANDOM) {
        for (int i = n - 1; i > 0; i--) std::swap(ids[i], ids[next_random(&w.rng) % (uint64_t)(i + 1)]);
    }
    if (front) {
        for (int i = n - 1; i >= 0; i--) { w.qhead = (w.qhead + 1023) & 1023; w.queue[w.qhead] = ids[i]; }
    } else {
        for (int i = 0; i < n; i++) w.queue[(w.qhead + w.qlen + i) & 1023] = ids[i];
    }
    w.qlen += n;
}

[[noreturn]] inline void report_deadlock(Worker &w);

// Releases the block barrier: every live fiber waits at __syncthreads(), which
// must be the same call site for all of them.
inline void release_syncthreads(Worker &w) {
    const Fiber *first = nullptr;
    int n = 0, count = 0;
    for (int t = 0; t < w.nthreads; t++) {
        Fiber *f = w.pool[t];
        if (f->state == DONE) continue;
        if (!first) first = f;
        else if (f->line != first->line || (f->file != first->file && strcmp(f->file, first->file) != 0)) {
            char b[64];
            block_location(b, sizeof b);
            cuemu_fail("divergent __syncthreads() in %s: %s waits at %s:%d, %s at %s:%d", b,
                       ThreadName(first).s, first->file, first->line, ThreadName(f).s, f->file, f->line);
        }
        count += f->pred != 0;
        f->state = RUNNABLE;
        w.order[n++] = t;
    }
    w.nsync = 0;
    w.sync_count = count;
    w.sync_live = n;
    enqueue(w, w.order, n, false);
}

// The running fiber `self` cannot go on (it waits or is done): hand the CPU to
// the next runnable fiber, or back to the OS thread when the block is done.
// Returns when `self` runs again.
inline void schedule_next(Worker &w, Fiber *self) {
    if (w.qlen == 0) {
        if (w.ndone == w.nthreads) { switch_to(w, self, nullptr); return; }
        if (w.nsync + w.ndone == w.nthreads) release_syncthreads(w);
        else report_deadlock(w);
    }
    Fiber *next = w.pool[w.queue[w.qhead]];
    w.qhead = (w.qhead + 1) & 1023;
    w.qlen--;
    if (next == self) { threadIdx = self->tidx; return; }
    switch_to(w, self, next);
}

// A fiber's whole life: run the kernel for the CUDA thread it is given, mark
// itself done, hand over; the next block (or launch) resumes it in the loop.
inline void fiber_main() {
    Worker &w = worker();
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    for (;;) {
        Fiber *self = w.current;
        w.job->run_thread(w.job);
        self->state = DONE;
        w.ndone++;
        Warp &wp = w.warps[self->tid >> 5];
        uint32_t bit = 1u << (self->tid & 31);
        wp.done_mask |= bit;
        for (int i = 0; i < wp.ngroups; i++) {
            if (!(wp.groups[i].mask & bit)) continue;
            Fiber *g = w.pool[(self->tid & ~31) + __builtin_ctz(wp.groups[i].arrived)];
            char b[64];
            block_location(b, sizeof b);
            cuemu_fail("%s: %s exited while %s waits for it in %s(mask 0x%08x) at %s:%d", b, ThreadName(self).s,
                       ThreadName(g).s, warp_op_name(g->op), g->mask, g->file, g->line);
        }
        schedule_next(w, self);
    }
}

#ifdef CUEMU_UCONTEXT
inline void fiber_entry_ucontext() { fiber_main(); }
#else
extern "C" inline void cuemu_fiber_entry() { fiber_main(); }
#endif

inline Fiber *new_fiber(size_t stack_bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    stack_bytes = (stack_bytes + page - 1) & ~(page - 1);
    Fiber *f = new Fiber;
    void *map = mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) cuemu_fail("mmap of a %zu KiB fiber stack failed", stack_bytes / 1024);
    if (mprotect(map, page, PROT_NONE) != 0) cuemu_fail("mprotect of a fiber stack's guard page failed");
    f->map = (char *)map;
    f->stack_lo = f->map + page;  // an overflow runs into the guard page below and faults
    f->stack_size = stack_bytes;
#ifdef CUEMU_VALGRIND
    f->valgrind_id = VALGRIND_STACK_REGISTER(f->stack_lo, f->stack_lo + stack_bytes);
#endif
#ifdef CUEMU_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
#ifdef CUEMU_UCONTEXT
    getcontext(&f->ctx.uc);
    f->ctx.uc.uc_stack.ss_sp = f->stack_lo;
    f->ctx.uc.uc_stack.ss_size = stack_bytes;
    f->ctx.uc.uc_link = nullptr;
    makecontext(&f->ctx.uc, fiber_entry_ucontext, 0);
#else
    // The first cuemu_switch to this stack pops six zero registers and
    // "returns" into cuemu_fiber_entry with rsp % 16 == 8, as after a call.
    void **sp = (void **)(f->stack_lo + stack_bytes);
    *--sp = nullptr;  // cuemu_fiber_entry's return address: it never returns
    *--sp = (void *)cuemu_fiber_entry;
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    f->ctx.sp = sp;
#endif
    return f;
}

// Runs one block on this OS thread: blockIdx etc. are already set.
inline void run_block(Worker &w, int nthreads) {
    while ((int)w.pool.size() < nthreads) w.pool.push_back(new_fiber(settings().stack_bytes));
    dim3 bd = blockDim;
    w.nthreads = nthreads;
    w.ndone = w.nsync = 0;
    w.block_serial++;
    for (int i = 0; i < 32; i++) {
        Warp &wp = w.warps[i];
        wp.exist_mask = wp.done_mask = wp.wait_mask = 0;
        wp.ngroups = 0;
    }
    for (int t = 0; t < nthreads; t++) {
        Fiber *f = w.pool[t];
        f->tid = t;
        f->tidx = uint3{t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
        f->state = RUNNABLE;
        w.warps[t >> 5].exist_mask |= 1u << (t & 31);
        w.order[t] = t;
    }
    if (w.dyn_smem_bytes && settings().poison) memset(w.dyn_smem, 0xFF, w.dyn_smem_bytes);
    w.qhead = w.qlen = 0;
    enqueue(w, w.order, nthreads, false);
    Fiber *first = w.pool[w.queue[w.qhead]];
    w.qhead = (w.qhead + 1) & 1023;
    w.qlen--;
    switch_to(w, nullptr, first);  // returns when every fiber is done
}

// ----------------------------------------------------------------------------
// Barriers: __syncthreads and the warp operations

inline Fiber *running_fiber(const char *what) {
    Fiber *f = worker().current;
    if (!f) cuemu_fail("%s called outside a kernel", what);
    return f;
}

inline int syncthreads_with(int pred, const char *file, int line) {
    Worker &w = worker();
    Fiber *f = running_fiber("__syncthreads()");
    f->state = AT_SYNCTHREADS;
    f->file = file;
    f->line = line;
    f->pred = pred;
    w.nsync++;
    schedule_next(w, f);
    return w.sync_count;
}

[[noreturn]]
inline void report_deadlock(Worker &w) {
    char b[64];
    block_location(b, sizeof b);
    for (int t = 0; t < w.nthreads; t++) {
        Fiber *f = w.pool[t];
        if (f->state != AT_WARP_OP) continue;
        const Warp &wp = w.warps[t >> 5];
        uint32_t missing = f->mask & ~wp.wait_mask;
        Fiber *g = missing ? w.pool[(t & ~31) + __builtin_ctz(missing)] : f;
        const char *where = g->state == AT_SYNCTHREADS ? "waits at __syncthreads()" : "waits in another warp operation";
        cuemu_fail("deadlock in %s: %s waits in %s(mask 0x%08x) at %s:%d, but %s %s at %s:%d", b, ThreadName(f).s,
                   warp_op_name(f->op), f->mask, f->file, f->line, ThreadName(g).s, where, g->file, g->line);
    }
    cuemu_fail("deadlock in %s: no CUDA thread can run", b);
}

// ----------------------------------------------------------------------------
// Warp collectives: mma.sync and ldmatrix (the wrappers are in common/mma.cuh)
//
// Their PTX forms are .aligned: all 32 lanes execute the same instruction
// together. Each lane hands in a pointer to its own operands (on its fiber
// stack, alive while it waits) and the function that computes the result;
// the last lane to arrive checks that every lane came from the same call site
// with the same variant, then calls the function once with all 32 pointers,
// and it writes each lane's result registers. The warp barrier itself is
// warp_op(), so lanes that exited, wait at __syncthreads() or wait in another
// warp operation are reported as for shuffles.

typedef void (*CollectiveFn)(void *const lanes[32]);
inline void warp_op(int op, unsigned mask, const void *val, int size, int arg, int width, const char *file, int line);

inline void complete_collective(Worker &w, int base, uint32_t mask) {
    Fiber *f0 = w.pool[base + __builtin_ctz(mask)];
    CollectiveFn fn0;
    memcpy(&fn0, f0->val, sizeof fn0);
    void *lanes[32] = {};
    int ids[32], n = 0;
    for (uint32_t m = mask; m; m &= m - 1) {
        int lane = __builtin_ctz(m);
        Fiber *f = w.pool[base + lane];
        CollectiveFn fn;
        memcpy(&fn, f->val, sizeof fn);
        if (f->line != f0->line || strcmp(f->file, f0->file) != 0 || f->arg != f0->arg || fn != fn0) {
            char b[64];
            block_location(b, sizeof b);
            cuemu_fail("%s: divergent %s: %s at %s:%d, %s at %s:%d (all 32 lanes of a warp must execute the same "
                       "%s together)", b, warp_op_name(f0->op), ThreadName(f0).s, f0->file, f0->line,
                       ThreadName(f).s, f->file, f->line, warp_op_name(f0->op));
        }
        memcpy(&lanes[lane], f->val + sizeof(CollectiveFn), sizeof(void *));
        f->state = RUNNABLE;
        ids[n++] = base + lane;
    }
    fn0(lanes);
    w.warps[base >> 5].wait_mask &= ~mask;
    enqueue(w, ids, n, true);
}

// One lane's part of a collective of kind op (OP_MMA, OP_LDMATRIX), variant
// `variant` (which must agree across lanes): waits for the whole warp.
inline void warp_collective(int op, int variant, CollectiveFn fn, void *lane_data, const char *file, int line) {
    unsigned char val[16];
    memcpy(val, &fn, sizeof fn);
    memcpy(val + sizeof fn, &lane_data, sizeof lane_data);
    warp_op(op, 0xffffffffu, val, (int)sizeof val, variant, 32, file, line);
}

// Computes the result of every lane in the warp operation's mask (PTX
// shfl.sync rules, width included) and releases them.
inline void complete_warp_op(Worker &w, int base, uint32_t mask) {
    Fiber *f0 = w.pool[base + __builtin_ctz(mask)];
    int op = f0->op;
    if (op == OP_MMA || op == OP_LDMATRIX) { complete_collective(w, base, mask); return; }
    int ids[32], n = 0;
    uint32_t ballot = 0;
    if (op == OP_BALLOT || op == OP_ANY || op == OP_ALL) {
        for (uint32_t m = mask; m; m &= m - 1) {
            int l = __builtin_ctz(m);
            if (w.pool[base + l]->pred) ballot |= 1u << l;
        }
    }
    for (uint32_t m = mask; m; m &= m - 1) {
        int lane = __builtin_ctz(m);
        Fiber *f = w.pool[base + lane];
        int width = f->width, seg = lane & ~(width - 1), src = lane;
        int b = f->arg;
        switch (op) {
        case OP_SHFL_IDX: src = seg + (b & (width - 1)); break;
        case OP_SHFL_UP: src = lane - b; if (src < seg) src = lane; break;
        case OP_SHFL_DOWN: src = lane + b; if (src > seg + width - 1) src = lane; break;
        case OP_SHFL_XOR: src = lane ^ b; if (src > seg + width - 1) src = lane; break;
        default: break;
        }
        if (src < 0 || src > 31 || !(mask & (1u << src))) src = lane;  // a lane that takes no part: own value
        uint32_t r;
        switch (op) {
        case OP_BALLOT: memcpy(f->res, &ballot, 4); break;
        case OP_ANY: r = ballot != 0; memcpy(f->res, &r, 4); break;
        case OP_ALL: r = ballot == mask; memcpy(f->res, &r, 4); break;
        case OP_SYNCWARP: break;
        default: memcpy(f->res, w.pool[base + src]->val, (size_t)f->size); break;
        }
        f->state = RUNNABLE;
        ids[n++] = base + lane;
    }
    w.warps[base >> 5].wait_mask &= ~mask;
    enqueue(w, ids, n, true);
}

// Every warp operation: a warp barrier over `mask`. The last lane to arrive
// computes all results.
inline void warp_op(int op, unsigned mask, const void *val, int size, int arg, int width, const char *file, int line) {
    Worker &w = worker();
    Fiber *f = running_fiber(warp_op_name(op));
    int lane = f->tid & 31, base = f->tid & ~31;
    uint32_t bit = 1u << lane;
    Warp &wp = w.warps[f->tid >> 5];
    char b[64];
    if (!(mask & bit)) {
        block_location(b, sizeof b);
        cuemu_fail("%s: %s (lane %d) calls %s with mask 0x%08x, which excludes the calling lane, at %s:%d", b,
                   ThreadName(f).s, lane, warp_op_name(op), mask, file, line);
    }
    if (width < 1 || width > 32 || (width & (width - 1))) {
        block_location(b, sizeof b);
        cuemu_fail("%s: %s calls %s with width %d (must be a power of two <= 32) at %s:%d", b, ThreadName(f).s,
                   warp_op_name(op), width, file, line);
    }
    uint32_t gone = mask & (wp.done_mask | ~wp.exist_mask);
    if (gone) {
        block_location(b, sizeof b);
        cuemu_fail("%s: %s calls %s with mask 0x%08x at %s:%d, but lane %d %s", b, ThreadName(f).s, warp_op_name(op),
                   mask, file, line, __builtin_ctz(gone),
                   (wp.exist_mask >> __builtin_ctz(gone)) & 1 ? "has exited" : "does not exist in this block");
    }
    f->op = op;
    f->mask = mask;
    f->arg = arg;
    f->width = width;
    f->size = size;
    if (size) memcpy(f->val, val, (size_t)size);
    f->file = file;
    f->line = line;
    f->state = AT_WARP_OP;
    // Lanes that wait for each other must be in the same operation: undefined in CUDA otherwise. A
    // group whose mask leaves this lane out, or that waits for it while it waits for none of them,
    // is another, independent operation of the warp.
    WarpGroup *mine = nullptr;
    for (int i = 0; i < wp.ngroups; i++) {
        WarpGroup &g = wp.groups[i];
        Fiber *other = nullptr;
        if (g.mask == mask) {
            mine = &g;
            Fiber *r = w.pool[base + __builtin_ctz(g.arrived)];
            if (r->op != op || r->width != width || r->size != size) other = r;
        } else if ((g.mask & bit) && (g.arrived & mask)) {
            other = w.pool[base + __builtin_ctz(g.arrived & mask)];
        }
        if (other) {
            block_location(b, sizeof b);
            cuemu_fail("%s: mismatched warp operations: %s calls %s(mask 0x%08x, width %d) at %s:%d, %s calls "
                       "%s(mask 0x%08x, width %d) at %s:%d", b, ThreadName(other).s, warp_op_name(other->op),
                       other->mask, other->width, other->file, other->line, ThreadName(f).s, warp_op_name(op), mask,
                       width, file, line);
        }
    }
    if (!mine) {
        mine = &wp.groups[wp.ngroups++];
        mine->mask = mask;
        mine->arrived = 0;
    }
    mine->arrived |= bit;
    wp.wait_mask |= bit;
    if (mine->arrived == mask) {
        *mine = wp.groups[--wp.ngroups];
        complete_warp_op(w, base, mask);
    }
    schedule_next(w, f);
}

template <typename T>
inline T shfl(int op, unsigned mask, T var, int arg, int width, const char *file, int line) {
    static_assert(sizeof(T) <= 16, "warp shuffles take values of at most 16 bytes");
    warp_op(op, mask, &var, (int)sizeof(T), arg, width, file, line);
    T out = var;
    memcpy((void *)&out, worker().current->res, sizeof(T));
    return out;
}

inline unsigned vote(int op, unsigned mask, int pred, const char *file, int line) {
    Fiber *f = running_fiber(warp_op_name(op));
    f->pred = pred;
    warp_op(op, mask, nullptr, 0, 0, 32, file, line);
    unsigned r;
    memcpy(&r, worker().current->res, 4);
    return r;
}

// ----------------------------------------------------------------------------
// Runtime state: last error, opt-in shared memory limits, device properties

constexpr size_t SMEM_DEFAULT_LIMIT = 48 * 1024;
constexpr size_t SMEM_OPTIN_LIMIT = 227 * 1024;

inline thread_local cudaError_t last_error = cudaSuccess;

inline cudaError_t set_error(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}

struct FuncAttr { const void *func; int max_dynamic_smem; };
inline std::mutex &func_attr_mutex() { static std::mutex m; return m; }
inline std::vector<FuncAttr> &func_attrs() { static std::vector<FuncAttr> v; return v; }

inline size_t smem_limit(const void *kernel) {
    std::lock_guard<std::mutex> lock(func_attr_mutex());
    for (const FuncAttr &a : func_attrs())
        if (a.func == kernel) return (size_t)a.max_dynamic_smem;
    return SMEM_DEFAULT_LIMIT;
}

// ----------------------------------------------------------------------------
// Device memory: every cudaMalloc/cudaMallocHost block is recorded, so that a
// host pointer given to a kernel or to cudaMemcpy is caught here (device
// pointers are host pointers in emulation: the GPU would crash, the CPU would not).

struct Allocation { size_t bytes; bool pinned_host; };
inline std::mutex &allocation_mutex() { static std::mutex m; return m; }
inline std::map<uintptr_t, Allocation> &allocations() { static std::map<uintptr_t, Allocation> m; return m; }

inline void record_allocation(void *p, size_t bytes, bool pinned_host) {
    std::lock_guard<std::mutex> lock(allocation_mutex());
    allocations()[(uintptr_t)p] = Allocation{bytes, pinned_host};
}

// Forgets the allocation that starts at p; false if there is none of that kind.
inline bool forget_allocation(void *p, bool pinned_host) {
    std::lock_guard<std::mutex> lock(allocation_mutex());
    auto it = allocations().find((uintptr_t)p);
    if (it == allocations().end() || it->second.pinned_host != pinned_host) return false;
    allocations().erase(it);
    return true;
}

// Does [p, p + bytes) lie inside one allocation (device memory, or also pinned host
// memory, which kernels may read through unified addressing)? The end of an
// allocation counts as inside for bytes == 0 (an empty slice).
inline bool in_allocation(const void *p, size_t bytes, bool pinned_ok) {
    std::lock_guard<std::mutex> lock(allocation_mutex());
    auto it = allocations().upper_bound((uintptr_t)p);
    if (it == allocations().begin()) return false;
    --it;
    uintptr_t lo = it->first, hi = lo + it->second.bytes, a = (uintptr_t)p;
    return (pinned_ok || !it->second.pinned_host) && a >= lo && a <= hi && bytes <= hi - a;
}

// Checks every pointer-typed kernel argument: at launch (`freed` false), and
// again when the kernel runs (true: a graph replayed after cudaFree of a buffer
// it was captured with).
template <typename Tuple, size_t... I>
inline void check_pointer_args(const Tuple &params, const char *kernel, const char *file, int line, bool freed,
                               std::index_sequence<I...>) {
    auto check = [&](auto arg, size_t index) {
        using T = decltype(arg);
        if constexpr (std::is_pointer<T>::value) {
            if (arg && !in_allocation((const void *)arg, 0, true))
                cuemu_fail("%s:%d: CU_LAUNCH(%s): argument %zu is %p, which is %s", file, line, kernel, index + 1,
                           (const void *)arg, freed ? "no longer memory from cudaMalloc (freed since the launch was "
                           "queued or captured in a graph)" : "not memory from cudaMalloc (a host pointer: the GPU would fault)");
        }
    };
    (check(std::get<I>(params), I), ...);
    (void)check;  // a kernel without arguments
}

// ----------------------------------------------------------------------------
// Streams: work given to a stream runs later, as on a GPU
//
// A launch, copy, GEMM or collective on a created stream is queued and runs only
// when something waits for it: cudaStreamSynchronize, cudaDeviceSynchronize, an
// event wait, cudaFree, or any work on the legacy default stream (stream 0),
// which waits for every blocking stream of its device first. So a host read
// without the synchronisation it needs sees stale data here, as it could on the
// GPU, and a missing event between two streams gives wrong results.
// Work on stream 0 runs at once. Flushes run on the thread that waits, so a
// thread only flushes the streams it created (threads that share a device are
// rare: NCCL ranks each have their own).

// Eight devices, like an HGX node, so that NCCL code can give each rank thread its own;
// they all are this CPU.
constexpr int EMULATED_DEVICES = 8;
inline thread_local int current_device = 0;

}  // namespace cuemu

struct CUstream_st {
    int device;
    bool blocking;  // waits for (and is waited for by) the legacy default stream
    std::thread::id owner;
    std::mutex running;
    std::deque<std::function<void()>> work;
    cudaGraph_t capture = nullptr;  // the graph its work is recorded into (cudaStreamBeginCapture), or null
    cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
    std::thread::id capture_thread;  // the thread that began the capture
    bool capture_invalid = false;    // a call the capture forbids was made: cudaStreamEndCapture fails
};

// A captured graph: the stream's work in order, each item with the arguments it was given at capture.
struct CUgraph_st { std::vector<std::function<void()>> nodes; };
// An instantiated graph; the nodes are shared with the launches still queued when it is destroyed.
struct CUgraphExec_st { std::shared_ptr<const std::vector<std::function<void()>>> nodes; };

struct CUevent_st {
    double seconds = 0.0;
    cudaStream_t stream = nullptr;  // where it was last recorded
    cudaGraph_t capture = nullptr;  // the graph that record went into, or null
    bool done = false;              // that record has run
};

namespace cuemu {

inline std::mutex &stream_mutex() { static std::mutex m; return m; }
inline std::vector<cudaStream_t> &streams() { static std::vector<cudaStream_t> v; return v; }

inline bool is_default_stream(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread; }

// Runs everything queued on `s`, in order.
inline void flush_stream(cudaStream_t s) {
    std::lock_guard<std::mutex> lock(s->running);
    while (!s->work.empty()) {
        std::function<void()> item = std::move(s->work.front());
        s->work.pop_front();
        item();
    }
}

// Runs the queued work of this thread's streams on the current device (only the
// blocking ones, for the default stream's implicit wait).
inline void flush_device(bool blocking_only) {
    std::vector<cudaStream_t> mine;
    {
        std::lock_guard<std::mutex> lock(stream_mutex());
        for (cudaStream_t s : streams())
            if (s->device == current_device && s->owner == std::this_thread::get_id() && (s->blocking || !blocking_only))
                mine.push_back(s);
    }
    for (cudaStream_t s : mine) flush_stream(s);
}

// ----------------------------------------------------------------------------
// Graphs: stream capture records what would run
//
// Between cudaStreamBeginCapture and cudaStreamEndCapture, every operation
// given to the stream (a launch with its arguments converted at capture, a copy,
// a memset, a GEMM, a collective: all go through on_stream() below) is appended
// to the graph instead of queued; cudaGraphLaunch replays the graph's items in
// order, in the launch stream's order. Host values a call reads (kernel
// arguments, GEMM alpha and beta) are frozen at capture, as on a GPU: a value
// that must change per replay has to live in device memory.
//
// The calls a capture forbids fail as on a GPU, with
// cudaErrorStreamCaptureUnsupported (so cudaCheck names the file and line),
// and invalidate the capture (cudaStreamEndCapture then fails too): while this
// thread captures in global or thread-local mode, or any thread in global mode,
// anything on the legacy default stream (a synchronous cudaMemcpy or cudaMemset
// included), cudaDeviceSynchronize, cudaStreamSynchronize and cudaStreamQuery,
// cudaEventSynchronize and cudaEventQuery, cudaMalloc and cudaFree (host ones too);
// in any mode, synchronising the capturing stream itself. A launch on the
// legacy default stream stops the program at its CU_LAUNCH line. Captures
// that span streams (an event recorded in one capture, waited for by another
// stream) are not emulated, and stop the program.

inline thread_local int strict_captures = 0;  // this thread's captures in global or thread-local mode
inline std::atomic<int> global_captures{0};   // every thread's captures in global mode

// Does a capture forbid the capture-unsafe calls now?
inline bool capture_forbids_unsafe() { return strict_captures > 0 || global_captures.load() > 0; }

// A call the capture forbids: invalidates the captures it breaks (this thread's,
// every global one, and `also`'s) and returns the error.
inline cudaError_t refuse_in_capture(cudaStream_t also = nullptr, cudaError_t error = cudaErrorStreamCaptureUnsupported) {
    {
        std::lock_guard<std::mutex> lock(stream_mutex());
        for (cudaStream_t s : streams())
            if (s->capture && (s == also || s->capture_thread == std::this_thread::get_id() ||
                               s->capture_mode == cudaStreamCaptureModeGlobal))
                s->capture_invalid = true;
    }
    return set_error(error);
}

// Runs `work` in stream order: now on the default stream (after the blocking
// streams), queued on a created one, or recorded into the graph it captures.
// Every stream operation of the emulator goes through here.
inline cudaError_t on_stream(cudaStream_t s, std::function<void()> work) {
    if (is_default_stream(s)) {
        if (capture_forbids_unsafe()) return refuse_in_capture();
        flush_device(true);
        work();
    } else {
        std::lock_guard<std::mutex> lock(s->running);
        if (s->capture) s->capture->nodes.push_back(std::move(work));
        else s->work.push_back(std::move(work));
    }
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// Launch

// Runs blocks first, first + stride, ... of the grid on this OS thread: a fixed share,
// so that which OS thread runs which block does not depend on timing.
inline void run_blocks(const Job *job, uint64_t first, uint64_t stride) {
    Worker &w = worker();
#ifdef CUEMU_ASAN
    if (!w.main_stack_lo) {
        pthread_attr_t attr;
        void *lo;
        size_t size;
        pthread_getattr_np(pthread_self(), &attr);
        pthread_attr_getstack(&attr, &lo, &size);
        pthread_attr_destroy(&attr);
        w.main_stack_lo = lo;
        w.main_stack_size = size;
    }
#endif
    if (!w.rng) w.rng = settings().seed * 0x9E3779B97F4A7C15ull + 1;
    w.job = job;
    if (w.dyn_smem_bytes != job->smem || !w.dyn_smem) {  // exactly the launch's bytes: no slack to hide overflows
        free(w.dyn_smem);
        w.dyn_smem = (unsigned char *)malloc(job->smem);
        if (!w.dyn_smem && job->smem) cuemu_fail("out of memory for %zu bytes of dynamic shared memory", job->smem);
        w.dyn_smem_bytes = job->smem;
    }
    gridDim = job->grid;
    blockDim = job->block;
    uint64_t gx = job->grid.x, gy = job->grid.y;
    uint64_t nblocks = gx * gy * job->grid.z;
    int nthreads = (int)(job->block.x * job->block.y * job->block.z);
    for (uint64_t b = first; b < nblocks; b += stride) {
        blockIdx = uint3{(unsigned)(b % gx), (unsigned)(b / gx % gy), (unsigned)(b / (gx * gy))};
        run_block(w, nthreads);
    }
    w.job = nullptr;
}

// The checks a GPU makes when the kernel is launched (not when it runs).
inline cudaError_t check_launch(const Job &job) {
    if (Fiber *f = worker().current) {
        char b[64];
        block_location(b, sizeof b);
        cuemu_fail("%s, %s: kernel launch from inside a kernel (dynamic parallelism is not emulated)", b,
                   ThreadName(f).s);
    }
    const dim3 &g = job.grid, &b = job.block;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z || b.x > 1024 || b.y > 1024 || b.z > 64 ||
        (uint64_t)b.x * b.y * b.z > 1024 || g.x > 2147483647u || g.y > 65535 || g.z > 65535)
        return set_error(cudaErrorInvalidConfiguration);
    if (job.smem > smem_limit(job.kernel)) return set_error(cudaErrorInvalidValue);
    return cudaSuccess;
}

// Runs every block of a checked launch.
inline void launch(const Job &job) {
    const dim3 &g = job.grid;
    uint64_t nblocks = (uint64_t)g.x * g.y * g.z;
    int nos = settings().os_threads;
    if ((uint64_t)nos > nblocks) nos = (int)nblocks;
    std::vector<std::thread> helpers;
    for (int i = 1; i < nos; i++) helpers.emplace_back(run_blocks, &job, (uint64_t)i, (uint64_t)nos);
    run_blocks(&job, 0, (uint64_t)nos);
    for (std::thread &t : helpers) t.join();
}

// The memory-access profile (CUEMU_PROFILE=1) around each launch: common/cuemu_profile.h.
inline bool profile_begin(const Job &job, const char *name);
inline void profile_end(const Job &job, const char *name, bool began);

// CU_LAUNCH(kernel, grid, block, smem, stream)(args...): converts the
// arguments to the kernel's parameter types once, at launch, as nvcc does;
// every CUDA thread then calls the kernel with its own by-value copies.
template <typename... P>
struct Launcher {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const char *name, *file;  // the kernel as written in CU_LAUNCH, and where
    int line;

    template <typename... A>
    void operator()(A &&...args) const {
        static_assert(sizeof...(A) == sizeof...(P), "CU_LAUNCH: wrong number of kernel arguments");
        using Params = std::tuple<std::decay_t<P>...>;
        auto params = std::make_shared<Params>(std::forward<A>(args)...);  // kept alive while queued
        check_pointer_args(*params, name, file, line, false, std::index_sequence_for<P...>{});
        Job job;
        job.run_thread = [](const Job *j) {
            auto k = reinterpret_cast<void (*)(P...)>(const_cast<void *>(j->kernel));
            std::apply(k, *static_cast<const Params *>(j->params));
        };
        job.kernel = reinterpret_cast<const void *>(kernel);
        job.params = params.get();
        job.grid = grid;
        job.block = block;
        job.smem = smem;
        if (check_launch(job) != cudaSuccess) return;  // the kernel does not run; cudaGetLastError says why
        cudaError_t e = on_stream(stream, [job, params, name = name, file = file, line = line] {
            check_pointer_args(*params, name, file, line, true, std::index_sequence_for<P...>{});
            bool profiled = profile_begin(job, name);
            launch(job);
            profile_end(job, name, profiled);
        });
        if (e != cudaSuccess)
            cuemu_fail("%s:%d: CU_LAUNCH(%s) on the legacy default stream while a graph is being captured (a GPU "
                       "refuses it and invalidates the capture)", file, line, name);
    }
};

template <typename... P>
inline Launcher<P...> launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                               const char *name, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return Launcher<P...>{kernel, grid, block, smem, stream, name, file, line};
}

}  // namespace cuemu

// ----------------------------------------------------------------------------
// Barriers and warp intrinsics (the call site is recorded through default arguments)

inline void __syncthreads(const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuemu::syncthreads_with(0, file, line);
}
inline int __syncthreads_count(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuemu::syncthreads_with(pred, file, line);
}
inline int __syncthreads_and(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuemu::syncthreads_with(pred, file, line) == cuemu::worker().sync_live;
}
inline int __syncthreads_or(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuemu::syncthreads_with(pred, file, line) != 0;
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuemu::warp_op(cuemu::OP_SYNCWARP, mask, nullptr, 0, 0, 32, file, line);
}
template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, const char *file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
    return cuemu::shfl(cuemu::OP_SHFL_IDX, mask, var, srcLane, width, file, line);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuemu::shfl(cuemu::OP_SHFL_UP, mask, var, (int)delta, width, file, line);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuemu::shfl(cuemu::OP_SHFL_DOWN, mask, var, (int)delta, width, file, line);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,
                         const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuemu::shfl(cuemu::OP_SHFL_XOR, mask, var, laneMask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuemu::vote(cuemu::OP_BALLOT, mask, pred, file, line);
}
inline int __any_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return (int)cuemu::vote(cuemu::OP_ANY, mask, pred, file, line);
}
inline int __all_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return (int)cuemu::vote(cuemu::OP_ALL, mask, pred, file, line);
}
inline void __trap() { cuemu_fail("__trap() called in a kernel"); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ----------------------------------------------------------------------------
// Atomics: fibers of a block never interrupt each other, but with
// CUEMU_THREADS > 1 blocks run in parallel, so these are real atomics.

#define CUEMU_ATOMIC_INT(T)                                                                        \
    inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }         \
    inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }             \
    inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicCAS(T *p, T cmp, T v) {                                                         \
        __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);        \
        return cmp;                                                                                \
    }                                                                                              \
    inline T atomicMax(T *p, T v) {                                                                \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                              \
        while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {} \
        return old;                                                                                \
    }                                                                                              \
    inline T atomicMin(T *p, T v) {                                                                \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                              \
        while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {} \
        return old;                                                                                \
    }
CUEMU_ATOMIC_INT(int)
CUEMU_ATOMIC_INT(unsigned int)
CUEMU_ATOMIC_INT(unsigned long long int)
#undef CUEMU_ATOMIC_INT
inline unsigned short atomicCAS(unsigned short *p, unsigned short cmp, unsigned short v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}

namespace cuemu {
// Read-modify-write of any 2-, 4- or 8-byte type through a compare-and-swap loop.
template <typename T, typename U, typename F>
inline T atomic_update(T *p, F update) {
    static_assert(sizeof(T) == sizeof(U), "atomic_update: bit type must match");
    U *bits = reinterpret_cast<U *>(p);
    U old = __atomic_load_n(bits, __ATOMIC_SEQ_CST), nu;
    T oldv, newv;
    do {
        memcpy((void *)&oldv, &old, sizeof(T));
        newv = update(oldv);
        memcpy(&nu, (const void *)&newv, sizeof(T));
    } while (!__atomic_compare_exchange_n(bits, &old, nu, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return oldv;
}
}  // namespace cuemu

inline float atomicAdd(float *p, float v) { return cuemu::atomic_update<float, uint32_t>(p, [v](float o) { return o + v; }); }
inline double atomicAdd(double *p, double v) { return cuemu::atomic_update<double, uint64_t>(p, [v](double o) { return o + v; }); }
inline float atomicExch(float *p, float v) { return cuemu::atomic_update<float, uint32_t>(p, [v](float) { return v; }); }
inline __nv_bfloat16 atomicAdd(__nv_bfloat16 *p, __nv_bfloat16 v) {
    return cuemu::atomic_update<__nv_bfloat16, uint16_t>(p, [v](__nv_bfloat16 o) { return __hadd(o, v); });
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162 *p, __nv_bfloat162 v) {
    return cuemu::atomic_update<__nv_bfloat162, uint32_t>(p, [v](__nv_bfloat162 o) { return __hadd2(o, v); });
}

// ----------------------------------------------------------------------------
// Math, bit and memory intrinsics: host math at full precision

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline size_t min(size_t a, size_t b) { return a < b ? a : b; }
inline size_t max(size_t a, size_t b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
// Cache-hint loads and stores (llm.c's Packed128 uses them): plain accesses.
template <typename T> inline T __ldg(const T *p) { return *p; }
template <typename T> inline T __ldcs(const T *p) { return *p; }
template <typename T> inline T __ldcg(const T *p) { return *p; }
template <typename T> inline T __ldlu(const T *p) { return *p; }
template <typename T> inline void __stcs(T *p, T v) { *p = v; }
template <typename T> inline void __stcg(T *p, T v) { *p = v; }
template <typename T> inline void __stwb(T *p, T v) { *p = v; }

// ----------------------------------------------------------------------------
// bf16: the device-only part of cuda_bf16.h, rounding through float
// (so __hfma rounds twice where the GPU rounds once)

inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __float2bfloat16(fmaf(__bfloat162float(a), __bfloat162float(b), __bfloat162float(c)));
}
inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
    return __halves2bfloat162(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));
}
#define CUEMU_BF16_MATH(name, expr)                                                               \
    inline __nv_bfloat16 name(__nv_bfloat16 h) { float x = __bfloat162float(h); return __float2bfloat16(expr); }
CUEMU_BF16_MATH(hexp, expf(x))
CUEMU_BF16_MATH(hexp2, exp2f(x))
CUEMU_BF16_MATH(hlog, logf(x))
CUEMU_BF16_MATH(hlog2, log2f(x))
CUEMU_BF16_MATH(hsqrt, sqrtf(x))
CUEMU_BF16_MATH(hrsqrt, 1.0f / sqrtf(x))
CUEMU_BF16_MATH(hrcp, 1.0f / x)
CUEMU_BF16_MATH(hsin, sinf(x))
CUEMU_BF16_MATH(hcos, cosf(x))
CUEMU_BF16_MATH(htanh, tanhf(x))
#undef CUEMU_BF16_MATH
inline int __bfloat162int_rn(__nv_bfloat16 h) { return (int)nearbyintf(__bfloat162float(h)); }

// ----------------------------------------------------------------------------
// The runtime API subset: definitions of the toolkit's own declarations

inline double cuemu_now() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

namespace cuemu {
inline cudaError_t allocate(void **ptr, size_t size, bool pinned_host) {
    *ptr = nullptr;
    if (capture_forbids_unsafe()) return refuse_in_capture();
    // exact size, 256-byte aligned like cudaMalloc: an overflow reaches ASan's redzone
    if (posix_memalign(ptr, 256, size ? size : 1) != 0) return set_error(cudaErrorMemoryAllocation);
    record_allocation(*ptr, size, pinned_host);
    return cudaSuccess;
}
inline cudaError_t release(void *ptr, bool pinned_host) {
    if (capture_forbids_unsafe()) return refuse_in_capture();
    flush_device(false);  // cudaFree waits for the device: queued work may still use the memory
    if (!ptr) return cudaSuccess;
    if (!forget_allocation(ptr, pinned_host)) return set_error(cudaErrorInvalidValue);  // not ours, or freed twice
    free(ptr);
    return cudaSuccess;
}
}  // namespace cuemu
inline cudaError_t cudaMalloc(void **ptr, size_t size) { return cuemu::allocate(ptr, size, false); }
inline cudaError_t cudaFree(void *ptr) { return cuemu::release(ptr, false); }
inline cudaError_t cudaMallocHost(void **ptr, size_t size) { return cuemu::allocate(ptr, size, true); }
inline cudaError_t cudaFreeHost(void *ptr) { return cuemu::release(ptr, true); }
// The device side of a copy must lie inside one cudaMalloc block (cudaMemcpyDefault is not checked).
inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
    bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if ((dst_device && !cuemu::in_allocation(dst, count, false)) || (src_device && !cuemu::in_allocation(src, count, false)))
        return cuemu::set_error(cudaErrorInvalidValue);
    return count ? cuemu::on_stream(stream, [=] { memmove(dst, src, count); }) : cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
    return cudaMemcpyAsync(dst, src, count, kind, nullptr);
}
inline cudaError_t cudaMemsetAsync(void *dst, int value, size_t count, cudaStream_t stream) {
    if (!cuemu::in_allocation(dst, count, false)) return cuemu::set_error(cudaErrorInvalidValue);
    return count ? cuemu::on_stream(stream, [=] { memset(dst, value, count); }) : cudaSuccess;
}
inline cudaError_t cudaMemset(void *dst, int value, size_t count) { return cudaMemsetAsync(dst, value, count, nullptr); }
// __constant__ and __device__ are empty, so a symbol is an ordinary variable (cuda_runtime.h's
// templates pass its address)
inline cudaError_t cudaMemcpyToSymbol(const void *symbol, const void *src, size_t count, size_t offset,
                                      cudaMemcpyKind) {
    memcpy((char *)symbol + offset, src, count);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyFromSymbol(void *dst, const void *symbol, size_t count, size_t offset,
                                        cudaMemcpyKind) {
    memcpy(dst, (const char *)symbol + offset, count);
    return cudaSuccess;
}
// cuda_runtime.h defines the by-reference templates only for nvcc; here they also check the size
template <class T>
inline cudaError_t cudaMemcpyToSymbol(const T &symbol, const void *src, size_t count, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
    if (offset > sizeof(T) || count > sizeof(T) - offset) return cuemu::set_error(cudaErrorInvalidValue);
    return cudaMemcpyToSymbol((const void *)&symbol, src, count, offset, kind);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void *dst, const T &symbol, size_t count, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
    if (offset > sizeof(T) || count > sizeof(T) - offset) return cuemu::set_error(cudaErrorInvalidValue);
    return cudaMemcpyFromSymbol(dst, (const void *)&symbol, count, offset, kind);
}
inline cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = (size_t)sysconf(_SC_AVPHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    *total_bytes = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize(void) {
    if (cuemu::capture_forbids_unsafe()) return cuemu::refuse_in_capture();
    cuemu::flush_device(false);
    return cudaSuccess;
}
inline cudaError_t cudaDeviceReset(void) { return cudaDeviceSynchronize(); }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    cudaStream_t s = new CUstream_st();
    s->device = cuemu::current_device;
    s->blocking = !(flags & cudaStreamNonBlocking);
    s->owner = std::this_thread::get_id();
    std::lock_guard<std::mutex> lock(cuemu::stream_mutex());
    cuemu::streams().push_back(s);
    *stream = s;
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    bool capturing = !cuemu::is_default_stream(stream) && stream->capture;
    if (capturing || cuemu::capture_forbids_unsafe()) return cuemu::refuse_in_capture(capturing ? stream : nullptr);
    if (cuemu::is_default_stream(stream)) cuemu::flush_device(true);
    else cuemu::flush_stream(stream);
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (cuemu::is_default_stream(stream)) return cuemu::set_error(cudaErrorInvalidResourceHandle);
    if (stream->capture) return cuemu::set_error(cudaErrorIllegalState);  // end the capture first
    cuemu::flush_stream(stream);  // queued work still completes, as on the GPU
    {
        std::lock_guard<std::mutex> lock(cuemu::stream_mutex());
        std::vector<cudaStream_t> &v = cuemu::streams();
        for (size_t i = 0; i < v.size(); i++)
            if (v[i] == stream) { v.erase(v.begin() + (long)i); break; }
    }
    delete stream;
    return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t *event) { *event = new CUevent_st(); return cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int) { return cudaEventCreate(event); }
inline cudaError_t cudaEventDestroy(cudaEvent_t event) { delete event; return cudaSuccess; }
// The event completes when the stream's work before it has run; its time is the host's wall clock then.
inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    event->stream = cuemu::is_default_stream(stream) ? nullptr : stream;
    event->capture = event->stream ? event->stream->capture : nullptr;
    event->done = false;
    return cuemu::on_stream(stream, [event] { event->seconds = cuemu_now(); event->done = true; });
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    if (event->capture || cuemu::capture_forbids_unsafe()) return cuemu::refuse_in_capture();
    if (event->stream) cuemu::flush_stream(event->stream);
    return cudaSuccess;
}
// A query runs the queued work, so a polling loop ends: the GPU would have finished it some time.
inline cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
inline cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }
// Running the event's stream now, before anything later on `stream`, is one order a GPU may take too.
inline cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
    cudaGraph_t capture = cuemu::is_default_stream(stream) ? nullptr : stream->capture;
    if (capture && event->capture != capture) {
        if (!event->capture) return cuemu::refuse_in_capture(stream, cudaErrorStreamCaptureIsolation);  // work outside the capture
        cuemu_fail("cudaStreamWaitEvent: a wait between two captures is not emulated");
    }
    if (event->capture && !capture)
        cuemu_fail("cudaStreamWaitEvent: a stream joining a capture through an event (fork/join) is not emulated");
    if (event->stream && event->stream != stream) cuemu::flush_stream(event->stream);
    return cudaSuccess;
}
// Graphs (see "Graphs" above): capture on a created stream, instantiate, replay.
inline cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
    if (cuemu::is_default_stream(stream)) return cuemu::set_error(cudaErrorStreamCaptureUnsupported);
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal && mode != cudaStreamCaptureModeRelaxed)
        return cuemu::set_error(cudaErrorInvalidValue);
    {
        std::lock_guard<std::mutex> lock(stream->running);
        if (stream->capture) return cuemu::set_error(cudaErrorIllegalState);
        stream->capture = new CUgraph_st();
        stream->capture_mode = mode;
        stream->capture_thread = std::this_thread::get_id();
        stream->capture_invalid = false;
    }
    if (mode != cudaStreamCaptureModeRelaxed) cuemu::strict_captures++;
    if (mode == cudaStreamCaptureModeGlobal) cuemu::global_captures++;
    return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
    if (cuemu::is_default_stream(stream) || !stream->capture) return cuemu::set_error(cudaErrorIllegalState);
    cudaStreamCaptureMode mode = stream->capture_mode;
    if (mode != cudaStreamCaptureModeRelaxed && stream->capture_thread != std::this_thread::get_id())
        return cuemu::set_error(cudaErrorStreamCaptureWrongThread);
    cudaGraph_t g;
    bool invalid;
    {
        std::lock_guard<std::mutex> lock(stream->running);
        g = stream->capture;
        invalid = stream->capture_invalid;
        stream->capture = nullptr;
    }
    if (mode != cudaStreamCaptureModeRelaxed) cuemu::strict_captures--;
    if (mode == cudaStreamCaptureModeGlobal) cuemu::global_captures--;
    *graph = invalid ? nullptr : g;
    if (invalid) {
        delete g;
        return cuemu::set_error(cudaErrorStreamCaptureInvalidated);
    }
    return cudaSuccess;
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status) {
    bool capturing = !cuemu::is_default_stream(stream) && stream->capture;
    *status = !capturing ? cudaStreamCaptureStatusNone
              : stream->capture_invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}
// flags: none of the instantiation options is emulated
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    if (!graph || flags != 0) return cuemu::set_error(cudaErrorInvalidValue);
    *exec = new CUgraphExec_st{std::make_shared<const std::vector<std::function<void()>>>(graph->nodes)};
    return cudaSuccess;
}
// The whole graph is one item of the stream's order (or of the graph the stream captures).
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    if (!exec) return cuemu::set_error(cudaErrorInvalidValue);
    return cuemu::on_stream(stream, [nodes = exec->nodes] {
        for (const std::function<void()> &node : *nodes) node();
    });
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { delete exec; return cudaSuccess; }
inline cudaError_t cudaGraphDestroy(cudaGraph_t graph) { delete graph; return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start->done || !end->done) return cuemu::set_error(cudaErrorNotReady);
    *ms = (float)((end->seconds - start->seconds) * 1e3);
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= cuemu::EMULATED_DEVICES) return cuemu::set_error(cudaErrorInvalidDevice);
    cuemu::current_device = device;
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int *device) { *device = cuemu::current_device; return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int *count) { *count = cuemu::EMULATED_DEVICES; return cudaSuccess; }
inline cudaError_t cudaGetLastError(void) {
    cudaError_t e = cuemu::last_error;
    cuemu::last_error = cudaSuccess;
    return e;
}
inline cudaError_t cudaPeekAtLastError(void) { return cuemu::last_error; }
inline const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    default: return "cudaErrorUnknown";
    }
}
inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
    }
}
// Raises a kernel's dynamic shared memory limit (the opt-in above 48 KiB).
inline cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;  // hints such as the carveout
    if (value < 0 || (size_t)value > cuemu::SMEM_OPTIN_LIMIT) return cuemu::set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(cuemu::func_attr_mutex());
    for (cuemu::FuncAttr &a : cuemu::func_attrs())
        if (a.func == func) { a.max_dynamic_smem = value; return cudaSuccess; }
    cuemu::func_attrs().push_back(cuemu::FuncAttr{func, value});
    return cudaSuccess;
}
// cuda_runtime.h defines this template only for nvcc
template <class T> inline cudaError_t cudaFuncSetAttribute(T *func, cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute(reinterpret_cast<const void *>(func), attr, value);
}
// An sm_90-like device (H100 SXM), so launch-configuration code takes the H100's paths.
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device < 0 || device >= cuemu::EMULATED_DEVICES) return cuemu::set_error(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "cuemu (CPU emulation of an sm_90 device)");
    prop->totalGlobalMem = (size_t)80 << 30;
    prop->sharedMemPerBlock = cuemu::SMEM_DEFAULT_LIMIT;
    prop->sharedMemPerBlockOptin = cuemu::SMEM_OPTIN_LIMIT;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->regsPerBlock = 65536;
    prop->regsPerMultiprocessor = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024; prop->maxThreadsDim[1] = 1024; prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647; prop->maxGridSize[1] = 65535; prop->maxGridSize[2] = 65535;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 132;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->maxBlocksPerMultiProcessor = 32;
    prop->l2CacheSize = 50 * 1024 * 1024;
    prop->totalConstMem = 64 * 1024;
    return cudaSuccess;
}

#include "cuemu_blas.h"
#include "cuemu_nccl.h"

#endif  // !__CUDACC__

// The memory-access profile and its accessors cu_ld/cu_st (both compilers).
#include "cuemu_profile.h"

#endif  // S1C_CUEMU_H
