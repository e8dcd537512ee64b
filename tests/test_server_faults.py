"""The server under storage faults (fast tier: a stand-in protection, no weights, no ../shared).

A full disk is simulated the way the machine shows it: ``shutil.disk_usage`` of the data folder reports
no free space, file writes raise ``OSError(ENOSPC)`` and SQLite writes raise ``database or disk is
full``; "freeing the disk" removes the fault. The worker must keep serving, every job must end ``done``
or ``failed`` with a reason, ``/v1/health`` must show the fault and recover, uploads must get 507 with a
one-line message; plus worker death, restart on a full disk, and the minimum image size."""

from __future__ import annotations

import errno
import io
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import sfumato.server.jobs as jobs_mod
from sfumato.api import FileResult
from sfumato.server import ServerSettings
from sfumato.server.app import create_app
from sfumato.server.jobs import JobRunner
from sfumato.server.modes import MODES, JobOptions, Mode, ModeCall
from sfumato.server.store import JobStore
from sfumato.server.uploads import MIN_IMAGE_SIDE

MIB = 1024 * 1024


def _png(w: int = 48, h: int = 40, seed: int = 0) -> bytes:
    a = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


class Disk:
    """The simulated disk of the data folder: ``full`` makes every write fail; ``fail_results`` /
    ``fail_db`` make only the next N result files / database writes fail; ``gate`` holds the protection
    until set (so a job can be caught running)."""

    def __init__(self, data: Path) -> None:
        self.data = data.resolve()
        self.full = False
        self.fail_results = 0
        self.fail_db = 0
        self.db_error = "database or disk is full"
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0
        self.lock = threading.Lock()

    def results_write(self, path: Path) -> None:
        with self.lock:
            fail = self.full or self.fail_results > 0
            self.fail_results = max(0, self.fail_results - 1)
        if fail:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def db_write(self) -> None:
        with self.lock:
            fail = self.full or self.fail_db > 0
            self.fail_db = max(0, self.fail_db - 1)
        if fail:
            raise sqlite3.OperationalError("database or disk is full" if self.full else self.db_error)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Disk:
    d = Disk(tmp_path / "data")
    real_usage = shutil.disk_usage
    real_tx = JobStore._tx

    def usage(path: Any) -> Any:
        u = real_usage(path)
        if d.full and Path(path).resolve().is_relative_to(d.data):
            return type(u)(u.total, u.total, 0)
        return u

    @contextmanager
    def tx(self: JobStore) -> Iterator[sqlite3.Connection]:
        d.db_write()
        with real_tx(self) as c:
            yield c

    def prepare(opts: JobOptions, settings: ServerSettings, cache: dict) -> Any:
        def protect(c: ModeCall) -> FileResult:  # a stand-in for cloak_file: same files, same contract
            d.calls += 1
            c.progress(0, 2)
            assert d.gate.wait(30), "the test never released the gate"
            out = c.out_dir / f"{c.stem}.png"
            d.results_write(out)
            out.write_bytes(c.src.read_bytes())
            manifest = {"mode": "cloak", "within_budget": True, "budget": {"lpips": 0.07, "linf": 24 / 255}}
            mpath = c.out_dir / f"{c.stem}.sfumato.json"
            mpath.write_text(json.dumps(manifest))
            c.progress(2, 2)
            return FileResult(source=c.src, output=out, manifest_path=mpath, manifest=manifest)

        return protect

    monkeypatch.setattr(shutil, "disk_usage", usage)
    monkeypatch.setattr(JobStore, "_tx", tx)
    monkeypatch.setitem(MODES, "cloak", Mode("cloak", "Style cloak", "stand-in", (), prepare))
    monkeypatch.setattr(JobRunner, "retry_delays_s", (0.01, 0.02, 0.04))
    monkeypatch.setattr(JobRunner, "supervise_interval_s", 0.1)
    return d


def _settings(disk: Disk, **kw: Any) -> ServerSettings:
    kw = {"min_free_bytes": MIB, **kw}
    return ServerSettings(data_dir=disk.data, workers=1, max_queue=8, max_upload_bytes=MIB, max_pixels=200_000,
                          ttl_hours=1.0, **kw)


@contextmanager
def _client(disk: Disk, **kw: Any) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(disk, **kw)), base_url="http://127.0.0.1") as client:
        yield client


def _submit(client: TestClient, n: int = 1, seed: int = 0) -> Any:
    return client.post("/v1/jobs", data={"target_style": "mosaic"},
                       files=[("images", (f"art-{i}.png", _png(seed=seed + i), "image/png")) for i in range(n)])


def _until(what: str, fn: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _job(client: TestClient, job_id: str) -> dict:
    r = client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _final(client: TestClient, job_id: str) -> dict:
    return _until(f"job {job_id} to finish", lambda: (j := _job(client, job_id))["status"] in ("done", "failed") and j)


def _health(client: TestClient) -> tuple[int, dict]:
    r = client.get("/v1/health")
    return r.status_code, r.json()


def _job_dirs(disk: Disk) -> set[str]:
    return {p.name for p in (disk.data / "jobs").iterdir()}


# ---------------------------------------------------------------------------------------------- fill the disk


def test_fill_then_free_the_disk(disk: Disk) -> None:
    """A job running when the disk fills fails with the reason (kept in memory while even that cannot be
    saved); a waiting job waits; health says why; new uploads get 507; once space is freed the failure
    is saved, the waiting job and new ones run, and health is ok again."""
    with _client(disk) as client:
        code, h = _health(client)
        assert code == 200 and h["status"] == "ok" and h["problems"] == [] and h["disk"]["ok"], h
        ok = _submit(client, 2)
        assert ok.status_code == 202, ok.text
        assert _final(client, ok.json()["id"])["status"] == "done"

        disk.gate.clear()
        running = _submit(client, 1, seed=10).json()["id"]
        waiting = _submit(client, 1, seed=20).json()["id"]
        _until("the job to run", lambda: _job(client, running)["status"] == "running")
        disk.full = True
        disk.gate.set()

        failed = _until("the running job to fail", lambda: (j := _job(client, running))["status"] == "failed" and j)
        assert "disk is full" in failed["error"] and "\n" not in failed["error"], failed["error"]
        assert failed["images"][0]["status"] == "failed" and "disk is full" in failed["images"][0]["error"]
        assert list((disk.data / "jobs" / running / "out").iterdir()) == []  # no partial results left
        code, h = _until("health to show the fault", lambda: (x := _health(client))[1]["unsaved_failures"] and x)
        assert code == 503 and h["status"] == "degraded", h
        assert h["worker"]["alive"] == 1 and "disk is full" in h["worker"]["storage_error"], h
        assert running not in json.dumps(h)  # no job ids where no token is needed
        assert h["disk"] == {"free_bytes": 0, "min_free_bytes": MIB, "ok": False}
        assert any("under the 1 MiB this server needs" in p for p in h["problems"]), h["problems"]
        assert _job(client, waiting)["status"] == "queued"  # not claimed while nothing can be saved

        r = _submit(client, 1, seed=30)
        assert r.status_code == 507, r.text
        assert r.json()["detail"].startswith("the server's disk is full (0 MiB free") and "\n" not in r.text
        assert r.headers["retry-after"] == "60"
        assert len(_job_dirs(disk)) == 3  # nothing stored for the refused upload

        disk.full = False  # free the disk
        assert _final(client, waiting)["status"] == "done"
        code, h = _until("health to recover", lambda: (x := _health(client))[0] == 200 and x)
        assert h["status"] == "ok" and h["problems"] == [] and h["unsaved_failures"] == 0, h
        assert h["worker"]["storage_error"] is None and "disk is full" in h["worker"]["last_error"]
        assert h["disk"]["ok"] is True and h["jobs"] == {"queued": 0, "running": 0, "done": 2, "failed": 1}
        with sqlite3.connect(disk.data / "jobs.sqlite3") as c:  # the failure kept in memory was saved
            status, error = c.execute("SELECT status, error FROM jobs WHERE id = ?", (running,)).fetchone()
        assert status == "failed" and "disk is full" in error
        again = _submit(client, 2, seed=40)
        assert again.status_code == 202 and _final(client, again.json()["id"])["status"] == "done"


def test_result_writes_are_retried_then_the_image_fails_with_the_reason(disk: Disk) -> None:
    with _client(disk) as client:
        disk.fail_results = 1  # one failed save: the image is computed again and saved
        j = _final(client, _submit(client, 1).json()["id"])
        assert j["status"] == "done" and disk.calls == 2, j
        disk.fail_results = 2  # the retry fails too: that image fails with the reason, the next one is done
        j = _final(client, _submit(client, 2, seed=5).json()["id"])
        assert j["status"] == "done" and [im["status"] for im in j["images"]] == ["failed", "done"], j
        err = j["images"][0]["error"]
        assert err.startswith("the result could not be saved: the disk is full (No space left on device)"), err
        assert str(disk.data) not in err  # no server paths in messages
        h = _health(client)[1]
        assert h["status"] == "ok" and "disk is full" in h["worker"]["last_error"], h


def test_database_write_errors_are_retried(disk: Disk) -> None:
    with _client(disk) as client:
        job_id = _submit(client, 2).json()["id"]
        disk.db_error = "disk I/O error"
        disk.fail_db = 3  # fewer failures in a row than tries: nothing is lost
        j = _final(client, job_id)
        assert j["status"] == "done" and j["counts"]["done"] == 2, j
        assert _until("the error to clear", lambda: _health(client)[0] == 200)


def test_a_database_that_stays_unwritable_fails_the_job_in_memory(disk: Disk) -> None:
    with _client(disk) as client:
        disk.gate.clear()
        job_id = _submit(client, 2).json()["id"]
        _until("the job to run", lambda: _job(client, job_id)["status"] == "running")
        disk.db_error = "disk I/O error"  # not a full disk: the store is failing
        disk.fail_db = 10**6
        disk.gate.set()
        j = _until("the job to fail", lambda: (x := _job(client, job_id))["status"] == "failed" and x)
        assert "could not save this job's progress: the job database could not be written (disk I/O error)" \
            in j["error"], j["error"]
        assert all(im["status"] == "failed" and im["error"] == j["error"] for im in j["images"]), j
        code, h = _health(client)
        assert code == 503 and h["unsaved_failures"] == 1 and "disk I/O error" in h["worker"]["storage_error"]
        r = _submit(client, 1, seed=3)  # the disk has room: 503 (try again), not 507
        assert r.status_code == 503 and "cannot use its storage right now" in r.json()["detail"], r.text
        disk.fail_db = 0
        _until("health to recover", lambda: _health(client)[0] == 200)
        with sqlite3.connect(disk.data / "jobs.sqlite3") as c:
            assert c.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone() == ("failed",)
        assert _final(client, _submit(client, 1, seed=4).json()["id"])["status"] == "done"


# --------------------------------------------------------------------------------------------------- uploads


def test_disk_full_while_storing_an_upload_gives_507(disk: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    real = jobs_mod.store_upload

    def store_upload(job_dir: Path, *a: Any, **kw: Any) -> Any:
        if disk.full:
            with open(job_dir / "in" / "partial.upload", "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(job_dir / "in" / "partial.upload"))
        return real(job_dir, *a, **kw)

    monkeypatch.setattr(jobs_mod, "store_upload", store_upload)
    with _client(disk, min_free_bytes=0) as client:  # no early refusal: the write itself fails
        disk.full = True
        r = _submit(client, 2)
        assert r.status_code == 507, r.text
        detail = r.json()["detail"]
        assert detail == ("the server's disk is full (No space left on device); nothing was stored. Try again "
                          "later, or ask the server's admin to free space in its data folder"), detail
        assert _job_dirs(disk) == set()  # the partial upload went with its job folder
        disk.full = False
        # the database full while the job is recorded: 507 too, and the uploads are removed
        disk.fail_db = 1
        r = _submit(client, 1)
        assert r.status_code == 507 and "database or disk is full" in r.json()["detail"], r.text
        assert _job_dirs(disk) == set()
        r = _submit(client, 1)
        assert r.status_code == 202 and _final(client, r.json()["id"])["status"] == "done"


def test_unreadable_database_gives_503_not_500(disk: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    with _client(disk) as client:
        job_id = _submit(client, 1).json()["id"]
        _final(client, job_id)

        @contextmanager
        def broken(self: JobStore) -> Iterator[sqlite3.Connection]:
            raise sqlite3.OperationalError("disk I/O error")
            yield  # pragma: no cover

        monkeypatch.setattr(JobStore, "read", broken)
        r = client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 503 and r.headers["retry-after"] == "60", r.text
        assert r.json() == {"detail": "the server cannot use its storage right now (the job database could not be "
                                      "written (disk I/O error)); try again in a minute"}
        code, h = _health(client)
        assert code == 503 and h["jobs"] is None and any("cannot be read" in p for p in h["problems"]), h


@pytest.mark.parametrize(("size", "ok"), [((20, 20), False), ((31, 64), False), ((64, 31), False),
                                          ((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE), True)])
def test_images_under_the_minimum_size_are_refused(disk: Disk, size: tuple[int, int], ok: bool) -> None:
    with _client(disk) as client:
        r = client.post("/v1/jobs", files=[("images", ("tiny.png", _png(*size), "image/png"))])
        if ok:
            assert r.status_code == 202 and _final(client, r.json()["id"])["status"] == "done"
            return
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == (f"tiny.png: {size[0]}x{size[1]} pixels is too small to protect; sfumato "
                                      "needs at least 32x32 (its perceptual budget cannot be measured below that); "
                                      "upload the full-size image")
        assert _job_dirs(disk) == set()


def test_minimum_size_covers_the_perceptual_metric() -> None:
    import sfumato.io as sio
    from sfumato.metrics import lpips

    assert MIN_IMAGE_SIDE >= max(lpips._MIN_SIDE.values())  # the budget is measured with LPIPS
    assert getattr(sio, "MIN_SIDE", MIN_IMAGE_SIDE) == MIN_IMAGE_SIDE  # the command line refuses the same


# --------------------------------------------------------------------------------------- workers and restarts


class WorkerKilled(BaseException):
    """Not an ``Exception``: nothing in the worker catches it, so the thread dies."""


def test_a_dead_worker_is_reported_and_replaced(disk: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JobRunner, "supervise_interval_s", 3600.0)  # the test replaces it by hand
    real = JobRunner._run_job
    killed: list[str] = []

    def run_job(self: JobRunner, job_id: str) -> None:
        if not killed:
            killed.append(job_id)
            raise WorkerKilled("simulated crash")
        real(self, job_id)

    monkeypatch.setattr(JobRunner, "_run_job", run_job)
    with _client(disk) as client:
        job_id = _submit(client, 1).json()["id"]
        code, h = _until("health to report the death", lambda: (x := _health(client))[1]["status"] == "down" and x)
        assert code == 503 and h["worker"]["alive"] == 0 and h["worker"]["workers"] == 1, h
        assert "WorkerKilled: simulated crash" in h["worker"]["last_error"], h
        assert h["problems"][0].startswith("1 of 1 worker thread(s) dead"), h["problems"]
        assert _job(client, job_id)["status"] == "queued"  # its job went back to the queue, not stuck running
        assert client.app.state.runner.supervise() == 1
        assert _final(client, job_id)["status"] == "done"
        code, h = _health(client)
        assert code == 200 and h["status"] == "ok" and h["worker"]["restarts"] == 1, h


def test_restart_on_a_full_disk_then_free_it(disk: Disk) -> None:
    """Jobs left running by a crash are re-queued at start; on a full disk the server still starts,
    reports it, and re-queues them once the disk has room."""
    with _client(disk) as client:  # a first life: one job finished, one interrupted mid-image
        done_id = _submit(client, 1).json()["id"]
        _final(client, done_id)
        disk.gate.clear()
        crashed = _submit(client, 2, seed=7).json()["id"]
        _until("the job to run", lambda: _job(client, crashed)["status"] == "running")
        client.app.state.runner._stop.set()  # stopping: the image is interrupted at its next step
        disk.gate.set()
    disk.full = True
    with sqlite3.connect(disk.data / "jobs.sqlite3") as c:  # as kill -9 leaves it
        c.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (crashed,))
        c.execute("UPDATE images SET status = 'running' WHERE job_id = ? AND idx = 0", (crashed,))
    with _client(disk) as client:
        code, h = _health(client)
        assert code == 503 and "re-queueing the jobs interrupted" in h["worker"]["storage_error"], h
        assert _job(client, crashed)["status"] == "running"
        disk.full = False
        j = _final(client, crashed)
        assert j["status"] == "done" and j["counts"]["done"] == 2, j
        assert _job(client, done_id)["status"] == "done"
        assert _until("health to recover", lambda: _health(client)[0] == 200)
