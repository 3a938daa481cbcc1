"""Messages the run worker posts to the app (thread-safe ``post_message``)."""

from __future__ import annotations

from textual.message import Message

from profiler.events import Event


class RunEvent(Message):
    """One profiler event, tagged with the run it belongs to: events of a run
    that was replaced (re-run) are dropped, never mixed into the new one."""

    def __init__(self, event: Event, run_id: int) -> None:
        super().__init__()
        self.event = event
        self.run_id = run_id


class RunEnded(Message):
    """The worker's source stopped (normally, cancelled, or by raising)."""

    def __init__(self, run_id: int, cancelled: bool) -> None:
        super().__init__()
        self.run_id = run_id
        self.cancelled = cancelled
