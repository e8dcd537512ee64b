"""``sfumato cloak``: add a style cloak to images (files or folders)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfumato.commands import number, one_line_errors
from sfumato.config import PREVIEW_SIDE, PREVIEW_STEPS, PREVIEW_VIEWS  # noqa: F401  (the preview's size, steps, views)

#: Default largest image the protecting commands accept, in megapixels: sized so that one run stays within
#: 8 GB of memory (a 6000x4000 camera image fits); ``--max-megapixels`` raises it up to the library's guard.
DEFAULT_MAX_MEGAPIXELS = 25.0

HELP = "Add a style cloak (Glaze-style) to artworks: files or folders, written to OUT_DIR."

EPILOG = """examples:
  sfumato cloak painting.jpg --preview            # in seconds: what a model sees, and the verdict
  sfumato cloak painting.jpg -o protected/        # protected/painting.png + painting.sfumato.json
  sfumato cloak art/ -o protected/ --resume       # a folder (recursive); skip images already done
  sfumato cloak painting.png -o out/ --intensity high --ai-view

Each image ends with a verdict: whether a style judge still recognises your style in what a model
sees (the judge runs when reference paintings are found: sfumato config set corpus_dir FOLDER).
Model weights: --models-dir, $SFUMATO_MODELS_DIR, or once for all: sfumato config set models_dir FOLDER.
"""


def add_common_arguments(p: argparse.ArgumentParser, *, intensity_help: str | None = None,
                         preview: bool = False) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("paths", nargs="+", metavar="PATHS", help="image files or folders (recursive)")
    p.add_argument("-o", "--out", dest="out_dir", required=not preview, metavar="OUT_DIR",
                   help="output folder" + (" (with --preview: where the preview goes; default a temp folder)"
                                           if preview else ""))
    p.add_argument("--intensity", choices=["low", "default", "high"], default="default",
                   help=intensity_help or "perceptual budget: low (LPIPS 0.03, L∞ 16/255), default (0.05, 24/255), "
                                          "high (0.07, 32/255)")
    p.add_argument("--quality", choices=["fast", "default", "slow"], default="default",
                   help="search effort: fast, default or slow (more steps, higher resolution)")
    p.add_argument("--lpips", type=number(float, lo=0, hi=1, lo_open=True, hi_open=True), default=None,
                   help="override the LPIPS budget p, in (0, 1)")
    p.add_argument("--linf", type=number(float, lo=0, hi=255, lo_open=True, unit=" (1/255 units)"), default=None,
                   help="override the L∞ cap, in 1/255 units, (0, 255] (e.g. 8)")
    p.add_argument("--encoder", action="append", default=None, metavar="SPEC[=WEIGHT]",
                   help="encoder to target (repeatable): taef2, taesana, diffusers:<id or path>; default taef2")
    p.add_argument("--steps", type=number(int, lo=1, hi=100_000), default=None,
                   help="override the preset's optimisation steps (1-100000)")
    p.add_argument("--resolution", type=number(int, lo=64, hi=4096, unit=" px"), default=None,
                   help="override the long side (px) at which the encoder sees the image (a trainer's size)")
    p.add_argument("--seed", type=number(int, lo=0, hi=2**32 - 1), default=0,
                   help="random seed, 0..2^32-1 (recorded in the manifest)")
    p.add_argument("--format", choices=["PNG", "JPEG", "WEBP", "TIFF"], default=None,
                   help="output format (default: lossless: a PNG, JPEG or other input comes out as PNG, a WebP as "
                        "lossless WebP, a TIFF as TIFF; JPEG gives a JPEG at --jpeg-quality, with the budget "
                        "checked after compression)")
    p.add_argument("--jpeg-quality", type=number(int, lo=95, hi=100), default=98,
                   help="JPEG quality, 95-100 (default 98; 4:4:4 chroma always)")
    p.add_argument("--models-dir", default=None,
                   help="folder with model weights (else $SFUMATO_MODELS_DIR, else 'sfumato config set models_dir')")
    p.add_argument("--corpus-dir", default=None, metavar="DIR",
                   help="reference paintings for the style judge of the verdict (art128/ or art/<artist>/; else "
                        "$SFUMATO_CORPUS_DIR, the config's corpus_dir, or a corpus/ folder beside the models folder)")
    p.add_argument("--no-verdict", action="store_true",
                   help="skip the verdict after each image (AI view and judges, a few seconds)")
    p.add_argument("--ai-view", action="store_true", help="also write PNGs of what the encoder sees, before/after")
    p.add_argument("--max-megapixels", type=number(float, lo=0, hi=100, lo_open=True, unit=" MP"),
                   default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                   help=f"refuse larger images (default {DEFAULT_MAX_MEGAPIXELS:g} MP, which keeps a run within 8 GB "
                        "of memory; at most 100)")
    p.add_argument("--resume", action="store_true",
                   help="skip images whose manifest matches the source file (SHA-256); redo the others")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar or stage lines")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run each file as a task on a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (pip install "
                        "'sfumato[cluster]'; every node must see the files at the same paths; docs/deploy.md)")
    p.add_argument("--device", type=device_name, default=None, metavar="auto|cpu|cuda[:N]",
                   help="where to compute: cpu, cuda (a GPU; cuda:N picks one) or auto (cuda when PyTorch sees a GPU, "
                        "else cpu). Default: $SFUMATO_DEVICE, else cpu. With --cluster, cuda gives each task one GPU")
    p.add_argument("--rights", action=argparse.BooleanOptionalAction, default=None,
                   help="embed the IPTC/XMP 'do not train' reservation (plus:DataMining; creator and notice from "
                        "~/.config/sfumato/rights.toml or --rights-config). Default: off for cloak/poison, on for "
                        "protect")
    p.add_argument("--rights-config", default=None, metavar="FILE", help="TOML/JSON rights options")


def rights_from_args(args: argparse.Namespace, *, default: bool):  # noqa: ANN201
    """The ``xmp=`` argument of the file API for these options (None when rights are off)."""
    if not (args.rights if args.rights is not None else default):
        return None
    from sfumato.api import rights_xmp
    from sfumato.optout.xmp import load_rights_config

    return rights_xmp(load_rights_config(args.rights_config))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    add_common_arguments(p, preview=True)
    p.add_argument("--preview", action="store_true",
                   help=f"fast look first: cloak at {PREVIEW_SIDE} px with {PREVIEW_STEPS} steps, write "
                        "<stem>.preview.png (what a model sees, before | after) and print the verdict; no protected "
                        "file is written")
    p.add_argument("--target-style", default="auto", metavar="NAME|DIR",
                   help="'auto' (built-in style chosen as in Glaze), a built-in style name, or a folder of "
                        "reference images of the target style")
    p.add_argument("--eot", default="none", choices=["none", "light", "default", "strong"],
                   help="robustness: sample differentiable JPEG/resize/crop/noise/blur(/TAE) during optimisation")
    p.add_argument("--masking", action=argparse.BooleanOptionalAction, default=True,
                   help="adaptive masking (on by default): less perturbation on flat colour and smooth gradients, "
                        "so flat fills stay clean at 100%% zoom; --no-masking spreads the change evenly")
    p.add_argument("--perturbation-scale", type=number(float, lo=0.125, hi=1), default=1.0, metavar="S",
                   help="robustness: optimise the perturbation on a grid S times the work resolution, (0.125-1] "
                        "(0.5 = low-frequency, survives resizing and JPEG better; default 1)")
    p.add_argument("--no-anti-fingerprint", action="store_true",
                   help="use the same seed structure for every image (deterministic variant; easier to detect)")
    p.add_argument("--style-strength", type=number(float, lo=0, hi=1, lo_open=True), default=1.0,
                   help="how far the target's latent goes toward the style rendering, (0-1] (default 1)")
    p.add_argument("--target-renderer", default="gatys", choices=["gatys", "latent-wct", "img2img"],
                   help="how the target style rendering is made: neural style transfer (Gatys), latent WCT, or "
                        "a diffusers img2img pipeline (--target-model)")
    p.add_argument("--target-model", default="", metavar="FOLDER_OR_ID",
                   help="local diffusers text-to-image pipeline for --target-renderer img2img")
    p.add_argument("--target-overshoot", type=number(float, lo=1, hi=4), default=None,
                   help="aim the latent this many times as far as the target, [1-4] (default: the preset's)")


def parse_encoders(specs: list[str] | None) -> tuple[tuple[str, float], ...]:
    if not specs:
        return (("taef2", 1.0),)
    out = []
    for s in specs:
        name, _, w = s.partition("=")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            weight = float("nan")
        if not name.strip() or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"--encoder {s!r}: give SPEC or SPEC=WEIGHT with a positive weight, e.g. taef2=1.5")
        out.append((name, weight))
    return tuple(out)


def preset_options(args: argparse.Namespace) -> dict:
    """The preset and override options shared by cloak, poison and protect, for
    :func:`sfumato.plans.preset_config` (``--linf`` turned from 1/255 units into pixel units)."""
    return {"intensity": args.intensity, "quality": args.quality, "lpips": args.lpips,
            "linf": None if args.linf is None else args.linf / 255, "steps": args.steps,
            "resolution": args.resolution, "encoders": parse_encoders(args.encoder), "seed": args.seed}


def file_options(args: argparse.Namespace, item: Any = None) -> dict:
    """The output options of the file API (:func:`sfumato.api.cloak_file` and its siblings) for a planned
    batch ``item``: it replaces an existing output only where the plan said so (``item.overwrite``)."""
    return {"output_format": args.format, "jpeg_quality": args.jpeg_quality,
            "overwrite": args.overwrite if item is None else item.overwrite,
            "ai_view": args.ai_view, "models_dir": args.models_dir, "device": getattr(args, "device", None)}


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from sfumato.config import CloakConfig, Robustness
    from sfumato.plans import preset_config

    return preset_config(CloakConfig, **preset_options(args), target_style=args.target_style,
                         style_strength=args.style_strength, target_renderer=args.target_renderer,
                         target_model=args.target_model,
                         **({} if args.target_overshoot is None else {"target_overshoot": args.target_overshoot}),
                         robustness=Robustness(eot=args.eot, masking=args.masking,
                                               anti_fingerprint=not args.no_anti_fingerprint,
                                               perturbation_scale=args.perturbation_scale))


def print_summary(report, label: str) -> None:  # noqa: ANN001
    verdicts = [(getattr(d, "manifest", None) or {}).get("verdict") for d in report.done]
    counted = [v for v in verdicts if isinstance(v, dict)]
    tally = ""
    if counted:
        yes = sum(v.get("protected") is True for v in counted)
        no = sum(v.get("protected") is False for v in counted)
        tally = f" ({yes} protected, {no} not protected, {len(counted) - yes - no} cannot tell)"
    print(f"{label}: {len(report.done)} done{tally}, {len(report.skipped)} skipped (resume), "
          f"{len(report.failed)} failed, {report.seconds:.1f} s", file=sys.stderr)


def add_verdict(result: Any, source: Path, args: argparse.Namespace, progress: Any = None) -> dict[str, Any]:
    """Judge a written output and put the verdict into its manifest
    (:func:`sfumato.verification.plain.file_verdict`; ``{}`` with ``--no-verdict``)."""
    if getattr(args, "no_verdict", False):
        return {}
    from sfumato.verification.plain import file_verdict

    if progress is not None:
        progress.stage("checking what a model sees (AI view, judges)")
    return file_verdict(source, result.output, result.manifest, manifest_path=getattr(result, "manifest_path", None),
                        models_dir=args.models_dir, corpus_dir=getattr(args, "corpus_dir", None))


def _plain_model_error(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else "model weights not found"


def run_files(args: argparse.Namespace, label: str, process: Callable[[Any, Path, Any], Any]):  # noqa: ANN201
    """Run ``process(item, out_dir, progress)`` over the images of ``args.paths`` into ``args.out_dir`` and
    print the summary. Before any image is computed: the output folder is created and checked for writing
    (one-line error otherwise), temp files of an interrupted run are removed, and every output is planned
    (:func:`sfumato.plans.plan_outputs`: collisions, originals, resume). Then progress (the stage within
    each image: :class:`~sfumato.commands.progress.StageProgress`, handed to ``process``), one line per
    failure; ``None`` results are not counted as done. Missing or corrupt model weights stop the run at
    the first image (one error line, exit status 2). An output folder (or sub-folder) this run created
    and left empty is removed."""
    from sfumato.batch import SIDECAR_SUFFIXES, clean_out_dir, collect, prepare_out_dir, run_batch
    from sfumato.commands.progress import StageProgress
    from sfumato.models import ChecksumError, ModelNotFoundError
    from sfumato.plans import plan_outputs
    from sfumato.protections.device import DeviceUnavailable, resolve_device

    gpus = _cluster_gpus(args)
    if not getattr(args, "cluster", None):
        resolve_device(getattr(args, "device", None))  # no GPU where one is asked for: one line, before any work
    out_path = Path(args.out_dir)
    existed = _existing_dirs(out_path)
    out_dir = prepare_out_dir(args.out_dir)
    try:
        removed = clean_out_dir(out_dir)
        if removed:
            print(f"note: removed {len(removed)} temp file(s) left by an interrupted run in {out_dir}",
                  file=sys.stderr)
        items = collect(args.paths)
        sidecars = (SIDECAR_SUFFIXES if args.ai_view else ()) + (() if getattr(args, "no_caption", True) else (".txt",))
        plan_outputs(items, out_dir, output_format=args.format, resume=args.resume, overwrite=args.overwrite,
                     sidecars=sidecars, max_pixels=round(args.max_megapixels * 1_000_000))
        progress = StageProgress(quiet=args.quiet, total=sum(1 for i in items if i.error is None and not i.done))

        def one(item):  # noqa: ANN001, ANN202
            progress.start(item.source.name)
            try:
                return process(item, out_dir, progress)
            finally:
                progress.finish()

        try:
            if getattr(args, "cluster", None):  # each file a Ray task (sfumato.cluster.batch), same plan and report
                from functools import partial

                from sfumato.cluster.batch import run_batch_cluster

                run_batch = partial(run_batch_cluster, address=args.cluster, gpus=gpus)

                def one(item):  # noqa: ANN001, ANN202 (runs in a Ray worker: no stage display there)
                    return process(item, out_dir, None)
            report = run_batch(items, one, quiet=args.quiet, on_bar=progress.attach,
                               stop_on=(ModelNotFoundError, ChecksumError, DeviceUnavailable))
        except (ModelNotFoundError, ChecksumError) as e:
            msg = _plain_model_error(e)
            if isinstance(e, ChecksumError):
                msg = f"model weights damaged: {msg}"
            raise ModelNotFoundError(f"{msg} (stopped: every image needs it)") from None
        report.done = [d for d in report.done if d is not None]
        print_summary(report, label)
        return report
    finally:
        _remove_new_empty_dirs(out_path, existed)


def device_name(text: str) -> str:
    """argparse ``type=`` of ``--device``: auto, cpu, cuda or cuda:N (a one-line usage error otherwise)."""
    from sfumato.protections.device import parse_device

    try:
        return parse_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _cluster_gpus(args: argparse.Namespace) -> float:
    """GPUs each Ray task of a ``--cluster`` batch reserves: one with ``--device cuda``, else none (a task
    then computes on the CPU, as Ray hides the GPUs from it)."""
    device = getattr(args, "device", None)
    if not getattr(args, "cluster", None) or not device or not device.startswith("cuda"):
        return 0.0
    if device != "cuda":
        raise ValueError(f"--device {device} with --cluster: use --device cuda (Ray gives each task its own GPU)")
    return 1.0


def _existing_dirs(root: Path) -> set[str]:
    """The folders under ``root`` (and ``root``) that exist now (none when it does not)."""
    import os

    if not root.is_dir():
        return set()
    return {os.path.realpath(d) for d, _, _ in os.walk(root)}


def _remove_new_empty_dirs(root: Path, existed: set[str]) -> None:
    """Remove the folders under ``root`` (and ``root``) that did not exist before the run and are empty."""
    import os

    if not root.is_dir():
        return
    for d, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
        if os.path.realpath(d) not in existed:
            try:
                os.rmdir(d)  # only succeeds on an empty folder
            except OSError:
                pass


def describe_cloak(m: dict[str, Any], lpips_net: str = "alex") -> str:
    """The figures of one cloaked image, after its verdict."""
    lat = next(iter(m["latent"].values()))
    return (f"lpips={m['achieved'][f'lpips_{lpips_net}']:.4f} linf={m['achieved']['linf'] * 255:.1f}/255 "
            f"target={m['target']['style']} latent_reduction={lat['relative_reduction']:.1%} "
            f"{m['timing_s']['file_total']:.1f}s")


def print_result(source: Path, result: Any, verdict: dict[str, Any], figures: str) -> None:
    """One image's lines on standard output: where it went, its verdict, its figures (written around the
    progress bar, which shares the terminal)."""
    from tqdm import tqdm

    lines = [f"{source} -> {result.output}"] + ([f"  verdict: {verdict['sentence']}"] if verdict else [])
    tqdm.write("\n".join([*lines, f"  {figures}"]), file=sys.stdout)


def _preview(args: argparse.Namespace) -> int:
    """``--preview``: a small, fast cloak of each file; writes only ``<stem>.preview.png``."""
    import os

    # OpenMP threads that spin while waiting cost 10-50x on a busy machine (docs/benchmarks.md, issue 20); only
    # effective when torch is not loaded yet, as from the command line
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import tempfile

    import sfumato.io as sio
    from sfumato.commands.progress import StageProgress
    from sfumato.io.atomic import write_png_atomic

    files = [Path(p) for p in args.paths]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: --preview takes image files, not folders or missing paths")
    if args.out_dir:
        out_dir = Path(args.out_dir)
        existed = _existing_dirs(out_dir)
        from sfumato.batch import prepare_out_dir

        prepare_out_dir(out_dir)
    else:
        out_dir = Path(tempfile.mkdtemp(prefix="sfumato-preview-"))
        existed = set()
    from sfumato.api import preview, preview_config

    cfg = preview_config(config_from_args(args), side=args.resolution, steps=args.steps)
    side = int(cfg.effort.resolution)
    progress = StageProgress(quiet=args.quiet, total=len(files))
    failed = 0
    try:
        for f in files:
            progress.start(f.name)
            try:
                pv = preview(sio.load_image(f), cfg, models_dir=args.models_dir, corpus_dir=args.corpus_dir,
                             judges=not args.no_verdict, progress=progress)
                verdict = pv.verdict
                sheet = _side_by_side(pv.before, pv.after)
                path = out_dir / f"{f.stem}.preview.png"
                write_png_atomic(path, sheet)
            except (ModuleNotFoundError, *_model_errors()):
                raise
            except Exception as e:
                from sfumato.batch import plain_error

                failed += 1
                print(f"error: {f}: {plain_error(e)}", file=sys.stderr)
                continue
            finally:
                progress.finish()
            lat = next(iter(pv.latent.values()), {}).get("relative_reduction")
            print(f"{f} -> {path}  (what a model sees: before | after, at {side} px)")
            print(f"  verdict (preview, {cfg.effort.steps} steps at {side} px, that view only; the full run "
                  f"works over trainer views): {verdict['sentence']}")
            print(f"  target={pv.target.get('style')} latent_reduction="
                  f"{'-' if lat is None else format(lat, '.1%')} "
                  f"{float(pv.timing_s.get('total', 0.0)):.1f}s")
    finally:
        if args.out_dir:
            _remove_new_empty_dirs(out_dir, existed)
    print(f"preview: {len(files) - failed} done, {failed} failed; nothing protected was written (the full run: "
          f"sfumato cloak {' '.join(str(f) for f in files)} -o OUT_DIR)", file=sys.stderr)
    return 1 if failed else 0


def _model_errors() -> tuple[type[BaseException], ...]:
    from sfumato.models import ChecksumError, ModelNotFoundError

    return (ModelNotFoundError, ChecksumError)


def _side_by_side(left: Any, right: Any, gap: int = 8) -> Any:
    """Two images side by side on white, bottom-aligned, with ``gap`` px between them."""
    import numpy as np

    h = max(left.shape[0], right.shape[0])
    sheet = np.ones((h, left.shape[1] + gap + right.shape[1], 3), dtype=np.float32)
    sheet[h - left.shape[0]:, :left.shape[1]] = left
    sheet[h - right.shape[0]:, left.shape[1] + gap:] = right
    return sheet


def _run(args: argparse.Namespace) -> int:
    from sfumato.api import cloak_file

    if args.preview:
        return _preview(args)
    if not args.out_dir:
        raise ValueError("give the output folder: -o OUT_DIR (or --preview for a quick look without writing)")
    cfg = config_from_args(args)
    xmp = rights_from_args(args, default=False)

    def work(item, out_dir: Path, progress):  # noqa: ANN001, ANN202
        r = cloak_file(item.source, out_dir, cfg, rel_stem=item.rel_stem, xmp=xmp, progress=progress,
                       **file_options(args, item))
        v = add_verdict(r, item.source, args, progress)
        print_result(item.source, r, v, describe_cloak(r.manifest, cfg.budget.lpips_net))
        return r

    return run_files(args, "cloak", work).exit_code


run = one_line_errors(_run)
