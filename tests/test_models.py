"""Tests for ``sfumato.models``: resolution order, SHA-256 checks, pinned downloads and safe loading."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from sfumato import models
from sfumato.models import REGISTRY, ChecksumError, ModelNotFoundError

SMALL = "lpips/alex.pth"  # 6 kB: cheap to copy around


@pytest.fixture()
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No models folder, an empty cache in tmp, downloads off, and any network use is a test failure."""
    monkeypatch.delenv(models.ENV_MODELS_DIR, raising=False)
    monkeypatch.setenv(models.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setenv(models.ENV_ALLOW_DOWNLOAD, "0")

    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected network access: {args}")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    return tmp_path


def _copy(models_dir: Path, name: str, dest_root: Path) -> Path:
    dest = dest_root / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models_dir / name, dest)
    return dest


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# ------------------------------------------------------------------------------------------- registry


def test_registry_matches_the_shared_files(models_dir: Path) -> None:
    sums = {}
    for line in (models_dir / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").removeprefix("./")] = digest
    for name, w in REGISTRY.items():
        assert w.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", w.sha256)
        assert w.url.startswith("https://") and re.search(r"/[0-9a-f]{40}/", w.url), w.url  # pinned commit
        assert models.sha256_file(models_dir / name) == w.sha256, name
        assert sums[name] == w.sha256, name


def test_weight_file_is_frozen() -> None:
    w = REGISTRY[SMALL]
    with pytest.raises(AttributeError):
        w.sha256 = "0" * 64  # type: ignore[misc]


# ----------------------------------------------------------------------------------------- resolution


def test_explicit_file_comes_first(isolated: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(models_dir))
    f = isolated / "elsewhere" / "my_alex_copy.pth"
    f.parent.mkdir()
    shutil.copyfile(models_dir / SMALL, f)
    assert models.resolve(SMALL, path=f) == f
    assert models.resolve(SMALL, path=str(f)) == f


def test_explicit_folder_laid_out_like_the_registry(isolated: Path, models_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(models_dir))
    dest = _copy(models_dir, SMALL, isolated / "mine")
    assert models.resolve(SMALL, path=isolated / "mine") == dest


def test_missing_explicit_path_is_an_error(isolated: Path, models_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A mistyped path must not silently load another copy from SFUMATO_MODELS_DIR.
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(models_dir))
    with pytest.raises(models.ModelNotFoundError, match="does not exist"):
        models.resolve(SMALL, path=isolated / "nowhere")


def test_explicit_folder_without_the_file_falls_back_to_models_dir(isolated: Path, models_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / "partial").mkdir()
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(models_dir))
    assert models.resolve(SMALL, path=isolated / "partial") == models_dir / SMALL


def test_models_dir_env_comes_before_cache(isolated: Path, models_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    in_cache = _copy(models_dir, SMALL, isolated / "cache")
    in_env = _copy(models_dir, SMALL, isolated / "envdir")
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(isolated / "envdir"))
    assert models.resolve(SMALL) == in_env
    monkeypatch.delenv(models.ENV_MODELS_DIR)
    assert models.resolve(SMALL) == in_cache


def test_cache_dir_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(models.ENV_CACHE_DIR, str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(models.ENV_CACHE_DIR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "sfumato" / "models"


def test_not_found_names_the_file_and_the_setting(isolated: Path) -> None:
    with pytest.raises(ModelNotFoundError) as e:
        models.resolve("taef2/taef2_encoder.pth")
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert "taef2/taef2_encoder.pth" in msg and models.ENV_MODELS_DIR in msg and models.ENV_ALLOW_DOWNLOAD in msg
    assert str(isolated / "cache") in msg  # says where it looked
    assert REGISTRY["taef2/taef2_encoder.pth"].url in msg


def test_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown weight file"):
        models.resolve("sd/unet.ckpt")


# -------------------------------------------------------------------------------------------- checksum


def test_corrupt_file_raises_checksum_error(isolated: Path, models_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _copy(models_dir, SMALL, isolated / "mine")
    _flip_byte(bad)
    # a good copy further down the order must not paper over the corrupt one
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(models_dir))
    with pytest.raises(ChecksumError) as e:
        models.resolve(SMALL, path=isolated / "mine")
    assert isinstance(e.value, ValueError)
    assert str(bad) in str(e.value) and REGISTRY[SMALL].sha256 in str(e.value)
    with pytest.raises(ChecksumError):
        models.load_registered(SMALL, path=bad)


def test_verify_and_sha256_file(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"sfumato" * 1000)
    want = hashlib.sha256(b"sfumato" * 1000).hexdigest()
    assert models.sha256_file(f) == want
    assert models.verify(f, None) == want
    assert models.verify(f, want) == want
    with pytest.raises(ChecksumError, match="corrupt or a different version"):
        models.verify(f, "0" * 64)


# -------------------------------------------------------------------------------------------- download


class _FakeResponse(io.BytesIO):
    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> list[str]:
    calls: list[str] = []

    def fake_urlopen(url: str, timeout: float | None = None) -> _FakeResponse:
        calls.append(url)
        return _FakeResponse(payload)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    return calls


def test_download_with_good_hash_is_kept(isolated: Path, models_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    name = "lpips/squeeze.pth"
    payload = (models_dir / name).read_bytes()
    calls = _serve(monkeypatch, payload)
    got = models.resolve(name, download=True)
    assert calls == [REGISTRY[name].url]
    assert got == isolated / "cache" / name and got.read_bytes() == payload
    assert _files_under(isolated / "cache") == [got]  # no partial files left behind
    # next time it is found in the cache without any network access
    assert models.resolve(name) == got
    assert len(calls) == 1


def test_download_enabled_by_environment(isolated: Path, models_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _serve(monkeypatch, (models_dir / SMALL).read_bytes())
    monkeypatch.setenv(models.ENV_ALLOW_DOWNLOAD, "1")
    assert models.resolve(SMALL) == isolated / "cache" / SMALL
    assert calls == [REGISTRY[SMALL].url]


def test_download_false_overrides_environment(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _serve(monkeypatch, b"unused")
    monkeypatch.setenv(models.ENV_ALLOW_DOWNLOAD, "1")
    with pytest.raises(ModelNotFoundError):
        models.resolve(SMALL, download=False)
    assert calls == []


def test_download_with_bad_hash_is_rejected_and_not_kept(isolated: Path, models_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytearray((models_dir / SMALL).read_bytes())
    payload[10] ^= 0x01
    _serve(monkeypatch, bytes(payload))
    with pytest.raises(ChecksumError, match="not kept"):
        models.resolve(SMALL, download=True)
    assert _files_under(isolated / "cache") == []
    with pytest.raises(ModelNotFoundError):  # and nothing is found afterwards
        models.resolve(SMALL)


def test_download_network_error_leaves_nothing(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(url: str, timeout: float | None = None) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr("urllib.request.urlopen", broken)
    with pytest.raises(OSError, match="connection refused"):
        models.resolve(SMALL, download=True)
    assert _files_under(isolated / "cache") == []


# ---------------------------------------------------------------------------------------------- loading


def test_load_safetensors(models_dir: Path) -> None:
    name = "lpips/squeezenet1_1_features.safetensors"
    sd = models.load_state_dict(models_dir / name, sha256=REGISTRY[name].sha256)
    assert sd and all(k.startswith("features.") for k in sd)
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in sd.values())
    assert sd["features.0.weight"].shape == (64, 3, 3, 3)  # SqueezeNet 1.1 stem conv


def test_load_pth_weights_only(models_dir: Path) -> None:
    sd, sha = models.load_registered(SMALL, path=models_dir)
    assert sha == REGISTRY[SMALL].sha256
    assert "lin0.model.1.weight" in sd
    assert sd["lin0.model.1.weight"].device.type == "cpu"  # saved on CUDA, mapped to CPU
    assert sd["lin0.model.1.weight"].shape == (1, 64, 1, 1)


def test_checksum_is_checked_before_reading(models_dir: Path) -> None:
    with pytest.raises(ChecksumError):
        models.load_state_dict(models_dir / SMALL, sha256="f" * 64)


_RAN: list[str] = []


def _side_effect(tag: str) -> str:
    _RAN.append(tag)
    return tag


class _Payload:
    """An object whose unpickling calls a function: what ``weights_only=True`` must refuse."""

    def __reduce__(self):
        return (_side_effect, ("code ran",))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": _Payload()}, f)
    _RAN.clear()
    with pytest.raises(pickle.UnpicklingError):
        models.load_state_dict(f, sha256=models.sha256_file(f))
    assert _RAN == []
    torch.load(f, weights_only=False)  # control: the payload is live (harmless here) without the guard
    assert _RAN == ["code ran"]
