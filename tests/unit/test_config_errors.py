"""Every malformed recipe, override or named path is a one-line ConfigError naming the key (CLI: exit 2)."""

import subprocess
import sys
from pathlib import Path

import pytest

from chord.config import ConfigError
from chord.config.recipe import load_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _error(recipe, overrides=()) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(recipe, list(overrides))
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("text,needle", [
    ("trainer:\n  steps: [1\n", "line 3 column 1: expected ',' or ']'"),
    ("trainer:\n\tsteps: 2\n", "line 2: tab character in the indentation"),
    ("trainer:\n  steps: 2\n  lr: 0.1\n  steps: 3\n", "line 4: duplicate key 'trainer.steps'"),
    ("run:\n  seed: 1\ntrainer:\n  steps: 2\nrun:\n  name: x\n", "line 5: duplicate key 'run'"),
    ("hello\n", "a recipe must be a mapping of sections (run:, trainer:, ...), got the single value 'hello'"),
    ("- a\n- b\n", "a recipe must be a mapping of sections (run:, trainer:, ...), got a list"),
    ("trainer: {steps: 2\n", "recipe"),
])
def test_bad_yaml_recipes(tmp_path, text, needle):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    msg = _error(recipe)
    assert needle in msg and str(recipe) in msg


def test_empty_recipe_means_defaults(tmp_path):
    (tmp_path / "r.yaml").write_text("# nothing yet\n")
    assert load_config(tmp_path / "r.yaml").trainer.steps == 60


@pytest.mark.parametrize("override,needle", [
    ("trainer.steps=[1", "override 'trainer.steps=[1': line"),
    ("run.seed=-1", "'run.seed' must be in [0, 2^32 - 1)"),
    ("trainer.adam_beta1=1.5", "'trainer.adam_beta1' must be in [0, 1)"),
    ("trainer.adam_beta2=1.0", "'trainer.adam_beta2' must be in [0, 1)"),
    ("trainer.adam_eps=0", "'trainer.adam_eps' must be > 0"),
    ("trainer.weight_decay=-1", "'trainer.weight_decay' must be >= 0"),
    ("trainer.grad_clip=0", "'trainer.grad_clip' must be > 0"),
    ("trainer.lr_warmup_steps=-1", "'trainer.lr_warmup_steps' must be >= 0"),
    ("trainer.lr=nan", "'trainer.lr' must be a finite number"),
    ("algorithm.advantage_eps=0", "'algorithm.advantage_eps' must be > 0"),
    ("loss.chunk_size=0", "'loss.chunk_size' must be >= 1"),
    ("rollout.tensor_parallel_size=0", "'rollout.tensor_parallel_size' must be >= 1"),
    ("rollout.gpu_memory_utilization=0", "'rollout.gpu_memory_utilization' must be in (0, 1]"),
    ("rollout.gpu_memory_utilization=1.5", "'rollout.gpu_memory_utilization' must be in (0, 1]"),
    ("rollout.kv_cache_gib=0", "'rollout.kv_cache_gib' must be > 0"),
    ("data.prompts.max_bad_fraction=1.5", "'data.prompts.max_bad_fraction' must be in [0, 1]"),
    ("data.expert.max_bad_fraction=-0.1", "'data.expert.max_bad_fraction' must be in [0, 1]"),
    ("data.prompts.max_prompt_length=0", "'data.prompts.max_prompt_length' must be >= 1"),
    ("data.expert.max_length=0", "'data.expert.max_length' must be >= 1"),
    ("eval.max_prompt_length=0", "'eval.max_prompt_length' must be >= 1"),
    ("deepspeed.config_path=/no/such/ds.json", "'deepspeed.config_path' = /no/such/ds.json: cannot read"),
])
def test_out_of_range_values_name_the_key(override, needle):
    assert needle in _error(ROOT / "recipes/tiny.yaml", [override])


def test_named_paths_are_checked_before_any_work(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "'run.output_dir' = " in _error(None, [f"run.output_dir={a_file}"])
    assert f"{a_file} is a file" in _error(None, [f"run.output_dir={a_file}/sub"])
    assert "'model.cache_dir'" in _error(None, [f"model.cache_dir={a_file}"])
    # a hub model with hub data never builds anything in the cache folder: no complaint
    load_config(None, [f"model.cache_dir={a_file}", "model.path=org/model", "data.prompts.source=org/p",
                       "data.expert.source=org/e"])
    (tmp_path / "ds.json").write_text('{"zero_optimization": ')
    assert "not valid JSON" in _error(None, [f"deepspeed.config_path={tmp_path / 'ds.json'}"])
    (tmp_path / "ds.json").write_text("[1, 2]")
    assert "must hold a JSON object" in _error(None, [f"deepspeed.config_path={tmp_path / 'ds.json'}"])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "chord/train.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_one_line_exit_2(tmp_path):
    """Where the user meets them: no traceback, exit 2, the last line says what and where."""
    dup = tmp_path / "dup.yaml"
    dup.write_text("trainer:\n  steps: 2\n  steps: 3\n")
    a_file = tmp_path / "out"
    a_file.write_text("")
    for args, needle in (([str(dup)], "duplicate key 'trainer.steps'"),
                         ([str(ROOT / "recipes/tiny.yaml"), "run.seed=-1"], "'run.seed' must be in"),
                         ([str(ROOT / "recipes/tiny.yaml"), f"run.output_dir={a_file}"], "'run.output_dir'")):
        p = _cli(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        last = [ln for ln in p.stderr.splitlines() if ln.strip()][-1]
        assert last.startswith("chord: config error: ") and needle in last, last
