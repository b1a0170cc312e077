/*
 * tests/fuzz/replay.c: main() for the fuzz harnesses without libFuzzer.
 *
 *   build/tests/fuzz_<target> FILE|DIR...
 *
 * Calls the harness's LLVMFuzzerTestOneInput() once per file (every file of a
 * folder, in name order), as libFuzzer replays a crash file. `make test` runs
 * it over tests/fuzz/corpus/<target>/: the seeds and every input a fuzzing
 * run ever crashed on, so a fixed crash stays fixed on machines without clang.
 * A crash or a sanitizer report ends the program with a non-zero status;
 * otherwise it prints one PASS line per folder (tests/run.sh counts them).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static void replay_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) { perror(path); exit(2); }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf != NULL && (got = fread(buf + n, 1, cap - n, fp)) > 0;) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    if (buf == NULL || ferror(fp)) { fprintf(stderr, "%s: cannot read\n", path); exit(2); }
    fclose(fp);
    // a copy of exactly n bytes, so that ASan sees a read past the input
    uint8_t *input = malloc(n ? n : 1);
    if (input == NULL) exit(2);
    memcpy(input, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(input, n);
    free(input);
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) { fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]); return 2; }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { perror(argv[i]); return 2; }
        if (!S_ISDIR(st.st_mode)) { replay_file(argv[i]); printf("PASS replay %s\n", argv[i]); continue; }
        DIR *d = opendir(argv[i]);
        if (d == NULL) { perror(argv[i]); return 2; }
        char **names = NULL;
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.') continue;
            names = realloc(names, (n + 1) * sizeof *names);
            if (names == NULL || (names[n++] = strdup(e->d_name)) == NULL) return 2;
        }
        closedir(d);
        qsort(names, n, sizeof *names, compare_names);
        for (size_t k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]);
            replay_file(path);
            free(names[k]);
        }
        free(names);
        printf("PASS replay %s (%zu inputs)\n", argv[i], n);
    }
    return 0;
}
