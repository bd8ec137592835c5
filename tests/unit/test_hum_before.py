"""A burst's pre-onset hum computed lazily (``HumBefore``) equals the one computed at its onset.

``SignalQuality.hum_before_lazy`` defers ``hum_before`` until the value is read; ``remember``
computes waiting values just before the raw ring would drop one of their samples or a new segment
starts. Whenever it is read (soon, after the ring has wrapped, after a gap), the value must be the
one ``hum_before`` gave at the onset, and it is None exactly when that was None.
"""

from __future__ import annotations

import numpy as np
import pytest

from detectors import DetectorConfig
from detectors.emg_quality import HumBefore, SignalQuality

RATE = 1000.0
BLOCK = 50


def _quality() -> SignalQuality:
    return SignalQuality(DetectorConfig(), RATE, ["a", "b"], BLOCK)


def _block(rng: np.random.Generator, s0: int) -> np.ndarray:
    t = (s0 + np.arange(BLOCK)) / RATE
    hum = 30.0 * np.sin(2 * np.pi * 50.0 * t)
    return rng.normal(0.0, 5.0, (2, BLOCK)) + hum


@pytest.mark.parametrize("read_after_blocks", [0, 1, 40, 200])
@pytest.mark.parametrize("gap_after_blocks", [None, 30, 150])
def test_lazy_value_is_the_onset_value(read_after_blocks: int, gap_after_blocks: int | None) -> None:
    rng = np.random.default_rng(read_after_blocks * 1000 + (gap_after_blocks or 0))
    q = _quality()
    s0 = 0
    for _ in range(40):  # 2 s remembered
        q.remember(s0, _block(rng, s0))
        s0 += BLOCK
    onset = s0 - 3 * BLOCK // 2
    eager = q.hum_before(1, onset)
    lazy = q.hum_before_lazy(1, onset)
    assert eager is not None and isinstance(lazy, HumBefore)
    for k in range(read_after_blocks):
        if gap_after_blocks is not None and k == gap_after_blocks:
            s0 += 7 * BLOCK  # lost samples: a new segment
        q.remember(s0, _block(rng, s0))
        s0 += BLOCK
    assert lazy.get() == eager  # the same floats, bit for bit
    # (the ring has long dropped those samples when read_after_blocks is 200: the value was kept)
    assert q.hum_before(1, onset) is None or read_after_blocks < 200


def test_none_when_not_remembered() -> None:
    q = _quality()
    q.remember(0, np.zeros((2, BLOCK)))
    assert q.hum_before(0, 40) is None
    assert q.hum_before_lazy(0, 40) is None


def test_released_value_is_not_computed() -> None:
    rng = np.random.default_rng(5)
    q = _quality()
    s0 = 0
    for _ in range(40):
        q.remember(s0, _block(rng, s0))
        s0 += BLOCK
    lazy = q.hum_before_lazy(0, s0 - BLOCK)
    assert lazy is not None
    lazy.release()
    for _ in range(200):  # past the ring: a released value is dropped, not computed
        q.remember(s0, _block(rng, s0))
        s0 += BLOCK
    assert lazy.value is None
