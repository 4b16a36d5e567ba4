"""Exact speculative (n-gram draft) greedy decoding: drafts, verification, and engine output."""

from __future__ import annotations

import pytest
import torch

from nanogpt.engine import Generation, generate, generate_uncached
from nanogpt.errors import ConfigError
from nanogpt.kv_cache import KVCache
from nanogpt.model import GPT, GPTConfig
from nanogpt.speculative import ngram_draft


def tiny(block_size=48, vocab_size=16, scale=20.0) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=16,
                    dropout=0.0)
    model = GPT(cfg).double().eval()  # float64: chunked and one-by-one argmaxes cannot tie-break apart
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def test_ngram_draft_copies_what_followed_the_latest_match():
    assert ngram_draft([1, 2, 3, 9, 9, 1, 2], max_draft=3) == [3, 9, 9]
    # The most recent occurrence wins, and the longest suffix is tried first.
    assert ngram_draft([5, 1, 7, 0, 1, 8, 5, 1], max_draft=2) == [7, 0]
    assert ngram_draft([4, 1, 8, 0, 1], max_draft=2) == [8, 0]


def test_ngram_draft_extends_a_loop_past_the_history():
    assert ngram_draft([7, 1, 2, 1, 2], max_draft=5) == [1, 2, 1, 2, 1]
    assert ngram_draft([3, 3], max_draft=4) == [3, 3, 3, 3]


def test_ngram_draft_without_a_match_or_room_is_empty():
    assert ngram_draft([1, 2, 3, 4]) == []
    assert ngram_draft([1]) == []
    assert ngram_draft([1, 2, 1], max_draft=0) == []


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_speculative_greedy_equals_the_uncached_oracle(fast, penalty):
    model = tiny(block_size=48)
    # A repetitive prompt makes drafts likely; 60 new tokens run past block_size.
    idx = torch.tensor([[1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]])
    want = generate_uncached(model, idx, 60, temperature=0.0, repetition_penalty=penalty)
    gen = Generation(model, idx, 60, temperature=0.0, repetition_penalty=penalty, fast=fast,
                     speculate=6)
    for _ in gen:
        pass
    assert torch.equal(gen.result(), want)
    assert gen.spec_stats.verify_steps > 0 and gen.spec_stats.accepted > 0  # speculation ran
    assert gen.spec_stats.accepted < gen.spec_stats.proposed or penalty == 1.0  # misses are handled


def test_speculation_off_gives_the_same_tokens():
    model = tiny()
    idx = torch.tensor([[3, 5, 3, 5, 3]])
    on = Generation(model, idx, 30, temperature=0.0, speculate=8)
    off = Generation(model, idx, 30, temperature=0.0, speculate=0)
    assert [int(t) for t in on] == [int(t) for t in off]
    assert off.spec_stats.proposed == 0


def test_speculation_respects_max_new_tokens_and_eot():
    model = tiny()
    idx = torch.tensor([[2, 2, 2, 2]])
    for n in (1, 2, 5):
        out = generate(model, idx, n, temperature=0.0, speculate=8)
        assert out.shape == (1, 4 + n)
    # Whatever greedy says first becomes end-of-text: generation must stop right there.
    first = int(generate_uncached(model, idx, 1, temperature=0.0)[0, -1])
    gen = Generation(model, idx, 20, temperature=0.0, eot_id=first, speculate=8)
    assert [int(t) for t in gen] == [first] and gen.tokens == [[]]


def test_sampling_and_batches_never_speculate():
    model = tiny()
    g = torch.Generator().manual_seed(0)
    sampled = Generation(model, torch.tensor([[1, 2, 1, 2]]), 10, temperature=0.8, generator=g)
    batch = Generation(model, torch.tensor([[1, 2, 1, 2], [1, 2, 1, 2]]), 10, temperature=0.0)
    for gen in (sampled, batch):
        for _ in gen:
            pass
        assert gen.spec_stats.proposed == 0


def test_bad_speculate_value_is_a_config_error():
    with pytest.raises(ConfigError, match="speculate"):
        Generation(tiny(), torch.tensor([[1]]), 3, temperature=0.0, speculate=-1)


def test_cache_truncate_checks_bounds():
    cache = KVCache.for_model(tiny(), 1, max_len=8)
    cache.advance(5)
    cache.truncate(2)
    assert cache.pos == 2
    with pytest.raises(ValueError):
        cache.truncate(3)
