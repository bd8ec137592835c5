"""The display envelope (``detectors.display.EnvelopeDecimator``): output sample k covers input
samples [ceil(k R), ceil((k + 1) R)) however the stream is chunked, and its vectorised windows give,
bit for bit, what the plain one-window-at-a-time definition gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from detectors import sos
from detectors.display import EnvelopeDecimator

RATES = [(1000.0, 50.0), (1024.0, 50.0), (2000.0, 30.0), (500.0, 47.0), (512.0, 512.0), (1000.0, 7.0)]


class _Reference:
    """The envelope written the obvious way: one output window at a time, with the same
    arithmetic (high-pass with carried state, squares, the chunk's running sum, what an unfinished
    window carries over), so the vectorised decimator must match it exactly, not approximately."""

    def __init__(self, rate_in: float, rate_out: float, n_channels: int) -> None:
        self.ratio = rate_in / rate_out
        self.n = n_channels
        self.sos = signal.butter(2, min(20.0, 0.45 * rate_in), "highpass", fs=rate_in, output="sos")
        self.zi: np.ndarray | None = None
        self.n_in = 0
        self.n_out = 0
        self.acc = np.zeros(n_channels)

    def bound(self, k: int) -> int:
        return math.ceil(k * self.ratio - 1e-9)

    def feed(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        first = self.n_out
        if len(x) == 0:
            return first, np.empty((0, self.n))
        if self.zi is None:
            self.zi = signal.sosfilt_zi(self.sos)[:, :, None] * x[0][None, None, :]
        y, self.zi = signal.sosfilt(self.sos, x, axis=0, zi=self.zi)
        csum = np.vstack([np.zeros((1, self.n)), np.cumsum(y * y, axis=0)])
        start, end = self.n_in, self.n_in + len(x)
        outs = []
        lo = start
        while True:
            w_start, w_end = self.bound(self.n_out), self.bound(self.n_out + 1)
            if w_end > end:
                break
            outs.append(np.sqrt((self.acc + (csum[w_end - start] - csum[lo - start])) / (w_end - w_start)))
            self.acc = np.zeros(self.n)
            self.n_out += 1
            lo = w_end
        self.acc = self.acc + (csum[end - start] - csum[lo - start])
        self.n_in = end
        return first, np.array(outs) if outs else np.empty((0, self.n))


def _signal(n: int, n_channels: int, seed: int) -> np.ndarray:
    """EMG-like input with a DC offset, bursts and exact zeros (a flat lead), in uV."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 5.0, (n, n_channels)) + 300.0
    x[n // 3 : n // 3 + n // 10] *= 20.0
    x[n // 2 : n // 2 + 50] = 0.0
    return x


def _chunkings(n: int, seed: int) -> list[list[int]]:
    """Chunk sizes summing to n: whole, single samples (for a prefix), fixed and random sizes,
    including empty chunks and chunks shorter than one output window."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[n]]
    out.append([1] * 300 + [n - 300])  # sample by sample, for a prefix
    for size in (7, 100, 333):
        sizes = [size] * (n // size)
        out.append([*sizes, n - sum(sizes)])
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(0, 250), n - sum(sizes))))
    out.append(sizes)
    return out


def _run(dec: EnvelopeDecimator | _Reference, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    parts = []
    pos = 0
    for size in sizes:
        first, values = dec.feed(x[pos : pos + size])
        assert first == sum(len(p) for p in parts)
        assert values.shape[1:] == (x.shape[1],)
        parts.append(values)
        pos += size
    return np.concatenate(parts)


@pytest.mark.parametrize(("rate_in", "rate_out"), RATES)
def test_vectorised_windows_equal_one_at_a_time_bit_for_bit(rate_in: float, rate_out: float) -> None:
    x = _signal(int(rate_in * 1.7), 2, seed=int(rate_in + rate_out))
    for i, sizes in enumerate(_chunkings(len(x), seed=len(x))):
        got = _run(EnvelopeDecimator(rate_in, rate_out, 2), x, sizes)
        want = _run(_Reference(rate_in, rate_out, 2), x, sizes)
        assert got.shape == want.shape
        assert got.tobytes() == want.tobytes(), f"chunking {i} differs from the reference"


@pytest.mark.parametrize(("rate_in", "rate_out"), RATES)
def test_output_does_not_depend_on_the_chunking(rate_in: float, rate_out: float) -> None:
    """Same windows and the same values however the input is cut. Only the rounding of the
    running sum (taken per chunk) may differ: a window's sum of squares is a difference of two
    partial sums, so its error is bounded by a few ulps of the signal's whole energy (at most
    ``2 n eps E``), whatever the window's own size; a window off by one sample, or a lost carry,
    is many orders of magnitude more."""
    x = _signal(int(rate_in * 1.7), 3, seed=7)
    whole = _run(EnvelopeDecimator(rate_in, rate_out, 3), x, [len(x)])
    # Exactly the outputs whose window has ended: ceil(k R) <= n for output k - 1's end.
    n_expected = max(k for k in range(len(x) + 2) if math.ceil(k * rate_in / rate_out - 1e-9) <= len(x))
    assert len(whole) == n_expected
    energy = float(np.max(np.sum(whole**2, axis=0))) * rate_in / rate_out  # ~ sum of squares
    bound = 2 * len(x) * np.finfo(float).eps * energy
    for sizes in _chunkings(len(x), seed=3):
        got = _run(EnvelopeDecimator(rate_in, rate_out, 3), x, sizes)
        assert got.shape == whole.shape
        np.testing.assert_allclose(got**2, whole**2, rtol=1e-12, atol=bound)


def test_window_is_the_rms_of_the_high_passed_input_over_its_samples() -> None:
    """Against the definition itself: output k is the RMS of the filtered signal over
    [ceil(k R), ceil((k + 1) R)), computed here from scratch, without running sums."""
    rate_in, rate_out = 1024.0, 50.0
    x = _signal(5000, 2, seed=11)
    dec = EnvelopeDecimator(rate_in, rate_out, 2)
    got = _run(dec, x, [137] * (len(x) // 137) + [len(x) % 137])
    sos = signal.butter(2, 20.0, "highpass", fs=rate_in, output="sos")
    y, _ = signal.sosfilt(sos, x, axis=0, zi=signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :])
    for k in range(len(got)):
        a, b = dec.input_index(k), dec.input_index(k + 1)
        np.testing.assert_allclose(got[k], np.sqrt(np.mean(y[a:b] ** 2, axis=0)), rtol=1e-9)
    assert dec.input_indices(0, len(got)).tolist() == [dec.input_index(k) for k in range(len(got))]
    assert dec.input_indices(5, 3).tolist() == [dec.input_index(k) for k in (5, 6, 7)]


def test_rejects_a_wrong_shape_and_an_output_rate_above_the_input() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        EnvelopeDecimator(100.0, 200.0, 1)
    with pytest.raises(ValueError, match="samples"):
        EnvelopeDecimator(1000.0, 50.0, 2).feed(np.zeros((10, 3)))


def test_public_sosfilt_fallback_gives_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SciPy's compiled kernel (another SciPy layout) the public ``sosfilt`` is used: the
    same numbers, and the carried filter state means the same thing in both."""
    x = _signal(3000, 2, seed=5)
    sizes = [1] * 50 + [333] * 8 + [3000 - 50 - 333 * 8]
    fast = _run(EnvelopeDecimator(1000.0, 50.0, 2), x, sizes)
    monkeypatch.setattr(sos, "_sosfilt", None)
    monkeypatch.setattr(sos, "_sosfilt_f64", None)
    slow = _run(EnvelopeDecimator(1000.0, 50.0, 2), x, sizes)
    assert fast.tobytes() == slow.tobytes()
