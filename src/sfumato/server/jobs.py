"""The web server's job queue: persistent in SQLite, processed by worker threads, losing nothing.

Guarantees:

* **Durable.** A job (its options and every uploaded image) is on disk and committed to SQLite (WAL
  journal, ``synchronous=FULL``) before ``POST /v1/jobs`` answers. Each image's state changes in its own
  transaction.
* **Resumable.** At start-up, jobs and images left ``running`` by a crash or ``kill -9`` go back to
  ``queued``: an interrupted image is redone from its original upload, finished images of the job are
  kept as they are. An image interrupted :data:`MAX_ATTEMPTS` times is marked failed (it would otherwise
  crash the server for ever).
* **Survives storage faults.** A failed write of results or of the job database (disk full, I/O error)
  is retried with backoff (:attr:`JobRunner.retry_delays_s`); then the image or job is failed with the
  reason, and when even that cannot be written the failure is kept in memory, shown by the API and
  written once the store works again. Worker threads never die of it; a worker that dies anyway is
  reported by ``/v1/health`` and restarted by the janitor, its job going back to the queue.
* **Kept until the TTL.** A finished job's files stay until ``finished + ttl_hours``; a janitor thread
  deletes expired jobs (rows and files) and abandoned upload folders.
* **Runs anywhere.** Images run in the server's threads or as Ray tasks (:mod:`sfumato.cluster.executor`);
  the store stays the source of truth either way.
* **Bounded.** At most ``workers`` jobs run at once (threads: PyTorch releases the GIL, so the HTTP
  event loop stays responsive); at most ``max_queue`` jobs wait — beyond it :class:`QueueFull` carries a
  ``Retry-After`` estimate.
* **Safe names.** Stored names are UUIDs; the uploader's file name is kept only as sanitised display
  metadata. Uploads are content-sniffed and fully decoded with :func:`sfumato.io.load_image` whatever
  their extension (:func:`sfumato.server.uploads.store_upload`).

The storage is :class:`sfumato.server.store.JobStore`, the modes :data:`sfumato.server.modes.MODES`, the
upload checks :mod:`sfumato.server.uploads`, the views and zips :mod:`sfumato.server.results`; this module
is the :class:`JobRunner` that ties them together.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sfumato.cluster.executor import make_executor
from sfumato.server import eta, results
from sfumato.server.errors import DiskFull, JobError, QueueFull, StorageUnavailable, one_line
from sfumato.server.guard import StoreGuard, lock_data_dir
from sfumato.server.health import (
    STORAGE_ERRORS,
    RunnerHealth,
    StorageFault,
    disk_free,
    is_disk_full,
    storage_cause,
    storage_message,
    storage_reason,
)
from sfumato.server.modes import MODES, JobOptions, ModeCall
from sfumato.server.settings import ServerSettings
from sfumato.server.store import JobStore
from sfumato.server.uploads import remove_orphan_dirs, store_upload

log = logging.getLogger("sfumato.server")

MAX_ATTEMPTS = 3
"""An image whose processing was interrupted (server crash, kill) this many times is marked failed."""

_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class _Interrupted(Exception):
    """Raised inside a running image when the server stops; the image goes back to the queue."""


class _Cancelled(Exception):
    """Raised inside a running image when its job was deleted."""


class JobRunner:
    """Owns the data folder, the :class:`JobStore`, the worker threads and the janitor thread."""

    retry_delays_s: tuple[float, ...] = (0.5, 2.0, 5.0)
    """Waits between the tries of a store write that failed (disk full, I/O error); then it gives up."""
    supervise_interval_s: float = 5.0
    """How often the janitor replaces dead worker threads."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.root = settings.data_dir
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.root / "jobs.sqlite3")
        self.executor = make_executor(settings)
        self.n_workers = settings.workers if settings.workers is not None else self.executor.default_workers(settings)
        self.ttl_s = settings.ttl_hours * 3600.0
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._cancelled: set[str] = set()
        self._active: set[str] = set()
        self._live: dict[tuple[str, int], eta.ImageClock] = {}  # the running images' stages
        self.board = eta.EtaBoard()  # the ETAs shown, kept monotone
        self.history = eta.StageHistory()  # stage times of finished images: the next ETAs
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._validate = threading.BoundedSemaphore(2)  # full decodes at once (memory bound)
        self._cache: dict[str, Any] = {}  # per-server objects reused by jobs (anchor sets)
        self._lockfile: IO[str] | None = None
        self.health = RunnerHealth(data_dir=self.root)
        self.guard = StoreGuard(self.store, self.health, self._stop, ttl_s=self.ttl_s,
                                retry_delays_s=self.retry_delays_s)
        self._next_worker = 0

    # -- life cycle
    def start(self) -> None:
        """Lock the data folder (one server per folder), re-queue what a crash interrupted, start the threads."""
        self._lockfile = lock_data_dir(self.root)
        self.executor.start()
        counts = self.guard.recover()
        if counts and counts[0]:
            log.warning("resuming %d interrupted job(s) from the previous run (%d image(s) to redo)", *counts)
        try:
            self._remove_orphans(min_age_s=0.0)
        except STORAGE_ERRORS as e:
            self.health.storage_failed("removing abandoned uploads", e)
        for _ in range(self.n_workers):
            self._start_worker()
        t = threading.Thread(target=self._janitor, name="sfumato-janitor", daemon=True)
        t.start()
        self._threads.append(t)

    def _start_worker(self) -> None:
        t = threading.Thread(target=self._worker, name=f"sfumato-worker-{self._next_worker}", daemon=True)
        self._next_worker += 1
        t.start()
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()] + [t]
        self._threads.append(t)

    def workers_alive(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers if w.is_alive())

    def supervise(self) -> int:
        """Replace worker threads that died (reported by health meanwhile); returns how many."""
        if self._stop.is_set():
            return 0
        dead = self.n_workers - self.workers_alive()
        for _ in range(dead):
            log.error("a worker thread died; starting a new one")
            self._start_worker()
            self.health.restarts += 1
        return dead

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the workers: a running image is interrupted at its next progress step and re-queued."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        self.executor.stop()
        if not self._threads and self._lockfile is not None:
            self.store.close()
            self._lockfile.close()  # closing the descriptor releases the lock
            self._lockfile = None

    def idle(self) -> bool:
        """True when no worker is processing a job."""
        with self._lock:
            return not self._active

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- paths
    def job_dir(self, job_id: str) -> Path:
        if not _ID_RE.match(job_id):
            raise JobError(404, f"no job {job_id!r}: job ids are 32 hex digits")
        return self.jobs_dir / job_id

    def file_path(self, job: dict[str, Any], name: str) -> Path | None:
        """The stored file called ``name`` in ``job`` (only names the job recorded; never a client path)."""
        return results.file_path(self.jobs_dir, job, name)

    # -- submission
    def check_capacity(self) -> None:
        """Refuse a new job early: 507 when the data folder's disk is under ``min_free_bytes``, 429 when
        the queue is full."""
        free, need = self.disk_free(), self.settings.min_free_bytes
        if free is not None and free < need:
            raise DiskFull(f"{free / 2**20:.0f} MiB free; this server keeps at least {need / 2**20:.0f} MiB free")
        if self.store.queued_count() >= self.settings.max_queue:
            raise QueueFull(self.store.retry_after(), self.settings.max_queue)

    def http_error(self, e: BaseException) -> JobError | None:
        """The client's error for a storage fault behind ``e`` (507 when the disk is full, else 503), or
        ``None`` when ``e`` is not about storage."""
        cause = storage_cause(e)
        if cause is None:
            return None
        self.health.storage_failed("storing a request", cause)
        if is_disk_full(cause, self.root, self.settings.min_free_bytes):
            return DiskFull(storage_reason(cause))
        return StorageUnavailable(storage_message(cause, self.root))

    def new_job(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex
        d = self.jobs_dir / job_id
        (d / "in").mkdir(parents=True)
        (d / "out").mkdir()
        return job_id, d

    def store_upload(self, job_dir: Path, src: IO[bytes], display_name: str | None) -> dict[str, Any]:
        """One checked upload in ``job_dir/in`` (:func:`sfumato.server.uploads.store_upload` with this
        server's limits)."""
        return store_upload(job_dir, src, display_name, max_upload_bytes=self.settings.max_upload_bytes,
                            max_pixels=self.settings.max_pixels, decode_gate=self._validate)

    def enqueue(self, job_id: str, opts: JobOptions, images: list[dict[str, Any]]) -> None:
        try:
            self.store.insert_job(job_id, opts, images, max_queue=self.settings.max_queue,
                                  retry_after=self.store.retry_after)
        except BaseException:
            self.discard(job_id)
            raise
        self.wake()

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)

    def delete(self, job_id: str) -> bool:
        """Delete a job and its files; a running job stops at its next progress step."""
        self.job_dir(job_id)
        with self._lock:
            if job_id in self._active:
                self._cancelled.add(job_id)
        found = self.store.delete_job(job_id) or job_id in self.guard.unsaved()
        self.board.forget(job_id)
        self.guard.forget(job_id)
        self.discard(job_id)
        return found

    # -- views
    def describe(self, job_id: str, base_url: str = "") -> dict[str, Any] | None:
        self.job_dir(job_id)
        job = self.store.job(job_id)
        if job is None:
            return None
        return self.view(job, base_url)

    def view(self, job: dict[str, Any], base_url: str = "") -> dict[str, Any]:
        """The client's view of a stored job (:func:`sfumato.server.results.job_view`), with a failure
        the store could not record yet in place of its stored state."""
        reason = self.guard.unsaved().get(job["id"])
        if reason is not None:
            job = results.failed_in_memory(job, reason, self.ttl_s)
        o = json.loads(job["options"])
        return results.job_view(job, live=self._live, avg=self.store.avg_image_seconds(), n_workers=self.n_workers,
                                base_url=base_url, costs=self.costs(o["mode"], o["quality"]), board=self.board)

    def costs(self, mode: str, quality: str) -> eta.Costs:
        """The expected stage costs of an image of this mode and quality: the times of the images this
        server finished (:class:`sfumato.server.eta.StageHistory`), else the preset's prior."""
        return self.history.costs((mode, quality), results.expected_costs(mode, quality,
                                                                          effort_override=self.settings.effort_override))

    # -- zip
    def write_zip(self, job_id: str, dest: IO[bytes]) -> int:
        """Write every result of a finished image (protected file, manifest, AI views, report) into a zip
        with display names; returns how many files went in."""
        self.job_dir(job_id)
        job = self.store.job(job_id)
        if job is None:
            raise JobError(404, f"no job {job_id}; it was deleted or its results expired")
        return results.write_zip(self.jobs_dir, job, self.view(job), dest)

    def zip_file(self, job_id: str) -> IO[bytes]:
        """The job's zip in a temporary file (in memory up to 8 MiB), rewound."""
        return results.spooled_zip(lambda f: self.write_zip(job_id, f))

    # -- storage
    def disk_free(self) -> int | None:
        return disk_free(self.root)

    def health_report(self) -> dict[str, Any]:
        """What ``GET /v1/health`` reports (:meth:`RunnerHealth.report`), with the job counts."""
        try:
            counts, jobs_error = self.store.counts(), None
        except STORAGE_ERRORS as e:
            counts, jobs_error = None, f"the job database cannot be read: {storage_message(e, self.root)}"
        rep = self.health.report(alive=self.workers_alive(), workers=self.n_workers, free_bytes=self.disk_free(),
                                 min_free_bytes=self.settings.min_free_bytes,
                                 unsaved_failures=len(self.guard.unsaved()), jobs_error=jobs_error)
        return {**rep, "workers": self.n_workers, "jobs": counts, "executor": self.executor.name}

    # -- workers
    def _worker(self) -> None:
        me = threading.current_thread().name
        failures = 0
        job_id: str | None = None
        try:
            while not self._stop.is_set():
                try:
                    ready = self.guard.flush()
                    job_id = self.store.claim_next() if ready else None
                except STORAGE_ERRORS as e:
                    self.health.storage_failed("claiming the next job", e)
                    ready = False
                if not ready:  # the store is failing: wait, then try again
                    failures += 1
                    self._stop.wait(self.guard.backoff(failures))
                    continue
                failures = 0
                if job_id is None:
                    with self._wake:
                        self._wake.wait(timeout=1.0)
                    continue
                with self._lock:
                    self._active.add(job_id)
                try:
                    self._run_job(job_id)
                except _Interrupted:
                    return
                except StorageFault as e:
                    self.guard.fail_job(job_id, f"the server could not save this job's progress: "
                                                f"{storage_message(e, self.root)}; submit it again later")
                except Exception as e:  # a bug in the runner itself: log it loudly, fail the job, keep serving
                    log.exception("job %s crashed the worker", job_id)
                    self.health.error(f"job {job_id} crashed the worker: {one_line(e)}")
                    self.guard.fail_job(job_id, "internal error while running the job; see the server log")
                finally:
                    with self._lock:
                        self._active.discard(job_id)
                        self._cancelled.discard(job_id)
                job_id = None
        except BaseException as e:  # not an Exception: the thread ends; health shows it, the janitor replaces it
            log.critical("worker %s died", me, exc_info=True)
            self.health.died(me, e)
            if job_id is not None:  # its job goes back to the queue for the next worker
                if self.guard.recover(job_id) is None:
                    self.guard.fail_job(job_id, "the worker running this job stopped unexpectedly; submit it again")

    def _run_job(self, job_id: str) -> None:
        job = self.guard.read(f"reading job {job_id}", self.store.job, job_id)
        if job is None:
            return
        opts = JobOptions.from_dict(json.loads(job["options"]))
        mode = MODES[opts.mode]
        unavailable = mode.unavailable_message()
        if unavailable:
            self.guard.fail_job(job_id, unavailable)
            return
        try:
            protect_one = self.executor.image_runner(mode, opts, self.settings, self._cache)
        except (ValueError, OSError) as e:  # a job that cannot run: the client sees why
            self.guard.fail_job(job_id, one_line(e))
            return
        for im in job["images"]:
            if im["status"] in ("done", "failed"):
                continue
            if self._stop.is_set():
                self._requeue(job_id, im["idx"])
                raise _Interrupted
            if job_id in self._cancelled:
                break
            self._run_image(job, im, protect_one, opts)
        if job_id in self._cancelled:
            self.discard(job_id)
            return
        status = self.guard.write(f"finishing job {job_id}", self.store.finish_job, job_id, self.ttl_s)
        self.board.forget(job_id)
        log.info("job %s %s", job_id, status)

    def _requeue(self, job_id: str, idx: int) -> None:
        try:
            self.store.requeue_image(job_id, idx)
        except STORAGE_ERRORS as e:  # the next start re-queues it anyway
            self.health.storage_failed(f"re-queueing job {job_id}", e)

    def _run_image(self, job: dict[str, Any], im: dict[str, Any], protect_one: Callable[[ModeCall], Any],
                   opts: JobOptions) -> None:
        job_id, idx = job["id"], im["idx"]
        attempt = self.guard.write(f"starting job {job_id} image {idx}", self.store.start_image, job_id, idx)
        if attempt is None:
            return
        if attempt > MAX_ATTEMPTS:
            self.guard.write(f"failing job {job_id} image {idx}", self.store.fail_image, job_id, idx,
                        f"processing was interrupted {MAX_ATTEMPTS} times (the server crashed or was killed while "
                        "working on this image); giving up on it")
            return
        key = (job_id, idx)

        def check() -> None:
            if self._stop.is_set():
                raise _Interrupted
            if job_id in self._cancelled:
                raise _Cancelled

        first_stage = "cluster" if self.executor.name == "ray" else "prepare"  # a Ray task reports no stages

        def progress(step: int, steps: int) -> None:
            check()
            self._live[key].on_step(int(step), int(steps))

        def stage(name: str) -> None:
            check()
            self._live[key].set_stage(name)

        d, t0 = self.jobs_dir / job_id, time.perf_counter()
        out_dir = d / "out"
        try:
            tries = 2  # a result that could not be saved is computed once more, after a wait
            for i in range(tries):
                self._live[key] = eta.ImageClock(report=opts.check, stage=first_stage)
                results.remove_outputs(out_dir, im["id"])  # an interrupted or failed attempt's
                try:
                    res = protect_one(ModeCall(d / "in" / im["input_file"], out_dir, im["id"], progress, check, stage))
                    break
                except _Interrupted:
                    self._requeue(job_id, idx)
                    raise
                except _Cancelled:
                    return
                except Exception as e:  # one bad image never stops the job: the error is recorded for the client
                    cause = storage_cause(e)
                    if cause is not None:  # disk full or failing while the results were written
                        self.health.storage_failed(f"saving the results of job {job_id}", cause)
                        results.remove_outputs(out_dir, im["id"])
                        if i + 1 < tries and not self._stop.wait(self.guard.backoff(1)):
                            log.warning("job %s image %d: results not saved (%s); trying again", job_id, idx,
                                        one_line(e))
                            continue
                        log.error("job %s image %d: results not saved: %s", job_id, idx, one_line(e))
                        self.guard.write(f"failing job {job_id} image {idx}", self.store.fail_image, job_id, idx,
                                    f"the result could not be saved: {storage_message(cause, self.root)}; submit the image "
                                    "again later")
                        return
                    log.exception("job %s image %d (%s) failed", job_id, idx, im["display_name"])
                    self.guard.write(f"failing job {job_id} image {idx}", self.store.fail_image, job_id, idx, one_line(e))
                    return
            files = {"input": im["input_file"], "output": res.output.name, "manifest": res.manifest_path.name}
            for p in res.extra_outputs:
                kind = results.EXTRA_KINDS.get(p.name[len(im["id"]):])
                if kind is not None:
                    files[kind] = p.name
            report_error = None
            if opts.check:
                self._live[key].set_stage("report")
                report_error = results.add_report(files, d / "in" / im["input_file"], res, out_dir, im["id"],
                                                  attacks=self.settings.check_attacks,
                                                  models_dir=self.settings.models_dir)
            clock = self._live[key]
            self.history.add((opts.mode, opts.quality), clock.finish(), clock.per_step)
            try:
                self.guard.write(f"recording the result of job {job_id} image {idx}", self.store.finish_image, job_id, idx,
                            files=files, manifest=res.manifest, seconds=round(time.perf_counter() - t0, 3),
                            report_error=report_error)
            except StorageFault:
                results.remove_outputs(out_dir, im["id"])  # unrecorded results only take space
                raise
        finally:
            self._live.pop(key, None)
            self.board.forget(key)

    # -- janitor
    def _janitor(self) -> None:
        last_cleanup = time.monotonic()
        while not self._stop.wait(min(self.supervise_interval_s, self.settings.cleanup_interval_s)):
            try:
                self.supervise()
                if self.health.storage_error is not None and self.guard.probe(self.root):
                    self.guard.flush()
                if time.monotonic() - last_cleanup >= self.settings.cleanup_interval_s:
                    last_cleanup = time.monotonic()
                    self.cleanup()
            except Exception as e:  # storage faults included: the janitor tries again next time
                log.warning("janitor: %s", one_line(e))
                self.health.error(f"janitor: {storage_message(e, self.root)}")

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete jobs whose results expired and upload folders no job owns (older than an hour)."""
        gone = []
        for job_id in self.store.expired(time.time() if now is None else now):
            self.store.delete_job(job_id)
            self.discard(job_id)
            gone.append(job_id)
        self._remove_orphans(min_age_s=3600.0)
        if gone:
            log.info("deleted %d expired job(s)", len(gone))
        return gone

    def _remove_orphans(self, min_age_s: float) -> None:
        remove_orphan_dirs(self.jobs_dir, self.store.all_ids(), min_age_s)
