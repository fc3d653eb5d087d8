"""The package's structure: no import cycles, lower layers never import higher ones.

Imports are read from the source with ``ast`` (function-level imports included, since a
cycle through a deferred import is still a cycle of ideas), so this needs no import
of the package and sees every module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_colorize"

#: Modules (dotted, below napari_colorize) and the front ends they must never import.
FRONT_ENDS = ("api", "cli", "cli_colorize", "cli_guidance", "cli_inputs", "cli_plan", "cli_progress", "cli_report",
              "cli_write", "cli_train", "cli_evaluate", "cli_calibrate", "_qt")
LOWER_LAYERS = ("color", "bins", "spaces", "decode", "losses", "metrics", "outputs", "inputs", "io", "devices",
                "model", "guidance", "inference", "engine", "_atomic", "_safetensors", "_locks")
#: The layers that train and score models: above the engine, below the front ends.
TRAINING_LAYERS = ("training", "evaluate")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The package-relative dotted name an import statement points at."""
    if level == 0:
        return target[len("napari_colorize."):] if target and target.startswith("napari_colorize.") else (
            "" if target == "napari_colorize" else "\0" + (target or ""))
    base = module.split(".") if module else []
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (names of submodules resolved where they exist)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [_resolve(module, is_package, 0, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                # "from . import x" may import the submodule x
                targets = [f"{base}.{a.name}".lstrip(".") if f"{base}.{a.name}".lstrip(".") in files else base
                           for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in files and t != module)
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search).

    A package's ``__init__`` re-exporting its submodules is not a cycle of its own:
    edges into a package's ``__init__`` from its own submodules are ignored.
    """
    def own_init(a: str, b: str) -> bool:
        return a.startswith(b + ".") if b else True

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if own_init(node, dep):
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_sees_a_cycle_and_ignores_package_faces():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert find_cycle({"engine": {"engine.graph"}, "engine.graph": {"engine"}}) is None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_never_import_front_ends(layer):
    graph = import_graph()
    inside = [m for m in graph if m == layer or m.startswith(layer + ".")]
    assert inside, f"no module {layer}"
    bad = {(m, d) for m in inside for d in graph[m]
           if any(d == f or d.startswith(f + ".") for f in FRONT_ENDS)}
    assert not bad, f"lower layer imports a front end: {sorted(bad)}"


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_never_import_training_or_evaluation(layer):
    graph = import_graph()
    bad = {(m, d) for m in graph if m == layer or m.startswith(layer + ".") for d in graph[m]
           if any(d == t or d.startswith(t + ".") for t in TRAINING_LAYERS)}
    assert not bad, f"lower layer imports training or evaluation: {sorted(bad)}"


def test_only_the_qt_subpackage_imports_napari_or_qt():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "_qt" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n.split(".")[0] in ("napari", "qtpy", "PyQt5", "PyQt6", "magicgui", "superqt") for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders, f"napari/Qt imported outside _qt/: {offenders}"


def test_no_source_module_is_over_about_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"modules over ~400 lines (split them by idea): {long}"
