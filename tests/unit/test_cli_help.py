"""`--help` lists every recipe key with its real default and its schema comment (chord.config.describe);
`--describe KEY` shows one; the `chord` command dispatches to each command line."""

import configparser
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from chord import cli, train
from chord.config import BenchmarkConfig, ChordConfig, ConfigError
from chord.config.describe import WIDTH, describe_all, describe_key, entries, fmt, walk
from chord.config.schema import ExpertSourceConfig, PromptSourceConfig

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def leaves(obj, prefix=""):
    """(dotted key, default) of every non-dataclass field, walked on an instance: independent of describe."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def real_defaults() -> dict:
    return {**dict(leaves(ChordConfig())), **dict(leaves(BenchmarkConfig(), "eval.benchmarks[].")),
            **dict(leaves(PromptSourceConfig(), "data.prompts.mixture[].")),
            **dict(leaves(ExpertSourceConfig(), "data.expert.mixture[]."))}


def listed_defaults(text: str) -> dict:
    """describe_all's `  key = default   # help` lines, under `section:` headers, as {dotted key: default
    text read back as YAML the way a recipe is read}."""
    out, section = {}, None
    for line in text.splitlines():
        if head := re.fullmatch(r"(\w+):(  # .*)?", line):
            section = head.group(1)
        elif item := re.fullmatch(r"(  )?(\S+) += (.*?)(   # .*)?", line):
            key = f"{section}.{item.group(2)}" if item.group(1) else item.group(2)
            out[key] = OmegaConf.to_container(OmegaConf.create(f"v: {item.group(3).strip()}"), resolve=False)["v"]
    return out


def test_every_key_is_listed_with_its_real_default():
    real = real_defaults()
    assert {e.key: e.default for e in entries()} == real
    assert listed_defaults(describe_all()) == real  # what a user copies into a recipe means the default
    assert real["trainer.lr"] == 1e-3 and real["eval.benchmarks[].name"] == "???" and real["stages"] == []
    assert [fmt(v) for v in ("1e-3", "null", "", "a: b", None, False, 1e-6)] == [
        '"1e-3"', '"null"', '""', '"a: b"', "null", "false", "1e-06"]  # strings a recipe would misread are quoted


def test_every_key_is_documented_in_one_line():
    bare = [e.key for e in entries() if not e.help.strip()]
    assert not bare, f"schema fields without a comment (chord/config/schema.py): {bare}"
    text = describe_all()
    assert max(map(len, text.splitlines())) <= WIDTH
    assert "  max_tokens_per_micro_batch = null" in text and "Token budget per micro-batch" in text


@dataclass
class Planted:
    """A planted section."""

    # a comment above,
    # on two lines
    documented: int = 1  # and one at the end
    bare: list = dataclasses.field(default_factory=lambda: [1, 2])
    trailing_only: str | None = None  # only this


def test_comments_are_read_from_the_source_of_a_planted_class():
    got = {e.key: e for e in walk(Planted)}
    assert got["documented"].help == "a comment above, on two lines\nand one at the end"
    assert got["documented"].short == "and one at the end"
    assert (got["bare"].help, got["bare"].default) == ("", [1, 2])  # the check above would name it
    assert (got["trailing_only"].short, got["trailing_only"].type) == ("only this", "str | None")


def test_describe_key_section_and_unknown_key():
    lr = describe_key("trainer.lr")
    assert lr.startswith("trainer.lr: float = 0.001\n") and "learning rate" in lr
    section = describe_key("trainer")
    assert section.startswith("trainer:\n") and all(f"\n  {k.split('.', 1)[1]} " in section
                                                  for k in real_defaults() if k.startswith("trainer."))
    assert "\n  peak " in describe_key("algorithm.mu")
    assert describe_key("eval.benchmarks.0.k") == describe_key("eval.benchmarks[].k")
    assert "\n  source " in describe_key("eval.benchmarks")  # a typed list shows its entries' keys
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.lrr' \(did you mean 'trainer.lr'\?\)"):
        describe_key("trainer.lrr")
    with pytest.raises(ConfigError, match=r"'trainer.lr' is a float value"):
        describe_key("trainer.lr.x")


def test_train_help_and_describe(capsys):
    assert train.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python chord/train.py RECIPE [dotted.key=value ...]")
    assert "--print-config" in out and "--describe KEY" in out and "\ntrainer:\n" in out and "\nstages = []" in out
    assert train.main(["--help", "trainer.lr"]) == 0
    assert capsys.readouterr().out.startswith("trainer.lr: float = 0.001")
    assert train.main(["--describe", "nope.key"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chord: config error: unknown key 'nope'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:  # no recipe and no --help: argparse's usage error
        train.main([])
    assert e.value.code == 2 and "required: RECIPE" in capsys.readouterr().err


def test_chord_dispatches_to_each_command(capsys, monkeypatch):
    assert cli.main(["train", "--help"]) == 0
    assert "recipe keys and their defaults" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n  {name} " in listing for name in cli.COMMANDS)
    assert cli.main([]) == 2 and "commands:" in capsys.readouterr().err
    assert cli.main(["trian"]) == 2
    assert capsys.readouterr().err == ("chord: unknown command 'trian'; commands: train, eval, export, diagnose, "
                                       "compare (chord --help)\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", "--help"])
    assert e.value.code == 0 and "usage: python benchmarks/compare.py" in capsys.readouterr().out
    monkeypatch.setattr(cli, "COMPARE", ROOT / "benchmarks" / "no_such_compare.py")  # an install without a checkout
    assert cli.main(["compare", "runs/x", "--out", "y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chord: compare runs benchmarks/compare.py") and err.count("\n") == 1


def test_setup_cfg_installs_the_chord_command():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "chord = chord.cli:main" in cfg["options.entry_points"]["console_scripts"]
