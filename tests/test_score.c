// Tests of common/score.h: answer extraction against the s1 harness's Python
// (each expected candidate below was produced by running the extraction code of
// lm_eval/tasks/{aime,gpqa/openai}/utils.py on the input), the normaliser and
// the comparisons on tables of cases.
#include "../common/score.h"
#include "test.h"

typedef struct {
    const char *output, *candidate;
    ExtractKind kind;
} ExtractCase;

static const ExtractCase extract_cases[] = {
    {"<|im_start|>think\nso 2+2=4<|im_start|>answer\nAnswer: 4", "4", EXTRACT_ANSWER},
    {"<|im_start|>think\nx<|im_start|>answer\nThe answer is $\\boxed{23}$.", "23", EXTRACT_BOXED},
    {"<|im_start|>think\nx<|im_start|>answer\nFirst \\boxed{1} then \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}", EXTRACT_BOXED},
    // "\boxed " anywhere wins, even over a \boxed{ before or after it
    {"<|im_start|>think\nx<|im_start|>answer\n\\boxed{a{b}c} and \\boxed 7$ later", "7", EXTRACT_BOXED_SPACE},
    {"<|im_start|>think\nx<|im_start|>answer\n\\boxed 7$ then \\boxed{8}", "7", EXTRACT_BOXED_SPACE},
    {"<|im_start|>think\nx<|im_start|>answer\nso \\fbox{12}", "12", EXTRACT_BOXED},
    // one regex match from the FIRST "Answer:" to the end (re.findall with DOTALL)
    {"<|im_start|>think\nx<|im_start|>answer\nAnswer: 1\nFinal Answer: 2\n", "1\nFinal Answer: 2\n", EXTRACT_ANSWER},
    {"<|im_start|>think\nx<|im_start|>answer\nFinal Answer: 42\n", "42\n", EXTRACT_ANSWER},
    {"<|im_start|>think\nstuff\n<|im_start|>answer\nFinal Answer: 17", "17", EXTRACT_ANSWER},
    // no "<|im_start|>answer\n": after the last <|im_start|>, first line dropped; case-insensitive, spaces
    {"<|im_start|>think\nhmm <|im_start|>answerX\nANSWER :  9", "9", EXTRACT_ANSWER},
    {"<|im_start|>think\nhmm <|im_start|>answer", "answer", EXTRACT_NONE},
    {"no delimiters, Answer: 5", "5", EXTRACT_ANSWER},
    {"no delimiters and no answer at all", "no delimiters and no answer at all", EXTRACT_NONE},
    // a \boxed inside the thinking is cut away with it
    {"<|im_start|>think\n\\boxed{99}<|im_start|>answer\nAnswer: 3", "3", EXTRACT_ANSWER},
    // an unbalanced last \boxed falls through to "Answer:"
    {"<|im_start|>think\nx<|im_start|>answer\n\\boxed{unbalanced\nAnswer: 6", "6", EXTRACT_ANSWER},
    {"<|im_start|>think\nx<|im_start|>answer\nfirst <|im_start|>answer\nAnswer: 8", "8", EXTRACT_ANSWER},
};

typedef struct {
    const char *candidate, *gt;
    int equal;
} EqualCase;

static const EqualCase equal_cases[] = {
    {"023", "23", 1},                   // AIME: integer compare
    {"23", "023", 1},
    {"24", "23", 0},
    {"42\n", "42", 1},                  // the unstripped regex tail, normalised
    {"  $42$. ", "42", 1},
    {"\\(7\\)", "7", 1},
    {"\\[ 7 \\]", "7", 1},
    {"\\frac{1}{2}", "0.5", 1},
    {"\\dfrac{1}{2}", "\\frac12", 1},
    {"\\tfrac{2}{4}", "1/2", 1},
    {"-\\frac{3}{6}", "-0.5", 1},
    {"\\frac{1}{3}", "0.333", 0},       // exact rationals, no tolerance
    {"5.0", "5", 1},
    {"72,000", "72000", 1},
    {"1,234,567.5", "1234567.5", 1},
    {"1,23", "123", 0},                 // not a thousands separator
    {"(1,2)", "(1, 2)", 1},             // a tuple keeps its comma, spaces go
    {"90^\\circ", "90", 1},
    {"90^{\\circ}", "90", 1},
    {"90\xc2\xb0", "90", 1},
    {"x = 5", "5", 1},
    {"\\text{5 apples}", "5apples", 1},
    {"\\mathrm{cm}", "cm", 1},
    {"\\left( 1, 2 \\right)", "(1,2)", 1},
    {"1\\,000", "1000", 1},
    {"3\\!\\;", "3", 1},
    {"Answer: 12", "12", 1},
    {"Final Answer: 12", "12", 1},
    {"\\sqrt{2}", "\\sqrt{2}", 1},
    {"\\sqrt{2}", "\\sqrt{3}", 0},
    {"", "0", 0},
    {"1\nFinal Answer: 2\n", "2", 1},   // the first-match regex tail, read up to its last label
    {"The sum is 8732.\nAnswer: 8732", "8732", 1},
    {"The sum is 8732.", "8732", 0},
    {"99999999999999999999", "099999999999999999999", 1},   // digit strings of any length
};

typedef struct {
    const char *candidate;
    char letter;
    int defaulted;
} ChoiceCase;

static const ChoiceCase choice_cases[] = {
    {"B", 'B', 0}, {"c", 'C', 0}, {"(D)", 'D', 0}, {"C)", 'C', 0}, {"B.", 'B', 0},
    {"\\text{D}", 'D', 0}, {"**C**", 'C', 0}, {" B\n", 'B', 0}, {"E", 'A', 1},
    {"none of the above", 'A', 1}, {"", 'A', 1}, {"AB", 'A', 1},
};

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

int main(void) {
    TEST_BEGIN("extraction matches the harness's Python on a table of outputs");
    for (size_t i = 0; i < LEN(extract_cases); i++) {
        ExtractKind kind;
        char *got = score_extract(extract_cases[i].output, &kind);
        CHECK(strcmp(got, extract_cases[i].candidate) == 0, "case %zu: got \"%s\", want \"%s\"", i, got, extract_cases[i].candidate);
        CHECK(kind == extract_cases[i].kind, "case %zu: rule %d, want %d", i, (int)kind, (int)extract_cases[i].kind);
        free(got);
    }
    TEST_END();

    TEST_BEGIN("normaliser and equality on a table of answer pairs");
    for (size_t i = 0; i < LEN(equal_cases); i++) {
        int got = score_math_equal(equal_cases[i].candidate, equal_cases[i].gt);
        CHECK(got == equal_cases[i].equal, "case %zu: \"%s\" vs \"%s\": got %d", i, equal_cases[i].candidate, equal_cases[i].gt, got);
        int sym = score_math_equal(equal_cases[i].gt, equal_cases[i].candidate);
        CHECK(sym == got, "case %zu: equality is not symmetric", i);
    }
    TEST_END();

    TEST_BEGIN("normaliser output on examples");
    struct { const char *in, *out; } norm[] = {
        {" $\\dfrac{3}{4}$. ", "\\frac{3}{4}"}, {"\\left[ 0, 1 \\right)", "[0,1)"}, {"y = 2x + 1", "2x+1"},
        {"72,000", "72000"}, {"\\text{(B)}", "(B)"}, {"\\textbf{3}", "\\textbf{3}"},
    };
    for (size_t i = 0; i < LEN(norm); i++) {
        char *got = score_normalize(norm[i].in);
        CHECK(strcmp(got, norm[i].out) == 0, "\"%s\" -> \"%s\", want \"%s\"", norm[i].in, got, norm[i].out);
        free(got);
    }
    TEST_END();

    TEST_BEGIN("number parsing: exact rationals, overflow refused");
    Rational q;
    CHECK(score_parse_number("-\\frac{6}{4}", &q) && q.num == -3 && q.den == 2, "-6/4");
    CHECK(score_parse_number("0.125", &q) && q.num == 1 && q.den == 8, "0.125");
    CHECK(score_parse_number("10/0", &q) == 0, "division by zero must not parse");
    CHECK(score_parse_number("1234567890123456789", &q) == 0, "19 digits must be refused, not overflow");
    CHECK(score_parse_number("1.2.3", &q) == 0 && score_parse_number("abc", &q) == 0, "junk");
    TEST_END();

    TEST_BEGIN("multiple choice letters (GPQA rules, default A)");
    for (size_t i = 0; i < LEN(choice_cases); i++) {
        int defaulted;
        char got = score_choice(choice_cases[i].candidate, &defaulted);
        CHECK(got == choice_cases[i].letter && defaulted == choice_cases[i].defaulted, "\"%s\": got %c (default %d)",
              choice_cases[i].candidate, got, defaulted);
    }
    TEST_END();
    return test_summary();
}
