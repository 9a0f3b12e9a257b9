#!/usr/bin/env python3
"""Independent numpy reference for tinker-local's Hugging Face models.

Reads a model folder (config.json + safetensors, sharded or not, bf16/f16/f32) with its own
safetensors parser and runs the decoder forward in float64, following the transformers
definitions of Llama, Qwen2, Qwen3 and Mistral (RMSNorm, rotate-half RoPE with llama3/linear
scaling, grouped-query attention, SwiGLU, q/k/v bias, q/k norm, tied embeddings).

Usage:
  hf_forward.py OUT.json NAME=DIR [NAME=DIR ...]

Writes, for each model, the logits of the fixed prompt TOKENS: at every position the
logsumexp over the whole vocabulary and the logits of every VOCAB_STRIDE-th token id, and
the logprob of each prompt token after the first.
tinker-local's test `hf_models` compares its forward against this file.
"""

import json
import math
import os
import struct
import sys

import numpy as np

TOKENS = [5, 17, 300, 2, 911, 42, 1000, 7]
VOCAB_STRIDE = 16


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dt == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            raise ValueError(f"{path}: {name} has unsupported dtype {dt}")
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out


def read_weights(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for file in files:
        weights.update(read_safetensors(os.path.join(folder, file)))
    return weights


def inv_freq(cfg, head_dim):
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = cfg.get("rope_theta", params.get("rope_theta", 10000.0))
    freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "linear":
        freq = freq / params["factor"]
    elif kind == "llama3":
        factor = params["factor"]
        low, high = params["low_freq_factor"], params["high_freq_factor"]
        old = params["original_max_position_embeddings"]
        wavelen = 2 * math.pi / freq
        smooth = (old / wavelen - low) / (high - low)
        mid = (1 - smooth) * freq / factor + smooth * freq
        freq = np.where(wavelen < old / high, freq, np.where(wavelen > old / low, freq / factor, mid))
    elif kind != "default":
        raise ValueError(f"rope type {kind}")
    return freq


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def forward(folder, tokens):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    kind = cfg["model_type"]
    w = read_weights(folder)
    h = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    d = cfg.get("head_dim") or h // nh
    eps = cfg["rms_norm_eps"]
    t = len(tokens)
    ang = np.outer(np.arange(t, dtype=np.float64), inv_freq(cfg, d))
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)
    mask = np.triu(np.full((t, t), -np.inf), 1)
    x = w["model.embed_tokens.weight"][tokens]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        lin = lambda v, name: v @ w[p + name + ".weight"].T + w.get(p + name + ".bias", 0.0)
        y = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(y, "self_attn.q_proj").reshape(t, nh, d).transpose(1, 0, 2)
        k = lin(y, "self_attn.k_proj").reshape(t, nkv, d).transpose(1, 0, 2)
        v = lin(y, "self_attn.v_proj").reshape(t, nkv, d).transpose(1, 0, 2)
        if kind == "qwen3":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, nh // nkv, axis=0)
        v = np.repeat(v, nh // nkv, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        att = (s @ v).transpose(1, 0, 2).reshape(t, nh * d)
        x = x + lin(att, "self_attn.o_proj")
        y = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = lin(y, "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(y, "mlp.up_proj"), "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def main():
    out_path, models = sys.argv[1], sys.argv[2:]
    result = {"tokens": TOKENS, "vocab_stride": VOCAB_STRIDE, "models": {}}
    for item in models:
        name, folder = item.split("=", 1)
        logits = forward(folder, TOKENS)
        m = logits.max(-1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1))).tolist()
        picked = logits[:, ::VOCAB_STRIDE]
        prompt_lp = [float(logits[j - 1, TOKENS[j]] - lse[j - 1]) for j in range(1, len(TOKENS))]
        result["models"][name] = {
            "prompt_logprobs": [round(v, 6) for v in prompt_lp],
            "logsumexp": [round(v, 6) for v in lse],
            "logits": [[round(float(v), 6) for v in row] for row in picked],
        }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
