"""A bleak backend whose radio is a simulator in another process: the BLE bridge's central end.

``neurospasm sim --device myo --ble-socket PATH`` serves a simulated BLE wearable on a Unix
socket (``ingest.wire.blebridge`` defines the messages). This module is a bleak custom backend
(``BaseBleakClient`` / ``BaseBleakScanner``) that talks to that socket, so the gateway's own BLE
transport (``ingest.sources.ble.BleTransport``: scan, connect, services, ``start_notify``,
``write_gatt_char``, the disconnected callback, its reconnect ladder) runs unchanged against the
simulator from another process, as it runs against BlueZ on a gateway with a radio.

Select it per device in the gateway config (``ble_bridge = "/path/to.sock"`` in a ``[[devices]]``
table with ``transport = "ble"``); ``bridge_backends(path)`` gives the two classes bound to a path.

Failure behaviour, on purpose like a real stack's: no simulator at the path is a ``BleakError``
at scan or connect (the runner backs off and retries); the simulator going away is a disconnect;
a malformed message is a ``BleakError`` naming the offset and closes the session; every request
waits at most its timeout. Nothing here logs notification contents (patient data).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError

from ingest.wire.blebridge import (
    VERSION,
    BridgeDecoder,
    BridgeProtocolError,
    encode,
    gatt_table_ok,
    hexs,
)

__all__ = ["BridgeBleakClient", "BridgeBleakScanner", "BridgeLink", "bridge_backends"]

#: Bound on a request the simulator answers at once (everything but connect).
REQUEST_TIMEOUT_S = 5.0
#: Bound on opening the socket and exchanging ``hello``.
OPEN_TIMEOUT_S = 3.0


class BridgeLink:
    """One socket session with the simulator: requests with futures, events to a callback.

    ``on_event(msg)`` gets every message without an ``id`` (adv, notify, disconnected);
    ``on_closed(reason)`` is called once when the session ends for any reason.
    """

    def __init__(
        self,
        path: str,
        on_event: Callable[[dict[str, Any]], None],
        on_closed: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self._on_event = on_event
        self._on_closed = on_closed
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self.closed_reason = ""

    async def open(self) -> None:
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        except TimeoutError:
            raise BleakError(f"BLE bridge {self.path}: no answer within {OPEN_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise BleakError(
                f"BLE bridge {self.path}: cannot connect ({exc.strerror or exc}); is "
                "`neurospasm sim --ble-socket` running?"
            ) from None
        self._hello = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._read(), name=f"ble-bridge {self.path}")
        self._send({"op": "hello", "version": VERSION})
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                hello = await self._hello
        except TimeoutError:
            await self.close("no hello")
            raise BleakError(f"BLE bridge {self.path}: no hello within {OPEN_TIMEOUT_S:g} s") from None
        if hello["version"] != VERSION:
            await self.close("version mismatch")
            raise BleakError(
                f"BLE bridge {self.path}: the simulator speaks bridge version {hello['version']}, "
                f"this gateway {VERSION}"
            )

    def _send(self, msg: dict[str, Any]) -> None:
        if self._writer is None or self._writer.is_closing():
            raise BleakError(f"BLE bridge {self.path}: session closed ({self.closed_reason or 'not open'})")
        self._writer.write(encode(msg))

    async def request(self, op: str, wait_s: float = REQUEST_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        """Send a request and wait (bounded) for its answer; ``error`` answers raise."""
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._send({"op": op, "id": rid, **fields})
            async with asyncio.timeout(wait_s):
                reply = await fut
        except TimeoutError:
            raise BleakError(f"BLE bridge {self.path}: no answer to {op} within {wait_s:g} s") from None
        finally:
            self._pending.pop(rid, None)
        if reply["op"] == "error":
            code, text = reply["code"], reply["message"]
            if code == "timeout":
                raise TimeoutError(text)
            if code == "not_found":
                raise BleakDeviceNotFoundError(str(fields.get("address", "")), text)
            raise BleakError(f"BLE bridge {self.path}: {op}: {text}")
        return reply

    async def _read(self) -> None:
        assert self._reader is not None
        decoder = BridgeDecoder(f"BLE bridge {self.path}")
        reason = "the simulator closed the bridge"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    decoder.close()
                    break
                for msg in decoder.feed(data):
                    self._dispatch(msg)
        except BridgeProtocolError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"BLE bridge {self.path}: {exc.strerror or exc}"
        finally:
            self._finish(reason)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(msg)
            return
        rid = msg.get("id")
        if op in ("ok", "error") and rid is not None:
            fut = self._pending.get(rid)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if op == "error":  # not about a request: the simulator gives up on this session
            self.closed_reason = msg["message"]
            return
        self._on_event(msg)

    def _finish(self, reason: str) -> None:
        if not self.closed_reason:
            self.closed_reason = reason
        for fut in [*self._pending.values(), *([self._hello] if self._hello else [])]:
            if not fut.done():
                fut.set_exception(BleakError(self.closed_reason))
        if self._writer is not None:
            self._writer.close()
        callback, self._on_closed = self._on_closed, None
        if callback is not None:
            callback(self.closed_reason)

    async def close(self, reason: str = "closed by the central") -> None:
        if not self.closed_reason:
            self.closed_reason = reason
        self._on_closed = None  # a deliberate close is not a loss
        task, self._task = self._task, None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class BridgeBleakScanner(BaseBleakScanner):
    """bleak scanner backend that hears the advertisements of the simulator at ``socket_path``."""

    socket_path: ClassVar[str] = ""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._filter = list(service_uuids or [])
        self._link: BridgeLink | None = None

    async def start(self) -> None:
        if not self.socket_path:
            raise BleakError("BridgeBleakScanner has no socket_path: use bridge_backends(path)")
        self.seen_devices = {}
        link = BridgeLink(self.socket_path, self._on_event)
        await link.open()
        self._link = link
        await link.request("scan", service_uuids=self._filter)

    async def stop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    def _on_event(self, msg: dict[str, Any]) -> None:
        if msg["op"] != "adv":
            return
        adv = AdvertisementData(
            local_name=msg["name"] or None, manufacturer_data={}, service_data={},
            service_uuids=list(msg["service_uuids"]), tx_power=None, rssi=msg["rssi"],
            platform_data=(msg["address"],),
        )  # fmt: skip
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        address = msg["address"]
        device = self.create_or_update_device(address, address, msg["name"] or None, address, adv)
        self.call_detection_callbacks(device, adv)


class BridgeBleakClient(BaseBleakClient):
    """bleak client backend for one connection to a peripheral of the simulator at ``socket_path``.

    Like the BlueZ backend, the disconnected callback fires on every disconnection, also one the
    central asked for; an unsolicited one (the simulator dropped the link, or went away) is
    scheduled on the loop.
    """

    socket_path: ClassVar[str] = ""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._link: BridgeLink | None = None
        self._connected = False
        self._name = ""
        self._mtu = 23
        self._notify: dict[int, NotifyCallback] = {}

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if not self.socket_path:
            raise BleakError("BridgeBleakClient has no socket_path: use bridge_backends(path)")
        timeout = float(kwargs.get("timeout", self._timeout))
        link = BridgeLink(self.socket_path, self._on_event, self._on_closed)
        await link.open()
        try:
            reply = await link.request("connect", timeout + 1.0, address=self.address, timeout_s=timeout)
            services = gatt_table_ok(reply.get("services"), f"BLE bridge {self.socket_path}: connect")
            mtu = reply.get("mtu")
            name = reply.get("name")
        except BridgeProtocolError as exc:
            await link.close()
            raise BleakError(str(exc)) from None
        except BaseException:
            await link.close()
            raise
        self._link = link
        self._mtu = mtu if isinstance(mtu, int) and not isinstance(mtu, bool) and mtu >= 23 else 23
        self._name = name if isinstance(name, str) else ""
        self.services = self._table(services)
        self._connected = True

    def _table(self, services: list[dict[str, Any]]) -> BleakGATTServiceCollection:
        out = BleakGATTServiceCollection()

        def max_wwr() -> int:
            return self._mtu - 3

        for s in services:
            service = BleakGATTService(None, s["handle"], s["uuid"])
            out.add_service(service)
            for c in s["characteristics"]:
                props: list[Any] = list(c["properties"])
                char = BleakGATTCharacteristic(None, c["handle"], c["uuid"], props, max_wwr, service)
                out.add_characteristic(char)
                for d in c.get("descriptors", []):
                    out.add_descriptor(BleakGATTDescriptor(None, d["handle"], d["uuid"], char))
        return out

    def _on_event(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "notify":
            callback = self._notify.get(msg["handle"]) if self._connected else None
            if callback is not None:
                callback(bytearray.fromhex(msg["data"]))
        elif op == "disconnected":
            self._lost()

    def _on_closed(self, reason: str) -> None:
        self._lost()

    def _lost(self) -> None:
        """The link went down without our asking: report it once, from the loop."""
        if not self._connected:
            return
        self._connected = False
        self._notify.clear()
        link, self._link = self._link, None
        loop = asyncio.get_running_loop()
        if link is not None:
            task = loop.create_task(link.close("disconnected"))
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        if self._disconnected_callback is not None:
            loop.call_soon(self._disconnected_callback)

    async def disconnect(self) -> None:
        link, self._link = self._link, None
        was = self._connected
        self._connected = False
        self._notify.clear()
        if link is not None:
            with contextlib.suppress(BleakError, TimeoutError):
                await link.request("disconnect", 1.0)
            await link.close()
        if was and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Simulated wearables need no bonding."""

    async def unpair(self) -> None:
        pass

    def _require(self) -> BridgeLink:
        if not self._connected or self._link is None:
            raise BleakError(f"Not connected to {self.address} over the BLE bridge")
        return self._link

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        reply = await self._require().request("read", handle=characteristic.handle)
        data = reply.get("data")
        if not isinstance(data, str):
            raise BleakError(f"BLE bridge: read of {characteristic.uuid} answered without data")
        try:
            return bytearray.fromhex(data)
        except ValueError:
            raise BleakError(f"BLE bridge: read of {characteristic.uuid}: data is not hex") from None

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require()
        char = descriptor.characteristic_handle
        return bytearray(b"\x01\x00" if char in self._notify else b"\x00\x00")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        await self._require().request(
            "write", handle=characteristic.handle, data=hexs(bytes(data)), response=bool(response)
        )

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        self._require()
        raise BleakError(f"descriptor 0x{descriptor.handle:04x}: use start_notify/stop_notify for the CCCD")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        link = self._require()
        if "notify" not in characteristic.properties and "indicate" not in characteristic.properties:
            raise BleakError(f"characteristic {characteristic.uuid} of {self.address} does not notify")
        # Registered before asking: notifications may follow the answer in the same read.
        self._notify[characteristic.handle] = callback
        try:
            await link.request("start_notify", handle=characteristic.handle)
        except BaseException:
            self._notify.pop(characteristic.handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        link = self._require()
        self._notify.pop(characteristic.handle, None)
        await link.request("stop_notify", handle=characteristic.handle)


#: Sessions being closed after a lost link (a reference keeps each task alive until it ends).
_closing: set[asyncio.Task[None]] = set()

_BOUND: dict[str, tuple[type[BridgeBleakClient], type[BridgeBleakScanner]]] = {}


def bridge_backends(path: str) -> tuple[type[BridgeBleakClient], type[BridgeBleakScanner]]:
    """The client and scanner backend classes bound to the bridge socket at ``path``.

    bleak takes a backend *class* (``BleakClient(backend=...)``), so the socket path is a class
    attribute of a subclass made once per path.
    """
    if path not in _BOUND:
        client = type("BridgeBleakClient", (BridgeBleakClient,), {"socket_path": path})
        scanner = type("BridgeBleakScanner", (BridgeBleakScanner,), {"socket_path": path})
        _BOUND[path] = (client, scanner)
    return _BOUND[path]
