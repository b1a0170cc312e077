/*
 * safetensors.h: reading Hugging Face safetensors files (format: docs/qwen2.5.md
 * section 4.1): an 8-byte little-endian header length, a JSON header naming each
 * tensor's dtype, shape and byte range, then the raw data.
 *
 * safetensors_open() validates the whole header before any tensor is read (the
 * length, the JSON, every entry's dtype, shape and byte range, no overlaps), so
 * a truncated or malformed checkpoint fails with one line naming the file and
 * the problem. Tensors are read as stored, as fp32 or as bf16 (F32, F16 and
 * BF16 checkpoints all load).
 *
 * This is s1.c's reader as a shared header, used by the GPU programs (sft.cu,
 * sample.cu through common/kernels.cuh); the functions keep s1.c's names so
 * that s1.c can include this header instead of its own copy.
 */
#ifndef S1C_SAFETENSORS_H
#define S1C_SAFETENSORS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include "common/util.h"
#include "common/json.h"

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13);          // inf, nan
    else if (exp != 0) bits = sign | ((exp + 112) << 23) | (mant << 13); // normal: rebias 15 -> 127
    else if (mant == 0) bits = sign;                                     // zero
    else {                                                               // subnormal: normalise
        int e = -1;
        do { e++; mant <<= 1; } while ((mant & 0x400) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// One tensor of a safetensors header, validated against the file.
typedef struct {
    const char *name;
    const char *dtype;     // "F32", "BF16", "I64", ...
    size_t dtype_size;
    size_t dims[8];
    size_t ndim;
    size_t numel;
    size_t begin, end;     // byte range in the data buffer
} SafetensorsEntry;

typedef struct {
    const char *path;
    FILE *fp;
    size_t data_start;     // 8 + header length
    char *header;
    JsonDoc doc;
    const JsonValue *metadata;   // the "__metadata__" object or NULL
    SafetensorsEntry *entries;
    size_t num_entries;
    int check_finite;      // set by model loaders: a NaN or Inf in a float tensor is an error naming it
} SafetensorsFile;

static inline size_t safetensors_dtype_size(const char *dtype) {
    static const struct { const char *name; size_t size; } dtypes[] = {
        {"F32", 4}, {"BF16", 2}, {"F16", 2}, {"F64", 8}, {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4}, {"I16", 2},
        {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}};
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtype, dtypes[i].name) == 0) return dtypes[i].size;
    return 0;
}

static inline int compare_entries(const void *a, const void *b) {
    const SafetensorsEntry *x = *(const SafetensorsEntry *const *)a, *y = *(const SafetensorsEntry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

// Opens a safetensors file and validates its whole header: the length, the
// JSON, every entry's dtype, shape and byte range (inside the file, matching
// the shape, no two tensors overlapping). Any problem is a one-line error.
static inline void safetensors_open(SafetensorsFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    f->fp = fopen(path, "rb");
    if (f->fp == NULL) die("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f->fp), &st) != 0 || !S_ISREG(st.st_mode)) die("%s: not a safetensors file: not a regular file", path);
    if (fseeko(f->fp, 0, SEEK_END) != 0) die("%s: cannot seek", path);
    size_t file_size = (size_t)ftello(f->fp);
    rewind(f->fp);
    if (file_size < 8) die("%s: truncated safetensors file: %zu bytes, shorter than the 8-byte header length", path, file_size);
    uint8_t lenbuf[8];
    freadCheck(lenbuf, 1, 8, f->fp, path);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | lenbuf[i];
    if (header_len > 100000000ull) die("%s: safetensors header length %llu is implausible (over 100 MB)", path, (unsigned long long)header_len);
    if (8 + header_len > file_size)
        die("%s: truncated safetensors file: header length %llu exceeds the file size %zu", path, (unsigned long long)header_len, file_size);
    f->data_start = 8 + (size_t)header_len;
    size_t data_size = file_size - f->data_start;
    f->header = (char *)mallocCheck((size_t)header_len + 1);
    freadCheck(f->header, 1, (size_t)header_len, f->fp, path);
    f->header[header_len] = '\0';
    char err[256];
    if (json_parse(f->header, (size_t)header_len, &f->doc, err, sizeof err) != 0) die("%s: safetensors header is not valid JSON: %s", path, err);
    const JsonValue *root = f->doc.root;
    if (root->type != JSON_OBJECT) die("%s: safetensors header is not a JSON object", path);
    f->entries = (SafetensorsEntry *)callocCheck(root->len, sizeof(SafetensorsEntry));
    for (size_t i = 0; i < root->len; i++) {
        const char *name = root->keys[i];
        const JsonValue *e = &root->items[i];
        if (strcmp(name, "__metadata__") == 0) { f->metadata = e; continue; }
        for (size_t j = 0; j < f->num_entries; j++)
            if (strcmp(f->entries[j].name, name) == 0) die("%s: tensor %s appears twice in the header", path, name);
        const JsonValue *dtype = json_get(e, "dtype"), *shape = json_get(e, "shape"), *offs = json_get(e, "data_offsets");
        if (dtype == NULL || dtype->type != JSON_STRING || shape == NULL || shape->type != JSON_ARRAY || offs == NULL ||
            offs->type != JSON_ARRAY || offs->len != 2)
            die("%s: tensor %s: header entry needs dtype, shape and data_offsets [begin, end]", path, name);
        SafetensorsEntry *se = &f->entries[f->num_entries++];
        se->name = name;
        se->dtype = dtype->str;
        se->dtype_size = safetensors_dtype_size(dtype->str);
        if (se->dtype_size == 0) die("%s: tensor %s has unknown dtype %s", path, name, dtype->str);
        if (shape->len > 8) die("%s: tensor %s has %zu dimensions", path, name, shape->len);
        se->ndim = shape->len;
        se->numel = 1;
        // the product of the dimensions is checked for overflow: [2^40, 2^24] must not wrap
        // to 0 elements and pass with an empty byte range (a 0 anywhere is a real empty tensor)
        int overflow = 0, empty = 0;
        for (size_t d = 0; d < shape->len; d++) {
            const JsonValue *x = &shape->items[d];
            if (x->type != JSON_NUMBER || !x->is_integer || x->integer < 0 || x->integer > (1ll << 40))
                die("%s: tensor %s: shape entries must be non-negative integers", path, name);
            se->dims[d] = (size_t)x->integer;
            empty |= se->dims[d] == 0;
            overflow |= __builtin_mul_overflow(se->numel, se->dims[d], &se->numel);
        }
        if (empty) se->numel = 0;
        else if (overflow) die("%s: tensor %s: the product of its shape overflows", path, name);
        for (int j = 0; j < 2; j++)
            if (offs->items[j].type != JSON_NUMBER || !offs->items[j].is_integer || offs->items[j].integer < 0)
                die("%s: tensor %s: data_offsets must be non-negative integers", path, name);
        se->begin = (size_t)offs->items[0].integer;
        se->end = (size_t)offs->items[1].integer;
        if (se->begin > se->end) die("%s: tensor %s: data_offsets [%zu, %zu) run backwards", path, name, se->begin, se->end);
        if (se->end > data_size)
            die("%s: tensor %s: data_offsets [%zu, %zu) lie outside the %zu-byte data buffer (truncated file?)", path, name, se->begin, se->end, data_size);
        if (se->numel > data_size / se->dtype_size)
            die("%s: tensor %s: its shape and dtype need more bytes than the %zu-byte data buffer", path, name, data_size);
        if (se->end - se->begin != se->numel * se->dtype_size)
            die("%s: tensor %s: data_offsets span %zu bytes, but shape and dtype need %zu", path, name, se->end - se->begin, se->numel * se->dtype_size);
    }
    SafetensorsEntry **sorted = (SafetensorsEntry **)mallocCheck(f->num_entries * sizeof(SafetensorsEntry *));
    for (size_t i = 0; i < f->num_entries; i++) sorted[i] = &f->entries[i];
    qsort(sorted, f->num_entries, sizeof(SafetensorsEntry *), compare_entries);
    for (size_t i = 1; i < f->num_entries; i++)
        if (sorted[i]->begin < sorted[i - 1]->end) die("%s: tensors %s and %s overlap in the data buffer", path, sorted[i - 1]->name, sorted[i]->name);
    free(sorted);
}

static inline const SafetensorsEntry *safetensors_find(const SafetensorsFile *f, const char *name) {
    for (size_t i = 0; i < f->num_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

// Reads a tensor's bytes as stored (any dtype).
static inline void safetensors_read_raw(SafetensorsFile *f, const SafetensorsEntry *e, void *dst) {
    if (fseeko(f->fp, (off_t)(f->data_start + e->begin), SEEK_SET) != 0) die("%s: cannot seek to tensor %s", f->path, e->name);
    freadCheck(dst, 1, e->end - e->begin, f->fp, f->path);
}

// With f->check_finite, a weight that is NaN or infinite is a load-time error
// naming the tensor: it would only surface later as a NaN loss.
static inline void safetensors_check_finite(const SafetensorsFile *f, const SafetensorsEntry *e, const float *x) {
    if (!f->check_finite) return;
    for (size_t j = 0; j < e->numel; j++)
        if (!isfinite(x[j])) die("%s: tensor %s: element %zu is %s", f->path, e->name, j, isnan(x[j]) ? "NaN" : "infinite");
}

// Reads a F32, F16 or BF16 tensor as fp32.
static inline void safetensors_read_f32(SafetensorsFile *f, const SafetensorsEntry *e, float *dst) {
    int f32 = strcmp(e->dtype, "F32") == 0, bf16 = strcmp(e->dtype, "BF16") == 0;
    if (!f32 && !bf16 && strcmp(e->dtype, "F16") != 0) die("%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", f->path, e->name, e->dtype);
    if (f32) {
        safetensors_read_raw(f, e, dst);
    } else {
        uint16_t *raw = (uint16_t *)mallocCheck(e->numel * sizeof(uint16_t));
        safetensors_read_raw(f, e, raw);
        for (size_t j = 0; j < e->numel; j++) dst[j] = bf16 ? bf16_to_float(raw[j]) : half_to_float(raw[j]);
        free(raw);
    }
    safetensors_check_finite(f, e, dst);
}

static inline void safetensors_close(SafetensorsFile *f) {
    fclose(f->fp);
    json_free(&f->doc);
    free(f->header);
    free(f->entries);
    memset(f, 0, sizeof *f);
}


// ----------------------------------------------------------------------------
// a model folder's weight files: model.safetensors, or the shards named in
// model.safetensors.index.json (docs/qwen2.5.md section 4.1)

typedef struct {
    char index_path[4096];        // DIR/model.safetensors.index.json, read or not
    char *index_text;             // the index file, NULL for a single-file checkpoint
    JsonDoc doc;
    const JsonValue *weight_map;  // tensor name -> file name; NULL for a single-file checkpoint
    size_t num_files;
    const char **names;           // each weight file once, in order of first mention in the weight_map
    char **paths;                 // DIR/name
} SafetensorsFolder;

// Lists the weight files of a model folder. Every weight_map entry must be a
// plain file name in the same folder; a shard named by several tensors is
// listed once, at its first mention, so each file is read once.
static inline void safetensors_folder_open(SafetensorsFolder *w, const char *dir) {
    memset(w, 0, sizeof *w);
    snprintf(w->index_path, sizeof w->index_path, "%s/model.safetensors.index.json", dir);
    size_t len;
    w->index_text = read_file_or_null(w->index_path, &len);
    size_t max_files = 1;
    if (w->index_text != NULL) {
        char err[256];
        if (json_parse(w->index_text, len, &w->doc, err, sizeof err) != 0) die("%s: invalid JSON: %s", w->index_path, err);
        w->weight_map = json_get(w->doc.root, "weight_map");
        if (w->weight_map == NULL || w->weight_map->type != JSON_OBJECT) die("%s: no \"weight_map\" object", w->index_path);
        max_files = w->weight_map->len;
    }
    w->names = (const char **)callocCheck(max_files, sizeof(char *));
    w->paths = (char **)callocCheck(max_files, sizeof(char *));
    if (w->index_text == NULL) w->names[w->num_files++] = "model.safetensors";
    const JsonValue *map = w->weight_map;
    for (size_t i = 0; map != NULL && i < map->len; i++) {
        const JsonValue *f = &map->items[i];
        if (f->type != JSON_STRING || strchr(f->str, '/') != NULL || f->len == 0)
            die("%s: weight_map entry %s must be a file name in the same folder", w->index_path, map->keys[i]);
        int seen = 0;
        for (size_t j = 0; j < w->num_files && !seen; j++) seen = strcmp(w->names[j], f->str) == 0;
        if (!seen) w->names[w->num_files++] = f->str;
    }
    for (size_t i = 0; i < w->num_files; i++) {
        size_t n = strlen(dir) + strlen(w->names[i]) + 2;
        w->paths[i] = (char *)mallocCheck(n);
        snprintf(w->paths[i], n, "%s/%s", dir, w->names[i]);
    }
}

// Opens weight file i of the folder. With an index, every tensor in the file
// must be mapped to this file: a stale or hand-edited index is an error.
static inline void safetensors_folder_open_file(const SafetensorsFolder *w, size_t i, SafetensorsFile *f) {
    safetensors_open(f, w->paths[i]);
    for (size_t k = 0; w->weight_map != NULL && k < f->num_entries; k++) {
        const char *name = f->entries[k].name;
        const JsonValue *v = json_get(w->weight_map, name);
        if (v == NULL || v->type != JSON_STRING || strcmp(v->str, w->names[i]) != 0)
            die("%s: tensor %s is in this file but the index maps it to %s", f->path, name, v && v->type == JSON_STRING ? v->str : "nothing");
    }
}

static inline void safetensors_folder_close(SafetensorsFolder *w) {
    for (size_t i = 0; i < w->num_files; i++) free(w->paths[i]);
    free(w->paths);
    free(w->names);
    if (w->index_text != NULL) { json_free(&w->doc); free(w->index_text); }
    memset(w, 0, sizeof *w);
}


static inline uint16_t float_to_bf16(float f) {  // round to nearest even, as torch's .to(bfloat16)
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // keep NaN a NaN
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

// Reads a F32, F16 or BF16 tensor as bf16 bits (round to nearest even), the
// GPU programs' weight format; a BF16 tensor is copied as stored.
static inline void safetensors_read_bf16(SafetensorsFile *f, const SafetensorsEntry *e, uint16_t *dst) {
    if (strcmp(e->dtype, "BF16") == 0) {
        safetensors_read_raw(f, e, dst);
        for (size_t j = 0; f->check_finite && j < e->numel; j++)   // exponent all ones: Inf or NaN
            if ((dst[j] & 0x7f80u) == 0x7f80u) die("%s: tensor %s: element %zu is %s", f->path, e->name, j, dst[j] & 0x7fu ? "NaN" : "infinite");
        return;
    }
    float *tmp = (float *)mallocCheck(e->numel * sizeof(float));
    safetensors_read_f32(f, e, tmp);
    for (size_t j = 0; j < e->numel; j++) dst[j] = float_to_bf16(tmp[j]);
    free(tmp);
}

#endif // S1C_SAFETENSORS_H
