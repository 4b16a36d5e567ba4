"""`nanogpt sample`: stream completions to the terminal, interactively, or as one JSON object."""

from __future__ import annotations

import json
import logging
import sys
import time

import torch
import tyro

from nanogpt.sample import (
    SampleConfig, encode_prompt, load_for_sampling, read_prompt, sample_stream,
)

SEPARATOR = "---------------"


def _stream_one(cfg, loaded, ids, generator, prog: str, echo_prompt: bool) -> int:
    """Print the prompt (optionally) and stream one completion; return its token count."""
    gen = sample_stream(cfg, loaded, ids, generator)
    if echo_prompt:
        sys.stdout.write(loaded.tokenizer.decode(ids) if ids != [loaded.tokenizer.eot_id] else "")
    for _ in gen:
        if gen.deltas[0]:
            sys.stdout.write(gen.deltas[0])
            sys.stdout.flush()
    sys.stdout.write(gen.deltas[0] + "\n")  # what the end of generation released
    sys.stdout.flush()
    if gen.window_slid:
        print(f"{prog}: note: the context outgrew block_size={loaded.model.config.block_size}; "
              f"continued with a sliding window of the last {loaded.model.config.block_size} "
              f"tokens", file=sys.stderr)
    return len(gen.tokens[0])


def _interactive(cfg, loaded, generator, prog: str) -> None:
    while True:
        print("prompt> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or not line.strip("\r\n"):  # EOF (Ctrl-D) or an empty line ends the session
            print(file=sys.stderr)
            return
        ids = encode_prompt(line.rstrip("\r\n"), loaded.tokenizer)
        _stream_one(cfg, loaded, ids, generator, prog, echo_prompt=False)


def main(argv: list[str], prog: str) -> int:
    cfg = tyro.cli(SampleConfig, args=argv, prog=prog,
                   description="Generate text from a checkpoint or GPT-2 with a KV cache.")
    cfg.validate()
    logging.getLogger("nanogpt.engine").addHandler(logging.NullHandler())  # we print the note
    prompt = read_prompt(cfg)
    loaded = load_for_sampling(cfg)
    generator = torch.Generator(device=next(loaded.model.parameters()).device).manual_seed(cfg.seed)
    if cfg.interactive:
        _interactive(cfg, loaded, generator, prog)
        return 0
    ids = encode_prompt(prompt, loaded.tokenizer)
    if not cfg.json:
        for i in range(cfg.num_samples):
            _stream_one(cfg, loaded, ids, generator, prog, echo_prompt=True)
            if cfg.num_samples > 1:
                print(SEPARATOR)
        return 0
    samples, counts, slid, proposed, accepted = [], [], False, 0, 0
    start = time.perf_counter()
    for _ in range(cfg.num_samples):
        gen = sample_stream(cfg, loaded, ids, generator)
        for _ in gen:
            pass
        samples.append(gen.texts[0])
        counts.append(len(gen.tokens[0]))
        slid = slid or gen.window_slid
        proposed, accepted = proposed + gen.spec_stats.proposed, accepted + gen.spec_stats.accepted
    seconds = time.perf_counter() - start
    print(json.dumps({
        "model": loaded.source,
        "prompt": loaded.tokenizer.decode(ids),
        "prompt_tokens": len(ids),
        "samples": samples,
        "new_tokens": counts,
        "seconds": round(seconds, 4),
        "tokens_per_s": round(sum(counts) / seconds, 2) if seconds > 0 else None,
        "sliding_window": slid,
        "speculation": {"proposed": proposed, "accepted": accepted},
        "options": {k: getattr(cfg, k) for k in ("max_new_tokens", "temperature", "top_k", "top_p",
                                                   "min_p", "repetition_penalty", "seed", "stop",
                                                   "speculate", "device", "dtype")},
    }, ensure_ascii=False, indent=2))
    return 0
