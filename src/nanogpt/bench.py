"""Training and sampling benchmarks: step time, tokens/s, model FLOP/s, MFU and peak memory.

`bench_train` times the real training step (`nanogpt.train.Trainer.train_step`, with its data
loader, schedule, clipping and optimizer) or, with `step="model"`, the bare model + AdamW on
random tokens, which isolates the model's compute. `bench_sample` times KV-cached generation
through `nanogpt.engine.generate`.

How the figures are computed (docs/performance.md has the full story):
- step time: the median over `steps` timed steps after `warmup` untimed ones (which absorb
  torch.compile and allocator warm-up); the fastest step is reported too.
- model FLOP/s: `nanogpt.flops.train_flops_per_token` (6N + 12 L C T) times tokens per step,
  divided by the median step time. Only the model's matmuls count, never recomputation.
- MFU against two ceilings: the data-sheet peak of the device (`flops.PEAK_FLOPS`, unknown for
  CPUs) and a matmul peak measured in the same process, on the same device, in the same dtype:
  the fastest of several large square matmuls (`flops.measure_matmul_peaks`), taken before and
  after the timed steps (the higher of the two counts), so a noisy machine lowers the peak no more
  than it lowers the model.
- peak memory: `torch.cuda.max_memory_allocated` on CUDA; elsewhere the process's max resident
  set size (`resource.getrusage`), which includes Python and torch themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from nanogpt import flops
from nanogpt.errors import ConfigError, NanoGPTError, suggest

log = logging.getLogger(__name__)

StepSource = Literal["trainer", "model"]
Device = Literal["auto", "cpu", "cuda", "mps"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass
class BenchTrainConfig:
    """Options of `nanogpt bench train`; the shape options follow `nanogpt train`."""

    preset: str = "shakespeare-char-cpu"
    """training preset to benchmark (see `nanogpt train --help`)"""
    batch_size: int | None = None
    """sequences per micro-batch; None: the preset's"""
    block_size: int | None = None
    """context length; None: the preset's"""
    compile: bool = False
    """torch.compile the model; the default is what the preset does"""
    device: Device = "auto"
    dtype: DType = "auto"
    """auto: bfloat16 on GPUs that have it, float32 on CPU (as `nanogpt train`)"""
    steps: int = 20
    """timed steps; the median is reported"""
    warmup: int = 5
    """untimed steps first (compilation, allocator, caches)"""
    data_dir: str | None = None
    """prepared data; None: the preset's (Shakespeare is prepared in a temp dir if absent)"""
    step: StepSource = "trainer"
    """trainer: the real Trainer.train_step; model: bare model + AdamW on random tokens"""
    fused: bool = True
    """fused AdamW where the device supports it (as `nanogpt train`); --no-fused: multi-tensor AdamW"""
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    """torch.compile backend with --step model (aot_eager/eager: quick checks of the code path)"""
    peak_seconds: float = 1.0
    """seconds spent on each measurement of the matmul peak (before and after the steps)"""
    json: bool = False
    """print one JSON object instead of a table"""

    def validate(self) -> None:
        problems = _ints(self, ("steps",), 1) + _ints(self, ("warmup",), 0)
        problems += _ints(self, ("batch_size", "block_size"), 1, optional=True)
        if not self.peak_seconds > 0:
            problems.append(f"peak_seconds must be > 0, got {self.peak_seconds!r}")
        if problems:
            raise ConfigError("bench train options", problems)


@dataclass
class BenchSampleConfig:
    """Options of `nanogpt bench sample`; a randomly initialised model of the preset's shape."""

    preset: str = "shakespeare-char-cpu"
    """model preset (gpt2, gpt2-medium, shakespeare-char, shakespeare-char-cpu, ...)"""
    model: str | None = None
    """a run dir, checkpoint dir or GPT-2 name to load instead of a random --preset model"""
    batch_size: int = 1
    prompt_len: int = 16
    """prompt tokens (random ids); prompt + new tokens must fit in block_size"""
    max_new_tokens: int = 48
    compile: bool = False
    device: Device = "auto"
    dtype: DType = "auto"
    """weights' dtype: auto is bfloat16 on GPUs that have it, float32 on CPU"""
    steps: int = 5
    """timed generate() calls; the median is reported"""
    warmup: int = 1
    peak_seconds: float = 1.0
    json: bool = False

    def validate(self) -> None:
        problems = _ints(self, ("batch_size", "prompt_len", "max_new_tokens", "steps"), 1)
        problems += _ints(self, ("warmup",), 0)
        if not self.peak_seconds > 0:
            problems.append(f"peak_seconds must be > 0, got {self.peak_seconds!r}")
        if self.model is None and self.preset not in _model_presets():
            problems.append(f"unknown model preset {self.preset!r}{suggest(self.preset, _model_presets())}")
        if problems:
            raise ConfigError("bench sample options", problems)


def _model_presets() -> dict[str, Any]:
    from nanogpt.model import PRESETS

    return PRESETS


def _ints(cfg: Any, names: tuple[str, ...], minimum: int, optional: bool = False) -> list[str]:
    """A problem line for each named field that is not an integer >= minimum (None if optional)."""
    bad = [n for n in names if not (optional and getattr(cfg, n) is None)
           and (isinstance(getattr(cfg, n), bool) or not isinstance(getattr(cfg, n), int)
                or getattr(cfg, n) < minimum)]
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    return [f"{n} must be {what}, got {getattr(cfg, n)!r}" for n in bad]


# --- devices, timing, peaks, memory ------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NanoGPTError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> str:
    """'auto' -> bfloat16 on a GPU that supports it (else float16), float32 elsewhere."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_calls(fn: Callable[[], Any], n: int, device: torch.device) -> list[float]:
    """Seconds taken by each of n calls of fn, each ended by a device sync."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - t0)
    return out


def interleave(fns: dict[str, Callable[[], Any]], rounds: int, per_round: int,
               device: torch.device) -> dict[str, list[float]]:
    """Time several variants ABAB...: per_round calls of each, rounds times, so that a change in
    background load hits every variant alike. The first call after each switch is not timed: it
    pays for reloading that variant's weights and optimizer state into the caches, which a run
    of one variant never does. Returns each variant's per-call seconds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            time_calls(fn, 1, device)
            times[k] += time_calls(fn, per_round, device)
    return times


def measured_peak(device: torch.device, dtype: str, seconds: float) -> dict[int, float]:
    return flops.measure_matmul_peaks(device, _SHORT.get(dtype, dtype), seconds=seconds)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return (rss if sys.platform == "darwin" else rss * 1024), "process max RSS"


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return None


def summarize(times: list[float], tokens_per_step: int, flops_per_step: float,
              peaks: dict[int, float], table_peak: float | None) -> dict[str, Any]:
    """Figures shared by train and sample results, from per-step seconds."""
    med = statistics.median(times)
    best_peak = max(peaks.values())
    achieved = flops_per_step / med
    return {
        "step_time_s": med,
        "step_time_min_s": min(times),
        "tokens_per_s": tokens_per_step / med,
        "model_flops_per_s": achieved,
        "peak_table_flops": table_peak,
        "mfu_table": None if table_peak is None else achieved / table_peak,
        "peak_measured_flops": best_peak,
        "peak_measured_by_size": {str(n): v for n, v in peaks.items()},
        "mfu_measured": achieved / best_peak,
        "mfu_measured_best_step": flops_per_step / min(times) / best_peak,
    }


def _max_peaks(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    return {n: max(a.get(n, 0.0), b.get(n, 0.0)) for n in {**a, **b}}


# --- training ------------------------------------------------------------------------------------

@dataclass
class TrainStep:
    """One benchmarkable training step and what it computes."""

    fn: Callable[[], Any]
    model_config: Any  # GPTConfig
    batch_size: int
    block_size: int
    grad_accum: int
    device: torch.device
    dtype: str
    compile: bool
    fused: bool | None
    source: str
    cleanup: Callable[[], None] = lambda: None
    is_compiled: Callable[[], bool] | None = None

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size * self.grad_accum

    @property
    def flops_per_step(self) -> float:
        return flops.train_flops_per_token(self.model_config, self.block_size) * self.tokens_per_step


def train_config_for(cfg: BenchTrainConfig, **overrides: Any):
    """The TrainConfig that `nanogpt train --preset P [--batch-size ...]` would use.

    overrides: further TrainConfig fields (n_layer=2, ...), e.g. for a benchmark's dry run."""
    from nanogpt.train_config import TRAIN_PRESETS, resolve_base

    if cfg.preset not in TRAIN_PRESETS:
        raise NanoGPTError(f"unknown preset {cfg.preset!r}{suggest(cfg.preset, TRAIN_PRESETS)}; "
                           f"choose one of: {', '.join(TRAIN_PRESETS)}")
    over: dict[str, Any] = {"device": cfg.device, "dtype": cfg.dtype, "compile": cfg.compile,
                            "progress": False, "wandb_log": False, "tensorboard": False}
    if cfg.batch_size is not None:
        over["batch_size"] = cfg.batch_size
    if cfg.block_size is not None:
        over["block_size"] = cfg.block_size
    if cfg.data_dir is not None:
        over["data_dir"] = cfg.data_dir
    return resolve_base(cfg.preset, None, **{**over, **overrides})


def _ensure_data(data_dir: str, stack: contextlib.ExitStack) -> str:
    """data_dir if prepared; else, for the Shakespeare datasets, a temporary prepared copy."""
    if (Path(data_dir) / "meta.json").is_file():
        return data_dir
    name = Path(data_dir).name
    if name not in ("shakespeare_char", "shakespeare"):
        raise NanoGPTError(f"no prepared data in {data_dir!r}: run `nanogpt prepare` for it first, "
                           f"or pass --data-dir")
    from nanogpt.data import PrepareConfig, prepare

    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="nanogpt-bench-"))
    log.info("%s is not prepared; preparing %s in %s for the benchmark", data_dir, name, tmp)
    prepare(PrepareConfig(source=name, out_dir=tmp, progress=False))
    return tmp


def build_train_step(cfg: BenchTrainConfig, **overrides: Any) -> TrainStep:
    """A zero-argument function that runs one training step, per cfg.step.

    overrides: TrainConfig fields beyond the CLI's (see train_config_for)."""
    cfg.validate()
    tcfg = train_config_for(cfg, **overrides)
    if cfg.step == "model":
        return _model_step(cfg, tcfg)
    stack = contextlib.ExitStack()
    try:
        from nanogpt.train import Trainer

        data_dir = _ensure_data(tcfg.data_dir, stack)
        out_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="nanogpt-bench-run-"))
        tcfg = dataclasses.replace(tcfg, data_dir=data_dir, out_dir=out_dir)
        trainer = Trainer(tcfg)
    except BaseException:
        stack.close()
        raise
    opt = trainer.optimizer
    if not cfg.fused and opt.defaults.get("fused"):
        # Same groups and hyperparameters, other kernel: to measure what fusing buys.
        groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in opt.param_groups]
        opt = trainer.optimizer = torch.optim.AdamW(groups, foreach=True)
    return TrainStep(
        fn=trainer.train_step, model_config=trainer.model_config, batch_size=tcfg.batch_size,
        block_size=tcfg.block_size, grad_accum=tcfg.gradient_accumulation_steps, device=trainer.device,
        dtype=str(trainer.dtype).replace("torch.", ""), compile=tcfg.compile,
        fused=bool(opt.defaults.get("fused")), source="trainer", cleanup=stack.close,
        # compile can fall back to eager at the first step: ask again after the warm-up
        is_compiled=lambda: trainer.model is not trainer.raw_model,
    )


def _model_step(cfg: BenchTrainConfig, tcfg) -> TrainStep:
    """Bare model + AdamW on random tokens: no data loading, schedule or clipping."""
    from nanogpt.model import GPT

    device = resolve_device(tcfg.device)
    dtype = resolve_dtype(tcfg.dtype, device)
    vocab = _vocab_size(tcfg.data_dir)
    mcfg = tcfg.model_config(vocab)
    torch.manual_seed(tcfg.seed)
    model = GPT(mcfg).to(device)
    from nanogpt.optim import fused_supported

    fused = cfg.fused and fused_supported(device.type)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.learning_rate, betas=(tcfg.beta1, tcfg.beta2),
                            weight_decay=tcfg.weight_decay, fused=fused)
    fwd = torch.compile(model, backend=cfg.compile_backend) if cfg.compile else model
    B, T = tcfg.batch_size, tcfg.block_size
    g = torch.Generator().manual_seed(tcfg.seed)
    x = torch.randint(0, vocab, (B, T), generator=g).to(device)
    y = torch.randint(0, vocab, (B, T), generator=g).to(device)
    autocast = (torch.autocast(device.type, dtype=getattr(torch, dtype)) if dtype != "float32"
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            _, loss = fwd(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return TrainStep(fn=step, model_config=mcfg, batch_size=B, block_size=T, grad_accum=1,
                     device=device, dtype=dtype, compile=cfg.compile, fused=fused, source="model")


def _vocab_size(data_dir: str) -> int:
    """The prepared data's vocabulary, else Shakespeare's 65 characters or GPT-2's 50257 BPE ids."""
    if (Path(data_dir) / "meta.json").is_file():
        from nanogpt.data import load_meta

        return int(load_meta(data_dir)["vocab_size"])
    return 65 if "char" in Path(data_dir).name else 50257


def bench_train(cfg: BenchTrainConfig) -> dict[str, Any]:
    """Time cfg.steps training steps after cfg.warmup; return the figures (see module doc)."""
    step = build_train_step(cfg)
    try:
        load = load_average()
        peaks = measured_peak(step.device, step.dtype, cfg.peak_seconds)
        reset_peak_memory(step.device)
        t0 = time.perf_counter()
        time_calls(step.fn, cfg.warmup, step.device)
        warmup_s = time.perf_counter() - t0
        times = time_calls(step.fn, cfg.steps, step.device)
        compiled = step.is_compiled() if step.is_compiled else step.compile
        mem, mem_kind = peak_memory(step.device)
        peaks = _max_peaks(peaks, measured_peak(step.device, step.dtype, cfg.peak_seconds))
    finally:
        step.cleanup()
    result = {
        "kind": "train", "preset": cfg.preset, "step_source": step.source,
        "device": str(step.device), "device_name": flops.device_name(step.device),
        "dtype": step.dtype, "compile": compiled, "fused_adamw": step.fused,
        "batch_size": step.batch_size, "block_size": step.block_size, "grad_accum": step.grad_accum,
        "tokens_per_step": step.tokens_per_step, "steps": cfg.steps, "warmup": cfg.warmup,
        "warmup_s": warmup_s, "flops_per_token": step.flops_per_step / step.tokens_per_step,
        "peak_memory_bytes": mem, "peak_memory_kind": mem_kind,
        "threads": torch.get_num_threads(), "load_average_1min": load, "torch": torch.__version__,
    }
    key = _SHORT.get(step.dtype, step.dtype)
    if key == "fp32" and step.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        key = "tf32"  # the Trainer turns TF32 matmuls on for float32 on CUDA
    table = flops.peak_flops(step.device, key)
    result.update(summarize(times, step.tokens_per_step, step.flops_per_step, peaks, table))
    return result


# --- sampling ------------------------------------------------------------------------------------

def bench_sample(cfg: BenchSampleConfig) -> dict[str, Any]:
    """Time KV-cached generation of max_new_tokens after a random prompt of prompt_len tokens."""
    cfg.validate()
    from nanogpt.engine import generate
    from nanogpt.model import GPT, GPTConfig

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.model is not None:
        from nanogpt.checkpoint import load_model

        model = load_model(cfg.model, device=str(device)).model
    else:
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset(cfg.preset, dropout=0.0))
    mcfg = model.config
    if cfg.prompt_len + cfg.max_new_tokens > mcfg.block_size:
        raise ConfigError("bench sample options", [
            f"prompt_len + max_new_tokens ({cfg.prompt_len + cfg.max_new_tokens}) must fit in the "
            f"model's block_size ({mcfg.block_size})"])
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    fwd = torch.compile(model) if cfg.compile else model  # forwards .config and .parameters()
    g = torch.Generator(device="cpu").manual_seed(0)
    idx = torch.randint(0, mcfg.vocab_size, (cfg.batch_size, cfg.prompt_len), generator=g).to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        generate(fwd, idx, cfg.max_new_tokens, temperature=1.0, generator=gen)

    load = load_average()
    peaks = measured_peak(device, dtype, cfg.peak_seconds)
    reset_peak_memory(device)
    t0 = time.perf_counter()
    time_calls(run, cfg.warmup, device)
    warmup_s = time.perf_counter() - t0
    times = time_calls(run, cfg.steps, device)
    mem, mem_kind = peak_memory(device)
    peaks = _max_peaks(peaks, measured_peak(device, dtype, cfg.peak_seconds))
    new_tokens = cfg.batch_size * cfg.max_new_tokens
    fl = flops.generate_flops(mcfg, cfg.prompt_len, cfg.max_new_tokens) * cfg.batch_size
    result = {
        "kind": "sample", "preset": cfg.preset if cfg.model is None else None, "model": cfg.model,
        "device": str(device), "device_name": flops.device_name(device), "dtype": dtype,
        "compile": cfg.compile, "batch_size": cfg.batch_size, "prompt_len": cfg.prompt_len,
        "max_new_tokens": cfg.max_new_tokens, "steps": cfg.steps, "warmup": cfg.warmup,
        "warmup_s": warmup_s, "flops_per_call": fl, "peak_memory_bytes": mem,
        "peak_memory_kind": mem_kind, "threads": torch.get_num_threads(),
        "load_average_1min": load, "torch": torch.__version__,
    }
    result.update(summarize(times, new_tokens, fl, peaks, flops.peak_flops(device, _SHORT.get(dtype, dtype))))
    result["ms_per_token"] = 1e3 * result["step_time_s"] / cfg.max_new_tokens
    return result
