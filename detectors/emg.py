"""EMG channel bank: the EMG side of the detector, composed of parts with one job each.

* ``emg_quality.SignalQuality``: raw-block signal quality (lead-off, rails, clipping);
* ``emg_filters.EmgFilters``: band-pass + notches, decimated power envelope and its artefact band;
* ``emg_baseline.RestBaseline``: the adaptive resting level and the thresholds from it;
* ``emg_episodes.EpisodeTracker``: the onset/offset state machine and the final events;
* ``rhythm.clonus_rhythm``: is an episode clonus.

Everything runs on fixed blocks (``block_s``, 50 ms by default) laid end to end from the start of
each contiguous segment of the stream. The caller (``SpasmDetector``) cuts whatever chunks it is
given into those blocks, so the arithmetic, and therefore the events, are identical for any
chunking. Within a block all work is vectorised across channels; Python loops only run over the
envelope rows of channels that are inside an episode (rare, and at the 200 Hz envelope rate).
"""

from __future__ import annotations

import numpy as np

from detectors.config import DetectorConfig
from detectors.emg_baseline import RestBaseline
from detectors.emg_episodes import EpisodeTracker
from detectors.emg_filters import EmgFilters, design_emg_filter, detect_mains, filter_inplace, high_envelope
from detectors.emg_quality import SignalQuality
from detectors.events import DetectorOutput
from detectors.rhythm import clonus_rhythm

__all__ = ["EmgBank", "clonus_rhythm", "design_emg_filter", "detect_mains", "filter_inplace"]

FloatArray = np.ndarray


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
        self.n_ch = len(labels)
        self.mains_hz = mains_hz
        self.filters = EmgFilters(cfg, self.rate, self.n_ch, mains_hz)
        self.decim = self.filters.decim
        self.rows_per_block = max(1, round(cfg.block_s * self.filters.env_rate))
        #: raw samples per block
        self.block = self.decim * self.rows_per_block
        #: delay of the envelope behind the muscle (raw samples)
        self.lag = self.filters.lag
        self.baseline = RestBaseline(cfg, self.n_ch)
        self.quality = SignalQuality(cfg, self.rate, self.labels, self.block)
        self.episodes = EpisodeTracker(
            cfg, self.rate, self.labels, self.decim, self.lag, self.baseline, version
        )
        # filter settling: no onsets before these raw samples (after a restart or a bad block)
        self.settle_until = np.zeros(self.n_ch, dtype=np.int64)
        self.settle_n = round(cfg.settle_s * rate_hz)
        self.settle_max = 0
        self.settle_bad_n = round(cfg.settle_bad_s * rate_hz)  # after lead-off/saturation the filters ring
        #: raw sample just after the last processed block
        self.processed_until = 0

    @property
    def active_spans(self) -> list[list[float]]:
        """Confirmed episodes (seconds), [onset_s, offset_s] (offset inf while open)."""
        return self.episodes.active_spans

    # ------------------------------------------------------------------------------------ API
    def reset_filters(self) -> None:
        """After a gap: filters restart (at steady state on their first sample) and settle."""
        self.filters.reset()
        self.episodes.history.clear()

    def close_all(self, at: int, out: list[DetectorOutput], truncated: bool) -> None:
        self.episodes.close_all(at, out, truncated)

    def process_block(self, s0: int, x: FloatArray, out: list[DetectorOutput]) -> None:
        """Process one block ``x`` (C, n) channel-major, n <= block, which this call may overwrite;
        ``s0`` is the raw counter of ``x[:, 0]``."""
        c, n = x.shape
        eps = self.episodes
        bad = self.quality.screen(s0, x, eps.in_burst, out)
        if bad is not None:
            for ch in np.flatnonzero(bad).tolist():
                if eps.eps[ch] is not None:
                    eps.end(ch, s0, out, truncated=True)
        self._settle_restarts(s0)
        pe = self.filters.run(x, self.baseline.base_pow)
        if pe is None:
            self._after_block(s0, n, bad)
            return
        m = pe.shape[1]
        env = high_envelope(pe, c)
        # ---- onset / offset state machine (thresholds fixed for the block)
        on_thr = self.baseline.on_thr
        if eps.n_busy or (env >= on_thr).any():
            above_any = np.asarray((env >= on_thr).any(axis=1))
            base_valid = self.baseline.valid
            for ch in range(c):
                if eps.eps[ch] is None and not above_any[ch]:
                    continue
                if bad is not None and bad[ch]:
                    continue
                if not base_valid[ch]:
                    continue
                eps.run_channel(ch, s0, env, pe, int(self.settle_until[ch]), out)
        q = self.quality
        if q.any_clipped:
            for ch in np.flatnonzero(q.block_clipped).tolist():
                ep_c = eps.eps[ch]
                if ep_c is not None:
                    ep_c.clipped = True
            q.block_clipped[:] = False
            q.any_clipped = False
        eps.remember(s0, env)
        # ---- baseline bookkeeping
        excl = self.baseline.seg_excl
        if bad is not None:
            excl |= bad
        if eps.n_busy:
            for ch in range(c):
                if eps.eps[ch] is not None:
                    excl[ch] = True
        if s0 < self.settle_max:
            excl |= self.settle_until > s0
        self.baseline.add_blocks(pe[:, m - 1 : m])  # the smoothed power, once per block
        self._after_block(s0, n, bad)

    # ------------------------------------------------------------------------------ internals
    def _settle_restarts(self, s0: int) -> None:
        """Channels whose filters restart at ``s0`` settle for ``settle_s`` before any onset."""
        f = self.filters
        if f.any_reset:
            idx = np.flatnonzero(f.need_reset)
            self.settle_until[idx] = np.maximum(self.settle_until[idx], s0 + self.settle_n)
            self.settle_max = max(self.settle_max, s0 + self.settle_n)

    def _after_block(self, s0: int, n: int, bad: FloatArray | None) -> None:
        if bad is not None and bad.any():
            self.filters.reset(bad)
            self.settle_until[bad] = s0 + n + self.settle_bad_n
            self.settle_max = max(self.settle_max, s0 + n + self.settle_bad_n)
        self.processed_until = s0 + n
