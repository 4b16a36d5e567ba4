"""CPU training throughput of the shakespeare-char-cpu preset, eager vs optimised, + time to quality.

One command (run from the repository root; a few minutes on 2 cores):

    NANOGPT_SHAKESPEARE=/path/to/tinyshakespeare.txt python benchmarks/bench_train_throughput.py

Part 1, throughput: the real `Trainer.train_step` of the preset in three variants, timed ABAB
(a few steps of each in turn, many rounds) so that background load hits each alike:
  eager           no torch.compile, multi-tensor (foreach) AdamW: a straightforward implementation
  eager+fused     no torch.compile, fused AdamW
  compiled+fused  torch.compile (inductor, C++ on CPU) and fused AdamW: the optimised step
Each variant's model FLOP/s (6N + 12 L C T per token; nanogpt.flops) is divided by the fp32
matmul peak measured in the same process (best of 512/1024/2048 square matmuls, re-measured
between rounds; the highest reading counts).

Part 2, time to quality (skip with --skip-quality): `nanogpt train --preset shakespeare-char-cpu`
with seeds 1337, 1338, 1339 (evaluating every --eval-interval steps for time resolution); the wall
time at which val loss first reaches 1.89 and the final val loss, each the median of the seeds.

Writes benchmarks/results/train_throughput_cpu.json; `python benchmarks/make_benchmarks_md.py`
renders it into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
_SHARED = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
if _SHARED.exists():  # the offline copy beside the checkout, as the tests and Makefile use
    os.environ.setdefault("NANOGPT_SHAKESPEARE", str(_SHARED))

import torch  # noqa: E402

from nanogpt import bench, results  # noqa: E402

PRESET = "shakespeare-char-cpu"
VARIANTS = {  # name -> (compile, fused AdamW)
    "eager": (False, False),
    "eager+fused": (False, True),
    "compiled+fused": (True, True),
}


def throughput(data_dir: str, rounds: int, per_round: int, warmup: int) -> tuple[dict, list[str]]:
    notes: list[str] = []
    steps, stack = {}, contextlib.ExitStack()
    load0 = bench.load_average()
    with stack:
        compile_s = {}
        for name, (comp, fused) in VARIANTS.items():
            cfg = bench.BenchTrainConfig(preset=PRESET, compile=comp, fused=fused, data_dir=data_dir,
                                         device="cpu", dtype="float32")
            st = bench.build_train_step(cfg)
            stack.callback(st.cleanup)
            t0 = time.perf_counter()
            bench.time_calls(st.fn, warmup, st.device)
            compile_s[name] = time.perf_counter() - t0
            if comp and not st.is_compiled():
                notes.append(f"{name}: torch.compile fell back to eager (see the log)")
            steps[name] = st
        device = torch.device("cpu")
        peaks = bench.measured_peak(device, "float32", 1.5)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for r in range(rounds):
            got = bench.interleave({k: s.fn for k, s in steps.items()}, 1, per_round, device)
            for k, v in got.items():
                times[k] += v
            if r % 5 == 4:  # the peak, re-measured under the same background as the steps
                peaks = bench._max_peaks(peaks, bench.measured_peak(device, "float32", 0.6))
        peaks = bench._max_peaks(peaks, bench.measured_peak(device, "float32", 1.5))
    load1 = bench.load_average()
    peak = max(peaks.values())
    fig: dict = {"matmul peak fp32, GFLOP/s (best of n=512/1024/2048)": round(peak / 1e9, 1)}
    for n, v in peaks.items():
        fig[f"matmul fp32 n={n}, GFLOP/s"] = round(v / 1e9, 1)
    any_st = next(iter(steps.values()))
    fig["FLOPs per token (6N + 12LCT)"] = any_st.flops_per_step / any_st.tokens_per_step
    fig["tokens per step"] = any_st.tokens_per_step
    for name, st in steps.items():
        s = bench.summarize(times[name], st.tokens_per_step, st.flops_per_step, peaks, None)
        fig[f"{name}: median step, ms"] = round(s["step_time_s"] * 1e3, 2)
        fig[f"{name}: fastest step, ms"] = round(s["step_time_min_s"] * 1e3, 2)
        fig[f"{name}: tokens/s"] = round(s["tokens_per_s"])
        fig[f"{name}: model GFLOP/s"] = round(s["model_flops_per_s"] / 1e9, 1)
        fig[f"{name}: ratio to matmul peak"] = round(s["mfu_measured"], 3)
        fig[f"{name}: warm-up incl. compile, s"] = round(compile_s[name], 1)
    base = statistics.median(times["eager"])
    fig["speed-up compiled+fused vs eager"] = round(base / statistics.median(times["compiled+fused"]), 3)
    notes.append(f"CPU: {results.cpu_model()}, {torch.get_num_threads()} threads, "
                 f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    notes.append(f"{rounds} rounds x {per_round} timed steps per variant, interleaved (the first step after "
                 f"each switch untimed); 1-min load average "
                 f"{load0:.2f} before, {load1:.2f} after (on 2 cores, > ~0.5 means other processes "
                 f"competed for the CPU and medians are pessimistic)")
    return fig, notes


def first_reach(metrics: Path, target: float) -> tuple[float | None, float | None, int | None]:
    """(wall seconds when val loss first <= target, final val loss, final step) from metrics.jsonl."""
    reach = final = step = None
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") != "eval":
            continue
        final, step = rec["val_loss"], rec["step"]
        if reach is None and rec["val_loss"] <= target:
            reach = rec["time"]
    return reach, final, step


def quality(data_dir: str, seeds: list[int], target: float, eval_interval: int,
            compile_: bool | None, work: str, extra: list[str] = ()) -> tuple[dict, list[str]]:
    reach, finals, notes = [], [], []
    for seed in seeds:
        out = Path(work) / f"seed{seed}"
        cmd = [sys.executable, "-m", "nanogpt", "train", "--preset", PRESET, "--seed", str(seed),
               "--data-dir", data_dir, "--out-dir", str(out), "--eval-interval", str(eval_interval),
               "--no-progress"]
        if compile_ is not None:
            cmd.append("--compile" if compile_ else "--no-compile")
        cmd += list(extra)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        r, final, step = first_reach(out / "metrics.jsonl", target)
        reach.append(r)
        finals.append(final)
        notes.append(f"seed {seed}: val {target} at {'never' if r is None else f'{r:.0f} s'}, "
                     f"final val loss {final:.4f} at step {step}, process wall {wall:.0f} s")
    ok = [r for r in reach if r is not None]
    fig = {
        f"time to val loss {target}, s (median of {len(seeds)} seeds)":
            round(statistics.median(ok), 1) if len(ok) == len(seeds) else
            f"not reached by {len(seeds) - len(ok)} of {len(seeds)} seeds",
        f"final val loss (median of {len(seeds)} seeds)": round(statistics.median(finals), 4),
        "time-to-quality run": (f"nanogpt train --preset {PRESET}"
                                + ("" if compile_ is None else " --compile" if compile_ else " --no-compile")
                                + f" --eval-interval {eval_interval}" + "".join(" " + e for e in extra)
                                + "; wall time includes any compilation"),
    }
    return fig, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-round", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--skip-quality", action="store_true", help="throughput only (keeps old quality figures)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    ap.add_argument("--target", type=float, default=1.89)
    ap.add_argument("--eval-interval", type=int, default=100)
    ap.add_argument("--quality-compile", action=argparse.BooleanOptionalAction, default=None,
                    help="force torch.compile on/off in the quality runs (default: the preset's)")
    ap.add_argument("--train-args", default="", help="extra `nanogpt train` flags for the quality runs")
    ap.add_argument("--data-dir", default=None, help="prepared shakespeare_char (default: temp dir)")
    ap.add_argument("--omp-passive", action="store_true",
                    help="set OMP_WAIT_POLICY=PASSIVE (for a shared machine: OpenMP threads then sleep "
                         "instead of spinning while they wait; see docs/performance.md)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/train_throughput_cpu.json"))
    a = ap.parse_args()
    if a.omp_passive and os.environ.get("OMP_WAIT_POLICY") != "PASSIVE":
        # OpenMP reads it once, when torch loads: start again with it set (children inherit it).
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="nanogpt-bench-") as work:
        data_dir = a.data_dir
        if data_dir is None:
            from nanogpt.data import PrepareConfig, prepare

            data_dir = str(Path(work) / "shakespeare_char")
            prepare(PrepareConfig(source="shakespeare_char", out_dir=data_dir, progress=False))
        figures, notes = throughput(data_dir, a.rounds, a.per_round, a.warmup)
        old = Path(a.out)
        if a.skip_quality:
            if old.is_file():
                prev = json.loads(old.read_text())
                kept = {k: v for k, v in prev["figures"].items()
                        if k.startswith(("time to val loss", "final val loss", "time-to-quality"))}
                if kept:
                    figures.update(kept)
                    prev_notes = prev["notes"].split(". Predictions and outcomes")[0]
                    seeds = [n for n in prev_notes.split("; ") if n.startswith("seed ")]
                    notes.append(f"time-to-quality figures carried over from the run of {prev['date']} "
                                 f"({prev['command']}): " + "; ".join(seeds))
            if not any(k.startswith("time to val loss") for k in figures):
                figures[f"time to val loss {a.target}"] = "not measured (run without --skip-quality)"
        else:
            q, qnotes = quality(data_dir, a.seeds, a.target, a.eval_interval, a.quality_compile, work,
                               a.train_args.split())
            figures.update(q)
            notes += qnotes
    cmd = "python benchmarks/bench_train_throughput.py" + " ".join([""] + sys.argv[1:])
    rec = results.write_result(a.out, title=f"Training throughput and time to quality: {PRESET} on CPU",
                             device="cpu", command=cmd, figures=figures,
                             notes="; ".join(notes) + ". Predictions and outcomes: docs/performance.md.")
    json.dump(rec["figures"], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
