"""Scale-out on a Ray cluster (``pip install 'sfumato[cluster]'``), for platforms that protect every upload.

* :mod:`sfumato.cluster.executor` — where the server's images run: :class:`~sfumato.cluster.executor.InProcess`
  (the default: the server's own worker threads, nothing new starts) or
  :class:`~sfumato.cluster.executor.RayExecutor` (``sfumato serve --executor ray``: one Ray task per image,
  bounded retries when a worker dies, per-task time and memory limits, a GPU per task when configured);
* :mod:`sfumato.cluster.tasks` — the code that runs inside a Ray worker: the same :mod:`sfumato.api`
  call as the in-process path, so outputs are written atomically and the budget is measured on the saved
  file; the limits are checked at every progress step;
* :mod:`sfumato.cluster.batch` — ``sfumato cloak|poison|protect DIR -o OUT --cluster ADDRESS``: the batch
  is planned on the driver exactly as a local one (resume, manifests, pending markers), then each file
  is a Ray task and results are gathered as they finish.

The job store (SQLite) of the server stays the source of truth; Ray only runs the work. Inputs and
outputs are read and written by path, so every Ray node must see the server's data folder (or the
batch's folders) at the same path: one machine, or shared storage (``docs/deploy.md``).

Nothing here imports Ray until an executor or a cluster batch is started; ``import sfumato`` never does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClusterError", "RayExecutor", "TaskLimits", "make_executor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sfumato.cluster import executor

        return getattr(executor, name)
    raise AttributeError(f"module 'sfumato.cluster' has no attribute {name!r}")
