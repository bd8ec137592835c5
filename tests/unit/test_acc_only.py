"""An accelerometer-only device (Polar H10: INFO with no EMG channels) through detector and session."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import DetectorConfig, Onset, SpasmDetector, SpasmEvent
from detectors.events import ActivityChange, ActivitySpan
from detectors.tremor import TremorTracker
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import AccFrame, EmgFrame, InfoFrame

RATE = 200


def tremor_acc(seconds: float, on: tuple[float, float], hz: float = 5.0, amp_g: float = 0.08) -> np.ndarray:
    """Gravity on z, a little noise, and a ``hz`` oscillation between ``on[0]`` and ``on[1]`` s."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(3)
    acc = rng.normal(0.0, 0.002, (len(t), 3))
    acc[:, 2] += 1.0
    inside = (t >= on[0]) & (t < on[1])
    acc[inside, 0] += amp_g * np.sin(2 * np.pi * hz * t[inside])
    return acc


def test_detector_without_emg_channels_finds_tremor_and_refuses_emg() -> None:
    out = _acc_only_outputs(tremor_acc(20.0, (5.0, 13.0)))
    events = [o for o in out if isinstance(o, SpasmEvent)]
    assert len(events) == 1 and events[0].type == "tremor"
    assert abs(events[0].onset_sample / RATE - 5.0) < 0.6 and abs(events[0].offset_sample / RATE - 13.0) < 0.8
    assert events[0].frequency_hz == pytest.approx(5.0, abs=0.3)
    with pytest.raises(ValueError, match="no EMG channels"):
        SpasmDetector(emg_rate_hz=0, channel_labels=[], acc_rate_hz=RATE).feed_emg(0, np.zeros((4, 0)))
    with pytest.raises(ValueError, match="at least one EMG channel"):
        SpasmDetector(emg_rate_hz=200, channel_labels=[])


def test_session_runs_the_accelerometer_path_with_its_own_clock_and_exact_gaps() -> None:
    outs: list[Output] = []
    s = DeviceSession("strap-1", outs.append)
    info = InfoFrame(0, 0, 7, 0, RATE, 1.0, 0.001, "polar-h10", "pmd", ())
    s.on_frame(info, 1000.0)
    acc_mg = np.rint(tremor_acc(20.0, (5.0, 13.0)) * 1000).astype(np.int16)
    n = 36
    lost = {40, 41}  # 72 samples lost at 1440
    for k in range(len(acc_mg) // n):
        if k in lost:
            continue
        s.on_frame(AccFrame(k, k * n, acc_mg[k * n : (k + 1) * n]), 1000.0 + (k + 1) * n / RATE)
    s.on_frame(EmgFrame(0, 0, np.zeros((2, 1), dtype=np.int16)), 1001.0)  # no EMG stream: dropped
    s.finish()
    gaps = [o.payload for o in outs if o.kind == "gap"]
    assert [(g["domain"], g["cause"], g["samples_missing"]) for g in gaps if g] == [
        ("acc", "lost_frames", 72)
    ]
    assert gaps[0] is not None and gaps[0]["duration_s"] == pytest.approx(72 / RATE, abs=0.02)
    events = [o.payload for o in outs if o.kind == "event" and o.payload]
    assert [e["type"] for e in events] == ["tremor"]
    assert s.stats.no_info_frames == 1
    h = s.health()
    assert h["loss_pct"] == pytest.approx(100 * 72 / (len(acc_mg) // n * n), abs=0.01)
    assert h["channels"] == [] and h["clock_drift_ppm"] is not None
    assert any(o.kind == "acc" for o in outs) and not any(o.kind == "envelope" for o in outs)


class _CountingTracker(TremorTracker):
    """Counts analyses (the only places ``feed`` can confirm or end an episode)."""

    analyses = 0

    def _analyse(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.analyses += 1
        super()._analyse(*args, **kwargs)


def test_tremor_analyses_within_predicts_exactly_which_feeds_analyse() -> None:
    # The detector holds back accelerometer hops that reach no analysis: the predicate must
    # never miss one (a confirmation would come out late), across gaps (segment restarts).
    tr = _CountingTracker(DetectorConfig(), RATE)
    acc = tremor_acc(30.0, (5.0, 20.0))
    rng = np.random.default_rng(5)
    i = 0
    n_true = 0
    while i < len(acc):
        if rng.random() < 0.02:
            tr.close(i)
        n = int(rng.integers(0, 60))
        before = tr.analyses
        expected = tr.analyses_within(n)
        confirms, done = tr.feed(i, acc[i : i + n])
        assert expected == (tr.analyses > before)
        if not expected:
            assert confirms == [] and done == []
        n_true += expected
        i += n
    assert n_true > 50


def _two_tremors() -> np.ndarray:
    """25 s of accelerometer with a 6 Hz tremor at 4-9 s and a 4.5 Hz one at 14-22 s."""
    acc = tremor_acc(25.0, (4.0, 9.0), hz=6.0)
    t = np.arange(len(acc)) / RATE
    later = (t >= 14.0) & (t < 22.0)
    acc[later, 0] += 0.08 * np.sin(2 * np.pi * 4.5 * t[later])
    return acc


@pytest.mark.parametrize("size", [1, 5, 13, 50, 401])
def test_accelerometer_path_is_chunk_invariant(size: int) -> None:
    # Tremor onsets and events do not depend on how the samples were chunked (the detector
    # batches hops that reach no analysis; a chunk may carry less than a hop, or many).
    acc = _two_tremors()

    def run(step: int) -> list[object]:
        det = SpasmDetector(emg_rate_hz=0, channel_labels=[], acc_rate_hz=RATE)
        out: list[object] = []
        for i in range(0, len(acc), step):
            for o in det.feed_acc(i, acc[i : i + step]):
                # published as the samples arrive, soon after the confirmation (tremor_min_s 3 s)
                assert not isinstance(o, Onset) or i + step - o.onset_sample <= 4 * RATE + step
                out.append(o)
        out += det.finish()
        return [o for o in out if isinstance(o, (Onset, SpasmEvent))]

    ref = run(400)  # 2 s chunks
    assert sum(isinstance(o, SpasmEvent) and o.type == "tremor" for o in ref) == 2
    assert run(size) == ref


def test_a_chunk_holding_whole_tremor_episodes_loses_neither_event() -> None:
    # An offline block can hold an episode's confirmation and its end in one call: the event
    # must still come out (it was lost: the end was matched before the confirmation existed).
    acc = _two_tremors()

    def run(step: int) -> list[object]:
        det = SpasmDetector(emg_rate_hz=0, channel_labels=[], acc_rate_hz=RATE)
        out = [o for i in range(0, len(acc), step) for o in det.feed_acc(i, acc[i : i + step])]
        return [o for o in out + det.finish() if isinstance(o, (Onset, SpasmEvent))]

    ref = run(400)
    assert [o.type for o in ref if isinstance(o, SpasmEvent)] == ["tremor", "tremor"]
    assert run(len(acc)) == ref


def _acc_only_outputs(acc: np.ndarray) -> list[object]:
    det = SpasmDetector(emg_rate_hz=0, channel_labels=[], acc_rate_hz=RATE)
    out: list[object] = []
    for i in range(0, len(acc), 37):
        out += det.feed_acc(i, acc[i : i + 37])
    return out + det.finish()


@pytest.mark.parametrize(
    ("hz", "amp_g"), [(3.5, 0.2), (4.0, 0.5), (5.0, 0.08), (5.0, 0.3), (6.0, 0.5), (8.0, 0.2)]
)
def test_a_shaking_limb_is_a_tremor_never_an_activity(hz: float, amp_g: float) -> None:
    """What the 3 Hz low-pass leaves of a tremor repeats at two or three of its periods inside the
    stride lags (0.4-2 s) as well as a stride does at one: without the spectral test every hop of it
    was "rhythmic exercise", or "walking" at 0.5 g, and a 40 s tremor became 40 s of exercise."""
    out = _acc_only_outputs(tremor_acc(60.0, (5.0, 45.0), hz, amp_g))
    assert not [o for o in out if isinstance(o, (ActivitySpan, ActivityChange))]
    events = [o for o in out if isinstance(o, SpasmEvent)]
    assert [(e.type, e.context) for e in events] == [("tremor", "rest")]
    assert events[0].frequency_hz == pytest.approx(hz, abs=0.3)


@pytest.mark.parametrize("tremor_g", [0.0, 0.1])
def test_a_stride_rhythm_stays_walking_with_or_without_a_tremor_on_it(tremor_g: float) -> None:
    """The counter-case: a shank swinging at 0.9 Hz with heel strikes (1 g impacts) is walking,
    also with a Parkinsonian 5 Hz tremor riding on it (the stride keeps most of the power)."""
    t = np.arange(int(60.0 * RATE)) / RATE
    acc = tremor_acc(60.0, (10.0, 50.0), 5.0, tremor_g)
    inside = (t >= 10.0) & (t < 50.0)
    acc[inside, 0] += 0.3 * np.sin(2 * np.pi * 0.9 * t[inside])
    acc[inside, 2] += 0.15 * np.cos(2 * np.pi * 0.9 * t[inside])
    for t_hs in np.arange(10.2, 50.0, 1 / 0.9):
        k = int(t_hs * RATE)
        acc[k : k + 4, 2] += 1.0 * np.exp(-np.arange(4) / 1.5)
    spans = [o for o in _acc_only_outputs(acc) if isinstance(o, ActivitySpan)]
    assert [s.kind for s in spans] == ["walking"]
    assert spans[0].start_sample / RATE == pytest.approx(10.0, abs=3.0)
    assert spans[0].end_sample / RATE == pytest.approx(50.0, abs=3.0)


def test_a_tremor_under_way_when_the_stream_or_a_gap_begins_starts_with_its_first_sample() -> None:
    """The onset is put half a hop before the first loud hop; when that hop is the segment's first,
    the onset fell before the first sample received (a negative sample at the stream's start, a
    time inside the gap after one)."""
    acc = tremor_acc(30.0, (0.0, 30.0), 5.0, 0.1)
    out = _acc_only_outputs(acc)
    starts = [e.onset_sample for e in out if isinstance(e, SpasmEvent)]
    assert starts == [0]
    det = SpasmDetector(emg_rate_hz=0, channel_labels=[], acc_rate_hz=RATE)
    cut = 10 * RATE  # a gap: samples 2000-2999 never arrive, the tremor goes on through it
    got: list[object] = []
    for i in range(0, len(acc), 40):
        if not cut <= i < cut + RATE:
            got += det.feed_acc(i, acc[i : i + 40])
    got += det.finish()
    events = [e for e in got if isinstance(e, SpasmEvent)]
    assert [e.type for e in events] == ["tremor", "tremor"]
    assert events[0].onset_sample == 0 and events[1].onset_sample == cut + RATE
