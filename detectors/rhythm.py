"""Rhythm of an EMG episode: is it clonus (a run of regular 3-8 Hz reflex bursts), and how regular.

One job: from one episode's envelope to (frequency or None, regularity). Used when an episode ends.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.config import DetectorConfig

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
    if env.shape[0] < 4:
        return None, 0.0
    top = percentile(env, 95.0)
    height = top - base
    if height <= 0:
        return None, 0.0
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
    if (len(best) + 1) * float(np.median(best)) < cfg.clonus_min_coverage * env.shape[0] / rate:
        return None, 0.0  # a short rhythmic stretch inside a long contraction: not a clonus episode
    med = float(np.median(best))
    spread = float(np.std(best)) / med
    return round(1.0 / med, 2), max(0.0, 1.0 - spread / cfg.clonus_jitter)


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
