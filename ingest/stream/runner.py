"""The gateway process: device tasks, the router, the spool and one delivery task per sink.

Shape of the running gateway::

    device task (one per device)                     delivery task (one per sink)
      transport -> LinkDecoder   -> DeviceSession      spool.peek -> sink.send -> spool.ack
                                    | emit                ^
                                    v                     |
                                  Router -- append --> Spool (durable, on disk)

Each device has its own task, transport queue, session and MQTT client, so one device failing
(unplugged, out of range, rebooting) never disturbs another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors import DetectorConfig
from ingest.config import DeviceSection, GatewayConfig
from ingest.outputs import encoders, payloads
from ingest.outputs.delivery import Backoff, Delivery
from ingest.outputs.router import Router
from ingest.outputs.sinks.influx import make_influx_sink
from ingest.outputs.sinks.local import LocalLineSink
from ingest.outputs.sinks.mqtt import MqttSink
from ingest.outputs.sinks.sqlite import SQLITE_FILENAME, SqliteSink
from ingest.outputs.spool import Spool
from ingest.sources.base import Transport, TransportClosed, TransportError
from ingest.sources.serial import SerialTransport
from ingest.stream.clock import HostClock
from ingest.stream.control import Clear, CommandError, due_slots, parse_declare, parse_topic
from ingest.stream.frames import FrameBatcher, announce_payload
from ingest.stream.pipeline import DecodeLoop
from ingest.stream.records import StatusRecord
from ingest.stream.session import DeviceSession, Output
from ingest.stream.supervisor import (
    PROGRESS_WINDOW_S,
    LastSampleStore,
    PendingGap,
    Progress,
    reanchor,
    restart_gap,
    supervise,
)
from ingest.stream.watchdog import Notifier
from ingest.wire.kinds import decoder_for

log = logging.getLogger(__name__)

TransportFactory = Callable[[DeviceSection], Transport]
STATUS_INTERVAL_S = 10.0
#: Clinical records held in memory while the disk under the spool is full (a few days of events).
MEMORY_FALLBACK_RECORDS = 20_000
#: States in which a pipeline waits on purpose (bounded sleeps): healthy for the watchdog.
WAITING_STATES = frozenset({"disconnected", "failed", "refused", "ended", "offline"})


def default_transport(dev: DeviceSection, queue_size: int = 4096) -> Transport:
    if dev.transport == "serial":
        return SerialTransport(
            name=dev.id,
            queue_size=queue_size,
            port=dev.port,
            baudrate=dev.baudrate,
            usb_vid=dev.usb_vid,
            usb_pid=dev.usb_pid,
        )
    from ingest.sources.ble import BleTransport  # bleak is imported only when used

    profile = type(decoder_for(dev.kind)).ble_profile
    if profile is None:
        raise TransportError(f"device {dev.id}: a {dev.kind!r} device has no BLE link")
    transport = BleTransport(
        name=dev.id,
        queue_size=queue_size,
        address=dev.address,
        device_name=dev.name,
        service_uuid=dev.service_uuid,
        profile=profile,
    )
    if dev.ble_bridge is not None:  # a simulator in another process (ingest.sources.blebridge)
        from ingest.sources.blebridge import bridge_backends

        transport.backend, transport.scanner_backend = bridge_backends(str(dev.ble_bridge))
    return transport


@dataclass
class DeviceRunner:
    """Connects, streams and reconnects one device for as long as its task runs."""

    dev: DeviceSection
    session: DeviceSession
    transport_factory: TransportFactory
    stale_after_s: float
    on_state: Callable[[DeviceRunner], None]
    state: str = "connecting"
    monitoring: bool = False
    reconnects: int = 0
    last_error: str = ""
    #: False: a forwarding gateway (``scaling.detect_locally = false``); the session sees INFO and
    #: STATUS frames only (device identity, battery), a central worker runs the detector.
    detect: bool = True
    #: Batches the link bytes for ``.../frames`` (``scaling.publish_frames``).
    tap: FrameBatcher | None = None
    _ended: bool = False
    _closed_bytes: int = 0
    _closed_dropped: int = 0
    _rssi: int | None = None
    _live: Transport | None = None
    #: The shared decode loop (``ingest.stream.pipeline``): link bytes -> decoder -> session.
    pipeline: DecodeLoop = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = DecodeLoop(self.session, self.dev.kind, detect=self.detect, options=self.dev.options)

    #: Samples through the detector (set by the gateway; None: monitoring follows the link).
    progress: Progress | None = None
    #: Why the device is not monitored right now (the status carries it while monitoring is off).
    reason: str = ""
    failures: int = 0  # pipeline failures caught by the supervisor
    state_since: float = field(default_factory=time.monotonic)
    #: Arrival times from the monotonic clock plus a tracked wall offset (host clock steps).
    host_clock: HostClock = field(default_factory=HostClock)

    def _arrival(self, chunk: Any) -> float:
        """The chunk's host time on a step-free clock; a confirmed step re-anchors the session."""
        t, step = self.host_clock.observe(chunk.t_host, getattr(chunk, "t_mono", None))
        if step:
            log.warning("device %s: host clock stepped by %+.3f s; timestamps re-anchored", self.dev.id, step)
            reanchor(self.session, step)
        return t

    def _set(self, state: str, monitoring: bool) -> None:
        changed = (state, monitoring) != (self.state, self.monitoring)
        if state != self.state:
            self.state_since = time.monotonic()
        self.state, self.monitoring = state, monitoring
        if changed:
            self.on_state(self)

    def _streaming(self) -> None:
        """Frames arrive on the link; what that is worth depends on what the detector sees."""
        refused = getattr(self.session, "refused", None)
        if refused and self.detect:
            self.reason = f"refused: {refused}"
            self._set("refused", False)
            return
        if self.detect and self.session.samples_stale:
            # Frames (STATUS, INFO) but no samples: the link is up, the stream is not.
            self.reason = f"no samples for {self.stale_after_s:g} s (the device sends no data frames)"
            self._set("stale", False)
            return
        if self.progressing():
            self._set("online", True)
        else:
            if not self.reason.startswith("no samples"):
                self.reason = "no samples reach the detector yet"
            self._set("online", False)

    def progressing(self) -> bool:
        """Samples passed through the detector within ``PROGRESS_WINDOW_S`` (a forwarding
        gateway runs no detector: there, frames on the link are the progress)."""
        if not self.detect or self.progress is None:
            return self.state == "online"
        return self.progress.progressing(PROGRESS_WINDOW_S)

    def healthy(self) -> bool:
        """For the watchdog: making real progress, or waiting on purpose for a bounded time."""
        if self.state in WAITING_STATES:
            return True
        if self.progress is not None and self.detect:
            if self.progress.progressing(max(PROGRESS_WINDOW_S, self.stale_after_s) + 10.0):
                return True
        elif self.state == "online":
            return True
        # Connecting, connected or stale without samples: fine for a while (a BLE scan, an INFO
        # request), not for ever.
        return time.monotonic() - self.state_since < self.stale_after_s + 30.0

    async def run(self) -> None:
        backoff = Backoff(self.dev.reconnect_initial_s, self.dev.reconnect_max_s)
        while True:
            try:
                await self._connected_once(backoff)
            except TransportError as exc:
                self.last_error = str(exc)
                if self._ended:
                    # A finite source (a replayed recording) has nothing more: no reconnecting.
                    self._link_down()
                    self.session.finish()
                    self._set("ended", False)
                    return
            self._link_down()
            self.reason = f"link down: {self.last_error}" if self.last_error else "link down"
            self._set("disconnected", False)
            self.reconnects += 1
            delay = backoff.next()
            log.warning(
                "device %s: link down (%s); reconnecting in %.1f s", self.dev.id, self.last_error, delay
            )
            await asyncio.sleep(delay)

    def _link_down(self) -> None:
        t = time.time()
        self.pipeline.link_down(t)
        if self.tap is not None:
            self.tap.link(t, up=False)  # the same time, so a worker's session records the same gap

    async def _connected_once(self, backoff: Backoff) -> None:
        transport = self.transport_factory(self.dev)
        self._ended = False
        async with transport:
            pipeline = self.pipeline
            decoder = pipeline.link_up(time.time())
            self._live = transport
            rssi = getattr(transport, "rssi", None)  # BLE: at the last scan (no portable live RSSI)
            if rssi is not None:
                self._rssi = int(rssi)
            if self.tap is not None:
                self.tap.link(time.time(), up=True)  # a new decoder on the worker too
            self._set("connected", False)
            # Streaming is explicit: (re)start it on every connection, the device may have rebooted.
            for cmd in decoder.start_commands():
                await transport.write(cmd.data, cmd.char_uuid)
            last_info_request = time.monotonic()
            try:
                while True:
                    try:
                        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                        # cancellation that lands as the read completes, and at a BLE device's
                        # hundreds of notifications a second that left the task uncancellable.
                        async with asyncio.timeout(self.stale_after_s):
                            chunk = await transport.read()
                    except TimeoutError:
                        self.reason = f"no data for {self.stale_after_s:g} s"
                        self._set("stale", False)
                        raise TransportClosed(f"no data for {self.stale_after_s:g} s") from None
                    if self.tap is not None:
                        self.tap.chunk(chunk.t_host, chunk.data)
                    pipeline.data(self._arrival(chunk), chunk.data, chunk.source)
                    if decoder.stats.frames:
                        backoff.reset()
                        self._streaming()
                    if self.session.needs_info and time.monotonic() - last_info_request > 1.0:
                        last_info_request = time.monotonic()
                        ask = decoder.info_request()
                        if ask is not None:
                            await transport.write(ask.data, ask.char_uuid)
            finally:
                finished = getattr(transport, "finished", None)  # replay: set at the end of the file
                self._ended = bool(finished is not None and finished.is_set())
                # The decode loop keeps error counts over all connections; the link counters here.
                self._closed_bytes += transport.stats.bytes
                self._closed_dropped += transport.stats.dropped_chunks
                self._live = None

    def unprocessed(self) -> int:
        """Chunks the live link has received that the pipeline has not processed yet (tests wait
        for 0 before comparing what the gateway made of a stream with what was sent)."""
        live = self._live
        return live.pending if live is not None else 0

    def link_info(self) -> dict[str, int]:
        """Link counters over the runner's whole life: closed connections plus the current one."""
        info = {"bytes": self._closed_bytes, "dropped_chunks": self._closed_dropped}
        if self._live is not None:
            transport = self._live
            info["bytes"] += transport.stats.bytes
            info["dropped_chunks"] += transport.stats.dropped_chunks
        if self._rssi is not None:
            info["rssi_dbm"] = self._rssi
        return info

    def decode_error_counts(self) -> dict[str, int]:
        return self.pipeline.decode_errors

    def bad_frames(self) -> int:
        return self.pipeline.bad_frames


class Gateway:
    """The whole gateway. ``async with Gateway(cfg) as gw: await gw.run_until(stop)``."""

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        transport_factory: TransportFactory | None = None,
        observers: list[Callable[[str, Output], None]] | None = None,
        mqtt_sink_factory: Callable[[DeviceSection], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.transport_factory = transport_factory or (
            lambda dev: default_transport(dev, cfg.gateway.queue_size)
        )
        self.observers = observers or []
        self.spool = Spool(
            cfg.spool_dir,
            quota_bytes=int(cfg.spool.quota_mb * 1024 * 1024),
            segment_bytes=min(4 << 20, max(64 << 10, int(cfg.spool.quota_mb * 1024 * 1024) // 64)),
            fsync=cfg.spool.fsync,
            # A full disk must not stop events: they are held in memory and delivered directly.
            memory_fallback=MEMORY_FALLBACK_RECORDS,
        )
        self.deliveries: dict[str, Delivery] = {}
        self.devices: dict[str, DeviceRunner] = {}
        self.detector_config = DetectorConfig.from_dict(cfg.detector) if cfg.detector else DetectorConfig()
        self._tasks: list[asyncio.Task[None]] = []
        self.router: Router | None = None
        self.started = time.time()
        self._live_tasks: set[asyncio.Task[bool]] = set()
        self._spool_open = False
        self.notifier = Notifier()
        self._device_tasks: list[asyncio.Task[None]] = []
        #: Commands over MQTT (``ingest.stream.control``): applied, and refused (bad topic, JSON
        #: or values, unknown device, no stream yet); a refusal is logged once per topic.
        self.commands_applied = 0
        self.commands_refused = 0
        self._command_logged: set[str] = set()
        #: Configured sessions already declared: device -> {(slot index, date)}.
        self._slots_done: dict[str, set[tuple[int, str]]] = {}
        #: Set once the command subscription is active (tests wait for it).
        self.commands_ready = asyncio.Event()
        self.last_samples = LastSampleStore(cfg.gateway.state_dir / "last_sample")
        self._envelope_rate = 50.0
        self._raw_emg = False

    # -- setup ---------------------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        self.spool.open()
        self._spool_open = True
        cfg = self.cfg
        series_sinks: list[str] = []
        raw_sinks: list[str] = []
        quarantine = cfg.gateway.state_dir / "quarantine"
        if cfg.influx.enabled:
            series_sinks.append("influx")
            if cfg.series.raw_emg:
                raw_sinks.append("influx")
            influx_cfg = cfg.influx
            self.deliveries["influx"] = Delivery(
                self.spool,
                "influx",
                lambda: make_influx_sink(influx_cfg),
                max_records=10_000,
                max_bytes=max(64 << 10, influx_cfg.batch_lines * 80),
                linger_s=influx_cfg.flush_interval_s,
                quarantine_dir=quarantine,
                backoff=Backoff(max_s=cfg.gateway.retry_max_s),
            )
        if cfg.local.enabled:
            series_sinks.append("local")
            if cfg.series.raw_emg:
                raw_sinks.append("local")
            local_dir = cfg.local_dir
            self.deliveries["local"] = Delivery(
                self.spool,
                "local",
                (lambda: SqliteSink(local_dir / SQLITE_FILENAME))
                if cfg.local.format == "sqlite"
                else (lambda: LocalLineSink(local_dir)),
                max_records=10_000,
                linger_s=0.5,
                quarantine_dir=quarantine,
                backoff=Backoff(max_s=cfg.gateway.retry_max_s),
            )
        topics: dict[str, payloads.Topics] = {}
        if cfg.mqtt.enabled:
            for dev in cfg.devices:
                topics[dev.id] = payloads.Topics(
                    cfg.mqtt.topic_prefix, cfg.gateway.site, cfg.gateway.patient, dev.id
                )
                name = Router.mqtt_sink_name(dev.id)
                self.deliveries[name] = Delivery(
                    self.spool,
                    name,
                    self._mqtt_factory(dev, topics[dev.id]),
                    backoff=Backoff(max_s=cfg.gateway.retry_max_s),
                )
        orphans = {
            sink: n
            for sink, n in ((k, sum(v.values())) for k, v in self.spool.stats().pending_records.items())
            if n and sink not in self.deliveries
        }
        for sink, n in orphans.items():
            # Kept, not deleted: re-enabling the sink delivers them. Said loudly, since they use quota.
            log.warning(
                "spool holds %d undelivered record(s) for sink %r, which is not configured now", n, sink
            )
        self.router = Router(
            self.spool,
            patient=cfg.gateway.patient,
            series_sinks=series_sinks,
            raw_sinks=raw_sinks,
            notify=self._notify,
            mqtt_topics=topics,
            publish_live=self._publish_live if cfg.mqtt.live else None,
            observers=self.observers,
        )
        self._envelope_rate = cfg.series.envelope_rate_hz
        self._raw_emg = bool(raw_sinks)
        for dev in cfg.devices:
            # Where the data stopped when this gateway last ran: the downtime is a gap.
            last = self.last_samples.load(dev.id) if cfg.scaling.detect_locally else None
            progress, session = self._new_session(dev, PendingGap("gateway_restart", last) if last else None)
            self.devices[dev.id] = DeviceRunner(
                dev,
                session,
                self.transport_factory,
                cfg.gateway.stale_after_s,
                self._device_state,
                detect=cfg.scaling.detect_locally,
                tap=self._frame_tap(dev.id) if cfg.mqtt.enabled and cfg.scaling.publish_frames else None,
                progress=progress,
            )
            runner = self.devices[dev.id]
            progress.time_quality = lambda r=runner: r.host_clock.quality  # type: ignore[misc]
        return self

    def _new_session(self, dev: DeviceSection, pending: PendingGap | None) -> tuple[Progress, DeviceSession]:
        """A fresh session for a device (at start, and after its pipeline failed), its outputs
        counted by a ``Progress`` that also records the gap of a restart."""
        assert self.router is not None
        progress = Progress(dev.id, self.router.emitter(dev.id), pending=pending)
        session = DeviceSession(
            dev.id,
            progress,
            self.detector_config,
            envelope_rate_hz=self._envelope_rate,
            live_rate_hz=self.cfg.mqtt.live_rate_hz,
            raw_emg=self._raw_emg,
            samples_stale_after_s=self.cfg.gateway.stale_after_s,
        )
        progress.session = session
        runner = self.devices.get(dev.id)
        if runner is not None:
            progress.time_quality = lambda: runner.host_clock.quality
        return progress, session

    async def _supervise(self, runner: DeviceRunner) -> None:
        """Run one device pipeline under ``ingest.stream.supervisor.supervise``: a failure inside
        it is logged once with its cause, shown at once (``monitoring: false`` and the reason,
        retained), its lost time recorded as a gap, and the pipeline restarted with a fresh
        session after a backoff."""
        dev = runner.dev

        def failed(cause: str) -> None:
            runner.failures += 1
            runner.last_error = cause
            runner.reason = f"pipeline failed: {cause}"
            with contextlib.suppress(Exception):
                runner._link_down()  # the frame tap's worker records the same hole
            runner._set("failed", False)

        def restart() -> None:
            runner.progress, runner.session = self._new_session(dev, restart_gap(runner.progress))
            # The decode loop feeds the fresh session (its error counts carry on).
            runner.pipeline.session = runner.session

        await supervise(
            dev.id,
            runner.run,
            failed=failed,
            restart=restart,
            backoff=Backoff(dev.reconnect_initial_s, dev.reconnect_max_s),
        )

    def _frame_tap(self, device: str) -> FrameBatcher:
        def publish(payload: bytes) -> None:
            if self.router is not None and self._spool_open:
                self.router.frames(device, payload)

        return FrameBatcher(publish)

    def _mqtt_factory(
        self, dev: DeviceSection, topics: payloads.Topics
    ) -> Callable[[], AbstractAsyncContextManager[Any]]:
        cfg = self.cfg

        def make() -> AbstractAsyncContextManager[Any]:
            return MqttSink(
                cfg.mqtt,
                client_id=f"neurospasm-{cfg.gateway.site}-{dev.id}",
                status_topic=topics("status"),
                device=dev.id,
            )

        return make

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await _join(self._tasks, "its tasks")
        self._tasks.clear()
        for runner in self.devices.values():
            with contextlib.suppress(Exception):  # a failed pipeline's session may be broken
                runner.session.finish()
            self._persist_last(runner, force=True)
        if self.router is not None:
            self.router.flush_series(force=True)
        self._spool_open = False
        self.spool.close()
        self.notifier.close()

    def _persist_last(self, runner: DeviceRunner, force: bool = False) -> None:
        if runner.progress is not None and runner.detect:
            self.last_samples.save(runner.dev.id, runner.progress.last_sample(), force=force)

    # -- running -------------------------------------------------------------------------
    def start(self) -> None:
        for name, delivery in self.deliveries.items():
            self._tasks.append(asyncio.create_task(delivery.run(), name=f"delivery-{name}"))
        for dev_id, runner in self.devices.items():
            task = asyncio.create_task(self._supervise(runner), name=f"device-{dev_id}")
            self._tasks.append(task)
            self._device_tasks.append(task)
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.cfg.mqtt.enabled and self.cfg.scaling.publish_frames:
            self._tasks.append(asyncio.create_task(self._announce(), name="announce"))
        if self.cfg.mqtt.enabled:
            self._tasks.append(asyncio.create_task(self._commands(), name="commands"))
        self.notifier.ready(f"{len(self.devices)} device(s)")

    async def run_until(self, stop: asyncio.Event) -> None:
        self.start()
        await stop.wait()
        await self.drain(timeout_s=5.0)

    async def drain(self, timeout_s: float) -> None:
        """On a clean stop: close open episodes, publish final status, give sinks a moment."""
        assert self.router is not None
        log.info("gateway stopping: closing open episodes, delivering what is spooled (<= %g s)", timeout_s)
        self.notifier.stopping()
        # Device pipelines stop first: a session must not be fed after it was finished.
        for task in self._device_tasks:
            task.cancel()
        await _join(self._device_tasks, "the device pipelines")
        for runner in self.devices.values():
            if runner.tap is not None:
                runner.tap.flush()
            with contextlib.suppress(Exception):  # a failed pipeline's session may be broken
                runner.session.finish()
            self._persist_last(runner, force=True)
            runner.state, runner.monitoring = "offline", False
            runner.reason = "gateway stopped"
            self._publish_status(runner)
        self.router.flush_series(force=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pending = self.spool.stats().pending_records
            if not any(
                sum(v.values())
                for k, v in pending.items()
                if k in self.deliveries and self.deliveries[k].state == "connected"
            ):
                break
            await asyncio.sleep(0.05)

    async def _housekeeping(self) -> None:
        assert self.router is not None
        last_status = 0.0
        while True:
            await asyncio.sleep(0.25)
            self.router.flush_series()
            self.declare_scheduled(datetime.now().astimezone())
            for runner in self.devices.values():
                if runner.tap is not None:
                    runner.tap.flush_due()
                if runner.state == "online" and runner.monitoring and not runner.progressing():
                    # Connected, frames arriving, yet nothing reaches the detector: say so.
                    runner.reason = f"no samples through the detector for {PROGRESS_WINDOW_S:g} s"
                    runner._set("online", False)
                self._persist_last(runner)
            if all(r.healthy() for r in self.devices.values()):
                self.notifier.watchdog()
            now = time.monotonic()
            if now - last_status >= STATUS_INTERVAL_S:
                last_status = now
                for runner in self.devices.values():
                    self._publish_status(runner)
            self.spool.sync()

    async def _announce(self) -> None:
        """Each device, every ``announce_interval_s``: "my frames are on this topic" for the
        workers' shared subscription (docs/scaling.md). Best effort, never spooled: a missed
        announce is simply followed by the next one."""
        cfg = self.cfg
        while True:
            for dev_id, runner in self.devices.items():
                d = self.deliveries.get(Router.mqtt_sink_name(dev_id))
                sink = d.sink if d is not None else None
                if not isinstance(sink, MqttSink):
                    continue
                topics = payloads.Topics(cfg.mqtt.topic_prefix, cfg.gateway.site, cfg.gateway.patient, dev_id)
                payload = announce_payload(
                    site=cfg.gateway.site,
                    patient=cfg.gateway.patient,
                    device=dev_id,
                    boot_id=runner.session.boot_id if runner.session.info is not None else None,
                    frames_topic=topics("frames"),
                    state=runner.state,
                    interval_s=cfg.scaling.announce_interval_s,
                    detect_locally=cfg.scaling.detect_locally,
                )
                await sink.publish_now(topics("announce"), payload, qos=1)
            await asyncio.sleep(cfg.scaling.announce_interval_s)

    def command_topic(self) -> str:
        """The subscription for commands to this gateway's devices (the ACL's read ``cmd/#``)."""
        c = self.cfg
        return f"{c.mqtt.topic_prefix}/{c.gateway.site}/{c.gateway.patient}/+/cmd/#"

    async def _commands(self) -> None:
        """Subscribe to ``.../{device}/cmd/#`` on a connection of its own and apply commands;
        reconnect with backoff on broker errors, as the deliveries do."""
        import aiomqtt

        from ingest.outputs.sinks.mqtt import connection_kwargs

        c = self.cfg
        delay = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    **connection_kwargs(c.mqtt), identifier=f"neurospasm-{c.gateway.site}-cmd"
                ) as client:
                    await client.subscribe(self.command_topic(), qos=1)
                    self.commands_ready.set()
                    delay = 0.5
                    async for msg in client.messages:
                        raw = msg.payload if isinstance(msg.payload, (bytes, bytearray)) else b""
                        self.on_command(str(msg.topic), bytes(raw))
            except aiomqtt.MqttError as exc:
                self.commands_ready.clear()
                log.warning("commands: MQTT connection lost (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, c.gateway.retry_max_s)

    def declare_scheduled(self, now: datetime) -> int:
        """Declare the configured sessions (``[[devices]] declared``) due at local time ``now``;
        a device not streaming yet is tried again on the next tick. Returns how many started."""
        started = 0
        for dev_id, runner in self.devices.items():
            if not runner.dev.declared:
                continue
            done = self._slots_done.setdefault(dev_id, set())
            for key, cmd in due_slots(runner.dev.declared, now, done):
                if runner.session.declare(cmd.kind, cmd.minutes):
                    done.add(key)
                    started += 1
                    log.info("%s: declared %s session started (%.0f min)", dev_id, cmd.kind, cmd.minutes or 0)
        return started

    def on_command(self, topic: str, payload: bytes) -> bool:
        """Apply one command; False (logged once per topic, counted) if it was refused."""
        c = self.cfg
        try:
            device, command = parse_topic(topic, c.mqtt.topic_prefix, c.gateway.site, c.gateway.patient)
            runner = self.devices.get(device)
            if runner is None:
                raise CommandError(f"unknown device {device!r}")
            if command != "declare":
                raise CommandError(f"unknown command {command!r} (known: declare)")
            cmd = parse_declare(payload)
            session = runner.session
            if isinstance(cmd, Clear):
                ok = session.clear_declared()
            else:
                ok = session.declare(cmd.kind, cmd.minutes)
            if not ok:
                raise CommandError("the device is not streaming to the detector yet")
        except (CommandError, ValueError) as exc:  # ValueError: the detector refused the span
            self.commands_refused += 1
            if topic not in self._command_logged:
                self._command_logged.add(topic)
                log.warning("command on %s refused: %s", topic, exc)
            return False
        self.commands_applied += 1
        log.info("command on %s applied", topic)
        return True

    def _notify(self, sink: str) -> None:
        d = self.deliveries.get(sink)
        if d is not None:
            d.notify()

    def _publish_live(self, device: str, topic: str, payload: bytes) -> None:
        d = self.deliveries.get(Router.mqtt_sink_name(device))
        sink = d.sink if d is not None else None
        if sink is None or not isinstance(sink, MqttSink):
            if self.router is not None:
                self.router.live_dropped += 1
            return
        task = asyncio.get_running_loop().create_task(sink.publish_now(topic, payload, qos=0))
        self._live_tasks.add(task)
        task.add_done_callback(self._live_tasks.discard)

    def _device_state(self, runner: DeviceRunner) -> None:
        log.info(
            "device %s: %s (monitoring %s)", runner.dev.id, runner.state, "on" if runner.monitoring else "OFF"
        )
        self._publish_status(runner)

    def status_record(self, runner: DeviceRunner) -> StatusRecord:
        """The device's status as a typed record (encoded once, for MQTT and the health point)."""
        sp = self.spool.stats()
        return StatusRecord(
            device=runner.dev.id,
            state=runner.state,
            monitoring=runner.monitoring,
            updated=time.time(),
            reason=runner.reason,
            pipeline_failures=runner.failures,
            health=runner.session.health(),
            # The current activity context ("walking since 10:02", a declared session) and the
            # minutes of voluntary activity in the last hour, from the session (issue 9).
            activity=runner.session.activity_status(time.time()),
            link={
                "bad_frames": runner.bad_frames(),
                "decode_errors": runner.decode_error_counts(),
                "reconnects": runner.reconnects,
                **runner.link_info(),
            },
            spool={
                "bytes": sp.bytes,
                "quota_bytes": sp.quota_bytes,
                # what is still to deliver (bytes on disk include delivered records until their
                # segment file is dropped, so they grow and fall with the segment size)
                "pending_bytes": sum(sum(per.values()) for per in sp.pending_bytes.values()),
                "oldest_age_s": sp.oldest_age_max_s,
                "evicted_records": {p.name.lower(): n for p, n in sp.evicted_records.items()},
                # A full disk: what is said, what is held in memory, what could not be kept.
                "disk_full": sp.disk_full,
                "memory_records": sp.memory_records,
                "disk_full_dropped": {p.name.lower(): n for p, n in sp.disk_full_dropped.items() if n},
            },
            sinks={name: d.health() for name, d in self.deliveries.items()},
            spool_bytes=sp.bytes,
        )

    def status_payload(self, runner: DeviceRunner) -> tuple[dict[str, Any], StatusRecord]:
        """The MQTT payload of ``status_record`` (what ``.../status`` carries), and the record."""
        record = self.status_record(runner)
        return encoders.status_json(record), record

    def _publish_status(self, runner: DeviceRunner) -> None:
        if self.router is None or not self._spool_open:
            return
        # A forwarding gateway leaves the status topic to the worker that runs the detector: only
        # it knows whether the device is really monitored (its last will still says "offline").
        self.router.status(self.status_record(runner), mqtt=self.cfg.scaling.detect_locally)


STOP_WARN_S = 5.0  # a cancelled task still running after this long is named in the log


async def _join(tasks: list[asyncio.Task[Any]], what: str, warn_after_s: float = STOP_WARN_S) -> None:
    """Wait for cancelled ``tasks`` to finish. One still running after ``warn_after_s`` is named
    in a warning with the line it waits at, then waited for still: a stop that hangs (a sink
    that does not let go, a device read that ignores cancellation) is visible in the log instead
    of ending, silently, in the service manager's SIGKILL."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=warn_after_s)
    if pending:
        log.warning(
            "gateway stopping: still waiting for %s after %g s: %s",
            what,
            warn_after_s,
            "; ".join(f"{t.get_name()} at {_where(t)}" for t in pending),
        )
        await asyncio.wait(pending)
    for t in tasks:  # retrieve every outcome: a failure on the way out is not an unread exception
        if not t.cancelled() and t.exception() is not None:
            log.debug("%s ended with %r while stopping", t.get_name(), t.exception())


def _where(task: asyncio.Task[Any]) -> str:
    """The innermost line a suspended task waits at (``file:line in function``)."""
    stack = task.get_stack()
    if not stack:
        return "?"
    f = stack[-1]
    return f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno} in {f.f_code.co_name}"
