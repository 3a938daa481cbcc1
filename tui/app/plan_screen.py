"""`PlanScreen`: the planner's best setups for one model and GPU across GPU counts (1, 8, 64, 512).

Each count is one ``estimator.planner.plan`` (a full ``predict()`` per row),
run in a thread worker; results come back as messages, so the screen stays
live while the larger counts search. Cells are ``tui.plan_view.row_cells``,
the same text as `mfutop plan`. ``escape`` closes, ``r`` plans again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from estimator.errors import ConfigError
from estimator.hardware import HardwareSpec
from estimator.model_config import ModelConfig
from tui.plan_view import COLUMNS, row_cells

GPU_COUNTS = (1, 8, 64, 512)
DEFAULT_BATCH_TOKENS = 2**22  # as `mfutop plan` (tui.cmd_plan.DEFAULT_BATCH_TOKENS): Llama 2's 4M tokens
ROWS_PER_COUNT = 3


class PlanResult(Message):
    """One GPU count's plan (``plan`` is ``Plan.to_dict()``), or the one-line reason there is none."""

    def __init__(self, gpus: int, plan: dict | None, error: str | None, run_id: int) -> None:
        super().__init__()
        self.gpus, self.plan, self.error, self.run_id = gpus, plan, error, run_id


class PlanScreen(Screen):
    """``PlanScreen(model, hardware, gpu_counts=(1, 8, 64, 512), seq_len=None, global_batch_tokens=2**22,
    top=3)``: the best ``top`` setups per GPU count."""

    CSS_PATH = "plan_screen.tcss"
    BINDINGS = [Binding("escape", "close", "Back"), Binding("r", "replan", "Plan again")]

    def __init__(self, model: ModelConfig, hardware: HardwareSpec, gpu_counts: Iterable[int] = GPU_COUNTS,
                 seq_len: int | None = None, global_batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 top: int = ROWS_PER_COUNT, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model, self.hardware = model, hardware
        self.gpu_counts = tuple(gpu_counts)
        self.seq_len, self.batch_tokens, self.top = seq_len, global_batch_tokens, top
        self.results: dict[int, dict | str] = {}  # gpus -> plan dict, or the reason there is none
        self._cancel = threading.Event()
        self._run_id = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="plan-status")
        table = DataTable(id="plan-table", cursor_type="row", zebra_stripes=True)
        table.border_title = f"Plan: {self.model.name} on {self.hardware.key}"
        yield table
        yield Static("", id="plan-reasons")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#plan-table", DataTable)
        table.add_column("GPUs", key="gpus")
        for i, name in enumerate(COLUMNS):
            table.add_column(name, key=f"c{i}")
        self.start()

    def start(self) -> None:
        self._cancel.set()
        self._run_id += 1
        self._cancel = threading.Event()
        self.results = {}
        self._set_status(f"planning {len(self.gpu_counts)} GPU counts…")
        self.redraw()
        self._plan_all(self._run_id, self._cancel)

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan")
    def _plan_all(self, run_id: int, cancel: threading.Event) -> None:
        from estimator.planner import PlanRequest, plan

        for gpus in self.gpu_counts:
            if cancel.is_set():
                return
            try:
                req = PlanRequest(self.model, self.hardware, gpus, seq_len=self.seq_len,
                                  global_batch_tokens=self.batch_tokens, top=self.top)
                self.post_message(PlanResult(gpus, plan(req).to_dict(), None, run_id))
            except ConfigError as exc:
                self.post_message(PlanResult(gpus, None, str(exc), run_id))
            except Exception as exc:  # a failed plan is shown on its row, never a crash of the app
                self.post_message(PlanResult(gpus, None, f"{type(exc).__name__}: {exc}", run_id))

    def on_plan_result(self, message: PlanResult) -> None:
        if message.run_id != self._run_id:
            return
        self.results[message.gpus] = message.plan if message.plan is not None else message.error
        done = len(self.results)
        self._set_status(f"planned {done}/{len(self.gpu_counts)} GPU counts" if done < len(self.gpu_counts)
                         else f"done: best setups for {self.model.name} on {self.hardware.key}, "
                              f"global batch ~{self.batch_tokens:,} tokens")
        self.redraw()

    def redraw(self) -> None:
        table = self.query_one("#plan-table", DataTable)
        table.clear()
        reasons = []
        for gpus in self.gpu_counts:
            result = self.results.get(gpus)
            if result is None:
                table.add_row(Text(str(gpus)), Text("planning…"), *[Text("")] * (len(COLUMNS) - 1),
                              key=f"{gpus}-wait")
            elif isinstance(result, str):
                table.add_row(Text(str(gpus)), Text("-"), Text(result), *[Text("")] * (len(COLUMNS) - 2),
                              key=f"{gpus}-none")
            else:
                for row in result["rows"]:
                    table.add_row(Text(str(gpus)), *(Text(c) for c in row_cells(row)), key=f"{gpus}-{row['rank']}")
                if result["winner_reason"]:
                    reasons.append(f"{gpus} GPUs: {result['winner_reason']}")
        self.query_one("#plan-reasons", Static).update(Text("\n".join(reasons)))

    def _set_status(self, text: str) -> None:
        self.query_one("#plan-status", Static).update(Text(text))

    def action_replan(self) -> None:
        self.start()

    def action_close(self) -> None:
        self._cancel.set()
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self._cancel.set()
