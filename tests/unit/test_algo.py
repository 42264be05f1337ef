"""Hand-computed values and invariants of the pure-torch CHORD maths (docs/algorithm.md)."""

import math

import pytest
import torch

from chord.algo.advantage import group_advantages
from chord.algo.chord_loss import LossSettings, chord_loss
from chord.algo.mu_schedule import mu_at
from chord.algo.policy_loss import k3_kl, ppo_clip_token_loss
from chord.algo.sft_loss import sft_token_weights
from chord.types import EXPERT, IGNORED, ROLLOUT

pytestmark = pytest.mark.unit


def test_group_advantages_hand_values():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    a = group_advantages(r)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std(unbiased=True).item()  # 0.5774
    assert a[0].tolist() == pytest.approx([0.5 / (std + 1e-6), -0.5 / (std + 1e-6)] * 1
                                          + [-0.5 / (std + 1e-6), 0.5 / (std + 1e-6)], rel=1e-6)
    assert a[1].abs().max().item() == 0.0  # a group with one reward has no signal


def test_group_of_one_uses_mean0_std1():
    a = group_advantages(torch.tensor([[0.7], [0.0]]))
    assert a.flatten().tolist() == pytest.approx([0.7 / (1 + 1e-6), 0.0])


@pytest.mark.parametrize("step,expected", [(1, 0.8999), (50, 0.776), (100, 0.475), (150, 0.175), (200, 0.05),
                                           (900, 0.05)])
def test_mu_schedule_chord_mu_values(step, expected):
    assert mu_at(step, peak=0.9, valley=0.05, warmup_steps=0, decay_steps=200) == pytest.approx(expected, abs=6e-4)


def test_mu_schedule_warmup_and_constant():
    kw = dict(peak=0.5, valley=0.02, warmup_steps=200, decay_steps=400)
    assert mu_at(1, **kw) == pytest.approx(0.5 / 200)
    assert mu_at(100, **kw) == pytest.approx(0.25)
    assert mu_at(200, **kw) == pytest.approx(0.5)
    assert mu_at(400, **kw) == pytest.approx(0.02 + 0.48 * 0.5)
    assert mu_at(600, **kw) == pytest.approx(0.02)
    assert mu_at(7, peak=0.1, valley=0.1, warmup_steps=0, decay_steps=0) == 0.1
    with pytest.raises(ValueError):
        mu_at(0, **kw)


def _ppo(logp, old, adv, dual=None):
    lp = torch.tensor([logp], requires_grad=True)
    loss, clipped, ratio = ppo_clip_token_loss(lp, torch.tensor([old]), torch.tensor([adv]),
                                                eps_low=0.2, eps_high=0.2, dual_clip=dual)
    loss.sum().backward()
    return loss.item(), bool(clipped.item()), lp.grad.item()


def test_ppo_branches():
    # inside the window: l = -A r, dl/dlogp = -A r
    loss, clipped, g = _ppo(math.log(1.1), 0.0, 2.0)
    assert (loss, clipped) == (pytest.approx(-2.2), False) and g == pytest.approx(-2.2)
    # A > 0, r > 1 + eps: clipped, zero gradient
    loss, clipped, g = _ppo(math.log(1.5), 0.0, 2.0)
    assert (loss, clipped, g) == (pytest.approx(-2.4), True, 0.0)
    # A > 0, r < 1 - eps: unclipped branch is the max -> gradient flows
    loss, clipped, g = _ppo(math.log(0.5), 0.0, 1.0)
    assert (loss, clipped) == (pytest.approx(-0.5), False) and g == pytest.approx(-0.5)
    # A < 0, r < 1 - eps: clipped
    loss, clipped, g = _ppo(math.log(0.5), 0.0, -1.0)
    assert (loss, clipped, g) == (pytest.approx(0.8), True, 0.0)
    # A < 0, r huge: unclipped (grows), dual clip caps it at -A c
    loss, clipped, g = _ppo(math.log(5.0), 0.0, -1.0)
    assert (loss, clipped) == (pytest.approx(5.0), False) and g == pytest.approx(5.0)
    loss, clipped, g = _ppo(math.log(5.0), 0.0, -1.0, dual=3.0)
    assert (loss, clipped, g) == (pytest.approx(3.0), True, 0.0)


def test_ratio_log_clamp_keeps_exp_finite():
    loss, _, _ = _ppo(0.0, -1000.0, 1.0)
    assert math.isfinite(loss)


def test_k3_kl_nonnegative_and_zero_at_equal():
    lp = torch.tensor([-1.0, -2.0, -0.1])
    assert k3_kl(lp, lp).abs().max().item() == 0.0
    assert (k3_kl(lp, torch.tensor([-3.0, 0.0, -0.5])) > 0).all()


def test_sft_weights():
    lp = torch.log(torch.tensor([0.5, 0.9, 1e-4, 1.0]))
    assert sft_token_weights(lp, "phi").tolist() == pytest.approx([0.25, 0.09, 1e-4 * (1 - 1e-4), 0.0], rel=1e-5)
    assert sft_token_weights(lp, "is").tolist() == pytest.approx([0.5, 0.9, 1e-4, 1.0], rel=1e-5)
    assert sft_token_weights(lp, "none").tolist() == [1.0] * 4
    # 1 - p via expm1 stays exact near p = 1 where 1 - exp(logp) would round to 0
    near_one = torch.tensor([-1e-9], dtype=torch.float32)
    assert sft_token_weights(near_one, "phi").item() == pytest.approx(1e-9, rel=1e-3)
    with pytest.raises(ValueError):
        sft_token_weights(lp, "bogus")


def _toy(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(n, generator=g) * 3
    kind = torch.tensor([ROLLOUT, ROLLOUT, EXPERT, IGNORED] * (n // 4))
    old = logp + 0.3 * torch.randn(n, generator=g)
    adv = torch.randn(n, generator=g)
    ent = torch.rand(n, generator=g)
    return logp, ent, kind, old, adv


def test_chord_loss_hand_computed():
    logp = torch.log(torch.tensor([0.5, 0.25, 0.5, 0.9]))
    kind = torch.tensor([ROLLOUT, ROLLOUT, EXPERT, IGNORED])
    old = logp.clone()  # ratio 1: pg = -A
    adv = torch.tensor([1.0, -2.0, 0.0, 0.0])
    loss, m = chord_loss(logp, torch.zeros(4), kind, old, adv, mu=0.25, settings=LossSettings(sft_weight="phi"),
                         n_rollout=4, n_expert=2)
    grpo = (-1.0 + 2.0) / 4
    sft = (0.25 * math.log(2)) / 2
    assert m["loss/grpo"].item() == pytest.approx(grpo)
    assert m["loss/sft"].item() == pytest.approx(sft)
    assert loss.item() == pytest.approx(0.75 * grpo + 0.25 * sft)


def test_mu0_is_pure_grpo_and_mu1_is_pure_sft():
    logp, ent, kind, old, adv = _toy()
    s = LossSettings()
    l0, m0 = chord_loss(logp, ent, kind, old, adv, mu=0.0, settings=s, n_rollout=6, n_expert=3)
    pg, _, _ = ppo_clip_token_loss(logp, old, adv, eps_low=0.2, eps_high=0.2, dual_clip=None)
    assert l0.item() == pytest.approx(pg[kind == ROLLOUT].sum().item() / 6)
    l1, _ = chord_loss(logp, ent, kind, old, adv, mu=1.0, settings=s, n_rollout=6, n_expert=3)
    w = sft_token_weights(logp, "phi")
    assert l1.item() == pytest.approx((-w * logp)[kind == EXPERT].sum().item() / 3)
    # gradients: mu=0 touches only rollout tokens, mu=1 only expert tokens
    for mu, allowed in ((0.0, ROLLOUT), (1.0, EXPERT)):
        lp = logp.clone().requires_grad_(True)
        chord_loss(lp, ent, kind, old, adv, mu=mu, settings=s, n_rollout=6, n_expert=3)[0].backward()
        assert (lp.grad[kind != allowed] == 0).all() and (lp.grad[kind == allowed] != 0).any()


def test_no_expert_tokens_gives_zero_not_nan():
    logp, ent, _, old, adv = _toy()
    kind = torch.full_like(logp, ROLLOUT, dtype=torch.long)
    lp = logp.clone().requires_grad_(True)
    loss, m = chord_loss(lp, ent, kind, old, adv, mu=0.5, settings=LossSettings(), n_rollout=12, n_expert=0)
    loss.backward()
    assert m["loss/sft"].item() == 0.0 and torch.isfinite(lp.grad).all() and math.isfinite(loss.item())
    kind = torch.zeros_like(kind)  # an all-ignored micro-batch
    loss, m = chord_loss(logp, ent, kind, old, adv, mu=0.5, settings=LossSettings(), n_rollout=0, n_expert=0)
    assert loss.item() == 0.0 and m["max:gap/logp_max"].item() == float("-inf")


def test_kl_and_entropy_terms():
    logp, ent, kind, old, adv = _toy()
    ref = logp - 0.1
    base, _ = chord_loss(logp, ent, kind, old, adv, mu=0.2, settings=LossSettings(), n_rollout=6, n_expert=3)
    kl, m = chord_loss(logp, ent, kind, old, adv, mu=0.2, settings=LossSettings(kl_coef=0.5), n_rollout=6,
                       n_expert=3, ref_logp=ref)
    exp_kl = k3_kl(logp, ref)[kind == ROLLOUT].sum().item() / 6
    assert kl.item() - base.item() == pytest.approx(0.8 * 0.5 * exp_kl, rel=1e-5)
    en, _ = chord_loss(logp, ent, kind, old, adv, mu=0.2, settings=LossSettings(entropy_coef=0.1), n_rollout=6,
                       n_expert=3)
    assert en.item() - base.item() == pytest.approx(-0.8 * 0.1 * ent[kind == ROLLOUT].sum().item() / 6, rel=1e-5)
    with pytest.raises(ValueError):
        chord_loss(logp, ent, kind, old, adv, mu=0.2, settings=LossSettings(kl_coef=0.5), n_rollout=6, n_expert=3)


def test_scale_rewards_group_batch_none_hand_values():
    """algorithm.scale_rewards: group (GRPO), batch (the step's reward std, TRL) and none (Dr. GRPO)."""
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 1.0, 1.0, 1.0]])
    centred = [[0.5, -0.5, -0.5, 0.5], [1.5, -0.5, -0.5, -0.5]]
    assert group_advantages(r, scale="none").tolist() == centred
    s = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 1.0, 1.0]).std(unbiased=True).item()  # 0.9258
    assert group_advantages(r, scale="batch").flatten().tolist() == pytest.approx(
        [c / (s + 1e-6) for row in centred for c in row], rel=1e-6)
    s2 = torch.tensor([3.0, 1.0, 1.0, 1.0]).std(unbiased=True).item()  # 1.0: the second group's own std
    assert group_advantages(r, scale="group")[1].tolist() == pytest.approx([c / (s2 + 1e-6) for c in centred[1]])
    assert group_advantages(torch.tensor([[0.7], [0.0]]), scale="none").flatten().tolist() == pytest.approx([0.7, 0])
    with pytest.raises(ValueError, match="scale must be one of"):
        group_advantages(r, scale="std")


def test_scale_rewards_is_validated_and_defaults_to_the_papers_group_std():
    from chord.config import ConfigError, load_config

    assert load_config(None, []).algorithm.scale_rewards == "group"
    assert load_config(None, ["algorithm.scale_rewards=none"]).algorithm.scale_rewards == "none"
    with pytest.raises(ConfigError, match="algorithm.scale_rewards"):
        load_config(None, ["algorithm.scale_rewards=std"])
