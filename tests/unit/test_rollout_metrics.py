"""chord.train.reward_metrics: the step's reward, length and exploration numbers over all scored rollouts."""

import pytest

from chord.evaluation.exploration import distinct_n
from chord.train import reward_metrics
from chord.types import Rollout

pytestmark = pytest.mark.unit


def _rollouts(groups: list[list[tuple[float, list[int]]]]) -> list[Rollout]:
    """Group g's samples are consecutive rollouts with group = g: (reward, response ids) each."""
    return [
        Rollout(prompt_ids=[1], response_ids=ids, sampling_logprobs=[-0.1] * len(ids), response_text="",
                truncated=False, group=g, policy_version=0, reward=reward, reward_info={"correct": float(reward == 1)})
        for g, samples in enumerate(groups)
        for reward, ids in samples
    ]  # fmt: skip


def test_all_equal_fraction_counts_groups_without_signal():
    m = reward_metrics(_rollouts([
        [(1.0, [1, 2]), (1.0, [1, 2])],      # all solved: no signal
        [(0.0, [3, 4]), (0.0, [5])],         # none solved: no signal
        [(1.0, [1, 2, 3]), (0.0, [1, 2])],   # a comparison: signal
        [(0.5, [7, 8]), (0.5000001, [7])],   # any difference is a nonzero advantage
    ]), errors=0)  # fmt: skip
    assert m["rollout/all_equal_frac"] == 2 / 4
    assert m["reward/accuracy"] == 3 / 8  # the existing keys are unchanged


def test_distinct_2_is_the_mean_over_groups_of_the_groups_bigrams():
    groups = [
        [(0.0, [1, 2, 3]), (0.0, [1, 2, 3])],  # identical: 2 distinct of 4 bigrams
        [(0.0, [1, 2, 3]), (1.0, [3, 2, 1])],  # nothing repeats: 4 of 4
        [(0.0, [9]), (1.0, [])],               # too short for a bigram: 0
    ]  # fmt: skip
    m = reward_metrics(_rollouts(groups), errors=0)
    assert m["rollout/distinct_2"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # per group, not pooled: the pooled bigrams of groups 0 and 1 would give 4 / 8
    assert distinct_n([ids for g in groups[:2] for _, ids in g], 2) == 0.5


def test_groups_are_read_from_the_group_field_not_positions():
    # a rank-ordered exchange keeps each group's samples together, but the metric does not rely on it
    rs = _rollouts([[(1.0, [1, 2]), (1.0, [3, 4])], [(0.0, [1, 2]), (1.0, [1, 2])]])
    interleaved = [rs[0], rs[2], rs[1], rs[3]]
    m, mi = reward_metrics(rs, errors=0), reward_metrics(interleaved, errors=0)
    assert m["rollout/all_equal_frac"] == mi["rollout/all_equal_frac"] == 0.5
    assert m["rollout/distinct_2"] == mi["rollout/distinct_2"] == pytest.approx((1.0 + 0.5) / 2)


def test_one_sample_per_prompt_has_no_all_equal_fraction():
    m = reward_metrics(_rollouts([[(1.0, [1, 2, 3])], [(0.0, [1, 2])]]), errors=0)
    assert "rollout/all_equal_frac" not in m  # K = 1: nothing to compare (the advantage is R / (1 + eps))
    assert m["rollout/distinct_2"] == 1.0
