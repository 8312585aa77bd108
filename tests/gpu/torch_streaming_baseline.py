#!/usr/bin/env python3
"""PyTorch eager baseline of the original StreamingLLM method (mit-han-lab/streaming-llm), written
for this benchmark (no download, no transformers): a Llama-2-7B-shaped fp16 model with random
weights generated on the device, decoding a batch with an attention-sink KV cache where

  - keys are cached BEFORE RoPE;
  - when the cache is full, every step evicts by slicing and concatenating [sinks, recent]
    (as StartRecentKVCache does with torch.cat);
  - every step re-rotates ALL cached keys at their cache positions 0..n-1 and the query at n-1,
    then runs eager attention (matmul, fp32 softmax, matmul), as the patched HF Llama does.

The cache holds at most sinks + window entries, the new token included (the same capacity as
ours: 4 + 2044 = 2048 keys attended per step). The benchmark cache starts full (sinks + window
entries of random content): this method's per-step cost does not depend on the stream position
(positions are always 0..n-1), so that is the steady state past 4096 tokens, with one eviction
per step. Greedy tokens stay on the device (no host sync per token), which favours the baseline.

Prints: BENCH torch_info setup_s=S torch=V device=D dtype=T
        BENCH torch batch=B tok_s=X step_ms=Y        (one line per batch size, as it finishes)

check.sh runs it with no options but --batches (CUDA, fp16, Llama-2-7B shape). The other options
are for trying it on a CPU with a small shape, e.g.
  python3 torch_streaming_baseline.py --device cpu --dtype float32 --dim 64 --heads 4 \
      --hidden 160 --vocab 100 --layers 2 --sinks 4 --window 12 --batches 1,8,32
(PyTorch before 2.1 has no float16 matmul on the CPU). tests/gpu/torch_baseline_selfcheck.py
imports build_model / new_cache / decode_step and checks them against an independent reference.
"""
import argparse
import time

import torch

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
          "float64": torch.float64}


def wide(dtype):
    """Precision of the norms / softmax / RoPE tables: fp32 for fp16 / bf16 (as HF Llama), else
    the model's own (so a float64 self-check stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def rope_tables(n, hd, theta, device, dtype):
    w = wide(dtype)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, device=device, dtype=w) / hd))
    pos = torch.arange(n, device=device, dtype=w)
    f = torch.outer(pos, inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):  # x [B, H, n, hd], cos/sin [n, hd]
    return x * cos + rotate_half(x) * sin


def rmsnorm(x, w, eps):
    xf = x.to(wide(x.dtype))
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return xf.to(x.dtype) * w


class Layer:
    def __init__(self, dim, hidden, n_heads, hd, device, dtype, g):
        s = 0.02

        def r(*shape):
            return torch.randn(*shape, device=device, dtype=dtype, generator=g) * s

        self.wq, self.wk, self.wv, self.wo = r(n_heads * hd, dim), r(n_heads * hd, dim), r(n_heads * hd, dim), r(
            dim, n_heads * hd)
        self.wg, self.wu, self.wd = r(hidden, dim), r(hidden, dim), r(dim, hidden)
        self.n1 = torch.ones(dim, device=device, dtype=dtype)
        self.n2 = torch.ones(dim, device=device, dtype=dtype)


class Model:
    pass


def build_model(dim=4096, hidden=11008, n_heads=32, vocab=32000, n_layers=32, sinks=4, window=2044,
                theta=10000.0, eps=1e-5, device="cuda", dtype=torch.float16, g=None):
    """Random-weight Llama (MHA, no GQA: as Llama-2-7B). g: a torch.Generator on `device`."""
    m = Model()
    m.dim, m.hidden, m.n_heads, m.hd, m.vocab = dim, hidden, n_heads, dim // n_heads, vocab
    m.theta, m.eps, m.sinks, m.window, m.cap = theta, eps, sinks, window, sinks + window
    m.device, m.dtype = torch.device(device), dtype
    m.layers = [Layer(dim, hidden, n_heads, m.hd, m.device, dtype, g) for _ in range(n_layers)]
    m.emb = torch.randn(vocab, dim, device=m.device, dtype=dtype, generator=g) * 0.16
    m.head = torch.randn(vocab, dim, device=m.device, dtype=dtype, generator=g) * 0.02
    m.nf = torch.ones(dim, device=m.device, dtype=dtype)
    m.cos_all, m.sin_all = rope_tables(m.cap, m.hd, theta, m.device, dtype)
    return m


def new_cache(m, B, full, g=None):
    """Per-layer pre-RoPE key and value caches [B, H, n, hd]: full (n = cap, random content, the
    benchmark's steady state) or empty (n = 0)."""
    n = m.cap if full else 0
    shape = (B, m.n_heads, n, m.hd)
    if full:
        kc = [torch.randn(*shape, device=m.device, dtype=m.dtype, generator=g) for _ in m.layers]
        vc = [torch.randn(*shape, device=m.device, dtype=m.dtype, generator=g) for _ in m.layers]
    else:
        kc = [torch.zeros(*shape, device=m.device, dtype=m.dtype) for _ in m.layers]
        vc = [torch.zeros(*shape, device=m.device, dtype=m.dtype) for _ in m.layers]
    return kc, vc


def decode_step(m, kc, vc, tok):
    """One StreamingLLM decode step for tokens tok [B]; updates kc / vc in place (list items) and
    returns the logits [B, vocab] in the model's dtype."""
    B, H, hd = tok.shape[0], m.n_heads, m.hd
    x = m.emb[tok].unsqueeze(1)  # [B, 1, dim]
    for li, L in enumerate(m.layers):
        h = rmsnorm(x, L.n1, m.eps)
        q = (h @ L.wq.t()).view(B, 1, H, hd).transpose(1, 2)
        k = (h @ L.wk.t()).view(B, 1, H, hd).transpose(1, 2)
        v = (h @ L.wv.t()).view(B, 1, H, hd).transpose(1, 2)
        # append, then evict for space: keep [0, sinks) and the most recent window (new token included)
        kk = torch.cat([kc[li], k], dim=2)
        vv = torch.cat([vc[li], v], dim=2)
        if kk.shape[2] > m.cap:
            kk = torch.cat([kk[:, :, :m.sinks], kk[:, :, kk.shape[2] - m.window:]], dim=2)
            vv = torch.cat([vv[:, :, :m.sinks], vv[:, :, vv.shape[2] - m.window:]], dim=2)
        kc[li], vc[li] = kk, vv
        n = kk.shape[2]
        cos, sin = m.cos_all[:n], m.sin_all[:n]
        kr = apply_rope(kk, cos, sin)  # every cached key re-rotated at its cache position, every step
        qr = apply_rope(q, cos[n - 1:n], sin[n - 1:n])  # the query at the last cache position
        s = (qr @ kr.transpose(2, 3)) / (hd ** 0.5)
        p = torch.softmax(s.to(wide(s.dtype)), dim=-1).to(s.dtype)
        o = (p @ vv).transpose(1, 2).reshape(B, 1, H * hd)
        x = x + o @ L.wo.t()
        h = rmsnorm(x, L.n2, m.eps)
        x = x + (torch.nn.functional.silu(h @ L.wg.t()) * (h @ L.wu.t())) @ L.wd.t()
    return rmsnorm(x, m.nf, m.eps)[:, 0] @ m.head.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--window", type=int, default=2044)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=11008)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    g = torch.Generator(device=dev)
    g.manual_seed(0)
    t0 = time.perf_counter()
    m = build_model(dim=a.dim, hidden=a.hidden, n_heads=a.heads, vocab=a.vocab, n_layers=a.layers,
                    sinks=a.sinks, window=a.window, device=dev, dtype=DTYPES[a.dtype], g=g)
    sync()
    print(f"BENCH torch_info setup_s={time.perf_counter() - t0:.1f} torch={torch.__version__} "
          f"device={dev.type} dtype={a.dtype}", flush=True)

    failed = 0
    for B in [int(x) for x in a.batches.split(",")]:
        kc = vc = tok = None
        try:
            kc, vc = new_cache(m, B, True, g)
            tok = torch.randint(0, m.vocab, (B,), device=dev, generator=g)
            with torch.inference_mode():
                for _ in range(a.warmup):
                    tok = decode_step(m, kc, vc, tok).float().argmax(-1)
                sync()
                t = time.perf_counter()
                for _ in range(a.steps):
                    tok = decode_step(m, kc, vc, tok).float().argmax(-1)
                sync()
                dt = time.perf_counter() - t
            assert kc[0].shape[2] == m.cap and vc[-1].shape[2] == m.cap
            print(f"BENCH torch batch={B} tok_s={B * a.steps / dt:.2f} step_ms={1000 * dt / a.steps:.3f}",
                  flush=True)
        except RuntimeError as err:  # CUDA out of memory among them: report, go on with the next size
            failed = 1
            msg = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
            print(f"BENCH torch_info batch={B} error={'OOM' if 'out of memory' in msg else 'RuntimeError'}",
                  flush=True)
            print(f"torch_streaming_baseline: batch {B}: {msg}", flush=True)
        del kc, vc, tok
        if cuda:
            torch.cuda.empty_cache()
            print(f"BENCH torch_info batch={B} peak_gib={torch.cuda.max_memory_allocated() / 2**30:.1f}",
                  flush=True)
            torch.cuda.reset_peak_memory_stats()
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
