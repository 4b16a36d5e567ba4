"""`nanogpt bench train|sample`: parse options, run nanogpt.bench, print a table or JSON."""

from __future__ import annotations

import json
import sys

from nanogpt.errors import NanoGPTError, suggest

_USAGE = ("usage: nanogpt bench {train,sample} [options]   "
          "(nanogpt bench train --help for the options)")


def _scan_preset(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--preset="):
            return a.split("=", 1)[1]
        if a == "--preset" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _fmt_flops(x: float | None) -> str:
    if x is None:
        return "unknown"
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x / 1e6:.1f} MFLOP/s"


def _print_table(r: dict) -> None:
    what = r.get("preset") or r.get("model")
    if r["kind"] == "train":
        head = (f"train  {what}  ({r['step_source']} step)  batch {r['batch_size']} x {r['block_size']}"
                f" x accum {r['grad_accum']}  compile={r['compile']}  fused_adamw={r['fused_adamw']}")
    else:
        head = (f"sample  {what}  batch {r['batch_size']}  prompt {r['prompt_len']}  "
                f"new {r['max_new_tokens']}  compile={r['compile']}")
    print(head)
    print(f"device {r['device_name']} ({r['device']}, {r['dtype']}, {r['threads']} threads)  "
          f"torch {r['torch']}  load avg {r['load_average_1min']}")
    unit = "step" if r["kind"] == "train" else "generate() call"
    rows = [
        (f"median {unit}", f"{r['step_time_s'] * 1e3:.2f} ms  (fastest {r['step_time_min_s'] * 1e3:.2f} ms,"
                           f" {r['steps']} timed after {r['warmup']} warm-up in {r['warmup_s']:.1f} s)"),
        ("tokens/s", f"{r['tokens_per_s']:,.0f}"),
        ("model FLOP/s", _fmt_flops(r["model_flops_per_s"])),
        ("MFU vs data sheet", "n/a (no table entry for this device)" if r["mfu_table"] is None
         else f"{r['mfu_table']:.1%} of {_fmt_flops(r['peak_table_flops'])}"),
        ("matmul peak (measured)", f"{_fmt_flops(r['peak_measured_flops'])}  (best of n = "
                                   f"{', '.join(r['peak_measured_by_size'])})"),
        ("ratio to measured peak", f"{r['mfu_measured']:.3f}  (fastest step: {r['mfu_measured_best_step']:.3f})"),
        ("peak memory", f"{_gib(r['peak_memory_bytes'])}  ({r['peak_memory_kind']})"),
    ]
    if r["kind"] == "sample":
        rows.insert(1, ("ms per token", f"{r['ms_per_token']:.2f}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def main(argv: list[str], prog: str) -> int:
    import tyro

    from nanogpt import bench

    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        print("  train   time the training step: step time, tokens/s, FLOP/s, MFU, memory")
        print("  sample  time KV-cached generation")
        return 0
    what, rest = argv[0], argv[1:]
    if what == "train":
        default = bench.BenchTrainConfig()
        preset = _scan_preset(rest)
        if preset is not None:
            from nanogpt.train_config import TRAIN_PRESETS

            if preset in TRAIN_PRESETS:  # compile defaults to what `nanogpt train` does
                default.preset = preset
                default.compile = bool(TRAIN_PRESETS[preset].get("compile", False))
        else:
            from nanogpt.train_config import TRAIN_PRESETS

            default.compile = bool(TRAIN_PRESETS[default.preset].get("compile", False))
        cfg = tyro.cli(bench.BenchTrainConfig, args=rest, prog=f"{prog} train", default=default,
                       description="Time the training step of a preset.")
        result = bench.bench_train(cfg)
    elif what == "sample":
        cfg = tyro.cli(bench.BenchSampleConfig, args=rest, prog=f"{prog} sample",
                       description="Time KV-cached generation with a random model of a preset's shape.")
        result = bench.bench_sample(cfg)
    else:
        raise NanoGPTError(f"unknown benchmark {what!r}{suggest(what, ['train', 'sample'])}; "
                           f"use train or sample")
    if cfg.json:
        json.dump(result, sys.stdout)
        print()
    else:
        _print_table(result)
    return 0
