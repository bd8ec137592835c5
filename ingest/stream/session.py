"""One device's stream, from decoded frames to clinical outputs. Synchronous and I/O-free.

The async runner (``ingest.stream.runner``) feeds it frames with their host arrival times; replay and
offline tools feed it the same way. It owns what must be exact for a clinician to trust the
data: counter unwrapping, duplicate and gap accounting, the clock model, scaling to physical
units, the detector, and the display envelope. Everything it produces goes to ``emit`` as an
``Output``; the router decides where each goes.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from detectors import (
    ActivityChange,
    ActivitySpan,
    DetectorConfig,
    Onset,
    QualityChange,
    SpasmDetector,
    SpasmEvent,
)
from detectors.display import EnvelopeDecimator
from detectors.limits import stream_problem
from ingest.stream.clock import ClockModel, DerivedClock
from ingest.stream.records import (
    ActivityRecord,
    EventRecord,
    GapCause,
    GapRecord,
    LiveRecord,
    OnsetRecord,
    Record,
    activity_id,
    event_id,
    gap_id,
)
from ingest.wire.protocol import AccFrame, EmgFrame, Frame, InfoFrame, StatusFrame

log = logging.getLogger(__name__)

#: The display envelope is computed in batches of this much EMG (see ``_envelope``).
ENVELOPE_BATCH_S = 0.1
#: Frames held back per stream waiting for an earlier, late frame before a hole counts as lost.
REORDER_WINDOW = 8
#: A vendor link's new connection is placed on the stream by the earliest-arriving of its first
#: frames (a lower envelope, like the clock's): held for this long (host time) or this many.
#: One second: on a loaded 2-core host every frame of a 0.3 s hold arrived 25-35 ms late (the
#: Myo's disconnect gap came out 5-7 samples long); a longer look finds one on time. The cost is
#: a second's delay of the detector's input after a reconnect, never data.
REBASE_HOLD_S = 1.0
REBASE_HOLD_FRAMES = 256
#: ... when the clock fit of the old stream was this tight (robust residual, ms).
REBASE_TRUST_MS = 50.0

Domain = Literal["emg", "acc"]
OutputKind = Literal["onset", "event", "gap", "activity", "status", "envelope", "acc", "raw", "live"]


@dataclass(frozen=True, slots=True)
class Output:
    """Something for the sinks: a typed ``record`` (onset, event, gap, live; numbers, not text)
    or, for the bulk series (envelope, accelerometer, raw EMG), a ``SeriesBlock`` of arrays.
    The encoders (``ingest.outputs.encoders``) turn records into MQTT JSON and line protocol."""

    kind: OutputKind
    record: Record | None = None
    series: SeriesBlock | None = None
    source: object | None = None  # the detector record behind an onset/event, for tests and CLI

    @property
    def payload(self) -> dict[str, Any] | None:
        """The record's MQTT payload (schema v1), encoded on demand for observers and tools."""
        if self.record is None:
            return None
        from ingest.outputs.encoders import to_json  # the encoders sit above the stream core

        return to_json(self.record)


@dataclass(frozen=True, slots=True)
class SeriesBlock:
    """Columns for the time-series store: one row per timestamp."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, np.ndarray]
    t_ns: np.ndarray


def _unwrap(c32: int, expected: int) -> int:
    """32-bit wire counter to the full counter nearest the expected one."""
    delta = ((c32 - expected + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return expected + delta


def implausible_jump(dom: DomainState, full: int, t_host: float) -> bool:
    """A counter further ahead than the host time since the last sample allows (a corrupt
    counter, e.g. a 2^31 jump), which must never become billions of "missing" samples.

    Host time can itself step, so the allowance is generous: a minute plus 10 %.
    """
    if dom.expected is None or dom.last_t_end is None or full <= dom.expected:
        return False
    elapsed = max(0.0, t_host - dom.last_t_end)
    return (full - dom.expected) / dom.rate_hz > elapsed * 1.1 + 60.0


@dataclass(slots=True)
class DomainState:
    """Counter, clock and filters of one sample stream (EMG or accelerometer)."""

    rate_hz: float
    clock: ClockModel | DerivedClock
    expected: int | None = None  # next counter we expect (unwrapped)
    received: int = 0
    missing: int = 0
    duplicates: int = 0
    last_t_end: float | None = None
    #: Host time the last in-order frame arrived: the model-free ruler for a rebase (``_rebase``).
    last_arrival: float | None = None
    disconnected: bool = False  # the link dropped since the last frame: the next hole is a disconnect
    pending: list[tuple[int, int, Any, float]] = field(default_factory=list)  # reorder heap
    #: Added to the wire counter: a vendor link's counter restarts with every connection
    #: (``InfoFrame.per_connection``) and is re-based to continue this stream (``_rebase``).
    offset: int = 0
    rebase: bool = False  # the next frame starts a new connection's counter
    #: A new connection's first frames, held until its counter is placed (``_rebase``).
    hold: list[tuple[Any, float]] = field(default_factory=list)


@dataclass(slots=True)
class SessionStats:
    frames: int = 0
    no_info_frames: int = 0  # data before the first INFO: cannot be scaled, dropped and counted
    reboots: int = 0
    events: int = 0
    onsets: int = 0
    gaps: int = 0
    implausible_counters: int = 0  # frames whose counter jumped further than time allows
    activities: int = 0  # activity spans recorded (detected and declared)


@dataclass
class DeviceSession:
    """State of one device across reconnects (and, for the counter and clock, reboots)."""

    device: str
    emit: Callable[[Output], None]
    detector_config: DetectorConfig = field(default_factory=DetectorConfig)
    envelope_rate_hz: float = 50.0
    live_rate_hz: float = 10.0
    raw_emg: bool = False
    #: False: no display envelope, live view or accelerometer series, only the clinical records
    #: (onsets, events, gaps): what ``neurospasm detect`` needs, at a fraction of the work.
    series: bool = True
    #: False: no onset records (the live alerts, with their ids) are made or emitted, only
    #: counted: ``neurospasm detect`` writes events alone. Events and their ids are unchanged.
    onsets: bool = True
    #: Host seconds with frames but no sample (a device sending only STATUS, a Myo left out of
    #: EMG mode) after which the stream counts as stale for the detector: the bursts it holds for
    #: later data are judged now (``SpasmDetector.interrupt``), as on a disconnect, instead of
    #: waiting for the link to drop. The gateway passes its ``stale_after_s``.
    samples_stale_after_s: float = 5.0
    stats: SessionStats = field(default_factory=SessionStats)

    def __post_init__(self) -> None:
        self.info: InfoFrame | None = None
        self.boot_id: int = 0
        self.emg: DomainState | None = None
        self.acc: DomainState | None = None
        self.detector: SpasmDetector | None = None
        self.status: StatusFrame | None = None
        self.quality: dict[str, str] = {}
        self._open_quality: dict[str, tuple[int, float, str]] = {}
        self._reboot_open: dict[str, tuple[int, float, GapCause]] = {}
        self._connection_id: int | None = None
        self._env: EnvelopeDecimator | None = None
        self._env_buf: list[np.ndarray] = []
        self._env_segs: list[tuple[int, float, float]] = []
        self._env_n = 0
        self._env_base = 0  # EMG counter where the envelope decimator's stream began
        self._live_every = 1
        self._live_count = 0
        self.last_frame_t: float | None = None
        #: Host time of the last sample frame, or of the link coming up since (None while down):
        #: where "no samples for ``samples_stale_after_s``" is measured from.
        self._samples_since: float | None = None
        #: True while the link carries frames but no samples for ``samples_stale_after_s``.
        self.samples_stale = False
        #: Why this device's stream cannot be monitored (see ``_refuse``), or None.
        self.refused: str | None = None
        #: The current activity context and when it began (UTC s), for the status payload.
        self.activity_now: str = "rest"
        self.activity_since: float | None = None
        self._activity_declared = False
        #: Finished activity spans (t_start, t_end), the last hour's, for "minutes active".
        self._recent_spans: list[tuple[float, float]] = []

    # -- frames ----------------------------------------------------------------------------
    def on_frame(self, frame: Frame, t_host: float) -> None:
        self.stats.frames += 1
        self.last_frame_t = t_host
        if isinstance(frame, InfoFrame):
            self._on_info(frame, t_host)
        elif isinstance(frame, EmgFrame):
            self._samples_since, self.samples_stale = t_host, False
            self._on_emg(frame, t_host)
            return
        elif isinstance(frame, AccFrame):
            self._samples_since, self.samples_stale = t_host, False
            self._on_acc(frame, t_host)
            return
        elif isinstance(frame, StatusFrame):
            self.status = frame
        self.check_samples(t_host)

    def on_connect(self, t_host: float) -> None:
        """The link is up: "no samples" is measured afresh from now."""
        self._samples_since, self.samples_stale = t_host, False

    def check_samples(self, t_host: float) -> None:
        """Link data at ``t_host`` (any frame, or bytes that decoded to none): without a sample
        for ``samples_stale_after_s``, the stream is stale and the detector's held bursts are
        released once (``on_disconnect`` does the same when the link drops)."""
        since = self._samples_since
        if self.samples_stale or since is None or t_host - since < self.samples_stale_after_s:
            return
        self.samples_stale = True
        if self.detector is None:
            return
        log.warning("device %s: no samples for %.1f s while the link is up", self.device, t_host - since)
        for name, dom in (("emg", self.emg), ("acc", self.acc)):
            if dom is not None:
                self._drain(name, dom, force=True)  # type: ignore[arg-type]
        self._flush_envelope()
        self._handle(self.detector.interrupt())

    @property
    def needs_info(self) -> bool:
        return self.info is None

    def _on_info(self, info: InfoFrame, t_host: float) -> None:
        if self._same_device_new_connection(info):
            return
        if self.info is not None and info.boot_id == self.boot_id:
            if (info.channel_labels, info.emg_rate_hz, info.acc_rate_hz) == (
                self.info.channel_labels,
                self.info.emg_rate_hz,
                self.info.acc_rate_hz,
            ):
                return  # the periodic repeat
        if self.info is not None:
            # A new boot (or a reconfigured device): close what is open, account the gap.
            self.stats.reboots += 1
            self._close_streams(t_host, cause="reboot")
        self.info = info
        self.boot_id = info.boot_id
        self._connection_id = info.boot_id
        if self._refuse(info):
            return
        if info.n_channels == 0 and info.acc_rate_hz:
            # An accelerometer-only device (Polar H10): no EMG stream; the accelerometer has its
            # own clock model, and the detector runs only its accelerometer (tremor) path.
            self.emg = None
            self.acc = DomainState(info.acc_rate_hz, ClockModel(info.acc_rate_hz))
        else:
            emg_clock = ClockModel(info.emg_rate_hz)
            self.emg = DomainState(info.emg_rate_hz, emg_clock)
            # The accelerometer is timed by the EMG clock (same crystal, same origin): see DerivedClock.
            self.acc = (
                DomainState(info.acc_rate_hz, DerivedClock(emg_clock, info.acc_rate_hz))
                if info.acc_rate_hz
                else None
            )
        self.detector = SpasmDetector(
            self.detector_config,
            emg_rate_hz=float(info.emg_rate_hz),
            channel_labels=list(info.channel_labels),
            acc_rate_hz=float(info.acc_rate_hz) if info.acc_rate_hz else None,
        )
        self._env = None
        self._live_every = max(1, round(self.envelope_rate_hz / self.live_rate_hz))
        log.info(
            "device %s: boot %08x, %d EMG channels at %d Hz, accelerometer at %d Hz, firmware %s",
            self.device,
            info.boot_id,
            info.n_channels,
            info.emg_rate_hz,
            info.acc_rate_hz,
            info.firmware,
        )

    def _same_device_new_connection(self, info: InfoFrame) -> bool:
        """A vendor link reconnected (new ``boot_id``, same configuration): continue the streams.

        Such a device restarts its sample counter whenever streaming starts, so the samples lost
        while the link was down are known only from time. Rather than a new boot (a fresh detector
        that must learn its baseline again, a fresh clock), the new connection's counter is
        re-based onto the old one at its first frame (``_rebase``): one disconnect gap measured
        in time, and the detector, clock and event ids carry on.
        """
        old = self.info
        if old is None or not (old.per_connection and info.per_connection):
            return False
        if info.boot_id == self._connection_id:
            return True  # a repeat within the connection

        def config(i: InfoFrame) -> tuple[object, ...]:
            return (i.channel_labels, i.emg_rate_hz, i.acc_rate_hz, i.emg_scale_uv, i.acc_scale_g)

        same = config(info) == config(old)
        if not same:
            return False  # reconfigured: a new stream (closed as a reboot)
        self._connection_id = info.boot_id
        for dom in (self.emg, self.acc):
            if dom is not None:
                self._drain("emg" if dom is self.emg else "acc", dom, force=True)
                dom.rebase = dom.expected is not None
        return True

    def _rebase(self, name: Domain, dom: DomainState) -> None:
        """Place a new connection's counter on the old one by the clock (see above), then feed
        the frames held meanwhile.

        Each held frame says where the counter would be from its own arrival: the clock maps a
        counter to the host time its block completes, so a frame of n samples arriving
        ``elapsed`` after the last old sample ends about ``elapsed x rate`` later. Arrivals are
        only ever late (a busy host, a Bluetooth connection interval), so the earliest estimate
        over the first ``REBASE_HOLD_S`` is taken, not the first frame's alone.
        """
        assert dom.expected is not None and dom.hold
        held, dom.hold = dom.hold, []
        t_expected = float(dom.clock.to_utc(dom.expected))
        c0 = int(held[0][0].counter)
        offsets = [
            dom.expected + round((t - t_expected) * dom.rate_hz) - len(f.samples) - int(f.counter)
            for f, t in held
        ]
        # Only when the host's clock has been a good ruler for the device's (the old stream's
        # fit is tight): otherwise (a simulator run faster than real time, a wild link) the
        # model's line says nothing about when the old stream ended or about latency, so the
        # first new frame is measured from the last old frame's own arrival instead: the two
        # arrivals' latencies cancel, and no extrapolated line can put the new frame "before"
        # the old stream's end and so hide the outage.
        q = dom.clock.quality()
        trusted = q.points >= 3 and q.residual_ms < REBASE_TRUST_MS
        if trusted:
            estimate = min(offsets)
        elif dom.last_arrival is not None:
            f0, t0 = held[0]
            estimate = dom.expected + round((t0 - dom.last_arrival) * dom.rate_hz) - len(f0.samples) - c0
        else:
            estimate = offsets[0]
        dom.offset = max(dom.expected - c0, estimate)  # never before the old stream's end
        dom.rebase = False
        for f, t in held:
            self._arrive(name, dom, f, t)

    def _refuse(self, info: InfoFrame) -> bool:
        """A device the detector cannot handle (``detectors.limits``): refuse it, once and clearly.

        Its data is dropped and counted (``no_info_frames``), ``refused`` says why, and the runner
        reports ``monitoring: false`` with that reason; a later valid INFO frame lifts it."""
        problem = stream_problem(info.emg_rate_hz, list(info.channel_labels), info.acc_rate_hz or None)
        if problem != self.refused and problem is not None:
            log.error("device %s: refused: %s; not monitored", self.device, problem)
        self.refused = problem
        if problem is None:
            return False
        self.emg = self.acc = None
        self.detector = None
        return True

    def _close_streams(self, t_host: float, cause: GapCause) -> None:
        """End of a boot: flush the detector and record the gap up to the next data."""
        for name, dom in (("emg", self.emg), ("acc", self.acc)):
            if dom is not None:
                self._drain(name, dom, force=True)  # type: ignore[arg-type]
        self._flush_envelope()
        if self.detector is not None:
            self._handle(self.detector.finish())
        # The samples lost around a reboot cannot be counted (the counter restarted): the gap is
        # recorded in time, from the last sample of the old boot to the first of the new one.
        # A vendor link restarts its counter on every connection (InfoFrame.per_connection): the
        # restart after a dropped link is a disconnect, measured in time like a reboot.
        per_conn = self.info is not None and self.info.per_connection
        self._reboot_open = {
            n: (d.expected or 0, d.last_t_end, "disconnect" if per_conn and d.disconnected else cause)
            for n, d in (("emg", self.emg), ("acc", self.acc))
            if d is not None and d.last_t_end is not None
        }

    def _on_emg(self, frame: EmgFrame, t_host: float) -> None:
        if self.info is None or self.emg is None or self.detector is None:
            self.stats.no_info_frames += 1
            return
        if frame.samples.shape[1] != self.info.n_channels:
            self.stats.no_info_frames += 1
            return
        self._arrive("emg", self.emg, frame, t_host)

    def _on_acc(self, frame: AccFrame, t_host: float) -> None:
        if self.info is None or self.acc is None or self.detector is None:
            self.stats.no_info_frames += 1
            return
        self._arrive("acc", self.acc, frame, t_host)

    def _arrive(self, name: Domain, dom: DomainState, frame: EmgFrame | AccFrame, t_host: float) -> None:
        """Unwrap the counter, drop duplicates, and put frames back in order.

        A frame ahead of the expected counter waits in a small reorder buffer (``REORDER_WINDOW``
        frames) for the ones before it; only when the buffer overflows, or the link drops, is the
        hole declared a gap. An in-order stream passes straight through, without delay.
        """
        n = len(frame.samples)
        if dom.rebase:
            dom.hold.append((frame, t_host))
            if t_host - dom.hold[0][1] >= REBASE_HOLD_S or len(dom.hold) >= REBASE_HOLD_FRAMES:
                self._rebase(name, dom)
            return
        counter = int(frame.counter) + dom.offset
        if dom.expected is None:
            self._process(name, dom, counter, frame, t_host)
            return
        full = _unwrap(counter & 0xFFFFFFFF, dom.expected)
        if implausible_jump(dom, full, t_host):
            self.stats.implausible_counters += 1
            if self.stats.implausible_counters in (1, 10, 100, 1000):
                log.warning("device %s: %s counter jumps %d samples ahead of what %.1f s allow; frame "
                            "dropped as corrupt (%d so far)", self.device, name, full - dom.expected,
                            t_host - (dom.last_t_end or t_host), self.stats.implausible_counters)  # fmt: skip
            return
        if full + n <= dom.expected or any(p[0] == full for p in dom.pending):
            dom.duplicates += 1
            return
        if full == dom.expected:
            self._process(name, dom, full, frame, t_host)
        else:
            heapq.heappush(dom.pending, (full, self.stats.frames, frame, t_host))
            if len(dom.pending) > REORDER_WINDOW:
                f, _, fr, th = heapq.heappop(dom.pending)
                self._process(name, dom, f, fr, th)
        self._drain(name, dom, force=False)

    def _drain(self, name: Domain, dom: DomainState, *, force: bool) -> None:
        """Process held frames that are now in order (all of them with ``force``)."""
        if force and dom.hold:
            self._rebase(name, dom)  # the link dropped or the stream ends: place what we have
        while dom.pending:
            full = dom.pending[0][0]
            assert dom.expected is not None
            if full < dom.expected:  # overtaken by a gap decision: it arrived too late to use
                heapq.heappop(dom.pending)
                dom.duplicates += 1
            elif full == dom.expected or force:
                f, _, fr, th = heapq.heappop(dom.pending)
                self._process(name, dom, f, fr, th)
            else:
                break

    def _process(
        self, name: Domain, dom: DomainState, full: int, frame: EmgFrame | AccFrame, t_host: float
    ) -> None:
        """One in-order frame: gap accounting, clock, detector, series."""
        assert self.info is not None and self.detector is not None
        n = len(frame.samples)
        if dom.expected is None:
            reboot = self._reboot_open.pop(name, None)
            if reboot is not None:
                # The counter restarted, so the samples lost around a reboot can only be estimated
                # from time: from the last sample of the old boot to the first of the new one.
                old_counter, t_last, reboot_cause = reboot
                dom.clock.observe(full + n, t_host)
                t_first = max(t_last, float(dom.clock.to_utc(full)))
                estimate = round((t_first - t_last) * dom.rate_hz)
                self._gap(name, reboot_cause, old_counter, estimate, t_last, t_first)
        elif full > dom.expected:
            missing = full - dom.expected
            cause: GapCause = "disconnect" if dom.disconnected else "lost_frames"
            dom.missing += missing
            t0 = dom.last_t_end if dom.last_t_end is not None else float(dom.clock.to_utc(dom.expected))
            t1 = float(dom.clock.to_utc(full))
            self._gap(name, cause, dom.expected, missing, t0, max(t0, t1))
            self._handle(self.detector.gap(name, dom.expected, missing))
            if name == "emg":
                self._flush_envelope()
                self._env = None
        dom.disconnected = False
        dom.last_arrival = t_host
        dom.clock.observe(full + n, t_host)
        dom.expected = full + n
        dom.received += n
        t0, dt = dom.clock.block_start(full, n)
        dom.last_t_end = t0 + n * dt
        if name == "emg":
            samples = frame.samples
            if self.info.emg_scale_uv == 1.0 and samples.dtype == np.float64 and not self.series:
                # Microvolts already (a signal file's frames): x * 1.0 is x, and the detector
                # copies what it keeps, so the pass over the samples would only make a copy.
                uv = samples
            else:
                # as doubles, times the scale, in one pass (the same as astype, then multiply)
                uv = np.multiply(samples, self.info.emg_scale_uv, dtype=np.float64)
            self._handle(self.detector.feed_emg(full, uv))
            if not self.series:
                return
            self._envelope(full, uv, t0, dt)
            if self.raw_emg:
                t_ns = _sample_times_ns(t0, dt, n)
                for i, label in enumerate(self.info.channel_labels):
                    self.emit(
                        Output(
                            "raw",
                            series=SeriesBlock(
                                "emg_raw",
                                {"device": self.device, "channel": label},
                                {"uv": uv[:, i]},
                                t_ns,
                            ),
                        )
                    )
        else:
            g = frame.samples.astype(np.float64) * self.info.acc_scale_g
            self._handle(self.detector.feed_acc(full, g))
            if not self.series:
                return
            self.emit(
                Output(
                    "acc",
                    series=SeriesBlock(
                        "acc",
                        {"device": self.device},
                        {"x": g[:, 0], "y": g[:, 1], "z": g[:, 2]},
                        _sample_times_ns(t0, dt, n),
                    ),
                )
            )

    def _envelope(self, full: int, uv: np.ndarray, t0: float, dt: float) -> None:
        """Buffer EMG for the display envelope; compute it every ``ENVELOPE_BATCH_S``.

        The envelope is for dashboards and storage, where 100 ms more delay is invisible, while
        filtering one 7 ms frame at a time costs several times more CPU than the detector itself.
        """
        assert self.emg is not None
        self._env_buf.append(uv)
        self._env_segs.append((full, t0, dt))
        self._env_n += len(uv)
        if self._env_n >= ENVELOPE_BATCH_S * self.emg.rate_hz:
            self._flush_envelope()

    def _flush_envelope(self) -> None:
        if not self._env_buf or self.info is None or self.emg is None:
            return
        uv = np.concatenate(self._env_buf) if len(self._env_buf) > 1 else self._env_buf[0]
        segs = np.array(self._env_segs, dtype=np.float64)
        self._env_buf, self._env_segs, self._env_n = [], [], 0
        if self._env is None:
            self._env = EnvelopeDecimator(self.emg.rate_hz, self.envelope_rate_hz, self.info.n_channels)
            self._env_base = int(segs[0, 0])
        first, values = self._env.feed(uv)
        if not len(values):
            return
        idx = self._env.input_indices(first, len(values)) + self._env_base
        # Each output's time from the block its window starts in (blocks may be slewed slightly).
        # (searchsorted - 1 is at most len(segs) - 1; below 0 for a window begun in an earlier batch)
        which = np.maximum(np.searchsorted(segs[:, 0], idx, side="right") - 1, 0)
        t = segs[which, 1] + (idx - segs[which, 0]) * segs[which, 2]
        t_ns = (t * 1e9).astype(np.int64)
        for i, label in enumerate(self.info.channel_labels):
            self.emit(
                Output(
                    "envelope",
                    series=SeriesBlock(
                        "emg_envelope", {"device": self.device, "channel": label}, {"uv": values[:, i]}, t_ns
                    ),
                )
            )
        # Live view: every k-th envelope sample, all channels in one small message.
        labels = self.info.channel_labels
        count = self._live_count
        self._live_count += len(values)
        every = self._live_every
        # The outputs k whose running count (count + k + 1) is a multiple of ``every``.
        for k in range(every - 1 - count % every, len(values), every):
            row = dict(zip(labels, values[k].tolist(), strict=True))
            self.emit(Output("live", LiveRecord(self.device, float(t[k]), row)))

    # -- detector outputs -----------------------------------------------------------------
    def _time(self, domain: str, counter: int) -> float:
        dom = self.emg if domain == "emg" else self.acc
        assert dom is not None
        return float(dom.clock.to_utc(counter))

    def _handle(self, outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, Onset):
                self.stats.onsets += 1
                if not self.onsets:
                    continue
                onset = OnsetRecord(
                    event_id(self.device, self.boot_id, out.key),
                    self.device,
                    self.boot_id,
                    out.channel,
                    self._time(out.domain, out.onset_sample),
                    out.amplitude_uv,
                    out.baseline_uv,
                )
                self.emit(Output("onset", onset, source=out))
            elif isinstance(out, SpasmEvent):
                self.stats.events += 1
                event = EventRecord(
                    event_id(self.device, self.boot_id, out.key),
                    self.device,
                    self.boot_id,
                    out.type,
                    out.channel,
                    self._time(out.domain, out.onset_sample),
                    self._time(out.domain, out.offset_sample),
                    out.duration_s,
                    out.peak_uv,
                    out.mean_uv,
                    out.baseline_uv,
                    out.relative_amplitude,
                    out.frequency_hz,
                    out.confidence,
                    out.detector_version,
                    out.config_hash,
                    context=out.context,
                    clipped=out.clipped,
                    rise_s=out.rise_s,
                    artifact_suspect=out.artifact_suspect,
                )
                self.emit(Output("event", event, source=out))
            elif isinstance(out, QualityChange):
                self._quality(out)
            elif isinstance(out, ActivityChange):
                self._activity_change(out)
            elif isinstance(out, ActivitySpan):
                self._activity_span(out)

    def _activity_change(self, c: ActivityChange) -> None:
        # A declared session outranks the accelerometer's periods (the detector does the same).
        if self._activity_declared and not c.declared:
            return
        self.activity_now = c.kind
        self.activity_since = self._time(c.domain, c.sample)
        self._activity_declared = c.declared and c.kind != "rest"

    def _activity_span(self, s: ActivitySpan) -> None:
        self.stats.activities += 1
        t0, t1 = self._time(s.domain, s.start_sample), self._time(s.domain, s.end_sample)
        rec = ActivityRecord(
            activity_id(self.device, self.boot_id, s.kind, s.start_sample, s.declared),
            self.device,
            self.boot_id,
            s.kind,
            s.domain,
            s.start_sample,
            t0,
            t1,
            declared=s.declared,
            suppressed=s.suppressed,
        )
        self._recent_spans = [p for p in self._recent_spans if p[1] > t1 - 3600.0] + [(t0, t1)]
        if s.declared and self._activity_declared:
            self._activity_declared = False
            self.activity_now, self.activity_since = "rest", t1
            if self.detector is not None and self.detector.activity != "rest":
                self.activity_now = self.detector.activity
        self.emit(Output("activity", rec, source=s))

    # -- declared sessions ----------------------------------------------------------------
    def declare(self, kind: str, minutes: float | None) -> bool:
        """Declare a planned exercise/physiotherapy session starting now (the newest EMG counter)
        for ``minutes`` (None: until ``clear_declared``). False if no stream is running yet."""
        if self.detector is None or self.emg is None or self.emg.expected is None:
            return False
        start = self.emg.expected
        end = None if minutes is None else start + max(1, round(minutes * 60.0 * self.emg.rate_hz))
        self._handle(self.detector.declare(kind, start, end))  # type: ignore[arg-type]
        return True

    def clear_declared(self) -> bool:
        """End an open declared session now (its span is recorded, declared=true)."""
        if self.detector is None or self.emg is None or self.emg.expected is None:
            return False
        self._handle(self.detector.clear_declared(self.emg.expected))
        return True

    def activity_status(self, now: float) -> dict[str, Any]:
        """The status payload's ``activity``: the context now, since when, and the minutes of
        voluntary activity (finished spans plus the open one) in the hour before ``now``."""
        lo = now - 3600.0
        secs = sum(max(0.0, min(b, now) - max(a, lo)) for a, b in self._recent_spans)
        if self.activity_now != "rest" and self.activity_since is not None:
            secs += max(0.0, now - max(self.activity_since, lo))
        out: dict[str, Any] = {"now": self.activity_now, "active_min_1h": round(min(secs, 3600.0) / 60.0, 1)}
        if self.activity_since is not None:
            out["since"] = self.activity_since
        out["declared"] = self._activity_declared
        return out

    def _quality(self, q: QualityChange) -> None:
        self.quality[q.channel] = q.state
        t = self._time(q.domain, q.sample)
        if q.state != "ok":
            self._open_quality[q.channel] = (q.sample, t, q.state)
        else:
            opened = self._open_quality.pop(q.channel, None)
            if opened is not None:
                start, t0, state = opened
                cause: GapCause = "lead_off" if state == "lead_off" else "saturation"
                self._gap(q.domain, cause, start, q.sample - start, t0, t, channel=q.channel)

    def _gap(
        self,
        domain: str,
        cause: GapCause,
        start: int,
        missing: int,
        t0: float,
        t1: float,
        channel: str | None = None,
    ) -> None:
        self.stats.gaps += 1
        gap = GapRecord(
            gap_id(self.device, self.boot_id, domain, start, cause),
            self.device,
            self.boot_id,
            domain,
            cause,
            start,
            int(missing),
            t0,
            t1,
            channel,
        )
        self.emit(Output("gap", gap))

    # -- link events -----------------------------------------------------------------------
    def on_disconnect(self, t_host: float) -> None:
        """The link dropped. Held frames are processed; the gap is recorded when data resumes
        and its size is known from the counters."""
        for name, dom in (("emg", self.emg), ("acc", self.acc)):
            if dom is not None:
                self._drain(name, dom, force=True)  # type: ignore[arg-type]
                dom.disconnected = True
        self._samples_since = None  # the link, not the samples, is what is missing now
        self._flush_envelope()
        if self.detector is not None:
            # Bursts held for later data are judged now: the link may stay down for hours.
            self._handle(self.detector.interrupt())

    def finish(self) -> None:
        """End of stream (shutdown, end of a replay): close open episodes."""
        for name, dom in (("emg", self.emg), ("acc", self.acc)):
            if dom is not None:
                self._drain(name, dom, force=True)  # type: ignore[arg-type]
        self._flush_envelope()
        if self.detector is not None:
            self._handle(self.detector.finish())

    # -- health ----------------------------------------------------------------------------
    def loss_pct(self) -> float:
        dom = self.emg or self.acc  # the accelerometer for an accelerometer-only device
        if dom is None or dom.received + dom.missing == 0:
            return 0.0
        return 100.0 * dom.missing / (dom.received + dom.missing)

    def health(self) -> dict[str, Any]:
        info, st = self.info, self.status
        main = self.emg or self.acc
        q = main.clock.quality() if main else None
        contact = st.contact(info.n_channels) if (st and info) else None
        return {
            "battery_pct": st.battery_pct if st else None,
            "battery_mv": st.battery_mv if st else None,
            "contact": dict(zip(info.channel_labels, contact, strict=True)) if contact and info else None,
            "signal_quality": dict(self.quality),
            "loss_pct": round(self.loss_pct(), 3),
            "duplicates": (main.duplicates if main else 0),
            "clock_drift_ppm": round(q.drift_ppm, 2) if q else None,
            "timestamp_quality_ms": (round(q.residual_ms, 3) if q and math.isfinite(q.residual_ms) else None),
            "firmware": info.firmware if info else None,
            "emg_rate_hz": info.emg_rate_hz if info else None,
            "channels": list(info.channel_labels) if info else None,
        }


def _sample_times_ns(t0: float, dt: float, n: int) -> np.ndarray:
    """UTC nanoseconds of a block's ``n`` samples: only the series need them (not ``detect``)."""
    return ((t0 + np.arange(n) * dt) * 1e9).astype(np.int64)
