"""Thalmic Myo armband (BLE): 8 EMG pods at 200 Hz and an IMU at 50 Hz, behind the decoder seam.

Everything here is from the vendor's published Bluetooth header ``myohw.h``
(https://github.com/thalmiclabs/myo-bluetooth, commit c79c1a5, Apache-2.0):

- UUIDs: ``d506XXXX-a904-deb9-4748-2c7f4a124842`` with the 16-bit short ids of ``myohw_services``:
  ControlService 0x0001 (advertised), CommandCharacteristic 0x0401 (write), IMUDataCharacteristic
  0x0402 (notify, ``myohw_imu_data_t``), EmgData0..3Characteristic 0x0105/0x0205/0x0305/0x0405
  (notify, ``myohw_emg_data_t``).
- ``myohw_emg_data_t``: 16 bytes, ``int8_t sample1[8]; int8_t sample2[8]``: two consecutive
  samples of the 8 pods. ``MYOHW_EMG_DEFAULT_STREAMING_RATE`` 200 Hz.
- ``myohw_imu_data_t``: 20 bytes, ``int16 orientation w,x,y,z`` (/16384), ``int16
  accelerometer[3]`` (/``MYOHW_ACCELEROMETER_SCALE`` = 2048 per g), ``int16 gyroscope[3]``
  (/16 per deg/s); ``MYOHW_DEFAULT_IMU_SAMPLE_RATE`` 50 Hz. The header's comment says "all values
  are big-endian", but its own UUID byte arrays are little-endian and every working host library
  (e.g. the open-source myo-raw and PyoMyo) unpacks the IMU with ``<10h``: BLE attribute values
  are little-endian, and so is this decoder.
- Commands (``myohw_command_header_t``: u8 command, u8 payload_size): ``set_mode`` 0x01 with 3
  bytes (emg_mode, imu_mode, classifier_mode) and ``set_sleep_mode`` 0x09 with 1 byte.

Start: ``01 03 03 01 00`` (EMG ``send_emg_raw`` 0x03, i.e. unfiltered: the detector does its own
band-pass and mains notch, and the firmware's filtered mode 0x02 is undocumented; IMU
``send_data``; classifier disabled) and ``09 01 01`` (never sleep: a resting arm must not put the
armband to sleep in the middle of a night's monitoring). Stop: ``01 03 00 00 00``, ``09 01 00``.

Sample counters. The Myo sends no counter at all. The four EMG characteristics carry successive
sample pairs round-robin (0, 1, 2, 3, 0, ...), and BLE delivers the notifications of one
connection in order, so the counter of a notification is ``8 * cycle + 2 * characteristic``: a
notification that arrives on characteristic 2 when 1 was next means one notification (2 samples)
was lost. Limits, stated in docs/devices.md:

- loss is seen per notification, modulo 4: a run of exactly 4k lost notifications (8k samples)
  in a row is invisible from the order alone;
- the IMU has one characteristic and no counter: its counter is anchored to the EMG stream (one
  IMU sample per 4 EMG samples); an IMU sample later than its EMG-anchored slot by 2 or more IMU
  samples is counted as lost;
- a new connection restarts the counters: each connection is announced as a new ``boot_id``
  (``InfoFrame.per_connection``), and the session records the outage from its clock (cause
  "disconnect", samples estimated from time: they cannot be counted).

EMG scale. Thalmic publishes no microvolt calibration of the int8 values. ``EMG_SCALE_UV`` is a
nominal 10 uV per count (full scale +-1.28 mV, the order of a strong forearm contraction's sEMG),
chosen so that the detector's absolute floors (``on_min_delta_uv`` 8 uV ~ 1 count) keep their
meaning; the detector's decisions are relative to the adaptive resting baseline, so events do not
depend on the exact figure, but amplitudes reported from a Myo are nominal microvolts.
"""

from __future__ import annotations

import random
import struct
from typing import ClassVar

import numpy as np

from ingest.wire.base import BleProfile, DeviceWrite, register_decoder
from ingest.wire.protocol import AccFrame, DecoderStats, EmgFrame, Frame, InfoFrame

__all__ = [
    "CMD_CHAR",
    "CONTROL_SERVICE",
    "EMG_CHARS",
    "EMG_MODES",
    "EMG_RATE_HZ",
    "IMU_CHAR",
    "IMU_RATE_HZ",
    "MyoDecoder",
    "myo_uuid",
]


def myo_uuid(short: int) -> str:
    """Full 128-bit UUID of a Myo service/characteristic from its 16-bit short id (myohw.h)."""
    return f"d506{short:04x}-a904-deb9-4748-2c7f4a124842"


CONTROL_SERVICE = myo_uuid(0x0001)
CMD_CHAR = myo_uuid(0x0401)
IMU_SERVICE = myo_uuid(0x0002)
IMU_CHAR = myo_uuid(0x0402)
EMG_SERVICE = myo_uuid(0x0005)
EMG_CHARS = tuple(myo_uuid(s) for s in (0x0105, 0x0205, 0x0305, 0x0405))

EMG_RATE_HZ = 200
IMU_RATE_HZ = 50
N_PODS = 8
EMG_NOTIFY_BYTES = 16
IMU_NOTIFY_BYTES = 20
#: Nominal microvolts per int8 count (no vendor calibration exists; see the module docstring).
EMG_SCALE_UV = 10.0
ACC_SCALE_G = 1.0 / 2048.0  # MYOHW_ACCELEROMETER_SCALE
CHANNEL_LABELS = tuple(f"pod{i + 1}" for i in range(N_PODS))

CMD_SET_MODE = 0x01
CMD_SET_SLEEP_MODE = 0x09
EMG_MODE_NONE, EMG_MODE_SEND_EMG, EMG_MODE_SEND_EMG_RAW = 0x00, 0x02, 0x03
IMU_MODE_NONE, IMU_MODE_SEND_DATA = 0x00, 0x01
CLASSIFIER_DISABLED = 0x00
SLEEP_NORMAL, SLEEP_NEVER = 0x00, 0x01

SET_MODE_START = bytes([CMD_SET_MODE, 3, EMG_MODE_SEND_EMG_RAW, IMU_MODE_SEND_DATA, CLASSIFIER_DISABLED])
#: EMG modes offered as a setting (myohw_emg_mode_t): unfiltered or the Myo's own filtered EMG.
EMG_MODES = {"raw": EMG_MODE_SEND_EMG_RAW, "filtered": EMG_MODE_SEND_EMG}
SET_MODE_STOP = bytes([CMD_SET_MODE, 3, EMG_MODE_NONE, IMU_MODE_NONE, CLASSIFIER_DISABLED])
NEVER_SLEEP = bytes([CMD_SET_SLEEP_MODE, 1, SLEEP_NEVER])
NORMAL_SLEEP = bytes([CMD_SET_SLEEP_MODE, 1, SLEEP_NORMAL])

_IMU = struct.Struct("<10h")
#: EMG samples per IMU sample (200 / 50): the IMU counter's anchor to the EMG stream.
_EMG_PER_IMU = EMG_RATE_HZ // IMU_RATE_HZ


class MyoDecoder:
    """Myo notifications (tagged with their characteristic) to EMG / ACC frames. Never raises."""

    kind: ClassVar[str] = "myo"
    ble_profile: ClassVar[BleProfile | None] = BleProfile(
        service_uuid=CONTROL_SERVICE, notify_uuids=(*EMG_CHARS, IMU_CHAR), command_uuid=CMD_CHAR
    )

    def __init__(self, *, emg_mode: str = "raw") -> None:
        if emg_mode not in EMG_MODES:
            raise ValueError(f"Myo EMG mode must be one of {', '.join(EMG_MODES)}, got {emg_mode!r}")
        self.emg_mode = emg_mode
        self.stats = DecoderStats()
        self.last_error: str | None = None
        #: A connection is a boot: the Myo's (nonexistent) counters cannot continue across one.
        self.boot_id = random.SystemRandom().getrandbits(32)
        self._described = False
        self._emg_next_char: int | None = None  # characteristic index expected next
        self._emg_next = 0  # counter of the next EMG sample expected
        self._imu_next: int | None = None
        self._imu_offset = 0  # IMU counter minus EMG-anchored slot, fixed at the first IMU sample
        self._seq = 0
        self._index = {u: i for i, u in enumerate(EMG_CHARS)}

    def info(self) -> InfoFrame:
        return InfoFrame(
            seq=0,
            counter=self._emg_next,
            boot_id=self.boot_id,
            emg_rate_hz=EMG_RATE_HZ,
            acc_rate_hz=IMU_RATE_HZ,
            emg_scale_uv=EMG_SCALE_UV,
            acc_scale_g=ACC_SCALE_G,
            device_id="myo",
            firmware="myohw-1.x",
            channel_labels=CHANNEL_LABELS,
            per_connection=True,  # no device counter: each connection counts from 0 again
        )

    def _error(self, reason: str, detail: str, offset: int) -> None:
        self.stats.count(reason)
        self.last_error = f"{reason}: {detail} (notification at stream byte {offset})"

    def feed(self, data: bytes, source: str = "", t_host: float | None = None) -> list[Frame]:
        offset = self.stats.bytes_in
        self.stats.bytes_in += len(data)
        src = source.lower()
        out: list[Frame] = []
        if src in self._index:
            if len(data) != EMG_NOTIFY_BYTES:
                self._error(
                    "length", f"EMG notification of {len(data)} bytes, myohw_emg_data_t is 16", offset
                )
                return out
            self._describe(out)
            out.append(self._emg(self._index[src], data))
        elif src == IMU_CHAR:
            if len(data) != IMU_NOTIFY_BYTES:
                self._error(
                    "length", f"IMU notification of {len(data)} bytes, myohw_imu_data_t is 20", offset
                )
                return out
            self._describe(out)
            frame = self._imu(data)
            if frame is not None:
                out.append(frame)
        else:
            self._error(
                "source", f"{len(data)} bytes from characteristic {source!r}, not a Myo data one", offset
            )
            return out
        self.stats.frames += len(out)
        return out

    def _describe(self, out: list[Frame]) -> None:
        if not self._described:
            self._described = True
            out.append(self.info())

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def _emg(self, char: int, data: bytes) -> EmgFrame:
        if self._emg_next_char is None:
            # The first notification fixes the phase of the round robin: pairs 0..3 of a cycle.
            counter = 2 * char
        else:
            lost = (char - self._emg_next_char) % 4  # notifications skipped since the last one
            counter = self._emg_next + 2 * lost
        self._emg_next_char = (char + 1) % 4
        self._emg_next = counter + 2
        samples = np.frombuffer(data, dtype=np.int8).reshape(2, N_PODS)
        return EmgFrame(self._next_seq(), counter & 0xFFFFFFFF, samples)

    def _imu(self, data: bytes) -> AccFrame | None:
        values = _IMU.unpack(data)
        acc = np.array([values[4:7]], dtype=np.int16)
        # Where the EMG stream says we are, in IMU samples: the last EMG sample received.
        slot = max(0, self._emg_next - 1) // _EMG_PER_IMU
        if self._imu_next is None:
            counter = slot
            self._imu_offset = 0
        else:
            counter = self._imu_next
            late = slot + self._imu_offset - counter
            if late >= 2:
                counter += late  # the IMU fell behind the EMG by whole samples: those were lost
            elif late <= -2:
                # The IMU ran ahead of its anchor (EMG lost and not seen): re-anchor, no counter jump.
                self._imu_offset -= late
        self._imu_next = counter + 1
        return AccFrame(self._next_seq(), counter & 0xFFFFFFFF, acc)

    def start_commands(self) -> list[DeviceWrite]:
        mode = bytes([CMD_SET_MODE, 3, EMG_MODES[self.emg_mode], IMU_MODE_SEND_DATA, CLASSIFIER_DISABLED])
        return [DeviceWrite(NEVER_SLEEP), DeviceWrite(mode)]

    def stop_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(SET_MODE_STOP), DeviceWrite(NORMAL_SLEEP)]

    def info_request(self) -> DeviceWrite | None:
        return None  # the decoder describes the device itself, before the first samples


register_decoder(MyoDecoder.kind, MyoDecoder)
