"""The recipe keys, their defaults and their documentation, read from the schema itself (for --help).

    python chord/train.py --help                      # every section and key
    python chord/train.py --describe trainer.lr       # one key (or a section: --describe trainer)

A field's documentation is its comment in chord/config/schema.py: the comment lines just above it and the
comment at the end of its line. They are read with `ast` (which line holds which field) and `tokenize`
(which line holds which comment), so what --help says is what the schema says. Entries of a typed list
(eval.benchmarks) are shown as `eval.benchmarks[].name`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from chord.config.schema import LIST_ITEMS, ChordConfig, ConfigError, check_keys

WIDTH = 120  # describe_all's lines are at most this long
ITEM = "[]"  # eval.benchmarks[].name: a key of every entry of a typed list


@dataclass
class Entry:
    key: str  # dotted, e.g. trainer.lr or eval.benchmarks[].k
    type: str  # as annotated in the schema, e.g. "int | None"
    default: Any
    help: str  # the whole comment: the lines above the field, a newline, the end-of-line comment
    short: str  # the comment at the end of the field's line, else `help`


@dataclass
class Section:
    key: str  # dotted, e.g. algorithm.mu
    doc: str  # the class docstring, "" if none


@cache
def _module_comments(path: Path) -> tuple[dict[int, str], dict[int, str], dict[str, ast.ClassDef]]:
    """(own-line comments by line, end-of-line comments by line, top-level classes by name) of one file."""
    text = path.read_text()
    own, trailing = {}, {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            body = tok.string.lstrip("#").strip()
            (own if not tok.line[: tok.start[1]].strip() else trailing)[tok.start[0]] = body
    classes = {n.name: n for n in ast.parse(text).body if isinstance(n, ast.ClassDef)}
    return own, trailing, classes


def field_docs(cls: type) -> tuple[str, dict[str, tuple[str, str]]]:
    """(class docstring, field name -> (comment lines above it, end-of-line comment)) from cls's source."""
    own, trailing, classes = _module_comments(Path(inspect.getsourcefile(cls)))
    node = classes.get(cls.__name__)
    if node is None:  # not a top-level class of its file (a class made in a function): no comments to read
        return "", {}
    docs = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            above, line = [], stmt.lineno - 1
            while line in own:
                above.insert(0, own[line])
                line -= 1
            end = " ".join(trailing[i] for i in range(stmt.lineno, stmt.end_lineno + 1) if i in trailing)
            docs[stmt.target.id] = (" ".join(above), end)
    return ast.get_docstring(node) or "", docs


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def walk(cls: type = ChordConfig, prefix: str = "") -> list[Entry | Section]:
    """Every section and key below `cls`, in schema order; a section comes before its keys."""
    doc, docs = field_docs(cls)
    out: list[Entry | Section] = [Section(prefix.rstrip("."), doc)] if prefix else []
    for f in dataclasses.fields(cls):
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            out += walk(sub, f"{prefix}{f.name}.")
            continue
        above, end = docs.get(f.name, ("", ""))
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(Entry(f"{prefix}{f.name}", kind, _default(f), "\n".join(filter(None, (above, end))), end or above))
        item = LIST_ITEMS.get((cls, f.name))
        if item is not None:
            out += walk(item, f"{prefix}{f.name}{ITEM}.")
    return out


def entries() -> list[Entry]:
    """Every recipe key of ChordConfig (typed list entries included), in schema order."""
    return [e for e in walk() if isinstance(e, Entry)]


def _read_back(text: str) -> Any:
    """`text` as a recipe value, read by the loader recipes are read with (OmegaConf's YAML: 1e-3 is a float)."""
    try:
        return OmegaConf.to_container(OmegaConf.create(f"v: {text}"), resolve=False)["v"]
    except (yaml.YAMLError, OmegaConfBaseException):
        return None


def fmt(value: Any) -> str:
    """A default as a recipe would write it: null, true, 0.001, [], a string unquoted unless a recipe would
    read it as something else ("1e-3", "null", "")."""
    if isinstance(value, str):
        return value if value and _read_back(value) == value else json.dumps(value)
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value, default=dataclasses.asdict)
    return repr(value)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else textwrap.shorten(text, max(width, 20), placeholder=" ...")


def _lines(nodes: list[Entry | Section], section: str) -> list[str]:
    """`  key = default   # help` with keys relative to `section`, aligned, each line at most WIDTH long; a
    nested section with a docstring gets a `  # name: doc` line before its keys."""
    rel = [n.key.removeprefix(f"{section}.") if section else n.key for n in nodes]
    items = [n for n in nodes if isinstance(n, Entry)]
    kw = max((len(k) for k, n in zip(rel, nodes) if isinstance(n, Entry)), default=0)
    dw = min(max((len(fmt(e.default)) for e in items), default=0), 16)  # a longer default shifts only its line
    out = []
    for key, n in zip(rel, nodes):
        if isinstance(n, Section):
            out += [_cut(f"  # {key}: {n.doc.splitlines()[0]}", WIDTH)] if n.doc else []
            continue
        line = f"  {key:<{kw}} = {fmt(n.default):<{dw}}"
        out.append(f"{line}   # {_cut(n.short, WIDTH - len(line) - 5)}" if n.short else line.rstrip())
    return out


def _below(nodes: list[Entry | Section], key: str) -> list[Entry | Section]:
    return [n for n in nodes if n.key.startswith((f"{key}.", f"{key}{ITEM}"))]


def describe_all() -> str:
    """Every section of the recipe with its keys, defaults and one line of documentation each."""
    nodes = walk()
    out: list[str] = []
    for n in nodes:
        if "." in n.key:
            continue
        if isinstance(n, Entry):  # a top-level key that is not a section (stages)
            out += ["", *(line.removeprefix("  ") for line in _lines([n], ""))]
        else:
            out += ["", f"{n.key}:" + (f"  # {_cut(n.doc.splitlines()[0], WIDTH - len(n.key) - 5)}" if n.doc else "")]
            out += _lines(_below(nodes, n.key), n.key)
    return "\n".join(out[1:]) + "\n"


def _check(key: str) -> None:
    """Raise the recipe loader's own ConfigError for an unknown key, with its did-you-mean."""
    node: Any = None
    for part in reversed(key.replace(ITEM, ".0").split(".")):
        node = [node] if part.isdigit() else {part: node}
    check_keys(node, ChordConfig, "")


def describe_key(key: str) -> str:
    """One key (type, default, its whole comment) or one section (its keys, as describe_all lists them);
    an unknown key raises ConfigError. A list index (eval.benchmarks.0.k) means any entry (benchmarks[].k)."""
    name = ".".join(ITEM if p.isdigit() else p for p in key.strip().split(".")).replace(f".{ITEM}", ITEM)
    nodes = walk()
    hit = next((n for n in nodes if n.key == name), None)
    if isinstance(hit, Entry):
        body = [textwrap.fill(par, WIDTH, initial_indent="  ", subsequent_indent="  ") for par in hit.help.split("\n")]
        more = []
        if entry := next((n for n in nodes if n.key == f"{name}{ITEM}"), None):  # a typed list: each entry's keys
            more = [_cut(f"each entry ({name}{ITEM}.KEY): {entry.doc.splitlines()[0]}", WIDTH),
                    *_lines([n for n in _below(nodes, name) if isinstance(n, Entry)], f"{name}{ITEM}")]
        return "\n".join([f"{name}: {hit.type} = {fmt(hit.default)}", *filter(None, body), *more]) + "\n"
    if isinstance(hit, Section):
        doc = f"  # {hit.doc.splitlines()[0]}" if hit.doc else ""
        return "\n".join([f"{name}:{doc}", *_lines(_below(nodes, name), name)]) + "\n"
    _check(name)  # an unknown name raises here, naming the nearest valid one
    leaf = max((e for e in nodes if isinstance(e, Entry) and name.startswith((f"{e.key}.", f"{e.key}{ITEM}"))),
               key=lambda e: len(e.key), default=None)
    raise ConfigError(f"'{key}' is not a recipe key" + (f"; '{leaf.key}' is a {leaf.type} value (--describe {leaf.key})"
                                                         if leaf else ""))
