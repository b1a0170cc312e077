/*
 * sft.cu: supervised fine-tuning of Qwen2.5 on one GPU, as s1 did it.
 *
 *   sft train   s1's training run: the forward and backward passes in the
 *               hand-written bf16 kernels of common/ (cuBLAS for the GEMMs),
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
 * Not here yet: data parallelism over several GPUs (NCCL), a later issue.
 */
#include "common/kernels.cuh"
#include "common/shard.h"
#include "common/train.h"

static const char *format_bytes(double bytes, char *buf, size_t n) {
    if (bytes >= 1e9) snprintf(buf, n, "%.2f GB", bytes / 1e9);
    else snprintf(buf, n, "%.2f MB", bytes / 1e6);
    return buf;
}

// ----------------------------------------------------------------------------
// sft loss

static void usage_loss(void) {
    printf("usage: sft loss --model DIR --data SHARD [--max-seq-len N] [--chunk-rows N]\n"
           "\n"
           "Loads a Hugging Face Qwen2 checkpoint folder (config.json + model.safetensors or a sharded\n"
           "index; F32, F16 or BF16) into bf16 GPU memory and prints the masked loss of the shard,\n"
           "normalised as s1 trains: the mean over sequences of each sequence's mean target-token\n"
           "cross-entropy. The last line is \"loss: <float>\" (the same contract as ./s1 loss).\n"
           "\n"
           "  --max-seq-len N  truncate longer sequences to N tokens (default 32768)\n"
           "  --chunk-rows N   tokens per LM-head chunk: the logits buffer is N x vocab fp32\n"
           "                   (default 1024: 623 MB at Qwen2.5's 152064 rows)\n");
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
        else die("sft loss: unknown argument '%s' (see sft loss --help)", a);
    }
    if (model_dir == NULL || data_path == NULL) die("sft loss: --model and --data are required (see sft loss --help)");
    if (chunk_rows > (1u << 20)) die("sft loss: --chunk-rows %zu is too large", chunk_rows);

    Shard shard;
    shard_read(&shard, data_path);
    GpuModel model;
    gpu_model_load(&model, model_dir, (int)chunk_rows);
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
} SftOptions;

// The checkpoint: the HF folder (the master weights rounded to bf16, or
// exactly as F32) and optimizer.bin (moments, step, settings, and the fp32
// master weights when the HF file holds only their rounding).
static void sft_save(GpuModel *m, const SftOptions *o, const char *dir) {
    size_t P = m->num_parameters;
    float *master = (float *)mallocCheck(P * sizeof(float)), *am = (float *)mallocCheck(P * sizeof(float));
    float *av = (float *)mallocCheck(P * sizeof(float));
    cudaCheck(cudaMemcpy(master, m->master_memory, P * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(am, m->adam_m, P * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(av, m->adam_v, P * sizeof(float), cudaMemcpyDeviceToHost));
    qwen2_checkpoint_write(dir, &m->config, master, o->save_bf16, m->step);
    optstate_write(dir, m->step, P, &o->train.settings, am, av, o->save_bf16 ? master : NULL);
    free(master); free(am); free(av);
}

// The model to train: a HF checkpoint, a resumed run, or random weights.
static void sft_model_open(GpuModel *m, SftOptions *o) {
    TrainOptions *t = &o->train;
    if (t->init_config != NULL) {   // the same seeded init as ./s1 train --init-config
        Qwen2Config c;
        config_read(&c, t->init_config);
        gpu_model_create(m, &c, (int)o->chunk_rows, 1);
        float *init = (float *)mallocCheck(m->num_parameters * sizeof(float));
        qwen2_init_parameters(init, &c, t->init_seed);
        gpu_upload_parameters(m, 0, init, m->num_parameters);
        free(init);
        return;
    }
    size_t step = gpu_model_open(m, t->resume_dir ? t->resume_dir : t->model_dir, (int)o->chunk_rows, 1);
    if (t->resume_dir == NULL) return;
    size_t P = m->num_parameters;
    m->step = step;
    float *am = (float *)mallocCheck(P * sizeof(float)), *av = (float *)mallocCheck(P * sizeof(float));
    float *master = (float *)mallocCheck(P * sizeof(float));
    if (optstate_read(t->resume_dir, step, P, &t->settings, am, av, master)) gpu_upload_parameters(m, 0, master, P);
    cudaCheck(cudaMemcpy(m->adam_m, am, P * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->adam_v, av, P * sizeof(float), cudaMemcpyHostToDevice));
    free(am); free(av); free(master);
}

static void print_memory_plan(const GpuMemoryPlan *p, const char *what) {
    char b[9][32];
    printf("memory (%s): weights %s (bf16) + master %s + m %s + v %s + grads %s (fp32) + activations %s + scratch %s "
           "+ LM-head chunk %s = %s\n", what, format_bytes(p->weights, b[0], 32), format_bytes(p->master, b[1], 32),
           format_bytes(p->adam_m, b[2], 32), format_bytes(p->adam_v, b[3], 32), format_bytes(p->grads, b[4], 32),
           format_bytes(p->activations, b[5], 32), format_bytes(p->scratch, b[6], 32), format_bytes(p->logits, b[7], 32),
           format_bytes(p->total, b[8], 32));
}

// Runs (or resumes) the training run: the loop of s1.c's train_run() on the GPU.
static void sft_train_run(SftOptions *o) {
    TrainOptions *t = &o->train;
    TrainSettings *s = &t->settings;
    GpuModel model;
    sft_model_open(&model, o);
    const Qwen2Config *c = &model.config;
    DataLoader loader;
    size_t total, warmup, end;
    train_data_open(t, &loader, c->vocab_size, &total, &warmup, &end);
    // the memory plan for the largest micro-batch the data can make, and the recompute decision
    size_t longest = dataloader_longest(&loader), micro_tokens = longest * (t->micro_batch < s->batch_size ? t->micro_batch : s->batch_size);
    GpuMemoryPlan keep = gpu_memory_plan(c, micro_tokens, 0, (int)o->chunk_rows), rec = gpu_memory_plan(c, micro_tokens, 1, (int)o->chunk_rows);
    int recompute = o->recompute >= 0 ? o->recompute : keep.total > o->gpu_mem_gb * 1e9;
    printf("model: %zu parameters, %zu layers | data: %llu sequences (longest %zu tokens), %zu steps/epoch | %zu steps, %zu warmup\n",
           model.num_parameters, c->num_layers, (unsigned long long)s->num_sequences, longest,
           dataloader_steps_per_epoch(&loader), total, warmup);
    print_memory_plan(&keep, "activations kept");
    print_memory_plan(&rec, "--recompute: layer inputs only");
    printf("recompute: %s (%s; --gpu-mem %.0f GB)\n", recompute ? "on" : "off",
           o->recompute >= 0 ? "as asked" : recompute ? "the plan without it does not fit" : "the plan fits without it", o->gpu_mem_gb);
    fflush(stdout);
    GpuTrainActs acts;
    memset(&acts, 0, sizeof acts);
    float loss = 0.0f;
    double t_start = now_seconds();
    size_t tokens_done = 0, first_step = model.step;
    for (size_t step = model.step; step < end; step++) {
        double t0 = now_seconds();
        double lr = schedule_lr(step, total, warmup, s->lr);
        dataloader_batch(&loader, step);
        cudaCheck(cudaMemset(model.grads_memory, 0, model.num_parameters * sizeof(float)));
        loss = 0.0f;
        double flops = 0.0;
        for (size_t i = 0; i < loader.num_seqs; i += t->micro_batch) {  // gradient accumulation over micro-batches
            size_t k = i + t->micro_batch < loader.num_seqs ? t->micro_batch : loader.num_seqs - i;
            size_t offs[k + 1], n0 = dataloader_micro_batch(&loader, i, k, offs);
            float weight = (float)k / (float)loader.num_seqs;
            loss += weight * gpu_forward_backward(&model, &acts, loader.ids + n0, loader.mask + n0, offs, k, weight, recompute);
            for (size_t j = 0; j < k; j++) flops += training_flops(c, offs[j + 1] - offs[j]);
        }
        float norm = gpu_update(&model, lr, s->beta1, s->beta2, s->eps, s->weight_decay, s->max_grad_norm, (int)s->decay_norm_weights);
        cudaCheck(cudaDeviceSynchronize());
        size_t ntok = loader.seq_offsets[loader.num_seqs];
        tokens_done += ntok;
        double t1 = now_seconds(), dt = t1 - t0 > 1e-9 ? t1 - t0 : 1e-9;
        char eta[32], mem[32];
        double per_step = (t1 - t_start) / (double)(step + 1 - first_step);
        printf("step %zu/%zu | loss %.6f | grad norm %.4f | lr %.3e | %.0f tokens/s | MFU %.1f%% | mem %s | ETA %s\n", step + 1,
               total, loss, norm, lr, (double)ntok / dt, 100.0 * flops / dt / (o->peak_tflops * 1e12),
               format_bytes((double)model.allocated_bytes, mem, sizeof mem),
               format_duration(per_step * (double)(end - step - 1), eta, sizeof eta));
        fflush(stdout);
        if ((t->save_every > 0 && (step + 1) % t->save_every == 0) || step + 1 == end) sft_save(&model, o, t->out_dir);
    }
    printf("done: %zu steps, %zu tokens in %.1fs; checkpoint in %s\n", end - first_step, tokens_done, now_seconds() - t_start, t->out_dir);
    gpu_train_acts_free(&acts);
    dataloader_free(&loader);
    gpu_model_free(&model);
}

static void usage_train(void) {
    printf("usage: sft train --data SHARD --out DIR (--model DIR | --init-config CONFIG.json | --resume DIR) [options]\n"
           "\n"
           "Fine-tunes Qwen2.5 on one GPU with s1's recipe, exactly as ./s1 train does on the CPU (the same\n"
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
           "  --gpu-mem GB         the GPU's memory for that decision (default 80, an H100)\n"
           "  --peak-tflops X      the GPU's dense bf16 peak for MFU (default 989, H100 SXM)\n"
           "  --chunk-rows N       tokens per LM-head chunk (default 1024)\n"
           "(--threads is accepted for ./s1 train's command lines; sft's work runs on the GPU.)\n");
}

static int main_train(int argc, char **argv) {
    SftOptions o;
    memset(&o, 0, sizeof o);
    train_options_defaults(&o.train);
    o.save_bf16 = 1;
    o.recompute = -1;
    o.gpu_mem_gb = 80;
    o.peak_tflops = 989;
    o.chunk_rows = 1024;
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
        else die("sft train: unknown argument '%s' (see sft train --help)", a);
    }
    train_options_check(&o.train, settings_flag, "sft train");
    if (o.chunk_rows > (1u << 20)) die("sft train: --chunk-rows %zu is too large", o.chunk_rows);
    if (!(o.peak_tflops > 0)) die("sft train: --peak-tflops must be positive");
    sft_train_run(&o);
    return 0;
}

// ----------------------------------------------------------------------------

static const struct { const char *name; int (*run)(int, char **); const char *help; } commands[] = {
    {"train", main_train, "fine-tune on one GPU with s1's recipe (./s1 train's flags)"},
    {"loss", main_loss, "the masked loss of a checkpoint over a shard (./s1 loss's contract)"},
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
