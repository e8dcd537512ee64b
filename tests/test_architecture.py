"""The package reads as its pipeline: stages import only from themselves and the stages below them,
no import cycles, no reaching into another module's private names, no source file over 500 lines.
(See docs/architecture.md.)"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: The pipeline, lowest stage first. A module may import from its own stage and the ones above it here.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("configuration", ("sfumato._version", "sfumato.config", "sfumato.models")),
    ("numerics", ("sfumato.numerics",)),
    ("image I/O", ("sfumato.io",)),
    ("encoders", ("sfumato.encoders",)),
    ("metrics", ("sfumato.metrics",)),
    ("attacks", ("sfumato.attacks",)),
    ("targets", ("sfumato.targets",)),
    ("optimisation", ("sfumato.optimise",)),
    ("protections", ("sfumato.protections", "sfumato.baselines")),
    ("judges", ("sfumato.judges",)),
    ("verification", ("sfumato.verification",)),
    ("mimicry lab", ("sfumato.lab",)),
    ("opt-out", ("sfumato.optout",)),
    ("facade", ("sfumato.api", "sfumato.preview", "sfumato.plans", "sfumato.batch")),
    ("shells", ("sfumato.commands", "sfumato.server", "sfumato.cli", "sfumato")),
]
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "sfumato").rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _stage(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(STAGES):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank >= 0, f"{module} belongs to no stage: add it to STAGES and docs/architecture.md"
    return rank


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every sfumato import, lazy ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "sfumato":
            names = [a.name for a in node.names]
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
            if subs:
                out += [(s, [], node.lineno) for s in subs]
            else:
                out.append((node.module, names, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "sfumato"]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append(("<relative>", [], node.lineno))
    return out


def test_no_relative_imports_and_no_upward_imports() -> None:
    mods = _modules()
    bad = []
    for mod, path in mods.items():
        for target, _, line in _imports(path, mods):
            if target == "<relative>":
                bad.append(f"{path.name}:{line} relative import (use sfumato.<stage>...)")
            elif _stage(target) > _stage(mod):
                bad.append(f"{mod}:{line} imports {target}: stage {STAGES[_stage(target)][0]!r} is above "
                           f"{STAGES[_stage(mod)][0]!r}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {m: {t for t, _, _ in _imports(p, mods) if t in mods and t != m and t != "sfumato"}
             for m, p in mods.items()}
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def strong(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for m in graph:
        if m not in index:
            strong(m)
    assert not sccs, f"import cycles: {sccs}"


def test_no_private_names_across_modules() -> None:
    mods = _modules()
    bad = [f"{mod}:{line} imports {n} from {target}"
           for mod, path in mods.items() for target, names, line in _imports(path, mods)
           for n in names if n.startswith("_") and not n.startswith("__") and target != mod]
    assert not bad, "\n".join(bad)


def test_no_source_file_over_500_lines() -> None:
    big = {str(p.relative_to(SRC)): n for p in (SRC / "sfumato").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these files (max {MAX_LINES} lines): {big}"
