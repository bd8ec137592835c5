"""Delivery benchmarks against the real servers (issue 6). Not a test: run it on its own.

    python bench/bench_delivery.py [--seconds 60] [--lines 1000000]

1. Sustained write rate into a real InfluxDB 1.x on loopback through the whole delivery path
   (spool -> Delivery -> InfluxV1Sink, gzip), beside a baseline measured in the same run: the same
   request bodies POSTed straight at /write with aiohttp, no spool. Reported as lines/s and ratio.
2. End-to-end onset latency: a simulated wearable on a pty (8 EMG channels at 2 kHz), the real
   gateway in this process, a real Mosquitto, and an independent subscriber. Latency is the
   subscriber's receive time minus the true onset time of the injected spasm (the simulator's
   ground truth on the device clock mapped to wall time). Reported as p50 / p95 / p99.

Needs the Debian packages mosquitto and influxdb (bash scripts/test installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import aiomqtt
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.servers import InfluxDB1, Mosquitto  # noqa: E402

from firmware_sim.device import SignalSource, SimDevice  # noqa: E402
from firmware_sim.pty_server import PtyServer  # noqa: E402
from firmware_sim.scenario import parse_scenario  # noqa: E402
from firmware_sim.signals import synthesize  # noqa: E402
from ingest.config import InfluxSection, parse_config  # noqa: E402
from ingest.outputs import lineproto  # noqa: E402
from ingest.outputs.delivery import Delivery  # noqa: E402
from ingest.outputs.sinks.influx import InfluxV1Sink  # noqa: E402
from ingest.outputs.spool import Priority, Spool  # noqa: E402
from ingest.stream.runner import Gateway  # noqa: E402


def bodies(total_lines: int, per_body: int = 5000) -> list[bytes]:
    out = []
    t0 = 1_795_600_000_000_000_000
    for b in range(0, total_lines, per_body):
        n = min(per_body, total_lines - b)
        t = t0 + (np.arange(b, b + n, dtype=np.int64) * 20_000_000)
        values = np.random.default_rng(b).gamma(2.0, 3.0, n)
        out.append(
            lineproto.encode_columns(
                "emg_envelope",
                {"device": f"dev-{b % 8}", "channel": "EMG L quad", "patient": "p"},
                {"uv": values},
                t,
                decimals=2,
            )
        )
    return out


async def baseline_write(url: str, db: str, data: list[bytes]) -> float:
    async with aiohttp.ClientSession() as session:
        t = time.perf_counter()
        for body in data:
            async with session.post(
                f"{url}/write",
                params={"db": db, "precision": "ns"},
                data=gzip.compress(body, 1),
                headers={"Content-Encoding": "gzip"},
            ) as resp:
                assert resp.status == 204, await resp.text()
        return time.perf_counter() - t


async def pipeline_write(url: str, db: str, data: list[bytes], spool_dir: Path) -> float:
    cfg = InfluxSection(enabled=True, api="v1", url=url, database=db)
    with Spool(spool_dir, quota_bytes=4 << 30) as spool:
        t = time.perf_counter()
        for body in data:
            spool.append("influx", Priority.BULK, body)
        d = Delivery(spool, "influx", lambda: InfluxV1Sink(cfg), max_records=10_000, max_bytes=5000 * 90)
        task = asyncio.create_task(d.run())
        d.notify()
        while spool.stats().total_pending_records:  # noqa: ASYNC110 - polling the spool is the measurement
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    return elapsed


def write_rate(total_lines: int) -> None:
    data = bodies(total_lines)
    with tempfile.TemporaryDirectory() as tmp:
        with InfluxDB1(Path(tmp) / "a", database="base") as influx:
            base = asyncio.run(baseline_write(influx.url, "base", data))
        with InfluxDB1(Path(tmp) / "b", database="pipe") as influx:
            pipe = asyncio.run(pipeline_write(influx.url, "pipe", data, Path(tmp) / "spool"))
            stored = influx.count("emg_envelope", "uv", db="pipe")
    print(f"InfluxDB 1.6 write, {total_lines:,} lines in 5,000-line bodies, gzip:")
    print(f"  baseline (aiohttp POST, no spool):  {total_lines / base:12,.0f} lines/s")
    print(
        f"  neurospasm spool -> delivery -> sink: {total_lines / pipe:10,.0f} lines/s "
        f"(its time is {pipe / base:.2f}x the baseline's); {stored:,} points stored"
    )


def latency_scenario(seconds: float) -> dict[str, object]:
    channels = [f"EMG ch{i}" for i in range(8)]
    events = []
    t = 2.0
    rng = np.random.default_rng(5)
    while t < seconds - 3:
        kind = "twitch" if rng.random() < 0.5 else "phasic"
        events.append(
            {
                "type": kind,
                "channel": channels[int(rng.integers(0, 8))],
                "onset_s": round(t, 3),
                "duration_s": 0.2 if kind == "twitch" else 1.0,
                "peak_uv": float(rng.uniform(80, 400)),
            }
        )
        t += 1.6 if kind == "twitch" else 2.4
    return {
        "name": "bench_latency",
        "seed": 3,
        "duration_s": seconds,
        "emg_rate_hz": 2000,
        "acc_rate_hz": 100,
        "channels": channels,
        "rest_uv": 3.0,
        "crosstalk": 0.0,
        "events": events,
    }


async def latency(seconds: float) -> None:
    scenario = parse_scenario(latency_scenario(seconds), "<bench>")
    rec = synthesize(scenario)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mq")
        broker.start()
        try:
            device = SimDevice(SignalSource.from_recording(rec), device_id="bench", seed=1)
            arrivals: list[tuple[float, dict[str, object]]] = []
            async with PtyServer(device) as pty:
                wall_minus_mono = time.time() - time.monotonic()
                cfg = parse_config(
                    {
                        "gateway": {"site": "bench", "patient": "p", "state_dir": str(Path(tmp) / "state")},
                        "devices": [{"id": "d1", "port": pty.path}],
                        "mqtt": {"host": "127.0.0.1", "port": broker.port, "live": False},
                    }
                )

                async def subscribe(ready: asyncio.Event) -> None:
                    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-sub") as c:
                        await c.subscribe("neurospasm/v1/+/+/+/onsets", qos=1)
                        ready.set()
                        async for msg in c.messages:
                            arrivals.append((time.time(), json.loads(bytes(msg.payload))))  # type: ignore[arg-type]

                ready = asyncio.Event()
                sub = asyncio.create_task(subscribe(ready))
                await ready.wait()
                async with Gateway(cfg) as gw:
                    gw.start()
                    await asyncio.sleep(seconds + 1.5)
                sub.cancel()
                # Device sample k was converted at device time _t_start + k / rate (drift 0).
                t_dev0 = wall_minus_mono + pty._t0 + device._t_start
        finally:
            broker.stop()
    truth = [(t_dev0 + float(lab["onset_s"]), lab["channel"]) for lab in rec.labels]
    lat = []
    for t_rx, p in arrivals:
        cands = [t for t, ch in truth if ch == p["channel"] and abs(t_rx - t) < 2.0 and t <= t_rx + 0.05]
        if cands:
            lat.append(t_rx - max(cands))
    lat_ms = np.array(lat) * 1e3
    print(
        "Onset latency, true onset sample -> onset message at an independent subscriber "
        f"({len(lat)} of {len(truth)} injected spasms matched, {seconds:.0f} s, 8 ch at 2 kHz):"
    )
    if len(lat_ms):
        p50, p95, p99 = np.percentile(lat_ms, [50, 95, 99])
        print(f"  p50 {p50:.0f} ms   p95 {p95:.0f} ms   p99 {p99:.0f} ms   max {lat_ms.max():.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--only", choices=["write", "latency"])
    args = ap.parse_args()
    if args.only in (None, "write"):
        write_rate(args.lines)
    if args.only in (None, "latency"):
        asyncio.run(latency(args.seconds))


if __name__ == "__main__":
    main()
