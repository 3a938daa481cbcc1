"""`ConfirmRun`: a long run asks before it starts ("≈ 20.0 min on this CPU — run anyway?").

A modal that dismisses with True (y / enter: run) or False (n / escape: nothing starts);
the app starts the run only on True.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.plain_text import plain


class ConfirmRun(ModalScreen[bool]):
    """The question, what it is made of (``detail``), and the keys that answer it."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Run", priority=True),
        Binding("n,escape", "answer(False)", "Cancel", priority=True),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question, self.detail = question, detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-run"):
            yield Static(plain(self.question), id="confirm-question")
            if self.detail:
                yield Static(plain(self.detail, max_chars=400), id="confirm-detail")
            yield Static(plain("y / enter: run    n / escape: cancel"), id="confirm-keys")

    def action_answer(self, run: bool) -> None:
        self.dismiss(run)
