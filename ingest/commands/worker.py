"""``neurospasm worker``: run the detectors centrally on frames that gateways publish over MQTT.

A clinic with many homes does not need a detector in every house: gateways with
``[scaling] publish_frames = true`` publish each device's link bytes (``ingest.stream.frames``), and any
number of workers share the devices between them. docs/scaling.md explains the design; in short:

- A detector is stateful per device (adaptive baseline, open episodes), so consecutive batches of
  one device must reach one worker. A shared subscription of the frames would spread them
  round-robin per message, so frames are NOT share-subscribed. Instead each gateway announces
  every device every few seconds on ``.../announce``, and the workers share-subscribe to the
  announces (``$share/{group}/...``, MQTT 5): each announce reaches one worker.
- A worker receiving an announce for a device without a live lease claims it: a retained
  ``.../claim`` {worker, expires}, renewed every ``renew_s``, valid ``lease_s``. Every worker
  subscribes (normally) to all claims, so it knows who holds what. Two workers claiming at once:
  the lower worker id keeps the device, the other lets go as soon as it sees the rival claim.
- The claimant subscribes to the device's ``.../frames`` on a connection of its own whose client
  id is the DEVICE's (``neurospasm-det-{site}-{patient}-{device}``), with a persistent MQTT 5
  session. So the broker itself allows one consumer per device at a time (a second connection
  with that id takes the session over), and while no worker is connected (a worker died, its
  lease is running out) the broker queues the device's frames in that session for the next one.
- It runs the gateway's own decode loop and ``DeviceSession`` (``ingest.stream.pipeline``) and
  publishes onsets, events, gaps, status and live to the usual topics with the usual schemas and
  ids. Like a gateway it spools them first (``ingest.outputs.spool``, ``[worker] state_dir``) and
  acknowledges a record only after the broker's PUBACK, so a broker outage or a crash loses none.
- A worker that cannot renew (broker gone) stops its devices when its own lease lapses, so two
  workers never both believe they hold a device for longer than a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator, model_validator

from detectors import DetectorConfig, designs
from ingest.config import (
    Ident,
    MqttSection,
    _Model,
    check_mqtt_files,
    detector_config,
    load_toml,
    rebase_mqtt,
    validate_model,
)
from ingest.outputs import encoders, payloads
from ingest.outputs.delivery import Backoff
from ingest.outputs.sinks.mqtt import connection_kwargs, decode_message, encode_message
from ingest.outputs.spool import Priority, Spool
from ingest.stream.frames import ANNOUNCE_SCHEMA, CLAIM_SCHEMA, FrameFeeder, FramesError
from ingest.stream.records import StatusRecord, WorkerInfo
from ingest.stream.session import DeviceSession, Output
from ingest.stream.supervisor import PROGRESS_WINDOW_S, PendingGap, Progress, restart_gap, supervise

log = logging.getLogger(__name__)

__all__ = ["DeviceWorker", "Worker", "WorkerConfig", "load_worker_config", "run_worker"]

DeviceKey = tuple[str, str, str]  # site, patient, device
STATUS_INTERVAL_S = 10.0
STATUS_LINE_S = 30.0


def _default_worker_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "worker"
    return f"{host}-{os.getpid()}"


class WorkerSection(_Model):
    #: Unique among the workers of a group; the lower id wins a claim race. Pseudonymous, it is
    #: published in claims and status.
    id: Ident = Field(default_factory=_default_worker_id)
    #: The shared-subscription group: workers of one group share the devices between them.
    group: Ident = "detectors"
    #: Only devices of these sites / patients (empty: all). Workers of one group need equal filters.
    sites: list[Ident] = Field(default_factory=list)
    patients: list[Ident] = Field(default_factory=list)
    #: A claim is valid this long; it is renewed every renew_s. A dead worker's devices move after
    #: at most lease_s plus one announce interval.
    lease_s: float = Field(15.0, gt=0)
    renew_s: float = Field(5.0, gt=0)
    #: No frame batch for this long: the device's status turns "stale", monitoring false.
    stale_after_s: float = Field(5.0, gt=0)
    #: How long the broker keeps a device's frames queued while no worker is connected.
    session_expiry_s: int = Field(3600, ge=0)
    #: At most this many devices (0: no limit). Announces past it are left to the other workers.
    max_devices: int = Field(0, ge=0)
    #: Where the worker's durable spool lives (``spool-{id}`` inside): onsets, events, gaps and
    #: status wait there until the broker acknowledged them, across broker outages and crashes,
    #: as on a gateway. Relative to the config file.
    state_dir: Path = Path("var/neurospasm-worker")
    #: The spool's disk quota.
    spool_quota_mb: float = Field(256.0, gt=0)

    @model_validator(mode="after")
    def _renew_in_time(self) -> WorkerSection:
        if self.renew_s * 2 > self.lease_s:
            raise ValueError("renew_s must be at most half of lease_s, or one late renewal loses the lease")
        return self


class WorkerConfig(_Model):
    worker: WorkerSection = Field(default_factory=WorkerSection)
    mqtt: MqttSection = MqttSection(protocol="5")
    detector: dict[str, Any] = Field(default_factory=dict)

    @field_validator("mqtt")
    @classmethod
    def _v5(cls, v: MqttSection) -> MqttSection:
        if v.protocol != "5":
            raise ValueError('protocol must be "5": workers need shared subscriptions and session expiry')
        return v


def load_worker_config(path: str | Path) -> WorkerConfig:
    """Read and validate a worker TOML; ConfigError naming the file and key at fault."""
    p = Path(path)
    cfg = validate_model(WorkerConfig, load_toml(p), str(p), "deploy/worker.example.toml")
    detector_config(cfg.detector, str(p))
    cfg = cfg.model_copy(update={"mqtt": rebase_mqtt(cfg.mqtt, p.resolve().parent)})
    check_mqtt_files(cfg.mqtt, str(p))  # a worker is loaded where it runs
    if not cfg.worker.state_dir.is_absolute():
        w = cfg.worker.model_copy(update={"state_dir": p.resolve().parent / cfg.worker.state_dir})
        cfg = cfg.model_copy(update={"worker": w})
    return cfg


def _client(cfg: MqttSection, identifier: str, **kw: Any) -> aiomqtt.Client:
    return aiomqtt.Client(
        **connection_kwargs(cfg), identifier=identifier, protocol=aiomqtt.ProtocolVersion.V5, **kw
    )


class DeviceWorker:
    """One leased device: its frames connection, its session, its outputs."""

    def __init__(self, worker: Worker, key: DeviceKey) -> None:
        self.worker = worker
        self.key = key
        site, patient, device = key
        self.name = f"{site}/{device}"
        cfg = worker.cfg
        self.topics = payloads.Topics(cfg.mqtt.topic_prefix, site, patient, device)
        self.failures = 0  # pipeline failures caught by the supervisor (``supervise``)
        #: Why the device is not monitored right now (the status carries it while monitoring is off).
        self.reason = "waiting for frames"
        self.progress, self.session = self._new_session(None)
        self.feeder = FrameFeeder.for_session(self.session)
        self.lease_until = 0.0  # our claim's expiry as last published successfully
        self.started = time.time()
        self.state = "connecting"
        self.monitoring = False
        self.bad_batches = 0
        self.published = 0
        self.last_batch: float | None = None  # monotonic
        self.live_dropped = 0  # live messages while the frames connection was down (QoS 0, never spooled)
        name = f"mqtt.{site}.{patient}.{device}"
        #: The device's stream in the worker's spool (a sink name: at most 64 characters).
        self.sink = (
            name if len(name) <= 64 else "mqtt." + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
        )
        self._client: aiomqtt.Client | None = None
        self._live_tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing waits to be published
        self._idle.set()
        self.task: asyncio.Task[None] | None = None
        self._finished = False  # the session was finished by a clean stop: no more batches

    def _new_session(self, pending: PendingGap | None) -> tuple[Progress, DeviceSession]:
        """A fresh session (at the lease, and after the pipeline failed), its outputs counted by
        a ``Progress`` that also records the gap of a restart, as on the gateway."""
        device = self.key[2]
        progress = Progress(device, self._emit, pending=pending)
        session = DeviceSession(
            device, progress, self.worker.detector_config, live_rate_hz=self.worker.cfg.mqtt.live_rate_hz
        )
        progress.session = session
        return progress, session

    # -- outputs -------------------------------------------------------------------------------
    def _emit(self, out: Output) -> None:
        record = out.record
        if record is None:
            return  # series (envelope, accelerometer) are not stored by workers (yet): docs/scaling.md
        if out.kind in ("onset", "event", "gap", "activity"):
            self._queue(self.topics(encoders.topic_leaf(record)), payloads.dumps(encoders.to_json(record)),
                        payloads.QOS_CLINICAL)  # fmt: skip
        elif out.kind == "live" and self.worker.cfg.mqtt.live:
            self._queue(self.topics("live"), payloads.dumps(encoders.to_json(record)), payloads.QOS_LIVE)

    def _queue(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        if qos == payloads.QOS_LIVE:
            # Live view: best effort, as on the gateway; never spooled (stale live data is noise).
            client = self._client
            if client is None:
                self.live_dropped += 1
                return
            task = asyncio.get_running_loop().create_task(client.publish(topic, payload, qos=qos))
            self._live_tasks.add(task)
            task.add_done_callback(self._live_tasks.discard)
            return
        # Clinical records and status: durable first, then published (acknowledged on PUBACK).
        if not self.worker.spool.append(
            self.sink, Priority.CLINICAL, encode_message(topic, payload, qos, retain)
        ):
            log.error("device %s: spool quota refused a record for %s", self.name, topic)
        self._idle.clear()
        self._wake.set()

    def status_record(self) -> StatusRecord:
        """The device's status, typed; encoded like the gateway's (``encoders.status_json``)."""
        feeder = self.feeder
        return StatusRecord(
            device=self.key[2],
            state=self.state,
            monitoring=self.monitoring,
            updated=time.time(),
            reason=self.reason,
            pipeline_failures=self.failures,
            health=self.session.health(),
            link={
                "bad_frames": feeder.decode_errors,
                "batches": feeder.batches,
                "bad_batches": self.bad_batches,
            },
            # Marks who detects, and since when: a new worker's detector starts afresh (its
            # baseline adapts over the first seconds), so consumers can see every handover.
            worker=WorkerInfo(self.worker.id, self.started, feeder.first_t_host_ns),
        )

    def status_payload(self) -> dict[str, Any]:
        return encoders.status_json(self.status_record())

    def _status(self) -> None:
        self._queue(self.topics("status"), payloads.dumps(self.status_payload()), payloads.QOS_CLINICAL, True)

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.create_task(self.supervised(), name=f"device-{self.name}")

    async def supervised(self) -> None:
        """``run`` under the gateway's supervisor: a failure inside the pipeline (decoder, session,
        detector) is logged once, shown at once (status ``failed``, ``monitoring: false``, the
        reason; published as soon as the frames connection is back, which is at once: the broker
        queues the device's frames meanwhile), and the device restarted with a fresh session whose
        first samples record the lost time as a ``pipeline_restart`` gap."""
        await supervise(
            self.name, self.run, failed=self._failed, restart=self._restart, backoff=Backoff(0.2, 10.0)
        )

    def _failed(self, cause: str) -> None:
        self.failures += 1
        self.reason = f"pipeline failed: {cause}"
        self.state, self.monitoring = "failed", False
        self._status()

    def _restart(self) -> None:
        self.progress, self.session = self._new_session(restart_gap(self.progress))
        # The decode loop feeds the fresh session; its error counts and dedup window carry on. A
        # new decoder: bytes of a frame the failed one held are not glued to the next batch's.
        self.feeder.pipeline.session = self.session
        self.feeder.pipeline.link_up(time.time())

    async def stop(self, *, goodbye: bool) -> None:
        """Stop. ``goodbye``: a clean stop, say "not monitored" unless a successor says otherwise."""
        if self.task is None:
            return
        if goodbye and not self.task.done():
            # As the gateway does on a clean stop: close open episodes (an event cut at the stop
            # beats none: the next worker never sees its onset). Batches still arriving while the
            # goodbye goes out are not fed to the finished session (it would refuse them).
            self._finished = True
            self.session.finish()
            self.state, self.monitoring = "offline", False
            self._status()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 3.0)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

    def _make_client(self) -> aiomqtt.Client:
        site, patient, device = self.key
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.worker.cfg.worker.session_expiry_s
        will = encoders.last_will(device)
        # The DEVICE's client id, the same on every worker: one consumer per device at a time,
        # and the persistent session queues frames between two workers.
        return _client(
            self.worker.cfg.mqtt,
            f"neurospasm-det-{site}-{patient}-{device}",
            clean_start=False,
            properties=props,
            will=aiomqtt.Will(self.topics("status"), will, qos=1, retain=True),
        )

    async def run(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while True:
            try:
                async with self._make_client() as client:
                    await client.subscribe(self.topics("frames"), qos=1)
                    self._client = client
                    backoff.reset()
                    helpers = [
                        asyncio.create_task(self._publisher(client)),
                        asyncio.create_task(self._watch()),
                    ]
                    try:
                        async for msg in client.messages:
                            self._on_batch(msg.payload)
                    finally:
                        self._client = None
                        for t in helpers:
                            t.cancel()
                        for t in helpers:
                            with contextlib.suppress(asyncio.CancelledError):
                                await t
            except aiomqtt.MqttError as exc:
                if not self.worker.holds(self.key):
                    log.info("device %s: connection lost and no longer ours (%s): stopping", self.name, exc)
                    self.worker.forget(self.key, self)
                    return
                delay = backoff.next()
                log.warning("device %s: frames connection lost (%s); again in %.1f s", self.name, exc, delay)
                await asyncio.sleep(delay)

    def _on_batch(self, payload: object) -> None:
        if self._finished:
            return
        if not isinstance(payload, (bytes, bytearray)):
            self.bad_batches += 1
            return
        try:
            self.feeder.feed(bytes(payload))
        except FramesError as exc:
            self.bad_batches += 1
            log.warning("device %s: %s (batch skipped)", self.name, exc)
            return
        self.last_batch = time.monotonic()

    async def _publisher(self, client: aiomqtt.Client) -> None:
        """Spool -> broker: the oldest records first, acknowledged in the spool only after PUBACK."""
        spool = self.worker.spool
        while True:
            # Ten at a time: aiomqtt warns past ten pending publishes (a takeover's backlog).
            records = spool.peek(self.sink, 10, 1 << 20)
            if not records:
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            # Issue all, then wait for every PUBACK; only then are they off our hands.
            messages = [decode_message(r.payload) for r in records]
            await asyncio.gather(*(client.publish(t, p, qos=q, retain=r) for t, p, q, r in messages))
            spool.ack(self.sink, records)
            self.published += len(records)

    async def _watch(self) -> None:
        """State from the frames' flow; status on every change and every STATUS_INTERVAL_S."""
        stale_after = self.worker.cfg.worker.stale_after_s
        last_status = 0.0
        while True:
            now = time.monotonic()
            flowing = self.last_batch is not None and now - self.last_batch < stale_after
            state = "online" if flowing else ("stale" if self.last_batch is not None else "connecting")
            # As on the gateway: monitoring means samples went through the detector just now,
            # not merely that frames arrive (a refused device, or one without INFO yet, is not).
            monitoring = flowing and self.progress.progressing(PROGRESS_WINDOW_S)
            refused = getattr(self.session, "refused", None)
            if monitoring:
                self.reason = ""
            elif refused and flowing:
                state, self.reason = "refused", f"refused: {refused}"
            elif flowing:
                self.reason = (
                    "waiting for the device's INFO frame" if self.session.needs_info
                    else "no samples reach the detector"
                )  # fmt: skip
            else:
                self.reason = f"no frames for {stale_after:g} s" if self.last_batch else "waiting for frames"
            if (state, monitoring) != (self.state, self.monitoring) or now - last_status >= STATUS_INTERVAL_S:
                if (state, monitoring) != (self.state, self.monitoring):
                    log.info("device %s: %s (monitoring %s)", self.name, state, "on" if monitoring else "OFF")
                self.state, self.monitoring = state, monitoring
                last_status = now
                self._status()
            await asyncio.sleep(0.25)


class Worker:
    """Leases devices from the announces, runs a DeviceWorker for each. See the module docstring."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.id = cfg.worker.id
        self.detector_config: DetectorConfig = detector_config(cfg.detector, "worker config")
        self.claims: dict[DeviceKey, tuple[str, float]] = {}  # who holds what, from the retained claims
        self.held: dict[DeviceKey, DeviceWorker] = {}
        self.announces = 0
        self.conflicts_lost = 0
        self._local: set[DeviceKey] = set()  # announced as detected by their gateway
        self._client: aiomqtt.Client | None = None
        prefix = cfg.mqtt.topic_prefix
        self._prefix_parts = len(prefix.split("/"))
        w = cfg.worker
        self.announce_topics = [
            f"$share/{w.group}/{prefix}/{s}/{p}/+/announce"
            for s in (w.sites or ["+"])
            for p in (w.patients or ["+"])
        ]
        self.claim_topic = f"{prefix}/+/+/+/claim"
        quota = int(w.spool_quota_mb * 1024 * 1024)
        self.spool = Spool(
            w.state_dir / f"spool-{self.id}",
            quota_bytes=quota,
            segment_bytes=min(4 << 20, max(64 << 10, quota // 64)),
            fsync="batch",
        )

    # -- lease bookkeeping ---------------------------------------------------------------------
    def holds(self, key: DeviceKey) -> bool:
        """Still ours: held here, our lease not lapsed, and no live rival claim we lose to."""
        dw = self.held.get(key)
        if dw is None or dw.lease_until <= time.time():
            return False
        rival = self.claims.get(key)
        return rival is None or rival[0] == self.id or rival[1] <= time.time() or rival[0] > self.id

    def forget(self, key: DeviceKey, dw: DeviceWorker) -> None:
        if self.held.get(key) is dw:
            del self.held[key]

    def _key(self, topic: str, leaf: str) -> DeviceKey | None:
        parts = topic.split("/")
        if len(parts) != self._prefix_parts + 4 or parts[-1] != leaf:
            return None
        return parts[-4], parts[-3], parts[-2]

    async def _publish_claim(self, client: aiomqtt.Client, dw: DeviceWorker) -> None:
        now = time.time()
        expires = now + self.cfg.worker.lease_s
        doc = {
            "schema": CLAIM_SCHEMA,
            "device": dw.key[2],
            "worker": self.id,
            "expires": round(expires, 3),
            "lease_s": self.cfg.worker.lease_s,
            "since": payloads.iso(dw.started),
        }
        await client.publish(dw.topics("claim"), json.dumps(doc).encode(), qos=1, retain=True)
        dw.lease_until = expires  # counted from before the publish: never longer than others see

    async def _on_announce(self, client: aiomqtt.Client, key: DeviceKey, payload: object) -> None:
        self.announces += 1
        try:
            doc = json.loads(bytes(payload)) if isinstance(payload, (bytes, bytearray)) else None
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict) or doc.get("schema") != ANNOUNCE_SCHEMA or doc.get("device") != key[2]:
            log.warning("announce for %s/%s is not a %s document: ignored", key[0], key[2], ANNOUNCE_SCHEMA)
            return
        if key in self.held:
            return
        if doc.get("detect_locally", False):
            # Its gateway detects and publishes itself. A second detector started at another
            # moment would give the same spasms other ids (docs/scaling.md): double counting.
            if key not in self._local:
                self._local.add(key)
                log.info("device %s/%s: its gateway detects locally; not claimed", key[0], key[2])
            return
        self._local.discard(key)
        rival = self.claims.get(key)
        if rival is not None and rival[0] != self.id and rival[1] > time.time():
            return  # someone's live lease: not ours to take
        if self.cfg.worker.max_devices and len(self.held) >= self.cfg.worker.max_devices:
            return  # full: a later announce goes to another worker of the group
        dw = DeviceWorker(self, key)
        self.held[key] = dw
        try:
            await self._publish_claim(client, dw)
        except BaseException:
            self.forget(key, dw)
            raise
        if self.held.get(key) is not dw:
            return  # a rival's claim arrived meanwhile and won
        prev = f" (from {rival[0]}, lease lapsed)" if rival is not None and rival[0] != self.id else ""
        log.info("device %s: claimed%s", dw.name, prev)
        dw.start()

    async def _on_claim(self, client: aiomqtt.Client, key: DeviceKey, payload: object) -> None:
        if not payload:
            self.claims.pop(key, None)  # released
            return
        try:
            doc = json.loads(bytes(payload)) if isinstance(payload, (bytes, bytearray)) else {}
            worker, expires = str(doc["worker"]), float(doc["expires"])
        except (ValueError, KeyError, TypeError, RecursionError):
            log.warning("claim for %s/%s is malformed: ignored", key[0], key[2])
            return
        self.claims[key] = (worker, expires)
        dw = self.held.get(key)
        if dw is None or worker == self.id or expires <= time.time():
            return
        # Two live claims: the lower worker id keeps the device, deterministically on both sides.
        if worker < self.id:
            self.conflicts_lost += 1
            log.warning("device %s: also claimed by %s, whose id is lower: letting go", dw.name, worker)
            self.forget(key, dw)
            await dw.stop(goodbye=False)
        else:
            await self._publish_claim(client, dw)  # reassert: the rival lets go when it sees this

    async def _renew(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(self.cfg.worker.renew_s)
            for dw in list(self.held.values()):
                await self._publish_claim(client, dw)

    async def _fence(self) -> None:
        """Stop devices whose lease lapsed (we could not renew): someone else may have them now."""
        last_line = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            for key, dw in list(self.held.items()):
                if dw.task is None:
                    continue  # its claim is being published: not started, nothing to fence yet
                if dw.task.done():
                    exc = None if dw.task.cancelled() else dw.task.exception()
                    if exc is not None:
                        log.error("device %s: stopped by an error: %r", dw.name, exc)
                    self.forget(key, dw)
                elif dw.lease_until <= time.time():
                    log.warning("device %s: lease lapsed without renewal: stopping it here", dw.name)
                    self.forget(key, dw)
                    await dw.stop(goodbye=False)
            self.spool.sync()
            if time.monotonic() - last_line >= STATUS_LINE_S:
                last_line = time.monotonic()
                log.info("%s", self.status_line())

    def status_line(self) -> str:
        batches = sum(dw.feeder.batches for dw in self.held.values())
        events = sum(dw.session.stats.events for dw in self.held.values())
        names = ", ".join(sorted(dw.name for dw in self.held.values())) or "none"
        return (
            f"worker {self.id}: {len(self.held)} device(s) [{names}], {batches} batches, {events} events, "
            f"{self.announces} announces seen, {self.conflicts_lost} claim races lost"
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.claim_topic, qos=1)
        for t in self.announce_topics:
            await client.subscribe(t, qos=1)
        log.info(
            "worker %s: up, group %s, %d announce filter(s)",
            self.id,
            self.cfg.worker.group,
            len(self.announce_topics),
        )
        renew = asyncio.create_task(self._renew(client))
        try:
            async for msg in client.messages:
                topic = str(msg.topic)
                if (key := self._key(topic, "claim")) is not None:
                    await self._on_claim(client, key, msg.payload)
                elif (key := self._key(topic, "announce")) is not None:
                    await self._on_announce(client, key, msg.payload)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew

    async def _release_all(self, client: aiomqtt.Client | None) -> None:
        for key, dw in list(self.held.items()):
            # Goodbye first, then free the lease: a successor's "online" must come after our "offline".
            await dw.stop(goodbye=True)
            self.forget(key, dw)
            if client is not None and self.claims.get(key, (self.id, 0.0))[0] == self.id:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(dw.topics("claim"), b"", qos=1, retain=True)  # clears it

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.5, 10.0)
        self.spool.open()
        # Before any device is claimed: a claimed device's detector is set up on this loop, and
        # importing scipy.signal there (seconds on a loaded host) would stall the lease renewals
        # past lease_s, and another worker would take the device over while this one still ran it.
        await asyncio.to_thread(designs.preload)
        fence = asyncio.create_task(self._fence())
        try:
            while not stop.is_set():
                try:
                    async with _client(
                        self.cfg.mqtt, f"neurospasm-worker-{self.id}", clean_start=True
                    ) as client:
                        backoff.reset()
                        main = asyncio.create_task(self._session(client))
                        stopped = asyncio.create_task(stop.wait())
                        done, _ = await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
                        if main in done:
                            stopped.cancel()
                            main.result()  # raises the MqttError that ended it
                            continue
                        main.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await main
                        await self._release_all(client)
                except aiomqtt.MqttError as exc:
                    delay = backoff.next()
                    log.warning(
                        "worker %s: broker connection lost (%s); again in %.1f s", self.id, exc, delay
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            fence.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fence
            await self._release_all(None)
            self.spool.close()
            log.info("%s; stopped", self.status_line())


async def run_worker(config_path: str) -> int:
    """``neurospasm worker``: run until SIGINT/SIGTERM, then hand the devices back cleanly."""
    cfg = load_worker_config(config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await Worker(cfg).run(stop)
    return 0
