"""The training loop: `Trainer` (one optimizer step at a time) and `train(cfg)` (the whole run).

One step = `gradient_accumulation_steps` micro-batches (split over DDP processes), forward and
backward under the device's autocast, gradient clipping, a NaN/inf check, and a fused AdamW update.
The host reads the device once per step: one small tensor of [loss, grad norm, flags].

`train()` adds periodic evaluation, metrics (terminal, tqdm, OUT/metrics.jsonl, optional wandb /
TensorBoard), atomic checkpoints (see nanogpt.checkpoint), SIGINT/SIGTERM handling and exact
resume: model, optimizer, scaler, every RNG and the data-loader position are restored, so a resumed
CPU run reproduces the uninterrupted one bit for bit. Options: nanogpt.train_config.TrainConfig.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from nanogpt import checkpoint as ck
from nanogpt.data import BatchLoader, load_meta
from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.flops import measure_matmul_peak, peak_flops, train_flops_per_token
from nanogpt.model import GPT, GPTConfig
from nanogpt.optim import lr_at, make_optimizer
from nanogpt.train_config import (MODEL_FIELDS, TrainConfig, compile_unsupported_reason,
                                  resolve_device, resolve_dtype)

log = logging.getLogger(__name__)

NAN_ENV = "NANOGPT_TEST_NAN_AT_STEP"  # test hook: the loss of update k (1-based) becomes NaN
_DTYPE_KEY = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass
class TrainResult:
    out_dir: Path
    step: int  # optimizer steps done
    status: str  # "done" | "interrupted" | "nan"
    best_val_loss: float | None
    last_val_loss: float | None
    checkpoint: Path | None  # the newest checkpoint written (or kept, after a NaN)
    message: str = ""


class Trainer:
    """Everything one training process holds: model, optimizer, loaders, DDP and device state.

    `train_step()` runs exactly one optimizer step (all micro-batches) and returns its stats;
    `nanogpt bench train` times it. `train()` drives it with evaluation and checkpoints.
    """

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
        self.rank = int(os.environ.get("RANK", "0")) if self.ddp else 0
        self.world_size = int(os.environ.get("WORLD_SIZE", "1")) if self.ddp else 1
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.ddp else 0
        self.master = self.rank == 0
        if cfg.gradient_accumulation_steps % self.world_size:
            raise ConfigError("training config", [
                f"gradient_accumulation_steps ({cfg.gradient_accumulation_steps}) must be a multiple "
                f"of the number of processes ({self.world_size})"])
        self.grad_accum = cfg.gradient_accumulation_steps // self.world_size  # per process
        self.device = resolve_device(cfg.device, local_rank)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        if self.ddp:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":  # TF32 matmuls: a large speed-up for float32 parts
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self._check_extras()

        # Data first: its vocabulary sizes the model, and a too-small split fails fast.
        if not Path(cfg.data_dir).exists():
            name = Path(cfg.data_dir).name
            raise NanoGPTError(f"data dir {cfg.data_dir} does not exist; run 'nanogpt prepare {name} "
                               f"--out-dir {cfg.data_dir}' first (or pass --data-dir)")
        self.meta = load_meta(cfg.data_dir)
        self.loader = BatchLoader(cfg.data_dir, "train", cfg.block_size, cfg.batch_size,
                                  seed=cfg.seed, rank=self.rank, world_size=self.world_size,
                                  epochs=cfg.epochs)
        self.eval_loaders = {
            split: BatchLoader(cfg.data_dir, split, cfg.block_size, cfg.batch_size, seed=cfg.seed + 1)
            for split in ("train", "val")
        }
        self._eval_start = {s: ld.state_dict() for s, ld in self.eval_loaders.items()}

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        random.seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed + self.rank)
        self.step = 0
        self.best_val_loss: float | None = None
        self.elapsed = 0.0  # training seconds before this process (carried across resumes)
        self.resumed_from: Path | None = None
        raw, state = self._init_model()
        torch.manual_seed(cfg.seed + self.rank)  # per-rank dropout masks
        self.raw_model = raw.to(self.device)
        self.model_config = raw.config
        self.optimizer = make_optimizer(self.raw_model, learning_rate=cfg.learning_rate,
                                        weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                                        device_type=self.device.type)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.autocast = (contextlib.nullcontext() if self.dtype == torch.float32
                         else torch.autocast(self.device.type, dtype=self.dtype))
        if state is not None:
            self._load_state(state)
        self._compile_pending = False
        model = self.raw_model
        if cfg.compile:
            reason = compile_unsupported_reason(self.device)
            if reason:
                log.warning("torch.compile turned off: %s", reason)
            else:
                model = torch.compile(model)
                self._compile_pending = True  # compile failures show up at the first step
        self.model = self._wrap(model)
        self.tokens_per_iter = cfg.tokens_per_iter
        self.flops_per_token = train_flops_per_token(self.model_config, cfg.block_size)
        self._peak: float | None | bool = False  # not looked up yet
        self.stop_requested: str | None = None
        nan_at = os.environ.get(NAN_ENV)
        self._nan_at = int(nan_at) if nan_at else None

    # --- setup ---------------------------------------------------------------------------------

    def _check_extras(self) -> None:
        """Fail up front, not at the first log line, if an optional logger is not installed."""
        import importlib.util

        for on, module in ((self.cfg.wandb_log, "wandb"), (self.cfg.tensorboard, "tensorboard")):
            if on and self.master and importlib.util.find_spec(module) is None:
                raise NanoGPTError(f"logging to {module} needs the optional extra: "
                                   f"pip install 'nanogpt[{module}]' (or drop --{module.replace('wandb', 'wandb-log')})")

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.ddp:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _init_model(self) -> tuple[GPT, dict | None]:
        """Build the model for cfg.init_from; return it and the training state to restore, if any."""
        cfg, vocab = self.cfg, int(self.meta["vocab_size"])
        self.tokenizer_dict = self.meta["tokenizer"]
        if cfg.init_from != "resume" and ck.list_checkpoints(cfg.out_dir):
            raise NanoGPTError(f"{cfg.out_dir} already holds checkpoints of a run; continue it with "
                               f"--init-from resume, or start afresh in another --out-dir (or delete it)")
        if cfg.init_from == "scratch":
            return GPT(cfg.model_config(vocab)), None
        if cfg.init_from == "resume":
            latest = ck.find_latest(cfg.out_dir)
            if latest is None:
                raise NanoGPTError(f"nothing to resume: {cfg.out_dir} has no complete checkpoint; "
                                   f"use --init-from scratch (or point --out-dir at the run)")
            return self._resume(latest, vocab)
        from nanogpt.hf import GPT2_NAMES, is_hf_dir

        if cfg.init_from in GPT2_NAMES or is_hf_dir(cfg.init_from):
            model = GPT.from_pretrained(cfg.init_from, dropout=cfg.dropout)
            source = cfg.init_from
        else:
            ckpt = ck.resolve_checkpoint(cfg.init_from)
            if ckpt is None:
                raise NanoGPTError(f"unknown init_from {cfg.init_from!r}: use scratch, resume, a GPT-2 "
                                   f"name ({', '.join(GPT2_NAMES)}), a Hugging Face GPT-2 dir or a "
                                   f"nanogpt checkpoint/run dir")
            saved = ck.read_config(ckpt)
            model = GPT(GPTConfig.from_dict({**saved["model"], "dropout": cfg.dropout}))
            ck.load_weights(model, ck.read_weights(ckpt), str(ckpt))
            source = str(ckpt)
        if vocab > model.config.vocab_size:
            raise NanoGPTError(f"{cfg.data_dir} has {vocab} token ids but {source} knows only "
                               f"{model.config.vocab_size}; prepare the data with the model's tokenizer")
        if cfg.block_size > model.config.block_size:
            raise NanoGPTError(f"block_size {cfg.block_size} exceeds {source}'s {model.config.block_size}; "
                               f"use --block-size {model.config.block_size} or less")
        if cfg.block_size < model.config.block_size:
            log.info("cropping the block size of %s from %d to %d", source, model.config.block_size,
                     cfg.block_size)
            model.crop_block_size(cfg.block_size)
        return model, None

    def _resume(self, ckpt: Path, vocab: int) -> tuple[GPT, dict]:
        saved = ck.read_config(ckpt)
        prev = saved.get("train", {})
        # Architecture options cannot change on resume; dropout may (it has no weights).
        problems = [f"{k}: checkpoint {prev[k]!r}, now {getattr(self.cfg, k)!r}"
                    for k in MODEL_FIELDS if k != "dropout" and k in prev and prev[k] != getattr(self.cfg, k)]
        if saved["model"].get("vocab_size", vocab) < vocab:
            problems.append(f"vocab_size: checkpoint {saved['model']['vocab_size']}, data {vocab}")
        if problems:
            raise ConfigError(f"resume from {ckpt} (the architecture differs; use the options it was "
                              f"trained with)", problems)
        model = GPT(GPTConfig.from_dict({**saved["model"], "dropout": self.cfg.dropout}))
        ck.load_weights(model, ck.read_weights(ckpt), str(ckpt))
        self.tokenizer_dict = saved.get("tokenizer", self.tokenizer_dict)
        self.resumed_from = ckpt
        log.info("resuming from %s", ckpt)
        return model, ck.read_state(ckpt)

    def _load_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        self.step = int(state["step"])
        self.best_val_loss = state.get("best_val_loss")
        self.elapsed = float(state.get("elapsed", 0.0))
        rngs = state.get("rng", [])
        if len(rngs) == self.world_size:
            ck.set_rng_state(rngs[self.rank])
        else:
            log.warning("checkpoint was written by %d processes, this run has %d: RNG streams "
                        "restart from the seed (the run will not be bitwise reproducible)",
                        len(rngs), self.world_size)

    # --- one step ------------------------------------------------------------------------------

    def lr(self, step: int) -> float:
        c = self.cfg
        return lr_at(step, learning_rate=c.learning_rate, min_lr=c.min_lr, warmup_iters=c.warmup_iters,
                     lr_decay_iters=c.lr_decay_iters, decay_lr=c.decay_lr)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def _micro_steps(self, batches: list | None) -> torch.Tensor:
        """Forward + backward over this process's micro-batches; returns the mean loss (device)."""
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.grad_accum):
            if batches is not None and micro < len(batches):
                x, y = batches[micro]
            else:
                x, y = self.loader.next_batch()
                if batches is not None:
                    batches.append((x, y))
            x, y = self._to_device(x), self._to_device(y)
            # Gradients are all-reduced only on the last micro-step.
            sync = (self.model.no_sync() if self.ddp and micro < self.grad_accum - 1
                    else contextlib.nullcontext())
            with sync:
                with self.autocast:
                    _, loss = self.model(x, y)  # (B, T, V) logits discarded; loss is a scalar
                if self._nan_at is not None and self.step + 1 == self._nan_at and micro == 0:
                    loss = loss * float("nan")
                loss = loss / self.grad_accum
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach()
        return loss_sum

    def train_step(self) -> dict[str, Any]:
        """One optimizer step; returns {step, loss, grad_norm, lr, nonfinite, skipped, stop}."""
        lr = self.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self._compile_pending:  # the first compiled step: fall back if the compiler fails
            batches: list = []
            try:
                loss = self._micro_steps(batches)
            except Exception as e:  # inductor/dynamo errors are not user errors: keep going
                log.warning("torch.compile failed (%s: %s); continuing without it",
                            type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                self.optimizer.zero_grad(set_to_none=True)
                self.model = self._wrap(self.raw_model)
                self._compile_pending = False
                loss = self._micro_steps(batches)
            self._compile_pending = False
        else:
            loss = self._micro_steps(None)
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        bad = ~torch.isfinite(loss)
        if not self.scaler.is_enabled():  # with fp16, inf gradients are the scaler's business
            bad = bad | ~torch.isfinite(grad_norm)
        stats = torch.stack([loss.float(), grad_norm.float().to(loss.device), bad.float(),
                             torch.tensor(float(self.stop_requested is not None), device=loss.device)])
        if self.ddp:  # mean loss over ranks (the grad norm is already equal); any flag stops all
            stats[:2] /= self.world_size
            dist.all_reduce(stats)
        loss_v, norm_v, bad_v, stop_v = stats.tolist()  # the one host sync of the step
        out = {"step": self.step, "loss": loss_v, "grad_norm": norm_v, "lr": lr,
               "nonfinite": bad_v > 0, "skipped": False, "stop": stop_v > 0}
        if out["nonfinite"]:
            self.optimizer.zero_grad(set_to_none=True)
            if self.cfg.on_nan == "stop":
                return out  # no update, step not advanced
            out["skipped"] = True
            if self.scaler.is_enabled():
                self.scaler.update()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        out["step"] = self.step
        return out

    # --- evaluation and checkpoints ------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over eval_iters fixed batches of each split (the same batches every time)."""
        model = self.model.module if self.ddp else self.model
        if self._compile_pending:  # not compiled yet: let the first train step find out if it works
            model = self.raw_model
        model.eval()
        out = {}
        for split, loader in self.eval_loaders.items():
            loader.load_state_dict(self._eval_start[split])
            total = torch.zeros((), device=self.device)
            for _ in range(self.cfg.eval_iters):
                x, y = loader.next_batch()
                with self.autocast:
                    _, loss = model(self._to_device(x), self._to_device(y))
                total += loss.float()
            out[split] = total.item() / self.cfg.eval_iters
        model.train()
        return out

    def peak(self) -> float | None:
        """FLOP/s that MFU is relative to: --peak-flops, the data-sheet table, or measured on CPU."""
        if self._peak is False:
            key = _DTYPE_KEY[self.dtype]
            if key == "fp32" and self.device.type == "cuda":
                key = "tf32"
            self._peak = self.cfg.peak_flops or peak_flops(self.device, key)
            if self._peak is None and self.device.type == "cpu":
                self._peak = measure_matmul_peak(self.device, seconds=0.25)
                log.info("CPU matmul peak measured at %.1f GFLOP/s (MFU is relative to it)", self._peak / 1e9)
        return self._peak or None

    def save(self, elapsed: float) -> Path | None:
        """Write a checkpoint of the current state (rank 0 writes; every rank must call this)."""
        rng = ck.rng_state()
        if self.ddp:
            rngs: list = [None] * self.world_size
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if not self.master:
            return None
        state = {"optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                 "rng": rngs, "loader": self.loader.state_dict(), "step": self.step,
                 "best_val_loss": self.best_val_loss, "elapsed": elapsed, "world_size": self.world_size}
        from nanogpt import __version__

        config = {"model": self.model_config.to_dict(), "train": self.cfg.to_dict(), "step": self.step,
                  "best_val_loss": self.best_val_loss, "tokenizer": self.tokenizer_dict,
                  "nanogpt_version": __version__}
        path = ck.save_checkpoint(self.cfg.out_dir, self.step, weights=ck.model_state(self.raw_model),
                                  config=config, state=state)
        return path

    def close(self) -> None:
        if self.ddp and dist.is_initialized():
            dist.destroy_process_group()


# --- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGINT/SIGTERM ask the trainer to finish its step, save and stop; a 2nd SIGINT aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if trainer.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_requested = name
        log.warning("%s received: finishing this step, saving a checkpoint, then stopping "
                    "(Ctrl-C again to abort without saving)", name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(cfg: TrainConfig, *, trainer: Trainer | None = None) -> TrainResult:
    """Run training per cfg: evaluate every eval_interval steps, checkpoint, stop at max_iters."""
    from tqdm.auto import tqdm

    trainer = trainer or Trainer(cfg)
    t = trainer
    metrics = ck.MetricsLog(cfg, t.step if t.resumed_from else None) if t.master else None
    bar = tqdm(total=cfg.max_iters, initial=t.step, disable=not (cfg.progress and t.master),
               desc="train", unit="step", dynamic_ncols=True)
    start_step, t0 = t.step, time.perf_counter()
    last_ckpt = t.resumed_from
    last_val = None
    result_status, message = "done", ""
    log_t, log_step = time.perf_counter(), t.step

    def now() -> float:
        return t.elapsed + time.perf_counter() - t0

    def checkpoint(improved: bool) -> Path | None:
        path = t.save(now())
        if path is not None:
            if improved:
                ck.update_best(cfg.out_dir, path)
            ck.prune(cfg.out_dir, cfg.keep_last)
        return path

    try:
        with _stop_on_signals(t):
            if t.master:
                log.info("training %s: %.2fM parameters, %d tokens per step, %s on %s%s",
                         cfg.out_dir, t.raw_model.num_params() / 1e6, t.tokens_per_iter,
                         str(t.dtype).replace("torch.", ""), t.device,
                         f", {t.world_size} processes" if t.ddp else "")
            if t.master:
                t.peak()  # measured before the clock starts, on CPU
            log_t = time.perf_counter()
            stopping = False
            while True:
                resumed_here = t.resumed_from is not None and t.step == start_step
                saved_now = False
                pause_t = time.perf_counter()
                if (t.step % cfg.eval_interval == 0 or t.step >= cfg.max_iters) and not resumed_here:
                    losses = t.evaluate()
                    last_val = losses["val"]
                    improved = t.best_val_loss is None or last_val < t.best_val_loss
                    if improved:
                        t.best_val_loss = last_val
                    if metrics:
                        metrics.write({"kind": "eval", "step": t.step, "tokens": t.step * t.tokens_per_iter,
                                       "train_loss": losses["train"], "val_loss": last_val, "time": now()})
                        log.info("step %d: train loss %.4f, val loss %.4f%s", t.step, losses["train"],
                                 last_val, " (best)" if improved else "")
                    if t.step > 0:
                        last_ckpt = checkpoint(improved) or last_ckpt
                        saved_now = True
                log_t += time.perf_counter() - pause_t  # tokens/s counts training time only
                if stopping:
                    if not saved_now:
                        last_ckpt = checkpoint(False) or last_ckpt
                    result_status = "interrupted"
                    message = (f"stopped by {t.stop_requested or 'a signal'} after step {t.step}; "
                               f"checkpoint {last_ckpt}; continue with --init-from resume")
                    log.warning(message)
                    break
                if t.step >= cfg.max_iters:
                    break
                out = t.train_step()
                if out["nonfinite"]:
                    what = f"non-finite loss ({out['loss']}) or gradient norm at step {out['step'] + 1}"
                    if cfg.on_nan == "stop":
                        result_status = "nan"
                        message = (f"{what}: stopped before the optimizer step. The last good checkpoint "
                                   f"is {last_ckpt or '(none yet)'}; resume with --init-from resume, "
                                   f"perhaps with a lower --learning-rate, or pass --on-nan skip")
                        log.error(message)
                        break
                    log.warning("%s: skipped this update (--on-nan skip)", what)
                bar.update(1)
                if t.step % cfg.log_interval == 0 or t.step == start_step + 1:
                    dt = time.perf_counter() - log_t
                    tps = (t.step - log_step) * t.tokens_per_iter / max(dt, 1e-9)
                    log_t, log_step = time.perf_counter(), t.step
                    peak = t.peak()
                    mfu = tps * t.flops_per_token / (peak * t.world_size) if peak else None
                    if metrics:
                        metrics.write({"kind": "train", "step": t.step, "tokens": t.step * t.tokens_per_iter,
                                       "loss": out["loss"], "lr": out["lr"], "grad_norm": out["grad_norm"],
                                       "tokens_per_s": tps, "mfu": mfu, "time": now()})
                        mfu_s = f"{mfu:.1%}" if mfu is not None else "n/a"
                        bar.set_postfix(loss=f"{out['loss']:.4f}", lr=f"{out['lr']:.2e}",
                                        gnorm=f"{out['grad_norm']:.2f}", tok_s=f"{tps:,.0f}", mfu=mfu_s,
                                        refresh=False)
                        # With a live bar the numbers are in its postfix; without one, print lines.
                        log.log(logging.DEBUG if not bar.disable else logging.INFO,
                                "step %d: loss %.4f, lr %.2e, grad norm %.3f, %.0f tokens/s, MFU %s",
                                t.step, out["loss"], out["lr"], out["grad_norm"], tps, mfu_s)
                stopping = out["stop"]
            if t.ddp:  # let rank 0 finish writing before any process tears the group down
                dist.barrier()
    finally:
        bar.close()
        if metrics:
            metrics.close()
        t.close()
    return TrainResult(Path(cfg.out_dir), t.step, result_status, t.best_val_loss, last_val,
                       last_ckpt, message)


__all__ = ["Trainer", "TrainResult", "TrainConfig", "train"]
