/*
 * sample.cu: greedy decoding of Qwen2.5 on the GPU with a KV cache.
 *
 * STATUS: greedy decoding of a prompt given as token ids. Budget forcing
 * (common/budget.h), temperature/top-p and text prompts through tokenizer.c
 * are not wired in yet.
 *
 *   make cuda   -> build/cuda/sample (nvcc, sm_90)
 *   make emu    -> build/emu/sample  (the same source on the CPU, through common/cuemu.h)
 *   build/cuda/sample --model Qwen2.5-0.5B-Instruct --prompt-ids 151644,8948,198 --max-new 64
 *
 * The prompt goes through gpu_decode() of common/kernels.cuh in one pass, then
 * each generated token on its own: the layer kernels of the training forward
 * pass, K and V appended to the cache, attention over the cached keys. The
 * next token is the argmax over the real token ids (sample_argmax() of
 * common/sampler.h: the padding rows of the embedding are never chosen).
 * Prints the generated ids on one line, separated by spaces.
 */
#include "common/kernels.cuh"
#include "common/sampler.h"

#define QWEN25_TOKENIZER_SIZE 151665   // ids 0..151664 are tokens; the embedding pads beyond

static void usage(void) {
    printf("usage: sample --model DIR --prompt-ids ID,ID,... [--max-new N] [--stop ID]... [--vocab N]\n"
           "\n"
           "Greedy decoding with a KV cache on the GPU: feeds the prompt, then appends the most likely\n"
           "token until --max-new tokens (default 32) or a stop id. Prints the generated ids on one line.\n"
           "\n"
           "  --stop ID   stop after generating ID (repeatable; default: eos_token_id of config.json)\n"
           "  --vocab N   only ids below N are generated (default: the embedding rows, at most %d,\n"
           "              Qwen2.5's tokenizer size: the padding rows are never chosen)\n"
           "\n"
           "Not implemented yet: budget forcing, temperature / top-p, text prompts.\n",
           QWEN25_TOKENIZER_SIZE);
}

static size_t parse_size(const char *flag, const char *value, int allow_zero) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || (v == 0 && !allow_zero) || v > UINT32_MAX)
        die("sample: %s needs a %s integer, got '%s'", flag, allow_zero ? "non-negative" : "positive", value);
    return (size_t)v;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL;
    size_t max_new = 32, vocab = 0;
    IdList stops = {NULL, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(); return 0; }
        int has_value = i + 1 < argc;
        if (strcmp(a, "--model") == 0 && has_value) model_dir = argv[++i];
        else if (strcmp(a, "--prompt-ids") == 0 && has_value) prompt = argv[++i];
        else if (strcmp(a, "--max-new") == 0 && has_value) max_new = parse_size(a, argv[++i], 1);
        else if (strcmp(a, "--stop") == 0 && has_value) idlist_push(&stops, (uint32_t)parse_size(a, argv[++i], 1));
        else if (strcmp(a, "--vocab") == 0 && has_value) vocab = parse_size(a, argv[++i], 0);
        else die("sample: unknown argument or missing value '%s' (see sample --help)", a);
    }
    if (model_dir == NULL || prompt == NULL) die("sample: --model and --prompt-ids are required (see sample --help)");

    IdList ids = {NULL, 0, 0};
    for (const char *p = prompt; *p;) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno != 0 || end == p || *p == '-' || v > UINT32_MAX || (*end != ',' && *end != '\0'))
            die("sample: --prompt-ids must be comma-separated token ids, got '%s'", prompt);
        idlist_push(&ids, (uint32_t)v);
        p = *end == ',' ? end + 1 : end;
    }
    if (ids.len == 0) die("sample: --prompt-ids is empty");

    GpuModel model;
    gpu_model_load(&model, model_dir, 1);
    size_t V = model.config.vocab_size;
    if (vocab == 0) vocab = V < QWEN25_TOKENIZER_SIZE ? V : QWEN25_TOKENIZER_SIZE;
    if (vocab > V) die("sample: --vocab %zu exceeds the model's %zu embedding rows", vocab, V);
    if (stops.len == 0 && model.config.eos_token_id >= 0) idlist_push(&stops, (uint32_t)model.config.eos_token_id);
    for (size_t i = 0; i < ids.len; i++)
        if (ids.data[i] >= V) die("sample: prompt token id %u is outside the model's %zu embedding rows", ids.data[i], V);

    GpuKVCache kv;
    gpu_kvcache_create(&kv, &model, ids.len + max_new);
    const float *logits = gpu_decode(&model, &kv, ids.data, ids.len);   // the prompt, in one pass
    for (size_t n = 0; n < max_new; n++) {
        uint32_t next = sample_argmax(logits, (uint32_t)vocab, NULL, 0);
        printf(n ? " %u" : "%u", next);
        fflush(stdout);
        int stop = 0;
        for (size_t s = 0; s < stops.len; s++) stop |= stops.data[s] == next;
        if (stop || n + 1 == max_new) break;
        logits = gpu_decode(&model, &kv, &next, 1);
    }
    printf("\n");
    gpu_kvcache_free(&kv);
    gpu_model_free(&model);
    idlist_free(&ids);
    idlist_free(&stops);
    return 0;
}
