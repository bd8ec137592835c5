"""The decoder seam: every wearable's link bytes become the same frames.

A *link decoder* turns the bytes one device kind sends (our own COBS frames, an OpenBCI Cyton's
33-byte packets, a Myo's BLE notifications, ...) into the frames of ``ingest.wire.protocol``:
``InfoFrame`` (who the device is, rates, channel labels, the scale from counts to microvolts and
g), ``EmgFrame`` / ``AccFrame`` (blocks of samples with the device's sample counter of the first
sample) and ``StatusFrame`` (battery, electrode contact). Everything downstream (session, clock,
gaps, detector, spool, sinks) is therefore the same for every device kind.

Rules every decoder keeps (the property tests check them for each kind):

- ``feed`` never raises on input bytes. Corrupt or unknown input is counted in
  ``stats.errors`` under a short reason word, ``last_error`` says what and at which stream byte
  offset, and decoding resynchronises on the next plausible packet boundary.
- Sample counters are the device's own where it has one (Cyton's 8-bit sample number, BITalino's
  4-bit sequence, Polar's 64-bit timestamps converted to samples, ...), unwrapped into a
  monotonically increasing counter that skips exactly the samples lost, so gaps stay exact.
- A decoder emits an ``InfoFrame`` before its first sample frame and whenever its
  configuration changes; ``EmgFrame.samples`` may be any integer or float dtype (counts), scaled
  by ``InfoFrame.emg_scale_uv`` (``AccFrame`` by ``acc_scale_g``).
- Devices with several BLE characteristics tag each chunk with the characteristic UUID it came
  from (``Chunk.source``), which ``feed`` receives as ``source``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from ingest.wire.protocol import (
    BLE_CMD_CHAR_UUID,
    BLE_DATA_CHAR_UUID,
    BLE_SERVICE_UUID,
    CmdFrame,
    Command,
    DecoderStats,
    Frame,
    StreamDecoder,
    encode_frame,
)

__all__ = [
    "DECODERS",
    "BleProfile",
    "DeviceWrite",
    "LinkDecoder",
    "NeurospasmDecoder",
    "UnknownDeviceKind",
    "WrapCounter",
    "decoder_for",
    "device_kinds",
    "register_decoder",
]


@dataclass(frozen=True, slots=True)
class BleProfile:
    """Where a BLE device of one kind carries its data and takes its commands."""

    #: Service advertised / looked up (scans are filtered on it when no address is configured).
    service_uuid: str
    #: Characteristics whose notifications carry data, in the order they are subscribed.
    notify_uuids: tuple[str, ...]
    #: Characteristic commands are written to (with response).
    command_uuid: str


@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """Bytes to send to the device; ``char_uuid`` picks the BLE characteristic (None: default)."""

    data: bytes
    char_uuid: str | None = None


class LinkDecoder(Protocol):
    """What the pipeline needs of a device kind: decode bytes, and the commands to drive it."""

    #: The ``kind`` of ``[[devices]]`` this decoder serves ("neurospasm", "cyton", ...).
    kind: ClassVar[str]
    #: Frames decoded and errors by reason, over this decoder's life (one connection).
    stats: DecoderStats
    #: The last error, with its stream byte offset, for logs and the status payload.
    last_error: str | None
    #: GATT layout for BLE links (None: this kind has no BLE link).
    ble_profile: ClassVar[BleProfile | None]

    def feed(self, data: bytes, source: str = "", t_host: float | None = None) -> list[Frame]:
        """Decode what arrived; keep a partial tail for the next call. Never raises on input.

        ``t_host``: when the chunk arrived (host seconds), for decoders whose counter is too
        short to count a long loss by itself (``WrapCounter``); None when not known.
        """
        ...

    def start_commands(self) -> list[DeviceWrite]:
        """What to send on every (re)connection to make the device stream (it may have rebooted)."""
        ...

    def stop_commands(self) -> list[DeviceWrite]:
        """What to send before closing the link to stop streaming (best effort)."""
        ...

    def info_request(self) -> DeviceWrite | None:
        """How to ask the device to describe itself again (None: the kind cannot be asked)."""
        ...


class NeurospasmDecoder(StreamDecoder):
    """Our own wire protocol v1 (``ingest.wire.protocol``) behind the decoder seam."""

    kind: ClassVar[str] = "neurospasm"
    ble_profile: ClassVar[BleProfile | None] = BleProfile(
        BLE_SERVICE_UUID, (BLE_DATA_CHAR_UUID,), BLE_CMD_CHAR_UUID
    )

    def feed(
        self, data: bytes | bytearray | memoryview, source: str = "", t_host: float | None = None
    ) -> list[Frame]:
        return list(self.iter_feed(data))

    def start_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(encode_frame(CmdFrame(0, Command.START)))]

    def stop_commands(self) -> list[DeviceWrite]:
        return [DeviceWrite(encode_frame(CmdFrame(0, Command.STOP)))]

    def info_request(self) -> DeviceWrite | None:
        return DeviceWrite(encode_frame(CmdFrame(0, Command.INFO)))


class WrapCounter:
    """Unwrap a short modular packet counter, counting whole wraps a long loss hides by time.

    A Cyton's sample number counts packets modulo 256: a loss of 300 packets looks like one of
    44. The host's arrival times tell them apart when they are steadier than half a wrap: every
    packet's *latency* (arrival minus counter / rate) is at least the link's minimum and at most
    that plus the jitter seen recently (chunking, scheduling). For a packet after a hole, the
    number of wraps k is the one that puts its latency mid-way in that band. It is used only
    after a visible hole (a step other than 1: the next packet arriving late is a host stall,
    not a loss of exactly k wraps, which stays undetected), only when the band is narrower than
    half a wrap, and the band is taken from the packets before the hole, so a packet after a
    hole that also arrives late by a host stall of more than about half a wrap (0.5 s for a
    Cyton) could be misplaced; otherwise the count is exact. Without arrival times, or when the
    wrap is too short for the jitter (a BITalino's 16 frames at 1000 Hz: 16 ms), it is the
    plain modular step, as before: exact up to ``modulus - 2`` lost packets (``modulus - 1``
    lost make the next packet look like a repeat).
    """

    #: Latency floor may rise this fast (s per s): crystal drift and a slowly changing link.
    DRIFT = 2e-4
    #: Recent-jitter memory: the band decays with this half-life (seconds of stream).
    HALF_LIFE_S = 10.0

    def __init__(self, modulus: int, rate_hz: float) -> None:
        self.modulus = modulus
        self.rate_hz = float(rate_hz)
        self.count: int | None = None  # unwrapped counter of the last packet
        self._last: int = 0  # its wire value
        self._lat_min: float | None = None
        self._band = 0.0
        self._t_last: float | None = None
        self._decay = 0.5 ** (1.0 / (self.HALF_LIFE_S * self.rate_hz))
        #: Wraps added by time (for tests and logs).
        self.wraps_added = 0

    def advance(self, value: int, t_host: float | None) -> int | None:
        """The unwrapped counter of a packet with wire counter ``value`` (None: a duplicate)."""
        m = self.modulus
        if self.count is None:
            self.count = value
            self._last = value
            self._observe(t_host)
            return self.count
        step = (value - self._last) % m
        k = self._wraps(step, t_host)
        if step == 0 and k == 0:
            return None  # the same packet again
        self.count += step + k * m
        self.wraps_added += k
        self._last = value
        self._observe(t_host)
        return self.count

    def _wraps(self, step: int, t_host: float | None) -> int:
        if t_host is None or self._lat_min is None or self.count is None:
            return 0
        if step == 1:
            # The next packet: a late arrival is a host stall, not a loss of exactly 256 k
            # packets (which this cannot tell apart, and is far less likely).
            return 0
        if self._band * self.rate_hz >= self.modulus / 2:
            return 0  # too jittery to tell wraps apart
        lat_min = self._lat_min + self.DRIFT * max(0.0, t_host - (self._t_last or t_host))
        mid = (t_host - lat_min - self._band / 2) * self.rate_hz  # where the counter should be
        return max(0, round((mid - (self.count + step)) / self.modulus))

    def _observe(self, t_host: float | None) -> None:
        if t_host is None or self.count is None:
            return
        lat = t_host - self.count / self.rate_hz
        if self._lat_min is None:
            self._lat_min = lat
        else:
            floor = self._lat_min + self.DRIFT * max(0.0, t_host - (self._t_last or t_host))
            self._lat_min = min(floor, lat)
        self._band = max(self._band * self._decay, lat - self._lat_min)
        self._t_last = t_host


def counter_runs(counters: np.ndarray, values: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Split decoded rows into runs of consecutive sample counters, one frame each: a lost
    packet breaks the run, so the session sees the jump and records an exact gap."""
    if len(counters) == 0:
        return []
    breaks = np.nonzero(np.diff(counters) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(counters)]])
    return [(int(counters[a]), values[a:b]) for a, b in zip(starts, ends, strict=True)]


class UnknownDeviceKind(ValueError):
    """A ``kind`` no decoder is registered for; the message lists the known ones."""


#: Decoder factories by device kind. Vendor modules in ``ingest/wire/`` register themselves here
#: (``register_decoder``) when ``ingest.wire.kinds`` imports them.
DECODERS: dict[str, Callable[..., LinkDecoder]] = {"neurospasm": NeurospasmDecoder}


def register_decoder(kind: str, factory: Callable[..., LinkDecoder]) -> None:
    """Add a device kind (called by each vendor decoder module at import)."""
    DECODERS[kind] = factory


def device_kinds() -> tuple[str, ...]:
    """The kinds a ``[[devices]]`` table may name, in a stable order."""
    return tuple(DECODERS)


def decoder_for(kind: str, settings: Mapping[str, Any] | None = None) -> LinkDecoder:
    """A fresh decoder for one connection of a device of ``kind``.

    ``settings``: the decoder's keyword arguments, already checked (``ingest.wire.kinds``
    converts a ``[[devices]]`` table's ``options`` into them).
    """
    try:
        factory = DECODERS[kind]
    except KeyError:
        raise UnknownDeviceKind(f"unknown device kind {kind!r} (known: {', '.join(DECODERS)})") from None
    return factory(**(settings or {}))
