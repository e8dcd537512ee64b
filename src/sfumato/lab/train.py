"""Train the lab's latent generator (:class:`~sfumato.lab.denoiser.LatentDenoiser`) with the rectified
flow loss (:func:`~sfumato.lab.flow.flow_loss`) and an exponential moving average of its weights.

Device and dtype follow the latents passed in; the seed fixes the initial weights, the batches, the
noise and the label dropout, so a run is replayable from ``(latents, labels, config, seed)``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from sfumato.lab.config import LabConfig
from sfumato.lab.denoiser import LatentDenoiser
from sfumato.lab.flow import flow_loss, sample

__all__ = ["TrainedGenerator", "train_generator"]


@dataclass
class TrainedGenerator:
    """The EMA model and its training record (``loss`` averaged over windows of ``log_every`` steps)."""

    model: LatentDenoiser
    classes: list[str]
    config: LabConfig
    seed: int
    loss: list[float] = field(default_factory=list)
    log_every: int = 50
    seconds: float = 0.0

    def sample(self, label: torch.Tensor, *, seed: int, latent_shape: tuple[int, int, int],
               guidance: float | None = None) -> torch.Tensor:
        """Latents (encoder units) for the class indices ``label``, with the config's classifier-free
        guidance unless ``guidance`` is given (1 = the conditional model alone)."""
        p = next(self.model.parameters())
        g = torch.Generator(device=p.device).manual_seed(seed)
        z = sample(self.model, label.to(p.device), latent_shape, steps=self.config.sample_steps,
                   guidance=self.config.guidance if guidance is None else guidance, generator=g)
        return self.model.unstandardise(z)


def train_generator(latents: torch.Tensor, labels: torch.Tensor, classes: list[str], config: LabConfig, *,
                    seed: int, progress: Callable[[int, float], None] | None = None,
                    log_every: int = 50) -> TrainedGenerator:
    """Train on ``latents`` (``(N, C, H, W)``, encoder units) with class indices ``labels`` (``(N,)``)."""
    if latents.ndim != 4 or latents.shape[0] != labels.shape[0] or latents.shape[0] == 0:
        raise ValueError(f"latents must be (N, C, H, W) with one label each; got {tuple(latents.shape)} "
                         f"and {tuple(labels.shape)}")
    dev, dt = latents.device, latents.dtype
    torch.manual_seed(seed)
    model = LatentDenoiser(latent_channels=latents.shape[1], n_classes=len(classes), width=config.width,
                           depth=config.depth).to(device=dev, dtype=dt)
    model.set_statistics(latents)
    x = model.standardise(latents)
    labels = labels.to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    warmup = max(1, config.train_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    g = torch.Generator(device=dev).manual_seed(seed)
    gb = torch.Generator().manual_seed(seed + 1)
    n = x.shape[0]
    out = TrainedGenerator(model=ema, classes=list(classes), config=config, seed=seed, log_every=log_every)
    t0, window = time.perf_counter(), []
    model.train()
    for step in range(config.train_steps):
        idx = torch.randint(0, n, (min(config.batch, n),), generator=gb).to(dev)
        loss = flow_loss(model, x[idx], labels[idx], generator=g, p_uncond=config.p_uncond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(config.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        window.append(loss.item())
        if len(window) == log_every or step == config.train_steps - 1:
            out.loss.append(sum(window) / len(window))
            window = []
            if progress is not None:
                progress(step + 1, out.loss[-1])
    ema.eval()
    out.seconds = time.perf_counter() - t0
    return out
