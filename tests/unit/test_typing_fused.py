"""Typing rules for spasms whose episode holds more than the spasm (issue 9, type accuracy).

* a clonus run goes on across a weak beat (a reflex volley below half the clonus's height, on
  time): ``clonus_skip_beats``; a silence at the beat's time is a pause and breaks the run;
* a clonus falls silent between its beats; a contraction wobbling at clonus rates does not
  (``clonus_max_trough``); and it repeats its waveform every period (``clonus_min_periodicity``);
* a spasm fused with a much weaker burst of its muscle during activity (a twitch right after a
  stride's or a pedal stroke's burst) is typed and dated by its own part (``own_part_*``); at
  rest, and for a spasm that builds up or decays slowly, nothing changes.

Signals are built from the physiology the rules rely on (band-limited noise carrier, raised-
cosine envelopes), not copied from a simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from detectors import DetectorConfig, DetectorOutput, SpasmDetector, SpasmEvent
from detectors.config import ConfigError
from detectors.detector import feed_interleaved
from detectors.emg_episodes import own_part
from detectors.rhythm import clonus_rhythm

RATE = 1000.0
ENV_RATE = 200.0


# ------------------------------------------------------------------------- clonus weak beats


def _beat_train(heights: list[float], period_s: float = 0.14, width_s: float = 0.06) -> np.ndarray:
    """Envelope at rest (1.0) with one Hann bump per beat (height 0: no beat at all)."""
    env = np.ones(int((0.1 + len(heights) * period_s + 0.2) * ENV_RATE))
    w = int(width_s * ENV_RATE)
    for k, h in enumerate(heights):
        i = int((0.1 + k * period_s) * ENV_RATE)
        env[i : i + w] += h * np.hanning(w)
    return env


def test_a_clonus_run_goes_on_across_a_weak_beat_not_across_a_pause() -> None:
    """Reflex volleys vary in strength beat to beat (Dimitrijevic, Nathan & Sherwood 1980): a
    beat at a third of the clonus's height, on time, is still the clonus. Without the rule the
    run breaks there and neither half covers half of the episode (typed by duration)."""
    cfg = DetectorConfig()
    heights = [100.0] * 6 + [35.0] + [100.0] * 6  # 7 Hz, the 7th beat weak (above 25 %, below 50 %)
    env = _beat_train(heights)
    freq, _ = clonus_rhythm(env, 1.0, ENV_RATE, cfg)
    assert freq is not None and 6.5 <= freq <= 7.5, freq
    assert clonus_rhythm(env, 1.0, ENV_RATE, DetectorConfig(clonus_skip_beats=0))[0] is None
    # no beat at all where one was due: a pause in the rhythm, not a weak beat
    paused = _beat_train([100.0] * 6 + [0.0] + [100.0] * 6)
    assert clonus_rhythm(paused, 1.0, ENV_RATE, cfg)[0] is None
    # a beat that never relaxes to below the low level on either side is not a beat of its own
    smeared = _beat_train(heights)
    i0, i1 = int((0.1 + 5 * 0.14 + 0.03) * ENV_RATE), int((0.1 + 7 * 0.14) * ENV_RATE)
    smeared[i0:i1] = np.maximum(smeared[i0:i1], 40.0)
    assert clonus_rhythm(smeared, 1.0, ENV_RATE, cfg)[0] is None


def test_a_clonus_falls_silent_between_its_beats_a_wobbling_contraction_does_not() -> None:
    """Each beat of a clonus is a reflex volley followed by the muscle's silence (Wallace, Ross &
    Thomas 2005): between beats the envelope is back at rest. A sustained contraction of few
    motor units wobbling at 7 Hz dips below a quarter of its height once per "beat" (so the
    beat count's hysteresis counts it) but never falls silent: it is no clonus
    (``clonus_max_trough``), whatever its regularity."""
    cfg = DetectorConfig()
    heights = [100.0] * 12
    silent = _beat_train(heights)
    freq, _ = clonus_rhythm(silent, 1.0, ENV_RATE, cfg)
    assert freq is not None and 6.5 <= freq <= 7.5, freq
    for floor, is_clonus in ((3.0, True), (15.0, False), (20.0, False)):
        env = _beat_train(heights)
        a, b = int(0.1 * ENV_RATE), int((0.1 + 12 * 0.14) * ENV_RATE)
        env[a:b] = np.maximum(env[a:b], 1.0 + floor)  # the troughs held at floor % of the beats
        assert (clonus_rhythm(env, 1.0, ENV_RATE, cfg)[0] is not None) is is_clonus, floor
    # the rule off: the same wobble counts as beats again
    env[a:b] = np.maximum(env[a:b], 16.0)
    assert clonus_rhythm(env, 1.0, ENV_RATE, DetectorConfig(clonus_max_trough=1.0))[0] is not None


def test_a_clonus_repeats_its_waveform_every_period() -> None:
    """Clonus is a self-sustaining oscillation of the stretch-reflex loop: each beat is a copy of
    the last, so the envelope's autocorrelation at one period is high (``clonus_min_periodicity``).
    Crossings that merely come at clonus intervals, from a waveform that repeats only every
    second period (a single and a double bump in turn), are counted as beats by the hysteresis
    and pass the interval jitter, but are no clonus."""
    cfg = DetectorConfig(clonus_max_trough=1.0)  # (the troughs are not what this test is about)

    def train(shapes: list[list[tuple[float, float, float]]]) -> np.ndarray:
        env = np.ones(int((0.1 + 12 * 0.14 + 0.3) * ENV_RATE))
        for k in range(12):
            for off, width, h in shapes[k % len(shapes)]:
                i, w = int((0.1 + k * 0.14 + off) * ENV_RATE), int(width * ENV_RATE)
                env[i : i + w] += h * np.hanning(w)
        return env

    same = train([[(0.0, 0.05, 100.0)]])
    assert clonus_rhythm(same, 1.0, ENV_RATE, cfg)[0] is not None
    turns = train([[(0.0, 0.05, 100.0)], [(0.0, 0.02, 100.0), (0.045, 0.03, 60.0)]])
    off = DetectorConfig(clonus_max_trough=1.0, clonus_min_periodicity=-1.0)
    assert clonus_rhythm(turns, 1.0, ENV_RATE, off)[0] is not None  # the beat count alone: clonus
    assert clonus_rhythm(turns, 1.0, ENV_RATE, cfg)[0] is None


@pytest.mark.parametrize("key,bad", [("clonus_min_periodicity", 1.0), ("clonus_min_periodicity", -1.5)])
def test_clonus_min_periodicity_is_validated(key: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=key):
        DetectorConfig.from_dict({key: bad}, source="test")


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_clonus_max_trough_is_validated(bad: float) -> None:
    with pytest.raises(ConfigError, match="clonus_max_trough"):
        DetectorConfig.from_dict({"clonus_max_trough": bad}, source="test")


def test_clonus_skip_beats_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="clonus_skip_beats"):
        DetectorConfig.from_dict({"clonus_skip_beats": -1}, source="test")


# ---------------------------------------------------------------- fused bursts: own_part rows


def _shape(parts: list[tuple[float, float, float, float]], seconds: float) -> np.ndarray:
    """Envelope rows at ENV_RATE: rest 2.0 plus raised-cosine bursts (start s, dur s, height, rise s)."""
    n = int(seconds * ENV_RATE)
    env = np.full(n, 2.0)
    for at, dur, h, rise in parts:
        a, k, r = int(at * ENV_RATE), int(dur * ENV_RATE), max(1, int(rise * ENV_RATE))
        up = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
        b = np.r_[up, np.ones(max(0, k - 2 * r)), up[::-1]]
        env[a : a + b.size] += h * b[: n - a]
    return env


def test_own_part_finds_a_twitch_fused_after_a_weaker_burst() -> None:
    cfg = DetectorConfig()
    min_rows = round(cfg.own_part_min_s * ENV_RATE)
    # a 0.45 s gait burst at 60, back near rest for 0.1 s, then a 0.25 s twitch at 400
    env = _shape([(0.0, 0.45, 60.0, 0.1), (0.55, 0.25, 400.0, 0.02)], 0.85)
    part = own_part(env, cfg, min_rows)
    assert part is not None
    start, end = part[0] / ENV_RATE, part[1] / ENV_RATE
    assert 0.5 <= start <= 0.57 and end >= 0.79, (start, end)
    assert end - start < cfg.twitch_max_s < env.size / ENV_RATE
    # ... and the same twitch followed by a weak burst (a spasm, then the movement goes on)
    after = _shape([(0.0, 0.25, 400.0, 0.02), (0.35, 0.45, 60.0, 0.1)], 0.85)
    part = own_part(after, cfg, min_rows)
    assert part is not None and part[0] == 0 and part[1] / ENV_RATE <= 0.3, part


def test_own_part_leaves_a_spasm_that_builds_up_or_fades_whole() -> None:
    cfg = DetectorConfig()
    min_rows = round(cfg.own_part_min_s * ENV_RATE)
    # builds up over 0.5 s from weak to strong (no valley), then holds: one spasm
    ramp = np.r_[np.linspace(2.0, 400.0, 100), np.full(60, 400.0), np.linspace(400.0, 2.0, 10)]
    assert own_part(ramp, cfg, min_rows) is None
    # a strong burst with slowly decaying after-activity (no valley after it)
    fade = np.r_[np.full(50, 400.0), np.geomspace(100.0, 3.0, 150)]
    assert own_part(fade, cfg, min_rows) is None
    # a weaker burst before it, but comparable in strength (a third of it or more): not "fused"
    close = _shape([(0.0, 0.45, 150.0, 0.1), (0.55, 0.25, 400.0, 0.02)], 0.85)
    assert own_part(close, cfg, min_rows) is None


def test_own_part_finds_a_spasm_rising_straight_out_of_a_weaker_burst() -> None:
    """No valley: a reflex volley on top of a voluntary burst that is still on (a twitch in the
    middle of a stride's burst). Its part starts where the envelope leaves the burst's level, if
    it then reaches 80 % of its peak within ``own_part_step_s``; the same at the end."""
    cfg = DetectorConfig()
    min_rows = round(cfg.own_part_min_s * ENV_RATE)
    step = round(cfg.own_part_step_s * ENV_RATE)
    # a gait burst at 50 from 0 s; at 0.3 s a 0.2 s twitch at 300 rises out of it in 20 ms
    on_top = _shape([(0.0, 0.5, 50.0, 0.08), (0.3, 0.2, 300.0, 0.02)], 0.7)
    part = own_part(on_top, cfg, min_rows, step)
    assert part is not None and 0.29 <= part[0] / ENV_RATE <= 0.32, part
    assert own_part(on_top, cfg, min_rows) is None  # the rule off (step_rows 0): left whole
    # the twitch first, the burst going on after it
    then = _shape([(0.0, 0.25, 300.0, 0.02), (0.15, 0.5, 50.0, 0.08)], 0.7)
    part = own_part(then, cfg, min_rows, step)
    assert part is not None and part[0] == 0 and part[1] / ENV_RATE <= 0.26, part
    # a graded rise out of the burst (0.25 s to the plateau: voluntary recruitment), a ramp from
    # rest, and a twitch from rest (nothing fused: its own rise is not cut) are left whole
    graded = _shape([(0.0, 0.5, 50.0, 0.08), (0.3, 0.5, 300.0, 0.25)], 0.9)
    assert own_part(graded, cfg, min_rows, step) is None
    ramp = np.r_[np.linspace(2.0, 400.0, 100), np.full(60, 400.0), np.linspace(400.0, 2.0, 10)]
    assert own_part(ramp, cfg, min_rows, step) is None
    alone = _shape([(0.1, 0.3, 300.0, 0.02)], 0.7)
    assert own_part(alone, cfg, min_rows, step) is None
    # a burst that builds up into the spasm (its level creeping up, not a level then a jump)
    creeping = _shape([(0.3, 0.2, 300.0, 0.02)], 0.7)
    creeping[:70] += np.linspace(20.0, 95.0, 70)
    assert own_part(creeping, cfg, min_rows, step) is None


@pytest.mark.parametrize("bad", [{"own_part_ratio": 1.0}, {"own_part_dip": 1.2}, {"own_part_edge": 0.0},
                                 {"own_part_step_s": -0.1}, {"own_part_step_s": 60.0}])  # fmt: skip
def test_own_part_keys_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        DetectorConfig.from_dict(bad, source="test")


# --------------------------------------------------------------- fused bursts: the detector


def _events(out: list[DetectorOutput]) -> list[SpasmEvent]:
    return [o for o in out if isinstance(o, SpasmEvent) and o.domain == "emg"]


def _fused_scene(
    declared: bool,
    cfg: DetectorConfig,
    bursts: tuple[tuple[float, float, float], ...] = ((15.0, 1.0, 75.0), (16.12, 0.2, 750.0)),
) -> list[SpasmEvent]:
    """An abrupt 1 s burst at 25x rest (one repetition of an exercise, published as a spasm in
    a declared session: abrupt), 0.12 s near rest, then a 0.2 s twitch at 250x rest: one episode
    (the gap is shorter than ``quiet_s``)."""
    seconds = 30.0
    rng = np.random.default_rng(5)
    sos = signal.butter(2, [40, 150], btype="bandpass", fs=RATE, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(int(seconds * RATE)))
    x = x / x.std()
    n = x.size
    env = np.full(n, 3.0)
    for at, dur, amp in bursts:
        a, k, r = int(at * RATE), int(dur * RATE), int(0.015 * RATE)
        up = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
        env[a : a + k] += amp * np.r_[up, np.ones(k - 2 * r), up[::-1]]
    det = SpasmDetector(cfg, emg_rate_hz=RATE, channel_labels=["EMG TA"])
    out: list[DetectorOutput] = []
    if declared:
        out += det.declare("exercise", int(5 * RATE), int(25 * RATE))
    return _events(out + feed_interleaved(det, (x * env)[:, None], None, RATE, None))


def test_a_twitch_fused_after_a_weaker_burst_during_exercise_is_a_twitch_dated_from_itself() -> None:
    cfg = DetectorConfig(mains_max_harmonic=0)
    ev = _fused_scene(True, cfg)
    assert [(e.type, e.context) for e in ev] == [("twitch", "exercise")], [(e.type, e.duration_s) for e in ev]
    assert abs(ev[0].onset_sample / RATE - 16.12) <= 0.06, ev[0].onset_sample / RATE
    assert ev[0].key.endswith(str(ev[0].onset_sample))
    # without the rule the whole episode is typed by its length: phasic
    off = _fused_scene(True, DetectorConfig(mains_max_harmonic=0, own_part_ratio=1e9))
    assert [(e.type, round(e.onset_sample / RATE, 1)) for e in off] == [("phasic", 15.0)]
    # at rest there is no voluntary burst to fuse with: typed by the whole episode as before
    rest = _fused_scene(False, cfg)
    assert [e.type for e in rest] == ["phasic"]


def test_a_twitch_rising_out_of_an_exercise_burst_is_a_twitch_dated_from_itself() -> None:
    """The same twitch in the middle of the repetition's burst (no silence between them): typed,
    dated and judged by its own part (its rise is its own, not the repetition's). Without the
    rule the episode's rise runs from the repetition's start to the twitch's peak (0.4 s): the
    whole is taken for the graded repetition and the spasm is lost."""
    cfg = DetectorConfig(mains_max_harmonic=0)
    scene = ((15.0, 1.0, 75.0), (15.6, 0.2, 750.0))
    ev = _fused_scene(True, cfg, scene)
    assert [(e.type, e.context) for e in ev] == [("twitch", "exercise")], [(e.type, e.duration_s) for e in ev]
    assert abs(ev[0].onset_sample / RATE - 15.6) <= 0.06, ev[0].onset_sample / RATE
    assert ev[0].rise_s is not None and ev[0].rise_s < 0.1, ev[0].rise_s  # its own rise
    off = _fused_scene(True, DetectorConfig(mains_max_harmonic=0, own_part_ratio=1e9), scene)
    assert off == [], [(e.type, e.duration_s, e.rise_s) for e in off]
    # at rest nothing is fused: one phasic spasm from the first burst's onset, as before
    rest = _fused_scene(False, cfg, scene)
    assert [(e.type, round(e.onset_sample / RATE, 1)) for e in rest] == [("phasic", 15.0)]


def test_a_spasm_after_merged_cycle_bursts_is_judged_by_its_own_part() -> None:
    """Pedal strokes at a brisk cadence merge into one episode (their silences are shorter than
    ``quiet_s``); a spasm far stronger than them at its end, held for two cycles or more without
    a silence, is its own part (``SpasmDetector._spasm_after_bursts``): not the movement's."""
    det = SpasmDetector(DetectorConfig(), emg_rate_hz=RATE, channel_labels=["EMG VL"])
    det.feed_emg(0, np.zeros((int(2 * RATE), 1)))  # (the bank exists once the EMG has started)
    bank = det._bank
    assert bank is not None
    ev = SpasmEvent(key="k", type="tonic", channel="EMG VL", domain="emg", onset_sample=0,
                    offset_sample=int(16 * RATE), rate_hz=RATE, peak_uv=1500.0, mean_uv=260.0,
                    baseline_uv=2.0, relative_amplitude=750.0, frequency_hz=None, confidence=1.0,
                    detector_version="t", config_hash="t", rise_s=9.5)  # fmt: skip
    cycle = 0.8
    strokes = [(0.3 + k * cycle, 0.75 + k * cycle) for k in range(12)]  # silences between strokes
    bank.episodes.own_parts["k"] = (int(9.6 * RATE), int(15.6 * RATE), "phasic", 0.05)
    assert det._spasm_after_bursts(ev, cycle, [*strokes, (15.55, 15.9)])  # (its end's silence is after it)
    assert not det._spasm_after_bursts(ev, cycle, [*strokes, (12.0, 12.4)])  # it fell silent inside
    bank.episodes.own_parts["k"] = (int(14.6 * RATE), int(15.6 * RATE), "phasic", 0.05)
    assert not det._spasm_after_bursts(ev, cycle, strokes)  # shorter than two cycles
    # one repetition's own rise (no merged burst before the part: no silence before it)
    bank.episodes.own_parts["k"] = (int(1.0 * RATE), int(15.6 * RATE), "tonic", 0.05)
    assert not det._spasm_after_bursts(ev, cycle, [(15.55, 15.9)])
    bank.episodes.own_parts["k"] = (0, int(15.6 * RATE), "tonic", None)
    assert not det._spasm_after_bursts(ev, cycle, strokes)  # no weaker bursts before it
