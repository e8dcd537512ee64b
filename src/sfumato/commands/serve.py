"""``sfumato serve``: the local web app and HTTP API (FastAPI + uvicorn; ``pip install sfumato[web]``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sfumato.commands import number
from sfumato.commands.cloak import device_name

HELP = "Run the local web app and HTTP API: drop images in a browser, or POST them to /v1/jobs."


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sfumato" / "server"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; any other address needs --token)")
    p.add_argument("--port", type=number(int, lo=1, hi=65535), default=8000, help="TCP port (default 8000)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help=f"folder for the job database, uploads and results (default {default_data_dir()})")
    p.add_argument("--workers", type=number(int, lo=1, hi=64), default=None, metavar="N",
                   help="jobs processed at once (default: one per compute device, 1 on a CPU)")
    p.add_argument("--max-queue", type=number(int, lo=1, hi=100_000), default=16, metavar="N",
                   help="jobs allowed to wait; more are refused with HTTP 429 + Retry-After (default 16)")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="API token clients send as 'Authorization: Bearer TOKEN' (default: $SFUMATO_TOKEN; "
                        "required when --host is not a loopback address)")
    p.add_argument("--ttl-hours", type=number(float, lo=0, lo_open=True), default=24.0, metavar="H",
                   help="hours finished results are kept before deletion (default 24)")
    p.add_argument("--max-upload-mb", type=number(float, lo=0, lo_open=True), default=50.0, metavar="MB",
                   help="largest accepted image file, in MiB (default 50)")
    p.add_argument("--max-megapixels", type=number(float, lo=0, hi=100, lo_open=True), default=25.0, metavar="MP",
                   help="largest accepted image, in megapixels (default 25)")
    p.add_argument("--max-images-per-job", type=number(int, lo=1, hi=10_000), default=20, metavar="N", help="images per job (default 20)")
    p.add_argument("--models-dir", default=None, help="folder with model weights (else $SFUMATO_MODELS_DIR)")
    p.add_argument("--anchors-dir", default=None, metavar="DIR",
                   help="for poison/protect: folder with one sub-folder of images per target concept, e.g. DIR/cat/")
    p.add_argument("--check-attacks", default="default", metavar="SUITE|NAMES",
                   help="attacks of the verification report jobs can ask for (as sfumato check --attacks)")
    p.add_argument("--effort-override", default=None, metavar="JSON",
                   help="replace every job's search effort, e.g. '{\"steps\": 3, \"resolution\": 128}' "
                        "(for tests and benchmarks: protection will be weak)")
    g = p.add_argument_group("scale-out (a Ray cluster; pip install 'sfumato[cluster]')")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where images run: local (this process's worker threads, the default) or ray (one Ray task "
                        "per image; every Ray node must see --data-dir at the same path)")
    g.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT|ray://HOST:PORT",
                   help="the Ray cluster for --executor ray: auto (started on this machine with 'ray start --head'), "
                        "the head's address, or a Ray Client address (default: a private Ray on this machine)")
    g.add_argument("--task-timeout", type=number(float, lo=0, lo_open=True), default=None, metavar="S",
                   help="with --executor ray: seconds one image may take before it fails (default: no limit)")
    g.add_argument("--task-memory-mb", type=number(float, lo=64), default=None, metavar="MB",
                   help="with --executor ray: memory one task reserves and may use, in MiB (default: no limit)")
    g.add_argument("--task-retries", type=number(int, lo=0, hi=10), default=2, metavar="N",
                   help="with --executor ray: runs of an image whose worker died (crash, kill, out of memory) "
                        "before it fails (default 2)")
    g.add_argument("--task-gpus", type=number(float, lo=0), default=0.0, metavar="N",
                   help="with --executor ray: GPUs each task reserves (default 0). With N > 0 each image is computed "
                        "on the GPU Ray gives its task (encoders, LPIPS, targets); a task whose node has no usable "
                        "CUDA fails with a plain reason")
    p.add_argument("--device", type=device_name, default=None, metavar="auto|cpu|cuda[:N]",
                   help="where the server's own worker threads compute (--executor local): cpu, cuda[:N] or auto "
                        "(default: $SFUMATO_DEVICE, else cpu). With --executor ray the device follows --task-gpus")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default info)")


def settings_from_args(args: argparse.Namespace):  # noqa: ANN201
    import json

    from sfumato.server.settings import ServerSettings, env_token

    effort = None
    if args.effort_override:
        from sfumato.config import Effort

        try:
            effort = Effort.from_dict(json.loads(args.effort_override))
        except json.JSONDecodeError as e:
            raise ValueError(f"--effort-override is not valid JSON ({e.msg}); e.g. '{{\"steps\": 3}}'") from e
    return ServerSettings(
        host=args.host, port=args.port, data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
        workers=args.workers, max_queue=args.max_queue, token=args.token or env_token(), ttl_hours=args.ttl_hours,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=int(args.max_megapixels * 1e6),
        max_images_per_job=args.max_images_per_job,
        models_dir=Path(args.models_dir) if args.models_dir else None,
        anchors_dir=Path(args.anchors_dir) if args.anchors_dir else None, effort_override=effort,
        check_attacks=args.check_attacks, executor=args.executor,
        ray_address=args.ray_address if args.executor == "ray" else _no_address(args.ray_address),
        task_timeout_s=args.task_timeout, task_memory_mb=args.task_memory_mb, task_retries=args.task_retries,
        task_gpus=args.task_gpus,
    )


def device_setting(args: argparse.Namespace) -> str | None:
    """Check ``--device`` against the executor and this machine, and make it the device of every image the
    server's own threads protect (``$SFUMATO_DEVICE``, read by :func:`sfumato.api` calls that name none).
    With ``--executor ray`` each task's device follows ``--task-gpus`` instead
    (:func:`sfumato.cluster.tasks.task_device`). :class:`ValueError` (one line) on a contradiction or a
    missing GPU."""
    from sfumato.protections.device import DEVICE_ENV, resolve_device

    device = getattr(args, "device", None)
    if args.executor == "ray":
        if device and device.startswith("cuda") and not args.task_gpus:
            raise ValueError(f"--device {device} with --executor ray: give each task a GPU with --task-gpus 1 "
                             "(Ray hides the GPUs from tasks that reserve none)")
        if device == "cpu" and args.task_gpus:
            raise ValueError("--device cpu contradicts --task-gpus: drop one (tasks with GPUs compute on them)")
        return None
    if device is None:
        return None
    name = str(resolve_device(device))  # a GPU that is not there: one line, before the server starts
    os.environ[DEVICE_ENV] = name
    return name


def _no_address(address: str | None) -> None:
    if address:
        raise ValueError("--ray-address needs --executor ray")



def run(args: argparse.Namespace) -> int:
    import logging

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ModuleNotFoundError as e:
        print(f"error: sfumato serve needs {e.name}; install it with: pip install 'sfumato[web]'", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
        device_setting(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if settings.executor == "ray":  # connect now: a missing package or an unreachable cluster is one line
        from sfumato.cluster.executor import ClusterError, connect

        try:
            connect(settings.ray_address)
        except ClusterError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    from sfumato.server.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"sfumato serve: http://{shown}:{settings.port}/  (API docs: /docs; data: {settings.data_dir}"
          f"{'; token required' if settings.token else ''})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, timeout_graceful_shutdown=15)
    return 0
