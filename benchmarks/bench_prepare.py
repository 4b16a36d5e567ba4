"""Benchmark `nanogpt prepare` on a ~100 MB text file: MB/s and tokens/s for GPT-2 BPE and char.

    python benchmarks/bench_prepare.py [--mb 100] [--workers 0]

Builds /tmp/nanogpt-bench/corpus.txt from tiny Shakespeare ($NANOGPT_SHAKESPEARE, the cache or a
download), each copy varied (lines reordered per copy, a copy number inserted) so the BPE sees
fresh text. Each tokenizer runs `prepare` in a fresh subprocess with its progress bar on, so the
peak memory it reports is that of one prepare (it streams: far below the file's token count x 8
bytes). Writes benchmarks/results/prepare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/nanogpt-bench")

_CHILD = """
import json, resource, sys, time
from nanogpt.data import PrepareConfig, prepare
from nanogpt.data_prepare import result_dict
cfg = PrepareConfig(source=sys.argv[1], out_dir=sys.argv[2], tokenizer=sys.argv[3], force=True,
                    workers=int(sys.argv[4]))
r = prepare(cfg)
d = result_dict(r)
d["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(d))
"""


def make_corpus(mb: float) -> Path:
    from nanogpt.sources import shakespeare_path

    out = WORK / f"corpus-{mb:g}mb.txt"
    if out.exists():
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    lines = shakespeare_path().read_text(encoding="utf-8").splitlines(keepends=True)
    rng = random.Random(0)
    tmp = out.with_suffix(".tmp")
    size, copy = 0, 0
    with open(tmp, "w", encoding="utf-8") as f:
        while size < mb * 1e6:
            order = list(range(0, len(lines), 4))
            rng.shuffle(order)  # reorder 4-line blocks so each copy is different text
            chunk = f"\n[copy {copy}]\n" + "".join("".join(lines[i:i + 4]) for i in order)
            f.write(chunk)
            size += len(chunk.encode("utf-8"))
            copy += 1
    os.replace(tmp, out)
    return out


def run(corpus: Path, tokenizer: str, workers: int) -> dict:
    out_dir = WORK / f"out-{tokenizer}"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(corpus), str(out_dir), tokenizer, str(workers)],
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="corpus size in MB (default 100)")
    ap.add_argument("--workers", type=int, default=0, help="tokenizer threads (0: all cores)")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    corpus = make_corpus(args.mb)
    size_mb = corpus.stat().st_size / 1e6
    figures: dict[str, float] = {"corpus_mb": round(size_mb, 1)}
    for tok in ("gpt2", "char"):
        print(f"prepare {size_mb:.0f} MB with {tok}:", file=sys.stderr)
        r = run(corpus, tok, args.workers)
        figures[f"{tok}_mb_per_s"] = round(r["mb_per_s"], 2)
        figures[f"{tok}_tokens_per_s"] = round(r["tokens_per_s"])
        figures[f"{tok}_seconds"] = round(r["seconds"], 2)
        figures[f"{tok}_tokens"] = sum(r["counts"].values())
        figures[f"{tok}_peak_rss_mb"] = round(r["peak_rss_mb"])
        print(f"  {r['mb_per_s']:.1f} MB/s, {r['tokens_per_s']:,.0f} tokens/s, peak RSS "
              f"{r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    from nanogpt.results import write_result

    cores = os.cpu_count()
    result = write_result(
        ROOT / "benchmarks" / "results" / "prepare.json",
        title="nanogpt prepare: tokenizing a ~100 MB text file", device="cpu",
        command=f"python benchmarks/bench_prepare.py --mb {args.mb:g} --workers {args.workers}",
        figures=figures,
        notes=(f"{size_mb:.0f} MB of varied tiny Shakespeare; end-to-end prepare (read, tokenize with "
               f"{args.workers or cores} worker thread(s), write train/val .bin + meta.json), "
               "fresh process per tokenizer; peak RSS (~220 MB of it is importing torch) shows it streams. "
               f"1-min load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f} on "
               f"{cores} cores (above ~0.5 means other work shared the CPU). "
               + os.environ.get("BENCH_NOTES", "")).strip(),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
