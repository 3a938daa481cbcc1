"""Parsing and display of sizes and rates. Code keeps SI base units; this is the edge."""

from __future__ import annotations

import re

from estimator.errors import ConfigError

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,  # bare letters: binary, as in `ulimit`/torch docs
}


def parse_bytes(text: str) -> int:
    """'40GiB' -> 42949672960, '24GB' -> 24e9, '512MiB', '1e9' (bytes)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ConfigError(f"cannot read {text!r} as a size; write e.g. 40GiB, 24GB or 512MiB")
    value = float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]
    if value <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return int(value)


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
