"""EMG preprocessing: band-pass + mains notches, decimated power envelope, and its artefact band.

One job: turn raw EMG (channels, samples) into the smoothed power rows the decision logic reads,
carrying every filter state across calls, so that cutting the stream into blocks anywhere gives
the same rows (the SOS kernel runs sample by sample: carried state is exact, not approximate).
"""

from __future__ import annotations

import math

import numpy as np

from detectors import designs
from detectors.config import DetectorConfig
from detectors.sos import filter_inplace

FloatArray = np.ndarray


def design_emg_filter(cfg: DetectorConfig, rate_hz: float, mains_hz: int | None) -> np.ndarray:
    """Band-pass (capped below Nyquist) followed by mains notches (odd harmonics), as one SOS cascade."""
    low, high = cfg.emg_band(rate_hz)
    sos = designs.butter_sos(cfg.band_order, [low, high], "bandpass", rate_hz)
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
            parts.append(designs.notch_sos(f0, cfg.notch_q, rate_hz))
    return np.ascontiguousarray(np.vstack(parts))


def detect_mains(x: FloatArray, rate_hz: float, min_ratio: float = 10.0) -> int | None:
    """Pick 50 or 60 Hz from the hum peaks in a stretch of raw EMG, or None when there is no hum.

    Compares spectral peaks at the first three harmonics with the median of neighbouring bins;
    a hum needs a clear narrow peak (``min_ratio`` x the power, ``DetectorConfig.mains_detect_ratio``)
    on at least one channel.
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
    return f_best if score[f_best] >= min_ratio else None


#: Rows of up to this many samples are summed by ``_row_sums``; longer ones by numpy's reduce
#: (which is faster there: the per-row call overhead that makes it slow on short rows is shared).
_ROW_SUMS_MAX = 15
#: decimation factor -> ``_row_sums`` reproduces ``np.add.reduce(.., axis=-1)`` bit for bit here
_ROW_SUMS_OK: dict[int, bool] = {}
#: Up to this many rows per sample of a row (a streaming block: 16 rows of 10 at 2 kHz on 8
#: channels) numpy's reduce is the faster of the two (its per-row inner-loop calls cost less than
#: ``_row_sums``'s handful of calls on strided views, each a full iterator set-up, on numpy 2);
#: on longer stretches (offline, ``process_blocks``) ``_row_sums`` is, several times over.
_REDUCE_ROWS = 32


def _row_sums(y3: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """``np.add.reduce(y3, axis=-1)`` for rows of ``d`` < 16 samples, bit for bit, several times
    faster on the detector's rows (d = 5 at 1 kHz, 10 at 2 kHz).

    numpy sums each short row in its own inner-loop call (most of the time goes to calling it),
    in the order of its pairwise summation: below 8 terms one after another, from 8 to 15 as 8
    partial sums (((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))) and then the rest one by one.
    Here the same additions, in the same order, run across all rows at once (one numpy call per
    term, or per level of the 8-term tree). Whether this numpy sums in that order is checked once
    per ``d`` (``_row_sums_ok``).
    """
    d = y3.shape[-1]
    if d == 1:
        if out is None:
            return y3[..., 0].copy()
        out[...] = y3[..., 0]
        return out
    if d < 8:
        s = np.add(y3[..., 0], y3[..., 1], out=out)
        for j in range(2, d):
            s += y3[..., j]
        return s
    # the 8 partial sums pairwise, each level in one call: (r0 + r1), (r2 + r3), ... then
    # ((r0 + r1) + (r2 + r3)), ((r4 + r5) + (r6 + r7)), then their sum: the same additions
    p = y3[..., 0:8:2] + y3[..., 1:8:2]
    q = p[..., 0::2] + p[..., 1::2]
    s = np.add(q[..., 0], q[..., 1], out=out)
    for j in range(8, d):
        s += y3[..., j]
    return s


def _row_sums_ok(d: int) -> bool:
    """Does ``_row_sums`` give numpy's sums bit for bit for rows of ``d``? (Once per process and
    ``d``, on values spread over 12 decades, where any other order of additions shows.)"""
    ok = _ROW_SUMS_OK.get(d)
    if ok is None:
        # deterministic values of both signs over 12 decades (numpy.random is not loaded for
        # this: a fresh ``neurospasm detect`` process would pay its import)
        k = np.arange(3 * 64 * d, dtype=np.float64).reshape(3, 64, d)
        u, v = (np.sin(k * 12.9898 + 0.5) * 43758.5453) % 1.0, (np.sin(k * 78.233 + 1.5) * 24634.6345) % 1.0
        y3 = (u - 0.5) * 10.0 ** (12.0 * v - 6.0)
        ok = d <= _ROW_SUMS_MAX and bool(np.array_equal(_row_sums(y3), np.add.reduce(y3, axis=-1)))
        _ROW_SUMS_OK[d] = ok
    return ok


class EmgFilters:
    """The filter chain of all channels, with its states; ``run`` is its one operation.

    raw -> band-pass + notches -> per-row power (sum of ``decim`` squared samples) and the power
    of the row sums low-passed at ``artefact_band_hz`` -> both smoothed by the envelope low-pass.
    Channels flagged in ``need_reset`` restart at steady state on their next sample (after a gap
    or a lead-off/saturated block).
    """

    def __init__(self, cfg: DetectorConfig, rate_hz: float, n_ch: int, mains_hz: int | None) -> None:
        c = n_ch
        self.n_ch = c
        self.decim = max(1, round(rate_hz / cfg.envelope_rate_hz))
        self.env_rate = rate_hz / self.decim
        self.sos = design_emg_filter(cfg, rate_hz, mains_hz)
        self.zi0 = designs.sosfilt_zi(self.sos)  # (sections, 2): steady state for a unit step
        self.zi = np.zeros((c, self.sos.shape[0], 2))
        #: Top of the low band of the decimated signal (Hz): where ECG, motion and pops put their
        #: energy; the envelope above it is the muscle's.
        self.split_hz = min(cfg.artefact_band_hz, 0.4 * self.env_rate)
        sos_low = designs.butter_sos(2, self.split_hz, "lowpass", self.env_rate)
        sos_low[0, :3] /= math.sqrt(self.decim)  # rows are sums of d samples; power rows too
        self.sos_low = np.ascontiguousarray(sos_low)
        self.zi_low = np.zeros((c, 1, 2))
        cutoff = min(cfg.envelope_cutoff_hz, 0.4 * self.env_rate)
        sos_env = designs.butter_sos(2, cutoff, "lowpass", self.env_rate)
        self.zi0_env = designs.sosfilt_zi(sos_env)
        sos_env[0, :3] /= self.decim  # the decimator sums rows; the 1/D of the mean goes here
        self.sos_env = np.ascontiguousarray(sos_env)
        self.zi_env = np.zeros((2 * c, 1, 2))
        #: Delay of the envelope behind the muscle (raw samples): half a decimation row plus the
        #: low-pass group delay.
        self.lag = round(0.5 * self.decim + math.sqrt(2) / (2 * math.pi * cutoff) * rate_hz)
        self.need_reset = np.ones(c, dtype=bool)
        self.any_reset = True
        #: sum the decimation rows of long stretches with ``_row_sums`` (numpy's own reduce where
        #: it would differ)
        self.fast_rows = _row_sums_ok(self.decim)

    def reset(self, channels: np.ndarray | None = None) -> None:
        """Restart ``channels`` (a boolean mask; all when None) on their next sample."""
        if channels is None:
            self.need_reset[:] = True
        else:
            self.need_reset |= channels
        self.any_reset = True

    def run(self, x: FloatArray, base_pow: FloatArray) -> FloatArray | None:
        """Filter ``x`` (C, n) in place; return the smoothed power rows ``pe`` (2C, n // decim).

        Rows ``pe[:C]`` are the band power, ``pe[C:]`` its artefact-band part, both mean-scaled.
        ``base_pow`` (2C,) is the resting power, where restarted envelope filters start (NaN: the
        channel's first row). None when ``x`` is shorter than one row (restarts then stay pending).
        """
        c, n = x.shape
        idx = np.flatnonzero(self.need_reset) if self.any_reset else None
        if idx is not None:
            self.zi[idx] = self.zi0[None, :, :] * x[idx, 0][:, None, None]
        filter_inplace(self.sos, x, self.zi)  # x is now the filtered signal y
        d = self.decim
        m = n // d
        if m == 0:
            return None
        k = m * d
        y = x[:, :k] if k != n else x
        pw = np.empty((2 * c, m))
        # squares and samples stacked, summed in one go (the cost here is per numpy call)
        both = np.empty((2 * c, k))
        np.multiply(y, y, out=both[:c])
        both[c:] = y
        if self.fast_rows and 2 * c * m > _REDUCE_ROWS * d:
            _row_sums(both.reshape(2 * c, m, d), out=pw)
        else:
            np.add.reduce(both.reshape(2 * c, m, d), axis=2, out=pw)
        yd = pw[c:]  # the row sums, low-passed and squared in place
        if idx is not None:
            self.zi_low[idx] = 0.0
        filter_inplace(self.sos_low, yd, self.zi_low)  # gain 1/sqrt(d): squares to the row-sum scale
        np.multiply(yd, yd, out=pw[c:])
        if idx is not None:
            start = np.where(np.isfinite(base_pow), base_pow * d, pw[:, 0])
            cols = np.concatenate([idx, idx + c])
            self.zi_env[cols] = self.zi0_env[None, :, :] * start[cols][:, None, None]
            self.need_reset[:] = False
            self.any_reset = False
        filter_inplace(self.sos_env, pw, self.zi_env)
        return pw


def high_envelope(pe: FloatArray, c: int) -> FloatArray:
    """Envelope (uV) of the power above the artefact band: ECG, motion and pop ring-down barely reach it."""
    return np.sqrt(np.maximum(pe[:c] - pe[c:], 0.0))
