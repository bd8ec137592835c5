"""Central detection: gateways forward frames, ``neurospasm worker`` processes lease the devices.

The end-to-end test runs everything as real processes on one real Mosquitto: a simulator with
three wearables, one forwarding gateway (``detect_locally = false``), two workers and an
independent subscriber that records every frames batch and every output. It checks that each
device is held by exactly one worker, that what the workers publish is exactly what the gateway's
own ``DeviceSession`` makes of the same batches, and that a SIGKILLed worker's devices move to
the survivor within the lease time, with events continuing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import numpy as np
import pytest
from support.harness import Proc, Subscriber, iso_ts, start_sim
from support.servers import Mosquitto, wait_until

from detectors import DetectorConfig
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.commands.worker import Worker, WorkerConfig, load_worker_config
from ingest.config import ConfigError, parse_config
from ingest.files.recording import DATA, DOWN, UP
from ingest.stream.frames import FrameBatcher, FrameFeeder, FramesError, encode_records, iter_records
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import StreamDecoder

ROOT = Path(__file__).resolve().parents[2]
N_DEVICES = 3
LEASE_S = 6.0
ANNOUNCE_S = 1.0
PREFIX = "neurospasm/v1"


# -- fast checks (no servers) ---------------------------------------------------------------------
def _frames_stream(seconds: float = 12.0) -> list[tuple[float, bytes]]:
    """The simulator's e2e_short wire bytes (three spasms), cut in chunks of odd sizes."""
    dev = SimDevice(SignalSource.from_recording(synthesize(builtin_scenario("e2e_short"))), autostart=True)
    rng = np.random.default_rng(3)
    chunks: list[tuple[float, bytes]] = []
    t0, t, pending = 1_795_600_000.0, 0.0, b""
    while t < seconds:
        t += 0.01
        pending += b"".join(dev.frames_until(t))
        while len(pending) > 300:  # odd cuts: frames straddle chunk (and so batch) boundaries
            n = int(rng.integers(1, 300))
            chunks.append((t0 + t + 0.002, pending[:n]))
            pending = pending[n:]
    chunks.append((t0 + t + 0.002, pending))
    return chunks


def _events(chunks: list[tuple[float, bytes]], via_batches: bool) -> list[str]:
    out: list[Output] = []
    session = DeviceSession("dev-x", out.append, DetectorConfig())
    feeder = FrameFeeder.for_session(session)
    if via_batches:
        batches: list[bytes] = []
        batcher = FrameBatcher(batches.append, batch_s=0.0, max_bytes=3000)  # every chunk closes a batch
        batcher.link(chunks[0][0], up=True)
        for t, data in chunks:
            batcher.chunk(t, data)
        batcher.flush()
        for b in batches:
            feeder.feed(b)
            feeder.feed(b)  # at-least-once: every batch twice
        assert feeder.duplicates == len(batches) and feeder.batches == len(batches)
    else:
        dec = StreamDecoder()
        for t, data in chunks:
            for frame in dec.iter_feed(data):
                session.on_frame(frame, t)
    session.finish()  # the detector publishes an event once its activity context is known
    return [o.payload["id"] for o in out if o.kind in ("onset", "event", "gap") and o.payload]


def test_batches_replayed_twice_give_the_gateways_outputs() -> None:
    chunks = _frames_stream()
    direct = _events(chunks, via_batches=False)
    assert len(direct) >= 6  # three spasms: an onset and an event each
    assert _events(chunks, via_batches=True) == direct


def test_frames_payload_round_trip_and_errors_name_the_offset() -> None:
    recs = [(1, DATA, b"abc"), (2, DOWN, b""), (3, UP, b""), (4, DATA, b"\x00" * 5)]
    payload = encode_records(recs)
    assert list(iter_records(payload)) == recs
    with pytest.raises(FramesError, match="record of 5 bytes at byte offset 42"):
        list(iter_records(payload[:-2]))
    bad = bytearray(payload)
    bad[8] = 9
    with pytest.raises(FramesError, match="unknown record kind 9 at byte offset 8"):
        list(iter_records(bytes(bad)))


def test_config_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^gw\.toml: scaling\.detect_locally: false needs .*frames"):
        parse_config({"scaling": {"detect_locally": False}}, "gw.toml")
    cfg = parse_config({"scaling": {"detect_locally": False, "publish_frames": True}})
    assert cfg.scaling.publish_frames and not cfg.scaling.detect_locally
    p = tmp_path / "w.toml"
    p.write_text('[mqtt]\nprotocol = "3.1.1"\n')
    with pytest.raises(ConfigError, match=r"w\.toml: mqtt: .*protocol must be \"5\""):
        load_worker_config(p)
    p.write_text("[worker]\nlease_s = 4\nrenew_s = 3\n")
    with pytest.raises(ConfigError, match=r"w\.toml: worker: .*renew_s must be at most half"):
        load_worker_config(p)
    p.write_text('[worker]\nid = "w 1"\n')
    with pytest.raises(ConfigError, match=r"w\.toml: worker\.id: String should match pattern"):
        load_worker_config(p)
    example = load_worker_config(ROOT / "deploy" / "worker.example.toml")
    text = (ROOT / "deploy" / "worker.example.toml").read_text()
    for key in WorkerConfig.model_fields["worker"].annotation.model_fields:  # type: ignore[union-attr]
        assert f"\n{key} =" in text or f"\n# {key} =" in text, f"worker.{key} is not documented"
    assert example.mqtt.protocol == "5"


# -- the real thing -------------------------------------------------------------------------------
def _toml(tables: list[tuple[str, dict[str, Any]]]) -> str:
    lines: list[str] = []
    for name, values in tables:
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def _gateway_config(tmp: Path, paths: list[str], port: int) -> Path:
    """A forwarding gateway: every device's frames to MQTT, no detection of its own."""
    gw = {"site": "clinic", "patient": "p-0001", "state_dir": str(tmp / "gw-state"), "stale_after_s": 3.0}
    mqtt = {"host": "127.0.0.1", "port": port, "live": False}
    scaling = {"publish_frames": True, "detect_locally": False, "announce_interval_s": ANNOUNCE_S}
    devices = [
        ("[devices]", {"id": f"dev-{i}", "transport": "serial", "port": p}) for i, p in enumerate(paths)
    ]
    cfg = tmp / "gateway.toml"
    # "[devices]" -> [[devices]]
    cfg.write_text(_toml([("gateway", gw), *devices, ("mqtt", mqtt), ("scaling", scaling)]))
    return cfg


def _worker(tmp: Path, wid: str, port: int) -> Proc:
    cfg = tmp / f"{wid}.toml"
    worker = {"id": wid, "group": "test", "lease_s": LEASE_S, "renew_s": 2.0, "stale_after_s": 3.0,
              "state_dir": str(tmp / "worker-state")}  # fmt: skip
    cfg.write_text(
        _toml([("worker", worker), ("mqtt", {"host": "127.0.0.1", "port": port, "protocol": "5"})])
    )
    return Proc([sys.executable, "-m", "ingest", "worker", "--config", str(cfg)], tmp / f"{wid}.log")


def _recorder(port: int) -> Subscriber:
    """The independent subscriber: every frames batch, claim and output, in arrival order."""
    leaves = ("frames", "events", "onsets", "gaps", "status", "claim")
    return Subscriber(
        port, "clinic-recorder", tuple(f"{PREFIX}/+/+/+/{leaf}" for leaf in leaves), persistent=False
    )


def _holders(rec: Subscriber, device: str) -> list[tuple[float, str]]:
    """(arrival, worker) of each claim of a device (empty payloads clear a claim)."""
    return [(t, json.loads(p)["worker"]) for t, _, p in rec.of("claim", device) if p]


def _reference(batches: list[bytes], first_t_host_ns: int, device: str) -> list[Output]:
    """The events the gateway's own DeviceSession makes of the batches from the worker's first on."""
    start = next(i for i, b in enumerate(batches) if next(iter_records(b))[0] == first_t_host_ns)
    out: list[Output] = []
    feeder = FrameFeeder.for_session(DeviceSession(device, out.append, DetectorConfig()))
    for b in batches[start:]:
        feeder.feed(b)
    return [o for o in out if o.kind == "event" and o.payload]


def _first_batch(statuses: list[tuple[float, dict[str, Any]]], worker: str) -> int:
    """The host time of the first record the worker fed its session (from its status)."""
    firsts = {s["worker"]["first_t_host_ns"] for _, s in statuses if s.get("worker", {}).get("id") == worker}
    firsts.discard(None)
    assert len(firsts) == 1, (worker, firsts)
    return int(firsts.pop())


@pytest.mark.slow
def test_two_workers_share_devices_and_take_over_from_a_killed_one(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim, path_lines = start_sim(tmp_path, "e2e_short", ["--loop", "--devices", str(N_DEVICES), "--no-faults"])
    paths = path_lines.split()
    assert len(paths) == N_DEVICES
    devices = [f"dev-{i}" for i in range(N_DEVICES)]
    workers = {wid: _worker(tmp_path, wid, mosquitto.port) for wid in ("w-a", "w-b")}
    procs: list[Proc] = []
    status_schema = json.loads((ROOT / "docs" / "schemas" / "status.v1.json").read_text())
    event_schema = json.loads((ROOT / "docs" / "schemas" / "event.v2.json").read_text())
    try:
        for wid, w in workers.items():
            wait_until(lambda w=w: "up, group test" in w.log.read_text(), 20, f"worker {wid} to subscribe")

        async def scenario() -> tuple[Subscriber, str, str, float, float, dict[str, set[str]]]:
            async with _recorder(mosquitto.port) as rec:
                cfg = _gateway_config(tmp_path, paths, mosquitto.port)
                gw = Proc([sys.executable, "-m", "ingest", "run", "--config", str(cfg)], tmp_path / "gw.log")
                procs.append(gw)
                deadline = time.monotonic() + 20
                while not all(_holders(rec, d) for d in devices):
                    assert time.monotonic() < deadline, f"devices unclaimed\n{gw.tail()}"
                    await asyncio.sleep(0.1)
                # Every device has two of its events published more than 4 s ago (the takeover
                # checks below need two events that ended well before the kill): waited for, not
                # slept on (about one loop of the scenario).
                await _wait_for(
                    lambda: all(
                        sum(t < time.monotonic() - 4.0 for t, _, _ in rec.of("events", d)) >= 2
                        for d in devices
                    ),
                    40,
                    "two early events on every device",
                )
                held: dict[str, set[str]] = defaultdict(set)
                for d in devices:
                    owners = {w for _, w in _holders(rec, d)}
                    assert len(owners) == 1, f"{d} claimed by {owners}"  # exactly one worker each
                    held[owners.pop()].add(d)
                victim = max(held, key=lambda w: len(held[w]))
                survivor = next(w for w in workers if w != victim)
                t_kill, t_kill_wall = time.monotonic(), time.time()
                workers[victim].stop(signal.SIGKILL)
                deadline = t_kill + LEASE_S + 2 * ANNOUNCE_S + 3
                while not all(_holders(rec, d)[-1][1] == survivor for d in held[victim]):
                    assert time.monotonic() < deadline, "the killed worker's devices did not move in time"
                    await asyncio.sleep(0.1)
                moved_at = time.monotonic()
                # Events continue on the moved devices: two each from the survivor (waited for).
                await _wait_for(
                    lambda: all(
                        sum(t >= moved_at for t, _, _ in rec.of("events", d)) >= 2 for d in held[victim]
                    ),
                    40,
                    "two events from the survivor on every moved device",
                )
                assert gw.stop() == 0, gw.tail()  # the frames stop; the survivor catches up
                await asyncio.sleep(3)
                return rec, victim, survivor, t_kill, t_kill_wall, held

        rec, victim, survivor, t_kill, t_kill_wall, held = asyncio.run(scenario())
    finally:
        for p in procs:
            p.stop()
        rcs = {wid: w.stop() for wid, w in workers.items()}
        sim.stop()
    assert rcs[survivor] == 0, workers[survivor].tail()
    for d in devices:
        batches = [p for _, _, p in rec.of("frames", d)]
        statuses = [(t, json.loads(p)) for t, _, p in rec.of("status", d) if p]
        events = [(t, json.loads(p)) for t, _, p in rec.of("events", d)]
        for _, s in statuses:
            jsonschema.validate(s, status_schema)
        for _, e in events:
            jsonschema.validate(e, event_schema)
        if d in held[victim]:
            t_takeover = min(t for t, s in statuses if s.get("worker", {}).get("id") == survivor)
            assert t_takeover - t_kill <= LEASE_S + 2 * ANNOUNCE_S + 3
            assert not [e for t, e in events if t_kill + 0.5 <= t < t_takeover]  # nobody detected
            # Everything the victim published is what the gateway's session makes of its batches,
            # and it had published every event that ended well before it was killed.
            before = {e["id"] for t, e in events if t < t_kill + 0.5}
            ref = _reference(batches, _first_batch(statuses, victim), d)
            assert before <= {o.payload["id"] for o in ref if o.payload}
            early = {
                o.payload["id"] for o in ref if o.payload and iso_ts(o.payload["offset"]) < t_kill_wall - 3
            }
            assert len(early) >= 2 and early <= before, (d, early - before)
            after = {e["id"] for t, e in events if t >= t_takeover}
            # The broker queued the device's frames in its session meanwhile: the survivor starts
            # from about where the victim was killed, not from when it took over.
            assert _first_batch(statuses, survivor) / 1e9 < t_kill_wall + 2.0
        else:
            after = {e["id"] for _, e in events}
        # The survivor's events (all of an unmoved device's) equal, id for id, what the gateway's
        # session makes of the very batches the survivor processed: events continue after a move.
        ref_ids = {
            o.payload["id"] for o in _reference(batches, _first_batch(statuses, survivor), d) if o.payload
        }
        assert len(ref_ids) >= 2, d
        assert after == ref_ids, (d, sorted(after ^ ref_ids))


async def _wait_for(pred: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_claim_races_lower_worker_id_wins(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A live rival claim from a lower id takes the device away; one from a higher id is outbid."""
    cfg = WorkerConfig.model_validate(
        {
            "worker": {"id": "w-b", "group": "race", "lease_s": 10, "renew_s": 5, "state_dir": str(tmp_path)},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "live": False},
        }
    )

    def claim(dev: str, worker: str) -> bytes:
        return json.dumps(
            {"schema": "neurospasm.claim/1", "device": dev, "worker": worker, "expires": time.time() + 30}
        ).encode()

    def announce(dev: str, detect_locally: bool = False) -> bytes:
        doc = {"schema": "neurospasm.announce/1", "device": dev, "detect_locally": detect_locally}
        return json.dumps(doc).encode()

    async def scenario() -> None:
        worker = Worker(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        topic = f"{PREFIX}/clinic/p-0001/{{}}/{{}}"
        claims: dict[str, list[str]] = defaultdict(list)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="race-test") as c:
            await c.subscribe(f"{PREFIX}/+/+/+/claim", qos=1)

            async def watch() -> None:
                async for m in c.messages:
                    if isinstance(m.payload, bytes) and m.payload:
                        claims[str(m.topic).split("/")[-2]].append(json.loads(m.payload)["worker"])

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(1.0)  # the worker is connected and subscribed
            assert not task.done()
            for dev in ("dev-r", "dev-s"):
                await c.publish(topic.format(dev, "announce"), announce(dev), qos=1)
            await _wait_for(
                lambda: claims["dev-r"] == ["w-b"] and claims["dev-s"] == ["w-b"], 5, "both claimed"
            )
            # A lower id claims dev-r: w-b lets go, and a later announce does not take it back.
            await c.publish(topic.format("dev-r", "claim"), claim("dev-r", "w-a"), qos=1, retain=True)
            # A higher id claims dev-s: w-b keeps it and re-asserts its claim at once.
            await c.publish(topic.format("dev-s", "claim"), claim("dev-s", "w-c"), qos=1, retain=True)
            await _wait_for(
                lambda: claims["dev-s"][-1] == "w-b" and len(claims["dev-s"]) == 3, 5, "re-assert"
            )
            await _wait_for(lambda: ("clinic", "p-0001", "dev-r") not in worker.held, 5, "letting go")
            await c.publish(topic.format("dev-r", "announce"), announce("dev-r"), qos=1)
            # A device its gateway detects itself is never claimed (no second set of ids).
            await c.publish(topic.format("dev-l", "announce"), announce("dev-l", detect_locally=True), qos=1)
            await asyncio.sleep(0.5)
            assert not claims["dev-l"] and ("clinic", "p-0001", "dev-l") not in worker.held
            assert ("clinic", "p-0001", "dev-r") not in worker.held
            assert ("clinic", "p-0001", "dev-s") in worker.held
            assert claims["dev-r"] == ["w-b", "w-a"] and worker.conflicts_lost == 1
            stop.set()
            await asyncio.wait_for(task, 10)
            # A clean stop clears its own claim (dev-s) and leaves the winner's (dev-r) alone.
            await asyncio.sleep(0.3)
            watcher.cancel()
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="race-check") as c:
            await c.subscribe(f"{PREFIX}/+/+/+/claim", qos=1)
            retained: dict[str, str] = {}
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for m in c.messages:
                        if isinstance(m.payload, bytes) and m.payload:
                            retained[str(m.topic).split("/")[-2]] = json.loads(m.payload)["worker"]
            assert retained == {"dev-r": "w-a"}

    asyncio.run(scenario())
