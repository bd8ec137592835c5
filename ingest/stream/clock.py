"""Device sample counter -> UTC, fitted online from frame arrival times.

A frame leaves the device right after its last sample was converted and then waits a variable
time (USB polling, BLE connection events, OS scheduling) before the gateway stamps it. That delay
is never negative, so the *earliest* arrivals for a given counter lie closest to the truth: the
model keeps, per window of device time, the arrival with the smallest lag and fits a line
(offset and drift) through those lower-envelope points. Bursty BLE arrival and outliers only
ever make arrivals late, so they never pull the fit.

The mapping is monotonic: once a timestamp has been handed out for a counter, a later refit may
not move later counters before it. After a device reboot the counter restarts and the model is
re-seeded from the new arrivals (``reset``); across a reconnect of the same boot it is kept, so
timestamps stay continuous.

The host's wall clock can step (a Raspberry Pi without a real-time clock boots with a wrong time
and steps when NTP syncs; an operator sets the clock; a glitch returns 1970 for a moment). Arrival
times are therefore taken from the host's *monotonic* clock plus a separately tracked wall-clock
offset (``HostClock``): a step of the wall clock changes the offset, is confirmed for a couple of
seconds (a single garbage reading is ignored), and then re-anchors the model (``shift``) without
moving any timestamp already handed out. While a step is unconfirmed, or the wall clock reads an
implausible time, ``HostClock.quality`` says "unsynchronised" and events carry that flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["MAX_SLEW", "ClockModel", "ClockQuality", "HostClock"]

#: Envelope points the line is fitted through (older history is thinned to this many).
FIT_POINTS = 100
#: Largest fraction by which sample spacing is shortened to catch up with a refitted line.
MAX_SLEW = 0.5


@dataclass(frozen=True, slots=True)
class ClockQuality:
    """How much to trust the timestamps: spread of the envelope points around the fit."""

    points: int
    drift_ppm: float  # device crystal error: positive when the device counts faster than nominal
    residual_ms: float  # robust spread (1.4826 * MAD) of envelope points around the fitted line


class _Monotonic:
    """What keeps handed-out timestamps monotonic for one stream: where the last block ended."""

    def __init__(self) -> None:
        self.last_counter: int | None = None
        self.last_t = -np.inf

    def place(self, first_counter: int, n: int, t0: float, dt: float) -> tuple[float, float]:
        """Start and spacing for a block fitted at ``(t0, dt)``, never before what was published:
        a block the fit puts too early starts where the last one ended and is slewed (spaced up
        to ``MAX_SLEW`` closer) back onto the line."""
        if self.last_counter is not None and first_counter >= self.last_counter:
            floor = self.last_t + (first_counter - self.last_counter) * dt
            if t0 < floor:
                fitted_end = t0 + n * dt
                t0 = floor
                dt = max((fitted_end - t0) / n, dt * (1.0 - MAX_SLEW)) if n else dt
        self.last_counter = first_counter + n
        self.last_t = t0 + n * dt
        return t0, dt


class ClockModel:
    """Online fit of ``t_utc = a + counter / rate * (1 + drift)``.

    Parameters:
        rate_hz: nominal sample rate of the counter.
        window_s: device-time width of a window contributing one lower-envelope point. Longer
            windows see more arrivals and so find a smaller lag; shorter ones learn the drift
            sooner. 1 s suits BLE and USB (tens of frames per window).
        history: how many windows the fit uses; with 1 s windows, 600 cover 10 minutes, long
            enough to see crystal drift of a few ppm and short enough to follow temperature.
    """

    def __init__(self, rate_hz: float, *, window_s: float = 1.0, history: int = 600) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.window = max(1, round(window_s * rate_hz))
        self.history = history
        self.reset()

    def reset(self) -> None:
        """Forget everything (device reboot: the counter has restarted)."""
        #: Lower-envelope points (counter, arrival), oldest first, at most ``history`` of them: kept
        #: as the array the fit reads, so a refit does not convert the whole history again.
        self._points = np.empty((0, 2))
        self._cur_win: int | None = None
        self._cur_best: tuple[int, float] | None = None
        self._base_counter: int | None = None
        self._a = 0.0
        self._b = 1.0 / self.rate_hz
        self._fitted = False
        self._mono = _Monotonic()

    @property
    def seeded(self) -> bool:
        """At least one arrival has been observed."""
        return self._base_counter is not None

    @property
    def period_s(self) -> float:
        """Fitted seconds per sample (nominal until the first fit)."""
        return self._b

    def observe(self, counter_end: int, t_host: float) -> None:
        """One arrival: the sample with counter ``counter_end`` (exclusive end) arrived at ``t_host``.

        ``counter_end`` is the counter one past the last sample of the frame, i.e. the moment the
        frame was complete on the device.
        """
        if self._base_counter is None:
            self._base_counter = counter_end
        x = counter_end - self._base_counter
        lag = t_host - x / self.rate_hz
        win = x // self.window
        if self._cur_win is None or win != self._cur_win:
            if self._cur_best is not None:
                self._points = _appended(self._points, self._cur_best, self.history)
                self._refit()
            self._cur_win = win
            self._cur_best = (x, t_host)
        else:
            assert self._cur_best is not None
            best_x, best_t = self._cur_best
            if lag < best_t - best_x / self.rate_hz:
                self._cur_best = (x, t_host)
        if not self._fitted:
            # Before the first window closes: offset from the best arrival so far, nominal rate.
            bx, bt = self._cur_best
            self._a = bt - bx / self.rate_hz
            self._b = 1.0 / self.rate_hz

    def _refit(self) -> None:
        pts = self._points
        if len(pts) > FIT_POINTS:
            # Theil-Sen is O(n^2): fit the earliest arrival of each of FIT_POINTS groups instead,
            # which is the same lower envelope at a coarser step (0.5 ms per refit, not 20).
            lag = pts[:, 1] - pts[:, 0] / self.rate_hz
            pts = pts[_group_argmin(lag, FIT_POINTS)]
        x, t = pts[:, 0], pts[:, 1]
        if len(pts) >= 3 and x[-1] - x[0] >= 2 * self.window:
            # Theil-Sen slope over the lower-envelope points: robust to a few windows where every
            # arrival was late (a BLE stall), unlike least squares.
            slope = _theil_sen_slope(x, t)
            nominal = 1.0 / self.rate_hz
            if abs(slope / nominal - 1.0) > 0.01:  # > 1 % off is not a crystal: keep nominal
                slope = nominal
            b = slope
        else:
            b = 1.0 / self.rate_hz
        # Offset: the line must lie at or under the envelope points (lag is never negative), so
        # take a low quantile of their residuals rather than the mean.
        resid = t - b * x
        a = float(np.quantile(resid, 0.1)) if len(resid) >= 5 else float(resid.min())
        self._a, self._b, self._fitted = a, b, True

    def shift(self, delta_s: float) -> None:
        """Re-anchor: the host clock stepped by ``delta_s``; timestamps from now on move with it.

        What was handed out stays as it was (it is published); the monotonic guard is moved too,
        so a backward step is taken at once instead of being slewed for an hour."""
        self._a += delta_s
        self._points = self._points + np.array([0.0, delta_s])
        if self._cur_best is not None:
            self._cur_best = (self._cur_best[0], self._cur_best[1] + delta_s)
        self._mono.last_t += delta_s

    def to_utc(self, counter: int | np.ndarray) -> np.ndarray | float:
        """UTC seconds of the given counter(s); not forced monotonic (see ``block_times``)."""
        base = self._base_counter or 0
        return self._a + (np.asarray(counter, dtype=np.float64) - base) * self._b

    def block_start(self, first_counter: int, n: int) -> tuple[float, float]:
        """Start time and sample period for a block of ``n`` samples, kept monotonic.

        Returns ``(t0, dt)`` so sample i of the block is at ``t0 + i * dt``. When a refit moves the
        line earlier than timestamps already handed out, the block starts where the last one
        ended and its samples are slewed (spaced at most ``MAX_SLEW`` closer than nominal) until
        they are back on the line: time never runs backwards and an early error is not locked in.
        """
        return self._mono.place(first_counter, n, float(self.to_utc(first_counter)), self._b)

    def quality(self) -> ClockQuality:
        pts = self._points
        if len(pts) < 3:
            return ClockQuality(len(pts), 0.0, float("nan"))
        x, t = pts[:, 0], pts[:, 1]
        resid = t - (self._a + self._b * x)
        mad = float(np.median(np.abs(resid - np.median(resid))))
        return ClockQuality(len(pts), (1.0 / (self._b * self.rate_hz) - 1.0) * 1e6, 1.4826 * mad * 1e3)


def _group_argmin(values: np.ndarray, groups: int) -> np.ndarray:
    """Index of the smallest value (the first, on ties) in each of ``groups`` consecutive groups
    split as ``np.array_split`` does (the first ``len % groups`` one longer), without a Python
    loop over the groups: each run of equal-length groups is one reshaped ``argmin``."""
    n = len(values)
    size, extra = divmod(n, groups)
    long_end = extra * (size + 1)
    first = values[:long_end].reshape(extra, size + 1).argmin(axis=1) + np.arange(0, long_end, size + 1)
    rest = values[long_end:].reshape(groups - extra, size).argmin(axis=1) + np.arange(long_end, n, size)
    return np.concatenate([first, rest])


def _appended(points: np.ndarray, point: tuple[int, float], keep: int) -> np.ndarray:
    """``points`` with ``point`` added at the end, only the newest ``keep`` rows kept."""
    out = np.concatenate((points, np.array([point], dtype=np.float64)))
    return out[len(out) - keep :] if len(out) > keep else out


@lru_cache(maxsize=8)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j of n points (read-only, shared between refits)."""
    i, j = np.triu_indices(n, 1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def _theil_sen_slope(x: np.ndarray, t: np.ndarray) -> float:
    """Median of pairwise slopes: the slope of ``scipy.stats.theilslopes(t, x)``, bit for bit,
    without its confidence interval (a normal quantile and repeat counting that cost several
    times the slope). SciPy takes every ordered pair with ``x_i > x_j``; each unordered pair gives
    the same quotient either way round (``(-a) / (-b) == a / b`` exactly in IEEE arithmetic), so
    the pairs i < j with ``x_i != x_j`` are the same multiset of slopes, and a median does not
    depend on their order."""
    i, j = _pairs(len(x))
    dx = x[j] - x[i]
    dt = t[j] - t[i]
    distinct = dx != 0
    return float(np.median(dt[distinct] / dx[distinct]))


class DerivedClock:
    """Time for a second sample stream of the same device, from the first stream's clock model.

    The protocol counts EMG and accelerometer samples from the same instant on the same crystal,
    so accelerometer sample k is EMG sample k * emg_rate / acc_rate. A slow stream (an
    accelerometer frame every 0.4-1.5 s) has too few arrivals to fit a clock of its own; borrowing
    the EMG clock gives it the EMG's accuracy. Monotonic per stream, like ``ClockModel``.
    """

    def __init__(self, base: ClockModel, rate_hz: float) -> None:
        self.base = base
        self.rate_hz = float(rate_hz)
        self.ratio = base.rate_hz / self.rate_hz
        self._mono = _Monotonic()

    def observe(self, counter_end: int, t_host: float) -> None:
        """Arrivals of the slow stream add nothing the base clock does not already know, except
        when they come first (the first EMG frames were lost): then they seed it."""
        if not self.base.seeded:
            self.base.observe(round(counter_end * self.ratio), t_host)

    def reset(self) -> None:
        self._mono = _Monotonic()

    def shift(self, delta_s: float) -> None:
        """Re-anchor this stream's monotonic guard (the base clock is shifted on its own)."""
        self._mono.last_t += delta_s

    def to_utc(self, counter: int | np.ndarray) -> np.ndarray | float:
        return self.base.to_utc(np.asarray(counter, dtype=np.float64) * self.ratio)

    def block_start(self, first_counter: int, n: int) -> tuple[float, float]:
        t0 = float(self.to_utc(first_counter))
        return self._mono.place(first_counter, n, t0, self.base.period_s * self.ratio)

    def quality(self) -> ClockQuality:
        return self.base.quality()


#: Wall-clock times before this (2020-01-01) are not a synchronised clock: a Pi without RTC, 1970.
PLAUSIBLE_AFTER = 1_577_836_800.0


class HostClock:
    """Host arrival times without wall-clock steps: ``monotonic + offset``, the offset tracked.

    ``t_wall - t_mono`` read at the same moment has no arrival jitter at all, only NTP's slew (ppm)
    and steps. A change beyond ``step_s`` is a step candidate; once candidates agreeing with each
    other have held for ``confirm_s`` of monotonic time, the offset is re-anchored and ``observe``
    returns the step, for the caller to ``shift`` its clock models. A single garbage reading (a
    1970 time, a spike) never holds that long and is ignored.
    """

    def __init__(self, *, step_s: float = 0.2, confirm_s: float = 2.0) -> None:
        self.step_s = step_s
        self.confirm_s = confirm_s
        self.offset: float | None = None
        self.steps = 0
        self.ignored = 0  # readings that deviated and never held (garbage, spikes)
        self._cand: list[tuple[float, float]] = []

    _no_mono = False

    @property
    def synchronised(self) -> bool:
        if self._no_mono:
            return True
        return self.offset is not None and not self._cand

    @property
    def quality(self) -> str | None:
        """None when timestamps can be trusted, else "unsynchronised"."""
        return None if self.synchronised and not self._implausible else "unsynchronised"

    _implausible = False

    def observe(self, t_wall: float, t_mono: float | None) -> tuple[float, float]:
        """Arrival time to use for a reading, and the step re-anchored now (0.0 if none)."""
        if t_mono is None:
            # No monotonic time (a v1 capture, a file): the wall time as before, flagged only
            # when it is implausible.
            self._no_mono = True
            self._implausible = t_wall < PLAUSIBLE_AFTER
            return t_wall, 0.0
        off = t_wall - t_mono
        if self.offset is None:
            self.offset = off
            self._implausible = t_wall < PLAUSIBLE_AFTER
            return t_wall, 0.0
        dev = off - self.offset
        if abs(dev) <= self.step_s:
            self.offset += dev  # NTP's slew: follow it exactly
            if self._cand:
                self.ignored += len(self._cand)
                self._cand.clear()
            return t_mono + self.offset, 0.0
        if self._implausible is False and t_wall < PLAUSIBLE_AFTER:
            self.ignored += 1  # a garbage reading of an otherwise good clock: never a candidate
            return t_mono + self.offset, 0.0
        if self._cand and abs(off - self._cand[-1][1]) > self.step_s:
            self.ignored += len(self._cand)
            self._cand.clear()
        self._cand.append((t_mono, off))
        if t_mono - self._cand[0][0] < self.confirm_s:
            return t_mono + self.offset, 0.0
        new = float(np.median([o for _, o in self._cand]))
        delta = new - self.offset
        self.offset = new
        self._cand.clear()
        self.steps += 1
        self._implausible = t_mono + new < PLAUSIBLE_AFTER
        return t_mono + self.offset, delta
