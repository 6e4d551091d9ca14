"""The folder tree is the architecture: imports run one way, from the bottom layer up, and no two modules
import each other. This reads every module's imports (including those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import lsllm

PACKAGE = Path(lsllm.__file__).parent

# Bottom to top. A module may import modules of its own layer or below, never above.
LAYERS = [
    ["lsllm.errors", "lsllm._compat", "lsllm.atomic", "lsllm.processes"],
    ["lsllm.config"],
    ["lsllm.data"],
    ["lsllm.modeling"],
    ["lsllm.decision", "lsllm.metrics", "lsllm.predictions", "lsllm.reports"],
    ["lsllm.artifacts", "lsllm.checkpoints"],
    ["lsllm.inference"],
    ["lsllm.adaptation"],
    ["lsllm.training"],
    ["lsllm.model_card", "lsllm.export"],
    ["lsllm.serving"],
    ["lsllm.cli", "lsllm.__main__", "lsllm"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for number, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members if m != "lsllm"):
            return number
    assert module == "lsllm", f"{module} is in no layer; add it to LAYERS"
    return len(LAYERS) - 1


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from lsllm import x`
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules and name != "lsllm"}


GRAPH = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def test_every_import_points_down_the_layers():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_modules_import_each_other():
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for target in GRAPH.get(start, ()):
            if target == goal or (target not in seen and reaches(target, goal, seen | {target})):
                return True
        return False

    cycles = sorted(f"{a} <-> {b}" for a, targets in GRAPH.items() for b in targets if reaches(b, a, {b}))
    assert cycles == []


def test_only_the_cli_prints():
    printing = sorted(
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if any(
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert printing == ["lsllm.cli"]
