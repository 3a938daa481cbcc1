"""Shared CLI plumbing: one-line user errors with exit code 2, warnings, JSON output.

Imports no torch, so ``mfutop --help`` and ``mfutop estimate`` stay fast.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

import typer

from estimator.errors import ConfigError

USER_ERROR_EXIT = 2
SCHEMA_VERSION = 1  # of every --json object; raised when a key changes meaning or goes away


class _Output:
    json_errors = False  # set by ``tui.cli.run`` when the command line asks for --json / --jsonl


output = _Output()


def fail(message: str) -> NoReturn:
    """Print one line to stderr and exit 2: the contract for every bad input. Under ``--json`` the
    error is also a JSON object on stdout, so a script reading stdout never gets nothing."""
    if output.json_errors:
        emit_json({"error": message, "exit_code": USER_ERROR_EXIT})
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


def finite_json(value: Any) -> Any:
    """The same data with every NaN / Infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [finite_json(v) for v in value]
    if hasattr(value, "to_dict"):
        return finite_json(value.to_dict())
    return value


def emit_json(obj: Any) -> None:
    """Valid JSON on stdout, always: non-finite numbers become null; an object carries ``schema_version``."""
    if isinstance(obj, dict):
        obj = {"schema_version": SCHEMA_VERSION, **obj}
    sys.stdout.write(json.dumps(finite_json(obj), indent=2, default=_default, allow_nan=False) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """One warning line on stderr (stdout stays the result)."""
    typer.echo(f"mfutop: warning: {message}", err=True)
