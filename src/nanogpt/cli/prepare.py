"""`nanogpt prepare NAME|PATH`: tokenize a dataset into train.bin / val.bin / meta.json.

Thin adapter: options come from `nanogpt.data.PrepareConfig`, the work from `nanogpt.data.prepare`.
"""

from __future__ import annotations

import logging

import tyro

from nanogpt.data import PrepareConfig, prepare


def main(argv: list[str], prog: str) -> int:
    cfg = tyro.cli(PrepareConfig, args=argv, prog=prog)
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(levelname)s: %(message)s")
    r = prepare(cfg)
    if r.skipped:
        print(f"{r.out_dir} is already prepared from {r.source} with these options "
              f"(train {r.counts['train']:,} / val {r.counts['val']:,} tokens); nothing to do "
              f"(use --force to redo it)")
        return 0
    speed = f", {r.mb_per_s:.1f} MB/s" if r.mb_per_s else ""
    print(f"prepared {r.source} -> {r.out_dir}")
    print(f"  tokenizer {r.tokenizer} (vocab {r.vocab_size:,}, {r.dtype} on disk)")
    print(f"  train {r.counts['train']:,} tokens, val {r.counts['val']:,} tokens")
    print(f"  {r.seconds:.1f} s{speed}, {r.tokens_per_s or 0:,.0f} tokens/s")
    return 0
