"""Placeholder: its owner replaces this module."""

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the app."""
