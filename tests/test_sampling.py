"""Sampling controls against hand-computed examples, and their validation."""

from __future__ import annotations

import math

import pytest
import torch

from nanogpt.errors import ConfigError
from nanogpt.sampling import (
    SamplingParams, apply_min_p, apply_repetition_penalty, apply_temperature, apply_top_k,
    apply_top_p, process_logits, sample_next,
)

NEG = float("-inf")


def logits_of(probs):
    return torch.tensor([probs], dtype=torch.float32).log()  # (1, V)


def test_top_k_keeps_k_largest():
    x = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert apply_top_k(x, 2).tolist() == [[NEG, 4.0, 3.0, NEG]]
    assert apply_top_k(x, 4).tolist() == x.tolist()  # k >= V is a no-op
    assert apply_top_k(x, 10).tolist() == x.tolist()


def test_top_p_smallest_set_reaching_p():
    # sorted probs 0.5, 0.25, 0.125, 0.125 (exact in binary): mass above = 0, .5, .75, .875
    x = logits_of([0.125, 0.5, 0.125, 0.25])
    kept = lambda p: torch.isfinite(apply_top_p(x, p))[0].tolist()  # noqa: E731
    assert kept(0.5) == [False, True, False, False]  # 0.5 alone reaches 0.5
    assert kept(0.6) == [False, True, False, True]
    assert kept(0.75) == [False, True, False, True]
    k = kept(0.8)  # 0.5 + 0.25 < 0.8: exactly one of the two tied 0.125s is needed too
    assert k[1] and k[3] and k.count(True) == 3
    assert kept(0.01) == [False, True, False, False]  # the top token always survives
    assert kept(1.0) == [True, True, True, True]


def test_min_p_relative_to_top_probability():
    x = logits_of([0.5, 0.3, 0.15, 0.05])
    kept = torch.isfinite(apply_min_p(x, 0.25))[0].tolist()  # threshold 0.125
    assert kept == [True, True, True, False]
    assert torch.isfinite(apply_min_p(x, 1.0))[0].tolist() == [True, False, False, False]
    assert apply_min_p(x, 0.0).tolist() == x.tolist()


def test_temperature_scales_and_zero_is_argmax():
    x = torch.tensor([[1.0, -2.0, 3.0]])
    assert torch.allclose(apply_temperature(x, 2.0), x / 2)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(4, 50)
        assert torch.equal(sample_next(x, SamplingParams(temperature=0.0), g), x.argmax(-1))


def test_repetition_penalty_ctrl_semantics():
    x = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    present = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(x, present, 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]
    assert apply_repetition_penalty(x, present, 1.0) is x
    # greedy with a penalty picks the best non-repeated token when the repeat is pushed below it
    y = torch.tensor([[3.0, 2.0]])
    seen = torch.tensor([[True, False]])
    assert sample_next(y, SamplingParams(temperature=0, repetition_penalty=2.0), present=seen).item() == 1


def test_filters_compose_in_order():
    x = logits_of([0.4, 0.3, 0.2, 0.1])
    out = process_logits(x, SamplingParams(temperature=1.0, top_k=3, top_p=0.6))
    assert torch.isfinite(out)[0].tolist() == [True, True, False, False]


def test_sampling_respects_masks_and_seed():
    x = logits_of([0.4, 0.3, 0.2, 0.1]).expand(2000, 4)
    p = SamplingParams(temperature=1.0, top_k=2)
    draws = sample_next(x, p, torch.Generator().manual_seed(1))
    assert set(draws.tolist()) == {0, 1}
    # the empirical frequency of token 0 matches renormalised 0.4 / 0.7 (5 sigma band)
    f = (draws == 0).float().mean().item()
    assert abs(f - 4 / 7) < 5 * math.sqrt((4 / 7) * (3 / 7) / 2000)
    again = sample_next(x, p, torch.Generator().manual_seed(1))
    other = sample_next(x, p, torch.Generator().manual_seed(2))
    assert torch.equal(draws, again)
    assert not torch.equal(draws, other)


def test_validation_lists_every_problem():
    with pytest.raises(ConfigError) as e:
        SamplingParams(temperature=-1, top_k=0, top_p=1.5, min_p=2.0, repetition_penalty=0).validate()
    msg = str(e.value)
    for word in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty"):
        assert word in msg
    assert len(e.value.problems) == 5
    for bad in (dict(top_p=0.0), dict(top_k=-3), dict(temperature=float("nan")), dict(top_k=True)):
        with pytest.raises(ConfigError):
            SamplingParams(**bad).validate()
    SamplingParams(temperature=0, top_k=1, top_p=1.0, min_p=0.0).validate()  # edges are valid
