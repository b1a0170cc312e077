# bench/attention_gpu_torch.py: the peer of build/cuda/bench/attention_gpu (bench/attention_gpu
# runs both): PyTorch's scaled_dot_product_attention, causal, bf16, with GQA, on the same
# shapes, timed with CUDA events (mean of 10 after 2 warm-ups); the backward is the time of
# forward+backward less the forward's. The same FLOP counts as the C++ side.
import sys
import torch
import torch.nn.functional as F

def time_ms(fn):
    for _ in range(2):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / 10

def main():
    args = sys.argv[1:]
    nq, nkv, hd = int(args[0]), int(args[1]), int(args[2])
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    for T in map(int, args[3:]):
        g = torch.Generator(device="cuda").manual_seed(0)
        q = (torch.rand(1, nq, T, hd, device="cuda", generator=g) * 2 - 1).bfloat16().requires_grad_()
        k = (torch.rand(1, nkv, T, hd, device="cuda", generator=g) * 2 - 1).bfloat16().requires_grad_()
        v = (torch.rand(1, nkv, T, hd, device="cuda", generator=g) * 2 - 1).bfloat16().requires_grad_()
        dout = (torch.rand(1, nq, T, hd, device="cuda", generator=g) * 2 - 1).bfloat16()
        fwd_flops = 2.0 * T * T * nq * hd
        attend = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        with torch.no_grad():
            fwd = time_ms(attend)
        both = time_ms(lambda: torch.autograd.grad(attend(), (q, k, v), dout))
        for what, ms, flops in (("forward", fwd, fwd_flops), ("backward", both - fwd, 2.5 * fwd_flops)):
            print(f"torch {what:<22s} T={T:<6d} {ms:9.3f} ms {flops / (ms * 1e-3) / 1e12:8.1f} TFLOP/s")

main()
