"""Fault injection: deterministic, recorded as truth, and the gateway's gap records match it."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.checks import assert_gaps_match, caught_up, gateway_config

from firmware_sim.cli import device_ids, scenario_with_fault_overrides
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.faults import FaultInjector, simulate
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import Scenario, ScenarioError, builtin_scenario, parse_scenario
from firmware_sim.signals import synthesize
from ingest.stream.runner import Gateway
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import StreamDecoder


def offline(scenario: Scenario, seed_offset: int = 0) -> tuple[list[tuple[float, bytes]], FaultInjector]:
    rec = synthesize(scenario)
    dev = SimDevice(SignalSource.from_recording(rec), seed=scenario.seed)
    inj = FaultInjector.from_scenario(scenario, rec, seed_offset=seed_offset)
    f = scenario.faults
    cap = simulate(
        dev,
        inj,
        duration_s=scenario.duration_s,
        t0_host=1.7e9,
        drift_ppm=f.clock_drift_ppm,
        jitter_ms=f.jitter_ms,
    )
    return cap.chunks, inj


def test_same_seed_same_bytes_and_truth() -> None:
    sc = builtin_scenario("faults_lossy")
    a_chunks, a = offline(sc)
    b_chunks, b = offline(sc)
    assert a_chunks == b_chunks
    assert json.dumps(a.truth) == json.dumps(b.truth)
    assert a.expected_gaps() == b.expected_gaps()
    kinds = Counter(r["kind"] for r in a.truth)
    # faults_lossy switches every frame-level fault on: each must actually have happened.
    for kind in ("lost_frames", "corrupt", "duplicate", "reorder", "disconnect"):
        assert kinds[kind] > 0, kind
    assert kinds["disconnect"] == 2
    reasons = Counter(r["reason"] for r in a.truth if r["kind"] == "lost_frames")
    assert reasons["scripted_burst"] > 0 and reasons["random"] > 0


def test_random_bursts_lose_consecutive_frames() -> None:
    sc = scenario_dict(duration_s=60.0, faults={"loss_bursts_per_min": 6.0, "loss_burst_frames": 10})
    _, inj = offline(sc)
    assert len(inj.random_bursts) >= 2
    burst = [r for r in inj.truth if r["kind"] == "lost_frames" and r["reason"] == "burst"]
    # Every drawn burst is applied in full (bursts that start together simply add up).
    assert len(burst) == sum(n for _, n in inj.random_bursts)
    # Within a burst the EMG frames lost are consecutive: one gap per burst, not many.
    emg_gaps = [g for g in inj.expected_gaps() if g["domain"] == "emg"]
    assert len(emg_gaps) <= len(inj.random_bursts)


def test_other_seed_other_faults() -> None:
    sc = builtin_scenario("faults_lossy")
    _, a = offline(sc)
    _, b = offline(sc, seed_offset=1)
    lost_a = {(r["frame"], r.get("start_counter")) for r in a.truth if r["kind"] == "lost_frames"}
    lost_b = {(r["frame"], r.get("start_counter")) for r in b.truth if r["kind"] == "lost_frames"}
    assert lost_a != lost_b


def test_loss_rate_is_honoured() -> None:
    sc = scenario_dict(duration_s=60.0, faults={"frame_loss_rate": 0.05})
    _, inj = offline(sc)
    data = inj.stats["lost"]
    sent = sum(1 for r in inj.truth if r["kind"] == "lost_frames")
    assert data == sent
    # ~1100 data frames a minute at 1 kHz / 2 channels + 50 Hz ACC: 5 % is ~55, binomial sd ~7.
    assert 30 < data < 85


def test_corruption_is_caught_by_the_decoder_and_never_spills_into_the_next_frame() -> None:
    sc = scenario_dict(duration_s=20.0, faults={"corrupt_rate": 0.05, "corrupt_bytes": 3})
    chunks, inj = offline(sc)
    dec = StreamDecoder()
    frames = [f for _, data in chunks for f in dec.feed(data)]
    corrupt = [r for r in inj.truth if r["kind"] == "corrupt"]
    assert corrupt
    # One corrupted frame is one bad frame, except when a flipped byte became 0x00 and split it.
    assert len(corrupt) <= dec.stats.bad_frames <= 2 * len(corrupt)
    got = {(type(f).__name__, f.seq) for f in frames}
    for r in corrupt:
        assert (r["frame"], r["seq"]) not in {(k.removesuffix("Frame").lower(), s) for k, s in got}


def test_overlapping_outages_are_refused() -> None:
    sc = scenario_dict(faults={"disconnects": [{"at_s": 2.0, "duration_s": 3.0}], "reboot_at_s": [4.0]})
    with pytest.raises(ValueError, match=r"reboot at 4\.0 s starts while the link is still down"):
        FaultInjector.from_scenario(sc)


def test_battery_and_lead_off_schedule() -> None:
    sc = builtin_scenario("faults_reboot")
    inj = FaultInjector.from_scenario(sc, synthesize(sc))
    assert inj.contact_mask(21.9) == 0b11
    assert inj.contact_mask(22.5) == 0b10  # "EMG L quad" (bit 0) is off from 22 s for 5 s
    assert inj.contact_mask(27.1) == 0b11
    lossy = FaultInjector.from_scenario(builtin_scenario("faults_lossy"))
    assert lossy.battery_pct(0) == 35 and lossy.battery_pct(1800) == 25


@pytest.mark.parametrize("name", ["faults_lossy", "faults_reboot"])
def test_offline_session_gaps_match_the_truth(name: str) -> None:
    """The gateway's session, fed the simulated bytes, reports exactly the injected gaps."""
    sc = builtin_scenario(name)
    rec = synthesize(sc)
    dev = SimDevice(SignalSource.from_recording(rec), seed=sc.seed)
    inj = FaultInjector.from_scenario(sc, rec)
    cap = simulate(dev, inj, duration_s=sc.duration_s, t0_host=1.7e9,
                   drift_ppm=sc.faults.clock_drift_ppm, jitter_ms=sc.faults.jitter_ms)  # fmt: skip
    outs: list[Output] = []
    session = DeviceSession("d", outs.append)
    dec = StreamDecoder()
    links = iter(cap.link_events)
    nxt = next(links, None)
    for t, data in cap.chunks:
        while nxt is not None and nxt[0] <= t:
            if nxt[1] == "down":
                session.on_disconnect(t)
            nxt = next(links, None)
        for f in dec.feed(data):
            session.on_frame(f, t)
    got = [o.payload for o in outs if o.kind == "gap" and o.payload and o.payload["cause"] != "lead_off"]
    want = inj.expected_gaps()
    assert want, "the scenario must produce gaps"
    assert_gaps_match(got, want)


def scenario_dict(duration_s: float = 12.0, faults: dict[str, Any] | None = None, seed: int = 11) -> Scenario:
    return parse_scenario({
        "name": "faults_test", "seed": seed, "duration_s": duration_s, "emg_rate_hz": 1000, "acc_rate_hz": 50,
        "channels": ["EMG L quad", "EMG R quad"],
        "events": [
            {"type": "phasic", "channel": "EMG L quad", "onset_s": 1.0, "duration_s": 1.0, "peak_uv": 200.0}
        ],
        "faults": faults or {},
    }, "<test>")  # fmt: skip


def _stalled_loop(dev: Any, inj: FaultInjector, host0: float, ticks: list[float]) -> None:
    """Drive a device as the pty server's paced loop does, at the given (uneven) device times."""
    for t in ticks:
        inj.advance(t, host0 + t)
        dev.frames_until(t)


def _faulty_device(kind: str, sc: Any) -> tuple[Any, FaultInjector, float, float]:
    """A device of ``kind`` playing the scenario, its fault injector as its frame filter (at the
    device's own rates: a vendor personality has its own), and its EMG and accelerometer rates."""
    from firmware_sim.personalities import PersonalityDevice, make_device

    rec = synthesize(sc)
    dev = make_device(kind, SignalSource.from_recording(rec), seed=sc.seed)
    rate, acc_rate = float(sc.emg_rate_hz), float(sc.acc_rate_hz)
    if isinstance(dev, PersonalityDevice):
        rate, acc_rate = dev.personality.emg_rate_hz, dev.personality.acc_rate_hz
    inj = FaultInjector.from_scenario(sc, rec, emg_rate_hz=rate, acc_rate_hz=acc_rate)
    dev.frame_filter = inj
    return dev, inj, rate, acc_rate


@pytest.mark.parametrize("kind", ["neurospasm", "shimmer"])
def test_truth_stamps_frames_when_they_were_made_not_when_a_stalled_loop_sent_them(kind: str) -> None:
    """A paced loop that stalls makes a whole stretch of frames at one late tick (the gateway and
    the simulator share a loaded CPU). The truth's host times must be when each frame's samples
    were made, as the gateway's clock (a lower envelope of arrivals) places them; stamped with the
    late tick they were up to the stall late, which made live gap comparisons flaky."""
    from ingest.wire.protocol import CmdFrame, Command, encode_frame

    sc = scenario_dict(duration_s=2.0, faults={"frame_loss_rate": 0.3, "seed": 3})
    dev, inj, rate, _ = _faulty_device(kind, sc)
    host0 = 1.7e9
    inj.advance(0.0, host0)
    dev.handle_bytes(b"\x07" if kind == "shimmer" else encode_frame(CmdFrame(0, Command.START)))
    # 5 ms ticks, then one 0.6 s stall, then 5 ms ticks again.
    ticks = [0.005 * i for i in range(1, 60)] + [0.9] + [0.9 + 0.005 * i for i in range(1, 40)]
    _stalled_loop(dev, inj, host0, ticks)
    gaps = [g for g in inj.expected_gaps() if g["domain"] == "emg" and g["cause"] == "lost_frames"]
    inside = [g for g in gaps if 0.3 < g["start_counter"] / rate < 0.85]
    assert len(inside) >= 2, gaps  # losses made during the stall
    for g in gaps:
        # the device counter counts from 0 at START (device time 0, host time host0)
        t_start = host0 + g["start_counter"] / rate
        t_end = host0 + (g["start_counter"] + g["samples_missing"]) / rate
        assert g["t_host_start"] == pytest.approx(t_start, abs=1e-6), g
        assert g["t_host_end"] == pytest.approx(t_end, abs=1e-6), g


@pytest.mark.parametrize("kind", ["neurospasm", "shimmer", "polar-h10"])
def test_faults_count_from_the_first_sample_however_late_the_central_starts_the_stream(kind: str) -> None:
    """A scenario's faults and its events share one timeline, seconds from the first sample.

    A central that connects and starts streaming late (a busy host took 1.7 s) must not move a
    scripted loss burst or disconnect onto an earlier point of the signal: before, the schedule
    counted from power-on, so on a loaded CI host a loss scripted between two tremors fell inside
    the first (the BLE bridge test lost both tremors to it)."""
    from ingest.wire.polar import start_acc_command
    from ingest.wire.protocol import CmdFrame, Command, encode_frame

    sc = scenario_dict(duration_s=4.0, faults={
        "loss_bursts": [{"at_s": 1.0, "duration_s": 0.2}], "disconnects": [{"at_s": 2.5, "duration_s": 0.3}],
    })  # fmt: skip
    dev, inj, rate, acc_rate = _faulty_device(kind, sc)
    late = 1.7  # device seconds since power-on before the central's START
    due_before = [ev for t in (0.5, 1.0, 1.5, late - 0.01) for ev in inj.due_events(t)]
    inj.advance(late, 1.7e9 + late)
    dev.frames_until(late)
    if kind == "polar-h10":
        dev.handle_write(start_acc_command(), "fb005c81-02e7-f387-1cad-8acd2d8df0c8")
    else:
        dev.handle_bytes(b"\x07" if kind == "shimmer" else encode_frame(CmdFrame(0, Command.START)))
    assert due_before == []  # nothing happens to a stream that has not begun
    events = []
    for i in range(1, 600):
        t = late + 0.005 * i
        events += [(round(inj.stream_time(t), 3), ev.action) for ev in inj.due_events(t)]
        inj.advance(t, 1.7e9 + t)
        dev.frames_until(t)
    # The scheduled disconnect, 2.5 s into the stream (not 2.5 s after power-on).
    assert [a for _, a in events][:1] == ["disconnect"] and abs(events[0][0] - 2.5) <= 0.006, events
    lost = [g for g in inj.truth if g["kind"] == "lost_frames" and g["reason"] == "scripted_burst"]
    data = [g for g in lost if "start_counter" in g]  # (INFO and status frames have no counter)
    assert data, inj.truth
    for g in lost:
        assert 1.0 <= g["t_device_s"] < 1.2 + 1e-9, g
    for g in data:  # frames made 1.0-1.2 s into the stream: their samples are from there too
        counter_rate = acc_rate if kind == "polar-h10" or g["domain"] == "acc" else rate
        assert 1.0 - 0.25 <= g["start_counter"] / counter_rate < 1.2 + 1e-9, g


# -- CLI helpers ------------------------------------------------------------------------------


def test_device_ids_count_up() -> None:
    assert device_ids("sim-0001", 3) == ["sim-0001", "sim-0002", "sim-0003"]
    assert device_ids("wearable", 2) == ["wearable-1", "wearable-2"]
    assert device_ids("x", 1) == ["x"]


def test_fault_overrides_are_validated() -> None:
    import argparse

    sc = builtin_scenario("faults_lossy")
    args = argparse.Namespace(no_faults=False, frame_loss=0.02, corrupt_rate=None, duplicate_rate=None,
                              reorder_rate=None, jitter_ms=None, fault_seed=None)  # fmt: skip
    assert scenario_with_fault_overrides(sc, args).faults.frame_loss_rate == 0.02
    assert scenario_with_fault_overrides(sc, args).faults.disconnects == sc.faults.disconnects
    args.frame_loss = 1.5
    with pytest.raises(ScenarioError, match=r"^command line: --frame-loss: .*less than 1"):
        scenario_with_fault_overrides(sc, args)
    args.no_faults = True
    assert scenario_with_fault_overrides(sc, args).faults.disconnects == []


# -- live over a pty ---------------------------------------------------------------------------

LIVE_FAULTS = {
    "frame_loss_rate": 0.02,
    "loss_bursts": [{"at_s": 1.5, "duration_s": 0.3}],
    "disconnects": [{"at_s": 2.5, "duration_s": 0.8}],
    "reboot_at_s": [5.0],
    "reboot_downtime_s": 0.8,
}


def is_symlink(path: str) -> bool:
    return os.path.islink(path)


def _streaming_after_the_reboot(gw: Gateway) -> bool:
    """The new boot's EMG and accelerometer streams have both reached the session."""
    session = gw.devices["wearable-1"].session
    return bool(
        session.stats.reboots
        and session.emg is not None
        and session.emg.expected is not None
        and session.acc is not None
        and session.acc.expected is not None
    )


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs pseudo-terminals")
async def test_live_gateway_gaps_match_injected_faults(tmp_path: Path) -> None:
    """2 % random loss, a loss burst, a disconnect and a reboot over a real pty, real gateway."""
    sc = scenario_dict(duration_s=12.0, faults=LIVE_FAULTS)
    rec = synthesize(sc)
    device = SimDevice(SignalSource.from_recording(rec), device_id="sim-live", seed=sc.seed)
    injector = FaultInjector.from_scenario(sc, rec)
    outputs: list[Output] = []
    async with PtyServer(device, injector=injector) as server:
        assert server.path != server.pts_path and is_symlink(server.path)
        first_pts = server.pts_path
        cfg = gateway_config(tmp_path, server.path)
        async with Gateway(cfg, observers=[lambda _dev, out: outputs.append(out)]) as gw:
            gw.start()
            await asyncio.sleep(max(0.0, 7.0 - server.device_time()))
            # The device is back from its reboot at 5.8 s; on a loaded machine the gateway's
            # reconnect may be later than the 1.2 s left: wait (bounded) for the new boot's data.
            deadline = asyncio.get_running_loop().time() + 10.0
            while not _streaming_after_the_reboot(gw) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await server.quiesce()
            await caught_up(gw)  # what the gateway read is processed, not dropped by drain
            await gw.drain(timeout_s=1.0)
        assert server.stats.disconnects == 1 and server.stats.reboots == 1
        assert server.pts_path != first_pts or server.stats.ptys_created == 3
    gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload is not None]
    want = injector.expected_gaps()
    causes = Counter(g["cause"] for g in want)
    assert causes["disconnect"] >= 1 and causes["reboot"] == 2 and causes["lost_frames"] >= 3
    assert_gaps_match(gaps, want)
