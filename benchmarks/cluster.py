"""Images per hour of the server: in-process runner vs Ray with 1 worker vs Ray with 2 workers, side by
side in one run, plus Ray's per-task overhead.

Each configuration starts a server in this process (``create_app`` behind FastAPI's test client, the
real HTTP API, a temporary data folder), warms it up with one image per worker (model loading, excluded),
then submits ``--images`` one-image jobs of a real cloak at a tiny effort and times them from the first
submit to the last ``done``. Every worker uses 1 PyTorch thread; the Ray configurations start a local Ray
with as many CPUs as workers. Per-task overhead is reported two ways: the round trip of an empty Ray
task (sequential ``ray.get(noop.remote())``), and the difference per image between Ray with 1 worker and
the in-process runner (the same sequential work, so what Ray adds to one image: scheduling, argument
and result transfer, the polling of the server thread).

    python benchmarks/cluster.py --images 8 --size 256 --json runs/cluster.json
    python benchmarks/cluster.py --fault-run 20          # + 20 jobs on Ray, 2 workers, a worker killed twice

The in-process runner is measured first and again last (the machine may be shared: the spread of the two
is the noise to read the other rows against). ``--fault-run N`` submits N one-image jobs to Ray with 2
workers and kills (SIGKILL) a worker process running an image twice during the run; it reports how many
jobs ended done, whether every manifest is within budget, and the count of duplicate or partial files.

Needs the real weights (``$SFUMATO_MODELS_DIR``, or ``../shared/models``) and ``sfumato[web,cluster]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))


def _images(n: int, size: int, seed: int = 0) -> list[bytes]:
    """``n`` different PNGs of ``size`` px: crops of corpus paintings when ``../shared`` has them, else noise."""
    import numpy as np
    from PIL import Image

    art = sorted((SHARED / "corpus" / "art").rglob("*.png"))[:n] if (SHARED / "corpus" / "art").is_dir() else []
    out = []
    for i in range(n):
        if art:
            with Image.open(art[i % len(art)]) as im:
                a = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
            a = np.roll(a, i * 7, axis=1)
        else:
            a = (np.random.default_rng(seed + i).random((size, size, 3)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _task_pids(title: str = "ray::sfumato-image-") -> list[int]:
    """Process ids of Ray workers running an image now (their process title names the task)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(title.encode()):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _kill_workers(times: int, log: list[dict[str, Any]]) -> None:
    """Kill (SIGKILL) a worker running an image ``times`` times, a few seconds apart."""
    import signal

    for _ in range(times):
        deadline = time.monotonic() + 120
        while not (pids := _task_pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pids:
            time.sleep(0.5)  # mid-task
            try:
                os.kill(pids[0], signal.SIGKILL)
                log.append({"killed_pid": pids[0], "t": round(time.time(), 2)})
            except ProcessLookupError:
                pass
        time.sleep(3.0)


def _run_server(label: str, images: list[bytes], warm: list[bytes], *, executor: str, workers: int,
                effort: dict[str, Any], models_dir: Path | None, kill_workers: int = 0) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from sfumato.config import Effort
    from sfumato.server import ServerSettings
    from sfumato.server.app import create_app

    with tempfile.TemporaryDirectory(prefix="sfumato-bench-") as d:
        settings = ServerSettings(data_dir=Path(d), workers=workers, executor=executor, max_queue=len(images) + 8,
                                  effort_override=Effort.from_dict(effort), models_dir=models_dir,
                                  min_free_bytes=0)
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            def submit(png: bytes, i: int) -> str:
                r = client.post("/v1/jobs", data={"target_style": "mosaic", "ai_view": "false"},
                                files=[("images", (f"img-{i}.png", png, "image/png"))])
                assert r.status_code == 202, r.text
                return str(r.json()["id"])

            def wait(ids: list[str]) -> list[dict]:
                out = []
                for j in ids:
                    while (v := client.get(f"/v1/jobs/{j}").json())["status"] not in ("done", "failed"):
                        time.sleep(0.05)
                    out.append(v)
                return out

            bad = [v for v in wait([submit(p, i) for i, p in enumerate(warm)]) if v["status"] != "done"]
            assert not bad, f"warm-up failed: {bad[0]['images'][0]['error']}"
            t0 = time.perf_counter()
            ids = [submit(p, i) for i, p in enumerate(images)]
            kills: list[dict[str, Any]] = []
            if kill_workers:
                import threading

                killer = threading.Thread(target=_kill_workers, args=(kill_workers, kills))
                killer.start()
            views = wait(ids)
            wall = time.perf_counter() - t0
            if kill_workers:
                killer.join()
            files = {j: sorted(p.name for p in (Path(d) / "jobs" / j / "out").iterdir()) for j in ids}
    failed = [v["images"][0]["error"] for v in views if v["status"] != "done"]
    done = [v for v in views if v["status"] == "done"]
    within = all(v["images"][0]["manifest"]["within_budget"] for v in done)
    per_image = [v["images"][0]["seconds"] for v in done] or [float("nan")]
    # each job's out/ must hold exactly its output and manifest: anything else is a duplicate or a partial file
    extra = sum(len(names) - 2 for names in files.values() if len(names) > 2) + sum(
        1 for names in files.values() for n in names if n.endswith(".tmp"))
    row = {"config": label, "executor": executor, "workers": workers, "images": len(images),
           "wall_s": round(wall, 2), "images_per_hour": round(len(images) / wall * 3600, 1),
           "mean_image_s": round(sum(per_image) / len(per_image), 3), "all_within_budget": within,
           "done": len(done), "failed": failed, "duplicate_or_partial_files": extra}
    if kill_workers:
        row["killed"] = kills
    return row


def _noop_overhead(n: int = 200) -> float:
    import ray

    @ray.remote(num_cpus=1)
    def noop(x: int) -> int:
        return x

    ray.get(noop.remote(0))  # a worker started
    t0 = time.perf_counter()
    for i in range(n):
        ray.get(noop.remote(i))
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="timed one-image jobs per configuration (default 8)")
    ap.add_argument("--size", type=int, default=256, help="image side in px (default 256)")
    ap.add_argument("--effort", default='{"steps": 4, "resolution": 128, "calibration_steps": 2}',
                    help="the search effort every job uses (JSON; tiny by default)")
    ap.add_argument("--models-dir", default=None, help="weights folder (else $SFUMATO_MODELS_DIR or ../shared/models)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--fault-run", type=int, default=0, metavar="N",
                    help="also: N jobs on Ray with 2 workers, one worker killed twice during the run")
    a = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import torch

    torch.set_num_threads(1)
    models = Path(a.models_dir or os.environ.get("SFUMATO_MODELS_DIR") or SHARED / "models")
    effort = json.loads(a.effort)
    images, warm = _images(a.images, a.size), _images(2, a.size, seed=1000)
    def local(label: str) -> dict[str, Any]:
        return _run_server(label, images, warm[:1], executor="local", workers=1, effort=effort, models_dir=models)

    rows = [local("in-process, 1 worker")]
    noop_s = None
    fault = None
    for n in (1, 2):
        ray.init(num_cpus=n, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
        try:
            rows.append(_run_server(f"Ray, {n} worker{'s' if n > 1 else ''}", images, warm[:n], executor="ray",
                                    workers=n, effort=effort, models_dir=models))
            if n == 1:
                noop_s = _noop_overhead()
            if n == 2 and a.fault_run:
                fault = _run_server("fault run: Ray, 2 workers", _images(a.fault_run, a.size, seed=500), warm[:2],
                                    executor="ray", workers=2, effort=effort, models_dir=models, kill_workers=2)
        finally:
            ray.shutdown()
    rows.append(local("in-process, 1 worker (again)"))
    local_wall = (rows[0]["wall_s"] + rows[-1]["wall_s"]) / 2
    overhead = {"empty_task_round_trip_s": round(noop_s or 0.0, 4),
                "per_image_vs_in_process_s": round((rows[1]["wall_s"] - local_wall) / a.images, 3)}
    print(f"{'configuration':24} {'images':>6} {'wall s':>8} {'img/h':>8} {'s/img (worker)':>15} within budget")
    for r in rows:
        print(f"{r['config']:24} {r['images']:>6} {r['wall_s']:>8.1f} {r['images_per_hour']:>8.0f} "
              f"{r['mean_image_s']:>15.2f} {r['all_within_budget']}")
    print(f"Ray per-task overhead: empty task round trip {overhead['empty_task_round_trip_s'] * 1000:.1f} ms; "
          f"per image vs in-process (mean of its two runs) {overhead['per_image_vs_in_process_s']:+.2f} s")
    if fault is not None:
        print(f"fault run: {fault['done']}/{fault['images']} done, {len(fault['killed'])} worker(s) killed, all "
              f"within budget: {fault['all_within_budget']}, duplicate or partial files: "
              f"{fault['duplicate_or_partial_files']}, failed: {fault['failed'] or 'none'}")
    result = {"rows": rows, "overhead": overhead, "fault_run": fault, "size": a.size, "effort": effort, "cpus": os.cpu_count(),
              "ray": ray.__version__, "torch": torch.__version__}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
