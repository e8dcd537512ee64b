"""The job store behind a guard against storage faults (disk full, I/O errors): :class:`StoreGuard`
retries a failed write with backoff, records what went wrong in :class:`RunnerHealth`, and keeps a job
failure in memory when even recording it fails, writing it once the store works again."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sfumato.server.errors import one_line
from sfumato.server.health import STORAGE_ERRORS, RunnerHealth, StorageFault
from sfumato.server.store import JobStore

log = logging.getLogger("sfumato.server")


class StoreGuard:
    """Guarded writes to ``store``: ``retry_delays_s`` are the waits between tries (then
    :class:`StorageFault`); ``stop`` cuts the waits short when the server stops; ``ttl_s``: how long a
    failed job is kept."""

    def __init__(self, store: JobStore, health: RunnerHealth, stop: threading.Event, *, ttl_s: float,
                 retry_delays_s: tuple[float, ...]) -> None:
        self.store = store
        self.health = health
        self.stop = stop
        self.ttl_s = ttl_s
        self.retry_delays_s = tuple(retry_delays_s)
        self.needs_recover = False
        self._unsaved: dict[str, str] = {}  # job id -> failure the store could not record yet
        self._lock = threading.Lock()

    def write(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``fn(*args, **kw)`` (a store operation), retried with backoff on storage errors; raises
        :class:`StorageFault` once every try failed (at once when the server stops)."""
        delays = self.retry_delays_s
        for i in range(len(delays) + 1):
            try:
                out = fn(*args, **kw)
            except STORAGE_ERRORS as e:
                self.health.storage_failed(what, e)
                log.warning("%s failed (try %d of %d): %s", what, i + 1, len(delays) + 1, one_line(e))
                if i == len(delays) or self.stop.wait(delays[i]):
                    raise StorageFault(what, e) from e
            else:
                self.health.storage_ok()
                return out
        raise AssertionError("unreachable")

    def read(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Like :meth:`write` for a read: retried, but its success says nothing about writes."""
        for i, delay in enumerate((*self.retry_delays_s, None)):
            try:
                return fn(*args)
            except STORAGE_ERRORS as e:
                self.health.storage_failed(what, e)
                if delay is None or self.stop.wait(delay):
                    raise StorageFault(what, e) from e
                log.warning("%s failed (try %d): %s", what, i + 1, one_line(e))
        raise AssertionError("unreachable")

    def probe(self, folder: Path) -> bool:
        """Whether the data ``folder`` and the job database can be written again (a small file written,
        synced and removed, a one-row transaction); clears the storage error in effect when they can."""
        try:
            p = folder / ".sfumato-probe"
            try:
                with open(p, "wb") as f:
                    f.write(b"\0" * 4096)
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                p.unlink(missing_ok=True)
            self.store.probe()
        except STORAGE_ERRORS as e:
            self.health.storage_failed("checking that the data folder can be written", e)
            return False
        self.health.storage_ok()
        return True

    def backoff(self, failures: int) -> float:
        """The wait after ``failures`` (>= 1) failed tries in a row."""
        d = self.retry_delays_s
        return d[min(failures, len(d)) - 1] if d else 1.0

    def fail_job(self, job_id: str, reason: str) -> None:
        """Fail a job with ``reason``; when the store cannot record it, keep it in memory (the API shows
        it) until :meth:`flush` can. Never raises."""
        try:
            self.write(f"recording the failure of job {job_id}", self.store.fail_job, job_id, reason, self.ttl_s)
            return
        except StorageFault as e:
            log.error("job %s failed (%s) and the failure could not be saved (%s); keeping it in memory",
                      job_id, reason, e)
        except Exception:  # the failure handler never takes a worker down
            log.exception("could not record the failure of job %s", job_id)
        with self._lock:
            self._unsaved[job_id] = reason

    def recover(self, job_id: str | None = None) -> tuple[int, int] | None:
        """:meth:`JobStore.recover` once; ``None`` (and retried by :meth:`flush`) while the store cannot
        be written, so a server started on a full disk still starts."""
        try:
            counts = self.store.recover(job_id)
        except STORAGE_ERRORS as e:
            self.health.storage_failed("re-queueing the jobs interrupted by the last stop", e)
            self.needs_recover = self.needs_recover or job_id is None
            return None
        if job_id is None:
            self.needs_recover = False
        return counts

    def flush(self) -> bool:
        """Re-queue interrupted jobs if that is still pending and write the failures kept in memory;
        ``False`` while the store still cannot be written."""
        if self.needs_recover and self.recover() is None:
            return False
        pending = self.unsaved()
        for job_id, reason in pending.items():
            try:
                self.store.fail_job(job_id, reason, self.ttl_s)
            except STORAGE_ERRORS as e:
                self.health.storage_failed(f"recording the failure of job {job_id}", e)
                return False
            self.forget(job_id)
            log.info("saved the failure of job %s", job_id)
        if pending:
            self.health.storage_ok()
        return True

    def unsaved(self) -> dict[str, str]:
        """Job failures kept in memory because the store could not record them: ``job id -> reason``."""
        with self._lock:
            return dict(self._unsaved)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._unsaved.pop(job_id, None)


def lock_data_dir(root: Path) -> IO[str] | None:
    """Two servers on one data folder would re-queue each other's running jobs and delete each other's
    uploads: hold an exclusive lock on ``server.lock`` (released by the OS even on ``kill -9``); returns
    the open lock file (closing it releases the lock), ``None`` where the OS has no advisory locks."""
    try:
        import fcntl
    except ModuleNotFoundError:  # not POSIX: no advisory locks; one server per folder is then on trust
        return None
    f = open(root / "server.lock", "a+")  # noqa: SIM115 (held for the server's lifetime)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RuntimeError(f"another sfumato server is using {root}; stop it or give this one another "
                           "--data-dir") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")  # for the admin only: a full disk must not stop the server starting
        f.flush()
    except OSError as e:
        log.warning("could not write the process id into %s: %s", f.name, one_line(e))
    return f
