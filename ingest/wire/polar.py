"""Polar H10 chest strap (BLE): the accelerometer of Polar's PMD service, behind the decoder seam.

The H10 has no EMG: here it is an accelerometer-only device (tremor, clonus and movement context).
Its ``InfoFrame`` has no EMG channels, and the session runs only the accelerometer path of the
detector (``ingest.stream.session``). The format is Polar's open-source BLE SDK
(https://github.com/polarofficial/polar-ble-sdk, commit 8fb5311c, Android sources under
``sources/Android/android-communications/library/src/main/java/com/polar/androidcommunications/
api/ble/model/gatt/client/pmd/``):

- PMD service ``FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8``; control point ``FB005C81-...`` (write, and
  indications carrying the responses), data ``FB005C82-...`` (notify) (``BlePMDClient.kt``).
- Start: ``02`` (REQUEST_MEASUREMENT_START) + ``02`` (measurement type ACC, online) + settings,
  each ``type, count=1, value (little-endian, 2 bytes)``: sample rate (0x00), resolution (0x01),
  range in g (0x02) (``PmdControlPointCommand.kt``, ``PmdSetting.serializeSelected``). Stop:
  ``03 02``. Responses: ``F0, op code, measurement type, status, more, parameters``
  (``PmdControlPointResponse.kt``); a device-initiated ``01 <types>`` means the device stopped
  the stream.
- Data frame (``PmdDataFrame.kt``): ``u8 measurement type`` (low 6 bits; ACC = 2), ``u64``
  timestamp in ns of the frame's *last* sample (``PmdTimeStampUtils.getTimeStamps``), ``u8`` frame
  type (bit 7: delta-compressed), then the samples. ACC (``model/AccData.kt``): raw type 0/1/2 =
  signed 8/16/24-bit x, y, z in mG; compressed type 1 = a 16-bit reference sample then blocks of
  ``u8 bit width, u8 sample count, packed deltas`` (LSB-first bit stream, two's complement),
  values x the start response's FACTOR in mG; compressed type 0 the same in g x FACTOR
  (``BlePMDClient.parseDeltaFramesAll``). The H10 sends raw type 1.

Sample counters come from the device's timestamps, which continue across connections: the first
frame of a connection is placed at ``round(t_ns x rate / 1e9)`` (mod 2**32, unwrapped by the
session like our own 32-bit counter); within a connection a frame whose timestamp follows the
previous one by its own samples is contiguous, and a hole of ``k`` samples (from the timestamp
difference, over the sample period measured on the stream) is ``k`` lost samples. Across a
disconnect the counter is re-derived from the timestamp, so the gap is exact when the
accelerometer's output rate, in the device's own time, is the nominal one; if it is not, the error
is that rate error times the length of the previous connection (documented in
docs/devices.md). An implausible timestamp (backwards, or more than ``MAX_JUMP_S`` ahead) is
an error; two consecutive frames on a new timeline start a new boot.
"""

from __future__ import annotations

import math
import struct
from typing import ClassVar

import numpy as np

from ingest.wire.base import BleProfile, DeviceWrite, register_decoder
from ingest.wire.protocol import AccFrame, DecoderStats, Frame, InfoFrame

__all__ = [
    "PMD_CP",
    "PMD_DATA",
    "PMD_SERVICE",
    "PolarH10Decoder",
    "parse_delta_frames",
    "start_acc_command",
]

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CP = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

MEASUREMENT_ACC = 0x02
CP_START, CP_STOP = 0x02, 0x03
CP_RESPONSE = 0xF0
CP_STOPPED_BY_DEVICE = 0x01
SETTING_SAMPLE_RATE, SETTING_RESOLUTION, SETTING_RANGE, SETTING_FACTOR = 0x00, 0x01, 0x02, 0x05
#: Field sizes of each setting type (``PmdSetting.typeToFieldSize``).
_SETTING_SIZES = {0: 2, 1: 2, 2: 2, 3: 4, 4: 1, 5: 4, 6: 16}
#: ``PmdControlPointResponseCode`` names, for error messages.
_CP_STATUS = (
    "success", "invalid op code", "invalid measurement type", "not supported", "invalid length",
    "invalid parameter", "already in state", "invalid resolution", "invalid sample rate",
    "invalid range", "invalid MTU", "invalid number of channels", "invalid state",
    "device in charger", "disk full",
)  # fmt: skip
ALREADY_IN_STATE = 6

H10_RATES_HZ = (25, 50, 100, 200)
H10_RANGES_G = (2, 4, 8)
DEFAULT_RATE_HZ = 200
DEFAULT_RANGE_G = 8
#: The strap's timestamps are device time; a jump bigger than this inside one connection is not a hole.
MAX_JUMP_S = 60.0
HEADER = struct.Struct("<BQB")
#: Bytes per axis of raw ACC frame types 0, 1, 2.
_RAW_BYTES = {0: 1, 1: 2, 2: 3}
#: The H10's fixed boot id: its counters are device time, continuous across connections.
BOOT_ID = 0x504F4C48  # "POLH"


def start_acc_command(
    rate_hz: int = DEFAULT_RATE_HZ, range_g: int = DEFAULT_RANGE_G, resolution: int = 16
) -> bytes:
    """The control point command that starts online ACC streaming."""
    settings = b"".join(
        struct.pack("<BBH", t, 1, v)
        for t, v in (
            (SETTING_SAMPLE_RATE, rate_hz),
            (SETTING_RESOLUTION, resolution),
            (SETTING_RANGE, range_g),
        )
    )
    return bytes([CP_START, MEASUREMENT_ACC]) + settings


class DeltaFrameError(ValueError):
    """A delta-compressed frame is malformed (``reason`` for the counters)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_delta_frames(content: bytes, channels: int, resolution: int) -> np.ndarray:
    """Polar's delta compression (``BlePMDClient.parseDeltaFramesAll``): (n, channels) int64.

    A signed little-endian reference sample of ``ceil(resolution/8)`` bytes per channel, then
    blocks ``u8 width, u8 count, ceil(width*count*channels/8) bytes`` of deltas packed LSB-first,
    each added to the previous sample. Raises ``DeltaFrameError`` on a truncated or impossible block.
    """
    ref_bytes = math.ceil(resolution / 8)
    if len(content) < channels * ref_bytes:
        raise DeltaFrameError("short", f"compressed frame of {len(content)} bytes has no reference sample")
    ref = [
        int.from_bytes(content[i * ref_bytes : (i + 1) * ref_bytes], "little", signed=True)
        for i in range(channels)
    ]
    rows = [np.array(ref, dtype=np.int64)]
    pos = channels * ref_bytes
    while pos < len(content):
        if pos + 2 > len(content):
            raise DeltaFrameError("short", f"delta block header cut off at content byte {pos}")
        width, count = content[pos], content[pos + 1]
        pos += 2
        if width == 0 or width > 32:
            raise DeltaFrameError("value", f"delta bit width {width} at content byte {pos - 2}")
        nbits = width * count * channels
        nbytes = (nbits + 7) // 8
        if pos + nbytes > len(content):
            raise DeltaFrameError(
                "short",
                f"delta block at content byte {pos - 2} needs {nbytes} bytes, {len(content) - pos} left",
            )
        bits = np.unpackbits(
            np.frombuffer(content, dtype=np.uint8, count=nbytes, offset=pos), bitorder="little"
        )
        fields = bits[:nbits].reshape(count * channels, width).astype(np.int64)
        values = fields @ (np.int64(1) << np.arange(width, dtype=np.int64))
        values = np.where(values >= (1 << (width - 1)), values - (1 << width), values)
        if count:
            deltas = values.reshape(count, channels)
            rows.append(rows[-1] + np.cumsum(deltas, axis=0))
        pos += nbytes
    return np.vstack([r.reshape(-1, channels) for r in rows])


class PolarH10Decoder:
    """PMD notifications (data and control point) to ``AccFrame``s in mG. Never raises."""

    kind: ClassVar[str] = "polar-h10"
    ble_profile: ClassVar[BleProfile | None] = BleProfile(
        service_uuid=PMD_SERVICE, notify_uuids=(PMD_CP, PMD_DATA), command_uuid=PMD_CP
    )

    def __init__(self, rate_hz: int = DEFAULT_RATE_HZ, range_g: int = DEFAULT_RANGE_G) -> None:
        if rate_hz not in H10_RATES_HZ:
            raise ValueError(f"polar-h10: sample rate {rate_hz} Hz not one of {H10_RATES_HZ}")
        if range_g not in H10_RANGES_G:
            raise ValueError(f"polar-h10: range {range_g} g not one of {H10_RANGES_G}")
        self.rate_hz = rate_hz
        self.range_g = range_g
        self.stats = DecoderStats()
        self.last_error: str | None = None
        self.boot_id = BOOT_ID
        #: FACTOR of compressed frames, from the start response (1.0 until one says otherwise).
        self.factor = 1.0
        self._described = False
        self._prev_ts: int | None = None
        self._next: int | None = None  # counter of the next sample expected
        self._period_ns = 1e9 / rate_hz  # measured on contiguous frames
        self._candidate: int | None = None  # an implausible timestamp, waiting for confirmation
        self._seq = 0

    def info(self) -> InfoFrame:
        return InfoFrame(
            seq=0,
            counter=self._next or 0,
            boot_id=self.boot_id,
            emg_rate_hz=0,
            acc_rate_hz=self.rate_hz,
            emg_scale_uv=1.0,
            acc_scale_g=0.001,  # samples are in mG
            device_id="polar-h10",
            firmware="pmd",
            channel_labels=(),
        )

    def _error(self, reason: str, detail: str, offset: int) -> None:
        self.stats.count(reason)
        self.last_error = f"{reason}: {detail} (notification at stream byte {offset})"

    def feed(self, data: bytes, source: str = "", t_host: float | None = None) -> list[Frame]:
        offset = self.stats.bytes_in
        self.stats.bytes_in += len(data)
        src = source.lower()
        if src == PMD_CP:
            self._control_point(bytes(data), offset)
            return []
        if src not in (PMD_DATA, ""):
            self._error("source", f"{len(data)} bytes from characteristic {source!r}, not PMD", offset)
            return []
        out: list[Frame] = []
        frame = self._data(bytes(data), offset, out)
        if frame is not None:
            out.append(frame)
        self.stats.frames += len(out)
        return out

    # -- control point -----------------------------------------------------------------------
    def _control_point(self, data: bytes, offset: int) -> None:
        if not data:
            self._error("short", "empty control point notification", offset)
            return
        if data[0] == CP_STOPPED_BY_DEVICE:
            self._error("stopped", f"the device stopped measurement type(s) {list(data[1:])}", offset)
            return
        if data[0] != CP_RESPONSE or len(data) < 4:
            self._error("control", f"unknown control point notification {data[:8].hex()}", offset)
            return
        op, mtype, status = data[1], data[2], data[3]
        if status not in (0, ALREADY_IN_STATE):
            what = _CP_STATUS[status] if status < len(_CP_STATUS) else f"status {status}"
            self._error("refused", f"control point op {op} for measurement {mtype}: {what}", offset)
            return
        if op == CP_START and status == 0 and len(data) > 5:
            self._settings(data[5:], offset)

    def _settings(self, params: bytes, offset: int) -> None:
        pos = 0
        while pos + 2 <= len(params):
            stype, count = params[pos], params[pos + 1]
            size = _SETTING_SIZES.get(stype)
            pos += 2
            if size is None or pos + size * count > len(params):
                self._error(
                    "control", f"start response settings unreadable at parameter byte {pos - 2}", offset
                )
                return
            if stype == SETTING_FACTOR and count >= 1:
                (factor,) = struct.unpack_from("<f", params, pos)
                if math.isfinite(factor) and factor > 0:
                    self.factor = float(factor)
            pos += size * count

    # -- data --------------------------------------------------------------------------------
    def _data(self, data: bytes, offset: int, out: list[Frame]) -> AccFrame | None:
        if len(data) < HEADER.size:
            self._error("short", f"PMD frame of {len(data)} bytes, the header is {HEADER.size}", offset)
            return None
        mtype, ts, ftype = HEADER.unpack_from(data)
        if mtype & 0x3F != MEASUREMENT_ACC:
            self._error(
                "type", f"measurement type {mtype & 0x3F} at byte 0 (only ACC, 2, is started)", offset
            )
            return None
        content = data[HEADER.size :]
        compressed, ftype = bool(ftype & 0x80), ftype & 0x7F
        try:
            if compressed:
                if ftype not in (0, 1):
                    raise DeltaFrameError("type", f"compressed ACC frame type {ftype} at byte 9")
                mg = parse_delta_frames(content, 3, 16).astype(np.float64) * self.factor
                samples: np.ndarray = mg * 1000.0 if ftype == 0 else mg  # type 0 is in g
            else:
                width = _RAW_BYTES.get(ftype)
                if width is None:
                    raise DeltaFrameError("type", f"raw ACC frame type {ftype} at byte 9")
                if not content or len(content) % (3 * width):
                    raise DeltaFrameError("length", f"raw ACC type {ftype} content of {len(content)} bytes")
                if width == 2:
                    samples = np.frombuffer(content, dtype="<i2").reshape(-1, 3)
                else:
                    raw = np.frombuffer(content, dtype=np.uint8).reshape(-1, width)
                    v = raw.astype(np.int64) @ (np.int64(1) << (8 * np.arange(width, dtype=np.int64)))
                    samples = np.where(v >= 1 << (8 * width - 1), v - (1 << (8 * width)), v).reshape(-1, 3)
        except DeltaFrameError as exc:
            self._error(exc.reason, str(exc), offset)
            return None
        n = len(samples)
        counter = self._place(ts, n, offset, out)
        if counter is None:
            return None
        self._seq = (self._seq + 1) & 0xFFFF
        return AccFrame(self._seq, counter & 0xFFFFFFFF, samples)

    def _anchor(self, ts: int, n: int) -> int:
        return (ts * self.rate_hz + 500_000_000) // 1_000_000_000 - (n - 1)

    def _place(self, ts: int, n: int, offset: int, out: list[Frame]) -> int | None:
        """Counter of the frame's first sample, from its last sample's timestamp."""
        if self._prev_ts is None or self._next is None:
            counter = self._anchor(ts, n)
        else:
            dt = ts - self._prev_ts
            if not 0 < dt <= MAX_JUMP_S * 1e9:
                confirmed = self._candidate is not None and 0 < ts - self._candidate <= MAX_JUMP_S * 1e9
                self._candidate = ts
                if not confirmed:
                    self._error("timestamp", f"timestamp {ts} ns after {self._prev_ts} ns", offset)
                    return None
                # Two frames agree on a new timeline: the strap's clock was reset. A new boot.
                self._candidate = None
                self.boot_id = (self.boot_id + 1) & 0xFFFFFFFF
                self._described = False
                self._period_ns = 1e9 / self.rate_hz
                counter = self._anchor(ts, n)
            else:
                self._candidate = None
                k = round(dt / self._period_ns)  # samples from the previous last to this last
                lost = max(0, k - n)
                counter = self._next + lost
                if lost == 0 and abs(dt / n - self._period_ns) < 0.05 * self._period_ns:
                    self._period_ns += 0.05 * (dt / n - self._period_ns)
        self._prev_ts = ts
        self._next = counter + n
        if not self._described:
            self._described = True
            out.append(self.info())
        return counter

    # -- commands ----------------------------------------------------------------------------
    def start_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(start_acc_command(self.rate_hz, self.range_g), PMD_CP)]

    def stop_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(bytes([CP_STOP, MEASUREMENT_ACC]), PMD_CP)]

    def info_request(self) -> DeviceWrite | None:
        return None  # described by the decoder itself


register_decoder(PolarH10Decoder.kind, PolarH10Decoder)
