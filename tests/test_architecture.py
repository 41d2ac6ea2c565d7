"""The floors of the package: every import points down (or sideways within a floor), module-level imports
form no cycle, and the TF-free modules load no TensorFlow. See ARCHITECTURE.md."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ird_tf"

# floor of each top-level part of ird_tf: a module may import its own floor and those below
FLOORS = {
    "errors": 0, "faults": 0, "files": 0, "progress": 0, "terms": 0, "config": 0, "scoring": 0,
    "data": 1, "models": 2, "attention": 3, "losses": 3, "training": 4, "evaluation": 5, "export": 5,
    "runs": 6, "experiments": 7,
}
TF_FREE = ["ird_tf.errors", "ird_tf.faults", "ird_tf.files", "ird_tf.progress", "ird_tf.terms",
           "ird_tf.config", "ird_tf.scoring", "ird_tf.data.view", "ird_tf.data.readers",
           "ird_tf.data.synthetic",
           "ird_tf.runs", "ird_tf.runs.identity", "ird_tf.runs.results", "ird_tf.runs.claims",
           "ird_tf.runs.tuning", "ird_tf.experiments.cli", "ird_tf.experiments.tune",
           "ird_tf.experiments.study", "ird_tf.experiments.sweep", "ird_tf.experiments.label_free"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("ird_tf.")}


def _floor(module: str) -> int:
    return FLOORS[module.split(".")[1]]


def test_every_part_has_a_floor():
    parts = {m.split(".")[1] for m in _modules() if m != "ird_tf"}
    assert parts <= set(FLOORS), f"give {sorted(parts - set(FLOORS))} a floor here and in ARCHITECTURE.md"


def test_imports_point_down():
    upward = []
    for module, path in _modules().items():
        if module == "ird_tf":
            continue
        for target in _imports(path, top_level_only=False):
            if target.split(".")[1] in FLOORS and _floor(target) > _floor(module):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {m: {t for t in _imports(p, top_level_only=True) if t in modules and t != m}
             for m, p in modules.items()}
    for m in list(graph):  # importing a.b.c first imports its packages a.b and a
        graph[m] |= {".".join(m.split(".")[:k]) for k in range(2, len(m.split(".")))} - {m}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1 and not m.startswith(t + "."):  # a package importing its own child is fine
                cycles.append(" -> ".join([*stack[stack.index(t):], t]) if t in stack else f"{m} -> {t}")
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_tf_free_modules_load_no_tensorflow():
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {TF_FREE!r}]; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
