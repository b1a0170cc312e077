"""
Generates tests/fixtures/data-quality-cases.jsonl: random short strings with
the verdicts of s1's quality filter computed by Python itself, the oracle for
data.c's hand-written version (tests/test_data.c).

    /work/venv/bin/python scripts/gen_data_quality_fixture.py

The rule is the one in simplescaling/s1 data/filter.ipynb:

    keep = ("[asy]" not in q and "![Image]" not in q
            and not any(f"p{i}." in q for i in range(1, 1000))
            and not re.search(r'\\*\\*(?=.*\\d)[^\\s\\]]*\\*\\*', q))
           or ("[asy]" in q and "AIME" in source_type)

Half the strings are built around a "**" (positives and near misses of the
bold rule), half drawn freely; both from small alphabets rich in the characters
the rule looks at: '*', ASCII and non-ASCII digits (Arabic-Indic, full-width), ASCII and
Unicode whitespace (no-break space, em space, line separator, \\x1c, \\x85),
newlines, ']', 'p', '.', and the tokens "[asy]" and "![Image]".
Each line: {"q", "source_type", "bold", "pnum", "keep"}.
"""
import json
import os
import random
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "data-quality-cases.jsonl")
BOLD = re.compile(r'\*\*(?=.*\d)[^\s\]]*\*\*')
DENSE = ['*', '1', '1', 'a', 'a', ' ', '\n', ']', '\u0661', '\uff11', '\u00a0', '\u2028', '\x1c', '\x85', '\r']
BROAD = ['*', '*', ' ', '\n', ']', 'a', '1', '\u00a0', '\u0661', 'p', '.', '0', '9', '[asy]', '![Image]', 'x', '\u2003',
         '\uff11', '\r', '\t', 'p12.', 'p1000.']
SOURCES = ["qq8933/AIME_1983_2024", "AIME", "aime", "qfq/openaimath/Algebra", "Idavidrein/gpqa"]


def main():
    rng = random.Random(1234)
    with open(OUT, "w", encoding="utf-8") as f:
        for k in range(2000):
            if k % 2 == 0:   # around a "**": positives and near misses of the bold rule
                piece = lambda: "".join(rng.choice(DENSE) for _ in range(rng.randint(0, 4)))
                q = piece() + "**" + piece() + rng.choice(["**", "**", "*", ""]) + piece()
            else:
                q = "".join(rng.choice(BROAD) for _ in range(rng.randint(0, 10)))
            source = rng.choice(SOURCES)
            bold = BOLD.search(q) is not None
            pnum = any(f"p{i}." in q for i in range(1, 1000))
            keep = ("[asy]" not in q and "![Image]" not in q and not pnum and not bold) or ("[asy]" in q and "AIME" in source)
            f.write(json.dumps({"q": q, "source_type": source, "bold": int(bold), "pnum": int(pnum), "keep": int(keep)}, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
