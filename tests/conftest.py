"""Test set-up: point the product's model setting at the real shared weights.

CI runs with ``../shared`` beside the checkout; tests that need real weights or images use the
``models_dir``/``corpus_dir`` fixtures, which fail loudly (never skip) when the folder is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared")).resolve()

if (SHARED / "models").is_dir():
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
os.environ["SFUMATO_ALLOW_DOWNLOAD"] = "0"  # never touch the network in tests

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        raise RuntimeError(f"../shared not found at {SHARED}: tests need the real shared weights and images")
    return SHARED


@pytest.fixture(scope="session")
def models_dir(shared_dir: Path) -> Path:
    return shared_dir / "models"


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    return shared_dir / "corpus"


@pytest.fixture(scope="session")
def taef2(models_dir: Path):
    from sfumato.encoders import load_encoder

    return load_encoder("taef2", models_dir=models_dir)
