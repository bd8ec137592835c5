"""OpenBCI Cyton (and Cyton + Daisy) over its USB radio dongle: 33-byte packets at 115200 baud.

Written from OpenBCI's "Cyton Data Format" and "Cyton SDK" documents
(https://docs.openbci.com/Cyton/CytonDataFormat/, repository OpenBCI/Documentation,
``website/docs/Cyton/03-Cyton_Data_Format.md``). A packet is::

    0xA0 | sample number (u8) | 8 x 24-bit signed, MSB first | 6 aux bytes | footer 0xCX

* EMG: volts = counts x 4.5 V / gain / (2^23 - 1). The decoder sets every channel to gain 24
  (the board's default, 0.02235 uV per count) with the channel-setting commands ``x...X``.
* Aux bytes with footer 0xC0 are the accelerometer (3 x int16, MSB first, 0.002 g / 2^4 per
  count, "if unused, the bytes will read 0"): the LIS3DH runs at 25 Hz, so about one packet in
  ten carries a sample. Other footers (0xC1-0xCF) carry user data or time stamps: their EMG is
  decoded, their aux bytes are not accelerometer and are ignored.
* The sample number counts packets modulo 256. The decoder unwraps it, so lost packets become
  an exact hole in the counter: up to 254 consecutive packets (about a second) by the number
  alone (255 lost make the next packet look like a repeat); a longer loss inside one
  connection by the number modulo 256 and the chunks' arrival times, which tell how many whole
  wraps passed (``ingest.wire.base.WrapCounter``: exact while the host's arrival jitter stays
  under half a wrap, 0.5 s; a loss of exactly 256 k packets is not told from a host stall).
* Daisy (16 channels): packets alternate, the board's 8 channels on odd sample numbers and the
  Daisy's on the following even one, each an average of two 250 Hz samples; one 16-channel
  sample is one (odd, even) pair, at 125 Hz. The decoder learns of a Daisy from the text the
  board prints after the soft reset ``v`` ("On Daisy ADS1299 Device ID: ...").
* Streaming restarts the sample number (``b`` restarts the ADS1299), so each connection is its
  own ``boot_id`` (``InfoFrame.per_connection``): the session measures a reconnect's gap in time.

Before streaming the board talks ASCII (the reset banner ending in ``$$$``, replies to channel
settings); that text is read for the Daisy and the firmware version, never counted as errors.
"""

from __future__ import annotations

import random
import re
from typing import ClassVar

import numpy as np

from ingest.wire.base import BleProfile, DeviceWrite, WrapCounter, counter_runs, register_decoder
from ingest.wire.protocol import AccFrame, DecoderStats, EmgFrame, Frame, InfoFrame

__all__ = [
    "ACC_SCALE_G",
    "BAUDRATE",
    "DEFAULT_GAIN",
    "PACKET_SIZE",
    "CytonDecoder",
    "channel_settings",
    "emg_scale_uv",
]

BAUDRATE = 115200
PACKET_SIZE = 33
HEADER = 0xA0
FOOTER_ACCEL = 0xC0
SAMPLE_RATE_HZ = 250
DAISY_RATE_HZ = 125
ACC_RATE_HZ = 25
DEFAULT_GAIN = 24
#: g per accelerometer count: "0.002 / 2^4" (LIS3DH at +-4 g, 2 mg per digit, left-justified).
ACC_SCALE_G = 0.002 / 2**4
#: ADS1299 gain codes of the ``x`` command (SDK: 0 -> 1x ... 6 -> 24x).
GAIN_CODES = {1: 0, 2: 1, 4: 2, 6: 3, 8: 4, 12: 5, 24: 6}
#: Channel keys of the ``x`` command: 1-8 on the board, Q W E R T Y U I on the Daisy.
CHANNEL_KEYS = "12345678QWERTYUI"
#: Longest pre-stream text kept for parsing (the banner is ~120 bytes).
MAX_TEXT = 2048


def emg_scale_uv(gain: int = DEFAULT_GAIN) -> float:
    """Microvolts per count at an ADS1299 gain: 4.5 V / gain / (2^23 - 1), in uV."""
    return 4.5 / gain / (2**23 - 1) * 1e6


def channel_settings(channel: int, *, gain: int = DEFAULT_GAIN, srb2: bool = False) -> bytes:
    """The SDK's ``x (CHANNEL) (POWER_DOWN) (GAIN_SET) (INPUT_TYPE) (BIAS_SET) (SRB2) (SRB1) X``.

    For bipolar sEMG each channel measures its own N and P pins: powered, normal input, in the
    bias drive, SRB2 and SRB1 disconnected (SRB2 is for a common-reference EEG montage).
    """
    key = CHANNEL_KEYS[channel - 1]
    return f"x{key}0{GAIN_CODES[gain]}01{int(srb2)}0X".encode("ascii")


def _int24(raw: np.ndarray) -> np.ndarray:
    """(n, k*3) uint8 big-endian 24-bit groups -> (n, k) int32, sign-extended."""
    b = raw.reshape(raw.shape[0], -1, 3).astype(np.int32)
    v = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    return np.where(v & 0x800000, v - (1 << 24), v).astype(np.int32)


class CytonDecoder:
    """Cyton packets to frames. One instance per connection; never raises on input."""

    kind: ClassVar[str] = "cyton"
    ble_profile: ClassVar[BleProfile | None] = None

    def __init__(self, *, daisy: bool | None = None, gain: int = DEFAULT_GAIN) -> None:
        self.stats = DecoderStats()
        self.last_error: str | None = None
        self.gain = gain
        #: None: not known yet (8 channels unless the reset banner names a Daisy).
        self.daisy = daisy
        self.firmware = ""
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]
        self._text = bytearray()
        self._streaming = False  # a packet was decoded: stray bytes are errors from now on
        self._in_sync = False
        self._info: InfoFrame | None = None
        self._boot_id = random.getrandbits(32)
        #: The 8-bit sample number unwrapped; arrival times count the wraps of a long loss.
        self._sn = WrapCounter(256, SAMPLE_RATE_HZ)
        self._acc_last: int | None = None
        self._half: tuple[int, np.ndarray] | None = None  # Daisy: the odd packet awaiting its pair

    # -- commands ----------------------------------------------------------------------------
    def start_commands(self) -> list[DeviceWrite]:
        """Stop, soft reset (the banner says whether a Daisy is fitted), bipolar gain-24 inputs,
        then stream. Settings for the Daisy's channels are refused harmlessly without one."""
        cmds = [DeviceWrite(b"s"), DeviceWrite(b"v")]
        cmds += [DeviceWrite(channel_settings(ch, gain=self.gain)) for ch in range(1, 17)]
        cmds.append(DeviceWrite(b"b"))
        return cmds

    def stop_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(b"s")]

    def info_request(self) -> DeviceWrite | None:
        return None  # the decoder describes the board itself; nothing to ask mid-stream

    # -- decoding ----------------------------------------------------------------------------
    def feed(self, data: bytes, source: str = "", t_host: float | None = None) -> list[Frame]:
        self.stats.bytes_in += len(data)
        self._buf += data
        buf = self._buf
        out: list[Frame] = []
        rows: list[tuple[int, bytes]] = []  # (unwrapped packet counter, packet) of this call
        pos = 0
        skipped_from: int | None = None
        while len(buf) - pos >= PACKET_SIZE:
            if buf[pos] == HEADER and buf[pos + PACKET_SIZE - 1] & 0xF0 == 0xC0:
                confirmed = self._in_sync or (
                    len(buf) - pos < PACKET_SIZE + 1 or buf[pos + PACKET_SIZE] == HEADER
                )
                if confirmed:
                    if skipped_from is not None:
                        self._skipped(skipped_from, pos)
                        skipped_from = None
                    row = self._place(bytes(buf[pos : pos + PACKET_SIZE]), t_host)
                    if row is not None:
                        rows.append(row)
                    pos += PACKET_SIZE
                    self._in_sync = True
                    continue
            # Not a packet here: pre-stream text, or a resynchronisation.
            if self._in_sync:
                self._in_sync = False
            if not self._streaming:
                if len(self._text) < MAX_TEXT:
                    self._text.append(buf[pos])
                if buf[pos] == ord("$") and self._text.endswith(b"$$$"):
                    self._parse_banner()
            elif skipped_from is None:
                skipped_from = pos
            pos += 1
        if skipped_from is not None:
            self._skipped(skipped_from, pos)
        del buf[:pos]
        self._offset += pos
        if rows:
            out.extend(self._frames(rows))
        return out

    def _skipped(self, start: int, end: int) -> None:
        self.stats.count("sync")
        self.last_error = (
            f"sync: {end - start} bytes without a Cyton packet (0xA0 ... 0xCX) at stream byte "
            f"{self._offset + start}"
        )

    def _parse_banner(self) -> None:
        text = self._text.decode("ascii", "replace")
        if self.daisy is None and re.search(r"Daisy ADS1299 Device ID", text):
            self.daisy = True
        m = re.search(r"Firmware:\s*(v[0-9.]+)", text)
        if m:
            self.firmware = m.group(1)[:16]

    def _place(self, packet: bytes, t_host: float | None) -> tuple[int, bytes] | None:
        """Unwrap the 8-bit sample number into the connection's packet counter."""
        sn = packet[1]
        counter = self._sn.advance(sn, t_host)
        if counter is None:  # the same packet twice (a radio retransmission): keep the first
            self.stats.count("duplicate")
            self.last_error = f"duplicate: sample number {sn} repeated"
            return None
        self.stats.frames += 1
        self._streaming = True
        return counter, packet

    def _info_frame(self) -> InfoFrame:
        n = 16 if self.daisy else 8
        return InfoFrame(
            seq=0,
            counter=0,
            boot_id=self._boot_id,
            emg_rate_hz=DAISY_RATE_HZ if self.daisy else SAMPLE_RATE_HZ,
            acc_rate_hz=ACC_RATE_HZ,
            emg_scale_uv=emg_scale_uv(self.gain),
            acc_scale_g=ACC_SCALE_G,
            device_id="cyton-daisy" if self.daisy else "cyton",
            firmware=self.firmware or "cyton",
            channel_labels=tuple(f"ch{i + 1}" for i in range(n)),
            per_connection=True,
        )

    def _frames(self, rows: list[tuple[int, bytes]]) -> list[Frame]:
        out: list[Frame] = []
        if self._info is None:
            self._info = self._info_frame()
            out.append(self._info)
        counters = np.array([c for c, _ in rows], dtype=np.int64)
        raw = np.frombuffer(b"".join(p for _, p in rows), dtype=np.uint8).reshape(len(rows), PACKET_SIZE)
        emg = _int24(raw[:, 2:26])
        footer = raw[:, 32]
        aux = raw[:, 26:32].astype(np.int32)
        acc = (aux[:, 0::2] << 8) | aux[:, 1::2]
        acc = np.where(acc & 0x8000, acc - 0x10000, acc)
        has_acc = (footer == FOOTER_ACCEL) & acc.any(axis=1)
        if self.daisy:
            samples, sample_counters, acc_at = self._pair(counters, emg, has_acc)
            per_acc = SAMPLE_RATE_HZ // ACC_RATE_HZ // 2
        else:
            samples, sample_counters, acc_at = emg, counters, counters
            per_acc = SAMPLE_RATE_HZ // ACC_RATE_HZ
        out.extend(_runs(sample_counters, samples))
        acc_rows = np.nonzero(has_acc)[0]
        if len(acc_rows):
            acc_counters = []
            for r in acc_rows:
                c = round(int(acc_at[r]) / per_acc)
                if self._acc_last is not None and c <= self._acc_last:
                    c = self._acc_last + 1
                self._acc_last = c
                acc_counters.append(c)
            out.extend(
                AccFrame(0, c0, block.astype(np.int16))
                for c0, block in counter_runs(np.array(acc_counters), acc[acc_rows])
            )
        return out

    def _pair(
        self, counters: np.ndarray, emg: np.ndarray, has_acc: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Daisy: (odd board packet, next even Daisy packet) -> one 16-channel sample."""
        samples: list[np.ndarray] = []
        idx: list[int] = []
        acc_at = np.zeros(len(counters), dtype=np.int64)
        for i, c in enumerate(counters):
            c = int(c)
            acc_at[i] = (c - 1) // 2
            if c % 2 == 1:
                self._half = (c, emg[i])
            elif self._half is not None and self._half[0] == c - 1:
                samples.append(np.concatenate([self._half[1], emg[i]]))
                idx.append((c - 2) // 2)
                self._half = None
            else:
                self._half = None  # its board half was lost: the 16-channel sample is lost
        if not samples:
            return np.zeros((0, 16), dtype=np.int32), np.zeros(0, dtype=np.int64), acc_at
        return np.array(samples, dtype=np.int32), np.array(idx, dtype=np.int64), acc_at


def _runs(counters: np.ndarray, samples: np.ndarray) -> list[Frame]:
    return [EmgFrame(0, c0, block) for c0, block in counter_runs(counters, samples)]


register_decoder(CytonDecoder.kind, CytonDecoder)
