"""Thalmic Myo decoder (ingest.wire.myo).

No published test vectors exist for the Myo's BLE stream (Thalmic's myo-bluetooth repository
ships only the header; the SDK was closed source). The vectors below are derived by hand from
``myohw.h`` (thalmiclabs/myo-bluetooth, commit c79c1a5): the byte layouts of
``myohw_emg_data_t``, ``myohw_imu_data_t``, ``myohw_command_set_mode_t`` and
``myohw_command_set_sleep_mode_t``, the UUID rule of ``MYO_SERVICE_BASE_UUID`` and the scale
``MYOHW_ACCELEROMETER_SCALE``. Nothing here is produced by the simulator's encoder.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.wire.kinds import decoder_for
from ingest.wire.myo import CMD_CHAR, CONTROL_SERVICE, EMG_CHARS, IMU_CHAR, MyoDecoder
from ingest.wire.protocol import AccFrame, EmgFrame, InfoFrame

# myohw_emg_data_t: int8 sample1[8], int8 sample2[8]. Written out by hand:
EMG_VECTOR = bytes.fromhex("00 01 ff 7f 80 02 fe 10f0 05 fb 00 00 40 c0 81")
EMG_EXPECTED = [[0, 1, -1, 127, -128, 2, -2, 16], [-16, 5, -5, 0, 0, 64, -64, -127]]
# myohw_imu_data_t, little-endian int16: orientation w,x,y,z = 16384 (1.0), 0, 0, 0;
# accelerometer = 2048 (1 g), -2048 (-1 g), 1024 (0.5 g); gyroscope = 16 (1 deg/s), -32, 0.
IMU_VECTOR = bytes.fromhex("0040 0000 0000 00000008 00f8 00041000 e0ff 0000")


def test_uuids_follow_the_base_uuid_rule_of_myohw_h() -> None:
    # "the full service UUID for GCControlService would be d5060001-a904-deb9-4748-2c7f4a124842"
    assert CONTROL_SERVICE == "d5060001-a904-deb9-4748-2c7f4a124842"
    assert CMD_CHAR == "d5060401-a904-deb9-4748-2c7f4a124842"
    assert IMU_CHAR == "d5060402-a904-deb9-4748-2c7f4a124842"
    assert EMG_CHARS == tuple(
        f"d506{s}-a904-deb9-4748-2c7f4a124842" for s in ("0105", "0205", "0305", "0405")
    )
    prof = MyoDecoder.ble_profile
    assert prof is not None and prof.notify_uuids == (*EMG_CHARS, IMU_CHAR) and prof.command_uuid == CMD_CHAR


def test_commands_are_the_documented_structs() -> None:
    dec = decoder_for("myo")
    # myohw_command_set_sleep_mode_t {0x09, 1, never_sleep=1};
    # myohw_command_set_mode_t {0x01, 3, emg send_emg_raw=0x03, imu send_data=0x01, classifier 0}.
    assert [w.data for w in dec.start_commands()] == [bytes([9, 1, 1]), bytes([1, 3, 3, 1, 0])]
    assert [w.data for w in dec.stop_commands()] == [bytes([1, 3, 0, 0, 0]), bytes([9, 1, 0])]
    assert all(w.char_uuid is None for w in dec.start_commands())  # the profile's command char


def test_emg_vector_and_info() -> None:
    dec = MyoDecoder()
    info, emg = dec.feed(EMG_VECTOR, EMG_CHARS[0])
    assert isinstance(info, InfoFrame) and isinstance(emg, EmgFrame)
    assert info.emg_rate_hz == 200 and info.acc_rate_hz == 50 and info.n_channels == 8
    assert info.acc_scale_g == 1 / 2048
    assert np.asarray(emg.samples).tolist() == EMG_EXPECTED
    assert emg.counter == 0


def test_imu_vector() -> None:
    dec = MyoDecoder()
    frames = dec.feed(IMU_VECTOR, IMU_CHAR)
    (acc,) = [f for f in frames if isinstance(f, AccFrame)]
    info = frames[0]
    assert isinstance(info, InfoFrame)
    g = np.asarray(acc.samples, dtype=np.float64) * info.acc_scale_g
    assert g.tolist() == [[1.0, -1.0, 0.5]]


def test_round_robin_counters_skip_exactly_the_lost_notifications() -> None:
    dec = MyoDecoder()
    # 6 cycles of 4 notifications (2 samples each); lose #5, #9 and #10 (one and two in a row).
    order = [k for k in range(24) if k not in (5, 9, 10)]
    counters = []
    for k in order:
        for f in dec.feed(bytes([k]) * 16, EMG_CHARS[k % 4]):
            if isinstance(f, EmgFrame):
                counters.append(f.counter)
    assert counters == [2 * k for k in order]
    # The first notification fixes the phase: starting on characteristic 2 means samples 4, 5.
    late = MyoDecoder()
    (_, first) = late.feed(bytes(16), EMG_CHARS[2])
    assert isinstance(first, EmgFrame) and first.counter == 4


def test_imu_counter_follows_the_emg_stream_and_sees_lost_imu_samples() -> None:
    dec = MyoDecoder()
    imu_counters = []
    for k in range(40):  # EMG notification k carries samples 2k, 2k+1; an IMU sample every 4 EMG
        dec.feed(bytes(16), EMG_CHARS[k % 4])
        if k % 2 == 1 and k not in (11, 13, 15):  # IMU samples 5, 6, 7 lost
            imu_counters += [f.counter for f in dec.feed(IMU_VECTOR, IMU_CHAR) if isinstance(f, AccFrame)]
    assert imu_counters == [i for i in range(20) if i not in (5, 6, 7)]


def test_bad_notifications_are_counted_by_reason() -> None:
    dec = MyoDecoder()
    assert dec.feed(bytes(15), EMG_CHARS[1]) == []
    assert dec.feed(bytes(21), IMU_CHAR) == []
    assert dec.feed(bytes(16), "00002a19-0000-1000-8000-00805f9b34fb") == []
    assert dec.stats.errors == {"length": 2, "source": 1}
    assert dec.last_error is not None and "stream byte 36" in dec.last_error


@settings(max_examples=300, deadline=None)
@given(
    garbage=st.lists(
        st.tuples(st.sampled_from([*EMG_CHARS, IMU_CHAR, "", "x"]), st.binary(max_size=40)), max_size=16
    )
)
def test_random_notifications_never_raise_and_valid_data_decodes_after(
    garbage: list[tuple[str, bytes]],
) -> None:
    dec = MyoDecoder()
    for char, blob in garbage:
        dec.feed(blob, char)
    bad = sum(
        1 for c, b in garbage if not ((c in EMG_CHARS and len(b) == 16) or (c == IMU_CHAR and len(b) == 20))
    )
    assert dec.stats.bad_frames == bad  # every invalid notification counted, nothing else
    frames = [f for k in range(4) for f in dec.feed(EMG_VECTOR, EMG_CHARS[k]) if isinstance(f, EmgFrame)]
    assert len(frames) == 4
    assert all(np.asarray(f.samples).tolist() == EMG_EXPECTED for f in frames)
    assert [b.counter - a.counter for a, b in itertools.pairwise(frames)] == [2, 2, 2]
