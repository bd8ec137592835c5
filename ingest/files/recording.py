"""Recordings: lossless captures of a device's byte stream, and EDF+ export of what they contain.

A *capture* (``.nsc``) keeps every byte the device sent, exactly as it arrived, with the host's
receive time, plus the moments the link went down and came back. Replaying it
(``neurospasm replay``) therefore reproduces the gateway's view bit for bit, faults included: the
same frames, the same gaps with the same causes, the same clock-model input, the same event ids.
Format (all integers little-endian; docs/recordings.md)::

    magic      8 bytes  b"NSCAP\\r\\n\\x1a"   (the \\r\\n and ^Z catch text-mode mangling, as PNG's)
    version    u16      2 (1 is still read)
    header_len u32
    header     JSON object (UTF-8): {"format": "neurospasm.capture/2", "device": ..., "created": ...}
    records    repeated (v2):  b"\\xa5NSR" sync | u64 t_host_ns | u64 t_mono_ns | u8 kind | u32 length |
                               u32 crc32 (zlib, of t_host_ns .. length and the data) | length bytes
               (v1):           u64 t_host_ns | u8 kind | u32 length | length bytes
               kind 0 DATA  bytes received from the device (one transport chunk)
                    1 DOWN  the link broke (length 0)
                    2 UP    the link is open again (length 0)
                    3 WRITE bytes the host sent to the device (commands)

``t_mono_ns`` is the host's monotonic clock when the record was taken (0: not known), so a
replay sees host wall-clock steps exactly as the live gateway did (``ingest.stream.clock.HostClock``).
A v2 record that fails its checks (sync, kind, length, CRC) is skipped: the reader resynchronises
at the next sync marker that starts a valid record, so one flipped bit loses one record, not the
night (``CaptureReader.corrupt`` lists the regions skipped). A capture cut short by a crash or a
full disk is readable up to its last complete record (``CaptureReader.truncated`` says so). A v1
capture has no resynchronisation: damage there is an error naming the byte offset.

EDF+ export (``neurospasm export-edf``, ``ingest.commands.record``) decodes a capture with the
shared decode loop (``ingest.stream.pipeline``) and the very ``DeviceSession`` the gateway runs,
writes EMG in microvolts and the accelerometer in g at their own rates, and puts spasm events
and gaps in the EDF+ annotation channel. Samples are written as
the device's own ADC codes with an exact physical scale, so the export is lossless too.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

import numpy as np

from ingest.files import MAGIC, is_capture  # (is_capture: imported from here by older callers)
from ingest.files.readers import NO_DATA_AFTER_LAST, NO_DATA_BEFORE_FIRST
from ingest.sources.base import Chunk, Transport, TransportError
from ingest.stream.pipeline import DecodeLoop, run_records
from ingest.stream.records import EventRecord, GapRecord
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import AccFrame, EmgFrame, Frame, InfoFrame

if TYPE_CHECKING:  # annotations only: reading a capture (``neurospasm detect``) needs no pydantic
    from ingest.config import DeviceSection

log = logging.getLogger(__name__)

__all__ = [
    "CAPTURE_FORMAT",
    "MAGIC",
    "RECORD_HEADER_BYTES",
    "CaptureError",
    "CaptureReader",
    "CaptureRecord",
    "CaptureWriter",
    "CapturingTransport",
    "capturing_factory",
    "decode_records",
    "export_edf",
    "is_capture",
]

VERSION = 2
VERSIONS = (1, 2)
CAPTURE_FORMAT = "neurospasm.capture/2"
_PREAMBLE = struct.Struct("<8sHI")
_RECORD = struct.Struct("<QBI")  # v1
SYNC = b"\xa5NSR"
_RECORD2 = struct.Struct("<4sQQBII")  # v2: sync, t_host_ns, t_mono_ns, kind, length, crc32
_CRC_FROM = 4  # the CRC covers t_host_ns .. length (not the sync, not itself) and the data
_CRC_TO = _RECORD2.size - 4
#: Bytes in front of each v2 record's data.
RECORD_HEADER_BYTES = _RECORD2.size
DATA, DOWN, UP, WRITE = 0, 1, 2, 3
KIND_NAMES = {DATA: "data", DOWN: "down", UP: "up", WRITE: "write"}
#: Longest single record we accept on reading: far above any transport chunk, far below "corrupt".
MAX_RECORD_BYTES = 64 << 20


class CaptureError(ValueError):
    """A capture file is unreadable or malformed; the message names the file and byte offset."""


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    t_host: float  # UTC seconds
    kind: int
    data: bytes
    offset: int  # byte offset of the record in the file (for error messages and tools)
    t_mono: float | None = None  # host monotonic seconds (v2 captures), None if not known

    @property
    def t_host_ns(self) -> int:
        return round(self.t_host * 1e9)


class CaptureWriter:
    """Append records to a capture. ``with CaptureWriter(path, device="w1") as w: w.data(t, b)``.

    Writes go through a buffered file flushed at most every ``flush_s`` seconds, so a capture of
    a long session costs one syscall per flush, and at most that much is lost on a crash.
    """

    def __init__(self, path: str | Path, *, flush_s: float = 1.0, **meta: Any) -> None:
        self.path = Path(path)
        self.meta = {"format": CAPTURE_FORMAT, "created": datetime.now(UTC).isoformat(), **meta}
        self.flush_s = flush_s
        self._f: IO[bytes] | None = None
        self._last_flush = 0.0
        self.records = 0
        self.bytes = 0

    def open(self) -> Self:
        header = json.dumps(self.meta, sort_keys=True).encode("utf-8")
        self._f = self.path.open("wb")
        self._f.write(_PREAMBLE.pack(MAGIC, VERSION, len(header)) + header)
        self._last_flush = time.monotonic()
        return self

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def write(self, t_host: float, kind: int, data: bytes = b"", t_mono: float | None = None) -> None:
        """One record; ``t_mono`` is the host monotonic time (None: taken now, for live links)."""
        if self._f is None:
            raise CaptureError(f"{self.path}: capture is not open for writing")
        mono_ns = round((time.monotonic() if t_mono is None else t_mono) * 1e9)
        head = _RECORD2.pack(SYNC, round(t_host * 1e9), max(0, mono_ns), kind, len(data), 0)
        crc = zlib.crc32(data, zlib.crc32(head[_CRC_FROM:_CRC_TO]))
        self._f.write(head[:_CRC_TO] + struct.pack("<I", crc))
        if data:
            self._f.write(data)
        self.records += 1
        self.bytes += len(data)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            self._f.flush()
            self._last_flush = now

    def data(self, t_host: float, data: bytes, t_mono: float | None = None) -> None:
        self.write(t_host, DATA, data, t_mono)

    def link(self, t_host: float, up: bool, t_mono: float | None = None) -> None:
        self.write(t_host, UP if up else DOWN, b"", t_mono)

    def host_write(self, t_host: float, data: bytes) -> None:
        self.write(t_host, WRITE, data)


class CaptureReader:
    """Read a capture: ``header`` (dict) and iteration over ``CaptureRecord``s in file order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._raw = self.path.read_bytes()
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot read capture: {exc.strerror or exc}") from None
        raw = self._raw
        if len(raw) < _PREAMBLE.size or raw[:8] != MAGIC:
            raise CaptureError(f"{self.path}: not a neurospasm capture (bad magic at byte offset 0)")
        _, version, hlen = _PREAMBLE.unpack_from(raw)
        if version not in VERSIONS:
            raise CaptureError(
                f"{self.path}: capture version {version} at byte offset 8; this reader knows "
                f"{', '.join(map(str, VERSIONS))}"
            )
        self.version = int(version)
        end = _PREAMBLE.size + hlen
        if end > len(raw):
            raise CaptureError(
                f"{self.path}: header of {hlen} bytes overruns the file at byte offset {_PREAMBLE.size}"
            )
        try:
            self.header: dict[str, Any] = json.loads(raw[_PREAMBLE.size : end].decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # (UTF-8 and JSON errors; nesting too deep)
            raise CaptureError(
                f"{self.path}: header JSON at byte offset {_PREAMBLE.size} is invalid: "
                f"{exc if isinstance(exc, ValueError) else 'nested too deeply'}"
            ) from None
        if not isinstance(self.header, dict):
            raise CaptureError(
                f"{self.path}: header at byte offset {_PREAMBLE.size} is JSON but not an object "
                f"({type(self.header).__name__})"
            )
        self._start = end
        #: byte offset of the first record (just after the header)
        self.body_offset = end
        #: Byte offset of an incomplete last record (the writer was killed mid-record), else None.
        self.truncated: int | None = None
        #: v2: damaged regions skipped by resynchronisation, as (byte offset, bytes skipped).
        self.corrupt: list[tuple[int, int]] = []

    def _record_v2(self, pos: int) -> CaptureRecord | None:
        """The v2 record starting at ``pos`` if every check passes, else None."""
        raw = self._raw
        size = _RECORD2.size
        if pos + size > len(raw) or raw[pos : pos + 4] != SYNC:
            return None
        _, t_ns, mono_ns, kind, n, crc = _RECORD2.unpack_from(raw, pos)
        if kind not in KIND_NAMES or n > MAX_RECORD_BYTES or pos + size + n > len(raw):
            return None
        data = raw[pos + size : pos + size + n]
        if zlib.crc32(data, zlib.crc32(raw[pos + _CRC_FROM : pos + _CRC_TO])) != crc:
            return None
        return CaptureRecord(t_ns / 1e9, kind, data, pos, mono_ns / 1e9 if mono_ns else None)

    def _iter_v2(self) -> Iterator[CaptureRecord]:
        raw = self._raw
        pos = self._start
        while pos < len(raw):
            rec = self._record_v2(pos)
            if rec is not None:
                yield rec
                pos += _RECORD2.size + len(rec.data)
                continue
            nxt = raw.find(SYNC, pos + 1)
            while nxt != -1 and self._record_v2(nxt) is None:
                nxt = raw.find(SYNC, nxt + 1)
            if nxt == -1:
                if pos + _RECORD2.size <= len(raw):
                    n = _RECORD2.unpack_from(raw, pos)[4]
                    if raw[pos : pos + 4] == SYNC and pos + _RECORD2.size + n == len(raw):
                        # Complete to the last byte, yet damaged: corruption, not a torn tail.
                        self.corrupt.append((pos, len(raw) - pos))
                        log.warning("%s: damaged last record at byte offset %d skipped", self.path, pos)
                        return
                # Nothing valid after it: the writer stopped mid-record (crash, full disk).
                self.truncated = pos
                return
            self.corrupt.append((pos, nxt - pos))
            log.warning(
                "%s: damaged record at byte offset %d: %d bytes skipped, resynchronised at byte offset %d",
                self.path, pos, nxt - pos, nxt,
            )  # fmt: skip
            pos = nxt

    def __iter__(self) -> Iterator[CaptureRecord]:
        if self.version >= 2:
            yield from self._iter_v2()
            return
        raw = self._raw
        pos = self._start
        size = _RECORD.size
        while pos < len(raw):
            if pos + size > len(raw):
                self.truncated = pos
                return
            t_ns, kind, n = _RECORD.unpack_from(raw, pos)
            if kind not in KIND_NAMES:
                raise CaptureError(f"{self.path}: unknown record kind {kind} at byte offset {pos + 8}")
            if n > MAX_RECORD_BYTES:
                raise CaptureError(f"{self.path}: record of {n} bytes at byte offset {pos} is implausible")
            if pos + size + n > len(raw):
                self.truncated = pos
                return
            yield CaptureRecord(t_ns / 1e9, kind, raw[pos + size : pos + size + n], pos)
            pos += size + n

    def records(self) -> list[CaptureRecord]:
        return list(self)

    def nonempty_records(self) -> list[CaptureRecord]:
        """``records()``, or CaptureError when there is none: a capture with nothing after its
        header (or only bytes that are not records) has nothing to detect, replay or export."""
        recs = self.records()
        if not recs:
            raise CaptureError(
                f"{self.path}: no complete record after the header (byte offset {self.body_offset})"
                + ("" if self.truncated is None else ": the bytes after it are not capture records")
            )
        return recs

    @property
    def device(self) -> str | None:
        """The device id the header names (checked: a pseudonym), or None."""
        return self.source()[0]

    def source(self, device_given: bool = False) -> tuple[str | None, str, dict[str, Any]]:
        """(device id or None, device kind, vendor options) the header names, checked as a
        ``[[devices]]`` table's would be: a capture written by another tool (or edited) must not
        put a patient's name into every event and topic, nor crash the decoder it picks. Raises
        CaptureError naming the file and the header key. ``device_given``: the caller names the
        device itself (``--device``), so the header's id is neither read nor checked."""
        from ingest.pseudonyms import PSEUDONYM_PATTERN, is_pseudonym
        from ingest.wire.base import device_kinds
        from ingest.wire.kinds import decoder_options

        h = self.header
        dev = None if device_given else h.get("device")
        if dev in (None, ""):
            dev = None
        elif not isinstance(dev, str) or not is_pseudonym(dev):
            # (the value is not repeated: it may be a patient's name)
            raise CaptureError(
                f"{self.path}: header.device: not a pseudonymous device id ({PSEUDONYM_PATTERN}); "
                "pass --device to name it"
            )
        kind = h.get("kind") or "neurospasm"
        if not isinstance(kind, str) or kind not in device_kinds():
            raise CaptureError(
                f"{self.path}: header.kind: unknown device kind {kind!r} (known: {', '.join(device_kinds())})"
            )
        options = h.get("options") or {}
        if not isinstance(options, dict):
            raise CaptureError(f"{self.path}: header.options: must be a table of settings, got {options!r}")
        try:
            decoder_options(kind, options)
        except ValueError as exc:
            raise CaptureError(f"{self.path}: header.{exc}") from None
        return dev, kind, dict(options)


# -- capturing the gateway's own transport -------------------------------------------------------


@dataclass
class CapturingTransport(Transport):
    """Wraps another transport and writes everything it delivers to a capture.

    The gateway is unchanged: give it ``capturing_factory(default_factory, writer)`` as its
    transport factory, and the capture holds exactly the chunks (and host times) the pipeline saw.
    """

    inner: Transport | None = None
    writer: CaptureWriter | None = None

    async def _open(self) -> None:
        assert self.inner is not None and self.writer is not None
        await self.inner.__aenter__()
        self.writer.link(time.time(), up=True)
        self._up = True

    async def _close(self) -> None:
        assert self.inner is not None and self.writer is not None
        if getattr(self, "_up", False):
            # Closed without a transport error (the gateway's stale watchdog, shutdown): still a
            # link drop for the session, so the capture marks it and a replay does the same.
            self.writer.link(time.time(), up=False)
            self._up = False
        await self.inner.__aexit__(None, None, None)

    async def write(self, data: bytes, char_uuid: str | None = None) -> None:
        assert self.inner is not None and self.writer is not None
        self.writer.host_write(time.time(), data)
        await self.inner.write(data, char_uuid)

    async def read(self) -> Chunk:
        assert self.inner is not None and self.writer is not None
        try:
            chunk = await self.inner.read()
        except TransportError:
            self.writer.link(time.time(), up=False)
            self._up = False
            raise
        self.writer.data(chunk.t_host, chunk.data, getattr(chunk, "t_mono", None))
        return chunk


def capturing_factory(
    factory: Callable[[DeviceSection], Transport], writer: CaptureWriter
) -> Callable[[DeviceSection], Transport]:
    """A transport factory whose transports also write to ``writer`` (one device per capture)."""

    def make(dev: DeviceSection) -> Transport:
        return CapturingTransport(name=dev.id, inner=factory(dev), writer=writer)

    return make


# -- offline decode and EDF+ export --------------------------------------------------------------


@dataclass
class _Boot:
    info: InfoFrame
    emg: dict[int, np.ndarray] = field(default_factory=dict)  # counter -> int16 (n, ch)
    acc: dict[int, np.ndarray] = field(default_factory=dict)
    emg_t0: float | None = None  # host time of the first EMG sample of this boot
    acc_t0: float | None = None
    #: per stream: (counter end, host time) of the last block kept, to refuse implausible jumps
    ends: dict[str, tuple[int, float]] = field(default_factory=dict)
    dropped: int = 0

    def keep(self, stream: str, counter: int, n: int, rate: float, t_host: float) -> bool:
        """Whether a block is plausible: its counter no further ahead than host time allows (a
        corrupt counter must not make the export gigabytes of zeros; same rule as the session's
        ``implausible_jump``)."""
        last = self.ends.get(stream)
        if last is not None and counter > last[0]:
            elapsed = max(0.0, t_host - last[1])
            if (counter - last[0]) / rate > elapsed * 1.1 + 60.0:
                self.dropped += 1
                return False
        if last is None or counter + n > last[0]:
            self.ends[stream] = (counter + n, t_host)
        return True


@dataclass
class Decoded:
    """A capture decoded the gateway's way: per-boot sample blocks plus the session's outputs."""

    device: str
    boots: list[_Boot]
    events: list[dict[str, Any]]  # MQTT payloads (schema v1), for tools and tests
    gaps: list[dict[str, Any]]
    decode_errors: dict[str, int]
    #: The same events and gaps as typed records (numbers: what the EDF+ annotations are made of).
    records: list[Any] = field(default_factory=list)


def decode_records(
    records: Iterable[CaptureRecord],
    device: str,
    kind: str = "neurospasm",
    *,
    options: Mapping[str, Any] | None = None,
) -> Decoded:
    """Run the gateway's decode loop and ``DeviceSession`` over capture records, offline.

    ``options``: the device's vendor settings (a capture's header keeps them)."""
    outputs: list[Output] = []
    boots: list[_Boot] = []

    def keep(frame: Frame, t_host: float) -> None:
        if isinstance(frame, InfoFrame):
            if not boots or boots[-1].info.boot_id != frame.boot_id:
                boots.append(_Boot(frame))
        elif boots and isinstance(frame, EmgFrame) and frame.samples.shape[1] == boots[-1].info.n_channels:
            b = boots[-1]
            if not b.keep("emg", frame.counter, len(frame.samples), b.info.emg_rate_hz, t_host):
                return  # an implausible counter jump: corruption, not billions of samples
            b.emg.setdefault(frame.counter, np.array(frame.samples))
            if b.emg_t0 is None:
                b.emg_t0 = t_host - len(frame.samples) / b.info.emg_rate_hz
        elif boots and isinstance(frame, AccFrame) and boots[-1].info.acc_rate_hz:
            b = boots[-1]
            if not b.keep("acc", frame.counter, len(frame.samples), b.info.acc_rate_hz, t_host):
                return
            b.acc.setdefault(frame.counter, np.array(frame.samples))
            if b.acc_t0 is None and b.info.acc_rate_hz:
                b.acc_t0 = t_host - len(frame.samples) / b.info.acc_rate_hz

    loop = run_records(
        DecodeLoop(DeviceSession(device, outputs.append), kind, observe=keep, options=options), records
    )
    events = [o.payload for o in outputs if o.kind == "event" and o.payload is not None]
    gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload is not None]
    typed = [o.record for o in outputs if o.kind in ("event", "gap") and o.record is not None]
    return Decoded(device, boots, events, gaps, loop.decode_errors, typed)


def _place(blocks: dict[int, np.ndarray], base: int, c0: int, out: np.ndarray) -> None:
    for counter, block in blocks.items():
        i = base + (counter - c0)
        j = min(i + len(block), len(out))
        if i < 0 or j <= i:
            continue
        out[i:j] = block[: j - i]


def export_edf(decoded: Decoded, out: Path, source: str | Path | None = None) -> dict[str, Any]:
    """Write decoded signals, events and gaps as EDF+; returns a small summary for the CLI.
    ``source``: what was decoded, named by the error when there is nothing to export."""
    import pyedflib

    boots = [b for b in decoded.boots if b.emg]
    if not boots:
        raise CaptureError(
            f"{source or out}: nothing to export: the recording has no EMG data after an INFO frame"
        )
    info = boots[0].info
    emg_rate, acc_rate = info.emg_rate_hz, info.acc_rate_hz
    for b in boots[1:]:
        if (b.info.emg_rate_hz, b.info.acc_rate_hz, b.info.channel_labels) != (
            emg_rate,
            acc_rate,
            info.channel_labels,
        ):
            raise CaptureError(
                f"{out}: the device changed rates or channels after a reboot; EDF needs one layout"
            )
    t_start = boots[0].emg_t0
    assert t_start is not None
    # EDF's header time has whole seconds (EDF+ adds sub-seconds that few readers honour): start
    # the file on a whole second and let the first fraction be an annotated no-data stretch.
    t_file = math.floor(t_start)
    nch = info.n_channels
    # Place each boot's blocks: within a boot by sample counter (exact), between boots by time.
    emg_bases, acc_bases = [], []
    emg_end = acc_end = 0
    for b in boots:
        c0 = min(b.emg)
        base = max(emg_end, round(((b.emg_t0 or t_start) - t_file) * emg_rate))
        emg_bases.append((base, c0))
        emg_end = base + max(c + len(x) for c, x in b.emg.items()) - c0
        if b.acc and acc_rate:
            a0 = min(b.acc)
            abase = max(acc_end, round(((b.acc_t0 or t_start) - t_file) * acc_rate))
            acc_bases.append((abase, a0))
            acc_end = abase + max(c + len(x) for c, x in b.acc.items()) - a0
        else:
            acc_bases.append((0, 0))
    seconds = max(1, math.ceil(max(emg_end / emg_rate, acc_end / acc_rate if acc_rate else 0)))
    emg = np.zeros((seconds * emg_rate, nch), dtype=np.int16)
    acc = np.zeros((seconds * acc_rate, 3), dtype=np.int16) if acc_rate else None
    for b, (base, c0), (abase, a0) in zip(boots, emg_bases, acc_bases, strict=True):
        _place(b.emg, base, c0, emg)
        if acc is not None and b.acc:
            _place(b.acc, abase, a0, acc)

    headers: list[dict[str, Any]] = []
    for label in info.channel_labels:
        headers.append(_signal_header(label[:16], "uV", emg_rate, info.emg_scale_uv, "sEMG"))
    if acc is not None:
        for axis in "XYZ":
            headers.append(_signal_header(f"ACC {axis}", "g", acc_rate, info.acc_scale_g, "accelerometer"))
    writer = pyedflib.EdfWriter(str(out), len(headers), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(datetime.fromtimestamp(t_file, UTC).replace(tzinfo=None))
        writer.setEquipment(_edf_word(f"neurospasm_{decoded.device}"))
        writer.setRecordingAdditional(_edf_word(f"device_{info.device_id}_firmware_{info.firmware}"))
        signals = [np.ascontiguousarray(emg[:, i], dtype=np.int32) for i in range(nch)]
        if acc is not None:
            signals += [np.ascontiguousarray(acc[:, i], dtype=np.int32) for i in range(3)]
        writer.writeSamples(signals, digital=True)
        if t_start - t_file > 0.0005:
            writer.writeAnnotation(0.0, t_start - t_file, NO_DATA_BEFORE_FIRST)
        # The last record is padded with zeros after each domain's last sample: say so, or a
        # reader takes them for a flat (lead-off) channel at the end of every export.
        for name, end, rate in (("emg", emg_end, emg_rate), ("acc", acc_end, acc_rate)):
            if rate and end and seconds - end / rate > 0.0005:
                writer.writeAnnotation(end / rate, seconds - end / rate, f"{NO_DATA_AFTER_LAST} {name}")
        for r in decoded.records:
            if isinstance(r, EventRecord):
                writer.writeAnnotation(
                    max(0.0, r.t_onset - t_file), float(r.duration_s or 0.0), f"{r.type} {r.channel}"[:40]
                )
            elif isinstance(r, GapRecord):
                text = (
                    f"gap {r.cause} {r.channel}"
                    if r.channel
                    else f"gap {r.cause} {r.domain} {r.samples_missing}"
                )
                writer.writeAnnotation(max(0.0, r.t_start - t_file), max(0.0, r.t_end - r.t_start), text[:40])
    finally:
        writer.close()
    return {"seconds": seconds, "channels": [h["label"] for h in headers], "events": len(decoded.events),
            "gaps": len(decoded.gaps), "start": datetime.fromtimestamp(t_file, UTC).isoformat()}  # fmt: skip


def _signal_header(label: str, unit: str, rate: int, scale: float, transducer: str) -> dict[str, Any]:
    # Digital = the device's int16 ADC codes; physical limits chosen so codes * scale is exact.
    # EDF keeps physical limits in 8 ASCII characters: round them outward where they do not fit.
    lo, hi = -32768 * scale, 32767 * scale
    return {
        "label": label, "dimension": unit, "sample_frequency": rate,
        "physical_min": _fit8(lo), "physical_max": _fit8(hi),
        "digital_min": -32768, "digital_max": 32767, "transducer": transducer, "prefilter": "",
    }  # fmt: skip


def _edf_word(text: str) -> str:
    """EDF+ header subfields are ASCII without spaces."""
    return "".join(c if 33 <= ord(c) < 127 else "_" for c in text)[:60]


def _fit8(x: float) -> float:
    """The value as EDF's 8-character field will hold it (so pyedflib has nothing to truncate)."""
    for nd in range(6, -1, -1):
        text = f"{x:.{nd}f}"
        if len(text) <= 8:
            return float(text)
    return float(round(x))
