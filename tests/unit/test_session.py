"""The device session: counters, duplicates, reordering, gaps and reboots, with no I/O at all.

The simulator's frames are decoded and fed straight into a ``DeviceSession``; a frame filter at
the device seam drops, duplicates or swaps frames, and the gap records must account for exactly
what was done.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.stream.session import REORDER_WINDOW, DeviceSession, Output, _unwrap
from ingest.wire.protocol import AccFrame, Command, EmgFrame, Frame, StreamDecoder

T0 = 1_795_600_000.0


def run(
    frame_filter: Callable[[Frame, bytes], list[bytes]] | None = None,
    seconds: float = 6.0,
    scenario: str = "e2e_short",
    between: Callable[[float, SimDevice, DeviceSession], None] | None = None,
) -> tuple[list[Output], DeviceSession, SimDevice]:
    outs: list[Output] = []
    rec = synthesize(builtin_scenario(scenario))
    dev = SimDevice(SignalSource.from_recording(rec), autostart=True, frame_filter=frame_filter)
    session = DeviceSession("dev", outs.append)
    dec = StreamDecoder()
    t = 0.0
    while t < seconds:
        t += 0.01
        if between:
            between(t, dev, session)
        for wire in dev.frames_until(t):
            for frame in dec.feed(wire):
                session.on_frame(frame, T0 + t + 0.002)
    session.finish()
    return outs, session, dev


def gaps(outs: list[Output]) -> list[dict[str, object]]:
    return [o.payload for o in outs if o.kind == "gap" and o.payload]


def test_unwrap_across_the_32_bit_boundary() -> None:
    assert _unwrap(5, (1 << 32) - 10) == (1 << 32) + 5
    assert _unwrap((1 << 32) - 3, (1 << 32) + 2) == (1 << 32) - 3
    assert _unwrap(100, 90) == 100


def test_clean_stream_has_no_gaps_and_exact_sample_count() -> None:
    outs, session, dev = run()
    assert gaps(outs) == []
    assert session.emg is not None and session.emg.received == dev.emg_samples_sent
    assert session.loss_pct() == 0.0


def test_dropped_frames_become_exact_gaps() -> None:
    dropped: list[tuple[int, int]] = []
    count = {"emg": 0}

    def drop(frame: Frame, wire: bytes) -> list[bytes]:
        if isinstance(frame, EmgFrame):
            count["emg"] += 1
            if count["emg"] in (50, 51, 52, 90):  # a burst of three, then a single one
                dropped.append((frame.counter, len(frame.samples)))
                return []
        return [wire]

    outs, session, _ = run(drop)
    emg_gaps = [g for g in gaps(outs) if g["domain"] == "emg"]
    assert [(g["cause"], g["samples_missing"]) for g in emg_gaps] == [
        ("lost_frames", sum(n for _, n in dropped[:3])),
        ("lost_frames", dropped[3][1]),
    ]
    assert session.emg is not None and session.emg.missing == sum(n for _, n in dropped)


def test_duplicates_dropped_once_and_reordering_repaired() -> None:
    held: list[bytes] = []
    count = {"n": 0}

    def mangle(frame: Frame, wire: bytes) -> list[bytes]:
        if not isinstance(frame, (EmgFrame, AccFrame)):
            return [wire]
        count["n"] += 1
        if count["n"] % 37 == 0:
            return [wire, wire]  # duplicated
        if count["n"] % 53 == 0:
            held.append(wire)  # delayed: sent after the next data frame
            return []
        if held:
            out = [wire, *held]
            held.clear()
            return out
        return [wire]

    outs, session, _ = run(mangle)
    assert gaps(outs) == []
    assert session.emg is not None and session.emg.duplicates > 0
    assert session.emg.missing == 0


def test_late_frame_beyond_the_window_is_a_gap_then_dropped() -> None:
    held: list[bytes] = []
    count = {"n": 0}

    def late(frame: Frame, wire: bytes) -> list[bytes]:
        if not isinstance(frame, EmgFrame):
            return [wire]
        count["n"] += 1
        if count["n"] == 40:
            held.append(wire)
            return []
        if count["n"] == 40 + REORDER_WINDOW + 3:
            return [wire, *held]
        return [wire]

    outs, session, _ = run(late)
    g = [x for x in gaps(outs) if x["domain"] == "emg"]
    assert len(g) == 1 and g[0]["cause"] == "lost_frames"
    assert session.emg is not None and session.emg.duplicates == 1  # the late frame, dropped


def test_reboot_is_a_gap_and_the_clock_restarts() -> None:
    def reboot(t: float, dev: SimDevice, session: DeviceSession) -> None:
        if abs(t - 3.0) < 0.005:
            dev.reboot(t)
            dev.handle_command(Command.START)

    outs, session, _ = run(between=reboot, seconds=6.0)
    g = gaps(outs)
    assert any(x["cause"] == "reboot" for x in g), g
    assert session.stats.reboots == 1
    # No timestamp in any series goes backwards across the reboot.
    t = np.concatenate(
        [
            o.series.t_ns
            for o in outs
            if o.kind == "envelope" and o.series and o.series.tags["channel"] == "EMG L quad"
        ]
    )
    assert np.all(np.diff(t) > 0)


def test_data_before_info_is_counted_not_guessed() -> None:
    outs: list[Output] = []
    session = DeviceSession("dev", outs.append)
    session.on_frame(EmgFrame(0, 0, np.zeros((4, 2), np.int16)), T0)
    assert session.needs_info and session.stats.no_info_frames == 1 and outs == []


@pytest.mark.parametrize("scenario", ["e2e_short"])
def test_event_ids_stable_across_runs(scenario: str) -> None:
    a, _, _ = run(scenario=scenario, seconds=12.5)
    b, _, _ = run(scenario=scenario, seconds=12.5)
    ids_a = [o.payload["id"] for o in a if o.kind == "event" and o.payload]
    ids_b = [o.payload["id"] for o in b if o.kind == "event" and o.payload]
    assert len(ids_a) == 3 and ids_a == ids_b


def test_a_link_that_drops_releases_the_bursts_held_for_later_data() -> None:
    """A burst may wait for later data (``rhythm_lookahead_s``) before it is judged. When the
    link drops, that data may never come (a flat battery, a recording that ended): the held
    burst is judged at once on what came before, not left unpublished until the link returns."""
    from firmware_sim.faults import FaultInjector, simulate

    sc = builtin_scenario("e2e_short")
    rec = synthesize(sc)
    cap = simulate(SimDevice(SignalSource.from_recording(rec), seed=1), FaultInjector.from_scenario(sc, rec),
                   duration_s=rec.duration_s, t0_host=1.8e9)  # fmt: skip
    out: list[Output] = []
    s = DeviceSession("d", out.append)
    dec = StreamDecoder()
    t_last = 0.0
    for t_host, data in cap.chunks:
        for frame in dec.feed(data):
            s.on_frame(frame, t_host)
        t_last = t_host
    held = len(rec.labels) - sum(o.kind == "event" for o in out)
    assert held >= 1  # the last spasm waits for data after the end of the recording
    s.on_disconnect(t_last + 0.1)
    events = [o.payload for o in out if o.kind == "event" and o.payload]
    assert len(events) == len(rec.labels) and len({e["id"] for e in events}) == len(events)
    s.finish()  # and nothing twice at the end
    assert sum(o.kind == "event" for o in out) == len(rec.labels)


def test_frames_without_samples_for_stale_after_s_release_the_held_bursts() -> None:
    """A device that keeps its link up with STATUS frames but sends no samples (a sensor whose
    acquisition stopped) is as quiet as a dropped link for the detector: after
    ``samples_stale_after_s`` of it, the burst held for later data is judged (once), the session
    says so (``samples_stale``), and the runner's status shows it; samples coming back end it."""
    from firmware_sim.faults import FaultInjector, simulate
    from ingest.config import parse_config
    from ingest.stream.pipeline import DecodeLoop
    from ingest.stream.runner import DeviceRunner
    from ingest.wire.protocol import StatusFrame, encode_frame

    sc = builtin_scenario("e2e_short")
    rec = synthesize(sc)
    cap = simulate(SimDevice(SignalSource.from_recording(rec), seed=1), FaultInjector.from_scenario(sc, rec),
                   duration_s=rec.duration_s, t0_host=1.8e9)  # fmt: skip
    out: list[Output] = []
    s = DeviceSession("d", out.append, samples_stale_after_s=3.0)
    loop = DecodeLoop(s, "neurospasm")
    loop.link_up(1.8e9)
    for t_host, data in cap.chunks:
        loop.data(t_host, data)
    t_last = cap.chunks[-1][0]
    held = len(rec.labels) - sum(o.kind == "event" for o in out)
    assert held >= 1 and not s.samples_stale  # the last spasm waits for data after the recording

    def status(t: float, seq: int) -> None:
        loop.data(t, encode_frame(StatusFrame(seq, 0, 80, 3900, 0b11)))

    status(t_last + 1.0, 1)
    status(t_last + 2.9, 2)  # still within 3 s of the last sample: nothing is released yet
    assert sum(o.kind == "event" for o in out) == len(rec.labels) - held and not s.samples_stale
    status(t_last + 3.1, 3)
    assert s.samples_stale
    events = [o.payload for o in out if o.kind == "event" and o.payload]
    assert len(events) == len(rec.labels) and len({e["id"] for e in events}) == len(events)
    status(t_last + 9.0, 4)  # released once, not at every later status frame
    assert sum(o.kind == "event" for o in out) == len(rec.labels)

    # The gateway's runner reports it: stale, not monitored, and why.
    (dev,) = parse_config({"devices": [{"id": "d", "port": "/dev/null"}]}, "<test>").devices
    runner = DeviceRunner(dev, s, lambda _d: None, 3.0, lambda _r: None)  # type: ignore[arg-type,return-value]
    runner._streaming()
    assert (runner.state, runner.monitoring) == ("stale", False) and "no samples for 3 s" in runner.reason

    s.finish()  # and nothing twice at the end
    assert sum(o.kind == "event" for o in out) == len(rec.labels)


def test_a_reconnect_measures_no_samples_afresh() -> None:
    """Hours offline and then an INFO frame on the new link is not "no samples for ages": the
    quiet time counts from the link coming up (``DecodeLoop.link_up``)."""
    from ingest.stream.pipeline import DecodeLoop
    from ingest.wire.protocol import StatusFrame, encode_frame

    s = DeviceSession("d", lambda _o: None, samples_stale_after_s=3.0)
    loop = DecodeLoop(s, "neurospasm")
    loop.link_up(T0)
    loop.data(T0 + 0.5, encode_frame(EmgFrame(0, 0, np.zeros((4, 2), np.int16))))
    loop.link_down(T0 + 1.0)
    loop.link_up(T0 + 7200.0)
    loop.data(T0 + 7200.1, encode_frame(StatusFrame(1, 0, 80, 3900, 0b11)))
    assert not s.samples_stale
    loop.data(T0 + 7203.2, encode_frame(StatusFrame(2, 0, 80, 3900, 0b11)))
    assert s.samples_stale
