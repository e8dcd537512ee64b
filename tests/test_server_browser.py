"""The web UI in a real browser (headless Chromium through Playwright): drop an image on the page, protect
it, watch the job finish, use the comparison views, download the result, its manifest and the zip, and
check the downloaded file differs from the original within the budget."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from sfumato.config import Effort
from sfumato.server import ServerSettings
from sfumato.server.app import serve_in_thread

CHROMIUM = os.environ.get("SFUMATO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

DROP_JS = """
([b64, name]) => {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type: "image/png" }));
  const zone = document.querySelector("#drop");
  zone.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt, bubbles: true, cancelable: true }));
  zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
}
"""

IMG_READY_JS = """
(sel) => { const i = document.querySelector(sel);
           return !!i && i.src.startsWith("blob:") && i.complete && i.naturalWidth > 0; }
"""


@pytest.fixture(scope="module")
def original(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("browser") / "monet.png"
    with Image.open(corpus_dir / "art" / "claude_monet" / "ace_Impressionism_claude-monet_0.png") as im:
        im.convert("RGB").resize((96, 72), Image.Resampling.LANCZOS).save(p, format="PNG")
    return p


def test_protect_an_image_in_the_browser(tmp_path: Path, models_dir: Path, original: Path) -> None:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run .ci/install-web.sh (apt-get install chromium)"
    settings = ServerSettings(data_dir=tmp_path / "data", port=0, models_dir=models_dir, max_queue=2,
                              effort_override=Effort(steps=2, resolution=64, calibration_steps=2),
                              check_attacks="jpeg-q85-420")  # one cheap attack keeps the report quick
    errors: list[str] = []
    with serve_in_thread(settings) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 800})
            page = ctx.new_page()
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
            page.goto(url + "/")
            page.wait_for_selector('input[name="mode"][value="cloak"]')
            assert page.locator(".mode").count() == 3  # cloak, poison, protect offered
            page.select_option("#quality", "fast")
            page.select_option("#target_style", "mosaic")
            assert page.inner_text("#check-note") == ""  # this version has the verification report
            page.check("#check")

            # a file picked with the file chooser, then removed again
            page.set_input_files("#files", str(original))
            assert page.locator("#picked li").count() == 1
            page.click("#picked li button")
            assert page.locator("#picked li").count() == 0 and page.is_disabled("#submit")
            # drag-and-drop onto the drop zone
            page.evaluate(DROP_JS, [base64.b64encode(original.read_bytes()).decode(), original.name])
            assert page.locator("#picked li").count() == 1
            page.click("#submit")

            page.wait_for_selector('.job .image[data-status="done"]', timeout=300_000)
            # the image is done before the job (its verification report is written next): wait for the job
            page.wait_for_function("document.querySelector('.job .job-head .status').innerText === 'done'",
                                   timeout=120_000)
            page.wait_for_function(IMG_READY_JS, arg=".compare img.after", timeout=30_000)
            page.wait_for_function(IMG_READY_JS, arg=".compare img.before", timeout=30_000)
            metrics = page.inner_text(".metrics")
            assert "within budget" in metrics and "LPIPS" in metrics

            # the comparison slider moves the split
            page.locator(".compare input[type=range]").fill("20")
            assert "80%" in page.eval_on_selector(".compare .before-wrap", "e => e.style.clipPath")
            # AI view and amplified difference
            first_src = page.get_attribute(".compare img.after", "src")
            page.click(".view-ai")
            page.wait_for_function("(s) => document.querySelector('.compare img.after').src !== s", arg=first_src)
            page.wait_for_function(IMG_READY_JS, arg=".compare img.after")
            page.click(".view-diff")
            page.wait_for_function("() => { const c = document.querySelector('.compare canvas');"
                                   " return !c.hidden && c.width > 0; }")
            page.click(".view-image")

            # the verification report opens in a new tab
            with page.expect_popup() as pop:
                page.click(".open-report")
            report = pop.value
            report.wait_for_load_state()
            report.wait_for_function("() => document.body && document.body.innerText.includes('jpeg-q85-420')")
            report.close()

            with page.expect_download() as dl:
                page.click(".dl-output")
            assert dl.value.suggested_filename == "monet.protected.png"
            protected_path = tmp_path / "downloaded.png"
            dl.value.save_as(protected_path)  # the browser's own copy goes when it closes
            with page.expect_download() as dl:
                page.click(".dl-manifest")
            manifest = json.loads(Path(dl.value.path()).read_text())
            with page.expect_download() as dl:
                page.click(".dl-zip")
            with zipfile.ZipFile(dl.value.path()) as z:
                assert {"monet.protected.png", "monet.sfumato.json", "monet.report.html", "monet.check.json"} <= set(
                    z.namelist())
                assert z.read("monet.protected.png") == protected_path.read_bytes()
            page.screenshot(path=str(tmp_path / "ui.png"))
            assert not errors, errors

            # a reload shows the finished job again (job ids are remembered by the page)
            page.reload()
            page.wait_for_selector('.job .image[data-status="done"]', timeout=30_000)
        finally:
            browser.close()

    before = np.asarray(Image.open(original).convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(protected_path).convert("RGB"), dtype=np.int16)
    assert after.shape == before.shape
    linf = int(np.abs(after - before).max())
    assert linf > 0, "the downloaded file is identical to the original"
    budget = manifest["budget"]
    assert linf <= round(budget["linf"] * 255) + 1, (linf, budget)
    assert manifest["achieved"][f"lpips_{budget['lpips_net']}"] <= budget["lpips"]
    assert manifest["within_budget"] is True
    assert manifest["output"]["sha256"] == hashlib.sha256(protected_path.read_bytes()).hexdigest()
    assert Image.open(io.BytesIO((tmp_path / "ui.png").read_bytes())).size == (1280, 800)
