"""Rollout engines against the learner's log-probs, and in-place weight pushes into vLLM."""

import pytest
import torch

from chord.config import RolloutConfig
from chord.models.load import load_causal_lm, load_tokenizer
from chord.models.tiny import sum_prompts
from chord_kernels.full import token_logp_entropy

pytestmark = pytest.mark.integration


_prompts = sum_prompts  # the tiny task's questions, chat-templated


def _worst_gap(model, rollouts):
    worst = 0.0
    for r in rollouts:
        x = torch.tensor([r.prompt_ids + r.response_ids])
        with torch.no_grad():
            h = model.model(input_ids=x).last_hidden_state[0, len(r.prompt_ids) - 1 : -1]
            lp, _ = token_logp_entropy(h, model.lm_head.weight, None, torch.tensor(r.response_ids))
        worst = max(worst, (lp - torch.tensor(r.sampling_logprobs)).abs().max().item())
    return worst


def test_hf_engine_logprobs_and_push(tiny_cache):
    from chord.models.tiny import build_tiny_model
    from chord.rollout.hf_engine import HFEngine

    path = str(build_tiny_model(tiny_cache))
    tok, model = load_tokenizer(path), load_causal_lm(path, torch.float32).eval()
    eng = HFEngine(path, RolloutConfig(max_new_tokens=12), seed=0, dtype="float32")
    rs = eng.generate(_prompts(tok), 4, step=1)
    assert len(rs) == 12 and [r.group for r in rs[:5]] == [0, 0, 0, 0, 1]
    assert _worst_gap(model, rs) <= 1e-4
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    named = list(model.named_parameters())
    eng.push_weights((named[i:i + 4] for i in range(0, len(named), 4)), version=1)  # in buckets
    assert _worst_gap(model, eng.generate(_prompts(tok), 2, step=2)) <= 1e-4


def test_vllm_weight_push_with_long_prompts(tiny_cache, tmp_path):
    """After a push, vLLM samples from the new weights, also for prompts >= 32 tokens (prefix cache)."""
    from vllm import TokensPrompt

    from chord.models.tiny import build_tiny_model
    from chord.rollout.seeds import request_seed
    from chord.rollout.vllm_engine import VLLMEngine, sampling_params
    from chord.types import Sampling

    path = str(build_tiny_model(tiny_cache))
    tok, model = load_tokenizer(path), load_causal_lm(path, torch.float32).eval()
    prompts = _prompts(tok)
    for p in prompts:
        p.prompt_ids = p.prompt_ids[:-4] * 3 + p.prompt_ids[-4:]  # > 32 tokens, shared prefix blocks
    eng = VLLMEngine(path, RolloutConfig(max_new_tokens=12), seed=0, dtype="float32", max_model_len=256,
                     multiprocess=False)
    try:
        rollouts = eng.generate(prompts, 4, 1)
        assert _worst_gap(model, rollouts) <= 1e-4
        # the texts decoded in one batch after generation equal vLLM's own incremental detokenizer's
        params = [sampling_params(Sampling(1.0, 1.0, 12), 4, request_seed(0, 1, i, 4)) for i in range(len(prompts))]
        for p in params:
            p.detokenize = True
        outs = eng.llm.generate([TokensPrompt(prompt_token_ids=list(p.prompt_ids)) for p in prompts], params,
                                use_tqdm=False)
        theirs = [(list(c.token_ids), c.text) for o in outs for c in o.outputs]
        assert [(r.response_ids, r.response_text) for r in rollouts] == theirs
        assert any(r.response_ids[-1] == tok.eos_token_id for r in rollouts)  # a special token the text skips
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        named = [(n, t.detach()) for n, t in model.named_parameters()]
        eng.push_weights((named[i:i + 3] for i in range(0, len(named), 3)), version=1)  # 9 buckets, one reload
        assert _worst_gap(model, eng.generate(prompts, 4, 2)) <= 1e-4
    finally:
        eng.close()
