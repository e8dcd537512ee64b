"""Sfumato's local web app and HTTP API (``sfumato serve``).

* :mod:`sfumato.server.settings` — :class:`ServerSettings`, every knob of the server, explicit and frozen;
* :mod:`sfumato.server.app` — :func:`create_app`, the FastAPI application (UI at ``/``, API under ``/v1``,
  OpenAPI docs at ``/docs``), with its middleware (:mod:`~sfumato.server.middleware`), response models
  (:mod:`~sfumato.server.schemas`) and form parsing (:mod:`~sfumato.server.forms`);
* :mod:`sfumato.server.modes` — what a job may ask for: the modes table and the validated job options,
  each mode building its configuration with the :mod:`sfumato.config` presets and running :mod:`sfumato.api`;
* :mod:`sfumato.server.store` — the persistent job queue (SQLite in WAL mode);
* :mod:`sfumato.server.jobs` — the job runner: worker threads, janitor, submission;
* :mod:`sfumato.server.uploads` / :mod:`sfumato.server.results` — checked uploads; job views, zips, reports.

Nothing here is imported by ``import sfumato``; FastAPI is only needed once the app is created.
"""

from __future__ import annotations

from typing import Any

from sfumato.server.settings import ServerSettings, default_workers, env_token, is_loopback

__all__ = ["ServerSettings", "create_app", "default_workers", "env_token", "is_loopback"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sfumato.server.app import create_app

        return create_app
    raise AttributeError(f"module 'sfumato.server' has no attribute {name!r}")
