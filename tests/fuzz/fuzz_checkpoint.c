/*
 * tests/fuzz/fuzz_checkpoint.c: the model loaders on arbitrary bytes:
 * safetensors headers and data tables (common/safetensors.h), config.json
 * (common/qwen2_config.h) and a whole checkpoint folder
 * (common/qwen2_weights.h's qwen2_checkpoint_read()).
 *
 * The first byte of the input picks what the rest is:
 *   0  a safetensors file: opened (the whole header validated), then every
 *      float tensor read as fp32 and bf16, every other one raw
 *   1  a config.json: read and validated, then its parameter layout listed
 *   2  the model.safetensors of a folder whose config.json is TINY_CONFIG
 *      below: read as a model (every name, shape and dtype checked, NaN and
 *      Inf refused) into a buffer of exactly the parameter count
 * An accepted entry must lie inside the file and match its shape, so no read
 * may go past the data; sanitizers catch the rest. (tests/fuzz/fuzz.h: how
 * it is built and run.)
 */
#include "common/qwen2_weights.h"
#include "tests/fuzz/fuzz.h"

// the config of mode 2 (tests/fuzz/corpus/checkpoint/seed-tiny-model is a checkpoint of it)
#define TINY_CONFIG "{\"model_type\": \"qwen2\", \"vocab_size\": 8, \"hidden_size\": 4, \"intermediate_size\": 6, " \
                    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, " \
                    "\"max_position_embeddings\": 16, \"tie_word_embeddings\": true}"

static const char *input_path, *folder;

static void read_safetensors(void *ctx) {
    (void)ctx;
    SafetensorsFile f;
    safetensors_open(&f, input_path);
    for (size_t i = 0; i < f.num_entries; i++) {
        const SafetensorsEntry *e = &f.entries[i];
        FUZZ_ASSERT(e->begin <= e->end && e->end <= (size_t)-1 - f.data_start, "an entry's range runs backwards");
        FUZZ_ASSERT(e->end - e->begin == e->numel * e->dtype_size, "an entry's range does not match its shape");
        unsigned __int128 product = 1;   // the element count, without wrapping (found: [2^40, 2^24] passed as 0 elements)
        for (size_t d = 0; d < e->ndim; d++) product = product * e->dims[d] < ((unsigned __int128)1 << 100) ? product * e->dims[d] : ((unsigned __int128)1 << 100);
        FUZZ_ASSERT(product == e->numel, "tensor %s: numel %zu is not the product of its shape", e->name, e->numel);
        void *buf = mallocCheck(e->numel * 8 + 1);   // room for fp32 or any dtype (8 bytes at most); numel is bounded by the file size
        f.check_finite = (int)(i & 1);
        int is_float = !strcmp(e->dtype, "F32") || !strcmp(e->dtype, "F16") || !strcmp(e->dtype, "BF16");
        if (is_float) {
            safetensors_read_f32(&f, e, (float *)buf);
            safetensors_read_bf16(&f, e, (uint16_t *)buf);
        } else {
            safetensors_read_raw(&f, e, buf);
        }
        free(buf);
    }
    safetensors_close(&f);
}

static void read_config(void *ctx) {
    (void)ctx;
    Qwen2Config c;
    config_read(&c, input_path);
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(&c, &count);
    size_t n = parameter_count(&c);
    for (size_t i = 0; i < count; i++)
        FUZZ_ASSERT(tensors[i].offset + tensors[i].numel <= n, "tensor %s lies outside the parameters", tensors[i].name);
    free(tensors);
}

static void read_tensor(void *ctx, const TensorInfo *t, SafetensorsFile *f, const SafetensorsEntry *e) {
    FUZZ_ASSERT(e->numel == t->numel, "tensor %s: %zu elements read into a slot of %zu", t->name, e->numel, t->numel);
    safetensors_read_f32(f, e, (float *)ctx + t->offset);
}

static void read_model(void *ctx) {
    (void)ctx;
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", folder);
    Qwen2Config c;
    config_read(&c, path);
    float *params = (float *)mallocCheck(parameter_count(&c) * sizeof(float));
    qwen2_checkpoint_read(folder, &c, read_tensor, params);
    for (size_t i = 0; i < parameter_count(&c); i++) FUZZ_ASSERT(isfinite(params[i]), "a loaded weight is not finite");
    free(params);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 3;
    if (mode == 2) {
        static char dir[512];
        if (dir[0] == '\0') {
            snprintf(dir, sizeof dir, "%s/model", fuzz_tmpdir());
            make_dir(dir);
        }
        folder = dir;
        char name[600];
        snprintf(name, sizeof name, "model/config.json");
        fuzz_file(name, (const uint8_t *)TINY_CONFIG, strlen(TINY_CONFIG));
        fuzz_file("model/model.safetensors", data + 1, size - 1);
        fuzz_run(read_model, NULL);
        return 0;
    }
    input_path = fuzz_file(mode == 0 ? "input.safetensors" : "config.json", data + 1, size - 1);
    fuzz_run(mode == 0 ? read_safetensors : read_config, NULL);
    return 0;
}
