"""The Textual app: `MfutopApp` and its panels (one module per widget, styles in mfutop.tcss)."""

from tui.app.app import MfutopApp

__all__ = ["MfutopApp"]
