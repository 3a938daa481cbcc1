"""The `mfutop` console script: Typer commands, each registered from its own module.

Command modules import torch lazily inside their functions; this file and
``--help`` never do.
"""

from __future__ import annotations

import typer

from tui import cmd_app, cmd_estimate, cmd_ladder, cmd_profile, cmd_remote

app = typer.Typer(
    name="mfutop",
    help="Terminal profiler for GPT training: what the hardware promises, what the math predicts, what the GPU does.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (cmd_estimate, cmd_profile, cmd_ladder, cmd_app, cmd_remote):
    module.register(app)


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context) -> None:
    """With no subcommand: open the app on the detected device with a quick default model."""
    if ctx.invoked_subcommand is None:
        cmd_app.open_default_app()


def run() -> None:
    app()


if __name__ == "__main__":
    run()
