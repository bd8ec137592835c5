"""The device end of wire protocol v1: what a wearable's firmware does, without the hardware.

``SimDevice`` is a deterministic state machine. It owns a device clock (sample counters that run
at the nominal rate of the device's crystal, which may drift against the host), turns a
synthesized ``Recording`` into INFO / EMG / ACC / STATUS frames, and answers host commands. It has
no I/O of its own: the pty server and the virtual BLE peripheral call ``frames_until`` with the
device's elapsed time and send the bytes it returns, so the same device runs in real time, as
fast as possible, or inside a test without any clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ingest.wire.protocol import (
    AccFrame,
    CmdFrame,
    Command,
    EmgFrame,
    Frame,
    InfoFrame,
    StatusFrame,
    StreamDecoder,
    encode_frame,
    max_acc_samples_per_frame,
    max_emg_samples_per_frame,
)

#: Microvolts per LSB of the simulated EMG front end: int16 covers +-3276.7 uV, so strong spasms
#: fit and a railed amplifier (saturation) is representable.
EMG_SCALE_UV = 0.1
#: g per LSB of the simulated accelerometer (+-8 g full scale at 16 bit).
ACC_SCALE_G = 1.0 / 4096.0
INFO_PERIOD_S = 1.0
STATUS_PERIOD_S = 1.0


@dataclass(slots=True)
class SignalSource:
    """Where the device's samples come from: physical-unit arrays and their rates.

    ``loop`` repeats the arrays forever (the demo); otherwise the device goes quiet at the end
    (it keeps sending STATUS and INFO), as a wearable with nothing more to say would.
    """

    emg_uv: np.ndarray
    acc_g: np.ndarray
    emg_rate_hz: int
    acc_rate_hz: int
    channel_labels: list[str]
    loop: bool = False
    #: ADC resolution: full scale maps to int16 full scale, so the recording's own railing
    #: (saturation) is exactly where the simulated amplifier rails.
    emg_scale_uv: float = EMG_SCALE_UV
    acc_scale_g: float = ACC_SCALE_G

    @classmethod
    def from_recording(cls, recording: object, *, loop: bool = False) -> SignalSource:
        return cls(
            emg_uv=np.asarray(recording.emg_uv),  # type: ignore[attr-defined]
            acc_g=np.asarray(recording.acc_g),  # type: ignore[attr-defined]
            emg_rate_hz=int(recording.emg_rate_hz),  # type: ignore[attr-defined]
            acc_rate_hz=int(recording.acc_rate_hz),  # type: ignore[attr-defined]
            channel_labels=list(recording.channel_labels),  # type: ignore[attr-defined]
            loop=loop,
            emg_scale_uv=float(getattr(recording, "emg_full_scale_uv", EMG_SCALE_UV * 32767)) / 32767,
            acc_scale_g=float(getattr(recording, "acc_full_scale_g", ACC_SCALE_G * 32767)) / 32767,
        )


def _quantize(values: np.ndarray, scale: float) -> np.ndarray:
    """Physical units to int16 ADC codes, railing at full scale like a real converter."""
    return np.clip(np.rint(values / scale), -32768, 32767).astype(np.int16)


@dataclass(slots=True)
class DeviceStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    commands: int = 0
    bad_command_bytes: int = 0


@dataclass
class SimDevice:
    """A simulated wearable. Call ``frames_until(t)`` with the device's own elapsed seconds.

    The device is idle after power-on and streams after a START command (``handle_bytes``), as
    the protocol requires; ``autostart=True`` skips that for tools that only listen.
    """

    source: SignalSource
    device_id: str = "sim-0001"
    firmware: str = "sim-1.0"
    boot_id: int | None = None
    autostart: bool = False
    seed: int = 0
    #: Called with each encoded frame before it leaves; fault injection hooks in here.
    frame_filter: Callable[[Frame, bytes], list[bytes]] | None = None
    streaming: bool = field(init=False, default=False)
    stats: DeviceStats = field(init=False, default_factory=DeviceStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        if self.boot_id is None:
            self.boot_id = self._rng.getrandbits(32)
        self._decoder = StreamDecoder()
        self._seq = 0
        self._emg_n = 0  # samples sent so far == device EMG sample counter
        self._acc_n = 0
        self._t_last_info = -1e9
        self._t_last_status = -1e9
        self._t_start = 0.0
        self._t_now = 0.0
        self._emg_block = max_emg_samples_per_frame(len(self.source.channel_labels))
        self._acc_block = max_acc_samples_per_frame(3)
        self._emg_codes = _quantize(
            np.asarray(self.source.emg_uv, dtype=np.float64), self.source.emg_scale_uv
        )
        self._acc_codes = _quantize(np.asarray(self.source.acc_g, dtype=np.float64), self.source.acc_scale_g)
        self._pending: list[bytes] = []
        self.battery_pct = 100
        self.contact_mask = (1 << len(self.source.channel_labels)) - 1
        if self.autostart:
            self._start(0.0)

    # -- host side -------------------------------------------------------------------------
    def handle_bytes(self, data: bytes) -> None:
        """Bytes written by the host (the gateway); commands take effect at the current time."""
        for frame in self._decoder.feed(data):
            if isinstance(frame, CmdFrame):
                self.stats.commands += 1
                self.handle_command(frame.command)
        self.stats.bad_command_bytes = self._decoder.stats.bad_frames

    def handle_command(self, command: Command) -> None:
        if command is Command.START and not self.streaming:
            self._start(self._t_now)
        elif command is Command.STOP:
            self.streaming = False
        elif command is Command.INFO or command is Command.START:
            self._t_last_info = -1e9  # send INFO at the next opportunity

    def _start(self, t: float) -> None:
        self.streaming = True
        # Sample counters run from boot; a restarted stream continues them (only a reboot resets).
        self._t_start = t - self._emg_n / self.source.emg_rate_hz
        self._t_last_info = -1e9
        stream_started(self.frame_filter, t)

    def reboot(self, t: float) -> None:
        """Power-cycle: counters restart at 0, new boot id, idle until START (unless autostart)."""
        self.boot_id = self._rng.getrandbits(32)
        self._emg_n = self._acc_n = 0
        self._seq = 0
        self.streaming = False
        self._t_now = t
        if self.autostart:
            self._start(t)

    # -- device side -----------------------------------------------------------------------
    def info_frame(self) -> InfoFrame:
        assert self.boot_id is not None
        return InfoFrame(
            seq=self._next_seq(),
            counter=self._emg_n,
            boot_id=self.boot_id,
            emg_rate_hz=self.source.emg_rate_hz,
            acc_rate_hz=self.source.acc_rate_hz,
            emg_scale_uv=self.source.emg_scale_uv,
            acc_scale_g=self.source.acc_scale_g,
            device_id=self.device_id,
            firmware=self.firmware,
            channel_labels=tuple(self.source.channel_labels),
        )

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        return seq

    def _emit(self, frame: Frame, out: list[bytes], made_at: float | None = None) -> None:
        """Encode, filter (faults) and queue one frame; ``made_at``: device time it was complete."""
        wire = encode_frame(frame)
        if self.frame_filter is not None and hasattr(self.frame_filter, "made_at"):
            setattr(self.frame_filter, "made_at", made_at)  # noqa: B010 (the truth stamps it with when it was made)
        sent = self.frame_filter(frame, wire) if self.frame_filter else [wire]
        for chunk in sent:
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(chunk)
            out.append(chunk)

    def _samples(self, codes: np.ndarray, start: int, n: int) -> np.ndarray | None:
        total = len(codes)
        if total == 0:
            return None
        if not self.source.loop:
            if start >= total:
                return None
            return codes[start : min(start + n, total)]
        idx = np.arange(start, start + n) % total
        return codes[idx]

    def frames_until(self, t: float) -> list[bytes]:
        """All frames the device has ready by its elapsed time ``t`` (seconds since power-on).

        A frame leaves once its last sample has been converted, so a block of k samples at rate r
        is sent k/r seconds after its first sample: the latency a real firmware has too.
        """
        self._t_now = max(self._t_now, t)
        out: list[bytes] = []
        if not self.streaming:
            return out
        stream_started(self.frame_filter, self._t_start)  # (a filter attached after autostart)
        if t - self._t_last_info >= INFO_PERIOD_S:
            self._t_last_info = t
            self._emit(self.info_frame(), out)
        src = self.source
        emg_due = int((t - self._t_start) * src.emg_rate_hz)
        acc_due = int((t - self._t_start) * src.acc_rate_hz)
        # Interleave EMG and ACC frames in time order, as the firmware's DMA completions would.
        while True:
            next_emg_end = self._emg_n + self._emg_block
            next_acc_end = self._acc_n + self._acc_block
            emg_ready = next_emg_end <= emg_due
            acc_ready = src.acc_rate_hz > 0 and next_acc_end <= acc_due
            if not emg_ready and not acc_ready:
                break
            emg_time = next_emg_end / src.emg_rate_hz
            acc_time = next_acc_end / src.acc_rate_hz if src.acc_rate_hz else float("inf")
            if emg_ready and (not acc_ready or emg_time <= acc_time):
                block = self._samples(self._emg_codes, self._emg_n, self._emg_block)
                if block is not None:
                    self._emit(EmgFrame(self._next_seq(), self._emg_n, block), out, self._t_start + emg_time)
                self._emg_n += len(block) if block is not None and len(block) else self._emg_block
            else:
                block = self._samples(self._acc_codes, self._acc_n, self._acc_block)
                if block is not None:
                    self._emit(AccFrame(self._next_seq(), self._acc_n, block), out, self._t_start + acc_time)
                self._acc_n += len(block) if block is not None and len(block) else self._acc_block
        if t - self._t_last_status >= STATUS_PERIOD_S:
            self._t_last_status = t
            self._emit(
                StatusFrame(
                    self._next_seq(),
                    self._emg_n,
                    self.battery_pct,
                    3600 + 6 * self.battery_pct,
                    self.contact_mask,
                ),
                out,
            )
        return out

    @property
    def emg_samples_sent(self) -> int:
        return self._emg_n

    @property
    def finished(self) -> bool:
        """True once a non-looping source has sent every sample."""
        return not self.source.loop and self._emg_n >= len(self._emg_codes)


def stream_started(frame_filter: object, t: float) -> None:
    """Tell a fault injector (``firmware_sim.faults``) the device time the stream started: its
    schedule counts from there, as the scenario's events do."""
    hook = getattr(frame_filter, "stream_started", None)
    if hook is not None:
        hook(t)
