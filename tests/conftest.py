"""Test set-up: point the product's model setting at the real shared weights, and split the suite in tiers.

CI runs with ``../shared`` beside the checkout; tests that need real weights or images use the
``shared_dir``/``models_dir``/``corpus_dir``/``taef2`` fixtures, which fail loudly (never skip) when the
folder is missing.

Tiers: every test that requests one of those fixtures (directly or through other fixtures), and the few in
:data:`SLOW_INDIRECT` that reach the real weights through ``SFUMATO_MODELS_DIR`` alone, is marked ``slow``.
``pytest -m "not slow"`` is the fast tier and runs without ``../shared``; CI runs everything.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared")).resolve()

if (SHARED / "models").is_dir():
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
os.environ["SFUMATO_ALLOW_DOWNLOAD"] = "0"  # never touch the network in tests
# the built-in styles' cache: one fresh folder per test run (tests must see the painters, not old files)
_STYLE_CACHE = tempfile.mkdtemp(prefix="sfumato-test-styles-")
os.environ["SFUMATO_STYLE_CACHE_DIR"] = _STYLE_CACHE
atexit.register(shutil.rmtree, _STYLE_CACHE, True)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Fixtures that need ../shared; any test whose fixture closure contains one is slow.
SHARED_FIXTURES = frozenset({"shared_dir", "models_dir", "corpus_dir", "taef2"})

# Tests that load real weights through SFUMATO_MODELS_DIR without requesting a shared fixture, each with the
# reason: "file.py::name", where name is the test (parameters ignored) or a fixture of that file it uses.
SLOW_INDIRECT: dict[str, str] = {
    "test_baselines.py::runs": "every baseline's LPIPS budget loads the real AlexNet LPIPS weights",
    "test_baselines.py::test_nightshade_step_size_decays_linearly": "Nightshade's LPIPS penalty (real AlexNet)",
    "test_baselines.py::test_matched_budget_respects_lpips_and_linf": "matched-budget calibration on real LPIPS",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        names = {getattr(item, "originalname", item.name), *fixtures}
        if fixtures & SHARED_FIXTURES or any(f"{item.path.name}::{n}" in SLOW_INDIRECT for n in names):
            item.add_marker(slow)


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
