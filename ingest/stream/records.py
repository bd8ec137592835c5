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
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EVENT_NAMESPACE",
    "ActivityRecord",
    "EventRecord",
    "GapRecord",
    "LiveRecord",
    "OnsetRecord",
    "Record",
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


Record = OnsetRecord | EventRecord | GapRecord | LiveRecord | ActivityRecord
