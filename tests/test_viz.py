"""nanogpt.viz: exact attention maps, predictions, the architecture tree and the offline page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nanogpt.cli import main as cli_main
from nanogpt.errors import NanoGPTError
from nanogpt.model import GPT, GPTConfig
from nanogpt.summary import summarize
from nanogpt.viz import VizConfig, architecture, attention_maps, build_viz, page_data, render_html, top_predictions


class ByteTokenizer:
    """The simplest real tokenizer: one token per UTF-8 byte."""

    name, vocab_size, eot_id = "bytes", 256, None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids) -> bytes:
        return bytes(ids)

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def tiny(**over) -> GPT:
    cfg = dict(block_size=32, vocab_size=256, n_layer=2, n_head=4, n_embd=32, bias=True)
    return GPT(GPTConfig(**{**cfg, **over})).eval()


def page_json(html_text: str) -> dict:
    m = re.search(r'<script type="application/json" id="nanogpt-data">(.*?)</script>', html_text, re.S)
    assert m, "the data block is missing"
    return json.loads(m.group(1))


def test_attention_rows_sum_to_one_and_rebuild_the_reference_output():
    model = tiny(dropout=0.1)
    model.train()  # attention_maps must switch dropout off and restore the mode
    idx = torch.randint(0, 256, (1, 19))
    cap = attention_maps(model, idx)
    assert model.training
    L, nh, T = 2, 4, 19
    assert cap.probs.shape == (L, nh, T, T)
    torch.testing.assert_close(cap.probs.sum(-1), torch.ones(L, nh, T), atol=1e-6, rtol=0)
    assert torch.all(cap.probs.triu(1) == 0)  # causal: nothing above the diagonal
    assert torch.all(cap.probs[..., torch.ones(T, T).tril().bool()] > 0)
    # Rebuild every layer's attention output from the probabilities and compare it with what
    # the model's own reference attention computed in the same (eval) forward pass.
    model.eval()
    outs: dict[int, torch.Tensor] = {}
    hooks = [b.attn.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o))
             for k, b in enumerate(model.transformer.h)]
    with torch.no_grad():
        ref_logits, _ = model(idx, all_logits=True, attn_impl="reference")
    for h in hooks:
        h.remove()
    C, hs = 32, 8
    for layer, block in enumerate(model.transformer.h):
        v = cap.qkv[layer][..., 2 * C:].view(1, T, nh, hs).transpose(1, 2)  # (1, nh, T, hs)
        y = (cap.probs[layer].unsqueeze(0) @ v).transpose(1, 2).reshape(1, T, C)
        rebuilt = block.attn.c_proj(y)
        torch.testing.assert_close(rebuilt, outs[layer], atol=1e-5, rtol=0)
    torch.testing.assert_close(cap.logits, ref_logits, atol=1e-5, rtol=0)


def test_attention_maps_match_an_independent_softmax_of_q_k():
    model = tiny()
    idx = torch.randint(0, 256, (1, 7))
    cap = attention_maps(model, idx)
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(7))
    blk = model.transformer.h[0]
    q, k, _ = blk.attn.c_attn(blk.ln_1(x)).split(32, dim=2)
    q0, k0 = q[0, :, 8:16], k[0, :, 8:16]  # head 1: dims 8..15
    scores = (q0 @ k0.T) / 8 ** 0.5
    scores = scores.masked_fill(torch.ones(7, 7).triu(1).bool(), float("-inf"))
    torch.testing.assert_close(cap.probs[0, 1], scores.softmax(-1), atol=1e-6, rtol=0)


def test_top_predictions_exclude_padding_and_are_sorted():
    model = tiny(vocab_size=250, vocab_multiple=64)  # ids 250..255 are padding
    with torch.no_grad():
        model.lm_head.weight[250:] = 10.0  # padding rows would win if they were not excluded
    idx = torch.randint(0, 250, (1, 5))
    with torch.no_grad():
        logits, _ = model(idx, all_logits=True)
    rows = top_predictions(logits[0], ByteTokenizer(), 250, k=5)
    assert len(rows) == 5
    ref = F.softmax(logits[0, :, :250], -1)
    for t, row in enumerate(rows):
        assert [r["id"] < 250 for r in row] == [True] * 5
        assert [r["p"] for r in row] == sorted((r["p"] for r in row), reverse=True)
        assert row[0]["id"] == int(ref[t].argmax())
        assert row[0]["p"] == pytest.approx(float(ref[t].max().detach()), abs=1e-5)


def test_architecture_numbers_agree_with_summary():
    cfg = GPTConfig.from_preset("gpt2")
    arch, s = architecture(cfg), summarize(cfg)
    nodes = {}

    def walk(n):
        nodes[n["id"]] = n
        for c in n["children"]:
            walk(c)

    walk(arch)
    rows = {r.name: r.params for r in s.rows} | {r.name: r.params for r in s.block_rows}
    assert arch["params"] == s.total_params == 124_439_808
    assert nodes["wte"]["params"] == rows["wte"] and nodes["wpe"]["params"] == rows["wpe"]
    assert nodes["lm_head"]["params"] == 0
    assert sum(nodes[f"block-{i}"]["params"] for i in range(12)) == rows["blocks (x12)"]
    assert nodes["block-3-qkv"]["params"] == rows["attn.c_attn"] == 1_771_776
    assert nodes["block-3-attn"]["params"] == rows["attn.c_attn"] + rows["attn.c_proj"]
    assert nodes["block-3-mlp"]["params"] == rows["mlp.c_fc"] + rows["mlp.c_proj"]
    # Every box's count is the sum of its children's, where it has children.
    for n in nodes.values():
        if n["children"] and n["id"] != "model" and not n["id"].endswith("-heads"):
            assert n["params"] == sum(c["params"] for c in n["children"]), n["id"]
    assert nodes["block-0-split"]["shape"] == "3 x [B, 12, T, 64]"
    assert nodes["block-0-scores"]["shape"] == "[B, 12, T, T]"
    assert nodes["block-0-fc"]["shape"] == "[B, T, 768] -> [B, T, 3072]"
    assert len(nodes["block-11-heads"]["children"]) == 12 and "block-11-head-11" in nodes


def test_page_is_offline_and_escapes_user_text():
    model = tiny(block_size=96)
    evil = 'a</script><script>alert(1)</script><img src="http://x.test/i.png">&amp; \u2028é'
    data = page_data(model.config, source="<b>test</b>", model=model, tokenizer=ByteTokenizer(),
                     prompt=evil, max_tokens=96)
    html_text = render_html(data)
    assert "<script>alert(1)" not in html_text and "<img src" not in html_text
    assert "<b>test</b>" not in html_text  # the title is escaped too
    # No network: no resource URL anywhere; the only URL-like string is the SVG namespace name.
    assert not re.search(r"https?://", html_text.replace("http://www.w3.org/2000/svg", ""))
    assert "default-src 'none'" in html_text
    d = page_json(html_text)
    assert bytes(d["attention"]["ids"]).decode() == evil  # the data survives the round trip
    assert d["source"] == "<b>test</b>"
    T = len(evil.encode())
    assert d["attention"]["T"] == T and len(d["attention"]["probs"][1][3]) == T
    assert [len(r) for r in d["attention"]["probs"][0][0]] == list(range(1, T + 1))
    assert all(abs(sum(r) - 1) < 5e-3 for r in d["attention"]["probs"][1][2])  # rounded to 4 dp


def test_prompt_problems_are_clear():
    model = tiny()
    with pytest.raises(NanoGPTError, match="at most 32"):
        page_data(model.config, source="t", model=model, tokenizer=ByteTokenizer(), prompt="x" * 40, max_tokens=64)
    with pytest.raises(NanoGPTError, match="prompt is empty"):
        page_data(model.config, source="t", model=model, tokenizer=ByteTokenizer(), prompt="")
    with pytest.raises(NanoGPTError, match="needs weights") as e:
        page_data(model.config, source="t", prompt="hi")
    assert "no tokenizer" in str(e.value)  # both problems at once


def make_run(tmp_path: Path, text="First Citizen:\nBefore we proceed any further, hear me speak.") -> Path:
    """A run dir with one checkpoint (char tokenizer) and a short metrics.jsonl."""
    from nanogpt.checkpoint import model_state, save_checkpoint
    from nanogpt.tokenizer import CharTokenizer

    tok = CharTokenizer.from_text(text)
    cfg = GPTConfig(block_size=64, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, bias=False)
    run = tmp_path / "run"
    save_checkpoint(run, 10, weights=model_state(GPT(cfg)), state={},
                    config={"model": cfg.to_dict(), "train": {}, "step": 10, "best_val_loss": None,
                            "tokenizer": tok.to_dict(), "nanogpt_version": "test"})
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(61):
            f.write(json.dumps({"kind": "train", "step": step, "tokens": 256 * step, "loss": 4 - step / 30}) + "\n")
            if step % 20 == 0:
                f.write(json.dumps({"kind": "eval", "step": step, "tokens": 256 * step,
                                    "train_loss": 4 - step / 30, "val_loss": 4.1 - step / 40}) + "\n")
    return run


def test_cli_on_a_run_dir(tmp_path, capsys):
    run = make_run(tmp_path)
    out = tmp_path / "page.html"
    assert cli_main(["viz", str(run), "--prompt", "Before we proceed", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    d = page_json(out.read_text())
    assert d["attention"]["tokens"] == list("Before we proceed")
    assert len(d["attention"]["probs"]) == 2 and len(d["attention"]["predictions"]) == 17
    assert len(d["metrics"]["train"]) == 61 and len(d["metrics"]["eval"]) == 4  # found beside the ckpt
    assert d["params"]["total"] == summarize(GPTConfig.from_dict(d["config"])).total_params
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_preset_and_errors(tmp_path, capsys):
    out = tmp_path / "arch.html"
    assert cli_main(["viz", "shakespeare-char", "--out", str(out)]) == 0  # architecture only
    d = page_json(out.read_text())
    assert d["attention"] is None and d["metrics"] is None and d["config"]["n_layer"] == 6
    capsys.readouterr()
    assert cli_main(["viz", "shakespeare-char", "--prompt", "hi", "--out", str(out)]) == 2
    assert "no trained weights" in capsys.readouterr().err
    assert cli_main(["viz", "gpt2", "--out", str(tmp_path / "x.txt"), "--top-k", "0"]) == 2
    err = capsys.readouterr().err
    assert "must end in .html" in err and "top_k" in err and len(err.strip().splitlines()) == 1
    run = make_run(tmp_path)
    assert cli_main(["viz", str(run), "--prompt", "Zebra!", "--out", str(out)]) == 2
    assert "not in the char vocabulary" in capsys.readouterr().err


def test_build_viz_writes_atomically(tmp_path):
    out = tmp_path / "v.html"
    out.write_text("old")
    path = build_viz(VizConfig(model="gpt2", out=str(out)))
    assert path == out and out.read_text().startswith("<!doctype html>")
    assert len(out.read_text()) > 20_000
