"""The one error type of the data package."""

from mambaad_cli.errors import UserError


class DataError(UserError):
    """A dataset file or folder is missing, unreadable or inconsistent; the message names it."""
