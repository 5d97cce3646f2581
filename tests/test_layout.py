"""The package's shape: no import cycle (lazy imports inside functions count too), and the
library's layers import downward only."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "kdetect"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def run_time_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`, which only a type checker reads."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *run_time_nodes(child)])
            continue
        yield node
        yield from run_time_nodes(node)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in run_time_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            # `from pkg import module` imports the module; `from module import name` the module.
            targets |= {n for n in names if n in modules and n != name}
        graph[name] = targets - {name.rsplit(".", 1)[0]}  # a package's own __init__ is no dependency
    return graph


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


def test_no_import_cycle():
    assert cycle_from(import_graph()) is None, " -> ".join(cycle_from(import_graph()))


def test_the_checker_sees_a_cycle_and_reads_lazy_imports():
    lazy = ast.parse("def f():\n    from kdetect.a import b\nif TYPE_CHECKING:\n    import kdetect.c\n")
    seen = [n for n in run_time_nodes(lazy) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [n.module for n in seen] == ["kdetect.a"]
    assert cycle_from({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert cycle_from({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_layers_import_downward():
    graph = import_graph()
    # Serving never needs training code, and only the command line reaches the research tools.
    for name, targets in graph.items():
        if name.startswith("kdetect.serving") or name in ("kdetect", "kdetect.package", "kdetect.readings"):
            assert not {t for t in targets if t.startswith("kdetect.training")}, name
        if not name.startswith(("kdetect.research", "kdetect.cli")):
            assert not {t for t in targets if t.startswith("kdetect.research")}, name
