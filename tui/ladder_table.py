"""The ladder's rows as text: the table cells, the bar chart, and folding rung events into rows.

Shared by ``mfutop ladder``'s printed table and the app's ``LadderScreen``;
pure Python (no Textual), tested without a terminal.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from estimator.units import fmt_bytes, fmt_pct
from profiler.events import Event, RunFinished

COLUMNS = (
    ("rung", "Rung"), ("status", "Status"), ("tokens", "tok/s"), ("prev", "x prev"), ("base", "x base"),
    ("memory", "Peak mem"), ("mfu", "MFU"), ("predicted", "Predicted tok/s"), ("batch", "Batch"),
    ("precision", "Precision"), ("note", "Note"),
)
NOTE_KEY = "note"  # prose, not a figure: shown below a printed table, or for the app's selected rung
BAR_WIDTH = 40
EIGHTHS = " ▏▎▍▌▋▊▉"


def _figure(value: Any) -> float | None:
    """A finite number, or None: a recorded rung may hold a string or NaN where a figure goes."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def _num(value: Any, digits: int = 0) -> str:
    value = _figure(value)
    return "-" if value is None else f"{value:,.{digits}f}"


def _times(value: Any) -> str:
    value = _figure(value)
    return "-" if value is None else f"{value:.2f}x"


def rung_name(row: dict[str, Any]) -> str:
    return str(row.get("name", "?"))


def rung_note(row: dict[str, Any]) -> str:
    """Why a rung is what it is (n/a reason, failure, what the switch did), else its title."""
    return str(row.get("reason") or row.get("title", ""))


def rung_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """One table row as text, in ``COLUMNS`` order; "-" where a rung has no figure."""
    measured = _figure(row.get("tokens_per_s")) is not None
    peak, mfu = _figure(row.get("peak_memory_bytes")), _figure(row.get("mfu"))
    return (
        rung_name(row), str(row.get("status", "")), _num(row.get("tokens_per_s")),
        _times(row.get("speedup_prev")), _times(row.get("speedup_base")),
        fmt_bytes(peak) if peak else "-",
        (fmt_pct(mfu) if mfu is not None else ("n/a" if measured else "-")),
        _num(row.get("predicted_tokens_per_s")),
        "-" if row.get("batch_size") is None or not measured else str(row["batch_size"]),
        str(row.get("precision") or "-") if measured else "-",
        rung_note(row),
    )


def _bar(value: float, top: float, width: int) -> str:
    eighths = round(value / top * width * 8) if top > 0 else 0
    full, part = divmod(max(eighths, 1), 8)
    return "█" * full + (EIGHTHS[part] if part else "")


def bar_chart(rows: Sequence[dict[str, Any]], width: int = BAR_WIDTH) -> str:
    """Horizontal bars of tokens/s, scaled to the fastest rung; unmeasured rungs say why not."""
    measured = [tps for r in rows if (tps := _figure(r.get("tokens_per_s")))]
    top = max(measured, default=0.0)
    name_w = max((len(rung_name(r)) for r in rows), default=4)
    lines = []
    for row in rows:
        tps = _figure(row.get("tokens_per_s"))
        if tps:
            lines.append(f"{rung_name(row):<{name_w}} {_bar(tps, top, width):<{width}} {tps:,.0f} tok/s")
        else:
            lines.append(f"{rung_name(row):<{name_w}} {'':<{width}} {row.get('status') or '...'}")
    return "\n".join(lines)


def fold(rows: list[dict[str, Any]], event: Event) -> list[dict[str, Any]]:
    """The rows after ``event``: a rung replaces the row of the same name (or is appended);
    RunFinished's summary, when it has ``rungs``, replaces them all (final speed-ups)."""
    rung = getattr(event, "rung", None)
    if event.kind == "ladder_rung" and isinstance(rung, dict):
        out = [r for r in rows if rung_name(r) != rung_name(rung)]
        index = next((i for i, r in enumerate(rows) if rung_name(r) == rung_name(rung)), len(rows))
        out.insert(min(index, len(out)), rung)
        return out
    if isinstance(event, RunFinished) and isinstance(event.summary.get("rungs"), list):
        return [r for r in event.summary["rungs"] if isinstance(r, dict)]
    return rows
