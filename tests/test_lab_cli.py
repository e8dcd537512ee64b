"""``sfumato lab`` (issue 17), the shell over the mimicry lab: argument handling, the report it writes and
its one-line user errors. Fast tier: the tiny random TAE stands in for TAEF2 and a colour reader for the
judges (both injected with monkeypatch), on a toy set of reddish and bluish noise images."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sfumato.cli import main

TRAIN = ["--preset", "tiny", "--steps", "30", "--seeds", "0", "--quiet"]


def _write_class(folder: Path, colour: tuple[float, float, float], n: int, seed: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = np.clip(np.array(colour) + 0.15 * rng.standard_normal((32, 32, 3)), 0, 1)
        Image.fromarray((a * 255).astype(np.uint8)).save(folder / f"{folder.name}_{i}.png")


def _changed_copies(src: Path, dst: Path, stems: list[str] | None = None) -> None:
    """Copies of ``src``'s PNGs (same stems, or ``stems``) with every pixel nudged: a stand-in protection."""
    from PIL import Image

    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.png"))
    for f, stem in zip(files, stems or [f.stem for f in files], strict=False):
        a = np.asarray(Image.open(f).convert("RGB")).astype(np.int16)
        Image.fromarray(np.clip(a + 6, 0, 255).astype(np.uint8)).save(dst / f"{stem}.png")


def _colour_reader(classes: tuple[str, str] = ("red", "blue")):  # noqa: ANN202
    """A stand-in judge: p(first class) grows with the red-minus-blue mean."""
    from sfumato.lab.readers import Reader

    def proba(images: list[np.ndarray]) -> np.ndarray:
        r = np.array([float(im[..., 0].mean() - im[..., 2].mean()) for im in images])
        p = 1 / (1 + np.exp(-10 * r))
        return np.stack([p, 1 - p], axis=1)

    return Reader("colour", list(classes), proba, "red minus blue mean")


@pytest.fixture
def lab_stubs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Inject the tiny random TAE and the colour readers; record what the command asked for."""
    import torch

    from sfumato.encoders.tae import tiny_random_tae

    torch.set_num_threads(1)
    calls: dict[str, list] = {"encoder": [], "protect": [], "poison": []}

    def load_encoder(spec: str, **kw: object):  # noqa: ANN202
        calls["encoder"].append(spec)
        return tiny_random_tae(seed=0)

    monkeypatch.setattr("sfumato.encoders.load_encoder", load_encoder)
    monkeypatch.setattr("sfumato.lab.style.style_readers", lambda *a, **k: [_colour_reader()])
    monkeypatch.setattr("sfumato.lab.concept.concept_reader", lambda **k: _colour_reader(("cat", "dog")))
    return calls


@pytest.fixture
def data(tmp_path: Path) -> Path:
    _write_class(tmp_path / "data" / "red", (0.8, 0.2, 0.2), 6, 0)
    _write_class(tmp_path / "data" / "blue", (0.2, 0.2, 0.8), 6, 1)
    return tmp_path / "data"


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, err
    return err


def test_lab_style_writes_the_report(tmp_path: Path, data: Path, lab_stubs: dict,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _changed_copies(data / "red", tmp_path / "prot")
    out = tmp_path / "out"
    code = main(["lab", "style", str(data), "--artist", "red", "--protected", f"nudged={tmp_path / 'prot'}",
                 "-o", str(out), *TRAIN])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert lab_stubs["encoder"] == ["taef2"]
    assert (out / "lab.json").exists() and (out / "lab.html").exists()
    rep = json.loads((out / "lab.json").read_text())
    assert rep["kind"] == "style" and rep["focus"] == "red"
    assert rep["config"]["train_steps"] == 30 and rep["config"]["size"] == 32
    assert set(rep["summary"]["colour"]) == {"clean", "nudged"}
    assert rep["variants"]["nudged"]["replaced"] == 6
    assert [(r["variant"], r["seed"]) for r in rep["runs"]] == [("clean", 0), ("nudged", 0)]
    for r in rep["runs"]:
        assert (out / r["grid"]).exists()
    assert list((out / "cache").glob("latents-*.pt")), "latents are cached under OUT/cache by default"
    assert "mimicry success (red)" in captured.out
    assert str(out / "lab.json") in captured.err


def test_lab_style_cli_and_api_agree(tmp_path: Path, data: Path, lab_stubs: dict,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """One house: the command and :func:`sfumato.api.lab_style` with the same config and seed give the same
    losses and the same verdicts."""
    from sfumato.api import lab_style
    from sfumato.encoders.tae import tiny_random_tae
    from sfumato.lab.config import LabConfig

    _changed_copies(data / "red", tmp_path / "prot")
    assert main(["lab", "style", str(data), "--artist", "red", "--protected", str(tmp_path / "prot"),
                 "-o", str(tmp_path / "out"), *TRAIN]) == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "out" / "lab.json").read_text())
    res = lab_style(data, artist="red", protected={"prot": tmp_path / "prot"}, seeds=[0],
                    config=LabConfig.preset("tiny", train_steps=30), encoder=tiny_random_tae(seed=0),
                    readers=[_colour_reader()])
    api = json.loads(json.dumps(res.to_dict()))
    assert rep["config"] == api["config"]
    assert [(r["variant"], r["loss"], r["tables"]) for r in rep["runs"]] == \
        [(r["variant"], r["loss"], r["tables"]) for r in api["runs"]]
    assert rep["summary"] == api["summary"]


def test_lab_style_protects_in_lab_and_reads_a_config(tmp_path: Path, data: Path, lab_stubs: dict,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``--protect fast`` makes the protected files under OUT/protected/fast at the lab's size (a stub
    protection here), and ``--config`` replaces preset fields, ``--steps`` overriding it."""

    def protect_artist(files: list[Path], out_dir: Path, **kw: object) -> dict[Path, Path]:
        lab_stubs["protect"].append((Path(out_dir), kw["quality"], kw["size"]))
        _changed_copies(Path(files[0]).parent, Path(out_dir))
        return {}

    monkeypatch.setattr("sfumato.lab.style.protect_artist", protect_artist)
    (tmp_path / "lab.json").write_text(json.dumps({"samples_per_class": 3, "train_steps": 999}))
    out = tmp_path / "out"
    code = main(["lab", "style", str(data), "--artist", "red", "--protect", "fast", "--config",
                 str(tmp_path / "lab.json"), "--cache-dir", str(tmp_path / "cache"), "-o", str(out), *TRAIN])
    assert code == 0, capsys.readouterr().err
    assert lab_stubs["protect"] == [(out / "protected" / "fast", "fast", 32)]
    rep = json.loads((out / "lab.json").read_text())
    assert set(rep["summary"]["colour"]) == {"clean", "sfumato-fast"}
    assert rep["config"]["samples_per_class"] == 3 and rep["config"]["train_steps"] == 30
    assert list((tmp_path / "cache").glob("latents-*.pt")) and not (out / "cache").exists()


def test_lab_poison_makes_and_trains(tmp_path: Path, lab_stubs: dict, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``lab poison --make`` poisons max(N) files first, then one run per N next to the clean one;
    the classes come from repeated ``--class NAME=DIR``."""
    from sfumato.lab.concept import poison_order

    _write_class(tmp_path / "dogs", (0.2, 0.2, 0.8), 6, 0)
    _write_class(tmp_path / "cats", (0.8, 0.2, 0.2), 6, 1)
    (tmp_path / "anchors").mkdir()

    def poison_concept(files: list[Path], out_dir: Path, **kw: object) -> dict[Path, Path]:
        lab_stubs["poison"].append((kw["n"], kw["concept"], kw["target"], kw["size"]))
        chosen = poison_order(files)[: int(kw["n"])]  # type: ignore[call-overload]
        _changed_copies(tmp_path / "cats", Path(out_dir), [p.stem for p in chosen])
        return {}

    monkeypatch.setattr("sfumato.lab.concept.poison_concept", poison_concept)
    out = tmp_path / "out"
    code = main(["lab", "poison", "--class", f"dog={tmp_path / 'dogs'}", "--class", f"cat={tmp_path / 'cats'}",
                 "--concept", "dog", "--target", "cat", "--poisoned", str(tmp_path / "pois"), "--make", "--anchors",
                 str(tmp_path / "anchors"), "--n", "2", "4", "-o", str(out), "--also-guidance", "1", *TRAIN])
    assert code == 0, capsys.readouterr().err
    assert lab_stubs["poison"] == [(4, "dog", "cat", 32)]
    rep = json.loads((out / "lab.json").read_text())
    assert rep["kind"] == "concept" and rep["target"] == "cat"
    assert set(rep["summary"]) == {"clean", "poison-2", "poison-4"}
    assert [(r["replaced"], r.get("guidance")) for r in rep["runs"]] == [(0, None), (0, 1.0), (2, None), (2, 1.0),
                                                                        (4, None), (4, 1.0)]
    assert all((out / r["grid"]).exists() for r in rep["runs"])
    assert len({r["grid"] for r in rep["runs"]}) == 6


def test_lab_user_errors_are_one_line(tmp_path: Path, data: Path, lab_stubs: dict,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    shutil.copytree(data / "red", tmp_path / "prot")
    style = ["lab", "style", str(data), "--protected", str(tmp_path / "prot"), "-o", out, *TRAIN]
    assert main([*style, "--artist", "green"]) == 2
    _one_line_error(capsys, "'green'", "blue", "red")
    assert main(["lab", "style", str(tmp_path / "nope"), "--artist", "red", "--protected", str(tmp_path / "prot"),
                 "-o", out, *TRAIN]) == 2
    _one_line_error(capsys, "nope", "not a folder")
    assert main([*style[:3], "--artist", "red", "-o", out, *TRAIN]) == 2
    _one_line_error(capsys, "--protected", "--protect")
    assert main([*style, "--artist", "red", "--protected", f"clean={tmp_path / 'prot'}"]) == 2
    _one_line_error(capsys, "'clean'")
    assert main([*style, "--artist", "red", "--config", str(tmp_path / "missing.json")]) == 2
    _one_line_error(capsys, "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"size": 33}))
    assert main([*style, "--artist", "red", "--config", str(tmp_path / "bad.json")]) == 2
    _one_line_error(capsys, "multiple of 32")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main([*style, "--artist", "red", "--device", "cuda"]) == 2
    _one_line_error(capsys, "--device cuda", "--device cpu")
    poison = ["lab", "poison", "--concept", "red", "--target", "blue", "--poisoned", str(tmp_path / "prot"),
              "-o", out, *TRAIN]
    assert main(poison) == 2
    _one_line_error(capsys, "DATA", "--class")
    assert main([*poison, str(data), "--make"]) == 2
    _one_line_error(capsys, "--anchors")
    assert main([*poison, str(data), "--also-guidance", "-1"]) == 2
    _one_line_error(capsys, "--also-guidance", ">= 0")
    for f in sorted((tmp_path / "prot").glob("*.png"))[3:]:
        f.unlink()  # poisoned versions of 3 of the 6 files only
    assert main([*poison, str(data), "--n", "6"]) == 2
    _one_line_error(capsys, "no poisoned version", "--make")
    assert not (tmp_path / "out" / "lab.json").exists()


def test_lab_help_and_light_import(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["lab", "--help"], ["lab", "style", "--help"], ["lab", "poison", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "style" in out and "poison" in out and "--protected" in out and "--anchors" in out
    code = ("import sys, sfumato, sfumato.cli, sfumato.commands.lab; sfumato.cli.build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
