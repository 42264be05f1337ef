"""Recipes validate against the typed schema; bad recipes fail with one line and exit status 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from chord.config import ChordConfig, ConfigError, to_yaml
from chord.config.recipe import load_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {"tiny.yaml", "tiny_chord_mu.yaml", "tiny_grpo.yaml", "tiny_sft.yaml",
                                         "points24_tiny.yaml", "points24_sft_then_rl.yaml"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_validates_and_has_launch_comment(recipe):
    cfg = load_config(recipe)
    assert isinstance(cfg, ChordConfig)
    assert "${" not in to_yaml(cfg)  # interpolations resolved
    head = recipe.read_text().splitlines()[:4]
    assert any("chord/train.py" in line and line.startswith("#") for line in head), "launch command missing"


def test_overrides_and_interpolation():
    cfg = load_config(ROOT / "recipes/tiny.yaml", ["trainer.steps=3", "run.name=abc", "algorithm.dual_clip=3.0"])
    assert cfg.trainer.steps == 3 and cfg.run.output_dir == "runs/abc" and cfg.algorithm.dual_clip == 3.0


@pytest.mark.parametrize("override,needle", [
    ("trainer.stepz=3", "unknown key 'trainer.stepz' (did you mean 'trainer.steps'?)"),
    ("algorithm.mu.peek=0.3", "did you mean 'algorithm.mu.peak'"),
    ("trainer.steps=abc", "'trainer.steps'"),
    ("algorithm.mu.peak=1.5", "'algorithm.mu.peak' must be in [0, 1]"),
    ("algorithm.mu.valley=-0.1", "'algorithm.mu.valley' must be in [0, 1]"),
    ("trainer.samples_per_prompt=0", "'trainer.samples_per_prompt' must be >= 1"),
    ("algorithm.sft_weight=foo", "'algorithm.sft_weight' must be one of none, phi, is"),
    ("rollout.temperature=0", "'rollout.temperature' must be > 0"),
    ("deepspeed.zero_stage=4", "'deepspeed.zero_stage'"),
    ("loss.impl=fast", "'loss.impl'"),
    ("trainer.steps", "not of the form dotted.key=value"),
])
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "recipes/tiny.yaml", [override])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_in_recipe_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  steps: 2\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.learning_rate'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(tmp_path / "missing.yaml")


def test_pure_sft_recipe_must_not_ask_for_rollouts():
    with pytest.raises(ConfigError, match="pure SFT does no rollouts"):
        load_config(ROOT / "recipes/tiny_sft.yaml", ["trainer.prompts_per_step=4"])


def test_cli_exits_2_with_one_line_and_no_traceback():
    p = subprocess.run([sys.executable, str(ROOT / "chord/train.py"), str(ROOT / "recipes/tiny.yaml"),
                        "trainer.stepz=3"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines[-1] == "chord: config error: unknown key 'trainer.stepz' (did you mean 'trainer.steps'?)"
    assert "Traceback" not in p.stderr


def test_print_config_prints_resolved_yaml():
    p = subprocess.run([sys.executable, str(ROOT / "chord/train.py"), str(ROOT / "recipes/tiny.yaml"),
                        "--print-config", "trainer.steps=7"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "steps: 7" in p.stdout and "output_dir: runs/tiny-chord-phi" in p.stdout


@pytest.mark.parametrize("extra,longest,what", [
    ([], 160, "data.expert.max_length"),  # tiny.yaml: expert rows up to 160 tokens, rollouts up to 64 + 48
    (["trainer.expert_per_step=0", "data.expert.source=null"], 112,
     "data.prompts.max_prompt_length + rollout.max_new_tokens"),
])
def test_token_budget_must_hold_the_longest_possible_row(extra, longest, what):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "recipes/tiny.yaml", [*extra, f"trainer.max_tokens_per_micro_batch={longest - 1}"])
    msg = str(e.value)
    assert "'trainer.max_tokens_per_micro_batch'" in msg and f"{what} = {longest} tokens" in msg and "\n" not in msg
    cfg = load_config(ROOT / "recipes/tiny.yaml", [*extra, f"trainer.max_tokens_per_micro_batch={longest}"])
    assert cfg.trainer.max_tokens_per_micro_batch == longest


def test_cli_refuses_a_small_token_budget_before_any_work(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "chord/train.py", "recipes/tiny.yaml", "trainer.max_tokens_per_micro_batch=150",
                        f"run.output_dir={out}", f"model.cache_dir={tmp_path / 'cache'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("chord: config error: 'trainer.max_tokens_per_micro_batch'")
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing built, nothing written


def test_eval_at_steps_adds_evaluations_between_every_and_the_end():
    from chord.config.schema import evaluates
    from chord.train import eval_due

    cfg = load_config(ROOT / "recipes/cards.yaml", ["eval.at_steps=[5,10]", "eval.every=0", "trainer.steps=40"])
    assert cfg.eval.at_steps == [5, 10]
    assert [s for s in range(1, 41) if eval_due(cfg, s)] == [5, 10, 40]  # 40: eval.at_end
    cfg = load_config(ROOT / "recipes/cards.yaml", ["eval.at_steps=[5]", "eval.every=20", "eval.at_end=false"])
    assert [s for s in range(1, 121) if eval_due(cfg, s)] == [5, 20, 40, 60, 80, 100, 120]
    only = ["eval.every=0", "eval.at_end=false", "eval.at_start=false", "eval.best_includes_start=false"]
    cfg = load_config(ROOT / "recipes/cards.yaml", [*only, "eval.at_steps=[5]"])  # best/ can come from step 5
    assert evaluates(cfg) and [s for s in range(1, 121) if eval_due(cfg, s)] == [5]
    assert not evaluates(load_config(ROOT / "recipes/cards.yaml", [*only[:3], "eval.at_steps=[]",
                                                                   "eval.best_includes_start=true"]))


@pytest.mark.parametrize("steps", ["[0]", "[-1]", "[5,0]"])
def test_eval_at_steps_must_be_positive(steps):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "recipes/cards.yaml", [f"eval.at_steps={steps}"])
    assert "'eval.at_steps' must be steps >= 1" in str(e.value) and "\n" not in str(e.value)
