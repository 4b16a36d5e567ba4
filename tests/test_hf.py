"""Parity with transformers' GPT2LMHeadModel, both ways, on random weights built offline."""

from __future__ import annotations

import json

import pytest
import torch

from nanogpt import GPT, GPTConfig
from nanogpt.errors import NanoGPTError

transformers = pytest.importorskip("transformers")


def hf_model(**kw):
    cfg = transformers.GPT2Config(
        vocab_size=kw.get("vocab_size", 101), n_positions=32, n_embd=48, n_layer=3, n_head=4,
        activation_function=kw.get("activation_function", "gelu_new"),
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # HF zero-inits biases and ones LayerNorms: randomise every tensor
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("act", ["gelu_new", "gelu"])
def test_import_matches_transformers(tmp_path, safe, act):
    ref = hf_model(activation_function=act)
    ref.save_pretrained(tmp_path, safe_serialization=safe)
    ours = GPT.from_pretrained(str(tmp_path)).eval()
    assert ours.config.activation == ("gelu_tanh" if act == "gelu_new" else "gelu")
    x = torch.randint(0, 101, (2, 32))
    with torch.no_grad():
        expected = ref(x).logits
        got, _ = ours(x, all_logits=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_save_hf_loads_in_transformers(tmp_path, bias):
    torch.manual_seed(0)
    ours = GPT(GPTConfig(block_size=32, vocab_size=70, n_layer=2, n_head=4, n_embd=48, bias=bias,
                         activation="gelu_tanh", vocab_multiple=8)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours.save_hf(tmp_path / "export")
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "export").eval()
    x = torch.randint(0, 70, (2, 32))
    with torch.no_grad():
        got, _ = ours(x, all_logits=True)
        expected = ref(x).logits
    torch.testing.assert_close(expected, got, atol=1e-5, rtol=0)
    # ...and it round-trips back into nanogpt with the same function.
    again = GPT.from_pretrained(str(tmp_path / "export")).eval()
    torch.testing.assert_close(again(x, all_logits=True)[0], got, atol=1e-6, rtol=0)


def test_unsupported_hf_config_says_why(tmp_path):
    ref = hf_model()
    ref.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(n_inner=100, scale_attn_by_inverse_layer_idx=True)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NanoGPTError) as e:
        GPT.from_pretrained(str(tmp_path))
    assert "n_inner" in str(e.value) and "scale_attn_by_inverse_layer_idx" in str(e.value)


def test_offline_without_cache_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(NanoGPTError, match="Connect to the internet once.*local directory"):
        GPT.from_pretrained("gpt2")
    # owner/name could be a mistyped run directory as well as a hub id: say both
    with pytest.raises(NanoGPTError, match="no local directory 'runs/typo'.*Check the path"):
        GPT.from_pretrained("runs/typo")


def test_bad_paths(tmp_path):
    with pytest.raises(NanoGPTError, match="not a Hugging Face GPT-2 directory"):
        GPT.from_pretrained(str(tmp_path))
    with pytest.raises(NanoGPTError, match="neither a directory nor a known model"):
        GPT.from_pretrained("no-such-thing")
