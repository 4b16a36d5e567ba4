"""User-facing errors.

Library code raises `NanoGPTError` (or a subclass) for anything a user can fix: bad options,
missing files, corrupted data. The CLI turns it into one line on stderr and exit code 2, with
no traceback. Programming errors stay ordinary exceptions and keep their tracebacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NanoGPTError(Exception):
    """An error the user can fix; its message says what is wrong and what to do."""


class ConfigError(NanoGPTError, ValueError):
    """One or more invalid option values; the message lists every problem at once."""

    def __init__(self, what: str, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"invalid {what}: " + "; ".join(self.problems))


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest match of `name` in `choices`, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
