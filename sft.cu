/*
 * sft.cu: supervised fine-tuning of Qwen2.5 on one GPU, as s1 did it.
 *
 *   sft train   s1's training run: the forward and backward passes in the
 *               hand-written bf16 kernels of common/ (cuBLASLt for the GEMMs),
 *               fp32 master weights, gradients and AdamW moments, activation
 *               checkpointing. It takes exactly ./s1 train's flags, with the
 *               same meaning: the same data order for a seed, the same
 *               schedule, clipping, micro-batches and resume (common/train.h
 *               holds the one copy of each), plus a few GPU flags.
 *   sft loss    the masked loss of a checkpoint over a shard (the contract of
 *               ./s1 loss, which it must match).
 *
 *   make cuda   -> build/cuda/sft (nvcc, sm_90)
 *   make emu    -> build/emu/sft  (the same source on the CPU, through common/cuemu.h)
 *   build/cuda/sft train --model Qwen2.5-0.5B-Instruct --data s1k.shard --out ckpt
 *   build/cuda/sft loss --model ckpt --data s1k.shard      # last line "loss: <float>"
 *
 * The loss is s1's (s1-spec.md section 3.2): each sequence's mean
 * cross-entropy over its target tokens, averaged over the step's sequences.
 *   sft plan    the memory per GPU, FLOPs, time and dollars of a run, from the
 *               counters sft train allocates and logs with.
 *
 * W ranks (--nproc N on one node, or torchrun's / Slurm's variables: common/launch.h)
 * shard the weights, master weights, AdamW moments and gradients (ZeRO-3,
 * common/kernels.cuh); tutorial/sharding.md walks through a step.
 *   build/cuda/sft train --nproc 8 --model Qwen2.5-7B-Instruct --data s1k.shard --out ckpt
 *   sbatch scripts/sft_2x8.slurm                                   # s1's 2 x 8 H100 run
 */
#include "common/kernels.cuh"
#include "common/shard.h"
#include "common/train.h"
#include "common/launch.h"

static const char *format_bytes(double bytes, char *buf, size_t n) {
    if (bytes >= 1e9) snprintf(buf, n, "%.2f GB", bytes / 1e9);
    else snprintf(buf, n, "%.2f MB", bytes / 1e6);
    return buf;
}

// ----------------------------------------------------------------------------
// sft loss

static void usage_loss(void) {
    printf("usage: sft loss --model DIR --data SHARD [--max-seq-len N] [--chunk-rows N] [--attention K]\n"
           "\n"
           "Loads a Hugging Face Qwen2 checkpoint folder (config.json + model.safetensors or a sharded\n"
           "index; F32, F16 or BF16) into bf16 GPU memory and prints the masked loss of the shard,\n"
           "normalised as s1 trains: the mean over sequences of each sequence's mean target-token\n"
           "cross-entropy. The last line is \"loss: <float>\" (the same contract as ./s1 loss).\n"
           "\n"
           "  --max-seq-len N      truncate longer sequences to N tokens (default 32768)\n"
           "  --chunk-rows N       tokens per LM-head chunk: the logits buffer is N x vocab fp32\n"
           "                       (default 1024: 623 MB at Qwen2.5's 152064 rows)\n"
           ATTENTION_FLAG_HELP);
}

static int main_loss(int argc, char **argv) {
    const char *model_dir = NULL, *data_path = NULL;
    size_t max_seq_len = 32768, chunk_rows = 1024;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_loss(); return 0; }
        else if (flag_is(a, "--model")) model_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--data")) data_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--max-seq-len")) max_seq_len = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--chunk-rows")) chunk_rows = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--attention")) attention_flag(flag_value(argc, argv, &i));
        else die("sft loss: unknown argument '%s' (see sft loss --help)", a);
    }
    if (model_dir == NULL || data_path == NULL) die("sft loss: --model and --data are required (see sft loss --help)");
    if (chunk_rows > (1u << 20)) die("sft loss: --chunk-rows %zu is too large", chunk_rows);

    Shard shard;
    shard_read(&shard, data_path);
    cudaStream_t stream;   // all of the model's work (no legacy default stream: tutorial/cuda.md, "Streams")
    cudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    GpuModel model;
    gpu_model_load(&model, model_dir, (int)chunk_rows, stream);
    if (shard.header.vocab_size > model.config.vocab_size)
        die("%s: shard vocab_size %u exceeds the model's %zu embedding rows", data_path, shard.header.vocab_size, model.config.vocab_size);
    // the memory plan (s1-spec section 8): weights, the activations of the longest sequence, one LM-head chunk
    size_t longest = 0;
    for (size_t i = 0; i < (size_t)shard.header.num_sequences; i++) {
        size_t len = shard_seq_len(&shard, i);
        longest = len > longest ? len : longest;
    }
    if (longest > max_seq_len) longest = max_seq_len;
    double weights = (double)model.num_parameters * sizeof(floatX), acts = (double)gpu_activation_bytes(&model.config, longest);
    double chunk = (double)chunk_rows * (double)model.config.vocab_size * sizeof(float);
    double full_logits = (double)longest * (double)model.config.vocab_size * sizeof(float);
    char b1[32], b2[32], b3[32], b4[32], b5[32];
    fprintf(stderr, "sft: %s, %zu parameters, %zu layers; %s: %llu sequences, the longest %zu tokens\n", model_dir,
            model.num_parameters, model.config.num_layers, data_path, (unsigned long long)shard.header.num_sequences, longest);
    fprintf(stderr, "sft: GPU memory: weights %s (bf16) + activations %s + LM-head chunk %s (%zu rows; the logits of "
            "all %zu rows would take %s) = %s\n", format_bytes(weights, b1, sizeof b1), format_bytes(acts, b2, sizeof b2),
            format_bytes(chunk, b3, sizeof b3), chunk_rows, longest, format_bytes(full_logits, b4, sizeof b4),
            format_bytes(weights + acts + chunk, b5, sizeof b5));

    size_t S = (size_t)shard.header.num_sequences, targets = 0;
    double sum = 0.0, t0 = now_seconds();
    for (size_t i = 0; i < S; i++) {
        size_t start = (size_t)shard.offsets[i], len = shard_seq_len(&shard, i);
        if (len > max_seq_len) len = max_seq_len;
        size_t offs[2] = {0, len};
        sum += gpu_forward(&model, shard.ids + start, shard.mask + start, offs, 1);
        for (size_t t = 1; t < len; t++) targets += shard.mask[start + t];
        print_progress("sequences", i + 1, S, t0);
    }
    printf("sequences: %zu, target tokens: %zu\n", S, targets);
    printf("loss: %.6f\n", S ? sum / (double)S : 0.0);
    gpu_model_free(&model);
    cudaCheck(cudaStreamDestroy(stream));
    shard_free(&shard);
    return 0;
}

// ----------------------------------------------------------------------------
// sft train

typedef struct {
    TrainOptions train;          // ./s1 train's flags (common/train.h)
    int save_bf16;               // --save-dtype bf16 (default, as s1 saved s1-32B) or f32
    int recompute;               // -1: decide from the memory plan; 0, 1: --no-recompute, --recompute
    double gpu_mem_gb;           // --gpu-mem: the GPU's memory, for the plan
    double peak_tflops;          // --peak-tflops: the GPU's dense bf16 peak, for MFU
    size_t chunk_rows;
    int balance;                 // --balance: each rank a similar token count
    int reduce_f32;              // --reduce-dtype f32 (default bf16)
    int overlap;                 // --overlap: the layers' collectives on a second stream
    int rank, world;             // this process's rank of W (common/launch.h)
    ncclComm_t nccl;
} SftOptions;

// The optimizer state of rank r of W: W = 1 writes optimizer.bin in s1.c's
// layout (./s1 train resumes it, and it resumes ./s1 train's); W > 1 writes
// each rank's shards to optimizer.rank<r>-of-<W>.bin.
static void optstate_name(char *buf, size_t n, const char *dir, int rank, int world) {
    if (world == 1) snprintf(buf, n, "%s", dir);
    else snprintf(buf, n, "%s/rank%d-of-%d", dir, rank, world);
}

// The checkpoint, one unit (common/qwen2_weights.h's CheckpointWriter): the HF
// folder (the master weights rounded to bf16, or exactly as F32) and the
// optimizer state (moments, step, settings, and the fp32 master weights when
// the HF file holds only their rounding) appear together in DIR, or the
// previous checkpoint stays whole. W > 1: rank 0 opens the new folder and
// writes the HF files, every rank writes its shards to
// DIR/rank<r>-of-<W>/optimizer.bin inside it, and rank 0 swaps the folder in
// once all are closed. Collective: every rank calls it.
static void sft_save(GpuModel *m, const SftOptions *o, const char *dir) {
    size_t P = m->num_parameters, S = m->shard_numel;
    int lead = m->rank == 0;
    float *master = lead ? (float *)mallocCheck(P * sizeof(float)) : NULL;
    gpu_gather_to_host(m, m->master_memory, master);
    if (m->world == 1) {
        float *am = (float *)mallocCheck(P * sizeof(float)), *av = (float *)mallocCheck(P * sizeof(float));
        gpu_gather_to_host(m, m->adam_m, am);
        gpu_gather_to_host(m, m->adam_v, av);
        train_checkpoint_write(dir, &m->config, master, o->save_bf16, m->step, &o->train.settings, am, av,
                               o->save_bf16 ? master : NULL);
        free(am); free(av); free(master);
        return;
    }
    float *am = (float *)mallocCheck(S * sizeof(float)), *av = (float *)mallocCheck(S * sizeof(float));
    float *ms = (float *)mallocCheck(S * sizeof(float));
    copy_to_host(am, m->adam_m, S * sizeof(float), m->stream);
    copy_to_host(av, m->adam_v, S * sizeof(float), m->stream);
    copy_to_host(ms, m->master_memory, S * sizeof(float), m->stream);
    // nothing that is not finite is saved, on any rank (all ranks learn it, and stop together)
    double bad = gpu_sum_over_ranks(m, (double)(count_nonfinite(am, S) + count_nonfinite(av, S) + count_nonfinite(ms, S)));
    if (bad > 0)
        die("%s: not saving step %zu: %.0f weights or AdamW moments are NaN or infinite (the training diverged); "
            "the previous checkpoint is kept", dir, m->step, bad);
    CheckpointWriter w;
    double pid = 0.0;
    if (lead) {
        checkpoint_begin(&w, dir);
        pid = (double)getpid();
    }
    pid = gpu_sum_over_ranks(m, pid);   // rank 0's pid names the new folder; the sum is also the barrier after its begin
    if (!lead) checkpoint_join(&w, dir, (long)pid);
    char path[4400], name[64];
    if (lead) qwen2_checkpoint_write_model(&w, &m->config, master, o->save_bf16, m->step);
    snprintf(name, sizeof name, "rank%d-of-%d", m->rank, m->world);
    char sub[4400];
    checkpoint_subdir(&w, name, sub, sizeof sub);
    snprintf(name, sizeof name, "rank%d-of-%d/optimizer.bin", m->rank, m->world);
    FILE *fp = checkpoint_open(&w, name, path, sizeof path);
    optstate_write_fp(fp, path, m->step, S, &o->train.settings, am, av, ms);
    checkpoint_close(fp, path);
    fsync_dir(sub);
    gpu_sum_over_ranks(m, 0.0);   // every rank's files are closed
    if (lead) checkpoint_commit(&w);
    gpu_sum_over_ranks(m, 0.0);   // and swapped in, before any rank goes on (or exits)
    free(am); free(av); free(ms); free(master);
}

// A resumed run needs the number of ranks that saved it (each rank's optimizer
// state is its own shards): dies naming both otherwise.
static void sft_check_resume_ranks(const char *dir, int world) {
    char path[4200];
    if (world == 1) snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    else snprintf(path, sizeof path, "%s/rank0-of-%d/optimizer.bin", dir, world);
    if (access(path, F_OK) == 0) return;
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    int saved_by_one = access(path, F_OK) == 0;
    if (saved_by_one || world > 1)
        die("%s: the checkpoint's optimizer state was saved by %s, this run has %d; resume with the same number of ranks",
            dir, saved_by_one ? "1 rank" : "another number of ranks", world);
}

// The model to train, this rank's shards of it: a HF checkpoint, a resumed run, or random weights.
static void sft_model_open(GpuModel *m, SftOptions *o, cudaStream_t stream) {
    TrainOptions *t = &o->train;
    const char *dir = t->resume_dir ? t->resume_dir : t->model_dir;
    char path[4200];
    Qwen2Config c;
    if (dir != NULL) snprintf(path, sizeof path, "%s/config.json", dir);
    config_read(&c, dir != NULL ? path : t->init_config);
    gpu_model_create_rank(m, &c, (int)o->chunk_rows, 1, o->rank, o->world, o->nccl, o->reduce_f32, o->overlap && o->world > 1,
                          stream);
    if (dir == NULL) {   // the same seeded init as ./s1 train --init-config
        float *init = (float *)mallocCheck(m->num_parameters * sizeof(float));
        qwen2_init_parameters(init, &c, t->init_seed);
        gpu_upload_parameters(m, init);
        free(init);
        return;
    }
    size_t step = gpu_model_read(m, dir);
    if (t->resume_dir == NULL) return;
    m->step = step;
    sft_check_resume_ranks(dir, o->world);
    char state_dir[4000];
    optstate_name(state_dir, sizeof state_dir, dir, o->rank, o->world);
    size_t n = o->world == 1 ? m->num_parameters : m->shard_numel;
    float *am = (float *)mallocCheck(n * sizeof(float)), *av = (float *)mallocCheck(n * sizeof(float));
    float *master = (float *)mallocCheck(n * sizeof(float));
    int has_master = optstate_read(state_dir, step, n, &t->settings, am, av, master);
    if (o->world == 1) {
        if (has_master) gpu_upload_parameters(m, master);
        gpu_scatter_from_host(m, m->adam_m, am);
        gpu_scatter_from_host(m, m->adam_v, av);
    } else {
        if (!has_master) die("%s/optimizer.bin: a shard of the optimizer state without master weights", state_dir);
        copy_to_device(m->adam_m, am, n * sizeof(float), stream);
        copy_to_device(m->adam_v, av, n * sizeof(float), stream);
        copy_to_device(m->master_memory, master, n * sizeof(float), stream);
        gpu_round_master(m);
    }
    free(am); free(av); free(master);
}

// Which of the step's sequences rank `rank` trains: their indices into the
// loader's batch, in batch order (count: B / W). The rule: sequence j goes to
// rank j mod W; with --balance, longest first to the rank with the fewest
// tokens so far among those with fewer than B / W sequences (ties: the lower
// rank), so every rank gets B / W sequences and similar token counts. Either
// way each sequence's gradient is scaled by its share of the step's loss
// (train_loss_weights(), computed alike on every rank from the whole batch),
// and the ranks' sum is the step's gradient: the assignment changes who
// computes what, never the loss.
static size_t sft_rank_sequences(const DataLoader *d, int rank, int world, int balance, size_t *mine) {
    size_t B = d->num_seqs, per = B / (size_t)world, count = 0;
    if (!balance) {
        for (size_t j = (size_t)rank; j < B; j += (size_t)world) mine[count++] = j;
        return count;
    }
    size_t *order = (size_t *)mallocCheck(B * sizeof(size_t)), *tokens = (size_t *)callocCheck((size_t)world, sizeof(size_t));
    size_t *taken = (size_t *)callocCheck((size_t)world, sizeof(size_t));
    int *owner = (int *)mallocCheck(B * sizeof(int));
    for (size_t j = 0; j < B; j++) order[j] = j;
    for (size_t i = 1; i < B; i++)   // stable insertion sort, longest first
        for (size_t j = i; j > 0; j--) {
            size_t a = order[j - 1], b = order[j];
            if (d->seq_offsets[b + 1] - d->seq_offsets[b] <= d->seq_offsets[a + 1] - d->seq_offsets[a]) break;
            order[j - 1] = b; order[j] = a;
        }
    for (size_t i = 0; i < B; i++) {
        size_t j = order[i], len = d->seq_offsets[j + 1] - d->seq_offsets[j];
        int best = -1;
        for (int r = 0; r < world; r++)
            if (taken[r] < per && (best < 0 || tokens[r] < tokens[best])) best = r;
        owner[j] = best;
        tokens[best] += len;
        taken[best]++;
    }
    for (size_t j = 0; j < B; j++)
        if (owner[j] == rank) mine[count++] = j;
    free(order); free(tokens); free(taken); free(owner);
    return count;
}

static void print_memory_plan(const GpuMemoryPlan *p, const char *what) {
    char b[10][32];
    printf("memory (%s): weights %s (bf16) + master %s + m %s + v %s + grads %s (fp32) + gathered %s + activations %s "
           "+ scratch %s + LM-head chunk %s = %s\n", what, format_bytes(p->weights, b[0], 32), format_bytes(p->master, b[1], 32),
           format_bytes(p->adam_m, b[2], 32), format_bytes(p->adam_v, b[3], 32), format_bytes(p->grads, b[4], 32),
           format_bytes(p->gathered, b[9], 32), format_bytes(p->activations, b[5], 32), format_bytes(p->scratch, b[6], 32),
           format_bytes(p->logits, b[7], 32), format_bytes(p->total, b[8], 32));
}

// Runs (or resumes) the training run: the loop of s1.c's train_run() on the GPU.
static void sft_train_run(SftOptions *o) {
    TrainOptions *t = &o->train;
    TrainSettings *s = &t->settings;
    cudaStream_t stream;   // the compute stream, on this rank's device (cudaSetDevice came first)
    cudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    GpuModel model;
    sft_model_open(&model, o, stream);
    const Qwen2Config *c = &model.config;
    int lead = o->rank == 0;   // only rank 0 prints
    if (!lead) t->quiet = 1;
    DataLoader loader;
    size_t total, warmup, end;
    train_data_open(t, &loader, c->vocab_size, &total, &warmup, &end);
    if (s->batch_size % (size_t)o->world != 0)
        die("sft train: %d ranks do not divide the batch of %llu sequences", o->world, (unsigned long long)s->batch_size);
    // the memory plan for the largest micro-batch the data can make, and the recompute decision
    size_t per_rank = (size_t)s->batch_size / (size_t)o->world, mb = t->micro_batch < per_rank ? t->micro_batch : per_rank;
    size_t longest = dataloader_longest(&loader), micro_tokens = longest * mb;
    GpuMemoryPlan keep = gpu_memory_plan(c, micro_tokens, 0, (int)o->chunk_rows, o->world, o->reduce_f32, o->overlap && o->world > 1);
    GpuMemoryPlan rec = gpu_memory_plan(c, micro_tokens, 1, (int)o->chunk_rows, o->world, o->reduce_f32, o->overlap && o->world > 1);
    int recompute = o->recompute >= 0 ? o->recompute : keep.total > o->gpu_mem_gb * 1073741824.0;
    if (lead) {
        printf("model: %zu parameters, %zu layers | data: %llu sequences (longest %zu tokens), %zu steps/epoch | %zu steps, %zu warmup | %d rank%s\n",
               model.num_parameters, c->num_layers, (unsigned long long)s->num_sequences, longest,
               dataloader_steps_per_epoch(&loader), total, warmup, o->world, o->world > 1 ? "s" : "");
        print_memory_plan(&keep, "per GPU, activations kept");
        print_memory_plan(&rec, "per GPU, --recompute: layer inputs only");
        printf("recompute: %s (%s; --gpu-mem %.0f GiB)\n", recompute ? "on" : "off",
               o->recompute >= 0 ? "as asked" : recompute ? "the plan without it does not fit" : "the plan fits without it", o->gpu_mem_gb);
        fflush(stdout);
    }
    GpuTrainActs acts;
    memset(&acts, 0, sizeof acts);
    size_t *mine = (size_t *)mallocCheck((size_t)s->batch_size * sizeof(size_t));
    double *seq_weights = (double *)mallocCheck((size_t)s->batch_size * sizeof(double)), *mb_weights = (double *)mallocCheck(mb * sizeof(double));
    uint32_t *ids = (uint32_t *)mallocCheck(mb * (size_t)s->max_seq_len * sizeof(uint32_t));
    uint8_t *mask = (uint8_t *)mallocCheck(mb * (size_t)s->max_seq_len);
    float loss = 0.0f;
    double t_start = now_seconds();
    size_t tokens_done = 0, first_step = model.step, last_saved = SIZE_MAX;
    for (size_t step = model.step; step < end; step++) {
        double t0 = now_seconds();
        double lr = schedule_lr(step, total, warmup, s->lr);
        dataloader_batch(&loader, step);
        train_loss_weights(&loader, s, seq_weights);   // each sequence's share of the step's loss (--loss-norm)
        cudaCheck(cudaMemsetAsync(model.grads_memory, 0, model.shard_numel * sizeof(float), stream));
        // this rank's sequences, in micro-batches; every rank runs the same number of rounds (a rank
        // left without sequences in a round still takes part in its collectives)
        size_t count = sft_rank_sequences(&loader, o->rank, o->world, o->balance, mine);
        size_t most = (loader.num_seqs + (size_t)o->world - 1) / (size_t)o->world, rounds = (most + mb - 1) / mb;
        float my_loss = 0.0f;
        double flops = 0.0, ntok = 0.0;
        for (size_t round = 0; round < rounds; round++) {  // gradient accumulation over micro-batches
            size_t first = round * mb, k = first < count ? (count - first < mb ? count - first : mb) : 0;
            size_t offs[mb + 1];
            offs[0] = 0;
            for (size_t j = 0; j < k; j++) {
                size_t seq = mine[first + j], n0 = loader.seq_offsets[seq], len = loader.seq_offsets[seq + 1] - n0;
                memcpy(ids + offs[j], loader.ids + n0, len * sizeof(uint32_t));
                memcpy(mask + offs[j], loader.mask + n0, len);
                offs[j + 1] = offs[j] + len;
                mb_weights[j] = seq_weights[seq];
                flops += training_flops(c, len);
            }
            ntok += (double)offs[k];
            my_loss += gpu_forward_backward_weighted(&model, &acts, ids, mask, offs, k, mb_weights, 1.0f, recompute);
        }
        loss = (float)gpu_sum_over_ranks(&model, my_loss);
        flops = gpu_sum_over_ranks(&model, flops);
        ntok = gpu_sum_over_ranks(&model, ntok);
        float norm = gpu_update(&model, lr, s->beta1, s->beta2, s->eps, s->weight_decay, s->max_grad_norm, (int)s->decay_norm_weights);
        train_check_step("sft train", step + 1, loss, norm, t->out_dir, last_saved);   // diverged: stop, save nothing
        cudaCheck(cudaDeviceSynchronize());
        tokens_done += (size_t)ntok;
        double t1 = now_seconds(), dt = t1 - t0 > 1e-9 ? t1 - t0 : 1e-9;
        char eta[32], mem[32];
        double per_step = (t1 - t_start) / (double)(step + 1 - first_step);
        if (lead) {   // tokens/s and MFU of all ranks together; mem: per GPU
            printf("step %zu/%zu | loss %.6f | grad norm %.4f | lr %.3e | %.0f tokens/s | MFU %.1f%% | mem %s | ETA %s\n", step + 1,
                   total, loss, norm, lr, ntok / dt, 100.0 * flops / dt / (o->peak_tflops * 1e12 * o->world),
                   format_bytes((double)model.allocated_bytes, mem, sizeof mem),
                   format_duration(per_step * (double)(end - step - 1), eta, sizeof eta));
            fflush(stdout);
        }
        if ((t->save_every > 0 && (step + 1) % t->save_every == 0) || step + 1 == end) {
            sft_save(&model, o, t->out_dir);
            last_saved = step + 1;
        }
    }
    if (lead) {
        // what this rank holds against the plan's count for the largest micro-batch it trained
        GpuMemoryPlan held = gpu_memory_plan(c, acts.capacity, recompute, (int)o->chunk_rows, o->world, o->reduce_f32, o->overlap && o->world > 1);
        double state = held.weights + held.master + held.adam_m + held.adam_v + held.grads;
        printf("memory: rank 0 allocated %zu bytes; the plan for its largest micro-batch (%zu tokens) %.0f bytes; "
               "training state %.0f bytes, 1/%d of %.0f plus padding\n", model.allocated_bytes, acts.capacity, held.total,
               state, o->world, 18.0 * (double)model.num_parameters);
        printf("done: %zu steps, %zu tokens in %.1fs; checkpoint in %s\n", end - first_step, tokens_done, now_seconds() - t_start, t->out_dir);
    }
    free(mine); free(ids); free(mask); free(seq_weights); free(mb_weights);
    gpu_train_acts_free(&acts);
    dataloader_free(&loader);
    gpu_model_free(&model);
    cudaCheck(cudaStreamDestroy(stream));
}

static void usage_train(void) {
    printf("usage: sft train --data SHARD --out DIR (--model DIR | --init-config CONFIG.json | --resume DIR) [options]\n"
           "\n"
           "Fine-tunes Qwen2.5 on one GPU or W (--nproc, torchrun, srun) with s1's recipe, exactly as ./s1 train\n"
           "does on the CPU (the same\n"
           "flags, data order, schedule, clipping and checkpoints): bf16 kernels, fp32 master weights, gradients\n"
           "and AdamW moments. Writes DIR/model.safetensors + config.json (loadable by ./s1 and HF transformers)\n"
           "and DIR/optimizer.bin. Each step logs loss, grad norm, lr, tokens/s, MFU, GPU memory and ETA.\n"
           "\n");
    train_flags_help();
    printf("\nGPU only:\n"
           "  --save-dtype T       bf16 (default, as s1 saved s1-32B; the fp32 master weights go to\n"
           "                       optimizer.bin) or f32\n"
           "  --recompute          keep only each layer's input and recompute the layer in the backward pass\n"
           "                       (default: on when the plan without it exceeds --gpu-mem)\n"
           "  --no-recompute       keep every activation\n"
           "  --gpu-mem GIB        the GPU's memory in GiB for that decision (default 80, an H100)\n"
           "  --peak-tflops X      the GPU's dense bf16 peak for MFU (default 989, H100 SXM)\n"
           "  --chunk-rows N       tokens per LM-head chunk (default 1024)\n"
           "  --overlap            W > 1: the next layer's all-gather and the last layer's reduce-scatter run on a\n"
           "                       second stream while a layer computes (the same bits; twice the layer buffers)\n"
           "  --balance            give each rank of a step a similar token count (longest sequence first to\n"
           "                       the least-loaded rank); default: sequence j of a step goes to rank j mod W\n"
           "  --reduce-dtype T     bf16 (default, as s1's FSDP reduce_dtype) or f32: the gradients' reduce-scatter\n"
           ATTENTION_FLAG_HELP
           "  --nproc N            fork N ranks on this node (like torchrun --nproc_per_node N); without it the rank\n"
           "                       and world size come from torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,\n"
           "                       MASTER_PORT or Slurm's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (common/launch.h).\n"
           "                       W ranks shard the weights, master weights, moments and gradients (ZeRO-3); W\n"
           "                       must divide --batch; only rank 0 logs and writes the HF checkpoint\n"
           "(--threads is accepted for ./s1 train's command lines; sft's work runs on the GPU.)\n");
}

// How long a rank waits for the others to start, or to reach the end (seconds;
// the environment's SFT_LAUNCH_TIMEOUT overrides it): a 32B checkpoint takes minutes to write.
#define SFT_LAUNCH_TIMEOUT 600.0

static int main_train(int argc, char **argv) {
    SftOptions o;
    memset(&o, 0, sizeof o);
    train_options_defaults(&o.train);
    o.save_bf16 = 1;
    o.recompute = -1;
    o.gpu_mem_gb = 80;
    o.peak_tflops = 989;
    o.chunk_rows = 1024;
    o.world = 1;
    int nproc = 0;
    const char *settings_flag = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_train(); return 0; }
        if (train_flag(argc, argv, &i, &o.train, &settings_flag)) continue;
        if (flag_is(a, "--save-dtype")) {
            const char *v = flag_value(argc, argv, &i);
            if (strcmp(v, "bf16") != 0 && strcmp(v, "f32") != 0) die("--save-dtype: '%s' is not bf16 or f32", v);
            o.save_bf16 = strcmp(v, "bf16") == 0;
        }
        else if (flag_is(a, "--recompute")) o.recompute = 1;
        else if (flag_is(a, "--no-recompute")) o.recompute = 0;
        else if (flag_is(a, "--gpu-mem")) o.gpu_mem_gb = flag_number(argc, argv, &i);
        else if (flag_is(a, "--peak-tflops")) o.peak_tflops = flag_number(argc, argv, &i);
        else if (flag_is(a, "--chunk-rows")) o.chunk_rows = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--balance")) o.balance = 1;
        else if (flag_is(a, "--overlap")) o.overlap = 1;
        else if (flag_is(a, "--attention")) attention_flag(flag_value(argc, argv, &i));
        else if (flag_is(a, "--nproc")) nproc = (int)flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--reduce-dtype")) {
            const char *v = flag_value(argc, argv, &i);
            if (strcmp(v, "bf16") != 0 && strcmp(v, "f32") != 0) die("--reduce-dtype: '%s' is not bf16 or f32", v);
            o.reduce_f32 = strcmp(v, "f32") == 0;
        }
        else die("sft train: unknown argument '%s' (see sft train --help)", a);
    }
    train_options_check(&o.train, settings_flag, "sft train");
    if (nproc > LAUNCH_MAX_WORLD) die("--nproc %d is too many", nproc);
    if (o.chunk_rows > (1u << 20)) die("sft train: --chunk-rows %zu is too large", o.chunk_rows);
    if (!(o.peak_tflops > 0)) die("sft train: --peak-tflops must be positive");
    // the ranks: --nproc forks them here (one node), else a launcher (torchrun, srun) started us
    if (nproc > 0 && o.train.resume_dir == NULL && o.train.settings.batch_size % (uint64_t)nproc != 0)
        die("sft train: %d ranks do not divide the batch of %llu sequences", nproc, (unsigned long long)o.train.settings.batch_size);
    if (o.train.resume_dir != NULL && getenv("RANK") == NULL && getenv("SLURM_PROCID") == NULL)
        checkpoint_recover(o.train.resume_dir);   // a kill between the two renames of a fallback swap (one process only)
    if (nproc > 0 && o.train.resume_dir != NULL) sft_check_resume_ranks(o.train.resume_dir, nproc);
    double timeout = SFT_LAUNCH_TIMEOUT;
    const char *timeout_env = getenv("SFT_LAUNCH_TIMEOUT");   // tests shorten it
    if (timeout_env != NULL && (timeout = atof(timeout_env)) <= 0) die("SFT_LAUNCH_TIMEOUT='%s' is not a positive number of seconds", timeout_env);
    LaunchInfo launch;
    if (nproc > 0) {
        if (getenv("RANK") != NULL || getenv("WORLD_SIZE") != NULL) die("sft train: --nproc inside a launcher (RANK or WORLD_SIZE is set)");
        int rc = launch_fork_local(nproc, 10.0, &launch);
        if (rc != LAUNCH_CHILD) return rc;   // the parent: every rank has ended
    } else {
        launch_from_env(&launch);
    }
    o.rank = launch.rank;
    o.world = launch.world_size;
    if (o.world > 1) {
        int devices = 1;   // one GPU per rank: the node's local_rank-th, or the only one it sees (CUDA_VISIBLE_DEVICES)
        cudaCheck(cudaGetDeviceCount(&devices));
        if (devices > 1 && launch.local_rank >= devices)
            die("sft train: local rank %d, but this node shows %d GPUs", launch.local_rank, devices);
        cudaCheck(cudaSetDevice(devices == 1 ? 0 : launch.local_rank));
        ncclUniqueId id;
        memset(&id, 0, sizeof id);
        if (o.rank == 0) ncclCheck(ncclGetUniqueId(&id));
        launch_share_id(&launch, &id, sizeof id, timeout);
        launch_watchdog_start(&launch);   // a dead peer ends this rank too, even inside a collective
        ncclCheck(ncclCommInitRank(&o.nccl, o.world, id, o.rank));
    }
    sft_train_run(&o);
    if (o.world > 1) {
        ncclCheck(ncclCommDestroy(o.nccl));
        launch_finish(&launch, timeout);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// sft plan: the memory and cost audit of a run, from the counters sft train uses

static void usage_plan(void) {
    printf("usage: sft plan --config CONFIG.json [--gpus N] [--gpu-mem GIB] [--block-size N] [--recompute | --no-recompute]\n"
           "                [--data SHARD | --tokens N --sequences S] [--epochs N] [--batch B] [--last-batch s1|short]\n"
           "                [--mfu X] [--dollars-per-gpu-hour Y]\n"
           "                [--reduce-dtype bf16|f32] [--overlap] [--chunk-rows N] [--peak-tflops X]\n"
           "\n"
           "Plans a run of sft train over N GPUs (ZeRO-3: each holds 1/N of the weights, master weights, AdamW\n"
           "moments and gradients) with one sequence of up to --block-size tokens per GPU and micro-batch, as s1\n"
           "ran: the memory per GPU (the same sizes sft train allocates), with and without activation\n"
           "recomputation; the model FLOPs of an epoch and of the run (the counter of sft train's MFU); and the\n"
           "time and cost at a given MFU. The last line is \"plan: <X> GB per GPU of <Y> GB: fits\" (or \"does not\n"
           "fit\"), for scripts.\n"
           "\n"
           "  --config FILE        the model's config.json (configs/qwen2.5-32b-instruct.json, ...)\n"
           "  --gpus N             GPUs, W (default 16, s1's 2 x 8 H100)\n"
           "  --gpu-mem GIB        memory per GPU in GiB (default 80, an H100 SXM: 85.9 GB)\n"
           "  --block-size N       tokens per sequence at most (default 32768, s1's block)\n"
           "  --recompute, --no-recompute   plan with one (default: recompute when the plan without it does not fit)\n"
           "  --data SHARD         the run's sequences (their lengths, truncated to the block), or\n"
           "  --tokens N --sequences S      N tokens in S sequences per epoch (default: s1K, 4,700,000 in 1,000)\n"
           "  --epochs N           (default 5)\n"
           "  --batch B            sequences per optimizer step (default 16, sft train's)\n"
           "  --last-batch R       s1 (default): an epoch's last step is refilled to B sequences from the\n"
           "                       epoch's start, as accelerate 1.0.1 did (1,000 sequences train as 63 x 16 =\n"
           "                       1,008); short: it trains only the left-over ones (sft train's rules;\n"
           "                       with --data the refill is the one sft train's default seed draws)\n"
           "  --mfu X              the MFU to cost the run at (default 0.035: this code's paper estimate, CUDA-core\n"
           "                       attention; see tutorial/sharding.md)\n"
           "  --dollars-per-gpu-hour Y   (default 2.00)\n"
           "  --reduce-dtype T     bf16 (default) or f32, the gradients' reduce-scatter\n"
           "  --overlap            plan for sft train --overlap (a second gathered layer and its gradients)\n"
           "  --chunk-rows N       tokens per LM-head chunk (default 1024)\n"
           "  --peak-tflops X      dense bf16 peak per GPU (default 989, H100 SXM)\n");
}

// The CUDA context, cuBLAS's and NCCL's own buffers: not allocated by us, so an estimate (stated, not measured).
#define CONTEXT_BYTES 1.5e9

static int main_plan(int argc, char **argv) {
    const char *config_path = NULL, *data_path = NULL;
    size_t W = 16, T = 32768, epochs = 5, chunk_rows = 1024, tokens = 4700000, sequences = 1000;
    TrainOptions train;   // the batch, last-batch rule and seed sft train would use
    train_options_defaults(&train);
    size_t B = (size_t)train.settings.batch_size;
    unsigned last_batch = (unsigned)train.settings.last_batch;
    double gpu_mem_gib = 80, mfu = 0.035, dollars = 2.0, peak = 989;
    int recompute = -1, reduce_f32 = 0, tokens_given = 0, sequences_given = 0, overlap = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage_plan(); return 0; }
        else if (flag_is(a, "--config")) config_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--gpus")) W = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--gpu-mem")) gpu_mem_gib = flag_number(argc, argv, &i);
        else if (flag_is(a, "--block-size")) T = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--recompute")) recompute = 1;
        else if (flag_is(a, "--no-recompute")) recompute = 0;
        else if (flag_is(a, "--overlap")) overlap = 1;
        else if (flag_is(a, "--data")) data_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--tokens")) { tokens = flag_count(argc, argv, &i, 0); tokens_given = 1; }
        else if (flag_is(a, "--sequences")) { sequences = flag_count(argc, argv, &i, 0); sequences_given = 1; }
        else if (flag_is(a, "--epochs")) epochs = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--batch")) B = flag_count_max(argc, argv, &i, 0, 1u << 20);
        else if (flag_is(a, "--last-batch")) {
            const char *v = flag_value(argc, argv, &i);
            if (strcmp(v, "s1") == 0) last_batch = TRAIN_LAST_BATCH_S1;
            else if (strcmp(v, "short") == 0) last_batch = TRAIN_LAST_BATCH_SHORT;
            else die("--last-batch: '%s' is not s1 or short", v);
        }
        else if (flag_is(a, "--mfu")) mfu = flag_number(argc, argv, &i);
        else if (flag_is(a, "--dollars-per-gpu-hour")) dollars = flag_number(argc, argv, &i);
        else if (flag_is(a, "--chunk-rows")) chunk_rows = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--peak-tflops")) peak = flag_number(argc, argv, &i);
        else if (flag_is(a, "--reduce-dtype")) {
            const char *v = flag_value(argc, argv, &i);
            if (strcmp(v, "bf16") != 0 && strcmp(v, "f32") != 0) die("--reduce-dtype: '%s' is not bf16 or f32", v);
            reduce_f32 = strcmp(v, "f32") == 0;
        }
        else die("sft plan: unknown argument '%s' (see sft plan --help)", a);
    }
    if (config_path == NULL) die("sft plan: --config is required (see sft plan --help)");
    if (data_path != NULL && (tokens_given || sequences_given)) die("sft plan: give --data or --tokens/--sequences, not both");
    if (tokens_given != sequences_given) die("sft plan: --tokens and --sequences go together");
    if (W > 65536) die("sft plan: --gpus %zu is too many", W);
    if (!(mfu > 0 && mfu <= 1)) die("sft plan: --mfu must be in (0, 1]");
    if (!(peak > 0)) die("sft plan: --peak-tflops must be positive");
    if (chunk_rows > (1u << 20)) die("sft plan: --chunk-rows %zu is too large", chunk_rows);
    Qwen2Config c;
    config_read(&c, config_path);
    double P = (double)parameter_count(&c), gpu_bytes = gpu_mem_gib * 1073741824.0;
    // The FLOPs of the run: every sequence each step trains, as sft train counts them (the
    // refill of --last-batch s1 included), from the shard's sequences in sft train's order
    // (its DataLoader and default seed), or S sequences of the mean length.
    double run_flops = 0.0, run_seqs = 0.0, epoch_tokens = 0.0, S = 0.0;
    size_t steps_per_epoch;
    if (data_path != NULL) {
        DataLoader loader;
        dataloader_init(&loader, data_path, B, T, train.settings.seed);
        loader.last_batch = last_batch;
        S = (double)loader.shard.header.num_sequences;
        for (size_t i = 0; i < (size_t)S; i++) epoch_tokens += (double)(shard_seq_len(&loader.shard, i) < T ? shard_seq_len(&loader.shard, i) : T);
        steps_per_epoch = dataloader_steps_per_epoch(&loader);
        for (size_t step = 0; step < epochs * steps_per_epoch; step++) {
            dataloader_batch(&loader, step);
            for (size_t i = 0; i < loader.num_seqs; i++) run_flops += training_flops(&c, loader.seq_offsets[i + 1] - loader.seq_offsets[i]);
            run_seqs += (double)loader.num_seqs;
        }
        dataloader_free(&loader);
    } else {
        if (sequences == 0) die("sft plan: --sequences must be positive");
        S = (double)sequences;
        epoch_tokens = (double)tokens;
        steps_per_epoch = (sequences + B - 1) / B;
        run_seqs = (double)epochs * (double)(last_batch == TRAIN_LAST_BATCH_S1 ? steps_per_epoch * B : sequences);
        run_flops = run_seqs * training_flops(&c, tokens / sequences);
    }
    double epoch_flops = epochs ? run_flops / (double)epochs : 0.0, epoch_seqs = epochs ? run_seqs / (double)epochs : 0.0;
    GpuMemoryPlan keep = gpu_memory_plan(&c, T, 0, (int)chunk_rows, (int)W, reduce_f32, overlap && W > 1);
    GpuMemoryPlan rec = gpu_memory_plan(&c, T, 1, (int)chunk_rows, (int)W, reduce_f32, overlap && W > 1);
    int use_rec = recompute >= 0 ? recompute : keep.total + CONTEXT_BYTES > gpu_bytes;
    const GpuMemoryPlan *p = use_rec ? &rec : &keep;
    printf("model: %s, %.0f parameters (%zu layers, H %zu, I %zu, V %zu, %s) | %zu GPUs of %.0f GiB (%.1f GB) | block %zu tokens, one sequence per GPU per micro-batch\n",
           config_path, P, c.num_layers, c.hidden_size, c.intermediate_size, c.vocab_size,
           c.tie_word_embeddings ? "tied" : "untied", W, gpu_mem_gib, gpu_bytes / 1e9, T);
    printf("\nmemory per GPU (ZeRO-3 over %zu ranks; what sft train allocates, gpu_memory_plan()):\n", W);
    printf("  %-58s %9.2f GB\n", "bf16 weights (this rank's shard)", p->weights / 1e9);
    printf("  %-58s %9.2f GB\n", "fp32 master weights (shard)", p->master / 1e9);
    printf("  %-58s %9.2f GB\n", "fp32 AdamW m (shard)", p->adam_m / 1e9);
    printf("  %-58s %9.2f GB\n", "fp32 AdamW v (shard)", p->adam_v / 1e9);
    printf("  %-58s %9.2f GB\n", "fp32 gradients (shard)", p->grads / 1e9);
    printf("  %-58s %9.2f GB", "gathered units: bf16 weights, fp32 full gradients, reduce", p->gathered / 1e9);
    if (W > 1) {   // the reduce dtype changes only the reduce buffers
        GpuMemoryPlan other = gpu_memory_plan(&c, T, use_rec, (int)chunk_rows, (int)W, !reduce_f32, overlap && W > 1);
        printf("  (reduce-scatter in %s; in %s: %.2f GB)", reduce_f32 ? "fp32" : "bf16", reduce_f32 ? "bf16" : "fp32", other.gathered / 1e9);
    }
    printf("\n");
    printf("  %-58s %9.2f GB  (kept: %.2f GB; --recompute: %.2f GB)\n", use_rec ? "activations, layer inputs only (--recompute)" : "activations, all kept",
           p->activations / 1e9, keep.activations / 1e9, rec.activations / 1e9);
    printf("  %-58s %9.2f GB\n", "scratch: layer grads, batch, GEMM workspace, RoPE tables", p->scratch / 1e9);
    printf("  %-58s %9.2f GB\n", "LM-head chunk (fp32 logits)", p->logits / 1e9);
    printf("  %-58s %9.2f GB\n", "CUDA context, cuBLAS, NCCL (estimate, not ours)", CONTEXT_BYTES / 1e9);
    double total = p->total + CONTEXT_BYTES;
    printf("  %-58s %9.2f GB  (without recompute %.2f GB, with %.2f GB)\n", "total", total / 1e9,
           (keep.total + CONTEXT_BYTES) / 1e9, (rec.total + CONTEXT_BYTES) / 1e9);
    printf("\ncompute (training_flops(): 6 N_mm T + 6 L NQ HD T (T+1) per sequence):\n");
    printf("  data: %.0f sequences, %.0f tokens (mean %.0f)\n", S, epoch_tokens, epoch_tokens / S);
    printf("  epoch: %zu steps of %zu, %.0f sequences trained (--last-batch %s), %.4g FLOP (%.1f GFLOP per token of data)\n",
           steps_per_epoch, B, epoch_seqs, last_batch == TRAIN_LAST_BATCH_S1 ? "s1" : "short", epoch_flops,
           epoch_flops / epoch_tokens / 1e9);
    printf("  run: %zu epochs, %.4g FLOP\n", epochs, run_flops);
    double s1_seconds = 26 * 60, s1_mfu = run_flops / (s1_seconds * 16 * 989e12);
    printf("\ntime and cost:\n");
    printf("  s1's reported run, 26 minutes on 16 H100, implies MFU %.1f%%\n", 100 * s1_mfu);
    double seconds = run_flops / (mfu * (double)W * peak * 1e12), gpu_hours = seconds / 3600 * (double)W;
    printf("  at MFU %.1f%% on %zu GPUs: %.1f minutes, %.1f GPU-hours, $%.2f at $%.2f per GPU-hour\n", 100 * mfu, W,
           seconds / 60, gpu_hours, gpu_hours * dollars, dollars);
    double s1_at_ours = run_flops / (s1_mfu * (double)W * peak * 1e12);
    printf("  at s1's MFU on %zu GPUs: %.1f minutes, $%.2f\n", W, s1_at_ours / 60, s1_at_ours / 3600 * (double)W * dollars);
    printf("\nplan: %.1f GB per GPU of %.1f GB: %s\n", total / 1e9, gpu_bytes / 1e9, total <= gpu_bytes ? "fits" : "does not fit");
    return 0;
}

// ----------------------------------------------------------------------------

static const struct { const char *name; int (*run)(int, char **); const char *help; } commands[] = {
    {"train", main_train, "fine-tune on one GPU with s1's recipe (./s1 train's flags)"},
    {"loss", main_loss, "the masked loss of a checkpoint over a shard (./s1 loss's contract)"},
    {"plan", main_plan, "the memory per GPU, FLOPs, time and dollars of a run (sft train's counters)"},
};

static void usage(void) {
    printf("usage: sft <command> [options]   (sft <command> --help for each)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) printf("  %-6s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || flag_is(argv[1], "--help") || flag_is(argv[1], "-h")) { usage(); return argc < 2; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    die("sft: unknown command '%s' (see sft --help)", argv[1]);
}
