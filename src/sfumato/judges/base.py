"""What every trained style judge shares: JSON persistence (never pickle), top-1 prediction from
``predict_proba``, and the lazily loaded MobileNetV2 embedding model of the embedding-based judges."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sfumato.judges.mobilenet import MobileNetV2, load_mobilenet


class JsonJudge:
    """Mixin: ``save`` writes ``to_dict()`` as JSON (exact float64 round trip); ``predict`` is the arg-max
    artist of ``predict_proba``. Subclasses define ``artists``, ``to_dict`` and ``predict_proba``."""

    artists: list[str]

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_proba(self, images: Any, *args: Any, **kw: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, images: Any, *args: Any, **kw: Any) -> list[str]:
        """The most probable artist per image."""
        return [self.artists[j] for j in self.predict_proba(images, *args, **kw).argmax(axis=1)]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the judge as JSON (exact float64 round trip)."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return p


    @staticmethod
    def read_saved(path: str | os.PathLike[str], fmt: str, what: str) -> dict[str, Any]:
        """The JSON of a saved judge, refusing another judge kind (``fmt``) with a message naming ``what``."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        if d.get("format") != fmt:
            raise ValueError(f"{path}: not a Sfumato {what} (format {d.get('format')!r})")
        return d

    @staticmethod
    def as_linear_params(**arrays: Any) -> dict[str, Any]:
        """The standardisation and logistic-regression arrays as float64 numpy arrays."""
        import numpy as np

        return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}

    @staticmethod
    def linear_params(d: dict[str, Any]) -> dict[str, Any]:
        """The standardisation and logistic-regression arrays of a saved judge."""
        import numpy as np

        return {k: np.array(d[k]) for k in ("mean", "scale", "coef", "intercept")}


class MobileNetJudge(JsonJudge):
    """Mixin for judges on MobileNetV2 embeddings: the model is loaded on first use from ``models_dir``."""

    variant: str
    models_dir: Any
    _model: MobileNetV2 | None

    @property
    def model(self) -> MobileNetV2:
        if self._model is None:
            self._model = load_mobilenet(models_dir=self.models_dir, variant=self.variant)
        return self._model
