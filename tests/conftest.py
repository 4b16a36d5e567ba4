"""Shared test setup: offline data from ../shared/data, tiny configs, and a fixed seed.

Tests never touch the network. Where the checkout sits beside `shared/`, the env vars that the
code reads for offline data point at it, exactly as a user without internet would set them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    if (SHARED_DATA / "tinyshakespeare.txt").exists():
        os.environ.setdefault("NANOGPT_SHAKESPEARE", str(SHARED_DATA / "tinyshakespeare.txt"))
    if (SHARED_DATA / "gpt2.tiktoken").exists():
        os.environ.setdefault("NANOGPT_GPT2_TIKTOKEN", str(SHARED_DATA / "gpt2.tiktoken"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach the hub


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def shakespeare_path() -> Path:
    p = os.environ.get("NANOGPT_SHAKESPEARE")
    if not p or not Path(p).exists():
        pytest.skip("tinyshakespeare.txt not available offline (set NANOGPT_SHAKESPEARE)")
    return Path(p)


@pytest.fixture
def gpt2_ranks_path() -> Path:
    p = os.environ.get("NANOGPT_GPT2_TIKTOKEN")
    if not p or not Path(p).exists():
        pytest.skip("gpt2.tiktoken not available offline (set NANOGPT_GPT2_TIKTOKEN)")
    return Path(p)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Where NANOGPT_REQUIRE_BROWSER=1 (CI), a skipped browser test is a failure, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and item.get_closest_marker("browser") is not None
        and os.environ.get("NANOGPT_REQUIRE_BROWSER") == "1"
    ):
        report.outcome = "failed"
        report.longrepr = f"browser test skipped but NANOGPT_REQUIRE_BROWSER=1: {report.longrepr}"
