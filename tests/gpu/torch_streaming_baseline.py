#!/usr/bin/env python3
"""PyTorch eager baseline of the original StreamingLLM method (mit-han-lab/streaming-llm), written
for this benchmark (no download, no transformers): a Llama-2-7B-shaped fp16 model with random
weights generated on the device, decoding a batch with an attention-sink KV cache where

  - keys are cached BEFORE RoPE;
  - when the cache is full, every step evicts by slicing and concatenating [sinks, recent]
    (as StartRecentKVCache does with torch.cat);
  - every step re-rotates ALL cached keys at their cache positions 0..n-1 and the query at n-1,
    then runs eager attention (matmul, fp32 softmax, matmul), as the patched HF Llama does.

The cache starts full (sinks + window entries of random content): this method's per-step cost
does not depend on the stream position (positions are always 0..n-1), so that is the steady
state past 4096 tokens, with one eviction per step. Greedy tokens stay on the device (no host
sync per token), which favours the baseline.

Prints: BENCH torch batch=B tok_s=X step_ms=Y
"""
import argparse
import time

import torch


def rope_tables(n, hd, theta, device):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
    pos = torch.arange(n, device=device, dtype=torch.float32)
    f = torch.outer(pos, inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos().half(), emb.sin().half()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):  # x [B, H, n, hd], cos/sin [n, hd]
    return x * cos + rotate_half(x) * sin


def rmsnorm(x, w, eps):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf.half()) * w


class Layer:
    def __init__(self, dim, hidden, n_heads, hd, device, g):
        s = 0.02

        def r(*shape):
            return (torch.randn(*shape, device=device, dtype=torch.float16, generator=g) * s)

        self.wq, self.wk, self.wv, self.wo = r(n_heads * hd, dim), r(n_heads * hd, dim), r(n_heads * hd, dim), r(
            dim, n_heads * hd)
        self.wg, self.wu, self.wd = r(hidden, dim), r(hidden, dim), r(dim, hidden)
        self.n1 = torch.ones(dim, device=device, dtype=torch.float16)
        self.n2 = torch.ones(dim, device=device, dtype=torch.float16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--window", type=int, default=2044)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--layers", type=int, default=32)
    a = ap.parse_args()
    dev = torch.device("cuda")
    dim, hidden, n_heads, hd, vocab, theta, eps = 4096, 11008, 32, 128, 32000, 10000.0, 1e-5
    g = torch.Generator(device=dev)
    g.manual_seed(0)
    t0 = time.time()
    layers = [Layer(dim, hidden, n_heads, hd, dev, g) for _ in range(a.layers)]
    emb = torch.randn(vocab, dim, device=dev, dtype=torch.float16, generator=g) * 0.16
    head = torch.randn(vocab, dim, device=dev, dtype=torch.float16, generator=g) * 0.02
    nf = torch.ones(dim, device=dev, dtype=torch.float16)
    cap = a.sinks + a.window
    cos_all, sin_all = rope_tables(cap, hd, theta, dev)
    print(f"BENCH torch_info setup_s={time.time() - t0:.1f} torch={torch.__version__}", flush=True)

    for B in [int(x) for x in a.batches.split(",")]:
        # pre-RoPE key cache and value cache per layer, full: [B, H, cap, hd]
        kc = [torch.randn(B, n_heads, cap, hd, device=dev, dtype=torch.float16, generator=g) for _ in layers]
        vc = [torch.randn(B, n_heads, cap, hd, device=dev, dtype=torch.float16, generator=g) for _ in layers]
        tok = torch.randint(0, vocab, (B,), device=dev, generator=g)

        def step(tok):
            x = emb[tok].unsqueeze(1)  # [B, 1, dim]
            for li, L in enumerate(layers):
                h = rmsnorm(x, L.n1, eps)
                q = (h @ L.wq.t()).view(B, 1, n_heads, hd).transpose(1, 2)
                k = (h @ L.wk.t()).view(B, 1, n_heads, hd).transpose(1, 2)
                v = (h @ L.wv.t()).view(B, 1, n_heads, hd).transpose(1, 2)
                # append, then evict for space: keep [0, sinks) and the most recent window
                kk = torch.cat([kc[li], k], dim=2)
                vv = torch.cat([vc[li], v], dim=2)
                if kk.shape[2] > cap:
                    kk = torch.cat([kk[:, :, :a.sinks], kk[:, :, kk.shape[2] - a.window:]], dim=2)
                    vv = torch.cat([vv[:, :, :a.sinks], vv[:, :, vv.shape[2] - a.window:]], dim=2)
                kc[li], vc[li] = kk, vv
                n = kk.shape[2]
                cos, sin = cos_all[:n], sin_all[:n]
                kr = apply_rope(kk, cos, sin)  # every cached key re-rotated, every step
                qr = apply_rope(q, cos[n - 1:n], sin[n - 1:n])
                s = (qr @ kr.transpose(2, 3)) / (hd ** 0.5)
                p = torch.softmax(s.float(), dim=-1).half()
                o = (p @ vv).transpose(1, 2).reshape(B, 1, n_heads * hd)
                x = x + o @ L.wo.t()
                h = rmsnorm(x, L.n2, eps)
                x = x + (torch.nn.functional.silu(h @ L.wg.t()) * (h @ L.wu.t())) @ L.wd.t()
            logits = rmsnorm(x, nf, eps)[:, 0] @ head.t()
            return logits.float().argmax(-1)

        with torch.inference_mode():
            for _ in range(3):
                tok = step(tok)
            torch.cuda.synchronize()
            t = time.time()
            for _ in range(a.steps):
                tok = step(tok)
            torch.cuda.synchronize()
            dt = time.time() - t
        print(f"BENCH torch batch={B} tok_s={B * a.steps / dt:.2f} step_ms={1000 * dt / a.steps:.3f}", flush=True)
        del kc, vc
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
