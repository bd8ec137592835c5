"""The Polar H10 chest strap as the simulator speaks it (device side of ``ingest.wire.polar``).

Only the accelerometer of the PMD service (Polar's BLE SDK): the strap is idle until the host
writes REQUEST_MEASUREMENT_START for ACC to the control point, answers on the control point
(``F0 op type status more``), and then notifies PMD data frames: measurement type 2, the 64-bit
timestamp (ns) of the frame's last sample, frame type 0x01 (raw int16 x, y, z in mG, as the H10
sends) or, with ``--device-option compressed=1``, 0x81 (a reference sample and one block of
deltas). The sample rate and range are the ones the host asked for (25/50/100/200 Hz, 2/4/8 g).
The device clock: the strap's time was set (by a phone) to 2026-01-01 at power-on; it restarts at
a reboot, which the decoder sees as a new timeline. The scenario's EMG is not used: the H10 has none.
"""

from __future__ import annotations

import struct
from typing import ClassVar, Literal

import numpy as np

from firmware_sim.personalities import (
    GattCharacteristic,
    GattService,
    HostReply,
    Packet,
    Personality,
    PersonalityDevice,
    register_personality,
)
from ingest.wire.polar import (
    ALREADY_IN_STATE,
    CP_RESPONSE,
    CP_START,
    CP_STOP,
    DEFAULT_RANGE_G,
    DEFAULT_RATE_HZ,
    H10_RANGES_G,
    H10_RATES_HZ,
    MEASUREMENT_ACC,
    PMD_CP,
    PMD_DATA,
    PMD_SERVICE,
    SETTING_RANGE,
    SETTING_SAMPLE_RATE,
)

HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
#: 2026-01-01T00:00:00Z in ns since 2000-01-01 (Polar's epoch), when the strap's clock was set.
CLOCK_SET_NS = 852_076_800 * 1_000_000_000
#: Samples per frame: 36 x 6 bytes + 10 of header fit one notification at the H10's MTU (232).
FRAME_SAMPLES = 36


def delta_encode(codes: np.ndarray) -> bytes:
    """Polar's delta compression of (n, 3) int16 samples: reference sample, one block of deltas."""
    ref = codes[0].astype("<i2").tobytes()
    if len(codes) == 1:
        return ref
    deltas: np.ndarray = np.diff(codes.astype(np.int64), axis=0)
    peak = int(np.abs(deltas).max())
    width = max(2, peak.bit_length() + 1)
    vals = (deltas.reshape(-1) & ((1 << width) - 1)).astype(np.uint64)
    bits = ((vals[:, None] >> np.arange(width, dtype=np.uint64)) & 1).astype(np.uint8).reshape(-1)
    return ref + bytes([width, len(deltas)]) + np.packbits(bits, bitorder="little").tobytes()


@register_personality
class PolarH10Personality(Personality):
    kind: ClassVar[str] = "polar-h10"
    link: ClassVar[Literal["serial", "ble"]] = "ble"
    advertised_name: ClassVar[str] = "Polar H10 5E1A0001"
    advertised_uuids: ClassVar[tuple[str, ...]] = (HEART_RATE_SERVICE,)
    options_help: ClassVar[dict[str, str]] = {"compressed": "1: send delta-compressed frames (type 0x81)"}
    # PMD first: its first notify characteristic (the control point) is what ends an outage.
    #: Streaming restarts nothing: the strap time-stamps with its clock, which runs from power-on.
    restarts_counter_on_start: ClassVar[bool] = False
    gatt: ClassVar[tuple[GattService, ...]] = (
        GattService(PMD_SERVICE, (
            GattCharacteristic(PMD_CP, ("read", "write", "notify")),
            GattCharacteristic(PMD_DATA, ("notify",)),
        )),
        GattService(HEART_RATE_SERVICE, (GattCharacteristic(HEART_RATE_MEASUREMENT, ("notify",)),)),
    )  # fmt: skip

    def __init__(self, device: PersonalityDevice, **options: str) -> None:
        super().__init__(device, **options)
        self.compressed = options.get("compressed", "0") not in ("0", "", "false", "no")
        self._setup(DEFAULT_RATE_HZ, DEFAULT_RANGE_G)

    def _setup(self, rate_hz: int, range_g: int) -> None:
        self.rate_hz, self.range_g = rate_hz, range_g
        full = 1000 * range_g
        # No EMG: the pacing clock is the accelerometer's (one "EMG" tick per ACC sample, 0 channels).
        self.configure(
            emg_rate_hz=rate_hz, acc_rate_hz=rate_hz, n_channels=0, emg_lsb_uv=1.0, acc_lsb_g=0.001,
            block_samples=FRAME_SAMPLES, acc_code_range=(-full, full - 1),
        )  # fmt: skip

    def packets(self, first: int, n: int) -> list[Packet]:
        codes = self.acc_counts(first, n).astype(np.int16)
        ts = CLOCK_SET_NS + (first + n - 1) * (1_000_000_000 // self.rate_hz)
        if self.compressed:
            body = bytes([0x81]) + delta_encode(codes)
        else:
            body = bytes([0x01]) + codes.astype("<i2").tobytes()
        data = bytes([MEASUREMENT_ACC]) + struct.pack("<Q", ts) + body
        return [Packet(self.acc_frame(first, codes), PMD_DATA, data)]

    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        r = HostReply(reply_char_uuid=PMD_CP)
        if char_uuid.lower() != PMD_CP or len(data) < 2:
            return r
        op, mtype = data[0], data[1] & 0x3F
        if mtype != MEASUREMENT_ACC:
            r.reply = bytes([CP_RESPONSE, op, mtype, 3, 0])  # ERROR_NOT_SUPPORTED: only ACC here
        elif op == CP_START:
            settings = self._settings(data[2:])
            rate = settings.get(SETTING_SAMPLE_RATE, DEFAULT_RATE_HZ)
            rng = settings.get(SETTING_RANGE, DEFAULT_RANGE_G)
            if rate not in H10_RATES_HZ:
                r.reply = bytes([CP_RESPONSE, op, mtype, 8, 0])  # ERROR_INVALID_SAMPLE_RATE
            elif rng not in H10_RANGES_G:
                r.reply = bytes([CP_RESPONSE, op, mtype, 9, 0])  # ERROR_INVALID_RANGE
            elif self.device.streaming:
                r.reply = bytes([CP_RESPONSE, op, mtype, ALREADY_IN_STATE, 0])
            else:
                if (rate, rng) != (self.rate_hz, self.range_g):
                    self._setup(rate, rng)
                r.reply = bytes([CP_RESPONSE, op, mtype, 0, 0])
                r.start = True
        elif op == CP_STOP:
            r.reply = bytes([CP_RESPONSE, op, mtype, 0, 0])
            r.stop = True
        return r

    @staticmethod
    def _settings(raw: bytes) -> dict[int, int]:
        out: dict[int, int] = {}
        pos = 0
        while pos + 4 <= len(raw):
            stype, count = raw[pos], raw[pos + 1]
            if count >= 1:
                out[stype] = int.from_bytes(raw[pos + 2 : pos + 4], "little")
            pos += 2 + 2 * max(1, count)
        return out

    def on_reboot(self) -> None:
        self._setup(DEFAULT_RATE_HZ, DEFAULT_RANGE_G)
