"""The first image's fixed cost and ``cloak --preview`` (issue 20): where a first run's time goes.

Runs the real ``sfumato cloak`` command (:func:`sfumato.cli.main`, in a fresh Python process per scenario,
as an artist's first run is) with the shared weights and corpus, and times its stages by wrapping the
functions that do them (exclusive times: a stage nested in another is counted once, in the inner one):

* ``cloak`` on two 128 px art128 paintings in one run, with empty judge and style caches (a first run ever) and
  again with the caches that run left (a later run). The first image's fixed cost is its time minus the
  second image's (the second pays no one-off loads).
* ``cloak --preview`` on a 1024x1024 painting (a centre square of a large ``art/*/ace_*`` painting,
  resized, written to a temp folder), cold and warm: the process's wall time from start to exit (the
  verdict is the last thing it prints).

Usage: ``python benchmarks/first_image.py [--threads 2] [-o report.md]``. Nothing is written into the
corpus or the models folder; outputs go to a temp folder, removed at the end.
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared")).resolve()
PAINTINGS_128 = ("art128/vincent_van_gogh/vincent_van_gogh_107.jpg", "art128/claude_monet/claude_monet_10.jpg")
LARGE = "art/vincent_van_gogh/ace_Post_Impressionism-van-gogh_17.png"

#: (module, function, stage name): the functions timed in the child process. Patched before anything else
#: imports them, so a ``from module import name`` elsewhere gets the timed one.
STAGES = (
    ("sfumato.encoders.cache", "cached_encoder", "encoder load (TAEF2)"),
    ("sfumato.metrics.lpips", "load_lpips", "LPIPS load"),
    ("sfumato.targets.styles", "resolve_style_option", "built-in styles"),
    ("sfumato.targets.style_target", "style_distances", "target: style distances"),
    ("sfumato.targets.gatys", "gatys_transfer", "target: Gatys rendering"),
    ("sfumato.targets.style_target", "render_target", "target: other (vetting)"),
    ("sfumato.optimise.perturb", "perturb_toward", "optimisation (steps, calibration)"),
    ("sfumato.api", "_save_within_budget", "save (budget on the saved file)"),
    ("sfumato.verification.plain", "style_judge_for", "judge: load or train"),
    ("sfumato.encoders.views", "ai_view", "verdict: AI views"),
    ("sfumato.verification.plain", "image_verdict", "verdict: other"),
)


# --- child: one scenario in a fresh process -----------------------------------------------------------------

class Clock:
    """Exclusive stage times per image (index 0: before the first image starts)."""

    def __init__(self) -> None:
        self.image = 0
        self.times: list[dict[str, float]] = [{}]
        self.stack: list[list[float]] = []  # [start, child time] per open stage
        self.steps: list[dict[str, float]] = [{}]

    def add(self, name: str, dt: float) -> None:
        self.times[self.image][name] = self.times[self.image].get(name, 0.0) + dt

    def wrap(self, fn: Any, name: str) -> Any:
        import functools

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            self.stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*a, **k)
            finally:
                t0, inner = self.stack.pop()
                dt = time.perf_counter() - t0
                self.add(name, dt - inner)
                if self.stack:
                    self.stack[-1][1] += dt

        if hasattr(fn, "cache_clear"):
            timed.cache_clear = fn.cache_clear  # type: ignore[attr-defined]
        return timed


def child(scenario: str, args: list[str], threads: int) -> None:
    import importlib

    import torch

    torch.set_num_threads(threads)
    clock = Clock()
    for mod, fn, name in STAGES:
        m = importlib.import_module(mod)
        setattr(m, fn, clock.wrap(getattr(m, fn), name))
    from sfumato.commands.progress import StageProgress

    start, call = StageProgress.start, StageProgress.__call__
    t_image: list[float] = []

    def timed_start(self: StageProgress, name: str) -> None:
        clock.image += 1
        clock.times.append({})
        clock.steps.append({})
        t_image.append(time.perf_counter())
        start(self, name)

    def timed_call(self: StageProgress, step: int, steps: int) -> None:
        s = clock.steps[clock.image]
        s.setdefault("first", time.perf_counter())
        s["last"], s["n"] = time.perf_counter(), step
        call(self, step, steps)

    StageProgress.start, StageProgress.__call__ = timed_start, timed_call  # type: ignore[method-assign]
    t_imports = time.perf_counter() - T_PROCESS
    from sfumato.cli import main

    t_cli = time.perf_counter()
    rc = main(args)
    t_end = time.perf_counter()
    bounds = [*t_image, t_end]
    images = []
    for i in range(1, clock.image + 1):
        stages = dict(clock.times[i])
        total = bounds[i] - bounds[i - 1]
        images.append({"total": total, "stages": stages, "other": total - sum(stages.values()),
                       "steps": clock.steps[i]})
    print("BENCH " + json.dumps({"scenario": scenario, "rc": rc, "imports": t_imports,
                                 "before_first": (t_image[0] if t_image else t_end) - t_cli,
                                 "setup_stages": clock.times[0], "images": images,
                                 "process": t_end - T_PROCESS}))


# --- parent -------------------------------------------------------------------------------------------------

def make_large(out: Path, side: int = 1024) -> Path:
    from PIL import Image

    with Image.open(SHARED / "corpus" / LARGE) as im:
        im = im.convert("RGB")
        s = min(im.size)
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        im.crop((left, top, left + s, top + s)).resize((side, side), Image.LANCZOS).save(out)
    return out


def run_child(scenario: str, cli_args: list[str], *, threads: int, judge_cache: Path,
              extra_env: dict[str, str], src: str | None) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "SFUMATO_JUDGE_CACHE_DIR": str(judge_cache), "SFUMATO_ALLOW_DOWNLOAD": "0",
           "SFUMATO_CONFIG": str(judge_cache.parent / "config.json"),
           "SFUMATO_STYLE_CACHE_DIR": str(judge_cache.parent / "styles"), **extra_env}
    if src:  # run another checkout's code (e.g. the starting commit's, for before/after figures)
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--child", scenario, "--threads", str(threads), "--", *cli_args],
                       env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        raise SystemExit(f"{scenario}: no result (exit {p.returncode})")
    r = json.loads(line[6:])
    r["wall"] = wall
    r["verdict"] = next((ln.strip() for ln in p.stdout.splitlines() if "verdict" in ln), "")
    return r


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def report(results: dict[str, dict[str, Any]], *, threads: int, cmd: str, steps: int,
           env: dict[str, str]) -> list[str]:
    try:
        load = os.getloadavg()
        load_s = f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the end"
    except OSError:
        load_s = "load unknown"
    import torch

    lines = [f"Command: `{cmd}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}; "
             f"torch {torch.__version__}; threads: OMP_NUM_THREADS={threads}, torch.set_num_threads({threads}); "
             f"{load_s}; extra environment: {env or 'none'}.", ""]
    if "cold" in results:
        lines += cloak_table(results, steps)
    if "preview-cold" in results:
        lines += preview_table(results)
    return lines


def cloak_table(results: dict[str, dict[str, Any]], steps: int) -> list[str]:
    cols = [("cold", 0), ("cold", 1), ("warm", 0), ("warm", 1)]
    names = [n for _, _, n in STAGES]
    lines = [f"`sfumato cloak A.jpg B.jpg -o OUT --steps {steps}` (two 128 px art128 paintings, default preset but "
              f"{steps} steps), seconds per "
              "stage (exclusive); cold = empty judge and style caches (first run ever), warm = the caches it left:", "",
              "| stage | cold, image 1 | cold, image 2 | warm, image 1 | warm, image 2 |", "|---|---|---|---|---|"]
    row = ["python + imports"] + [fmt(results[c]["imports"] + results[c]["before_first"]) if i == 0 else "–"
                                  for c, i in cols]
    lines.append("| " + " | ".join(row) + " |")
    for n in names:
        vals = [results[c]["images"][i]["stages"].get(n) for c, i in cols]
        if any(v is not None and v >= 0.05 for v in vals):
            lines.append(f"| {n} | " + " | ".join(fmt(v) for v in vals) + " |")
    steps = []
    for c, i in cols:
        s = results[c]["images"][i]["steps"]
        steps.append(f"{s['last'] - s['first']:.1f} ({int(s['n'])} steps)" if "first" in s else "–")
    lines.append("| (of optimisation: step 1 to last step) | " + " | ".join(steps) + " |")
    lines.append("| other | " + " | ".join(fmt(results[c]["images"][i]["other"]) for c, i in cols) + " |")
    lines.append("| **image total** | " + " | ".join(f"**{fmt(results[c]['images'][i]['total'])}**"
                                                   for c, i in cols) + " |")
    for c in ("cold", "warm"):
        im = results[c]["images"]
        fixed = results[c]["imports"] + results[c]["before_first"] + im[0]["total"] - im[1]["total"]
        lines.append(f"| first image's fixed cost, {c} (imports + image 1 − image 2) | {fmt(fixed)} | | | |")
    return lines


def preview_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "`sfumato cloak PAINTING_1024.png --preview` (1024x1024), process wall time from start to exit "
              "(the verdict is its last line):", "",
              "| judge cache | wall s | of it: imports | judge load/train | built-in styles | target | optimisation | "
              "verdict line |", "|---|---|---|---|---|---|---|---|"]
    for c in ("preview-cold", "preview-warm"):
        r = results[c]
        st = r["images"][0]["stages"] if r["images"] else {}
        tgt = sum(v for k, v in st.items() if k.startswith("target"))
        lines.append(f"| {c.split('-')[1]} | **{r['wall']:.1f}** | {r['imports']:.1f} | "
                     f"{fmt(st.get('judge: load or train'))} | {fmt(st.get('built-in styles'))} | {tgt:.1f} | "
                     f"{fmt(st.get('optimisation (steps, calibration)'))} | {r['verdict'][:90]} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", default=None, help="also write the markdown report here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["cloak", "preview"], default=None, help="run only these scenarios")
    ap.add_argument("--steps", type=int, default=8,
                    help="--steps of the two-painting cloak run (default 8: the fixed cost does not depend on it; "
                         "the preview keeps its own)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment of the measured processes (e.g. OMP_WAIT_POLICY=PASSIVE)")
    ap.add_argument("--json", action="store_true", help="print the raw stage times as JSON instead of the report")
    ap.add_argument("--src", default=None, help="a src/ folder to run instead of the installed sfumato")
    ap.add_argument("cli", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.cli, a.threads)
        return 0
    models, corpus = SHARED / "models", SHARED / "corpus"
    if not models.is_dir():
        raise SystemExit(f"{SHARED}: the shared models and corpus are needed (set SFUMATO_SHARED_DIR)")
    tmp = Path(tempfile.mkdtemp(prefix="sfumato-first-image-"))
    try:
        common = ["--models-dir", str(models), "--corpus-dir", str(corpus)]
        extra_env = dict(e.split("=", 1) for e in a.env)
        kw = {"threads": a.threads, "judge_cache": tmp / "state" / "judges", "extra_env": extra_env, "src": a.src}
        large = make_large(tmp / "painting_1024.png")
        results: dict[str, dict[str, Any]] = {}
        cache = tmp / "state" / "judges"
        if a.only in (None, "cloak"):
            for c in ("cold", "warm"):
                if c == "cold":
                    shutil.rmtree(cache.parent, ignore_errors=True)
                files = [str(corpus / p) for p in PAINTINGS_128]
                results[c] = run_child(c, ["cloak", *files, "-o", str(tmp / f"out-{c}"), "--steps", str(a.steps),
                                           *common], **kw)
                print(f"{c}: {results[c]['wall']:.1f} s", file=sys.stderr)
        if a.only in (None, "preview"):
            for c in ("preview-cold", "preview-warm"):
                if c == "preview-cold":
                    shutil.rmtree(cache.parent, ignore_errors=True)
                results[c] = run_child(c, ["cloak", str(large), "--preview", "-o", str(tmp / f"out-{c}"), *common],
                                       **kw)
                print(f"{c}: {results[c]['wall']:.1f} s; {results[c]['verdict']}", file=sys.stderr)
        cmd = " ".join(["python benchmarks/first_image.py", *sys.argv[1:]])
        import torch
        from _common import host_probe

        torch.set_num_threads(a.threads)
        probe = host_probe(models)  # after the runs, in this process: the host's speed, for other hosts' figures
        if a.json:
            results["host_probe"] = probe  # type: ignore[assignment]
            print(json.dumps(results, indent=1))
            return 0
        lines = report(results, threads=a.threads, cmd=cmd, steps=a.steps, env=extra_env) + ["", probe + "."]
        from _common import emit

        return emit(lines, a.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
