/*
 * test_s1.c: s1.c against independent oracles.
 *
 *   1. HF transformers fixtures (tests/fixtures/qwen-tiny-{tied,gqa}, made by
 *      scripts/gen_qwen_fixtures.py): logits, s1 loss, every gradient, the
 *      schedule, grad norms and every parameter after 3 AdamW steps.
 *   2. Finite differences of the loss for every parameter tensor (tied and untied).
 *   3. Save/load round trip, bit-exact.
 *   4. Resume: 6 steps in one run == 3 steps, checkpoint, resume, 3 steps (bitwise).
 *   5. KV-cache decoding token by token == the batched forward pass.
 *   6. The last step of an epoch against a port of accelerate 1.0.1's loop,
 *      the --loss-norm weights by hand, and the weight-decay set of
 *      transformers 4.46.1 (RMSNorm weights decay) and of --exempt-norms.
 *
 * Tolerances (fp32 throughout). torch's own fp32 results differ from an fp64
 * rerun by <= 3.9e-7 (logits, |logit| ~ 1) and <= 2.8e-7 (grads, largest 0.62):
 * a few ulps of accumulated rounding over sums of at most ~140 terms. We allow
 * 1e-5 of the tensor's largest magnitude: ~30x torch's own noise, yet a wrong
 * formula (a missing bias, a wrong RoPE pairing, a wrong normalisation) moves
 * results by 1e-3 or more of that scale. after3 uses the measure suggested by
 * the fixture's README (AdamW amplifies rounding of tiny gradient entries).
 */
#define S1_NO_MAIN
#include "../s1.c"
#include "test.h"

// ----------------------------------------------------------------------------
// reading the reference tensors

static void *ref_read(SafetensorsFile *f, const char *name, const char *dtype, size_t *numel) {
    const SafetensorsEntry *e = safetensors_find(f, name);
    if (e == NULL) die("%s: reference tensor %s missing", f->path, name);
    if (strcmp(e->dtype, dtype) != 0) die("%s: reference tensor %s is %s, expected %s", f->path, name, e->dtype, dtype);
    void *p = mallocCheck(e->end - e->begin);
    safetensors_read_raw(f, e, p);
    if (numel) *numel = e->numel;
    return p;
}

static float ref_scalar(SafetensorsFile *f, const char *name) {
    float *p = (float *)ref_read(f, name, "F32", NULL);
    float x = *p;
    free(p);
    return x;
}

static double ref_meta(SafetensorsFile *f, const char *key) {
    const JsonValue *v = json_get(f->metadata, key);
    if (v == NULL || v->type != JSON_STRING) die("%s: metadata %s missing", f->path, key);
    return strtod(v->str, NULL);
}

// max |a - b| / max |b|
static double rel_max_diff(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        d = x > d ? x : d;
        s = fabs((double)b[i]) > s ? fabs((double)b[i]) : s;
    }
    return s > 0 ? d / s : d;
}

// ----------------------------------------------------------------------------
// 1. the HF fixtures

static void test_fixture(const char *dir) {
    char path[512], name[256];
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    SafetensorsFile ref;
    safetensors_open(&ref, path);
    Qwen2 m;
    qwen2_load(&m, dir);
    const Qwen2Config *c = &m.config;
    size_t N, S1, V = c->vocab_size;
    int32_t *ids32 = (int32_t *)ref_read(&ref, "input_ids", "I32", &N);
    int64_t *offs64 = (int64_t *)ref_read(&ref, "seq_offsets", "I64", &S1);
    uint8_t *mask = (uint8_t *)ref_read(&ref, "target_mask", "U8", NULL);
    uint32_t *ids = (uint32_t *)mallocCheck(N * sizeof(uint32_t));
    size_t *offs = (size_t *)mallocCheck(S1 * sizeof(size_t));
    for (size_t i = 0; i < N; i++) ids[i] = (uint32_t)ids32[i];
    for (size_t i = 0; i < S1; i++) offs[i] = (size_t)offs64[i];
    size_t S = S1 - 1;

    snprintf(name, sizeof name, "%s: config read (head_dim, theta, tying)", dir);
    TEST_BEGIN(name);
    CHECK(c->head_dim == c->hidden_size / c->num_heads, "head_dim %zu", c->head_dim);
    CHECK(c->rope_theta == (c->tie_word_embeddings ? 1e6 : 1e4), "rope_theta %g", c->rope_theta);
    CHECK(m.num_tensors == (c->tie_word_embeddings ? 26u : 39u), "%zu tensors", m.num_tensors);
    TEST_END();

    // forward: logits and the s1 loss
    float loss = qwen2_forward(&m, ids, mask, offs, S);
    size_t nlog;
    float *ref_logits = (float *)ref_read(&ref, "logits", "F32", &nlog);
    float ref_loss = ref_scalar(&ref, "loss");
    snprintf(name, sizeof name, "%s: logits and loss match transformers", dir);
    TEST_BEGIN(name);
    CHECK(nlog == N * V, "logits size %zu, want %zu", nlog, N * V);
    double dl = rel_max_diff(m.acts.logits, ref_logits, N * V);
    printf("  logits: max|diff|/max|ref| = %.2e; loss %.7f vs %.7f\n", dl, loss, ref_loss);
    CHECK(dl <= 1e-5, "logits rel diff %.3e > 1e-5", dl);
    CHECK(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss), "loss %.8f vs %.8f", loss, ref_loss);
    TEST_END();

    // backward: every gradient
    qwen2_zero_grad(&m);
    qwen2_backward(&m, 1.0f);
    snprintf(name, sizeof name, "%s: every gradient matches transformers", dir);
    TEST_BEGIN(name);
    double worst = 0;
    for (size_t i = 0; i < m.num_tensors; i++) {
        const TensorInfo *t = &m.tensors[i];
        snprintf(path, sizeof path, "grad.%s", t->name);
        size_t n;
        float *g = (float *)ref_read(&ref, path, "F32", &n);
        CHECK(n == t->numel, "%s size", path);
        double d = rel_max_diff(m.grads_memory + t->offset, g, t->numel);
        worst = d > worst ? d : worst;
        CHECK(d <= 1e-5, "%s: rel diff %.3e > 1e-5", t->name, d);
        free(g);
    }
    printf("  gradients: worst tensor max|diff|/max|ref| = %.2e\n", worst);
    TEST_END();

    // three AdamW steps with clipping, crossing the end of warmup
    size_t total = (size_t)ref_meta(&ref, "total_steps"), warmup = (size_t)ref_meta(&ref, "warmup_steps");
    double peak = ref_meta(&ref, "peak_lr");
    AdamWConfig cfg = {(float)ref_meta(&ref, "beta1"), (float)ref_meta(&ref, "beta2"), (float)ref_meta(&ref, "eps"),
                       (float)ref_meta(&ref, "weight_decay"), (float)ref_meta(&ref, "max_grad_norm"), 0};
    float *init = (float *)mallocCheck(m.num_parameters * sizeof(float));
    memcpy(init, m.params_memory, m.num_parameters * sizeof(float));
    snprintf(name, sizeof name, "%s: schedule, losses and grad norms of 3 steps", dir);
    TEST_BEGIN(name);
    CHECK(schedule_warmup_steps(total, 0.05) == warmup, "warmup %zu vs %zu", schedule_warmup_steps(total, 0.05), warmup);
    for (size_t k = 0; k < 3; k++) {
        qwen2_zero_grad(&m);
        float lk = qwen2_forward(&m, ids, mask, offs, S);
        qwen2_backward(&m, 1.0f);
        double lr = schedule_lr(k, total, warmup, peak);
        float norm = qwen2_update(&m, lr, &cfg);
        snprintf(path, sizeof path, "step%zu.lr", k);
        float rlr = ref_scalar(&ref, path);
        snprintf(path, sizeof path, "step%zu.loss", k);
        float rloss = ref_scalar(&ref, path);
        snprintf(path, sizeof path, "step%zu.grad_norm", k);
        float rnorm = ref_scalar(&ref, path);
        printf("  step %zu: lr %.6g (%.6g) loss %.7f (%.7f) grad norm %.7f (%.7f)\n", k, lr, rlr, lk, rloss, norm, rnorm);
        CHECK(fabs(lr - rlr) <= 1e-7 * peak, "step %zu lr %g vs %g", k, lr, rlr);
        CHECK(fabs(lk - rloss) <= 1e-5 * fabs(rloss), "step %zu loss %.8f vs %.8f", k, lk, rloss);
        CHECK(fabs(norm - rnorm) <= 1e-5 * fabs(rnorm), "step %zu grad norm %.8f vs %.8f", k, norm, rnorm);
    }
    TEST_END();
    // per tensor: ||(ours - init) - (ref - init)|| / ||ref - init|| <= 5e-3 (torch's own fp32 noise
    // is <= 6.2e-4; dropping the weight decay or the bias correction moves it by >= 2e-2), and
    // max |ours - ref| <= 2e-4 (the largest update is 1.6e-3).
    snprintf(name, sizeof name, "%s: every parameter after 3 AdamW steps", dir);
    TEST_BEGIN(name);
    double worst_rel = 0, worst_abs = 0;
    for (size_t i = 0; i < m.num_tensors; i++) {
        const TensorInfo *t = &m.tensors[i];
        snprintf(path, sizeof path, "after3.%s", t->name);
        float *r = (float *)ref_read(&ref, path, "F32", NULL);
        const float *p = m.params_memory + t->offset, *p0 = init + t->offset;
        double num = 0, den = 0, mx = 0;
        for (size_t j = 0; j < t->numel; j++) {
            double d = ((double)p[j] - p0[j]) - ((double)r[j] - p0[j]), u = (double)r[j] - p0[j];
            num += d * d;
            den += u * u;
            mx = fabs((double)p[j] - r[j]) > mx ? fabs((double)p[j] - r[j]) : mx;
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        worst_rel = rel > worst_rel ? rel : worst_rel;
        worst_abs = mx > worst_abs ? mx : worst_abs;
        CHECK(rel <= 5e-3, "%s: update rel diff %.3e > 5e-3", t->name, rel);
        CHECK(mx <= 2e-4, "%s: max abs diff %.3e > 2e-4", t->name, mx);
        free(r);
    }
    printf("  after 3 steps: worst update rel diff %.2e, worst max abs %.2e\n", worst_rel, worst_abs);
    TEST_END();

    // save, reload: bit-exact, and a loaded copy gives the same logits
    snprintf(name, sizeof name, "%s: save + load round trip is bit-exact", dir);
    TEST_BEGIN(name);
    char tmpdir[] = "/tmp/test_s1_saveXXXXXX";
    if (mkdtemp(tmpdir) == NULL) die("mkdtemp failed");
    qwen2_save(&m, tmpdir);
    Qwen2 m2;
    qwen2_load(&m2, tmpdir);
    CHECK(m2.num_parameters == m.num_parameters, "parameter count");
    CHECK(memcmp(m2.params_memory, m.params_memory, m.num_parameters * sizeof(float)) == 0, "parameters differ after reload");
    CHECK(m2.step == 3, "step %zu in the metadata, want 3", m2.step);
    CHECK(m2.config.rope_theta == c->rope_theta && m2.config.tie_word_embeddings == c->tie_word_embeddings &&
          m2.config.num_kv_heads == c->num_kv_heads, "config changed");
    qwen2_free(&m2);
    snprintf(path, sizeof path, "rm -rf %s", tmpdir);
    if (system(path) != 0) die("cleanup failed");
    TEST_END();

    free(init); free(ref_logits); free(ids32); free(offs64); free(mask); free(ids); free(offs);
    qwen2_free(&m);
    safetensors_close(&ref);
}

// ----------------------------------------------------------------------------
// 2. finite differences

static Qwen2Config tiny_config(int tied) {
    Qwen2Config c = {.vocab_size = 11, .hidden_size = 8, .intermediate_size = 12, .num_layers = 2, .num_heads = 4,
                     .num_kv_heads = 2, .head_dim = 6, .max_position_embeddings = 64, .rope_theta = 100.0,
                     .rms_norm_eps = 1e-6, .tie_word_embeddings = tied, .bos_token_id = -1, .eos_token_id = -1};
    return c;
}

// A random model with O(1) weights, so every path carries a visible gradient.
static void init_spread(Qwen2 *m, const Qwen2Config *c, uint64_t seed) {
    qwen2_init_random(m, c, seed);
    uint64_t state = seed * 7 + 1;
    for (size_t i = 0; i < m->num_tensors; i++) {
        TensorInfo *t = &m->tensors[i];
        int kind = parameter_info[t->param].kind;
        float *p = m->params_memory + t->offset;
        for (size_t j = 0; j < t->numel; j++)
            p[j] = kind == KIND_WEIGHT ? 0.5f * rng_normal(&state) : kind == KIND_NORM ? 1.0f + 0.2f * rng_normal(&state) : 0.3f * rng_normal(&state);
    }
}

// 3 sequences (lengths 6, 5, 3); the last has no target, yet counts in the mean.
static const uint32_t fd_tokens[14] = {1, 4, 7, 2, 9, 3, 5, 5, 0, 10, 6, 8, 2, 1};
static const uint8_t fd_targets[14] = {0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0};
static const size_t fd_seq_offsets[4] = {0, 6, 11, 14};

static void test_finite_differences(int tied) {
    char name[128];
    snprintf(name, sizeof name, "finite differences of every parameter tensor (%s)", tied ? "tied" : "untied");
    TEST_BEGIN(name);
    Qwen2Config c = tiny_config(tied);
    Qwen2 m;
    init_spread(&m, &c, 5);
    qwen2_zero_grad(&m);
    float loss = qwen2_forward(&m, fd_tokens, fd_targets, fd_seq_offsets, 3);
    qwen2_backward(&m, 1.0f);
    // the third sequence has no targets: the loss is (mean_1 + mean_2) / 3, checked by hand
    double want = 0;
    for (size_t s = 0; s < 2; s++) {
        double sum = 0;
        size_t n = 0;
        qwen2_forward(&m, fd_tokens + fd_seq_offsets[s], fd_targets + fd_seq_offsets[s], (size_t[]){0, fd_seq_offsets[s + 1] - fd_seq_offsets[s]}, 1);
        const float *lg = m.acts.logits;
        for (size_t t = fd_seq_offsets[s] + 1; t < fd_seq_offsets[s + 1]; t++) {
            if (!fd_targets[t]) continue;
            const float *row = lg + (t - 1 - fd_seq_offsets[s]) * c.vocab_size;
            double z = 0;
            for (size_t v = 0; v < c.vocab_size; v++) z += exp((double)row[v]);
            sum += log(z) - row[fd_tokens[t]];
            n++;
        }
        want += sum / (double)n;
    }
    want /= 3.0;
    CHECK(fabs(loss - want) <= 1e-5 * want, "loss %.7f, hand-computed %.7f", loss, want);
    // central differences, h = 1e-2: truncation error O(h^2 f''') ~ 1e-4 relative, fp32 rounding of the
    // loss (~3e-7) / 2h ~ 2e-5. A wrong gradient is off by O(1).
    const float h = 1e-2f;
    uint64_t state = 99;
    double worst = 0;
    for (size_t i = 0; i < m.num_tensors; i++) {
        const TensorInfo *t = &m.tensors[i];
        double num = 0, den = 0;
        for (int sample = 0; sample < 6; sample++) {
            size_t j = (size_t)(rng_uniform(&state) * (double)t->numel);
            float *p = m.params_memory + t->offset + j, saved = *p;
            *p = saved + h;
            float lp = qwen2_forward(&m, fd_tokens, fd_targets, fd_seq_offsets, 3);
            *p = saved - h;
            float lm = qwen2_forward(&m, fd_tokens, fd_targets, fd_seq_offsets, 3);
            *p = saved;
            double fd = ((double)lp - (double)lm) / (2.0 * h), g = m.grads_memory[t->offset + j];
            num += (fd - g) * (fd - g);
            den += g * g;
        }
        double rel = sqrt(num / (den > 1e-12 ? den : 1e-12));
        worst = rel > worst ? rel : worst;
        CHECK(rel <= 2e-3, "%s: |fd - grad| / |grad| = %.3e over 6 entries", t->name, rel);
    }
    printf("  worst tensor |fd - grad| / |grad| = %.2e\n", worst);
    qwen2_free(&m);
    TEST_END();
}

// ----------------------------------------------------------------------------
// 3b. checkpoint formats: sharded with an index, BF16 and F16 conversions

static void test_checkpoint_formats(void) {
    TEST_BEGIN("F16 and BF16 conversions");
    CHECK(half_to_float(0x3c00) == 1.0f && half_to_float(0xc000) == -2.0f && half_to_float(0x7bff) == 65504.0f,
          "normal halves");
    CHECK(half_to_float(0x0001) == ldexpf(1.0f, -24) && half_to_float(0x03ff) == ldexpf(1023.0f, -24), "subnormal halves");
    CHECK(isinf(half_to_float(0x7c00)) && isnan(half_to_float(0x7e00)) && signbit(half_to_float(0x8000)), "inf, nan, -0");
    CHECK(bf16_to_float(0x3f80) == 1.0f && bf16_to_float(0xc0a0) == -5.0f, "bf16 -> float");
    CHECK(float_to_bf16(1.0f) == 0x3f80 && float_to_bf16(1.0f + 1.0f / 256) == 0x3f80 && float_to_bf16(1.0f + 3.0f / 256) == 0x3f82,
          "float -> bf16 rounds to nearest even");
    TEST_END();

    TEST_BEGIN("sharded checkpoint (index.json, F32 + BF16 shards) loads");
    Qwen2 m, m2;
    qwen2_load(&m, "tests/fixtures/qwen-tiny-gqa");
    char dir[] = "/tmp/test_s1_shardXXXXXX", path[512];
    if (mkdtemp(dir) == NULL) die("mkdtemp failed");
    snprintf(path, sizeof path, "%s/config.json", dir);
    config_write(&m.config, path);
    size_t split = m.num_tensors / 2;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    safetensors_write(path, m.tensors, 0, split, m.params_memory, 0, m.step);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    safetensors_write(path, m.tensors, split, m.num_tensors - split, m.params_memory, 1, m.step);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *fp = fopenCheck(path, "w");
    fprintf(fp, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (size_t i = 0; i < m.num_tensors; i++)
        fprintf(fp, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", m.tensors[m.num_tensors - 1 - i].name,
                m.num_tensors - 1 - i < split ? 1 : 2);
    fprintf(fp, "}}\n");
    fcloseCheck(fp, path);
    qwen2_load(&m2, dir);
    size_t exact = 0, rounded = 0, n_exact = 0, n_rounded = 0;
    for (size_t i = 0; i < m.num_tensors; i++) {
        const TensorInfo *t = &m.tensors[i];
        *(i < split ? &n_exact : &n_rounded) += t->numel;
        for (size_t j = 0; j < t->numel; j++) {
            float a = m.params_memory[t->offset + j], b = m2.params_memory[t->offset + j];
            if (i < split) exact += a == b;
            else rounded += b == bf16_to_float(float_to_bf16(a)) && fabsf(a - b) <= ldexpf(fabsf(a), -8);
        }
    }
    CHECK(exact == n_exact, "F32 shard: %zu of %zu values exact", exact, n_exact);
    CHECK(rounded == n_rounded, "BF16 shard: %zu of %zu values are the bf16 rounding", rounded, n_rounded);
    qwen2_free(&m);
    qwen2_free(&m2);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    if (system(path) != 0) die("cleanup failed");
    TEST_END();
}

// ----------------------------------------------------------------------------
// 4b. results do not depend on the thread count (what makes resume bit-exact)

static void test_thread_independence(void) {
    TEST_BEGIN("loss, logits and gradients are bitwise identical with 1 and 3 threads");
    // big enough that every layer, attention included, crosses MIN_PARALLEL_WORK
    Qwen2Config c = {.vocab_size = 300, .hidden_size = 256, .intermediate_size = 384, .num_layers = 2, .num_heads = 8,
                     .num_kv_heads = 2, .head_dim = 32, .max_position_embeddings = 256, .rope_theta = 1e6,
                     .rms_norm_eps = 1e-6, .tie_word_embeddings = 1, .bos_token_id = -1, .eos_token_id = -1};
    size_t offs[3] = {0, 70, 150}, N = 150;
    uint32_t ids[150];
    uint8_t mask[150];
    uint64_t state = 5;
    for (size_t t = 0; t < N; t++) { ids[t] = (uint32_t)(rng_next(&state) % 300); mask[t] = t != 0 && t != 70; }
    Qwen2 m;
    init_spread(&m, &c, 3);
    float *first = NULL, loss[2];
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run == 0 ? 1 : 3);
        qwen2_zero_grad(&m);
        loss[run] = qwen2_forward(&m, ids, mask, offs, 2);
        if (run == 1) CHECK(memcmp(first + m.num_parameters, m.acts.logits, N * c.vocab_size * sizeof(float)) == 0, "logits differ");
        qwen2_backward(&m, 1.0f);
        if (run == 0) {
            first = (float *)mallocCheck((m.num_parameters + N * c.vocab_size) * sizeof(float));
            memcpy(first, m.grads_memory, m.num_parameters * sizeof(float));
            qwen2_forward(&m, ids, mask, offs, 2);  // the logits again (backward overwrote them)
            memcpy(first + m.num_parameters, m.acts.logits, N * c.vocab_size * sizeof(float));
        }
    }
    CHECK(memcmp(&loss[0], &loss[1], sizeof(float)) == 0, "loss %.9g vs %.9g", loss[0], loss[1]);
    CHECK(memcmp(first, m.grads_memory, m.num_parameters * sizeof(float)) == 0, "gradients differ");
    omp_set_num_threads(2);
    free(first);
    qwen2_free(&m);
    TEST_END();
}

// ----------------------------------------------------------------------------
// 4. resume gives bit-identical weights

static int files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file_check(a, &na), *y = read_file_check(b, &nb);
    int eq = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

// last_batch, loss_norm, loss_ranks: the rules under test (the last step of each epoch is filled
// or short; the loss weights come from the step's data)
static void test_resume(unsigned last_batch, unsigned loss_norm, size_t loss_ranks) {
    char name[200];
    snprintf(name, sizeof name, "resume: 6 steps == 3 steps + checkpoint + resume 3 steps, bitwise (--last-batch %s, --loss-norm %s, "
             "--loss-ranks %zu)", last_batch == TRAIN_LAST_BATCH_S1 ? "s1" : "short", loss_norm == TRAIN_LOSS_TOKENS ? "tokens" : "sequence",
             loss_ranks);
    TEST_BEGIN(name);
    char tmp[] = "/tmp/test_s1_resumeXXXXXX";
    if (mkdtemp(tmp) == NULL) die("mkdtemp failed");
    char shard[256], config[256], dir_a[256], dir_b[256], fa[300], fb[300];
    snprintf(shard, sizeof shard, "%s/train.shard", tmp);
    snprintf(config, sizeof config, "%s/config.json", tmp);
    snprintf(dir_a, sizeof dir_a, "%s/a", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/b", tmp);
    // 7 sequences of 5..12 tokens; batch 3 -> 3 steps per epoch (the last one with 1 sequence, or
    // that one and the epoch's first 2 again), 2 epochs
    uint64_t offsets[8] = {0};
    uint32_t ids[100];
    uint8_t mask[100];
    uint64_t state = 3;
    for (int s = 0; s < 7; s++) {
        uint64_t len = 5 + rng_next(&state) % 8;
        offsets[s + 1] = offsets[s] + len;
        for (uint64_t t = offsets[s]; t < offsets[s + 1]; t++) {
            ids[t] = (uint32_t)(rng_next(&state) % 11);
            mask[t] = t > offsets[s] + 1;
        }
    }
    shard_write(shard, 11, 7, offsets, ids, mask);
    Qwen2Config c = tiny_config(0);
    config_write(&c, config);
    TrainOptions o;
    memset(&o, 0, sizeof o);
    o.settings = (TrainSettings){.lr = 1e-2, .warmup_ratio = 0.2, .weight_decay = 0.1, .max_grad_norm = 0.5, .beta1 = 0.9,
                                 .beta2 = 0.95, .eps = 1e-8, .decay_norm_weights = 1, .epochs = 2, .batch_size = 3, .max_seq_len = 10,
                                 .seed = 42, .last_batch = last_batch, .loss_norm = loss_norm, .loss_ranks = loss_ranks};
    o.data_path = shard;
    o.init_config = config;
    o.init_seed = 7;
    o.micro_batch = 2;
    o.quiet = 1;
    TrainOptions full = o, first = o, second = o;
    full.out_dir = dir_a;
    train_run(&full);
    first.out_dir = dir_b;
    first.stop_at = 3;
    train_run(&first);
    snprintf(fa, sizeof fa, "%s/model.safetensors", dir_a);
    snprintf(fb, sizeof fb, "%s/model.safetensors", dir_b);
    CHECK(!files_equal(fa, fb), "after 3 steps the weights already equal the 6-step result");
    second.init_config = NULL;
    second.resume_dir = dir_b;
    second.out_dir = dir_b;
    second.settings.lr = 0;  // ignored: a resume takes the settings from optimizer.bin
    train_run(&second);
    CHECK(files_equal(fa, fb), "model.safetensors differs between the straight and the resumed run");
    snprintf(fa, sizeof fa, "%s/optimizer.bin", dir_a);
    snprintf(fb, sizeof fb, "%s/optimizer.bin", dir_b);
    CHECK(files_equal(fa, fb), "optimizer.bin differs between the straight and the resumed run");
    Qwen2 m;
    qwen2_load(&m, dir_a);
    CHECK(m.step == 6, "step %zu, want 6", m.step);
    qwen2_free(&m);
    snprintf(fa, sizeof fa, "rm -rf %s", tmp);
    if (system(fa) != 0) die("cleanup failed");
    TEST_END();
}

// ----------------------------------------------------------------------------
// 6. issue 12: the last batch of an epoch, the loss weights, the weight-decay set

// accelerate 1.0.1's BatchSamplerShard._iter_with_no_split (src/accelerate/data_loader.py:209-254),
// ported line by line for s1's case: a batch sampler of one index per batch (per_device_train_batch_size
// 1) over an epoch's permutation perm[0..n), num_processes P ranks, drop_last False, even_batches True.
// Writes what rank `rank` yields, one index per step, into out; returns the number of steps.
static size_t accelerate_rank_indices(const size_t *perm, size_t n, size_t P, size_t rank, size_t *out) {
    size_t *initial = (size_t *)mallocCheck(2 * (n + P) * sizeof(size_t)), ni = 0, count = 0, idx = 0;
    long to_yield = -1;   // batch_to_yield: -1 is []
    for (idx = 0; idx < n; idx++) {                           // for idx, batch in enumerate(self.batch_sampler):
        if (idx < P) initial[ni++] = perm[idx];               //     if not drop_last and idx < P: initial_data += batch
        if (idx % P == rank) to_yield = (long)perm[idx];      //     if idx % P == process_index: batch_to_yield = batch
        if (idx % P == P - 1) {                               //     if idx % P == P - 1 and len(batch) == batch_size:
            out[count++] = (size_t)to_yield;                  //         yield batch_to_yield
            to_yield = -1;                                    //         batch_to_yield = []
        }
    }
    idx = n - 1;                                              // (Python leaves idx at the last batch)
    if (ni > 0) {                                             // if not drop_last and len(initial_data) > 0: (even_batches)
        if (to_yield >= 0) out[count++] = (size_t)to_yield;   //     if len(batch_to_yield) == batch_size: yield it
        while (ni < P) {                                      //     while len(initial_data) < P * batch_size:
            memcpy(initial + ni, initial, ni * sizeof(size_t));   //     initial_data += initial_data
            ni *= 2;
        }
        idx += 1;                                             //     len(batch) == batch_size: batch = []; idx += 1
        size_t cycle = 0;
        while (idx % P != 0) {                                //     while idx % P != 0 or len(batch) > 0:
            size_t end = cycle + 1;                           //         end_index = cycle_index + batch_size - len(batch)
            if (idx % P == rank) out[count++] = initial[cycle];   //     batch += initial_data[cycle:end]; yield on its rank
            cycle = end;
            idx += 1;
        }
    }
    free(initial);
    return count;
}

// A shard of n sequences, sequence s of 1 + s % 5 tokens, with targets from its second token
// (mask_all 0: no targets at all).
static void write_test_shard(const char *path, size_t n, int mask_all) {
    uint64_t *offsets = (uint64_t *)callocCheck(n + 1, sizeof(uint64_t));
    for (size_t s = 0; s < n; s++) offsets[s + 1] = offsets[s] + 1 + s % 5;
    uint32_t *ids = (uint32_t *)mallocCheck(offsets[n] * sizeof(uint32_t));
    uint8_t *mask = (uint8_t *)mallocCheck(offsets[n]);
    for (size_t s = 0; s < n; s++)
        for (uint64_t t = offsets[s]; t < offsets[s + 1]; t++) {
            ids[t] = (uint32_t)((s * 7 + t) % 11);
            mask[t] = mask_all && t > offsets[s];
        }
    shard_write(path, 11, n, offsets, ids, mask);
    free(offsets); free(ids); free(mask);
}

static void test_last_batch(void) {
    TEST_BEGIN("the last step of an epoch: accelerate 1.0.1's even_batches fill (--last-batch s1) and --last-batch short");
    char tmp[] = "/tmp/test_s1_lastXXXXXX", path[300];
    if (mkdtemp(tmp) == NULL) die("mkdtemp failed");
    snprintf(path, sizeof path, "%s/s.shard", tmp);
    // By hand: 10 sequences in steps of 4: steps 0, 1 take positions 0-3 and 4-7 of the epoch's
    // permutation; step 2 takes 8 and 9, and the ranks 2 and 3 left without one take positions 0, 1.
    write_test_shard(path, 10, 1);
    DataLoader d;
    dataloader_init(&d, path, 4, 100, 42);
    CHECK(dataloader_steps_per_epoch(&d) == 3, "10 sequences in steps of 4: %zu steps per epoch, want 3", dataloader_steps_per_epoch(&d));
    for (size_t epoch = 0; epoch < 2; epoch++) {
        dataloader_batch(&d, 3 * epoch + 2);
        size_t want[4] = {d.order[8], d.order[9], d.order[0], d.order[1]};
        CHECK(d.num_seqs == 4, "epoch %zu: the last step has %zu sequences, want 4", epoch, d.num_seqs);
        for (size_t i = 0; i < 4 && i < d.num_seqs; i++) {
            CHECK(d.seqs[i] == want[i], "epoch %zu, last step, sequence %zu: %zu, want %zu", epoch, i, d.seqs[i], want[i]);
            CHECK(d.seq_offsets[i + 1] - d.seq_offsets[i] == 1 + want[i] % 5, "epoch %zu: sequence %zu gathered with the wrong length", epoch, i);
        }
    }
    d.last_batch = TRAIN_LAST_BATCH_SHORT;
    dataloader_batch(&d, 2);
    CHECK(d.num_seqs == 2 && d.seqs[0] == d.order[8] && d.seqs[1] == d.order[9], "--last-batch short: %zu sequences, want positions 8, 9", d.num_seqs);
    dataloader_free(&d);
    // Against the port of accelerate's loop: every step of two epochs, s1's 1000 x 16 among them, a
    // shard smaller than the batch (initial_data doubled), one that divides, and 7 in steps of 3.
    const size_t cases[][2] = {{10, 4}, {1000, 16}, {3, 4}, {8, 4}, {7, 3}, {1, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c][0], B = cases[c][1];
        write_test_shard(path, n, 1);
        dataloader_init(&d, path, B, 100, 7);
        size_t spe = dataloader_steps_per_epoch(&d), *got = (size_t *)mallocCheck((spe + 2) * B * sizeof(size_t));
        for (size_t epoch = 0; epoch < 2; epoch++) {
            dataloader_batch(&d, epoch * spe);   // the epoch's permutation
            size_t *perm = (size_t *)mallocCheck(n * sizeof(size_t)), *yields = (size_t *)mallocCheck((n + B) * sizeof(size_t));
            memcpy(perm, d.order, n * sizeof(size_t));
            for (size_t k = 0; k < spe; k++) {
                dataloader_batch(&d, epoch * spe + k);
                CHECK(d.num_seqs == B, "n %zu, B %zu: step %zu has %zu sequences", n, B, k, d.num_seqs);
                memcpy(got + k * B, d.seqs, B * sizeof(size_t));
            }
            for (size_t r = 0; r < B; r++) {
                size_t steps = accelerate_rank_indices(perm, n, B, r, yields);
                CHECK(steps == spe, "n %zu, B %zu: rank %zu takes %zu steps, we take %zu", n, B, r, steps, spe);
                for (size_t k = 0; k < steps && k < spe; k++)
                    CHECK(got[k * B + r] == yields[k], "n %zu, B %zu, epoch %zu, step %zu, rank %zu: sequence %zu, accelerate's %zu",
                          n, B, epoch, k, r, got[k * B + r], yields[k]);
            }
            free(perm); free(yields);
        }
        free(got);
        dataloader_free(&d);
    }
    snprintf(path, sizeof path, "rm -rf %s", tmp);
    if (system(path) != 0) die("cleanup failed");
    TEST_END();
}

// A batch by hand: sequences with the given target counts (each token after the first a target
// while the count lasts), for train_loss_weights(), which reads num_seqs, seq_offsets and mask.
static void hand_batch(DataLoader *d, size_t *offs, uint8_t *mask, const size_t *targets, size_t B) {
    memset(d, 0, sizeof *d);
    offs[0] = 0;
    for (size_t i = 0; i < B; i++) {
        offs[i + 1] = offs[i] + 6;
        for (size_t t = 0; t < 6; t++) mask[offs[i] + t] = t >= 1 && t <= targets[i];
    }
    d->seq_offsets = offs;
    d->mask = mask;
    d->num_seqs = B;
}

static void test_loss_weights(void) {
    TEST_BEGIN("--loss-norm: each sequence's share of the step's loss, by hand");
    size_t offs[5];
    uint8_t mask[24];
    double w[4];
    DataLoader d;
    TrainSettings s;
    memset(&s, 0, sizeof s);
    struct { size_t targets[4], B; unsigned norm; size_t ranks; double want[4]; } cases[] = {
        // the sequence mean: 1/B each
        {{1, 2, 3, 4}, 4, TRAIN_LOSS_SEQUENCE, 1, {0.25, 0.25, 0.25, 0.25}},
        // one window (one rank accumulating the step): n_i / (1 + 2 + 3 + 4)
        {{1, 2, 3, 4}, 4, TRAIN_LOSS_TOKENS, 1, {0.1, 0.2, 0.3, 0.4}},
        // 2 ranks: sequences 0, 2 are rank 0's (4 targets), 1, 3 rank 1's (6); ranks averaged
        {{1, 2, 3, 4}, 4, TRAIN_LOSS_TOKENS, 2, {1.0 / 8, 2.0 / 12, 3.0 / 8, 4.0 / 12}},
        // a rank per sequence: the sequence mean again
        {{1, 2, 3, 4}, 4, TRAIN_LOSS_TOKENS, 4, {0.25, 0.25, 0.25, 0.25}},
        // a sequence without targets weighs 0, its window's others take the window's share
        {{0, 2, 3, 4}, 4, TRAIN_LOSS_TOKENS, 2, {0.0, 2.0 / 12, 3.0 / 6, 4.0 / 12}},
        // a short step (--last-batch short): 2 sequences on 4 ranks, 2 of them hold one
        {{3, 5, 0, 0}, 2, TRAIN_LOSS_TOKENS, 4, {0.5, 0.5}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hand_batch(&d, offs, mask, cases[c].targets, cases[c].B);
        s.loss_norm = cases[c].norm;
        s.loss_ranks = cases[c].ranks;
        train_loss_weights(&d, &s, w);
        for (size_t i = 0; i < cases[c].B; i++)
            CHECK(fabs(w[i] - cases[c].want[i]) < 1e-15, "case %zu, sequence %zu: %.17g, want %.17g", c, i, w[i], cases[c].want[i]);
    }
    TEST_END();

    // The loss and gradient with one window's weights, on a model: every target token alike, i.e.
    // sum_s n_s * (token mean of s) / sum_s n_s, from each sequence alone, in two micro-batches.
    TEST_BEGIN("--loss-norm tokens: loss and gradients weigh every target token of the window alike");
    Qwen2Config c = tiny_config(0);
    Qwen2 m;
    init_spread(&m, &c, 5);
    const size_t n_targets[3] = {3, 4, 0};   // fd_targets after each sequence's first token
    double tw[3] = {3.0 / 7, 4.0 / 7, 0};    // n_s / N: one window of 7 target tokens
    float want_loss = 0.0f;
    size_t P = m.num_parameters;
    float *want_grad = (float *)callocCheck(P, sizeof(float));
    for (size_t s = 0; s < 3; s++) {   // each sequence alone: its token mean, scaled by n_s / N
        size_t k = 0;
        for (size_t t = fd_seq_offsets[s] + 1; t < fd_seq_offsets[s + 1]; t++) k += fd_targets[t];
        CHECK(k == n_targets[s], "sequence %zu has %zu targets, want %zu", s, k, n_targets[s]);
        qwen2_zero_grad(&m);
        size_t one[2] = {0, fd_seq_offsets[s + 1] - fd_seq_offsets[s]};
        want_loss += (float)tw[s] * qwen2_forward(&m, fd_tokens + fd_seq_offsets[s], fd_targets + fd_seq_offsets[s], one, 1);
        qwen2_backward(&m, (float)tw[s]);
        for (size_t i = 0; i < P; i++) want_grad[i] += m.grads_memory[i];
    }
    qwen2_zero_grad(&m);
    size_t mb1[3] = {0, fd_seq_offsets[1], fd_seq_offsets[2]}, mb2[2] = {0, fd_seq_offsets[3] - fd_seq_offsets[2]};
    float loss = qwen2_forward_weighted(&m, fd_tokens, fd_targets, mb1, 2, tw);
    qwen2_backward(&m, 1.0f);
    loss += qwen2_forward_weighted(&m, fd_tokens + fd_seq_offsets[2], fd_targets + fd_seq_offsets[2], mb2, 1, tw + 2);
    qwen2_backward(&m, 1.0f);
    CHECK(fabsf(loss - want_loss) <= 1e-6f * fabsf(want_loss), "loss %.9g, want %.9g", (double)loss, (double)want_loss);
    double d_grad = rel_max_diff(m.grads_memory, want_grad, P);
    CHECK(d_grad < 1e-5, "gradients differ by %.3g of their largest", d_grad);
    // and it is not the sequence mean: that weighs the two scored sequences 1/3 each
    qwen2_zero_grad(&m);
    float seq_loss = qwen2_forward(&m, fd_tokens, fd_targets, fd_seq_offsets, 3);
    CHECK(fabsf(seq_loss - want_loss) > 1e-3f * fabsf(want_loss), "the sequence mean %.9g equals the token mean %.9g", (double)seq_loss,
          (double)want_loss);
    free(want_grad);
    qwen2_free(&m);
    TEST_END();
}

// One AdamW step of train_run() on data without a target (every gradient 0, so the AdamW
// update is 0 and only the decoupled decay moves a weight: p -> p (1 - lr wd)), from a model with
// random biases and norm weights. Which tensors shrink is derived from their HF names, as
// transformers 4.46.1's get_decay_parameter_names decides (trainer.py:1131-1140): everything but a
// name with "bias" (no nn.LayerNorm in Qwen2); with --exempt-norms also none with "norm".
static void test_decay_set(void) {
    TEST_BEGIN("weight decay: RMSNorm weights decay by default (transformers 4.46.1), not with --exempt-norms");
    TrainOptions o;
    train_options_defaults(&o);
    CHECK(o.settings.decay_norm_weights == 1 && o.settings.last_batch == TRAIN_LAST_BATCH_S1 &&
          o.settings.loss_norm == TRAIN_LOSS_SEQUENCE, "the defaults are not s1's run");
    char tmp[] = "/tmp/test_s1_decayXXXXXX", shard[300], init[300], out[300], cmd[400];
    if (mkdtemp(tmp) == NULL) die("mkdtemp failed");
    snprintf(shard, sizeof shard, "%s/s.shard", tmp);
    snprintf(init, sizeof init, "%s/init", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    write_test_shard(shard, 4, 0);
    Qwen2Config c = tiny_config(0);
    Qwen2 m0;
    init_spread(&m0, &c, 9);
    qwen2_save(&m0, init);
    for (int exempt = 0; exempt < 2; exempt++) {
        train_options_defaults(&o);
        o.settings.lr = 1e-2;
        o.settings.weight_decay = 0.5;
        o.settings.warmup_ratio = 0.0;   // so the first step has the peak lr
        o.settings.epochs = 1;
        o.settings.batch_size = 4;
        o.settings.decay_norm_weights = !exempt;
        o.data_path = shard;
        o.model_dir = init;
        o.out_dir = out;
        o.quiet = 1;
        train_run(&o);
        Qwen2 m1;
        qwen2_load(&m1, out);
        float shrink = (float)(1.0 - 1e-2 * 0.5);
        size_t decayed = 0, kept = 0;
        for (size_t i = 0; i < m0.num_tensors; i++) {
            const TensorInfo *t = &m0.tensors[i];
            int decays = strstr(t->name, "bias") == NULL && !(exempt && strstr(t->name, "norm") != NULL);
            const float *a = m0.params_memory + t->offset, *b = m1.params_memory + t->offset;
            size_t bad = 0;
            for (size_t j = 0; j < t->numel; j++) bad += b[j] != (decays ? a[j] * shrink : a[j]);
            CHECK(bad == 0, "%s: %zu of %zu values are not %s", t->name, bad, t->numel, decays ? "p (1 - lr wd)" : "unchanged");
            decayed += decays;
            kept += !decays;
        }
        CHECK(kept == (exempt ? 3 * c.num_layers + 2 * c.num_layers + 1 : 3 * c.num_layers), "%zu tensors kept their values", kept);
        (void)decayed;
        qwen2_free(&m1);
    }
    qwen2_free(&m0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) die("cleanup failed");
    TEST_END();
}

// ----------------------------------------------------------------------------
// 5. KV-cache decoding

static void test_decode(const char *dir) {
    char name[256];
    snprintf(name, sizeof name, "%s: KV-cache decode == batched forward, and truncate rewinds", dir);
    TEST_BEGIN(name);
    Qwen2 m;
    qwen2_load(&m, dir);
    size_t V = m.config.vocab_size, T = 20;
    uint32_t ids[20];
    uint64_t state = 11;
    for (size_t t = 0; t < T; t++) ids[t] = (uint32_t)(rng_next(&state) % 300);
    size_t offs[2] = {0, T};
    qwen2_forward(&m, ids, NULL, offs, 1);
    float *full = (float *)mallocCheck(T * V * sizeof(float));
    memcpy(full, m.acts.logits, T * V * sizeof(float));
    KVCache *kv = kvcache_create(&m.config, T);
    // the same layer functions, but a batch's matmuls sum each output sequentially over the inputs
    // while a single token's use dot()'s 16 lanes: fp32 rounding differs by ~sqrt(H) ulps
    // (measured 5e-7 of the largest logit); allow 1e-5, far below any real error (>= 1e-3)
    double worst = 0;
    for (size_t t = 0; t < T; t++) {
        const float *lg = qwen2_decode_step(&m, kv, ids[t]);
        double d = rel_max_diff(lg, full + t * V, V);
        worst = d > worst ? d : worst;
    }
    printf("  decode vs forward: max rel diff %.2e\n", worst);
    CHECK(worst <= 1e-5, "decode logits differ from the forward pass by %.3e", worst);
    CHECK(kv->len == T, "len %zu", kv->len);
    kvcache_truncate(kv, 8);
    double worst2 = 0;
    for (size_t t = 8; t < T; t++) {
        const float *lg = qwen2_decode_step(&m, kv, ids[t]);
        double d = rel_max_diff(lg, full + t * V, V);
        worst2 = d > worst2 ? d : worst2;
    }
    CHECK(worst2 <= 1e-5, "after truncate, decode logits differ by %.3e", worst2);
    kvcache_free(kv);
    free(full);
    qwen2_free(&m);
    TEST_END();
}

int main(void) {
    omp_set_num_threads(2);
    test_fixture("tests/fixtures/qwen-tiny-tied");
    test_fixture("tests/fixtures/qwen-tiny-gqa");
    test_finite_differences(0);
    test_finite_differences(1);
    test_checkpoint_formats();
    test_thread_independence();
    test_resume(TRAIN_LAST_BATCH_S1, TRAIN_LOSS_SEQUENCE, 1);
    test_resume(TRAIN_LAST_BATCH_SHORT, TRAIN_LOSS_TOKENS, 1);
    test_last_batch();
    test_loss_weights();
    test_decay_set();
    test_decode("tests/fixtures/qwen-tiny-gqa");
    return test_summary();
}
