/*
 * train.h: what ./s1 train (s1.c, the CPU) and sft train (sft.cu, the GPU)
 * share, so that the two run the same recipe step for step: the learning-rate
 * schedule, the data order, the run's settings and their command-line flags,
 * and the optimizer-state file of a checkpoint. One copy, two programs.
 *
 *   schedule_lr()          HF get_cosine_schedule_with_warmup
 *   dataloader_batch()     the sequences of optimizer step k (seeded shuffles per epoch; the
 *                          last step of an epoch filled up as accelerate's even_batches does)
 *   train_loss_weights()   each sequence's share of the step's loss (--loss-norm)
 *   train_flag()           the shared flags; train_flags_help() their help lines;
 *                          train_settings_check() their bounds (flags and a resumed file alike)
 *   optstate_write/read()  DIR/optimizer.bin: AdamW moments, step, settings [, master weights]
 *   train_checkpoint_write()  config.json, model.safetensors and optimizer.bin as one
 *                          unit (a new folder swapped in by one rename), never non-finite
 *   train_check_step()     after every step: a loss or gradient norm that is NaN or
 *                          infinite stops the run, naming the step, before any save
 */
#ifndef S1C_TRAIN_H
#define S1C_TRAIN_H

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "common/util.h"
#include "common/detmath.h"
#include "common/shard.h"
#include "common/qwen2_weights.h"   // rng_uniform()

// ----------------------------------------------------------------------------
// learning-rate schedule: HF get_cosine_schedule_with_warmup

// Warmup steps as HF computes them from a ratio: ceil(ratio * total).
static inline size_t schedule_warmup_steps(size_t total_steps, double warmup_ratio) {
    return (size_t)ceil((double)total_steps * warmup_ratio);
}

// lr for optimizer step k = 0, 1, ...: linear from 0 over the warmup, then a half cosine to 0.
static inline double schedule_lr(size_t k, size_t total_steps, size_t warmup_steps, double lr0) {
    if (k < warmup_steps) return lr0 * (double)k / (double)(warmup_steps > 1 ? warmup_steps : 1);
    size_t decay = total_steps - warmup_steps;
    double progress = (double)(k - warmup_steps) / (double)(decay > 1 ? decay : 1);
    double f = 0.5 * (1.0 + det_cos(M_PI * 0.5 * 2.0 * progress));   // common/detmath.h: the same bits on every CPU
    return lr0 * (f > 0.0 ? f : 0.0);
}

// ----------------------------------------------------------------------------
// data loader: whole sequences from a shard, reshuffled every epoch

// The last step of an epoch when the batch does not divide the shard (s1: 1000
// = 62 x 16 + 8). TRAIN_LAST_BATCH_S1 (the default, 0 so that a zeroed loader
// is s1's): the step still has batch_size sequences, the left-over ones
// followed by the epoch's first ones again, as accelerate 1.0.1 fills it
// (BatchSamplerShard with even_batches, see dataloader_batch()).
// TRAIN_LAST_BATCH_SHORT: only the left-over ones.
#define TRAIN_LAST_BATCH_S1 0u
#define TRAIN_LAST_BATCH_SHORT 1u

typedef struct {
    Shard shard;
    size_t batch_size;       // sequences per optimizer step
    size_t max_seq_len;      // longer sequences are right-truncated (TRL's block size)
    uint64_t seed;
    unsigned last_batch;     // TRAIN_LAST_BATCH_S1 or TRAIN_LAST_BATCH_SHORT
    size_t *order;           // (num_sequences,) this epoch's permutation
    size_t order_epoch;      // which epoch order holds, SIZE_MAX for none
    // the current batch, gathered back to back
    uint32_t *ids;
    uint8_t *mask;
    size_t *seq_offsets;     // (batch_size + 1,)
    size_t *seqs;            // (batch_size,) the shard index of each of its sequences
    size_t num_seqs;
} DataLoader;

static inline void dataloader_init(DataLoader *d, const char *path, size_t batch_size, size_t max_seq_len, uint64_t seed) {
    memset(d, 0, sizeof *d);
    shard_read(&d->shard, path);
    if (d->shard.header.num_sequences == 0) die("%s: the shard has no sequences", path);
    d->batch_size = batch_size;
    d->max_seq_len = max_seq_len;
    d->seed = seed;
    size_t S = (size_t)d->shard.header.num_sequences, longest = 0;
    for (size_t i = 0; i < S; i++) longest = shard_seq_len(&d->shard, i) > longest ? shard_seq_len(&d->shard, i) : longest;
    // a batch holds at most batch_size sequences of at most min(max_seq_len, the longest) tokens:
    // sized by the data, so --max-seq-len 2^50 neither wraps the size nor asks for terabytes
    size_t row = longest < max_seq_len ? longest : max_seq_len, batch_tokens = mul_check(batch_size, row, path);
    d->order = (size_t *)mallocCheck(S * sizeof(size_t));
    d->order_epoch = SIZE_MAX;
    d->ids = (uint32_t *)mallocCheck(mul_check(batch_tokens, sizeof(uint32_t), path));
    d->mask = (uint8_t *)mallocCheck(batch_tokens);
    d->seq_offsets = (size_t *)mallocCheck(mul_check(batch_size + 1, sizeof(size_t), path));
    d->seqs = (size_t *)mallocCheck(mul_check(batch_size, sizeof(size_t), path));
}

// ceil(sequences / batch) under either last-batch rule: accelerate's
// BatchSamplerShard.__len__ with even_batches is length + 1 when the ranks do
// not divide the batches (accelerate v1.0.1 src/accelerate/data_loader.py:166-182),
// so s1's run had 63 steps per epoch and its schedule 5 x 63 = 315 steps.
static inline size_t dataloader_steps_per_epoch(const DataLoader *d) {
    return ((size_t)d->shard.header.num_sequences + d->batch_size - 1) / d->batch_size;
}

// The permutation of an epoch depends only on (seed, epoch), so a resumed run
// needs nothing but the step number to continue the same data order.
static inline void dataloader_shuffle(DataLoader *d, size_t epoch) {
    size_t S = (size_t)d->shard.header.num_sequences;
    uint64_t state = d->seed ^ (0xD1B54A32D192ED03ull * (epoch + 1));
    for (size_t i = 0; i < S; i++) d->order[i] = i;
    for (size_t i = S - 1; i > 0; i--) {  // Fisher-Yates
        size_t j = (size_t)(rng_uniform(&state) * (double)(i + 1));
        size_t t = d->order[i]; d->order[i] = d->order[j]; d->order[j] = t;
    }
    d->order_epoch = epoch;
}

// Gathers the sequences of optimizer step k: positions [b B, b B + B) of the
// epoch's permutation (b = k mod steps per epoch, B = batch_size). When the
// last step of an epoch runs past the end of the permutation:
//   --last-batch short: it takes the remaining sequences, fewer than B;
//   --last-batch s1:    it takes B: the remaining ones, then positions 0, 1, ...
//                       of the same epoch's permutation again (cycling when the
//                       shard has fewer than B sequences).
// The s1 rule is accelerate 1.0.1's BatchSamplerShard._iter_with_no_split with
// even_batches=True (its default; DataLoaderConfiguration, utils/dataclasses.py:767-768,
// passed through by Trainer 4.46.1) on s1's 16 ranks x 1 sequence, in
// src/accelerate/data_loader.py of v1.0.1: the first num_processes batches of
// the epoch are kept (lines 212-215: `initial_data += batch` while idx <
// num_processes), doubled while shorter than num_processes x batch_size
// (237-238), and the ranks left without a batch at the end take them in order,
// rank by rank (245-254: `batch += initial_data[cycle_index:end_index]`). With
// 1000 sequences the 63rd step's ranks 0-7 hold positions 992-999 and ranks
// 8-15 positions 0-7: the gradient, averaged over the 16 ranks, weights those 8
// sequences twice in that epoch.
static inline void dataloader_batch(DataLoader *d, size_t step) {
    size_t spe = dataloader_steps_per_epoch(d), epoch = step / spe, b = step % spe, S = (size_t)d->shard.header.num_sequences;
    if (d->order_epoch != epoch) dataloader_shuffle(d, epoch);
    size_t first = b * d->batch_size, last = first + d->batch_size < S ? first + d->batch_size : S;
    d->num_seqs = d->last_batch == TRAIN_LAST_BATCH_SHORT ? last - first : d->batch_size;
    d->seq_offsets[0] = 0;
    for (size_t i = 0; i < d->num_seqs; i++) {
        size_t p = first + i;
        if (p >= S) p = (p - S) % S;   // the fill: the epoch's positions 0, 1, ... again
        size_t seq = d->order[p], start = (size_t)d->shard.offsets[seq], len = shard_seq_len(&d->shard, seq);
        if (len > d->max_seq_len) len = d->max_seq_len;
        memcpy(d->ids + d->seq_offsets[i], d->shard.ids + start, len * sizeof(uint32_t));
        memcpy(d->mask + d->seq_offsets[i], d->shard.mask + start, len);
        d->seq_offsets[i + 1] = d->seq_offsets[i] + len;
        d->seqs[i] = seq;
    }
}

// The loss targets of the current batch's sequence i: its masked tokens after
// the first (the prediction at t scores token t + 1), as qwen2_forward() counts
// them and as transformers 4.46.1 counts labels[..., 1:].ne(-100) (trainer.py:5044-5046).
static inline size_t dataloader_targets(const DataLoader *d, size_t i) {
    size_t count = 0;
    for (size_t n = d->seq_offsets[i] + 1; n < d->seq_offsets[i + 1]; n++) count += d->mask[n] != 0;
    return count;
}

// FNV-1a over the shard's offsets, ids and mask.
static inline uint64_t shard_hash(const Shard *sh) {
    uint64_t h = 0xcbf29ce484222325ull;
    const uint8_t *parts[3] = {(const uint8_t *)sh->offsets, (const uint8_t *)sh->ids, sh->mask};
    size_t sizes[3] = {(size_t)(sh->header.num_sequences + 1) * 8, (size_t)sh->header.num_tokens * 4, (size_t)sh->header.num_tokens};
    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < sizes[p]; i++) h = (h ^ parts[p][i]) * 0x100000001b3ull;
    return h;
}

static inline void dataloader_free(DataLoader *d) {
    shard_free(&d->shard);
    free(d->order); free(d->ids); free(d->mask); free(d->seq_offsets); free(d->seqs);
}

// ----------------------------------------------------------------------------
// the run's settings, the optimizer-state file, the command-line flags

typedef struct {
    // the schedule and the optimizer: fixed for a run, stored in optimizer.bin
    double lr;
    double warmup_ratio;
    double weight_decay;
    double max_grad_norm;
    double beta1, beta2, eps;
    uint64_t decay_norm_weights;   // 1 (default): RMSNorm weights decay, as in s1's run; 0: --exempt-norms
    uint64_t epochs;
    uint64_t batch_size;
    uint64_t max_seq_len;
    uint64_t seed;
    uint64_t num_sequences;   // of the training shard,
    uint64_t data_hash;       // and a hash of its contents, to catch a resume on other data
    // from OPTSTATE_VERSION 3 on (a version 2 file is read as last_batch short, loss_norm sequence)
    uint64_t last_batch;      // TRAIN_LAST_BATCH_S1 or TRAIN_LAST_BATCH_SHORT
    uint64_t loss_norm;       // TRAIN_LOSS_SEQUENCE or TRAIN_LOSS_TOKENS
    uint64_t loss_ranks;      // with TRAIN_LOSS_TOKENS: the ranks whose windows are normalised apart
} TrainSettings;

// How the step's loss weighs its sequences (train_loss_weights()).
#define TRAIN_LOSS_SEQUENCE 0u   // each sequence's token mean, averaged over the step's sequences
#define TRAIN_LOSS_TOKENS 1u     // every target token of a rank's window alike (transformers 4.46.1 num_items_in_batch)

// The largest values the run's settings may take (flags and a resumed
// optimizer.bin alike): a learning rate above 1 moves each AdamW weight by more
// than 1 per step and can only diverge; the sizes keep every buffer size product
// within 64 bits.
#define TRAIN_MAX_LR 1.0
#define TRAIN_MAX_WEIGHT_DECAY 1.0
#define TRAIN_MAX_EPOCHS (1ull << 20)
#define TRAIN_MAX_BATCH (1ull << 20)
#define TRAIN_MAX_SEQ_LEN (1ull << 24)

// Every setting in its range; what names the flags' program or the optimizer.bin they came from.
static inline void train_settings_check(const TrainSettings *s, const char *what) {
    if (!(s->lr >= 0 && s->lr <= TRAIN_MAX_LR)) die("%s: --lr %g is outside [0, %g]", what, s->lr, TRAIN_MAX_LR);
    if (!(s->warmup_ratio >= 0 && s->warmup_ratio <= 1)) die("%s: --warmup-ratio %g is outside [0, 1]", what, s->warmup_ratio);
    if (!(s->weight_decay >= 0 && s->weight_decay <= TRAIN_MAX_WEIGHT_DECAY))
        die("%s: --weight-decay %g is outside [0, %g]", what, s->weight_decay, TRAIN_MAX_WEIGHT_DECAY);
    if (!(s->max_grad_norm >= 0 && isfinite(s->max_grad_norm))) die("%s: --clip %g is not a finite non-negative number", what, s->max_grad_norm);
    if (!(s->beta1 >= 0 && s->beta1 < 1 && s->beta2 >= 0 && s->beta2 < 1 && s->eps > 0 && s->eps < 1))
        die("%s: AdamW betas must lie in [0, 1) and eps in (0, 1)", what);
    if (s->decay_norm_weights > 1) die("%s: corrupt settings (decay_norm_weights %llu)", what, (unsigned long long)s->decay_norm_weights);
    if (s->last_batch > TRAIN_LAST_BATCH_SHORT) die("%s: corrupt settings (last_batch %llu)", what, (unsigned long long)s->last_batch);
    if (s->loss_norm > TRAIN_LOSS_TOKENS) die("%s: corrupt settings (loss_norm %llu)", what, (unsigned long long)s->loss_norm);
    if (s->loss_ranks < 1 || s->loss_ranks > TRAIN_MAX_BATCH)
        die("%s: --loss-ranks %llu is outside [1, %llu]", what, (unsigned long long)s->loss_ranks, TRAIN_MAX_BATCH);
    if (s->epochs < 1 || s->epochs > TRAIN_MAX_EPOCHS) die("%s: --epochs %llu is outside [1, %llu]", what, (unsigned long long)s->epochs, TRAIN_MAX_EPOCHS);
    if (s->batch_size < 1 || s->batch_size > TRAIN_MAX_BATCH)
        die("%s: --batch %llu is outside [1, %llu]", what, (unsigned long long)s->batch_size, TRAIN_MAX_BATCH);
    if (s->max_seq_len < 1 || s->max_seq_len > TRAIN_MAX_SEQ_LEN)
        die("%s: --max-seq-len %llu is outside [1, %llu]", what, (unsigned long long)s->max_seq_len, TRAIN_MAX_SEQ_LEN);
}

#define OPTSTATE_MAGIC 0x504F3153u   // "S1OP"
#define OPTSTATE_VERSION 3u          // 3: + last_batch, loss_norm, loss_ranks (issue 12); 2 is still read

typedef struct {
    uint32_t magic, version;
    uint64_t step;             // optimizer steps done
    uint64_t num_parameters;
    uint64_t has_master;       // 1: fp32 master weights follow m and v (sft train with --save-dtype bf16)
    TrainSettings settings;
} OptStateHeader;              // then float m[num_parameters], v[num_parameters] [, master[num_parameters]]

// A version 2 header is a version 3 one without its last three settings.
#define OPTSTATE_V2_HEADER_BYTES (offsetof(OptStateHeader, settings) + offsetof(TrainSettings, last_batch))
// (a compile-time check that C and C++ both take: the settings added in version 3 close the header, no padding)
typedef char optstate_v3_settings_close_the_header[OPTSTATE_V2_HEADER_BYTES + 3 * sizeof(uint64_t) == sizeof(OptStateHeader) ? 1 : -1];

// DIR/optimizer.bin next to the HF files: the AdamW moments, the step and the
// run's settings, and the fp32 master weights when model.safetensors holds
// only their bf16 rounding (NULL: not written; ./s1 train's F32 model file is
// its master). Written through a temporary file and a rename.
static inline void optstate_write_fp(FILE *fp, const char *what, size_t step, size_t n, const TrainSettings *s, const float *m,
                                     const float *v, const float *master) {
    OptStateHeader h;
    memset(&h, 0, sizeof h);
    h.magic = OPTSTATE_MAGIC;
    h.version = OPTSTATE_VERSION;
    h.step = step;
    h.num_parameters = n;
    h.has_master = master != NULL;
    h.settings = *s;
    fwriteCheck(&h, sizeof h, 1, fp, what);
    fwriteCheck(m, sizeof(float), n, fp, what);
    fwriteCheck(v, sizeof(float), n, fp, what);
    if (master != NULL) fwriteCheck(master, sizeof(float), n, fp, what);
}

// optimizer.bin alone, through a temporary name. A training checkpoint
// writes it with train_checkpoint_write() instead, in one unit with the model.
static inline void optstate_write(const char *dir, size_t step, size_t n, const TrainSettings *s, const float *m,
                                  const float *v, const float *master) {
    char path[4096];
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    AtomicFile af = atomic_open(path);
    optstate_write_fp(af.fp, path, step, n, s, m, v, master);
    atomic_commit(&af);
}

// The number of values of x[0..n) that are NaN or infinite.
static inline size_t count_nonfinite(const float *x, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

// A training checkpoint as one unit (common/qwen2_weights.h's CheckpointWriter):
// DIR/config.json, DIR/model.safetensors (the n parameters as F32, or their
// bf16 rounding) and DIR/optimizer.bin (moments, step, settings, and the fp32
// master weights when master != NULL) appear together or not at all, and the
// previous checkpoint stays whole until they do. Parameters or moments that
// are not finite are never saved: the previous checkpoint is kept and the
// error names the step.
static inline void train_checkpoint_write(const char *dir, const Qwen2Config *c, const float *params, int bf16, size_t step,
                                          const TrainSettings *s, const float *m, const float *v, const float *master) {
    size_t n = parameter_count(c), bad = count_nonfinite(params, n) + count_nonfinite(m, n) + count_nonfinite(v, n);
    if (master != NULL) bad += count_nonfinite(master, n);
    if (bad > 0)
        die("%s: not saving step %zu: %zu weights or AdamW moments are NaN or infinite (the training diverged); "
            "the previous checkpoint is kept", dir, step, bad);
    CheckpointWriter w;
    checkpoint_begin(&w, dir);
    qwen2_checkpoint_write_model(&w, c, params, bf16, step);
    char path[4400];
    FILE *fp = checkpoint_open(&w, "optimizer.bin", path, sizeof path);
    optstate_write_fp(fp, path, step, n, s, m, v, master);
    checkpoint_close(fp, path);
    checkpoint_commit(&w);
}

// The check after every optimizer step of a training run (./s1 train and sft
// train): a loss or gradient norm that is NaN or infinite stops the run with an
// error naming the step, before anything is saved over the last good
// checkpoint. last_saved: the step of the last checkpoint this run wrote to
// out_dir, or SIZE_MAX for none.
static inline void train_check_step(const char *prog, size_t step, float loss, float grad_norm, const char *out_dir, size_t last_saved) {
    if (isfinite(loss) && isfinite(grad_norm)) return;
    char kept[4200], l[32], g[32];
    if (last_saved == SIZE_MAX) snprintf(kept, sizeof kept, "nothing was saved to %s", out_dir);
    else snprintf(kept, sizeof kept, "the checkpoint of step %zu in %s is kept", last_saved, out_dir);
    // NaN without printf's sign ("-nan"): the sign of a NaN means nothing
    snprintf(l, sizeof l, isnan(loss) ? "NaN" : "%g", (double)loss);
    snprintf(g, sizeof g, isnan(grad_norm) ? "NaN" : "%g", (double)grad_norm);
    die("%s: step %zu: the loss is %s and the gradient norm %s, not finite: the training diverged (try a lower --lr); "
        "stopping, %s", prog, step, l, g, kept);
}

// Reads DIR/optimizer.bin of a model with n parameters whose model.safetensors
// is at AdamW step `step` into *s, m and v (n floats each) and, when the file
// holds master weights, into master (n floats). Returns 1 when it did.
static inline int optstate_read(const char *dir, size_t step, size_t n, TrainSettings *s, float *m, float *v, float *master) {
    char path[4096];
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) die("%s: cannot open optimizer state: %s", path, strerror(errno));
    OptStateHeader h;
    if (fread(&h, OPTSTATE_V2_HEADER_BYTES, 1, fp) != 1) die("%s: truncated optimizer state header", path);
    if (h.magic != OPTSTATE_MAGIC || (h.version != 2 && h.version != OPTSTATE_VERSION))
        die("%s: not an s1.c optimizer state (bad magic or version)", path);
    if (h.version == 2) {
        // Written before --last-batch, --loss-norm and the decaying norms default: that run
        // trained on short last batches and the sequence mean, and resumes so; its norm
        // decay rule is in the file (0 unless it was started with the old --decay-norms).
        h.settings.last_batch = TRAIN_LAST_BATCH_SHORT;
        h.settings.loss_norm = TRAIN_LOSS_SEQUENCE;
        h.settings.loss_ranks = 1;
    } else if (fread(&h.settings.last_batch, sizeof h - OPTSTATE_V2_HEADER_BYTES, 1, fp) != 1) {
        die("%s: truncated optimizer state header", path);
    }
    if (h.num_parameters != n)
        die("%s: optimizer state has %llu parameters, the model %zu", path, (unsigned long long)h.num_parameters, n);
    if (h.step != step)
        die("%s: optimizer state is at step %llu but model.safetensors at step %zu (interrupted save?)", path, (unsigned long long)h.step, step);
    if (h.has_master > 1) die("%s: corrupt optimizer state header (has_master %llu)", path, (unsigned long long)h.has_master);
    train_settings_check(&h.settings, path);
    freadCheck(m, sizeof(float), n, fp, path);
    freadCheck(v, sizeof(float), n, fp, path);
    if (h.has_master) freadCheck(master, sizeof(float), n, fp, path);
    if (fgetc(fp) != EOF) die("%s: trailing bytes after the optimizer state", path);
    fclose(fp);
    for (size_t i = 0; i < n; i++)   // the second moment is a mean of squares
        if (!isfinite(m[i]) || !isfinite(v[i]) || v[i] < 0) die("%s: corrupt optimizer state: moment %zu is m %g, v %g", path, i, (double)m[i], (double)v[i]);
    if (h.has_master && count_nonfinite(master, n) > 0) die("%s: corrupt optimizer state: a master weight is NaN or infinite", path);
    *s = h.settings;
    return (int)h.has_master;
}

typedef struct {
    const char *data_path;
    const char *model_dir;       // fine-tune this HF checkpoint
    const char *init_config;     // or start from random weights with this config.json
    const char *resume_dir;      // or continue a run from its checkpoint
    const char *out_dir;
    uint64_t init_seed;
    size_t micro_batch;          // sequences per forward/backward
    size_t save_every;           // 0: only at the end
    size_t stop_at;              // stop (and save) after this many steps; 0: run to the end
    int threads;
    int quiet;
    TrainSettings settings;
} TrainOptions;

static inline void train_options_defaults(TrainOptions *o) {
    memset(o, 0, sizeof *o);
    o->settings.lr = 1e-5;
    o->settings.warmup_ratio = 0.05;
    o->settings.weight_decay = 1e-4;
    o->settings.max_grad_norm = 1.0;
    o->settings.beta1 = 0.9;
    o->settings.beta2 = 0.95;
    o->settings.eps = 1e-8;
    o->settings.epochs = 5;
    o->settings.batch_size = 16;
    o->settings.max_seq_len = 32768;
    o->settings.seed = 42;
    o->settings.decay_norm_weights = 1;                  // as transformers 4.46.1 did (train_flags_help)
    o->settings.last_batch = TRAIN_LAST_BATCH_S1;
    o->settings.loss_norm = TRAIN_LOSS_SEQUENCE;
    o->settings.loss_ranks = 1;
    o->init_seed = 1234;
    o->micro_batch = 1;
}

// The help lines of the shared flags (./s1 train --help and sft train --help print them alike).
static inline void train_flags_help(void) {
    printf("  --model DIR          start from this HF checkpoint (safetensors, single or sharded)\n"
           "  --init-config FILE   start from random weights, N(0,0.02), for this config.json\n"
           "  --init-seed N        seed of the random weights (default 1234)\n"
           "  --resume DIR         continue the run checkpointed in DIR (same settings, same data order;\n"
           "                       the schedule flags below are taken from DIR/optimizer.bin)\n"
           "  --epochs N           passes over the shard (default 5)\n"
           "  --batch N            sequences per optimizer step (default 16)\n"
           "  --micro-batch N      sequences per forward/backward; gradients accumulate (default 1)\n"
           "  --lr X               peak learning rate (default 1e-5)\n"
           "  --warmup-ratio X     warmup steps = ceil(X * total steps) (default 0.05)\n"
           "  --weight-decay X     AdamW decoupled weight decay (default 1e-4)\n"
           "  --exempt-norms       no weight decay on RMSNorm weights, as newer transformers (default: they decay,\n"
           "                       as in s1's run under transformers 4.46.1; biases never decay)\n"
           "  --last-batch R       s1 (default): an epoch's last step still has --batch sequences, the left-over\n"
           "                       ones and then the epoch's first ones again (accelerate's even_batches, as in\n"
           "                       s1's run); short: only the left-over ones\n"
           "  --loss-norm N        sequence (default): the mean over the step's sequences of each one's token\n"
           "                       mean (s1's run, 16 ranks x 1 sequence); tokens: every target token of a\n"
           "                       rank's window weighs alike (transformers 4.46.1 with gradient accumulation)\n"
           "  --loss-ranks R       with --loss-norm tokens: the ranks of that run (sequence j of a step is rank\n"
           "                       j mod R's, each rank's tokens normalised apart, ranks averaged); must divide\n"
           "                       --batch (default 1: one window, the whole step)\n"
           "  --clip X             max global gradient norm, 0 = off (default 1.0)\n"
           "  --max-seq-len N      right-truncate longer sequences (default 32768)\n"
           "  --seed N             data-order seed (default 42)\n"
           "  --save-every N       also checkpoint every N steps (default 0: only at the end)\n"
           "  --stop-at N          stop after step N and checkpoint; the schedule still spans the full run\n"
           "  --threads N          OpenMP threads, at most 4 per core (default: all cores)\n"
           "Limits: --lr and --weight-decay at most 1, --epochs and --batch at most 2^20, --max-seq-len at\n"
           "most 2^24, --micro-batch at most --batch. A checkpoint is written as one unit (a new folder swapped\n"
           "in by one rename); a loss or gradient norm that is NaN or infinite stops the run, naming the step,\n"
           "and keeps the last checkpoint.\n");
}

// Parses the shared flag at argv[*i] into o and returns 1, or returns 0 when
// argv[*i] is not one. A flag that sets a run setting (stored in optimizer.bin)
// is remembered in *settings_flag, since --resume takes those from the file.
static inline int train_flag(int argc, char **argv, int *i, TrainOptions *o, const char **settings_flag) {
    const char *a = argv[*i];
    TrainSettings *s = &o->settings;
    if (flag_is(a, "--data")) o->data_path = flag_value(argc, argv, i);
    else if (flag_is(a, "--model")) o->model_dir = flag_value(argc, argv, i);
    else if (flag_is(a, "--init-config")) o->init_config = flag_value(argc, argv, i);
    else if (flag_is(a, "--init-seed")) o->init_seed = flag_count(argc, argv, i, 1);
    else if (flag_is(a, "--resume")) o->resume_dir = flag_value(argc, argv, i);
    else if (flag_is(a, "--out")) o->out_dir = flag_value(argc, argv, i);
    else if (flag_is(a, "--micro-batch")) o->micro_batch = flag_count_max(argc, argv, i, 0, TRAIN_MAX_BATCH);
    else if (flag_is(a, "--save-every")) o->save_every = flag_count(argc, argv, i, 1);
    else if (flag_is(a, "--stop-at")) o->stop_at = flag_count(argc, argv, i, 0);
    else if (flag_is(a, "--threads")) o->threads = flag_threads(argc, argv, i);
    else {
        if (flag_is(a, "--epochs")) s->epochs = flag_count_max(argc, argv, i, 0, TRAIN_MAX_EPOCHS);
        else if (flag_is(a, "--batch")) s->batch_size = flag_count_max(argc, argv, i, 0, TRAIN_MAX_BATCH);
        else if (flag_is(a, "--lr")) s->lr = flag_number_max(argc, argv, i, TRAIN_MAX_LR);
        else if (flag_is(a, "--warmup-ratio")) s->warmup_ratio = flag_number_max(argc, argv, i, 1.0);
        else if (flag_is(a, "--weight-decay")) s->weight_decay = flag_number_max(argc, argv, i, TRAIN_MAX_WEIGHT_DECAY);
        else if (flag_is(a, "--exempt-norms")) s->decay_norm_weights = 0;
        else if (flag_is(a, "--last-batch")) {
            const char *v = flag_value(argc, argv, i);
            if (strcmp(v, "s1") == 0) s->last_batch = TRAIN_LAST_BATCH_S1;
            else if (strcmp(v, "short") == 0) s->last_batch = TRAIN_LAST_BATCH_SHORT;
            else die("--last-batch: '%s' is not s1 or short", v);
        } else if (flag_is(a, "--loss-norm")) {
            const char *v = flag_value(argc, argv, i);
            if (strcmp(v, "sequence") == 0) s->loss_norm = TRAIN_LOSS_SEQUENCE;
            else if (strcmp(v, "tokens") == 0) s->loss_norm = TRAIN_LOSS_TOKENS;
            else die("--loss-norm: '%s' is not sequence or tokens", v);
        } else if (flag_is(a, "--loss-ranks")) s->loss_ranks = flag_count_max(argc, argv, i, 0, TRAIN_MAX_BATCH);
        else if (flag_is(a, "--clip")) s->max_grad_norm = flag_number(argc, argv, i);
        else if (flag_is(a, "--max-seq-len")) s->max_seq_len = flag_count_max(argc, argv, i, 0, TRAIN_MAX_SEQ_LEN);
        else if (flag_is(a, "--seed")) s->seed = flag_count(argc, argv, i, 1);
        else return 0;
        *settings_flag = a;
    }
    return 1;
}

// The checks every training command makes once its flags are read (prog: "train" or "sft train").
static inline void train_options_check(const TrainOptions *o, const char *settings_flag, const char *prog) {
    if (o->data_path == NULL || o->out_dir == NULL) die("%s: --data and --out are required (see %s --help)", prog, prog);
    if ((o->model_dir != NULL) + (o->init_config != NULL) + (o->resume_dir != NULL) != 1)
        die("%s: give exactly one of --model, --init-config or --resume", prog);
    if (o->resume_dir != NULL && settings_flag != NULL)
        die("%s: %s cannot be combined with --resume: the run's settings come from %s/optimizer.bin", prog, settings_flag, o->resume_dir);
    if (o->settings.warmup_ratio > 1.0) die("%s: --warmup-ratio must be at most 1", prog);
    train_settings_check(&o->settings, prog);
    if (o->settings.loss_ranks != 1 && o->settings.loss_norm != TRAIN_LOSS_TOKENS)
        die("%s: --loss-ranks applies to --loss-norm tokens only", prog);
    if (o->settings.batch_size % o->settings.loss_ranks != 0)
        die("%s: --loss-ranks %llu does not divide the batch of %llu sequences", prog, (unsigned long long)o->settings.loss_ranks,
            (unsigned long long)o->settings.batch_size);
}

// ----------------------------------------------------------------------------
// the loss of a step: how it weighs its sequences

// w[i] for each sequence i of the current batch, so that the step's loss is
//     sum_i w[i] * (token-mean cross-entropy of sequence i)
// and its gradient is that sum's (both trainers give w to their forward pass).
//
// --loss-norm sequence (default): w[i] = 1 / B. s1's run: 16 ranks x 1 sequence,
//   gradient accumulation 1 (train/sft.sh:9-10), so each rank's loss is one
//   sequence's token mean and FSDP averages the 16 ranks' gradients.
// --loss-norm tokens: what s1's code computes with gradient accumulation. In
//   transformers 4.46.1 each rank counts the targets of its accumulation window,
//   num_items_in_batch (trainer.py:5033-5049), Qwen2ForCausalLM takes it
//   (**loss_kwargs, modeling_qwen2.py:1124; trainer.py:593 and 3620-3623), and the
//   loss becomes sum / num_items_in_batch (loss/loss_utils.py:24-28); training_step
//   multiplies it by the accumulation steps (trainer.py:3605-3606) and accelerate
//   1.0.1's backward divides by them again (accelerator.py:2234-2236). So every
//   target token of a window weighs alike, the windows (ranks) are averaged by
//   the gradient reduction, and 4.46.1 does not gather the count across ranks
//   (trainer.py:5044-5047). Sequence i belongs to rank i mod R
//   (R = --loss-ranks; accelerate deals one-sequence batches round robin,
//   data_loader.py:218-219), so w[i] = n_i / (R' * N_r): n_i its targets, N_r
//   those of its rank's window, R' = min(R, B) the ranks that hold a sequence.
//   R = 1 is s1's code on one GPU accumulating the whole step; R = B is the
//   sequence mean again. A window without targets weighs 0.
static inline void train_loss_weights(const DataLoader *d, const TrainSettings *s, double *w) {
    size_t B = d->num_seqs;
    if (s->loss_norm == TRAIN_LOSS_SEQUENCE) {
        for (size_t i = 0; i < B; i++) w[i] = 1.0 / (double)B;
        return;
    }
    size_t R = (size_t)s->loss_ranks < B ? (size_t)s->loss_ranks : B;
    for (size_t r = 0; r < R; r++) {
        size_t window = 0;
        for (size_t i = r; i < B; i += R) window += dataloader_targets(d, i);
        for (size_t i = r; i < B; i += R) w[i] = window > 0 ? (double)dataloader_targets(d, i) / ((double)R * (double)window) : 0.0;
    }
}

// ----------------------------------------------------------------------------
// the start of a run, the same for both trainers

// Opens the run's data (o->data_path) for a model of vocab_size embedding rows
// and fixes its length: the shard must be the one a resumed run was trained on
// (sequence count and content hash in o->settings), its ids must fit the
// embedding. *total: optimizer steps of the whole run, *warmup: its warmup
// steps, *end: the step this invocation stops after (--stop-at). Prints the
// warning about right-truncated sequences (s1-spec 3.3) unless o->quiet.
static inline void train_data_open(TrainOptions *o, DataLoader *loader, size_t vocab_size, size_t *total, size_t *warmup, size_t *end) {
    TrainSettings *s = &o->settings;
    dataloader_init(loader, o->data_path, (size_t)s->batch_size, (size_t)s->max_seq_len, s->seed);
    loader->last_batch = (unsigned)s->last_batch;
    uint64_t hash = shard_hash(&loader->shard);
    if (o->resume_dir != NULL && (s->num_sequences != loader->shard.header.num_sequences || s->data_hash != hash))
        die("%s: not the data this run was trained on (%llu sequences, content hash %016llx; this shard: %llu, %016llx)",
            o->data_path, (unsigned long long)s->num_sequences, (unsigned long long)s->data_hash,
            (unsigned long long)loader->shard.header.num_sequences, (unsigned long long)hash);
    s->num_sequences = loader->shard.header.num_sequences;
    s->data_hash = hash;
    if (loader->shard.header.vocab_size > vocab_size)
        die("%s: shard vocab_size %u exceeds the model's %zu embedding rows", o->data_path, loader->shard.header.vocab_size, vocab_size);
    if (o->micro_batch > s->batch_size)
        die("--micro-batch %zu is larger than the batch of %llu sequences per step", o->micro_batch, (unsigned long long)s->batch_size);
    *total = (size_t)s->epochs * dataloader_steps_per_epoch(loader);
    *warmup = schedule_warmup_steps(*total, s->warmup_ratio);
    if (o->stop_at > *total) die("--stop-at %zu is past the run's last step %zu", o->stop_at, *total);
    *end = o->stop_at > 0 && o->stop_at < *total ? o->stop_at : *total;
    size_t truncated = 0;
    for (size_t i = 0; i < (size_t)s->num_sequences; i++) truncated += shard_seq_len(&loader->shard, i) > s->max_seq_len;
    if (truncated > 0 && !o->quiet)
        printf("warning: %zu sequences are longer than --max-seq-len %llu and are right-truncated (their ends are not trained on)\n",
               truncated, (unsigned long long)s->max_seq_len);
}

// The longest sequence of the shard after truncation (tokens).
static inline size_t dataloader_longest(const DataLoader *d) {
    size_t longest = 0;
    for (size_t i = 0; i < (size_t)d->shard.header.num_sequences; i++) {
        size_t len = shard_seq_len(&d->shard, i);
        longest = len > longest ? len : longest;
    }
    return longest < d->max_seq_len ? longest : d->max_seq_len;
}

// Micro-batch [i, i+k) of the current batch: offs (k+1,) receives its
// sequence offsets from 0; returns the index of its first token.
static inline size_t dataloader_micro_batch(const DataLoader *d, size_t i, size_t k, size_t *offs) {
    for (size_t j = 0; j <= k; j++) offs[j] = d->seq_offsets[i + j] - d->seq_offsets[i];
    return d->seq_offsets[i];
}

// ----------------------------------------------------------------------------
// model FLOPs, for MFU (the same counter feeds sft's log and its planner)
//
// A training step costs 3x its forward pass (forward, and the backward's two
// GEMMs per weight). Per sequence of T tokens the forward pass is
//   2 * N_mm * T                           the linear layers and the LM head, N_mm the
//                                          parameters that multiply (all but an untied
//                                          embedding, which is a lookup)
// + 4 * L * NQ * HD * T (T + 1) / 2          causal attention: QK^T and PV over the
//                                          T (T + 1) / 2 visible (query, key) pairs
// so a step costs 6 N_mm T + 6 L NQ HD T (T + 1). These are model FLOPs: the
// recomputation of activation checkpointing is work, but not model progress,
// and does not count (PaLM's MFU).
static inline double training_flops(const Qwen2Config *c, size_t T) {
    double n_mm = (double)parameter_count(c) - (c->tie_word_embeddings ? 0.0 : (double)(c->vocab_size * c->hidden_size));
    double t = (double)T;
    return 6.0 * n_mm * t + 6.0 * (double)c->num_layers * (double)(c->num_heads * c->head_dim) * t * (t + 1.0);
}

#endif // S1C_TRAIN_H
