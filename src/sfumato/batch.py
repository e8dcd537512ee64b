"""Batch processing: files and folders (recursive), progress with ETA, resume, one bad image never stops
the batch. Used by every protecting command (cloak, poison, protect)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BatchItem:
    source: Path
    rel_stem: str


@dataclass
class BatchReport:
    done: list[Any] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def collect(paths: Iterable[str | Path]) -> list[BatchItem]:
    """Expand files and folders (recursively) into items; outputs mirror sub-folders of a given folder."""
    import sfumato.io as sio

    items: list[BatchItem] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sio.iter_image_paths([p]):
                rel = f.relative_to(p).with_suffix("")
                if f.resolve() not in seen:
                    seen.add(f.resolve())
                    items.append(BatchItem(f, rel.as_posix()))
        elif p.exists():
            if p.resolve() not in seen:
                seen.add(p.resolve())
                items.append(BatchItem(p, p.stem))
        else:
            items.append(BatchItem(p, p.stem))  # reported as a failure by the worker
    return items


def run_batch(items: list[BatchItem], out_dir: Path, work: Callable[[BatchItem], Any], *, resume: bool = False,
              manifest_name: Callable[[str], Path] | None = None, quiet: bool = False) -> BatchReport:
    """Run ``work`` on each item; print one line per failure; a tqdm progress bar with ETA on stderr."""
    from tqdm import tqdm

    report = BatchReport()
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), unit="img", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    for item in items:
        bar.set_postfix_str(item.source.name[:40])
        man = manifest_name(item.rel_stem) if manifest_name else None
        if resume and man is not None and man.exists():
            report.skipped.append(item.source)
            bar.update(1)
            continue
        try:
            report.done.append(work(item))
        except Exception as e:  # reported, counted, and the batch goes on (exit code says it failed)
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            report.failed.append((item.source, msg))
            tqdm.write(f"error: {item.source}: {type(e).__name__}: {msg}", file=sys.stderr)
        bar.update(1)
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
