"""The `mfutop` console script: Typer commands, each registered from its own module.

Command modules import torch lazily inside their functions; this file and
``--help`` never do.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from tui.cli_support import USER_ERROR_EXIT, emit_json
from tui.run_options import MODEL_PARAMS, RUN_PARAMS, run_options
from tui import cmd_app, cmd_calibrate, cmd_compare, cmd_estimate, cmd_gpus, cmd_ladder, cmd_plan, cmd_profile, cmd_remote

app = typer.Typer(
    name="mfutop",
    help="Terminal profiler for GPT training: what the hardware promises, what the math predicts, what the GPU does.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help text: rich markup parsing costs ~60 ms per --help
)

for module in (cmd_app, cmd_calibrate, cmd_estimate, cmd_gpus, cmd_plan, cmd_profile, cmd_ladder, cmd_remote, cmd_compare):
    module.register(app)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"mfutop {version('mfutop')}")
        except PackageNotFoundError:
            typer.echo("mfutop (not installed: run pip install -e .)")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
@run_options(*MODEL_PARAMS, *RUN_PARAMS)
def main(
    ctx: typer.Context,
    opts: dict,
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the installed version and exit."),
) -> None:
    """With no subcommand: open the app on the detected device (the run options as for `mfutop tui`)."""
    if ctx.invoked_subcommand is None:
        cmd_app.open_default_app(opts)


def run() -> None:
    """Entry point: usage errors (a bad option value, an unknown flag) also get one line and exit 2."""
    from tui.cli_support import output

    output.json_errors = any(arg in ("--json", "--jsonl") for arg in sys.argv[1:])
    try:
        code = app(standalone_mode=False)
    except TyperException as exc:
        code = exc.exit_code if exc.exit_code else USER_ERROR_EXIT
        if output.json_errors:
            emit_json({"error": exc.format_message(), "exit_code": code})
        typer.echo(f"mfutop: error: {exc.format_message()}", err=True)
        sys.exit(code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("mfutop: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
