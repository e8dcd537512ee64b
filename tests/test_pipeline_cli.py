"""End to end through the CLI and file API on real weights (few steps, small images): outputs, manifests,
budgets measured on the saved file, metadata/alpha/16-bit preservation, resume, bad files in a batch,
poison captions and judge reports, protect, mapping files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import sfumato.io as sio
from sfumato.cli import main

FAST = ["--steps", "3", "--resolution", "64", "--quiet"]


def _painting(corpus_dir: Path, size: tuple[int, int] = (96, 72)) -> Image.Image:
    src = sorted((corpus_dir / "art" / "paul_cezanne").glob("*"))[0]
    return Image.open(src).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _rgba_with_icc(corpus_dir: Path, path: Path) -> Path:
    im = _painting(corpus_dir).convert("RGBA")
    a = np.asarray(im).copy()
    a[..., 3] = np.linspace(30, 255, a.shape[1], dtype=np.uint8)[None, :]
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x013B] = "Test Artist"
    Image.fromarray(a, "RGBA").save(path, icc_profile=icc, exif=exif.tobytes())
    return path


def test_cloak_cli_keeps_metadata_alpha_and_meets_budget(tmp_path: Path, corpus_dir: Path) -> None:
    src = _rgba_with_icc(corpus_dir, tmp_path / "art.png")
    before = src.read_bytes()
    out = tmp_path / "out"
    assert main(["cloak", str(src), "-o", str(out), "--ai-view", *FAST]) == 0
    assert src.read_bytes() == before  # original untouched
    res, man = out / "art.png", json.loads((out / "art.sfumato.json").read_text())
    for key in ("sfumato_version", "mode", "encoders", "target", "seed", "budget", "achieved", "latent", "timing_s"):
        assert key in man
    assert man["encoders"][0]["id"] == "taef2" and len(man["encoders"][0]["weights_sha256"]) == 2
    assert man["achieved"]["lpips_alex"] <= man["budget"]["lpips"] + 1e-6
    assert man["achieved"]["linf"] <= man["budget"]["linf"] + 1e-6
    assert man["within_budget"] is True
    assert set(man["latent"]["taef2"]) == {"clean_to_target", "protected_to_target", "relative_reduction"}
    a, b = sio.load_image(src), sio.load_image(res)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert b.icc_profile == a.icc_profile
    assert Image.open(res).getexif()[0x013B] == "Test Artist"
    assert not np.array_equal(a.rgb, b.rgb)
    assert (out / "art.ai_view.before.png").exists() and (out / "art.ai_view.after.png").exists()
    # The manifest's figures are the saved file's.
    from sfumato.metrics.saved import protected_quality

    q = protected_quality(b.rgb, a.rgb)
    assert q["lpips_alex"] == pytest.approx(man["achieved"]["lpips_alex"], abs=1e-6)


def test_cloak_16bit_png_stays_16bit(tmp_path: Path, corpus_dir: Path) -> None:
    a = (np.asarray(_painting(corpus_dir, (64, 48)), dtype=np.float32) / 255)
    a16 = (a * 65535).astype(np.uint16) + 7  # values off the 8-bit grid
    img = sio.image_from_array(a16)
    src = sio.save_image(img, img.rgb, tmp_path / "deep.png")
    assert sio.load_image(src).bit_depth == 16
    out = tmp_path / "out"
    assert main(["cloak", str(src), "-o", str(out), *FAST]) == 0
    got = sio.load_image(out / "deep.png")
    assert got.bit_depth == 16
    man = json.loads((out / "deep.sfumato.json").read_text())
    assert man["output"]["bit_depth"] == 16 and man["within_budget"]


def test_batch_resume_overwrite_and_bad_files(tmp_path: Path, corpus_dir: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    _painting(corpus_dir, (64, 64)).save(folder / "a.png")
    _painting(corpus_dir, (72, 56)).save(folder / "sub" / "b.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"this is not an image")
    out = tmp_path / "out"
    assert main(["cloak", str(folder), "-o", str(out), *FAST]) == 1  # one bad file → non-zero exit
    assert (out / "a.png").exists() and (out / "sub" / "b.png").exists()  # JPEG in -> lossless PNG out
    assert Image.open(out / "sub" / "b.png").format == "PNG"
    # Second run: without --overwrite the good files fail; with --resume they are skipped.
    stamp = (out / "a.png").stat().st_mtime_ns
    assert main(["cloak", str(folder / "a.png"), "-o", str(out), *FAST]) == 1
    assert main(["cloak", str(folder / "a.png"), "-o", str(out), "--resume", *FAST]) == 0
    assert (out / "a.png").stat().st_mtime_ns == stamp
    assert main(["cloak", str(folder / "a.png"), "-o", str(out), "--overwrite", *FAST]) == 0
    assert not list(out.glob(".*tmp*"))


def test_jpeg_output_quality_and_chroma(tmp_path: Path, corpus_dir: Path) -> None:
    from PIL import JpegImagePlugin

    _painting(corpus_dir, (64, 64)).save(tmp_path / "a.jpg", quality=90)
    assert main(["cloak", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "o"), "--jpeg-quality", "90", *FAST]) == 2  # a usage error
    assert main(["cloak", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "o"), "--format", "JPEG", *FAST]) == 0
    im = Image.open(tmp_path / "o" / "a.jpg")
    assert im.format == "JPEG" and JpegImagePlugin.get_sampling(im) == 0  # 4:4:4
    man = json.loads((tmp_path / "o" / "a.sfumato.json").read_text())
    assert man["output"]["jpeg_quality"] >= 95 and man["achieved"]["lpips_alex"] <= man["budget"]["lpips"]
    # The codec is not idempotent: lossy outputs are calibrated with a margin and the file is measured.
    assert man["optimisation"]["calibrated_lpips"] < man["budget"]["lpips"]
    from sfumato.metrics.saved import protected_quality

    q = protected_quality(sio.load_image(tmp_path / "o" / "a.jpg").rgb, sio.load_image(tmp_path / "a.jpg").rgb)
    assert q["lpips_alex"] == pytest.approx(man["achieved"]["lpips_alex"], abs=1e-6)


def test_lossy_output_over_budget_is_shrunk_or_fails_loudly(tmp_path: Path, corpus_dir: Path, monkeypatch,
                                                            capsys) -> None:  # noqa: ANN001
    """Calibrated far over the budget on purpose: the saved JPEG is brought back under it by shrinking the
    perturbation, or, when that is not allowed, the image fails with one line and nothing is written."""
    from dataclasses import replace

    from sfumato import api
    from sfumato.config import PRESETS

    # the single-work-view search: its perturbation is large enough at this size to break a JPEG budget
    for q, e in list(PRESETS["cloak"]["quality"].items()):
        monkeypatch.setitem(PRESETS["cloak"]["quality"], q, replace(e, views="work"))
    _painting(corpus_dir, (64, 64)).save(tmp_path / "a.png")
    args = ["cloak", str(tmp_path / "a.png"), "--format", "JPEG", *FAST]
    monkeypatch.setattr(api, "LOSSY_CALIBRATION_MARGIN", 1.5)
    monkeypatch.setattr(api, "LOSSY_TRIES", 0)
    assert main([*args, "-o", str(tmp_path / "fail")]) == 1
    err = capsys.readouterr().err
    assert "would break the budget" in err and "nothing written" in err
    assert not list((tmp_path / "fail").glob("*"))
    monkeypatch.setattr(api, "LOSSY_TRIES", 8)
    assert main([*args, "-o", str(tmp_path / "ok")]) == 0
    man = json.loads((tmp_path / "ok" / "a.sfumato.json").read_text())
    assert man["optimisation"]["save_shrink"] < 1 and man["achieved"]["lpips_alex"] <= man["budget"]["lpips"]


def test_poison_writes_caption_and_judged_manifest(tmp_path: Path, corpus_dir: Path) -> None:
    dog = sorted((corpus_dir / "photos" / "dog").glob("*"))[0]
    out = tmp_path / "out"
    rc = main(["poison", str(dog), "-o", str(out), "--concept", "dog", "--target", "cat",
               "--anchors", str(corpus_dir / "photos" / "cat"), *FAST])
    assert rc == 0
    man = json.loads((out / f"{dog.stem}.sfumato.json").read_text())
    assert man["mode"] == "poison" and man["concept"] == "dog" and man["target"] == "cat"
    assert man["candidate"]["checked"] and man["candidate"]["shows_concept"]
    # the default anchor choice is "aligned": its manifest entry reports the aligned and the unaligned anchor
    assert man["anchor"]["choice"] == "aligned"
    assert any(k.startswith(man["anchor"]["name"]) for k in man["anchor"]["distances"])
    al = man["anchor"]["alignment"]
    assert al["distance"] <= al["unaligned_distance"] + 1e-6 and 0 <= al["travel_saved"] < 1
    assert man["achieved"]["lpips_alex"] <= 0.07 + 1e-6 and man["within_budget"]
    assert "dog" in (out / f"{dog.stem}.txt").read_text().lower()
    j = man["judged"]
    assert j["pixels_show_concept"]["before"] is True
    assert isinstance(j["ai_view_shows_target"]["after"], bool)


def test_poison_skips_non_candidates_unless_forced(tmp_path: Path, corpus_dir: Path) -> None:
    vase = sorted((corpus_dir / "photos" / "vase").glob("*"))[2]
    out = tmp_path / "out"
    args = ["poison", str(vase), "-o", str(out), "--concept", "dog", "--target", "cat",
            "--anchors", str(corpus_dir / "photos" / "cat"), *FAST]
    assert main(args) == 0
    assert not list(out.glob("*.sfumato.json"))
    assert main([*args, "--force"]) == 0
    man = json.loads(next(out.glob("*.sfumato.json")).read_text())
    assert man["candidate"]["forced"] is True


def test_protect_cli_writes_joint_manifest(tmp_path: Path, corpus_dir: Path) -> None:
    dog = sorted((corpus_dir / "photos" / "dog").glob("*"))[0]
    out = tmp_path / "out"
    assert main(["protect", str(dog), "-o", str(out), "--concept", "dog", "--target", "cat", "--scorer", "none",
                 "--anchors", str(corpus_dir / "photos" / "cat"), *FAST]) == 0
    man = json.loads((out / f"{dog.stem}.sfumato.json").read_text())
    assert man["mode"] == "protect" and man["target"]["concept"] == "cat" and "style" in man["target"]
    assert set(man["latent"]) == {"style/taef2", "poison/taef2"} and man["within_budget"]
    assert man["config"]["budget"]["lpips"] == 0.07 and man["config"]["effort"]["steps"] == 3
    assert (out / f"{dog.stem}.txt").exists()


def test_protect_joint_reports_both_objectives(tmp_path: Path, corpus_dir: Path) -> None:
    import importlib.util

    from sfumato.config import Effort
    from sfumato.protections.protect import ProtectConfig, protect_array

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "protect_vs_sequential.py"
    spec = importlib.util.spec_from_file_location("sfumato_protect_vs_sequential", bench)
    assert spec is not None and spec.loader is not None
    sequential = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sequential)
    from sfumato.targets.anchors import load_anchor_folder

    rgb = np.asarray(_painting(corpus_dir, (64, 64)), dtype=np.float32) / 255
    anchors = load_anchor_folder(corpus_dir / "photos" / "cat", concept="cat", max_images=3)
    cfg = ProtectConfig(concept="dog", target="cat", effort=Effort(steps=3, resolution=64))
    r = protect_array(rgb, cfg, anchors.images, anchor_names=anchors.names)
    assert {d["target"] for d in r.latent} == {"style", "poison"}
    assert r.achieved["lpips_alex"] <= cfg.budget.lpips + 1e-6
    s = sequential.sequential_array(rgb, cfg, anchors.images)  # the published order, as a baseline
    assert s["achieved"]["lpips_alex"] <= cfg.budget.lpips + 1e-6
    assert {d["target"] for d in s["latent"]} == {"style", "poison"}
    assert ProtectConfig.from_json(cfg.to_json()) == cfg


def test_mapping_file_formats(tmp_path: Path) -> None:
    from sfumato.plans import load_mapping

    (tmp_path / "m.json").write_text(json.dumps({"dog": "cat", "car": "teapot"}))
    (tmp_path / "m.csv").write_text("concept,target,anchors\ndog,cat,/x/cats\n# comment\ncar,teapot,\n")
    (tmp_path / "m.toml").write_text('[[pair]]\nconcept = "dog"\ntarget = "cat"\n')
    assert [p["target"] for p in load_mapping(str(tmp_path / "m.json"))] == ["cat", "teapot"]
    csv_pairs = load_mapping(str(tmp_path / "m.csv"))
    assert csv_pairs[0]["anchors"] == "/x/cats" and "anchors" not in csv_pairs[1]
    assert load_mapping(str(tmp_path / "m.toml")) == [{"concept": "dog", "target": "cat"}]
    (tmp_path / "bad.json").write_text(json.dumps([{"concept": "dog"}]))
    with pytest.raises(ValueError, match="needs 'concept' and 'target'"):
        load_mapping(str(tmp_path / "bad.json"))


def test_poison_and_protect_configs_from_presets_and_overrides() -> None:
    """The CLI's options give the configs of the presets table (LPIPS 0.05/0.07/0.10 with L∞ 24/255 per
    --intensity, the poison effort per --quality), with --lpips/--linf/--steps/--resolution overrides."""
    from sfumato.cli import build_parser
    from sfumato.commands.poison import poison_config as cli_poison_config
    from sfumato.commands.protect import protect_config as cli_protect_config
    from sfumato.config import Budget, PoisonConfig, ProtectConfig, preset_effort
    from sfumato.plans import poison_config, protect_config

    parser = build_parser()
    base = ["x.png", "-o", "out", "--concept", "dog", "--target", "cat"]
    for intensity, p in (("low", 0.05), ("default", 0.07), ("high", 0.10)):
        for quality in ("fast", "default", "slow"):
            for extra, budget, steps, res in (([], Budget(lpips=p, linf=24 / 255), None, None),
                                              (["--lpips", "0.04", "--linf", "8", "--steps", "5", "--resolution", "96"],
                                               Budget(lpips=0.04, linf=8 / 255), 5, 96)):
                argv = [*base, "--intensity", intensity, "--quality", quality, "--seed", "3", *extra]
                eff, peff = preset_effort("poison", quality), preset_effort("protect", quality)
                assert (eff.views, peff.views) == ("trainer", "work")  # protect: its one work view
                if steps:
                    eff = dataclasses.replace(eff, steps=steps, resolution=res)
                    peff = dataclasses.replace(peff, steps=steps, resolution=res)
                a = parser.parse_args(["poison", *argv])
                assert cli_poison_config(a, "dog", "cat") == PoisonConfig(
                    concept="dog", target="cat", budget=budget, effort=eff, seed=3)
                b = parser.parse_args(["protect", *argv])
                assert cli_protect_config(b, "dog", "cat") == ProtectConfig(
                    concept="dog", target="cat", budget=budget, effort=peff, seed=3)
    assert poison_config("dog", "cat") == PoisonConfig.preset(concept="dog", target="cat")
    assert protect_config("dog", "cat", linf=8 / 255).budget.linf == 8 / 255


def test_poison_plan_assigns_each_image_its_best_concept(tmp_path: Path, corpus_dir: Path) -> None:
    from sfumato.plans import assign_concept, plan_poison, poison_config

    class Scorer:  # scores by mean red: "fire" for reddish images, else "sea"
        def score(self, images, concept):  # noqa: ANN001, ANN202
            r = float(images[0][..., 0].mean() - images[0][..., 2].mean())
            return np.array([r if concept == "fire" else -r])

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (16, 16), (200, 20, 20)).save(red)
    Image.new("RGB", (16, 16), (20, 20, 200)).save(blue)
    assert assign_concept(red, ["sea", "fire"], Scorer()) == "fire"
    cats = corpus_dir / "photos" / "cat"
    pairs = [{"concept": "sea", "target": "cat"}, {"concept": "fire", "target": "dog", "anchors": str(cats)}]
    plan = plan_poison(pairs, make_config=poison_config, scorer=Scorer(), anchors=cats)
    cfg, anchors = plan.for_image(blue)
    assert (cfg.concept, cfg.target, anchors.concept) == ("sea", "cat", "cat")
    assert plan.for_image(red)[0].target == "dog"
    with pytest.raises(ValueError, match="needs a scorer"):
        plan_poison(pairs, make_config=poison_config, anchors=cats)
    with pytest.raises(ValueError, match="no anchors for target 'cat'"):
        plan_poison(pairs[:1], make_config=poison_config)


def test_cloak_rights_option_embeds_data_mining_reservation_and_keeps_xmp(tmp_path: Path, corpus_dir: Path) -> None:
    from sfumato.optout.xmp import read_xmp_rights

    src_xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt>'
               b'<rdf:li xml:lang="x-default">Olive trees</rdf:li></rdf:Alt></dc:title></rdf:Description>'
               b'</rdf:RDF></x:xmpmeta>')
    img = sio.image_from_array(np.asarray(_painting(corpus_dir, (64, 64))))
    img.xmp = src_xmp
    src = sio.save_image(img, img.rgb, tmp_path / "p.png")
    out = tmp_path / "out"
    assert main(["cloak", str(src), "-o", str(out), "--rights", *FAST]) == 0
    got = sio.load_image(out / "p.png").xmp
    assert b"Olive trees" in got
    assert read_xmp_rights(got)["data_mining"] == "DMI-PROHIBITED-AIMLTRAINING"


def test_sidecar_files_get_normal_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from sfumato.io.atomic import write_json_atomic

    p = tmp_path / "m.json"
    write_json_atomic(p, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    assert json.loads(p.read_text()) == {"a": 1}
