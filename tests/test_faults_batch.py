"""Fault corpus of the batch, its outputs and the command line (issue 19), generated here in ``tmp_path``.

Every case runs the real ``sfumato`` entry point in-process with the real batch, output planning, image
I/O and atomic writer; only the protection itself is replaced by a fast stand-in
(:func:`_fake_cloak_file`: load, a small seeded perturbation, the atomic save, the manifest with the
source's SHA-256, as :mod:`sfumato.api` does), so the file runs in the fast tier without model weights.
Each case checks the message, the exit code, that the originals are byte-identical afterwards and that
no temp file or pending marker is left behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms

import sfumato.io as sio
from sfumato.cli import main
from sfumato.io.atomic import TEMP_RE, write_json_atomic
from sfumato.io.outputs import LOSSLESS_DEFAULTS, manifest_path_for

Q = ["--quiet"]


# ----------------------------------------------------------------------------------------------------
# the stand-in protection and helpers


class Fake:
    """Counts the sources it protected; ``between`` runs after the image is written, before the manifest
    (to kill or fail a run between the two writes)."""

    def __init__(self) -> None:
        self.calls: list[Path] = []
        self.between: Callable[[Path], None] | None = None

    def __call__(self, src: Any, out_dir: Any, cfg: Any = None, *, output_format: str | None = None,
                 jpeg_quality: int = 98, overwrite: bool = False, ai_view: bool = False, models_dir: Any = None,
                 xmp: Any = None, rel_stem: str | None = None, **_: Any) -> Any:
        src, out_dir = Path(src), Path(out_dir)
        img = sio.load_image(src)
        fmt = (output_format or LOSSLESS_DEFAULTS.get(img.format) or sio.default_output_format(img.format)).upper()
        stem = rel_stem or src.stem
        out, man = out_dir / f"{stem}{sio.output_suffix(fmt)}", manifest_path_for(out_dir, stem)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not overwrite:
            for p in (out, man):
                if p.exists():
                    raise FileExistsError(f"{p} already exists; use --overwrite to replace it or --resume to skip")
        rng = np.random.default_rng(len(self.calls))
        rgb = np.clip(img.rgb + rng.uniform(-4 / 255, 4 / 255, img.rgb.shape), 0, 1).astype(np.float32)
        final = sio.save_image(img, rgb, out, format=fmt, jpeg_quality=jpeg_quality, overwrite=overwrite)
        self.calls.append(src)
        if self.between is not None:
            self.between(final)
        manifest = {"source": {"file": src.name, "sha256": _sha(src)},
                    "output": {"file": final.name, "format": fmt, "sha256": _sha(final)},
                    "achieved": {"lpips_alex": 0.01, "linf": 4 / 255}, "latent": {"taef2": {"relative_reduction": 0.3}},
                    "target": {"style": "fake"}, "timing_s": {"file_total": 0.0}}
        write_json_atomic(man, manifest, overwrite=True)
        return SimpleNamespace(output=final, manifest=manifest)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    import sfumato.api

    f = Fake()
    monkeypatch.setattr(sfumato.api, "cloak_file", f)
    return f


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _img(path: Path, size: tuple[int, int] = (48, 40), mode: str = "RGB", seed: int = 0, **save: Any) -> Path:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    im = Image.fromarray(a, "RGBA").convert(mode) if mode != "RGBA" else Image.fromarray(a, "RGBA")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **save)
    return path


def _snapshot(*folders: Path) -> dict[Path, bytes]:
    out = {}
    for d in folders:
        for p in sorted(d.rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[p] = p.read_bytes()
    return out


def _assert_untouched(before: dict[Path, bytes]) -> None:
    for p, data in before.items():
        assert p.exists(), f"{p} disappeared"
        assert p.read_bytes() == data, f"{p} was modified"


def _assert_no_leftovers(*folders: Path) -> None:
    for d in folders:
        if d.exists():
            left = [p for p in d.rglob(".*") if TEMP_RE.match(p.name) or p.name.endswith(".sfumato-pending")]
            assert not left, left


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return rc, lines


def _errors(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.startswith("error: ")]


# ----------------------------------------------------------------------------------------------------
# outputs planned for the whole batch


@pytest.mark.parametrize("names", [("x.jpg", "x.png"), ("a.png", "a.tif")])
def test_same_stem_is_refused_before_work_and_the_others_go_on(tmp_path: Path, fake: Fake, capsys,  # noqa: ANN001
                                                               names: tuple[str, str]) -> None:
    src = tmp_path / "in"
    for i, n in enumerate(names):
        _img(src / n, seed=i, **({"quality": 95} if n.endswith(".jpg") else {}))
    _img(src / "ok.png", seed=9)
    before = _snapshot(src)
    out = tmp_path / "out"
    rc, lines = _run(["cloak", str(src), "-o", str(out), *Q], capsys)
    assert rc == 1
    errs = _errors(lines)
    assert len(errs) == 2 and all("same name" in e for e in errs), lines
    assert fake.calls == [src / "ok.png"]
    assert sorted(p.name for p in out.iterdir()) == ["ok.png", "ok.sfumato.json"]
    _assert_untouched(before)
    _assert_no_leftovers(out)
    # --resume and --overwrite do not make the collision go away (never "skipped", never silently replaced)
    for flag in ("--resume", "--overwrite"):
        rc, lines = _run(["cloak", str(src), "-o", str(out), flag, *Q], capsys)
        assert rc == 1 and len(_errors(lines)) == 2
    _assert_untouched(before)


def test_output_folder_equal_to_input_never_replaces_an_original(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    """The issue's repro: ``cp photo.jpg d/pic.jpg; cp art.png d/pic.png; sfumato cloak d -o d --overwrite``."""
    d = tmp_path / "d"
    _img(d / "pic.jpg", seed=1, quality=95)
    _img(d / "pic.png", seed=2)
    _img(d / "other.jpg", seed=3, quality=95)
    before = _snapshot(d)
    rc, lines = _run(["cloak", str(d), "-o", str(d), "--overwrite", *Q], capsys)
    assert rc == 1
    errs = _errors(lines)
    assert len(errs) == 2, lines
    assert any("pic.jpg" in e and "would replace the original" in e for e in errs), errs
    assert any("pic.png" in e and "would replace itself" in e for e in errs), errs
    _assert_untouched(before)
    assert fake.calls == [d / "other.jpg"] and (d / "other.png").exists()
    # a second run in the same folder does not take the earlier output for a source
    rc, lines = _run(["cloak", str(d / "other.jpg"), str(d / "other.png"), "-o", str(d), "--resume", *Q], capsys)
    assert rc == 1 and "would replace the original" in _errors(lines)[0]
    rc, lines = _run(["cloak", str(d), "-o", str(d), "--resume", *Q], capsys)
    assert rc == 1 and len(_errors(lines)) == 2 and "1 skipped" in lines[-1]
    assert len(fake.calls) == 1
    _assert_untouched(before)
    _assert_no_leftovers(d)


def test_named_png_into_its_own_folder_is_refused(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "art.png")
    before = _snapshot(tmp_path)
    rc, lines = _run(["cloak", str(src), "-o", str(tmp_path), "--overwrite", *Q], capsys)
    assert rc == 1 and "would replace itself" in _errors(lines)[0] and "-o" in _errors(lines)[0]
    assert not fake.calls
    _assert_untouched(before)


def test_originals_are_recognised_through_links(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    """An output folder reached through a symbolic link, or an output path that is a hard link to a source,
    is still the original."""
    d = tmp_path / "d"
    _img(d / "pic.jpg", seed=1, quality=95)
    _img(d / "pic.png", seed=2)
    link = tmp_path / "same_as_d"
    link.symlink_to(d, target_is_directory=True)
    out = tmp_path / "out"
    out.mkdir()
    os.link(d / "pic.png", out / "art.png")  # out/art.png is the original d/pic.png under another name
    _img(tmp_path / "src" / "art.jpg", seed=3, quality=95)
    before = _snapshot(d)
    rc, lines = _run(["cloak", str(d / "pic.jpg"), str(d / "pic.png"), "-o", str(link), "--overwrite", *Q], capsys)
    assert rc == 1 and len(_errors(lines)) == 2 and all("would replace" in e for e in _errors(lines))
    # named alone, pic.png is no source of the batch, but no manifest names it: not replaced either
    rc, lines = _run(["cloak", str(d / "pic.jpg"), "-o", str(link), "--overwrite", *Q], capsys)
    assert rc == 1 and "no manifest names it" in _errors(lines)[0] and not fake.calls
    rc, lines = _run(["cloak", str(tmp_path / "src" / "art.jpg"), str(d / "pic.png"), "-o", str(out),
                      "--overwrite", *Q], capsys)
    errs = _errors(lines)
    assert rc == 1 and len(errs) == 1 and "art.jpg" in errs[0] and "would replace the original" in errs[0], lines
    assert fake.calls == [d / "pic.png"]  # pic.png itself goes to out/pic.png, which is no original
    _assert_untouched(before)
    _assert_no_leftovers(d, out)


def test_subfolders_with_the_same_stem_do_not_collide(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = tmp_path / "in"
    _img(src / "a.png", seed=1)
    _img(src / "sub" / "a.png", seed=2)
    rc, _ = _run(["cloak", str(src), "-o", str(tmp_path / "out"), *Q], capsys)
    assert rc == 0 and (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "sub" / "a.png").exists()


def test_resume_is_keyed_on_the_source_sha256(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "in" / "a.png", seed=1)
    out = tmp_path / "out"
    assert _run(["cloak", str(src), "-o", str(out), *Q], capsys)[0] == 0
    stamp = (out / "a.png").stat().st_mtime_ns
    rc, lines = _run(["cloak", str(src), "-o", str(out), "--resume", *Q], capsys)
    assert rc == 0 and "1 skipped" in lines[-1] and len(fake.calls) == 1
    assert (out / "a.png").stat().st_mtime_ns == stamp
    # without --resume or --overwrite: one line, nothing replaced
    rc, lines = _run(["cloak", str(src), "-o", str(out), *Q], capsys)
    assert rc == 1 and "already protected" in _errors(lines)[0] and "--resume" in _errors(lines)[0]
    # the artist edits the source: its manifest no longer stands for it, so --resume redoes it
    _img(src, seed=5)
    before = _snapshot(src.parent)
    rc, lines = _run(["cloak", str(src), "-o", str(out), "--resume", *Q], capsys)
    assert rc == 0 and len(fake.calls) == 2 and any("redone" in ln and "not the file" in ln for ln in lines)
    import json

    assert json.loads((out / "a.sfumato.json").read_text())["source"]["sha256"] == _sha(src)
    _assert_untouched(before)
    _assert_no_leftovers(out)


def test_resume_redoes_an_output_that_was_changed_or_lost(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "a.png")
    out = tmp_path / "out"
    assert _run(["cloak", str(src), "-o", str(out), *Q], capsys)[0] == 0
    (out / "a.png").unlink()
    rc, lines = _run(["cloak", str(src), "-o", str(out), "--resume", *Q], capsys)
    assert rc == 0 and len(fake.calls) == 2 and any("is missing" in ln for ln in lines)
    (out / "a.png").unlink()
    (out / "a.sfumato.json").write_text("{not json")
    rc, lines = _run(["cloak", str(src), "-o", str(out), "--resume", *Q], capsys)
    assert rc == 0 and len(fake.calls) == 3 and any("unreadable" in ln for ln in lines)
    # an image that no readable manifest names is not known to be Sfumato's: never replaced
    (out / "a.sfumato.json").write_text("{not json")
    before = _snapshot(out)
    for flag in ("--resume", "--overwrite"):
        rc, lines = _run(["cloak", str(src), "-o", str(out), flag, *Q], capsys)
        assert rc == 1 and "no manifest names it" in _errors(lines)[0] and len(fake.calls) == 3
    _assert_untouched(before)


def test_kill_between_image_and_manifest_then_resume_redoes_it(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "in" / "a.png")
    before = _snapshot(src.parent)
    out = tmp_path / "out"

    def killed(_: Path) -> None:
        raise KeyboardInterrupt  # like kill -9: nothing after the image runs

    fake.between = killed
    with pytest.raises(KeyboardInterrupt):
        main(["cloak", str(src), "-o", str(out), *Q])
    capsys.readouterr()
    assert (out / "a.png").exists() and not (out / "a.sfumato.json").exists()
    assert (out / ".a.png.sfumato-pending").exists()
    fake.between = None
    rc, lines = _run(["cloak", str(src), "-o", str(out), *Q], capsys)  # no flag: told what to do
    assert rc == 1 and "interrupted run" in _errors(lines)[0] and "--resume" in _errors(lines)[0]
    rc, lines = _run(["cloak", str(src), "-o", str(out), "--resume", *Q], capsys)
    assert rc == 0 and "1 done" in lines[-1] and (out / "a.sfumato.json").exists()
    assert not any("FileExistsError" in ln for ln in lines)
    _assert_untouched(before)
    _assert_no_leftovers(out)


def test_disk_full_between_the_writes_fails_then_resume_completes(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "a.png")
    out = tmp_path / "out"

    def full(_: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    fake.between = full
    rc, lines = _run(["cloak", str(src), "-o", str(out), *Q], capsys)
    assert rc == 1 and "No space left on device" in _errors(lines)[0]
    fake.between = None
    rc, lines = _run(["cloak", str(src), "-o", str(out), "--resume", *Q], capsys)
    assert rc == 0 and (out / "a.sfumato.json").exists()
    _assert_no_leftovers(out)


def test_an_unrelated_file_at_the_output_path_is_not_taken_for_an_orphan(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "in" / "a.jpg", quality=95)
    out = tmp_path / "out"
    mine = _img(out / "a.png", seed=7)  # the artist's own file, no manifest, no pending marker
    before = _snapshot(tmp_path)
    for flag in ("--resume", "--overwrite"):
        rc, lines = _run(["cloak", str(src), "-o", str(out), flag, *Q], capsys)
        assert rc == 1 and "no manifest names it" in _errors(lines)[0] and "move it away" in _errors(lines)[0]
    assert not fake.calls
    _assert_untouched(before)
    assert mine.exists()


def test_stale_temp_files_are_cleaned_on_the_next_run(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "a.png")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = [out / f".a.png.{dead}.0123456789ab.tmp", out / "sub" / f".b.png.{dead}.0123456789ab.tmp"]
    legacy = out / ".c.png.0123456789ab.tmp"  # an older writer's name, without a process id
    live = out / f".d.png.{os.getpid()}.0123456789ab.tmp"  # a writer still running: left alone
    for p in (*stale, legacy, live):
        p.write_bytes(b"")
    os.utime(legacy, (1_000_000, 1_000_000))
    keep = out / "notes.tmp"
    keep.write_text("mine")
    lost_marker = out / ".z.png.sfumato-pending"  # its image was never written: nothing to redo
    lost_marker.write_text("{}")
    rc, lines = _run(["cloak", str(src), "-o", str(out), *Q], capsys)
    assert rc == 0 and any("removed 3 temp file(s)" in ln for ln in lines), lines
    assert not lost_marker.exists()
    assert not any(p.exists() for p in (*stale, legacy)) and live.exists() and keep.read_text() == "mine"
    live.unlink()
    _assert_no_leftovers(out)


# ----------------------------------------------------------------------------------------------------
# the output folder is checked before any image is computed


def test_output_folder_that_cannot_be_created(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "a.png")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out, needle in ((blocker / "sub", "cannot create the output folder"), (blocker, "is a file")):
        rc, lines = _run(["cloak", str(src), "-o", str(out), *Q], capsys)
        assert rc == 2 and len(lines) == 1 and needle in lines[0], lines
    assert not fake.calls and blocker.read_text() == "x"


def test_output_folder_that_cannot_be_written(tmp_path: Path, fake: Fake, capsys,  # noqa: ANN001
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    src = _img(tmp_path / "a.png")
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:
        out.chmod(0o555)
    else:  # root writes anywhere: a read-only file system is what refuses it
        real_open = os.open

        def read_only(path: Any, flags: int, *a: Any, **k: Any) -> int:
            if Path(path).parent == out and flags & os.O_CREAT:
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", read_only)
    try:
        rc, lines = _run(["cloak", str(src), "-o", str(out), *Q], capsys)
    finally:
        out.chmod(0o755)
    assert rc == 2 and len(lines) == 1 and "cannot write in the output folder" in lines[0], lines
    assert not fake.calls and not list(out.iterdir())


# ----------------------------------------------------------------------------------------------------
# bad inputs: one line each, the batch goes on


def test_symlink_loops_do_not_stop_the_batch(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    d = tmp_path / "in"
    _img(d / "good.png")
    (d / "loop.png").symlink_to(d / "loop.png")
    (d / "sub").mkdir()
    (d / "sub" / "up").symlink_to(d, target_is_directory=True)  # a folder loop: not followed
    out = tmp_path / "out"
    rc, lines = _run(["cloak", str(d), str(d / "loop.png"), "-o", str(out), *Q], capsys)
    assert rc == 1
    errs = _errors(lines)
    assert len(errs) == 1 and "loop.png" in errs[0] and "symbolic" in errs[0], lines
    assert fake.calls == [d / "good.png"]
    _assert_no_leftovers(out)


def test_missing_path_is_one_line_and_the_batch_goes_on(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    good = _img(tmp_path / "a.png")
    rc, lines = _run(["cloak", str(tmp_path / "nope.png"), str(good), "-o", str(tmp_path / "out"), *Q], capsys)
    assert rc == 1 and "no such file" in _errors(lines)[0] and fake.calls == [good]


def test_images_below_the_minimum_size_are_refused_cleanly(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    tiny = _img(tmp_path / "in" / "tiny.png", size=(20, 20))
    thin = _img(tmp_path / "in" / "thin.png", size=(64, 31))
    edge = _img(tmp_path / "in" / "edge.png", size=(32, 32))
    before = _snapshot(tmp_path / "in")
    rc, lines = _run(["cloak", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *Q], capsys)
    assert rc == 1
    errs = _errors(lines)
    assert len(errs) == 2 and all(f"minimum of {sio.MIN_SIDE} px" in e for e in errs), errs
    assert {tiny.name, thin.name} == {Path(e.split(": ")[1]).name for e in errs}
    assert fake.calls == [edge] and sio.MIN_SIDE == 32
    _assert_untouched(before)


def test_pixel_limit_and_decompression_bomb(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def bomb(name: str, side: int) -> Path:  # a header that claims side x side pixels, in a few bytes
        p = tmp_path / name
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                      + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
        return p

    big, huge = bomb("big.png", 8000), bomb("huge.png", 30000)
    src = _img(tmp_path / "a.png", size=(64, 64))
    rc, lines = _run(["cloak", str(big), str(src), "-o", str(tmp_path / "out"), "--max-megapixels", "0.004",
                      *Q], capsys)
    errs = _errors(lines)
    assert rc == 1 and len(errs) == 2 and all("more than the limit" in e for e in errs), errs
    assert "--max-megapixels" in errs[0] and not fake.calls
    from sfumato.commands.cloak import DEFAULT_MAX_MEGAPIXELS

    assert DEFAULT_MAX_MEGAPIXELS == 25  # the default sized for 8 GB (see the memory model)
    rc, lines = _run(["cloak", str(big), str(huge), "-o", str(tmp_path / "out"), *Q], capsys)
    errs = _errors(lines)
    assert rc == 1 and "8000x8000" in errs[0] and "limit of 25,000,000" in errs[0], errs
    assert "decompression-bomb" in errs[1] and not fake.calls
    _assert_no_leftovers(tmp_path / "out")


def test_other_image_formats_in_a_folder_are_listed_like_named_ones(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    d = tmp_path / "in"
    _img(d / "a.png")
    _img(d / "b.gif", mode="P")
    _img(d / "c.bmp")
    (d / "notes.txt").write_text("not an image")
    before = _snapshot(d)
    rc, lines = _run(["cloak", str(d), "-o", str(tmp_path / "o1"), *Q], capsys)
    walked = _errors(lines)
    assert rc == 1 and len(walked) == 2 and "1 done" in lines[-1]
    assert "is a GIF file" in walked[0] and "is a BMP file" in walked[1]
    rc, lines = _run(["cloak", str(d / "b.gif"), str(d / "c.bmp"), "-o", str(tmp_path / "o2"), *Q], capsys)
    assert rc == 1 and _errors(lines) == walked  # the same message whether walked or named
    _assert_untouched(before)


def test_truncated_and_non_image_files(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    d = tmp_path / "in"
    full = _img(d / "whole.png", size=(64, 64)).read_bytes()
    (d / "cut.png").write_bytes(full[: len(full) // 2])
    (d / "fake.jpg").write_bytes(b"this is not an image")
    before = _snapshot(d)
    rc, lines = _run(["cloak", str(d), "-o", str(tmp_path / "out"), *Q], capsys)
    errs = _errors(lines)
    assert rc == 1 and len(errs) == 2 and "1 done" in lines[-1]
    assert any("cut.png" in e and "truncated" in e for e in errs) and any("fake.jpg" in e for e in errs)
    _assert_untouched(before)
    _assert_no_leftovers(tmp_path / "out")


def test_animated_and_multipage_files_are_refused(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    rc, lines = _run(["cloak", str(tmp_path / "anim.png"), str(tmp_path / "pages.tif"), "-o",
                      str(tmp_path / "out"), *Q], capsys)
    errs = _errors(lines)
    assert rc == 1 and "frames (animated)" in errs[0] and "2 pages" in errs[1] and not fake.calls


def test_unreadable_source(tmp_path: Path, fake: Fake, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    locked = _img(tmp_path / "in" / "locked.png")
    good = _img(tmp_path / "in" / "good.png", seed=3)
    before = _snapshot(tmp_path / "in")
    if os.geteuid() != 0:
        locked.chmod(0o000)
    else:  # root reads anything: make opening it fail as chmod 000 would for anyone else
        real = Image.open

        def denied(fp: Any, *a: Any, **k: Any) -> Any:
            if isinstance(fp, (str, os.PathLike)) and Path(fp).name == "locked.png":
                raise PermissionError(errno.EACCES, "Permission denied", str(fp))
            return real(fp, *a, **k)

        monkeypatch.setattr(Image, "open", denied)
    try:
        rc, lines = _run(["cloak", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *Q], capsys)
    finally:
        locked.chmod(0o644)
    errs = _errors(lines)
    assert rc == 1 and len(errs) == 1 and "locked.png" in errs[0] and "permission denied" in errs[0]
    assert fake.calls == [good]
    _assert_untouched(before)


def test_transparent_source_to_jpeg_names_the_source(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "glass.png", mode="RGBA")
    rc, lines = _run(["cloak", str(src), "-o", str(tmp_path / "out"), "--format", "JPEG", *Q], capsys)
    errs = _errors(lines)
    assert rc == 1 and str(src) in errs[0] and "transparency" in errs[0] and ".tmp" not in errs[0]
    assert not fake.calls
    img = sio.load_image(src)  # the library's own message names the source too, never a temp file
    with pytest.raises(ValueError, match="glass.png: JPEG cannot store transparency"):
        sio.save_image(img, img.rgb, tmp_path / "elsewhere.jpg")


def test_work_errors_are_failures_with_one_line(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Whatever the per-file work raises (e.g. the API's typed 'could not be protected' errors) is a failure
    with its one-line message and a non-zero exit code; nothing is left behind."""
    import sfumato.api

    class NotProtectedHere(ValueError):
        pass

    def refuse(src: Any, *a: Any, **k: Any) -> Any:
        if Path(src).name == "b.png":
            raise RuntimeError("boom\nsecond line")
        raise NotProtectedHere(f"{Path(src).name}: not protected: no perturbation fits the budget; nothing written")

    monkeypatch.setattr(sfumato.api, "cloak_file", refuse)
    d = tmp_path / "in"
    _img(d / "a.png")
    _img(d / "b.png", seed=1)
    rc, lines = _run(["cloak", str(d), "-o", str(tmp_path / "out"), *Q], capsys)
    errs = _errors(lines)
    assert rc == 1 and len(errs) == 2 and "0 done" in lines[-1] and "2 failed" in lines[-1]
    assert "not protected" in errs[0] and "NotProtectedHere" not in errs[0]
    assert errs[1].endswith("unexpected failure (boom); please report it with the command you ran")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_missing_optional_package_names_the_extra(tmp_path: Path, fake: Fake, capsys,  # noqa: ANN001
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = _img(tmp_path / "dog.png")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as on a base install
    for cmd in ("poison", "protect"):
        rc, lines = _run([cmd, str(src), "-o", str(tmp_path / "out"), "--concept", "dog", "--target", "cat",
                          "--anchors", str(tmp_path), *Q], capsys)
        assert rc == 2 and len(lines) == 1 and "install sfumato[judges]" in lines[0] and "ai_edge_litert" in lines[0]
    import sfumato.api

    def needs_diffusers(*a: Any, **k: Any) -> Any:
        raise ModuleNotFoundError("No module named 'diffusers'", name="diffusers")

    monkeypatch.setattr(sfumato.api, "cloak_file", needs_diffusers)
    rc, lines = _run(["cloak", str(src), "-o", str(tmp_path / "out"), *Q], capsys)
    assert rc == 2 and lines == ["error: this needs the optional package 'diffusers': install sfumato[diffusers] "
                                 "(pip install 'sfumato[diffusers]')"]
    _assert_no_leftovers(tmp_path / "out")


# ----------------------------------------------------------------------------------------------------
# numeric options


BAD_OPTIONS = [
    (["cloak"], "--steps", "-1", "must be 1..100000"),
    (["cloak"], "--steps", "abc", "must be an integer"),
    (["cloak"], "--lpips", "2", "must be in (0, 1)"),
    (["cloak"], "--lpips", "nan", "must be in (0, 1)"),
    (["cloak"], "--linf", "0", "must be in (0, 255]"),
    (["cloak"], "--jpeg-quality", "101", "must be 95..100"),
    (["cloak"], "--jpeg-quality", "90", "must be 95..100"),
    (["cloak"], "--resolution", "10", "must be 64..4096"),
    (["cloak"], "--seed", "-1", "must be 0..4294967295"),
    (["cloak"], "--perturbation-scale", "2", "must be in [0.125, 1]"),
    (["cloak"], "--style-strength", "0", "must be in (0, 1]"),
    (["cloak"], "--target-overshoot", "5", "must be in [1, 4]"),
    (["cloak"], "--max-megapixels", "0", "must be in (0, 100]"),
    (["poison", "--concept", "dog", "--target", "cat"], "--anchor-count", "0", "must be 1..1000"),
    (["poison", "--concept", "dog", "--target", "cat"], "--anchor-index", "-1", "must be >= 0"),
    (["protect", "--concept", "dog", "--target", "cat"], "--poison-weight", "-1", "must be in [0, 100]"),
    (["check"], "--seed", "-2", "must be 0..4294967295"),
    (["serve"], "--port", "70000", "must be 1..65535"),
]


@pytest.mark.parametrize(("cmd", "opt", "value", "needle"), BAD_OPTIONS, ids=[f"{c[0]}{o}={v}" for c, o, v, _ in BAD_OPTIONS])
def test_numeric_option_errors_are_one_line(tmp_path: Path, capsys, cmd: list[str], opt: str,  # noqa: ANN001
                                            value: str, needle: str) -> None:
    src = _img(tmp_path / "a.png")
    paths = [] if cmd[0] == "serve" else [str(src)] + ([] if cmd[0] == "check" else ["-o", str(tmp_path / "out")])
    assert main([cmd[0], *paths, *cmd[1:], f"{opt}={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument {opt}: {needle}" in err and "--help" in err, err
    assert "below 95" not in err and not (tmp_path / "out").exists()


def test_check_of_a_bad_file_is_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "protected.png"
    bad.write_bytes(b"not an image at all")
    rc, lines = _run(["check", str(bad), "--no-judges", "--quiet"], capsys)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"error: {bad}: is not an image"), lines
    assert bad.read_bytes() == b"not an image at all"


def test_bad_encoder_weight_is_one_line(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "a.png")
    rc, lines = _run(["cloak", str(src), "-o", str(tmp_path / "out"), "--encoder", "taef2=abc", *Q], capsys)
    assert rc == 2 and lines == ["error: --encoder 'taef2=abc': give SPEC or SPEC=WEIGHT with a positive weight, "
                                 "e.g. taef2=1.5"]


# ----------------------------------------------------------------------------------------------------
# files that already worked: still protected, originals and what they carry kept


def test_kinds_of_files_that_are_protected(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    d = tmp_path / "in"
    d.mkdir()
    deep = sio.image_from_array((np.random.default_rng(0).integers(0, 65536, (40, 48, 3))).astype(np.uint16))
    sio.save_image(deep, deep.rgb, d / "deep.png")
    Image.new("CMYK", (48, 40), (10, 200, 30, 5)).save(d / "cmyk.jpg", quality=95)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x013B] = "Test Artist"
    _img(d / "meta.png", icc_profile=icc, exif=exif.tobytes())
    _img(d / "alpha.png", mode="RGBA")
    _img(d / "é 🎨 画.png", seed=4)
    before = _snapshot(d)
    out = tmp_path / "out"
    rc, lines = _run(["cloak", str(d), "-o", str(out), *Q], capsys)
    assert rc == 0 and "5 done" in lines[-1], lines
    assert sio.load_image(out / "deep.png").bit_depth == 16
    cm = sio.load_image(out / "cmyk.png")
    assert cm.format == "PNG" and cm.mode == "RGB"
    meta = Image.open(out / "meta.png")
    assert meta.info.get("icc_profile") == icc and meta.getexif()[0x013B] == "Test Artist"
    np.testing.assert_array_equal(sio.load_image(out / "alpha.png").alpha, sio.load_image(d / "alpha.png").alpha)
    assert (out / "é 🎨 画.png").exists() and (out / "é 🎨 画.sfumato.json").exists()
    _assert_untouched(before)
    _assert_no_leftovers(out)
    # and a second run over the same folder with --resume does nothing
    rc, lines = _run(["cloak", str(d), "-o", str(out), "--resume", *Q], capsys)
    assert rc == 0 and "5 skipped" in lines[-1] and len(fake.calls) == 5


def test_overwrite_replaces_only_outputs(tmp_path: Path, fake: Fake, capsys) -> None:  # noqa: ANN001
    src = _img(tmp_path / "in" / "a.jpg", quality=95)
    out = tmp_path / "out"
    assert _run(["cloak", str(src), "-o", str(out), *Q], capsys)[0] == 0
    first = (out / "a.png").read_bytes()
    before = _snapshot(src.parent)
    rc, _ = _run(["cloak", str(src), "-o", str(out), "--overwrite", *Q], capsys)
    assert rc == 0 and (out / "a.png").read_bytes() != first and len(fake.calls) == 2
    _assert_untouched(before)
    _assert_no_leftovers(out)
