"""Where raw text comes from: named datasets, local files, downloads into a checksummed cache.

`resolve_source(spec)` turns what the user typed after `nanogpt prepare` into a `Source`: a named
dataset (tiny Shakespeare, OpenWebText, FineWeb-Edu, any `hf:owner/name`), a .txt file, a
directory of .txt files or a .jsonl file. Tiny Shakespeare comes from (in order) an explicit path,
$NANOGPT_SHAKESPEARE, the download cache ($NANOGPT_CACHE, default ~/.cache/nanogpt), or the web,
with its sha256 verified. Documents are then read as a stream (`iter_documents`), never whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from nanogpt.errors import NanoGPTError, suggest

log = logging.getLogger(__name__)

SHAKESPEARE_ENV = "NANOGPT_SHAKESPEARE"
CACHE_ENV = "NANOGPT_CACHE"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TEXT_SUFFIXES = (".txt",)
_READ_CHARS = 1 << 20  # text files are read (and tokenized) in ~1M-character pieces


@dataclass(frozen=True)
class DatasetInfo:
    kind: str  # "shakespeare" | "hf"
    tokenizer: str  # default tokenizer: "char" | "gpt2"
    description: str
    hf_path: str | None = None
    hf_config: str | None = None


DATASETS: dict[str, DatasetInfo] = {
    "shakespeare_char": DatasetInfo("shakespeare", "char", "tiny Shakespeare, character-level"),
    "shakespeare": DatasetInfo("shakespeare", "gpt2", "tiny Shakespeare, GPT-2 BPE"),
    "openwebtext": DatasetInfo("hf", "gpt2", "OpenWebText (HF datasets, ~9B GPT-2 tokens)",
                               "Skylion007/openwebtext"),
    "fineweb-edu": DatasetInfo("hf", "gpt2", "FineWeb-Edu sample-10BT (HF datasets)",
                               "HuggingFaceFW/fineweb-edu", "sample-10BT"),
}


@dataclass
class Source:
    """A resolved input: what to read and how to fingerprint it."""

    name: str  # default output dir name: data/<name>
    kind: str  # "text" (files of plain text) | "jsonl" | "hf"
    tokenizer: str  # default tokenizer for this source
    paths: list[Path] = field(default_factory=list)
    hf_path: str | None = None
    hf_config: str | None = None
    documents: bool = True  # False: one running text (no EOT between pieces); True: separate documents

    def describe(self) -> str:
        if self.kind == "hf":
            return f"hf:{self.hf_path}" + (f":{self.hf_config}" if self.hf_config else "")
        if len(self.paths) == 1:
            return str(self.paths[0])
        return f"{len(self.paths)} files under {os.path.commonpath([str(p) for p in self.paths])}"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "nanogpt").expanduser()


def sha256_file(path: Path, h: hashlib._Hash | None = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def sha256_files(paths: list[Path], root: Path | None = None) -> str:
    """One checksum over files' names (relative to root) and contents; a single file's own sha256."""
    if len(paths) == 1 and root is None:
        return sha256_file(paths[0])
    h = hashlib.sha256()
    for p in paths:
        h.update((str(p.relative_to(root)) if root else p.name).encode("utf-8") + b"\0")
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str | None, *, what: str, fix: str,
             progress: bool = True) -> Path:
    """Download `url` to `dest` atomically (temp file in the same dir, then os.replace), verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=30)
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise NanoGPTError(f"cannot download {what} from {url} ({reason}); {fix}") from None
            with resp, tqdm(total=int(resp.headers.get("Content-Length") or 0) or None, unit="B",
                            unit_scale=True, desc=f"download {dest.name}", disable=not progress) as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if sha256 and h.hexdigest() != sha256:
            raise NanoGPTError(
                f"downloaded {what} from {url} has sha256 {h.hexdigest()}, expected {sha256} "
                f"(corrupted or changed upstream); try again, or {fix}"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def shakespeare_path(explicit: str | os.PathLike | None = None, *, progress: bool = True,
                     url: str = SHAKESPEARE_URL) -> Path:
    """Local tinyshakespeare.txt: explicit path, $NANOGPT_SHAKESPEARE, the cache, or a download."""
    fix = f"set {SHAKESPEARE_ENV}=/path/to/tinyshakespeare.txt or pass --shakespeare PATH"
    for origin, value in (("--shakespeare", explicit), (f"${SHAKESPEARE_ENV}", os.environ.get(SHAKESPEARE_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise NanoGPTError(f"tiny Shakespeare file {str(path)!r} (from {origin}) does not exist; {fix}")
            if sha256_file(path) != SHAKESPEARE_SHA256:
                log.warning("%s differs from the standard tiny Shakespeare (sha256 mismatch); using it anyway", path)
            return path
    cached = cache_dir() / "tinyshakespeare.txt"
    if cached.is_file() and sha256_file(cached) == SHAKESPEARE_SHA256:
        return cached
    log.info("downloading tiny Shakespeare into %s", cached)
    return download(url, cached, SHAKESPEARE_SHA256, what="tiny Shakespeare", fix=fix, progress=progress)


def resolve_source(spec: str, *, shakespeare: str | None = None, progress: bool = True) -> Source:
    """Turn NAME|PATH into a Source; unknown names get close-match suggestions."""
    if spec in DATASETS:
        info = DATASETS[spec]
        if info.kind == "shakespeare":
            path = shakespeare_path(shakespeare, progress=progress)
            return Source(spec, "text", info.tokenizer, [path], documents=False)
        return Source(spec, "hf", info.tokenizer, hf_path=info.hf_path, hf_config=info.hf_config)
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        if not parts[0] or "/" not in parts[0] or len(parts) > 2:
            raise NanoGPTError(f"bad Hugging Face dataset {spec!r}; write hf:OWNER/NAME or hf:OWNER/NAME:CONFIG")
        name = parts[0].split("/")[-1] + (f"-{parts[1]}" if len(parts) == 2 else "")
        return Source(name, "hf", "gpt2", hf_path=parts[0], hf_config=parts[1] if len(parts) == 2 else None)
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise NanoGPTError(f"directory {spec} has no {'/'.join(TEXT_SUFFIXES)} files to prepare")
        return Source(path.resolve().name, "text", "gpt2", files)
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return Source(path.stem, "jsonl", "gpt2", [path])
        if path.stat().st_size == 0:
            raise NanoGPTError(f"{spec} is empty; there is nothing to tokenize")
        return Source(path.stem, "text", "gpt2", [path], documents=False)
    known = ", ".join(DATASETS)
    raise NanoGPTError(
        f"{spec!r} is neither a known dataset nor an existing file or directory"
        f"{suggest(spec, list(DATASETS))}; known datasets: {known}, hf:OWNER/NAME; "
        f"or give a path to a .txt file, a directory of .txt files or a .jsonl file"
    )


def source_checksum(src: Source) -> str:
    """sha256 of the local input (HF datasets: of their spec, as they are read remotely)."""
    if src.kind == "hf":
        return hashlib.sha256(src.describe().encode("utf-8")).hexdigest()
    if len(src.paths) == 1:
        return sha256_file(src.paths[0])
    return sha256_files(src.paths, root=Path(os.path.commonpath([str(p) for p in src.paths])))


def _read_text_pieces(path: Path) -> Iterator[str]:
    """Stream a UTF-8 file in ~1M-char pieces; newlines are kept exactly as in the file."""
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": no \r\n translation
            while piece := f.read(_READ_CHARS):
                yield piece
    except UnicodeDecodeError as e:
        raise NanoGPTError(f"{path} is not valid UTF-8 text ({e.reason} at byte {e.start} of a "
                           f"read block); convert it to UTF-8 first") from None
    except OSError as e:
        raise NanoGPTError(f"cannot read {path}: {e.strerror}") from None


def iter_documents(src: Source, *, text_field: str = "text", hf_split: str = "train",
                   max_documents: int | None = None) -> Iterator[tuple[str, bool]]:
    """Yield `(text, ends_document)` pieces of the source, in order.

    A single text file is one running text: its ~1M-char pieces never end a document. A directory's
    files, .jsonl records and dataset rows are documents: their last piece ends the document, and
    the tokenizer puts an end-of-text token there.
    """
    if src.kind == "text":
        for path in src.paths[:max_documents] if src.documents else src.paths:
            prev = None
            for piece in _read_text_pieces(path):
                if prev is not None:
                    yield prev, False
                prev = piece
            if prev is not None:  # empty files in a directory contribute nothing
                yield prev, src.documents
    elif src.kind == "jsonl":
        for doc in _iter_jsonl(src.paths[0], text_field, max_documents):
            yield doc, True
    elif src.kind == "hf":
        for doc in _iter_hf(src, text_field, hf_split, max_documents):
            yield doc, True
    else:  # pragma: no cover - Source kinds are fixed above
        raise ValueError(src.kind)


def _iter_jsonl(path: Path, text_field: str, max_documents: int | None) -> Iterator[str]:
    count = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise NanoGPTError(f"{path}:{lineno} is not valid JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else []
                raise NanoGPTError(f"{path}:{lineno} has no {text_field!r} field{suggest(text_field, keys)}; "
                                   f"fields: {keys}; choose one with --text-field")
            text = record[text_field]
            if not isinstance(text, str):
                raise NanoGPTError(f"{path}:{lineno}: field {text_field!r} is {type(text).__name__}, not text")
            yield text
            count += 1
            if max_documents is not None and count >= max_documents:
                return


def _iter_hf(src: Source, text_field: str, hf_split: str, max_documents: int | None) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise NanoGPTError(
            f"preparing {src.describe()} needs the Hugging Face datasets library; "
            "install it with: pip install 'nanogpt[datasets]'"
        ) from None
    try:
        ds = datasets.load_dataset(src.hf_path, name=src.hf_config, split=hf_split, streaming=True)
    except Exception as e:  # network, auth and not-found errors come as many exception types
        raise NanoGPTError(f"cannot open Hugging Face dataset {src.describe()} split {hf_split!r}: "
                           f"{type(e).__name__}: {e}") from None
    for i, row in enumerate(ds):
        if max_documents is not None and i >= max_documents:
            return
        if text_field not in row:
            raise NanoGPTError(f"{src.describe()} rows have no {text_field!r} field"
                               f"{suggest(text_field, list(row))}; fields: {sorted(row)}; use --text-field")
        text = row[text_field]
        if not isinstance(text, str):
            raise NanoGPTError(f"{src.describe()} row {i}: field {text_field!r} is {type(text).__name__}, "
                               "not text; choose the text column with --text-field")
        yield text
