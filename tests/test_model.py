"""Tests for nanogpt.model: config validation, presets, the seed's architecture and its maths."""

from __future__ import annotations

import math

import pytest
import torch

from nanogpt import GPT, GPTConfig, PRESETS
from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.kv_cache import KVCache


def tiny(**kw) -> GPTConfig:
    base = dict(block_size=16, vocab_size=37, n_layer=2, n_head=4, n_embd=32, dropout=0.0, bias=True)
    base.update(kw)
    return GPTConfig(**base)


# --- config --------------------------------------------------------------------------------------


def test_config_lists_every_problem_at_once():
    with pytest.raises(ConfigError) as e:
        GPTConfig(n_embd=100, n_head=12, dropout=1.5, activation="relu", n_layer=0)
    msg = str(e.value)
    for needle in ("divisible by n_head", "dropout", "activation", "n_layer"):
        assert needle in msg
    assert len(e.value.problems) == 4


def test_config_accepts_int_dropout_and_rejects_unknown_keys():
    assert GPTConfig(dropout=0).dropout == 0.0
    with pytest.raises(ConfigError, match="n_embed.*did you mean 'n_embd'"):
        GPTConfig.from_dict({"n_embed": 64})


def test_presets():
    assert set(PRESETS) >= {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "shakespeare-char", "shakespeare-char-cpu"}
    c = GPTConfig.from_preset("shakespeare-char")
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size) == (6, 6, 384, 256)
    c = GPTConfig.from_preset("shakespeare-char-cpu", vocab_size=65)
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size) == (4, 4, 128, 64)
    with pytest.raises(NanoGPTError, match="did you mean 'gpt2'"):
        GPTConfig.from_preset("gtp2")


def test_vocab_padding():
    c = tiny(vocab_size=65, vocab_multiple=64)
    assert c.padded_vocab_size == 128
    m = GPT(c)
    logits, _ = m(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape == (1, 1, 128)


# --- parameter counts -------------------------------------------------------------------------


def test_gpt2_small_has_124_439_808_parameters():
    m = GPT(GPTConfig.from_preset("gpt2"))
    assert m.num_params() == 124_439_808
    assert m.num_params(non_embedding=True) == 124_439_808 - 50257 * 768 - 1024 * 768
    blk = m.transformer.h[0]
    assert blk.attn.c_attn.weight.numel() == 768 * 2304  # ≈ 1.77M, the seed's table
    assert blk.attn.c_proj.weight.numel() == 768 * 768
    assert blk.mlp.c_fc.weight.numel() == 768 * 3072
    assert blk.mlp.c_proj.weight.numel() == 3072 * 768


def test_tied_weights_share_storage():
    m = GPT(tiny())
    assert m.lm_head.weight is m.transformer.wte.weight
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()
    # ...and stay tied through a state-dict round trip.
    m2 = GPT(tiny())
    m2.load_state_dict(m.state_dict())
    assert m2.lm_head.weight.data_ptr() == m2.transformer.wte.weight.data_ptr()


def test_init_statistics():
    m = GPT(GPTConfig(n_layer=8, n_head=4, n_embd=256, vocab_size=1000, block_size=64))
    std = m.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(16)) < 0.0015
    assert abs(m.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.001
    assert m.transformer.h[0].attn.c_attn.bias.abs().max() == 0


# --- maths --------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
@pytest.mark.parametrize("bias", [True, False])
def test_sdpa_matches_reference_attention(activation, bias):
    m = GPT(tiny(activation=activation, bias=bias)).eval()
    x = torch.randint(0, 37, (3, 16))
    a, _ = m(x, all_logits=True)
    b, _ = m(x, all_logits=True, attn_impl="reference")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_reference_attention_is_the_seeds_formula():
    """The reference path equals softmax(QK^T/sqrt(d)) V written out by hand in float64."""
    torch.manual_seed(1)
    m = GPT(tiny()).double().eval()
    attn = m.transformer.h[0].attn
    x = torch.randn(2, 10, 32, dtype=torch.float64)
    q, k, v = attn.c_attn(x).split(32, dim=2)
    q, k, v = (t.view(2, 10, 4, 8).transpose(1, 2) for t in (q, k, v))
    att = q @ k.transpose(-2, -1) / math.sqrt(8)
    att = att.masked_fill(torch.triu(torch.ones(10, 10, dtype=torch.bool), 1), float("-inf"))
    y = (att.softmax(-1) @ v).transpose(1, 2).reshape(2, 10, 32)
    expected = attn.c_proj(y)
    torch.testing.assert_close(attn(x, attn_impl="reference"), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(attn(x), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("attn_impl", ["sdpa", "reference"])
def test_causality(attn_impl):
    m = GPT(tiny()).eval()
    x = torch.randint(0, 37, (1, 16))
    base, _ = m(x, all_logits=True, attn_impl=attn_impl)
    for t in (0, 5, 15):
        y = x.clone()
        y[0, t] = (y[0, t] + 1) % 37
        out, _ = m(y, all_logits=True, attn_impl=attn_impl)
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=0, rtol=0)
        assert not torch.allclose(out[:, t], base[:, t])  # the change is visible at t itself


def test_initial_loss_is_about_ln_vocab():
    m = GPT(GPTConfig(block_size=32, vocab_size=500, n_layer=2, n_head=2, n_embd=64))
    x = torch.randint(0, 500, (8, 32))
    y = torch.randint(0, 500, (8, 32))  # independent of x: the tied head would favour y == x
    _, loss = m(x, y)
    assert abs(loss.item() - math.log(500)) < 0.1


def test_forward_shapes_and_ignore_index():
    m = GPT(tiny())
    x = torch.randint(0, 37, (2, 7))
    logits, loss = m(x)
    assert logits.shape == (2, 1, 37) and loss is None
    logits, loss = m(x, x)
    assert logits.shape == (2, 7, 37)
    y = x.clone()
    y[:, :3] = -1  # ignored positions change nothing but the average's denominator
    _, l_ign = m(x, y)
    ref = torch.nn.functional.cross_entropy(logits[:, 3:].reshape(-1, 37), x[:, 3:].reshape(-1))
    torch.testing.assert_close(l_ign, ref)
    with pytest.raises(ValueError, match="exceeds block_size"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_tiny_batch_overfits():
    torch.manual_seed(0)
    m = GPT(tiny(dropout=0.0))
    x = torch.randint(0, 37, (4, 16))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_kv_cache_chunks_match_full_forward():
    m = GPT(tiny()).eval()
    x = torch.randint(0, 37, (2, 16))
    full, _ = m(x, all_logits=True)
    cache = KVCache.for_model(m, batch_size=2)
    parts = [m(x[:, a:b], cache=cache, all_logits=True)[0] for a, b in ((0, 5), (5, 11), (11, 12), (12, 16))]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    assert cache.pos == 16


def test_crop_block_size():
    m = GPT(tiny())
    w = m.transformer.wpe.weight[:8].detach().clone()
    m.crop_block_size(8)
    assert m.config.block_size == 8 and m.transformer.wpe.weight.shape == (8, 32)
    torch.testing.assert_close(m.transformer.wpe.weight, w)
    m(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(NanoGPTError):
        m.crop_block_size(9)


def test_float64_matches_float32():
    torch.manual_seed(0)
    m = GPT(tiny()).eval()
    x = torch.randint(0, 37, (2, 16))
    a, _ = m(x, all_logits=True)
    b, _ = m.double()(x, all_logits=True)
    torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=0)
