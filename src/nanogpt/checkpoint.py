"""Checkpoints you can trust: atomic save, newest-complete lookup, and `load_model(spec)`.

A run directory holds `metrics.jsonl` and one directory per checkpoint, `ckpt-{step:08d}/`:

    model.safetensors   the weights (no `_orig_mod.`/`module.` prefixes; the tied head stored once)
    config.json         {"model", "train", "step", "best_val_loss", "tokenizer", "nanogpt_version"}
    state.pt            optimizer, scaler, RNG states, data-loader position (torch.load weights_only)
    COMPLETE            written last: a JSON manifest of the files' sizes

A checkpoint is written into a hidden temp dir, fsync'ed, renamed into place with `os.replace`, and
only then marked COMPLETE. A directory without a valid marker (a crash mid-save, a truncated file)
is never picked. `OUT/best` is a symlink to (or, where symlinks fail, a copy of) the best one.
Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from nanogpt.errors import NanoGPTError
from nanogpt.model import GPT, GPTConfig

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^ckpt-(\d{8})$")
FILES = ("model.safetensors", "config.json", "state.pt")
MARKER = "COMPLETE"
# Test hook: "STEP:SECONDS" pauses the save of that step after the weights are written, before
# the rename, so a test can SIGKILL the process mid-save.
PAUSE_ENV = "NANOGPT_TEST_PAUSE_IN_SAVE"


def ckpt_dir_name(step: int) -> str:
    return f"ckpt-{step:08d}"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _strip(key: str) -> str:
    for prefix in ("_orig_mod.", "module."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key.replace("._orig_mod.", ".")


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights to save: unwrapped names, the tied lm_head (same storage as wte) left out."""
    sd = unwrap(model).state_dict()
    out = {_strip(k): v.detach() for k, v in sd.items()}
    head, wte = out.get("lm_head.weight"), out.get("transformer.wte.weight")
    if head is not None and wte is not None and head.data_ptr() == wte.data_ptr():
        del out["lm_head.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def load_weights(model: GPT, sd: dict[str, torch.Tensor], source: str) -> None:
    """Copy sd into model; NanoGPTError listing every missing/unexpected/mis-shaped tensor."""
    sd = {_strip(k): v for k, v in sd.items()}
    if "lm_head.weight" not in sd and "transformer.wte.weight" in sd:
        sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: stored once
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in sd]
    problems += [f"unexpected {k}" for k in sd if k not in own]
    problems += [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in own.items() if k in sd and sd[k].shape != v.shape]
    if problems:
        shown = "; ".join(problems[:12]) + (f"; ... {len(problems) - 12} more" if len(problems) > 12 else "")
        raise NanoGPTError(f"weights in {source} do not fit the model: {shown}")
    with torch.no_grad():
        model.load_state_dict(sd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _maybe_pause(step: int) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if spec:
        at, _, seconds = spec.partition(":")
        if int(at) == step:
            log.warning("test hook %s: pausing %ss in the middle of saving step %d", PAUSE_ENV, seconds, step)
            time.sleep(float(seconds or 60))


def save_checkpoint(run_dir: str | os.PathLike, step: int, *, weights: dict[str, torch.Tensor],
                    config: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write OUT/ckpt-{step}/ atomically: temp dir, fsync, rename, then the COMPLETE marker."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / ckpt_dir_name(step)
    tmp = run_dir / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file({k: v.cpu() for k, v in weights.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt", "step": str(step)})
        _maybe_pause(step)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        torch.save(state, tmp / "state.pt")
        manifest = {}
        for name in FILES:
            _fsync_file(tmp / name)
            manifest[name] = (tmp / name).stat().st_size
        _fsync_dir(tmp)
        trash = None
        if final.exists():  # the same step saved again (e.g. interrupted right after a resume)
            trash = run_dir / f".trash-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
        os.replace(tmp, final)
        _fsync_dir(run_dir)
        marker_tmp = final / f".{MARKER}.tmp"
        marker_tmp.write_text(json.dumps({"step": step, "files": manifest}) + "\n", encoding="utf-8")
        _fsync_file(marker_tmp)
        os.replace(marker_tmp, final / MARKER)
        _fsync_dir(final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def is_complete(ckpt_dir: str | os.PathLike) -> bool:
    """True if the COMPLETE marker exists and every file has the size it records."""
    d = Path(ckpt_dir)
    try:
        manifest = json.loads((d / MARKER).read_text(encoding="utf-8"))
        files = manifest["files"]
        return all((d / name).stat().st_size == size for name, size in files.items()) and \
            all(name in files for name in FILES)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, dir) of every ckpt-* directory, complete or not, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    out = []
    for p in run_dir.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_dir() and not p.is_symlink():
            out.append((int(m.group(1)), p))
    return sorted(out)


def find_latest(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in run_dir; newer incomplete ones are skipped with a warning."""
    for step, path in reversed(list_checkpoints(run_dir)):
        if is_complete(path):
            return path
        log.warning("skipping incomplete or damaged checkpoint %s (no valid %s marker)", path, MARKER)
    return None


def update_best(run_dir: str | os.PathLike, ckpt_dir: Path) -> None:
    """Point OUT/best at ckpt_dir: a relative symlink swapped in atomically, or a copy."""
    run_dir = Path(run_dir)
    best = run_dir / "best"
    tmp = run_dir / f".tmp-best-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(ckpt_dir.name, tmp, target_is_directory=True)
        if best.is_dir() and not best.is_symlink():
            shutil.rmtree(best)
        os.replace(tmp, best)
    except OSError:  # no symlinks (Windows without developer mode): copy instead
        if tmp.is_symlink():
            tmp.unlink()
        shutil.copytree(ckpt_dir, tmp)
        if best.is_symlink() or best.is_file():
            best.unlink()
        elif best.exists():
            shutil.rmtree(best)
        os.replace(tmp, best)


def best_target(run_dir: str | os.PathLike) -> Path | None:
    best = Path(run_dir) / "best"
    if best.is_symlink():
        return (Path(run_dir) / os.readlink(best)).resolve()
    return None


def prune(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest keep_last complete checkpoints (never the best), plus leftovers
    of interrupted saves. Returns what was removed."""
    run_dir = Path(run_dir)
    ckpts = list_checkpoints(run_dir)
    complete = [p for _, p in ckpts if is_complete(p)]
    keep = set(complete[-keep_last:]) if keep_last > 0 else set()
    best = best_target(run_dir)
    if best is not None:
        keep.add(best)
    kept = {k.resolve() for k in keep}
    newest = complete[-1] if complete else None
    removed = []
    for _, p in ckpts:
        # Older incomplete dirs are debris of crashed saves; newer ones are left for inspection.
        if p.resolve() in kept or (newest is not None and p.name > newest.name):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    for p in run_dir.glob(".tmp-ckpt-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in run_dir.glob(".trash-ckpt-*"):
        shutil.rmtree(p, ignore_errors=True)
    return removed


def read_config(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(ckpt_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NanoGPTError(f"cannot read checkpoint config {path}: {e}") from None
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise NanoGPTError(f"{path} is not a nanogpt checkpoint config (no 'model')")
    return cfg


def read_weights(ckpt_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(ckpt_dir) / "model.safetensors"
    try:
        return load_file(str(path))
    except Exception as e:  # truncated or not safetensors
        raise NanoGPTError(f"cannot read weights {path} ({e}); the checkpoint is damaged") from None


def read_state(ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(ckpt_dir) / "state.pt"
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise NanoGPTError(f"cannot read training state {path} ({e}); the checkpoint is damaged") from None


def resolve_checkpoint(path: str | os.PathLike) -> Path | None:
    """A checkpoint dir for a run dir (its newest complete one) or a checkpoint dir; else None."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return None
    if (p / MARKER).exists() or (p / "model.safetensors").exists() and (p / "state.pt").exists():
        if not is_complete(p):
            raise NanoGPTError(f"checkpoint {p} is incomplete or damaged (its {MARKER} marker is "
                               f"missing or does not match the files); use an older checkpoint")
        return p
    if list_checkpoints(p) or (p / "metrics.jsonl").exists():
        latest = find_latest(p)
        if latest is None:
            raise NanoGPTError(f"run dir {p} has no complete checkpoint yet")
        return latest
    return None


class MetricsLog:
    """OUT/metrics.jsonl (one JSON object per line), plus wandb / TensorBoard when asked."""

    def __init__(self, cfg: Any, resume_step: int | None):
        """cfg: a TrainConfig. resume_step: keep lines up to this step (None: start afresh)."""
        self.path = Path(cfg.out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            # Lines past the checkpoint belong to the interrupted attempt: the resumed run redoes them.
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(ln + "\n" for ln in keep))
            os.replace(tmp, self.path)
        self.file = open(self.path, "a", encoding="utf-8")
        self.wandb = self.tb = None
        if cfg.wandb_log:
            import wandb

            self.wandb = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=cfg.to_dict())
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(cfg.out_dir) / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        scalars = {f"{record['kind']}/{k}": v for k, v in record.items()
                   if k not in ("kind", "step", "time") and isinstance(v, (int, float))}
        if self.wandb is not None:
            self.wandb.log(scalars, step=record["step"])
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.tb is not None:
            self.tb.close()


def rng_state() -> dict[str, Any]:
    """Every generator a run draws from: torch CPU, CUDA, python random, numpy (weights_only-safe)."""
    st = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [st[0], torch.from_numpy(np.asarray(st[1], dtype=np.int64)), int(st[2]), int(st[3]), float(st[4])],
    }


def set_rng_state(d: dict[str, Any]) -> None:
    torch.set_rng_state(d["torch"])
    if d.get("cuda") and torch.cuda.is_available() and len(d["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(d["cuda"])
    random.setstate(d["python"])
    name, keys, pos, has_gauss, cached = d["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


@dataclass
class LoadedModel:
    model: GPT
    tokenizer: Any  # nanogpt.tokenizer.Tokenizer | None
    source: str  # the checkpoint dir, HF dir or GPT-2 name the weights came from
    config: dict  # checkpoint config.json, or {"model": GPTConfig dict} for GPT-2 weights


def load_model(spec: str, device: str | torch.device = "cpu", *,
               ranks_path: str | None = None) -> LoadedModel:
    """A model and its tokenizer from a run dir, a checkpoint dir, a GPT-2 name or a HF GPT-2 dir."""
    from nanogpt.tokenizer import get_gpt2_tokenizer, tokenizer_from_dict

    ckpt = resolve_checkpoint(spec)
    if ckpt is not None:
        cfg = read_config(ckpt)
        try:
            gcfg = GPTConfig.from_dict(cfg["model"])
        except (TypeError, AttributeError):
            raise NanoGPTError(f"{ckpt}/config.json has an invalid 'model' entry") from None
        model = GPT(gcfg)
        load_weights(model, read_weights(ckpt), str(ckpt))
        tok = cfg.get("tokenizer")
        tokenizer = tokenizer_from_dict(tok, ranks_path=ranks_path) if tok else None
        return LoadedModel(model.to(device).eval(), tokenizer, str(ckpt), cfg)
    p = Path(spec).expanduser()
    from nanogpt.hf import GPT2_NAMES, is_hf_dir

    if spec in GPT2_NAMES or is_hf_dir(p) or (not p.exists() and spec.count("/") == 1):
        model = GPT.from_pretrained(spec)
        return LoadedModel(model.to(device).eval(), get_gpt2_tokenizer(ranks_path), spec,
                           {"model": model.config.to_dict()})
    if p.is_dir():
        raise NanoGPTError(f"{spec} is neither a nanogpt run/checkpoint directory nor a Hugging "
                           f"Face GPT-2 directory")
    raise NanoGPTError(f"unknown model {spec!r}: give a run dir, a checkpoint dir, a GPT-2 name "
                       f"({', '.join(GPT2_NAMES)}) or a Hugging Face GPT-2 directory")
