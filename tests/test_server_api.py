"""HTTP API of ``sfumato serve`` (FastAPI TestClient), with real TAEF2/LPIPS weights and a tiny search effort
so a job takes seconds: submission, validation and limits, queue bound (429 + Retry-After), progress,
results and manifests, files and zip, deletion (queued and running), TTL clean-up, auth and origin checks."""

from __future__ import annotations

import io
import json
import re
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sfumato.config import Effort
from sfumato.server import ServerSettings, is_loopback
from sfumato.server.app import create_app
from sfumato.server.errors import QueueFull
from sfumato.server.jobs import JobRunner
from sfumato.server.modes import MODES, JobOptions, Mode, ModeCall
from sfumato.server.store import JobStore
from sfumato.server.uploads import sanitise_display_name

TINY = Effort(steps=2, resolution=64, calibration_steps=2)
FAST = {"quality": "fast", "target_style": "mosaic", "ai_view": "true"}
UUID_NAME = re.compile(r"^[0-9a-f]{32}(\.[a-z0-9_]+)+$")


def _png(src: Path, size: tuple[int, int]) -> bytes:
    with Image.open(src) as im:
        buf = io.BytesIO()
        im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(src: Path, size: tuple[int, int]) -> bytes:
    with Image.open(src) as im:
        buf = io.BytesIO()
        im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(buf, format="JPEG", quality=97)
    return buf.getvalue()


@pytest.fixture(scope="module")
def images(corpus_dir: Path) -> dict[str, bytes]:
    return {
        "monet.png": _png(corpus_dir / "art" / "claude_monet" / "ace_Impressionism_claude-monet_0.png", (96, 72)),
        "dog.jpg": _jpeg(sorted((corpus_dir / "photos" / "dog").glob("*.jpg"))[0], (80, 80)),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, corpus_dir: Path):
    data = tmp_path_factory.mktemp("server-data")
    settings = ServerSettings(data_dir=data, workers=1, max_queue=1, max_upload_bytes=256 * 1024,
                              max_pixels=200_000, max_images_per_job=4, ttl_hours=1.0, models_dir=models_dir,
                              anchors_dir=corpus_dir / "photos", effort_override=TINY)  # photos/cat/: anchors
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client, settings


def _wait(client: TestClient, url: str, states: tuple[str, ...], timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(url)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout} s: {job}"
        time.sleep(0.3)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _job_dirs(settings: ServerSettings) -> set[str]:
    return {p.name for p in (settings.data_dir / "jobs").iterdir()}


# ------------------------------------------------------------------------------------------ pure pieces


def test_settings_validate_and_round_trip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token is required"):
        ServerSettings(data_dir=tmp_path, host="0.0.0.0")
    with pytest.raises(ValueError, match="at least 16"):
        ServerSettings(data_dir=tmp_path, host="0.0.0.0", token="short")
    with pytest.raises(ValueError, match="max_queue"):
        ServerSettings(data_dir=tmp_path, max_queue=0)
    s = ServerSettings(data_dir=tmp_path, host="0.0.0.0", token="x" * 24, effort_override=TINY, workers=2)
    assert ServerSettings.from_json(s.to_json()) == s
    assert s.to_dict(redact_token=True)["token"] == "***"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


def test_display_names_are_sanitised() -> None:
    assert sanitise_display_name("../../etc/passwd") == "passwd"
    assert sanitise_display_name("C:\\Users\\me\\..\\art work.png") == "art work.png"
    assert sanitise_display_name("\x00<img src=x onerror=alert(1)>.png") == "_img src_x onerror_alert(1)_.png"
    assert sanitise_display_name("a\u202egnp.exe\n;rm -rf $(x).png") == "agnp.exe_rm -rf _(x).png"
    assert sanitise_display_name(".hidden") == "hidden"
    assert sanitise_display_name("") == "image" and sanitise_display_name(None) == "image"
    assert sanitise_display_name("Ölgemälde – 夜.png") == "Ölgemälde _ 夜.png"
    assert len(sanitise_display_name("a" * 500 + ".png")) <= 120


def test_job_options_refuse_paths_and_unknown_values() -> None:
    with pytest.raises(ValueError, match="style folders"):
        JobOptions(target_style="/etc")
    with pytest.raises(ValueError, match="unknown mode"):
        JobOptions(mode="erase")
    with pytest.raises(ValueError, match="needs both concept and target"):
        JobOptions(mode="poison")
    with pytest.raises(ValueError, match="jpeg_quality"):
        JobOptions(jpeg_quality=80)
    o = JobOptions(mode="poison", concept="dog", target="cat", seed=3)
    assert JobOptions.from_dict(json.loads(json.dumps(o.to_dict()))) == o


@pytest.mark.parametrize("mode", ["cloak", "poison", "protect"])
def test_modes_build_the_configs_the_command_line_builds(mode: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mode's configuration is the CLI's for the same options (so the same image and seed give the
    same output through the CLI, the server and the API): poison and protect take the poison row of
    budgets (LPIPS 0.05/0.07/0.10 per intensity, L∞ 24/255) and efforts; cloak the cloak presets."""
    import sfumato.api
    import sfumato.targets.anchors
    from sfumato.config import Budget, CloakConfig, PoisonConfig, ProtectConfig

    seen: list[tuple] = []
    for fn in ("cloak_file", "poison_file", "protect_file"):
        monkeypatch.setattr(sfumato.api, fn, lambda src, out_dir, cfg, *a, **kw: seen.append((cfg, a, kw)))
    monkeypatch.setattr(sfumato.targets.anchors, "load_anchor_folder", lambda folder, concept: f"anchors of {concept}")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "cat1.png").write_bytes(b"")  # a folder of cat pictures: the anchors of 'cat'
    settings = ServerSettings(data_dir=tmp_path / "data", anchors_dir=tmp_path)
    lpips = {"low": 0.05, "default": 0.07, "high": 0.10}
    from sfumato.config import preset_effort

    # the one preset table (protect shares the poison's steps but runs at its one work view)
    effort = {q: preset_effort("poison", q) for q in ("fast", "default", "slow")}
    protect_effort = {q: preset_effort("protect", q) for q in ("fast", "default", "slow")}
    for intensity in lpips:
        for quality in effort:
            kw = {"concept": "dog", "target": "cat"} if mode != "cloak" else {}
            opts = JobOptions(mode=mode, intensity=intensity, quality=quality, target_style="mosaic", seed=5, **kw)
            MODES[mode].prepare(opts, settings, {})(ModeCall(tmp_path / "a.png", tmp_path, "a", lambda i, n: None))
            cfg, args, file_kw = seen.pop()
            budget = Budget(lpips=lpips[intensity], linf=24 / 255)
            expected = {
                "cloak": CloakConfig.preset(intensity=intensity, quality=quality, target_style="mosaic", seed=5),
                "poison": PoisonConfig(concept="dog", target="cat", budget=budget, effort=effort[quality], seed=5),
                "protect": ProtectConfig(concept="dog", target="cat", budget=budget, effort=protect_effort[quality],
                                         target_style="mosaic", seed=5),
            }[mode]
            assert cfg == expected, (intensity, quality)
            assert args == (() if mode == "cloak" else ("anchors of cat",))
            assert ("xmp" in file_kw) == (mode == "protect")  # protect reserves the rights by default, as the CLI


def test_store_bounds_queue_and_recovers_interrupted_images(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    img = {"id": "0" * 32, "display_name": "a.png", "input_file": "0" * 32 + ".original.png", "width": 8,
           "height": 8, "format": "PNG", "bytes": 10}
    store.insert_job("a" * 32, JobOptions(), [img], max_queue=1, retry_after=lambda c: 7)
    with pytest.raises(QueueFull) as e:
        store.insert_job("b" * 32, JobOptions(), [img], max_queue=1, retry_after=lambda c: 7)
    assert e.value.status == 429 and e.value.headers == {"Retry-After": "7"}
    assert store.claim_next() == "a" * 32 and store.claim_next() is None
    assert store.start_image("a" * 32, 0) == 1
    # a crash (kill -9) leaves the image running; a restart puts it and its job back in the queue
    assert store.recover() == (1, 1)
    job = store.job("a" * 32)
    assert job is not None and job["status"] == "queued" and job["images"][0]["status"] == "queued"
    assert job["images"][0]["attempts"] == 1
    assert Path(tmp_path / "jobs.sqlite3").exists()
    with store.read() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ------------------------------------------------------------------------------------------ over HTTP


def test_health_options_and_openapi(server) -> None:
    client, settings = server
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["workers"] == 1 and h["max_queue"] == 1 and h["auth_required"] is False
    o = client.get("/v1/options").json()
    assert o["modes"]["cloak"]["available"] is True
    assert set(o["modes"]) == {"cloak", "poison", "protect"}
    assert "mosaic" in o["target_styles"] and "dog" in o["concepts"]
    assert o["limits"]["max_images_per_job"] == 4
    spec = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/files/{name}", "/v1/jobs/{job_id}/zip",
            "/v1/health"} <= set(spec["paths"])
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["images"]["type"] == "array"
    assert "429" in spec["paths"]["/v1/jobs"]["post"]["responses"]
    page = client.get("/")
    assert page.status_code == 200 and "Sfumato" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in re.sub(r'href="/[^"]*"', "", page.text.split("<body>")[0])  # no CDN in <head>
    assert client.get("/static/app.js").status_code == 200


def test_uploads_are_validated(server, images) -> None:
    client, settings = server
    before = _job_dirs(settings)

    def post(files, data=None):  # noqa: ANN001, ANN202
        return client.post("/v1/jobs", data={**FAST, **(data or {})}, files=files)

    r = post([("images", ("evil.png", b"#!/bin/sh\necho pwned\n" * 10, "image/png"))])
    assert r.status_code == 415 and "not an image" in r.json()["detail"] and "evil.png" in r.json()["detail"]
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    r = post([("images", ("pic.png", gif.getvalue(), "image/png"))])
    assert r.status_code == 415 and "GIF" in r.json()["detail"]
    big = io.BytesIO()
    Image.new("RGB", (600, 600), (200, 10, 10)).save(big, format="PNG")
    r = post([("images", ("big.png", big.getvalue(), "image/png"))])
    assert r.status_code == 413 and "megapixels" in r.json()["detail"]
    noisy = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(noisy, format="PNG")
    assert len(noisy.getvalue()) > settings.max_upload_bytes
    r = post([("images", ("noisy.png", noisy.getvalue(), "image/png"))])
    assert r.status_code == 413 and "upload limit" in r.json()["detail"]
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)) + \
        _chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _chunk(b"IEND", b"")  # claims 2.5 gigapixels
    r = post([("images", ("bomb.png", bomb, "image/png"))])
    assert r.status_code == 413 and "pixel limit" in r.json()["detail"]
    r = post([("images", (f"{i}.png", images["monet.png"], "image/png")) for i in range(5)])
    assert r.status_code == 413 and "at most 4" in r.json()["detail"]
    r = client.post("/v1/jobs", data=FAST, files=[("images", ("x.bin", b"\0" * (3 * 1024 * 1024), "image/png"))])
    assert r.status_code == 413 and "limit" in r.json()["detail"]  # whole body over the per-job limit
    assert post([]).status_code in (415, 422)
    assert client.post("/v1/jobs", data=FAST).status_code in (415, 422)
    for bad, msg in (({"intensity": "max"}, "unknown intensity"), ({"target_style": "/etc"}, "style folders"),
                     ({"colour": "red"}, "unknown option"), ({"seed": "x"}, "integer"),
                     ({"mode": "poison"}, "concept")):
        r = post([("images", ("a.png", images["monet.png"], "image/png"))], bad)
        assert r.status_code == 422 and msg in r.json()["detail"], (bad, r.text)
    assert _job_dirs(settings) == before  # nothing refused was kept


def test_streamed_bodies_over_the_limit_are_cut_off(server) -> None:
    client, _ = server

    def chunks():  # noqa: ANN202  (no Content-Length: the limit is enforced while reading)
        for _ in range(6):
            yield b"--x\r\n" + b"\0" * (512 * 1024)

    r = client.post("/v1/jobs", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_cli_refuses_an_exposed_server_without_token(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sfumato.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert "token is required" in capsys.readouterr().err


def test_origin_host_and_ids_are_checked(server, images) -> None:
    client, _ = server
    r = client.post("/v1/jobs", data=FAST, files=[("images", ("a.png", images["monet.png"], "image/png"))],
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    assert client.get("/v1/health", headers={"Host": "evil.example"}).status_code == 421
    assert client.get("/v1/jobs/not-a-job").status_code == 404
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.delete("/v1/jobs/" + "0" * 32).status_code == 404


def test_job_lifecycle(server, images) -> None:
    """Submit → queue bound → progress → results within budget → files/zip → TTL clean-up."""
    client, settings = server
    files = [("images", ("../../Water Lilies.png", images["monet.png"], "image/png")),
             ("images", ("dog.png", images["dog.jpg"], "image/png"))]  # a JPEG named .png: content decides
    r = client.post("/v1/jobs", data=FAST, files=files)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.headers["location"] == f"/v1/jobs/{job_id}" and r.json()["images"] == 2
    url = f"/v1/jobs/{job_id}"
    _wait(client, url, ("running", "done"))

    # the queue holds one waiting job: the next is accepted, the one after refused with Retry-After
    r2 = client.post("/v1/jobs", data=FAST, files=[("images", ("b.png", images["monet.png"], "image/png"))])
    assert r2.status_code == 202, r2.text
    queued = client.get(r2.json()["url"]).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 0
    r3 = client.post("/v1/jobs", data=FAST, files=[("images", ("c.png", images["monet.png"], "image/png"))])
    assert r3.status_code == 429 and int(r3.headers["retry-after"]) >= 1 and "queue is full" in r3.json()["detail"]
    # deleting a queued job frees its slot and its files
    assert client.delete(r2.json()["url"]).status_code == 204
    assert client.get(r2.json()["url"]).status_code == 404
    assert r2.json()["id"] not in _job_dirs(settings)

    seen_progress = []
    deadline = time.monotonic() + 300
    while True:
        job = client.get(url).json()
        seen_progress.append(job["progress"])
        if job["status"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["eta_s"] == 0.0 and job["counts"]["done"] == 2
    assert all(a <= b for a, b in zip(seen_progress, seen_progress[1:], strict=False))
    assert job["expires"] == pytest.approx(job["finished"] + 3600, abs=1)

    originals = {"Water Lilies.png": images["monet.png"], "dog.png": images["dog.jpg"]}
    for im in job["images"]:
        assert im["status"] == "done" and im["error"] is None
        m = im["manifest"]
        assert m["mode"] == "cloak" and m["within_budget"] is True
        assert m["config"]["effort"]["steps"] == TINY.steps  # the server's effort override applied
        lp = m["achieved"][f"lpips_{m['budget']['lpips_net']}"]
        assert 0 < lp <= m["budget"]["lpips"]
        assert im["summary"]["lpips"] == lp and im["summary"]["target"] == "mosaic"
        f = im["files"]
        assert {"input", "output", "manifest", "ai_view_before", "ai_view_after"} <= set(f)
        assert all(UUID_NAME.match(x["name"]) for x in f.values())
        out = client.get(f["output"]["url"])
        assert out.status_code == 200 and out.headers["x-content-type-options"] == "nosniff"
        assert f["output"]["download_name"] in out.headers["content-disposition"].replace("%20", " ")
        original = np.asarray(Image.open(io.BytesIO(originals[im["name"]])).convert("RGB"), dtype=np.int16)
        protected = np.asarray(Image.open(io.BytesIO(out.content)).convert("RGB"), dtype=np.int16)
        assert protected.shape == original.shape
        diff = np.abs(protected - original)
        assert diff.max() > 0, "the protected image must differ from the original"
        if im["format"] == "PNG":  # lossless: the change is exactly what was measured
            assert diff.max() <= round(m["budget"]["linf"] * 255) + 1
        assert json.loads(client.get(f["manifest"]["url"]).content) == m
    names = {im["name"] for im in job["images"]}
    assert names == {"Water Lilies.png", "dog.png"}
    dog = next(im for im in job["images"] if im["name"] == "dog.png")
    # a JPEG upload is protected losslessly by default (re-encoding would break the L∞ budget)
    assert dog["format"] == "JPEG" and dog["files"]["output"]["name"].endswith(".png")

    # only UUID names on disk, never the uploader's
    stored = [p.name for p in (settings.data_dir / "jobs" / job_id).rglob("*") if p.is_file()]
    assert stored and all(UUID_NAME.match(n) for n in stored), stored
    # a name not recorded by the job (e.g. a traversal attempt) is not served
    for bad in ("..%2F..%2Fjobs.sqlite3", "jobs.sqlite3", "0" * 32 + ".png"):
        assert client.get(f"{url}/files/{bad}").status_code == 404

    z = client.get(f"{url}/zip")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        listed = set(zf.namelist())
    assert {"Water Lilies.protected.png", "Water Lilies.sfumato.json", "dog.protected.png", "dog.sfumato.json",
            "dog.ai_view.after.png"} <= listed

    # results stay until their TTL; then the janitor removes rows and files
    runner = client.app.state.runner
    assert runner.cleanup(now=time.time()) == []
    assert client.get(url).status_code == 200
    assert runner.cleanup(now=job["expires"] + 1) == [job_id]
    assert client.get(url).status_code == 404 and job_id not in _job_dirs(settings)


def test_poison_mode_through_the_server(server, images) -> None:
    """The mode table runs sfumato.api.poison_file with the CLI's presets and the server's anchor folders."""
    client, _ = server
    r = client.post("/v1/jobs", data={"mode": "poison", "concept": "dog", "target": "cat", "quality": "fast"},
                    files=[("images", ("dog.jpg", images["dog.jpg"], "image/jpeg"))])
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["url"], ("done", "failed"))
    assert job["status"] == "done", job
    im = job["images"][0]
    m = im["manifest"]
    assert m["mode"] == "poison" and m["concept"] == "dog" and m["target"] == "cat" and m["within_budget"]
    assert m["anchor"]["source"]["kind"] == "folder" and m["config"]["effort"]["steps"] == TINY.steps
    assert {"output", "manifest", "caption"} <= set(im["files"]) and im["summary"]["target"] == "cat"
    # the plain verdict, as the CLI writes it, in the manifest file and the summary the page shows first
    assert m["verdict"]["protected"] in (True, False, None) and m["verdict"]["sentence"]
    assert im["summary"]["verdict"]["sentence"] == m["verdict"]["sentence"]
    assert client.get(im["files"]["manifest"]["url"]).json()["verdict"] == m["verdict"]
    assert "dog" in client.get(im["files"]["caption"]["url"]).text.lower()
    assert client.delete(r.json()["url"]).status_code == 204


def test_modes_that_cannot_run_fail_the_job_with_a_clear_error(server, images) -> None:
    client, _ = server
    # no anchor images of the target on this server: refused up front, in plain words
    r = client.post("/v1/jobs", data={"mode": "poison", "concept": "dog", "target": "bird"},
                    files=[("images", ("dog.jpg", images["dog.jpg"], "image/jpeg"))])
    assert r.status_code == 422, r.text
    assert "no anchor images of 'bird'" in r.json()["detail"] and "cat" in r.json()["detail"]
    # and a job that gets past it (the folder went away) fails with the same plain reason
    opts = JobOptions(mode="poison", concept="dog", target="bird")
    with pytest.raises(ValueError, match="no anchor images of 'bird'"):
        MODES["poison"].prepare(opts, client.app.state.settings, {})
    # a mode whose function this version lacks says so
    fake = Mode("future", "Future", "not written yet", ("sfumato.api:future_file",), MODES["cloak"].prepare)
    assert fake.missing() == "sfumato.api.future_file"
    assert "not available in this version" in str(fake.unavailable_message())
    assert all(m.missing() is None for m in MODES.values())


def test_deleting_a_running_job_stops_it(server, images) -> None:
    client, settings = server
    r = client.post("/v1/jobs", data=FAST, files=[("images", ("a.png", images["monet.png"], "image/png"))] * 2)
    assert r.status_code == 202
    _wait(client, r.json()["url"], ("running", "done"))
    assert client.delete(r.json()["url"]).status_code == 204
    assert client.get(r.json()["url"]).status_code == 404
    deadline = time.monotonic() + 120
    while client.get("/v1/health").json()["busy"] or r.json()["id"] in _job_dirs(settings):
        assert time.monotonic() < deadline, "the worker did not drop the deleted job"
        time.sleep(0.3)


def test_one_server_per_data_dir(server) -> None:
    _, settings = server
    with pytest.raises(RuntimeError, match="another sfumato server is using"):
        JobRunner(settings).start()


def test_token_is_required_when_set(tmp_path: Path, models_dir: Path, images) -> None:
    token = "t0ken-" + "x" * 20
    settings = ServerSettings(data_dir=tmp_path, token=token, models_dir=models_dir, effort_override=TINY)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        assert client.get("/v1/health").json()["auth_required"] is True  # liveness stays open
        r = client.get("/v1/options")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/options", headers={"Authorization": "Bearer wrong-token-wrong"}).status_code == 401
        assert client.post("/v1/jobs", data=FAST,
                           files=[("images", ("a.png", images["monet.png"], "image/png"))]).status_code == 401
        assert list((tmp_path / "jobs").iterdir()) == []
        ok = client.get("/v1/options", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["modes"]["cloak"]["available"]


# ------------------------------------------------------------------------------------------ fast tier (issue 20)


def _stand_in(opts: JobOptions, settings: ServerSettings, cache: dict) -> Any:
    """A mode that copies the image and writes a manifest with a verdict record (no weights)."""
    from sfumato.api import FileResult
    from sfumato.verification.verdicts import concept_verdict

    def protect(c: ModeCall) -> FileResult:
        out = c.out_dir / f"{c.stem}.png"
        out.write_bytes(c.src.read_bytes())
        manifest = {"mode": opts.mode, "within_budget": True, "budget": {"lpips": 0.05, "linf": 24 / 255},
                    "verdict": concept_verdict(concept="dog", target="cat", scores={"dog": 0.99, "cat": 0.01},
                                               label="dog")}
        mpath = c.out_dir / f"{c.stem}.sfumato.json"
        mpath.write_text(json.dumps(manifest))
        return FileResult(source=c.src, output=out, manifest_path=mpath, manifest=manifest)

    return protect


def _report(original: Path, protected: Path, manifest: dict, out_dir: Path, stem: str, **kw: Any) -> list[Path]:
    html = out_dir / f"{stem}.report.html"
    html.write_text(f"<html><head><title>Sfumato check: {protected.name}</title><style>h1{{color:red}}</style>"
                    f"</head><body><h1>{protected.name}</h1></body></html>")
    js = out_dir / f"{stem}.check.json"
    js.write_text("{}")
    return [html, js]


def _small_png(size: tuple[int, int] = (48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_poison_needs_anchors_and_defaults_to_a_sensible_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfumato.server.modes import anchor_targets, poison_status

    monkeypatch.setenv("SFUMATO_CORPUS_DIR", str(tmp_path / "corpus"))  # a corpus without photos yet
    bare = ServerSettings(data_dir=tmp_path / "a")
    with TestClient(create_app(bare), base_url="http://127.0.0.1") as client:
        o = client.get("/v1/options").json()
        assert o["poison"]["available"] is False and o["anchor_targets"] == []
        assert "--anchors-dir" in o["poison"]["reason"] and "Error" not in o["poison"]["reason"]
        assert o["defaults"]["concept"] is None and o["defaults"]["target"] is None
        r = client.post("/v1/jobs", data={"mode": "poison", "concept": "dog", "target": "cat"},
                        files=[("images", ("a.png", _small_png(), "image/png"))])
        assert r.status_code == 422 and r.json()["detail"] == o["poison"]["reason"]
        assert not list((tmp_path / "a" / "jobs").iterdir())  # nothing stored
        # the presets in words, with an expected time that grows with the effort, and non-empty hints
        q = o["qualities"]
        assert [q[k]["label"] for k in ("fast", "default", "slow")] == ["Quick", "Standard", "Thorough"]
        assert 0 < q["fast"]["expected_s"] < q["default"]["expected_s"] < q["slow"]["expected_s"]
        assert all(v["hint"] for v in (*q.values(), *o["intensities"].values()))
        assert o["measured_image_s"] is None  # nothing finished here yet
    anchors = tmp_path / "anchors"
    for name, files in (("cat", ["c.jpg"]), ("dog", ["d.png"]), ("bird", []), ("not_a_concept", ["x.png"])):
        (anchors / name).mkdir(parents=True)
        for f in files:
            (anchors / name / f).write_bytes(b"")
    s = ServerSettings(data_dir=tmp_path / "b", anchors_dir=anchors)
    assert anchor_targets(s) == ["cat", "dog"]  # an empty folder or an unknown concept offers nothing
    st = poison_status(s)
    assert st["available"] and (st["concept"], st["target"]) == ("dog", "cat")
    (anchors / "cat" / "c.jpg").unlink()
    assert (poison_status(s)["concept"], poison_status(s)["target"]) == ("cat", "dog")
    # without --anchors-dir, the photos of the reference corpus serve (shared or set with sfumato config)
    (tmp_path / "corpus" / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "corpus" / "photos" / "cat" / "c.jpg").write_bytes(b"")
    st = poison_status(bare)
    assert st["available"] and st["anchor_targets"] == ["cat"] and st["source"] == "the photos of the reference corpus"


def test_jobs_are_listed_and_reports_open_from_a_signed_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfumato.server import results

    monkeypatch.setitem(MODES, "cloak", Mode("cloak", "Style cloak", "stand-in", (), _stand_in))
    monkeypatch.setattr(results, "verification_report", _report)
    token = "t0ken-" + "y" * 20
    auth = {"Authorization": f"Bearer {token}"}
    settings = ServerSettings(data_dir=tmp_path / "data", token=token, workers=1)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        assert client.get("/v1/jobs").status_code == 401
        assert client.get("/v1/jobs", headers=auth).json() == {"jobs": []}
        ids = []
        for name in ("Ölbild <1>.png", "second.png"):
            r = client.post("/v1/jobs", data={"check": "true"}, headers=auth,
                            files=[("images", (name, _small_png(), "image/png"))])
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
            deadline = time.monotonic() + 30
            while (job := client.get(r.json()["url"], headers=auth).json())["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert job["status"] == "done", job
        assert isinstance(client.get("/v1/options", headers=auth).json()["measured_image_s"], float)
        listed = client.get("/v1/jobs", headers=auth).json()["jobs"]
        assert [j["id"] for j in listed] == ids[::-1]  # newest first
        assert listed[1]["names"] == ["Ölbild _1_.png"] and listed[1]["images"] == 1 and listed[1]["status"] == "done"
        # the verdict is in each image's summary
        im = client.get(f"/v1/jobs/{ids[0]}", headers=auth).json()["images"][0]
        assert im["summary"]["verdict"]["protected"] is False
        assert im["summary"]["verdict"]["sentence"].startswith("Not protected: a model still sees a dog")
        # the report: a signed link, then the page itself without the token header, styled and titled
        report = im["files"]["report"]
        assert client.get(report["url"] + "/link").status_code == 401
        link = client.get(report["url"] + "/link", headers=auth).json()["url"]
        r = client.get(link)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "attachment" not in r.headers.get("content-disposition", "")
        csp = r.headers["content-security-policy"]
        assert "style-src 'unsafe-inline'" in csp and "sandbox" in csp and "script-src" not in csp
        assert "<title>Sfumato check: Ölbild _1_.png</title>" in r.text and im["id"] not in r.text
        assert client.get(link.replace("sig=", "sig=0")).status_code == 403
        assert client.get(link.replace(ids[0], ids[1])).status_code == 403  # a link opens one report only
        exp = int(link.split("exp=")[1].split("&")[0])
        monkeypatch.setattr(time, "time", lambda: exp + 1.0)
        assert client.get(link).status_code == 403  # expired
        monkeypatch.undo()
        assert client.get(f"/v1/jobs/{ids[0]}/files/{im['files']['output']['name']}/link", headers=auth).status_code == 404


# ------------------------------------------------------------------------------------------ fast tier: stages, ETA, preview


def _gated(gates: dict[str, threading.Event]) -> Any:
    """A stand-in mode that holds at each stage of an image until the test sets its gate."""

    def prepare(opts: JobOptions, settings: ServerSettings, cache: dict) -> Any:
        inner = _stand_in(opts, settings, cache)

        def protect(c: ModeCall) -> Any:
            assert gates["optimise"].wait(30)  # preparing the target
            for i in range(1, 35):
                c.progress(i, 80)
            assert gates["save"].wait(30)  # optimising: step 34 of 80
            for i in range(35, 81):
                c.progress(i, 80)
            assert gates["check"].wait(30)  # calibrating to the budget and saving
            assert c.stage is not None
            c.stage("check")
            assert gates["done"].wait(30)  # checking the saved file
            return inner(c)

        return protect

    return prepare


def test_a_running_image_names_its_stage_and_its_eta_never_jumps_back(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from sfumato.server import eta, results

    gates = {k: threading.Event() for k in ("optimise", "save", "check", "done", "report")}

    def slow_report(*a: Any, **kw: Any) -> list[Path]:
        assert gates["report"].wait(30)
        return _report(*a, **kw)

    monkeypatch.setitem(MODES, "cloak", Mode("cloak", "Style cloak", "stand-in", (), _gated(gates)))
    monkeypatch.setattr(results, "verification_report", slow_report)
    seen: list[dict] = []
    try:
        with TestClient(create_app(ServerSettings(data_dir=tmp_path / "data", workers=1)),
                        base_url="http://127.0.0.1") as client:
            r = client.post("/v1/jobs", data={"check": "true"}, files=[("images", ("a.png", _small_png(), "image/png"))])
            assert r.status_code == 202, r.text
            url = r.json()["url"]

            def until(key: str) -> dict:
                deadline = time.monotonic() + 30
                while True:
                    job = client.get(url).json()
                    seen.append(job)
                    st = job["images"][0]["stage"]
                    if st is not None and st["key"] == key:
                        return job
                    assert time.monotonic() < deadline, job
                    time.sleep(0.02)

            job = until("prepare")
            im = job["images"][0]
            assert im["status"] == "running" and im["stage"]["label"] == "preparing the target"
            assert im["step"] is None and job["stage"] == im["stage"]
            assert im["eta_s"] > 0 and im["eta_error_s"] > 0 and not im["finishing"]
            gates["optimise"].set()
            im = until("optimise")["images"][0]
            assert im["stage"]["label"] == "optimising: step 34 of 80"
            assert (im["step"], im["steps"], im["stage"]["step"], im["stage"]["steps"]) == (34, 80, 34, 80)
            gates["save"].set()
            assert until("save")["images"][0]["stage"]["label"] == "calibrating to the budget and saving"
            gates["check"].set()
            assert until("check")["images"][0]["stage"]["label"] == "checking the saved file"
            gates["done"].set()
            job = until("report")
            assert job["images"][0]["stage"]["label"] == "writing the verification report"
            assert job["status"] == "running" and job["images"][0]["status"] == "running"
            gates["report"].set()
            job = _wait(client, url, ("done", "failed"), timeout=30)
            assert job["status"] == "done" and job["eta_s"] == 0 and job["images"][0]["stage"] is None
            assert not job["finishing"]
            # the next image of this kind is estimated from the stage times just measured
            runner = client.app.state.runner  # type: ignore[attr-defined]
            assert runner.costs("cloak", "default").rel == eta.HISTORY_REL
    finally:
        for g in gates.values():
            g.set()
    # over every poll, image and job alike: never up by more than the error stated before
    for key in ("job", "image"):
        shown = [(j["eta_s"], j["eta_error_s"]) if key == "job" else
                 (j["images"][0]["eta_s"], j["images"][0]["eta_error_s"]) for j in seen]
        for (a, ea), (b, _) in zip(shown, shown[1:], strict=False):
            assert b <= a + ea + 0.11, (key, a, ea, b)  # 0.1 s: the view rounds to tenths
    for j in seen:  # a few seconds while a stage still runs reads "finishing", never "~1 s left"
        im = j["images"][0]
        assert im["finishing"] == (im["status"] == "running" and im["eta_s"] < eta.FINISHING_S)


def test_the_verdict_is_its_own_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from sfumato.server.modes import _per_image
    from sfumato.verification import plain

    order: list[str] = []
    monkeypatch.setattr(plain, "file_verdict", lambda *a, **kw: order.append("verdict") or {})

    def protect(src: Path, out_dir: Path, config: Any, **kw: Any) -> Any:
        kw["progress"](1, 1)
        order.append("protected")
        return SimpleNamespace(output=out_dir / "a.png", manifest={}, manifest_path=None)

    run = _per_image(protect, SimpleNamespace(), JobOptions(), ServerSettings(data_dir=tmp_path))
    run(ModeCall(tmp_path / "a.png", tmp_path, "a", lambda i, n: order.append(f"step {i}/{n}"),
                 stage=lambda name: order.append(f"stage {name}")))
    assert order == ["step 1/1", "protected", "stage check", "verdict"]


def _preview_stand_in(calls: list[tuple]) -> Any:
    from sfumato.verification.verdicts import style_verdict

    def compute(rgb: np.ndarray, config: Any, *, models_dir: Path | None) -> dict:
        calls.append((rgb.shape, config.effort.resolution, config.effort.steps, config.budget.lpips))
        small = rgb[::2, ::2]
        verdict = style_verdict(artist="vincent_van_gogh", p_reference=0.9, scope="at the preview size",
                                readings=[{"view": "preview", "p_original": 0.9, "p_protected": 0.1,
                                           "prediction": "claude_monet"}], toward=0.3, target_style="mosaic")
        return {"before": small, "after": 1 - small, "verdict": verdict, "target": {"style": "mosaic"},
                "latent": {"taef2": {"relative_reduction": 0.3}}, "timing_s": {"total": 0.01}}

    return compute


def test_preview_answers_with_the_verdict_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from sfumato.commands.cloak import PREVIEW_SIDE, PREVIEW_STEPS
    from sfumato.config import preset_budget
    from sfumato.server import preview

    calls: list[tuple] = []
    monkeypatch.setattr(preview, "compute", _preview_stand_in(calls))
    data = tmp_path / "data"
    with TestClient(create_app(ServerSettings(data_dir=data, workers=1)), base_url="http://127.0.0.1") as client:
        r = client.post("/v1/preview", data={"intensity": "high", "quality": "slow"},
                        files=[("image", ("olive trees.png", _small_png((64, 48)), "image/png"))])
        assert r.status_code == 200, r.text
        pv = r.json()
        assert calls == [((48, 64, 3), PREVIEW_SIDE, PREVIEW_STEPS, preset_budget("cloak", "high").lpips)]
        assert (pv["name"], pv["width"], pv["height"]) == ("olive trees.png", 64, 48)
        assert (pv["side"], pv["steps"]) == (PREVIEW_SIDE, PREVIEW_STEPS)
        assert pv["verdict"]["protected"] is True and pv["verdict"]["sentence"].startswith("Protected")
        assert pv["target"] == "mosaic" and pv["latent_reduction"] == 0.3 and "nothing was saved" in pv["note"]
        for side in ("before", "after"):
            url = pv["ai_view"][side]
            assert url.startswith("data:image/png;base64,")
            with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
                assert im.size == (32, 24)
        # nothing protected (nor the upload) stays behind, and no job was made
        assert not (data / "previews").exists() or not any((data / "previews").iterdir())
        assert not any((data / "jobs").iterdir())
        assert client.get("/v1/jobs").json() == {"jobs": []}
        # what cannot be previewed says why in one line
        r = client.post("/v1/preview", data={"mode": "poison", "concept": "dog", "target": "cat"},
                        files=[("image", ("a.png", _small_png(), "image/png"))])
        assert r.status_code == 422 and "preview shows the style cloak" in r.json()["detail"]
        r = client.post("/v1/preview", data={"intensity": "low"})  # a form without the image
        assert r.status_code == 415 and "one 'image' file part" in r.json()["detail"]
        r = client.post("/v1/preview", files=[("image", ("a.png", b"not an image", "image/png"))])
        assert r.status_code == 415 and "not an image" in r.json()["detail"]
        r = client.post("/v1/preview", files=[("image", ("a.png", _small_png((20, 20)), "image/png"))])
        assert r.status_code == 422 and "too small" in r.json()["detail"]
        assert preview._BUSY.acquire(blocking=False)  # another preview is running
        try:
            r = client.post("/v1/preview", files=[("image", ("a.png", _small_png(), "image/png"))])
            assert r.status_code == 429 and r.headers["retry-after"] == "5"
        finally:
            preview._BUSY.release()

        def broken(*a: Any, **kw: Any) -> dict:
            raise FileNotFoundError("taef2 weights not found in /nowhere; set SFUMATO_MODELS_DIR")

        monkeypatch.setattr(preview, "compute", broken)
        r = client.post("/v1/preview", files=[("image", ("a.png", _small_png(), "image/png"))])
        assert r.status_code == 503 and r.json()["detail"].startswith("the preview could not be made: taef2 weights")
        assert "Error" not in r.json()["detail"]
        assert not any((data / "previews").iterdir()) and len(calls) == 1
        assert "/v1/preview" in client.get("/openapi.json").json()["paths"]


def test_preview_with_the_real_models(server, images) -> None:
    client, settings = server
    r = client.post("/v1/preview", data={"target_style": "mosaic"},
                    files=[("image", ("monet.png", images["monet.png"], "image/png"))])
    assert r.status_code == 200, r.text
    pv = r.json()
    assert pv["side"] == TINY.resolution and pv["steps"] == TINY.steps
    assert pv["verdict"] is not None and len(pv["verdict"]["sentence"]) > 20
    assert pv["ai_view"]["before"].startswith("data:image/png;base64,") and pv["target"] == "mosaic"
    assert not any((settings.data_dir / "previews").iterdir())
