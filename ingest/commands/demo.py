"""``neurospasm demo``: the whole pipeline in one process, with nothing installed but Python.

A simulated wearable on a pseudo-terminal (opened with pyserial, exactly as hardware) or, for the
BLE kinds (``--device myo`` / ``polar-h10``), on the in-process virtual BLE backend behind the real
bleak front-end (``firmware_sim.ble``: a bleak custom backend only exists inside one process, which
is why ``neurospasm sim`` cannot serve those kinds to another process and the demo can), an
embedded MQTT broker (amqtt, MQTT 3.1.1), the real gateway with the embedded SQLite store in
place of InfluxDB, an independent MQTT subscriber whose counts prove what reached the broker, and
the clinician's web dashboard on loopback (its URL is printed). The terminal shows events as they
are detected, device status and throughput; Ctrl-C stops it cleanly and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt

from firmware_sim.ble import SimBleakClient, SimBleakScanner, VirtualBle, VirtualPeripheral
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.personalities import make_device, personality_class, personality_kinds
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import resolve_scenario
from firmware_sim.signals import Recording, synthesize
from ingest.config import parse_config
from ingest.sources.ble import BleTransport
from ingest.stream.runner import Gateway, default_transport
from ingest.stream.session import Output

DEVICE = "wearable-1"
#: The simulated BLE wearable's address on the virtual radio (what the gateway's config names).
BLE_ADDRESS = "C0:FF:EE:00:00:D0"
#: The default scenario per kind: the H10 has no EMG, so the EMG demo would show it nothing;
#: ``tremor_clean`` starts with accelerometer tremor at 2 s, what an acc-only device can detect.
DEFAULT_SCENARIO = {"polar-h10": "tremor_clean"}


def check_kind(kind: str) -> str | None:
    """None if the demo can simulate ``kind``, else the one-line reason (for exit code 2)."""
    if kind in personality_kinds():
        return None
    return f"--device: unknown kind {kind!r} (known: {', '.join(personality_kinds())})"


def link_of(kind: str) -> str:
    """ "serial" (a pty) or "ble" (the virtual BLE backend): how a device of ``kind`` is reached."""
    return "serial" if kind == "neurospasm" else personality_class(kind).link


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _SnapshotDict(dict[str, Any]):
    """A dict whose iteration walks a copy, so an ``await`` inside the loop may change it.

    amqtt 0.12 iterates its subscription table with awaits inside the loop (on every client
    connect, for retained messages, and in its broadcast loop); a subscribe from another client
    meanwhile raised ``RuntimeError: dictionary changed size during iteration`` and dropped the
    connecting client (seen in the demo as a dashboard or subscriber reconnect). Iterating a
    snapshot is what that code means: a filter added mid-loop is served by its own subscribe.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return list(super().items())

    def values(self) -> list[Any]:  # type: ignore[override]
        return list(super().values())


async def start_broker(port: int) -> Any:
    """An embedded amqtt broker on loopback: the demo's stand-in for Mosquitto.

    Anonymous, because it listens on loopback only and lives inside the demo process; the
    gateway's own deployment uses Mosquitto with TLS, passwords and ACLs (deploy/)."""
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    broker._subscriptions = _SnapshotDict(broker._subscriptions)
    await broker.start()
    return broker


class DemoView:
    """What the terminal shows: recent events, device state, throughput, MQTT confirmations."""

    def __init__(self, gw: Gateway, plain: bool) -> None:
        self.gw = gw
        self.plain = plain
        self.events: deque[dict[str, Any]] = deque(maxlen=12)
        self.detected: Counter[str] = Counter()
        self.mqtt_seen: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.started = time.monotonic()
        self._last_samples = 0
        self._last_t = time.monotonic()
        self.samples_per_s = 0.0

    def observe(self, device: str, out: Output) -> None:
        if out.kind in ("event", "onset", "gap") and out.payload is not None:
            self.detected[out.kind] += 1
            if out.kind == "event":
                self.by_type[out.payload["type"]] += 1
            if out.kind != "onset":
                self.events.appendleft(out.payload)
            if self.plain:
                p = out.payload
                if out.kind == "event":
                    print(
                        f"{p['onset']}  {p['type']:<7} {p['channel']:<14} {p['duration_s']:6.2f} s  "
                        f"peak {p['peak_uv']:7.1f} uV",
                        flush=True,
                    )
                elif out.kind == "gap":
                    print(f"{p['start']}  GAP     {p['cause']} {p['duration_s']} s", flush=True)

    def tick(self) -> None:
        runner = self.gw.devices[DEVICE]
        dom = runner.session.emg or runner.session.acc  # an acc-only device (H10): its samples
        received = dom.received if dom else 0
        now = time.monotonic()
        if now - self._last_t >= 1.0:
            self.samples_per_s = (received - self._last_samples) / (now - self._last_t)
            self._last_samples, self._last_t = received, now

    def render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        runner = self.gw.devices[DEVICE]
        h = runner.session.health()
        info = runner.session.info
        nch = info.n_channels if info else 0
        what = f"{nch} ch" if nch else "accelerometer"
        if not nch:
            nch = 3 if runner.session.acc else 0
        head = Table.grid(padding=(0, 2))
        head.add_row(
            f"[b]{DEVICE}[/b] {runner.state}",
            "[green]monitoring[/green]" if runner.monitoring else "[red]NOT monitoring[/red]",
            f"{self.samples_per_s * nch:,.0f} samples/s ({what})",
            f"loss {h['loss_pct']:.2f} %",
            f"battery {h['battery_pct']} %",
            f"up {time.monotonic() - self.started:.0f} s",
        )
        counts = Table.grid(padding=(0, 2))
        counts.add_row(
            f"detected: {self.detected['event']} events, {self.detected['onset']} onsets, "
            f"{self.detected['gap']} gaps",
            f"confirmed by an MQTT subscriber: {self.mqtt_seen['events']} events, "
            f"{self.mqtt_seen['onsets']} onsets, {self.mqtt_seen['status']} status, "
            f"{self.mqtt_seen['live']} live",
        )
        table = Table(title="latest events", expand=True)
        for col in ("onset (UTC)", "type", "channel", "duration", "peak uV", "x baseline"):
            table.add_column(col)
        for e in self.events:
            if e.get("schema", "").startswith("neurospasm.gap"):
                table.add_row(
                    e["start"][11:23], "[yellow]gap[/yellow]", e["cause"], f"{e['duration_s']} s", "", ""
                )
            else:
                table.add_row(
                    e["onset"][11:23],
                    e["type"],
                    e["channel"],
                    f"{e['duration_s']:.2f} s",
                    f"{e['peak_uv']:.0f}",
                    f"{e['relative_amplitude']:.0f}",
                )
        return Panel(Group(head, counts, table), title="neurospasm demo (Ctrl-C to stop)")

    def summary(self) -> str:
        runner = self.gw.devices[DEVICE]
        s = runner.session.stats
        types = ", ".join(f"{k} {v}" for k, v in sorted(self.by_type.items())) or "none"
        return (
            f"demo summary: {time.monotonic() - self.started:.0f} s, {s.frames} frames, "
            f"{s.events} events ({types}), "
            f"{s.onsets} onsets, {s.gaps} gaps; "
            f"MQTT subscriber confirmed {self.mqtt_seen['events']} events and "
            f"{self.mqtt_seen['onsets']} onsets; loss {runner.session.loss_pct():.2f} %"
        )


async def _subscriber(port: int, view: DemoView, ready: asyncio.Event) -> None:
    """An independent MQTT client, as a clinician's dashboard would be."""
    while True:
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier="demo-dashboard") as client:
                await client.subscribe("neurospasm/v1/#", qos=1)
                ready.set()
                async for msg in client.messages:
                    kind = str(msg.topic).rsplit("/", 1)[-1]
                    view.mqtt_seen[kind] += 1
                    if kind == "events" and view.plain:
                        p = json.loads(bytes(msg.payload))
                        print(f"  mqtt <- event {p['id'][:8]} ({p['type']})", flush=True)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)


def _start_dashboard(
    args: argparse.Namespace, cfg: Any, state_dir: Path, mqtt_port: int, stop: asyncio.Event
) -> asyncio.Task[int]:
    """The clinician's dashboard on loopback, reading the demo's broker and its SQLite store."""
    from dashboard.app.config import DashboardConfig
    from dashboard.cli import serve

    port = args.dashboard_port
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            port = free_port()  # 8080 taken: any free port (the URL is printed)
    dcfg = DashboardConfig.model_validate(
        {
            "bind": f"127.0.0.1:{port}",
            "state_dir": str(state_dir / "dashboard"),
            "store": f"sqlite:{cfg.local_dir / 'history.sqlite'}",
            "default_site": "demo",
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        }
    )
    return asyncio.create_task(serve(dcfg, stop))


def _ble_transport(dev: Any, queue_size: int) -> BleTransport:
    """The kind's real BLE transport (its GATT profile, bleak front-end) on the virtual radio."""
    t = default_transport(dev, queue_size)
    assert isinstance(t, BleTransport)
    t.backend, t.scanner_backend = SimBleakClient, SimBleakScanner
    return t


@contextlib.asynccontextmanager
async def serve_device(device: SimDevice, kind: str, speed: float) -> Any:
    """Serve the simulated device on its kind's link; yields (the ``[[devices]]`` table, where)."""
    if link_of(kind) == "ble":
        async with VirtualBle() as ble:
            p = ble.add(VirtualPeripheral(device, address=BLE_ADDRESS, speed=speed))
            table = {"id": DEVICE, "kind": kind, "transport": "ble", "address": BLE_ADDRESS}
            yield table, f"virtual BLE {p.address} ({p.name or kind})"
    else:
        async with PtyServer(device, speed=speed) as pty:
            yield {"id": DEVICE, "kind": kind, "transport": "serial", "port": pty.path}, pty.path


async def run_demo(args: argparse.Namespace, recording: Recording | None = None) -> int:
    """The demo. ``recording``: serve it (``--recording``, read by the caller) instead of a scenario."""
    kind = getattr(args, "device", "neurospasm") or "neurospasm"
    speed = float(getattr(args, "speed", 1.0) or 1.0)
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="neurospasm-demo-"))
    plain = args.plain or not sys.stdout.isatty()
    port = free_port()
    if recording is None:
        scenario = resolve_scenario(args.scenario or DEFAULT_SCENARIO.get(kind, "demo"))
        recording = synthesize(scenario)
        seed = scenario.seed
    else:
        seed = 0
    device = make_device(
        kind, SignalSource.from_recording(recording, loop=True), device_id="sim-demo", seed=seed
    )
    p = getattr(device, "personality", None)
    rates = (
        f"{p.n_channels} EMG ch at {p.emg_rate_hz:g} Hz" if p is not None and p.n_channels
        else "accelerometer only" if p is not None
        else f"{len(recording.channel_labels)} EMG ch at {recording.emg_rate_hz} Hz"
    )  # fmt: skip
    broker = await start_broker(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    try:
        async with serve_device(device, kind, speed) as (table, where):
            cfg = parse_config(
                {
                    "gateway": {"site": "demo", "patient": "demo-patient", "state_dir": str(state_dir)},
                    "devices": [table],
                    "mqtt": {"host": "127.0.0.1", "port": port},
                    "local": {"enabled": True, "format": "sqlite"},  # queryable by the dashboard
                    "spool": {"quota_mb": 256},
                },
                "<demo defaults>",
            )
            print(
                f"neurospasm demo: simulated {kind} wearable on {where} ({recording.scenario_name}: "
                f"{rates}{f', {speed:g}x real time' if speed != 1 else ''}), MQTT broker on "
                f"127.0.0.1:{port}, series in {cfg.local_dir}",
                flush=True,
            )
            dash_stop = asyncio.Event()
            dash_task = None if args.no_dashboard else _start_dashboard(args, cfg, state_dir, port, dash_stop)
            qsize = cfg.gateway.queue_size
            factory = (lambda dev: _ble_transport(dev, qsize)) if table["transport"] == "ble" else None
            async with Gateway(cfg, transport_factory=factory) as gw:
                view = DemoView(gw, plain)
                gw.router.observers.append(view.observe)  # type: ignore[union-attr]
                ready = asyncio.Event()
                sub = asyncio.create_task(_subscriber(port, view, ready))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), 5)
                gw.start()
                if plain:
                    while not stop.is_set():
                        view.tick()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.25)
                else:
                    from rich.live import Live

                    with Live(view.render(), refresh_per_second=4, screen=False) as live:
                        while not stop.is_set():
                            view.tick()
                            live.update(view.render())
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), 0.25)
                await gw.drain(timeout_s=3.0)
                await asyncio.sleep(0.5)  # let the subscriber see the last messages
                sub.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sub
                print(view.summary(), flush=True)
                print(f"series stored in {cfg.local_dir / 'history.sqlite'}", flush=True)
            if dash_task is not None:
                dash_stop.set()
                await dash_task
    finally:
        await broker.shutdown()
    return 0
