"""``neurospasm devices``: which sensors this machine can see, and which ``kind`` each looks like.

Serial ports come from pyserial's port list, with USB vendor/product ids matched against the
sensors we know (the OpenBCI dongle's FTDI FT231X is 0403:6015). Bluetooth serial (RFCOMM)
ttys are listed as Shimmer or BITalino candidates: classic Bluetooth names are not visible to a
BLE scan, so ``bluetoothctl devices`` says which one is bound (docs/devices.md, "Pairing").
BLE devices come from a short bleak scan, matched on each decoder's advertised service UUID
(``BleProfile.service_uuid``) and on the advertised names the vendors use.

The hints are hints: an FTDI bridge may be any FTDI device. The command never opens a port.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SeenDevice", "classify_ble", "classify_port", "list_ble", "list_serial", "register"]

#: (USB vendor id, product id) -> (kind, what it is)
USB_HINTS: dict[tuple[int, int], tuple[str, str]] = {
    (0x0403, 0x6015): ("cyton", "OpenBCI USB dongle (FTDI FT231X)"),
    (0x1209, 0x7A51): ("neurospasm", "neurospasm wearable"),
}
#: Advertised (or port description) name prefixes -> kind.
NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("myo", "myo"),
    ("polar h10", "polar-h10"),
    ("bitalino", "bitalino"),
    ("shimmer", "shimmer"),
    ("openbci", "cyton"),
    ("ns-", "neurospasm"),
)


@dataclass(frozen=True, slots=True)
class SeenDevice:
    """One port or advertisement and what it looks like."""

    link: str  # "serial" or "ble"
    where: str  # port path or BLE address
    description: str
    kind: str | None  # the likely [[devices]] kind, None: unknown
    why: str  # what the guess rests on
    rssi: int | None = None


def _kind_from_name(name: str) -> str | None:
    low = name.lower()
    for prefix, kind in NAME_HINTS:
        if prefix in low:
            return kind
    return None


def classify_port(
    device: str, description: str = "", vid: int | None = None, pid: int | None = None
) -> SeenDevice:
    """What a serial port (path, description, USB ids) looks like."""
    ids = f"{vid:04x}:{pid:04x}" if vid is not None and pid is not None else ""
    if vid is not None and pid is not None and (vid, pid) in USB_HINTS:
        kind, what = USB_HINTS[(vid, pid)]
        return SeenDevice("serial", device, description or what, kind, f"USB id {ids}: {what}")
    named = _kind_from_name(description)
    if named is not None:
        return SeenDevice("serial", device, description, named, f"port description {description!r}")
    if "rfcomm" in device:
        return SeenDevice(
            "serial", device, description or "Bluetooth serial (RFCOMM)", "shimmer|bitalino",
            "an RFCOMM tty: a classic-Bluetooth sensor (bluetoothctl devices shows which is bound)",
        )  # fmt: skip
    if vid == 0x0403:
        return SeenDevice(
            "serial", device, description, "cyton?", f"USB id {ids}: an FTDI bridge, maybe a dongle"
        )
    return SeenDevice("serial", device, description, None, f"USB id {ids}" if ids else "no USB id")


def classify_ble(
    address: str, name: str | None, service_uuids: Iterable[str], rssi: int | None = None
) -> SeenDevice:
    """What an advertisement looks like: a decoder's service UUID first, then the name."""
    from ingest.wire.kinds import DECODERS  # on use: the command line imports this module

    uuids = {u.lower() for u in service_uuids}
    for kind, factory in DECODERS.items():
        profile = getattr(factory, "ble_profile", None)
        if profile is not None and profile.service_uuid.lower() in uuids:
            return SeenDevice(
                "ble", address, name or "", kind, f"advertises service {profile.service_uuid}", rssi
            )
    named = _kind_from_name(name or "")
    if named is not None:
        return SeenDevice("ble", address, name or "", named, f"advertised name {name!r}", rssi)
    return SeenDevice("ble", address, name or "", None, "no known service or name", rssi)


def list_serial() -> list[SeenDevice]:
    from serial.tools import list_ports

    return [classify_port(p.device, p.description or "", p.vid, p.pid) for p in list_ports.comports()]


async def list_ble(timeout_s: float, backend: Any = None) -> tuple[list[SeenDevice], str | None]:
    """Devices a short BLE scan hears, and why there are none if the radio is unavailable."""
    from bleak import BleakScanner
    from bleak.exc import BleakError

    try:
        kwargs: dict[str, Any] = {"timeout": timeout_s, "return_adv": True}
        if backend is not None:
            kwargs["backend"] = backend
        found = await BleakScanner.discover(**kwargs)
    except FileNotFoundError as exc:  # no D-Bus system bus socket: BlueZ is not running here
        return [], f"no BlueZ / D-Bus on this machine ({exc.strerror})"
    except (BleakError, OSError) as exc:  # no adapter, adapter off, no permission
        return [], f"{type(exc).__name__}: {exc}"
    out = [
        classify_ble(dev.address, adv.local_name or dev.name, adv.service_uuids, adv.rssi)
        for dev, adv in found.values()
    ]
    out.sort(key=lambda d: (d.kind is None, -(d.rssi or -200)))
    return out, None


def _print(devices: list[SeenDevice], ble_problem: str | None, *, ble: bool) -> None:
    print("Serial ports:")
    serial = [d for d in devices if d.link == "serial"]
    if not serial:
        print("  (none)")
    for d in serial:
        print(f"  {d.where:<28} {d.kind or '-':<18} {d.description}  [{d.why}]")
    if not ble:
        return
    print("BLE devices:")
    if ble_problem:
        print(f"  (BLE scan not possible: {ble_problem})")
        return
    found = [d for d in devices if d.link == "ble"]
    if not found:
        print("  (none heard)")
    for d in found:
        rssi = f"{d.rssi} dBm" if d.rssi is not None else ""
        print(f"  {d.where:<28} {d.kind or '-':<18} {d.description or '(no name)'} {rssi}  [{d.why}]")


def run(args: Any, *, ble_backend: Any = None) -> int:
    bridge = getattr(args, "ble_bridge", None)
    if bridge and ble_backend is None:  # scan a simulator's BLE bridge instead of the adapter
        from ingest.sources.blebridge import bridge_backends

        ble_backend = bridge_backends(bridge)[1]
    devices = list_serial()
    problem = None
    if not args.no_ble:
        ble_devices, problem = asyncio.run(list_ble(args.timeout, ble_backend))
        devices += ble_devices
    if args.json:
        json.dump({"devices": [asdict(d) for d in devices], "ble_problem": problem}, sys.stdout, indent=2)
        print()
    else:
        _print(devices, problem, ble=not args.no_ble)
    return 0


def register(sub: Any) -> None:
    """Add ``devices`` to the ``neurospasm`` command line."""
    p = sub.add_parser("devices", help="list serial ports and BLE devices, and which kind each looks like")
    p.add_argument("--timeout", type=float, default=4.0, help="BLE scan time in seconds (default 4)")
    p.add_argument("--no-ble", action="store_true", help="serial ports only (no BLE scan)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--ble-bridge",
        metavar="PATH",
        help="scan the BLE devices a simulator serves on this socket (neurospasm sim --ble-socket PATH)",
    )
    p.set_defaults(handler=run)
