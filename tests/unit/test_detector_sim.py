"""Scoring the detector on labelled firmware_sim scenarios (short versions of the bench's set).

The full table (15-minute scenarios) is produced by ``python bench/bench_detector.py --score`` and
recorded in docs/detector.md; these keep the same kinds of scenario small enough for CI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors import DetectorConfig, DetectorOutput, Onset, QualityChange, SpasmDetector, SpasmEvent
from detectors.detector import feed_interleaved
from detectors.scoring import score
from firmware_sim import scenario, signals


def stream(rec: Any, chunk_s: float = 0.05) -> list[DetectorOutput]:
    det = SpasmDetector(
        DetectorConfig(),
        emg_rate_hz=float(rec.emg_rate_hz),
        channel_labels=list(rec.channel_labels),
        acc_rate_hz=float(rec.acc_rate_hz),
    )
    emg = np.asarray(rec.emg_uv, dtype=np.float64)
    acc = np.asarray(rec.acc_g, dtype=np.float64)
    return feed_interleaved(det, emg, acc, rec.emg_rate_hz, rec.acc_rate_hz, chunk_s)


NOISY = {
    "name": "ci_noisy",
    "seed": 21,
    "duration_s": 240.0,
    "emg_rate_hz": 1024,
    "acc_rate_hz": 50,
    "channels": ["EMG L quad", "EMG R quad", "EMG abdomen"],
    "profile": {"kind": "sci", "events_per_min": 8.0, "voluntary_per_min": 0.0},
    "confounders": [
        {"kind": "mains", "frequency_hz": 60.0, "amplitude_uv": 30.0},
        {"kind": "ecg", "channel": "EMG abdomen", "amplitude_uv": 150.0},
        {"kind": "baseline_wander", "amplitude_uv": 200.0},
        {"kind": "cable_motion", "channel": "EMG L quad", "onset_s": 30.0, "duration_s": 20.0, "count": 5},
        {"kind": "electrode_pop", "channel": "EMG R quad", "onset_s": 60.0, "duration_s": 20.0, "count": 5},
        {"kind": "lead_off", "channel": "EMG L quad", "onset_s": 100.0, "duration_s": 10.0},
        {"kind": "saturation", "channel": "EMG R quad", "onset_s": 130.0, "duration_s": 2.0},
    ],
}
TREMOR = {
    "name": "ci_tremor",
    "seed": 22,
    "duration_s": 240.0,
    "emg_rate_hz": 500,
    "acc_rate_hz": 25,
    "channels": ["EMG forearm"],
    "profile": {"kind": "parkinson", "events_per_min": 3.0, "voluntary_per_min": 0.0},
}


@pytest.mark.parametrize("name", ["demo", "e2e_short", "ci_noisy", "ci_tremor"])
def test_scenario_scores(name: str) -> None:
    if name in ("demo", "e2e_short"):
        sc = scenario.builtin_scenario(name)
    else:
        sc = scenario.parse_scenario(NOISY if name == "ci_noisy" else TREMOR, name)
    rec = signals.synthesize(sc)
    out = stream(rec)
    evs = [o for o in out if isinstance(o, SpasmEvent)]
    rep = score(evs, rec.labels, rec.duration_s)
    detail = f"missed={rep.missed} false={rep.false}"
    assert rep.n_labels >= 3
    assert rep.f1 >= 0.95, detail
    assert rep.type_accuracy >= 0.9, detail
    assert rep.false_alarms <= 1, detail
    assert rep.median_onset_error_s <= (0.2 if name == "ci_tremor" else 0.05)
    # every completed event was announced, by key, before it completed
    onsets = {o.key: k for k, o in enumerate(out) if isinstance(o, Onset)}
    for k, o in enumerate(out):
        if isinstance(o, SpasmEvent):
            assert onsets[o.key] < k
    # quality changes were reported for the lead-off channel in the noisy scenario
    if name == "ci_noisy":
        states = {(q.channel, q.state) for q in out if isinstance(q, QualityChange)}
        assert ("EMG L quad", "lead_off") in states
