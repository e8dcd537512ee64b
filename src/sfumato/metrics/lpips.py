"""LPIPS v0.1 — Learned Perceptual Image Patch Similarity.

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018. An independent re-implementation that loads the published weights: the
ImageNet-trained AlexNet / SqueezeNet-1.1 ``features`` stacks (torchvision layout, keys ``features.N...``)
and the v0.1 linear calibration heads (``alex.pth`` / ``squeeze.pth``).

The distance between images ``x`` and ``y`` is::

    d(x, y) = sum_l  mean_hw  sum_c  w_lc * (f_l(x) - f_l(y))_c^2

where ``f_l`` is the activation tapped after the l-th ReLU stage, unit-normalised over channels at each
pixel, and ``w_l >= 0`` is the learned 1x1 head of layer l. Images enter in [-1, 1] and pass a fixed
scaling layer ``(x - shift) / scale`` first.

Optimisation loops that compare many candidates against one fixed image should compute the fixed
image's features once with :meth:`LPIPS.reference` and call :meth:`LPIPS.forward_ref`; this halves the
backbone work per step.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sfumato import models

__all__ = ["LPIPS", "LPIPSReference", "load_lpips", "measure_lpips", "tiny_random_lpips", "NETS", "TILE", "TILE_HALO"]

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10  # added to the channel norm, as in the paper's reference implementation

# net -> (backbone weight file, linear-head weight file)
NETS: dict[str, tuple[str, str]] = {
    "alex": ("lpips/alexnet_features.safetensors", "lpips/alex.pth"),
    "squeeze": ("lpips/squeezenet1_1_features.safetensors", "lpips/squeeze.pth"),
}


# --------------------------------------------------------------------------------------------- backbones
class _Fire(nn.Module):
    """SqueezeNet Fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x), inplace=True)
        return torch.cat([F.relu(self.expand1x1(s), inplace=True), F.relu(self.expand3x3(s), inplace=True)], 1)


def _alexnet_features() -> tuple[nn.Sequential, tuple[int, ...], tuple[int, ...]]:
    """torchvision AlexNet ``features`` up to relu5 (the final max-pool is unused by LPIPS)."""
    feats = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
    )
    return feats, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)


def _squeezenet1_1_features() -> tuple[nn.Sequential, tuple[int, ...], tuple[int, ...]]:
    """torchvision SqueezeNet-1.1 ``features``; LPIPS taps the end of its seven stages."""
    feats = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True), _Fire(64, 16, 64, 64), _Fire(128, 16, 64, 64),
        nn.MaxPool2d(3, 2, ceil_mode=True), _Fire(128, 32, 128, 128), _Fire(256, 32, 128, 128),
        nn.MaxPool2d(3, 2, ceil_mode=True), _Fire(256, 48, 192, 192),
        _Fire(384, 48, 192, 192), _Fire(384, 64, 256, 256), _Fire(512, 64, 256, 256),
    )
    return feats, (1, 4, 7, 9, 10, 11, 12), (64, 128, 256, 384, 384, 512, 512)


_BACKBONES = {"alex": _alexnet_features, "squeeze": _squeezenet1_1_features}
# Smallest input side for which every tapped layer is non-empty.
_MIN_SIDE = {"alex": 31, "squeeze": 17}

#: :meth:`LPIPS.measure` splits images with more than ``TILE``² pixels into ``TILE``×``TILE`` cores (a multiple
#: of 16, the deepest tap's stride, so every tile keeps the whole image's sampling grid)...
TILE = 1024
#: ...each run with this many pixels of real context around it (more than the receptive-field radius of
#: the deepest tap: 82 px for AlexNet relu5, 104 px for SqueezeNet's last Fire), so every feature a tile
#: keeps is computed exactly as on the whole image and the tiled distance equals the whole-image one.
TILE_HALO = 128


def _unit_normalise(f: torch.Tensor) -> torch.Tensor:
    """Divide each pixel's feature vector by its L2 norm over channels.

    The squared norm is clamped at the dtype's smallest normal before the square root so that all-zero
    ReLU vectors (common on flat images) give zero, not NaN, gradients; otherwise identical to
    ``f / (||f|| + eps)``.
    """
    ss = f.square().sum(dim=1, keepdim=True).clamp_min(torch.finfo(f.dtype).tiny)
    return f / (ss.sqrt() + _EPS)


# --------------------------------------------------------------------------------------------- module
@dataclass(frozen=True, eq=False)
class LPIPSReference:
    """Cached, unit-normalised features of a fixed image, from :meth:`LPIPS.reference`.

    Attributes:
        net: backbone that produced the features (must match the module that uses them).
        shape: shape ``(N, 3, H, W)`` of the image they came from.
        features: one detached tensor per tapped layer.
    """

    net: str
    shape: tuple[int, ...]
    features: tuple[torch.Tensor, ...]


class LPIPS(nn.Module):
    """LPIPS v0.1 perceptual distance (frozen, eval mode). Build with :func:`load_lpips`.

    ``forward(x, y)`` takes two float RGB batches of the same shape, NCHW, in [0, 1] (or in [-1, 1]
    with ``normalize_input=False``), and returns a tensor ``[N]`` of distances (0 for identical images,
    about 0.1 for strong noise). It is differentiable with respect to the inputs. Device and dtype
    follow the module: move it with ``.to()`` like any ``nn.Module`` and feed inputs of the same
    device and dtype. Input values are not range-checked (that would cost a pass over the data).

    For optimisation loops against a fixed image ``y``::

        ref = lpips.reference(y)          # backbone run once, no gradients kept
        for step in ...:
            loss = lpips.forward_ref(x, ref).sum()

    Attributes:
        net: ``"alex"`` or ``"squeeze"``.
        weights_sha256: SHA-256 of each weight file, by registry name (for manifests).
    """

    def __init__(self, net: str, backbone: dict[str, torch.Tensor], heads: list[torch.Tensor], *,
                 weights_sha256: dict[str, str] | None = None) -> None:
        super().__init__()
        if net not in _BACKBONES:
            raise ValueError(f"unknown LPIPS net {net!r}; choose one of {sorted(_BACKBONES)}")
        self.net = net
        self.weights_sha256: dict[str, str] = dict(weights_sha256 or {})
        with torch.device("meta"):  # no throw-away random init; real tensors are assigned below
            feats, taps, chans = _BACKBONES[net]()
        self.features = feats
        self.features.load_state_dict({k[len("features."):]: v for k, v in backbone.items()},
                                      strict=True, assign=True)
        self.taps = taps
        if [h.numel() for h in heads] != list(chans):
            raise ValueError(f"LPIPS-{net} heads have {[h.numel() for h in heads]} channels, expected {chans}")
        self.heads = nn.ParameterList([nn.Parameter(h.reshape(-1), requires_grad=False) for h in heads])
        shift = torch.tensor(_SHIFT).view(1, 3, 1, 1)
        scale = torch.tensor(_SCALE).view(1, 3, 1, 1)
        # x_in = a * x + b: [0,1] inputs map to [-1,1] then through the scaling layer in one affine op.
        self.register_buffer("_a01", 2.0 / scale, persistent=False)
        self.register_buffer("_b01", (-1.0 - shift) / scale, persistent=False)
        self.register_buffer("_a11", 1.0 / scale, persistent=False)
        self.register_buffer("_b11", -shift / scale, persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LPIPS:
        # A metric is inference-only: refuse to switch to training mode silently.
        return super().train(False)

    def describe(self) -> dict:
        """JSON-ready description for manifests."""
        return {"id": f"lpips-{self.net}-v0.1", "weights_sha256": dict(self.weights_sha256)}

    # ----------------------------------------------------------------------------------------- internals
    def _check(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"LPIPS {name} must be an RGB batch shaped (N, 3, H, W), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"LPIPS {name} must be a float tensor in [0, 1], got {x.dtype}; divide by 255")
        m = _MIN_SIDE[self.net]
        if min(x.shape[-2:]) < m:
            raise ValueError(f"LPIPS-{self.net} needs images at least {m}x{m} pixels, got "
                             f"{tuple(x.shape[-2:])}; upscale the images first")
        w = self._a01
        if x.device != w.device or x.dtype != w.dtype:
            raise ValueError(f"LPIPS weights are {w.dtype} on {w.device} but {name} is {x.dtype} on {x.device}; "
                             "move the module with lpips.to(x.device, x.dtype)")

    def _taps(self, h: torch.Tensor) -> list[torch.Tensor]:
        """Run the scaled input ``h`` through the backbone up to the last tap; the activations at the taps."""
        out: list[torch.Tensor] = []
        last = self.taps[-1]
        taps = set(self.taps)
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in taps:
                out.append(h)
            if i == last:
                break
        return out

    def _features(self, x: torch.Tensor, normalize_input: bool) -> list[torch.Tensor]:
        a, b = (self._a01, self._b01) if normalize_input else (self._a11, self._b11)
        return [_unit_normalise(f) for f in self._taps(torch.addcmul(b, x, a).contiguous(
            memory_format=torch.channels_last))]

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The raw (not unit-normalised) activations at LPIPS's taps for ``x`` in [0, 1], differentiable.
        Used as ImageNet features for neural style transfer (:mod:`sfumato.targets.gatys`)."""
        return self._taps(torch.addcmul(self._b01, x, self._a01))

    def _distance(self, fx: list[torch.Tensor], fy: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        total: torch.Tensor | None = None
        for a, b, w in zip(fx, fy, self.heads, strict=True):
            # mean_hw(sum_c w_c d_c) == sum_c w_c mean_hw(d_c): reduce spatially first, then the 1x1 head.
            d = (a - b).square().mean(dim=(2, 3)) @ w
            total = d if total is None else total + d
        assert total is not None
        return total

    def _grid(self, n: int) -> list[tuple[int, int]]:
        """(length, stride) of each tap's feature grid along an input side of ``n`` pixels."""
        out: list[tuple[int, int]] = []
        stride = 1
        taps = set(self.taps)
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d):
                k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]  # type: ignore[index]
                n, stride = (n + 2 * p - k) // s + 1, stride * s
            elif isinstance(layer, nn.MaxPool2d):
                k, s, p = (int(v if isinstance(v, int) else v[0]) for v in (layer.kernel_size, layer.stride,
                                                                             layer.padding))
                if layer.ceil_mode:
                    m = -(-(n + 2 * p - k) // s) + 1
                    n = m - 1 if (m - 1) * s >= n + p else m
                else:
                    n = (n + 2 * p - k) // s + 1
                stride *= s
            if i in taps:
                out.append((n, stride))
            if i == self.taps[-1]:
                break
        return out

    # ----------------------------------------------------------------------------------------- public
    @torch.no_grad()
    def measure(self, x: torch.Tensor, y: torch.Tensor, *, tile: int = TILE, halo: int = TILE_HALO) -> torch.Tensor:
        """LPIPS distance ``[N]`` of inputs in [0, 1], without gradients, in bounded memory: the same value
        as :meth:`forward` (to float rounding), but images with more than ``tile``² pixels are measured one
        ``tile``×``tile`` core at a time, each with ``halo`` pixels of context, and each tap's squared
        differences are summed over the feature positions each core owns. Peak memory is that of one tile
        (about 0.3 GB for AlexNet at the defaults) instead of growing with the image (≈ 8 GB at 25 MP)."""
        self._check(x, "x")
        self._check(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        h, w = x.shape[-2:]
        if tile % 16 or halo % 16:
            raise ValueError(f"LPIPS tiles and halos must be multiples of 16 pixels, got {tile} and {halo}")
        if h * w <= tile * tile:
            return self.forward(x, y)
        gh, gw = self._grid(h), self._grid(w)
        total = x.new_zeros(x.shape[0])
        for r0 in range(0, h, tile):
            r1, t0 = min(h, r0 + tile), max(0, r0 - halo)
            t1 = min(h, r1 + halo)
            for c0 in range(0, w, tile):
                c1, u0 = min(w, c0 + tile), max(0, c0 - halo)
                u1 = min(w, c1 + halo)
                fx = self._features(x[..., t0:t1, u0:u1], True)
                fy = self._features(y[..., t0:t1, u0:u1], True)
                for a, b, wt, (nh, sh), (nw, sw) in zip(fx, fy, self.heads, gh, gw, strict=True):
                    i0, i1 = r0 // sh, (r1 // sh if r1 < h else nh)  # the grid rows this core owns
                    j0, j1 = c0 // sw, (c1 // sw if c1 < w else nw)
                    a = a[..., i0 - t0 // sh:i1 - t0 // sh, j0 - u0 // sw:j1 - u0 // sw]
                    b = b[..., i0 - t0 // sh:i1 - t0 // sh, j0 - u0 // sw:j1 - u0 // sw]
                    total += ((a - b).square().sum(dim=(2, 3)) @ wt) / (nh * nw)
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, normalize_input: bool = True) -> torch.Tensor:
        """LPIPS distance per image, shape ``[N]``.

        ``normalize_input=True``: inputs are in [0, 1] (the project's convention) and are mapped to
        [-1, 1] inside. ``False``: inputs are already in [-1, 1] (the original LPIPS convention).
        """
        self._check(x, "x")
        self._check(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        return self._distance(self._features(x, normalize_input), self._features(y, normalize_input))

    @torch.no_grad()
    def reference(self, y: torch.Tensor, *, normalize_input: bool = True) -> LPIPSReference:
        """Features of a fixed image ``y``, computed once for repeated :meth:`forward_ref` calls.

        Computed without gradients: no gradient ever flows back to ``y`` through the reference.
        """
        self._check(y, "y")
        feats = tuple(f.detach() for f in self._features(y, normalize_input))
        return LPIPSReference(net=self.net, shape=tuple(y.shape), features=feats)

    def forward_ref(self, x: torch.Tensor, ref: LPIPSReference, *, normalize_input: bool = True) -> torch.Tensor:
        """LPIPS distance ``[N]`` from ``x`` to a cached :class:`LPIPSReference` (same result as
        ``forward(x, y)``, half the work). ``ref`` may hold a single image (batch 1), which is compared
        with every image of ``x``; otherwise its batch size must equal ``x``'s. ``normalize_input``
        applies to ``x`` only (the reference's convention was fixed when it was made)."""
        self._check(x, "x")
        if not isinstance(ref, LPIPSReference) or ref.net != self.net:
            got = ref.net if isinstance(ref, LPIPSReference) else type(ref).__name__
            raise ValueError(f"forward_ref needs an LPIPSReference made by this LPIPS-{self.net} "
                             f"(got {got}); build it with lpips.reference(y)")
        if tuple(x.shape[1:]) != ref.shape[1:] or ref.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"x shape {tuple(x.shape)} does not match the reference image shape {ref.shape}; "
                             "the reference must have the same (3, H, W) and batch 1 or the same batch")
        return self._distance(self._features(x, normalize_input), ref.features)

    def distance_map(self, x: torch.Tensor, y: torch.Tensor, *, normalize_input: bool = True) -> torch.Tensor:
        """Per-pixel LPIPS map ``[N, 1, H, W]``: each layer's weighted squared difference, bilinearly
        upsampled to the input size, summed over layers. Its spatial mean is close to (not exactly) the
        scalar distance, because upsampling does not preserve means at the borders."""
        self._check(x, "x")
        self._check(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        size = tuple(x.shape[-2:])
        total: torch.Tensor | None = None
        for a, b, w in zip(self._features(x, normalize_input), self._features(y, normalize_input),
                           self.heads, strict=True):
            m = F.conv2d((a - b).square(), w.view(1, -1, 1, 1))
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            total = m if total is None else total + m
        assert total is not None
        return total.contiguous()


# --------------------------------------------------------------------------------------------- loading
@functools.lru_cache(maxsize=8)
def _load_weights(net: str, models_dir: str | None, env_dir: str | None
                  ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...], tuple[tuple[str, str], ...]]:
    """Verified float32 weights for ``net``, cached per process (``env_dir`` only keys the cache)."""
    del env_dir
    bb_name, head_name = NETS[net]
    bb, bb_sha = models.load_registered(bb_name, path=models_dir)
    hd, hd_sha = models.load_registered(head_name, path=models_dir)
    bb = {k: (v.float().contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v.float())
          for k, v in bb.items()}
    n = len(hd)
    heads = tuple(hd[f"lin{i}.model.1.weight"].float().reshape(-1) for i in range(n))
    return bb, heads, ((bb_name, bb_sha), (head_name, hd_sha))


def measure_lpips(model: LPIPS, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``model.measure(x, y)`` (tiled, no gradients); a plain callable stand-in (tests) is simply called.
    The model follows the inputs: an :class:`LPIPS` is moved to ``x``'s device first."""
    if isinstance(model, nn.Module):
        model = model.to(x.device)
    m = getattr(model, "measure", None)
    if m is None:
        with torch.no_grad():
            return model(x, y)
    return m(x, y)


def tiny_random_lpips(net: str = "alex", *, seed: int = 0) -> LPIPS:
    """An LPIPS with the real architecture and seeded random weights (no files needed), for tests that run
    the whole pipeline without ``../shared``. Its heads are scaled so that uniform noise of ±8/255 measures
    about 0.05, like the real AlexNet LPIPS; the global RNG is left untouched."""
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of {sorted(NETS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        feats, _, chans = _BACKBONES[net]()
        backbone = {f"features.{k}": v.detach().clone() for k, v in feats.state_dict().items()}
        heads = [torch.rand(c) / c for c in chans]
    m = LPIPS(net, backbone, heads, weights_sha256={"random": f"seed-{seed}"})
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 64, 64, generator=g)
    noisy = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * 8 / 255).clamp(0, 1)
    with torch.no_grad():
        f = 0.05 / float(m(noisy, x)[0])
    return LPIPS(net, backbone, [h * f for h in heads], weights_sha256={"random": f"seed-{seed}"})


def load_lpips(net: str = "alex", *, models_dir: str | os.PathLike[str] | None = None) -> LPIPS:
    """Load LPIPS v0.1 with the ``"alex"`` (default, as recommended by the paper) or ``"squeeze"`` backbone.

    Weights are resolved and SHA-256-checked by :func:`sfumato.models.load_registered` (``models_dir``,
    then ``SFUMATO_MODELS_DIR``, then the user cache) and cached per process: repeated calls do not
    reread or rehash files. Each call returns a new, cheap float32 CPU module whose parameters share
    the cached (read-only, frozen) tensors, so ``.to()`` on one instance never affects another.
    """
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of {sorted(NETS)}")
    key_dir = None if models_dir is None else str(os.fspath(models_dir))
    bb, heads, shas = _load_weights(net, key_dir, os.environ.get(models.ENV_MODELS_DIR))
    return LPIPS(net, bb, list(heads), weights_sha256=dict(shas))
