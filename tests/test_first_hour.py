"""The artist's first hour on the command line (issue 20): a plain verdict per image (CLI line, manifest,
``check``), live progress within each image, ``--preview``, plain error lines, one failure per run for
missing weights, no empty output folders, the help texts, ``sfumato config`` and the quiet TFLite load.

The CLI cases run the real ``sfumato`` entry point in-process with a stand-in for the protection
(:class:`Stand`: it reports optimisation steps, writes the file and its manifest) and for the judges'
reading, so they run in the fast tier; the last tests use the real weights (slow tier).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

import sfumato.io as sio
from sfumato.cli import main
from sfumato.io.atomic import write_json_atomic
from sfumato.io.outputs import manifest_path_for
from sfumato.verification.verdicts import (
    combine_verdicts,
    concept_verdict,
    latent_verdict,
    make_verdict,
    style_verdict,
)


def _img(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, fmt: str | None = None) -> Path:
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGB").save(path, format=fmt)
    return path


class Stand:
    """A stand-in for ``sfumato.api.cloak_file``: reports ``steps`` optimisation steps, then writes the
    file (the API's default format) and a manifest; ``fail`` raises instead."""

    def __init__(self, steps: int = 3, fail: BaseException | None = None) -> None:
        self.steps, self.fail, self.calls = steps, fail, []

    def __call__(self, src: Any, out_dir: Any, cfg: Any = None, *, progress: Any = None, rel_stem: Any = None,
                 output_format: Any = None, **_: Any) -> Any:
        self.calls.append(Path(src))
        if self.fail is not None:
            raise self.fail
        for i in range(1, self.steps + 1):
            if progress is not None:
                progress(i, self.steps)
        img = sio.load_image(src)
        fmt = output_format or ("PNG" if img.format in ("JPEG", "PNG") else img.format)
        stem = rel_stem or Path(src).stem
        out = sio.save_image(img, img.rgb, Path(out_dir) / f"{stem}{sio.output_suffix(fmt)}", format=fmt)
        man_path = manifest_path_for(Path(out_dir), stem)
        m = {"mode": "cloak", "source": {"file": Path(src).name}, "output": {"file": out.name},
             "achieved": {"lpips_alex": 0.01, "linf": 4 / 255}, "latent": {"taef2": {"relative_reduction": 0.3}},
             "target": {"style": "cubist", "work_size": [40, 48]}, "timing_s": {"file_total": 0.0}}
        write_json_atomic(man_path, m, overwrite=True)
        return SimpleNamespace(source=Path(src), output=out, manifest=m, manifest_path=man_path)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user config file of this test's own (never the developer's)."""
    cfg = tmp_path / "cfg" / "config.json"
    monkeypatch.setenv("SFUMATO_CONFIG", str(cfg))
    return cfg


def _judged(verdict: dict[str, Any]):  # noqa: ANN202
    calls: list[tuple] = []

    def reading(original: Any, protected: Any, manifest: dict, **kw: Any) -> dict:
        calls.append((original.shape, protected.shape, manifest.get("mode"), kw))
        return verdict

    reading.calls = calls  # type: ignore[attr-defined]
    return reading


# ----------------------------------------------------------------------------------------------------
# progress and the verdict on the command line


def test_cli_shows_stages_steps_and_the_verdict(tmp_path: Path, capsys, monkeypatch, isolated) -> None:  # noqa: ANN001
    import sfumato.api
    import sfumato.verification.plain as plain

    stand = Stand(steps=4)
    monkeypatch.setattr(sfumato.api, "cloak_file", stand)
    said = make_verdict(False, "A model trained on this image would still pick up your style (style judge: "
                               "Vincent Van Gogh 98 %).", artist="vincent_van_gogh")
    reader = _judged(said)
    monkeypatch.setattr(plain, "image_verdict", reader)
    src = _img(tmp_path / "in" / "painting.png")
    rc = main(["cloak", str(src), "-o", str(tmp_path / "out")])
    cap = capsys.readouterr()
    err = cap.err
    assert rc == 0 and "Traceback" not in err
    order = ["painting.png: loading the image and preparing the target style", "optimising, step 1/4",
             "optimising, step 4/4", "painting.png: calibrating to the budget and saving",
             "painting.png: checking what a model sees (AI view, judges)"]
    pos = [err.find(s) for s in order]
    assert all(p >= 0 for p in pos) and pos == sorted(pos), err
    assert re.search(r"optimising, step 4/4, about \d+ s left", err), err  # an estimate of the time left
    assert "verdict: A model trained on this image would still pick up your style" in cap.out
    assert "cloak: 1 done (0 protected, 1 not protected, 0 cannot tell)" in err
    man = json.loads((tmp_path / "out" / "painting.sfumato.json").read_text())
    assert man["verdict"]["protected"] is False and man["verdict"]["sentence"] == said["sentence"]
    assert reader.calls and reader.calls[0][2] == "cloak"


def test_a_verdict_that_cannot_be_made_says_why_and_keeps_the_file(tmp_path: Path, capsys, monkeypatch,  # noqa: ANN001
                                                                    isolated) -> None:
    import sfumato.api
    import sfumato.verification.plain as plain
    from sfumato.models import ModelNotFoundError

    def broken(*a: Any, **k: Any) -> dict:
        raise ModelNotFoundError("model weights not found: taef2/taef2_decoder.pth (looked in: nowhere)")

    monkeypatch.setattr(sfumato.api, "cloak_file", Stand())
    monkeypatch.setattr(plain, "image_verdict", broken)
    src = _img(tmp_path / "a.png")
    rc = main(["cloak", str(src), "-o", str(tmp_path / "out"), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0 and (tmp_path / "out" / "a.png").exists()
    man = json.loads((tmp_path / "out" / "a.sfumato.json").read_text())
    assert man["verdict"]["protected"] is None
    assert man["verdict"]["sentence"].startswith("No verdict: model weights not found: taef2/taef2_decoder.pth")
    assert "1 cannot tell" in cap.err and "loading the image" not in cap.err  # --quiet: no stage lines


def test_no_verdict_option_skips_the_judges(tmp_path: Path, capsys, monkeypatch, isolated) -> None:  # noqa: ANN001
    import sfumato.api
    import sfumato.verification.plain as plain

    monkeypatch.setattr(sfumato.api, "cloak_file", Stand())
    reader = _judged(make_verdict(True, "x"))
    monkeypatch.setattr(plain, "image_verdict", reader)
    rc = main(["cloak", str(_img(tmp_path / "a.png")), "-o", str(tmp_path / "out"), "--quiet", "--no-verdict"])
    assert rc == 0 and not reader.calls
    assert "verdict" not in json.loads((tmp_path / "out" / "a.sfumato.json").read_text())
    assert "verdict:" not in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------
# errors, missing weights, output folders


def test_missing_weights_fail_once_per_run_in_plain_words(tmp_path: Path, capsys, monkeypatch, isolated) -> None:  # noqa: ANN001
    import sfumato.api
    from sfumato.models import ModelNotFoundError

    stand = Stand(fail=ModelNotFoundError("model weights not found: taef2/taef2_encoder.pth (looked in: /x)"))
    monkeypatch.setattr(sfumato.api, "cloak_file", stand)
    d = tmp_path / "in"
    for i in range(3):
        _img(d / f"p{i}.png", seed=i)
    out = tmp_path / "new" / "out"
    rc = main(["cloak", str(d), "-o", str(out), "--quiet"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(stand.calls) == 1, lines
    assert len(lines) == 1 and lines[0].startswith("error: model weights not found: taef2/taef2_encoder.pth")
    assert "stopped: every image needs it" in lines[0] and "Error" not in lines[0]
    assert not out.exists()  # the run made it and left nothing in it: removed


def test_failures_are_plain_words_and_leave_no_empty_folders(tmp_path: Path, capsys, monkeypatch,  # noqa: ANN001
                                                              isolated) -> None:
    import sfumato.api

    class NotProtectedHere(ValueError):
        pass

    monkeypatch.setattr(sfumato.api, "cloak_file", Stand(fail=NotProtectedHere("a.png: not protected: nothing fits")))
    d = tmp_path / "in"
    _img(d / "sub" / "a.png")
    out = tmp_path / "out"
    rc = main(["cloak", str(d), "-o", str(out), "--quiet"])
    errs = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert rc == 1 and errs == [f"error: {d / 'sub' / 'a.png'}: a.png: not protected: nothing fits"]
    assert not out.exists()
    monkeypatch.setattr(sfumato.api, "cloak_file", Stand(fail=RuntimeError("boom")))
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["cloak", str(d), "-o", str(out), "--quiet"])
    errs = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert rc == 1 and "RuntimeError" not in errs[0] and "unexpected failure (boom)" in errs[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # its own folder kept, the new sub/ removed


def test_jpeg_input_comes_out_as_png_as_the_help_says(tmp_path: Path, capsys, monkeypatch, isolated) -> None:  # noqa: ANN001
    import sfumato.api
    import sfumato.verification.plain as plain
    from sfumato.cli import build_parser

    monkeypatch.setattr(sfumato.api, "cloak_file", Stand())
    monkeypatch.setattr(plain, "image_verdict", _judged(make_verdict(None, "x")))
    rc = main(["cloak", str(_img(tmp_path / "photo.jpg", fmt="JPEG")), "-o", str(tmp_path / "out"), "--quiet"])
    assert rc == 0 and (tmp_path / "out" / "photo.png").exists()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["cloak"]
    fmt_help = next(a.help for a in sub._actions if a.dest == "format")
    assert "JPEG" in fmt_help and "comes out as PNG" in fmt_help and "same family" not in fmt_help


def test_help_has_examples(capsys) -> None:  # noqa: ANN001
    for argv in (["--help"], ["cloak", "--help"], ["check", "--help"], ["config", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "examples:" in out and "sfumato " in out.split("examples:")[1], argv
    with pytest.raises(SystemExit):
        main(["cloak", "--help"])
    assert "--preview" in capsys.readouterr().out


def test_cloak_without_out_dir_or_preview_is_one_line(tmp_path: Path, capsys, isolated) -> None:  # noqa: ANN001
    rc = main(["cloak", str(_img(tmp_path / "a.png"))])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: give the output folder: -o OUT_DIR (or --preview for a quick look without "
                               "writing)"]


# ----------------------------------------------------------------------------------------------------
# sfumato config and the folders it sets


def test_config_sets_the_models_folder_and_the_variable_wins(tmp_path: Path, capsys, monkeypatch,  # noqa: ANN001
                                                             isolated: Path) -> None:
    from sfumato import models

    monkeypatch.delenv("SFUMATO_MODELS_DIR", raising=False)
    monkeypatch.delenv("SFUMATO_CORPUS_DIR", raising=False)
    mine = tmp_path / "my models"
    mine.mkdir()
    assert main(["config", "set", "models_dir", str(mine)]) == 0
    assert json.loads(isolated.read_text()) == {"models_dir": str(mine.resolve())}
    assert models._candidates("taef2/taef2_encoder.pth", None)[0] == mine.resolve() / "taef2/taef2_encoder.pth"
    with pytest.raises(models.ModelNotFoundError, match=r"^model weights not found: taef2/taef2_encoder\.pth"):
        models.resolve("taef2/taef2_encoder.pth", download=False)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert f"models_dir = {mine.resolve()}  [config file]" in out and "corpus_dir: not set" in out
    monkeypatch.setenv("SFUMATO_MODELS_DIR", str(tmp_path / "env"))
    cands = models._candidates("taef2/taef2_encoder.pth", None)
    assert cands[0] == tmp_path / "env" / "taef2/taef2_encoder.pth" and mine.resolve() / "taef2/taef2_encoder.pth" \
        not in cands
    assert main(["config", "unset", "models_dir"]) == 0 and json.loads(isolated.read_text()) == {}
    capsys.readouterr()
    assert main(["config", "set", "models_dir", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'nope'} is not a folder; give the folder that "
                                               "holds the model weights")
    isolated.write_text("{not json")
    assert main(["config"]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_config_prepares_the_style_judge_once(tmp_path: Path, capsys, monkeypatch, isolated: Path) -> None:  # noqa: ANN001
    """``sfumato config prepare`` (and ``set``) trains the style judge now, so the first image does not; no
    corpus is one line, never an error for ``set``."""
    import sfumato.verification.plain as plain

    monkeypatch.delenv("SFUMATO_CORPUS_DIR", raising=False)
    calls: list[tuple] = []
    answer: list[tuple] = [(None, "no style judge was found (run 'sfumato config set corpus_dir FOLDER' ...)")]
    monkeypatch.setattr(plain, "style_judge_for", lambda c, m: calls.append((c, m)) or answer[0])
    import sfumato.commands.config as config_cmd

    styles_prepared: list[int] = []
    monkeypatch.setattr(config_cmd, "prepare_styles", lambda: styles_prepared.append(1) or False)
    assert main(["config", "prepare"]) == 1
    assert capsys.readouterr().out.startswith("note: no style judge was found")
    mine = tmp_path / "corpus"
    mine.mkdir()
    assert main(["config", "set", "corpus_dir", str(mine)]) == 0 and "note:" not in capsys.readouterr().out
    answer[0] = (object(), "style judge")
    assert main(["config", "prepare"]) == 0
    assert re.search(r"^style judge ready in \d+\.\d s \(cached in .*; runs start with it\)$",
                     capsys.readouterr().out.strip())
    assert len(calls) == 3 and len(styles_prepared) == 3
    assert main(["config", "prepare", "models_dir"]) == 2


def test_corpus_is_found_beside_the_models_folder_only_when_it_is_one(tmp_path: Path, monkeypatch,  # noqa: ANN001
                                                                      isolated: Path) -> None:
    from sfumato.verification.discovery import find_corpus_dir

    monkeypatch.delenv("SFUMATO_CORPUS_DIR", raising=False)
    (tmp_path / "kit" / "models").mkdir(parents=True)
    monkeypatch.setenv("SFUMATO_MODELS_DIR", str(tmp_path / "kit" / "models"))
    assert find_corpus_dir() is None
    (tmp_path / "kit" / "corpus" / "art128").mkdir(parents=True)
    assert find_corpus_dir() == tmp_path / "kit" / "corpus"
    assert find_corpus_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv("SFUMATO_CORPUS_DIR", str(tmp_path / "env"))
    assert find_corpus_dir() == tmp_path / "env"


def test_quiet_tflite_silences_native_stderr_only_meanwhile(capfd) -> None:  # noqa: ANN001
    from sfumato.judges.concept import quiet_tflite

    with quiet_tflite():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "after" in err


# ----------------------------------------------------------------------------------------------------
# the verdict's wording: never "protected" when it did not take


def test_style_verdicts() -> None:
    still = style_verdict(artist="vincent_van_gogh", p_reference=0.97, scope="at the work size",
                          readings=[{"view": "w", "p_original": 0.97, "p_protected": 0.98,
                                     "prediction": "vincent_van_gogh"}])
    assert still["protected"] is False
    assert still["sentence"] == ("A model trained on this image would still pick up your style (style judge: "
                                 "Vincent Van Gogh 98 %).")
    gone = style_verdict(artist="vincent_van_gogh", p_reference=0.97, scope="at every trainer view we tested (2)",
                         readings=[{"view": "a", "p_original": 0.9, "p_protected": 0.2, "prediction": "claude_monet"},
                                   {"view": "resize x0.5", "p_original": 0.9, "p_protected": 0.35,
                                    "prediction": "claude_monet"}])
    assert gone["protected"] is True and gone["sentence"].startswith("Protected at every trainer view we tested (2)")
    assert "weakest: resize x0.5, Vincent Van Gogh 90 % → 35 %" in gone["sentence"]
    one_view_left = style_verdict(artist="a", p_reference=0.9, scope="s",
                                  readings=[{"view": "v1", "p_original": 0.9, "p_protected": 0.1, "prediction": "b"},
                                            {"view": "bucket 512", "p_original": 0.9, "p_protected": 0.6,
                                             "prediction": "a"}])
    assert one_view_left["protected"] is False and "at the bucket 512 view" in one_view_left["sentence"]
    unknown = style_verdict(artist="titian", p_reference=0.3, scope="s",
                            readings=[{"view": "v", "p_original": 0.3, "p_protected": 0.1, "prediction": "x"}])
    assert unknown["protected"] is None and "does not recognise this artist" in unknown["sentence"]


def test_latent_alone_never_says_protected() -> None:
    moved = latent_verdict(0.38, "cubist", why_no_judge="no style judge was found")
    assert moved["protected"] is None and "38 % of the way toward the target style 'cubist'" in moved["sentence"]
    assert latent_verdict(0.01, "cubist", why_no_judge="x")["protected"] is False


def test_concept_verdicts_and_combination() -> None:
    dog = concept_verdict(concept="dog", target="cat", scores={"dog": 0.99, "cat": 0.0}, label="dog")
    assert dog["protected"] is False and "still sees a dog" in dog["sentence"] and "dog 99 %" in dog["sentence"]
    cat = concept_verdict(concept="dog", target="cat", scores={"dog": 0.05, "cat": 0.7}, label="cat")
    assert cat["protected"] is True and "cat 70 %" in cat["sentence"]
    other = concept_verdict(concept="dog", target="cat", scores={"dog": 0.1, "cat": 0.1}, label="other")
    assert other["protected"] is False and "did not take" in other["sentence"]
    assert combine_verdicts({"style": make_verdict(True, "a"), "concept": dog})["protected"] is False
    assert combine_verdicts({"style": make_verdict(None, "a"), "concept": cat})["protected"] is None
    assert combine_verdicts({"style": make_verdict(True, "a"), "concept": cat})["protected"] is True


def test_check_verdict_reads_every_trainer_view() -> None:
    from sfumato.verification.plain import check_verdict

    def entry(p: float, pred: str) -> dict:
        return {"p_artist": p, "prediction": pred}

    judges = {"style": {"reference_artist": "vincent_van_gogh", "ai_view_original": entry(0.95, "vincent_van_gogh"),
                        "ai_view_protected": entry(0.2, "claude_monet")}}
    rows = [{"name": "bucket-512", "size": [512, 410], "judges": {"style": {
        "p_original": 0.9, "p_protected": 0.1, "prediction": "claude_monet"}}},
        {"name": "resize-x0.5", "size": [300, 240], "judges": {"style": {
            "p_original": 0.9, "p_protected": 0.4, "prediction": "claude_monet"}}}]
    views = {"rows": rows, "worst": {"view": {"measure": "toward", "toward": 0.2}}}
    kw = {"latent": {}, "measure": "target", "base_ok": True, "manifest": {"mode": "cloak", "target": {"style": "c"}},
          "notes": []}
    v = check_verdict(judges=judges, views=views, **kw)
    assert v["protected"] is True and "every trainer view we tested (3)" in v["sentence"]
    assert "weakest: resize-x0.5 (300x240)" in v["sentence"]
    rows[0]["judges"]["style"].update(p_protected=0.8, prediction="vincent_van_gogh")
    v = check_verdict(judges=judges, views=views, **kw)
    assert v["protected"] is False and "bucket-512 (512x410) view" in v["sentence"]
    rows[0]["judges"]["style"].update(p_protected=0.1, prediction="claude_monet")
    crop = {"reference_artist": "vincent_van_gogh", "views": [
        {"view": "bucket-1024", "size": [1024, 874], "p_original": 1.0, "p_artist": 0.99, "prediction": "vincent_van_gogh"}]}
    v = check_verdict(judges={**judges, "crop_style": crop}, views=views, **kw)
    assert v["protected"] is False
    assert v["sentence"].endswith("at the bucket-1024 (1024x874) view (crop judge: Vincent Van Gogh 99 %).")
    nojudge = check_verdict(judges={}, views=views, **{**kw, "notes": [
        "Style judge skipped: no corpus of reference paintings found (x)."]})
    assert nojudge["protected"] is None and "20 % of the way" in nojudge["sentence"]
    poisoned = check_verdict(judges={"concept": {"ai_view_protected": {"label": "dog", "top": [["dog", 0.99]]}}},
                             views=None, **{**kw, "manifest": {"mode": "poison", "concept": "dog", "target": "cat"}})
    assert poisoned["protected"] is False and "still sees a dog" in poisoned["sentence"]


# ----------------------------------------------------------------------------------------------------
# the first image's fixed cost (benchmarks/first_image.py): the built-in styles are drawn in windows


#: SHA-256 (first 16 hex) of each built-in style's two exemplars, as drawn before the windowed marks and the
#: partial sort of the Voronoi cells (commit 049fc33): the faster drawing must not change a single bit.
STYLE_DIGESTS = {
    "pointillism": "868f79f91975f637", "cubist": "2f8da6f02eb50c28", "stained-glass": "78cdc9f2799f47eb",
    "ink-hatching": "124c6c6c79b57297", "watercolour": "a59921d00d24194e", "mosaic": "14ac15991c67e06c",
    "halftone": "71459aab4abebcaa", "impasto": "1ca51c80f6c08bc5", "glitch": "5981b37498c95de9",
    "charcoal": "7ecadfe4d02f6522",
}


def test_builtin_styles_are_bit_identical_to_the_whole_image_drawing() -> None:
    import hashlib

    from sfumato.targets.styles import STYLE_FAMILIES, builtin_style

    assert set(STYLE_DIGESTS) == set(STYLE_FAMILIES)
    for name, digest in STYLE_DIGESTS.items():
        st = builtin_style(name)
        assert len(st.exemplars) == 2 and all(e.shape == (256, 256, 3) and e.dtype == np.float32 for e in st.exemplars)
        got = hashlib.sha256(b"".join(e.tobytes() for e in st.exemplars)).hexdigest()[:16]
        assert got == digest, name


def test_a_mark_window_holds_every_pixel_of_the_whole_image_mask() -> None:
    from sfumato.targets.styles import _grid, _window

    y, x = _grid(64)
    rng = np.random.default_rng(3)
    for _ in range(300):
        cy, cx = rng.uniform(-8, 72, 2)  # marks near, on and beyond the edges
        r = float(rng.uniform(0.5, 12))
        whole = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
        w = _window(cy, cx, r, n=64)
        inside = np.zeros_like(whole)
        inside[w] = (y[w] - cy) ** 2 + (x[w] - cx) ** 2 <= r * r
        assert np.array_equal(inside, whole), (cy, cx, r)


def test_preview_optimises_the_view_it_judges_and_says_so(tmp_path: Path, capsys, monkeypatch,  # noqa: ANN001
                                                           isolated) -> None:
    import sfumato.encoders.cache as cache
    import sfumato.encoders.views as views
    import sfumato.protections.cloak as pc
    import sfumato.verification.plain as plain
    from sfumato.commands.cloak import PREVIEW_SIDE, PREVIEW_STEPS, PREVIEW_VIEWS

    seen: dict[str, Any] = {}

    def fake_cloak(rgb, cfg, **_):  # noqa: ANN001, ANN202
        seen.update(shape=rgb.shape, steps=cfg.effort.steps, views=cfg.effort.views, side=cfg.effort.resolution)
        return SimpleNamespace(image=rgb, target={"style": "cubist"}, latent=[{"encoder": "taef2",
                               "relative_reduction": 0.2}], timing_s={"total": 0.1})

    monkeypatch.setattr(pc, "cloak_array", fake_cloak)
    def fake_verdict(*a: Any, ai_views: Any = None, **k: Any) -> dict[str, Any]:
        seen["verdict_views"] = ai_views
        return {"sentence": "Cannot tell (stand-in).", "protected": None}

    ai_views: list[tuple] = []

    def fake_ai_view(rgb, ae, resolution):  # noqa: ANN001, ANN202
        ai_views.append(rgb.shape)
        return rgb

    monkeypatch.setattr(plain, "image_verdict", fake_verdict)
    monkeypatch.setattr(cache, "cached_encoder", lambda *a, **k: None)
    monkeypatch.setattr(views, "ai_view", fake_ai_view)
    src = _img(tmp_path / "big.png", size=(600, 500))
    before = src.read_bytes()
    assert main(["cloak", str(src), "--preview", "-o", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    # the verdict reads the two AI views the sheet shows: two encode-decode passes, not four
    assert len(ai_views) == 2 and len(seen.pop("verdict_views")) == 2
    assert PREVIEW_VIEWS == "work" and seen == {"shape": (round(500 * PREVIEW_SIDE / 600), PREVIEW_SIDE, 3), "steps": PREVIEW_STEPS, "views": "work",
                                                "side": PREVIEW_SIDE}
    line = next(ln for ln in out.splitlines() if "verdict (preview" in ln)
    assert f"{PREVIEW_STEPS} steps at {PREVIEW_SIDE} px, that view only" in line and "trainer views" in line
    assert src.read_bytes() == before
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["big.preview.png"]


# ----------------------------------------------------------------------------------------------------
# real weights (slow tier)


def test_preview_on_a_real_painting(tmp_path: Path, capsys, monkeypatch, models_dir: Path, corpus_dir: Path,  # noqa: ANN001
                                    isolated) -> None:
    monkeypatch.setenv("SFUMATO_MODELS_DIR", str(models_dir))
    monkeypatch.delenv("SFUMATO_CORPUS_DIR", raising=False)
    src = corpus_dir / "art" / "vincent_van_gogh" / "vincent-van-gogh_olive-picking-1889.jpg"
    before = src.read_bytes()
    rc = main(["cloak", str(src), "--preview", "-o", str(tmp_path / "p"), "--steps", "4"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["vincent-van-gogh_olive-picking-1889.preview.png"]
    sheet = np.asarray(Image.open(tmp_path / "p" / "vincent-van-gogh_olive-picking-1889.preview.png"))
    assert sheet.shape[1] > 2 * sheet.shape[0] * 0.9 and max(sheet.shape[:2]) <= 2 * 256 + 8
    line = next(ln for ln in cap.out.splitlines() if "verdict (preview" in ln)
    # the corpus beside the models folder gives the style judge; it knows this painting
    assert "Vincent Van Gogh" in line and "Cannot tell" not in line, line
    assert "XNNPACK" not in cap.err and "step 4/4" in cap.err and src.read_bytes() == before


def test_an_unpoisoned_dog_is_never_called_protected(models_dir: Path, corpus_dir: Path) -> None:
    from sfumato.verification.plain import image_verdict

    dog = sorted((corpus_dir / "pets" / "dog").iterdir())[0]
    rgb = sio.load_image(dog).rgb
    v = image_verdict(rgb, rgb, {"mode": "poison", "concept": "dog", "target": "cat"}, models_dir=models_dir,
                      resolution=256)
    assert v["protected"] is False and "dog" in v["sentence"], v


def test_cli_and_web_preview_share_one_api_call(monkeypatch) -> None:  # noqa: ANN001
    """``sfumato.api.preview`` is the one preview: the web app's computation calls it, with the
    configuration :func:`sfumato.api.preview_config` makes (the work view, the preview's size and steps)."""
    import sfumato.api as api
    from sfumato.config import PREVIEW_SIDE, PREVIEW_STEPS, PREVIEW_TARGET_STEPS, CloakConfig
    from sfumato.server import preview as server_preview
    from sfumato.server.modes import JobOptions
    from sfumato.server.settings import ServerSettings

    cfg = api.preview_config(CloakConfig.preset(quality="slow"))
    assert (cfg.effort.resolution, cfg.effort.steps, cfg.effort.views) == (PREVIEW_SIDE, PREVIEW_STEPS, "work")
    assert cfg.effort.target_steps == PREVIEW_TARGET_STEPS and CloakConfig().effort.target_steps is None
    assert api.preview_config(cfg, side=128, steps=3).effort.resolution == 128
    assert api.preview_downscale(np.zeros((600, 500, 3), np.float32), 256).shape == (256, 213, 3)
    seen: list[Any] = []

    def fake_preview(rgb, config, **kw):  # noqa: ANN001, ANN202
        seen.append((rgb.shape, config.effort.resolution, config.effort.views))
        return api.PreviewResult(before=rgb, after=rgb, verdict={"sentence": "x"}, target={"style": "cubist"},
                                 latent={}, side=256, steps=8, timing_s={"total": 0.1})

    monkeypatch.setattr(api, "preview", fake_preview)
    web_cfg = server_preview.preview_config(JobOptions(mode="cloak"), ServerSettings(data_dir=Path("/nonexistent")))
    out = server_preview.compute(np.zeros((40, 30, 3), np.float32), web_cfg, models_dir=None)
    assert seen == [((40, 30, 3), PREVIEW_SIDE, "work")] and out["target"] == {"style": "cubist"}
