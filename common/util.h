/*
 * util.h: checked wrappers for calls that can fail, and small helpers shared by
 * every program of s1.c (tokenizer.c, data.c, s1.c, the CUDA host code).
 *
 * Every wrapper reports the caller's file:line and exits non-zero, in the
 * style of llm.c: a failed fopen or malloc is never silently ignored.
 * Header-only (static functions) so each program stays a single file plus
 * these headers.
 *
 * Fatal errors are one line on stderr: die() escapes any control character a
 * message picks up from its input (a tensor name with a newline in it), and
 * every exit path removes the temporary files the process was writing
 * (atomic_open(), the checkpoint folders of common/qwen2_weights.h), so a run
 * that fails leaves the old output or nothing, never half a file. Built with
 * -DS1C_FUZZ (tests/fuzz/), die() calls the harness's s1c_fuzz_fatal()
 * instead of exit(), which jumps back to the next input.
 */
#ifndef S1C_UTIL_H
#define S1C_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// temporary outputs: registered while being written, removed by any exit
// before they are committed (die(), a failed check, exit()). A kill -9 cannot
// run this; remove_stale_temporaries() cleans up after such a run instead.

#define S1C_MAX_TEMPORARIES 16

typedef struct {
    char *paths[S1C_MAX_TEMPORARIES];
    int is_dir[S1C_MAX_TEMPORARIES];
    int handler_installed;
} TemporaryRegistry;

static inline TemporaryRegistry *temporary_registry(void) {
    static TemporaryRegistry r;
    return &r;
}

// Removes a folder this process wrote: its files (and links), then the folder.
// Subfolders are left alone (we never write any): the caller decides about them.
static inline void remove_temporary_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        struct stat st;
        if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode)) unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static inline void remove_registered_temporaries(void) {
    TemporaryRegistry *r = temporary_registry();
    for (int i = 0; i < S1C_MAX_TEMPORARIES; i++) {
        if (r->paths[i] == NULL) continue;
        if (r->is_dir[i]) remove_temporary_dir(r->paths[i]);
        else unlink(r->paths[i]);
        free(r->paths[i]);
        r->paths[i] = NULL;
    }
}

static inline void temporary_register(const char *path, int is_dir);   // below die()
static inline void temporary_unregister(const char *path) {
    TemporaryRegistry *r = temporary_registry();
    for (int i = 0; i < S1C_MAX_TEMPORARIES; i++)
        if (r->paths[i] != NULL && strcmp(r->paths[i], path) == 0) { free(r->paths[i]); r->paths[i] = NULL; }
}

// ----------------------------------------------------------------------------
// fatal errors: one line on stderr, non-zero exit

#ifdef S1C_FUZZ
#ifdef __cplusplus
extern "C"
#endif
void s1c_fuzz_fatal(void) __attribute__((noreturn));   // defined by the fuzz harness: a longjmp
#endif

// The end of every fatal path.
static inline void fatal_exit(void) __attribute__((noreturn));
static inline void fatal_exit(void) {
#ifdef S1C_FUZZ
    s1c_fuzz_fatal();
#else
    remove_registered_temporaries();
    exit(1);
#endif
}

// Prints "error: <message>" as one line: control characters (a newline in a
// tensor name quoted from a file) are shown as \xNN, so input quoted in a
// message cannot break the line.
static inline void print_error_line(const char *msg) {
#ifdef S1C_FUZZ
    (void)msg;   // the harness runs millions of rejected inputs: stay quiet
#else
    char out[2048];
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p && k + 5 < sizeof out; p++) {
        if (*p < 0x20 || *p == 0x7f) k += (size_t)snprintf(out + k, sizeof out - k, "\\x%02x", *p);
        else out[k++] = (char)*p;
    }
    out[k] = '\0';
    fprintf(stderr, "error: %s\n", out);
    fflush(stderr);
#endif
}

static inline void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void die(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error_line(msg);
    fatal_exit();
}

static inline void temporary_register(const char *path, int is_dir) {
    TemporaryRegistry *r = temporary_registry();
    if (!r->handler_installed) {
        if (atexit(remove_registered_temporaries) != 0) die("atexit failed");
        r->handler_installed = 1;
    }
    for (int i = 0; i < S1C_MAX_TEMPORARIES; i++)
        if (r->paths[i] == NULL) {
            r->paths[i] = strdup(path);
            if (r->paths[i] == NULL) die("out of memory");
            r->is_dir[i] = is_dir;
            return;
        }
    die("internal error: more than %d temporary outputs open at once", S1C_MAX_TEMPORARIES);
}

// ----------------------------------------------------------------------------
// checked libc calls; the macros pass the call site so the report names it

static inline FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *fp = fopen(path, mode);
    if (fp == NULL) die("%s: cannot open (mode %s): %s [%s:%d]", path, mode, strerror(errno), file, line);
    return fp;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

static inline void fread_check(void *ptr, size_t size, size_t nmemb, FILE *fp, const char *what, const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, fp);
    if (got != nmemb)
        die("%s: %s (wanted %zu items, got %zu) [%s:%d]", what, feof(fp) ? "unexpected end of file" : "read error", nmemb, got,
            file, line);
}
#define freadCheck(ptr, size, nmemb, fp, what) fread_check(ptr, size, nmemb, fp, what, __FILE__, __LINE__)

static inline void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *fp, const char *what, const char *file, int line) {
    if (fwrite(ptr, size, nmemb, fp) != nmemb) die("%s: write failed: %s [%s:%d]", what, strerror(errno), file, line);
}
#define fwriteCheck(ptr, size, nmemb, fp, what) fwrite_check(ptr, size, nmemb, fp, what, __FILE__, __LINE__)

static inline void fclose_check(FILE *fp, const char *what, const char *file, int line) {
    if (fclose(fp) != 0) die("%s: close failed: %s [%s:%d]", what, strerror(errno), file, line);
}
#define fcloseCheck(fp, what) fclose_check(fp, what, __FILE__, __LINE__)

static inline void *malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (p == NULL) die("out of memory allocating %zu bytes [%s:%d]", size, file, line);
    return p;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static inline void *calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) die("out of memory allocating %zu x %zu bytes [%s:%d]", n, size, file, line);
    return p;
}
#define callocCheck(n, size) calloc_check(n, size, __FILE__, __LINE__)

static inline void *realloc_check(void *ptr, size_t size, const char *file, int line) {
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL) die("out of memory reallocating %zu bytes [%s:%d]", size, file, line);
    return p;
}
#define reallocCheck(ptr, size) realloc_check(ptr, size, __FILE__, __LINE__)

// a * b, or a one-line error naming what is being sized when the product does not fit a size_t
static inline size_t mul_check(size_t a, size_t b, const char *what) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) die("%s: size %zu x %zu overflows", what, a, b);
    return r;
}

// ----------------------------------------------------------------------------
// growable arrays of token ids and of bytes, used across the programs

typedef struct {
    uint32_t *data;
    size_t len, cap;
} IdList;

static inline void idlist_push(IdList *l, uint32_t id) {
    if (l->len == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->data = (uint32_t *)reallocCheck(l->data, l->cap * sizeof(uint32_t));
    }
    l->data[l->len++] = id;
}

static inline void idlist_free(IdList *l) { free(l->data); l->data = NULL; l->len = l->cap = 0; }

typedef struct {
    char *data;     // always NUL-terminated when len > 0 or after bytebuf_append
    size_t len, cap;
} ByteBuf;

static inline void bytebuf_append(ByteBuf *b, const void *bytes, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        b->data = (char *)reallocCheck(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static inline void bytebuf_puts(ByteBuf *b, const char *s) { bytebuf_append(b, s, strlen(s)); }

static inline void bytebuf_free(ByteBuf *b) { free(b->data); b->data = NULL; b->len = b->cap = 0; }

// ----------------------------------------------------------------------------
// whole-file reads

// Reads a whole file into a NUL-terminated buffer. Returns NULL (errno set) if
// it cannot be opened, so callers can phrase their own error.
static inline char *read_file_or_null(const char *path, size_t *len_out) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return NULL;
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) { fclose(fp); errno = EISDIR; return NULL; }
    size_t cap = 1 << 16, len = 0;
    char *buf = (char *)mallocCheck(cap);
    for (;;) {
        if (len + 1 >= cap) { cap *= 2; buf = (char *)reallocCheck(buf, cap); }
        size_t got = fread(buf + len, 1, cap - len - 1, fp);
        len += got;
        if (got == 0) break;
    }
    int failed = ferror(fp);
    fclose(fp);
    if (failed) { free(buf); errno = EIO; return NULL; }
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

static inline char *read_file_check(const char *path, size_t *len_out) {
    char *buf = read_file_or_null(path, len_out);
    if (buf == NULL) die("%s: cannot read: %s", path, strerror(errno));
    return buf;
}

// ----------------------------------------------------------------------------
// atomic writes: write to "<path>.tmp.<pid>", then rename over <path>.
// A killed run leaves either the old file or the new one, never half of one;
// its "<path>.tmp.<pid>" is removed by the next write of <path>.

// The folder part of a path ("." for a bare name) into buf.
static inline void path_dirname(const char *path, char *buf, size_t n) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) snprintf(buf, n, ".");
    else if (slash == path) snprintf(buf, n, "/");
    else snprintf(buf, n, "%.*s", (int)(slash - path), path);
}

static inline const char *path_basename(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

// out = "dir/name"; a path that does not fit is an error, never a silently cut one.
static inline void join_path(char *out, size_t n, const char *dir, const char *name) {
    int k = snprintf(out, n, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= n) die("%s/%s: path too long", dir, name);
}

// fsync a folder, so that a rename inside it survives a power loss.
static inline void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) die("%s: cannot open folder to sync it: %s", dir, strerror(errno));
    // some file systems cannot sync a folder (EINVAL): the rename is then as durable as they make it
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) die("%s: cannot sync folder: %s", dir, strerror(errno));
    close(fd);
}

// If name is "<base><infix><pid>" with a pid of a process that no longer
// runs, returns that pid, else 0.
static inline long stale_temporary_pid(const char *name, const char *base, const char *infix) {
    size_t nb = strlen(base), ni = strlen(infix);
    if (strncmp(name, base, nb) != 0 || strncmp(name + nb, infix, ni) != 0) return 0;
    const char *digits = name + nb + ni;
    char *end;
    errno = 0;
    long pid = strtol(digits, &end, 10);
    if (errno != 0 || end == digits || *end != '\0' || pid <= 0 || pid == (long)getpid()) return 0;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) return 0;   // alive (or not ours to judge)
    return pid;
}

// Removes "<path>.tmp.<pid>" files left by killed runs (their pid is gone).
static inline void remove_stale_temporaries(const char *path) {
    char dir[4096];
    path_dirname(path, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (d == NULL) return;   // the open of the output names the problem
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (stale_temporary_pid(e->d_name, path_basename(path), ".tmp.") == 0) continue;
        char stale[4400];
        join_path(stale, sizeof stale, dir, e->d_name);
        struct stat st;
        if (lstat(stale, &st) == 0 && S_ISREG(st.st_mode)) unlink(stale);
    }
    closedir(d);
}

typedef struct {
    FILE *fp;
    char *path;
    char *tmp_path;
} AtomicFile;

static inline AtomicFile atomic_open(const char *path) {
    AtomicFile af;
    size_t n = strlen(path) + 32;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) die("%s: is a folder, cannot write a file there", path);
    remove_stale_temporaries(path);
    af.path = strdup(path);
    af.tmp_path = (char *)mallocCheck(n);
    if (af.path == NULL) die("out of memory");
    snprintf(af.tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af.fp = fopen(af.tmp_path, "wb");
    if (af.fp == NULL) die("%s: cannot write: %s", path, strerror(errno));
    temporary_register(af.tmp_path, 0);
    return af;
}

// Flushes, syncs and closes the temporary file, renames it over the path and
// syncs the folder. Any failure (a full disk) is one error line, and the
// temporary file goes with the exit.
static inline void atomic_commit(AtomicFile *af) {
    if (fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0)
        die("%s: write failed: %s", af->path, strerror(errno ? errno : EIO));
    if (fclose(af->fp) != 0) { af->fp = NULL; die("%s: write failed: %s", af->path, strerror(errno)); }
    af->fp = NULL;
    if (rename(af->tmp_path, af->path) != 0) die("%s: cannot rename to %s: %s", af->tmp_path, af->path, strerror(errno));
    temporary_unregister(af->tmp_path);
    char dir[4096];
    path_dirname(af->path, dir, sizeof dir);
    fsync_dir(dir);
    free(af->path);
    free(af->tmp_path);
}

// ----------------------------------------------------------------------------
// command-line flags: `--flag value`, checked; a bad value is a one-line error
// naming the flag. Each takes the index of the flag and steps it over the value.

static inline int flag_is(const char *arg, const char *name) { return strcmp(arg, name) == 0; }

// The value after a flag; dies with the flag's name when it is missing.
static inline const char *flag_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) die("%s needs a value", argv[*i]);
    return argv[++*i];
}

// A count: a positive integer, or a non-negative one with allow_zero.
static inline size_t flag_count(int argc, char **argv, int *i, int allow_zero) {
    const char *flag = argv[*i], *v = flag_value(argc, argv, i);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] < '0' || v[0] > '9' || (!allow_zero && x == 0))
        die("%s: '%s' is not a %s integer", flag, v, allow_zero ? "non-negative" : "positive");
    return (size_t)x;
}

// A count with a documented upper bound (so that it fits what it sizes).
static inline size_t flag_count_max(int argc, char **argv, int *i, int allow_zero, size_t max) {
    const char *flag = argv[*i];
    size_t x = flag_count(argc, argv, i, allow_zero);
    if (x > max) die("%s: %zu is more than the maximum %zu", flag, x, max);
    return x;
}

// A finite non-negative number.
static inline double flag_number(int argc, char **argv, int *i) {
    const char *flag = argv[*i], *v = flag_value(argc, argv, i);
    char *end;
    double x = strtod(v, &end);
    if (*end != '\0' || end == v || !isfinite(x) || x < 0) die("%s: '%s' is not a non-negative number", flag, v);
    return x;
}

// A finite number in [0, max].
static inline double flag_number_max(int argc, char **argv, int *i, double max) {
    const char *flag = argv[*i];
    double x = flag_number(argc, argv, i);
    if (x > max) die("%s: %g is more than the maximum %g", flag, x, max);
    return x;
}

// --threads N: at most 4 threads per core of this machine (more only add
// scheduling overhead; OpenMP runtimes fail outright at some thousands). The
// thread count never changes a result (every sum runs in a fixed order).
static inline int flag_threads(int argc, char **argv, int *i) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t max = 4 * (size_t)(cores > 0 ? cores : 1);
    return (int)flag_count_max(argc, argv, i, 0, max);
}

// ----------------------------------------------------------------------------
// time

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Formats a duration as "1h02m", "3m05s" or "12.3s" into buf.
static inline const char *format_duration(double seconds, char *buf, size_t n) {
    if (seconds < 0) seconds = 0;
    if (seconds < 60) snprintf(buf, n, "%.1fs", seconds);
    else if (seconds < 3600) snprintf(buf, n, "%dm%02ds", (int)(seconds / 60), (int)seconds % 60);
    else snprintf(buf, n, "%dh%02dm", (int)(seconds / 3600), ((int)seconds % 3600) / 60);
    return buf;
}

// Progress of long work on stderr, "what: done/total, <elapsed> elapsed, ETA <t>"
// (t0: now_seconds() at the start). Nothing is drawn in the first second, so
// quick work prints only its final line. After that, on a terminal the line is
// redrawn in place at most ten times a second; in a log (CI) one line per tenth
// of the way, so logs stay short. The call with done == total always prints and
// ends the line (and resets the state for the next piece of work).
static inline void print_progress(const char *what, size_t done, size_t total, double t0) {
    static int tty = -1, printed = 0;
    static double last_draw = -1.0;
    static size_t last_tenth = SIZE_MAX;
    if (tty < 0) tty = isatty(fileno(stderr));
    int finished = done >= total;
    double now = now_seconds();
    size_t tenth = total ? done * 10 / total : 10;
    int quiet = !printed && now - t0 < 1.0;
    if (finished || (!quiet && (tty ? now - last_draw >= 0.1 : tenth != last_tenth))) {
        char el[32], eta[32];
        fprintf(stderr, "%s%s: %zu/%zu, %s elapsed, ETA %s%s", tty ? "\r" : "", what, done, total,
                format_duration(now - t0, el, sizeof el),
                format_duration(done ? (now - t0) / (double)done * (double)(total - done) : 0, eta, sizeof eta),
                !tty || finished ? "\n" : "   ");
        printed = 1;
        last_draw = now;
        last_tenth = tenth;
    }
    if (finished) { printed = 0; last_draw = -1.0; last_tenth = SIZE_MAX; }
}

#endif // S1C_UTIL_H
