"""Every device kind the gateway can decode: importing this module registers them all.

Add a vendor decoder by writing ``ingest/wire/<vendor>.py`` (it calls
``ingest.wire.base.register_decoder`` at import), importing it here, and giving it a
``KindRules`` entry in ``RULES`` (which links it can use, which baud rate).

``check_device_settings`` is what ``[[devices]]`` validation calls: a setting the kind does not
support is one ``ValueError`` naming the key (the config loader prefixes file and table).

Vendor settings (``[[devices]] options = {...}``: a Cyton's channel gain, a Shimmer's sampling
rate and ExG gain, a BITalino's rate and inputs, a Polar H10's accelerometer rate and range, a
Myo's EMG mode) are declared per kind in ``KindRules.options``: each key is checked and converted
here, then passed to the kind's decoder (``decoder_for(kind, options)``), whose start commands
configure the device with them. ``options_of`` lists them for docs and tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ingest.wire import bitalino as _bitalino  # noqa: F401  (registers "bitalino")
from ingest.wire import cyton as _cyton  # noqa: F401  (registers "cyton")
from ingest.wire import myo as _myo  # noqa: F401  (registers "myo")
from ingest.wire import polar as _polar  # noqa: F401  (registers "polar-h10")
from ingest.wire import shimmer as _shimmer  # noqa: F401  (registers "shimmer")
from ingest.wire.base import DECODERS, LinkDecoder, device_kinds
from ingest.wire.base import decoder_for as _decoder_for
from ingest.wire.bitalino import RATE_CODES as _BITALINO_RATES
from ingest.wire.cyton import GAIN_CODES as _CYTON_GAINS
from ingest.wire.myo import EMG_MODES as _MYO_EMG_MODES
from ingest.wire.polar import H10_RANGES_G, H10_RATES_HZ
from ingest.wire.shimmer import EXG_GAINS as _SHIMMER_GAINS
from ingest.wire.shimmer import RATES_HZ as _SHIMMER_RATES

__all__ = [
    "DECODERS",
    "RULES",
    "KindRules",
    "Option",
    "check_device_settings",
    "decoder_for",
    "decoder_options",
    "device_kinds",
    "options_of",
]

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
    #: Vendor settings a table of this kind may give in ``options`` (key -> Option).
    options: Mapping[str, Option] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Option:
    """One vendor setting: what it means (docs, errors), how a TOML value becomes the decoder's.

    ``convert`` raises ValueError with the reason (without the key: the caller names it).
    ``keyword`` is the decoder's constructor argument (default: the key itself).
    """

    help: str
    convert: Callable[[Any], Any]
    keyword: str = ""


def _one_of(allowed: tuple[Any, ...], unit: str = "") -> Callable[[Any], Any]:
    def convert(v: Any) -> Any:
        if isinstance(v, bool) or v not in allowed:
            shown = ", ".join(str(a) for a in allowed)
            raise ValueError(f"must be one of {shown}{unit}, not {v!r}")
        return v

    return convert


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, not {v!r}")
    return v


def _analog(v: Any, allowed: range) -> int:
    """A BITalino analog input named by its number (A1 is 1) -> the decoder's 0-based index."""
    if isinstance(v, bool) or not isinstance(v, int) or v not in allowed:
        raise ValueError(
            f"input must be {allowed.start}..{allowed.stop - 1} "
            f"(A{allowed.start}..A{allowed.stop - 1}), not {v!r}"
        )
    return v - 1


def _bitalino_inputs(v: Any) -> tuple[int, ...]:
    """EMG on the 10-bit inputs A1..A4."""
    if not isinstance(v, list) or not v or len({repr(x) for x in v}) != len(v):
        raise ValueError(f"must be a list of distinct inputs 1..4 (A1..A4, the 10-bit ones), not {v!r}")
    return tuple(_analog(x, range(1, 5)) for x in v)


def _bitalino_acc(v: Any) -> int | None:
    """The accelerometer on a 6-bit input (A5, A6), or false: none wired."""
    if v is False:
        return None
    return _analog(v, range(5, 7))


CYTON_OPTIONS: dict[str, Option] = {
    "gain": Option("ADS1299 programmable gain of every channel (sent with the x command; scales uV)",
                   _one_of(tuple(sorted(_CYTON_GAINS)))),
    "daisy": Option("true: a Daisy is fitted (16 channels at 125 Hz); omit: as the reset banner says",
                    _flag),
}  # fmt: skip
SHIMMER_OPTIONS: dict[str, Option] = {
    "rate_hz": Option("sampling rate (a divider of the 32768 Hz clock)", _one_of(_SHIMMER_RATES, " Hz")),
    "exg_gain": Option("ADS1292R gain written to both channels of each enabled ExG chip (read back)",
                       _one_of(tuple(sorted(set(_SHIMMER_GAINS.values()))))),
    "exg2": Option("true: enable the second ExG chip too (4 EMG channels)", _flag),
}  # fmt: skip
BITALINO_OPTIONS: dict[str, Option] = {
    "rate_hz": Option("sampling rate", _one_of(tuple(sorted(_BITALINO_RATES)), " Hz")),
    "emg_inputs": Option("inputs with an EMG sensor, of A1..A4: e.g. [1, 2] (A1, A2)", _bitalino_inputs),
    "acc_input": Option("input with the accelerometer, 5 or 6 (A5, A6), or false for none", _bitalino_acc),
}
POLAR_OPTIONS: dict[str, Option] = {
    "rate_hz": Option("accelerometer rate", _one_of(H10_RATES_HZ, " Hz")),
    "range_g": Option("accelerometer range", _one_of(H10_RANGES_G, " g")),
}
MYO_OPTIONS: dict[str, Option] = {
    "emg_mode": Option('"raw" (unfiltered, the default) or "filtered" (the Myo\'s own filter)',
                       _one_of(tuple(_MYO_EMG_MODES))),
}  # fmt: skip


RULES: dict[str, KindRules] = {
    "neurospasm": KindRules(),
    # The OpenBCI dongle's FTDI bridge runs the radio at 115200 baud (Cyton Data Format).
    "cyton": KindRules(("serial",), (115200,), 115200, "the OpenBCI USB dongle (FTDI serial port)",
                       CYTON_OPTIONS),
    # Classic Bluetooth serial (SPP): bind an rfcomm tty; the baud rate of an RFCOMM tty is moot.
    "shimmer": KindRules(("serial",), (), 115200, "Bluetooth serial: bind it with rfcomm (docs/devices.md)",
                         SHIMMER_OPTIONS),
    "bitalino": KindRules(("serial",), (), 115200, "Bluetooth serial: bind it with rfcomm (docs/devices.md)",
                          BITALINO_OPTIONS),
    # BLE-only wearables (their decoders live beside these).
    "myo": KindRules(("ble",), hint="BLE only", options=MYO_OPTIONS),
    "polar-h10": KindRules(("ble",), hint="BLE only", options=POLAR_OPTIONS),
}  # fmt: skip


def decoder_for(kind: str, options: Mapping[str, Any] | None = None) -> LinkDecoder:
    """A fresh decoder for one connection of ``kind``, configured by a table's ``options``."""
    return _decoder_for(kind, decoder_options(kind, options or {}))


def options_of(kind: str) -> Mapping[str, Option]:
    """The vendor settings a ``[[devices]]`` table of ``kind`` may give (empty: none)."""
    rules = RULES.get(kind)
    return rules.options if rules is not None else {}


def decoder_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Checked ``options`` of a ``kind`` as its decoder's keyword arguments.

    Raises ValueError with one line starting ``options.KEY:``.
    """
    known = options_of(kind)
    out: dict[str, Any] = {}
    for key, value in options.items():
        opt = known.get(key)
        if opt is None:
            takes = ", ".join(sorted(known)) or "none"
            raise ValueError(f"options.{key}: not a setting of a {kind!r} device (its settings: {takes})")
        try:
            out[opt.keyword or key] = opt.convert(value)
        except ValueError as exc:
            raise ValueError(f"options.{key}: a {kind!r} {key} {exc}") from None
    if out:
        try:  # settings that only fail together (a BITalino input used twice, ...)
            _decoder_for(kind, out)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"options: {exc}") from None
    return out


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
    decoder_options(kind, getattr(d, "options", {}))  # raises on a setting the kind lacks
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
