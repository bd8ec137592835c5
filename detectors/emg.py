"""EMG channel bank: causal preprocessing, adaptive baseline, onset/offset state machine, typing.

Everything runs on fixed blocks (``block_s``, 50 ms by default) laid end to end from the start of
each contiguous segment of the stream. The caller (``SpasmDetector``) cuts whatever chunks it is
given into those blocks, so the arithmetic, and therefore the events, are identical for any
chunking. Within a block all work is vectorised across channels; Python loops only run over the
envelope rows of channels that are inside an episode (rare, and at the 200 Hz envelope rate).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

try:  # the compiled kernel behind scipy.signal.sosfilt (private; see filter_inplace)
    from scipy.signal._sosfilt import _sosfilt
except ImportError:  # pragma: no cover - other scipy layouts fall back to the public function
    _sosfilt = None

from detectors.config import DetectorConfig
from detectors.events import DetectorOutput, Onset, QualityChange, QualityState, SpasmEvent, SpasmType

IDLE, CAND, ACTIVE, ARTEFACT = 0, 1, 2, 3
_QUALITY_NAMES: tuple[QualityState, ...] = ("ok", "lead_off", "saturated")
FloatArray = np.ndarray


def design_emg_filter(cfg: DetectorConfig, rate_hz: float, mains_hz: int | None) -> np.ndarray:
    """Band-pass (capped below Nyquist) followed by mains notches (odd harmonics), as one SOS cascade."""
    low, high = cfg.emg_band(rate_hz)
    sos = signal.butter(cfg.band_order, [low, high], btype="bandpass", fs=rate_hz, output="sos")
    parts = [sos]
    if mains_hz is not None:
        # odd harmonics only: mains distortion (transformers, rectifiers) is half-wave symmetric,
        # and each notch rings for ~1/(pi*bandwidth) after a strong burst, so fewer is better
        for h in range(1, cfg.mains_max_harmonic + 1, 2):
            f0 = h * mains_hz
            if f0 >= high or f0 >= 0.48 * rate_hz:
                break
            if f0 < low:
                continue
            b, a = signal.iirnotch(f0, cfg.notch_q, fs=rate_hz)
            parts.append(np.concatenate([b, a])[None, :])
    return np.ascontiguousarray(np.vstack(parts))


def detect_mains(x: FloatArray, rate_hz: float) -> int | None:
    """Pick 50 or 60 Hz from the hum peaks in a stretch of raw EMG, or None when there is no hum.

    Compares spectral peaks at the first three harmonics with the median of neighbouring bins;
    a hum needs a clear narrow peak (x10 power) on at least one channel.
    """
    n = x.shape[0]
    if n < int(0.2 * rate_hz):
        return None
    xd = x - x.mean(axis=0)
    spec = np.abs(np.fft.rfft(xd * np.hanning(n)[:, None], axis=0)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
    df = freqs[1]
    score = {}
    for f0 in (50, 60):
        best = 0.0
        for h in (1, 2, 3):
            f = h * f0
            if f >= 0.48 * rate_hz:
                break
            k = round(f / df)
            peak = spec[max(k - 1, 0) : k + 2].max(axis=0)
            lo, hi = max(k - int(8 / df) - 1, 0), k + int(8 / df) + 2
            neigh = np.concatenate([spec[lo : max(k - 2, 0)], spec[k + 3 : hi]])
            if neigh.shape[0] < 3:
                continue
            ratio = peak / (np.median(neigh, axis=0) + 1e-30)
            best = max(best, float(ratio.max()))
        score[f0] = best
    f_best = max(score, key=lambda f: score[f])
    return f_best if score[f_best] >= 10.0 else None


def filter_inplace(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """Filter rows of ``x`` (signals, samples) in place, carrying ``zi`` (signals, sections, 2).

    Calls scipy's compiled SOS kernel directly when available: the public ``sosfilt`` spends more
    time validating and transposing a 50 ms block than filtering it. Same arithmetic either way.
    """
    if _sosfilt is not None:
        _sosfilt(sos, x, zi)
        return
    y, zf = signal.sosfilt(sos, x, axis=-1, zi=np.moveaxis(zi, 0, 1).transpose(0, 2, 1).swapaxes(0, 1))
    x[...] = y
    zi[...] = np.moveaxis(zf.swapaxes(0, 1).transpose(0, 2, 1), 1, 0)


@dataclass(slots=True)
class _Episode:
    onset: int  # raw sample (after delay compensation)
    cross_sample: int  # row start sample of the first row above the onset threshold
    rows: list[FloatArray] = field(default_factory=list)  # (k, 2): power, low-band power per row
    above: int = 0
    quiet: int = 0
    quiet_start: int = 0
    state: int = CAND
    key: str = ""
    peak: float = 0.0
    blip: int = 0
    judge_at: int = 0
    clipped: bool = False  # some samples touched the ADC rails


class EmgBank:
    """All EMG channels of one stream; ``process_block`` is the only entry point for data.

    Layout is channel-major (channels, samples) so every reduction and filter runs along
    contiguous memory.
    """

    def __init__(
        self, cfg: DetectorConfig, rate_hz: float, labels: list[str], mains_hz: int | None, version: str
    ) -> None:
        self.cfg = cfg
        self.rate = float(rate_hz)
        self.labels = list(labels)
        self.version = version
        self.hash = cfg.hash
        c = len(labels)
        self.n_ch = c
        self.mains_hz = mains_hz
        self.decim = max(1, round(rate_hz / cfg.envelope_rate_hz))
        self.env_rate = rate_hz / self.decim
        self.rows_per_block = max(1, round(cfg.block_s * self.env_rate))
        self.block = self.decim * self.rows_per_block
        self.sos = design_emg_filter(cfg, rate_hz, mains_hz)
        n_sec = self.sos.shape[0]
        self.zi0 = signal.sosfilt_zi(self.sos)  # (sections, 2): steady state for a unit step
        self.zi = np.zeros((c, n_sec, 2))
        # Low band (up to 45 Hz) of the decimated signal: where ECG, motion and pops put their energy.
        sos_low = signal.butter(
            2, min(45.0, 0.4 * self.env_rate), btype="lowpass", fs=self.env_rate, output="sos"
        )
        sos_low[0, :3] /= math.sqrt(self.decim)  # rows are sums of d samples; power rows too
        self.sos_low = np.ascontiguousarray(sos_low)
        self.zi_low = np.zeros((c, 1, 2))
        cutoff = min(cfg.envelope_cutoff_hz, 0.4 * self.env_rate)
        sos_env = signal.butter(2, cutoff, btype="lowpass", fs=self.env_rate, output="sos")
        self.zi0_env = signal.sosfilt_zi(sos_env)
        sos_env[0, :3] /= self.decim  # the decimator sums rows; the 1/D of the mean goes here
        self.sos_env = np.ascontiguousarray(sos_env)
        self.zi_env = np.zeros((2 * c, 1, 2))
        # Delay of the envelope behind the muscle: half a decimation row plus the low-pass group delay.
        self.lag = round(0.5 * self.decim + math.sqrt(2) / (2 * math.pi * cutoff) * rate_hz)
        # below ~1 kHz the band is cut and the envelope is noisier: episode shapes are read on a
        # smoother copy (config.shape_smoothing_s; 1 row, i.e. none, at full band)
        split = min(45.0, 0.4 * self.env_rate)
        self.shape_rows = _odd_rows(cfg.shape_smoothing_s(rate_hz, self.env_rate, split) * self.env_rate)
        self.rhythm_rows = _odd_rows(cfg.rhythm_smoothing_s(rate_hz, self.env_rate, split) * self.env_rate)
        self.prev_y = np.zeros(c)
        self.need_reset = np.ones(c, dtype=bool)
        self.any_reset = True
        self.settle_until = np.zeros(c, dtype=np.int64)  # raw sample before which no onsets
        self.settle_n = round(cfg.settle_s * rate_hz)
        self.settle_max = 0
        # baseline: each 0.5 s segment contributes the median of its block powers (a QRS or a
        # pop in a few blocks does not move it); the resting level is a low percentile of the
        # last ``baseline_window_s`` of segments. +inf marks segments left out.
        self.blocks_per_seg = max(1, round(0.5 / cfg.block_s))
        seg_s = self.blocks_per_seg * cfg.block_s
        self.bl_len = max(2, round(cfg.baseline_window_s / seg_s))
        self.bl_ring = np.full((self.bl_len, 2 * c), np.inf)
        self.bl_pos = 0
        self.bl_filled = 0
        self.bl_valid_segs = np.zeros(c, dtype=np.int64)
        self.bl_min_segs = max(1, round(cfg.baseline_min_s / seg_s))
        self.bl_update_segs = max(1, round(cfg.baseline_update_s / seg_s))
        self.segs_seen = 0
        self.seg_buf = np.zeros((self.blocks_per_seg, 2 * c))
        self.seg_blocks = 0
        self.seg_excl = np.zeros(c, dtype=bool)
        self.base_pow = np.full(2 * c, np.nan)
        self.base_valid = np.zeros(c, dtype=bool)
        self.on_thr = np.full((c, 1), np.inf)
        self.off_thr = np.full(c, np.inf)
        self.back_thr = np.full(c, np.inf)
        # state machine
        self.eps: list[_Episode | None] = [None] * c
        self.n_busy = 0
        self.history: list[tuple[int, FloatArray]] = []  # recent (s0, env (C, m)) for onset backtracking
        self.hist_blocks = max(2, math.ceil(0.3 / cfg.block_s))
        self.confirm_rows = max(1, round(cfg.confirm_s * self.env_rate))
        # the spectral verdict needs the 20-40 Hz ring-down of an artefact to have built up
        self.judge_n = round(cfg.judge_s * rate_hz)
        self.judge_rows = max(2, round(cfg.judge_s * self.env_rate))
        self.settle_bad_n = round(0.5 * rate_hz)  # after lead-off/saturation the filters ring
        self.quiet_rows = max(1, round(cfg.quiet_s * self.env_rate))
        self.blip_rows = round(cfg.quiet_blip_s * self.env_rate)
        self.max_samples = int(cfg.max_episode_s * rate_hz)
        self.max_backtrack = int(0.3 * rate_hz)  # a rise slower than this is not one onset
        # quality
        self.q_reported = np.zeros(c, dtype=np.int8)
        self.q_run_state = np.zeros(c, dtype=np.int8)
        self.q_run_len = np.zeros(c, dtype=np.int64)
        self.q_run_start = np.zeros(c, dtype=np.int64)
        self.q_hold = max(1, round(cfg.quality_hold_s / cfg.block_s))
        self.q_dirty = False
        self.rail_hi = np.full(c, np.nan)
        self.rail_lo = np.full(c, np.nan)
        self.rail_seen = np.full(c, -(10**15), dtype=np.int64)
        #: the last block's 50/60 Hz line per channel (floating-input test) and where that block ended
        self.hum_line: list[tuple[float, complex] | None] = [None] * c
        self.hum_end = [-1] * c
        self.block_clipped = np.zeros(c, dtype=bool)  # this block touched the rails (not railed)
        self.any_clipped = False
        self.rail_memory = round(1.0 * rate_hz)
        self.rail_count = max(3, math.ceil(cfg.rail_fraction * self.block))
        self.check_range = min(cfg.saturation_min_range_uv, cfg.lead_off_mains_uv * 2)
        if cfg.full_scale_uv is not None:
            self.check_range = min(self.check_range, 0.5 * cfg.full_scale_uv)
        # confirmed episodes (seconds) for the tremor rule "with weak EMG": [onset_s, offset_s]
        self.active_spans: list[list[float]] = []
        self.processed_until = 0  # raw sample just after the last processed block

    # ------------------------------------------------------------------------------------ API
    def reset_filters(self) -> None:
        """After a gap: filters restart (at steady state on their first sample) and settle."""
        self.need_reset[:] = True
        self.any_reset = True
        self.history.clear()

    def close_all(self, at: int, out: list[DetectorOutput], truncated: bool) -> None:
        for c in range(self.n_ch):
            if self.eps[c] is not None:
                self._end_episode(c, at, out, truncated=truncated)

    def process_block(self, s0: int, x: FloatArray, out: list[DetectorOutput]) -> None:
        """Process one block ``x`` (C, n) channel-major, n <= block, which this call may overwrite;
        ``s0`` is the raw counter of ``x[:, 0]``."""
        c, n = x.shape
        cfg = self.cfg
        # ---- signal quality on the raw block: two reductions unless something looks wrong
        mx = x.max(axis=1)
        mn = x.min(axis=1)
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
            state = self._classify_quality(s0, x, mx, mn, rng)
            if state.any():
                bad = state > 0
            if state.any() or self.q_dirty:
                self._quality(s0, state, out)
        elif self.q_dirty:
            self._quality(s0, np.zeros(c, dtype=np.int8), out)
        if bad is not None:
            for ch in np.flatnonzero(bad).tolist():
                if self.eps[ch] is not None:
                    self._end_episode(ch, s0, out, truncated=True)
        # ---- filtering (one SOS cascade: band-pass + notches), restarting channels after gaps
        if self.any_reset:
            idx = np.flatnonzero(self.need_reset)
            self.zi[idx] = self.zi0[None, :, :] * x[idx, 0][:, None, None]
            self.prev_y[idx] = 0.0
            self.settle_until[idx] = np.maximum(self.settle_until[idx], s0 + self.settle_n)
            self.settle_max = max(self.settle_max, s0 + self.settle_n)
        filter_inplace(self.sos, x, self.zi)  # x is now the filtered signal y
        d = self.decim
        m = n // d
        if m == 0:
            self._after_block(s0, n, bad)
            return
        k = m * d
        y = x[:, :k] if k != n else x
        pw = np.empty((2 * c, m))
        np.add.reduce((y * y).reshape(c, m, d), axis=2, out=pw[:c])
        yd = np.add.reduce(y.reshape(c, m, d), axis=2)
        if self.any_reset:
            self.zi_low[idx] = 0.0
        filter_inplace(self.sos_low, yd, self.zi_low)  # gain 1/sqrt(d): squares to the row-sum scale
        np.multiply(yd, yd, out=pw[c:])
        if self.any_reset:
            start = np.where(np.isfinite(self.base_pow), self.base_pow * d, pw[:, 0])
            cols = np.concatenate([idx, idx + c])
            self.zi_env[cols] = self.zi0_env[None, :, :] * start[cols][:, None, None]
            self.need_reset[:] = False
            self.any_reset = False
        filter_inplace(self.sos_env, pw, self.zi_env)
        pe = pw  # smoothed (power, low-band power), mean-scaled
        # decisions run on the power above ~45 Hz: ECG, motion and pop ring-down barely reach it
        env = np.sqrt(np.maximum(pe[:c] - pe[c:], 0.0))
        # ---- onset / offset state machine (thresholds fixed for the block)
        if self.n_busy or (env >= self.on_thr).any():
            above_any = (env >= self.on_thr).any(axis=1)
            for ch in range(c):
                if self.eps[ch] is None and not above_any[ch]:
                    continue
                if bad is not None and bad[ch]:
                    continue
                if not self.base_valid[ch]:
                    continue
                self._run_channel(ch, s0, env, pe, out)
        if self.any_clipped:
            for ch in np.flatnonzero(self.block_clipped).tolist():
                ep_c = self.eps[ch]
                if ep_c is not None:
                    ep_c.clipped = True
            self.block_clipped[:] = False
            self.any_clipped = False
        self.history.append((s0, env))
        if len(self.history) > self.hist_blocks:
            del self.history[0]
        # ---- baseline bookkeeping
        self.seg_buf[self.seg_blocks] = pe[:, m - 1]  # the smoothed power, once per block
        self.seg_blocks += 1
        excl = self.seg_excl
        if bad is not None:
            excl |= bad
        if self.n_busy:
            for ch in range(c):
                if self.eps[ch] is not None:
                    excl[ch] = True
        if s0 < self.settle_max:
            excl |= self.settle_until > s0
        if self.seg_blocks >= self.blocks_per_seg:
            self._push_segment()
        self._after_block(s0, n, bad)

    # ------------------------------------------------------------------------------ internals
    def _after_block(self, s0: int, n: int, bad: FloatArray | None) -> None:
        if bad is not None and bad.any():
            self.need_reset |= bad
            self.any_reset = True
            self.settle_until[bad] = s0 + n + self.settle_bad_n
            self.settle_max = max(self.settle_max, s0 + n + self.settle_bad_n)
        self.processed_until = s0 + n

    def _push_segment(self) -> None:
        c = self.n_ch
        seg = np.maximum(np.median(self.seg_buf[: self.seg_blocks], axis=0), 0.0)
        excl = self.seg_excl
        if excl.any():
            seg[np.concatenate([excl, excl])] = np.inf
        self.bl_ring[self.bl_pos] = seg
        self.bl_pos = (self.bl_pos + 1) % self.bl_len
        self.bl_filled = min(self.bl_filled + 1, self.bl_len)
        self.bl_valid_segs += ~excl
        self.segs_seen += 1
        self.seg_blocks = 0
        excl[:] = False
        if not self.base_valid.all() or self.segs_seen % self.bl_update_segs == 0:
            self._update_baseline()
        del c

    def _classify_quality(
        self, s0: int, x: FloatArray, mx: FloatArray, mn: FloatArray, rng: FloatArray
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
            ep_ch = self.eps[ch]
            if (
                railed
                and ep_ch is not None
                and ep_ch.state == ACTIVE
                and n_rail < cfg.saturation_fraction * n
            ):
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
                line = _mains_line(col, self.rate, cfg.lead_off_mains_uv, s0)
                if line is not None:
                    # A floating input picks up mains and little else. Over one 50 ms block a
                    # sinusoid fit cannot tell hum from a strong motor-unit burst whose power sits
                    # near 50-60 Hz (it happens in ~1 of 500 strong blocks): hum also keeps its
                    # amplitude and phase from one block to the next, EMG does not. So a block is
                    # lead-off when its line continues the previous block's within half its size.
                    f0, z = line
                    prev = self.hum_line[ch]
                    if (
                        prev is not None
                        and self.hum_end[ch] == s0
                        and prev[0] == f0
                        and abs(z - prev[1]) <= 0.5 * abs(prev[1])
                    ):
                        state[ch] = 1
                    self.hum_line[ch] = line
                    self.hum_end[ch] = s0 + n
        return state

    def _update_baseline(self) -> None:
        ring = self.bl_ring[: self.bl_filled]
        est = np.percentile(ring, self.cfg.baseline_percentile, axis=0, method="lower")
        c = self.n_ch
        ok = np.isfinite(est[:c]) & np.isfinite(est[c:]) & (self.bl_valid_segs >= self.bl_min_segs)
        if not ok.any():
            return
        cols = np.concatenate([ok, ok])
        self.base_pow[cols] = est[cols]
        self.base_valid |= ok
        base = np.sqrt(np.maximum(self.base_pow[:c] - self.base_pow[c:], 1e-12))
        cfg = self.cfg
        on = np.maximum(base * cfg.on_ratio, base + cfg.on_min_delta_uv)
        off = np.maximum(base * cfg.off_ratio, base + cfg.off_min_delta_uv)
        self.on_thr = np.where(self.base_valid, on, np.inf)[:, None]
        self.off_thr = np.where(self.base_valid, off, np.inf)
        self.back_thr = np.where(self.base_valid, base * (1.0 + 0.5 * (cfg.off_ratio - 1.0)), np.inf)

    def _backtrack(self, ch: int, s0: int, env_row: list[float], r: int) -> int:
        """Start of the rise: the row after the last one near rest, looking back <= 0.3 s."""
        off = float(self.back_thr[ch])
        d = self.decim
        for i in range(r - 1, -1, -1):
            if env_row[i] < off:
                return s0 + (i + 1) * d
        nxt = s0
        for hs0, henv in reversed(self.history):
            row = henv[ch]
            below = np.flatnonzero(row < off)
            if below.size:
                return hs0 + (int(below[-1]) + 1) * d
            nxt = hs0
        return max(nxt, s0 + r * d - self.max_backtrack)

    def _run_channel(
        self, ch: int, s0: int, env: FloatArray, pe: FloatArray, out: list[DetectorOutput]
    ) -> None:
        c = self.n_ch
        on = float(self.on_thr[ch, 0])
        off = float(self.off_thr[ch])
        d = self.decim
        ep = self.eps[ch]
        first_row = 0  # first row of this block belonging to the episode
        vals = env[ch].tolist()
        if ep is not None and ep.state != CAND and ep.quiet and ep.quiet + len(vals) < self.quiet_rows:
            off_ep = max(off, self.cfg.off_peak_fraction * ep.peak)
            if max(vals) < off_ep:  # fast path: an episode winding down, still quiet
                ep.quiet += len(vals)
                ep.blip = 0
                ep.rows.append(np.stack((pe[ch], pe[c + ch]), axis=1))
                return
        rows = np.stack((pe[ch], pe[c + ch]), axis=1)
        share = (pe[c + ch] / np.maximum(pe[ch], 1e-12)).tolist()
        lf_max = self.cfg.artefact_low_fraction
        frac = self.cfg.off_peak_fraction
        off_ep = off if ep is None else max(off, frac * ep.peak)
        settle = int(self.settle_until[ch])
        for r, v in enumerate(vals):
            rs = s0 + r * d
            if ep is None:
                if v >= on and rs >= settle:
                    onset = self._backtrack(ch, s0, vals, r) - self.lag
                    ep = _Episode(
                        onset=onset, cross_sample=rs, peak=v, above=1, judge_at=rs + 2 * self.judge_n
                    )
                    off_ep = max(off, frac * v)
                    self.eps[ch] = ep
                    self.n_busy += 1
                    first_row = r
                continue
            if ep.state == ARTEFACT and v >= on and ep.quiet > 0 and v >= off_ep:
                # a fresh burst after an artefact: judge it on its own. It must also clear the
                # artefact's own "back near rest" level (a share of its peak): a step excites the
                # mains notches, whose ~60 Hz ring (tau = Q / (pi f), ~0.16 s) looks like EMG
                self.eps[ch] = None
                self.n_busy -= 1
                ep = _Episode(
                    onset=rs - self.lag, cross_sample=rs, peak=v, above=1, judge_at=rs + 2 * self.judge_n
                )
                off_ep = max(off, frac * v)
                self.eps[ch] = ep
                self.n_busy += 1
                first_row = r
                continue
            if ep.state == ARTEFACT and v >= on and rs >= ep.judge_at:
                # re-judge the last stretch: a spasm may start under an artefact (e.g. a QRS)
                ep.judge_at = rs + self.judge_n
                cur = rows[first_row : r + 1]
                recent = (np.concatenate([*ep.rows, cur]) if ep.rows else cur)[-self.judge_rows :]
                if self._low_fraction(ch, recent) <= self.cfg.artefact_low_fraction:
                    # looks like EMG: a new candidate, judged like any other over the next 50 ms
                    self.eps[ch] = None
                    self.n_busy -= 1
                    onset = rs - (recent.shape[0] - 1) * d - self.lag
                    ep = _Episode(
                        onset=onset, cross_sample=rs, peak=v, above=1, judge_at=rs + 2 * self.judge_n
                    )
                    off_ep = max(off, frac * v)
                    self.eps[ch] = ep
                    self.n_busy += 1
                    first_row = r
                    continue
            art = share[r] > lf_max  # this row's power is mostly below 45 Hz: an artefact
            if v >= on and not art:
                ep.above += 1
                if v > ep.peak:
                    ep.peak = v
                    off_ep = max(off, frac * v)
            if v < off_ep:
                if ep.quiet == 0:
                    ep.quiet_start = rs
                ep.quiet += 1
                ep.blip = 0
            elif ep.quiet and (art or (v < on and ep.blip < self.blip_rows)):
                # a brief flicker above "rest", or an artefact (a QRS, a cable knock) during the
                # quiet period, does not restart it
                ep.blip += 0 if art else 1
                ep.quiet += 1
            else:
                ep.quiet = 0
                ep.blip = 0
            if ep.state == CAND and ep.above >= self.confirm_rows and rs - ep.cross_sample >= self.judge_n:
                # cross-talk is judged on the mean power of the last rows, not on one row: the
                # ratio of a copy to its source is steady, one row of a MU train is not
                a = max(0, r + 1 - self.judge_rows)
                hp = np.maximum(pe[:c, a : r + 1] - pe[c:, a : r + 1], 0.0)
                self._confirm(ch, ep, rows[first_row : r + 1], np.sqrt(hp.mean(axis=1)), out)
            if ep.quiet >= self.quiet_rows or rs - ep.onset >= self.max_samples:
                ep.rows.append(rows[first_row : r + 1])
                end = ep.quiet_start if ep.quiet >= self.quiet_rows else rs
                forced = ep.quiet < self.quiet_rows
                self._end_episode(ch, end, out, truncated=False)
                if forced:  # the "rest" level moved: start afresh from here
                    self.bl_ring[:, [ch, ch + c]] = np.inf
                    self.bl_valid_segs[ch] = 0
                    self.base_valid[ch] = False
                    self.on_thr[ch] = np.inf
                    self.off_thr[ch] = np.inf
                    on = off = math.inf
                ep = None
        if ep is not None:
            ep.rows.append(rows[first_row:])

    def _low_fraction(self, ch: int, rows: FloatArray) -> float:
        """Share of the power in excess of rest that lies below 45 Hz (EMG: small; artefacts: most)."""
        n = rows.shape[0]
        ex_p = float(rows[:, 0].sum()) - n * float(self.base_pow[ch])
        ex_l = float(rows[:, 1].sum()) - n * float(self.base_pow[ch + self.n_ch])
        if ex_p <= 0:
            return 1.0
        return min(max(ex_l / ex_p, 0.0), 1.0)

    def _confirm(
        self, ch: int, ep: _Episode, cur_rows: FloatArray, env_col: FloatArray, out: list[DetectorOutput]
    ) -> None:
        rows = np.concatenate([*ep.rows, cur_rows]) if ep.rows else cur_rows
        if self._low_fraction(ch, rows) > self.cfg.artefact_low_fraction:
            ep.state = ARTEFACT
            return
        if self.shape_rows > 1 and float((rows[:, 0] - rows[:, 1]).mean()) < float(self.on_thr[ch, 0]) ** 2:
            # a cut band (low rates): rows crossing the threshold may be the noise peaks of a weak
            # burst; its mean power since the crossing (>= judge_s, several times the envelope's
            # averaging time) must clear the threshold too. Until then it stays a candidate.
            return
        ratio = self.cfg.crosstalk_ratio
        if ratio > 0 and self.n_ch > 1:
            own = float(env_col[ch])
            others = float(np.delete(env_col, ch).max())
            if others >= ratio * own:
                ep.state = ARTEFACT  # cross-talk from a much stronger neighbour
                return
        ep.state = ACTIVE
        label = self.labels[ch]
        ep.key = f"{label}:emg:{ep.onset}"
        base = math.sqrt(max(float(self.base_pow[ch]), 0.0))
        amp = math.sqrt(max(float(rows[:, 0].max()), 0.0))
        out.append(
            Onset(
                key=ep.key,
                channel=label,
                domain="emg",
                onset_sample=ep.onset,
                amplitude_uv=amp,
                baseline_uv=base,
            )
        )
        self.active_spans.append([ep.onset / self.rate, math.inf])
        if len(self.active_spans) > 256:
            del self.active_spans[:128]

    def _end_episode(self, ch: int, end: int, out: list[DetectorOutput], truncated: bool) -> None:
        ep = self.eps[ch]
        self.eps[ch] = None
        if ep is None:
            return
        self.n_busy -= 1
        if ep.state != ACTIVE:
            return
        offset = max(end - self.lag, ep.onset + 1)
        for span in reversed(self.active_spans):
            if span[0] == ep.onset / self.rate and math.isinf(span[1]):
                span[1] = offset / self.rate
                break
        rows = np.concatenate(ep.rows) if ep.rows else np.zeros((1, 2))
        n_keep = max(1, min(rows.shape[0], (end - ep.cross_sample) // self.decim))
        rows = rows[:n_keep]
        env = np.sqrt(np.maximum(rows[:, 0], 0.0))
        base = math.sqrt(max(float(self.base_pow[ch]), 1e-12))
        env_hi = np.sqrt(np.maximum(rows[:, 0] - rows[:, 1], 0.0))
        base_hi = math.sqrt(max(float(self.base_pow[ch] - self.base_pow[ch + self.n_ch]), 1e-12))
        dur = (offset - ep.onset) / self.rate
        env_rh = env_hi
        if self.shape_rows > 1:  # a cut band (low rates): read the shape on a smoother envelope
            env_rh = np.sqrt(np.maximum(_smooth_rows(rows[:, 0] - rows[:, 1], self.rhythm_rows), 0.0))
            rows = np.stack([_smooth_rows(rows[:, j], self.shape_rows) for j in (0, 1)], axis=1)
            env = np.sqrt(np.maximum(rows[:, 0], 0.0))
            env_hi = np.sqrt(np.maximum(rows[:, 0] - rows[:, 1], 0.0))
        freq, regularity = clonus_rhythm(env_rh, base_hi, self.env_rate, self.cfg)
        kind: SpasmType
        if freq is not None:
            kind = "clonus"
        elif dur < self.cfg.twitch_max_s:
            kind = "twitch"
        elif dur <= self.cfg.tonic_min_s:
            kind = "phasic"
        else:
            kind = "tonic"
        peak = float(env.max())
        rel = peak / base
        # rise time: from the onset to the first row at 80 % of the episode's plateau (its upper
        # quartile: robust to one motor-unit peak late in a flat burst)
        i80 = int(np.argmax(env_hi >= 0.8 * float(np.percentile(env_hi, 75))))
        rise = max(0.0, (ep.cross_sample + i80 * self.decim - (ep.onset + self.lag)) / self.rate)
        conf = _confidence(
            rel, self.cfg.on_ratio, self._low_fraction(ch, rows), self.cfg.artefact_low_fraction
        )
        if freq is not None:
            conf = min(conf, 0.5 + 0.5 * regularity)
        if truncated:
            conf *= 0.5
        out.append(
            SpasmEvent(
                key=ep.key,
                type=kind,
                channel=self.labels[ch],
                domain="emg",
                onset_sample=ep.onset,
                offset_sample=offset,
                rate_hz=self.rate,
                peak_uv=peak,
                mean_uv=float(env.mean()),
                baseline_uv=base,
                relative_amplitude=rel,
                frequency_hz=freq,
                confidence=round(conf, 3),
                detector_version=self.version,
                config_hash=self.hash,
                rise_s=round(rise, 4),
                clipped=ep.clipped,
            )
        )

    def _quality(self, s0: int, state: np.ndarray, out: list[DetectorOutput]) -> None:
        """Debounce per-block quality into reported changes (held for ``quality_hold_s``)."""
        dirty = False
        for ch in range(self.n_ch):
            st = int(state[ch])
            if st != self.q_run_state[ch]:
                self.q_run_state[ch] = st
                self.q_run_len[ch] = 0
                self.q_run_start[ch] = s0
            self.q_run_len[ch] += 1
            if st != self.q_reported[ch] and self.q_run_len[ch] >= self.q_hold:
                self.q_reported[ch] = st
                out.append(
                    QualityChange(
                        channel=self.labels[ch],
                        domain="emg",
                        sample=int(self.q_run_start[ch]),
                        state=_QUALITY_NAMES[st],
                    )
                )
            dirty = dirty or st != 0 or self.q_reported[ch] != 0
        self.q_dirty = dirty


def _odd_rows(n: float) -> int:
    """An odd moving-average length in rows (centred, so it shifts nothing), at least 1."""
    return 2 * int(n // 2) + 1 if n >= 2.0 else 1


def _smooth_rows(x: FloatArray, n: int) -> FloatArray:
    """Centred moving average of length ``n`` (odd), shortened at the ends (no zero padding)."""
    if n <= 1 or x.shape[0] < 2:
        return x
    k = np.ones(n)
    return np.convolve(x, k, mode="same") / np.convolve(np.ones(x.shape[0]), k, mode="same")


def _mains_line(col: FloatArray, rate: float, min_uv: float, s0: int) -> tuple[float, complex] | None:
    """The 50 or 60 Hz sinusoid holding most of a block's variance (>= 60 %, >= ``min_uv`` RMS).

    Returns (frequency, complex amplitude referred to sample counter 0, so that blocks can be
    compared) or None.
    """
    n = col.shape[0]
    if n < 8:
        return None
    t = np.arange(n) / rate
    xc = col - col.mean()
    total = float(xc @ xc)
    if total <= 0:
        return None
    for f0 in (50.0, 60.0):
        basis = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t), np.ones(n), t], axis=1)
        coef, *_ = np.linalg.lstsq(basis, col, rcond=None)
        fit = basis[:, :2] @ coef[:2]
        p = float(fit @ fit)
        if p >= 0.6 * total and math.sqrt(p / n) >= min_uv:
            # a sin + b cos = Re[(b - i a) e^{i w t}]; refer the phase to counter 0
            turn = (f0 * s0 / rate) % 1.0
            z = complex(float(coef[1]), -float(coef[0])) * cmath.exp(-2j * math.pi * turn)
            return f0, z
    return None


def _confidence(rel: float, on_ratio: float, low_frac: float, max_low: float) -> float:
    """0..1 from how far the burst clears the onset ratio and how EMG-like its spectrum is."""
    amp = min(1.0, max(0.0, math.log(max(rel, 1e-9) / on_ratio) / math.log(10.0) + 0.5))
    spec = min(1.0, max(0.0, 1.0 - low_frac / max_low + 0.3))
    return 0.2 + 0.8 * amp * spec


def clonus_rhythm(
    env: FloatArray, base: float, rate: float, cfg: DetectorConfig
) -> tuple[float | None, float]:
    """Frequency of the longest run of regular bursts in an episode envelope, if it is clonus.

    Bursts are counted with hysteresis between 25% and 50% of the episode's burst height over rest,
    so the envelope must really fall back between bursts (a sustained contraction with a wobbly
    envelope does not count). A run needs ``clonus_min_cycles`` bursts whose onset intervals lie in
    the clonus band and within ``clonus_jitter`` of the run's median interval, and the run must
    cover at least half of the episode (otherwise it is a wobble within a phasic/tonic spasm).
    Returns (frequency or None, regularity 0..1).
    """
    if env.shape[0] < 4:
        return None, 0.0
    top = float(np.percentile(env, 95))
    height = top - base
    if height <= 0:
        return None, 0.0
    hi = base + 0.5 * height
    lo = base + 0.25 * height
    above_hi = env >= hi
    below_lo = env < lo
    starts: list[int] = []
    armed = True
    # A new burst cannot start within half the shortest clonus period of the previous one: a brief
    # dip inside a burst is the discharge granularity of the few motor units active at its edges
    # (each fires only once or twice in a 50 ms burst), not a silence between reflex cycles.
    refractory = 0.5 * rate / cfg.clonus_max_hz
    # loop over threshold crossings only
    idx = np.flatnonzero(above_hi | below_lo)
    for i in idx.tolist():
        if below_lo[i]:
            armed = True
        elif armed:
            if not starts or i - starts[-1] >= refractory:
                starts.append(i)
            armed = False
    if len(starts) < cfg.clonus_min_cycles:
        return None, 0.0
    iv = np.diff(np.asarray(starts, dtype=float)) / rate
    lo_iv, hi_iv = 1.0 / cfg.clonus_max_hz, 1.0 / cfg.clonus_min_hz
    best: list[float] = []
    run: list[float] = []
    for v in iv.tolist():
        in_band = lo_iv * 0.92 <= v <= hi_iv * 1.08
        if in_band and (
            not run or abs(v - float(np.median(run))) <= cfg.clonus_jitter * float(np.median(run))
        ):
            run.append(v)
        else:
            run = [v] if in_band else []
        if len(run) > len(best):
            best = list(run)
    if len(best) + 1 < cfg.clonus_min_cycles:
        return None, 0.0
    if (len(best) + 1) * float(np.median(best)) < 0.5 * env.shape[0] / rate:
        return None, 0.0  # a short rhythmic stretch inside a long contraction: not a clonus episode
    med = float(np.median(best))
    spread = float(np.std(best)) / med
    return round(1.0 / med, 2), max(0.0, 1.0 - spread / cfg.clonus_jitter)
