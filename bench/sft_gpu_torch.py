# bench/sft_gpu_torch.py: the peer of build/cuda/sft train in bench/sft_gpu: HF Qwen2ForCausalLM
# from random weights, fp32 parameters under bf16 autocast with SDPA attention (s1's FSDP
# MixedPrecision computed in bf16 from fp32 weights), fused AdamW, one sequence per
# forward/backward and BATCH of them per optimizer step, clipped at 1.0. Steps after the first
# are timed (CUDA synchronised wall clock). Prints "torch tokens/s: X".
import json, sys, time
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

def main():
    config_path, T, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with open(config_path) as f:
        cfg = Qwen2Config(**{k: v for k, v in json.load(f).items() if k != "torch_dtype"})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=1e-4, fused=True)
    ids = (torch.arange(T, device="cuda") * 7919 + 13) % cfg.vocab_size
    ids = ids.unsqueeze(0)
    times = []
    for step in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batch):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss / batch
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        print(f"torch step {step + 1}/{steps}: {times[-1]:.3f} s", flush=True)
    print(f"torch tokens/s: {batch * T * (steps - 1) / sum(times[1:]):.0f}")

main()
