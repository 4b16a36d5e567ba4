"""Tokenizers behind one small interface: character-level and GPT-2 BPE (tiktoken).

A tokenizer's `to_dict()` is its full JSON-serialisable description. It travels in the prepared
data's meta.json and in every checkpoint, so sampling never needs the data directory:
`tokenizer_from_dict(d)` rebuilds it. A char tokenizer's dict holds its whole vocabulary; a GPT-2
tokenizer's dict names the encoding, whose ranks come from (in order) the `ranks_path` argument,
the `NANOGPT_GPT2_TIKTOKEN` env var, or tiktoken's own download/cache.

Besides the `Tokenizer` protocol, both classes offer `encode_array` / `encode_batch_arrays`
returning numpy arrays: `nanogpt prepare` uses them to tokenize large corpora without building
Python lists of ints.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nanogpt.errors import NanoGPTError

GPT2_ENV = "NANOGPT_GPT2_TIKTOKEN"
GPT2_OPTION = "--gpt2-tiktoken"
GPT2_EOT = "<|endoftext|>"
GPT2_EOT_ID = 50256
GPT2_VOCAB_SIZE = 50257
# GPT-2's pre-tokenizer regex (tiktoken's r50k/gpt2 pattern), used when building the encoding from a
# local ranks file. Kept here as a fallback in case tiktoken_ext is not importable.
_R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer offers; see docs/DESIGN.md."""

    name: str  # "char" | "gpt2"
    vocab_size: int
    eot_id: int | None  # end-of-text id (gpt2: 50256; char: None)

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...

    def to_dict(self) -> dict: ...


def _as_int_list(ids: Any) -> list[int]:
    """Accept lists, numpy arrays and torch tensors of ids."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(i) for i in ids]


class CharTokenizer:
    """One token per Unicode character; the vocabulary is the sorted set of characters in the data.

    Ids are assigned in code-point order (as nanoGPT's shakespeare_char does), so the same text
    always gives the same vocabulary. Encoding a character outside the vocabulary raises a
    NanoGPTError that lists every offending character.
    """

    name = "char"
    eot_id = None

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        problems = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if problems:
            raise NanoGPTError(f"char vocabulary entries must be single characters, got {problems[:5]!r}")
        if len(set(chars)) != len(chars):
            raise NanoGPTError("char vocabulary has duplicate characters")
        if not chars:
            raise NanoGPTError("char vocabulary is empty (was the text empty?)")
        self.chars: list[str] = sorted(chars)
        self.vocab_size = len(self.chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        # Dense code point -> id table (-1: not in the vocabulary); at most 0x110000 entries.
        codepoints = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._lut = np.full(int(codepoints.max()) + 1, -1, dtype=np.int32)
        self._lut[codepoints] = np.arange(self.vocab_size, dtype=np.int32)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def encode_array(self, text: str, dtype: np.dtype = np.int64) -> np.ndarray:
        """Encode to an array of `dtype`, vectorised: utf-32 code points looked up in a dense table."""
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = self._lut[np.minimum(cps, len(self._lut) - 1)]
        ok = (ids >= 0) & (cps < len(self._lut))
        if not ok.all():
            bad = sorted({chr(c) for c in cps[~ok].tolist()})
            shown = ", ".join(repr(c) for c in bad[:20]) + (" ..." if len(bad) > 20 else "")
            raise NanoGPTError(
                f"{len(bad)} character(s) not in the char vocabulary ({self.vocab_size} chars): {shown}; "
                "use text made of the training data's characters, or re-prepare the data including them"
            )
        return ids.astype(dtype)

    def encode_batch_arrays(self, texts: Sequence[str], num_threads: int = 1,
                            dtype: np.dtype = np.int64) -> list[np.ndarray]:
        return [self.encode_array(t, dtype) for t in texts]

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        ids = _as_int_list(ids)
        bad = sorted({i for i in ids if not 0 <= i < self.vocab_size})
        if bad:
            raise NanoGPTError(f"token ids out of range for a {self.vocab_size}-char vocabulary: {bad[:10]}")
        return "".join(self.chars[i] for i in ids)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def to_dict(self) -> dict:
        return {"name": "char", "vocab_size": self.vocab_size, "chars": list(self.chars)}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class GPT2Tokenizer:
    """GPT-2's byte-level BPE through tiktoken (50257 tokens, `<|endoftext|>` = 50256).

    `encode` treats text that looks like `<|endoftext|>` as ordinary text (never as the special
    token), so user data cannot inject document boundaries; the id is added explicitly instead.
    """

    name = "gpt2"
    vocab_size = GPT2_VOCAB_SIZE
    eot_id = GPT2_EOT_ID

    def __init__(self, encoding: Any, source: str):
        self.enc = encoding  # tiktoken.Encoding
        self.source = source  # where the ranks came from (a path, or "tiktoken")

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_array(self, text: str, dtype: np.dtype = np.int64) -> np.ndarray:
        return np.asarray(self.enc.encode_ordinary(text), dtype=dtype)

    def encode_batch_arrays(self, texts: Sequence[str], num_threads: int = 1,
                            dtype: np.dtype = np.int64) -> list[np.ndarray]:
        # tiktoken encodes a batch on a thread pool and releases the GIL inside its Rust core.
        lists = self.enc.encode_ordinary_batch(list(texts), num_threads=max(1, num_threads))
        return [np.asarray(ids, dtype=dtype) for ids in lists]

    def decode(self, ids: Sequence[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        ids = _as_int_list(ids)
        bad = sorted({i for i in ids if not 0 <= i < self.vocab_size})
        if bad:
            raise NanoGPTError(f"token ids out of range for GPT-2's {self.vocab_size} tokens: {bad[:10]}")
        return self.enc.decode_bytes(ids)

    def to_dict(self) -> dict:
        return {"name": "gpt2", "vocab_size": self.vocab_size, "eot_id": self.eot_id}

    def __repr__(self) -> str:
        return f"GPT2Tokenizer(source={self.source!r})"


def _read_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken ranks file ("base64-token rank" per line).

    Same format as `tiktoken.load.load_tiktoken_bpe`, parsed here because that function copies
    local files into a cache keyed by *path*: a file later fixed in place would keep loading the
    stale cached copy.
    """
    ranks: dict[bytes, int] = {}
    try:
        contents = path.read_bytes()
    except OSError as e:
        raise NanoGPTError(f"cannot read GPT-2 ranks file {path}: {e.strerror}") from None
    for lineno, line in enumerate(contents.splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except Exception:
            raise NanoGPTError(
                f"{path} is not a tiktoken ranks file (bad line {lineno}); "
                f"point {GPT2_OPTION} / {GPT2_ENV} at GPT-2's gpt2.tiktoken"
            ) from None
    if len(ranks) != GPT2_EOT_ID or sorted(ranks.values()) != list(range(GPT2_EOT_ID)):
        raise NanoGPTError(
            f"{path} has {len(ranks)} ranks, but GPT-2 needs ranks 0..{GPT2_EOT_ID - 1}; "
            f"point {GPT2_OPTION} / {GPT2_ENV} at GPT-2's gpt2.tiktoken"
        )
    return ranks


@functools.lru_cache(maxsize=4)
def _gpt2_from_file(path: str, mtime_ns: int) -> GPT2Tokenizer:
    import tiktoken

    try:
        from tiktoken_ext.openai_public import r50k_pat_str as pattern
    except ImportError:  # pragma: no cover - tiktoken without its extension package
        pattern = _R50K_PATTERN
    enc = tiktoken.Encoding(
        name="gpt2",
        pat_str=pattern,
        mergeable_ranks=_read_ranks(Path(path)),
        special_tokens={GPT2_EOT: GPT2_EOT_ID},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )
    return GPT2Tokenizer(enc, source=path)


@functools.lru_cache(maxsize=1)
def _gpt2_from_tiktoken() -> GPT2Tokenizer:
    import tiktoken

    try:
        enc = tiktoken.get_encoding("gpt2")  # downloads once, then uses tiktoken's cache
    except Exception as e:  # network errors come in many types (requests, urllib, OSError)
        raise NanoGPTError(
            f"GPT-2 BPE ranks are not available offline (tiktoken could not download them: "
            f"{type(e).__name__}); pass {GPT2_OPTION} PATH or set {GPT2_ENV}=PATH to a local "
            f"gpt2.tiktoken ranks file"
        ) from None
    return GPT2Tokenizer(enc, source="tiktoken")


def get_gpt2_tokenizer(ranks_path: str | os.PathLike | None = None) -> GPT2Tokenizer:
    """GPT-2 BPE from `ranks_path`, else $NANOGPT_GPT2_TIKTOKEN, else tiktoken's download/cache."""
    origin = f"{GPT2_OPTION}"
    if not ranks_path:
        ranks_path = os.environ.get(GPT2_ENV) or None
        origin = f"${GPT2_ENV}"
    if ranks_path:
        path = Path(ranks_path).expanduser()
        if not path.is_file():
            raise NanoGPTError(
                f"GPT-2 ranks file {str(path)!r} (from {origin}) does not exist; "
                f"pass {GPT2_OPTION} PATH or set {GPT2_ENV}=PATH to a local gpt2.tiktoken"
            )
        resolved = path.resolve()
        return _gpt2_from_file(str(resolved), resolved.stat().st_mtime_ns)
    return _gpt2_from_tiktoken()


def tokenizer_from_dict(d: dict, *, ranks_path: str | os.PathLike | None = None) -> Tokenizer:
    """Rebuild a tokenizer from `to_dict()` output (meta.json, checkpoint config.json)."""
    if not isinstance(d, dict) or "name" not in d:
        raise NanoGPTError(f"not a tokenizer description (expected a dict with 'name'): {d!r:.80}")
    name = d["name"]
    if name == "char":
        chars = d.get("chars")
        if not isinstance(chars, list):
            raise NanoGPTError("char tokenizer description has no 'chars' list; re-run nanogpt prepare")
        tok = CharTokenizer(chars)
        if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
            raise NanoGPTError(
                f"char tokenizer description is inconsistent: vocab_size {d['vocab_size']} "
                f"but {tok.vocab_size} chars"
            )
        return tok
    if name == "gpt2":
        return get_gpt2_tokenizer(ranks_path)
    raise NanoGPTError(f"unknown tokenizer {name!r}; known: 'char', 'gpt2'")
