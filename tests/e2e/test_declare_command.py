"""A declared exercise session over MQTT (issue 9): the real gateway subscribes to its devices'
``cmd/#`` on the real Mosquitto, applies ``cmd/declare`` and publishes the declared activity
record on ``.../activity``; a bad command is refused, counted and logged, never a crash."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest
from support.checks import validate
from support.harness import Subscriber, eventually
from support.servers import Mosquitto

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.config import parse_config
from ingest.stream.runner import Gateway

pytestmark = pytest.mark.servers

PREFIX = "neurospasm/v1/e2e/p-0001/wearable-1"


async def test_declare_command_yields_a_declared_activity_record(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    rec = synthesize(builtin_scenario("e2e_short"))
    device = SimDevice(SignalSource.from_recording(rec), device_id="sim-declare")
    async with PtyServer(device) as server:
        cfg = parse_config({
            "gateway": {"site": "e2e", "patient": "p-0001", "state_dir": str(tmp_path / "state")},
            "devices": [{"id": "wearable-1", "port": server.path}],
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
            "local": {"enabled": False},
            "spool": {"quota_mb": 16, "fsync": "never"},
        }, "<test>")  # fmt: skip
        async with Subscriber(mosquitto.port, "clinic", f"{PREFIX}/activity", persistent=False) as obs:
            async with Gateway(cfg) as gw:
                gw.start()
                await asyncio.wait_for(gw.commands_ready.wait(), 10)
                runner = gw.devices["wearable-1"]
                s = runner.session
                assert await eventually(lambda: s.emg is not None and s.emg.expected is not None, 10)
                async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="physio-app") as app:
                    await app.publish(f"{PREFIX}/cmd/declare", b"{not json", qos=1)
                    await app.publish(f"{PREFIX}/cmd/declare", json.dumps({"kind": "yoga"}), qos=1)
                    await app.publish(
                        f"{PREFIX}/cmd/declare", json.dumps({"kind": "physiotherapy", "minutes": 0.05}), qos=1
                    )
                    # 3 s at 1x: the 3 s session ends and its record is published
                    assert await eventually(lambda: bool(obs.decoded()), 10), gw.commands_refused
                    status, _ = gw.status_payload(runner)
                await gw.drain(timeout_s=1.0)
    got = [p for _, p, _ in obs.decoded()]
    declared = [p for p in got if p["declared"]]
    assert len(declared) == 1, got
    validate("activity", declared[0])
    assert declared[0]["kind"] == "exercise" and 2.5 <= declared[0]["duration_s"] <= 3.5
    assert gw.commands_applied == 1 and gw.commands_refused == 2
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and f"{PREFIX}/cmd/declare" in refusals[0]  # once per topic
    validate("status", status)
    assert status["activity"]["now"] in ("rest", "exercise")
