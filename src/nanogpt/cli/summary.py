"""`nanogpt summary`: parse options, summarise the model, print a table or JSON."""

from __future__ import annotations

import json

import tyro

from nanogpt.summary import SummaryConfig, format_summary, run_summary


def main(argv: list[str], prog: str) -> int:
    cfg = tyro.cli(SummaryConfig, args=argv, prog=prog,
                   description="Parameter table, FLOPs per token and memory of a model.")
    s = run_summary(cfg)
    print(json.dumps(s.to_dict(), indent=2) if cfg.json else format_summary(s))
    return 0
