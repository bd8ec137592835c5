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

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from detectors.config import DetectorConfig
from detectors.emg import EmgBank, detect_mains
from detectors.events import DetectorOutput, Onset, SpasmEvent
from detectors.limits import stream_problem
from detectors.tremor import TremorResult, TremorTracker

__version__ = "1.0.0"
ACC_CHANNEL = "ACC"
#: Margin past a tremor's confirmation the EMG must have reached (an EMG onset is confirmed
#: ``confirm_s`` after it crosses, plus one block of buffering).
_EMG_MARGIN_S = 0.2


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
        self._acc_pending_n = 0
        self._acc_pending_start = 0
        self._pending: list[_PendingTremor] = []
        self._current_tremor: _PendingTremor | None = None
        self._finished = False

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
        self._release_tremor(out, final=False)
        return out

    def feed_acc(self, start: int, samples: np.ndarray) -> list[DetectorOutput]:
        """Accelerometer samples (n, 3) in g; ``start`` is the counter of ``samples[0]``."""
        self._check_open()
        if self._tremor is None:
            raise ValueError("feed_acc: this detector was built without an accelerometer (acc_rate_hz=None)")
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"feed_acc: samples must have shape (n, 3), got {x.shape}")
        out: list[DetectorOutput] = []
        if self._acc_next is not None and start != self._acc_next:
            if start < self._acc_next:
                raise ValueError(
                    f"feed_acc: start {start} goes back before the next expected sample {self._acc_next}"
                )
            self._acc_gap(self._acc_next, out)
        self._acc_next = start + x.shape[0]
        if x.shape[0] == 0:
            return out
        if not math.isfinite(float(x.sum())):
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        # The tracker only acts at hop boundaries: hand it whole hops (fewer calls, same result).
        if not self._acc_pending:
            self._acc_pending_start = start
        self._acc_pending.append(x)
        self._acc_pending_n += x.shape[0]
        if self._acc_pending_n >= self._tremor.hop:
            self._flush_acc(out)
        self._release_tremor(out, final=False)
        return out

    def _flush_acc(self, out: list[DetectorOutput]) -> None:
        if not self._acc_pending:
            return
        assert self._tremor is not None
        x = self._acc_pending[0] if len(self._acc_pending) == 1 else np.concatenate(self._acc_pending)
        self._acc_pending = []
        self._acc_pending_n = 0
        confirms, done = self._tremor.feed(self._acc_pending_start, x)
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
        elif domain == "acc":
            if self._tremor is None:
                raise ValueError("gap: domain 'acc' but this detector has no accelerometer")
            self._acc_gap(start, out)
            self._acc_next = start + n_missing
        else:
            raise ValueError(f"gap: domain must be 'emg' or 'acc', got {domain!r}")
        self._release_tremor(out, final=False)
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
        self._finished = True
        return out

    # ------------------------------------------------------------------------------ internals
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
        self._make_bank(detect_mains(data[: self._detect_n], self.emg_rate_hz))
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
        while n - i >= b:
            bank.process_block(start + i, np.array(x[i : i + b].T, order="C"), out)
            i += b
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
        for res in done:
            cur = self._current_tremor
            if cur is not None and cur.onset == res.onset:
                cur.result = res
                self._current_tremor = None
        for onset, confirm_end in confirms:
            p = _PendingTremor(onset=onset, confirm_t=confirm_end / rate)
            self._pending.append(p)
            self._current_tremor = p

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
            assert acc is not None
            out += det.feed_acc(j, acc[j : j + as_])
            j += as_
    return out + det.finish()
