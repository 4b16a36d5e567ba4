"""`nanogpt prepare`'s pipeline: stream text, tokenize it in parallel, write token files atomically.

Text arrives as `(piece, ends_document)` pairs from `nanogpt.sources.iter_documents`. Pieces of
one running text are re-cut only where GPT-2's pre-tokenizer always splits (see `_safe_cut`), so
tokenizing piece by piece gives exactly the tokens of the whole text. Pieces are grouped into
tasks, encoded by tiktoken's thread pool (local files) or a process pool (many documents, e.g.
HF datasets), and appended to a temp file as numpy arrays: memory stays bounded by the number of
tasks in flight. An end-of-text token follows every document (GPT-2 BPE).

Atomicity: the old meta.json is removed first; train.bin and val.bin are written as temp files in
the output dir and moved into place with os.replace; meta.json, the completion marker, is last.
"""

from __future__ import annotations

import collections
import json
import logging
import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nanogpt.data import (FORMAT_VERSION, HEADER_SIZE, META_VERSION, PrepareConfig, dtype_for_vocab,
                          load_meta, pack_header, read_header)
from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.sources import Source, iter_documents, resolve_source, source_checksum
from nanogpt.tokenizer import CharTokenizer, get_gpt2_tokenizer, tokenizer_from_dict

log = logging.getLogger(__name__)

_TASK_CHARS = 1 << 22  # ~4M characters of text per encoding task
_TASK_DOCS = 1024
_MIN_SEGMENT = 1 << 16  # running text is cut into segments of at least this many characters
# A boundary between a non-space character and a following space/tab/newline is a split point
# of GPT-2's pre-tokenizer regex (no pattern matches non-space then space), so text cut there
# encodes to the same tokens as the whole. Python's \S is a subset of the regex's \S, and the
# next character is restricted to ASCII whitespace so both engines agree on it.
_CUT = re.compile(r"\S(?=[ \t\n])")


@dataclass
class PrepareResult:
    out_dir: str
    skipped: bool  # True: already prepared with the same input and options, nothing done
    tokenizer: str
    vocab_size: int
    dtype: str
    counts: dict[str, int]
    source: str
    source_sha256: str
    source_bytes: int | None
    seconds: float

    @property
    def mb_per_s(self) -> float | None:
        if not self.source_bytes or self.skipped or self.seconds <= 0:
            return None
        return self.source_bytes / 1e6 / self.seconds

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.skipped or self.seconds <= 0 else sum(self.counts.values()) / self.seconds


def _safe_cut(text: str, start: int = 0) -> int:
    """Largest index >= start where `text` may be cut without changing its GPT-2 tokens (0: none).

    Searches backwards in growing windows, so the usual case only scans the last few KB.
    """
    end, width = len(text), 4096
    while end > start:
        lo = max(start, end - width)
        last = None
        for last in _CUT.finditer(text, lo, end + 1 if end < len(text) else end):
            pass
        if last is not None and last.end() > start:
            return last.end()
        end, width = lo + 1, width * 4
        if lo == start:
            break
    return 0


def _segments(items: Iterable[tuple[str, bool]], any_cut: bool) -> Iterator[tuple[str, bool]]:
    """Re-cut running-text pieces at safe boundaries; whole documents pass through."""
    buf, checked = "", 0  # buf[:checked] holds no cut point (we always cut at the last one)
    for text, ends_doc in items:
        buf += text
        if ends_doc:
            yield buf, True
            buf, checked = "", 0
        elif len(buf) >= _MIN_SEGMENT:
            cut = len(buf) if any_cut else _safe_cut(buf, checked)
            if cut:
                yield buf[:cut], False
                buf = buf[cut:]
            checked = max(0, len(buf) - 1)
    if buf:
        yield buf, False


def _tasks(segments: Iterable[tuple[str, bool]]) -> Iterator[list[tuple[str, bool]]]:
    task: list[tuple[str, bool]] = []
    size = 0
    for seg in segments:
        task.append(seg)
        size += len(seg[0])
        if size >= _TASK_CHARS or len(task) >= _TASK_DOCS:
            yield task
            task, size = [], 0
    if task:
        yield task


def encode_task(tok, task: list[tuple[str, bool]], dtype: np.dtype, num_threads: int = 1) -> np.ndarray:
    """Encode one task's segments to one array, an end-of-text id after each finished document."""
    arrays = tok.encode_batch_arrays([text for text, _ in task], num_threads=num_threads, dtype=dtype)
    parts = []
    eot = None if tok.eot_id is None else np.array([tok.eot_id], dtype=dtype)
    for arr, (_, ends_doc) in zip(arrays, task):
        parts.append(arr.astype(dtype, copy=False))
        if ends_doc and eot is not None:
            parts.append(eot)
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


_WORKER: dict = {}


def _init_worker(tok_dict: dict, ranks_path: str | None, dtype: str) -> None:
    _WORKER["tok"] = tokenizer_from_dict(tok_dict, ranks_path=ranks_path)
    _WORKER["dtype"] = np.dtype(dtype)


def _worker_encode(task: list[tuple[str, bool]]) -> np.ndarray:
    return encode_task(_WORKER["tok"], task, _WORKER["dtype"])


def encode_stream(tok, items: Iterable[tuple[str, bool]], dtype: np.dtype, *, workers: int = 1,
                  processes: bool = False, ranks_path: str | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Yield `(token array, characters consumed)` for the text stream, in order.

    `processes=True` encodes tasks in a multiprocessing pool of `workers` (at most 2 tasks per
    worker in flight, so a streamed corpus never piles up in memory); otherwise tasks are
    encoded here, with tiktoken's own thread pool of `workers` threads.
    """
    tasks = _tasks(_segments(items, any_cut=tok.name == "char"))
    if not processes or workers <= 1:
        for task in tasks:
            yield encode_task(tok, task, dtype, num_threads=workers), sum(len(t) for t, _ in task)
        return
    with multiprocessing.get_context().Pool(
        workers, initializer=_init_worker, initargs=(tok.to_dict(), ranks_path, np.dtype(dtype).str)
    ) as pool:
        pending: collections.deque = collections.deque()
        for task in tasks:
            pending.append((pool.apply_async(_worker_encode, (task,)), sum(len(t) for t, _ in task)))
            if len(pending) >= 2 * workers:
                res, n = pending.popleft()
                yield res.get(), n
        while pending:
            res, n = pending.popleft()
            yield res.get(), n


class TokenFileWriter:
    """Appends tokens to a temp file beside `path`; `commit()` writes the header and renames."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype, self.count = path, np.dtype(dtype), 0
        fd, self.tmp = _mkstemp(path)
        self.f = os.fdopen(fd, "w+b")
        self.f.write(b"\0" * HEADER_SIZE)  # real header written at commit, once the count is known

    def write(self, tokens: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self.count += len(tokens)

    def split_tail(self, keep: int, other: TokenFileWriter) -> None:
        """Move tokens [keep:] into `other` (chunked) and truncate this file to `keep` tokens."""
        size = self.dtype.itemsize
        self.f.flush()
        pos = HEADER_SIZE + keep * size
        chunk = (1 << 24) * size
        while pos < HEADER_SIZE + self.count * size:
            self.f.seek(pos)
            data = self.f.read(chunk)
            other.write(np.frombuffer(data, dtype=self.dtype))
            pos += len(data)
        self.f.truncate(HEADER_SIZE + keep * size)
        self.f.seek(0, os.SEEK_END)
        self.count = keep

    def commit(self) -> None:
        self.f.seek(0)
        self.f.write(pack_header(self.dtype, self.count))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if not self.f.closed:
            self.f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temp file beside `path` (same filesystem, so os.replace is atomic), mode 0644 not 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)
    return fd, tmp


def _write_json_atomic(path: Path, obj: dict) -> None:
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _options(cfg: PrepareConfig, src: Source, tok_name: str) -> dict:
    """The options that change the output; equal options + checksum make a re-run a no-op."""
    opts = {"tokenizer": tok_name, "val_fraction": float(cfg.val_fraction), "format": FORMAT_VERSION}
    if src.kind in ("jsonl", "hf"):
        opts["text_field"] = cfg.text_field
        opts["max_documents"] = cfg.max_documents
    if src.kind == "hf":
        opts["hf_split"] = cfg.hf_split
    if src.kind == "text" and src.documents:
        opts["max_documents"] = cfg.max_documents
    return opts


def _existing(out_dir: Path, checksum: str, options: dict) -> dict | None:
    """meta.json if out_dir already holds complete, intact output for this input and options."""
    if not (out_dir / "meta.json").is_file():
        return None
    try:
        meta = load_meta(out_dir)
        if meta.get("source_sha256") != checksum or meta.get("options") != options:
            return None
        for split in ("train", "val"):
            if read_header(out_dir / f"{split}.bin")[1] != meta["counts"][split]:
                return None
    except (NanoGPTError, KeyError, TypeError):
        return None
    return meta


def _build_tokenizer(cfg: PrepareConfig, src: Source, name: str, items_factory, total: int | None):
    if name == "gpt2":
        return get_gpt2_tokenizer(cfg.gpt2_tiktoken)
    chars: set[str] = set()
    with tqdm(total=total, unit="B", unit_scale=True, desc="char vocabulary", leave=False,
              disable=not cfg.progress) as bar:
        for text, _ in items_factory():
            chars.update(text)
            bar.update(len(text))
    if not chars:
        raise NanoGPTError(f"{src.describe()} has no text to tokenize")
    return CharTokenizer(sorted(chars))


def prepare(cfg: PrepareConfig) -> PrepareResult:
    """Tokenize `cfg.source` into train.bin / val.bin / meta.json under the output dir."""
    cfg.validate()
    t0 = time.perf_counter()
    src = resolve_source(cfg.source, shakespeare=cfg.shakespeare, progress=cfg.progress)
    tok_name = src.tokenizer if cfg.tokenizer == "auto" else cfg.tokenizer
    if tok_name == "char" and src.kind == "hf":
        raise ConfigError("prepare options", [
            "the char tokenizer builds its vocabulary in a first pass over the data, but Hugging Face "
            "datasets are streamed once; use --tokenizer gpt2"])
    out_dir = Path(cfg.out_dir or Path("data") / src.name)
    checksum = source_checksum(src)
    options = _options(cfg, src, tok_name)
    source_bytes = sum(p.stat().st_size for p in src.paths) if src.kind != "hf" else None

    def items():
        return iter_documents(src, text_field=cfg.text_field, hf_split=cfg.hf_split,
                              max_documents=cfg.max_documents)

    if not cfg.force and (meta := _existing(out_dir, checksum, options)) is not None:
        return PrepareResult(str(out_dir), True, tok_name, meta["vocab_size"], meta["dtype"], meta["counts"],
                             src.describe(), checksum, source_bytes, time.perf_counter() - t0)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NanoGPTError(f"cannot create output dir {out_dir}: {e.strerror}; choose another --out-dir") from None
    tok = _build_tokenizer(cfg, src, tok_name, items, source_bytes)
    dtype = dtype_for_vocab(tok.vocab_size)
    workers = cfg.workers or os.cpu_count() or 1
    (out_dir / "meta.json").unlink(missing_ok=True)  # from here on the dir is incomplete
    train = TokenFileWriter(out_dir / "train.bin", dtype)
    val = TokenFileWriter(out_dir / "val.bin", dtype)
    try:
        bar = tqdm(total=source_bytes, unit="B" if source_bytes else "char", unit_scale=True,
                   desc=f"tokenize {src.name} ({tok_name})", disable=not cfg.progress)
        with bar:
            stream = encode_stream(tok, items(), dtype, workers=workers, processes=src.kind == "hf",
                                   ranks_path=cfg.gpt2_tiktoken)
            for tokens, nchars in stream:
                train.write(tokens)
                bar.update(nchars)  # characters: equal to bytes for ASCII, a close proxy otherwise
                bar.set_postfix(tokens=f"{train.count:,}", refresh=False)
            if source_bytes:
                bar.n = source_bytes
        total = train.count
        if total == 0:
            raise NanoGPTError(f"{src.describe()} has no text to tokenize")
        n_train = int(total * (1.0 - cfg.val_fraction))  # val = the last fraction, as nanoGPT does
        if n_train == 0:
            raise NanoGPTError(f"{src.describe()} gives only {total} tokens, too few for a train split "
                               f"with --val-fraction {cfg.val_fraction}")
        train.split_tail(n_train, val)
        counts = {"train": train.count, "val": val.count}
        train.commit()
        val.commit()
    except BaseException:
        train.discard()
        val.discard()
        raise
    meta = {
        "meta_version": META_VERSION,
        "tokenizer": tok.to_dict(),
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "dtype": dtype.name,
        "counts": counts,
        "source": src.describe(),
        "source_name": src.name,
        "source_sha256": checksum,
        "source_bytes": source_bytes,
        "split": {"val_fraction": float(cfg.val_fraction), "train": [0, counts["train"]],
                  "val": [counts["train"], total], "how": "val is the last tokens of the stream"},
        "options": options,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json_atomic(out_dir / "meta.json", meta)  # last: marks the dir complete
    seconds = time.perf_counter() - t0
    log.info("prepared %s into %s: %s", src.describe(), out_dir, counts)
    return PrepareResult(str(out_dir), False, tok.name, tok.vocab_size, dtype.name, counts,
                         src.describe(), checksum, source_bytes, seconds)


def result_dict(r: PrepareResult) -> dict:
    return {**asdict(r), "mb_per_s": r.mb_per_s, "tokens_per_s": r.tokens_per_s}
