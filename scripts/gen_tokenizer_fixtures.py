"""Generates the tokenizer fixtures that PyPI `tokenizers` (the Hugging Face
reference implementation) produces, a second oracle beside the Qwen2.5 vectors.

    make tokenizer && /work/venv/bin/python scripts/gen_tokenizer_fixtures.py

Writes (run from anywhere; paths are relative to the repo root):
  tests/fixtures/tok_hf_qwen.jsonl      {"text", "ids"}: Qwen2.5 ids of seeded random strings and
                                        edge cases; {"text", "pretokens"}: HF's pre-tokenizer pieces
                                        of NFC(text); {"ids", "decoded"}: HF's decoding of seeded
                                        random id sequences (many broken UTF-8 byte runs)
  tests/fixtures/tok_chat_hf.jsonl      {"roles", "contents", "add_generation_prompt", "text"}: Qwen2.5's
                                        chat template rendered by transformers' apply_chat_template
  tests/fixtures/tok_trained/tokenizer.json
                                        `./tokenizer train --vocab-size 768` on the vectors' texts
                                        (each followed by "\\n"), with the default added tokens
  tests/fixtures/tok_trained_hf.jsonl   {"text", "ids"}: the ids HF gives with that file

Random strings use code points assigned in this Python's Unicode database (14.0),
so the pre-tokenizer's classes agree between our tables (UCD 15.0) and HF's.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QWEN_JSON = os.path.join(ROOT, "tokenizers/qwen2.5/tokenizer.json")
VECTORS = os.path.join(ROOT, "tests/fixtures/qwen2.5-vectors.jsonl")
OUT_QWEN = os.path.join(ROOT, "tests/fixtures/tok_hf_qwen.jsonl")
TRAINED_DIR = os.path.join(ROOT, "tests/fixtures/tok_trained")
OUT_TRAINED = os.path.join(ROOT, "tests/fixtures/tok_trained_hf.jsonl")
OUT_CHAT = os.path.join(ROOT, "tests/fixtures/tok_chat_hf.jsonl")

CHATS = [
    ([("user", "Hi!")], True),
    ([("user", "Hi!")], False),
    ([("system", "You are a cat."), ("user", "hello"), ("assistant", "Meow!"), ("user", "Why?")], True),
    ([("system", "")], False),
    ([("user", "  spaces kept \n"), ("assistant", "ünïcödé 你好 😀\n\n")], False),
    ([("user", "q1"), ("assistant", "a1"), ("system", "late system turn"), ("user", "q2")], True),
    ([("user", "What is 1+1?"), ("assistant", "<|im_start|>think\n1+1=2.\n<|im_start|>answer\nAnswer: 2")], False),
]

ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<|fim_pad|>", "<|file_sep|>"]

# (lo, hi) pools to draw characters from
POOLS = [
    (0x20, 0x7E), (0x20, 0x7E), (0x09, 0x0D), (0x1C, 0x20), (0x80, 0xFF), (0x100, 0x24F),
    (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F),
    (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2070, 0x218F), (0x3000, 0x30FF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1D400, 0x1D7FF),
    (0x0, 0x10FFFF),
]


def assigned(cp):
    if 0xD800 <= cp <= 0xDFFF or cp == 0:
        return False
    return unicodedata.category(chr(cp)) != "Cn"


def random_text(rng, n_chars):
    out = []
    while len(out) < n_chars:
        r = rng.random()
        if r < 0.05:
            out.append(rng.choice(ADDED))
            continue
        if r < 0.15:
            out.append(rng.choice(["'s", "'T", "'re", "'LL", "'ve", "'m", "'d", "'ſ", " '", "''"]))
            continue
        lo, hi = rng.choice(POOLS)
        cp = rng.randint(lo, hi)
        if assigned(cp):
            out.append(chr(cp))
    return "".join(out)


EDGE_CASES = [
    "e\u0301", "E\u0301\u0323x", "\u1e9b\u0323", "a\u0323\u0302b", "\u212b\u2126\u212a", "\u1100\u1161\u11a8",
    "\uac00\u11a8", "\u0915\u093c", "\ufb2c", "\u037e\u0387", "\u2000\u2001x",
    # combining marks added after Unicode 9.0 are starters in HF's normaliser
    "e\u1df6\u0301", "a\u1df7\u0323", "\u0d3b\u0301", "o\u1df9\u0308",
    "x\u0085y", "a\u0085\u0085b", "\ufeff\ufeffb", "\u180ex", "x'\u017fab", "'\u017f",
    "a\rb\rc", "\r\r\n\n", "  x  ", "x \t ", "\u3000\u3000y", "end  ", "\n", " ", "\t\t",
    "<|im_start|><|im_end|>", "a<|im_start|>b", "<|im_start|>\n", "x<|endoftext|> y", "<|im_start", "<|IM_END|>",
    "<tool_call>x</tool_call>", "<|fim_pad|><|fim_pad|>", "don'tcha", "DON'T he'S", " 'told", "y'all'd've",
    "12345", "\u0661\u0662\u0663", "\u00bd\u00b2\u2167", "1\u20442", "foo.\n\nbar", "((Hello", "\t(x",
]


def byte_decoder():
    """GPT-2's bytes_to_unicode, inverted: byte-level character -> byte."""
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def write_jsonl(path, rows):
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def main():
    rng = random.Random(20250101)
    qwen = Tokenizer.from_file(QWEN_JSON)
    rows = []
    texts = EDGE_CASES + [random_text(rng, rng.randint(1, 40)) for _ in range(600)]
    texts += [random_text(rng, rng.randint(200, 400)) for _ in range(20)]
    for t in texts:
        rows.append({"text": t, "ids": qwen.encode(t, add_special_tokens=False).ids})
    # pre-tokens alone (the Split regex on the NFC text, added tokens not special here)
    inverse = byte_decoder()
    for t in EDGE_CASES + [random_text(rng, rng.randint(1, 40)) for _ in range(300)]:
        norm = qwen.normalizer.normalize_str(t)
        pieces = [bytes(inverse[c] for c in p).decode("utf-8") for p, _ in qwen.pre_tokenizer.pre_tokenize_str(norm)]
        assert "".join(pieces) == norm
        rows.append({"text": t, "pretokens": pieces})
    # decoding: ill-formed byte sequences of the Unicode standard's table 3-8 kind, as byte tokens
    id_of_byte = {b: i for i, b in enumerate(byte_decoder().values())}
    broken = ["E0 80 80", "E0 9F BF", "ED A0 80", "ED BF BF 41", "F4 90 80 80", "F0 80 80 80", "C0 AF", "C1 BF",
              "F0 9F 98", "E4 BD 41", "F5 80", "FF FE", "80 BF 41", "E1 80 E1 80 80", "F0 9F 98 80", "EF BF BD",
              "C2", "E2 82", "F3 BF BF"]
    for seq in broken:
        ids = [id_of_byte[int(h, 16)] for h in seq.split()]
        rows.append({"ids": ids, "decoded": qwen.decode(ids, skip_special_tokens=False)})
    # decoding: random ids, mostly single-byte tokens so that UTF-8 breaks often
    for _ in range(300):
        ids = []
        for _ in range(rng.randint(1, 16)):
            r = rng.random()
            ids.append(rng.randint(0, 255) if r < 0.6 else rng.randint(151643, 151664) if r < 0.65 else rng.randint(0, 151642))
        rows.append({"ids": ids, "decoded": qwen.decode(ids, skip_special_tokens=False)})
    write_jsonl(OUT_QWEN, rows)
    print(f"wrote {OUT_QWEN}: {len(texts)} encode cases, {len(EDGE_CASES) + 300} pre-token cases, {len(broken) + 300} decode cases")

    # the chat template, rendered by transformers from tokenizer_config.json
    from transformers import AutoTokenizer
    hf_tok = AutoTokenizer.from_pretrained(os.path.dirname(QWEN_JSON))
    rows = []
    for messages, gen in CHATS:
        text = hf_tok.apply_chat_template([{"role": r, "content": c} for r, c in messages], tokenize=False,
                                          add_generation_prompt=gen)
        rows.append({"roles": [r for r, _ in messages], "contents": [c for _, c in messages],
                     "add_generation_prompt": gen, "text": text})
    write_jsonl(OUT_CHAT, rows)
    print(f"wrote {OUT_CHAT}: {len(rows)} chats")

    # the small trained tokenizer, trained by our trainer on the vectors' texts
    with open(VECTORS, encoding="utf-8") as f:
        vec_texts = [json.loads(line)["text"] for line in f.read().split("\n") if line]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write("".join(t + "\n" for t in vec_texts))
        corpus = f.name
    try:
        subprocess.run([os.path.join(ROOT, "tokenizer"), "train", "--vocab-size", "768", "--out", TRAINED_DIR, corpus],
                       check=True)
    finally:
        os.unlink(corpus)
    trained = Tokenizer.from_file(os.path.join(TRAINED_DIR, "tokenizer.json"))
    sample = [t for t in vec_texts if len(t.encode()) < 400][::4]
    sample += [random_text(rng, rng.randint(1, 60)) for _ in range(150)]
    sample += EDGE_CASES
    rows = [{"text": t, "ids": trained.encode(t, add_special_tokens=False).ids} for t in sample]
    write_jsonl(OUT_TRAINED, rows)
    print(f"wrote {OUT_TRAINED}: {len(rows)} cases; trained vocab {trained.get_vocab_size()}")


if __name__ == "__main__":
    sys.exit(main())
