"""Clock model: device counter -> UTC under drift, jitter, bursts and reboots."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.stream.clock import ClockModel

RATE = 2000.0
BLOCK = 14  # EMG samples per frame at 8 channels


def simulate(
    seconds: float, drift_ppm: float, jitter_ms: float, *, seed: int = 1, stall_every_s: float = 0.0
) -> float:
    """Feed a clock model one frame at a time; return the worst timestamp error (s) after warm-up."""
    rng = np.random.default_rng(seed)
    t_start = 1_800_000_000.0
    clock = ClockModel(RATE)
    n_frames = int(seconds * RATE / BLOCK)
    counters = np.arange(n_frames) * BLOCK
    true_start = t_start + counters / (RATE * (1 + drift_ppm * 1e-6))  # first sample of each frame
    true_end = true_start + BLOCK / (RATE * (1 + drift_ppm * 1e-6))
    latency = 0.001 + rng.uniform(0, jitter_ms / 1000.0, n_frames)
    if stall_every_s:
        # BLE-style stalls: every so often a whole second of frames arrives late, in one burst.
        period = int(stall_every_s * RATE / BLOCK)
        for s0 in range(period, n_frames, period):
            burst = slice(s0, s0 + int(RATE / BLOCK))
            latency[burst] += np.linspace(1.0, 0.0, len(latency[burst]))
    arrival = true_end + latency
    worst = 0.0
    warm = int(10 * RATE / BLOCK)
    last = -np.inf
    for i in range(n_frames):
        clock.observe(int(counters[i] + BLOCK), float(arrival[i]))
        t0, dt = clock.block_start(int(counters[i]), BLOCK)
        assert t0 >= last - 1e-9, "timestamps went backwards"
        last = t0 + BLOCK * dt
        if i >= warm:
            worst = max(worst, abs(t0 - true_start[i]))
    return worst


@pytest.mark.slow
def test_hour_with_200ppm_drift_and_20ms_jitter_stays_within_5ms() -> None:
    assert simulate(3600, drift_ppm=200, jitter_ms=20) < 0.005


def test_stalls_do_not_pull_the_fit() -> None:
    assert simulate(300, drift_ppm=-150, jitter_ms=20, stall_every_s=30) < 0.005


def test_quality_reports_drift() -> None:
    clock = ClockModel(RATE)
    for i in range(0, int(120 * RATE), BLOCK):
        clock.observe(i + BLOCK, 1000.0 + (i + BLOCK) / (RATE * (1 + 100e-6)) + 0.002)
    q = clock.quality()
    assert q.drift_ppm == pytest.approx(100, abs=1)  # the device's crystal runs 100 ppm fast
    assert q.residual_ms < 0.5


def test_reset_forgets_the_old_boot() -> None:
    clock = ClockModel(RATE)
    for i in range(0, int(30 * RATE), BLOCK):
        clock.observe(i + BLOCK, 5000.0 + (i + BLOCK) / RATE)
    clock.reset()
    clock.observe(BLOCK, 9000.0 + BLOCK / RATE)
    assert float(clock.to_utc(0)) == pytest.approx(9000.0, abs=1e-6)
