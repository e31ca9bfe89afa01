"""The package layout of docs/architecture.md holds: every module imports in a fresh interpreter,
no module imports a layer above its own (lazy imports inside functions included), domains and
applications do not import each other except where APP_USES allows it (core packages may use
each other), and the module import graph has
no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "anyfeedback"

# Layer of each package prefix; the longest matching prefix wins. Lower numbers are lower layers.
LAYERS = {
    "anyfeedback": 0,  # __init__: the version only
    "anyfeedback.errors": 0,
    "anyfeedback.configfile": 0,
    "anyfeedback.runs": 0,
    "anyfeedback.run_dir": 0,
    "anyfeedback.rewards": 0,
    "anyfeedback.trackers": 0,
    "anyfeedback.usercode": 0,
    "anyfeedback.losses": 1,
    "anyfeedback.policies": 1,
    "anyfeedback.feedback": 1,
    "anyfeedback.bandit": 2,
    "anyfeedback.control": 2,
    "anyfeedback.llm": 2,
    "anyfeedback.control.offline": 3,
    "anyfeedback.control.aihf": 3,
    "anyfeedback.llm.online": 3,
    "anyfeedback.llm.aihf": 3,
    "anyfeedback.llm.reward": 3,
    "anyfeedback.llm.demo": 3,
    "anyfeedback.cli": 4,
    "anyfeedback.commands": 4,
}
# An application may build on another application of its domain only where it is listed here.
APP_USES = {
    "anyfeedback.llm.demo": {"anyfeedback.llm.online"},  # the demo is a configured online run
    "anyfeedback.llm.aihf": {"anyfeedback.llm.reward"},  # AIHF trains a reward model in its loop
}


def modules() -> list[str]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def owner(module: str) -> str:
    """The longest LAYERS prefix of `module`."""
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return best


def domain(prefix: str) -> str:
    return ".".join(prefix.split(".")[:2])


def imports(module: str, known: set[str]) -> set[str]:
    """Every anyfeedback module `module` imports, anywhere in its body. `from pkg import name`
    counts as importing `pkg.name` when that is a module."""
    path = PKG.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("anyfeedback")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("anyfeedback"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & known
    return found & known


def test_every_module_imports_in_a_fresh_interpreter():
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = subprocess.run([sys.executable, "-c", code, *modules()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_upward_or_sideways_import():
    known = set(modules())
    bad = []
    for mod in known:
        src = owner(mod)
        for target in imports(mod, known):
            dst = owner(target)
            if target == "anyfeedback" or src == dst or dst in APP_USES.get(src, ()):
                continue
            if LAYERS[dst] > LAYERS[src]:
                bad.append(f"{mod} -> {target} (layer {LAYERS[src]} imports layer {LAYERS[dst]})")
            elif LAYERS[dst] == LAYERS[src] and LAYERS[src] in (2, 3):
                bad.append(f"{mod} -> {target} (sideways between {src} and {dst})")
            elif LAYERS[src] == 3 and LAYERS[dst] == 2 and domain(src) != domain(dst):
                bad.append(f"{mod} -> {target} (application of another domain)")
    assert not bad, "\n".join(sorted(bad))


def test_no_private_import_across_packages():
    known = set(modules())
    bad = []
    for mod in known:
        path = PKG.joinpath(*mod.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("anyfeedback"):
                private = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")
                ]
                if private and owner(node.module) != owner(mod):
                    bad.append(f"{mod} imports {private} from {node.module}")
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    known = set(modules())
    # A package's __init__ re-exporting its own submodules is not a cycle through them.
    graph = {
        m: {t for t in imports(m, known) if not m.startswith(t + ".") and t != m} for m in known
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t) :] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(known):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
