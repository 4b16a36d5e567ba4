"""Sources: dataset names, local paths, tiny Shakespeare from env / cache / a verified download."""

from __future__ import annotations

import hashlib

import pytest

from nanogpt import sources as S
from nanogpt.errors import NanoGPTError


@pytest.fixture
def no_shakespeare_env(monkeypatch, tmp_path):
    monkeypatch.delenv(S.SHAKESPEARE_ENV, raising=False)
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_named_datasets_resolve(shakespeare_path):
    sc = S.resolve_source("shakespeare_char")
    assert (sc.kind, sc.tokenizer, sc.documents, sc.paths) == ("text", "char", False, [shakespeare_path])
    assert S.resolve_source("shakespeare").tokenizer == "gpt2"
    fw = S.resolve_source("fineweb-edu")
    assert (fw.kind, fw.hf_path, fw.hf_config) == ("hf", "HuggingFaceFW/fineweb-edu", "sample-10BT")
    assert S.resolve_source("openwebtext").hf_path == "Skylion007/openwebtext"
    mine = S.resolve_source("hf:someone/corpus:en")
    assert (mine.name, mine.hf_path, mine.hf_config) == ("corpus-en", "someone/corpus", "en")
    with pytest.raises(NanoGPTError, match="hf:OWNER/NAME"):
        S.resolve_source("hf:nobody")


def test_unknown_names_suggest_close_matches():
    with pytest.raises(NanoGPTError) as e:
        S.resolve_source("fineweb_edu")
    assert "did you mean 'fineweb-edu'" in str(e.value)
    with pytest.raises(NanoGPTError, match="neither a known dataset nor an existing file"):
        S.resolve_source("zzzzzz")


def test_local_paths(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hi\n")
    src = S.resolve_source(str(f))
    assert (src.kind, src.name, src.documents) == ("text", "notes", False)
    assert S.source_checksum(src) == hashlib.sha256(b"hi\n").hexdigest()
    j = tmp_path / "rows.jsonl"
    j.write_text('{"text": "a"}\n')
    assert S.resolve_source(str(j)).kind == "jsonl"
    d = tmp_path / "dir"
    d.mkdir()
    (d / "x.txt").write_text("x")
    (d / "y.txt").write_text("y")
    one = S.source_checksum(S.resolve_source(str(d)))
    (d / "y.txt").write_text("z")
    assert S.source_checksum(S.resolve_source(str(d))) != one  # contents are part of the checksum


def test_explicit_and_env_shakespeare(shakespeare_path, no_shakespeare_env, monkeypatch, tmp_path):
    assert S.shakespeare_path(shakespeare_path) == shakespeare_path
    with pytest.raises(NanoGPTError, match="from --shakespeare.*NANOGPT_SHAKESPEARE"):
        S.shakespeare_path(tmp_path / "missing.txt")
    monkeypatch.setenv(S.SHAKESPEARE_ENV, str(tmp_path / "gone.txt"))
    with pytest.raises(NanoGPTError, match=r"from \$NANOGPT_SHAKESPEARE"):
        S.shakespeare_path()


def test_download_verifies_and_caches(shakespeare_path, no_shakespeare_env):
    url = shakespeare_path.resolve().as_uri()  # file:// stands in for the web
    got = S.shakespeare_path(url=url, progress=False)
    assert got == no_shakespeare_env / "tinyshakespeare.txt"
    assert S.sha256_file(got) == S.SHAKESPEARE_SHA256
    # the second call uses the verified cache and never touches the (now unreachable) URL
    assert S.shakespeare_path(url="file:///nonexistent/input.txt", progress=False) == got


def test_download_with_bad_checksum_leaves_no_file(no_shakespeare_env, tmp_path):
    fake = tmp_path / "fake.txt"
    fake.write_text("not shakespeare")
    with pytest.raises(NanoGPTError, match="expected 86c4e6aa"):
        S.shakespeare_path(url=fake.as_uri(), progress=False)
    assert list(no_shakespeare_env.iterdir()) == []  # no partial or wrong file in the cache


def test_offline_error_says_what_to_set(no_shakespeare_env):
    with pytest.raises(NanoGPTError) as e:
        S.shakespeare_path(url="file:///nonexistent/input.txt", progress=False)
    msg = str(e.value)
    assert "cannot download tiny Shakespeare" in msg
    assert "NANOGPT_SHAKESPEARE" in msg and "--shakespeare" in msg


def test_iter_documents_pieces_and_documents(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "_READ_CHARS", 4)
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcdefghij\r\n")
    pieces = list(S.iter_documents(S.resolve_source(str(f))))
    assert "".join(p for p, _ in pieces) == "abcdefghij\r\n"  # \r\n kept exactly
    assert not any(end for _, end in pieces)
    d = tmp_path / "d"
    d.mkdir()
    (d / "1.txt").write_text("one two three")
    (d / "2.txt").write_text("four")
    docs = list(S.iter_documents(S.resolve_source(str(d))))
    assert [e for _, e in docs].count(True) == 2 and "".join(p for p, _ in docs) == "one two threefour"
