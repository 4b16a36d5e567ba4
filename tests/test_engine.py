"""The KV-cached engine against the seed's uncached generate, stop conditions and streaming text."""

from __future__ import annotations

import logging

import pytest
import torch

from nanogpt.engine import Generation, TextStream, generate, generate_uncached, stream
from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.model import GPT, GPTConfig
from nanogpt.tokenizer import CharTokenizer


def tiny(block_size=8, vocab_size=32, scale=20.0, **kw) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=16,
                    dropout=0.0, **kw)
    model = GPT(cfg).double().eval()  # float64: no near-ties between cached and uncached argmaxes
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)  # sharper, input-dependent distributions than the 0.02 init
    return model


class Scripted(GPT):
    """A GPT (so the KV cache still runs) whose next token is always (last token + 1) % V."""

    def forward(self, idx, targets=None, **kw):
        logits, loss = super().forward(idx, targets, **kw)
        nxt = (idx[:, -1] + 1) % self.config.vocab_size  # (B,)
        out = torch.full_like(logits[:, -1:], -10.0)
        out[torch.arange(idx.size(0)), 0, nxt] = 10.0
        return out, loss


def scripted(vocab_size=8, **kw) -> Scripted:
    return Scripted(GPTConfig(block_size=16, vocab_size=vocab_size, n_layer=1, n_head=1, n_embd=8, **kw)).eval()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("prompt_len", [1, 3, 8, 11])
def test_cached_greedy_equals_uncached_across_block_size(prompt_len, fast):
    model = tiny(block_size=8)
    idx = torch.randint(0, 32, (3, prompt_len))
    want = generate_uncached(model, idx, 20, temperature=0.0)
    gen = stream(model, idx, 20, temperature=0.0, fast=fast)
    for _ in gen:
        pass
    assert torch.equal(gen.result(), want)
    assert gen.window_slid  # 20 new tokens always run past block_size 8
    assert want[:, prompt_len:].unique().numel() > 2  # the test is not vacuous


def test_sampled_and_penalised_outputs_match_oracle_with_same_seed():
    model = tiny(block_size=12)
    idx = torch.randint(0, 32, (2, 4))
    opts = dict(temperature=0.9, top_k=20, top_p=0.95, min_p=0.01, repetition_penalty=1.3)
    a = generate(model, idx, 25, generator=torch.Generator().manual_seed(3), **opts)
    b = generate_uncached(model, idx, 25, generator=torch.Generator().manual_seed(3), **opts)
    assert torch.equal(a, b)
    g = generate(model, idx, 25, temperature=0, repetition_penalty=1.5)
    assert torch.equal(g, generate_uncached(model, idx, 25, temperature=0, repetition_penalty=1.5))


def test_no_slide_within_block_size(caplog):
    model = tiny(block_size=16)
    with caplog.at_level(logging.WARNING, logger="nanogpt.engine"):
        gen = stream(model, torch.zeros(1, 4, dtype=torch.long), 13, temperature=0)
        out = [t for t in gen]  # the last step reads exactly block_size tokens
    assert len(out) == 13 and not gen.window_slid and not caplog.records
    with caplog.at_level(logging.WARNING, logger="nanogpt.engine"):
        gen = stream(model, torch.zeros(1, 4, dtype=torch.long), 14, temperature=0)
        list(gen)
    assert gen.window_slid and "sliding window" in caplog.text


def test_seed_reproducible_and_model_generate_delegates():
    model = tiny(block_size=64, scale=1.0)  # near-uniform: different seeds surely differ
    idx = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(idx, 30, generator=torch.Generator().manual_seed(0))
    b = model.generate(idx, 30, generator=torch.Generator().manual_seed(0))
    c = model.generate(idx, 30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (1, 31)


def test_max_new_tokens_zero_returns_prompt():
    model = tiny()
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(generate(model, idx, 0), idx)


def test_bad_prompts_and_options():
    model = tiny()
    with pytest.raises(NanoGPTError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 5)
    with pytest.raises(NanoGPTError, match=r"\[32, 40\]"):
        generate(model, torch.tensor([[1, 32, 40]]), 5)
    with pytest.raises(NanoGPTError, match="outside"):
        generate(model, torch.tensor([[-1]]), 5)
    with pytest.raises(ConfigError) as e:
        generate(model, torch.tensor([[1]]), -1, temperature=-1, top_p=0, top_k=0, stop=["x"])
    assert len(e.value.problems) == 5


def test_padded_vocab_ids_never_sampled():
    class Padded(GPT):
        def forward(self, idx, targets=None, **kw):
            logits, loss = super().forward(idx, targets, **kw)
            logits = logits.clone()
            logits[..., self.config.vocab_size:] = 1e4  # padding rows look irresistible
            return logits, loss

    model = Padded(GPTConfig(block_size=32, vocab_size=10, vocab_multiple=16, n_layer=1, n_head=1, n_embd=8))
    assert model.config.padded_vocab_size == 16
    idx = torch.zeros(4, 1, dtype=torch.long)
    for kw in (dict(temperature=0), dict(temperature=2.0, generator=torch.Generator().manual_seed(0))):
        assert generate(model, idx, 30, **kw).max() < 10
    # a tokenizer with fewer ids than the model bounds them further
    tok = CharTokenizer(list("abcdef"))
    out = generate(model, idx, 30, temperature=2.0, tokenizer=tok, generator=torch.Generator().manual_seed(0))
    assert out.max() < 6


def test_eot_stops_each_row_and_pads():
    model = scripted(vocab_size=8)  # eot = 7
    idx = torch.tensor([[5], [1]])
    gen = stream(model, idx, 50, temperature=0, eot_id=7)
    steps = list(gen)
    assert len(steps) == 6  # row 1 needs 2,3,4,5,6,7
    assert gen.tokens == [[6], [2, 3, 4, 5, 6]]
    assert gen.result().tolist() == [[5, 6, 7, 7, 7, 7, 7], [1, 2, 3, 4, 5, 6, 7]]
    assert torch.equal(gen.result(), generate_uncached(model, idx, 50, temperature=0, eot_id=7))


def test_stop_strings_trimmed_and_streamed():
    tok = CharTokenizer(list("abcdefgh"))
    model = scripted(vocab_size=8)
    idx = torch.tensor([tok.encode("a"), tok.encode("f")])
    gen = stream(model, idx, 40, temperature=0, tokenizer=tok, stop=["de", "zz"])
    pieces = [[], []]
    for _ in gen:
        for b in range(2):
            pieces[b].append(gen.deltas[b])
    for b in range(2):
        pieces[b].append(gen.deltas[b])  # the final flush
    assert gen.texts == ["bc", "ghabc"]
    assert ["".join(p) for p in pieces] == gen.texts
    assert gen.finished.all() and len(gen.tokens[0]) == 4  # b c d e: 'e' completes the stop string


def test_text_stream_holds_partial_utf8_and_stop_prefixes(gpt2_ranks_path):
    from nanogpt.tokenizer import get_gpt2_tokenizer

    tok = get_gpt2_tokenizer(str(gpt2_ranks_path))
    text = "naïve 😀 café END tail"
    ids = tok.encode(text)
    ts = TextStream(tok, stop=[" END"])
    out = [ts.push(i) for i in ids]
    out.append(ts.flush())
    assert all("\ufffd" not in piece for piece in out)
    assert "".join(out) == "naïve 😀 café" == ts.text and ts.stopped
    assert len(tok.decode_bytes(tok.encode("😀"))) == 4 and len(tok.encode(" 😀")) > 1  # split bytes


def test_generation_restores_training_mode():
    model = tiny().train()
    generate(model, torch.zeros(1, 2, dtype=torch.long), 3)
    assert model.training
    assert isinstance(stream(model, torch.zeros(1, 2, dtype=torch.long), 1), Generation)


# --- `nanogpt sample` ----------------------------------------------------------------------------

@pytest.fixture
def char_run(tmp_path):
    from nanogpt.checkpoint import model_state, save_checkpoint

    tok = CharTokenizer(list("\n !',.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(tmp_path / "run", 3, weights=model_state(m),
                    config={"model": m.config.to_dict(), "train": {}, "step": 3, "best_val_loss": None,
                            "tokenizer": tok.to_dict(), "nanogpt_version": "0"}, state={})
    return tmp_path / "run", tok, m


def test_cli_sample_json_matches_library_and_seed(char_run, capsys):
    from nanogpt.cli import main

    run, tok, model = char_run
    args = ["sample", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "25", "--json",
            "--num-samples", "2", "--top-k", "10", "--seed", "7"]
    assert main(args) == 0
    r = __import__("json").loads(capsys.readouterr().out)
    assert r["prompt"] == "ROMEO:" and r["new_tokens"] == [25, 25] and r["sliding_window"]
    g = torch.Generator().manual_seed(7)
    want = [tok.decode(generate(model.eval(), torch.tensor([tok.encode("ROMEO:")]), 25, temperature=0.8,
                                top_k=10, generator=g)[0, 6:].tolist()) for _ in range(2)]
    assert r["samples"] == want and want[0] != want[1]
    assert main(args) == 0 and __import__("json").loads(capsys.readouterr().out)["samples"] == want
    assert main(args[:-1] + ["8"]) == 0
    assert __import__("json").loads(capsys.readouterr().out)["samples"] != want


def test_cli_sample_streams_and_stops(char_run, capsys):
    from nanogpt.cli import main

    run, tok, model = char_run
    assert main(["sample", str(run), "--prompt", "ab", "--max-new-tokens", "12", "--temperature", "0"]) == 0
    out = capsys.readouterr()
    greedy = tok.decode(generate(model.eval(), torch.tensor([tok.encode("ab")]), 12, temperature=0)[0].tolist())
    assert out.out == greedy + "\n"
    assert "sliding window" not in out.err  # 2 + 12 - 1 < 16 positions
    stop = greedy[5:7]
    assert main(["sample", str(run), "--prompt", "ab", "--max-new-tokens", "12", "--temperature", "0",
                 "--stop", "QQQ", "--stop", stop]) == 0
    assert capsys.readouterr().out == greedy[: greedy.index(stop, 2)] + "\n"
    assert main(["sample", str(run), "--prompt", "ab", "--max-new-tokens", "0"]) == 0
    assert capsys.readouterr().out == "ab\n"


def test_cli_sample_errors(char_run, capsys):
    from nanogpt.cli import main

    run, _, _ = char_run
    assert main(["sample", str(run), "--temperature", "-1", "--top-p", "0", "--top-k", "0",
                 "--num-samples", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in ("temperature", "top_p", "top_k", "num-samples"))
    assert main(["sample", str(run), "--prompt", ""]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert main(["sample", str(run), "--prompt", "hello ~ world {"]) == 2
    assert "'{', '~'" in capsys.readouterr().err
    assert main(["sample", str(run / "nope")]) == 2


def test_cli_sample_interactive_subprocess(char_run):
    import subprocess
    import sys

    run, tok, model = char_run
    p = subprocess.run([sys.executable, "-m", "nanogpt", "sample", str(run), "--interactive",
                        "--temperature", "0", "--max-new-tokens", "5"],
                       input="ab\ncd\n\nignored\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    want = [tok.decode(generate(model.eval(), torch.tensor([tok.encode(s)]), 5, temperature=0)[0, 2:].tolist())
            for s in ("ab", "cd")]
    assert p.stdout == want[0] + "\n" + want[1] + "\n"
    assert p.stderr.count("prompt> ") == 3
    p = subprocess.run([sys.executable, "-m", "nanogpt", "sample", str(run), "--interactive"],
                       input="", capture_output=True, text=True, timeout=60)  # EOF at once
    assert p.returncode == 0 and p.stdout == ""


def test_fast_decoder_matches_model_forward_and_tracks_weight_changes():
    from nanogpt.engine import fast_decoder
    from nanogpt.kv_cache import KVCache

    for cfg in (dict(bias=True, activation="gelu_tanh"), dict(bias=False, activation="gelu")):
        model = tiny(block_size=16, **cfg)
        idx = torch.randint(0, 32, (3, 5))
        a, b = KVCache.for_model(model, 3), KVCache.for_model(model, 3)
        with torch.no_grad():
            model(idx[:, :4], cache=a)
            model(idx[:, :4], cache=b)
            want, _ = model(idx[:, 4:], cache=a)
            got = fast_decoder(model).step(idx[:, 4], b)
        assert torch.allclose(got, want[:, 0], rtol=0, atol=1e-10)
        assert torch.allclose(a.k[:, :, :, :5], b.k[:, :, :, :5], atol=1e-12)
        assert torch.allclose(a.v[:, :, :, :5], b.v[:, :, :, :5], atol=1e-12) and a.pos == b.pos == 5
    dec = fast_decoder(model)
    assert fast_decoder(model) is dec
    with torch.no_grad():
        model.lm_head.weight.mul_(2)  # an in-place update, as an optimizer step does
    assert fast_decoder(model) is not dec
    assert fast_decoder(Scripted(model.config)) is None  # a subclass keeps its own forward
    assert fast_decoder(model.train()) is None


def test_stop_escapes_for_the_shell():
    from nanogpt.sample import unescape

    assert unescape(r"\n\n") == "\n\n" and unescape(r"a\tb\r") == "a\tb\r"
    assert unescape(r"x\\ny") == "x\\ny"  # an escaped backslash stays one backslash
    assert unescape("THE END") == "THE END" and unescape(r"\q") == r"\q"
