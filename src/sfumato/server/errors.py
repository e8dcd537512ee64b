"""Errors of the web server that a client should see (HTTP status + one-line message), and the one-line
form of any exception recorded for a job or an image."""

from __future__ import annotations


class JobError(Exception):
    """An error a client should see: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class QueueFull(JobError):
    def __init__(self, retry_after: int, max_queue: int) -> None:
        super().__init__(429, f"the queue is full ({max_queue} jobs waiting); retry in about {retry_after} s",
                         {"Retry-After": str(retry_after)})
        self.retry_after = retry_after


def one_line(e: BaseException) -> str:
    """``"ErrorType: message"`` on one line (the message's whitespace collapsed)."""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class DiskFull(JobError):
    """The data folder's disk is full, or too full to take a job (HTTP 507 Insufficient Storage)."""

    def __init__(self, detail: str) -> None:
        super().__init__(507, f"the server's disk is full ({detail}); nothing was stored. Try again later, or ask "
                              "the server's admin to free space in its data folder", {"Retry-After": "60"})


class StorageUnavailable(JobError):
    """The job store cannot be read or written right now (HTTP 503)."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, f"the server cannot use its storage right now ({detail}); try again in a minute",
                         {"Retry-After": "60"})
