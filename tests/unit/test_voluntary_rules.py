"""Voluntary-movement rules that need no accelerometer on the moving segment (issue 9).

Signals are built here from the physiology each rule relies on (not copied from a simulator):
band-limited noise carrier (surface EMG's 40-150 Hz power), amplitude envelopes for the drive.

* a sustained contraction modulated at a push/stride rhythm is movement, not a tonic spasm;
* the first bursts of a rhythm (an antagonist pair alternating) are judged with the bursts
  that follow them;
* a multi-muscle synergy with graded onsets is a reach or a lift even when the accelerometer
  sees nothing, while the same synergy with abrupt onsets stays a (bilateral) spasm.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from detectors import DetectorConfig, DetectorOutput, SpasmDetector, SpasmEvent
from detectors.config import ConfigError
from detectors.detector import feed_interleaved
from detectors.rhythm import clonus_rhythm, cyclic_modulation

RATE = 1000.0
ENV_RATE = 200.0


def _carrier(seconds: float, n_ch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sos = signal.butter(2, [40, 150], btype="bandpass", fs=RATE, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((int(seconds * RATE), n_ch)), axis=0)
    return np.asarray(x / x.std(axis=0))


def _ramp(n: int, at_s: float, dur_s: float, rise_s: float) -> np.ndarray:
    """0..1 envelope: raised-cosine rise over ``rise_s``, hold, the same fall."""
    env = np.zeros(n)
    a, k, r = int(at_s * RATE), int(dur_s * RATE), max(1, int(rise_s * RATE))
    up = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
    shape = np.r_[up, np.ones(max(0, k - 2 * r)), up[::-1]]
    env[a : a + shape.size] = shape[: n - a]
    return env


def _run(emg: np.ndarray, acc: np.ndarray | None = None) -> list[DetectorOutput]:
    det = SpasmDetector(
        DetectorConfig(mains_max_harmonic=0),
        emg_rate_hz=RATE,
        channel_labels=[f"EMG {i}" for i in range(emg.shape[1])],
        acc_rate_hz=None if acc is None else 50.0,
    )
    return feed_interleaved(det, emg, acc, RATE, None if acc is None else 50.0)


def _events(out: list[DetectorOutput]) -> list[SpasmEvent]:
    return [o for o in out if isinstance(o, SpasmEvent) and o.domain == "emg"]


def _still_acc(seconds: float) -> np.ndarray:
    acc = np.zeros((int(seconds * 50), 3))
    acc[:, 2] = 1.0
    return acc + np.random.default_rng(9).normal(0.0, 0.003, acc.shape)


# ------------------------------------------------------------------ envelope modulation (rhythm.py)
def _ragged(env: np.ndarray, seed: int) -> np.ndarray:
    """An amplitude envelope as a few motor units make it: multiplicative 25 Hz-band noise."""
    rng = np.random.default_rng(seed)
    sos = signal.butter(2, 25.0, fs=ENV_RATE, output="sos")
    wobble = signal.sosfilt(sos, rng.standard_normal(env.size))
    return np.asarray(env * np.maximum(0.2, 1.0 + 0.6 * wobble / wobble.std()))


def test_cyclic_modulation_finds_a_push_rhythm_and_not_a_tonic_or_clonic_envelope() -> None:
    cfg = DetectorConfig()
    t = np.arange(int(30 * ENV_RATE)) / ENV_RATE
    # the triceps through every wheelchair push: never silent, peaks once per 1.2 s push
    push = _ragged(60.0 + 40.0 * np.cos(2 * np.pi * t / 1.2), 1)
    period = cyclic_modulation(push, ENV_RATE, cfg)
    assert period is not None and abs(period - 1.2) <= 0.1
    # a tonic spasm: steady drive that fades with fatigue and wanders slowly (no fixed period)
    rng = np.random.default_rng(2)
    slow = signal.sosfilt(signal.butter(1, 0.15, fs=ENV_RATE, output="sos"), rng.standard_normal(t.size))
    tonic = _ragged(100.0 * np.exp(-t / 40.0) * (1.0 + 0.3 * slow / slow.std()), 3)
    assert cyclic_modulation(tonic, ENV_RATE, cfg) is None
    # clonus-rate beats (6 Hz, deep) are no voluntary cycle, even where regular
    clonic = _ragged(60.0 + 55.0 * np.cos(2 * np.pi * 6.0 * t), 4)
    assert cyclic_modulation(clonic, ENV_RATE, cfg) is None
    # too short for three cycles of the rhythm: undecided
    assert cyclic_modulation(push[: int(3.0 * ENV_RATE)], ENV_RATE, cfg) is None


def test_a_contraction_modulated_at_a_push_rhythm_is_movement_not_a_tonic_spasm() -> None:
    seconds = 90.0
    x = _carrier(seconds, 1, seed=11)
    n = x.shape[0]
    t = np.arange(n) / RATE
    env = np.full(n, 3.0)
    # 40 s of wheelchair pushing: the muscle never falls quiet, 0.9 Hz push modulation
    push = (t >= 10.0) & (t < 50.0)
    env[push] += 120.0 * (0.6 + 0.4 * np.cos(2 * np.pi * 0.9 * t[push])) * _ramp(n, 10.0, 40.0, 0.3)[push]
    # then a 15 s tonic spasm: abrupt, steady with a slow fade
    env += 150.0 * _ramp(n, 65.0, 15.0, 0.02) * np.exp(-np.maximum(t - 65.0, 0.0) / 30.0)
    evs = _events(_run(x * env[:, None]))
    assert [(e.type, round(e.onset_sample / RATE)) for e in evs] == [("tonic", 65)]


# ----------------------------------------------------------- rhythm seen both ways (first bursts)
def test_the_first_bursts_of_an_alternating_rhythm_are_judged_with_the_later_ones() -> None:
    # an antagonist pair alternating (elbow flexor / extensor of pushing, tibialis / calf of
    # stepping): each muscle bursts every 1.4 s, the other 0.7 s later (reciprocal inhibition)
    seconds = 60.0
    x = _carrier(seconds, 2, seed=12)
    n = x.shape[0]
    env = np.full((n, 2), 3.0)
    for k in range(10):
        env[:, 0] += 100.0 * _ramp(n, 10.0 + 1.4 * k, 0.5, 0.25)
        env[:, 1] += 60.0 * _ramp(n, 10.7 + 1.4 * k, 0.5, 0.25)
    env[:, 0] += 150.0 * _ramp(n, 45.0, 1.5, 0.02)  # a phasic spasm at rest afterwards
    for acc in (None, _still_acc(seconds)):  # no accelerometer, or one on a segment that stays still
        evs = _events(_run(x * env, acc))
        assert [round(e.onset_sample / RATE) for e in evs] == [45]


# ---------------------------------------------------------------- graded synergy, no movement seen
def _synergy_scene(rise_s: float) -> list[SpasmEvent]:
    seconds = 40.0
    x = _carrier(seconds, 4, seed=13)
    n = x.shape[0]
    env = np.full((n, 4), 3.0)
    # postural muscles 50-150 ms before the focal one (anticipatory postural adjustment), ~0.8 s
    for ch, at, amp in ((0, 15.0, 200.0), (1, 15.05, 150.0), (2, 15.1, 250.0), (3, 15.2, 120.0)):
        env[:, ch] += amp * _ramp(n, at, 0.8, rise_s)
    return _events(_run(x * env, _still_acc(seconds)))


def test_a_graded_multi_muscle_synergy_is_voluntary_even_if_the_accelerometer_sees_nothing() -> None:
    # a reach seen by a thigh accelerometer: the legs' postural bursts and the arm's ramp up
    # over 0.25 s, the thigh does not move
    assert _synergy_scene(0.25) == []
    # the same four muscles recruited abruptly: a bilateral reflex spasm, reported on each
    assert len(_synergy_scene(0.015)) == 4


# --------------------------------------------------------- soft ramp rule: partners corroborate
def _pair_scene(ramp_s: float, partner: bool) -> tuple[list[SpasmEvent], SpasmDetector]:
    """A burst (and optionally its antagonist, 30 ms later, same ramp) at 15 s from a still limb,
    followed by a smooth 1.5 s limb displacement (no tilt, no rhythm: "other voluntary")."""
    seconds = 40.0
    x = _carrier(seconds, 2, seed=14)
    n = x.shape[0]
    env = np.full((n, 2), 3.0)
    env[:, 0] += 150.0 * _ramp(n, 15.0, 2.0, ramp_s)
    if partner:
        env[:, 1] += 100.0 * _ramp(n, 15.03, 2.0, ramp_s)
    acc = _still_acc(seconds)
    k = int(1.5 * 50)
    acc[int(15.15 * 50) : int(15.15 * 50) + k, 0] += 0.15 * np.hanning(k)
    det = SpasmDetector(
        DetectorConfig(mains_max_harmonic=0), emg_rate_hz=RATE, channel_labels=["EMG 0", "EMG 1"],
        acc_rate_hz=50.0,
    )  # fmt: skip
    return _events(feed_interleaved(det, x * env, acc, RATE, 50.0)), det


def test_two_co_contracting_bursts_in_the_ambiguous_ramp_band_corroborate_each_other() -> None:
    cfg = DetectorConfig()
    lo, hi = cfg.voluntary_ramp_ambiguous_s, cfg.voluntary_ramp_s
    det = SpasmDetector(cfg, emg_rate_hz=RATE, channel_labels=["EMG 0", "EMG 1", "EMG 2"])
    # ramp evidence: none where reflex spasms still reach their plateau, full from a clear
    # self-paced ramp, graded between (not a step at one value)
    assert det._ramp_evidence(0.1) == 0.0 and det._ramp_evidence(lo) == 0.0
    assert det._ramp_evidence(hi) == 1.0 and det._ramp_evidence(0.6) == 1.0
    mid = 0.5 * (lo + hi)
    assert abs(det._ramp_evidence(mid) - 0.5) < 1e-9
    just_under = hi - 0.1 * (hi - lo)  # e.g. 0.245 s against 0.25 s
    # alone, a burst just under the clear-ramp value has no partner to corroborate it
    assert not det._ramped_partner("EMG 0", 15.0, 20.0, just_under)
    # its antagonist (same command, common drive) started 30 ms later and ramped the same way
    det._recent.append(("EMG 1", 15.03, 17.0, just_under))
    assert det._ramped_partner("EMG 0", 15.0, 20.0, just_under)
    # a partner rising like a reflex burst adds nothing; one clearly ramped decides alone
    det._recent.clear()
    det._recent.append(("EMG 1", 15.03, 17.0, 0.05))
    assert not det._ramped_partner("EMG 0", 15.0, 20.0, just_under)
    det._recent.append(("EMG 2", 14.9, 17.0, hi))
    assert det._ramped_partner("EMG 0", 15.0, 20.0, 0.02)
    # the scene: an abrupt co-contraction that starts a smooth movement is a spasm pair
    evs, _ = _pair_scene(0.015, partner=True)
    assert len(evs) == 2


# ------------------------------------------------- a ramped "clonus" during activity is voluntary
def test_a_clonic_envelope_that_ramps_up_during_exercise_is_voluntary_an_abrupt_clonus_is_not() -> None:
    seconds = 60.0
    x = _carrier(seconds, 1, seed=15)
    n = x.shape[0]
    t = np.arange(n) / RATE
    # the same 6 Hz beats in both bursts, the envelope falling to 15 % between them
    beats = 0.15 + 0.85 * (np.cos(2 * np.pi * 6.0 * t) > -0.5)
    env = np.full(n, 3.0)
    # a knee extension recruited over 0.8 s whose few motor units beat at 6 Hz
    env += 120.0 * _ramp(n, 20.0, 2.5, 0.8) * beats
    # ankle clonus: reflex beats at 6 Hz from the first one
    env += 120.0 * _ramp(n, 40.0, 2.5, 0.01) * beats

    def run(declare: bool) -> list[SpasmEvent]:
        det = SpasmDetector(DetectorConfig(mains_max_harmonic=0), emg_rate_hz=RATE, channel_labels=["EMG 0"])
        out: list[DetectorOutput] = []
        if declare:
            out += det.declare("exercise", int(10 * RATE), int(55 * RATE))
        return _events(out + feed_interleaved(det, x * env[:, None], None, RATE, None))

    at_rest = run(False)
    assert [(e.type, round(e.onset_sample / RATE)) for e in at_rest] == [("clonus", 20), ("clonus", 40)]
    assert (at_rest[0].rise_s or 0.0) >= DetectorConfig().voluntary_ramp_s  # the test means it
    # in an exercise session the ramped one is the exercise; clonus stays a spasm, always
    assert [(e.type, round(e.onset_sample / RATE)) for e in run(True)] == [("clonus", 40)]


# ------------------------------------------------------------------ robust rise-time estimate
def test_one_early_motor_unit_discharge_does_not_cut_a_recruitment_ramp_short() -> None:
    """At the start of a graded contraction only the first-recruited units fire, each once or
    twice per 50 ms; one of them under the electrode gives a MUAP as tall as the plateau's
    summed envelope. That single discharge is not the plateau: the rise is read on power
    averaged over ``rise_smoothing_s``."""
    seconds = 30.0
    x = _carrier(seconds, 1, seed=16)[:, 0]
    n = x.size
    w = np.arange(-12, 13) / RATE
    muap = -w / 0.003 * np.exp(-0.5 * (w / 0.003) ** 2)  # biphasic, ~12 ms
    sig = x * (3.0 + 150.0 * _ramp(n, 10.0, 2.0, 0.5))  # recruitment ramp over 0.5 s
    i = int(10.04 * RATE)
    sig[i - 12 : i + 13] += 400.0 * muap  # one early discharge 40 ms into the ramp
    sig += x * 150.0 * _ramp(n, 20.0, 2.0, 0.01)  # an abrupt spasm (reflex recruitment)

    def rises(cfg: DetectorConfig) -> list[float]:
        det = SpasmDetector(cfg, emg_rate_hz=RATE, channel_labels=["EMG 0"])
        return [e.rise_s or 0.0 for e in _events(feed_interleaved(det, sig[:, None], None, RATE, None))]

    cfg = DetectorConfig(mains_max_harmonic=0)
    graded, abrupt = rises(cfg)
    assert graded >= cfg.voluntary_min_rise_s and abrupt < cfg.voluntary_min_rise_s, (graded, abrupt)
    # read row by row, the one discharge would have made the ramp look abrupt
    raw = rises(DetectorConfig(mains_max_harmonic=0, rise_smoothing_s=0.001))
    assert raw[0] < cfg.voluntary_min_rise_s, raw


# ------------------------------------------------- cross-talk is a copy of the waveform, not a ratio
def _under_a_strong_neighbour(cfg: DetectorConfig) -> list[SpasmEvent]:
    """A strong 400 uV contraction on channel 0 (a leg's postural burst) leaks into channel 2 next
    to it through the tissue (5 %, low-passed: the same motor units, attenuated). Channel 1 is a
    muscle of another limb (the arm's agonist of a reach): during the leg's plateau it ramps up
    over 0.3 s to 30 uV, 13x weaker than the leg, from motor units of its own."""
    seconds = 20.0
    x = _carrier(seconds, 3, seed=17)
    n = x.shape[0]
    src = x[:, 0] * (3.0 + 400.0 * _ramp(n, 5.0, 4.0, 0.1))
    leak = signal.sosfilt(signal.butter(2, 150.0, fs=RATE, output="sos"), src)
    own = x[:, 1] * (3.0 + 30.0 * _ramp(n, 6.5, 1.5, 0.3))
    det = SpasmDetector(cfg, emg_rate_hz=RATE, channel_labels=["EMG 0", "EMG 1", "EMG 2"])
    emg = np.stack([src, own, 3.0 * x[:, 2] + 0.05 * leak], axis=1)
    return sorted(_events(feed_interleaved(det, emg, None, RATE, None)), key=lambda e: e.onset_sample)


def test_a_weak_muscle_of_its_own_under_a_strong_neighbour_is_not_taken_for_its_cross_talk() -> None:
    cfg = DetectorConfig(mains_max_harmonic=0)
    evs = _under_a_strong_neighbour(cfg)
    # the copy on channel 2 never becomes an event (lagged copies of the source explain it); the
    # weak muscle's own burst is found from its own onset, with its recruitment ramp measured
    assert [e.channel for e in evs] == ["EMG 0", "EMG 1"]
    assert abs(evs[0].onset_sample / RATE - 5.0) < 0.06
    assert abs(evs[1].onset_sample / RATE - 6.5) < 0.1, evs[1]
    assert (evs[1].rise_s or 0.0) >= cfg.voluntary_min_rise_s
    # by the amplitude ratio alone it was "cross-talk" until it outgrew 1/8 of its neighbour:
    # found late, its ramp cut short
    old = _under_a_strong_neighbour(DetectorConfig(mains_max_harmonic=0, crosstalk_copy_share=2.0))
    assert [e.channel for e in old] == ["EMG 0", "EMG 1"]
    assert old[1].onset_sample / RATE > 6.6 and (old[1].rise_s or 0.0) < cfg.voluntary_min_rise_s, old[1]


def test_copy_share_explains_a_filtered_copy_and_not_another_muscle() -> None:
    from detectors.crosstalk import copy_share
    from detectors.emg_filters import design_emg_filter

    cfg = DetectorConfig()
    sos = design_emg_filter(cfg, RATE, 50)
    x = _carrier(1.0, 2, seed=18).T * 50.0
    copy = 0.1 * signal.sosfilt(signal.butter(2, 120.0, fs=RATE, output="sos"), x[0])
    noise = np.random.default_rng(19).standard_normal(x.shape[1])
    pad, lag = 100, 3
    # a copy through the tissue's low-pass, on a channel's own rest noise: mostly explained
    assert copy_share(np.stack([copy + 0.5 * noise, x[0]]), sos, pad, lag) > 0.8
    # an independent muscle (other motor units), even when both contract together: barely
    env = 0.5 + 0.5 * np.sin(np.pi * np.arange(x.shape[1]) / x.shape[1])
    assert copy_share(np.stack([x[1] * env, x[0] * env]), sos, pad, lag) < 0.15


# ------------------------------------------- the next burst of a rhythm waits for the ones after it
def test_a_push_that_reads_abrupt_is_judged_with_the_pushes_after_it() -> None:
    """Wheelchair pushes every 1.4 s whose triceps bursts cross the threshold near their top (an
    abrupt-looking rise): from the second push on, each follows its predecessor at a voluntary
    interval and is judged with the pushes after it, so the bout is recognised as a rhythm. The
    first push (no predecessor yet) is decided at once, like an isolated spasm at rest; two
    spasms 2 s apart are no rhythm and stay spasms (published once the later bursts are known)."""
    seconds = 60.0
    x = _carrier(seconds, 1, seed=20)
    n = x.shape[0]
    env = np.full(n, 3.0)
    for k in range(10):
        env += 80.0 * _ramp(n, 10.0 + 1.4 * k, 0.4, 0.02)
    env += 150.0 * _ramp(n, 40.0, 1.0, 0.02) + 150.0 * _ramp(n, 42.0, 0.3, 0.02)
    evs = _events(_run((x[:, 0] * env)[:, None]))
    assert [round(e.onset_sample / RATE, 1) for e in evs] == [10.0, 40.0, 42.0]


# ------------------------------------------------------------------ clonus: reflex onset, jitter
def _beats(starts_s: list[float], width_s: float = 0.05, height: float = 100.0) -> np.ndarray:
    """An envelope (ENV_RATE) of reflex beats: a raised-cosine burst at each start, rest 1."""
    env = np.ones(int((starts_s[-1] + 0.3) * ENV_RATE))
    w = max(2, int(width_s * ENV_RATE))
    bump = height * np.hanning(w)
    for s in starts_s:
        i = int(s * ENV_RATE)
        env[i : i + w] += bump[: env.size - i]
    return env


def test_clonus_with_cycle_to_cycle_jitter_near_8_hz_is_clonus_a_faster_beat_is_not() -> None:
    """The clonus band bounds the run's median interval; single cycles vary (each beat is a reflex
    volley, Beres-Jones et al. 2003), so a 7.7 Hz clonus has intervals shorter than 1/8 s."""
    cfg = DetectorConfig()
    intervals = [0.13, 0.105, 0.15, 0.11, 0.14, 0.12, 0.145, 0.108, 0.135, 0.125]
    assert min(intervals) < 0.92 / cfg.clonus_max_hz  # the old per-interval band broke this run
    freq, _ = clonus_rhythm(_beats(list(np.cumsum([0.1, *intervals]))), 1.0, ENV_RATE, cfg)
    assert freq is not None and 7.0 <= freq <= 8.5, freq
    # the same jitter around 0.09 s (11 Hz: motor-unit discharge rates, not clonus)
    fast = [v * 0.09 / 0.13 for v in intervals]
    assert clonus_rhythm(_beats(list(np.cumsum([0.1, *fast])), width_s=0.035), 1.0, ENV_RATE, cfg)[0] is None


def _clonic_synergy(clonus_rise_s: float, cfg: DetectorConfig) -> list[SpasmEvent]:
    """Three muscles ramp up over 0.25 s (a reach seen by no accelerometer, as in
    ``_synergy_scene``); the fourth starts with them and its envelope beats at 7 Hz."""
    seconds = 40.0
    x = _carrier(seconds, 4, seed=17)
    n = x.shape[0]
    t = np.arange(n) / RATE
    env = np.full((n, 4), 3.0)
    for ch, at, amp in ((0, 15.0, 200.0), (1, 15.05, 150.0), (2, 15.1, 250.0)):
        env[:, ch] += amp * _ramp(n, at, 0.8, 0.25)
    beats = 0.1 + 0.9 * (np.cos(2 * np.pi * 7.0 * (t - 15.1)) > -0.2)
    env[:, 3] += 180.0 * _ramp(n, 15.1, 1.4, clonus_rise_s) * beats
    det = SpasmDetector(
        cfg, emg_rate_hz=RATE, channel_labels=[f"EMG {i}" for i in range(4)], acc_rate_hz=50.0
    )
    return _events(feed_interleaved(det, x * env, _still_acc(seconds), RATE, 50.0))


def test_a_clonus_built_up_by_recruitment_is_judged_as_a_burst_a_reflex_clonus_is_not() -> None:
    """Clonus starts with a reflex volley: it is at its height within its first beats. A
    "clonus" that took longer than ``clonus_reflex_periods`` of its own period to build up was
    recruited like a voluntary contraction: inside a graded synergy it is the reach."""
    cfg = DetectorConfig(mains_max_harmonic=0)
    built_up = _clonic_synergy(0.8, cfg)
    assert built_up == [], [(e.type, e.rise_s) for e in built_up]
    abrupt = _clonic_synergy(0.01, cfg)
    assert [(e.type, e.channel) for e in abrupt] == [("clonus", "EMG 3")]
    assert (abrupt[0].rise_s or 0.0) * (abrupt[0].frequency_hz or 0.0) < cfg.clonus_reflex_periods
    # without the rule the built-up one is clonus, and clonus is never voluntary: a spasm
    off = _clonic_synergy(0.8, DetectorConfig(mains_max_harmonic=0, clonus_reflex_periods=100.0))
    assert [(e.type, e.channel) for e in off] == [("clonus", "EMG 3")]


def test_clonus_reflex_periods_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="clonus_reflex_periods"):
        DetectorConfig.from_dict({"clonus_reflex_periods": 0.0}, source="test")
    assert DetectorConfig.from_dict({"clonus_reflex_periods": 3}, source="test").clonus_reflex_periods == 3.0


def test_a_ramped_clonic_envelope_beating_on_after_the_movement_stopped_is_a_spasm() -> None:
    """A "clonus" ramped up by a voluntary contraction is that contraction only while the
    movement goes on: one beating on after the limb has stopped outlasts the movement (a clonus
    fused after a sit-to-stand's quadriceps burst)."""
    seconds = 60.0
    x = _carrier(seconds, 1, seed=17)
    n = x.shape[0]
    t = np.arange(n) / RATE
    # 4 Hz beats (a quadriceps clonus), ramped over 0.6 s: 80 % of the plateau in ~1.3 periods,
    # not built up by recruitment (``clonus_reflex_periods``) but ramped (``voluntary_ramp_s``)
    beats = 0.15 + 0.85 * (np.cos(2 * np.pi * 4.0 * t) > -0.5)
    env = np.full(n, 3.0)
    env += 120.0 * _ramp(n, 20.0, 2.5, 0.6) * beats  # a knee extension, the shank moving throughout
    env += 120.0 * _ramp(n, 40.0, 5.5, 0.6) * beats  # the same start, beating on 3 s after it stopped
    m = int(seconds * 50)
    theta = np.zeros(m)
    for at in (19.9, 39.9):  # the shank turns by 60 deg and back over 2.6 s, smoothly
        k0, k = int(at * 50), int(2.6 * 50)
        theta[k0 : k0 + k] = np.radians(60.0) * np.sin(np.pi * np.arange(k) / k) ** 2
    acc = np.stack([np.sin(theta), np.zeros(m), np.cos(theta)], axis=1)
    acc += np.random.default_rng(6).normal(0.0, 0.003, acc.shape)
    evs = _events(_run(x * env[:, None], acc))
    assert [(e.type, round(e.onset_sample / RATE)) for e in evs] == [("clonus", 40)]
    assert (evs[0].rise_s or 0.0) >= DetectorConfig().voluntary_ramp_s  # the test means it


# ------------------------------------------ abrupt bursts alternating with an antagonist's rhythm
def test_abrupt_bursts_alternating_with_an_antagonists_rhythm_are_movement() -> None:
    """Wheelchair pushes whose bursts cross the threshold near their top (abrupt-looking): the
    triceps pushes every 1.4 s, the biceps recovers 0.6 s after each push (further apart than
    ``synergy_window_s``: they alternate, reciprocal inhibition). The biceps' first burst has no
    predecessor of its own, but it sits between two triceps bursts of a regular rhythm: it is
    judged with the bursts after it and is movement. A phasic spasm of the biceps at rest later,
    co-contracting with nothing, stays a spasm."""
    seconds = 60.0
    x = _carrier(seconds, 2, seed=31)
    n = x.shape[0]
    env = np.full((n, 2), 3.0)
    for k in range(10):
        env[:, 1] += 80.0 * _ramp(n, 10.0 + 1.4 * k, 0.4, 0.02)  # triceps: push
        env[:, 0] += 80.0 * _ramp(n, 10.6 + 1.4 * k, 0.3, 0.02)  # biceps: recovery
    env[:, 0] += 150.0 * _ramp(n, 45.0, 1.0, 0.02)  # a phasic spasm at rest afterwards
    for acc in (None, _still_acc(seconds)):  # no accelerometer, or one on a segment that stays still
        evs = [e for e in _events(_run(x * env, acc)) if e.channel == "EMG 0"]
        assert [round(e.onset_sample / RATE, 1) for e in evs] == [45.0]


@pytest.mark.parametrize("cadence,recovery", [(1.2, 0.45), (1.55, 0.6)])
def test_a_bouts_first_push_and_its_drifting_last_pushes_are_movement(
    cadence: float, recovery: float
) -> None:
    """A wheelchair bout seen by no accelerometer on the arm: abrupt-looking triceps pushes every
    1.2 s, the biceps' recovery 0.45 s after each push starts (within ``synergy_window_s`` of
    it, but only once the push has ended: alternation, not co-contraction). The first push has
    no biceps burst before it, and the cadence drifts into the stop (+20 %, then -5 %): none of
    them is a spasm. At a slow cadence (1.55 s) the lookahead holds only two biceps bursts after
    the first push, one between each pair of pushes (``_interleaves``). A triceps spasm
    co-contracting with the biceps at rest later still is a spasm."""
    seconds = 60.0
    x = _carrier(seconds, 2, seed=41)
    n = x.shape[0]
    env = np.full((n, 2), 3.0)
    pushes = [10.0 + cadence * k for k in range(9)]
    pushes += [pushes[-1] + 1.2 * cadence, pushes[-1] + 2.15 * cadence]
    for at in pushes:
        env[:, 1] += 90.0 * _ramp(n, at, 0.3, 0.02)  # triceps: push
        env[:, 0] += 70.0 * _ramp(n, at + recovery, 0.3, 0.02)  # biceps: recovery
    env[:, 1] += 160.0 * _ramp(n, 45.0, 1.0, 0.02)  # a spasm at rest afterwards...
    env[:, 0] += 120.0 * _ramp(n, 45.1, 0.9, 0.02)  # ...co-contracting with the biceps
    for acc in (None, _still_acc(seconds)):
        evs = _events(_run(x * env, acc))
        assert sorted((e.channel, round(e.onset_sample / RATE)) for e in evs) == [
            ("EMG 0", 45), ("EMG 1", 45),
        ]  # fmt: skip


def test_a_spasm_fused_with_one_burst_of_a_rhythm_at_rest_is_a_spasm() -> None:
    """A muscle pushing every 1.05 s, seen by no accelerometer (a wheelchair's triceps): its
    bursts are a voluntary rhythm, none a spasm. One push fused with a spasm starts on time but
    lasts four pushes and is 2.6 times as strong: out of the pattern of the channel's bursts
    (``_overpowers``, as during movement the accelerometer sees), it is the spasm."""
    seconds = 60.0
    x = _carrier(seconds, 1, seed=43)
    n = x.shape[0]
    env = np.full((n, 1), 3.0)
    for k in range(16):
        at = 10.0 + 1.05 * k
        if k == 8:
            env[:, 0] += 340.0 * _ramp(n, at, 1.2, 0.05)
        else:
            env[:, 0] += 130.0 * _ramp(n, at, 0.28, 0.04)
    for acc in (None, _still_acc(seconds)):
        evs = _events(_run(x * env, acc))
        # (the bout's first push, abrupt and with nothing before it, is decided alone at rest:
        # a known cost, docs/detector.md "A rhythm is seen both ways")
        assert [round(e.onset_sample / RATE, 1) for e in evs if e.onset_sample > 10.5 * RATE] == [18.4]


# ----------------------------------------------------- the limb settling after a spasm (spasm_settle_s)
def _spasm_then_graded_spasm(cfg: DetectorConfig) -> list[SpasmEvent]:
    """An abrupt 2 s spasm that moves the limb smoothly (no tilt, no rhythm: "other" movement on
    the accelerometer) and the limb settling for a second after it; 0.8 s after it ends a second
    spasm of the same muscle starts, rising over 0.12 s (graded enough to read as voluntary
    during movement), alone on its channel."""
    seconds = 40.0
    x = _carrier(seconds, 1, seed=23)
    n = x.shape[0]
    env = np.full(n, 3.0)
    env += 150.0 * _ramp(n, 20.0, 2.0, 0.02)
    env += 120.0 * _ramp(n, 22.8, 1.5, 0.12)
    acc = _still_acc(seconds)
    # the limb swaying smoothly (below 2 Hz, 0.1 g RMS) during the spasm and while it settles
    k0, k = int(20.05 * 50), int(2.95 * 50)
    sway = signal.sosfiltfilt(
        signal.butter(2, 2.0, fs=50.0, output="sos"), np.random.default_rng(4).standard_normal(k)
    )
    acc[k0 : k0 + k, 0] += 0.1 * sway / sway.std() * np.hanning(k) ** 0.3
    det = SpasmDetector(cfg, emg_rate_hz=RATE, channel_labels=["EMG 0"], acc_rate_hz=50.0)
    return _events(feed_interleaved(det, x * env[:, None], acc, RATE, 50.0))


def test_the_limb_settling_after_a_spasm_is_not_movement_under_way() -> None:
    """The accelerometer's movement during a spasm and for ``spasm_settle_s`` after it is the
    spasm's (the jerk, the limb falling back), not a voluntary movement that the next burst
    continues: a graded burst starting then is judged as at rest, and is a spasm. Without the
    settling time the "movement already under way" makes it voluntary."""
    cfg = DetectorConfig(mains_max_harmonic=0)
    evs = _spasm_then_graded_spasm(cfg)
    assert [round(e.onset_sample / RATE, 1) for e in evs] == [20.0, 22.8]
    assert evs[1].context == "rest"
    assert 0.08 <= (evs[1].rise_s or 0.0) < cfg.voluntary_ramp_s  # the test means it
    bare = _spasm_then_graded_spasm(DetectorConfig(mains_max_harmonic=0, spasm_settle_s=0.0))
    assert [round(e.onset_sample / RATE, 1) for e in bare] == [20.0]


def test_spasm_settle_s_is_validated() -> None:
    with pytest.raises(ConfigError, match="spasm_settle_s"):
        DetectorConfig.from_dict({"spasm_settle_s": -1.0}, source="test")


# ------------------------------------------- a movement begun after the burst's own jerk has settled
def _spasm_then_standing_up(jerk: bool) -> tuple[list[SpasmEvent], DetectorConfig]:
    """A 2 s spasm rising over ~0.1 s (onset to 80 %) with the limb at rest; it jerks the limb (a smooth 0.2 g
    excursion over 0.5 s, or not at all), the limb comes to rest, and 1.7 s after the spasm began the
    wearer stands up (the shank turns by 60 deg over 0.8 s, smoothly, and stays)."""
    cfg = DetectorConfig(mains_max_harmonic=0)
    seconds = 40.0
    x = _carrier(seconds, 1, seed=29)
    n = x.shape[0]
    env = np.full(n, 3.0)
    env += 150.0 * _ramp(n, 20.0, 2.0, 0.18)
    acc = _still_acc(seconds)
    if jerk:  # one smooth excursion and back
        k0, k = int(20.05 * 50), int(0.5 * 50)
        acc[k0 : k0 + k, 0] += 0.2 * np.sin(np.pi * np.arange(k) / k) ** 2
    k0, k = int(21.7 * 50), int(0.8 * 50)
    theta = np.zeros(acc.shape[0])
    theta[k0 : k0 + k] = np.radians(60.0) * (0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k))
    theta[k0 + k :] = np.radians(60.0)
    acc[:, 0] += np.sin(theta)
    acc[:, 2] += np.cos(theta) - 1.0
    det = SpasmDetector(cfg, emg_rate_hz=RATE, channel_labels=["EMG 0"], acc_rate_hz=50.0)
    return _events(feed_interleaved(det, x * env[:, None], acc, RATE, 50.0)), cfg


def test_a_movement_begun_after_the_bursts_jerk_settled_is_not_its_context() -> None:
    """A burst's context is the movement it starts: a voluntary burst leads its movement by the
    electromechanical delay. A spasm that jerked the limb, after which the limb came to rest
    (``activity_enter_s``) before the wearer stood up, did not start the standing up, so the
    transition is not its context and it is a spasm (``_came_to_rest``). With no jerk first
    (the limb still from the burst's onset until it turns) the transition is the context, as
    for the first burst of a sit-to-stand, whose movement the accelerometer sees late."""
    evs, cfg = _spasm_then_standing_up(jerk=True)
    assert [(round(e.onset_sample / RATE, 1), e.context) for e in evs] == [(20.0, "rest")]
    assert cfg.voluntary_min_rise_s <= (evs[0].rise_s or 0.0) < cfg.voluntary_ramp_s  # the test means it
    still, _ = _spasm_then_standing_up(jerk=False)
    assert still == []
