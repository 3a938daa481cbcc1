"""The setup form's live prediction in ``MfutopApp``: the draft checked, its preview computed in a worker.

A mixin of the app (its state lives on the app, its handlers are the app's):
each change of the form is checked at once and previewed once the form has been
still for ``PREVIEW_DEBOUNCE_S``; an older preview arriving late is dropped; a
start asked for before its preview arrived waits for it (``_pending_start``).
"""

from __future__ import annotations

from textual import work

from estimator.errors import ConfigError
from profiler.run_config import RunConfig
from tui.app.setup_draft import check_draft
from tui.app.setup_form import SetupForm
from tui.app.setup_preview import PreviewReady, RunPreview, preview_run

PREVIEW_DEBOUNCE_S = 0.3  # the setup's preview is recomputed once the form has been still this long


class SetupPreviewing:
    """Checks and previews the setup form's draft (``setup_draft``, ``run_config``: the app's)."""

    def _init_preview(self) -> None:
        self.preview: RunPreview | None = None  # the prediction of the setup on the form, once computed
        self.preview_status = ""  # what the preview waits for ("predicting…"), or why there is none
        self.setup_refusal = ""  # why `r` did not start the setup on the form (cleared when it changes)
        self._preview_seq = 0  # the latest preview asked for; older answers are dropped
        self._preview_answered = -1  # the latest preview that has arrived (== _preview_seq: current)
        self._preview_config: RunConfig | None = None
        self._preview_timer = None
        self._pending_start: RunConfig | None = None  # `r` pressed before this config's preview arrived

    def on_setup_form_changed(self, message: SetupForm.Changed) -> None:
        self.setup_draft = message.draft
        self.setup_refusal = ""
        self._check_setup()
        self._ask_preview()

    def _check_setup(self) -> None:
        if self.setup_editable:
            _, self.setup_errors = check_draft(self.setup_draft, self.run_config)

    def _show_setup(self) -> None:
        """The form's flagged fields, the refusal line beside them, and the preview."""
        errors = {**self.setup_errors, **({"refused": self.setup_refusal} if self.setup_refusal else {})}
        status = self.preview_status
        if self._pending_start is not None and status:
            status = "checking the setup before the run: " + status
        for form in self.query(SetupForm):
            form.show_errors(errors)
            form.show_preview(self.preview, status)

    def _ask_preview(self, delay: float = PREVIEW_DEBOUNCE_S) -> None:
        """Recompute the preview of the draft once the form has been still for ``delay`` seconds."""
        if not self.setup_editable:
            return
        if self._preview_timer is not None:
            self._preview_timer.stop()
            self._preview_timer = None
        config, _ = check_draft(self.setup_draft, self.run_config)
        self._preview_seq += 1
        self._preview_config = config
        if config != self._pending_start:
            self._pending_start = None  # the setup changed after `r`: that start is dropped
        if config is None:
            self.preview, self.preview_status = None, "fix the setup to see its prediction"
        else:
            self.preview_status = "predicting…"
            seq = self._preview_seq
            if delay <= 0:
                self._preview_worker(config, seq)
            else:
                self._preview_timer = self.set_timer(delay, lambda: self._preview_due(config, seq))
        self._show_setup()

    def _preview_due(self, config: RunConfig, seq: int) -> None:
        self._preview_timer = None
        if seq == self._preview_seq:
            self._preview_worker(config, seq)

    @work(thread=True, exit_on_error=False, group="preview")
    def _preview_worker(self, config: RunConfig, seq: int) -> None:
        """The estimator's prediction of ``config`` (torch is imported here, never on the UI thread)."""
        try:
            self.post_message(PreviewReady(seq, config, preview_run(config)))
        except ConfigError as exc:  # no CUDA, a refused shape: the run, if started, reports it itself
            self.post_message(PreviewReady(seq, config, None, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a failed preview must not stop the run: it starts unchecked
            self.post_message(PreviewReady(seq, config, None, f"{type(exc).__name__}: {exc}"))

    def on_preview_ready(self, message: PreviewReady) -> None:
        if message.seq != self._preview_seq:
            return  # the form changed since
        self._preview_answered = message.seq
        self.preview = message.preview
        self.preview_status = f"no prediction: {message.error}" if message.error else ""
        pending, self._pending_start = self._pending_start, None
        self._show_setup()
        if pending is not None and pending == message.config and not self.running:
            self._start_previewed(pending)
