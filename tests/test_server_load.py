"""Bounded load on loopback: 20 concurrent clients against a server with one worker and a queue of 3.
No 5xx, every accepted job completes, every refused submission gets 429 with ``Retry-After``, and the
HTTP event loop stays responsive while the worker computes (``benchmarks/load_test.py`` does the work)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from sfumato.config import Effort
from sfumato.server import ServerSettings
from sfumato.server.app import serve_in_thread

ROOT = Path(__file__).resolve().parents[1]


def _load_test_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("sfumato_load_test", ROOT / "benchmarks" / "load_test.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_twenty_clients_small_queue(tmp_path: Path, models_dir: Path, corpus_dir: Path) -> None:
    lt = _load_test_module()
    image = lt.small_png(corpus_dir / "art" / "claude_monet" / "ace_Impressionism_claude-monet_0.png", 64)
    settings = ServerSettings(data_dir=tmp_path / "data", port=0, workers=1, max_queue=3, models_dir=models_dir,
                              effort_override=Effort(steps=2, resolution=64, calibration_steps=2))
    with serve_in_thread(settings) as url:
        res = lt.run_load(url, image, clients=20, job_timeout_s=600)
    s = res.summary()
    print(s)
    assert res.server_errors == 0 and not res.unexpected, res.unexpected
    assert res.accepted + res.rejected == 20
    assert 1 <= res.accepted <= 20 and res.rejected >= 1, s  # 20 at once cannot all fit in 1 running + 3 waiting
    assert res.completed == res.accepted and res.failed == 0, s
    assert res.rejected_without_retry_after == 0 and all(1 <= r <= 600 for r in res.retry_after_s), s
    assert len(res.submit_latency_s) == 20 and len(res.completion_s) == res.accepted
    assert res.health_latency_s and max(res.health_latency_s) < 5.0, s["health_latency_s"]
