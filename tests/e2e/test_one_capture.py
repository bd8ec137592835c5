"""One capture, every way through the house: the same events, ids included.

A capture of a lossy link (random and burst loss, corruption, duplicates, reordering, two
disconnects: ``faults_lossy``) goes through

* the real gateway at full speed (``neurospasm replay``: ReplayTransport -> runner -> router),
* a forwarding gateway at full speed, its frames over a real Mosquitto to a real ``Worker``,
* ``neurospasm detect`` on the capture (the CLI, JSON lines on stdout),
* ``neurospasm export-edf`` (the CLI, events as EDF+ annotations; the decoded events),

and every path must report the very same event payloads (ids, times, amplitudes) and the same
gaps, because every path decodes with the one ``DecodeLoop`` and the one ``DeviceSession``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyedflib
import pytest
from support.harness import Subscriber, eventually
from support.servers import Mosquitto

from ingest.commands.cli import main as cli_main
from ingest.commands.record import decode_source
from ingest.commands.replay import ReplayTransport, load_records, run_replay
from ingest.commands.worker import Worker, WorkerConfig
from ingest.config import DeviceSection, parse_config
from ingest.sources.base import Transport
from ingest.stream.runner import Gateway

PREFIX = "neurospasm/v1"
DEVICE = "w-one"


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capture") / "lossy.nsc"
    assert cli_main(["record", "--sim", "faults_lossy", "--out", str(out), "--device-id", DEVICE]) == 0
    return out


def _by_id(payloads: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {p["id"]: p for p in payloads}
    assert len(out) == len(payloads), "an id was reported twice"
    return out


class _GatedReplay(ReplayTransport):
    """A replay that opens only once ``gate`` is set (the worker must hold the device first)."""

    gate: asyncio.Event | None = None

    async def _open(self) -> None:
        assert self.gate is not None
        await self.gate.wait()
        await super()._open()


async def _via_worker(
    capture: Path, port: int, tmp: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records, named = load_records(capture)
    assert named == DEVICE
    cfg = parse_config(
        {
            "gateway": {
                "site": "one",
                "patient": "p-1",
                "state_dir": str(tmp / "gw"),
                "stale_after_s": 3600.0,
            },
            "devices": [
                {"id": DEVICE, "port": "replay", "reconnect_initial_s": 0.05, "reconnect_max_s": 0.1}
            ],
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "live": False,
            },
            "scaling": {"publish_frames": True, "detect_locally": False, "announce_interval_s": 0.2},
            "spool": {"quota_mb": 64, "fsync": "never"},
        },
        "<forwarding gateway>",
    )
    transport = _GatedReplay(name=DEVICE, records=records)
    transport.gate = asyncio.Event()

    def factory(_dev: DeviceSection) -> Transport:
        return transport

    wcfg = WorkerConfig.model_validate(
        {
            "worker": {
                "id": "w-1",
                "group": "one",
                "lease_s": 20,
                "renew_s": 5,
                "state_dir": str(tmp / "wk"),
            },
            "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5", "live": False},
        }
    )
    worker = Worker(wcfg)
    stop = asyncio.Event()
    topics = (f"{PREFIX}/one/p-1/{DEVICE}/events", f"{PREFIX}/one/p-1/{DEVICE}/gaps")
    async with Subscriber(port, "clinic-one", topics, persistent=False) as sub:
        wtask = asyncio.create_task(worker.run(stop))
        async with Gateway(cfg, transport_factory=factory) as gw:
            gw.start()
            held: Callable[[], bool] = lambda: any(dw._client is not None for dw in worker.held.values())  # noqa: E731
            assert await eventually(held, 20, 0.05), "the worker never subscribed to the device's frames"
            transport.gate.set()  # now the capture flows, at full speed
            await asyncio.wait_for(transport.finished.wait(), 60)
            await gw.drain(timeout_s=10.0)
            sink = "mqtt." + DEVICE

            def delivered() -> bool:
                return not sum(gw.spool.stats().pending_records.get(sink, {}).values())

            assert await eventually(delivered, 30, 0.05), gw.status_payload(gw.devices[DEVICE])[0]["sinks"]
            tap = gw.devices[DEVICE].tap
            assert tap is not None
            gw_batches = tap.batches
        n_data = sum(1 for r in records if r.kind == 0)  # every chunk, plus the link changes

        def fed() -> bool:
            return any(
                dw.feeder.records >= n_data and dw.feeder.batches == gw_batches for dw in worker.held.values()
            )

        assert await eventually(fed, 30, 0.05), [
            (dw.feeder.batches, dw.feeder.records) for dw in worker.held.values()
        ]
        stop.set()  # a clean stop closes open episodes (as the end of a replay does) and says goodbye
        await asyncio.wait_for(wtask, 30)
        await asyncio.sleep(0.5)  # the last PUBACKed records reach the subscriber too
        decoded = sub.decoded()
    events = [p for t, p, _ in decoded if t.endswith("/events")]
    gaps = [p for t, p, _ in decoded if t.endswith("/gaps")]
    return events, gaps


def test_one_capture_gives_the_same_events_everywhere(
    capture: Path, mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1. the live gateway, replayed at full speed
    live = asyncio.run(run_replay(capture, speed=math.inf, state_dir=tmp_path / "replay"))
    live_events, live_gaps = _by_id(live.events), _by_id(live.gaps)
    assert len(live_events) >= 5, live.text()
    causes = {g["cause"] for g in live.gaps}
    assert {"lost_frames", "disconnect"} <= causes, causes  # the capture really exercises the link

    # 2. a forwarding gateway + a central worker over a real broker
    worker_events, worker_gaps = asyncio.run(_via_worker(capture, mosquitto.port, tmp_path))
    assert _by_id(worker_events) == live_events
    assert _by_id(worker_gaps) == live_gaps

    # 3. neurospasm detect on the capture
    capsys.readouterr()
    assert cli_main(["detect", str(capture)]) == 0
    detected = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert _by_id(detected) == live_events

    # 4. neurospasm export-edf: the decoded events, and as many event annotations in the file
    decoded = decode_source(str(capture))
    assert _by_id(decoded.events) == live_events
    assert _by_id(decoded.gaps) == live_gaps
    edf = tmp_path / "lossy.edf"
    assert cli_main(["export-edf", str(capture), "--out", str(edf)]) == 0
    with pyedflib.EdfReader(str(edf)) as r:
        _, _, texts = r.readAnnotations()
    spasm_texts = [t for t in texts if not t.startswith(("gap ", "no data"))]
    assert sorted(spasm_texts) == sorted(f"{e['type']} {e['channel']}"[:40] for e in live.events)
