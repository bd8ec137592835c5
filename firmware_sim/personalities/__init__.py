"""Simulator personalities: the same simulated wearable, speaking a vendor's protocol.

``neurospasm sim --device KIND`` serves the scenario's signals (EMG in uV, accelerometer in g,
the scenario's labels and faults) as an OpenBCI Cyton, a Shimmer3 ExG, a BITalino, a Myo or a
Polar H10 would send them, so the gateway's decoders and its end-to-end tests run against every
kind over a real pty (serial kinds) or the virtual BLE backend (BLE kinds, ``firmware_sim.ble``).

How the pieces fit:

* ``PersonalityDevice`` is a ``SimDevice`` (so ``PtyServer``, ``VirtualPeripheral`` and
  ``faults.simulate`` drive it unchanged). It resamples the recording to the rate the vendor's
  device samples at (``scipy.signal.resample_poly``: an anti-aliased decimation, as the ADC's own
  digital filter does), quantises to the vendor's ADC codes, keeps the device's sample clock, and
  asks its ``Personality`` for the vendor bytes of each block of samples.
* A ``Personality`` knows only the vendor's protocol: its rates and ADC scaling, how one block of
  samples becomes packets (``packets``), and how it answers the host's command bytes
  (``on_host_bytes``). It never paces time, never sees faults.
* Faults: each packet group is offered to the device's ``frame_filter`` (the ``FaultInjector``)
  together with an ``EmgFrame`` / ``AccFrame`` naming the samples it carries, so loss, corruption
  and duplication act on vendor packets, and the injector's truth and ``expected_gaps()`` are in
  the vendor device's own sample counter. Vendor links carry no INFO frame: the gateway's decoder
  knows the device constants, so the injector is told the link is described from the first packet.
  Command replies (acknowledgements, inquiry responses) bypass the faults.

How to add a personality (one module per vendor, ``firmware_sim/personalities/<vendor>.py``):

1. Subclass ``Personality``; set ``kind`` (the ``[[devices]] kind`` of its decoder), ``link``
   ("serial" or "ble"), and in ``__init__`` call ``super().__init__`` then ``self.configure(...)``
   with the rates, channel count and ADC scales of the default configuration.
2. Implement ``packets(first, n)``: the wire packets for EMG samples ``first .. first+n-1``
   (``self.emg_counts(first, n)`` gives the vendor ADC codes; ``self.acc_counts_for(first, n)``
   the accelerometer codes sampled within that span), each as ``Packet(frame, char_uuid, data)``.
   For a BLE kind, ``char_uuid`` is the notify characteristic; for serial, "".
3. Implement ``on_host_bytes(data, char_uuid)``: parse the vendor's commands and return a
   ``HostReply`` (start / stop streaming, reconfigure via ``self.configure``, bytes to answer).
4. BLE kinds set ``gatt`` (services and characteristics) and ``advertised_name``.
5. Decorate the class with ``@register_personality``, and import the module in
   ``_load_builtin`` below. Tests: decode its output with the kind's decoder (never the other
   way round: the decoder's test vectors come from the vendor's documents, not from here).

Only ``ingest.wire.*`` (protocol definitions) is imported from the gateway side.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import signal as sps

from firmware_sim.device import SignalSource, SimDevice, stream_started
from ingest.wire.protocol import AccFrame, EmgFrame, Frame

__all__ = [
    "PERSONALITIES",
    "GattCharacteristic",
    "GattService",
    "HostReply",
    "Packet",
    "Personality",
    "PersonalityDevice",
    "UnknownPersonality",
    "make_device",
    "personality_kinds",
    "register_personality",
]

#: The vendor modules shipped with the simulator; imported on first use of the registry.
_BUILTIN_MODULES: tuple[str, ...] = (
    "firmware_sim.personalities.cyton",
    "firmware_sim.personalities.shimmer",
    "firmware_sim.personalities.bitalino",
    "firmware_sim.personalities.myo",
    "firmware_sim.personalities.polar",
)


@dataclass(frozen=True, slots=True)
class Packet:
    """One unit on the wire: a serial packet (or several) or one BLE notification.

    ``frame`` is what the fault injector judges the packet by: an ``EmgFrame`` / ``AccFrame`` whose
    ``counter`` is the first sample (device counter) and whose ``samples`` has one row per sample.
    """

    frame: Frame
    char_uuid: str
    data: bytes


@dataclass(slots=True)
class HostReply:
    """What the device does about bytes the host wrote."""

    start: bool = False
    stop: bool = False
    #: Bytes to send back at once (acknowledgements, inquiry responses); never subject to faults.
    reply: bytes = b""
    reply_char_uuid: str = ""


@dataclass(frozen=True, slots=True)
class GattCharacteristic:
    uuid: str
    properties: tuple[str, ...]  # "notify", "read", "write", "write-without-response"
    value: bytes = b""  # for readable characteristics


@dataclass(frozen=True, slots=True)
class GattService:
    uuid: str
    characteristics: tuple[GattCharacteristic, ...]


class UnknownPersonality(ValueError):
    """A ``--device`` kind the simulator has no personality for."""


class Personality:
    """A vendor protocol on the device side. Subclasses: see the module docstring."""

    kind: ClassVar[str] = ""
    link: ClassVar[Literal["serial", "ble"]] = "serial"
    #: GATT table of a BLE kind (empty for serial kinds).
    gatt: ClassVar[tuple[GattService, ...]] = ()
    advertised_name: ClassVar[str] = ""
    #: Service UUIDs in the advertisement (default: the first service of ``gatt``).
    advertised_uuids: ClassVar[tuple[str, ...]] = ()
    #: The vendor device restarts its sample counter whenever streaming starts (Cyton 'b',
    #: BITalino's start). False: the counter runs from power-on (Shimmer's RTC timestamp).
    restarts_counter_on_start: ClassVar[bool] = True
    #: Options a personality accepts from the command line (``--device-option key=value``).
    options_help: ClassVar[dict[str, str]] = {}

    def __init__(self, device: PersonalityDevice, **options: str) -> None:
        self.device = device
        unknown = set(options) - set(self.options_help)
        if unknown:
            known = ", ".join(sorted(self.options_help)) or "none"
            raise UnknownPersonality(
                f"--device {self.kind}: unknown option(s) {', '.join(sorted(unknown))} (known: {known})"
            )
        self.options = dict(options)
        self.emg_rate_hz = 0.0
        self.acc_rate_hz = 0.0
        self.n_channels = 0
        self.emg_lsb_uv = 1.0
        self.acc_lsb_g = 1.0
        self.emg_code_range = (-(1 << 23), (1 << 23) - 1)
        self.acc_code_range = (-32768, 32767)
        self.block_samples = 1

    # -- configuration -----------------------------------------------------------------------
    def configure(
        self,
        *,
        emg_rate_hz: float,
        acc_rate_hz: float,
        n_channels: int,
        emg_lsb_uv: float,
        acc_lsb_g: float,
        block_samples: int,
        emg_code_range: tuple[int, int] | None = None,
        acc_code_range: tuple[int, int] | None = None,
        acc_offset: float = 0.0,
    ) -> None:
        """Set (or change, after a host command) what the vendor device samples and how.

        ``acc_offset`` is the code of 0 g (unsigned ADCs: Shimmer's 2047, BITalino's mid-scale).
        """
        self.emg_rate_hz = float(emg_rate_hz)
        self.acc_rate_hz = float(acc_rate_hz)
        self.n_channels = int(n_channels)
        self.emg_lsb_uv = float(emg_lsb_uv)
        self.acc_lsb_g = float(acc_lsb_g)
        self.block_samples = max(1, int(block_samples))
        if emg_code_range is not None:
            self.emg_code_range = emg_code_range
        if acc_code_range is not None:
            self.acc_code_range = acc_code_range
        self.acc_offset = float(acc_offset)
        self.device._resample()

    # -- samples (vendor ADC codes) ----------------------------------------------------------
    # ``first`` is always the device's sample *counter*; the signal position behind it is
    # ``signal_index(first)``: a device that restarts its counter keeps sampling the same world.
    def signal_index(self, counter: int) -> int:
        """Recording sample (vendor rate, since power-on) that counter value ``counter`` samples."""
        return counter + self.device._sig_base

    def emg_counts(self, first: int, n: int) -> np.ndarray:
        """EMG codes of samples first..first+n-1 (counter values), shape (n, n_channels), int64."""
        return self.device._take(self.device._emg_vendor, self.signal_index(first), n)

    def acc_counts(self, first: int, n: int) -> np.ndarray:
        """Accelerometer codes of accelerometer samples first..first+n-1 (absolute indices, as
        ``acc_span`` returns them), shape (n, 3), int64."""
        return self.device._take(self.device._acc_vendor, first, n)

    def acc_span(self, first: int, n: int) -> tuple[int, int]:
        """Accelerometer sample indices [a, b) within EMG counter values first..first+n-1."""
        if self.acc_rate_hz <= 0:
            return 0, 0
        ratio = self.acc_rate_hz / self.emg_rate_hz
        k = self.signal_index(first)
        return int(np.ceil(k * ratio - 1e-9)), int(np.ceil((k + n) * ratio - 1e-9))

    # -- the protocol (subclasses) -----------------------------------------------------------
    def packets(self, first: int, n: int) -> list[Packet]:
        raise NotImplementedError

    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        raise NotImplementedError

    def on_reboot(self) -> None:
        """Power-cycle: back to the default configuration (override when it has state)."""

    # -- helpers for subclasses ----------------------------------------------------------------
    def emg_frame(self, first: int, codes: np.ndarray) -> EmgFrame:
        return EmgFrame(self.device._next_seq(), first, codes)

    def acc_frame(self, first: int, codes: np.ndarray) -> AccFrame:
        return AccFrame(self.device._next_seq(), first, codes)


PERSONALITIES: dict[str, type[Personality]] = {}


def register_personality(cls: type[Personality]) -> type[Personality]:
    """Class decorator: make ``cls`` available as ``--device cls.kind``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    PERSONALITIES[cls.kind] = cls
    return cls


def _load_builtin() -> None:
    for name in _BUILTIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a vendor module that exists but fails to import is a bug
                raise


def personality_kinds() -> tuple[str, ...]:
    """Kinds ``--device`` accepts: "neurospasm" (our own protocol) and every personality."""
    _load_builtin()
    return ("neurospasm", *sorted(PERSONALITIES))


def personality_class(kind: str) -> type[Personality]:
    _load_builtin()
    try:
        return PERSONALITIES[kind]
    except KeyError:
        raise UnknownPersonality(
            f"--device: unknown kind {kind!r} (known: {', '.join(personality_kinds())})"
        ) from None


@dataclass
class PersonalityDevice(SimDevice):
    """A ``SimDevice`` whose bytes are a vendor's. ``kind`` picks the personality.

    The device clock and the start/stop semantics are the ``SimDevice``'s: samples are made at
    the vendor rate from power-on; a frame (packet group) leaves once its last sample exists;
    while the host is away the device keeps sampling (what it sends meanwhile is lost).
    """

    kind: str = "cyton"
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._emg_vendor = np.zeros((0, 1), dtype=np.int64)
        self._acc_vendor = np.zeros((0, 3), dtype=np.int64)
        self._replies: list[tuple[str, bytes]] = []
        self._personality_ready = False
        self._started_once = False
        self._t_origin = 0.0  # device time of this boot's first START: the scenario's time 0
        self._sig_base = 0
        self.personality: Personality = personality_class(self.kind)(self, **self.options)
        self._personality_ready = True
        self._resample()
        SimDevice.__post_init__(self)

    # -- samples at the vendor's rate ----------------------------------------------------------
    def _resample(self) -> None:
        if not getattr(self, "_personality_ready", False):
            return
        p = self.personality
        src: SignalSource = self.source
        emg = _resample(np.asarray(src.emg_uv, dtype=np.float64), src.emg_rate_hz, p.emg_rate_hz)
        emg = _fit_channels(emg, p.n_channels, self.seed)
        lo, hi = p.emg_code_range
        self._emg_vendor = np.clip(np.rint(emg / p.emg_lsb_uv), lo, hi).astype(np.int64)
        if p.acc_rate_hz > 0 and len(src.acc_g):
            acc = _resample(np.asarray(src.acc_g, dtype=np.float64), src.acc_rate_hz, p.acc_rate_hz)
            lo, hi = p.acc_code_range
            self._acc_vendor = np.clip(np.rint(acc / p.acc_lsb_g + p.acc_offset), lo, hi).astype(np.int64)
        else:
            self._acc_vendor = np.zeros((0, 3), dtype=np.int64)
        # The sample counter is left alone: vendors reconfigure while idle (the host stops the
        # stream first), and a counter that jumped here would make every later gap wrong.

    def _take(self, codes: np.ndarray, first: int, n: int) -> np.ndarray:
        total = len(codes)
        if total == 0 or n <= 0:
            return np.zeros((max(n, 0), codes.shape[1] if codes.ndim == 2 else 1), dtype=np.int64)
        if self.source.loop:
            return codes[np.arange(first, first + n) % total]
        out = codes[first : first + n]
        if len(out) < n:  # past the end: the device keeps sampling a silent input
            out = np.concatenate([out, np.zeros((n - len(out), codes.shape[1]), dtype=codes.dtype)])
        return out

    # -- host side -------------------------------------------------------------------------
    def handle_bytes(self, data: bytes) -> None:
        self.handle_write(data, "")

    def handle_write(self, data: bytes, char_uuid: str) -> None:
        """Bytes the host wrote (to ``char_uuid`` on BLE); vendor commands take effect now."""
        r = self.personality.on_host_bytes(bytes(data), char_uuid)
        if r.start or r.stop or r.reply:
            self.stats.commands += 1  # the pty server takes any command as "the host listens"
        if r.reply:
            self._replies.append((r.reply_char_uuid, r.reply))
        if r.stop:
            self.streaming = False
        if r.start:
            restart = self.personality.restarts_counter_on_start
            if restart or not self.streaming:
                if restart and self._started_once:
                    # The counter restarts; the world does not: counter 0 samples "now", on the
                    # scenario's timeline (which began at this boot's first START).
                    self._sig_base = round((self._t_now - self._t_origin) * self.personality.emg_rate_hz)
                    self._emg_n = 0
                    self._notify_injector("counters_restarted")
                if not self._started_once:
                    self._t_origin = self._t_now
                self._start(self._t_now)
                self._started_once = True
                self._notify_injector("link_described")

    def _notify_injector(self, what: str) -> None:
        hook = getattr(self.frame_filter, what, None)
        if hook is not None:
            hook()

    def reboot(self, t: float) -> None:
        self._sig_base = 0  # a power cycle restarts the scenario, as SimDevice.reboot does
        self._started_once = False
        self.personality.on_reboot()
        SimDevice.reboot(self, t)
        self._resample()

    # -- device side -----------------------------------------------------------------------
    def notifications_until(self, t: float) -> list[tuple[str, bytes]]:
        """Everything ready by device time ``t``: (characteristic UUID or "", bytes), in order."""
        self._t_now = max(self._t_now, t)
        out: list[tuple[str, bytes]] = list(self._replies)
        self._replies.clear()
        if not self.streaming:
            return out
        stream_started(self.frame_filter, self._t_start)  # (a filter attached after autostart)
        p = self.personality
        due = int((t - self._t_start) * p.emg_rate_hz + 1e-9)
        block = p.block_samples
        inj = self.frame_filter
        while self._emg_n + block <= due:
            if inj is not None and hasattr(inj, "now"):
                # Judge the group at the device time its last sample was made, not at the paced
                # loop's tick: a stalled loop must not stretch a scripted loss burst.
                made = self._t_start + (self._emg_n + block) / p.emg_rate_hz
                inj.now = inj.stream_time(made) if hasattr(inj, "stream_time") else made
            for pkt in p.packets(self._emg_n, block):
                sent = self.frame_filter(pkt.frame, pkt.data) if self.frame_filter else [pkt.data]
                for chunk in sent:
                    self.stats.frames_sent += 1
                    self.stats.bytes_sent += len(chunk)
                    out.append((pkt.char_uuid, chunk))
            self._emg_n += block
        return out

    def frames_until(self, t: float) -> list[bytes]:
        return [data for _, data in self.notifications_until(t)]

    def _start(self, t: float) -> None:
        self.streaming = True
        self._t_start = t - self._emg_n / self.personality.emg_rate_hz
        stream_started(self.frame_filter, t)

    @property
    def finished(self) -> bool:
        return not self.source.loop and self._emg_n >= len(self._emg_vendor)


def _resample(x: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Band-limited rate change (polyphase, Kaiser-windowed anti-alias filter)."""
    if len(x) == 0 or rate_in == rate_out:
        return x.copy()
    ratio = Fraction(rate_out / rate_in).limit_denominator(1000)
    return np.asarray(sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=0))


def _fit_channels(emg: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The scenario's channels on the vendor's first inputs; its spare inputs are quiet muscle.

    A vendor device samples all its inputs. A spare input is modelled as an electrode pair on a
    relaxed muscle: white noise of ``SPARE_RMS_UV`` (the front end's noise plus resting skin),
    never a copy of a labelled channel (that would double every spasm) and never flat (a real
    input is not).
    """
    if emg.shape[1] >= n:
        return emg[:, :n]
    rng = np.random.default_rng([seed, 0x5BA4E])
    spare = rng.normal(0.0, SPARE_RMS_UV, size=(emg.shape[0], n - emg.shape[1]))
    return np.concatenate([emg, spare], axis=1)


#: Noise on the inputs a scenario leaves unconnected, uV rms.
SPARE_RMS_UV = 2.0


def make_device(kind: str, source: SignalSource, **kwargs: Any) -> SimDevice:
    """A simulated device of ``kind``: our own wearable for "neurospasm", else a personality."""
    options = kwargs.pop("options", None) or {}
    if kind == "neurospasm":
        if options:
            raise UnknownPersonality(f"--device neurospasm takes no options (got {', '.join(options)})")
        return SimDevice(source, **kwargs)
    personality_class(kind)  # a clear error before anything is built
    return PersonalityDevice(source, kind=kind, options=dict(options), **kwargs)


#: For type checkers: the frame filter signature devices call.
FrameFilter = Callable[[Frame, bytes], list[bytes]]
