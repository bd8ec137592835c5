"""Is a weak burst under a much stronger channel a copy of it (cross-talk) or a muscle of its own?

Cross-talk is volume conduction: the potentials of the *same* motor units reach the neighbouring
electrodes through the tissue, instantaneously (quasi-static volume conduction) and low-passed by
it (Lindstrom & Magnusson, Proc IEEE 1977; Winter, Fuglevand & Archer, J Electromyogr Kinesiol
1994, who used the cross-correlation of the raw signals as a cross-talk index). So the copy is,
to a first approximation, the source's band-passed waveform through a short filter (a few ms
long): a linear fit of the burst on lagged copies of the source explains most of a copy's
power. Two muscles contracting together, even from one command (a reach's agonist and its
anticipatory postural muscles, both legs standing up), fire *different* motor units: their
envelopes rise and fall together (common drive, De Luca & Erim 1994), but their raw waveforms
are uncorrelated, and the fit explains almost nothing of the weaker one. The amplitude ratio
alone ("another channel 8x stronger") cannot tell these apart; the waveform can.

Pure numpy/scipy: a function of raw stretches and the bank's own filter.
"""

from __future__ import annotations

import numpy as np

from detectors.sos import detrend_linear, sosfiltfilt

FloatArray = np.ndarray


def copy_share(raw: FloatArray, sos: FloatArray, pad: int, max_lag: int) -> float:
    """Largest share (0..1) of row 0's power that lagged copies of one of the other rows explain.

    ``raw`` (1 + k, n): the burst's channel, then the k stronger channels. Each is linearly
    detrended and zero-phase filtered with the EMG filter ``sos`` (band-pass and notches: hum and
    drift, common to all channels, must not count as shared waveform); the first ``pad`` samples
    only let the filter settle. Row 0 is then fitted (least squares) by each source in turn,
    shifted by -``max_lag``..``max_lag`` samples (a short FIR: the tissue's low-pass and any small
    delay); its share is 1 - residual power / power. With 2 x ``max_lag`` + 1 taps and hundreds of
    samples, an unrelated waveform is explained by a few % (the fit's degrees of freedom over
    the samples)."""
    x = detrend_linear(np.asarray(raw, dtype=np.float64))  # scipy.signal.detrend(raw, axis=1)
    y = sosfiltfilt(sos, x)[:, pad:]  # scipy.signal.sosfiltfilt(sos, x, axis=1)
    n = y.shape[1] - 2 * max_lag
    taps = 2 * max_lag + 1
    if n < 8 * taps:
        return 1.0  # too short to tell: the cautious verdict (a copy)
    target = y[0, max_lag : max_lag + n]
    power = float(np.dot(target, target))
    if power <= 0.0:
        return 1.0
    best = 0.0
    for s in range(1, y.shape[0]):
        a = np.stack([y[s, j : j + n] for j in range(taps)], axis=1)
        coef, *_ = np.linalg.lstsq(a, target, rcond=None)
        resid = target - a @ coef
        best = max(best, 1.0 - float(np.dot(resid, resid)) / power)
    return min(1.0, best)
