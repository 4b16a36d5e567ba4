"""`nanogpt viz`: parse options, write the self-contained HTML explorer, print where it is."""

from __future__ import annotations

import tyro

from nanogpt.viz import VizConfig, build_viz


def main(argv: list[str], prog: str) -> int:
    cfg = tyro.cli(VizConfig, args=argv, prog=prog,
                   description="Write one offline HTML page that explains a model: clickable "
                   "architecture, attention maps and predictions for --prompt, loss curves.")
    out = build_viz(cfg)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB); open it in a browser, no network needed")
    return 0
