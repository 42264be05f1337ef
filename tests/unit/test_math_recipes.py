"""The paper-scale math recipes hold the paper's settings, and each tiny CPU twin mirrors its method."""

from pathlib import Path

import pytest

from chord.config import ChordConfig, evaluates, uses_expert, uses_rl
from chord.config.recipe import load_config
from chord.config.stages import expand
from chord.tasks.openr1 import SYSTEM_PROMPT

pytestmark = pytest.mark.unit
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PAIRS = [(f"math{s}.yaml", f"tiny_math{s}.yaml") for s in ("", "_chord_mu", "_grpo", "_sft", "_sft_then_rl")]


def _method(cfg: ChordConfig) -> dict:
    """What makes a run the method it is (not its scale)."""
    a, m = cfg.algorithm, cfg.algorithm.mu
    return {"mu": (m.peak, m.valley, m.warmup_steps > 0, m.decay_steps > 0), "sft_weight": a.sft_weight,
            "clip": (a.clip_eps_low, a.clip_eps_high, a.dual_clip), "kl": a.kl_coef, "entropy": a.entropy_coef,
            "reward": cfg.reward.name, "rl": uses_rl(cfg), "expert": uses_expert(cfg), "evaluates": evaluates(cfg),
            "best": (cfg.eval.best_metric, cfg.eval.best_mode), "by_epochs": cfg.trainer.epochs is not None,
            "lr_schedule": cfg.trainer.lr_schedule, "temperature": cfg.rollout.temperature}


def _stages(cfg: ChordConfig) -> list[tuple]:
    return [(s.name, s.method, s.init, _method(s.cfg)) for s in expand(cfg)] if cfg.stages else [_method(cfg)]


@pytest.mark.parametrize("real,twin", PAIRS, ids=[p[0] for p in PAIRS])
def test_tiny_twin_mirrors_the_real_recipe(real, twin):
    r, t = load_config(RECIPES / real), load_config(RECIPES / twin)
    assert _stages(r) == _stages(t)
    assert t.model.path == "tiny" and r.model.path == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize("real", [p[0] for p in PAIRS])
def test_real_recipes_hold_the_paper_settings(real):
    cfg = load_config(RECIPES / real)
    runs = [s.cfg for s in expand(cfg)] if cfg.stages else [cfg]
    for c in runs:
        assert c.model.dtype == "bfloat16" and c.deepspeed.bf16 and c.model.gradient_checkpointing
        assert c.data.prompts.system_prompt == SYSTEM_PROMPT  # the prompt the SFT traces were prepared with
        assert {b.name for b in c.eval.benchmarks} == {"aime24", "aime25", "amc", "math500"}
        k = {b.name: b.k or c.eval.k for b in c.eval.benchmarks}
        assert k["aime24"] == k["aime25"] == 32 and k["amc"] == 8  # avg@32 AIME, avg@8 AMC
                                                                   # (docs/algorithm.md#paper-math-setting)
        assert c.eval.temperature == 1.0 and c.reward.name == "math"
        if c.data.expert.source is not None and uses_expert(c):
            assert c.data.expert.source.endswith("sft.jsonl")  # python -m chord.tasks.openr1 output
        if uses_rl(c):
            t = c.trainer
            # docs/algorithm.md#paper-math-setting
            assert (t.prompts_per_step, t.samples_per_prompt, t.lr) == (32, 8, 1e-6)
            assert c.data.prompts.source.endswith("rl.jsonl") and c.rollout.max_new_tokens >= 10_000
            assert t.weight_decay == 0.01 and t.grad_clip == 1.0 and t.lr_schedule == "constant"
        if uses_rl(c) and uses_expert(c):
            assert c.trainer.expert_per_step == 64
        # token-budget micro-batches (packed); load_config already refused a budget below the longest row
        assert c.trainer.max_tokens_per_micro_batch == 16384 and c.trainer.packing
        assert c.trainer.max_tokens_per_micro_batch >= max(
            c.data.prompts.max_prompt_length + c.rollout.max_new_tokens if uses_rl(c) else 0,
            c.data.expert.max_length if uses_expert(c) else 0)
        if uses_rl(c):
            assert c.algorithm.dual_clip == 3.0  # bf16 vLLM old log-probs (Trinity's CHORD always uses c = 3)


def test_paper_mu_schedules():
    phi, mu = load_config(RECIPES / "math.yaml"), load_config(RECIPES / "math_chord_mu.yaml")
    assert (phi.algorithm.mu.peak, phi.algorithm.mu.valley, phi.algorithm.sft_weight) == (0.1, 0.1, "phi")
    m = mu.algorithm.mu
    assert (m.peak, m.valley, m.warmup_steps, m.decay_steps, mu.algorithm.sft_weight) == (0.9, 0.05, 0, 200, "none")
    stages = expand(load_config(RECIPES / "math_sft_then_rl.yaml"))
    assert [(s.method, s.init) for s in stages] == [("sft", "final"), ("grpo", "best")]
