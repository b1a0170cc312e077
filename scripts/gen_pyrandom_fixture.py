#!/usr/bin/env python3
"""Writes tests/fixtures/pyrandom.jsonl: what CPython's `random` gives, for tests/test_pyrandom.c
(common/pyrandom.h). Plain CPython, no packages:

    python3 scripts/gen_pyrandom_fixture.py > tests/fixtures/pyrandom.jsonl

One JSON object per line: {"seed", "uint32": first 8 getrandbits(32), "random": first 4 random()
as repr strings, "randbelow": [[n, value], ...] for randrange(n) in turn, then "shuffle4": the first
200 permutations of [0, 1, 2, 3] by random.shuffle, one after another, as s1's GPQA process_docs
draws them (lm_eval/tasks/gpqa/openai/utils.py:221-242), and "shuffle10" of range(10)}.
"""
import json
import random
import sys

SEEDS = [0, 1, 42, 1234, 2**32 - 1, 2**32 + 5, 2**40 + 3, -7]

print(json.dumps({"python": sys.version.split()[0]}))
for seed in SEEDS:
    r = random.Random(seed)
    row = {"seed": seed}
    row["uint32"] = [r.getrandbits(32) for _ in range(8)]
    row["random"] = [repr(r.random()) for _ in range(4)]
    row["randbelow"] = [[n, r.randrange(n)] for n in (1, 2, 3, 4, 5, 7, 100, 1000, 2**31 + 1, 2**33 + 7)]
    r = random.Random(seed)
    perms = []
    for _ in range(200):
        x = [0, 1, 2, 3]
        r.shuffle(x)
        perms.append("".join(map(str, x)))
    row["shuffle4"] = perms
    x = list(range(10))
    r.shuffle(x)
    row["shuffle10"] = x
    print(json.dumps(row))
