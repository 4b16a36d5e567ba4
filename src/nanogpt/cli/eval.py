"""`nanogpt eval`: loss, perplexity and bits per byte of a model on a split or a text file."""

from __future__ import annotations

import json

import tyro

from nanogpt.evaluate import GPT2_OWT_BASELINES, EvalConfig, evaluate


def main(argv: list[str], prog: str) -> int:
    cfg = tyro.cli(EvalConfig, args=argv, prog=prog,
                   description="Loss, perplexity and bits per byte on a prepared split or a text file.")
    r = evaluate(cfg)
    if cfg.json:
        print(json.dumps(r.to_dict(), indent=2))
        return 0
    print(f"model          {r.source}")
    print(f"data           {r.data}")
    print(f"tokens         {r.tokens:,} scored ({r.bytes:,} bytes), context {r.context}, stride {r.stride}")
    print(f"loss           {r.loss:.4f} nats/token")
    print(f"perplexity     {r.perplexity:.3f}")
    print(f"bits per byte  {r.bits_per_byte:.4f}")
    print(f"time           {r.seconds:.1f} s ({r.tokens / max(r.seconds, 1e-9):,.0f} tokens/s)")
    if cfg.model in GPT2_OWT_BASELINES:
        tr, va = GPT2_OWT_BASELINES[cfg.model]
        print(f"reference      nanoGPT reports {cfg.model} on OpenWebText: train {tr}, val {va}")
    return 0
