"""Does the live view keep up with 16 devices? (issue 10). Not a test: run it on its own.

    python bench/bench_dashboard_live.py [--devices 16] [--seconds 20] [--rate 10] [--browsers 2]

A real Mosquitto; ``--devices`` publishers, one MQTT connection each as gateways have, sending the
live envelope (4 channels) at ``--rate`` Hz, a status every 10 s and a spasm event every ~3 s; the
dashboard (the real app under uvicorn, in this process) subscribed to them; ``--browsers``
Server-Sent-Events clients reading ``/api/stream`` as the live page does. In the same run, the
baseline: a bare aiomqtt subscriber to the same topics. Reported: messages delivered per second
and the latency from publish to receipt (p50 / p99 / max) for the baseline and for the dashboard's
browsers, and their ratio. "Keeps up" means every live message of every device reaches every
browser, with a latency of the order of the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import Mosquitto, free_port  # noqa: E402

from dashboard.app.config import DashboardConfig  # noqa: E402
from dashboard.cli import serve  # noqa: E402

CHANNELS = ["EMG L quad", "EMG R quad", "EMG L hamstring", "EMG R hamstring"]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def publisher(port: int, dev: int, seconds: float, rate: float, stop_at: float) -> int:
    device = f"dev-{dev:02d}"
    base = f"neurospasm/v1/bench/p-{dev:02d}/{device}"
    sent = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-{device}") as c:
        status = {"schema": "neurospasm.status/1", "device": device, "state": "online", "monitoring": True,
                  "contact": dict.fromkeys(CHANNELS, True), "battery_pct": 90}  # fmt: skip
        next_status = next_event = time.time()
        i = 0
        while time.time() < stop_at:
            now = time.time()
            if now >= next_status:
                await c.publish(
                    f"{base}/status", json.dumps({**status, "updated": iso(now)}), qos=1, retain=True
                )
                next_status += 10
            if now >= next_event:
                ev = {"schema": "neurospasm.event/1", "id": f"{device}-{i}", "device": device,
                      "type": "phasic", "channel": CHANNELS[i % 4], "onset": iso(now - 1), "offset": iso(now),
                      "duration_s": 1.0,
                      "peak_uv": 200.0, "mean_uv": 80.0, "baseline_uv": 3.0, "relative_amplitude": 66.0,
                      "frequency_hz": None, "confidence": 1.0}  # fmt: skip
                await c.publish(f"{base}/events", json.dumps(ev), qos=1)
                next_event += 3
            live = {"schema": "neurospasm.live/1", "device": device, "t": iso(now),
                    "envelope_uv": {ch: 3.0 + (i % 50) for ch in CHANNELS}}  # fmt: skip
            await c.publish(f"{base}/live", json.dumps(live), qos=0)
            sent += 1
            i += 1
            await asyncio.sleep(max(0.0, 1 / rate - (time.time() - now)))
    return sent


async def baseline(port: int, lat: list[float], ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-baseline") as c:
        await c.subscribe("neurospasm/v1/+/+/+/live", qos=0)
        ready.set()
        async for msg in c.messages:
            t = json.loads(bytes(msg.payload))["t"]  # type: ignore[arg-type]
            lat.append(time.time() - datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())


async def browser(port: int, lat: list[float], ready: asyncio.Event) -> None:
    """An SSE client as the live page is: reads /api/stream, times each live message."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    ready.set()
    event = ""
    try:
        while line := await reader.readline():
            text = line.decode().rstrip("\r\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: ") and event == "live":
                t_ms = json.loads(text[6:])["data"]["t_ms"]
                lat.append(time.time() - t_ms / 1000)
    finally:
        writer.close()


def summary(name: str, lat: list[float], seconds: float) -> str:
    if not lat:
        return f"{name:<22} nothing received"
    q = statistics.quantiles(lat, n=100)
    ms = [q[49] * 1000, q[98] * 1000, max(lat) * 1000]
    return (f"{name:<22} {len(lat):>7} msgs  {len(lat) / seconds:>7.0f}/s  "
            f"latency p50 {ms[0]:6.1f} ms  p99 {ms[1]:6.1f} ms  max {ms[2]:6.1f} ms")  # fmt: skip


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "mq") as mq:
        web_port = free_port()
        cfg = DashboardConfig.model_validate(
            {"bind": f"127.0.0.1:{web_port}", "state_dir": str(Path(tmp) / "dash"),
             "mqtt": {"host": "127.0.0.1", "port": mq.port}}
        )  # fmt: skip
        stop = asyncio.Event()
        server = asyncio.create_task(serve(cfg, stop))
        await asyncio.sleep(1.5)  # uvicorn up, the hub subscribed
        base_lat: list[float] = []
        ready = asyncio.Event()
        tasks = [asyncio.create_task(baseline(mq.port, base_lat, ready))]
        await ready.wait()
        browsers: list[list[float]] = []
        for _ in range(args.browsers):
            lat: list[float] = []
            browsers.append(lat)
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(browser(web_port, lat, ready)))
            await ready.wait()
        await asyncio.sleep(0.5)
        t0 = time.time()
        stop_at = t0 + args.seconds
        cpu0 = time.process_time()
        sent = sum(
            await asyncio.gather(
                *(publisher(mq.port, d, args.seconds, args.rate, stop_at) for d in range(args.devices))
            )
        )
        await asyncio.sleep(1.0)  # the last messages arrive
        cpu = time.process_time() - cpu0
        elapsed = time.time() - t0
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await t
        stop.set()
        await server
    print(f"{args.devices} devices x {args.rate:g} Hz live for {args.seconds:g} s: {sent} live messages sent")
    print(summary("baseline (aiomqtt)", base_lat, elapsed))
    for i, lat in enumerate(browsers):
        print(summary(f"dashboard browser {i + 1}", lat, elapsed))
    worst = min(len(b) for b in browsers) if browsers else 0
    p99_b = statistics.quantiles(base_lat, n=100)[98] if len(base_lat) > 2 else float("nan")
    p99_d = (
        max(statistics.quantiles(b, n=100)[98] for b in browsers if len(b) > 2) if browsers else float("nan")
    )
    print(f"delivered to every browser: {worst}/{len(base_lat)} of the baseline's messages "
          f"({100 * worst / max(1, len(base_lat)):.1f} %); p99 latency ratio dashboard/baseline "
          f"{p99_d / p99_b:.2f}; this process's CPU {100 * cpu / elapsed:.0f} % of one core "
          f"(publishers, baseline, dashboard and browsers together)")  # fmt: skip
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=10.0, help="live messages per device per second")
    p.add_argument("--browsers", type=int, default=2)
    sys.exit(asyncio.run(main(p.parse_args())))
