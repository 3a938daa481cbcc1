"""`SetupForm`: what the next run measures; invalid values are flagged inline before it starts."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select, Static

from estimator.presets import PRESETS
from profiler.compare import lookup
from profiler.run_config import RUN_PRECISIONS
from tui.app.run_state import RunState
from tui.app.setup_draft import DEVICE_DEFAULT, SetupDraft, size_text
from tui.app.setup_preview import RunPreview, SetupPreview
from tui.app.view import StateView, update_if_changed
from tui.plain_text import plain

INPUTS = (  # (draft field, label, placeholder)
    ("seq_len", "seq len", "context"),
    ("batch", "batch", "auto or N"),
    ("steps", "steps", "20"),
    ("memory_limit", "mem limit", "none, or 40GiB"),
    ("hf_config", "hf config", "config.json path"),
)


def recorded_setup(state: RunState, draft: SetupDraft) -> list[tuple[str, str]]:
    """(label, value) of the setup a run used: its summary's config, else its prediction's setup.

    Before either arrives (a follow that just started) the values read "…".
    """
    config = (state.summary or {}).get("config") or {}
    setup = lookup(state.prediction, "setup") or {}
    config = config if isinstance(config, dict) else {}  # a recording may hold anything here
    setup = setup if isinstance(setup, dict) else {}

    def pick(config_key: str, setup_key: str | None = None) -> Any:
        if config_key in config:
            return config[config_key]
        return setup.get(setup_key or config_key) if setup else None

    def text(value: Any) -> str:
        return "…" if value is None else str(value)

    known = bool(config or setup)
    batch = config.get("batch_size", "auto") if config else None
    measured_batch = state.measured().get("batch_size")
    batch_text = "…" if not known else ("auto" if batch in (None, "auto") else str(batch))
    if measured_batch and batch_text == "auto":
        batch_text += f" → {measured_batch}"
    precision = pick("precision")
    effective = config.get("precision_effective")
    if effective and effective != precision:
        precision = f"{precision} (ran {effective})"
    limit = config.get("memory_limit_bytes")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        limit = str(limit)
    flags = [(name, pick(key, skey)) for name, key, skey in
             (("compile", "compile", "compile"), ("flash", "flash_attention", "flash_attention"))]
    return [
        ("model", text(config.get("model") or state.model_name)),
        ("device", text(config.get("torch_device") or (state.device.device if state.device else None))),
        ("seq len", text(pick("seq_len"))),
        ("batch", batch_text),
        ("steps", text(config.get("steps"))),
        ("precision", text(precision)),
        ("toggles", " · ".join(f"{n}: {'…' if v is None else ('on' if v else 'off')}" for n, v in flags)),
        ("mem limit", "none" if known and limit is None else
         ("…" if limit is None else limit if isinstance(limit, str) else size_text(limit))),
    ]


def toggle_label(name: str, on: bool) -> str:
    """'compile: off' — the state in words, since the box's look is colour only (NO_COLOR)."""
    return f"{name}: {'on' if on else 'off'}"


class SetupForm(Vertical, StateView):
    """Model, sequence length, batch, steps, precision, compile, flash attention, memory limit.

    Every change updates the app's draft (``app.setup_draft``) and re-checks it;
    the form only shows the verdict, and under it the app's preview of the run
    (``SetupPreview``). With a source that is not a live run (replay, remote)
    the form is read-only.
    """

    class Changed(Message):
        """The draft changed; the app re-validates it."""

        def __init__(self, draft: SetupDraft) -> None:
            super().__init__()
            self.draft = draft

    def __init__(self, draft: SetupDraft, editable: bool = True, note: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Setup"
        self._draft = draft
        self._editable = editable
        self._note = note
        self.set_class(editable, "-editable")

    def compose(self) -> ComposeResult:
        if not self._editable:
            yield Static("", id="recorded-setup")
            yield Static(plain(self._note), id="setup-errors", classes="setup-errors")
            return
        draft = self._draft
        models = list(PRESETS)
        if draft.model not in models and draft.model != DEVICE_DEFAULT:
            models.insert(0, draft.model)
        with Horizontal(classes="field"):
            yield Label("model", classes="field-label")
            yield Select([(DEVICE_DEFAULT, DEVICE_DEFAULT)] + [(plain(m), m) for m in models], value=draft.model,
                         allow_blank=False, id="setup-model", compact=True, disabled=not self._editable)
        for field, label, placeholder in INPUTS:
            with Horizontal(classes="field"):
                yield Label(label, classes="field-label")
                yield Input(getattr(draft, field), placeholder=placeholder, id=f"setup-{field}",
                            compact=True, disabled=not self._editable)
        with Horizontal(classes="field"):
            yield Label("precision", classes="field-label")
            yield Select([(p, p) for p in RUN_PRECISIONS], value=draft.precision, allow_blank=False,
                         id="setup-precision", compact=True, disabled=not self._editable)
        with Horizontal(classes="field toggles"):
            yield Checkbox(toggle_label("compile", draft.compile), draft.compile, id="setup-compile",
                           compact=True, disabled=not self._editable)
            yield Checkbox(toggle_label("flash", draft.flash), draft.flash, id="setup-flash",
                           compact=True, disabled=not self._editable)
        yield SetupPreview(id="setup-preview")
        yield Static(plain(self._note), id="setup-errors", classes="setup-errors")

    def show(self, state: RunState) -> None:
        """Read-only form: what the recorded / remote run used, as far as its events tell."""
        if self._editable:
            return
        rows = tuple(recorded_setup(state, self._draft))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True, min_width=10)
        grid.add_column()
        for label, value in rows:
            grid.add_row(plain(label), plain(value))  # the recording's words, never markup
        update_if_changed(self.query_one("#recorded-setup", Static), grid, rows)

    def show_errors(self, errors: dict[str, str]) -> None:
        """Mark the fields with a problem and print the messages under the form."""
        for field in ("model", "seq_len", "batch", "steps", "memory_limit", "precision", "hf_config"):
            for widget in self.query(f"#setup-{field}"):
                widget.set_class(field in errors, "-bad")
        box = self.query_one("#setup-errors", Static)
        if errors:
            box.update(plain("\n".join(errors.values()), max_chars=2000))  # they quote what was typed
            box.add_class("-bad")
        else:
            box.update(plain(self._note))
            box.remove_class("-bad")

    def show_preview(self, preview: RunPreview | None, status: str = "") -> None:
        """The app's prediction of this setup (an editable form only)."""
        for widget in self.query(SetupPreview):
            widget.show_preview(preview, status)

    def _changed(self, **changes) -> None:
        """Posts ``Changed`` only for a real edit: the fields' own Changed events as they mount carry
        the values they were given, and a preview then (torch imported in this process) would slow the
        autostarted run's first numbers by a second."""
        draft = self._draft.with_(**changes)
        if draft == self._draft:
            return
        self._draft = draft
        self.post_message(self.Changed(draft))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._changed(**{event.input.id.removeprefix("setup-"): event.value})

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.BLANK:
            self._changed(**{event.select.id.removeprefix("setup-"): str(event.value)})

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        field = event.checkbox.id.removeprefix("setup-")
        event.checkbox.label = toggle_label(field, event.value)
        self._changed(**{field: event.value})
