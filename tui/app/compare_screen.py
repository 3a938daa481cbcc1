"""`CompareScreen`: two recorded runs side by side, as `mfutop compare` prints them.

The user picks run A and run B (the ``*.jsonl`` files of a directory in a
list, or paths typed into two fields); a thread worker reads both through the
validating reader and ``tui.run_diff`` builds the content, so the screen and
the CLI can never disagree. It shows the setup differences, then each figure
for A, B and the difference B - A, measured first (what two runs are compared
for; on 80 columns the predicted ones are a scroll away). On a short terminal
the picker folds away once runs are compared (``o`` opens it again). Everything
from the files is drawn as plain text. ``escape`` closes.
"""

from __future__ import annotations

from pathlib import Path

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from estimator.errors import ConfigError
from profiler.event_validation import SkipCounter
from tui.app.comparison import format_value
from tui.event_sources import read_run_file
from tui.plain_text import join, plain, plain_str
from tui.run_diff import delta_text, diff_runs, difference, fold

MAX_LISTED = 500  # run files offered from one directory; more would only slow the list
SHORT_ROWS = 32  # below this height the picker folds away while a comparison is shown
SETUP_COLUMNS = (("setup", ""), ("a", "A"), ("b", "B"))
FIGURE_COLUMNS = (("figure", "Figure"), ("meas_a", "meas. A"), ("meas_b", "meas. B"), ("meas_delta", "Δ meas."),
                  ("pred_a", "pred. A"), ("pred_b", "pred. B"), ("pred_delta", "Δ pred."))


class RunFilesListed(Message):
    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names


class RunsCompared(Message):
    """``diff`` is ``tui.run_diff.diff_runs``'s object, or ``error`` the one line why there is none."""

    def __init__(self, diff: dict | None, error: str | None, warnings: list[str], run_id: int) -> None:
        super().__init__()
        self.diff, self.error, self.warnings, self.run_id = diff, error, warnings, run_id


def fill_table(table: DataTable, columns: tuple[tuple[str, str], ...], rows: dict[str, list[Text]]) -> None:
    """Replace the table's columns and rows, each column as wide as its widest cell.

    Fixed widths, because an auto-width table filled after its first paint (here: once the worker has
    read the files) keeps its label-wide columns on screen until something else repaints it."""
    table.clear(columns=True)
    cells = list(rows.values())
    for i, (key, label) in enumerate(columns):
        table.add_column(label, key=key, width=max([cell_len(label), *(row[i].cell_len for row in cells)]))
    for key, row in rows.items():
        table.add_row(*row, key=key)


def list_run_files(directory: Path, limit: int = MAX_LISTED) -> list[str]:
    """The names of the ``*.jsonl`` files in ``directory``, sorted; [] if it cannot be read."""
    try:
        return sorted(p.name for p in directory.glob("*.jsonl") if p.is_file())[:limit]
    except OSError:
        return []


def compare_files(a: Path, b: Path) -> tuple[dict, list[str]]:
    """(``diff_runs`` of the two files, one warning per file with skipped lines); ConfigError for a file
    that is missing or holds no events. The same reading as `mfutop compare`."""
    states, warnings = [], []
    for path in (a, b):
        skipped = SkipCounter()
        states.append(fold(read_run_file(path, skipped)))
        if skipped:
            warnings.append(f"{path.name}: {skipped.report()}")
    return diff_runs(a, states[0], b, states[1]), warnings


class CompareScreen(Screen):
    """``CompareScreen(a=None, b=None, directory=cwd)``: with both paths it compares at once; otherwise
    the user picks them from ``directory``'s run files or types them (relative to ``directory``)."""

    CSS_PATH = "compare_screen.tcss"
    BINDINGS = [Binding("escape", "close", "Back"), Binding("o", "pick", "Pick runs")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_ROWS, "-tall")]

    def __init__(self, a: Path | str | None = None, b: Path | str | None = None,
                 directory: Path | str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.directory = Path(directory) if directory is not None else Path.cwd()
        self.start_paths = (self._shown(a), self._shown(b))
        self.diff: dict | None = None
        self.file_names: list[str] = []
        self._next_pick = "a"
        self._run_id = 0

    def _shown(self, path: Path | str | None) -> str:
        """A path as the fields show it: relative to the directory when inside it."""
        if path is None:
            return ""
        path = Path(path)
        try:
            return str(path.relative_to(self.directory))
        except ValueError:
            return str(path)

    def _resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.directory / path

    # ---- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-status")
        with Horizontal(id="compare-pick"):
            files = OptionList(id="compare-files", markup=False)
            files.border_title = plain_str(f"*.jsonl in {self.directory.resolve().name or self.directory}/")
            yield files
            with Vertical(id="compare-paths"):
                for key, start in zip("ab", self.start_paths):
                    with Horizontal(classes="compare-path"):
                        yield Static(key.upper(), classes="compare-path-label")
                        yield Input(start, placeholder=f"run {key.upper()}: path to a .jsonl run file",
                                    id=f"compare-{key}", compact=True)
                yield Static("Enter in the list: A, then B · Enter in a field: compare", id="compare-hint")
        setup = DataTable(id="compare-setup", show_header=False, cursor_type="none", show_cursor=False)
        setup.border_title = "Runs and setup differences"
        yield setup
        figures = DataTable(id="compare-figures", cursor_type="row", zebra_stripes=True)
        figures.border_title = "Figures of A and B, Δ = B - A"
        yield figures
        yield Footer()

    def on_mount(self) -> None:
        fill_table(self.query_one("#compare-setup", DataTable), SETUP_COLUMNS, {})
        fill_table(self.query_one("#compare-figures", DataTable), FIGURE_COLUMNS, {})
        self.run_worker(self._list_files, thread=True, exclusive=True, group="compare-list", exit_on_error=False)
        if all(self.start_paths):
            self.compare()
        else:
            self._set_status("pick run A and run B")
            self.query_one("#compare-files").focus()

    def _list_files(self) -> None:
        self.post_message(RunFilesListed(list_run_files(self.directory)))

    def on_run_files_listed(self, message: RunFilesListed) -> None:
        files = self.query_one("#compare-files", OptionList)
        files.clear_options()
        files.add_options([Option(plain(name), id=f"f{i}") for i, name in enumerate(message.names)])
        self.file_names = message.names
        if not message.names:
            files.add_option(Option(plain("no *.jsonl files here"), disabled=True))

    # ---- picking ------------------------------------------------------------------------------

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        name = self.file_names[event.option_index]
        field = self._next_pick
        self.query_one(f"#compare-{field}", Input).value = name
        self._next_pick = "b" if field == "a" else "a"
        if field == "b" or self.query_one("#compare-b", Input).value:
            self.compare()
        else:
            self._set_status("run A picked; now pick run B")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        other = self.query_one("#compare-b" if event.input.id == "compare-a" else "#compare-a", Input)
        if other.value.strip():
            self.compare()
        else:
            other.focus()

    def compare(self) -> None:
        """Read both fields' files in a worker; the result arrives as ``RunsCompared``."""
        a, b = (self.query_one(f"#compare-{k}", Input).value.strip() for k in ("a", "b"))
        if not a or not b:
            self._set_status("give both run A and run B")
            return
        self._run_id += 1
        run_id, paths = self._run_id, (self._resolve(a), self._resolve(b))
        self._set_status("reading both runs…")
        self.run_worker(lambda: self._compare(paths, run_id), thread=True, exclusive=True, group="compare",
                        exit_on_error=False)

    def _compare(self, paths: tuple[Path, Path], run_id: int) -> None:
        try:
            diff, warnings = compare_files(*paths)
            self.post_message(RunsCompared(diff, None, warnings, run_id))
        except ConfigError as exc:
            self.post_message(RunsCompared(None, str(exc), [], run_id))
        except Exception as exc:  # an unreadable file is said on the status line, never a crash of the app
            self.post_message(RunsCompared(None, f"{type(exc).__name__}: {exc}", [], run_id))

    # ---- drawing ------------------------------------------------------------------------------

    def on_runs_compared(self, message: RunsCompared) -> None:
        if message.run_id != self._run_id:
            return
        if message.diff is None:
            self._set_status(message.error or "", style="bold red")
            return
        self.diff = message.diff
        self.show(message.diff, message.warnings)

    def show(self, diff: dict, warnings: list[str]) -> None:
        a, b = diff["a"], diff["b"]
        differences = diff["setup_differences"]
        device = "" if "device" in differences else f" on {a['device']}"
        status = plain(f"compared{device}: {len(differences)} setup difference{'s' * (len(differences) != 1)}")
        for warning in warnings:
            status.append_text(join("  ", plain("⚠ ", style="yellow"), warning))
        self.query_one("#compare-status", Static).update(status)

        # the run's state only where it is not "finished": on 80 columns both names must still fit
        setup = {"run": [plain("run", style="bold"), *(plain(self._shown(side["path"]) + (
            "" if side["status"] == "finished" else f" ({side['status']})"), style="bold") for side in (a, b))]}
        for key, (left, right) in differences.items():
            setup[key] = [plain(key), plain(left), plain(right)]
        if not differences:
            setup["same"] = [plain("same setup"), plain(""), plain("")]
        fill_table(self.query_one("#compare-setup", DataTable), SETUP_COLUMNS, setup)

        figures = {}
        for row in diff["rows"]:
            unit = row["unit"]
            cells = [row["label"]]
            for side in ("measured", "predicted"):
                values = row[side]
                cells += [format_value(values[0], unit), format_value(values[1], unit),
                          delta_text(difference(*values), unit)]
            figures[row["key"]] = [plain(c, justify="left" if i == 0 else "right") for i, c in enumerate(cells)]
        table = self.query_one("#compare-figures", DataTable)
        fill_table(table, FIGURE_COLUMNS, figures)
        self.add_class("-compared")
        table.focus()

    def _set_status(self, text: str, style: str = "") -> None:
        self.query_one("#compare-status", Static).update(plain(text, style=style))

    def cell_text(self, table: str, row: str, column: int | str) -> str:
        """Plain text of one cell of ``#compare-setup`` or ``#compare-figures`` (tests read through this)."""
        data = self.query_one(f"#compare-{table}", DataTable)
        if isinstance(column, int):
            return data.get_row(row)[column].plain
        return str(data.get_cell(row, column))

    def action_pick(self) -> None:
        """Show the picker again (folded away on a short terminal once runs are compared)."""
        self.remove_class("-compared")
        self.query_one("#compare-files").focus()

    def action_close(self) -> None:
        self.app.pop_screen()
