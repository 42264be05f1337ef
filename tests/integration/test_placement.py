"""rollout.placement at 2 ranks, real vLLM + DeepSpeed ZeRO-3: an engine per rank (external_launcher)
samples exactly what rank 0's single engine samples, the learner takes the same steps, every engine
gets every push (the fp32 log-prob gap guard), sharded evaluation equals one engine's, and weights
travel in buckets smaller than the largest tensor with no file in /dev/shm."""

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.integration.conftest import ROOT, run_cli, torchrun
from tests.integration.test_train import _check_run, _metrics

pytestmark = pytest.mark.integration
SHM = Path("/dev/shm")
BENCH = 'eval.benchmarks=[{name: tiny, source: "builtin:tiny", k: 2, max_problems: 9}]'


def _run(cache, out, placement):
    args = [str(ROOT / "recipes/tiny.yaml"), "trainer.steps=3", f"model.cache_dir={cache}", f"run.output_dir={out}",
            "logging.progress_bar=false", "trainer.prompts_per_step=7", "trainer.samples_per_prompt=4",
            "trainer.expert_per_step=8", "trainer.micro_batch_size=24", "deepspeed.zero_stage=3",
            # 40 KB buckets: the embedding (256 KB) and most matrices travel alone, small tensors together
            "rollout.weight_bucket_mb=0.04", f"rollout.placement={placement}", "logging.save_rollouts=true",
            BENCH, "eval.at_end=true", "eval.save_samples=true"]
    p = run_cli([*torchrun(), "chord/train.py", *args])
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def _groups(out, step):
    rows = [json.loads(x) for x in (out / "rollouts" / f"step_{step}.jsonl").read_text().splitlines()]
    by = {}
    for r in rows:
        by.setdefault(r["group"], Counter())[tuple(r["response_ids"])] += 1
    return by, rows


def test_per_rank_engines_sample_and_train_exactly_like_one_engine(tiny_cache, tmp_path):
    shm_before = {p.name for p in SHM.glob("chord_weights_*")}
    one = _run(tiny_cache, tmp_path / "rank0", "rank0")
    per = _run(tiny_cache, tmp_path / "per_rank", "per_rank")
    assert {p.name for p in SHM.glob("chord_weights_*")} == shm_before  # no weight files, either placement
    for out in (one, per):
        rows = _check_run(out, 3)  # includes gap/logp_max <= 1e-4 every step: every engine got every push
        for r in rows:
            assert r["time/generate_max_rank"] >= r["time/generate_mean_rank"] > 0
            assert r["throughput/rollout_tokens_per_s"] > 0
    for step in (1, 2, 3):
        g1, rows1 = _groups(one, step)
        g2, rows2 = _groups(per, step)
        assert g1 == g2, f"step {step}: different samples per prompt group"
        assert sorted(r["reward"] for r in rows1) == sorted(r["reward"] for r in rows2)
    m1, m2 = _metrics(one), _metrics(per)
    for a, b in zip(m1, m2):
        for k in ("loss/total", "loss/grpo", "loss/sft", "optim/grad_norm", "reward/mean", "gap/logp_max"):
            assert a[k] == pytest.approx(b[k], abs=1e-6), (a["step"], k)
    w1, w2 = (load_file(str(o / "final" / "model.safetensors")) for o in (one, per))
    assert w1.keys() == w2.keys()
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) <= 1e-6
    # sharded evaluation (9 problems over 2 engines: 5 + 4) equals the single engine's, exactly
    e1, e2 = ([json.loads(x) for x in (o / "eval.jsonl").read_text().splitlines()] for o in (one, per))
    assert e1 == e2 and e1[-1]["tiny/problems"] == 9
    s1, s2 = ((o / "eval" / "samples_step_3.jsonl").read_text() for o in (one, per))
    assert s1 == s2
    assert torch.isfinite(torch.tensor([m["eval/overall/avg"] for m in m2 if "eval/overall/avg" in m])).all()
