"""The transport contract: connect on enter, yield timestamped byte chunks, release on exit."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self


class TransportError(Exception):
    """The link failed to open or broke; the pipeline reconnects with backoff."""


class TransportClosed(TransportError):
    """The link went away (unplugged, out of range, end of a replay)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes as they arrived, stamped with host time at arrival.

    ``t_host`` is UTC seconds (``time.time()``) read in the hardware callback itself, before any
    queueing, so queueing delay never leaks into the clock model.
    """

    t_host: float
    data: bytes
    #: Where on the link the bytes came from: the BLE characteristic UUID for devices that send on
    #: several (a Myo's four EMG characteristics), "" for a plain byte stream.
    source: str = ""
    #: Host monotonic seconds at the same moment (never steps, unlike ``t_host``); None when not
    #: known (a v1 capture, a file). ``ingest.stream.clock.HostClock`` uses it to detect steps.
    t_mono: float | None = None


@dataclass(slots=True)
class TransportStats:
    chunks: int = 0
    bytes: int = 0
    dropped_chunks: int = 0  # receive queue full: counted, never silent
    dropped_bytes: int = 0
    connects: int = 0
    disconnects: int = 0


@dataclass
class Transport:
    """Base class: a bounded receive queue fed by a callback, drained by ``read``.

    Subclasses implement ``_open`` / ``_close`` / ``write`` and call ``_received`` from their
    hardware callback, which only timestamps and enqueues.
    """

    name: str = "transport"
    queue_size: int = 4096
    stats: TransportStats = field(default_factory=TransportStats)

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue(self.queue_size)

    async def __aenter__(self) -> Self:
        self._queue = asyncio.Queue(self.queue_size)
        await self._open()
        self.stats.connects += 1
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def write(self, data: bytes, char_uuid: str | None = None) -> None:
        """Send bytes to the device (commands); ``char_uuid`` picks a BLE characteristic."""
        raise NotImplementedError

    def _received(self, data: bytes, t_host: float | None = None, source: str = "") -> None:
        """Hardware callback path: timestamp and enqueue, nothing else."""
        chunk = Chunk(time.time() if t_host is None else t_host, bytes(data), source, time.monotonic())
        try:
            self._queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.stats.dropped_chunks += 1
            self.stats.dropped_bytes += len(data)
            return
        self.stats.chunks += 1
        self.stats.bytes += len(data)

    def _lost(self, exc: BaseException) -> None:
        """The link broke: wake the reader with the error (a full queue still gets it)."""
        self.stats.disconnects += 1
        while True:
            try:
                self._queue.put_nowait(exc)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.stats.dropped_chunks += 1

    @property
    def pending(self) -> int:
        """Chunks received and queued that ``read`` has not handed out yet."""
        return self._queue.qsize()

    async def read(self) -> Chunk:
        """Next chunk; raises TransportClosed (or another TransportError) when the link is gone."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item
