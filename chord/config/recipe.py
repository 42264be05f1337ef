"""Recipe and override YAML read strictly: syntax errors, tab indentation, duplicate keys and
non-mapping recipes become one-line `ConfigError`s with the file, line and dotted key.

PyYAML (under OmegaConf) reports these as multi-line exceptions; a duplicate key would at best
name only its last component. The recipe is composed once here to find them, then OmegaConf
loads it as usual (its own loader resolves `1e-3` as a float, which plain PyYAML does not).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from chord.config.schema import ChordConfig, ConfigError, check_keys, validate
from chord.config.stages import expand


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


def load_config(recipe: str | Path | None, overrides: list[str] | None = None) -> ChordConfig:
    """Schema defaults <- recipe YAML <- CLI overrides, validated; returns typed dataclasses."""
    try:
        merged = OmegaConf.structured(ChordConfig)
        layers: list[tuple[str, Any]] = []
        if recipe is not None:
            if not Path(recipe).is_file():
                raise ConfigError(f"recipe file not found: {recipe}")
            layers.append((str(recipe), load_recipe(Path(recipe))))
        stage_overrides: list[tuple[int, str]] = []
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form dotted.key=value")
            m = re.fullmatch(r"stages\.(\d+)\.(.+)", item.split("=", 1)[0])
            if m:  # stages.<i>.section.key=value reaches one stage (checked by chord.config.stages)
                stage_overrides.append((int(m.group(1)), item.split(".", 2)[2]))
                continue
            layers.append((f"override {item}", parse_override(item)))
        for where, layer in layers:
            if isinstance(layer, ListConfig):
                raise ConfigError("a recipe must be a mapping of sections, not a list")
            check_keys(OmegaConf.to_container(layer), ChordConfig, "")
            try:
                merged = OmegaConf.merge(merged, layer)
            except TypeError:  # e.g. eval.benchmarks.0.k=4: a list is replaced whole, not indexed
                raise ConfigError(f"{where}: a list cannot be indexed by a dotted key; give the whole list, "
                                  "e.g. eval.benchmarks=[{name: a, source: b}]") from None
        for i, item in stage_overrides:
            if i >= len(merged.stages):
                raise ConfigError(f"override 'stages.{i}...': the recipe has {len(merged.stages)} stages (0-indexed)")
            merged.stages[i] = OmegaConf.merge(merged.stages[i], parse_override(item))
        cfg: ChordConfig = OmegaConf.to_object(merged)  # resolves ${} interpolations
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0]
        raise ConfigError(f"'{key}': {msg}" if key else msg) from None
    if cfg.stages:  # a staged recipe: every stage's own config is validated (the base alone need not be)
        expand(cfg)
    else:
        validate(cfg)
    return cfg
