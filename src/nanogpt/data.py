"""Prepared token data: the on-disk format, `prepare()`, and the training batch loader.

A prepared data dir holds `train.bin`, `val.bin` and `meta.json`. Each .bin is a 64-byte header
(magic b"NGPTTOK\\0", format version, dtype code, token count) followed by the tokens as uint16
when the vocabulary fits, else uint32. meta.json is written last and marks the dir complete.

The tokenizing pipeline (reading sources, parallel encoding, atomic writing) lives in
`nanogpt.data_prepare`; this module keeps the format, the options dataclass and the loader, which
is what training and evaluation import.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import tyro

from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.tokenizer import Tokenizer, tokenizer_from_dict

MAGIC = b"NGPTTOK\0"
FORMAT_VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQ")  # magic, version, dtype code, token count; zero-padded to 64
DTYPES: dict[int, np.dtype] = {1: np.dtype("<u2"), 2: np.dtype("<u4")}
META_VERSION = 1


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536), else uint32."""
    return DTYPES[1] if vocab_size <= 2**16 else DTYPES[2]


def dtype_code(dtype: np.dtype) -> int:
    for code, dt in DTYPES.items():
        if np.dtype(dtype) == dt:
            return code
    raise ValueError(f"unsupported token dtype {dtype}")


def pack_header(dtype: np.dtype, count: int) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, dtype_code(dtype), count).ljust(HEADER_SIZE, b"\0")


def _corrupt(path: Path, why: str) -> NanoGPTError:
    return NanoGPTError(
        f"corrupted or truncated token file {path}: {why}; re-run nanogpt prepare --force"
    )


def read_header(path: str | os.PathLike) -> tuple[np.dtype, int]:
    """Validate a token file's header against its size; return (dtype, token count)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
    except FileNotFoundError:
        raise NanoGPTError(f"token file {path} does not exist; run nanogpt prepare first") from None
    except OSError as e:
        raise NanoGPTError(f"cannot read token file {path}: {e.strerror}") from None
    if len(head) < HEADER_SIZE:
        raise _corrupt(path, f"{size} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, code, count = _HEADER.unpack_from(head)
    if magic != MAGIC:
        raise _corrupt(path, "not a nanogpt token file (bad magic)")
    if version != FORMAT_VERSION:
        raise NanoGPTError(
            f"token file {path} has format version {version}, this nanogpt reads version "
            f"{FORMAT_VERSION}; re-run nanogpt prepare --force"
        )
    if code not in DTYPES:
        raise _corrupt(path, f"unknown dtype code {code}")
    dtype = DTYPES[code]
    expected = HEADER_SIZE + count * dtype.itemsize
    if size != expected:
        raise _corrupt(path, f"header says {count} tokens ({expected} bytes) but the file has {size} bytes")
    return dtype, count


def read_tokens(path: str | os.PathLike) -> np.ndarray:
    """A read-only memmap of the tokens past the header (validated against the file size)."""
    dtype, count = read_header(path)
    if count == 0:
        return np.empty(0, dtype=dtype)  # np.memmap cannot map zero bytes
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(count,))


def load_meta(data_dir: str | os.PathLike) -> dict:
    """meta.json of a prepared data dir; its absence means prepare never finished there."""
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        if not Path(data_dir).is_dir():
            raise NanoGPTError(
                f"data dir {data_dir} does not exist; run 'nanogpt prepare NAME|PATH --out-dir {data_dir}'"
            )
        raise NanoGPTError(
            f"{data_dir} has no meta.json, so it was never completely prepared; "
            f"run 'nanogpt prepare NAME|PATH --out-dir {data_dir}' (with --force to redo it)"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NanoGPTError(f"cannot read {path} ({e}); re-run nanogpt prepare --force") from None
    if not isinstance(meta, dict) or "tokenizer" not in meta or "vocab_size" not in meta:
        raise NanoGPTError(f"{path} is not a nanogpt meta.json; re-run nanogpt prepare --force")
    return meta


def load_tokenizer(data_dir: str | os.PathLike, *, ranks_path: str | None = None) -> Tokenizer:
    return tokenizer_from_dict(load_meta(data_dir)["tokenizer"], ranks_path=ranks_path)


# Random mode draws window offsets in chunks of this many samples, each chunk from its own seeded
# generator, so the offset of sample p is a pure function of (seed, p).
_CHUNK = 4096


class BatchLoader:
    """Batches of `(x, y)` windows from a split's memmapped tokens, seeded and exactly resumable.

    x is `(B, T)` int64 with T = block_size, y is x shifted by one token. Every batch is cut
    from an endless *global sample stream* that depends only on the seed and the data:

    - random mode (`epochs=False`, nanoGPT's): sample p starts at a uniform random offset in
      [0, n - T - 1], drawn from a generator seeded by (seed, p // 4096);
    - epoch mode (`epochs=True`): epoch e cuts the data into `num_windows` windows starting at
      phase_e + multiples of T (x windows never overlap), in an order shuffled by (seed, e); the
      stream is epoch 0's windows, then epoch 1's, ... Every window is seen exactly once per
      epoch, without replacement. The phase is drawn per epoch in [0, slack], where one window
      is given up (when there are two or more) so that the slack spans every position modulo T:
      each epoch shows tokens at new positions instead of the same grid every time.

    DDP guarantee: the loader of rank r in a world of W reads, at its k-th call, the stream
    samples [(k*W + r)*B, (k*W + r + 1)*B). So the union over ranks of batch k (in rank order)
    is exactly micro-batches k*W .. k*W + W - 1 of a world_size=1 loader with the same seed and
    batch size: a W-process run sees the same data as one process with W-fold gradient
    accumulation. Ranks never share a sample position, so in epoch mode they never share a
    window within an epoch.

    `state_dict()` stores the global number of samples consumed (plus the seed), so resuming,
    even with another world size or batch size, continues the same stream where it stopped.
    """

    def __init__(self, data_dir: str | os.PathLike, split: str, block_size: int, batch_size: int, *,
                 seed: int = 0, rank: int = 0, world_size: int = 1, epochs: bool = False):
        problems = []
        for name, value, low in (("block_size", block_size, 1), ("batch_size", batch_size, 1),
                                 ("world_size", world_size, 1), ("rank", rank, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (rank, world_size))
        if ints and world_size >= 1 and rank >= world_size:
            problems.append(f"rank {rank} must be < world_size {world_size}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            problems.append(f"seed must be a non-negative integer, got {seed!r}")
        if problems:
            raise ConfigError("batch loader options", problems)
        self.data_dir = Path(data_dir)
        self.split = split
        self.meta = load_meta(data_dir)
        self.tokens = read_tokens(self.data_dir / f"{split}.bin")
        self.block_size, self.batch_size = block_size, batch_size
        self.seed, self.rank, self.world_size, self.epochs = seed, rank, world_size, epochs
        n = len(self.tokens)
        if n < block_size + 1:
            raise NanoGPTError(
                f"the {split} split of {data_dir} has {n} tokens, fewer than block_size + 1 = "
                f"{block_size + 1}; use a smaller block_size or more text (or a larger --val-fraction)"
            )
        # Epoch mode: windows per epoch, and how far the grid may shift (see the docstring).
        whole = (n - 1) // block_size
        self.num_windows = whole - 1 if whole >= 2 else whole
        self.phase_slack = (n - 1) - self.num_windows * block_size  # >= T - 1 when whole >= 2
        self.consumed = 0  # global samples drawn by all ranks together
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def epoch(self) -> float:
        """Fractional number of passes over the split's windows (epoch mode) or tokens (random)."""
        per_epoch = self.num_windows if self.epochs else max(1, self.num_tokens // self.block_size)
        return self.consumed / per_epoch

    def _block(self, kind: str, index: int) -> np.ndarray:
        key = (kind, index)
        if key not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            if kind == "rand":  # one chunk of random offsets
                rng = np.random.default_rng([self.seed, 0, index])
                block = rng.integers(0, self.num_tokens - self.block_size, size=_CHUNK)
            else:  # one epoch's permutation of window starts
                rng = np.random.default_rng([self.seed, 1, index])
                phase = int(rng.integers(0, self.phase_slack + 1))
                block = phase + rng.permutation(self.num_windows) * self.block_size
            self._cache[key] = block
        return self._cache[key]

    def offsets(self, start: int, count: int) -> np.ndarray:
        """Token offsets of global stream samples [start, start + count)."""
        size = self.num_windows if self.epochs else _CHUNK
        kind = "perm" if self.epochs else "rand"
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            p = start + done
            block, within = divmod(p, size)
            take = min(count - done, size - within)
            out[done:done + take] = self._block(kind, block)[within:within + take]
            done += take
        return out

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.batch_size, self.block_size
        start = self.consumed + self.rank * B
        offs = self.offsets(start, B)
        idx = offs[:, None] + np.arange(T + 1)  # (B, T+1) token positions
        windows = torch.from_numpy(self.tokens[idx].astype(np.int64))  # (B, T+1)
        self.consumed += self.world_size * B
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "seed": self.seed, "consumed": self.consumed, "epochs": self.epochs,
                "split": self.split, "num_tokens": self.num_tokens, "block_size": self.block_size}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        problems = []
        if d.get("version") != 1:
            problems.append(f"unknown loader state version {d.get('version')!r}")
        if d.get("seed") != self.seed:
            problems.append(f"seed {d.get('seed')!r} differs from this loader's {self.seed}")
        if d.get("epochs") != self.epochs:
            problems.append(f"epochs={d.get('epochs')!r} differs from this loader's {self.epochs}")
        if d.get("num_tokens") != self.num_tokens:
            problems.append(f"the {self.split} split has {self.num_tokens} tokens, the saved state "
                            f"{d.get('num_tokens')!r} (was the data re-prepared?)")
        if self.epochs and d.get("block_size") != self.block_size:
            problems.append(f"block_size {d.get('block_size')!r} differs from {self.block_size} in epoch mode")
        consumed = d.get("consumed")
        if isinstance(consumed, bool) or not isinstance(consumed, int) or consumed < 0:
            problems.append(f"consumed must be a non-negative integer, got {consumed!r}")
        if problems:
            raise ConfigError("data loader state for exact resume", problems)
        self.consumed = consumed


@dataclass
class PrepareConfig:
    """Tokenize a dataset into DIR/train.bin, DIR/val.bin and DIR/meta.json."""

    source: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="NAME|PATH")]
    """a dataset name (shakespeare_char, shakespeare, openwebtext, fineweb-edu, hf:OWNER/NAME[:CONFIG])
    or a path to a .txt file, a directory of .txt files, or a .jsonl file"""
    out_dir: str | None = None
    """where to write (default: data/<name>)"""
    tokenizer: Literal["auto", "char", "gpt2"] = "auto"
    """auto: char for shakespeare_char, GPT-2 BPE for everything else"""
    val_fraction: float = 0.1
    """fraction of tokens, taken from the end, that form the validation split"""
    text_field: str = "text"
    """the field holding the text in .jsonl records and HF datasets"""
    force: bool = False
    """redo the work even if DIR already holds the same data prepared with the same options"""
    gpt2_tiktoken: str | None = None
    """local GPT-2 ranks file (tiktoken format); default $NANOGPT_GPT2_TIKTOKEN, else download"""
    shakespeare: str | None = None
    """local tinyshakespeare.txt for shakespeare[_char]; default $NANOGPT_SHAKESPEARE, else download"""
    hf_split: str = "train"
    """split of a Hugging Face dataset to read"""
    max_documents: int | None = None
    """stop after this many documents (HF datasets and .jsonl; handy for a quick sample)"""
    workers: int = 0
    """parallel tokenizer workers (0: one per CPU core)"""
    progress: bool = True
    """show tqdm progress bars on stderr"""

    def validate(self) -> None:
        problems = []
        if not self.source:
            problems.append("give a dataset name or a path to prepare")
        if not isinstance(self.val_fraction, (int, float)) or not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.workers < 0:
            problems.append(f"workers must be >= 0, got {self.workers}")
        if self.max_documents is not None and self.max_documents < 1:
            problems.append(f"max_documents must be >= 1, got {self.max_documents}")
        if not self.text_field:
            problems.append("text_field must not be empty")
        if problems:
            raise ConfigError("prepare options", problems)


def prepare(cfg: PrepareConfig):
    """Tokenize `cfg.source` into `cfg.out_dir`; see `nanogpt.data_prepare.prepare`."""
    from nanogpt.data_prepare import prepare as _prepare

    return _prepare(cfg)
