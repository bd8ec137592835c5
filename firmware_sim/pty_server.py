"""Serve a ``SimDevice`` on a pseudo-terminal, so the gateway opens it with pyserial like hardware.

The server holds the master side of a pty; the slave path (``/dev/pts/N``) is what a USB-serial
wearable's ``/dev/ttyACM0`` would be. Time is paced by the host's monotonic clock, optionally
scaled by the device's crystal error (``drift_ppm``), so the gateway's clock model has real drift
to fit.

With a ``FaultInjector`` the server also plays the link: a *disconnect* closes the pty (the
gateway's read fails, as on a USB unplug) and creates a new one after the outage; a *reboot* does
the same and power-cycles the device (counters restart, idle until START). Because a new pty gets
a new ``/dev/pts/N``, the server publishes a stable symlink (``.../ttySIM0 -> /dev/pts/N``, like
udev's ``/dev/serial/by-id``) and the gateway is configured with that; the link is removed while
the device is unplugged, so opening it fails exactly as for a missing device.

Two rules keep the injector's ground truth exact over a real pty:

* After a (re)created pty the device sends nothing until the host has sent a command (START):
  a USB CDC device knows when the host opens the port (DTR). Without this, frames written before
  the gateway reopened would be flushed by its ``reset_input_buffer`` at an unknowable point.
  Frames the device makes meanwhile are lost, as during the outage itself.
* Before a pty is closed the server waits (bounded) until the gateway has read what was already
  written (``FIONREAD`` on the slave), so "delivered" in the truth means "read by the host".

Arrival jitter (``jitter_ms``) delays each write by a half-normal random time, keeping byte order
(a serial line is FIFO).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import os
import tempfile
import termios
import time
import tty
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_sim.device import SimDevice
from firmware_sim.faults import FaultInjector, LinkEvent

TICK_S = 0.005
#: Longest the server waits for the gateway to read what it was sent before a pty is closed.
DRAIN_TIMEOUT_S = 1.0
#: Unsent bytes kept when the reader is slow; beyond this whole writes are dropped and counted.
MAX_BACKLOG_BYTES = 4 << 20


@dataclass(slots=True)
class PtyStats:
    bytes_written: int = 0
    bytes_dropped: int = 0  # the reader was too slow for the backlog, or nobody listened
    frames_dropped_unheard: int = 0  # made while the host was not listening (no fault injector)
    ptys_created: int = 0
    disconnects: int = 0
    reboots: int = 0


class PtyServer:
    """``async with PtyServer(device) as srv: print(srv.path)``: the device runs while inside.

    Parameters:
        device: the simulated wearable.
        drift_ppm: the device crystal's error against the host clock.
        speed: device seconds per host second (tests may run a scenario faster than real time).
        injector: faults and the link schedule; also installed as ``device.frame_filter``.
        link_path: where to keep the stable symlink. Default: a fresh temp dir when the injector
            has disconnects or reboots, else no symlink (``path`` is the ``/dev/pts/N`` itself).
        jitter_ms: std of the half-normal arrival delay; default the scenario's (via injector).
        jitter_seed: seed of the jitter RNG.
    """

    def __init__(
        self,
        device: SimDevice,
        *,
        drift_ppm: float = 0.0,
        speed: float = 1.0,
        injector: FaultInjector | None = None,
        link_path: str | Path | None = None,
        jitter_ms: float | None = None,
        jitter_seed: int = 0,
    ) -> None:
        self.device = device
        self.drift_ppm = drift_ppm
        self.speed = speed
        self.injector = injector
        if injector is not None:
            device.frame_filter = injector
            injector.host_per_device = 1.0 / (speed * (1.0 + drift_ppm * 1e-6))
        self.jitter_ms = (
            jitter_ms if jitter_ms is not None else (injector.faults.jitter_ms if injector else 0.0)
        )
        self._jitter_rng = np.random.default_rng([jitter_seed, 0x717])
        self.stats = PtyStats()
        self._master = -1
        self._slave = -1
        self.pts_path = ""
        self._link: Path | None = Path(link_path) if link_path is not None else None
        self._link_dir: tempfile.TemporaryDirectory[str] | None = None
        self.path = ""
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._wall0 = 0.0
        self._listening = False
        self._commands_seen = 0
        self._outbox: deque[tuple[float, bytes]] = deque()  # (release time, bytes), FIFO
        self._backlog = bytearray()
        self._last_release = 0.0
        self._paused = False
        #: (host UTC, "down"|"up") of every link change: what a capture of this run would mark.
        self.link_log: list[tuple[float, str]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> PtyServer:
        if self._link is None and self.injector is not None and self.injector.needs_link_control:
            self._link_dir = tempfile.TemporaryDirectory(prefix="neurospasm-sim-")
            self._link = Path(self._link_dir.name) / "ttySIM0"
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self._open_pty()
        self._task = asyncio.create_task(self._run(), name=f"pty-sim-{self.device.device_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close_pty()
        if self._link is not None:
            with contextlib.suppress(OSError):
                self._link.unlink()
        if self._link_dir is not None:
            self._link_dir.cleanup()

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        # Keep our own handle on the slave open so the master never sees EIO while the gateway
        # is between opens (a real USB device keeps existing when no program has it open).
        os.set_blocking(self._master, False)
        self.pts_path = os.ttyname(self._slave)
        self.stats.ptys_created += 1
        if self._link is not None:
            tmp = self._link.with_name(self._link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(self.pts_path, tmp)
            os.replace(tmp, self._link)  # atomic: a reader sees the old link or the new, never none
            self.path = str(self._link)
        else:
            self.path = self.pts_path
        self._listening = self.device.autostart  # a listen-only tool never sends START
        self._commands_seen = self.device.stats.commands
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)

    def _close_pty(self) -> None:
        if self._master < 0:
            return
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._master)
        if self._link is not None:
            with contextlib.suppress(OSError):
                self._link.unlink()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1
        self._listening = False
        self._backlog.clear()

    # -- time ----------------------------------------------------------------------------------
    def device_time(self) -> float:
        """Seconds on the device's own (drifting) clock since the server started."""
        return (time.monotonic() - self._t0) * self.speed * (1.0 + self.drift_ppm * 1e-6)

    # -- host -> device ------------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return
        if data:
            self.device.handle_bytes(data)
            if not self._listening and self.device.stats.commands > self._commands_seen:
                self._listening = True
                self.link_log.append((time.time(), "up"))
                if self.injector is not None and not self.injector.link_up:
                    self.injector.link_up_now(self.device_time(), time.time())

    # -- device -> host ------------------------------------------------------------------------
    def _queue(self, data: bytes) -> None:
        now = time.monotonic()
        delay = abs(float(self._jitter_rng.normal(0.0, self.jitter_ms))) * 1e-3 if self.jitter_ms > 0 else 0.0
        self._last_release = max(self._last_release, now + delay)
        self._outbox.append((self._last_release, data))

    def _pump(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        while self._outbox and (everything or self._outbox[0][0] <= now):
            self._backlog += self._outbox.popleft()[1]
        if not self._backlog or self._master < 0:
            return
        try:
            n = os.write(self._master, self._backlog)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                n = 0
            else:
                raise
        self.stats.bytes_written += n
        del self._backlog[:n]
        if len(self._backlog) > MAX_BACKLOG_BYTES:
            self.stats.bytes_dropped += len(self._backlog)
            self._backlog.clear()

    def _unread_bytes(self) -> int:
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(self._slave, termios.FIONREAD, buf, True)
        except OSError:
            return 0
        return int(buf[0])

    async def _drain(self) -> None:
        """Give the gateway what is in flight and wait until it has read it (bounded)."""
        if self.injector is not None:
            held = self.injector.flush()
            if held:
                self._queue(b"".join(held))
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        self._pump(everything=True)
        while time.monotonic() < deadline:
            self._pump(everything=True)
            await asyncio.sleep(0.01)  # let the tty layer push its flip buffer to the reader
            if not self._backlog and self._unread_bytes() == 0:
                return

    async def quiesce(self) -> None:
        """Stop making frames and wait until the host has read everything sent so far.

        For tests that compare the host's view with the truth: after this nothing is in flight,
        so every frame the truth calls delivered has been read.
        """
        self._paused = True
        await self._drain()

    # -- link events ---------------------------------------------------------------------------
    async def _link_event(self, ev: LinkEvent) -> None:
        assert self.injector is not None
        t_dev = self.device_time()
        if ev.action in ("disconnect", "reboot"):
            # The device keeps its clock running through the outage: mark the link down first so
            # every frame made from now on is lost, then hand over what was already sent.
            self.injector.link_down(ev.t_s, "reboot" if ev.action == "reboot" else "disconnect", time.time(),
                                    ev.duration_s)  # fmt: skip
            self.link_log.append((time.time(), "down"))
            await self._drain()
            self._close_pty()
            if ev.action == "reboot":
                self.stats.reboots += 1
                self.device.reboot(max(ev.t_s, t_dev))
            else:
                self.stats.disconnects += 1
        else:  # reconnect / power_on: the port exists again; the link is up once the host listens
            self._open_pty()

    async def _run(self) -> None:
        dev = self.device
        inj = self.injector
        while True:
            if self._paused:
                await asyncio.sleep(TICK_S)
                continue
            t = self.device_time()
            if inj is not None:
                for ev in inj.due_events(t):
                    await self._link_event(ev)
                t = self.device_time()
                dev.battery_pct = inj.battery_pct(t)
                dev.contact_mask = inj.contact_mask(t)
                inj.advance(t, time.time())
            chunks = dev.frames_until(t)
            if chunks:
                if self._listening and self._master >= 0:
                    self._queue(b"".join(chunks))
                else:
                    self.stats.frames_dropped_unheard += len(chunks)
                    self.stats.bytes_dropped += sum(len(c) for c in chunks)
            self._pump()
            await asyncio.sleep(TICK_S)
