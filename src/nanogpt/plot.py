"""Training curves: read a run's metrics.jsonl and draw loss against steps and tokens as a PNG.

`load_metrics` is also what `nanogpt viz` uses for its inline SVG chart. matplotlib is imported
inside `plot_run` with the Agg backend, so importing this module has no side effects.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import tyro

from nanogpt.errors import NanoGPTError

log = logging.getLogger(__name__)


@dataclass
class PlotConfig:
    """Options of `nanogpt plot`."""

    run_dir: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """a training run directory holding metrics.jsonl"""
    out: str | None = None
    """where to write the PNG (default: RUN_DIR/loss.png)"""
    dpi: int = 120
    """resolution of the PNG"""


@dataclass
class Metrics:
    """The two kinds of metrics.jsonl lines, each sorted by step."""

    path: str
    train: list[dict[str, Any]] = field(default_factory=list)  # kind == "train"
    eval: list[dict[str, Any]] = field(default_factory=list)  # kind == "eval"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_metrics(run_dir: str | os.PathLike) -> Metrics:
    """Parse RUN_DIR/metrics.jsonl (or a .jsonl path); NanoGPTError if missing, empty or corrupt.

    A trailing partial line (a run killed mid-write) is skipped with a warning; any other bad
    line is an error naming its line number. Lines of unknown kinds are ignored.
    """
    p = Path(run_dir)
    path = p if p.suffix == ".jsonl" else p / "metrics.jsonl"
    if not p.exists():
        raise NanoGPTError(f"{p} does not exist; pass the output directory of a training run")
    if not path.is_file():
        raise NanoGPTError(f"no metrics.jsonl in {p}; is it a training run's output directory?")
    raw = path.read_text(encoding="utf-8", errors="replace").splitlines()
    m = Metrics(path=str(path))
    problems = []
    for i, text in enumerate(raw, 1):
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(raw):
                log.warning("%s: skipping a partial last line", path)
                continue
            problems.append(f"line {i}: {e}")
            continue
        kind = rec.get("kind")
        need = ("step", "tokens", "loss") if kind == "train" else ("step", "tokens", "val_loss")
        if kind not in ("train", "eval"):
            continue
        bad = [k for k in need if not _finite(rec.get(k))]
        if bad:
            problems.append(f"line {i}: {kind} record lacks numeric {', '.join(bad)}")
            continue
        (m.train if kind == "train" else m.eval).append(rec)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise NanoGPTError(f"{path} is corrupt: {shown}")
    if not m.train and not m.eval:
        raise NanoGPTError(f"{path} holds no train or eval records yet; let the run log a few steps")
    m.train.sort(key=lambda r: r["step"])
    m.eval.sort(key=lambda r: r["step"])
    return m


def plot_run(cfg: PlotConfig) -> Path:
    """Write a PNG with two panels, loss vs step and loss vs tokens; return its path."""
    if cfg.dpi < 20 or cfg.dpi > 600:
        raise NanoGPTError(f"dpi must be between 20 and 600, got {cfg.dpi}")
    metrics = load_metrics(cfg.run_dir)
    out = Path(cfg.out) if cfg.out else Path(metrics.path).parent / "loss.png"
    if out.suffix.lower() != ".png":
        raise NanoGPTError(f"--out must end in .png, got {out}")
    if not out.parent.is_dir():
        raise NanoGPTError(f"the directory of --out does not exist: {out.parent}")

    import matplotlib

    matplotlib.use("Agg")  # no display needed; chosen here so importing nanogpt never sets it
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for ax, x_key, label in ((axes[0], "step", "step"), (axes[1], "tokens", "tokens seen")):
        if metrics.train:
            xs = [r[x_key] for r in metrics.train]
            ys = [r["loss"] for r in metrics.train]
            ax.plot(xs, ys, color="#4c72b0", alpha=0.35, lw=1, label="train (per step)")
            if len(ys) >= 10:  # an exponential moving average shows the trend under the noise
                ema, smooth, a = ys[0], [], 2 / (min(len(ys), 50) / 5 + 1)
                for y in ys:
                    ema = a * y + (1 - a) * ema
                    smooth.append(ema)
                ax.plot(xs, smooth, color="#4c72b0", lw=1.8, label="train (smoothed)")
        ev = metrics.eval
        if ev:
            xs = [r[x_key] for r in ev]
            tr = [(x, r["train_loss"]) for x, r in zip(xs, ev) if _finite(r.get("train_loss"))]
            if tr:
                ax.plot(*zip(*tr), "s--", color="#55a868", ms=4, lw=1.4, label="train (eval)")
            ax.plot(xs, [r["val_loss"] for r in ev], "o-", color="#c44e52", ms=4, lw=1.8, label="val")
            best = min(ev, key=lambda r: r["val_loss"])
            ax.annotate(f"best val {best['val_loss']:.3f}", (best[x_key], best["val_loss"]),
                        textcoords="offset points", xytext=(0, 12), ha="center", fontsize=8,
                        color="#c44e52")
        ax.set_xlabel(label)
        ax.set_ylabel("cross-entropy loss (nats/token)")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize=9)
    axes[0].set_title("loss vs step")
    axes[1].set_title("loss vs tokens")
    fig.suptitle(f"training run: {Path(metrics.path).parent.name}", fontsize=11)
    # Atomic: render into a temp file beside the target, then rename over it.
    fd, tmp = tempfile.mkstemp(prefix=".loss-", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=cfg.dpi, format="png")
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("wrote %s", out)
    return out
