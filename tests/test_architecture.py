"""The layout stays a pipeline: no import circle between hiervae's modules or packages, and no
import inside a function (which could hide one) except the command line's start-up ones."""

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1] / "hiervae"
LAZY_ALLOWED = {"hiervae.commands", "hiervae.cli"}  # heavy imports deferred so `schema` starts fast


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]):
    """(module, imported module, at module level?) for every hiervae import."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        type_checking = {id(n) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
                         for n in ast.walk(n)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in type_checking:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith("hiervae"):
                    resolved = resolve(target)
                    if resolved and resolved != name:
                        yield name, resolved, id(node) in top


def test_no_import_circle_between_modules_or_packages():
    modules = _modules()
    edges = [(a, b) for a, b, top in _imports(modules) if top]
    assert len(edges) > 100  # the reader found the imports (a guard against a vacuous pass)
    graph = nx.DiGraph(edges)
    assert [c for c in nx.simple_cycles(graph) if len(c) > 1] == []
    packages = nx.DiGraph((".".join(a.split(".")[:2]), ".".join(b.split(".")[:2])) for a, b in edges)
    packages.remove_edges_from(nx.selfloop_edges(packages))
    assert list(nx.simple_cycles(packages)) == []


def test_no_lazy_import_outside_the_command_line():
    lazy = sorted({(a, b) for a, b, top in _imports(_modules()) if not top and a not in LAZY_ALLOWED})
    assert lazy == []
