"""Tokenizers: char vocabulary and its errors, GPT-2 BPE from a local ranks file, descriptions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nanogpt import tokenizer as T
from nanogpt.errors import NanoGPTError
from nanogpt.tokenizer import CharTokenizer, Tokenizer, get_gpt2_tokenizer, tokenizer_from_dict


def test_char_vocab_is_sorted_and_round_trips():
    text = "hello, world!\nÜber 😀"
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))
    assert tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert ids == [tok.chars.index(c) for c in text]
    assert tok.decode(ids) == text
    assert tok.decode(np.array(ids)) == text  # arrays and tensors are accepted too
    assert tok.decode_bytes(ids) == text.encode("utf-8")
    assert tok.eot_id is None and tok.name == "char"
    assert isinstance(tok, Tokenizer)


def test_char_encode_lists_every_unknown_char():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(NanoGPTError) as e:
        tok.encode("a b x z ☃ x")
    msg = str(e.value)
    assert "3 character(s) not in the char vocabulary" in msg
    for c in ("'x'", "'z'", "'☃'"):
        assert c in msg


def test_char_dict_is_json_and_complete():
    tok = CharTokenizer.from_text("To be, or not to be\n")
    d = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(d)
    assert isinstance(again, CharTokenizer)
    assert again.chars == tok.chars
    assert again.encode("be or not") == tok.encode("be or not")


def test_char_bad_inputs():
    with pytest.raises(NanoGPTError, match="empty"):
        CharTokenizer.from_text("")
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(NanoGPTError, match="out of range"):
        tok.decode([0, 2])
    with pytest.raises(NanoGPTError, match="inconsistent"):
        tokenizer_from_dict({"name": "char", "vocab_size": 3, "chars": ["a", "b"]})
    with pytest.raises(NanoGPTError, match="unknown tokenizer 'bpe'"):
        tokenizer_from_dict({"name": "bpe"})


def test_gpt2_known_ids(gpt2_ranks_path):
    tok = get_gpt2_tokenizer(gpt2_ranks_path)
    assert (tok.vocab_size, tok.eot_id) == (50257, 50256)
    # Reference ids from GPT-2's published encoder.
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode("\n\n") == [628]
    assert tok.decode([50256]) == "<|endoftext|>"
    # Text that looks like the special token is ordinary text, never the EOT id.
    assert 50256 not in tok.encode("a <|endoftext|> b")


def test_gpt2_round_trip_and_partial_utf8(gpt2_ranks_path, shakespeare_path):
    tok = get_gpt2_tokenizer(gpt2_ranks_path)
    text = shakespeare_path.read_text(encoding="utf-8")[:20000] + " naïve 😀 日本語\r\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    emoji = tok.encode("😀")
    assert len(emoji) > 1  # a 4-byte character spread over several byte-level tokens
    partial = tok.decode_bytes(emoji[:1])
    assert partial and "😀".encode().startswith(partial) and partial != "😀".encode()
    assert tok.decode_bytes(emoji) == "😀".encode()
    arrays = tok.encode_batch_arrays(["ab cd", "ef"], num_threads=2)
    assert [a.tolist() for a in arrays] == [tok.encode("ab cd"), tok.encode("ef")]


def test_gpt2_from_dict_uses_env(gpt2_ranks_path, monkeypatch):
    monkeypatch.setenv(T.GPT2_ENV, str(gpt2_ranks_path))
    tok = tokenizer_from_dict(json.loads(json.dumps(get_gpt2_tokenizer().to_dict())))
    assert tok.name == "gpt2" and tok.encode("Hello world") == [15496, 995]


def test_gpt2_offline_error_names_option_and_env(monkeypatch):
    import tiktoken

    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.delenv(T.GPT2_ENV, raising=False)
    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    T._gpt2_from_tiktoken.cache_clear()
    try:
        with pytest.raises(NanoGPTError) as e:
            get_gpt2_tokenizer()
    finally:
        T._gpt2_from_tiktoken.cache_clear()
    assert "--gpt2-tiktoken" in str(e.value) and "NANOGPT_GPT2_TIKTOKEN" in str(e.value)


def test_gpt2_missing_or_bad_ranks_file(tmp_path, monkeypatch):
    with pytest.raises(NanoGPTError, match="does not exist.*NANOGPT_GPT2_TIKTOKEN"):
        get_gpt2_tokenizer(tmp_path / "nope.tiktoken")
    monkeypatch.setenv(T.GPT2_ENV, str(tmp_path / "missing"))
    with pytest.raises(NanoGPTError, match=r"from \$NANOGPT_GPT2_TIKTOKEN"):
        get_gpt2_tokenizer()
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not base64 at all\n")
    with pytest.raises(NanoGPTError, match="not a tiktoken ranks file"):
        get_gpt2_tokenizer(bad)
    short = tmp_path / "short.tiktoken"
    short.write_text("IQ== 0\nIg== 1\n")
    with pytest.raises(NanoGPTError, match="has 2 ranks"):
        get_gpt2_tokenizer(short)
