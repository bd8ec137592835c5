"""Rhythm of an EMG episode: is it clonus (a run of regular 3-8 Hz reflex bursts), and how regular.

One job: from one episode's envelope to (frequency or None, regularity). Used when an episode ends.
"""

from __future__ import annotations

import math

import numpy as np

from detectors import designs
from detectors.config import DetectorConfig
from detectors.sos import sosfiltfilt

FloatArray = np.ndarray


def clonus_rhythm(
    env: FloatArray, base: float, rate: float, cfg: DetectorConfig
) -> tuple[float | None, float]:
    """Frequency of the longest run of regular bursts in an episode envelope, if it is clonus.

    Bursts are counted with hysteresis between ``clonus_burst_low`` and ``clonus_burst_high`` (25% and
    50%) of the episode's burst height over rest,
    so the envelope must really fall back between bursts (a sustained contraction with a wobbly
    envelope does not count). A run needs ``clonus_min_cycles`` bursts whose onset intervals lie in
    the clonus band and within ``clonus_jitter`` of the run's median interval, and the run must
    cover at least ``clonus_min_coverage`` (half) of the episode (otherwise it is a wobble within a
    phasic/tonic spasm).
    Returns (frequency or None, regularity 0..1).
    """
    run = _longest_run(env, base, rate, cfg)
    if run is None:
        return None, 0.0
    best, first, last = run
    if (len(best) + 1) * float(np.median(best)) < cfg.clonus_min_coverage * env.shape[0] / rate:
        return None, 0.0  # a short rhythmic stretch inside a long contraction: not a clonus episode
    period = float(np.median(best)) * rate
    if trough_share(env, base, first, last, period) > cfg.clonus_max_trough:
        return None, 0.0  # beats that never fall silent: a contraction's wobble, not reflex volleys
    if periodicity(env, first, last, period) < cfg.clonus_min_periodicity:
        return None, 0.0  # beats whose shape does not recur period after period
    return _frequency(best, cfg)


def periodicity(env: FloatArray, first: int, last: int, period: float) -> float:
    """Autocorrelation (mean removed, normalised by the energy) of the envelope over a run, from
    row ``first`` to one period past ``last``, at a lag of one period: near 1 for a waveform
    that repeats itself period after period, near 0 for beats that are threshold crossings of a
    random envelope. Clonus is a self-sustaining oscillation of the stretch-reflex loop
    (Rack, Ross & Brown 1978; Hidler & Rymer 1999): each beat is a copy of the last. The beat
    count and its interval jitter see only the crossings; this sees the waveform."""
    lag = round(period)
    seg = env[first : min(env.shape[0], round(last + period))]
    if lag < 1 or seg.shape[0] <= lag:
        return 1.0  # too short to tell: the beat count decides
    s = seg - float(seg.mean())
    energy = float(np.dot(s, s))
    if energy <= 0.0:
        return 0.0
    return float(np.dot(s[:-lag], s[lag:])) / energy


def silences(env: FloatArray, level: float, min_rows: int) -> list[tuple[int, int]]:
    """Where the envelope falls below ``level`` for at least ``min_rows`` rows and rises again
    ([first row below, first row above again) of each; silences inside it, not at its ends): the muscle
    falling silent within an episode for shorter than the quiet period that would have ended
    it. Bursts of a movement cycle that follow each other closer than ``quiet_s`` merge into one
    episode, but the muscle still relaxes once per cycle and starts its next burst a cycle
    after the last; a sustained spasm under the movement's bursts does not relax."""
    change = np.flatnonzero(np.diff((env < level).view(np.int8)))
    out: list[tuple[int, int]] = []
    start = -1
    for i in change.tolist():
        if env[i + 1] < level:
            start = i + 1  # falls below
        elif start >= 0:
            if i + 1 - start >= min_rows:
                out.append((start, i + 1))  # rises again
            start = -1
    return out


def trough_share(env: FloatArray, base: float, first: int, last: int, period: float) -> float:
    """How far the envelope stays up between the beats of a run: in each period from row
    ``first`` to one period past ``last``, its lowest point over ``base`` as a share of its
    highest, the median over the periods.

    Each beat of a clonus is a reflex volley followed by the muscle's silence while the stretch
    builds up again (Dimitrijevic, Nathan & Sherwood 1980; Wallace, Ross & Thomas 2005 describe
    brief EMG bursts separated by quiescence), so the envelope returns to the resting level
    between beats (about 0 here). A sustained contraction of few motor units also beats at 3-8 Hz
    (motor-unit synchronisation, physiological tremor) but never falls silent: its troughs stay
    well above rest. The hysteresis of the beat count (``clonus_burst_low``) asks for a dip
    below a quarter of the episode's height once per beat; this asks for silence."""
    if period < 1.0:
        return 0.0
    shares: list[float] = []
    k = float(first)
    stop = min(float(env.shape[0]), last + period)
    while k + 1.0 <= stop:
        w = env[int(k) : min(env.shape[0], int(k + period))]
        if w.size:
            top = float(w.max()) - base
            if top > 0:
                shares.append((float(w.min()) - base) / top)
        k += period
    return float(np.median(shares)) if shares else 0.0


def _frequency(best: list[float], cfg: DetectorConfig) -> tuple[float, float]:
    """(frequency, regularity 0..1) of a run of intervals."""
    med = float(np.median(best))
    spread = float(np.std(best)) / med
    return round(1.0 / med, 2), max(0.0, 1.0 - spread / cfg.clonus_jitter)


def clonic_run(
    env: FloatArray, base: float, rate: float, cfg: DetectorConfig
) -> tuple[int, int, float, float, int] | None:
    """The longest regular clonic run inside an episode, whatever share of it the run covers:
    rows [start, end) of the envelope, its frequency, regularity and number of beats, or None.

    For an episode that is not clonus as a whole (the run covers less than
    ``clonus_min_coverage``): during walking or pedalling a clonus fuses with the gait or pedal
    bursts of its muscle into one long episode, whose cycle is voluntary; the clonus inside it
    is not (``DetectorConfig.movement_clonus_min_beats``). The same beats and the same run as
    ``clonus_rhythm`` counts; the run ends one median period after its last beat's start."""
    run = _longest_run(env, base, rate, cfg)
    if run is None:
        return None
    best, first, last = run
    end = min(env.shape[0], round(last + float(np.median(best)) * rate))
    freq, regularity = _frequency(best, cfg)
    return first, end, freq, regularity, len(best) + 1


def _longest_run(
    env: FloatArray, base: float, rate: float, cfg: DetectorConfig
) -> tuple[list[float], int, int] | None:
    """The longest run of regular clonus-band burst intervals in ``env`` (at least
    ``clonus_min_cycles`` beats): (its intervals in s, the row of its first beat, the row of its
    last beat), or None. A weak beat on time counts as beats of the run (``_weak_beats``)."""
    if env.shape[0] < 4:
        return None
    top = percentile(env, 95.0)
    height = top - base
    if height <= 0:
        return None
    hi = base + cfg.clonus_burst_high * height
    lo = base + cfg.clonus_burst_low * height
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
        return None
    iv = np.diff(np.asarray(starts, dtype=float)) / rate
    lo_iv, hi_iv = 1.0 / cfg.clonus_max_hz, 1.0 / cfg.clonus_min_hz
    # The clonus band bounds the run's *median* interval (its frequency); a single cycle may lie
    # up to ``clonus_jitter`` outside it: each beat is a reflex volley whose timing varies from
    # cycle to cycle (Beres-Jones, Johnson & Harkema, Exp Brain Res 2003), so a 7.7 Hz clonus has
    # intervals of 0.09-0.15 s, and cutting each at 1/8 s broke its run into pieces.
    lo_v, hi_v = lo_iv * 0.92 * (1.0 - cfg.clonus_jitter), hi_iv * 1.08 * (1.0 + cfg.clonus_jitter)
    best: list[float] = []
    best_at = (0, 0)
    run: list[float] = []
    run_first = 0
    for k, v in enumerate(iv.tolist()):
        in_band = lo_v <= v <= hi_v
        med_run = float(np.median(run)) if run else 0.0
        if in_band and (not run or abs(v - med_run) <= cfg.clonus_jitter * med_run):
            if not run:
                run_first = starts[k]
            run.append(v)
        elif (
            len(run) >= 2
            and (m := _skipped(v, med_run, cfg))
            and _weak_beats(env, starts[k], starts[k + 1], m, med_run * rate, lo, cfg.clonus_jitter)
        ):
            # A reflex volley weaker than half the clonus's height, on time: the volleys vary
            # in strength beat to beat (Dimitrijevic, Nathan & Sherwood 1980), and a beat that
            # rose above the low hysteresis level but not the high one is still a beat of
            # the clonus, not a pause in it (the interval is ``m`` periods long).
            run.extend([v / m] * m)
        else:
            run = [v] if in_band else []
            run_first = starts[k]
        if len(run) > len(best) and lo_iv * 0.92 <= float(np.median(run)) <= hi_iv * 1.08:
            best = list(run)
            best_at = (run_first, starts[k + 1])
    if len(best) + 1 < cfg.clonus_min_cycles:
        return None
    return best, best_at[0], best_at[1]


def _skipped(v: float, period: float, cfg: DetectorConfig) -> int:
    """How many periods an interval spans when it is 2 .. ``clonus_skip_beats`` + 1 whole periods
    (each within ``clonus_jitter`` of one period), else 0."""
    for m in range(2, cfg.clonus_skip_beats + 2):
        if abs(v - m * period) <= cfg.clonus_jitter * period:
            return m
    return 0


def _weak_beats(
    env: FloatArray, start: int, end: int, m: int, period: float, lo: float, jitter: float
) -> bool:
    """Is there a weak beat where each of the ``m - 1`` beats was due between the bursts starting
    at rows ``start`` and ``end``: the envelope rises to ``lo`` within ``jitter`` periods of
    ``start`` + k periods, and falls below ``lo`` on both sides of it (a beat of its own, not the
    tail of a burst nor a contraction that never relaxes)? A silence at the beat's time is a pause."""
    prev = start
    for k in range(1, m):
        a = max(prev + 1, round(start + (k - jitter) * period))
        b = min(end, round(start + (k + jitter) * period) + 1)
        if b <= a:
            return False
        top = a + int(np.argmax(env[a:b]))
        nxt = end if k == m - 1 else round(start + (k + 1 - jitter) * period)
        if env[top] < lo or env[prev:top].min() >= lo or env[top:nxt].min() >= lo:
            return False
        prev = top
    return True


def percentile(x: FloatArray, q: float) -> float:
    """``float(np.percentile(x, q))`` of a 1-D finite array (the default "linear" method), the same
    value by the same arithmetic (numpy's ``_lerp``), without the generic machinery: it runs for
    every episode."""
    n = x.shape[0]
    if n == 0 or not np.isfinite(x).all():
        return float(np.percentile(x, q))
    v = (n - 1) * (q / 100)
    lo = min(max(math.floor(v), 0), n - 1)
    hi = min(lo + 1, n - 1)
    if v >= n - 1:
        lo = hi = n - 1
    part = np.partition(x, [lo, hi]) if hi != lo else np.partition(x, lo)
    a, b = float(part[lo]), float(part[hi])
    g = v - lo
    diff = b - a
    return b - diff * (1 - g) if g >= 0.5 else a + diff * g


def cyclic_modulation(env: FloatArray, rate: float, cfg: DetectorConfig) -> float | None:
    """Period (s) of a voluntary cyclic rhythm modulating a sustained episode's envelope, or None.

    A muscle that follows a voluntary cycle without falling silent between cycles (the triceps
    through every wheelchair push, the tibialis anterior through a walk, a quadriceps pedalling)
    gives one long episode whose envelope rises and falls once per cycle, at 0.4-2.5 Hz (the
    step, stride, pedal and push rhythms). A tonic spasm is a steady contraction (its envelope
    wanders and fades with fatigue but does not recur at a fixed period) and clonus beats at
    4-8 Hz, far above any voluntary cycle (Dimitrijevic et al. 1980; Wallace et al. 2005).

    Robust to a ragged envelope: the amplitude envelope is averaged over ``cyclic_block_s``
    blocks and low-passed (zero phase) at ``cyclic_lowpass_hz``, between the fastest voluntary
    cycle and clonus (clonus beats and motor-unit discharge granularity are removed), its trend slower
    than the slowest cycle is removed (centred moving average of ``rhythm_max_interval_s``), and
    the normalised autocorrelation must have a *local peak* >= ``cyclic_envelope_r`` at a lag
    within [``rhythm_min_interval_s``, ``rhythm_max_interval_s``] that fits
    ``cyclic_min_cycles`` times into the episode, with a modulation depth (RMS of the detrended
    envelope over its mean) >= ``cyclic_min_depth``. A drifting or fading envelope has no peak
    (its autocorrelation only decays); noise has no repeatable one.
    """
    blk = max(1, round(cfg.cyclic_block_s * rate))
    n = env.shape[0] // blk
    brate = rate / blk
    lo = max(1, math.ceil(cfg.rhythm_min_interval_s * brate))
    if n < cfg.cyclic_min_cycles * lo + 2:
        return None
    e = env[: n * blk].reshape(n, blk).mean(axis=1)
    # zero-phase low-pass between the fastest voluntary cycle and clonus: 4-8 Hz beats (and the
    # motor units' discharge granularity) are gone, a 0.4-2.5 Hz cycle is kept
    if cfg.cyclic_lowpass_hz < 0.45 * brate:
        sos = designs.butter_sos(2, cfg.cyclic_lowpass_hz, "lowpass", brate)
        e = sosfiltfilt(sos, e, padlen=min(n - 1, 3 * 5))
    mean = float(e.mean())
    if mean <= 0:
        return None
    w = max(3, round(cfg.rhythm_max_interval_s * brate) | 1)
    if w < n:
        k = np.ones(w)
        trend = np.convolve(e, k, mode="same") / np.convolve(np.ones(n), k, mode="same")
        d = e - trend
    else:
        d = e - mean
    var = float(d @ d)
    if var <= 0 or math.sqrt(var / n) < cfg.cyclic_min_depth * mean:
        return None
    hi = min(math.floor(cfg.rhythm_max_interval_s * brate), n // cfg.cyclic_min_cycles)
    if hi <= lo:
        return None
    ac = np.correlate(d, d, mode="full")[n - 1 : n + hi + 1] / var
    ac = ac * n / (n - np.arange(ac.shape[0]))  # unbiased: a lag's few products count fully
    for lag in range(lo, hi + 1):
        if ac[lag] >= cfg.cyclic_envelope_r and ac[lag] >= ac[lag - 1] and ac[lag] >= ac[lag + 1]:
            return lag / brate
    return None
