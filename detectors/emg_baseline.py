"""Adaptive resting baseline of each EMG channel, and the onset/offset thresholds derived from it.

One job: keep the resting level. Each ``baseline_segment_s`` segment (0.5 s) contributes the
median of its block powers (a QRS or a pop in a few blocks does not move it); the resting level is
a low percentile (``baseline_percentile``) of the last ``baseline_window_s`` of segments. Segments
during an episode, a quality problem or filter settling are left out (+inf in the ring). A channel
whose rest moved (``forget``: a reattached electrode, a tonic episode cut at ``max_episode_s``)
takes the percentile over its new segments only, and a reattached one a provisional level from
its first clean blocks meanwhile (``provisional``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.config import DetectorConfig

FloatArray = np.ndarray


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """What ``RestBaseline`` would do over ``S`` whole segments at rest (``quiet_plan``), worked
    out at once: each segment's median ``seg`` (S, 2C), the segments after which the level is
    updated (``ups``, ascending) with the estimate and the levels each update gives (U, 2C) and
    (U, C), and the onset level each segment is read against, ``on_seg`` (C, S)."""

    seg: np.ndarray
    ups: list[int]
    est: np.ndarray
    on: np.ndarray
    off: np.ndarray
    back: np.ndarray
    act: np.ndarray
    on_seg: np.ndarray


class RestBaseline:
    """Per-channel resting power (band and artefact band) and the thresholds that follow from it."""

    def __init__(self, cfg: DetectorConfig, n_ch: int) -> None:
        c = n_ch
        self.cfg = cfg
        self.n_ch = c
        self.blocks_per_seg = max(1, round(cfg.baseline_segment_s / cfg.block_s))
        seg_s = self.blocks_per_seg * cfg.block_s
        self.ring_len = max(2, round(cfg.baseline_window_s / seg_s))
        self.ring = np.full((self.ring_len, 2 * c), np.inf)
        self.pos = 0
        self.filled = 0
        self.valid_segs = np.zeros(c, dtype=np.int64)
        self.min_segs = max(1, round(cfg.baseline_min_s / seg_s))
        #: segments pushed since each channel last forgot its rest (``forget``); while fewer than
        #: the ring holds, its percentile is taken over those segments only (``_update``)
        self.fresh = np.full(c, self.ring_len, dtype=np.int64)
        self.any_fresh = False
        #: blocks for a provisional level after ``forget`` (0: none), the clean block powers
        #: (band, artefact band) collected so far per channel awaiting one, and that mask
        self.prov_blocks = round(cfg.baseline_provisional_s / cfg.block_s)
        self.prov_buf: dict[int, list[tuple[float, float]]] = {}
        self.update_segs = max(1, round(cfg.baseline_update_s / seg_s))
        self.segs_seen = 0
        #: this segment's block powers so far, and the channels left out of it
        self.seg_buf = np.zeros((self.blocks_per_seg, 2 * c))
        self.seg_blocks = 0
        self.seg_excl = np.zeros(c, dtype=bool)
        #: resting (band, artefact-band) power per channel, NaN until known
        self.base_pow = np.full(2 * c, np.nan)
        self.valid = np.zeros(c, dtype=bool)
        #: ``valid.all()``, kept as a bool: the per-segment bookkeeping asks it every 0.5 s
        self.all_valid = False
        #: onset threshold (C, 1) so it broadcasts against (C, rows); offset and "near rest" (C,)
        self.on_thr = np.full((c, 1), np.inf)
        self.off_thr = np.full(c, np.inf)
        self.back_thr = np.full(c, np.inf)
        #: "still active" level inside an episode (``active_level``, between offset and onset)
        self.act_thr = np.full(c, np.inf)

    def add_blocks(self, pe_last: FloatArray) -> None:
        """Enter the smoothed power of consecutive blocks (2C, k), at most to the end of a segment;
        the segment is closed (and the baseline maybe updated) when it is full."""
        k = pe_last.shape[1]
        self.seg_buf[self.seg_blocks : self.seg_blocks + k] = pe_last.T
        self.seg_blocks += k
        if self.seg_blocks >= self.blocks_per_seg:
            self._push_segment()

    @property
    def blocks_to_segment_end(self) -> int:
        return self.blocks_per_seg - self.seg_blocks

    def forget(self, ch: int, provisional: bool = False) -> None:
        """The channel's "rest" moved (an episode ran to ``max_episode_s``, an electrode was
        reattached): start afresh; ``provisional``: from a provisional level first (a new
        contact, ``provisional``)."""
        c = self.n_ch
        self.ring[:, [ch, ch + c]] = np.inf
        self.valid_segs[ch] = 0
        self.valid[ch] = False
        self.all_valid = False
        self.on_thr[ch] = np.inf
        self.off_thr[ch] = np.inf
        self.act_thr[ch] = np.inf
        self.fresh[ch] = 0
        self.any_fresh = True
        if provisional and self.prov_blocks > 0:
            self.prov_buf[ch] = []

    def provisional(self, ch: int, pe_blocks: FloatArray) -> None:
        """Enter clean block powers (2, k) (band, artefact band; after its filters settled, no
        bad block) of channel ``ch`` awaiting a provisional level; once ``prov_blocks`` are in,
        their median is its resting level until the segments give one (``_update``).

        A reattached contact's noise and impedance settle over seconds, decaying (Huigen, Peper &
        Grimbergen 2002): its level so far overestimates what follows, so thresholds from it are
        conservative. Without it no onset is possible until a whole clean segment is in (1-1.5 s
        after reattachment), and a spasm starting meanwhile is learnt as rest."""
        buf = self.prov_buf.get(ch)
        if buf is None:
            return
        buf.extend(zip(pe_blocks[0].tolist(), pe_blocks[1].tolist(), strict=True))
        if len(buf) < self.prov_blocks or self.valid[ch]:
            if self.valid[ch]:
                del self.prov_buf[ch]
            return
        del self.prov_buf[ch]
        a = np.maximum(np.median(np.asarray(buf[: self.prov_blocks]), axis=0), 0.0)
        c = self.n_ch
        self.base_pow[ch], self.base_pow[ch + c] = float(a[0]), float(a[1])
        self.valid[ch] = True
        self.all_valid = bool(self.valid.all())
        self._thresholds()

    def _push_segment(self) -> None:
        seg = np.maximum(_median0(self.seg_buf[: self.seg_blocks]), 0.0)
        excl = self.seg_excl
        if excl.any():
            seg[np.concatenate([excl, excl])] = np.inf
        self.ring[self.pos] = seg
        self.pos = (self.pos + 1) % self.ring_len
        self.filled = min(self.filled + 1, self.ring_len)
        self.valid_segs += ~excl
        if self.any_fresh:
            self.fresh += 1
            self.any_fresh = bool((self.fresh < self.ring_len).any())
        self.segs_seen += 1
        self.seg_blocks = 0
        excl[:] = False
        if not self.all_valid or self.segs_seen % self.update_segs == 0:
            self._update()

    def steady(self) -> bool:
        """Is the baseline in its steady state, in which ``quiet_plan`` applies: every channel's
        level known from a full ring of segments, none relearning, no provisional level pending,
        at a segment boundary with nothing left out of the segment begun?"""
        return (
            self.all_valid
            and not self.any_fresh
            and not self.prov_buf
            and self.seg_blocks == 0
            and self.filled == self.ring_len
            and not self.seg_excl.any()
            and bool((self.valid_segs >= self.min_segs).all())
        )

    def quiet_plan(self, pe_last: FloatArray) -> SegmentPlan | None:
        """The bookkeeping of ``S`` whole segments at rest at once (the offline path): ``pe_last``
        (2C, S x blocks_per_seg) is the smoothed power at the last row of each of their blocks,
        from a segment boundary, in the ``steady`` state, no segment left out. The values are
        those ``add_blocks`` would give one segment at a time (the same partitions, the same
        arithmetic on each element); None when that cannot be promised here (a NaN, a level
        that would not be finite): the caller then goes one segment at a time."""
        c = self.n_ch
        bps = self.blocks_per_seg
        n_seg = pe_last.shape[1] // bps
        a = pe_last[:, : n_seg * bps].reshape(2 * c, n_seg, bps)
        if np.isnan(np.add.reduce(a, axis=None)):
            return None
        h = bps // 2
        if bps % 2:  # ``_median0`` of each segment, along its blocks
            med = np.partition(a, h, axis=2)[:, :, h]
        else:
            part = np.partition(a, [h - 1, h], axis=2)
            med = (part[:, :, h - 1] + part[:, :, h]) / 2.0
        seg = np.maximum(med, 0.0).T  # (S, 2C)
        size = self.ring_len
        u = self.update_segs
        ups = [j for j in range(n_seg) if (self.segs_seen + j + 1) % u == 0]
        if ups:
            # the ring after each update's push: the last ``ring_len`` segments, oldest first
            # (``_percentile_lower0`` selects an element, so the order of the slots is moot)
            hist = np.concatenate([self.ring[self.pos :], self.ring[: self.pos], seg])
            if np.isnan(np.add.reduce(hist, axis=None)):
                return None
            win = np.lib.stride_tricks.sliding_window_view(hist, size, axis=0)[[j + 1 for j in ups]]
            kq = int(np.floor((size - 1) * (self.cfg.baseline_percentile / 100)))
            est = np.partition(win, kq, axis=2)[:, :, kq]  # (U, 2C)
            if not np.isfinite(est).all():
                return None
            on, off, back, act = self._levels(est)
        else:
            est = np.empty((0, 2 * c))
            on = off = back = act = np.empty((0, c))
        # the onset level of segment j: that of the last update after a segment before j
        which = np.searchsorted(np.asarray(ups, dtype=np.int64), np.arange(n_seg), side="left")
        on_seg = np.concatenate([self.on_thr[:, 0][None, :], on])[which].T
        return SegmentPlan(seg, ups, est, on, off, back, act, on_seg)

    def commit(self, plan: SegmentPlan, n: int) -> None:
        """Enter the first ``n`` segments of ``plan``, as ``add_blocks`` one segment at a time would."""
        size = self.ring_len
        first = max(0, n - size)  # older ones are overwritten within this commit anyway
        slots = (self.pos + np.arange(first, n)) % size
        self.ring[slots] = plan.seg[first:n]
        self.pos = (self.pos + n) % size
        self.valid_segs += n
        self.segs_seen += n
        done = [i for i, j in enumerate(plan.ups) if j < n]
        if done:
            i = done[-1]
            self.base_pow[:] = plan.est[i]
            self.on_thr = plan.on[i][:, None].copy()
            self.off_thr = plan.off[i].copy()
            self.back_thr = plan.back[i].copy()
            self.act_thr = plan.act[i].copy()

    def _update(self) -> None:
        ring = self.ring[: self.filled]
        est = _percentile_lower0(ring, self.cfg.baseline_percentile)
        c = self.n_ch
        if self.any_fresh:
            # A channel that forgot its rest (a new contact) has only its new segments in the
            # ring, the older slots are +inf: the percentile is of those segments, or the first
            # level would wait for several of them (the 10th percentile of a 40-slot ring is the
            # 4th lowest: 2 s of settling noise, and any spasm in it, learnt as rest)
            for ch in np.flatnonzero(self.fresh < self.filled).tolist():
                for col in (ch, ch + c):
                    v = ring[:, col]
                    v = v[np.isfinite(v)]
                    if v.size:
                        k = int(np.floor((v.size - 1) * (self.cfg.baseline_percentile / 100)))
                        est[col] = np.partition(v, k)[k]
        fin = np.isfinite(est)
        ok = fin[:c] & fin[c:] & (self.valid_segs >= self.min_segs)
        if ok.all():  # the usual case once every channel has a resting level: fewer steps
            self.base_pow[:] = est
            self.valid[:] = True
            self.all_valid = True
        elif not ok.any():
            return
        else:
            cols = np.concatenate([ok, ok])
            self.base_pow[cols] = est[cols]
            self.valid |= ok
            self.all_valid = bool(self.valid.all())
        self._thresholds()

    def _thresholds(self) -> None:
        """Onset, offset and "near rest" levels of the valid channels from ``base_pow``."""
        on, off, back, act = self._levels(self.base_pow)
        if self.all_valid:  # np.where(valid, x, inf) is x
            self.on_thr = on[:, None]
            self.off_thr = off
            self.back_thr = back
            self.act_thr = act
            return
        self.on_thr = np.where(self.valid, on, np.inf)[:, None]
        self.off_thr = np.where(self.valid, off, np.inf)
        self.back_thr = np.where(self.valid, back, np.inf)
        self.act_thr = np.where(self.valid, act, np.inf)

    def _levels(self, pow2: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(onset, offset, near-rest, still-active) levels from resting powers (..., 2C): band
        and artefact band, along the last axis (elementwise: one row or many, the same values)."""
        c = self.n_ch
        base = np.sqrt(np.maximum(pow2[..., :c] - pow2[..., c:], 1e-12))
        cfg = self.cfg
        on = np.maximum(base * cfg.on_ratio, base + cfg.on_min_delta_uv)
        off = np.maximum(base * cfg.off_ratio, base + cfg.off_min_delta_uv)
        back = base * (1.0 + cfg.onset_back_fraction * (cfg.off_ratio - 1.0))
        act = off * (on / off) ** cfg.active_level  # log-scale position between offset and onset
        return on, off, back, act

    def low_fraction(self, ch: int, rows: FloatArray) -> float:
        """Share of the power in excess of rest that lies in the artefact band (EMG: small;
        artefacts: most), over power rows (k, 2)."""
        n = rows.shape[0]
        ex_p = float(rows[:, 0].sum()) - n * float(self.base_pow[ch])
        ex_l = float(rows[:, 1].sum()) - n * float(self.base_pow[ch + self.n_ch])
        if ex_p <= 0:
            return 1.0
        return min(max(ex_l / ex_p, 0.0), 1.0)


def _median0(a: FloatArray) -> FloatArray:
    """``np.median(a, axis=0)``, same values (the same partition and mean of the middle pair),
    without its generic-reduction overhead: it runs once per baseline segment."""
    n = a.shape[0]
    if np.isnan(np.add.reduce(a, axis=None)):  # a NaN (or inf - inf: np.median gives the same)
        return np.median(a, axis=0)
    h = n // 2
    if n % 2:
        return np.partition(a, h, axis=0)[h]
    part = np.partition(a, [h - 1, h], axis=0)
    return (part[h - 1] + part[h]) / 2.0


def _percentile_lower0(a: FloatArray, q: float) -> FloatArray:
    """``np.percentile(a, q, axis=0, method="lower")``: the element at floor((n - 1) q / 100)."""
    if np.isnan(np.add.reduce(a, axis=None)):  # a NaN (or inf - inf: np.percentile agrees)
        return np.percentile(a, q, axis=0, method="lower")
    k = int(np.floor((a.shape[0] - 1) * (q / 100)))
    return np.partition(a, k, axis=0)[k]
