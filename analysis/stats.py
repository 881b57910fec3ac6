"""Statistics over seeds, with scipy.stats: what a table can claim from n runs.

- `summary(values)`: n, best, mean, sample std, and a 95% bootstrap confidence interval of the mean (percentile
  method, 9,999 resamples, a fixed seed so that a table is the same every time it is made). Fewer than 3 values give
  no interval: the bootstrap of 2 values has 3 distinct means, and says nothing.
- `difference(a, b, seeds_a, seeds_b)`: the difference of means b - a with its 95% CI and the p-value of a t-test:
  paired (scipy.stats.ttest_rel over the seeds both arms ran) when they share at least 3 seeds, else Welch's
  (ttest_ind, equal_var=False); fewer than 2 values per arm (or 3 pairs): no test.
- `holm(p_values)`: Holm's step-down correction for the number of comparisons (family-wise error rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9_999
MIN_FOR_CI = 3


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
    if len(v) >= MIN_FOR_CI:
        if np.ptp(v) == 0:
            low = high = float(v[0])
        else:
            ci = stats.bootstrap((v,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                                 method="percentile", random_state=np.random.default_rng(0)).confidence_interval
            low, high = float(ci.low), float(ci.high)
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
    """b - a, paired on the seeds both arms ran when there are 3 or more of them."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else None
    if seeds_a is not None and seeds_b is not None:
        by_a, by_b = dict(zip(seeds_a, a, strict=True)), dict(zip(seeds_b, b, strict=True))
        shared = sorted(set(by_a) & set(by_b))
        if len(shared) >= MIN_FOR_CI:
            x, y = np.array([by_a[s] for s in shared]), np.array([by_b[s] for s in shared])
            d = y - x
            if np.ptp(d) == 0:  # every pair differs by the same amount: no spread to test against
                return Difference(len(x), len(y), True, float(d.mean()), float(d[0]), float(d[0]),
                                  0.0 if d[0] else 1.0)
            test = stats.ttest_rel(y, x)
            ci = test.confidence_interval(CONFIDENCE)
            return Difference(len(x), len(y), True, float(d.mean()), float(ci.low), float(ci.high), float(test.pvalue))
    if len(a) < 2 or len(b) < 2:
        return Difference(len(a), len(b), False, diff, None, None, None, "fewer than 2 runs in an arm")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Difference(len(a), len(b), False, diff, diff, diff, 0.0 if diff else 1.0)
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
