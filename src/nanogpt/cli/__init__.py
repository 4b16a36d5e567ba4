"""The `nanogpt` command: a table of verbs, each a thin adapter in `nanogpt.cli.<verb>`.

Each adapter parses its options with tyro from a dataclass that lives in the library module,
calls the library, and prints. This file only dispatches and turns user errors into one line
on stderr with exit code 2. Verbs are imported lazily so `nanogpt --help` starts fast.
"""

from __future__ import annotations

import importlib
import sys

from nanogpt.errors import NanoGPTError, suggest

# verb -> (adapter module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("nanogpt.cli.prepare", "tokenize Shakespeare, your text or a HF dataset into token files"),
    "train": ("nanogpt.cli.train", "train a model from scratch, resume, or finetune GPT-2"),
    "sample": ("nanogpt.cli.sample", "generate text from a checkpoint or GPT-2 (streaming, interactive)"),
    "eval": ("nanogpt.cli.eval", "loss, perplexity and bits per byte on a split or a text file"),
    "export": ("nanogpt.cli.export", "write a checkpoint as a Hugging Face GPT-2 directory"),
    "summary": ("nanogpt.cli.summary", "parameter table, FLOPs and memory of a model"),
    "viz": ("nanogpt.cli.viz", "write an interactive HTML explorer of a model (offline)"),
    "plot": ("nanogpt.cli.plot", "write PNG loss curves for a training run"),
    "bench": ("nanogpt.cli.bench", "measure training or sampling speed, FLOP/s and MFU"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: nanogpt VERB [options]   (nanogpt VERB --help for a verb's options)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {help_}" for verb, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from nanogpt import __version__

        print(f"nanogpt {__version__}")
        return 0
    verb = argv[0]
    if verb not in COMMANDS:
        print(f"nanogpt: error: unknown verb {verb!r}{suggest(verb, COMMANDS)}; "
              f"run 'nanogpt --help' for the list", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[verb][0])
        return int(module.main(argv[1:], prog=f"nanogpt {verb}") or 0)
    except NanoGPTError as e:
        print(f"nanogpt {verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nanogpt {verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nanogpt sample | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
