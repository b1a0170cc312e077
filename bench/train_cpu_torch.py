#!/usr/bin/env python3
"""
train_cpu_torch.py: the PyTorch peer for s1.c's CPU training benchmark.

Times full training steps of a random Qwen2 model in PyTorch eager mode (no
torch.compile) on the CPU, float32, and prints the throughput on one line:

    torch tokens/s: <float>

bench/train_cpu runs this beside ./s1's own benchmark with the same arguments
and prints the ratio. Usage (all sizes are Qwen2 config values):

    /work/venv/bin/python bench/train_cpu_torch.py --hidden 256 --layers 4 --heads 8 \\
        --kv-heads 2 --intermediate 704 --vocab 4096 --seq-len 256 --steps 5 --threads 2

One step, as s1.c takes it: zero the gradients; forward one sequence of
--seq-len random token ids (positions 0..seq_len-1); s1 loss = token-mean
cross-entropy over targets 1..seq_len-1 (one sequence, so the mean over
sequences is that sequence's mean); backward; clip_grad_norm_(1.0); AdamW
(betas 0.9/0.95, eps 1e-8, weight decay 1e-4 except biases and norm weights).
Tokens per step = --seq-len. --warmup untimed steps come first (default 1: the
first step allocates Adam's state). Only the steps are timed, not model setup.
"""

import argparse
import sys
import time

import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM


def positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=positive, required=True, help="hidden_size H")
    ap.add_argument("--layers", type=positive, required=True, help="num_hidden_layers L")
    ap.add_argument("--heads", type=positive, required=True, help="num_attention_heads")
    ap.add_argument("--kv-heads", type=positive, required=True, help="num_key_value_heads")
    ap.add_argument("--intermediate", type=positive, required=True, help="intermediate_size I")
    ap.add_argument("--vocab", type=positive, required=True, help="vocab_size V (embedding rows)")
    ap.add_argument("--seq-len", type=positive, required=True, help="tokens per step (one sequence)")
    ap.add_argument("--steps", type=positive, required=True, help="timed steps")
    ap.add_argument("--threads", type=positive, required=True, help="torch intra-op threads")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--tied", action="store_true", help="tie lm_head to the embedding (0.5B/1.5B-like)")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa",
                    help="HF attention implementation (default sdpa, what s1's training used)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if args.hidden % args.heads or args.heads % args.kv_heads or (args.hidden // args.heads) % 2:
        ap.error(f"need hidden % heads == 0, heads % kv-heads == 0 and an even head_dim; got hidden {args.hidden}, "
                 f"heads {args.heads}, kv-heads {args.kv_heads}")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()

    config = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, tie_word_embeddings=args.tied,
                         rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=max(args.seq_len, 32),
                         attn_implementation=args.attn, use_cache=False)
    model = Qwen2ForCausalLM(config).float().train()
    params = dict(model.named_parameters())
    no_decay = [p for n, p in params.items() if n.endswith(".bias") or "norm" in n]
    decay = [p for n, p in params.items() if not (n.endswith(".bias") or "norm" in n)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=1e-4), dict(params=no_decay, weight_decay=0.0)],
                            lr=1e-5, betas=(0.9, 0.95), eps=1e-8)
    ids = torch.randint(0, args.vocab, (1, args.seq_len))

    def step():
        opt.zero_grad(set_to_none=False)
        logits = model(ids).logits[0]                                   # (T, V)
        loss = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    n_params = sum(p.numel() for p in params.values())
    print(f"torch config: {n_params} parameters, L {args.layers} H {args.hidden} heads {args.heads}/{args.kv_heads} "
          f"I {args.intermediate} V {args.vocab} T {args.seq_len} tied {int(args.tied)} attn {args.attn} "
          f"threads {torch.get_num_threads()} torch {torch.__version__}", flush=True)
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step()
        print(f"torch step {i + 1}/{args.steps}: loss {loss:.4f}, {time.perf_counter() - start:.2f} s",
              file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    print(f"torch step ms: {1000 * elapsed / args.steps:.2f}")
    print(f"torch tokens/s: {args.seq_len * args.steps / elapsed:.1f}")


if __name__ == "__main__":
    main()
