"""The lab's experiment: train the latent generator on each variant of a dataset (clean, or with some
files replaced by protected versions), for several seeds, sample every class, decode, and judge.

:func:`run_lab` is the one loop behind the style and concept experiments (:mod:`sfumato.lab.style`,
:mod:`sfumato.lab.concept`); it returns a :class:`LabRun` per (variant, seed) with the judges' per-class
tables, the training loss curve and the decoded samples (for the report's grids).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sfumato.lab.config import LabConfig
from sfumato.lab.data import LatentCache, encode_dataset
from sfumato.lab.readers import Reader, as_images
from sfumato.lab.train import train_generator

__all__ = ["LabRun", "class_table", "run_lab"]


@dataclass
class LabRun:
    """One trained generator's verdicts. ``tables[reader][class]`` holds ``n``, ``share`` (the share of
    that class's samples the reader labels as each of its classes, ``{label: share}``) and ``mean_p``
    (mean probability per reader class). ``guidance``: the classifier-free guidance the samples were drawn
    with when it is not the config's (:func:`run_lab`'s ``guidances``), else ``None``."""

    variant: str
    seed: int
    counts: dict[str, int]
    replaced: int
    loss: list[float]
    train_seconds: float
    tables: dict[str, dict[str, dict[str, Any]]]
    samples: np.ndarray | None = field(default=None, repr=False)  # (classes, per_class, H, W, 3) uint8
    guidance: float | None = None

    @property
    def guidance_tag(self) -> str:
        """``""`` for a run at the config's guidance, else ``"-g<guidance>"`` (file names of its grid and rows)."""
        return "" if self.guidance is None else f"-g{self.guidance:g}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabRun:
        """Inverse of :meth:`to_dict` (without the samples)."""
        g = d.get("guidance")
        return cls(variant=d["variant"], seed=int(d["seed"]), counts=d["counts"], replaced=int(d["replaced"]),
                   loss=list(d["loss"]), train_seconds=float(d["train_seconds"]), tables=d["tables"],
                   guidance=None if g is None else float(g))

    def to_dict(self) -> dict[str, Any]:
        d = {"variant": self.variant, "seed": self.seed, "counts": self.counts, "replaced": self.replaced,
             "loss": [round(v, 5) for v in self.loss], "train_seconds": round(self.train_seconds, 1),
             "tables": self.tables}
        if self.guidance is not None:
            d["guidance"] = self.guidance
        return d


def class_table(reader: Reader, images: list[np.ndarray], labels: np.ndarray,
                classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per lab class: how ``reader`` labels its samples and its mean probabilities."""
    p = reader.proba(images) if images else np.zeros((0, len(reader.classes)))
    named = np.array(reader.labels(p)) if len(p) else np.array([])
    out = {}
    for i, c in enumerate(classes):
        m = labels == i
        n = int(m.sum())
        shares = {k: float(np.mean(named[m] == k)) for k in sorted(set(named[m]))} if n else {}
        out[c] = {"n": n, "share": shares,
                  "mean_p": {k: float(v) for k, v in zip(reader.classes, p[m].mean(axis=0) if n else [], strict=False)}}
    return out


def _sample_images(gen: Any, encoder: Any, n_classes: int, per_class: int, *, seed: int,
                   latent_shape: tuple[int, int, int], batch: int = 64,
                   guidance: float | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    imgs: list[np.ndarray] = []
    for s in range(0, len(labels), batch):
        z = gen.sample(labels[s:s + batch], seed=seed + s, latent_shape=latent_shape, guidance=guidance)
        with torch.no_grad():
            imgs += as_images(encoder.decode(z.to(next(encoder.parameters()).device)).clamp(0, 1))
    return imgs, labels.numpy()


def _progress_every(every: int, label: str, say: Callable[[str], None]) -> Callable[[int, float], None]:
    """A training progress callback that reports about every ``every`` steps (it is called once per loss
    window of 50 steps)."""
    def report(step: int, loss: float) -> None:
        if step % max(1, every) < 50:
            say(f"{label}: step {step} loss {loss:.4f}")

    return report


def run_lab(files: Mapping[str, Sequence[Path]], variants: Mapping[str, Mapping[Path, Path]], *,
            encoder: Any, readers: Sequence[Reader], config: LabConfig, seeds: Sequence[int],
            cache_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
            keep_samples: bool = True, guidances: Sequence[float] = ()) -> list[LabRun]:
    """Train, sample and judge every ``variant`` (name -> ``{original path: replacement path}``; the
    empty mapping is the clean run) for every seed. ``encoder`` must have a decoder. ``guidances``: other
    classifier-free guidance scales to sample each trained generator with as well (same seeds); each gives
    one more :class:`LabRun` carrying its ``guidance``, after the run at the config's."""
    if not getattr(encoder, "has_decoder", False):
        raise ValueError("the lab needs an autoencoder with a decoder (the judges read decoded samples)")
    say = log or (lambda s: None)
    cache = LatentCache(encoder, config.size, cache_dir=Path(cache_dir) if cache_dir else None)
    runs = []
    for name, replace in variants.items():
        t = time.perf_counter()
        data = encode_dataset(files, cache, flip=config.flip, replace=replace)
        say(f"[lab] {name}: {data.latents.shape[0]} latents ({data.replaced} files replaced), "
            f"encoded in {time.perf_counter() - t:.0f} s")
        dev = next(encoder.parameters()).device  # train where the encoder lives (the inputs' device)
        for seed in seeds:
            gen = train_generator(data.latents.to(dev), data.labels.to(dev), data.classes, config, seed=seed,
                                  progress=_progress_every(config.train_steps // 5, f"[lab] {name} seed {seed}", say))
            for guidance in [None, *guidances]:
                imgs, labels = _sample_images(gen, encoder, len(data.classes), config.samples_per_class,
                                              seed=10_000 + seed, latent_shape=tuple(data.latents.shape[1:]),
                                              guidance=guidance)
                tables = {r.name: class_table(r, imgs, labels, data.classes) for r in readers}
                samples = None
                if keep_samples:
                    u8 = np.stack([(np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8) for a in imgs])
                    samples = u8.reshape(len(data.classes), config.samples_per_class, *u8.shape[1:])
                runs.append(LabRun(variant=name, seed=seed, counts=data.counts(), replaced=data.replaced,
                                   loss=gen.loss, train_seconds=gen.seconds, tables=tables, samples=samples,
                                   guidance=guidance))
            say(f"[lab] {name} seed {seed}: trained in {gen.seconds:.0f} s, final loss {gen.loss[-1]:.4f}")
    return runs
