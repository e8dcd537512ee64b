"""How the server's storage and worker threads are doing: storage errors in one line (disk full or not),
free disk of the data folder, and :class:`RunnerHealth`, what ``GET /v1/health`` reports.

A full disk shows up as ``OSError`` ``ENOSPC``/``EDQUOT`` from file writes and as SQLite's
``database or disk is full`` (``SQLITE_FULL``) or ``disk I/O error`` (``SQLITE_IOERR``, when the WAL
cannot grow) from the job database; :func:`is_disk_full` recognises all of them, checking the free space
for the ambiguous I/O error. Messages never carry a file path (health is readable without a token).
"""

from __future__ import annotations

import errno
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)
"""What a failed write of results or of the job database raises."""

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_SQLITE = ("database or disk is full", "sqlite_full")

_JOB_ID = re.compile(r"\bjob [0-9a-f]{32}\b")

FULL_BELOW = 1024 * 1024
"""Free bytes under which an ambiguous write error (SQLite's ``disk I/O error``) is taken for a full disk."""


class StorageFault(Exception):
    """A store write still failed after every retry; ``what`` was being saved, ``cause`` is the last error."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what}: {storage_message(cause)}")
        self.what = what
        self.cause = cause


_FAULT_ERRNOS = _FULL_ERRNOS | {errno.EIO, errno.EROFS}


def storage_cause(e: BaseException) -> BaseException | None:
    """The storage fault behind ``e`` (itself or an exception it was raised from, e.g. a one-line output
    error wrapping ``ENOSPC``): an ``OSError`` of a full, failing or read-only disk, or an SQLite error;
    ``None`` when ``e`` is not about storage (a missing file or a bad image is not)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, StorageFault):
            return cur.cause
        if isinstance(cur, sqlite3.Error) or (isinstance(cur, OSError) and cur.errno in _FAULT_ERRNOS):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def disk_free(path: Path) -> int | None:
    """Free bytes for unprivileged writers on the file system of ``path`` (``None`` if unknown)."""
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return None


def is_disk_full(e: BaseException, path: Path | None = None, min_free_bytes: int = 0) -> bool:
    """Whether ``e`` means the disk (or quota) is full. SQLite's generic ``disk I/O error`` counts when
    the data folder ``path`` has less than ``min_free_bytes`` (at least one byte) free."""
    if isinstance(e, StorageFault):
        return is_disk_full(e.cause, path, min_free_bytes)
    if isinstance(e, OSError):
        return e.errno in _FULL_ERRNOS
    if isinstance(e, sqlite3.Error):
        text = f"{e} {getattr(e, 'sqlite_errorname', '')}".lower()
        if any(s in text for s in _FULL_SQLITE):
            return True
        if "disk i/o error" in text or "sqlite_ioerr" in text:
            free = disk_free(path) if path is not None else None
            return free is not None and free < max(1, min_free_bytes)
    return False


def storage_reason(e: BaseException) -> str:
    """What the system said about a storage error, without file paths (``"No space left on device"``,
    ``"database or disk is full"``)."""
    if isinstance(e, StorageFault):
        return storage_reason(e.cause)
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return " ".join(str(e).split()) or type(e).__name__


def storage_message(e: BaseException, path: Path | None = None) -> str:
    """A one-line description of a storage error without file paths: ``"the disk is full (No space left
    on device)"``, ``"the job database could not be written (disk I/O error)"``, ``"storage error
    (Permission denied)"``. SQLite's I/O error counts as a full disk when the data folder ``path`` has
    under :data:`FULL_BELOW` free (a full disk shows up that way when the WAL cannot grow)."""
    if isinstance(e, StorageFault):
        return storage_message(e.cause, path)
    reason = storage_reason(e)
    if is_disk_full(e, path, FULL_BELOW):
        return f"the disk is full ({reason})"
    if isinstance(e, OSError):
        return f"storage error ({reason})"
    if isinstance(e, sqlite3.Error):
        return f"the job database could not be written ({reason})"
    return reason


@dataclass
class RunnerHealth:
    """Thread-safe record of the runner's troubles: the storage error now in effect (cleared by the next
    successful store operation), the last error ever seen and when, and worker threads that died."""

    data_dir: Path | None = None
    storage_error: str | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    deaths: list[str] = field(default_factory=list)
    restarts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, message: str) -> None:
        with self._lock:
            self.last_error, self.last_error_at = _no_ids(message), time.time()

    def storage_failed(self, what: str, e: BaseException) -> None:
        msg = _no_ids(f"{what}: {storage_message(e, self.data_dir)}")
        with self._lock:
            self.storage_error = msg
            self.last_error, self.last_error_at = msg, time.time()

    def storage_ok(self) -> None:
        if self.storage_error is not None:
            with self._lock:
                self.storage_error = None

    def died(self, thread: str, e: BaseException | None) -> None:
        what = f"{type(e).__name__}: {' '.join(str(e).split())}" if e is not None else "stopped"
        msg = f"worker {thread} died ({what})"
        with self._lock:
            self.deaths.append(msg)
            self.last_error, self.last_error_at = msg, time.time()

    def report(self, *, alive: int, workers: int, free_bytes: int | None, min_free_bytes: int,
               unsaved_failures: int, jobs_error: str | None) -> dict[str, Any]:
        """The health fields: ``status`` (``ok``, ``degraded``: serving with a problem, ``down``: no live
        worker), the ``problems`` in one line each, and the worker, disk and storage details."""
        problems = []
        if alive < workers:
            problems.append(f"{workers - alive} of {workers} worker thread(s) dead"
                            + (f"; last: {self.deaths[-1]}" if self.deaths else "") + "; the janitor restarts it")
        if self.storage_error:
            problems.append(self.storage_error)
        disk_ok = free_bytes is None or free_bytes >= min_free_bytes
        if not disk_ok:
            problems.append(f"the data folder's disk has {_mib(free_bytes)} free, under the {_mib(min_free_bytes)} "
                            "this server needs; new jobs are refused until space is freed")
        if jobs_error:
            problems.append(jobs_error)
        if unsaved_failures:
            problems.append(f"{unsaved_failures} failed job(s) not yet saved to the job database")
        status = "down" if alive == 0 else ("degraded" if problems else "ok")
        return {
            "status": status, "problems": problems,
            "worker": {"alive": alive, "workers": workers, "restarts": self.restarts,
                       "storage_error": self.storage_error, "last_error": self.last_error,
                       "last_error_at": self.last_error_at},
            "disk": {"free_bytes": free_bytes, "min_free_bytes": min_free_bytes, "ok": disk_ok},
            "unsaved_failures": unsaved_failures,
        }


def _no_ids(message: str) -> str:
    """``message`` without job ids (health is readable without a token; the log keeps them)."""
    return _JOB_ID.sub("a job", message)


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1024 * 1024):.0f} MiB"
