# Every function a tutorial chapter names must exist in the sources.
# A "named function" is a backticked identifier followed by "()" in tutorial/*.md,
# e.g. `tokenizer_encode()`. It must be defined (name followed by "(" at the
# start of a definition line) in a .c, .cu, .h or .cuh file of the repo.
. tests/lib.sh
shopt -s nullglob
chapters=(tutorial/*.md)
if [ ${#chapters[@]} -eq 0 ]; then fail "tutorial chapters exist" "tutorial/ has no chapter"; summary; exit; fi
sources=$(ls *.c *.cu common/*.h common/*.cuh 2>/dev/null)
for ch in "${chapters[@]}"; do
    names=$(grep -oE '`[A-Za-z_][A-Za-z0-9_]*\(\)`' "$ch" | tr -d '`()' | sort -u)
    missing=""
    count=0
    for n in $names; do
        count=$((count + 1))
        # a definition: the name at a line's start or after a return type, then "(" and no ";" at the end
        if ! grep -qE "^[A-Za-z_].*[^A-Za-z0-9_]$n\(.*[^;]$|^$n\(" $sources; then missing="$missing $n"; fi
    done
    if [ -z "$missing" ]; then pass "$ch: all $count named functions exist"
    else fail "$ch: functions named but not defined:$missing"; fi
done
# tutorial/cuda.md, "Which stream does what": nothing of the programs runs on the legacy default stream,
# which the non-blocking compute stream does not wait for. A synchronous cudaMemcpy() or cudaMemset() does
# (and a pageable host-to-device cudaMemcpy() may return before its DMA has landed).
legacy=$(grep -nE '(^|[^A-Za-z0-9_])cuda(Memcpy|Memset)\(' sample.cu sft.cu common/*.cuh $(ls common/*.h | grep -v '^common/cuemu'))
if [ -z "$legacy" ]; then pass "the programs' sources: no synchronous cudaMemcpy()/cudaMemset() (the legacy default stream)"
else fail "the programs' sources: no synchronous cudaMemcpy()/cudaMemset() (the legacy default stream)" "$legacy"; fi
summary
