"""The GPT model: configuration, modules and the GPT-2 weight mapping. Nothing else.

The architecture follows the walkthrough in the seed (nanoGPT's model): learned token and position
embeddings, N pre-LayerNorm blocks of causal self-attention (fused QKV) and a 4x GELU MLP with
residuals, a final LayerNorm and a linear head tied to the token embedding.

Attention runs through `F.scaled_dot_product_attention` (flash kernels on GPU). The seed's explicit
masked-softmax attention is kept as `attn_impl="reference"`: the oracle the fast path is tested
against. Optimizers, file I/O, downloads and FLOP accounting live in other modules.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanogpt.errors import ConfigError, NanoGPTError, suggest

Activation = Literal["gelu", "gelu_tanh"]
AttnImpl = Literal["sdpa", "reference"]


@dataclass
class GPTConfig:
    """Hyperparameters of a GPT. Defaults are GPT-2 small with the seed's exact GELU."""

    block_size: int = 1024  # longest context, the number of learned positions
    vocab_size: int = 50257  # tokens the tokenizer can produce
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as GPT-2 has
    activation: Activation = "gelu"  # "gelu": exact erf form (the seed); "gelu_tanh": GPT-2's original
    vocab_multiple: int = 1  # pad the embedding rows to a multiple of this (64 speeds up training)

    def __post_init__(self) -> None:
        problems = []
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "vocab_multiple"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.n_embd, int) and isinstance(self.n_head, int) and self.n_head > 0:
            if self.n_embd % self.n_head != 0:
                problems.append(
                    f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
                )
        if isinstance(self.dropout, int) and not isinstance(self.dropout, bool):
            self.dropout = float(self.dropout)
        if not isinstance(self.dropout, float) or not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, bool):
            problems.append(f"bias must be true or false, got {self.bias!r}")
        if self.activation not in ("gelu", "gelu_tanh"):
            problems.append(f"activation must be 'gelu' or 'gelu_tanh', got {self.activation!r}")
        if problems:
            raise ConfigError("GPTConfig", problems)

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and the head: vocab_size rounded up to vocab_multiple."""
        m = self.vocab_multiple
        return (self.vocab_size + m - 1) // m * m

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        """Build from a dict, rejecting unknown keys with a suggestion."""
        names = {f.name for f in fields(cls)}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ConfigError(
                "GPTConfig", [f"unknown key {k!r}{suggest(k, names)}" for k in unknown]
            )
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GPTConfig":
        """A named preset (see PRESETS), with any field overridden."""
        if name not in PRESETS:
            raise NanoGPTError(
                f"unknown model preset {name!r}{suggest(name, PRESETS)}; "
                f"choose one of: {', '.join(PRESETS)}"
            )
        return cls.from_dict({**PRESETS[name], **overrides})


def _gpt2(n_layer: int, n_head: int, n_embd: int) -> dict[str, Any]:
    # OpenAI's released GPT-2 models use the tanh approximation of GELU.
    return dict(
        block_size=1024, vocab_size=50257, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        bias=True, activation="gelu_tanh",
    )


PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": _gpt2(12, 12, 768),  # 124M
    "gpt2-medium": _gpt2(24, 16, 1024),  # 350M
    "gpt2-large": _gpt2(36, 20, 1280),  # 774M
    "gpt2-xl": _gpt2(48, 25, 1600),  # 1558M
    # nanoGPT's character-level Shakespeare models; vocab_size is replaced by the data's.
    "shakespeare-char": dict(
        block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False
    ),
    "shakespeare-char-cpu": dict(
        block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False
    ),
}


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused projection for Q, K and V."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx  # which slot of a KV cache this layer writes
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: Any = None, attn_impl: AttnImpl = "sdpa") -> torch.Tensor:
        B, T, C = x.size()
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            # The cache appends this step's keys and values and returns all of them so far.
            k, v = cache.update(self.layer_idx, k, v)  # each (B, nh, L, hs), L = past + T
        L = k.size(2)
        if attn_impl == "reference":
            y = self._reference_attention(q, k, v)
        else:
            y = self._sdpa(q, k, v, T, L)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _sdpa(self, q, k, v, T: int, L: int) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        if T == L:  # no past: the plain causal triangle
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        if T == 1:  # one new token attends to every cached position
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        # A chunk after a non-empty past: query i sits at absolute position L - T + i.
        mask = torch.ones(T, L, dtype=torch.bool, device=q.device).tril(diagonal=L - T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)

    def _reference_attention(self, q, k, v) -> torch.Tensor:
        """The seed's attention: softmax(QK^T / sqrt(d)) V with an explicit causal mask."""
        T, L = q.size(2), k.size(2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, L)
        mask = torch.ones(T, L, dtype=torch.bool, device=q.device).tril(diagonal=L - T)
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        return att @ v  # (B, nh, T, hs)


class MLP(nn.Module):
    """Expand 4x, GELU, project back: the per-token computation."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh" if config.activation == "gelu_tanh" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, 4C) inside


class Block(nn.Module):
    """One pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: Any = None, attn_impl: AttnImpl = "sdpa") -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, attn_impl)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """A GPT-2-style language model. `forward(idx, targets)` returns `(logits, loss)`."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        # Weight tying: the head reads logits off the same vectors that embed the tokens.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2 scales the projections that write into the residual stream by 1/sqrt(2 n_layer),
        # since each block adds two of them and the stream's variance grows with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        all_logits: bool = False,
        cache: Any = None,
        attn_impl: AttnImpl = "sdpa",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> (logits, loss).

        With targets, logits cover every position, shape (B, T, V), and loss is the mean
        cross-entropy (targets of -1 are ignored). Without, only the last position's logits are
        computed, (B, 1, V), unless all_logits=True. With a KV cache (see nanogpt.kv_cache), the
        tokens continue the cached sequence at position cache.pos.
        """
        B, T = idx.size()
        start = 0 if cache is None else cache.pos
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of length {start + T} exceeds block_size {self.config.block_size}"
            )
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache, attn_impl)
        if cache is not None:
            cache.advance(T)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)  # (B, T, V)
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1
            )
            return logits, loss
        logits = self.lm_head(x if all_logits else x[:, [-1], :])  # (B, T or 1, V)
        return logits, None

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once each (the tied head is wte). non_embedding drops wte and wpe."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
        return n

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context to block_size positions (e.g. a 1024-token GPT-2 to 256)."""
        if not 0 < block_size <= self.config.block_size:
            raise NanoGPTError(
                f"cannot crop block_size to {block_size}: it must be between 1 and the "
                f"model's {self.config.block_size}"
            )
        self.config = replace(self.config, block_size=block_size)
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size].detach().clone())

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **sampling: Any) -> torch.Tensor:
        """Continue idx (B, T) by max_new_tokens with the KV-cached engine; see nanogpt.engine."""
        from nanogpt.engine import generate  # the engine sits beside the model

        return generate(self, idx, max_new_tokens, **sampling)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **overrides: Any) -> "GPT":
        """OpenAI's GPT-2 (gpt2 ... gpt2-xl, from the Hugging Face hub) or a local HF GPT-2 dir."""
        from nanogpt.hf import load_pretrained

        return load_pretrained(name_or_path, **overrides)

    def save_hf(self, directory: str) -> None:
        """Write a directory that transformers.GPT2LMHeadModel.from_pretrained loads."""
        from nanogpt.hf import save_hf

        save_hf(self, directory)


# --- GPT-2 weight mapping ---------------------------------------------------------------------
# OpenAI's checkpoints (and transformers' GPT2LMHeadModel) store the four projection matrices as
# Conv1D weights of shape (in, out); nn.Linear keeps (out, in). Everything else maps one-to-one.
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers some transformers versions save beside the weights; they carry no learned values.
_HF_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def config_from_hf(hf: dict[str, Any]) -> GPTConfig:
    """Translate a transformers GPT2Config dict into a GPTConfig, or say why it cannot be."""
    problems = []
    act = hf.get("activation_function", "gelu_new")
    act_map = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
    if act not in act_map:
        problems.append(f"activation_function {act!r} is not supported (use gelu or gelu_new)")
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") not in (None, 4 * n_embd):
        problems.append(f"n_inner {hf['n_inner']} is not 4 * n_embd; nanogpt's MLP expands 4x")
    if abs(hf.get("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12:
        problems.append("layer_norm_epsilon must be 1e-5")
    for key, ok in (
        ("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
        ("reorder_and_upcast_attn", False), ("add_cross_attention", False),
        ("tie_word_embeddings", True),
    ):
        if hf.get(key, ok) != ok:
            problems.append(f"{key}={hf[key]} is not supported by nanogpt's GPT")
    if problems:
        raise ConfigError("GPT-2 config for nanogpt", problems)
    return GPTConfig(
        block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
        vocab_size=hf.get("vocab_size", 50257),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_embd=n_embd,
        dropout=0.0,  # a loaded model is for inference or finetuning; set dropout explicitly
        bias=True,
        activation=act_map[act],  # type: ignore[arg-type]
    )


def config_to_hf(config: GPTConfig) -> dict[str, Any]:
    """A transformers GPT2Config dict for this config. The embedding keeps any vocab padding."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.padded_vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new" if config.activation == "gelu_tanh" else "gelu",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
    }


def state_dict_from_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Map a GPT2LMHeadModel (or bare GPT2Model) state dict onto nanogpt's parameter names."""
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.endswith(_HF_IGNORED_SUFFIXES) or key == "lm_head.weight":
            continue  # causal-mask buffers; the head is tied to wte
        name = key if key.startswith("transformer.") else "transformer." + key
        if name.endswith(_CONV1D_SUFFIXES):
            t = t.t()
        out[name] = t.contiguous()
    out["lm_head.weight"] = out["transformer.wte.weight"]
    if not config.bias:
        raise ConfigError("GPT-2 weights", ["GPT-2 format always has biases; load with bias=True"])
    return out


def state_dict_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """nanogpt's weights under GPT2LMHeadModel's names, Conv1D-transposed, the head omitted.

    A model built with bias=False gets zero biases, which computes exactly the same function.
    """
    sd = {k: v.detach() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    out: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        out[name] = (t.t() if name.endswith(_CONV1D_SUFFIXES) else t).contiguous().clone()
    if not model.config.bias:
        C = model.config.n_embd
        for i in range(model.config.n_layer):
            p = f"transformer.h.{i}."
            for sub, width in (("ln_1", C), ("ln_2", C), ("attn.c_attn", 3 * C),
                               ("attn.c_proj", C), ("mlp.c_fc", 4 * C), ("mlp.c_proj", C)):
                out[p + sub + ".bias"] = torch.zeros(width, dtype=out[p + "ln_1.weight"].dtype)
        out["transformer.ln_f.bias"] = torch.zeros(C, dtype=out["transformer.ln_f.weight"].dtype)
    return out
