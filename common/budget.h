/*
 * budget.h: budget forcing, the decode-time half of s1, written once against
 * an abstract decoder so that the CPU reference (s1.c) and the GPU decoder
 * (sample.cu) run exactly the same control logic.
 *
 * It reproduces the s1 evaluation harness (s1-spec section 5,
 * lm_eval/models/vllm_causallms.py::_model_generate), not the README snippet:
 *
 *   thinking  The prompt already ends in "<|im_start|>think" (the caller feeds
 *             it). Generate until a stop id (<|im_start|>, <|im_end|>) or until
 *             B tokens (--max-thinking).
 *   Wait      With N ignores: up to N+1 rounds, each with the FULL budget B
 *             again (not the remainder) and min_tokens = 1 (the stop ids are
 *             masked for the first token of each round). A round that ends on
 *             a stop id, other than the last round, drops the stop id, appends
 *             "Wait" and continues. A round that ends on the length limit is
 *             final. Afterwards the concatenated thinking ids ("Wait" ids
 *             included) are truncated to B.
 *   answer    Strip a trailing stop id. If the LAST ROUND ended on the length
 *             limit: append "\n" unless the untruncated thinking text already
 *             ends in a newline, then "<|im_start|>answer\nFinal Answer:"
 *             (forced exit). Otherwise append "<|im_start|>answer" (normal
 *             transition; the model writes the "\n" itself). Then generate the
 *             answer until <|im_end|> or max_answer tokens.
 *
 * The harness quirk (s1-spec 5.4) falls out of that order of operations and is
 * kept on purpose: the choice of delimiter depends on how the last round
 * ended, not on whether the truncation to B cut anything. If earlier rounds
 * plus a last round that stopped by itself exceed B, the cut lands mid-thought
 * and the plain "<|im_start|>answer" follows it with no newline and no "Final
 * Answer:". Likewise the newline test looks at the untruncated text.
 *
 * Differences from vLLM that do not change the result with greedy decoding:
 * all rounds run in one KV-cache session (the "Wait" ids are appended to the
 * cache instead of re-prefilling the prompt, s1-spec 5.5), a stop id the
 * harness strips is never fed to the cache, and the truncation to B rewinds
 * the cache.
 *
 * Which ids stop a thinking round is the caller's (think_stop; see
 * generation_run() in common/generate.h for what vLLM 0.6.4.post1 made of the
 * harness's stops), and which of them the harness strips off a round's end is
 * `strip` (its until_thinking ids). A round that ends on a stop id outside
 * `strip` (<|endoftext|>, which vLLM adds from generation_config.json) keeps
 * it: it is fed before "Wait" or before the delimiter, and counts as a
 * thinking id, as in the harness.
 *
 * readme_variant = 1 follows the README example instead (s1-spec 5.5): every
 * "Wait" round gets the REMAINING budget (B minus all ids generated so far,
 * stop ids included, "Wait" ids not: the PR #120 bookkeeping), a round that
 * would get no budget is not run, nothing is truncated, no delimiter is
 * appended (the model writes "<|im_start|>answer" itself) and there is no
 * "Final Answer:". The first round has min_tokens = 0, later rounds 1.
 */
#ifndef S1C_BUDGET_H
#define S1C_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

// ----------------------------------------------------------------------------
// the decoder interface

typedef struct {
    void *ctx;
    // appends ids to the context (the KV cache), computing their logits
    void (*feed)(void *ctx, const uint32_t *ids, size_t n);
    // picks the next id from the logits after the last fed id, never one of
    // banned[], and does NOT feed it
    uint32_t (*next)(void *ctx, const uint32_t *banned, size_t n_banned);
    // ids in the context
    size_t (*length)(void *ctx);
    // truncates the context to len ids (len <= length)
    void (*rewind)(void *ctx, size_t len);
} Decoder;

typedef struct {
    const uint32_t *ids;
    size_t n;
} IdSpan;

typedef struct {
    long max_thinking;       // B >= 1 (see budget_auto)
    int n_ignore;            // N: < 0 = unset (one round, no min_tokens); >= 0: up to N+1 rounds
    IdSpan ignore_str;       // appended on each ignored stop ("Wait"); may be empty (Table 4 "no string")
    IdSpan think_stop;       // stop ids of the thinking phase (see generation_run(): <|im_start|>, <|im_end|>,
                             // and vLLM's extra eos id <|endoftext|>)
    IdSpan strip;            // the stop ids the harness strips off a round's end (its until_thinking_tok:
                             // <|im_start|>, <|im_end|>, in that order); empty = think_stop. A round that
                             // ends on any other stop id keeps it, in the context and in the thinking
    IdSpan thinking_end;     // "<|im_start|>answer"
    IdSpan thinking_end_max; // "<|im_start|>answer\nFinal Answer:"
    IdSpan newline;          // "\n"
    IdSpan answer_stop;      // stop ids of the answer phase: <|im_end|> (and <|endoftext|>)
    long max_answer;         // answer-phase limit (the harness's max_gen_toks)
    size_t context_limit;    // the context never grows beyond this (0 = no limit); hitting it counts as
                             // "length", as vLLM's max_model_len does; a delimiter that does not fit means no answer
    int readme_variant;      // 1: the README example's semantics instead of the harness's
    long accept_within;      // rejection sampling (> 0): the thinking must end on a stop id within this many
                             // ids, stop id included, or the run is rejected before the answer phase
    // does the decoded text of ids[0..n) end in '\n'? (the harness tests the
    // detokenized text, special tokens skipped; ".\n" and "\n\n" count too)
    int (*ends_with_newline)(void *text_ctx, const uint32_t *ids, size_t n);
    void *text_ctx;
} BudgetConfig;

typedef enum { FINISH_STOP = 0, FINISH_LENGTH = 1 } FinishReason;

static inline const char *finish_reason_name(FinishReason r) { return r == FINISH_STOP ? "stop" : "length"; }

typedef struct {
    IdList thinking;          // thinking ids as the answer phase sees them (truncated, stop stripped, "Wait"s included)
    IdList transition;        // ids appended after the thinking (delimiter, maybe "\n"); empty in the README variant
    IdList answer;            // answer ids, without the stop id
    IdList uncut;             // the thinking ids before the cut to B, as vLLM's concatenated token_ids
                              // ("Wait"s and a final stop id included): s1's stored text decodes these
    size_t generated;         // thinking ids before the truncation to B (incl. "Wait" ids and a final stop id)
    int waits;                // how many times the ignore string was inserted
    int rounds;               // thinking rounds run
    FinishReason think_finish;  // how the last thinking round ended
    int forced_exit;          // 1 if "Final Answer:" was appended (last round hit the budget)
    int rejected;             // accept_within was set and the thinking did not fit: no transition, no answer
    FinishReason answer_finish;
} BudgetResult;

static inline void budget_result_free(BudgetResult *r) {
    idlist_free(&r->thinking);
    idlist_free(&r->transition);
    idlist_free(&r->answer);
    idlist_free(&r->uncut);
}

// B for max_tokens_thinking=auto (s1-spec 5.2): what is left of max_gen_toks after
// the longest prompt, the thinking start and the forced-exit delimiter, minus
// 100 tokens for the answer.
static inline long budget_auto(long max_gen_toks, size_t longest_prompt, size_t n_thinking_start, size_t n_thinking_end_max) {
    return max_gen_toks - (long)longest_prompt - (long)n_thinking_start - (long)n_thinking_end_max - 100;
}

static inline int budget_span_has(IdSpan s, uint32_t id) {
    for (size_t i = 0; i < s.n; i++) if (s.ids[i] == id) return 1;
    return 0;
}

// ----------------------------------------------------------------------------
// one generation call, as vLLM's generate() with max_tokens, min_tokens and
// stop_token_ids. Appends the ids to out; a final stop id is appended to out
// (vLLM keeps it in token_ids) but not fed to the decoder.

static inline FinishReason budget_generate_round(const Decoder *d, const BudgetConfig *c, long max_tokens, long min_tokens,
                                                 IdSpan stop, IdList *out, long *n_out) {
    long n = 0;
    FinishReason why = FINISH_LENGTH;
    while (n < max_tokens) {
        if (c->context_limit && d->length(d->ctx) >= c->context_limit) break;
        uint32_t id = n < min_tokens ? d->next(d->ctx, stop.ids, stop.n) : d->next(d->ctx, NULL, 0);
        idlist_push(out, id);
        n++;
        if (budget_span_has(stop, id)) { why = FINISH_STOP; break; }
        d->feed(d->ctx, &id, 1);
    }
    *n_out = n;
    return why;
}

// does the context have room for n more ids?
static inline int budget_fits(const Decoder *d, const BudgetConfig *c, size_t n) {
    return c->context_limit == 0 || d->length(d->ctx) + n <= c->context_limit;
}

static inline void budget_append(const Decoder *d, IdList *list, IdSpan s) {
    for (size_t i = 0; i < s.n; i++) idlist_push(list, s.ids[i]);
    if (s.n) d->feed(d->ctx, s.ids, s.n);
}

// ----------------------------------------------------------------------------
// the controller

// Runs the thinking phase, the transition and the answer phase. The decoder
// must already hold the prompt ending in "<|im_start|>think". res is
// overwritten (free it with budget_result_free).
static inline void budget_run(const Decoder *d, const BudgetConfig *c, BudgetResult *res) {
    memset(res, 0, sizeof *res);
    if (c->max_thinking < 1) die("budget forcing: the thinking budget must be >= 1, got %ld", c->max_thinking);
    if (c->max_answer < 0) die("budget forcing: the answer limit must be >= 0, got %ld", c->max_answer);
    if (c->thinking_end.n == 0 || c->think_stop.n == 0) die("budget forcing: delimiter or stop ids missing");
    const size_t prompt_len = d->length(d->ctx);
    IdList *gen = &res->thinking;   // grows to the untruncated thinking, then is cut in place
    FinishReason why;
    long n_round;
    const IdSpan strip = c->strip.n ? c->strip : c->think_stop;

    if (!c->readme_variant) {
        const int rounds = c->n_ignore < 0 ? 1 : c->n_ignore + 1;
        const long min_tokens = c->n_ignore < 0 ? 0 : 1;
        for (int r = 0;; r++) {
            why = budget_generate_round(d, c, c->max_thinking, min_tokens, c->think_stop, gen, &n_round);
            res->rounds++;
            if (why == FINISH_LENGTH || r == rounds - 1) break;
            // The round ended on a stop id (never fed). The harness strips it only if it is one of its
            // until_thinking ids (vllm_causallms.py:361-364); a stop id vLLM added from the generation
            // config (<|endoftext|>) stays in cont, and the next round's prompt is requests + cont
            // (:377), so the model reads it before "Wait".
            const uint32_t stop_id = gen->data[gen->len - 1];
            const int kept = !budget_span_has(strip, stop_id);
            if (!budget_fits(d, c, c->ignore_str.n + 1 + (size_t)kept)) { why = FINISH_LENGTH; break; }   // the context is full
            if (kept) d->feed(d->ctx, &stop_id, 1);
            else gen->len--;
            budget_append(d, gen, c->ignore_str);
            res->waits++;
        }
    } else {
        long remaining = c->max_thinking;
        why = budget_generate_round(d, c, remaining, 0, c->think_stop, gen, &n_round);
        res->rounds++;
        for (int i = 0; i < c->n_ignore; i++) {
            remaining -= n_round;
            if (remaining <= 0 || !budget_fits(d, c, c->ignore_str.n + 1)) break;
            if (why == FINISH_STOP) gen->len--;
            budget_append(d, gen, c->ignore_str);
            res->waits++;
            why = budget_generate_round(d, c, remaining, 1, c->think_stop, gen, &n_round);
            res->rounds++;
        }
    }
    res->think_finish = why;
    res->generated = gen->len;
    for (size_t i = 0; i < gen->len; i++) idlist_push(&res->uncut, gen->data[i]);
    // Rejection sampling (vllm_causallms.py:286-330): generate with max_tokens = B+1 (:268-269) and keep a
    // sample only if len(token_ids) <= B (:299), which holds only for one that stopped by itself.
    if (c->accept_within > 0 && !(why == FINISH_STOP && (long)gen->len <= c->accept_within)) {
        res->rejected = 1;
        return;
    }

    if (!c->readme_variant) {
        // the newline test reads the untruncated text, before the cut to B
        int ends_nl = 0;
        if (why == FINISH_LENGTH && c->ends_with_newline) ends_nl = c->ends_with_newline(c->text_ctx, gen->data, gen->len);
        if ((long)gen->len > c->max_thinking) gen->len = (size_t)c->max_thinking;
        for (size_t i = 0; i < strip.n; i++)   // the harness strips each of its stop ids in turn (:396-399)
            if (gen->len && gen->data[gen->len - 1] == strip.ids[i]) gen->len--;
        // the context must end with the thinking: rewind a cut, or feed a final stop id the
        // harness keeps (<|endoftext|>: requests[i] += cont + thinking_end_tok, :411)
        const size_t want = prompt_len + gen->len, have = d->length(d->ctx);
        if (have > want) d->rewind(d->ctx, want);
        else if (have < want) {
            if (!budget_fits(d, c, want - have)) { res->answer_finish = FINISH_LENGTH; return; }
            d->feed(d->ctx, gen->data + (have - prompt_len), want - have);
        }
        IdList *t = &res->transition;
        if (why == FINISH_LENGTH) {
            if (!ends_nl) for (size_t i = 0; i < c->newline.n; i++) idlist_push(t, c->newline.ids[i]);
            for (size_t i = 0; i < c->thinking_end_max.n; i++) idlist_push(t, c->thinking_end_max.ids[i]);
            res->forced_exit = 1;
        } else {
            for (size_t i = 0; i < c->thinking_end.n; i++) idlist_push(t, c->thinking_end.ids[i]);
        }
        res->answer_finish = FINISH_LENGTH;
        if (!budget_fits(d, c, t->len)) return;   // no room for the delimiter: no answer
        d->feed(d->ctx, t->data, t->len);
    } else if (why == FINISH_STOP) {
        gen->len--;   // the README appends the text, which lacks the stop id
    }

    // answer phase: max_answer tokens, stop at <|im_end|>
    res->answer_finish = FINISH_LENGTH;
    for (long n = 0; n < c->max_answer; n++) {
        if (c->context_limit && d->length(d->ctx) >= c->context_limit) break;
        uint32_t id = d->next(d->ctx, NULL, 0);
        if (budget_span_has(c->answer_stop, id)) { res->answer_finish = FINISH_STOP; break; }
        idlist_push(&res->answer, id);
        d->feed(d->ctx, &id, 1);
    }
}

#endif // S1C_BUDGET_H
