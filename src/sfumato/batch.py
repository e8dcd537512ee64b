"""Batch processing: files and folders (recursive), progress with ETA, resume, one bad image never stops
the batch. Used by every protecting command (cloak, poison, protect).

A batch runs in three steps: :func:`collect` the sources, plan every output before any pixel moves
(:func:`sfumato.plans.plan_outputs`: collisions, originals, resume), then :func:`run_batch`. Each source
being worked on has a hidden *pending marker* beside its output (:func:`pending_marker`), removed when
the work ends; a marker left behind (a kill, a full disk between the image and its manifest) tells the
next ``--resume`` that an image without its manifest is a half-written output of Sfumato, to be redone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Suffix of the pending marker beside an output being written: ``.NAME.sfumato-pending``.
PENDING_SUFFIX = ".sfumato-pending"
#: Sidecar names an earlier run writes beside an output (``STEM`` + suffix), skipped by folder walks.
SIDECAR_SUFFIXES = (".ai_view.before.png", ".ai_view.after.png")


@dataclass
class BatchItem:
    """One source and what the plan decided for it: ``error`` (refused before any work, one line),
    ``output``/``manifest``/``sidecars`` (the paths it will write), ``overwrite`` (replace this source's
    own earlier or half-written output), ``done`` (``--resume``: its manifest matches the source)."""

    source: Path
    rel_stem: str
    error: str | None = None
    output: Path | None = None
    manifest: Path | None = None
    sidecars: tuple[Path, ...] = ()
    overwrite: bool = False
    done: bool = False
    note: str | None = None


@dataclass
class BatchReport:
    done: list[Any] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def pending_marker(output: Path) -> Path:
    """The hidden marker beside ``output`` while Sfumato writes it (see the module docstring)."""
    return output.parent / f".{output.name}{PENDING_SUFFIX}"


def is_own_output(path: Path) -> bool:
    """True when ``path`` is an output of an earlier run in its folder: the image its manifest names, an
    AI-view sidecar of a manifest's stem, or an image with a pending marker (half-written)."""
    name = path.name
    for suffix in SIDECAR_SUFFIXES:
        if name.endswith(suffix) and (path.parent / f"{name[:-len(suffix)]}.sfumato.json").exists():
            return True
    if pending_marker(path).exists():
        return True
    man = path.parent / f"{Path(name).stem}.sfumato.json"
    if not man.is_file():
        return False
    try:
        return json.loads(man.read_text(encoding="utf-8")).get("output", {}).get("file") == name
    except (OSError, ValueError, AttributeError):
        return False


def collect(paths: Iterable[str | Path]) -> list[BatchItem]:
    """Expand files and folders (recursively) into items; outputs mirror sub-folders of a given folder.

    Folder walks pick the images (:func:`sfumato.io.read.walk_images`) and the files of other image
    formats (GIF, BMP...), which then fail with the message a named file gets; earlier outputs found in a
    folder (:func:`is_own_output`) are not sources. Missing paths, broken links, symbolic-link loops and
    unreadable sub-folders become items with an ``error``: reported, counted, and the batch goes on."""
    from sfumato.io.read import walk_images

    items: list[BatchItem] = []
    seen: set[str] = set()

    def add(p: Path, rel: str, error: str | None = None) -> None:
        key = os.path.realpath(p)  # never raises, not even on a symbolic-link loop
        if key not in seen:
            seen.add(key)
            items.append(BatchItem(p, rel, error=error))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            images, others, errors = walk_images(p)
            for f in sorted(images + others):
                if not is_own_output(f):
                    add(f, f.relative_to(p).with_suffix("").as_posix())
            for d, why in errors:
                add(d, d.name, f"cannot read this folder ({why}); the images in it were not protected")
        elif os.path.islink(p) and not p.exists():
            add(p, p.stem, "is a broken symbolic link or a symbolic-link loop; point it at an image file")
        elif p.exists():
            add(p, p.stem)
        else:
            add(p, p.stem, "no such file or folder; check the path")
    return items


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def plain_error(e: BaseException) -> str:
    """A failure in plain words, without Python class names: the message of an error Sfumato or the system
    raises for a reason the user can act on (files, folders, budgets, model weights); otherwise what went
    wrong, marked as unexpected."""
    msg = _first_line(e) if str(e).strip() else ""
    if isinstance(e, MemoryError):
        return "out of memory" + (f" ({msg})" if msg else "") + "; try a smaller image or --max-megapixels"
    if isinstance(e, (OSError, ValueError, KeyError, LookupError)) and msg:
        return msg.strip("'\"") if isinstance(e, KeyError) else msg
    return f"unexpected failure ({msg or 'no message'}); please report it with the command you ran"


def _clear_marker(item: BatchItem) -> None:
    """Remove the item's pending marker unless its output was left without a manifest."""
    if item.output is None:
        return
    marker = pending_marker(item.output)
    half_written = item.output.exists() and item.manifest is not None and not item.manifest.exists()
    if not half_written:
        try:
            marker.unlink()
        except FileNotFoundError:
            pass


def run_batch(items: list[BatchItem], work: Callable[[BatchItem], Any], *, quiet: bool = False,
              on_bar: Callable[[Any], None] | None = None,
              stop_on: tuple[type[BaseException], ...] = ()) -> BatchReport:
    """Run ``work`` on each planned item; one ``error:`` line per refused or failed item (any exception the
    work raises counts as a failure, and the batch goes on); a tqdm progress bar with ETA on stderr, handed
    to ``on_bar`` (which may show the stage within an image on it). A missing optional package
    (``ModuleNotFoundError``) or an error of ``stop_on`` (e.g. missing model weights) stops the batch: every
    file would fail alike."""
    from tqdm import tqdm

    report = BatchReport()
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), unit="img", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    if on_bar is not None:
        on_bar(bar)
    try:
        for item in items:
            bar.set_postfix_str(item.source.name[:40])
            if item.error is not None:
                report.failed.append((item.source, item.error))
                tqdm.write(f"error: {item.source}: {item.error}", file=sys.stderr)
            elif item.done:
                report.skipped.append(item.source)
            else:
                if item.note:
                    tqdm.write(f"note: {item.source}: {item.note}", file=sys.stderr)
                _run_one(item, work, report, stop_on)
            bar.update(1)
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t0
    return report


def _run_one(item: BatchItem, work: Callable[[BatchItem], Any], report: BatchReport,
             stop_on: tuple[type[BaseException], ...] = ()) -> None:
    from tqdm import tqdm

    try:
        if item.output is not None:
            item.output.parent.mkdir(parents=True, exist_ok=True)
            marker = pending_marker(item.output)
            marker.write_text(json.dumps({"source": str(item.source), "output": item.output.name}) + "\n",
                              encoding="utf-8")
        result = work(item)
    except (ModuleNotFoundError, *stop_on):
        _clear_marker(item)
        raise
    except Exception as e:  # reported, counted, and the batch goes on (exit code says it failed)
        msg = _first_line(e)
        report.failed.append((item.source, msg))
        tqdm.write(f"error: {item.source}: {plain_error(e)}", file=sys.stderr)
        _clear_marker(item)
        return
    _clear_marker(item)
    report.done.append(result)


class OutputFolderError(ValueError):
    """The output folder cannot be created or written; raised before any image is computed."""


def prepare_out_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder and prove it writable (a hidden probe file, created and removed), so that
    no image is computed for an output that cannot be saved; :class:`OutputFolderError` (one line)."""
    import secrets

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputFolderError(f"output folder {p} is a file, not a folder; choose a folder for -o")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputFolderError(f"cannot create the output folder {p} ({e.strerror or type(e).__name__}); "
                                "choose another -o") from None
    probe = p / f".sfumato-write-check.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as e:
        raise OutputFolderError(f"cannot write in the output folder {p} ({e.strerror or type(e).__name__}); "
                                "check its permissions or choose another -o") from None
    return p


def clean_out_dir(out_dir: Path) -> list[Path]:
    """Remove what an interrupted run left in ``out_dir``: stale temp files of the atomic writer
    (:func:`sfumato.io.atomic.clean_stale_temps`) and pending markers whose output was never written.
    Returns the temp files removed."""
    from sfumato.io.atomic import clean_stale_temps

    removed = clean_stale_temps(out_dir)
    for dirpath, dirnames, filenames in os.walk(out_dir):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") and name.endswith(PENDING_SUFFIX):
                output = Path(dirpath) / name[1:-len(PENDING_SUFFIX)]
                if not output.exists():
                    try:
                        (Path(dirpath) / name).unlink()
                    except OSError:
                        pass
    return removed
