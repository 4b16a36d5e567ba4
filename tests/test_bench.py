"""nanogpt.bench, `nanogpt bench`, and the benchmark scripts' dry/pure parts, on tiny CPU configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nanogpt import bench, flops, results
from nanogpt.cli import main as cli_main
from nanogpt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=16)


@pytest.fixture(autouse=True)
def _small_peak_sizes(monkeypatch):
    # The real peak times 512..2048 square matmuls; small ones keep the tests fast.
    monkeypatch.setitem(flops.PEAK_SIZES, "cpu", (64, 128))


def _fast(**kw) -> bench.BenchTrainConfig:
    return bench.BenchTrainConfig(**{"steps": 2, "warmup": 1, "peak_seconds": 0.02, "device": "cpu", **kw})


def _check_figures(r: dict, tokens_per_step: int, flops_per_step: float) -> None:
    assert r["tokens_per_s"] == pytest.approx(tokens_per_step / r["step_time_s"])
    assert r["model_flops_per_s"] == pytest.approx(flops_per_step / r["step_time_s"])
    assert r["peak_measured_flops"] == max(r["peak_measured_by_size"].values())
    assert r["mfu_measured"] == pytest.approx(r["model_flops_per_s"] / r["peak_measured_flops"])
    assert r["step_time_min_s"] <= r["step_time_s"]
    assert r["mfu_table"] is None and r["peak_table_flops"] is None  # no data sheet for CPUs
    assert r["peak_memory_bytes"] > 10 * 2**20 and r["peak_memory_kind"] == "process max RSS"


def test_bench_train_model_step_figures_are_consistent(monkeypatch):
    r = bench.bench_train(_fast(step="model", batch_size=2, block_size=16))
    assert r["step_source"] == "model" and r["compile"] is False and r["fused_adamw"] is True
    assert r["tokens_per_step"] == 2 * 16
    from nanogpt.model import GPTConfig

    cfg = GPTConfig.from_preset("shakespeare-char-cpu", block_size=16)
    assert r["flops_per_token"] == flops.train_flops_per_token(cfg, 16)
    _check_figures(r, 32, r["flops_per_token"] * 32)
    assert set(r["peak_measured_by_size"]) == {"64", "128"}


@pytest.fixture
def tiny_data(tmp_path) -> str:
    from nanogpt.data import PrepareConfig, prepare

    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 60)
    out = tmp_path / "data"
    prepare(PrepareConfig(source=str(text), out_dir=str(out), tokenizer="char", progress=False))
    return str(out)


def test_bench_train_times_the_trainer_step(tiny_data):
    cfg = _fast(data_dir=tiny_data, batch_size=2)
    step = bench.build_train_step(cfg, **TINY)
    try:
        from nanogpt.train import Trainer

        assert step.source == "trainer"
        assert getattr(step.fn, "__self__", None).__class__ is Trainer  # the real step, not a copy
        before = step.fn.__self__.step
        step.fn()
        assert step.fn.__self__.step == before + 1
        assert step.fused is True
    finally:
        step.cleanup()


def test_no_fused_swaps_in_multi_tensor_adamw(tiny_data):
    step = bench.build_train_step(_fast(data_dir=tiny_data, fused=False), **TINY)
    try:
        opt = step.fn.__self__.optimizer
        assert step.fused is False and not opt.defaults.get("fused")
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # groups kept
        step.fn()
    finally:
        step.cleanup()


def test_bench_sample_figures():
    cfg = bench.BenchSampleConfig(preset="shakespeare-char-cpu", batch_size=2, prompt_len=4,
                                  max_new_tokens=5, steps=2, warmup=0, peak_seconds=0.02, device="cpu")
    r = bench.bench_sample(cfg)
    from nanogpt.model import GPTConfig

    fl = flops.generate_flops(GPTConfig.from_preset("shakespeare-char-cpu"), 4, 5) * 2
    assert r["flops_per_call"] == fl
    _check_figures(r, 10, fl)
    assert r["ms_per_token"] == pytest.approx(r["step_time_s"] * 1e3 / 5)


def test_options_list_every_problem():
    with pytest.raises(ConfigError) as e:
        bench.BenchTrainConfig(steps=0, warmup=-1, batch_size=0, peak_seconds=0).validate()
    msg = str(e.value)
    for word in ("steps", "warmup", "batch_size", "peak_seconds"):
        assert word in msg
    with pytest.raises(ConfigError, match="block_size"):
        bench.bench_sample(bench.BenchSampleConfig(prompt_len=40, max_new_tokens=40, device="cpu"))
    with pytest.raises(ConfigError, match="unknown model preset 'gpt3'"):
        bench.BenchSampleConfig(preset="gpt3").validate()


def test_cli_bench_train_json(capsys):
    rc = cli_main(["bench", "train", "--preset", "shakespeare-char-cpu", "--step", "model", "--steps", "1",
                   "--warmup", "0", "--peak-seconds", "0.02", "--batch-size", "2", "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kind"] == "train" and r["batch_size"] == 2 and r["block_size"] == 64
    assert r["compile"] is False  # the preset's choice, as `nanogpt train` would


def test_cli_bench_sample_table(capsys):
    rc = cli_main(["bench", "sample", "--max-new-tokens", "3", "--prompt-len", "2", "--steps", "1",
                   "--warmup", "0", "--peak-seconds", "0.02", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ms per token" in out and "ratio to measured peak" in out


def test_cli_bench_errors(capsys):
    assert cli_main(["bench", "trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert cli_main(["bench", "train", "--steps", "0", "--preset", "shakespeare-char-cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nanogpt bench: error:") and "steps must be a positive integer" in err
    assert cli_main(["bench", "train", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_write_result_schema(tmp_path):
    rec = results.write_result(tmp_path / "r.json", title="t", device="cpu", command="c",
                             figures={"a": 1.5}, notes="n")
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk == rec
    assert list(rec) == ["title", "date", "machine", "device", "torch", "command", "figures", "notes"]
    assert list(tmp_path.iterdir()) == [tmp_path / "r.json"]  # no temp file left behind


# --- benchmark scripts ---------------------------------------------------------------------------

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_make_benchmarks_md(tmp_path, capsys):
    import make_benchmarks_md as mk

    res = tmp_path / "results"
    res.mkdir()
    results.write_result(res / "cpu.json", title="CPU thing", device="cpu", command="python x.py",
                       figures={"ratio": 0.71234, "tokens/s": 31000, "not yet": None}, notes="quiet")
    (res / "broken.json").write_text("{")
    (res / "partial.json").write_text(json.dumps({"title": "x"}))
    out = tmp_path / "B.md"
    assert mk.main(["--results", str(res), "--out", str(out)]) == 0
    text = out.read_text()
    assert "GPU figures: not yet taken — no GPU was lent" in text
    assert "| ratio | 0.71234 |" in text and "| tokens/s | 31,000 |" in text
    assert "| not yet | not measured |" in text and "`python x.py`" in text
    err = capsys.readouterr().err
    assert "broken.json" in err and "partial.json" in err
    assert mk.main(["--results", str(res), "--out", str(out), "--check"]) == 0
    results.write_result(res / "gpu.json", title="GPU", device="NVIDIA H100 80GB HBM3", command="c",
                       figures={"mfu": 0.5}, notes="")
    assert mk.main(["--results", str(res), "--out", str(out), "--check"]) == 1
    mk.main(["--results", str(res), "--out", str(out)])
    assert "no GPU was lent" not in out.read_text()


def test_first_reach_reads_metrics(tmp_path):
    import bench_train_throughput as btt

    m = tmp_path / "metrics.jsonl"
    lines = [{"kind": "eval", "step": 0, "val_loss": 4.2, "time": 1.0},
             {"kind": "train", "step": 5, "loss": 2.0, "time": 2.0},
             {"kind": "eval", "step": 100, "val_loss": 1.88, "time": 30.0},
             {"kind": "eval", "step": 200, "val_loss": 1.70, "time": 60.0}]
    m.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert btt.first_reach(m, 1.89) == (30.0, 1.70, 200)
    assert btt.first_reach(m, 1.5) == (None, 1.70, 200)


@pytest.mark.slow
def test_bench_gpu_dry_run(tmp_path, shakespeare_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--dry-run",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(out.read_text())
    f = rec["figures"]
    assert rec["device"] == "cpu (dry run)" and "DRY RUN" in rec["notes"]
    assert f["GPT-2 124M: tokens/s"] > 0 and 0 < f["GPT-2 124M: MFU vs measured bf16 matmul peak"]
    assert isinstance(f["shakespeare-char: final val loss"], float)
    assert "shakespeare-char: time to val loss 1.47, s" in f


def test_bench_gpu_refuses_without_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    import bench_gpu

    assert bench_gpu.main([]) == 2
    assert "--dry-run" in capsys.readouterr().err


@pytest.mark.slow
def test_time_to_quality_runs_nanogpt_train_per_seed(tiny_data, tmp_path):
    import bench_train_throughput as btt

    tiny = ["--max-iters", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
            "--batch-size", "2", "--eval-iters", "1", "--warmup-iters", "0"]
    fig, notes = btt.quality(tiny_data, [1, 2], 100.0, 1, False, str(tmp_path), tiny)
    assert fig["time to val loss 100.0, s (median of 2 seeds)"] >= 0  # reached at the first eval
    assert isinstance(fig["final val loss (median of 2 seeds)"], float)
    assert len(notes) == 2 and "step 2" in notes[0]
    fig, _ = btt.quality(tiny_data, [1], 0.01, 1, False, str(tmp_path / "b"), tiny)
    assert fig["time to val loss 0.01, s (median of 1 seeds)"] == "not reached by 1 of 1 seeds"
