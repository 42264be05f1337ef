"""A few real CHORD steps on the tiny model: vLLM rollouts, DeepSpeed learner, 1 and 2 ranks."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tests.integration.conftest import ROOT, python, run_cli, torchrun

pytestmark = pytest.mark.integration

EXPECTED = {
    "mu", "loss/grpo", "loss/sft", "loss/total", "reward/mean", "reward/std", "reward/accuracy",
    "entropy/rollout", "entropy/expert", "sft/weight_mean", "sft/weight_min", "sft/weight_max",
    "response/length_mean", "response/length_max", "response/truncated_frac", "policy/clip_frac",
    "policy/ratio_mean", "policy/ratio_max", "gap/logp_mean", "gap/logp_max", "optim/grad_norm", "optim/lr",
    "throughput/tokens_per_s", "time/generate", "time/reward", "time/learner", "time/weight_sync",
    "memory/host_rss_gb",
}


def _args(cache, out, steps=3, *extra):
    return [str(ROOT / "recipes/tiny.yaml"), f"trainer.steps={steps}", f"model.cache_dir={cache}",
            f"run.output_dir={out}", "logging.progress_bar=false", "trainer.prompts_per_step=8",
            "trainer.samples_per_prompt=4",
            "trainer.expert_per_step=8", "trainer.micro_batch_size=24", *extra]


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _check_run(out, steps):
    rows = _metrics(out)
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for r in rows:
        assert r.keys() >= EXPECTED, EXPECTED - r.keys()
        # vLLM's sampling log-probs equal the learner's after every weight push (fp32)
        assert r["gap/logp_max"] <= 1e-4, r["gap/logp_max"]
        assert all(math.isfinite(r[k]) for k in ("loss/total", "optim/grad_norm"))
        assert r["tokens/rollout"] > 0 and r["tokens/expert"] > 0
    return rows


def test_single_process_run_logs_trains_and_exports(tiny_cache, tmp_path):
    out = tmp_path / "run"
    p = run_cli([python(), "chord/train.py", *_args(tiny_cache, out, 3, "trainer.weight_decay=0.0")])
    assert p.returncode == 0, p.stderr[-3000:]
    _check_run(out, 3)
    # TensorBoard event files carry the same tags
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) >= EXPECTED
    assert len(acc.Scalars("loss/total")) == 3
    # every trainable tensor moved (weight decay off, so only gradients can move it)
    from chord.models.tiny import build_tiny_model

    before = load_file(str(build_tiny_model(tiny_cache) / "model.safetensors"))
    after = load_file(str(out / "final/model.safetensors"))
    assert before.keys() == after.keys()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, unchanged
    assert (out / "checkpoints/latest").exists() and (out / "config.yaml").exists()


STALE = """
import sys
from chord.config.recipe import load_config
from chord.distributed import init_distributed
from chord.build import build_run
from chord.checkpoint import StopFlag
from chord.train import train, StaleWeightsError
cfg = load_config(sys.argv[1], sys.argv[2:])
run = build_run(cfg, init_distributed())
run.engine.push_weights = lambda named, version: None  # simulate a broken weight sync
try:
    train(run, StopFlag(), None)
except StaleWeightsError as e:
    print("STALE", e)
finally:
    run.close()
"""


def test_stale_weights_stop_the_run(tiny_cache, tmp_path):
    p = run_cli([python(), "-c", STALE, *_args(tiny_cache, tmp_path / "stale", 3)])
    assert "STALE step 2: learner vs rollout log-prob gap" in p.stdout, p.stdout[-2000:] + p.stderr[-3000:]


# The plain 2-rank run (rank 0's engine) is the rank0 side of tests/integration/test_placement.py.


def _learner_steps(cache, out, variants, ranks=1, extra=()):
    from chord.models.tiny import build_tiny_model

    cmd = [python()] if ranks == 1 else torchrun()
    p = run_cli([*cmd, "tests/integration/learner_step.py", str(out), str(build_tiny_model(cache)), *variants,
                 "--", *extra], env={"TRITON_INTERPRET": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return torch.load(out)


def _assert_same_step(ref, got, name, tol=1e-6):
    for k in ("loss/total", "loss/grpo", "loss/sft", "entropy/rollout", "optim/grad_norm"):
        assert got["metrics"][k] == pytest.approx(ref["metrics"][k], rel=1e-5, abs=1e-7), (name, k)
    # learner_step uses Adam with eps >> |g|: the first step moves each weight by ~g, so equal
    # weights mean equal gradients (seen: differences <= 7.5e-9 in fp32)
    for k in ref["weights"]:
        diff = (ref["weights"][k] - got["weights"][k]).abs().max().item()
        assert diff <= tol, (name, k, diff)


# (variant, micro-batches per rank); learner_step.fixed_rows: 8 rows of 7-22 tokens, 84 in all
ONE_RANK = [("zero3:rows4", [2]), ("zero3:rows2", [4]), ("zero3:tokens44", [3]), ("zero3:tokens44:padded", [3]),
            ("zero0:rows2", [4]), ("zero0:tokens44", [3]), ("zero1:rows2", [4]), ("zero1:tokens44", [3]),
            ("zero2:rows2", [4]), ("zero2:tokens44", [3]),
            # the KL reference (a DeepSpeed inference engine, ZeRO-3 sharded with a ZeRO-3 policy) equals the
            # policy at the first step: KL 0 and a zero KL gradient, so the same step
            ("zero3:tokens44:kl=0.1", [3]), ("zero1:rows4:kl=0.1", [2])]
TWO_RANKS = [("zero3:rows2", [2, 2]), ("zero3:tokens44", [2, 2]), ("zero0:tokens44", [2, 2]),
             ("zero2:tokens44:padded", [2, 2])]


def test_step_is_invariant_to_micro_batching_zero_stage_and_world_size(tiny_cache, tmp_path):
    """One learner step on fixed rows: every ZeRO stage, 1/2/4 micro-batches, packed or padded, 1 or 2
    ranks gives the step of one 8-row micro-batch (ZeRO-3 accumulates through the engine's forward)."""
    one = _learner_steps(tiny_cache, tmp_path / "one.pt", ["zero3:rows8", *(v for v, _ in ONE_RANK)])
    ref = one["zero3:rows8"]
    assert ref["micro_batches"] == [1]
    for v, counts in ONE_RANK:
        assert one[v]["micro_batches"] == counts, v
        _assert_same_step(ref, one[v], v)
    assert one["zero3:tokens44"]["forward_tokens_max"] <= 44
    for v in ("zero3:tokens44:kl=0.1", "zero1:rows4:kl=0.1"):
        assert abs(one[v]["metrics"]["kl/ref"]) <= 1e-7, (v, one[v]["metrics"].get("kl/ref"))
    two = _learner_steps(tiny_cache, tmp_path / "two.pt", [v for v, _ in TWO_RANKS], ranks=2)
    for v, counts in TWO_RANKS:
        assert two[v]["micro_batches"] == counts, v
        _assert_same_step(ref, two[v], f"2 ranks {v}")
    # the 44-token packed plan leaves rank 1 one bin short: it runs an empty micro-batch, no hang
    assert [0 in per_rank for per_rank in two["zero3:tokens44"]["bins"]] == [False, True]


def test_fused_loss_impls_match_torch_path(tiny_cache, tmp_path):
    """One packed ZeRO-3 step through chord_kernels (triton under the interpreter on CPU) == the torch path."""
    impls = ["chunked", "triton"]
    r = _learner_steps(tiny_cache, tmp_path / "impl.pt",
                       ["zero3:tokens44:impl=torch", *(f"zero3:tokens44:impl={i}" for i in impls)])
    for i in impls:
        _assert_same_step(r["zero3:tokens44:impl=torch"], r[f"zero3:tokens44:impl={i}"], i)


def test_gradient_checkpointing_leaves_the_step_unchanged(tiny_cache, tmp_path):
    """model.gradient_checkpointing recomputes activations in backward: same loss, gradient and weights."""
    a = _learner_steps(tiny_cache, tmp_path / "plain.pt", ["zero0:tokens44"])["zero0:tokens44"]
    b = _learner_steps(tiny_cache, tmp_path / "ckpt.pt", ["zero0:tokens44"],
                       extra=["model.gradient_checkpointing=true"])["zero0:tokens44"]
    assert (a["checkpointing"], b["checkpointing"]) == (False, True)
    _assert_same_step(a, b, "checkpointing", tol=1e-7)
