"""User-facing errors: the CLI prints these as one clear message and exits with status 2."""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterable

# what reading a JSON document someone else wrote can raise: not JSON, not UTF-8, nested too deeply
JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError, RecursionError)


class SozoError(Exception):
    """A problem with what the user asked for (bad option, missing file, wrong data).

    ``hint`` says what to do about it; the CLI prints ``error: <message>`` and ``hint: <hint>``.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid choice to a mistyped ``word``, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the closest choice (if any) and listing all of them."""
    choices = sorted(choices)
    near = closest(word, choices)
    listing = ", ".join(choices)
    return f"did you mean '{near}'? valid: {listing}" if near else f"valid: {listing}"
