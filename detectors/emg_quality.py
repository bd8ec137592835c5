"""Signal quality of raw EMG blocks: flat or floating inputs (lead-off), rails and clipping.

One job: say, per block and channel, whether the signal can be trusted (ok / lead_off /
saturated), debounce that into ``QualityChange`` outputs, and flag blocks where a strong burst
merely touched the ADC rails (the episode is then marked ``clipped`` instead of cut).
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors.config import DetectorConfig
from detectors.events import DetectorOutput, QualityChange, QualityState

#: ``ndarray.max`` / ``min`` of a block are these reductions (called directly: every block pays them)
_max, _min = np.maximum.reduce, np.minimum.reduce
#: ``ndarray.sum`` of a 1-D array is this reduction (the same bits, without its wrapper)
_sum = np.add.reduce
_EPS = float(np.finfo(np.float64).eps)
QUALITY_NAMES: tuple[QualityState, ...] = ("ok", "lead_off", "saturated")
FloatArray = np.ndarray
#: Raw EMG is kept for a burst's last ``BURST_WINDOW_S``, summarised at the latest when its channel
#: goes bad up to ``lead_off_guard_before_s`` after its end, or when it ends (the offline path has
#: then processed at most ``EmgBank.MAX_STRETCH_S``, 2 s, past it), plus ``RAW_MARGIN_S``. Float32:
#: 8 channels at 2 kHz and the default 0.5 s guard cost 288 KiB per stream.
RAW_MARGIN_S = 0.5
BURST_WINDOW_S = 2.0
BURST_MIN_S = 0.5
#: ``burst_low_share`` reads a burst over itself, its last ``SHAPE_WINDOW_S`` at most (within what
#: the ring keeps whatever the chunking) and ``SHAPE_MIN_S`` at least, centred on a shorter burst
#: (1 / 0.15 s = 6.7 Hz bins: the 20-45 Hz artefact band spans four of them)
SHAPE_WINDOW_S = 1.0
#: ``burst_crackle`` reads the burst from its onset to its offset (its last ``SHAPE_WINDOW_S`` at
#: most), at least this long (the shortest twitch is tens of ms; a shorter stretch holds too few
#: MUAPs)
CRACKLE_MIN_S = 0.1
SHAPE_MIN_S = 0.15
#: the hum of a burst dominated by it is compared with the hum over this long just before
HUM_REF_S = 0.5
#: segments of ``electrode_spectrum(robust=True)``: 4 Hz bins (the 20-45 Hz band spans six,
#: 50 and 60 Hz lines fall in different ones)
ROBUST_SEG_S = 0.25


class HumBefore:
    """``SignalQuality.hum_before`` of one burst, known to be computable (its samples were all
    remembered at the onset), computed only when read (``get``).

    ``burst_hum_change`` reads it only for a burst whose power is mostly on the mains lines, so
    for nearly every burst it is never needed, and its periodogram (a good part of what a burst
    costs to summarise) is not computed. The value is the one computed at the onset would have
    been: the same ring samples, read before the ring drops any of them or a new segment starts
    (``SignalQuality.remember`` computes the waiting ones just before that). ``release``: the
    burst no longer needs it."""

    __slots__ = ("ch", "first", "onset", "quality", "value", "waiting")

    def __init__(self, quality: SignalQuality, ch: int, onset: int, first: int) -> None:
        self.quality = quality
        self.ch = ch
        self.onset = onset
        self.first = first  # the first raw sample it reads
        self.value: tuple[float, float] | None = None
        self.waiting = True  # neither computed nor released

    def get(self) -> tuple[float, float]:
        if self.value is None:
            value = self.quality.hum_before(self.ch, self.onset)
            assert value is not None  # (its samples are all remembered until it is computed)
            self.value = value
        self.waiting = False
        return self.value

    def release(self) -> None:
        self.waiting = False


class SignalQuality:
    """Quality state of every channel; ``screen`` is called on each raw block before filtering."""

    def __init__(self, cfg: DetectorConfig, rate_hz: float, labels: list[str], block: int) -> None:
        c = len(labels)
        self.cfg = cfg
        self.rate = rate_hz
        self.labels = labels
        self.n_ch = c
        self.reported = np.zeros(c, dtype=np.int8)
        self.run_state = np.zeros(c, dtype=np.int8)
        self.run_len = np.zeros(c, dtype=np.int64)
        self.run_start = np.zeros(c, dtype=np.int64)
        self.hold = max(1, round(cfg.quality_hold_s / cfg.block_s))
        #: back to "ok" from a bad state only after this many good blocks: contact is intermittent
        #: while an electrode comes loose, and a flicker of good blocks is not monitoring
        self.hold_ok = max(self.hold, round(cfg.quality_recover_s / cfg.block_s))
        #: some channel is not "ok" (reported or running): every block goes through the debounce
        self.dirty = False
        self.rail_hi = np.full(c, np.nan)
        self.rail_lo = np.full(c, np.nan)
        self.rail_seen = np.full(c, -(10**15), dtype=np.int64)
        #: the last block's 50/60 Hz line per channel (floating-input test) and where that block ended
        self.hum_line: list[tuple[float, complex] | None] = [None] * c
        self.hum_end = [-1] * c
        #: this block touched the rails (without being railed), per channel
        self.block_clipped = np.zeros(c, dtype=bool)
        self.any_clipped = False
        self.rail_memory = round(cfg.rail_memory_s * rate_hz)
        self.rail_count = max(3, math.ceil(cfg.rail_fraction * block))
        self.check_range = min(cfg.saturation_min_range_uv, cfg.lead_off_mains_uv * 2)
        if cfg.full_scale_uv is not None:
            self.check_range = min(self.check_range, 0.5 * cfg.full_scale_uv)
        #: the last few seconds of raw EMG (C, L), a ring indexed by sample counter, so each
        #: burst's raw waveform can be summarised when it ends (``burst_spectrum``)
        keep = max(cfg.lead_off_guard_before_s, 2.0) + BURST_WINDOW_S + RAW_MARGIN_S
        self.raw_len = max(block, round(keep * rate_hz))
        self.raw = np.zeros((c, self.raw_len), dtype=np.float32)
        self.raw_end = 0  # counter after the newest remembered sample
        self.raw_start = 0  # first counter of the current contiguous segment
        #: ``hum_before_lazy`` values not computed yet (some may have been since, or released),
        #: and the earliest ``raw_end`` at which one of them would lose a sample from the ring
        self._hum_wait: list[HumBefore] = []
        self._hum_due = math.inf

    def remember(self, s0: int, x: FloatArray) -> None:
        """Keep raw samples ``x`` (C, n) from counter ``s0`` (one or two slice copies)."""
        n = x.shape[1]
        if self._hum_wait and (s0 != self.raw_end or s0 + n > self._hum_due):
            self._keep_hum(s0, s0 + n)
        if s0 != self.raw_end:  # a new segment (after a gap): what the ring holds is not before it
            self.raw_start = s0
        self.raw_end = s0 + n
        if n >= self.raw_len:
            x, s0, n = x[:, n - self.raw_len :], s0 + n - self.raw_len, self.raw_len
        i = s0 % self.raw_len
        k = min(n, self.raw_len - i)
        self.raw[:, i : i + k] = x[:, :k]
        if k < n:
            self.raw[:, : n - k] = x[:, k:]

    def _keep_hum(self, s0: int, end: int) -> None:
        """Samples [s0, end) are about to be remembered: compute the waiting ``HumBefore`` values
        whose samples that would drop from the ring (or all, when a new segment starts there)."""
        new_segment = s0 != self.raw_end
        wait: list[HumBefore] = []
        for h in self._hum_wait:
            if not h.waiting:
                continue
            if new_segment or h.first < end - self.raw_len:
                h.get()
            else:
                wait.append(h)
        self._hum_wait = wait
        self._hum_due = min((h.first + self.raw_len for h in wait), default=math.inf)

    def _holds(self, a: int, b: int) -> bool:
        """Are raw samples [a, b) all in the current segment and the ring?"""
        return not (a < self.raw_start or a < self.raw_end - self.raw_len or b > self.raw_end or b <= a)

    def raw_stretch(self, channels: list[int], a: int, b: int) -> FloatArray | None:
        """Raw samples [a, b) of ``channels`` (len(channels), b - a), or None when that stretch is
        not all in the current segment and the ring (the same answer whatever the chunking, as
        long as ``b`` has been remembered)."""
        if not self._holds(a, b):
            return None
        i, j = a % self.raw_len, b % self.raw_len
        if i < j:  # one piece of the ring: a slice (the same values as the wrapped gather)
            return self.raw[channels, i:j].astype(np.float64)
        return self.raw[channels][:, np.arange(a, b) % self.raw_len].astype(np.float64)

    def burst_spectrum(self, ch: int, onset: int, offset: int) -> tuple[float, float] | None:
        """(mains-line share, low-band share) of a burst's raw EMG-band power, or None.

        Read over the burst's last ``BURST_WINDOW_S`` up to its offset (at least
        ``BURST_MIN_S``, reaching before the onset for a short burst; 2 Hz bins at 0.5 s resolve
        the lines); None when that stretch is not all in the current segment and the ring.
        Called when the burst ends, so the answer does not depend on the chunking.
        """
        seg = self._burst_window(ch, onset, offset)
        if seg is None:
            return None
        # a burst filling its whole window is read for what it is mostly made of (one pop or
        # step inside it does not decide); a short one's window is mostly before its onset,
        # where a median would read the background instead of the burst
        robust = offset - onset >= seg.shape[0]
        return electrode_spectrum(seg, self.rate, self.cfg, robust=robust)

    def _remembered(self, ch: int, a: int, b: int) -> FloatArray | None:
        """One channel's ``raw_stretch`` (every burst measure here reads through it)."""
        seg = self.raw_stretch([ch], a, b)
        return None if seg is None else seg[0]

    def _burst_window(self, ch: int, onset: int, offset: int) -> FloatArray | None:
        """``burst_spectrum``'s stretch: the burst's last ``BURST_WINDOW_S`` up to its offset, at
        least ``BURST_MIN_S`` (reaching before the onset for a short burst)."""
        a = max(onset, offset - round(BURST_WINDOW_S * self.rate))
        a = min(a, offset - round(BURST_MIN_S * self.rate))
        return self._remembered(ch, a, offset)

    def hum_before(self, ch: int, onset: int) -> tuple[float, float] | None:
        """Power of the 50 and 60 Hz lines (``hum_power``) over the ``HUM_REF_S`` before a burst's
        onset, or None when not all remembered. Taken when the burst is confirmed (its Onset), so
        a long burst can be compared with the contact it began on."""
        seg = self._remembered(ch, onset - round(HUM_REF_S * self.rate), onset)
        if seg is None:
            return None
        top = min(self.cfg.band_high_hz, 0.45 * self.rate)
        p50, p60 = hum_powers(seg, self.rate, top)
        return p50, p60

    def hum_before_lazy(self, ch: int, onset: int) -> HumBefore | None:
        """``hum_before(ch, onset)`` to be computed when read (``HumBefore``); None when it would
        be None (its samples are not all remembered)."""
        first = onset - round(HUM_REF_S * self.rate)
        if not self._holds(first, onset):
            return None
        h = HumBefore(self, ch, onset, first)
        self._hum_wait.append(h)
        self._hum_due = min(self._hum_due, first + self.raw_len)
        return h

    def burst_hum_change(
        self, ch: int, onset: int, offset: int, before: HumBefore | tuple[float, float] | None
    ) -> float | None:
        """How many times the mains line's power changed between the ``HUM_REF_S`` before a
        burst's onset (``before``, from ``hum_before``) and its ``burst_spectrum`` window (>= 1
        either way), when that window's EMG-band power is mostly on the lines
        (``electrode_line_share``); 1.0 when it is not; None when not known. Called when the
        burst ends.

        Common-mode mains becomes a differential hum through the electrode-skin impedance
        mismatch (the potential divider, Huhta & Webster 1973): its amplitude follows the
        contact's impedance. A muscle contracting under a steady contact leaves it as it was."""
        if before is None:
            return None
        r = self.rate
        seg = self._burst_window(ch, onset, offset)
        if seg is None:
            return None
        if electrode_spectrum(seg, r, self.cfg)[0] < self.cfg.electrode_line_share:
            return 1.0
        top = min(self.cfg.band_high_hz, 0.45 * r)
        p_cur, i = max((p, i) for i, p in enumerate(hum_powers(seg, r, top)))
        p_ref = (before.get() if isinstance(before, HumBefore) else before)[i]
        if p_cur <= 0.0 or p_ref <= 0.0:
            return math.inf
        return max(p_cur / p_ref, p_ref / p_cur)

    def burst_low_share(self, ch: int, onset: int, offset: int) -> float | None:
        """Share of a burst's raw EMG-band power below ``artefact_band_hz``, read over the burst
        itself (``SHAPE_WINDOW_S``, ``SHAPE_MIN_S``), or None when those samples are not all in
        the current segment and the ring. Called when the burst ends (chunking-independent).

        Unlike ``burst_spectrum`` it leaves out the stretch before the onset: cable motion or a
        settling baseline just before a spasm says nothing about the spasm."""
        seg = self._shape_window(ch, onset, offset)
        return None if seg is None else electrode_spectrum(seg, self.rate, self.cfg)[1]

    def burst_input_power(self, ch: int, onset: int, offset: int) -> float | None:
        """``input_power`` (uV^2) of a burst's raw samples over the burst itself (the
        ``burst_low_share`` stretch), or None when they are not all remembered. Called when the
        burst ends (chunking-independent)."""
        seg = self._shape_window(ch, onset, offset)
        return None if seg is None else input_power(seg, self.rate, self.cfg)

    def burst_crackle(self, ch: int, onset: int, offset: int) -> float | None:
        """``crackle_kurtosis`` of a burst's raw samples over the burst itself (the
        ``burst_low_share`` stretch), or None when they are not all remembered. Called when the
        burst ends (chunking-independent)."""
        r = self.rate
        pad = 2 * max(3, round(self.cfg.crackle_window_s * r))
        end = max(offset, onset + round(CRACKLE_MIN_S * r))
        start = max(onset, end - round(SHAPE_WINDOW_S * r))
        seg = self._remembered(ch, start - pad, end + pad)
        return None if seg is None else crackle_kurtosis(seg, r, self.cfg, pad)

    def _shape_window(self, ch: int, onset: int, offset: int) -> FloatArray | None:
        """The burst itself: its last ``SHAPE_WINDOW_S`` at most, ``SHAPE_MIN_S`` at least
        (centred on a shorter burst)."""
        r = self.rate
        a = max(onset, offset - round(SHAPE_WINDOW_S * r))
        short = round(SHAPE_MIN_S * r) - (offset - a)
        if short > 0:
            a -= short // 2
            offset += short - short // 2
        return self._remembered(ch, a, offset)

    def suspect(self, mx: FloatArray, mn: FloatArray) -> FloatArray:
        """Blocks that need a closer look, from per-block extremes (..., C): flat, big or off-scale.

        The cheap test every block passes through; vectorised over any leading block axis.
        """
        cfg = self.cfg
        rng = mx - mn
        return (
            (rng < cfg.flat_range_uv)
            | (rng > self.check_range)
            | (mx > cfg.lead_off_dc_uv)
            | (-mn > cfg.lead_off_dc_uv)
            | ~np.isfinite(rng)
        )

    def screen(
        self, s0: int, x: FloatArray, in_burst: Callable[[int], bool], out: list[DetectorOutput]
    ) -> FloatArray | None:
        """Check raw block ``x`` (C, n) (NaN/inf replaced by 0 in place); the channels that are
        lead-off or saturated (bool mask), or None when all are fine. ``in_burst(ch)``: a confirmed
        episode is open on the channel."""
        cfg = self.cfg
        c = x.shape[0]
        # two reductions unless something looks wrong (the ufuncs' own: ``x.max``'s reduction
        # without its Python wrapper, the same values)
        mx = _max(x, axis=1)
        mn = _min(x, axis=1)
        rng = mx - mn
        bad: FloatArray | None = None
        rl = rng.tolist()
        if not math.isfinite(sum(rl)):  # NaN/inf would poison the filter state for good
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            mx = x.max(axis=1)
            mn = x.min(axis=1)
            rng = mx - mn
            rl = rng.tolist()
        if (
            min(rl) < cfg.flat_range_uv
            or max(rl) > self.check_range
            or max(max(mx.tolist()), -min(mn.tolist())) > cfg.lead_off_dc_uv
        ):
            state = self._classify(s0, x, mx, mn, rng, in_burst)
            if state.any():
                bad = state.astype(bool)
            if state.any() or self.dirty:
                self._debounce(s0, state, out)
        elif self.dirty:
            self._debounce(s0, np.zeros(c, dtype=np.int8), out)
        return bad

    def _classify(
        self,
        s0: int,
        x: FloatArray,
        mx: FloatArray,
        mn: FloatArray,
        rng: FloatArray,
        in_burst: Callable[[int], bool],
    ) -> np.ndarray:
        """Per-channel block state: 0 ok, 1 lead-off (flat, huge DC, floating input), 2 saturated."""
        cfg = self.cfg
        c, n = x.shape
        state = np.zeros(c, dtype=np.int8)
        self.block_clipped[:] = False
        self.any_clipped = True
        for ch in range(c):
            lo, hi, r = float(mn[ch]), float(mx[ch]), float(rng[ch])
            if r < cfg.flat_range_uv or max(hi, -lo) > cfg.lead_off_dc_uv:
                # stuck: at the level it was clipping at a moment ago = still saturated, else lead-off
                recent = s0 - int(self.rail_seen[ch]) <= self.rail_memory
                at_rail = min(abs(hi - self.rail_hi[ch]), abs(lo - self.rail_lo[ch])) <= 1e-6 * max(
                    abs(hi), 1.0
                )
                state[ch] = 2 if recent and at_rail else 1
                if state[ch] == 2:
                    self.rail_seen[ch] = s0
                continue
            if r <= self.check_range:
                continue
            col = x[ch]
            tol = 1e-6 * max(abs(hi), abs(lo), 1.0)
            n_hi = int(np.count_nonzero(col >= hi - tol))
            n_lo = int(np.count_nonzero(col <= lo + tol))
            railed = r > cfg.saturation_min_range_uv and max(n_hi, n_lo) >= min(
                self.rail_count, max(3, n // 4)
            )
            if cfg.full_scale_uv is not None:
                railed = (
                    railed
                    or int(np.count_nonzero(np.abs(col) >= 0.99 * cfg.full_scale_uv)) >= self.rail_count
                )
            if r > cfg.saturation_min_range_uv:  # remember the extremes: a plateau may follow
                self.rail_hi[ch], self.rail_lo[ch], self.rail_seen[ch] = hi, lo, s0
            n_rail = max(n_hi, n_lo)
            if cfg.full_scale_uv is not None:
                n_rail = max(n_rail, int(np.count_nonzero(np.abs(col) >= 0.99 * cfg.full_scale_uv)))
            if railed and n_rail < cfg.saturation_fraction * n and in_burst(ch):
                # inside a confirmed burst, a minority of samples at the rails is its peaks
                # being cut, not an overloaded amplifier: keep the episode whole (issue 9)
                railed = False
            if railed:
                state[ch] = 2
            elif r > cfg.saturation_min_range_uv and n_rail >= 3:
                # A few samples at the extremes of a big block: a strong contraction touching the
                # rails. The EMG is plainly still active (only the peaks are cut), so this is no
                # quality gap; the episode is flagged clipped instead.
                self.block_clipped[ch] = True
            else:
                line = mains_line(col, self.rate, cfg.lead_off_mains_uv, s0, cfg.lead_off_hum_share)
                if line is not None:
                    # A floating input picks up mains and little else. Over one 50 ms block a
                    # sinusoid fit cannot tell hum from a strong motor-unit burst whose power sits
                    # near 50-60 Hz (it happens in ~1 of 500 strong blocks): hum also keeps its
                    # amplitude and phase from one block to the next, EMG does not. So a block is
                    # lead-off when its line continues the previous block's (``lead_off_hum_drift``).
                    f0, z = line
                    prev = self.hum_line[ch]
                    if (
                        prev is not None
                        and self.hum_end[ch] == s0
                        and prev[0] == f0
                        and abs(z - prev[1]) <= cfg.lead_off_hum_drift * abs(prev[1])
                    ):
                        state[ch] = 1
                    self.hum_line[ch] = line
                    self.hum_end[ch] = s0 + n
        return state

    def _debounce(self, s0: int, state: np.ndarray, out: list[DetectorOutput]) -> None:
        """Debounce per-block quality into reported changes (held for ``quality_hold_s``; a
        recovery to ok for ``quality_recover_s``). The change is dated where its run began."""
        dirty = False
        for ch in range(self.n_ch):
            st = int(state[ch])
            if st != self.run_state[ch]:
                self.run_state[ch] = st
                self.run_len[ch] = 0
                self.run_start[ch] = s0
            self.run_len[ch] += 1
            need = self.hold_ok if st == 0 else self.hold
            if st != self.reported[ch] and self.run_len[ch] >= need:
                self.reported[ch] = st
                out.append(
                    QualityChange(
                        channel=self.labels[ch],
                        domain="emg",
                        sample=int(self.run_start[ch]),
                        state=QUALITY_NAMES[st],
                    )
                )
            dirty = dirty or st != 0 or self.reported[ch] != 0
        self.dirty = dirty


def mains_line(
    col: FloatArray, rate: float, min_uv: float, s0: int, min_share: float = 0.6
) -> tuple[float, complex] | None:
    """The 50 or 60 Hz sinusoid holding most of a block's variance (>= ``min_share``, >= ``min_uv`` RMS).

    Returns (frequency, complex amplitude referred to sample counter 0, so that blocks can be
    compared) or None.
    """
    n = col.shape[0]
    if n < 8:
        return None
    xc = col - col.mean()
    total = float(xc @ xc)
    if total <= 0:
        return None
    bases, gain = _hum_bases(n, rate)
    if gain * total < min_uv * min_uv * n:
        return None  # no sinusoid of min_uv RMS fits in this little variance (see _hum_bases)
    for f0, basis in zip((50.0, 60.0), bases, strict=True):
        coef, *_ = np.linalg.lstsq(basis, col, rcond=None)
        fit = basis[:, :2] @ coef[:2]
        p = float(fit @ fit)
        if p >= min_share * total and math.sqrt(p / n) >= min_uv:
            # a sin + b cos = Re[(b - i a) e^{i w t}]; refer the phase to counter 0
            turn = (f0 * s0 / rate) % 1.0
            z = complex(float(coef[1]), -float(coef[0])) * cmath.exp(-2j * math.pi * turn)
            return f0, z
    return None


#: ``mains_line``'s regressors by (block length, rate): the same few block lengths recur, and
#: building them cost as much as the fit itself. Bounded (partial blocks have other lengths).
_BASES: dict[tuple[int, float], tuple[tuple[FloatArray, FloatArray], float]] = {}


def _hum_bases(n: int, rate: float) -> tuple[tuple[FloatArray, FloatArray], float]:
    """[sin, cos, 1, t] at 50 and 60 Hz over ``n`` samples (read-only: shared between calls), and
    a bound ``gain`` on the energy of a fitted sinusoid: ``|fit|^2 <= gain * |col - mean|^2``.

    Why the bound holds: the sin/cos coefficients of the least-squares fit are those of the
    sin/cos columns with the offset and trend projected out (S~), fitted to ``col`` likewise
    projected (Frisch-Waugh-Lovell), whose norm is at most that of ``col - mean``; so
    ``|fit| <= s_max(sin, cos) / s_min(S~) * |col - mean|``. A block whose variance is too small
    for a ``min_uv`` sinusoid by this bound (most EMG) needs no fit: the answer is None either way.
    The 1 % margin dwarfs rounding (~1e-13 here).
    """
    key = (n, rate)
    hit = _BASES.get(key)
    if hit is None:
        t = np.arange(n) / rate
        made = []
        gain = 0.0
        for f0 in (50.0, 60.0):
            b = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t), np.ones(n), t], axis=1)
            b.flags.writeable = False
            made.append(b)
            q, _ = np.linalg.qr(b[:, 2:])
            s_res = b[:, :2] - q @ (q.T @ b[:, :2])
            smax = float(np.linalg.svd(b[:, :2], compute_uv=False)[0])
            smin = float(np.linalg.svd(s_res, compute_uv=False)[-1])
            gain = max(gain, (smax / smin) ** 2 if smin > 0 else math.inf)
        if len(_BASES) >= 64:
            _BASES.clear()
        hit = _BASES[key] = ((made[0], made[1]), 1.01 * gain)
    return hit


#: Per-length constants of ``hum_power`` and ``electrode_spectrum`` (window, frequencies, line
#: masks, the trend fit's design matrix), keyed by what they depend on: bursts of a stream mostly
#: share a few window lengths (clamped to the windows' bounds), and each is a dozen numpy calls.
_GRIDS: dict[tuple[object, ...], tuple[Any, ...]] = {}


def _grid(key: tuple[object, ...], make: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
    hit = _GRIDS.get(key)
    if hit is None:
        if len(_GRIDS) >= 256:
            _GRIDS.clear()
        hit = _GRIDS[key] = make()
    return hit


def _line_mask(f: FloatArray, f0: float, half: float, top_hz: float) -> FloatArray:
    """Bins within ``half`` Hz of ``f0`` and its harmonics 1-5 (those up to ``top_hz``)."""
    on = np.zeros(f.shape, dtype=bool)
    for h in range(1, 6):
        if h * f0 > top_hz:
            break
        on |= np.abs(f - h * f0) <= half
    return on


def _bins(mask: FloatArray) -> slice | FloatArray:
    """The bins of ``mask`` as a slice when they are one run (a view, no copy), else their
    indices: ``p[_bins(mask)]`` holds ``p[mask]``'s values in its order (the same sums)."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return slice(0, 0)
    if int(idx[-1]) - int(idx[0]) + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _public_lstsq(a: FloatArray, b: FloatArray, rcond: float) -> FloatArray:
    return np.linalg.lstsq(a, b, rcond)[0]


def _lstsq_kernel() -> Callable[[FloatArray, FloatArray, float], FloatArray]:
    """``np.linalg.lstsq(a, b, rcond)[0]`` for float64 ``a`` (m, k) and ``b`` (m,): numpy's own
    LAPACK gufunc called directly when it gives the public function's bits (checked once), which
    skips the wrapper's argument checks and error-state context (most of its cost on a burst's
    trend fit). A non-finite answer is redone by the public function, which raises as it did."""
    try:
        from numpy.linalg import _umath_linalg

        gufunc = _umath_linalg.lstsq

        def direct(a: FloatArray, b: FloatArray, rcond: float) -> FloatArray:
            coef = gufunc(a, b[:, None], rcond, signature="ddd->ddid")[0][:, 0]
            if not math.isfinite(float(np.add.reduce(coef))):
                return _public_lstsq(a, b, rcond)
            return coef

        k = np.arange(40, dtype=np.float64)
        a = np.vander(k, 2) / np.array([900.0, 6.0])
        b = np.sin(k * 0.7) * 1e3 + k
        if np.array_equal(direct(a, b, 40 * 2.2e-16), _public_lstsq(a, b, 40 * 2.2e-16)):
            return direct
    except Exception:  # another numpy layout: the public function
        pass
    return _public_lstsq


_lstsq = _lstsq_kernel()


def hum_power(x: FloatArray, rate: float, f0: float, top_hz: float) -> float:
    """Mean power (uV^2) of the mains line ``f0`` and its harmonics 1-5 (below ``top_hz``) in
    ``x``: a linearly detrended, Hann-windowed periodogram summed within one bin (at least
    1.5 Hz) of each line, scaled so a sinusoid of amplitude A reads A^2 / 2 whatever the length
    (a Hann line keeps its energy within +-1.5 bins wherever it falls between them). Compares
    stretches of different lengths; broadband EMG adds little to a few bins."""
    return hum_powers(x, rate, top_hz, (f0,))[0]


def hum_powers(
    x: FloatArray, rate: float, top_hz: float, lines: tuple[float, ...] = (50.0, 60.0)
) -> tuple[float, ...]:
    """``hum_power`` of each line in ``lines``, from one periodogram (the same numbers)."""
    n = x.shape[0]

    def make() -> tuple[Any, ...]:
        t = np.arange(n, dtype=np.float64) - 0.5 * (n - 1)
        w = np.hanning(n)
        f = np.fft.rfftfreq(n, 1.0 / rate)
        masks = [_bins(_line_mask(f, f0, max(1.5, rate / n), top_hz)) for f0 in lines]
        return t, np.array(float(t @ t)), w, np.array(n * float(w @ w)), *masks

    t, tt, w, norm, *masks = _grid(("hum", n, rate, top_hz, lines), make)
    xm = x - float(_sum(x)) / n  # x.mean(): the same sum and division, without its wrapper
    xd = xm - (float(t @ xm) / float(tt)) * t
    p = np.abs(np.fft.rfft(xd * w)) ** 2
    return tuple(2.0 * float(_sum(p[on])) / float(norm) for on in masks)


def electrode_spectrum(
    x: FloatArray, rate: float, cfg: DetectorConfig, robust: bool = False
) -> tuple[float, float]:
    """(share on the mains lines, share below ``artefact_band_hz``) of a raw stretch's power in
    the EMG band (``band_low_hz`` to the band-pass top), from one Hann-windowed FFT.

    Muscle gives a broad spectrum with most of its power at 50-150 Hz. A half-contacting
    electrode turns common-mode mains into a differential signal (the potential divider, Huhta &
    Webster 1973), distorted into harmonics as it grows and beating through the notches as its
    amplitude changes: its power sits on the lines (50 and 60 Hz tried, harmonics 1-5, +-1 bin).
    Drift, DC steps and cable motion keep theirs below ~45 Hz (Conforto et al., J Biomech 2010).

    ``robust``: a stretch of at least two ``ROBUST_SEG_S`` segments is read as the per-bin
    *median* of their periodograms (Welch's method with a median instead of a mean, half
    overlap): what the stretch is mostly made of. One electrode pop or DC step inside a long
    burst otherwise fills the low bins of a single FFT over all of it, whatever the muscle did
    before and after it; an artefact that is the whole burst fills them in every segment.
    """
    n = x.shape[0]
    if n < 16:
        return 0.0, 0.0
    low_hz, high_hz, split_hz = cfg.band_low_hz, min(cfg.band_high_hz, 0.45 * rate), cfg.artefact_band_hz
    seg = round(ROBUST_SEG_S * rate)
    robust_read = robust and n >= 2 * seg
    m = seg if robust_read else n  # the periodogram's length

    def make() -> tuple[Any, ...]:
        # np.polyfit(t, x, 1)'s design matrix, scaled as polyfit scales it (see below)
        t = np.arange(m, dtype=np.float64)
        lhs = np.vander(t, 2)
        scale = np.sqrt((lhs * lhs).sum(axis=0))
        lhs /= scale
        f = np.fft.rfftfreq(m, 1.0 / rate)
        band = (f >= low_hz) & (f <= high_hz)
        half = max(1.5, rate / m)  # a Hann-windowed line keeps its power within one bin either side
        lines = [_bins(band & _line_mask(f, f0, half, math.inf)) for f0 in (50.0, 60.0)]
        return t, lhs, scale, np.hanning(m), _bins(band), lines[0], lines[1], _bins(band & (f < split_hz))

    t, lhs, scale, w, band, on50, on60, low_bins = _grid(
        ("spectrum", m, rate, low_hz, high_hz, split_hz), make
    )
    if robust_read:
        starts = range(0, n - seg + 1, seg // 2)
        xs = np.stack([x[i : i + seg] for i in starts])
        trend = np.polynomial.polynomial.polyfit(t, xs.T, 1)  # (2, k): per-segment linear trend
        xd = xs - (trend[0][:, None] + trend[1][:, None] * t)
        p = np.median(np.abs(np.fft.rfft(xd * w, axis=1)) ** 2, axis=0)
    else:
        # x less its least-squares line: np.polyval(np.polyfit(t, x, 1), t), the same operations
        # (polyfit: lstsq on the column-scaled Vandermonde matrix, rcond = n * eps; polyval: Horner)
        # (Horner from a zero array: 0 * t is +0 for t >= 0, so its first step is 0.0 + coef[0])
        coef = _lstsq(lhs, x + 0.0, n * _EPS) / scale
        xd = x - ((0.0 + float(coef[0])) * t + coef[1])
        p = np.abs(np.fft.rfft(xd * w)) ** 2
    total = float(_sum(p[band]))
    if total <= 0.0:
        return 0.0, 0.0
    line = 0.0
    for on in (on50, on60):
        line = max(line, float(_sum(p[on])) / total)
    low = float(_sum(p[low_bins])) / total
    return line, low


def input_power(x: FloatArray, rate: float, cfg: DetectorConfig) -> float:
    """Mean power (uV^2) of a raw stretch above ``artefact_band_hz`` (to the band-pass top) with
    the mains lines left out: the power density of the other bins times the whole band's width,
    from one linearly detrended, Hann-windowed periodogram (a sinusoid of amplitude A off the
    lines reads A^2 / 2, white noise its variance times the band's share of the Nyquist band).

    What the *input* holds where the detector's envelope reads muscle. Filters cannot add power
    there, only move it in time: after a sharp edge (a DC step, a knock on the cable, a contact
    spike) the band-pass and the Q-30 mains notches ring for a fraction of a second (a notch's
    ring decays with 1 / (pi x its 1.7 Hz bandwidth), ~0.2 s), and the envelope reads that ring
    as a burst while the raw stretch after the edge holds only resting noise (and the edge's
    slow swing, below the band). The lines are left out because that ring sits on them and
    because mains hum is not muscle; a muscle's broad spectrum loses a few bins' worth."""
    n = x.shape[0]
    if n < 16:
        return 0.0
    split_hz, high_hz = cfg.artefact_band_hz, min(cfg.band_high_hz, 0.45 * rate)

    def make() -> tuple[FloatArray, ...]:
        t = np.arange(n, dtype=np.float64) - 0.5 * (n - 1)
        w = np.hanning(n)
        f = np.fft.rfftfreq(n, 1.0 / rate)
        band = (f >= split_hz) & (f <= high_hz)
        # a Hann-windowed line spreads over +-2 bins (its main lobe): all of it left out
        half = max(1.5, 2.0 * rate / n) * (1.0 + 1e-9)
        off = band & ~_line_mask(f, 50.0, half, math.inf) & ~_line_mask(f, 60.0, half, math.inf)
        scale = np.array(2.0 / (n * float(w @ w)) * float(band.sum()) / max(1, int(off.sum())))
        return t, np.array(float(t @ t)), w, off, scale

    t, tt, w, off, scale = _grid(("input", n, rate, split_hz, high_hz), make)
    if not off.any():
        return 0.0
    xm = x - x.mean()
    xd = xm - (float(t @ xm) / float(tt)) * t
    p = np.abs(np.fft.rfft(xd * w)) ** 2
    return float(p[off].sum()) * float(scale)


def crackle_kurtosis(x: FloatArray, rate: float, cfg: DetectorConfig, pad: int = 0) -> float:
    """Kurtosis of a raw stretch's EMG band (``artefact_band_hz`` to the band-pass top: one FFT,
    zero-phase; the mains lines are kept, as over a burst this short their bins would take most of
    the band) divided by its own running RMS over ``crackle_window_s``,
    read on ``x[pad:-pad]`` (the ``pad`` samples on each side are tapered, so the FFT's wrap-round
    adds no edge).

    Surface EMG is an interference pattern of asynchronously firing motor units: once its
    envelope (the drive, the recruitment) is divided out, what is left is near Gaussian
    (kurtosis 3). The intermittent contact of a settling electrode crackles: isolated 1-4 ms
    spikes on the settling noise (Huigen, Peper & Grimbergen 2002), which the 25 Hz envelope blurs
    into a "twitch" but which stay isolated within any window longer than a MUAP, so their
    kurtosis is high. 3.0 when too short to tell."""
    n = x.shape[0]
    w = max(3, round(cfg.crackle_window_s * rate))
    if n - 2 * pad < 2 * w:
        return 3.0
    split_hz, high_hz = cfg.artefact_band_hz, min(cfg.band_high_hz, 0.45 * rate)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    keep = (f >= split_hz) & (f <= high_hz)
    t = np.arange(n, dtype=np.float64) - 0.5 * (n - 1)
    xm = x - x.mean()
    xd = xm - (float(t @ xm) / float(t @ t)) * t
    if pad > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(pad) + 0.5) / pad)
        xd[:pad] *= ramp
        xd[n - pad :] *= ramp[::-1]
    spec = np.fft.rfft(xd)
    spec[~keep] = 0.0
    y = np.fft.irfft(spec, n)
    ms = np.convolve(y * y, np.full(w, 1.0 / w), mode="same")
    core = slice(pad, n - pad)
    z2 = (y[core] * y[core]) / np.maximum(ms[core], 1e-30)
    m2 = float(z2.mean())
    return 3.0 if m2 <= 0.0 else float((z2 * z2).mean()) / (m2 * m2)
