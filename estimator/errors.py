"""The one exception type for mistakes a user can fix.

The CLI prints its message on one line and exits with code 2; nothing else
in the package validates with ``assert``.
"""


class ConfigError(ValueError):
    """A bad model, hardware or setup value, with a message a person can act on."""
