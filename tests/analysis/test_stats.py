"""analysis/stats.py against scipy.stats and hand computations on fixed numbers, and `python -m analysis compare` on
run folders: pairs, paired tests on shared seeds, Holm's correction, small samples that say so."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from analysis import runs as run_records
from analysis.compare import compare
from analysis.stats import difference, holm, summary
from tests.analysis.conftest import write_run

A = [7.1, 7.5, 6.9, 7.3]
B = [6.2, 6.8, 6.1, 6.5]


def t_interval_by_hand(values: list[float]) -> tuple[float, float]:
    """mean ± t(0.975, n-1) · s / sqrt(n), from the t quantile alone."""
    n, mean, s = len(values), float(np.mean(values)), float(np.std(values, ddof=1))
    half = sp.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    return mean - half, mean + half


@pytest.mark.parametrize("values", [[7.1, 7.5, 6.9], [7.1, 7.5, 6.9, 7.3, 6.8, 7.0, 7.7, 7.2, 6.6, 7.4]],
                         ids=["n=3", "n=10"])
def test_summary_interval_is_the_t_interval_of_the_mean(values):
    s = summary(values)
    assert (s.n, s.best, s.mean) == (len(values), min(values), pytest.approx(np.mean(values)))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    low, high = t_interval_by_hand(values)
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    # scipy's own one-sample t-test gives the same interval
    ci = sp.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert (s.ci_low, s.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    if len(values) == 3:  # at n = 3 the honest interval reaches beyond the runs (a bootstrap's stops at the best)
        assert s.ci_low < min(values) and s.ci_high > max(values)


def test_summary_without_spread_claims_no_interval():
    assert summary([7.0, 7.0, 7.0]).ci_low is None
    assert (summary([5.0]).std, summary([5.0]).ci_low) == (None, None)
    assert summary([]).n == 0
    two = summary([7.0, 8.0])  # two runs: wide, but an interval
    assert (two.ci_low, two.ci_high) == (pytest.approx(t_interval_by_hand([7.0, 8.0])[0]),
                                         pytest.approx(t_interval_by_hand([7.0, 8.0])[1]))


def test_identical_differences_over_seeds_claim_no_significance():
    got = difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], seeds_a=[0, 1, 2], seeds_b=[0, 1, 2])
    assert got.paired and got.diff == pytest.approx(1.0)
    assert (got.p, got.ci_low) == (None, None)
    assert "every pair differs by exactly +1.00" in got.why_no_test


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    d = np.array(B) - np.array(A)
    n, mean, se = len(d), d.mean(), d.std(ddof=1) / math.sqrt(len(d))
    t = sp.t.ppf(0.975, n - 1)
    got = difference(A, B, seeds_a=[0, 1, 2, 3], seeds_b=[0, 1, 2, 3])
    assert got.paired and got.diff == pytest.approx(mean)
    assert (got.ci_low, got.ci_high) == (pytest.approx(mean - t * se), pytest.approx(mean + t * se))
    assert got.p == pytest.approx(2 * sp.t.sf(abs(mean / se), n - 1))


def test_unpaired_difference_is_welchs():
    a, b = [7.1, 7.5, 6.9], [6.2, 6.8, 6.1, 6.5, 6.6]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    diff, se = np.mean(b) - np.mean(a), math.sqrt(va + vb)
    got = difference(a, b, seeds_a=[0, 1, 2], seeds_b=[5, 6, 7, 8, 9])  # no shared seeds: not paired
    assert not got.paired and got.diff == pytest.approx(diff)
    t = sp.t.ppf(0.975, df)
    assert (got.ci_low, got.ci_high) == (pytest.approx(diff - t * se), pytest.approx(diff + t * se))
    assert got.p == pytest.approx(2 * sp.t.sf(abs(diff / se), df))
    lone = difference([7.0], b)
    assert lone.p is None and lone.why_no_test == "fewer than 2 runs in an arm"


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]  # None is not a comparison


def test_compare_by_depth_pairs_plain_and_resnet_arms_on_shared_seeds(tmp_path, capsys):
    """plain-20 vs plain-56 and ResNet-20 vs ResNet-56, 3 seeds each: the plain pair differs by 2 points on every
    seed (significant), the ResNet pair by noise."""
    errors = {("none", 20): [10.0, 10.4, 10.2], ("none", 56): [12.1, 12.3, 12.4],
              ("zero_pad", 20): [9.0, 9.5, 9.2], ("zero_pad", 56): [9.1, 9.2, 9.6]}
    for (shortcut, depth), values in errors.items():
        for seed, value in enumerate(values):
            write_run(tmp_path / f"{shortcut}{depth}_{seed}", depth=depth, shortcut=shortcut, seed=seed,
                      test_error=value, train_error=value - 1)
    art = compare(run_records.load([str(tmp_path)]), tmp_path / "out", by="depth", metric="train_error")
    rows = {(r.A, r.B): r for _, r in art.table.iterrows()}
    assert set(rows) == {("plain-20", "plain-56"), ("ResNet-20", "ResNet-56")}
    plain, resnet = rows[("plain-20", "plain-56")], rows[("ResNet-20", "ResNet-56")]
    d = np.array(errors[("none", 56)]) - np.array(errors[("none", 20)])
    test = sp.ttest_rel(np.array(errors[("none", 56)]), np.array(errors[("none", 20)]))
    assert plain["n"] == "3 / 3 paired" and plain["B − A"] == f"{d.mean():+.2f}"
    assert plain["p"] == f"{test.pvalue:.3g}" and plain["p (Holm)"] == f"{min(1, 2 * test.pvalue):.3g}"
    assert (plain.significant, resnet.significant) == ("yes", "no")
    assert "corrected for the 2 tests of this table by Holm's method" in " ".join(art.notes)
    assert (tmp_path / "out" / "compare.csv").exists()
