"""``sfumato check``: the check API, its JSON and self-contained HTML report, and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfumato.attacks import SUITES, apply_attack, best_of_n
from sfumato.verification.check import NOT_TESTED, check, verdict_for

SIDE = 48
VERDICTS = {"survives", "weakened", "removed"}


@pytest.fixture(scope="module")
def painting(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48 px real painting (centre crop of a Signac, downscaled), saved as PNG."""
    from sfumato.io import load_image

    src = sorted((corpus_dir / "art" / "paul_signac").iterdir())[0]
    x = load_image(src).rgb
    h, w = x.shape[:2]
    s = min(h, w)
    crop = x[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    im = Image.fromarray((crop * 255 + 0.5).astype(np.uint8)).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    out = tmp_path_factory.mktemp("orig") / "painting.png"
    im.save(out)
    return out


@pytest.fixture(scope="module")
def cloaked(painting: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (short) style cloak of the painting toward 'pointillism', with its manifest beside it."""
    from sfumato.api import cloak_file
    from sfumato.config import CloakConfig, Effort

    cfg = CloakConfig(effort=Effort(steps=5, resolution=64, lr=0.01), target_style="pointillism")
    return cloak_file(painting, tmp_path_factory.mktemp("out"), cfg).output


@pytest.fixture(scope="module")
def small_corpus(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/art/<artist>/ with two paintings of each of two artists (links, nothing copied)."""
    root = tmp_path_factory.mktemp("corpus")
    for artist in ("paul_signac", "claude_monet"):
        d = root / "art" / artist
        d.mkdir(parents=True)
        for f in sorted((corpus_dir / "art" / artist).iterdir())[1:3]:
            (d / f.name).symlink_to(f)
    return root


def test_verdict_thresholds() -> None:
    assert verdict_for(2 / 3) == "survives" and verdict_for(0.66) == "weakened"
    assert verdict_for(1 / 3) == "weakened" and verdict_for(0.33) == "removed" and verdict_for(-0.2) == "removed"
    assert verdict_for(None) == "not measured"


def test_check_end_to_end_json_and_html(cloaked: Path, painting: Path, small_corpus: Path, tmp_path: Path) -> None:
    from sfumato.verification.report import write_html

    manifest = json.loads(cloaked.with_name(f"{cloaked.stem}.sfumato.json").read_text())
    rep = check(cloaked, original=painting, attacks="default", corpus_dir=small_corpus, seed=0)

    # manifest found beside the file; target re-rendered exactly as the cloak did
    assert rep.manifest is not None and rep.manifest["file"].endswith(".sfumato.json")
    assert rep.protection_measure == "target" and rep.target["style"] == "pointillism"
    lat = rep.latent["taef2"]
    assert lat["relative_reduction"] == pytest.approx(manifest["latent"]["taef2"]["relative_reduction"], abs=1e-3)
    assert lat["relative_reduction"] > 0.05 and lat["shift_away"] > 0
    assert rep.quality["lpips_alex"] == pytest.approx(manifest["achieved"]["lpips_alex"], abs=1e-4)

    # every default attack ran and got a verdict with its numbers
    assert [a.name for a in rep.attacks] == list(SUITES["default"])
    for a in rep.attacks:
        assert a.verdict in VERDICTS and a.retained is not None
        assert a.verdict == verdict_for(a.retained)
        assert a.latent["taef2"]["retained"] == pytest.approx(
            a.latent["taef2"]["relative_reduction"] / lat["relative_reduction"])
        assert (a.seed is not None) == (a.name in ("noise-0.05", "noisy-upscale", "impress-fast"))
        assert "style" in a.judges and "concept" in a.judges
    # replayable: the recorded seed reproduces the attacked image
    noise = next(a for a in rep.attacks if a.name == "noise-0.05")
    from sfumato.io import load_image

    x_p = load_image(cloaked).rgb
    assert np.array_equal(apply_attack("noise-0.05", x_p, seed=noise.seed),
                          apply_attack("noise-0.05", x_p, seed=noise.seed))
    b = best_of_n([{"name": a.name, "retained": a.retained, "usable": a.usable} for a in rep.attacks])
    assert (rep.best_of_n is None) == (b is None)
    if b is not None:
        assert rep.best_of_n["name"] == b.name and rep.best_of_n["verdict"] == verdict_for(b.retained)

    # judges: the style judge is trained on the given corpus and sees the AI views
    st = rep.judges["style"]
    assert set(st["artists"]) == {"paul_signac", "claude_monet"}
    assert 0 <= st["ai_view_protected"]["p_artist"] <= 1 and "ai_view_original" in st
    assert "ai_view_protected" in rep.judges["concept"]

    # JSON: complete and serialisable
    d = json.loads(json.dumps(rep.to_dict()))
    for key in ("quality", "latent", "judges", "attacks", "best_of_n", "thresholds", "not_tested", "summary",
                "settings"):
        assert key in d
    assert d["thresholds"]["survives_at"] == pytest.approx(2 / 3) and d["not_tested"] == list(NOT_TESTED)
    assert any("LightShed" in s for s in d["not_tested"]) and any("GrIDPure" in s for s in d["not_tested"])
    assert "images" not in d and "images" in rep.to_dict(include_images=True)

    # HTML: self-contained, images embedded, every attack and the limits stated
    html = write_html(rep, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # every resource is inline
    assert html.count("data:image/jpeg;base64,") >= 5 + 2 * len(rep.attacks)
    for a in rep.attacks:
        assert a.name in html
    assert "What is not tested" in html and "survives if retained" in html
    assert (tmp_path / "report.html").stat().st_size < 400_000


def test_check_trainer_views_json_html_and_cli(cloaked: Path, painting: Path, small_corpus: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Every trainer view and the worst one, in the JSON, the HTML, the summary and the CLI's table; the work
    view reproduces the work-size figure; the style judge reads every view's AI view."""
    import functools

    import sfumato.attacks.trainer_views as tv
    from sfumato.cli import main
    from sfumato.verification.report import write_html

    small = functools.partial(tv.trainer_views, scales=(64, 96), crop_side=32)  # the real buckets, scaled down
    manifest = json.loads(cloaked.with_name(f"{cloaked.stem}.sfumato.json").read_text())
    views = small(SIDE, SIDE, work_size=tuple(manifest["target"]["work_size"]), seed=0)  # (h, w)
    rep = check(cloaked, original=painting, attacks=["jpeg-q95-444"], corpus_dir=small_corpus, seed=0, views=views)
    v = rep.to_dict()["views"]
    names = [r["name"] for r in v["rows"]]
    assert names[0] == "work" and {"bucket-64", "bucket-96"} <= set(names)  # native = work here
    assert any(n.startswith("crop32@") for n in names)
    work = v["rows"][0]
    assert work["toward"] == pytest.approx(rep.latent["taef2"]["relative_reduction"], abs=1e-5)
    assert v["worst"]["view"]["toward"] == min(r["toward"] for r in v["rows"])
    assert v["budget"]["source"] == "manifest" and 0 <= v["ceiling"]["scale"] <= 1
    for r in v["rows"]:
        assert -1 < r["toward"] <= 1 and -1 <= r["cosine"] <= 1 and r["ceiling_toward"] is not None
        j = r["judges"]["style"]
        assert j["artist"] == rep.judges["style"]["reference_artist"] and 0 <= j["p_protected"] <= 1
        assert tv.TrainerView.from_dict(r["view"]).name == r["name"]
    assert "style" in v["worst"]["judges"]
    assert f"Worst trainer view: {v['worst']['view']['name']}" in rep.summary
    html = write_html(rep, tmp_path / "views.html").read_text(encoding="utf-8")
    assert "<h2>Trainer views</h2>" in html and "(worst)" in html and "ceiling control" in html
    for n in names:
        assert n in html

    # the CLI measures the views by default (here with the buckets scaled down) and --no-views skips them
    monkeypatch.setattr(tv, "trainer_views", small)
    j = tmp_path / "cli.json"
    assert main(["check", str(cloaked), "--original", str(painting), "--attacks", "median-3", "--no-judges",
                 "--json", str(j), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trainer view" in out and "bucket-96" in out and "Worst trainer view" in out
    assert json.loads(j.read_text())["views"]["worst"]["view"]["name"] in out
    assert main(["check", str(cloaked), "--original", str(painting), "--attacks", "median-3", "--no-judges",
                 "--no-views", "--json", str(j), "--quiet"]) == 0
    assert "trainer view" not in capsys.readouterr().out and json.loads(j.read_text())["views"] is None


def test_check_measures_at_the_cloaks_own_work_size(painting: Path, tmp_path: Path) -> None:
    """The anti-fingerprint jitter moves the cloak's working size off ``effort.resolution``; check() must
    re-render the target and measure there, or it aims at a differently drawn target (a Gatys rendering at
    another size is another image) and under-reports the cloak."""
    from sfumato.api import cloak_file
    from sfumato.config import CloakConfig, Effort

    big = tmp_path / "painting96.png"
    Image.open(painting).resize((96, 96), Image.Resampling.LANCZOS).save(big)
    cfg = CloakConfig(effort=Effort(steps=4, resolution=80, lr=0.01), target_style="pointillism")
    out = cloak_file(big, tmp_path / "out", cfg).output
    manifest = json.loads(out.with_name(f"{out.stem}.sfumato.json").read_text())
    assert manifest["target"]["work_size"] != [80, 80]  # the jitter did move it (deterministic per image)
    rep = check(out, original=big, attacks=["jpeg-q95-444"], judges=False, seed=0)
    assert rep.settings["work_size"] == manifest["target"]["work_size"][::-1]
    assert rep.latent["taef2"]["relative_reduction"] == pytest.approx(
        manifest["latent"]["taef2"]["relative_reduction"], abs=1e-3)

    # a working size that cannot belong to this image is refused with a note, not used
    bad = {**manifest, "target": {**manifest["target"], "work_size": [40, 80]}}
    rep2 = check(out, original=big, manifest=bad, attacks=["jpeg-q95-444"], judges=False, seed=0)
    assert rep2.settings["work_size"] == [80, 80]
    assert any("does not fit" in n for n in rep2.notes)


def test_check_without_target_uses_the_residual_latent_shift(painting: Path) -> None:
    from sfumato.io import load_image

    x = load_image(painting).rgb
    rng = np.random.default_rng(1)
    prot = np.clip(x + rng.choice([-8 / 255, 8 / 255], size=x.shape), 0, 1).astype(np.float32)
    rep = check(prot, original=x, attacks=["jpeg-q95-444", "blur-r2"], judges=False)
    assert rep.protection_measure == "shift" and rep.manifest is None and rep.target is None
    by = {a.name: a for a in rep.attacks}
    # fine pixel noise survives near-lossless JPEG far better than a sigma-2 blur
    assert by["jpeg-q95-444"].retained > by["blur-r2"].retained
    assert by["blur-r2"].verdict == "removed"
    assert "perturbation_shift" in by["blur-r2"].latent["taef2"]
    assert any("switched off" in n for n in rep.notes)


def test_check_edge_cases(painting: Path, cloaked: Path) -> None:
    from sfumato.io import load_image

    x = load_image(painting).rgb
    same = check(x, original=x, attacks=["median-3"], judges=False)  # nothing to remove
    assert same.attacks[0].verdict == "no protection" and same.attacks[0].retained is None
    alone = check(cloaked, attacks=["jpeg-q75-420"], judges=False)  # no original: no latent measure
    assert alone.protection_measure == "none" and alone.attacks[0].verdict == "not measured"
    assert any("original" in n for n in alone.notes)
    rng = np.random.default_rng(2)
    prot = np.clip(x + rng.choice([-6 / 255, 6 / 255], size=x.shape), 0, 1).astype(np.float32)
    poison = check(prot, original=x, manifest={"mode": "poison", "target": "cat", "config": {"concept": "dog"}},
                   attacks=["jpeg-q95-444"], judges=False)  # not a style cloak: no target to re-render
    assert poison.protection_measure == "shift" and any("'poison'" in n for n in poison.notes)
    with pytest.raises(ValueError, match="exact original"):
        check(x, original=x[:32], attacks=["median-3"], judges=False)
    with pytest.raises(ValueError, match="unknown attack"):
        check(x, original=x, attacks=["jpeg-q1"], judges=False)


def test_cli_check(cloaked: Path, painting: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sfumato.cli import main

    j, h = tmp_path / "r.json", tmp_path / "r.html"
    rc = main(["check", str(cloaked), "--original", str(painting), "--attacks", "jpeg-q75-420,crop-90",
               "--no-judges", "--no-views", "--json", str(j), "--report", str(h), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "jpeg-q75-420" in out and "crop-90" in out and "pointillism" in out
    d = json.loads(j.read_text())
    assert [a["name"] for a in d["attacks"]] == ["jpeg-q75-420", "crop-90"]
    assert "https://" not in h.read_text() and "data:image/jpeg;base64," in h.read_text()
    assert main(["check", "--list-attacks"]) == 0
    assert "impress-paper" in capsys.readouterr().out
    assert main(["check"]) == 2


def test_check_uses_the_deconfounded_art128_judge_when_the_corpus_has_one(cloaked: Path, painting: Path,
                                                                          corpus_dir: Path) -> None:
    from sfumato.verification.check import check

    rep = check(cloaked, original=painting, attacks=["jpeg-q95-444"], corpus_dir=corpus_dir, seed=0)
    d = rep.to_dict() if hasattr(rep, "to_dict") else rep.__dict__
    style = d["judges"]["style"]
    assert len(style["artists"]) == 14 and "vincent_van_gogh" in style["artists"]
    assert any("art128 whole-image judge" in n for n in d["notes"])
    assert 0.0 <= style["ai_view_protected"]["p_artist"] <= 1.0


# ------------------------------------------------------------------ the crop judge at the trainer's scale
class _StubStyle:
    """A stand-in style judge (no weights): two painters scored by the image's mean brightness."""

    artists = ["dark_painter", "bright_painter"]

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def predict_proba(self, imgs: list[np.ndarray]) -> np.ndarray:
        self.sizes += [tuple(i.shape[:2]) for i in imgs]
        m = np.array([float(np.mean(i)) for i in imgs])
        return np.stack([1 - m, m], axis=1)

    def predict(self, imgs: list[np.ndarray]) -> list[str]:
        return [self.artists[int(k)] for k in self.predict_proba(imgs).argmax(axis=1)]


class _StubConcept:
    """A stand-in concept judge: one concept, one class."""

    concepts = ["thing"]
    model = type("M", (), {"labels": ["object"]})()

    def probabilities(self, imgs: list[np.ndarray]) -> np.ndarray:
        return np.ones((len(imgs), 1))

    def scores(self, imgs: list[np.ndarray], probs: np.ndarray) -> np.ndarray:
        return probs

    def classify(self, imgs: list[np.ndarray], probs: np.ndarray) -> list[str]:
        return ["thing"] * len(imgs)


@pytest.fixture()
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """check() without ../shared: a tiny random TAE as encoder and autoencoder, a mean-abs stand-in for LPIPS."""
    import torch

    import sfumato.metrics.lpips as lp
    import sfumato.verification.check as chk
    from sfumato.encoders.tae import tiny_random_tae

    tae = tiny_random_tae(seed=1)
    monkeypatch.setattr(chk, "cached_encoder", lambda spec, models_dir: tae)
    monkeypatch.setattr(lp, "load_lpips", lambda *a, **k: (lambda x, y: (x - y).abs().mean(dim=(1, 2, 3))))
    assert torch.is_grad_enabled() is not None


CHEAP = {"mode": "poison", "config": {"effort": {"resolution": 64}}}  # measure at 64 px: the shift only


def _pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    x = np.stack([0.3 + 0.4 * yy, 0.2 + 0.6 * xx, 0.5 + 0.2 * np.sin(11 * xx)], axis=-1).astype(np.float32)
    return x, np.clip(x + rng.choice([-6 / 255, 6 / 255], size=x.shape), 0, 1).astype(np.float32)


def test_crop_judge_reads_the_trainer_views_of_512_px_and_up_fast(no_weights: None, tmp_path: Path) -> None:
    """An injected crop judge reads the AI view of every bucket/native view >= 512 px (not the work view, not
    the crops) of an image over 256 px; its reference artist is its own reading of the original; JSON, HTML
    and the whole-image judge's rows carry it. An image of <= 256 px gets a note instead."""
    from sfumato.attacks.trainer_views import trainer_views
    from sfumato.verification.report import write_html

    x_o, x_p = _pair(240, 300)
    views = trainer_views(240, 300, work_size=(51, 64), seed=0, scales=(512,), crop_side=128)
    assert [v.name for v in views] == ["work", "bucket-512", "native", "crop128@512", "crop128@native"]
    crop = _StubStyle()
    rep = check(x_p, original=x_o, manifest=CHEAP, attacks=["jpeg-q95-444"], style_judge=_StubStyle(),
                concept_judge=_StubConcept(), crop_judge=crop, seed=0, views=views)
    d = json.loads(json.dumps(rep.to_dict()))
    cr = d["judges"]["crop_style"]
    assert cr["reference_from"] == "original" and cr["reference_artist"] == crop.predict([x_o])[0]
    assert cr["artists"] == crop.artists and cr["view_min_side"] == 512 and "knows only" in cr["known_artists_only"]
    assert [v["view"] for v in cr["views"]] == ["bucket-512"] and cr["views"][0]["size"] == [512, 410]
    v = cr["views"][0]
    assert v["still_attributed"] == (v["prediction"] == cr["reference_artist"]) and 0 <= v["p_artist"] <= 1
    assert (410, 512) in crop.sizes and (240, 300) in crop.sizes  # the bucket's AI view, the original
    assert (128, 128) not in crop.sizes and (51, 64) not in crop.sizes  # not the crop, not the work view
    rows = {r["name"]: r for r in d["views"]["rows"]}
    assert "crop_style" in rows["bucket-512"]["judges"] and "style" in rows["bucket-512"]["judges"]
    for name in ("work", "native", "crop128@512", "crop128@native"):  # under 512 px, or a crop
        assert "crop_style" not in rows[name]["judges"] and "style" in rows[name]["judges"]
    assert rows["bucket-512"]["judges"]["crop_style"]["p_protected"] == pytest.approx(v["p_artist"])
    html = write_html(rep, tmp_path / "crop.html").read_text(encoding="utf-8")
    assert "Crop judge" in html and "crop_style judge" in html and "it knows only these" in html

    # views off: only the reference reading, and a note saying why
    off = check(x_p, original=x_o, manifest=CHEAP, attacks=["jpeg-q95-444"], style_judge=_StubStyle(),
                concept_judge=_StubConcept(), crop_judge=_StubStyle(), seed=0)
    assert off.judges["crop_style"]["views"] == [] and any("were not measured" in n for n in off.notes)

    # a small image (<= 256 px long side): no crop judge, and a note
    s_o, s_p = _pair(160, 200)
    small = check(s_p, original=s_o, manifest=CHEAP, attacks=["jpeg-q95-444"], style_judge=_StubStyle(),
                  concept_judge=_StubConcept(), crop_judge=_StubStyle(), seed=0,
                  views=trainer_views(160, 200, work_size=(51, 64), seed=0, scales=(96,), crop_side=48))
    assert "crop_style" not in small.judges and any("Crop judge not used" in n for n in small.notes)
    assert all("crop_style" not in r["judges"] and "style" in r["judges"] for r in small.views["rows"])


def test_check_reads_a_600px_hold_out_painting_with_the_ace_crop_judge(corpus_dir: Path) -> None:
    """The real corpus (art128 + ace files) sets up both style judges; on a ~600 px copy of an ace *hold-out*
    painting (never a training one) the crop judge reads the 512 px bucket and the native view."""
    from sfumato.attacks.trainer_views import trainer_views
    from sfumato.io import load_image
    from sfumato.judges.splits import ace_split

    train, hold = ace_split(corpus_dir)
    src = hold["vincent_van_gogh"][0]
    assert src not in train["vincent_van_gogh"]
    full = load_image(src).rgb
    h, w = full.shape[:2]
    s = 600 / max(h, w)
    im = Image.fromarray((full * 255 + 0.5).astype(np.uint8)).resize((round(w * s), round(h * s)),
                                                                       Image.Resampling.LANCZOS)
    x_o, (h, w) = np.asarray(im, dtype=np.float32) / 255, im.size[::-1]
    rng = np.random.default_rng(0)
    x_p = np.clip(x_o + rng.choice([-4 / 255, 4 / 255], size=x_o.shape), 0, 1).astype(np.float32)
    views = trainer_views(h, w, work_size=(round(h * 64 / max(h, w)), round(w * 64 / max(h, w))), seed=0,
                          scales=(512,), max_views=3)
    assert [v.name for v in views] == ["work", "bucket-512", "native"]
    rep = check(x_p, original=x_o, manifest=CHEAP, attacks=["jpeg-q95-444"], corpus_dir=corpus_dir, seed=0,
                views=views)
    d = json.loads(json.dumps(rep.to_dict()))
    assert len(d["judges"]["style"]["artists"]) == 14  # the whole-image art128 judge is still there
    cr = d["judges"]["crop_style"]
    assert len(cr["artists"]) == 5 and cr["reference_artist"] in cr["artists"] and cr["reference_from"] == "original"
    assert [v["view"] for v in cr["views"]] == ["bucket-512", "native"]
    for v in cr["views"]:
        assert 0 <= v["p_artist"] <= 1 and v["still_attributed"] == (v["prediction"] == cr["reference_artist"])
    assert any("Crop judge: the ace crop-level judge" in n for n in d["notes"])
    assert "crop_style" in d["views"]["worst"]["judges"]
