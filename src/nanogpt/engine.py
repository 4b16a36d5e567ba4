"""Generation: a KV-cached engine with streaming and stop conditions, and the seed's uncached oracle.

`stream` prefills the whole prompt in one forward pass, then feeds one token per step through a
preallocated KV cache (nanogpt.kv_cache). `generate` collects a stream into a tensor. The seed's
`generate` is kept as `generate_uncached`: it re-runs the model on the (cropped) context for every
token, and tests check that the cached engine's greedy output equals it token for token.

Contexts longer than block_size: the oracle crops to the last block_size tokens each step, which
re-positions every token (positions are learned and absolute), so no cached key or value stays
valid. To stay exactly equal, once the context is full the engine recomputes that cropped window
every step (uncached speed from there on), sets `Generation.window_slid` and logs a warning.

Rows of a batch stop independently, at end-of-text or at a stop string; a stopped row yields
`pad_id` (eot_id, or -1 without one) until every row has stopped or max_new_tokens is reached.
"""

from __future__ import annotations

import codecs
import logging
import weakref
from collections.abc import Sequence
from typing import Any

import torch

from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.kv_cache import KVCache
from nanogpt.sampling import SamplingParams, sample_next
from nanogpt.speculative import DEFAULT_DRAFT, SpecStats, ngram_draft, verify_greedy

log = logging.getLogger(__name__)


class TextStream:
    """Token ids in, printable text out: whole UTF-8 characters only, stop strings held back.

    BPE tokens can split a character's bytes, so bytes go through an incremental UTF-8 decoder.
    Text that might be the start of a stop string is held until it is known not to be one; when a
    stop string appears, the text before it is released and the stream is `stopped`.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""  # everything decoded so far (cut at a stop string once found)
        self._released = 0  # chars of self.text already handed out
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text that became safe to show."""
        if self.stopped:
            return ""
        self.text += self._decoder.decode(self.tokenizer.decode_bytes([int(token_id)]))
        return self._release(final=False)

    def flush(self) -> str:
        """End of generation: release what was held back (an incomplete character becomes U+FFFD)."""
        if not self.stopped:
            self.text += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        start = self._released
        if not self.stopped:
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
        end = len(self.text)
        if not self.stopped and not final:
            end -= self._held_back()
        self._released = max(start, end)
        return self.text[start:self._released]

    def _held_back(self) -> int:
        """Length of the longest unreleased suffix that is a proper prefix of a stop string."""
        pending = len(self.text) - self._released
        for n in range(min(pending, max((len(s) for s in self.stop), default=1) - 1), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stop):
                return n
        return 0


def _check_prompt(model: Any, idx: torch.Tensor, vocab: int) -> None:
    problems = []
    if idx.dim() != 2:
        problems.append(f"prompt ids must have shape (batch, time), got {tuple(idx.shape)}")
    elif idx.size(1) == 0:
        problems.append("the prompt is empty; give at least one token")
    elif idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        problems.append(f"prompt ids must be integers, got {idx.dtype}")
    elif idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        bad = sorted({int(i) for i in idx.flatten().tolist() if not 0 <= i < vocab})
        problems.append(f"prompt ids {bad[:10]} are outside the vocabulary [0, {vocab})")
    if problems:
        raise NanoGPTError("; ".join(problems))

class FastDecoder:
    """One-token decode steps of a plain GPT, as a flat sequence of torch ops.

    At batch 1 a decode step reads every weight once, so its cost is memory traffic plus Python
    overhead. Measured on a 2-core CPU (see docs/inference.md), `x @ W` with W stored (in, out)
    contiguous runs faster than nn.Linear's `x @ W.T` over an (out, in) weight, so this keeps a
    transposed copy of each matrix (the head included): the price is a second copy of the weights.
    It computes the same function as GPT.forward with a cache (tests compare both to the oracle).
    """

    def __init__(self, model: Any):
        self.model = model
        t = model.transformer
        self.layers = []
        for b in t.h:
            self.layers.append((
                b.ln_1.weight, b.ln_1.bias, b.ln_2.weight, b.ln_2.bias,
                *self._mat(b.attn.c_attn), *self._mat(b.attn.c_proj),
                *self._mat(b.mlp.c_fc), *self._mat(b.mlp.c_proj),
            ))
        self.head_t = model.lm_head.weight.detach().t().contiguous()  # (C, V)
        self.gelu = "tanh" if model.config.activation == "gelu_tanh" else "none"
        self.signature = _weights_signature(model)

    @staticmethod
    def _mat(lin: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
        return lin.weight.detach().t().contiguous(), lin.bias  # (in, out), (out,)

    @staticmethod
    def _linear(x: torch.Tensor, w_t: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return torch.mm(x, w_t) if b is None else torch.addmm(b, x, w_t)

    def step(self, tok: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tok (B,) at position cache.pos -> next-token logits (B, V); appends to the cache."""
        return self.forward(tok[:, None], cache)[:, 0]

    def forward(self, toks: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """toks (B, T) at positions cache.pos.. -> logits (B, T, V); appends all T to the cache."""
        cfg, t, pos = self.model.config, self.model.transformer, cache.pos
        (B, T), C, nh = toks.shape, cfg.n_embd, cfg.n_head
        lin, ln, F = self._linear, torch.nn.functional.layer_norm, torch.nn.functional
        x = (t.wte.weight[toks] + t.wpe.weight[pos:pos + T]).view(B * T, C)  # (B*T, C)
        # Query i sits at absolute position pos + i and sees the cache up to there.
        mask = None if T == 1 else torch.ones(T, pos + T, dtype=torch.bool, device=x.device).tril(pos)
        for i, (w1, b1, w2, b2, wa, ba, wp, bp, wf, bf, wm, bm) in enumerate(self.layers):
            qkv = lin(ln(x, (C,), w1, b1), wa, ba)  # (B*T, 3C)
            q, k, v = qkv.view(B, T, 3, nh, C // nh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, T, hs)
            keys, values = cache.update(i, k, v)  # (B, nh, pos+T, hs)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, nh, T, hs)
            x = lin(y.transpose(1, 2).reshape(B * T, C), wp, bp).add_(x)  # plus the residual
            h = F.gelu(lin(ln(x, (C,), w2, b2), wf, bf), approximate=self.gelu)  # (B*T, 4C)
            x = lin(h, wm, bm).add_(x)  # (B*T, C)
        cache.advance(T)
        return torch.mm(ln(x, (C,), t.ln_f.weight, t.ln_f.bias), self.head_t).view(B, T, -1)


def _weights_signature(model: Any) -> tuple:
    # Storage and in-place version counters change whenever the weights do (optimizer steps too).
    # Tensors made under inference_mode keep no counter; there only a new storage is noticed.
    return tuple((p.data_ptr(), -1 if p.is_inference() else p._version) for p in model.parameters())


_FAST: "weakref.WeakKeyDictionary[Any, FastDecoder]" = weakref.WeakKeyDictionary()


def fast_decoder(model: Any) -> FastDecoder | None:
    """The model's FastDecoder (rebuilt if its weights changed), or None where it does not apply:
    subclasses that override forward, models in training mode (dropout), and non-CPU devices."""
    from nanogpt.model import GPT

    if type(model) is not GPT or model.training or model.lm_head.weight.device.type != "cpu":
        return None  # on GPUs nn.Linear's layout is fine and memory is scarce
    dec = _FAST.get(model)
    if dec is None or dec.signature != _weights_signature(model):
        dec = FastDecoder(model)
        _FAST[model] = dec
    return dec


class Generation:
    """An iterator over generation steps; each step yields the (B,) ids chosen for that step.

    Attributes while/after iterating: `tokens` (per row, the generated ids without eot or padding),
    `finished` (B,) bool, `window_slid` (the context outgrew block_size), `texts` and `deltas`
    (per row: all text so far / text released by the last step; only with a tokenizer).
    """

    def __init__(self, model: Any, idx: torch.Tensor, max_new_tokens: int, *,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 min_p: float | None = None, repetition_penalty: float = 1.0,
                 eot_id: int | None = None, stop: Sequence[str] | str | None = None,
                 tokenizer: Any = None, generator: torch.Generator | None = None, fast: bool = True,
                 speculate: int = DEFAULT_DRAFT):
        self.params = SamplingParams(temperature, top_k, top_p, min_p, repetition_penalty)
        problems = self.params.problems()
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            problems.append(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        if stop and tokenizer is None:
            problems.append("stop strings need a tokenizer to decode the generated text")
        if isinstance(speculate, bool) or not isinstance(speculate, int) or speculate < 0:
            problems.append(f"speculate must be an integer >= 0 (0 turns it off), got {speculate!r}")
        if problems:
            raise ConfigError("generation options", problems)
        self.model = model
        self.fast = fast
        self._decoder: FastDecoder | bool | None = None  # resolved at the first decode step
        self.block_size = model.config.block_size
        # Never emit ids the tokenizer cannot decode (e.g. rows added by vocab padding).
        self.vocab = model.config.vocab_size
        if tokenizer is not None:
            self.vocab = min(self.vocab, tokenizer.vocab_size)
            if eot_id is None:
                eot_id = tokenizer.eot_id
        _check_prompt(model, idx, self.vocab)
        self.eot_id = eot_id
        self.pad_id = eot_id if eot_id is not None else -1
        self.generator = generator
        self.max_new_tokens = max_new_tokens
        device = next(model.parameters()).device
        B, T = idx.shape
        # The whole sequence, preallocated: prompt then generated ids.
        self.ids = torch.empty(B, T + max_new_tokens, dtype=torch.long, device=device)
        self.ids[:, :T] = idx.to(device=device, dtype=torch.long)
        self.n = T  # filled length of self.ids
        self.prompt_len = T
        self.present = None  # (B, vocab) bool: ids seen so far, for the repetition penalty
        if repetition_penalty != 1.0:
            self.present = torch.zeros(B, self.vocab, dtype=torch.bool, device=device)
            self.present.scatter_(1, self.ids[:, :T], True)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)
        self.tokens: list[list[int]] = [[] for _ in range(B)]
        self.streams = [TextStream(tokenizer, stop) for _ in range(B)] if tokenizer is not None else None
        self.deltas: list[str] = [""] * B
        self.cache: KVCache | None = None
        self.window_slid = T > self.block_size
        if self.window_slid:
            self._warn_slide()
        self.steps = 0
        # Exact speculative decoding (nanogpt.speculative): greedy, batch 1 only. It needs every
        # position's logits from forward, so models that override it are left out.
        from nanogpt.model import GPT

        plain = getattr(type(model), "forward", None) is GPT.forward
        self.spec_max = speculate if (B == 1 and self.params.temperature == 0 and plain) else 0
        self.spec_len = self.spec_max  # current draft length: shrinks after misses, regrows
        self.spec_stats = SpecStats()
        self._pending: list[int] = []  # verified tokens not yet handed out

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.streams] if self.streams else []

    def _warn_slide(self) -> None:
        log.warning("context longer than block_size=%d: continuing with a sliding window of the last "
                    "%d tokens (each further token recomputes the window, uncached)",
                    self.block_size, self.block_size)

    def _logits(self) -> torch.Tensor:
        """Next-token logits (B, V) for the sequence self.ids[:, :n]."""
        n, bs = self.n, self.block_size
        if self.cache is None and n <= bs:  # prefill: the whole prompt in one pass
            self.cache = KVCache.for_model(self.model, self.ids.size(0), max_len=bs)
            logits, _ = self.model(self._input(0, n), cache=self.cache)
        elif self.cache is not None and n <= bs:  # decode: one token at position n-1
            dec = self._fast_decoder()
            if dec is not None:
                return dec.step(self._input(n - 1, n)[:, 0], self.cache)[:, : self.vocab]
            logits, _ = self.model(self._input(n - 1, n), cache=self.cache)
        else:  # past block_size: the oracle's cropped window, recomputed (see module docstring)
            if not self.window_slid:
                self.window_slid = True
                self._warn_slide()
            self.cache = None
            logits, _ = self.model(self._input(n - bs, n))
        return logits[:, -1, : self.vocab]  # (B, vocab): padded ids are never candidates

    def _fast_decoder(self) -> FastDecoder | None:
        """The model's FastDecoder when it applies (looked up once per generation), else None."""
        if self._decoder is None:
            self._decoder = (fast_decoder(self.model) if self.fast else None) or False
        return self._decoder or None

    def _speculate(self) -> list[int]:
        """Greedy tokens verified from an n-gram draft, or [] to take a plain step instead.

        Only while the KV cache is live (after prefill, within block_size); the chunk
        [last] + draft must fit in it, and the draft never runs past max_new_tokens.
        """
        n, cache = self.n, self.cache
        if not self.spec_max or cache is None or n > self.block_size or cache.pos != n - 1:
            return []
        room = min(self.spec_len, self.block_size - n, self.max_new_tokens - self.steps - 1)
        history = self.ids[0, :n].tolist()  # a few microseconds beside the verify pass
        draft = ngram_draft(history, max_draft=room) if room > 0 else []
        if not draft:
            return []
        got = verify_greedy(self.model, cache, history[-1], draft, vocab=self.vocab,
                            decoder=self._fast_decoder(), params=self.params,
                            present=self.present).tolist()
        m = len(got) - 1  # draft tokens accepted
        st = self.spec_stats
        st.proposed, st.accepted, st.verify_steps = st.proposed + len(draft), st.accepted + m, st.verify_steps + 1
        # A miss costs a wider forward pass for nothing: draft less after misses, more after hits.
        self.spec_len = min(self.spec_max, 2 * self.spec_len) if m == len(draft) else max(1, m)
        return got

    def _input(self, start: int, end: int) -> torch.Tensor:
        x = self.ids[:, start:end]  # (B, end - start)
        # Stopped rows may hold pad -1; any valid id will do as their (ignored) input.
        return x.clamp(min=0) if self.pad_id < 0 and end > self.prompt_len else x

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> torch.Tensor:
        if self.steps >= self.max_new_tokens or bool(self.finished.all()):
            self._flush()
            raise StopIteration
        was_training = self.model.training
        if was_training:  # no dropout while generating; walking the modules costs, so only if needed
            self.model.eval()
        try:
            with torch.inference_mode():
                if not self._pending:
                    self._pending = self._speculate()
                if self._pending:
                    tok = torch.tensor(self._pending[:1], dtype=torch.long, device=self.ids.device)
                    del self._pending[0]
                else:
                    logits = self._logits()
                    tok = sample_next(logits.float(), self.params, self.generator, self.present)  # (B,)
        finally:
            if was_training:
                self.model.train()
        tok = torch.where(self.finished, torch.full_like(tok, self.pad_id), tok)
        self.ids[:, self.n] = tok
        self.n += 1
        self.steps += 1
        if self.present is not None:
            live = ~self.finished
            self.present[live, tok[live]] = True
        self._bookkeep(tok.tolist())
        return tok

    def _bookkeep(self, toks: list[int]) -> None:
        """Record each live row's token, its text, and whether it has now stopped."""
        done = self.finished.tolist()
        for b, t in enumerate(toks):
            self.deltas[b] = ""
            if done[b]:
                continue
            if self.eot_id is not None and t == self.eot_id:
                self.finished[b] = True
                continue
            self.tokens[b].append(t)
            if self.streams is not None:
                self.deltas[b] = self.streams[b].push(t)
                if self.streams[b].stopped:
                    self.finished[b] = True

    def _flush(self) -> None:
        if self.streams is not None:
            self.deltas = [s.flush() for s in self.streams]

    def result(self) -> torch.Tensor:
        """Prompt plus everything generated so far, (B, T + steps)."""
        return self.ids[:, : self.n]


def stream(model: Any, idx: torch.Tensor, max_new_tokens: int, **kwargs: Any) -> Generation:
    """A step-by-step iterator over generation; see Generation for the options and attributes."""
    return Generation(model, idx, max_new_tokens, **kwargs)


def generate(model: Any, idx: torch.Tensor, max_new_tokens: int, **kwargs: Any) -> torch.Tensor:
    """Continue idx (B, T) by up to max_new_tokens tokens with the KV cache -> (B, T + steps).

    Options: temperature (0 = greedy), top_k, top_p, min_p, repetition_penalty, eot_id, stop
    (strings; needs tokenizer), tokenizer (its vocab_size bounds the ids; its eot_id is the default),
    generator (a torch.Generator: the only source of randomness). Stops early once every row has
    stopped; rows that stopped earlier are padded with eot_id (or -1 without one).
    """
    gen = Generation(model, idx, max_new_tokens, **kwargs)
    for _ in gen:
        pass
    return gen.result()


@torch.inference_mode()
def generate_uncached(model: Any, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                      top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
                      repetition_penalty: float = 1.0, eot_id: int | None = None,
                      vocab_size: int | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The seed's generate, kept as the test oracle: the whole cropped context every step.

    Same sampling and end-of-text padding as `generate` (no stop strings, no streaming).
    """
    params = SamplingParams(temperature, top_k, top_p, min_p, repetition_penalty).validate()
    vocab = min(model.config.vocab_size, vocab_size or model.config.vocab_size)
    _check_prompt(model, idx, vocab)
    bs = model.config.block_size
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if bool(finished.all()):
            break
        idx_cond = idx if idx.size(1) <= bs else idx[:, -bs:]  # crop to the last block_size tokens
        logits, _ = model(idx_cond)
        logits = logits[:, -1, :vocab].float()  # (B, vocab)
        present = None
        if repetition_penalty != 1.0:
            present = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, idx, True)
        tok = sample_next(logits, params, generator, present)
        if eot_id is not None:
            tok = torch.where(finished, torch.full_like(tok, eot_id), tok)
            finished |= tok == eot_id
        idx = torch.cat((idx, tok[:, None]), dim=1)
    return idx
