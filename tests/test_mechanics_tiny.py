"""Mechanics of the shared optimisation loop on tiny random encoders (fast tier: no ``../shared`` needed).

:func:`sfumato.optimise.loop.optimise` with a :class:`LatentTargetObjective` and an L∞ budget only: the
loss falls, the L∞ box holds after the loop, the same seed gives the same δ, and δ follows the input's
device and dtype.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sfumato.encoders.base import Encoder
from sfumato.encoders.tae import tiny_random_tae
from sfumato.optimise.budgets import LinfBudget
from sfumato.optimise.loop import LoopResult, optimise
from sfumato.optimise.objectives import LatentTargetObjective

EPS = 8 / 255


class TinyConvEncoder(Encoder):
    """Three random conv layers, 4x down, 4 latent channels: an encoder small enough for any CPU."""

    id = "tiny-conv"
    latent_channels = 4
    downscale = 4

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(16, 4, 3, padding=1))
        self.weights_sha256 = {"random": f"seed-{seed}"}
        self.freeze()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ENCODERS = {"conv": lambda: TinyConvEncoder(seed=1), "tae": lambda: tiny_random_tae(seed=1, with_decoder=False)}


def _images(h: int = 32, w: int = 40, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth gradient with noise (the clean image) and another image (the target), both 1x3xHxW."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.2 + 0.6 * xx, 0.25 + 0.5 * yy, 0.5 + 0.25 * torch.sin(7 * xx * yy)])[None]
    x0 = (base + 0.04 * torch.randn(base.shape, generator=g)).clamp(0.05, 0.95)
    target = torch.rand(base.shape, generator=g)
    return x0.to(dtype), target.to(dtype)


def _run(enc: Encoder, x0: torch.Tensor, target: torch.Tensor, *, seed: int = 0, steps: int = 12,
         init_noise: float = EPS / 2, update: str = "adam") -> tuple[LoopResult, LatentTargetObjective]:
    obj = LatentTargetObjective(x0, target, [(enc, 1.0)])
    res = optimise(x0, obj, [LinfBudget(eps=EPS)], steps=steps, lr=0.01 if update == "adam" else 1 / 255,
                   update=update, generator=torch.Generator().manual_seed(seed), init_noise=init_noise)
    return res, obj


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_loss_falls_and_the_latent_moves_toward_the_target(name: str) -> None:
    enc = ENCODERS[name]()
    x0, target = _images()
    res, obj = _run(enc, x0, target)
    losses = [h["loss"] for h in res.history]
    assert res.steps_run == 12 and len(losses) == 12
    assert losses[-1] < 0.8 * losses[0]  # ~0.5 and ~0.36 of the first loss on these encoders
    assert all(h["penalty"] == 0 for h in res.history)  # an L∞ box has no soft penalty
    d = obj.distances(x0 + res.delta)[0]
    assert d["encoder"] == enc.id and d["protected_to_target"] < d["clean_to_target"]
    assert d["relative_reduction"] > 0.1
    # the returned δ is the best iterate: its loss (one encoder: the squared relative distance) is the lowest seen
    rel = d["protected_to_target"] / d["clean_to_target"]
    assert rel**2 == pytest.approx(min(losses), rel=1e-3)


@pytest.mark.parametrize("update", ["adam", "sign"])
def test_linf_box_and_valid_image_hold_after_the_loop(update: str) -> None:
    x0, target = _images()
    x0 = x0.clone()
    x0[..., :4, :] = 1.0  # saturated rows: δ there must also keep x0 + δ inside [0, 1]
    x0[..., -4:, :] = 0.0
    res, _ = _run(TinyConvEncoder(), x0, target, update=update, init_noise=EPS)
    assert res.delta.shape == x0.shape
    assert float(res.delta.abs().max()) <= EPS + 1e-6
    assert float(res.delta.abs().max()) > EPS / 4  # the box is used, not an empty δ
    x = x0 + res.delta
    assert float(x.min()) >= -1e-6 and float(x.max()) <= 1 + 1e-6


def test_same_seed_same_delta_and_another_seed_another() -> None:
    x0, target = _images()
    a, _ = _run(TinyConvEncoder(), x0, target, seed=5)
    b, _ = _run(TinyConvEncoder(), x0, target, seed=5)
    c, _ = _run(TinyConvEncoder(), x0, target, seed=6)
    assert torch.equal(a.delta, b.delta)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert not torch.equal(a.delta, c.delta)  # the seed drives the starting noise


def test_without_noise_the_result_does_not_depend_on_the_seed() -> None:
    x0, target = _images()
    a, _ = _run(TinyConvEncoder(), x0, target, seed=1, init_noise=0.0, steps=4)
    b, _ = _run(TinyConvEncoder(), x0, target, seed=2, init_noise=0.0, steps=4)
    assert torch.equal(a.delta, b.delta)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_delta_follows_the_input_device_and_dtype(dtype: torch.dtype) -> None:
    enc = TinyConvEncoder().to(dtype)
    x0, target = _images(dtype=dtype)
    res, obj = _run(enc, x0, target, steps=3)
    assert res.delta.dtype == dtype and res.delta.device == x0.device == torch.device("cpu")
    assert not res.delta.requires_grad
    assert enc.encode(x0 + res.delta).dtype == dtype
    assert all(isinstance(h["loss"], float) for h in res.history)
    assert obj.distances(x0 + res.delta)[0]["relative_reduction"] > 0


def test_the_loop_leaves_the_clean_image_and_the_global_rng_alone() -> None:
    x0, target = _images()
    before = x0.clone()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _run(TinyConvEncoder(), x0, target, steps=3)
    assert torch.equal(torch.rand(3), expected)  # all randomness comes from the given generator
    assert torch.equal(x0, before) and not x0.requires_grad


def test_own_adam_matches_torch_adam_and_skips_the_dynamo_import():
    """sfumato.numerics.adam.Adam does torch.optim.Adam's arithmetic (with a schedule changing lr), and
    constructing it imports no torch._dynamo (the 3 s fixed cost it replaces)."""
    import subprocess
    import sys

    from sfumato.numerics.adam import Adam

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 8, 8, generator=g)
    b = a.clone()
    a.requires_grad_(True)
    b.requires_grad_(True)
    ours, ref = Adam(a, lr=0.01), torch.optim.Adam([b], lr=0.01)
    for step in range(1, 30):
        lr = 0.01 * (1 - step / 40)
        for p in (a, b):
            p.grad = None
            ((p - 0.3).pow(3).sum() + p.sin().sum()).backward()
        ours.lr = lr
        ref.param_groups[0]["lr"] = lr
        ours.step()
        ref.step()
    assert torch.equal(a, b)
    a.grad = None  # a step without a gradient changes nothing
    before = a.detach().clone()
    ours.step()
    assert torch.equal(a, before)
    code = ("import sys, torch; from sfumato.numerics.adam import Adam; "
            "Adam(torch.zeros(2, requires_grad=True), lr=0.1).step(); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

