"""Serve a ``SimDevice`` on a pseudo-terminal, so the gateway opens it with pyserial like hardware.

The server holds the master side of a pty; the slave path (``/dev/pts/N``) is what a USB-serial
wearable's ``/dev/ttyACM0`` would be. Time is paced by the host's monotonic clock, optionally
scaled by the device's crystal error (``drift_ppm``), so the gateway's clock model has real drift
to fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
import time
import tty
from dataclasses import dataclass

from firmware_sim.device import SimDevice

TICK_S = 0.005


@dataclass(slots=True)
class PtyStats:
    bytes_written: int = 0
    bytes_dropped: int = 0  # nobody had the port open, or the reader was too slow


class PtyServer:
    """``async with PtyServer(device) as srv: print(srv.path)``: the device runs while inside."""

    def __init__(self, device: SimDevice, *, drift_ppm: float = 0.0, speed: float = 1.0) -> None:
        self.device = device
        self.drift_ppm = drift_ppm
        self.speed = speed
        self.stats = PtyStats()
        self._master = -1
        self._slave = -1
        self.path = ""
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0

    async def __aenter__(self) -> PtyServer:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        # Keep our own handle on the slave open so the master never sees EIO while the gateway
        # is between opens (a real USB device keeps existing when no program has it open).
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._master, self._on_readable)
        self._task = asyncio.create_task(self._run(), name=f"pty-sim-{self.device.device_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._master)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def device_time(self) -> float:
        """Seconds on the device's own (drifting) clock since the server started."""
        return (time.monotonic() - self._t0) * self.speed * (1.0 + self.drift_ppm * 1e-6)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return
        if data:
            self.device.handle_bytes(data)

    def _write(self, data: bytes) -> None:
        try:
            n = os.write(self._master, data)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                self.stats.bytes_dropped += len(data)
                return
            raise
        self.stats.bytes_written += n
        self.stats.bytes_dropped += len(data) - n

    async def _run(self) -> None:
        while True:
            chunks = self.device.frames_until(self.device_time())
            if chunks:
                self._write(b"".join(chunks))
            await asyncio.sleep(TICK_S)
