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
    "entropy/rollout", "entropy/expert", "sft/phi_mean", "sft/phi_min", "sft/phi_max",
    "response/length_mean", "response/length_max", "response/truncated_frac", "policy/clip_frac",
    "policy/ratio_mean", "policy/ratio_max", "gap/logp_mean", "gap/logp_max", "optim/grad_norm", "optim/lr",
    "throughput/tokens_per_s", "time/generate", "time/reward", "time/learner", "time/weight_sync",
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
from chord.config import load_config
from chord.distributed import init_distributed
from chord.build import build_run
from chord.train import train, StaleWeightsError
cfg = load_config(sys.argv[1], sys.argv[2:])
run = build_run(cfg, init_distributed())
run.engine.push_weights = lambda named, version: None  # simulate a broken weight sync
try:
    train(cfg, run)
except StaleWeightsError as e:
    print("STALE", e)
finally:
    run.close()
"""


def test_stale_weights_stop_the_run(tiny_cache, tmp_path):
    p = run_cli([python(), "-c", STALE, *_args(tiny_cache, tmp_path / "stale", 3)])
    assert "STALE step 2: learner vs rollout log-prob gap" in p.stdout, p.stdout[-2000:] + p.stderr[-3000:]


def test_two_ranks_run(tiny_cache, tmp_path):
    out = tmp_path / "run2"
    p = run_cli([*torchrun(), "chord/train.py", *_args(tiny_cache, out, 3)])
    assert p.returncode == 0, p.stderr[-3000:]
    _check_run(out, 3)


@pytest.mark.parametrize("stage,mbs_one", [(0, 4), (3, 8)])
def test_gradient_is_world_size_invariant(tiny_cache, tmp_path, stage, mbs_one):
    """One learner step on fixed rows: 1 rank (2 micro-batches at ZeRO-0, 1 at ZeRO-3) == 2 ranks x 1."""
    from chord.models.tiny import build_tiny_model

    model = str(build_tiny_model(tiny_cache))
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    p1 = run_cli([python(), "tests/integration/learner_step.py", str(one), model, str(stage), str(mbs_one)])
    assert p1.returncode == 0, p1.stderr[-3000:]
    p2 = run_cli([*torchrun(), "tests/integration/learner_step.py", str(two), model, str(stage), "4"])
    assert p2.returncode == 0, p2.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    assert a["metrics"]["loss/total"] == pytest.approx(b["metrics"]["loss/total"], rel=1e-5)
    # learner_step uses Adam with eps >> |g|: the first step moves each weight by ~g (max ~1.5e-3
    # here), so equal weights mean equal gradients; seen: differences ~1.5e-8
    assert a["metrics"]["optim/grad_norm"] == pytest.approx(b["metrics"]["optim/grad_norm"], rel=1e-5)
    for k in a["weights"]:
        diff = (a["weights"][k] - b["weights"][k]).abs().max().item()
        assert diff <= 1e-6, (k, diff)


def test_zero3_refuses_gradient_accumulation(tiny_cache, tmp_path):
    p = run_cli([python(), "chord/train.py", *_args(tiny_cache, tmp_path / "z3", 1, "deepspeed.zero_stage=3",
                                                    "trainer.micro_batch_size=8")])
    assert p.returncode == 2 and "ZeRO-3 supports only one" in p.stderr.splitlines()[-1], p.stderr[-2000:]


@pytest.mark.parametrize("impl", ["naive", "chunked", "triton"])
def test_fused_loss_impls_match_torch_path(tiny_cache, tmp_path, impl):
    """One CHORD step through chord_kernels (triton under the interpreter on CPU) == the torch path."""
    from chord.models.tiny import build_tiny_model

    model = str(build_tiny_model(tiny_cache))
    ref, got = tmp_path / "torch.pt", tmp_path / f"{impl}.pt"
    for out, which in ((ref, "torch"), (got, impl)):
        p = run_cli([python(), "tests/integration/learner_step.py", str(out), model, "0", "4", which])
        assert p.returncode == 0, p.stderr[-3000:]
    a, b = torch.load(ref), torch.load(got)
    for k in ("loss/total", "loss/grpo", "loss/sft", "entropy/rollout", "optim/grad_norm"):
        assert b["metrics"][k] == pytest.approx(a["metrics"][k], rel=1e-5, abs=1e-7), k
    for k in a["weights"]:
        diff = (a["weights"][k] - b["weights"][k]).abs().max().item()
        assert diff <= 1e-6, (k, diff)  # ~lr * gradient difference (see the world-size test)


def test_gradient_checkpointing_leaves_the_step_unchanged(tiny_cache, tmp_path):
    """model.gradient_checkpointing recomputes activations in backward: same loss, gradient and weights."""
    from chord.models.tiny import build_tiny_model

    model = str(build_tiny_model(tiny_cache))
    ref, got = tmp_path / "plain.pt", tmp_path / "ckpt.pt"
    for out, flag in ((ref, "false"), (got, "true")):
        p = run_cli([python(), "tests/integration/learner_step.py", str(out), model, "0", "4", "torch",
                     f"model.gradient_checkpointing={flag}"])
        assert p.returncode == 0, p.stderr[-3000:]
    a, b = torch.load(ref), torch.load(got)
    assert (a["checkpointing"], b["checkpointing"]) == (False, True)
    for k in ("loss/total", "optim/grad_norm"):
        assert b["metrics"][k] == pytest.approx(a["metrics"][k], rel=1e-6), k
    for k in a["weights"]:
        assert (a["weights"][k] - b["weights"][k]).abs().max().item() <= 1e-7, k
