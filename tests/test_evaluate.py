"""Evaluation windows, loss against a brute-force reference, bits per byte, and `nanogpt eval`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanogpt.cli import main as cli_main
from nanogpt.evaluate import evaluate_tokens, windows
from nanogpt.model import GPT, GPTConfig


def tiny(block_size=8, vocab_size=20) -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(10)
    return m.double().eval()


@pytest.mark.parametrize("n,ctx,stride", [(2, 8, 8), (9, 8, 8), (30, 8, 8), (30, 8, 3), (31, 8, 1), (5, 8, 2)])
def test_windows_score_every_target_once(n, ctx, stride):
    seen = []
    for start, end, first in windows(n, ctx, stride):
        assert 0 <= start < end <= n - 1 and end - start <= ctx
        assert start + 1 <= first <= end
        seen += list(range(first, end + 1))
    assert seen == list(range(1, n))


@torch.no_grad()
def test_loss_matches_brute_force_reference():
    model = tiny()
    tokens = np.random.default_rng(0).integers(0, 20, size=30)
    t = torch.from_numpy(tokens)

    def nll(history, target):  # the model's -log p(target | history), history <= block_size
        logits, _ = model(history[None])
        return float(F.cross_entropy(logits[0, -1:], target[None]))

    # stride 1: every target after the first window sees exactly block_size tokens of history
    want = sum(nll(t[max(0, i - 8):i], t[i]) for i in range(1, 30))
    got, count = evaluate_tokens(model, tokens, stride=1, batch_size=5)
    assert count == 29
    assert got == pytest.approx(want, rel=1e-9)
    # non-overlapping: target i sees the tokens since the start of its window
    wins = windows(30, 8, 8)
    want = sum(nll(t[s:i], t[i]) for s, e, f in wins for i in range(f, e + 1))
    got, _ = evaluate_tokens(model, tokens, batch_size=3)
    assert got == pytest.approx(want, rel=1e-9)


@torch.no_grad()
def test_padded_vocab_is_excluded():
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=8, vocab_size=10, vocab_multiple=16, n_layer=1, n_head=1, n_embd=8)).double()
    tokens = np.arange(17) % 10
    x = torch.from_numpy(tokens[:16]).view(2, 8)
    y = torch.from_numpy(tokens[1:17]).view(2, 8)
    logits, _ = m(x, all_logits=True)
    want = float(F.cross_entropy(logits[..., :10].reshape(-1, 10), y.reshape(-1), reduction="sum"))
    got, count = evaluate_tokens(m, tokens)
    assert count == 16 and got == pytest.approx(want, rel=1e-9)


@pytest.fixture
def char_ckpt(tmp_path):
    from nanogpt.checkpoint import model_state, save_checkpoint
    from nanogpt.tokenizer import CharTokenizer

    tok = CharTokenizer(list("\n !',.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZé"))
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(tmp_path / "run", 1, weights=model_state(m),
                    config={"model": m.config.to_dict(), "train": {}, "step": 1, "best_val_loss": None,
                            "tokenizer": tok.to_dict(), "nanogpt_version": "0"}, state={})
    return tmp_path / "run", tok, m


def test_cli_eval_text_file_and_data_dir(char_ckpt, tmp_path, capsys):
    from nanogpt.data import pack_header

    run, tok, model = char_ckpt
    text = "First Citizen: before we proceed, hear me speak. café " * 5
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    assert cli_main(["eval", str(run), "--text-file", str(tmp_path / "t.txt"), "--json", "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    ids = np.asarray(tok.encode(text))
    nats, count = evaluate_tokens(model.eval(), ids)
    assert r["tokens"] == len(ids) - 1 == count
    assert r["loss"] == pytest.approx(nats / count, rel=1e-5)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]), rel=1e-9)
    n_bytes = len(text[1:].encode("utf-8"))  # 'é' is 2 bytes, so bytes != tokens
    assert r["bytes"] == n_bytes and n_bytes > r["tokens"]
    assert r["bits_per_byte"] == pytest.approx(nats / (math.log(2) * n_bytes), rel=1e-5)
    # the same tokens as a prepared split, limited by --max-tokens
    d = tmp_path / "data"
    d.mkdir()
    arr = ids.astype(np.uint16)
    (d / "val.bin").write_bytes(pack_header(np.dtype(np.uint16), len(arr)) + arr.tobytes())
    (d / "meta.json").write_text(json.dumps({"tokenizer": tok.to_dict(), "vocab_size": tok.vocab_size}))
    assert cli_main(["eval", str(run), "--data-dir", str(d), "--max-tokens", "40", "--json",
                     "--no-progress"]) == 0
    r2 = json.loads(capsys.readouterr().out)
    nats40, _ = evaluate_tokens(model, ids[:41])
    assert r2["tokens"] == 40 and r2["loss"] == pytest.approx(nats40 / 40, rel=1e-5)
    assert cli_main(["eval", str(run), "--data-dir", str(d), "--no-progress"]) == 0
    assert "bits per byte" in capsys.readouterr().out


def test_cli_eval_errors(char_ckpt, tmp_path, capsys):
    run, _, _ = char_ckpt
    assert cli_main(["eval", str(run), "--stride", "0", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "exactly one of" in err and "--stride" in err and "--batch-size" in err
    (tmp_path / "bad.txt").write_text("~~~", encoding="utf-8")
    assert cli_main(["eval", str(run), "--text-file", str(tmp_path / "bad.txt")]) == 2
    assert "not in the char vocabulary" in capsys.readouterr().err
    assert cli_main(["eval", str(run), "--text-file", str(tmp_path / "t.txt"), "--context", "99"]) == 2
