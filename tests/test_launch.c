// Tests of common/launch.h: the environment of torchrun and Slurm (host lists included), the TCP
// bootstrap and liveness channel with 1, 2, 3 and 4 processes, and launch_fork_local().
//
// Every error path ends in die(), so each is run in a forked child whose stderr goes to a file;
// the test checks the exit status and that stderr is exactly one "error: " line naming what it
// must. Only the loopback address carries traffic (MASTER_ADDR=127.0.0.1 throughout), and the
// timeouts are 1-5 s, so the whole program takes a few seconds. A child that outlives its limit
// is killed and counted as a failure: a hang cannot stall the suite.
#include "common/launch.h"
#include "tests/test.h"

// ----------------------------------------------------------------------------
// children with a clean launch environment and a captured stderr

static const char *launch_vars[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
    "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST", "SLURM_NODELIST",
    "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_ID", "SLURM_STEPID", "S1C_RUN_ID", NULL};

// Removes every variable launch_from_env() reads (the suite may itself run under Slurm or torchrun),
// then sets env: "NAME=value" strings, NULL-terminated.
static void set_env(const char *const *env) {
    for (int i = 0; launch_vars[i]; i++) unsetenv(launch_vars[i]);
    for (int i = 0; env && env[i]; i++) {
        char name[128];
        const char *eq = strchr(env[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
        if (setenv(name, eq + 1, 1) != 0) { printf("setenv %s failed\n", name); exit(2); }
    }
}

typedef struct {
    pid_t pid;
    char err_path[64];
    double start;
    int status;       // wait status once finished
    int timed_out;
    double seconds;
    char err[4096];   // its stderr
} Child;

typedef int (*ChildFn)(void *arg);

// Forks a child that runs fn(arg) with env (set_env) and exits with its return value.
static Child spawn(ChildFn fn, void *arg, const char *const *env) {
    Child c;
    memset(&c, 0, sizeof c);
    snprintf(c.err_path, sizeof c.err_path, "/tmp/s1c-test-launch-XXXXXX");
    int fd = mkstemp(c.err_path);
    if (fd < 0) { printf("mkstemp failed: %s\n", strerror(errno)); exit(2); }
    fflush(stdout);
    fflush(stderr);
    c.start = launch_now();
    c.pid = fork();
    if (c.pid < 0) { printf("fork failed: %s\n", strerror(errno)); exit(2); }
    if (c.pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull < 0 || dup2(devnull, 1) < 0 || dup2(fd, 2) < 0) _exit(99);
        set_env(env);
        int rc = fn(arg);
        fflush(NULL);
        _exit(rc);
    }
    close(fd);
    return c;
}

// Waits for the child at most limit_s seconds (then SIGKILL and timed_out), reads its stderr.
static void finish(Child *c, double limit_s) {
    for (;;) {
        pid_t r = waitpid(c->pid, &c->status, WNOHANG);
        if (r == c->pid) break;
        if (r < 0 && errno != EINTR) { c->status = -1; break; }
        if (launch_now() - c->start > limit_s && !c->timed_out) { c->timed_out = 1; kill(c->pid, SIGKILL); }
        usleep(5000);
    }
    c->seconds = launch_now() - c->start;
    FILE *fp = fopen(c->err_path, "rb");
    size_t n = fp ? fread(c->err, 1, sizeof c->err - 1, fp) : 0;
    c->err[n] = '\0';
    if (fp) fclose(fp);
    unlink(c->err_path);
}

static int exited_with(const Child *c, int code) {
    return !c->timed_out && WIFEXITED(c->status) && WEXITSTATUS(c->status) == code;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

// The child failed with exactly one "error: " line containing `want`.
#define CHECK_ONE_ERROR(c, want) do {                                                                  \
    CHECK(exited_with(&(c), 1), "%s: want exit status 1, got wait status 0x%x%s (stderr: %s)", (want),   \
          (c).status, (c).timed_out ? " after a timeout" : "", (c).err);                                \
    CHECK(count_lines((c).err) == 1 && strncmp((c).err, "error: ", 7) == 0,                             \
          "want one 'error: ' line, got: %s", (c).err);                                                 \
    CHECK(strstr((c).err, (want)) != NULL, "stderr '%s' lacks '%s'", (c).err, (want));                  \
} while (0)

#define CHECK_OK(c) CHECK(exited_with(&(c), 0), "want exit 0, got wait status 0x%x%s; stderr: %s", (c).status, \
                          (c).timed_out ? " after a timeout" : "", (c).err)

// ----------------------------------------------------------------------------
// 1. the environment

static int child_from_env(void *arg) {
    (void)arg;
    LaunchInfo info;
    launch_from_env(&info);
    return 0;
}

static void test_env_defaults_and_torchrun(void) {
    TEST_BEGIN("env: no launcher is rank 0 of 1; torchrun's five variables; torchrun wins over Slurm");
    LaunchInfo info;
    set_env(NULL);
    launch_from_env(&info);
    CHECK(info.rank == 0 && info.world_size == 1 && info.local_rank == 0, "got rank %d of %d", info.rank, info.world_size);
    CHECK(strcmp(info.source, "none") == 0, "source %s", info.source);

    const char *torchrun[] = {"RANK=3", "WORLD_SIZE=8", "LOCAL_RANK=3", "LOCAL_WORLD_SIZE=4", "MASTER_ADDR=node-a.example",
                              "MASTER_PORT=29555", "TORCHELASTIC_RUN_ID=abc", NULL};
    set_env(torchrun);
    launch_from_env(&info);
    CHECK(info.rank == 3 && info.world_size == 8 && info.local_rank == 3 && info.local_world_size == 4,
          "rank %d world %d local %d/%d", info.rank, info.world_size, info.local_rank, info.local_world_size);
    CHECK(strcmp(info.master_addr, "node-a.example") == 0 && info.master_port == 29555, "master %s:%d",
          info.master_addr, info.master_port);
    CHECK(strcmp(info.source, "torchrun") == 0, "source %s", info.source);
    uint64_t id_abc = info.run_id;
    setenv("TORCHELASTIC_RUN_ID", "other", 1);
    launch_from_env(&info);
    CHECK(info.run_id != id_abc, "another rendezvous id gives another run id");

    const char *single[] = {"RANK=0", "WORLD_SIZE=1", NULL};   // one rank needs no master
    set_env(single);
    launch_from_env(&info);
    CHECK(info.rank == 0 && info.world_size == 1, "rank %d of %d", info.rank, info.world_size);

    const char *both[] = {"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=1234",
                          "SLURM_PROCID=5", "SLURM_NTASKS=16", "SLURM_LOCALID=5", "SLURM_STEP_ID=0",
                          "SLURM_JOB_NODELIST=n[1-2]", NULL};
    set_env(both);
    launch_from_env(&info);
    CHECK(info.rank == 1 && info.world_size == 2 && strcmp(info.source, "torchrun") == 0,
          "torchrun inside Slurm: rank %d of %d from %s", info.rank, info.world_size, info.source);
    set_env(NULL);
    TEST_END();
}

static void test_env_slurm(void) {
    TEST_BEGIN("env: Slurm's variables, master = first host of the node list, port from MASTER_PORT or the job id");
    LaunchInfo info;
    const char *slurm[] = {"SLURM_PROCID=9", "SLURM_NTASKS=16", "SLURM_LOCALID=1", "SLURM_STEP_ID=0",
                           "SLURM_JOB_ID=123456", "SLURM_JOB_NODELIST=node[01-02,05]", NULL};
    set_env(slurm);
    launch_from_env(&info);
    CHECK(info.rank == 9 && info.world_size == 16 && info.local_rank == 1, "rank %d of %d, local %d", info.rank,
          info.world_size, info.local_rank);
    CHECK(strcmp(info.master_addr, "node01") == 0, "master %s, want node01", info.master_addr);
    CHECK(info.master_port == 29500 + 456, "port %d, want 29500 + 123456 mod 1000", info.master_port);
    CHECK(strcmp(info.source, "slurm") == 0, "source %s", info.source);
    uint64_t step0 = info.run_id;
    setenv("SLURM_STEP_ID", "1", 1);
    launch_from_env(&info);
    CHECK(info.run_id != step0, "another step is another run");
    setenv("SLURM_STEP_NODELIST", "gpu-[3-4]", 1);   // the step's nodes come first
    setenv("MASTER_PORT", "40000", 1);
    launch_from_env(&info);
    CHECK(strcmp(info.master_addr, "gpu-3") == 0 && info.master_port == 40000, "master %s:%d, want gpu-3:40000",
          info.master_addr, info.master_port);
    setenv("MASTER_ADDR", "10.1.2.3", 1);
    launch_from_env(&info);
    CHECK(strcmp(info.master_addr, "10.1.2.3") == 0, "MASTER_ADDR overrides the node list: %s", info.master_addr);
    set_env(NULL);
    TEST_END();
}

static void test_nodelists(void) {
    TEST_BEGIN("Slurm host lists: the first host of the compressed forms, and malformed lists refused");
    static const struct { const char *list, *first; } good[] = {
        {"node01", "node01"}, {"a,b", "a"}, {"node[01-02,05]", "node01"}, {"gpu-[3-4]", "gpu-3"},
        {"n[5]", "n5"}, {"rack[1-2]-n[07-08]", "rack1-n07"}, {"x[1-2],y[3-4]", "x1"},
        {"h-01.cluster.org,h-02", "h-01.cluster.org"}, {"node[001-128]", "node001"}, {"[3-4]", "3"},
        {"node[09,10-12]-ib", "node09-ib"}, {"a_b[0-1]", "a_b0"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char host[64];
        const char *err = launch_nodelist_first(good[i].list, host, sizeof host);
        CHECK(err == NULL && strcmp(host, good[i].first) == 0, "'%s': got '%s' (%s), want '%s'", good[i].list,
              err ? "" : host, err ? err : "ok", good[i].first);
    }
    static const struct { const char *list, *why; } bad[] = {
        {"", "empty host list"}, {"node[01-", "unbalanced '['"}, {"node[01", "unbalanced '['"},
        {"node]", "']' without '['"}, {"node[]", "empty brackets"}, {"node[a-b]", "expected a number"},
        {"node[5-3]", "descending range"}, {"a,,b", "empty host name"}, {",a", "empty host name"},
        {"a,", "empty host name"}, {"no de", "unexpected character"}, {"n[[1]]", "expected a number"},
        {"n[1-]", "after '-'"}, {"n[1;2]", "unexpected character in brackets"}, {"n[1[2]]", "nested '['"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64];
        const char *err = launch_nodelist_first(bad[i].list, host, sizeof host);
        CHECK(err != NULL && strstr(err, bad[i].why) != NULL, "'%s': got %s, want an error with '%s'", bad[i].list,
              err ? err : "no error", bad[i].why);
    }
    char tiny[4];
    CHECK(launch_nodelist_first("node[01-02]", tiny, sizeof tiny) != NULL, "a host longer than the buffer is refused");
    TEST_END();
}

static void test_env_errors(void) {
    TEST_BEGIN("env: malformed or inconsistent values are one error line naming the variable");
    static const struct { const char *env[8]; const char *want; } cases[] = {
        {{"RANK=abc", "WORLD_SIZE=2", NULL}, "RANK='abc' is not a non-negative integer"},
        {{"RANK=-1", "WORLD_SIZE=2", NULL}, "RANK='-1' is not a non-negative integer"},
        {{"RANK= 1", "WORLD_SIZE=2", NULL}, "RANK=' 1' is not a non-negative integer"},
        {{"RANK=4", "WORLD_SIZE=4", "LOCAL_RANK=0", NULL}, "RANK=4 is not below WORLD_SIZE=4"},
        {{"RANK=0", "WORLD_SIZE=0", NULL}, "WORLD_SIZE=0 is out of range"},
        {{"RANK=0", "WORLD_SIZE=99999999999999999999", NULL}, "WORLD_SIZE=99999999999999999999 is out of range"},
        {{"RANK=1", NULL}, "RANK=1 is set but WORLD_SIZE is not"},
        {{"WORLD_SIZE=2", NULL}, "WORLD_SIZE=2 is set but RANK is not"},
        {{"RANK=1", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=1234", NULL}, "LOCAL_RANK is not set"},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=2", "MASTER_ADDR=h", "MASTER_PORT=1", NULL}, "LOCAL_RANK=2 is not below WORLD_SIZE=2"},
        {{"RANK=1", "WORLD_SIZE=4", "LOCAL_RANK=2", "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=1", NULL},
         "LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2"},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_PORT=1234", NULL}, "MASTER_ADDR is not set"},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=127.0.0.1", NULL}, "MASTER_PORT is not set"},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=70000", NULL},
         "MASTER_PORT=70000 is out of range (1..65535)"},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=12ab", NULL},
         "MASTER_PORT='12ab' is not a non-negative integer"},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=bad host!", "MASTER_PORT=1234", NULL},
         "MASTER_ADDR='bad host!' is not a host name or address"},
        {{"SLURM_PROCID=5", "SLURM_NTASKS=4", "SLURM_LOCALID=1", "SLURM_STEP_ID=0", NULL}, "SLURM_PROCID=5 is not below SLURM_NTASKS=4"},
        {{"SLURM_PROCID=1", "SLURM_LOCALID=1", NULL}, "SLURM_PROCID=1 is set but SLURM_NTASKS is not"},
        {{"SLURM_PROCID=1", "SLURM_NTASKS=4", NULL}, "SLURM_PROCID=1 is set but SLURM_LOCALID is not"},
        {{"SLURM_PROCID=1", "SLURM_NTASKS=4", "SLURM_LOCALID=x", NULL}, "SLURM_LOCALID='x' is not a non-negative integer"},
        {{"SLURM_PROCID=0", "SLURM_NTASKS=16", "SLURM_LOCALID=0", "SLURM_JOB_NODELIST=n[1-2]", NULL},
         "SLURM_NTASKS=16 but SLURM_STEP_ID is not set: this is the batch script, not a task; start each rank with srun"},
        {{"SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "SLURM_STEP_ID=0", "SLURM_JOB_NODELIST=node[01-", NULL},
         "SLURM_JOB_NODELIST='node[01-': unbalanced '['"},
        {{"SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "SLURM_STEP_ID=0", NULL},
         "SLURM_NTASKS=2 but neither MASTER_ADDR nor SLURM_JOB_NODELIST is set"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Child c = spawn(child_from_env, NULL, cases[i].env);
        finish(&c, 10);
        CHECK_ONE_ERROR(c, cases[i].want);
    }
    TEST_END();
}

// ----------------------------------------------------------------------------
// 2. the bootstrap and the channel, with real processes on 127.0.0.1

#define ID_BYTES 128   // sizeof(ncclUniqueId)

typedef enum {
    RANK_NORMAL,          // share, 3 barriers, watchdog, a barrier, a peer check, finish
    RANK_SHARE_ONLY,      // share the id, then return without finishing
    RANK_EXIT_AFTER_BARRIER,   // share, one barrier, then exit abruptly (status 7)
    RANK_WATCH_AND_WAIT,  // share, one barrier, watchdog, then sleep: a dying peer must end it
    RANK_POLL_AND_WAIT,   // share, one barrier, then poll launch_check_peers()
    RANK_TWO_BARRIERS,    // share, two barriers with a 5 s timeout, finish
    RANK_SLEEP_NO_BARRIER,// share, then sleep 3 s instead of the barrier
    RANK_BARRIER_1S,      // share, one barrier with a 1 s timeout
} RankMode;

typedef struct {
    RankMode mode;
    double timeout_s;
} RankArgs;

static void fill_id(unsigned char *id) {
    for (int i = 0; i < ID_BYTES; i++) id[i] = (unsigned char)(i * 7 + 3);
}

static int rank_main(void *arg) {
    const RankArgs *a = (const RankArgs *)arg;
    LaunchInfo info;
    launch_from_env(&info);
    unsigned char id[ID_BYTES], want[ID_BYTES];
    fill_id(want);
    memset(id, 0, sizeof id);
    if (info.rank == 0) fill_id(id);
    launch_share_id(&info, id, sizeof id, a->timeout_s);
    if (memcmp(id, want, sizeof id) != 0) { fprintf(stderr, "rank %d: wrong id\n", info.rank); return 2; }
    switch (a->mode) {
    case RANK_SHARE_ONLY: return 0;
    case RANK_NORMAL:
        for (int i = 0; i < 3; i++) launch_barrier(&info, 5);
        launch_watchdog_start(&info);
        launch_barrier(&info, 5);
        launch_check_peers(&info);
        launch_finish(&info, 5);
        return 0;
    case RANK_EXIT_AFTER_BARRIER:
        launch_barrier(&info, 5);
        _exit(7);
    case RANK_WATCH_AND_WAIT:
        launch_barrier(&info, 5);
        launch_watchdog_start(&info);
        sleep(5);
        fprintf(stderr, "rank %d: nobody noticed the dead peer\n", info.rank);
        return 3;
    case RANK_POLL_AND_WAIT:
        launch_barrier(&info, 5);
        for (int i = 0; i < 500; i++) { launch_check_peers(&info); usleep(10000); }
        fprintf(stderr, "rank %d: launch_check_peers never noticed the dead peer\n", info.rank);
        return 3;
    case RANK_TWO_BARRIERS:
        launch_barrier(&info, 5);
        launch_barrier(&info, 5);
        launch_finish(&info, 5);
        return 0;
    case RANK_SLEEP_NO_BARRIER: sleep(3); return 0;
    case RANK_BARRIER_1S: launch_barrier(&info, 1); return 0;
    }
    return 4;
}

// The environment of rank r of W on 127.0.0.1:port (strings in *store).
typedef struct { char s[8][64]; const char *env[9]; } EnvStore;
static const char *const *rank_env(EnvStore *st, int r, int W, int port, const char *run) {
    snprintf(st->s[0], 64, "RANK=%d", r);
    snprintf(st->s[1], 64, "WORLD_SIZE=%d", W);
    snprintf(st->s[2], 64, "LOCAL_RANK=%d", r);
    snprintf(st->s[3], 64, "MASTER_ADDR=127.0.0.1");
    snprintf(st->s[4], 64, "MASTER_PORT=%d", port);
    snprintf(st->s[5], 64, "S1C_RUN_ID=%s", run);
    for (int i = 0; i < 6; i++) st->env[i] = st->s[i];
    st->env[6] = NULL;
    return st->env;
}

#define MAXW 4

// Starts ranks [0, W) of a W-rank run (those with skip[r] set are not started), each in mode[r].
static void start_ranks(Child *c, int W, int port, const RankArgs *args, const int *skip) {
    for (int r = 0; r < W; r++) {
        if (skip && skip[r]) { c[r].pid = 0; continue; }
        EnvStore st;
        c[r] = spawn(rank_main, (void *)&args[r], rank_env(&st, r, W, port, "test"));
    }
}

static void test_bootstrap_worlds(void) {
    TEST_BEGIN("bootstrap on 127.0.0.1 with 1, 2 and 4 processes: every rank gets rank 0's id, barriers, finish");
    LaunchInfo one;
    set_env(NULL);
    launch_from_env(&one);
    unsigned char id[ID_BYTES];
    memset(id, 0x5a, sizeof id);
    launch_share_id(&one, id, sizeof id, 1);   // one rank: nothing to share, no socket
    launch_barrier(&one, 1);
    launch_check_peers(&one);
    launch_finish(&one, 1);
    CHECK(id[0] == 0x5a && id[ID_BYTES - 1] == 0x5a, "one rank: the id is left alone");
    for (int W = 2; W <= 4; W += 2) {
        Child c[MAXW];
        RankArgs args[MAXW];
        for (int r = 0; r < W; r++) args[r] = (RankArgs){RANK_NORMAL, 5};
        double t0 = launch_now();
        start_ranks(c, W, launch_free_port(), args, NULL);
        for (int r = 0; r < W; r++) { finish(&c[r], 20); CHECK_OK(c[r]); }
        printf("note: bootstrap + 5 barriers + finish with %d processes: %.3f s\n", W, launch_now() - t0);
    }
    TEST_END();
}

static void test_missing_rank(void) {
    TEST_BEGIN("a rank that never comes: rank 0 names it after the timeout, the others see rank 0 give up");
    Child c[3];
    RankArgs args[3] = {{RANK_SHARE_ONLY, 1}, {RANK_SHARE_ONLY, 1}, {RANK_SHARE_ONLY, 1}};
    int skip[3] = {0, 0, 1};
    int port = launch_free_port();
    start_ranks(c, 3, port, args, skip);
    finish(&c[0], 10);
    finish(&c[1], 10);
    CHECK_ONE_ERROR(c[0], "rank 0: 1 of 2 ranks did not connect within 1 s (missing: rank 2; MASTER_ADDR=127.0.0.1");
    char want[128];
    snprintf(want, sizeof want, "rank 1: rank 0 at 127.0.0.1:%d closed the connection before sending the id", port);
    CHECK_ONE_ERROR(c[1], want);
    CHECK(c[0].seconds < 4 && c[1].seconds < 4, "took %.1f s and %.1f s", c[0].seconds, c[1].seconds);
    TEST_END();
}

static void test_unreachable_master(void) {
    TEST_BEGIN("an unreachable master (a closed loopback port): connection refused within the timeout");
    int port = launch_free_port();   // nothing listens there
    RankArgs a = {RANK_SHARE_ONLY, 1};
    EnvStore st;
    Child c = spawn(rank_main, &a, rank_env(&st, 1, 2, port, "test"));
    finish(&c, 10);
    char want[160];
    snprintf(want, sizeof want, "rank 1: cannot connect to rank 0 at MASTER_ADDR=127.0.0.1 MASTER_PORT=%d within 1 s: "
             "Connection refused", port);
    CHECK_ONE_ERROR(c, want);
    CHECK(c.seconds >= 0.9 && c.seconds < 4, "gave up after %.2f s, want about 1 s", c.seconds);
    TEST_END();
}

static void test_wrong_handshakes(void) {
    TEST_BEGIN("handshake: a rank of another run is refused and the run goes on; world size and rank clashes fail both sides");
    int port = launch_free_port();
    RankArgs a = {RANK_SHARE_ONLY, 5};
    EnvStore s0, s1, s2;
    Child rank0 = spawn(rank_main, &a, rank_env(&s0, 0, 2, port, "runA"));
    Child intruder = spawn(rank_main, &a, rank_env(&s1, 1, 2, port, "runB"));
    finish(&intruder, 10);
    char want[160];
    snprintf(want, sizeof want, "rank 1: rank 0 at 127.0.0.1:%d belongs to another run", port);
    CHECK_ONE_ERROR(intruder, want);
    Child rank1 = spawn(rank_main, &a, rank_env(&s2, 1, 2, port, "runA"));
    finish(&rank1, 10);
    finish(&rank0, 10);
    CHECK_OK(rank1);
    CHECK(exited_with(&rank0, 0), "rank 0 goes on after refusing the intruder: status 0x%x, %s", rank0.status, rank0.err);
    CHECK(strstr(rank0.err, "warning: rank 0: refused rank 1 of another run") != NULL && count_lines(rank0.err) == 1,
          "rank 0 warns once: %s", rank0.err);

    // the same run with another world size: a broken launch, both sides stop
    port = launch_free_port();
    rank0 = spawn(rank_main, &a, rank_env(&s0, 0, 2, port, "runA"));
    rank1 = spawn(rank_main, &a, rank_env(&s1, 1, 3, port, "runA"));
    finish(&rank0, 10);
    finish(&rank1, 10);
    CHECK_ONE_ERROR(rank0, "has world size 3, rank 0 has 2");
    snprintf(want, sizeof want, "rank 1: world size 3, but rank 0 at 127.0.0.1:%d has 2", port);
    CHECK_ONE_ERROR(rank1, want);

    // two processes claim rank 1 of 3
    port = launch_free_port();
    rank0 = spawn(rank_main, &a, rank_env(&s0, 0, 3, port, "runA"));
    rank1 = spawn(rank_main, &a, rank_env(&s1, 1, 3, port, "runA"));
    usleep(300 * 1000);   // let the first claimant arrive first
    Child twin = spawn(rank_main, &a, rank_env(&s2, 1, 3, port, "runA"));
    finish(&rank0, 10);
    finish(&rank1, 10);
    finish(&twin, 10);
    CHECK_ONE_ERROR(rank0, "rank 0: two processes claim rank 1");
    snprintf(want, sizeof want, "rank 1: rank 0 at 127.0.0.1:%d already has a rank 1", port);
    CHECK_ONE_ERROR(twin, want);
    CHECK_ONE_ERROR(rank1, "closed the connection before sending the id");
    TEST_END();
}

// A stranger on MASTER_PORT: accepts one connection and answers with bytes that are no handshake.
static int child_stranger(void *arg) {
    int port = *(const int *)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0)
        return 5;
    int c = accept(fd, NULL, NULL);
    if (c < 0) return 6;
    char junk[64];
    memset(junk, 'x', sizeof junk);
    if (send(c, junk, sizeof junk, MSG_NOSIGNAL) != (ssize_t)sizeof junk) return 7;
    usleep(500 * 1000);
    close(c);
    close(fd);
    return 0;
}

static void test_stranger_on_port(void) {
    TEST_BEGIN("handshake: another program on MASTER_PORT is named as such");
    int port = launch_free_port();
    Child server = spawn(child_stranger, &port, NULL);
    usleep(200 * 1000);
    RankArgs a = {RANK_SHARE_ONLY, 3};
    EnvStore st;
    Child c = spawn(rank_main, &a, rank_env(&st, 1, 2, port, "test"));
    finish(&c, 10);
    finish(&server, 10);
    char want[160];
    snprintf(want, sizeof want, "rank 1: 127.0.0.1:%d did not answer with the s1c launch handshake", port);
    CHECK_ONE_ERROR(c, want);
    CHECK_OK(server);
    TEST_END();
}

static void test_dying_peer(void) {
    TEST_BEGIN("a rank that dies mid-run: the watchdog (or launch_check_peers, or a barrier) ends the others with the reason");
    char host[64];
    launch_gethostname(host, sizeof host);
    char want0[160], want1[200];

    // watchdog threads: rank 2 dies while 0 and 1 sleep (as inside a collective)
    Child c[3];
    RankArgs watch[3] = {{RANK_WATCH_AND_WAIT, 5}, {RANK_WATCH_AND_WAIT, 5}, {RANK_EXIT_AFTER_BARRIER, 5}};
    start_ranks(c, 3, launch_free_port(), watch, NULL);
    for (int r = 0; r < 3; r++) finish(&c[r], 15);
    snprintf(want0, sizeof want0, "rank 0: rank 2 (host %s) closed its connection (it exited or was killed)", host);
    snprintf(want1, sizeof want1, "rank 1: rank 0 stopped the run: rank 2 (host %s) closed its connection (it exited or "
             "was killed)", host);
    CHECK_ONE_ERROR(c[0], want0);
    CHECK_ONE_ERROR(c[1], want1);
    CHECK(exited_with(&c[2], 7), "rank 2 exits 7: 0x%x", c[2].status);
    CHECK(c[0].seconds < 3 && c[1].seconds < 3, "noticed after %.2f s and %.2f s", c[0].seconds, c[1].seconds);
    printf("note: dead peer noticed by the watchdogs after %.2f s (rank 0) and %.2f s (rank 1), from the start\n",
           c[0].seconds, c[1].seconds);

    // rank 0 dies: rank 1's watchdog names rank 0
    int port = launch_free_port();
    RankArgs dead0[2] = {{RANK_EXIT_AFTER_BARRIER, 5}, {RANK_WATCH_AND_WAIT, 5}};
    start_ranks(c, 2, port, dead0, NULL);
    for (int r = 0; r < 2; r++) finish(&c[r], 15);
    snprintf(want1, sizeof want1, "rank 1: lost the connection to rank 0 at 127.0.0.1:%d (rank 0 exited or was killed", port);
    CHECK_ONE_ERROR(c[1], want1);

    // no thread: polling launch_check_peers()
    RankArgs poll2[2] = {{RANK_POLL_AND_WAIT, 5}, {RANK_EXIT_AFTER_BARRIER, 5}};
    start_ranks(c, 2, launch_free_port(), poll2, NULL);
    for (int r = 0; r < 2; r++) finish(&c[r], 15);
    snprintf(want0, sizeof want0, "rank 0: rank 1 (host %s) closed its connection (it exited or was killed)", host);
    CHECK_ONE_ERROR(c[0], want0);

    // rank 2 dies instead of the second barrier
    RankArgs bar[3] = {{RANK_TWO_BARRIERS, 5}, {RANK_TWO_BARRIERS, 5}, {RANK_EXIT_AFTER_BARRIER, 5}};
    start_ranks(c, 3, launch_free_port(), bar, NULL);
    for (int r = 0; r < 3; r++) finish(&c[r], 15);
    snprintf(want0, sizeof want0, "rank 0: rank 2 (host %s) closed its connection during barrier 2", host);
    snprintf(want1, sizeof want1, "rank 1: rank 0 stopped the run: rank 2 (host %s) closed its connection during barrier 2",
             host);
    CHECK_ONE_ERROR(c[0], want0);
    CHECK_ONE_ERROR(c[1], want1);
    TEST_END();
}

static void test_barrier_timeout(void) {
    TEST_BEGIN("a barrier that a live rank does not reach: rank 0 names it after the timeout");
    Child c[2];
    RankArgs args[2] = {{RANK_BARRIER_1S, 5}, {RANK_SLEEP_NO_BARRIER, 5}};
    start_ranks(c, 2, launch_free_port(), args, NULL);
    finish(&c[0], 10);
    finish(&c[1], 10);
    CHECK_ONE_ERROR(c[0], "rank 0: barrier 1: rank 1 did not arrive within 1 s");
    CHECK(c[0].seconds < 3, "took %.2f s", c[0].seconds);
    TEST_END();
}

// ----------------------------------------------------------------------------
// 4. launch_fork_local

typedef enum { LOCAL_ALL_OK, LOCAL_RANK1_FAILS, LOCAL_RANK2_KILLED, LOCAL_RANK0_IGNORES_TERM, LOCAL_SLEEP } LocalMode;

// The parent side: forks 3 ranks and returns what launch_fork_local returns; the ranks do `mode`.
static int child_fork_local(void *arg) {
    LocalMode mode = *(const LocalMode *)arg;
    LaunchInfo info;
    int rc = launch_fork_local(3, 0.5, &info);
    if (rc != LAUNCH_CHILD) return rc;
    // a rank: its environment must say where it is
    char port[16];
    snprintf(port, sizeof port, "%d", info.master_port);
    if (info.world_size != 3 || info.local_rank != info.rank || info.local_world_size != 3 ||
        strcmp(info.master_addr, "127.0.0.1") != 0 || strcmp(getenv("MASTER_PORT"), port) != 0 ||
        strcmp(info.source, "torchrun") != 0) {
        fprintf(stderr, "rank %d: wrong environment\n", info.rank);
        _exit(9);
    }
    if (mode == LOCAL_ALL_OK) {
        RankArgs a = {RANK_NORMAL, 5};
        _exit(rank_main(&a));   // rank_main reads the same environment
    }
    if (mode == LOCAL_RANK1_FAILS && info.rank == 1) { usleep(100 * 1000); _exit(3); }
    if (mode == LOCAL_RANK2_KILLED && info.rank == 2) { usleep(100 * 1000); raise(SIGKILL); }
    if (mode == LOCAL_RANK0_IGNORES_TERM && info.rank == 0) signal(SIGTERM, SIG_IGN);
    if (mode == LOCAL_RANK0_IGNORES_TERM && info.rank == 1) { usleep(100 * 1000); _exit(3); }
    sleep(20);   // the others "train" until stopped
    _exit(0);
}

static void test_fork_local(void) {
    TEST_BEGIN("launch_fork_local: 3 ranks meet; one failing rank stops the rest and is named; an interrupt stops all");
    LocalMode m = LOCAL_ALL_OK;
    Child c = spawn(child_fork_local, &m, NULL);
    finish(&c, 20);
    CHECK(exited_with(&c, 0) && c.err[0] == '\0', "all ranks fine: status 0x%x, stderr %s", c.status, c.err);

    m = LOCAL_RANK1_FAILS;
    c = spawn(child_fork_local, &m, NULL);
    finish(&c, 20);
    CHECK_ONE_ERROR(c, "rank 1 of 3 (pid ");
    CHECK(strstr(c.err, ") exited with status 3; stopped the other 2 ranks\n") != NULL, "message: %s", c.err);
    CHECK(c.seconds < 3, "the others were stopped after %.2f s", c.seconds);

    m = LOCAL_RANK2_KILLED;
    c = spawn(child_fork_local, &m, NULL);
    finish(&c, 20);
    CHECK_ONE_ERROR(c, ") was killed by signal 9 (Killed); stopped the other 2 ranks");
    CHECK(strstr(c.err, "rank 2 of 3 (pid ") != NULL, "names rank 2: %s", c.err);

    m = LOCAL_RANK0_IGNORES_TERM;
    c = spawn(child_fork_local, &m, NULL);
    finish(&c, 20);
    CHECK_ONE_ERROR(c, "exited with status 3; stopped the other 2 ranks (some only by SIGKILL, after the grace period)");
    CHECK(c.seconds >= 0.5 && c.seconds < 3, "SIGKILL after the 0.5 s grace: %.2f s", c.seconds);

    m = LOCAL_SLEEP;
    c = spawn(child_fork_local, &m, NULL);
    usleep(300 * 1000);
    kill(c.pid, SIGTERM);
    finish(&c, 20);
    CHECK(exited_with(&c, 128 + SIGTERM), "interrupted: status 0x%x", c.status);
    CHECK(count_lines(c.err) == 1 && strstr(c.err, "error: interrupted by signal 15 (Terminated); stopped the 3 ranks") != NULL,
          "message: %s", c.err);
    CHECK(c.seconds < 3, "stopped after %.2f s", c.seconds);

    const char *nested[] = {"RANK=0", "WORLD_SIZE=2", NULL};
    m = LOCAL_ALL_OK;
    c = spawn(child_fork_local, &m, nested);
    finish(&c, 10);
    CHECK_ONE_ERROR(c, "--nproc 3: this process is already rank 0 of WORLD_SIZE=2");
    TEST_END();
}

int main(void) {
    double t0 = launch_now();
    test_env_defaults_and_torchrun();
    test_env_slurm();
    test_nodelists();
    test_env_errors();
    test_bootstrap_worlds();
    test_missing_rank();
    test_unreachable_master();
    test_wrong_handshakes();
    test_stranger_on_port();
    test_dying_peer();
    test_barrier_timeout();
    test_fork_local();
    printf("note: test_launch took %.1f s\n", launch_now() - t0);
    return test_summary();
}
