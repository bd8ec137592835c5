"""The clock fit's two kernels (``ingest.stream.clock``) give exactly what the library calls they
replace: the Theil-Sen slope is ``scipy.stats.theilslopes``'s, bit for bit, and the thinning of a
long history picks the same points as a loop over ``np.array_split`` groups."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import theilslopes

from ingest.stream.clock import FIT_POINTS, ClockModel, _group_argmin, _theil_sen_slope


def _envelope_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower-envelope-like points: counters one window apart (some windows missing), arrival
    times on a drifting line plus non-negative lag with a few stalls."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.choice([1000, 1000, 1000, 2000, 7000], n)).astype(np.float64)
    t = 1.8e9 + x / 1000.0 * (1 - 150e-6) + np.abs(rng.normal(0, 0.002, n))
    t[rng.choice(n, n // 10, replace=False)] += rng.uniform(0.05, 0.5, n // 10)
    return x, t


@pytest.mark.parametrize("n", [3, 4, 5, 17, 100])
def test_theil_sen_slope_is_scipys_bit_for_bit(n: int) -> None:
    for seed in range(5):
        x, t = _envelope_points(n, seed)
        assert _theil_sen_slope(x, t) == float(theilslopes(t, x)[0])
    # Ties and repeated x (a pair with dx = 0 is no slope), equal slopes, unsorted input.
    x = np.array([5.0, 1.0, 3.0, 3.0, 9.0, 1.0, 7.0])
    t = np.array([2.0, 0.5, 1.5, 1.4, 4.5, 0.5, 3.5])
    assert _theil_sen_slope(x, t) == float(theilslopes(t, x)[0])
    x2 = np.arange(8, dtype=np.float64)
    assert _theil_sen_slope(x2, 3.0 * x2) == float(theilslopes(3.0 * x2, x2)[0]) == 3.0


@pytest.mark.parametrize("n", [FIT_POINTS + 1, 150, 199, 200, 257, 600])
def test_group_argmin_picks_what_a_loop_over_array_split_picks(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.normal(size=n)
    values[rng.choice(n, n // 4)] = 0.0  # ties: the first of the group's minima, as argmin
    want = [g[np.argmin(values[g])] for g in np.array_split(np.arange(n), FIT_POINTS)]
    assert _group_argmin(values, FIT_POINTS).tolist() == want


def test_long_history_fit_recovers_the_drift_despite_stalls() -> None:
    """End to end through the thinned fit: 10 minutes of arrivals, late by a jittery lag and by
    whole-second stalls, give the crystal's drift and an offset at the lower envelope."""
    rate = 1000.0
    clock = ClockModel(rate)
    rng = np.random.default_rng(5)
    drift = 120e-6
    for k in range(1, 600 * 20 + 1):
        counter_end = k * 50
        lag = abs(rng.normal(0.0, 0.01)) + (0.4 if k % 997 < 15 else 0.0)
        clock.observe(counter_end, 1.7e9 + counter_end / rate / (1 + drift) + lag)
    q = clock.quality()
    assert q.points > FIT_POINTS
    assert q.drift_ppm == pytest.approx(120.0, abs=3.0)
    assert abs(float(clock.to_utc(600_000)) - (1.7e9 + 600.0 / (1 + drift))) < 0.003
