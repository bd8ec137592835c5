"""Wire protocol v1: documented test vectors, round trips, and a decoder that never raises."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.wire.protocol import (
    MAX_WIRE_BYTES,
    AccFrame,
    CmdFrame,
    Command,
    EmgFrame,
    InfoFrame,
    StatusFrame,
    StreamDecoder,
    encode_frame,
    max_acc_samples_per_frame,
    max_emg_samples_per_frame,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

EXPECTED = [
    CmdFrame(seq=0, command=Command.START),
    StatusFrame(seq=7, counter=2000, battery_pct=87, battery_mv=3920, contact_mask=0b11, flags=0),
    EmgFrame(seq=1, counter=0x01020304, samples=np.array([[0, -1], [256, 32767], [-32768, 0]], np.int16)),
    AccFrame(seq=2, counter=40, samples=np.array([[0, 0, 4096], [-1, 2, 4095]], np.int16)),
    InfoFrame(
        seq=3,
        counter=0,
        boot_id=0xDEADBEEF,
        emg_rate_hz=2000,
        acc_rate_hz=100,
        emg_scale_uv=0.1,
        acc_scale_g=1 / 4096,
        device_id="sim-0001",
        firmware="sim-1.0",
        channel_labels=("EMG L quad", "EMG R quad"),
    ),
]


def doc_vectors() -> list[bytes]:
    blocks = re.findall(r"```hex\n(.*?)\n```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [bytes.fromhex(b.replace("\n", " ")) for b in blocks]


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (EmgFrame, AccFrame)):
        return a == b and np.array_equal(a.samples, b.samples)  # type: ignore[union-attr]
    if isinstance(a, InfoFrame):
        assert isinstance(b, InfoFrame)
        return (
            a.emg_scale_uv == pytest.approx(b.emg_scale_uv)
            and a.channel_labels == b.channel_labels
            and (a.boot_id, a.device_id, a.firmware, a.emg_rate_hz, a.acc_rate_hz)
            == (b.boot_id, b.device_id, b.firmware, b.emg_rate_hz, b.acc_rate_hz)
        )
    return a == b


def test_documented_vectors_decode_to_the_documented_frames() -> None:
    vectors = doc_vectors()
    assert len(vectors) == len(EXPECTED)
    for wire, frame in zip(vectors, EXPECTED, strict=True):
        decoded = StreamDecoder().feed(wire)
        assert len(decoded) == 1
        assert same(decoded[0], frame), (decoded[0], frame)
        assert encode_frame(frame) == wire


def test_every_frame_fits_one_ble_notification_at_max_size() -> None:
    for nch in (1, 2, 4, 8, 16):
        n = max_emg_samples_per_frame(nch)
        worst = np.full((n, nch), -1, np.int16)  # 0xffff bytes: no zeros, worst case for COBS
        assert len(encode_frame(EmgFrame(0xFFFF, 0xFFFFFFFF, worst))) <= MAX_WIRE_BYTES
    worst_acc = np.full((max_acc_samples_per_frame(), 3), -1, np.int16)
    assert len(encode_frame(AccFrame(1, 2, worst_acc))) <= MAX_WIRE_BYTES
    with pytest.raises(ValueError, match="BLE notification"):
        encode_frame(EmgFrame(0, 0, np.zeros((max_emg_samples_per_frame(8) + 1, 8), np.int16)))


def test_bad_crc_is_counted_and_skipped_and_stream_resyncs() -> None:
    good = [encode_frame(f) for f in EXPECTED]
    bad = bytearray(good[2])
    bad[5] ^= 0x40  # flip a bit inside the EMG frame (not the delimiter)
    dec = StreamDecoder()
    frames = dec.feed(good[1] + bytes(bad) + good[3])
    assert [type(f) for f in frames] == [StatusFrame, AccFrame]
    assert dec.stats.errors == {"crc": 1} or dec.stats.errors == {"cobs": 1}
    assert dec.stats.frames == 2
    assert "stream byte" in (dec.last_error or "")


def test_split_feeding_at_every_byte_boundary() -> None:
    stream = b"".join(encode_frame(f) for f in EXPECTED)
    for cut in range(len(stream) + 1):
        dec = StreamDecoder()
        frames = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert len(frames) == len(EXPECTED)
        assert dec.stats.bad_frames == 0


def test_garbage_without_delimiter_is_bounded() -> None:
    dec = StreamDecoder()
    dec.feed(b"\x55" * 5000)
    assert dec.stats.errors.get("overlong", 0) >= 1
    # and a clean frame after the next delimiter decodes again
    frames = dec.feed(b"\x00" + encode_frame(EXPECTED[1]))
    assert frames and isinstance(frames[-1], StatusFrame)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048), st.lists(st.integers(1, 300), max_size=20))
def test_decoder_never_raises_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    dec = StreamDecoder()
    pos = 0
    for c in cuts:
        dec.feed(data[pos : pos + c])
        pos += c
    dec.feed(data[pos:])
    assert dec.stats.bytes_in == len(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(EXPECTED) - 1), st.data())
def test_truncated_and_mutated_frames_never_raise(idx: int, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(EXPECTED[idx]))
    cut = data.draw(st.integers(0, len(wire)))
    mutated = wire[:cut]
    for _ in range(data.draw(st.integers(0, 4))):
        if mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] = data.draw(st.integers(0, 255))
    dec = StreamDecoder()
    frames = dec.feed(bytes(mutated) + b"\x00" + encode_frame(EXPECTED[1]))
    # whatever happened to the damaged frame, the good one after it is decoded
    assert frames and isinstance(frames[-1], StatusFrame)
