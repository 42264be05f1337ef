"""The GRPO / SFT options beyond the paper's defaults (docs/algorithm.md): SFT weight family and cut-off, loss
aggregation modes, truncated importance sampling, zero-variance group filtering, the soft overlong penalty,
and an oracle written from Trinity-RFT's published CHORD formula."""

import math
from types import SimpleNamespace

import pytest
import torch

from chord.algo.advantage import group_advantages, informative_groups
from chord.algo.chord_loss import LossSettings, chord_loss
from chord.algo.sft_loss import sft_token_weights
from chord.batching import Row, aggregation_scales, collate, count_tokens, expert_row, rollout_row
from chord.config import ChordConfig, ConfigError, load_config
from chord.config.schema import validate
from chord.rewards.overlong import apply_overlong_penalty, overlong_penalty
from chord.types import EXPERT, IGNORED, ROLLOUT, ExpertExample, LoopState, Rollout

pytestmark = pytest.mark.unit


# -- SFT token weights -------------------------------------------------------------------------------------------
def test_sft_weight_family_hand_values_and_special_cases():
    p = torch.tensor([0.1, 0.5, 0.8, 0.999], dtype=torch.float64)
    lp = p.log()
    torch.testing.assert_close(sft_token_weights(lp, "one_minus_p"), 1 - p)
    torch.testing.assert_close(sft_token_weights(lp, "power", exponents=(2.0, 0.5)), p**2 * (1 - p) ** 0.5)
    for special, ab in (("phi", (1.0, 1.0)), ("is", (1.0, 0.0)), ("one_minus_p", (0.0, 1.0)), ("none", (0.0, 0.0))):
        torch.testing.assert_close(sft_token_weights(lp, "power", exponents=ab), sft_token_weights(lp, special))
    with pytest.raises(ValueError, match="unknown SFT weight"):
        sft_token_weights(lp, "p2")


def test_sft_cutoff_gives_no_loss_and_no_gradient_above_it():
    lp = torch.tensor([0.3, 0.6, 0.95]).log().requires_grad_()
    kind = torch.full((3,), EXPERT)
    zeros = torch.zeros(3)
    loss, m = chord_loss(lp, zeros, kind, zeros, zeros, mu=1.0, n_rollout=0, n_expert=3,
                         settings=LossSettings(sft_weight="one_minus_p", sft_cutoff_prob=0.9))
    loss.backward()
    p = lp.detach().exp()
    assert lp.grad[2] == 0 and (lp.grad[:2] != 0).all()
    torch.testing.assert_close(lp.grad[:2], -(1 - p[:2]) / 3)  # d(-w logp)/dlogp with w detached
    assert loss.item() == pytest.approx(float(-((1 - p[:2]) * lp.detach()[:2]).sum() / 3))
    assert m["min:sft/weight_min"].item() == 0.0


# -- loss aggregation --------------------------------------------------------------------------------------------
def _step_rows():
    """3 rollout rows (responses of 2, 3, 5 tokens) and 2 expert rows (1 and 4 tokens), prompts of 3 tokens."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for n, kind, adv in ((2, ROLLOUT, 1.0), (3, ROLLOUT, -0.5), (5, ROLLOUT, 2.0), (1, EXPERT, 0.0), (4, EXPERT, 0.0)):
        ids = torch.randint(0, 20, (3 + n,), generator=g).tolist()
        old = [0.0, 0.0] + (-torch.rand(n, generator=g)).tolist() if kind == ROLLOUT else [0.0] * (2 + n)
        rows.append(Row(ids, [IGNORED] * 2 + [kind] * n, old, adv))
    return rows


def _per_row_token_losses(rows, logp_rows, settings):
    """Each row's token losses, computed one token at a time (the terms' formulas, float64)."""
    out = []
    for row, lps in zip(rows, logp_rows):
        losses = []
        for k, lp, old in zip(row.kind, lps, row.old_logp):
            if k == ROLLOUT:
                r = math.exp(lp - old)
                losses.append(max(-row.advantage * r, -row.advantage * min(max(r, 1 - settings.eps_low),
                                                                           1 + settings.eps_high)))
            elif k == EXPERT:
                p = math.exp(lp)
                losses.append(-p * (1 - p) * lp)  # phi
        out.append((row.kind[-1], losses))
    return out


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_aggregation_modes_equal_their_formulas(mode):
    rows = _step_rows()
    g = torch.Generator().manual_seed(2)
    logp_rows = [(-torch.rand(len(r.kind), generator=g, dtype=torch.float64)).tolist() for r in rows]
    settings = LossSettings(sft_weight="phi")
    mu = 0.3
    per_row = _per_row_token_losses(rows, logp_rows, settings)

    def term(kind):
        seqs = [ls for k, ls in per_row if k == kind]
        if mode == "token-mean":
            return sum(map(sum, seqs)) / sum(map(len, seqs))
        if mode == "seq-mean-token-mean":
            return sum(sum(ls) / len(ls) for ls in seqs) / len(seqs)
        return sum(sum(ls) for ls in seqs) / len(seqs)

    expected = (1 - mu) * term(ROLLOUT) + mu * term(EXPERT)
    aggregation_scales(rows, mode, mode)
    batch = collate(rows, 0, packed=False)
    n_r, n_e = count_tokens(rows)
    logp = torch.zeros(batch.kind.shape, dtype=torch.float64)
    for i, lps in enumerate(logp_rows):
        logp[i, : len(lps)] = torch.tensor(lps, dtype=torch.float64)
    sel = batch.kind != IGNORED
    loss, _ = chord_loss(logp[sel], torch.zeros_like(logp[sel]), batch.kind[sel], batch.old_logp[sel].double(),
                         batch.advantages[sel].double(), mu=mu, settings=settings, n_rollout=n_r, n_expert=n_e,
                         scale=None if batch.scale is None else batch.scale[sel].double())
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert (batch.scale is None) == (mode == "token-mean")


def test_aggregation_rejects_an_unknown_mode_and_the_config_validates_it():
    with pytest.raises(ValueError, match="loss aggregation"):
        aggregation_scales(_step_rows(), "seq-sum", "token-mean")
    with pytest.raises(ConfigError, match="algorithm.sft_loss_agg_mode"):
        load_config(None, ["algorithm.sft_loss_agg_mode=sequence"])


# -- truncated importance sampling -------------------------------------------------------------------------------
def test_tis_weights_the_policy_gradient_by_the_capped_learner_engine_ratio():
    lp = torch.tensor([-1.0, -0.5, -2.0, -0.1], dtype=torch.float64)
    old = torch.tensor([-1.0, -1.5, -1.9, -0.1], dtype=torch.float64)  # engine log-probs: ratios 1, e, e^-0.1, 1
    adv = torch.tensor([1.0, -1.0, 2.0, 0.5], dtype=torch.float64)
    kind = torch.full((4,), ROLLOUT)
    x = lp.clone().requires_grad_()
    loss, m = chord_loss(x, torch.zeros(4, dtype=torch.float64), kind, old, adv, mu=0.0, n_rollout=4, n_expert=0,
                         settings=LossSettings(tis_cap=2.0))
    loss.backward()
    w = torch.clamp(torch.exp(lp - old), max=2.0)
    torch.testing.assert_close(x.grad, -adv * w / 4)  # ratio to the learner's own policy is 1: no clip
    assert loss.item() == pytest.approx(float((-adv * w).sum() / 4))
    assert m["policy/tis_capped_frac"].item() == pytest.approx(0.25)  # e > 2
    assert m["policy/clip_frac"].item() == 0.0
    # no mismatch: TIS is plain PPO inside the clip window
    plain, _ = chord_loss(lp, torch.zeros(4, dtype=torch.float64), kind, lp, adv, mu=0.0, n_rollout=4, n_expert=0,
                          settings=LossSettings())
    tis, _ = chord_loss(lp, torch.zeros(4, dtype=torch.float64), kind, lp, adv, mu=0.0, n_rollout=4, n_expert=0,
                        settings=LossSettings(tis_cap=2.0))
    assert tis.item() == plain.item()


# -- zero-variance group filtering -------------------------------------------------------------------------------
K = 4


def _rollouts(rewards):
    g = torch.Generator().manual_seed(3)
    out = []
    for i, r in enumerate(rewards):
        n = 2 + i % 3
        out.append(Rollout([1, 2, 3], torch.randint(0, 20, (n,), generator=g).tolist(),
                           (-torch.rand(n, generator=g)).tolist(), "", False, i // K, 0, reward=r))
    return out


def _cfg(**algorithm):
    return SimpleNamespace(trainer=SimpleNamespace(samples_per_prompt=K),
                           algorithm=SimpleNamespace(filter_groups=True, **algorithm))


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_filtered_groups_leave_denominators_and_gradient_as_if_never_sampled(scale):
    from chord.train import kept_groups

    rewards = [1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0]  # groups 1 and 3 are all-equal
    sampled = _rollouts(rewards)
    metrics = {}
    kept, kept_rewards = kept_groups(_cfg(), sampled, metrics)
    assert metrics["rollout/groups_kept"] == 2.0 and [r.group for r in kept] == [0] * K + [2] * K
    never = [r for r in sampled if r.group in (0, 2)]  # the run that sampled only the informative groups
    torch.testing.assert_close(kept_rewards, torch.tensor([r.reward for r in never]).view(-1, K), check_dtype=False)

    def grad(rollouts, rw):
        adv = group_advantages(rw, 1e-6, scale).flatten().tolist()
        rows = [rollout_row(r, a) for r, a in zip(rollouts, adv)]
        rows += [expert_row(ExpertExample([4, 5, 6, 7], [0, 0, 1, 1], 0))]
        aggregation_scales(rows, "seq-mean-token-mean", "token-mean")
        n_r, n_e = count_tokens(rows)
        b = collate(rows, 0, packed=True)
        sel = b.kind != IGNORED
        lp = (-0.1 * torch.arange(int(sel.sum()), dtype=torch.float32) - 0.2).requires_grad_()
        loss, _ = chord_loss(lp, torch.zeros_like(lp), b.kind[sel], b.old_logp[sel], b.advantages[sel], mu=0.2,
                             settings=LossSettings(), n_rollout=n_r, n_expert=n_e, scale=b.scale[sel])
        loss.backward()
        return (n_r, n_e), loss.item(), lp.grad

    never_rewards = torch.tensor([r.reward for r in never]).view(-1, K)
    (n1, l1, g1), (n2, l2, g2) = grad(kept, kept_rewards), grad(never, never_rewards)
    assert n1 == n2 and l1 == l2 and torch.equal(g1, g2)
    assert count_tokens([rollout_row(r, 0.0) for r in sampled])[0] > n1[0]  # unfiltered, they would count


def test_informative_groups_and_filter_off():
    from chord.train import kept_groups

    r = torch.tensor([[1.0, 1.0], [0.0, 0.5], [0.3, 0.3]])
    assert informative_groups(r).tolist() == [False, True, False]
    sampled = _rollouts([1.0] * 8)
    cfg = _cfg()
    cfg.algorithm.filter_groups = False
    kept, rewards = kept_groups(cfg, sampled, {})
    assert kept == sampled and rewards.shape == (2, K)


class _NoLearner:
    def train_step(self, *a, **k):
        raise AssertionError("an empty step must not reach the optimizer")


def test_a_step_with_nothing_left_makes_no_update():
    """Every group filtered and no expert rows: no forward, no optimizer or lr-schedule step (Adam's moments and
    weight decay untouched); the engine keeps the weights it holds, which are still the learner's."""
    from chord.train import learn

    cfg = ChordConfig()
    cfg.algorithm.filter_groups = True
    run = SimpleNamespace(cfg=cfg, dist=SimpleNamespace(world=1, rank=0), learner=_NoLearner(),
                          state=LoopState(step=4, engine_step=4))
    m = learn(run, 5, [], (0, 0), 0.1, {})
    assert m == {"optim/empty_step": 1.0} and run.state.engine_step == 5 and run.state.nonfinite_streak == 0


def test_filter_groups_needs_two_samples():
    cfg = ChordConfig()
    cfg.algorithm.filter_groups, cfg.trainer.samples_per_prompt = True, 1
    with pytest.raises(ConfigError, match="algorithm.filter_groups"):
        validate(cfg)


# -- soft overlong penalty ---------------------------------------------------------------------------------------
def test_overlong_penalty_hand_values():
    # DAPO eq. 13 with L_max = 48, L_cache = 8: 0 up to 40 tokens, then linear to -penalty at 48
    assert [overlong_penalty(n, 48, 8, 1.0) for n in (10, 40, 41, 44, 48)] == [0.0, 0.0, -0.125, -0.5, -1.0]
    assert overlong_penalty(46, 48, 8, 0.5) == pytest.approx(-0.375)
    assert overlong_penalty(48, 48, 0, 1.0) == 0.0


def test_overlong_penalty_keeps_a_right_answer_solved():
    from chord.rewards import is_correct

    right = Rollout([1], [5] * 46, [0.0] * 46, "", False, 0, 0, reward=1.0, reward_info={})
    short = Rollout([1], [5] * 10, [0.0] * 10, "", False, 0, 0, reward=0.0, reward_info={"correct": 0.0})
    apply_overlong_penalty([right, short], 48, 8, 1.0)
    assert right.reward == pytest.approx(0.25) and is_correct(right.reward, right.reward_info)
    assert right.reward_info["overlong_buffer"] == pytest.approx(-0.75)
    assert short.reward == 0.0 and short.reward_info == {"correct": 0.0, "overlong_buffer": 0.0}


def test_overlong_buffer_must_fit_the_response_cap():
    with pytest.raises(ConfigError, match="reward.overlong_buffer"):
        load_config(None, ["reward.overlong_buffer=48", "rollout.max_new_tokens=48"])


# -- Trinity-RFT's CHORD objective, from its published formula ---------------------------------------------------
def test_chord_equals_trinitys_formula_on_one_micro_batch():
    """Trinity-RFT's mix_chord loss as its documentation writes it: (1 - mu) x token-mean PPO loss with the dual
    clip c = 3 over the usual (rollout) tokens, plus mu x the phi-weighted NLL over the expert tokens, the latter a
    token mean or, with use_token_level_loss_in_sft off, a mean of per-sequence token means. Written here one token
    at a time in float64; with one micro-batch holding the whole step chord's loss and gradient equal it."""
    g = torch.Generator().manual_seed(7)
    rows = _step_rows()
    logp_rows = [(-2 * torch.rand(len(r.kind), generator=g, dtype=torch.float64)).tolist() for r in rows]
    mu, c, eps = 0.37, 3.0, 0.2
    for sft_mode in ("token-mean", "seq-mean-token-mean"):
        leaves = [torch.tensor(lps, dtype=torch.float64, requires_grad=True) for lps in logp_rows]
        usual, expert_seqs = [], []
        for row, lps in zip(rows, leaves):
            seq = []
            for t, k in enumerate(row.kind):
                if k == ROLLOUT:
                    r = torch.exp(lps[t] - row.old_logp[t])
                    a = row.advantage
                    pg = torch.maximum(-a * r, -a * torch.clamp(r, 1 - eps, 1 + eps))
                    usual.append(torch.minimum(pg, torch.tensor(-a * c, dtype=torch.float64)) if a < 0 else pg)
                elif k == EXPERT:
                    p = torch.exp(lps[t]).detach()
                    seq.append(-p * (1 - p) * lps[t])
            if seq:
                expert_seqs.append(seq)
        grpo = torch.stack(usual).mean()
        sft = (torch.stack([x for s in expert_seqs for x in s]).mean() if sft_mode == "token-mean"
               else torch.stack([torch.stack(s).mean() for s in expert_seqs]).mean())
        trinity = (1 - mu) * grpo + mu * sft
        trinity.backward()

        ours_rows = _step_rows()
        aggregation_scales(ours_rows, "token-mean", sft_mode)
        b = collate(ours_rows, 0, packed=True)
        sel = b.kind != IGNORED
        pos = torch.zeros(b.kind.shape, dtype=torch.float64)
        # packed rows: each row's n - 1 target positions, then its last position (kind IGNORED)
        at = 0
        for row, lps in zip(ours_rows, logp_rows):
            pos[0, at : at + len(lps)] = torch.tensor(lps, dtype=torch.float64)
            at += len(row.input_ids)
        x = pos[sel].clone().requires_grad_()
        n_r, n_e = count_tokens(ours_rows)
        loss, _ = chord_loss(x, torch.zeros_like(x), b.kind[sel], b.old_logp[sel].double(), b.advantages[sel].double(),
                             mu=mu, settings=LossSettings(dual_clip=c), n_rollout=n_r, n_expert=n_e,
                             scale=None if b.scale is None else b.scale[sel].double())
        loss.backward()
        assert loss.item() == pytest.approx(trinity.item(), rel=1e-6, abs=1e-12)
        theirs = torch.cat([lf.grad[[k != IGNORED for k in row.kind]] for row, lf in zip(rows, leaves)])
        torch.testing.assert_close(x.grad, theirs, rtol=1e-6, atol=1e-12)


def test_recipe_keys_reach_the_loss_settings():
    from chord.learner import loss_settings

    cfg = load_config(None, ["algorithm.sft_weight=power", "algorithm.sft_weight_exponents=[0.5,2]",
                             "algorithm.sft_cutoff_prob=0.9", "algorithm.tis_cap=2", "algorithm.dual_clip=3"])
    s = loss_settings(cfg)
    assert (s.sft_weight, s.sft_exponents, s.sft_cutoff_prob, s.tis_cap, s.dual_clip) == ("power", (0.5, 2.0), 0.9,
                                                                                         2.0, 3.0)
    with pytest.raises(ConfigError, match="algorithm.tis_cap"):
        load_config(None, ["algorithm.tis_cap=0.5"])
    with pytest.raises(ConfigError, match="algorithm.sft_weight_exponents"):
        load_config(None, ["algorithm.sft_weight_exponents=[1]"])
