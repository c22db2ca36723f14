"""The one error family of steer: every user-facing failure is a ``SteerError``.

The CLI shows ``str(err)`` as one red line and exits with ``err.exit_code``; a traceback is
shown only when ``STEER_DEBUG=1``.
"""

from __future__ import annotations


class SteerError(Exception):
    """Base class for errors a user can act on; the message is one line saying what and where."""

    exit_code: int = 1


class UsageError(SteerError):
    """Bad input from the user (an attribute, a flag value, a recipe key): exit code 2.

    ``field`` names the input at fault where there is one (``attributes``, ``max_tokens``), so the
    server can report it as the request parameter.
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigError(UsageError):
    """An invalid recipe or override; the message names the key path."""


class TemplateError(SteerError):
    """A chat template that cannot carry steering, or that fails to render (a model's or a request's
    fault, so exit code 2 like other bad input)."""

    exit_code = 2


class DataError(SteerError):
    """A malformed row; the message names the file, the row and the column."""

    exit_code = 2

    def __init__(self, reason: str, detail: str, *, where: str = "", row: int | None = None,
                 column: str | None = None) -> None:
        self.reason, self.detail, self.where, self.row, self.column = reason, detail, where, row, column
        loc = where + (f":{row}" if row is not None else "")
        col = f" column {column!r}:" if column else ""
        super().__init__(f"{loc}:{col} {detail}" if loc else f"{col.strip()} {detail}".strip())

    def __reduce__(self) -> tuple:  # picklable: rejects come back from data-preparation workers
        return (_data_error, (self.reason, self.detail, self.where, self.row, self.column))

    def at(self, where: str, row: int) -> DataError:
        """The same error, placed at a file and row."""
        return DataError(self.reason, self.detail, where=where, row=row, column=self.column)


def _data_error(reason: str, detail: str, where: str, row: int | None, column: str | None) -> DataError:
    return DataError(reason, detail, where=where, row=row, column=column)
