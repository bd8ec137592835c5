"""Encoders (ingest.outputs.encoders): typed records to MQTT JSON and line protocol, from numbers."""

from __future__ import annotations

import random
from datetime import datetime

from ingest.outputs import encoders
from ingest.outputs.payloads import iso
from ingest.stream.records import EventRecord, GapRecord, OnsetRecord, event_id, gap_id


def _iso_ns(text: str) -> int:
    """What the router did before the encoders: parse the payload's ISO text back to ns."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)


def test_line_timestamps_are_the_milliseconds_the_json_shows() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        t = 1_700_000_000 + rng.random() * 200_000_000
        assert encoders.ms_ns(t) == _iso_ns(iso(t)), t


EVENT = EventRecord(
    id=event_id("dev-1", 0xB007, "emg/EMG L/123"), device="dev-1", boot_id=0xB007, type="phasic",
    channel="EMG L", t_onset=1_795_564_800.1234, t_offset=1_795_564_801.5, duration_s=1.3766,
    peak_uv=120.456, mean_uv=50.0, baseline_uv=3.0, relative_amplitude=40.15, frequency_hz=None,
    confidence=0.87654, detector_version="1.0.0", config_hash="abc",
)  # fmt: skip


def test_event_encodes_to_schema_v2_json_and_one_line() -> None:
    p = encoders.to_json(EVENT)
    assert p["onset"] == "2026-11-25T00:00:00.123Z" and p["duration_s"] == 1.377 and p["peak_uv"] == 120.46
    assert p["frequency_hz"] is None and p["detector"] == {"version": "1.0.0", "config_hash": "abc"}
    line = encoders.to_line(EVENT, "p-1")
    # Byte for byte what the router wrote when it parsed the JSON's ISO text back (the timestamp's
    # float artefact included: stored points keep their exact timestamps across the change), plus
    # the event schema v2 fields (context, clipped; rise_s left out when unknown).
    assert line == (
        b"spasm_event,channel=EMG\\ L,device=dev-1,patient=p-1,type=phasic clipped=false,confidence=0.877,"
        b'context="rest",duration_s=1.377,id="'
        + EVENT.id.encode()
        + b'",mean_uv=50,peak_uv=120.46,relative_amplitude=40.15 1795564800122999808\n'
    )
    assert p["schema"] == "neurospasm.event/2" and p["context"] == "rest" and p["clipped"] is False
    assert line.endswith(b" " + str(_iso_ns(p["onset"])).encode() + b"\n")
    assert b"frequency_hz" not in line  # a None field is left out, never written as text


def test_an_artifact_suspect_event_carries_the_optional_flag_and_validates() -> None:
    from dataclasses import replace

    from tests.support.checks import validate

    assert "artifact_suspect" not in encoders.to_json(EVENT)  # absent means false (additive field)
    assert b"artifact_suspect" not in encoders.to_line(EVENT, "p-1")
    flagged = replace(EVENT, artifact_suspect=True, confidence=0.4)
    p = encoders.to_json(flagged)
    assert p["artifact_suspect"] is True
    validate("event", p)
    validate("event", encoders.to_json(EVENT))
    assert b"artifact_suspect=true" in encoders.to_line(flagged, "p-1")


def test_gap_and_onset() -> None:
    gap = GapRecord(
        gap_id("d", 1, "emg", 100, "lead_off"), "d", 1, "emg", "lead_off", 100, 40, 10.0, 10.02, "EMG L"
    )
    g = encoders.to_json(gap)
    assert g["channel"] == "EMG L" and g["duration_s"] == 0.02 and g["samples_missing"] == 40
    assert encoders.to_line(gap, "p").startswith(b"gap,") and encoders.topic_leaf(gap) == "gaps"
    onset = OnsetRecord(event_id("d", 1, "k"), "d", 1, "EMG L", 10.0, float("nan"), 2.0)
    o = encoders.to_json(onset)
    assert o["amplitude_uv"] is None and o["baseline_uv"] == 2.0  # not finite: null, never NaN in JSON
    assert encoders.to_line(onset, "p") == b""  # onsets are live alerts; the event is what is stored
