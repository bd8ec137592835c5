"""Shimmer3 ExG over Bluetooth serial (RFCOMM): LogAndStream data packets and commands.

Written from Shimmer's Bluetooth command set as their open-source API implements and tests it
(ShimmerEngineering / seemoo-lab ``pyshimmer``: ``bt_const.py``, ``bt_commands.py``,
``dev/channels.py``, ``dev/exg.py`` and ``test/bluetooth/test_bluetooth_api.py``), the
ADS1292R datasheet for the ExG registers, and the Shimmer3 default calibration.

The host speaks in one-byte commands, each acknowledged by ``0xFF``:

* ``0x20`` stop streaming, ``0x07`` start streaming;
* ``0x05 <u16 LE>`` sampling rate as a divider of the 32768 Hz clock (512 Hz -> 64);
* ``0x08 <3 bytes>`` enabled sensors bitmap (byte 0: 0x80 low-noise accelerometer, 0x10 ExG
  chip 1 at 24 bit, 0x08 ExG chip 2 at 24 bit);
* ``0x63 <chip> <offset> <length>`` read ExG registers, answered ``0x62 <length> <registers>``;
* ``0x61 <chip> <offset> <length> <registers>`` write ExG registers (the gain: CH1SET, CH2SET at
  offsets 3 and 4 of the chip's 10 registers from CONFIG1);
* ``0x2C`` read all kinematic calibrations, answered ``0x2D`` and 84 bytes;
* ``0x01`` inquiry, answered ``0x02 <u16 divider> <u32 config> <u8 n> <u8 buffer> <n channel ids>``.

A data packet is ``0x00``, a 3-byte little-endian timestamp (ticks of the 32768 Hz real-time
clock, free running), then every channel of the inquiry in its order: low-noise accelerometer
axes are 2 bytes little-endian (12-bit codes); the ExG chip's status is 1 byte, its channels
24-bit big-endian two's complement. Units:

* ExG: V = counts x 2.42 / (2^23 - 1) / gain, the gain per channel from the chip's CHnSET
  register bits 6..4 (0: 6, 1: 1, 2: 2, 3: 3, 4: 4, 5: 8, 6: 12), read at every connection.
* Low-noise accelerometer: the device's own calibration, read at every connection with
  ``0x2C`` (answered ``0x2D`` + 84 bytes, the accelerometer's 21 first): c = (K R)^-1 (u - b)
  in m/s^2, / g0 in g; Shimmer3's defaults (b = 2047, K = 83 LSB per m/s^2, R = I) if blank.

Counter: the timestamp advances by exactly the divider per sample, so the sample counter is the
unwrapped timestamp / divider and lost packets are exact holes (the 24-bit clock wraps every
512 s; losses shorter than that are exact). Each connection has its own ``boot_id``.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ingest.wire.base import BleProfile, DeviceWrite, counter_runs, register_decoder
from ingest.wire.protocol import AccFrame, DecoderStats, EmgFrame, Frame, InfoFrame

__all__ = [
    "ACC_LN_OFFSET",
    "ACC_LN_SENSITIVITY",
    "CHANNEL_SIZES",
    "CLOCK_HZ",
    "EXG_GAINS",
    "EXG_VREF",
    "RATES_HZ",
    "ShimmerDecoder",
    "TriaxialCalibration",
    "exg_gain",
    "parse_packet",
]

CLOCK_HZ = 32768
DATA_PACKET = 0x00
INQUIRY_COMMAND = 0x01
INQUIRY_RESPONSE = 0x02
SET_SAMPLING_RATE = 0x05
START_STREAMING = 0x07
SET_SENSORS = 0x08
STOP_STREAMING = 0x20
GET_EXG_REGS = 0x63
SET_EXG_REGS = 0x61
EXG_REGS_RESPONSE = 0x62
INSTREAM_RESPONSE = 0x8A
GET_ALL_CALIBRATION = 0x2C
ALL_CALIBRATION_RESPONSE = 0x2D
#: Calibration blocks of 21 bytes in the 0x2D response: LN accelerometer, gyro, magnetometer, WR accel.
CALIBRATION_BYTES = 84
ACK = 0xFF
SENSOR_ACCEL_LN = 0x80
SENSOR_EXG1_24 = 0x10
SENSOR_EXG2_24 = 0x08
EXG_VREF = 2.42
EXG_GAINS = {0: 6, 1: 1, 2: 2, 3: 3, 4: 4, 5: 8, 6: 12}
#: CH1SET / CH2SET input-mux bits of Shimmer's EMG configuration (kept when the gain is set).
EMG_MUX = (0x09, 0x00)
#: Sampling rates offered as a setting: exact dividers of the 32768 Hz clock.
RATES_HZ = (128, 256, 512, 1024, 2048)
#: Shimmer3 low-noise accelerometer default calibration: offset (code) and LSB per m/s^2.
ACC_LN_OFFSET = 2047.0
ACC_LN_SENSITIVITY = 83.0
G0 = 9.80665
#: Bytes of each channel id in a data packet (Shimmer3 channel table).
CHANNEL_SIZES: dict[int, int] = {
    **{i: 2 for i in range(0x00, 0x1B)},
    0x1B: 3,  # pressure
    0x1C: 2,  # GSR
    0x1D: 1, 0x1E: 3, 0x1F: 3,  # ExG chip 1: status, ch1, ch2 (24 bit)
    0x20: 1, 0x21: 3, 0x22: 3,  # ExG chip 2
    0x23: 2, 0x24: 2, 0x25: 2, 0x26: 2,  # ExG 16 bit
    0x27: 2, 0x28: 2,  # strain gauge
}  # fmt: skip
EXG_24 = {0x1E: (0, 0), 0x1F: (0, 1), 0x21: (1, 0), 0x22: (1, 1)}  # id -> (chip, channel)
ACC_LN = (0x00, 0x01, 0x02)
DEFAULT_RATE_HZ = 1024
DEFAULT_GAIN = 12  # Shimmer's EMG configuration; replaced by the registers read at connection
#: In-stream responses (after 0x8A) and their total length: status, battery.
INSTREAM_SIZES = {0x71: 3, 0x94: 5}
#: Longest hole (in sample periods) between two packets that still counts as the same stream;
#: further apart, the timestamps must be confirmed by the next packet first (resynchronisation).
MAX_STEP_PERIODS = 4096
#: Most bytes an inquiry response or register read may span before it is given up.
MAX_RESPONSE = 2 + 8 + 255


@dataclass(frozen=True, slots=True)
class TriaxialCalibration:
    """A Shimmer kinematic sensor's calibration: c = (K R)^-1 (u - b), in the sensor's unit.

    Stored on the device as 21 bytes (response 0x2D, and the SD-log header): offsets b (3 x int16
    BE), sensitivities K (3 x int16 BE), alignment matrix R (9 x int8, x 1/100). For the low-noise
    accelerometer the unit is m/s^2.
    """

    offset: tuple[float, float, float] = (ACC_LN_OFFSET, ACC_LN_OFFSET, ACC_LN_OFFSET)
    sensitivity: tuple[float, float, float] = (ACC_LN_SENSITIVITY, ACC_LN_SENSITIVITY, ACC_LN_SENSITIVITY)
    alignment: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @classmethod
    def from_bytes(cls, raw: bytes) -> TriaxialCalibration:
        if len(raw) < 21:
            raise ValueError(f"a triaxial calibration is 21 bytes, got {len(raw)}")
        vals = struct.unpack(">3h3h9b", raw[:21])
        return cls(
            tuple(float(v) for v in vals[0:3]),  # type: ignore[arg-type]
            tuple(float(v) for v in vals[3:6]),  # type: ignore[arg-type]
            tuple(v / 100.0 for v in vals[6:15]),
        )

    @property
    def usable(self) -> bool:
        """An unprogrammed calibration (zeros, or 0xFF bytes) cannot be inverted."""
        m = np.diag(self.sensitivity) @ np.array(self.alignment).reshape(3, 3)
        return bool(abs(np.linalg.det(m)) > 1e-9)

    def apply(self, codes: np.ndarray) -> np.ndarray:
        """(n, 3) raw codes -> (n, 3) calibrated values."""
        m = np.diag(self.sensitivity) @ np.array(self.alignment).reshape(3, 3)
        u = np.asarray(codes, dtype=np.float64) - np.array(self.offset)
        return np.linalg.solve(m, u.T).T


def parse_packet(packet: bytes, channel_ids: list[int]) -> tuple[int, dict[int, int]]:
    """One data packet -> (timestamp ticks, {channel id: raw value}), for tools and tests.

    ExG 24/16-bit channels and the gyroscope are big-endian signed, the rest little-endian
    (unsigned for ADCs and the low-noise accelerometer's 12-bit codes).
    """
    if not packet or packet[0] != DATA_PACKET:
        raise ValueError("not a Shimmer data packet (first byte is not 0x00)")
    ts = int.from_bytes(packet[1:4], "little")
    values: dict[int, int] = {}
    off = 4
    for cid in channel_ids:
        size = CHANNEL_SIZES[cid]
        raw = packet[off : off + size]
        if len(raw) < size:
            raise ValueError(f"packet of {len(packet)} bytes ends inside channel 0x{cid:02x}")
        big = cid in EXG_24 or 0x23 <= cid <= 0x26 or 0x0A <= cid <= 0x0C
        values[cid] = int.from_bytes(raw, "big" if big else "little", signed=big)
        off += size
    return ts, values


def exg_gain(chset: int) -> int:
    """Gain of an ADS1292R channel from its CHnSET register (bits 6..4); unknown codes: 6."""
    return EXG_GAINS.get((chset >> 4) & 0x7, 6)


class ShimmerDecoder:
    """Shimmer3 packets and responses to frames. One instance per connection; never raises."""

    kind: ClassVar[str] = "shimmer"
    ble_profile: ClassVar[BleProfile | None] = None

    def __init__(
        self, *, rate_hz: int = DEFAULT_RATE_HZ, exg2: bool = False, exg_gain: int | None = None
    ) -> None:
        if exg_gain is not None and exg_gain not in EXG_GAINS.values():
            raise ValueError(
                f"Shimmer ExG gain must be one of {sorted(set(EXG_GAINS.values()))}, got {exg_gain}"
            )
        #: None: leave the chips' gain as configured on the device (read back either way).
        self.exg_gain = exg_gain
        self.stats = DecoderStats()
        self.last_error: str | None = None
        self.rate_hz = rate_hz
        self.divider = max(1, round(CLOCK_HZ / rate_hz))
        self.exg2 = exg2
        self._buf = bytearray()
        self._offset = 0
        self._channels: list[int] | None = None  # from the inquiry response
        self._packet_size = 0
        self._gains: dict[tuple[int, int], int] = {}
        #: Low-noise accelerometer calibration: the device's own (read at connection) or defaults.
        self.acc_calibration = TriaxialCalibration()
        self._regs_seen = 0
        self._info: InfoFrame | None = None
        self._boot_id = random.getrandbits(32)
        self._in_sync = False
        self._after_ack = False
        self._last_ts: int | None = None
        self._ticks = 0  # unwrapped timestamp of the last packet

    # -- commands ----------------------------------------------------------------------------
    def start_commands(self) -> list[DeviceWrite]:
        sensors = SENSOR_ACCEL_LN | SENSOR_EXG1_24 | (SENSOR_EXG2_24 if self.exg2 else 0)
        gains: list[DeviceWrite] = []
        if self.exg_gain is not None:
            # Written before the registers are read: the read-back is what scales the samples.
            code = next(c for c, g in EXG_GAINS.items() if g == self.exg_gain)
            chset = bytes(code << 4 | mux for mux in EMG_MUX)
            gains = [
                DeviceWrite(bytes([SET_EXG_REGS, chip, 3, 2]) + chset)
                for chip in ((0, 1) if self.exg2 else (0,))
            ]
        return [
            DeviceWrite(bytes([STOP_STREAMING])),
            DeviceWrite(bytes([SET_SAMPLING_RATE]) + struct.pack("<H", self.divider)),
            DeviceWrite(bytes([SET_SENSORS, sensors, 0, 0])),
            *gains,
            DeviceWrite(bytes([GET_EXG_REGS, 0, 0, 10])),
            DeviceWrite(bytes([GET_EXG_REGS, 1, 0, 10])),
            DeviceWrite(bytes([GET_ALL_CALIBRATION])),
            DeviceWrite(bytes([INQUIRY_COMMAND])),
            DeviceWrite(bytes([START_STREAMING])),
        ]

    def stop_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(bytes([STOP_STREAMING]))]

    def info_request(self) -> DeviceWrite | None:
        return None

    @property
    def channels(self) -> list[int] | None:
        """Channel ids of the data packets, from the inquiry response (None before it)."""
        return None if self._channels is None else list(self._channels)

    @property
    def last_timestamp(self) -> int | None:
        """The 24-bit timestamp of the last data packet."""
        return self._last_ts

    # -- decoding ----------------------------------------------------------------------------
    def feed(self, data: bytes, source: str = "", t_host: float | None = None) -> list[Frame]:
        self.stats.bytes_in += len(data)
        self._buf += data
        buf = self._buf
        pos = 0
        packets: list[tuple[int, bytes]] = []  # (unwrapped ticks, packet)
        skipped_from: int | None = None
        after_ack = self._after_ack
        while pos < len(buf):
            b = buf[pos]
            used = 0
            if b == DATA_PACKET and self._packet_size:
                used = self._try_packet(pos, packets)
            elif b == ACK:
                used = 1
            elif b == INQUIRY_RESPONSE and after_ack and not self.stats.frames:
                used = self._try_inquiry(pos)  # responses follow their ACK, and come before data
            elif b == EXG_REGS_RESPONSE and after_ack and not self.stats.frames:
                used = self._try_regs(pos)
            elif b == ALL_CALIBRATION_RESPONSE and after_ack and not self.stats.frames:
                used = self._try_calibration(pos)
            elif b == INSTREAM_RESPONSE and self.stats.frames:
                used = self._try_instream(pos)
            if used < 0:
                break  # incomplete: wait for more bytes
            if used == 0:
                self._in_sync = False
                after_ack = False
                if skipped_from is None:
                    skipped_from = pos
                pos += 1
                continue
            if skipped_from is not None:
                self._skipped(skipped_from, pos)
                skipped_from = None
            after_ack = b == ACK
            pos += used
        self._after_ack = after_ack
        if skipped_from is not None:
            self._skipped(skipped_from, pos)
        del buf[:pos]
        self._offset += pos
        return self._frames(packets) if packets else []

    def _skipped(self, start: int, end: int) -> None:
        self.stats.count("sync")
        self.last_error = (
            f"sync: {end - start} bytes that are no Shimmer packet at stream byte {self._offset + start}"
        )

    def _try_instream(self, pos: int) -> int:
        """``0x8A 0x71 <status>`` or ``0x8A 0x94 <3 battery bytes>``: answers to in-stream requests."""
        buf = self._buf
        if len(buf) - pos < 2:
            return -1
        size = INSTREAM_SIZES.get(buf[pos + 1], 0)
        if not size:
            return 0
        return size if len(buf) - pos >= size else -1

    def _try_inquiry(self, pos: int) -> int:
        buf = self._buf
        if len(buf) - pos < 9:
            return -1
        divider, _config, n, _bufsize = struct.unpack_from("<HIBB", buf, pos + 1)
        if len(buf) - pos < 9 + n:
            return -1
        ids = list(buf[pos + 9 : pos + 9 + n])
        unknown = [i for i in ids if i not in CHANNEL_SIZES]
        if unknown or divider == 0:
            self.stats.count("inquiry")
            self.last_error = (
                f"inquiry: response at stream byte {self._offset + pos} names unknown channel ids "
                f"{unknown} or a zero rate divider"
            )
            return 0
        self._channels = ids
        self.divider = divider
        self.rate_hz = round(CLOCK_HZ / divider)
        self._packet_size = 4 + sum(CHANNEL_SIZES[i] for i in ids)
        self._info = None  # a (re)configuration: describe it again before the next samples
        return 9 + n

    def _try_regs(self, pos: int) -> int:
        buf = self._buf
        if len(buf) - pos < 2:
            return -1
        n = buf[pos + 1]
        if len(buf) - pos < 2 + n:
            return -1
        regs = bytes(buf[pos + 2 : pos + 2 + n])
        chip = self._regs_seen % 2  # answers come in the order asked: chip 1, then chip 2
        self._regs_seen += 1
        if n >= 5:
            self._gains[(chip, 0)] = exg_gain(regs[3])
            self._gains[(chip, 1)] = exg_gain(regs[4])
        return 2 + n

    def _try_calibration(self, pos: int) -> int:
        if len(self._buf) - pos < 1 + CALIBRATION_BYTES:
            return -1
        cal = TriaxialCalibration.from_bytes(bytes(self._buf[pos + 1 : pos + 22]))
        if cal.usable:
            self.acc_calibration = cal
        else:
            self.stats.count("calibration")
            self.last_error = (
                "calibration: the accelerometer's stored calibration is blank; using Shimmer3 defaults"
            )
        return 1 + CALIBRATION_BYTES

    def _ts(self, pos: int) -> int:
        buf = self._buf
        return buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16

    def _try_packet(self, pos: int, packets: list[tuple[int, bytes]]) -> int:
        size = self._packet_size
        buf = self._buf
        if len(buf) - pos < size:
            return -1
        ts = self._ts(pos)
        if self._in_sync and self._last_ts is not None:
            # In sync, the clock must still agree: a whole number of sample periods later. If it
            # does not (a long loss, or a false 0x00), the next packet must confirm this one.
            step = (ts - self._last_ts) & 0xFFFFFF
            if step % self.divider or step > MAX_STEP_PERIODS * self.divider:
                self._in_sync = False
        if not self._in_sync:
            # Out of sync, a 0x00 byte is a packet only if the next packet follows it on the clock.
            if len(buf) - pos < 2 * size:
                return -1
            nxt = pos + size
            if buf[nxt] != DATA_PACKET:
                return 0
            step = (self._ts(nxt) - ts) & 0xFFFFFF
            if step == 0 or step % self.divider or step > MAX_STEP_PERIODS * self.divider:
                return 0
        if self._last_ts is None:
            self._ticks = ts
        else:
            step = (ts - self._last_ts) & 0xFFFFFF
            if step == 0:
                self.stats.count("duplicate")
                self.last_error = f"duplicate: timestamp {ts} repeated"
                return size
            self._ticks += step
        self._last_ts = ts
        self._in_sync = True
        self.stats.frames += 1
        packets.append((self._ticks, bytes(buf[pos : pos + size])))
        return size

    # -- frames ------------------------------------------------------------------------------
    def _layout(self) -> tuple[list[tuple[int, int, int]], list[int]]:
        """(offset, chip, channel) of each 24-bit ExG channel, offsets of the accelerometer axes."""
        assert self._channels is not None
        exg: list[tuple[int, int, int]] = []
        acc: list[int] = []
        off = 4
        for cid in self._channels:
            if cid in EXG_24:
                exg.append((off, *EXG_24[cid]))
            elif cid in ACC_LN:
                acc.append(off)
            off += CHANNEL_SIZES[cid]
        return exg, acc

    def _info_frame(self, exg: list[tuple[int, int, int]], acc: list[int]) -> InfoFrame:
        labels = tuple(f"EXG{chip + 1} CH{ch + 1}" for _, chip, ch in exg)
        return InfoFrame(
            seq=0,
            counter=0,
            boot_id=self._boot_id,
            emg_rate_hz=self.rate_hz,
            acc_rate_hz=self.rate_hz if len(acc) == 3 else 0,
            emg_scale_uv=1.0,  # samples are microvolts already: each channel has its own gain
            acc_scale_g=1.0,  # samples are g already: the device's calibration is applied
            device_id="shimmer3",
            firmware="LogAndStream",
            channel_labels=labels,
            per_connection=True,
        )

    def _frames(self, packets: list[tuple[int, bytes]]) -> list[Frame]:
        exg, acc = self._layout()
        out: list[Frame] = []
        if not exg:
            self.stats.count("no-exg")
            self.last_error = "no-exg: the inquiry lists no 24-bit ExG channel; enable ExG on the Shimmer"
            return out
        if self._info is None:
            self._info = self._info_frame(exg, acc)
            out.append(self._info)
        counters = np.array([t // self.divider for t, _ in packets], dtype=np.int64)
        raw = np.frombuffer(b"".join(p for _, p in packets), dtype=np.uint8).reshape(len(packets), -1)
        raw32 = raw.astype(np.int32)
        uv = np.empty((len(packets), len(exg)), dtype=np.float64)
        for j, (off, chip, ch) in enumerate(exg):
            v = raw32[:, off] << 16 | raw32[:, off + 1] << 8 | raw32[:, off + 2]
            v = np.where(v & 0x800000, v - (1 << 24), v)
            gain = self._gains.get((chip, ch), DEFAULT_GAIN)
            uv[:, j] = v * (EXG_VREF / (2**23 - 1) / gain * 1e6)
        out.extend(EmgFrame(0, c0, block) for c0, block in counter_runs(counters, uv))
        if len(acc) == 3:
            codes = np.stack([raw32[:, o] | raw32[:, o + 1] << 8 for o in acc], axis=1)
            a = self.acc_calibration.apply(codes) / G0
            out.extend(AccFrame(0, c0, block) for c0, block in counter_runs(counters, a))
        return out


register_decoder(ShimmerDecoder.kind, ShimmerDecoder)
