"""`nanogpt viz`: one self-contained, offline HTML page that explains a model by showing it.

The page draws the architecture as clickable boxes (model -> block -> attention -> head), each
with its tensor shapes and parameter count; given weights and a prompt it adds every layer's and
head's attention pattern and the top next-token predictions; given a training run, loss curves.

This module computes the data (exactly; see `attention_maps`) and fills the template in
`nanogpt/assets/` (viz.html, viz.css, viz.js), inlining everything so no network is needed.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
import tyro

from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.model import GPT, PRESETS, GPTConfig
from nanogpt.plot import load_metrics
from nanogpt.summary import param_rows

log = logging.getLogger(__name__)


@dataclass
class VizConfig:
    """Options of `nanogpt viz`."""

    model: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")] = "gpt2"
    """a preset (architecture only), run dir, checkpoint dir, GPT-2 name or HF dir"""
    prompt: str | None = None
    """text to run through the model: shows attention maps and next-token predictions"""
    out: str = "viz.html"
    """the HTML file to write"""
    metrics: str | None = None
    """a run dir or metrics.jsonl for loss curves (default: MODEL's run dir, if it has one)"""
    top_k: int = 5
    """next-token predictions shown per position"""
    max_tokens: int = 64
    """longest prompt (in tokens) to visualise; attention maps grow as T^2"""
    device: str = "cpu"
    """where to run the model"""


@dataclass
class AttentionCapture:
    """What one forward pass reveals. probs[l, h, i, j]: how much token i attends to token j."""

    probs: torch.Tensor  # (L, nh, T, T), rows sum to 1, zero above the diagonal
    qkv: list[torch.Tensor]  # per layer the c_attn output, (B, T, 3C)
    logits: torch.Tensor  # (B, T, V) at every position


# --- the numbers ---------------------------------------------------------------------------------

@torch.no_grad()
def attention_maps(model: GPT, idx: torch.Tensor) -> AttentionCapture:
    """Run idx (1, T) through the model and recompute every head's attention probabilities.

    A forward hook on each attn.c_attn captures its (B, T, 3C) output; from it we rebuild
    softmax(Q K^T / sqrt(hs)) under the causal mask, exactly as the reference attention does,
    so the page shows the attention the model really used (any fused kernel computes the same).
    """
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        block.attn.c_attn.register_forward_hook(
            lambda _m, _inp, out, layer=i: captured.__setitem__(layer, out.detach())
        )
        for i, block in enumerate(model.transformer.h)
    ]
    was_training = model.training
    model.eval()  # dropout off: the pattern of the model, not of one noisy sample
    try:
        logits, _ = model(idx, all_logits=True)  # (B, T, V)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    cfg = model.config
    B, T = idx.shape
    nh, hs, C = cfg.n_head, cfg.head_size, cfg.n_embd
    mask = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()  # (T, T) causal
    layers = []
    for i in range(cfg.n_layer):
        q, k, _ = captured[i].float().split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        att = att.masked_fill(~mask, float("-inf"))
        layers.append(F.softmax(att, dim=-1)[0])  # (nh, T, T): the first sequence
    return AttentionCapture(torch.stack(layers), [captured[i] for i in range(cfg.n_layer)], logits)


def token_strings(tokenizer: Any, ids: list[int]) -> list[str]:
    """How each token reads on its own (a GPT-2 token may be part of a UTF-8 character)."""
    out = []
    for i in ids:
        if hasattr(tokenizer, "decode_bytes"):
            out.append(tokenizer.decode_bytes([i]).decode("utf-8", errors="replace"))
        else:
            out.append(tokenizer.decode([i]))
    return out


def top_predictions(logits: torch.Tensor, tokenizer: Any, vocab_size: int, k: int = 5) -> list[list[dict]]:
    """For each position of logits (T, V): the k likeliest next tokens, padding ids excluded."""
    probs = F.softmax(logits[:, :vocab_size].float(), dim=-1)  # (T, vocab)
    p, ids = probs.topk(min(k, vocab_size), dim=-1)  # (T, k)
    rows = []
    for pr, ix in zip(p.tolist(), ids.tolist()):
        strs = token_strings(tokenizer, ix)
        rows.append([{"id": t, "token": s, "p": round(q, 5)} for t, s, q in zip(ix, strs, pr)])
    return rows


# --- the architecture tree -----------------------------------------------------------------------

def _node(id_: str, label: str, shape: str, params: int, explain: str, **extra: Any) -> dict:
    return {"id": id_, "label": label, "shape": shape, "params": params, "explain": explain,
            "children": [], **extra}


def architecture(config: GPTConfig) -> dict:
    """The boxes of the page, nested: model > block > attention > head, with shapes and counts.

    Shapes use B (batch) and T (tokens) symbolically and fill in C, nh, hs and V from the config.
    Parameter counts come from nanogpt.summary, the same numbers `nanogpt summary` prints.
    """
    C, nh, hs, L, V = config.n_embd, config.n_head, config.head_size, config.n_layer, config.padded_vocab_size
    rows, parts = param_rows(config)
    p = {r.name: r.params for r in parts}
    wte, wpe, ln_f = rows[0].params, rows[1].params, rows[3].params
    btc, bhtt, bhts = f"[B, T, {C}]", f"[B, {nh}, T, T]", f"[B, {nh}, T, {hs}]"
    root = _node("model", "GPT", f"[B, T] -> [B, T, {V}]", sum(r.params for r in rows),
                 f"A GPT is a function from token ids to next-token logits: embed, {L} transformer "
                 f"blocks that read from and write to a residual stream of width C = {C}, a final "
                 "LayerNorm and a linear head. Click any box to look inside.")
    root["children"] = [
        _node("tokens", "input ids", "[B, T]", 0, "Integer token ids from the tokenizer, T <= "
              f"block_size = {config.block_size}."),
        _node("wte", "wte: token embedding", f"[B, T] -> {btc}", wte,
              f"A lookup table of {V} rows, one {C}-dim vector per token. The same matrix is the "
              "output head (weight tying), so it is counted once."),
        _node("wpe", "wpe: position embedding", f"[T] -> [T, {C}]", wpe,
              f"A learned vector for each of the {config.block_size} positions; attention itself "
              "is blind to order, so position must be added in."),
        _node("embed-sum", "x = wte + wpe", btc, 0,
              "Token and position vectors are summed (then dropout) into the residual stream x."),
    ]
    for i in range(L):
        root["children"].append(_block(config, i, p, btc, bhtt, bhts))
    root["children"] += [
        _node("ln_f", "ln_f: final LayerNorm", btc, ln_f,
              "Normalises the residual stream before reading the prediction off it."),
        _node("lm_head", "lm_head (tied to wte)", f"{btc} -> [B, T, {V}]", 0,
              "Scores every vocabulary token by a dot product with its embedding vector: the "
              "tied weight adds +0 parameters."),
        _node("logits", "softmax -> next token", f"[B, T, {V}]", 0,
              "Softmax turns the logits at each position into a probability for the next token."),
    ]
    return root


def _block(config: GPTConfig, i: int, p: dict[str, int], btc: str, bhtt: str, bhts: str) -> dict:
    C, nh, hs = config.n_embd, config.n_head, config.head_size
    b = f"block-{i}"
    blk = _node(b, f"Block {i}", btc, sum(p.values()),
                "Pre-LayerNorm transformer block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)). "
                "Attention is communication (tokens read from earlier tokens), the MLP is "
                "computation (each token thinks on its own). The residual adds mean nothing is "
                "overwritten: each sub-layer writes an update into the stream.", layer=i)
    attn = _node(f"{b}-attn", "causal self-attention", btc, p["attn.c_attn"] + p["attn.c_proj"],
                 f"{nh} heads of size {hs} run in parallel. Each token makes a query, a key and a "
                 "value; a query matched against earlier keys decides how much of each value to "
                 "take. The causal mask stops a token seeing the future.", layer=i)
    heads = [_node(f"{b}-head-{h}", f"head {h}", f"[B, T, T] of {bhtt}", 0,
                   f"Layer {i}, head {h}: row i is how token i spreads its attention over tokens "
                   f"0..i (each row sums to 1). Its query, key and value are {hs}-dim slices of "
                   "the fused projection.", layer=i, head=h, kind="head")
             for h in range(nh)]
    attn["children"] = [
        _node(f"{b}-qkv", "c_attn: x -> q, k, v", f"{btc} -> [B, T, {3 * C}]", p["attn.c_attn"],
              f"One matmul ({C} x {3 * C}) makes queries, keys and values for all heads at once."),
        _node(f"{b}-split", "split into heads", f"3 x {bhts}", 0,
              f"q, k and v are each reshaped from [B, T, {C}] to {nh} heads of {hs} dims."),
        _node(f"{b}-heads", f"{nh} heads", bhts, 0,
              "Each head attends independently and can learn a different pattern: previous "
              "token, same word, punctuation... Click one to see its pattern.", kind="heads",
              layer=i, children=heads),
        _node(f"{b}-scores", "scores q @ k^T / sqrt(hs)", bhtt, 0,
              f"Every query dotted with every key, scaled by 1/sqrt({hs}) so the softmax does "
              "not saturate as head size grows."),
        _node(f"{b}-mask", "causal mask", bhtt, 0,
              "Scores above the diagonal (future tokens) are set to -inf, so they get zero weight."),
        _node(f"{b}-softmax", "softmax", bhtt, 0,
              "Each row becomes a probability distribution over the visible tokens."),
        _node(f"{b}-weighted", "att @ v", bhts, 0,
              "Each token's output is the attention-weighted average of the value vectors."),
        _node(f"{b}-merge", "merge heads", btc, 0,
              f"The {nh} head outputs are concatenated back to [B, T, {C}]."),
        _node(f"{b}-attn-proj", "c_proj", f"{btc} -> {btc}", p["attn.c_proj"],
              f"A {C} x {C} projection mixes the heads and writes into the residual stream."),
    ]
    mlp = _node(f"{b}-mlp", "MLP", btc, p["mlp.c_fc"] + p["mlp.c_proj"],
                "Per-token computation: expand to 4C, GELU, project back. The MLP holds two "
                "thirds of a block's parameters.", layer=i)
    gelu = "tanh-approximate GELU" if config.activation == "gelu_tanh" else "exact GELU"
    mlp["children"] = [
        _node(f"{b}-fc", "c_fc", f"{btc} -> [B, T, {4 * C}]", p["mlp.c_fc"], f"Expand {C} -> {4 * C}."),
        _node(f"{b}-gelu", "GELU", f"[B, T, {4 * C}]", 0,
              f"The {gelu}: a smooth ReLU, x * Phi(x). The only elementwise nonlinearity."),
        _node(f"{b}-mlp-proj", "c_proj", f"[B, T, {4 * C}] -> {btc}", p["mlp.c_proj"],
              f"Project {4 * C} -> {C} back into the residual stream."),
    ]
    blk["children"] = [
        _node(f"{b}-ln_1", "ln_1: LayerNorm", btc, p["ln_1"],
              "Normalise each token's vector (mean 0, variance 1, then a learned gain"
              + (" and bias" if config.bias else "") + ") before attention."),
        attn,
        _node(f"{b}-res1", "x = x + attn(...)", btc, 0,
              "Residual add: attention's output is added to the stream, not substituted for it."),
        _node(f"{b}-ln_2", "ln_2: LayerNorm", btc, p["ln_2"], "Normalise again before the MLP."),
        mlp,
        _node(f"{b}-res2", "x = x + mlp(...)", btc, 0,
              "Residual add: the MLP's update joins the stream that flows to the next block."),
    ]
    return blk


# --- the page ------------------------------------------------------------------------------------

def page_data(config: GPTConfig, *, source: str, model: GPT | None = None, tokenizer: Any = None,
              prompt: str | None = None, metrics_dir: str | None = None, top_k: int = 5,
              max_tokens: int = 64) -> dict:
    """Everything the page shows, as JSON-able data. Validates the prompt up front."""
    rows, parts = param_rows(config)
    data: dict[str, Any] = {
        "source": source, "config": config.to_dict(), "arch": architecture(config),
        "params": {"total": sum(r.params for r in rows), "per_block": sum(r.params for r in parts),
                   "non_embedding": sum(r.params for r in rows) - rows[0].params - rows[1].params},
        "attention": None, "metrics": None,
    }
    if prompt is not None:
        problems = []
        if model is None:
            problems.append("--prompt needs weights: give a checkpoint, run dir or GPT-2 name")
        if tokenizer is None:
            problems.append(f"{source} has no tokenizer, so the prompt cannot be encoded")
        if not prompt:
            problems.append("--prompt is empty; give some text")
        if not 1 <= top_k <= 50:
            problems.append(f"top_k must be between 1 and 50, got {top_k}")
        if problems:
            raise ConfigError("viz options", problems)
        ids = tokenizer.encode(prompt)
        limit = min(max_tokens, config.block_size)
        if not 0 < len(ids) <= limit:
            raise NanoGPTError(
                f"the prompt is {len(ids)} tokens; viz shows at most {limit} (block_size "
                f"{config.block_size}, --max-tokens {max_tokens}): shorten it or raise --max-tokens"
            )
        device = next(model.parameters()).device
        cap = attention_maps(model, torch.tensor([ids], dtype=torch.long, device=device))
        T = len(ids)
        probs = cap.probs.cpu().tolist()  # (L, nh, T, T); keep each row's visible part only
        data["attention"] = {
            "ids": ids,
            "tokens": token_strings(tokenizer, ids),
            "probs": [[[[round(x, 4) for x in row[: t + 1]] for t, row in enumerate(head)]
                       for head in layer] for layer in probs],
            "predictions": top_predictions(cap.logits[0], tokenizer, config.vocab_size, top_k),
            "T": T,
        }
    if metrics_dir is not None:
        m = load_metrics(metrics_dir)
        step = max(1, len(m.train) // 2000)  # keep the page small: at most ~2000 train points
        data["metrics"] = {
            "path": m.path,
            "train": [[r["step"], r["tokens"], r["loss"]] for r in m.train[::step]],
            "eval": [[r["step"], r["tokens"], r.get("train_loss"), r["val_loss"]] for r in m.eval],
        }
    return data


def _asset(name: str) -> str:
    return resources.files("nanogpt").joinpath("assets", name).read_text(encoding="utf-8")


def render_html(data: dict) -> str:
    """Fill the template: CSS, JS and data inline, so the file works offline, from anywhere."""
    # JSON inside <script>: escape <, > and & so no string (a prompt with "</script>") can end it.
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    blob = blob.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    fills = {"TITLE": html.escape(f"nanogpt viz: {data['source']}"), "CSS": _asset("viz.css"),
             "JS": _asset("viz.js"), "DATA": blob}
    # One pass, so text inserted for one placeholder is never scanned for another.
    return re.sub(r"@@(TITLE|CSS|JS|DATA)@@", lambda m: fills[m.group(1)], _asset("viz.html"))


def find_run_dir(spec: str) -> Path | None:
    """The run directory with metrics.jsonl for a spec that is a run dir or a checkpoint in one."""
    p = Path(spec)
    for d in (p, p.parent):
        if p.is_dir() and (d / "metrics.jsonl").is_file():
            return d
    return None


def build_viz(cfg: VizConfig) -> Path:
    """Resolve cfg.model, compute the page's data and write cfg.out atomically; return its path."""
    problems = []
    if not 1 <= cfg.max_tokens <= 512:
        problems.append(f"max_tokens must be between 1 and 512, got {cfg.max_tokens}")
    if not 1 <= cfg.top_k <= 50:
        problems.append(f"top_k must be between 1 and 50, got {cfg.top_k}")
    out = Path(cfg.out)
    if out.suffix.lower() not in (".html", ".htm"):
        problems.append(f"--out must end in .html, got {cfg.out}")
    if not out.parent.is_dir():
        problems.append(f"the directory of --out does not exist: {out.parent}")
    if cfg.metrics is not None and not Path(cfg.metrics).exists():
        problems.append(f"--metrics {cfg.metrics} does not exist")
    if problems:
        raise ConfigError("viz options", problems)

    model = tokenizer = None
    if cfg.model in PRESETS and (cfg.prompt is None or not cfg.model.startswith("gpt2")):
        if cfg.prompt is not None:
            raise NanoGPTError(f"preset {cfg.model!r} has no trained weights; pass a checkpoint or "
                               "run dir to see attention for --prompt")
        config, source = GPTConfig.from_preset(cfg.model), f"preset {cfg.model}"
    else:
        if cfg.model not in PRESETS:
            from nanogpt.summary import resolve_config  # the same spec checks as summary

            config, source, loaded = resolve_config(cfg.model, device=cfg.device)
        else:  # a GPT-2 name with a prompt: the real weights
            from nanogpt.checkpoint import load_model

            loaded = load_model(cfg.model, cfg.device)
            config, source = loaded.model.config, loaded.source
        model, tokenizer = loaded.model, loaded.tokenizer

    metrics_dir = cfg.metrics
    if metrics_dir is None and (run := find_run_dir(cfg.model)) is not None:
        metrics_dir = str(run)
    data = page_data(config, source=source, model=model, tokenizer=tokenizer, prompt=cfg.prompt,
                     metrics_dir=metrics_dir, top_k=cfg.top_k, max_tokens=cfg.max_tokens)
    text = render_html(data)
    fd, tmp = tempfile.mkstemp(prefix=".viz-", suffix=".html", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a page is meant to be shared
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    log.info("wrote %s (%d KiB)", out, len(text.encode()) // 1024)
    return out
