/*
 * test.h: the smallest test harness that can fail.
 *
 * A test program groups checks into named cases:
 *
 *   TEST_BEGIN("encode matches HF vectors");
 *   CHECK(ids_equal, "line %d: got %u, want %u", line, got, want);
 *   TEST_END();
 *   ...
 *   return test_summary();
 *
 * Each case prints "PASS <name>" or "FAIL <name>" on its own line; tests/run.sh
 * counts those lines. A failed CHECK prints its message (the first few per case)
 * with file:line. test_summary() returns non-zero if any case failed, so the
 * program's exit status can never hide a failure.
 */
#ifndef S1C_TEST_H
#define S1C_TEST_H

#include <stdio.h>

static int test_cases_passed, test_cases_failed;
static int test_case_checks_failed;
static const char *test_case_name;

#define TEST_BEGIN(name) do { test_case_name = (name); test_case_checks_failed = 0; } while (0)

#define CHECK(cond, ...) do {                                                         \
    if (!(cond)) {                                                                    \
        if (test_case_checks_failed < 10) {                                           \
            printf("  check failed at %s:%d: ", __FILE__, __LINE__);                  \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
        }                                                                             \
        test_case_checks_failed++;                                                    \
    }                                                                                 \
} while (0)

#define TEST_END() do {                                                               \
    if (test_case_checks_failed == 0) { test_cases_passed++; printf("PASS %s\n", test_case_name); } \
    else { test_cases_failed++; printf("FAIL %s (%d failed checks)\n", test_case_name, test_case_checks_failed); } \
    fflush(stdout);                                                                   \
} while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_cases_passed, test_cases_failed);
    return test_cases_failed ? 1 : 0;
}

#endif // S1C_TEST_H
