/*
 * tests/fuzz/fuzz.h: what every fuzz harness of tests/fuzz/ shares.
 *
 * Each harness defines LLVMFuzzerTestOneInput() for one loader and is built
 * two ways (Makefile):
 *
 *   make fuzz     clang's libFuzzer + ASan + UBSan: build/fuzz/<target>, run
 *                 for FUZZ_SECONDS on the seed and regression corpora
 *   make test     gcc, with tests/fuzz/replay.c as main(): every file of
 *                 tests/fuzz/corpus/<target>/ replayed once (no clang needed;
 *                 with SANITIZE=1 under ASan + UBSan too)
 *
 * The loaders end a bad input with die(), which exits. Built with -DS1C_FUZZ,
 * common/util.h's die() calls s1c_fuzz_fatal() instead, defined here: it
 * jumps back into fuzz_run(), so a cleanly rejected input is simply the end of
 * that input, and the next one runs; what the loader had allocated and
 * opened by then is released (tests/fuzz/track.h, force-included in every
 * fuzz build). A crash, a sanitizer report (a leak included) or an abort() is
 * a finding. The loaders read files, so each input is written to a file in a
 * private temporary folder first.
 */
#ifndef S1C_FUZZ_H
#define S1C_FUZZ_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/fuzz/track.h"

static jmp_buf fuzz_jmp;
static int fuzz_armed;

void s1c_fuzz_fatal(void) {
    if (!fuzz_armed) abort();   // a die() outside fuzz_run(): the harness itself is wrong
    fuzz_armed = 0;
    longjmp(fuzz_jmp, 1);
}

// Runs fn(ctx). Returns 0 when it returned, 1 when it rejected the input with
// die(); then what it had allocated and opened is released (tests/fuzz/track.h).
__attribute__((unused)) static int fuzz_run(void (*fn)(void *), void *ctx) {
    fuzz_armed = 1;
    fuzz_track_on = 1;
    if (setjmp(fuzz_jmp) != 0) {
        fuzz_track_on = 0;
        fuzz_track_release();
        return 1;
    }
    fn(ctx);
    fuzz_armed = 0;
    fuzz_track_on = 0;
    fuzz_track_forget();
    return 0;
}

static char fuzz_dir[256];

static void fuzz_cleanup(void) {
    if (fuzz_dir[0] == '\0') return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

// A private temporary folder for the input files, made once, removed at exit.
__attribute__((unused)) static const char *fuzz_tmpdir(void) {
    if (fuzz_dir[0] != '\0') return fuzz_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/s1c-fuzz-XXXXXX", base);
    if (mkdtemp(fuzz_dir) == NULL) { perror("fuzz: mkdtemp"); abort(); }
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

// Writes data[0..n) to <tmpdir>/name and returns that path (static storage, one per name slot).
__attribute__((unused)) static const char *fuzz_file(const char *name, const uint8_t *data, size_t n) {
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, 512, "%s/%s", fuzz_tmpdir(), name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || (n > 0 && fwrite(data, 1, n, fp) != n) || fclose(fp) != 0) { perror(path); abort(); }
    return path;
}

// A failed property of an accepted input: a finding, like a crash.
#define FUZZ_ASSERT(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz: property failed: " __VA_ARGS__); fprintf(stderr, "\n"); abort(); } } while (0)

#endif // S1C_FUZZ_H
