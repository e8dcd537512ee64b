"""One encoder cache per process: the (encoder, weight) pairs a configuration names, loaded once."""

from __future__ import annotations

from typing import Any

from sfumato.encoders.base import Encoder


def load_encoders(config: Any, *, models_dir=None) -> list[tuple[Encoder, float]]:  # noqa: ANN001
    """The (encoder, weight) pairs named by ``config.encoders``, loaded once per process."""

    return [(cached_encoder(spec, models_dir), w) for spec, w in config.encoders]


_ENCODER_CACHE: dict[tuple[str, str], Encoder] = {}


def cached_encoder(spec: str, models_dir) -> Encoder:  # noqa: ANN001
    from sfumato.encoders import load_encoder

    key = (spec, str(models_dir))
    if key not in _ENCODER_CACHE:
        _ENCODER_CACHE[key] = load_encoder(spec, models_dir=models_dir)
    return _ENCODER_CACHE[key]
