"""Every device kind the gateway can decode: importing this module registers them all.

Add a vendor decoder by writing ``ingest/wire/<vendor>.py`` (it calls
``ingest.wire.base.register_decoder`` at import), importing it here, and giving it a
``KindRules`` entry in ``RULES`` (which links it can use, which baud rate).

``check_device_settings`` is what ``[[devices]]`` validation calls: a setting the kind does not
support is one ``ValueError`` naming the key (the config loader prefixes file and table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from ingest.wire import bitalino as _bitalino  # noqa: F401  (registers "bitalino")
from ingest.wire import cyton as _cyton  # noqa: F401  (registers "cyton")
from ingest.wire import myo as _myo  # noqa: F401  (registers "myo")
from ingest.wire import polar as _polar  # noqa: F401  (registers "polar-h10")
from ingest.wire import shimmer as _shimmer  # noqa: F401  (registers "shimmer")
from ingest.wire.base import DECODERS, decoder_for, device_kinds

__all__ = ["DECODERS", "RULES", "KindRules", "check_device_settings", "decoder_for", "device_kinds"]

SERIAL_KEYS = ("port", "baudrate", "usb_vid", "usb_pid")
BLE_KEYS = ("address", "name", "service_uuid")


@dataclass(frozen=True, slots=True)
class KindRules:
    """What a ``[[devices]]`` table of one kind may say."""

    transports: tuple[str, ...] = ("serial", "ble")
    #: Baud rates the device talks at (empty: any, e.g. a USB CDC port or an RFCOMM tty).
    baudrates: tuple[int, ...] = ()
    #: Baud rate used when the table gives none (None: the config's own default).
    default_baudrate: int | None = None
    #: How to reach it, for the error message.
    hint: str = ""


RULES: dict[str, KindRules] = {
    "neurospasm": KindRules(),
    # The OpenBCI dongle's FTDI bridge runs the radio at 115200 baud (Cyton Data Format).
    "cyton": KindRules(("serial",), (115200,), 115200, "the OpenBCI USB dongle (FTDI serial port)"),
    # Classic Bluetooth serial (SPP): bind an rfcomm tty; the baud rate of an RFCOMM tty is moot.
    "shimmer": KindRules(("serial",), (), 115200, "Bluetooth serial: bind it with rfcomm (docs/devices.md)"),
    "bitalino": KindRules(("serial",), (), 115200, "Bluetooth serial: bind it with rfcomm (docs/devices.md)"),
    # BLE-only wearables (their decoders live beside these).
    "myo": KindRules(("ble",), hint="BLE only"),
    "polar-h10": KindRules(("ble",), hint="BLE only"),
}


D = TypeVar("D")


def check_device_settings(dev: D) -> D:
    """Check one ``[[devices]]`` table against its kind; fill the kind's defaults.

    Raises ValueError with one line that starts with the offending key.
    """
    d: Any = dev  # a pydantic DeviceSection (ingest.config); duck-typed to keep wire/ config-free
    kind = d.kind
    rules = RULES.get(kind)
    if rules is None:
        profile = type(decoder_for(kind)).ble_profile
        rules = KindRules() if profile is not None else KindRules(("serial",))
    given = d.model_fields_set
    if d.transport not in rules.transports:
        how = f" ({rules.hint})" if rules.hint else ""
        raise ValueError(
            f"transport: a {kind!r} device connects over {' or '.join(rules.transports)}{how}, "
            f"not {d.transport!r}"
        )
    wrong = [k for k in (BLE_KEYS if d.transport == "serial" else SERIAL_KEYS) if k in given]
    if wrong:
        raise ValueError(f"{wrong[0]}: not a setting of a {d.transport} link (transport = {d.transport!r})")
    if d.transport == "serial":
        if "baudrate" not in given and rules.default_baudrate is not None:
            copy: D = d.model_copy(update={"baudrate": rules.default_baudrate})
            return copy
        if rules.baudrates and d.baudrate not in rules.baudrates:
            allowed = ", ".join(str(b) for b in rules.baudrates)
            raise ValueError(f"baudrate: a {kind!r} device talks at {allowed} baud, not {d.baudrate}")
    return dev
