"""Markdown tables of a lab summary (:mod:`sfumato.lab.result`), for the CLI, the benchmark and the docs."""

from __future__ import annotations

from typing import Any

__all__ = ["concept_markdown", "style_markdown"]


def _pct(s: dict[str, Any]) -> str:
    """``mean [min-max]`` in percent over seeds."""
    if len(s["per_seed"]) > 1:
        return f"{100 * s['mean']:.1f} % [{100 * s['min']:.0f}–{100 * s['max']:.0f}]"
    return f"{100 * s['mean']:.1f} %"


def style_markdown(summary: dict[str, Any], *, artist: str, source: str = "") -> str:
    """One table per judge: mimicry success of ``artist`` per variant, the other artists' control and
    the mean p(artist); then the per-artist success of every variant."""
    lines = []
    for reader, by_variant in summary.items():
        seeds = len(next(iter(by_variant.values()))["mimicry_success"]["per_seed"])
        chance = next(iter(by_variant.values()))["chance"]
        lines += [f"**{source} — judge `{reader}`** ({seeds} seed(s); mean [min–max] over seeds; chance "
                  f"{100 * chance:.1f} %)", "",
                  f"| variant | mimicry success ({artist}) | mean p({artist}) | other artists (control) | all artists |",
                  "|---|---|---|---|---|"]
        for v, s in by_variant.items():
            lines.append(f"| {v} | {_pct(s['mimicry_success'])} | {s['mean_p_artist']['mean']:.3f} | "
                         f"{_pct(s['others_success'])} | {100 * s['all_classes_success']:.1f} % |")
        lines.append("")
        variants = list(by_variant)
        lines += ["| artist | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        for c in next(iter(by_variant.values()))["per_class_success"]:
            lines.append(f"| {c} | " + " | ".join(f"{100 * by_variant[v]['per_class_success'][c]:.0f} %"
                                                for v in variants) + " |")
        lines.append("")
    return "\n".join(lines)


def concept_markdown(summary: dict[str, Any], *, concept: str, target: str, source: str = "") -> str:
    """Per variant: how the judge labels the ``concept`` samples (and the ``target`` samples); the shift
    toward ``target`` on the clean model's scale (0 = clean {concept}, 1 = clean {target}) when known."""
    shift = any("shift_to_target" in row[concept] for row in summary.values())
    lines = [f"**{source}** (mean [min–max] over seeds)", "",
             f"| variant | {concept} samples judged {target} | {concept} samples judged {concept} | "
             f"mean p({target}) on {concept} samples | " + ("shift to " + target + " | " if shift else "")
             + f"{target} samples judged {target} |",
             "|---|---|---|---|---|" + ("---|" if shift else "")]
    for v, row in summary.items():
        c, t = row[concept], row.get(target, row[concept])
        sh = ""
        if shift:
            s = c.get("shift_to_target")
            sh = f"{s['mean']:+.2f} [{s['min']:+.2f}–{s['max']:+.2f}] | " if s else "– | "
        lines.append(f"| {v} | {_pct(c['judged_target'])} | {_pct(c['judged_concept'])} | "
                     f"{c['mean_p_target']['mean']:.3f} | {sh}{_pct(t['judged_target'])} |")
    return "\n".join(lines) + "\n"
