"""A display envelope: per-channel RMS of the high-passed EMG at a low, fixed output rate.

This is what dashboards and the time-series store show (about 50 Hz instead of 2 kHz). It is
not the detector's envelope: it must be cheap, stable, and identical however the input is
chunked, so output sample k always covers the same input samples [ceil(k*R), ceil((k+1)*R)) with
R = rate_in / rate_out, counted from the start of the stream.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal


class EnvelopeDecimator:
    """Streaming RMS envelope. ``feed(samples)`` returns ``(first_output_index, values)``.

    ``values`` has shape (k, n_channels); output index i corresponds to input sample
    ``ceil(i * rate_in / rate_out)`` relative to the first sample ever fed.
    """

    def __init__(self, rate_in: float, rate_out: float, n_channels: int, highpass_hz: float = 20.0) -> None:
        if rate_out > rate_in:
            raise ValueError(f"envelope rate {rate_out} Hz exceeds the input rate {rate_in} Hz")
        self.ratio = rate_in / rate_out
        self.n_channels = n_channels
        self._sos = signal.butter(2, min(highpass_hz, 0.45 * rate_in), "highpass", fs=rate_in, output="sos")
        self._zi = np.zeros((self._sos.shape[0], 2, n_channels))
        self._primed = False
        self._n_in = 0  # input samples consumed so far
        self._n_out = 0  # output samples produced so far
        self._acc = np.zeros(n_channels)  # sum of squares of the current, unfinished window

    def _bound(self, k: int) -> int:
        return math.ceil(k * self.ratio - 1e-9)

    def feed(self, samples: np.ndarray) -> tuple[int, np.ndarray]:
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"expected (n, {self.n_channels}) samples, got shape {x.shape}")
        first = self._n_out
        if len(x) == 0:
            return first, np.empty((0, self.n_channels))
        if not self._primed:
            # Start the filter in steady state on the first sample so a DC offset is no burst.
            self._zi = signal.sosfilt_zi(self._sos)[:, :, None] * x[0][None, None, :]
            self._primed = True
        y, self._zi = signal.sosfilt(self._sos, x, axis=0, zi=self._zi)
        sq = y * y
        csum = np.vstack([np.zeros((1, self.n_channels)), np.cumsum(sq, axis=0)])
        start, end = self._n_in, self._n_in + len(x)
        outs = []
        lo = start  # absolute index where the current window's not-yet-summed part begins
        while True:
            w_start, w_end = self._bound(self._n_out), self._bound(self._n_out + 1)
            if w_end > end:
                break
            part = csum[w_end - start] - csum[lo - start]
            total = self._acc + part
            outs.append(np.sqrt(total / (w_end - w_start)))
            self._acc = np.zeros(self.n_channels)
            self._n_out += 1
            lo = w_end
        self._acc = self._acc + (csum[end - start] - csum[lo - start])
        self._n_in = end
        return first, (np.array(outs) if outs else np.empty((0, self.n_channels)))

    def input_index(self, output_index: int) -> int:
        """Input sample (relative to stream start) where output ``output_index``'s window begins."""
        return self._bound(output_index)
