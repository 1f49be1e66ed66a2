"""Imports flow one way: configs, allocator -> layers, hub, processing -> acceleration -> inference -> modeling -> features
-> commands -> cli.

Read from the package's source with ``ast`` (every import, at module level or inside a function), so a
back-edge fails here even when no test happens to import the module that has it. A function-level import
of our own package is refused outright: it is how a cycle hides (if one seems needed, the code is in the
wrong module). Lazy imports of optional third-party packages (onnx, cv2, accelerate) are fine.

Two tables are the only lazy imports of our own modules, so that `u2net --help` needs no torch:
``u2net_hub._LAZY`` (the public names, PEP 562) and ``u2net_hub.cli.COMMAND_MODULES`` (the command run
once the arguments are parsed). Their entries are edges of the graph like any import, held to the same
tiers; any other ``importlib.import_module`` of a module of ours is refused.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "u2net_hub"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

#: Lower tiers never import higher ones. A module not listed is a library feature (tier FEATURES):
#: it may use every tier below, and the features may use each other as long as no cycle forms.
#: A new building block that the core needs (inference, modeling) goes into a lower tier here.
TIERS = {
    "u2net_hub.configs": 0,
    "u2net_hub.atomic": 0,  # files that appear whole or not at all; imports nothing of ours
    "u2net_hub.allocator": 0,  # glibc's malloc settings (ctypes only), set by the CLI before any heavy import
    "u2net_hub.layers": 1,
    "u2net_hub.hub": 1,
    "u2net_hub.processing": 1,
    "u2net_hub.matting": 1,  # processing.cutout(alpha_matting=True) uses it; it imports nothing of ours
    "u2net_hub.acceleration": 2,
    "u2net_hub.pipeline": 3,  # the overlapped batch loop predict() runs on
    "u2net_hub.inference": 3,
    "u2net_hub.modeling": 4,
    # 5: every other library module (losses, convert, export, training, data, ...)
    "u2net_hub.commands": 6,
    "u2net_hub.cli": 7,
    "u2net_hub.__main__": 8,
    "u2net_hub": 9,  # the public names; nothing inside the package imports them back
}
FEATURES = 5


def tier(module: str) -> int:
    if module in TIERS:
        return TIERS[module]
    if module.startswith("u2net_hub.commands."):
        return TIERS["u2net_hub.commands"]
    return FEATURES


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


class _Imports(ast.NodeVisitor):
    """Every import of a module: (line, target module names, whether it sits inside a function)."""

    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.depth = 0
        self.found: list[tuple[int, list[str], bool]] = []
        self.dynamic: list[int] = []  # lines that call importlib.import_module / __import__

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Call(self, node: ast.Call):
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if name in ("import_module", "__import__"):
            self.dynamic.append(node.lineno)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import):
        targets = [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
        if targets:
            self.found.append((node.lineno, targets, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.level:
            base_parts = self.package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base.split(".")[0] != PACKAGE:
            return
        targets = [base]
        targets += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in self.known]
        self.found.append((node.lineno, targets, self.depth > 0))


#: The modules allowed to import our own modules by name, and the module-level table each one reads them from.
LAZY_TABLES = {"u2net_hub": "_LAZY", "u2net_hub.cli": "COMMAND_MODULES"}


def lazy_table(source: str, variable: str) -> dict[str, str]:
    """The literal dict assigned to `variable` at module level (empty when there is none)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def import_graph(sources: dict[str, tuple[str, bool]]) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the package modules it imports, and the function-level imports of our own package.

    The lazy tables (:data:`LAZY_TABLES`) count as imports of the modules they name.

    Args:
        sources: module name -> (its source, whether it is a package ``__init__``).
    """
    known = set(sources)
    graph: dict[str, set[str]] = {name: set() for name in sources}
    lazy: list[str] = []
    for name, (source, is_package) in sources.items():
        visitor = _Imports(name, is_package, known)
        visitor.visit(ast.parse(source))
        for line, targets, in_function in visitor.found:
            targets = [t for t in targets if t != name]
            graph[name].update(targets)
            if in_function:
                lazy.append(f"{name}:{line} imports {', '.join(targets)} inside a function")
        if name in LAZY_TABLES:
            graph[name].update(t for t in lazy_table(source, LAZY_TABLES[name]).values() if t != name)
        elif visitor.dynamic:
            lazy.append(f"{name}:{visitor.dynamic[0]} imports a module by name (only the tables in "
                        f"{', '.join(LAZY_TABLES)} may)")
    return graph, lazy


def problems_of(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every back-edge, cycle and function-level own import, one line each (empty when the graph is clean)."""
    graph, problems = import_graph(sources)
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target not in graph:
                continue  # a name that is not a module of ours (caught by the import itself)
            if tier(target) > tier(module):
                problems.append(f"back-edge: {module} (tier {tier(module)}) imports {target} (tier {tier(target)})")
    # Cycles anywhere (the feature tier included), by depth-first search.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                problems.append("cycle: " + " -> ".join(cycle))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return problems


def package_sources() -> dict[str, tuple[str, bool]]:
    return {
        module_name(path, PACKAGE_DIR): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
    }


def test_package_imports_flow_one_way_with_no_function_level_own_imports():
    problems = problems_of(package_sources())
    assert not problems, "\n".join(problems)


def test_the_core_chain_is_wired_as_documented():
    graph, _ = import_graph(package_sources())
    assert "u2net_hub.layers" in graph["u2net_hub.modeling"]
    assert "u2net_hub.hub" in graph["u2net_hub.modeling"]  # U2Net inherits the Hub mixin
    assert "u2net_hub.inference" in graph["u2net_hub.modeling"]  # U2Net.predict is inference.predict
    assert "u2net_hub.layers" in graph["u2net_hub.acceleration"]  # the fast path works through the layers
    assert not {"u2net_hub.modeling", "u2net_hub.inference"} & graph["u2net_hub.hub"]


@pytest.mark.parametrize(
    "sources, expected",
    [
        ({"u2net_hub.configs": ("def f():\n    from .modeling import U2Net\n", False),
          "u2net_hub.modeling": ("from .configs import X\n", False)},
         ["inside a function", "back-edge: u2net_hub.configs", "cycle: u2net_hub.configs -> u2net_hub.modeling"]),
        ({"u2net_hub.a": ("from . import b\n", False), "u2net_hub.b": ("import u2net_hub.a\n", False)},
         ["cycle: u2net_hub.a -> u2net_hub.b -> u2net_hub.a"]),
        ({"u2net_hub.commands.x": ("from .. import DEMO_MODEL\n", False), "u2net_hub": ("", True)},
         ["back-edge: u2net_hub.commands.x (tier 6) imports u2net_hub (tier 9)"]),
        ({"u2net_hub.losses": ("import importlib\nM = importlib.import_module('u2net_hub.modeling')\n", False),
          "u2net_hub.modeling": ("", False)},
         ["u2net_hub.losses:2 imports a module by name"]),
        ({"u2net_hub.cli": ("COMMAND_MODULES = {'x': 'u2net_hub.commands.x'}\n", False),
          "u2net_hub.commands.x": ("from .. import cli\n", False)},
         ["back-edge: u2net_hub.commands.x (tier 6) imports u2net_hub.cli (tier 7)",
          "cycle: u2net_hub.cli -> u2net_hub.commands.x -> u2net_hub.cli"]),
        ({"u2net_hub.losses": ("import torch\nfrom .modeling import U2NetOutput\n", False),
          "u2net_hub.modeling": ("def f():\n    import onnx\n", False)},
         []),
    ],
)
def test_the_checker_sees_lazy_imports_back_edges_and_cycles(sources, expected):
    problems = problems_of(sources)
    assert len(problems) == len(expected), problems
    for wanted in expected:
        assert any(wanted in problem for problem in problems), (wanted, problems)


def _loaded_after(code: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('MODULES', *sorted(sys.modules))"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.splitlines()[-1].split()[1:]


def test_the_public_names_load_only_library_modules_the_graph_knows():
    """What `from u2net_hub import U2Net, predict` really loads: modules this test read, none of the command line."""
    assert [m for m in _loaded_after("import u2net_hub") if m.startswith(PACKAGE)] == ["u2net_hub", "u2net_hub.configs"]
    loaded = [m for m in _loaded_after("from u2net_hub import U2Net, predict") if m.startswith(PACKAGE)]
    known = set(package_sources())
    assert "u2net_hub.modeling" in loaded and "u2net_hub.layers" in loaded
    assert set(loaded) <= known
    assert not [m for m in loaded if tier(m) >= TIERS["u2net_hub.commands"] and m != PACKAGE]


def test_every_lazy_name_and_command_module_exists():
    import importlib

    import u2net_hub
    from u2net_hub.cli import COMMAND_MODULES, build_parser

    assert set(u2net_hub._LAZY) == set(u2net_hub.__all__) - {"__version__"}
    for name, module in u2net_hub._LAZY.items():
        assert getattr(u2net_hub, name) is getattr(importlib.import_module(module), name), name
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(COMMAND_MODULES) == set(subcommands.choices)
    for module in COMMAND_MODULES.values():
        assert callable(importlib.import_module(module).run), module


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["predict", "--help"], ["evaluate", "--help"],
                                  ["convert", "--help"], ["export-onnx", "--help"], ["profile", "--help"]])
def test_help_imports_no_heavy_package(argv):
    """`u2net --help` and every `u2net X --help` answer from the argument tables alone: no torch, gradio or onnx."""
    loaded = _loaded_after(f"from u2net_hub.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    heavy = {"torch", "gradio", "onnx", "onnxruntime", "datasets", "numpy", "PIL"} & set(loaded)
    assert not heavy, heavy
    assert "u2net_hub.commands.predict" not in loaded
