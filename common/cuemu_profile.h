/*
 * cuemu_profile.h: the emulator's memory-access profile (CUEMU_PROFILE=1) and
 * the accessors cu_ld()/cu_st() that feed it. Included by common/cuemu.h under
 * both compilers; the dev/ kernels (dev/OP.cu) read and write memory through the
 * accessors, tests/emu_cuemu_profile.cu checks the figures against hand-derived
 * counts. tutorial/kernels.md says what the figures mean for a GPU.
 *
 *   float x = cu_ld(&inp[i]);   cu_st(&out[i], y);
 *
 * Under nvcc the accessors are a plain load and store (nothing is recorded, the
 * GPU code is what `inp[i]` would give). Under the emulator they always check the
 * address's alignment (a 16-byte cu_ld((const uint4 *)p) needs p % 16 == 0, as
 * on the GPU; a misaligned one is an error naming file:line), and with CUEMU_PROFILE=1
 * every accessor call is logged as (block, thread, per-lane access index, call
 * site (file:line), address, size, load/store, global/shared) and each launch ends with a
 * report on stderr, every line starting "cuemu profile:":
 *   - the launch: grid, threads per block, dynamic shared memory (the launch's
 *     bytes) and static shared memory touched (the span of shared addresses
 *     outside the dynamic buffer that the accessors saw: a lower bound of the
 *     declared __shared__ size, which the emulator cannot see);
 *   - global bytes loaded and stored;
 *   - per warp-wide request, 32-byte sectors (the coalescing figure: 4 for 32
 *     consecutive floats, 32 when each lane's float lies in its own sector);
 *   - per warp-wide shared request, bank conflicts: 32 banks of 4 bytes; a
 *     request needs as many wavefronts as the most distinct 4-byte words any
 *     one bank must deliver (the same word to many lanes is a broadcast, free);
 *     conflicts = wavefronts - the fewest the request's distinct words allow
 *     (ceil(words / 32)), so a 32-way conflict is 31 extra wavefronts;
 *   - the same figures per call site (file:line of the accessor);
 *   - the tensor-core instructions of common/mma.cuh, where the launch ran any:
 *     mma.sync m16n8k16 and ldmatrix counted once per warp, cp.async per thread
 *     with its bytes (their memory traffic is not in the figures above).
 *
 * How a warp-wide request is formed. A GPU issues one instruction for the 32
 * lanes of a warp; the emulator runs lanes as fibers, one after another. The
 * profile pairs the k-th accessor call of every lane of a warp as one request.
 * That is the instruction the hardware would issue when the lanes do not
 * diverge, which the profile checks: a warp counts as exact only if every lane
 * of it made the same sequence of accessor calls (same call sites, load/store
 * and memory space, in the same order). A warp whose lanes took different paths
 * (a branch on the lane, a loop whose trip count depends on it, an early exit)
 * has its bytes counted but no request figures; the report then prints
 * "not exact" with the number of such warps instead of a number.
 * A site is a file and line (g++ has no __builtin_COLUMN): two accessors on one
 * line in different branches look alike, so put each branch's access on its own line.
 *
 * Every access of a launch is kept until its report (48 bytes each): the
 * profile is for the small shapes of dev/ and the tests, not for whole training runs.
 *
 * Not modelled: caches (L1/L2 hits), the memory pipeline's timing, atomics,
 * loads and stores that do not go through the accessors (the report counts only
 * what the accessors saw: a kernel without them reports no accesses).
 * Concurrent launches (NCCL ranks on threads) are profiled one at a time; a
 * launch that starts while another is profiled is reported as "not profiled".
 */
#ifndef S1C_CUEMU_PROFILE_H
#define S1C_CUEMU_PROFILE_H

#if defined(__CUDACC__)

// On the GPU: a plain load and store, so dev/ kernels compile to what they say.
template <class T> __device__ __forceinline__ T cu_ld(const T *p) { return *p; }
template <class T, class V> __device__ __forceinline__ void cu_st(T *p, V v) { *p = (T)v; }

#else  // the emulator

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace cuemu {
namespace prof {

struct Access {
    uint64_t block;     // linear block index
    int tid;            // linear thread index in the block
    const char *file;   // the accessor's call site
    int line;
    uintptr_t addr;
    int size;
    bool store, shared;
};

// What one call site (or the whole launch) did: requests only from exact warps.
struct Figures {
    uint64_t bytes = 0;          // every access, exact warp or not
    uint64_t requests = 0;       // warp-wide requests (exact warps)
    uint64_t units = 0;          // global: sectors; shared: wavefronts
    uint64_t ideal = 0;          // global: the fewest sectors the bytes could fill; shared: fewest wavefronts
    int worst_way = 0;           // shared: the largest wavefronts of one request
    uint64_t inexact_warps = 0;  // warps whose lanes diverged and that reached this site (totals: at least this many)
    void add(const Figures &o) {
        bytes += o.bytes; requests += o.requests; units += o.units; ideal += o.ideal;
        worst_way = std::max(worst_way, o.worst_way); inexact_warps = std::max(inexact_warps, o.inexact_warps);   // a warp may reach several sites: not a sum
    }
};

// The tensor-core instructions of common/mma.cuh a launch executed: mma.sync and ldmatrix
// warp-wide (one per warp, whatever the lanes), cp.async per thread with its bytes.
struct TensorOps {
    uint64_t mma = 0, ldmatrix = 0, cp_async = 0, cp_async_bytes = 0;
};

struct State {
    std::mutex mutex;
    bool active = false, busy = false;
    std::vector<Access> log;
    uintptr_t static_lo = UINTPTR_MAX, static_hi = 0;
    Figures last[2][2];                      // the last report's totals, [shared][store], for tests
    size_t last_static = 0;
    TensorOps ops, last_ops;                 // this launch's tensor-core instructions; the last report's
};
inline State &state() { static State s; return s; }

inline bool enabled() {
    static const int on = [] {
        const char *s = getenv("CUEMU_PROFILE");
        if (!s || !*s || !strcmp(s, "0")) return 0;
        if (strcmp(s, "1") != 0) cuemu_fail("CUEMU_PROFILE=%s: expected 1 (or unset)", s);
        return 1;
    }();
    return on;
}

inline void record(const void *p, int size, bool store, const char *file, int line) {
    Worker &w = worker();
    Fiber *f = w.current;
    if (!f) cuemu_fail("%s:%d: cu_ld/cu_st called outside a kernel", file, line);
    State &s = state();
    uintptr_t a = (uintptr_t)p;
    bool in_dyn = w.dyn_smem && a >= (uintptr_t)w.dyn_smem && a < (uintptr_t)w.dyn_smem + w.dyn_smem_bytes;
    bool shared = in_dyn || !in_allocation(p, (size_t)size, true);   // not cudaMalloc memory: a __shared__ array
    uint64_t block = blockIdx.x + (uint64_t)gridDim.x * (blockIdx.y + (uint64_t)gridDim.y * blockIdx.z);
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.active) return;
    if (shared && !in_dyn) { s.static_lo = std::min(s.static_lo, a); s.static_hi = std::max(s.static_hi, a + size); }
    s.log.push_back(Access{block, f->tid, file, line, a, size, store, shared});
}

// Called by common/mma.cuh's emulation: one warp-wide mma.sync (what: 'm') or ldmatrix ('l'),
// or one thread's cp.async of `bytes` ('c'). Counted only while a launch is profiled.
inline void count_tensor_op(char what, int bytes) {
    if (!enabled()) return;
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.active) return;
    if (what == 'm') s.ops.mma++;
    else if (what == 'l') s.ops.ldmatrix++;
    else { s.ops.cp_async++; s.ops.cp_async_bytes += (uint64_t)bytes; }
}

// The figures of one warp-wide request: the k-th access of each lane.
inline void measure(const std::vector<const Access *> &req, Figures *fig) {
    fig->requests++;
    if (!req[0]->shared) {
        std::set<uintptr_t> sectors;
        std::set<uintptr_t> bytes;   // distinct bytes, for the ideal
        for (const Access *a : req) {
            for (uintptr_t s = a->addr / 32; s <= (a->addr + a->size - 1) / 32; s++) sectors.insert(s);
            for (int b = 0; b < a->size; b++) bytes.insert(a->addr + b);
        }
        fig->units += sectors.size();
        fig->ideal += (bytes.size() + 31) / 32;
    } else {
        std::set<uintptr_t> words;
        for (const Access *a : req)
            for (uintptr_t wd = a->addr / 4; wd <= (a->addr + a->size - 1) / 4; wd++) words.insert(wd);
        int per_bank[32] = {0};
        int way = 0;
        for (uintptr_t wd : words) way = std::max(way, ++per_bank[wd % 32]);
        fig->units += (uint64_t)way;
        fig->ideal += (words.size() + 31) / 32;
        fig->worst_way = std::max(fig->worst_way, way);
    }
}

struct SiteKey {
    std::string file;
    int line;
    bool store, shared;
    bool operator<(const SiteKey &o) const {
        return std::tie(file, line, store, shared) < std::tie(o.file, o.line, o.store, o.shared);
    }
};

inline void print_figures(const char *what, const Figures &f) {
    if (f.bytes == 0) return;
    bool shared = strstr(what, "shared") != nullptr;
    fprintf(stderr, "cuemu profile:   %s: %llu B", what, (unsigned long long)f.bytes);
    if (f.inexact_warps) {
        fprintf(stderr, ", per request: not exact (lanes on different access paths in %s%llu warps)\n",
                strchr(what, ':') ? "" : "at least ", (unsigned long long)f.inexact_warps);
        return;
    }
    double r = f.requests ? (double)f.requests : 1.0;
    if (!shared)
        fprintf(stderr, " in %llu requests, %llu sectors, %.2f sectors/request (ideal %.2f)\n",
                (unsigned long long)f.requests, (unsigned long long)f.units, f.units / r, f.ideal / r);
    else
        fprintf(stderr, " in %llu requests, %llu wavefronts, %.2f bank conflicts/request (worst %d-way)\n",
                (unsigned long long)f.requests, (unsigned long long)f.units, (double)(f.units - f.ideal) / r,
                f.worst_way);
}

inline void report(const Job &job, const char *name) {
    State &s = state();
    // each (block, thread)'s accesses in program order: the log holds them in order per fiber
    std::map<std::pair<uint64_t, int>, std::vector<const Access *>> lanes;
    for (const Access &a : s.log) lanes[{a.block, a.tid}].push_back(&a);
    int nthreads = (int)(job.block.x * job.block.y * job.block.z);
    uint64_t nblocks = (uint64_t)job.grid.x * job.grid.y * job.grid.z;
    std::map<SiteKey, Figures> sites;
    static const std::vector<const Access *> none;
    for (uint64_t b = 0; b < nblocks; b++) {
        for (int w0 = 0; w0 < nthreads; w0 += 32) {
            int nl = std::min(32, nthreads - w0);
            std::vector<const std::vector<const Access *> *> seq(nl);
            bool any = false;
            for (int l = 0; l < nl; l++) {
                auto it = lanes.find({b, w0 + l});
                seq[l] = it == lanes.end() ? &none : &it->second;
                any = any || !seq[l]->empty();
            }
            if (!any) continue;
            bool exact = true;   // every lane made the same sequence of accessor calls
            for (int l = 1; l < nl && exact; l++) {
                if (seq[l]->size() != seq[0]->size()) { exact = false; break; }
                for (size_t k = 0; k < seq[0]->size(); k++) {
                    const Access *x = (*seq[0])[k], *y = (*seq[l])[k];
                    if (x->line != y->line || strcmp(x->file, y->file) || x->store != y->store || x->shared != y->shared) {
                        exact = false;
                        break;
                    }
                }
            }
            std::set<SiteKey> touched;
            for (int l = 0; l < nl; l++)
                for (const Access *a : *seq[l]) {
                    SiteKey k{a->file, a->line, a->store, a->shared};
                    sites[k].bytes += (uint64_t)a->size;
                    touched.insert(k);
                }
            if (!exact) {
                for (const SiteKey &k : touched) sites[k].inexact_warps++;
                continue;
            }
            std::vector<const Access *> req(nl);
            for (size_t k = 0; k < seq[0]->size(); k++) {
                for (int l = 0; l < nl; l++) req[l] = (*seq[l])[k];
                const Access *a = req[0];
                measure(req, &sites[SiteKey{a->file, a->line, a->store, a->shared}]);
            }
        }
    }
    Figures totals[2][2];   // [shared][store]
    for (auto &kv : sites) totals[kv.first.shared][kv.first.store].add(kv.second);
    size_t static_bytes = s.static_hi > s.static_lo ? s.static_hi - s.static_lo : 0;
    for (int i = 0; i < 4; i++) s.last[i / 2][i % 2] = totals[i / 2][i % 2];
    s.last_static = static_bytes;
    fprintf(stderr, "cuemu profile: %s<<<(%u,%u,%u), (%u,%u,%u)>>>: %d threads/block, shared memory %zu B dynamic, "
            "%zu B static touched\n", name, job.grid.x, job.grid.y, job.grid.z, job.block.x, job.block.y, job.block.z,
            nthreads, job.smem, static_bytes);
    s.last_ops = s.ops;
    if (s.ops.mma || s.ops.ldmatrix || s.ops.cp_async)
        fprintf(stderr, "cuemu profile:   tensor cores: %llu mma.sync m16n8k16 (warp-wide), %llu ldmatrix (warp-wide), "
                "%llu cp.async (%llu B)\n", (unsigned long long)s.ops.mma, (unsigned long long)s.ops.ldmatrix,
                (unsigned long long)s.ops.cp_async, (unsigned long long)s.ops.cp_async_bytes);
    if (s.log.empty()) {
        fprintf(stderr, "cuemu profile:   no cu_ld/cu_st accesses seen\n");
        return;
    }
    print_figures("global load", totals[0][0]);
    print_figures("global store", totals[0][1]);
    print_figures("shared load", totals[1][0]);
    print_figures("shared store", totals[1][1]);
    for (auto &kv : sites) {
        char what[512];
        snprintf(what, sizeof what, "%s:%d %s %s", kv.first.file.c_str(), kv.first.line,
                 kv.first.shared ? "shared" : "global", kv.first.store ? "store" : "load");
        print_figures(what, kv.second);
    }
}

}  // namespace prof

// Called by the Launcher around every launch (common/cuemu.h).
// The totals of the last profiled launch, [shared][store] (tests/emu_cuemu_profile.cu reads them).
inline const prof::Figures &profile_last(bool shared, bool store) { return prof::state().last[shared][store]; }
inline const prof::TensorOps &profile_last_tensor_ops() { return prof::state().last_ops; }

inline bool profile_begin(const Job &, const char *name) {
    if (!prof::enabled()) return false;
    prof::State &s = prof::state();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.busy) {
        fprintf(stderr, "cuemu profile: %s: not profiled (another launch is being profiled)\n", name);
        return false;
    }
    s.busy = s.active = true;
    s.log.clear();
    s.ops = prof::TensorOps();
    s.static_lo = UINTPTR_MAX;
    s.static_hi = 0;
    return true;
}

inline void profile_end(const Job &job, const char *name, bool began) {
    if (!began) return;
    prof::State &s = prof::state();
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.active = false;
    }
    prof::report(job, name);
    std::lock_guard<std::mutex> lock(s.mutex);
    s.log.clear();
    s.log.shrink_to_fit();
    s.busy = false;
}

}  // namespace cuemu

namespace cuemu {
// A GPU load or store moves a T in one instruction as wide as T's alignment (ld.global.v4.u32
// for a uint4, float4 or int4: 16 bytes; .v2 for a float2: 8; .b32 for a __nv_bfloat162: 4; .b16 for
// a bf16), and faults ("misaligned address") when the address is not a multiple of that width.
// x86 does not care, so without this check a vectorised kernel handed an odd pointer would pass
// here and fault on the GPU. For those types alignof(T) == sizeof(T); a struct without __align__
// is moved member by member, so alignof is the width the GPU needs in every case.
template <class T> inline void check_aligned(const void *p, bool store, const char *file, int line) {
    constexpr uintptr_t width = alignof(T);
    if (((uintptr_t)p & (width - 1)) == 0) return;
    Fiber *f = worker().current;
    char where[64] = "host code";
    if (f) block_location(where, sizeof where);
    cuemu_fail("%s: %s: %s of %zu bytes at %p, which is not %zu-byte aligned (a GPU faults: misaligned address), at %s:%d",
               where, f ? ThreadName(f).s : "no thread", store ? "cu_st" : "cu_ld", sizeof(T), p, (size_t)width, file, line);
}
}  // namespace cuemu

// The accessors: a load and a store, checked for alignment, logged when CUEMU_PROFILE=1.
template <class T>
inline T cu_ld(const T *p, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuemu::check_aligned<T>(p, false, file, line);
    if (cuemu::prof::enabled()) cuemu::prof::record(p, (int)sizeof(T), false, file, line);
    return *p;
}
template <class T, class V>
inline void cu_st(T *p, V v, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuemu::check_aligned<T>(p, true, file, line);
    if (cuemu::prof::enabled()) cuemu::prof::record(p, (int)sizeof(T), true, file, line);
    *p = (T)v;
}

#endif  // !__CUDACC__
#endif  // S1C_CUEMU_PROFILE_H
