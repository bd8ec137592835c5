"""Activity context through the device session (issue 9): the simulator's walking bout comes out
as an activity record (schema-valid JSON, an ``activity`` line-protocol point the dashboard reads),
and a declared session is recorded with declared=true without dropping the spasms inside it."""

from __future__ import annotations

from pathlib import Path

from support.checks import validate

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.outputs import encoders, lineproto
from ingest.stream.records import ActivityRecord
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import StreamDecoder

T0 = 1_795_600_000.0


def feed(session: DeviceSession, scenario: str, seconds: float, at: dict[float, str] | None = None) -> None:
    rec = synthesize(builtin_scenario(scenario))
    dev = SimDevice(SignalSource.from_recording(rec), autostart=True)
    dec = StreamDecoder()
    t = 0.0
    todo = dict(at or {})
    while t < seconds:
        t += 0.05
        for wire in dev.frames_until(t):
            for frame in dec.feed(wire):
                session.on_frame(frame, T0 + t + 0.002)
        for when in [w for w in todo if w <= t]:
            what = todo.pop(when)
            assert session.declare("exercise", None) if what == "declare" else session.clear_declared()
    session.finish()


def activities(outs: list[Output]) -> list[ActivityRecord]:
    return [o.record for o in outs if o.kind == "activity" and isinstance(o.record, ActivityRecord)]


def test_walking_bout_is_recorded_as_an_activity_span() -> None:
    outs: list[Output] = []
    session = DeviceSession("wearable-1", outs.append, series=False)
    feed(session, "act_walk", 100.0)
    spans = [a for a in activities(outs) if a.kind == "walking"]
    assert len(spans) == 1, activities(outs)
    walk = spans[0]
    # the scenario walks from 30 s for 60 s; the stage lags by a few seconds at most
    assert abs(walk.t_start - (T0 + 30.0)) < 6.0
    assert abs(walk.t_end - (T0 + 90.0)) < 6.0
    assert not walk.declared
    for a in activities(outs):
        validate("activity", encoders.to_json(a))
    line = encoders.to_line(walk, "p-1")
    meas, tags, fields, ts = lineproto.parse_line(line.decode().strip())
    assert meas == "activity"
    assert tags == {"device": "wearable-1", "context": "walking", "patient": "p-1"}
    assert abs(float(fields["duration_s"]) - (walk.t_end - walk.t_start)) < 0.01
    assert fields["id"] == walk.id and fields["declared"] is False
    assert ts == encoders.ms_ns(walk.t_start)
    # the status shows the context: back at rest after the bout, about a minute active this hour
    st = session.activity_status(T0 + 100.0)
    assert st["now"] == "rest" and 0.8 < st["active_min_1h"] < 1.2


def test_declared_session_is_recorded_declared_and_spasms_still_come_out() -> None:
    outs: list[Output] = []
    session = DeviceSession("wearable-1", outs.append, series=False)
    feed(session, "e2e_short", 13.0, at={1.0: "declare", 11.0: "clear"})
    declared = [a for a in activities(outs) if a.declared]
    assert len(declared) == 1
    d = declared[0]
    assert d.kind == "exercise"
    assert abs(d.t_start - (T0 + 1.0)) < 0.3 and abs(d.t_end - (T0 + 11.0)) < 0.3
    validate("activity", encoders.to_json(d))
    assert b"declared=true" in encoders.to_line(d, "p-1")
    # nothing is lost silently: each of the scenario's 3 bursts (3 events undeclared,
    # tests/unit/test_schemas.py) is either an event or counted by the detector as voluntary
    events = [o.record for o in outs if o.kind == "event"]
    assert session.detector is not None
    assert len(events) + session.detector.voluntary_bursts == 3


async def test_activity_line_reaches_the_dashboards_local_store_reader(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dashboard.history.sqlite import SqliteHistory
    from ingest.outputs.sinks.sqlite import SqliteSink
    from ingest.stream.records import activity_id

    a = ActivityRecord(
        activity_id("wearable-1", 7, "exercise", 2000, True), "wearable-1", 7, "exercise", "emg", 2000,
        T0 + 1.0, T0 + 2701.5, declared=True,
    )  # fmt: skip
    db = tmp_path / "history.sqlite"
    async with SqliteSink(db) as sink:
        await sink.send([encoders.to_line(a, "p-1")])
    history = SqliteHistory(db)
    try:
        rows = history.activity(
            "wearable-1", datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 3600, UTC)
        )
    finally:
        history.close()
    assert len(rows) == 1
    row = rows[0]
    assert (row.context, row.id) == ("exercise", a.id)
    assert abs(row.duration_s - 2700.5) < 1e-6
    assert abs(row.start.timestamp() - (T0 + 1.0)) < 1e-3
