"""Placeholder: its owner replaces this module."""

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the app."""


def open_default_app() -> None:
    """Opens the Textual app on the detected device."""
    raise typer.Exit(0)
