"""Device and link faults on demand, with the ground truth of what was done.

A ``FaultInjector`` is built from a scenario's ``[faults]`` section and a seed. It plugs into
``SimDevice.frame_filter`` and decides, frame by frame, whether the frame is lost (i.i.d., in a
random burst, or in a scripted burst), corrupted, duplicated or held back to swap with the next
one. It also holds the *schedule* of link events (disconnects, reboots) and the device state that
changes with time (battery, electrode contact) which the pty server (or :func:`simulate`, its
offline twin) applies.

Why it records *truth* and not just counters: the gateway's claim "these samples are missing,
for this reason" is only testable against an independent account of what was really lost. So
the injector keeps ``truth`` (one record per fault it applied) and a small model of the gateway's
gap accounting (``expected_gaps()``) fed with exactly the frames that left intact, in the order
the device produced them. Tests compare the gateway's gap records with that list, field by field.

Determinism: the per-frame decisions for data frames are keyed hashes of (seed, boot, frame
type, sample counter), not draws from a sequential RNG. A live run paced by a real clock sends
INFO and STATUS frames at slightly different moments each time; keyed decisions still lose the
same EMG and ACC frames, so a live run and its offline twin agree. Random burst times come from
``Scenario.fault_rng()``.

Only ``firmware_sim`` and ``ingest.wire.protocol`` are imported: the simulator never sees the
gateway's pipeline, the gap model here is written from the documented contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from firmware_sim.scenario import FaultSpec, Scenario
from ingest.wire.protocol import AccFrame, Command, EmgFrame, Frame, FrameType, InfoFrame, StatusFrame

__all__ = [
    "FaultInjector",
    "LinkEvent",
    "SimCapture",
    "simulate",
]

_M64 = (1 << 64) - 1
# Purposes of keyed draws: never renumber (it would change which frames every scenario loses).
_K_LOSS, _K_CORRUPT, _K_DUP, _K_REORDER, _K_CORRUPT_BYTES = 1, 2, 3, 4, 5

Domain = Literal["emg", "acc"]
LinkAction = Literal["disconnect", "reconnect", "reboot", "power_on"]


def _mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-distributed 64-bit hash step."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _keyed_uniform(seed: int, *key: int) -> float:
    """A uniform [0, 1) number that depends only on (seed, key): order-independent randomness."""
    h = _mix(seed & _M64)
    for k in key:
        h = _mix(h ^ (k & _M64))
    return (h >> 11) * 2.0**-53


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A scheduled link or power event. ``duration_s`` is the outage (disconnect) or downtime (reboot)."""

    t_s: float
    action: LinkAction
    duration_s: float = 0.0


@dataclass(slots=True)
class _DomainModel:
    """The gateway's view of one sample stream, as the protocol contract defines it."""

    rate_hz: float
    end: int | None = None  # counter one past the last delivered sample (this boot)
    last_t_host: float | None = None  # host time when that sample was complete
    link_dropped: bool = False  # the link went down since the last delivered frame
    reboot_from: tuple[int, float] | None = None  # (old end, old last time) awaiting the new boot
    reboot_cause: str = "reboot"  # what the gateway will call that gap


def _frame_kind(frame: Frame) -> str:
    if isinstance(frame, EmgFrame):
        return "emg"
    if isinstance(frame, AccFrame):
        return "acc"
    if isinstance(frame, InfoFrame):
        return "info"
    if isinstance(frame, StatusFrame):
        return "status"
    return "cmd"


_TYPE_CODE = {"emg": int(FrameType.EMG), "acc": int(FrameType.ACC), "info": int(FrameType.INFO),
              "status": int(FrameType.STATUS), "cmd": int(FrameType.CMD)}  # fmt: skip


@dataclass
class FaultInjector:
    """Frame-level faults plus the link schedule of one simulated device.

    Use ``FaultInjector.from_scenario(scenario, recording)``, set ``device.frame_filter =
    injector``, and call ``advance(t_device, t_host)`` before each ``device.frames_until``.
    The server drives ``link_down`` / ``link_up`` from ``due_events``.
    """

    faults: FaultSpec
    seed: int
    emg_rate_hz: float
    acc_rate_hz: float
    duration_s: float
    n_channels: int = 1
    #: Lead-off stretches per channel index, (start_s, end_s): clears that bit of contact_mask.
    lead_off: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    #: Random loss bursts (start_s, frames); drawn from the scenario's fault RNG by from_scenario.
    random_bursts: list[tuple[float, int]] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(init=False, default_factory=list)
    stats: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.now = 0.0
        self.now_host = 0.0
        #: Device time of the last ``advance`` (the paced loop's tick); ``now`` may be set later
        #: per frame group by the device (the time its last sample was made).
        self.now_tick = 0.0
        #: Host seconds per device second (1 / (speed x crystal error)), set by the server.
        self.host_per_device = 1.0
        #: Device time the frame being filtered was complete, when the device knows it (None:
        #: ``now``). Devices set it before each frame.
        self.made_at: float | None = None
        #: Device time (since power-on) of the stream's first sample, set at the first START:
        #: the scenario's time 0. Faults are scheduled on that timeline, as the scenario's events
        #: are, so a central that starts the stream late (a slow connection, a busy host) moves
        #: both together and a loss scripted between two spasms stays between them.
        self.origin: float | None = None
        self.boot = 0
        self.link_up = True
        self._burst_i = 0
        self._burst_left = 0
        self._held: list[bytes] | None = None
        self._has_info = False
        self._dom: dict[str, _DomainModel] = {
            "emg": _DomainModel(self.emg_rate_hz),
            "acc": _DomainModel(self.acc_rate_hz),
        }
        self._gaps: list[dict[str, Any]] = []
        self._open_link: dict[str, Any] | None = None
        self.schedule = self._build_schedule()
        self._sched_i = 0
        for ch, spans in sorted(self.lead_off.items()):
            for a, b in spans:
                self.truth.append({"kind": "lead_off", "channel_index": ch, "t_device_s": a,
                                   "duration_s": round(b - a, 6)})  # fmt: skip
        self.stats = {k: 0 for k in ("lost", "corrupt", "duplicate", "reorder", "outage")}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        recording: object | None = None,
        *,
        seed_offset: int = 0,
        emg_rate_hz: float | None = None,
        acc_rate_hz: float | None = None,
    ) -> FaultInjector:
        """The scenario's faults; ``seed_offset`` gives each of several simulated devices its own.

        ``emg_rate_hz`` / ``acc_rate_hz``: the rates the device really samples at, when a simulator
        personality resamples the scenario to a vendor's rate (its counters count those samples).
        """
        f = scenario.faults
        seed = (f.seed if f.seed is not None else scenario.seed) + seed_offset
        rng = np.random.default_rng([seed, 0xFA017, 1])
        bursts: list[tuple[float, int]] = []
        if f.loss_bursts_per_min > 0:
            t = 0.0
            while True:
                t += float(rng.exponential(60.0 / f.loss_bursts_per_min))
                if t >= scenario.duration_s:
                    break
                bursts.append((t, max(1, round(float(rng.exponential(f.loss_burst_frames))))))
        lead_off: dict[int, list[tuple[float, float]]] = {}
        if recording is not None:
            for i, label in enumerate(scenario.channels):
                spans = recording.lead_off_intervals(label)  # type: ignore[attr-defined]
                if spans:
                    lead_off[i] = [(float(a), float(b)) for a, b in spans]
        return cls(
            faults=f, seed=seed, emg_rate_hz=emg_rate_hz or scenario.emg_rate_hz,
            acc_rate_hz=scenario.acc_rate_hz if acc_rate_hz is None else acc_rate_hz,
            duration_s=scenario.duration_s, n_channels=scenario.n_channels, lead_off=lead_off,
            random_bursts=bursts,
        )  # fmt: skip

    def _build_schedule(self) -> list[LinkEvent]:
        ev: list[LinkEvent] = []
        for iv in self.faults.disconnects:
            ev.append(LinkEvent(iv.at_s, "disconnect", iv.duration_s))
            ev.append(LinkEvent(iv.at_s + iv.duration_s, "reconnect"))
        for t in self.faults.reboot_at_s:
            ev.append(LinkEvent(t, "reboot", self.faults.reboot_downtime_s))
            ev.append(LinkEvent(t + self.faults.reboot_downtime_s, "power_on"))
        ev.sort(key=lambda e: (e.t_s, e.action in ("reconnect", "power_on")))
        # Overlapping outages would make "which fault lost this sample" ambiguous: refuse them.
        down_until = -1.0
        for e in ev:
            if e.action in ("disconnect", "reboot"):
                if e.t_s < down_until:
                    raise ValueError(
                        f"faults: {e.action} at {e.t_s} s starts while the link is still down "
                        f"(until {down_until} s); outages must not overlap"
                    )
                down_until = e.t_s + e.duration_s
        return ev

    @property
    def needs_link_control(self) -> bool:
        """True when the scenario disconnects or reboots (the server needs a stable symlink)."""
        return bool(self.schedule)

    # -- time --------------------------------------------------------------------------------
    def stream_started(self, t_device: float) -> None:
        """The device started streaming at device time ``t_device`` (the first START sets the
        scenario's time 0; later ones, after a reconnect or a reboot, do not move it)."""
        if self.origin is None:
            self.origin = t_device

    def stream_time(self, t_device: float) -> float:
        """Scenario time (seconds from the stream's first sample) of device time ``t_device``."""
        return t_device - (self.origin or 0.0)

    def advance(self, t_device: float, t_host: float | None = None) -> None:
        """The device's clock reads ``t_device``; the host's ``t_host`` (default: the same)."""
        t = self.now = self.now_tick = self.stream_time(t_device)
        self.now_host = t_device if t_host is None else t_host
        while self._burst_i < len(self.random_bursts) and self.random_bursts[self._burst_i][0] <= t:
            self._burst_left += self.random_bursts[self._burst_i][1]
            self._burst_i += 1

    def due_events(self, t_device: float) -> list[LinkEvent]:
        """Link events whose time has come (each returned once, in order); none before the
        stream has started (their times count from its first sample)."""
        out: list[LinkEvent] = []
        if self.origin is None:
            return out
        t = self.stream_time(t_device)
        while self._sched_i < len(self.schedule) and self.schedule[self._sched_i].t_s <= t:
            out.append(self.schedule[self._sched_i])
            self._sched_i += 1
        return out

    def battery_pct(self, t_device: float) -> int:
        f = self.faults
        t = max(0.0, self.stream_time(t_device))
        return round(max(0.0, f.battery_start_pct - f.battery_drain_pct_per_hour * t / 3600.0))

    def contact_mask(self, t_device: float) -> int:
        mask = (1 << self.n_channels) - 1
        t = self.stream_time(t_device)
        for ch, spans in self.lead_off.items():
            if any(a <= t < b for a, b in spans):
                mask &= ~(1 << ch)
        return mask

    # -- link --------------------------------------------------------------------------------
    def link_down(self, t_device: float, cause: Literal["disconnect", "reboot"], t_host: float | None = None,
                  duration_s: float = 0.0) -> None:  # fmt: skip
        """From now on every frame is lost (unplugged, out of range, or powered off)."""
        self.link_up = False
        rec: dict[str, Any] = {"kind": cause, "t_device_s": round(self.stream_time(t_device), 6),
                               "t_host": t_host if t_host is not None else t_device,
                               "duration_s": duration_s}  # fmt: skip
        self.truth.append(rec)
        self._open_link = rec
        for d in self._dom.values():
            d.link_dropped = True
        if cause == "reboot":
            self.boot += 1
            self._has_info = False
            for d in self._dom.values():
                if d.end is not None and d.last_t_host is not None:
                    d.reboot_from = (d.end, d.last_t_host)
                    d.reboot_cause = "reboot"
                d.end = None
                d.last_t_host = None

    def counters_restarted(self) -> None:
        """A vendor device restarted its sample counter (streaming was started again).

        For the gap model this is a reboot: the samples in between are known only from time. The
        gateway calls it a disconnect when the link had dropped, a reboot otherwise.
        """
        self.boot += 1
        for d in self._dom.values():
            if d.end is not None and d.last_t_host is not None:
                d.reboot_from = (d.end, d.last_t_host)
                d.reboot_cause = "disconnect" if d.link_dropped else "reboot"
            d.end = None
            d.last_t_host = None

    def link_up_now(self, t_device: float, t_host: float | None = None) -> None:
        """The host listens again (it sent a command on the re-created link)."""
        self.link_up = True
        if self._open_link is not None:
            self._open_link["t_device_up_s"] = round(self.stream_time(t_device), 6)
            self._open_link["t_host_up"] = t_host if t_host is not None else t_device
            self._open_link = None

    def link_described(self) -> None:
        """A vendor link started streaming: its decoder scales from the first packet (no INFO frame).

        Called by ``firmware_sim.personalities.PersonalityDevice`` on every START.
        """
        self._has_info = True

    def flush(self) -> list[bytes]:
        """Release a frame held back for reordering (before the link goes down, or at the end)."""
        held, self._held = self._held, None
        return held or []

    # -- the frame filter ---------------------------------------------------------------------
    def __call__(self, frame: Frame, wire: bytes) -> list[bytes]:
        kind = _frame_kind(frame)
        f = self.faults
        counter = int(frame.counter)
        key = (self.boot, _TYPE_CODE[kind], counter if kind in ("emg", "acc") else frame.seq)
        n = len(frame.samples) if isinstance(frame, EmgFrame | AccFrame) else 0
        base: dict[str, Any] = {"frame": kind, "seq": frame.seq, "t_device_s": round(self.now, 6)}
        if kind in ("emg", "acc"):
            base.update(domain=kind, start_counter=counter, samples_missing=n)

        if not self.link_up:
            self.stats["outage"] += 1
            return []
        reason = None
        if any(iv.at_s <= self.now < iv.at_s + iv.duration_s for iv in f.loss_bursts):
            reason = "scripted_burst"
        elif self._burst_left > 0:
            self._burst_left -= 1
            reason = "burst"
        elif f.frame_loss_rate > 0 and _keyed_uniform(self.seed, _K_LOSS, *key) < f.frame_loss_rate:
            reason = "random"
        if reason is not None:
            self.stats["lost"] += 1
            self.truth.append({"kind": "lost_frames", "reason": reason, **base})
            return []

        out: list[bytes]
        intact = True
        if f.corrupt_rate > 0 and _keyed_uniform(self.seed, _K_CORRUPT, *key) < f.corrupt_rate:
            out = [self._corrupt(wire, key)]
            intact = False
            self.stats["corrupt"] += 1
            self.truth.append({"kind": "corrupt", "bytes": f.corrupt_bytes, **base})
        elif f.duplicate_rate > 0 and _keyed_uniform(self.seed, _K_DUP, *key) < f.duplicate_rate:
            out = [wire, wire]
            self.stats["duplicate"] += 1
            self.truth.append({"kind": "duplicate", **base})
        else:
            out = [wire]
        if intact:
            self._delivered(kind, frame, counter, n)

        if (
            self._held is None
            and f.reorder_rate > 0
            and _keyed_uniform(self.seed, _K_REORDER, *key) < f.reorder_rate
        ):
            self._held = out
            self.stats["reorder"] += 1
            self.truth.append({"kind": "reorder", **base})
            return []
        if self._held is not None:
            out = out + self._held
            self._held = None
        return out

    def _corrupt(self, wire: bytes, key: tuple[int, ...]) -> bytes:
        """Flip bytes inside the frame, never its 0x00 delimiter: one frame is damaged, not two."""
        body = bytearray(wire)
        h = _mix(self.seed ^ _K_CORRUPT_BYTES)
        for k in key:
            h = _mix(h ^ (k & _M64))
        rng = np.random.default_rng(h)
        span = max(1, len(body) - 1)
        for pos in rng.choice(span, size=min(self.faults.corrupt_bytes, span), replace=False):
            body[int(pos)] ^= int(rng.integers(1, 256))
        return bytes(body)

    # -- the gateway model --------------------------------------------------------------------
    def _delivered(self, kind: str, frame: Frame, counter: int, n: int) -> None:
        """An intact frame reached the host: update the model of the gateway's gap accounting."""
        if kind == "info":
            self._has_info = True
            return
        if kind not in ("emg", "acc") or not self._has_info:
            return  # data before the boot's first INFO cannot be scaled: the gateway drops it
        d = self._dom[kind]
        # Host time the frame was complete: the tick's host time, less how long before the tick
        # its last sample was made. A loop that stalled makes many frames at one tick; stamping
        # them all with that tick's host time would put the truth late by the stall, while the
        # gateway's clock (a lower envelope of arrivals) puts them where they were sampled.
        made = self.stream_time(self.made_at) if self.made_at is not None else self.now
        t_made = self.now_host - max(0.0, self.now_tick - made) * self.host_per_device
        t_first = t_made - n / d.rate_hz  # host time of the frame's first sample
        if d.end is None:
            if d.reboot_from is not None:
                old_end, old_t = d.reboot_from
                self._gaps.append({
                    "domain": kind, "cause": d.reboot_cause, "start_counter": old_end,
                    "samples_missing": None,
                    "t_host_start": old_t, "t_host_end": max(old_t, t_first), "boot": self.boot,
                })  # fmt: skip
                d.reboot_from = None
        elif counter > d.end:
            self._gaps.append({
                "domain": kind, "cause": "disconnect" if d.link_dropped else "lost_frames",
                "start_counter": d.end, "samples_missing": counter - d.end,
                "t_host_start": d.last_t_host, "t_host_end": t_first, "boot": self.boot,
            })  # fmt: skip
        elif counter + n <= d.end:
            return  # a duplicate: dropped by the gateway
        d.end = counter + n
        d.last_t_host = t_made
        d.link_dropped = False

    def expected_gaps(self) -> list[dict[str, Any]]:
        """The gap records a correct gateway publishes for what this injector did, in order.

        Consecutive lost frames of one stream make one gap; reordered frames within a small window
        and duplicates make none; frames lost at the very end (nothing delivered after them) are
        not a gap yet. Reboot gaps have ``samples_missing=None``: the counter restarted, so the
        gateway can only estimate them from time.
        """
        return list(self._gaps)

    def lost_by_domain(self) -> dict[str, int]:
        """Samples lost to frame-level faults (loss and corruption, not outages), per domain."""
        out = {"emg": 0, "acc": 0}
        for r in self.truth:
            if r["kind"] in ("lost_frames", "corrupt") and r.get("domain") in out:
                out[r["domain"]] += r["samples_missing"]
        return out


@dataclass
class SimCapture:
    """What :func:`simulate` produced: host-timestamped byte chunks plus the injector's truth."""

    chunks: list[tuple[float, bytes]]
    injector: FaultInjector | None
    link_events: list[tuple[float, str]] = field(default_factory=list)  # (t_host, "down"|"up")


def simulate(
    device: Any,
    injector: FaultInjector | None,
    *,
    duration_s: float,
    step_s: float = 0.01,
    t0_host: float = 0.0,
    drift_ppm: float = 0.0,
    jitter_ms: float = 0.0,
    jitter_seed: int = 0,
    on_step: Callable[[float], None] | None = None,
) -> SimCapture:
    """Run a ``SimDevice`` (with its injector) on a virtual clock, as fast as possible.

    The offline twin of the pty server: the same schedule, the same per-frame filter, a host that
    sends START at power-on and listens again the moment the link is back. Host arrival time is
    the device time on the host's clock (``drift_ppm``) plus FIFO-ordered jitter (half-normal,
    ``jitter_ms`` standard deviation), as a serial link would deliver. Deterministic.
    """
    from ingest.wire.protocol import CmdFrame, encode_frame

    if injector is not None:
        device.frame_filter = injector
        injector.host_per_device = 1.0 / (1.0 + drift_ppm * 1e-6)
    rng = np.random.default_rng([jitter_seed, 0x717])
    chunks: list[tuple[float, bytes]] = []
    links: list[tuple[float, str]] = []
    start = encode_frame(CmdFrame(0, Command.START))
    device.handle_bytes(start)
    last_arrival = t0_host
    pending_up: float | None = None
    steps = math.ceil(duration_s / step_s) + 1
    for i in range(steps + 1):
        t = min(i * step_s, duration_s + step_s)
        host = t0_host + t / (1.0 + drift_ppm * 1e-6)
        if injector is not None:
            for ev in injector.due_events(t):
                if ev.action in ("disconnect", "reboot"):
                    held = injector.flush()
                    if held:
                        chunks.append((max(last_arrival, host), b"".join(held)))
                    injector.link_down(
                        t, "reboot" if ev.action == "reboot" else "disconnect", host, ev.duration_s
                    )
                    links.append((host, "down"))
                    if ev.action == "reboot":
                        device.reboot(t)
                else:
                    pending_up = t
            device.battery_pct = injector.battery_pct(t)
            device.contact_mask = injector.contact_mask(t)
            if pending_up is not None:
                # The host reopens the port and re-sends START (its reconnect), as the gateway does.
                links.append((host, "up"))
                injector.link_up_now(t, host)
                device.handle_bytes(start)
                pending_up = None
            injector.advance(t, host)
        if on_step is not None:
            on_step(t)
        out = device.frames_until(t)
        if out:
            arrival = host + (abs(float(rng.normal(0.0, jitter_ms))) * 1e-3 if jitter_ms > 0 else 0.0)
            last_arrival = max(last_arrival, arrival)
            chunks.append((last_arrival, b"".join(out)))
    if injector is not None:
        held = injector.flush()
        if held:
            chunks.append((last_arrival, b"".join(held)))
    return SimCapture(chunks, injector, links)
