"""chord.analysis.seed_stats: exact t quantiles, mean and difference intervals over seeds, paired vs Welch."""

import json
import math
from pathlib import Path

import pytest

from chord.analysis.seed_stats import diff_ci, mean_ci, paired_diff_ci, t975, verdict

pytestmark = pytest.mark.unit
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks/results"


def _t_cdf(q: float, df: float, n: int = 4000) -> float:
    """P(T <= q) by Simpson's rule on the Student t density: a check independent of scipy."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = [c * (1 + (q * i / n) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
    return 0.5 + q / n / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))


def test_t_quantiles_are_exact_at_any_df():
    assert t975(2) == pytest.approx(4.302653, abs=1e-6)  # tables: 4.303
    assert t975(40) == pytest.approx(2.021075, abs=1e-6)  # the old table fell back to 1.96 above df 30
    assert t975(1000) > 1.96 and t975(1e9) == pytest.approx(1.959964, abs=1e-6)
    q = t975(7.5)  # Welch's fractional df: between df 8 and df 7, no longer rounded down to 7
    assert t975(8) < q < t975(7) and _t_cdf(q, 7.5) == pytest.approx(0.975, abs=1e-9)
    assert math.isinf(t975(0)) and math.isinf(t975(math.nan))


def test_mean_interval():
    ci = mean_ci([0.5, 0.6, 0.7])
    assert ci.mean == pytest.approx(0.6) and ci.half == pytest.approx(4.302653 * 0.1 / math.sqrt(3))
    assert ci.fmt() == "60.0 ± 24.8" and mean_ci([0.4]).fmt() == "40.0" and math.isinf(mean_ci([0.4]).half)
    assert mean_ci([0.2, 0.3, 0.25]).excludes_zero() and not mean_ci([-0.1, 0.1, 0.0]).excludes_zero()


def test_welch_difference_and_the_sentence_it_supports():
    a, b = [0.80, 0.82, 0.84], [0.50, 0.52, 0.54]
    d = diff_ci(a, b)
    assert d.mean == pytest.approx(0.30) and d.low > 0
    assert verdict(d, "CHORD-mu", "SFT-then-RL", "ID").startswith("CHORD-mu beats SFT-then-RL on ID (+30.0 points")
    assert "trails" in verdict(diff_ci(b, a), "A", "B", "ID")
    assert "inside the noise" in verdict(diff_ci([0.5, 0.6, 0.7], [0.55, 0.6, 0.66]), "A", "B", "OOD")
    assert "no claim" in verdict(diff_ci([0.5], [0.4]), "A", "B", "ID")
    # Welch-Satterthwaite df with unequal variances, used unrounded: (va + vb)^2 / (va^2 / 2 + vb^2 / 2)
    x, y = [0.1, 0.5, 0.9], [0.5, 0.5, 0.51]
    va, vb = 0.16 / 3, (2 * (0.01 / 3) ** 2 + (0.02 / 3) ** 2) / 2 / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert 2 < df < 2.01 and diff_ci(x, y).half == pytest.approx(t975(df) * math.sqrt(va + vb))


def test_pairing_removes_the_noise_two_methods_share_on_a_seed():
    # seed-to-seed spread (0.5 .. 0.9) shared by both methods; a steady +5 points on every seed
    a, b = [0.50, 0.70, 0.90], [0.45, 0.66, 0.84]
    p, w = paired_diff_ci(a, b), diff_ci(a, b)
    assert p.mean == pytest.approx(w.mean) == pytest.approx(0.05)
    assert p.half == pytest.approx(4.302653 * 0.01 / math.sqrt(3))  # sd of the differences 0.05, 0.04, 0.06
    assert p.excludes_zero() and not w.excludes_zero()
    s = verdict(p, "A", "B", "ID", welch=w)
    assert s.startswith("A beats B on ID (+5.0 points, paired 95% CI [+2.5, +7.5]; Welch [")


def test_pairing_makes_no_claim_out_of_nothing():
    # identical runs: zero difference, zero width, no claim
    same = paired_diff_ci([0.5, 0.7, 0.9], [0.5, 0.7, 0.9])
    assert (same.mean, same.half) == (0.0, 0.0) and not same.excludes_zero()
    # noise not shared (the seeds' draws go opposite ways): pairing has fewer df than Welch and is not narrower
    a, b = [0.50, 0.70, 0.90], [0.84, 0.66, 0.45]
    p, w = paired_diff_ci(a, b), diff_ci(a, b)
    assert not p.excludes_zero() and not w.excludes_zero() and p.half > w.half
    assert "inside the noise" in verdict(p, "A", "B", "OOD", welch=w)
    assert "no claim" in verdict(paired_diff_ci([0.5], [0.4]), "A", "B", "ID")


def test_pairing_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="3 values vs 2"):
        paired_diff_ci([0.1, 0.2, 0.3], [0.1, 0.2])


def test_committed_grid_pairs_over_its_seeds():
    """The committed 5-seed grid records each run's seed: every method ran seeds 0-4, so every comparison pairs."""
    from benchmarks.comparison_report import by_seed, paired_or_welch

    rows = json.loads((RESULTS / "method_comparison_seeds0-4_2026-11-30/results.json").read_text())
    per = {m: by_seed([(r["seed"], r["id"]["final"]) for r in rows if r["method"] == m])
           for m in ("CHORD-phi", "GRPO")}
    assert sorted(per["CHORD-phi"]) == sorted(per["GRPO"]) == [0, 1, 2, 3, 4]
    d, welch = paired_or_welch(per["CHORD-phi"], per["GRPO"], list(per["CHORD-phi"].values()),
                               list(per["GRPO"].values()))
    assert welch is not None and d.n == 5 and d.mean == pytest.approx(welch.mean)
    assert not d.excludes_zero()  # CHORD-phi vs GRPO on ID: inside the noise either way (docs/benchmark.md)
    # other seeds on one side: nothing to pair, Welch alone
    shifted = {s + 5: v for s, v in per["GRPO"].items()}
    assert paired_or_welch(per["CHORD-phi"], shifted, [0.1, 0.2], [0.3, 0.4])[1] is None
