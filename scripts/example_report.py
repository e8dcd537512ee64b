"""Rebuild the example verification report of the docs (``docs/example-check-report.html`` and ``.json``).

What it runs, with the real weights and corpus of ``../shared``: the Van Gogh of the README's quick start
(``corpus/art/vincent_van_gogh/vincent-van-gogh_olive-grove-bright-blue-sky-1889.jpg``) downscaled to a long
side of 400 px (Lanczos, so the committed report stays small) as ``olive-grove-400.png`` in a temp folder,
then the two commands an artist would type:

    sfumato cloak olive-grove-400.png -o out --ai-view
    sfumato check out/olive-grove-400.png --original olive-grove-400.png --attacks all \\
        --report docs/example-check-report.html --json docs/example-check-report.json

Usage: ``python scripts/example_report.py [--out-dir docs]``. The cloak's and the check's verdict lines are
printed; docs/benchmarks.md ("Verification of one cloaked Van Gogh with every attack") quotes them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared")).resolve()
PAINTING = "corpus/art/vincent_van_gogh/vincent-van-gogh_olive-grove-bright-blue-sky-1889.jpg"
NAME = "olive-grove-400.png"
LONG_SIDE = 400


def sfumato(*args: str, cwd: Path) -> None:
    """Run the CLI in a fresh process in ``cwd`` (as typed there: the report names the files as given on
    the command line) and echo its output."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "sfumato.cli", *args], capture_output=True, text=True, cwd=cwd)
    print((p.stdout + p.stderr).rstrip())
    print(f"[{args[0]}: exit {p.returncode}, {time.perf_counter() - t0:.0f} s]")
    if p.returncode != 0:
        raise SystemExit(f"sfumato {args[0]} failed (exit {p.returncode})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs", help="where the report goes (default docs/)")
    a = ap.parse_args()
    src = SHARED / PAINTING
    if not src.is_file():
        raise SystemExit(f"{src} not found: the shared corpus is needed (set SFUMATO_SHARED_DIR)")
    from PIL import Image

    models = os.environ.get("SFUMATO_MODELS_DIR") or str(SHARED / "models")
    with tempfile.TemporaryDirectory(prefix="sfumato-example-report-") as tmp:
        work = Path(tmp)
        with Image.open(src) as im:
            im = im.convert("RGB")
            s = LONG_SIDE / max(im.size)
            im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS).save(work / NAME)
        out_dir = a.out_dir.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        common = ["--models-dir", str(Path(models).resolve())]
        sfumato("cloak", NAME, "-o", "out", "--ai-view", *common, cwd=work)
        sfumato("check", f"out/{NAME}", "--original", NAME, "--attacks", "all",
                "--report", str(out_dir / "example-check-report.html"),
                "--json", str(out_dir / "example-check-report.json"), *common, cwd=work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
