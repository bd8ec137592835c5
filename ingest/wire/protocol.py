"""Wire protocol v1: the bytes between a neurospasm wearable and the gateway.

This module is the single definition of the protocol. The gateway decodes with it and the
firmware simulator (``firmware_sim``) encodes with it, so the two can never drift apart. It is
pure: no I/O, no asyncio, no clock reads; only ``struct``, ``zlib``, ``cobs`` and numpy.

Byte-exact specification and test vectors: ``docs/protocol.md``. In short, every frame is::

    header (8 bytes, little-endian)
      u8  version        = 1
      u8  frame type     (INFO, EMG, ACC, STATUS, CMD)
      u16 sequence       per-device frame counter over all frame types, wraps at 2**16
      u32 counter        EMG frames: device EMG sample counter of the first sample;
                         ACC frames: accelerometer sample counter of the first sample;
                         INFO / STATUS: EMG sample counter when the frame was made; CMD: 0
    payload (type specific)
    u32 CRC-32 (zlib / IEEE 802.3) of header + payload, little-endian

and on a byte stream (serial, BLE notification, capture file) each frame is COBS-encoded and
followed by one 0x00 delimiter, so a reader resynchronises at the next zero after corruption.
One encoded frame with its delimiter is at most 244 bytes: one BLE notification at ATT MTU 247.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from cobs import cobs

__all__ = [
    "BLE_CMD_CHAR_UUID",
    "BLE_DATA_CHAR_UUID",
    "BLE_SERVICE_UUID",
    "MAX_WIRE_BYTES",
    "PROTOCOL_VERSION",
    "AccFrame",
    "CmdFrame",
    "Command",
    "DecoderStats",
    "EmgFrame",
    "Frame",
    "FrameError",
    "FrameType",
    "InfoFrame",
    "StatusFrame",
    "StreamDecoder",
    "decode_frame",
    "encode_frame",
    "max_acc_samples_per_frame",
    "max_emg_samples_per_frame",
]

PROTOCOL_VERSION = 1
#: Largest encoded frame including its 0x00 delimiter: one BLE notification at ATT MTU 247.
MAX_WIRE_BYTES = 244
HEADER = struct.Struct("<BBHI")
CRC = struct.Struct("<I")
#: Largest raw (un-stuffed) frame that is guaranteed to COBS-encode into MAX_WIRE_BYTES:
#: COBS adds one byte per started 254-byte block (2 for anything over 253 bytes) and we add the delimiter.
MAX_RAW_BYTES = MAX_WIRE_BYTES - 3
#: Reader gives up on a run of bytes without a delimiter after this many (garbage, wrong baud rate).
MAX_PENDING_BYTES = 4 * MAX_WIRE_BYTES

#: GATT layout of a neurospasm wearable (BLE): one service, a notify characteristic carrying one
#: encoded frame (delimiter included) per notification, and a write characteristic for commands.
BLE_SERVICE_UUID = "6e5a0001-4e53-4d53-9000-6e6575726f73"
BLE_DATA_CHAR_UUID = "6e5a0002-4e53-4d53-9000-6e6575726f73"
BLE_CMD_CHAR_UUID = "6e5a0003-4e53-4d53-9000-6e6575726f73"

_INFO_FIXED = struct.Struct("<IHHBBff")
_EMG_FIXED = struct.Struct("<BB")
_ACC_FIXED = struct.Struct("<B")
_STATUS = struct.Struct("<BHHB")
_CMD = struct.Struct("<B")


class FrameType(enum.IntEnum):
    """Frame types of protocol v1. Values are part of the wire format: never renumber."""

    INFO = 0x01
    EMG = 0x02
    ACC = 0x03
    STATUS = 0x04
    CMD = 0x10


class Command(enum.IntEnum):
    """Host-to-device commands (payload of a CMD frame)."""

    START = 0x01
    STOP = 0x02
    INFO = 0x03  # ask the device to send its INFO frame now


class FrameError(ValueError):
    """A frame could not be decoded. ``reason`` is a short machine-readable word for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class InfoFrame:
    """Who the device is and how to turn its integers into physical units.

    Sent after boot, after every START command and about once a second while streaming, so a
    gateway that joins late (or lost the first one) needs no device constants of its own.
    """

    seq: int
    counter: int
    boot_id: int
    emg_rate_hz: int
    acc_rate_hz: int
    emg_scale_uv: float
    acc_scale_g: float
    device_id: str
    firmware: str
    channel_labels: tuple[str, ...]
    acc_axes: int = 3
    #: Not on the wire (vendor decoders set it): ``boot_id`` names one *connection*, because the
    #: vendor device restarts its sample counter whenever streaming is (re)started. A new
    #: ``boot_id`` after a dropped link is then a disconnect whose size is known only from time.
    per_connection: bool = field(default=False, compare=False)

    @property
    def n_channels(self) -> int:
        return len(self.channel_labels)


@dataclass(frozen=True, slots=True)
class EmgFrame:
    """A block of EMG samples; ``samples`` is int16 with shape (n_samples, n_channels)."""

    seq: int
    counter: int
    samples: np.ndarray = field(compare=False)


@dataclass(frozen=True, slots=True)
class AccFrame:
    """A block of accelerometer samples; ``samples`` is int16 with shape (n_samples, 3)."""

    seq: int
    counter: int
    samples: np.ndarray = field(compare=False)


@dataclass(frozen=True, slots=True)
class StatusFrame:
    """Device health. Bit i of ``contact_mask`` set means electrode channel i has skin contact."""

    seq: int
    counter: int
    battery_pct: int
    battery_mv: int
    contact_mask: int
    flags: int = 0  # bit 0: charging, bit 1: amplifier saturated on some channel

    def contact(self, n_channels: int) -> list[bool]:
        return [bool(self.contact_mask >> i & 1) for i in range(n_channels)]


@dataclass(frozen=True, slots=True)
class CmdFrame:
    """A command from the gateway to the device."""

    seq: int
    command: Command
    counter: int = 0


Frame = InfoFrame | EmgFrame | AccFrame | StatusFrame | CmdFrame


def max_emg_samples_per_frame(n_channels: int) -> int:
    """How many EMG samples of ``n_channels`` fit one frame (the firmware sends at most this)."""
    room = MAX_RAW_BYTES - HEADER.size - CRC.size - _EMG_FIXED.size
    return min(255, room // (2 * n_channels))


def max_acc_samples_per_frame(axes: int = 3) -> int:
    room = MAX_RAW_BYTES - HEADER.size - CRC.size - _ACC_FIXED.size
    return min(255, room // (2 * axes))


#: an INFO frame's channel label: at most this many bytes of UTF-8
MAX_LABEL_BYTES = 16


def _pack_str(text: str, limit: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > limit:
        raise ValueError(f"{what} {text!r} is {len(raw)} bytes in UTF-8; the protocol allows {limit}")
    return bytes([len(raw)]) + raw


def _payload(frame: Frame) -> tuple[FrameType, bytes]:
    if isinstance(frame, EmgFrame):
        s = np.asarray(frame.samples)
        if s.ndim != 2 or s.shape[0] > 255 or s.shape[1] > 255:
            raise ValueError(f"EMG samples must be 2-D (n<=255, channels<=255), got shape {s.shape}")
        return FrameType.EMG, _EMG_FIXED.pack(s.shape[1], s.shape[0]) + s.astype("<i2").tobytes()
    if isinstance(frame, AccFrame):
        s = np.asarray(frame.samples)
        if s.ndim != 2 or s.shape[1] != 3 or s.shape[0] > 255:
            raise ValueError(f"ACC samples must have shape (n<=255, 3), got {s.shape}")
        return FrameType.ACC, _ACC_FIXED.pack(s.shape[0]) + s.astype("<i2").tobytes()
    if isinstance(frame, StatusFrame):
        return FrameType.STATUS, _STATUS.pack(
            frame.battery_pct, frame.battery_mv, frame.contact_mask, frame.flags
        )
    if isinstance(frame, InfoFrame):
        body = _INFO_FIXED.pack(
            frame.boot_id,
            frame.emg_rate_hz,
            frame.acc_rate_hz,
            frame.n_channels,
            frame.acc_axes,
            frame.emg_scale_uv,
            frame.acc_scale_g,
        )
        body += _pack_str(frame.device_id, 32, "device_id")
        body += _pack_str(frame.firmware, 16, "firmware")
        for label in frame.channel_labels:
            body += _pack_str(label, MAX_LABEL_BYTES, "channel label")
        return FrameType.INFO, body
    if isinstance(frame, CmdFrame):
        return FrameType.CMD, _CMD.pack(int(frame.command))
    raise TypeError(f"not a protocol frame: {type(frame).__name__}")


def encode_frame(frame: Frame) -> bytes:
    """Encode one frame for the wire: COBS(header + payload + CRC) + b"\\x00".

    Raises ValueError when the frame would not fit one BLE notification (``MAX_WIRE_BYTES``).
    """
    ftype, payload = _payload(frame)
    raw = HEADER.pack(PROTOCOL_VERSION, ftype, frame.seq & 0xFFFF, frame.counter & 0xFFFFFFFF) + payload
    raw += CRC.pack(zlib.crc32(raw))
    wire = cobs.encode(raw) + b"\x00"
    if len(wire) > MAX_WIRE_BYTES:
        raise ValueError(
            f"{ftype.name} frame is {len(wire)} bytes on the wire; at most {MAX_WIRE_BYTES} fit one BLE "
            "notification (send fewer samples or channels per frame)"
        )
    return wire


def _need(raw: bytes, size: int, ftype: str) -> None:
    if len(raw) < size:
        raise FrameError("short", f"{ftype} payload is {len(raw)} bytes, needs {size}")


def _str(raw: bytes, pos: int, what: str) -> tuple[str, int]:
    if pos >= len(raw):
        raise FrameError("short", f"INFO ends before {what} at payload byte {pos}")
    n = raw[pos]
    end = pos + 1 + n
    if end > len(raw):
        raise FrameError("short", f"INFO {what} of {n} bytes overruns the payload at byte {pos}")
    try:
        return raw[pos + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise FrameError("bad-text", f"INFO {what} at payload byte {pos} is not UTF-8") from exc


def decode_frame(raw: bytes) -> Frame:
    """Decode one frame that is already COBS-decoded (header + payload + CRC).

    Raises FrameError (never anything else) naming what is wrong and at which byte.
    """
    if len(raw) < HEADER.size + CRC.size:
        raise FrameError("short", f"frame of {len(raw)} bytes is shorter than header + CRC")
    (crc,) = CRC.unpack_from(raw, len(raw) - CRC.size)
    body = raw[: -CRC.size]
    if zlib.crc32(body) != crc:
        raise FrameError("crc", f"CRC mismatch over {len(body)} bytes")
    version, ftype, seq, counter = HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise FrameError("version", f"protocol version {version} at byte 0, this gateway speaks 1")
    p = body[HEADER.size :]
    try:
        kind = FrameType(ftype)
    except ValueError:
        raise FrameError("type", f"unknown frame type 0x{ftype:02x} at byte 1") from None
    if kind is FrameType.EMG:
        _need(p, _EMG_FIXED.size, "EMG")
        nch, n = _EMG_FIXED.unpack_from(p)
        if nch == 0:
            raise FrameError("length", "EMG frame declares 0 channels")
        _need(p, _EMG_FIXED.size + 2 * nch * n, "EMG")
        if len(p) != _EMG_FIXED.size + 2 * nch * n:
            raise FrameError("length", f"EMG payload is {len(p)} bytes, header says {2 + 2 * nch * n}")
        data = np.frombuffer(p, dtype="<i2", count=nch * n, offset=_EMG_FIXED.size).reshape(n, nch)
        return EmgFrame(seq, counter, data)
    if kind is FrameType.ACC:
        _need(p, _ACC_FIXED.size, "ACC")
        (n,) = _ACC_FIXED.unpack_from(p)
        if len(p) != _ACC_FIXED.size + 6 * n:
            raise FrameError("length", f"ACC payload is {len(p)} bytes, header says {1 + 6 * n}")
        data = np.frombuffer(p, dtype="<i2", count=3 * n, offset=_ACC_FIXED.size).reshape(n, 3)
        return AccFrame(seq, counter, data)
    if kind is FrameType.STATUS:
        if len(p) != _STATUS.size:
            raise FrameError("length", f"STATUS payload is {len(p)} bytes, expected {_STATUS.size}")
        pct, mv, mask, flags = _STATUS.unpack(p)
        return StatusFrame(seq, counter, pct, mv, mask, flags)
    if kind is FrameType.INFO:
        _need(p, _INFO_FIXED.size, "INFO")
        boot, emg_rate, acc_rate, nch, axes, emg_scale, acc_scale = _INFO_FIXED.unpack_from(p)
        pos = _INFO_FIXED.size
        device_id, pos = _str(p, pos, "device_id")
        firmware, pos = _str(p, pos, "firmware")
        labels = []
        for i in range(nch):
            label, pos = _str(p, pos, f"channel label {i}")
            labels.append(label)
        if pos != len(p):
            raise FrameError("length", f"INFO payload has {len(p) - pos} trailing bytes at byte {pos}")
        if emg_rate == 0 or nch == 0:
            raise FrameError("value", "INFO declares no EMG channels or a zero sample rate")
        if not (np.isfinite(emg_scale) and np.isfinite(acc_scale)):
            raise FrameError("value", "INFO scale factors are not finite")
        return InfoFrame(
            seq,
            counter,
            boot,
            emg_rate,
            acc_rate,
            float(emg_scale),
            float(acc_scale),
            device_id,
            firmware,
            tuple(labels),
            axes,
        )
    # CMD
    if len(p) != _CMD.size:
        raise FrameError("length", f"CMD payload is {len(p)} bytes, expected 1")
    try:
        command = Command(p[0])
    except ValueError:
        raise FrameError("value", f"unknown command 0x{p[0]:02x}") from None
    return CmdFrame(seq, command, counter)


@dataclass(slots=True)
class DecoderStats:
    """What a StreamDecoder saw. Every dropped byte run is counted under one reason."""

    frames: int = 0
    bytes_in: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    @property
    def bad_frames(self) -> int:
        return sum(self.errors.values())


class StreamDecoder:
    """Incremental decoder for a byte stream of COBS frames. Never raises on input bytes.

    Feed it whatever the transport delivered (a serial read, a BLE notification, a slice of a
    capture file); it returns the frames completed so far and keeps the partial tail. Corrupt
    frames are counted in ``stats.errors`` by reason and skipped; decoding resumes at the next
    0x00 delimiter, which COBS guarantees appears nowhere inside a frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.stats = DecoderStats()
        #: Last error seen, with the stream byte offset where its frame started (for logs).
        self.last_error: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        return list(self.iter_feed(data))

    def iter_feed(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]:
        start_offset = self.stats.bytes_in - len(self._buf)
        self.stats.bytes_in += len(data)
        self._buf += data
        buf = self._buf
        pos = 0
        while True:
            end = buf.find(0, pos)
            if end < 0:
                break
            chunk = bytes(buf[pos:end])
            offset = start_offset + pos
            pos = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if not chunk:
                continue  # back-to-back delimiters are legal idle filler
            frame = self._decode_one(chunk, offset)
            if frame is not None:
                yield frame
        del buf[:pos]
        if len(buf) > MAX_PENDING_BYTES:
            # No delimiter for far longer than any frame: drop and resync at the next 0x00.
            self.stats.count("overlong")
            self.last_error = f"overlong: {len(buf)} bytes without a delimiter"
            buf.clear()
            self._discarding = True

    def _decode_one(self, chunk: bytes, offset: int) -> Frame | None:
        if len(chunk) > MAX_WIRE_BYTES:
            self.stats.count("overlong")
            self.last_error = f"overlong: {len(chunk)} byte frame at stream byte {offset}"
            return None
        try:
            raw = cobs.decode(chunk)
        except cobs.DecodeError:
            self.stats.count("cobs")
            self.last_error = f"cobs: bad byte stuffing in frame at stream byte {offset}"
            return None
        try:
            frame = decode_frame(raw)
        except FrameError as exc:
            self.stats.count(exc.reason)
            self.last_error = f"{exc} (frame at stream byte {offset})"
            return None
        self.stats.frames += 1
        return frame
