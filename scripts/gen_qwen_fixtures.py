#!/usr/bin/env python3
"""
gen_qwen_fixtures.py: the Hugging Face oracle for s1.c's Qwen2.5 training.

Writes two tiny random Qwen2 models and, for each, what PyTorch + transformers
compute on a fixed batch: logits, the s1 loss, its gradient, and three AdamW
steps with the s1 schedule and clipping. s1.c's tests compare against these
files; they never run Python.

    /work/venv/bin/python scripts/gen_qwen_fixtures.py [--out tests/fixtures]

Output, per fixture (tests/fixtures/qwen-tiny-tied/, tests/fixtures/qwen-tiny-gqa/):
    config.json, model.safetensors, generation_config.json   save_pretrained, float32
    reference.safetensors                                     the oracle (see tests/fixtures/README.md)

The run is deterministic (fixed seeds, one thread, deterministic algorithms,
float32, eager attention): running it twice gives byte-identical files.

Before writing, the script checks its own numbers against independent
computations and stops if any disagree:
    - a NumPy float64 forward pass written from docs/qwen2.5.md §2 (not HF code)
      reproduces HF's logits;
    - the loss equals a hand-written log-sum-exp cross-entropy in float64;
    - central finite differences of the float64 model match its autograd
      gradient on a few entries of every kind of parameter;
    - the float32 gradient and the 3-step trajectory agree with a float64 rerun
      (the differences are printed: they are the fp32 noise floor that s1.c's
      tolerances should be compared with);
    - gradient clipping really triggers in at least one of the 3 steps.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2ForCausalLM, get_cosine_schedule_with_warmup
from transformers.models.qwen2 import modeling_qwen2

# -----------------------------------------------------------------------------
# The fixtures

# Each sequence is (length, target spans [a, b)): token t is a loss target
# (scored from the logits at t-1) iff a <= t < b for one of its spans. Token 0
# of a sequence is never a target. Sequences with a masked prefix mimic s1's
# "loss only after <|im_start|>assistant\n"; the middle gaps test that the mask
# is read per token, not as a prefix length.
FIXTURES = [
    dict(
        name="qwen-tiny-tied",
        seed=1234,
        # Qwen2.5-0.5B's shape in miniature: tied embeddings, rope_theta 1e6
        # (the real value; with head_dim 16 the first frequencies still rotate
        # by radians per position, so RoPE matters at these lengths).
        config=dict(vocab_size=300, hidden_size=64, intermediate_size=96,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
                    max_position_embeddings=128),
        n_token_ids=300,   # ids are drawn from [0, n_token_ids)
        # s1's own values. Over 3 steps a decay of 1e-4 changes a weight by
        # ~3e-9 (below fp32 resolution), and every step is clipped.
        weight_decay=1e-4, max_grad_norm=1.0,
        sequences=[(7, [(3, 7)]),
                   (13, [(1, 5), (9, 13)]),
                   (20, [(8, 14), (16, 20)]),
                   (5, [(1, 5)])],
    ),
    dict(
        name="qwen-tiny-gqa",
        seed=5678,
        # 7B/32B-like: untied lm_head, GQA 4:1, nothing a power of two, a
        # different rope_theta (so it must be read from config.json), and
        # embedding rows 300..316 that no token id uses (padded vocabulary).
        config=dict(vocab_size=317, hidden_size=96, intermediate_size=136,
                    num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
                    tie_word_embeddings=False, rope_theta=1e4, rms_norm_eps=1e-6,
                    max_position_embeddings=128),
        n_token_ids=300,
        # Values that make the optimiser's branches visible: a decay large
        # enough to move weights by ~1e-4 (so a missing decay, or a decayed
        # norm weight or bias, fails a test), and a clip threshold between the
        # step norms (7.26, 7.26, ~4.75), so steps 0 and 1 are clipped and
        # step 2 is not (min(1, max_norm / norm) takes both branches).
        weight_decay=1.0, max_grad_norm=6.0,
        sequences=[(9, [(4, 9)]),
                   (24, [(1, 6), (11, 20), (22, 24)]),
                   (16, [(6, 16)]),
                   (4, [(2, 3)])],
    ),
]

# Optimiser settings shared by both fixtures: s1's (s1-spec.md §1.1-1.3)
# except the peak lr, which is large enough that 3 steps move fp32 weights by
# far more than rounding. weight_decay and max_grad_norm are per fixture.
PEAK_LR = 1e-3
TOTAL_STEPS = 40                              # schedule length; we run only 3 steps
WARMUP_STEPS = math.ceil(0.05 * TOTAL_STEPS)  # = 2: lrs 0, lr/2, lr (crosses warmup)
N_STEPS = 3
BETAS = (0.9, 0.95)
EPS = 1e-8

# -----------------------------------------------------------------------------
# Model, batch, loss


def make_model(fx):
    config = Qwen2Config(**fx["config"], attn_implementation="eager")
    torch.manual_seed(fx["seed"])
    model = Qwen2ForCausalLM(config).float()
    # Every parameter random, so a test catches a missing bias or norm weight.
    gen = torch.Generator().manual_seed(fx["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.02 * noise)
    return model


def is_no_decay(name):
    """Biases and RMSNorm weights get no weight decay (s1-spec.md §1.3, the default)."""
    return name.endswith(".bias") or "norm" in name


def make_batch(fx):
    gen = torch.Generator().manual_seed(fx["seed"] + 1)
    ids, mask, offsets = [], [], [0]
    for length, spans in fx["sequences"]:
        ids.append(torch.randint(0, fx["n_token_ids"], (length,), generator=gen))
        m = torch.zeros(length, dtype=torch.uint8)
        for a, b in spans:
            assert 1 <= a < b <= length
            m[a:b] = 1
        mask.append(m)
        offsets.append(offsets[-1] + length)
    return (torch.cat(ids).to(torch.int32), torch.cat(mask),
            torch.tensor(offsets, dtype=torch.int64))


def sequences(input_ids, seq_offsets):
    for s in range(len(seq_offsets) - 1):
        yield int(seq_offsets[s]), int(seq_offsets[s + 1])


def forward_logits(model, input_ids, seq_offsets):
    """Each sequence on its own, positions from 0. Returns (T_total, V)."""
    out = []
    for a, b in sequences(input_ids, seq_offsets):
        out.append(model(input_ids[a:b].long()[None]).logits[0])
    return torch.cat(out)


def s1_loss(logits, input_ids, target_mask, seq_offsets):
    """Mean over sequences of each sequence's token-mean cross-entropy (s1-spec.md §3.2)."""
    per_seq = []
    for a, b in sequences(input_ids, seq_offsets):
        t = torch.nonzero(target_mask[a:b]).flatten() + a    # target positions
        assert len(t) > 0 and int(t.min()) > a
        per_seq.append(torch.nn.functional.cross_entropy(logits[t - 1], input_ids[t].long()))
    return torch.stack(per_seq).mean()


def model_loss(model, batch):
    input_ids, target_mask, seq_offsets = batch
    logits = forward_logits(model, input_ids, seq_offsets)
    return s1_loss(logits, input_ids, target_mask, seq_offsets), logits


# -----------------------------------------------------------------------------
# Training: 3 AdamW steps exactly as the HF Trainer would take them


def train(fx, model, batch, n_steps):
    decay = [p for n, p in model.named_parameters() if not is_no_decay(n)]
    no_decay = [p for n, p in model.named_parameters() if is_no_decay(n)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=fx["weight_decay"]),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=PEAK_LR, betas=BETAS, eps=EPS, foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, WARMUP_STEPS, TOTAL_STEPS)
    log = []
    for _ in range(n_steps):
        opt.zero_grad()
        loss, _ = model_loss(model, batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), fx["max_grad_norm"])
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        log.append(dict(lr=lr, grad_norm=float(norm), loss=float(loss.detach())))
    return log


# -----------------------------------------------------------------------------
# Independent checks


def numpy_forward(sd, cfg, ids):
    """Qwen2 forward in float64 NumPy, written from docs/qwen2.5.md §2 (not from HF code)."""
    H, nq, nkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    hd, g, eps = H // nq, nq // nkv, cfg.rms_norm_eps
    theta = cfg.rope_parameters["rope_theta"]
    W = {k: v.double().numpy() for k, v in sd.items()}
    T = len(ids)

    def rmsnorm(x, w):
        return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))

    inv_freq = 1.0 / theta ** (np.arange(0, hd, 2) / hd)          # (hd/2,)
    ang = np.arange(T)[:, None] * inv_freq[None, :]                # (T, hd/2)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):                                                   # (T, n, hd) rotate-half
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    h = W["model.embed_tokens.weight"][ids]
    causal = np.tril(np.ones((T, T), dtype=bool))
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        a = rmsnorm(h, W[p + "input_layernorm.weight"])
        lin = lambda x, n: x @ W[p + n + ".weight"].T + W.get(p + n + ".bias", 0.0)
        q = rope(lin(a, "self_attn.q_proj").reshape(T, nq, hd))
        k = rope(lin(a, "self_attn.k_proj").reshape(T, nkv, hd))
        v = lin(a, "self_attn.v_proj").reshape(T, nkv, hd)
        o = np.empty((T, nq, hd))
        for j in range(nq):
            s = q[:, j] @ k[:, j // g].T / math.sqrt(hd)
            s = np.where(causal, s, -np.inf)
            e = np.exp(s - s.max(-1, keepdims=True))
            o[:, j] = (e / e.sum(-1, keepdims=True)) @ v[:, j // g]
        h = h + lin(o.reshape(T, H), "self_attn.o_proj")
        m = rmsnorm(h, W[p + "post_attention_layernorm.weight"])
        gate, up = lin(m, "mlp.gate_proj"), lin(m, "mlp.up_proj")
        h = h + lin(gate / (1 + np.exp(-gate)) * up, "mlp.down_proj")
    h = rmsnorm(h, W["model.norm.weight"])
    return h @ W.get("lm_head.weight", W["model.embed_tokens.weight"]).T


def manual_loss(logits, input_ids, target_mask, seq_offsets):
    """s1 loss from logits with an explicit log-sum-exp, float64."""
    x = logits.astype(np.float64)
    per_seq = []
    for a, b in sequences(input_ids, seq_offsets):
        nll = []
        for t in range(a + 1, b):
            if target_mask[t]:
                row = x[t - 1]
                mx = row.max()
                nll.append(mx + math.log(np.exp(row - mx).sum()) - row[input_ids[t]])
        per_seq.append(sum(nll) / len(nll))
    return sum(per_seq) / len(per_seq)


@contextlib.contextmanager
def qwen2_in_float64():
    """HF's Qwen2 casts to float32 inside RMSNorm and the attention softmax. In
    the float64 check model those casts would cap the precision (finite
    differences would drown in fp32 rounding), so while this is active both
    compute in their input dtype. RoPE's cos/sin stay as HF computes them
    (float32 angles): they are constants, not functions of the parameters."""
    saved = modeling_qwen2.Qwen2RMSNorm.forward, modeling_qwen2.eager_attention_forward

    def rmsnorm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def attention(module, q, k, v, attention_mask, scaling, dropout=0.0, **kwargs):
        k = modeling_qwen2.repeat_kv(k, module.num_key_value_groups)
        v = modeling_qwen2.repeat_kv(v, module.num_key_value_groups)
        s = q @ k.transpose(2, 3) * scaling
        if attention_mask is not None:
            s = s + attention_mask
        p = torch.softmax(s, dim=-1)
        return (p @ v).transpose(1, 2).contiguous(), p

    modeling_qwen2.Qwen2RMSNorm.forward, modeling_qwen2.eager_attention_forward = rmsnorm, attention
    try:
        yield
    finally:
        modeling_qwen2.Qwen2RMSNorm.forward, modeling_qwen2.eager_attention_forward = saved


def check(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        sys.exit(f"gen_qwen_fixtures: check failed: {what}")


def max_abs(a, b):
    return float((a.detach().double() - b.detach().double()).abs().max())


def float64_check(fx, sd, batch, logits, grads, log, after):
    """The float64 model (call inside qwen2_in_float64): its gradient against
    finite differences, and the float32 results against it."""
    input_ids = batch[0]
    m64 = make_model(fx).double()
    m64.load_state_dict({n: p.double() for n, p in sd.items()})
    loss64, logits64 = model_loss(m64, batch)
    loss64.backward()
    g64 = {n: p.grad.detach().clone() for n, p in m64.named_parameters()}
    d_logits = max_abs(logits, logits64)
    check(d_logits < 1e-4, f"fp32 vs fp64 logits: max |diff| {d_logits:.2e}")
    d_grad = max(max_abs(grads[n], g64[n]) for n in grads)
    gscale = max(float(g.abs().max()) for g in g64.values())
    check(d_grad < 1e-4 * gscale, f"fp32 vs fp64 gradient: max |diff| {d_grad:.2e} (max |g| {gscale:.2e})")

    # Central differences in float64 on a few entries of every parameter kind.
    gen = torch.Generator().manual_seed(fx["seed"] + 2)
    h, worst = 1e-6, 0.0
    params = dict(m64.named_parameters())
    for name, p in params.items():
        if not (name.startswith("model.layers.0.") or ".layers." not in name):
            continue                      # layer 0 and the non-layer tensors
        for _ in range(2):
            i = int(torch.randint(0, p.numel(), (1,), generator=gen))
            if name == "model.embed_tokens.weight":   # a row that a token uses
                tok = int(input_ids[int(torch.randint(0, len(input_ids), (1,), generator=gen))])
                i = tok * p.shape[1] + i % p.shape[1]
            with torch.no_grad():
                flat = p.view(-1)
                orig = float(flat[i])
                flat[i] = orig + h
                lp = float(model_loss(m64, batch)[0])
                flat[i] = orig - h
                lm = float(model_loss(m64, batch)[0])
                flat[i] = orig
            fd, ag = (lp - lm) / (2 * h), float(g64[name].view(-1)[i])
            worst = max(worst, abs(fd - ag) / max(abs(ag), 1e-3))
    check(worst < 1e-5, f"fp64 finite differences vs autograd (h=1e-6, {len(params)} tensors sampled): "
                        f"worst rel. error {worst:.2e} < 1e-5")

    # Trajectory in float64 from the same start.
    m64.load_state_dict({n: p.double() for n, p in sd.items()})
    log64 = train(fx, m64, batch, N_STEPS)
    after64 = {n: p.detach() for n, p in m64.named_parameters()}
    d_after = max(max_abs(after[n], after64[n]) for n in after)
    # Adam divides by sqrt(v) + 1e-8, so an entry whose gradient is ~1e-10
    # (the k biases, a few random entries) turns fp32 rounding of its gradient
    # into update differences of ~lr * 1e-10 / 1e-8. Hence the per-tensor
    # relative L2 of the update as a second, less outlier-driven measure.
    rel_l2 = max(float((after[n].double() - after64[n]).norm() / (after64[n] - sd[n].double()).norm())
                 for n in after)
    d_norm = max(abs(a["grad_norm"] - b["grad_norm"]) for a, b in zip(log, log64))
    check(d_after < 1e-4, f"fp32 vs fp64 weights after {N_STEPS} steps: max |diff| {d_after:.2e} < 1e-4")
    check(rel_l2 < 2e-3, f"fp32 vs fp64 update after {N_STEPS} steps, worst tensor: "
                         f"|d32 - d64| / |d64| = {rel_l2:.2e} < 2e-3")
    check(d_norm < 1e-5, f"fp32 vs fp64 grad norms: max |diff| {d_norm:.2e}")
    moved = min(max_abs(after[n], sd[n]) for n in after)
    check(moved > 1e-4, f"{N_STEPS} steps move every tensor measurably: min over tensors of max |change| {moved:.2e}")

    return {"fp64_diff.logits": d_logits, "fp64_diff.grad": d_grad, "fp64_diff.after3": d_after,
            "fp64_diff.after3_rel_l2": rel_l2}


def self_check(fx, model, batch, logits, loss, grads, log, after):
    """Verify the float32 results against float64 and hand-written computations.
    Returns the fp32-vs-fp64 differences (they go into the metadata)."""
    input_ids, target_mask, seq_offsets = batch
    cfg = model.config
    sd = {n: p.detach().clone() for n, p in model.state_dict().items()}  # initial weights
    np_ids, np_mask, np_off = input_ids.numpy(), target_mask.numpy(), seq_offsets.numpy()

    # 1. NumPy float64 forward from the doc vs HF float32 logits.
    ref = np.concatenate([numpy_forward(sd, cfg, np_ids[a:b])
                          for a, b in sequences(np_ids, np_off)])
    d_np = float(np.abs(ref - logits.double().numpy()).max())
    check(d_np < 1e-4, f"NumPy fp64 forward (docs/qwen2.5.md §2) vs HF fp32 logits: max |diff| {d_np:.2e} < 1e-4")

    # 2. Loss by hand.
    d_loss = abs(manual_loss(logits.numpy(), np_ids, np_mask, np_off) - loss.item())
    check(d_loss < 1e-5, f"hand-written log-sum-exp loss vs torch: |diff| {d_loss:.2e} < 1e-5")

    # 3. The same model and run in float64.
    with qwen2_in_float64():
        diffs = float64_check(fx, sd, batch, logits, grads, log, after)

    # 4. Clipping must be exercised.
    norms = [e["grad_norm"] for e in log]
    shown = ", ".join(f"{n:.4f}" for n in norms)
    check(max(norms) > fx["max_grad_norm"], f"clipping triggers (max_grad_norm {fx['max_grad_norm']}): norms {shown}")
    if fx["max_grad_norm"] != 1.0:
        check(min(norms) < fx["max_grad_norm"], "and at least one step is not clipped")

    return diffs


# -----------------------------------------------------------------------------
# Writing

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8"}


def write_safetensors(path, tensors, metadata):
    """safetensors (docs/qwen2.5.md §4.1) with sorted keys, so that reruns give
    byte-identical files (the library's writer orders __metadata__ randomly)."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        data = tensors[name].contiguous().numpy().tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[tensors[name].dtype],
                        "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    back = load_file(path)                      # the reference reader must agree
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in back)


def write_fixture(fx, out_root):
    print(f"{fx['name']}:")
    model = make_model(fx)
    batch = make_batch(fx)
    input_ids, target_mask, seq_offsets = batch

    # Oracle at the initial weights.
    loss, logits = model_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad()
    initial = {n: p.detach().clone() for n, p in model.state_dict().items()}

    # Save the initial model before training mutates it. Write to a temporary
    # folder, then rename, so a killed run leaves no half-written fixture.
    final = os.path.join(out_root, fx["name"])
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)

    log = train(fx, model, batch, N_STEPS)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    check(abs(log[0]["loss"] - loss.item()) < 1e-6, "step 0 loss equals the reference loss")

    model.load_state_dict(initial)
    diffs = self_check(fx, model, batch, logits.detach(), loss.detach(), grads, log, after)

    tensors = {"input_ids": input_ids, "seq_offsets": seq_offsets, "target_mask": target_mask,
               "logits": logits.detach().contiguous(), "loss": loss.detach().reshape(1)}
    for n, g in grads.items():
        tensors["grad." + n] = g.contiguous()
    for k, e in enumerate(log):
        for key in ("lr", "grad_norm", "loss"):
            tensors[f"step{k}.{key}"] = torch.tensor([e[key]], dtype=torch.float32)
    for n, p in after.items():
        tensors["after3." + n] = p.contiguous()
    meta = {
        "peak_lr": repr(PEAK_LR), "total_steps": str(TOTAL_STEPS), "warmup_steps": str(WARMUP_STEPS),
        "n_steps": str(N_STEPS), "weight_decay": repr(fx["weight_decay"]),
        "betas": f"{BETAS[0]!r},{BETAS[1]!r}", "beta1": repr(BETAS[0]), "beta2": repr(BETAS[1]),
        "eps": repr(EPS), "max_grad_norm": repr(fx["max_grad_norm"]),
        "no_decay": "parameters whose name ends in .bias or contains norm",
        "loss": "mean over sequences of the token-mean cross-entropy over targets",
        "n_token_ids": str(fx["n_token_ids"]),
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
    }
    meta.update({k: f"{v:.3e}" for k, v in diffs.items()})
    write_safetensors(os.path.join(tmp, "reference.safetensors"), tensors, meta)

    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    size = sum(os.path.getsize(os.path.join(final, f)) for f in os.listdir(final))
    print(f"  wrote {final}/ ({size} bytes): loss {loss.item():.6f}, "
          f"T_total {len(input_ids)}, {len(grads)} parameter tensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures", help="folder to write the fixtures into")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    for fx in FIXTURES:
        write_fixture(fx, args.out)


if __name__ == "__main__":
    main()
