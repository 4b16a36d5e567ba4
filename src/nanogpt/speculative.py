"""Exact speculative decoding for greedy, batch-1 generation, with n-gram (prompt-lookup) drafts.

A batch-1 decode step reads every weight once to produce one token, so it is bound by memory
traffic. Feeding several tokens at once reads the weights once for all of them. `ngram_draft`
guesses the next tokens for free by copying what followed the most recent earlier occurrence of
the text's last few tokens ("prompt lookup decoding"; vLLM's ngram speculator; HF's
prompt_lookup_num_tokens). `verify_greedy` runs [last token] + draft through the model in one
forward pass with the KV cache, keeps the longest prefix of the draft that equals the model's own
argmaxes plus the one token the model chooses after it, and rolls the cache back to match. The
output is therefore the greedy output token for token (up to floating-point rounding of the
chunked forward, the same caveat as cached vs uncached decoding); only the speed depends on how
often the drafts are right, i.e. on how repetitive the text is.

Scope: greedy (temperature 0) only, with the engine's logit processing (vocabulary mask, and the
repetition penalty applied per draft position). The engine (nanogpt.engine) decides when to use it:
batch 1, a plain GPT forward, and only while the context fits in block_size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nanogpt.kv_cache import KVCache
from nanogpt.sampling import SamplingParams, process_logits

DEFAULT_DRAFT = 8  # draft length when speculation is on automatically


def ngram_draft(history: Sequence[int], *, max_ngram: int = 3, max_draft: int = 8) -> list[int]:
    """Guess up to max_draft tokens that follow history, by copying from history itself.

    For n = max_ngram down to 1: find the most recent earlier occurrence of the last n tokens and
    propose the tokens that followed it. The copy may run into the tokens it is proposing (as in
    LZ77): if the match lies d tokens back, the guess is that the text repeats with period d, so a
    loop like "a b a b" yields a full draft "a b a b ..." rather than only d tokens. Returns []
    when no suffix of length >= 1 occurs earlier.
    """
    L = len(history)
    if max_draft <= 0 or L < 2:
        return []
    rev = list(history)[::-1]  # rev[j] = history[L-1-j]; an occurrence ending at L-1-j starts at rev[j]
    first = rev[0]
    for n in range(min(max_ngram, L - 1), 0, -1):
        suffix = rev[:n]
        j = 0
        while True:
            try:
                j = rev.index(first, j + 1, L - n + 1)  # C-speed scan for the suffix's last token
            except ValueError:
                break
            if rev[j:j + n] == suffix:  # the earlier occurrence ends at L-1-j: d = j tokens back
                seq = list(history)
                for _ in range(max_draft):
                    seq.append(seq[-j])  # overlapping copy: period-j continuation
                return seq[L:]
    return []


@dataclass
class SpecStats:
    """What speculation did during one generation (to judge whether it paid off)."""

    proposed: int = 0  # draft tokens sent to verification
    accepted: int = 0  # of those, how many equalled the model's greedy choice
    verify_steps: int = 0  # forward passes that verified a draft

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def verify_greedy(model: Any, cache: KVCache, last: int, draft: list[int], *, vocab: int,
                  decoder: Any = None, params: SamplingParams = SamplingParams(temperature=0),
                  present: torch.Tensor | None = None) -> torch.Tensor:
    """Check draft against the model's greedy choices; return the tokens to emit, shape (m+1,).

    `last` is the newest token, not yet in the cache (it sits at position cache.pos). The chunk
    [last] + draft (k+1 tokens) is fed in one pass; the logits at chunk position i choose the
    token after draft[:i]. The first m draft tokens that equal those choices are accepted, plus
    the model's own choice after them, so 1..k+1 tokens come back. The cache is cut to hold
    exactly the accepted context (its entries past cache.pos are simply overwritten later).
    present (1, vocab) bool: ids already in the sequence, for the repetition penalty.
    """
    k, start = len(draft), cache.pos
    chunk = torch.tensor([[last, *draft]], dtype=torch.long, device=cache.k.device)  # (1, k+1)
    if decoder is not None:
        logits = decoder.forward(chunk, cache)  # (1, k+1, V)
    else:
        logits, _ = model(chunk, cache=cache, all_logits=True)  # (1, k+1, V)
    logits = logits[0, :, :vocab].float()  # (k+1, vocab): padded ids are never candidates
    rows = None
    if present is not None and params.repetition_penalty != 1.0:
        # Position i has also seen draft[:i]: the penalty must cover those ids there, as it would
        # have in plain decoding once they were emitted.
        rows = present.expand(k + 1, -1).clone()  # (k+1, vocab)
        for i, t in enumerate(draft[:-1]):
            rows[i + 1:, t] = True
    choice = torch.argmax(process_logits(logits, params, rows), dim=-1)  # (k+1,)
    got = choice.tolist()
    m = 0
    while m < k and got[m] == draft[m]:
        m += 1
    cache.truncate(start + m + 1)  # last + the m accepted draft tokens are now cached
    return choice[: m + 1]
