/*
 * launch.h: how one rank of a multi-process run learns its place and meets the
 * others (sft train on W GPUs). Plain C (also C++17 and nvcc's host compiler),
 * libc and POSIX sockets only; header-only like util.h, and like util.h every
 * failure is one line on stderr through die().
 *
 * 1. Where am I: launch_from_env()
 *
 *   torchrun   RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (all five
 *              when WORLD_SIZE > 1; LOCAL_WORLD_SIZE is checked when set).
 *              Used whenever RANK or WORLD_SIZE is set, also inside Slurm (a
 *              batch script that runs torchrun, or sft train --nproc).
 *   Slurm      SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, for tasks started by
 *              srun (one task per GPU). The master is MASTER_ADDR when set, else
 *              the first host of SLURM_STEP_NODELIST (the step's nodes: task 0
 *              runs on the first of them), else of SLURM_JOB_NODELIST. The port
 *              is MASTER_PORT when set, else 29500 + SLURM_JOB_ID mod 1000, so
 *              two jobs that share a node rarely pick the same port. With more
 *              than one task, SLURM_STEP_ID (or SLURM_STEPID) must be set: sbatch
 *              also sets SLURM_PROCID=0 and SLURM_NTASKS in the batch script
 *              itself, and a trainer started there without srun would wait for
 *              ranks that never come.
 *   neither    rank 0 of 1.
 *
 *   Host lists (launch_nodelist_first()): comma-separated entries, each a host
 *   name with zero or more bracket groups of numbers and ranges, as Slurm
 *   writes them: "node01", "a,b", "node[01-02,05]", "gpu-[3-4]",
 *   "rack[1-2]-n[07-08]", "x[1-2],y[3-4]". The first host takes each group's
 *   first number as written (leading zeros kept): node01, a, node01, gpu-3,
 *   rack1-n07, x1. Not supported: nested brackets, and Slurm's rarer forms
 *   ("node[1-8:2]" strides). A host is letters, digits, '-', '.', '_' (and ':'
 *   for an IPv6 MASTER_ADDR).
 *
 *   A value that is not a non-negative decimal integer, a rank not below the
 *   world size, a port outside 1..65535, a missing partner variable: one line
 *   naming the variable ("error: RANK=4 is not below WORLD_SIZE=4").
 *
 *   The run id: a 64-bit hash of what makes this run unique, so a rank of
 *   another run that reaches our port is refused. It hashes S1C_RUN_ID if set
 *   (launch_fork_local() sets it), else "slurm:<SLURM_JOB_ID>.<step>", else
 *   "torchrun:<TORCHELASTIC_RUN_ID>". Plain torchrun runs without a rendezvous
 *   id share one hash; their world sizes are still compared.
 *
 * 2. Meeting: launch_share_id(), the TCP bootstrap
 *
 *   Rank 0 listens on MASTER_PORT: on MASTER_ADDR itself when that is a
 *   loopback address (127.x.y.z, ::1, localhost: a one-node run is then not
 *   reachable from outside), else on every interface of its host, as torchrun's
 *   store does (a host's own name may resolve to 127.0.1.1 on that host). Every
 *   other rank connects, retrying until the timeout (rank 0 may start later),
 *   and sends its HELLO; when all W-1 ranks have arrived rank 0 answers each
 *   with a REPLY followed by the n bytes (the ncclUniqueId). Sending only once
 *   all have arrived means a rank that never comes stops everyone: rank 0 dies
 *   with "rank 0: 1 of 3 ranks did not connect within 30 s (missing: rank 2)",
 *   the others see rank 0 close and die naming that. Integers are big-endian.
 *
 *     HELLO (rank r -> rank 0), 96 bytes     REPLY (rank 0 -> rank r), 32 bytes
 *       0  "s1cLnch1"  magic                   0  "s1cLnch1"
 *       8  u32 version (1)                     8  u32 status: 0 ok, 1 another run,
 *      12  u32 world size                          2 world size differs, 3 rank out
 *      16  u32 rank                                of range, 4 rank taken, 5 id size
 *      20  u32 n, the id's size                    differs, 6 version differs
 *      24  u64 run id                         12  u32 rank 0's world size
 *      32  char[64] host name, NUL-padded     16  u32 rank 0's n
 *                                             20  u32 0
 *                                             24  u64 rank 0's run id
 *                                             32  n bytes of id (status 0 only)
 *
 *   A connection without the magic (a port scanner) is closed with a warning. A
 *   HELLO of another run gets status 1 and is closed with a warning: that
 *   process dies, this run goes on. Any other mismatch (world size, a rank out
 *   of range or taken twice, id size, version) is a broken launch: both sides
 *   die naming both values.
 *
 * 3. Staying in touch: the sockets stay open after the bootstrap
 *
 *     MSG, 8 bytes: u32 kind, u32 value
 *       'B' seq   barrier: rank r -> rank 0 on arrival, rank 0 -> all on release
 *       'F' seq   the final barrier of launch_finish(), the same way
 *       'A' len   abort (rank 0 -> all), followed by len bytes of reason
 *
 *   launch_barrier()      all ranks meet at rank 0, with a timeout; a rank that
 *                         closed its socket, is late, or is at another barrier
 *                         is an error naming it.
 *   launch_check_peers()  a non-blocking look for a closed socket; dies with the
 *                         reason. It never reads barrier traffic (poll for
 *                         POLLRDHUP only), so it can run at any time.
 *   launch_watchdog_start() the same check on a background thread that sleeps
 *                         in poll(): the way a rank blocked inside an NCCL
 *                         collective (which waits forever for a dead peer)
 *                         still exits within moments of a peer dying.
 *   launch_finish()       stops the watchdog, meets the others once more ('F'),
 *                         closes: after it a closed socket is not a death. Every
 *                         rank must call it before a normal exit.
 *
 *   When rank 0 finds a rank gone, it sends 'A' with the reason to the others
 *   and dies ("rank 0: rank 2 (host gpu-02) closed its connection (it exited
 *   or was killed)"); they die with "rank 1: rank 0 stopped the run: rank 2
 *   ...". A rank that loses rank 0 without an 'A' says so. A host that vanishes
 *   without closing its sockets is found by TCP keepalive (about 25 s).
 *
 * 4. One node, N ranks: launch_fork_local() (sft train --nproc N, like
 *    torchrun --nproc_per_node N)
 *
 *   The parent finds a free loopback port, forks N children with RANK,
 *   WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1,
 *   MASTER_PORT and S1C_RUN_ID set, and waits. Each child returns LAUNCH_CHILD
 *   with its LaunchInfo filled, and trains. If a child exits non-zero or by a
 *   signal (or the parent gets SIGINT/SIGTERM/SIGHUP), the parent sends SIGTERM
 *   to the others, SIGKILL after the grace period, and returns 1 (128 + signal
 *   when interrupted) after one line naming the rank and how it ended; 0 when
 *   every rank exited 0. The parent never returns LAUNCH_CHILD. Children die
 *   with the parent (PR_SET_PDEATHSIG), so a kill -9 of it leaves no orphans.
 */
#ifndef S1C_LAUNCH_H
#define S1C_LAUNCH_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include "common/util.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0x2000   // Linux's value; <poll.h> shows it only under _GNU_SOURCE, which -std=gnu11 does not define
#endif

#define LAUNCH_DEFAULT_PORT 29500   // torchrun's
#define LAUNCH_MAX_HOST 256
#define LAUNCH_MAX_WORLD 65536
#define LAUNCH_MAX_ID_BYTES 65536
#define LAUNCH_CHILD (-1)          // launch_fork_local() in a child: go and train

typedef struct {
    int rank, world_size, local_rank;
    int local_world_size;                  // ranks on this node; 0 when the launcher does not say
    char master_addr[LAUNCH_MAX_HOST];
    int master_port;
    char source[16];                       // "torchrun", "slurm" or "none"
    uint64_t run_id;                       // see the header comment
} LaunchInfo;

// ----------------------------------------------------------------------------
// 1. the environment

static inline double launch_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// An environment variable, or NULL when it is unset or empty (an empty value is what
// `export RANK=` leaves, and means nothing).
static inline const char *launch_getenv(const char *name) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

// A decimal integer in [lo, hi]: digits only (no sign, no spaces, no "0x"), named in any error.
static inline long long launch_parse_int(const char *name, const char *value, long long lo, long long hi) {
    if (value[0] == '\0') die("%s is empty: expected an integer", name);
    for (const char *p = value; *p; p++)
        if (*p < '0' || *p > '9') die("%s='%s' is not a non-negative integer", name, value);
    if (strlen(value) > 15) die("%s=%s is out of range (%lld..%lld)", name, value, lo, hi);
    long long v = strtoll(value, NULL, 10);
    if (v < lo || v > hi) die("%s=%s is out of range (%lld..%lld)", name, value, lo, hi);
    return v;
}

static inline int launch_host_char(char c, int allow_colon) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || (allow_colon && c == ':');
}

// Checks a host name or address from the environment and copies it into info->master_addr.
static inline void launch_set_master(LaunchInfo *info, const char *name, const char *value) {
    size_t n = strlen(value);
    if (n >= LAUNCH_MAX_HOST) die("%s is %zu characters long: not a host name", name, n);
    for (size_t i = 0; i < n; i++)
        if (!launch_host_char(value[i], 1)) die("%s='%s' is not a host name or address", name, value);
    memcpy(info->master_addr, value, n + 1);
}

// The first host of a Slurm host list into host[n] (forms: the header comment). Returns NULL,
// or a static description of what is wrong with the list (the whole list is checked).
static inline const char *launch_nodelist_first(const char *list, char *host, size_t n) {
    size_t len = 0;
    int entry = 0, entry_chars = 0;
    if (n == 0) return "no room for the host name";
    host[0] = '\0';
    if (list == NULL || list[0] == '\0') return "empty host list";
    for (const char *p = list;; p++) {
        if (*p == ',' || *p == '\0') {
            if (entry_chars == 0) return "empty host name";
            if (*p == '\0') break;
            entry++;
            entry_chars = 0;
            continue;
        }
        if (*p == ']') return "']' without '['";
        if (*p == '[') {   // a group: item (',' item)*, item = digits or digits '-' digits
            int item = 0;
            p++;
            for (;;) {
                const char *a = p;
                while (*p >= '0' && *p <= '9') p++;
                if (p == a) return *p == '\0' ? "unbalanced '['" : *p == ']' && item == 0 ? "empty brackets"
                                                                                           : "expected a number in brackets";
                if (p - a > 18) return "number too long in brackets";
                const char *b = NULL, *b_end = NULL;
                if (*p == '-') {
                    b = ++p;
                    while (*p >= '0' && *p <= '9') p++;
                    b_end = p;
                    if (b == b_end) return *p == '\0' ? "unbalanced '['" : "expected a number after '-' in brackets";
                    if (b_end - b > 18) return "number too long in brackets";
                    if (strtoll(b, NULL, 10) < strtoll(a, NULL, 10)) return "descending range in brackets";
                }
                if (entry == 0 && item == 0) {   // the first host takes the first number as written
                    size_t k = (size_t)(b ? b - 1 - a : p - a);
                    if (len + k >= n) return "host name too long";
                    memcpy(host + len, a, k);
                    len += k;
                    host[len] = '\0';
                }
                item++;
                if (*p == ',') { p++; continue; }
                if (*p == ']') break;
                if (*p == '\0') return "unbalanced '['";
                if (*p == '[') return "nested '['";
                return "unexpected character in brackets";
            }
            entry_chars++;
            continue;
        }
        if (!launch_host_char(*p, 0)) return "unexpected character (a host name is letters, digits, '-', '.', '_')";
        if (entry == 0) {
            if (len + 1 >= n) return "host name too long";
            host[len++] = *p;
            host[len] = '\0';
        }
        entry_chars++;
    }
    return NULL;
}

static inline uint64_t launch_hash(const char *s) {   // FNV-1a, 64 bits
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
    return h;
}

// Fills *info from torchrun's or Slurm's variables (or rank 0 of 1); dies on a malformed or
// inconsistent value, naming the variable.
static inline void launch_from_env(LaunchInfo *info) {
    memset(info, 0, sizeof *info);
    info->world_size = 1;
    info->master_port = LAUNCH_DEFAULT_PORT;
    snprintf(info->master_addr, sizeof info->master_addr, "127.0.0.1");
    snprintf(info->source, sizeof info->source, "none");
    char run[512];
    run[0] = '\0';
    const char *rank = launch_getenv("RANK"), *world = launch_getenv("WORLD_SIZE");
    const char *addr = launch_getenv("MASTER_ADDR"), *port = launch_getenv("MASTER_PORT");
    if (rank != NULL || world != NULL) {
        snprintf(info->source, sizeof info->source, "torchrun");
        if (rank == NULL) die("WORLD_SIZE=%s is set but RANK is not (torchrun sets both)", world);
        if (world == NULL) die("RANK=%s is set but WORLD_SIZE is not (torchrun sets both)", rank);
        info->world_size = (int)launch_parse_int("WORLD_SIZE", world, 1, LAUNCH_MAX_WORLD);
        info->rank = (int)launch_parse_int("RANK", rank, 0, LAUNCH_MAX_WORLD);
        if (info->rank >= info->world_size) die("RANK=%d is not below WORLD_SIZE=%d", info->rank, info->world_size);
        const char *local = launch_getenv("LOCAL_RANK"), *local_world = launch_getenv("LOCAL_WORLD_SIZE");
        if (local == NULL && info->world_size > 1) die("LOCAL_RANK is not set (torchrun sets it with RANK=%s)", rank);
        if (local != NULL) info->local_rank = (int)launch_parse_int("LOCAL_RANK", local, 0, LAUNCH_MAX_WORLD);
        if (info->local_rank >= info->world_size)
            die("LOCAL_RANK=%d is not below WORLD_SIZE=%d", info->local_rank, info->world_size);
        if (local_world != NULL) {
            info->local_world_size = (int)launch_parse_int("LOCAL_WORLD_SIZE", local_world, 1, LAUNCH_MAX_WORLD);
            if (info->local_world_size > info->world_size)
                die("LOCAL_WORLD_SIZE=%d is above WORLD_SIZE=%d", info->local_world_size, info->world_size);
            if (info->local_rank >= info->local_world_size)
                die("LOCAL_RANK=%d is not below LOCAL_WORLD_SIZE=%d", info->local_rank, info->local_world_size);
        }
        if (info->world_size > 1 && addr == NULL) die("MASTER_ADDR is not set (needed with WORLD_SIZE=%d)", info->world_size);
        if (info->world_size > 1 && port == NULL) die("MASTER_PORT is not set (needed with WORLD_SIZE=%d)", info->world_size);
        const char *rdzv = launch_getenv("TORCHELASTIC_RUN_ID");
        snprintf(run, sizeof run, "torchrun:%s", rdzv ? rdzv : "");
    } else if (launch_getenv("SLURM_PROCID") != NULL) {
        snprintf(info->source, sizeof info->source, "slurm");
        const char *procid = launch_getenv("SLURM_PROCID"), *ntasks = launch_getenv("SLURM_NTASKS");
        const char *localid = launch_getenv("SLURM_LOCALID");
        if (ntasks == NULL) die("SLURM_PROCID=%s is set but SLURM_NTASKS is not", procid);
        if (localid == NULL) die("SLURM_PROCID=%s is set but SLURM_LOCALID is not", procid);
        info->world_size = (int)launch_parse_int("SLURM_NTASKS", ntasks, 1, LAUNCH_MAX_WORLD);
        info->rank = (int)launch_parse_int("SLURM_PROCID", procid, 0, LAUNCH_MAX_WORLD);
        info->local_rank = (int)launch_parse_int("SLURM_LOCALID", localid, 0, LAUNCH_MAX_WORLD);
        if (info->rank >= info->world_size)
            die("SLURM_PROCID=%d is not below SLURM_NTASKS=%d", info->rank, info->world_size);
        if (info->local_rank >= info->world_size)
            die("SLURM_LOCALID=%d is not below SLURM_NTASKS=%d", info->local_rank, info->world_size);
        const char *step = launch_getenv("SLURM_STEP_ID");
        if (step == NULL) step = launch_getenv("SLURM_STEPID");
        if (info->world_size > 1 && step == NULL)
            die("SLURM_NTASKS=%d but SLURM_STEP_ID is not set: this is the batch script, not a task; start each rank "
                "with srun (one task per GPU)", info->world_size);
        const char *job = launch_getenv("SLURM_JOB_ID");
        if (job == NULL) job = launch_getenv("SLURM_JOBID");
        snprintf(run, sizeof run, "slurm:%s.%s", job ? job : "", step ? step : "");
        if (addr == NULL && info->world_size > 1) {
            const char *var = "SLURM_STEP_NODELIST", *list = launch_getenv(var);
            if (list == NULL) { var = "SLURM_JOB_NODELIST"; list = launch_getenv(var); }
            if (list == NULL) { var = "SLURM_NODELIST"; list = launch_getenv(var); }
            if (list == NULL) die("SLURM_NTASKS=%d but neither MASTER_ADDR nor SLURM_JOB_NODELIST is set", info->world_size);
            char first[LAUNCH_MAX_HOST];
            const char *err = launch_nodelist_first(list, first, sizeof first);
            if (err != NULL) die("%s='%s': %s", var, list, err);
            launch_set_master(info, var, first);
        }
        if (port == NULL) {
            long long jobid = 0;
            if (job != NULL)
                jobid = launch_parse_int(launch_getenv("SLURM_JOB_ID") ? "SLURM_JOB_ID" : "SLURM_JOBID", job, 0,
                                         999999999999999LL);
            info->master_port = LAUNCH_DEFAULT_PORT + (int)(jobid % 1000);
        }
    }
    if (addr != NULL) launch_set_master(info, "MASTER_ADDR", addr);
    if (port != NULL) info->master_port = (int)launch_parse_int("MASTER_PORT", port, 1, 65535);
    const char *run_id = launch_getenv("S1C_RUN_ID");
    if (run_id != NULL) snprintf(run, sizeof run, "s1c:%s", run_id);
    info->run_id = launch_hash(run);
}

// ----------------------------------------------------------------------------
// 2. the bootstrap

#define LAUNCH_MAGIC "s1cLnch1"
#define LAUNCH_VERSION 1u
#define LAUNCH_HELLO_BYTES 96
#define LAUNCH_REPLY_BYTES 32
#define LAUNCH_HANDSHAKE_S 10.0   // how long rank 0 gives a fresh connection to send its HELLO

enum { LAUNCH_OK, LAUNCH_OTHER_RUN, LAUNCH_WORLD_DIFFERS, LAUNCH_RANK_RANGE, LAUNCH_RANK_TAKEN, LAUNCH_SIZE_DIFFERS,
       LAUNCH_VERSION_DIFFERS };

typedef struct {
    int active;                    // launch_share_id() ran with more than one rank
    int rank, world;
    int *fds;                      // rank 0: fds[r] is rank r's socket (fds[0] = -1); other ranks: fds[0] is rank 0's
    char (*hosts)[64];             // rank 0: each rank's host name, for messages
    char master[LAUNCH_MAX_HOST + 8];
    unsigned barrier_seq;
    int watchdog_running;
    int wake[2];                   // a pipe that wakes the watchdog's poll() to stop it
    pthread_t watchdog;
} LaunchChannel;

static inline LaunchChannel *launch_channel(void) {
    static LaunchChannel c;
    return &c;
}

// Serialises writes to the sockets: the watchdog may send an abort while the main thread sends a barrier.
static inline pthread_mutex_t *launch_write_lock(void) {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    return &m;
}

static inline void launch_put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static inline uint32_t launch_get32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
static inline void launch_put64(unsigned char *p, uint64_t v) { launch_put32(p, (uint32_t)(v >> 32)); launch_put32(p + 4, (uint32_t)v); }
static inline uint64_t launch_get64(const unsigned char *p) { return (uint64_t)launch_get32(p) << 32 | launch_get32(p + 4); }

// Sends all n bytes (MSG_NOSIGNAL: a closed peer is an error to report, not a SIGPIPE). 0 or -1 (errno).
static inline int launch_send(int fd, const void *buf, size_t n) {
    const char *p = (const char *)buf;
    pthread_mutex_lock(launch_write_lock());
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { pthread_mutex_unlock(launch_write_lock()); return -1; }
        p += k;
        n -= (size_t)k;
    }
    pthread_mutex_unlock(launch_write_lock());
    return 0;
}

enum { LAUNCH_READ_OK, LAUNCH_READ_TIMEOUT, LAUNCH_READ_EOF, LAUNCH_READ_ERROR };

// Reads exactly n bytes before the deadline (launch_now() seconds). LAUNCH_READ_EOF: the peer
// closed first; LAUNCH_READ_ERROR: errno says why.
static inline int launch_recv(int fd, void *buf, size_t n, double deadline) {
    char *p = (char *)buf;
    while (n > 0) {
        double left = deadline - launch_now();
        if (left <= 0) return LAUNCH_READ_TIMEOUT;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return LAUNCH_READ_ERROR;
        if (r == 0) continue;   // the loop re-checks the deadline
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k < 0) return errno == ECONNRESET ? LAUNCH_READ_EOF : LAUNCH_READ_ERROR;
        if (k == 0) return LAUNCH_READ_EOF;
        p += k;
        n -= (size_t)k;
    }
    return LAUNCH_READ_OK;
}

// Small latency and dead-host detection on an established socket (best effort: failures only
// make detection slower, so they are not errors).
static inline void launch_tune_socket(int fd) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef TCP_KEEPIDLE
    int idle = 10, interval = 5, count = 3;   // a vanished host is noticed after about 25 s
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
#endif
}

static inline int launch_is_loopback(const char *addr) {
    return strcmp(addr, "localhost") == 0 || strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

// A TCP port on 127.0.0.1 that nothing listens on now (bind port 0, read it back, close). Another
// process could take it before it is used; rank 0's bind would then fail with a clear message.
static inline int launch_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("cannot create a socket to find a free port: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port on 127.0.0.1: %s", strerror(errno));
    close(fd);
    return (int)ntohs(a.sin_port);
}

static inline void launch_gethostname(char *host, size_t n) {
    if (gethostname(host, n) != 0) snprintf(host, n, "?");
    host[n - 1] = '\0';
}

static inline const char *launch_status_text(uint32_t status) {
    switch (status) {
    case LAUNCH_OK: return "ok";
    case LAUNCH_OTHER_RUN: return "another run";
    case LAUNCH_WORLD_DIFFERS: return "world size differs";
    case LAUNCH_RANK_RANGE: return "rank out of range";
    case LAUNCH_RANK_TAKEN: return "rank taken";
    case LAUNCH_SIZE_DIFFERS: return "id size differs";
    case LAUNCH_VERSION_DIFFERS: return "protocol version differs";
    default: return "unknown status";
    }
}

// Rank 0's listening socket on MASTER_PORT (where: the header comment).
static inline int launch_listen(const LaunchInfo *info) {
    char port[16];
    snprintf(port, sizeof port, "%d", info->master_port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int loop = launch_is_loopback(info->master_addr);
    hints.ai_family = loop ? AF_UNSPEC : AF_INET6;   // the wildcard: IPv6 with IPv4 mapped in, else IPv4 below
    int rc = getaddrinfo(loop ? info->master_addr : NULL, port, &hints, &res);
    if (rc != 0 && !loop) {
        hints.ai_family = AF_INET;
        rc = getaddrinfo(NULL, port, &hints, &res);
    }
    if (rc != 0) die("rank 0: cannot listen on MASTER_ADDR=%s MASTER_PORT=%d: %s", info->master_addr, info->master_port, gai_strerror(rc));
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) { err = errno; continue; }
        int one = 1, zero = 0;
        // SO_REUSEADDR: a run restarted right after a killed one can take the port despite TIME_WAIT
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) err = errno;
        if (a->ai_family == AF_INET6 && !loop) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) { err = errno; close(fd); fd = -1; }
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("rank 0: cannot listen on %s port %d (MASTER_ADDR=%s MASTER_PORT=%d): %s%s", loop ? info->master_addr : "all interfaces",
            info->master_port, info->master_addr, info->master_port, strerror(err),
            err == EADDRINUSE ? " (another run on this port? set MASTER_PORT)" : "");
    return fd;
}

// Connects to rank 0, retrying until the deadline: it may not listen yet.
static inline int launch_connect(const LaunchInfo *info, double timeout_s, double deadline) {
    char port[16];
    snprintf(port, sizeof port, "%d", info->master_port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    const char *why = "Connection timed out";   // until an attempt says otherwise
    char why_buf[256];
    for (;;) {
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(info->master_addr, port, &hints, &res);
        if (rc != 0 && rc != EAI_AGAIN)   // EAI_AGAIN: the name server may come back before the deadline
            die("rank %d: cannot resolve MASTER_ADDR=%s: %s", info->rank, info->master_addr, gai_strerror(rc));
        if (rc != 0) {
            snprintf(why_buf, sizeof why_buf, "%s", gai_strerror(rc));
            why = why_buf;
        }
        for (struct addrinfo *a = rc == 0 ? res : NULL; a != NULL; a = a->ai_next) {
            int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
            if (fd < 0) { why = strerror(errno); continue; }
            int flags = fcntl(fd, F_GETFL);
            // non-blocking connect, so an address that drops packets cannot hold us past the deadline
            if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) die("rank %d: fcntl on a socket failed: %s", info->rank, strerror(errno));
            int err = 0;
            if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
                err = errno;
                if (err == EINPROGRESS) {
                    double left = deadline - launch_now();
                    struct pollfd pfd = {fd, POLLOUT, 0};
                    int r = left > 0 ? poll(&pfd, 1, (int)(left * 1000) + 1) : 0;
                    socklen_t len = sizeof err;
                    if (r == 0) { close(fd); continue; }   // out of time, not a new reason: keep the last one
                    if (r < 0) err = errno;
                    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
                }
            }
            if (err == 0) {
                if (fcntl(fd, F_SETFL, flags) != 0) die("rank %d: fcntl on a socket failed: %s", info->rank, strerror(errno));
                freeaddrinfo(res);
                launch_tune_socket(fd);
                return fd;
            }
            why = strerror(err);
            close(fd);
        }
        if (res != NULL) freeaddrinfo(res);
        if (launch_now() >= deadline)
            die("rank %d: cannot connect to rank 0 at MASTER_ADDR=%s MASTER_PORT=%d within %g s: %s (is rank 0 "
                "running, with the same MASTER_ADDR and MASTER_PORT?)", info->rank, info->master_addr,
                info->master_port, timeout_s, why);
        usleep(100 * 1000);   // rank 0 may still be loading: try again
    }
}

static inline void launch_channel_open(const LaunchInfo *info) {
    LaunchChannel *c = launch_channel();
    if (c->active) die("internal error: launch_share_id called twice");
    c->rank = info->rank;
    c->world = info->world_size;
    c->fds = (int *)mallocCheck((size_t)info->world_size * sizeof(int));
    c->hosts = (char (*)[64])callocCheck((size_t)info->world_size, 64);
    for (int r = 0; r < info->world_size; r++) c->fds[r] = -1;
    snprintf(c->master, sizeof c->master, "%s:%d", info->master_addr, info->master_port);
    c->barrier_seq = 0;
    c->active = 1;
}

// "rank 3 (host gpu-02)", for rank 0's messages about a peer.
static inline const char *launch_peer_name(int r, char *buf, size_t n) {
    const LaunchChannel *c = launch_channel();
    if (c->hosts && c->hosts[r][0]) snprintf(buf, n, "rank %d (host %s)", r, c->hosts[r]);
    else snprintf(buf, n, "rank %d", r);
    return buf;
}

// Rank 0 tells every other rank why the run stops (best effort: some may be gone already).
static inline void launch_send_abort(const char *reason) {
    LaunchChannel *c = launch_channel();
    if (!c->active || c->rank != 0) return;
    size_t len = strlen(reason);
    if (len > 1000) len = 1000;
    unsigned char msg[8];
    launch_put32(msg, 'A');
    launch_put32(msg + 4, (uint32_t)len);
    for (int r = 1; r < c->world; r++) {
        if (c->fds[r] < 0) continue;
        if (launch_send(c->fds[r], msg, 8) == 0) (void)launch_send(c->fds[r], reason, len);
    }
}

// Rank 0 lost rank r: tell the others, then die with the reason.
static inline void launch_lost_peer(int r, const char *during) __attribute__((noreturn));
static inline void launch_lost_peer(int r, const char *during) {
    char name[128], reason[512];
    snprintf(reason, sizeof reason, "%s closed its connection%s (it exited or was killed)",
             launch_peer_name(r, name, sizeof name), during);
    launch_send_abort(reason);
    die("rank 0: %s", reason);
}

// A non-zero rank read 'A' (or could not read anything but EOF) from rank 0: die with why.
static inline void launch_lost_master(int fd, const char *during, double deadline) __attribute__((noreturn));
static inline void launch_lost_master(int fd, const char *during, double deadline) {
    LaunchChannel *c = launch_channel();
    unsigned char msg[8];
    // whatever rank 0 sent before closing: skip barrier releases, stop at an abort
    while (launch_recv(fd, msg, 8, deadline) == LAUNCH_READ_OK) {
        if (launch_get32(msg) != 'A') continue;
        char reason[1001];
        uint32_t len = launch_get32(msg + 4);
        if (len > 1000) len = 1000;
        if (launch_recv(fd, reason, len, deadline) != LAUNCH_READ_OK) break;
        reason[len] = '\0';
        die("rank %d: rank 0 stopped the run: %s", c->rank, reason);
    }
    die("rank %d: lost the connection to rank 0 at %s%s (rank 0 exited or was killed; its log has the reason)",
        c->rank, c->master, during);
}

// Rank 0's side of the bootstrap: waits for W-1 HELLOs, then answers each with the id.
static inline void launch_share_id_rank0(const LaunchInfo *info, const void *id, size_t n, double timeout_s) {
    LaunchChannel *c = launch_channel();
    int W = info->world_size, lfd = launch_listen(info), arrived = 0;
    double deadline = launch_now() + timeout_s;
    while (arrived < W - 1) {
        double left = deadline - launch_now();
        struct pollfd pfd = {lfd, POLLIN, 0};
        int r = left > 0 ? poll(&pfd, 1, (int)(left * 1000) + 1) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("rank 0: poll on the listening socket failed: %s", strerror(errno));
        if (r == 0 && launch_now() < deadline) continue;
        if (r == 0) {
            char missing[512];
            size_t k = 0;
            int shown = 0;
            missing[0] = '\0';
            for (int q = 1; q < W; q++) {
                if (c->fds[q] >= 0) continue;
                if (shown++ == 16) { k += (size_t)snprintf(missing + k, sizeof missing - k, ", ..."); break; }
                k += (size_t)snprintf(missing + k, sizeof missing - k, "%s%d", shown > 1 ? ", " : "", q);
                if (k >= sizeof missing) break;
            }
            die("rank 0: %d of %d ranks did not connect within %g s (missing: rank%s %s; MASTER_ADDR=%s MASTER_PORT=%d)",
                W - 1 - arrived, W - 1, timeout_s, W - 1 - arrived > 1 ? "s" : "", missing, info->master_addr,
                info->master_port);
        }
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        int fd = accept(lfd, (struct sockaddr *)&from, &from_len);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
            die("rank 0: accept on MASTER_PORT=%d failed: %s", info->master_port, strerror(errno));
        }
        char peer[INET6_ADDRSTRLEN + 8] = "?";
        if (getnameinfo((struct sockaddr *)&from, from_len, peer, sizeof peer, NULL, 0, NI_NUMERICHOST) != 0)
            snprintf(peer, sizeof peer, "?");
        launch_tune_socket(fd);
        unsigned char hello[LAUNCH_HELLO_BYTES], reply[LAUNCH_REPLY_BYTES];
        double hello_deadline = launch_now() + LAUNCH_HANDSHAKE_S < deadline ? launch_now() + LAUNCH_HANDSHAKE_S : deadline;
        if (launch_recv(fd, hello, sizeof hello, hello_deadline) != LAUNCH_READ_OK ||
            memcmp(hello, LAUNCH_MAGIC, 8) != 0) {
            fprintf(stderr, "warning: rank 0: closed a connection from %s that did not send an s1c launch handshake\n", peer);
            close(fd);
            continue;
        }
        uint32_t version = launch_get32(hello + 8), world = launch_get32(hello + 12), rank = launch_get32(hello + 16);
        uint32_t size = launch_get32(hello + 20);
        uint64_t run = launch_get64(hello + 24);
        char host[64];
        memcpy(host, hello + 32, 63);
        host[63] = '\0';
        for (char *p = host; *p; p++) if (!launch_host_char(*p, 1)) *p = '?';
        uint32_t status = version != LAUNCH_VERSION ? LAUNCH_VERSION_DIFFERS
                        : run != info->run_id ? LAUNCH_OTHER_RUN
                        : world != (uint32_t)W ? LAUNCH_WORLD_DIFFERS
                        : rank == 0 || rank >= (uint32_t)W ? LAUNCH_RANK_RANGE
                        : c->fds[rank] >= 0 ? LAUNCH_RANK_TAKEN
                        : size != (uint32_t)n ? LAUNCH_SIZE_DIFFERS : LAUNCH_OK;
        if (status == LAUNCH_OK) {
            c->fds[rank] = fd;
            snprintf(c->hosts[rank], 64, "%s", host);
            arrived++;
            continue;
        }
        memcpy(reply, LAUNCH_MAGIC, 8);
        launch_put32(reply + 8, status);
        launch_put32(reply + 12, (uint32_t)W);
        launch_put32(reply + 16, (uint32_t)n);
        launch_put32(reply + 20, 0);
        launch_put64(reply + 24, info->run_id);
        (void)launch_send(fd, reply, sizeof reply);   // it may be gone already: the refusal stands either way
        close(fd);
        if (status == LAUNCH_OTHER_RUN) {   // not ours: it dies, this run goes on
            fprintf(stderr, "warning: rank 0: refused rank %u of another run (host %s, address %s, run id %016llx, "
                    "ours %016llx)\n", rank, host, peer, (unsigned long long)run, (unsigned long long)info->run_id);
            continue;
        }
        char other[128] = "";
        if (status == LAUNCH_RANK_TAKEN) launch_peer_name((int)rank, other, sizeof other);
        if (status == LAUNCH_VERSION_DIFFERS)
            die("rank 0: rank %u (host %s) speaks launch protocol version %u, rank 0 version %u", rank, host, version, LAUNCH_VERSION);
        if (status == LAUNCH_WORLD_DIFFERS)
            die("rank 0: rank %u (host %s) has world size %u, rank 0 has %d", rank, host, world, W);
        if (status == LAUNCH_RANK_RANGE)
            die("rank 0: a process on host %s claims rank %u, which is not in 1..%d", host, rank, W - 1);
        if (status == LAUNCH_RANK_TAKEN)
            die("rank 0: two processes claim rank %u: %s and one on host %s", rank, other, host);
        die("rank 0: rank %u (host %s) shares a %u-byte id, rank 0 a %zu-byte one", rank, host, size, n);
    }
    close(lfd);
    unsigned char reply[LAUNCH_REPLY_BYTES];
    memcpy(reply, LAUNCH_MAGIC, 8);
    launch_put32(reply + 8, LAUNCH_OK);
    launch_put32(reply + 12, (uint32_t)W);
    launch_put32(reply + 16, (uint32_t)n);
    launch_put32(reply + 20, 0);
    launch_put64(reply + 24, info->run_id);
    for (int r = 1; r < W; r++)
        if (launch_send(c->fds[r], reply, sizeof reply) != 0 || launch_send(c->fds[r], id, n) != 0) {
            close(c->fds[r]);
            c->fds[r] = -1;
            launch_lost_peer(r, " before it received the id");
        }
}

// Another rank's side: connect, HELLO, then wait for rank 0's answer and the id.
static inline void launch_share_id_peer(const LaunchInfo *info, void *id, size_t n, double timeout_s) {
    LaunchChannel *c = launch_channel();
    double deadline = launch_now() + timeout_s;
    int fd = launch_connect(info, timeout_s, deadline);
    unsigned char hello[LAUNCH_HELLO_BYTES], reply[LAUNCH_REPLY_BYTES];
    memset(hello, 0, sizeof hello);
    memcpy(hello, LAUNCH_MAGIC, 8);
    launch_put32(hello + 8, LAUNCH_VERSION);
    launch_put32(hello + 12, (uint32_t)info->world_size);
    launch_put32(hello + 16, (uint32_t)info->rank);
    launch_put32(hello + 20, (uint32_t)n);
    launch_put64(hello + 24, info->run_id);
    launch_gethostname((char *)hello + 32, 64);
    if (launch_send(fd, hello, sizeof hello) != 0)
        die("rank %d: cannot send the handshake to rank 0 at %s: %s", info->rank, c->master, strerror(errno));
    // rank 0 answers once every rank has arrived, or dies (closing) after its own timeout, which
    // began before we could connect: timeout_s from now (and a second of slack) is enough
    double reply_deadline = launch_now() + timeout_s + 1.0;
    int r = launch_recv(fd, reply, sizeof reply, reply_deadline);
    if (r == LAUNCH_READ_EOF)
        die("rank %d: rank 0 at %s closed the connection before sending the id (it failed or gave up waiting for "
            "another rank: its log has the reason)", info->rank, c->master);
    if (r == LAUNCH_READ_TIMEOUT)
        die("rank %d: rank 0 at %s did not answer within %g s", info->rank, c->master, timeout_s + 1.0);
    if (r != LAUNCH_READ_OK) die("rank %d: reading from rank 0 at %s failed: %s", info->rank, c->master, strerror(errno));
    if (memcmp(reply, LAUNCH_MAGIC, 8) != 0)
        die("rank %d: %s did not answer with the s1c launch handshake (another program on MASTER_PORT?)", info->rank, c->master);
    uint32_t status = launch_get32(reply + 8), world = launch_get32(reply + 12), size = launch_get32(reply + 16);
    uint64_t run = launch_get64(reply + 24);
    switch (status) {
    case LAUNCH_OK: break;
    case LAUNCH_OTHER_RUN:
        die("rank %d: rank 0 at %s belongs to another run (run id %016llx, ours %016llx): check MASTER_ADDR and "
            "MASTER_PORT", info->rank, c->master, (unsigned long long)run, (unsigned long long)info->run_id);
    case LAUNCH_WORLD_DIFFERS:
        die("rank %d: world size %d, but rank 0 at %s has %u", info->rank, info->world_size, c->master, world);
    case LAUNCH_RANK_RANGE: die("rank %d: rank 0 at %s refused rank %d of %u", info->rank, c->master, info->rank, world);
    case LAUNCH_RANK_TAKEN: die("rank %d: rank 0 at %s already has a rank %d", info->rank, c->master, info->rank);
    case LAUNCH_SIZE_DIFFERS:
        die("rank %d: rank 0 at %s shares a %u-byte id, this rank expects %zu bytes", info->rank, c->master, size, n);
    default:
        die("rank %d: rank 0 at %s refused the handshake (%s)", info->rank, c->master, launch_status_text(status));
    }
    if (size != (uint32_t)n) die("rank %d: rank 0 at %s sends a %u-byte id, expected %zu", info->rank, c->master, size, n);
    r = launch_recv(fd, id, n, reply_deadline);
    if (r != LAUNCH_READ_OK) die("rank %d: rank 0 at %s stopped in the middle of the id", info->rank, c->master);
    c->fds[0] = fd;
}

// Rank 0 hands its n bytes (the ncclUniqueId, filled before the call) to every other rank,
// whose id buffer receives them. A no-op with one rank. The sockets stay open (section 3).
static inline void launch_share_id(const LaunchInfo *info, void *id, size_t n, double timeout_s) {
    if (info->world_size <= 1) return;
    if (n == 0 || n > LAUNCH_MAX_ID_BYTES) die("internal error: launch_share_id of %zu bytes", n);
    if (!(timeout_s > 0)) die("internal error: launch_share_id with timeout %g s", timeout_s);
    launch_channel_open(info);
    if (info->rank == 0) launch_share_id_rank0(info, id, n, timeout_s);
    else launch_share_id_peer(info, id, n, timeout_s);
}

// ----------------------------------------------------------------------------
// 3. liveness: barrier, peer checks, watchdog, finish

static inline LaunchChannel *launch_channel_check(const char *what) {
    LaunchChannel *c = launch_channel();
    if (!c->active) die("internal error: %s before launch_share_id", what);
    return c;
}

// One barrier of kind 'B' or 'F': each rank sends (kind, seq) to rank 0, which answers all once
// every rank has sent the same.
static inline void launch_meet(char kind, double timeout_s) {
    LaunchChannel *c = launch_channel();
    const char *what = kind == 'F' ? "the final barrier" : "barrier";
    unsigned seq = ++c->barrier_seq;
    unsigned char msg[8];
    launch_put32(msg, (uint32_t)kind);
    launch_put32(msg + 4, seq);
    double deadline = launch_now() + timeout_s;
    char during[64], name[128];
    snprintf(during, sizeof during, " during %s %u", what, seq);
    if (c->rank != 0) {
        if (launch_send(c->fds[0], msg, 8) != 0) launch_lost_master(c->fds[0], during, launch_now() + 0.5);
        unsigned char got[8];
        int r = launch_recv(c->fds[0], got, 8, deadline);
        if (r == LAUNCH_READ_EOF || (r == LAUNCH_READ_OK && launch_get32(got) == 'A')) {
            if (r == LAUNCH_READ_OK) {   // the abort's reason follows
                char reason[1001];
                uint32_t len = launch_get32(got + 4);
                if (len > 1000) len = 1000;
                if (launch_recv(c->fds[0], reason, len, launch_now() + 1.0) == LAUNCH_READ_OK) {
                    reason[len] = '\0';
                    die("rank %d: rank 0 stopped the run: %s", c->rank, reason);
                }
            }
            launch_lost_master(c->fds[0], during, launch_now() + 0.5);
        }
        if (r == LAUNCH_READ_TIMEOUT)
            die("rank %d: %s %u: rank 0 did not release it within %g s (another rank is late)", c->rank, what, seq, timeout_s);
        if (r != LAUNCH_READ_OK) die("rank %d: reading from rank 0 failed%s: %s", c->rank, during, strerror(errno));
        if (launch_get32(got) != (uint32_t)kind || launch_get32(got + 4) != seq)
            die("rank %d: at %s %u, rank 0 released %s %u", c->rank, what, seq,
                launch_get32(got) == 'F' ? "the final barrier" : "barrier", launch_get32(got + 4));
        return;
    }
    int W = c->world, arrived = 0;
    char *in = (char *)callocCheck((size_t)W, 1);
    struct pollfd *pfds = (struct pollfd *)callocCheck((size_t)W, sizeof *pfds);
    while (arrived < W - 1) {
        int np = 0;
        for (int r = 1; r < W; r++)
            if (!in[r]) { pfds[np].fd = c->fds[r]; pfds[np].events = POLLIN; pfds[np].revents = 0; np++; }
        double left = deadline - launch_now();
        int k = left > 0 ? poll(pfds, (nfds_t)np, (int)(left * 1000) + 1) : 0;
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) die("rank 0: poll failed%s: %s", during, strerror(errno));
        if (k == 0 && launch_now() < deadline) continue;
        if (k == 0) {
            char late[512];
            size_t m = 0;
            int shown = 0;
            for (int r = 1; r < W && m < sizeof late; r++)
                if (!in[r] && shown++ < 16) m += (size_t)snprintf(late + m, sizeof late - m, "%s%d", shown > 1 ? ", " : "", r);
            die("rank 0: %s %u: rank%s %s did not arrive within %g s", what, seq, W - 1 - arrived > 1 ? "s" : "", late, timeout_s);
        }
        for (int i = 0; i < np; i++) {
            if (!pfds[i].revents) continue;
            int r = 1;
            while (c->fds[r] != pfds[i].fd) r++;
            unsigned char got[8];
            int rr = launch_recv(c->fds[r], got, 8, launch_now() + 1.0);
            if (rr == LAUNCH_READ_EOF) launch_lost_peer(r, during);
            if (rr != LAUNCH_READ_OK) die("rank 0: reading from %s failed%s", launch_peer_name(r, name, sizeof name), during);
            if (launch_get32(got) != (uint32_t)kind || launch_get32(got + 4) != seq) {
                char reason[512];
                snprintf(reason, sizeof reason, "%s is at %s %u, rank 0 at %s %u", launch_peer_name(r, name, sizeof name),
                         launch_get32(got) == 'F' ? "the final barrier" : "barrier", launch_get32(got + 4), what, seq);
                launch_send_abort(reason);
                die("rank 0: %s", reason);
            }
            in[r] = 1;
            arrived++;
        }
    }
    free(in);
    free(pfds);
    for (int r = 1; r < W; r++)
        if (launch_send(c->fds[r], msg, 8) != 0) launch_lost_peer(r, during);
}

// Every rank waits here until all have arrived; dies naming the rank that is late (timeout_s),
// gone, or at another barrier. A no-op with one rank.
static inline void launch_barrier(const LaunchInfo *info, double timeout_s) {
    if (info->world_size <= 1) return;
    launch_channel_check("launch_barrier");
    launch_meet('B', timeout_s);
}

// The sockets to watch: rank 0 watches every other rank, the others watch rank 0.
static inline int launch_watch_fds(struct pollfd *pfds, int extra_fd) {
    LaunchChannel *c = launch_channel();
    int np = 0;
    for (int r = 0; r < c->world; r++)
        if (c->fds[r] >= 0) { pfds[np].fd = c->fds[r]; pfds[np].events = POLLRDHUP; pfds[np].revents = 0; np++; }
    if (extra_fd >= 0) { pfds[np].fd = extra_fd; pfds[np].events = POLLIN; pfds[np].revents = 0; np++; }
    return np;
}

// Dies if one of pfds[0..np) (from launch_watch_fds) reports a closed connection.
static inline void launch_handle_hangup(const struct pollfd *pfds, int np) {
    LaunchChannel *c = launch_channel();
    for (int i = 0; i < np; i++) {
        if (!(pfds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) continue;
        int r = 0;
        while (r < c->world && c->fds[r] != pfds[i].fd) r++;
        if (r == c->world) continue;   // the watchdog's wake pipe
        if (c->rank == 0) launch_lost_peer(r, "");
        launch_lost_master(c->fds[0], "", launch_now() + 0.5);
    }
}

// A look (no wait) for a rank that has closed its connection: dies with a clear message if one
// has (rank 0 tells the others first). Never consumes barrier messages. A no-op with one rank.
static inline void launch_check_peers(const LaunchInfo *info) {
    if (info->world_size <= 1) return;
    LaunchChannel *c = launch_channel_check("launch_check_peers");
    struct pollfd *pfds = (struct pollfd *)callocCheck((size_t)c->world, sizeof *pfds);
    int np = launch_watch_fds(pfds, -1);
    int k;
    do k = poll(pfds, (nfds_t)np, 0); while (k < 0 && errno == EINTR);
    if (k < 0) die("rank %d: poll failed: %s", c->rank, strerror(errno));
    if (k > 0) launch_handle_hangup(pfds, np);
    free(pfds);
}

static inline void *launch_watchdog_main(void *arg) {
    (void)arg;
    LaunchChannel *c = launch_channel();
    struct pollfd *pfds = (struct pollfd *)callocCheck((size_t)c->world + 1, sizeof *pfds);
    for (;;) {
        int np = launch_watch_fds(pfds, c->wake[0]);
        int k = poll(pfds, (nfds_t)np, -1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) die("rank %d: watchdog poll failed: %s", c->rank, strerror(errno));
        if (pfds[np - 1].revents & POLLIN) break;   // launch_watchdog_stop()
        launch_handle_hangup(pfds, np);
        usleep(1000);   // an event that is no hang-up (none expected): do not spin
    }
    free(pfds);
    return NULL;
}

// Starts a thread that sleeps in poll() on the sockets and, as soon as one closes, prints the
// reason and exits the process through die() (which removes registered temporary outputs, so no
// partial checkpoint stays behind). For ranks blocked in an NCCL collective, which never returns
// when a peer is gone. A no-op with one rank.
static inline void launch_watchdog_start(const LaunchInfo *info) {
    if (info->world_size <= 1) return;
    LaunchChannel *c = launch_channel_check("launch_watchdog_start");
    if (c->watchdog_running) return;
    if (pipe(c->wake) != 0) die("rank %d: pipe for the watchdog failed: %s", c->rank, strerror(errno));
    int rc = pthread_create(&c->watchdog, NULL, launch_watchdog_main, NULL);
    if (rc != 0) die("rank %d: cannot start the watchdog thread: %s", c->rank, strerror(rc));
    c->watchdog_running = 1;
}

static inline void launch_watchdog_stop(void) {
    LaunchChannel *c = launch_channel();
    if (!c->watchdog_running) return;
    char b = 1;
    if (write(c->wake[1], &b, 1) != 1) die("rank %d: cannot wake the watchdog: %s", c->rank, strerror(errno));
    int rc = pthread_join(c->watchdog, NULL);
    if (rc != 0) die("rank %d: cannot join the watchdog thread: %s", c->rank, strerror(rc));
    close(c->wake[0]);
    close(c->wake[1]);
    c->watchdog_running = 0;
}

// The normal end: stops the watchdog, waits for every rank (so none takes another's exit for a
// death), closes the sockets. Every rank calls it before exiting 0. A no-op with one rank.
static inline void launch_finish(const LaunchInfo *info, double timeout_s) {
    if (info->world_size <= 1) return;
    LaunchChannel *c = launch_channel_check("launch_finish");
    launch_watchdog_stop();
    launch_meet('F', timeout_s);
    for (int r = 0; r < c->world; r++)
        if (c->fds[r] >= 0) { close(c->fds[r]); c->fds[r] = -1; }
    free(c->fds);
    free(c->hosts);
    c->fds = NULL;
    c->hosts = NULL;
    c->active = 0;
}

// ----------------------------------------------------------------------------
// 4. N local ranks: launch_fork_local()

// The signal the launching parent got (0: none). A function-local static, so that a program that
// never calls launch_fork_local() has no unused variable.
static inline volatile sig_atomic_t *launch_parent_signal(void) {
    static volatile sig_atomic_t sig;
    return &sig;
}
static inline void launch_parent_on_signal(int sig) { *launch_parent_signal() = sig; }

static inline void launch_describe_exit(char *buf, size_t n, int status) {
    if (WIFEXITED(status)) snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(buf, n, "ended with wait status 0x%x", status);
}

// Forks nproc ranks on this machine (the header comment, section 4). In a child: sets its
// environment, fills *info (launch_from_env) and returns LAUNCH_CHILD. In the parent: waits for
// all and returns the exit status for the program (0: every rank exited 0). grace_s: how long a
// rank has between SIGTERM and SIGKILL once the run is being stopped.
static inline int launch_fork_local(int nproc, double grace_s, LaunchInfo *info) {
    if (nproc < 1 || nproc > 4096) die("--nproc %d: expected 1..4096 local ranks", nproc);
    if (launch_getenv("RANK") != NULL || launch_getenv("WORLD_SIZE") != NULL)
        die("--nproc %d: this process is already rank %s of WORLD_SIZE=%s (started by torchrun?): use one launcher, not both",
            nproc, launch_getenv("RANK") ? launch_getenv("RANK") : "?", launch_getenv("WORLD_SIZE") ? launch_getenv("WORLD_SIZE") : "?");
    int port = launch_free_port();
    pid_t parent = getpid();
    char run[64];
    snprintf(run, sizeof run, "local:%ld:%d", (long)parent, port);
    pid_t *pids = (pid_t *)mallocCheck((size_t)nproc * sizeof(pid_t));
    fflush(stdout);   // else each child would print the parent's buffered output again
    fflush(stderr);
    for (int r = 0; r < nproc; r++) {
        pid_t pid = fork();
        if (pid < 0) {
            int err = errno;
            for (int q = 0; q < r; q++) kill(pids[q], SIGKILL);
            for (int q = 0; q < r; q++) waitpid(pids[q], NULL, 0);
            die("--nproc %d: cannot fork rank %d: %s", nproc, r, strerror(err));
        }
        if (pid == 0) {
#ifdef __linux__
            // die with the parent: a kill -9 of `sft train --nproc` must not leave ranks training
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("rank %d: prctl(PR_SET_PDEATHSIG) failed: %s", r, strerror(errno));
            if (getppid() != parent) _exit(1);   // the parent died before prctl
#endif
            char v[32];
            snprintf(v, sizeof v, "%d", r);
            if (setenv("RANK", v, 1) != 0 || setenv("LOCAL_RANK", v, 1) != 0) die("rank %d: setenv failed", r);
            snprintf(v, sizeof v, "%d", nproc);
            if (setenv("WORLD_SIZE", v, 1) != 0 || setenv("LOCAL_WORLD_SIZE", v, 1) != 0) die("rank %d: setenv failed", r);
            snprintf(v, sizeof v, "%d", port);
            if (setenv("MASTER_ADDR", "127.0.0.1", 1) != 0 || setenv("MASTER_PORT", v, 1) != 0 ||
                setenv("S1C_RUN_ID", run, 1) != 0)
                die("rank %d: setenv failed", r);
            free(pids);
            launch_from_env(info);
            return LAUNCH_CHILD;
        }
        pids[r] = pid;
    }
    // the parent: a SIGINT/SIGTERM/SIGHUP stops the ranks instead of orphaning them
    struct sigaction sa, old[3];
    const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = launch_parent_on_signal;
    sigemptyset(&sa.sa_mask);
    *launch_parent_signal() = 0;
    for (int i = 0; i < 3; i++)
        if (sigaction(sigs[i], &sa, &old[i]) != 0) die("--nproc: sigaction failed: %s", strerror(errno));
    char failure[512] = "";
    int alive = nproc, stopping = 0, stopped = 0, forced = 0, rc = 0, interrupted = 0;
    double stop_deadline = 0;
    while (alive > 0) {
        if (*launch_parent_signal() && failure[0] == '\0') {
            int sig = *launch_parent_signal();
            snprintf(failure, sizeof failure, "interrupted by signal %d (%s)", sig, strsignal(sig));
            rc = 128 + sig;
            interrupted = 1;
        }
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == ECHILD) break;   // cannot happen while alive > 0, but never spin
        if (pid < 0 && errno != EINTR) die("--nproc: waitpid failed: %s", strerror(errno));
        if (pid > 0) {
            int r = 0;
            while (r < nproc && pids[r] != pid) r++;
            if (r == nproc) continue;   // not one of ours
            pids[r] = 0;
            alive--;
            int bad = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            if (bad && failure[0] == '\0') {   // the first failure is the one to name; the rest follow from it
                char how[128];
                launch_describe_exit(how, sizeof how, status);
                snprintf(failure, sizeof failure, "rank %d of %d (pid %ld) %s", r, nproc, (long)pid, how);
                rc = 1;
            }
        }
        if (failure[0] != '\0' && !stopping) {   // stop the others: SIGTERM now, SIGKILL after the grace period
            stopping = 1;
            stop_deadline = launch_now() + grace_s;
            for (int q = 0; q < nproc; q++)
                if (pids[q] > 0 && kill(pids[q], SIGTERM) == 0) stopped++;
        }
        if (stopping && forced == 0 && alive > 0 && launch_now() > stop_deadline) {
            for (int q = 0; q < nproc; q++)
                if (pids[q] > 0 && kill(pids[q], SIGKILL) == 0) forced++;
            if (forced == 0) forced = -1;   // nobody left to force
        }
        if (pid <= 0) usleep(10 * 1000);
    }
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &old[i], NULL);
    free(pids);
    if (failure[0] != '\0') {
        char tail[160] = "";
        if (stopped > 0)
            snprintf(tail, sizeof tail, "; stopped the %s%d rank%s%s", interrupted ? "" : "other ", stopped,
                     stopped > 1 ? "s" : "", forced > 0 ? " (some only by SIGKILL, after the grace period)" : "");
        fprintf(stderr, "error: %s%s\n", failure, tail);
        fflush(stderr);
    }
    return rc;
}

#endif  // S1C_LAUNCH_H
