"""The Thalmic Myo armband as the simulator speaks it (device side of ``ingest.wire.myo``).

From the vendor's header ``myohw.h`` (thalmiclabs/myo-bluetooth): 8 pods of int8 EMG at 200 Hz,
two samples per notification on EmgData0..3 in turn, and ``myohw_imu_data_t`` (orientation,
accelerometer at 2048 LSB/g, gyroscope) at 50 Hz on the IMU characteristic. The armband is idle
until the host's ``set_mode`` command asks for EMG; ``set_mode`` with EMG and IMU off stops it.
The scenario's channels are resampled to 200 Hz (``PersonalityDevice``) and quantised at the
decoder's nominal 10 uV per count, railing at the int8 limits as the armband's own output does.
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
from ingest.wire.myo import (
    ACC_SCALE_G,
    CMD_CHAR,
    CMD_SET_MODE,
    CMD_SET_SLEEP_MODE,
    CONTROL_SERVICE,
    EMG_CHARS,
    EMG_MODE_NONE,
    EMG_RATE_HZ,
    EMG_SCALE_UV,
    EMG_SERVICE,
    IMU_CHAR,
    IMU_MODE_NONE,
    IMU_RATE_HZ,
    IMU_SERVICE,
    N_PODS,
    myo_uuid,
)

_IMU = struct.Struct("<10h")
_FINE = 16
#: Input-referred noise of the armband's front end, in counts rms: a resting Myo's raw stream
#: wanders by a count or two (it is never a flat zero), ~10 uV at the nominal scale.
NOISE_COUNTS = 1.0
#: myohw_fw_version_t {major 1, minor 2, patch 0, hardware_rev 2 (REV-D)}.
_FW_VERSION = struct.pack("<4H", 1, 2, 0, 2)
#: myohw_fw_info_t: serial number, unlock pose, classifier fields, sku 1 (black Myo), reserved.
_FW_INFO = bytes([0x51, 0x1D, 0x00, 0x00, 0x00, 0x01]) + bytes([0, 0, 0, 0, 0, 0, 1]) + bytes(7)


@register_personality
class MyoPersonality(Personality):
    kind: ClassVar[str] = "myo"
    link: ClassVar[Literal["serial", "ble"]] = "ble"
    advertised_name: ClassVar[str] = "Myo"
    advertised_uuids: ClassVar[tuple[str, ...]] = (CONTROL_SERVICE,)
    # EMG service first: its first characteristic is what ends an outage in ``VirtualPeripheral``.
    #: Streaming restarts nothing: the armband has no counter; its sample clock runs from power-on.
    restarts_counter_on_start: ClassVar[bool] = False
    gatt: ClassVar[tuple[GattService, ...]] = (
        GattService(EMG_SERVICE, tuple(GattCharacteristic(u, ("notify",)) for u in EMG_CHARS)),
        GattService(CONTROL_SERVICE, (
            GattCharacteristic(myo_uuid(0x0101), ("read",), _FW_INFO),
            GattCharacteristic(myo_uuid(0x0201), ("read",), _FW_VERSION),
            GattCharacteristic(CMD_CHAR, ("write",)),
        )),
        GattService(IMU_SERVICE, (GattCharacteristic(IMU_CHAR, ("notify",)),)),
    )  # fmt: skip

    def __init__(self, device: PersonalityDevice, **options: str) -> None:
        super().__init__(device, **options)
        self.never_sleep = False
        # Resampled at 1/16 count, so the armband's own noise (added per block in ``emg_counts``)
        # dithers the signal before it is rounded to int8, as the analogue front end's noise does.
        self.configure(
            emg_rate_hz=EMG_RATE_HZ, acc_rate_hz=IMU_RATE_HZ, n_channels=N_PODS,
            emg_lsb_uv=EMG_SCALE_UV / _FINE, acc_lsb_g=ACC_SCALE_G, block_samples=8,
            emg_code_range=(-128 * _FINE, 127 * _FINE),
        )  # fmt: skip

    def emg_counts(self, first: int, n: int) -> np.ndarray:
        """int8 codes: the signal plus the armband's input noise (``NOISE_COUNTS`` rms), rounded.

        The noise is keyed on the sample counter, so a block is the same however often it is asked for.
        """
        fine = super().emg_counts(first, n).astype(np.float64) / _FINE
        # The scenario's channels are the first pods; the other pods lie over resting muscle (all 8
        # touch the skin), so they see only the front end's noise, not copies of the signal.
        fine[:, len(self.device.source.channel_labels) :] = 0.0
        noise = np.random.default_rng([self.device.seed, first]).normal(0.0, NOISE_COUNTS, fine.shape)
        return np.clip(np.rint(fine + noise), -128, 127).astype(np.int64)

    def packets(self, first: int, n: int) -> list[Packet]:
        """Sample pairs on EmgData0..3 in turn; each IMU sample after the EMG pair holding its time.

        ``first`` is a multiple of 8 (whole round-robin cycles), so pair ``i`` of the block goes on
        characteristic ``i % 4`` and sample ``4j`` (IMU sample ``j``'s instant) is in this block.
        """
        codes = self.emg_counts(first, n)
        a, b = self.acc_span(first, n)
        imu_after = {(4 * j + 3 - first) // 2: j for j in range(a, b)}
        out: list[Packet] = []
        for i in range(n // 2):
            pair = codes[2 * i : 2 * i + 2].astype(np.int8)
            out.append(
                Packet(self.emg_frame(first + 2 * i, pair), EMG_CHARS[(first // 2 + i) % 4], pair.tobytes())
            )
            j = imu_after.get(i)
            if j is not None:
                acc = self.acc_counts(j, 1)
                data = _IMU.pack(16384, 0, 0, 0, *(int(v) for v in acc[0]), 0, 0, 0)
                out.append(Packet(self.acc_frame(j, acc.astype(np.int16)), IMU_CHAR, data))
        return out

    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        """``myohw_command_header_t`` commands, back to back; unknown ones are ignored (no reply)."""
        r = HostReply()
        pos = 0
        while pos + 2 <= len(data):
            cmd, size = data[pos], data[pos + 1]
            payload = data[pos + 2 : pos + 2 + size]
            pos += 2 + size
            if cmd == CMD_SET_MODE and len(payload) == 3:
                emg_mode, imu_mode = payload[0], payload[1]
                if emg_mode != EMG_MODE_NONE:
                    r.start, r.stop = True, False
                elif imu_mode == IMU_MODE_NONE:
                    r.stop, r.start = True, False
            elif cmd == CMD_SET_SLEEP_MODE and len(payload) == 1:
                self.never_sleep = payload[0] == 1
        return r

    def on_reboot(self) -> None:
        self.never_sleep = False
