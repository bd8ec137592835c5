"""Activity context (issue 9): voluntary movement is not a spasm.

Short versions of the voluntary-activity scenarios (the full set is scored by
``bench/bench_activity.py``): false-alarm limits while walking, standing up and cycling; the
activity stage's chunk invariance; declared sessions; strong contractions that touch the ADC
rails; lead-off transitions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import signal
from support.recordings import recording

from detectors import (
    ActivityChange,
    ActivitySpan,
    DetectorConfig,
    DetectorOutput,
    Onset,
    QualityChange,
    SpasmDetector,
    SpasmEvent,
)
from detectors.activity import (
    RHYTHMIC,
    TRANSITION,
    WALKING,
    AccActivityTracker,
    phase_locked,
    regular_rhythm,
    repetition_run,
)
from detectors.detector import feed_interleaved
from detectors.scoring import score
from firmware_sim import scenario
from tests.support.shapes import contraction

LEGS = ["EMG L tib ant", "EMG L gastroc", "EMG L quad", "EMG L ham", "EMG R tib ant", "EMG R quad"]


def _scenario(name: str, activities: list[dict[str, Any]], **extra: Any) -> scenario.Scenario:
    data: dict[str, Any] = {
        "name": name,
        "seed": 77,
        "duration_s": 150.0,
        "emg_rate_hz": 1000,
        "acc_rate_hz": 50,
        "channels": LEGS,
        "posture": "sitting",
        "profile": {
            "kind": "sci",
            "events_per_min": 3.0,
            "voluntary_per_min": 0.0,
            "posture_changes_per_hour": 0.0,
        },
        "activities": activities,
        "confounders": [{"kind": "mains", "frequency_hz": 50.0, "amplitude_uv": 8.0}],
    }
    data.update(extra)
    return scenario.parse_scenario(data, name)


def _stream(
    sc: scenario.Scenario, chunk_s: float = 0.05, with_acc: bool = True, **cfg: Any
) -> list[DetectorOutput]:
    """The detector's outputs for ``sc`` streamed in ``chunk_s`` chunks (see :func:`_run`)."""
    return list(_run(sc, chunk_s, with_acc, **cfg)[0])


def _run(
    sc: scenario.Scenario, chunk_s: float = 0.05, with_acc: bool = True, **cfg: Any
) -> tuple[tuple[DetectorOutput, ...], int]:
    """The outputs (frozen) and the count of bursts judged voluntary of one detector run over
    ``sc``, computed once per process: several tests check different things about the same run
    (the 150 s walk with the default settings is read by three)."""
    key = (sc.model_dump_json(), chunk_s, with_acc, tuple(sorted(cfg.items())))
    if key not in _RUNS:
        rec = recording(sc)
        det = SpasmDetector(
            DetectorConfig(**cfg),
            emg_rate_hz=float(rec.emg_rate_hz),
            channel_labels=list(rec.channel_labels),
            acc_rate_hz=float(rec.acc_rate_hz) if with_acc else None,
        )
        emg = np.asarray(rec.emg_uv, dtype=np.float64)
        acc = np.asarray(rec.acc_g, dtype=np.float64) if with_acc else None
        out = feed_interleaved(det, emg, acc, rec.emg_rate_hz, rec.acc_rate_hz if with_acc else None, chunk_s)
        _RUNS[key] = (tuple(out), det.voluntary_bursts)
    return _RUNS[key]


_RUNS: dict[tuple[object, ...], tuple[tuple[DetectorOutput, ...], int]] = {}


def _events(out: list[DetectorOutput]) -> list[SpasmEvent]:
    return [o for o in out if isinstance(o, SpasmEvent)]


WALK = _scenario(
    "t_walk",
    [
        {"kind": "sit_to_stand", "onset_s": 20.0, "duration_s": 2.4},
        {"kind": "walk", "onset_s": 23.0, "duration_s": 60.0, "cadence_hz": 0.9},
        {"kind": "stand_to_sit", "onset_s": 84.0, "duration_s": 2.8},
    ],
)
CYCLE = _scenario("t_cycle", [{"kind": "cycling", "onset_s": 30.0, "duration_s": 70.0, "cadence_hz": 1.0}])


@pytest.mark.parametrize("sc", [WALK, CYCLE], ids=["walk", "cycling"])
def test_voluntary_activity_is_not_reported(sc: scenario.Scenario) -> None:
    rec = recording(sc)
    base = score(_events(_stream(sc, activity_context=False)), rec.labels, rec.duration_s)
    out = _stream(sc)
    rep = score(_events(out), rec.labels, rec.duration_s)
    # without the context stage the activity floods the output (this is what issue 9 reported)
    assert base.false_alarms >= 20
    assert rep.false_alarms <= 1, rep.false
    assert rep.sensitivity >= 0.9, rep.missed
    assert rep.type_accuracy >= 0.9
    # the activity is reported as a period, and no Onset went out for a voluntary burst
    spans = [o for o in out if isinstance(o, ActivitySpan)]
    long_spans = [s for s in spans if s.duration_s >= 20]
    assert long_spans and all(not s.declared for s in spans)
    # An Onset notice goes out before the accelerometer can see a movement that starts from
    # rest, so the first bursts of a movement (the first strides) may have one, never followed
    # by an event; later bursts of an ongoing activity have none.
    keys = {e.key for e in _events(out)}
    starts = [a.onset_s for a in sc.activities]
    orphans = [o for o in out if isinstance(o, Onset) and o.domain == "emg" and o.key not in keys]
    for o in orphans:
        t = o.onset_sample / rec.emg_rate_hz
        assert any(0 <= t - a <= 3.5 for a in starts), (t, starts)
    # spasms carry their context and a confidence
    for e in _events(out):
        assert e.context in ("rest", "walking", "rhythmic_exercise", "posture_transition", "other_voluntary")
        assert 0 < e.confidence <= 1


def test_activity_span_counts_the_bursts_it_suppressed() -> None:
    frozen, voluntary_bursts = _run(WALK)  # the default streaming (0.05 s chunks, with the accelerometer)
    out = list(frozen)
    spans = [o for o in out if isinstance(o, ActivitySpan)]
    walk = max(spans, key=lambda s: s.duration_s)
    # 60 s of walking at 0.9 strides/s on six leg muscles: dozens of gait bursts, all suppressed
    assert walk.suppressed >= 40
    # no burst is counted twice, and none outside a span is counted
    assert sum(s.suppressed for s in spans) <= voluntary_bursts
    # a span is published after everything that began inside it was judged: no spasm event
    # starting inside a span comes after the span
    pos = {id(o): i for i, o in enumerate(out)}
    for s in spans:
        a, b = s.start_sample / s.rate_hz, s.end_sample / s.rate_hz
        for e in _events(out):
            if e.domain == "emg" and a <= e.onset_sample / e.rate_hz < b:
                assert pos[id(e)] < pos[id(s)]


def test_activity_stage_is_chunk_invariant() -> None:
    rec = recording(WALK)
    ref = None
    ref_no_onsets = None
    # EMG and accelerometer are fed in turns, so the accelerometer lags by up to one chunk. Events,
    # activity periods and quality are the same for any chunking (within activity_max_wait_s);
    # Onset notices too while the accelerometer is no further behind than an Onset waits for it.
    for chunk_s in (0.013, 0.05, 0.31, 1.7, 4.0):
        out = _stream(WALK, chunk_s=chunk_s)
        got = sorted(repr(o) for o in out if not isinstance(o, Onset))
        if ref_no_onsets is None:
            ref_no_onsets = got
        assert got == ref_no_onsets, f"chunk {chunk_s}s differs"
        if chunk_s <= 0.31:
            full = sorted(repr(o) for o in out)
            if ref is None:
                ref = full
            assert full == ref, f"chunk {chunk_s}s: onsets differ"
    # the accelerometer tracker alone: the same hop verdicts for any chunking
    acc = np.asarray(rec.acc_g, dtype=np.float64)
    verdicts = []
    for step in (1, 7, 50, 333, acc.shape[0]):
        tr = AccActivityTracker(DetectorConfig(), rec.acc_rate_hz)
        v = []
        for i in range(0, acc.shape[0], step):
            v += tr.feed(i, acc[i : i + step])
        verdicts.append(v)
    assert all(v == verdicts[0] for v in verdicts[1:])
    assert {code for _, _, code, _ in verdicts[0]} >= {0, 1, 2}  # rest, transition, walking


def test_emg_only_walking_is_recognised_by_its_rhythm() -> None:
    rec = recording(WALK)
    base = score(_events(_stream(WALK, with_acc=False, activity_context=False)), rec.labels, rec.duration_s)
    rep = score(_events(_stream(WALK, with_acc=False)), rec.labels, rec.duration_s)
    assert rep.false_alarms <= base.false_alarms / 5, (base.false_alarms, rep.false)
    assert rep.sensitivity >= 0.9


# --------------------------------------------------------------------------------- helpers
def _emg(rate: float, seconds: float, n_ch: int = 1, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    sos = signal.butter(2, [40, 150], btype="bandpass", fs=rate, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n, n_ch)), axis=0)
    return np.asarray(x / x.std(axis=0))


def test_declared_session_classes_graded_contractions_voluntary_but_keeps_abrupt_spasms() -> None:
    rate = 1000.0
    x = _emg(rate, 60.0)
    n = x.shape[0]
    env = np.full(n, 3.0)
    for t in (15.0, 25.0, 35.0):  # isometric exercise: graded 0.4 s ramps, 3 s holds
        env += 150.0 * contraction(rate, n, t, 3.0, 0.4)
    env += 200.0 * contraction(rate, n, 45.0, 0.2, 0.015)  # an abrupt twitch inside the session
    sig = x * env[:, None]

    def run(declare: bool) -> list[DetectorOutput]:
        det = SpasmDetector(
            DetectorConfig(mains_max_harmonic=0), emg_rate_hz=rate, channel_labels=["EMG L quad"]
        )
        out: list[DetectorOutput] = []
        if declare:
            out += det.declare("exercise", int(10 * rate), int(50 * rate))
        return out + feed_interleaved(det, sig, None, rate, None)

    plain = _events(run(False))
    assert len(plain) == 4  # undeclared, an isometric contraction looks like a spasm
    out = run(True)
    evs = _events(out)
    assert [(e.type, e.context) for e in evs] == [("twitch", "exercise")]
    assert evs[0].confidence < plain[-1].confidence
    spans = [o for o in out if isinstance(o, ActivitySpan)]
    assert [(s.kind, s.declared, s.start_sample, s.end_sample) for s in spans] == [
        ("exercise", True, 10000, 50000)
    ]
    # the three graded contractions inside the session were suppressed, and are counted in it
    assert spans[0].suppressed == 3
    assert any(isinstance(o, ActivityChange) and o.declared for o in out)


def test_declare_rejects_bad_spans() -> None:
    det = SpasmDetector(emg_rate_hz=1000.0, channel_labels=["A"])
    with pytest.raises(ValueError, match="end_sample"):
        det.declare("exercise", 100, 50)
    with pytest.raises(ValueError, match="rest"):
        det.declare("rest", 0, None)


def test_strong_contraction_touching_the_rails_is_one_clipped_event() -> None:
    rate = 2000.0
    x = _emg(rate, 20.0, n_ch=2)
    n = x.shape[0]
    env = np.full((n, 2), 3.0)
    env[:, 0] += 2600.0 * contraction(rate, n, 8.0, 3.0, 0.1)
    sig = np.clip(x * env, -6000.0, 6000.0)  # a low-range amplifier: ~1-2 % of samples clip
    clipped_share = float(np.mean(np.abs(sig[int(8 * rate) : int(11 * rate), 0]) >= 6000.0))
    assert 0.002 < clipped_share < 0.03
    for cfg in (DetectorConfig(), DetectorConfig(full_scale_uv=6000.0)):
        det = SpasmDetector(cfg, emg_rate_hz=rate, channel_labels=["A", "B"])
        out = feed_interleaved(det, sig, None, rate, None)
        evs = _events(out)
        assert len(evs) == 1 and evs[0].clipped and evs[0].type == "phasic"
        assert abs(evs[0].onset_sample / rate - 8.0) < 0.05 and abs(evs[0].offset_sample / rate - 11.0) < 0.1
        assert not [o for o in out if isinstance(o, QualityChange)]


def test_lead_off_begin_end_and_settling_give_no_events() -> None:
    sc = scenario.parse_scenario(
        {
            "name": "t_leadoff",
            "seed": 5,
            "duration_s": 90.0,
            "emg_rate_hz": 1000,
            "acc_rate_hz": 50,
            "channels": ["EMG L quad", "EMG R quad"],
            "confounders": [
                {"kind": "mains", "frequency_hz": 50.0, "amplitude_uv": 8.0},
                {"kind": "lead_off", "channel": "EMG L quad", "onset_s": 20.0, "duration_s": 10.0},
                {"kind": "lead_off", "channel": "EMG R quad", "onset_s": 50.0, "duration_s": 3.0},
                {
                    "kind": "cable_motion",
                    "channel": "EMG R quad",
                    "onset_s": 65.0,
                    "duration_s": 15.0,
                    "count": 6,
                },
            ],
        },
        "t_leadoff",
    )
    out = _stream(sc)
    assert _events(out) == []
    q = [(o.channel, o.state) for o in out if isinstance(o, QualityChange)]
    assert ("EMG L quad", "lead_off") in q and ("EMG R quad", "lead_off") in q
    assert q.count(("EMG L quad", "ok")) >= 1 and q.count(("EMG R quad", "ok")) >= 1


def test_rhythm_helpers() -> None:
    times = [10.0, 11.0, 12.02, 13.0, 20.0]
    assert regular_rhythm(times, 11.0, 0.4, 2.5, 0.25) == 4
    assert regular_rhythm(times, 20.0, 0.4, 2.5, 0.25) == 1
    assert regular_rhythm(times, 99.0, 0.4, 2.5, 0.25) == 1
    # a bout's cadence drifting into its stop: the run through either of the last two bursts
    # is the same run (the intervals 1.2, 1.45, 1.15 are all within 25 % of their median),
    # whichever side of the burst the intervals lie on
    bout = [0.0, 1.2, 2.4, 3.6, 5.05, 6.2]
    assert regular_rhythm(bout, 5.05, 0.4, 2.5, 0.25) == 6
    assert regular_rhythm(bout, 6.2, 0.4, 2.5, 0.25) == 6
    # ...but not an interval far off the others' median (a pair of bursts alone is no run)
    assert regular_rhythm([0.0, 1.0, 2.0, 3.0, 4.6], 4.6, 0.4, 2.5, 0.25) == 2
    assert regular_rhythm([0.0, 1.0, 2.0, 3.0, 4.6], 3.0, 0.4, 2.5, 0.25) == 4
    spans = [[t, t + 0.3] for t in times]
    assert phase_locked(spans, 12.02, 1.0, 0.15)
    assert not phase_locked(spans, 20.0, 1.0, 0.15)
    assert not phase_locked(spans, 5.0, 0.0, 0.15)
    # a muscle active half of every stride, some strides merged into one long burst
    merged = [[0.0, 2.5], [3.0, 3.5], [4.0, 6.5]]
    assert phase_locked(merged, 3.0, 1.0, 0.15)


def _movement_scene(
    bursts: list[tuple[int, float, float]], moves: list[float], n_ch: int = 4, seconds: float = 60.0
) -> tuple[list[DetectorOutput], SpasmDetector]:
    """EMG bursts (channel, onset s, rise s) of 2 s each, and smooth 1.5 s limb displacements
    (0.15 g, no tilt, no rhythm: "other voluntary" on the accelerometer) starting at ``moves``."""
    rate, acc_rate = 1000.0, 50.0
    x = _emg(rate, seconds, n_ch=n_ch)
    n = x.shape[0]
    env = np.full((n, n_ch), 3.0)
    for ch, at, rise in bursts:
        env[:, ch] += 150.0 * contraction(rate, n, at, 2.0, rise)
    m = int(seconds * acc_rate)
    acc = np.zeros((m, 3))
    acc[:, 2] = 1.0
    k = int(1.5 * acc_rate)
    for at in moves:
        j = int(at * acc_rate)
        acc[j : j + k, 0] += 0.15 * np.hanning(k)
    acc += np.random.default_rng(5).normal(0.0, 0.003, acc.shape)
    det = SpasmDetector(
        DetectorConfig(mains_max_harmonic=0), emg_rate_hz=rate,
        channel_labels=[f"EMG {i}" for i in range(n_ch)], acc_rate_hz=acc_rate,
    )  # fmt: skip
    return feed_interleaved(det, x * env, acc, rate, acc_rate), det


def _onsets_s(out: list[DetectorOutput]) -> list[float]:
    return sorted(round(e.onset_sample / e.rate_hz) for e in _events(out) if e.domain == "emg")


def test_a_movement_that_starts_with_a_slow_ramp_is_voluntary_an_abrupt_one_a_spasm() -> None:
    # the same smooth limb movement starts with each burst; only the onset kinetics differ
    out, det = _movement_scene([(0, 15.0, 0.6), (1, 35.0, 0.012)], moves=[15.1, 35.1])
    assert _onsets_s(out) == [35]
    assert det.voluntary_bursts == 1
    # without the movement the slow ramp alone is not enough: an isolated graded burst at rest
    # is a spasm (tonic spasms build up slowly too)
    out, _ = _movement_scene([(0, 15.0, 0.6), (1, 35.0, 0.012)], moves=[])
    assert _onsets_s(out) == [15, 35]


def test_the_co_contracting_partner_of_a_ramped_burst_is_voluntary_too() -> None:
    # agonist ramps over 0.6 s, its antagonist starts with it but crosses the threshold near its
    # top (a fast 0.1 s rise); at 35 s the same pair with an abrupt agonist stays a spasm pair
    out, _ = _movement_scene(
        [(0, 15.0, 0.6), (1, 15.05, 0.1), (0, 35.0, 0.012), (1, 35.05, 0.1)], moves=[15.1, 35.1]
    )
    assert _onsets_s(out) == [35, 35]


def test_a_synergy_of_several_muscles_with_smooth_movement_is_voluntary() -> None:
    # abrupt-looking bursts on four channels within 0.3 s, with a smooth movement: a reach with
    # its postural muscles; the same burst on one channel alone, same movement: a spasm
    syn = [(0, 15.0, 0.02), (1, 15.1, 0.02), (2, 15.2, 0.02), (3, 15.3, 0.02)]
    out, _ = _movement_scene([*syn, (2, 40.0, 0.02)], moves=[15.1, 40.1])
    assert _onsets_s(out) == [40]
    # the same four-muscle burst with a still limb is a (bilateral extensor) spasm on every channel
    out, _ = _movement_scene(syn, moves=[])
    assert _onsets_s(out) == [15, 15, 15, 15]


def test_electrode_coming_loose_and_settling_is_not_a_spasm() -> None:
    rate = 1000.0
    rng = np.random.default_rng(1)
    x = 3.0 * _emg(rate, 60.0)
    n = x.shape[0]
    for a, b in ((15.0, 20.0), (35.0, 38.0)):
        i, j = int(a * rate), int(b * rate)
        k = int(0.3 * rate)  # the cable tugs and the electrode lifts: a transient, then flat
        w = np.cumsum(rng.standard_normal(k))
        w -= np.linspace(w[0], w[-1], k)
        x[i - k : i, 0] += 400.0 * w / np.abs(w).max()
        x[i:j, 0] = 0.0
        m = int(4 * rate)  # reattached: a DC step settling, and crackle while the gel wets
        tt = np.arange(m) / rate
        x[j : j + m, 0] += 2000.0 * np.exp(-tt) + 30.0 * rng.standard_normal(m) * np.exp(-tt / 0.3)
        for tc in rng.uniform(0.0, 2.0, 10):
            c0 = j + int(tc * rate)
            x[c0 : c0 + 5, 0] += rng.choice([-1.0, 1.0]) * 300.0
    spasm_at = (24.0, 50.0)  # real spasms well clear of the electrode's trouble are kept
    for at in spasm_at:
        x[:, 0] += _emg(rate, 60.0, seed=9)[:, 0] * 150.0 * contraction(rate, n, at, 1.0, 0.02)

    def run(**cfg: Any) -> list[SpasmEvent]:
        det = SpasmDetector(
            DetectorConfig(mains_max_harmonic=0, **cfg), emg_rate_hz=rate, channel_labels=["A"]
        )
        out = feed_interleaved(det, x, None, rate, None)
        assert [(q.state, q.sample) for q in out if isinstance(q, QualityChange)] == [
            ("lead_off", 15000), ("ok", 20000), ("lead_off", 35000), ("ok", 38000)
        ]  # fmt: skip
        return _events(out)

    # the electrode transients look like bursts to the EMG stage (one of the two tugs is
    # dropped even without the guard: over itself its raw power is mostly below 45 Hz) ...
    unguarded = run(lead_off_guard_before_s=1e-3, lead_off_guard_after_s=1e-3)
    assert len(unguarded) >= 3
    # ... and are judged, not dropped blind: the cable tug running into each lead-off and the
    # settling step the channel comes back with are dropped; what is left in the settling window
    # (crackle, 1-2 s after reattachment, seen since the new contact gets a provisional resting
    # level 0.7 s after it comes back) is published flagged, with its confidence halved
    guarded = run()
    assert [round(e.onset_sample / rate) for e in guarded if not e.artifact_suspect] == [24, 50]
    flagged = [e for e in guarded if e.artifact_suspect]
    assert len(flagged) < len(unguarded) - 2
    for e in flagged:
        assert any(0.0 <= e.onset_sample / rate - r <= 3.0 for r in (20.0, 38.0)) and e.confidence <= 0.5


def _thigh_acc(fs: float, dur: float, stride: float, swing_deg: float) -> np.ndarray:
    """A thigh-worn accelerometer (x along the femur, z forward) during gait: the thigh swings
    through hip flexion-extension once per stride (+-``swing_deg``, a two-harmonic curve as in
    Winter 1991), the body rises and falls twice per stride (vertical acceleration at the step
    rate, ~0.1 g), heel strikes are 30 Hz damped shocks of ~0.3 g (attenuated at the thigh)."""
    t = np.arange(int(dur * fs)) / fs
    ph = 2 * np.pi * t / stride
    ang = np.radians(swing_deg * (np.sin(ph) + 0.2 * np.sin(2 * ph + 0.6)))
    acc = np.stack([np.cos(ang), np.zeros_like(t), np.sin(ang)], axis=1)
    acc[:, 0] += 0.1 * np.sin(2 * ph)
    for k in range(int(dur / stride) * 2):
        i = int((k * stride / 2) * fs)
        n = min(int(0.1 * fs), t.size - i)
        tt = np.arange(n) / fs
        acc[i : i + n, 0] += 0.3 * np.exp(-tt / 0.02) * np.cos(2 * np.pi * 30 * tt)
    return acc


def test_thigh_swing_during_gait_is_a_rhythm_not_a_posture_transition() -> None:
    """The thigh turns gravity by tens of degrees every half stride while walking (hip
    flexion-extension ~40 deg, Winter 1991), but back and forth at the stride: a rhythm.
    A sit-to-stand turns it once (80 deg over 1.5 s) and stays: a posture transition."""
    fs = 50.0
    verdicts = []
    for stride in (0.9, 1.2, 1.4):  # 0.7-1.1 strides/s
        tr = AccActivityTracker(DetectorConfig(), fs)
        hops = tr.feed(0, _thigh_acc(fs, 20.0, stride, 22.0))
        v = [code for _, s1, code, _ in hops if s1 / fs >= 5.0]  # past the window's start
        verdicts.append(v)
        assert sum(c in (WALKING, RHYTHMIC) for c in v) >= 0.9 * len(v), (stride, v)
        assert TRANSITION not in v, (stride, v)
    # sitting (thigh horizontal: gravity along z), standing up over 1.5 s, standing still
    t = np.arange(int(12 * fs)) / fs
    u = np.clip((t - 5.0) / 1.5, 0, 1)
    ang = np.radians(90 * (1 - (10 * u**3 - 15 * u**4 + 6 * u**5)))  # minimum-jerk rotation
    acc = np.stack([np.cos(ang), np.zeros_like(t), np.sin(ang)], axis=1)
    acc += np.random.default_rng(2).normal(0, 0.003, acc.shape)
    tr = AccActivityTracker(DetectorConfig(), fs)
    v = [code for _, _, code, _ in tr.feed(0, acc)]
    # >= activity_enter_s of transition verdicts: the burst context is a posture transition
    assert v.count(TRANSITION) >= 4 and WALKING not in v, v


def test_repetition_run_needs_regular_alike_bursts() -> None:
    # knee extensions every ~3.5 s, 1.5 s each: a run of five through any of them
    reps = [(10.0, 11.5, 100.0), (13.4, 14.9, 110.0), (17.0, 18.6, 95.0)]
    reps += [(20.5, 22.0, 105.0), (24.1, 25.5, 100.0)]
    args = (0.4, 6.0, 0.25, 1.5, 2.5)
    assert repetition_run(reps, 17.0, *args) == 5
    # a later burst still open (its length unknown) counts for its onset
    assert repetition_run([*reps[:4], (24.1, math.inf, math.nan)], 20.5, *args) == 5
    # a 2.8 s burst in the slot of a repetition lasts too long to be one: it starts no run
    fused = [*reps[:3], (20.5, 23.3, 105.0)]
    assert repetition_run(fused, 20.5, *args) == 1
    # ...and is no member of the others' run (which stops at it)
    assert repetition_run(fused, 17.0, *args) == 3
    # much stronger than the run: no copy of it
    strong = [*reps[:3], (20.5, 22.0, 400.0)]
    assert repetition_run(strong, 20.5, *args) == 1
    # irregular intervals (Poisson-like spasms), or slower than the slowest repetition
    assert repetition_run([(0.0, 0.8, 100.0), (1.0, 1.9, 100.0), (5.0, 5.9, 100.0)], 5.0, *args) == 2
    slow = [(t, t + 1.5, 100.0) for t in (0.0, 7.0, 14.0)]
    assert repetition_run(slow, 7.0, *args) == 1
    assert repetition_run(reps, 99.0, *args) == 1


def _repetition_scene(
    bursts: list[tuple[float, ...]],
    tilts: list[float],
    seconds: float = 60.0,
    others: list[tuple[int, float, float, float]] = (),  # type: ignore[assignment]
    chunk_s: float = 0.05,
) -> tuple[list[DetectorOutput], SpasmDetector]:
    """Channel 0's EMG bursts (onset s, duration s, rise s[, gain]), ``others`` on channels 1-3
    (channel, onset, duration, rise), and knee extensions or sit-to-stands: the shank sensor's
    gravity vector turning by 60 deg and back over 2 s, smoothly (a posture transition on the
    accelerometer), from each time in ``tilts``."""
    rate, acc_rate, n_ch = 1000.0, 50.0, 4
    x = _emg(rate, seconds, n_ch=n_ch)
    n = x.shape[0]
    env = np.full((n, n_ch), 3.0)
    for ch, at, dur, rise, *gain in [*((0, *b) for b in bursts), *others]:
        env[:, ch] += 150.0 * (gain[0] if gain else 1.0) * contraction(rate, n, at, dur, rise)
    m = int(seconds * acc_rate)
    theta = np.zeros(m)
    for at in tilts:
        theta += np.radians(60.0) * contraction(acc_rate, m, at, 2.0, 0.8)
    acc = np.stack([np.sin(theta), np.zeros(m), np.cos(theta)], axis=1)
    acc += np.random.default_rng(5).normal(0.0, 0.003, acc.shape)
    det = SpasmDetector(
        DetectorConfig(mains_max_harmonic=0), emg_rate_hz=rate,
        channel_labels=[f"EMG {i}" for i in range(n_ch)], acc_rate_hz=acc_rate,
    )  # fmt: skip
    return feed_interleaved(det, x * env, acc, rate, acc_rate, chunk_s), det


def test_repetitions_of_an_exercise_are_voluntary_whatever_their_measured_onset() -> None:
    # five knee extensions every 3.5 s whose bursts read abrupt (20 ms rise: the rise of a burst
    # of few motor units is a noisy reading), and a lone abrupt burst with the same movement
    reps = [10.0, 13.5, 17.0, 20.5, 24.0]
    out, det = _repetition_scene([(t, 1.5, 0.02) for t in reps] + [(45.0, 1.5, 0.02)], [*reps, 44.9])
    # the first repetition has only later ones, two of them not known within the look-ahead:
    # still a spasm; the lone burst stays a spasm
    assert _onsets_s(out) == [10, 45]
    assert det.voluntary_bursts == 4
    # a burst lasting 2.8 s in the slot of the 4th repetition is no repetition: a spasm
    bursts = [(t, 1.5, 0.02) for t in reps]
    bursts[3] = (20.5, 2.8, 0.02)
    out, _ = _repetition_scene(bursts, reps)
    assert 21 in _onsets_s(out) or 20 in _onsets_s(out)
    # without the accelerometer's activity the same repetitions are judged at rest: spasms
    out, _ = _repetition_scene([(t, 1.5, 0.02) for t in reps], [])
    assert len(_onsets_s(out)) == 5


def test_an_abrupt_reading_in_a_ramped_synergy_of_a_posture_transition_is_voluntary() -> None:
    # standing up: three muscles ramp over 0.3-0.4 s, a fourth reads abrupt (20 ms) 0.3 s later
    syn = [(1, 15.0, 1.8, 0.35), (2, 15.1, 1.8, 0.3), (3, 15.05, 1.8, 0.4)]
    out, det = _repetition_scene([(15.3, 1.6, 0.02)], [14.9], others=syn)
    assert _onsets_s(out) == []
    assert det.voluntary_bursts == 4
    # the same movement with the partners abrupt too (a spasm that shakes the limb): spasms
    syn = [(1, 15.0, 1.8, 0.02), (2, 15.1, 1.8, 0.02), (3, 15.05, 1.8, 0.02)]
    out, _ = _repetition_scene([(15.3, 1.6, 0.02)], [14.9], others=syn)
    assert len(_onsets_s(out)) == 4


def test_a_burst_that_overpowers_the_repetitions_around_it_is_a_spasm_even_if_graded() -> None:
    # knee extensions ramping over 0.4 s every 3.5 s; in the 4th slot a spasm fused with the
    # repetition: it ramps like it (the voluntary start) but lasts 4 s and is 4x as strong
    reps = [10.0, 13.5, 17.0, 20.5, 27.0, 30.5]
    bursts: list[tuple[float, ...]] = [(t, 1.5, 0.4) for t in reps]
    bursts[3] = (20.5, 4.0, 0.4, 4.0)
    out, det = _repetition_scene(bursts, reps)
    assert _onsets_s(out) in ([20], [21])  # (a ramped onset is detected on the way up)
    assert det.voluntary_bursts == 5
    # as strong but no longer than the others (a harder repetition), or as long but no
    # stronger (a held repetition): voluntary
    for fused in ((20.5, 1.5, 0.4, 4.0), (20.5, 4.0, 0.4, 1.0)):
        bursts[3] = fused
        out, _ = _repetition_scene(bursts, reps)
        assert _onsets_s(out) == []


def test_a_sustained_episode_after_bursts_that_fell_silent_each_cycle_is_a_change_of_pattern() -> None:
    det = SpasmDetector(DetectorConfig(), emg_rate_hz=1000.0, channel_labels=["EMG 0", "EMG 1"])
    # strides of 1 s: 0.4 s bursts with silences between, then an episode from 10.1 s on
    for t in (7.1, 8.1, 9.1):
        det._peaks.append(("EMG 0", t, t + 0.4, 100.0))
    det._peaks.append(("EMG 1", 9.0, 20.0, 100.0))  # another channel's long burst counts not
    assert det._fell_silent("EMG 0", 10.1, 1.0)
    # a muscle active through the bout from its start (no silent cycles before): following it
    assert not det._fell_silent("EMG 1", 9.0, 1.0)
    # bursts longer than the cycle, or too long ago, are no silent cycles
    assert not det._fell_silent("EMG 0", 20.0, 1.0)


def test_the_repetition_and_overpowering_rules_are_chunk_invariant() -> None:
    reps = [10.0, 13.5, 17.0, 20.5, 27.0, 30.5]
    bursts: list[tuple[float, ...]] = [(t, 1.5, 0.02) for t in reps]
    bursts[3] = (20.5, 4.0, 0.4, 4.0)  # the overpowering one, among abrupt-reading repetitions
    syn = [(1, 40.0, 1.8, 0.35), (2, 40.1, 1.8, 0.3), (3, 40.05, 1.8, 0.4)]
    runs = []
    for chunk_s in (0.05, 0.37, 1.3):
        out, _ = _repetition_scene([*bursts, (40.3, 1.6, 0.02)], [*reps, 39.9], others=syn, chunk_s=chunk_s)
        runs.append([(e.channel, e.onset_sample, e.offset_sample, e.type, e.context) for e in _events(out)])
    assert runs[0] == runs[1] == runs[2]
    # the first repetition (its run not known yet), the overpowering burst, and the repetition
    # after it (its predecessor is the spasm, its successor's successor not known yet); the
    # abrupt reading inside the ramped synergy at 40 s is voluntary
    assert [round(e[1] / 1000.0) for e in runs[0]] in ([10, 20, 27], [10, 21, 27])
