"""The simulator's end of the BLE bridge: a virtual BLE radio served to other processes.

``firmware_sim.ble`` simulates a BLE wearable behind a bleak custom backend, which only exists
inside one process. ``BleBridgeServer`` carries that radio to another process over a Unix socket
(messages: ``ingest.wire.blebridge``): each socket session is one central, and the server plays it
on the in-process radio with the simulator's own backends (``SimBleakScanner``, ``SimBleakClient``),
so pacing, the GATT table, notifications lost while nobody is subscribed, and connects that stall
while the peripheral is out of range are exactly the in-process simulator's. The gateway's end is
``ingest.sources.blebridge``.

``BridgedPeripheral`` adds the fault injector's link schedule, as ``PtyServer`` does for a pty:

* frame faults (loss, corruption, duplication) act on each notification via ``frame_filter``;
* a scheduled *disconnect* takes the peripheral out of range for its duration (the link drops,
  scans miss it, connects stall); a *reboot* also power-cycles the device;
* any link loss (also one the central caused) marks the injector's link down, and the link is up
  again at the central's first write on the new connection (its START), the rule the pty server
  keeps: frames made in between are lost on both accounts, so ``expected_gaps()`` stays exact.

The socket is created mode 0600 (only its owner's processes may drive the simulated device) and
removed when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bleak.exc import BleakDeviceNotFoundError, BleakError

from firmware_sim.ble import OutageCause, SimBleakClient, SimBleakScanner, VirtualBle, VirtualPeripheral
from firmware_sim.device import SimDevice
from firmware_sim.faults import FaultInjector
from ingest.wire.blebridge import (
    VERSION,
    BridgeDecoder,
    BridgeProtocolError,
    encode,
    hexs,
)

__all__ = ["BleBridgeServer", "BridgeSocketError", "BridgedPeripheral"]

#: How often the link schedule is checked, host seconds (as the pty server's tick).
TICK_S = 0.005
#: Unsent bytes a session may hold for a central that stops reading; beyond this, notifications
#: are dropped and counted (``BleBridgeServer.notifications_dropped``), as the pty server's backlog.
MAX_BACKLOG_BYTES = 4 << 20
#: Longest path a Unix socket address holds (Linux ``sun_path`` is 108 bytes with the NUL).
MAX_SOCKET_PATH = 107


class BridgeSocketError(OSError):
    """The socket path cannot be served; the message says why."""


class BridgedPeripheral(VirtualPeripheral):
    """A ``VirtualPeripheral`` whose faults come from a ``FaultInjector`` (see the module docstring)."""

    def __init__(self, device: SimDevice, *, injector: FaultInjector | None = None, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self.injector = injector
        if injector is not None:
            device.frame_filter = injector
            injector.host_per_device = 1.0 / (self.speed * (1.0 + self.drift_ppm * 1e-6))
        self._schedule_task: asyncio.Task[None] | None = None
        self._cause: OutageCause | None = None
        self._down_for = 0.0
        #: (host UTC, "down"|"up") of every link change, as ``PtyServer.link_log``.
        self.link_log: list[tuple[float, str]] = []
        #: Host UTC of the central's first write (its START: a vendor device's sample 0), or None.
        self.t_host_first_write: float | None = None

    def _power_on(self) -> None:
        super()._power_on()
        if self.injector is not None and self.injector.needs_link_control:
            self._schedule_task = asyncio.get_running_loop().create_task(
                self._run_schedule(), name=f"ble-faults-{self.address}"
            )

    def _power_off(self) -> asyncio.Task[None] | None:
        task, self._schedule_task = self._schedule_task, None
        if task is not None:
            task.cancel()
        return super()._power_off()

    def _pump(self) -> None:
        inj = self.injector
        if inj is not None:
            t = self.device_time()
            self.device.battery_pct = inj.battery_pct(t)
            self.device.contact_mask = inj.contact_mask(t)
            inj.advance(t, time.time())
        super()._pump()

    def _drop_link(self, cause: OutageCause) -> None:
        was = self._link is not None
        super()._drop_link(cause)  # what was ready still goes out on the old link
        inj = self.injector
        if was and inj is not None and inj.link_up:
            inj.link_down(self.device_time(), "reboot" if cause == "reboot" else "disconnect", time.time(),
                          self._down_for)  # fmt: skip
        if was:
            self.link_log.append((time.time(), "down"))

    def _write(self, handle: int, data: bytes) -> None:
        if self.t_host_first_write is None:
            self.t_host_first_write = time.time()
        inj = self.injector
        if inj is not None and not inj.link_up:
            self._pump()  # frames ready before this instant were made while the link was down
            inj.link_up_now(self.device_time(), time.time())
            self.link_log.append((time.time(), "up"))
        super()._write(handle, data)

    async def _run_schedule(self) -> None:
        inj = self.injector
        assert inj is not None
        while True:
            for ev in inj.due_events(self.device_time()):
                self._down_for = ev.duration_s
                if ev.action == "disconnect":
                    self.set_available(False)  # out of range: the link drops, connects stall
                elif ev.action == "reboot":
                    if self._link is None:  # nobody connected: the injector still sees the reboot
                        inj.link_down(self.device_time(), "reboot", time.time(), ev.duration_s)
                    self.reboot()
                    self.set_available(False)
                else:  # reconnect / power_on: in range again
                    self.set_available(True)
                self._down_for = 0.0
            await asyncio.sleep(TICK_S)


def _prepare_path(path: Path) -> None:
    """Refuse a path we must not take; remove a stale socket left by a killed simulator."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise BridgeSocketError(
            f"{path}: {len(os.fsencode(path))} bytes, longer than a Unix socket path may be "
            f"({MAX_SOCKET_PATH}); choose a shorter one"
        )
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise BridgeSocketError(f"{path}: exists and is not a socket; not replacing it")
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: a stale socket
        return
    finally:
        probe.close()
    raise BridgeSocketError(f"{path}: another simulator is listening there")


class BleBridgeServer:
    """``async with BleBridgeServer(air, path):`` serves ``air``'s peripherals on ``path``."""

    def __init__(self, air: VirtualBle, path: str | Path) -> None:
        self.air = air
        self.path = Path(path)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.sessions_served = 0
        self.protocol_errors = 0
        #: Notifications dropped because a central did not read its socket (``MAX_BACKLOG_BYTES``).
        self.notifications_dropped = 0

    async def __aenter__(self) -> BleBridgeServer:
        _prepare_path(self.path)
        old = os.umask(0o177)  # created 0600: no window in which others could connect
        try:
            self._server = await asyncio.start_unix_server(self._session, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Close each session's socket: its reader sees the end of the stream and the session
        # ends itself (dropping its central's link), so no task is cancelled mid-operation.
        for writer in list(self._writers):
            writer.close()
        if self._sessions:
            _, late = await asyncio.wait(list(self._sessions), timeout=2.0)
            for task in late:
                task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self._writers.add(writer)
        self.sessions_served += 1
        session = _Session(self, writer)
        try:
            await session.run(reader)
        finally:
            self._sessions.discard(task)
            self._writers.discard(writer)
            await session.end()
            writer.close()


class _Session:
    """One central on the bridge: a scanner, or a client of one peripheral."""

    def __init__(self, server: BleBridgeServer, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        self.scanner: SimBleakScanner | None = None
        self.client: SimBleakClient | None = None
        self.hello = False

    def send(self, msg: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(msg))

    async def run(self, reader: asyncio.StreamReader) -> None:
        """Read and handle requests in order. A connect (which may wait for the peripheral to come
        in range) runs while the socket is still read, so a central that gives up and leaves is
        noticed at once and its connect abandoned, not completed for nobody."""
        decoder = BridgeDecoder(f"BLE bridge {self.server.path}")
        connecting: asyncio.Task[None] | None = None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    decoder.close()
                    return
                for msg in decoder.feed(data):
                    if connecting is not None:
                        await connecting  # requests are answered in order
                        connecting = None
                    if msg["op"] == "connect":
                        connecting = asyncio.get_running_loop().create_task(self.handle(msg))
                    else:
                        await self.handle(msg)
        except BridgeProtocolError as exc:
            self.server.protocol_errors += 1
            with contextlib.suppress(BridgeProtocolError):
                self.send({"op": "error", "id": None, "code": "protocol", "message": str(exc)})
        except (OSError, ConnectionError):
            return
        finally:
            if connecting is not None and not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting

    async def end(self) -> None:
        """The central left (or was thrown out): stop its scan, drop its link."""
        scanner, self.scanner = self.scanner, None
        if scanner is not None:
            await scanner.stop()
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            await client.disconnect()

    def _char(self, handle: int) -> Any:
        client = self.client
        if client is None or not client.is_connected:
            raise BleakError("not connected")
        char = client.services.get_characteristic(handle) if client.services is not None else None
        if char is None:
            raise BleakError(f"no characteristic with handle 0x{handle:04x}")
        return char

    async def handle(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "hello":
            self.hello = True
            self.send({"op": "hello", "version": VERSION})
            return
        rid = msg.get("id")
        if not self.hello:
            raise BridgeProtocolError(f"{op} before hello")
        try:
            reply = await self._do(op, msg)
        except TimeoutError as exc:
            self.send({"op": "error", "id": rid, "code": "timeout", "message": str(exc) or "timed out"})
        except BleakDeviceNotFoundError as exc:
            self.send({"op": "error", "id": rid, "code": "not_found", "message": str(exc)})
        except BleakError as exc:
            self.send({"op": "error", "id": rid, "code": "error", "message": str(exc)})
        else:
            self.send({"op": "ok", "id": rid, **reply})

    async def _do(self, op: str, msg: dict[str, Any]) -> dict[str, Any]:
        if op == "scan":
            if self.scanner is not None or self.client is not None:
                raise BleakError("this bridge session is already in use")
            self.scanner = SimBleakScanner(self._heard, [u.lower() for u in msg["service_uuids"]] or None)
            await self.scanner.start()
            return {}
        if op == "connect":
            if self.scanner is not None or self.client is not None:
                raise BleakError("this bridge session is already in use (one connection per session)")
            client = SimBleakClient(msg["address"], disconnected_callback=self._lost)
            await client.connect(pair=False, timeout=float(msg["timeout_s"]))
            self.client = client
            return {"name": client.name, "mtu": client.mtu_size, "services": _table(client)}
        if op == "disconnect":
            leaving, self.client = self.client, None
            if leaving is not None and leaving.is_connected:
                await leaving.disconnect()
            return {}
        if op == "start_notify":
            char = self._char(msg["handle"])
            handle = msg["handle"]

            def forward(data: bytearray) -> None:
                if self.writer.transport.get_write_buffer_size() > MAX_BACKLOG_BYTES:
                    self.server.notifications_dropped += 1  # a central that stopped reading
                    return
                self.send({"op": "notify", "handle": handle, "data": hexs(data)})

            await self.client.start_notify(char, forward)  # type: ignore[union-attr]
            return {}
        if op == "stop_notify":
            await self.client.stop_notify(self._char(msg["handle"]))  # type: ignore[union-attr]
            return {}
        if op == "write":
            char = self._char(msg["handle"])
            await self.client.write_gatt_char(  # type: ignore[union-attr]
                char, bytes.fromhex(msg["data"]), msg["response"]
            )
            return {}
        if op == "read":
            data = await self.client.read_gatt_char(self._char(msg["handle"]))  # type: ignore[union-attr]
            return {"data": hexs(data)}
        raise BleakError(f"{op} is not a request")

    def _heard(self, device: Any, adv: Any) -> None:
        self.send({"op": "adv", "address": device.address, "name": adv.local_name or "",
                   "rssi": int(adv.rssi), "service_uuids": list(adv.service_uuids)})  # fmt: skip

    def _lost(self) -> None:
        if self.client is not None:
            self.send({"op": "disconnected", "reason": "the peripheral dropped the link"})


def _table(client: SimBleakClient) -> list[dict[str, Any]]:
    return [
        {
            "uuid": s.uuid,
            "handle": s.handle,
            "characteristics": [
                {
                    "uuid": c.uuid,
                    "handle": c.handle,
                    "properties": list(c.properties),
                    "descriptors": [{"uuid": d.uuid, "handle": d.handle} for d in c.descriptors],
                }
                for c in s.characteristics
            ],
        }
        for s in (client.services or [])
    ]
