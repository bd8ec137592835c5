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
        # Squares and samples stacked, summed by one reduction: numpy's cost here is per call,
        # and its reduce over short rows beats any hand-written sum of them (each slice of a
        # strided view costs a full iterator set-up); rows in contiguous blocks keep every
        # other call on numpy's cheapest path.
        both = np.empty((2 * c, k))
        np.multiply(y, y, out=both[:c])
        both[c:] = y
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
