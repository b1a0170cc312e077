#!/usr/bin/env python3
"""
check_hf_load.py: does a checkpoint folder load in Hugging Face transformers and
compute the reference logits?

    /work/venv/bin/python scripts/check_hf_load.py MODEL_DIR REFERENCE_DIR [--tol 1e-5]

MODEL_DIR holds config.json + model.safetensors (for example written by s1.c).
REFERENCE_DIR holds reference.safetensors from scripts/gen_qwen_fixtures.py
(tests/fixtures/qwen-tiny-*/). The script loads MODEL_DIR with
Qwen2ForCausalLM.from_pretrained (float32, eager attention), runs each sequence
of the reference batch on its own, and compares the logits with the stored ones.

It fails (exit status 1) when transformers reports any missing, unexpected or
mismatched tensor (it would otherwise fill a missing one with random numbers
and carry on), or when max |logits - reference| exceeds the tolerance.

Tolerance: 1e-5 absolute by default. The same float32 weights give the same
logits up to summation order; torch's own fp32 error on these logits is
2e-7 .. 4e-7 (metadata fp64_diff.logits), and the logits are of order 1, so
1e-5 leaves room for thread-count effects while any wrong tensor, transpose,
config value (theta, eps, tying) or dropped bias moves them by 1e-3 or more.

To check a checkpoint written after training (so its weights are the fixture's
after3.* weights), pass --weights after3: the reference logits are then
recomputed here from REFERENCE_DIR's model with after3.* substituted.
"""

import argparse
import os
import sys

import torch
import transformers
from safetensors.torch import load_file
from transformers import Qwen2ForCausalLM


def load_model(model_dir):
    model, info = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                   attn_implementation="eager",
                                                   output_loading_info=True,
                                                   ignore_mismatched_sizes=True)  # report, not raise
    problems = [f"{kind}: {', '.join(sorted(map(str, names)))}" for kind, names in info.items()
                if kind in ("missing_keys", "unexpected_keys", "mismatched_keys") and names]
    return model.eval(), problems


@torch.no_grad()
def logits_of(model, input_ids, seq_offsets):
    out = []
    for s in range(len(seq_offsets) - 1):
        a, b = int(seq_offsets[s]), int(seq_offsets[s + 1])
        out.append(model(input_ids[a:b].long()[None]).logits[0])
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("model_dir", help="folder with config.json and model.safetensors")
    ap.add_argument("reference_dir", help="folder with reference.safetensors (tests/fixtures/qwen-tiny-*)")
    ap.add_argument("--tol", type=float, default=1e-5, help="max abs logit difference allowed (default 1e-5)")
    ap.add_argument("--weights", choices=["initial", "after3"], default="initial",
                    help="which reference weights MODEL_DIR should hold (default initial)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    for path in (os.path.join(args.model_dir, "config.json"), os.path.join(args.model_dir, "model.safetensors"),
                 os.path.join(args.reference_dir, "reference.safetensors")):
        if not os.path.isfile(path):
            sys.exit(f"check_hf_load: {path}: no such file")
    ref = load_file(os.path.join(args.reference_dir, "reference.safetensors"))
    input_ids, seq_offsets = ref["input_ids"], ref["seq_offsets"]

    try:
        model, problems = load_model(args.model_dir)
    except Exception as e:          # transformers' own message names the problem
        print(f"FAIL {args.model_dir}: transformers could not load it: {type(e).__name__}: {e}")
        sys.exit(1)
    if problems:
        print(f"FAIL {args.model_dir}: transformers loaded it with " + "; ".join(problems))
        sys.exit(1)

    if args.weights == "initial":
        expected = ref["logits"]
    else:
        ref_model, _ = load_model(args.reference_dir)
        after = {k[len("after3."):]: v for k, v in ref.items() if k.startswith("after3.")}
        missing, unexpected = ref_model.load_state_dict(after, strict=False)
        assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
        expected = logits_of(ref_model, input_ids, seq_offsets)

    got = logits_of(model, input_ids, seq_offsets)
    if got.shape != expected.shape:
        print(f"FAIL {args.model_dir}: logits shape {list(got.shape)}, reference {list(expected.shape)}")
        sys.exit(1)
    diff = float((got - expected).abs().max())
    ok = diff <= args.tol
    print(f"{'PASS' if ok else 'FAIL'} {args.model_dir} vs {args.reference_dir} ({args.weights} weights): "
          f"max |logits diff| {diff:.3e} (tolerance {args.tol:.1e}, {len(input_ids)} tokens, "
          f"{len(seq_offsets) - 1} sequences)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
