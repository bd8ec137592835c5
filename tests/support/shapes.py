"""Signal shapes that tests build from physiology, shared so each is written once."""

from __future__ import annotations

import numpy as np


def contraction(rate: float, n: int, at_s: float, dur_s: float, rise_s: float = 0.02) -> np.ndarray:
    """A contraction's amplitude envelope over ``n`` samples: 0 outside, a raised-cosine rise of
    ``rise_s`` (tens of ms: a reflex spasm; hundreds: graded voluntary recruitment) from ``at_s``,
    a plateau, and the mirrored fall, ``dur_s`` in all."""
    env = np.zeros(n)
    a, k, r = int(at_s * rate), int(dur_s * rate), max(1, int(rise_s * rate))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
    shape = np.r_[ramp, np.ones(max(0, k - 2 * r)), ramp[::-1]]
    env[a : a + shape.size] = shape
    return env
