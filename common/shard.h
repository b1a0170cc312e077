/*
 * shard.h: the token-shard format, defined once. data.c writes shards,
 * s1.c (train, loss) and sft.cu read them.
 *
 * A shard holds whole training sequences (one sample per sequence, as s1
 * trains: no packing). Layout, all little-endian:
 *
 *   ShardHeader                      64 bytes (magic, version, counts)
 *   uint64 offsets[num_sequences+1]  sequence i is tokens [offsets[i], offsets[i+1])
 *   uint32 ids[num_tokens]           token ids, each < header.vocab_size
 *   uint8  mask[num_tokens]          1 = this token is a loss target
 *
 * mask[t] = 1 means "token t is predicted (scored) from positions < t", so the
 * first token of a sequence is never a target. For s1's layout the targets are
 * every token after "<|im_start|>assistant\n" (s1-spec.md section 3.1).
 */
#ifndef S1C_SHARD_H
#define S1C_SHARD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define SHARD_MAGIC 0x31433153u   // "S1C1" read as little-endian bytes
#define SHARD_VERSION 1u

typedef struct {
    uint32_t magic;
    uint32_t version;
    uint64_t num_sequences;
    uint64_t num_tokens;
    uint32_t vocab_size;     // every id is < vocab_size (the tokenizer's size)
    uint32_t reserved[9];    // zero
} ShardHeader;               // 64 bytes

typedef struct {
    ShardHeader header;
    uint64_t *offsets;       // (num_sequences+1,)
    uint32_t *ids;           // (num_tokens,)
    uint8_t *mask;           // (num_tokens,)
} Shard;

static inline size_t shard_seq_len(const Shard *s, size_t i) { return (size_t)(s->offsets[i + 1] - s->offsets[i]); }

// Reads and fully validates a shard. Any problem is a one-line error naming the file.
static inline void shard_read(Shard *s, const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) die("%s: cannot open shard: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) die("%s: not a shard: not a regular file", path);
    if (fseek(fp, 0, SEEK_END) != 0) die("%s: cannot seek", path);
    long long file_size = ftell(fp);
    rewind(fp);
    if (file_size < (long long)sizeof(ShardHeader)) die("%s: not a shard: file is %lld bytes, shorter than the 64-byte header", path, file_size);
    if (fread(&s->header, sizeof(ShardHeader), 1, fp) != 1) die("%s: cannot read shard header", path);
    ShardHeader *h = &s->header;
    if (h->magic != SHARD_MAGIC) die("%s: not a shard (bad magic 0x%08x)", path, h->magic);
    if (h->version != SHARD_VERSION) die("%s: unsupported shard version %u (this build reads %u)", path, h->version, SHARD_VERSION);
    for (int k = 0; k < 9; k++)
        if (h->reserved[k] != 0) die("%s: corrupt shard: reserved header word %d is %u, not 0", path, k, h->reserved[k]);
    if (h->num_sequences > (1ull << 40) || h->num_tokens > (1ull << 40)) die("%s: implausible counts in header", path);
    unsigned long long want = sizeof(ShardHeader) + (h->num_sequences + 1) * 8ull + h->num_tokens * 4ull + h->num_tokens;
    if ((unsigned long long)file_size != want)
        die("%s: truncated or corrupt shard: %lld bytes, header implies %llu", path, file_size, want);
    s->offsets = (uint64_t *)mallocCheck((h->num_sequences + 1) * sizeof(uint64_t));
    s->ids = (uint32_t *)mallocCheck(h->num_tokens * sizeof(uint32_t));
    s->mask = (uint8_t *)mallocCheck(h->num_tokens);
    freadCheck(s->offsets, sizeof(uint64_t), h->num_sequences + 1, fp, path);
    freadCheck(s->ids, sizeof(uint32_t), h->num_tokens, fp, path);
    freadCheck(s->mask, 1, h->num_tokens, fp, path);
    fclose(fp);
    if (s->offsets[0] != 0 || s->offsets[h->num_sequences] != h->num_tokens)
        die("%s: corrupt shard: sequence offsets do not span the %llu tokens", path, (unsigned long long)h->num_tokens);
    // every offset is checked before any of them indexes mask[]: offsets that rise
    // far past num_tokens and only fall back at the end must not get that far
    for (uint64_t i = 0; i < h->num_sequences; i++) {
        if (s->offsets[i + 1] <= s->offsets[i]) die("%s: corrupt shard: sequence %llu is empty or offsets decrease", path, (unsigned long long)i);
        if (s->offsets[i + 1] > h->num_tokens)
            die("%s: corrupt shard: sequence %llu ends at token %llu, past the %llu tokens", path, (unsigned long long)i,
                (unsigned long long)s->offsets[i + 1], (unsigned long long)h->num_tokens);
    }
    for (uint64_t i = 0; i < h->num_sequences; i++)
        if (s->mask[s->offsets[i]] != 0) die("%s: corrupt shard: first token of sequence %llu is marked as a target", path, (unsigned long long)i);
    for (uint64_t t = 0; t < h->num_tokens; t++) {
        if (s->ids[t] >= h->vocab_size) die("%s: corrupt shard: token %llu has id %u >= vocab_size %u", path, (unsigned long long)t, s->ids[t], h->vocab_size);
        if (s->mask[t] > 1) die("%s: corrupt shard: mask value %u at token %llu", path, s->mask[t], (unsigned long long)t);
    }
}

static inline void shard_free(Shard *s) {
    free(s->offsets);
    free(s->ids);
    free(s->mask);
    memset(s, 0, sizeof *s);
}

// Writes a shard to fp (what: its name in errors).
static inline void shard_write_fp(FILE *fp, const char *what, uint32_t vocab_size, uint64_t num_sequences, const uint64_t *offsets,
                                  const uint32_t *ids, const uint8_t *mask) {
    ShardHeader h;
    memset(&h, 0, sizeof h);
    h.magic = SHARD_MAGIC;
    h.version = SHARD_VERSION;
    h.num_sequences = num_sequences;
    h.num_tokens = offsets[num_sequences];
    h.vocab_size = vocab_size;
    fwriteCheck(&h, sizeof h, 1, fp, what);
    fwriteCheck(offsets, sizeof(uint64_t), num_sequences + 1, fp, what);
    fwriteCheck(ids, sizeof(uint32_t), h.num_tokens, fp, what);
    fwriteCheck(mask, 1, h.num_tokens, fp, what);
}

// Writes a shard atomically (temporary name, then rename).
static inline void shard_write(const char *path, uint32_t vocab_size, uint64_t num_sequences, const uint64_t *offsets,
                               const uint32_t *ids, const uint8_t *mask) {
    AtomicFile af = atomic_open(path);
    shard_write_fp(af.fp, path, vocab_size, num_sequences, offsets, ids, mask);
    atomic_commit(&af);
}

#endif // S1C_SHARD_H
