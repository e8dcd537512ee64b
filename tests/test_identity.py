"""One house: the command line, the Python API and the HTTP server are shells over the same code, so the
same image, preset and seed give the same pixels and the same manifest configuration through all three.

Real TAEF2/LPIPS/MobileNet weights and real images (slow tier); fast preset on 128-pixel images.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sfumato.api import cloak_file, poison_file
from sfumato.cli import main
from sfumato.config import CloakConfig, PoisonConfig
from sfumato.server import ServerSettings
from sfumato.server.app import create_app
from sfumato.targets.anchors import load_anchor_folder

SEED = 3


def _pixels(data: bytes | Path) -> np.ndarray:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return np.asarray(im)


def _written(manifest_path: Path) -> tuple[np.ndarray, dict]:
    """The image a manifest describes, as written beside it: (its pixels, the manifest as saved)."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return _pixels(manifest_path.parent / manifest["output"]["file"]), manifest


def _cli_result(out_dir: Path) -> tuple[np.ndarray, dict]:
    """The one image the command wrote to ``out_dir``: (its pixels, its manifest)."""
    found = sorted(out_dir.glob("*.sfumato.json"))
    assert len(found) == 1, found
    return _written(found[0])


@pytest.fixture(scope="module")
def inputs(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 128-pixel painting, a dog photo downscaled to 128 pixels, and four cat photos as anchors (in
    ``anchors/cat/``, the layout a server's anchors folder has)."""
    d = tmp_path_factory.mktemp("identity-inputs")
    artist = sorted(p for p in (corpus_dir / "art128").iterdir() if p.is_dir())[0]
    painting = d / "painting.jpg"
    shutil.copyfile(sorted(artist.glob("*.jpg"))[0], painting)
    dog = d / "dog.png"
    with Image.open(sorted((corpus_dir / "pets" / "dog").glob("*.jpg"))[0]) as im:
        im = im.convert("RGB")
        im.thumbnail((128, 128), Image.Resampling.LANCZOS)
        im.save(dog)
    cats = d / "anchors" / "cat"
    cats.mkdir(parents=True)
    for p in sorted((corpus_dir / "pets" / "cat").glob("*.jpg"))[:4]:
        shutil.copyfile(p, cats / p.name)
    return {"painting": painting, "dog": dog, "anchors": d / "anchors", "cats": cats}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, inputs: dict[str, Path]):
    settings = ServerSettings(data_dir=tmp_path_factory.mktemp("identity-server"), workers=1,
                              models_dir=models_dir, anchors_dir=inputs["anchors"])  # no effort override
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


def _through_server(client: TestClient, src: Path, options: dict[str, str]) -> tuple[np.ndarray, dict]:
    """Submit one image, wait for the job, download the protected file: (its pixels, its manifest)."""
    r = client.post("/v1/jobs", data={**options, "seed": str(SEED), "ai_view": "false"},
                    files=[("images", (src.name, src.read_bytes(), "application/octet-stream"))])
    assert r.status_code == 202, r.text
    url = r.json()["url"]
    deadline = time.monotonic() + 300
    while (job := client.get(url).json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "done", job
    im = job["images"][0]
    out = client.get(im["files"]["output"]["url"])
    assert out.status_code == 200
    manifest = json.loads(client.get(im["files"]["manifest"]["url"]).content)
    return _pixels(out.content), manifest


def test_cloak_is_identical_through_cli_api_and_server(inputs: dict[str, Path], server, tmp_path: Path) -> None:
    src = inputs["painting"]
    assert main(["cloak", str(src), "-o", str(tmp_path / "cli"), "--quality", "fast", "--seed", str(SEED),
                 "--quiet"]) == 0
    api = cloak_file(src, tmp_path / "api", CloakConfig.preset(quality="fast", seed=SEED))
    server_px, server_manifest = _through_server(server, src, {"mode": "cloak", "quality": "fast"})

    cli_px, cli_manifest = _cli_result(tmp_path / "cli")
    api_px, api_manifest = _written(api.manifest_path)
    assert cli_px.shape == (128, 128, 3) and np.abs(cli_px.astype(int) - _pixels(src).astype(int)).max() > 0
    np.testing.assert_array_equal(api_px, cli_px)
    np.testing.assert_array_equal(server_px, cli_px)
    assert cli_manifest["config"] == api_manifest["config"] == server_manifest["config"]
    assert cli_manifest["target"] == api_manifest["target"] == server_manifest["target"]


def test_poison_is_identical_through_cli_api_and_server(inputs: dict[str, Path], server, tmp_path: Path) -> None:
    src = inputs["dog"]
    assert main(["poison", str(src), "-o", str(tmp_path / "cli"), "--concept", "dog", "--target", "cat",
                 "--anchors", str(inputs["cats"]), "--quality", "fast", "--seed", str(SEED), "--force",
                 "--quiet"]) == 0
    cfg = PoisonConfig.preset(concept="dog", target="cat", quality="fast", seed=SEED)
    api = poison_file(src, tmp_path / "api", cfg, load_anchor_folder(inputs["cats"], concept="cat"), force=True)
    server_px, server_manifest = _through_server(server, src,
                                                 {"mode": "poison", "concept": "dog", "target": "cat",
                                                  "quality": "fast"})

    cli_px, cli_manifest = _cli_result(tmp_path / "cli")
    api_px, api_manifest = _written(api.manifest_path)
    assert np.abs(cli_px.astype(int) - _pixels(src).astype(int)).max() > 0
    np.testing.assert_array_equal(api_px, cli_px)
    np.testing.assert_array_equal(server_px, cli_px)
    assert cli_manifest["config"] == api_manifest["config"] == server_manifest["config"]
    assert cli_manifest["anchor"]["name"] == api_manifest["anchor"]["name"] == server_manifest["anchor"]["name"]
