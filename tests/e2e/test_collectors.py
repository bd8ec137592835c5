"""Collectors that never lose track: the serial link's faults replayed at full speed through the real
gateway, and the same faults live over the virtual BLE backend.

2 % random frame loss, bursts of loss, three disconnects and a reboot: the gateway's gap records
match the fault injector's truth exactly, and every spasm outside the gaps is reported exactly
once (none lost, none duplicated).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path
from typing import Any

from support.checks import assert_gaps_match, gateway_config

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.faults import FaultInjector, simulate
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import Scenario, parse_scenario
from firmware_sim.signals import Recording, synthesize
from ingest.commands.record import SimRun
from ingest.commands.replay import ReplayTransport
from ingest.stream.runner import Gateway
from ingest.stream.session import Output

CHANNELS = ["EMG L quad", "EMG R quad"]
#: Spasms every ~2.5 s; the link troubles fall between them or across some of them.
SPASMS = [(1.0, 0), (3.5, 1), (6.0, 0), (8.5, 1), (11.0, 0), (13.5, 1), (16.0, 0), (18.5, 1)]
FAULTS = {
    "frame_loss_rate": 0.02,
    "loss_bursts": [{"at_s": 2.4, "duration_s": 0.3}, {"at_s": 12.3, "duration_s": 0.4}],
    "disconnects": [
        {"at_s": 4.9, "duration_s": 0.6},
        {"at_s": 9.8, "duration_s": 0.5},
        {"at_s": 14.8, "duration_s": 0.7},
    ],
    "reboot_at_s": [20.5],
    "reboot_downtime_s": 0.8,
}


def scenario() -> Scenario:
    return parse_scenario(
        {
            "name": "issue5",
            "seed": 5,
            "duration_s": 23.0,
            "emg_rate_hz": 1000,
            "acc_rate_hz": 50,
            "channels": CHANNELS,
            "crosstalk": 0.0,
            "events": [
                {"type": "phasic", "channel": CHANNELS[ch], "onset_s": t, "duration_s": 0.8, "peak_uv": 220.0}
                for t, ch in SPASMS
            ],
            "faults": FAULTS,
        },
        "<issue5>",
    )


def truth_gap_spans(want: list[dict[str, Any]], rate: float) -> list[tuple[float, float]]:
    """Device-time spans (seconds) the truth says were not received, from EMG gap records."""
    spans = []
    for g in want:
        if g["domain"] == "emg" and g["cause"] != "reboot":
            start = g["start_counter"] / rate
            spans.append((start, start + g["samples_missing"] / rate))
    return spans


def check_events(
    outputs: list[Output], rec: Recording, spans: list[tuple[float, float]], before: float
) -> None:
    events = [o for o in outputs if o.kind == "event" and o.payload is not None]
    ids = [o.payload["id"] for o in events if o.payload]
    assert len(ids) == len(set(ids)), "an event was published twice"
    # Only the first boot's events: after the reboot the device restarts its signal at sample 0.
    reboot_at = next(
        (
            i
            for i, o in enumerate(outputs)
            if o.kind == "gap" and o.payload and o.payload["cause"] == "reboot"
        ),
        len(outputs),
    )
    events = [o for o in outputs[:reboot_at] if o.kind == "event" and o.payload is not None]
    onsets = [(o.source.channel, o.source.onset_sample / rec.emg_rate_hz) for o in events]  # type: ignore[union-attr]
    for lab in rec.labels:
        on, off = float(lab["onset_s"]), float(lab["offset_s"])
        if off > before:
            continue  # after the reboot the device restarts its signal: labels no longer apply
        clear = all(off + 0.6 < a or on - 0.6 > b for a, b in spans)
        hits = [t for ch, t in onsets if ch == lab["channel"] and abs(t - on) < 0.15]
        if clear:
            assert len(hits) == 1, (lab, onsets)
        else:
            assert len(hits) <= 1, (lab, onsets)  # cut by a gap: maybe found, never twice


async def test_three_disconnects_reboot_and_loss_replayed_through_the_gateway(tmp_path: Path) -> None:
    """The serial case at full speed: the simulator's offline twin of the pty server
    (``firmware_sim.faults.simulate``: the same schedule, frame filter and link changes) gives the
    link records, and the real gateway reads them through the replay transport, reconnecting at
    every link loss. The live pty path has its own smoke tests (test_replay, test_vendor_e2e)."""
    sc = scenario()
    rec = synthesize(sc)
    device = SimDevice(SignalSource.from_recording(rec), device_id="sim-issue5", seed=sc.seed)
    injector = FaultInjector.from_scenario(sc, rec)
    run = simulate(device, injector, duration_s=22.5, t0_host=1_795_000_000.0)
    records = SimRun(sc.name, sc.seed, run.chunks, run.link_events).records()
    assert Counter(kind for _, kind in run.link_events) == {"down": 4, "up": 4}  # 3 disconnects, a reboot
    transport = ReplayTransport(name="wearable-1", records=records, speed=math.inf)
    outputs: list[Output] = []
    cfg = gateway_config(tmp_path, "replay")
    async with Gateway(
        cfg, transport_factory=lambda _dev: transport, observers=[lambda _dev, out: outputs.append(out)]
    ) as gw:
        gw.start()
        await asyncio.wait_for(transport.finished.wait(), 60)
        await gw.drain(timeout_s=1.0)
    assert transport.opens >= 5  # the first connection and one after each of the four link losses
    gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload is not None]
    want = injector.expected_gaps()
    causes = Counter(g["cause"] for g in want if g["domain"] == "emg")
    assert causes["disconnect"] == 3 and causes["reboot"] == 1 and causes["lost_frames"] >= 5, causes
    assert_gaps_match(gaps, want)
    check_events(outputs, rec, truth_gap_spans(want, rec.emg_rate_hz), before=20.5)


async def test_ble_three_disconnects_and_a_reboot(tmp_path: Path) -> None:
    """The same over the virtual BLE backend (the real bleak front-end): three link outages and a
    reboot; each outage is one gap with the samples the device produced meanwhile (within one
    frame: the link drops between notifications), and no spasm is lost or reported twice."""
    from firmware_sim.ble import SimBleakClient, SimBleakScanner, VirtualBle, VirtualPeripheral
    from ingest.config import parse_config
    from ingest.sources.ble import BleTransport
    from ingest.wire.protocol import max_emg_samples_per_frame

    speed = 2.0  # the 23 s scenario in 12 s of wall time (at 3x a busy host drops notifications)
    sc = scenario().model_copy(
        update={
            "faults": scenario().faults.model_copy(
                update={"frame_loss_rate": 0.0, "loss_bursts": [], "disconnects": [], "reboot_at_s": []}
            )
        }
    )
    rec = synthesize(sc)
    cfg = parse_config(
        {
            "gateway": {"state_dir": str(tmp_path / "state"), "stale_after_s": 2.0},
            "devices": [
                {
                    "id": "ble-1",
                    "transport": "ble",
                    "address": "C0:FF:EE:00:00:05",
                    "reconnect_initial_s": 0.1,
                    "reconnect_max_s": 0.3,
                }
            ],
            "mqtt": {"enabled": False},
            "local": {"enabled": True},
        }
    )

    def factory(dev: Any) -> BleTransport:
        return BleTransport(
            name=dev.id,
            address=dev.address,
            backend=SimBleakClient,
            scanner_backend=SimBleakScanner,
            scan_timeout_s=2.0,
            connect_timeout_s=2.0,
        )

    outputs: list[Output] = []
    device = SimDevice(SignalSource.from_recording(rec), device_id="ble-issue5", seed=sc.seed)
    async with (
        VirtualBle() as ble,
        Gateway(cfg, transport_factory=factory, observers=[lambda _d, o: outputs.append(o)]) as gw,
    ):
        p = ble.add(VirtualPeripheral(device, address="C0:FF:EE:00:00:05", name="NS-5", speed=speed))
        gw.start()

        async def at(t_dev: float) -> None:
            await asyncio.sleep(max(0.0, (t_dev - p.device_time()) / speed))

        for t_dev, down in ((4.9, 0.6), (9.8, 0.5), (14.8, 0.7)):
            await at(t_dev)
            p.disconnect(unavailable_for_s=down / speed)
        await at(20.5)
        p.reboot()
        await at(22.5)
        await asyncio.sleep(0.3)
        await gw.drain(timeout_s=1.0)
    gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload is not None]
    emg = [g for g in gaps if g["domain"] == "emg"]
    assert [g["cause"] for g in emg] == ["disconnect"] * 3 + ["reboot"], emg
    outages = [o for o in p.outages if o.cause != "reboot"][:3]
    frame = max_emg_samples_per_frame(len(CHANNELS))
    for g, o in zip(emg[:3], outages, strict=True):
        assert o.emg_samples_lost is not None
        assert abs(g["samples_missing"] - o.emg_samples_lost) <= frame, (g, o)
    spans = [(o.t_lost, o.t_resumed or o.t_lost) for o in outages]
    check_events(outputs, rec, spans, before=20.5)


async def test_one_failing_device_never_disturbs_another(tmp_path: Path) -> None:
    """Two devices on one gateway: one's port does not exist (unplugged dongle), the other streams.
    The healthy one is online and detects every spasm while the other keeps failing and retrying."""
    from firmware_sim.scenario import builtin_scenario
    from ingest.config import parse_config

    rec = synthesize(builtin_scenario("e2e_short"))
    device = SimDevice(SignalSource.from_recording(rec), device_id="ok", seed=1)
    outputs: list[tuple[str, Output]] = []
    # the healthy device streams 1.5x real time: 8 s of wall time for the 12 s scenario, time for
    # the broken one to retry >= 10 times even on a busy host (each retry also writes its status)
    speed = 1.5
    async with PtyServer(device, speed=speed) as server:
        cfg = parse_config(
            {
                "gateway": {"state_dir": str(tmp_path / "state"), "stale_after_s": 2.0},
                "devices": [
                    {
                        "id": "broken",
                        "port": str(tmp_path / "ttyGONE"),
                        "reconnect_initial_s": 0.05,
                        "reconnect_max_s": 0.1,
                    },
                    {"id": "healthy", "port": server.path},
                ],
                "mqtt": {"enabled": False},
                "local": {"enabled": True},
            }
        )
        async with Gateway(cfg, observers=[lambda d, o: outputs.append((d, o))]) as gw:
            gw.start()
            await asyncio.sleep(max(0.0, 11.5 - server.device_time()) / speed)
            broken, healthy = gw.devices["broken"], gw.devices["healthy"]
            assert healthy.state == "online" and healthy.monitoring
            assert broken.state == "disconnected" and not broken.monitoring and broken.reconnects >= 10
            assert "cannot open serial port" in broken.last_error
            status, _ = gw.status_payload(broken)
            assert status["monitoring"] is False  # "not monitored", never "no spasms"
    events = [o for d, o in outputs if d == "healthy" and o.kind == "event"]
    assert len(events) == 3
    assert not [o for d, o in outputs if d == "broken" and o.kind in ("event", "onset")]
