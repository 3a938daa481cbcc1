"""Parsing, range checks and display of sizes, counts and rates. Code keeps SI base units; this is the edge.

Every number from outside (an option, a file field, a cache entry) is read
here or checked with ``check_finite`` / ``check_finite_positive``: finite,
in a plausible range, else one ``ConfigError`` line. The bounds are far past
any real figure; they exist so that ``1e400`` or a 400-digit integer is a
clear message instead of an ``OverflowError`` (or an ``Infinity`` in JSON)
three modules later.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from estimator.errors import ConfigError

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,  # bare letters: binary, as in `ulimit`/torch docs
}


_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
MAX_BYTES = 2**60  # 1 EiB: a memory size or limit beyond it is a typo, not a device
BARE_BYTES_MIN = 2**20  # a unit-less size below 1 MiB is surely a missing unit ('40' meaning 40 GiB)
MAX_COUNT = 10**18  # tokens, steps, ...: a million times the largest public training run (~1.5e13 tokens)
MAX_TEXT_CHARS = 100  # a number written with more characters is not a number a person meant
# --peak-tflops: 1 MFLOP/s to 10 EFLOP/s. Sanity bounds, not hardware figures: the fastest entry in
# hardware_data.py is 5 P(FL)OP/s dense (GB200 fp8/int8), 2000x under the top; the floor keeps 1/peak finite.
PEAK_TFLOPS_RANGE = (1e-6, 1e7)
MAX_GPU_HOUR_COST = 1e6  # USD per GPU-hour: a bound for typos, ~100,000x the list prices


def _decimal(digits: str) -> Decimal:
    """The exact value of a matched number (Decimal keeps '1e400' symbolic: no overflow, no huge int)."""
    try:
        return Decimal(digits)
    except InvalidOperation:  # the regex admits only valid numbers; kept for safety
        raise ConfigError(f"cannot read {digits!r} as a number") from None


def _shown(text: Any) -> str:
    text = str(text)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_bytes(text: str, what: str = "size") -> int:
    """'40GiB' -> 42949672960, '24GB' -> 24e9, '512MiB', '1e9' (bytes, no unit) -> an int in (0, 1 EiB].

    A number without a unit is bytes, and must then be at least 1 MiB: a
    memory size of '40' is far likelier to mean 40 GiB than 40 bytes, so it is
    refused with a hint instead of silently meaning a limit nothing fits in.
    An explicit '40B' is taken at its word.
    """
    raw = str(text)
    match = re.fullmatch(r"\s*" + _NUMBER + r"\s*([a-zA-Z]*)\s*", raw) if len(raw) <= MAX_TEXT_CHARS else None
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ConfigError(f"cannot read {_shown(text)} as a {what}; write e.g. 40GiB, 24GB or 512MiB")
    unit = match.group(2)
    value = _decimal(match.group(1)) * _BYTE_UNITS[unit.lower()]
    if value <= 0:
        raise ConfigError(f"{what} must be positive, got {_shown(text)}")
    if value > MAX_BYTES:
        raise ConfigError(f"{what} {_shown(text)} is beyond 1 EiB; write e.g. 40GiB, 24GB or 512MiB")
    if not unit and value < BARE_BYTES_MIN:
        raise ConfigError(f"{what} {_shown(text)} has no unit and would mean {int(value)} bytes; "
                          f"write e.g. {match.group(1)}GiB or {match.group(1)}GB")
    return max(1, int(value))


def parse_count(text: str | None, what: str, maximum: int = MAX_COUNT) -> int | None:
    """'300e9', '300B', '1.5T', '2000000' -> an integer in [1, ``maximum``]; None stays None.

    Decimal suffixes (k, M, B/G, T: counts of tokens, not bytes). Exact: '1.5T'
    is 1,500,000,000,000, not a float's neighbour of it.
    """
    if text is None:
        return None
    raw = str(text)
    match = (re.fullmatch(r"\s*(-?)" + _NUMBER + r"\s*([kmbgtKMBGT]?)\s*", raw)
             if len(raw) <= MAX_TEXT_CHARS else None)
    if not match:
        raise ConfigError(f"cannot read {_shown(text)} as a {what}; write e.g. 300e9, 300B or 1.5T")
    value = _decimal(match.group(2)) * _COUNT_SUFFIX[match.group(3).lower()]
    if match.group(1) or value <= 0:
        raise ConfigError(f"{what} must be positive, got {_shown(text)}")
    if value > maximum:
        raise ConfigError(f"{what} {_shown(text)} is out of range (at most {maximum:.3g})")
    rounded = int(value.to_integral_value())
    if rounded < 1:
        raise ConfigError(f"{what} must be at least 1, got {_shown(text)}")
    return rounded


def check_finite(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, integer: bool = False) -> float | int:
    """``value`` if it is a real, finite number in range, else ConfigError naming ``name``.

    ``low_open`` makes the lower bound exclusive (``> low``). ``integer``
    demands an int (a bool is not one). Returns the value unchanged, so it can
    wrap an assignment.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {_shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{name} must be {'above' if low_open else 'at least'} {low:g}, got {_shown(value)}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be at most {high:g}, got {_shown(value)}")
    return value


def check_finite_positive(value: Any, name: str, *, low: float = 0.0, high: float | None = None,
                          integer: bool = False) -> float | int:
    """``check_finite`` for a quantity that must be > 0 (and >= ``low`` when a floor keeps its
    reciprocal finite: a peak of 5e-324 FLOP/s would make every MFU infinite)."""
    check_finite(value, name, high=high, integer=integer)
    if value <= 0:
        raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, got {_shown(value)}")
    if value < low:
        raise ConfigError(f"{name} must be at least {low:g}, got {_shown(value)}")
    return value


def _scaled(value: float, base: float, units: list[str], suffix: str, digits: int) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in units[:-1]:
        if value < base:
            return f"{sign}{value:.{digits}f} {unit}{suffix}"
        value /= base
    return f"{sign}{value:.{digits}f} {units[-1]}{suffix}"


def fmt_bytes(n: float | None, digits: int = 2) -> str:
    """Binary units, said as such: 1.50 GiB."""
    if n is None:
        return "n/a"
    return _scaled(float(n), 1024, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], "", digits)


def fmt_si(x: float | None, unit: str = "", digits: int = 2) -> str:
    """Decimal prefixes: 989.40 TFLOP/s, 1.23 M tok/s."""
    if x is None:
        return "n/a"
    return _scaled(float(x), 1000, ["", "k", "M", "G", "T", "P", "E"], unit, digits)


def fmt_flops(x: float | None, digits: int = 2) -> str:
    return fmt_si(x, "FLOP", digits)


def fmt_rate(x: float | None, digits: int = 2) -> str:
    return fmt_si(x, "FLOP/s", digits)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    if s < 120:
        return f"{s:.2f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f} %"
