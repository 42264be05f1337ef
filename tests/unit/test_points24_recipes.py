"""The 24-point recipes: the 7B SFT -> RL pipeline holds its setup, and the CPU twin shares its data,
reward and ID/OOD evaluation (tests/unit/test_config.py validates both with every other recipe)."""

from pathlib import Path

import pytest

from chord.config import ConfigError, evaluates, uses_expert, uses_rl
from chord.config.recipe import load_config
from chord.config.stages import expand
from chord.rollout.placement import placement

pytestmark = pytest.mark.unit
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
BENCHMARKS = {"points24_id": "builtin:points24", "points24_ood": "builtin:points24_ood"}


def _task(cfg) -> dict:
    """What makes a run a 24-point run (not its scale); data only where the run's method reads it."""
    return {
        "reward": cfg.reward.name,
        "benchmarks": {b.name: b.source for b in cfg.eval.benchmarks},
        "temperature": cfg.eval.temperature,
        **({"prompts": cfg.data.prompts.source} if uses_rl(cfg) else {}),
        **({"expert": cfg.data.expert.source} if uses_expert(cfg) else {}),
    }


def test_gpu_pipeline_is_sft_then_grpo_from_best_at_7b_scale():
    cfg = load_config(RECIPES / "points24_sft_then_rl.yaml")
    stages = expand(cfg)
    assert [(s.method, s.init) for s in stages] == [("sft", "final"), ("grpo", "best")]
    sft, rl = (s.cfg for s in stages)
    assert uses_expert(sft) and not uses_rl(sft) and uses_rl(rl) and not uses_expert(rl)
    assert sft.model.path == "Qwen/Qwen2.5-7B-Instruct" and rl.model.path.endswith("stage1-sft/best")
    for c in (sft, rl):
        assert c.model.dtype == "bfloat16" and c.deepspeed.bf16 and c.deepspeed.zero_stage == 3
        assert c.rollout.placement == "per_rank" and placement(c, world=8) == "per_rank"
        assert evaluates(c) and c.eval.at_start and _task(c)["benchmarks"] == BENCHMARKS
        assert c.eval.best_metric == "points24_id/avg@8"  # selects on ID accuracy, never on the OOD set
        assert c.trainer.max_tokens_per_micro_batch >= max(
            c.data.prompts.max_prompt_length + c.rollout.max_new_tokens, c.data.expert.max_length
        )
    assert sft.trainer.epochs is not None and rl.trainer.steps > 0


def test_cpu_twin_shares_the_task_and_runs_chord_on_the_tiny_model():
    twin, real = (
        load_config(RECIPES / "points24_tiny.yaml"),
        load_config(RECIPES / "points24_sft_then_rl.yaml"),
    )
    for s in expand(real):  # the SFT stage's expert rows and the RL stage's prompts are the twin's
        assert _task(s.cfg).items() <= _task(twin).items()
    assert _task(twin)["prompts"] == _task(twin)["expert"] == "builtin:points24"
    assert twin.model.path == "tiny" and not twin.stages
    assert uses_rl(twin) and uses_expert(twin) and 0 < twin.algorithm.mu.peak < 1  # CHORD: both terms
    assert all(b.max_problems and b.max_problems <= 16 for b in twin.eval.benchmarks)  # quick on a CPU
    # the tiny model's context: prompt + response within its 512 positions
    longest = max(
        twin.data.prompts.max_prompt_length + twin.rollout.max_new_tokens, twin.data.expert.max_length
    )
    assert longest <= 512 and twin.trainer.max_tokens_per_micro_batch >= longest


@pytest.mark.parametrize("metric", ["points24_ood/pass@1", "points24_ood/pass@2", "points24_id/distinct_2"])
def test_best_metric_may_be_an_exploration_number(metric):
    assert (
        load_config(RECIPES / "points24_tiny.yaml", [f"eval.best_metric={metric}"]).eval.best_metric == metric
    )


@pytest.mark.parametrize("metric", ["points24_id/pass@3", "points24_id/pass@8", "overall/distinct_2"])
def test_best_metric_refuses_numbers_evaluation_does_not_report(metric):
    with pytest.raises(
        ConfigError, match="eval.best_metric"
    ):  # k = 4: pass@1, 2, 4 only; overall/* as before
        load_config(RECIPES / "points24_tiny.yaml", [f"eval.best_metric={metric}"])
