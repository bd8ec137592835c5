"""The EMG episode state machine: onset, artefact verdict, confirmation, offset, the final event.

One job: follow each channel's envelope rows against its thresholds and turn bursts into
``Onset`` and ``SpasmEvent`` outputs. An episode is a candidate (``CAND``) from its threshold
crossing; after ``judge_s`` it is confirmed (``ACTIVE``, an Onset is sent) or found to be an
artefact (``ARTEFACT``: low-band power, or cross-talk from a stronger channel), and it ends after
``quiet_s`` back near rest (or at ``max_episode_s``), when it is typed and scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from detectors.config import DetectorConfig
from detectors.emg_baseline import RestBaseline
from detectors.events import DetectorOutput, Onset, SpasmEvent, SpasmType
from detectors.rhythm import clonic_run, clonus_rhythm, cyclic_modulation, percentile, silences

CAND, ACTIVE, ARTEFACT = 1, 2, 3
FloatArray = np.ndarray


@dataclass(slots=True)
class Episode:
    """One burst on one channel, from its threshold crossing to its end."""

    onset: int  # raw sample (after delay compensation)
    cross_sample: int  # row start sample of the first row above the onset threshold
    peak: float
    judge_at: int  # raw sample from which an artefact may be re-judged
    rows: list[FloatArray] = field(default_factory=list)  # (k, 2): power, low-band power per row
    above: int = 1
    quiet: int = 0
    quiet_start: int = 0
    hot: int = 0  # rows of the quiet run at or above the onset level (quiet only against the peak term)
    state: int = CAND
    key: str = ""
    blip: int = 0
    clipped: bool = False  # some samples touched the ADC rails
    ref: float = 0.0  # fading reference for the peak-relative offset term (``off_peak_memory_s``)
    ref_at: int = 0  # row sample where ``ref`` was set
    beat_at: int = -1  # row sample where its last beat rose through the onset level
    beat_period: int = 0  # samples between its last two beats when at a clonus rhythm, else 0


class EpisodeTracker:
    """Open episodes of all channels and the recent envelope needed to trace onsets back."""

    def __init__(
        self,
        cfg: DetectorConfig,
        rate_hz: float,
        labels: list[str],
        decim: int,
        lag: int,
        baseline: RestBaseline,
        version: str,
        split_hz: float,
    ) -> None:
        self.cfg = cfg
        self.rate = rate_hz
        self.labels = labels
        self.n_ch = len(labels)
        self.decim = decim
        self.env_rate = rate_hz / decim
        self.lag = lag
        self.baseline = baseline
        self.version = version
        self.hash = cfg.hash
        self.eps: list[Episode | None] = [None] * self.n_ch
        self.n_busy = 0
        self.history: list[tuple[int, FloatArray]] = []  # recent (s0, env (C, m)) for onset backtracking
        #: first raw sample of the current segment (set by the bank's first block after a start
        #: or a gap): no onset is put before it, however far the backtrack and the filter lag reach
        self.seg_start: int | None = None
        self.hist_blocks = max(2, math.ceil(cfg.onset_backtrack_s / cfg.block_s))
        self.max_backtrack = int(cfg.onset_backtrack_s * rate_hz)
        self.confirm_rows = max(1, round(cfg.confirm_s * self.env_rate))
        # the spectral verdict needs the 20-40 Hz ring-down of an artefact to have built up
        self.judge_n = round(cfg.judge_s * rate_hz)
        self.judge_rows = max(2, round(cfg.judge_s * self.env_rate))
        self.quiet_rows = max(1, round(cfg.quiet_s * self.env_rate))
        self.blip_rows = round(cfg.quiet_blip_s * self.env_rate)
        self.max_samples = int(cfg.max_episode_s * rate_hz)
        # beat intervals of a clonus (the typing's band, with its jitter allowance)
        self.beat_lo = rate_hz / cfg.clonus_max_hz * (1.0 - cfg.clonus_jitter)
        self.beat_hi = rate_hz / cfg.clonus_min_hz * (1.0 + cfg.clonus_jitter)
        self.beat_gap = cfg.clonus_beat_gap
        self.memory = round(cfg.off_peak_memory_s * rate_hz)  # raw samples
        self.inv_memory = 1.0 / max(self.memory, 1)
        # below ~1 kHz the band is cut and the envelope is noisier: episode shapes are read on a
        # smoother copy (config.shape_smoothing_s; 1 row, i.e. none, at full band)
        self.shape_rows = _odd_rows(cfg.shape_smoothing_s(rate_hz, self.env_rate, split_hz) * self.env_rate)
        self.rhythm_rows = _odd_rows(cfg.rhythm_smoothing_s(rate_hz, self.env_rate, split_hz) * self.env_rate)
        self.rise_rows = _odd_rows(cfg.rise_smoothing_s * self.env_rate)
        #: confirmed episodes (seconds) for the tremor rule "with weak EMG": [onset_s, offset_s]
        self.active_spans: list[list[float]] = []
        #: event key -> period (s) of a voluntary cyclic rhythm in its envelope (long episodes
        #: only; read and removed by ``SpasmDetector._judge``, bounded for detectors that never do)
        self.cyclic: dict[str, float] = {}
        #: event key -> (onset, offset, type, rise s or None) of the episode's own spasm part when
        #: a much weaker burst is fused before or after it (``own_part``; the rise when the part
        #: starts after the episode: the spasm's own, not the fused burst's; read by the activity
        #: judge, removed by the detector for spasms during activity, bounded like ``cyclic``)
        self.own_parts: dict[str, tuple[int, int, SpasmType, float | None]] = {}
        #: key -> (onset, offset sample, frequency Hz, regularity, peak, mean uV) of a clonic run
        #: inside a cyclic episode (``DetectorConfig.movement_clonus_min_beats``); read by the
        #: activity judge
        self.clonic_parts: dict[str, tuple[int, int, float, float, float, float]] = {}
        #: event key -> (start, end) s of each time the episode fell back near rest (below its
        #: offset level) for at least ``cycle_silence_s`` and rose again without ending (silences
        #: shorter than ``quiet_s``); episodes long enough to span two voluntary cycles only,
        #: read and removed by the activity judge, bounded like ``cyclic``
        self.silences: dict[str, list[tuple[float, float]]] = {}
        #: (ch, sources, a, b) -> share of ch's band-passed power over samples [a, b) explained by
        #: lagged copies of the sources, None when unknown (set by ``EmgBank``; None: the
        #: amplitude ratio alone decides cross-talk)
        self.copy_share: Callable[[int, list[int], int, int], float | None] | None = None

    def in_burst(self, ch: int) -> bool:
        """A confirmed episode is open on ``ch``."""
        ep = self.eps[ch]
        return ep is not None and ep.state == ACTIVE

    def remember(self, s0: int, env: FloatArray) -> None:
        """Keep a processed block's envelope (C, m) for tracing later onsets back."""
        self.history.append((s0, env))
        if len(self.history) > self.hist_blocks:
            del self.history[0]

    def _open(self, ch: int, onset: int, rs: int, v: float) -> Episode:
        """The one place an episode is made: a crossing at row sample ``rs`` with envelope ``v``."""
        if self.seg_start is not None and onset < self.seg_start:
            onset = self.seg_start  # a burst under way when the segment began starts with it
        ep = Episode(onset=onset, cross_sample=rs, peak=v, judge_at=rs + 2 * self.judge_n, ref=v, ref_at=rs)
        if self.eps[ch] is None:
            self.n_busy += 1
        self.eps[ch] = ep
        return ep

    def run_channel(
        self, ch: int, s0: int, env: FloatArray, pe: FloatArray, settle: int, out: list[DetectorOutput]
    ) -> None:
        """Advance channel ``ch`` over one block's rows (``env`` (C, m), ``pe`` (2C, m)) from ``s0``;
        no onset before raw sample ``settle``."""
        c = self.n_ch
        bl = self.baseline
        on = float(bl.on_thr[ch, 0])
        off = float(bl.off_thr[ch])
        act = float(bl.act_thr[ch])  # "still active": restarts the quiet period (active_level)
        d = self.decim
        ep = self.eps[ch]
        first_row = 0  # first row of this block belonging to the episode
        vals = env[ch].tolist()
        if ep is not None and ep.state != CAND and ep.quiet and ep.quiet + len(vals) < self.quiet_rows:
            # the lowest level over the block (its last row: the peak term only fades while quiet)
            off_ep = offset_level(
                off,
                self.cfg.off_peak_fraction,
                ep,
                s0 + (len(vals) - 1) * self.decim,
                self.memory,
                self.inv_memory,
            )
            if max(vals) < min(off_ep, on):  # fast path: an episode winding down, still quiet
                ep.quiet += len(vals)
                ep.blip = 0
                ep.rows.append(pe[ch::c].copy().T)  # (m, 2): power, low-band power
                return
        # rows ch and c + ch of pe (2C rows): a strided copy, as ``pe[[ch, c + ch]]`` (same
        # values and layout) without fancy indexing's cost
        rows = pe[ch::c].copy().T
        share = (pe[c + ch] / np.maximum(pe[ch], 1e-12)).tolist()
        lf_max = self.cfg.artefact_low_fraction
        frac = self.cfg.off_peak_fraction
        inv = self.inv_memory
        mem = self.memory
        quiet_rows, blip_rows, max_samples = self.quiet_rows, self.blip_rows, self.max_samples
        off_ep = off if ep is None else offset_level(off, frac, ep, s0, mem, inv)
        for r, v in enumerate(vals):
            rs = s0 + r * d
            if ep is None:
                if v >= on and rs >= settle:
                    ep = self._open(ch, self._backtrack(ch, s0, vals, r) - self.lag, rs, v)
                    off_ep = offset_level(off, frac, ep, rs, mem, inv)
                    first_row = r
                continue
            if ep.state == ARTEFACT and v >= on and ep.quiet > 0 and v >= off_ep:
                # a fresh burst after an artefact: judge it on its own. It must also clear the
                # artefact's own "back near rest" level (a share of its peak): a step excites the
                # mains notches, whose ~60 Hz ring (tau = Q / (pi f), ~0.16 s) looks like EMG
                ep = self._open(ch, rs - self.lag, rs, v)
                off_ep = offset_level(off, frac, ep, rs, mem, inv)
                first_row = r
                continue
            if ep.state == ARTEFACT and v >= on and rs >= ep.judge_at:
                # re-judge the last stretch: a spasm may start under an artefact (e.g. a QRS)
                ep.judge_at = rs + self.judge_n
                cur = rows[first_row : r + 1]
                recent = (np.concatenate([*ep.rows, cur]) if ep.rows else cur)[-self.judge_rows :]
                if bl.low_fraction(ch, recent) <= self.cfg.artefact_low_fraction:
                    # looks like EMG: a new candidate, judged like any other over the next 50 ms
                    ep = self._open(ch, rs - (recent.shape[0] - 1) * d - self.lag, rs, v)
                    off_ep = offset_level(off, frac, ep, rs, mem, inv)
                    first_row = r
                    continue
            if ep.state == ACTIVE:  # the peak-relative term fades (off_peak_memory_s)
                # ``offset_level`` of an ACTIVE episode, inlined (this runs for every row)
                held = ep.ref_at + mem - rs
                fp = frac * (ep.ref if held >= 0 else ep.ref * math.exp(held * inv))
                off_ep = fp if fp > off else off
            art = share[r] > lf_max  # this row's power is mostly in the artefact band
            if v >= on and not art:
                held = ep.ref_at + mem - rs  # ``faded_peak``, inlined
                if v > (ep.ref if held >= 0 else ep.ref * math.exp(held * inv)):
                    ep.ref, ep.ref_at = v, rs
                if ep.quiet:  # a beat: rising through onset after falling back near rest
                    iv = rs - ep.beat_at
                    ep.beat_period = iv if ep.beat_at >= 0 and self.beat_lo <= iv <= self.beat_hi else 0
                    ep.beat_at = rs
                ep.above += 1
                if v > ep.peak:
                    ep.peak = v
                    off_ep = offset_level(off, frac, ep, rs, mem, inv)
            if v < off_ep:
                if ep.quiet == 0:
                    ep.quiet_start = rs
                    ep.hot = 0
                ep.quiet += 1
                ep.blip = 0
                if v >= on:
                    ep.hot += 1
            elif ep.quiet and (art or (v < on and ep.blip < blip_rows and not self._beat(ep, v, act, rs))):
                # a brief flicker above "rest", or an artefact (a QRS, a cable knock) during the
                # quiet period, does not restart it; a weak beat of a clonus at its rhythm does
                ep.blip += 0 if art else 1
                ep.quiet += 1
                if v >= on:
                    ep.hot += 1
            else:
                ep.quiet = 0
                ep.blip = 0
                ep.hot = 0
            if ep.state == CAND and ep.above >= self.confirm_rows and rs - ep.cross_sample >= self.judge_n:
                # cross-talk is judged on the mean power of the last rows, not on one row: the
                # ratio of a copy to its source is steady, one row of a MU train is not
                a = max(0, r + 1 - self.judge_rows)
                hp = np.maximum(pe[:c, a : r + 1] - pe[c:, a : r + 1], 0.0)
                self._confirm(ch, ep, rows[first_row : r + 1], np.sqrt(hp.mean(axis=1)), rs, out)
                off_ep = offset_level(off, frac, ep, rs, mem, inv)  # fading once confirmed
            if (
                ep.quiet >= quiet_rows
                and 2 * ep.hot > ep.quiet
                and ep.state == ACTIVE
                and rs - ep.onset < max_samples
            ):
                # "quiet" only against the peak-relative term, while most of the run stayed above
                # the onset level: a strong burst fused into a sustained contraction (a reach
                # during a tonic spasm). The contraction goes on; judge its offset against the
                # level it holds now, not against the burst
                ep.ref, ep.ref_at = v, rs
                ep.quiet = ep.hot = 0
                off_ep = offset_level(off, frac, ep, rs, mem, inv)
            if ep.quiet >= quiet_rows or rs - ep.onset >= max_samples:
                ep.rows.append(rows[first_row : r + 1])
                end = ep.quiet_start if ep.quiet >= quiet_rows else rs
                forced = ep.quiet < quiet_rows
                self.end(ch, end, out, truncated=False)
                if forced:  # the "rest" level moved: start afresh from here
                    bl.forget(ch)
                    on = off = math.inf
                ep = None
        if ep is not None:
            ep.rows.append(rows[first_row:])

    def _beat(self, ep: Episode, v: float, act: float, rs: int) -> bool:
        """Is envelope ``v`` (below onset, at row sample ``rs``, after rows back near rest) the
        rise of a weak beat of a clonus that goes on? The episode beats at a clonus rhythm (its
        last two beats rose through onset ``clonus_min_hz``-``clonus_max_hz`` apart), the row is
        at the "still active" level ``act`` (``active_level``: far above the resting envelope's
        flickers), and it comes when a beat is due: no sooner than (1 - ``clonus_jitter``) of a
        period after the last beat (earlier it is that beat's own tail) and at most
        ``clonus_beat_gap`` periods after it. Stretch reflex volleys vary in strength beat to
        beat (Dimitrijevic et al. 1980): one that falls short of the onset level is still the
        clonus. A weak beat continues the rhythm (the next is due a period after it)."""
        if not ep.beat_period or v < act or ep.state != ACTIVE:
            return False
        since = rs - ep.beat_at
        if not (1.0 - self.cfg.clonus_jitter) * ep.beat_period <= since <= self.beat_gap * ep.beat_period:
            return False
        ep.beat_at = rs
        return True

    def _backtrack(self, ch: int, s0: int, env_row: list[float], r: int) -> int:
        """Start of the rise: the row after the last one near rest, looking back <= ``onset_backtrack_s``."""
        off = float(self.baseline.back_thr[ch])
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

    def _confirm(
        self,
        ch: int,
        ep: Episode,
        cur_rows: FloatArray,
        env_col: FloatArray,
        rs: int,
        out: list[DetectorOutput],
    ) -> None:
        rows = np.concatenate([*ep.rows, cur_rows]) if ep.rows else cur_rows
        if self.baseline.low_fraction(ch, rows) > self.cfg.artefact_low_fraction:
            ep.state = ARTEFACT
            return
        on_pow = float(self.baseline.on_thr[ch, 0]) ** 2
        if self.shape_rows > 1 and float((rows[:, 0] - rows[:, 1]).mean()) < on_pow:
            # a cut band (low rates): rows crossing the threshold may be the noise peaks of a weak
            # burst; its mean power since the crossing (>= judge_s, several times the envelope's
            # averaging time) must clear the threshold too. Until then it stays a candidate.
            return
        ratio = self.cfg.crosstalk_ratio
        if ratio > 0 and self.n_ch > 1:
            own = float(env_col[ch])
            others = float(np.concatenate((env_col[:ch], env_col[ch + 1 :])).max())  # np.delete's values
            if others >= ratio * own and not self._own_waveform(ch, ep.onset, rs, env_col, ratio * own):
                ep.state = ARTEFACT  # cross-talk from a much stronger neighbour
                return
        ep.state = ACTIVE
        label = self.labels[ch]
        ep.key = f"{label}:emg:{ep.onset}"
        base = math.sqrt(max(float(self.baseline.base_pow[ch]), 0.0))
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

    def _own_waveform(self, ch: int, onset: int, rs: int, env_col: FloatArray, level: float) -> bool:
        """Is the burst on ``ch`` (onset ``onset``, judged at row sample ``rs``, mean envelope
        ``env_col[ch]`` over the judged rows) a muscle of its own, although channels at >=
        ``level`` in ``env_col`` dwarf it? Yes when lagged copies of their raw waveforms explain
        less than ``crosstalk_copy_share`` of its power (``crosstalk.py``: a copy is the same
        motor units seen through the tissue; two muscles fire different ones). Read from the onset over up to
        ``crosstalk_window_s`` (at least 0.15 s, reaching before the onset for a young burst)."""
        cfg = self.cfg
        if self.copy_share is None or cfg.crosstalk_copy_share > 1.0:
            return False
        a = max(onset, rs - round(cfg.crosstalk_window_s * self.rate))
        a = min(a, rs - round(0.15 * self.rate))
        sources = [j for j in np.flatnonzero(env_col >= level).tolist() if j != ch]
        share = self.copy_share(ch, sources, a, rs)
        return share is not None and share < cfg.crosstalk_copy_share

    def close_all(self, at: int, out: list[DetectorOutput], truncated: bool) -> None:
        for c in range(self.n_ch):
            if self.eps[c] is not None:
                self.end(c, at, out, truncated=truncated)

    def end(self, ch: int, end: int, out: list[DetectorOutput], truncated: bool) -> None:
        """Close channel ``ch``'s episode at raw sample ``end``; a confirmed one becomes a SpasmEvent."""
        ep = self.eps[ch]
        self.eps[ch] = None
        if ep is None:
            return
        self.n_busy -= 1
        if ep.state != ACTIVE:
            return
        out.append(self._event(ch, ep, end, truncated))

    def _event(self, ch: int, ep: Episode, end: int, truncated: bool) -> SpasmEvent:
        cfg = self.cfg
        bp = self.baseline.base_pow
        offset = max(end - self.lag, ep.onset + 1)
        for span in reversed(self.active_spans):
            if span[0] == ep.onset / self.rate and math.isinf(span[1]):
                span[1] = offset / self.rate
                break
        rows = np.concatenate(ep.rows) if ep.rows else np.zeros((1, 2))
        n_keep = max(1, min(rows.shape[0], (end - ep.cross_sample) // self.decim))
        rows = rows[:n_keep]
        env = np.sqrt(np.maximum(rows[:, 0], 0.0))
        base = math.sqrt(max(float(bp[ch]), 1e-12))
        env_hi = np.sqrt(np.maximum(rows[:, 0] - rows[:, 1], 0.0))
        base_hi = math.sqrt(max(float(bp[ch] - bp[ch + self.n_ch]), 1e-12))
        dur = (offset - ep.onset) / self.rate
        env_rh = env_hi
        if self.shape_rows > 1:  # a cut band (low rates): read the shape on a smoother envelope
            env_rh = np.sqrt(np.maximum(_smooth_rows(rows[:, 0] - rows[:, 1], self.rhythm_rows), 0.0))
            rows = np.stack([_smooth_rows(rows[:, j], self.shape_rows) for j in (0, 1)], axis=1)
            env = np.sqrt(np.maximum(rows[:, 0], 0.0))
            env_hi = np.sqrt(np.maximum(rows[:, 0] - rows[:, 1], 0.0))
        freq, regularity = clonus_rhythm(env_rh, base_hi, self.env_rate, cfg)
        if cfg.activity_context and dur >= 2.0 * cfg.rhythm_min_interval_s:
            if len(self.silences) >= 256:
                del self.silences[next(iter(self.silences))]
            off = max(base_hi * cfg.off_ratio, base_hi + cfg.off_min_delta_uv)
            off = max(off, cfg.off_peak_fraction * float(env_rh.max()))
            ends = silences(env_rh, off, max(1, round(cfg.cycle_silence_s * self.env_rate)))
            r0 = ep.cross_sample - self.lag  # raw sample of row 0, in the muscle's time
            dec, rate = self.decim, self.rate
            self.silences[ep.key] = [((r0 + i * dec) / rate, (r0 + j * dec) / rate) for i, j in ends]
        if freq is None and cfg.activity_context:
            period = cyclic_modulation(env_rh, self.env_rate, cfg)
            if period is not None:
                if len(self.cyclic) >= 256:
                    del self.cyclic[next(iter(self.cyclic))]
                self.cyclic[ep.key] = period
                clo = self._clonic_part(ep, env_rh, base_hi, env, period, offset)
                if clo is not None:
                    if len(self.clonic_parts) >= 256:
                        del self.clonic_parts[next(iter(self.clonic_parts))]
                    self.clonic_parts[ep.key] = clo
        kind: SpasmType
        if freq is not None:
            kind = "clonus"
        elif dur < cfg.twitch_max_s:
            kind = "twitch"
        elif dur <= cfg.tonic_min_s:
            kind = "phasic"
        else:
            kind = "tonic"
        peak = float(env.max())
        rel = peak / base
        # rise time: from the onset to the first row at 80 % of the episode's plateau (its upper
        # quartile: robust to one motor-unit peak late in a flat burst)
        env_rise = env_hi
        if self.rise_rows > self.shape_rows:
            # read on power averaged over ``rise_smoothing_s`` (centred, so nothing shifts): at a
            # burst's edge few motor units fire, each once or twice per 50 ms, and one early
            # discharge must not reach "80 % of the plateau" by itself
            p_hi = _smooth_rows(np.maximum(rows[:, 0] - rows[:, 1], 0.0), self.rise_rows)
            env_rise = np.sqrt(p_hi)
        rise = max(
            0.0, (ep.cross_sample + row_at_80(env_rise) * self.decim - (ep.onset + self.lag)) / self.rate
        )
        if kind != "clonus" and cfg.activity_context and dur >= cfg.twitch_max_s:
            part = own_part(
                env_rise,
                cfg,
                max(1, round(cfg.own_part_min_s * self.env_rate)),
                round(cfg.own_part_step_s * self.env_rate),
            )
            if part is not None:
                r0 = ep.cross_sample - self.lag
                a = ep.onset if part[0] == 0 else max(ep.onset, r0 + part[0] * self.decim)
                b = offset if part[1] == env_rise.shape[0] else min(offset, r0 + part[1] * self.decim)
                d = (b - a) / self.rate
                own: SpasmType = (
                    "twitch" if d < cfg.twitch_max_s else "phasic" if d <= cfg.tonic_min_s else "tonic"
                )
                # its own rise (the episode's starts with the fused burst's): onset to the first
                # row at 80 % of the part's plateau, as for the episode below
                # (None when it starts with the episode: its rise is the episode's)
                own_rise = (
                    None if part[0] == 0 else row_at_80(env_rise[part[0] : part[1]]) * self.decim / self.rate
                )
                if b > a and (own != kind or own_rise is not None):
                    if len(self.own_parts) >= 256:
                        del self.own_parts[next(iter(self.own_parts))]
                    self.own_parts[ep.key] = (a, b, own, own_rise)
        conf = confidence(rel, cfg.on_ratio, self.baseline.low_fraction(ch, rows), cfg.artefact_low_fraction)
        if freq is not None:
            conf = min(conf, 0.5 + 0.5 * regularity)
        if truncated:
            conf *= 0.5
        return SpasmEvent(
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

    def _clonic_part(
        self, ep: Episode, env: FloatArray, base: float, env_all: FloatArray, period: float, offset: int
    ) -> tuple[int, int, float, float, float, float] | None:
        """(onset, offset sample, frequency, regularity, peak and mean envelope over ``env_all``)
        of a clonic run of at least ``movement_clonus_min_beats`` inside a cyclic episode, at
        >= ``movement_clonus_cycle_ratio`` times the cycle's frequency (``period`` s), or None.

        Read in windows of ``movement_clonus_window_s`` (hop: a third of it), each with its own
        burst height: the gait or pedal bursts the clonus fused with may be far stronger than its
        beats, and against the whole episode's height the beats would not count. Overlapping
        qualifying runs are one clonus (their union); the run with most beats gives its frequency."""
        cfg = self.cfg
        if cfg.movement_clonus_min_beats == 0:
            return None
        rate = self.env_rate
        w = max(4, round(cfg.movement_clonus_window_s * rate))
        hop = max(1, w // 3)
        n = env.shape[0]
        runs: list[tuple[int, int, float, float, int]] = []
        for w0 in range(0, max(1, n - w + hop), hop):
            run = clonic_run(env[w0 : w0 + w], base, rate, cfg)
            if run is None:
                continue
            first, end, freq, regularity, beats = run
            if beats >= cfg.movement_clonus_min_beats and freq * period >= cfg.movement_clonus_cycle_ratio:
                runs.append((w0 + first, w0 + end, freq, regularity, beats))
        if not runs:
            return None
        best = max(runs, key=lambda r: r[4])
        first, end = best[0], best[1]
        for r in sorted(runs):  # the union of the runs that overlap the best one, transitively
            if r[0] < end and r[1] > first:
                first, end = min(first, r[0]), max(end, r[1])
        r0 = ep.cross_sample - self.lag
        a = max(ep.onset, r0 + first * self.decim)
        b = min(offset, r0 + end * self.decim)
        seg = env_all[first:end]
        if b <= a or seg.size == 0:
            return None
        return a, b, best[2], best[3], float(seg.max()), float(seg.mean())


def own_part(
    env: FloatArray, cfg: DetectorConfig, min_rows: int, step_rows: int = 0
) -> tuple[int, int] | None:
    """Rows [start, end) of a spasm fused with a much weaker burst of the same muscle, or None.

    During activity a spasm can fuse with the voluntary burst before or after it (a gait, pedal
    or push burst less than ``quiet_s`` away): one episode, typed by its whole length (a twitch
    after a stride's burst reported as phasic). A spasm stands far above the muscle's voluntary
    bursts (Thomas & Ross 1997; Dietz 2002), so what lies before the first row at
    1/``own_part_ratio`` of the peak (or after the last) is another burst when it has its own
    shape: it rises, then falls to a valley at most ``own_part_dip`` of its own maximum, at least
    ``min_rows`` after the episode's start, before the spasm rises (a voluntary burst ends by
    orderly de-recruitment before the next one). A spasm that builds up (a monotone ramp) or
    decays slowly (after-activity) has no such valley and is left whole. The spasm's part starts
    where it rises ``own_part_edge`` of the way from the valley to the peak (and ends alike).

    Without a valley, a spasm can also rise straight out of a voluntary burst that is still on
    (a reflex volley on top of the voluntary drive): the envelope sits at the burst's level, then
    jumps to the spasm's peak. With ``step_rows`` > 0, the lead (or the tail) before the first
    row at 1/``own_part_ratio`` of the peak (after the last) is such a burst when it lasts at
    least ``min_rows // 2`` and the envelope then climbs out of its level to 80 % of the peak
    within ``step_rows`` (``_step_from``): a reflex rise of tens of ms; a graded voluntary ramp
    into a contraction takes hundreds, and is left whole."""
    n = env.shape[0]
    p = int(np.argmax(env))
    peak = float(env[p])
    above = np.flatnonzero(env >= peak / cfg.own_part_ratio)
    start, end = 0, n
    i1, j1 = int(above[0]), int(above[-1])
    # the valley before the spasm: the row where the envelope is lowest relative to its maximum
    # so far (a monotone ramp has none: that ratio is 1 all along), at least ``min_rows`` in
    if i1 > min_rows:
        lead = env[:i1]
        depth = lead / np.maximum(np.maximum.accumulate(lead), 1e-12)
        v = min_rows + int(np.argmin(depth[min_rows:]))
        if depth[v] <= cfg.own_part_dip:
            edge = float(env[v]) + cfg.own_part_edge * (peak - float(env[v]))
            start = v + int(np.flatnonzero(env[v:i1] <= edge)[-1])
    if start == 0 and step_rows > 0:
        start = _step_from(env, i1, peak, cfg, min_rows // 2, step_rows)
    if n - 1 - j1 > min_rows:
        trail = env[j1 + 1 :][::-1]  # from the end backwards
        depth = trail / np.maximum(np.maximum.accumulate(trail), 1e-12)
        w = n - 1 - (min_rows + int(np.argmin(depth[min_rows:])))  # the valley's row
        if depth[n - 1 - w] <= cfg.own_part_dip:
            edge = float(env[w]) + cfg.own_part_edge * (peak - float(env[w]))
            end = j1 + 1 + int(np.flatnonzero(env[j1 + 1 : w + 1] <= edge)[0]) + 1
    if end == n and step_rows > 0:
        end = n - _step_from(env[::-1], n - 1 - j1, peak, cfg, min_rows // 2, step_rows)
    return None if (start, end) == (0, n) else (start, end)


def _step_from(
    env: FloatArray, i1: int, peak: float, cfg: DetectorConfig, min_rows: int, step_rows: int
) -> int:
    """``own_part``'s step rule on the rows before ``i1`` (the first row at 1/``own_part_ratio``
    of the peak; a tail is passed reversed): the row where the spasm's abrupt rise begins, or 0
    (none). The rise starts after the last row within ``own_part_edge`` of the way from the
    lead's median level to the peak; the lead before it must be a burst of at least ``min_rows``
    (its median at least ``own_part_edge`` of the peak, not rest) whose envelope ranged (10th to
    90th percentile) less than the rise then climbs to 1/``own_part_ratio`` of the peak: a
    burst's level, then a jump. And the rise must reach 80 % of the peak (the rise time's mark,
    ``SpasmEvent.rise_s``) within ``step_rows``: a graded ramp takes longer, and is left whole."""
    lead = env[:i1]
    if i1 < 2:
        return 0
    level = float(np.median(lead))
    edge = level + cfg.own_part_edge * (peak - level)
    below = np.flatnonzero(lead <= edge)
    if below.size == 0:
        return 0
    s = int(below[-1]) + 1  # the first row of the rise
    if s < max(1, min_rows):
        return 0
    fused = lead[:s]
    if float(np.median(fused)) < cfg.own_part_edge * peak:
        return 0  # rest (the start of the episode's own rise, or its decay), not a burst
    lo, hi = np.percentile(fused, (10.0, 90.0))  # its range, robust to the first rows of the rise
    if peak / cfg.own_part_ratio - hi < hi - lo:
        return 0
    top = s + int(np.argmax(env[s:] >= 0.8 * peak))  # (the peak itself is such a row)
    return s if top - s <= step_rows else 0


def row_at_80(env: FloatArray) -> int:
    """The first row of ``env`` at 80 % of its plateau (its upper quartile: robust to one
    motor-unit peak late in a flat burst): where a rise time ends, for an episode or a part."""
    return int(np.argmax(env >= 0.8 * percentile(env, 75.0)))


def faded_peak(ep: Episode, rs: int, memory: int, inv_memory: float) -> float:
    """The episode's fading peak at row sample ``rs``: its reference ``ref`` held for ``memory``
    samples (``off_peak_memory_s``), then decaying with that time constant. ``ref`` is the
    running maximum of this faded envelope (a row above it replaces it), so the result never
    rises between rows above onset: the fast paths may read it at a block's last row."""
    held = ep.ref_at + memory - rs
    if held >= 0:  # still held: ``ref * exp(0.0)``, which is ``ref`` exactly, without the call
        return ep.ref
    return ep.ref * math.exp(held * inv_memory)


def offset_level(off: float, frac: float, ep: Episode, rs: int, memory: int, inv_memory: float) -> float:
    """The "back near rest" level of an open episode at row sample ``rs``: the channel's offset level
    ``off``, or ``frac`` (``off_peak_fraction``) of the episode's peak if higher. For a confirmed
    episode that peak fades after ``off_peak_memory_s`` (``faded_peak``): the term ends a strong
    burst at its tail, but a sustained contraction seconds after its strongest moment is judged
    against rest, not against that moment. A candidate or an artefact keeps the plain peak (the
    mains notches ring after a pop, and a fresh burst must clear that ring)."""
    # ``v if v > off else off`` is ``max(off, v)`` (same operand on ties and NaN), minus the call
    if ep.state != ACTIVE:
        v = frac * ep.peak
    else:
        v = frac * faded_peak(ep, rs, memory, inv_memory)
    return v if v > off else off


def offset_levels(
    off: float, frac: float, ep: Episode, rs: np.ndarray, memory: int, inv_memory: float
) -> np.ndarray:
    """``offset_level`` at each row sample of ``rs`` at once, for ``EmgBank``'s fast path over
    whole quiet blocks (the same rule: a confirmed episode's peak fades, any other keeps it)."""
    if ep.state != ACTIVE:
        return np.full(rs.shape[0], offset_level(off, frac, ep, 0, memory, inv_memory))
    fade = np.minimum(0, ep.ref_at + memory - rs) * inv_memory
    return np.maximum(off, frac * ep.ref * np.exp(fade))


def confidence(rel: float, on_ratio: float, low_frac: float, max_low: float) -> float:
    """0..1 from how far the burst clears the onset ratio and how EMG-like its spectrum is."""
    amp = min(1.0, max(0.0, math.log(max(rel, 1e-9) / on_ratio) / math.log(10.0) + 0.5))
    spec = min(1.0, max(0.0, 1.0 - low_frac / max_low + 0.3))
    return 0.2 + 0.8 * amp * spec


def _odd_rows(n: float) -> int:
    """An odd moving-average length in rows (centred, so it shifts nothing), at least 1."""
    return 2 * int(n // 2) + 1 if n >= 2.0 else 1


def _smooth_rows(x: FloatArray, n: int) -> FloatArray:
    """Centred moving average of length ``n`` (odd), shortened at the ends (no zero padding)."""
    if n <= 1 or x.shape[0] < 2:
        return x
    k = np.ones(n)
    return np.asarray(np.convolve(x, k, mode="same") / np.convolve(np.ones(x.shape[0]), k, mode="same"))
