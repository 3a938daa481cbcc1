"""Shared CLI plumbing: one-line user errors with exit code 2, JSON output, option parsing.

Imports no torch, so ``mfutop --help`` and ``mfutop estimate`` stay fast.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

import typer

from estimator.errors import ConfigError
from estimator.units import parse_bytes

USER_ERROR_EXIT = 2


def fail(message: str) -> NoReturn:
    """Print one line to stderr and exit 2: the contract for every bad input."""
    typer.echo(f"mfutop: error: {message}", err=True)
    raise typer.Exit(USER_ERROR_EXIT)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn ConfigError (and friends raised for bad input) into `fail`."""
    try:
        yield
    except ConfigError as exc:
        fail(str(exc))


def _default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def parse_batch(text: str | int | None) -> int | None:
    """'auto' (or None) -> None; otherwise a positive integer, else ConfigError."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text))
    except ValueError:
        raise ConfigError(f"batch-size must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise ConfigError(f"batch-size must be a positive integer or 'auto', got {text!r}")
    return value


def parse_memory(text: str | None) -> int | None:
    return None if text is None else parse_bytes(text)
