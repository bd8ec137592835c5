"""The accelerometer activity tracker's state handling (issue 9, speed): hop verdicts do not depend
on how the stream is cut or on where a segment's window sits in the tracker's buffers; the
detector's outputs do not either, with lost stretches of the accelerometer (new segments)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from detectors import DetectorConfig, DetectorOutput, SpasmDetector
from detectors.activity import RHYTHMIC, TRANSITION, WALKING, AccActivityTracker
from firmware_sim import scenario, signals


@pytest.fixture(scope="module")
def walk() -> Any:
    """Sitting, standing up, 50 s of walking (heel strikes), sitting down, spasms between."""
    sc = scenario.parse_scenario(
        {
            "name": "t_tracker_walk",
            "seed": 91,
            "duration_s": 100.0,
            "emg_rate_hz": 1000,
            "acc_rate_hz": 50,
            "channels": ["EMG L quad", "EMG L ham", "EMG R quad"],
            "posture": "sitting",
            "profile": {"kind": "sci", "events_per_min": 4.0, "voluntary_per_min": 0.0,
                        "posture_changes_per_hour": 0.0},
            "activities": [
                {"kind": "sit_to_stand", "onset_s": 15.0, "duration_s": 2.4},
                {"kind": "walk", "onset_s": 18.0, "duration_s": 50.0, "cadence_hz": 0.9},
                {"kind": "stand_to_sit", "onset_s": 70.0, "duration_s": 2.8},
            ],
        },
        "t_tracker_walk",
    )  # fmt: skip
    return signals.synthesize(sc)


def _verdicts(acc: np.ndarray, rate: float, step: int) -> list[tuple[int, int, int, float]]:
    tr = AccActivityTracker(DetectorConfig(), rate)
    return [v for i in range(0, acc.shape[0], step) for v in tr.feed(i, acc[i : i + step])]


def test_verdicts_do_not_depend_on_chunking(walk: Any) -> None:
    acc = np.asarray(walk.acc_g, dtype=np.float64)
    rate = float(walk.acc_rate_hz)
    ref = _verdicts(acc, rate, acc.shape[0])
    codes = {code for _, _, code, _ in ref}
    # walking needs the heel-strike peaks of past hops (kept until a rhythm verdict asks)
    assert WALKING in codes and TRANSITION in codes
    assert any(p > 0 for _, _, code, p in ref if code in (WALKING, RHYTHMIC))
    # 3, 5 samples: several chunks make a hop; 12 = one hop; 13, 500: hops inside one chunk
    for step in (3, 5, 12, 13, 500):
        assert _verdicts(acc, rate, step) == ref, step


def test_a_reset_starts_the_window_afresh_wherever_the_buffers_stand(walk: Any) -> None:
    acc = np.asarray(walk.acc_g, dtype=np.float64)
    rate = float(walk.acc_rate_hz)
    tr = AccActivityTracker(DetectorConfig(), rate)
    # segments of odd lengths, so each restarts with the buffers at another position
    cuts = [0, 777, 1900, 2333, 3500, acc.shape[0]]
    for a, b in itertools.pairwise(cuts):
        tr.reset()
        got = [v for i in range(a, b, 7) for v in tr.feed(i, acc[i : min(i + 7, b)])]
        fresh = AccActivityTracker(DetectorConfig(), rate)
        assert got == fresh.feed(a, acc[a:b]), (a, b)
        assert got and got[0][0] == a


def _kept(j: int, upto: int, fa: float) -> list[tuple[int, int]]:
    """Parts of samples [j, upto) not lost: the accelerometer loses [5 s, 6 s) of every 15 s."""
    period, lo, hi = round(15 * fa), round(5 * fa), round(6 * fa)
    parts: list[tuple[int, int]] = []
    a = j
    while a < upto:
        base = a - a % period
        if base + lo <= a < base + hi:
            a = base + hi  # inside a loss: skip to its end
            continue
        b = min(upto, base + lo if a < base + lo else base + period)
        parts.append((a, b))
        a = b
    return parts


def _outputs(rec: Any, chunk_s: float) -> list[DetectorOutput]:
    """The detector on ``rec`` in ``chunk_s`` chunks, EMG and accelerometer interleaved, with the
    accelerometer lost for 1 s in every 15 s (each loss starts a new activity segment)."""
    fs, fa = float(rec.emg_rate_hz), float(rec.acc_rate_hz)
    det = SpasmDetector(DetectorConfig(), emg_rate_hz=fs, channel_labels=list(rec.channel_labels),
                        acc_rate_hz=fa)  # fmt: skip
    emg = np.asarray(rec.emg_uv, dtype=np.float64)
    acc = np.asarray(rec.acc_g, dtype=np.float64)
    es = int(chunk_s * fs)
    out: list[DetectorOutput] = []
    j = 0
    for i in range(0, emg.shape[0], es):
        out += det.feed_emg(i, emg[i : i + es])
        upto = min(acc.shape[0], round((i + es) * fa / fs))
        for a, b in _kept(j, upto, fa):
            out += det.feed_acc(a, acc[a:b])
        j = max(j, upto)
    return out + det.finish()


def test_detector_outputs_with_accelerometer_gaps_do_not_depend_on_chunking(walk: Any) -> None:
    ref = _outputs(walk, 0.05)
    kinds = {type(o).__name__ for o in ref}
    assert {"SpasmEvent", "ActivitySpan", "ActivityChange"} <= kinds
    # the accelerometer lags the EMG by at most a chunk: the same outputs, Onset notices included
    for chunk_s in (0.02, 0.2):
        assert sorted(map(repr, _outputs(walk, chunk_s))) == sorted(map(repr, ref)), chunk_s


def test_the_minimum_window_claims_no_tilt_it_cannot_measure(walk: Any) -> None:
    """At ``activity_window_s = 2`` (the least allowed) a segment's early hops have no half second
    "a second before" to compare with: no tilt, and no mean of an empty slice (a RuntimeWarning,
    an error under ``-W error``)."""
    import warnings

    acc = np.asarray(walk.acc_g, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = AccActivityTracker(DetectorConfig(activity_window_s=2.0), float(walk.acc_rate_hz))
        verdicts = [v for i in range(0, acc.shape[0], 13) for v in tr.feed(i, acc[i : i + 13])]
    assert TRANSITION in {code for _, _, code, _ in verdicts}  # the tilt is still seen once measurable


def test_a_caller_reusing_its_receive_buffer_gets_the_same_outputs(walk: Any) -> None:
    """The detector holds accelerometer samples until a whole hop is in: it must keep its own copy,
    or a caller that refills one receive buffer (a serial reader does) changes what it sees."""
    fs, fa = float(walk.emg_rate_hz), float(walk.acc_rate_hz)
    emg = np.asarray(walk.emg_uv, dtype=np.float64)
    acc = np.asarray(walk.acc_g, dtype=np.float64)

    def run(reuse: bool) -> list[str]:
        det = SpasmDetector(DetectorConfig(), emg_rate_hz=fs, channel_labels=list(walk.channel_labels),
                            acc_rate_hz=fa)  # fmt: skip
        buf = np.empty((5, 3))
        out: list[DetectorOutput] = []
        for a in range(0, acc.shape[0] - 5, 5):
            out += det.feed_emg(round(a * fs / fa), emg[round(a * fs / fa) : round((a + 5) * fs / fa)])
            chunk = acc[a : a + 5]
            if reuse:
                buf[:] = chunk
                chunk = buf
            out += det.feed_acc(a, chunk)
        return sorted(map(repr, out + det.finish()))

    assert run(reuse=True) == run(reuse=False)
