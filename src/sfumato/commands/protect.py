"""``sfumato protect``: style cloak + concept poison in one optimisation under one budget."""

from __future__ import annotations

import argparse

from sfumato.commands import number, one_line_errors

HELP = "Cloak and poison in one pass (one perceptual budget), instead of running two tools in sequence."

EPILOG = """examples:
  sfumato protect art/ -o out/ --concept dog --target cat --anchors photos/cats

Each image ends with a verdict for both aims (style and concept); it says protected only when both took.
The IPTC/XMP 'do not train' reservation is embedded by default (--no-rights to skip).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sfumato.commands.cloak import add_common_arguments
    from sfumato.commands.poison import add_poison_arguments

    p.epilog = EPILOG
    add_common_arguments(p, intensity_help="one budget for both: low (LPIPS 0.05), default (0.07), high (0.10); "
                                           "L∞ cap 24/255 unless --linf")
    add_poison_arguments(p)
    p.add_argument("--target-style", default="auto", metavar="NAME|DIR", help="cloak target style (see cloak)")
    p.add_argument("--style-strength", type=number(float, lo=0, hi=1, lo_open=True), default=1.0,
                   help="how far the target's latent goes toward the style rendering, (0-1] (default 1)")
    p.add_argument("--style-weight", type=number(float, lo=0, hi=100), default=1.0,
                   help="weight of the cloak objective, 0-100 (not 0 together with --poison-weight)")
    p.add_argument("--poison-weight", type=number(float, lo=0, hi=100), default=1.0,
                   help="weight of the poison objective, 0-100")


def protect_config(args: argparse.Namespace, concept: str, target: str):  # noqa: ANN201
    """The :class:`~sfumato.config.ProtectConfig` these options give for ``concept`` → ``target``."""
    from sfumato.commands.cloak import preset_options
    from sfumato.plans import protect_config as build

    return build(concept, target, **preset_options(args), target_style=args.target_style,
                 style_strength=args.style_strength, style_weight=args.style_weight,
                 poison_weight=args.poison_weight, anchor_choice=args.anchor_choice, anchor_index=args.anchor_index)


def _describe(m: dict, cfg: object) -> str:
    return f"lpips={m['achieved']['lpips_alex']:.4f} " + " ".join(
        f"{k}={v['relative_reduction']:.1%}" for k, v in m["latent"].items())


def _run(args: argparse.Namespace) -> int:
    from sfumato.api import protect_file
    from sfumato.commands.poison import plan_from_args, run_plan

    plan = plan_from_args(args, lambda concept, target: protect_config(args, concept, target))
    return run_plan(args, "protect", plan, protect_file, rights=True, describe=_describe)


run = one_line_errors(_run)
