"""MQTT topics and JSON payloads (schema v1), documented in docs/mqtt.md and docs/schemas/.

Topic scheme::

    {prefix}/{site}/{patient}/{device}/onsets   QoS 1   a contraction just started (live alert)
    {prefix}/{site}/{patient}/{device}/events   QoS 1   a completed spasm event
    {prefix}/{site}/{patient}/{device}/gaps     QoS 1   a stretch of time without valid data
    {prefix}/{site}/{patient}/{device}/status   QoS 1, retained, last will "offline"
    {prefix}/{site}/{patient}/{device}/live     QoS 0   downsampled envelope + accelerometer

``site``, ``patient`` and ``device`` are pseudonymous identifiers from the configuration, never
names. The default prefix ``neurospasm/v1`` carries the schema version: a breaking change of any
payload moves to ``v2`` topics, so old dashboards keep working on old topics.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from detectors.events import Onset, SpasmEvent

SCHEMA_VERSION = 1
#: Event ids are UUIDv5 of (device, boot, detector key) in this namespace: the same spasm seen
#: twice (a replay, a re-delivery after a crash) gets the same id, so consumers can dedupe.
EVENT_NAMESPACE = uuid.UUID("6f1c1f3e-7f0b-4b7e-9a43-2f0e0d9c5a11")

QOS_CLINICAL = 1
QOS_LIVE = 0


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    site: str
    patient: str
    device: str

    def __call__(self, kind: str) -> str:
        return f"{self.prefix}/{self.site}/{self.patient}/{self.device}/{kind}"


def iso(t: float) -> str:
    """UTC seconds to ISO-8601 with milliseconds and a Z."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(device: str, boot_id: int, key: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{device}/{boot_id:08x}/{key}"))


def _num(x: float | None, nd: int = 3) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def onset_payload(o: Onset, *, device: str, boot_id: int, t_onset: float) -> dict[str, Any]:
    return {
        "schema": "neurospasm.onset/1",
        "id": event_id(device, boot_id, o.key),
        "device": device,
        "channel": o.channel,
        "onset": iso(t_onset),
        "amplitude_uv": _num(o.amplitude_uv, 2),
        "baseline_uv": _num(o.baseline_uv, 2),
    }


def event_payload(
    e: SpasmEvent, *, device: str, boot_id: int, t_onset: float, t_offset: float
) -> dict[str, Any]:
    return {
        "schema": "neurospasm.event/2",
        "id": event_id(device, boot_id, e.key),
        "device": device,
        "type": e.type,
        "channel": e.channel,
        "onset": iso(t_onset),
        "offset": iso(t_offset),
        "duration_s": _num(e.duration_s),
        "peak_uv": _num(e.peak_uv, 2),
        "mean_uv": _num(e.mean_uv, 2),
        "baseline_uv": _num(e.baseline_uv, 2),
        "relative_amplitude": _num(e.relative_amplitude, 2),
        "frequency_hz": _num(e.frequency_hz, 2),
        "confidence": _num(e.confidence),
        "context": e.context,
        "clipped": e.clipped,
        "rise_s": _num(e.rise_s),
        "detector": {"version": e.detector_version, "config_hash": e.config_hash},
    }


def gap_payload(
    *,
    device: str,
    boot_id: int,
    domain: str,
    cause: str,
    start_counter: int,
    samples_missing: int,
    t_start: float,
    t_end: float,
) -> dict[str, Any]:
    return {
        "schema": "neurospasm.gap/1",
        "id": str(
            uuid.uuid5(EVENT_NAMESPACE, f"{device}/{boot_id:08x}/gap/{domain}/{start_counter}/{cause}")
        ),
        "device": device,
        "domain": domain,
        "cause": cause,
        "start": iso(t_start),
        "end": iso(t_end),
        "duration_s": _num(max(0.0, t_end - t_start)),
        "samples_missing": int(samples_missing),
    }
