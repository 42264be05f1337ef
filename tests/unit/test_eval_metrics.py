"""pass@k against brute-force enumeration of every k-subset."""

import itertools
import random

import pytest

from chord.evaluation.metrics import pass_at_k, summarize

pytestmark = pytest.mark.unit


def _brute(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 11])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute(n, c, k), abs=1e-12), (n, c, k)


def test_edges_and_errors():
    assert pass_at_k(10, 0, 3) == 0.0 and pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)  # large n: no overflow, exact
    for bad in [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_summarize():
    rng = random.Random(0)
    correct = [[rng.random() < p for _ in range(6)] for p in (0.0, 0.3, 0.9)]
    out = summarize(correct, 4)
    flat = [x for s in correct for x in s]
    assert out["avg@4"] == pytest.approx(sum(flat) / len(flat))
    assert out["pass@4"] == pytest.approx(sum(_brute(6, sum(s), 4) for s in correct) / 3)
    with pytest.raises(ValueError):
        summarize([], 1)
