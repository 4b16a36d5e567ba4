"""Benchmark result files: benchmarks/results/*.json, which benchmarks/make_benchmarks_md.py
renders into BENCHMARKS.md. One schema and one atomic writer for every benchmark script."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def machine_description() -> str:
    """Architecture and core count, e.g. 'x86_64, 2 cores' (the key BENCHMARKS.md groups by)."""
    import platform

    return f"{platform.machine() or 'unknown'}, {os.cpu_count()} cores"


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), if there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_result(path: str | Path, *, title: str, device: str, command: str,
                 figures: dict[str, Any], notes: str) -> dict[str, Any]:
    """Write one benchmark result JSON atomically (temp file + os.replace); return the record."""
    import datetime
    import json

    record = {"title": title, "date": datetime.date.today().isoformat(),
              "machine": machine_description(), "device": device, "torch": torch.__version__,
              "command": command, "figures": figures, "notes": notes}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return record
