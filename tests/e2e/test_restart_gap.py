"""A gateway restart is a gap, recorded: kill -9, restart, and the downtime is on MQTT and in InfluxDB."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from support.harness import Subscriber, gateway, iso_ts, start_sim, write_config
from support.servers import InfluxDB1, Mosquitto, wait_until

pytestmark = pytest.mark.slow


def test_kill9_and_restart_records_a_gateway_restart_gap(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    sim, port_path = start_sim(tmp_path, "demo", ["--loop"])
    influx = {
        "enabled": True,
        "api": "v1",
        "url": influxdb1.url,
        "database": influxdb1.database,
        "flush_interval_s": 0.5,
    }
    cfg = write_config(tmp_path, port_path, mosquitto.port, influx, local=True)
    last_file = tmp_path / "state" / "last_sample" / "dev-a.json"
    procs = []
    try:

        async def scenario() -> tuple[Subscriber, float, float]:
            async with Subscriber(mosquitto.port, client_id="restart-observer") as obs:
                gw = gateway(tmp_path, cfg, "gw1")
                procs.append(gw)
                await asyncio.to_thread(wait_until, last_file.exists, 20, "the last sample on disk")
                await asyncio.sleep(2.0)
                killed = time.time()
                gw.stop(signal.SIGKILL)  # no goodbye, no flush
                await asyncio.sleep(4.0)
                gw2 = gateway(tmp_path, cfg, "gw2")
                procs.append(gw2)
                restarted = time.time()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    gaps = [p for t, p, _ in obs.decoded() if t.endswith("/gaps")]
                    if any(p["cause"] == "gateway_restart" for p in gaps):
                        break
                    await asyncio.sleep(0.2)
                return obs, killed, restarted

        obs, killed, restarted = asyncio.run(scenario())
        gaps = [p for t, p, _ in obs.decoded() if t.endswith("/gaps") and p["cause"] == "gateway_restart"]
        assert len({g["id"] for g in gaps}) == 1, f"{gaps}\n{procs[-1].tail()}"
        gap = gaps[0]
        # From the last persisted sample (at most ~1.3 s before the kill) to the first new one.
        assert killed - 2.5 < iso_ts(gap["start"]) <= killed + 0.5, gap
        assert restarted < iso_ts(gap["end"]) < restarted + 15, gap
        assert gap["duration_s"] >= 4.0 and gap["samples_missing"] > 4 * 500
        wait_until(
            lambda: influxdb1.count("gap", "samples_missing", where="\"cause\" = 'gateway_restart'") == 1,
            20,
            "the restart gap in InfluxDB",
        )
        rows = influxdb1.query('SELECT * FROM "gap" WHERE "cause" = \'gateway_restart\'')
        assert rows[0]["id"] == gap["id"] and rows[0]["samples_missing"] == gap["samples_missing"]
    finally:
        for p in procs:
            p.stop()
        sim.stop()
