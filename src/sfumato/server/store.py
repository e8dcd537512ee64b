"""The job queue's storage: jobs and their images in SQLite (WAL journal, ``synchronous=FULL``).

One short-lived connection per operation (thread-safe); every write is one ``BEGIN IMMEDIATE``
transaction, so a job (its options and every uploaded image) is committed before ``POST /v1/jobs``
answers and each image's state changes atomically. :meth:`JobStore.recover` puts what a crash left
``running`` back in the queue.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sfumato.server.errors import QueueFull
from sfumato.server.modes import JobOptions

JOB_STATES = ("queued", "running", "done", "failed")

DEFAULT_IMAGE_SECONDS = 30.0
"""Time per image assumed for ETAs and ``Retry-After`` before any image has been processed."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  mode TEXT NOT NULL,
  options TEXT NOT NULL,
  error TEXT,
  created REAL NOT NULL,
  started REAL,
  finished REAL,
  expires REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, created);
CREATE TABLE IF NOT EXISTS images (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  input_file TEXT NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  format TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  status TEXT NOT NULL,
  error TEXT,
  report_error TEXT,
  started REAL,
  finished REAL,
  seconds REAL,
  attempts INTEGER NOT NULL DEFAULT 0,
  files TEXT NOT NULL DEFAULT '{}',
  manifest TEXT,
  PRIMARY KEY (job_id, idx)
);
"""


class JobStore:
    """The SQLite side of the queue. One short-lived connection per operation (thread-safe); every write
    is one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        c = self._connect()
        try:
            c.executescript(_SCHEMA)  # idempotent
        finally:
            c.close()
        # Held open, unused, for the store's life: while a connection is open SQLite keeps the WAL and its
        # index (-wal, -shm) instead of deleting them at the last close, so on a full disk reads still
        # work (re-creating those files would fail with "disk I/O error") and the API can say what failed.
        self._keeper: sqlite3.Connection | None = self._connect(check_same_thread=False)

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    def _connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=check_same_thread)
        c.row_factory = sqlite3.Row
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA foreign_keys=ON")
        c.execute("PRAGMA busy_timeout=30000")
        return c

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        c = self._connect()
        try:
            c.execute("BEGIN IMMEDIATE")
            yield c
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            c.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        c = self._connect()
        try:
            yield c
        finally:
            c.close()

    # -- submission
    def insert_job(self, job_id: str, opts: JobOptions, images: list[dict[str, Any]], *, max_queue: int,
                   retry_after: Callable[[sqlite3.Connection], int]) -> None:
        now = time.time()
        with self._tx() as c:
            waiting = c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if waiting >= max_queue:
                raise QueueFull(retry_after(c), max_queue)
            c.execute("INSERT INTO jobs (id, status, mode, options, created) VALUES (?, 'queued', ?, ?, ?)",
                      (job_id, opts.mode, json.dumps(opts.to_dict()), now))
            for i, im in enumerate(images):
                c.execute("INSERT INTO images (job_id, idx, id, display_name, input_file, width, height, format, "
                          "bytes, status, files) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                          (job_id, i, im["id"], im["display_name"], im["input_file"], im["width"], im["height"],
                           im["format"], im["bytes"], json.dumps({"input": im["input_file"]})))

    def queued_count(self) -> int:
        with self.read() as c:
            return int(c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0])

    def counts(self) -> dict[str, int]:
        with self.read() as c:
            rows = c.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        out = dict.fromkeys(JOB_STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    # -- reading
    def job(self, job_id: str) -> dict[str, Any] | None:
        with self.read() as c:
            row = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            imgs = c.execute("SELECT * FROM images WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall()
            ahead = None
            if row["status"] == "queued":
                ahead = c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND created < ?",
                                  (row["created"],)).fetchone()[0]
            remaining_ahead = c.execute(
                "SELECT COUNT(*) FROM images i JOIN jobs j ON j.id = i.job_id WHERE i.status IN ('queued', "
                "'running') AND j.status IN ('queued', 'running') AND j.id != ? AND (j.status = 'running' OR "
                "j.created < ?)", (job_id, row["created"])).fetchone()[0] if row["status"] == "queued" else 0
        job = dict(row)
        job["images"] = [dict(r) for r in imgs]
        job["queue_position"] = ahead
        job["images_ahead"] = int(remaining_ahead)
        return job

    def avg_image_seconds(self, c: sqlite3.Connection | None = None) -> float | None:
        q = "SELECT AVG(seconds) FROM (SELECT seconds FROM images WHERE status = 'done' ORDER BY finished DESC LIMIT 20)"
        if c is not None:
            v = c.execute(q).fetchone()[0]
        else:
            with self.read() as c2:
                v = c2.execute(q).fetchone()[0]
        return float(v) if v is not None else None

    # -- worker side
    def recover(self, job_id: str | None = None) -> tuple[int, int]:
        """Put jobs and images left ``running`` (crash, kill, a worker thread that died) back in the queue,
        all of them or those of ``job_id``; returns how many jobs and images. Their attempts are kept, so
        an image that keeps killing the server ends failed (:data:`sfumato.server.jobs.MAX_ATTEMPTS`)."""
        where, args = ("", ()) if job_id is None else (" AND job_id = ?", (job_id,))
        with self._tx() as c:
            n = c.execute("UPDATE images SET status = 'queued', started = NULL WHERE status = 'running'" + where,
                          args).rowcount
            j = c.execute("UPDATE jobs SET status = 'queued' WHERE status = 'running'"
                          + where.replace("job_id", "id"), args).rowcount
        return j, n

    def probe(self) -> None:
        """A one-row write: raises the storage error while the database cannot be written."""
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?)", (str(time.time()),))

    def claim_next(self) -> str | None:
        with self._tx() as c:
            row = c.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            c.execute("UPDATE jobs SET status = 'running', started = COALESCE(started, ?) WHERE id = ?",
                      (time.time(), row["id"]))
            return str(row["id"])

    def start_image(self, job_id: str, idx: int) -> int | None:
        """Mark an image running; returns its attempt number (``None`` if the job is gone)."""
        with self._tx() as c:
            cur = c.execute("UPDATE images SET status = 'running', started = ?, attempts = attempts + 1 "
                            "WHERE job_id = ? AND idx = ?", (time.time(), job_id, idx))
            if cur.rowcount == 0:
                return None
            return int(c.execute("SELECT attempts FROM images WHERE job_id = ? AND idx = ?",
                                 (job_id, idx)).fetchone()[0])

    def requeue_image(self, job_id: str, idx: int) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'queued', started = NULL, attempts = MAX(attempts - 1, 0) "
                      "WHERE job_id = ? AND idx = ?", (job_id, idx))
            c.execute("UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'running'", (job_id,))

    def finish_image(self, job_id: str, idx: int, *, files: dict[str, str], manifest: dict[str, Any],
                     seconds: float, report_error: str | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'done', error = NULL, finished = ?, seconds = ?, files = ?, "
                      "manifest = ?, report_error = ? WHERE job_id = ? AND idx = ?",
                      (time.time(), seconds, json.dumps(files), json.dumps(manifest), report_error, job_id, idx))

    def fail_image(self, job_id: str, idx: int, message: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'failed', error = ?, finished = ? WHERE job_id = ? AND idx = ?",
                      (message, time.time(), job_id, idx))

    def fail_job(self, job_id: str, message: str, ttl_s: float) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'failed', error = ?, finished = ? WHERE job_id = ? AND status "
                      "IN ('queued', 'running')", (message, now, job_id))
            c.execute("UPDATE jobs SET status = 'failed', error = ?, finished = ?, expires = ? WHERE id = ?",
                      (message, now, now + ttl_s, job_id))

    def finish_job(self, job_id: str, ttl_s: float) -> str | None:
        """Close a job whose images are all finished: ``done`` if any image succeeded, else ``failed``."""
        now = time.time()
        with self._tx() as c:
            rows = c.execute("SELECT status FROM images WHERE job_id = ?", (job_id,)).fetchall()
            states = [r[0] for r in rows]
            if not states or any(s in ("queued", "running") for s in states):
                return None
            status = "done" if "done" in states else "failed"
            error = None if status == "done" else "every image failed; see each image's error"
            c.execute("UPDATE jobs SET status = ?, error = ?, finished = ?, expires = ? WHERE id = ?",
                      (status, error, now, now + ttl_s, job_id))
            return status

    def delete_job(self, job_id: str) -> bool:
        with self._tx() as c:
            return c.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    def expired(self, now: float) -> list[str]:
        with self.read() as c:
            return [r[0] for r in c.execute("SELECT id FROM jobs WHERE expires IS NOT NULL AND expires < ?", (now,))]

    def all_ids(self) -> set[str]:
        with self.read() as c:
            return {r[0] for r in c.execute("SELECT id FROM jobs")}

    def running_remaining(self, c: sqlite3.Connection) -> list[int]:
        rows = c.execute("SELECT j.id, COUNT(i.idx) FROM jobs j LEFT JOIN images i ON i.job_id = j.id AND i.status "
                         "IN ('queued', 'running') WHERE j.status = 'running' GROUP BY j.id").fetchall()
        return [int(r[1]) for r in rows]

    def retry_after(self, c: sqlite3.Connection | None = None) -> int:
        """Seconds until a queue slot is likely to free: the shortest running job's remaining images."""
        if c is None:
            with self.read() as c2:
                return self.retry_after(c2)
        avg = self.avg_image_seconds(c) or DEFAULT_IMAGE_SECONDS
        rem = self.running_remaining(c)
        est = avg * (min(rem) if rem else 1)
        return int(min(600, max(1, math.ceil(est))))
