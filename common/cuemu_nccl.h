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
 * ncclGroupStart/End are no-ops, so one thread driving several ranks inside a
 * group deadlocks: use one thread (or process) per rank. A rank that waits more
 * than CUEMU_NCCL_TIMEOUT seconds (default 60) for the others (mismatched
 * collectives) stops with a message instead of hanging.
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

struct NcclSegment {                 // the start of the shared-memory segment; the slots follow
    uint32_t ready;                  // rank 0 has initialised the segment
    uint32_t barrier_count, barrier_gen;
    int32_t nranks;
};

}  // namespace cuemu

struct ncclComm {
    int rank, nranks;
    char name[NCCL_UNIQUE_ID_BYTES];
    cuemu::NcclSegment *seg;
    size_t seg_bytes;
    double timeout;
    unsigned char *slot(int r) const { return (unsigned char *)seg + 4096 + (size_t)r * cuemu::NCCL_SLOT_BYTES; }
};

namespace cuemu {

inline double nccl_timeout() { return (double)env_long("CUEMU_NCCL_TIMEOUT", 60, 1, 86400); }

// Waits until *addr != value, sleeping in the kernel (a futex works across processes on a shared mapping).
inline void futex_wait_change(uint32_t *addr, uint32_t value, const char *what, const ncclComm *comm) {
    double start = cuemu_now();
    while (__atomic_load_n(addr, __ATOMIC_SEQ_CST) == value) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        syscall(SYS_futex, addr, FUTEX_WAIT, value, &ts, nullptr, 0);
        if (cuemu_now() - start > comm->timeout)
            cuemu_fail("%s: rank %d of %d waited %.0f s for the other ranks (mismatched collectives, or a rank "
                       "died?)", what, comm->rank, comm->nranks, comm->timeout);
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
    comm->seg_bytes = 4096 + (size_t)nranks * NCCL_SLOT_BYTES;
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
// The shape of every collective: for each chunk of `count` elements (at most
// `chunk`), publish this rank's part into its slot, wait for all ranks, read the
// result out of the slots, wait again so no slot is overwritten while read.
// It runs in the stream's order, like a kernel.
template <typename Publish, typename Collect>
inline void nccl_chunks(const ncclComm *comm, cudaStream_t stream, size_t count, size_t chunk, const char *what,
                        Publish publish, Collect collect) {
    on_stream(stream, [=] {
        for (size_t i0 = 0; i0 < count; i0 += chunk) {
            size_t n = count - i0 < chunk ? count - i0 : chunk;
            publish(i0, n);
            nccl_barrier(comm, what);
            collect(i0, n);
            nccl_barrier(comm, what);
        }
    });
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
    cuemu::nccl_chunks(comm, stream, count, cuemu::NCCL_SLOT_BYTES / esz, "ncclAllReduce",
        [=](size_t i0, size_t n) { memcpy(comm->slot(comm->rank), send + i0 * esz, n * esz); },
        [=](size_t i0, size_t n) {
            for (size_t i = 0; i < n; i++) cuemu::nccl_reduce_element(comm, 0, i, recv + i0 * esz, datatype, op);
        });
    return ncclSuccess;
}

// recv[i] = op over ranks of send[rank * recvcount + i], for i < recvcount
inline ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount,
                                      ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = cuemu::nccl_check_args(comm, datatype, op);
    if (r != ncclSuccess) return r;
    size_t esz = cuemu::nccl_type_size(datatype), chunk = cuemu::NCCL_SLOT_BYTES / esz / (size_t)comm->nranks;
    const char *send = (const char *)sendbuff;
    char *recv = (char *)recvbuff;
    cuemu::nccl_chunks(comm, stream, recvcount, chunk, "ncclReduceScatter",
        [=](size_t i0, size_t n) {  // the slot holds the part of every destination rank q, n elements each
            for (int q = 0; q < comm->nranks; q++)
                memcpy(comm->slot(comm->rank) + (size_t)q * n * esz, send + ((size_t)q * recvcount + i0) * esz, n * esz);
        },
        [=](size_t i0, size_t n) {
            for (size_t i = 0; i < n; i++)
                cuemu::nccl_reduce_element(comm, (size_t)comm->rank * n * esz, i, recv + i0 * esz, datatype, op);
        });
    return ncclSuccess;
}

// recv[q * sendcount + i] = send of rank q [i]
inline ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                                  ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = cuemu::nccl_check_args(comm, datatype, ncclSum);
    if (r != ncclSuccess) return r;
    size_t esz = cuemu::nccl_type_size(datatype);
    const char *send = (const char *)sendbuff;
    char *recv = (char *)recvbuff;
    cuemu::nccl_chunks(comm, stream, sendcount, cuemu::NCCL_SLOT_BYTES / esz, "ncclAllGather",
        [=](size_t i0, size_t n) { memcpy(comm->slot(comm->rank), send + i0 * esz, n * esz); },
        [=](size_t i0, size_t n) {
            for (int q = 0; q < comm->nranks; q++) memcpy(recv + ((size_t)q * sendcount + i0) * esz, comm->slot(q), n * esz);
        });
    return ncclSuccess;
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
    cuemu::nccl_chunks(comm, stream, count, cuemu::NCCL_SLOT_BYTES / esz, "ncclBroadcast",
        [=](size_t i0, size_t n) { if (comm->rank == root) memcpy(comm->slot(root), send + i0 * esz, n * esz); },
        [=](size_t i0, size_t n) { memcpy(recv + i0 * esz, comm->slot(root), n * esz); });
    return ncclSuccess;
}

#endif  // S1C_CUEMU_NCCL_H
