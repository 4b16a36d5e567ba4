"""`nanogpt train --preset NAME [--config FILE] [--key value ...]`: train, resume or finetune a GPT.

Flags come from `nanogpt.train_config.TrainConfig` (tyro). Defaults < preset < config file < flags.
Progress goes to stderr (tqdm), log lines through `logging`, metrics to OUT/metrics.jsonl.
Exit status: 0 done, 1 stopped on a non-finite loss, 130/143 stopped by SIGINT/SIGTERM (after
saving a checkpoint).
"""

from __future__ import annotations

import logging
import os
import sys

from nanogpt.train_config import parse_args


def main(argv: list[str], prog: str) -> int:
    cfg = parse_args(argv, prog)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from nanogpt.train import train

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    pkg = logging.getLogger("nanogpt")
    pkg.addHandler(handler)
    # Under torchrun only rank 0 talks, except for warnings and errors.
    pkg.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
    pkg.propagate = False
    try:
        with logging_redirect_tqdm(loggers=[pkg]):
            result = train(cfg)
    finally:
        pkg.removeHandler(handler)
    if os.environ.get("RANK", "0") != "0":
        return 0 if result.status == "done" else 1
    if result.status == "nan":
        print(f"{prog}: error: {result.message}", file=sys.stderr)
        return 1
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    print(f"{result.status} at step {result.step}: best val loss {best}; "
          f"checkpoint {result.checkpoint}")
    if result.status == "interrupted":
        print(f"resume with: nanogpt train --init-from resume --out-dir {result.out_dir} "
              f"(plus the same preset/options)")
        return 143 if "SIGTERM" in result.message else 130
    print(f"sample with: nanogpt sample {result.out_dir}")
    return 0
