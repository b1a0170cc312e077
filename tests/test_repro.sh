#!/usr/bin/env bash
# tests/test_repro.sh: the same bits on every x86-64 machine (issue 13).
#
# The default build (Makefile) has no -march=native and uses -ffp-contract=off,
# and the numeric path takes log, exp, sin, cos and pow from common/detmath.h
# instead of libm. This builds ./s1 and the emulated sft twice, for two CPU
# generations (-march=x86-64-v2: SSE4.2, no AVX, no FMA; -march=native: this
# machine, here AVX-512 with FMA), runs the same small training, loss and
# sampling with both, and compares the bytes: checkpoints (model.safetensors,
# optimizer.bin), the loss line and sampled JSONL must be identical. The
# x86-64-v2 build also runs with glibc's FMA and AVX2 code paths switched off
# (GLIBC_TUNABLES), as libm would run on an older CPU, and must still agree.
# Finally a default build runs under valgrind (a -march=native build of this
# machine's AVX-512 dies there with SIGILL).
# sanitize: skip (it builds its own copies of s1 and sft, without sanitizers)
set -u
cd "$(dirname "$0")/.."
source tests/lib.sh

flags() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory "print-$1"; }
cflags=$(flags BASE_CFLAGS) emuflags=$(flags EMU_CXXFLAGS) emulibs=$(flags EMU_LDLIBS) cc=$(flags CC) cxx=$(flags CXX)
[ -n "$cflags" ] && [ -n "$emuflags" ] || { fail "read the build flags from the Makefile" "got '$cflags' / '$emuflags'"; summary; exit 1; }
echo "note: CPU flags of this machine: $(grep -o -w -E 'avx2|avx512f|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
for arch in x86-64-v2 native; do
    $cc $cflags -march=$arch -o "$TMP/s1-$arch" s1.c -lm &
    $cxx $emuflags -march=$arch -o "$TMP/sft-$arch" sft.cu $emulibs &
done
wait
for b in s1-x86-64-v2 s1-native sft-x86-64-v2 sft-native; do
    [ -x "$TMP/$b" ] || { fail "build $b" "the compiler failed"; summary; exit 1; }
done
# glibc's run-time choice of libm code: switch off what an older CPU lacks (both spellings of the tunable)
OLD_CPU="glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX2_Usable,-FMA_Usable,-AVX512F_Usable"

# a small run from scratch (the init draws from log and cos), with clipping and warmup (cos, pow)
printf '{"model_type": "qwen2", "vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "rope_theta": 10000.0,
 "tie_word_embeddings": false}\n' >"$TMP/c.json"
make_shard tests/fixtures/qwen-tiny-tied "$TMP/shard"
TRAIN=(train --init-config "$TMP/c.json" --data "$TMP/shard" --batch 2 --epochs 3 --lr 3e-3 --warmup-ratio 0.2 --clip 0.5)
run_all() {   # run_all TAG BIN [env...]: train, loss and sample into $TMP/TAG
    local tag=$1 bin=$2; shift 2
    mkdir -p "$TMP/$tag"
    env "$@" "$bin" "${TRAIN[@]}" --out "$TMP/$tag/ck" --threads 2 >/dev/null 2>&1 &&
    env "$@" "$bin" loss --model "$TMP/$tag/ck" --data "$TMP/shard" 2>/dev/null | tail -1 >"$TMP/$tag/loss" &&
    env "$@" "$bin" sample --model "$TMP/$tag/ck" --tokenizer "$TMP/tok300" --prompts "$TMP/prompts.jsonl" --max-thinking 12 \
        --max-gen-toks 200 --wait 1 --temperature 0.8 --top-p 0.9 --seed 3 --out "$TMP/$tag/sample.jsonl" >/dev/null 2>&1
}
# sampling needs a tokenizer that fits the 300 rows: train one on a few texts
printf 'What is 12 + 30? Wait, let me check. The answer is 42.\n' >"$TMP/corpus.txt"
./tokenizer train --vocab-size 257 --out "$TMP/tok300" "$TMP/corpus.txt" 2>/dev/null
printf '{"question": "What is 2 + 3?"}\n{"question": "Name a prime."}\n' >"$TMP/prompts.jsonl"

run_all v2 "$TMP/s1-x86-64-v2" || fail "s1 (x86-64-v2) runs" "$(ls "$TMP/v2")"
run_all native "$TMP/s1-native" || fail "s1 (native) runs" "$(ls "$TMP/native")"
run_all v2old "$TMP/s1-x86-64-v2" GLIBC_TUNABLES=$OLD_CPU || fail "s1 (x86-64-v2, old-CPU libm) runs"
same() { cmp -s "$TMP/$1/$3" "$TMP/$2/$3"; }
for f in ck/model.safetensors ck/optimizer.bin loss sample.jsonl; do
    same v2 native "$f" && pass "s1: $f identical, x86-64-v2 and native builds" || fail "s1: $f identical, x86-64-v2 and native builds"
    same v2 v2old "$f" && pass "s1: $f identical with the old-CPU libm" || fail "s1: $f identical with the old-CPU libm"
done
echo "note: s1 checkpoint md5: $(md5sum <"$TMP/v2/ck/model.safetensors" | cut -c1-16) (x86-64-v2), $(md5sum <"$TMP/native/ck/model.safetensors" | cut -c1-16) (native), $(md5sum <"$TMP/v2old/ck/model.safetensors" | cut -c1-16) (x86-64-v2, old-CPU libm); loss $(cat "$TMP/v2/loss")"

# the emulated GPU trainer: sft train (bf16 kernels on the CPU), the same run
SFT=(train --init-config "$TMP/c.json" --data "$TMP/shard" --batch 2 --epochs 1 --lr 3e-3 --warmup-ratio 0.2 --clip 0.5)
for tag in x86-64-v2 native; do
    env CUEMU_SCHEDULE=forward "$TMP/sft-$tag" "${SFT[@]}" --out "$TMP/sft-$tag-ck" >/dev/null 2>&1 || fail "sft ($tag) runs"
done
env CUEMU_SCHEDULE=forward GLIBC_TUNABLES=$OLD_CPU "$TMP/sft-x86-64-v2" "${SFT[@]}" --out "$TMP/sft-old-ck" >/dev/null 2>&1 || fail "sft (old-CPU libm) runs"
for f in model.safetensors optimizer.bin; do
    cmp -s "$TMP/sft-x86-64-v2-ck/$f" "$TMP/sft-native-ck/$f" && pass "emulated sft: $f identical, x86-64-v2 and native builds" ||
        fail "emulated sft: $f identical, x86-64-v2 and native builds"
    cmp -s "$TMP/sft-x86-64-v2-ck/$f" "$TMP/sft-old-ck/$f" && pass "emulated sft: $f identical with the old-CPU libm" ||
        fail "emulated sft: $f identical with the old-CPU libm"
done
echo "note: emulated sft checkpoint md5: $(md5sum <"$TMP/sft-x86-64-v2-ck/model.safetensors" | cut -c1-16) (x86-64-v2), $(md5sum <"$TMP/sft-native-ck/model.safetensors" | cut -c1-16) (native)"

# why detmath.h: how often libm's own log, cos and pow change their last bit between its FMA code and the
# code an older CPU runs (a note, not a check: on a CPU without FMA both runs take the same code)
cat >"$TMP/probe.c" <<'PROBE'
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
int main(void) {   /* prints the bits of log, cos and pow on 200000 fixed arguments */
    uint64_t s = 1;
    for (int i = 0; i < 200000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) * 0x1.0p-53, r[3] = {log(1.0 - u), cos(6.283185307179586 * u), pow(0.95, (double)(i % 3000))};
        uint64_t b[3];
        memcpy(b, r, sizeof b);
        printf("%016llx %016llx %016llx\n", (unsigned long long)b[0], (unsigned long long)b[1], (unsigned long long)b[2]);
    }
    return 0;
}
PROBE
if $cc -O2 -o "$TMP/probe" "$TMP/probe.c" -lm; then
    "$TMP/probe" >"$TMP/probe.new"; env GLIBC_TUNABLES=$OLD_CPU "$TMP/probe" >"$TMP/probe.old"
    echo "note: libm on this machine: $(paste -d' ' "$TMP/probe.new" "$TMP/probe.old" | awk '{ l += $1 != $4; c += $2 != $5; p += $3 != $6 } END { printf "%d log, %d cos, %d pow of 200000 calls each change their result", l, c, p }') when the FMA code paths are off"
fi

# valgrind runs the default build (it has no AVX-512: a -march=native binary of this machine dies with SIGILL)
if command -v valgrind >/dev/null 2>&1; then
    expect_ok "the default build runs under valgrind" valgrind -q --error-exitcode=3 ./s1 loss --model tests/fixtures/qwen-tiny-tied --data "$TMP/shard" --threads 1
else
    echo "note: valgrind not installed: the valgrind run is skipped"
fi
summary
