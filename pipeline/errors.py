"""Exceptions of the training pipeline (pipeline/ must not import watcher/)."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for every error the pipeline raises on purpose."""


class DataValidationError(PipelineError, ValueError):
    """The training data is unusable; the message names file, column and row where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.file = file
        self.column = column
        self.row = row
        where = [
            part
            for part in (
                f"file {file!r}" if file is not None else "",
                f"column {column!r}" if column is not None else "",
                f"row {row}" if row is not None else "",
            )
            if part
        ]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class DataHashMismatchError(DataValidationError):
    """The data no longer hashes to the hash the run was triggered for."""

    def __init__(self, data_dir: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"data changed since the run was triggered: expected dataset hash {expected}, "
            f"found {actual}; refusing to train on different data",
            file=data_dir,
        )


class BadInputError(PipelineError, ValueError):
    """Bad user input (unknown model, version or run, bad option value)."""


class SettingError(BadInputError):
    """A pipeline setting that is unknown or contradicts another; ``key`` names it
    (``metric``, ``params.max_iter``) so each front end can prefix its own section."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}")


class BackendError(PipelineError):
    """MLflow (or another backend) failed or could not be reached."""
