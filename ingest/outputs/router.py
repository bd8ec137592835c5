"""Router: session outputs -> encoded sink records -> durable spool -> delivery wake-up.

Typed records are encoded here, once per target, by ``ingest.outputs.encoders`` (MQTT JSON for
the device's MQTT sink, line protocol for InfluxDB and local files); bulk series in columns.

Clinical records (onsets, events, gaps, status) are spooled one by one the moment they exist,
so a kill -9 right after detection still delivers them. Bulk series (envelope, accelerometer,
raw EMG) are encoded in columns and spooled in chunks every ``series_flush_s``: at most that
much bulk data is only in memory, and the spool sees a few large appends instead of thousands
of tiny ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ingest.outputs import encoders, lineproto, payloads
from ingest.outputs.sinks.mqtt import encode_message
from ingest.outputs.spool import MAGIC, RECORD_OVERHEAD, Priority, Spool
from ingest.stream.records import StatusRecord
from ingest.stream.session import Output, SeriesBlock

_DECIMALS = {"uv": 2, "x": 4, "y": 4, "z": 4}
_SERIES_PRIORITY = {"envelope": Priority.BULK, "acc": Priority.BULK, "raw": Priority.RAW}


@dataclass
class _SeriesBuffer:
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    since: float = 0.0


class Router:
    """Encodes outputs for every enabled sink and spools them.

    Parameters:
        spool: the pipeline's spool.
        topics: device id -> topic builder (MQTT enabled) ; empty when MQTT is off.
        series_sinks: names of the line-protocol sinks ("influx", "local").
        patient: pseudonymous patient id for tags.
        notify: called with a sink name after records were spooled for it.
        publish_live: best-effort live publisher (topic, payload) for QoS 0 dashboards.
    """

    def __init__(
        self,
        spool: Spool,
        *,
        patient: str,
        series_sinks: list[str],
        notify: Callable[[str], None],
        mqtt_topics: dict[str, payloads.Topics] | None = None,
        publish_live: Callable[[str, str, bytes], None] | None = None,
        raw_sinks: list[str] | None = None,
        series_flush_s: float = 0.5,
        series_max_bytes: int = 256 * 1024,
        observers: list[Callable[[str, Output], None]] | None = None,
    ) -> None:
        self.spool = spool
        self.patient = patient
        self.series_sinks = series_sinks
        self.raw_sinks = set(raw_sinks or [])
        self.mqtt_topics = mqtt_topics or {}
        self._notify = notify
        self._publish_live = publish_live
        self.series_flush_s = series_flush_s
        self.series_max_bytes = series_max_bytes
        self._buffers: dict[tuple[str, Priority], _SeriesBuffer] = {}
        self.observers = observers or []
        self.rejected = 0  # appends the spool quota refused (counted in spool stats too)
        self.live_dropped = 0

    @staticmethod
    def mqtt_sink_name(device: str) -> str:
        return f"mqtt.{device}"

    def _append(self, sink: str, priority: Priority, record: bytes) -> None:
        if not self.spool.append(sink, priority, record):
            self.rejected += 1
        self._notify(sink)

    def emitter(self, device: str) -> Callable[[Output], None]:
        """The ``emit`` callback for one device's session."""

        def emit(out: Output) -> None:
            self.route(device, out)

        return emit

    def route(self, device: str, out: Output) -> None:
        for obs in self.observers:
            obs(device, out)
        kind = out.kind
        record = out.record
        if kind in ("onset", "event", "gap", "activity"):
            assert record is not None
            topics = self.mqtt_topics.get(device)
            if topics is not None:
                self._append(
                    self.mqtt_sink_name(device),
                    Priority.CLINICAL,
                    encode_message(
                        topics(encoders.topic_leaf(record)),
                        payloads.dumps(encoders.to_json(record)),
                        payloads.QOS_CLINICAL,
                        False,
                    ),
                )
            line = encoders.to_line(record, self.patient)  # b"" for onsets: the event is stored
            if line:
                for sink in self.series_sinks:
                    self._append(sink, Priority.CLINICAL, line)
        elif kind == "live":
            topics = self.mqtt_topics.get(device)
            if topics is not None and self._publish_live is not None and record is not None:
                self._publish_live(device, topics("live"), payloads.dumps(encoders.to_json(record)))
        elif kind in _SERIES_PRIORITY:
            assert out.series is not None
            prio = _SERIES_PRIORITY[kind]
            for sink in self.series_sinks:
                if kind == "raw" and sink not in self.raw_sinks:
                    continue
                self._buffer(sink, prio, out.series)

    def frames(self, device: str, payload: bytes) -> None:
        """One batch of the device's link bytes for central workers (``ingest.stream.frames``).

        QoS 1 on ``.../frames``, spooled as RAW: under a full disk quota it goes first, before
        any envelope or clinical record.
        """
        topics = self.mqtt_topics.get(device)
        if topics is not None:
            self._append(
                self.mqtt_sink_name(device),
                Priority.RAW,
                encode_message(topics("frames"), payload, payloads.QOS_CLINICAL, False),
            )

    def status(self, record: StatusRecord, *, mqtt: bool = True) -> None:
        """Retained device status to MQTT (unless ``mqtt`` is false: a worker owns the topic),
        its health point to the series sinks: one record, encoded once for each."""
        device = record.device
        topics = self.mqtt_topics.get(device)
        if topics is not None and mqtt:
            payload = payloads.dumps(encoders.status_json(record))
            self._append(
                self.mqtt_sink_name(device),
                Priority.CLINICAL,
                encode_message(topics("status"), payload, payloads.QOS_CLINICAL, True),
            )
        line = encoders.status_line(record, self.patient)
        for sink in self.series_sinks:
            self._append(sink, Priority.CLINICAL, line)

    def _buffer(self, sink: str, prio: Priority, block: SeriesBlock) -> None:
        tags = dict(block.tags, patient=self.patient)
        # Fixed-point: 0.01 uV and 0.1 mg are far below the sensor's noise, and ~7x cheaper to format.
        data = lineproto.encode_columns(
            block.measurement, tags, block.fields, np.asarray(block.t_ns), decimals=_DECIMALS
        )
        if not data:
            return
        buf = self._buffers.setdefault((sink, prio), _SeriesBuffer(since=time.monotonic()))
        if not buf.chunks:
            buf.since = time.monotonic()
        buf.chunks.append(data)
        buf.size += len(data)
        if buf.size >= self.series_max_bytes:
            self._flush_one(sink, prio, buf)

    def _flush_one(self, sink: str, prio: Priority, buf: _SeriesBuffer) -> None:
        if not buf.chunks:
            return
        data = b"".join(buf.chunks)
        buf.chunks.clear()
        buf.size = 0
        # One spool record must fit one segment: cut oversized chunks at line boundaries.
        limit = self.spool.segment_bytes - len(MAGIC) - RECORD_OVERHEAD
        while len(data) > limit:
            cut = data.rfind(b"\n", 0, limit) + 1
            if cut <= 0:
                raise ValueError(f"a single line exceeds the spool's record limit of {limit} bytes")
            self._append(sink, prio, data[:cut])
            data = data[cut:]
        if data:
            self._append(sink, prio, data)

    def flush_series(self, force: bool = False) -> None:
        """Spool buffered series older than ``series_flush_s`` (all of them with ``force``)."""
        now = time.monotonic()
        for (sink, prio), buf in self._buffers.items():
            if buf.chunks and (force or now - buf.since >= self.series_flush_s):
                self._flush_one(sink, prio, buf)
