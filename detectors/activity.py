"""Activity context: is the wearer at rest, or moving on purpose? (issue 9)

Two sources of evidence, both causal and chunk-invariant:

* **The accelerometer** (``AccActivityTracker``), one verdict per ``activity_hop_s`` hop laid from
  the start of each contiguous segment. Raw samples are averaged into 50 ms blocks (20 Hz); over
  the last ``activity_window_s`` it measures:

  - *gravity tilt*: the angle between the mean acceleration of the last half second and of the
    half second a second before (the limb turning now), counted only when the movement is
    smooth. Standing up, sitting down, a transfer or a lift rotate the limb and so the gravity
    vector by tens of degrees smoothly; a spasm jerks the limb back and forth (Granat & Edmond
    1999 told spasms from transfers and wheelchair movement with accelerometry alone).
  - *movement*: RMS of the block means around their own mean, over the last second.
  - *rhythm*: the normalised autocorrelation of the 3 Hz low-passed movement at lags of
    0.4-2 s (step, stride, pedal or push rhythm, 0.5-2.5 Hz), with movement in both halves of
    the window, and at least ``activity_rhythm_band_share`` of the movement's power inside
    0.4-2.5 Hz. The low-pass only attenuates clonus (4-8 Hz) and tremor (3-12 Hz): what is left
    of them repeats at two or three of their periods inside the lags as well as a stride does
    at one, so it is their spectrum, almost all above 2.5 Hz, that keeps a shaking limb from
    being "rhythmic exercise" (or, with 0.5 g of shaking, "walking").
  - *heel strikes*: the largest raw deviation from gravity in the window; impacts of 0.5 g and
    more mark walking among rhythmic activities.
  - *smoothness*: the RMS frequency of the last second's movement (RMS of its derivative over
    2 pi times its RMS). Purposeful movement follows minimum-jerk paths (Flash & Hogan 1985) with an RMS
    frequency below ~2 Hz; the jerk of a spasm has most of its power above that.

  Rhythm is tested before the tilt: a limb swinging at the stride turns gravity by tens of
  degrees every half cycle wherever the sensor sits (thigh, shank), which is gait, not a posture
  transition; while gravity turns, the rhythm must be a local peak of the autocorrelation (a
  slow smooth rotation correlates highly at the shortest lags only because it is slow).

  The hop verdict is one of ``rest``, ``posture_transition``, ``walking``, ``rhythmic_exercise``,
  ``other_voluntary``. Debounced verdicts become activity periods (``ActivityChange`` when one
  starts, ``ActivitySpan`` when it ends).

* **The EMG pattern** (used by ``SpasmDetector``): recurrence of one channel's bursts at a
  voluntary rhythm (0.4-2.5 s intervals, regular within 25 %), and the burst's rise time
  (recruitment-graded voluntary force ramps over hundreds of milliseconds).

Latency: a hop verdict covers acceleration up to the hop's end, so the context of an instant is
known ``activity_hop_s`` after it; the detector waits for it (see ``SpasmDetector``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import designs
from detectors.config import DetectorConfig
from detectors.events import ActivityKind
from detectors.sos import filter_inplace

#: Verdict codes (index into ACTIVITY_CODES).
REST, TRANSITION, WALKING, RHYTHMIC, OTHER = 0, 1, 2, 3, 4
ACTIVITY_CODES: tuple[ActivityKind, ...] = (
    "rest",
    "posture_transition",
    "walking",
    "rhythmic_exercise",
    "other_voluntary",
)
_BLOCK_S = 0.05  # averaging block of the movement signals (20 Hz)
#: ``ndarray.mean`` is this reduction divided by the count (the same bits, without its wrapper)
_add = np.add.reduce


@dataclass(slots=True)
class _Period:
    start: int  # acc sample where the period started
    counts: list[int]  # hop verdicts per kind while it lasts
    last_active: int  # end sample of the last non-rest hop


class AccActivityTracker:
    """Accelerometer activity verdicts, one per hop; ``feed`` returns finished hops and periods."""

    def __init__(self, cfg: DetectorConfig, rate_hz: float) -> None:
        self.cfg = cfg
        self.rate = float(rate_hz)
        self.blk = max(1, round(_BLOCK_S * rate_hz))
        self.blk_rate = rate_hz / self.blk
        self.hop_blocks = max(1, round(cfg.activity_hop_s * self.blk_rate))
        self.hop = self.hop_blocks * self.blk
        self.win_blocks = max(8, round(cfg.activity_window_s * self.blk_rate))
        cutoff = min(3.0, 0.4 * self.blk_rate)
        self.sos = designs.butter_sos(2, cutoff, "lowpass", self.blk_rate)
        self.zi0 = designs.sosfilt_zi(self.sos)
        self.lag_lo = max(1, math.floor(0.4 * self.blk_rate))
        self.lag_hi = min(self.win_blocks // 2, math.ceil(2.0 * self.blk_rate))
        self.one_s = max(1, round(1.0 * self.blk_rate))
        self.half = max(1, self.one_s // 2)
        self.enter_hops = max(1, round(cfg.activity_enter_s / (self.hop / self.rate)))
        self.exit_hops = max(1, round(cfg.activity_exit_s / (self.hop / self.rate)))
        self.min_ms = cfg.activity_min_rms_g**2  # mean square movement of an active limb (g^2)
        #: window length (blocks) -> (Hann taper, voluntary-band mask, above-band mask) for ``_in_band``
        self._bands: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # The block means and their low-passed copy live in two preallocated buffers; the window
        # is the view of their last ``win_blocks`` rows (newest last). Twice the window plus a
        # hop, so moving the window back to the start when the end is reached never overlaps.
        self._cap = 2 * (self.win_blocks + self.hop_blocks)
        self._raw = np.zeros((self._cap, 3))
        self._lpb = np.zeros((self._cap, 3))
        self.reset()

    def reset(self) -> None:
        """A gap: start a new segment (windows restart empty)."""
        self.pending: list[np.ndarray] = []
        self.pending_n = 0
        self.pending_start = 0
        self._end = 0  # rows of the buffers in use end here
        self._k = 0  # rows in the window (<= win_blocks)
        #: the window's hops for the heel-strike test: [samples, block means, None] until the
        #: hop's peak deviation from gravity is needed, then [None, None, peak in g]
        self._hops: deque[list[Any]] = deque(maxlen=max(1, self.win_blocks // self.hop_blocks))
        self.zi: np.ndarray | None = None
        self.run_kind = REST
        self.run_len = 0

    @property
    def raw_means(self) -> np.ndarray:
        """Block means of the window (k, 3), newest last (a view)."""
        return self._raw[self._end - self._k : self._end]

    @property
    def lp(self) -> np.ndarray:
        """The window's block means low-passed at 3 Hz (k, 3), newest last (a view)."""
        return self._lpb[self._end - self._k : self._end]

    # ------------------------------------------------------------------------------------ API
    def feed(self, start: int, x: np.ndarray) -> list[tuple[int, int, int, float]]:
        """Samples (n, 3) in g from counter ``start`` (contiguous with the previous call unless
        ``reset``). Returns one (hop_start, hop_end, verdict, period_s) per completed hop, where
        ``period_s`` is the rhythm's period for rhythmic verdicts (else 0). A hop is analysed as
        soon as its last sample arrives."""
        if not self.pending:
            self.pending_start = start
        self.pending.append(x)
        self.pending_n += x.shape[0]
        h = self.hop
        if self.pending_n < h:
            return []
        # Hops are kept for a later peak: a small concatenation is ours to keep, the caller's array
        # (a single pending chunk) may be reused by the caller, a big one is not worth keeping.
        buf = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        owned = len(self.pending) > 1 and buf.shape[0] < 2 * h
        out: list[tuple[int, int, int, float]] = []
        i = 0
        n = buf.shape[0]
        while n - i >= h:
            s0 = self.pending_start + i
            out.append((s0, s0 + h, *self._hop(buf[i : i + h], owned)))
            i += h
        self.pending = [buf[i:]] if i < n else []
        self.pending_n = n - i
        self.pending_start += i
        return out

    # ------------------------------------------------------------------------------ internals
    def _hop(self, x: np.ndarray, owned: bool = False) -> tuple[int, float]:
        # Cost matters (one call per hop per device, mostly at rest): means are ``_add`` divided
        # by the count, and the peak deviation of each hop is computed only when a rhythm verdict
        # needs it. Every value is computed as before, by the same numpy operations.
        cfg = self.cfg
        add = _add
        hb = self.hop_blocks
        means = add(x.reshape(hb, self.blk, 3), axis=1) / self.blk  # (blocks, 3)
        lp = means.T.copy()  # (3, blocks), filtered in place
        if self.zi is None:
            self.zi = np.ascontiguousarray(self.zi0[None, :, :] * lp[:, :1, None])  # (3, sections, 2)
        filter_inplace(self.sos, lp, self.zi)
        e = self._end
        if e + hb > self._cap:  # back to the start of the buffers with the window's rows
            m = self._k
            self._raw[:m] = self._raw[e - m : e]
            self._lpb[:m] = self._lpb[e - m : e]
            e = m
        self._raw[e : e + hb] = means
        self._lpb[e : e + hb] = lp.T
        e += hb
        self._end = e
        k = self._k + hb
        if k > self.win_blocks:
            k = self.win_blocks
        self._k = k
        self._hops.append([x if owned else x.copy(), means, None])
        w = self._raw[e - k : e]
        if k < self.win_blocks // 2:
            return REST, 0.0  # not enough history yet (start of a segment)
        # gravity turning now: the mean of the last half second against that of a second before
        half = self.half
        if k >= 3 * half:  # both half seconds summed by one call: [old, between, recent]
            sums = add(w[k - 3 * half :].reshape(3, half, 3), axis=1) / half
            recent, old = sums[2], sums[0]
        else:  # a short window (a low rate, or the minimum window early in a segment)
            sl = w[-half:]
            recent = add(sl, axis=0) / sl.shape[0]
            sl = w[k - 3 * half : k - 2 * half]
            # No half second "a second before" yet (the minimum window, early in a segment):
            # no tilt can be measured, so none is claimed (and no mean of an empty slice).
            old = add(sl, axis=0) / sl.shape[0] if sl.shape[0] else recent
        # movement over the last second (the context of *now*)
        r = w[-2 * half :]
        nr = r.shape[0]
        dr = r - add(r, axis=0) / nr
        ms_now = float(np.einsum("ij,ij->", dr, dr)) / nr
        min_ms = self.min_ms
        # (``a.dot(b)``: the ``a @ b`` of two vectors, the same BLAS dot, without the matmul ufunc's setup)
        dot = recent.dot
        cosang = float(dot(old)) / max(math.sqrt(float(dot(recent)) * float(old.dot(old))), 1e-12)
        cosang = cosang if cosang < 1.0 else 1.0  # (as min/max would, NaN included)
        tilt = math.degrees(math.acos(cosang if cosang > -1.0 else -1.0))
        if ms_now < 0.25 * min_ms and tilt < cfg.activity_tilt_deg:
            return REST, 0.0  # still: the common case, decided cheaply
        jerk = np.diff(r, axis=0)
        ms_jerk = float(np.einsum("ij,ij->", jerk, jerk)) / jerk.shape[0]
        f_rms = math.sqrt(ms_jerk / max(ms_now, 1e-18)) * self.blk_rate / (2 * math.pi)
        smooth = f_rms <= cfg.activity_smooth_hz
        turning = tilt >= cfg.activity_tilt_deg and smooth
        rhythm = self._rhythm(w, e, k, periodic=turning)
        if rhythm is not None:
            # A limb that swings back and forth at the stride (or pedal) rate turns gravity by
            # tens of degrees every half cycle, whatever segment the sensor sits on (the thigh
            # swings through ~40 deg of hip flexion-extension per stride, the shank more; Winter
            # 1991): a rhythm, not a posture transition, which turns gravity once and stays.
            # While gravity turns, the rhythm must be a true periodicity (a local peak of the
            # autocorrelation): a slow smooth rotation (standing up, a 3-4 s exercise
            # repetition) correlates highly at the shortest lags only because it is slow.
            return rhythm
        if turning:
            return TRANSITION, 0.0
        if ms_now >= min_ms and smooth:
            return OTHER, 0.0
        return REST, 0.0  # still, or jerky movement: what a spasm does to a limb

    def _rhythm(self, w: np.ndarray, e: int, k: int, periodic: bool) -> tuple[int, float] | None:
        """(WALKING or RHYTHMIC, period s) when the window's movement repeats at a 0.4-2 s lag
        (step, stride, pedal or push rhythm) with movement in both halves, else None. With
        ``periodic`` the best lag must also be a local maximum of the autocorrelation."""
        cfg = self.cfg
        add = _add
        d = w - add(w, axis=0) / k
        ms = float(np.einsum("ij,ij->", d, d)) / k
        if ms >= self.min_ms:
            lpw = self._lpb[e - k : e]
            lpd = lpw - add(lpw, axis=0) / k
            e1 = float(np.einsum("ij,ij->", lpd[: k // 2], lpd[: k // 2]))
            e2 = float(np.einsum("ij,ij->", lpd[k // 2 :], lpd[k // 2 :]))
            e0 = e1 + e2
            # a rhythm fills the window: both halves move (one spasm's wobble does not)
            # lags up to half the window actually held (a short window early on, a low rate)
            lag_hi = min(self.lag_hi, k // 2)
            if e0 > 0 and min(e1, e2) >= 0.2 * e0 and lag_hi > self.lag_lo:
                ac = np.zeros(k)
                for axis in range(3):
                    col = lpd[:, axis]
                    ac += np.correlate(col, col, mode="full")[k - 1 :]
                lags = np.arange(self.lag_lo, lag_hi + 1)
                rr = ac[lags] / e0 * k / (k - lags)
                best = int(np.argmax(rr))
                if periodic and not 0 < best < rr.size - 1:
                    return None  # the autocorrelation only decays (or still rises) over the lags
                if float(rr[best]) >= cfg.activity_rhythm_r and self._in_band(d, k):
                    kind = WALKING if self._peak() >= cfg.activity_impact_g else RHYTHMIC
                    return kind, float(lags[best]) / self.blk_rate
        return None

    def band_share(self, d: np.ndarray, k: int) -> float:
        """The share of the window's movement power ``d`` (k block means around their mean) in
        the voluntary-rhythm band, 0.4-2.5 Hz, against all of it from 0.4 Hz up (Hann-windowed
        spectrum, axes summed). A tremor or clonus that survives the 3 Hz low-pass (with the
        50 ms block means it leaves a quarter of a 5 Hz tremor, half of a 3.5 Hz one) correlates
        as well at two or three of its periods as a stride at one, but its power lies above
        2.5 Hz. Computed only for windows that already repeat (at most 80 blocks)."""
        cached = self._bands.get(k)
        if cached is None:
            f = np.fft.rfftfreq(k, 1.0 / self.blk_rate)
            cached = (np.hanning(k)[:, None], (f >= 0.4) & (f <= 2.5), f > 2.5)
            self._bands[k] = cached
        taper, band, above = cached
        spec = np.fft.rfft(d * taper, axis=0)
        power = (spec.real**2 + spec.imag**2).sum(axis=1)
        inside = float(power[band].sum())
        total = inside + float(power[above].sum())
        return inside / total if total > 0 else 0.0

    def _in_band(self, d: np.ndarray, k: int) -> bool:
        """Whether a repeating window has a voluntary rhythm's share of its power in 0.4-2.5 Hz."""
        return self.band_share(d, k) >= self.cfg.activity_rhythm_band_share

    def _peak(self) -> float:
        """The largest raw deviation from gravity (g) over the hops of the window: each hop's
        samples against the mean of its own block means, computed once, when first needed."""
        peaks: list[float] = []
        for hop in self._hops:
            if hop[2] is None:
                dev = hop[0] - hop[1].mean(axis=0)
                hop[:] = [None, None, math.sqrt(float(np.max(np.einsum("ij,ij->i", dev, dev))))]
            peaks.append(hop[2])
        return max(peaks)


class ActivityPeriods:
    """Debounces hop verdicts into periods: enter after ``activity_enter_s`` of non-rest verdicts,
    leave after ``activity_exit_s`` of rest. Returns (start, end, majority kind) when one ends."""

    def __init__(self, enter_hops: int, exit_hops: int) -> None:
        self.enter_hops = enter_hops
        self.exit_hops = exit_hops
        self.cur: _Period | None = None
        self.streak_start = 0
        self.streak = 0
        self.rest_run = 0

    def step(self, s0: int, s1: int, verdict: int) -> tuple[str, int, int, int] | None:
        """One hop; returns ("start", sample, kind, 0) or ("end", start, end, kind) or None."""
        if self.cur is None:
            if verdict == REST:
                self.streak = 0
                return None
            if self.streak == 0:
                self.streak_start = s0
            self.streak += 1
            if self.streak >= self.enter_hops:
                self.cur = _Period(start=self.streak_start, counts=[0] * 5, last_active=s1)
                self.cur.counts[verdict] += self.streak
                self.rest_run = 0
                return ("start", self.streak_start, verdict, 0)
            return None
        if verdict == REST:
            self.rest_run += 1
            if self.rest_run >= self.exit_hops:
                return self.close(None)
            return None
        self.rest_run = 0
        self.cur.counts[verdict] += 1
        self.cur.last_active = s1
        return None

    def close(self, at: int | None) -> tuple[str, int, int, int] | None:
        cur = self.cur
        self.cur = None
        self.streak = 0
        if cur is None:
            return None
        kind = int(np.argmax(cur.counts[1:])) + 1
        end = cur.last_active if at is None else min(cur.last_active, at)
        return ("end", cur.start, max(end, cur.start + 1), kind)


def regular_rhythm(times: list[float], t: float, lo_s: float, hi_s: float, jitter: float) -> int:
    """Length (in bursts) of the longest run of regular intervals through ``t`` in sorted ``times``.

    Intervals must lie within [lo_s, hi_s] and each within ``jitter`` of the median of the
    run's other intervals (``_regular``): the recurrence of a voluntary rhythm (gait, pedalling, repetitions),
    which Poisson-like spasms rarely mimic. Returns 1 when ``t`` belongs to no run.

    The run is the longest window of consecutive bursts through ``t`` that meets the rule as a
    whole, whichever side of ``t`` it extends to: a bout's cadence drifts at its start and end
    (the last pushes of a wheelchair bout slow down, then speed up into the stop), and growing
    the run one side at a time judged each new interval against the median of the few taken
    before it, so the same bursts read regular or not depending on the order they were added.
    """
    if t not in times:
        return 1
    k = times.index(t)
    # the stretch of in-band intervals around t bounds every run through it
    left = k
    while left > 0 and lo_s <= times[left] - times[left - 1] <= hi_s:
        left -= 1
    right = k
    while right + 1 < len(times) and lo_s <= times[right + 1] - times[right] <= hi_s:
        right += 1
    if right == left:
        return 1
    iv = [times[i + 1] - times[i] for i in range(left, right)]
    # two intervals of a regular run differ by at most this ratio (each is within ``jitter`` of
    # the others' median): a cheap bound that skips most windows of an irregular train
    r = (1.0 + 0.5 * jitter) / (1.0 - 0.5 * jitter) if jitter < 2.0 else math.inf
    span = r * r
    # windows [a, b] of bursts with a <= k <= b, longest first; intervals a .. b-1
    for n in range(right - left + 1, 1, -1):
        for a in range(max(left, k - n + 1), min(k, right - n + 1) + 1):
            w = iv[a - left : a - left + n - 1]
            if max(w) <= span * min(w) and _regular(w, jitter):
                return n
    return 1


def _regular(w: list[float], jitter: float) -> bool:
    """Does each interval differ from the median of the others by at most ``jitter`` of their
    mean? Leaving the interval out keeps a short run strict (with it in, any two intervals
    within a ratio of 1.67 would be "regular"); the mean makes the test symmetric, so two
    intervals are alike whichever comes first (within a ratio of 1.29 at 25 %)."""
    if len(w) < 2:
        return True
    srt = sorted(w)
    for x in w:
        others = list(srt)
        others.remove(x)
        m = len(others)
        med = others[m // 2] if m % 2 else 0.5 * (others[m // 2 - 1] + others[m // 2])
        if abs(x - med) > 0.5 * jitter * (x + med):
            return False
    return True


def phase_locked(spans: list[list[float]], t: float, period: float, tol: float) -> bool:
    """Is the burst starting at ``t`` locked to a rhythm of ``period``?

    Gait and pedalling bursts recur at the same phase of every cycle: the channel is also active
    one and two cycles before or after (within ``tol`` of a period), at least twice among
    t-2P, t-P, t+P, t+2P. ``spans`` are the channel's bursts as [onset, offset] (offset inf while
    open); activity rather than onsets is compared because a muscle active for half of each
    stride merges some strides into one long burst. The autocorrelation may have found the step
    rather than the stride, so twice the period is tried too."""
    if period <= 0:
        return False
    for p in (period, 2 * period):
        hits = 0
        for k in (-2, -1, 1, 2):
            target = t + k * p
            if any(a - tol * p <= target <= b + tol * p for a, b in spans if not a <= t < b):
                hits += 1
        if hits >= 2:
            return True
    return False


def repetition_run(
    bursts: list[tuple[float, float, float]],
    t0: float,
    lo_s: float,
    hi_s: float,
    jitter: float,
    ratio: float,
    peak_ratio: float,
) -> int:
    """Length (in bursts) of the run of repetitions through the burst starting at ``t0``.

    ``bursts`` are one channel's bursts (onset s, offset s, peak), sorted by onset, the judged one
    among them; a later one still open (offset inf) counts for its onset only (its length and
    peak are not known yet). A repetition of a movement (a stride, a pedal stroke, a knee
    extension of an exercise set) is driven by the same motor program each time: the muscle
    bursts once per repetition at regular intervals (in [``lo_s``, ``hi_s``], each within
    ``jitter`` of the run's median, grown both ways from the judged burst) for about as long
    each time (within ``ratio`` of the judged burst's duration, either way). A reflex spasm in
    the slot of a repetition lasts as long as the reflex does, and one much stronger than the
    run (more than ``peak_ratio`` times its median peak) is no copy of it: then 1.
    """
    i = next((k for k, b in enumerate(bursts) if b[0] == t0), None)
    if i is None:
        return 1
    d0 = bursts[i][1] - bursts[i][0]
    if d0 <= 0:
        return 1

    def alike(b: tuple[float, float, float]) -> bool:
        d = b[1] - b[0]
        return d == math.inf or (d0 <= ratio * d and d <= ratio * d0)

    left = right = i
    ivs: list[float] = []
    grew = True
    while grew:
        grew = False
        for side in (1, -1):
            j = right + 1 if side == 1 else left - 1
            if not 0 <= j < len(bursts) or not alike(bursts[j]):
                continue
            v = bursts[j][0] - bursts[right if side == 1 else left][0]
            v = abs(v)
            med = float(np.median(ivs)) if ivs else v
            if lo_s <= v <= hi_s and abs(v - med) <= jitter * med:
                ivs.append(v)
                if side == 1:
                    right = j
                else:
                    left = j
                grew = True
    n = right - left + 1
    if n < 2:
        return 1
    peaks = [b[2] for k, b in enumerate(bursts[left : right + 1], start=left) if k != i and b[1] < math.inf]
    if peaks and bursts[i][2] > peak_ratio * float(np.median(peaks)):
        return 1
    return n
