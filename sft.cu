/*
 * sft.cu: supervised fine-tuning of Qwen2.5 on the GPU, as s1 did it.
 *
 * STATUS: forward pass only. This program loads a Hugging Face checkpoint into
 * bf16 GPU memory and computes s1's masked loss over a token shard with the
 * hand-written kernels of common/kernels.cuh (cuBLAS for the GEMMs): the same
 * contract as `./s1 loss`, which it must match. Training (the backward
 * kernels, AdamW, NCCL data parallelism) is a later issue and is NOT here.
 *
 *   make cuda   -> build/cuda/sft (nvcc, sm_90)
 *   make emu    -> build/emu/sft  (the same source on the CPU, through common/cuemu.h)
 *   build/cuda/sft --model Qwen2.5-0.5B-Instruct --data train.shard   # last line "loss: <float>"
 *
 * The loss is s1's (s1-spec.md section 3.2): each sequence's mean cross-entropy
 * over its target tokens, averaged over sequences. Sequences run one at a
 * time (s1's per-device batch is 1), each truncated to --max-seq-len tokens.
 */
#include "common/kernels.cuh"
#include "common/shard.h"

static void usage(void) {
    printf("usage: sft --model DIR --data SHARD [--max-seq-len N] [--chunk-rows N]\n"
           "\n"
           "Loads a Hugging Face Qwen2 checkpoint folder (config.json + model.safetensors or a sharded\n"
           "index; F32, F16 or BF16) into bf16 GPU memory and prints the masked loss of the shard,\n"
           "normalised as s1 trains: the mean over sequences of each sequence's mean target-token\n"
           "cross-entropy. The last line is \"loss: <float>\" (the same contract as ./s1 loss).\n"
           "\n"
           "  --max-seq-len N  truncate longer sequences to N tokens (default 32768)\n"
           "  --chunk-rows N   tokens per LM-head chunk: the logits buffer is N x vocab fp32\n"
           "                   (default 1024: 623 MB at Qwen2.5's 152064 rows)\n"
           "\n"
           "Forward only for now: training (backward kernels, AdamW, NCCL data parallel) is not\n"
           "implemented yet; use ./s1 train on the CPU.\n");
}

static const char *format_bytes(double bytes, char *buf, size_t n) {
    if (bytes >= 1e9) snprintf(buf, n, "%.2f GB", bytes / 1e9);
    else snprintf(buf, n, "%.2f MB", bytes / 1e6);
    return buf;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *data_path = NULL;
    size_t max_seq_len = 32768, chunk_rows = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) { usage(); return 0; }
        else if (flag_is(a, "--model")) model_dir = flag_value(argc, argv, &i);
        else if (flag_is(a, "--data")) data_path = flag_value(argc, argv, &i);
        else if (flag_is(a, "--max-seq-len")) max_seq_len = flag_count(argc, argv, &i, 0);
        else if (flag_is(a, "--chunk-rows")) chunk_rows = flag_count(argc, argv, &i, 0);
        else die("sft: unknown argument '%s' (see sft --help)", a);
    }
    if (model_dir == NULL || data_path == NULL) die("sft: --model and --data are required (see sft --help)");
    if (chunk_rows > (1u << 20)) die("sft: --chunk-rows %zu is too large", chunk_rows);

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
