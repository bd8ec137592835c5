"""Gait-phase model: is a burst during walking part of the stride, or a spasm fused with it? (issue 9)

During gait (and pedalling) each muscle bursts at the same phase of every stride: tibialis anterior
in swing and at loading, gastrocnemius/soleus in mid-late stance, quadriceps at loading, hamstrings
in terminal swing (Winter 1991; Perry & Burnfield, *Gait Analysis*), antagonists alternating by
reciprocal inhibition. A spasm during walking is a burst that belongs to no gait phase (Dietz 2002
on spastic gait; Bar-On et al. on the velocity-dependent stretch reflex during gait): it starts out
of the muscle's phase window, or keeps the muscle active through the part of the stride where it
is normally silent, or co-contracts two muscles that have been alternating, or is far stronger than
the muscle's own recent gait bursts; and it often starts abruptly (tens of ms) where recruitment
ramps a voluntary burst.

``GaitPhaseModel.spasm`` answers that for a finished burst judged during walking or rhythmic
exercise, from a per-channel *template* of that channel's recent gait bursts (the last
``gait_template_strides`` bursts, at most ``gait_template_s`` old, that ended before this one
started):

* **stride and phase**: the stride period is the accelerometer's rhythm period (or twice it: the
  autocorrelation may find the step), whichever more of the template's bursts recur at, or the
  median interval of the template's onsets without an accelerometer rhythm. A burst's phase is
  read against the burst of the same muscle one stride (and two strides) earlier, so neither the
  sensor's placement (shank, thigh) nor stride-to-stride drift matters: the error accumulates over
  one stride, not over the whole window.
* **phase window**: circular statistics (von Mises) of the template's own phase errors: mean
  direction and concentration kappa from the mean resultant length (Best & Fisher 1981 / Fisher
  1993 approximation); the window is the mean +- ``gait_phase_z`` circular SDs (1/sqrt(kappa)), at
  least ``gait_phase_window`` of a cycle. *Supporting evidence only* (it raises the confidence of a
  spasm found by another cue): a burst in its muscle's silent phase is almost always within
  ``quiet_s`` of a gait burst and fuses with it (then ``prolonged`` sees it), and on the
  independent generator the onset phase alone gave false alarms where merged strides in the
  template skipped onsets (bursts at half the accelerometer's period). Out of phase: the muscle
  burst in both previous strides but neither is within the window of this burst's onset (tested
  only if no template burst lasted a stride, or the accelerometer's period), and the onset is not
  locked to the accelerometer's period either (merged strides in a template can make twice it
  look like the stride).
* **prolonged through the silent phase** (cue ``prolonged``): the template's median burst length
  and stride give the muscle's normal silence per stride; a burst longer than any of the
  template's that runs on through ``gait_silence_share`` of it is prolonged, and not following the
  cycle if it ends out of the muscle's offset window (von Mises on the template's offsets, one or
  two strides on: gait bursts merged into one episode, their silence shorter than ``quiet_s``,
  end where the muscle's gait bursts end; a spasm fused with a gait burst wherever it stops), or if
  merging gait bursts cannot explain it: from the template's silences (median, robust SD, no
  template burst a stride long) the chance that one silence is shorter than ``quiet_s``, raised
  to the number of silences the burst spans, is below a ``gait_silence_z`` SD event.
  A burst with no amplitude cue whose extension lies inside another channel's burst at least
  sqrt(``crosstalk_ratio``) times its peak is not prolonged by itself: that is the cross-talk of
  the stronger spasm (volume conduction), one spasm reported on its own channel.
* **co-contraction**: another channel whose template bursts overlapped this channel's by at most
  ``gait_alternation_overlap`` of their time (the two alternate) is active during at least
  ``gait_cocontraction_share`` of this burst (a partner episode that merged two of its gait
  bursts counts for one gait burst from its onset: the rest is its silence and its next burst).
* **amplitude**: the peak is above ``gait_amplitude_ratio`` x the template's median peak and
  ``gait_mad_z`` robust SDs (1.4826 x MAD) above it.
* **abrupt onset** (a rise to 80 % of the peak within ``gait_abrupt_rise_s``) is not a verdict on
  its own (gait bursts can be ballistic) but raises the confidence of one.

A prolonged spasm whose onset is in the muscle's phase window began as its gait burst: it is dated
from the end of the gait burst's usual length (``GaitVerdict.spasm_onset``). ``gait_burst`` asks
whether a burst typed clonus during gait is in fact its muscle's ordinary gait burst (in phase,
no longer than its gait bursts, no cue): a weak gait burst's envelope can beat at clonus rates,
clonus itself is a sustained 4-8 Hz reflex oscillation unrelated to the stride.

The confidence of a spasm found this way is ``gait_confidence`` for one cue, each further cue
(abrupt onset included) halving the distance to 1.

Purity and chunk invariance: the model only sees what ``SpasmDetector._judge`` hands it at the
decisive call of each burst (never at a call that returns "not known yet"), and a verdict reads
only bursts that ended before the judged one started (the template) and the other channels' bursts
overlapping it, all of which are known by then whatever the chunking (a walking-context burst is
decided ``rhythm_lookahead_s`` after its offset, in the order the bursts ended). Latency: none of
its own; it adds no wait to the detector's (the event is decided when it would have been anyway).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.config import DetectorConfig
from detectors.events import SpasmEvent

_MAD_SD = 1.4826  # MAD -> SD of a normal distribution
_MAX_RECORDS = 64  # per channel; more than any template needs
_SUPPORTING = ("out_of_phase", "abrupt_onset")  # raise the confidence, never decide alone


@dataclass(frozen=True, slots=True)
class _Burst:
    onset: float  # s
    offset: float  # s
    peak: float  # uV
    rise: float | None  # s
    spasm: bool  # flagged by this model (kept out of later templates)


@dataclass(frozen=True, slots=True)
class GaitVerdict:
    """Why a burst during walking is (or is not) a spasm. ``cues`` names the evidence found."""

    spasm: bool
    confidence: float
    cues: tuple[str, ...]
    stride_s: float  # 0 when no template
    #: onset in the muscle's phase window and no longer than its gait bursts: its gait burst
    typical: bool = False
    #: a spasm fused after an in-phase gait burst: where the burst leaves the gait pattern (s)
    spasm_onset: float | None = None


def von_mises_kappa(rbar: float) -> float:
    """Maximum-likelihood concentration of a von Mises distribution from the mean resultant
    length (the approximation of Best & Fisher 1981, as in Fisher 1993, eq. 4.40)."""
    if rbar < 0.53:
        return 2 * rbar + rbar**3 + 5 * rbar**5 / 6
    if rbar < 0.85:
        return -0.4 + 1.39 * rbar + 0.43 / (1 - rbar)
    return 1 / max(rbar**3 - 4 * rbar**2 + 3 * rbar, 1e-9)


def circular_stats(errors: list[float]) -> tuple[float, float]:
    """(mean direction in cycles in [-0.5, 0.5), mean resultant length) of phases in cycles."""
    z = np.exp(2j * np.pi * np.asarray(errors, dtype=float)).mean()
    return float(np.angle(z) / (2 * np.pi)), float(abs(z))


def _wrap(x: float) -> float:
    """A phase difference in cycles wrapped to [-0.5, 0.5)."""
    return (x + 0.5) % 1.0 - 0.5


def _phase_error(onsets: list[float], t: float, stride: float, k: int) -> float | None:
    """Phase error (cycles) of an onset at ``t`` against the muscle's burst ``k`` strides earlier:
    (t - k x stride - nearest onset there) / stride, or None if no onset lies within half a stride."""
    target = t - k * stride
    best = None
    for o in onsets:
        if o >= t:
            break
        d = target - o
        if abs(d) <= 0.5 * stride and (best is None or abs(d) < abs(best)):
            best = d
    return None if best is None else best / stride


class GaitPhaseModel:
    """Per-channel gait templates and the spasm-during-gait verdict (see the module docstring)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self._bursts: dict[str, deque[_Burst]] = {}
        self._confidence: dict[str, float] = {}
        self._onset: dict[str, float] = {}
        self.last_typical = False

    def spasm(
        self,
        ev: SpasmEvent,
        t0: float,
        t1: float,
        period: float,
        spans: dict[str, list[list[float]]],
        others: Sequence[tuple[str, float, float, float]] = (),
        parts: Sequence[tuple[float, float]] | None = None,
    ) -> bool:
        """The hook ``SpasmDetector._judge`` calls for a burst during walking or rhythmic exercise:
        is it a spasm by its gait phase? ``period`` is the accelerometer's rhythm (s, 0: none);
        ``spans`` are every channel's bursts [onset, offset or inf] (s); ``others`` the other
        channels' finished bursts (channel, onset, offset, peak uV) known by now; ``parts``: the
        bursts (s) between the silences inside it when the muscle fell silent in it once per
        cycle (gait bursts merged by silences shorter than ``quiet_s``: not prolonged if each is
        within ``repetition_duration_ratio`` of the gait bursts' median length). Records the
        burst for the templates of later ones; the confidence of a spasm is kept for
        ``confidence(key)``, and whether it was its muscle's ordinary gait burst (in its phase
        window, no longer than its gait bursts, no cue) in ``last_typical``."""
        verdict = self.judge(ev, t0, t1, period, spans, others, parts)
        self.last_typical = verdict.typical
        if verdict.spasm:
            self._confidence[ev.key] = verdict.confidence
            if verdict.spasm_onset is not None:
                self._onset[ev.key] = verdict.spasm_onset
        return verdict.spasm

    def confidence(self, key: str) -> float | None:
        """The gait-based confidence of a burst this model called a spasm (once), else None."""
        return self._confidence.pop(key, None)

    def judge(
        self,
        ev: SpasmEvent,
        t0: float,
        t1: float,
        period: float,
        spans: dict[str, list[list[float]]],
        others: Sequence[tuple[str, float, float, float]] = (),
        parts: Sequence[tuple[float, float]] | None = None,
    ) -> GaitVerdict:
        """The verdict with its evidence; also records the burst (call once per burst)."""
        cfg = self.cfg
        own = self._bursts.setdefault(ev.channel, deque(maxlen=_MAX_RECORDS))
        tmpl = self._template(own, t0)
        cues: list[str] = []
        stride = 0.0
        typical = False
        in_phase = False
        med_d = 0.0
        if len(tmpl) >= cfg.gait_min_strides:
            onsets = [b.onset for b in tmpl]
            stride = self._stride(onsets, period)
            if stride > 0:
                typical, in_phase = self._typical(tmpl, onsets, stride, t0, t1)
                med_d = float(np.median([b.offset - b.onset for b in tmpl]))
                cues += self._phase_cues(tmpl, onsets, stride, period, t0, t1)
                cues += self._cocontraction(ev.channel, tmpl, stride, t0, t1, spans)
            peaks = np.array([b.peak for b in tmpl])
            med = float(np.median(peaks))
            mad = float(np.median(np.abs(peaks - med)))
            if ev.peak_uv >= max(cfg.gait_amplitude_ratio * med, med + cfg.gait_mad_z * _MAD_SD * mad):
                cues.append("amplitude")
            elif "prolonged" in cues and (
                self._merged(parts, med_d) or self._crosstalk(ev, tmpl, t0, t1, others)
            ):
                cues.remove("prolonged")  # merged gait bursts, or a neighbour's cross-talk
        # out of phase and abrupt onset are supporting evidence only (see the module docstring)
        spasm = any(c not in _SUPPORTING for c in cues)
        if spasm and ev.rise_s is not None and ev.rise_s <= cfg.gait_abrupt_rise_s:
            cues.append("abrupt_onset")
        own.append(_Burst(t0, t1, ev.peak_uv, ev.rise_s, spasm))
        conf = 1.0 - (1.0 - cfg.gait_confidence) * 0.5 ** (len(cues) - 1) if spasm else 0.0
        # A prolonged burst that began in its muscle's phase window began as its gait burst: the
        # spasm fused with it is what follows the gait burst's usual length (the earliest moment
        # the burst leaves the muscle's gait pattern), so that is where it is dated from.
        later = spasm and in_phase and "prolonged" in cues and t0 + med_d < t1
        return GaitVerdict(
            spasm, round(conf, 3), tuple(cues), stride, typical and not spasm, t0 + med_d if later else None
        )

    def gait_burst(
        self, ev: SpasmEvent, t0: float, t1: float, period: float, spans: dict[str, list[list[float]]]
    ) -> bool:
        """Is a burst typed clonus during walking its muscle's ordinary gait burst? (Records it.)

        Clonus is a reflex oscillation at 4-8 Hz sustained within one contraction and unrelated
        to the stride (Dimitrijevic, Nathan & Sherwood, Brain 1980); a gait burst recurs once
        per stride (0.7-1.1 Hz in slow pathological gait) at its muscle's phase. A weak gait
        burst of few motor units firing unfused (8-30 Hz discharges, physiological tremor at
        6-12 Hz; McAuley & Marsden, Brain 2000) can modulate its envelope at clonus rates, so a
        "clonus" that starts in its muscle's phase window, lasts no longer than its gait bursts
        and shows no other gait cue is that gait burst."""
        return self.judge(ev, t0, t1, period, spans).typical

    def _typical(
        self, tmpl: list[_Burst], onsets: list[float], stride: float, t0: float, t1: float
    ) -> tuple[bool, bool]:
        """(typical, in phase): onset within the muscle's phase window (one stride on from its
        last bursts), and then also a duration within its template's (its longest burst, or
        1.25 x the median: gait burst durations vary by ~10-20 % stride to stride)."""
        win = self._window(onsets, stride)
        e1 = _phase_error(onsets, t0, stride, 1)
        if win is None or e1 is None or abs(_wrap(e1 - win[0])) > win[1]:
            return False, False
        durations = [b.offset - b.onset for b in tmpl]
        return t1 - t0 <= max(max(durations), 1.25 * float(np.median(durations))), True

    def _merged(self, parts: Sequence[tuple[float, float]] | None, med_d: float) -> bool:
        """Are ``parts`` (the bursts between the silences inside an episode) each no longer than
        ``repetition_duration_ratio`` x the muscle's median gait burst: gait bursts merged by
        short silences, not a gait burst prolonged by a spasm?"""
        if not parts or med_d <= 0:
            return False
        return all(b - a <= self.cfg.repetition_duration_ratio * med_d for a, b in parts)

    def spasm_onset(self, key: str) -> float | None:
        """Where a spasm this model found fused after a gait burst began (s; once), else None."""
        return self._onset.pop(key, None)

    # ------------------------------------------------------------------------------ internals
    def _template(self, own: deque[_Burst], t0: float) -> list[_Burst]:
        """The channel's gait bursts that ended before ``t0``, newest ``gait_template_strides``."""
        cfg = self.cfg
        out = [b for b in own if b.offset <= t0 and b.onset >= t0 - cfg.gait_template_s and not b.spasm]
        return out[-cfg.gait_template_strides :]

    def _stride(self, onsets: list[float], period: float) -> float:
        """The stride the template's bursts recur at: the accelerometer's period or twice it,
        whichever more onsets have a predecessor one stride back for (within the minimum phase
        window); without an accelerometer rhythm, the median onset interval in the voluntary band."""
        cfg = self.cfg
        iv = [b - a for a, b in itertools.pairwise(onsets)]
        iv = [v for v in iv if cfg.rhythm_min_interval_s <= v <= cfg.rhythm_max_interval_s]
        candidates = [period, 2 * period] if period > 0 else []
        if iv:
            candidates.append(float(np.median(iv)))
        best, support = 0.0, 0
        for s in candidates:
            if s <= 0:
                continue
            n = 0
            for t in onsets[1:]:
                e = _phase_error(onsets, t, s, 1)
                if e is not None and abs(e) <= cfg.gait_phase_window:
                    n += 1
            if n > support:
                best, support = s, n
        return best if support >= cfg.gait_min_strides - 1 else 0.0

    def _window(self, onsets: list[float], stride: float) -> tuple[float, float] | None:
        """(mean, half-width) in cycles of a muscle's phase window from its template onsets (the
        von Mises fit to each onset's phase error against the burst one stride before), or None
        when too few strides recur or the muscle is not phase-locked."""
        cfg = self.cfg
        errors = [e for t in onsets[1:] if (e := _phase_error(onsets, t, stride, 1)) is not None]
        if len(errors) < cfg.gait_min_strides - 1:
            return None
        mu, rbar = circular_stats(errors)
        if rbar < cfg.gait_min_locking:
            return None
        sd = 1.0 / math.sqrt(von_mises_kappa(rbar)) / (2 * math.pi)  # circular SD, cycles
        return mu, max(cfg.gait_phase_window, cfg.gait_phase_z * sd)

    def _phase_cues(
        self, tmpl: list[_Burst], onsets: list[float], stride: float, period: float, t0: float, t1: float
    ) -> list[str]:
        cfg = self.cfg
        cues: list[str] = []
        durations = np.array([b.offset - b.onset for b in tmpl])
        win = self._window(onsets, stride)
        # a muscle whose gait bursts merge strides now and then is not phase-locked burst by burst
        shortest = min(stride, period) if period > 0 else stride  # the step, if that is the period
        if win is not None and float(durations.max()) < shortest:
            mu, w = win
            e1 = _phase_error(onsets, t0, stride, 1)
            e2 = _phase_error(onsets, t0, stride, 2)
            # out of phase only if the muscle did burst in both previous strides, elsewhere...
            out = (
                e1 is not None
                and e2 is not None
                and abs(_wrap(e1 - mu)) > w
                and abs(_wrap(e2 - 2 * mu)) > w * math.sqrt(2)
            )
            # ...and the onset is not locked to the accelerometer's own period either (merged
            # strides in the template can make twice that period look like the stride)
            if out and period > 0 and abs(period - stride) > cfg.gait_phase_window * stride:
                for k in (1, 2):
                    e = _phase_error(onsets, t0, period, k)
                    if e is not None and abs(e) <= cfg.gait_phase_window * math.sqrt(k):
                        out = False
            if out:
                cues.append("out_of_phase")
        med_d = float(np.median(durations))
        # Prolonged through the muscle's silent phase? Either the silences are long enough for
        # the episode tracker to see them every stride (then gait bursts never merge), or it ends
        # out of the muscle's offset window: gait bursts merged into one episode end where the
        # muscle's gait bursts end, a whole number of strides on; a fused spasm wherever it stops.
        silence = stride - med_d
        if (t1 - t0) - med_d < cfg.gait_silence_share * silence or t1 - t0 <= float(durations.max()):
            return cues
        pairs = itertools.pairwise(tmpl)
        gaps = np.array([b.onset - a.offset for a, b in pairs if b.onset - a.onset < 1.5 * stride])
        resolvable = False
        if gaps.size >= cfg.gait_min_strides - 1 and float(durations.max()) < stride:
            # chance that one of this muscle's silences is shorter than ``quiet_s`` (a merge),
            # from the template's silences (normal, robust SD); the burst spans m of them, and
            # that all m merged must be less likely than a ``gait_silence_z`` SD event
            med_g = float(np.median(gaps))
            sd_g = max(_MAD_SD * float(np.median(np.abs(gaps - med_g))), cfg.block_s)
            p_merge = 0.5 * math.erfc((med_g - cfg.quiet_s) / sd_g / math.sqrt(2))
            m = max(1, round((t1 - t0 - med_d) / stride))
            resolvable = p_merge**m <= 0.5 * math.erfc(cfg.gait_silence_z / math.sqrt(2))
        offsets = [b.offset for b in tmpl]
        owin = self._window(offsets, stride)
        late = False
        n = max(1, round((t1 - offsets[-1]) / stride))
        if owin is not None and n <= 2:  # beyond two strides, stride jitter blurs the window
            e = (t1 - offsets[-1]) / stride - n
            late = abs(_wrap(e - n * owin[0])) > owin[1] * math.sqrt(n)
        if resolvable or late:
            cues.append("prolonged")
        return cues

    def _crosstalk(
        self,
        ev: SpasmEvent,
        tmpl: list[_Burst],
        t0: float,
        t1: float,
        others: Sequence[tuple[str, float, float, float]],
    ) -> bool:
        """Is the prolonged part of a burst (after its muscle's usual gait-burst length) the
        cross-talk of a much stronger burst on another channel that spans it?

        Surface EMG picks up neighbouring muscles by volume conduction (Winter, Fuglevand &
        Archer, J Electromyogr Kinesiol 1994; De Luca et al., J Biomech 2012), and the offset
        level is low (2 x rest), so a strong spasm keeps a neighbour's gait burst "on" through
        its own duration. It is the same spasm, reported once, on the channel where it is: a
        burst no stronger than its own gait bursts (no amplitude cue) whose extension lies
        inside a burst at least sqrt(``crosstalk_ratio``) times its peak (the ratio at which a
        fresh burst is taken for cross-talk, in amplitude) is not prolonged by itself."""
        cfg = self.cfg
        ratio = math.sqrt(cfg.crosstalk_ratio) if cfg.crosstalk_ratio > 0 else math.inf
        ext0 = t0 + float(np.median([b.offset - b.onset for b in tmpl]))
        for ch, a, b, peak in others:
            if ch == ev.channel or peak < ratio * ev.peak_uv:
                continue
            if a <= ext0 and b >= t1 - cfg.block_s:
                return True
        return False

    def _cocontraction(
        self,
        channel: str,
        tmpl: list[_Burst],
        stride: float,
        t0: float,
        t1: float,
        spans: dict[str, list[list[float]]],
    ) -> list[str]:
        """Is a channel that has been alternating with this one active through this burst, in its
        own phase window and for no longer than its own gait bursts? (Then this burst is the one
        out of place; a partner that is itself out of place is judged on its own.)"""
        cfg = self.cfg
        dur = t1 - t0
        own_time = sum(b.offset - b.onset for b in tmpl)
        if dur <= 0 or own_time <= 0:
            return []
        a0 = tmpl[0].onset
        for ch, bursts in self._bursts.items():
            if ch == channel:
                continue
            other = [b for b in bursts if b.offset <= t0 and b.onset >= a0 and not b.spasm]
            if len(other) < cfg.gait_min_strides:
                continue
            overlap = sum(
                max(0.0, min(a.offset, b.offset) - max(a.onset, b.onset)) for a in tmpl for b in other
            )
            if overlap > cfg.gait_alternation_overlap * own_time:
                continue  # these two do not alternate
            o_on = [b.onset for b in other]
            win = self._window(o_on, stride)
            if win is None:
                continue
            longest = max(b.offset - b.onset for b in other)
            # a partner's episode may merge two of its gait bursts (its silence shorter than
            # ``quiet_s``): only its first burst is in its phase window, the rest is its silence
            # and its next burst, so it is counted for its longest single gait burst at most
            single = [b.offset - b.onset for b in other if b.offset - b.onset < stride]
            burst_len = max(single) if single else longest
            now = 0.0
            for a, b in spans.get(ch, []):
                if a >= t1 or b <= t0 or b - a > longest:
                    continue  # not during it, or longer than the partner's gait bursts
                e = _phase_error(o_on, a, stride, 1)
                if e is not None and abs(_wrap(e - win[0])) <= win[1]:
                    now += max(0.0, min(b, a + burst_len, t1) - max(a, t0))
            if now >= cfg.gait_cocontraction_share * dur:
                return ["co_contraction"]
        return []
