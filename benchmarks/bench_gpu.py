"""GPU benchmark in one call: GPT-2 124M training throughput/MFU and shakespeare-char time to quality.

    python benchmarks/bench_gpu.py                 # on a CUDA machine (about 5 minutes on an H100)
    python benchmarks/bench_gpu.py --dry-run       # anywhere, on CPU, tiny shapes, < 1 minute

Part 1, throughput: GPT-2 124M (12 layers, 768 wide, vocab padded to 50304, no biases) at block
1024, bfloat16 autocast, torch.compile, flash attention (SDPA) and fused AdamW; the bare model +
optimizer step on random tokens (`nanogpt bench train --step model`), so no dataset is needed.
Reported: median step, tokens/s, model FLOP/s (6N + 12 L C T per token), MFU against the
data-sheet dense bf16 peak (989 TFLOP/s on H100 SXM / H200) and against a bf16 matmul peak
measured in the same process (best of 4096 and 8192 square matmuls). The target is >= 45% MFU.

Part 2, time to quality: `nanogpt train --preset shakespeare-char` (6 x 384, block 256, bf16,
compiled) until val loss <= 1.47 or the preset's 5000 steps; wall time when it first gets there.

--dry-run runs every code path (model step with bf16 autocast and torch.compile via the
aot_eager backend, both peaks, a short `nanogpt train` subprocess, the result record) with tiny
shapes on CPU; it prints the record and writes a file only if --out is given.
Results: benchmarks/results/gpu_<device>.json, rendered by benchmarks/make_benchmarks_md.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
_SHARED = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
if _SHARED.exists():  # the offline copy beside the checkout, as the tests and Makefile use
    os.environ.setdefault("NANOGPT_SHAKESPEARE", str(_SHARED))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from nanogpt import bench, flops, results  # noqa: E402

DATASHEET_BF16 = 989e12  # H100 SXM / H200 dense bf16 (no sparsity)
TINY = dict(n_layer=2, n_head=2, n_embd=64, block_size=64)


def throughput(dry: bool, batch_size: int, steps: int, warmup: int) -> tuple[dict, list[str]]:
    device = torch.device("cpu" if dry else "cuda")
    cfg = bench.BenchTrainConfig(
        preset="gpt2-124m", step="model", device=device.type, dtype="bfloat16", compile=True,
        fused=True, batch_size=2 if dry else batch_size, steps=steps, warmup=warmup,
        compile_backend="aot_eager" if dry else "inductor", peak_seconds=0.2 if dry else 2.0)
    st = bench.build_train_step(cfg, **(TINY if dry else {}))
    t0 = time.perf_counter()
    bench.time_calls(st.fn, warmup, st.device)
    warm_s = time.perf_counter() - t0
    bench.reset_peak_memory(device)
    times = bench.time_calls(st.fn, steps, device)
    mem, mem_kind = bench.peak_memory(device)
    sizes = (256, 512) if dry else (4096, 8192)
    peaks = flops.measure_matmul_peaks(device, "bf16", sizes, seconds=cfg.peak_seconds)
    s = bench.summarize(times, st.tokens_per_step, st.flops_per_step, peaks, DATASHEET_BF16)
    fig = {
        "GPT-2 124M: batch x block": f"{st.batch_size} x {st.block_size}",
        "GPT-2 124M: median step, ms": round(s["step_time_s"] * 1e3, 2),
        "GPT-2 124M: tokens/s": round(s["tokens_per_s"]),
        "GPT-2 124M: model TFLOP/s": round(s["model_flops_per_s"] / 1e12, 2),
        "GPT-2 124M: MFU vs 989 TFLOP/s bf16 data sheet": round(s["mfu_table"], 4),
        "bf16 matmul peak (measured), TFLOP/s": round(s["peak_measured_flops"] / 1e12, 1),
        "GPT-2 124M: MFU vs measured bf16 matmul peak": round(s["mfu_measured"], 4),
        "GPT-2 124M: peak memory, GiB": round(mem / 2**30, 2),
        "GPT-2 124M: warm-up incl. compile, s": round(warm_s, 1),
    }
    notes = [f"{steps} timed steps after {warmup}; memory = {mem_kind}; "
             f"bare model + fused AdamW on random tokens, bf16 autocast, SDPA, torch.compile"]
    return fig, notes


def first_reach(metrics: Path, target: float) -> tuple[float | None, float | None, int | None]:
    from bench_train_throughput import first_reach as _first_reach

    return _first_reach(metrics, target)


def time_to_quality(dry: bool, target: float, work: str) -> tuple[dict, list[str]]:
    import subprocess

    from nanogpt.data import PrepareConfig, prepare

    data_dir = str(Path(work) / "shakespeare_char")
    prepare(PrepareConfig(source="shakespeare_char", out_dir=data_dir, progress=False))
    out = Path(work) / "run"
    cmd = [sys.executable, "-m", "nanogpt", "train", "--preset", "shakespeare-char",
           "--data-dir", data_dir, "--out-dir", str(out), "--no-progress"]
    if dry:
        cmd += ["--device", "cpu", "--no-compile", "--max-iters", "6", "--eval-interval", "3",
                "--eval-iters", "2", "--batch-size", "2", "--block-size", "32", "--n-layer", "1",
                "--n-head", "2", "--n-embd", "32", "--warmup-iters", "1", "--lr-decay-iters", "6"]
    else:
        cmd += ["--device", "cuda", "--eval-interval", "100"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    reach, final, step = first_reach(out / "metrics.jsonl", target)
    fig = {
        f"shakespeare-char: time to val loss {target}, s":
            round(reach, 1) if reach is not None else f"not reached in {step} steps",
        "shakespeare-char: final val loss": round(final, 4) if final is not None else None,
    }
    return fig, [f"shakespeare-char run: {step} steps, process wall {wall:.0f} s (incl. compile, evals)"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU; checks the code paths")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--target", type=float, default=1.47)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/gpu_<device>.json)")
    a = ap.parse_args(argv)
    dry = a.dry_run
    if not dry and not torch.cuda.is_available():
        print("bench_gpu: error: no CUDA GPU visible to torch; run with --dry-run to check the code "
              "paths on CPU", file=sys.stderr)
        return 2
    steps = a.steps or (3 if dry else 30)
    warmup = a.warmup or (1 if dry else 10)
    figures, notes = throughput(dry, a.batch_size, steps, warmup)
    with tempfile.TemporaryDirectory(prefix="nanogpt-gpu-bench-") as work:
        if a.skip_quality:
            figures[f"shakespeare-char: time to val loss {a.target}, s"] = "not measured (--skip-quality)"
        else:
            q, qn = time_to_quality(dry, a.target, work)
            figures.update(q)
            notes += qn
    device = "cpu (dry run)" if dry else flops.device_name("cuda")
    if dry:
        notes.insert(0, "DRY RUN: tiny shapes on CPU, figures meaningless")
    record = {"device": device, "figures": figures, "notes": "; ".join(notes)}
    out = a.out
    if out is None and not dry:
        slug = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")
        out = str(ROOT / "benchmarks" / "results" / f"gpu_{slug}.json")
    if out is not None:
        cmd = "python benchmarks/bench_gpu.py" + " ".join([""] + (argv if argv is not None else sys.argv[1:]))
        record = results.write_result(out, title="GPU: GPT-2 124M throughput and shakespeare-char time to quality",
                                    device=device, command=cmd, figures=figures, notes=record["notes"])
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
