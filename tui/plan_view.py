"""Text for a plan: one row's cells (shared by `mfutop plan` and the app's Plan screen) and the rich table.

Reads only the planner's rows (each a full ``predict()``); GiB (2^30) for memory.
Strings from outside (a model name from a config.json) go into ``Text``, never markup.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from estimator.units import fmt_bytes, fmt_pct, fmt_seconds

COLUMNS = ("#", "setup", "mem/GPU", "fits", "step", "tok/s", "MFU", "bubble", "exp. comm", "train time", "cost")


def _cost(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}"


def row_cells(row: dict) -> tuple[str, ...]:
    """One plan row as text, in ``COLUMNS`` order; "-" where a figure needs --tokens / --gpu-hour-cost."""
    return (
        str(row["rank"]), row["label"], fmt_bytes(row["memory_bytes"]), "yes" if row["fits"] else "NO",
        fmt_seconds(row["step_time_s"]), f"{row['tokens_per_s']:,.0f}",
        fmt_pct(row["mfu"]) if row["mfu"] is not None else "n/a",
        fmt_pct(row["pp_bubble_fraction"], 0),
        fmt_seconds(row["exposed_comm_s"]), fmt_seconds(row["train_time_s"]) if row["train_time_s"] else "-",
        _cost(row["cost"]),
    )


def plan_title(plan: dict) -> str:
    batch = (f"global batch {plan['global_batch']} seqs" if plan["global_batch"] is not None
             else f"global batch ~{plan['global_batch_tokens']:,} tokens")
    return (f"{plan['model']} on {plan['gpus']} x {plan['gpu']}, seq-len {plan['seq_len']}, {batch}, "
            f"objective {plan['objective']}")


WIDE = 140  # columns at which the setup label fits in the table; narrower, it goes with the commands


def print_plan(plan: dict, console: Console | None = None) -> None:
    console = console or Console()
    rows = plan["rows"]
    wide = console.width >= WIDE
    keep = [i for i, name in enumerate(COLUMNS)
            if (name != "setup" or wide) and (name != "fits" or not all(r["fits"] for r in rows))
            and (name != "train time" or any(r["train_time_s"] for r in rows))
            and (name != "cost" or any(r["cost"] is not None for r in rows))]
    table = Table(title=Text(plan_title(plan)), title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  padding=(0, 1), collapse_padding=True, show_edge=False)
    for i in keep:
        table.add_column(COLUMNS[i], justify="left" if COLUMNS[i] in ("setup", "fits") else "right",
                         no_wrap=COLUMNS[i] != "setup")
    for row in rows:
        cells = row_cells(row)
        table.add_row(*(Text(cells[i]) for i in keep))
    console.print(table)
    if all(r["fits"] for r in rows) and rows:
        console.print(Text(f"Every row fits in {fmt_bytes(rows[0]['memory_limit_bytes'])} per GPU."))
    console.print(Text("setup: TP, PP, DP (+SP: sequence parallel), Z: ZeRO stage, recompute, precision, "
                       "micro-batch x grad-accum; exp. comm: TP + pipeline + DP communication not hidden"))
    if plan["winner_reason"]:
        console.print(Text(f"Why #1: {plan['winner_reason']}"))
    console.print(Text("Setups, and the mfutop estimate command that reproduces each row:"))
    for row in rows:
        console.print(Text(f"  #{row['rank']} {row['label']}"))
        console.print(Text(f"     {row['command'] or 'n/a (model not nameable on the command line)'}"), soft_wrap=True)
    c = plan["candidates"]
    console.print(Text(f"Searched {c['enumerated']:,} candidates: {c['memory_checked']:,} memory checks, "
                       f"{c['fitting']:,} fit and were timed, {c['predicted']:,} predicted in full "
                       f"({plan['elapsed_s']:.2f} s)."))
    console.print(Text("Not searched (the estimator does not model them):"))
    for gap in plan["gaps"]:
        console.print(Text(f"  - {gap}"))
