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
 *                              as one unit: a new folder swapped in by one
 *                              rename (CheckpointWriter, also used by
 *                              common/train.h for optimizer.bin)
 *   qwen2_init_parameters()    HF's from-scratch initialisation, seeded
 */
#ifndef S1C_QWEN2_WEIGHTS_H
#define S1C_QWEN2_WEIGHTS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include "common/util.h"
#include "common/detmath.h"
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
        f.check_finite = 1;   // a NaN or Inf weight is refused here, naming the tensor
        const JsonValue *meta = json_get(f.metadata, "s1c_step");
        if (meta != NULL && meta->type == JSON_STRING) {
            char *end;
            errno = 0;
            unsigned long long k = strtoull(meta->str, &end, 10);
            if (errno != 0 || end == meta->str || *end != '\0' || meta->str[0] < '0' || meta->str[0] > '9' || k > (1ull << 40))
                die("%s: metadata s1c_step \"%s\" is not a step count", f.path, meta->str);
            step = (size_t)k;
        }
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
//
// A checkpoint is one unit. Its files (config.json, model.safetensors and, for
// a training run, optimizer.bin) are written into a new folder DIR.tmp.<pid>
// beside DIR, each synced; then that folder takes DIR's place in one atomic
// step (renameat2 RENAME_EXCHANGE), and the parent folder is synced. Until that
// step DIR is the previous checkpoint, whole; after it, the new one. A kill at
// any moment leaves one of the two, never a model of step k+1 with the
// optimizer of step k. Whatever else DIR holds (a tokenizer copied beside the
// weights, an eval folder) moves into the new folder; stale weights (the
// shards of an index, an optimizer.bin that is not this checkpoint's) do not.
// The next checkpoint of DIR removes what a killed run left (DIR.tmp.<pid> of
// a dead pid). On a file system without RENAME_EXCHANGE the swap is two
// renames, DIR -> DIR.old.<pid> and the new folder -> DIR, and
// checkpoint_recover() puts DIR.old.<pid> back when a kill fell between them.

static inline void config_write_fp(const Qwen2Config *c, FILE *fp) {
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
}

// config.json on its own, through a temporary name
static inline void config_write(const Qwen2Config *c, const char *path) {
    AtomicFile af = atomic_open(path);
    config_write_fp(c, af.fp);
    atomic_commit(&af);
}

static inline void make_dir(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("%s: cannot create directory: %s", dir, strerror(errno));
}

// Writes the tensors [first, first + count) of a tensor list as a safetensors
// file to fp (what: its name for errors), as F32 or BF16 taken from the flat
// fp32 buffer params. The metadata records the AdamW step, so a resume can
// check that the model and optimizer files belong together.
static inline void safetensors_write_fp(FILE *fp, const char *what, const TensorInfo *tensors, size_t first, size_t count,
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
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hdr.len >> (8 * i));
    fwriteCheck(lenbuf, 1, 8, fp, what);
    fwriteCheck(hdr.data, 1, hdr.len, fp, what);
    uint16_t chunk[4096];
    for (size_t i = first; i < first + count; i++) {
        const float *p = params + tensors[i].offset;
        size_t n = tensors[i].numel;
        if (!bf16) { fwriteCheck(p, sizeof(float), n, fp, what); continue; }
        for (size_t j = 0; j < n; j += 4096) {
            size_t k = n - j < 4096 ? n - j : 4096;
            for (size_t q = 0; q < k; q++) chunk[q] = float_to_bf16(p[j + q]);
            fwriteCheck(chunk, 2, k, fp, what);
        }
    }
    bytebuf_free(&hdr);
}

// One safetensors file on its own, through a temporary name.
static inline void safetensors_write(const char *path, const TensorInfo *tensors, size_t first, size_t count,
                                     const float *params, int bf16, size_t step) {
    AtomicFile af = atomic_open(path);
    safetensors_write_fp(af.fp, path, tensors, first, count, params, bf16, step);
    atomic_commit(&af);
}

typedef struct {
    char dir[4096];    // the checkpoint folder (a symbolic link resolved)
    char tmp[4200];    // DIR.tmp.<pid>: the new checkpoint until the commit
    char parent[4096];
} CheckpointWriter;

// The new checkpoint's own files and the stale ones it replaces: these are
// never carried over from the previous checkpoint.
// (A folder is never one of them: what the new checkpoint writes as a folder,
// such as a rank's optimizer shards, replaces the old one in checkpoint_retire().)
static inline int checkpoint_owned_name(const char *name) {
    size_t n = strlen(name);
    return strcmp(name, "config.json") == 0 || strcmp(name, "optimizer.bin") == 0 ||
           strcmp(name, "model.safetensors.index.json") == 0 || (n > 12 && strcmp(name + n - 12, ".safetensors") == 0) ||
           strstr(name, ".tmp.") != NULL;
}

// Empties a superseded checkpoint folder (the previous checkpoint after the
// swap, or what a killed run left): a subfolder that dir lacks moves there
// (it belongs to the user); one that dir has too is the checkpoint's own (a
// rank's optimizer shards, replaced by the new ones) and goes; every file goes
// (each was either written by us or hard-linked into dir before the swap);
// then the folder itself.
static inline void checkpoint_retire(const char *old, const char *dir) {
    DIR *d = opendir(old);
    if (d == NULL) {
        if (errno == ENOTDIR) unlink(old);
        return;
    }
    struct dirent *e;
    char src[4400], dst[4400];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        join_path(src, sizeof src, old, e->d_name);
        join_path(dst, sizeof dst, dir, e->d_name);
        struct stat st, dst_st;
        if (lstat(src, &st) != 0) continue;
        if (!S_ISDIR(st.st_mode)) unlink(src);
        else if (lstat(dst, &dst_st) != 0 && errno == ENOENT) rename(src, dst);
        else remove_temporary_dir(src);
    }
    closedir(d);
    rmdir(old);   // left in place if a subfolder could not move: nothing of the user's is deleted
}

// The parent folder, the resolved path and the temporary name of checkpoint folder dir.
static inline void checkpoint_paths(CheckpointWriter *w, const char *dir) {
    char given[4096];
    snprintf(given, sizeof given, "%s", dir);
    size_t n = strlen(given);
    while (n > 1 && given[n - 1] == '/') given[--n] = '\0';
    char *real = realpath(given, NULL);   // an existing folder (or a link to one) by its real path
    if (snprintf(w->dir, sizeof w->dir, "%s", real ? real : given) >= (int)sizeof w->dir) die("%s: path too long", dir);
    free(real);
    const char *base = path_basename(w->dir);
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(w->dir, "/") == 0)
        die("%s: a checkpoint needs a folder of its own, not this one", dir);
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, w->dir) == 0) die("%s: a checkpoint cannot replace the current folder", dir);
    path_dirname(w->dir, w->parent, sizeof w->parent);
    if (snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", w->dir, (long)getpid()) >= (int)sizeof w->tmp) die("%s: path too long", dir);
}

// Puts the previous checkpoint back if a run was killed between the two
// renames of the fallback swap (DIR missing, DIR.old.<dead pid> present), and
// retires what killed runs left beside DIR. Any checkpoint load or save of DIR
// may call it; it changes nothing when there is nothing to repair.
static inline void checkpoint_recover(const char *dir) {
    CheckpointWriter w;
    checkpoint_paths(&w, dir);
    const char *base = path_basename(w.dir);
    DIR *d = opendir(w.parent);
    if (d == NULL) return;
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64)
        if (strlen(e->d_name) < 256 && (stale_temporary_pid(e->d_name, base, ".tmp.") || stale_temporary_pid(e->d_name, base, ".old.")))
            snprintf(names[n++], 256, "%s", e->d_name);
    closedir(d);
    struct stat st;
    char path[4400];
    for (int i = 0; i < n; i++) {
        join_path(path, sizeof path, w.parent, names[i]);
        if (strstr(names[i] + strlen(base), ".old.") == names[i] + strlen(base) && lstat(w.dir, &st) != 0 && errno == ENOENT) {
            if (rename(path, w.dir) != 0) die("%s: cannot restore the previous checkpoint from %s: %s", w.dir, path, strerror(errno));
            fsync_dir(w.parent);
            continue;
        }
        checkpoint_retire(path, w.dir);
    }
}

// Starts a checkpoint of folder dir: repairs what a killed run left, then
// creates the empty folder the new files go to (removed again by any exit
// before checkpoint_commit()).
static inline void checkpoint_begin(CheckpointWriter *w, const char *dir) {
    checkpoint_recover(dir);
    checkpoint_paths(w, dir);
    struct stat st;
    if (stat(w->dir, &st) == 0 && !S_ISDIR(st.st_mode)) die("%s: exists and is not a folder", dir);
    if (mkdir(w->tmp, 0755) != 0) die("%s: cannot create the checkpoint folder %s: %s", dir, w->tmp, strerror(errno));
    temporary_register(w->tmp, 1);
}

// For a checkpoint written by several processes (sft train over W ranks):
// rank 0 calls checkpoint_begin() and tells the others its pid (the new
// folder is DIR.tmp.<that pid>); each other rank calls checkpoint_join() with
// it, after rank 0's begin (a barrier), and writes its files there too
// (checkpoint_subdir() for a folder of its own); after a barrier that follows
// every rank's last checkpoint_close(), rank 0 alone calls checkpoint_commit().
// Only rank 0 cleans up or removes anything: another machine cannot tell
// whether rank 0's pid is alive.
static inline void checkpoint_join(CheckpointWriter *w, const char *dir, long rank0_pid) {
    checkpoint_paths(w, dir);
    if (snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", w->dir, rank0_pid) >= (int)sizeof w->tmp) die("%s: path too long", dir);
}

// Creates folder `name` inside the new checkpoint (e.g. one rank's optimizer
// shards); *path receives its path. Sync it with fsync_dir() once its files are closed.
static inline void checkpoint_subdir(const CheckpointWriter *w, const char *name, char *path, size_t n) {
    join_path(path, n, w->tmp, name);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) die("%s: cannot create: %s", path, strerror(errno));
}

// Opens file `name` of the new checkpoint for writing; *path receives its path.
static inline FILE *checkpoint_open(const CheckpointWriter *w, const char *name, char *path, size_t n) {
    join_path(path, n, w->tmp, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) die("%s: cannot write: %s", path, strerror(errno));
    return fp;
}

// Flushes, syncs and closes one file of the new checkpoint (a full disk fails here at the latest).
static inline void checkpoint_close(FILE *fp, const char *path) {
    if (fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) != 0) die("%s: write failed: %s", path, strerror(errno ? errno : EIO));
    if (fclose(fp) != 0) die("%s: write failed: %s", path, strerror(errno));
}

// Before the swap: what the previous checkpoint holds besides its own files
// joins the new one (files as hard links, folders moved).
static inline void checkpoint_carry_over(const CheckpointWriter *w) {
    DIR *d = opendir(w->dir);
    if (d == NULL) die("%s: cannot read the previous checkpoint folder: %s", w->dir, strerror(errno));
    struct dirent *e;
    char src[4400], dst[4400];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || checkpoint_owned_name(e->d_name)) continue;
        join_path(src, sizeof src, w->dir, e->d_name);
        join_path(dst, sizeof dst, w->tmp, e->d_name);
        struct stat st, dst_st;
        if (lstat(src, &st) != 0 || lstat(dst, &dst_st) == 0) continue;   // the new checkpoint has its own
        int failed = S_ISDIR(st.st_mode) ? rename(src, dst) : linkat(AT_FDCWD, src, AT_FDCWD, dst, 0);
        if (failed != 0) die("%s: cannot carry %s over into the new checkpoint: %s", w->dir, e->d_name, strerror(errno));
    }
    closedir(d);
}

// Swaps the new checkpoint in (one atomic rename), syncs the parent folder
// and retires the previous checkpoint.
static inline void checkpoint_commit(CheckpointWriter *w) {
    struct stat st;
    char old[4300];
    memcpy(old, w->tmp, sizeof w->tmp);
    int first = lstat(w->dir, &st) != 0;
    if (first && errno != ENOENT) die("%s: %s", w->dir, strerror(errno));
    if (!first) checkpoint_carry_over(w);
    fsync_dir(w->tmp);   // every name in the new folder, its files' and the carried ones, is on disk before the swap
    if (first) {   // the first checkpoint of this folder
        if (rename(w->tmp, w->dir) != 0) die("%s: cannot rename %s to it: %s", w->dir, w->tmp, strerror(errno));
        old[0] = '\0';
    } else {
        // S1C_TEST_NO_RENAME_EXCHANGE: tests/test_checkpoint.sh runs the fallback below on a file system that has the exchange
        long swapped = -1;
        errno = ENOSYS;
#if defined(__linux__) && defined(SYS_renameat2)
        if (getenv("S1C_TEST_NO_RENAME_EXCHANGE") == NULL)
            swapped = syscall(SYS_renameat2, AT_FDCWD, w->tmp, AT_FDCWD, w->dir, 2 /* RENAME_EXCHANGE */);
#endif
        if (swapped != 0) {
            if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                die("%s: cannot swap in the new checkpoint %s: %s", w->dir, w->tmp, strerror(errno));
            // no atomic exchange here: two renames, which checkpoint_recover() repairs if cut in between
            if (snprintf(old, sizeof old, "%s.old.%ld", w->dir, (long)getpid()) >= (int)sizeof old) die("%s: path too long", w->dir);
            if (rename(w->dir, old) != 0) die("%s: cannot move the previous checkpoint aside: %s", w->dir, strerror(errno));
            if (rename(w->tmp, w->dir) != 0) {
                int err = errno;
                if (rename(old, w->dir) != 0) die("%s: cannot rename %s to it (%s), and cannot restore %s", w->dir, w->tmp, strerror(err), old);
                die("%s: cannot rename %s to it: %s", w->dir, w->tmp, strerror(err));
            }
        }
    }
    temporary_unregister(w->tmp);
    fsync_dir(w->parent);
    if (old[0] != '\0') checkpoint_retire(old, w->dir);
}

// The model's files in a checkpoint being written: config.json and
// model.safetensors (one file, every tensor F32 or BF16 from the flat fp32
// buffer params), a folder that transformers' from_pretrained loads.
static inline void qwen2_checkpoint_write_model(const CheckpointWriter *w, const Qwen2Config *c, const float *params, int bf16,
                                                size_t step) {
    char path[4400];
    FILE *fp = checkpoint_open(w, "config.json", path, sizeof path);
    config_write_fp(c, fp);
    checkpoint_close(fp, path);
    size_t count;
    TensorInfo *tensors = qwen2_tensor_list(c, &count);
    fp = checkpoint_open(w, "model.safetensors", path, sizeof path);
    safetensors_write_fp(fp, path, tensors, 0, count, params, bf16, step);
    checkpoint_close(fp, path);
    free(tensors);
}

// Writes dir/config.json and dir/model.safetensors as one unit.
static inline void qwen2_checkpoint_write(const char *dir, const Qwen2Config *c, const float *params, int bf16, size_t step) {
    CheckpointWriter w;
    checkpoint_begin(&w, dir);
    qwen2_checkpoint_write_model(&w, c, params, bf16, step);
    checkpoint_commit(&w);
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
    return (float)(sqrt(-2.0 * det_log(1.0 - u1)) * det_cos(2.0 * M_PI * u2));   // common/detmath.h: not libm's, which differs by CPU
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
