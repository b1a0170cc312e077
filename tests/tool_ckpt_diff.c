/*
 * tool_ckpt_diff.c: compares two training runs' checkpoints that started from
 * the same one, per tensor (used by tests/test_sft.sh: sft train vs ./s1 train).
 *
 *   build/tests/tool_ckpt_diff INIT A B LR1,LR2,...   # exit 0: every tensor within both bounds
 *
 * A and B took one AdamW step per learning rate listed (torch's AdamW,
 * beta1 0.9, beta2 0.95, as s1). The bound, per element of every tensor:
 * one AdamW step moves a weight by lr * m_hat /
 *    (sqrt(v_hat) + eps) plus the decay. By Cauchy-Schwarz over the gradient
 *    history, |m_hat / sqrt(v_hat)| <= C_t = (1 - b1) sqrt(1 - b2^t) /
 *    ((1 - b1^t) sqrt(1 - b2)) * sqrt(sum_{j<t} (b1^2 / b2)^j) at step t, so
 *    whatever gradients the two runs saw, their updates differ by at most
 *    2 lr_t C_t, and the decay (the same factor on both) does not widen a gap:
 * |A - B| <= sum_t 2 lr_t C_t.
 *
 * The bound holds whatever the gradients were, so it cannot tell a run that
 * never moved from one that did: tests/test_sft.sh checks that separately,
 * through each step's loss (which after the first update depends on it). The
 * updates' normwise disagreement ||(A - INIT) - (B - INIT)|| / ||A - INIT|| is
 * printed for information: Adam turns every gradient into a step of about lr,
 * so where a gradient is near zero (k_proj.bias: a bias on the keys barely
 * moves a softmax) its rounding noise alone picks the step's sign, and this
 * figure approaches 1 there however right the gradients are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "common/util.h"
#include "common/qwen2_weights.h"

static void read_tensor(void *ctx, const TensorInfo *t, SafetensorsFile *f, const SafetensorsEntry *e) {
    safetensors_read_f32(f, e, (float *)ctx + t->offset);
}

static float *load(const char *dir, Qwen2Config *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    config_read(c, path);
    float *p = (float *)mallocCheck(parameter_count(c) * sizeof(float));
    qwen2_checkpoint_read(dir, c, read_tensor, p);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 5) die("usage: tool_ckpt_diff INIT A B LR1,LR2,...");
    Qwen2Config c, ca, cb;
    float *init = load(argv[1], &c), *a = load(argv[2], &ca), *b = load(argv[3], &cb);
    if (parameter_count(&ca) != parameter_count(&c) || parameter_count(&cb) != parameter_count(&c)) die("the checkpoints have different shapes");
    const double b1 = 0.9, b2 = 0.95;
    double bound = 0.0;
    int t = 0;
    for (char *s = argv[4], *end; *s; s = *end ? end + 1 : end) {
        double lr = strtod(s, &end);
        if (end == s) die("bad learning-rate list '%s'", argv[4]);
        t++;
        double sum = 0.0;
        for (int j = 0; j < t; j++) sum += pow(b1 * b1 / b2, j);
        double C = (1 - b1) * sqrt(1 - pow(b2, t)) / ((1 - pow(b1, t)) * sqrt(1 - b2)) * sqrt(sum);
        bound += 2 * lr * C;
    }
    bound *= 1.0 + 1e-6;   // the fp32 rounding of the weights themselves
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(&c, &count);
    int bad = 0;
    double worst_el = 0, worst_rel = 0;
    for (size_t i = 0; i < count; i++) {
        const TensorInfo *ti = &tensors[i];
        double max_diff = 0, dd = 0, da = 0;
        for (size_t j = ti->offset; j < ti->offset + ti->numel; j++) {
            double d = fabs((double)a[j] - (double)b[j]), ua = (double)a[j] - init[j];
            max_diff = d > max_diff ? d : max_diff;
            dd += d * d;
            da += ua * ua;
        }
        double rel = da > 0 ? sqrt(dd / da) : (dd > 0 ? INFINITY : 0);
        if (max_diff > bound) {
            printf("FAIL %s: max |A - B| %.3g > bound %.3g\n", ti->name, max_diff, bound);
            bad = 1;
        }
        worst_el = max_diff > worst_el ? max_diff : worst_el;
        worst_rel = rel > worst_rel ? rel : worst_rel;
    }
    printf("%zu tensors after %d steps: max |A - B| %.3g (bound %.3g), worst update disagreement %.3g\n", count, t,
           worst_el, bound, worst_rel);
    free(tensors); free(init); free(a); free(b);
    return bad;
}
