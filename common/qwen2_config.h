/*
 * qwen2_config.h: a Hugging Face Qwen2 config.json, read and validated
 * (docs/qwen2.5.md section 1). Unsupported variants (sliding window, rope
 * scaling, another activation) are refused with a one-line error naming the
 * file; transformers 5's "rope_parameters" object is read as well as the
 * top-level "rope_theta" of the released Qwen2.5 configs.
 *
 * This is s1.c's config reader as a shared header, used by the GPU programs
 * through common/kernels.cuh; the names are s1.c's, so that s1.c can include
 * this header instead of its own copy.
 */
#ifndef S1C_QWEN2_CONFIG_H
#define S1C_QWEN2_CONFIG_H

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "common/util.h"
#include "common/json.h"

typedef struct {
    size_t vocab_size;            // V, embedding rows (>= the tokenizer's size)
    size_t hidden_size;           // H
    size_t intermediate_size;     // I
    size_t num_layers;            // L
    size_t num_heads;             // NQ
    size_t num_kv_heads;          // NKV
    size_t head_dim;              // HD ("head_dim" in config.json, else H/NQ)
    size_t max_position_embeddings;
    double rope_theta;
    double rms_norm_eps;
    int tie_word_embeddings;
    long long bos_token_id, eos_token_id;   // -1 when absent; copied to the saved config
} Qwen2Config;

// The largest value each size may take: far above any released Qwen2 (the
// 72B model: vocab 152064, hidden 8192, intermediate 29568, 80 layers, 64/8
// heads of 128, 131072 positions), low enough that every product of sizes this
// code forms fits 64 bits, and that a config.json with hidden_size 2^62 is
// refused by name instead of wrapping an allocation size.
#define QWEN2_MAX_VOCAB (1ull << 24)
#define QWEN2_MAX_HIDDEN (1ull << 16)
#define QWEN2_MAX_INTERMEDIATE (1ull << 18)
#define QWEN2_MAX_LAYERS 1024ull
#define QWEN2_MAX_HEADS 1024ull
#define QWEN2_MAX_HEAD_DIM 1024ull
#define QWEN2_MAX_POSITIONS (1ull << 24)
#define QWEN2_MAX_PARAMETERS (1ull << 40)   // 1.1e12, 15x Qwen2.5-72B

static inline void config_validate(const Qwen2Config *c, const char *what) {
    if (c->vocab_size == 0 || c->hidden_size == 0 || c->intermediate_size == 0 || c->num_layers == 0 ||
        c->num_heads == 0 || c->num_kv_heads == 0 || c->head_dim == 0)
        die("%s: every model size must be positive", what);
    const struct { const char *name; size_t value; unsigned long long max; } sizes[] = {
        {"vocab_size", c->vocab_size, QWEN2_MAX_VOCAB}, {"hidden_size", c->hidden_size, QWEN2_MAX_HIDDEN},
        {"intermediate_size", c->intermediate_size, QWEN2_MAX_INTERMEDIATE}, {"num_hidden_layers", c->num_layers, QWEN2_MAX_LAYERS},
        {"num_attention_heads", c->num_heads, QWEN2_MAX_HEADS}, {"num_key_value_heads", c->num_kv_heads, QWEN2_MAX_HEADS},
        {"head_dim", c->head_dim, QWEN2_MAX_HEAD_DIM}, {"max_position_embeddings", c->max_position_embeddings, QWEN2_MAX_POSITIONS}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value > sizes[i].max)
            die("%s: %s %zu is implausible (this code accepts at most %llu)", what, sizes[i].name, sizes[i].value, sizes[i].max);
    // the parameter count (common/qwen2_weights.h's layout) with every size at most its maximum fits 64 bits
    size_t H = c->hidden_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t per_layer = 2 * H + QD * H + QD + 2 * (KD * H + KD) + H * QD + 3 * c->intermediate_size * H;
    size_t params = c->vocab_size * H * (c->tie_word_embeddings ? 1 : 2) + H + c->num_layers * per_layer;
    if (params > QWEN2_MAX_PARAMETERS)
        die("%s: the model would have %zu parameters, implausibly many (this code accepts at most %llu)", what, params, QWEN2_MAX_PARAMETERS);
    if (c->num_heads % c->num_kv_heads != 0)
        die("%s: num_attention_heads %zu is not a multiple of num_key_value_heads %zu", what, c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2 != 0) die("%s: head_dim %zu must be even for RoPE", what, c->head_dim);
    if (c->vocab_size > (1ull << 32)) die("%s: vocab_size %zu does not fit 32-bit token ids", what, c->vocab_size);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta) || !(c->rms_norm_eps > 0) || !(c->rms_norm_eps < 1))
        die("%s: rope_theta must be positive and finite, rms_norm_eps in (0, 1)", what);
}


static inline const JsonValue *config_field(const JsonValue *root, const char *key, JsonType type, const char *path, int required) {
    const JsonValue *v = json_get(root, key);
    if (v == NULL || v->type == JSON_NULL) {
        if (required) die("%s: missing field \"%s\"", path, key);
        return NULL;
    }
    if (v->type != type && !(type == JSON_TRUE && v->type == JSON_FALSE))
        die("%s: field \"%s\" is a %s, expected a %s", path, key, json_type_name(v->type), type == JSON_TRUE ? "boolean" : json_type_name(type));
    return v;
}

static inline size_t config_size(const JsonValue *root, const char *key, const char *path, int required, size_t fallback) {
    const JsonValue *v = config_field(root, key, JSON_NUMBER, path, required);
    if (v == NULL) return fallback;
    if (!v->is_integer || v->integer <= 0) die("%s: field \"%s\" must be a positive integer", path, key);
    return (size_t)v->integer;
}

static inline void config_read(Qwen2Config *c, const char *path) {
    size_t len;
    char *text = read_file_or_null(path, &len);
    if (text == NULL) die("%s: cannot read model config: %s", path, strerror(errno));
    JsonDoc doc;
    char err[256];
    if (json_parse(text, len, &doc, err, sizeof err) != 0) die("%s: invalid JSON: %s", path, err);
    const JsonValue *root = doc.root;
    if (root->type != JSON_OBJECT) die("%s: expected a JSON object", path);
    const JsonValue *v = config_field(root, "model_type", JSON_STRING, path, 0);
    if (v != NULL && strcmp(v->str, "qwen2") != 0) die("%s: model_type \"%s\" is not qwen2", path, v->str);
    v = config_field(root, "hidden_act", JSON_STRING, path, 0);
    if (v != NULL && strcmp(v->str, "silu") != 0) die("%s: hidden_act \"%s\" is not supported (silu only)", path, v->str);
    v = config_field(root, "use_sliding_window", JSON_TRUE, path, 0);
    if (v != NULL && v->type == JSON_TRUE) die("%s: use_sliding_window=true is not supported", path);
    if (json_get(root, "rope_scaling") != NULL && json_get(root, "rope_scaling")->type != JSON_NULL)
        die("%s: rope_scaling is not supported (plain RoPE only)", path);
    memset(c, 0, sizeof *c);
    c->vocab_size = config_size(root, "vocab_size", path, 1, 0);
    c->hidden_size = config_size(root, "hidden_size", path, 1, 0);
    c->intermediate_size = config_size(root, "intermediate_size", path, 1, 0);
    c->num_layers = config_size(root, "num_hidden_layers", path, 1, 0);
    c->num_heads = config_size(root, "num_attention_heads", path, 1, 0);
    c->num_kv_heads = config_size(root, "num_key_value_heads", path, 0, c->num_heads);
    c->head_dim = config_size(root, "head_dim", path, 0, c->hidden_size / c->num_heads);
    c->max_position_embeddings = config_size(root, "max_position_embeddings", path, 0, 32768);
    v = config_field(root, "rope_theta", JSON_NUMBER, path, 0);
    const JsonValue *rope = config_field(root, "rope_parameters", JSON_OBJECT, path, 0);  // transformers 5 moved it here
    if (v == NULL && rope != NULL) {
        const JsonValue *type = config_field(rope, "rope_type", JSON_STRING, path, 0);
        if (type != NULL && strcmp(type->str, "default") != 0) die("%s: rope_type \"%s\" is not supported (plain RoPE only)", path, type->str);
        v = config_field(rope, "rope_theta", JSON_NUMBER, path, 0);
    }
    c->rope_theta = v ? v->number : 10000.0;  // Qwen2Config's default
    v = config_field(root, "rms_norm_eps", JSON_NUMBER, path, 0);
    c->rms_norm_eps = v ? v->number : 1e-6;
    v = config_field(root, "tie_word_embeddings", JSON_TRUE, path, 0);
    c->tie_word_embeddings = v != NULL && v->type == JSON_TRUE;
    v = config_field(root, "bos_token_id", JSON_NUMBER, path, 0);
    c->bos_token_id = v && v->is_integer ? v->integer : -1;
    v = config_field(root, "eos_token_id", JSON_NUMBER, path, 0);
    c->eos_token_id = v && v->is_integer ? v->integer : -1;
    if (c->head_dim == 0) die("%s: hidden_size %zu is smaller than num_attention_heads %zu", path, c->hidden_size, c->num_heads);
    json_free(&doc);
    free(text);
    config_validate(c, path);
}

#endif // S1C_QWEN2_CONFIG_H
