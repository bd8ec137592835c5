"""Held bursts are not judged again while their "not yet" stands (``SpasmDetector._naps``).

The nap is a pure saving: a detector that judges every held burst on every pass (naps off) must
publish exactly the same outputs, in the same order, for any feeding. Checked on a short day
with spasms, standing up, walking, sitting down, a reach and a lift, fed the way a gateway
feeds it, with the accelerometer lagging the EMG by up to 0.4 s (its verdicts arrive while
bursts wait: they must wake them), with lost chunks, and without an accelerometer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from support.recordings import recording

from detectors import DetectorConfig, DetectorOutput, SpasmDetector
from firmware_sim import scenario

LEGS = ["EMG L tib ant", "EMG L gastroc", "EMG L quad", "EMG L ham"]
DAY = scenario.parse_scenario(
    {
        "name": "t_naps",
        "seed": 5,
        "duration_s": 70.0,
        "emg_rate_hz": 1000,
        "acc_rate_hz": 50,
        "channels": LEGS,
        "posture": "sitting",
        "profile": {"kind": "sci", "events_per_min": 8.0, "voluntary_per_min": 0.0,
                    "posture_changes_per_hour": 0.0},
        "activities": [
            {"kind": "sit_to_stand", "onset_s": 10.0, "duration_s": 2.4},
            {"kind": "walk", "onset_s": 13.0, "duration_s": 25.0, "cadence_hz": 0.9},
            {"kind": "stand_to_sit", "onset_s": 39.0, "duration_s": 2.8},
            {"kind": "reach", "onset_s": 50.0},
            {"kind": "lift", "onset_s": 58.0},
        ],
    },
    "t_naps",
)  # fmt: skip


def _feed(
    det: SpasmDetector,
    emg: np.ndarray,
    acc: np.ndarray | None,
    fs: float,
    fa: float,
    acc_every: int,
    lose: bool,
) -> tuple[list[DetectorOutput], int]:
    """50 ms EMG chunks; the accelerometer in one piece every ``acc_every`` EMG chunks (so it lags);
    with ``lose``, one EMG chunk in 200 and one accelerometer piece in 40 are lost (new segments).
    Returns the outputs and how many passes ended with bursts asleep."""
    es = int(0.05 * fs)
    out: list[DetectorOutput] = []
    asleep = 0
    j = 0
    for k, i in enumerate(range(0, emg.shape[0], es)):
        if not (lose and k % 200 == 199):
            out += det.feed_emg(i, emg[i : i + es])
        if acc is not None and (k + 1) % acc_every == 0:
            upto = min(acc.shape[0], round((i + es) * fa / fs))
            if upto > j and not (lose and (k // acc_every) % 40 == 39):
                out += det.feed_acc(j, acc[j:upto])
            j = upto
        asleep += bool(det._naps)
    if acc is not None and j < acc.shape[0]:
        out += det.feed_acc(j, acc[j:])
    return out + det.finish(), asleep


def _both(with_acc: bool, acc_every: int = 1, lose: bool = False) -> tuple[Any, Any, int]:
    rec = recording(DAY)
    emg = np.asarray(rec.emg_uv, dtype=np.float64)
    acc = np.asarray(rec.acc_g, dtype=np.float64) if with_acc else None
    runs = []
    for naps in (True, False):
        det = SpasmDetector(
            DetectorConfig(), emg_rate_hz=float(rec.emg_rate_hz), channel_labels=list(rec.channel_labels),
            acc_rate_hz=float(rec.acc_rate_hz) if with_acc else None,
        )  # fmt: skip
        det._use_naps = naps
        out, asleep = _feed(det, emg, acc, rec.emg_rate_hz, rec.acc_rate_hz, acc_every, lose)
        runs.append(([repr(o) for o in out], det.voluntary_bursts, asleep))
    return runs[0][:2], runs[1][:2], runs[0][2]


def test_naps_change_no_output_with_the_accelerometer_in_step_or_lagging() -> None:
    for acc_every in (1, 8):
        with_naps, without, asleep = _both(True, acc_every)
        assert with_naps == without, f"accelerometer every {acc_every} chunks"
        assert asleep > 50  # bursts did wait asleep (else this test checks nothing)
    assert with_naps[1] > 0  # voluntary bursts were classed (the movement rules ran)


def test_naps_change_no_output_with_lost_chunks_or_without_accelerometer() -> None:
    with_naps, without, asleep = _both(True, 3, lose=True)
    assert with_naps == without
    assert asleep > 50
    with_naps, without, asleep = _both(False)
    assert with_naps == without
    assert asleep > 50


def test_a_nap_stands_until_its_times_or_new_data_where_it_looked() -> None:
    det = SpasmDetector(DetectorConfig(), emg_rate_hz=1000.0, channel_labels=["A", "B"], acc_rate_hz=50.0)
    det._acc_t = 3.0

    def nap(**kw: Any) -> None:
        det._nap("k", **{"emg": 5.0, "acc": 4.0, **kw})

    nap()
    assert det._napping("k", 4.9, final=False)
    assert not det._napping("k", 4.9, final=True)  # the end of the stream judges everything
    assert "k" not in det._naps  # (and the nap is forgotten)
    nap()
    assert not det._napping("k", 5.0, final=False)  # the EMG reached its time
    nap()
    det._acc_t = 4.0
    assert not det._napping("k", 4.0, final=False)  # the accelerometer reached its time
    det._acc_t = 3.0
    # new data wakes it only where it looked
    nap(verdicts=(1.0, 3.0), onsets=(0.5, 2.5))
    det._wake_verdict(3.25, None)
    det._wake_verdict(3.5, 1.0)  # (a hop ending at the window's open start leaves the log)
    det._wake_onset(2.6)
    det._wake_event()
    assert det._napping("k", 4.9, final=False)
    for wake in (lambda: det._wake_verdict(3.0, None), lambda: det._wake_verdict(3.5, 1.25),
                 lambda: det._wake_onset(0.5), lambda: det._wake_onset(2.5)):  # fmt: skip
        nap(verdicts=(1.0, 3.0), onsets=(0.5, 2.5))
        wake()
        assert not det._napping("k", 4.9, final=False)
    nap(events=True)
    det._wake_event()
    assert not det._napping("k", 4.9, final=False)
    # the horizon clean-up forgets onsets: a nap that read some ends before it reaches them
    nap(emg=100.0, onsets=(50.0, 51.0))
    assert det._naps["k"].emg == 80.0
    # a declared session (it may start or end any time): no naps
    nap()
    det.declare("exercise", 0)
    assert not det._napping("k", 0.0, final=False)
    nap()
    assert "k" not in det._naps
