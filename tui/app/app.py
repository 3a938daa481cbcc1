"""`MfutopApp`: hardware, prediction and measurement side by side, live.

The run happens in a thread worker that pulls events from a source (a live
run, a recorded file, an ssh stream) and posts each to the app as a message;
the app folds them into a `RunState` and redraws the panels a few times a
second. The app adds no measurement logic of its own. Before a live run, the
setup form's prediction is previewed (another thread worker, debounced): a
setup that cannot fit is refused before it starts, a long one asks first.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Iterable

from rich.markup import escape
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from estimator.units import fmt_seconds
from profiler.events import (
    DeviceDetected,
    LogMessage,
    PredictionReady,
    RunFailed,
    RunFinished,
    StepSample,
)
from profiler.run_config import RunConfig
from tui.app.body import Body
from tui.app.messages import RunEnded, RunEvent
from tui.app.run_state import RunState
from tui.app.run_status import RunStatus
from tui.app.setup_draft import check_draft, draft_from_config
from tui.app.setup_preview import preview_details
from tui.app.gpu_polling import GpuPolling
from tui.app.other_screens import OtherScreens
from tui.app.setup_previewing import SetupPreviewing
from tui.app.view import StateView
from tui.event_sources import EventSource, live_source
from tui.plain_text import plain_str
from tui.recording import Recording, default_save_path, save_events

REDRAW_S = 0.25  # panels redraw at most this often while events stream
# ... and this often while a live run measures this very CPU: every OpenMP op of the run waits for both its
# threads, so a UI thread taking a core for a moment stalls the step (measured, gpt-tiny on 2 vCPUs: the app
# used 15 % of a core at 4 redraws a second, 3 % at one)
CPU_RUN_REDRAW_S = 1.0
QUIT_WAIT_S = 30.0  # how long quitting waits for the run to stop between steps


class MfutopApp(SetupPreviewing, OtherScreens, GpuPolling, App):
    """``MfutopApp(run_config, source, out_path, autostart, title)``.

    ``source(cancel)`` returns the events of one run; without one the app runs
    ``profiler.run.run_profile(config, cancel)`` on the setup form's config.
    ``out_path`` records every run's events as JSONL while they arrive.
    """

    CSS_PATH = "mfutop.tcss"
    TITLE = "mfutop"
    BINDINGS = [
        Binding("r", "start", "Run / re-run"),
        Binding("c", "cancel", "Cancel"),
        Binding("s", "save", "Save"),
        Binding("l", "ladder", "Ladder"),
        Binding("p", "plan", "Plan"),
        Binding("m", "compare", "Compare runs"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    def __init__(
        self,
        run_config: RunConfig | None = None,
        source: EventSource | None = None,
        out_path: Path | None = None,
        autostart: bool = True,
        title: str | None = None,
        first_run: EventSource | None = None,
    ) -> None:
        """``first_run``: the live source of ``run_config`` already started (``started_now``), used by
        the autostarted run instead of a fresh child."""
        super().__init__()
        self._first_run = first_run
        self._first_run_config = run_config
        self.run_config = run_config or RunConfig()
        self._steps_known = source is None or run_config is not None  # a replay's step count is the file's
        self._source = source
        self.out_path = Path(out_path) if out_path else None
        self.autostart = autostart
        self.state = RunState(expected_steps=self.run_config.steps if self._steps_known else None)
        self.setup_draft = draft_from_config(self.run_config)
        self.setup_errors: dict[str, str] = {}
        self.setup_editable = source is None
        self.setup_note = ("Esc leaves a field; r runs it" if source is None
                           else "the run's own setup (read-only); r runs it again")
        if title:
            self.title = plain_str(title)
        self.sub_title = "" if title else self._describe_source()
        self._run_id = 0
        self._cancel = threading.Event()
        self._run_done = threading.Event()
        self._run_done.set()
        self._dirty = False
        self._last_redraw = 0.0
        self._first_measured_run = -1  # the run whose first timed step was drawn at once
        self._gpu_timer = None
        self._init_preview()

    # ---- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunStatus(id="status")
        yield Body(id="body")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(REDRAW_S, self._redraw_if_dirty)
        self._check_setup()
        self.after_layout_change()
        if self.autostart and self._autostart():
            # torch's import for the preview would hold the GIL while the panel and the first numbers
            # arrive: the preview waits for an edit of the form, or the end of this run
            self.preview_status = "shown when you edit the setup, or after this run"
            self._show_setup()
        else:
            self._ask_preview(delay=0)

    def _autostart(self) -> bool:
        """Start the run the command line asked for at once (True when a live run started): it was checked
        as the CLI parsed it, and waiting for the preview (torch's import in this process) would hold back
        the first numbers by seconds. The preview follows for the form; `r` is what it guards."""
        config, _ = check_draft(self.setup_draft, self.run_config)
        if self._source is not None or config is None:
            self.action_start()
            return False
        self._launch_live(config)
        return True

    def after_layout_change(self) -> None:
        """Called once the body is (re)built: re-flag setup errors, put focus where keys work."""
        self._show_setup()
        for table in self.query("#comparison"):
            table.focus()

    def _describe_source(self) -> str:
        """The subtitle: names from outside (a file name, a recorded model) shown literally."""
        return escape(plain_str(self._source_label()))

    def _source_label(self) -> str:
        if self._source is not None:
            return str(getattr(self._source, "label", ""))
        model = self.run_config.model.name if self.run_config.model else (self.state.model_name or "default model")
        device = self.state.device.device if self.state.device else self.run_config.device
        return f"live · {model} · {device}"

    # ---- run lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self._run_done.is_set()

    def action_start(self) -> None:
        """Start a run (or run again once one has ended); a live setup is checked against its preview
        first (``_start_previewed``)."""
        if self.running:
            self.notify("A run is in progress; c cancels it.", severity="warning", markup=False)
            return
        if self._source is not None:
            self._launch(self._source, self.run_config.steps if self._steps_known else None)
            return
        config, errors = check_draft(self.setup_draft, self.run_config)
        if config is None:
            self.setup_errors = errors
            self.after_layout_change()
            self.notify("Fix the setup first: " + next(iter(errors.values())), severity="error", markup=False)
            return
        if self._preview_config == config and self._preview_answered == self._preview_seq:
            self._start_previewed(config)
            return
        if self._preview_config != config or self._preview_timer is not None:
            self._ask_preview(delay=0)  # not asked yet, or still waiting out the debounce
        self._pending_start = config
        self._show_setup()

    def _start_previewed(self, config: RunConfig) -> None:
        """Start ``config`` as its preview allows: refused when it cannot fit (nothing is wiped), asked
        first when it is long, started otherwise (also when no preview could be made)."""
        preview = self.preview if self.preview is not None and self.preview.config == config else None
        if preview is not None and not preview.fits:
            self.setup_refusal = preview.refusal()
            self._show_setup()
            for box in self.query("#setup-errors"):
                box.scroll_visible()
            self.notify(preview.refusal(figures=True), severity="error", markup=False)
            return
        if preview is not None and preview.long:
            from tui.app.confirm_run import ConfirmRun

            self.push_screen(ConfirmRun(preview.question(), "\n".join(preview_details(preview))),
                             callback=lambda run: self._launch_live(config) if run else None)
            return
        self._launch_live(config)

    def _launch_live(self, config: RunConfig) -> None:
        if self.running:  # a second answer to a confirmation, or a run started meanwhile
            return
        first = self._first_run if config == self._first_run_config else None
        self._first_run = None
        self.run_config = config
        self.sub_title = self._describe_source()
        self._launch(first or live_source(config), config.steps)

    def _launch(self, source: EventSource, steps: int | None) -> None:
        """A fresh run of ``source``: the previous results give way to it."""
        self.setup_refusal = ""
        self._show_setup()
        self._run_id += 1
        self._cancel = threading.Event()
        self._run_done = threading.Event()
        self.state = RunState(status="running", expected_steps=steps)
        if self.out_path:
            self.state.note("info", f"recording to {self.out_path}")
        self._stop_gpu_poll()
        self._run_worker(source, self._run_id, self._cancel, self._run_done)
        self.redraw()

    def action_cancel(self) -> None:
        if not self.running:
            self.notify("No run in progress.", markup=False)
            return
        self._cancel.set()
        if self.state.status == "running":
            self.state.status = "cancelling"
            last = self.state.samples[-1].step_time_s if self.state.samples else None
            wait = f" (≈ {fmt_seconds(last)})" if isinstance(last, (int, float)) and last > 0 else ""
            self.state.note("info", f"cancel asked: stopping after this step{wait}; what was measured is kept")
        self.redraw()

    @work(thread=True, exclusive=True, exit_on_error=False, group="run")
    def _run_worker(self, source: EventSource, run_id: int, cancel: threading.Event, done: threading.Event) -> None:
        """Pull events from the source (in this thread) and post them to the app.

        A recording that cannot be written is a warning in the log; the run goes on.
        """
        recording = Recording(self.out_path, on_fail=lambda text: self.post_message(
            RunEvent(LogMessage("warning", text), run_id)))
        try:
            for event in source(cancel):
                recording.write(event)
                self.post_message(RunEvent(event, run_id))
        except Exception as exc:  # the run's failure is data to show, not a crash of the app
            failed = RunFailed(message=str(exc) or type(exc).__name__, error_type=type(exc).__name__)
            recording.write(failed)
            self.post_message(RunEvent(failed, run_id))
        finally:
            recording.close()
            self.post_message(RunEnded(run_id, cancel.is_set()))
            done.set()

    def on_run_event(self, message: RunEvent) -> None:
        if message.run_id != self._run_id:
            return  # a replaced run
        event = message.event
        self.state.apply(event)
        if isinstance(event, DeviceDetected) and event.device == "cuda" and self._source is None:
            self._start_gpu_poll()
        if isinstance(event, PredictionReady) and self._source is None:
            self.sub_title = self._describe_source()
        self._dirty = True
        if isinstance(event, (RunFinished, RunFailed, DeviceDetected)) or self._first_measurement(event, message.run_id):
            self.redraw()  # milestones show at once, whatever the redraw rate

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run_id != self._run_id:
            return
        if self.state.status in ("running", "cancelling"):
            if message.cancelled:
                self.state.status = "cancelled"
            else:
                self.state.status = "ended"
                self.state.note("warning", "the source ended without RunFinished (file cut short?)")
        self._stop_gpu_poll()
        if self.preview is None and self._preview_timer is None and self.setup_editable:
            self._ask_preview(delay=0)  # deferred at start-up (on_mount)
        self.redraw()

    async def wait_for_run(self, timeout: float = QUIT_WAIT_S) -> bool:
        """Wait (without blocking the UI) until the run's thread is done; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self.running

    async def action_quit(self) -> None:
        """Quit; a run in progress is cancelled first and its thread waited for."""
        if self.running:
            self.action_cancel()
            if not await self.wait_for_run():
                self.notify("The run did not stop in time; quitting anyway.", severity="error", markup=False)
        self.exit()

    def on_unmount(self) -> None:
        # Last resort for exits that skip action_quit (App.exit() from elsewhere, a test harness):
        # stop the source and wait for the worker thread, so no run outlives the app.
        self._cancel.set()
        self._run_done.wait(timeout=QUIT_WAIT_S)

    # ---- saving -------------------------------------------------------------------------------

    def action_save(self) -> None:
        """Write the events so far to a JSONL file (`mfutop replay FILE` opens it)."""
        if not self.state.events:
            self.notify("Nothing to save yet.", markup=False)
            return
        if self.out_path:
            self.notify(f"This run is recorded live to {self.out_path}.", markup=False)
            return
        try:
            path = self.save_events(default_save_path())
        except OSError as exc:  # a read-only directory, a full disk: the events stay in the app
            self.state.note("error", f"could not save the run: {exc}")
            self.notify(f"Could not save the run: {exc}", severity="error", markup=False)
            self.redraw()
            return
        self.notify(f"Saved {len(self.state.events)} events to {path}", markup=False)

    def save_events(self, path: Path) -> Path:
        save_events(self.state.events, path)
        self.state.note("info", f"saved {len(self.state.events)} events to {path}")
        self.redraw()
        return path

    # ---- drawing ------------------------------------------------------------------------------

    def redraw(self) -> None:
        """Redraw every panel from the state now."""
        self._dirty = False
        self._last_redraw = time.monotonic()
        for screen in self.screen_stack:  # the main screen too while the palette or help is over it
            for widget in screen.walk_children():
                if isinstance(widget, StateView):
                    widget.show(self.state)

    def _redraw_if_dirty(self) -> None:
        if not self._dirty:
            return
        if self._measuring_this_cpu() and time.monotonic() - self._last_redraw < CPU_RUN_REDRAW_S:
            return
        self.redraw()

    def _first_measurement(self, event, run_id: int) -> bool:
        """Whether ``event`` is run ``run_id``'s first timed step."""
        if not isinstance(event, StepSample) or event.warmup or self._first_measured_run == run_id:
            return False
        self._first_measured_run = run_id
        return True

    def _measuring_this_cpu(self) -> bool:
        device = self.state.device
        return self._source is None and self.running and device is not None and device.device == "cpu"

    def action_leave_field(self) -> None:
        """Escape: close the keys panel if it is open, else leave a text field so the single-key
        bindings (r, c, s, q) work again."""
        from textual.widgets import HelpPanel

        if self.screen.query(HelpPanel):
            self.action_hide_help_panel()
            return
        self.set_focus(None)

    # ---- command palette ----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Start run", "Start a run with the setup shown (r)", self.action_start)
        yield SystemCommand("Re-run", "Run the same setup again once the run has ended (r)", self.action_start)
        yield SystemCommand("Cancel run", "Stop after the current step, keeping what was measured (c)", self.action_cancel)
        yield SystemCommand("Save run", "Write the run's events to a JSONL file for `mfutop replay` (s)", self.action_save)
        yield SystemCommand("Ladder", "Measure the training-speed ladder of this setup, rung by rung (l)", self.action_ladder)
