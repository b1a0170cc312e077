/*
 * score.h: answer extraction and scoring without an LLM judge (s1-spec 6).
 *
 * Extraction follows lm_eval/tasks/{aime,openai_math,gpqa/openai}/utils.py of
 * the s1 harness, byte for byte where it can:
 *
 *   1. cut to the answer part: after the last "<|im_start|>answer\n"; else after
 *      the last "<|im_start|>", dropping its first line if it has a newline;
 *   2. candidate: if "\boxed " (with a space) occurs anywhere, the text after its
 *      last occurrence up to the next '$'; else the content of the LAST \boxed
 *      (brace-matched from it, as last_boxed_only_string counts braces; \fbox
 *      when there is no \boxed: the original asserts there, a bug); else the
 *      regex (?i)Answer\s*:\s*(.*) with DOTALL. Note what re.findall makes of
 *      that pattern: (.*) runs to the end of the text, so there is only ONE
 *      match and it starts at the FIRST "Answer:" ("matches[-1]" is that one
 *      match, tail and trailing newlines included). Else the answer part as is.
 *   3. AIME/MATH: if candidate and ground truth are both digit strings, compare
 *      as integers (023 == 23). Where the original asks GPT-4o-mini, we use the
 *      deterministic normaliser below (our design, s1-spec 6).
 *   4. GPQA: a-d upper-cased; a letter A-D is the choice; where the original asks
 *      the judge we accept "(X)", "X)", "X.", "\text{X}", "**X**"; otherwise
 *      the default "A" (faithful) and the caller counts how often that happened.
 *
 * The normaliser, applied to both sides: strip whitespace, everything up to the
 * last "Answer:" label (our addition: the judge reads "The sum is 12.\nAnswer:
 * 12" as 12; note that the first-match regex tail can hold such a label),
 * surrounding $...$, \(...\), \[...\], a trailing period, \text{...} and
 * \mathrm{...} wrappers, \left and \right, \! \, \; spacing, degree marks
 * (^\circ, ^{\circ}, the degree sign), a leading "x="-style assignment;
 * \dfrac and \tfrac become \frac; all whitespace goes; thousands separators in
 * plain numbers go (72,000 -> 72000). If both sides then parse as numbers
 * (integer, decimal, \frac{a}{b}, \frac12, a/b, with a sign) they are compared
 * exactly as rationals (so 0.5 == \frac{1}{2} == 1/2, 5.0 == 5); otherwise the
 * normalised strings must be equal.
 *
 * Python's str.isdigit and \s also accept non-ASCII digits and spaces; here
 * both are ASCII only.
 *
 * Plain C, compiles as C11 and C++17. Returned strings are malloc'd.
 */
#ifndef S1C_SCORE_H
#define S1C_SCORE_H

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

// ----------------------------------------------------------------------------
// small string helpers (byte strings; all patterns are ASCII)

static inline char *score_strndup(const char *s, size_t n) {
    char *r = (char *)mallocCheck(n + 1);
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

// last occurrence of needle in hay[0..n), or NULL
static inline const char *score_rfind(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m > n) return NULL;
    for (size_t i = n - m + 1; i-- > 0;) if (memcmp(hay + i, needle, m) == 0) return hay + i;
    return NULL;
}

static inline int score_is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python str.isdigit() for ASCII: non-empty, all 0-9
static inline int score_is_digits(const char *s) {
    if (*s == '\0') return 0;
    for (; *s; s++) if (*s < '0' || *s > '9') return 0;
    return 1;
}

// ----------------------------------------------------------------------------
// extraction (steps 1 and 2)

typedef enum { EXTRACT_NONE = 0, EXTRACT_BOXED_SPACE, EXTRACT_BOXED, EXTRACT_ANSWER } ExtractKind;

// Step 1: the answer part of a full output (a pointer into text and a length).
static inline const char *score_answer_part(const char *text, size_t *len) {
    size_t n = strlen(text);
    const char *p = score_rfind(text, n, "<|im_start|>answer\n");
    if (p) { p += strlen("<|im_start|>answer\n"); *len = n - (size_t)(p - text); return p; }
    p = score_rfind(text, n, "<|im_start|>");
    if (p) {
        p += strlen("<|im_start|>");
        const char *nl = strchr(p, '\n');
        if (nl) p = nl + 1;
        *len = n - (size_t)(p - text);
        return p;
    }
    *len = n;
    return text;
}

// Step 2 on an answer part: the candidate answer (malloc'd). *kind says which
// rule found it; EXTRACT_NONE returns the answer part itself.
static inline char *score_extract_candidate(const char *a, size_t n, ExtractKind *kind) {
    const char *p = score_rfind(a, n, "\\boxed ");
    if (p) {
        p += strlen("\\boxed ");
        const char *end = (const char *)memchr(p, '$', n - (size_t)(p - a));
        *kind = EXTRACT_BOXED_SPACE;
        return score_strndup(p, end ? (size_t)(end - p) : n - (size_t)(p - a));
    }
    p = score_rfind(a, n, "\\boxed");
    if (!p) p = score_rfind(a, n, "\\fbox");
    if (p) {
        // last_boxed_only_string: count braces from the macro; the first return to zero closes it
        int open = 0;
        const char *first_brace = NULL;
        for (const char *q = p; q < a + n; q++) {
            if (*q == '{') { open++; if (!first_brace) first_brace = q; }
            if (*q == '}') {
                open--;
                if (open == 0) {
                    if (first_brace && first_brace < q) {
                        *kind = EXTRACT_BOXED;
                        return score_strndup(first_brace + 1, (size_t)(q - first_brace - 1));
                    }
                    break;
                }
            }
        }
        // unbalanced: the original returns None here and falls through to "Answer:"
    }
    for (size_t i = 0; i + 6 <= n; i++) {
        if (strncasecmp(a + i, "answer", 6) != 0) continue;
        size_t j = i + 6;
        while (j < n && score_is_space(a[j])) j++;
        if (j >= n || a[j] != ':') continue;
        j++;
        while (j < n && score_is_space(a[j])) j++;
        *kind = EXTRACT_ANSWER;
        return score_strndup(a + j, n - j);
    }
    *kind = EXTRACT_NONE;
    return score_strndup(a, n);
}

// Steps 1 and 2 on a full model output.
static inline char *score_extract(const char *output, ExtractKind *kind) {
    size_t n;
    const char *a = score_answer_part(output, &n);
    return score_extract_candidate(a, n, kind);
}

// ----------------------------------------------------------------------------
// the normaliser

// s with every occurrence of from replaced by to (malloc'd; frees s)
static inline char *score_replace_all(char *s, const char *from, const char *to) {
    size_t nf = strlen(from);
    if (!strstr(s, from)) return s;
    ByteBuf b = {NULL, 0, 0};
    const char *p = s, *q;
    while ((q = strstr(p, from)) != NULL) {
        bytebuf_append(&b, p, (size_t)(q - p));
        bytebuf_puts(&b, to);
        p = q + nf;
    }
    bytebuf_puts(&b, p);
    free(s);
    return b.data;
}

// replaces every macro{X} (brace-matched) by X
static inline char *score_unwrap_macro(char *s, const char *macro) {
    char *m, *from = s;
    size_t nm = strlen(macro);
    while ((m = strstr(from, macro)) != NULL) {
        char *open = m + nm;
        if (*open != '{') { from = open; continue; }   // another macro (\textbf): leave it
        int depth = 0;
        char *close = NULL;
        for (char *q = open; *q; q++) {
            if (*q == '{') depth++;
            else if (*q == '}' && --depth == 0) { close = q; break; }
        }
        if (!close) break;
        memmove(close, close + 1, strlen(close + 1) + 1);              // drop "}"
        memmove(m, open + 1, strlen(open + 1) + 1);                    // drop macro and "{"
        from = m;
    }
    return s;
}

static inline void score_trim(char *s) {
    size_t n = strlen(s), i = 0;
    while (n > 0 && score_is_space(s[n - 1])) n--;
    while (i < n && score_is_space(s[i])) i++;
    memmove(s, s + i, n - i);
    s[n - i] = '\0';
}

static inline int score_strip_affixes(char *s, const char *pre, const char *post) {
    size_t n = strlen(s), np = strlen(pre), nq = strlen(post);
    if (n < np + nq || strncmp(s, pre, np) != 0 || strcmp(s + n - nq, post) != 0) return 0;
    memmove(s, s + np, n - np - nq);
    s[n - np - nq] = '\0';
    return 1;
}

// keeps what follows the last "Answer:" label (case-insensitive), as a judge
// reads "The sum is 12.\nAnswer: 12" or the first-match regex tail "1\nFinal Answer: 2"
static inline int score_strip_label(char *s) {
    size_t n = strlen(s), after = 0;
    int found = 0;
    for (size_t i = 0; i + 6 <= n; i++) {
        if (strncasecmp(s + i, "answer", 6) != 0) continue;
        size_t j = i + 6;
        while (score_is_space(s[j])) j++;
        if (s[j] == ':') { after = j + 1; found = 1; }
    }
    if (found) memmove(s, s + after, n - after + 1);
    return found;
}

// plain number with thousands separators: [+-]?d{1,3}(,ddd)+(.d+)?
static inline int score_has_thousands(const char *s) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int lead = 0;
    while (isdigit((unsigned char)*p)) { p++; lead++; }
    if (lead < 1 || lead > 3 || *p != ',') return 0;
    while (*p == ',') {
        p++;
        for (int k = 0; k < 3; k++, p++) if (!isdigit((unsigned char)*p)) return 0;
    }
    if (*p == '.') { p++; if (!isdigit((unsigned char)*p)) return 0; while (isdigit((unsigned char)*p)) p++; }
    return *p == '\0';
}

static inline char *score_normalize(const char *in) {
    char *s = score_strndup(in, strlen(in));
    // wrappers can nest ("$\text{5}.$"), so peel until nothing changes
    for (int changed = 1; changed;) {
        changed = 0;
        score_trim(s);
        changed |= score_strip_label(s);
        score_trim(s);
        changed |= score_strip_affixes(s, "$$", "$$") || score_strip_affixes(s, "$", "$") ||
                   score_strip_affixes(s, "\\(", "\\)") || score_strip_affixes(s, "\\[", "\\]");
        size_t n = strlen(s);
        if (n > 0 && s[n - 1] == '.') { s[n - 1] = '\0'; changed = 1; }
    }
    s = score_unwrap_macro(s, "\\text");
    s = score_unwrap_macro(s, "\\mathrm");
    s = score_replace_all(s, "\\left", "");
    s = score_replace_all(s, "\\right", "");
    s = score_replace_all(s, "\\!", "");
    s = score_replace_all(s, "\\,", "");
    s = score_replace_all(s, "\\;", "");
    s = score_replace_all(s, "^{\\circ}", "");
    s = score_replace_all(s, "^\\circ", "");
    s = score_replace_all(s, "\xc2\xb0", "");   // U+00B0 degree sign
    s = score_replace_all(s, "\\dfrac", "\\frac");
    s = score_replace_all(s, "\\tfrac", "\\frac");
    // all whitespace goes
    size_t k = 0;
    for (size_t i = 0; s[i]; i++) if (!score_is_space(s[i])) s[k++] = s[i];
    s[k] = '\0';
    // a leading assignment "x=" / "ans=": an identifier, then '='
    if (isalpha((unsigned char)s[0])) {
        size_t i = 0;
        while (isalnum((unsigned char)s[i]) || s[i] == '_') i++;
        if (s[i] == '=' && s[i + 1] != '\0') memmove(s, s + i + 1, strlen(s + i + 1) + 1);
    }
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.') s[n - 1] = '\0';
    if (score_has_thousands(s)) s = score_replace_all(s, ",", "");
    return s;
}

// ----------------------------------------------------------------------------
// exact rational numbers

typedef struct {
    int64_t num, den;   // den > 0, gcd(num, den) = 1
} Rational;

static inline int64_t score_gcd(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}

static inline int rational_make(int64_t num, int64_t den, Rational *q) {
    if (den == 0) return 0;
    if (den < 0) { if (num == INT64_MIN || den == INT64_MIN) return 0; num = -num; den = -den; }
    int64_t g = score_gcd(num, den);
    if (g == 0) g = 1;
    q->num = num / g;
    q->den = den / g;
    return 1;
}

// [+-]?digits(.digits)? exactly filling s[0..n); at most 18 digits
static inline int score_parse_decimal(const char *s, size_t n, Rational *q) {
    size_t i = 0;
    int neg = 0, digits = 0, seen_digit = 0;
    int64_t num = 0, den = 1;
    if (i < n && (s[i] == '+' || s[i] == '-')) { neg = s[i] == '-'; i++; }
    for (; i < n && isdigit((unsigned char)s[i]); i++, digits++) { if (digits < 18) num = num * 10 + (s[i] - '0'); seen_digit = 1; }
    if (i < n && s[i] == '.') {
        i++;
        for (; i < n && isdigit((unsigned char)s[i]); i++, digits++) {
            if (digits < 18) { num = num * 10 + (s[i] - '0'); den *= 10; }
            seen_digit = 1;
        }
    }
    if (!seen_digit || i != n || digits > 18) return 0;
    return rational_make(neg ? -num : num, den, q);
}

static inline int rational_div(Rational a, Rational b, Rational *q) {
    int64_t num, den;
    if (b.num == 0) return 0;
    if (__builtin_mul_overflow(a.num, b.den, &num) || __builtin_mul_overflow(a.den, b.num, &den)) return 0;
    return rational_make(num, den, q);
}

// a normalised string as a number: decimal, \frac{a}{b}, \frac12, a/b, with a sign
static inline int score_parse_number(const char *s, Rational *q) {
    size_t n = strlen(s);
    if (score_parse_decimal(s, n, q)) return 1;
    int neg = 0;
    const char *p = s;
    if (*p == '-' || *p == '+') { neg = *p == '-'; p++; }
    Rational a, b;
    if (strncmp(p, "\\frac", 5) == 0) {
        p += 5;
        const char *a0, *a1, *b0, *b1;
        if (*p == '{') {
            a0 = p + 1; a1 = strchr(a0, '}');
            if (!a1 || a1[1] != '{') return 0;
            b0 = a1 + 2; b1 = strchr(b0, '}');
            if (!b1 || b1[1] != '\0') return 0;
        } else {   // \frac12: one digit each
            if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1]) || p[2] != '\0') return 0;
            a0 = p; a1 = p + 1; b0 = p + 1; b1 = p + 2;
        }
        if (!score_parse_decimal(a0, (size_t)(a1 - a0), &a) || !score_parse_decimal(b0, (size_t)(b1 - b0), &b)) return 0;
    } else {
        const char *slash = strchr(p, '/');
        if (!slash || strchr(slash + 1, '/')) return 0;
        if (!score_parse_decimal(p, (size_t)(slash - p), &a) || !score_parse_decimal(slash + 1, strlen(slash + 1), &b)) return 0;
    }
    if (!rational_div(a, b, q)) return 0;
    if (neg) q->num = -q->num;
    return 1;
}

// ----------------------------------------------------------------------------
// comparisons

// digit strings as integers, any length: strip leading zeros, compare
static inline int score_digits_equal(const char *a, const char *b) {
    while (*a == '0' && a[1]) a++;
    while (*b == '0' && b[1]) b++;
    return strcmp(a, b) == 0;
}

// AIME / MATH: is the extracted candidate equal to the ground truth?
static inline int score_math_equal(const char *candidate, const char *gt) {
    if (score_is_digits(candidate) && score_is_digits(gt)) return score_digits_equal(candidate, gt);
    char *a = score_normalize(candidate), *b = score_normalize(gt);
    Rational x, y;
    int eq;
    if (score_parse_number(a, &x) && score_parse_number(b, &y)) eq = x.num == y.num && x.den == y.den;
    else eq = strcmp(a, b) == 0;
    free(a);
    free(b);
    return eq;
}

// GPQA: the chosen letter 'A'..'D'; *defaulted = 1 when nothing was recognised ("A")
static inline char score_choice(const char *candidate, int *defaulted) {
    *defaulted = 0;
    size_t n = strlen(candidate);
    if (n == 1 && candidate[0] >= 'a' && candidate[0] <= 'd') return (char)(candidate[0] - 'a' + 'A');
    if (n == 1 && candidate[0] >= 'A' && candidate[0] <= 'D') return candidate[0];
    char *s = score_strndup(candidate, n);
    score_trim(s);
    int changed = 1;
    while (changed) {
        changed = score_strip_affixes(s, "**", "**") || score_strip_affixes(s, "\\text{", "}") ||
                  score_strip_affixes(s, "(", ")") || score_strip_affixes(s, "$", "$");
        size_t m = strlen(s);
        if (!changed && m == 2 && (s[1] == ')' || s[1] == '.')) { s[1] = '\0'; changed = 1; }
        score_trim(s);
    }
    char c = (char)toupper((unsigned char)s[0]);
    int ok = strlen(s) == 1 && c >= 'A' && c <= 'D';
    free(s);
    if (ok) return c;
    *defaulted = 1;
    return 'A';
}

// ----------------------------------------------------------------------------
// several samples per problem

// the ground truth of a multiple-choice problem is a letter A-D
static inline int score_is_choice(const char *gt) { return strlen(gt) == 1 && gt[0] >= 'A' && gt[0] <= 'D'; }

// maj@k and cov@k of one problem over its first k samples (at most 64): cands[i] is sample i's
// extracted answer, ok[i] whether it was scored correct. As process_results() in s1's task utils
// (lm_eval/tasks/aime/utils.py:292-300, gpqa/openai/utils.py:209-217): cov = any of them correct;
// maj = the most common answer (Counter.most_common(1): the first seen wins a tie) is the ground
// truth. s1's LLM judge maps an answer equivalent to the ground truth or to an earlier answer onto
// it; here answers are grouped by the comparison the scoring uses (letters for multiple choice,
// else score_math_equal() against the group's first answer).
static inline void score_maj_cov(char *const *cands, const int *ok, size_t k, const char *gt, int *maj, int *cov) {
    size_t first[64], counts[64], n_groups = 0;
    *cov = 0;
    if (k > 64) k = 64;
    for (size_t i = 0; i < k; i++) {
        *cov |= ok[i];
        size_t g = 0;
        for (; g < n_groups; g++) {
            const char *a = cands[first[g]], *b = cands[i];
            int d, same;
            if (score_is_choice(gt)) same = score_choice(a, &d) == score_choice(b, &d);
            else same = strcmp(a, b) == 0 || score_math_equal(b, a);
            if (same) break;
        }
        if (g == n_groups) { first[n_groups] = i; counts[n_groups++] = 0; }
        counts[g]++;
    }
    size_t best = 0;
    for (size_t g = 1; g < n_groups; g++) if (counts[g] > counts[best]) best = g;
    *maj = n_groups ? ok[first[best]] : 0;
}

#endif // S1C_SCORE_H
