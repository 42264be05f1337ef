"""Statistics over seeds: mean with a 95% confidence interval, and the CI of a difference of two methods.

With n seeds the interval is mean +- t_{0.975, n-1} * sd / sqrt(n) (Student t, sd with n - 1). A difference of
two methods run on the same seeds is paired: same seed = same data order and the same evaluation sampling seeds
(run.seed, docs/benchmark.md#statistics), so the per-seed differences a_i - b_i cancel the noise the two runs
share and get a Student-t interval on n - 1 df (`paired_diff_ci`). Unpaired samples (other seeds, or a seed
missing on one side) use Welch's standard error and Welch-Satterthwaite degrees of freedom (`diff_ci`). Three
seeds give t = 4.30: the intervals are wide on purpose, a "win" has to survive them. Quantiles are exact
(scipy.stats.t.ppf), fractional df included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def t975(df: float) -> float:
    """t_{0.975, df}, the two-sided 95% Student t quantile; fractional df (Welch) exact; inf without df."""
    if not df > 0:  # one value (df 0) or nan: no interval
        return math.inf
    from scipy.stats import t  # ~0.5 s to import: only when an interval is computed, not on `import chord.analysis`

    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class MeanCI:
    mean: float
    half: float  # half-width of the 95% interval; inf with one value
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def fmt(self, scale: float = 100.0, digits: int = 1) -> str:
        """'61.3 ± 4.2' (percent points by default); one value: '61.3' (no interval)."""
        if self.n == 0:
            return "—"
        m = f"{scale * self.mean:.{digits}f}"
        return m if self.n == 1 else f"{m} ± {scale * self.half:.{digits}f}"


def _var(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def mean_ci(values: Sequence[float]) -> MeanCI:
    """Mean and 95% Student-t half-width over seeds (inf for a single value)."""
    xs = [float(v) for v in values]
    if not xs:
        return MeanCI(math.nan, math.inf, 0)
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return MeanCI(mean, math.inf, 1)
    return MeanCI(mean, t975(len(xs) - 1) * math.sqrt(_var(xs) / len(xs)), len(xs))


def diff_ci(a: Sequence[float], b: Sequence[float]) -> MeanCI:
    """mean(a) - mean(b) with a Welch 95% interval (independent seeds); n = min(len(a), len(b))."""
    if len(a) < 2 or len(b) < 2:
        return MeanCI(mean_ci(a).mean - mean_ci(b).mean, math.inf, min(len(a), len(b)))
    va, vb = _var(a) / len(a), _var(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return MeanCI(mean_ci(a).mean - mean_ci(b).mean, 0.0, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return MeanCI(mean_ci(a).mean - mean_ci(b).mean, t975(df) * se, min(len(a), len(b)))


def paired_diff_ci(a: Sequence[float], b: Sequence[float]) -> MeanCI:
    """mean(a_i - b_i) with a Student-t 95% interval on n - 1 df; a[i] and b[i] must come from the same seed.

    The same seed gives both methods the same data order and evaluation seeds, so what the two runs share
    (an easy draw of evaluation samples, a lucky data order) cancels in a_i - b_i; Welch (`diff_ci`) keeps it
    in both variances and is wider when the shared part dominates. Unequal lengths cannot be paired: ValueError.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_diff_ci: {len(a)} values vs {len(b)}; pairing needs one value per seed on each side")
    return mean_ci([float(x) - float(y) for x, y in zip(a, b, strict=True)])


def verdict(d: MeanCI, a: str, b: str, what: str, welch: MeanCI | None = None) -> str:
    """One honest sentence on a difference in percent points, decided by `d`. With `welch` given, `d` is the
    paired interval (`paired_diff_ci`) and Welch's unpaired interval of the same difference is printed beside it."""
    span = f"{100 * d.mean:+.1f} points, 95% CI [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
    if welch is not None:
        span = f"{100 * d.mean:+.1f} points, paired 95% CI [{100 * d.low:+.1f}, {100 * d.high:+.1f}]; " \
               f"Welch [{100 * welch.low:+.1f}, {100 * welch.high:+.1f}]"
    if d.n < 2:
        return f"{a} vs {b} on {what}: {100 * d.mean:+.1f} points from one seed: no interval, no claim."
    if d.low > 0:
        return f"{a} beats {b} on {what} ({span})."
    if d.high < 0:
        return f"{a} trails {b} on {what} ({span})."
    return f"{a} vs {b} on {what} is inside the noise ({span})."
