"""Screenshots of the web app's states for docs/web.md (issue 20), taken in headless Chromium.

The server runs with the stand-in protections of ``tests/test_server_browser.py`` (same files and a
manifest with a real verdict record, in seconds), so the screenshots show the page, not a protection's
quality; the report shown is the real ``docs/example-check-report.html``. Images: a Van Gogh and a dog
photo from ``../shared/corpus`` when present, else synthetic ones.

    .venv/bin/python scripts/web_screenshots.py            # writes docs/screenshots/web-*.png
    .venv/bin/python scripts/web_screenshots.py --out DIR
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
WIDTH = 1000


def _tests_module():  # noqa: ANN202 - the stand-ins live with the browser tests
    spec = importlib.util.spec_from_file_location("web_browser_tests", ROOT / "tests" / "test_server_browser.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _input(src: Path | None, dest: Path, size: tuple[int, int], fallback) -> Path:  # noqa: ANN001
    if src is not None and src.is_file():
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail(size, Image.Resampling.LANCZOS)
            im.save(dest)
        return dest
    return fallback(dest, size)


def _save(png: bytes, path: Path, width: int = WIDTH, max_height: int | None = None) -> None:
    """A small PNG: its top ``max_height`` pixels, scaled to ``width`` (when wider), 256 colours."""
    im = Image.open(io.BytesIO(png)).convert("RGB")
    if max_height is not None and im.height > max_height:
        im = im.crop((0, 0, im.width, max_height))
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    im.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {im.width}x{im.height}, "
          f"{path.stat().st_size // 1024} KB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t = _tests_module()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp_s, sync_playwright() as pw:
        tmp = Path(tmp_s)
        gogh = next(iter(sorted((SHARED / "corpus" / "art" / "vincent_van_gogh").glob("*.png"))), None) \
            if (SHARED / "corpus").is_dir() else None
        dog = next(iter(sorted((SHARED / "corpus" / "photos" / "dog").glob("*.jpg"))), None) \
            if (SHARED / "corpus").is_dir() else None
        art = _input(gogh, tmp / "olive trees.png", (1600, 1200), t.painting)  # larger than shown: the loupe magnifies
        pet = _input(dog, tmp / "my dog.png", (480, 480), t.photo)
        browser = pw.chromium.launch(executable_path=t.CHROMIUM, args=t.CHROMIUM_ARGS)
        try:
            # 1. a server started as the README shows: no anchor images, poison off
            with t.stand_in_server(tmp / "a" / "data", anchors=False) as url:
                page = browser.new_page(viewport={"width": 1280, "height": 820})
                page.goto(url + "/")
                page.wait_for_selector('input[name="mode"][value="cloak"]')
                _save(page.locator("#new-job").screenshot(), args.out / "web-poison-off.png", 560)
                page.close()
                page = browser.new_page(viewport={"width": 420, "height": 900})
                page.goto(url + "/")
                page.wait_for_selector('input[name="mode"][value="cloak"]')
                page.select_option("#quality", "fast")
                _save(page.locator("#new-job").screenshot(), args.out / "web-labels-420px.png", 420)
                page.close()
            # 2. a server with anchor images of cats
            report = t.example_report if t.EXAMPLE_REPORT.is_file() else t.stand_in_report
            with t.stand_in_server(tmp / "b" / "data", anchors=True, report=report) as url:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url + "/")
                page.wait_for_selector('input[name="mode"][value="cloak"]')
                page.check("#check")
                t.protect_and_wait(page, art)
                page.evaluate("window.scrollTo(0, 0)")
                _save(page.screenshot(), args.out / "web-verdict-cloak.png")
                with page.expect_popup() as pop:
                    page.locator(".job .open-report").click()
                report = pop.value
                report.set_viewport_size({"width": 1000, "height": 640})
                report.wait_for_url("**/reports/**")
                report.wait_for_load_state()
                _save(report.screenshot(), args.out / "web-report.png")
                report.close()
                page.click(".job .enlarge")
                page.click(".job .loupe-toggle")
                box = page.locator(".job .compare").bounding_box()
                assert box is not None
                page.mouse.move(box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.45)
                _save(page.locator(".job .result").screenshot(), args.out / "web-loupe.png", 700)
                page.click(".job .view-diff")
                page.wait_for_function("() => { const c = document.querySelector('.job .compare canvas');"
                                       " return !c.hidden && c.dataset.drawn === '1'; }")
                page.mouse.move(0, 0)
                _save(page.locator(".job .result").screenshot(), args.out / "web-difference.png", 700)
                page.click(".job .enlarge")
                page.check('input[value="poison"]')
                page.uncheck("#check")
                t.protect_and_wait(page, pet)
                page.evaluate("window.scrollTo(0, 0)")
                _save(page.screenshot(), args.out / "web-verdict-poison.png")
                page.close()
                # 3. the Preview: a quick cloak of the picked painting, its verdict and AI view, nothing saved
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.goto(url + "/")
                page.wait_for_selector('input[name="mode"][value="cloak"]')
                t.drop(page, art)
                page.click("#preview")
                page.wait_for_selector('#preview-box[data-state="done"]')
                page.wait_for_function("() => [...document.querySelectorAll('#preview-box img')]"
                                       ".every(i => i.complete && i.naturalWidth > 0)")
                _save(page.locator("#new-job").screenshot(), args.out / "web-preview.png", 560)
                page.close()
            # 4. a running image names its stage: held at step 34 of 80 by the gated stand-in
            gates = t.Gates()
            try:
                with t.stand_in_server(tmp / "c" / "data", anchors=False, prepare=t.gated_prepare(gates)) as url:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(url + "/")
                    page.wait_for_selector('input[name="mode"][value="cloak"]')
                    t.drop(page, art)
                    page.click("#submit")
                    page.wait_for_function(t.STAGE_JS, arg="^preparing the target$")
                    page.wait_for_timeout(1500)  # the ETA settles on a few polls
                    gates.go["optimise"].set()
                    page.wait_for_function(t.STAGE_JS, arg="^optimising: step 34 of 80$")
                    page.wait_for_timeout(1200)
                    _save(page.locator(".job").screenshot(), args.out / "web-running-stage.png", 760)
                    page.close()
            finally:
                gates.release()
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
