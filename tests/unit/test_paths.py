"""Every repository path and chord module named in README.md, docs/, recipes, scripts and code exists.

A file or module that moves leaves no stale reference behind: `chord/x.py`, `benchmarks/y.sh`,
`python -m chord.z` and `chord.a.b.Name` (a module, then optionally a name it defines) must resolve.
Results files in benchmarks/results/ are records of past runs and keep the paths they were made with;
a name containing `no_such` is a deliberate miss (tests of error messages).
"""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TOP = ("chord", "kernels", "benchmarks", "tests", "recipes", "docs", ".ci")
# a path starts at a top-level folder, not inside another path or word (runs/x/chord/... is not ours)
PATH = re.compile(r"(?<![\w/.$~-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./*{}<-]*)")
MODULE = re.compile(r"(?<![\w./-])(chord(?:\.[A-Za-z_]\w*)+)")
PACKAGES = {"chord": ROOT / "chord", "chord_kernels": ROOT / "kernels"}


def scanned() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "setup.cfg", ROOT / "pyproject.toml"]
    for top in TOP:
        for p in sorted((ROOT / top).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".sh", "") and "results" not in p.parts \
                    and "__pycache__" not in p.parts and p != Path(__file__):
                files.append(p)
    return [p for p in files if p.is_file()]


def path_exists(ref: str) -> bool:
    ref = ref.rstrip(".,;:)`'\"-")
    if any(c in ref for c in "*{<") or ref.endswith("/.."):
        return True  # a glob or a pattern (f-string, placeholder), not a path
    return (ROOT / ref).exists()


@cache
def module_file(name: str) -> Path | None:
    pkg, *rest = name.split(".")
    base = PACKAGES[pkg].joinpath(*rest)
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


@cache
def defined_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def module_ok(ref: str) -> bool:
    """chord.a.b[.Name[.attr]]: the longest module prefix exists and defines the next name, if any."""
    if "no_such" in ref:
        return True
    parts = ref.split(".")
    for n in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:n]))
        if path is not None:
            nxt = parts[n] if n < len(parts) else None  # a name the module defines, a submodule, or a dunder
            return nxt is None or nxt.startswith("__") or nxt in defined_names(path) \
                or bool(module_file(".".join(parts[:n + 1])))
    return False


def stale(text: str) -> list[str]:
    """'line: reference' for each path or module named in text that does not resolve."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        out += [f"{i}: {m}" for m in PATH.findall(line) if not path_exists(m)]
        out += [f"{i}: {m}" for m in MODULE.findall(line) if not module_ok(m)]
    return out


def test_the_checker_sees_stale_references():
    text = ("see chord/train.py and chord/nowhere.py; python -m chord.eval; chord.nowhere; "
            "chord.config.ChordConfig and chord.config.NoSuchName; runs/chord/x.py is a run folder\n")
    bad = [s.split(": ", 1)[1] for s in stale(text)]
    assert bad == ["chord/nowhere.py", "chord.nowhere", "chord.config.NoSuchName"]


def test_every_named_path_and_module_exists():
    files = scanned()
    assert len(files) > 100 and ROOT / "README.md" in files
    bad = [f"{p.relative_to(ROOT)}:{s}" for p in files for s in stale(p.read_text(encoding="utf-8"))]
    assert not bad, "stale references:\n" + "\n".join(bad)
