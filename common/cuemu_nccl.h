/*
 * cuemu_nccl.h: the NCCL subset the project calls, on the CPU.
 *
 * Included by cuemu.h in the emulated build (never under nvcc, where the real
 * nccl.h and libnccl are used). These are definitions of the functions the
 * toolkit's nccl.h declares, so the compiler checks every call.
 *
 * Ranks are OS threads of one process (one thread per rank) or separate
 * processes: both meet in one POSIX shared-memory segment, named by the
 * ncclUniqueId that ncclGetUniqueId() makes. Rank 0 creates it in
 * ncclCommInitRank(); it is unlinked as soon as every rank has mapped it, so a
 * killed run leaves nothing behind in /dev/shm.
 *
 * A collective runs in its stream's order (like a kernel: queued on a created
 * stream until something waits for it), in chunks: every rank copies its chunk
 * into its slot of the segment, all wait at a barrier, every rank computes its
 * result from the slots, all wait again (the second barrier is what makes
 * in-place calls safe). Sums run in float in rank order: deterministic, but bf16 results
 * are not bitwise NCCL's (ring or tree order). Counts are elements, as in NCCL.
 *
 * NCCL's buffer layouts, which the emulator follows and checks:
 *   ncclAllGather(send, recv, sendcount): recv holds rank q's sendcount elements
 *     at recv + q*sendcount. In place: send == recv + rank*sendcount.
 *   ncclReduceScatter(send, recv, recvcount): rank r receives the reduction over
 *     ranks of send[r*recvcount, (r+1)*recvcount). In place: recv == send + rank*recvcount.
 *   ncclAllReduce, ncclBroadcast: in place is send == recv.
 * Buffers that overlap in any other way are undefined in NCCL and stop the
 * program here with the rank, the call and both addresses.
 *
 * Matching calls: NCCL needs every rank to make the same collectives in the same
 * order with the same count, type, operation and root; a mismatch hangs or
 * corrupts memory on a GPU. Here each rank writes (call number, collective,
 * count, type, op, root) into its record in the segment's header before the
 * first barrier of a call, and after it every rank compares all records, so a
 * mismatch stops every rank with one line naming both calls:
 *   cuemu: collectives differ across ranks: rank 0 call #3 ncclAllGather(sendcount 1000, bf16),
 *   rank 1 call #3 ncclReduceScatter(recvcount 1000, bf16, sum)
 * A rank that never arrives (it skipped the call, or died) cannot be compared
 * at a barrier: after CUEMU_NCCL_TIMEOUT seconds (default 60) the waiting rank
 * stops with where every rank is ("rank 1 has made no collective call").
 *
 * ncclGroupStart/End are no-ops, so one thread driving several ranks inside a
 * group deadlocks: use one thread (or process) per rank.
 */
#ifndef S1C_CUEMU_NCCL_H
#define S1C_CUEMU_NCCL_H

#include <nccl.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>

namespace cuemu {

constexpr size_t NCCL_SLOT_BYTES = 1 << 20;  // per rank and per chunk of a collective

enum NcclKind : uint32_t { NCCL_NONE, NCCL_ALL_REDUCE, NCCL_REDUCE_SCATTER, NCCL_ALL_GATHER, NCCL_BROADCAST };

struct NcclCall {                    // a rank's current (or last) collective, compared across ranks
    uint64_t index;                  // 1, 2, ...: the rank's collectives on this communicator (0: none yet)
    uint64_t count;                  // count, recvcount or sendcount, as the call names it
    uint32_t kind;                   // NcclKind
    uint32_t dtype;                  // ncclDataType_t
    uint32_t op;                     // ncclRedOp_t (reductions only)
    int32_t root;                    // ncclBroadcast only
};

struct NcclSegment {                 // the start of the shared-memory segment; the call records, then the slots
    uint32_t ready;                  // rank 0 has initialised the segment
    uint32_t barrier_count, barrier_gen;
    int32_t nranks;
    NcclCall calls[];                // one per rank
};

// The header (NcclSegment and its records) rounded up to a page; the slots start there.
inline size_t nccl_header_bytes(int nranks) {
    size_t b = sizeof(NcclSegment) + (size_t)nranks * sizeof(NcclCall);
    return (b + 4095) / 4096 * 4096;
}

}  // namespace cuemu

struct ncclComm {
    int rank, nranks;
    char name[NCCL_UNIQUE_ID_BYTES];
    cuemu::NcclSegment *seg;
    size_t seg_bytes, header_bytes;
    double timeout;
    uint64_t calls;                  // collectives this rank has run (their index in NcclCall)
    unsigned char *slot(int r) const { return (unsigned char *)seg + header_bytes + (size_t)r * cuemu::NCCL_SLOT_BYTES; }
};

namespace cuemu {

inline double nccl_timeout() { return (double)env_long("CUEMU_NCCL_TIMEOUT", 60, 1, 86400); }

inline const char *nccl_type_name(uint32_t t) {
    switch (t) {
    case ncclFloat32: return "f32";
    case ncclBfloat16: return "bf16";
    case ncclInt32: return "i32";
    case ncclUint32: return "u32";
    default: return "?";
    }
}

inline const char *nccl_op_name(uint32_t op) {
    switch (op) {
    case ncclSum: return "sum";
    case ncclProd: return "prod";
    case ncclMax: return "max";
    case ncclMin: return "min";
    case ncclAvg: return "avg";
    default: return "?";
    }
}

// "#3 ncclReduceScatter(recvcount 1000, bf16, sum)" (the call number, then the call), or "none".
inline const char *nccl_describe(const NcclCall &c, char *buf, size_t n) {
    switch (c.kind) {
    case NCCL_ALL_REDUCE:
        snprintf(buf, n, "#%llu ncclAllReduce(count %llu, %s, %s)", (unsigned long long)c.index,
                 (unsigned long long)c.count, nccl_type_name(c.dtype), nccl_op_name(c.op));
        break;
    case NCCL_REDUCE_SCATTER:
        snprintf(buf, n, "#%llu ncclReduceScatter(recvcount %llu, %s, %s)", (unsigned long long)c.index,
                 (unsigned long long)c.count, nccl_type_name(c.dtype), nccl_op_name(c.op));
        break;
    case NCCL_ALL_GATHER:
        snprintf(buf, n, "#%llu ncclAllGather(sendcount %llu, %s)", (unsigned long long)c.index,
                 (unsigned long long)c.count, nccl_type_name(c.dtype));
        break;
    case NCCL_BROADCAST:
        snprintf(buf, n, "#%llu ncclBroadcast(count %llu, %s, root %d)", (unsigned long long)c.index,
                 (unsigned long long)c.count, nccl_type_name(c.dtype), c.root);
        break;
    default: snprintf(buf, n, "none"); break;
    }
    return buf;
}

// Two ranks make the same collective: the fields NCCL requires to match (op only for reductions,
// root only for broadcast; in place or not may differ).
inline bool nccl_same_call(const NcclCall &a, const NcclCall &b) {
    if (a.index != b.index || a.kind != b.kind || a.count != b.count || a.dtype != b.dtype) return false;
    if ((a.kind == NCCL_ALL_REDUCE || a.kind == NCCL_REDUCE_SCATTER) && a.op != b.op) return false;
    if (a.kind == NCCL_BROADCAST && a.root != b.root) return false;
    return true;
}

// Where the ranks other than comm->rank are, for a timeout message: those not at this rank's call.
inline void nccl_where_others(const ncclComm *comm, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    NcclCall mine = comm->seg->calls[comm->rank];
    for (int r = 0; r < comm->nranks && k + 1 < n; r++) {
        if (r == comm->rank) continue;
        NcclCall other = comm->seg->calls[r];   // a copy: the other rank may be writing it
        if (mine.index != 0 && nccl_same_call(mine, other)) continue;
        char d[160];
        if (other.index == 0) k += (size_t)snprintf(buf + k, n - k, "; rank %d has made no collective call", r);
        else k += (size_t)snprintf(buf + k, n - k, "; rank %d's latest call: %s", r, nccl_describe(other, d, sizeof d));
    }
}

// Waits until *addr != value, sleeping in the kernel (a futex works across processes on a shared mapping).
inline void futex_wait_change(uint32_t *addr, uint32_t value, const char *what, const ncclComm *comm) {
    double start = cuemu_now();
    while (__atomic_load_n(addr, __ATOMIC_SEQ_CST) == value) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        syscall(SYS_futex, addr, FUTEX_WAIT, value, &ts, nullptr, 0);
        if (cuemu_now() - start > comm->timeout) {
            char mine[160] = "", others[1024] = "";
            if (comm->seg->calls[comm->rank].index != 0) {   // inside a collective: say which, and where the others are
                char d[160];
                snprintf(mine, sizeof mine, " in call %s", nccl_describe(comm->seg->calls[comm->rank], d, sizeof d));
                nccl_where_others(comm, others, sizeof others);
            }
            cuemu_fail("%s: rank %d of %d waited %.0f s for the other ranks%s%s (mismatched collectives, or a rank "
                       "died?)", what, comm->rank, comm->nranks, comm->timeout, mine, others);
        }
    }
}

inline void nccl_barrier(const ncclComm *comm, const char *what) {
    NcclSegment *s = comm->seg;
    uint32_t gen = __atomic_load_n(&s->barrier_gen, __ATOMIC_SEQ_CST);
    if (__atomic_add_fetch(&s->barrier_count, 1, __ATOMIC_SEQ_CST) == (uint32_t)comm->nranks) {
        __atomic_store_n(&s->barrier_count, 0, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&s->barrier_gen, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &s->barrier_gen, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    } else {
        futex_wait_change(&s->barrier_gen, gen, what, comm);
    }
}

inline size_t nccl_type_size(ncclDataType_t t) {
    switch (t) {
    case ncclFloat32: case ncclInt32: case ncclUint32: return 4;
    case ncclBfloat16: return 2;
    default: return 0;  // not in the subset
    }
}

inline float nccl_load(const unsigned char *p, ncclDataType_t t, size_t i) {
    switch (t) {
    case ncclFloat32: return ((const float *)p)[i];
    case ncclBfloat16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    default: return 0.0f;
    }
}

// The reduction of element i over the ranks' slots at byte offset `off`, into out[i].
inline void nccl_reduce_element(const ncclComm *comm, size_t off, size_t i, void *out, ncclDataType_t t,
                                ncclRedOp_t op) {
    if (t == ncclInt32 || t == ncclUint32) {  // integers: exact, in their own type
        int64_t acc = 0;
        for (int r = 0; r < comm->nranks; r++) {
            const unsigned char *p = comm->slot(r) + off;
            int64_t v = t == ncclInt32 ? (int64_t)((const int32_t *)p)[i] : (int64_t)((const uint32_t *)p)[i];
            if (r == 0) acc = v;
            else if (op == ncclSum || op == ncclAvg) acc += v;
            else if (op == ncclProd) acc *= v;
            else if (op == ncclMax) acc = v > acc ? v : acc;
            else acc = v < acc ? v : acc;
        }
        if (op == ncclAvg) acc /= comm->nranks;
        if (t == ncclInt32) ((int32_t *)out)[i] = (int32_t)acc;
        else ((uint32_t *)out)[i] = (uint32_t)acc;
        return;
    }
    float acc = 0.0f;
    for (int r = 0; r < comm->nranks; r++) {
        float v = nccl_load(comm->slot(r) + off, t, i);
        if (r == 0) acc = v;
        else if (op == ncclSum || op == ncclAvg) acc += v;
        else if (op == ncclProd) acc *= v;
        else if (op == ncclMax) acc = fmaxf(acc, v);
        else acc = fminf(acc, v);
    }
    if (op == ncclAvg) acc /= (float)comm->nranks;
    if (t == ncclFloat32) ((float *)out)[i] = acc;
    else ((__nv_bfloat16 *)out)[i] = __float2bfloat16(acc);
}

inline ncclResult_t nccl_check_args(const ncclComm *comm, ncclDataType_t t, ncclRedOp_t op) {
    if (!comm) return ncclInvalidArgument;
    if (!nccl_type_size(t)) return ncclInvalidArgument;
    if (op != ncclSum && op != ncclProd && op != ncclMax && op != ncclMin && op != ncclAvg) return ncclInvalidArgument;
    return ncclSuccess;
}

}  // namespace cuemu

inline const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    default: return "unknown result code";
    }
}

inline ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    static std::atomic<unsigned> counter{0};
    memset(id, 0, sizeof *id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id->internal, sizeof id->internal, "/cuemu-nccl-%d-%u-%ld", (int)getpid(), counter.fetch_add(1),
             (long)ts.tv_nsec);
    return ncclSuccess;
}

inline ncclResult_t ncclCommInitRank(ncclComm_t *comm_out, int nranks, ncclUniqueId id, int rank) {
    using namespace cuemu;
    if (nranks < 1 || rank < 0 || rank >= nranks || id.internal[0] != '/') return ncclInvalidArgument;
    ncclComm *comm = new ncclComm();
    comm->rank = rank;
    comm->nranks = nranks;
    comm->timeout = nccl_timeout();
    snprintf(comm->name, sizeof comm->name, "%s", id.internal);
    comm->header_bytes = nccl_header_bytes(nranks);
    comm->seg_bytes = comm->header_bytes + (size_t)nranks * NCCL_SLOT_BYTES;
    comm->calls = 0;
    int fd;
    double start = cuemu_now();
    if (rank == 0) {
        fd = shm_open(comm->name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)comm->seg_bytes) != 0) {
            fprintf(stderr, "cuemu: ncclCommInitRank: cannot create shared memory %s: %s\n", comm->name, strerror(errno));
            delete comm;
            return ncclSystemError;
        }
    } else {
        while ((fd = shm_open(comm->name, O_RDWR, 0600)) < 0) {  // wait for rank 0 to create it
            if (errno != ENOENT || cuemu_now() - start > comm->timeout) {
                fprintf(stderr, "cuemu: ncclCommInitRank: rank %d cannot open shared memory %s: %s\n", rank,
                        comm->name, strerror(errno));
                delete comm;
                return ncclSystemError;
            }
            usleep(1000);
        }
    }
    if (rank != 0) {  // rank 0 may not have sized it yet
        struct stat st;
        while (fstat(fd, &st) == 0 && (size_t)st.st_size < comm->seg_bytes) {
            if (cuemu_now() - start > comm->timeout) { close(fd); delete comm; return ncclSystemError; }
            usleep(1000);
        }
    }
    void *p = mmap(nullptr, comm->seg_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) { delete comm; return ncclSystemError; }
    comm->seg = (NcclSegment *)p;
    if (rank == 0) {
        comm->seg->nranks = nranks;
        __atomic_store_n(&comm->seg->ready, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &comm->seg->ready, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    } else {
        futex_wait_change(&comm->seg->ready, 0, "ncclCommInitRank", comm);
    }
    if (comm->seg->nranks != nranks) {
        fprintf(stderr, "cuemu: ncclCommInitRank: rank %d was given %d ranks, rank 0 %d\n", rank, nranks,
                comm->seg->nranks);
        munmap(p, comm->seg_bytes);
        delete comm;
        return ncclInvalidUsage;
    }
    nccl_barrier(comm, "ncclCommInitRank");
    if (rank == 0) shm_unlink(comm->name);  // everyone has it mapped
    *comm_out = comm;
    return ncclSuccess;
}

inline ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclInvalidArgument;
    munmap(comm->seg, comm->seg_bytes);
    delete comm;
    return ncclSuccess;
}
inline ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
    if (!comm) return ncclInvalidArgument;
    *count = comm->nranks;
    return ncclSuccess;
}
inline ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
    if (!comm) return ncclInvalidArgument;
    *rank = comm->rank;
    return ncclSuccess;
}
inline ncclResult_t ncclGroupStart() { return ncclSuccess; }
inline ncclResult_t ncclGroupEnd() { return ncclSuccess; }

namespace cuemu {
// The shape of every collective: record the call in this rank's NcclCall; then
// for each chunk of `count` elements (at most `chunk`; one empty chunk when
// count is 0, so that every call meets the others), publish this rank's part
// into its slot, wait for all ranks, read the result out of the slots, wait
// again so no slot is overwritten while read. After the first barrier every
// record is in place: the ranks compare them before reading any slot, and no
// rank can overwrite its record before all have passed the second barrier.
// It runs in the stream's order, like a kernel.
template <typename Publish, typename Collect>
inline ncclResult_t nccl_chunks(ncclComm *comm, cudaStream_t stream, NcclCall call, size_t chunk, const char *what,
                                Publish publish, Collect collect) {
    cudaError_t queued = on_stream(stream, [=] {
        NcclCall me = call;
        me.index = ++comm->calls;
        comm->seg->calls[comm->rank] = me;
        size_t count = (size_t)call.count;
        size_t i0 = 0;
        do {
            size_t n = count - i0 < chunk ? count - i0 : chunk;
            publish(i0, n);
            nccl_barrier(comm, what);
            if (i0 == 0)
                for (int r = 0; r < comm->nranks; r++) {
                    NcclCall other = comm->seg->calls[r];
                    if (nccl_same_call(me, other)) continue;
                    char a[160], b[160];
                    int lo = r < comm->rank ? r : comm->rank, hi = r < comm->rank ? comm->rank : r;
                    const NcclCall &cl = lo == comm->rank ? me : other, &ch = lo == comm->rank ? other : me;
                    cuemu_fail("collectives differ across ranks: rank %d call %s, rank %d call %s", lo,
                               nccl_describe(cl, a, sizeof a), hi, nccl_describe(ch, b, sizeof b));
                }
            collect(i0, n);
            nccl_barrier(comm, what);
            i0 += n;
        } while (i0 < count);
    });
    return queued == cudaSuccess ? ncclSuccess : ncclInvalidUsage;   // refused in a capture
}

// NCCL allows a send and a receive buffer to overlap only in its in-place layout (in_place: the
// caller's test of it). Anything else is undefined there, and stops the program here.
inline void nccl_check_overlap(const ncclComm *comm, const char *what, const void *send, size_t send_bytes,
                               const void *recv, size_t recv_bytes, bool in_place, const char *layout) {
    uintptr_t s = (uintptr_t)send, r = (uintptr_t)recv;
    bool overlap = send_bytes > 0 && recv_bytes > 0 && s < r + recv_bytes && r < s + send_bytes;
    if (overlap && !in_place)
        cuemu_fail("%s: rank %d: sendbuff %p and recvbuff %p overlap, but not in NCCL's in-place layout (%s)", what,
                   comm->rank, send, recv, layout);
}

inline NcclCall nccl_call(NcclKind kind, size_t count, ncclDataType_t t, ncclRedOp_t op, int root) {
    NcclCall c;
    c.index = 0;
    c.count = count;
    c.kind = kind;
    c.dtype = (uint32_t)t;
    c.op = (uint32_t)op;
    c.root = root;
    return c;
}
}  // namespace cuemu

// recv[i] = op over ranks of send[i], for i < count
inline ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                                  ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = cuemu::nccl_check_args(comm, datatype, op);
    if (r != ncclSuccess) return r;
    size_t esz = cuemu::nccl_type_size(datatype);
    const char *send = (const char *)sendbuff;
    char *recv = (char *)recvbuff;
    cuemu::nccl_check_overlap(comm, "ncclAllReduce", send, count * esz, recv, count * esz, send == recv,
                              "sendbuff == recvbuff");
    return cuemu::nccl_chunks(comm, stream, cuemu::nccl_call(cuemu::NCCL_ALL_REDUCE, count, datatype, op, 0),
                              cuemu::NCCL_SLOT_BYTES / esz, "ncclAllReduce",
        [=](size_t i0, size_t n) { memcpy(comm->slot(comm->rank), send + i0 * esz, n * esz); },
        [=](size_t i0, size_t n) {
            for (size_t i = 0; i < n; i++) cuemu::nccl_reduce_element(comm, 0, i, recv + i0 * esz, datatype, op);
        });
}

// recv[i] = op over ranks of send[rank * recvcount + i], for i < recvcount
inline ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount,
                                      ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = cuemu::nccl_check_args(comm, datatype, op);
    if (r != ncclSuccess) return r;
    size_t esz = cuemu::nccl_type_size(datatype), chunk = cuemu::NCCL_SLOT_BYTES / esz / (size_t)comm->nranks;
    const char *send = (const char *)sendbuff;
    char *recv = (char *)recvbuff;
    cuemu::nccl_check_overlap(comm, "ncclReduceScatter", send, (size_t)comm->nranks * recvcount * esz, recv,
                              recvcount * esz, recv == send + (size_t)comm->rank * recvcount * esz,
                              "recvbuff == sendbuff + rank * recvcount");
    return cuemu::nccl_chunks(comm, stream, cuemu::nccl_call(cuemu::NCCL_REDUCE_SCATTER, recvcount, datatype, op, 0), chunk,
                              "ncclReduceScatter",
        [=](size_t i0, size_t n) {  // the slot holds the part of every destination rank q, n elements each
            for (int q = 0; q < comm->nranks; q++)
                memcpy(comm->slot(comm->rank) + (size_t)q * n * esz, send + ((size_t)q * recvcount + i0) * esz, n * esz);
        },
        [=](size_t i0, size_t n) {
            for (size_t i = 0; i < n; i++)
                cuemu::nccl_reduce_element(comm, (size_t)comm->rank * n * esz, i, recv + i0 * esz, datatype, op);
        });
}

// recv[q * sendcount + i] = send of rank q [i]
inline ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                                  ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = cuemu::nccl_check_args(comm, datatype, ncclSum);
    if (r != ncclSuccess) return r;
    size_t esz = cuemu::nccl_type_size(datatype);
    const char *send = (const char *)sendbuff;
    char *recv = (char *)recvbuff;
    cuemu::nccl_check_overlap(comm, "ncclAllGather", send, sendcount * esz, recv, (size_t)comm->nranks * sendcount * esz,
                              send == recv + (size_t)comm->rank * sendcount * esz, "sendbuff == recvbuff + rank * sendcount");
    return cuemu::nccl_chunks(comm, stream, cuemu::nccl_call(cuemu::NCCL_ALL_GATHER, sendcount, datatype, ncclSum, 0),
                              cuemu::NCCL_SLOT_BYTES / esz, "ncclAllGather",
        [=](size_t i0, size_t n) { memcpy(comm->slot(comm->rank), send + i0 * esz, n * esz); },
        [=](size_t i0, size_t n) {
            for (int q = 0; q < comm->nranks; q++) memcpy(recv + ((size_t)q * sendcount + i0) * esz, comm->slot(q), n * esz);
        });
}

// recv[i] = send of rank root [i]
inline ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                                  int root, ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = cuemu::nccl_check_args(comm, datatype, ncclSum);
    if (r != ncclSuccess) return r;
    if (root < 0 || root >= comm->nranks) return ncclInvalidArgument;
    size_t esz = cuemu::nccl_type_size(datatype);
    const char *send = (const char *)sendbuff;
    char *recv = (char *)recvbuff;
    if (comm->rank == root)   // only the root reads sendbuff
        cuemu::nccl_check_overlap(comm, "ncclBroadcast", send, count * esz, recv, count * esz, send == recv,
                                  "sendbuff == recvbuff");
    return cuemu::nccl_chunks(comm, stream, cuemu::nccl_call(cuemu::NCCL_BROADCAST, count, datatype, ncclSum, root),
                              cuemu::NCCL_SLOT_BYTES / esz, "ncclBroadcast",
        [=](size_t i0, size_t n) { if (comm->rank == root) memcpy(comm->slot(root), send + i0 * esz, n * esz); },
        [=](size_t i0, size_t n) { memcpy(recv + i0 * esz, comm->slot(root), n * esz); });
}

#endif  // S1C_CUEMU_NCCL_H
