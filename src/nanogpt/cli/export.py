"""`nanogpt export SOURCE OUT_DIR`: write a model as a Hugging Face GPT-2 directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from nanogpt.hf import export


@dataclass
class ExportArgs:
    """Write a checkpoint as a directory that transformers.GPT2LMHeadModel.from_pretrained loads."""

    source: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="SOURCE")]
    """A run directory (newest checkpoint), a checkpoint directory, a GPT-2 name or an HF directory."""
    out_dir: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="OUT_DIR")]
    """Where to write config.json and model.safetensors."""
    force: bool = False
    """Replace out_dir if it already holds files."""


def main(argv: list[str], prog: str) -> int:
    args = tyro.cli(ExportArgs, args=argv, prog=prog)
    info = export(args.source, args.out_dir, force=args.force)
    print(f"exported {info['source']} ({info['params']:,} parameters) to {info['out_dir']}: "
          + ", ".join(info["files"]))
    print("load it with: transformers.GPT2LMHeadModel.from_pretrained"
          f"({info['out_dir']!r})")
    return 0
