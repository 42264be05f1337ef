"""chord's own import graph has no circle (function-level imports included): modules layer cleanly."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"chord": ROOT / "chord", "chord_kernels": ROOT / "kernels"}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [pkg, *path.relative_to(folder).with_suffix("").parts]
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> chord modules it imports anywhere in its body (package __init__ imports excluded)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name in mods and name != mod and not mod.startswith(name + "."):
                    graph[mod].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_chord_imports_have_no_circle():
    graph = import_graph()
    assert "chord.train" in graph and "chord.config" in graph["chord.train"]  # the walk sees real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


# The house, floor by floor (docs/architecture.md#floors): a module imports only from floors below its own,
# or from inside its own package. A new package gets a floor here; an import that climbs fails.
FLOORS = [
    {"chord", "chord.types", "chord.faults", "chord.logger", "chord.step_metrics", "chord.bin_packing"},
    {"chord.algo", "chord.config", "chord.batching"},
    {"chord.data", "chord.distributed", "chord_kernels", "chord.analysis", "chord.spectrum", "chord.trackers"},
    {"chord.tasks", "chord.learner"},
    {"chord.models", "chord.rewards"},
    {"chord.rollout"},
    {"chord.evaluation", "chord.checkpoint"},
    {"chord.build", "chord.export", "chord.diagnose"},  # build_* and the offline command lines
    {"chord.train", "chord.eval"},  # the command lines that build runs
    {"chord.cli"},  # `chord COMMAND ...`: dispatches to every command line above
]
MAX_FLAT_MODULES = 14  # .py files directly under chord/: CLIs, the loop's vocabulary, boundary records


def unit(module: str) -> str:
    """chord.tasks.cards -> chord.tasks (its package or flat module); chord_kernels.* -> chord_kernels."""
    parts = module.split(".")
    return "chord_kernels" if parts[0] == "chord_kernels" else ".".join(parts[:2])


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    floor = {u: i for i, units in enumerate(FLOORS) for u in units}
    bad = []
    for mod, names in graph.items():
        for name in names:
            a, b = unit(mod), unit(name)
            if a not in floor:
                bad.append(f"{a} has no floor in FLOORS")
            elif a != b and floor.get(b, len(FLOORS)) >= floor[a]:
                bad.append(f"{mod} -> {name} (floor {floor[a]} -> {floor.get(b, '?')})")
    return sorted(set(bad))


def test_the_floor_check_finds_a_planted_climb():
    a, b, c = "chord.algo.no_such_a", "chord.learner.no_such_b", "chord.tasks.no_such_c"  # planted modules
    assert upward_imports({a: {"chord.types"}, "chord.types": set()}) == []
    assert upward_imports({a: {b}}) == [f"{a} -> {b} (floor 1 -> 3)"]
    assert upward_imports({c: {b}}) == [f"{c} -> {b} (floor 3 -> 3)"]


def test_no_import_climbs_a_floor():
    assert not (bad := upward_imports(import_graph())), "\n".join(bad)


def test_the_top_of_chord_stays_small():
    flat = sorted(p.name for p in (ROOT / "chord").glob("*.py"))
    assert len(flat) <= MAX_FLAT_MODULES, f"{len(flat)} modules directly under chord/: {flat}"
    # every package under chord/ is installed (setup.cfg lists packages explicitly)
    listed = (ROOT / "setup.cfg").read_text()
    for pkg in sorted(p.parent for p in (ROOT / "chord").rglob("__init__.py")):
        name = ".".join(pkg.relative_to(ROOT).parts)
        assert f"\n    {name}\n" in listed, f"{name} is missing from setup.cfg's packages"
