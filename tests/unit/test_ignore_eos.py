"""rollout.ignore_eos: a bool only, it reaches vLLM's SamplingParams, and the HF engine runs past EOS with it
(fixed-length responses for benchmarks/vs_trl.py's long regime); evaluation still stops at EOS."""

import dataclasses

import pytest
import torch

from chord.config import ConfigError, RolloutConfig, load_config, validate
from chord.types import Sampling

pytestmark = pytest.mark.unit


def test_ignore_eos_is_a_bool_key():
    assert load_config(None, []).rollout.ignore_eos is False
    assert load_config(None, ["rollout.ignore_eos=true"]).rollout.ignore_eos is True
    with pytest.raises(ConfigError, match="'rollout.ignore_eos'"):
        load_config(None, ["rollout.ignore_eos=maybe"])
    cfg = load_config(None, [])
    cfg.rollout = dataclasses.replace(cfg.rollout, ignore_eos="yes")  # a config built in code, not from YAML
    with pytest.raises(ConfigError, match="'rollout.ignore_eos' must be true or false, got 'yes'"):
        validate(cfg)


def test_ignore_eos_reaches_vllm_sampling_params():
    pytest.importorskip("vllm")
    from chord.rollout.vllm_engine import sampling_params

    s = Sampling(1.0, 1.0, 8)
    assert sampling_params(s, 4, 7, ignore_eos=True).ignore_eos is True
    assert sampling_params(s, 4, 7).ignore_eos is False


def test_hf_engine_runs_past_eos(tmp_path):
    from chord.models.load import load_tokenizer
    from chord.models.tiny import build_tiny_model, sum_prompts
    from chord.rollout.hf_engine import HFEngine

    path = str(build_tiny_model(tmp_path, warmup_steps=0))
    tok = load_tokenizer(path)
    eos, prompts = tok.eos_token_id, sum_prompts(tok, 2)

    def engine(ignore_eos: bool) -> HFEngine:
        eng = HFEngine(path, RolloutConfig(max_new_tokens=6, ignore_eos=ignore_eos), seed=0, dtype="float32")
        head = eng.model.lm_head  # a head that all but always samples EOS: a stopping engine stops at once
        eng.model.lm_head = torch.nn.Linear(head.in_features, head.out_features, bias=True)
        with torch.no_grad():
            eng.model.lm_head.weight.zero_()
            eng.model.lm_head.bias.zero_()
            eng.model.lm_head.bias[eos] = 30.0
        return eng

    stops = engine(False).generate(prompts, 2, step=1)
    assert [r.response_ids for r in stops] == [[eos]] * 4 and not any(r.truncated for r in stops)
    eng = engine(True)
    runs_on = eng.generate(prompts, 2, step=1)
    assert [len(r.response_ids) for r in runs_on] == [6] * 4 and all(r.truncated for r in runs_on)
    assert all(len(r.sampling_logprobs) == 6 for r in runs_on)
    evaluated = eng.generate(prompts, 2, step=1, sampling=Sampling(1.0, 1.0, 6))  # evaluation: stops at EOS
    assert [r.response_ids for r in evaluated] == [[eos]] * 4
