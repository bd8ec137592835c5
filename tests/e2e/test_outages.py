"""Delivery that loses nothing: real outages of the real servers, and a kill -9 of the gateway.

The broker outage and the kill -9 run the simulator on a pty (at 2x real time) and ``neurospasm
run`` as its own process; the InfluxDB outage replays a capture through the real gateway at 20x
real time. The local line-protocol store is the gateway's independent record of what it detected
and sampled.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest
from support.harness import (
    Proc,
    Subscriber,
    eventually,
    gateway,
    local_event_ids,
    local_lines,
    start_sim,
    write_config,
)
from support.servers import InfluxDB1, Mosquitto

from ingest.commands.cli import main as cli_main
from ingest.commands.replay import ReplayTransport, load_records
from ingest.config import parse_config
from ingest.stream.runner import Gateway

pytestmark = pytest.mark.slow


def test_broker_killed_and_back_after_20s_loses_no_event(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim, port_path = start_sim(tmp_path, "demo", ["--loop", "--speed", "2"])  # spasms twice as often
    cfg = write_config(tmp_path, port_path, mosquitto.port, local=True)
    state = tmp_path / "state"
    gw = gateway(tmp_path, cfg)
    try:

        async def scenario() -> tuple[Subscriber, int]:
            async with Subscriber(mosquitto.port) as obs:
                # A spasm delivered normally first (waited for, not slept on: start-up under load varies).
                assert await eventually(lambda: len(obs.ids("events")) >= 1, 30), gw.tail()
                before = len(obs.ids("events"))
                await mosquitto.arestart(20, hard=True)  # SIGKILL mid-stream, back 20 s later
                at_back = len(local_event_ids(state))
                assert at_back > before, "no event was detected during the outage"

                def drained_and_flowing() -> bool:
                    # The spool drained (every detected event received), and a new event detected
                    # after the broker came back flowed too. Waited for, not slept on.
                    detected = local_event_ids(state)
                    return len(detected) >= max(5, at_back + 1) and set(detected) <= set(obs.ids("events"))

                assert await eventually(drained_and_flowing, 40), gw.tail()
                assert before >= 1
                # Stopped while the subscriber still listens: an episode the stop closes is
                # published on the way out (drain), and must arrive like every other event.
                rc = await asyncio.to_thread(gw.stop)
                # (asserted below, naming what is missing)
                await eventually(lambda: set(local_event_ids(state)) <= set(obs.ids("events")), 10)
                return obs, rc

        obs, rc = asyncio.run(scenario())
    finally:
        gw.stop()
        sim.stop()
    assert rc == 0, gw.tail()
    detected = local_event_ids(state)
    assert len(detected) >= 5, gw.tail()
    received = obs.ids("events")
    # Every event the gateway detected reached the subscriber (duplicates allowed, dropped by id).
    missing = set(detected) - set(received)
    assert not missing, f"{len(missing)} of {len(detected)} events never reached the subscriber\n{gw.tail()}"
    # Every event was announced by an onset with the same id, outage or not.
    assert set(detected) <= set(obs.ids("onsets"))
    assert "retrying" in gw.tail() or "paused" in gw.tail()


def test_influxdb_down_60s_every_point_arrives(tmp_path: Path, influxdb1: InfluxDB1) -> None:
    """InfluxDB is down for 60 s of the recording: every point reaches it once it is back.

    (120 s recorded: the outage begins once 6 s of it were read. InfluxDB is killed, as in a crash:
    a graceful stop blocks this test's event loop for a second or more on a busy host, and the
    paced replay then catches up on the recording it missed, which could use up the 60 s of
    outage before any delivery failed.)

    The real gateway replays a capture at 20x real time (the spool, delivery and backoff run on
    wall time, the data on recorded time), so the 60 s outage of data takes about 3 s of wall time;
    the outage begins and ends at points of the recording the gateway has read (not after a
    wall-clock sleep).
    """
    cap = tmp_path / "phasic.nsc"
    record = ["record", "--sim", "phasic_clean", "--duration", "120", "--out", str(cap)]
    record += ["--device-id", "dev-a"]
    assert cli_main(record) == 0
    state = tmp_path / "state"
    cfg = parse_config(
        {
            "gateway": {"site": "e2e", "patient": "p-0001", "state_dir": str(state), "stale_after_s": 3600.0},
            "devices": [{"id": "dev-a", "port": "replay", "reconnect_initial_s": 0.05}],
            "mqtt": {"enabled": False},
            "influx": {"enabled": True, "api": "v1", "url": influxdb1.url, "database": influxdb1.database,
                       "flush_interval_s": 0.5},
            "local": {"enabled": True},
            "spool": {"fsync": "never"},
        },
        "<outage test>",
    )  # fmt: skip
    records, _ = load_records(cap)
    speed = 20.0
    read = [0]  # records the gateway has read so far
    transport = ReplayTransport(
        name="dev-a", records=records, speed=speed, on_progress=lambda done, _n: read.__setitem__(0, done)
    )

    def recording_read_s() -> float:
        """Seconds of the recording the gateway has read (the outage is timed on these, not on wall
        time: a start-up slowed by a busy host must not let the outage pass before any delivery)."""
        return records[read[0] - 1].t_host - records[0].t_host if read[0] else 0.0

    async def scenario() -> None:
        async with Gateway(cfg, transport_factory=lambda _dev: transport) as gw:
            gw.start()
            influx = gw.deliveries["influx"]
            # 6 s of the recording read (and on its way to InfluxDB) before the outage.
            assert await eventually(lambda: recording_read_s() >= 6, 30, 0.02)
            influxdb1.kill()  # at once: the event loop and the paced replay keep going
            # 60 s of recording while InfluxDB is down, and deliveries failing meanwhile.
            start = recording_read_s()
            assert await eventually(
                lambda: recording_read_s() >= start + 60 and influx.health()["failures"] > 0, 60
            ), (recording_read_s(), influx.health())
            influxdb1.start()  # in this thread: the server dies with the thread that started it
            await asyncio.wait_for(transport.finished.wait(), 60)
            await gw.drain(timeout_s=1.0)  # closes open episodes, flushes buffered series to the spool
            # The spool drains while the gateway keeps running; then the database holds every point.
            drained = await eventually(
                lambda: not sum(gw.spool.stats().pending_records.get("influx", {}).values()), 45
            )
            assert drained, gw.spool.stats()
            health = influx.health()
            assert health["failures"] > 0 and health["delivered"] > 0, health  # the outage was really met

    asyncio.run(scenario())
    # Local storage is the gateway's independent record: count everything it holds.
    expected = Counter(line.split(",", 1)[0] for line in local_lines(state, ""))
    assert expected["emg_envelope"] > 4 * 50 * 60  # the outage's data is part of it
    assert expected["spasm_event"] >= 5
    for measurement, field in (("emg_envelope", "uv"), ("acc", "z"), ("spasm_event", "peak_uv")):
        assert influxdb1.count(measurement, field) == expected[measurement], measurement


def test_gateway_kill9_with_spooled_events_delivers_after_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim, port_path = start_sim(tmp_path, "demo", ["--loop", "--speed", "2"])  # spasms twice as often
    cfg = write_config(tmp_path, port_path, mosquitto.port, local=True)
    state = tmp_path / "state"
    procs: list[Proc] = []
    try:

        async def scenario() -> tuple[Subscriber, list[str]]:
            async with Subscriber(mosquitto.port) as obs:
                await mosquitto.astop()  # events now pile up in the spool
                gw = gateway(tmp_path, cfg, "gw1")
                procs.append(gw)
                assert await eventually(lambda: len(local_event_ids(state)) >= 2, 40), gw.tail()
                spooled = local_event_ids(state)
                assert len(spooled) >= 2, gw.tail()
                gw.stop(signal.SIGKILL)  # no goodbye, no flush
                await mosquitto.astart()
                gw2 = gateway(tmp_path, cfg, "gw2")
                procs.append(gw2)
                delivered = await eventually(lambda: set(spooled) <= set(obs.ids("events")), 30)
                assert delivered, (sorted(set(spooled) - set(obs.ids("events"))), gw2.tail())
                assert gw2.stop() == 0, gw2.tail()
                return obs, spooled

        obs, spooled = asyncio.run(scenario())
    finally:
        for p in procs:
            p.stop(signal.SIGKILL)
        sim.stop()
    received = set(obs.ids("events"))
    assert set(spooled) <= received, f"lost after kill -9: {set(spooled) - received}"
