"""The event scorer: one-to-one matching with tolerance collars and the metrics built on it."""

from __future__ import annotations

import math

import pytest

from detectors import SpasmEvent
from detectors.scoring import Interval, event_interval, format_table, score


def lab(t: str, on: float, off: float, ch: str = "EMG L", f: float | None = None) -> dict[str, object]:
    return {"type": t, "channel": ch, "onset_s": on, "offset_s": off, "frequency_hz": f}


def test_perfect_detection() -> None:
    labels = [lab("twitch", 1.0, 1.2), lab("phasic", 5.0, 7.0), lab("clonus", 10.0, 12.0, f=5.5)]
    dets = [lab("twitch", 1.02, 1.25), lab("phasic", 4.98, 7.1), lab("clonus", 10.01, 12.1, f=5.3)]
    r = score(dets, labels, duration_s=3600.0)
    assert (r.matched, r.sensitivity, r.precision, r.f1, r.type_accuracy) == (3, 1.0, 1.0, 1.0, 1.0)
    assert r.false_alarms == 0 and r.false_alarms_per_hour == 0.0
    assert r.median_onset_error_s == pytest.approx(0.02)
    assert r.median_frequency_error_hz == pytest.approx(0.2)
    assert r.per_type["clonus"].f1 == 1.0


def test_mistyped_event_counts_for_detection_not_for_type() -> None:
    r = score([lab("phasic", 1.0, 1.6)], [lab("twitch", 1.0, 1.4)], duration_s=60.0)
    assert r.matched == 1 and r.f1 == 1.0
    assert r.type_accuracy == 0.0
    assert r.per_type["twitch"].sensitivity == 0.0 and r.per_type["phasic"].precision == 0.0


def test_one_to_one_and_false_alarms_per_hour() -> None:
    labels = [lab("phasic", 10.0, 12.0)]
    dets = [lab("phasic", 10.1, 12.0), lab("phasic", 10.3, 11.0), lab("twitch", 100.0, 100.2)]
    r = score(dets, labels, duration_s=1800.0)
    assert r.matched == 1 and r.false_alarms == 2
    assert r.false_alarms_per_hour == pytest.approx(4.0)
    assert r.precision == pytest.approx(1 / 3) and r.sensitivity == 1.0
    assert r.pairs[0][1].onset_s == 10.1  # the closer onset wins
    assert r.f1 == pytest.approx(0.5)


def test_channel_must_match_except_for_tremor() -> None:
    r = score([lab("twitch", 1.0, 1.2, ch="EMG R")], [lab("twitch", 1.0, 1.2, ch="EMG L")], duration_s=60.0)
    assert r.matched == 0 and r.sensitivity == 0.0 and r.false_alarms == 1
    r2 = score([lab("tremor", 3.2, 9.0, ch="ACC", f=5.0)], [lab("tremor", 3.0, 9.0, ch="EMG L", f=5.2)], 60.0)
    assert r2.matched == 1 and r2.type_accuracy == 1.0


def test_collars_onset_or_overlap() -> None:
    labels = [lab("tonic", 10.0, 40.0)]
    # onset 0.9 s late but the intervals overlap almost entirely: still the same event
    assert score([lab("tonic", 10.9, 40.0)], labels, 600.0).matched == 1
    # a short detection inside a long label, far from its onset, is not that label
    assert score([lab("twitch", 30.0, 30.2)], labels, 600.0).matched == 0
    # just outside the onset collar and not overlapping
    assert score([lab("twitch", 1.7, 1.9)], [lab("twitch", 1.0, 1.1)], 600.0).matched == 0
    assert score([lab("twitch", 1.4, 1.5)], [lab("twitch", 1.0, 1.1)], 600.0).matched == 1


def test_confounder_labels_are_ignored_and_empty_inputs() -> None:
    labels = [lab("twitch", 1.0, 1.2), {"type": "ecg", "channel": "EMG L", "onset_s": 0.0, "offset_s": 60.0}]
    r = score([], labels, 60.0)
    assert r.n_labels == 1 and r.sensitivity == 0.0 and math.isnan(r.precision) and r.f1 == 0.0
    r0 = score([], [], 60.0)
    assert r0.n_labels == 0 and math.isnan(r0.f1) and math.isnan(r0.median_onset_error_s)


def test_spasm_events_are_converted_with_their_rate() -> None:
    ev = SpasmEvent(
        key="EMG L:emg:2000", type="twitch", channel="EMG L", domain="emg", onset_sample=2000,
        offset_sample=2400, rate_hz=1000.0, peak_uv=100.0, mean_uv=50.0, baseline_uv=3.0,
        relative_amplitude=33.0, frequency_hz=None, confidence=0.9, detector_version="1", config_hash="x",
    )  # fmt: skip
    assert event_interval(ev) == Interval("twitch", "EMG L", 2.0, 2.4, None)
    assert event_interval(ev, origin_sample=1000).onset_s == 1.0
    r = score([ev], [lab("twitch", 2.01, 2.4)], 60.0)
    assert r.matched == 1 and r.median_onset_error_s == pytest.approx(0.01)


def test_bad_inputs_name_the_item() -> None:
    with pytest.raises(ValueError, match=r"labels\[0\]"):
        score([], [{"type": "twitch", "onset_s": 1.0}], 60.0)
    with pytest.raises(ValueError, match=r"detections\[1\].*offset_s before onset_s"):
        score([lab("twitch", 1.0, 1.1), lab("twitch", 2.0, 1.0)], [], 60.0)
    with pytest.raises(ValueError, match="duration_s"):
        score([], [], 0.0)


def test_format_table() -> None:
    r = score([lab("twitch", 1.0, 1.2)], [lab("twitch", 1.0, 1.2)], 3600.0)
    text = format_table([("demo", r)])
    assert text.splitlines()[0].startswith("| scenario |")
    assert "| demo | 1 | 1 | 1.000 |" in text
