"""The one preset table of :mod:`sfumato.config`: its shape, that every config's defaults come from it,
JSON round trips of every config, old manifests' retired fields, and teaching errors."""

from __future__ import annotations

import json

import pytest

from sfumato.config import (
    INTENSITY_PRESETS,
    MODES,
    PRESETS,
    QUALITY_PRESETS,
    Budget,
    CloakConfig,
    Effort,
    PoisonConfig,
    ProtectConfig,
    Robustness,
    preset_budget,
    preset_effort,
)


def test_preset_table_shape() -> None:
    assert set(PRESETS) == set(MODES) == {"cloak", "poison", "protect"}
    for mode, row in PRESETS.items():
        assert set(row) == {"intensity", "quality"}, mode
        assert set(row["intensity"]) == {"low", "default", "high"}, mode
        assert set(row["quality"]) == {"fast", "default", "slow"}, mode
        assert all(isinstance(b, Budget) for b in row["intensity"].values())
        assert all(isinstance(e, Effort) for e in row["quality"].values())
        lp = [row["intensity"][k].lpips for k in ("low", "default", "high")]  # type: ignore[union-attr]
        assert lp == sorted(lp) and len(set(lp)) == 3, mode
        steps = [row["quality"][k].steps for k in ("fast", "default", "slow")]  # type: ignore[union-attr]
        assert steps == sorted(steps) and len(set(steps)) == 3, mode


def test_cloak_row_is_the_intensity_and_quality_presets() -> None:
    assert PRESETS["cloak"]["intensity"] == INTENSITY_PRESETS
    assert PRESETS["cloak"]["quality"] == QUALITY_PRESETS


def test_preset_values() -> None:
    assert preset_effort("cloak") == Effort(steps=80, resolution=512, lr=0.016, views="trainer", view_stride=256)
    assert preset_effort("cloak", "slow") == Effort(steps=200, resolution=768, lr=0.008, views="trainer",
                                                    view_stride=256)
    assert preset_effort("poison").view_stride == 8  # the poison's crops stay anywhere on the latent grid
    assert preset_effort("cloak", "fast").views == "trainer" and preset_effort("poison").views == "trainer"
    assert preset_effort("protect").views == "work"  # protect's joint objective runs at its one work view
    for mode, views in (("poison", "trainer"), ("protect", "work")):
        assert [preset_budget(mode, i).lpips for i in ("low", "default", "high")] == [0.05, 0.07, 0.10]
        assert {preset_budget(mode, i).linf for i in ("low", "default", "high")} == {24 / 255}
        # signed steps of 24/255 / 10, cosine-decayed
        sign = {"lr": 0.0094, "update": "sign", "lr_schedule": "cosine", "views": views}
        assert preset_effort(mode, "fast") == Effort(steps=30, resolution=512, **sign)
        assert preset_effort(mode) == Effort(steps=80, resolution=512, **sign)
        assert preset_effort(mode, "slow") == Effort(steps=500, resolution=768, **sign)
    assert preset_effort("cloak").update == "adam"


def test_defaults_come_from_the_table() -> None:
    assert CloakConfig() == CloakConfig.preset()
    assert PoisonConfig(concept="dog", target="cat") == PoisonConfig.preset(concept="dog", target="cat")
    assert ProtectConfig(concept="dog", target="cat") == ProtectConfig.preset(concept="dog", target="cat")
    assert CloakConfig().effort == preset_effort("cloak") and CloakConfig().budget == preset_budget("cloak")
    assert PoisonConfig(concept="dog", target="cat").effort == preset_effort("poison")
    assert ProtectConfig(concept="dog", target="cat").budget == preset_budget("protect")


@pytest.mark.parametrize("intensity", ["low", "default", "high"])
@pytest.mark.parametrize("quality", ["fast", "default", "slow"])
def test_preset_classmethods_use_the_table(intensity: str, quality: str) -> None:
    c = CloakConfig.preset(intensity=intensity, quality=quality, seed=3)
    assert (c.budget, c.effort, c.seed) == (preset_budget("cloak", intensity), preset_effort("cloak", quality), 3)
    p = PoisonConfig.preset(concept="dog", target="cat", intensity=intensity, quality=quality)
    assert (p.budget, p.effort) == (preset_budget("poison", intensity), preset_effort("poison", quality))
    q = ProtectConfig.preset(concept="dog", target="cat", intensity=intensity, quality=quality, style_weight=2.0)
    assert (q.budget, q.effort, q.style_weight) == (preset_budget("protect", intensity),
                                                     preset_effort("protect", quality), 2.0)


@pytest.mark.parametrize("cfg", [
    CloakConfig(),
    CloakConfig.preset(intensity="high", quality="slow", seed=7, encoders=(("taef2", 1.0), ("taesana", 0.5)),
                       robustness=Robustness(eot="default", masking=True, perturbation_scale=0.5)),
    PoisonConfig(concept="dog", target="cat"),
    PoisonConfig.preset(concept="dog", target="cat", intensity="low", anchor_choice="fixed", anchor_index=2, seed=4),
    ProtectConfig(concept="dog", target="cat"),
    ProtectConfig.preset(concept="tree", target="cat", quality="fast", target_style="cubist", poison_weight=0.5),
])
def test_json_round_trip(cfg) -> None:  # noqa: ANN001
    assert type(cfg).from_json(cfg.to_json()) == cfg
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_effort_target_steps_round_trips_and_old_manifests_load() -> None:
    eff = Effort(target_steps=60)
    assert Effort.from_dict(json.loads(json.dumps(eff.to_dict()))) == eff
    old = {k: v for k, v in Effort().to_dict().items() if k != "target_steps"}  # a manifest from before the field
    assert Effort.from_dict(old).target_steps is None
    with pytest.raises(ValueError, match="target_steps must be None"):
        Effort(target_steps=0)


def test_json_field_names_are_unchanged() -> None:
    shared = {"budget", "effort", "encoders", "alpha", "seed"}
    assert set(CloakConfig().to_dict()) == shared | {
        "target_style", "style_strength", "target_renderer", "target_tries", "target_overshoot", "target_model",
        "robustness"}
    assert set(PoisonConfig(concept="a", target="b").to_dict()) == shared | {
        "concept", "target", "anchor_choice", "anchor_index", "masking", "perturbation_scale"}
    assert set(ProtectConfig(concept="a", target="b").to_dict()) == shared | {
        "concept", "target", "anchor_choice", "anchor_index", "target_style", "style_strength", "target_renderer",
        "style_weight", "poison_weight"}
    assert set(Effort().to_dict()) == {"steps", "resolution", "lr", "early_stop", "calibration_steps", "lr_schedule",
                                       "views", "view_crop", "view_stride", "update", "target_steps", "objective",
                                       "view_weighting"}


def test_old_manifests_with_coarse_fraction_still_load() -> None:
    d = CloakConfig().to_dict()
    d["effort"]["coarse_fraction"] = 0.0
    assert CloakConfig.from_dict(d) == CloakConfig()
    d["effort"]["coarse_fraction"] = 0.25
    with pytest.raises(ValueError, match="coarse_fraction.*retired"):
        CloakConfig.from_dict(d)


@pytest.mark.parametrize("call, match", [
    (lambda: preset_budget("glaze"), r"unknown mode 'glaze'; choose one of \['cloak', 'poison', 'protect'\]"),
    (lambda: preset_effort("poison", "turbo"), r"unknown quality 'turbo' for poison; choose one of"),
    (lambda: preset_budget("protect", "max"), r"unknown intensity 'max' for protect; choose one of"),
    (lambda: CloakConfig.preset(intensity="extreme"), "choose one of"),
    (lambda: PoisonConfig.preset(concept="dog", target="cat", quality="instant"), "choose one of"),
    (lambda: PoisonConfig(concept="dog", target="dog"), "pick two concepts"),
    (lambda: PoisonConfig(concept="dog", target="cat", anchor_choice="best"), "anchor_choice must be"),
    (lambda: PoisonConfig(concept="dog", target="cat", encoders=()), "at least one encoder"),
    (lambda: ProtectConfig(concept="dog", target="cat", style_weight=0, poison_weight=0), "not both 0"),
    (lambda: ProtectConfig(concept="dog", target="cat", target_renderer="img2img"), "img2img"),
    (lambda: CloakConfig.from_dict({"stepz": 3}), r"unknown CloakConfig field\(s\) \['stepz'\]"),
])
def test_teaching_errors(call, match: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=match):
        call()


def test_preset_requires_concept_and_target_for_concept_modes() -> None:
    with pytest.raises(TypeError):
        PoisonConfig.preset()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ProtectConfig.preset(concept="dog")  # type: ignore[call-arg]
