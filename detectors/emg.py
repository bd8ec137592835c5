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

import dataclasses
from collections.abc import Callable

import numpy as np

from detectors.config import DetectorConfig
from detectors.crosstalk import copy_share
from detectors.emg_baseline import RestBaseline
from detectors.emg_episodes import CAND, EpisodeTracker, offset_levels
from detectors.emg_filters import EmgFilters, design_emg_filter, detect_mains, filter_inplace, high_envelope
from detectors.emg_quality import HumBefore, SignalQuality
from detectors.events import DetectorOutput, Onset, SpasmEvent
from detectors.rhythm import clonus_rhythm

__all__ = ["EmgBank", "clonus_rhythm", "design_emg_filter", "detect_mains", "filter_inplace"]

FloatArray = np.ndarray
#: ``ndarray.any(axis=...)``'s reduction, without its Python wrapper (every block pays it)
_any_rows = np.logical_or.reduce


class EmgBank:
    """All EMG channels of one stream; ``process_block`` is the only entry point for data.

    Layout is channel-major (channels, samples) so every reduction and filter runs along
    contiguous memory.
    """

    #: the offline path enters raw samples into the quality ring at most this long a stretch of
    #: clean blocks ahead of the block it processes (``_clean_run``)
    MAX_STRETCH_S = 2.0
    #: stretches per clean run filtered in one call (30: a minute at most)
    RUN_STRETCHES = 30

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
            cfg, self.rate, self.labels, self.decim, self.lag, self.baseline, version, self.filters.split_hz
        )
        self.episodes.copy_share = self.copy_share
        self._copy_sos: FloatArray | None = None  # the filter ``copy_share`` reads through (lazily)
        # filter settling: no onsets before these raw samples (after a restart or a bad block)
        self.settle_until = np.zeros(self.n_ch, dtype=np.int64)
        self.settle_n = round(cfg.settle_s * rate_hz)
        self.settle_max = 0
        self.settle_bad_n = round(cfg.settle_bad_s * rate_hz)  # after lead-off/saturation the filters ring
        #: raw sample just after the last processed block
        self.processed_until = 0
        #: (mains-line share, low-band share) of each ended burst's raw waveform, by event key
        self.burst_spectra: dict[str, tuple[float, float] | None] = {}
        #: of each ended burst's raw waveform, by event key (each None when its samples were not
        #: all remembered): the share of its EMG-band power below ``artefact_band_hz`` over the
        #: burst itself (``burst_low_share``), the change of its mains line (``burst_hum_change``),
        #: and its power off the lines above that band in resting powers (``burst_input_power``
        #: over the event's ``baseline_uv`` squared)
        self.burst_low: dict[str, tuple[float | None, float | None, float | None]] = {}
        #: ``crackle_kurtosis`` of bursts starting within ``lead_off_guard_after_s`` of a
        #: reattachment, by event key (None when its samples were not all remembered)
        self.burst_crackle: dict[str, float | None] = {}
        #: mains-line powers just before each confirmed burst's onset (``hum_before``, computed
        #: only if read: ``HumBefore``), by key, until the burst ends
        self._hum_before: dict[str, HumBefore | None] = {}
        #: bursts ended recently, not summarised yet: key -> (channel, onset, offset)
        self._ended: dict[str, tuple[int, int, int]] = {}
        #: the sample where each channel last came back from a reported bad state
        self.recovered_at = np.full(self.n_ch, -(10**15), dtype=np.int64)
        #: channels whose resting level is learnt afresh once they are good again
        self.relearn = np.zeros(self.n_ch, dtype=bool)
        self.any_relearn = False
        #: the offline path filters at most this many clean blocks at once, so a burst's raw
        #: samples are still remembered when it ends
        self.max_stretch = max(1, round(self.MAX_STRETCH_S / (self.block / self.rate)))
        #: a clean run is filtered in one call up to this many blocks (a whole number of
        #: stretches, so the stretches are the same; bounds the copies a huge chunk makes)
        self.max_run = self.RUN_STRETCHES * self.max_stretch

    @property
    def active_spans(self) -> list[list[float]]:
        """Confirmed episodes (seconds), [onset_s, offset_s] (offset inf while open)."""
        return self.episodes.active_spans

    # ------------------------------------------------------------------------------------ API
    def reset_filters(self) -> None:
        """After a gap: filters restart (at steady state on their first sample) and settle."""
        self.filters.reset()
        self.episodes.history.clear()
        self.episodes.seg_start = None  # the next block processed starts the segment

    def copy_share(self, ch: int, sources: list[int], a: int, b: int) -> float | None:
        """Share of channel ``ch``'s band-passed power over samples [a, b) that lagged copies of
        ``sources`` explain (``crosstalk.copy_share``; 0.1 s before ``a`` lets the filter
        settle), or None when those samples are not all remembered."""
        pad = round(0.1 * self.rate)
        raw = self.quality.raw_stretch([ch, *sources], a - pad, b)
        if raw is None:
            return None
        if self._copy_sos is None:
            # the band the decisions read (above ``artefact_band_hz``): cable motion, ECG and
            # drift below it are each electrode's own, and no copy would explain them
            cfg = self.cfg
            band = dataclasses.replace(cfg, band_low_hz=max(cfg.band_low_hz, cfg.artefact_band_hz))
            self._copy_sos = design_emg_filter(band, self.rate, self.mains_hz)
        return copy_share(raw, self._copy_sos, pad, max(1, round(0.003 * self.rate)))

    def close_all(self, at: int, out: list[DetectorOutput], truncated: bool) -> None:
        self.episodes.close_all(at, out, truncated)
        self._summarise_bursts(out)

    def _summarise_bursts(self, out: list[DetectorOutput]) -> None:
        """Note the bursts that just ended; summarise a burst's raw waveform (``burst_spectra``,
        by key; None when not all remembered) only if it may be near a lead-off: at once when
        it began within ``lead_off_guard_after_s`` of the channel's recovery, else when the
        channel goes bad within ``lead_off_guard_before_s`` of its end (``_summarise_before``),
        while its samples are still in the ring. Both moments are the same for any chunking."""
        if not out and not self._ended:
            return
        after = self.cfg.lead_off_guard_after_s * self.rate
        q = self.quality
        for o in out:
            if o.domain != "emg":
                continue
            if isinstance(o, Onset) and o.key not in self._hum_before and o.key not in self.burst_low:
                self._hum_before[o.key] = q.hum_before_lazy(self.labels.index(o.channel), o.onset_sample)
                continue
            if not isinstance(o, SpasmEvent) or o.key in self.burst_low:
                continue
            ch = self.labels.index(o.channel)
            p_in = q.burst_input_power(ch, o.onset_sample, o.offset_sample)
            rest = o.baseline_uv * o.baseline_uv
            low = q.burst_low_share(ch, o.onset_sample, o.offset_sample)
            before = self._hum_before.pop(o.key, None)
            hum = q.burst_hum_change(ch, o.onset_sample, o.offset_sample, before)
            if before is not None:
                before.release()  # (read or not, no longer needed)
            self.burst_low[o.key] = (low, hum, None if p_in is None or rest <= 0.0 else p_in / rest)
            if o.key in self.burst_spectra or o.key in self._ended:
                continue
            if o.onset_sample - self.recovered_at[ch] <= after:
                self.burst_crackle[o.key] = q.burst_crackle(ch, o.onset_sample, o.offset_sample)
                self.burst_spectra[o.key] = self.quality.burst_spectrum(ch, o.onset_sample, o.offset_sample)
            else:
                self._ended[o.key] = (ch, o.onset_sample, o.offset_sample)
        horizon = self.processed_until - round((self.cfg.lead_off_guard_before_s + 1.0) * self.rate)
        for key in [k for k, v in self._ended.items() if v[2] < horizon]:
            del self._ended[key]
        for d in (self.burst_spectra, self.burst_low, self._hum_before, self.burst_crackle):
            if len(d) > 512:  # the detector pops what it read; bound the rest
                for key in list(d)[:256]:
                    del d[key]

    def _summarise_before(self, s0: int, bad: FloatArray) -> None:
        """Channels going bad at ``s0``: summarise their bursts that ended just before."""
        before = self.cfg.lead_off_guard_before_s * self.rate
        for key, (ch, a, b) in list(self._ended.items()):
            if bad[ch] and s0 - b <= before:
                self.burst_spectra[key] = self.quality.burst_spectrum(ch, a, b)
                del self._ended[key]

    def process_block(self, s0: int, x: FloatArray, out: list[DetectorOutput]) -> None:
        """Process one block ``x`` (C, n) channel-major, n <= block, which this call may overwrite;
        ``s0`` is the raw counter of ``x[:, 0]``."""
        c, n = x.shape
        eps = self.episodes
        if eps.seg_start is None:
            eps.seg_start = s0
        # an open episode, confirmed or still a candidate: a strong contraction can reach the rails
        # within its first 50 ms, before it is confirmed (issue 9: one event, never a gap)
        bad = self.quality.screen(s0, x, lambda ch: eps.eps[ch] is not None, out)
        self.quality.remember(s0, x)  # after screen: NaN/inf already replaced
        if bad is not None and self._ended:
            self._summarise_before(s0, bad)
        if bad is not None:
            for ch in np.flatnonzero(bad).tolist():
                if eps.eps[ch] is not None:
                    eps.end(ch, s0, out, truncated=True)
        self._settle_restarts(s0)
        pe = self.filters.run(x, self.baseline.base_pow)
        if pe is None:
            self._after_block(s0, n, bad)
            self._summarise_bursts(out)
            return
        self._block_decisions(s0, n, high_envelope(pe, c), pe, bad, out)
        self._summarise_bursts(out)

    def process_blocks(self, s0: int, x: FloatArray, out: list[DetectorOutput]) -> None:
        """Process ``K`` whole blocks laid end to end, ``x`` (C, K * block) channel-major (may be
        overwritten), exactly as ``process_block`` on each in turn would.

        The offline path: runs of blocks that pass the cheap quality test are filtered in one
        call, and the decision logic handles the blocks in which no episode starts and every
        open one is in its quiet tail in bulk: whole baseline segments at rest several at once
        (``_quiet_segments``), else a segment at a time (``_quiet_until``). Only blocks that need
        a closer look (quality, filter restarts, bursts) go through the per-block code.
        """
        c, n = x.shape
        if self.episodes.seg_start is None:
            self.episodes.seg_start = s0
        b = self.block
        k_all = n // b
        if k_all * b != n:
            raise ValueError(
                f"EmgBank.process_blocks: {n} samples is not a whole number of {b}-sample blocks"
            )
        xb = x.reshape(c, k_all, b)
        suspect: list[bool] = np.asarray(
            self.quality.suspect(xb.max(axis=2), xb.min(axis=2)).any(axis=0)
        ).tolist()
        k = 0
        while k < k_all:
            if suspect[k] or self.quality.dirty or self.filters.any_reset:
                self.process_block(s0 + k * b, np.ascontiguousarray(x[:, k * b : (k + 1) * b]), out)
                k += 1
                continue
            j = k + 1
            while j < k_all and not suspect[j] and j - k < self.max_run:
                j += 1
            self._clean_run(s0, k, j, x, out)
            k = j

    # ------------------------------------------------------------------------------ internals
    def _clean_run(self, s0: int, k0: int, k1: int, x: FloatArray, out: list[DetectorOutput]) -> None:
        """Blocks ``k0..k1-1`` of ``x`` (raw, from counter ``s0``), all of which passed the quality
        test, no restart pending: one filter call for all. Their raw samples enter the quality
        ring in stretches of at most ``max_stretch`` blocks from ``k0``, each just before the
        first of its blocks is processed and followed by the burst summaries once its last one
        is (a burst's raw samples are still remembered when it ends); the ring holds what it
        would hold one block at a time whenever anything reads it."""
        c = self.n_ch
        b = self.block
        s1 = s0 + k0 * b  # counter of the run's first block
        y = x[:, k0 * b : k1 * b].copy()  # filtered in place; ``x`` keeps the raw samples for the ring
        pe = self.filters.run(y, self.baseline.base_pow)
        assert pe is not None  # whole blocks hold whole rows
        env = high_envelope(pe, c)
        m = self.rows_per_block
        n_blk = k1 - k0
        bl = self.baseline
        eps = self.episodes
        remembered = 0  # blocks of the run whose raw samples are in the ring

        def enter(upto: int) -> None:
            """Remember the stretches up to the one holding block ``upto - 1`` (run-relative)."""
            nonlocal remembered
            while remembered < upto:
                if remembered:  # the stretch before is done: its bursts are summarised first
                    self.processed_until = s1 + remembered * b
                    self._summarise_bursts(out)
                e = min(n_blk, remembered + self.max_stretch)
                self.quality.remember(s1 + remembered * b, x[:, (k0 + remembered) * b : (k0 + e) * b])
                remembered = e

        k = 0
        while k < n_blk:
            enter(k + 1)
            # whole segments at rest, several at once (the common case offline)
            if (
                not eps.n_busy
                and n_blk - k >= 2 * bl.blocks_per_seg
                and s1 + k * b >= self.settle_max
                and bl.steady()
            ):
                stop = self._quiet_segments(s1, k, n_blk, env, pe, enter)
                if stop > k:
                    k = stop
                    continue
            # blocks in which no episode starts and every open one is winding down quietly
            # need only bookkeeping; the scan stays within this baseline segment (whose
            # thresholds are fixed) and within the stretch remembered
            seg_end = min(remembered, k + bl.blocks_to_segment_end)
            if bl.prov_buf:  # a provisional level may start at any block: one block at a time
                seg_end = min(seg_end, k + 1)
            stop = self._quiet_until(k, seg_end, env, s1)
            if stop > k:
                self._quiet_blocks(s1, k, stop, env, pe)
                k = stop
                continue
            r = slice(k * m, (k + 1) * m)
            self._block_decisions(s1 + k * b, b, env[:, r], pe[:, r], None, out)
            k += 1
        self._summarise_bursts(out)

    #: at most this many baseline segments are planned at once (``_quiet_segments``): a plan
    #: is cut at the first crossing, and the segments after it are planned again
    MAX_PLAN_SEGMENTS = 32

    def _quiet_segments(
        self, s0: int, k0: int, k1: int, env: FloatArray, pe: FloatArray, enter: Callable[[int], None]
    ) -> int:
        """Whole baseline segments from block ``k0`` (a segment boundary; at most to ``k1``) in
        which no channel crosses its onset level, with no episode open and the baseline steady:
        their bookkeeping at once (``RestBaseline.quiet_plan``: each segment read against the
        onset level it would have, the level updated where it would be). ``enter(k)`` brings
        the raw samples of the blocks before ``k`` into the ring, as going block by block would
        have. Returns the first block not done (``k0``: none). A recording is mostly rest, and
        one segment at a time it costs a dozen small numpy calls per half second per stream;
        the result is the same."""
        bl = self.baseline
        bps = bl.blocks_per_seg
        m = self.rows_per_block
        if _any_rows(env[:, k0 * m : (k0 + bps) * m] >= bl.on_thr, axis=None):
            return k0  # a crossing in the first segment already (its level is the current one)
        n_seg = min((k1 - k0) // bps, self.MAX_PLAN_SEGMENTS)
        plan = bl.quiet_plan(pe[:, k0 * m + m - 1 : (k0 + n_seg * bps) * m : m])
        if plan is None:
            return k0
        rows = env[:, k0 * m : (k0 + n_seg * bps) * m].reshape(self.n_ch, n_seg, bps * m)
        crossed = _any_rows(rows >= plan.on_seg[:, :, None], axis=2).any(axis=0)
        n = int(crossed.argmax()) if crossed.any() else n_seg
        if n == 0:
            return k0
        k_end = k0 + n * bps
        enter(k_end)  # (the ring must hold them when the run ends here; nothing here reads it)
        bl.commit(plan, n)
        b = self.block
        eps = self.episodes
        for k in range(max(k0, k_end - eps.hist_blocks), k_end):
            eps.remember(s0 + k * b, env[:, k * m : (k + 1) * m])
        self.processed_until = s0 + k_end * b
        return k_end

    def _quiet_until(self, k0: int, k1: int, env: FloatArray, s0: int) -> int:
        """The first block from ``k0`` (at most ``k1``) that needs the state machine: an onset
        crossing on a channel without an episode, or an open episode that is not in its quiet
        tail below its offset level (``EpisodeTracker.run_channel``'s fast path)."""
        m = self.rows_per_block
        eps = self.episodes
        bl = self.baseline
        sub = env[:, k0 * m : k1 * m]
        if not eps.n_busy:
            above: FloatArray = np.asarray((sub >= bl.on_thr).any(axis=0))
            first = int(above.argmax())  # the first crossing, if ``above[first]``
            return k0 + first // m if above[first] else k1
        stop = k1
        idle = np.ones(self.n_ch, dtype=bool)
        frac = self.cfg.off_peak_fraction
        for ch, ep in enumerate(eps.eps):
            if ep is None:
                continue
            idle[ch] = False
            if ep.state == CAND or not ep.quiet or not bl.valid[ch]:
                return k0
            # the fast path holds while the quiet run stays short of ``quiet_rows``...
            stop = min(stop, k0 + (eps.quiet_rows - 1 - ep.quiet) // m)
            if stop <= k0:
                return k0
            # ...and every row of the block stays below the episode's offset level
            # (at each block's last row: the level fades, its lowest value decides, as in
            # ``run_channel``'s own fast path)
            off0 = float(bl.off_thr[ch])
            nb = stop - k0
            last = s0 + ((np.arange(k0, stop) + 1) * m - 1) * eps.decim
            off_ep = offset_levels(off0, frac, ep, last, eps.memory, eps.inv_memory)
            # (and below the onset level: rows above it count towards a fused burst's re-anchoring)
            off_ep = np.minimum(off_ep, bl.on_thr[ch, 0])
            loud = np.flatnonzero(sub[ch, : nb * m].reshape(-1, m).max(axis=1) >= off_ep)
            if loud.size:
                stop = k0 + int(loud[0])
                if stop <= k0:
                    return k0
        if idle.any():
            hit = np.flatnonzero((sub[idle, : (stop - k0) * m] >= bl.on_thr[idle]).any(axis=0))
            if hit.size:
                stop = min(stop, k0 + int(hit[0]) // m)
        return stop

    def _quiet_blocks(self, s0: int, k0: int, k1: int, env: FloatArray, pe: FloatArray) -> None:
        """What ``_block_decisions`` does for blocks ``k0..k1-1`` (of a run from ``s0``, one baseline
        segment at most) found by ``_quiet_until``: open episodes grow quietly; remember, baseline,
        position."""
        b = self.block
        m = self.rows_per_block
        c = self.n_ch
        eps = self.episodes
        excl = self.baseline.seg_excl
        if eps.n_busy:
            rows = slice(k0 * m, k1 * m)
            for ch, ep in enumerate(eps.eps):
                if ep is not None:
                    ep.quiet += (k1 - k0) * m
                    ep.blip = 0
                    ep.rows.append(pe[ch::c, rows].copy().T)  # rows ch, c + ch of the 2C
                    excl[ch] = True
        for k in range(max(k0, k1 - eps.hist_blocks), k1):
            eps.remember(s0 + k * b, env[:, k * m : (k + 1) * m])
        first = s0 + k0 * b
        if first < self.settle_max:  # settling ends later for later blocks: the first's is the union
            excl |= self.settle_until > first
        self.baseline.add_blocks(pe[:, k0 * m + m - 1 : k1 * m : m])
        if self.baseline.prov_buf:
            for ch in list(self.baseline.prov_buf):
                k = max(k0, -(-(int(self.settle_until[ch]) - s0) // b))  # first settled block
                if k < k1:
                    self.baseline.provisional(ch, pe[[ch, c + ch], k * m + m - 1 : k1 * m : m])
        self.processed_until = s0 + k1 * b

    def _block_decisions(
        self,
        s0: int,
        n: int,
        env: FloatArray,
        pe: FloatArray,
        bad: FloatArray | None,
        out: list[DetectorOutput],
    ) -> None:
        """One filtered block (``n`` raw samples; ``env`` (C, m), ``pe`` (2C, m)): the state machine,
        the clipping flags, onset history and baseline bookkeeping."""
        c = self.n_ch
        m = pe.shape[1]
        eps = self.episodes
        # ---- onset / offset state machine (thresholds fixed for the block)
        # which channels cross their onset level in this block (one reduction, read as a list)
        above_any: list[bool] = _any_rows(env >= self.baseline.on_thr, axis=1).tolist()
        if eps.n_busy or True in above_any:
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
        if self.baseline.prov_buf:  # reattached channels awaiting a provisional resting level
            for ch in list(self.baseline.prov_buf):
                if (bad is None or not bad[ch]) and s0 >= self.settle_until[ch]:
                    self.baseline.provisional(ch, pe[[ch, c + ch], m - 1 : m])
        self._after_block(s0, n, bad)

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
            # reported bad (a lead-off, a railed input), not a passing clip: when it comes back
            # the electrode-skin interface is a new one (Huigen et al. 2002: its noise and
            # impedance differ and settle over seconds), so the old resting level says nothing
            self.relearn |= bad & (self.quality.reported != 0)
            self.any_relearn = bool(self.relearn.any())
        if self.any_relearn:
            back = self.relearn if bad is None else self.relearn & ~bad
            for ch in np.flatnonzero(back).tolist():
                self.baseline.forget(ch, provisional=True)
                self.relearn[ch] = False
                self.recovered_at[ch] = s0
            self.any_relearn = bool(self.relearn.any())
        self.processed_until = s0 + n
