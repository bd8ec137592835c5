"""Device link bytes over MQTT, for detection by central workers (docs/scaling.md).

A gateway with ``[scaling] publish_frames = true`` publishes what each device link delivered,
exactly as it arrived, on ``{prefix}/{site}/{patient}/{device}/frames``. A payload is a batch of
about 100 ms of capture records, the very encoding of a ``.nsc`` capture's record section
(``ingest.files.recording``)::

    repeated:  u64 t_host_ns | u8 kind | u32 length | length bytes     (little-endian)
               kind 0 DATA  one transport chunk as received, t_host_ns its host receive time
                    1 DOWN  the link broke (length 0): the session's ``on_disconnect``
                    2 UP    the link is open again (length 0): a new wire decoder

Raw bytes, not decoded frames, because the ``DeviceSession`` on the worker must see exactly what
the gateway's would: the same chunks with the same host times give the same clock fit, the same
gaps and the same event ids (``FrameFeeder`` feeds them to the shared ``DecodeLoop``). Bytes are
also what a recording keeps, so a frames topic can be captured to a file and replayed with
``neurospasm replay``.

Delivery is QoS 1, at least once: a batch can arrive twice. Feeding its bytes twice would not be
harmless, since a frame split across batches would be garbled by the repeat, so ``FrameFeeder``
drops exact repeats of any of the last ``DEDUP_WINDOW`` batches (two different batches never have
equal bytes: their host times differ). Frames repeated any other way are dropped by the session,
by device counter, as on the gateway.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ingest.outputs import payloads
from ingest.stream.pipeline import DATA, DOWN, UP, DecodeLoop, LinkRecord
from ingest.stream.session import DeviceSession

__all__ = [
    "ANNOUNCE_SCHEMA",
    "CLAIM_SCHEMA",
    "FrameBatcher",
    "FrameFeeder",
    "FramesError",
    "announce_payload",
    "encode_records",
    "iter_records",
]

ANNOUNCE_SCHEMA = "neurospasm.announce/1"
CLAIM_SCHEMA = "neurospasm.claim/1"
#: A batch is published when its oldest chunk is this old (or on a link change).
BATCH_S = 0.1
#: A batch is published early past this size, far below MQTT's and the spool's record limits.
BATCH_MAX_BYTES = 128 * 1024
#: One record's header: the capture record section's (``ingest.files.recording``), byte for byte.
_RECORD = struct.Struct("<QBI")
#: Batches remembered to drop redeliveries (MQTT resends at most the unacknowledged in-flight ones).
DEDUP_WINDOW = 256


class FramesError(ValueError):
    """A frames payload is malformed; the message names the byte offset."""


def encode_records(records: list[tuple[int, int, bytes]]) -> bytes:
    """(t_host_ns, kind, data) records to one payload."""
    return b"".join(_RECORD.pack(t, k, len(d)) + d for t, k, d in records)


def iter_records(payload: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(t_host_ns, kind, data) of each record; FramesError at the first malformed byte offset."""
    pos, size, end = 0, _RECORD.size, len(payload)
    while pos < end:
        if pos + size > end:
            raise FramesError(f"frames payload: truncated record header at byte offset {pos}")
        t_ns, kind, n = _RECORD.unpack_from(payload, pos)
        if kind not in (DATA, DOWN, UP):
            raise FramesError(f"frames payload: unknown record kind {kind} at byte offset {pos + 8}")
        if pos + size + n > end:
            raise FramesError(f"frames payload: record of {n} bytes at byte offset {pos} overruns it")
        yield t_ns, kind, payload[pos + size : pos + size + n]
        pos += size + n


@dataclass
class FrameBatcher:
    """Gateway side: collects one device's chunks and link changes, hands out ~100 ms batches.

    ``publish(payload)`` is called with each finished batch (the gateway spools it as one MQTT
    record). The runner calls ``chunk`` for every transport chunk and ``link`` when the link
    opens or drops; ``flush_due`` from housekeeping publishes a batch a quiet link left behind.
    """

    publish: Callable[[bytes], None]
    batch_s: float = BATCH_S
    max_bytes: int = BATCH_MAX_BYTES
    batches: int = 0
    _records: list[tuple[int, int, bytes]] = field(default_factory=list)
    _size: int = 0
    _since: float = 0.0

    def _add(self, t_host: float, kind: int, data: bytes) -> None:
        if not self._records:
            self._since = time.monotonic()
        self._records.append((round(t_host * 1e9), kind, data))
        self._size += _RECORD.size + len(data)

    def chunk(self, t_host: float, data: bytes) -> None:
        self._add(t_host, DATA, data)
        if self._size >= self.max_bytes or time.monotonic() - self._since >= self.batch_s:
            self.flush()

    def link(self, t_host: float, up: bool) -> None:
        """Link changes are published at once: a worker learns of a disconnect without delay."""
        self._add(t_host, UP if up else DOWN, b"")
        self.flush()

    def flush_due(self) -> None:
        if self._records and time.monotonic() - self._since >= self.batch_s:
            self.flush()

    def flush(self) -> None:
        if not self._records:
            return
        payload = encode_records(self._records)
        self._records.clear()
        self._size = 0
        self.batches += 1
        self.publish(payload)


@dataclass
class FrameFeeder:
    """Worker side: the frames topic as a source of link records for the shared ``DecodeLoop``.

    Drops redelivered batches, checks each batch whole before using any of it, and hands its
    records to ``pipeline`` (``ingest.stream.pipeline``), the very decode loop the gateway runs:
    a new decoder at every UP and DOWN, the session's ``on_disconnect`` at every DOWN, each
    chunk's frames with that chunk's host time, error counts kept across link changes.
    """

    pipeline: DecodeLoop
    batches: int = 0
    records: int = 0
    duplicates: int = 0
    first_t_host_ns: int | None = None
    last_t_host_ns: int | None = None
    _seen: deque[bytes] = field(default_factory=lambda: deque(maxlen=DEDUP_WINDOW))
    _seen_set: set[bytes] = field(default_factory=set)

    @classmethod
    def for_session(cls, session: DeviceSession, kind: str = "neurospasm") -> FrameFeeder:
        return cls(DecodeLoop(session, kind))

    @property
    def session(self) -> DeviceSession:
        return self.pipeline.session

    @property
    def decode_errors(self) -> int:
        """Bad frames over the device's whole stream here (every link connection)."""
        return self.pipeline.bad_frames

    def feed(self, payload: bytes) -> None:
        """Process one batch. Raises FramesError on a malformed payload, before using any of it."""
        digest = hashlib.blake2b(payload, digest_size=16).digest()
        if digest in self._seen_set:
            self.duplicates += 1
            return
        records = list(iter_records(payload))
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(digest)
        self._seen_set.add(digest)
        self.batches += 1
        feed = self.pipeline.feed
        for t_ns, kind, data in records:
            self.records += 1
            if self.first_t_host_ns is None:
                self.first_t_host_ns = t_ns
            self.last_t_host_ns = t_ns
            feed(LinkRecord(t_ns / 1e9, kind, data))


def announce_payload(
    *,
    site: str,
    patient: str,
    device: str,
    boot_id: int | None,
    frames_topic: str,
    state: str,
    interval_s: float,
    detect_locally: bool,
) -> bytes:
    """What a gateway says about one device every ``announce_interval_s`` (docs/scaling.md)."""
    doc: dict[str, Any] = {
        "schema": ANNOUNCE_SCHEMA,
        "site": site,
        "patient": patient,
        "device": device,
        "boot": f"{boot_id:08x}" if boot_id is not None else None,
        "frames": frames_topic,
        "state": state,
        "interval_s": interval_s,
        # A gateway that detects itself owns the device's outputs: workers leave it alone.
        "detect_locally": detect_locally,
        "sent": payloads.iso(time.time()),
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
