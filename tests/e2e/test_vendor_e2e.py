"""End to end over a real pty: the gateway and a simulated OpenBCI Cyton, Shimmer3 or BITalino.

The real gateway (``ingest.stream.runner.Gateway``: serial transport, the kind's decoder, the
session, the detector) against the simulator's vendor personality, with bursts of packet loss,
0.4 % random loss and one disconnect (the pty disappears and comes back, as on a USB unplug or
a Bluetooth drop):

* lost packets are gap records with exactly the samples the fault injector dropped;
* the disconnect is one gap: a Cyton and a BITalino restart their sample counter when streaming
  is restarted, so that gap is measured in time (checked against the injector's host times);
  a Shimmer's clock keeps running, so its size is checked against the truth within 1 %;
* every injected spasm clear of a gap is reported exactly once, at the right time and channel.

Rates: Cyton 250 Hz, Shimmer 1024 Hz, BITalino 1000 Hz (the detector accepts all three today).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from support.checks import caught_up

from firmware_sim.faults import FaultInjector
from firmware_sim.personalities import PersonalityDevice, make_device
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import Scenario, parse_scenario
from firmware_sim.signals import synthesize
from ingest.config import parse_config
from ingest.stream.runner import Gateway
from ingest.stream.session import Output

CHANNELS = ["EMG L quad", "EMG R quad"]
SPASMS = [(0.8, 0), (2.0, 1), (3.2, 0), (5.2, 1), (6.4, 0)]
DISCONNECT = (4.1, 0.5)
DURATION = 7.6
LABELS = {"cyton": ("ch1", "ch2"), "shimmer": ("EXG1 CH1", "EXG1 CH2"), "bitalino": ("A1", "A2")}


#: Scripted loss bursts (150 ms) between spasms. Not for BITalino: its 4-bit sequence number
#: counts at most 14 lost frames (14 ms at 1 kHz); a longer loss wraps and cannot be exact.
BURSTS = [
    {"at_s": 1.45, "duration_s": 0.15},
    {"at_s": 2.65, "duration_s": 0.15},
    {"at_s": 5.9, "duration_s": 0.15},
]
#: BITalino: bursts of at most 12 ms (three 4-frame groups) between spasms, and no random loss
#: (a random 4 ms hole inside a spasm makes the detector end the episode there and start another:
#: a detector matter, measured on our own protocol in test_collectors).
SHORT_BURSTS = [{"at_s": t, "duration_s": 0.011} for t in (1.45, 1.55, 2.65, 2.75, 5.9, 6.0)]


def scenario(seed: int, kind: str) -> Scenario:
    return parse_scenario(
        {
            "name": "vendor_e2e", "seed": seed, "duration_s": DURATION, "emg_rate_hz": 1000,
            "acc_rate_hz": 50,
            "channels": CHANNELS, "crosstalk": 0.0,
            "events": [
                {"type": "phasic", "channel": CHANNELS[ch], "onset_s": t, "duration_s": 0.6, "peak_uv": 250.0}
                for t, ch in SPASMS
            ],
            "faults": {
                "frame_loss_rate": 0.0 if kind == "bitalino" else 0.004, "seed": seed,
                "loss_bursts": SHORT_BURSTS if kind == "bitalino" else BURSTS,
                "disconnects": [{"at_s": DISCONNECT[0], "duration_s": DISCONNECT[1]}],
            },
        },
        "<vendor-e2e>",
    )  # fmt: skip


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("kind", ["cyton", "shimmer", "bitalino"])
async def test_vendor_device_end_to_end(tmp_path: Path, kind: str) -> None:
    sc = scenario(seed=21, kind=kind)
    rec = synthesize(sc)
    from firmware_sim.device import SignalSource

    device = make_device(kind, SignalSource.from_recording(rec), device_id=f"sim-{kind}", seed=sc.seed)
    assert isinstance(device, PersonalityDevice)
    p = device.personality
    injector = FaultInjector.from_scenario(sc, rec, emg_rate_hz=p.emg_rate_hz, acc_rate_hz=p.acc_rate_hz)
    outputs: list[Output] = []
    async with PtyServer(device, injector=injector) as server:
        cfg = parse_config({
            "gateway": {"state_dir": str(tmp_path / "state"), "stale_after_s": 3.0},
            "devices": [{"id": f"dev-{kind}", "kind": kind, "port": server.path,
                         "reconnect_initial_s": 0.1, "reconnect_max_s": 0.3}],
            "mqtt": {"enabled": False}, "local": {"enabled": True},
            "spool": {"quota_mb": 64, "fsync": "never"},
        }, "<test>")  # fmt: skip
        wall0 = server._wall0
        async with Gateway(cfg, observers=[lambda _dev, out: outputs.append(out)]) as gw:
            gw.start()
            await asyncio.sleep(max(0.0, DURATION - 0.2 - server.device_time()))
            await server.quiesce()
            await asyncio.sleep(0.3)
            await caught_up(gw)  # what the gateway read is processed, not dropped by drain
            await gw.drain(timeout_s=1.0)
        assert server.stats.disconnects == 1
    rate = p.emg_rate_hz
    gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload and o.payload["domain"] == "emg"]
    # A gap is known once data resumes after it: compare what the truth knows up to the last EMG
    # the gateway processed (on a loaded machine the run's very end may not reach the session).
    t_seen = max(float(o.series.t_ns.max()) / 1e9 for o in outputs if o.kind == "envelope" and o.series)
    # Both sides in one clock: the truth stamps each packet group with the host time it was made
    # (not the paced loop's possibly stalled tick), the gateway with its fitted device clock.
    want = [g for g in injector.expected_gaps() if g["domain"] == "emg"]
    # Lost packets: the same gaps, in order, each with exactly the truth's samples, starting when
    # it did. Only the last truth gaps, within 0.1 s of the end of what the gateway processed,
    # may still be unknown to it (a gap is known once data after it was processed); never one
    # more, never one before that.
    lost_got = sorted((ts(g["start"]), g["samples_missing"]) for g in gaps if g["cause"] == "lost_frames")
    lost_all = sorted((g["t_host_start"], g["samples_missing"]) for g in want if g["cause"] == "lost_frames")
    settled = [g for g in want if g["cause"] == "lost_frames" and g["t_host_end"] < t_seen - 0.1]
    lost_want = lost_all[: max(len(settled), min(len(lost_got), len(lost_all)))]
    # (a burst shorter than one stall of the simulator's paced loop may lose nothing)
    assert len(lost_want) >= 2, "three scripted loss bursts, and some random loss"
    assert [n for _, n in lost_got] == [n for _, n in lost_want], (
        [(round(a - wall0, 2), n) for a, n in lost_got],
        [(round(a - wall0, 2), n) for a, n in lost_want],
        [r for r in injector.truth if r["kind"] != "lost_frames"],
        [(g["cause"], g["samples_missing"], round(g["t_host_start"] - wall0, 2)) for g in want],
    )
    # Times within 0.5 s: the injector stamps a frame with the host time its (paced) loop made it,
    # which lags by the loop's scheduling stalls on a loaded machine; the gateway's is the fit.
    assert all(abs(a - b) < 0.5 for (a, _), (b, _) in zip(lost_got, lost_want, strict=True)), [
        (round(a - wall0, 3), round(a - b, 3)) for (a, _), (b, _) in zip(lost_got, lost_want, strict=True)
    ]
    disc_got = [g for g in gaps if g["cause"] == "disconnect"]
    disc_want = [g for g in want if g["cause"] == "disconnect"]
    assert len(disc_got) == len(disc_want) == 1, (disc_got, disc_want)
    (dg,), (dw,) = disc_got, disc_want
    if dw["samples_missing"] is None:  # the counter restarted: a gap in time
        assert abs(ts(dg["start"]) - dw["t_host_start"]) < 0.5 and abs(ts(dg["end"]) - dw["t_host_end"]) < 0.5
        assert dg["samples_missing"] == pytest.approx(
            (dw["t_host_end"] - dw["t_host_start"]) * rate, rel=0.05
        )
    else:  # the Shimmer's clock ran on: the size is known, the session measured it in time
        # (within 50 ms: the new connection's clock is fitted afresh from arrival times)
        assert abs(dg["samples_missing"] - dw["samples_missing"]) <= 0.05 * rate
    assert not [g for g in gaps if g["cause"] not in ("lost_frames", "disconnect", "lead_off", "saturation")]

    # Every spasm clear of a gap: exactly one event, at its time (host clock) and on its channel.
    spans = [
        (ts(g["start"]) - wall0, ts(g["end"]) - wall0)
        for g in gaps
        if g["cause"] in ("lost_frames", "disconnect")
    ]
    events = [o.payload for o in outputs if o.kind == "event" and o.payload is not None]
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was published twice"
    labels = LABELS[kind]
    found: dict[int, int] = {}
    for lab in rec.labels:
        on, off = float(lab["onset_s"]), float(lab["offset_s"])
        want_ch = labels[CHANNELS.index(lab["channel"])]
        hits = [e for e in events if e["channel"] == want_ch and abs(ts(e["onset"]) - wall0 - on) < 0.25]
        clear = all(off + 0.3 < a or on - 0.3 > b for a, b in spans)
        if clear:
            assert len(hits) == 1, (kind, lab, [(e["channel"], ts(e["onset"]) - wall0) for e in events])
        else:
            assert len(hits) <= 1
        found[int(on * 10)] = len(hits)
    assert sum(found.values()) >= 3, (
        found,
        [(e["channel"], round(ts(e["onset"]) - wall0, 2)) for e in events],
        [(round(a, 2), round(b, 2)) for a, b in spans],
        [o.kind for o in outputs if o.kind in ("onset", "event", "gap")][:40],
    )
    stray = [
        e
        for e in events
        if not any(abs(ts(e["onset"]) - wall0 - float(lab["onset_s"])) < 0.25 for lab in rec.labels)
    ]
    assert not stray, [(e["channel"], ts(e["onset"]) - wall0) for e in stray]


def test_sim_command_speaks_the_vendor_protocol(tmp_path: Path) -> None:
    """``neurospasm sim --serial --device cyton --device-option daisy=1`` as a process, read with
    pyserial and the Cyton decoder: the banner says Daisy, 16 channels arrive at 125 Hz."""
    import time

    import serial
    from support.harness import start_sim

    from ingest.wire.cyton import CytonDecoder
    from ingest.wire.protocol import EmgFrame, InfoFrame

    sim, path = start_sim(tmp_path, "e2e_short", ["--device", "cyton", "--device-option", "daisy=1"])
    try:
        port = serial.Serial(path, 115200, timeout=0.05)
        dec = CytonDecoder()
        for cmd in dec.start_commands():
            port.write(cmd.data)
        frames = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            frames += dec.feed(port.read(4096))
        port.close()
    finally:
        assert sim.stop() == 0, sim.tail()
    info = next(f for f in frames if isinstance(f, InfoFrame))
    assert (info.n_channels, info.emg_rate_hz, info.firmware) == (16, 125, "v3.1.2")
    n = sum(len(f.samples) for f in frames if isinstance(f, EmgFrame))
    assert 150 <= n <= 260, n  # about 2 s at 125 Hz (the first packets follow the banner)
    assert dec.stats.errors == {}
