"""Replay: the transport's contract, files of every kind, and live == replay for event ids."""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.harness import eventually

from detectors import DetectorConfig
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.faults import FaultInjector
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import builtin_scenario, parse_scenario
from firmware_sim.signals import synthesize
from ingest.commands.cli import main as cli_main
from ingest.commands.offline import detect_records
from ingest.commands.record import decode_source as decode
from ingest.commands.record import record_port
from ingest.commands.replay import ReplayError, ReplayTransport, load_records, parse_speed, run_replay
from ingest.config import parse_config
from ingest.files.recording import (
    DATA,
    DOWN,
    UP,
    WRITE,
    CaptureReader,
    CaptureRecord,
    CaptureWriter,
    capturing_factory,
    decode_records,
    export_edf,
)
from ingest.outputs.encoders import to_json
from ingest.sources.base import TransportClosed
from ingest.stream.runner import Gateway, default_transport
from ingest.stream.session import Output


def recs(*items: tuple[float, int, bytes]) -> list[CaptureRecord]:
    return [CaptureRecord(t, k, d, i) for i, (t, k, d) in enumerate(items)]


async def test_replay_transport_keeps_recorded_times_resumes_after_drops_and_signals_the_end() -> None:
    records = recs((100.0, DATA, b"a"), (100.5, DATA, b"b"), (101.0, DOWN, b""), (103.0, DATA, b"c"))
    seen: list[tuple[int, int]] = []
    t = ReplayTransport(
        name="r", records=records, speed=math.inf, on_progress=lambda d, n: seen.append((d, n))
    )
    async with t:
        assert [(c.t_host, c.data) for c in [await t.read(), await t.read()]] == [
            (100.0, b"a"),
            (100.5, b"b"),
        ]
        with pytest.raises(TransportClosed, match="recorded link drop"):
            await t.read()
    assert not t.finished.is_set()
    async with t:  # the runner reconnects: the recording continues after the drop
        c = await t.read()
        assert (c.t_host, c.data) == (103.0, b"c")
        with pytest.raises(TransportClosed, match="end of recording"):
            await t.read()
    assert t.finished.is_set() and seen[-1] == (4, 4)
    with pytest.raises(TransportClosed):
        async with t:
            pass


async def test_unread_chunks_are_fed_again_after_a_reconnect() -> None:
    """The gateway's stale watchdog may close the link with chunks still queued: none is lost."""
    records = recs(*[(float(i), DATA, bytes([i])) for i in range(10)])
    t = ReplayTransport(name="r", records=records, speed=math.inf)
    async with t:
        first = await t.read()
        await asyncio.sleep(0.01)  # the feeder queues the rest
    got = [first.data]
    async with t:
        while True:
            try:
                got.append((await t.read()).data)
            except TransportClosed:
                break
    assert got == [bytes([i]) for i in range(10)]


async def test_paced_replay_still_stamps_recorded_host_times() -> None:
    records = recs((5000.0, DATA, b"a"), (5000.02, DATA, b"b"))
    t = ReplayTransport(name="r", records=records, speed=10.0)
    async with t:
        assert [(await t.read()).t_host for _ in range(2)] == [5000.0, 5000.02]


def test_parse_speed() -> None:
    assert parse_speed("max") == math.inf and parse_speed("10") == 10.0 and parse_speed("2x") == 2.0
    for bad in ("0", "-1", "fast-ish"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_speed(bad)


def test_unknown_file_kinds_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.wav"
    p.write_bytes(b"RIFF")
    with pytest.raises(ReplayError, match=r"x\.wav: not a capture"):
        load_records(p)
    bad = tmp_path / "bad.csv"
    bad.write_text("volts,EMG\n1,2\n3,4\n", encoding="utf-8")
    with pytest.raises(ReplayError, match="line 1: the first column must be time_s"):
        load_records(bad)


# -- files through the whole gateway ------------------------------------------------------------


def e2e_labels() -> list[tuple[str, str]]:
    return sorted((e["type"], e["channel"]) for e in synthesize(builtin_scenario("e2e_short")).labels)


async def test_replay_csv_recording_through_the_gateway(tmp_path: Path) -> None:
    rec = synthesize(builtin_scenario("e2e_short"))
    p = tmp_path / "e2e.csv"
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time_s", *rec.channel_labels])
        for i, row in enumerate(rec.emg_uv):
            w.writerow([f"{i / rec.emg_rate_hz:.4f}", *(f"{v:.2f}" for v in row)])
    summary = await run_replay(p, state_dir=tmp_path / "state")
    assert sorted((e["type"], e["channel"]) for e in summary.events) == e2e_labels()
    assert summary.gaps == []


async def test_replay_edf_export_through_the_gateway(tmp_path: Path) -> None:
    edf = tmp_path / "e2e.edf"
    export_edf(decode("e2e_short"), edf)
    summary = await run_replay(edf, state_dir=tmp_path / "state", device="w-1")
    assert sorted((e["type"], e["channel"]) for e in summary.events) == e2e_labels()
    # the exporter's "no data" fraction before the first sample is skipped, not replayed as a
    # flat (lead-off) stretch that would hide the first spasm behind the reattachment guard
    assert summary.gaps == []


def test_replay_command_writes_events_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap = tmp_path / "e2e.nsc"
    assert cli_main(["record", "--sim", "e2e_short", "--out", str(cap), "--device-id", "w-3"]) == 0
    events = tmp_path / "events.jsonl"
    assert cli_main(["replay", str(cap), "--speed", "max", "--events-out", str(events), "--no-progress",
                     "--state-dir", str(tmp_path / "state")]) == 0  # fmt: skip
    lines = events.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all('"device": "w-3"' in line for line in lines)
    out = capsys.readouterr().out
    assert "3 events (phasic 3); 0 gaps (none)" in out
    # The default config stores series locally (and publishes nowhere).
    assert any((tmp_path / "state").rglob("*.lp*")) or any((tmp_path / "state" / "series").iterdir())


# -- live == replay ------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs pseudo-terminals")
async def test_capture_replayed_at_max_speed_gives_the_live_runs_events(tmp_path: Path) -> None:
    sc = parse_scenario({
        "name": "replay_live", "seed": 5, "duration_s": 12.0, "emg_rate_hz": 1000, "acc_rate_hz": 50,
        "channels": ["EMG L quad", "EMG R quad"],
        "events": [
            {"type": "phasic", "channel": "EMG L quad", "onset_s": 0.8, "duration_s": 0.8, "peak_uv": 200.0},
            {"type": "twitch", "channel": "EMG R quad", "onset_s": 2.0, "duration_s": 0.3, "peak_uv": 250.0},
            {"type": "phasic", "channel": "EMG R quad", "onset_s": 4.2, "duration_s": 1.0, "peak_uv": 180.0},
        ],
        "faults": {"frame_loss_rate": 0.02, "disconnects": [{"at_s": 3.0, "duration_s": 0.5}]},
    }, "<test>")  # fmt: skip
    rec = synthesize(sc)
    device = SimDevice(SignalSource.from_recording(rec), device_id="sim-r", seed=sc.seed)
    injector = FaultInjector.from_scenario(sc, rec)
    live: list[Output] = []
    cap = tmp_path / "live.nsc"
    async with PtyServer(device, injector=injector) as server:
        cfg = parse_config({
            "gateway": {"state_dir": str(tmp_path / "live"), "stale_after_s": 3.0},
            "devices": [{"id": "wearable-7", "port": server.path, "reconnect_initial_s": 0.1,
                         "reconnect_max_s": 0.3}],
            "mqtt": {"enabled": False}, "local": {"enabled": True}, "spool": {"fsync": "never"},
        }, "<test>")  # fmt: skip
        with CaptureWriter(cap, device="wearable-7") as writer:
            factory = capturing_factory(lambda dev: default_transport(dev), writer)
            async with Gateway(
                cfg, transport_factory=factory, observers=[lambda _d, o: live.append(o)]
            ) as gw:
                gw.start()
                await asyncio.sleep(max(0.0, 6.0 - server.device_time()))
                await server.quiesce()
                await asyncio.sleep(0.2)
                await gw.drain(timeout_s=1.0)
    live_events = payloads(live, "event")
    live_gaps = payloads(live, "gap")
    assert len(live_events) >= 3 and any(g["cause"] == "disconnect" for g in live_gaps)

    replayed = await run_replay(cap, speed=math.inf, state_dir=tmp_path / "replay")
    assert sorted(e["id"] for e in replayed.events) == sorted(e["id"] for e in live_events)
    assert [strip(e) for e in sorted(replayed.events, key=by_id)] == [
        strip(e) for e in sorted(live_events, key=by_id)
    ]
    assert sorted(g["id"] for g in replayed.gaps) == sorted(g["id"] for g in live_gaps)
    assert sorted((g["cause"], g["samples_missing"]) for g in replayed.gaps) == sorted(
        (g["cause"], g["samples_missing"]) for g in live_gaps
    )
    # neurospasm detect on the live capture: the live run's events, ids and times included.
    detected = detect_records(CaptureReader(cap).records(), DetectorConfig(), "wearable-7")
    assert sorted((to_json(e) for e in detected), key=by_id) == sorted(live_events, key=by_id)


async def test_record_port_captures_a_live_device_with_the_gateways_device_task(tmp_path: Path) -> None:
    """``record --port``: the gateway's DeviceRunner (START on connect) on a capturing transport."""
    rec = synthesize(builtin_scenario("e2e_short"))
    device = SimDevice(SignalSource.from_recording(rec), device_id="sim-rec", seed=3)  # waits for START
    out = tmp_path / "rec.nsc"
    stop = asyncio.Event()
    async with PtyServer(device) as server:
        task = asyncio.create_task(
            record_port(server.path, out, duration_s=None, device="w-rec", baudrate=921600, stop=stop)
        )
        assert await eventually(lambda: server.device_time() >= 2.5, 30, 0.1)
        stop.set()
        assert await task == 0
    reader = CaptureReader(out)
    kinds = [r.kind for r in reader]
    assert reader.header["device"] == "w-rec" and reader.header["kind"] == "neurospasm"
    assert kinds[0] == UP and WRITE in kinds and kinds.count(DATA) > 10 and kinds[-1] == DOWN
    decoded = decode_records(reader.records(), "w-rec")
    assert decoded.boots and decoded.boots[0].info.device_id == "sim-rec"
    assert sum(len(b) for b in decoded.boots[0].emg.values()) >= rec.emg_rate_hz  # over a second of EMG
    assert decoded.decode_errors == {}


def payloads(outs: list[Output], kind: str) -> list[dict[str, Any]]:
    return [o.payload for o in outs if o.kind == kind and o.payload is not None]


def by_id(e: dict[str, Any]) -> str:
    return str(e["id"])


def strip(e: dict[str, Any]) -> dict[str, Any]:
    """Everything of an event payload; timestamps too, since the capture keeps host times."""
    return dict(e)


def test_frame_signals_round_trip_exactly() -> None:
    """EDF/CSV replays frame the samples with the protocol; the session gets them back unchanged."""
    from ingest.commands.replay import frame_signals
    from ingest.wire.protocol import EmgFrame, StreamDecoder

    rng = np.random.default_rng(1)
    emg = rng.normal(0, 50, size=(3000, 2))
    records = frame_signals(emg, ["A", "B"], 1000, np.zeros((150, 3)), 50, t0=1000.0)
    dec = StreamDecoder()
    frames = [f for r in records for f in dec.feed(r.data) if isinstance(f, EmgFrame)]
    got = np.concatenate([f.samples for f in frames])
    assert len(got) == 3000 and dec.stats.bad_frames == 0
    assert [f.counter for f in frames] == list(range(0, 3000, len(frames[0].samples)))[: len(frames)]
