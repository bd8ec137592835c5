"""BITalino (r)evolution over Bluetooth serial (RFCOMM): CRC-4 frames of 4-bit sequence numbers.

Written from PLUX's BITalino (r)evolution documents (the "BITalino (r)evolution Lab Guide",
the serial API's frame and command description in BITalinoWorld/revolution-python-api
``bitalino.py``, and the EMG sensor datasheet's transfer function). A frame, read from its last
byte backwards::

    last byte      : seq (4 bits, counts frames modulo 16) | CRC-4 (4 bits)
    byte -2        : I1 I2 O1 O2 (digital) | first analog channel, bits 9..6
    then           : 10-bit channels for the first four acquired inputs, 6-bit for the fifth and
                     sixth (A5, A6), packed MSB first towards the front of the frame

Frame length: ceil((12 + 10 n) / 8) bytes for n <= 4 channels, ceil((52 + 6 (n - 4)) / 8) above.
The CRC-4 (x^4 + x + 1) runs over every bit of the frame, MSB first, with the CRC nibble as 0.

Commands (one byte each): ``<rate> 0 0 0 0 1 1`` sets the rate (0: 1 Hz, 1: 10, 2: 100,
3: 1000 Hz), ``A6..A1 0 1`` starts live acquisition of the inputs set, ``0x00`` stops,
``0xFF`` returns to idle from any mode, ``0x07`` asks for the version string.

Units (transfer functions, n = bits of the channel):

* EMG (uV) = (ADC / 2^n - 1/2) x VCC / G_EMG x 1e6, VCC = 3.3 V, G_EMG = 1009; for a 10-bit
  input that is (ADC - 512) x 3.194 uV.
* ACC (g) = (ADC - Cmin) / (Cmax - Cmin) x 2 - 1. Cmin / Cmax are per-device calibration
  values (the ADC codes at -1 g and +1 g). Defaults here are the nominal values of the board's
  ADXL335 (ratiometric, zero g at VCC/2, 0.1 VCC per g): 25.6 and 38.4 on the 6-bit A5.
  The board kit wires one axis (the ACC's Z) to A5: the frames carry x = y = 0 g and z measured.

The default mapping acquires all six inputs: EMG sensors on A1-A4, the accelerometer on A5, A6
unused (``BitalinoDecoder(emg_inputs=..., acc_input=...)`` changes it).

The sequence number restarts with every start command, so each connection has its own
``boot_id`` (``InfoFrame.per_connection``); inside a connection up to 14 consecutive lost frames
are an exact hole in the counter (15 lost make the next frame carry the last one's number: it is
dropped as a repeat and counted; a longer loss wraps undetectably and is absorbed by the clock).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ingest.wire.base import BleProfile, DeviceWrite, counter_runs, register_decoder
from ingest.wire.protocol import AccFrame, DecoderStats, EmgFrame, Frame, InfoFrame

__all__ = [
    "ACC_CMAX_6BIT",
    "ACC_CMIN_6BIT",
    "EMG_GAIN",
    "RATE_CODES",
    "VCC",
    "BitalinoDecoder",
    "crc4",
    "decode_frames",
    "frame_size",
    "start_command",
]

VCC = 3.3
EMG_GAIN = 1009.0
#: Nominal calibration of the A5 accelerometer (6-bit codes at -1 g and +1 g): ADXL335 at 3.3 V.
ACC_CMIN_6BIT = 25.6
ACC_CMAX_6BIT = 38.4
RATE_CODES = {1: 0, 10: 1, 100: 2, 1000: 3}
DEFAULT_RATE_HZ = 1000
#: Longest pre-stream text kept (the version string is ~20 bytes).
MAX_TEXT = 512


def frame_size(n_channels: int) -> int:
    """Bytes per frame when ``n_channels`` analog inputs are acquired (1..6)."""
    if n_channels <= 4:
        return (12 + 10 * n_channels + 7) // 8
    return (52 + 6 * (n_channels - 4) + 7) // 8


def _crc_table() -> np.ndarray:
    """CRC-4 state transitions: table[state, byte] -> state after the byte's 8 bits, MSB first."""
    table = np.zeros((16, 256), dtype=np.uint8)
    for state in range(16):
        for byte in range(256):
            s = state
            for bit in range(7, -1, -1):
                top = s >> 3 & 1
                s = ((s << 1) & 0xF) ^ (0x3 if top else 0) ^ (byte >> bit & 1)
            table[state, byte] = s
    return table


_CRC = _crc_table()


def crc4(frame: bytes | bytearray | memoryview) -> int:
    """The CRC-4 a frame must carry in its last nibble (computed with that nibble as 0)."""
    s = 0
    data = bytes(frame)
    for b in data[:-1]:
        s = int(_CRC[s, b])
    return int(_CRC[s, data[-1] & 0xF0])


def start_command(inputs: Sequence[int]) -> int:
    """Live-mode start for inputs (0 = A1 ... 5 = A6)."""
    mask = 0
    for i in inputs:
        mask |= 1 << (2 + i)
    return mask | 0x01


def decode_frames(frames: np.ndarray, n_channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, frame_size) uint8 frames -> (seq (k,), digital (k, 4), analog (k, n_channels)).

    Analog values are the raw ADC codes (10-bit for the first four channels, 6-bit after).
    """
    d = frames.astype(np.int32)
    seq = d[:, -1] >> 4
    digital = np.stack([(d[:, -2] >> b) & 1 for b in (7, 6, 5, 4)], axis=1)
    a = np.zeros((len(d), n_channels), dtype=np.int32)
    if n_channels > 0:
        a[:, 0] = ((d[:, -2] & 0x0F) << 6) | (d[:, -3] >> 2)
    if n_channels > 1:
        a[:, 1] = ((d[:, -3] & 0x03) << 8) | d[:, -4]
    if n_channels > 2:
        a[:, 2] = (d[:, -5] << 2) | (d[:, -6] >> 6)
    if n_channels > 3:
        a[:, 3] = ((d[:, -6] & 0x3F) << 4) | (d[:, -7] >> 4)
    if n_channels > 4:
        a[:, 4] = ((d[:, -7] & 0x0F) << 2) | (d[:, -8] >> 6)
    if n_channels > 5:
        a[:, 5] = d[:, -8] & 0x3F
    return seq, digital, a


class BitalinoDecoder:
    """BITalino frames to frames. One instance per connection; never raises on input."""

    kind: ClassVar[str] = "bitalino"
    ble_profile: ClassVar[BleProfile | None] = None

    def __init__(
        self,
        *,
        rate_hz: int = DEFAULT_RATE_HZ,
        emg_inputs: Sequence[int] = (0, 1, 2, 3),
        acc_input: int | None = 4,
        acc_cmin: float = ACC_CMIN_6BIT,
        acc_cmax: float = ACC_CMAX_6BIT,
    ) -> None:
        if rate_hz not in RATE_CODES:
            raise ValueError(f"BITalino rate must be one of {sorted(RATE_CODES)} Hz, got {rate_hz}")
        if not emg_inputs or len(set(emg_inputs)) != len(emg_inputs) or not set(emg_inputs) <= {0, 1, 2, 3}:
            raise ValueError(
                f"BITalino EMG inputs must be distinct 10-bit inputs A1..A4, got {list(emg_inputs)}"
            )
        if acc_input is not None and acc_input not in (4, 5):
            raise ValueError(
                f"BITalino accelerometer input must be a 6-bit input (A5, A6), got A{acc_input + 1}"
            )
        if acc_cmax <= acc_cmin:
            raise ValueError(f"BITalino ACC calibration: Cmax {acc_cmax} must exceed Cmin {acc_cmin}")
        self.stats = DecoderStats()
        self.last_error: str | None = None
        self.rate_hz = rate_hz
        #: Every input is acquired (the frame layout depends only on how many).
        self.inputs = tuple(range(6))
        self.emg_inputs = tuple(emg_inputs)
        self.acc_input = acc_input
        self.acc_cmin, self.acc_cmax = float(acc_cmin), float(acc_cmax)
        self.size = frame_size(len(self.inputs))
        self.firmware = ""
        self._buf = bytearray()
        self._offset = 0
        self._text = bytearray()
        self._in_sync = False
        self._streaming = False
        self._last_seq: int | None = None
        self._counter = 0
        self._info: InfoFrame | None = None
        self._boot_id = random.getrandbits(32)

    # -- commands ----------------------------------------------------------------------------
    def start_commands(self) -> list[DeviceWrite]:
        return [
            DeviceWrite(b"\xff"),  # to idle, whatever mode a previous session left it in
            DeviceWrite(b"\x07"),  # version string (idle only)
            DeviceWrite(bytes([RATE_CODES[self.rate_hz] << 6 | 0x03])),
            DeviceWrite(bytes([start_command(self.inputs)])),
        ]

    def stop_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(b"\x00")]

    def info_request(self) -> DeviceWrite | None:
        return None

    # -- decoding ----------------------------------------------------------------------------
    def _crc_ok(self, pos: int) -> bool:
        return crc4(self._buf[pos : pos + self.size]) == self._buf[pos + self.size - 1] & 0x0F

    def feed(self, data: bytes, source: str = "", t_host: float | None = None) -> list[Frame]:
        self.stats.bytes_in += len(data)
        self._buf += data
        buf, size = self._buf, self.size
        good: list[int] = []  # start offsets of accepted frames
        pos = 0
        skipped_from: int | None = None
        expect = (self._last_seq + 1) & 0xF if self._last_seq is not None else -1
        while len(buf) - pos >= size:
            if self._crc_ok(pos):
                seq = buf[pos + size - 1] >> 4
                if self._in_sync and seq == expect:
                    ok = True  # the next frame in order
                elif len(buf) - pos >= 2 * size:
                    # A CRC-4 alone passes one window in 16 (and a corrupted frame one in 16): a
                    # frame out of sync or out of order is taken only if the next one follows it.
                    nxt = pos + size
                    ok = self._crc_ok(nxt) and buf[nxt + size - 1] >> 4 == (seq + 1) & 0xF
                else:
                    break  # wait for the confirming frame
                if ok:
                    if skipped_from is not None:
                        self._skipped(skipped_from, pos)
                        skipped_from = None
                    good.append(pos)
                    expect = (seq + 1) & 0xF
                    self._in_sync = True
                    pos += size
                    continue
            if self._in_sync:
                self._in_sync = False
                self.stats.count("crc")
                self.last_error = f"crc: BITalino frame at stream byte {self._offset + pos} fails its CRC-4"
                pos += size
                continue
            if not self._streaming and not good:
                if len(self._text) < MAX_TEXT:
                    self._text.append(buf[pos])
                if buf[pos] == 0x0A:
                    self._parse_text()
            elif skipped_from is None:
                skipped_from = pos
            pos += 1
        if skipped_from is not None:
            self._skipped(skipped_from, pos)
        frames = np.array(
            [np.frombuffer(bytes(buf[p : p + size]), dtype=np.uint8) for p in good], dtype=np.uint8
        ).reshape(len(good), size)
        del buf[:pos]
        self._offset += pos
        if not len(frames):
            return []
        return self._frames(frames)

    def _skipped(self, start: int, end: int) -> None:
        self.stats.count("sync")
        self.last_error = (
            f"sync: {end - start} bytes without a valid BITalino frame at stream byte {self._offset + start}"
        )

    def _parse_text(self) -> None:
        m = re.search(rb"BITalino[_ ]?v?([0-9][0-9.]*)", bytes(self._text))
        if m:
            self.firmware = ("v" + m.group(1).decode("ascii"))[:16]

    def _info_frame(self) -> InfoFrame:
        labels = tuple(f"A{i + 1}" for i in self.emg_inputs)
        return InfoFrame(
            seq=0,
            counter=0,
            boot_id=self._boot_id,
            emg_rate_hz=self.rate_hz,
            acc_rate_hz=self.rate_hz if self.acc_input is not None else 0,
            emg_scale_uv=VCC / EMG_GAIN / 1024 * 1e6,
            acc_scale_g=2.0 / (self.acc_cmax - self.acc_cmin),
            device_id="bitalino",
            firmware=self.firmware or "bitalino",
            channel_labels=labels,
            per_connection=True,
        )

    def _frames(self, frames: np.ndarray) -> list[Frame]:
        seq, _digital, analog = decode_frames(frames, len(self.inputs))
        counters = np.empty(len(seq), dtype=np.int64)
        keep = np.ones(len(seq), dtype=bool)
        for i, s in enumerate(seq.tolist()):
            if self._last_seq is None:
                self._counter = s
            else:
                step = (s - self._last_seq) & 0xF
                if step == 0:
                    self.stats.count("duplicate")
                    self.last_error = f"duplicate: sequence number {s} repeated"
                    keep[i] = False
                    continue
                self._counter += step
            self._last_seq = s
            counters[i] = self._counter
        self.stats.frames += int(keep.sum())
        self._streaming = self._streaming or bool(keep.any())
        counters, analog = counters[keep], analog[keep]
        out: list[Frame] = []
        if not len(counters):
            return out
        if self._info is None:
            self._info = self._info_frame()
            out.append(self._info)
        emg = (analog[:, list(self.emg_inputs)] - 512).astype(np.int16)
        for c0, block in counter_runs(counters, emg):
            out.append(EmgFrame(0, c0, block))
        if self.acc_input is not None:
            z = analog[:, self.acc_input].astype(np.float64) - (self.acc_cmin + self.acc_cmax) / 2
            acc = np.zeros((len(z), 3), dtype=np.float64)
            acc[:, 2] = z
            for c0, block in counter_runs(counters, acc):
                out.append(AccFrame(0, c0, block))
        return out


register_decoder(BitalinoDecoder.kind, BitalinoDecoder)
