"""`mfutop compare a.jsonl b.jsonl`: two recorded runs side by side (setup differences, then every figure).

The recordings are outside data: read through the validating reader (a bad line is skipped and
counted) and printed as plain text, never as markup. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tui.cli_support import emit_json, user_errors, warn


def print_diff(diff: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tui.app.comparison import change_text, format_value

    console = Console()
    a, b = diff["a"], diff["b"]
    console.print(Text(f"A: {a['path']} ({a['status']}, {a['device']})"))
    console.print(Text(f"B: {b['path']} ({b['status']}, {b['device']})"))
    if diff["setup_differences"]:
        setup = Table(title=Text("Setup differences"))
        for col in ("", "A", "B"):
            setup.add_column(col)
        for key, (left, right) in diff["setup_differences"].items():
            setup.add_row(Text(key), Text(str(left)), Text(str(right)))
        console.print(setup)
    else:
        console.print(Text("Same setup."))
    table = Table(title=Text("Figures (change = (B - A) / A; beyond ±25 %: B / A)"))
    for col in ("", "pred. A", "pred. B", "change", "meas. A", "meas. B", "change"):
        table.add_column(col, justify="left" if not col else "right", no_wrap=True)
    for row in diff["rows"]:
        unit = row["unit"]
        table.add_row(Text(row["label"]), *(Text(format_value(v, unit)) for v in row["predicted"]),
                      change_text(row["predicted_change"]), *(Text(format_value(v, unit)) for v in row["measured"]),
                      change_text(row["measured_change"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Adds `mfutop compare`."""

    @app.command("compare")
    def compare(
        a: Path = typer.Argument(..., help="A recorded run (--out, or `mfutop profile --jsonl > a.jsonl`)."),
        b: Path = typer.Argument(..., help="The run to compare it with."),
        json_: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    ) -> None:
        """Two recorded runs side by side: setup differences, then each figure predicted and measured."""
        from profiler.event_validation import SkipCounter
        from tui.event_sources import read_run_file
        from tui.run_diff import diff_runs, fold

        with user_errors():
            states = []
            for path in (a, b):
                skipped = SkipCounter()
                states.append(fold(read_run_file(path, skipped)))
                if skipped:
                    warn(f"{path}: {skipped.report()}")
        diff = diff_runs(a, states[0], b, states[1])
        if json_:
            emit_json(diff)
        else:
            print_diff(diff)
