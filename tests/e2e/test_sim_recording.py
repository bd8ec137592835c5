"""``neurospasm sim --recording FILE``: a recording served as a live device over a real pty.

The simulator runs as its own process (``python -m ingest sim --serial --recording ...``); the real
gateway (Gateway, SerialTransport, decoder, session, detector) reads the pty and must find the
recording's spasms, each once, in our protocol and in a vendor personality, with frame loss on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.harness import start_sim

from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.commands.record import decode_source
from ingest.commands.simrec import SimRecordingError, load_recording
from ingest.config import parse_config
from ingest.files.recording import export_edf
from ingest.stream.runner import Gateway
from ingest.stream.session import Output


@pytest.fixture(scope="module")
def edf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "e2e.edf"
    export_edf(decode_source("e2e_short"), path)
    return path


def test_load_recording_reads_the_edf_as_the_simulator_needs_it(edf: Path) -> None:
    rec = load_recording(edf)
    truth = synthesize(builtin_scenario("e2e_short"))
    assert rec.emg_rate_hz == truth.emg_rate_hz and rec.channel_labels == truth.channel_labels
    # The export ends at the last sample sent (the zero padding of EDF's last 1 s record is
    # annotated and skipped); the simulation's final frame may not have gone out.
    assert -0.05 <= rec.duration_s - truth.duration_s <= 0.0
    assert rec.acc_rate_hz == truth.acc_rate_hz and rec.acc_g.shape[1] == 3


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SimRecordingError, match="no such file"):
        load_recording(tmp_path / "missing.edf")
    junk = tmp_path / "junk.csv"
    junk.write_text("not,a\nrecording\n", encoding="utf-8")
    with pytest.raises(SimRecordingError, match=str(junk)):
        load_recording(junk)
    r = subprocess.run(
        [sys.executable, "-m", "ingest", "sim", "--serial", "--recording", str(tmp_path / "missing.edf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
    # A BLE personality has no pty link: one line saying where it is served instead.
    r = subprocess.run(
        [sys.executable, "-m", "ingest", "sim", "--serial", "--device", "polar-h10", "--scenario", "e2e_short"],  # noqa: E501
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "is a BLE device" in r.stderr and r.stderr.strip().count("\n") == 0


# Frame loss on our protocol (a frame is ~0.1 s of EMG); none on the Cyton, whose packets carry one
# sample each: at 250 packets/s, 1 % loss is a gap every 0.4 s, and a gap closes open episodes.
# Fault seed 5 loses frames at 0.2, 3.7, 3.8 and 11.8 s, none inside a spasm (checked below from
# the simulator's --truth): a frame lost inside a spasm would split it, by the detector's gap rule.
LOSSY = ["--frame-loss", "0.01", "--fault-seed", "5"]


@pytest.mark.parametrize(("kind", "extra"), [("neurospasm", LOSSY), ("cyton", ["--device", "cyton"])])
async def test_gateway_detects_the_recordings_spasms_over_a_pty(
    tmp_path: Path, edf: Path, kind: str, extra: list[str]
) -> None:
    speed = 3.0
    sim, port = start_sim(
        tmp_path, "e2e_short",
        ["--recording", str(edf), "--speed", str(speed), "--truth", str(tmp_path / "truth.json"), *extra],
    )  # fmt: skip
    try:
        cfg = parse_config({
            "gateway": {"state_dir": str(tmp_path / "state"), "stale_after_s": 3.0},
            "devices": [{"id": "rec-1", "kind": kind, "transport": "serial", "port": port}],
            "mqtt": {"enabled": False},
            "local": {"enabled": False},
        })  # fmt: skip
        outputs: list[Output] = []
        done = asyncio.Event()

        def observe(dev: str, out: Output) -> None:
            if out.kind in ("event", "gap", "onset"):
                outputs.append(out)
            if sum(o.kind == "onset" for o in outputs) >= 3:
                done.set()

        # The recording ends 3 s (at 3x) after the last spasm began, and a burst may wait up to
        # ``rhythm_lookahead_s`` of later data before it is judged: the last event comes out when
        # the stream does, here at the gateway's shutdown (the session's finish), as in a replay.
        async with Gateway(cfg, observers=[observe]) as gw:
            gw.start()
            async with asyncio.timeout(40):
                await done.wait()
                await asyncio.sleep(4.0 / speed)  # the rest of the recording; duplicates would show
    finally:
        assert sim.stop() in (0, -15), sim.tail()
    truth = synthesize(builtin_scenario("e2e_short")).labels
    events = [o.payload for o in outputs if o.kind == "event" and o.payload]
    assert len(events) == 3 and len({e["id"] for e in events}) == 3
    assert sorted(e["type"] for e in events) == sorted(t["type"] for t in truth)
    if kind == "neurospasm":  # the vendor kinds name channels by their inputs
        assert sorted(e["channel"] for e in events) == sorted(t["channel"] for t in truth)
    gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload]
    if extra is LOSSY:
        assert any(g["cause"] == "lost_frames" for g in gaps), "1 % frame loss made no gap"
        (doc,) = json.loads((tmp_path / "truth.json").read_text(encoding="utf-8")).values()
        # EMG frames only: a lost accelerometer frame counts 50 Hz samples, and a lost status frame
        # (how many go out depends on the wall clock) carries no sample counter at all
        lost = [r for r in doc["truth"] if r["kind"] == "lost_frames" and r.get("domain") == "emg"]
        lost_s = [r["start_counter"] / 1000 for r in lost]
        assert lost_s and not [t for t in lost_s for lab in truth if lab["onset_s"] <= t <= lab["offset_s"]]
    else:  # no faults: no lost data (the EDF's zero-padded last second may show as a quality gap)
        assert not [g for g in gaps if g["cause"] in ("lost_frames", "disconnect", "reboot")], gaps


def test_load_recording_from_a_capture(tmp_path: Path) -> None:
    from ingest.commands.cli import main as cli_main

    cap = tmp_path / "e2e.nsc"
    assert cli_main(["record", "--sim", "e2e_short", "--out", str(cap), "--device-id", "w-9"]) == 0
    rec = load_recording(cap)
    truth = synthesize(builtin_scenario("e2e_short"))
    assert rec.emg_rate_hz == truth.emg_rate_hz and rec.channel_labels == truth.channel_labels
    assert abs(rec.duration_s - truth.duration_s) < 0.5
    # In microvolts again: the capture's counts x its INFO scale reproduce the scenario's signal.
    n = min(len(rec.emg_uv), len(truth.emg_uv))
    assert float(abs(rec.emg_uv[:n] - truth.emg_uv[:n]).max()) < 1.0
