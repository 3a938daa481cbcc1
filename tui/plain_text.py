"""Outside strings on screen: always a plain ``rich.text.Text``, never markup.

Textual and Rich parse a bare ``str`` as console markup almost everywhere
(``Static.update``, ``DataTable`` cells, ``Table.add_row``, border titles,
notifications), so a model name ``[@click=app.screenshot(...)]`` becomes an
action and ``[/]`` a ``MarkupError``. Every widget passes data that came from
a run, a file or a host through ``plain`` instead: the string is stripped of
escape sequences and control characters (``estimator.safe_text``), cut to a
display length, and wrapped in ``Text`` so its brackets stay brackets.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from estimator.safe_text import clean_text

DISPLAY_CHARS = 200  # one table cell or panel line; the log keeps longer lines
LOG_CHARS = 2000


def plain_str(value: Any, max_chars: int = DISPLAY_CHARS) -> str:
    """``value`` as display-safe text (``None`` as '', anything else by ``str``)."""
    if value is None:
        return ""
    return clean_text(value if isinstance(value, str) else str(value), max_chars)


def plain(value: Any, style: str = "", max_chars: int = DISPLAY_CHARS, **text_options: Any) -> Text:
    """A ``Text`` holding ``value`` literally: no markup, no escapes, at most ``max_chars``."""
    return Text(plain_str(value, max_chars), style=style, **text_options)


def join(*parts: Any, style: str = "") -> Text:
    """Pieces, some ``Text`` (styled, ours) and some outside values, concatenated as one ``Text``."""
    out = Text(style=style)
    for part in parts:
        out.append_text(part if isinstance(part, Text) else plain(part))
    return out
