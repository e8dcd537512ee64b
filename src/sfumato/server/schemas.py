"""Response models of the ``sfumato serve`` HTTP API (they make its OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class FileRef(BaseModel):
    name: str
    url: str
    download_name: str


class Stage(BaseModel):
    """The stage a running image is in (:data:`sfumato.server.eta.STAGES`): ``key``, ``label`` in words
    (``optimising: step 34 of 80``), the optimisation's ``step`` of ``steps`` and seconds in the stage."""

    key: str
    label: str
    step: int | None = None
    steps: int | None = None
    elapsed_s: float


class ImageView(BaseModel):
    index: int
    id: str
    name: str
    status: str
    progress: float
    step: int | None = None
    steps: int | None = None
    stage: Stage | None = None
    eta_s: float | None = None
    eta_error_s: float | None = None
    finishing: bool = False
    error: str | None = None
    report_error: str | None = None
    seconds: float | None = None
    width: int
    height: int
    format: str
    bytes: int
    files: dict[str, FileRef]
    summary: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None


class JobView(BaseModel):
    id: str
    status: str
    mode: str
    options: dict[str, Any]
    error: str | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    expires: float | None = None
    queue_position: int | None = None
    progress: float
    eta_s: float | None = None
    eta_error_s: float | None = None
    finishing: bool = False
    stage: Stage | None = None
    counts: dict[str, int]
    images: list[ImageView]
    url: str
    zip_url: str


class PreviewView(BaseModel):
    """``POST /v1/preview``: a quick cloak of one image at ``side`` px with ``steps`` steps; nothing saved."""

    name: str
    width: int
    height: int
    side: int
    steps: int
    seconds: float
    verdict: dict[str, Any] | None = None
    target: str | None = None
    latent_reduction: float | None = None
    ai_view: dict[str, str]
    note: str


class JobCreated(BaseModel):
    id: str
    status: str
    url: str
    images: int


class Health(BaseModel):
    status: str  # ok, degraded (serving with a problem) or down (no live worker)
    problems: list[str]
    version: str
    workers: int
    busy: bool
    max_queue: int
    jobs: dict[str, int] | None = None
    auth_required: bool
    worker: dict[str, Any]
    disk: dict[str, Any]
    unsaved_failures: int
    executor: str = "local"  # where images run: local (this process) or ray


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong API token"},
    404: {"model": Problem, "description": "no such job (deleted or expired) or file"},
}
"""The error responses every authenticated job route documents."""
