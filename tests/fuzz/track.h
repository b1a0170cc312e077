/*
 * tests/fuzz/track.h: allocation and file tracking for the fuzz harnesses,
 * force-included (-include) before every source of a fuzz build.
 *
 * A rejected input ends in die(), which longjmps out of the loader (see
 * tests/fuzz/fuzz.h): whatever the loader had allocated or opened at that
 * moment would leak, and at thousands of inputs a second the process would
 * run out of memory or file descriptors within seconds. So while an input
 * runs (fuzz_track_on), every malloc/calloc/realloc/strdup/getline and fopen of the
 * code under test is recorded in a set; free() and fclose() remove their
 * pointer. After a die(), fuzz_track_release() frees and closes what is left.
 * After an input that finished normally the set is only forgotten, not freed,
 * so LeakSanitizer still reports a real leak of the success path.
 *
 * The system headers are included first, so the macros below only rename the
 * calls of our code. Pointers libc allocates itself (getline's buffer,
 * realpath) are not in the set, and free() passes them straight to libc.
 */
#ifndef S1C_FUZZ_TRACK_H
#define S1C_FUZZ_TRACK_H

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

// An open-addressing set of pointers (linear probing; a deleted slot holds FUZZ_TOMB).
#define FUZZ_TOMB ((void *)1)
typedef struct {
    void **slots;
    size_t cap, used;   // used counts live entries and tombstones
} FuzzPtrSet;

static FuzzPtrSet fuzz_allocs, fuzz_files;
static int fuzz_track_on;

static size_t fuzz_hash(const void *p, size_t cap) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1); }

static void fuzz_set_add(FuzzPtrSet *s, void *p);
static void fuzz_set_grow(FuzzPtrSet *s) {
    FuzzPtrSet old = *s;
    s->cap = old.cap ? 2 * old.cap : 1024;
    s->used = 0;
    s->slots = (void **)(calloc)(s->cap, sizeof(void *));
    if (s->slots == NULL) abort();
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i] != NULL && old.slots[i] != FUZZ_TOMB) fuzz_set_add(s, old.slots[i]);
    (free)(old.slots);
}

static void fuzz_set_add(FuzzPtrSet *s, void *p) {
    if (2 * (s->used + 1) > s->cap) fuzz_set_grow(s);
    size_t i = fuzz_hash(p, s->cap);
    while (s->slots[i] != NULL && s->slots[i] != FUZZ_TOMB) i = (i + 1) & (s->cap - 1);
    if (s->slots[i] == NULL) s->used++;
    s->slots[i] = p;
}

// Removes p; returns 1 if it was there.
static int fuzz_set_remove(FuzzPtrSet *s, void *p) {
    if (s->cap == 0 || p == NULL) return 0;
    for (size_t i = fuzz_hash(p, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == NULL) return 0;
        if (s->slots[i] == p) { s->slots[i] = FUZZ_TOMB; return 1; }
    }
}

static void fuzz_set_clear(FuzzPtrSet *s) {
    if (s->cap) memset(s->slots, 0, s->cap * sizeof(void *));
    s->used = 0;
}

__attribute__((unused)) static void *fuzz_malloc(size_t n) {
    void *p = (malloc)(n);
    if (p && fuzz_track_on) fuzz_set_add(&fuzz_allocs, p);
    return p;
}

__attribute__((unused)) static void *fuzz_calloc(size_t n, size_t size) {
    void *p = (calloc)(n, size);
    if (p && fuzz_track_on) fuzz_set_add(&fuzz_allocs, p);
    return p;
}

__attribute__((unused)) static void *fuzz_realloc(void *ptr, size_t n) {
    int tracked = fuzz_set_remove(&fuzz_allocs, ptr);
    void *p = (realloc)(ptr, n);
    if (p == NULL && tracked) fuzz_set_add(&fuzz_allocs, ptr);   // the old block lives on
    else if (p && (tracked || fuzz_track_on)) fuzz_set_add(&fuzz_allocs, p);
    return p;
}

__attribute__((unused)) static void fuzz_free(void *p) {
    fuzz_set_remove(&fuzz_allocs, p);
    (free)(p);
}

__attribute__((unused)) static char *fuzz_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)fuzz_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

__attribute__((unused)) static FILE *fuzz_fopen(const char *path, const char *mode) {
    FILE *fp = (fopen)(path, mode);
    if (fp && fuzz_track_on) fuzz_set_add(&fuzz_files, fp);
    return fp;
}

__attribute__((unused)) static int fuzz_fclose(FILE *fp) {
    fuzz_set_remove(&fuzz_files, fp);
    return (fclose)(fp);
}

// getline() reallocates *line itself: keep the set in step with it.
__attribute__((unused)) static ssize_t fuzz_getline(char **line, size_t *cap, FILE *fp) {
    int tracked = fuzz_set_remove(&fuzz_allocs, *line);
    ssize_t got = (getline)(line, cap, fp);
    if (*line != NULL && (tracked || fuzz_track_on)) fuzz_set_add(&fuzz_allocs, *line);
    return got;
}

// After a die(): free and close everything the input left behind.
__attribute__((unused)) static void fuzz_track_release(void) {
    for (size_t i = 0; i < fuzz_allocs.cap; i++)
        if (fuzz_allocs.slots[i] != NULL && fuzz_allocs.slots[i] != FUZZ_TOMB) (free)(fuzz_allocs.slots[i]);
    for (size_t i = 0; i < fuzz_files.cap; i++)
        if (fuzz_files.slots[i] != NULL && fuzz_files.slots[i] != FUZZ_TOMB) (fclose)((FILE *)fuzz_files.slots[i]);
    fuzz_set_clear(&fuzz_allocs);
    fuzz_set_clear(&fuzz_files);
}

// After an input that finished: forget, so that a real leak stays a leak.
__attribute__((unused)) static void fuzz_track_forget(void) {
    fuzz_set_clear(&fuzz_allocs);
    fuzz_set_clear(&fuzz_files);
}

#define malloc(n) fuzz_malloc(n)
#define calloc(n, s) fuzz_calloc(n, s)
#define realloc(p, n) fuzz_realloc(p, n)
#define free(p) fuzz_free(p)
#define strdup(s) fuzz_strdup(s)
#define fopen(p, m) fuzz_fopen(p, m)
#define fclose(f) fuzz_fclose(f)
#define getline(l, c, f) fuzz_getline(l, c, f)

#endif // S1C_FUZZ_TRACK_H
