#!/usr/bin/env bash
# tests/test_hardening.sh: training that diverges (issue 13, item 9).
#
# A run whose weights go to infinity must stop at the first step whose loss
# or gradient norm is not finite, with one error line naming the step, and
# must never save such weights over the last good checkpoint. The divergence
# is made exact here, independent of the data: a checkpoint at step 2 whose
# optimizer.bin holds first moments of 3e38 and second moments of 0 (a valid
# file: finite, v >= 0), so the AdamW update of step 3 sends every weight to
# infinity. An absurd --lr, the way a user gets there, is refused by its flag
# check (tests/malformed/cases.txt).
set -u
cd "$(dirname "$0")/.."
source tests/lib.sh

make_shard tests/fixtures/qwen-tiny-tied "$TMP/shard"
RUN=(--data "$TMP/shard" --threads 1)
./s1 train --model tests/fixtures/qwen-tiny-tied "${RUN[@]}" --out "$TMP/ck" --batch 1 --epochs 2 --stop-at 2 >/dev/null 2>&1
n=$(./s1 train --model tests/fixtures/qwen-tiny-tied "${RUN[@]}" --out "$TMP/x" --batch 1 --epochs 1 --stop-at 1 2>/dev/null |
    sed -nE 's/^model: ([0-9]+) parameters.*/\1/p')
header=168   # sizeof(OptStateHeader), common/train.h: the moments m[n], v[n] follow
yes $'\xe6\xb1\x61\x7f' | tr -d '\n' | head -c $((4 * n)) | dd of="$TMP/ck/optimizer.bin" bs=4096 seek=$header oflag=seek_bytes conv=notrunc status=none
head -c $((4 * n)) /dev/zero | dd of="$TMP/ck/optimizer.bin" bs=4096 seek=$((header + 4 * n)) oflag=seek_bytes conv=notrunc status=none
good=$(md5sum "$TMP/ck/model.safetensors" "$TMP/ck/optimizer.bin")

expect_error "a save of weights that went to infinity is refused, naming the step" \
    "ck: not saving step 3: [0-9]+ weights or AdamW moments are NaN or infinite .*the previous checkpoint is kept" \
    ./s1 train --resume "$TMP/ck" "${RUN[@]}" --out "$TMP/ck" --save-every 1
expect_eq "... and the previous checkpoint is untouched" "$(md5sum "$TMP/ck/model.safetensors" "$TMP/ck/optimizer.bin")" "$good"
expect_eq "... with no temporary left" "$(ls -d "$TMP"/ck.* 2>/dev/null)" ""

expect_error "the first non-finite loss stops the run, naming the step and what is kept" \
    "^error: train: step 4: the loss is NaN and the gradient norm NaN, not finite: the training diverged .*stopping, nothing was saved to .*/run2$" \
    ./s1 train --resume "$TMP/ck" "${RUN[@]}" --out "$TMP/run2" --save-every 6
expect_eq "... and nothing was written" "$(ls -d "$TMP"/run2* 2>/dev/null)" ""

expect_ok "the kept checkpoint loads" ./s1 loss --model "$TMP/ck" --data "$TMP/shard"

summary
