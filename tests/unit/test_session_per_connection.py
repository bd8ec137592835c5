"""A vendor link restarts its counter on every connection (InfoFrame.per_connection): the session
re-bases it, so a reconnect is one disconnect gap measured in time and the stream carries on."""

from __future__ import annotations

import numpy as np

from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import EmgFrame, InfoFrame

RATE = 250


def info(boot: int, labels: tuple[str, ...] = ("ch1", "ch2")) -> InfoFrame:
    return InfoFrame(0, 0, boot, RATE, 0, 0.1, 1.0, "cyton", "v3", labels, per_connection=True)


def feed(s: DeviceSession, first: int, n_blocks: int, t0: float, block: int = 5) -> float:
    t = t0
    for k in range(n_blocks):
        t = t0 + (k + 1) * block / RATE
        s.on_frame(EmgFrame(0, first + k * block, np.zeros((block, 2), dtype=np.int32)), t)
    return t


def test_reconnect_is_one_disconnect_gap_and_the_counter_continues() -> None:
    out: list[Output] = []
    s = DeviceSession("dev-a", out.append)
    s.on_frame(info(111), 1000.0)
    t = feed(s, 40, 250, 1000.0)  # 5 s from counter 40
    detector = s.detector
    s.on_disconnect(t)
    s.on_frame(info(222), t + 1.2)
    # The counter restarted at 0; 1 s of samples were never received. 1.5 s of the new
    # connection: longer than the session's placement hold (REBASE_HOLD_S).
    feed(s, 0, 75, t + 1.0)
    gaps = [o.payload for o in out if o.kind == "gap" and o.payload]
    assert len(gaps) == 1 and gaps[0]["cause"] == "disconnect"
    assert abs(gaps[0]["samples_missing"] - RATE) <= 2  # 1 s, from the clock
    assert s.detector is detector and s.boot_id == 111 and s.stats.reboots == 0
    assert s.emg is not None and s.emg.expected == 40 + 1250 + gaps[0]["samples_missing"] + 375


def test_reconfigured_device_is_a_new_stream() -> None:
    out: list[Output] = []
    s = DeviceSession("dev-a", out.append)
    s.on_frame(info(111), 1000.0)
    t = feed(s, 0, 50, 1000.0)
    s.on_disconnect(t)
    s.on_frame(info(222, ("ch1", "ch2", "ch3")), t + 0.5)  # a Daisy fitted meanwhile: not the same stream
    assert s.stats.reboots == 1 and s.boot_id == 222


def test_reconnect_gap_is_placed_by_the_earliest_arrivals_not_a_late_first_frame() -> None:
    """The first frames of a new connection may arrive late (the host was busy, a Bluetooth
    connection interval): a gap sized from the first frame alone would be too long by that
    delay (seen as 50-100 ms on a loaded machine). The earliest arrivals of the first second
    (REBASE_HOLD_S) place the counter instead."""
    out: list[Output] = []
    s = DeviceSession("dev-a", out.append)
    s.on_frame(info(111), 1000.0)
    t = feed(s, 40, 250, 1000.0)
    s.on_disconnect(t)
    s.on_frame(info(222), t + 1.0)
    # 1 s lost; the new connection's first three blocks are held up 80 ms and arrive together
    t_new = t + 1.0
    for k in range(60):
        arrival = t_new + (k + 1) * 5 / RATE
        if k < 3:
            arrival = t_new + 3 * 5 / RATE + 0.08
        s.on_frame(EmgFrame(0, k * 5, np.zeros((5, 2), dtype=np.int32)), arrival)
    gaps = [o.payload for o in out if o.kind == "gap" and o.payload]
    assert len(gaps) == 1 and gaps[0]["cause"] == "disconnect"
    assert abs(gaps[0]["samples_missing"] - RATE) <= 1, gaps[0]  # from the first frame: 20 more
    assert s.emg is not None and s.emg.expected == 40 + 1250 + gaps[0]["samples_missing"] + 300


def test_held_frames_of_a_new_connection_are_placed_when_the_link_drops_again() -> None:
    out: list[Output] = []
    s = DeviceSession("dev-a", out.append)
    s.on_frame(info(111), 1000.0)
    t = feed(s, 0, 50, 1000.0)
    s.on_disconnect(t)
    s.on_frame(info(222), t + 0.5)
    feed(s, 0, 2, t + 0.5)  # two blocks (40 ms), then the link drops again
    assert not [o for o in out if o.kind == "gap"]  # still held
    s.on_disconnect(t + 0.6)
    gaps = [o.payload for o in out if o.kind == "gap" and o.payload]
    assert len(gaps) == 1 and abs(gaps[0]["samples_missing"] - RATE // 2) <= 1
    assert s.emg is not None and s.emg.received == 250 + 10


def test_reconnect_of_a_device_faster_than_real_time_is_still_a_gap() -> None:
    """A simulator at 2x (or a wild link): the clock cannot fit the device's rate, so its line
    extrapolates the old stream's end too late and once placed the new connection "before" it,
    hiding the outage (CI saw the Myo's disconnect gap vanish). The untrusted case measures from
    the last old frame's own arrival instead."""
    speed = 2.0
    for drop_after in (230, 250, 275, 290):  # where in the clock's 1 s fitting window the link drops
        out: list[Output] = []
        s = DeviceSession("dev-a", out.append)
        s.on_frame(info(111), 1000.0)
        t = 1000.0
        for k in range(drop_after):
            t = 1000.0 + (k + 1) * 5 / RATE / speed
            s.on_frame(EmgFrame(0, k * 5, np.zeros((5, 2), dtype=np.int32)), t)
        s.on_disconnect(t)
        t_new = t + 0.25  # a quarter second of host time down: half a second of the device's
        s.on_frame(info(222), t_new)
        for k in range(120):  # 1.2 s of host time: past the placement hold
            arrival = t_new + (k + 1) * 5 / RATE / speed
            s.on_frame(EmgFrame(0, k * 5, np.zeros((5, 2), dtype=np.int32)), arrival)
        gaps = [o.payload for o in out if o.kind == "gap" and o.payload]
        assert len(gaps) == 1 and gaps[0]["cause"] == "disconnect", (drop_after, gaps)
        # Measured at the nominal rate in host time: at least the host's quarter second.
        assert 0.25 * RATE - 10 <= gaps[0]["samples_missing"] <= 0.5 * RATE + 10, (drop_after, gaps[0])
