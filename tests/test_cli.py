"""The CLI dispatcher: verb table, help, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nanogpt.cli import COMMANDS, main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nanogpt", *args], capture_output=True, text=True)


def test_help_lists_every_verb(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in COMMANDS:
        assert verb in out


def test_unknown_verb_suggests(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown verb 'trian'" in err and "did you mean 'train'" in err


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_has_help(verb):
    r = run(verb, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower()


def test_user_error_is_one_line_without_traceback(tmp_path):
    r = run("export", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nanogpt export: error:")
