"""nanogpt.plot: reading metrics.jsonl and drawing the PNG; clear errors for bad runs."""

from __future__ import annotations

import json
import math

import pytest

from nanogpt.cli import main as cli_main
from nanogpt.errors import NanoGPTError
from nanogpt.plot import PlotConfig, load_metrics, plot_run


def write_metrics(run_dir, steps=60, eval_every=20, extra_lines=()):
    """A plausible metrics.jsonl: falling train loss each step, eval lines every eval_every."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in range(steps + 1):
        loss = 1.5 + 3 * math.exp(-s / 20) + 0.05 * math.sin(s)
        lines.append({"kind": "train", "step": s, "tokens": s * 2048, "loss": loss, "lr": 1e-3,
                      "grad_norm": 1.0, "tokens_per_s": 1e4, "mfu": 0.1, "time": s * 0.1})
        if s % eval_every == 0:
            lines.append({"kind": "eval", "step": s, "tokens": s * 2048, "train_loss": loss - 0.02,
                          "val_loss": loss + 0.1, "time": s * 0.1})
    text = "".join(json.dumps(r) + "\n" for r in lines) + "".join(extra_lines)
    (run_dir / "metrics.jsonl").write_text(text)
    return run_dir


def test_load_metrics(tmp_path):
    run = write_metrics(tmp_path / "run", extra_lines=['{"kind": "train", "step": 61, "to'])
    m = load_metrics(run)  # the partial last line of a killed run is skipped
    assert len(m.train) == 61 and len(m.eval) == 4
    assert [r["step"] for r in m.eval] == [0, 20, 40, 60]
    assert m.train[-1]["tokens"] == 60 * 2048


@pytest.mark.parametrize("setup,needle", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "no metrics.jsonl"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text("")), "no train or eval records"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text('{"kind": "train"\nnot json\n{}\n')), "line 1"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text('{"kind": "eval", "step": 1}\n{}\n')),
     "lacks numeric tokens, val_loss"),
])
def test_bad_metrics_are_clear_errors(tmp_path, setup, needle):
    d = tmp_path / "run"
    setup(d)
    with pytest.raises(NanoGPTError, match=needle):
        load_metrics(d)


def test_plot_writes_a_png(tmp_path):
    run = write_metrics(tmp_path / "run")
    out = plot_run(PlotConfig(str(run)))
    assert out == run / "loss.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    import struct

    w, h = struct.unpack(">II", data[16:24])  # the IHDR chunk: two panels side by side
    assert w > 1.8 * h
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temp left behind


def test_plot_eval_only_and_custom_out(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"kind": "eval", "step": s, "tokens": s * 10, "val_loss": 3 - s / 10}) + "\n"
                for s in range(5)))
    out = plot_run(PlotConfig(str(run), out=str(tmp_path / "curves.png"), dpi=60))
    assert out.exists() and out.read_bytes()[:4] == b"\x89PNG"


def test_plot_does_not_choose_a_backend_at_import():
    import subprocess
    import sys

    code = "import matplotlib, nanogpt.plot, nanogpt.viz; print(matplotlib.get_backend() if 'matplotlib.pyplot' in __import__('sys').modules else 'unset')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "unset"


def test_cli(tmp_path, capsys):
    run = write_metrics(tmp_path / "run")
    assert cli_main(["plot", str(run), "--out", str(tmp_path / "x.png")]) == 0
    assert "x.png" in capsys.readouterr().out and (tmp_path / "x.png").exists()
    assert cli_main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nanogpt plot: error:") and len(err.strip().splitlines()) == 1
    assert cli_main(["plot", str(run), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "must end in .png" in capsys.readouterr().err
