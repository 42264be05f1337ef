"""transformers `generate` rollout engine, for comparison with vLLM and for machines without it.

Slow (no paged KV cache, no continuous batching); vLLM stays the default. Sampling log-probs come
from the processed scores (temperature applied), as vLLM's `processed_logprobs` do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from chord.config import RolloutConfig
from chord.models.load import DTYPES, load_causal_lm, load_tokenizer
from chord.rollout.seeds import request_seed
from chord.types import PromptExample, Rollout, Sampling


class HFEngine:
    def __init__(self, model_path: str, cfg: RolloutConfig, *, seed: int, dtype: str) -> None:
        self.cfg = cfg
        self.model = load_causal_lm(model_path, DTYPES[dtype]).eval()
        self.tokenizer = load_tokenizer(model_path)
        self.generator_seed = seed
        self.version = 0

    @torch.no_grad()
    def generate(self, prompts: Sequence[PromptExample], samples: int, step: int,
                 sampling: Sampling | None = None, slots: Sequence[int] | None = None) -> list[Rollout]:
        s = sampling or Sampling(self.cfg.temperature, self.cfg.top_p, self.cfg.max_new_tokens)
        slots = list(range(len(prompts))) if slots is None else list(slots)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        # rollout.ignore_eos (training rollouts only): no stop token, every response max_new_tokens long;
        # eos_token_id=None replaces the model's generation_config value (checked in tests/unit/test_ignore_eos.py)
        ignore_eos = self.cfg.ignore_eos and sampling is None
        stop = None if ignore_eos else eos
        rollouts: list[Rollout] = []
        for g, p in zip(slots, prompts, strict=True):
            torch.manual_seed(request_seed(self.generator_seed, step, g, samples))  # per (step, slot)
            ids = torch.tensor([p.prompt_ids] * samples)
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                temperature=s.temperature, top_p=s.top_p, top_k=0,
                max_new_tokens=s.max_new_tokens, eos_token_id=stop, pad_token_id=pad,
                output_scores=True, return_dict_in_generate=True,
            )
            new = out.sequences[:, ids.shape[1]:]  # [K, T]
            logps = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], 1)  # [K, T, V]
            tok_lp = logps.gather(-1, new.unsqueeze(-1)).squeeze(-1)
            for k in range(samples):
                resp = new[k].tolist()
                n = resp.index(eos) + 1 if eos in resp and not ignore_eos else len(resp)
                rollouts.append(Rollout(
                    prompt_ids=list(p.prompt_ids), response_ids=resp[:n],
                    sampling_logprobs=tok_lp[k, :n].tolist(),
                    response_text=self.tokenizer.decode(resp[:n], skip_special_tokens=True),
                    truncated=ignore_eos or eos not in resp[:n], group=g, policy_version=self.version,
                ))
        return rollouts

    def push_weights(self, buckets: Iterable[list[tuple[str, torch.Tensor]]], version: int) -> None:
        names: set[str] = set()
        for bucket in buckets:  # load_state_dict copies: the bucket's tensors may be released after it
            missing, unexpected = self.model.load_state_dict(dict(bucket), strict=False)
            if unexpected:
                raise RuntimeError(f"weight push mismatch: unexpected {unexpected}")
            names.update(n for n, _ in bucket)
        expected = {n for n, _ in self.model.named_parameters()}
        if expected - names:
            raise RuntimeError(f"weight push mismatch: missing {sorted(expected - names)}")
        self.version = version

    def sleep(self) -> None:
        """No sleep mode here: the model stays loaded."""

    def close(self) -> None:
        del self.model
