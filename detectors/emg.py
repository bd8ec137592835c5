"""EMG channel bank: causal preprocessing, adaptive baseline, onset/offset state machine, typing.

Everything runs on fixed blocks (``block_s``, 50 ms by default) laid end to end from the start of
each contiguous segment of the stream. The caller (``SpasmDetector``) cuts whatever chunks it is
given into those blocks, so the arithmetic, and therefore the events, are identical for any
chunking. Within a block all work is vectorised across channels; Python loops only run over the
envelope rows of channels that are inside an episode (rare, and at the 200 Hz envelope rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from detectors.config import DetectorConfig
from detectors.events import DetectorOutput, Onset, QualityChange, QualityState, SpasmEvent, SpasmType

IDLE, CAND, ACTIVE, ARTEFACT = 0, 1, 2, 3
_QUALITY_NAMES: tuple[QualityState, ...] = ("ok", "lead_off", "saturated")
FloatArray = np.ndarray


def design_emg_filter(cfg: DetectorConfig, rate_hz: float, mains_hz: int | None) -> np.ndarray:
    """Band-pass (capped below Nyquist) followed by mains notches, as one SOS cascade."""
    high = min(cfg.band_high_hz, 0.45 * rate_hz)
    low = min(cfg.band_low_hz, 0.5 * high)
    sos = signal.butter(cfg.band_order, [low, high], btype="bandpass", fs=rate_hz, output="sos")
    parts = [sos]
    if mains_hz is not None:
        for h in range(1, cfg.mains_max_harmonic + 1):
            f0 = h * mains_hz
            if f0 >= high or f0 >= 0.48 * rate_hz:
                break
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


@dataclass(slots=True)
class _Episode:
    onset: int  # raw sample (after delay compensation)
    cross_sample: int  # row start sample of the first row above the onset threshold
    rows: list[FloatArray] = field(default_factory=list)  # (k, 2): power, diff power per row
    above: int = 0
    quiet: int = 0
    quiet_start: int = 0
    state: int = CAND
    key: str = ""
    peak: float = 0.0
    blip: int = 0


class EmgBank:
    """All EMG channels of one stream; ``process_block`` is the only entry point for data."""

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
        self.zi0 = signal.sosfilt_zi(self.sos)  # (nsec, 2)
        self.zi = np.zeros((self.sos.shape[0], 2, c))
        cutoff = min(cfg.envelope_cutoff_hz, 0.4 * self.env_rate)
        self.sos_env = signal.butter(2, cutoff, btype="lowpass", fs=self.env_rate, output="sos")
        self.zi0_env = signal.sosfilt_zi(self.sos_env)
        self.zi_env = np.zeros((self.sos_env.shape[0], 2, 2 * c))
        # Delay of the envelope behind the muscle: half a decimation row plus the low-pass group delay.
        self.lag = round(0.5 * self.decim + math.sqrt(2) / (2 * math.pi * cutoff) * rate_hz)
        self.prev_y = np.zeros(c)
        self.need_reset = np.ones(c, dtype=bool)
        self.settle_until = np.zeros(c, dtype=np.int64)  # raw sample before which no onsets
        self.settle_n = round(cfg.settle_s * rate_hz)
        # baseline: ring of block-mean powers (power and diff-power columns), +inf = excluded
        seg_s = 0.5
        self.blocks_per_seg = max(1, round(seg_s / cfg.block_s))
        seg_s = self.blocks_per_seg * cfg.block_s
        self.bl_len = max(2, round(cfg.baseline_window_s / seg_s))
        self.bl_ring = np.full((self.bl_len, 2 * c), np.inf)
        self.bl_pos = 0
        self.bl_filled = 0
        self.bl_valid_segs = np.zeros(c, dtype=np.int64)
        self.bl_min_segs = max(1, round(cfg.baseline_min_s / seg_s))
        self.bl_update_segs = max(1, round(cfg.baseline_update_s / seg_s))
        self.segs_seen = 0
        self.seg_sum = np.zeros(2 * c)
        self.seg_rows = 0
        self.seg_blocks = 0
        self.seg_excl = np.zeros(c, dtype=bool)
        self.base_pow = np.full(2 * c, np.nan)
        self.base_valid = np.zeros(c, dtype=bool)
        self.on_thr = np.full(c, np.inf)
        self.off_thr = np.full(c, np.inf)
        # state machine
        self.eps: list[_Episode | None] = [None] * c
        self.last_below = np.zeros(c, dtype=np.int64)  # row start sample of last row below off_thr
        self.confirm_rows = max(1, round(cfg.confirm_s * self.env_rate))
        self.quiet_rows = max(1, round(cfg.quiet_s * self.env_rate))
        self.blip_rows = round(cfg.quiet_blip_s * self.env_rate)
        self.max_samples = int(cfg.max_episode_s * rate_hz)
        self.max_backtrack = int(0.25 * rate_hz)  # a rise slower than this is not one onset
        # quality
        self.q_reported = np.zeros(c, dtype=np.int8)
        self.q_run_state = np.zeros(c, dtype=np.int8)
        self.q_run_len = np.zeros(c, dtype=np.int64)
        self.q_run_start = np.zeros(c, dtype=np.int64)
        self.q_hold = max(1, round(cfg.quality_hold_s / cfg.block_s))
        self.q_bad = np.zeros(c, dtype=bool)
        self.rail_count = max(3, math.ceil(cfg.rail_fraction * self.block))
        # confirmed episodes (seconds) for the tremor rule "with weak EMG": [onset_s, offset_s]
        self.active_spans: list[list[float]] = []
        self.processed_until = 0  # raw sample just after the last processed block

    # ------------------------------------------------------------------------------------ API
    def reset_filters(self) -> None:
        """After a gap: filters restart (at steady state on their first sample) and settle."""
        self.need_reset[:] = True

    def close_all(self, at: int, out: list[DetectorOutput], truncated: bool) -> None:
        for c in range(self.n_ch):
            if self.eps[c] is not None:
                self._end_episode(c, at, out, truncated=truncated)

    def process_block(self, s0: int, x: FloatArray, out: list[DetectorOutput]) -> None:
        """Process one block ``x`` (n, C), n <= block; ``s0`` is the raw counter of ``x[0]``."""
        n, c = x.shape
        cfg = self.cfg
        # ---- signal quality on the raw block (cheap: two reductions in the normal case)
        mx = x.max(axis=0)
        mn = x.min(axis=0)
        rng = mx - mn
        bad_state = np.zeros(c, dtype=np.int8)
        flat = (rng < cfg.flat_range_uv) | (np.abs(mx + mn) * 0.5 > cfg.lead_off_dc_uv)
        wide = rng > cfg.saturation_min_range_uv
        if cfg.full_scale_uv is not None:
            wide |= (mx >= 0.99 * cfg.full_scale_uv) | (mn <= -0.99 * cfg.full_scale_uv)
        if wide.any():
            for ch in np.flatnonzero(wide & ~flat).tolist():
                col = x[:, ch]
                tol = 1e-6 * max(abs(mx[ch]), abs(mn[ch]), 1.0)
                n_hi = int(np.count_nonzero(col >= mx[ch] - tol))
                n_lo = int(np.count_nonzero(col <= mn[ch] + tol))
                railed = max(n_hi, n_lo) >= min(self.rail_count, max(3, n // 4))
                if cfg.full_scale_uv is not None:
                    fs_ = 0.99 * cfg.full_scale_uv
                    railed = railed or int(np.count_nonzero(np.abs(col) >= fs_)) >= self.rail_count
                if railed:
                    bad_state[ch] = 2
        bad_state[flat] = 1
        if bad_state.any() or self.q_reported.any() or self.q_run_state.any():
            self._quality(s0, bad_state, out)
        bad = bad_state > 0
        if bad.any():
            for ch in np.flatnonzero(bad).tolist():
                if self.eps[ch] is not None:
                    self._end_episode(ch, s0, out, truncated=True)
        # ---- filtering (one SOS cascade: band-pass + notches), restarting channels after gaps
        if self.need_reset.any():
            idx = np.flatnonzero(self.need_reset)
            self.zi[:, :, idx] = self.zi0[:, :, None] * x[0, idx][None, None, :]
            self.prev_y[idx] = 0.0
            self.settle_until[idx] = s0 + self.settle_n
        y, self.zi = signal.sosfilt(self.sos, x, axis=0, zi=self.zi)
        m = n // self.decim
        if m == 0:
            self.need_reset |= bad
            self.processed_until = s0 + n
            return
        k = m * self.decim
        pw = np.empty((k, 2 * c))
        np.multiply(y[:k], y[:k], out=pw[:, :c])
        d = pw[:, c:]
        d[0] = y[0] - self.prev_y
        np.subtract(y[1:k], y[: k - 1], out=d[1:])
        np.multiply(d, d, out=d)
        self.prev_y = y[n - 1].copy()
        pm = pw.reshape(m, self.decim, 2 * c).mean(axis=1)
        if self.need_reset.any():
            idx = np.flatnonzero(self.need_reset)
            start = np.where(np.isfinite(self.base_pow), self.base_pow, pm[0])
            cols = np.concatenate([idx, idx + c])
            self.zi_env[:, :, cols] = self.zi0_env[:, :, None] * start[cols][None, None, :]
            self.need_reset[:] = False
        pe, self.zi_env = signal.sosfilt(self.sos_env, pm, axis=0, zi=self.zi_env)
        np.maximum(pe, 0.0, out=pe)
        env = np.sqrt(pe[:, :c])
        # ---- onset / offset state machine (thresholds fixed for the block)
        enabled = self.base_valid & ~bad
        above = env >= self.on_thr
        busy = [ch for ch in range(c) if self.eps[ch] is not None]
        if busy or above.any():
            settle_rows = (self.settle_until - s0 + self.decim - 1) // self.decim
            hits = np.flatnonzero(above.any(axis=0) & enabled)
            for ch in sorted(set(busy) | set(hits.tolist())):
                if bad[ch]:
                    continue
                self._run_channel(int(ch), s0, env[:, ch], pe[:, [ch, ch + c]], int(settle_rows[ch]), out)
        below = env < self.off_thr
        rev = below[::-1]
        has = rev.any(axis=0)
        if has.any():
            last = s0 + (m - 1 - rev.argmax(axis=0)) * self.decim
            idle = np.array([e is None for e in self.eps])
            upd = has & idle
            self.last_below[upd] = np.maximum(self.last_below[upd], last[upd])
        # ---- baseline: 0.5 s segment means into a ring; segments touching an episode, an
        # unsettled filter or bad quality are left out (+inf), so activity cannot drag it up
        self.seg_sum += pe.sum(axis=0)
        self.seg_rows += m
        excl = self.seg_excl
        excl |= bad | (self.settle_until > s0)
        for ch in busy:
            excl[ch] = True  # was in an episode at the block start
        for ch in range(c):
            if self.eps[ch] is not None:
                excl[ch] = True
        self.seg_blocks += 1
        if self.seg_blocks >= self.blocks_per_seg:
            bm = self.seg_sum / self.seg_rows
            if excl.any():
                bm[np.concatenate([excl, excl])] = np.inf
            self.bl_ring[self.bl_pos] = bm
            self.bl_pos = (self.bl_pos + 1) % self.bl_len
            self.bl_filled = min(self.bl_filled + 1, self.bl_len)
            self.bl_valid_segs += ~excl
            self.segs_seen += 1
            self.seg_sum[:] = 0.0
            self.seg_rows = 0
            self.seg_blocks = 0
            excl[:] = False
            if not self.base_valid.all() or self.segs_seen % self.bl_update_segs == 0:
                self._update_baseline()
        self.need_reset |= bad
        self.processed_until = s0 + n

    # ------------------------------------------------------------------------------ internals
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
        base = np.sqrt(np.maximum(self.base_pow[:c], 1e-12))
        cfg = self.cfg
        on = np.maximum(base * cfg.on_ratio, base + cfg.on_min_delta_uv)
        off = np.maximum(base * cfg.off_ratio, base + cfg.off_min_delta_uv)
        self.on_thr = np.where(self.base_valid, on, np.inf)
        self.off_thr = np.where(self.base_valid, off, np.inf)

    def _run_channel(
        self, ch: int, s0: int, env: FloatArray, rows: FloatArray, settle_rows: int, out: list[DetectorOutput]
    ) -> None:
        on = float(self.on_thr[ch])
        off = float(self.off_thr[ch])
        d = self.decim
        ep = self.eps[ch]
        first_row = 0  # first row of this block belonging to the episode
        vals = env.tolist()
        frac = self.cfg.off_peak_fraction
        off_ep = off if ep is None else max(off, frac * ep.peak)
        for r, v in enumerate(vals):
            rs = s0 + r * d
            if ep is None:
                if v >= on and r >= settle_rows:
                    onset = max(int(self.last_below[ch]) + d, rs - self.max_backtrack) - self.lag
                    ep = _Episode(onset=onset, cross_sample=rs, peak=v)
                    off_ep = max(off, frac * v)
                    self.eps[ch] = ep
                    first_row = r
                    ep.above = 1
                    if self.confirm_rows <= 1:
                        self._confirm(ch, ep, rows[first_row : r + 1], out)
                elif v < off:
                    self.last_below[ch] = rs
                continue
            if v >= on:
                ep.above += 1
                if v > ep.peak:
                    ep.peak = v
                    off_ep = max(off, frac * v)
            if v < off_ep:
                if ep.quiet == 0:
                    ep.quiet_start = rs
                ep.quiet += 1
                ep.blip = 0
            elif ep.quiet and v < on and ep.blip < self.blip_rows:
                ep.blip += 1  # a brief flicker above "rest" does not restart the quiet period
                ep.quiet += 1
            else:
                ep.quiet = 0
                ep.blip = 0
            if ep.state == CAND and ep.above >= self.confirm_rows:
                self._confirm(ch, ep, rows[first_row : r + 1], out)
            if ep.quiet >= self.quiet_rows or rs - ep.onset >= self.max_samples:
                ep.rows.append(rows[first_row : r + 1].copy())
                end = ep.quiet_start if ep.quiet >= self.quiet_rows else rs
                forced = ep.quiet < self.quiet_rows
                self._end_episode(ch, end, out, truncated=False)
                if forced:  # the "rest" level moved: start afresh from here
                    self.bl_ring[:, [ch, ch + self.n_ch]] = np.inf
                    self.bl_valid_segs[ch] = 0
                    self.base_valid[ch] = False
                    self.on_thr[ch] = np.inf
                    self.off_thr[ch] = np.inf
                    on = off = math.inf
                self.last_below[ch] = rs
                ep = None
        if ep is not None:
            ep.rows.append(rows[first_row:].copy())

    def _excess_freq(self, ch: int, rows: FloatArray) -> float:
        """Mean frequency (Hz) of the power in excess of rest, from power and first-difference power."""
        n = rows.shape[0]
        ex_p = float(rows[:, 0].sum()) - n * float(self.base_pow[ch])
        ex_d = float(rows[:, 1].sum()) - n * float(self.base_pow[ch + self.n_ch])
        if ex_p <= 0:
            return 0.0
        ratio = min(max(ex_d / ex_p, 0.0), 4.0)
        return self.rate / math.pi * math.asin(math.sqrt(ratio) / 2.0)

    def _confirm(self, ch: int, ep: _Episode, cur_rows: FloatArray, out: list[DetectorOutput]) -> None:
        rows = np.concatenate([*ep.rows, cur_rows]) if ep.rows else cur_rows
        if self._excess_freq(ch, rows) < self.cfg.emg_min_freq_hz:
            ep.state = ARTEFACT
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
        if ep is None or ep.state != ACTIVE:
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
        dur = (offset - ep.onset) / self.rate
        freq, regularity = clonus_rhythm(env, base, self.env_rate, self.cfg)
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
        f_ex = self._excess_freq(ch, rows)
        conf = _confidence(rel, self.cfg.on_ratio, f_ex, self.cfg.emg_min_freq_hz)
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
            )
        )

    def _quality(self, s0: int, state: np.ndarray, out: list[DetectorOutput]) -> None:
        """Debounce per-block quality into reported changes (held for ``quality_hold_s``)."""
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


def _confidence(rel: float, on_ratio: float, f_ex: float, f_min: float) -> float:
    """0..1 from how far the burst clears the onset ratio and how EMG-like its spectrum is."""
    amp = min(1.0, max(0.0, math.log(max(rel, 1e-9) / on_ratio) / math.log(10.0) + 0.5))
    spec = min(1.0, max(0.0, (f_ex - f_min) / f_min + 0.5))
    return 0.2 + 0.8 * amp * spec


def clonus_rhythm(
    env: FloatArray, base: float, rate: float, cfg: DetectorConfig
) -> tuple[float | None, float]:
    """Frequency of the longest run of regular bursts in an episode envelope, if it is clonus.

    Bursts are counted with hysteresis between 25% and 50% of the episode's burst height over rest,
    so the envelope must really fall back between bursts (a sustained contraction with a wobbly
    envelope does not count). A run needs ``clonus_min_cycles`` bursts whose onset intervals lie in
    the clonus band and within ``clonus_jitter`` of the run's median interval.
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
    # loop over threshold crossings only
    idx = np.flatnonzero(above_hi | below_lo)
    for i in idx.tolist():
        if below_lo[i]:
            armed = True
        elif armed:
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
    med = float(np.median(best))
    spread = float(np.std(best)) / med
    return round(1.0 / med, 2), max(0.0, 1.0 - spread / cfg.clonus_jitter)
