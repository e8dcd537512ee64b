"""Screenshot of the web UI with a finished job, for the docs (``docs/ui-screenshot.png``, 1280x800).

Starts a server in this process (temporary data folder, reduced search effort), drives headless Chromium
through Playwright: drops two public-domain paintings from ``../shared/corpus`` on the page, waits for the
job, opens the AI view of the second image and saves the screenshot (re-quantised to a palette PNG when
it would exceed ``--max-kb``).

    python scripts/screenshot_ui.py [--out docs/ui-screenshot.png]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
PAINTINGS = [
    SHARED / "corpus" / "art" / "claude_monet" / "ace_Impressionism_claude-monet_0.png",
    SHARED / "corpus" / "art" / "vincent_van_gogh" / "vincent-van-gogh_olive-grove-bright-blue-sky-1889.jpg",
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DROP_JS = """
(files) => {
  const dt = new DataTransfer();
  for (const [b64, name, type] of files) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    dt.items.add(new File([bytes], name, { type }));
  }
  document.querySelector("#drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
}
"""


def _image(path: Path, side: int) -> tuple[str, str, str]:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    name = path.stem.replace("ace_Impressionism_", "").replace("vincent-van-gogh_", "") + ".png"
    return base64.b64encode(buf.getvalue()).decode(), name, "image/png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "ui-screenshot.png")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--side", type=int, default=320, help="long side of the uploaded paintings (pixels)")
    p.add_argument("--max-kb", type=int, default=480)
    args = p.parse_args(argv)

    if "SFUMATO_MODELS_DIR" not in os.environ and (SHARED / "models").is_dir():
        os.environ["SFUMATO_MODELS_DIR"] = str(SHARED / "models")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from sfumato.config import Effort
    from sfumato.server import ServerSettings
    from sfumato.server.app import serve_in_thread

    files = [_image(pth, args.side) for pth in PAINTINGS]
    with tempfile.TemporaryDirectory(prefix="sfumato-shot-") as d:
        settings = ServerSettings(data_dir=Path(d), port=0,
                                  effort_override=Effort(steps=10, resolution=256, lr=0.006, calibration_steps=6))
        with serve_in_thread(settings) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url + "/")
                page.wait_for_selector('input[name="mode"][value="cloak"]')
                page.select_option("#quality", "fast")
                page.evaluate(DROP_JS, [list(f) for f in files])
                page.click("#submit")
                page.wait_for_function("() => document.querySelectorAll('.image[data-status=\"done\"]').length === 2",
                                       timeout=900_000)
                page.wait_for_timeout(1500)
                page.locator(".compare input[type=range]").first.fill("42")
                page.locator(".view-ai").nth(1).click()
                page.evaluate("window.scrollTo(0, 0)")
                page.wait_for_timeout(1500)
                png = page.screenshot()
            finally:
                browser.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if len(png) > args.max_kb * 1024:
        im = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        png = buf.getvalue()
    args.out.write_bytes(png)
    print(f"wrote {args.out} ({len(png) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
