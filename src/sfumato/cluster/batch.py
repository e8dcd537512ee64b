"""A command-line batch on a Ray cluster (``sfumato cloak|poison|protect DIR -o OUT --cluster ADDRESS``).

The batch is collected and planned on this machine exactly as a local one (:func:`sfumato.batch.collect`,
:func:`sfumato.plans.plan_outputs`: collisions, originals, resume keyed on the source's SHA-256, outputs
Sfumato did not write never replaced). Then each file to do gets its pending marker, as locally, and
becomes one Ray task running the command's own function (:func:`sfumato.cluster.tasks.run_batch_item`,
which writes through :mod:`sfumato.api`: atomic outputs, budget measured on the saved file); results are
gathered as they finish and markers cleared as in :func:`sfumato.batch.run_batch`. A worker that dies is
retried ``retries`` times, then its file fails with the reason and the batch goes on. Interrupted
(Ctrl-C), the remaining tasks are cancelled and their markers stay, so ``--resume`` redoes them.

Every node must see the source and output folders at the same paths (one machine, or shared storage).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from sfumato.cluster.executor import connect, task_result


def run_batch_cluster(items: list[Any], work: Callable[[Any], Any], *, address: str, quiet: bool = False,
                      on_bar: Callable[[Any], None] | None = None, stop_on: tuple[type[BaseException], ...] = (),
                      cpus: float = 1.0, gpus: float = 0.0, retries: int = 2) -> Any:
    """:func:`sfumato.batch.run_batch` (same arguments and report) with each item's ``work`` run as a Ray
    task on the cluster at ``address`` (see :func:`sfumato.cluster.executor.connect`). ``on_bar`` is not
    called: the stages of an image run in another process. ``cpus``: CPUs (and PyTorch threads) per task;
    ``gpus``: GPUs per task (the file is then computed on the GPU Ray gives the task, see
    :func:`~sfumato.cluster.tasks.task_device`); ``retries``: runs of a file whose worker died before it fails. Raises
    :class:`~sfumato.cluster.executor.ClusterError` (one line) when the cluster cannot be reached, before
    any marker is written."""
    from tqdm import tqdm

    from sfumato.batch import BatchReport, plain_error
    from sfumato.cluster.tasks import run_batch_item

    ray = connect(address)
    task = ray.remote(run_batch_item).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                              retry_exceptions=False)
    work_ref = ray.put(work)  # shipped once, not with every task
    report = BatchReport()
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), unit="img", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    pending: dict[Any, Any] = {}
    try:
        for item in items:
            if item.error is not None:
                report.failed.append((item.source, item.error))
                tqdm.write(f"error: {item.source}: {item.error}", file=sys.stderr)
                bar.update(1)
                continue
            if item.done:
                report.skipped.append(item.source)
                bar.update(1)
                continue
            if item.note:
                tqdm.write(f"note: {item.source}: {item.note}", file=sys.stderr)
            try:
                _write_marker(item)
            except OSError as e:
                report.failed.append((item.source, _first_line(e)))
                tqdm.write(f"error: {item.source}: {plain_error(e)}", file=sys.stderr)
                bar.update(1)
                continue
            pending[task.remote(work_ref, item, cpus, gpus)] = item
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                item = pending.pop(ref)
                bar.set_postfix_str(item.source.name[:40])
                try:
                    result = task_result(ray, ref, retries)
                except (ModuleNotFoundError, *stop_on):  # every file would fail alike: stop the batch
                    _clear_marker(item)
                    raise
                except Exception as e:  # reported, counted, and the batch goes on
                    msg = _first_line(e)
                    report.failed.append((item.source, msg))
                    tqdm.write(f"error: {item.source}: {plain_error(e)}", file=sys.stderr)
                else:
                    report.done.append(result)
                _clear_marker(item)
                bar.update(1)
    finally:
        for ref in pending:  # interrupted: stop the rest; their markers stay for --resume
            ray.cancel(ref, force=True)
        bar.close()
    report.seconds = time.perf_counter() - t0
    return report


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def _clear_marker(item: Any) -> None:
    """Remove the item's pending marker unless its output was left without a manifest (as the local batch)."""
    from sfumato.batch import pending_marker

    if item.output is None:
        return
    if not (item.output.exists() and item.manifest is not None and not item.manifest.exists()):
        pending_marker(item.output).unlink(missing_ok=True)


def _write_marker(item: Any) -> None:
    """The item's output folder and pending marker, as the local batch writes them before the work."""
    import json

    from sfumato.batch import pending_marker

    if item.output is not None:
        item.output.parent.mkdir(parents=True, exist_ok=True)
        pending_marker(item.output).write_text(
            json.dumps({"source": str(item.source), "output": item.output.name}) + "\n", encoding="utf-8")
