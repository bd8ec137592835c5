"""EMG bank: the many-blocks path (``process_blocks``, used offline) equals the block-by-block one.

``process_blocks`` filters clean stretches in one call and skips quiet blocks a baseline segment at
a time; it must give exactly the outputs of ``process_block`` on each block in turn, whatever the
stretches it is handed. The signals below hit every branch that makes a block need the per-block
code: bursts (episodes, their quiet tails, forced ends at ``max_episode_s``), clipping at a known
full scale, rails, flat (lead-off) stretches, NaNs, and 50 Hz hum on a floating input.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from detectors import DetectorConfig
from detectors.emg import EmgBank
from detectors.events import DetectorOutput

RATE = 1000.0
FULL_SCALE = 900.0


def _signal(seed: int, seconds: float = 30.0, n_ch: int = 3) -> np.ndarray:
    """(channels, samples): resting EMG with bursts of 0.05-4 s, clipping, flat, NaN and hum stretches."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    sos = signal.butter(2, [30.0, 200.0], btype="bandpass", fs=RATE, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n_ch, n)), axis=1)
    x /= x.std(axis=1, keepdims=True)
    env = np.full((n_ch, n), 3.0)
    for _ in range(int(seconds / 2)):
        ch = int(rng.integers(n_ch))
        t0 = int(rng.integers(int(3 * RATE), n - int(5 * RATE)))
        dur = int(rng.uniform(0.05, 4.0) * RATE)
        env[ch, t0 : t0 + dur] += rng.uniform(20.0, 400.0) * np.hanning(dur)
    x = x * env
    np.clip(x, -FULL_SCALE, FULL_SCALE, out=x)  # the strongest bursts touch the rails
    t = np.arange(n) / RATE
    for _ in range(3):
        ch = int(rng.integers(n_ch))
        a = int(rng.integers(int(5 * RATE), n - int(2 * RATE)))
        kind = int(rng.integers(3))
        b = a + int(rng.uniform(0.1, 1.5) * RATE)
        if kind == 0:
            x[ch, a:b] = x[ch, a]  # stuck (flat)
        elif kind == 1:
            x[ch, a : a + 3] = np.nan
        else:
            x[ch, a:b] = 800.0 * np.sin(2 * np.pi * 50.0 * t[a:b])  # floating input
    return x


def _run(x: np.ndarray, cuts: list[int], cfg: DetectorConfig) -> list[DetectorOutput]:
    bank = EmgBank(cfg, RATE, [f"E{i}" for i in range(x.shape[0])], 50, "test")
    b = bank.block
    n_blocks = x.shape[1] // b
    out: list[DetectorOutput] = []
    k = 0
    for size in [*cuts, n_blocks]:
        size = min(size, n_blocks - k)
        if size <= 0:
            continue
        chunk = np.array(x[:, k * b : (k + size) * b], order="C")
        if size == 1:
            bank.process_block(k * b, chunk, out)
        else:
            bank.process_blocks(k * b, chunk, out)
        k += size
        # every sample processed is in the quality ring, which later bursts read back
        assert bank.quality.raw_end == bank.processed_until == k * b
        if k >= n_blocks:
            break
    bank.close_all(n_blocks * b, out, truncated=True)
    return out


def _reference(x: np.ndarray, cfg: DetectorConfig) -> list[DetectorOutput]:
    return _run(x, [1] * (x.shape[1] // 50 + 1), cfg)


_CFG = DetectorConfig(mains_hz=50, max_episode_s=2.0, full_scale_uv=FULL_SCALE)
# seed 13: since a reattached channel learns its rest from its first clean blocks, seed 3's clipped
# burst after its lead-off is one clipped event, and no longer exercises the saturated branch
_X = _signal(13)
_REF = _reference(_X, _CFG)


def test_reference_signal_exercises_the_branches() -> None:
    kinds = {type(o).__name__ for o in _REF}
    assert {"Onset", "SpasmEvent", "QualityChange"} <= kinds
    events = [o for o in _REF if type(o).__name__ == "SpasmEvent"]
    assert any(getattr(e, "clipped", False) for e in events)
    assert len(events) >= 10
    assert {getattr(o, "state", None) for o in _REF} >= {"ok", "lead_off", "saturated"}


def test_whole_signal_in_one_call_equals_block_by_block() -> None:
    assert _run(_X, [], _CFG) == _REF


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=20))
def test_any_stretches_equal_block_by_block(cuts: list[int]) -> None:
    assert _run(_X, cuts, _CFG) == _REF


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=10_000))
def test_other_signals_and_default_settings(seed: int) -> None:
    x = _signal(seed, seconds=20.0, n_ch=2)
    cfg = DetectorConfig(mains_hz=50)
    assert _run(x, [7, 1, 33, 2, 200], cfg) == _reference(x, cfg)


def _long_rest(seed: int, seconds: float = 75.0, n_ch: int = 2) -> np.ndarray:
    """Mostly rest, with a resting level that drifts (the baseline's updates move the thresholds)
    and a few sparse bursts after the first 20 s (the baseline window: its ring is full)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    sos = signal.butter(2, [30.0, 200.0], btype="bandpass", fs=RATE, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n_ch, n)), axis=1)
    x /= x.std(axis=1, keepdims=True)
    t = np.arange(n) / RATE
    env = 3.0 + 1.5 * np.sin(2 * np.pi * t / 23.0 + rng.uniform(0, 6, (n_ch, 1)))
    for t0 in (24.0, 24.3, 41.7, 58.2, 66.0):
        ch = int(rng.integers(n_ch))
        a, dur = int(t0 * RATE), int(rng.uniform(0.1, 2.0) * RATE)
        env[ch, a : a + dur] += rng.uniform(25.0, 300.0) * np.hanning(dur)
    return x * env


def test_rest_segments_in_bulk_equal_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_quiet_segments`` does many baseline segments at rest at once (their medians, the
    level's updates, each segment against its own onset level, the ring of raw samples entered
    stretch by stretch): the outputs must be those of one block at a time, bit for bit, in any
    stretches, and the bulk path must really have been taken (most of the signal is rest)."""
    done: list[int] = []
    real = EmgBank._quiet_segments

    def spy(self: EmgBank, s0: int, k0: int, *args: object) -> int:
        stop = real(self, s0, k0, *args)  # type: ignore[arg-type]
        done.append(stop - k0)
        return stop

    cfg = DetectorConfig(mains_hz=50)
    for seed in (1, 2):
        x = _long_rest(seed)
        ref = _reference(x, cfg)
        assert sum(type(o).__name__ == "SpasmEvent" for o in ref) >= 4
        monkeypatch.setattr(EmgBank, "_quiet_segments", spy)
        done.clear()
        assert _run(x, [], cfg) == ref
        assert sum(done) * 0.05 > 30.0  # > 30 s of the 75 s went through the bulk path
        assert _run(x, [397, 1, 250, 13, 600], cfg) == ref
        # chunks that end at a segment boundary reached in bulk just before a burst: the next
        # chunk's burst reads the raw samples before it (the ring must hold the bulk's stretches)
        assert _run(x, [470, 360, 330, 10, 150], cfg) == ref
        monkeypatch.undo()


def test_a_plan_of_segments_commits_what_one_segment_at_a_time_gives() -> None:
    """``RestBaseline.quiet_plan`` + ``commit`` against ``add_blocks`` segment by segment: the same
    ring, position, counts, resting powers and all four levels, bit for bit, for a commit cut at
    every segment of the plan (including before and after each update)."""
    from detectors.emg_baseline import RestBaseline

    cfg = DetectorConfig()
    rng = np.random.default_rng(9)
    c = 3
    bps = RestBaseline(cfg, c).blocks_per_seg
    warm = np.abs(rng.standard_normal((60, 2 * c, bps))) * 10.0 ** rng.uniform(-1, 2, (1, 2 * c, 1))
    later = np.abs(rng.standard_normal((9, 2 * c, bps))) * 10.0 ** rng.uniform(-1, 2, (1, 2 * c, 1))
    for cut in range(1, 10):
        one, bulk = RestBaseline(cfg, c), RestBaseline(cfg, c)
        for seg in warm:
            one.add_blocks(seg)
            bulk.add_blocks(seg)
        assert bulk.steady()
        plan = bulk.quiet_plan(later.transpose(1, 0, 2).reshape(2 * c, -1))
        assert plan is not None and plan.ups  # the level is updated inside the plan
        bulk.commit(plan, cut)
        for j, seg in enumerate(later[:cut]):
            np.testing.assert_array_equal(plan.on_seg[:, j], one.on_thr[:, 0])  # read against
            one.add_blocks(seg)
        for name in ("ring", "base_pow", "on_thr", "off_thr", "back_thr", "act_thr", "valid_segs"):
            assert getattr(bulk, name).tobytes() == getattr(one, name).tobytes(), (cut, name)
        assert (bulk.pos, bulk.segs_seen, bulk.seg_blocks) == (one.pos, one.segs_seen, one.seg_blocks)
    nan = later.transpose(1, 0, 2).reshape(2 * c, -1).copy()
    nan[0, 5] = np.nan
    assert bulk.quiet_plan(nan) is None  # one segment at a time then (np.median's NaN rules)


def _mains_line_by_fit(
    col: np.ndarray, rate: float, min_uv: float, s0: int, min_share: float = 0.6
) -> tuple[float, complex] | None:
    """``mains_line`` as first written: both least-squares fits on every block, no shortcut."""
    import cmath
    import math

    n = col.shape[0]
    t = np.arange(n) / rate
    xc = col - col.mean()
    total = float(xc @ xc)
    if n < 8 or total <= 0:
        return None
    for f0 in (50.0, 60.0):
        basis = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t), np.ones(n), t], axis=1)
        coef, *_ = np.linalg.lstsq(basis, col, rcond=None)
        fit = basis[:, :2] @ coef[:2]
        p = float(fit @ fit)
        if p >= min_share * total and math.sqrt(p / n) >= min_uv:
            turn = (f0 * s0 / rate) % 1.0
            return f0, complex(float(coef[1]), -float(coef[0])) * cmath.exp(-2j * math.pi * turn)
    return None


def test_mains_line_shortcut_gives_the_fits_answer() -> None:
    """The floating-input test skips its fits when a block's variance cannot hold a sinusoid of
    ``lead_off_mains_uv`` RMS (a bound, see ``emg_quality._hum_bases``): the answers must be the
    fits' own, here for blocks straddling that level, with offsets, trends, noise and near-misses
    in frequency, at every block length and rate the detector uses."""
    from detectors.emg_quality import mains_line

    rng = np.random.default_rng(11)
    found = 0
    for _ in range(3000):
        rate = float(rng.choice([200, 250, 500, 1000, 1024, 2000, 2048]))
        n = int(rng.choice([8, 10, 13, 51, round(0.05 * rate)]))
        t = np.arange(n) / rate
        spread = 1.0 if rng.random() < 0.7 else rng.uniform(0.3, 3)
        amp = 300.0 * np.sqrt(2) * rng.uniform(0.8, 1.1) * spread
        f = float(rng.choice([50.0, 60.0, 55.0, 45.0]))
        col = (
            amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            + rng.normal(0, rng.uniform(0, 200), n)
            + rng.uniform(-1e4, 1e4)
            + rng.normal(0, 1000) * t
        )
        s0 = int(rng.integers(0, 10**6))
        got = mains_line(col, rate, 300.0, s0)
        assert got == _mains_line_by_fit(col, rate, 300.0, s0)
        found += got is not None
    assert 300 < found < 2700  # both answers are common: the blocks straddle the level


def test_filter_inplace_fallback_matches_the_compiled_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another SciPy layout (no private kernel) uses the public ``sosfilt``: same numbers, and the
    carried state (signals, sections, 2) means the same in both (it was transposed wrongly once)."""
    from scipy import signal as sig

    from detectors import emg_filters
    from detectors import sos as kernel

    sos = sig.butter(4, [20, 450], btype="bandpass", fs=2000, output="sos")
    x = np.random.default_rng(3).standard_normal((3, 1000))

    def run() -> np.ndarray:
        zi = np.zeros((3, sos.shape[0], 2))
        out = []
        for a in range(0, 1000, 137):
            rows = np.array(x[:, a : a + 137], order="C")
            emg_filters.filter_inplace(sos, rows, zi)
            out.append(rows)
        return np.concatenate(out, axis=1)

    fast = run()
    assert kernel._sosfilt_f64 is not None  # the float64 specialisation was found and checked
    monkeypatch.setattr(kernel, "_sosfilt_f64", None)
    np.testing.assert_array_equal(run(), fast)  # the fused kernel's dispatch: the same code
    monkeypatch.setattr(kernel, "_sosfilt", None)
    np.testing.assert_allclose(run(), fast, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast, sig.sosfilt(sos, x, axis=-1), rtol=0, atol=1e-12)


def test_row_sums_are_numpys_reduce_bit_for_bit() -> None:
    """The decimation sums (``emg_filters._row_sums``) must be numpy's, bit for bit: the envelope
    rows, and so every event, may not move by an ulp for the speed-up. Values over 16 decades
    make any other order of additions show; rows of 16 or more go to numpy itself."""
    from detectors.emg_filters import _row_sums, _row_sums_ok

    rng = np.random.default_rng(7)
    for d in range(1, 16):
        y3 = rng.standard_normal((2, 50, d)) * 10.0 ** rng.uniform(-8, 8, (2, 50, d))
        ref = np.add.reduce(y3, axis=-1)
        assert _row_sums(y3).tobytes() == ref.tobytes(), d
        out = np.empty((2, 50))
        assert _row_sums(y3, out=out) is out and out.tobytes() == ref.tobytes(), d
        assert _row_sums_ok(d)
    assert not _row_sums_ok(16) and not _row_sums_ok(40)


def test_power_rows_are_the_plain_formulas_bit_for_bit() -> None:
    """``EmgFilters.run`` stacks squares and samples and sums the decimation rows of both in one
    reduction: the power rows must be those of the plain formulas (squares summed per row; the
    row sums low-passed, squared; both smoothed), bit for bit, at every decimation factor the
    rates give (1 at 200 Hz, 5 at 1 kHz, 10 at 2 kHz, 20 at 4 kHz), blocks of whole and partial
    rows, a restart, carried states; streaming blocks take numpy's reduce, a long stretch (the
    offline path) ``_row_sums``."""
    from detectors.emg_filters import _REDUCE_ROWS, EmgFilters
    from detectors.sos import filter_inplace

    cfg = DetectorConfig()
    rng = np.random.default_rng(5)
    for rate in (200.0, 1000.0, 2000.0, 4000.0):
        c = 3
        f = EmgFilters(cfg, rate, c, 50)
        d = f.decim
        zi, zl, ze = np.zeros_like(f.zi), np.zeros_like(f.zi_low), np.zeros_like(f.zi_env)
        base = np.full(2 * c, np.nan)
        for i, n in enumerate((5 * d, 7 * d + 3, 10 * d, 10 * d, 300 * d + 1)):  # last: _row_sums
            x = rng.standard_normal((c, n)) * 10.0 ** rng.uniform(-2, 4, (c, 1))
            if i == 2:
                f.reset(np.array([False, True, False]))
            restart = np.flatnonzero(f.need_reset)
            ref = x.copy()
            got = f.run(x, base)
            # the plain formulas, on states kept beside the filters'
            zi[restart] = f.zi0[None, :, :] * ref[restart, 0][:, None, None]
            filter_inplace(f.sos, ref, zi)
            m = n // d
            y = ref[:, : m * d].reshape(c, m, d)
            sq = (y * y).sum(axis=2)
            sums = y.sum(axis=2)
            zl[restart] = 0.0
            filter_inplace(f.sos_low, sums, zl)
            pw = np.concatenate([sq, sums * sums])
            start = pw[:, 0]
            cols = np.concatenate([restart, restart + c])
            ze[cols] = f.zi0_env[None, :, :] * start[cols][:, None, None]
            filter_inplace(f.sos_env, pw, ze)
            assert got is not None and got.tobytes() == pw.tobytes(), (rate, i)
            assert (2 * c * m > _REDUCE_ROWS * d) == (i == 4) or d == 1
            assert x.tobytes() == ref.tobytes()  # the block is filtered in place


def _hum_power_plain(x: np.ndarray, rate: float, f0: float, top_hz: float) -> float:
    n = x.shape[0]
    t = np.arange(n, dtype=np.float64) - 0.5 * (n - 1)
    xm = x - x.mean()
    xd = xm - (float(t @ xm) / float(t @ t)) * t
    w = np.hanning(n)
    p = np.abs(np.fft.rfft(xd * w)) ** 2
    f = np.fft.rfftfreq(n, 1.0 / rate)
    on = np.zeros(f.shape, dtype=bool)
    for h in range(1, 6):
        if h * f0 > top_hz:
            break
        on |= np.abs(f - h * f0) <= max(1.5, rate / n)
    return 2.0 * float(p[on].sum()) / (n * float(w @ w))


def _electrode_spectrum_plain(x: np.ndarray, rate: float, cfg: DetectorConfig) -> tuple[float, float]:
    n = x.shape[0]
    if n < 16:
        return 0.0, 0.0
    t = np.arange(n, dtype=np.float64)
    xd = x - np.polyval(np.polyfit(t, x, 1), t)
    p = np.abs(np.fft.rfft(xd * np.hanning(n))) ** 2
    f = np.fft.rfftfreq(n, 1.0 / rate)
    band = (f >= cfg.band_low_hz) & (f <= min(cfg.band_high_hz, 0.45 * rate))
    total = float(p[band].sum())
    if total <= 0.0:
        return 0.0, 0.0
    line = 0.0
    for f0 in (50.0, 60.0):
        on = np.zeros(f.shape, dtype=bool)
        for h in range(1, 6):
            on |= np.abs(f - h * f0) <= max(1.5, rate / n)
        line = max(line, float(p[band & on].sum()) / total)
    return line, float(p[band & (f < cfg.artefact_band_hz)].sum()) / total


def test_burst_spectra_are_the_plain_formulas_bit_for_bit() -> None:
    """``electrode_spectrum`` and ``hum_power`` keep their per-length constants (window, bins,
    masks, the trend fit's scaled design matrix) between bursts and fit the trend as
    ``np.polyfit``/``np.polyval`` do: the same bits as the plain formulas, on stretches of the
    lengths bursts give (clamped and free), twice each (the second from the kept constants)."""
    from detectors.emg_quality import electrode_spectrum, hum_power, hum_powers

    cfg = DetectorConfig()
    rng = np.random.default_rng(11)
    for rate in (250.0, 1000.0, 1024.0, 2000.0):
        top = min(cfg.band_high_hz, 0.45 * rate)
        for n in (10, 16, int(0.15 * rate), int(0.5 * rate), int(2 * rate), *rng.integers(16, 2 * rate, 6)):
            t = np.arange(int(n)) / rate
            x = rng.standard_normal(int(n)) * 10.0 ** rng.uniform(-1, 3) + rng.uniform(-500, 500)
            x = (x + 30.0 * np.sin(2 * np.pi * 50.0 * t)).astype(np.float32).astype(np.float64)
            for _ in range(2):
                assert electrode_spectrum(x, rate, cfg) == _electrode_spectrum_plain(x, rate, cfg)
                plain = tuple(_hum_power_plain(x, rate, f0, top) for f0 in (50.0, 60.0))
                assert hum_powers(x, rate, top) == plain  # one periodogram for both lines
                assert (hum_power(x, rate, 50.0, top), hum_power(x, rate, 60.0, top)) == plain


def test_raw_stretch_reads_the_ring_as_the_wrapped_gather() -> None:
    """A stretch in one piece of the ring is sliced, one across its end gathered: either way the
    samples remembered at those counters, float64, for every channel list."""
    from detectors.emg_quality import SignalQuality

    q = SignalQuality(DetectorConfig(), 500.0, ["a", "b", "c"], 25)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5000)).astype(np.float32)
    s0 = 0
    for n in (25, 40, 333, 1000, 7, 2000, 1595):
        q.remember(s0, x[:, s0 : s0 + n].astype(np.float64))
        s0 += n
        for _ in range(40):
            b = int(rng.integers(max(1, s0 - q.raw_len + 1), s0 + 1))
            a = int(rng.integers(max(0, s0 - q.raw_len), b))
            chans = [int(c) for c in rng.permutation(3)[: int(rng.integers(1, 4))]]
            got = q.raw_stretch(chans, a, b)
            assert got is not None and got.dtype == np.float64
            assert got.tobytes() == x[chans, a:b].astype(np.float64).tobytes()
    assert q.raw_stretch([0], s0 - q.raw_len - 1, s0) is None  # older than the ring


def test_trend_fit_is_numpys_lstsq_bit_for_bit() -> None:
    """``electrode_spectrum``'s trend fit calls numpy's LAPACK gufunc directly (``_lstsq``): the
    public ``np.linalg.lstsq``'s coefficients, bit for bit, on burst-length stretches of raw
    EMG; a non-finite stretch gets the public function's answer (redone by it), without a warning."""
    from detectors import emg_quality

    rng = np.random.default_rng(2)
    assert emg_quality._lstsq is not emg_quality._public_lstsq  # the direct path is in use here
    for n in (16, 300, 541, 1000, 4000):
        t = np.arange(n, dtype=np.float64)
        a = np.vander(t, 2)
        a /= np.sqrt((a * a).sum(axis=0))
        for _ in range(5):
            x = rng.standard_normal(n) * 10.0 ** rng.uniform(-1, 4) + rng.uniform(-1e4, 1e4)
            want = np.linalg.lstsq(a, x, n * np.finfo(np.float64).eps)[0]
            assert emg_quality._lstsq(a, x, n * np.finfo(np.float64).eps).tobytes() == want.tobytes()
    bad = np.ones(16)
    bad[3] = np.nan
    a = np.vander(np.arange(16, dtype=np.float64), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = emg_quality._lstsq(a, bad, 1e-14)
    np.testing.assert_array_equal(got, np.linalg.lstsq(a, bad, 1e-14)[0])


def test_spectrum_bins_read_the_masks_values() -> None:
    """``_bins``: one run of bins as a slice, scattered ones as indices, none as an empty slice;
    either way the masked values in order (the same sums)."""
    from detectors.emg_quality import _bins

    p = np.random.default_rng(4).standard_normal(50)
    for mask in (np.zeros(50, bool), np.arange(50) % 7 == 0, (np.arange(50) > 9) & (np.arange(50) < 31)):
        got = p[_bins(mask)]
        assert got.tobytes() == p[mask].tobytes()
        assert float(np.add.reduce(got)) == float(p[mask].sum())
    assert _bins((np.arange(50) > 9) & (np.arange(50) < 31)) == slice(10, 31)
