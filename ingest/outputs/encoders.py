"""Encoders: typed records (``ingest.stream.records``) to MQTT JSON and to line protocol, from numbers.

One function per target, used by everything that publishes or stores: the gateway's router, the
central worker, ``neurospasm detect``, ``replay --events-out``, the EDF+ export. Both encodings
are computed from the record's floats; nothing is ever parsed back from the ISO text of a payload.

Byte compatibility (schema v1, docs/schemas/, docs/influx-schema.md): JSON times are ISO-8601
UTC with milliseconds, truncated as ``datetime.isoformat`` does, and the line-protocol timestamp
of an event or gap is that same millisecond (``ms_ns``), so a point and its MQTT payload name the
same instant, exactly as before the encoders moved here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ingest.outputs import lineproto
from ingest.outputs.payloads import iso
from ingest.stream.records import (
    ActivityRecord,
    EventRecord,
    GapRecord,
    LiveRecord,
    OnsetRecord,
    Record,
    StatusRecord,
)

__all__ = [
    "activity_json",
    "activity_line",
    "event_line",
    "gap_line",
    "health_line",
    "last_will",
    "ms_ns",
    "status_json",
    "status_line",
    "to_json",
    "to_line",
    "topic_leaf",
]

#: MQTT topic leaf of each record type (``{prefix}/{site}/{patient}/{device}/{leaf}``).
_LEAVES: dict[type, str] = {
    OnsetRecord: "onsets",
    EventRecord: "events",
    GapRecord: "gaps",
    LiveRecord: "live",
    ActivityRecord: "activity",
    StatusRecord: "status",
}


def topic_leaf(record: Record | StatusRecord) -> str:
    return _LEAVES[type(record)]


def _num(x: float | None, nd: int = 3) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def ms_ns(t: float) -> int:
    """The nanosecond timestamp of the millisecond ``iso(t)`` shows (truncated, not rounded)."""
    dt = datetime.fromtimestamp(t, UTC)
    return int(dt.replace(microsecond=dt.microsecond // 1000 * 1000).timestamp() * 1e9)


# -- MQTT JSON ------------------------------------------------------------------------------------
def onset_json(r: OnsetRecord) -> dict[str, Any]:
    p = {
        "schema": "neurospasm.onset/1",
        "id": r.id,
        "device": r.device,
        "channel": r.channel,
        "onset": iso(r.t_onset),
        "amplitude_uv": _num(r.amplitude_uv, 2),
        "baseline_uv": _num(r.baseline_uv, 2),
    }
    if r.time_quality is not None:
        p["time_quality"] = r.time_quality
    return p


def event_json(r: EventRecord) -> dict[str, Any]:
    p: dict[str, Any] = {
        "schema": "neurospasm.event/2",
        "id": r.id,
        "device": r.device,
        "type": r.type,
        "channel": r.channel,
        "onset": iso(r.t_onset),
        "offset": iso(r.t_offset),
        "duration_s": _num(r.duration_s),
        "peak_uv": _num(r.peak_uv, 2),
        "mean_uv": _num(r.mean_uv, 2),
        "baseline_uv": _num(r.baseline_uv, 2),
        "relative_amplitude": _num(r.relative_amplitude, 2),
        "frequency_hz": _num(r.frequency_hz, 2),
        "confidence": _num(r.confidence),
        "context": r.context,
        "clipped": r.clipped,
        "rise_s": _num(r.rise_s),
        "detector": {"version": r.detector_version, "config_hash": r.config_hash},
    }
    if r.artifact_suspect:  # optional (event schema v2): present only when set
        p["artifact_suspect"] = True
    if r.time_quality is not None:
        p["time_quality"] = r.time_quality
    return p


def gap_json(r: GapRecord) -> dict[str, Any]:
    p: dict[str, Any] = {
        "schema": "neurospasm.gap/1",
        "id": r.id,
        "device": r.device,
        "domain": r.domain,
        "cause": r.cause,
        "start": iso(r.t_start),
        "end": iso(r.t_end),
        "duration_s": _num(max(0.0, r.t_end - r.t_start)),
        "samples_missing": int(r.samples_missing),
    }
    if r.channel is not None:
        p["channel"] = r.channel
    return p


def activity_json(r: ActivityRecord) -> dict[str, Any]:
    return {
        "schema": "neurospasm.activity/1",
        "id": r.id,
        "device": r.device,
        "kind": r.kind,
        "start": iso(r.t_start),
        "end": iso(r.t_end),
        "duration_s": _num(max(0.0, r.t_end - r.t_start)),
        "declared": r.declared,
        "suppressed": int(r.suppressed),
    }


def live_json(r: LiveRecord) -> dict[str, Any]:
    return {
        "schema": "neurospasm.live/1",
        "device": r.device,
        "t": iso(r.t),
        "envelope_uv": {label: round(float(v), 2) for label, v in r.envelope_uv.items()},
    }


def status_json(r: StatusRecord) -> dict[str, Any]:
    """The retained ``.../status`` payload (schema status.v1), key order as published since v1."""
    p: dict[str, Any] = {
        "schema": "neurospasm.status/1",
        "device": r.device,
        "state": r.state,
        "monitoring": r.monitoring,
    }
    if r.updated is None:
        return p  # the last will: nothing is known but "offline"
    p["reason"] = None if r.monitoring else (r.reason or r.state)
    p["pipeline_failures"] = int(r.pipeline_failures)
    p["updated"] = iso(r.updated)
    for key, value in r.health.items():
        p.setdefault(key, value)
    if r.activity is not None:
        a = dict(r.activity)
        if a.get("since") is not None:
            a["since"] = iso(a["since"])
        p["activity"] = a
    p["link"] = dict(r.link)
    if r.spool is not None:
        p["spool"] = dict(r.spool)
    if r.sinks is not None:
        p["sinks"] = dict(r.sinks)
    if r.worker is not None:
        w = r.worker
        p["worker"] = {"id": w.id, "since": iso(w.since), "first_t_host_ns": w.first_t_host_ns}
    return p


def last_will(device: str) -> bytes:
    """The MQTT last will on a device's status topic: retained "offline, not monitoring"."""
    return json.dumps(status_json(StatusRecord(device, "offline", False))).encode()


def to_json(record: Record) -> dict[str, Any]:
    """The MQTT payload (schema v1) of a record, JSON-ready."""
    if isinstance(record, EventRecord):
        return event_json(record)
    if isinstance(record, GapRecord):
        return gap_json(record)
    if isinstance(record, OnsetRecord):
        return onset_json(record)
    if isinstance(record, ActivityRecord):
        return activity_json(record)
    return live_json(record)


# -- line protocol --------------------------------------------------------------------------------
def event_line(r: EventRecord, patient: str) -> bytes:
    """One spasm event as a line-protocol point (tags: device, channel, type, patient)."""
    fields: dict[str, float | int | str | bool | None] = {
        "id": r.id,
        "duration_s": _num(r.duration_s),
        "peak_uv": _num(r.peak_uv, 2),
        "mean_uv": _num(r.mean_uv, 2),
        "relative_amplitude": _num(r.relative_amplitude, 2),
        "confidence": _num(r.confidence),
        "frequency_hz": _num(r.frequency_hz, 2),
        "rise_s": _num(r.rise_s),
        "context": r.context,
        "clipped": r.clipped,
        "artifact_suspect": True if r.artifact_suspect else None,  # only when set
    }
    tags = {"device": r.device, "channel": r.channel, "type": r.type, "patient": patient}
    return lineproto.encode_point(
        "spasm_event", tags, {k: v for k, v in fields.items() if v is not None}, ms_ns(r.t_onset)
    )


def gap_line(r: GapRecord, patient: str) -> bytes:
    tags = {"device": r.device, "cause": r.cause, "domain": r.domain, "patient": patient}
    fields: dict[str, float | int | str | bool] = {"id": r.id, "samples_missing": int(r.samples_missing)}
    duration = _num(max(0.0, r.t_end - r.t_start))
    if duration is not None:
        fields["duration_s"] = duration
    return lineproto.encode_point("gap", tags, fields, ms_ns(r.t_start))


def activity_line(r: ActivityRecord, patient: str) -> bytes:
    """The ``activity`` point the dashboard reads (docs/influx-schema.md): tags device, context,
    patient; fields duration_s, id, declared, suppressed; timestamp the span's start."""
    fields: dict[str, float | int | str | bool] = {
        "id": r.id,
        "duration_s": _num(max(0.0, r.t_end - r.t_start)) or 0.0,
        "declared": r.declared,
        "suppressed": int(r.suppressed),
    }
    tags = {"device": r.device, "context": r.kind, "patient": patient}
    return lineproto.encode_point("activity", tags, fields, ms_ns(r.t_start))


def to_line(record: Record, patient: str) -> bytes:
    """The stored point of a record; b"" for records that are not stored (onsets, live)."""
    if isinstance(record, EventRecord):
        return event_line(record, patient)
    if isinstance(record, GapRecord):
        return gap_line(record, patient)
    if isinstance(record, ActivityRecord):
        return activity_line(record, patient)
    return b""  # onsets are live alerts (the completed event is stored), live is for dashboards


def status_line(r: StatusRecord, patient: str) -> bytes:
    """The ``device_health`` point of a status, timed like its MQTT payload's ``updated``."""
    h = {**r.health, "spool_bytes": r.spool_bytes, "monitoring": r.monitoring}
    return health_line(r.device, patient, h, r.updated if r.updated is not None else 0.0)


def health_line(device: str, patient: str, h: Mapping[str, Any], t: float) -> bytes:
    """The ``device_health`` point of a status (docs/influx-schema.md)."""
    fields: dict[str, float | int | str | bool] = {}
    # All numeric health fields are floats: InfluxDB fixes a field's type per shard, so one type
    # for all of them keeps a later change (say battery_pct 87 -> 87.5) from being refused.
    for key in (
        "battery_pct",
        "battery_mv",
        "loss_pct",
        "timestamp_quality_ms",
        "clock_drift_ppm",
        "spool_bytes",
    ):
        if isinstance(h.get(key), (int, float)):
            fields[key] = float(h[key])
    fields["monitoring"] = bool(h.get("monitoring", False))
    for label, ok in (h.get("contact") or {}).items():
        fields[f"contact_{label}"] = bool(ok)
    return lineproto.encode_point(
        "device_health", {"device": device, "patient": patient}, fields, int(t * 1e9)
    )
