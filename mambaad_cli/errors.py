"""User-facing errors: the CLI prints their message as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (a missing file, an unknown option value, an unreadable image)."""
