/*
 * tests/fuzz/fuzz_shard.c: common/shard.h's shard_read() on arbitrary bytes.
 *
 * A shard that shard_read() accepts must keep every promise the trainers rely
 * on without checking again: offsets from 0, rising, ending at num_tokens; ids
 * below vocab_size; mask values 0 or 1, never on a sequence's first token; and
 * the data loader's whole first epoch must run on it. (tests/fuzz/fuzz.h:
 * how it is built and run.)
 */
#include "common/train.h"
#include "tests/fuzz/fuzz.h"

static const char *shard_path;

static void load(void *ctx) {
    (void)ctx;
    DataLoader d;
    dataloader_init(&d, shard_path, 3, 64, 1);
    const Shard *s = &d.shard;
    const ShardHeader *h = &s->header;
    FUZZ_ASSERT(s->offsets[0] == 0 && s->offsets[h->num_sequences] == h->num_tokens, "offsets do not span the tokens");
    for (uint64_t i = 0; i < h->num_sequences; i++) {
        FUZZ_ASSERT(s->offsets[i] < s->offsets[i + 1] && s->offsets[i + 1] <= h->num_tokens, "bad offsets at %llu", (unsigned long long)i);
        FUZZ_ASSERT(s->mask[s->offsets[i]] == 0, "a first token is a target");
    }
    for (uint64_t t = 0; t < h->num_tokens; t++)
        FUZZ_ASSERT(s->ids[t] < h->vocab_size && s->mask[t] <= 1, "bad token %llu", (unsigned long long)t);
    for (size_t step = 0; step < dataloader_steps_per_epoch(&d) && step < 64; step++) dataloader_batch(&d, step);
    (void)shard_hash(s);
    dataloader_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    shard_path = fuzz_file("input.shard", data, size);
    fuzz_run(load, NULL);
    return 0;
}
