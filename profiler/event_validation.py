"""The trust boundary for events: one JSONL line from a file, a child or a remote host -> an event, or a reason.

A recorded or remote run is outside data. Each line is checked against the
schema the event dataclasses declare (``profiler.events``: field types,
required fields), numbers must be finite and in range, strings lose their
control characters and escape sequences and are capped in length, nested
objects (a summary, a prediction) are bounded in depth and cleaned
recursively. A line that fails is *skipped with a reason*, never the end of
a replay: ``SkipCounter`` counts them and says which, so the user learns what
was dropped. Lines over ``MAX_LINE_CHARS`` are refused before parsing: a
50 MB line must not stall the reader.

Torch-free and tui-free: the app, ``replay``, ``remote`` and the event pump
all call ``parse_event_line`` / ``validated_events``.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import IO, Any, Union

from estimator.safe_text import clean_text
from profiler.events import EVENT_TYPES, Event

MAX_LINE_CHARS = 1 << 20  # 1 Mi characters: a real event line is a few kB, a summary tens of kB
MAX_STRING_CHARS = 4096  # per string kept; display truncates further
MAX_KEY_CHARS = 256
MAX_DEPTH = 32  # nesting of a summary / prediction object (real ones: < 8)
MAX_INT = 2**63  # |int| at most this: byte counts and FLOPs of any real run fit in 63 bits
MAX_ITEMS = 10_000  # elements of one list or object
# Non-finite values a field may carry: a diverged run's loss is NaN, and that is a measurement.
NONFINITE_ALLOWED = {("step_sample", "loss")}
# Nested keys the app reads, with the JSON type they must have when present.
NESTED_SHAPES: dict[tuple[str, str], dict[str, type]] = {
    ("run_finished", "summary"): {"config": dict, "measured": dict, "search": dict, "rungs": list,
                                  "prediction": dict, "warnings": list},
    ("prediction_ready", "prediction"): {"setup": dict, "flops": dict, "memory": dict, "step": dict,
                                         "warnings": list, "assumptions": dict},
    ("ladder_rung", "rung"): {"name": str, "status": str},
}
LOG_LEVELS = ("info", "warning", "error")


@dataclass(frozen=True)
class Skipped:
    """A line that is not an event: ``reason`` names the line and the field at fault."""

    line_no: int | None
    reason: str

    def __str__(self) -> str:
        return self.reason


class Invalid(ValueError):
    """One field's problem, raised inside the validator and turned into ``Skipped``."""


@dataclass
class SkipCounter:
    """Counts skipped lines and keeps the first few reasons for one report line."""

    keep: int = 3
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, skipped: Skipped) -> None:
        self.count += 1
        if len(self.examples) < self.keep:
            self.examples.append(skipped.reason)

    def __bool__(self) -> bool:
        return self.count > 0

    def report(self) -> str:
        """'3 lines skipped: line 7: not an event: missing 'step_time_s'; line 9: …' ('' when none)."""
        if not self.count:
            return ""
        noun = "line" if self.count == 1 else "lines"
        more = "; …" if self.count > len(self.examples) else ""
        return f"{self.count} {noun} skipped: " + "; ".join(self.examples) + more


# ---------------------------------------------------------------- parsing one line

def parse_event_line(line: str, line_no: int | None = None) -> Event | Skipped | None:
    """One JSONL line -> the event it holds, ``Skipped`` (why not), or None for noise.

    Noise is a blank line, one that does not start with ``{`` (a shell banner, a
    progress bar), or a JSON object without an ``"event"`` key (a ``--json``
    summary printed beside the stream): not counted. Anything else must be a
    valid event or it is ``Skipped``: a cut line, an unknown event type, a bad field.
    """
    where = f"line {line_no}: " if line_no is not None else ""
    if len(line) > MAX_LINE_CHARS:
        return Skipped(line_no, f"{where}longer than {MAX_LINE_CHARS:,} characters ({len(line):,}), not read")
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except RecursionError:
        return Skipped(line_no, f"{where}not JSON: nested too deeply")
    except ValueError as exc:  # JSONDecodeError, and int() refusing > 4300 digits
        return Skipped(line_no, f"{where}not JSON: {_short(str(exc))}")
    if not isinstance(data, dict):
        return Skipped(line_no, f"{where}not an event: not a JSON object")
    if "event" not in data:
        return None  # another JSON object beside the stream (a --json summary, a tool's log): not ours
    tag = data.get("event")
    cls = EVENT_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        return Skipped(line_no, f"{where}not an event: unknown event type {_short(repr(tag))}")
    try:
        return cls(**_validated_fields(cls, data))
    except Invalid as exc:
        return Skipped(line_no, f"{where}not an event: {exc}")


def validated_events(lines: Iterable[str], skipped: SkipCounter | None = None,
                     first_line_no: int = 1) -> Iterator[Event]:
    """The valid events of ``lines``; each bad one is added to ``skipped`` (when given) and passed over."""
    for line_no, line in enumerate(lines, first_line_no):
        result = parse_event_line(line, line_no)
        if isinstance(result, Skipped):
            if skipped is not None:
                skipped.add(result)
        elif result is not None:
            yield result


def bounded_lines(stream: IO[str], max_chars: int = MAX_LINE_CHARS) -> Iterator[str]:
    """Lines of ``stream`` holding at most ``max_chars + 1`` characters each, in constant memory.

    An over-long line is read to its end in chunks and yielded cut at
    ``max_chars + 1``, so ``parse_event_line`` skips it without parsing and the
    reader never holds 50 MB. (For a complete file; a follower that waits for
    partial lines keeps its own buffer.)
    """
    while True:
        line = stream.readline(max_chars + 1)
        if not line:
            return
        if len(line) > max_chars and not line.endswith("\n"):
            while True:  # drop the rest of this line
                rest = stream.readline(1 << 16)
                if not rest or rest.endswith("\n"):
                    break
        yield line


class LineBuffer:
    """Complete lines out of the chunks of a growing file or a pipe, in bounded memory.

    ``feed(chunk)`` returns the lines the chunk completed (without their newline).
    A line that grows past ``max_chars`` before its newline arrives is handed out
    at once, cut at ``max_chars + 1`` (so ``parse_event_line`` refuses it unread),
    and the rest of it is dropped as it comes: a writer stuck in a 50 MB line
    cannot make the follower hold 50 MB.
    """

    def __init__(self, max_chars: int = MAX_LINE_CHARS) -> None:
        self.max_chars = max_chars
        self._pending = ""
        self._dropping = False

    def reset(self) -> None:
        """Forget the partial line (the file was truncated and is read again from the top)."""
        self._pending, self._dropping = "", False

    @property
    def pending(self) -> str:
        return self._pending

    def feed(self, chunk: str) -> list[str]:
        out = []
        parts = chunk.split("\n")
        for index, part in enumerate(parts):
            complete = index < len(parts) - 1
            if self._dropping:
                self._dropping = not complete  # the part before a newline is the long line's tail
                continue
            self._pending += part
            if complete:
                out.append(self._pending[: self.max_chars + 1])
                self._pending = ""
            elif len(self._pending) > self.max_chars:
                out.append(self._pending[: self.max_chars + 1])
                self._pending, self._dropping = "", True
        return out


# ---------------------------------------------------------------- the schema

@cache
def _schema(cls: type[Event]) -> tuple[tuple[str, tuple[type, ...], bool, bool], ...]:
    """(name, accepted JSON types, may be None, required) per field, read from the dataclass.

    A ``dict[str, float]`` field is recorded as the type ``_NumberMap``: its values are figures.
    """
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if _is_union(hint) else (hint,)
        optional = type(None) in args
        kinds = tuple(_json_kind(a) for a in args if a is not type(None))
        required = f.default is MISSING and f.default_factory is MISSING  # type: ignore[misc]
        out.append((f.name, kinds, optional, required))
    return tuple(out)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) is Union or isinstance(hint, types.UnionType)


class _NumberMap(dict):
    """Marker for a ``dict[str, float]`` field (a breakdown in seconds)."""


def _json_kind(hint: Any) -> type:
    origin = typing.get_origin(hint) or hint
    if origin is dict and typing.get_args(hint)[1:] in ((float,), (int,)):
        return _NumberMap
    if origin in (dict, list, str, int, float, bool):
        return origin
    return object  # Any: whatever JSON holds


def _validated_fields(cls: type[Event], data: dict[str, Any]) -> dict[str, Any]:
    missing = [repr(name) for name, _, _, required in _schema(cls) if required and name not in data]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise Invalid(f"missing {', '.join(missing[:3])}{more}")
    values: dict[str, Any] = {}
    for name, kinds, optional, _ in _schema(cls):
        if name not in data:
            continue
        value = data[name]
        if value is None:
            if not optional:
                raise Invalid(f"{name!r} is null")
            values[name] = None
            continue
        values[name] = _field(cls.kind, name, value, kinds, optional)
    if cls.kind == "log" and values.get("level") not in LOG_LEVELS:
        values["level"] = "info"  # an unknown level is still a line worth showing
    return values


def _field(kind: str, name: str, value: Any, kinds: tuple[type, ...], optional: bool) -> Any:
    if bool in kinds:
        if isinstance(value, bool):
            return value
        raise Invalid(f"{name!r} must be true or false, got {_type(value)}")
    if int in kinds or float in kinds:
        return _number(kind, name, value, int_only=float not in kinds, optional=optional)
    if str in kinds:
        if not isinstance(value, str):
            raise Invalid(f"{name!r} must be a string, got {_type(value)}")
        return clean_text(value, MAX_STRING_CHARS)
    if _NumberMap in kinds:
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            raise Invalid(f"{name!r} must be an object of numbers, got {_type(value)}")
        return {clean_text(str(k), MAX_KEY_CHARS): _number(kind, f"{name}.{k}", v, int_only=False, optional=False)
                for k, v in value.items()}
    if dict in kinds:
        if not isinstance(value, dict):
            raise Invalid(f"{name!r} must be an object, got {_type(value)}")
        cleaned = _clean(value, name, 1)
        _check_shape(kind, name, cleaned)
        return cleaned
    return _clean(value, name, 1)  # Any


def _number(kind: str, name: str, value: Any, int_only: bool, optional: bool) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name!r} must be a number, got {_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        if (kind, name) in NONFINITE_ALLOWED:
            return value
        if optional:
            return None  # NaN MFU, infinite peak: unknown, which the field can say
        raise Invalid(f"{name!r} is not a finite number ({value})")
    if int_only and isinstance(value, float):
        if not value.is_integer():
            raise Invalid(f"{name!r} must be an integer, got {value}")
        value = int(value)
    if abs(value) > MAX_INT:
        raise Invalid(f"{name!r} is out of range ({_short(str(value))})")
    if value < 0:
        raise Invalid(f"{name!r} must not be negative, got {value}")
    return value if int_only else float(value)


def _clean(value: Any, where: str, depth: int) -> Any:
    """A JSON value with strings cleaned, non-finite or huge numbers None, depth and size bounded."""
    if isinstance(value, str):
        return clean_text(value, MAX_STRING_CHARS)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value if abs(value) <= MAX_INT else None
    if depth > MAX_DEPTH:
        raise Invalid(f"{where!r} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise Invalid(f"{where!r} has more than {MAX_ITEMS:,} keys")
        return {clean_text(str(k), MAX_KEY_CHARS): _clean(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise Invalid(f"{where!r} has more than {MAX_ITEMS:,} items")
        return [_clean(v, where, depth + 1) for v in value]
    return None  # json.loads makes nothing else


def _check_shape(kind: str, name: str, value: dict[str, Any]) -> None:
    """Keys the app reads must have the type it expects (a list where an object goes is a crash)."""
    for key, expected in NESTED_SHAPES.get((kind, name), {}).items():
        if key in value and value[key] is not None and not isinstance(value[key], expected):
            raise Invalid(f"'{name}.{key}' must be {_JSON_NAMES[expected]}, got {_type(value[key])}")
    if kind == "ladder_rung" and not isinstance(value.get("name"), str):
        raise Invalid("'rung.name' must be a string")
    if kind == "run_finished" and isinstance(value.get("rungs"), list):
        for index, rung in enumerate(value["rungs"]):
            if not isinstance(rung, dict) or not isinstance(rung.get("name"), str):
                raise Invalid(f"'summary.rungs[{index}]' must be an object with a string 'name'")


_JSON_NAMES = {dict: "an object", list: "a list", str: "a string"}


def _type(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 80) -> str:
    return clean_text(text, limit)
