"""The detector at the low EMG rates of consumer wearables (Myo 200 Hz, OpenBCI Cyton 250 Hz).

At those rates the band-pass top falls from 450 Hz to 0.45 x the rate, so the power envelope the
decisions run on covers 45-90 Hz (200 Hz) instead of 45-450 Hz and fluctuates ~3x more. The
episode's shape (rise time, rhythm, peak) is then read on a smoother envelope, so a slow voluntary
ramp still measures as graded and a sustained burst is not cut into "clonus" cycles, while abrupt
spasms stay abrupt. Signals are made here: Gaussian EMG band-limited to 20-450 Hz at 2 kHz, then
anti-alias resampled to the device rate with ``scipy.signal.resample_poly`` (what a device's ADC
decimation filter does), so nothing depends on the project's simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from detectors import DetectorConfig, SpasmDetector, SpasmEvent
from detectors.emg import EmgBank

RATE_2K = 2000


def _emg(envelope_uv: np.ndarray, seed: int) -> np.ndarray:
    """EMG at 2 kHz whose RMS follows ``envelope_uv`` (one channel)."""
    rng = np.random.default_rng(seed)
    sos = signal.butter(4, [20.0, 450.0], btype="bandpass", fs=RATE_2K, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(envelope_uv.shape[0] + 4000))[4000:]
    return envelope_uv * x / x.std()


def _bursts(
    rise_s: float, n: int = 16, gap_s: float = 4.0, seed: int = 1, peak: float = 120.0
) -> tuple[np.ndarray, list[float]]:
    """Rest (3 uV) with ``n`` bursts to ``peak`` uV: a raised-cosine rise of ``rise_s``, 0.6 s
    plateau, a 0.15 s fall. Returns the 2 kHz EMG and the burst onsets (s)."""
    rest, plateau, fall = 3.0, 0.6, 0.15
    lead = 25.0  # the resting baseline is learned first (20 s window)
    dur = lead + n * gap_s + 2.0
    env = np.full(int(dur * RATE_2K), rest)
    onsets = []
    for k in range(n):
        t0 = lead + k * gap_s
        onsets.append(t0)
        i0 = int(t0 * RATE_2K)
        nr, npl, nf = int(rise_s * RATE_2K), int(plateau * RATE_2K), int(fall * RATE_2K)
        up = 0.5 - 0.5 * np.cos(np.pi * np.arange(nr) / nr)
        down = 0.5 + 0.5 * np.cos(np.pi * np.arange(nf) / nf)
        shape = np.concatenate([up, np.ones(npl), down])
        env[i0 : i0 + shape.size] = rest + (peak - rest) * shape
    return _emg(env, seed), onsets


def _detect(x_2k: np.ndarray, rate: int) -> list[SpasmEvent]:
    x = signal.resample_poly(x_2k, rate // np.gcd(rate, RATE_2K), RATE_2K // np.gcd(rate, RATE_2K))
    # EMG only and no activity context: what is checked is the EMG bank's own measurement
    det = SpasmDetector(DetectorConfig(mains_hz=50, activity_context=False), emg_rate_hz=rate,
                        channel_labels=["EMG"])  # fmt: skip
    out = det.feed_emg(0, x[:, None])
    out += det.finish()
    return [o for o in out if isinstance(o, SpasmEvent)]


def _matched(evs: list[SpasmEvent], onsets: list[float]) -> list[SpasmEvent]:
    found = []
    for t0 in onsets:
        near = [e for e in evs if abs(e.onset_sample / e.rate_hz - t0) < 0.4]
        assert len(near) == 1, f"burst at {t0} s: {len(near)} events"
        found.append(near[0])
    return found


def test_shape_smoothing_is_derived_from_the_band_the_rate_leaves() -> None:
    cfg = DetectorConfig()
    assert cfg.emg_band(200) == (20.0, 90.0)
    assert cfg.emg_band(250) == (20.0, 112.5)
    assert cfg.emg_band(2000) == (20.0, 450.0)
    # the configured band fits: no extra smoothing, the full-rate path is untouched
    for rate in (1000, 2000, 4000):
        assert cfg.shape_smoothing_s(rate, 200.0, 45.0) == 0.0
        assert EmgBank(cfg, rate, ["a"], 50, "t").episodes.shape_rows == 1
    s200, s250, s500 = (cfg.shape_smoothing_s(r, min(r, 250.0), 45.0) for r in (200, 250, 500))
    # 45-90 Hz is 1/9 of 45-450 Hz: eight more envelope averaging times (~18 ms each at 25 Hz)
    assert s200 == pytest.approx(8 * cfg.envelope_averaging_s(200.0))
    assert s200 > s250 > s500 > 0
    # the rhythm test keeps >= 90 % of an 8 Hz clonus: at most a quarter of its period
    assert cfg.rhythm_smoothing_s(200, 200.0, 45.0) == pytest.approx(0.25 / cfg.clonus_max_hz)
    # a narrower configured band needs less
    assert DetectorConfig(band_high_hz=150.0).shape_smoothing_s(200, 200.0, 45.0) < s200


@pytest.mark.parametrize("rate", [200, 250])
def test_slow_voluntary_ramps_measure_graded_at_low_rates(rate: int) -> None:
    """A 0.3 s recruitment ramp reads as graded (rise >= voluntary_min_rise_s) and not as clonus."""
    x, onsets = _bursts(rise_s=0.3)
    found = _matched(_detect(x, rate), onsets)
    cfg = DetectorConfig()
    # one sustained burst, not cut into "clonus" cycles by the envelope's noise dips
    assert [e.type for e in found] == ["phasic"] * len(onsets)
    rises = [e.rise_s or 0.0 for e in found]
    # graded, but for at most one onset found late on the ramp (the crossing itself is noisy)
    assert sum(r < cfg.voluntary_min_rise_s for r in rises) <= 1, rises
    assert sorted(rises)[len(rises) // 2] >= 1.5 * cfg.voluntary_min_rise_s, rises


@pytest.mark.parametrize("rate", [200, 250])
def test_abrupt_spasms_stay_abrupt_and_rest_stays_quiet_at_low_rates(rate: int) -> None:
    """A 10 ms onset still measures abrupt; rest between bursts raises no event."""
    x, onsets = _bursts(rise_s=0.01, seed=2)
    evs = _detect(x, rate)
    found = _matched(evs, onsets)
    assert len(evs) == len(onsets)  # nothing at rest, nothing split
    cfg = DetectorConfig()
    assert [e.type for e in found] == ["phasic"] * len(onsets)
    rises = sorted(e.rise_s or 0.0 for e in found)
    assert rises[len(rises) // 2] < 0.5 * cfg.voluntary_min_rise_s, rises
    errors = sorted(abs(e.onset_sample / e.rate_hz - t0) for e, t0 in zip(found, onsets, strict=True))
    assert errors[len(errors) // 2] <= 0.02 and errors[-1] <= 0.06, errors


def test_weak_bursts_below_the_threshold_stay_below_it_at_low_rates() -> None:
    """Bursts at 5x rest, which 2 kHz does not report, are not made spasms by the noise peaks of
    the narrower band's envelope: at a cut band the mean power since the crossing must clear the
    onset threshold too."""
    x, _ = _bursts(rise_s=0.05, seed=3, peak=15.0)
    assert _detect(x, RATE_2K) == []
    for rate in (200, 250):
        assert len(_detect(x, rate)) <= 3, rate
