"""Load test of the Sfumato web server: N concurrent clients each submit one job, on loopback.

Each client POSTs one small image to ``/v1/jobs`` at the same moment (a barrier), then, if accepted,
polls ``GET /v1/jobs/{id}`` until the job is done. Reported: accepted / rejected (HTTP 429, which must
carry ``Retry-After``) / completed / failed counts, any 5xx or other unexpected status, and p50/p95/p99
of the submit latency and of the job completion time (submit to done).

By default the script starts its own server in this process (a temporary data folder, one worker, a
small queue and a tiny search effort so jobs take seconds); ``--url`` targets a running server instead.

    python benchmarks/load_test.py --clients 20 --max-queue 3
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --token "$SFUMATO_TOKEN"

Needs the real weights (``$SFUMATO_MODELS_DIR``, or ``../shared/models`` beside the checkout) and an
image (``--image``; default: a painting from ``../shared/corpus`` resized to ``--size`` pixels).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
DEFAULT_IMAGE = SHARED / "corpus" / "art" / "claude_monet" / "ace_Impressionism_claude-monet_0.png"


@dataclass
class LoadResult:
    clients: int
    accepted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    server_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    rejected_without_retry_after: int = 0
    retry_after_s: list[int] = field(default_factory=list)
    submit_latency_s: list[float] = field(default_factory=list)
    completion_s: list[float] = field(default_factory=list)
    health_latency_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def percentiles(self, values: list[float]) -> dict[str, float | None]:
        return {f"p{q}": _percentile(values, q) for q in (50, 95, 99)}

    def summary(self) -> dict:
        d = asdict(self)
        d["submit_latency_s"] = self.percentiles(self.submit_latency_s)
        d["completion_s"] = self.percentiles(self.completion_s)
        d["health_latency_s"] = {**self.percentiles(self.health_latency_s),
                                 "max": round(max(self.health_latency_s), 4) if self.health_latency_s else None}
        d["retry_after_s"] = sorted(set(self.retry_after_s))
        return d


def _percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (``numpy.percentile``'s default method)."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return round(v[lo] + (v[hi] - v[lo]) * (k - lo), 4)


def small_png(path: Path, size: int) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return buf.getvalue()


def run_load(url: str, image: bytes, *, clients: int = 20, token: str | None = None,
             options: dict[str, str] | None = None, job_timeout_s: float = 600.0,
             poll_s: float = 0.5) -> LoadResult:
    """``clients`` threads submit one job each at once and follow it to the end."""
    import httpx

    res = LoadResult(clients=clients)
    lock = threading.Lock()
    barrier = threading.Barrier(clients)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = {"quality": "fast", "target_style": "mosaic", "ai_view": "false", **(options or {})}

    def note_status(r: httpx.Response, expected: tuple[int, ...]) -> None:
        if r.status_code >= 500:
            with lock:
                res.server_errors += 1
                res.unexpected.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")
        elif r.status_code not in expected:
            with lock:
                res.unexpected.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")

    def client(i: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120.0) as c:
            barrier.wait()
            t0 = time.perf_counter()
            r = c.post("/v1/jobs", data=data, files=[("images", (f"client-{i}.png", image, "image/png"))])
            dt = time.perf_counter() - t0
            note_status(r, (202, 429))
            with lock:
                res.submit_latency_s.append(dt)
            if r.status_code == 429:
                ra = r.headers.get("Retry-After")
                with lock:
                    res.rejected += 1
                    if ra is None or not ra.isdigit():
                        res.rejected_without_retry_after += 1
                    else:
                        res.retry_after_s.append(int(ra))
                return
            if r.status_code != 202:
                return
            with lock:
                res.accepted += 1
            job_url = r.json()["url"]
            deadline = time.monotonic() + job_timeout_s
            while time.monotonic() < deadline:
                g = c.get(job_url)
                note_status(g, (200,))
                if g.status_code == 200 and g.json()["status"] in ("done", "failed"):
                    with lock:
                        if g.json()["status"] == "done":
                            res.completed += 1
                            res.completion_s.append(time.perf_counter() - t0)
                        else:
                            res.failed += 1
                            res.unexpected.append(f"job {job_url} failed: {g.json()['error'] or g.json()['images']}")
                    return
                time.sleep(poll_s)
            with lock:
                res.unexpected.append(f"job {job_url} not finished after {job_timeout_s:.0f} s")

    finished = threading.Event()

    def probe() -> None:
        """How long GET /v1/health takes while jobs run: the event loop must stay responsive."""
        with httpx.Client(base_url=url, timeout=60.0) as c:
            while not finished.wait(0.25):
                t = time.perf_counter()
                r = c.get("/v1/health")
                with lock:
                    res.health_latency_s.append(time.perf_counter() - t)
                note_status(r, (200,))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), name=f"load-client-{i}") for i in range(clients)]
    prober = threading.Thread(target=probe, name="load-health-probe")
    for t in threads:
        t.start()
    prober.start()
    for t in threads:
        t.join()
    finished.set()
    prober.join()
    res.wall_s = round(time.perf_counter() - t0, 3)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="a running server (default: start one in this process)")
    p.add_argument("--token", default=os.environ.get("SFUMATO_TOKEN"), help="API token of --url")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--max-queue", type=int, default=3, help="queue bound of the server started here")
    p.add_argument("--workers", type=int, default=1, help="workers of the server started here")
    p.add_argument("--steps", type=int, default=2, help="search steps of the server started here")
    p.add_argument("--resolution", type=int, default=64, help="encoder resolution of the server started here")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    p.add_argument("--size", type=int, default=64, help="long side the image is reduced to (pixels)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = p.parse_args(argv)

    image = small_png(args.image, args.size)
    if args.url:
        res = run_load(args.url, image, clients=args.clients, token=args.token)
    else:
        if "SFUMATO_MODELS_DIR" not in os.environ and (SHARED / "models").is_dir():
            os.environ["SFUMATO_MODELS_DIR"] = str(SHARED / "models")
        from sfumato.config import Effort
        from sfumato.server import ServerSettings
        from sfumato.server.app import serve_in_thread

        with tempfile.TemporaryDirectory(prefix="sfumato-load-") as d:
            settings = ServerSettings(data_dir=Path(d), port=0, workers=args.workers, max_queue=args.max_queue,
                                      effort_override=Effort(steps=args.steps, resolution=args.resolution,
                                                             calibration_steps=2))
            with serve_in_thread(settings) as url:
                res = run_load(url, image, clients=args.clients)
    s = res.summary()
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"clients={s['clients']} accepted={s['accepted']} rejected(429)={s['rejected']} "
              f"completed={s['completed']} failed={s['failed']} 5xx={s['server_errors']} "
              f"429-without-Retry-After={s['rejected_without_retry_after']} Retry-After={s['retry_after_s']} "
              f"wall={s['wall_s']:.1f}s")
        for name in ("submit_latency_s", "completion_s", "health_latency_s"):
            q = s[name]
            print(f"{name}: " + " ".join(f"{k}={v:.3f}" if v is not None else f"{k}=n/a" for k, v in q.items()))
        for u in s["unexpected"]:
            print(f"unexpected: {u}")
    ok = (res.server_errors == 0 and not res.unexpected and res.completed == res.accepted
          and res.rejected_without_retry_after == 0 and res.accepted + res.rejected == res.clients)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
