"""Scale-out on a real Ray (issue 21): the server's ``--executor ray`` and the cluster batch.

A real local Ray with 2 CPUs is started by this file (``ray.init``; shut down at the end), no GPU and no
model weights: the protection is a fast stand-in with the file API's contract (:func:`_standin`: the
image saved by the atomic writer, then its manifest), shipped to the Ray workers by value. What the
stand-in does is chosen by the test through the image's width (a worker that must be killed, one that
always crashes, one that never ends). Checked: every accepted job ends ``done`` (or ``failed`` with a
one-line reason), a worker killed mid-task is retried, the server killed while jobs run loses nothing,
and no partial, temp or duplicate file is left.

Runs in CI's full tier (it starts Ray: seconds per worker process on 2 cores); well under 3 minutes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import ray
from fastapi.testclient import TestClient
from PIL import Image

from sfumato.server import ServerSettings
from sfumato.server.app import create_app
from sfumato.server.modes import MODES, JobOptions, Mode, ModeCall

pytestmark = pytest.mark.slow  # the full tier only: it starts a Ray cluster (needs no ../shared)

NORMAL, KILL_ONCE, ALWAYS_CRASH, NEVER_ENDS, GATED = 48, 50, 52, 54, 56
"""Image widths the stand-in reads as instructions."""


# ----------------------------------------------------------------------------------------------------
# the stand-in protection (runs inside Ray workers; this module is pickled by value)


def _wait_for(path: Path, progress: Any, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        progress(1, 4)  # the limits are checked at every progress step
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _standin(c: ModeCall, ctl: Path) -> Any:
    """A stand-in for ``cloak_file``: what it does depends on the image's width (see the constants)."""
    import sfumato.io as sio
    from sfumato.api import FileResult
    from sfumato.io.atomic import write_json_atomic

    img = sio.load_image(c.src)
    width = img.rgb.shape[1]
    c.progress(0, 4)
    if width in (KILL_ONCE, GATED):  # tell the test who runs it, then wait to be killed or released
        (ctl / f"{c.stem}.{os.getpid()}.pid").write_text(str(os.getpid()))
        _wait_for(ctl / ("go" if width == KILL_ONCE else "go-gated"), c.progress)
    elif width == ALWAYS_CRASH:
        os._exit(3)  # a poison input: the worker process dies every time
    elif width == NEVER_ENDS:
        _wait_for(ctl / "never", c.progress, timeout=600)
    else:
        time.sleep(0.2)
    rgb = np.clip(img.rgb + 2 / 255, 0, 1).astype(np.float32)
    out = sio.save_image(img, rgb, c.out_dir / f"{c.stem}.png", format="PNG", overwrite=True)
    manifest = {"mode": "cloak", "within_budget": True, "budget": {"lpips": 0.07, "linf": 24 / 255},
                "achieved": {"linf": float(np.abs(sio.load_image(out).rgb - img.rgb).max())},
                "worker_pid": os.getpid()}
    mpath = c.out_dir / f"{c.stem}.sfumato.json"
    write_json_atomic(mpath, manifest, overwrite=True)
    c.progress(4, 4)
    return FileResult(source=c.src, output=out, manifest_path=mpath, manifest=manifest)


def standin_prepare(opts: JobOptions, settings: ServerSettings, cache: dict) -> Any:
    ctl = Path(settings.data_dir) / "ctl"
    return lambda c: _standin(c, ctl)


STANDIN = Mode("cloak", "Style cloak", "stand-in", (), standin_prepare)


# ----------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A real local Ray of 2 CPUs for this file; its address lets a server subprocess join it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers get the stand-in by value
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, namespace="sfumato",
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODES, "cloak", STANDIN)


def _png(w: int, h: int = 40, seed: int = 0) -> bytes:
    a = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _settings(data: Path, **kw: Any) -> ServerSettings:
    (data / "ctl").mkdir(parents=True, exist_ok=True)
    kw = {"workers": 2, "task_retries": 2, **kw}
    return ServerSettings(data_dir=data, executor="ray", max_queue=8, max_upload_bytes=2**20, max_pixels=200_000,
                          ttl_hours=1.0, min_free_bytes=0, **kw)


@contextmanager
def _client(settings: ServerSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


def _submit(client: Any, widths: list[int], seed: int = 0) -> str:
    r = client.post("/v1/jobs", data={"target_style": "mosaic"},
                    files=[("images", (f"art-{i}.png", _png(w, seed=seed + i), "image/png"))
                           for i, w in enumerate(widths)])
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


# The waits are generous (they return as soon as their condition holds): with 60-90 s, two of these tests
# timed out on a 2-core host that had two other CPU-bound processes beside the test run.
def _until(what: str, fn: Any, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _final(client: Any, job_id: str, timeout: float = 240.0) -> dict:
    def get() -> dict | None:
        j = client.get(f"/v1/jobs/{job_id}").json()
        return j if j["status"] in ("done", "failed") else None

    return _until(f"job {job_id} to finish", get, timeout)


def _pids(ctl: Path) -> list[int]:
    return sorted(int(p.read_text()) for p in ctl.glob("*.pid"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _check_outputs(data: Path, job: dict) -> None:
    """Each done image has exactly its output and manifest, the output as the manifest says; nothing else
    (no temp, no partial, no duplicate) is in the job's output folder."""
    out = data / "jobs" / job["id"] / "out"
    expected = set()
    for im in job["images"]:
        if im["status"] != "done":
            continue
        names = {im["files"]["output"]["name"], im["files"]["manifest"]["name"]}
        assert names == {f"{im['id']}.png", f"{im['id']}.sfumato.json"}, names
        expected |= names
        assert im["manifest"]["within_budget"] is True and im["manifest"]["achieved"]["linf"] <= 3 / 255
        with Image.open(out / f"{im['id']}.png") as saved:
            assert saved.size == (im["width"], im["height"])  # a whole image, decoded
    assert {p.name for p in out.iterdir()} == expected


# ----------------------------------------------------------------------------------------------------
# the server with --executor ray


def test_jobs_complete_when_a_worker_is_killed_mid_task(ray_address: str, standin: None, tmp_path: Path) -> None:
    """Several jobs through the HTTP API as Ray tasks; one worker process is killed (SIGKILL) while it
    works on an image: Ray runs that task again on another worker and every job ends done."""
    data = tmp_path / "data"
    settings = _settings(data)
    ctl = data / "ctl"
    with _client(settings) as client:
        h = client.get("/v1/health").json()
        assert h["executor"] == "ray" and h["workers"] == 2, h
        victim = _submit(client, [KILL_ONCE], seed=1)
        others = [_submit(client, [NORMAL, NORMAL], seed=10), _submit(client, [NORMAL], seed=20),
                  _submit(client, [NORMAL, NORMAL, NORMAL], seed=30)]
        pid = _until("the task to start", lambda: _pids(ctl))[0]
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        (ctl / "go").touch()
        jobs = [_final(client, j) for j in [victim, *others]]
        for j in jobs:
            assert j["status"] == "done" and j["counts"]["done"] == j["counts"]["total"], j
            _check_outputs(data, j)
        assert len(_pids(ctl)) == 2 and pid in _pids(ctl)  # the killed attempt and the one that finished
        done_by = {im["manifest"]["worker_pid"] for im in jobs[0]["images"]}
        assert pid not in done_by  # finished by another worker process


def test_poison_input_and_time_limit_fail_with_reasons(ray_address: str, standin: None, tmp_path: Path) -> None:
    """An image that crashes its worker every time fails after the retry limit with a clear reason, the
    other image of its job is done; an image past the per-task time limit fails with that reason."""
    data = tmp_path / "data"
    # A generous limit for the mixed job: on a loaded CI machine the normal image may take seconds.
    with _client(_settings(data, task_retries=1, task_timeout_s=120.0)) as client:
        mixed = _submit(client, [ALWAYS_CRASH, NORMAL], seed=40)
        j = _final(client, mixed)
        assert j["status"] == "done", j  # a job is done when any of its images is
        crashed, ok = j["images"]
        assert crashed["status"] == "failed" and ok["status"] == "done", j["images"]
        assert "died 2 time(s)" in crashed["error"] and "giving up on this image" in crashed["error"], crashed
        assert "\n" not in crashed["error"]
        _check_outputs(data, j)
    with _client(_settings(data, task_retries=1, task_timeout_s=3.0)) as client:
        slow = _submit(client, [NEVER_ENDS], seed=50)
        s = _final(client, slow)
        assert s["status"] == "failed", s
        assert "per-task time limit of 3 s" in s["images"][0]["error"], s["images"][0]["error"]
        assert list((data / "jobs" / slow / "out").iterdir()) == []  # nothing partial left


def test_memory_limit_fails_the_image_with_the_reason(ray_address: str, standin: None, tmp_path: Path) -> None:
    """A worker over the per-task memory limit (64 MiB: any worker that has loaded NumPy and PIL is over
    it) fails its image at the next progress step with the measured figure; nothing is written."""
    data = tmp_path / "data"
    with _client(_settings(data, task_memory_mb=64)) as client:
        j = _final(client, _submit(client, [NORMAL], seed=300))
    err = j["images"][0]["error"]
    assert j["status"] == "failed" and "over the per-task memory limit of 64 MiB" in err, err
    assert list((data / "jobs" / j["id"] / "out").iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SERVER = """
import sys
sys.path.insert(0, {tests!r})
import test_cluster_ray as t
from ray import cloudpickle
cloudpickle.register_pickle_by_value(t)
from sfumato.server.modes import MODES
MODES["cloak"] = t.STANDIN
from sfumato.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_server_killed_while_jobs_run_loses_nothing(ray_address: str, tmp_path: Path) -> None:
    """``sfumato serve --executor ray`` (a subprocess joining the test's Ray) is killed with SIGKILL while
    two images run on Ray workers and one waits; after a restart on the same data folder every job ends
    done, each image with one output and its manifest, and nothing partial or duplicated."""
    data = tmp_path / "data"
    ctl = data / "ctl"
    ctl.mkdir(parents=True)
    script = tmp_path / "server.py"
    script.write_text(_SERVER.format(tests=str(Path(__file__).parent)))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    cmd = [sys.executable, str(script), "serve", "--port", str(port), "--data-dir", str(data), "--executor", "ray",
           "--ray-address", ray_address, "--workers", "2", "--max-queue", "8", "--log-level", "warning"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    def start() -> subprocess.Popen:
        with log.open("ab") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)

        def healthy() -> bool:
            assert proc.poll() is None, f"server exited early:\n{log.read_text()}"
            try:
                return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _until("the server to be healthy", healthy, timeout=90)
        return proc

    proc = start()
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            jobs = [_submit(client, [GATED], seed=60), _submit(client, [GATED, NORMAL], seed=70),
                    _submit(client, [NORMAL], seed=80)]
            _until("two images to run on Ray", lambda: len(_pids(ctl)) >= 2)
            assert client.get(f"/v1/jobs/{jobs[2]}").json()["status"] == "queued"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            old = _pids(ctl)
            _until("Ray to stop the dead server's tasks", lambda: not any(_alive(p) for p in old), timeout=60)
            (ctl / "go-gated").touch()
            proc = start()
            finals = [_final(client, j) for j in jobs]
        for j in finals:
            assert j["status"] == "done" and j["counts"]["done"] == j["counts"]["total"], j
            _check_outputs(data, j)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# ----------------------------------------------------------------------------------------------------
# the batch on a cluster


def _batch_work(item: Any, out_dir: Path, ctl: Path) -> Any:
    """The command's per-file work, as cloak's (the image saved atomically, then its manifest with the
    source's SHA-256 for --resume); a 50 px wide source waits for the test to kill its worker once."""
    import hashlib

    import sfumato.io as sio
    from sfumato.io.atomic import write_json_atomic

    img = sio.load_image(item.source)
    if img.rgb.shape[1] == KILL_ONCE:
        (ctl / f"{item.rel_stem}.{os.getpid()}.pid").write_text(str(os.getpid()))
        _wait_for(ctl / "go", lambda *_: None)
    out = sio.save_image(img, np.clip(img.rgb + 2 / 255, 0, 1).astype(np.float32), item.output, format="PNG",
                         overwrite=item.overwrite)

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    manifest = {"source": {"file": item.source.name, "sha256": sha(item.source)},
                "output": {"file": out.name, "format": "PNG", "sha256": sha(out)}}
    write_json_atomic(item.manifest, manifest, overwrite=True)
    return SimpleNamespace(output=out, manifest=manifest)


def test_cluster_batch_resumes_and_survives_a_killed_worker(ray_address: str, tmp_path: Path) -> None:
    """A folder planned as locally, each file a Ray task: one worker is killed mid-file and its file is
    redone; every output has its manifest, no marker or temp is left, the originals are untouched; a
    second run with resume skips everything."""
    from sfumato.batch import clean_out_dir, collect, pending_marker
    from sfumato.cluster.batch import run_batch_cluster
    from sfumato.plans import plan_outputs

    src, out, ctl = tmp_path / "art", tmp_path / "out", tmp_path / "ctl"
    for d in (src / "sub", out, ctl):
        d.mkdir(parents=True)
    widths = {"a": NORMAL, "b": KILL_ONCE, "c": NORMAL, "sub/d": NORMAL}
    for i, (name, w) in enumerate(widths.items()):
        (src / f"{name}.png").write_bytes(_png(w, seed=90 + i))
    before = {p: p.read_bytes() for p in src.rglob("*.png")}

    def run(resume: bool) -> Any:
        items = collect([src])
        plan_outputs(items, out, resume=resume)
        return run_batch_cluster(items, lambda item: _batch_work(item, out, ctl), address=ray_address, quiet=True)

    import threading

    def killer() -> None:
        pid = _until("the file to start", lambda: _pids(ctl))[0]
        assert pid != os.getpid()
        # the pending marker is written before the task runs, and stays while it does
        assert pending_marker(out / "b.png").exists()
        os.kill(pid, signal.SIGKILL)
        (ctl / "go").touch()

    t = threading.Thread(target=killer)
    t.start()
    report = run(resume=False)
    t.join()
    assert report.failed == [] and len(report.done) == 4, report.failed
    assert len(_pids(ctl)) == 2  # b ran twice
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["a.png", "a.sfumato.json", "b.png", "b.sfumato.json", "c.png", "c.sfumato.json",
                     "sub/d.png", "sub/d.sfumato.json"], names  # no marker, no temp, no duplicate
    assert clean_out_dir(out) == []
    assert {p: p.read_bytes() for p in src.rglob("*.png")} == before
    again = run(resume=True)
    assert len(again.skipped) == 4 and again.done == [] and again.failed == []


def test_serve_with_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    """``sfumato serve --executor ray`` with a wrong address: one line naming what to do, status 2, at once
    (Ray alone would retry for minutes)."""
    port = _free_port()  # nothing listens there
    r = subprocess.run([sys.executable, "-m", "sfumato.cli", "serve", "--executor", "ray", "--ray-address",
                        f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"error: cannot connect to the Ray cluster at 127.0.0.1:{port} (Connection refused); "
                                "start one with 'ray start --head' and pass --ray-address auto, or the head's address")
    r = subprocess.run([sys.executable, "-m", "sfumato.cli", "serve", "--ray-address", "auto", "--data-dir",
                        str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == "error: --ray-address needs --executor ray", r.stderr


def _fake_cloak_file(src: Any, out_dir: Any, cfg: Any = None, *, output_format: str | None = None,
                     jpeg_quality: int = 98, overwrite: bool = False, rel_stem: str | None = None, **_: Any) -> Any:
    """A stand-in for :func:`sfumato.api.cloak_file` (runs in the Ray workers): the image saved by the
    atomic writer, then its manifest with the source's SHA-256, as the API writes them."""
    import hashlib

    import sfumato.io as sio
    from sfumato.io.atomic import write_json_atomic
    from sfumato.io.outputs import manifest_path_for

    src, out_dir = Path(src), Path(out_dir)
    img = sio.load_image(src)
    stem = rel_stem or src.stem
    out = sio.save_image(img, np.clip(img.rgb + 2 / 255, 0, 1).astype(np.float32), out_dir / f"{stem}.png",
                         format="PNG", overwrite=overwrite)

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    manifest = {"source": {"file": src.name, "sha256": sha(src)},
                "output": {"file": out.name, "format": "PNG", "sha256": sha(out)},
                "achieved": {"lpips_alex": 0.01, "linf": 2 / 255}, "latent": {"taef2": {"relative_reduction": 0.3}},
                "target": {"style": "fake"}, "timing_s": {"file_total": 0.0}, "worker_pid": os.getpid()}
    mpath = manifest_path_for(out_dir, stem)
    write_json_atomic(mpath, manifest, overwrite=True)
    return SimpleNamespace(output=out, manifest=manifest, manifest_path=mpath)


def test_cli_cloak_on_the_cluster(ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``sfumato cloak DIR -o OUT --cluster ADDRESS``: each file runs in a Ray worker, the outputs and
    manifests are as a local run writes them, nothing else is left, and ``--resume`` skips them all."""
    import sfumato.api
    from sfumato.cli import main

    monkeypatch.setattr(sfumato.api, "cloak_file", _fake_cloak_file)
    src, out = tmp_path / "art", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    for i, name in enumerate(["a", "b", "sub/c"]):
        (src / f"{name}.png").write_bytes(_png(NORMAL, seed=200 + i))
    args = ["cloak", str(src), "-o", str(out), "--cluster", ray_address, "--quiet", "--no-verdict"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "cloak: 3 done, 0 skipped (resume), 0 failed" in err, err
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["a.png", "a.sfumato.json", "b.png", "b.sfumato.json", "sub/c.png", "sub/c.sfumato.json"]
    pids = {json.loads(p.read_text())["worker_pid"] for p in out.rglob("*.sfumato.json")}
    assert os.getpid() not in pids  # the work ran in Ray workers, not in this process
    assert main([*args, "--resume"]) == 0
    assert "cloak: 0 done, 3 skipped (resume), 0 failed" in capsys.readouterr().err
