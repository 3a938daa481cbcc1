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


_NOTHING = object()


def shows(widget, marker) -> bool:
    """Whether ``widget`` was last updated (``update_if_changed``) with this content or key."""
    return getattr(widget, "_shown_marker", _NOTHING) == marker


def update_if_changed(widget, content, key=_NOTHING, layout: bool = True) -> None:
    """``widget.update(content)`` (a ``Static``) unless it already shows the same.

    ``Static.update`` lays the whole screen out again, and the app redraws every panel a few times a second
    while a run streams: on a 2-core machine those layouts took CPU from the run's own first steps. ``key``
    is what the content is drawn from where the content itself (a Rich table) does not compare by value;
    by default the content (``str`` and Rich ``Text`` do). ``layout=False`` for a widget whose size its
    style fixes (one status line): the new content is drawn without laying the screen out."""
    marker = content if key is _NOTHING else key
    if shows(widget, marker):
        return
    widget._shown_marker = marker
    widget.update(content, layout=layout)
