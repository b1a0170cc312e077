/*
 * util.h: checked wrappers for calls that can fail, and small helpers shared by
 * every program of s1.c (tokenizer.c, data.c, s1.c, the CUDA host code).
 *
 * Every wrapper reports the caller's file:line and exits non-zero, in the
 * style of llm.c: a failed fopen or malloc is never silently ignored.
 * Header-only (static functions) so each program stays a single file plus
 * these headers.
 */
#ifndef S1C_UTIL_H
#define S1C_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// fatal errors: one line on stderr, non-zero exit

static inline void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

// ----------------------------------------------------------------------------
// checked libc calls; the macros pass the call site so the report names it

static inline FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *fp = fopen(path, mode);
    if (fp == NULL) {
        fprintf(stderr, "error: %s: cannot open (mode %s): %s [%s:%d]\n", path, mode, strerror(errno), file, line);
        exit(1);
    }
    return fp;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

static inline void fread_check(void *ptr, size_t size, size_t nmemb, FILE *fp, const char *what, const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, fp);
    if (got != nmemb) {
        fprintf(stderr, "error: %s: %s (wanted %zu items, got %zu) [%s:%d]\n", what,
                feof(fp) ? "unexpected end of file" : "read error", nmemb, got, file, line);
        exit(1);
    }
}
#define freadCheck(ptr, size, nmemb, fp, what) fread_check(ptr, size, nmemb, fp, what, __FILE__, __LINE__)

static inline void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *fp, const char *what, const char *file, int line) {
    if (fwrite(ptr, size, nmemb, fp) != nmemb) {
        fprintf(stderr, "error: %s: write failed: %s [%s:%d]\n", what, strerror(errno), file, line);
        exit(1);
    }
}
#define fwriteCheck(ptr, size, nmemb, fp, what) fwrite_check(ptr, size, nmemb, fp, what, __FILE__, __LINE__)

static inline void fclose_check(FILE *fp, const char *what, const char *file, int line) {
    if (fclose(fp) != 0) {
        fprintf(stderr, "error: %s: close failed: %s [%s:%d]\n", what, strerror(errno), file, line);
        exit(1);
    }
}
#define fcloseCheck(fp, what) fclose_check(fp, what, __FILE__, __LINE__)

static inline void *malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "error: out of memory allocating %zu bytes [%s:%d]\n", size, file, line);
        exit(1);
    }
    return p;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static inline void *calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "error: out of memory allocating %zu x %zu bytes [%s:%d]\n", n, size, file, line);
        exit(1);
    }
    return p;
}
#define callocCheck(n, size) calloc_check(n, size, __FILE__, __LINE__)

static inline void *realloc_check(void *ptr, size_t size, const char *file, int line) {
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "error: out of memory reallocating %zu bytes [%s:%d]\n", size, file, line);
        exit(1);
    }
    return p;
}
#define reallocCheck(ptr, size) realloc_check(ptr, size, __FILE__, __LINE__)

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
// A killed run leaves either the old file or the new one, never half of one.

typedef struct {
    FILE *fp;
    char *path;
    char *tmp_path;
} AtomicFile;

static inline AtomicFile atomic_open(const char *path) {
    AtomicFile af;
    size_t n = strlen(path) + 32;
    af.path = strdup(path);
    af.tmp_path = (char *)mallocCheck(n);
    snprintf(af.tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af.fp = fopenCheck(af.tmp_path, "wb");
    return af;
}

static inline void atomic_commit(AtomicFile *af) {
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0) die("%s: write failed: %s", af->tmp_path, strerror(errno));
    fcloseCheck(af->fp, af->tmp_path);
    if (rename(af->tmp_path, af->path) != 0) die("%s: cannot rename to %s: %s", af->tmp_path, af->path, strerror(errno));
    free(af->path);
    free(af->tmp_path);
    af->fp = NULL;
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
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || (!allow_zero && x == 0))
        die("%s: '%s' is not a %s integer", flag, v, allow_zero ? "non-negative" : "positive");
    return (size_t)x;
}

// A finite non-negative number.
static inline double flag_number(int argc, char **argv, int *i) {
    const char *flag = argv[*i], *v = flag_value(argc, argv, i);
    char *end;
    double x = strtod(v, &end);
    if (*end != '\0' || end == v || !isfinite(x) || x < 0) die("%s: '%s' is not a non-negative number", flag, v);
    return x;
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
