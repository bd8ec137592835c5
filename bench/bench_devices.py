"""How many wearables one gateway process keeps up with in real time (issue 5). Not a test.

    python bench/bench_devices.py [--devices 16 32 64] [--seconds 25]

For each N: one simulator process serves N devices (8 EMG channels at 2 kHz + accelerometer at
100 Hz, a spasm every few seconds, looped), each on its own pty; one ``neurospasm run`` process
reads them all, detects, publishes events and status to a real Mosquitto and writes the envelope
and accelerometer series to its local store through the spool. After a warm-up, the gateway's
CPU time is measured over the window and every device's retained status is read: the gateway
"keeps up" when no device lost a sample, no frame was bad and no receive chunk was dropped.

Baseline measured in the same run: the CPU cost of only decoding the same byte streams
(``StreamDecoder``), so the gateway's cost per device is reported as a ratio to the bare decode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.servers import Mosquitto, wait_until  # noqa: E402

SCENARIO = """
name = "bench_devices"
seed = 11
duration_s = 60.0
emg_rate_hz = 2000
acc_rate_hz = 100
channels = ["EMG 1", "EMG 2", "EMG 3", "EMG 4", "EMG 5", "EMG 6", "EMG 7", "EMG 8"]
rest_uv = 3.0
[profile]
kind = "none"
events_per_min = 12.0
mix = { twitch = 0.4, phasic = 0.6 }
peak_uv = [60.0, 400.0]
start_s = 1.0
"""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def decode_baseline(scenario_path: Path, seconds: float = 10.0) -> tuple[float, float]:
    """CPU seconds per device-second to only decode one device's byte stream, and its bytes/s."""
    from firmware_sim.device import SignalSource, SimDevice
    from firmware_sim.scenario import load_scenario
    from firmware_sim.signals import synthesize
    from ingest.wire.protocol import StreamDecoder

    rec = synthesize(load_scenario(scenario_path))
    dev = SimDevice(SignalSource.from_recording(rec, loop=True), autostart=True)
    chunks = [b"".join(dev.frames_until(k * 0.005)) for k in range(1, int(seconds / 0.005) + 1)]
    dec = StreamDecoder()
    t = time.process_time()
    for c in chunks:
        dec.feed(c)
    return (time.process_time() - t) / seconds, sum(map(len, chunks)) / seconds


async def statuses(port: int, n: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-status") as client:
        await client.subscribe("neurospasm/v1/+/+/+/status", qos=1)
        try:
            async with asyncio.timeout(5):
                async for msg in client.messages:
                    p = json.loads(bytes(msg.payload))  # type: ignore[arg-type]
                    out[p["device"]] = p
                    if len(out) >= n:
                        break
        except TimeoutError:
            pass
    return out


def run(n: int, seconds: float, tmp: Path, broker: Mosquitto, scenario: Path) -> dict[str, float]:
    paths_file = tmp / f"paths-{n}"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_sim.cli",
            "--serial",
            "--devices",
            str(n),
            "--scenario",
            str(scenario),
            "--loop",
            "--no-faults",
            "--path-file",
            str(paths_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"sim-{n}.log", "wb"),
    )
    t_sim = time.monotonic()
    gw = None
    try:
        wait_until(lambda: paths_file.exists() and len(paths_file.read_text().split()) == n, 60, "sim paths")
        paths = paths_file.read_text().split()
        cfg = tmp / f"gw-{n}.toml"
        devices = "".join(f'[[devices]]\nid = "d{i:03d}"\nport = "{p}"\n\n' for i, p in enumerate(paths))
        cfg.write_text(
            f'[gateway]\nsite = "bench"\npatient = "p"\nstate_dir = "{tmp / f"state-{n}"}"\n\n{devices}'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nlive = false\n\n[local]\nenabled = true\n'
        )
        gw = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / f"gw-{n}.log", "wb"),
        )
        time.sleep(8)  # connect, INFO, first clock windows
        c0, s0, t0 = cpu_seconds(gw.pid), cpu_seconds(sim.pid), time.monotonic()
        time.sleep(seconds)
        c1, s1, t1 = cpu_seconds(gw.pid), cpu_seconds(sim.pid), time.monotonic()
        time.sleep(3)  # let a status round go out (every 10 s and on changes)
        st = asyncio.run(statuses(broker.port, n))
    finally:
        if gw is not None:
            gw.terminate()
            gw.wait(20)
        sim.terminate()
        sim.wait(20)
    wall = t1 - t0
    # The simulator's own account (printed on exit): bytes sent, and bytes it could not write
    # because the pty was full, i.e. the gateway did not read fast enough.
    sim_log = (tmp / f"sim-{n}.log").read_text()
    sent = sum(int(m) for m in re.findall(r"\((\d+) bytes\)", sim_log))
    sim_dropped = sum(int(m) for m in re.findall(r"(\d+) bytes dropped", sim_log))
    sim_wall = time.monotonic() - t_sim
    online = [s for s in st.values() if s.get("state") == "online"]
    lost = sum(1 for s in st.values() if (s.get("loss_pct") or 0) > 0)
    bad = sum((s.get("link") or {}).get("bad_frames", 0) for s in st.values())
    dropped = sum((s.get("link") or {}).get("dropped_chunks", 0) for s in st.values())
    return {
        "n": n,
        "gw_cpu": (c1 - c0) / wall,
        "sim_cpu": (s1 - s0) / wall,
        "online": len(online),
        "lossy": lost,
        "bad": bad,
        "dropped": dropped,
        "sent_bytes_s": sent / sim_wall,
        "sim_dropped": sim_dropped,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--seconds", type=float, default=25.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        scenario = tmp / "bench.toml"
        scenario.write_text(SCENARIO)
        base, bytes_s = decode_baseline(scenario)
        print(f"baseline: decoding one device's stream costs {base * 100:.2f} % of a core")
        print(
            " devices | gateway CPU | per device | x decode | sim CPU | sim rate | online | lossy | bad | "
            "dropped (gw/sim)"
        )
        with Mosquitto(tmp / "mq") as broker:
            for n in args.devices:
                r = run(n, args.seconds, tmp, broker, scenario)
                per = r["gw_cpu"] / n
                ok = r["online"] == n and not (r["lossy"] or r["bad"] or r["dropped"] or r["sim_dropped"])
                print(
                    f" {n:7d} | {r['gw_cpu'] * 100:9.0f} % | {per * 100:8.2f} % | {per / base:8.1f} | "
                    f"{r['sim_cpu'] * 100:5.0f} % | {r['sent_bytes_s'] / (n * bytes_s) * 100:6.0f} % | "
                    f"{r['online']:6d} | {r['lossy']:5d} | {r['bad']:3d} | "
                    f"{r['dropped']:d}/{r['sim_dropped']:d}  {'keeps up' if ok else 'FALLS BEHIND'}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
