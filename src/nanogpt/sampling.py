"""Sampling controls: pure functions from next-token logits to a token, plus their validation.

Each control takes logits of shape (B, V) and returns new logits (never modifying its input);
filtered-out tokens get -inf. Randomness only enters through an explicit `torch.Generator` in
`sample_next`, so a seed gives the same tokens every time. The order follows Hugging Face's:
repetition penalty, then temperature, then top-k, top-p and min-p. Temperature 0 means argmax
(after the repetition penalty); the filters cannot change an argmax, so greedy skips them.

Padded vocabulary rows (ids >= the tokenizer's vocab_size) are removed by the engine before any
of this runs, by slicing the logits to the real vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nanogpt.errors import ConfigError


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token. Defaults sample from the model's distribution unchanged."""

    temperature: float = 1.0  # 0 means greedy (argmax)
    top_k: int | None = None  # keep only the k most likely tokens
    top_p: float | None = None  # keep the smallest set of tokens whose probability reaches p
    min_p: float | None = None  # keep tokens at least min_p times as likely as the most likely one
    repetition_penalty: float = 1.0  # CTRL-style: > 1 discourages tokens already in the sequence

    def problems(self) -> list[str]:
        """Every invalid value, as readable sentences (empty when all is well)."""
        out = []
        if not _is_number(self.temperature) or not self.temperature >= 0 or math.isinf(self.temperature):
            out.append(f"temperature must be a finite number >= 0 (0 means greedy), got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k <= 0):
            out.append(f"top_k must be a positive integer, got {self.top_k!r}")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0 < self.top_p <= 1):
            out.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.min_p is not None and (not _is_number(self.min_p) or not 0 <= self.min_p <= 1):
            out.append(f"min_p must be in [0, 1], got {self.min_p!r}")
        rp = self.repetition_penalty
        if not _is_number(rp) or not rp > 0 or math.isinf(rp):
            out.append(f"repetition_penalty must be a finite number > 0 (1 means off), got {rp!r}")
        return out

    def validate(self) -> "SamplingParams":
        """Raise one ConfigError listing every invalid value; return self when valid."""
        problems = self.problems()
        if problems:
            raise ConfigError("sampling options", problems)
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def apply_repetition_penalty(logits: torch.Tensor, present: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty: for ids already present, divide positive logits and multiply negative ones.

    logits (B, V); present (B, V) bool, True where the id occurs in the sequence so far.
    """
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(present, penalised, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by a temperature > 0: below 1 sharpens the distribution, above 1 flattens it."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 here; temperature 0 is argmax (see sample_next)")
    return logits if temperature == 1.0 else logits / temperature


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties with the k-th are kept too); -inf elsewhere."""
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the most likely tokens until their probability first reaches p.

    A token survives if the probability of all strictly more likely tokens (in sorted order) is
    below p, so the top token always survives and the kept set is the smallest reaching p.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # probability mass ranked above each token
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocab order
    return logits.masked_fill(drop, float("-inf"))


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times the most likely token's."""
    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits.float(), dim=-1)  # (B, V)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values  # (B, 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def process_logits(logits: torch.Tensor, params: SamplingParams,
                   present: torch.Tensor | None = None) -> torch.Tensor:
    """Apply every control in order; the result's softmax is the sampling distribution.

    For greedy params only the repetition penalty applies (the rest cannot move an argmax).
    """
    if params.repetition_penalty != 1.0 and present is not None:
        logits = apply_repetition_penalty(logits, present, params.repetition_penalty)
    if params.greedy:
        return logits
    logits = apply_temperature(logits, params.temperature)
    if params.top_k is not None:
        logits = apply_top_k(logits, params.top_k)
    if params.top_p is not None:
        logits = apply_top_p(logits, params.top_p)
    if params.min_p is not None:
        logits = apply_min_p(logits, params.min_p)
    return logits


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None,
                present: torch.Tensor | None = None) -> torch.Tensor:
    """Pick one token per row from logits (B, V): argmax at temperature 0, else a draw. -> (B,)"""
    logits = process_logits(logits, params, present)
    if params.greedy:
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(logits.float(), dim=-1)  # (B, V), zero where filtered
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
