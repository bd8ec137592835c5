"""A virtual BLE wearable served through bleak's custom-backend seam.

bleak is a stable front-end (``BleakScanner``, ``BleakClient``) that delegates to a platform
backend; both front-ends take ``backend=`` to plug in another one. This module is such a backend,
whose "radio" is an in-process registry of virtual peripherals, so the gateway's *real* bleak code
path (scan, connect, service discovery, ``start_notify``, ``write_gatt_char``, the disconnected
callback) runs in tests on a machine without Bluetooth, BlueZ or D-Bus::

    async with VirtualBle() as ble:
        p = ble.add(VirtualPeripheral(device, address="C0:FF:EE:00:00:01", name="NS-1"))
        dev = await BleakScanner.find_device_by_address(p.address, backend=SimBleakScanner)
        async with BleakClient(dev, backend=SimBleakClient) as client:
            await client.start_notify(BLE_DATA_CHAR_UUID, on_frame)
            ...
        p.disconnect()            # the link drops: disconnected_callback fires
        p.set_available(False)    # out of range: scans miss it, connects wait and time out

Each peripheral owns a ``SimDevice`` paced in real time by an asyncio task, exactly as the pty
server paces one: the device keeps running its clock whatever the link does, so frames produced
while nobody is subscribed are lost, as they are over a real radio link. Every notification
carries one encoded frame (delimiter included), as the firmware sends them (``ingest.wire.protocol``).
What was lost to each outage is recorded (``VirtualPeripheral.outages``) so tests can check the
gateway's gap records against the truth.

The backend only exists while a ``VirtualBle`` is active (``with`` or ``async with``): scanning or
connecting outside one raises ``BleakBluetoothNotAvailableError``, like a machine whose adapter is
off. Everything runs on the one event loop; there are no threads. To reach the radio from another
process (``neurospasm run`` as its own process), ``firmware_sim.ble_bridge`` serves it on a Unix
socket (``neurospasm sim --ble-socket PATH``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDeviceNotFoundError,
    BleakError,
)

from firmware_sim.device import SimDevice
from ingest.wire.protocol import BLE_CMD_CHAR_UUID, BLE_DATA_CHAR_UUID, BLE_SERVICE_UUID

__all__ = [
    "LinkOutage",
    "PeripheralStats",
    "SimBleakClient",
    "SimBleakScanner",
    "VirtualBle",
    "VirtualPeripheral",
    "active_air",
]

#: Pacing period of the device task, as in the pty server. A real link delivers in connection
#: events every 7.5-50 ms; 5 ms batches are a little kinder than that and keep tests quick.
TICK_S = 0.005
CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
#: ATT handles of the simulated GATT table (arbitrary but stable, like a real firmware's).
SERVICE_HANDLE = 0x0010
DATA_CHAR_HANDLE = 0x0011
DATA_CCCD_HANDLE = 0x0013
CMD_CHAR_HANDLE = 0x0014

OutageCause = Literal["peripheral", "out_of_range", "reboot", "central"]

_active: list[VirtualBle] = []


def active_air() -> VirtualBle:
    """The innermost active ``VirtualBle``; the backends look peripherals up here."""
    if not _active:
        raise BleakBluetoothNotAvailableError(
            "no virtual BLE radio is active (use `with VirtualBle() as ble:` around the test)",
            BleakBluetoothNotAvailableReason.NO_BLUETOOTH,
        )
    return _active[-1]


@dataclass(slots=True)
class LinkOutage:
    """One span during which the device streamed but nobody received: what a gap record must match.

    Times are device seconds (``VirtualPeripheral.device_time``); counters are the device's EMG
    sample counter at the moment the link went down and when notifications were subscribed again,
    so ``emg_samples_lost`` is exactly what the device produced in between (0 while not streaming).
    """

    cause: OutageCause
    t_lost: float
    emg_counter_lost: int
    boot_id: int | None
    t_resumed: float | None = None
    emg_counter_resumed: int | None = None
    notifications_dropped: int = 0

    @property
    def emg_samples_lost(self) -> int | None:
        if self.emg_counter_resumed is None:
            return None
        return self.emg_counter_resumed - self.emg_counter_lost


@dataclass(slots=True)
class PeripheralStats:
    connects: int = 0
    disconnects: int = 0
    notifications: int = 0
    notification_bytes: int = 0
    #: Frames the device produced while no central was subscribed (lost to the radio).
    notifications_dropped: int = 0
    #: Frames larger than one notification at the negotiated MTU (a firmware bug if ever non-zero).
    oversize_dropped: int = 0
    writes: int = 0
    scans_answered: int = 0


class VirtualPeripheral:
    """A simulated wearable on the air: advertising data, a GATT table and a paced ``SimDevice``.

    Parameters:
        device: the device end of the wire protocol; its clock starts when the peripheral is added
            to a ``VirtualBle`` (power-on).
        address: Bluetooth address (what ``find_device_by_address`` matches, case-insensitive).
        name: advertised local name.
        service_uuids: advertised service UUIDs (default: the device's GATT services).
        rssi: received signal strength reported in advertisements, dBm.
        speed: device seconds per host second; >1 runs a scenario faster than real time (tests).
        drift_ppm: crystal error of the device clock against the host, as in the pty server.
        mtu: negotiated ATT MTU; one notification carries at most ``mtu - 3`` bytes.
        connect_latency_s: how long a successful connection takes to establish.
        advertise_while_connected: most wearables stop advertising once a central is connected.
    """

    def __init__(
        self,
        device: SimDevice,
        *,
        address: str,
        name: str = "",
        service_uuids: tuple[str, ...] | None = None,
        rssi: int = -60,
        speed: float = 1.0,
        drift_ppm: float = 0.0,
        mtu: int = 247,
        connect_latency_s: float = 0.02,
        advertise_while_connected: bool = False,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"peripheral {address}: speed must be positive, got {speed}")
        self.device = device
        self.address = address.upper()
        self.name = name or str(getattr(getattr(device, "personality", None), "advertised_name", "") or "")
        #: The GATT table: the device personality's (``firmware_sim.personalities``) or our own.
        self.gatt = GattLayout.for_device(device)
        if service_uuids is None:
            service_uuids = self.gatt.advertised
        self.service_uuids = tuple(u.lower() for u in service_uuids)
        self.rssi = rssi
        self.speed = speed
        self.drift_ppm = drift_ppm
        self.mtu = mtu
        self.connect_latency_s = connect_latency_s
        self.advertise_while_connected = advertise_while_connected
        self.stats = PeripheralStats()
        self.outages: list[LinkOutage] = []
        self.available = True
        self._link: SimBleakClient | None = None
        self._available_event = asyncio.Event()
        self._available_event.set()
        self._t0: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._restore: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"VirtualPeripheral({self.address}, {self.name!r})"

    # -- power and clock ---------------------------------------------------------------------
    def _power_on(self) -> None:
        self._t0 = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ble-sim-{self.address}")

    def _power_off(self) -> asyncio.Task[None] | None:
        """Stop the pacing task and drop any link; returns the task for the caller to await."""
        if self._restore is not None:
            self._restore.cancel()
            self._restore = None
        self._drop_link("peripheral")
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def device_time(self) -> float:
        """Seconds on the device's own (drifting, possibly sped-up) clock since power-on."""
        if self._t0 is None:
            return 0.0
        return (time.monotonic() - self._t0) * self.speed * (1.0 + self.drift_ppm * 1e-6)

    async def _run(self) -> None:
        while True:
            self._pump()
            await asyncio.sleep(TICK_S)

    def _pump(self) -> None:
        """Advance the device to now and put what it produced on the air (or lose it)."""
        t = self.device_time()
        notify = getattr(self.device, "notifications_until", None)
        if notify is not None:  # a simulator personality: per-characteristic notifications
            items: list[tuple[str, bytes]] = notify(t)
        else:
            items = [(BLE_DATA_CHAR_UUID, wire) for wire in self.device.frames_until(t)]
        if not items:
            return
        link = self._link
        limit = self.mtu - 3
        for uuid, wire in items:
            handle = self.gatt.handle_of(uuid) if uuid else self.gatt.data_handle
            callback = link._subscribed(handle) if link is not None else None
            if len(wire) > limit:
                self.stats.oversize_dropped += 1
            elif callback is None:
                self.stats.notifications_dropped += 1
                if self.outages and self.outages[-1].t_resumed is None:
                    self.outages[-1].notifications_dropped += 1
            else:
                self.stats.notifications += 1
                self.stats.notification_bytes += len(wire)
                callback(bytearray(wire))

    # -- advertising -------------------------------------------------------------------------
    @property
    def advertising(self) -> bool:
        return (
            self.available
            and self._task is not None
            and (self._link is None or self.advertise_while_connected)
        )

    def advertisement(self) -> AdvertisementData:
        return AdvertisementData(
            local_name=self.name or None,
            manufacturer_data={},
            service_data={},
            service_uuids=list(self.service_uuids),
            tx_power=None,
            rssi=self.rssi,
            platform_data=(self.address,),
        )

    # -- link (called by SimBleakClient) -------------------------------------------------------
    async def _accept(self, client: SimBleakClient, wait_s: float) -> None:
        """A central connects. Out of range, the request waits (as a controller's page does) and
        succeeds as soon as the peripheral is back, or times out."""
        if not self.available:
            try:
                async with asyncio.timeout(wait_s):
                    while not self.available:
                        await self._available_event.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"virtual peripheral {self.address}: connection timed out after {wait_s:g} s "
                    "(out of range)"
                ) from None
        if self._task is None:
            raise BleakDeviceNotFoundError(self.address, f"virtual peripheral {self.address} is powered off")
        if self._link is not None:
            raise BleakError(f"virtual peripheral {self.address} is already connected to another central")
        await asyncio.sleep(self.connect_latency_s)
        if not self.available or self._task is None:
            raise TimeoutError(f"virtual peripheral {self.address}: went out of range while connecting")
        if self._link is not None:
            raise BleakError(f"virtual peripheral {self.address} is already connected to another central")
        self._link = client
        self.stats.connects += 1

    def _subscribed_again(self) -> None:
        """The central enabled notifications: data flows again, close the open outage."""
        if self.outages and self.outages[-1].t_resumed is None:
            self._pump()  # whatever became ready before this instant is lost to the outage
            out = self.outages[-1]
            out.t_resumed = self.device_time()
            out.emg_counter_resumed = self.device.emg_samples_sent

    def _drop_link(self, cause: OutageCause) -> None:
        if self._link is None:
            return
        self._pump()  # frames ready before the drop still go out on the old link
        link, self._link = self._link, None
        self.stats.disconnects += 1
        self.outages.append(
            LinkOutage(cause, self.device_time(), self.device.emg_samples_sent, self.device.boot_id)
        )
        link._link_lost(notify=cause != "central")

    def _write(self, handle: int, data: bytes) -> None:
        char = self.gatt.chars.get(handle)
        if char is None or not {"write", "write-without-response"} & set(char.properties):
            raise BleakError(f"virtual peripheral {self.address}: handle 0x{handle:04x} is not writable")
        self._pump()  # the command takes effect at the device's present time
        self.stats.writes += 1
        write = getattr(self.device, "handle_write", None)
        if write is not None:
            write(data, char.uuid)
        else:
            self.device.handle_bytes(data)

    # -- fault hooks -------------------------------------------------------------------------
    def disconnect(self, *, unavailable_for_s: float = 0.0) -> None:
        """Drop the link from the peripheral side (supervision timeout, firmware reset of the radio).

        The central's ``disconnected_callback`` fires; the device keeps streaming into the void.
        With ``unavailable_for_s`` the peripheral is also out of range for that many host seconds,
        so the outage lasts at least that long however fast the central reconnects.
        """
        self._drop_link("peripheral")
        if unavailable_for_s > 0:
            self.set_available(False)
            self._restore = asyncio.get_running_loop().call_later(unavailable_for_s, self.set_available, True)

    def set_available(self, available: bool) -> None:
        """In or out of range. Out of range drops any link, hides it from scans, stalls connects."""
        self.available = available
        if available:
            self._available_event.set()
            if self._restore is not None:
                self._restore.cancel()
                self._restore = None
        else:
            self._available_event.clear()
            self._drop_link("out_of_range")

    def reboot(self) -> None:
        """Power-cycle the wearable: the link drops and the device's counters restart at 0.

        Like a real firmware, the rebooted device is idle until a central sends START again.
        """
        self._drop_link("reboot")
        self.device.reboot(self.device_time())

    @property
    def connected(self) -> bool:
        return self._link is not None


class VirtualBle:
    """The simulated radio: a registry of virtual peripherals that the sim backends see.

    Use as ``with VirtualBle() as ble:`` or ``async with VirtualBle() as ble:`` inside a running
    event loop; ``add`` powers a peripheral on (starts its pacing task). Leaving the block powers
    every peripheral off; ``async with`` also waits for their tasks to end.

    ``adv_interval_s`` is how often each peripheral advertises (real wearables: 20 ms to 1 s).
    """

    def __init__(self, *, adv_interval_s: float = 0.05) -> None:
        self.adv_interval_s = adv_interval_s
        self.peripherals: dict[str, VirtualPeripheral] = {}

    def add(self, peripheral: VirtualPeripheral) -> VirtualPeripheral:
        if peripheral.address in self.peripherals:
            raise ValueError(f"a virtual peripheral with address {peripheral.address} is already on the air")
        self.peripherals[peripheral.address] = peripheral
        peripheral._power_on()
        return peripheral

    def remove(self, address: str) -> asyncio.Task[None] | None:
        return self.peripherals.pop(address.upper())._power_off()

    def get(self, address: str) -> VirtualPeripheral | None:
        return self.peripherals.get(address.upper())

    def __enter__(self) -> Self:
        _active.append(self)
        return self

    def _shutdown(self) -> list[asyncio.Task[None]]:
        with contextlib.suppress(ValueError):
            _active.remove(self)
        tasks = [t for p in self.peripherals.values() if (t := p._power_off()) is not None]
        self.peripherals.clear()
        return tasks

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._shutdown()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._shutdown():
            with contextlib.suppress(asyncio.CancelledError):
                await task


class SimBleakScanner(BaseBleakScanner):
    """bleak scanner backend that hears the active ``VirtualBle``'s advertisements.

    Pass as ``BleakScanner(backend=SimBleakScanner)`` or to ``find_device_by_*(backend=...)``.
    ``BLEDevice.details`` is the peripheral's address (not a BlueZ object path, so helpers such as
    bleak-retry-connector treat it as a non-BlueZ device).
    """

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        air = active_air()
        self.seen_devices = {}
        self._task = asyncio.get_running_loop().create_task(self._listen(air), name="ble-sim-scan")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, air: VirtualBle) -> None:
        # Yield once first: the front-end registers its callbacks right after start() returns.
        await asyncio.sleep(0)
        while True:
            for p in list(air.peripherals.values()):
                if not p.advertising:
                    continue
                adv = p.advertisement()
                if not self.is_allowed_uuid(adv.service_uuids):
                    continue
                p.stats.scans_answered += 1
                device = self.create_or_update_device(p.address, p.address, p.name or None, p.address, adv)
                self.call_detection_callbacks(device, adv)
            await asyncio.sleep(air.adv_interval_s)


class SimBleakClient(BaseBleakClient):
    """bleak client backend that connects to a ``VirtualPeripheral`` of the active ``VirtualBle``.

    Pass as ``BleakClient(device_or_address, backend=SimBleakClient)``. The GATT table is the
    wearable's: one service with a notify characteristic (data, with its CCCD) and a write
    characteristic (commands). Like the BlueZ backend, the disconnected callback fires on every
    disconnection, also one the central asked for; an unsolicited one is scheduled on the loop.
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._peripheral: VirtualPeripheral | None = None
        self._connected = False
        self._notify: dict[int, NotifyCallback] = {}

    # -- identity ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        p = self._peripheral
        return p.name if p is not None and p.name else self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._peripheral.mtu if self._peripheral is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connected

    # -- connection --------------------------------------------------------------------------
    async def connect(self, pair: bool, **kwargs: Any) -> None:
        timeout = float(kwargs.get("timeout", self._timeout))
        peripheral = active_air().get(self.address)
        if peripheral is None:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found (no such virtual peripheral)"
            )
        await peripheral._accept(self, timeout)
        self._peripheral = peripheral
        self._connected = True
        self.services = _gatt_table(peripheral)

    async def disconnect(self) -> None:
        p = self._peripheral
        if p is not None and p._link is self:
            p._drop_link("central")

    def _link_lost(self, *, notify: bool) -> None:
        """The peripheral dropped us (``notify``) or we asked to disconnect."""
        self._connected = False
        self._notify.clear()
        callback = self._disconnected_callback
        if callback is None:
            return
        if notify:
            asyncio.get_running_loop().call_soon(callback)
        else:
            callback()

    def _subscribed(self, handle: int) -> NotifyCallback | None:
        return self._notify.get(handle) if self._connected else None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """The simulated wearable needs no bonding (nor does the real one: data is not secret on air
        beyond what link-layer encryption a deployment adds)."""

    async def unpair(self) -> None:
        pass

    # -- GATT --------------------------------------------------------------------------------
    def _require(self) -> VirtualPeripheral:
        if not self._connected or self._peripheral is None:
            raise BleakError(f"Not connected to virtual peripheral {self.address}")
        return self._peripheral

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        p = self._require()
        char = p.gatt.chars.get(characteristic.handle)
        if char is None or "read" not in char.properties:
            raise BleakError(f"characteristic {characteristic.uuid} of {self.address} is not readable")
        return bytearray(char.value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        p = self._require()
        char_handle = p.gatt.cccds.get(descriptor.handle)
        if char_handle is not None:
            return bytearray(b"\x01\x00" if char_handle in self._notify else b"\x00\x00")
        raise BleakError(f"descriptor 0x{descriptor.handle:04x} of {self.address} is not readable")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        p = self._require()
        payload = bytes(data)
        limit = 512 if response else p.mtu - 3  # ATT: long writes with response, one PDU without
        if len(payload) > limit:
            raise BleakError(
                f"write of {len(payload)} bytes to {characteristic.uuid} exceeds {limit} bytes at MTU {p.mtu}"
            )
        p._write(characteristic.handle, payload)
        if response:
            await asyncio.sleep(0)  # the write response comes back in a later connection event

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        self._require()
        raise BleakError(f"descriptor 0x{descriptor.handle:04x}: use start_notify/stop_notify for the CCCD")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        p = self._require()
        if "notify" not in characteristic.properties:
            raise BleakError(f"characteristic {characteristic.uuid} of {self.address} does not notify")
        if characteristic.handle == p.gatt.data_handle:
            p._subscribed_again()  # before registering: what is ready now was lost to the outage
        self._notify[characteristic.handle] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require()
        self._notify.pop(characteristic.handle, None)


def _gatt_table(p: VirtualPeripheral) -> BleakGATTServiceCollection:
    """Service discovery result: the device's services, characteristics and their CCCDs."""
    services = BleakGATTServiceCollection()

    def max_wwr() -> int:
        return p.mtu - 3

    for svc_handle, svc_uuid, chars in p.gatt.services:
        service = BleakGATTService(None, svc_handle, svc_uuid)
        services.add_service(service)
        for handle in chars:
            c = p.gatt.chars[handle]
            props: list[Any] = list(c.properties)  # bleak's Literal names; checked by the personality
            char = BleakGATTCharacteristic(None, handle, c.uuid, props, max_wwr, service)
            services.add_characteristic(char)
            for cccd, owner in p.gatt.cccds.items():
                if owner == handle:
                    services.add_descriptor(BleakGATTDescriptor(None, cccd, CCCD_UUID, char))
    return services


@dataclass(frozen=True, slots=True)
class _Char:
    uuid: str
    properties: tuple[str, ...]
    value: bytes = b""


class GattLayout:
    """ATT handles of a simulated GATT table, laid out as a firmware's table would be.

    Each service takes a handle; each characteristic the next (its value handle) and, when it
    notifies, a CCCD two handles on. Our own wearable's table keeps its historical handles
    (service 0x0010, data 0x0011 with CCCD 0x0013, commands 0x0014). ``data_handle`` is the first
    notify characteristic: subscribing to it is what ends an outage (``LinkOutage``).
    """

    def __init__(self, services: list[tuple[str, list[_Char]]]) -> None:
        self.services: list[tuple[int, str, list[int]]] = []
        self.chars: dict[int, _Char] = {}
        self.cccds: dict[int, int] = {}
        self._by_uuid: dict[str, int] = {}
        h = SERVICE_HANDLE
        for svc_uuid, chars in services:
            svc_handle = h
            handles: list[int] = []
            for c in chars:
                h += 1
                self.chars[h] = c
                self._by_uuid.setdefault(c.uuid.lower(), h)
                handles.append(h)
                if "notify" in c.properties:
                    self.cccds[h + 2] = h
                    h += 2
            self.services.append((svc_handle, svc_uuid, handles))
            h += 1
        notify = [hd for hd, c in self.chars.items() if "notify" in c.properties]
        self.data_handle = notify[0] if notify else -1
        self.advertised = tuple(uuid for _, uuid, _ in self.services[:1])

    def handle_of(self, uuid: str) -> int:
        return self._by_uuid.get(uuid.lower(), -1)

    @classmethod
    def for_device(cls, device: SimDevice) -> GattLayout:
        personality = getattr(device, "personality", None)
        gatt = getattr(personality, "gatt", ()) if personality is not None else ()
        if gatt:
            layout = cls([
                (s.uuid, [_Char(c.uuid, tuple(c.properties), bytes(c.value)) for c in s.characteristics])
                for s in gatt
            ])  # fmt: skip
            advertised = tuple(getattr(personality, "advertised_uuids", ()) or ())
            if advertised:
                layout.advertised = advertised
            return layout
        return cls([(BLE_SERVICE_UUID, [
            _Char(BLE_DATA_CHAR_UUID, ("notify",)),
            _Char(BLE_CMD_CHAR_UUID, ("write", "write-without-response")),
        ])])  # fmt: skip
