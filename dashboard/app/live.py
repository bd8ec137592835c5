"""The live side: one MQTT subscriber, the current state of every device, and a fan-out to browsers.

The gateway publishes under ``{prefix}/{site}/{patient}/{device}/{kind}`` (docs/mqtt.md). This module
keeps, per device, the last retained status, the last few minutes of the live envelope, and the recent
onsets, events and gaps (deduplicated by ``id``: delivery is at least once), and pushes each message to
every connected browser whose user may see that site (Server-Sent Events, see ``server.py``).

"Monitoring" is decided here, once, for every view: a device is monitoring only when its last status
says so, that status (or live data) is recent, and every electrode has contact. Anything else is shown
as "monitoring inactive" with the reason, so that an empty event list never looks like a calm patient.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt

log = logging.getLogger("neurospasm.dashboard")

__all__ = ["DeviceLive", "LiveHub", "monitoring_verdict"]

KINDS = ("status", "onsets", "events", "gaps", "live")


def _parse_time(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class DeviceLive:
    """What the dashboard knows right now about one device (from MQTT only)."""

    site: str
    patient: str
    device: str
    status: dict[str, Any] = field(default_factory=dict)
    status_rx: float | None = None  # wall time (time.time) the last status arrived
    live_rx: float | None = None
    live: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=3000))
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))
    seen_ids: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.site, self.patient, self.device)

    def summary(self, stale_after_s: float, now: float | None = None) -> dict[str, Any]:
        """JSON for the patients page and the live header: state, reason, health."""
        now = time.time() if now is None else now
        active, reason = monitoring_verdict(self, stale_after_s, now)
        s = self.status
        spool = s.get("spool") or {}
        link = s.get("link") or {}
        last_rx = max(filter(None, (self.status_rx, self.live_rx)), default=None)
        return {
            "site": self.site,
            "patient": self.patient,
            "device": self.device,
            "state": s.get("state", "unknown"),
            "monitoring": active,
            "reason": reason,
            "updated": s.get("updated"),
            "last_data_age_s": None if last_rx is None else round(now - last_rx, 1),
            "battery_pct": s.get("battery_pct"),
            "battery_mv": s.get("battery_mv"),
            "contact": s.get("contact") or {},
            "signal_quality": s.get("signal_quality") or {},
            "loss_pct": s.get("loss_pct"),
            "reconnects": link.get("reconnects"),
            "bad_frames": link.get("bad_frames"),
            "spool_bytes": spool.get("bytes"),
            "spool_pending_bytes": spool.get("pending_bytes"),
            "spool_oldest_age_s": spool.get("oldest_age_s"),
            "channels": s.get("channels") or [],
            "firmware": s.get("firmware"),
        }


def monitoring_verdict(dev: DeviceLive, stale_after_s: float, now: float) -> tuple[bool, str]:
    """(monitoring, reason). Reasons are short sentences a clinician can act on."""
    s = dev.status
    if not s:
        return False, "no status received from this device yet"
    state = s.get("state", "unknown")
    if not s.get("monitoring", False):
        return False, {
            "offline": "gateway offline (no connection to the home gateway)",
            "disconnected": "sensor disconnected from the gateway",
            "stale": "no data from the sensor",
            "ended": "recording ended",
            "connecting": "connecting to the sensor",
            "connected": "connected, waiting for valid data",
        }.get(state, f"device state {state}")
    last = max(filter(None, (dev.status_rx, dev.live_rx)), default=None)
    if last is None or now - last > stale_after_s:
        age = "ever" if last is None else f"{now - last:.0f} s"
        return False, f"no data for {age} (stale)"
    off = [ch for ch, ok in (s.get("contact") or {}).items() if ok is False]
    off += [ch for ch, q in (s.get("signal_quality") or {}).items() if q == "lead_off" and ch not in off]
    if off:
        return False, "electrode contact lost (not worn?): " + ", ".join(sorted(off))
    return True, "monitoring"


#: The message that ends a browser's stream (``LiveHub.close_streams``).
CLOSE: dict[str, Any] = {"type": "close"}


class LiveHub:
    """Subscribes to the gateway's topics, keeps device state, fans messages out to browser queues."""

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str = "neurospasm/v1",
        *,
        stale_after_s: float = 25.0,
        username: str | None = None,
        password: str | None = None,
        tls: aiomqtt.TLSParameters | None = None,
        tls_insecure: bool | None = None,
        client_id: str = "neurospasm-dashboard",
    ) -> None:
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.stale_after_s = stale_after_s
        self.username, self.password = username, password
        #: TLS to the broker (the clinic broker's 8883 wants it, with a client certificate).
        self.tls, self.tls_insecure = tls, tls_insecure
        self.client_id = client_id
        self.devices: dict[tuple[str, str, str], DeviceLive] = {}
        self.connected = asyncio.Event()
        self._queues: set[tuple[asyncio.Queue[dict[str, Any]], frozenset[str] | None]] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._verdicts: dict[tuple[str, str, str], bool] = {}
        self.client: aiomqtt.Client | None = None
        self.broker_error: str | None = "not connected yet"
        self.dropped = 0
        #: Called with each new (deduplicated) onset / event / gap item, e.g. by the notice rules.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dashboard-mqtt")
        self._watch = asyncio.create_task(self._watch_staleness(), name="dashboard-stale")

    async def stop(self) -> None:
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    username=self.username,
                    password=self.password,
                    tls_params=self.tls,
                    tls_insecure=self.tls_insecure,
                    keepalive=15,
                ) as client:
                    self.client = client
                    for kind in KINDS:
                        await client.subscribe(f"{self.prefix}/+/+/+/{kind}", qos=1 if kind != "live" else 0)
                    self.connected.set()
                    self.broker_error = None
                    self._push_all({"type": "broker", "data": self.broker_state()})
                    delay = 0.5
                    log.info("dashboard: subscribed to %s/# on %s:%d", self.prefix, self.host, self.port)
                    async for msg in client.messages:
                        self.handle(str(msg.topic), bytes(msg.payload))  # type: ignore[arg-type,unused-ignore]
            except aiomqtt.MqttError as exc:
                self.client = None
                was = self.connected.is_set() or self.broker_error is None
                self.connected.clear()
                self.broker_error = str(exc)
                if was:
                    self._push_all({"type": "broker", "data": self.broker_state()})
                log.warning("dashboard: MQTT %s:%d: %s; retrying in %.1f s", self.host, self.port, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _watch_staleness(self) -> None:
        """Push a device update when its verdict changes without a message (data just stopped)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for dev in list(self.devices.values()):
                active, _ = monitoring_verdict(dev, self.stale_after_s, now)
                if self._verdicts.get(dev.key) != active:
                    self._verdicts[dev.key] = active
                    self._push(dev.site, {"type": "device", "data": dev.summary(self.stale_after_s, now)})

    # ------------------------------------------------------------------ messages

    def handle(self, topic: str, raw: bytes) -> None:
        """One MQTT message. Malformed ones are logged (topic only) and dropped, never fatal."""
        if not topic.startswith(self.prefix + "/"):
            return
        parts = topic[len(self.prefix) + 1 :].split("/")
        if len(parts) != 4 or parts[3] not in KINDS:
            return
        site, patient, device, kind = parts
        try:
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
        except (ValueError, RecursionError) as exc:  # (UTF-8 and JSON errors; nesting too deep)
            log.warning("dashboard: %s: unreadable payload (%s), dropped", topic, exc or type(exc).__name__)
            return
        dev = self.devices.get((site, patient, device))
        if dev is None:
            dev = self.devices[(site, patient, device)] = DeviceLive(site, patient, device)
        now = time.time()
        if kind == "status":
            dev.status = payload
            dev.status_rx = now
            self._verdicts[dev.key] = monitoring_verdict(dev, self.stale_after_s, now)[0]
            self._push(site, {"type": "device", "data": dev.summary(self.stale_after_s, now)})
        elif kind == "live":
            t = _parse_time(payload.get("t"))
            env = payload.get("envelope_uv")
            if t is None or not isinstance(env, dict):
                return
            dev.live_rx = now
            sample = {"t_ms": round(t * 1000), "envelope_uv": env}
            if isinstance(payload.get("acc_g"), dict):
                sample["acc_g"] = payload["acc_g"]
            dev.live.append(sample)
            self._push(site, {"type": "live", "key": [site, patient, device], "data": sample})
        else:
            ident = payload.get("id")
            tag = f"{kind}:{ident}"
            if not isinstance(ident, str) or tag in dev.seen_ids:
                return  # at-least-once delivery: a duplicate
            dev.seen_ids.add(tag)
            item = {"kind": kind[:-1], "site": site, "patient": patient, "device": device, **payload}
            dev.recent.appendleft(item)
            for listener in self.listeners:
                listener(item)
            self._push(site, {"type": kind[:-1], "data": item})

    # ------------------------------------------------------------------ fan-out

    def subscribe(self, sites: frozenset[str] | None) -> asyncio.Queue[dict[str, Any]]:
        """A queue of messages for one browser; ``sites`` None means every site."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=2000)
        self._queues.add((q, sites))
        if self._closing:
            self._end(q)
        return q

    def close_streams(self) -> None:
        """End every browser's stream (each queue gets ``CLOSE``; later ones at once): the server
        is stopping. A live stream never ends by itself, and a server that waits for its
        connections to finish would otherwise wait as long as a browser tab stays open (the
        browser's EventSource reconnects to the next server on its own)."""
        self._closing = True
        for q, _ in self._queues:
            self._end(q)

    @staticmethod
    def _end(q: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            try:
                q.put_nowait(CLOSE)
                return
            except asyncio.QueueFull:
                q.get_nowait()  # a browser that does not read loses a message, not the stop

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues = {(qq, s) for qq, s in self._queues if qq is not q}

    def _push(self, site: str, msg: dict[str, Any]) -> None:
        for q, sites in self._queues:
            if sites is not None and site not in sites:
                continue
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                self.dropped += 1  # a browser that does not read; it reloads its snapshot on reconnect

    def _push_all(self, msg: dict[str, Any]) -> None:
        for q, _ in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(msg)

    def broker_state(self) -> dict[str, Any]:
        """Whether the dashboard hears the gateways at all: without the broker, every device's state
        is unknown, which the pages must say rather than show old or empty data as current."""
        return {
            "connected": self.connected.is_set(),
            "broker": f"{self.host}:{self.port}",
            "error": self.broker_error,
        }

    def broadcast(self, site: str, msg: dict[str, Any]) -> None:
        """Push a dashboard-made message (a notice) to the browsers of ``site``."""
        self._push(site, msg)

    # ------------------------------------------------------------------ queries

    def summaries(self, visible: frozenset[str] | None) -> list[dict[str, Any]]:
        now = time.time()
        return [
            d.summary(self.stale_after_s, now)
            for k, d in sorted(self.devices.items())
            if visible is None or d.site in visible
        ]

    def patient_devices(self, site: str, patient: str) -> list[DeviceLive]:
        return [d for (s, p, _), d in sorted(self.devices.items()) if s == site and p == patient]

    async def publish(self, topic: str, payload: dict[str, Any], retain: bool = False) -> bool:
        """Publish a dashboard message (notices) on the same connection; False when disconnected."""
        client = self.client
        if client is None:
            return False
        try:
            await client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1, retain=retain)
        except aiomqtt.MqttError as exc:
            log.warning("dashboard: publish %s failed: %s", topic, exc)
            return False
        return True


def utc_now() -> datetime:
    return datetime.now(UTC)
