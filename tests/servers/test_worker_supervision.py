"""A central worker's device pipeline under the gateway's supervisor, on the real Mosquitto.

A capture's link records are published as the frames a forwarding gateway would send, at full
speed. A fault is injected inside the worker's pipeline, at the decoder behind the device seam (it
raises on the next batch; the gateway's own test injects at the detector): the failure is logged
once, the retained status turns ``failed`` / ``monitoring: false`` with the reason, a
``pipeline_restart`` gap covers the lost time, and a fresh decoder and session detect again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
from support.harness import Subscriber
from support.servers import Mosquitto

from ingest.commands.cli import main as cli_main
from ingest.commands.replay import load_records
from ingest.commands.worker import Worker, WorkerConfig
from ingest.stream.frames import encode_records
from ingest.stream.pipeline import DATA, DOWN, UP

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "neurospasm/v1"
DEVICE = "dev-w"
BATCH_S = 0.1


def _batches(capture: Path) -> list[bytes]:
    """The capture's link records as ~100 ms frames batches (what ``FrameBatcher`` publishes)."""
    records, _ = load_records(capture)
    out: list[bytes] = []
    batch: list[tuple[int, int, bytes]] = []
    start = 0.0
    for r in records:
        if r.kind not in (DATA, DOWN, UP):
            continue  # host writes (START) are not forwarded
        if batch and (r.t_host - start >= BATCH_S or r.kind != DATA):
            out.append(encode_records(batch))
            batch = []
        if not batch:
            start = r.t_host
        batch.append((round(r.t_host * 1e9), r.kind, r.data))
    if batch:
        out.append(encode_records(batch))
    return out


async def _wait(cond: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(0.02)


def test_a_failure_inside_a_worker_session_is_shown_gapped_and_recovered(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    capture = tmp_path / "night.nsc"
    assert cli_main(["record", "--sim", "e2e_short", "--out", str(capture), "--device-id", DEVICE]) == 0
    batches = _batches(capture)
    cfg = WorkerConfig.model_validate(
        {
            "worker": {"id": "w-sv", "group": "sv", "state_dir": str(tmp_path / "w"), "stale_after_s": 30},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "live": False},
        }
    )
    status_schema = json.loads((ROOT / "docs" / "schemas" / "status.v1.json").read_text())
    key = ("clinic", "p-0001", DEVICE)
    topic = f"{PREFIX}/clinic/p-0001/{DEVICE}/{{}}"

    async def scenario() -> None:
        worker = Worker(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        leaves = tuple(f"{PREFIX}/+/+/{DEVICE}/{leaf}" for leaf in ("status", "onsets", "gaps"))
        async with Subscriber(mosquitto.port, "sv-observer", leaves) as obs:

            def of(leaf: str) -> list[dict[str, Any]]:
                return [p for t, p, _ in obs.decoded() if t.endswith("/" + leaf)]

            announce = json.dumps({"schema": "neurospasm.announce/1", "device": DEVICE}).encode()
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="sv-gw") as gw:
                await _wait(lambda: bool(worker.announce_topics) and worker.spool is not None, 5, "worker")
                deadline = time.monotonic() + 10
                while key not in worker.held or worker.held[key]._client is None:
                    assert time.monotonic() < deadline, "the worker did not lease the device"
                    await gw.publish(topic.format("announce"), announce, qos=1)
                    await asyncio.sleep(0.2)
                dw = worker.held[key]
                cut = len(batches) * 4 // 10  # ~4.8 s of the 12 s: after the first spasm (at 2 s)
                for b in batches[:cut]:
                    await gw.publish(topic.format("frames"), b, qos=1)
                await _wait(lambda: len(of("onsets")) >= 1 and dw.monitoring, 10, "the first onset")
                first_session = dw.session
                decoder = dw.feeder.pipeline.decoder
                assert dw.failures == 0

                def boom(*_a: Any, **_k: Any) -> Any:
                    raise RuntimeError("injected decoder fault")

                decoder.feed = boom  # type: ignore[method-assign]
                with caplog.at_level(logging.ERROR, logger="ingest.stream.supervisor"):
                    for b in batches[cut:]:
                        await gw.publish(topic.format("frames"), b, qos=1)
                    # Shown: retained status, failed, not monitoring, with the reason.
                    await _wait(
                        lambda: any(s["state"] == "failed" for s in of("status")), 5, "a failed status"
                    )
                    # Recovered: a fresh session detects again, after the restart gap.
                    await _wait(lambda: any(g["cause"] == "pipeline_restart" for g in of("gaps")), 10, "gap")
                    await _wait(lambda: dw.monitoring and dw.session is not first_session, 10, "back on")
                    # The spasm at 9 s is seen by the fresh session (the one at 5.5 s may be lost).
                    await _wait(
                        lambda: any(o["onset"] > _gap_end(of("gaps")) for o in of("onsets")),
                        15,
                        f"an onset after the restart (had {len(of('onsets'))})",
                    )
            stop.set()
            await asyncio.wait_for(task, 15)

        failed = [s for s in of("status") if s["state"] == "failed"]
        assert failed[0]["monitoring"] is False and failed[0]["pipeline_failures"] == 1
        assert failed[0]["reason"] == "pipeline failed: RuntimeError: injected decoder fault"
        for s in of("status"):
            jsonschema.validate(s, status_schema)
        later = [s for s in of("status") if s.get("pipeline_failures") == 1 and s["monitoring"]]
        assert later and later[-1]["reason"] is None  # monitoring again, the count kept
        restart = [g for g in of("gaps") if g["cause"] == "pipeline_restart"]
        assert len(restart) == 1 and restart[0]["samples_missing"] > 0
        assert 0.0 < restart[0]["duration_s"] < 5.0
        assert dw.failures == 1 and dw.feeder.pipeline.decoder is not decoder  # a fresh decoder too
        lines = [r for r in caplog.records if "pipeline failed" in r.getMessage()]
        assert len(lines) == 1 and DEVICE in lines[0].getMessage() and lines[0].exc_info is not None

    asyncio.run(scenario())


def _gap_end(gaps: list[dict[str, Any]]) -> str:
    ends = [g["end"] for g in gaps if g["cause"] == "pipeline_restart"]
    return ends[0] if ends else "9999"
