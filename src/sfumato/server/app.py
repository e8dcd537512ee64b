"""The FastAPI application of ``sfumato serve``: the single-page UI at ``/`` and the HTTP API under ``/v1``.

API (OpenAPI schema at ``/openapi.json``, interactive docs at ``/docs``):

* ``POST /v1/jobs`` — multipart form: one or more ``images`` parts plus options (``mode``, ``intensity``,
  ``quality``, ``target_style``, ``concept``, ``target``, ``seed``, ``output_format``, ``jpeg_quality``,
  ``ai_view``, ``check``) → ``202`` with the job id; ``429`` + ``Retry-After`` when the queue is full;
  ``413`` over the size/pixel limits; ``415`` for anything that is not an image (content is sniffed);
* ``POST /v1/preview`` — multipart form: one ``image`` part plus the cloak's options → the verdict and the
  AI view before and after of a quick cloak (the fast path of ``sfumato cloak --preview``: small size, few
  steps) in seconds; nothing protected is written; ``429`` while another preview runs;
* ``GET /v1/jobs`` — the jobs this server holds, newest first (any browser lists them, not only the one
  that made them);
* ``GET /v1/jobs/{id}`` — status, progress, the stage of each running image (``optimising: step 34 of
  80``) and an ETA with its error that never rises by more than the error it stated, per-image results
  with their manifests;
* ``GET /v1/jobs/{id}/files/{name}`` — one stored file (names come from the job description);
* ``GET /v1/jobs/{id}/files/{name}/link`` — a signed link (5 minutes) that opens an HTML report in a
  browser tab without the token header: ``GET /v1/jobs/{id}/reports/{name}?exp=..&sig=..`` serves it
  inline, styled (its own CSP), with the image's real file name in place of the stored one;
* ``GET /v1/jobs/{id}/zip`` — every finished result as a zip;
* ``DELETE /v1/jobs/{id}`` — delete the job and its files (a running job stops);
* ``GET /v1/options`` — modes (and whether this version has them), presets in words with their expected
  time (and the measured recent time per image), styles, concepts, whether poison can run here (anchor
  images) and its default pair, limits;
* ``GET /v1/health`` — the worker threads' real state, storage errors, free disk and queue counts
  (no token needed); ``503`` unless ``ok``.

A full disk gives ``507`` with a one-line message (a failing one ``503``), never a bare ``500``; images
under 32x32 pixels are refused with ``422``.

When a token is set every ``/v1`` route but health needs ``Authorization: Bearer <token>``. Requests that
change state are refused when they come from another web origin, and with a loopback binding the
``Host`` header must be a loopback name (DNS-rebinding protection).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.resources import files
from pathlib import Path
from typing import IO, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Scope

from sfumato._version import __version__
from sfumato.server.errors import JobError, one_line
from sfumato.server.forms import form_schema, parse_options, preview_form_schema, preview_parts
from sfumato.server.jobs import JobRunner
from sfumato.server.middleware import BodyLimit, Guard
from sfumato.server.modes import (
    INTENSITIES,
    MODES,
    OUTPUT_FORMATS,
    QUALITIES,
    JobOptions,
    anchor_targets,
    builtin_style_names,
    concept_names,
    poison_status,
)
from sfumato.server.preview import clear_previews, run_preview
from sfumato.server.results import check_available, expected_seconds, job_list, preset_words, report_html
from sfumato.server.schemas import ERRORS, Health, JobCreated, JobView, PreviewView, Problem
from sfumato.server.settings import ServerSettings

log = logging.getLogger("sfumato.server")

STATIC_DIR = Path(str(files("sfumato.server") / "static"))

_REPORT_CSP = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
"""A report tab: its own inline style and data: images, no script, an opaque origin (sandbox)."""

REPORT_LINK_S = 300
"""How long a signed report link stays valid."""

_INDEX_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
              "connect-src 'self'; object-src 'none'; frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
              "form-action 'self'")


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
        clear_previews(settings.data_dir)  # what a crash left mid-preview (the data folder is locked now)
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
    link_key = secrets.token_bytes(32)  # signs report links; new links after a restart

    def link_sig(job_id: str, name: str, exp: int) -> str:
        return hmac.new(link_key, f"{job_id}/{name}/{exp}".encode(), hashlib.sha256).hexdigest()

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
        if scope.get("method") == "POST" and scope.get("path") == "/v1/jobs":
            return per_job
        if scope.get("method") == "POST" and scope.get("path") == "/v1/preview":
            return settings.max_upload_bytes + 1024 * 1024
        return 64 * 1024

    app.add_middleware(Guard, bound_host=settings.host)
    app.add_middleware(BodyLimit, limit=body_limit)

    @app.exception_handler(JobError)
    async def job_error(request: Request, exc: JobError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    async def storage_error(request: Request, exc: Exception) -> JSONResponse:
        """A full or failing disk anywhere in a request: 507 or 503 with one line, never a bare 500."""
        err = runner_box["runner"].http_error(exc) if "runner" in runner_box else None
        if err is None:
            raise exc
        log.warning("%s %s: %s", request.method, request.url.path, one_line(exc))
        return await job_error(request, err)

    app.add_exception_handler(OSError, storage_error)
    app.add_exception_handler(sqlite3.Error, storage_error)

    # ---- UI
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": _INDEX_CSP, "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ---- API
    @app.get("/v1/health", response_model=Health, tags=["server"],
             responses={503: {"model": Health, "description": "not ok: see status and problems"}})
    async def health() -> JSONResponse:
        """The server's real state: ``ok``, ``degraded`` (serving, with a problem: a storage error in
        effect, the data disk under its free-space threshold, a dead worker) or ``down`` (no live worker),
        with one line per problem; 503 unless ``ok``."""
        runner = get_runner()
        body = await run_in_threadpool(runner.health_report)
        body.update({"version": __version__, "busy": not runner.idle(), "max_queue": settings.max_queue,
                     "auth_required": settings.auth_required})
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/v1/options", tags=["server"], dependencies=[Depends(require_token)], responses=ERRORS)
    def options() -> dict[str, Any]:
        """What the server offers: modes (and whether this version has them), presets, styles, concepts and
        the concepts it has anchor images for (poison/protect), limits."""
        from sfumato.config import preset_budget, preset_effort

        budgets = {k: preset_budget("cloak", k) for k in INTENSITIES}  # what the UI shows for each preset
        efforts = {k: preset_effort("cloak", k) for k in QUALITIES}
        poison = poison_status(settings)
        defaults = JobOptions().to_dict()
        defaults.update(concept=poison["concept"], target=poison["target"])
        return {
            "modes": {name: {"title": m.title, "description": m.description,
                             "available": m.missing() is None, "unavailable_reason": m.unavailable_message()}
                      for name, m in MODES.items()},
            "intensities": {k: {"lpips": b.lpips, "linf": b.linf, "linf_255": round(b.linf * 255, 2),
                                **preset_words("intensity", k)} for k, b in budgets.items()},
            "qualities": {k: {"steps": e.steps, "resolution": e.resolution,
                              "expected_s": expected_seconds(e, efforts["default"]), **preset_words("quality", k)}
                          for k, e in efforts.items()},
            "target_styles": ["auto", *builtin_style_names()],
            "concepts": concept_names(),
            "anchor_targets": poison["anchor_targets"],
            "poison": poison,
            "output_formats": list(OUTPUT_FORMATS),
            "check_available": check_available(),
            "measured_image_s": _measured(runner_box.get("runner")),
            "defaults": defaults,
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                       "max_images_per_job": settings.max_images_per_job, "max_queue": settings.max_queue,
                       "ttl_hours": settings.ttl_hours},
            "effort_override": settings.to_dict()["effort_override"],
        }

    @app.post(
        "/v1/jobs", status_code=202, response_model=JobCreated, tags=["jobs"],
        dependencies=[Depends(require_token)],
        responses={**ERRORS,
                   413: {"model": Problem, "description": "an image or the request is over the size/pixel limits"},
                   415: {"model": Problem, "description": "an upload is not a usable image (content is sniffed)"},
                   422: {"model": Problem, "description": "invalid options, or an image under 32x32 pixels"},
                   429: {"model": Problem, "description": "queue full; see the Retry-After header"},
                   503: {"model": Problem, "description": "the server's storage is failing; see Retry-After"},
                   507: {"model": Problem, "description": "the server's disk is full; nothing was stored"}},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form_schema()}}}},
    )
    async def create_job(request: Request) -> JSONResponse:
        """Queue a job: every uploaded image is protected with the same options."""
        runner = get_runner()
        await run_in_threadpool(runner.check_capacity)  # refuse early, before reading the uploads
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise JobError(415, "send multipart/form-data with one or more 'images' file parts and the options "
                                "as form fields")
        try:  # the parts are spooled to temporary files
            form = await request.form(max_files=settings.max_images_per_job + 1, max_fields=32,
                                      max_part_size=4096)
        except OSError as e:
            raise (runner.http_error(e) or e) from e
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
            if opts.mode in ("poison", "protect") and opts.target not in anchor_targets(settings):
                status = poison_status(settings)
                raise JobError(422, status["reason"] if not status["available"] else
                               f"this server has no anchor images of {opts.target!r}, which poisoning toward it "
                               f"needs; choose a target it has pictures of: {', '.join(status['anchor_targets'])}")
            if not uploads:
                raise JobError(422, "no images: add one or more image files as multipart parts named 'images'")
            if len(uploads) > settings.max_images_per_job:
                raise JobError(413, f"{len(uploads)} images in one job; this server takes at most "
                                    f"{settings.max_images_per_job} per job, split them into several jobs")
            try:
                job_id, job_dir = await run_in_threadpool(runner.new_job)
            except OSError as e:
                raise (runner.http_error(e) or e) from e
            try:
                images = []
                for up in uploads:
                    await up.seek(0)
                    images.append(await run_in_threadpool(runner.store_upload, job_dir, up.file, up.filename))
                await run_in_threadpool(runner.enqueue, job_id, opts, images)
            except BaseException as e:
                runner.discard(job_id)
                err = runner.http_error(e) if isinstance(e, Exception) and not isinstance(e, JobError) else None
                if err is not None:  # disk full (507) or failing (503): one line, nothing kept
                    raise err from e
                raise
        finally:
            await form.close()
        url = f"/v1/jobs/{job_id}"
        return JSONResponse({"id": job_id, "status": "queued", "url": url, "images": len(images)}, status_code=202,
                            headers={"Location": url})

    @app.post(
        "/v1/preview", response_model=PreviewView, tags=["jobs"], dependencies=[Depends(require_token)],
        responses={**ERRORS,
                   413: {"model": Problem, "description": "the image is over the size/pixel limits"},
                   415: {"model": Problem, "description": "the upload is not a usable image (content is sniffed)"},
                   422: {"model": Problem, "description": "invalid options, a mode without a preview, a tiny image"},
                   429: {"model": Problem, "description": "another preview is running; see Retry-After"},
                   503: {"model": Problem, "description": "the models the preview needs are missing"}},
        openapi_extra={"requestBody": {"required": True,
                                       "content": {"multipart/form-data": {"schema": preview_form_schema()}}}},
    )
    async def preview(request: Request) -> dict[str, Any]:
        """A quick look before the full run: the image cloaked small with few steps (``sfumato cloak
        --preview``), its verdict and the AI view before and after as PNG data URLs. Nothing protected
        is written; the upload is checked like a job's and removed."""
        runner = get_runner()
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise JobError(415, "send multipart/form-data with one 'image' file part and the options as form fields")
        try:
            form = await request.form(max_files=2, max_fields=32, max_part_size=4096)
        except OSError as e:
            raise (runner.http_error(e) or e) from e
        try:
            upload, opts = preview_parts(form.multi_items())
            await upload.seek(0)
            return await run_in_threadpool(run_preview, upload.file, upload.filename, opts, settings,
                                           runner.store_upload)
        finally:
            await form.close()

    @app.get("/v1/jobs", tags=["jobs"], dependencies=[Depends(require_token)], responses=ERRORS)
    async def list_jobs(limit: int = 50) -> dict[str, Any]:
        """The jobs this server holds (until they expire), newest first: id, status, mode, image count and
        times; ``GET /v1/jobs/{id}`` gives each one's details."""
        runner = get_runner()
        jobs = await run_in_threadpool(job_list, runner.store, max(1, min(limit, 200)))
        return {"jobs": [{**j, "url": f"/v1/jobs/{j['id']}"} for j in jobs]}

    @app.get("/v1/jobs/{job_id}", response_model=JobView, tags=["jobs"], dependencies=[Depends(require_token)],
             responses=ERRORS)
    async def get_job(job_id: str) -> dict[str, Any]:
        """Status, progress (0-1) and ETA in seconds of a job, with each image's files and manifest."""
        view = await run_in_threadpool(get_runner().describe, job_id)
        if view is None:
            raise JobError(404, f"no job {job_id}; it was deleted or its results expired")
        return view

    @app.get("/v1/jobs/{job_id}/files/{name}", tags=["jobs"], dependencies=[Depends(require_token)],
             responses={**ERRORS, 200: {"content": {"application/octet-stream": {}},
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
            view = runner.view(job)
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

    def find_report(job_id: str, name: str) -> tuple[Path, str] | None:
        """The stored HTML report ``name`` of ``job_id`` and the display stem of its image."""
        runner = get_runner()
        runner.job_dir(job_id)  # validates the id
        job = runner.store.job(job_id)
        if job is None or not name.endswith(".html"):
            return None
        path = runner.file_path(job, name)
        im = next((im for im in runner.view(job)["images"] for f in im["files"].values() if f["name"] == name), None)
        if path is None or im is None:
            return None
        return path, Path(im["name"]).stem or "image"

    @app.get("/v1/jobs/{job_id}/files/{name}/link", tags=["jobs"], dependencies=[Depends(require_token)],
             responses=ERRORS)
    async def report_link(job_id: str, name: str) -> dict[str, Any]:
        """A signed link that opens the HTML report ``name`` in a browser tab without the token header
        (valid for a few minutes)."""
        if await run_in_threadpool(find_report, job_id, name) is None:
            raise JobError(404, f"job {job_id} has no report {name!r}; use the report name listed in "
                                f"GET /v1/jobs/{job_id}")
        exp = int(time.time()) + REPORT_LINK_S
        return {"url": f"/v1/jobs/{job_id}/reports/{name}?exp={exp}&sig={link_sig(job_id, name, exp)}",
                "expires": exp}

    @app.get("/v1/jobs/{job_id}/reports/{name}", tags=["jobs"], response_class=Response,
             responses={403: {"model": Problem, "description": "the link is wrong or expired"}, 404: ERRORS[404]})
    async def open_report(job_id: str, name: str, exp: int = 0, sig: str = "") -> Response:
        """A verification report opened from a signed link: inline, styled, titled with the real file name."""
        if exp < time.time() or not hmac.compare_digest(sig.encode(), link_sig(job_id, name, exp).encode()):
            raise JobError(403, "this report link is wrong or has expired; open the report again from the page")
        found = await run_in_threadpool(find_report, job_id, name)
        if found is None:
            raise JobError(404, f"no report {name!r} in job {job_id}; it was deleted or its results expired")
        path, stem = found
        html = await run_in_threadpool(report_html, path, stem)
        return Response(html, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": _REPORT_CSP, "Cache-Control": "private, no-store",
                                 "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})

    @app.get("/v1/jobs/{job_id}/zip", tags=["jobs"], dependencies=[Depends(require_token)],
             responses={**ERRORS, 200: {"content": {"application/zip": {}}, "description": "the results"},
                        409: {"model": Problem, "description": "no finished image yet"}})
    async def get_zip(job_id: str) -> StreamingResponse:
        """Every finished image's results (protected file, manifest, AI views, report) as one zip."""
        runner = get_runner()
        runner.job_dir(job_id)
        f = await run_in_threadpool(runner.zip_file, job_id)
        return StreamingResponse(_chunks(f), media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="sfumato-{job_id[:8]}.zip"'})

    @app.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"], dependencies=[Depends(require_token)],
                responses=ERRORS)
    async def delete_job(job_id: str) -> Response:
        """Delete a job and all its files now (a running job stops at its next step)."""
        found = await run_in_threadpool(get_runner().delete, job_id)
        if not found:
            raise JobError(404, f"no job {job_id}; it was deleted or its results expired")
        return Response(status_code=204)

    return app


def _measured(runner: JobRunner | None) -> float | None:
    """Recent seconds per finished image on this server (``None`` before the first, or unreadable)."""
    try:
        avg = runner.store.avg_image_seconds() if runner is not None else None
    except (OSError, sqlite3.Error):
        return None
    return round(float(avg), 1) if avg is not None else None


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
