#!/usr/bin/env python3
"""Writes tests/fixtures/bench/: small made-up benchmark files in the columns of the public files
s1 evaluated (never the benchmark data itself), and what s1's harness tasks make of them, for
tests/test_data.sh's checks of `./data bench`. Plain CPython (csv, json, random), no packages:

    python3 scripts/gen_bench_fixtures.py

The expected prompts restate s1's task code (eval/lm-evaluation-harness/lm_eval/tasks/...):
  aime/utils.py process_docs + doc_to_text (QUERY_TEMPLATE = "{Question}"): AIME24, AIME25
  openai_math/utils.py process_docs + doc_to_text: MATH500
  gpqa/openai/utils.py process_docs (random.shuffle of [Incorrect 1, 2, 3, Correct] per row,
  answer = chr(65 + index of Correct)) + doc_to_text_gpqa (QUERY_TEMPLATE, :12), after
  random.seed(SEED) for SEED in 1234 (vLLM's worker reseed) and 0 (lm-eval's own seed).
"""
import csv
import json
import os
import random

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "bench")

# columns as in the public files; the rows are invented
AIME24 = [  # simplescaling/aime24_nofigures: id, problem, solution, answer, url
    {"id": 60, "problem": "Find the remainder when $7^{2024}$ is divided by $1000$.", "solution": "Use CRT.", "answer": "001",
     "url": "https://example.invalid/1"},
    {"id": 61, "problem": "Let $x$ be real with $x^2 = 49$ and $x > 0$.\nFind $x$.", "solution": "x = 7", "answer": "7",
     "url": "https://example.invalid/2"},
]
AIME25 = [  # TIGER-Lab/AIME25: id, problem, answer (an integer), solution
    {"id": "I-1", "problem": "How many positive divisors does $2025$ have?", "answer": 15, "solution": "3^4 5^2"},
    {"id": "I-2", "problem": "Compute $\\frac{1}{2}+\\frac{1}{3}$, written \"p/q\".", "answer": 5, "solution": "..."},
]
MATH500 = [  # simplescaling/openaimath test: problem, solution, answer, subject, level, unique_id
    {"problem": "What is $\\sqrt{16}$?", "solution": "$\\boxed{4}$", "answer": "4", "subject": "Algebra", "level": 1,
     "unique_id": "test/algebra/1.json"},
    {"problem": "Simplify $\\dfrac{6}{8}$.", "solution": "$\\boxed{\\frac34}$", "answer": "\\frac{3}{4}", "subject": "Prealgebra",
     "level": 2, "unique_id": "test/prealgebra/2.json"},
]
GPQA_COLUMNS = ["Pre-Revision Question", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                "Incorrect Answer 3", "Explanation", "Subdomain", "Record ID", "High-level domain"]
GPQA = []
for i in range(12):
    GPQA.append({
        "Pre-Revision Question": f"old question {i}",
        "Question": f"Question {i}: which value, in units of \"x\", fits?" + ("\nSecond line, with a comma." if i % 3 == 0 else ""),
        "Correct Answer": f"right {i}",
        "Incorrect Answer 1": f"wrong a{i}",
        "Incorrect Answer 2": f"wrong, b{i}",
        "Incorrect Answer 3": f"wrong \"c\" {i}",
        "Explanation": "because",
        "Subdomain": "Physics",
        "Record ID": f"rec{i:03d}",
        "High-level domain": "Physics",
    })
GPQA[5]["Incorrect Answer 2"] = GPQA[5]["Correct Answer"]   # a duplicate text: choices.index() finds the first


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def math_tasks(rows):  # aime/utils.py:202-220, openai_math/utils.py:199-217
    out = []
    for i, doc in enumerate(rows):
        problem = doc.get("problem", doc.get("question"))
        answer = doc.get("answer", doc.get("orig_answer", doc.get("orig_orig_answer")))
        rid = doc.get("id", doc.get("unique_id", i))
        out.append({"question": "{Question}".format(Question=problem), "answer": str(answer), "id": str(rid)})
    return out


def gpqa_task(rows, seed):  # gpqa/openai/utils.py:12, 221-242, 286-287
    random.seed(seed)
    out = []
    for doc in rows:
        choices = [doc["Incorrect Answer 1"], doc["Incorrect Answer 2"], doc["Incorrect Answer 3"], doc["Correct Answer"]]
        random.shuffle(choices)
        idx = choices.index(doc["Correct Answer"])
        q = "{Question}\n\nA) {choice1}\nB) {choice2}\nC) {choice3}\nD) {choice4}".format(
            Question=doc["Question"], choice1=choices[0], choice2=choices[1], choice3=choices[2], choice4=choices[3])
        out.append({"question": q, "answer": chr(65 + idx), "id": doc["Record ID"]})
    return out


os.makedirs(OUT, exist_ok=True)
write_jsonl(os.path.join(OUT, "aime24.jsonl"), AIME24)
write_jsonl(os.path.join(OUT, "aime25.jsonl"), AIME25)
write_jsonl(os.path.join(OUT, "math500.jsonl"), MATH500)
with open(os.path.join(OUT, "gpqa_diamond.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=GPQA_COLUMNS)
    w.writeheader()
    w.writerows(GPQA)
write_jsonl(os.path.join(OUT, "aime24.expected.jsonl"), math_tasks(AIME24))
write_jsonl(os.path.join(OUT, "aime25.expected.jsonl"), math_tasks(AIME25))
write_jsonl(os.path.join(OUT, "math500.expected.jsonl"), math_tasks(MATH500))
# read the CSV back as the harness would (pandas.read_csv gives the same strings for these cells)
with open(os.path.join(OUT, "gpqa_diamond.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
write_jsonl(os.path.join(OUT, "gpqa.seed1234.expected.jsonl"), gpqa_task(rows, 1234))
write_jsonl(os.path.join(OUT, "gpqa.seed0.expected.jsonl"), gpqa_task(rows, 0))
