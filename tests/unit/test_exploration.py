"""chord.evaluation.exploration: pass@k curve against brute-force enumeration, distinct-n, all-equal groups."""

import itertools
import math

import pytest

from chord.evaluation.exploration import all_equal_fraction, distinct_n, mean_distinct_n, pass_at_k_curve

pytestmark = pytest.mark.unit


def brute_pass_at_k(sample: list[bool], k: int) -> float:
    """Share of all k-subsets of the n samples that hold a correct one: the estimator's definition."""
    subsets = list(itertools.combinations(sample, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        sample = [True] * c + [False] * (n - c)
        curve = pass_at_k_curve([sample])
        assert curve == pytest.approx([brute_pass_at_k(sample, k) for k in range(1, n + 1)], abs=1e-12)


def test_pass_at_k_curve_averages_problems_and_rises_with_k():
    problems = [[True, False, False, False], [False] * 4, [True, True, False, True, False]]
    curve = pass_at_k_curve(problems)  # the fewest samples (4) bound k
    assert len(curve) == 4
    for k, value in enumerate(curve, start=1):
        assert value == pytest.approx(sum(brute_pass_at_k(p, k) for p in problems) / 3)
    assert curve == sorted(curve)
    assert pass_at_k_curve(problems, max_k=2) == curve[:2]


def test_pass_at_k_edges():
    assert pass_at_k_curve([[False] * 6]) == [0.0] * 6  # c = 0
    assert pass_at_k_curve([[True] * 6]) == [1.0] * 6  # c = n
    assert pass_at_k_curve([[True] + [False] * 5]) == pytest.approx([k / 6 for k in range(1, 7)])
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k_curve([[True, False], [True, False, True]], max_k=3)  # k > n for the first problem
    with pytest.raises(ValueError):
        pass_at_k_curve([[True]], max_k=0)
    with pytest.raises(ValueError):
        pass_at_k_curve([])


def test_pass_at_k_is_stable_for_large_n():
    # C(5000, 2500) overflows a float; the running product does not, and matches the closed form for c = 1
    n = 5000
    curve = pass_at_k_curve([[True] + [False] * (n - 1)], max_k=n)
    assert all(math.isfinite(v) for v in curve)
    assert curve[2499] == pytest.approx(2500 / n, rel=1e-9) and curve[-1] == 1.0


def test_distinct_n():
    assert distinct_n([[1, 2, 3, 4]] * 4, 2) == pytest.approx(1 / 4)  # identical samples: 1 / K
    assert distinct_n(["the cat sat"] * 3, 1) == pytest.approx(1 / 3)
    assert distinct_n([[1, 2, 3], [4, 5, 6]], 2) == 1.0  # nothing shared
    assert distinct_n([[1, 1, 1, 1]], 1) == 0.25  # repeats inside one sample count too
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)  # text as words: (a b) shared
    assert distinct_n([[1], [2]], 2) == 0.0  # shorter than n: no n-grams at all
    assert distinct_n([[1], [2, 3]], 2) == 1.0
    with pytest.raises(ValueError):
        distinct_n([[1, 2]], 0)
    assert mean_distinct_n([[[1, 2]] * 2, [[1, 2], [3, 4]]], 1) == pytest.approx((0.5 + 1.0) / 2)


def test_all_equal_fraction():
    assert all_equal_fraction([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.5001]]) == 0.5
    assert all_equal_fraction([[0.0, 1.0]]) == 0.0
    assert all_equal_fraction([[1.0, 1.0]]) == 1.0
    with pytest.raises(ValueError):
        all_equal_fraction([])
    with pytest.raises(ValueError):
        all_equal_fraction([[1.0]])  # a group of one has nothing to compare against
