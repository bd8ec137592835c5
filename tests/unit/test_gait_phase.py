"""Spasms during walking (issue 9): the gait-phase model (``detectors/gait_phase.py``).

Signals are built here from gait physiology (Winter 1991; Perry & Burnfield): gastrocnemius bursts
in mid-late stance, tibialis anterior in swing, the two alternating; a shank accelerometer swinging
with the stride and striking the ground at each heel strike. Into that: a burst out of the
gastrocnemius' phase (during swing), a co-contraction, a burst 4x above the stride template.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from detectors import DetectorConfig, DetectorOutput, Onset, SpasmDetector, SpasmEvent
from detectors.detector import feed_interleaved
from detectors.gait_phase import GaitPhaseModel, circular_stats, von_mises_kappa
from detectors.rhythm import silences

STRIDE = 1.2  # s (0.83 Hz, a slow pathological gait)
#: phase windows (fraction of the stride after heel strike): (start, end)
GASTROC = (0.25, 0.55)
TA = (0.62, 0.95)


def _event(channel: str, t0: float, t1: float, peak: float, rise: float = 0.12) -> SpasmEvent:
    rate = 1000.0
    return SpasmEvent(
        key=f"{channel}:emg:{round(t0 * rate)}", type="twitch", channel=channel, domain="emg",
        onset_sample=round(t0 * rate), offset_sample=round(t1 * rate), rate_hz=rate, peak_uv=peak,
        mean_uv=peak / 2, baseline_uv=3.0, relative_amplitude=peak / 3.0, frequency_hz=None,
        confidence=0.9, detector_version="t", config_hash="t", rise_s=rise,
    )  # fmt: skip


def _walk(model: GaitPhaseModel, strides: int, spans: dict[str, list[list[float]]]) -> float:
    """Feed ``strides`` strides of alternating gastrocnemius / tibialis anterior bursts (2 %
    timing jitter, 15 % amplitude jitter); returns the time of the next heel strike."""
    rng = np.random.default_rng(3)
    t = 0.0
    for _ in range(strides):
        for ch, (a, b), peak in (("GM", GASTROC, 150.0), ("TA", TA, 120.0)):
            j = rng.normal(0, 0.02 * STRIDE)
            t0, t1 = t + a * STRIDE + j, t + b * STRIDE + j
            spans.setdefault(ch, []).append([t0, t1])
            v = model.judge(_event(ch, t0, t1, peak * rng.uniform(0.85, 1.15)), t0, t1, STRIDE, spans)
            assert not v.spasm, (ch, t0, v)  # gait bursts are gait bursts
        t += STRIDE
    return t


def test_in_phase_gait_burst_is_not_a_spasm() -> None:
    model = GaitPhaseModel(DetectorConfig())
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    t0, t1 = t + GASTROC[0] * STRIDE, t + GASTROC[1] * STRIDE
    v = model.judge(_event("GM", t0, t1, 160.0), t0, t1, STRIDE, spans)
    assert not v.spasm and v.cues == ()
    assert v.stride_s == pytest.approx(STRIDE, rel=0.05)


def test_out_of_phase_onset_is_supporting_evidence() -> None:
    cfg = DetectorConfig()
    model = GaitPhaseModel(cfg)
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    # a gastrocnemius twitch at phase 0.05 (loading), normal amplitude, TA silent then: out of
    # phase, but that alone does not decide
    t0, t1 = t + 0.02 * STRIDE, t + 0.12 * STRIDE
    v = model.judge(_event("GM", t0, t1, 150.0, rise=0.03), t0, t1, STRIDE, spans)
    assert not v.spasm and v.cues == ("out_of_phase",)
    # the same, 4x stronger (on a fresh walk): a spasm, and out of phase + abrupt raise its confidence
    model = GaitPhaseModel(cfg)
    spans = {}
    t = _walk(model, 10, spans)
    v = model.judge(_event("GM", t0, t1, 600.0, rise=0.03), t0, t1, STRIDE, spans)
    assert v.spasm and v.cues == ("out_of_phase", "amplitude", "abrupt_onset")
    assert v.confidence == pytest.approx(1 - (1 - cfg.gait_confidence) / 4)


def test_cocontraction_of_alternating_antagonists_is_a_spasm() -> None:
    model = GaitPhaseModel(DetectorConfig())
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    # TA's own swing burst is in its phase; a gastrocnemius burst during it (phase ~0.7)
    ta0, ta1 = t + TA[0] * STRIDE, t + TA[1] * STRIDE
    spans["TA"].append([ta0, ta1])
    t0, t1 = t + 0.68 * STRIDE, t + 0.9 * STRIDE
    spans["GM"].append([t0, t1])
    v = model.judge(_event("GM", t0, t1, 150.0), t0, t1, STRIDE, spans)
    assert v.spasm and "co_contraction" in v.cues
    # the same burst with TA silent this stride: no co-contraction (and out of phase alone does
    # not decide)
    model2 = GaitPhaseModel(DetectorConfig())
    spans2: dict[str, list[list[float]]] = {}
    t = _walk(model2, 10, spans2)
    t0, t1 = t + 0.68 * STRIDE, t + 0.9 * STRIDE
    v2 = model2.judge(_event("GM", t0, t1, 150.0), t0, t1, STRIDE, spans2)
    assert "co_contraction" not in v2.cues and not v2.spasm


def test_burst_far_above_the_stride_template_is_a_spasm() -> None:
    cfg = DetectorConfig()
    model = GaitPhaseModel(cfg)
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    t0, t1 = t + GASTROC[0] * STRIDE, t + GASTROC[1] * STRIDE
    v = model.judge(_event("GM", t0, t1, 600.0), t0, t1, STRIDE, spans)  # 4x the template
    assert v.spasm and v.cues[0] == "amplitude"
    t0 += STRIDE
    t1 += STRIDE
    v = model.judge(_event("GM", t0, t1, 250.0), t0, t1, STRIDE, spans)  # 1.7x: a harder step
    assert not v.spasm


def test_burst_through_the_silent_phase_is_a_spasm() -> None:
    model = GaitPhaseModel(DetectorConfig())
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    # gastrocnemius starts in phase and stays on through swing into the next stance (2.5 s)
    t0 = t + GASTROC[0] * STRIDE
    v = model.judge(_event("GM", t0, t0 + 2.5, 170.0), t0, t0 + 2.5, STRIDE, spans)
    assert v.spasm and "prolonged" in v.cues


def test_gait_bursts_merged_by_a_short_silence_are_not_prolonged() -> None:
    """Two gait bursts one stride apart in one episode (the silence between them shorter than
    ``quiet_s``): by its length alone a burst through the silent phase ("prolonged"). When the
    detector saw the muscle fall silent inside it once per stride, it passes the bursts between
    the silences (``parts``): each a gait burst's length, so not prolonged. A part far longer
    than the gait bursts (a spasm fused after the silence) still is."""
    spans: dict[str, list[list[float]]] = {}
    model = GaitPhaseModel(DetectorConfig())
    t = _walk(model, 10, spans)
    a, b = GASTROC[0] * STRIDE, GASTROC[1] * STRIDE  # a gait burst, from the stride's heel strike
    t0, t1 = t + a, t + STRIDE + b
    v = model.judge(_event("GM", t0, t1, 160.0), t0, t1, STRIDE, spans)
    assert v.spasm and "prolonged" in v.cues
    for parts, spasm in (
        ([(t0, t + b), (t + STRIDE + a, t1)], False),  # two gait bursts
        ([(t0, t + b), (t + 0.7 * STRIDE, t1)], True),  # a gait burst, then 1 s of spasm
    ):
        model = GaitPhaseModel(DetectorConfig())
        spans = {}
        t = _walk(model, 10, spans)
        v = model.judge(_event("GM", t0, t1, 160.0), t0, t1, STRIDE, spans, parts=parts)
        assert v.spasm is spasm and ("prolonged" in v.cues) is spasm, (parts, v)


def test_silences_inside_an_episode() -> None:
    """``rhythm.silences``: the runs below the level inside the envelope, at least ``min_rows``
    long, as [first row below, first row above again); a run at either end, or a shorter dip
    (a flicker between motor-unit discharges), is none."""
    env = np.full(100, 50.0)
    env[:5] = 1.0  # the start: not inside
    env[20:30] = 1.0  # 10 rows
    env[40:42] = 1.0  # 2 rows: too short
    env[60:64] = 1.0  # 4 rows: just long enough
    env[95:] = 1.0  # the end: not inside
    assert silences(env, 5.0, 4) == [(20, 30), (60, 64)]
    assert silences(env, 0.5, 1) == []
    assert silences(np.full(10, 1.0), 5.0, 1) == []


def test_model_abstains_without_a_template() -> None:
    model = GaitPhaseModel(DetectorConfig())
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 2, spans)  # the first strides: too few bursts to know the gait
    v = model.judge(_event("GM", t + 0.02, t + 0.1, 900.0), t + 0.02, t + 0.1, STRIDE, spans)
    assert not v.spasm


def test_von_mises_concentration() -> None:
    rng = np.random.default_rng(1)
    for kappa in (2.0, 8.0, 30.0):
        x = rng.vonmises(0.3, kappa, 20000) / (2 * np.pi)
        mu, rbar = circular_stats(list(x))
        assert mu == pytest.approx(0.3 / (2 * np.pi), abs=0.01)
        assert von_mises_kappa(rbar) == pytest.approx(kappa, rel=0.1)


# ---------------------------------------------------------------------------------- detector
FS, FA = 1000, 100


def _raised(phase: np.ndarray, a: float, b: float) -> np.ndarray:
    """Raised-cosine activation over the phase window [a, b] (cycles), 0 outside."""
    u = (phase % 1.0 - a) / (b - a)
    return np.where((u > 0) & (u < 1), 0.5 - 0.5 * np.cos(2 * np.pi * np.clip(u, 0, 1)), 0.0)


def _recording(spasm: str | None) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """60 s: 10 s rest, 40 s walking (stride 1.2 s), 10 s rest; EMG on gastrocnemius and tibialis
    anterior (band-limited noise under the activation), a shank accelerometer (leg swing rotating
    gravity, a heel-strike impact each stride). ``spasm``: None, "out_of_phase" (a gastrocnemius
    burst in swing at phase 0.8, 1.5x its gait bursts) or "amplitude" (a stance burst 4x above them)."""
    rng = np.random.default_rng(11)
    dur, w0, w1 = 60.0, 10.0, 50.0
    te = np.arange(int(dur * FS)) / FS
    ta = np.arange(int(dur * FA)) / FA
    sos = signal.butter(4, [40, 250], btype="bandpass", fs=FS, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal((te.size, 2)), axis=0)
    noise /= noise.std(axis=0)
    walking_e = (te >= w0) & (te < w1)
    ph = (te - w0) / STRIDE
    act = np.zeros((te.size, 2))
    act[:, 0] = 100.0 * _raised(ph, *GASTROC) * walking_e
    act[:, 1] = 80.0 * _raised(ph, *TA) * walking_e
    label = None
    if spasm is not None:
        k = 20  # stride 20 of 33
        if spasm == "out_of_phase":
            t0 = w0 + (k + 0.8) * STRIDE
            env = np.exp(-0.5 * ((te - t0 - 0.08) / 0.04) ** 2) * 150.0
        else:
            t0 = w0 + (k + GASTROC[0]) * STRIDE
            env = 300.0 * _raised(ph - k, *GASTROC) * ((ph >= k) & (ph < k + 1))  # +300: 4x
        act[:, 0] += env
        label = (t0, t0 + 0.3)
    emg = act * noise + 3.0 * rng.standard_normal((te.size, 2))
    walking_a = (ta >= w0) & (ta < w1)
    pa = (ta - w0) / STRIDE
    theta = 0.35 * np.sin(2 * np.pi * pa) * walking_a
    acc = np.stack([np.sin(theta), np.zeros_like(theta), -np.cos(theta)], axis=1)
    for k in range(int((w1 - w0) / STRIDE)):
        i = int((w0 + k * STRIDE) * FA)
        tt = np.arange(15) / FA
        acc[i : i + 15, 0] += 1.5 * np.exp(-tt / 0.02) * np.cos(2 * np.pi * 18 * tt)
    acc += rng.normal(0, 0.005, acc.shape)
    return emg, acc, label


def _run(emg: np.ndarray, acc: np.ndarray, chunk_s: float = 0.05, **cfg: object) -> list[DetectorOutput]:
    det = SpasmDetector(
        DetectorConfig(mains_hz=50, **cfg),  # type: ignore[arg-type]
        emg_rate_hz=FS, channel_labels=["EMG L gastroc", "EMG L tib ant"], acc_rate_hz=FA,
    )  # fmt: skip
    return feed_interleaved(det, emg, acc, FS, FA, chunk_s)


def _spasms(out: list[DetectorOutput]) -> list[SpasmEvent]:
    return [o for o in out if isinstance(o, SpasmEvent)]


def _walking(out: list[DetectorOutput]) -> list[SpasmEvent]:
    """Events once walking is under way (the first stride, before the accelerometer's window
    recognises the gait, is the activity stage's business, not the gait model's)."""
    return [e for e in _spasms(out) if 15.0 <= e.onset_sample / FS < 50.0]


def _covers(e: SpasmEvent, label: tuple[float, float]) -> bool:
    """The event overlaps the spasm and starts at most one stride before it."""
    a, b = e.onset_sample / FS, e.offset_sample / FS
    return a <= label[1] and b >= label[0] and label[0] - a <= STRIDE


def test_plain_walking_publishes_no_spasm() -> None:
    emg, acc, _ = _recording(None)
    assert _walking(_run(emg, acc)) == []


@pytest.mark.parametrize("kind", ["out_of_phase", "amplitude"])
def test_spasm_during_walking_is_found(kind: str) -> None:
    emg, acc, label = _recording(kind)
    assert label is not None
    # a burst in the gastrocnemius' silent phase is within ``quiet_s`` of its gait bursts, so it
    # fuses with them into one episode starting with the gait burst before
    out = _run(emg, acc)
    found = [e for e in _walking(out) if _covers(e, label)]
    assert len(found) == 1, _spasms(out)
    ev = found[0]
    assert ev.channel == "EMG L gastroc" and ev.context == "walking"
    assert 0 < ev.confidence < 0.9  # found during activity, by gait evidence
    if kind == "out_of_phase":
        # dated from where the episode leaves the gait pattern (the gait burst's usual length
        # after its in-phase onset), not from the gait burst's onset 0.66 s before the spasm
        assert label[0] - 0.5 <= ev.onset_sample / FS <= label[0]
    # its Onset notice, held during walking, carries the same key and precedes it
    i = out.index(ev)
    assert [o for o in out[:i] if isinstance(o, Onset) and o.key == ev.key]
    # and without the gait-phase model it is taken for a gait burst
    missed = [e for e in _walking(_run(emg, acc, gait_phase=False)) if _covers(e, label)]
    assert missed == []


def test_gait_phase_is_chunk_invariant() -> None:
    emg, acc, _ = _recording("out_of_phase")
    a = _spasms(_run(emg, acc, chunk_s=0.05))
    # one chunk per stream (the accelerometer first: the detector's contract is that the two
    # streams arrive within ``activity_max_wait_s`` of each other)
    det = SpasmDetector(
        DetectorConfig(mains_hz=50), emg_rate_hz=FS, channel_labels=["EMG L gastroc", "EMG L tib ant"],
        acc_rate_hz=FA,
    )  # fmt: skip
    b = _spasms(det.feed_acc(0, acc) + det.feed_emg(0, emg) + det.finish())
    assert a == b and any(e.context == "walking" and e.confidence == 0.6 for e in a)


def test_a_neighbours_gait_burst_kept_on_by_a_strong_spasms_cross_talk_is_not_a_second_spasm() -> None:
    """Volume conduction (Winter, Fuglevand & Archer 1994): a gastrocnemius spasm 5x its gait
    bursts leaks into the tibialis anterior electrode and holds TA's swing burst above its offset
    level for as long as the spasm lasts. One spasm, reported on GM: TA's long burst, no stronger
    than its gait bursts, lies inside a burst > sqrt(crosstalk_ratio) x its peak."""
    model = GaitPhaseModel(DetectorConfig())
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    ta0 = t + TA[0] * STRIDE
    gm = ("GM", t + 0.5 * STRIDE, ta0 + 2.5, 750.0)  # starts before TA's burst, ends after it
    ta1 = ta0 + 2.4
    spans["TA"].append([ta0, ta1])
    spans["GM"].append([gm[1], gm[2]])
    v = model.judge(_event("TA", ta0, ta1, 130.0), ta0, ta1, STRIDE, spans, [gm])
    assert not v.spasm and "prolonged" not in v.cues
    # the same long TA burst with no strong burst beside it runs through its silent phase: a spasm
    model = GaitPhaseModel(DetectorConfig())
    spans = {}
    t = _walk(model, 10, spans)
    ta0 = t + TA[0] * STRIDE
    v = model.judge(_event("TA", ta0, ta0 + 2.4, 130.0), ta0, ta0 + 2.4, STRIDE, spans, [])
    assert v.spasm and "prolonged" in v.cues
    # and a neighbour only 2x stronger cannot explain it (cross-talk is a small fraction)
    model = GaitPhaseModel(DetectorConfig())
    spans = {}
    t = _walk(model, 10, spans)
    ta0 = t + TA[0] * STRIDE
    weak = ("GM", t + 0.5 * STRIDE, ta0 + 2.5, 260.0)
    v = model.judge(_event("TA", ta0, ta0 + 2.4, 130.0), ta0, ta0 + 2.4, STRIDE, spans, [weak])
    assert v.spasm and "prolonged" in v.cues


def test_a_partners_merged_gait_bursts_are_not_a_co_contraction() -> None:
    """A muscle silent for less than ``quiet_s`` between strides is one episode over two gait
    bursts: only its first burst is in its phase window, the rest is its silence and its next
    burst. An antagonist's ordinary burst in that silence is reciprocal alternation, not a
    co-contraction (Crone & Nielsen 1994), even when such merged episodes are in the template
    (the overlap allowed for alternation is raised to admit them: a merge overlaps GM's burst)."""
    model = GaitPhaseModel(DetectorConfig(gait_alternation_overlap=0.2))
    spans: dict[str, list[list[float]]] = {"GM": [], "TA": []}
    ta_len = (TA[1] - TA[0]) * STRIDE
    for k in range(11):
        t = k * STRIDE
        g0, g1 = t + GASTROC[0] * STRIDE, t + GASTROC[1] * STRIDE
        spans["GM"].append([g0, g1])
        v = model.judge(_event("GM", g0, g1, 150.0), g0, g1, STRIDE, spans)
        if k == 10:  # GM's stance burst in the silence of TA's merged episode of strides 9-10
            assert not v.spasm and "co_contraction" not in v.cues, v
        else:
            assert not v.spasm, (k, v)
        if k in (2, 6, 10):
            continue  # TA's burst of this stride is inside the previous stride's episode
        a0 = t + TA[0] * STRIDE
        a1 = a0 + ta_len + (STRIDE if k in (1, 5, 9) else 0.0)
        spans["TA"].append([a0, a1])
        model.judge(_event("TA", a0, a1, 120.0), a0, a1, STRIDE, spans)


def test_a_clonus_typed_burst_in_its_gait_phase_and_length_is_the_gait_burst() -> None:
    """A weak TA swing burst of few motor units can beat at clonus rates; clonus itself is a 4-8 Hz
    oscillation sustained within one contraction regardless of the stride (Dimitrijevic et al.
    1980). In phase and no longer than the muscle's gait bursts: the gait burst. A 2 s clonus
    (10 beats at 5 Hz) from the same onset is not."""
    model = GaitPhaseModel(DetectorConfig())
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    t0, t1 = t + TA[0] * STRIDE, t + TA[1] * STRIDE
    spans["TA"].append([t0, t1])
    assert model.gait_burst(_event("TA", t0, t1, 125.0), t0, t1, STRIDE, spans)
    model = GaitPhaseModel(DetectorConfig())
    spans = {}
    t = _walk(model, 10, spans)
    t0 = t + TA[0] * STRIDE
    spans["TA"].append([t0, t0 + 2.0])
    assert not model.gait_burst(_event("TA", t0, t0 + 2.0, 125.0), t0, t0 + 2.0, STRIDE, spans)
    # nor a gait-length burst at an odd phase (mid-stance, where TA is silent)
    model = GaitPhaseModel(DetectorConfig())
    spans = {}
    t = _walk(model, 10, spans)
    t0, t1 = t + 0.3 * STRIDE, t + 0.6 * STRIDE
    assert not model.gait_burst(_event("TA", t0, t1, 125.0), t0, t1, STRIDE, spans)


def test_the_model_says_whether_a_burst_was_its_muscles_ordinary_gait_burst() -> None:
    # ``spasm`` leaves ``last_typical`` for the detector: an in-phase burst as long as the
    # template's is the gait burst (voluntary even where the stride rhythm breaks around it);
    # one out of its phase window, or one too long, is not
    model = GaitPhaseModel(DetectorConfig())
    spans: dict[str, list[list[float]]] = {}
    t = _walk(model, 10, spans)
    t0, t1 = t + GASTROC[0] * STRIDE, t + GASTROC[1] * STRIDE
    spans["GM"].append([t0, t1])
    assert not model.spasm(_event("GM", t0, t1, 150.0), t0, t1, STRIDE, spans)
    assert model.last_typical
    t += STRIDE
    t0, t1 = t + 0.02 * STRIDE, t + 0.12 * STRIDE  # at loading: out of its phase window
    spans["GM"].append([t0, t1])
    assert not model.spasm(_event("GM", t0, t1, 150.0), t0, t1, STRIDE, spans)
    assert not model.last_typical


def test_a_sustained_episode_after_silent_cycles_is_a_spasm_not_a_merged_gait_burst() -> None:
    """An episode lasting several strides once walking is under way is read as the muscle following
    the cycle without falling silent ("merged"), unless the muscle fell silent in its last cycles
    before it: then it is a tonic spasm under the walk. Judged by the rhythm rules alone (no gait
    template, as when the template holds merged strides): two irregular gastrocnemius bursts, each
    followed by silence, then a 6 s sustained contraction at 34.3 s."""
    emg, acc, _ = _recording(None)
    rng = np.random.default_rng(5)
    te = np.arange(emg.shape[0]) / FS
    sos = signal.butter(4, [40, 250], btype="bandpass", fs=FS, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(te.size))
    noise /= noise.std()
    quiet = (te >= 10.0 + 10 * STRIDE) & (te < 10.0 + 21 * STRIDE)  # strides 10-20: no gait burst
    emg[quiet, 0] = 3.0 * rng.standard_normal(int(quiet.sum()))
    for b in (31.0, 32.3):  # the muscle bursts and falls silent, at no regular rhythm
        emg[:, 0] += 100.0 * noise * ((te >= b) & (te < b + 0.3))
    label = (34.3, 40.3)
    emg[:, 0] += 60.0 * noise * ((te >= label[0]) & (te < label[1]))
    found = [e for e in _walking(_run(emg, acc, gait_phase=False)) if _covers(e, label)]
    assert len(found) == 1 and found[0].channel == "EMG L gastroc", found
    assert found[0].context == "walking" and found[0].offset_sample / FS - found[0].onset_sample / FS > 5.0
