"""Where the server's images run: in its own threads (:class:`InProcess`, the default) or as Ray tasks
(:class:`RayExecutor`, ``sfumato serve --executor ray``).

The server's job runner (:class:`sfumato.server.jobs.JobRunner`) keeps everything else: the SQLite job
store is the source of truth, each image's state changes there in its own transaction, and at start-up
images left ``running`` by a server that died go back to the queue (an image interrupted
:data:`sfumato.server.jobs.MAX_ATTEMPTS` times fails with the reason). An executor only turns a job's
options into the function that protects one image (:meth:`Executor.image_runner`), exactly as a mode's
``prepare`` does for the in-process path.

With Ray, that function submits one task per image and waits for it, checking the server's stop and
cancel signals meanwhile (a cancelled or interrupted image's task is cancelled). A worker that dies
mid-task (crash, ``kill -9``, out of memory) has its task run again by Ray up to ``retries`` times; then
the image fails with a one-line reason. A task past its time limit is stopped and its image fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sfumato.cluster.tasks import TaskLimitExceeded, TaskLimits

__all__ = ["ClusterError", "Executor", "InProcess", "RayExecutor", "TaskLimits", "WorkerLost", "connect",
           "make_executor"]

log = logging.getLogger("sfumato.cluster")

EXECUTORS = ("local", "ray")


class ClusterError(ValueError):
    """Ray is missing or the cluster cannot be reached (one line, says what to do; a user error, so the
    commands print it as one ``error:`` line with status 2)."""


class WorkerLost(RuntimeError):
    """The worker running an image died more times than the retry limit allows."""


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise ClusterError("running on a Ray cluster needs the optional package 'ray': install sfumato[cluster] "
                           "(pip install 'sfumato[cluster]')") from None
    return ray


def connect(address: str | None, *, num_cpus: int | None = None) -> Any:
    """Connect this process to Ray (once) and return the ``ray`` module.

    ``address``: ``"auto"`` (the cluster started on this machine with ``ray start``), ``"HOST:PORT"`` (a
    head node's GCS) or ``"ray://HOST:PORT"`` (Ray Client); ``None`` starts a private Ray on this machine
    (``num_cpus`` of it), stopped with the process. Already connected (a test, a notebook): kept as is."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address and address != "auto":
        _probe(address)
    kw: dict[str, Any] = {"namespace": "sfumato", "logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        kw["address"] = address
    else:
        kw.update(include_dashboard=False, num_cpus=num_cpus)
    try:
        ray.init(**kw)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError... all mean the same to the user
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterError(f"cannot connect to {where} ({msg}); start one with 'ray start --head' and pass "
                           "--ray-address auto, or the head's address") from None
    return ray


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at ``address`` (Ray itself retries for minutes)."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ClusterError(f"cannot connect to the Ray cluster at {address} ({e.strerror or type(e).__name__}); "
                           "start one with 'ray start --head' and pass --ray-address auto, or the head's "
                           "address") from None


class Executor:
    """Runs the images of server jobs. :meth:`image_runner` returns the function that protects one image
    (:class:`sfumato.server.modes.ModeCall` → :class:`sfumato.api.FileResult`)."""

    name = "local"

    def start(self) -> None:
        """Called once when the server starts (connects to a cluster)."""

    def stop(self) -> None:
        """Called once when the server stops."""

    def default_workers(self, settings: Any) -> int:
        """Images processed at once when ``--workers`` is not given."""
        return settings.resolved_workers()

    def image_runner(self, mode: Any, opts: Any, settings: Any, cache: dict[str, Any]) -> Callable[[Any], Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name}


class InProcess(Executor):
    """The embedded default: images run in the server's own worker threads (nothing else starts)."""

    name = "local"

    def image_runner(self, mode: Any, opts: Any, settings: Any, cache: dict[str, Any]) -> Callable[[Any], Any]:
        return mode.prepare(opts, settings, cache)


class RayExecutor(Executor):
    """One Ray task per image (:func:`sfumato.cluster.tasks.run_server_image`), with ``limits``.

    ``address``: as :func:`connect`; ``poll_s``: how often a waiting server thread checks for stop,
    cancel and the time limit."""

    name = "ray"

    def __init__(self, *, address: str | None = None, limits: TaskLimits | None = None, poll_s: float = 0.2) -> None:
        self.address = address
        self.limits = limits or TaskLimits()
        self.poll_s = poll_s
        self._ray: Any = None
        self._remote: Any = None

    def start(self) -> None:
        ray = connect(self.address)
        from sfumato.cluster.tasks import run_server_image

        self._ray = ray
        self._remote = ray.remote(run_server_image)
        log.info("sfumato: images run as Ray tasks on %s (%s)", self.address or "a local Ray",
                 ", ".join(f"{k}={v:g}" for k, v in sorted(ray.cluster_resources().items())
                           if k in ("CPU", "GPU", "memory")))

    def default_workers(self, settings: Any) -> int:
        """As many images in flight as the cluster has task slots now (CPUs, or GPUs when tasks take one)."""
        if self._ray is None:
            self.start()
        res = self._ray.cluster_resources()
        lim = self.limits
        slots = res.get("GPU", 0) / lim.gpus if lim.gpus > 0 else res.get("CPU", 1) / lim.cpus
        return max(1, int(slots))

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "address": self.address, "retries": self.limits.retries}

    def image_runner(self, mode: Any, opts: Any, settings: Any, cache: dict[str, Any]) -> Callable[[Any], Any]:
        if self._remote is None:
            self.start()
        ray, remote, lim = self._ray, self._remote, self.limits

        def run(call: Any) -> Any:
            ref = remote.options(**lim.ray_options(), name=f"sfumato-image-{call.stem}").remote(
                mode, opts, settings, str(call.src), str(call.out_dir), call.stem, lim)
            deadline = None if lim.timeout_s is None else time.monotonic() + lim.timeout_s + lim.grace_s
            while True:
                ready, _ = ray.wait([ref], timeout=self.poll_s)
                if ready:
                    return self.result(ref)
                try:
                    if call.check is not None:
                        call.check()  # raises when the server stops or the job was deleted
                except BaseException:
                    ray.cancel(ref, force=True)
                    raise
                if deadline is not None and time.monotonic() > deadline:
                    ray.cancel(ref, force=True)
                    raise TaskLimitExceeded(f"the image did not finish within the per-task time limit of "
                                            f"{lim.timeout_s:g} s; its worker was stopped")

        return run

    def result(self, ref: Any) -> Any:
        """The task's return value; a task's own exception is raised as itself (one line for the job),
        a worker lost beyond the retry limit as :class:`WorkerLost`."""
        return task_result(self._ray, ref, self.limits.retries)


def task_result(ray: Any, ref: Any, retries: int) -> Any:
    """``ray.get(ref)`` with Ray's errors turned into the ones a user reads (see :meth:`RayExecutor.result`)."""
    from ray import exceptions as rx

    try:
        return ray.get(ref)
    except rx.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise RuntimeError(" ".join(str(e).split())[:300]) from None
    except rx.OutOfMemoryError:
        raise WorkerLost(f"the worker processing this image ran out of memory {retries + 1} time(s) and was "
                         "stopped by Ray; giving up on this image (send a smaller image or give workers more "
                         "memory)") from None
    except rx.TaskCancelledError:
        raise WorkerLost("the task processing this image was cancelled") from None
    except rx.RayError as e:  # WorkerCrashedError, NodeDiedError, ObjectLostError...
        raise WorkerLost(f"the worker processing this image died {retries + 1} time(s) (it crashed, ran out of "
                         f"memory or was killed: {type(e).__name__}); giving up on this image") from None


def make_executor(settings: Any) -> Executor:
    """The executor a :class:`sfumato.server.settings.ServerSettings` asks for."""
    if settings.executor == "ray":
        return RayExecutor(address=settings.ray_address, limits=TaskLimits(
            timeout_s=settings.task_timeout_s, memory_mb=settings.task_memory_mb, retries=settings.task_retries,
            gpus=settings.task_gpus))
    return InProcess()
