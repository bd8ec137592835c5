"""Polar H10 decoder (ingest.wire.polar) against the vectors of Polar's own SDK tests.

Vectors: polarofficial/polar-ble-sdk, commit 8fb5311c5f63fd58fdd03df1b46cbb2e8f05209e,
``sources/Android/android-communications/library/src/test/java/com/polar/androidcommunications/
api/ble/model/gatt/client/pmd/model/AccDataTest.kt``: the three frames of the tests
"process acc raw data frame type 1", "process acc compressed data type 0" and "process acc
compressed data type 1", byte for byte, with the expected values those tests assert.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.wire.kinds import decoder_for
from ingest.wire.polar import (
    PMD_CP,
    PMD_DATA,
    PolarH10Decoder,
    parse_delta_frames,
    start_acc_command,
)
from ingest.wire.protocol import AccFrame, InfoFrame

SDK = "polar-ble-sdk AccDataTest.kt"

# "process acc raw data frame type 1": header 02 | ts 2_000_000_000 ns | frame type 01.
RAW1_HEADER = bytes.fromhex("02009435770000000001")
RAW1_CONTENT = bytes.fromhex(
    "f7ffffffe703f8fffeffe503f9ffffffe503faffffffe603fafffeffe603f9ffffffe503f8ffffffe603f8fffeffe603"
    "faffffffe503faffffffe703faffffffe503f8ffffffe603f7ffffffe603f8fffeffe603f9fffeffe703f9ff0000e603"
    "f9ffffffe603f7fffeffe503f9ffffffe503f9ffffffe503faff0000e603f9fffeffe603f8ffffffe603f8ffffffe503"
    "f9ffffffe603f9ffffffe503faffffffe603f9ffffffe503f9ffffffe503f8fffeffe603f9ffffffe603f9ffffffe603"
    "f9ff0000e503f9fffeffe603f8fffeffe603f7fffeffe603"
)
# "process acc compressed data type 0": frame type 80, factor 2.44e-4 (values in g x factor).
DELTA0_HEADER = bytes.fromhex("02009435770000000080")
DELTA0_CONTENT = bytes.fromhex(
    "7107f06a9e8d0a38be5cbeba2f96b3ee4be5adfb42b9ebbe4cfeba2f92bfee4be4b1fb12b9ecbd3c3ebb2f8fd3de4be3"
    "b5f7d2b8edbd307e7b2f8be3ce8be2baf7a2b8eebc20be7b2f88f3cecbe1bdef52f8efbc18fe3b2f8403bfcbe0c2ef32"
    "b8f0bb044ebc2e8113af0be0c6eff2f7f1b9fc7dbc2e7d279f4bdfcaebc2f7f2b8eccd7c2e7b378f4bdecee392f7f3b8"
    "e00dfd2d774b7fcbddd2df6237f5b7d44dbd2d745b6fcbdcd7d73237f6b5c88d7d2d716b4f4bdcdcd3f236f7b4bcddfd"
    "2c6f7b3f4bdbe0cfd236f8b2b02dbe2c6c8f1fcbdae3c7a276f9"
)
# "process acc compressed data type 1": frame type 81, ts 0x65 ns, factor 1.
DELTA1_HEADER = bytes.fromhex("02650000000000000081")
DELTA1_CONTENT = bytes.fromhex("f1ff1400f00306017b0f08")


def acc_frames(frames: list[object]) -> list[AccFrame]:
    return [f for f in frames if isinstance(f, AccFrame)]


def test_raw_type1_vector() -> None:
    dec = PolarH10Decoder()
    frames = dec.feed(RAW1_HEADER + RAW1_CONTENT, PMD_DATA)
    assert (
        isinstance(frames[0], InfoFrame) and frames[0].channel_labels == () and frames[0].acc_rate_hz == 200
    )
    (acc,) = acc_frames(frames)
    s = np.asarray(acc.samples)
    assert len(s) == len(RAW1_CONTENT) // 6 == 36  # amountOfSamples
    assert s[0].tolist() == [-9, -1, 999]  # xValue1, yValue1, zValue1 (mG)
    assert s[1].tolist() == [-8, -2, 997]  # xValue2, yValue2, zValue2
    # The frame timestamp is its last sample's (the test's last timeStamp == 2e9 ns).
    assert acc.counter + len(s) - 1 == round(2_000_000_000 * 200 / 1e9)
    assert frames[0].acc_scale_g == pytest.approx(0.001)
    assert dec.stats.bad_frames == 0


def test_compressed_type0_vector() -> None:
    factor = 2.44e-4
    dec = PolarH10Decoder()
    # The factor comes from the start response's FACTOR setting (type 5, one 4-byte float).
    dec.feed(bytes([0xF0, 0x02, 0x02, 0x00, 0x00, 0x05, 0x01]) + np.float32(factor).tobytes(), PMD_CP)
    assert dec.factor == pytest.approx(factor)
    (acc,) = acc_frames(dec.feed(DELTA0_HEADER + DELTA0_CONTENT, PMD_DATA))
    s = np.asarray(acc.samples)
    assert len(s) == 1 + 56  # reference sample + 56 deltas
    ref = [1905, 27376, -29282]  # sample0Channel0..2
    one = [1905 + 190, 27376 - 105, -29282 - 85]  # sample1Channel0..2
    # The SDK truncates (factor * sample * 1000f).toInt(); we keep the float: within 1 mG.
    assert np.abs(s[0] - np.array(ref) * factor * 1000).max() < 1e-2
    assert np.abs(s[1] - np.array(one) * factor * 1000).max() < 1e-2
    assert np.all(np.abs(s) <= 8 * 1000)  # "validate data in range" (range 8 g)
    assert dec.stats.bad_frames == 0


def test_compressed_type1_vector() -> None:
    rows = parse_delta_frames(DELTA1_CONTENT, 3, 16)
    assert rows.tolist() == [[-15, 20, 1008], [-20, 17, 1008]]  # sample0/sample1 channel0..2
    dec = PolarH10Decoder()
    (acc,) = acc_frames(dec.feed(DELTA1_HEADER + DELTA1_CONTENT, PMD_DATA))
    assert np.asarray(acc.samples).tolist() == [[-15, 20, 1008], [-20, 17, 1008]]


def test_start_and_stop_commands_follow_the_sdk_serialisation() -> None:
    # REQUEST_MEASUREMENT_START (2), ACC online (2), then type/count/u16 LE per setting
    # (PmdSetting.serializeSelected): sample rate 200, resolution 16, range 8 g.
    assert start_acc_command(200, 8) == bytes.fromhex("02020001c8000101100002010800")
    dec = decoder_for("polar-h10")
    (start,) = dec.start_commands()
    assert start.char_uuid == PMD_CP and start.data == start_acc_command()
    assert [w.data for w in dec.stop_commands()] == [bytes([0x03, 0x02])]
    prof = type(dec).ble_profile
    assert prof is not None and prof.service_uuid == "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
    assert prof.notify_uuids == (PMD_CP, PMD_DATA)


def test_control_point_errors_are_counted_and_named() -> None:
    dec = PolarH10Decoder()
    dec.feed(bytes([0xF0, 0x02, 0x02, 0x08]), PMD_CP)  # ERROR_INVALID_SAMPLE_RATE
    assert dec.stats.errors == {"refused": 1}
    assert dec.last_error is not None and "invalid sample rate" in dec.last_error
    dec.feed(bytes([0xF0, 0x02, 0x02, 0x06]), PMD_CP)  # already in state: streaming, fine
    dec.feed(bytes([0x01, 0x02]), PMD_CP)  # the strap stopped ACC itself
    assert dec.stats.errors == {"refused": 1, "stopped": 1}


def _raw_frame(ts_ns: int, samples: np.ndarray) -> bytes:
    return bytes([0x02]) + ts_ns.to_bytes(8, "little") + bytes([0x01]) + samples.astype("<i2").tobytes()


def test_counters_skip_exactly_the_lost_samples_and_survive_a_new_connection() -> None:
    rate, n = 200, 36
    period = 1_000_000_000 // rate
    t0 = 700_000_000_123_000_000  # device time since 2000 (the strap's clock set by the phone)
    frames = [_raw_frame(t0 + (k * n + n - 1) * period, np.full((n, 3), k)) for k in range(10)]
    dec = PolarH10Decoder(rate)
    got = [acc_frames(dec.feed(f, PMD_DATA)) for i, f in enumerate(frames) if i not in (3, 6, 7)]
    counters = [a[0].counter for a in got]
    base = counters[0]
    assert [c - base for c in counters] == [k * n for k in (0, 1, 2, 4, 5, 8, 9)]
    # A fresh decoder (a reconnect) continues the same counter from the timestamp alone.
    again = PolarH10Decoder(rate)
    later = _raw_frame(t0 + (20 * n + n - 1) * period, np.zeros((n, 3)))
    (a,) = acc_frames(again.feed(later, PMD_DATA))
    assert a.counter - base == 20 * n
    assert dec.stats.bad_frames == 0 and again.stats.bad_frames == 0


def test_implausible_timestamp_is_an_error_and_a_confirmed_new_timeline_a_new_boot() -> None:
    n, period = 36, 5_000_000
    dec = PolarH10Decoder(200)
    dec.feed(_raw_frame(10**15, np.zeros((n, 3))), PMD_DATA)
    assert acc_frames(dec.feed(_raw_frame(10**14, np.zeros((n, 3))), PMD_DATA)) == []  # backwards
    assert dec.stats.errors == {"timestamp": 1}
    out = dec.feed(_raw_frame(10**14 + n * period, np.zeros((n, 3))), PMD_DATA)  # confirms it
    info = [f for f in out if isinstance(f, InfoFrame)]
    assert info and info[0].boot_id != PolarH10Decoder().boot_id and acc_frames(out)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x02\x00\x00", "short"),
        (bytes([0x00]) + bytes(8) + b"\x00" + bytes(6), "type"),  # ECG, never started
        (bytes([0x02]) + (10**12).to_bytes(8, "little") + b"\x01" + bytes(7), "length"),
        (bytes([0x02]) + (10**12).to_bytes(8, "little") + b"\x05" + bytes(6), "type"),
        (bytes([0x02]) + (10**12).to_bytes(8, "little") + b"\x81" + bytes(6) + b"\x06\x05\x00", "short"),
        (bytes([0x02]) + (10**12).to_bytes(8, "little") + b"\x81" + bytes(6) + b"\x00\x01", "value"),
    ],
)
def test_bad_frames_name_their_reason(data: bytes, reason: str) -> None:
    dec = PolarH10Decoder()
    assert dec.feed(data, PMD_DATA) == []
    assert dec.stats.errors == {reason: 1}
    assert dec.last_error is not None and "stream byte 0" in dec.last_error


@settings(max_examples=300, deadline=None)
@given(
    garbage=st.lists(
        st.tuples(st.sampled_from([PMD_DATA, PMD_CP, "other"]), st.binary(max_size=80)), max_size=12
    )
)
def test_random_notifications_never_raise_and_valid_data_decodes_after(
    garbage: list[tuple[str, bytes]],
) -> None:
    dec = PolarH10Decoder()
    for char, blob in garbage:
        dec.feed(blob, char)  # never raises; whatever is wrong is counted
    # Valid frames after the garbage, on a timeline of their own: decoded (at worst after one
    # "timestamp" error while the new timeline is confirmed).
    t = 800_000_000_000_000_000
    got = []
    for k in range(3):
        got += acc_frames(dec.feed(_raw_frame(t + (k + 1) * 36 * 5_000_000, np.full((36, 3), 7)), PMD_DATA))
    assert len(got) >= 2
    assert got[-1].counter - got[-2].counter == 36
    assert all(np.asarray(a.samples).tolist()[0] == [7, 7, 7] for a in got)
