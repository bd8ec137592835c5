"""End to end, as deployed: simulator on a pty -> `neurospasm run` -> real Mosquitto and InfluxDB.

Nothing here is faked but the wearable (the simulator is the device seam). The gateway runs as
its own process from the console script with a TOML config, exactly as a service would. An
independent MQTT subscriber counts events; the samples are queried back over InfluxDB's HTTP API.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.checks import validate
from support.harness import SCENARIO, Proc, Subscriber, collect, eventually, iso_ts, start_sim, write_config
from support.servers import InfluxDB1, Mosquitto, VictoriaMetrics, wait_until

from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.commands.cli import main as cli_main


@pytest.mark.slow
def test_sim_to_mqtt_and_influx_v1(tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1) -> None:
    truth = synthesize(builtin_scenario(SCENARIO))
    assert len(truth.labels) == 3
    sim, port_path = start_sim(tmp_path)
    cfg = write_config(
        tmp_path,
        port_path,
        mosquitto.port,
        {
            "enabled": True,
            "api": "v1",
            "url": influxdb1.url,
            "database": influxdb1.database,
            "flush_interval_s": 0.5,
        },
    )
    gw = None
    try:

        async def scenario() -> list[tuple[str, dict[str, Any], bool]]:
            nonlocal gw
            task = asyncio.create_task(collect(mosquitto.port, 40.0, until=3))
            await asyncio.sleep(0.5)  # subscriber is in before the gateway starts
            gw = Proc([sys.executable, "-m", "ingest", "run", "--config", str(cfg)], tmp_path / "gw.log")
            msgs = await task
            await asyncio.sleep(1.5)  # the recording's tail: envelope and status reach the store
            return msgs

        msgs = asyncio.run(scenario())
        assert gw is not None
        # Every message that crossed the real broker validates against its documented schema.
        kinds = {"events": "event", "onsets": "onset", "gaps": "gap", "status": "status", "live": "live"}
        checked = Counter()
        for topic, payload, _ in msgs:
            kind = kinds[topic.rsplit("/", 1)[-1]]
            validate(kind, payload)
            checked[kind] += 1
        assert checked["event"] == 3 and checked["status"] >= 1 and checked["live"] > 10, checked
        events = [p for t, p, _ in msgs if t == "neurospasm/v1/e2e/p-0001/dev-a/events"]
        onsets = [p for t, p, _ in msgs if t.endswith("/onsets")]
        status = [p for t, p, _ in msgs if t.endswith("/status")]
        assert len(events) == 3, (events, gw.tail())
        # Every onset notice came before its event, with the same id.
        assert {e["id"] for e in events} <= {o["id"] for o in onsets}
        assert any(s["state"] == "online" and s["monitoring"] for s in status)
        # Timing: spacing between detected onsets matches the injected spasms within 50 ms.
        detected = sorted(iso_ts(e["onset"]) for e in events)
        injected = sorted(lab["onset_s"] for lab in truth.labels)
        for d, i in zip(detected, injected, strict=True):
            assert abs((d - detected[0]) - (i - injected[0])) < 0.05
        assert [e["channel"] for e in sorted(events, key=lambda e: e["onset"])] == [
            lab["channel"] for lab in sorted(truth.labels, key=lambda lab: lab["onset_s"])
        ]

        # The samples are in InfluxDB: the 50 Hz envelope of both channels over the recording.
        def envelope_points() -> int:
            return influxdb1.count("emg_envelope", "uv")

        wait_until(lambda: envelope_points() >= 2 * 50 * 11, 15, "envelope points in InfluxDB")
        assert envelope_points() <= 2 * 50 * 14
        stored = influxdb1.query('SELECT "id", "peak_uv" FROM "spasm_event"')
        assert sorted(r["id"] for r in stored) == sorted(e["id"] for e in events)
        assert influxdb1.count("acc", "z") >= 50 * 11
        assert influxdb1.count("device_health", "loss_pct") >= 1
    finally:
        rc = gw.stop() if gw is not None else 0
        sim.stop()
    assert rc == 0, gw.tail() if gw else ""


@pytest.mark.slow
def test_influx_v2_write_path_against_victoriametrics(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """The v2 API (/api/v2/write, token/org/bucket) through influxdb-client, into a real server.

    The gateway process replays a capture of the same scenario at full speed
    (``neurospasm replay --config``): the whole gateway with the deployed config's sinks, without
    waiting the scenario's wall time (the live path is the test above).
    """
    cap = tmp_path / "e2e.nsc"
    assert cli_main(["record", "--sim", SCENARIO, "--out", str(cap), "--device-id", "dev-a"]) == 0
    cfg = write_config(
        tmp_path,
        "replay",
        mosquitto.port,
        {
            "enabled": True,
            "api": "v2",
            "url": victoria.url,
            "token": "e2e-token",
            "org": "clinic",
            "bucket": "neurospasm",
            "flush_interval_s": 0.5,
        },
    )
    argv = [sys.executable, "-m", "ingest", "replay", str(cap), "--config", str(cfg), "--no-progress"]

    procs: list[Proc] = []

    async def scenario() -> list[tuple[str, dict[str, Any], bool]]:
        async with Subscriber(
            mosquitto.port, "e2e-observer", persistent=False
        ) as sub:  # in before the gateway
            gw = Proc(argv, tmp_path / "gw.log")
            procs.append(gw)
            assert await eventually(lambda: gw.p.poll() is not None, 60, 0.1), gw.tail()
            assert await sub.wait_events(3, 10), gw.tail()
            return sub.decoded()

    try:
        msgs = asyncio.run(scenario())
    finally:
        rcs = [p.stop() for p in procs]
    assert rcs == [0], procs[0].tail()
    assert sum(t.endswith("/events") for t, _, _ in msgs) == 3, procs[0].tail()
    assert len(victoria.samples("spasm_event_peak_uv", wait_for=3, timeout=15)) == 3
    assert len(victoria.samples("emg_envelope_uv", wait_for=2 * 50 * 10, timeout=15)) >= 2 * 50 * 10
