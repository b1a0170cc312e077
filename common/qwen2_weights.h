/*
 * qwen2_weights.h: the parameter layout a Qwen2 config implies, and Hugging
 * Face checkpoint folders in and out, shared by s1.c and the GPU programs
 * (common/kernels.cuh), so the two read and write exactly the same files.
 *
 * The layout: fifteen parameter tensors (P_EMBED ... P_LMW), each holding all
 * layers of one kind back to back, carved in that order out of one flat
 * buffer (llm.c's ParameterTensors). A checkpoint names each layer's slice
 * separately ("model.layers.3.mlp.up_proj.weight"): TensorInfo maps those
 * names to offsets in the flat buffer, in the order HF writes them.
 *
 *   qwen2_tensor_list()        the HF tensors of a config, with their offsets
 *   qwen2_checkpoint_read()    a HF folder (model.safetensors or an index of
 *                              shards; F32, F16 or BF16), every name, shape and
 *                              dtype checked, each tensor handed to a callback
 *   qwen2_checkpoint_write()   config.json + model.safetensors (F32 or BF16),
 *                              each through a temporary file and a rename
 *   qwen2_init_parameters()    HF's from-scratch initialisation, seeded
 */
#ifndef S1C_QWEN2_WEIGHTS_H
#define S1C_QWEN2_WEIGHTS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "common/util.h"
#include "common/json.h"
#include "common/qwen2_config.h"
#include "common/safetensors.h"

// ----------------------------------------------------------------------------
// the parameter tensors

enum { P_EMBED, P_LN1W, P_QW, P_QB, P_KW, P_KB, P_VW, P_VB, P_OW, P_LN2W, P_GATEW, P_UPW, P_DOWNW, P_NORMW, P_LMW,
       NUM_PARAMETER_TENSORS };

// How each parameter tensor is named in HF checkpoints, and its kind, which
// decides its weight decay (AdamW's decay groups: s1-spec 1.3).
enum { KIND_WEIGHT, KIND_BIAS, KIND_NORM };
static const struct { const char *name; int per_layer; int kind; } parameter_info[NUM_PARAMETER_TENSORS] = {
    {"model.embed_tokens.weight", 0, KIND_WEIGHT},
    {"input_layernorm.weight", 1, KIND_NORM},
    {"self_attn.q_proj.weight", 1, KIND_WEIGHT},
    {"self_attn.q_proj.bias", 1, KIND_BIAS},
    {"self_attn.k_proj.weight", 1, KIND_WEIGHT},
    {"self_attn.k_proj.bias", 1, KIND_BIAS},
    {"self_attn.v_proj.weight", 1, KIND_WEIGHT},
    {"self_attn.v_proj.bias", 1, KIND_BIAS},
    {"self_attn.o_proj.weight", 1, KIND_WEIGHT},
    {"post_attention_layernorm.weight", 1, KIND_NORM},
    {"mlp.gate_proj.weight", 1, KIND_WEIGHT},
    {"mlp.up_proj.weight", 1, KIND_WEIGHT},
    {"mlp.down_proj.weight", 1, KIND_WEIGHT},
    {"model.norm.weight", 0, KIND_NORM},
    {"lm_head.weight", 0, KIND_WEIGHT},
};

// Shape of one layer's slice (or of the whole tensor for global ones); dims[1] = 0 for vectors.
static inline void parameter_shape(const Qwen2Config *c, int i, size_t dims[2]) {
    size_t H = c->hidden_size, I = c->intermediate_size, QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
    size_t shapes[NUM_PARAMETER_TENSORS][2] = {
        {c->vocab_size, H}, {H, 0}, {QD, H}, {QD, 0}, {KD, H}, {KD, 0}, {KD, H}, {KD, 0}, {H, QD}, {H, 0},
        {I, H}, {I, H}, {H, I}, {H, 0}, {c->tie_word_embeddings ? 0 : c->vocab_size, H}};
    dims[0] = shapes[i][0];
    dims[1] = shapes[i][1];
}

// Elements of parameter tensor i, all layers (0 for lm_head when tied: the head is the embedding).
static inline size_t parameter_numel(const Qwen2Config *c, int i) {
    size_t dims[2];
    parameter_shape(c, i, dims);
    size_t n = dims[0] * (dims[1] ? dims[1] : 1);
    return parameter_info[i].per_layer ? n * c->num_layers : n;
}

// Offset of parameter tensor i in the flat buffer.
static inline size_t parameter_offset(const Qwen2Config *c, int i) {
    size_t off = 0;
    for (int j = 0; j < i; j++) off += parameter_numel(c, j);
    return off;
}

static inline size_t parameter_count(const Qwen2Config *c) { return parameter_offset(c, NUM_PARAMETER_TENSORS); }

// ----------------------------------------------------------------------------
// the checkpoint's tensors

// One tensor as HF names it: a layer's slice of a parameter tensor.
typedef struct {
    char name[96];
    int param;         // P_* index
    size_t offset;     // elements from the start of the flat buffer
    size_t dims[2];    // dims[1] == 0 for a vector
    size_t numel;
} TensorInfo;

// The config's tensors in HF order (embedding, the layers, final norm,
// lm_head unless tied), malloc'd; *count receives their number.
static inline TensorInfo *qwen2_tensor_list(const Qwen2Config *c, size_t *count) {
    size_t L = c->num_layers, n = 2 + L * (NUM_PARAMETER_TENSORS - 3) + (c->tie_word_embeddings ? 0 : 1), k = 0;
    TensorInfo *tensors = (TensorInfo *)callocCheck(n, sizeof(TensorInfo));
    for (int pass = 0; pass < 3; pass++) {  // globals before the layers, layers, globals after
        size_t layers = pass == 1 ? L : 1;
        for (size_t l = 0; l < layers; l++)
            for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
                int wanted = pass == 1 ? parameter_info[i].per_layer : !parameter_info[i].per_layer && ((pass == 0) == (i == P_EMBED));
                if (!wanted || (i == P_LMW && c->tie_word_embeddings)) continue;
                TensorInfo *t = &tensors[k++];
                t->param = i;
                parameter_shape(c, i, t->dims);
                t->numel = t->dims[0] * (t->dims[1] ? t->dims[1] : 1);
                t->offset = parameter_offset(c, i) + (parameter_info[i].per_layer ? l * t->numel : 0);
                if (parameter_info[i].per_layer) snprintf(t->name, sizeof t->name, "model.layers.%zu.%s", l, parameter_info[i].name);
                else snprintf(t->name, sizeof t->name, "%s", parameter_info[i].name);
            }
    }
    if (k != n) die("internal error: listed %zu tensors, expected %zu", k, n);
    *count = n;
    return tensors;
}

static inline const TensorInfo *find_tensor(const TensorInfo *tensors, size_t count, const char *name) {
    for (size_t i = 0; i < count; i++)
        if (strcmp(tensors[i].name, name) == 0) return &tensors[i];
    return NULL;
}

// ----------------------------------------------------------------------------
// reading a checkpoint folder

// Called once per model tensor with its file entry open, to read the data
// (safetensors_read_f32() or safetensors_read_bf16()) wherever it belongs.
typedef void (*TensorReader)(void *ctx, const TensorInfo *t, SafetensorsFile *f, const SafetensorsEntry *e);

static inline void format_shape(char *buf, size_t n, const size_t *dims, size_t ndim) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (size_t i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %zu" : "%zu", dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Reads the model tensors of a HF folder (config.json already read into c):
// model.safetensors, or the shards listed in model.safetensors.index.json.
// Every entry is checked (a known name, the config's shape, F32/F16/BF16, not
// twice) before any data of its file is read; a tied model's lm_head.weight
// copy is skipped; a missing tensor is an error. Returns the "s1c_step"
// metadata (AdamW steps of an s1.c checkpoint), 0 when absent.
static inline size_t qwen2_checkpoint_read(const char *dir, const Qwen2Config *c, TensorReader read, void *ctx) {
    size_t count, step = 0;
    TensorInfo *tensors = qwen2_tensor_list(c, &count);
    char *loaded = (char *)callocCheck(count, 1);
    SafetensorsFolder files;
    safetensors_folder_open(&files, dir);
    const JsonValue *map = files.weight_map;
    for (size_t i = 0; map != NULL && i < map->len; i++)
        if (find_tensor(tensors, count, map->keys[i]) == NULL && !(c->tie_word_embeddings && strcmp(map->keys[i], "lm_head.weight") == 0))
            die("%s: unexpected tensor %s in weight_map", files.index_path, map->keys[i]);
    for (size_t file = 0; file < files.num_files; file++) {
        SafetensorsFile f;
        safetensors_folder_open_file(&files, file, &f);
        const JsonValue *meta = json_get(f.metadata, "s1c_step");
        if (meta != NULL && meta->type == JSON_STRING) step = (size_t)strtoull(meta->str, NULL, 10);
        for (size_t i = 0; i < f.num_entries; i++) {
            const SafetensorsEntry *e = &f.entries[i];
            const TensorInfo *t = find_tensor(tensors, count, e->name);
            if (t == NULL) {
                if (c->tie_word_embeddings && strcmp(e->name, "lm_head.weight") == 0) continue;  // a copy of the embedding
                die("%s: unexpected tensor %s (not part of a Qwen2 model with this config)", f.path, e->name);
            }
            if (loaded[t - tensors]) die("%s: tensor %s appears in more than one file", f.path, e->name);
            size_t ndim = t->dims[1] ? 2 : 1;
            if (e->ndim != ndim || e->dims[0] != t->dims[0] || (ndim == 2 && e->dims[1] != t->dims[1])) {
                char got[128], want[128];
                format_shape(got, sizeof got, e->dims, e->ndim);
                format_shape(want, sizeof want, t->dims, ndim);
                die("%s: tensor %s has shape %s, the config implies %s", f.path, e->name, got, want);
            }
            if (strcmp(e->dtype, "F32") != 0 && strcmp(e->dtype, "F16") != 0 && strcmp(e->dtype, "BF16") != 0)
                die("%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", f.path, e->name, e->dtype);
        }
        for (size_t i = 0; i < f.num_entries; i++) {
            const TensorInfo *t = find_tensor(tensors, count, f.entries[i].name);
            if (t == NULL) continue;
            read(ctx, t, &f, &f.entries[i]);
            loaded[t - tensors] = 1;
        }
        safetensors_close(&f);
    }
    safetensors_folder_close(&files);
    for (size_t i = 0; i < count; i++)
        if (!loaded[i]) die("%s: missing tensor %s", dir, tensors[i].name);
    free(loaded);
    free(tensors);
    return step;
}

// ----------------------------------------------------------------------------
// writing a checkpoint folder

static inline void config_write(const Qwen2Config *c, const char *path) {
    AtomicFile af = atomic_open(path);
    FILE *fp = af.fp;
    fprintf(fp, "{\n  \"architectures\": [\"Qwen2ForCausalLM\"],\n  \"model_type\": \"qwen2\",\n");
    fprintf(fp, "  \"hidden_act\": \"silu\",\n  \"attention_dropout\": 0.0,\n  \"initializer_range\": 0.02,\n");
    fprintf(fp, "  \"vocab_size\": %zu,\n  \"hidden_size\": %zu,\n  \"intermediate_size\": %zu,\n", c->vocab_size, c->hidden_size, c->intermediate_size);
    fprintf(fp, "  \"num_hidden_layers\": %zu,\n  \"num_attention_heads\": %zu,\n  \"num_key_value_heads\": %zu,\n", c->num_layers, c->num_heads, c->num_kv_heads);
    fprintf(fp, "  \"head_dim\": %zu,\n  \"max_position_embeddings\": %zu,\n", c->head_dim, c->max_position_embeddings);
    fprintf(fp, "  \"rope_theta\": %.17g,\n  \"rms_norm_eps\": %.17g,\n", c->rope_theta, c->rms_norm_eps);
    fprintf(fp, "  \"tie_word_embeddings\": %s,\n  \"use_sliding_window\": false,\n", c->tie_word_embeddings ? "true" : "false");
    if (c->bos_token_id >= 0) fprintf(fp, "  \"bos_token_id\": %lld,\n", c->bos_token_id);
    if (c->eos_token_id >= 0) fprintf(fp, "  \"eos_token_id\": %lld,\n", c->eos_token_id);
    fprintf(fp, "  \"torch_dtype\": \"float32\"\n}\n");
    atomic_commit(&af);
}

static inline void make_dir(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("%s: cannot create directory: %s", dir, strerror(errno));
}

// Writes the tensors [first, first + count) of a tensor list to a safetensors
// file, as F32 or BF16 taken from the flat fp32 buffer params, through a
// temporary name. The metadata records the AdamW step, so a resume can check
// that the model and optimizer files belong together.
static inline void safetensors_write(const char *path, const TensorInfo *tensors, size_t first, size_t count,
                                     const float *params, int bf16, size_t step) {
    ByteBuf hdr;
    memset(&hdr, 0, sizeof hdr);
    char buf[512];
    size_t elem = bf16 ? 2 : 4, off = 0;
    snprintf(buf, sizeof buf, "{\"__metadata__\":{\"format\":\"pt\",\"s1c_step\":\"%zu\"}", step);
    bytebuf_puts(&hdr, buf);
    for (size_t i = first; i < first + count; i++) {
        const TensorInfo *t = &tensors[i];
        char shape[64];
        if (t->dims[1]) snprintf(shape, sizeof shape, "%zu,%zu", t->dims[0], t->dims[1]);
        else snprintf(shape, sizeof shape, "%zu", t->dims[0]);
        snprintf(buf, sizeof buf, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}", t->name,
                 bf16 ? "BF16" : "F32", shape, off, off + elem * t->numel);
        bytebuf_puts(&hdr, buf);
        off += elem * t->numel;
    }
    bytebuf_puts(&hdr, "}");
    while ((8 + hdr.len) % 8 != 0) bytebuf_puts(&hdr, " ");  // writers pad so the data starts 8-aligned
    AtomicFile af = atomic_open(path);
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hdr.len >> (8 * i));
    fwriteCheck(lenbuf, 1, 8, af.fp, af.tmp_path);
    fwriteCheck(hdr.data, 1, hdr.len, af.fp, af.tmp_path);
    for (size_t i = first; i < first + count; i++) {
        const float *p = params + tensors[i].offset;
        size_t n = tensors[i].numel;
        if (!bf16) { fwriteCheck(p, sizeof(float), n, af.fp, af.tmp_path); continue; }
        for (size_t j = 0; j < n; j++) {
            uint16_t b = float_to_bf16(p[j]);
            fwriteCheck(&b, 2, 1, af.fp, af.tmp_path);
        }
    }
    atomic_commit(&af);
    bytebuf_free(&hdr);
}

// Writes dir/config.json and dir/model.safetensors (one file, F32 or BF16),
// a folder that transformers' from_pretrained loads.
static inline void qwen2_checkpoint_write(const char *dir, const Qwen2Config *c, const float *params, int bf16, size_t step) {
    make_dir(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    config_write(c, path);
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(c, &count);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    safetensors_write(path, tensors, 0, count, params, bf16, step);
    free(tensors);
}

// ----------------------------------------------------------------------------
// random numbers (splitmix64: seeding, shuffles, initialisation) and HF's
// from-scratch initialisation

static inline uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double rng_uniform(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1.0p-53; }  // [0, 1)

static inline float rng_normal(uint64_t *state) {  // Box-Muller
    double u1 = rng_uniform(state), u2 = rng_uniform(state);
    return (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2));
}

// Weights N(0, 0.02), biases 0, RMSNorm weights 1, drawn in HF tensor order
// into the flat buffer params (parameter_count(c) floats).
static inline void qwen2_init_parameters(float *params, const Qwen2Config *c, uint64_t seed) {
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(c, &count);
    uint64_t state = seed;
    for (size_t i = 0; i < count; i++) {
        const TensorInfo *t = &tensors[i];
        float *p = params + t->offset;
        int kind = parameter_info[t->param].kind;
        for (size_t j = 0; j < t->numel; j++) p[j] = kind == KIND_WEIGHT ? 0.02f * rng_normal(&state) : kind == KIND_NORM ? 1.0f : 0.0f;
    }
    free(tensors);
}

#endif // S1C_QWEN2_WEIGHTS_H
