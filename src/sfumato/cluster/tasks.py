"""What runs inside a Ray worker: one image of a server job (:func:`run_server_image`) or one file of a
cluster batch (:func:`run_batch_item`), with the per-task limits (:class:`TaskLimits`).

The image is protected by the same call as in the server's own threads (the mode's ``prepare`` →
:mod:`sfumato.api`), so the output is written atomically beside its manifest, metadata is kept and the
budget is measured on the saved file. A worker killed mid-write leaves at most a hidden temp file, which
the server removes before the image's next attempt (and a batch's next run removes as stale).

This module imports neither Ray nor torch at import time (Ray imports it in each worker).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfumato.config import require

_CACHE: dict[str, Any] = {}
"""Per-worker objects a mode reuses between images (anchor sets), as the server's ``_cache``."""


@dataclass(frozen=True, kw_only=True)
class TaskLimits:
    """Limits of one Ray task.

    ``timeout_s``: wall-clock seconds one image may take (checked at every progress step inside the task;
    the server cancels a task still running ``grace_s`` later, killing its worker); ``memory_mb``: resident
    memory of the worker process, checked at every progress step, and reserved on the node for scheduling
    (Ray's ``memory`` resource); ``retries``: how many times a task whose worker died (crash, killed,
    out of memory) is run again before its image fails; ``cpus`` / ``gpus``: what one task reserves (its
    PyTorch threads follow ``cpus``; with ``gpus`` > 0 Ray gives the worker that share of a GPU and the
    image is computed there — :func:`task_device`: the input tensor goes to ``cuda`` and every model and
    tensor downstream follows it).
    """

    timeout_s: float | None = None
    memory_mb: float | None = None
    retries: int = 2
    cpus: float = 1.0
    gpus: float = 0.0
    grace_s: float = 10.0

    def __post_init__(self) -> None:
        require(self.timeout_s is None or self.timeout_s > 0, f"the task time limit must be positive seconds, got "
                f"{self.timeout_s}")
        require(self.memory_mb is None or self.memory_mb >= 64, f"the task memory limit must be at least 64 MiB, got "
                f"{self.memory_mb}")
        require(isinstance(self.retries, int) and 0 <= self.retries <= 10, f"task retries must be 0..10, got "
                f"{self.retries!r}")
        require(self.cpus > 0, f"cpus per task must be positive, got {self.cpus}")
        require(self.gpus >= 0, f"gpus per task must be >= 0, got {self.gpus}")
        require(self.grace_s >= 0, f"grace_s must be >= 0, got {self.grace_s}")

    def ray_options(self) -> dict[str, Any]:
        """The ``.options(...)`` of the Ray task: resources, and retries only for a dead worker (an
        exception raised by the protection is an answer, not retried)."""
        opts: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus, "max_retries": self.retries,
                                "retry_exceptions": False}
        if self.memory_mb is not None:
            opts["memory"] = int(self.memory_mb * 1024 * 1024)
        return opts


class TaskLimitExceeded(RuntimeError):
    """An image went over its task's time or memory limit; it fails with this one-line reason (not retried)."""


def rss_bytes() -> int | None:
    """The resident memory of this process, or ``None`` where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class LimitWatch:
    """Checks a task's limits; :meth:`check` raises :class:`TaskLimitExceeded`."""

    def __init__(self, limits: TaskLimits) -> None:
        self.limits = limits
        self.t0 = time.monotonic()

    def check(self) -> None:
        lim = self.limits
        if lim.timeout_s is not None and (t := time.monotonic() - self.t0) > lim.timeout_s:
            raise TaskLimitExceeded(f"the image took {t:.0f} s, over the per-task time limit of {lim.timeout_s:g} s; "
                                    "raise --task-timeout or send a smaller image")
        if lim.memory_mb is not None and (rss := rss_bytes()) is not None and rss > lim.memory_mb * 2**20:
            raise TaskLimitExceeded(f"the worker used {rss / 2**20:.0f} MiB, over the per-task memory limit of "
                                    f"{lim.memory_mb:g} MiB; raise --task-memory-mb or send a smaller image")


def _threads(cpus: float) -> None:
    """One PyTorch thread per reserved CPU (Ray gives each worker its share of the node)."""
    n = max(1, int(cpus))
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def task_device(gpus: float) -> str:
    """The device of a task that reserved ``gpus`` GPUs: ``"cuda"`` (the one Ray made visible to this
    worker) when ``gpus`` > 0, else ``"cpu"`` (Ray hides the GPUs from a task that reserved none). Set as
    ``$SFUMATO_DEVICE`` for this worker, so every :mod:`sfumato.api` call of the task computes there.
    :class:`~sfumato.protections.device.DeviceUnavailable` (one line, the image fails, not retried) when
    the task has GPUs but PyTorch sees none."""
    from sfumato.protections.device import DEVICE_ENV, DeviceUnavailable, resolve_device

    name = "cuda" if gpus > 0 else "cpu"
    try:
        resolve_device(name)
    except DeviceUnavailable as e:
        raise DeviceUnavailable(f"this Ray task reserved {gpus:g} GPU(s) (--task-gpus) but {e}; install a CUDA build "
                                "of PyTorch on the GPU nodes, or run without --task-gpus") from None
    os.environ[DEVICE_ENV] = name
    return name


def run_server_image(mode: Any, opts: Any, settings: Any, src: str, out_dir: str, stem: str,
                     limits: TaskLimits) -> Any:
    """Protect one image of a server job (``mode``: a :class:`sfumato.server.modes.Mode`, ``opts`` its
    :class:`~sfumato.server.modes.JobOptions`, ``settings`` the server's
    :class:`~sfumato.server.settings.ServerSettings`) on the task's device (:func:`task_device`); returns
    the :class:`sfumato.api.FileResult`."""
    from sfumato.server.modes import ModeCall

    _threads(limits.cpus)
    task_device(limits.gpus)
    watch = LimitWatch(limits)
    protect_one = mode.prepare(opts, settings, _CACHE)
    watch.check()

    def progress(step: int, steps: int) -> None:
        watch.check()

    return protect_one(ModeCall(Path(src), Path(out_dir), stem, progress))


def run_batch_item(work: Callable[[Any], Any], item: Any, cpus: float, gpus: float = 0.0) -> Any:
    """One file of a cluster batch: ``work(item)``, the command's own function (pending markers are the
    driver's), on the task's device (:func:`task_device`) unless the command names one (``--device``)."""
    _threads(cpus)
    task_device(gpus)
    return work(item)


def worker_pid() -> int:
    """This worker's process id (tests and benchmarks use it)."""
    return os.getpid()
