"""`nanogpt plot`: parse options, draw a run's loss curves to a PNG, print its path."""

from __future__ import annotations

import tyro

from nanogpt.plot import PlotConfig, plot_run


def main(argv: list[str], prog: str) -> int:
    cfg = tyro.cli(PlotConfig, args=argv, prog=prog,
                   description="Write PNG loss curves (vs steps and vs tokens) for a training run.")
    print(f"wrote {plot_run(cfg)}")
    return 0
