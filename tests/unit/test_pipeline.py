"""The shared decode loop (ingest.stream.pipeline): one decoder per connection, counts for life."""

from __future__ import annotations

import numpy as np

from ingest.commands import replay
from ingest.files import recording
from ingest.stream import frames, pipeline
from ingest.stream.pipeline import DATA, DOWN, UP, DecodeLoop, LinkRecord, run_records
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import EmgFrame, InfoFrame, encode_frame

INFO = InfoFrame(0, 0, 0xB007, 1000, 0, 0.5, 0.001, "dev", "1.0", ("A", "B"))


def _emg(counter: int, n: int = 20) -> bytes:
    return encode_frame(EmgFrame(0, counter, np.zeros((n, 2), dtype=np.int16)))


def test_link_record_kinds_are_the_capture_and_frames_encodings() -> None:
    assert (pipeline.DATA, pipeline.DOWN, pipeline.UP) == (recording.DATA, recording.DOWN, recording.UP)
    assert (replay.DATA, replay.DOWN) == (pipeline.DATA, pipeline.DOWN)
    assert frames._RECORD.format == recording._RECORD.format


def test_decode_errors_survive_link_changes_and_partial_frames_do_not() -> None:
    outs: list[Output] = []
    loop = DecodeLoop(DeviceSession("d", outs.append), "neurospasm")
    frame = _emg(0)
    t = 1_700_000_000.0
    records = [
        LinkRecord(t, UP),
        LinkRecord(t, DATA, encode_frame(INFO) + frame),
        LinkRecord(t + 0.02, DATA, b"\x07garbage\x00"),  # one bad frame on the first connection
        LinkRecord(t + 0.03, DATA, frame[:10]),  # a partial frame cut by the drop
        LinkRecord(t + 0.04, DOWN),
        LinkRecord(t + 0.5, UP),
        # the tail of the cut frame must not be glued to its head: a fresh decoder resyncs
        LinkRecord(t + 0.51, DATA, frame[10:] + _emg(100) + b"\x05bad\x00"),
    ]
    run_records(loop, records)
    assert loop.connections == 2
    errors = loop.decode_errors
    assert sum(errors.values()) == loop.bad_frames >= 3, errors  # both connections' errors counted
    assert loop.frames == 3  # INFO, EMG 0, EMG 100 (never the glued half frame)
    gaps = [o.payload for o in outs if o.kind == "gap" and o.payload]
    assert [(g["cause"], g["samples_missing"]) for g in gaps] == [("disconnect", 80)]


def test_forwarding_loop_hands_only_identity_and_status_to_the_session() -> None:
    session = DeviceSession("d", lambda _o: None)
    seen: list[object] = []
    loop = DecodeLoop(session, detect=False, observe=lambda f, _t: seen.append(f))
    loop.data(1.0, encode_frame(INFO) + _emg(0))
    assert session.info is not None and session.emg is not None and session.emg.received == 0
    assert len(seen) == 2  # the observer sees every frame
