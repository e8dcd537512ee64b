"""The poison's update rule (issue 18, part 1): ``Effort.update`` ("adam" | "sign") round-trips through JSON,
old manifests without it load as Adam, bad values get a teaching message; the protections hand it to the
shared loop, whose signed steps stay inside the L∞ box; a sign-update poison meets the saved file's budget;
the CLI takes ``--anchor-choice aligned``. Tiny random encoders only (the poison run also reads the real
AlexNet LPIPS, so it is in the slow tier, but it takes seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfumato.config import Budget, Effort, PoisonConfig, ProtectConfig
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import round_to_bits, to_nchw
from sfumato.optimise.budgets import LinfBudget
from sfumato.optimise.loop import optimise
from sfumato.optimise.objectives import LatentTargetObjective


def _picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((1, 3, h // 8, w // 8)).astype(np.float32))
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return x[0].permute(1, 2, 0).numpy().copy()


def test_effort_update_round_trips_and_old_manifests_load_as_adam() -> None:
    e = Effort(steps=200, lr=0.0094, update="sign", lr_schedule="cosine")
    assert Effort.from_json(e.to_json()) == e and json.loads(e.to_json())["update"] == "sign"
    assert Effort().update == "adam"
    old = Effort().to_dict()
    del old["update"]  # a manifest written before the field existed
    assert Effort.from_dict(old) == Effort() and Effort.from_dict(old).update == "adam"
    cfg = PoisonConfig(concept="dog", target="cat", effort=e)
    assert PoisonConfig.from_json(cfg.to_json()) == cfg
    d = cfg.to_dict()
    del d["effort"]["update"]
    assert PoisonConfig.from_dict(d).effort.update == "adam"


@pytest.mark.parametrize("kw, match", [
    ({"update": "sgd"}, r"update must be 'adam' .* or 'sign' .*got 'sgd'"),
    ({"update": "sign", "lr": 2.0}, r"sign update's lr is a step in \[0, 1\] pixel units"),
])
def test_effort_update_errors_teach(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Effort(**kw)


def test_signed_cosine_steps_move_the_latent_and_stay_in_the_box() -> None:
    enc = tiny_random_tae(seed=1, with_decoder=False)
    x0 = to_nchw(_picture(32, 32, seed=2))
    target = to_nchw(_picture(32, 32, seed=3))
    obj = LatentTargetObjective(x0, target, [(enc, 1.0)])
    eps = 8 / 255
    r = optimise(x0, obj, [LinfBudget(eps=eps)], steps=6, lr=eps / 4, update="sign", decay="cosine",
                 generator=torch.Generator().manual_seed(0))
    assert float(r.delta.abs().max()) <= eps + 1e-6
    assert float((x0 + r.delta).min()) >= -1e-6 and float((x0 + r.delta).max()) <= 1 + 1e-6
    losses = [h["loss"] for h in r.history]
    assert len(losses) == 6 and min(losses) < losses[0]
    assert obj.distances(x0 + r.delta)[0]["relative_reduction"] > 0


def test_protections_hand_effort_update_to_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import sfumato.optimise.perturb as perturb
    from sfumato.protections.poison import poison_array

    seen: list[tuple[str, str]] = []

    class Reached(Exception):
        pass

    def spy(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        seen.append((kw["update"], kw["decay"]))
        raise Reached  # what follows (calibration) needs the real LPIPS weights: the slow test below runs it

    monkeypatch.setattr(perturb, "optimise", spy)
    monkeypatch.setattr(perturb, "saved_file_lpips", lambda *a, **k: None)  # real weights; unused before the loop
    enc = tiny_random_tae(seed=1)
    rgb = round_to_bits(_picture(40, 56, seed=2))
    anchors = [_picture(48, 48, seed=s) for s in (3, 4)]
    budget = Budget(lpips=0.05, linf=8 / 255)
    for update, schedule in (("sign", "cosine"), ("adam", "constant")):
        effort = Effort(steps=2, resolution=64, lr=0.01, update=update, lr_schedule=schedule)
        with pytest.raises(Reached):
            poison_array(rgb, PoisonConfig(concept="dog", target="cat", budget=budget, effort=effort), anchors,
                         encoders=[(enc, 1.0)])
    assert seen == [("sign", "cosine"), ("adam", "none")]


def test_a_sign_update_poison_meets_the_saved_file_budget(models_dir) -> None:  # noqa: ANN001
    from sfumato.protections.poison import poison_array

    enc = tiny_random_tae(seed=1)
    rgb = round_to_bits(_picture(40, 56, seed=2))
    anchors = [_picture(48, 48, seed=s) for s in (3, 4, 5)]
    cfg = PoisonConfig(concept="dog", target="cat", seed=2, budget=Budget(lpips=0.05, linf=8 / 255),
                       effort=Effort(steps=6, resolution=64, lr=0.8 / 255, update="sign", lr_schedule="cosine"))
    r1 = poison_array(rgb, cfg, anchors, encoders=[(enc, 1.0)], models_dir=models_dir)
    r2 = poison_array(rgb, cfg, anchors, encoders=[(enc, 1.0)], models_dir=models_dir)
    np.testing.assert_array_equal(r1.image, r2.image)
    np.testing.assert_array_equal(r1.image, round_to_bits(r1.image, 8))
    assert r1.achieved["lpips_alex"] <= 0.05 + 1e-6 and r1.achieved["linf"] <= 8 / 255 + 1e-6
    assert float(np.abs(r1.image - rgb).max()) > 0 and r1.steps_run == 6
    assert r1.config.effort.update == "sign" and r1.latent[0]["relative_reduction"] > 0


@pytest.mark.parametrize("command, config_cls", [("poison", PoisonConfig), ("protect", ProtectConfig)])
def test_cli_takes_anchor_choice_aligned(command: str, config_cls: type, capsys: pytest.CaptureFixture) -> None:
    from sfumato.cli import build_parser
    from sfumato.commands.poison import poison_config
    from sfumato.commands.protect import protect_config

    parser = build_parser()
    base = [command, "x.png", "-o", "out", "--concept", "dog", "--target", "cat"]
    args = parser.parse_args([*base, "--anchor-choice", "aligned"])
    cfg = (poison_config if command == "poison" else protect_config)(args, "dog", "cat")
    assert isinstance(cfg, config_cls) and cfg.anchor_choice == "aligned"
    assert cfg.effort == config_cls.preset(concept="dog", target="cat").effort
    with pytest.raises(SystemExit) as e:
        parser.parse_args([*base, "--anchor-choice", "best"])
    assert e.value.code == 2
    assert "invalid choice: 'best' (choose from 'aligned', 'cheapest', 'fixed')" in capsys.readouterr().err
    help_text = parser._subparsers._group_actions[0].choices[command].format_help()  # type: ignore[union-attr]
    assert "layout" in help_text and "aligned" in help_text


def test_poison_masking_keeps_flat_areas_under_the_floor(models_dir) -> None:  # noqa: ANN001
    """``PoisonConfig.masking``: the cloak's texture map scales the poison's L∞ cap, so on a picture whose
    left half is one flat colour the saved change there stays within the map's floor of the cap, while the
    textured half may use all of it. Off by default; round-trips through JSON; old manifests load as off."""
    from sfumato.optimise.masking import MaskConfig
    from sfumato.protections.poison import poison_array

    assert PoisonConfig(concept="dog", target="cat").masking is False
    cfg = PoisonConfig(concept="dog", target="cat", seed=1, masking=True, budget=Budget(lpips=0.07, linf=16 / 255),
                       effort=Effort(steps=6, resolution=64, lr=1.6 / 255, update="sign", lr_schedule="cosine"))
    assert PoisonConfig.from_json(cfg.to_json()) == cfg
    old = cfg.to_dict()
    del old["masking"]
    assert PoisonConfig.from_dict(old).masking is False
    rgb = _picture(64, 64, seed=7)
    rgb[:, :32] = (0.55, 0.45, 0.35)  # a flat fill
    rgb = round_to_bits(rgb)
    enc = tiny_random_tae(seed=1)
    anchors = [_picture(64, 64, seed=s) for s in (3, 4)]
    r = poison_array(rgb, cfg, anchors, encoders=[(enc, 1.0)], models_dir=models_dir)
    change = np.abs(r.image - rgb)
    flat = change[4:-4, 4:24]  # away from the fill's edge, where the map rises
    assert float(flat.max()) <= MaskConfig().floor * 16 / 255 + 1.5 / 255
    assert float(change[:, 40:].max()) > 2 * float(flat.max())
    assert r.achieved["lpips_alex"] <= 0.07 + 1e-6 and r.config.masking
    import dataclasses

    off = poison_array(rgb, dataclasses.replace(cfg, masking=False), anchors, encoders=[(enc, 1.0)],
                       models_dir=models_dir)
    assert float(np.abs(off.image - rgb)[4:-4, 4:24].max()) > 2 * float(flat.max())


def test_poison_stealth_options_validate_and_round_trip() -> None:
    cfg = PoisonConfig(concept="dog", target="cat", masking=True, perturbation_scale=0.5)
    assert PoisonConfig.from_json(cfg.to_json()) == cfg
    d = PoisonConfig(concept="dog", target="cat").to_dict()
    del d["masking"], d["perturbation_scale"]  # a manifest written before the fields existed
    old = PoisonConfig.from_dict(d)
    assert old.masking is False and old.perturbation_scale == 1.0
    with pytest.raises(ValueError, match=r"perturbation_scale must be in \[0.1, 1\]"):
        PoisonConfig(concept="dog", target="cat", perturbation_scale=2.0)
    with pytest.raises(ValueError, match="masking must be true or false"):
        PoisonConfig(concept="dog", target="cat", masking="yes")  # type: ignore[arg-type]


def test_coarse_poison_has_less_fine_detail(models_dir) -> None:  # noqa: ANN001
    """``PoisonConfig.perturbation_scale=0.5``: δ is optimised on a grid half as fine and upsampled, so the
    saved change has less energy in pixel-to-pixel differences than the full-grid poison's, and still meets
    the budget."""
    import dataclasses

    from sfumato.protections.poison import poison_array

    rgb = round_to_bits(_picture(64, 64, seed=8))
    enc = tiny_random_tae(seed=1)
    anchors = [_picture(64, 64, seed=s) for s in (3, 4)]
    cfg = PoisonConfig(concept="dog", target="cat", seed=1, budget=Budget(lpips=0.07, linf=16 / 255),
                       effort=Effort(steps=6, resolution=64, lr=1.6 / 255, update="sign", lr_schedule="cosine"))

    def roughness(img: np.ndarray) -> float:
        d = img - rgb
        return float(np.abs(np.diff(d, axis=0)).mean() + np.abs(np.diff(d, axis=1)).mean()) / float(np.abs(d).mean())

    fine = poison_array(rgb, cfg, anchors, encoders=[(enc, 1.0)], models_dir=models_dir)
    coarse = poison_array(rgb, dataclasses.replace(cfg, perturbation_scale=0.5), anchors, encoders=[(enc, 1.0)],
                          models_dir=models_dir)
    assert roughness(coarse.image) < 0.8 * roughness(fine.image)
    assert coarse.achieved["lpips_alex"] <= 0.07 + 1e-6 and coarse.achieved["linf"] <= 16 / 255 + 1e-6
