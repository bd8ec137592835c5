"""Delivery: spool -> sink, with batching, backoff and quarantine. Owned by the pipeline.

Every record bound for a sink is first appended to the durable spool; one ``Delivery`` task per
sink reads the oldest records, sends them, and acknowledges them only after the sink confirmed.
So a broker or database outage, a slow link, or a kill -9 of the gateway loses nothing that was
spooled: on restart the same records are sent again (at-least-once; consumers dedupe by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest.outputs.sinks.base import SinkError, SinkRejected
from ingest.outputs.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

State = Literal["starting", "connected", "down"]


@dataclass
class Backoff:
    """Jittered exponential backoff ("full jitter"), reset after a success."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self, retry_after: float | None = None) -> float:
        cap = min(self.max_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        delay = self.rng.uniform(cap / 2, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_s * 4))
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class DeliveryStats:
    delivered_records: int = 0
    batches: int = 0
    failures: int = 0
    quarantined_records: int = 0
    last_error: str = ""
    down_since: float | None = None


class Delivery:
    """Drain one sink's records from the spool for as long as the task runs.

    Parameters:
        spool: the shared spool (single-threaded use from the event loop).
        sink_name: the sink's key in the spool.
        connect: a factory returning the sink as an async context manager (a fresh one per
            connection attempt: clients are not reused across failures).
        max_records / max_bytes: one batch.
        linger_s: how long to wait for a batch to fill before sending a partial one (0 for MQTT
            clinical messages, about a second for InfluxDB).
        quarantine_dir: where records the server refuses as malformed are kept for a human.
    """

    def __init__(
        self,
        spool: Spool,
        sink_name: str,
        connect: Callable[[], AbstractAsyncContextManager[Any]],
        *,
        max_records: int = 500,
        max_bytes: int = 1 << 20,
        linger_s: float = 0.0,
        backoff: Backoff | None = None,
        quarantine_dir: Path | None = None,
        on_state: Callable[[str, State], None] | None = None,
    ) -> None:
        self.spool = spool
        self.sink_name = sink_name
        self._connect = connect
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.backoff = backoff or Backoff()
        self.quarantine_dir = quarantine_dir
        self.stats = DeliveryStats()
        self.state: State = "starting"
        self.sink: Any = None
        self._wake = asyncio.Event()
        self._on_state = on_state

    def notify(self) -> None:
        """New records were spooled for this sink: wake the sender."""
        self._wake.set()

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            if state == "down" and self.stats.down_since is None:
                self.stats.down_since = time.time()
            elif state == "connected":
                self.stats.down_since = None
            if self._on_state:
                self._on_state(self.sink_name, state)

    async def run(self) -> None:
        while True:
            try:
                async with self._connect() as sink:
                    self.sink = sink
                    self._set_state("connected")
                    await self._drain_forever(sink)
            except SinkError as exc:
                self._failed(str(exc), exc.retry_after)
            except OSError as exc:  # a sink that leaked a socket error is still only "down"
                self._failed(f"{type(exc).__name__}: {exc}", None)
            except Exception as exc:
                # A bug, not an outage: say so loudly, but keep the data flowing once it clears
                # (the records stay in the spool either way).
                log.exception("%s: unexpected error in delivery", self.sink_name)
                self._failed(f"{type(exc).__name__}: {exc}", None)
            finally:
                self.sink = None
            delay = self.backoff.next(self._retry_after)
            log.warning(
                "%s: delivery paused, retrying in %.1f s (%s)", self.sink_name, delay, self.stats.last_error
            )
            await asyncio.sleep(delay)

    _retry_after: float | None = None

    def _failed(self, message: str, retry_after: float | None) -> None:
        self.stats.failures += 1
        self.stats.last_error = message
        self._retry_after = retry_after
        self._set_state("down")

    async def _drain_forever(self, sink: Any) -> None:
        while True:
            records = self.spool.peek(self.sink_name, self.max_records, self.max_bytes)
            if not records:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger_s > 0 and len(records) < self.max_records:
                size = sum(len(r.payload) for r in records)
                if size < self.max_bytes // 2:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._fill(), self.linger_s)
                    records = self.spool.peek(self.sink_name, self.max_records, self.max_bytes)
            await self._send(sink, records)
            self.backoff.reset()

    async def _fill(self) -> None:
        """Return once the pending batch is full enough to send (wait_for bounds the linger)."""
        while True:
            self._wake.clear()
            await self._wake.wait()
            records = self.spool.peek(self.sink_name, self.max_records, self.max_bytes)
            if (
                len(records) >= self.max_records
                or sum(len(r.payload) for r in records) >= self.max_bytes // 2
            ):
                return

    async def _send(self, sink: Any, records: list[SpoolRecord]) -> None:
        try:
            await sink.send([r.payload for r in records])
        except SinkRejected as exc:
            bad = set(exc.bad)
            self._quarantine([records[i] for i in sorted(bad)], str(exc))
            # The rest of the batch was delivered by the sink (it bisected around the bad ones).
        self.spool.ack(self.sink_name, records)
        self.stats.delivered_records += len(records)
        self.stats.batches += 1

    def _quarantine(self, records: list[SpoolRecord], reason: str) -> None:
        self.stats.quarantined_records += len(records)
        log.error(
            "%s: %d record(s) refused by the server and quarantined: %s", self.sink_name, len(records), reason
        )
        if self.quarantine_dir is None:
            return
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        path = self.quarantine_dir / f"{self.sink_name}-{time.strftime('%Y%m%d', time.gmtime())}.quarantine"
        with open(path, "ab") as fh:
            fh.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {reason}\n".encode())
            for r in records:
                fh.write(r.payload if r.payload.endswith(b"\n") else r.payload + b"\n")

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "delivered": self.stats.delivered_records,
            "failures": self.stats.failures,
            "quarantined": self.stats.quarantined_records,
            "down_s": round(time.time() - self.stats.down_since, 1) if self.stats.down_since else 0.0,
        }
