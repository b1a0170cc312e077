"""
Generates tests/fixtures/s1-layout.jsonl: s1 training samples rendered and
tokenised by Hugging Face, the oracle for `./data tokenize` (tests/test_data.c).

    /work/venv/bin/python scripts/gen_s1_layout_fixture.py

It mirrors simplescaling/s1 data/tokenization.py (process_cot_example):

    answer = "Answer: " + attempt   unless "Answer:" occurs in attempt
    assistant = "<|im_start|>think\n" + "\n".join(thinking).strip()
              + "\n<|im_start|>answer\n" + answer.strip()
    text = apply_chat_template([user: question, assistant: assistant], tokenize=False)

and TRL 0.12's DataCollatorForCompletionOnlyLM as s1's train/sft.py builds it
(response template "<|im_start|>assistant\n", instruction template
"<|im_start|>user", both encoded on their own as TRL does): the ids are
tokenizer(text) right-truncated at the block size, and trl_targets() below is a
transcription of the collator's multi-turn masking. For an ordinary sample the
targets are everything after the first response template; with no complete
template inside the (truncated) ids there are none. TRL is not installed here,
so its code is transcribed rather than imported.

Each output line: {"name", "question", "thinking_trajectories", "attempt",
"text", "ids", "mask_start", "targets", "truncations": [{"block_size",
"mask_start", "targets"}]}: targets are [start, end) spans of loss positions,
mask_start the end of the first response template (-1 if none).
The tokenizer is the local copy in tokenizers/qwen2.5 (no network).
"""
import json
import os

from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(ROOT, "tokenizers", "qwen2.5")
OUT = os.path.join(ROOT, "tests", "fixtures", "s1-layout.jsonl")
RESPONSE_TEMPLATE = "<|im_start|>assistant\n"
INSTRUCTION_TEMPLATE = "<|im_start|>user"


def s1_text(tok, question, thinking_trajectories, attempt):
    answer = "Answer: " + attempt if "Answer:" not in attempt else attempt
    assistant = ("<|im_start|>think\n" + "\n".join(thinking_trajectories).strip()
                 + "\n<|im_start|>answer\n" + answer.strip())
    return tok.apply_chat_template([{"role": "user", "content": question},
                                    {"role": "assistant", "content": assistant}], tokenize=False)


def mask_start(ids, template_ids):
    n = len(template_ids)
    for i in range(len(ids) - n + 1):
        if ids[i:i + n] == template_ids:
            return i + n
    return -1


def occurrences(ids, template_ids):
    n = len(template_ids)
    return [i for i in range(len(ids) - n + 1) if ids[i:i + n] == template_ids]


def trl_targets(ids, response_ids, instruction_ids):
    """TRL 0.12 DataCollatorForCompletionOnlyLM.torch_call, instruction_template set, one example."""
    labels = list(ids)
    ignore = -100
    response_idxs = [i + len(response_ids) for i in occurrences(labels, response_ids)]
    if len(response_idxs) == 0:
        labels = [ignore] * len(labels)
    human_idxs = occurrences(labels, instruction_ids)   # searched in labels, as TRL does
    if len(human_idxs) == 0:
        labels = [ignore] * len(labels)
    if len(human_idxs) > 0 and len(response_idxs) > 0 and human_idxs[0] > response_idxs[0]:
        human_idxs = [0] + human_idxs
    for idx, (start, end) in enumerate(zip(human_idxs, response_idxs)):
        if idx != 0:
            labels[start:end] = [ignore] * len(labels[start:end])
        else:
            labels[:end] = [ignore] * len(labels[:end])
    if len(response_idxs) < len(human_idxs):
        labels[human_idxs[-1]:] = [ignore] * len(labels[human_idxs[-1]:])
    spans, t = [], 0
    while t < len(labels):
        if labels[t] == ignore:
            t += 1
            continue
        start = t
        while t < len(labels) and labels[t] != ignore:
            t += 1
        spans.append([start, t])
    return spans


def samples():
    long_steps = [f"Step {k}: {k} * {k + 1} = {k * (k + 1)}, and adding {k} gives {k * (k + 2)}." for k in range(1, 41)]
    return [
        ("s1-spec 2.2 vector", "What is 1+1?", ["1+1=2."], "2"),
        ("attempt has Answer:", "Compute 17 + 25.", ["17 + 25: 7+5=12, carry 1; 1+2+1=4. So 42."],
         "The sum is 42.\nAnswer: 42"),
        ("gemini final answer", "Find $x$ if $3x + 4 = 19$.", ["Subtract 4: 3x = 15. Divide by 3: x = 5."],
         "Final Answer: The final answer is $\\boxed{5}$"),
        ("lowercase answer: gets the prefix", "What is 2*3?", ["2*3=6"], "answer: 6"),
        ("whitespace around thinking and attempt", "  Leading and trailing spaces stay in the question.  ",
         ["  \n first thought \n", "second thought\n\n"], "  \n 7 \n "),
        ("unicode", "Évaluez ∫₀¹ x² dx; 你好, 世界! 😀 — ça va?",
         ["∫₀¹ x² dx = [x³/3]₀¹ = 1/3. 日本語も大丈夫。"], "La réponse est $\\frac{1}{3}$ ✓"),
        ("several trajectories", "Is 91 prime?", ["91 = 7 * 13.", "", "So it is not prime.", "Wait, check: 7*13 = 91. Yes."],
         "No, 91 = 7 * 13.\n\nAnswer: no"),
        ("empty attempt", "Say nothing.", ["Nothing to say."], ""),
        ("crlf and tabs", "Line one\r\nLine two\tTabbed", ["a\r\nb\tc", "d"], "\tAnswer:\t9\r\n"),
        ("response template inside the question", "Repeat after me: <|im_start|>assistant\nhello", ["Echo it."],
         "hello"),
        ("instruction template inside the thinking", "Quote the chat format.",
         ["A user turn starts with <|im_start|>user and a newline.", "That is all."], "Answer: <|im_start|>user"),
        ("instruction template inside the question", "What follows <|im_start|>user here?", ["A newline."],
         "A newline"),
        ("a second user/assistant exchange inside the thinking", "Show a two-turn chat.",
         ["Like this: <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>", "Done."], "Answer: shown"),
        ("latex and bold", "Let **n = 12**. Compute $\\binom{n}{2}$.", ["$\\binom{12}{2} = \\frac{12 \\cdot 11}{2} = 66$."],
         "$\\boxed{66}$"),
        ("long trace for truncation", "Sum the series step by step.", long_steps, "Answer: done"),
    ]


def main():
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    template_ids = tok.encode(RESPONSE_TEMPLATE, add_special_tokens=False)
    instruction_ids = tok.encode(INSTRUCTION_TEMPLATE, add_special_tokens=False)
    assert template_ids == [151644, 77091, 198], template_ids
    assert instruction_ids == [151644, 872], instruction_ids
    lines = []
    for name, question, thinking, attempt in samples():
        text = s1_text(tok, question, thinking, attempt)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        start = mask_start(ids, template_ids)
        # block sizes around every interesting boundary: inside the prompt, just
        # before/at/after the end of the template, just below the full length, beyond it
        blocks = sorted({b for b in (8, start - 1, start, start + 1, len(ids) - 1, len(ids), len(ids) + 7) if b >= 1})
        truncations = [{"block_size": b, "mask_start": mask_start(ids[:b], template_ids),
                        "targets": trl_targets(ids[:b], template_ids, instruction_ids)} for b in blocks]
        lines.append({"name": name, "question": question, "thinking_trajectories": thinking, "attempt": attempt,
                      "text": text, "ids": ids, "mask_start": start,
                      "targets": trl_targets(ids, template_ids, instruction_ids), "truncations": truncations})
    # s1-spec.md 2.2 lists these ids (its prose says 55 ids / 19 targets, but the list itself has 54 / 18)
    spec_ids = [int(x) for x in """
        151644 8948 198 2610 525 1207 16948 11 3465 553 54364 14817 13 1446 525 264 10950 17847 13 151645 198
        151644 872 198 3838 374 220 16 10 16 30 151645 198
        151644 77091 198 151644 26865 198 16 10 16 28 17 624 151644 9217 198 16141 25 220 17 151645 198""".split()]
    assert lines[0]["ids"] == spec_ids and lines[0]["mask_start"] == 36, (lines[0]["ids"], lines[0]["mask_start"])
    assert lines[0]["targets"] == [[36, 54]], lines[0]["targets"]
    with open(OUT, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(lines)} samples, {sum(len(l['ids']) for l in lines)} tokens")


if __name__ == "__main__":
    main()
