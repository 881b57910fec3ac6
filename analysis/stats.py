"""Statistics over seeds, with scipy.stats: what a table can claim from n runs.

- `summary(values)`: n, best, mean, sample std, and the 95% confidence interval of the mean: Student's t-interval
  (mean ± t(0.975, n-1) · s/√n), the same method as `difference`. With 3-5 seeds a percentile bootstrap undercovers
  badly (its lower end is often the best run); the t-interval is honest at any n ≥ 2 and close to the bootstrap's at
  large n, so it is the one interval used. One value, or values that are all equal, give no interval: there is no
  spread to estimate one from, and the table says so.
- `difference(a, b, seeds_a, seeds_b)`: the difference of means b - a with its 95% CI and the p-value of a t-test:
  paired (scipy.stats.ttest_rel over the seeds both arms ran) when they share at least 3 seeds, else Welch's
  (ttest_ind, equal_var=False); fewer than 2 values per arm (or 3 pairs): no test. Differences with no spread at all
  (every pair differs by exactly the same amount, or both arms are constant) get no p-value either: a t-test divides
  by the spread, and p = 0 from three identical differences would claim certainty that three runs cannot give (the
  runs are more likely deterministic copies than evidence); `why_no_test` says so.
- `holm(p_values)`: Holm's step-down correction for the number of comparisons (family-wise error rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MIN_FOR_CI = 2  # values for an interval of the mean
MIN_PAIRS = 3  # shared seeds for a paired test
INTERVAL = "Student's t-interval"
NO_SPREAD = ("no test: {what}; with no spread a t-test has nothing to divide by (runs this alike are usually "
             "deterministic copies, not independent evidence)")


@dataclass(frozen=True)
class Summary:
    n: int
    best: float | None
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


def summary(values: Sequence[float]) -> Summary:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return Summary(0, None, None, None, None, None)
    std = float(v.std(ddof=1)) if len(v) > 1 else None
    low = high = None
    if len(v) >= MIN_FOR_CI and np.ptp(v) > 0:
        low, high = (float(x) for x in stats.t.interval(CONFIDENCE, len(v) - 1, loc=v.mean(), scale=stats.sem(v)))
    return Summary(len(v), float(v.min()), float(v.mean()), std, low, high)


@dataclass(frozen=True)
class Difference:
    n_a: int
    n_b: int
    paired: bool
    diff: float | None  # mean(b) - mean(a)
    ci_low: float | None
    ci_high: float | None
    p: float | None
    why_no_test: str = ""


def difference(a: Sequence[float], b: Sequence[float], seeds_a: Sequence | None = None,
               seeds_b: Sequence | None = None) -> Difference:
    """b - a, paired on the seeds both arms ran when there are MIN_PAIRS or more of them."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else None
    if seeds_a is not None and seeds_b is not None:
        by_a, by_b = dict(zip(seeds_a, a, strict=True)), dict(zip(seeds_b, b, strict=True))
        shared = sorted(set(by_a) & set(by_b))
        if len(shared) >= MIN_PAIRS:
            x, y = np.array([by_a[s] for s in shared]), np.array([by_b[s] for s in shared])
            d = y - x
            if np.ptp(d) == 0:
                return Difference(len(x), len(y), True, float(d.mean()), None, None, None,
                                  NO_SPREAD.format(what=f"every pair differs by exactly {d[0]:+.2f}"))
            test = stats.ttest_rel(y, x)
            ci = test.confidence_interval(CONFIDENCE)
            return Difference(len(x), len(y), True, float(d.mean()), float(ci.low), float(ci.high), float(test.pvalue))
    if len(a) < 2 or len(b) < 2:
        return Difference(len(a), len(b), False, diff, None, None, None, "fewer than 2 runs in an arm")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Difference(len(a), len(b), False, diff, None, None, None,
                          NO_SPREAD.format(what="each arm's values are all equal"))
    test = stats.ttest_ind(b, a, equal_var=False)
    ci = test.confidence_interval(CONFIDENCE)
    return Difference(len(a), len(b), False, diff, float(ci.low), float(ci.high), float(test.pvalue))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the input order (None stays None and does not count as a comparison)."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m, out, running = len(tested), [None] * len(p_values), 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))  # step-down: adjusted values never decrease
        out[i] = running
    return out
