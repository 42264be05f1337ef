"""benchmarks/vs_trl.py without TRL: the GRPOConfig arguments it derives from chord's recipe hold the same
work per step (batch, one generate per optimizer step, token-mean loss, fp32), and what it reads back."""

import json
from pathlib import Path

import pytest

from benchmarks import vs_trl
from chord.config import load_config

pytestmark = pytest.mark.unit


def _cfg(regime: str = "short", *extra: str):
    over = vs_trl.chord_overrides(regime, 1, 20, Path("/tmp/unused"), 96)
    return load_config(vs_trl.ROOT / vs_trl.RECIPE, [*over, *extra])


def test_trl_gets_chords_settings():
    s = vs_trl.trl_settings(_cfg(), world=1)
    # 16 x 8 rollouts: 2 micro-batches of 64, one generate call per optimizer step
    assert (s["per_device_train_batch_size"], s["gradient_accumulation_steps"], s["num_generations"]) == (64, 2, 8)
    assert s["num_iterations"] == 1 and s["max_completion_length"] == 48 and s["generation_kwargs"] is None
    assert (s["loss_type"], s["beta"], s["epsilon"], s["scale_rewards"]) == ("dapo", 0.0, 0.2, "group")
    assert (s["learning_rate"], s["weight_decay"], s["max_grad_norm"], s["seed"]) == (1e-3, 0.01, 1.0, 1)
    assert s["bf16"] is False and s["gradient_checkpointing"] is False and s["shuffle_dataset"] is False
    assert vs_trl.trl_settings(_cfg(), world=2)["gradient_accumulation_steps"] == 1  # 64 rows per rank, once


def test_long_regime_fixes_the_length_on_both_sides():
    cfg = _cfg("long")
    assert cfg.rollout.ignore_eos is True and cfg.rollout.max_new_tokens == 96
    s = vs_trl.trl_settings(cfg, world=1)
    assert s["generation_kwargs"] == {"min_new_tokens": 96} and s["max_completion_length"] == 96


@pytest.mark.parametrize("extra", ["algorithm.loss_agg_mode=seq-mean-token-mean", "algorithm.kl_coef=0.1",
                                   "model.dtype=bfloat16", "trainer.micro_batch_size=48"])
def test_settings_trl_would_compute_differently_are_refused(extra):
    with pytest.raises(SystemExit, match="vs_trl"):
        vs_trl.trl_settings(_cfg("short", extra), world=1)


def test_steps_are_read_back_as_deltas(tmp_path):
    (tmp_path / "timing").mkdir()
    marks = [{"step": s, "t": 10.0 + 0.5 * s + (0.5 if s > 2 else 0.0), "unix": 0.0, "cpu": 2.0 * s}
             for s in range(6)]
    (tmp_path / "timing" / "steps_rank0.jsonl").write_text("".join(json.dumps(m) + "\n" for m in marks))
    (tmp_path / "chord").mkdir()
    rows = [{"step": s, "time/generate": 0.1 * s, "tokens/rollout": 100} for s in range(1, 6)]
    (tmp_path / "chord" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in rows))
    got = vs_trl.step_rows({"side": "chord", "dir": tmp_path, "launch_unix": 0.0})
    assert [r["wall_s"] for r in got] == [0.5, 0.5, 1.0, 0.5, 0.5] and all(r["cpu_s"] == 2.0 for r in got)
    med = vs_trl.medians(got, 4)
    assert med["steps"] == 2 and med["wall_s"] == 0.5 and med["generate_s"] == pytest.approx(0.45)
