#!/usr/bin/env python3
"""Train a small Llama (RoPE, RMSNorm, SwiGLU, optional GQA, tied embeddings) from scratch on the CPU,
measure its attention sink, and write it as a Hugging Face folder that sinkstream loads.

  python3 tools/train/train.py --data stories.jsonl --out DIR [--steps N] [--minutes M] ...

--data is a JSONL file of texts (tools/train/sample_stories.ts writes one). The first run trains a
BPE tokenizer (--vocab) on it and tokenizes it; the last --holdout texts are held out. Packing: the
texts are joined into one token stream, each followed by EOS, and every training window is BOS at
position 0 followed by ctx-1 tokens of that stream from a random offset (so a window usually starts
mid-story, as when large models are trained on packed documents, and position 0 is always BOS).

Every --eval-every steps the held-out loss and the sink are measured: for each layer and head, the
mean attention weight that queries at positions >= --sink-from put on position 0, over held-out
windows packed the same way. The log (DIR/train_log.jsonl) has one JSON object per evaluation.

The run saves DIR/checkpoint.pt after every evaluation and at the end; rerunning with the same DIR
resumes (the step count, optimizer and data order continue). --minutes stops the run after that
much wall time (and saves), so a long schedule can be run in pieces. At the end (or with
--export-only) DIR/model holds config.json, model.safetensors, tokenizer.json, tokenizer_config.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe as bpe_mod  # noqa: E402

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


# ---------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(ctx: int, head_dim: int, theta: float):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    f = torch.outer(torch.arange(ctx, dtype=torch.float64), inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.nkv, self.hd = c["heads"], c["kv_heads"], c["dim"] // c["heads"]
        self.q_proj = nn.Linear(c["dim"], self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(c["dim"], self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(c["dim"], self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, c["dim"], bias=False)

    def forward(self, x, cos, sin, want_probs=False):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos[:T] + rotate_half(q) * sin[:T]
        k = k * cos[:T] + rotate_half(k) * sin[:T]
        if self.nkv != self.nh:
            k = k.repeat_interleave(self.nh // self.nkv, dim=1)
            v = v.repeat_interleave(self.nh // self.nkv, dim=1)
        # Explicit attention (Debian's torch 1.13 has no fused kernel); the weights are the sink measurement.
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        probs = s.masked_fill(mask, float("-inf")).softmax(-1)
        y = probs @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1)), (probs if want_probs else None)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["dim"], c["eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["dim"], c["eps"])
        self.gate_proj = nn.Linear(c["dim"], c["hidden"], bias=False)
        self.up_proj = nn.Linear(c["dim"], c["hidden"], bias=False)
        self.down_proj = nn.Linear(c["hidden"], c["dim"], bias=False)

    def forward(self, x, cos, sin, want_probs=False):
        a, p = self.self_attn(self.input_layernorm(x), cos, sin, want_probs)
        x = x + a
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)), p


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab"], c["dim"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["dim"], c["eps"])
        cos, sin = rope_tables(c["ctx"], c["dim"] // c["heads"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        std = 0.02
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
        for b in self.layers:  # GPT-2 style scaled init of the residual projections
            nn.init.normal_(b.self_attn.o_proj.weight, 0.0, std / math.sqrt(2 * c["layers"]))
            nn.init.normal_(b.down_proj.weight, 0.0, std / math.sqrt(2 * c["layers"]))

    def forward(self, idx, want_probs=False):
        x = self.embed_tokens(idx)
        probs = []
        for b in self.layers:
            x, p = b(x, self.cos, self.sin, want_probs)
            probs.append(p)
        x = self.norm(x)
        return x @ self.embed_tokens.weight.t(), probs


# ---------------------------------------------------------------- data


def load_texts(path: str) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def pack(tok: bpe_mod.Bpe, texts: list[str]) -> torch.Tensor:
    ids: list[int] = []
    for t in texts:
        ids.extend(tok.encode(t))
        ids.append(2)  # EOS after every text
    return torch.tensor(ids, dtype=torch.int32)


def windows(stream: torch.Tensor, starts: torch.Tensor, ctx: int) -> torch.Tensor:
    """BOS at position 0, then ctx stream tokens from each start (ctx + 1 columns: inputs and targets)."""
    idx = starts[:, None] + torch.arange(ctx)[None, :]
    body = stream[idx].long()
    bos = torch.full((len(starts), 1), 1, dtype=torch.long)
    return torch.cat([bos, body], dim=1)


# ---------------------------------------------------------------- measurement


@torch.no_grad()
def measure(model: Llama, held: torch.Tensor, ctx: int, sink_from: int, n_windows: int, seed: int):
    model.eval()
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(held) - ctx - 1, (n_windows,), generator=g)
    w = windows(held, starts, ctx)
    x, y = w[:, :ctx], w[:, 1 : ctx + 1]
    logits, probs = model(x, want_probs=True)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
    # [layer][head]: mean over windows and queries q >= sink_from of the weight on key 0.
    sink = [p[:, :, sink_from:, 0].mean(dim=(0, 2)).tolist() for p in probs]
    # What a uniform causal head would give, for reference.
    uniform = sum(1.0 / (q + 1) for q in range(sink_from, ctx)) / (ctx - sink_from)
    model.train()
    return loss, sink, uniform


# ---------------------------------------------------------------- export


def save_safetensors(tensors: dict[str, torch.Tensor], path: str) -> None:
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().to(torch.float32)
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def export(model: Llama, tok: bpe_mod.Bpe, out: str) -> None:
    c = model.c
    os.makedirs(out, exist_ok=True)
    sd = {"model.embed_tokens.weight": model.embed_tokens.weight, "model.norm.weight": model.norm.weight}
    for i, b in enumerate(model.layers):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = b.input_layernorm.weight
        sd[p + "post_attention_layernorm.weight"] = b.post_attention_layernorm.weight
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{n}.weight"] = getattr(b.self_attn, n).weight
        for n in ("gate_proj", "up_proj", "down_proj"):
            sd[p + f"mlp.{n}.weight"] = getattr(b, n).weight
    save_safetensors(sd, os.path.join(out, "model.safetensors"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c["dim"],
        "intermediate_size": c["hidden"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"],
        "head_dim": c["dim"] // c["heads"],
        "vocab_size": c["vocab"],
        "max_position_embeddings": c["ctx"],
        "rms_norm_eps": c["eps"],
        "rope_theta": c["rope_theta"],
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "attention_bias": False,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    bpe_mod.save(tok, os.path.join(out, "tokenizer.json"))
    tc = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": c["ctx"],
        "tokenizer_class": "LlamaTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--holdout", type=int, default=300, help="texts at the end of --data held out")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=0, help="0: as many as --heads")
    ap.add_argument("--hidden", type=int, default=0, help="SwiGLU width; 0: 8/3 dim rounded to 16")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000, help="schedule length (cosine to min-lr-frac)")
    ap.add_argument("--minutes", type=float, default=0, help="stop after this much wall time (0: none)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--sink-from", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-only", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    log_path = os.path.join(a.out, "train_log.jsonl")
    ck_path = os.path.join(a.out, "checkpoint.pt")
    tok_path = os.path.join(a.out, "tokenizer.json")
    data_path = os.path.join(a.out, "data.pt")

    if os.path.exists(data_path):
        d = torch.load(data_path)
        tok = bpe_mod.Bpe(d["pieces"], [tuple(m) for m in d["merges"]])
        train_stream, held_stream = d["train"], d["held"]
    else:
        texts = load_texts(a.data)
        train_texts, held_texts = texts[: -a.holdout], texts[-a.holdout :]
        t0 = time.time()
        tok = bpe_mod.train_bpe(train_texts, a.vocab)
        train_stream, held_stream = pack(tok, train_texts), pack(tok, held_texts)
        torch.save({"pieces": tok.pieces, "merges": tok.merges, "train": train_stream, "held": held_stream},
                   data_path)
        chars = sum(len(t) for t in train_texts)
        print(f"tokenizer: {tok.size} tokens, {len(tok.merges)} merges ({time.time() - t0:.1f} s); "
              f"train {len(train_texts)} texts, {len(train_stream)} tokens ({chars / len(train_stream):.2f} "
              f"chars/token); held out {len(held_texts)} texts, {len(held_stream)} tokens", flush=True)
    bpe_mod.save(tok, tok_path)

    c = {"vocab": tok.size, "dim": a.dim, "layers": a.layers, "heads": a.heads,
         "kv_heads": a.kv_heads or a.heads, "ctx": a.ctx, "eps": 1e-5, "rope_theta": 10000.0,
         "hidden": a.hidden or 16 * round(a.dim * 8 / 3 / 16)}
    model = Llama(c)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    step = 0
    if os.path.exists(ck_path):
        ck = torch.load(ck_path)
        if ck["config"] != c:
            sys.exit(f"{ck_path} was trained with {ck['config']}, not {c}: use another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        print(f"resumed at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters, config {c}", flush=True)

    def save_ck():
        torch.save({"config": c, "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "args": vars(a)}, ck_path + ".tmp")
        os.replace(ck_path + ".tmp", ck_path)

    def evaluate(train_loss):
        loss, sink, uniform = measure(model, held_stream, a.ctx, a.sink_from, a.eval_windows, a.seed + 999)
        per_layer = [sum(h) / len(h) for h in sink]
        rec = {"step": step, "tokens": step * a.batch * a.ctx, "train_loss": train_loss, "held_loss": loss,
               "sink_per_layer": per_layer, "sink_per_head": sink, "uniform": uniform,
               "lr": opt.param_groups[0]["lr"], "time": time.time()}
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"step {step} train {train_loss:.4f} held {loss:.4f} sink/layer "
              + " ".join(f"{x:.3f}" for x in per_layer)
              + " max/head " + " ".join(f"{max(h):.2f}" for h in sink), flush=True)

    if a.export_only:
        evaluate(float("nan"))
        export(model, tok, os.path.join(a.out, "model"))
        print(f"exported to {os.path.join(a.out, 'model')}")
        return

    t_start = time.time()
    model.train()
    running, n_running = 0.0, 0
    if step == 0:
        evaluate(float("nan"))
    while step < a.steps:
        lr_now = a.lr * min(1.0, (step + 1) / a.warmup)
        if step >= a.warmup:
            prog = (step - a.warmup) / max(1, a.steps - a.warmup)
            lr_now = a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))
        for gp in opt.param_groups:
            gp["lr"] = lr_now
        g = torch.Generator().manual_seed(a.seed * 1_000_003 + step)
        starts = torch.randint(0, len(train_stream) - a.ctx - 1, (a.batch,), generator=g)
        w = windows(train_stream, starts, a.ctx)
        logits, _ = model(w[:, : a.ctx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        running += loss.item()
        n_running += 1
        if step % a.eval_every == 0 or step == a.steps:
            evaluate(running / n_running)
            running, n_running = 0.0, 0
            save_ck()
            if a.minutes and time.time() - t_start > a.minutes * 60:
                print(f"stopping after {a.minutes} minutes at step {step}", flush=True)
                return
    save_ck()
    export(model, tok, os.path.join(a.out, "model"))
    print(f"done: step {step}; exported to {os.path.join(a.out, 'model')}", flush=True)


if __name__ == "__main__":
    main()
