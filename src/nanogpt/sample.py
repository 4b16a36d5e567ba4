"""`nanogpt sample`: its options, and the prompt and model plumbing the CLI adapter calls.

The generation itself (KV cache, sampling, stop strings, speculation) lives in nanogpt.engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import tyro

from nanogpt.engine import Generation
from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.sampling import SamplingParams
from nanogpt.speculative import DEFAULT_DRAFT

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class SampleConfig:
    """Options of `nanogpt sample`."""

    model: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")]
    """a training run dir, a checkpoint dir, a GPT-2 name (gpt2 ... gpt2-xl) or a HF GPT-2 dir"""
    prompt: str | None = None
    """text to continue (default: end-of-text for GPT-2, a newline for character models)"""
    prompt_file: str | None = None
    """read the prompt from this file instead"""
    num_samples: int = 1
    """how many completions of the prompt"""
    max_new_tokens: int = 200
    """tokens to generate per completion (0 returns the prompt unchanged)"""
    temperature: float = 0.8
    """0 is greedy (argmax); below 1 is more conservative, above 1 more random"""
    top_k: int | None = None
    """sample only from the k most likely tokens"""
    top_p: float | None = None
    """nucleus sampling: the smallest set of tokens whose probability reaches p, in (0, 1]"""
    min_p: float | None = None
    """drop tokens less than min_p times as likely as the most likely one, in [0, 1]"""
    repetition_penalty: float = 1.0
    """> 1 discourages tokens already in the text (CTRL-style); 1 is off"""
    seed: int = 1337
    """random seed: the same seed and options give the same text"""
    stop: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """stop a completion at this string, which is not printed (\\n, \\t, \\\\ are escapes)"""
    speculate: int = DEFAULT_DRAFT
    """at temperature 0 with one sample: draft up to this many tokens by n-gram lookup and verify
    them in one pass (same output, faster on repetitive text); 0 turns it off"""
    device: str = "cpu"
    """cpu, cuda, cuda:1, mps"""
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    """weights and compute dtype"""
    interactive: bool = False
    """read a prompt per line from stdin and stream a completion, until an empty line or EOF"""
    json: bool = False
    """print one JSON object (prompt, samples, token counts, timing) instead of streaming text"""

    def validate(self) -> None:
        problems = SamplingParams(self.temperature, self.top_k, self.top_p, self.min_p,
                                  self.repetition_penalty).problems()
        if self.num_samples < 1:
            problems.append(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.max_new_tokens < 0:
            problems.append(f"--max-new-tokens must be >= 0, got {self.max_new_tokens}")
        if self.prompt is not None and self.prompt_file is not None:
            problems.append("give --prompt or --prompt-file, not both")
        if self.interactive and (self.json or self.prompt is not None or self.prompt_file is not None):
            problems.append("--interactive reads prompts from stdin; drop --json/--prompt/--prompt-file")
        if self.speculate < 0:
            problems.append(f"--speculate must be >= 0 (0 turns it off), got {self.speculate}")
        if any(s == "" for s in self.stop):
            problems.append("--stop strings must not be empty")
        if problems:
            raise ConfigError("sample options", problems)


def load_for_sampling(cfg: SampleConfig) -> Any:
    """The LoadedModel for cfg.model on cfg.device in cfg.dtype; it must come with a tokenizer."""
    from nanogpt.checkpoint import load_model

    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        raise NanoGPTError(f"unknown --device {cfg.device!r}; use cpu, cuda, cuda:N or mps") from None
    loaded = load_model(cfg.model, device)
    if loaded.tokenizer is None:
        raise NanoGPTError(f"{loaded.source} has no tokenizer in its config.json, so its text cannot "
                           f"be encoded; re-save the checkpoint with nanogpt train")
    loaded.model.to(DTYPES[cfg.dtype]).eval()
    return loaded


def encode_prompt(text: str | None, tokenizer: Any) -> list[int]:
    """Prompt text -> ids; None means the default start (end-of-text, else a newline)."""
    if text is None:
        if tokenizer.eot_id is not None:
            return [tokenizer.eot_id]
        text = "\n"
    if text == "":
        raise NanoGPTError("the prompt is empty; give some text with --prompt or --prompt-file")
    ids = tokenizer.encode(text)  # a char tokenizer lists any characters it does not know
    if not ids:
        raise NanoGPTError("the prompt encodes to no tokens; give some text")
    return ids


def read_prompt(cfg: SampleConfig) -> str | None:
    if cfg.prompt_file is None:
        return cfg.prompt
    try:
        with open(cfg.prompt_file, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise NanoGPTError(f"cannot read --prompt-file {cfg.prompt_file}: {e}") from None


def unescape(s: str) -> str:
    """Shell-friendly escapes for --stop: backslash-n, backslash-t, backslash-r, double backslash."""
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    return re.sub(r"\\([ntr\\])", lambda m: table[m.group(1)], s)


def sample_stream(cfg: SampleConfig, loaded: Any, ids: list[int],
                  generator: torch.Generator) -> Generation:
    """A batch-1 Generation continuing ids with cfg's sampling options."""
    device = next(loaded.model.parameters()).device
    return Generation(loaded.model, torch.tensor([ids], dtype=torch.long, device=device),
                      cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                      top_p=cfg.top_p, min_p=cfg.min_p, repetition_penalty=cfg.repetition_penalty,
                      stop=[unescape(x) for x in cfg.stop], tokenizer=loaded.tokenizer, generator=generator,
                      speculate=cfg.speculate)
