"""Shimmer3 ExG personality (LogAndStream firmware over Bluetooth serial; here: the pty).

Answers the host's commands as the firmware does (every command acknowledged with 0xFF; the
inquiry, ExG-register and sampling-rate requests with their responses), samples the enabled
sensors (low-noise accelerometer, ExG chip 1, optionally chip 2) at 32768 Hz / divider, and
stamps each packet with the free-running 32768 Hz real-time clock (3 bytes), which does *not*
restart with streaming. ExG registers are those of Shimmer's EMG configuration: gain 12 on both
channels of chip 1, chip 2 powered down; the host may write them (0x61), and the samples are
quantised at chip 1's CH1SET gain.
"""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from firmware_sim.personalities import HostReply, Packet, Personality, PersonalityDevice, register_personality
from ingest.wire.shimmer import (
    ACC_LN_OFFSET,
    ACC_LN_SENSITIVITY,
    ACK,
    ALL_CALIBRATION_RESPONSE,
    CALIBRATION_BYTES,
    CLOCK_HZ,
    EXG_REGS_RESPONSE,
    EXG_VREF,
    G0,
    GET_ALL_CALIBRATION,
    GET_EXG_REGS,
    INQUIRY_COMMAND,
    INQUIRY_RESPONSE,
    SENSOR_ACCEL_LN,
    SENSOR_EXG1_24,
    SENSOR_EXG2_24,
    SET_EXG_REGS,
    SET_SAMPLING_RATE,
    SET_SENSORS,
    START_STREAMING,
    STOP_STREAMING,
    exg_gain,
)

#: ADS1292R registers 0x00-0x09 of Shimmer's EMG configuration (CH1SET / CH2SET gain 12).
EMG_REGS_CHIP1 = bytes([0x02, 0xA0, 0x10, 0x69, 0x60, 0x20, 0x00, 0x00, 0x02, 0x03])
EMG_REGS_CHIP2 = bytes([0x02, 0xA0, 0x10, 0xE1, 0xE1, 0x00, 0x00, 0x00, 0x02, 0x01])
#: Stored kinematic calibrations (0x2D): the LN accelerometer's as the simulator quantises it
#: (offset 2047, 83 LSB per m/s^2, axes aligned), the others blank.
CALIBRATION = (struct.pack(">3h3h9b", 2047, 2047, 2047, 83, 83, 83, 100, 0, 0, 0, 100, 0, 0, 0, 100)).ljust(
    CALIBRATION_BYTES, b"\x00"
)
#: Arguments after each command byte (SET_EXG_REGS: 3, then as many as its length byte says).
_ARGS = {SET_SAMPLING_RATE: 2, SET_SENSORS: 3, GET_EXG_REGS: 3, SET_EXG_REGS: 3}
#: Packets per fault-injection unit (16 ms at 1024 Hz).
_BLOCK = 16


@register_personality
class ShimmerPersonality(Personality):
    kind: ClassVar[str] = "shimmer"
    restarts_counter_on_start: ClassVar[bool] = False

    def __init__(self, device: PersonalityDevice, **options: str) -> None:
        super().__init__(device, **options)
        self.divider = 32
        self.sensors = SENSOR_ACCEL_LN | SENSOR_EXG1_24
        self.regs = [bytearray(EMG_REGS_CHIP1), bytearray(EMG_REGS_CHIP2)]
        self._cmd = bytearray()
        self._apply()

    @property
    def gain(self) -> int:
        """The gain the samples are quantised at: chip 1's CH1SET (the simulator keeps one)."""
        return exg_gain(self.regs[0][3])

    def _apply(self) -> None:
        n = 4 if self.sensors & SENSOR_EXG2_24 else 2
        self.configure(
            emg_rate_hz=CLOCK_HZ / self.divider, acc_rate_hz=CLOCK_HZ / self.divider, n_channels=n,
            emg_lsb_uv=EXG_VREF / (2**23 - 1) / self.gain * 1e6, acc_lsb_g=1.0 / ACC_LN_SENSITIVITY / G0,
            block_samples=_BLOCK, emg_code_range=(-(1 << 23), (1 << 23) - 1), acc_code_range=(0, 4095),
            acc_offset=ACC_LN_OFFSET,
        )  # fmt: skip

    def on_reboot(self) -> None:
        self.divider = 32
        self.sensors = SENSOR_ACCEL_LN | SENSOR_EXG1_24
        self.regs = [bytearray(EMG_REGS_CHIP1), bytearray(EMG_REGS_CHIP2)]
        self._cmd.clear()
        self._apply()

    def _channel_ids(self) -> list[int]:
        ids: list[int] = []
        if self.sensors & SENSOR_ACCEL_LN:
            ids += [0x00, 0x01, 0x02]
        if self.sensors & SENSOR_EXG1_24:
            ids += [0x1D, 0x1E, 0x1F]
        if self.sensors & SENSOR_EXG2_24:
            ids += [0x20, 0x21, 0x22]
        return ids

    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        r = HostReply()
        for b in data:
            self._cmd.append(b)
            op = self._cmd[0]
            if len(self._cmd) <= _ARGS.get(op, 0):
                continue  # arguments still to come
            if op == SET_EXG_REGS and len(self._cmd) < 4 + self._cmd[3]:
                continue  # chip, offset, length, then that many register bytes
            args = bytes(self._cmd[1:])
            self._cmd.clear()
            r.reply += bytes([ACK])
            if op == START_STREAMING:
                r.start, r.stop = True, False
            elif op == STOP_STREAMING:
                r.stop, r.start = True, False
            elif op == SET_SAMPLING_RATE:
                (self.divider,) = struct.unpack("<H", args)
                self.divider = max(1, self.divider)
                self._apply()
            elif op == SET_SENSORS:
                self.sensors = args[0]
                self._apply()
            elif op == SET_EXG_REGS:
                chip, start, length = args[:3]
                if chip <= 1 and start + length <= 10:
                    self.regs[chip][start : start + length] = args[3:]
                    if chip == 0 and start <= 3 < start + length:  # CH1SET: the gain sampled at
                        self._apply()
            elif op == GET_EXG_REGS:
                chip, start, length = args
                regs = bytes(self.regs[min(chip, 1)][start : start + length])
                r.reply += bytes([EXG_REGS_RESPONSE, len(regs)]) + regs
            elif op == GET_ALL_CALIBRATION:
                r.reply += bytes([ALL_CALIBRATION_RESPONSE]) + CALIBRATION
            elif op == INQUIRY_COMMAND:
                ids = self._channel_ids()
                r.reply += bytes([INQUIRY_RESPONSE]) + struct.pack("<HIBB", self.divider, 0, len(ids), 1)
                r.reply += bytes(ids)
        return r

    def packets(self, first: int, n: int) -> list[Packet]:
        emg = self.emg_counts(first, n)
        a0, _ = self.acc_span(first, n)
        parts: list[np.ndarray] = []
        ts = (np.arange(first, first + n, dtype=np.int64) * self.divider) & 0xFFFFFF
        parts.append(np.zeros((n, 1), dtype=np.int64))
        parts.append(np.stack([ts & 0xFF, ts >> 8 & 0xFF, ts >> 16 & 0xFF], axis=1))
        if self.sensors & SENSOR_ACCEL_LN:
            acc = self.acc_counts(a0, n)
            parts.append(np.stack([acc & 0xFF, acc >> 8 & 0xFF], axis=2).reshape(n, 6))
        for chip in (0, 1):
            if not self.sensors & (SENSOR_EXG1_24 if chip == 0 else SENSOR_EXG2_24):
                continue
            v = emg[:, 2 * chip : 2 * chip + 2] & 0xFFFFFF
            parts.append(np.full((n, 1), 0xC0, dtype=np.int64))  # status: leads on
            parts.append(np.stack([v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF], axis=2).reshape(n, 6))
        rows = np.concatenate(parts, axis=1).astype(np.uint8)
        return [Packet(self.emg_frame(first, emg), "", rows.tobytes())]
