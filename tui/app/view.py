"""The one method every panel implements: draw yourself from the run state."""

from __future__ import annotations

from tui.app.run_state import RunState


class StateView:
    """Mixin for widgets that are views of `RunState`.

    The app calls ``show(state)`` on every view after events arrive (at most a
    few times a second) and once when a view is mounted, so views keep no
    state of their own that a layout rebuild could lose.
    """

    def show(self, state: RunState) -> None:  # pragma: no cover - interface
        raise NotImplementedError
