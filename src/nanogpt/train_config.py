"""Training options: the `TrainConfig` dataclass, its presets, and config-file loading.

`TrainConfig` is the single source of truth for `nanogpt train`: the CLI flags are derived from it
with tyro, config files (TOML or YAML) are checked against its fields, and the resolved instance is
saved in every checkpoint's config.json under "train". Model shape options are flat fields here
(n_layer, n_head, ...); `model_config()` turns them into a `GPTConfig`, whose resolved form goes
under "model". Precedence: dataclass defaults < preset < config file < command-line flags.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from nanogpt.errors import ConfigError, NanoGPTError, suggest
from nanogpt.model import GPTConfig

if typing.TYPE_CHECKING:
    import torch

Device = Literal["auto", "cpu", "cuda", "mps"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
OnNaN = Literal["stop", "skip"]

# Fields of TrainConfig that go straight into GPTConfig (vocab_size comes from the data).
MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "activation",
                "vocab_multiple")


@dataclass
class TrainConfig:
    """Everything `nanogpt train` needs. See docs/training.md for each group."""

    # --- where things come from and go ---
    preset: str | None = None  # shakespeare-char, shakespeare-char-cpu, gpt2-124m or finetune-shakespeare
    config: str | None = None  # a .toml/.yaml/.yml file of overrides (applied after the preset)
    out_dir: str = "out"  # run directory: metrics.jsonl and ckpt-XXXXXXXX/ directories
    data_dir: str = "data/shakespeare_char"  # made by `nanogpt prepare`
    init_from: str = "scratch"  # scratch | resume | gpt2 | gpt2-medium | ... | HF dir | checkpoint
    # --- model (vocab_size is read from the data's meta.json) ---
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # width of the residual stream
    block_size: int = 1024  # context length; cropped when finetuning a longer pretrained model
    dropout: float = 0.0  # dropout probability (0 for pretraining big models, 0.2 for small data)
    bias: bool = False  # biases in Linear layers and LayerNorms (GPT-2 has them)
    activation: Literal["gelu", "gelu_tanh"] = "gelu"  # exact GELU, or the tanh form GPT-2 used
    vocab_multiple: int = 1  # pad the vocabulary to a multiple of this (64 is faster on GPU)
    # --- batch ---
    batch_size: int = 12  # sequences per micro-batch per process
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step, over all processes
    # --- optimizer and schedule ---
    max_iters: int = 5000  # optimizer steps in total
    learning_rate: float = 6e-4  # peak learning rate, reached after warm-up
    min_lr: float = 6e-5  # learning rate at the end of the cosine decay
    warmup_iters: int = 100  # linear warm-up steps
    lr_decay_iters: int = 5000  # cosine decay ends here, then min_lr
    decay_lr: bool = True  # False: constant learning_rate
    weight_decay: float = 0.1  # applied to 2-D weights only
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    # --- evaluation, logging, checkpoints ---
    eval_interval: int = 250  # evaluate (and checkpoint) every this many steps
    eval_iters: int = 200  # batches per split for each evaluation
    log_interval: int = 10  # steps between metric lines
    keep_last: int = 2  # keep this many newest checkpoints (plus the best)
    seed: int = 1337  # seeds weights, dropout and the data order
    epochs: bool = False  # read the training data in shuffled epochs without replacement (else nanoGPT's random windows)
    progress: bool = True  # tqdm progress bar on stderr
    wandb_log: bool = False  # needs `pip install 'nanogpt[wandb]'`
    wandb_project: str = "nanogpt"  # wandb project name
    wandb_run_name: str | None = None  # wandb run name (unset: wandb picks one)
    tensorboard: bool = False  # needs `pip install 'nanogpt[tensorboard]'`; writes OUT/tb
    # --- hardware ---
    device: Device = "auto"  # auto: cuda, then mps, then cpu
    dtype: DType = "auto"  # auto: bfloat16 on GPUs that have it, else float16 (+GradScaler); cpu float32
    compile: bool = False  # torch.compile; switched off with a warning where unsupported
    peak_flops: float | None = None  # FLOP/s that MFU is relative to (unset: GPU data sheet, or measured on CPU)
    # --- faults ---
    on_nan: OnNaN = "stop"  # non-finite loss: stop before the optimizer step, or skip the step

    def __post_init__(self) -> None:
        # Integers are fine where floats are expected (learning_rate: 1 in a TOML file).
        for f in fields(self):
            v = getattr(self, f.name)
            if _base_type(f.name) is float and isinstance(v, int) and not isinstance(v, bool):
                setattr(self, f.name, float(v))
        problems = []
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_multiple", "batch_size",
                     "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval",
                     "keep_last"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be a positive integer, got {v!r}")
        for name in ("max_iters", "warmup_iters", "lr_decay_iters", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                problems.append(f"{name} must be a non-negative integer, got {v!r}")
        for name in ("learning_rate", "min_lr", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if not isinstance(v, float) or not v >= 0:
                problems.append(f"{name} must be a number >= 0, got {v!r}")
        for name in ("beta1", "beta2", "dropout"):
            v = getattr(self, name)
            if not isinstance(v, float) or not 0.0 <= v < 1.0:
                problems.append(f"{name} must be a number in [0, 1), got {v!r}")
        if self.peak_flops is not None and not (isinstance(self.peak_flops, float) and self.peak_flops > 0):
            problems.append(f"peak_flops must be a positive number of FLOP/s, got {self.peak_flops!r}")
        for name, choices in (("device", typing.get_args(Device)), ("dtype", typing.get_args(DType)),
                              ("on_nan", typing.get_args(OnNaN)),
                              ("activation", ("gelu", "gelu_tanh"))):
            v = getattr(self, name)
            if v not in choices:
                problems.append(f"{name} must be one of {', '.join(choices)}, got {v!r}"
                                f"{suggest(str(v), choices)}")
        if isinstance(self.n_embd, int) and isinstance(self.n_head, int) and self.n_head > 0 \
                and self.n_embd % self.n_head:
            problems.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not self.init_from:
            problems.append("init_from must be scratch, resume, a GPT-2 name or a path")
        if problems:
            raise ConfigError("training config", problems)

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The GPTConfig these options describe, for a tokenizer of vocab_size tokens."""
        return GPTConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in MODEL_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def tokens_per_iter(self) -> int:
        return self.gradient_accumulation_steps * self.batch_size * self.block_size


_SHAKESPEARE_CHAR = dict(
    # nanoGPT's config/train_shakespeare_char.py: a baby GPT on characters.
    out_dir="out-shakespeare-char", data_dir="data/shakespeare_char", eval_interval=250,
    eval_iters=200, log_interval=10, gradient_accumulation_steps=1, batch_size=64, block_size=256,
    n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False, learning_rate=1e-3, max_iters=5000,
    lr_decay_iters=5000, min_lr=1e-4, beta2=0.99, warmup_iters=100, weight_decay=0.1,
    grad_clip=1.0, compile=True,
)

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "shakespeare-char": _SHAKESPEARE_CHAR,
    # nanoGPT README's CPU recipe: the same, with a 4x4x128 model, block 64, batch 12, 2000 steps.
    "shakespeare-char-cpu": {
        **_SHAKESPEARE_CHAR, "out_dir": "out-shakespeare-char-cpu", "device": "cpu",
        "compile": False, "eval_iters": 20, "block_size": 64, "batch_size": 12, "n_layer": 4,
        "n_head": 4, "n_embd": 128, "max_iters": 2000, "lr_decay_iters": 2000, "dropout": 0.0,
    },
    # nanoGPT's config/train_gpt2.py: GPT-2 124M on OpenWebText, ~0.5M tokens per step on 8 GPUs.
    "gpt2-124m": dict(
        out_dir="out-gpt2-124m", data_dir="data/openwebtext", batch_size=12, block_size=1024,
        gradient_accumulation_steps=40, max_iters=600000, lr_decay_iters=600000, learning_rate=6e-4,
        min_lr=6e-5, warmup_iters=2000, weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0,
        eval_interval=1000, eval_iters=200, log_interval=10, n_layer=12, n_head=12, n_embd=768,
        dropout=0.0, bias=False, vocab_multiple=64, compile=True,
    ),
    # nanoGPT's config/finetune_shakespeare.py, from GPT-2 small (use --init-from gpt2-xl for theirs).
    "finetune-shakespeare": dict(
        out_dir="out-shakespeare", data_dir="data/shakespeare", init_from="gpt2", eval_interval=5,
        eval_iters=40, log_interval=1, batch_size=1, gradient_accumulation_steps=32, max_iters=20,
        learning_rate=3e-5, decay_lr=False, warmup_iters=0, block_size=1024, dropout=0.0,
        bias=True, activation="gelu_tanh", compile=False,
    ),
}


def _base_type(name: str) -> type | None:
    """The non-None type of a TrainConfig field (float for `float | None`)."""
    hint = _HINTS().get(name)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is Literal:
        return str
    if args and typing.get_origin(hint) is not Literal:
        hint = args[0]
    return hint if isinstance(hint, type) else None


_HINT_CACHE: dict[str, Any] = {}


def _HINTS() -> dict[str, Any]:
    if not _HINT_CACHE:
        _HINT_CACHE.update(typing.get_type_hints(TrainConfig))
    return _HINT_CACHE


def check_overrides(d: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate keys and value types of an override mapping; return it with snake_case keys.

    Every problem is collected; unknown keys get the nearest field name as a suggestion.
    """
    names = [f.name for f in fields(TrainConfig)]
    out: dict[str, Any] = {}
    problems = []
    for key, value in d.items():
        k = str(key).replace("-", "_")
        if k not in names:
            problems.append(f"unknown key {key!r}{suggest(k, names)}")
            continue
        base = _base_type(k)
        nullable = type(None) in typing.get_args(_HINTS()[k])
        if value is None and nullable:
            pass
        elif base is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{k} must be a number, got {value!r}")
        elif base is int:
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{k} must be an integer, got {value!r}")
        elif base is bool:
            if not isinstance(value, bool):
                problems.append(f"{k} must be true or false, got {value!r}")
        elif base is str and not isinstance(value, str):
            problems.append(f"{k} must be a string, got {value!r}")
        out[k] = value
    if problems:
        raise ConfigError(where, problems)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML file of TrainConfig overrides (flat keys; a [model] table is flattened)."""
    p = Path(path)
    if not p.is_file():
        raise NanoGPTError(f"config file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise NanoGPTError(f"config file {str(p)!r} must end in .toml, .yaml or .yml")
    except NanoGPTError:
        raise
    except Exception as e:  # tomllib.TOMLDecodeError, yaml.YAMLError
        raise NanoGPTError(f"cannot parse config file {str(p)!r}: {e}") from None
    if not isinstance(data, dict):
        raise NanoGPTError(f"config file {str(p)!r} must hold a mapping of option = value")
    model = data.pop("model", None)
    if isinstance(model, dict):  # allow a [model] table as a convenience
        data = {**model, **data}
    elif model is not None:
        data["model"] = model  # reported as an unknown key below
    return check_overrides(data, f"config file {str(p)!r}")


def preset_overrides(name: str) -> dict[str, Any]:
    if name not in TRAIN_PRESETS:
        raise NanoGPTError(f"unknown preset {name!r}{suggest(name, TRAIN_PRESETS)}; "
                           f"choose one of: {', '.join(TRAIN_PRESETS)}")
    return dict(TRAIN_PRESETS[name])


def resolve_base(preset: str | None = None, config: str | None = None,
                 **overrides: Any) -> TrainConfig:
    """Defaults < preset < config file < overrides, as one validated TrainConfig."""
    d: dict[str, Any] = {}
    if preset:
        d.update(preset_overrides(preset))
    if config:
        file_over = load_config_file(config)
        if file_over.get("preset") and not preset:
            preset = file_over["preset"]
            d = {**preset_overrides(preset), **d}
        d.update(file_over)
    d.update(check_overrides(overrides, "options"))
    d["preset"], d["config"] = preset, config
    return TrainConfig(**d)


_FLAG = re.compile(r"^--(preset|config)(?:=(.*))?$")


def scan_preset_and_config(argv: list[str]) -> tuple[str | None, str | None]:
    """Find --preset and --config in argv before the full parse (they set the defaults)."""
    found: dict[str, str | None] = {"preset": None, "config": None}
    i = 0
    while i < len(argv):
        m = _FLAG.match(argv[i])
        if m:
            if m.group(2) is not None:
                found[m.group(1)] = m.group(2)
            elif i + 1 < len(argv):
                found[m.group(1)] = argv[i + 1]
                i += 1
        i += 1
    return found["preset"], found["config"]


def parse_args(argv: list[str], prog: str = "nanogpt train") -> TrainConfig:
    """The CLI: `--preset NAME --config FILE --key value ...` -> TrainConfig (tyro-derived flags)."""
    import tyro

    preset, config = scan_preset_and_config(argv)
    base = resolve_base(preset, config)
    cfg = tyro.cli(TrainConfig, args=argv, prog=prog, default=base,
                   description="Train a GPT: from scratch, resumed, or finetuned from GPT-2.")
    if cfg.preset != preset or cfg.config != config:  # e.g. `--preset None`; resolve again
        cfg = resolve_base(cfg.preset, cfg.config)
    return cfg


__all__ = ["TrainConfig", "TRAIN_PRESETS", "MODEL_FIELDS", "load_config_file", "resolve_base",
           "parse_args", "check_overrides"]


# --- resolving "auto" hardware options ---------------------------------------------------------

def resolve_device(name: str, local_rank: int = 0) -> "torch.device":
    """auto -> cuda, then mps, then cpu; an unavailable explicit choice is an error."""
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise NanoGPTError("device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
        return torch.device("cuda", local_rank)
    if name == "mps" and not has_mps:
        raise NanoGPTError("device mps was asked for but is not available; use --device cpu or auto")
    return torch.device(name)


def resolve_dtype(name: str, device: "torch.device") -> "torch.dtype":
    """auto -> bfloat16 on GPUs that support it, else float16 (with a GradScaler); float32 on CPU/MPS."""
    import torch

    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise NanoGPTError("this GPU does not support bfloat16; use --dtype float16 (or auto)")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def compile_unsupported_reason(device: "torch.device") -> str | None:
    """Why torch.compile cannot be used here, or None if it should work."""
    import importlib.util
    import shutil

    import torch

    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    if sys.platform == "win32":
        return "torch.compile is not supported on Windows"
    if device.type == "mps":
        return "torch.compile does not support MPS well yet"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++", "cc")):
        return "no C++ compiler found"
    return None
