"""Typed records: what a device session produces, in numbers, for the encoders.

The session (``ingest.stream.session``) emits these; ``ingest.outputs.encoders`` turns each into
an MQTT JSON payload (docs/schemas/) and a line-protocol point (docs/influx-schema.md). Times are
UTC seconds as floats (the clock model's output), counters are device sample counters: nothing
here is text, so no encoder ever parses a time back from a string.

Ids are stable: UUIDv5 of (device, boot, detector key) for onsets and events, of (device, boot,
domain, first missing counter, cause) for gaps. The same spasm seen twice (a replay, a central
worker, ``neurospasm detect`` on the capture, a re-delivery after a crash) gets the same id, so
consumers can dedupe.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "EVENT_NAMESPACE",
    "ActivityRecord",
    "EventRecord",
    "GapRecord",
    "LiveRecord",
    "OnsetRecord",
    "Record",
    "StatusRecord",
    "WorkerInfo",
    "activity_id",
    "event_id",
    "gap_id",
]

#: The namespace of every id we mint (unchanged since schema v1: ids stay comparable).
EVENT_NAMESPACE = uuid.UUID("6f1c1f3e-7f0b-4b7e-9a43-2f0e0d9c5a11")

GapCause = Literal[
    "lost_frames", "disconnect", "reboot", "lead_off", "saturation", "gateway_restart", "pipeline_restart"
]


def event_id(device: str, boot_id: int, key: str) -> str:
    """The id of an onset or event: the same detector key on the same boot, the same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{device}/{boot_id:08x}/{key}"))


def gap_id(device: str, boot_id: int, domain: str, start_counter: int, cause: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{device}/{boot_id:08x}/gap/{domain}/{start_counter}/{cause}"))


def activity_id(device: str, boot_id: int, kind: str, start_counter: int, declared: bool) -> str:
    """The id of an activity span: same device, boot, kind, first counter and origin, same id."""
    origin = "declared" if declared else "detected"
    return str(
        uuid.uuid5(EVENT_NAMESPACE, f"{device}/{boot_id:08x}/activity/{kind}/{start_counter}/{origin}")
    )


@dataclass(frozen=True, slots=True)
class OnsetRecord:
    """A contraction just started (the live alert); its completed event follows with the same id."""

    id: str
    device: str
    boot_id: int
    channel: str
    t_onset: float
    amplitude_uv: float | None
    baseline_uv: float | None
    #: "unsynchronised" while the host wall clock cannot be trusted (``ingest.stream.clock.HostClock``).
    time_quality: str | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A completed spasm event."""

    id: str
    device: str
    boot_id: int
    type: str
    channel: str
    t_onset: float
    t_offset: float
    duration_s: float | None
    peak_uv: float | None
    mean_uv: float | None
    baseline_uv: float | None
    relative_amplitude: float | None
    frequency_hz: float | None
    confidence: float | None
    detector_version: str
    config_hash: str
    #: What the wearer was doing (``rest`` or an activity: ``detectors.activity``); schema v2.
    context: str = "rest"
    #: The contraction touched the amplifier's rails (one event, its amplitude a lower bound).
    clipped: bool = False
    #: Onset rise time (s): reflex spasms rise in tens of ms, voluntary force over hundreds.
    rise_s: float | None = None
    #: Found while the electrode was coming loose or settling (``SpasmEvent.artifact_suspect``).
    artifact_suspect: bool = False
    #: "unsynchronised" while the host wall clock cannot be trusted (``ingest.stream.clock.HostClock``).
    time_quality: str | None = None


@dataclass(frozen=True, slots=True)
class GapRecord:
    """A stretch of time without valid data (lost frames, a disconnect, a reboot, lead-off)."""

    id: str
    device: str
    boot_id: int
    domain: str
    cause: GapCause
    start_counter: int
    samples_missing: int
    t_start: float
    t_end: float
    #: Set for per-channel gaps (lead-off, saturation); None for the whole stream.
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class LiveRecord:
    """One downsampled envelope sample of every channel, for live dashboards (QoS 0)."""

    device: str
    t: float
    envelope_uv: dict[str, float]


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    """A finished period of voluntary activity (``detectors.events.ActivitySpan``) or of a declared
    exercise/physiotherapy session (``declared``), so "walked 40 min" is stored beside the counts."""

    id: str
    device: str
    boot_id: int
    kind: str
    domain: str
    start_counter: int
    t_start: float
    t_end: float
    declared: bool = False
    #: EMG bursts inside the span classed voluntary (not published as spasms).
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """Who detects for a device, and since when (a central worker's status, docs/scaling.md): a
    new worker's detector starts afresh, so consumers can see every handover."""

    id: str
    since: float
    #: Host time (ns) of the first link record this worker fed to its session, if any.
    first_t_host_ns: int | None


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """A device's retained status (docs/schemas/status.v1.json), built by the gateway's runner
    and by the central worker alike and encoded once (``ingest.outputs.encoders.status_json`` for
    MQTT, ``status_line`` for the ``device_health`` point).

    ``updated`` is None only for the last will (``{state: offline, monitoring: false}``, written
    before any connection): then nothing else is said. The nested tables (``health`` is the
    session's ``DeviceSession.health()``, ``link``, ``spool``, ``sinks``) are JSON-ready numbers;
    ``activity["since"]`` is UTC seconds, formatted by the encoder."""

    device: str
    state: str
    monitoring: bool
    updated: float | None = None
    #: Why monitoring is off (None while monitoring).
    reason: str | None = None
    #: Failures inside the device's pipeline caught and restarted by the supervisor.
    pipeline_failures: int = 0
    health: Mapping[str, Any] = field(default_factory=dict)
    activity: Mapping[str, Any] | None = None
    link: Mapping[str, Any] = field(default_factory=dict)
    spool: Mapping[str, Any] | None = None
    sinks: Mapping[str, Any] | None = None
    worker: WorkerInfo | None = None
    #: Bytes in the durable spool (the health point's ``spool_bytes``; None: not known here).
    spool_bytes: int | None = None


Record = OnsetRecord | EventRecord | GapRecord | LiveRecord | ActivityRecord
