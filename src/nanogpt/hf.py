"""Hugging Face interop: load OpenAI's GPT-2 or any HF GPT-2 directory, and write one.

Loading accepts a released model name (`gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`), a hub
repo id (`owner/name`), or a local directory holding `config.json` plus `model.safetensors` or
`pytorch_model.bin`. Downloads go through `huggingface_hub` and its cache, so each model is
fetched once. Pickled `.bin` files are read with `torch.load(weights_only=True)`, which refuses
arbitrary objects. The name mapping and Conv1D transposes live in `nanogpt.model`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from nanogpt.errors import NanoGPTError
from nanogpt.model import (
    GPT,
    GPTConfig,
    config_from_hf,
    config_to_hf,
    state_dict_from_hf,
    state_dict_to_hf,
)

log = logging.getLogger(__name__)

# OpenAI's checkpoints now live under the openai-community organisation on the hub.
GPT2_NAMES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_hf_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "config.json").is_file() and any((p / f).is_file() for f in WEIGHT_FILES)


def resolve(name_or_path: str) -> Path:
    """A local directory with the model's files: the path itself, or the hub snapshot."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not is_hf_dir(p):
            raise NanoGPTError(
                f"{p} is not a Hugging Face GPT-2 directory: it needs config.json and "
                f"model.safetensors (or pytorch_model.bin)"
            )
        return p
    repo_id = GPT2_NAMES.get(name_or_path, name_or_path)
    if name_or_path not in GPT2_NAMES and name_or_path.count("/") != 1:
        raise NanoGPTError(
            f"{name_or_path!r} is neither a directory nor a known model; use one of "
            f"{', '.join(GPT2_NAMES)}, a hub id like owner/name, or a local HF GPT-2 directory"
        )
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "model.safetensors"]
    try:  # the cache first: no network needed once downloaded
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        log.info("downloading %s from the Hugging Face hub", repo_id)
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        # owner/name may also be a mistyped local path: say so, unless it is a GPT-2 name
        named = name_or_path in GPT2_NAMES
        local = "" if named else f"there is no local directory {name_or_path!r}, and "
        fix = "Connect" if named else "Check the path, or connect"
        raise NanoGPTError(
            f"{local}could not get {repo_id!r} from the Hugging Face hub ({type(e).__name__}). "
            f"{fix} to the internet once (it is cached under $HF_HOME, default "
            f"~/.cache/huggingface), or pass a local directory in Hugging Face GPT-2 format "
            f"(config.json + model.safetensors)"
        ) from None


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(directory / "model.safetensors"))
    try:
        sd = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except Exception as e:
        raise NanoGPTError(
            f"cannot read {directory / 'pytorch_model.bin'} safely ({e}); convert it to "
            f"model.safetensors"
        ) from None
    return sd


def load_pretrained(name_or_path: str, **overrides: Any) -> GPT:
    """Build a GPT with GPT-2 weights. overrides may set dropout (e.g. for finetuning)."""
    directory = resolve(name_or_path)
    try:
        hf_config = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NanoGPTError(f"cannot read {directory / 'config.json'}: {e}") from None
    if hf_config.get("model_type", "gpt2") != "gpt2":
        raise NanoGPTError(
            f"{name_or_path} is a {hf_config.get('model_type')!r} model; nanogpt loads GPT-2 only"
        )
    unknown = set(overrides) - {"dropout"}
    if unknown:
        raise NanoGPTError(f"only dropout can be overridden when loading GPT-2, not {sorted(unknown)}")
    config = config_from_hf(hf_config)
    if "dropout" in overrides:
        config = GPTConfig.from_dict({**config.to_dict(), "dropout": overrides["dropout"]})
    sd = state_dict_from_hf(read_state_dict(directory), config)
    model = GPT(config)
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or extra:
        raise NanoGPTError(
            f"{name_or_path} does not match a GPT-2 of its config: missing {missing[:5]}, "
            f"unexpected {extra[:5]}"
        )
    bad = [k for k, v in model.state_dict().items() if v.shape != sd[k].shape]
    if bad:
        raise NanoGPTError(
            "weight shapes disagree with config.json for "
            + ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(model.state_dict()[k].shape)}" for k in bad[:5])
        )
    with torch.no_grad():
        model.load_state_dict(sd)
    return model


def save_hf(model: GPT, directory: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors that transformers' GPT2LMHeadModel loads.

    The directory appears complete or not at all: files go to a temporary sibling first.
    A bias-free model is written with zero biases (the same function); a padded vocabulary
    is written at its padded size, since the extra rows are part of the softmax.
    """
    from safetensors.torch import save_file

    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise NanoGPTError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not is_hf_dir(target):
        raise NanoGPTError(f"{target} is not empty; choose a new directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tensors = {k: v.to("cpu", torch.float32) for k, v in state_dict_to_hf(model).items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        hf = config_to_hf(model.config)
        hf["torch_dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
        if target.exists():  # replacing an earlier export of ours
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def export(source: str, out_dir: str | os.PathLike, *, force: bool = False) -> dict[str, Any]:
    """Export a checkpoint (run dir, checkpoint dir, GPT-2 name or HF dir) to HF GPT-2 format.

    The tokenizer's description is written beside the weights as nanogpt_tokenizer.json, so a
    character-level model's vocabulary travels with it.
    """
    from nanogpt.checkpoint import load_model  # checkpoints sit above the model layer

    target = Path(out_dir)
    if target.exists() and any(target.iterdir()) and not force:
        raise NanoGPTError(f"{target} already exists and is not empty; pass --force to replace it")
    if force and target.is_dir():
        shutil.rmtree(target)
    loaded = load_model(source, device="cpu")
    save_hf(loaded.model, target)
    if loaded.tokenizer is not None:
        (target / "nanogpt_tokenizer.json").write_text(json.dumps(loaded.tokenizer.to_dict()) + "\n")
    return {
        "source": loaded.source,
        "out_dir": str(target),
        "params": loaded.model.num_params(),
        "files": sorted(p.name for p in target.iterdir()),
    }
