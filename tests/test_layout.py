"""The package's shape: every kdetect module has a rank in LAYERS and imports only its own unit or
a unit of a lower rank, and no import cycle. Every import counts, with no exemption: at the top,
inside a function, under TYPE_CHECKING (the type checker follows those, and an upward one there
still ties a low layer to a high one)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "kdetect"

# Lowest rank first. A unit is a tuple of module names; "pkg.*" stands for pkg and all below it.
# Core is one unit. Detector, glyphs, classifier and data share a rank as four units, so none
# imports another: what two of them need lives in core. The facade `kdetect` is serving's front door.
LAYERS = [
    ("core", [("kdetect.alphabet", "kdetect.charset", "kdetect.configio", "kdetect.errors", "kdetect.extras",
               "kdetect.fsutil", "kdetect.images", "kdetect.nn", "kdetect.preprocess", "kdetect.presets",
               "kdetect.quiet", "kdetect.readings", "kdetect.version")]),
    ("models", [("kdetect.detector.*",), ("kdetect.glyphs.*",), ("kdetect.classifier.*",), ("kdetect.data.*",)]),
    ("package", [("kdetect.package",)]),
    ("serving", [("kdetect.serving.*", "kdetect")]),
    ("training", [("kdetect.training.*",)]),
    ("research", [("kdetect.research.*",)]),
    ("cli", [("kdetect.cli",)]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, tuple[Path, str]]:
    return {module_name(p): (p.relative_to(ROOT.parent), p.read_text()) for p in sorted(ROOT.rglob("*.py"))}


def covers(pattern: str, module: str) -> bool:
    if pattern.endswith(".*"):
        return module == pattern[:-2] or module.startswith(pattern[:-1])
    return module == pattern


def places(module: str) -> list[tuple[int, int]]:
    """(rank, unit) of every unit naming module; a ranked module has exactly one."""
    return [(rank, u) for rank, (_, units) in enumerate(LAYERS) for u, unit in enumerate(units)
            if any(covers(p, module) for p in unit)]


def label(rank: int, unit: int) -> str:
    name, units = LAYERS[rank]
    return name if len(units) == 1 else f"{name} {units[unit][0]}"


def imports(name: str, source: str, modules: set[str], package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of each kdetect module the source imports, wherever the statement stands.
    `from pkg import x` imports pkg.x where that is a module, else pkg; the parent packages Python
    runs on the way are left out (else every module would depend on the facade)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = name.split(".")[:len(name.split(".")) - node.level + package]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base) for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, str(node.args[0].value)))
    return sorted({(line, m) for line, m in found if m == "kdetect" or m.startswith("kdetect.")})


def import_graph(files: dict[str, tuple[Path, str]]) -> dict[str, list[tuple[int, str]]]:
    return {name: imports(name, text, set(files), path.name == "__init__.py") for name, (path, text) in files.items()}


def upward(files: dict[str, tuple[Path, str]]) -> list[str]:
    """Each import that leaves its unit for one not strictly lower: 'file:line imports target (why)'."""
    bad = []
    for name, found in import_graph(files).items():
        for line, target in found:
            where = f"{files[name][0]}:{line} imports {target}"
            (home, there), unranked = (places(name), places(target)), [m for m in (name, target) if len(places(m)) != 1]
            if unranked:
                bad.append(f"{where} ({unranked[0]} has no one rank: give it one in LAYERS)")
            elif there != home and there[0][0] >= home[0][0]:
                bad.append(f"{where} ({label(*home[0])} -> {label(*there[0])}: not a lower rank)")
    return bad


def cycle_from(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_every_module_has_one_rank_and_every_unit_a_module():
    modules = set(sources())
    assert [m for m in sorted(modules) if len(places(m)) != 1] == []
    stale = [p for _, units in LAYERS for unit in units for p in unit if not any(covers(p, m) for m in modules)]
    assert stale == [], f"LAYERS names what kdetect no longer has: {stale}"


def test_layers_import_downward():
    bad = upward(sources())
    assert bad == [], "imports that go up or sideways:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = {name: {t for _, t in found} - {name} for name, found in import_graph(sources()).items()}
    cycle = cycle_from(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_upward_imports_wherever_they_stand():
    files = sources()
    source = ("from typing import TYPE_CHECKING\n"
              "from kdetect.errors import ConfigError\n"
              "from kdetect.detector import config\n"
              "from kdetect.training import loop\n"
              "def f():\n"
              "    import kdetect.serving.solver\n"
              "if TYPE_CHECKING:\n"
              "    from kdetect.glyphs.config import GlyphConfig\n"
              "from ..package import load_package\n"
              "importlib.import_module('kdetect.cli')\n")
    files["kdetect.detector.x"] = (Path("kdetect/detector/x.py"), source)
    bad = [b for b in upward(files) if b.startswith("kdetect/detector/x.py")]
    assert [b.split(" (")[0] for b in bad] == [
        "kdetect/detector/x.py:4 imports kdetect.training.loop", "kdetect/detector/x.py:6 imports kdetect.serving.solver",
        "kdetect/detector/x.py:8 imports kdetect.glyphs.config", "kdetect/detector/x.py:9 imports kdetect.package",
        "kdetect/detector/x.py:10 imports kdetect.cli"], bad
    files["kdetect.sneaky"] = (Path("kdetect/sneaky.py"), "from kdetect import errors\n")
    assert "kdetect/sneaky.py:1 imports kdetect.errors (kdetect.sneaky has no one rank: give it one in LAYERS)" in upward(files)


def test_the_checker_sees_a_cycle():
    assert cycle_from({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert cycle_from({"a": {"b"}, "b": {"c"}, "c": set()}) is None
