"""nanogpt.flops: the analytic FLOP counts against torch's FLOP counter, peaks and the peak table."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nanogpt import flops
from nanogpt.model import GPT, GPTConfig


def _ln_params(model: GPT) -> int:
    # LayerNorm gains/biases are in N (as in nanoGPT's count) but take part in no matmul.
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters())


def _bias_params(model: GPT) -> int:
    return sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None)


@pytest.mark.parametrize("bias,multiple", [(False, 1), (True, 1), (False, 64)])
def test_matmul_params_is_every_parameter_but_wpe(bias, multiple):
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, bias=bias,
                    vocab_multiple=multiple)
    model = GPT(cfg)
    expected = model.num_params() - model.transformer.wpe.weight.numel()  # tied head counted once
    assert flops.matmul_params(cfg) == expected


@pytest.mark.parametrize("T", [16, 9])
def test_forward_and_train_flops_match_torch_flop_counter(T):
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, bias=False)
    model = GPT(cfg)
    B = 3
    x = torch.randint(0, 50, (B, T))
    # The reference attention is plain matmuls, which the counter sees (q k^T and att v).
    with FlopCounterMode(display=False) as fwd:
        _, loss = model(x, x, attn_impl="reference")
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    not_matmul = 2 * _ln_params(model) * B * T  # counted in 2N, not by the counter
    assert fwd.get_total_flops() == flops.forward_flops_per_token(cfg, T) * B * T - not_matmul
    assert fwd.get_total_flops() + bwd.get_total_flops() == \
        flops.train_flops_per_token(cfg, T) * B * T - 3 * not_matmul


def test_train_flops_standard_formula_for_gpt2():
    cfg = GPTConfig.from_preset("gpt2")
    n = flops.matmul_params(cfg)
    assert n == 124_439_808 - 1024 * 768  # GPT-2 small: 124.4M parameters less wpe
    assert flops.train_flops_per_token(cfg) == 6 * n + 12 * 12 * 768 * 1024


class _Reference(nn.Module):
    """The model with reference attention, so the FLOP counter sees every attention matmul."""

    def __init__(self, model: GPT):
        super().__init__()
        self.inner = model
        self.config = model.config

    def forward(self, idx, targets=None, **kw):
        return self.inner(idx, targets, attn_impl="reference", **kw)


def test_generate_flops_match_counter():
    from nanogpt.engine import generate

    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, bias=True)
    model = GPT(cfg).eval()
    B, P, M = 2, 5, 6
    idx = torch.randint(0, 50, (B, P))
    with FlopCounterMode(display=False) as fc:
        generate(_Reference(model), idx, M, temperature=0)
    # The counter sees matmuls only; generate_flops's N also holds LayerNorm and bias parameters,
    # counted 2x per token that passes through the blocks: P in the prefill, then M - 1 decodes.
    not_matmul = 2 * (_ln_params(model) + _bias_params(model)) * (P + M - 1)
    expected = flops.generate_flops(cfg, P, M) * B
    assert fc.get_total_flops() == expected - not_matmul * B


def test_peak_table_lookup():
    assert flops.PEAK_FLOPS["H100"]["bf16"] == 989e12
    assert flops.peak_flops("cpu", "fp32") is None


def test_measure_matmul_peaks_small_sizes():
    peaks = flops.measure_matmul_peaks("cpu", "fp32", sizes=(64, 128), seconds=0.02)
    assert set(peaks) == {64, 128}
    assert all(v > 1e6 for v in peaks.values())  # at least a MFLOP/s on any machine
    assert flops.measure_matmul_peak("cpu", torch.float32, n=64, seconds=0.01) > 1e6


def test_torch_dtype_names():
    assert flops.torch_dtype("bf16") is torch.bfloat16
    assert flops.torch_dtype("float16") is torch.float16
    assert flops.torch_dtype(torch.float32) is torch.float32
