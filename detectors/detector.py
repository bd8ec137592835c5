"""``SpasmDetector``: the streaming front-end the gateway, replays and offline runs all call.

Contract: successive ``feed_emg`` / ``feed_acc`` calls whose ``start`` counters are contiguous are
one stream, and the set of outputs is identical whatever the chunking. This holds because input is
re-cut into fixed blocks (EMG, on multiples of the block length in device counters, so late
joiners cut a stream the same way) and fixed hops (accelerometer, from the start of each
contiguous segment); a gap starts a new segment.

Cross-domain rule (tremor needs "weak EMG"): EMG and accelerometer counters are taken to share an
origin (sample 0 of both is the same instant), so times are ``counter / rate``. A tremor is only
reported once the EMG has been processed past its confirmation time (or at ``finish``), so the
decision does not depend on how the two streams' calls interleave.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from detectors.activity import (
    ACTIVITY_CODES,
    OTHER,
    REST,
    RHYTHMIC,
    TRANSITION,
    WALKING,
    AccActivityTracker,
    ActivityPeriods,
    phase_locked,
    regular_rhythm,
    repetition_run,
)
from detectors.config import DetectorConfig
from detectors.emg import EmgBank, detect_mains
from detectors.events import (
    ActivityChange,
    ActivityKind,
    ActivitySpan,
    DetectorOutput,
    Onset,
    QualityChange,
    SpasmEvent,
)
from detectors.gait_phase import GaitPhaseModel
from detectors.limits import stream_problem
from detectors.tremor import TremorResult, TremorTracker

__version__ = "1.1.0"
ACC_CHANNEL = "ACC"
#: Margin past a tremor's confirmation the EMG must have reached (an EMG onset is confirmed
#: ``confirm_s`` after it crosses, plus one block of buffering).
_EMG_MARGIN_S = 0.2
#: An Onset notice reads the activity context of the second ending this long before the onset:
#: devices send accelerometer frames less often than EMG frames (the simulated one every ~0.4 s
#: at 100 Hz), so the context of the very moment of the onset is rarely in yet when it is
#: confirmed; waiting for it would delay every alert.
_ONSET_LOOK_S = -0.5
#: ... and waits at most this long (EMG time) for the accelerometer to reach that point.
_ONSET_MAX_WAIT_S = 0.2
#: Confirmed onsets, EMG episode spans and quality changes older than this (EMG time) are forgotten.
_FORGET_S = 30.0


@dataclass(slots=True)
class _Declared:
    kind: ActivityKind
    start: int  # EMG counters
    end: int | None
    reported: bool = False


@dataclass(slots=True)
class _Nap:
    """Why ``_judge`` said "not yet" for a held burst, and what can change that answer.

    A burst waits seconds for later data (the accelerometer, later bursts), and the held bursts
    are looked at every quarter second: judging each again every time was most of the context
    stage's cost. The answer "not yet" stands until the EMG or the accelerometer reaches the
    time it was compared with, or new data lands where it looked: a verdict of a hop ending in
    ``verdicts`` (added, or dropped from the full log), an onset at a time in ``onsets``, any EMG
    episode (``events``). Until then the burst is not judged again: the same answer, for free.
    """

    emg: float  # judge again once the EMG has been processed up to here (s)
    acc: float  # ... or the accelerometer up to here (s)
    verdicts: tuple[float, float] | None  # hops ending in (a, b] were read
    onsets: tuple[float, float] | None  # onsets at [lo, hi] (any channel) were read
    events: bool  # finished EMG episodes (rise times) were read


@dataclass(slots=True)
class _PendingTremor:
    onset: int
    confirm_t: float
    decided: bool = False
    suppressed: bool = False
    result: TremorResult | None = None
    held: list[DetectorOutput] = field(default_factory=list)


class SpasmDetector:
    """Streaming spasm detector for one device: EMG channels plus an optional accelerometer."""

    version = __version__

    def __init__(
        self,
        config: DetectorConfig | None = None,
        *,
        emg_rate_hz: float,
        channel_labels: list[str],
        acc_rate_hz: float | None = None,
    ) -> None:
        self.config = config if config is not None else DetectorConfig()
        # An accelerometer-only device (no EMG channels, e.g. a Polar H10) runs only the tremor
        # path; its emg_rate_hz is ignored. Anything else needs at least one EMG channel.
        self.acc_only = not channel_labels and acc_rate_hz is not None
        if acc_rate_hz is not None and not acc_rate_hz:
            raise ValueError("acc_rate_hz: expected a positive rate or None, got 0")
        problem = stream_problem(emg_rate_hz, channel_labels, acc_rate_hz)  # limits: detectors/limits.py
        if problem is not None:
            raise ValueError(problem)
        self.emg_rate_hz = float(emg_rate_hz)
        self.acc_rate_hz = None if acc_rate_hz is None else float(acc_rate_hz)
        self.channel_labels = list(channel_labels)
        self.config_hash = self.config.hash
        self._n_ch = len(channel_labels)
        self._bank: EmgBank | None = None
        self._emg_next: int | None = None
        self._align = True  # the next EMG sample starts a segment: align it to the block grid
        self._buf: np.ndarray | None = None
        self._buf_n = 0
        self._buf_start = 0
        self._pre: list[np.ndarray] = []  # EMG held back while the mains frequency is detected
        self._pre_n = 0
        self._pre_start = 0
        self._detect_n = round(self.config.mains_detect_s * emg_rate_hz)
        if not self.acc_only and (self.config.mains_hz is not None or self.config.mains_max_harmonic == 0):
            self._make_bank(self.config.mains_hz if self.config.mains_max_harmonic else None)
        self._acc_next: int | None = None
        self._tremor = None if acc_rate_hz is None else TremorTracker(self.config, acc_rate_hz)
        self._acc_pending: list[np.ndarray] = []
        self._acc_pending_n = 0  # samples since the last whole hop was handed on (or held)
        self._acc_unfed_n = 0  # samples in _acc_pending, not yet given to the tracker
        self._acc_pending_start = 0
        self._pending: list[_PendingTremor] = []
        self._current_tremor: _PendingTremor | None = None
        self._finished = False
        # ---- activity context (issue 9)
        cfg = self.config
        self._ctx = cfg.activity_context
        self._act = AccActivityTracker(cfg, acc_rate_hz) if self._ctx and acc_rate_hz is not None else None
        self._periods: ActivityPeriods | None = None
        if self._act is not None:
            hop_s = self._act.hop / self._act.rate
            self._periods = ActivityPeriods(
                max(1, round(cfg.activity_enter_s / hop_s)), max(1, round(cfg.activity_exit_s / hop_s))
            )
        #: accelerometer verdicts (start_s, end_s, code), newest last
        self._verdicts: deque[tuple[float, float, int, float]] = deque(maxlen=4096)
        self._acc_t = -math.inf  # accelerometer verdicts cover time up to here (s)
        self._onset_times: dict[str, list[float]] = {}  # confirmed EMG onsets per channel (s)
        self._spans: dict[str, list[list[float]]] = {}  # [onset, offset or inf] per channel (s)
        self._open_span: dict[str, list[float]] = {}  # by key, until the episode ends
        self._held: list[Onset | SpasmEvent] = []  # EMG outputs waiting for their context
        # the held outputs are looked at again once the EMG or the accelerometer reaches these times
        self._gate_emg = -math.inf
        self._gate_acc = -math.inf
        self._deferred: dict[str, Onset] = {}  # onsets kept back until their event is judged
        #: key -> the clonic run of a cyclic episode judged a clonus fused with the movement
        #: (``movement_clonus_min_beats``): published on the run's span
        self._movement_clonus: dict[str, tuple[int, int, float, float, float, float]] = {}
        self._declared: list[_Declared] = []
        self._n_voluntary = 0
        # Finished activity spans wait here until every burst that began inside them is judged,
        # so that ``suppressed`` counts them all: (span, start_s, end_s).
        self._span_q: list[tuple[ActivitySpan, float, float]] = []
        self._vol_t: list[float] = []  # onsets (s) of bursts classed voluntary, sorted
        #: published EMG spasms (onset s, offset s), for ``_settled_before``
        self._spasm_spans: deque[tuple[float, float]] = deque(maxlen=64)
        #: EMG events kept undecided so far in the current pass (onset s, offset s): a later
        #: burst whose context reads them waits for their verdicts
        self._undecided: list[tuple[float, float]] = []
        #: recent EMG events (channel, onset s, offset s, rise s), for co-contraction partners
        self._recent: deque[tuple[str, float, float, float]] = deque(maxlen=256)
        #: finished EMG bursts (channel, onset s, offset s, peak uV), for the gait model's cross-talk test
        self._peaks: deque[tuple[str, float, float, float]] = deque(maxlen=256)
        #: reported EMG quality changes per channel (time s, state), for electrode artefacts
        self._quality_log: dict[str, list[tuple[float, str]]] = {}
        #: A lower bound on the times the horizon clean-up of the three logs above looks at (a
        #: first onset, a first span's offset, a second quality change): below it there is
        #: nothing to forget. Lowered wherever the logs gain an entry (``_take_new``).
        self._oldest = math.inf
        self._n_artefact = 0
        self._gait = GaitPhaseModel(cfg) if cfg.gait_phase else None  # spasms fused with gait bursts
        #: ``_acc_context`` of windows whose verdicts are final, by (a, b)
        self._acc_memo: dict[tuple[float, float], tuple[int, float]] = {}
        #: electrode verdicts of held events (by key), computed once
        self._electrode_verdict: dict[str, str] = {}
        #: held events whose ``_judge`` said "not yet", by key, until what can change that (_Nap)
        self._naps: dict[str, _Nap] = {}
        self._use_naps = True  # (off: every held event is judged on every pass; for tests)

    # ----------------------------------------------------------------------------- properties
    @property
    def mains_hz(self) -> int | None:
        """The mains frequency being notched (None: not decided yet, or no hum found)."""
        return None if self._bank is None else self._bank.mains_hz

    @property
    def block_samples(self) -> int:
        """EMG samples per processing block (alerting latency floor)."""
        d = max(1, round(self.emg_rate_hz / self.config.envelope_rate_hz))
        return d * max(1, round(self.config.block_s * self.emg_rate_hz / d))

    # ------------------------------------------------------------------------------------ API
    def feed_emg(self, start: int, samples: np.ndarray) -> list[DetectorOutput]:
        """EMG samples (n, n_channels) in microvolts; ``start`` is the counter of ``samples[0]``."""
        self._check_open()
        if self.acc_only:
            raise ValueError("feed_emg: this detector has no EMG channels (accelerometer only)")
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self._n_ch:
            raise ValueError(f"feed_emg: samples must have shape (n, {self._n_ch}), got {x.shape}")
        out: list[DetectorOutput] = []
        if self._emg_next is not None and start != self._emg_next:
            if start < self._emg_next:
                raise ValueError(
                    f"feed_emg: start {start} goes back before the next expected sample {self._emg_next}"
                )
            self._emg_gap(self._emg_next, out)
            self._align = True
        if self._align:
            # Blocks lie on multiples of the block size in device counters, not from wherever a
            # segment happens to start: two sessions joining one stream at different moments (a
            # gateway restart, a worker taking a device over) then cut it identically, so they
            # report the same onset samples, and so the same event ids. At most one block of a
            # segment's first samples is skipped.
            skip = (-start) % self.block_samples
            if skip >= x.shape[0]:
                self._emg_next = start + x.shape[0]
                return out
            x, start = x[skip:], start + skip
            self._align = False
            self._buf_start = start
        if self._emg_next is None:
            self._buf_start = start
        if x.shape[0] == 0:
            self._emg_next = start
            return out
        self._emg_next = start + x.shape[0]  # (NaN/inf are caught per block by the bank)
        if self._bank is None:
            if self._pre_n == 0:
                self._pre_start = start
            self._pre.append(x.copy())
            self._pre_n += x.shape[0]
            if self._pre_n >= self._detect_n:
                self._release_pre(out)
        else:
            self._push(start, x, out)
        if self._pending:
            self._release_tremor(out, final=False)
        self._context_pass(out, final=False)
        return out

    def feed_acc(self, start: int, samples: np.ndarray) -> list[DetectorOutput]:
        """Accelerometer samples (n, 3) in g; ``start`` is the counter of ``samples[0]``."""
        # Called for every chunk (most carry a fraction of a hop): the common path makes as few
        # calls and attribute look-ups as it can; the work done is the same.
        if self._finished:
            self._check_open()
        tremor = self._tremor
        if tremor is None:
            raise ValueError("feed_acc: this detector was built without an accelerometer (acc_rate_hz=None)")
        # A copy: the samples wait for a whole hop, and a caller may reuse its receive buffer.
        x = np.array(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"feed_acc: samples must have shape (n, 3), got {x.shape}")
        out: list[DetectorOutput] = []
        nxt = self._acc_next
        if nxt is not None and start != nxt:
            if start < nxt:
                raise ValueError(f"feed_acc: start {start} goes back before the next expected sample {nxt}")
            self._acc_gap(nxt, out)
        n = x.shape[0]
        nxt = self._acc_next = start + n
        if n == 0:
            return out
        # any NaN or inf makes the sum non-finite (a finite sum that overflows leaves nan_to_num
        # nothing to replace); a few samples are summed faster as Python floats than by numpy
        if not math.isfinite(sum(x.ravel().tolist())):
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        # The tracker only acts at hop boundaries: hand it whole hops (fewer calls, same result).
        # Its results (confirmations, ends) come only from its analyses (every other hop): a hop
        # that reaches none is left pending, to be filtered with the next (the tracker is
        # chunk-invariant), so its results come out in the very call they came out before.
        pending = self._acc_pending
        if not pending:
            self._acc_pending_start = start
        pending.append(x)
        self._acc_unfed_n += n
        self._acc_pending_n += n
        if self._acc_pending_n >= tremor.hop:
            self._acc_pending_n = 0
            if tremor.analyses_within(self._acc_unfed_n):
                self._flush_acc(out)
        act = self._act
        if act is not None:
            hops = act.feed(start, x)  # [] until a hop completes (most chunks)
            if hops:
                self._feed_activity(hops, out)
            # every hop ending at or before the last sample seen has been analysed
            rate = self.acc_rate_hz
            if rate:
                self._acc_t = nxt / rate
        if self._pending:
            self._release_tremor(out, final=False)
        self._context_pass(out, final=False)
        return out

    def _flush_acc(self, out: list[DetectorOutput]) -> None:
        pending = self._acc_pending
        if not pending:
            return
        assert self._tremor is not None
        x = pending[0] if len(pending) == 1 else np.concatenate(pending)
        self._acc_pending = []
        self._acc_pending_n = 0
        self._acc_unfed_n = 0
        confirms, done = self._tremor.feed(self._acc_pending_start, x)
        if confirms or done:
            self._tremor_outputs(confirms, done, out)

    def gap(self, domain: Literal["emg", "acc"], start: int, n_missing: int) -> list[DetectorOutput]:
        """``n_missing`` samples from ``start`` were lost: close open episodes there, restart filters."""
        self._check_open()
        if n_missing < 0:
            raise ValueError(f"gap: n_missing must be >= 0, got {n_missing}")
        out: list[DetectorOutput] = []
        if domain == "emg":
            if self._emg_next is not None and start < self._emg_next:
                raise ValueError(
                    f"gap: emg start {start} is before the next expected sample {self._emg_next}"
                )
            self._emg_gap(start, out)
            self._emg_next = start + n_missing
            self._buf_start = self._emg_next
            self._align = True
            self._release_tremor(out, final=False)
            self._context_pass(out, final=True)  # no burst continues a rhythm across a gap
            return out
        elif domain == "acc":
            if self._tremor is None:
                raise ValueError("gap: domain 'acc' but this detector has no accelerometer")
            self._acc_gap(start, out)
            self._acc_next = start + n_missing
            if self._act is not None and self.acc_rate_hz is not None:
                self._acc_t = max(self._acc_t, (start + n_missing) / self.acc_rate_hz)
        else:
            raise ValueError(f"gap: domain must be 'emg' or 'acc', got {domain!r}")
        self._release_tremor(out, final=False)
        self._context_pass(out, final=False)
        return out

    def interrupt(self) -> list[DetectorOutput]:
        """The link dropped (or went quiet): nothing more is known for now.

        Finished bursts still waiting for later ones (``rhythm_lookahead_s``) or for the
        accelerometer are judged now, on what came before, as the gap would judge them when the
        data resumes (no burst continues a rhythm across a gap). Else the last spasm before a
        sensor stops (a flat battery, the end of a replayed recording) would wait, unpublished,
        for data that may never come. Open episodes stay open: the gap, or more data, closes them.
        """
        self._check_open()
        out: list[DetectorOutput] = []
        self._release_tremor(out, final=False)
        self._context_pass(out, final=True)
        return out

    def finish(self) -> list[DetectorOutput]:
        """End of stream: process what is buffered and close whatever is open."""
        if self._finished:
            return []
        out: list[DetectorOutput] = []
        if self._emg_next is not None:
            self._emg_gap(self._emg_next, out)
        if self._tremor is not None and self._acc_next is not None:
            self._acc_gap(self._acc_next, out)
        self._release_tremor(out, final=True)
        self._context_pass(out, final=True)
        if self._periods is not None:
            self._period_output(self._periods.close(None), out)
        end = self._emg_next if self._emg_next is not None else 0
        for d in self._declared:
            if not d.reported:
                d.reported = True
                self._queue_declared(d, d.end if d.end is not None else max(end, d.start + 1))
        self._release_spans(out, final=True)
        self._finished = True
        return out

    def declare(
        self, kind: ActivityKind = "exercise", start_sample: int = 0, end_sample: int | None = None
    ) -> list[DetectorOutput]:
        """Declare a planned session (physiotherapy, exercise) from EMG counter ``start_sample``
        to ``end_sample`` (exclusive; None: until ``clear_declared`` or the end of the stream).

        Nothing is dropped: inside the session a burst with a graded, recruitment-like onset or a
        voluntary rhythm is classed voluntary (not a spasm); abrupt bursts and clonus are still
        spasms, published with ``context="exercise"``. The session itself is reported as an
        ``ActivityChange`` now and an ``ActivitySpan`` (``declared=True``) when it ends.
        """
        self._check_open()
        if kind == "rest":
            raise ValueError("declare: kind must be an activity, not 'rest' (use clear_declared)")
        if end_sample is not None and end_sample <= start_sample:
            raise ValueError(f"declare: end_sample {end_sample} must be after start_sample {start_sample}")
        self._declared.append(_Declared(kind=kind, start=start_sample, end=end_sample))
        out: list[DetectorOutput] = [
            ActivityChange(kind=kind, domain="emg", sample=start_sample, declared=True)
        ]
        self._context_pass(out, final=False)
        return out

    def clear_declared(self, at_sample: int) -> list[DetectorOutput]:
        """End every open declared session at EMG counter ``at_sample``."""
        self._check_open()
        out: list[DetectorOutput] = []
        for d in self._declared:
            if not d.reported and (d.end is None or d.end > at_sample):
                d.end = max(at_sample, d.start + 1)
        self._context_pass(out, final=False)
        return out

    @property
    def activity(self) -> ActivityKind:
        """The current accelerometer activity period's kind, or a declared session, else "rest"."""
        for d in self._declared:
            if not d.reported:
                return d.kind
        if self._periods is not None and self._periods.cur is not None:
            counts = self._periods.cur.counts
            return ACTIVITY_CODES[int(np.argmax(counts[1:])) + 1]
        return "rest"

    @property
    def voluntary_bursts(self) -> int:
        """EMG bursts classed voluntary so far (not published as spasms)."""
        return self._n_voluntary

    # ------------------------------------------------------------------------------ internals
    def _feed_activity(self, hops: list[tuple[int, int, int, float]], out: list[DetectorOutput]) -> None:
        """Log the verdicts of the hops the tracker has just completed (``AccActivityTracker.feed``)."""
        assert self._periods is not None and self.acc_rate_hz is not None
        rate = self.acc_rate_hz
        for s0, s1, verdict, period in hops:
            if self._naps:
                log = self._verdicts
                self._wake_verdict(s1 / rate, log[0][1] if len(log) == log.maxlen else None)
            self._verdicts.append((s0 / rate, s1 / rate, verdict, period))
            self._period_output(self._periods.step(s0, s1, verdict), out)

    def _period_output(self, ev: tuple[str, int, int, int] | None, out: list[DetectorOutput]) -> None:
        if ev is None:
            return
        assert self.acc_rate_hz is not None
        what, a, b, c = ev
        if what == "start":
            out.append(ActivityChange(kind=ACTIVITY_CODES[b], domain="acc", sample=a))
        else:
            span = ActivitySpan(kind=ACTIVITY_CODES[c], domain="acc", start_sample=a, end_sample=b,
                                rate_hz=self.acc_rate_hz)  # fmt: skip
            self._span_q.append((span, a / self.acc_rate_hz, b / self.acc_rate_hz))
            out.append(ActivityChange(kind="rest", domain="acc", sample=b))

    def _declared_span(self, d: _Declared, end: int) -> ActivitySpan:
        return ActivitySpan(
            kind=d.kind, domain="emg", start_sample=d.start, end_sample=end, rate_hz=self.emg_rate_hz,
            declared=True,
        )  # fmt: skip

    def _context_pass(self, out: list[DetectorOutput], final: bool) -> None:
        """Hold EMG onsets and events until their context is known, then publish spasms only
        (and the activity spans whose bursts have all been judged)."""
        if not self._ctx:
            return
        if not (out or final or self._declared or self._span_q or self._vol_t):
            # The common case (twice per chunk): nothing new, no session declared, no span
            # waiting. Only the gate of the held outputs decides whether there is work.
            if not self._held:
                return
            bank = self._bank
            emg_t = -math.inf if bank is None else bank.processed_until / self.emg_rate_hz
            if emg_t < self._gate_emg and self._acc_t < self._gate_acc:
                return
        self._judge_held(out, final)
        self._release_spans(out, final)

    def _judge_held(self, out: list[DetectorOutput], final: bool) -> None:
        if out:
            self._take_new(out)
        emg_t = -math.inf if self._bank is None else self._bank.processed_until / self.emg_rate_hz
        if self._declared:
            for d in self._declared:
                if not d.reported and d.end is not None and (final or emg_t * self.emg_rate_hz >= d.end):
                    d.reported = True
                    self._queue_declared(d, d.end)
        if not self._held or (not final and emg_t < self._gate_emg and self._acc_t < self._gate_acc):
            return
        self._judge_pass(out, final, emg_t)

    def _take_new(self, out: list[DetectorOutput]) -> None:
        """Log the new EMG quality changes and hold the new EMG onsets and events (in order)."""
        moved = False
        keep: list[DetectorOutput] = []
        for o in out:
            if isinstance(o, QualityChange):
                if o.domain == "emg":
                    t_q = o.sample / self.emg_rate_hz
                    self._quality_log.setdefault(o.channel, []).append((t_q, o.state))
                    self._oldest = min(self._oldest, t_q)
                keep.append(o)
            elif isinstance(o, (Onset, SpasmEvent)) and o.domain == "emg":
                moved = True
                if isinstance(o, Onset):
                    t_on = o.onset_sample / self.emg_rate_hz
                    bisect.insort(self._onset_times.setdefault(o.channel, []), t_on)
                    if self._naps:
                        self._wake_onset(t_on)
                    self._oldest = min(self._oldest, t_on)
                    span = [t_on, math.inf]
                    self._spans.setdefault(o.channel, []).append(span)
                    self._open_span[o.key] = span
                else:
                    span_done = self._open_span.pop(o.key, None)
                    if span_done is not None:
                        span_done[1] = o.offset_sample / self.emg_rate_hz
                        self._oldest = min(self._oldest, span_done[1])
                    r = self.emg_rate_hz
                    a, b = o.onset_sample / r, o.offset_sample / r
                    self._peaks.append((o.channel, a, b, o.peak_uv))
                    if o.rise_s is not None:
                        self._recent.append((o.channel, a, b, o.rise_s))
                    if self._naps:
                        self._wake_event()
                self._held.append(o)
                self._gate_emg = -math.inf  # look at the newcomer on this pass
            else:
                keep.append(o)
        if moved:
            out[:] = keep

    def _judge_pass(self, out: list[DetectorOutput], final: bool, emg_t: float) -> None:
        """Judge the held EMG outputs whose context is known; publish spasms to ``out``."""
        cfg = self.config
        acc_t = self._acc_t if self._act is not None else math.inf
        rate = self.emg_rate_hz
        waiting: set[str] = set()
        keep_held: list[Onset | SpasmEvent] = []
        undecided = self._undecided
        undecided.clear()
        for o in self._held:
            t0 = o.onset_sample / rate
            if isinstance(o, Onset):
                ready = final or acc_t >= t0 + _ONSET_LOOK_S or emg_t >= t0 + _ONSET_MAX_WAIT_S
                if not ready:
                    keep_held.append(o)
                    waiting.add(o.key)
                elif self._onset_at_rest(o, t0):
                    out.append(o)
                else:
                    self._deferred[o.key] = o
                continue
            t1 = o.offset_sample / rate
            artefact = self._electrode_verdict.get(o.key)
            if artefact is None:
                artefact = self._electrode_artefact(o.channel, o.key, t0, t1, emg_t, final)
                if artefact is not None:
                    self._electrode_verdict[o.key] = artefact
                    if self._bank is not None:
                        self._bank.burst_spectra.pop(o.key, None)
                        self._bank.burst_low.pop(o.key, None)
                        self._bank.burst_crackle.pop(o.key, None)
            if artefact is None:
                keep_held.append(o)
                undecided.append((t0, t1))
                continue
            if artefact == "artefact":
                self._electrode_verdict.pop(o.key, None)
                self._deferred.pop(o.key, None)
                self._n_artefact += 1
                continue
            if o.key in waiting or (self._naps and self._napping(o.key, emg_t, final)):
                verdict = None
            else:
                verdict = self._judge(o, t0, t1, emg_t, acc_t, final)
            if verdict is None:
                keep_held.append(o)
                undecided.append((t0, t1))
                continue
            voluntary, context = verdict
            self._electrode_verdict.pop(o.key, None)
            onset = self._deferred.pop(o.key, None)
            clonic = self._movement_clonus.pop(o.key, None)
            if self._bank is not None:  # judged another way: its clonic run (if any) is not used
                self._bank.episodes.clonic_parts.pop(o.key, None)
                self._bank.episodes.silences.pop(o.key, None)
            if voluntary:
                self._n_voluntary += 1
                bisect.insort(self._vol_t, t0)
                continue
            gait_conf = None if self._gait is None else self._gait.confidence(o.key)
            later = None if self._gait is None else self._gait.spasm_onset(o.key)
            own = None if self._bank is None else self._bank.episodes.own_parts.pop(o.key, None)
            if clonic is not None:
                # a clonus fused with the movement's bursts: the clonic run is the spasm
                a, b, freq, regularity, peak, mean = clonic
                o = dataclasses.replace(
                    o, type="clonus", offset_sample=b, frequency_hz=freq, peak_uv=peak, mean_uv=mean,
                    relative_amplitude=peak / o.baseline_uv if o.baseline_uv > 0 else o.relative_amplitude,
                    confidence=round(min(o.confidence, 0.5 + 0.5 * regularity), 3),
                )  # fmt: skip
                if onset is not None:
                    o, onset = self._redate(o, onset, a / rate, retype=False)
                else:  # its onset was announced: the key stays the announced one
                    o = dataclasses.replace(o, onset_sample=a)
            elif own is not None and context != "rest":
                # fused with a much weaker (voluntary) burst of its muscle: its own part's type
                # and, unless already announced, its own onset and offset (read on its envelope,
                # so before the gait model's estimate from the gait burst's usual length)
                rise_s = o.rise_s if own[3] is None else round(own[3], 3)  # its own, from its onset
                o = dataclasses.replace(o, type=own[2], offset_sample=own[1], rise_s=rise_s)
                if onset is not None:
                    o, onset = self._redate(o, onset, own[0] / rate, retype=False)
            elif later is not None and onset is not None:  # not announced yet: date it right
                o, onset = self._redate(o, onset, later)
            if onset is not None:
                out.append(onset)
            conf = o.confidence if context == "rest" else round(o.confidence * cfg.activity_confidence, 3)
            conf = conf if gait_conf is None else round(o.confidence * gait_conf, 3)
            suspect = artefact == "suspect"
            if suspect:  # near a lead-off and not recognisably the electrode: for a clinician to weigh
                conf = round(conf * cfg.artifact_suspect_confidence, 3)
            out.append(dataclasses.replace(o, context=context, confidence=conf, artifact_suspect=suspect))
            self._spasm_spans.append((o.onset_sample / rate, o.offset_sample / rate))
        undecided.clear()
        self._held = keep_held
        # When to look again: an onset once the accelerometer reaches it (or the wait is over);
        # events at most every quarter second (they are not alerts), which bounds the cost.
        gate_emg = gate_acc = math.inf
        for h in keep_held:
            if isinstance(h, Onset):
                t0 = h.onset_sample / rate
                gate_emg = min(gate_emg, t0 + _ONSET_MAX_WAIT_S)
                if self._act is not None:
                    gate_acc = min(gate_acc, t0 + _ONSET_LOOK_S)
            else:
                gate_emg = min(gate_emg, emg_t + 0.25)
                if self._act is not None and self._acc_t > -math.inf:
                    gate_acc = min(gate_acc, self._acc_t + 0.25)
        self._gate_emg, self._gate_acc = gate_emg, gate_acc
        # forget onsets too old to matter for any rhythm test
        horizon = emg_t - _FORGET_S
        if horizon <= self._oldest:
            return  # nothing is that old (most passes)
        for times in self._onset_times.values():
            if times and times[0] < horizon:
                del times[: bisect.bisect_left(times, horizon)]
        for spans in self._spans.values():
            while spans and spans[0][1] < horizon:
                del spans[0]
        for log in self._quality_log.values():
            i = bisect.bisect_left(log, (horizon,))
            if i > 1:
                del log[: i - 1]  # the last change before the horizon still says the state
        oldest = [times[0] for times in self._onset_times.values() if times]
        oldest += [spans[0][1] for spans in self._spans.values() if spans]
        oldest += [log[1][0] for log in self._quality_log.values() if len(log) > 1]
        self._oldest = min(oldest, default=math.inf)

    def _redate(
        self, ev: SpasmEvent, onset: Onset, t: float, retype: bool = True
    ) -> tuple[SpasmEvent, Onset]:
        """A spasm fused after a gait burst (``GaitPhaseModel``): its event and its held Onset
        start at ``t`` instead of at the gait burst's onset (same key rule, retyped by duration
        unless ``retype`` is False: the caller typed it)."""
        cfg = self.config
        start = round(t * ev.rate_hz)
        key = f"{ev.channel}:{ev.domain}:{start}"
        dur = (ev.offset_sample - start) / ev.rate_hz
        kind = ev.type
        if kind != "clonus" and retype:
            kind = "twitch" if dur < cfg.twitch_max_s else "phasic" if dur <= cfg.tonic_min_s else "tonic"
        ev = dataclasses.replace(ev, key=key, onset_sample=start, type=kind)
        return ev, dataclasses.replace(onset, key=key, onset_sample=start)

    def _queue_declared(self, d: _Declared, end: int) -> None:
        self._span_q.append((self._declared_span(d, end), d.start / self.emg_rate_hz, end / self.emg_rate_hz))

    def _release_spans(self, out: list[DetectorOutput], final: bool) -> None:
        """Publish finished activity spans once no burst that began inside them is still
        unjudged (held, open, or not yet seen by the EMG), with ``suppressed`` = the bursts in
        them classed voluntary."""
        if not self._span_q and not self._vol_t:
            return  # nothing to publish, nothing to forget (the common case, at rest)
        if self._span_q:
            rate = self.emg_rate_hz
            if final:
                first = math.inf
            else:
                emg_t = -math.inf if self._bank is None else self._bank.processed_until / rate
                # an onset is reported ``confirm_s`` after it crosses, up to 0.3 s after it began
                first = emg_t - self.config.confirm_s - 0.5
                for h in self._held:
                    first = min(first, h.onset_sample / rate)
                for o in self._deferred.values():
                    first = min(first, o.onset_sample / rate)
                for sp in self._open_span.values():
                    first = min(first, sp[0])
            keep: list[tuple[ActivitySpan, float, float]] = []
            for span, a, b in self._span_q:
                if b > first:
                    keep.append((span, a, b))
                    continue
                n = bisect.bisect_left(self._vol_t, b) - bisect.bisect_left(self._vol_t, a)
                out.append(dataclasses.replace(span, suppressed=n))
            self._span_q = keep
        # forget voluntary onsets no span can still contain
        need = min((a for _, a, _ in self._span_q), default=math.inf)
        if self._periods is not None and self._periods.cur is not None and self.acc_rate_hz:
            need = min(need, self._periods.cur.start / self.acc_rate_hz)
        for d in self._declared:
            if not d.reported:
                need = min(need, d.start / self.emg_rate_hz)
        if self._vol_t and self._vol_t[0] < need:
            bank = self._bank
            emg_now = math.inf if final or bank is None else bank.processed_until / self.emg_rate_hz
            cut = min(need, emg_now - 60.0)
            del self._vol_t[: bisect.bisect_left(self._vol_t, cut)]

    def _declared_at(self, t: float) -> _Declared | None:
        rate = self.emg_rate_hz
        for d in self._declared:
            if d.start / rate <= t and (d.end is None or t < d.end / rate):
                return d
        return None

    def _acc_settled(self, a: float, b: float) -> bool:
        """Are the verdicts of the hops ending in (a, b] final? Yes once the accelerometer has
        been analysed up to ``b`` (later hops end later) while the log still holds a hop ending at
        or before ``a`` (the full log drops its oldest first: none of these has been dropped)."""
        log = self._verdicts
        return self._acc_t >= b and bool(log) and log[0][1] <= a

    def _acc_context(self, a: float, b: float) -> tuple[int, float]:
        """``_acc_scan(a, b)``, remembered once its verdicts are final: a held burst asks for the
        same windows each time it is judged."""
        key = (a, b)
        memo = self._acc_memo
        got = memo.get(key)
        if got is not None and self._verdicts[0][1] <= a:
            return got  # (the log has dropped none of them since)
        got = self._acc_scan(a, b)
        if self._acc_settled(a, b):
            if len(memo) >= 256:
                memo.clear()
            memo[key] = got
        return got

    def _acc_scan(self, a: float, b: float) -> tuple[int, float]:
        """Context over [a, b] and the rhythm's period (s, 0 if none).

        A posture transition (gravity turning) wins if it covers >= ``activity_enter_s``: a spasm
        cannot fake it. Otherwise the majority non-rest verdict, if non-rest verdicts cover >=
        ``activity_share`` of the window.
        """
        counts = [0] * 5
        periods: list[float] = []
        n = 0
        for _, v1, code, period in reversed(self._verdicts):
            # hops ending within (a, b]: all of them are known once the samples up to b are
            if v1 <= a:
                break
            if v1 > b:
                continue
            counts[code] += 1
            n += 1
            if period > 0:
                periods.append(period)
        p = float(np.median(periods)) if periods else 0.0
        hop_s = 0.0 if self._act is None else self._act.hop / self._act.rate
        if counts[TRANSITION] * hop_s >= self.config.activity_enter_s:
            return TRANSITION, p
        active = n - counts[REST]
        if n == 0 or active < self.config.activity_share * n:
            return REST, p
        return int(np.argmax(counts[1:])) + 1, p

    def _acc_any(self, a: float, b: float) -> bool:
        """Any posture-transition, walking or rhythmic verdict among the hops ending in (a, b]?"""
        for _, v1, code, _ in reversed(self._verdicts):
            if v1 <= a:
                break
            if v1 <= b and code in (TRANSITION, WALKING, RHYTHMIC):
                return True
        return False

    def _electrode_artefact(
        self, channel: str, key: str, t0: float, t1: float, emg_t: float, final: bool
    ) -> str | None:
        """Is a burst on ``channel`` the electrode, not the muscle? None while that is unknown,
        else ``"artefact"`` (drop it), ``"suspect"`` (publish it flagged) or ``""`` (clean).

        An electrode coming loose tugs the cable and loses contact over up to seconds before the
        input reads flat, floating or railed: a burst ending at most ``lead_off_guard_before_s``
        before the channel went bad may be that transient. After reattachment the electrode-skin
        potential and impedance settle over seconds while the gel wets, with intermittent contact
        (crackle) meanwhile (Tam & Webster, IEEE TBME 1977; Huigen, Peper & Grimbergen, Med Biol Eng
        Comput 2002): a burst starting within ``lead_off_guard_after_s`` of the recovery may be that.
        Neither is dropped blind (a spasm can pull an electrode off, or come right after it is
        pressed back): only a burst that ran into the bad state (closed by it) or that was never
        seen rising from rest after the recovery is dropped; any other burst in those windows is
        published flagged ``artifact_suspect``, its confidence lowered, for a clinician to weigh."""
        cfg = self.config
        # a lead-off that starts just after the burst is reported quality_hold_s after it starts;
        # decide only once it would be known (the same verdict whatever the chunking)
        if not final and emg_t < t1 + cfg.lead_off_guard_before_s + cfg.quality_hold_s + 0.1:
            return None
        none3: tuple[float | None, float | None, float | None] = (None, None, None)
        low, hum, inp = none3 if self._bank is None else self._bank.burst_low.get(key, none3)
        if inp is not None and inp < cfg.input_power_ratio:
            # The raw samples over the burst hold (almost) no power where muscle would put it,
            # off the mains lines: what the envelope read is the filters ringing after a sharp
            # edge (a DC step, a knock on the cable), not anything in the input.
            return "artefact"
        if low is not None and low > cfg.artefact_low_fraction:
            # Wherever it is: over the burst itself, most of its raw EMG-band power lies below
            # ``artefact_band_hz``. Surface EMG peaks at 50-150 Hz (mean frequency 60-120 Hz);
            # the bias drift and DC steps of a contact coming loose (half contact, before the
            # input reads bad) and a knock on the cable keep theirs below ~20 Hz, and a window as
            # short as a burst leaks it into 20-45 Hz. The envelope's own test saw only the
            # first ``judge_s`` of it.
            return "artefact"
        if hum is not None and hum >= cfg.electrode_hum_change:
            # Mostly mains hum, and the hum's power changed that many times within a second:
            # the contact's impedance changed (coming loose, or settling after reattachment), so
            # the hum's changing amplitude leaked through the notches. A steady hum on a channel
            # with a weak spasm keeps its level.
            return "artefact"
        log = self._quality_log.get(channel)
        near = False
        if log:
            prev = "ok"
            for t, state in log:
                if prev != "ok" and state == "ok" and 0.0 <= t0 - t <= cfg.lead_off_guard_after_s:
                    if t0 - t < cfg.settle_bad_s + cfg.block_s:
                        # onsets wait ``settle_bad_s`` after a bad block and are traced back to
                        # the last envelope row near rest: this one found none since the
                        # electrode came back. No rise from rest was seen, so there is no onset
                        # to report: it is the electrode settling (or a spasm under it, which
                        # cannot be told apart)
                        return "artefact"
                    crackle = None if self._bank is None else self._bank.burst_crackle.get(key)
                    if cfg.crackle_kurtosis > 0 and crackle is not None and crackle > cfg.crackle_kurtosis:
                        # isolated spikes, not an interference pattern of motor units: the
                        # intermittent contact of the electrode just pressed back (crackle)
                        return "artefact"
                    near = True
                if prev == "ok" and state != "ok" and -0.05 <= t - t1 <= cfg.lead_off_guard_before_s:
                    if t - t1 <= cfg.block_s + self._bank_lag_s():
                        # still running when the input went flat, floating or railed: closed by
                        # the lead-off itself, the transient of contact being lost
                        return "artefact"
                    near = True
                prev = state
        if not near:
            return ""
        sp = None if self._bank is None else self._bank.burst_spectra.get(key)
        if sp is not None and (sp[0] >= cfg.electrode_line_share or sp[1] > cfg.artefact_low_fraction):
            # its raw power sits on the mains lines (a half-contacting input's hum) or below the
            # artefact band (drift, DC steps, cable motion): the electrode, not the muscle
            return "artefact"
        return "suspect"

    def _bank_lag_s(self) -> float:
        """Delay of the envelope behind the muscle (s): an episode closed at a sample ends this early."""
        return 0.0 if self._bank is None else self._bank.lag / self.emg_rate_hz

    def _ramp_evidence(self, rise: float | None) -> float:
        """How clearly a rise time says "recruitment ramp", 0..1: 0 up to
        ``voluntary_ramp_ambiguous_s`` (where reflex spasms still reach their plateau), 1 from
        ``voluntary_ramp_s`` (self-paced voluntary ramps), linear between (the rise is a noisy
        estimate: envelope smoothing and motor-unit granularity blur it by tens of ms)."""
        lo, hi = self.config.voluntary_ramp_ambiguous_s, self.config.voluntary_ramp_s
        if rise is None or rise <= lo:
            return 0.0
        return 1.0 if rise >= hi else (rise - lo) / (hi - lo)

    def _built_up_clonus(self, ev: SpasmEvent) -> bool:
        """Did an episode typed clonus take longer than ``clonus_reflex_periods`` of its own
        period to reach its plateau? A reflex clonus is at full height from its first beat."""
        if ev.type != "clonus" or ev.rise_s is None or not ev.frequency_hz:
            return False
        return ev.rise_s * ev.frequency_hz >= self.config.clonus_reflex_periods

    def _own_rise(self, ev: SpasmEvent) -> float | None:
        """The burst's rise time for "graded" during activity: its own part's when it rose
        abruptly out of a weaker burst of its muscle (``EpisodeTracker.own_parts``:
        a reflex volley on top of a stride's or a repetition's burst; the episode's rise is then
        the voluntary burst's ramp), else the episode's."""
        own = None if self._bank is None else self._bank.episodes.own_parts.get(ev.key)
        return ev.rise_s if own is None or own[3] is None else own[3]

    def _ramped_partner(self, channel: str, t0: float, until: float, rise: float | None) -> bool:
        """Is the ramp evidence of this burst (``rise``) and of its best co-contracting partner
        (another channel's burst starting within 0.15 s of ``t0`` and ending by ``until``)
        together >= 1? Agonist and antagonist of one movement share one descending command
        (common drive), so each is an independent reading of that command's ramp: a clearly
        ramped partner decides alone, two bursts in the ambiguous band corroborate each other."""
        best = 0.0
        for ch, a, b, r in self._recent:
            if ch != channel and abs(a - t0) <= 0.15 and b <= until:
                best = max(best, self._ramp_evidence(r))
        return best > 0.0 and self._ramp_evidence(rise) + best >= 1.0

    def _graded_synergy(self, ev: SpasmEvent, t0: float, until: float = math.inf) -> bool:
        """Does the burst start within ``synergy_window_s`` of finished bursts on >= 2 other
        channels, with the median rise time of them all (itself included) >=
        ``voluntary_min_rise_s``? The median over the synergy is a robust reading of its onset
        kinetics: one member crossing the threshold near its top (a weak postural burst) or one
        motor-unit peak early in a ragged burst does not decide it. Only bursts that ended by
        ``until`` count (those known when it is decided, whatever the chunking)."""
        w = self.config.synergy_window_s
        rises: dict[str, float] = {}
        for ch, a, b, rise in self._recent:
            if ch != ev.channel and abs(a - t0) <= w and b <= until:
                rises[ch] = max(rises.get(ch, 0.0), rise)
        if len(rises) < 2:
            return False
        vals = sorted([*rises.values(), ev.rise_s or 0.0])
        return vals[len(vals) // 2] >= self.config.voluntary_min_rise_s

    def _repeated(self, ev: SpasmEvent, t0: float, t1: float) -> bool:
        """Is the burst one of a run of >= ``rhythm_min_bursts`` repetitions of its channel's
        bursts (``activity.repetition_run``)? Reads the channel's bursts that ended by
        ``rhythm_lookahead_s`` - 1 s past its offset, and the onsets of later ones up to 0.5 s
        before its decision: all known when it is decided, ``rhythm_lookahead_s`` past its
        offset, whatever the chunking (an episode is reported ``quiet_s`` and a block after it
        ends; the onsets read are those ``_rhythm`` reads)."""
        cfg = self.config
        horizon = t1 + cfg.rhythm_lookahead_s - 1.0
        mine = [(a, b, pk) for ch, a, b, pk in self._peaks if ch == ev.channel and b <= horizon]
        if not any(a == t0 for a, _, _ in mine):
            mine.append((t0, t1, ev.peak_uv))
        times = self._onset_times.get(ev.channel, [])
        upto = t1 + cfg.rhythm_lookahead_s - 0.5
        for t in times[bisect.bisect_right(times, t1) : bisect.bisect_left(times, upto)]:
            if all(abs(t - a) > cfg.block_s for a, _, _ in mine):
                mine.append((t, math.inf, math.nan))  # its length is not known yet
        mine.sort()
        run = repetition_run(
            mine, t0, cfg.rhythm_min_interval_s, cfg.repetition_max_interval_s, cfg.rhythm_jitter,
            cfg.repetition_duration_ratio, cfg.gait_amplitude_ratio,
        )  # fmt: skip
        return run >= cfg.rhythm_min_bursts

    def _came_to_rest(self, t0: float, b: float) -> float | None:
        """Where the limb came to rest after moving, for ``activity_enter_s`` or longer, with
        movement again after it (hops ending in (``t0``, ``b``]): the start of that rest, or
        None. A burst's context is the movement it starts (or continues); a movement that begins
        after the limb had come to rest from what the burst did to it (a spasm's jerk) is a new
        one, begun after the burst, not by it (a voluntary burst leads the movement it drives
        by the electromechanical delay, tens of ms; Cavanagh & Komi 1979)."""
        hops = []
        for h in reversed(self._verdicts):
            if h[1] <= t0:
                break
            if h[1] <= b:
                hops.append(h)
        hops.reverse()
        hop_s = 0.0 if self._act is None else self._act.hop / self._act.rate
        moved = False
        rest_from: float | None = None
        n = 0
        for v0, _, code, _ in hops:
            if code != REST:
                if rest_from is not None and n * hop_s >= self.config.activity_enter_s:
                    return rest_from
                moved, rest_from, n = True, None, 0
            elif moved:
                if rest_from is None:
                    rest_from = v0
                n += 1
        return None

    def _own_cycle(self, channel: str, t0: float) -> float:
        """The channel's own burst cycle before ``t0``: the median interval between its last
        five onsets, of those in the voluntary band (``rhythm_min_interval_s``-
        ``rhythm_max_interval_s``); 0 when it has none (the accelerometer's period may be the
        stride or the step, or another limb's)."""
        cfg = self.config
        times = self._onset_times.get(channel, [])
        i = bisect.bisect_left(times, t0)
        last = times[max(0, i - 5) : i]
        lo, hi = cfg.rhythm_min_interval_s, cfg.rhythm_max_interval_s
        iv = [b - a for a, b in itertools.pairwise(last) if lo <= b - a <= hi]
        return statistics.median(iv) if iv else 0.0

    def _on_cycle(self, dt: float, period: float) -> bool:
        """Is ``dt`` (s) a whole number (>= 1) of cycles of ``period``, within ``phase_tolerance``?"""
        k = round(dt / period)
        return k >= 1 and abs(dt / period - k) <= self.config.phase_tolerance

    def _settled_before(self, t0: float, final: bool) -> float | None:
        """Start of the window (``activity_before_s`` before ``t0``) in which the limb moving
        is movement already under way when a burst at ``t0`` starts: after every published
        spasm that ended before ``t0``, plus ``spasm_settle_s``. A spasm jerks the limb, and the
        limb falls back and settles after it (the accelerometer cue Granat & Edmond used to
        tell spasms from movement); that movement is the spasm's, not a voluntary one that the
        next burst continues. None while an earlier burst that could be such a spasm is
        undecided: its verdict is awaited, so the decision is the same in any chunking (only
        bursts that ended before ``t0`` count: they reached the held outputs before this one)."""
        cfg = self.config
        lo = t0 - cfg.activity_before_s
        if not final:
            for _, b in self._undecided:
                if lo - cfg.spasm_settle_s < b < t0:
                    return None
        for _, b in self._spasm_spans:
            if lo - cfg.spasm_settle_s < b < t0:
                lo = max(lo, b + cfg.spasm_settle_s)
        return lo

    def _fell_silent(self, channel: str, t0: float, cycle: float) -> bool:
        """Did the channel burst and fall silent once per cycle just before ``t0``: >= 2 bursts,
        each shorter than ``cycle``, ending within ``cyclic_min_cycles`` cycles before it? A
        muscle that follows a movement cycle without falling silent (the triceps through a bout
        of pushes) does so from the start of the bout; one that had been falling silent every
        cycle and then stays on for several is no longer following the cycle alone: a sustained
        (tonic) spasm under the movement's bursts, which modulate its envelope at the cycle."""
        lo = t0 - self.config.cyclic_min_cycles * cycle
        n = sum(1 for ch, a, b, _ in self._peaks if ch == channel and lo <= b <= t0 and b - a < cycle)
        return n >= 2

    def _spasm_after_bursts(
        self, ev: SpasmEvent, cycle: float, quiet: list[tuple[float, float]] | None
    ) -> bool:
        """Does the episode end with a spasm after weaker bursts of the movement it merged?
        Its own part (``EpisodeTracker.own_parts``) starts after the episode, the bursts before
        it (below 1/``own_part_ratio`` of its peak) hold a silence of the episode (at least one
        burst of the movement merged before it, not one repetition's own rise), and the part is held for
        two cycles or more with no silence inside it (``quiet``: the episode's silences; the
        one its end falls into is after it). The muscle followed the cycle, then something far
        stronger kept it up: not the movement's bursts."""
        own = None if self._bank is None else self._bank.episodes.own_parts.get(ev.key)
        if own is None or own[3] is None or cycle <= 0:
            return False
        a, b = own[0] / ev.rate_hz, own[1] / ev.rate_hz
        silences = quiet or []
        merged = any(end <= a for _, end in silences)  # a burst of the movement before it
        return merged and b - a >= 2.0 * cycle and not any(a < start and end < b for start, end in silences)

    def _overpowers(self, ev: SpasmEvent, t0: float, t1: float) -> bool:
        """Is the burst far longer and stronger than its channel's bursts of the movement around
        it? During an exercise set (or any movement the accelerometer sees) one motor program
        drives each repetition against the same load, so the muscle's bursts are alike in length
        and strength (``repetition_run``); a spasm fused with one of them starts as the voluntary
        burst does (its rise reads graded) but outlasts and overpowers it. Spasms in incomplete
        SCI and MS often exceed the voluntary force the same muscle can produce (Thomas & Ross,
        J Neurotrauma 1997; Dietz 2002). The neighbours are the channel's other bursts from
        ``gait_template_s`` before it to ``rhythm_lookahead_s`` - 1 s past its offset (all known
        when it is decided); those within ``repetition_duration_ratio`` of their median length
        (>= 2 of them) are the movement's; the burst is out of that pattern when it is longer
        than ``repetition_duration_ratio`` x their longest and stronger than
        ``gait_amplitude_ratio`` x their median peak."""
        cfg = self.config
        horizon = t1 + cfg.rhythm_lookahead_s - 1.0
        near = [
            (b - a, pk)
            for ch, a, b, pk in self._peaks
            if ch == ev.channel and a != t0 and a >= t0 - cfg.gait_template_s and b <= horizon
        ]
        if len(near) < 2:
            return False
        med = float(np.median([d for d, _ in near]))
        r = cfg.repetition_duration_ratio
        alike = [(d, pk) for d, pk in near if med <= r * d and d <= r * med]
        if len(alike) < 2:
            return False
        longest = max(d for d, _ in alike)
        med_pk = float(np.median([pk for _, pk in alike]))
        return t1 - t0 > r * longest and ev.peak_uv > cfg.gait_amplitude_ratio * med_pk

    def _synergy(self, channel: str, t: float, window: float | None = None) -> int:
        """How many other channels had a burst start within ``window`` (default
        ``synergy_window_s``) of ``t``."""
        w = self.config.synergy_window_s if window is None else window
        n = 0
        for ch, times in self._onset_times.items():
            if ch == channel:
                continue
            i = bisect.bisect_left(times, t - w)
            if i < len(times) and times[i] <= t + w:
                n += 1
        return n

    def _alternates(self, channel: str, t: float, upto: float) -> bool:
        """Does another channel burst at a voluntary rhythm (``rhythm_min_bursts`` regular onsets
        up to ``upto``) in turn with this one: its onsets on both sides of ``t`` within half the
        slowest voluntary cycle (``rhythm_max_interval_s``); or, for the first burst of a bout
        (no burst of it before ``t``: the first push from rest), its bursts falling one each
        between this channel's (``_interleaves``); and none of its bursts active together with
        this one? That is the alternation of antagonists (reciprocal inhibition: one muscle
        falls silent while the other works), not the co-contraction of a spasm. Bursts are
        compared by their spans, not their onsets alone: a short push and the recovery that
        follows it start less than ``synergy_window_s`` apart at a brisk cadence."""
        cfg = self.config
        half = 0.5 * cfg.rhythm_max_interval_s
        end = self._span_end(channel, t)
        mine = self._onset_times.get(channel, [])
        i_next = bisect.bisect_right(mine, t)
        nxt = mine[i_next] if i_next < len(mine) else math.inf
        for ch, times in self._onset_times.items():
            if ch == channel:
                continue
            lo = bisect.bisect_left(times, t - half)
            hi = bisect.bisect_left(times, min(t + half, upto))
            near = times[lo:hi]
            if not near or self._co_active(ch, t, end):
                continue
            if near[0] < t < near[-1]:
                prev = max(x for x in near if x < t)  # its burst before this one
                if self._rhythm(ch, prev, upto) >= cfg.rhythm_min_bursts:
                    return True
            elif near[0] > t and nxt < upto and near[0] < nxt and self._interleaves(channel, ch, t, upto):
                return True  # the bout's first burst
        return False

    def _interleaves(self, channel: str, other: str, t: float, upto: float) -> bool:
        """Do ``other``'s bursts fall one each between ``channel``'s bursts from ``t`` on (its
        first ``rhythm_min_bursts`` onsets before ``upto``), each starting after this channel's
        burst before it has ended? The two muscles take turns (A B A B A): the first bursts of an
        alternating bout, when at a slow cadence the lookahead holds too few of the other
        muscle's bursts for a run of its own."""
        mine = self._onset_times.get(channel, [])
        theirs = self._onset_times.get(other, [])
        i = bisect.bisect_left(mine, t)
        run = [x for x in mine[i : i + self.config.rhythm_min_bursts] if x < upto]
        if len(run) < self.config.rhythm_min_bursts:
            return False
        for a, b in itertools.pairwise(run):
            lo, hi = bisect.bisect_right(theirs, a), bisect.bisect_left(theirs, b)
            if hi - lo != 1 or theirs[lo] < self._span_end(channel, a):
                return False
        return True

    def _span_end(self, channel: str, t: float) -> float:
        """Offset (s) of the channel's burst starting at ``t`` (inf while open or unknown)."""
        for a, b in reversed(self._spans.get(channel, [])):
            if abs(a - t) <= self.config.block_s:
                return b
        return math.inf

    def _co_active(self, channel: str, t0: float, t1: float) -> bool:
        """Was ``channel`` bursting at some time between ``t0`` and ``t1``?"""
        return any(a < t1 and b > t0 for a, b in self._spans.get(channel, []))

    def _follows_at_a_voluntary_interval(self, channel: str, t: float) -> bool:
        """Did the channel's previous burst start a voluntary cycle before ``t`` (between
        ``rhythm_min_interval_s`` and ``rhythm_max_interval_s``)? Then this burst may be the next
        push, stride or repetition of a rhythm under way, and is judged with the bursts after
        it: an early burst of a bout whose onset reads abrupt (a triceps push crossing the
        threshold near its top) has too few regular predecessors to be recognised on them alone."""
        times = self._onset_times.get(channel, [])
        i = bisect.bisect_left(times, t) - 1
        cfg = self.config
        return i >= 0 and cfg.rhythm_min_interval_s <= t - times[i] <= cfg.rhythm_max_interval_s

    def _rhythm(self, channel: str, t: float, upto: float) -> int:
        times = self._onset_times.get(channel, [])
        lo = bisect.bisect_left(times, t - 15.0)
        hi = bisect.bisect_left(times, upto)
        cfg = self.config
        return regular_rhythm(
            times[lo:hi], t, cfg.rhythm_min_interval_s, cfg.rhythm_max_interval_s, cfg.rhythm_jitter
        )

    def _onset_at_rest(self, o: Onset, t0: float) -> bool:
        """Send the Onset notice now? Only for a burst with no sign of voluntary activity."""
        cfg = self.config
        if self._declared_at(t0) is not None:
            return False
        if (
            self._act is not None
            and self._acc_context(t0 + _ONSET_LOOK_S - cfg.activity_before_s, t0 + _ONSET_LOOK_S)[0]
            not in (REST, OTHER)  # smooth movement alone: a previous spasm may have caused it
        ):
            return False
        return self._rhythm(o.channel, t0, t0 + 1e-9) < cfg.rhythm_min_bursts

    def _nap(
        self,
        key: str,
        *,
        emg: float = math.inf,
        acc: float = math.inf,
        verdicts: tuple[float, float] | None = None,
        onsets: tuple[float, float] | None = None,
        events: bool = False,
    ) -> None:
        """``_judge``'s "not yet" (None) for ``key``, standing until ``emg`` / ``acc`` (s) or
        new data where it looked (see ``_Nap``). A plain ``return None`` naps not: judged again
        on the next pass."""
        if self._use_naps and not self._declared:  # (a session can be declared or ended any time)
            if onsets is not None:
                # the horizon clean-up forgets onsets: the answer stands only while it keeps these
                emg = min(emg, onsets[0] + _FORGET_S)
            self._naps[key] = _Nap(emg, acc, verdicts, onsets, events)

    def _napping(self, key: str, emg_t: float, final: bool) -> bool:
        """Does the held event ``key`` still stand at "not yet"? (Forgets its nap when not.)"""
        nap = self._naps.get(key)
        if nap is None:
            return False
        if not final and emg_t < nap.emg and self._acc_t < nap.acc and not self._declared:
            return True
        del self._naps[key]
        return False

    def _wake_verdict(self, added: float, dropped: float | None) -> None:
        """A hop verdict ending at ``added`` joins the log (and the oldest, ending at ``dropped``,
        leaves it): wake the naps that read hops ending there."""
        for key, nap in list(self._naps.items()):
            w = nap.verdicts
            if w is not None and (w[0] < added <= w[1] or (dropped is not None and w[0] < dropped <= w[1])):
                del self._naps[key]

    def _wake_onset(self, t: float) -> None:
        """An onset at ``t`` joins the log: wake the naps that read onsets there."""
        for key, nap in list(self._naps.items()):
            w = nap.onsets
            if w is not None and w[0] <= t <= w[1]:
                del self._naps[key]

    def _wake_event(self) -> None:
        """A finished EMG episode joins the log: wake the naps that read episodes."""
        for key, nap in list(self._naps.items()):
            if nap.events:
                del self._naps[key]

    def _judge(
        self, ev: SpasmEvent, t0: float, t1: float, emg_t: float, acc_t: float, final: bool
    ) -> tuple[bool, ActivityKind] | None:
        """(voluntary?, context) of a finished EMG episode, or None while that is not known yet.

        Waits for the accelerometer verdicts up to ``activity_after_s`` past the offset and, only
        when the decision hinges on it, for ``rhythm_lookahead_s`` of later bursts on the channel.
        """
        cfg = self.config
        look = t1 + cfg.rhythm_lookahead_s
        bank = self._bank
        # Clonus begins with a reflex volley, so it reaches its height within its first beat; a
        # "clonus" that took longer than ``clonus_reflex_periods`` of its own period to build up
        # was recruited like a voluntary contraction and is judged as one.
        clonic = ev.type == "clonus" and not self._built_up_clonus(ev)
        cyc = None if bank is None else bank.episodes.cyclic.pop(ev.key, None)
        long_enough = cyc is not None and t1 - t0 >= cfg.cyclic_min_cycles * cyc
        if (
            cyc is not None
            and long_enough
            and self._act is not None
            and self._fell_silent(ev.channel, t0, cyc)
        ):
            # a change of pattern, not the muscle following the cycle: judged below (with the
            # accelerometer's rhythm, by the gait model; without one nothing else could judge
            # it during movement, so the envelope's cycle decides as before)
            cyc = None
        if bank is not None and cyc is not None and long_enough and not clonic:
            # A sustained contraction whose envelope rises and falls at a voluntary cyclic rhythm
            # (pushes, strides, pedal strokes): the muscle follows a movement cycle without
            # falling silent between cycles. Seen by the EMG alone, wherever the accelerometer is.
            code = REST
            if self._act is not None:
                if not final and acc_t < t0 + 2.0 and emg_t < t1 + cfg.activity_max_wait_s:
                    bank.episodes.cyclic[ev.key] = cyc  # asked again once it is known
                    return None
                code = self._acc_context(t0 - cfg.activity_before_s, t0 + 2.0)[0]
                cut = self._came_to_rest(t0, t0 + 2.0)
                if (
                    cut is not None
                    and self._acc_context(t0 - cfg.activity_before_s, t0 - 0.1)[0] == REST
                    and self._acc_context(t0 - cfg.activity_before_s, cut)[0] in (REST, OTHER)
                ):
                    # It began with the limb at rest, jerked it, and the limb came to rest
                    # again before the movement whose cycle now modulates it started: it did not
                    # start with the movement, as a muscle following it does (a tonic spasm that
                    # an exercise begun after it modulates). Judged below, as any burst (its
                    # cyclic period was taken from the tracker above, so the call goes there).
                    return self._judge(ev, t0, t1, emg_t, acc_t, final)
            cycle_kind: ActivityKind = ACTIVITY_CODES[code] if code != REST else "rhythmic_exercise"
            # ...unless a clonus is fused into it: a run of regular 3-8 Hz beats, far faster
            # than the movement's cycle (``movement_clonus_min_beats``), is a reflex, not the
            # movement; it is published as the clonus, on its own span (``_judge_pass``)
            clo = bank.episodes.clonic_parts.pop(ev.key, None)
            if clo is not None:
                self._movement_clonus[ev.key] = clo
            return clo is None, cycle_kind
        code, period, before, synergy = REST, 0.0, REST, 0
        read: tuple[float, float] | None = None  # the hops read (for a nap)
        partner = False  # episodes read (for a nap)
        if self._act is not None:
            # around the burst's start (a long spasm's end says nothing about how it began)
            b = t0 + min(max(t1 - t0, 0.5), 2.0) + cfg.activity_after_s
            if not final and acc_t < b and emg_t < look + cfg.activity_max_wait_s:
                self._nap(ev.key, emg=look + cfg.activity_max_wait_s, acc=b)
                return None
            read = (t0 - cfg.activity_before_s, b)
            cut = self._came_to_rest(t0, b)
            code, period = self._acc_context(t0 - cfg.activity_before_s, b if cut is None else cut)
            lo = self._settled_before(t0, final)
            if lo is None:
                return None  # an earlier burst whose movement may fill the window is undecided
            before = REST if lo >= t0 - 0.1 else self._acc_context(lo, t0 - 0.1)[0]
            synergy = self._synergy(ev.channel, t0)
            # (the episode's own rise: a movement that starts with a ramp is voluntary even when
            # a spasm comes later in the same episode, at whose onset it would be "abrupt")
            ramped = ev.rise_s is not None and ev.rise_s >= cfg.voluntary_ramp_s
            if code != REST and before == REST and not ramped and not clonic:
                # its co-contracting partner (agonist and antagonist share one descending
                # command, De Luca & Erim 1994 "common drive") may show the ramp more clearly
                if not final and emg_t < t1 + 1.5:
                    # partners ending up to 1 s later are known by then
                    self._nap(ev.key, emg=t1 + 1.5, verdicts=read)
                    return None
                partner = True
                ramped = self._ramped_partner(ev.channel, t0, t1 + 1.0, ev.rise_s)
            if code != REST and before == REST and ramped and not clonic:
                # The limb starts moving with a burst that ramps up over hundreds of ms: force
                # graded by orderly recruitment (Henneman), the start of a purposeful movement
                # (the first repetition of an exercise, the first stride); a reflex spasm
                # reaches its peak in tens of ms (Hallett 1975; Dietz 2002).
                return True, ACTIVITY_CODES[code]
            if code == OTHER and before != OTHER and synergy < 2:
                # Smooth movement without tilt or rhythm that starts with the burst may be the
                # burst's own doing (EMG leads the movement it causes by the electromechanical
                # delay, for a spasm as for a reach). It is taken as voluntary context only if the
                # limb was already moving smoothly, or if the burst starts together with bursts
                # on >= 2 other channels (a reach or a lift recruits a synergy of agonists and
                # anticipatory postural muscles at once).
                code = REST
        declared = self._declared_at(t0)
        active = code != REST or declared is not None
        rise = self._own_rise(ev) if active else ev.rise_s
        graded = rise is not None and rise >= cfg.voluntary_min_rise_s
        cyclic = code in (WALKING, RHYTHMIC)
        # the rhythm decides: during gait/pedalling always, during other activity for an abrupt
        # burst, at rest for a graded one
        needs_rhythm = not clonic and (cyclic or not active or not graded)
        upto = math.inf if final else look - 0.5
        if needs_rhythm and not final and emg_t < look:
            # A rhythm is seen both ways: the first bursts of a movement that starts from rest
            # (the first pushes of a wheelchair bout, the first strides) have no regular
            # predecessors, and nothing else may show it (an accelerometer on another segment,
            # an antagonist alternating with this muscle more than ``synergy_window_s`` apart,
            # no accelerometer at all). So a burst waits for the later bursts when something
            # suggests a movement is starting: another channel bursting with it; another
            # channel bursting within half the slowest voluntary cycle of it (antagonists
            # alternate, reciprocal inhibition; a push's burst may read abrupt); gait,
            # pedalling or a posture change on the accelerometer. Otherwise it is decided now,
            # on the bursts before it (an isolated spasm at rest is published without waiting).
            half_cycle = 0.5 * cfg.rhythm_max_interval_s
            until = t0 + max(1.0, half_cycle + 0.1 if graded else 0.0)
            w = cfg.synergy_window_s
            if active or emg_t < until:
                self._nap(ev.key, emg=look if active else min(look, until), verdicts=read,
                          onsets=(t0 - w, t0 + w), events=partner)  # fmt: skip
                return None
            moving = self._act is not None and self._acc_any(t0 - cfg.activity_before_s, t0 + 2.0)
            alternating = self._synergy(ev.channel, t0, half_cycle) >= 1
            if moving or alternating or self._synergy(ev.channel, t0, 0.5) >= 1:
                if read is not None:
                    read = (read[0], max(read[1], t0 + 2.0))
                w = max(w, half_cycle, 0.5)
                self._nap(ev.key, emg=look, verdicts=read, onsets=(t0 - w, t0 + w), events=partner)
                return None
            if self._follows_at_a_voluntary_interval(ev.channel, t0):
                return None  # it may be the next burst of a rhythm: judged with the later ones
            upto = t0 + 1e-9  # only the bursts before it
        rhythmic = strong = False
        if needs_rhythm:
            run = self._rhythm(ev.channel, t0, upto)
            rhythmic = run >= cfg.rhythm_min_bursts
            strong = run >= cfg.rhythm_min_bursts + 1
            if cyclic and not rhythmic:
                spans = [sp for sp in self._spans.get(ev.channel, []) if sp[0] < upto]
                rhythmic = phase_locked(spans, t0, period, cfg.phase_tolerance)
        context: ActivityKind = ACTIVITY_CODES[code]
        if code == REST and declared is not None:
            context = declared.kind
        elif code == REST and rhythmic and graded:
            context = "rhythmic_exercise"
        if clonic and active and not final and (emg_t < look or acc_t < t1):
            # during activity a "clonus" may be the movement's own burst (a gait burst or an
            # exercise repetition of few motor units whose envelope beats at clonus rates): the
            # bursts after it tell (the gait model's spans of other channels, and the channel's
            # own repetitions, are all closed ``rhythm_lookahead_s`` on), and the accelerometer
            # up to its end
            if emg_t < look + cfg.activity_max_wait_s:
                return None
        if clonic and cyclic and self._gait is not None:
            # during gait: the gait model knows the muscle's phase and burst length
            if self._gait.gait_burst(ev, t0, t1, period, self._spans):
                return True, context
        if clonic:
            # 3-8 Hz reflex oscillation: never a voluntary rhythm. Each beat is a reflex volley,
            # so clonus starts abruptly; during activity a "clonus" whose onset ramps like a
            # voluntary contraction is a graded contraction whose few recruited motor units
            # (and physiological tremor) modulate the envelope at clonus rates.
            # A "clonus" that is one of a run of its channel's repetitions of the movement, alike
            # in duration and strength (a stride's burst before the gait model has its template,
            # an exercise repetition), is that movement's burst: a clonus does not recur at the
            # movement's rhythm lasting as long as its bursts.
            # A ramped "clonus" is that graded contraction only while the movement goes on: one
            # that beats on after the limb has stopped moving smoothly (the last second of it
            # at rest or jerking on the accelerometer) outlasts the movement that ramped it up,
            # a clonus fused after a voluntary contraction (a sit-to-stand's quadriceps).
            ramped_clonus = ev.rise_s is not None and ev.rise_s >= cfg.voluntary_ramp_s
            if ramped_clonus and self._act is not None and declared is None:
                ramped_clonus = self._acc_context(t1 - 1.0, t1)[0] != REST
            return active and (ramped_clonus or self._repeated(ev, t0, t1)), context
        if cyclic:
            # A burst in no gait/pedal phase is a spasm, graded or not. An episode spanning
            # several cycles is the muscle following the cycle without falling silent between
            # bursts (their quiet gaps are shorter than ``quiet_s``), if the rhythm was already
            # under way before it began (a long spasm can shake the limb rhythmically itself).
            cycling_before = before in (WALKING, RHYTHMIC) and period > 0
            # ... unless the muscle had been falling silent once per cycle just before it and
            # then stayed on for several cycles: no longer following the cycle alone, a sustained
            # spasm under the movement's bursts (as for an envelope-cyclic episode above); only a
            # regular run of the channel's bursts, this one in it, still reads it as the movement's.
            # A muscle that still falls silent inside the episode once per cycle and starts its
            # next burst a whole number of cycles after the episode began (within
            # ``phase_tolerance``) is following the cycle all the same: its bursts merely came
            # closer than ``quiet_s`` (a brisk cadence, a flicker in a short silence) and merged;
            # the gait model does not read it as prolonged. A spasm under the bursts keeps the
            # muscle up; one fused after a gait burst starts out of the cycle.
            quiet = None if bank is None else bank.episodes.silences.pop(ev.key, None)
            cycle = self._own_cycle(ev.channel, t0) or period  # the muscle's own, else the limb's
            relaxes = (
                cycling_before
                and quiet is not None
                and t1 - t0 >= cycle
                and len(quiet) >= max(1, int((t1 - t0) / cycle) - 1)
                and all(self._on_cycle(r - t0, cycle) for _, r in quiet)
            )
            # its bursts, between the silences (the gait model checks each is a gait burst's length)
            parts = None
            if relaxes and quiet is not None:
                edges = [t0, *(x for q in quiet for x in q), t1]
                parts = list(zip(edges[::2], edges[1::2], strict=True))
            merged = relaxes or (
                cycling_before and t1 - t0 >= 1.5 * period and not self._fell_silent(ev.channel, t0, period)
            )
            # the other channels' bursts during it that ended a second before the decision at
            # the earliest (``rhythm_lookahead_s`` past the offset): known by then in any
            # chunking (an episode is reported ``quiet_s`` and a block after it ends)
            horizon = t1 + cfg.rhythm_lookahead_s - 1.0
            others = [p for p in self._peaks if p[1] < t1 and t0 < p[2] <= horizon]
            if self._gait is not None and self._gait.spasm(
                ev, t0, t1, period, self._spans, others, parts=parts
            ):
                return False, context  # in no gait phase of its muscle (detectors/gait_phase.py)
            # in its muscle's phase window, as long as its gait bursts, no cue: its gait burst
            # (the stride's rhythm may be broken around it: a change of pace, a stop)
            typical = self._gait is not None and self._gait.last_typical
            if (rhythmic or merged or typical) and self._spasm_after_bursts(ev, cycle, quiet):
                # the movement's bursts merged into one episode (their silences shorter than
                # ``quiet_s``), then a spasm far stronger than them, held for two cycles or more
                # without falling silent: its own part is a spasm (typed and dated by it)
                return False, context
            return rhythmic or merged or typical, context
        if active and not clonic and code != REST:
            # A burst that overpowers its channel's repetitions of the movement (a spasm fused
            # with one of them) is a spasm, graded or not: its neighbours are known
            # ``rhythm_lookahead_s`` on
            if not final and emg_t < look:
                self._nap(ev.key, emg=look, verdicts=read)
                return None
            if self._overpowers(ev, t0, t1):
                return False, context
        if code == TRANSITION:
            # The limb turns smoothly under gravity: a whole-body movement (standing up, a
            # transfer) with postural activity in many muscles. Only a strong burst that rises
            # abruptly stands out from it as a spasm; for a weak burst the rise time is not
            # measurable (it crosses the threshold near its top).
            strong_burst = ev.relative_amplitude >= 3.0 * cfg.on_ratio
            if rhythmic or graded or not strong_burst:
                return True, context
            # An abrupt rise measured on one muscle of a whole-body movement whose other muscles
            # ramp together (common drive: one descending command recruits the synergy, De Luca
            # & Erim 1994; the median rise over the synergy is a robust reading of it), or a
            # burst that repeats with the movement's repetitions, is the movement's.
            horizon = t1 + cfg.rhythm_lookahead_s - 1.0
            return self._graded_synergy(ev, t0, horizon) or self._repeated(ev, t0, t1), context
        if code == OTHER and synergy >= 2:
            # smooth movement and a burst in a multi-muscle synergy (the focal agonists and the
            # anticipatory postural muscles of a reach or a lift, Aruin & Latash 1995): voluntary,
            # whatever its rise time (a weak postural burst crosses the threshold near its top)
            return True, context
        if active:
            return rhythmic or graded or self._repeated(ev, t0, t1), context
        # at rest (no accelerometer evidence, nothing declared): only the EMG can tell; a
        # channel bursting regularly at a voluntary rhythm (gait starting before the
        # accelerometer window sees it, EMG-only devices) is voluntary
        if (strong or rhythmic) and not final and emg_t < look:
            self._nap(ev.key, emg=look, verdicts=read)  # its neighbours, for ``_overpowers``
            return None
        if (strong or rhythmic) and self._overpowers(ev, t0, t1):
            # on time for the rhythm, but far longer and stronger than the channel's bursts of
            # it: a spasm fused with one push or stride (as during activity, above)
            return False, context
        if strong or (rhythmic and graded):
            return True, context
        if rhythmic and self._alternates(ev.channel, t0, upto):
            # A run of bursts at a voluntary rhythm, each between two bursts of another muscle
            # that bursts at that rhythm too: agonist and antagonist alternating (reciprocal
            # inhibition), the push and recovery of wheelchair propulsion or a limb's cyclic
            # exercise seen by no accelerometer on that limb. A reflex spasm co-contracts the
            # two; only clonus alternates them, at 3-8 Hz, far faster than any voluntary rhythm.
            return True, "rhythmic_exercise"
        if t1 - t0 <= cfg.tonic_min_s and self._graded_synergy(ev, t0):
            # A reach or a lift seen by no accelerometer (one on another segment, or none): the
            # focal muscles and the anticipatory postural muscles start together (Aruin & Latash
            # 1995), each recruited gradually (Henneman), so the synergy as a whole ramps. A
            # bilateral reflex spasm recruits many muscles too, but abruptly (Hallett 1975).
            return True, "other_voluntary"
        return False, context

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("SpasmDetector: finish() was called; make a new detector for a new stream")

    def _make_bank(self, mains: int | None) -> None:
        self._bank = EmgBank(self.config, self.emg_rate_hz, self.channel_labels, mains, self.version)
        self._buf = np.empty((self._n_ch, self._bank.block))

    def _release_pre(self, out: list[DetectorOutput]) -> None:
        """Decide the mains frequency on the held-back EMG, then process it."""
        data = np.concatenate(self._pre) if self._pre else np.zeros((0, self._n_ch))
        self._pre = []
        self._pre_n = 0
        self._make_bank(
            detect_mains(data[: self._detect_n], self.emg_rate_hz, self.config.mains_detect_ratio)
        )
        if data.shape[0]:
            self._buf_start = self._pre_start
            self._push(self._pre_start, data, out)

    def _push(self, start: int, x: np.ndarray, out: list[DetectorOutput]) -> None:
        """Cut samples into the bank's fixed blocks (channel-major copies the bank may overwrite)."""
        bank = self._bank
        buf = self._buf
        assert bank is not None and buf is not None
        b = bank.block
        n = x.shape[0]
        i = 0
        if self._buf_n:
            take = min(b - self._buf_n, n)
            buf[:, self._buf_n : self._buf_n + take] = x[:take].T
            self._buf_n += take
            i = take
            if self._buf_n == b:
                bank.process_block(self._buf_start, buf, out)
                self._buf_n = 0
                self._buf_start += b
        whole = (n - i) // b * b
        if whole == b:
            bank.process_block(start + i, np.array(x[i : i + b].T, order="C"), out)
        elif whole:  # many blocks at once (offline, a long chunk): the bank's vectorised path
            bank.process_blocks(start + i, np.array(x[i : i + whole].T, order="C"), out)
        i += whole
        if whole:
            self._buf_start = start + i
        if i < n:
            if self._buf_n == 0:
                self._buf_start = start + i
            buf[:, self._buf_n : self._buf_n + n - i] = x[i:].T
            self._buf_n += n - i

    def _emg_gap(self, at: int, out: list[DetectorOutput]) -> None:
        """Flush the partial block, close open episodes at ``at`` and restart the filters."""
        if self._bank is None:
            if self._pre_n == 0 and self._emg_next is None:
                return
            self._release_pre(out)
        bank = self._bank
        assert bank is not None and self._buf is not None
        if self._buf_n:
            bank.process_block(self._buf_start, np.array(self._buf[:, : self._buf_n], order="C"), out)
            self._buf_n = 0
        bank.close_all(at, out, truncated=True)
        bank.reset_filters()
        bank.processed_until = max(bank.processed_until, at)

    def _acc_gap(self, at: int, out: list[DetectorOutput]) -> None:
        assert self._tremor is not None
        self._flush_acc(out)
        if self._act is not None and self._periods is not None:
            self._act.reset()
            self._period_output(self._periods.close(at), out)
        done = self._tremor.close(at)
        self._tremor_outputs([], done, out)
        if self._current_tremor is not None and not done:
            self._current_tremor = None

    def _tremor_outputs(
        self, confirms: list[tuple[int, int]], done: list[TremorResult], out: list[DetectorOutput]
    ) -> None:
        """Queue tremor notices; they are released once the EMG tells whether it was weak."""
        assert self.acc_rate_hz is not None
        rate = self.acc_rate_hz
        # An episode's end is matched by its onset to the episode open before this call or to
        # one confirmed in it (a chunk holding a whole episode, an offline block, does both).
        candidates = [] if self._current_tremor is None else [self._current_tremor]
        for onset, confirm_end in confirms:
            p = _PendingTremor(onset=onset, confirm_t=confirm_end / rate)
            self._pending.append(p)
            candidates.append(p)
            self._current_tremor = p
        for res in done:
            for p in candidates:
                if p.onset == res.onset:
                    p.result = res
                    if self._current_tremor is p:
                        self._current_tremor = None
                    break

    def _release_tremor(self, out: list[DetectorOutput], final: bool) -> None:
        if not self._pending:
            return
        assert self.acc_rate_hz is not None
        bank = self._bank
        emg_t = -1.0 if bank is None else bank.processed_until / self.emg_rate_hz
        if self.acc_only:
            emg_t = math.inf  # no EMG to wait for, and none to veto a tremor
        keep: list[_PendingTremor] = []
        for p in self._pending:
            if not p.decided and (final or emg_t >= p.confirm_t + _EMG_MARGIN_S):
                p.decided = True
                t0 = p.onset / self.acc_rate_hz
                spans = [] if bank is None else bank.active_spans
                p.suppressed = any(a < p.confirm_t and b > t0 for a, b in spans)
                if not p.suppressed:
                    out.append(
                        Onset(
                            key=self._tremor_key(p.onset),
                            channel=ACC_CHANNEL,
                            domain="acc",
                            onset_sample=p.onset,
                            amplitude_uv=0.0,
                            baseline_uv=0.0,
                        )
                    )
            if p.decided and p.result is not None:
                if not p.suppressed:
                    out.append(self._tremor_event(p.result))
                continue
            if p.decided and p is not self._current_tremor and p.result is None:
                continue  # closed without a result (cannot happen for confirmed ones)
            keep.append(p)
        self._pending = keep

    def _tremor_key(self, onset: int) -> str:
        return f"{ACC_CHANNEL}:acc:{onset}"

    def _tremor_event(self, r: TremorResult) -> SpasmEvent:
        assert self.acc_rate_hz is not None
        return SpasmEvent(
            key=self._tremor_key(r.onset),
            type="tremor",
            channel=ACC_CHANNEL,
            domain="acc",
            onset_sample=r.onset,
            offset_sample=r.offset,
            rate_hz=self.acc_rate_hz,
            peak_uv=0.0,
            mean_uv=0.0,
            baseline_uv=0.0,
            relative_amplitude=0.0,
            frequency_hz=r.frequency_hz,
            confidence=r.confidence,
            detector_version=self.version,
            config_hash=self.config_hash,
        )


def feed_interleaved(
    det: SpasmDetector,
    emg: np.ndarray,
    acc: np.ndarray | None,
    emg_rate_hz: float,
    acc_rate_hz: float | None,
    chunk_s: float = 0.05,
) -> list[DetectorOutput]:
    """Stream whole arrays through ``det`` in ``chunk_s`` chunks, EMG and accelerometer interleaved
    as a device would deliver them, then ``finish``. For benchmarks, tests and offline scoring."""
    es = max(1, int(chunk_s * emg_rate_hz))
    as_ = max(1, int(chunk_s * acc_rate_hz)) if acc is not None and acc_rate_hz else 0
    n_acc = acc.shape[0] if acc is not None and as_ else 0
    out: list[DetectorOutput] = []
    i = j = 0
    while i < emg.shape[0] or j < n_acc:
        if i < emg.shape[0]:
            out += det.feed_emg(i, emg[i : i + es])
            i += es
        if j < n_acc:
            assert acc is not None and acc_rate_hz
            # keep the two streams level in time (chunk lengths in samples are rounded)
            upto = n_acc if i >= emg.shape[0] else max(j + 1, round(i * acc_rate_hz / emg_rate_hz))
            out += det.feed_acc(j, acc[j:upto])
            j = upto
    return out + det.finish()
