"""The job queue loses nothing: ``sfumato serve`` (uvicorn, a subprocess) is killed with SIGKILL in the middle
of a job; after a restart on the same data folder the interrupted image is redone, the images finished
before the kill are kept untouched, and a job that was still waiting runs too."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

EFFORT = json.dumps({"steps": 2, "resolution": 64, "calibration_steps": 2})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data: Path, port: int, models_dir: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sfumato.cli", "serve", "--port", str(port), "--data-dir", str(data),
           "--models-dir", str(models_dir), "--effort-override", EFFORT, "--max-queue", "4", "--workers", "1",
           "--log-level", "info"]
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not healthy after {timeout} s:\n{log.read_text()}")


def _png(src: Path, size: tuple[int, int], seed: int) -> bytes:
    with Image.open(src) as im:
        a = np.asarray(im.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    a = np.roll(a, seed * 7, axis=1)  # three different pictures
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_kill_9_mid_job_then_restart_completes_it(tmp_path: Path, corpus_dir: Path, models_dir: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    src = corpus_dir / "art" / "claude_monet" / "ace_Impressionism_claude-monet_0.png"
    files = [("images", (f"page-{i}.png", _png(src, (80, 64), i), "image/png")) for i in range(3)]
    opts = {"quality": "fast", "target_style": "mosaic", "ai_view": "false"}

    proc = _start(data, port, models_dir, log)
    try:
        _wait_healthy(proc, url, log)
        r = httpx.post(f"{url}/v1/jobs", data=opts, files=files, timeout=60)
        assert r.status_code == 202, r.text
        job_url = url + r.json()["url"]
        r2 = httpx.post(f"{url}/v1/jobs", data=opts, files=files[:1], timeout=60)
        assert r2.status_code == 202, r2.text
        waiting_url = url + r2.json()["url"]

        deadline = time.monotonic() + 300
        while True:  # kill as soon as the first image is done and the job is not
            job = httpx.get(job_url, timeout=10).json()
            states = [im["status"] for im in job["images"]]
            if states[0] == "done":
                break
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert "done" in states and any(s != "done" for s in states), f"nothing was interrupted: {states}"
    first = job["images"][0]
    out_first = data / "jobs" / job["id"] / "out" / first["files"]["output"]["name"]
    kept = (out_first.stat().st_mtime_ns, out_first.read_bytes())

    proc = _start(data, port, models_dir, log)
    try:
        _wait_healthy(proc, url, log)
        for u in (job_url, waiting_url):
            deadline = time.monotonic() + 300
            while True:
                j = httpx.get(u, timeout=10).json()
                if j["status"] in ("done", "failed"):
                    break
                assert time.monotonic() < deadline, j
                time.sleep(0.3)
            assert j["status"] == "done", j
            assert all(im["status"] == "done" and im["manifest"]["within_budget"] for im in j["images"]), j
            if u == job_url:
                done = j
        # the image finished before the kill was kept as it was, not redone
        assert (out_first.stat().st_mtime_ns, out_first.read_bytes()) == kept
        assert done["images"][0]["manifest"] == first["manifest"]
        for im in done["images"]:
            assert httpx.get(url + im["files"]["output"]["url"], timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    assert "resuming 1 interrupted job(s)" in log.read_text()
    with sqlite3.connect(data / "jobs.sqlite3") as c:
        attempts = dict(c.execute("SELECT idx, attempts FROM images WHERE job_id = ?", (job["id"],)).fetchall())
    assert attempts[0] == 1, attempts  # done before the kill, never redone
    assert all(1 <= attempts[i] <= 2 for i in (1, 2)), attempts  # at most the interrupted one ran twice
