#!/usr/bin/env python3
"""CPU self-check of tests/gpu/torch_streaming_baseline.py (the PyTorch StreamingLLM baseline that
tests/gpu/check.sh times on the GPU). Runs on any PyTorch >= 1.13, no GPU needed, ~10 s:

  python3 tests/gpu/torch_baseline_selfcheck.py

It drives the baseline's own build_model / new_cache / decode_step on tiny random models and
compares every decode step's logits with references written here independently (per row, per
token, explicit index bookkeeping, RoPE as a complex rotation):

  A. 1 layer, eviction live: the logits equal a full causal forward over exactly the kept tokens
     [first sinks + last window] at positions 0..n-1. (With one layer the cached K/V of a token
     depend on the token alone, so this is what StreamingLLM's re-indexing must give. With more
     layers they do not: a cached entry's K/V at layer l > 0 were computed in the context the
     token had when it was decoded, which a recompute over the kept set does not reproduce.)
  B. 3 layers from an empty cache: equal to a full causal forward over all tokens while nothing
     was evicted, and to the per-token StreamingLLM reference (kept entries' pre-RoPE keys rotated
     at their rank in the cache, query at n-1) at every step, eviction live.
  C. the benchmark's own path: cache starting full of random K/V, greedy tokens fed back, vs the
     per-token reference seeded with the same K/V.
  D. sensitivity: the same reference without re-indexing (original stream positions) and the
     full-recompute reference at 3 layers must both differ clearly, so A-C are not vacuous.
  E. low precision (bfloat16, and float16 where the CPU can multiply it): close to float64.
  F. the script's command line with tiny shapes and --batches 1,8,32, parsed as check.sh does.

A-D run in float64; exits non-zero on any failure.
"""
import math
import os
import subprocess
import sys

import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_streaming_baseline as tsb  # noqa: E402

F64 = torch.float64
failures = []


def report(name, err, tol, expect_small=True):
    ok = err <= tol if expect_small else err > tol
    rel = "<=" if expect_small else ">"
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max rel err {err:.3e} (want {rel} {tol:g})")
    if not ok:
        failures.append(name)


def rel_err(a, b):
    a, b = a.to(F64), b.to(F64)
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def tiny_model(layers, sinks, window, dtype=F64, seed=1, dim=64, heads=4, hidden=96, vocab=50):
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    m = tsb.build_model(dim=dim, hidden=hidden, n_heads=heads, vocab=vocab, n_layers=layers, sinks=sinks,
                        window=window, device="cpu", dtype=dtype, g=g)
    # sharper attention than the benchmark's 0.02 weights, so positions matter to the logits
    for L in m.layers:
        L.wq.mul_(6.0)
        L.wk.mul_(6.0)
    return m, g


# ---------------------------------------------------------------- independent reference (float64)
def rope_vec(x, pos, theta):
    """x [..., hd] rotated at integer position(s) pos (broadcast against x[..., 0]): the pairs
    (i, i + hd/2) turned by pos * theta^(-2i/hd), i.e. HF Llama's rotate_half convention."""
    hd = x.shape[-1]
    half = hd // 2
    freq = theta ** (-2.0 * torch.arange(half, dtype=F64) / hd)
    ang = torch.as_tensor(pos, dtype=F64).unsqueeze(-1) * freq
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(ang), ang)
    return torch.cat([z.real, z.imag], dim=-1)


def rms(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def weights(m):
    c = lambda t: t.detach().to(F64)  # noqa: E731
    return dict(emb=c(m.emb), head=c(m.head), nf=c(m.nf), layers=[
        {k: c(getattr(L, k)) for k in ("wq", "wk", "wv", "wo", "wg", "wu", "wd", "n1", "n2")} for L in m.layers])


def mlp(W, x, eps):
    h = rms(x, W["n2"], eps)
    a = W["wg"] @ h
    return W["wd"] @ (a / (1 + torch.exp(-a)) * (W["wu"] @ h))


def full_forward(m, tokens):
    """Causal forward over the token list at positions 0..n-1; logits of the last token."""
    P = weights(m)
    H, hd, n = m.n_heads, m.hd, len(tokens)
    x = P["emb"][torch.tensor(tokens)]  # [n, dim]
    pos = torch.arange(n)
    mask = torch.ones(n, n).tril().bool()
    for W in P["layers"]:
        h = rms(x, W["n1"], m.eps)
        q = rope_vec((h @ W["wq"].t()).view(n, H, hd).transpose(0, 1), pos, m.theta)  # [H, n, hd]
        k = rope_vec((h @ W["wk"].t()).view(n, H, hd).transpose(0, 1), pos, m.theta)
        v = (h @ W["wv"].t()).view(n, H, hd).transpose(0, 1)
        s = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        s = s.masked_fill(~mask, float("-inf"))
        o = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(n, H * hd)
        x = x + o @ W["wo"].t()
        x = x + torch.stack([mlp(W, x[i], m.eps) for i in range(n)])
    return P["head"] @ rms(x[-1], P["nf"], m.eps)


class RefStream:
    """StreamingLLM decode for one sequence, written as bookkeeping: every entry ever cached is kept
    in a list (pre-RoPE k, v per layer); a step attends over the entries whose index is among the
    first `sinks` or the last `window` ones, each key rotated at its rank among them, the query at
    the last rank. reindex=False rotates at the original stream index instead (a wrong variant)."""

    def __init__(self, m, init_k=None, init_v=None, reindex=True):
        self.m, self.P, self.reindex = m, weights(m), reindex
        L = len(m.layers)
        self.k = [[] for _ in range(L)]
        self.v = [[] for _ in range(L)]
        if init_k is not None:  # [layer][n, H, hd]
            for li in range(L):
                self.k[li] = [init_k[li][i].to(F64) for i in range(init_k[li].shape[0])]
                self.v[li] = [init_v[li][i].to(F64) for i in range(init_v[li].shape[0])]

    def kept(self, total):
        s, w = self.m.sinks, self.m.window
        return sorted(set(range(min(s, total))) | set(range(max(0, total - w), total)))

    def step(self, tok):
        m, P = self.m, self.P
        H, hd = m.n_heads, m.hd
        x = P["emb"][tok]
        for li, W in enumerate(P["layers"]):
            h = rms(x, W["n1"], m.eps)
            q = (W["wq"] @ h).view(H, hd)
            self.k[li].append((W["wk"] @ h).view(H, hd))
            self.v[li].append((W["wv"] @ h).view(H, hd))
            idx = self.kept(len(self.k[li]))
            pos = list(range(len(idx))) if self.reindex else idx
            o = torch.zeros(H, hd, dtype=F64)
            for hh in range(H):
                qr = rope_vec(q[hh], pos[-1], m.theta)
                sc = torch.stack([qr @ rope_vec(self.k[li][i][hh], p, m.theta) for i, p in zip(idx, pos)])
                pr = torch.softmax(sc / math.sqrt(hd), 0)
                o[hh] = sum(pr[j] * self.v[li][i][hh] for j, i in enumerate(idx))
            x = x + W["wo"] @ o.reshape(H * hd)
            x = x + mlp(W, x, m.eps)
        return P["head"] @ rms(x, P["nf"], m.eps)


def kept_tokens(m, seen):
    n = len(seen)
    return [seen[i] for i in range(n) if i < m.sinks or i >= n - m.window]


# ---------------------------------------------------------------- checks
def check_a():
    m, g = tiny_model(layers=1, sinks=2, window=5)
    B, T = 3, 20
    toks = torch.randint(0, m.vocab, (T, B), generator=g)
    kc, vc = tsb.new_cache(m, B, False)
    worst_full = worst_ref = 0.0
    refs = [RefStream(m) for _ in range(B)]
    for t in range(T):
        out = tsb.decode_step(m, kc, vc, toks[t])
        assert kc[0].shape[2] == min(t + 1, m.cap)
        for b in range(B):
            seen = toks[:t + 1, b].tolist()
            worst_full = max(worst_full, rel_err(out[b], full_forward(m, kept_tokens(m, seen))))
            worst_ref = max(worst_ref, rel_err(out[b], refs[b].step(int(toks[t, b]))))
    report("A 1 layer, sinks 2 + window 5, 20 steps x 3 rows: vs full forward over kept tokens", worst_full, 1e-10)
    report("A 1 layer: vs per-token reference", worst_ref, 1e-10)


def check_b():
    m, g = tiny_model(layers=3, sinks=2, window=5, seed=2)
    B, T = 2, 18
    toks = torch.randint(0, m.vocab, (T, B), generator=g)
    kc, vc = tsb.new_cache(m, B, False)
    refs = [RefStream(m) for _ in range(B)]
    pre = post = full_after = 0.0
    for t in range(T):
        out = tsb.decode_step(m, kc, vc, toks[t])
        for b in range(B):
            seen = toks[:t + 1, b].tolist()
            post = max(post, rel_err(out[b], refs[b].step(int(toks[t, b]))))
            if t + 1 <= m.cap:
                pre = max(pre, rel_err(out[b], full_forward(m, seen)))
            elif t + 1 >= m.cap + 3:  # a few evictions in: context of cached entries has changed
                full_after = max(full_after, rel_err(out[b], full_forward(m, kept_tokens(m, seen))))
    report("B 3 layers, before eviction (7 steps): vs full causal forward", pre, 1e-10)
    report("B 3 layers, 18 steps, eviction from step 8: vs per-token reference", post, 1e-10)
    return full_after


def check_c():
    m, g = tiny_model(layers=3, sinks=4, window=12, seed=3)
    B, T = 2, 24
    kc, vc = tsb.new_cache(m, B, True, g)
    assert kc[0].shape[2] == m.cap
    refs = [RefStream(m, [k[b].transpose(0, 1) for k in kc], [v[b].transpose(0, 1) for v in vc]) for b in range(B)]
    wrong = [RefStream(m, [k[b].transpose(0, 1) for k in kc], [v[b].transpose(0, 1) for v in vc], reindex=False)
             for b in range(B)]
    sink0 = kc[1][:, :, :m.sinks].clone()
    tok = torch.randint(0, m.vocab, (B,), generator=g)
    worst = worst_wrong = 0.0
    for _ in range(T):
        out = tsb.decode_step(m, kc, vc, tok)
        assert kc[0].shape[2] == m.cap and vc[2].shape[2] == m.cap
        for b in range(B):
            worst = max(worst, rel_err(out[b], refs[b].step(int(tok[b]))))
            worst_wrong = max(worst_wrong, rel_err(out[b], wrong[b].step(int(tok[b]))))
        tok = out.float().argmax(-1)  # as the benchmark feeds tokens back
    assert torch.equal(kc[1][:, :, :m.sinks], sink0), "sink entries changed"
    report("C benchmark path (full random cache, greedy), 3 layers, sinks 4 + window 12, 24 steps",
           worst, 1e-10)
    return worst_wrong


def check_d(full_after, wrong_pos):
    report("D sensitivity: no re-indexing (stream positions) differs", wrong_pos, 1e-3, expect_small=False)
    report("D sensitivity: 3-layer full recompute over kept tokens differs after eviction (not the method)",
           full_after, 1e-3, expect_small=False)


def check_e():
    m64, g = tiny_model(layers=2, sinks=4, window=12, seed=4)
    B, T = 3, 20
    toks = torch.randint(0, m64.vocab, (T, B), generator=g)
    for name, dt, tol in (("bfloat16", torch.bfloat16, 0.03), ("float16", torch.float16, 0.02)):
        m = tsb.Model()
        m.__dict__.update(m64.__dict__)
        m.dtype = dt
        m.emb, m.head, m.nf = m64.emb.to(dt), m64.head.to(dt), m64.nf.to(dt)
        m.layers = []
        for L in m64.layers:
            c = tsb.Layer.__new__(tsb.Layer)
            c.__dict__.update({k: t.to(dt) for k, t in L.__dict__.items()})
            m.layers.append(c)
        m.cos_all, m.sin_all = tsb.rope_tables(m.cap, m.hd, m.theta, "cpu", dt)
        try:
            kc, vc = tsb.new_cache(m, B, False)
            k64, v64 = tsb.new_cache(m64, B, False)
            worst = 0.0
            for t in range(T):
                out = tsb.decode_step(m, kc, vc, toks[t])
                ref = tsb.decode_step(m64, k64, v64, toks[t])
                assert out.dtype == dt and kc[0].dtype == dt
                worst = max(worst, rel_err(out, ref))
        except RuntimeError as err:
            if "not implemented" in str(err):
                print(f"skip E {name}: this PyTorch cannot run it on the CPU ({str(err).splitlines()[0]})")
                continue
            raise
        report(f"E {name} decode, 2 layers, 20 steps with eviction: vs float64", worst, tol)


def check_f():
    script = os.path.join(HERE, "torch_streaming_baseline.py")
    cmd = [sys.executable, script, "--device", "cpu", "--dtype", "float32", "--dim", "64", "--heads", "4",
           "--hidden", "96", "--vocab", "50", "--layers", "2", "--sinks", "4", "--window", "12", "--steps", "4",
           "--batches", "1,8,32"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    # the same parsing as check.sh's summary
    d = {}
    for line in r.stdout.splitlines():
        if not line.startswith("BENCH "):
            continue
        parts = line.split()
        kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        d.setdefault(parts[1], []).append(kv)
    t = {int(x["batch"]): float(x["tok_s"]) for x in d.get("torch", []) if "batch" in x and "tok_s" in x}
    ok = r.returncode == 0 and sorted(t) == [1, 8, 32] and all(v > 0 for v in t.values()) and d.get("torch_info")
    print(f"{'ok  ' if ok else 'FAIL'} F command line --batches 1,8,32 (cpu, tiny): exit {r.returncode}, "
          f"parsed tok/s {t}")
    if not ok:
        print(r.stdout + r.stderr)
        failures.append("F")
    with open(os.path.join(HERE, "check.sh")) as f:
        inv = "python3 tests/gpu/torch_streaming_baseline.py --batches 1,8,32" in f.read()
    if not inv:
        print("FAIL F check.sh no longer invokes the script as expected")
        failures.append("F invocation")


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}")
    check_a()
    full_after = check_b()
    wrong_pos = check_c()
    check_d(full_after, wrong_pos)
    check_e()
    check_f()
    print("selfcheck:", "FAIL " + ", ".join(failures) if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
