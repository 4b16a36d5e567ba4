"""Evaluation: cross-entropy loss, perplexity and bits per byte of a model on a split or a text file.

The tokens are cut deterministically into windows of `context` tokens, advancing by `stride`
(default: the context, i.e. non-overlapping windows). Every target token from the second to the
last is scored exactly once; with a stride below the context, a window scores only its last
`stride` targets, so each prediction sees at least context - stride tokens of history.

bits per byte = total nats / (ln 2 * UTF-8 bytes of the scored text), which compares models with
different tokenizers. Logits are restricted to the tokenizer's vocabulary (padded ids dropped).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from tqdm.auto import tqdm

from nanogpt.errors import ConfigError, NanoGPTError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# nanoGPT's README: GPT-2 checkpoints evaluated on OpenWebText (train / val loss, nats per token).
# These need the OpenWebText split, which cannot be prepared offline here; not re-checked by us.
GPT2_OWT_BASELINES = {
    "gpt2": (3.11, 3.12), "gpt2-medium": (2.85, 2.84), "gpt2-large": (2.66, 2.67),
    "gpt2-xl": (2.56, 2.54),
}


@dataclass
class EvalConfig:
    """Options of `nanogpt eval`."""

    model: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")]
    """a training run dir, a checkpoint dir, a GPT-2 name (gpt2 ... gpt2-xl) or a HF GPT-2 dir"""
    data_dir: str | None = None
    """a prepared data dir (nanogpt prepare); evaluates --split of it"""
    split: Literal["train", "val"] = "val"
    """which split of --data-dir"""
    text_file: str | None = None
    """a UTF-8 text file instead, tokenized with the model's tokenizer"""
    max_tokens: int | None = None
    """score only the first N target tokens (default: all)"""
    context: int | None = None
    """tokens per window (default: the model's block_size)"""
    stride: int | None = None
    """window advance (default: the context, i.e. non-overlapping windows)"""
    batch_size: int = 8
    """windows per forward pass"""
    device: str = "cpu"
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    progress: bool = True
    """show a tqdm progress bar on stderr"""
    json: bool = False
    """print one JSON object instead of a text report"""

    def problems(self) -> list[str]:
        out = []
        if (self.data_dir is None) == (self.text_file is None):
            out.append("give exactly one of --data-dir (with --split) or --text-file")
        for name in ("max_tokens", "context", "stride"):
            v = getattr(self, name)
            if v is not None and v < 1:
                out.append(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
        if self.batch_size < 1:
            out.append(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.stride is not None and self.context is not None and self.stride > self.context:
            out.append(f"--stride ({self.stride}) must not exceed --context ({self.context})")
        return out


@dataclass
class EvalResult:
    loss: float  # mean nats per scored token
    perplexity: float
    bits_per_byte: float
    tokens: int  # scored target tokens
    bytes: int  # UTF-8 bytes of the scored tokens' text
    context: int
    stride: int
    source: str  # the model
    data: str  # the split or text file
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first) per window: inputs tokens[start:end], targets tokens[start+1:end+1],
    of which targets at absolute index >= first are scored. Covers targets 1..n_tokens-1 once."""
    out, scored, start = [], 0, 0  # scored: the highest target index scored so far
    while scored < n_tokens - 1:
        start = min(start, max(0, n_tokens - 1 - context))  # the last window ends at the last token
        end = min(start + context, n_tokens - 1)
        out.append((start, end, scored + 1))
        scored = end
        start += stride
    return out


@torch.inference_mode()
def evaluate_tokens(model: Any, tokens: np.ndarray, *, vocab_size: int | None = None,
                    context: int | None = None, stride: int | None = None, batch_size: int = 8,
                    progress: bool = False) -> tuple[float, int]:
    """Total nats and number of scored targets of `model` on a 1-D token array."""
    context = context or model.config.block_size
    stride = stride or context
    vocab = min(vocab_size or model.config.vocab_size, model.config.vocab_size)
    device = next(model.parameters()).device
    wins = windows(len(tokens), context, stride)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in tqdm(range(0, len(wins), batch_size), desc="eval", unit="batch", disable=not progress,
                      leave=False):
            group = wins[i:i + batch_size]
            T = max(end - start for start, end, _ in group)
            x = torch.zeros(len(group), T, dtype=torch.long)
            y = torch.full((len(group), T), -1, dtype=torch.long)  # -1: not scored here
            for b, (start, end, first) in enumerate(group):
                x[b, : end - start] = torch.from_numpy(np.asarray(tokens[start:end], dtype=np.int64))
                tgt = torch.from_numpy(np.asarray(tokens[start + 1:end + 1], dtype=np.int64))
                skip = first - (start + 1)  # targets already scored by an earlier window
                y[b, skip: end - start] = tgt[skip:]
            logits, _ = model(x.to(device), all_logits=True)  # (B, T, V)
            logits = logits[..., :vocab]
            if logits.dtype != torch.float64:
                logits = logits.float()  # the softmax of low-precision logits in fp32
            nats = F.cross_entropy(logits.reshape(-1, vocab), y.to(device).view(-1),
                                   ignore_index=-1, reduction="sum")
            total += float(nats)
            count += int((y >= 0).sum())
    finally:
        model.train(was_training)
    return total, count


def _text_bytes(tokenizer: Any, ids: np.ndarray, chunk: int = 1 << 20) -> int:
    """UTF-8 bytes of the text the ids decode to (in chunks, for large splits)."""
    return sum(len(tokenizer.decode_bytes(ids[i:i + chunk].tolist())) for i in range(0, len(ids), chunk))


def _same_tokenizer(a: Any, b: Any) -> bool:
    return a.name == b.name and a.vocab_size == b.vocab_size and (
        a.name != "char" or a.to_dict().get("chars") == b.to_dict().get("chars"))


def evaluate(cfg: EvalConfig) -> EvalResult:
    """Load cfg.model and evaluate it on cfg's split or text file."""
    from nanogpt.checkpoint import load_model

    problems = cfg.problems()
    if problems:
        raise ConfigError("eval options", problems)
    loaded = load_model(cfg.model, cfg.device)
    model = loaded.model.to(DTYPES[cfg.dtype]).eval()
    block = model.config.block_size
    context = cfg.context or block
    if context > block:
        raise NanoGPTError(f"--context {context} exceeds the model's block_size {block}")
    stride = cfg.stride or context
    if stride > context:
        raise NanoGPTError(f"--stride ({stride}) must not exceed the context ({context})")
    if cfg.data_dir is not None:
        from nanogpt.data import load_tokenizer, read_tokens

        path = Path(cfg.data_dir) / f"{cfg.split}.bin"
        if not path.is_file():
            raise NanoGPTError(f"{path} does not exist; run 'nanogpt prepare ... --out-dir {cfg.data_dir}'")
        tokenizer = load_tokenizer(cfg.data_dir)
        if loaded.tokenizer is not None and not _same_tokenizer(tokenizer, loaded.tokenizer):
            raise NanoGPTError(f"{cfg.data_dir} was prepared with a {tokenizer.name} tokenizer of "
                               f"{tokenizer.vocab_size} tokens, unlike the model's "
                               f"{loaded.tokenizer.name} ({loaded.tokenizer.vocab_size}); "
                               f"prepare the data with the model's tokenizer")
        tokens = read_tokens(path)
        data = str(path)
    else:
        tokenizer = loaded.tokenizer
        if tokenizer is None:
            raise NanoGPTError(f"{loaded.source} has no tokenizer, so a text file cannot be encoded")
        try:
            text = Path(cfg.text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise NanoGPTError(f"cannot read --text-file {cfg.text_file}: {e}") from None
        tokens = np.asarray(tokenizer.encode(text), dtype=np.int64)
        data = cfg.text_file
    if cfg.max_tokens is not None:
        tokens = tokens[: cfg.max_tokens + 1]
    if len(tokens) < 2:
        raise NanoGPTError(f"{data} has {len(tokens)} token(s); at least 2 are needed to score one")
    if int(tokens.max()) >= model.config.vocab_size:
        raise NanoGPTError(f"{data} holds token id {int(tokens.max())}, beyond the model's vocabulary "
                           f"of {model.config.vocab_size}; was it prepared for another model?")
    start = time.perf_counter()
    nats, count = evaluate_tokens(model, tokens, vocab_size=tokenizer.vocab_size, context=context,
                                  stride=stride, batch_size=cfg.batch_size, progress=cfg.progress)
    n_bytes = _text_bytes(tokenizer, np.asarray(tokens[1:]))
    loss = nats / count
    return EvalResult(loss=loss, perplexity=math.exp(min(loss, 700.0)),
                      bits_per_byte=nats / (math.log(2) * n_bytes) if n_bytes else float("nan"),
                      tokens=count, bytes=n_bytes, context=context, stride=stride,
                      source=loaded.source, data=data, seconds=time.perf_counter() - start)
