"""Myo and Polar H10 end to end across processes: ``neurospasm sim --ble-socket`` and ``neurospasm run``.

Each simulated BLE wearable runs in its own ``neurospasm sim --device KIND --ble-socket PATH``
process; one gateway process (``neurospasm run``) reaches both through the BLE bridge
(``ble_bridge = PATH`` in its ``[[devices]]`` tables), so its real BLE transport (scan, connect,
GATT, notify, write, disconnected callback, reconnect) runs against them. The scenarios' faults
(random and scripted loss of notifications, one out-of-range spell that drops the link) are the
simulator's; its ``--truth`` file is the account the gateway's records are checked against:

* every lost notification is one gap of exactly the samples lost, in order, at the right time;
* the out-of-range spell is one disconnect gap (a Polar H10's timestamps run on: exact size; a
  Myo has no counter: its gap is known from time only, checked against the truth's times);
* every injected spasm (Myo) and tremor (Polar) clear of a gap is reported exactly once.

The gateway starts first and retries until the simulators' sockets exist (as a service waits for
a wearable), so sample 0 of each scenario is within a reconnect backoff of the simulator's start.
The Myo sends no counters: its decoder numbers EMG notifications by their round-robin over four
characteristics (``ingest.wire.myo``), so a loss is counted modulo one cycle of four notifications
and a burst of whole cycles is invisible to any gateway. Its scenario therefore loses single
notifications at random (exact), and its accelerometer gaps (inferred from the EMG stream, an
estimate by design) are not compared. The Polar H10 loses scripted bursts, counted exactly from
its timestamps; its scenario keeps losses out of the tremors (a gap ends an open episode).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from support.harness import Proc, eventually, gateway, local_lines

from ingest.outputs.lineproto import parse_line

MYO_TOML = """
name = "bridge_myo"
description = "four phasic spasms on two channels, for the BLE bridge end-to-end test"
seed = 31
duration_s = 11.0
emg_rate_hz = 1000
acc_rate_hz = 50
channels = ["EMG L quad", "EMG R quad"]
rest_uv = 3.0
crosstalk = 0.0

[[events]]
type = "phasic"
channel = "EMG L quad"
onset_s = 1.5
duration_s = 0.8
peak_uv = 250.0

[[events]]
type = "phasic"
channel = "EMG R quad"
onset_s = 3.6
duration_s = 0.8
peak_uv = 250.0

[[events]]
type = "phasic"
channel = "EMG L quad"
onset_s = 7.8
duration_s = 0.8
peak_uv = 250.0

[[events]]
type = "phasic"
channel = "EMG R quad"
onset_s = 9.5
duration_s = 0.8
peak_uv = 250.0

[faults]
seed = 31
frame_loss_rate = 0.008
disconnects = [{ at_s = 5.2, duration_s = 0.6 }]
"""

POLAR_TOML = """
name = "bridge_h10"
description = "two tremor episodes, for the BLE bridge end-to-end test"
seed = 12
duration_s = 13.5
emg_rate_hz = 1000
acc_rate_hz = 100
channels = ["EMG chest"]
rest_uv = 3.0
posture = "sitting"

[[events]]
type = "tremor"
channel = "ACC"
onset_s = 1.2
frequency_hz = 5.0
duration_s = 4.0
acc_g = 0.1

[[events]]
type = "tremor"
channel = "ACC"
onset_s = 7.8
frequency_hz = 6.5
duration_s = 4.2
acc_g = 0.08

[faults]
seed = 12
loss_bursts = [{ at_s = 5.6, duration_s = 0.2 }, { at_s = 12.6, duration_s = 0.2 }]
disconnects = [{ at_s = 6.3, duration_s = 0.6 }]
"""

#: kind -> (address, scenario, the gap domain checked, Myo pod channel of each scenario channel)
DEVICES: dict[str, tuple[str, str, str]] = {
    "myo": ("C0:FF:EE:00:00:11", MYO_TOML, "emg"),
    "polar-h10": ("C0:FF:EE:00:00:21", POLAR_TOML, "acc"),
}
MYO_CHANNELS = {"EMG L quad": "pod1", "EMG R quad": "pod2"}


def write_gateway_config(tmp: Path, sockets: dict[str, Path]) -> Path:
    lines = [
        "[gateway]", f"state_dir = {json.dumps(str(tmp / 'state'))}", "stale_after_s = 3.0", "",
    ]  # fmt: skip
    for kind, sock in sockets.items():
        lines += [
            "[[devices]]", f'id = "{kind}-1"', f'kind = "{kind}"', 'transport = "ble"',
            f'address = "{DEVICES[kind][0]}"', f"ble_bridge = {json.dumps(str(sock))}",
            "reconnect_initial_s = 0.1", "reconnect_max_s = 0.3", "",
        ]  # fmt: skip
    lines += ["[mqtt]", "enabled = false", "", "[local]", "enabled = true", ""]
    cfg = tmp / "gateway.toml"
    cfg.write_text("\n".join(lines))
    return cfg


def start_ble_sim(tmp: Path, kind: str, sock: Path) -> Proc:
    address, toml, _ = DEVICES[kind]
    scenario = tmp / f"{kind}.toml"
    scenario.write_text(toml)
    return Proc(
        [
            sys.executable, "-m", "ingest", "sim", "--device", kind, "--ble-socket", str(sock),
            "--ble-address", address, "--scenario", str(scenario), "--device-id", f"sim-{kind}",
            "--truth", str(tmp / f"{kind}.truth.json"), "--labels", str(tmp / f"{kind}.labels.json"),
            "--path-file", str(tmp / f"{kind}.path"),
        ],
        tmp / f"sim-{kind}.log",
    )  # fmt: skip


def records(state: Path, measurement: str, device: str) -> list[tuple[dict[str, str], dict[str, Any], float]]:
    out = []
    for line in local_lines(state, measurement):
        _, tags, fields, t_ns = parse_line(line)
        if tags.get("device") == device:
            out.append((tags, fields, t_ns / 1e9))
    return out


def test_myo_and_polar_over_the_ble_bridge_from_other_processes(tmp_path: Path) -> None:
    # Short socket paths: a Unix socket path holds at most 107 bytes, pytest's tmp_path may not.
    import tempfile

    sock_dir = Path(tempfile.mkdtemp(prefix="nsbb-"))
    sockets = {kind: sock_dir / f"{kind}.sock" for kind in DEVICES}
    cfg = write_gateway_config(tmp_path, sockets)
    state = tmp_path / "state"
    gw = gateway(tmp_path, cfg)
    sims: dict[str, Proc] = {}
    try:
        # The gateway first: it retries while no simulator listens.
        assert asyncio.run(eventually(lambda: gw.log.read_text().count("cannot connect") >= 2, 30)), gw.tail()
        sims = {kind: start_ble_sim(tmp_path, kind, sock) for kind, sock in sockets.items()}
        truth_files = {kind: tmp_path / f"{kind}.truth.json" for kind in DEVICES}

        def through_the_end() -> bool:
            # Each device's data reached the gateway's store up to the scenario's end (+0.3 s).
            for kind in DEVICES:
                env = records(state, _series(kind), f"{kind}-1")
                if not env:
                    return False
                t_first = min(t for _, _, t in env)
                if max(t for _, _, t in env) < t_first + float(_duration(kind)) + 0.3:
                    return False
            return True

        assert asyncio.run(eventually(through_the_end, 40)), (gw.tail(), [s.tail() for s in sims.values()])
        for kind, sim in sims.items():
            assert sim.stop() == 0, sim.tail()
            assert not sockets[kind].exists(), "the simulator left its socket behind"
            assert truth_files[kind].exists(), sim.tail()
        assert gw.stop() == 0, gw.tail()
    finally:
        for p in sims.values():
            p.stop()
        gw.stop()

    for kind in DEVICES:
        check_device(kind, state, json.loads(truth_files[kind].read_text())[f"sim-{kind}"],
                     json.loads((tmp_path / f"{kind}.labels.json").read_text()))  # fmt: skip


def _series(kind: str) -> str:
    """The stored series that shows how far a device's data reached (a Polar H10 has no EMG)."""
    return "emg_envelope" if kind == "myo" else "acc"


def _duration(kind: str) -> float:
    import tomllib

    return float(tomllib.loads(DEVICES[kind][1])["duration_s"])


def check_device(kind: str, state: Path, truth: dict[str, Any], labels_doc: Any) -> None:
    device = f"{kind}-1"
    domain = DEVICES[kind][2]
    gaps = [(tags, f, t) for tags, f, t in records(state, "gap", device) if tags["domain"] == domain]
    seen = [t for _, _, t in records(state, _series(kind), device)]
    t_seen = max(seen)
    want = [g for g in truth["expected_gaps"] if g["domain"] == domain]
    outages = [o for o in truth["outages"] if o["cause"] == "out_of_range"]
    assert len(outages) == 1, truth["outages"]  # the scheduled spell, then the central's goodbye

    # Lost notifications: the same gaps in order, each of exactly the truth's samples, at its time.
    # Only the last truth gaps, within 0.1 s of the end of what the gateway stored, may be unknown
    # to it (a gap is known once data after it arrived).
    lost_got = sorted((t, int(f["samples_missing"])) for tags, f, t in gaps if tags["cause"] == "lost_frames")
    lost_all = sorted((g["t_host_start"], g["samples_missing"]) for g in want if g["cause"] == "lost_frames")
    settled = [g for g in want if g["cause"] == "lost_frames" and g["t_host_end"] < t_seen - 0.1]
    lost_want = lost_all[: max(len(settled), min(len(lost_got), len(lost_all)))]
    assert len(lost_want) >= 2, (kind, lost_all)
    assert [n for _, n in lost_got] == [n for _, n in lost_want], (kind, lost_got, lost_want)
    assert all(abs(a - b) < 0.5 for (a, _), (b, _) in zip(lost_got, lost_want, strict=True)), (
        kind, [round(a - b, 3) for (a, _), (b, _) in zip(lost_got, lost_want, strict=True)],
    )  # fmt: skip

    # The out-of-range spell: one disconnect gap.
    disc_got = [(f, t) for tags, f, t in gaps if tags["cause"] == "disconnect"]
    disc_want = [g for g in want if g["cause"] == "disconnect"]
    assert len(disc_got) == len(disc_want) == 1, (kind, disc_got, disc_want)
    ((df, dt),), (dw,) = disc_got, disc_want
    if kind == "myo":  # counted per connection: the gateway sizes the gap from host time
        assert abs(dt - dw["t_host_start"]) < 0.5, (kind, dt, dw)
        assert abs(dt + float(df["duration_s"]) - dw["t_host_end"]) < 0.5, (kind, df, dw)
        # the simulator's count: within 20 ms (4 samples) of time's. The estimate rests on arrival
        # times, which a busy host delays by up to tens of ms (measured: 3 samples off under the
        # full suite on 2 cores)
        if dw["samples_missing"] is not None:
            assert abs(int(df["samples_missing"]) - dw["samples_missing"]) <= 4, (kind, df, dw)
    else:  # the Polar H10's timestamps continue across the reconnect: the size is exact
        assert int(df["samples_missing"]) == dw["samples_missing"], (kind, df, dw)
    stray = [tags["cause"] for tags, _, _ in records(state, "gap", device)
             if tags["cause"] not in ("lost_frames", "disconnect", "lead_off", "saturation")]  # fmt: skip
    assert not stray, (kind, stray)

    # Events: every labelled one clear of a gap, exactly once, at its time (sample 0 is the
    # gateway's START, the simulator's first write) and on its channel; nothing else.
    t0 = truth["t_host_first_write"]
    assert t0 is not None
    spans = [(t - t0, t - t0 + float(f.get("duration_s", 0.0))) for tags, f, t in gaps]
    events = records(state, "spasm_event", device)
    ids = [f["id"] for _, f, _ in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    labels = labels_doc["events"]
    found, matched, cut = 0, set(), []
    for lab in labels:
        on, off = float(lab["onset_s"]), float(lab["offset_s"])
        if kind == "myo":
            near = [e for e in events if e[0]["channel"] == MYO_CHANNELS[lab["channel"]]]
            hits = [e for e in near if abs(e[2] - t0 - on) < 0.3]
        else:  # a tremor is reported once its spectral window has filled: onsets are coarser
            hits = [e for e in events if e[0]["type"] == "tremor" and abs(e[2] - t0 - on) < 1.0]
        clear = all(off + 0.3 < a or on - 0.3 > b for a, b in spans)
        got = [(e[0]["channel"], round(e[2] - t0, 2)) for e in events]
        assert len(hits) == 1 if clear else len(hits) <= 1, (kind, lab, got, spans)
        if not clear:
            cut.append((on, off))
        found += len(hits)
        matched |= {e[1]["id"] for e in hits}
    got = [(e[0]["type"], e[0]["channel"], round(e[2] - t0, 2)) for e in events]
    assert found >= len(labels) - 1, (kind, found, labels, got, t0)  # (events at their host time - t0)
    # Anything else is the rest of a labelled event that a gap cut in two (a gap ends an open
    # episode: the detector's rule, test_collectors), never an event where none was injected.
    stray = [(e[0], round(e[2] - t0, 2)) for e in events
             if e[1]["id"] not in matched and not any(a <= e[2] - t0 <= b + 0.3 for a, b in cut)]  # fmt: skip
    assert not stray, (kind, stray, cut)


def test_sim_serves_a_recording_over_the_ble_bridge(tmp_path: Path) -> None:
    """``neurospasm sim --device polar-h10 --ble-socket PATH --recording FILE`` as a process, read
    through the bridge with bleak's front-end and the H10 decoder: the recording streams, and the
    socket is 0600 while served and gone after."""
    import stat
    import tempfile

    from bleak import BleakClient, BleakScanner

    from ingest.commands.record import decode_source
    from ingest.files.recording import export_edf
    from ingest.sources.blebridge import bridge_backends
    from ingest.wire.kinds import decoder_for
    from ingest.wire.protocol import AccFrame

    edf = tmp_path / "e2e.edf"
    export_edf(decode_source("e2e_short"), edf)
    sock = Path(tempfile.mkdtemp(prefix="nsbr-")) / "h10.sock"
    path_file = tmp_path / "sim.path"
    sim = Proc(
        [sys.executable, "-m", "ingest", "sim", "--device", "polar-h10", "--ble-socket", str(sock),
         "--recording", str(edf), "--speed", "4", "--path-file", str(path_file)],
        tmp_path / "sim.log",
    )  # fmt: skip

    dec = decoder_for("polar-h10")

    async def read_until(samples: int) -> list[object]:
        assert await eventually(path_file.exists, 30), sim.tail()
        assert path_file.read_text().strip() == str(sock)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        client_cls, scanner_cls = bridge_backends(str(sock))
        dev = await BleakScanner.find_device_by_name("Polar H10 5E1A0001", timeout=3.0, backend=scanner_cls)
        assert dev is not None
        prof = type(dec).ble_profile
        assert prof is not None
        frames: list[object] = []
        async with BleakClient(dev, backend=client_cls) as c:
            for uuid in prof.notify_uuids:
                await c.start_notify(uuid, lambda ch, data: frames.extend(dec.feed(bytes(data), ch.uuid)))
            for w in dec.start_commands():
                await c.write_gatt_char(w.char_uuid or prof.command_uuid, w.data, response=True)

            def enough() -> bool:
                return sum(len(f.samples) for f in frames if isinstance(f, AccFrame)) >= samples

            assert await eventually(enough, 10, interval=0.05), (len(frames), sim.tail())
        return frames

    try:
        frames = asyncio.run(read_until(400))
        assert sim.stop() == 0, sim.tail()
        dec_errors = dict(dec.stats.errors)
    finally:
        sim.stop()
    acc = [f for f in frames if isinstance(f, AccFrame)]
    counters = [f.counter for f in acc]
    assert all(b - a == 36 for a, b in itertools.pairwise(counters)), counters  # no loss, in order
    assert dec_errors == {}, dec_errors
    assert not sock.exists()
    assert "e2e.edf" in sim.log.read_text()
