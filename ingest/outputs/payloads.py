"""MQTT topics and JSON payloads (schema v1), documented in docs/mqtt.md and docs/schemas/.

Topic scheme::

    {prefix}/{site}/{patient}/{device}/onsets   QoS 1   a contraction just started (live alert)
    {prefix}/{site}/{patient}/{device}/events   QoS 1   a completed spasm event
    {prefix}/{site}/{patient}/{device}/gaps     QoS 1   a stretch of time without valid data
    {prefix}/{site}/{patient}/{device}/status   QoS 1, retained, last will "offline"
    {prefix}/{site}/{patient}/{device}/live     QoS 0   downsampled EMG envelope, all channels

``site``, ``patient`` and ``device`` are pseudonymous identifiers from the configuration, never
names. The default prefix ``neurospasm/v1`` carries the schema version: a breaking change of any
payload moves to ``v2`` topics, so old dashboards keep working on old topics. The payloads
themselves are built from typed records by ``ingest.outputs.encoders``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Ids are minted with the typed records; re-exported here, where they lived before schema v1's encoders moved.
from ingest.stream.records import EVENT_NAMESPACE, event_id

__all__ = ["EVENT_NAMESPACE", "QOS_CLINICAL", "QOS_LIVE", "Topics", "dumps", "event_id", "iso"]

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


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
