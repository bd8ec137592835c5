"""Where the accelerometer rhythm test's band share puts tremor and voluntary rhythms (issue 9).

    python bench/bench_rhythm_band.py

A repeating movement is a voluntary rhythm only when at least ``activity_rhythm_band_share`` of its
power lies in 0.4-2.5 Hz (``AccActivityTracker._in_band``): what the 3 Hz low-pass leaves of a
tremor repeats inside the stride lags as well as a stride does. For every hop whose window passes
the autocorrelation test (the only hops the share is computed for), this prints the share's
distribution per recording: acc-only tremor (3-8 Hz, 0.2 and 0.5 g), the tremor and clonus
scenarios, the voluntary-activity scenarios and the independent generator's recordings. The
threshold should sit in an empty gap between the tremor rows (low) and the voluntary rows (high).
"""

# ruff: noqa: E501
from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from detectors import DetectorConfig
from detectors.activity import AccActivityTracker

TREMOR_SCENARIOS = ["tremor_clean", "tremor_noisy", "parkinson_profile", "clonus_clean", "clonus_noisy"]


class _Recording(AccActivityTracker):
    """The tracker, keeping the band share of every window it tests."""

    def __init__(self, cfg: DetectorConfig, rate_hz: float) -> None:
        super().__init__(cfg, rate_hz)
        self.shares: list[float] = []

    def _in_band(self, d: np.ndarray, k: int) -> bool:
        self.shares.append(self.band_share(d, k))
        return super()._in_band(d, k)


def _tremor(seconds: float, hz: float, amp_g: float, rate: int = 200) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    acc = np.random.default_rng(3).normal(0.0, 0.002, (t.size, 3))
    acc[:, 2] += 1.0
    acc[:, 0] += amp_g * np.sin(2 * np.pi * hz * t)
    return acc


def _row(name: str, acc: np.ndarray, rate: float, threshold: float) -> None:
    tr = _Recording(DetectorConfig(), rate)
    for i in range(0, len(acc), 64):
        tr.feed(i, acc[i : i + 64])
    s = np.asarray(tr.shares)
    if not s.size:
        print(f"| {name} | 0 | - | - | - | - | - |")
        return
    p1, p50 = np.percentile(s, [1, 50])
    print(
        f"| {name} | {s.size} | {s.min():.2f} | {p1:.2f} | {p50:.2f} | {s.max():.2f} | {int((s < threshold).sum())} |"
    )


def main() -> None:
    from bench_activity import NAMES as ACTIVITY_NAMES
    from unseen_voluntary import SPECS, generate_voluntary

    from firmware_sim.scenario import builtin_scenario
    from firmware_sim.signals import synthesize

    threshold = DetectorConfig().activity_rhythm_band_share
    print(f"activity_rhythm_band_share = {threshold}: hops below it lose their rhythm verdict\n")
    print("| recording | rhythm hops | min | p1 | median | max | below |")
    print("|---|---|---|---|---|---|---|")
    for hz in (3.0, 3.5, 4.0, 5.0, 6.0, 8.0):
        for amp in (0.2, 0.5):
            _row(f"acc-only tremor {hz:g} Hz {amp:g} g", _tremor(60.0, hz, amp), 200.0, threshold)
    recs: list[tuple[str, Any]] = [
        (n, synthesize(builtin_scenario(n))) for n in TREMOR_SCENARIOS + ACTIVITY_NAMES
    ]
    recs += [(spec.name, generate_voluntary(spec)) for spec in SPECS]
    for name, rec in recs:
        _row(name, np.asarray(rec.acc_g, dtype=np.float64), float(rec.acc_rate_hz), threshold)


if __name__ == "__main__":
    main()
