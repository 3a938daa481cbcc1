"""Outside strings made inert: terminal escape sequences and control characters removed.

A model name in a recorded run, a remote host's log line or a ``config.json``
field may carry ESC]52 (write the clipboard), ESC[2J (clear the screen) or a
bidi override that reorders what the reader sees. Stripping them where the
string enters keeps it data. This is the one home of that rule; the app's
plain-``Text`` helper, the event validator and the ``--hf-config`` reader all
call it. Pure Python, so every layer may use it.
"""

from __future__ import annotations

import re

# Escape sequences, removed whole so their parameters do not leak as text:
# CSI (ESC [ or C1 0x9B ... final), OSC (ESC ] or 0x9D ... BEL or ST; to the end when
# unterminated), DCS / SOS / PM / APC (ESC P|X|^|_ or their C1 bytes ... ST), and any other
# ESC + intermediates + final.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 except tab and newline, DEL, C1 (U+0080-U+009F: 0x9B is a one-byte CSI), and the
# bidi embedding / override / isolate controls that make text read differently than it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

ELLIPSIS = "…"


def strip_controls(text: str) -> str:
    """``text`` without escape sequences or control characters (newline and tab kept)."""
    if not _CONTROL.search(text):  # the common case: nothing to do, no copy
        return text
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def truncate(text: str, max_chars: int) -> str:
    """At most ``max_chars`` characters; a cut string ends in '…' so the cut is visible."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - 1)] + ELLIPSIS


def clean_text(text: str, max_chars: int) -> str:
    """Stripped, then truncated: the form every outside string takes before it is kept or shown.

    A long string is cut (with room for escape sequences) before it is scanned, so a
    50 MB log line costs no more than a short one.
    """
    return truncate(strip_controls(text[: 4 * max_chars + 64]), max_chars)
