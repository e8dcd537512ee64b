"""The server on a real full disk (issue 19): fill the data folder's file system, then free it.

Needs a small file system of its own (mounting needs root, so this is a script, not a test; the test
suite simulates the same faults in ``tests/test_server_faults.py``)::

    mkdir -p /tmp/fulldisk && mount -t tmpfs -o size=3m tmpfs /tmp/fulldisk
    python benchmarks/server_full_disk.py /tmp/fulldisk
    umount /tmp/fulldisk

A stand-in protection (writes a 200 px PNG and its manifest) replaces the real one so only storage is
tested. Prints: the job that was running when the disk filled (expected ``failed`` with a reason), health
while full (expected 503 with the storage problem), the queued job (expected to wait), an upload
(expected 507), then, after freeing, the queued job (expected ``done``), health (expected 200 ``ok``) and
a new job (expected ``done``).
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from sfumato.api import FileResult
from sfumato.server import ServerSettings
from sfumato.server.app import create_app
from sfumato.server.jobs import JobRunner
from sfumato.server.modes import MODES, Mode

GATE = threading.Event()


def prepare(opts, settings, cache):  # noqa: ANN001, ANN201, ARG001
    def protect(c):  # noqa: ANN001, ANN202
        c.progress(0, 2)
        GATE.wait(60)
        out = c.out_dir / f"{c.stem}.png"
        Image.fromarray((np.random.default_rng(1).random((200, 200, 3)) * 255).astype(np.uint8)).save(out)
        m = {"mode": "cloak", "within_budget": True}
        mp = c.out_dir / f"{c.stem}.sfumato.json"
        mp.write_text(json.dumps(m))
        c.progress(2, 2)
        return FileResult(source=c.src, output=out, manifest_path=mp, manifest=m)
    return protect


def png(seed: int) -> bytes:
    b = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((48, 48, 3)) * 255).astype(np.uint8)).save(b, format="PNG")
    return b.getvalue()


def submit(c: TestClient, seed: int):  # noqa: ANN201
    return c.post("/v1/jobs", files=[("images", (f"a{seed}.png", png(seed), "image/png"))])


def final(c: TestClient, jid: str, t: float = 30) -> dict:
    deadline = time.time() + t
    j: dict = {}
    while time.time() < deadline:
        j = c.get(f"/v1/jobs/{jid}").json()
        if j["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    return j


def main() -> None:
    root = Path(sys.argv[1])
    MODES["cloak"] = Mode("cloak", "t", "t", (), prepare)
    JobRunner.retry_delays_s = (0.05, 0.1, 0.2)
    JobRunner.supervise_interval_s = 0.2
    GATE.set()
    s = ServerSettings(data_dir=root / "data", workers=1, max_queue=8, min_free_bytes=0)
    with TestClient(create_app(s), base_url="http://127.0.0.1") as c:
        print("start", c.get("/v1/health").status_code, final(c, submit(c, 1).json()["id"])["status"])
        GATE.clear()
        jid = submit(c, 2).json()["id"]
        time.sleep(0.5)
        waiting = submit(c, 3).json()["id"]
        filler = root / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                print("filled:", e)
        GATE.set()
        j = final(c, jid)
        print("running job ->", j["status"], "|", j["error"])
        h = c.get("/v1/health")
        print("health", h.status_code, json.dumps(h.json()["problems"]))
        print("waiting job ->", c.get(f"/v1/jobs/{waiting}").json()["status"])
        r = submit(c, 4)
        print("upload", r.status_code, r.text)
        os.unlink(filler)
        print("after free: waiting job ->", final(c, waiting)["status"])
        time.sleep(1.0)
        h = c.get("/v1/health")
        print("health", h.status_code, h.json()["status"], h.json()["problems"])
        print("new job ->", final(c, submit(c, 5).json()["id"])["status"])
        print("failed job now:", c.get(f"/v1/jobs/{jid}").json()["status"])


if __name__ == "__main__":
    main()
