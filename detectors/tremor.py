"""Tremor from the accelerometer: a sustained spectral peak at 3-12 Hz.

The 3-axis signal is band-passed (2-15 Hz: gravity and posture changes are near DC, walking
cadence ~2 Hz), then every ``tremor_hop_s`` the last ``tremor_window_s`` is analysed: a window is
tremor-like when its movement power is concentrated in a narrow peak inside the tremor band and
its RMS is above ``tremor_min_rms_g``. Consecutive tremor-like windows at a consistent frequency
form one episode; an episode lasting ``tremor_min_s`` is a tremor. Onset and offset are refined to
the hop (125 ms) from the per-hop amplitude.

Analysis points are laid every hop from the start of each contiguous segment, so the results do
not depend on how the stream is chunked.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from detectors import designs
from detectors.config import DetectorConfig
from detectors.sos import filter_inplace


@dataclass(slots=True)
class TremorEpisode:
    onset: int
    freqs: list[float] = field(default_factory=list)
    rms: list[float] = field(default_factory=list)
    last_end: int = 0  # end sample of the last tremor-like window
    misses: int = 0
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class TremorResult:
    """A finished tremor episode (the detector turns it into a SpasmEvent)."""

    onset: int
    offset: int
    frequency_hz: float
    rms_g: float
    confidence: float
    truncated: bool


class TremorTracker:
    """Accelerometer stream state. ``feed`` returns (confirmations, finished episodes)."""

    def __init__(self, cfg: DetectorConfig, rate_hz: float) -> None:
        self.cfg = cfg
        self.rate = float(rate_hz)
        nyq = 0.5 * rate_hz
        self.hi_hz = min(15.0, 0.9 * nyq)
        self.sos = designs.butter_sos(2, [1.5, self.hi_hz], "bandpass", rate_hz)
        self.zi0 = designs.sosfilt_zi(self.sos)
        self.win = max(8, round(cfg.tremor_window_s * rate_hz))
        self.hop = max(1, round(cfg.tremor_hop_s * rate_hz))
        nfft = 1 << max(8, math.ceil(math.log2(self.win)))
        self.nfft = nfft
        self.freqs = np.fft.rfftfreq(nfft, 1.0 / rate_hz)
        self.taper = np.hanning(self.win)[None, :]
        f_hi = min(cfg.tremor_max_hz, 0.9 * nyq)
        self.band = (self.freqs >= cfg.tremor_min_hz) & (self.freqs <= f_hi)
        self.total = (self.freqs >= 1.0) & (self.freqs <= min(20.0, 0.95 * nyq))
        self.min_samples = round(cfg.tremor_min_s * rate_hz)
        self.level = 0.4  # share of the episode's RMS that marks a hop as "moving"
        self.reset()
        self.hops: deque[tuple[int, float]] = deque(maxlen=self.win // self.hop + 64)

    def reset(self) -> None:
        self.zi: np.ndarray | None = None
        self.buf = np.zeros((3, self.win + 512))  # filtered samples; the last ``win`` are kept
        self.fill = 0
        self.seg_count = 0
        self.seg_start = 0
        self.ep: TremorEpisode | None = None
        if hasattr(self, "hops"):
            self.hops.clear()

    def feed(self, start: int, x: np.ndarray) -> tuple[list[tuple[int, int]], list[TremorResult]]:
        """Filter a chunk (n, 3) and analyse every hop boundary it completes."""
        confirms: list[tuple[int, int]] = []
        done: list[TremorResult] = []
        n = x.shape[0]
        if n == 0:
            return confirms, done
        y = np.array(x.T, order="C")  # (3, n)
        if self.zi is None:
            self.zi = np.ascontiguousarray(self.zi0[None, :, :] * y[:, 0][:, None, None])
            self.seg_start = start
        filter_inplace(self.sos, y, self.zi)
        buf, hop, cap = self.buf, self.hop, self.buf.shape[1]
        pos = 0
        while pos < n:
            if self.fill == cap:  # keep the last window, drop the rest
                keep = min(self.fill, self.win)
                buf[:, :keep] = buf[:, self.fill - keep : self.fill]
                self.fill = keep
            take = min(n - pos, cap - self.fill)
            buf[:, self.fill : self.fill + take] = y[:, pos : pos + take]
            first = self.seg_count
            last = first + take
            k = (first // hop + 1) * hop
            while k <= last:
                end = self.fill + (k - first)
                seg = buf[:, max(0, end - hop) : end]
                end_abs = self.seg_start + k
                self.hops.append((end_abs - seg.shape[1], math.sqrt(float(np.vdot(seg, seg)) / seg.shape[1])))
                if k >= self.win and (k // hop) % 2 == 0:  # spectra every other hop (250 ms)
                    self._analyse(buf[:, end - self.win : end], end_abs, confirms, done)
                k += hop
            self.fill += take
            self.seg_count = last
            pos += take
        return confirms, done

    def analyses_within(self, n: int) -> bool:
        """Whether ``n`` more samples would reach an analysis point: the only places ``feed``
        confirms or ends an episode (a hop end ``k`` samples into the segment, ``k`` a multiple
        of two hops and at least a window). Lets a caller batch the samples in between."""
        step = 2 * self.hop
        k = (self.seg_count + n) // step * step  # the last such hop end within the n samples
        return k > self.seg_count and k >= self.win

    def close(self, at: int) -> list[TremorResult]:
        """End of segment (gap or end of stream): finish a confirmed episode, truncated."""
        out: list[TremorResult] = []
        if self.ep is not None and self.ep.confirmed:
            out.append(self._result(self.ep, at, truncated=True))
        self.reset()
        return out

    def _analyse(
        self, w: np.ndarray, end: int, confirms: list[tuple[int, int]], done: list[TremorResult]
    ) -> None:
        cfg = self.cfg
        wc = w  # band-passed from 1.5 Hz: already zero-mean
        rms = math.sqrt(float(np.vdot(wc, wc)) / w.shape[1])
        ok = False
        f_peak = 0.0
        if rms >= cfg.tremor_min_rms_g:  # the spectrum only for a limb that moves (not at rest)
            spec = np.fft.rfft(wc * self.taper, n=self.nfft, axis=1)
            p = (spec.real**2 + spec.imag**2).sum(axis=0)
            band_p = np.where(self.band, p, 0.0)
            kp = int(band_p.argmax())
            f_peak = float(self.freqs[kp])
            near = np.abs(self.freqs - f_peak) <= 0.75
            tot = float(p[self.total].sum())
            ok = tot > 0 and float(p[near].sum()) / tot >= cfg.tremor_peak_ratio
            if ok and kp > 0 and kp + 1 < p.shape[0]:  # parabolic interpolation of the peak
                a, b, c = math.log(p[kp - 1] + 1e-30), math.log(p[kp] + 1e-30), math.log(p[kp + 1] + 1e-30)
                den = a - 2 * b + c
                if den < 0:
                    f_peak += 0.5 * (a - c) / den * float(self.freqs[1])
        ep = self.ep
        if ok and ep is not None and abs(f_peak - float(np.median(ep.freqs))) > cfg.tremor_freq_tol_hz:
            ok_same = False
        else:
            ok_same = ok
        if ok_same:
            if ep is None:
                ep = TremorEpisode(onset=self._refine_onset(end, rms))
                self.ep = ep
            ep.freqs.append(f_peak)
            ep.rms.append(rms)
            ep.last_end = end
            ep.misses = 0
            if not ep.confirmed and end - ep.onset >= self.min_samples:
                ep.confirmed = True
                confirms.append((ep.onset, end))
        elif ep is not None:
            ep.misses += 1
            if ep.misses >= 2 or ok:  # a different rhythm ends this one
                if ep.confirmed:
                    done.append(self._result(ep, self._refine_offset(ep), truncated=False))
                self.ep = None

    def _refine_onset(self, end: int, rms: float) -> int:
        """First hop of the window whose amplitude reaches half the window's RMS."""
        start = end - self.win
        for s, r in self.hops:
            if s >= start and r >= self.level * rms:
                # it began within the hop before the first loud one, but never before the
                # segment did: a tremor under way when the stream (or a gap) ended starts
                # with the first sample there is, not in samples nobody received
                return max(s - self.hop // 2, self.seg_start)
        return max(start, self.seg_start)

    def _refine_offset(self, ep: TremorEpisode) -> int:
        """End of the last hop, within the last tremor-like window, still at half the episode RMS."""
        level = self.level * float(np.median(ep.rms))
        off = ep.last_end - self.win // 2
        for s, r in self.hops:
            if ep.last_end - self.win <= s < ep.last_end and r >= level:
                off = s + self.hop + self.hop // 2
        return off

    def _result(self, ep: TremorEpisode, offset: int, truncated: bool) -> TremorResult:
        freqs = np.asarray(ep.freqs)
        f = float(np.median(freqs))
        spread = float(freqs.std()) if freqs.size > 1 else 0.0
        conf = max(0.2, 1.0 - spread / self.cfg.tremor_freq_tol_hz) * (0.5 if truncated else 1.0)
        return TremorResult(
            onset=ep.onset, offset=max(offset, ep.onset + 1), frequency_hz=round(f, 2),
            rms_g=float(np.median(ep.rms)), confidence=round(conf, 3), truncated=truncated,
        )  # fmt: skip
