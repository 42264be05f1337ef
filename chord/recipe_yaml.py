"""Recipe and override YAML read strictly: syntax errors, tab indentation, duplicate keys and
non-mapping recipes become one-line `ConfigError`s with the file, line and dotted key.

PyYAML (under OmegaConf) reports these as multi-line exceptions; a duplicate key would at best
name only its last component. The recipe is composed once here to find them, then OmegaConf
loads it as usual (its own loader resolves `1e-3` as a float, which plain PyYAML does not).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from chord.config import ConfigError


def yaml_error(source: str, e: yaml.YAMLError, text: str = "") -> str:
    """One line: where (line, column) and what PyYAML found, with a hint for tab indentation."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    tabbed = [i for i, line in enumerate(text.splitlines(), 1) if "\t" in line[: len(line) - len(line.lstrip())]]
    if tabbed:  # YAML forbids tabs in indentation; PyYAML's own words for it are cryptic
        return f"{source}: line {tabbed[0]}: tab character in the indentation (YAML indents with spaces)"
    where = f": line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"{source}{where}: {problem}"


def _check_duplicates(node: yaml.Node, prefix: str, source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise ConfigError(f"{source}: line {key_node.start_mark.line + 1}: duplicate key '{prefix}{key}'")
            seen.add(key)
            _check_duplicates(value_node, f"{prefix}{key}.", source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{prefix}{i}.", source)


def load_recipe(path: Path) -> DictConfig | ListConfig:
    """The recipe file as an OmegaConf mapping; bad YAML and non-mappings fail with one line."""
    source = f"recipe {path}"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read ({type(e).__name__}: {e})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(source, e, text)) from None
    if root is None:  # an empty recipe: all defaults
        return OmegaConf.create({})
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else f"the single value {str(root.value)[:40]!r}"
        raise ConfigError(f"{source}: a recipe must be a mapping of sections (run:, trainer:, ...), got {kind}")
    _check_duplicates(root, "", source)
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(source, e, text)) from None


def parse_override(item: str) -> DictConfig:
    """`dotted.key=value`; the value is YAML, so `trainer.steps=[1` is a one-line error too."""
    try:
        return OmegaConf.from_dotlist([item])
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(f"override '{item}'", e)) from None
