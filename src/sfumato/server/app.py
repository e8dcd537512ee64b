"""The FastAPI application of ``sfumato serve``: the single-page UI at ``/`` and the HTTP API under ``/v1``.

API (OpenAPI schema at ``/openapi.json``, interactive docs at ``/docs``):

* ``POST /v1/jobs`` — multipart form: one or more ``images`` parts plus options (``mode``, ``intensity``,
  ``quality``, ``target_style``, ``concept``, ``target``, ``seed``, ``output_format``, ``jpeg_quality``,
  ``ai_view``, ``check``) → ``202`` with the job id; ``429`` + ``Retry-After`` when the queue is full;
  ``413`` over the size/pixel limits; ``415`` for anything that is not an image (content is sniffed);
* ``GET /v1/jobs/{id}`` — status, progress and ETA, per-image results with their manifests;
* ``GET /v1/jobs/{id}/files/{name}`` — one stored file (names come from the job description);
* ``GET /v1/jobs/{id}/zip`` — every finished result as a zip;
* ``DELETE /v1/jobs/{id}`` — delete the job and its files (a running job stops);
* ``GET /v1/options`` — modes (and whether this version has them), presets, styles, concepts, limits;
* ``GET /v1/health`` — liveness and queue counts (no token needed).

When a token is set every ``/v1`` route but health needs ``Authorization: Bearer <token>``. Requests that
change state are refused when they come from another web origin, and with a loopback binding the
``Host`` header must be a loopback name (DNS-rebinding protection).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.resources import files
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sfumato._version import __version__
from sfumato.server import ServerSettings, is_loopback
from sfumato.server.jobs import (
    INTENSITIES,
    MODES,
    OUTPUT_FORMATS,
    QUALITIES,
    JobError,
    JobOptions,
    JobRunner,
    builtin_style_names,
    check_available,
    concept_names,
    spooled_zip,
)

log = logging.getLogger("sfumato.server")

STATIC_DIR = Path(str(files("sfumato.server") / "static"))

_OPTION_FIELDS = {
    "mode": str, "intensity": str, "quality": str, "target_style": str, "concept": str, "target": str,
    "seed": int, "output_format": str, "jpeg_quality": int, "ai_view": bool, "check": bool,
}
_OPTIONAL = {"concept", "target", "output_format"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

_INDEX_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
              "connect-src 'self'; object-src 'none'; frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
              "form-action 'self'")


# --------------------------------------------------------------------------------------------------
# response models (for the OpenAPI schema)


class FileRef(BaseModel):
    name: str
    url: str
    download_name: str


class ImageView(BaseModel):
    index: int
    id: str
    name: str
    status: str
    progress: float
    step: int | None = None
    steps: int | None = None
    eta_s: float | None = None
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
    counts: dict[str, int]
    images: list[ImageView]
    url: str
    zip_url: str


class JobCreated(BaseModel):
    id: str
    status: str
    url: str
    images: int


class Health(BaseModel):
    status: str
    version: str
    workers: int
    busy: bool
    max_queue: int
    jobs: dict[str, int]
    auth_required: bool


class Problem(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong API token"},
    404: {"model": Problem, "description": "no such job (deleted or expired) or file"},
}


# --------------------------------------------------------------------------------------------------
# middleware


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over ``limit(scope)`` bytes with 413, by ``Content-Length`` and while
    streaming (chunked uploads), before they are spooled to disk."""

    def __init__(self, app: ASGIApp, limit: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        msg = (f"request body over this server's limit of {limit // (1024 * 1024)} MiB; send fewer or smaller "
               "images per job")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await JSONResponse({"detail": msg}, status_code=413, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await JSONResponse({"detail": msg}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


_SECURITY_HEADERS = (("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"),
                     ("x-frame-options", "DENY"))


class Guard:
    """Refuses requests a browser could be tricked into sending: with a loopback binding, a ``Host``
    that is not a loopback name (DNS rebinding, 421); state-changing requests from another web origin
    (403). Adds ``nosniff``/``no-referrer``/``DENY`` headers to every response."""

    def __init__(self, app: ASGIApp, bound_host: str) -> None:
        self.app = app
        self.loopback = is_loopback(bound_host)
        self.allowed_hosts = {"localhost", "127.0.0.1", "::1", bound_host.lower().strip("[]")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host_header = headers.get("host", "")
        host = (urlsplit("//" + host_header).hostname or "").lower()
        if self.loopback and host not in self.allowed_hosts:
            await JSONResponse({"detail": f"unexpected Host {host!r} for a server bound to a loopback address "
                                          "(DNS-rebinding protection); open it as http://127.0.0.1:<port>/"},
                               status_code=421)(scope, receive, send)
            return
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin is not None \
                and urlsplit(origin).netloc.lower() != host_header.lower():
            await JSONResponse({"detail": f"cross-origin request from {origin} refused; use this server's own "
                                          "page or a non-browser client"}, status_code=403)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                for k, v in _SECURITY_HEADERS:
                    if k not in h:
                        h[k] = v
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --------------------------------------------------------------------------------------------------
# the app


def create_app(settings: ServerSettings) -> FastAPI:
    """The web app for ``settings``; the job runner starts and stops with the app's lifespan (it is
    available as ``app.state.runner`` once started)."""
    runner_box: dict[str, JobRunner] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = JobRunner(settings)
        runner.start()
        runner_box["runner"] = runner
        app.state.runner = runner
        log.info("sfumato server: data in %s, %d worker(s), queue of %d", settings.data_dir, runner.n_workers,
                 settings.max_queue)
        try:
            yield
        finally:
            await run_in_threadpool(runner.stop)

    app = FastAPI(
        title="Sfumato", version=__version__, lifespan=lifespan,
        description="Protect artworks from generative-AI mimicry: upload images, get them back cloaked or "
                    "poisoned with a manifest of what was done and measured.",
    )
    app.state.settings = settings

    def get_runner() -> JobRunner:
        r = runner_box.get("runner")
        if r is None:
            raise HTTPException(503, "the server is starting; retry in a moment", headers={"Retry-After": "2"})
        return r

    def require_token(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, cred = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(cred.strip().encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong API token; send the header 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    per_job = settings.max_images_per_job * settings.max_upload_bytes + 1024 * 1024

    def body_limit(scope: Scope) -> int:
        return per_job if scope.get("method") == "POST" and scope.get("path") == "/v1/jobs" else 64 * 1024

    app.add_middleware(Guard, bound_host=settings.host)
    app.add_middleware(BodyLimit, limit=body_limit)

    @app.exception_handler(JobError)
    async def job_error(request: Request, exc: JobError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    # ---- UI
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": _INDEX_CSP, "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ---- API
    @app.get("/v1/health", response_model=Health, tags=["server"])
    async def health() -> dict[str, Any]:
        runner = get_runner()
        counts = await run_in_threadpool(runner.store.counts)
        return {"status": "ok", "version": __version__, "workers": runner.n_workers, "busy": not runner.idle(),
                "max_queue": settings.max_queue,
                "jobs": counts, "auth_required": settings.auth_required}

    @app.get("/v1/options", tags=["server"], dependencies=[Depends(require_token)], responses=_ERRORS)
    def options() -> dict[str, Any]:
        """What the server offers: modes (and whether this version has them), presets, styles, concepts and
        the concepts it has anchor images for (poison/protect), limits."""
        from sfumato.config import INTENSITY_PRESETS, QUALITY_PRESETS

        ad = settings.anchors_dir
        return {
            "modes": {name: {"title": m.title, "description": m.description,
                             "available": m.missing() is None, "unavailable_reason": m.unavailable_message()}
                      for name, m in MODES.items()},
            "intensities": {k: {"lpips": b.lpips, "linf": b.linf, "linf_255": round(b.linf * 255, 2)}
                            for k, b in INTENSITY_PRESETS.items() if k in INTENSITIES},
            "qualities": {k: {"steps": e.steps, "resolution": e.resolution}
                          for k, e in QUALITY_PRESETS.items() if k in QUALITIES},
            "target_styles": ["auto", *builtin_style_names()],
            "concepts": concept_names(),
            "anchor_targets": sorted(d.name for d in ad.iterdir() if d.is_dir()) if ad is not None and ad.is_dir()
            else [],
            "output_formats": list(OUTPUT_FORMATS),
            "check_available": check_available(),
            "defaults": JobOptions().to_dict(),
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                       "max_images_per_job": settings.max_images_per_job, "max_queue": settings.max_queue,
                       "ttl_hours": settings.ttl_hours},
            "effort_override": settings.to_dict()["effort_override"],
        }

    @app.post(
        "/v1/jobs", status_code=202, response_model=JobCreated, tags=["jobs"],
        dependencies=[Depends(require_token)],
        responses={**_ERRORS,
                   413: {"model": Problem, "description": "an image or the request is over the size/pixel limits"},
                   415: {"model": Problem, "description": "an upload is not a usable image (content is sniffed)"},
                   422: {"model": Problem, "description": "invalid options"},
                   429: {"model": Problem, "description": "queue full; see the Retry-After header"}},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _form_schema()}}}},
    )
    async def create_job(request: Request) -> JSONResponse:
        """Queue a job: every uploaded image is protected with the same options."""
        runner = get_runner()
        await run_in_threadpool(runner.check_capacity)  # refuse early, before reading the uploads
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise JobError(415, "send multipart/form-data with one or more 'images' file parts and the options "
                                "as form fields")
        form = await request.form(max_files=settings.max_images_per_job + 1, max_fields=32, max_part_size=4096)
        try:
            uploads: list[UploadFile] = []
            fields: dict[str, str] = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key != "images":
                        raise JobError(422, f"file part {key!r} is not expected; send images as 'images' parts")
                    uploads.append(value)
                else:
                    if key in fields:
                        raise JobError(422, f"option {key!r} was given twice; give it once")
                    fields[key] = value
            opts = parse_options(fields)
            if not uploads:
                raise JobError(422, "no images: add one or more image files as multipart parts named 'images'")
            if len(uploads) > settings.max_images_per_job:
                raise JobError(413, f"{len(uploads)} images in one job; this server takes at most "
                                    f"{settings.max_images_per_job} per job, split them into several jobs")
            job_id, job_dir = runner.new_job()
            try:
                images = []
                for up in uploads:
                    await up.seek(0)
                    images.append(await run_in_threadpool(runner.store_upload, job_dir, up.file, up.filename))
                await run_in_threadpool(runner.enqueue, job_id, opts, images)
            except BaseException:
                runner.discard(job_id)
                raise
        finally:
            await form.close()
        url = f"/v1/jobs/{job_id}"
        return JSONResponse({"id": job_id, "status": "queued", "url": url, "images": len(images)}, status_code=202,
                            headers={"Location": url})

    @app.get("/v1/jobs/{job_id}", response_model=JobView, tags=["jobs"], dependencies=[Depends(require_token)],
             responses=_ERRORS)
    async def get_job(job_id: str) -> dict[str, Any]:
        """Status, progress (0-1) and ETA in seconds of a job, with each image's files and manifest."""
        view = await run_in_threadpool(get_runner().describe, job_id)
        if view is None:
            raise JobError(404, f"no job {job_id}; it was deleted or its results expired")
        return view

    @app.get("/v1/jobs/{job_id}/files/{name}", tags=["jobs"], dependencies=[Depends(require_token)],
             responses={**_ERRORS, 200: {"content": {"application/octet-stream": {}},
                                         "description": "the file"}})
    async def get_file(job_id: str, name: str) -> FileResponse:
        """One stored file of a job, by the ``name`` given in the job description."""
        runner = get_runner()

        def find() -> tuple[Path, str] | None:
            runner.job_dir(job_id)  # validates the id
            job = runner.store.job(job_id)
            if job is None:
                return None
            path = runner.file_path(job, name)
            view = runner._view(job, "")
            shown = next((f["download_name"] for im in view["images"] for f in im["files"].values()
                          if f["name"] == name), None)
            return (path, shown) if path is not None and shown is not None else None

        found = await run_in_threadpool(find)
        if found is None:
            raise JobError(404, f"job {job_id} has no file {name!r}; use the names listed in GET /v1/jobs/{job_id}")
        path, shown = found
        headers = {"Cache-Control": "private, no-cache"}
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = "sandbox; default-src 'self' data: 'unsafe-inline'"
        return FileResponse(path, filename=shown, media_type=_media_type(path), headers=headers)

    @app.get("/v1/jobs/{job_id}/zip", tags=["jobs"], dependencies=[Depends(require_token)],
             responses={**_ERRORS, 200: {"content": {"application/zip": {}}, "description": "the results"},
                        409: {"model": Problem, "description": "no finished image yet"}})
    async def get_zip(job_id: str) -> StreamingResponse:
        """Every finished image's results (protected file, manifest, AI views, report) as one zip."""
        runner = get_runner()
        runner.job_dir(job_id)
        f = await run_in_threadpool(spooled_zip, runner, job_id)
        return StreamingResponse(_chunks(f), media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="sfumato-{job_id[:8]}.zip"'})

    @app.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"], dependencies=[Depends(require_token)],
                responses=_ERRORS)
    async def delete_job(job_id: str) -> Response:
        """Delete a job and all its files now (a running job stops at its next step)."""
        found = await run_in_threadpool(get_runner().delete, job_id)
        if not found:
            raise JobError(404, f"no job {job_id}; it was deleted or its results expired")
        return Response(status_code=204)

    return app


def parse_options(fields: dict[str, str]) -> JobOptions:
    """Job options from multipart form fields (strings), with one-line errors (HTTP 422)."""
    unknown = set(fields) - set(_OPTION_FIELDS)
    if unknown:
        raise JobError(422, f"unknown option(s) {sorted(unknown)}; known: {sorted(_OPTION_FIELDS)}")
    kw: dict[str, Any] = {}
    for key, raw in fields.items():
        typ = _OPTION_FIELDS[key]
        value = raw.strip()
        if key in _OPTIONAL and value == "":
            kw[key] = None
        elif typ is bool:
            if value.lower() not in _TRUE | _FALSE:
                raise JobError(422, f"option {key!r} must be true or false, got {raw!r}")
            kw[key] = value.lower() in _TRUE
        elif typ is int:
            try:
                kw[key] = int(value)
            except ValueError:
                raise JobError(422, f"option {key!r} must be an integer, got {raw!r}") from None
        else:
            kw[key] = value
    try:
        return JobOptions(**kw)
    except ValueError as e:
        raise JobError(422, str(e)) from e


def _form_schema() -> dict[str, Any]:
    d = JobOptions().to_dict()
    props: dict[str, Any] = {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"},
                   "description": "one or more image files (PNG, JPEG, WebP, TIFF); the content is checked"},
        "mode": {"type": "string", "enum": list(MODES), "default": d["mode"]},
        "intensity": {"type": "string", "enum": list(INTENSITIES), "default": d["intensity"],
                      "description": "perceptual budget preset"},
        "quality": {"type": "string", "enum": list(QUALITIES), "default": d["quality"],
                    "description": "search effort preset"},
        "target_style": {"type": "string", "default": d["target_style"],
                         "description": "'auto' or a built-in style name (see GET /v1/options)"},
        "concept": {"type": "string", "description": "concept shown in the images (poison; see GET /v1/options)"},
        "target": {"type": "string", "description": "concept a poisoned model should learn instead (poison)"},
        "seed": {"type": "integer", "default": d["seed"], "minimum": 0},
        "output_format": {"type": "string", "enum": list(OUTPUT_FORMATS),
                          "description": "default: the input's format family"},
        "jpeg_quality": {"type": "integer", "default": d["jpeg_quality"], "minimum": 95, "maximum": 100},
        "ai_view": {"type": "boolean", "default": d["ai_view"],
                    "description": "also render what the encoder sees, before and after"},
        "check": {"type": "boolean", "default": d["check"],
                  "description": "also write the verification report (when this version has it)"},
    }
    return {"type": "object", "required": ["images"], "properties": props}


_MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp", ".tif": "image/tiff",
          ".avif": "image/avif", ".json": "application/json", ".html": "text/html; charset=utf-8",
          ".txt": "text/plain; charset=utf-8"}


def _media_type(path: Path) -> str:
    return _MEDIA.get(path.suffix.lower(), "application/octet-stream")


def _chunks(f: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    try:
        while chunk := f.read(size):
            yield chunk
    finally:
        f.close()


@contextmanager
def serve_in_thread(settings: ServerSettings, *, log_level: str = "warning",
                    startup_timeout_s: float = 120.0) -> Iterator[str]:
    """Run the app with uvicorn in a background thread of this process (``settings.port`` 0: any free
    port); yields the base URL (``http://127.0.0.1:PORT``) once the server accepts requests, and stops it
    (workers included) on exit. For tests, benchmarks and notebooks; ``sfumato serve`` is the CLI."""
    import socket
    import threading
    import time

    import uvicorn

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host.strip("[]"), settings.port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level=log_level, lifespan="on",
                                           timeout_graceful_shutdown=15))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sfumato-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the sfumato server did not start within {startup_timeout_s:.0f} s; see its log")
        time.sleep(0.05)
    host = f"[{settings.host.strip('[]')}]" if family == socket.AF_INET6 else settings.host
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
