"""Helpers for tests that run the gateway and the simulator as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from support.servers import wait_until

SCENARIO = "e2e_short"


def shared_data(*parts: str) -> Path:
    """A file of the team's shared data: ``shared/`` lies beside the repository (as CI lays it out),
    or where NEUROSPASM_SHARED points. Missing data is an error, never a silent skip."""
    root = Path(__file__).resolve().parents[2]
    candidates = [Path(os.environ["NEUROSPASM_SHARED"])] if os.environ.get("NEUROSPASM_SHARED") else []
    candidates += [root.parent / "shared", Path("/work/shared")]
    for base in candidates:
        path = base.joinpath("data", *parts)
        if path.exists():
            return path
    raise FileNotFoundError(
        f"shared data {'/'.join(parts)} not found beside the repository ({root.parent / 'shared'})"
    )


def iso_ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Proc:
    """A child process of ours whose stderr goes to a file (shown when a test fails)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.fh = open(log, "wb")
        self.p = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self.fh, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.p.stdout:
            self.p.stdout.close()
        self.fh.close()
        return int(self.p.returncode)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_sim(tmp: Path, scenario: str = SCENARIO, extra: list[str] | None = None) -> tuple[Proc, str]:
    path_file = tmp / "sim.path"
    sim = Proc(
        [
            sys.executable,
            "-m",
            "ingest",
            "sim",
            "--serial",
            "--scenario",
            scenario,
            "--path-file",
            str(path_file),
            *(extra or []),
        ],
        tmp / "sim.log",
    )
    # the simulator writes the file by rename; a non-empty check also covers an older writer
    wait_until(lambda: path_file.exists() and path_file.read_text().strip() != "", 20, "the pty path")
    return sim, path_file.read_text().strip()


def write_config(
    tmp: Path,
    port_path: str,
    mqtt_port: int,
    influx: dict[str, Any] | None = None,
    *,
    local: bool = False,
    stale_after_s: float = 3.0,
    mqtt_extra: dict[str, Any] | None = None,
    spool: dict[str, Any] | None = None,
) -> Path:
    """A gateway TOML for one serial device, MQTT on loopback, optional InfluxDB and local store."""

    def table(name: str, values: dict[str, Any]) -> list[str]:
        return [f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items()), ""]

    lines = [
        *table(
            "gateway",
            {
                "site": "e2e",
                "patient": "p-0001",
                "state_dir": str(tmp / "state"),
                "stale_after_s": stale_after_s,
            },
        ),
        "[[devices]]",
        'id = "dev-a"',
        'transport = "serial"',
        f"port = {json.dumps(port_path)}",
        "",
        *table("mqtt", {"host": "127.0.0.1", "port": mqtt_port, **(mqtt_extra or {})}),
        *table("influx", influx or {"enabled": False}),
        *table("local", {"enabled": local}),
        *table("spool", spool or {}),
    ]
    cfg = tmp / "gateway.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def gateway(tmp: Path, cfg: Path, name: str = "gw") -> Proc:
    """``neurospasm run --config cfg`` as its own process (as a service would run it)."""
    return Proc([sys.executable, "-m", "ingest", "run", "--config", str(cfg)], tmp / f"{name}.log")


Message = tuple[float, str, bytes, bool]  # (monotonic arrival, topic, payload, retained)


class Subscriber:
    """The one independent MQTT subscriber of the tests, as a clinic's consumer would be.

    Records every message with its arrival time, raw. ``persistent`` (the default): a persistent
    session (clean_session=False, QoS 1), so the broker queues what is published while it
    reconnects, and it reconnects until stopped (it survives broker outages). Otherwise a clean
    session that ends at the first connection loss.
    """

    def __init__(
        self,
        port: int,
        client_id: str = "clinic-observer",
        topic: str | tuple[str, ...] = "neurospasm/v1/#",
        *,
        persistent: bool = True,
    ) -> None:
        self.port = port
        self.client_id = client_id
        self.topics = (topic,) if isinstance(topic, str) else topic
        self.persistent = persistent
        self.messages: list[Message] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    clean_session=not self.persistent,
                    keepalive=5,
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    async for msg in client.messages:
                        payload = msg.payload if isinstance(msg.payload, (bytes, bytearray)) else b""
                        self.messages.append(
                            (time.monotonic(), str(msg.topic), bytes(payload), bool(msg.retain))
                        )
            except aiomqtt.MqttError:
                self.connected.clear()
                if not self.persistent:
                    raise
                await asyncio.sleep(0.3)

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def decoded(self) -> list[tuple[str, dict[str, Any], bool]]:
        """(topic, JSON payload, retained) of every non-empty message."""
        return [(t, json.loads(p), r) for _, t, p, r in self.messages if p]

    def ids(self, kind: str) -> list[str]:
        return [p["id"] for t, p, _ in self.decoded() if t.endswith("/" + kind)]

    def of(self, leaf: str, device: str) -> list[tuple[float, str, bytes]]:
        """(arrival, topic, payload) of one device's messages on one topic leaf."""
        return [
            (a, t, p) for a, t, p, _ in self.messages if t.endswith("/" + leaf) and t.split("/")[-2] == device
        ]

    async def wait_events(self, count: int, within_s: float) -> bool:
        return await eventually(
            lambda: sum(t.endswith("/events") for _, t, _, _ in self.messages) >= count, within_s, 0.05
        )


async def collect(
    port: int, seconds: float, until: int | None = None
) -> list[tuple[str, dict[str, Any], bool]]:
    """Everything on ``neurospasm/v1/#`` for ``seconds`` (or until ``until`` events arrived)."""
    started = time.monotonic()
    async with Subscriber(port, "e2e-observer", persistent=False) as sub:
        if until is None:
            await asyncio.sleep(seconds)
        else:
            await sub.wait_events(until, seconds)
        assert time.monotonic() <= started + seconds + 1
        return sub.decoded()


def local_lines(state_dir: Path, measurement: str) -> list[str]:
    """Lines of one measurement (all lines for "") in the gateway's local line-protocol store."""
    out: list[str] = []
    for path in sorted((state_dir / "series").glob("*.lp")):
        for line in path.read_text().splitlines():
            if not measurement or line.startswith((measurement + ",", measurement + " ")):
                out.append(line)
    return out


def local_event_ids(state_dir: Path) -> list[str]:
    import re

    return [
        m.group(1)
        for line in local_lines(state_dir, "spasm_event")
        if (m := re.search(r'id="([^"]+)"', line))
    ]


async def eventually(predicate: Any, within_s: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` (state kept by another process: files, a subscriber) until true or timeout."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True
