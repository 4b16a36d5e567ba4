"""nanogpt.summary: the seed's GPT-2 table, counts vs instantiated models, FLOPs, memory, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from nanogpt.cli import main as cli_main
from nanogpt.flops import forward_flops_per_token, train_flops_per_token
from nanogpt.model import GPT, PRESETS, GPTConfig
from nanogpt.summary import activation_bytes, format_summary, human, summarize

GPT2_TOTAL = 124_439_808


def _rows(s):
    return {r.name: r.params for r in s.rows} | {r.name: r.params for r in s.block_rows}


def test_gpt2_reproduces_the_seed_table():
    s = summarize(GPTConfig.from_preset("gpt2"))
    r = _rows(s)
    assert r["wte"] == 50257 * 768 == 38_597_376
    assert r["wpe"] == 1024 * 768 == 786_432
    # The seed's per-block weights (C x 3C ...), plus GPT-2's biases.
    assert r["attn.c_attn"] == 768 * 2304 + 2304 and round(r["attn.c_attn"] / 1e6, 2) == 1.77
    assert r["attn.c_proj"] == 768 * 768 + 768 and round(r["attn.c_proj"] / 1e6, 2) == 0.59
    assert r["mlp.c_fc"] == 768 * 3072 + 3072 and round(r["mlp.c_fc"] / 1e6, 2) == 2.36
    assert r["mlp.c_proj"] == 3072 * 768 + 768 and round(r["mlp.c_proj"] / 1e6, 2) == 2.36
    assert r["blocks (x12)"] == 85_054_464 and round(r["blocks (x12)"] / 1e6) == 85
    assert r["lm_head"] == 0  # shared with wte, +0
    assert s.total_params == GPT2_TOTAL
    assert s.non_embedding_params == GPT2_TOTAL - 38_597_376 - 786_432
    assert s.tied_saving == 38_597_376
    text = format_summary(s)
    for needle in ("38,597,376", "38.6M", "786,432", "1,771,776", "1.77M", "2.36M", "85,054,464",
                   "124,439,808", "shared with wte", "+0"):
        assert needle in text, needle


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("gpt2")])
def test_presets_match_instantiated_models(name):
    cfg = GPTConfig.from_preset(name)
    with torch.device("meta"):  # the real module tree, without allocating a byte of weights
        model = GPT(cfg)
    s = summarize(cfg)
    assert s.total_params == model.num_params()
    assert s.non_embedding_params == model.num_params(non_embedding=True)


@pytest.mark.parametrize("over", [
    dict(bias=False),
    dict(bias=True, vocab_multiple=64),  # padded embedding rows count
    dict(n_layer=3, n_head=2, n_embd=48, block_size=16, vocab_size=101),
])
def test_every_row_matches_the_modules_of_a_tiny_model(over):
    cfg = GPTConfig(**{**dict(block_size=32, vocab_size=67, n_layer=2, n_head=4, n_embd=32), **over})
    model = GPT(cfg)
    s = summarize(cfg)
    r = _rows(s)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    t, blk = model.transformer, model.transformer.h[0]
    assert r["wte"] == t.wte.weight.numel() and r["wpe"] == t.wpe.weight.numel()
    for name, mod in (("ln_1", blk.ln_1), ("attn.c_attn", blk.attn.c_attn), ("attn.c_proj", blk.attn.c_proj),
                      ("ln_2", blk.ln_2), ("mlp.c_fc", blk.mlp.c_fc), ("mlp.c_proj", blk.mlp.c_proj)):
        assert r[name] == n(mod), name
    assert r[f"blocks (x{cfg.n_layer})"] == sum(n(b) for b in t.h)
    assert r["ln_f"] == n(t.ln_f)
    assert s.total_params == model.num_params()
    assert sum(x.params for x in s.rows) == s.total_params


def test_flops_and_weight_memory():
    cfg = GPTConfig.from_preset("gpt2")
    s = summarize(cfg, batch_size=4, seq_len=256, dtype="bf16")
    assert s.flops["forward_per_token"] == forward_flops_per_token(cfg, 256)
    assert s.flops["train_per_token"] == train_flops_per_token(cfg, 256)
    assert s.flops["train_per_step"] == train_flops_per_token(cfg, 256) * 4 * 256
    m = s.memory
    assert m["weights"] == m["gradients"] == 2 * GPT2_TOTAL
    assert m["optimizer_moments"] == 8 * GPT2_TOTAL and m["master_weights"] == 4 * GPT2_TOTAL
    f32 = summarize(cfg, dtype="fp32").memory
    assert f32["weights"] == 4 * GPT2_TOTAL and f32["master_weights"] == 0  # fp32 is its own master
    assert m["training_total"] == sum(m[k] for k in ("weights", "gradients", "optimizer_moments",
                                                     "master_weights", "activations"))


def _saved_bytes(cfg: GPTConfig, B: int, T: int, impl: str) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves in one training forward."""
    model = GPT(cfg)
    params = {p.data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.data_ptr() not in params:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    idx = torch.randint(0, cfg.vocab_size, (B, T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, idx.roll(-1, 1), attn_impl=impl)
    return sum(seen.values())


@pytest.mark.parametrize("impl,kernel", [("reference", "reference"), ("sdpa", "flash")])
def test_activation_formula_matches_what_autograd_saves(impl, kernel):
    cfg = GPTConfig(block_size=32, vocab_size=97, n_layer=2, n_head=4, n_embd=64)
    measured = _saved_bytes(cfg, 3, 32, impl)
    predicted = activation_bytes(cfg, 3, 32, "fp32", kernel)["total"]
    # The formula leaves out only the 4-byte loss scalar.
    assert predicted == pytest.approx(measured, rel=1e-3)


def test_activations_scale_with_batch_and_dtype():
    cfg = GPTConfig.from_preset("gpt2")
    a = activation_bytes(cfg, 2, 512, "bf16")
    # Everything but the 8*T bytes of position ids scales with the batch.
    assert activation_bytes(cfg, 4, 512, "bf16")["total"] == 2 * a["total"] - 8 * 512
    ref = activation_bytes(cfg, 2, 512, "bf16", "reference")["per_layer"]
    assert ref - a["per_layer"] == 2 * 2 * 12 * 512 * 512 + 512 * 512 - 4 * 2 * 12 * 512


def test_bad_options_are_listed_together():
    from nanogpt.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        summarize(GPTConfig.from_preset("gpt2"), batch_size=0, seq_len=4096, dtype="fp8")
    msg = str(e.value)
    assert "batch_size" in msg and "seq_len" in msg and "dtype" in msg


def test_human():
    assert human(38_597_376) == "38.6M" and human(786_432) == "786K" and human(0) == "0"
    assert human(3 * 2**30, "B") == "3.00 GiB"


def test_cli_text_and_json(capsys):
    assert cli_main(["summary", "gpt2"]) == 0  # a preset: no download, no weights
    out = capsys.readouterr().out
    assert "124,439,808" in out and "preset gpt2" in out
    assert cli_main(["summary", "shakespeare-char-cpu", "--json", "--dtype", "fp32",
                     "--batch-size", "2", "--seq-len", "16"]) == 0
    d = json.loads(capsys.readouterr().out)
    cfg = GPTConfig.from_preset("shakespeare-char-cpu")
    assert d["total_params"] == GPT(cfg).num_params()
    assert d["settings"] == {"batch_size": 2, "seq_len": 16, "dtype": "fp32", "attention": "flash"}
    assert d["memory"]["activations"] == activation_bytes(cfg, 2, 16, "fp32")["total"]


def test_cli_errors_are_one_line(capsys, tmp_path):
    assert cli_main(["summary", "gpt-2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nanogpt summary: error: unknown model 'gpt-2'") and "gpt2" in err
    assert len(err.strip().splitlines()) == 1
    assert cli_main(["summary", "gpt2", "--seq-len", "5000"]) == 2
    assert "seq_len must be between 1 and block_size (1024)" in capsys.readouterr().err
    assert cli_main(["summary", str(tmp_path)]) == 2  # an empty directory is no model
    assert "error:" in capsys.readouterr().err


def test_cli_on_a_checkpoint(tmp_path, capsys):
    from nanogpt.checkpoint import model_state, save_checkpoint
    from nanogpt.tokenizer import CharTokenizer

    tok = CharTokenizer.from_text("hello world")
    cfg = GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=16)
    model = GPT(cfg)
    save_checkpoint(tmp_path / "run", 5, weights=model_state(model), state={},
                    config={"model": cfg.to_dict(), "train": {}, "step": 5, "best_val_loss": None,
                            "tokenizer": tok.to_dict(), "nanogpt_version": "test"})
    assert cli_main(["summary", str(tmp_path / "run"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["total_params"] == model.num_params() and d["config"] == cfg.to_dict()
    assert "ckpt-00000005" in d["source"]
