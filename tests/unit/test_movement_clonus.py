"""A clonus fused with the movement's bursts is still a clonus (issue 9, spasms during activity).

During pedalling or walking a clonus fuses with its muscle's cyclic bursts into one long episode
whose envelope follows the movement cycle: judged as a whole it is voluntary. Clonus (3-8 Hz)
is far faster than any voluntary rhythm (gait and pedalling 0.5-2.5 Hz), so a regular run of
``movement_clonus_min_beats`` beats inside it, at >= ``movement_clonus_cycle_ratio`` times the
cycle's frequency, is published as the clonus, on its own span.

Signals are built from the physiology (band-limited noise carrier, raised-cosine pedal drive,
Hann-shaped reflex beats), not copied from a simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from detectors import DetectorConfig, DetectorOutput, Onset, SpasmDetector, SpasmEvent
from detectors.config import ConfigError
from detectors.detector import feed_interleaved
from detectors.rhythm import clonic_run, clonus_rhythm

RATE = 1000.0
ENV_RATE = 200.0


def _beats(n_beats: int, hz: float, lead_s: float = 0.5, tail_s: float = 0.5) -> np.ndarray:
    env = np.ones(int((lead_s + n_beats / hz + tail_s) * ENV_RATE))
    w = int(0.06 * ENV_RATE)
    for k in range(n_beats):
        i = int((lead_s + k / hz) * ENV_RATE)
        env[i : i + w] += 100.0 * np.hanning(w)
    return env


def test_clonic_run_finds_a_run_that_covers_too_little_of_its_episode_to_type_it() -> None:
    cfg = DetectorConfig()
    beats = _beats(10, 5.0)
    # a 6 s sustained contraction after it: the run covers far less than half of the episode
    env = np.r_[beats, np.full(int(6 * ENV_RATE), 60.0)]
    assert clonus_rhythm(env, 1.0, ENV_RATE, cfg)[0] is None
    run = clonic_run(env, 1.0, ENV_RATE, cfg)
    assert run is not None
    first, end, freq, regularity, n = run
    assert n == 10 and 4.8 <= freq <= 5.2 and regularity > 0.9, run
    assert abs(first / ENV_RATE - 0.5) <= 0.02, first / ENV_RATE  # the first beat's rise
    assert abs(end / ENV_RATE - (0.5 + 10 / 5.0)) <= 0.03, end / ENV_RATE  # one period after the last
    # too few beats for a run at all
    assert clonic_run(_beats(3, 5.0), 1.0, ENV_RATE, cfg) is None


def _pedalling(clonus: tuple[float, int, float] | None, seconds: float = 40.0) -> np.ndarray:
    """Rest at 3 uV, then pedalling at 1 Hz from 5 s to 35 s: a raised-cosine drive between 40
    and 200 uV that never falls silent. With ``clonus`` (start s, beats, Hz) the drive stops
    there and the muscle beats instead (300 uV reflex volleys near rest between them)."""
    rng = np.random.default_rng(9)
    sos = signal.butter(2, [40, 150], btype="bandpass", fs=RATE, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(int(seconds * RATE)))
    x = x / x.std()
    t = np.arange(x.size) / RATE
    env = np.full(x.size, 3.0)
    ped = (t >= 5.0) & (t < 35.0)
    env[ped] += 40.0 + 160.0 * (0.5 - 0.5 * np.cos(2 * np.pi * 1.0 * (t[ped] - 5.0)))
    if clonus is not None:
        at, n, hz = clonus
        stop = (t >= at) & (t < at + n / hz)
        env[stop] = 3.0
        w = int(0.07 * RATE)
        for k in range(n):
            i = int((at + k / hz) * RATE)
            env[i : i + w] += 300.0 * np.hanning(w)
    return (x * env)[:, None]


def _run(x: np.ndarray, cfg: DetectorConfig) -> tuple[list[SpasmEvent], list[Onset]]:
    det = SpasmDetector(cfg, emg_rate_hz=RATE, channel_labels=["EMG R VL"])
    out: list[DetectorOutput] = feed_interleaved(det, x, None, RATE, None)
    return [o for o in out if isinstance(o, SpasmEvent)], [o for o in out if isinstance(o, Onset)]


def _events(x: np.ndarray, cfg: DetectorConfig) -> list[SpasmEvent]:
    return _run(x, cfg)[0]


CFG = DetectorConfig(mains_max_harmonic=0)


def test_pedalling_alone_is_voluntary() -> None:
    assert _events(_pedalling(None), CFG) == []


def test_a_clonus_fused_with_pedalling_is_published_as_the_clonus_on_its_own_span() -> None:
    ev, onsets = _run(_pedalling((20.0, 10, 5.0)), CFG)
    assert [(e.type, e.context) for e in ev] == [("clonus", "rhythmic_exercise")], [
        (e.type, e.context, e.onset_sample / RATE, e.offset_sample / RATE) for e in ev
    ]
    e = ev[0]
    # dated within two periods at each end: the pedal stroke's edge just before the first beat
    # (and just after the last) may count as one more beat of the run
    assert abs(e.onset_sample / RATE - 20.0) <= 0.4, e.onset_sample / RATE
    assert abs(e.offset_sample / RATE - 22.0) <= 0.4, e.offset_sample / RATE
    assert e.frequency_hz is not None and 4.7 <= e.frequency_hz <= 5.3
    # Without an accelerometer the pedalling's first burst was announced at rest (an onset at
    # 5 s): the event keeps that key, so the notice and the event stay one record for a client
    assert e.key in {o.key for o in onsets}, (e.key, [o.key for o in onsets])
    # off: the whole pedalling episode is voluntary, the clonus with it (the old behaviour)
    assert (
        _events(
            _pedalling((20.0, 10, 5.0)), DetectorConfig(mains_max_harmonic=0, movement_clonus_min_beats=0)
        )
        == []
    )


def test_a_short_run_of_beats_in_pedalling_is_not_a_clonus() -> None:
    """Four beats: below ``movement_clonus_min_beats`` (an unsustained response, or a few
    jerks of the pedal stroke)."""
    assert _events(_pedalling((20.0, 4, 5.0)), CFG) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"movement_clonus_min_beats": -1},
        {"movement_clonus_cycle_ratio": 1.0},
        {"movement_clonus_window_s": 0},
    ],
)
def test_movement_clonus_keys_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        DetectorConfig.from_dict(bad, source="test")
