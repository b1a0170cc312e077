#!/usr/bin/env bash
# tests/test_checkpoint.sh: a checkpoint is one unit (common/qwen2_weights.h's
# CheckpointWriter, common/train.h's train_checkpoint_write()).
#
#   - 20 kill -9 trials of ./s1 train --save-every 1: 5 timed to land while
#     model.safetensors is being written, 5 while optimizer.bin is, 10 at
#     random times (6 trials under make test SANITIZE=1). Every time, the checkpoint on disk loads (./s1 loss), and
#     --resume from it reaches final weights bit-identical to an uninterrupted
#     run; the resumed run leaves no temporary behind.
#   - a save into a full file system (a 24 MB tmpfs when this runs as root; a
#     file-size limit, which fails the write with EFBIG, otherwise and
#     always): one error line, non-zero exit, the previous checkpoint intact,
#     the partial new one removed (the space is free again).
#   - the folder is synced after the swap (strace, when installed).
#   - what else the folder holds survives a save (a note, a subfolder);
#     stale weights (the shards of an index) do not; a stale DIR.tmp.<pid> of
#     a dead process is removed.
#   - the fallback swap of file systems without RENAME_EXCHANGE (two renames,
#     forced with S1C_TEST_NO_RENAME_EXCHANGE): the same checkpoints, 6 more
#     kill -9 trials, and a run killed between its two renames (DIR missing,
#     DIR.old.<pid> present) resumes from DIR.old.
set -u
cd "$(dirname "$0")/.."
source tests/lib.sh

# a model whose checkpoint (5 MB of weights, 10 MB of AdamW moments) takes a
# measurable time to write, on the fixture's reference batch (4 sequences)
printf '{"model_type": "qwen2", "vocab_size": 300, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512, "tie_word_embeddings": true}\n' >"$TMP/c.json"
make_shard tests/fixtures/qwen-tiny-tied "$TMP/shard"
RUN=(--data "$TMP/shard" --batch 1 --epochs 3 --lr 1e-3 --warmup-ratio 0.1 --threads 1)   # 12 steps
train_init() { ./s1 train --init-config "$TMP/c.json" "${RUN[@]}" "$@"; }
step_of() { st_header "$1/model.safetensors" | sed -E 's/.*"s1c_step":"([0-9]+)".*/\1/'; }
dead_pid() { sh -c 'echo $$'; }   # the pid of a process that has exited

train_init --out "$TMP/ref" >/dev/null 2>&1
ref=$(md5sum <"$TMP/ref/model.safetensors")
expect_eq "uninterrupted run reaches step 12" "$(step_of "$TMP/ref")" 12

# ---------------------------------------------------------------------------
# kill -9 trials

# 20 trials; under `make test SANITIZE=1` (S1C_SANITIZE=1: ASan makes each run several times slower) the same
# code paths with 6, half of them timed into the writes
trials=20 timed=10
[ "${S1C_SANITIZE:-}" = 1 ] && trials=6 timed=4
ok_load=0 ok_resume=0 clean=0 landed_model=0 landed_opt=0
for trial in $(seq 1 $trials); do
    ck=$TMP/k$trial
    ./s1 train --init-config "$TMP/c.json" "${RUN[@]}" --out "$ck" --save-every 1 >/dev/null 2>&1 &
    pid=$!   # the trainer itself: its new checkpoint folder is $ck.tmp.$pid
    # arm once the first checkpoint exists, so that there is always one to fall back on
    while [ ! -e "$ck/optimizer.bin" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
    kind=random
    if [ $trial -le $timed ]; then
        # inside a write: skip to a later save, then kill as soon as the file appears in the new folder
        file=model.safetensors; [ $trial -gt $((timed / 2)) ] && file=optimizer.bin
        kind=$file
        for _ in $(seq 1 $(((trial - 1) % 5))); do   # let some saves pass
            while [ ! -e "$ck.tmp.$pid/$file" ] && kill -0 $pid 2>/dev/null; do :; done
            while [ -e "$ck.tmp.$pid/$file" ] && kill -0 $pid 2>/dev/null; do :; done
        done
        while [ ! -e "$ck.tmp.$pid/$file" ] && kill -0 $pid 2>/dev/null; do :; done
        kill -9 $pid 2>/dev/null
    else
        sleep "0.$((RANDOM % 9))$((RANDOM % 10))"
        kill -9 $pid 2>/dev/null
    fi
    wait $pid 2>/dev/null
    # where did it land? a new folder with the file being written, but not the next one
    if [ -e "$ck.tmp.$pid/model.safetensors" ] && [ ! -e "$ck.tmp.$pid/optimizer.bin" ]; then landed_model=$((landed_model + 1)); fi
    if [ -e "$ck.tmp.$pid/optimizer.bin" ]; then landed_opt=$((landed_opt + 1)); fi
    step=$(step_of "$ck")
    if ./s1 loss --model "$ck" --data "$TMP/shard" >/dev/null 2>&1; then ok_load=$((ok_load + 1))
    else echo "  trial $trial ($kind): the checkpoint on disk does not load"; fi
    if ./s1 train --resume "$ck" "${RUN[@]:0:2}" --threads 1 --out "$ck" >"$TMP/resume.log" 2>&1 &&
       [ "$(md5sum <"$ck/model.safetensors")" = "$ref" ]; then ok_resume=$((ok_resume + 1))
    else echo "  trial $trial ($kind, killed at step $step): resume failed or differs: $(tail -1 "$TMP/resume.log")"; fi
    if [ -z "$(ls -d "$ck".tmp.* "$ck".old.* "$ck"/*.tmp.* 2>/dev/null)" ]; then clean=$((clean + 1)); fi
    rm -rf "$ck" "$ck".*
done
echo "note: kill -9 trials: $trials (kills inside the model.safetensors write: $landed_model, inside optimizer.bin or before the swap: $landed_opt); checkpoint loads $ok_load/$trials; resumed bit-identical $ok_resume/$trials; no temporary left $clean/$trials"
expect_eq "kill -9: the last checkpoint loads every time" "$ok_load" $trials
expect_eq "kill -9: --resume reaches bit-identical weights every time" "$ok_resume" $trials
expect_eq "kill -9: the resumed run removes the killed run's temporaries" "$clean" $trials
[ $landed_model -ge 1 ] && [ $landed_opt -ge 1 ] && pass "kill -9: kills landed inside both files' writes" ||
    fail "kill -9: kills landed inside both files' writes" "model $landed_model, optimizer $landed_opt"

# ---------------------------------------------------------------------------
# a full file system

full_disk_check() {   # full_disk_check NAME DIR ERROR_PATTERN [ulimit]: train into DIR/ck until a save fails
    local name=$1 dir=$2 pattern=$3 limit=${4:-}
    train_init --out "$dir/ck" --stop-at 1 >/dev/null 2>&1
    local before; before=$(md5sum <"$dir/ck/model.safetensors")
    if [ -n "$limit" ]; then
        (trap '' XFSZ; ulimit -f "$limit"; exec ./s1 train --resume "$dir/ck" "${RUN[@]:0:2}" --threads 1 --out "$dir/ck") >/dev/null 2>"$TMP/err"
    else
        ./s1 train --resume "$dir/ck" "${RUN[@]:0:2}" --threads 1 --out "$dir/ck" >/dev/null 2>"$TMP/err"
    fi
    local rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qE "$pattern" "$TMP/err"; then pass "$name: one error line, non-zero exit"
    else fail "$name: one error line, non-zero exit" "exit $rc: $(head -c 300 "$TMP/err")"; fi
    expect_eq "$name: the previous checkpoint is intact" "$(md5sum <"$dir/ck/model.safetensors") $(step_of "$dir/ck")" "$before 1"
    expect_ok "$name: the previous checkpoint loads" ./s1 loss --model "$dir/ck" --data "$TMP/shard"
    expect_eq "$name: no partial checkpoint left" "$(ls -d "$dir"/ck.* 2>/dev/null)" ""
}

if [ "$(id -u)" = 0 ] && mkdir -p "$TMP/tmpfs" && mount -t tmpfs -o size=24m tmpfs "$TMP/tmpfs" 2>/dev/null; then
    full_disk_check "ENOSPC (24 MB tmpfs)" "$TMP/tmpfs" "write failed: No space left on device"
    used=$(df -k --output=used "$TMP/tmpfs" | tail -1)
    # one checkpoint (15.4 MB) is left; the partial second one is gone with its space
    [ "$used" -lt 17000 ] && pass "ENOSPC: the space of the partial checkpoint is freed" || fail "ENOSPC: the space of the partial checkpoint is freed" "$used KB used"
    umount "$TMP/tmpfs"
else
    echo "note: not root or no tmpfs mount: the ENOSPC case runs with a file-size limit only"
fi
mkdir -p "$TMP/fsize"
full_disk_check "write failure (file-size limit)" "$TMP/fsize" "write failed: File too large" 8000

# ---------------------------------------------------------------------------
# the folder is synced after the swap

if command -v strace >/dev/null 2>&1; then
    train_init --out "$TMP/sync" --stop-at 1 >/dev/null 2>&1
    strace -f -e trace=renameat2,rename,openat,fsync -o "$TMP/strace" \
        ./s1 train --resume "$TMP/sync" "${RUN[@]:0:2}" --threads 1 --out "$TMP/sync" --stop-at 2 >/dev/null 2>&1
    # the swap, then an fsync of a descriptor opened on the parent folder with O_DIRECTORY
    swap=$(grep -n 'renameat2(.*RENAME_EXCHANGE' "$TMP/strace" | head -1 | cut -d: -f1)
    parent_fd=$(awk -v s="${swap:-0}" 'NR > s && /openat\(.*"'"${TMP//\//\\/}"'".*O_DIRECTORY/ { match($0, /= [0-9]+$/); print substr($0, RSTART + 2); exit }' "$TMP/strace")
    if [ -n "$swap" ] && [ -n "$parent_fd" ] && awk -v s="$swap" -v fd="$parent_fd" 'NR > s && $0 ~ "fsync\\(" fd "\\)" { found = 1 } END { exit !found }' "$TMP/strace"
    then pass "the parent folder is fsync'ed after the swap"
    else fail "the parent folder is fsync'ed after the swap" "$(grep -E 'renameat2|fsync|O_DIRECTORY' "$TMP/strace" | tail -8)"; fi
else
    echo "note: strace not installed: the folder fsync is not traced"
fi

# ---------------------------------------------------------------------------
# what the folder holds besides the checkpoint

ck=$TMP/carry
train_init --out "$ck" --stop-at 1 >/dev/null 2>&1
echo "my notes" >"$ck/notes.txt"
mkdir -p "$ck/eval" && echo '{"a": 1}' >"$ck/eval/eval.jsonl"
echo '{"weight_map": {}}' >"$ck/model.safetensors.index.json"
echo stale >"$ck/model-00001-of-00002.safetensors"
stale=$TMP/carry.tmp.$(dead_pid); mkdir "$stale"; echo junk >"$stale/model.safetensors"
echo junk >"$ck/optimizer.bin.tmp.$(dead_pid)"
train_init --out "$ck" --stop-at 2 >/dev/null 2>&1   # a new run saving into the folder
expect_eq "a save keeps the folder's other files" "$(cat "$ck/notes.txt" "$ck/eval/eval.jsonl" 2>&1)" "my notes
{\"a\": 1}"
expect_eq "a save drops stale weights (an index and its shards) and temporaries" \
    "$(ls "$ck" | tr '\n' ' ')" "config.json eval model.safetensors notes.txt optimizer.bin "
expect_eq "a save removes a dead run's DIR.tmp.<pid>" "$(ls -d "$TMP"/carry.* 2>/dev/null)" ""
expect_eq "the checkpoint is at step 2" "$(step_of "$ck")" 2

# the fallback swap (two renames; file systems without RENAME_EXCHANGE), forced: the same checkpoints, and
# kill -9 trials timed at random: the checkpoint on disk (DIR, or DIR.old.<pid> put back) resumes bit-identically
S1C_TEST_NO_RENAME_EXCHANGE=1 train_init --out "$TMP/fbref" --save-every 1 >/dev/null 2>&1
expect_eq "fallback swap: the same final checkpoint" "$(md5sum <"$TMP/fbref/model.safetensors")" "$ref"
fb_ok=0
fb_trials=6
[ "${S1C_SANITIZE:-}" = 1 ] && fb_trials=2
for trial in $(seq 1 $fb_trials); do
    ck=$TMP/fbk$trial
    S1C_TEST_NO_RENAME_EXCHANGE=1 ./s1 train --init-config "$TMP/c.json" "${RUN[@]}" --out "$ck" --save-every 1 >/dev/null 2>&1 &
    pid=$!
    while [ ! -e "$ck/optimizer.bin" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
    sleep "0.$((RANDOM % 9))$((RANDOM % 10))"
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    S1C_TEST_NO_RENAME_EXCHANGE=1 ./s1 train --resume "$ck" "${RUN[@]:0:2}" --threads 1 --out "$ck" >/dev/null 2>&1 &&
        [ "$(md5sum <"$ck/model.safetensors")" = "$ref" ] && [ -z "$(ls -d "$ck".* 2>/dev/null)" ] && fb_ok=$((fb_ok + 1))
    rm -rf "$ck" "$ck".*
done
expect_eq "fallback swap: $fb_trials kill -9 trials resume bit-identically, leaving nothing behind" "$fb_ok" $fb_trials

# a kill between the two renames of the fallback swap: DIR is gone, DIR.old.<pid> holds it
train_init --out "$TMP/fb" --stop-at 4 >/dev/null 2>&1
mv "$TMP/fb" "$TMP/fb.old.$(dead_pid)"
expect_ok "resume puts DIR.old.<dead pid> back when DIR is missing" ./s1 train --resume "$TMP/fb" "${RUN[@]:0:2}" --threads 1 --out "$TMP/fb"
expect_eq "... and reaches the uninterrupted run's weights" "$(md5sum <"$TMP/fb/model.safetensors")" "$ref"

summary
