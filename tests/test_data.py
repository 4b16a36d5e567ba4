"""Token files, `prepare` for every input format and its errors, and the BatchLoader contract."""

from __future__ import annotations

import json
import os
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from nanogpt import data_prepare
from nanogpt.cli import main as cli_main
from nanogpt.data import (HEADER_SIZE, BatchLoader, PrepareConfig, load_meta, load_tokenizer, pack_header,
                          prepare, read_header, read_tokens)
from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.tokenizer import get_gpt2_tokenizer

# ---------------------------------------------------------------- token files


def _write(path: Path, tokens, dtype) -> Path:
    path.write_bytes(pack_header(np.dtype(dtype), len(tokens)) + np.asarray(tokens, dtype=dtype).tobytes())
    return path


def test_token_file_round_trip_uint16_and_uint32(tmp_path):
    small = _write(tmp_path / "a.bin", [0, 1, 65535], "<u2")
    assert read_header(small) == (np.dtype("<u2"), 3)
    assert read_tokens(small).tolist() == [0, 1, 65535]
    big = _write(tmp_path / "b.bin", [0, 70000, 2**32 - 1], "<u4")
    assert read_tokens(big).tolist() == [0, 70000, 2**32 - 1]
    assert len(read_tokens(_write(tmp_path / "c.bin", [], "<u2"))) == 0


@pytest.mark.parametrize("damage", ["truncate", "append", "magic", "short", "dtype"])
def test_corrupted_token_files(tmp_path, damage):
    path = _write(tmp_path / "t.bin", list(range(100)), "<u2")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:-7]
    elif damage == "append":
        raw += b"\0\0"
    elif damage == "magic":
        raw[:4] = b"XXXX"
    elif damage == "short":
        raw = raw[:10]
    elif damage == "dtype":
        raw[12] = 9
    path.write_bytes(bytes(raw))
    with pytest.raises(NanoGPTError, match="corrupted or truncated token file .*prepare --force"):
        read_tokens(path)


# ---------------------------------------------------------------- prepare


def _prep(source, out, **kw) -> data_prepare.PrepareResult:
    kw.setdefault("workers", 1)
    return prepare(PrepareConfig(source=str(source), out_dir=str(out), progress=False, **kw))


def _decoded(out: Path) -> str:
    tok = load_tokenizer(out)
    ids = np.concatenate([read_tokens(out / "train.bin"), read_tokens(out / "val.bin")])
    return tok.decode_bytes(ids).decode("utf-8")


def test_prepare_shakespeare_char_matches_nanogpt_and_round_trips(tmp_path, shakespeare_path):
    r = _prep("shakespeare_char", tmp_path / "sc")
    text = shakespeare_path.read_text(encoding="utf-8")
    # nanoGPT's data/shakespeare_char/prepare.py gives exactly these counts and 65 chars.
    assert r.counts == {"train": 1003854, "val": 111540}
    assert (r.vocab_size, r.dtype, r.skipped) == (65, "uint16", False)
    assert _decoded(tmp_path / "sc") == text
    meta = load_meta(tmp_path / "sc")
    assert meta["source_sha256"] == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert meta["counts"] == r.counts and meta["tokenizer"]["name"] == "char"
    assert sorted(os.listdir(tmp_path / "sc")) == ["meta.json", "train.bin", "val.bin"]


def test_prepare_shakespeare_gpt2_round_trips(tmp_path, shakespeare_path, gpt2_ranks_path):
    r = _prep("shakespeare", tmp_path / "s")
    assert sum(r.counts.values()) == 338025  # nanoGPT: 301,966 + 36,059 (split before encoding)
    assert r.counts["val"] == 338025 - int(338025 * 0.9)
    assert r.vocab_size == 50257 and r.dtype == "uint16"
    assert _decoded(tmp_path / "s") == shakespeare_path.read_text(encoding="utf-8")


def test_rerun_is_a_noop_unless_forced_or_changed(tmp_path, shakespeare_path):
    out = tmp_path / "sc"
    _prep("shakespeare_char", out)
    stamp = (out / "train.bin").stat().st_mtime_ns
    again = _prep("shakespeare_char", out)
    assert again.skipped and again.counts == {"train": 1003854, "val": 111540}
    assert (out / "train.bin").stat().st_mtime_ns == stamp
    assert not _prep("shakespeare_char", out, force=True).skipped
    changed = _prep("shakespeare_char", out, val_fraction=0.2)
    assert not changed.skipped and changed.counts["val"] == 1115394 - int(1115394 * 0.8)


def test_prepare_text_file_with_multibyte_and_crlf(tmp_path, gpt2_ranks_path):
    text = "".join(f"Line {i}: naïve café 😀\r\n" for i in range(3000))
    src = tmp_path / "mine.txt"
    src.write_bytes(text.encode("utf-8"))
    for tk in ("gpt2", "char"):
        r = _prep(src, tmp_path / tk, tokenizer=tk)
        assert _decoded(tmp_path / tk) == text, tk
        assert r.source_bytes == len(text.encode("utf-8"))


def test_prepare_big_text_is_cut_into_pieces_exactly(tmp_path, gpt2_ranks_path, monkeypatch):
    # Force many small pieces: tokens must equal the tokens of the whole text.
    monkeypatch.setattr(data_prepare, "_MIN_SEGMENT", 257)
    monkeypatch.setattr(data_prepare, "_TASK_CHARS", 1000)
    monkeypatch.setattr("nanogpt.sources._READ_CHARS", 311)
    rng = random.Random(0)
    alphabet = list("ab  \n\n\t\r1'!é😀\x1c\u00a0\u3000,.") + ["'s", "  \n", "hello"]
    text = "".join(rng.choice(alphabet) for _ in range(40000))
    src = tmp_path / "nasty.txt"
    src.write_text(text, encoding="utf-8", newline="")
    _prep(src, tmp_path / "o", val_fraction=0.0)
    tok = get_gpt2_tokenizer()
    assert read_tokens(tmp_path / "o" / "train.bin").tolist() == tok.encode(text)


def test_prepare_directory_puts_eot_between_documents(tmp_path, gpt2_ranks_path):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    docs = {"a.txt": "First document.\n", "b.txt": "Second one", "sub/c.txt": "Third.", "skip.md": "no"}
    for name, body in docs.items():
        (d / name).write_text(body)
    (d / "empty.txt").write_text("")
    r = _prep(d, tmp_path / "o", val_fraction=0.0)
    ids = read_tokens(tmp_path / "o" / "train.bin").tolist()
    tok = get_gpt2_tokenizer()
    expected = []
    for name in ("a.txt", "b.txt", "sub/c.txt"):  # sorted paths; empty.txt adds nothing; .md skipped
        expected += tok.encode(docs[name]) + [50256]
    assert ids == expected and r.counts["val"] == 0


def test_prepare_jsonl_and_its_errors(tmp_path, gpt2_ranks_path):
    src = tmp_path / "docs.jsonl"
    rows = [{"text": "alpha beta", "id": 1}, {"text": "gamma", "id": 2}, {"text": "délta 😀", "id": 3}]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    _prep(src, tmp_path / "o", val_fraction=0.0)
    tok = get_gpt2_tokenizer()
    assert read_tokens(tmp_path / "o" / "train.bin").tolist() == sum((tok.encode(r["text"]) + [50256] for r in rows), [])
    _prep(src, tmp_path / "two", val_fraction=0.0, max_documents=2)
    assert read_tokens(tmp_path / "two" / "train.bin").tolist().count(50256) == 2
    with pytest.raises(NanoGPTError, match="no 'txt' field .*did you mean 'text'"):
        _prep(src, tmp_path / "x", text_field="txt")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(NanoGPTError, match=r"bad.jsonl:2 is not valid JSON"):
        _prep(bad, tmp_path / "y")


class _FakeDatasets(types.ModuleType):
    """Stands in for the `datasets` library: an in-memory streamed split."""

    def __init__(self, rows):
        super().__init__("datasets")
        self.rows, self.calls = rows, []

    def load_dataset(self, path, name=None, split=None, streaming=False):
        self.calls.append((path, name, split, streaming))
        return iter(self.rows)


def test_prepare_hf_dataset_streams_through_a_process_pool(tmp_path, gpt2_ranks_path, monkeypatch):
    rng = random.Random(1)
    words = ["the", "cat", "sat", "on", "a", "mat", "\n", "naïve", "😀", "42"]
    rows = [{"text": " ".join(rng.choice(words) for _ in range(rng.randint(0, 60)))} for _ in range(300)]
    fake = _FakeDatasets(rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setattr(data_prepare, "_TASK_DOCS", 16)  # many tasks for the pool
    r = prepare(PrepareConfig(source="fineweb-edu", out_dir=str(tmp_path / "fw"), progress=False, workers=2))
    assert fake.calls == [("HuggingFaceFW/fineweb-edu", "sample-10BT", "train", True)]
    tok = get_gpt2_tokenizer()
    expected = sum((tok.encode(row["text"]) + [50256] for row in rows), [])
    ids = np.concatenate([read_tokens(tmp_path / "fw" / s) for s in ("train.bin", "val.bin")]).tolist()
    assert ids == expected and r.counts["val"] == len(expected) - int(len(expected) * 0.9)
    fake.rows = rows[:5]
    again = prepare(PrepareConfig(source="hf:me/mine:cfg", out_dir=str(tmp_path / "m"), progress=False,
                                  workers=2, max_documents=3))
    assert fake.calls[-1] == ("me/mine", "cfg", "train", True)
    assert again.counts["train"] + again.counts["val"] == sum(len(tok.encode(r["text"])) + 1 for r in rows[:3])


def test_prepare_hf_dataset_with_the_real_datasets_library(tmp_path, gpt2_ranks_path, monkeypatch):
    """The real `datasets` library (the test extra), offline, on a local data directory."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    src = tmp_path / "corpus"
    src.mkdir()
    rows = [{"id": i, "text": f"Document {i}: naïve 😀 " + "all the world's a stage " * (i % 5)}
            for i in range(120)]
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = prepare(PrepareConfig(source=f"hf:{src}", out_dir=str(tmp_path / "out"), progress=False,
                              workers=2, max_documents=100))
    tok = get_gpt2_tokenizer()
    expected = sum((tok.encode(row["text"]) + [50256] for row in rows[:100]), [])
    ids = np.concatenate([read_tokens(tmp_path / "out" / s) for s in ("train.bin", "val.bin")]).tolist()
    assert ids == expected and r.counts["train"] + r.counts["val"] == len(expected)


def test_hf_without_datasets_library_or_with_char(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(NanoGPTError, match=r"pip install 'nanogpt\[datasets\]'"):
        _prep("openwebtext", tmp_path / "o")
    with pytest.raises(ConfigError, match="--tokenizer gpt2"):
        _prep("openwebtext", tmp_path / "o", tokenizer="char")


def test_bad_inputs_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(NanoGPTError, match="empty"):
        _prep(empty, tmp_path / "o")
    (tmp_path / "nodocs").mkdir()
    with pytest.raises(NanoGPTError, match="no .txt files"):
        _prep(tmp_path / "nodocs", tmp_path / "o")
    with pytest.raises(NanoGPTError, match="did you mean 'openwebtext'"):
        _prep("openwebtxt", tmp_path / "o")
    with pytest.raises(ConfigError) as e:
        _prep("shakespeare_char", tmp_path / "o", val_fraction=1.5, workers=-1)
    assert "val_fraction" in str(e.value) and "workers" in str(e.value)  # every problem at once
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(NanoGPTError, match="not valid UTF-8"):
        _prep(latin1, tmp_path / "o", tokenizer="char")
    assert not (tmp_path / "o" / "meta.json").exists()


def test_interrupted_prepare_leaves_nothing_that_looks_complete(tmp_path, shakespeare_path, monkeypatch):
    out = tmp_path / "sc"
    _prep("shakespeare_char", out)  # a complete older result in the same dir

    def dies(*args, **kwargs):
        yield np.zeros(10, dtype=np.uint16), 10
        raise KeyboardInterrupt

    monkeypatch.setattr(data_prepare, "encode_stream", dies)
    with pytest.raises(KeyboardInterrupt):
        _prep("shakespeare_char", out, force=True)
    assert not (out / "meta.json").exists()  # the marker went first, so loaders refuse the dir
    assert sorted(os.listdir(out)) == ["train.bin", "val.bin"]  # no temp files left behind
    with pytest.raises(NanoGPTError, match="never completely prepared"):
        BatchLoader(out, "train", 8, 2)
    monkeypatch.undo()
    assert not _prep("shakespeare_char", out).skipped  # and a re-run does the work again


def test_cli_prepare_summary_noop_and_errors(tmp_path, shakespeare_path, capsys):
    out = tmp_path / "sc"
    assert cli_main(["prepare", "shakespeare_char", "--out-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1,003,854" in printed and "111,540" in printed and "MB/s" in printed and str(out) in printed
    assert cli_main(["prepare", "shakespeare_char", "--out-dir", str(out), "--no-progress"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli_main(["prepare", "shakespeare_chr", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nanogpt prepare: error:") and "shakespeare_char" in err and "Traceback" not in err


# ---------------------------------------------------------------- BatchLoader


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """A prepared-looking dir whose tokens are their own positions (mod 50000)."""
    (tmp_path / "d").mkdir()
    d = tmp_path / "d"
    _write(d / "train.bin", np.arange(1000) % 50000, "<u2")
    _write(d / "val.bin", np.arange(20), "<u2")
    (d / "meta.json").write_text(json.dumps({"tokenizer": {"name": "gpt2"}, "vocab_size": 50257,
                                             "counts": {"train": 1000, "val": 20}}))
    return d


def _batches(loader, n):
    return [loader.next_batch() for _ in range(n)]


def test_batches_are_shifted_windows(tiny_dir):
    x, y = BatchLoader(tiny_dir, "train", block_size=16, batch_size=4, seed=3).next_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    # tokens are positions, so each row is consecutive and y is x shifted by one
    assert torch.equal(x[:, 1:] - x[:, :1], torch.arange(1, 16).expand(4, 15))
    assert torch.equal(y, x + 1) and int(x.max()) + 1 <= 999


def test_seeded_and_exactly_resumable(tiny_dir):
    a = BatchLoader(tiny_dir, "train", 16, 4, seed=7)
    first = _batches(a, 3)
    state = json.loads(json.dumps(a.state_dict()))
    rest = _batches(a, 5)
    b = BatchLoader(tiny_dir, "train", 16, 4, seed=7)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(first, _batches(b, 3)))
    c = BatchLoader(tiny_dir, "train", 16, 4, seed=7)
    c.load_state_dict(state)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(rest, _batches(c, 5)))
    other = BatchLoader(tiny_dir, "train", 16, 4, seed=8).next_batch()[0]
    assert not torch.equal(other, first[0][0])
    with pytest.raises(ConfigError, match="seed"):
        BatchLoader(tiny_dir, "train", 16, 4, seed=9).load_state_dict(state)


def test_epochs_visit_every_window_once(tiny_dir):
    loader = BatchLoader(tiny_dir, "train", block_size=10, batch_size=7, seed=1, epochs=True)
    n = loader.num_windows
    assert n == 98 and loader.phase_slack == 999 - 980  # one window given up for the phase
    # tokens equal their positions, so a window's first token is its offset
    starts = torch.cat([x[:, 0] for x, _ in _batches(loader, 30)]).tolist()  # 210 samples > 2 epochs
    phases = []
    for epoch in (starts[:n], starts[n:2 * n]):  # one grid per epoch, every window once
        phase = min(epoch)
        assert 0 <= phase <= loader.phase_slack
        assert sorted(epoch) == list(range(phase, phase + 980, 10))
        phases.append(phase)
    assert starts[:n] != starts[n:2 * n]  # a fresh shuffle per epoch
    assert loader.epoch == pytest.approx(210 / 98)
    # the grid moves between epochs (phases drawn from 20 values; seed 1 gives distinct ones)
    assert len({BatchLoader(tiny_dir, "train", 10, 7, seed=s, epochs=True)._block("perm", 0)[0] % 10
                for s in range(10)}) > 1


@pytest.mark.parametrize("epochs", [False, True])
def test_ddp_ranks_split_the_single_process_stream(tiny_dir, epochs):
    W, B, steps = 2, 3, 6
    single = BatchLoader(tiny_dir, "train", 8, B, seed=5, epochs=epochs)
    micro = [single.next_batch()[0] for _ in range(steps * W)]
    ranks = [BatchLoader(tiny_dir, "train", 8, B, seed=5, rank=r, world_size=W, epochs=epochs) for r in range(W)]
    for k in range(steps):
        per_rank = [ranks[r].next_batch()[0] for r in range(W)]
        for r in range(W):
            assert torch.equal(per_rank[r], micro[k * W + r])
        if epochs:  # ranks never share a window within a step
            assert not set(per_rank[0][:, 0].tolist()) & set(per_rank[1][:, 0].tolist())
    # resuming with another world size continues the same global stream
    resumed = BatchLoader(tiny_dir, "train", 8, B, seed=5, epochs=epochs)
    resumed.load_state_dict(ranks[0].state_dict())
    nxt = [single.next_batch()[0] for _ in range(2)]
    assert torch.equal(resumed.next_batch()[0], nxt[0])


def test_loader_errors(tiny_dir, tmp_path):
    with pytest.raises(NanoGPTError, match="20 tokens, fewer than block_size \\+ 1 = 21"):
        BatchLoader(tiny_dir, "val", block_size=20, batch_size=1)
    BatchLoader(tiny_dir, "val", block_size=19, batch_size=1).next_batch()  # exactly enough
    with pytest.raises(ConfigError) as e:
        BatchLoader(tiny_dir, "train", block_size=0, batch_size=-1, rank=2, world_size=2)
    assert "block_size" in str(e.value) and "batch_size" in str(e.value) and "rank 2" in str(e.value)
    with pytest.raises(NanoGPTError, match="does not exist"):
        BatchLoader(tmp_path / "nowhere", "train", 8, 2)
    with pytest.raises(NanoGPTError, match="does not exist; run nanogpt prepare"):
        BatchLoader(tiny_dir, "test", 8, 2)


def test_short_text_prepares_but_cannot_feed_a_block(tmp_path):
    src = tmp_path / "tiny.txt"
    src.write_text("just a few words\n")
    _prep(src, tmp_path / "o", tokenizer="char")
    with pytest.raises(NanoGPTError, match="fewer than block_size"):
        BatchLoader(tmp_path / "o", "train", block_size=64, batch_size=2)
    assert HEADER_SIZE == 64
