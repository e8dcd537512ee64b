"""Keyword-only, frozen configuration objects that round-trip to JSON, and the one table of named presets.

:data:`PRESETS` holds every named setting of the three modes: ``PRESETS[mode]["intensity"][name]`` is a
:class:`Budget` (``low``/``default``/``high``) and ``PRESETS[mode]["quality"][name]`` an :class:`Effort`
(``fast``/``default``/``slow``), for ``mode`` in ``cloak``, ``poison`` and ``protect``. The command line,
the server and the configs' own defaults all read it: ``CloakConfig() == CloakConfig.preset()``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Intensity = Literal["low", "default", "high"]
Quality = Literal["fast", "default", "slow"]
MODES = ("cloak", "poison", "protect")


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class JSONConfig:
    """``to_dict``/``to_json`` and their inverses for a frozen dataclass. ``RETIRED_FIELDS`` names fields
    that older versions wrote, with the only value they may still carry (they are accepted and dropped,
    so old manifests keep loading)."""

    RETIRED_FIELDS: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):  # type: ignore[no-untyped-def]
        """Inverse of :meth:`to_dict`: nested config objects are rebuilt from their dicts and JSON lists
        become tuples (``encoders`` → tuple of ``(spec, weight)`` pairs)."""
        import typing

        kwargs = dict(d)
        for name, only in cls.RETIRED_FIELDS.items():
            if name in kwargs:
                value = kwargs.pop(name)
                require(value == only, f"{cls.__name__} field {name!r} was retired; only {only!r} is still "
                                       f"accepted (what every preset used), got {value!r}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(kwargs) - names
        require(not unknown, f"unknown {cls.__name__} field(s) {sorted(unknown)}; known: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        for name, value in list(kwargs.items()):
            hint = hints.get(name)
            if isinstance(value, dict) and isinstance(hint, type) and issubclass(hint, JSONConfig):
                kwargs[name] = hint.from_dict(value)
            elif name == "encoders" and isinstance(value, (list, tuple)):
                kwargs[name] = tuple((str(s), float(w)) for s, w in value)
            elif isinstance(value, list):
                kwargs[name] = tuple(value)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, s: str):  # type: ignore[no-untyped-def]
        return cls.from_dict(json.loads(s))


@dataclass(frozen=True, kw_only=True)
class Budget(JSONConfig):
    """Perceptual budget of a perturbation, enforced on the *saved 8/16-bit file*.

    ``lpips``: LPIPS v0.1 ceiling (AlexNet by default; Glaze uses p = 0.05); ``linf``: cap on the absolute
    change of any channel of any pixel, in [0, 1] units (8/255 = 0.0314).
    """

    lpips: float = 0.05
    linf: float = 24 / 255
    lpips_net: Literal["alex", "squeeze"] = "alex"

    def __post_init__(self) -> None:
        require(0 < self.lpips < 1, f"budget lpips must be in (0, 1), got {self.lpips}; Glaze uses 0.05")
        require(0 < self.linf <= 1, f"budget linf must be in (0, 1] (pixel units, 8/255 = 0.031), got {self.linf}")
        require(self.lpips_net in ("alex", "squeeze"), f"lpips_net must be 'alex' or 'squeeze', got {self.lpips_net!r}")


@dataclass(frozen=True, kw_only=True)
class Effort(JSONConfig):
    """Search effort of the optimisation.

    ``resolution``: long side (pixels) at which the encoder sees the image, as a trainer would after
    resizing; the perturbation lives at that resolution and is upsampled smoothly to the full image.
    ``early_stop``: stop once the latent has moved this share of the way to the target (0 disables).
    ``lr_schedule``: ``"constant"`` or ``"cosine"`` (from ``lr`` down to ``lr / 10`` at the last step).
    ``calibration_steps``: bisection steps that scale the perturbation onto the budget of the saved file.
    ``views``: where the encoder looks while optimising — ``"work"``: the one work view (long side
    ``resolution``); ``"trainer"``: a trainer view sampled per step (a 512/768/1024 px bucket or the native
    size, then a random crop of ``view_crop`` px, :mod:`sfumato.optimise.view_sampling`), because the
    encoder is not scale-equivariant and trainers do not encode at our work size. ``view_crop``: the side of
    those crops (a step costs one encoder pass at ``view_crop``²). ``view_stride``: the grid the crops
    start on — 8 (anywhere on the latent grid) up to ``view_crop`` (tiles covering the view, visited in
    shuffled cycles; a larger value acts as ``view_crop``, so changing ``view_crop`` alone keeps tiles); a
    crop's gradient-free target latent is reused when it comes back, so coarser grids
    save encoder passes (:mod:`sfumato.optimise.view_sampling`). ``update``: ``"adam"`` (Adam on δ, ``lr``
    its learning rate) or ``"sign"`` (signed-gradient PGD, ``lr`` the step in [0, 1] pixel units);
    manifests written before this field load as ``"adam"``. ``target_steps``: Adam steps of the cloak's
    Gatys target rendering, two thirds of them at half size; ``None`` (every preset) is
    :data:`sfumato.targets.style_target.GATYS_STEPS` (150, 100 coarse). The preview renders 60: on a 256 px
    Van Gogh, 2.5–3.3× faster than 150, with a Gram distance to the style 10–33 % larger
    (``PREVIEW_TARGET_STEPS``). ``objective``: what each trainer-view step pulls toward the target —
    ``"latent"`` (Glaze's normalised latent distance, every preset), ``"ai-view-gram"`` (a Gram style loss
    on the decoded AI view, :mod:`sfumato.optimise.ai_view_style`) or ``"mix"`` (half each); the two
    others cost a decoder and a feature pass per step (issue 23's objective test, ``docs/benchmarks.md``).
    ``view_weighting``: how a trainer-view step picks its view size — ``"uniform"`` (each bucket and the
    native size equally often) or ``"worst"`` (half the steps go to the view size whose running progress
    toward the target is lowest, the other half uniform: the issue's figure is the *worst* trainer view,
    :mod:`sfumato.optimise.view_sampling`); manifests written before this field load as ``"uniform"``.

    The former ``coarse_fraction`` (a share of steps run at half resolution first) is retired: every
    preset set 0, because with TAEF2 a perturbation that moved the half-resolution latent 67–73 % of the
    way was worth −15 % to −2 % at full resolution (the encoder is not scale-equivariant). Old manifests
    that carry ``coarse_fraction: 0`` still load.

    The cloak's presets optimise over trainer views (``views="trainer"``, 256 px crops). ``default`` is 80
    steps at lr 0.016: on two art128 hold-out paintings (128 px, Van Gogh and Monet) its worst trainer
    view moved 0.21 and 0.18 of the way to the target, against 0.14 with 40 steps, 0.17 with 80
    cosine-decayed steps from lr 0.024 (Van Gogh), 0.18 and 0.10 with 384 px crops, and 0.01 for the
    former single-view 40-step preset (``docs/benchmarks.md``, protection meter, for the full figures).
    Since 2026-12-06 the cloak's crops are 256 px tiles (``view_stride=256``) whose target latents are
    reused: on four 1024 px paintings its worst trainer view moved 0.161/0.199/0.244/0.182 of the way
    against 0.149/0.165/0.209/0.183 with crops anywhere on the 8 px grid, and a 1024² painting took 119.7 s
    against 149.0 s side by side (``benchmarks/cloak_step_cost.py``, ``benchmarks/meter.py --ace``).

    The poison's (and protect's) presets take signed steps of 0.0094 (L∞ 24/255 / 10), cosine-decayed to a
    tenth: 30/80/500 steps for fast/default/slow. On three pets hold-out dogs (≤ 256 px, LPIPS 0.07, L∞
    24/255, ``benchmarks/poison_converge.py``) 80 such steps moved the TAEF2 latent 0.57 of the way to the
    cat anchor on the saved file, against 0.36 for the former 80 Adam steps at lr 0.008 (30 signed steps:
    0.50); 200 steps reached 0.60 and 500 steps 0.63, the lowest loss still at step 474–499 of 500 — more
    steps still help, so ``slow`` takes Nightshade's 500. The poison's steps are taken over trainer views
    (issue 18): on 4 dog photos (pets hold-out and photos/dog, ≤ 512 px, aligned anchor,
    ``benchmarks/poison_views.py``) the worst trainer view moved 0.073 of the way to the anchor on average
    against 0.058 at the one work view (better on 2 photos, worse on 2), and a 1280 px photo's default run
    projects to 133 s on 2 cores against 299 s (``benchmarks/poison_converge.py --speed``). Protect keeps
    the one work view (its joint objective does not sample views).
    """

    RETIRED_FIELDS: ClassVar[dict[str, Any]] = {"coarse_fraction": 0.0}

    steps: int = 80
    resolution: int = 512
    lr: float = 0.008
    early_stop: float = 0.0
    calibration_steps: int = 8
    lr_schedule: str = "constant"
    views: str = "work"
    view_crop: int = 256
    view_stride: int = 8
    update: str = "adam"
    target_steps: int | None = None
    objective: str = "latent"
    view_weighting: str = "uniform"

    def __post_init__(self) -> None:
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(self.target_steps is None or (isinstance(self.target_steps, int) and self.target_steps >= 1),
                f"target_steps must be None (the renderer's default) or an int >= 1, got {self.target_steps!r}")
        require(64 <= self.resolution <= 4096, f"resolution must be in [64, 4096] pixels, got {self.resolution}")
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(0 <= self.early_stop < 1, f"early_stop must be in [0, 1), got {self.early_stop}")
        require(self.lr_schedule in ("constant", "cosine"),
               f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        require(self.views in ("work", "trainer"),
               f"views must be 'work' (the work size only) or 'trainer' (sampled trainer views), got {self.views!r}")
        require(isinstance(self.view_crop, int) and 32 <= self.view_crop <= 1024,
               f"view_crop must be an int in [32, 1024] pixels, got {self.view_crop!r}")
        require(isinstance(self.view_stride, int) and 8 <= self.view_stride <= 1024,
               f"view_stride must be an int in [8, 1024] pixels: 8 places crops anywhere on the 8 px latent "
               f"grid, view_crop or more makes them tiles that cover each view; got {self.view_stride!r}")
        require(self.update in ("adam", "sign"),
               f"update must be 'adam' (Adam on the perturbation, lr = learning rate) or 'sign' (signed-gradient "
               f"PGD, lr = step size in [0, 1] pixel units, e.g. 0.0094 = L∞ 24/255 / 10), got {self.update!r}")
        require(self.objective in CLOAK_OBJECTIVES,
                f"objective must be 'latent' (Glaze's latent distance to the target), 'ai-view-gram' (a Gram "
                f"style loss on the decoded AI view) or 'mix' (half each), got {self.objective!r}")
        require(self.objective == "latent" or self.views == "trainer",
                f"objective {self.objective!r} is defined over sampled trainer views: set views='trainer'")
        require(self.objective == "latent" or self.early_stop == 0,
                f"early_stop measures the latent's progress, which objective {self.objective!r} does not "
                "optimise: set early_stop=0 or objective='latent'")
        require(self.view_weighting in VIEW_WEIGHTINGS,
                f"view_weighting must be 'uniform' (every trainer view size equally often) or 'worst' (half the "
                f"steps on the view size that has moved least toward the target), got {self.view_weighting!r}")
        require(self.view_weighting == "uniform" or self.views == "trainer",
                f"view_weighting {self.view_weighting!r} chooses among sampled trainer views: set views='trainer'")
        require(self.update != "sign" or self.lr <= 1,
               f"a sign update's lr is a step in [0, 1] pixel units (e.g. 0.0094 for L∞ 24/255), got {self.lr}")


#: The values of ``Effort.view_weighting`` (:class:`sfumato.optimise.view_sampling.ViewSampledObjective`).
VIEW_WEIGHTINGS = ("uniform", "worst")

#: The values of ``Effort.objective`` (their weights: :data:`sfumato.optimise.ai_view_style.OBJECTIVES`).
CLOAK_OBJECTIVES = ("latent", "mix", "ai-view-gram")


# ------------------------------------------------------------------------------------------ the preset table
def _budgets(lpips: tuple[float, float, float], linf_255: tuple[int, int, int]) -> dict[str, Budget]:
    """low/default/high budgets from their LPIPS ceilings and L∞ caps (in 1/255 units)."""
    return {name: Budget(lpips=p, linf=c / 255)
            for name, p, c in zip(("low", "default", "high"), lpips, linf_255, strict=True)}


def _efforts(steps: tuple[int, int, int], resolution: tuple[int, int, int],
             lr: tuple[float, float, float], views: str = "work", update: str = "adam",
             lr_schedule: str = "constant", view_stride: int = 8) -> dict[str, Effort]:
    """fast/default/slow search efforts from their steps, work resolutions and learning rates (step sizes
    for ``update="sign"``)."""
    return {name: Effort(steps=n, resolution=r, lr=a, views=views, update=update, lr_schedule=lr_schedule,
                         view_stride=view_stride)
            for name, n, r, a in zip(("fast", "default", "slow"), steps, resolution, lr, strict=True)}


#: The poison's signed step: L∞ 24/255 / 10 in [0, 1] pixel units, decayed by a cosine to a tenth.
POISON_STEP = round(24 / 255 / 10, 4)


#: Every named preset: ``PRESETS[mode]["intensity"][low|default|high]`` is a :class:`Budget`,
#: ``PRESETS[mode]["quality"][fast|default|slow]`` an :class:`Effort`. Poison and protect use Nightshade's
#: p = 0.07 by default with L∞ 24/255 throughout; their efforts are the ones docs/benchmarks.md measured.
PRESETS: dict[str, dict[str, dict[str, Budget | Effort]]] = {
    "cloak": {"intensity": _budgets(lpips=(0.03, 0.05, 0.07), linf_255=(16, 24, 32)),  # type: ignore[dict-item]
              "quality": _efforts(steps=(30, 80, 200), resolution=(512, 512, 768), lr=(0.02, 0.016, 0.008),
                                  views="trainer", view_stride=256)},
    "poison": {"intensity": _budgets(lpips=(0.05, 0.07, 0.10), linf_255=(24, 24, 24)),  # type: ignore[dict-item]
               "quality": _efforts(steps=(30, 80, 500), resolution=(512, 512, 768), lr=(POISON_STEP,) * 3,
                                   update="sign", lr_schedule="cosine", views="trainer")},
}
#: Protect (the joint cloak + poison) shares the poison's budgets and steps but runs at its one work view.
PRESETS["protect"] = {"intensity": dict(PRESETS["poison"]["intensity"]),
                      "quality": {name: dataclasses.replace(e, views="work")
                                  for name, e in PRESETS["poison"]["quality"].items()}}

#: The cloak's budgets per ``--intensity`` (the cloak row of :data:`PRESETS`).
INTENSITY_PRESETS: dict[str, Budget] = PRESETS["cloak"]["intensity"]  # type: ignore[assignment]
#: The cloak's search effort per ``--quality`` (the cloak row of :data:`PRESETS`).
QUALITY_PRESETS: dict[str, Effort] = PRESETS["cloak"]["quality"]  # type: ignore[assignment]


def _preset(mode: str, axis: str, name: str) -> Budget | Effort:
    require(mode in PRESETS, f"unknown mode {mode!r}; choose one of {sorted(PRESETS)}")
    row = PRESETS[mode][axis]
    require(name in row, f"unknown {axis} {name!r} for {mode}; choose one of {sorted(row)}")
    return row[name]


def preset_budget(mode: str, intensity: str = "default") -> Budget:
    """The budget of ``mode`` (cloak, poison, protect) at ``intensity`` (low, default, high)."""
    b = _preset(mode, "intensity", intensity)
    assert isinstance(b, Budget)
    return b


def preset_effort(mode: str, quality: str = "default") -> Effort:
    """The search effort of ``mode`` (cloak, poison, protect) at ``quality`` (fast, default, slow)."""
    e = _preset(mode, "quality", quality)
    assert isinstance(e, Effort)
    return e


def _default_budget(mode: str) -> Any:
    return field(default_factory=lambda: preset_budget(mode))


def _default_effort(mode: str) -> Any:
    return field(default_factory=lambda: preset_effort(mode))


# ------------------------------------------------------------------------------------------ the mode configs
@dataclass(frozen=True, kw_only=True)
class Robustness(JSONConfig):
    """Robust-by-design options.

    ``eot``: a preset of :data:`sfumato.optimise.eot.EOT_PRESETS` — differentiable stand-ins of the attacks
    sampled during optimisation (expectation over transformation); ``masking``: a per-pixel L∞ budget map
    from the original's texture (:mod:`sfumato.optimise.masking`), so flat colour gets little perturbation
    (on by default since issue 20: the cloak must not texture flat colour);
    ``anti_fingerprint``: a per-image seed (from ``seed`` and the image content) that randomises the
    perturbation's starting point and colour structure, so one learned remover cannot fit every output;
    ``perturbation_scale``: the perturbation lives on a grid this share of the work resolution, upsampled
    bilinearly (1 = every pixel free; 0.5 = no energy in the top octave, which a ×0.5 resize and JPEG's
    quantisation of high frequencies would remove).
    """

    eot: str = "none"
    masking: bool = True
    anti_fingerprint: bool = True
    perturbation_scale: float = 1.0

    def __post_init__(self) -> None:
        require(isinstance(self.eot, str) and bool(self.eot), "eot must be a preset name, e.g. 'none' or 'default'")
        require(0.125 <= self.perturbation_scale <= 1,
               f"perturbation_scale must be in [0.125, 1] (share of the work resolution; 0.5 = half-resolution "
               f"grid), got {self.perturbation_scale}")


TARGET_RENDERERS = ("gatys", "latent-wct", "img2img")


@dataclass(frozen=True, kw_only=True)
class ProtectionConfig(JSONConfig):
    """Fields every mode shares. ``budget`` and ``effort`` default to the mode's ``default`` presets;
    ``encoders``: encoder specs with weights (``("taef2", 1.0)``); ``alpha``: weight of the LPIPS-overshoot
    penalty (Glaze's α); ``seed``: seeds everything random."""

    MODE: ClassVar[str] = ""

    budget: Budget
    effort: Effort
    encoders: tuple[tuple[str, float], ...] = (("taef2", 1.0),)
    alpha: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(len(self.encoders) >= 1, "at least one encoder is needed, e.g. encoders=(('taef2', 1.0),)")
        for e in self.encoders:
            require(len(e) == 2 and float(e[1]) > 0, f"each encoder is (spec, positive weight), got {e!r}")
        require(self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}")
        require(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a non-negative int, got {self.seed!r}")

    @classmethod
    def preset(cls, *, intensity: str = "default", quality: str = "default", **kw: Any):  # type: ignore[no-untyped-def]
        """The config of this mode with the named presets of :data:`PRESETS`; ``kw`` sets any other field."""
        return cls(budget=preset_budget(cls.MODE, intensity), effort=preset_effort(cls.MODE, quality), **kw)


@dataclass(frozen=True, kw_only=True)
class StyleFields:
    """The style target (cloak, protect): ``target_style``: ``"auto"`` (a built-in style picked as in Glaze,
    between the 50th and 75th percentile of style distance), a built-in style name, or a folder of reference
    images (or a folder of such folders, one per candidate style); ``style_strength``: how far the target's
    latent goes from the artwork's toward the rendering (0..1); ``target_renderer``: ``"gatys"`` (neural
    style transfer, :mod:`sfumato.targets.gatys`), ``"latent-wct"`` (:mod:`sfumato.targets.latent_wct`) or
    ``"img2img"`` (a diffusers pipeline, :mod:`sfumato.targets.img2img`)."""

    target_style: str = "auto"
    style_strength: float = 1.0
    target_renderer: str = "gatys"

    def check_style(self) -> None:
        require(self.target_renderer in TARGET_RENDERERS,
               f"target_renderer must be one of {TARGET_RENDERERS}, got {self.target_renderer!r}")
        require(0 < self.style_strength <= 1, f"style_strength must be in (0, 1], got {self.style_strength}")


@dataclass(frozen=True, kw_only=True)
class ConceptFields:
    """The concept pair (poison, protect): images of ``concept`` C should teach ``target`` A.
    ``anchor_choice``: ``"aligned"`` (the default since issue 18: per image, the anchor flipped, cropped and
    scaled to the photo's layout whose latent is nearest, :mod:`sfumato.targets.anchor_alignment`; it left
    the poison less to travel on every photo measured, docs/benchmarks.md "Poison convergence"),
    ``"cheapest"`` (the centre-cropped anchor with the nearest latent) or ``"fixed"`` (``anchor_index``)."""

    concept: str
    target: str
    anchor_choice: Literal["aligned", "cheapest", "fixed"] = "aligned"
    anchor_index: int = 0

    def check_concept(self) -> None:
        require(bool(self.concept.strip()) and bool(self.target.strip()),
               "poison needs a concept C and a target A, e.g. concept='dog', target='cat'")
        require(self.concept != self.target, f"concept and target are both {self.concept!r}; pick two concepts")
        require(self.anchor_choice in ("aligned", "cheapest", "fixed"),
               f"anchor_choice must be 'aligned', 'cheapest' or 'fixed', got {self.anchor_choice!r}")
        require(self.anchor_index >= 0, f"anchor_index must be >= 0, got {self.anchor_index}")

    @classmethod
    def preset(cls, *, concept: str, target: str, intensity: str = "default", quality: str = "default",
               **kw: Any):  # type: ignore[no-untyped-def]
        """The config of this mode for C → A with the named presets of :data:`PRESETS`."""
        return super().preset(concept=concept, target=target, intensity=intensity,  # type: ignore[misc]
                              quality=quality, **kw)


@dataclass(frozen=True, kw_only=True)
class CloakConfig(StyleFields, ProtectionConfig):
    """Everything that determines a style cloak; with the image, it reproduces the result exactly.

    Besides the shared and style fields: ``target_tries``: candidates rendered and vetted before settling;
    ``target_overshoot``: aim the latent this many times as far as the target along the same direction
    (1 = at the target); ``target_model``: the diffusers pipeline of the ``img2img`` renderer;
    ``robustness``: :class:`Robustness`.
    """

    MODE: ClassVar[str] = "cloak"

    budget: Budget = _default_budget("cloak")
    effort: Effort = _default_effort("cloak")
    target_tries: int = 3
    target_overshoot: float = 1.0
    target_model: str = ""
    robustness: Robustness = field(default_factory=Robustness)

    def __post_init__(self) -> None:
        ProtectionConfig.__post_init__(self)
        self.check_style()
        require(self.target_renderer != "img2img" or bool(self.target_model),
               "target_renderer 'img2img' needs target_model: a local diffusers text-to-image pipeline folder "
               "(or a Hub id already in the cache)")
        require(isinstance(self.target_tries, int) and self.target_tries >= 1,
               f"target_tries must be an int >= 1, got {self.target_tries!r}")
        require(1.0 <= self.target_overshoot <= 4.0,
               f"target_overshoot must be in [1, 4] (1 = aim exactly at the target), got {self.target_overshoot}")


@dataclass(frozen=True, kw_only=True)
class PoisonConfig(ConceptFields, ProtectionConfig):
    """Everything that determines a poison (with the image and the anchors, it reproduces the result).
    ``budget`` defaults to Nightshade's LPIPS p = 0.07 with an L∞ cap of 24/255. ``masking``: scale the L∞
    cap per pixel by the original's texture (:mod:`sfumato.optimise.masking`, the cloak's map), so flat
    areas such as sky, walls and fur in shadow get at most the map's floor (a tenth) of the cap; off by
    default (issue 18's stealth test, docs/benchmarks.md). ``perturbation_scale`` < 1 optimises δ on a
    grid that much coarser, upsampled bilinearly (a low-frequency poison, as
    :attr:`Robustness.perturbation_scale` does for the cloak); 1 by default."""

    MODE: ClassVar[str] = "poison"

    budget: Budget = _default_budget("poison")
    effort: Effort = _default_effort("poison")
    masking: bool = False
    perturbation_scale: float = 1.0

    def __post_init__(self) -> None:
        ProtectionConfig.__post_init__(self)
        self.check_concept()
        require(isinstance(self.masking, bool), f"masking must be true or false, got {self.masking!r}")
        require(0.1 <= self.perturbation_scale <= 1,
                f"perturbation_scale must be in [0.1, 1] (1 = δ at the work size, 0.5 = on a grid half as fine), "
                f"got {self.perturbation_scale}")


@dataclass(frozen=True, kw_only=True)
class ProtectConfig(ConceptFields, StyleFields, ProtectionConfig):
    """Joint cloak + poison. ``budget`` is the single budget of the combined perturbation;
    ``style_weight``/``poison_weight`` weight the two (normalised) latent objectives."""

    MODE: ClassVar[str] = "protect"

    budget: Budget = _default_budget("protect")
    effort: Effort = _default_effort("protect")
    style_weight: float = 1.0
    poison_weight: float = 1.0

    def __post_init__(self) -> None:
        ProtectionConfig.__post_init__(self)
        self.check_style()
        self.check_concept()
        require(self.target_renderer != "img2img",
               "protect has no target_model for the 'img2img' renderer; use 'gatys' or 'latent-wct'")
        require(self.style_weight >= 0 and self.poison_weight >= 0 and self.style_weight + self.poison_weight > 0,
               "style_weight and poison_weight must be >= 0 and not both 0")

    def cloak_config(self, *, budget: Budget | None = None) -> CloakConfig:
        """The style part alone, as a cloak (under ``budget``, default the joint one)."""
        return CloakConfig(budget=budget or self.budget, effort=self.effort, encoders=self.encoders,
                           target_style=self.target_style, style_strength=self.style_strength, alpha=self.alpha,
                           seed=self.seed, target_renderer=self.target_renderer)

    def poison_config(self, *, budget: Budget | None = None) -> PoisonConfig:
        """The concept part alone, as a poison (under ``budget``, default the joint one)."""
        return PoisonConfig(concept=self.concept, target=self.target, budget=budget or self.budget,
                            effort=self.effort, encoders=self.encoders, anchor_choice=self.anchor_choice,
                            anchor_index=self.anchor_index, alpha=self.alpha, seed=self.seed)


#: The preview's work size (long side, px), optimisation steps and views: seconds, not minutes. The preview
#: optimises the one work view it then judges (``views="work"``: a step is one encoder pass with its gradient,
#: against three passes for a sampled trainer view), so its verdict is about that view only and says so;
#: the full run optimises over trainer views. Measured with ``benchmarks/first_image.py`` (docs/benchmarks.md,
#: "First image and preview"). ``sfumato cloak --preview`` and the web app's Preview both call
#: :func:`sfumato.api.preview`. 192 px (was 256): the process took 14–15 s instead of 19 s on a slow 2-core
#: host (with the style cache and the own Adam); the art128 style judge reads its views at 128 px either way.
PREVIEW_SIDE = 192
PREVIEW_STEPS = 8
PREVIEW_VIEWS = "work"
#: The preview's Gatys target: 60 steps (40 at half size) instead of 150 (see :class:`Effort`).
PREVIEW_TARGET_STEPS = 60
