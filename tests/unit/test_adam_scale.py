"""Adam cancels the loss scale: the SFT half of CHORD-mu at mu = 0.9 moves the weights like pure SFT (mu = 1).

The measurement behind docs/benchmark.md#the-default-grid-five-methods-three-seeds (why CHORD-mu collapses):
chord's own objective (chord.algo.chord_loss, sft_weight "none", expert tokens only, so
L = mu * L_SFT) on the shipped `cards` base, AdamW with chord's default settings (TrainerConfig), one and five
steps from the same weights at mu = 0.9 and mu = 1.0. Adam's first update is lr * m_hat / (sqrt(v_hat) + eps)
= lr * g / (|g| + eps) elementwise, and later ones are ratios of sums of c * g and c^2 * g^2: a constant factor c
on the loss cancels except through eps. So the gradients differ by exactly 0.9 while the updates agree up to a
relative ~eps / |g|, and a loss scaled down until |g| << eps (x 1e-9) breaks it: the check can fail. Gradient
clipping (trainer.grad_clip) is left out: it rescales the whole gradient, which Adam cancels the same way.

    HF_HUB_OFFLINE=1 .venv/bin/pytest -q -p no:cacheprovider tests/unit/test_adam_scale.py
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from chord.algo.chord_loss import LossSettings, chord_loss
from chord.config.schema import TrainerConfig
from chord.models.cards import build_cards_model
from chord.tasks import cards
from chord.types import EXPERT, IGNORED

pytestmark = pytest.mark.unit

# Measured on the shipped base, 8 expert rows a step, seeds 0-2 (fp32, the same in fp64: eps, not rounding), as
# max over parameter tensors of ||update(0.9) - update(1.0)|| / ||update(1.0)||: 6.2-6.7e-3 after one step and
# 2.8e-3 after five; over all weights together 1.1e-3 and 5.5e-4. The worst tensors are those whose gradient is
# near eps: lm_head (rows of tokens the batch never predicts) and the attention key biases (softmax is invariant to
# them). With the loss x 1e-9 it is 0.100: the updates then scale with the loss, like SGD's (1 - 0.9).
TOLERANCE = 1e-2
SETTINGS = LossSettings(sft_weight="none")  # plain SFT token weights, as recipes/cards_chord_mu.yaml


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_cards_model(tmp_path_factory.mktemp("cache"))  # the shipped default base: no build
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(str(folder))


def expert_batches(tokenizer, n_steps: int, rows: int = 8, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`n_steps` batches of expert demonstrations (prompt -> step-by-step solution), loss on the answer only."""
    rng = random.Random(seed)
    hands = cards.all_hands()
    out = []
    for _ in range(n_steps):
        ids, kind = [], []
        for _ in range(rows):
            h = rng.choice(hands)
            msgs = [{"role": "user", "content": cards.prompt_text(h, cards.ID_RULE)}]
            p = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            c = tokenizer(p, add_special_tokens=False)["input_ids"]
            t = tokenizer(cards.expert_solution(h, cards.ID_RULE) + tokenizer.eos_token,
                          add_special_tokens=False)["input_ids"]
            ids.append(c + t)
            kind.append([IGNORED] * len(c) + [EXPERT] * len(t))
        n = max(map(len, ids))
        pad = tokenizer.pad_token_id
        out.append({"input_ids": torch.tensor([x + [pad] * (n - len(x)) for x in ids]),
                    "attention_mask": torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids]),
                    "kind": torch.tensor([k + [IGNORED] * (n - len(k)) for k in kind])})
    return out


def chord_objective(model, batch: dict[str, torch.Tensor], mu: float, scale: float = 1.0) -> torch.Tensor:
    """chord_loss on a batch of expert rows only: L = (1 - mu) * 0 + mu * L_SFT (times `scale`)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]  # [B, L-1, V]
    logp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0].flatten()  # [T]
    kind = batch["kind"][:, 1:].flatten()  # [T]: the token each position predicts
    n_expert = int((kind == EXPERT).sum())
    zeros = torch.zeros_like(logp)
    loss, _ = chord_loss(logp, zeros, kind, zeros, zeros, mu=mu, settings=SETTINGS, n_rollout=0, n_expert=n_expert)
    return loss * scale


def adam_run(model, batches, mu: float, scale: float = 1.0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """AdamW with chord's defaults from the model's weights, one step per batch; returns (first step's
    gradients, update = final weights - initial weights). The model's weights are restored afterwards."""
    t = TrainerConfig()
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps,
                            weight_decay=t.weight_decay)
    grads = []
    try:
        for batch in batches:
            opt.zero_grad()
            chord_objective(model, batch, mu, scale).backward()
            if not grads:
                grads = [p.grad.detach().clone() for p in params]
            opt.step()
        return grads, [p.detach() - s for p, s in zip(params, start, strict=True)]
    finally:
        with torch.no_grad():
            for p, s in zip(params, start, strict=True):
                p.copy_(s)


def max_relative_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """max over parameter tensors of ||a - b|| / ||b|| (tensors that are 0 in b skipped)."""
    return max(float((x - y).norm() / y.norm()) for x, y in zip(a, b, strict=True) if y.norm() > 0)


def test_one_adam_step_at_mu_0_9_equals_pure_sft_though_the_gradients_differ_by_0_9(base):
    model, tok = base
    batches = expert_batches(tok, 1)
    g9, u9 = adam_run(model, batches, mu=0.9)
    g1, u1 = adam_run(model, batches, mu=1.0)
    # the gradient carries the factor 0.9 (measured 1.3-1.5e-6: fp32 rounding of sums that nearly cancel)
    assert max_relative_difference(g9, [0.9 * g for g in g1]) < 1e-5
    assert max(float(g.abs().max()) for g in g1) > 1e-3  # a real gradient, not one eps could swamp
    rel = max_relative_difference(u9, u1)
    print(f"one step: max relative update difference {rel:.2e}")
    assert rel < TOLERANCE  # the update does not: Adam divides the 0.9 out


def test_eps_breaks_the_cancellation_when_the_gradient_is_tiny(base):
    # x 1e-9 puts |g| far below eps = 1e-8: the Adam step is ~ lr * g / eps, linear in the loss, like SGD. It is
    # then ~1e-8, below fp32's rounding step of the weights, and smaller than the (equal) decoupled weight decay:
    # measured in float64, on the Adam part of the update only
    model, tok = base
    model = copy.deepcopy(model).to(torch.float64)
    batches = expert_batches(tok, 1)
    t = TrainerConfig()
    start = [p.detach().clone() for p in model.parameters()]
    (_, u9), (_, u1) = (adam_run(model, batches, mu=mu, scale=1e-9) for mu in (0.9, 1.0))
    u9, u1 = ([u + t.lr * t.weight_decay * s for u, s in zip(us, start, strict=True)] for us in (u9, u1))
    rel = max_relative_difference(u9, u1)
    print(f"loss x 1e-9: max relative update difference {rel:.2e}")
    assert rel > 5 * TOLERANCE and rel == pytest.approx(0.1, abs=0.02)


def test_five_adam_steps_at_mu_0_9_still_equal_pure_sft(base):
    model, tok = base
    batches = expert_batches(tok, 5, seed=1)
    _, u9 = adam_run(model, batches, mu=0.9)
    _, u1 = adam_run(model, batches, mu=1.0)
    rel = max_relative_difference(u9, u1)
    print(f"five steps: max relative update difference {rel:.2e}")
    assert rel < TOLERANCE
