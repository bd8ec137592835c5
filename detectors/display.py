"""A display envelope: per-channel RMS of the high-passed EMG at a low, fixed output rate.

This is what dashboards and the time-series store show (about 50 Hz instead of 2 kHz). It is
not the detector's envelope: it must be cheap, stable, and identical however the input is
chunked, so output sample k always covers the same input samples [ceil(k*R), ceil((k+1)*R)) with
R = rate_in / rate_out, counted from the start of the stream (the values agree to the rounding of
the running sum, which is taken per chunk: a few ulps of the stream's energy).
"""

from __future__ import annotations

import math

import numpy as np

from detectors import designs
from detectors.sos import filter_inplace


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
        self._sos = designs.butter_sos(2, min(highpass_hz, 0.45 * rate_in), "highpass", rate_in)
        #: Filter state per channel, in the kernel's layout (channels, sections, 2).
        self._zi = np.zeros((n_channels, self._sos.shape[0], 2))
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
            zi = designs.sosfilt_zi(self._sos)[:, :, None] * x[0][None, None, :]
            self._zi = np.ascontiguousarray(zi.transpose(2, 0, 1))
            self._primed = True
        y = self._highpass(x)
        sq = y * y
        n = len(x)
        csum = np.empty((n + 1, self.n_channels))
        csum[0] = 0.0
        np.cumsum(sq, axis=0, out=csum[1:])
        start, end = self._n_in, self._n_in + n
        # Every window that ends in this chunk at once: bounds of outputs n_out, n_out + 1, ...
        # (the same ``ceil(k * R - 1e-9)`` as ``_bound``, elementwise in float64), and each
        # window's sum as a difference of the chunk's running sum; the first window also adds
        # what earlier chunks left in ``_acc``. The arithmetic is the same, value for value,
        # as one window at a time, so the output is bit for bit what a loop would give.
        ends = self._bounds(self._n_out, self._n_out + int(n / self.ratio) + 3)
        m = int(np.searchsorted(ends[1:], end, side="right"))  # windows finished in this chunk
        if m == 0:
            self._acc = self._acc + (csum[n] - csum[0])
            self._n_in = end
            return first, np.empty((0, self.n_channels))
        bounds = ends[: m + 1]
        cut = bounds[1:] - start  # window ends, relative to this chunk
        lo = np.empty(m, dtype=np.int64)
        lo[0] = 0
        lo[1:] = cut[:-1]
        total = csum[cut] - csum[lo]
        total[0] = self._acc + total[0]
        values = np.sqrt(total / (bounds[1:] - bounds[:-1])[:, None])
        self._acc = np.zeros(self.n_channels) + (csum[n] - csum[cut[-1]])
        self._n_out += m
        self._n_in = end
        return first, values

    def _highpass(self, x: np.ndarray) -> np.ndarray:
        """``sosfilt(sos, x, axis=0)`` continuing from ``_zi`` (updated), as an (n, channels) view."""
        # The detector's in-place row filter (scipy's compiled kernel, or the public sosfilt):
        # the public function alone spends several times the filtering of a 100-sample batch
        # in moving axes and copying.
        rows = np.array(x.T, dtype=np.float64, order="C")  # a copy, filtered in place
        filter_inplace(self._sos, rows, self._zi)
        return rows.T

    def _bounds(self, k0: int, k1: int) -> np.ndarray:
        """``_bound(k)`` for k in [k0, k1), as int64."""
        return np.ceil(np.arange(k0, k1, dtype=np.int64) * self.ratio - 1e-9).astype(np.int64)

    def input_indices(self, first: int, count: int) -> np.ndarray:
        """``input_index`` of outputs ``first .. first + count - 1`` (int64)."""
        return self._bounds(first, first + count)

    def input_index(self, output_index: int) -> int:
        """Input sample (relative to stream start) where output ``output_index``'s window begins."""
        return self._bound(output_index)
