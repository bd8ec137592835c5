"""BLE transport on bleak: find the wearable, connect, subscribe to its frames, report the link's loss.

One ``BleTransport`` is one connection attempt: the runner (``ingest.stream.runner.DeviceRunner``) creates
a fresh one for every attempt, backs off between attempts and re-sends START on every connection.
What must survive across attempts lives in a class-level memory keyed by what identifies the
device (address, name, service UUID):

- the ``BLEDevice`` found by the last successful scan, so a reconnect after a dropped link skips
  the scan (samples are being lost while we are not connected; a scan costs 0.1-10 s);
- the count of consecutive failed attempts, which drives the escalation ladder:

  ========================  ===================================================================
  failures so far           this attempt
  ========================  ===================================================================
  < rescan_after_failures   connect to the cached ``BLEDevice`` (no scan)
  >= rescan_after_failures  forget it and scan again (the address may have changed adapter, or
                            the OS's device object may be stale)
  >= 2 x that               also ask bleak-retry-connector to close a stale BlueZ connection
                            to the device left behind by a crashed client (BlueZ only; a no-op
                            elsewhere)
  ========================  ===================================================================

Every attempt builds a new ``BleakClient`` (the runner re-creates the transport), so a client
object wedged by the OS stack is never reused.

The connection itself goes through bleak-retry-connector's ``establish_connection`` when it is
installed: on BlueZ it absorbs the transient failures (``le-connection-abort-by-local``, services
cache races, "out of connection slots") that otherwise cost a full backoff round. It works with any
bleak backend, including the simulator's custom one (its BlueZ-specific paths look for a BlueZ
object path in ``BLEDevice.details`` and step aside when there is none). Its own retry budget is
kept small (``connect_attempts``) and the whole connect step is bounded by ``connect_timeout_s``,
because the runner's jittered backoff is the reconnect policy, not nested retry loops.

Hardware callbacks only timestamp and enqueue (``Transport._received``); the disconnected callback
only enqueues ``TransportClosed``. Nothing here logs frame contents: they are patient data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import bleak_retry_connector as _brc  # a hard dependency (pyproject.toml): no fallback needed
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str

from ingest.sources.base import Transport, TransportClosed, TransportError
from ingest.wire.base import BleProfile, NeurospasmDecoder

log = logging.getLogger(__name__)

#: What a broken BLE stack raises besides BleakError: D-Bus socket gone (EOFError, OSError),
#: a controller that never answers (TimeoutError).
_LINK_ERRORS = (BleakError, OSError, EOFError, TimeoutError)


@dataclass(slots=True)
class LinkMemory:
    """What one device's successive transports remember (see the module docstring)."""

    device: BLEDevice | None = None
    failures: int = 0
    rssi: int | None = None


@dataclass
class BleTransport(Transport):
    """A wearable over BLE. Give ``address``, ``device_name`` or ``service_uuid`` (all given must match).

    Parameters:
        address: Bluetooth address (case-insensitive; a UUID on macOS).
        device_name: advertised local name.
        service_uuid: a service UUID the device advertises (scans are filtered on it, which macOS
            requires for background scanning); a device found only by it is the first one heard.
        backend: bleak client backend class (``BleakClient(backend=...)``), e.g. the simulator's.
        scanner_backend: bleak scanner backend class (``BleakScanner(backend=...)``).
        scan_timeout_s: how long a scan listens before giving up.
        connect_timeout_s: bound on the whole connect step (all retry-connector attempts).
        write_timeout_s: bound on one command write (a dead link can stall a write with response).
        rescan_after_failures: consecutive failures before the cached ``BLEDevice`` is dropped.
        connect_attempts: attempts bleak-retry-connector makes within one connect step.
        use_retry_connector: set False to call ``BleakClient.connect`` directly.
        profile: the device kind's GATT layout (data characteristics, command characteristic);
            our own wearable's by default.
    """

    address: str = ""
    device_name: str = ""
    service_uuid: str = ""
    backend: type[BaseBleakClient] | None = None
    scanner_backend: type[BaseBleakScanner] | None = None
    scan_timeout_s: float = 10.0
    connect_timeout_s: float = 20.0
    write_timeout_s: float = 5.0
    rescan_after_failures: int = 2
    connect_attempts: int = 2
    use_retry_connector: bool = True
    profile: BleProfile = field(default_factory=lambda: _default_profile())

    _memory: ClassVar[dict[str, LinkMemory]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.address or self.device_name or self.service_uuid):
            raise TransportError(f"BLE device {self.name}: needs an address, a device_name or a service_uuid")
        self._client: BleakClient | None = None
        self._closing = False
        self._up = False
        #: RSSI (dBm) of the device's advertisement at the last scan, None before any. bleak has no
        #: portable RSSI for a connected link (BlueZ only reports it while discovering).
        self.rssi: int | None = self.memory.rssi
        #: Negotiated ATT MTU once connected.
        self.mtu: int | None = None
        self.ble_device: BLEDevice | None = None

    # -- identity and memory -------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Memory key: the identifying criteria, normalised."""
        return "|".join(
            (
                self.address.upper(),
                self.device_name,
                normalize_uuid_str(self.service_uuid) if self.service_uuid else "",
            )
        )

    @property
    def memory(self) -> LinkMemory:
        return self._memory.setdefault(self.key, LinkMemory())

    @classmethod
    def forget(cls, key: str | None = None) -> None:
        """Drop the remembered device(s) and failure counts (tests; a re-paired wearable)."""
        if key is None:
            cls._memory.clear()
        else:
            cls._memory.pop(key, None)

    def describe(self) -> str:
        """How errors and logs name the device: config id and what we look for."""
        what = [f"address {self.address}" if self.address else ""]
        what.append(f"name {self.device_name!r}" if self.device_name else "")
        what.append(f"service {self.service_uuid}" if self.service_uuid else "")
        return f"BLE device {self.name} ({', '.join(w for w in what if w)})"

    # -- open ----------------------------------------------------------------------------------
    async def _open(self) -> None:
        self._closing = False
        self._up = False
        mem = self.memory
        try:
            await self._open_escalating(mem)
        except TransportError as exc:
            mem.failures += 1
            if mem.failures >= self.rescan_after_failures and mem.device is not None:
                mem.device = None
                log.info("%s: %d failed attempts, will scan again", self.describe(), mem.failures)
            log.warning("%s: %s", self.describe(), exc)
            raise
        mem.failures = 0

    async def _open_escalating(self, mem: LinkMemory) -> None:
        device = mem.device if mem.failures < self.rescan_after_failures else None
        if device is None:
            device = await self._scan()
            mem.device = device
            mem.rssi = self.rssi
        if mem.failures >= 2 * self.rescan_after_failures and self.use_retry_connector:
            with contextlib.suppress(*_LINK_ERRORS):
                await _brc.close_stale_connections(device)
        self.ble_device = device
        client = await self._connect(device)
        char = ""
        try:
            for char in self.profile.notify_uuids:
                await client.start_notify(char, self._notifier(char))
            if not client.is_connected:
                raise TransportClosed(f"{self.describe()} disconnected while subscribing")
        except _LINK_ERRORS as exc:
            await self._disconnect_quietly(client)
            raise TransportError(
                f"{self.describe()}: cannot subscribe to data characteristic {char}: {exc} "
                f"(not a device of this kind, or a stale GATT cache)"
            ) from exc
        except TransportError:
            await self._disconnect_quietly(client)
            raise
        self._client = client
        self._up = True
        with contextlib.suppress(*_LINK_ERRORS):
            self.mtu = client.mtu_size
        log.info(
            "%s: connected to %s (RSSI %s dBm, MTU %s)",
            self.describe(), device.address, self.rssi if self.rssi is not None else "?", self.mtu,
        )  # fmt: skip

    async def _scan(self) -> BLEDevice:
        want_address = self.address.lower()
        want_service = normalize_uuid_str(self.service_uuid) if self.service_uuid else ""
        heard: list[int] = []

        def match(device: BLEDevice, adv: AdvertisementData) -> bool:
            if want_address and device.address.lower() != want_address:
                return False
            if self.device_name and self.device_name not in (adv.local_name, device.name):
                return False
            if want_service and want_service not in (u.lower() for u in adv.service_uuids):
                return False
            heard.append(adv.rssi)
            return True

        kwargs: dict[str, Any] = {}
        if self.scanner_backend is not None:
            kwargs["backend"] = self.scanner_backend
        if want_service:
            kwargs["service_uuids"] = [want_service]
        try:
            found = await BleakScanner.find_device_by_filter(match, timeout=self.scan_timeout_s, **kwargs)
        except _LINK_ERRORS as exc:
            raise TransportError(f"scan for {self.describe()} failed: {exc or type(exc).__name__}") from exc
        if found is None:
            raise TransportError(
                f"{self.describe()} not found in a {self.scan_timeout_s:g} s scan "
                "(out of range, switched off, battery flat, or connected to another central)"
            )
        self.rssi = heard[-1] if heard else None
        return found

    async def _connect(self, device: BLEDevice) -> BleakClient:
        kwargs: dict[str, Any] = {"timeout": self.connect_timeout_s}
        if self.backend is not None:
            kwargs["backend"] = self.backend
        client: BleakClient | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.use_retry_connector:
                    connected: BleakClient = await _brc.establish_connection(
                        BleakClient, device, self.name, disconnected_callback=self._on_disconnect,
                        max_attempts=self.connect_attempts, **kwargs,
                    )  # fmt: skip
                    return connected
                client = BleakClient(device, disconnected_callback=self._on_disconnect, **kwargs)
                await client.connect()
                return client
        except TimeoutError:
            if client is not None:
                await self._disconnect_quietly(client)
            raise TransportError(
                f"cannot connect to {self.describe()} at {device.address}: no connection within "
                f"{self.connect_timeout_s:g} s (out of range or busy)"
            ) from None
        except _LINK_ERRORS as exc:
            if client is not None:
                await self._disconnect_quietly(client)
            raise TransportError(
                f"cannot connect to {self.describe()} at {device.address}: {exc or type(exc).__name__}"
            ) from exc

    # -- callbacks (only timestamp and enqueue) --------------------------------------------------
    def _notifier(self, char_uuid: str) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        """A notify callback that tags each chunk with its characteristic (several carry data)."""
        source = char_uuid if len(self.profile.notify_uuids) > 1 else ""

        def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self._received(bytes(data), source=source)  # the one copy: bleak may reuse its buffer

        return on_notify

    def _on_disconnect(self, _client: BleakClient) -> None:
        # BlueZ calls this for disconnects we asked for too, and for failed attempts inside the
        # retry connector: only a link that was up and not being closed by us is a loss.
        if self._up and not self._closing:
            self._up = False
            self._lost(TransportClosed(f"{self.describe()} disconnected"))

    # -- the rest of the contract --------------------------------------------------------------
    async def write(self, data: bytes, char_uuid: str | None = None) -> None:
        """Send commands, with write response: a command that did not arrive is an error."""
        client = self._client
        if client is None or not client.is_connected:
            raise TransportClosed(f"{self.describe()} is not connected")
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await client.write_gatt_char(char_uuid or self.profile.command_uuid, data, response=True)
        except _LINK_ERRORS as exc:
            raise TransportClosed(f"write to {self.describe()} failed: {exc or type(exc).__name__}") from exc

    async def _close(self) -> None:
        self._closing = True
        self._up = False
        client, self._client = self._client, None
        if client is not None:
            await self._disconnect_quietly(client)

    @staticmethod
    async def _disconnect_quietly(client: BleakClient) -> None:
        with contextlib.suppress(*_LINK_ERRORS):
            async with asyncio.timeout(5.0):
                await client.disconnect()


def _default_profile() -> BleProfile:
    profile = NeurospasmDecoder.ble_profile
    assert profile is not None
    return profile


__all__ = ["BleTransport", "LinkMemory"]
