"""The settings of one ``sfumato serve`` instance (:class:`ServerSettings`), explicit and frozen, and the small
helpers they need: loopback detection, the default worker count, the token from the environment.

This module stays light (no FastAPI, no torch at import time).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfumato.config import require

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.config import Effort

__all__ = ["MIN_TOKEN_LENGTH", "ServerSettings", "default_workers", "env_token", "is_loopback"]

MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def default_workers() -> int:
    """One worker per compute device: the number of CUDA devices, or 1 on a CPU-only machine."""
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Settings of one server instance.

    ``data_dir``: folder holding the job database (``jobs.sqlite3``) and every upload and result;
    ``workers``: jobs processed at the same time (``None``: one per compute device, see
    :func:`default_workers`); ``max_queue``: jobs allowed to wait (beyond it ``POST /v1/jobs`` answers
    429 with ``Retry-After``); ``token``: API token clients send as ``Authorization: Bearer <token>``
    (required when ``host`` is not a loopback address); ``ttl_hours``: how long finished results are
    kept; ``max_upload_bytes`` / ``max_pixels``: limits per uploaded image; ``max_images_per_job``;
    ``models_dir``: weights folder (else ``$SFUMATO_MODELS_DIR``); ``anchors_dir``: folder with one
    sub-folder of anchor images per target concept (``anchors_dir/cat/*.png``) for poison and protect;
    ``effort_override``: replaces the search effort of every job (tests and benchmarks use it to make
    jobs take seconds); ``check_attacks``: the attacks of the verification report (``"default"``,
    ``"all"`` or comma-separated names, as ``sfumato check --attacks``); ``cleanup_interval_s``: how
    often expired jobs are deleted; ``min_free_bytes``: free space the data folder's disk keeps — below it
    new jobs are refused with 507 and ``/v1/health`` is not ``ok``.

    Where images run (:mod:`sfumato.cluster`): ``executor`` ``"local"`` (the server's own threads, the
    default) or ``"ray"`` (one Ray task per image; ``workers`` is then the number of images in flight,
    default: the cluster's task slots); ``ray_address``: ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``
    (``None``: a private Ray on this machine); ``task_timeout_s`` / ``task_memory_mb``: per-task limits
    (``None``: none); ``task_retries``: runs of a task whose worker died before its image fails;
    ``task_gpus``: GPUs each task reserves (0 on CPU workers).
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int | None = None
    max_queue: int = 16
    token: str | None = None
    ttl_hours: float = 24.0
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_images_per_job: int = 20
    models_dir: Path | None = None
    anchors_dir: Path | None = None
    effort_override: Effort | None = None
    check_attacks: str = "default"
    cleanup_interval_s: float = 60.0
    min_free_bytes: int = 256 * 1024 * 1024
    executor: str = "local"
    ray_address: str | None = None
    task_timeout_s: float | None = None
    task_memory_mb: float | None = None
    task_retries: int = 2
    task_gpus: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        for name in ("models_dir", "anchors_dir"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.token == "":
            object.__setattr__(self, "token", None)
        require(0 <= self.port <= 65535, f"port must be in 0..65535 (0: any free port), got {self.port}")
        require(self.workers is None or self.workers >= 1, f"workers must be >= 1 (or None for one per device), "
               f"got {self.workers}")
        require(self.max_queue >= 1, f"max_queue must be >= 1 (jobs allowed to wait), got {self.max_queue}")
        require(self.ttl_hours > 0, f"ttl_hours must be positive (how long results are kept), got {self.ttl_hours}")
        require(self.max_upload_bytes >= 1024, f"max_upload_bytes must be >= 1024, got {self.max_upload_bytes}")
        require(self.max_pixels >= 64 * 64, f"max_pixels must be >= 4096, got {self.max_pixels}")
        require(self.max_images_per_job >= 1, f"max_images_per_job must be >= 1, got {self.max_images_per_job}")
        require(isinstance(self.check_attacks, str) and bool(self.check_attacks.strip()),
               f"check_attacks must be 'default', 'all' or comma-separated attack names, got {self.check_attacks!r}")
        require(isinstance(self.min_free_bytes, int) and self.min_free_bytes >= 0,
               f"min_free_bytes must be a non-negative integer (bytes kept free on the data disk), got "
               f"{self.min_free_bytes!r}")
        require(self.executor in ("local", "ray"), f"executor must be 'local' (this process) or 'ray' (a Ray "
               f"cluster), got {self.executor!r}")
        require(self.ray_address is None or self.executor == "ray", "ray_address needs executor='ray' "
               "(--executor ray)")
        require(self.task_timeout_s is None or self.task_timeout_s > 0,
               f"task_timeout_s must be positive seconds, got {self.task_timeout_s}")
        require(self.task_memory_mb is None or self.task_memory_mb >= 64,
               f"task_memory_mb must be at least 64 MiB, got {self.task_memory_mb}")
        require(isinstance(self.task_retries, int) and 0 <= self.task_retries <= 10,
               f"task_retries must be 0..10, got {self.task_retries!r}")
        require(self.task_gpus >= 0, f"task_gpus must be >= 0, got {self.task_gpus}")
        require(self.cleanup_interval_s > 0, f"cleanup_interval_s must be positive, got {self.cleanup_interval_s}")
        if self.token is not None:
            require(len(self.token) >= MIN_TOKEN_LENGTH and self.token.isprintable() and " " not in self.token,
                   f"the API token must be at least {MIN_TOKEN_LENGTH} printable characters without spaces; "
                   "make one with: python -c 'import secrets; print(secrets.token_urlsafe())'")
        require(self.token is not None or is_loopback(self.host),
               f"binding to {self.host} exposes the server to other machines, so an API token is required: pass "
               "--token (or set SFUMATO_TOKEN), or bind to 127.0.0.1")
        if self.effort_override is not None:
            from sfumato.config import Effort

            require(isinstance(self.effort_override, Effort),
                   f"effort_override must be a sfumato.config.Effort, got {type(self.effort_override).__name__}")

    def resolved_workers(self) -> int:
        return self.workers if self.workers is not None else default_workers()

    @property
    def auth_required(self) -> bool:
        return self.token is not None

    def to_dict(self, *, redact_token: bool = False) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["data_dir"] = str(self.data_dir)
        d["models_dir"] = str(self.models_dir) if self.models_dir is not None else None
        d["anchors_dir"] = str(self.anchors_dir) if self.anchors_dir is not None else None
        d["effort_override"] = asdict(self.effort_override) if self.effort_override is not None else None
        if redact_token and d["token"] is not None:
            d["token"] = "***"
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerSettings:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        require(not unknown, f"unknown ServerSettings field(s) {sorted(unknown)}; known: {sorted(names)}")
        kw = dict(d)
        if isinstance(kw.get("effort_override"), dict):
            from sfumato.config import Effort

            kw["effort_override"] = Effort.from_dict(kw["effort_override"])
        return cls(**kw)

    @classmethod
    def from_json(cls, s: str) -> ServerSettings:
        return cls.from_dict(json.loads(s))


def env_token() -> str | None:
    """The token from ``$SFUMATO_TOKEN`` (keeps it out of the process list), or ``None``."""
    return os.environ.get("SFUMATO_TOKEN") or None
