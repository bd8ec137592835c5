"""Streaming spasm detector: event types, confounders, signal quality, rates, chunk invariance.

Signals are generated here with numpy (not with firmware_sim), so these tests pin the detector's
behaviour to physiology-shaped inputs rather than to one simulator: surface EMG is Gaussian noise
band-limited to 30-200 Hz whose RMS follows an envelope (a few uV at rest, tens to hundreds of uV
in a spasm).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal
from support.harness import shared_data

from detectors import (
    ConfigError,
    DetectorConfig,
    DetectorOutput,
    Onset,
    QualityChange,
    SpasmDetector,
    SpasmEvent,
)

BIOSPPY = shared_data("biosppy", "emg_1.txt")


# ----------------------------------------------------------------------------- signal helpers
def carrier(rate: float, n: int, n_ch: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sos = signal.butter(2, [30.0, min(200.0, 0.4 * rate)], btype="bandpass", fs=rate, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n + 2000, n_ch)), axis=0)[2000:]
    return x / x.std(axis=0)


def ramp_env(n: int, rise: int) -> np.ndarray:
    rise = max(2, min(rise, n // 2))
    e = np.ones(n)
    r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(rise) + 0.5) / rise)
    e[:rise] = r
    e[n - rise :] = r[::-1]
    return e


class Sig:
    """EMG under construction: envelope per channel (uV RMS) times a carrier, plus additive parts."""

    def __init__(self, rate: float, dur: float, n_ch: int = 1, rest: float = 3.0, seed: int = 0) -> None:
        self.rate = rate
        self.n = int(dur * rate)
        self.env = np.full((self.n, n_ch), rest)
        self.add = np.zeros((self.n, n_ch))
        self.seed = seed

    def i(self, t: float) -> int:
        return round(t * self.rate)

    def burst(self, t0: float, dur: float, amp: float, ch: int = 0, rise_s: float = 0.02) -> None:
        a, b = self.i(t0), self.i(t0 + dur)
        self.env[a:b, ch] += amp * ramp_env(b - a, self.i(rise_s))

    def clonus(self, t0: float, freq: float, cycles: int, amp: float, ch: int = 0) -> None:
        width = 0.45 / freq
        for k in range(cycles):
            self.burst(t0 + k / freq, width, amp, ch, rise_s=width / 3)

    def emg(self) -> np.ndarray:
        return carrier(self.rate, self.n, self.env.shape[1], self.seed) * self.env + self.add


def run(
    det: SpasmDetector, emg: np.ndarray, acc: np.ndarray | None = None, chunk_s: float = 0.05
) -> list[DetectorOutput]:
    out: list[DetectorOutput] = []
    es = max(1, int(chunk_s * det.emg_rate_hz))
    i = j = 0
    as_ = 1 if det.acc_rate_hz is None else max(1, int(chunk_s * det.acc_rate_hz))
    while i < emg.shape[0] or (acc is not None and j < acc.shape[0]):
        if i < emg.shape[0]:
            out += det.feed_emg(i, emg[i : i + es])
            i += es
        if acc is not None and j < acc.shape[0]:
            out += det.feed_acc(j, acc[j : j + as_])
            j += as_
    return out + det.finish()


def events(out: list[DetectorOutput]) -> list[SpasmEvent]:
    return [o for o in out if isinstance(o, SpasmEvent)]


def make(rate: float, n_ch: int = 1, acc_rate: float | None = None, **cfg: object) -> SpasmDetector:
    return SpasmDetector(
        DetectorConfig.from_dict(cfg),
        emg_rate_hz=rate,
        channel_labels=[f"EMG {i}" for i in range(n_ch)],
        acc_rate_hz=acc_rate,
    )


# ------------------------------------------------------------------------------ event types
@pytest.mark.parametrize("rate", [500.0, 1024.0, 2000.0, 4000.0])
def test_each_emg_type_found_and_typed_at_every_rate(rate: float) -> None:
    s = Sig(rate, 58.0, seed=int(rate))
    s.burst(3.0, 0.2, 150.0)  # twitch
    s.burst(7.0, 2.5, 100.0, rise_s=0.1)  # phasic
    s.burst(13.0, 14.0, 80.0, rise_s=0.5)  # tonic
    s.clonus(32.0, 6.0, 10, 120.0)  # clonus, 1.6 s
    s.burst(40.0, 0.08, 200.0, rise_s=0.015)  # a short twitch
    s.burst(45.0, 9.0, 60.0, rise_s=0.2)  # long phasic
    out = run(make(rate), s.emg())
    evs = events(out)
    got = [(e.type, round(e.onset_sample / rate, 2), round(e.duration_s, 2)) for e in evs]
    assert [e.type for e in evs] == ["twitch", "phasic", "tonic", "clonus", "twitch", "phasic"], got
    for e, t0, dur in zip(
        evs, [3.0, 7.0, 13.0, 32.0, 40.0, 45.0], [0.2, 2.5, 14.0, 1.6, 0.08, 9.0], strict=True
    ):
        slow = e.type == "tonic"  # a 0.5 s ramp: the first tens of ms are still "rest"
        assert abs(e.onset_sample / rate - t0) < (0.1 if slow else 0.05), got
        assert abs(e.duration_s - dur) < 0.1 + 0.05 * dur, got
    clonus = evs[3]
    assert clonus.frequency_hz is not None and abs(clonus.frequency_hz - 6.0) < 0.3
    # every event was announced by an Onset with the same key, before it
    keys = [o.key for o in out if isinstance(o, Onset)]
    assert keys == [e.key for e in evs]
    for e in evs:
        assert e.key == f"EMG 0:emg:{e.onset_sample}"
        assert 0.0 < e.confidence <= 1.0
        assert e.relative_amplitude > 8.0 and 2.0 < e.baseline_uv < 4.0
        assert e.detector_version == SpasmDetector.version


def test_clonus_needs_four_regular_cycles() -> None:
    s = Sig(2000.0, 20.0)
    s.clonus(3.0, 4.0, 3, 150.0)  # three bursts: not clonus (one 0.6 s phasic episode)
    s.clonus(10.0, 4.0, 4, 150.0)  # four: clonus
    evs = events(run(make(2000.0), s.emg()))
    assert [e.type for e in evs] == ["phasic", "clonus"]
    assert evs[1].frequency_hz == pytest.approx(4.0, abs=0.3)


def test_tremor_from_accelerometer_with_weak_emg() -> None:
    rate, acc_rate = 1000.0, 100.0
    s = Sig(rate, 40.0)
    m = int(40 * acc_rate)
    t = np.arange(m) / acc_rate
    acc = np.tile([0.0, 0.0, 1.0], (m, 1)) + np.random.default_rng(1).normal(0, 0.004, (m, 3))
    on = (t >= 10.0) & (t < 18.0)
    acc[on] += 0.08 * np.outer(np.sin(2 * np.pi * 5.5 * t[on]), [0.6, 0.8, 0.0])
    # posture change at 25 s: supine -> sitting over 1.5 s (not a tremor)
    k0, k1 = int(25 * acc_rate), int(26.5 * acc_rate)
    blend = np.clip((t - 25.0) / 1.5, 0, 1)[:, None]
    acc = acc * (1 - blend) + (np.array([-0.15, 0.0, 0.99]) + (acc - [0, 0, 1.0])) * blend
    assert k1 > k0
    out = run(make(rate, acc_rate=acc_rate), s.emg(), acc)
    evs = events(out)
    assert [e.type for e in evs] == ["tremor"]
    tr = evs[0]
    assert tr.domain == "acc" and tr.channel == "ACC" and tr.rate_hz == acc_rate
    assert tr.frequency_hz == pytest.approx(5.5, abs=0.3)
    assert abs(tr.onset_sample / acc_rate - 10.0) < 0.5 and abs(tr.offset_sample / acc_rate - 18.0) < 0.6
    assert [o.key for o in out if isinstance(o, Onset)] == [tr.key]


def test_tremor_not_reported_when_emg_is_a_clonus() -> None:
    rate, acc_rate = 1000.0, 50.0
    s = Sig(rate, 20.0)
    s.clonus(5.0, 6.0, 30, 150.0)  # 5 s of clonus shaking the limb
    m = int(20 * acc_rate)
    t = np.arange(m) / acc_rate
    acc = np.tile([0.0, 0.0, 1.0], (m, 1))
    on = (t >= 5.0) & (t < 10.0)
    acc[on, 0] += 0.2 * np.sin(2 * np.pi * 6.0 * t[on])
    evs = events(run(make(rate, acc_rate=acc_rate), s.emg(), acc))
    assert [e.type for e in evs] == ["clonus"]


# ------------------------------------------------------------------------------ confounders
def ecg_train(rate: float, n: int, hr: float = 1.2, r_uv: float = 300.0) -> np.ndarray:
    t = np.arange(int(0.7 * rate)) / rate - 0.25
    beat = np.zeros_like(t)
    for mu, sd, h in (
        (-0.2, 0.025, 0.12),
        (-0.03, 0.008, -0.15),
        (0.0, 0.009, 1.0),
        (0.03, 0.01, -0.3),
        (0.25, 0.045, 0.3),
    ):
        beat += h * np.exp(-0.5 * ((t - mu) / sd) ** 2)
    x = np.zeros(n + beat.size)
    for k in range(0, n, int(rate / hr)):
        x[k : k + beat.size] += beat
    return r_uv * x[:n]


@pytest.mark.parametrize("rate", [500.0, 2000.0])
def test_confounders_are_not_spasms(rate: float) -> None:
    dur = 60.0
    s = Sig(rate, dur, n_ch=3, seed=3)
    n = s.n
    rng = np.random.default_rng(5)
    t = np.arange(n) / rate
    s.add[:, 0] += ecg_train(rate, n)  # ECG pickup on a trunk channel
    for t0 in (10.0, 20.0, 30.0, 40.0):  # cable motion: large and mostly below 20 Hz
        a, b = s.i(t0), s.i(t0 + 0.8)
        sos = signal.butter(2, 12.0, fs=rate, output="sos")
        wob = signal.sosfilt(sos, rng.standard_normal(b - a + 500))[500:]
        s.add[a:b, 1] += 400.0 * wob / np.abs(wob).max() * np.hanning(b - a)
    for t0 in (12.0, 24.0, 36.0, 48.0):  # electrode pops: step then exponential recovery
        a = s.i(t0)
        k = s.i(0.6)
        s.add[a : a + k, 2] += 800.0 * np.exp(-np.arange(k) / (0.12 * rate))
    for h, amp in ((1, 30.0), (3, 9.0), (5, 4.0)):  # mains hum with odd harmonics
        if h * 50 < 0.45 * rate:
            s.add += amp * np.sin(2 * np.pi * h * 50.0 * t + h)[:, None]
    s.add += 150.0 * np.sin(2 * np.pi * 0.25 * t)[:, None]  # respiration-like wander
    det = make(rate, n_ch=3)
    out = run(det, s.emg())
    assert det.mains_hz == 50
    assert [o for o in out if isinstance(o, Onset | SpasmEvent)] == []


def test_spasm_on_an_ecg_channel_is_still_found() -> None:
    rate = 1000.0
    s = Sig(rate, 30.0)
    s.add[:, 0] += ecg_train(rate, s.n, r_uv=200.0)
    s.burst(10.3, 1.5, 120.0, rise_s=0.1)
    s.burst(20.55, 0.25, 200.0)
    evs = events(run(make(rate), s.emg()))
    # (a QRS within 0.5 s after the twitch's end can stretch it: it is typed by its duration)
    assert len(evs) == 2 and evs[0].type == "phasic" and evs[1].duration_s < 0.7
    assert abs(evs[0].onset_sample / rate - 10.3) < 0.06 and abs(evs[1].onset_sample / rate - 20.55) < 0.06
    assert abs(evs[0].offset_sample / rate - 11.8) < 0.25


def test_crosstalk_from_a_strong_neighbour_is_not_an_event() -> None:
    s = Sig(2000.0, 15.0, n_ch=2)
    s.burst(5.0, 1.0, 400.0, ch=0, rise_s=0.1)
    x = s.emg()
    x[:, 1] += 0.05 * x[:, 0]  # 5 % leak: 20 uV on a 3 uV channel
    evs = events(run(make(2000.0, n_ch=2), x))
    assert [(e.channel, e.type) for e in evs] == [("EMG 0", "phasic")]


# --------------------------------------------------------------------------- signal quality
def test_lead_off_and_saturation_are_quality_not_events() -> None:
    rate = 1000.0
    s = Sig(rate, 40.0, n_ch=2)
    s.burst(30.0, 1.0, 150.0, ch=1, rise_s=0.1)
    x = s.emg()
    a, b = s.i(10.0), s.i(15.0)
    x[a:b, 0] = 0.0  # flat: electrode off, front-end holds zero
    a2, b2 = s.i(20.0), s.i(22.0)
    x[a2:b2, 1] += 20000.0 * np.sin(2 * np.pi * 9.0 * np.arange(b2 - a2) / rate)
    np.clip(x, -6000.0, 6000.0, out=x)  # the ADC rails
    out = run(make(rate, n_ch=2), x)
    q = [(o.channel, o.state, round(o.sample / rate, 1)) for o in out if isinstance(o, QualityChange)]
    assert q[0] == ("EMG 0", "lead_off", 10.0)
    assert ("EMG 0", "ok", 15.0) in q
    assert any(c == "EMG 1" and st_ == "saturated" and 20.0 <= t0 <= 20.3 for c, st_, t0 in q)
    assert q[-1][:2] == ("EMG 1", "ok")
    evs = events(out)
    assert [(e.channel, e.type) for e in evs] == [("EMG 1", "phasic")]
    assert abs(evs[0].onset_sample / rate - 30.0) < 0.05


def test_amplifier_stuck_at_the_rail_it_was_clipping_at_is_saturated() -> None:
    rate = 1000.0
    s = Sig(rate, 20.0)
    x = s.emg()
    a, b = s.i(5.0), s.i(9.0)
    x[a:b, 0] += 20000.0 * np.sin(2 * np.pi * 0.5 * np.arange(b - a) / rate)  # slow overload: long plateaus
    np.clip(x, -6000.0, 6000.0, out=x)
    out = run(make(rate), x)
    q = [(o.state, round(o.sample / rate, 1)) for o in out if isinstance(o, QualityChange)]
    assert [st_ for st_, _ in q] == ["saturated", "ok"], q
    assert 5.0 <= q[0][1] <= 5.3 and 8.8 <= q[1][1] <= 9.6
    assert events(out) == []


def test_floating_input_mains_pickup_is_lead_off() -> None:
    rate = 2000.0
    s = Sig(rate, 20.0)
    x = s.emg()
    a, b = s.i(5.0), s.i(12.0)
    tt = np.arange(b - a) / rate
    x[a:b, 0] = 2400.0 * np.sin(2 * np.pi * 50.0 * tt) + 300.0 * np.sin(2 * np.pi * 0.3 * tt)
    out = run(make(rate, mains_hz=60), x)
    q = [(o.state, round(o.sample / rate, 1)) for o in out if isinstance(o, QualityChange)]
    assert q[0] == ("lead_off", 5.0) and q[-1][0] == "ok"
    assert events(out) == []


# ------------------------------------------------------------------------ gaps and streaming
def test_gap_closes_an_open_episode_and_restarts_cleanly() -> None:
    rate = 1000.0
    s = Sig(rate, 20.0)
    s.burst(5.0, 3.0, 150.0, rise_s=0.1)
    x = s.emg()
    x[9000:] += 3000.0  # the stream resumes at another DC level: must not look like a spasm
    det = make(rate)
    out = det.feed_emg(0, x[:6000])
    assert [type(o) for o in out] == [Onset]
    out += det.gap("emg", 6000, 3000)
    closed = events(out)
    assert len(closed) == 1 and closed[0].offset_sample == 6000 - det._bank.lag  # type: ignore[union-attr]
    assert closed[0].confidence <= 0.5  # truncated by the gap
    out2 = det.feed_emg(9000, x[9000:]) + det.finish()
    assert [o for o in out2 if not isinstance(o, QualityChange)] == []


def test_nan_and_inf_samples_do_not_poison_the_stream() -> None:
    s = Sig(1000.0, 12.0)
    s.burst(8.0, 1.0, 150.0, rise_s=0.1)
    x = s.emg()
    x[3000:3005, 0] = np.nan
    x[4000, 0] = np.inf
    evs = events(run(make(1000.0), x))
    assert [e.type for e in evs] == ["phasic"] and abs(evs[0].onset_sample - 8000) < 50


def test_implicit_gap_and_backwards_start() -> None:
    det = make(1000.0)
    x = Sig(1000.0, 3.0).emg()
    det.feed_emg(0, x[:1000])
    det.feed_emg(1500, x[1500:2000])  # 500 samples missing: treated as a gap
    with pytest.raises(ValueError, match="goes back before"):
        det.feed_emg(1800, x[:10])
    with pytest.raises(ValueError, match=r"shape \(n, 1\)"):
        det.feed_emg(2000, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="without an accelerometer"):
        det.feed_acc(0, np.zeros((5, 3)))
    det.finish()
    with pytest.raises(RuntimeError, match="finish"):
        det.feed_emg(2000, x[:5])


def _scenario(rate: float, acc_rate: float) -> tuple[np.ndarray, np.ndarray]:
    s = Sig(rate, 14.0, n_ch=2, seed=9)
    s.burst(2.0, 0.3, 150.0)
    s.clonus(4.0, 6.0, 8, 120.0, ch=1)
    s.burst(6.0, 2.0, 90.0, rise_s=0.1)
    x = s.emg()
    x += 20.0 * np.sin(2 * np.pi * 60.0 * np.arange(s.n) / rate)[:, None]
    x[s.i(9.0) : s.i(10.0), 0] = 0.0  # lead-off
    m = int(14.0 * acc_rate)
    t = np.arange(m) / acc_rate
    acc = np.tile([0.0, 0.0, 1.0], (m, 1))
    on = t >= 9.5
    acc[on, 1] += 0.1 * np.sin(2 * np.pi * 4.5 * t[on])
    return x, acc


def _feed_chunked(
    det: SpasmDetector, x: np.ndarray, acc: np.ndarray, sizes: list[int]
) -> list[DetectorOutput]:
    out: list[DetectorOutput] = []
    i = j = k = 0
    ratio = acc.shape[0] / x.shape[0]
    while i < x.shape[0] or j < acc.shape[0]:
        step = sizes[k % len(sizes)]
        k += 1
        if i < x.shape[0]:
            out += det.feed_emg(i, x[i : i + step])
            i += step
        target = min(acc.shape[0], int(i * ratio) if i < x.shape[0] else acc.shape[0])
        if target > j:
            out += det.feed_acc(j, acc[j:target])
            j = target
    return out + det.finish()


def _canon(out: list[DetectorOutput]) -> list[DetectorOutput]:
    return sorted(out, key=repr)


_RATE, _ACC = 500.0, 25.0
_X, _A = _scenario(_RATE, _ACC)
_ONE_SHOT = _feed_chunked(make(_RATE, n_ch=2, acc_rate=_ACC), _X, _A, [_X.shape[0]])


def test_reference_run_has_every_kind_of_output() -> None:
    kinds = {e.type for e in events(_ONE_SHOT)}
    assert kinds == {"twitch", "clonus", "phasic", "tremor"}
    assert any(isinstance(o, QualityChange) and o.state == "lead_off" for o in _ONE_SHOT)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=12))
def test_chunk_invariance(sizes: list[int]) -> None:
    out = _feed_chunked(make(_RATE, n_ch=2, acc_rate=_ACC), _X, _A, sizes)
    assert _canon(out) == _canon(_ONE_SHOT)


def test_chunk_invariance_one_sample_at_a_time() -> None:
    out = _feed_chunked(make(_RATE, n_ch=2, acc_rate=_ACC), _X, _A, [1])
    assert _canon(out) == _canon(_ONE_SHOT)


@pytest.mark.parametrize("sizes", [[1], [37, 1, 512], [1024]])
def test_chunk_invariance_at_1024_hz(sizes: list[int]) -> None:
    x, acc = _scenario(1024.0, 100.0)
    ref = _feed_chunked(make(1024.0, n_ch=2, acc_rate=100.0), x, acc, [x.shape[0]])
    assert {e.type for e in events(ref)} == {"twitch", "clonus", "phasic", "tremor"}
    assert _canon(_feed_chunked(make(1024.0, n_ch=2, acc_rate=100.0), x, acc, sizes)) == _canon(ref)


def test_gap_is_deterministic_across_chunkings() -> None:
    def go(sizes: list[int]) -> list[DetectorOutput]:
        det = make(_RATE, n_ch=2)
        out: list[DetectorOutput] = []
        i = 0
        k = 0
        while i < _X.shape[0]:
            if i <= 2200 < i + sizes[k % len(sizes)]:
                out += det.feed_emg(i, _X[i:2200]) + det.gap("emg", 2200, 300)
                i = 2500
                continue
            step = sizes[k % len(sizes)]
            out += det.feed_emg(i, _X[i : i + step])
            i += step
            k += 1
        return _canon(out + det.finish())

    ref = go([_X.shape[0]])
    assert any(isinstance(o, SpasmEvent) for o in ref)
    for sizes in ([7], [1, 50, 333], [128]):
        assert go(sizes) == ref


# ----------------------------------------------------------------------------------- config
def test_config_from_dict_and_errors_name_the_key() -> None:
    cfg = DetectorConfig.from_dict({"mains_hz": 60, "on_ratio": 6, "full_scale_uv": 5000})
    assert cfg.mains_hz == 60 and cfg.on_ratio == 6.0 and isinstance(cfg.on_ratio, float)
    with pytest.raises(ConfigError, match=r"^gateway.toml: detector\.on_ration: unknown key"):
        DetectorConfig.from_dict({"on_ration": 4.0}, source="gateway.toml", prefix="detector.")
    with pytest.raises(ConfigError, match=r"^gateway.toml: detector\.quiet_s: must be a number"):
        DetectorConfig.from_dict({"quiet_s": "half a second"}, source="gateway.toml", prefix="detector.")
    with pytest.raises(ConfigError, match="mains_hz"):
        DetectorConfig.from_dict({"mains_hz": 55})
    with pytest.raises(ConfigError, match="off_ratio"):
        DetectorConfig.from_dict({"off_ratio": 9.0})
    with pytest.raises(ConfigError, match=r"^detector config: confirm_s: must be > 0"):
        DetectorConfig.from_dict({"confirm_s": 0})
    with pytest.raises(ConfigError, match="boolean"):
        DetectorConfig.from_dict({"quiet_s": True})


def test_config_hash_is_stable_and_sensitive() -> None:
    a = make(1000.0).config_hash
    assert a == make(1000.0).config_hash == DetectorConfig().hash
    assert len(a) == 12 and a != DetectorConfig(on_ratio=7.0).hash


def test_band_is_capped_below_nyquist_at_500_hz() -> None:
    from detectors.emg import design_emg_filter

    sos = design_emg_filter(DetectorConfig(), 500.0, 50)
    w, h = signal.sosfreqz(sos, worN=2048, fs=500.0)
    assert abs(h[np.argmin(np.abs(w - 100.0))]) > 0.8  # EMG band passes
    assert abs(h[np.argmin(np.abs(w - 50.0))]) < 0.1  # mains notched, with odd harmonics
    assert abs(h[np.argmin(np.abs(w - 150.0))]) < 0.1
    assert abs(h[np.argmin(np.abs(w - 5.0))]) < 0.01  # motion removed


# -------------------------------------------------------------------------------- real data
def test_biosppy_emg_1_visible_bursts_and_nothing_else() -> None:
    adc = np.loadtxt(BIOSPPY)
    uv = ((adc / 4096.0 - 0.5) * 3.3 / 1009.0 * 1e6)[:, None]  # BITalino EMG transfer function
    evs = events(run(make(1000.0), uv))
    spans = [(round(e.onset_sample / 1000, 2), round(e.offset_sample / 1000, 2)) for e in evs]
    assert len(evs) == 4, spans
    for (on, off), want_on in zip(spans, [1.5, 15.5, 25.6, 26.4], strict=True):
        assert abs(on - want_on) < 0.15, spans
        assert off > on
    assert 1.2 < evs[1].duration_s < 2.0  # the 16 s burst lasts about 1.5 s
    assert all(math.isfinite(e.peak_uv) and e.peak_uv > 80 for e in evs)


def test_a_burst_under_way_when_a_gap_ends_starts_with_the_first_sample_received() -> None:
    """An onset is put back by the filters' lag (and the backtrack to the rise's start); for a
    burst already on when the stream resumes after a gap, that placed it inside the gap (12
    samples before the first one received, at 1 kHz), where the gap record says nothing is."""
    rate = 1000
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 3.0, (60 * rate, 1))
    for t0 in (20.0, 30.0, 45.0):
        k = int(t0 * rate)
        x[k : k + 300, 0] += rng.normal(0.0, 200.0, 300)
    det = SpasmDetector(emg_rate_hz=rate, channel_labels=["EMG 1"])
    out = []
    for i in range(0, len(x), 50):
        if not 29 * rate <= i < 30 * rate:  # samples 29000-29999 never arrive
            out += det.feed_emg(i, x[i : i + 50])
    out += det.finish()
    onsets = [o.onset_sample for o in out if isinstance(o, SpasmEvent)]
    assert len(onsets) == 3
    assert onsets[1] == 30 * rate  # not inside the gap
    assert 19 * rate < onsets[0] < 20 * rate + 20 and 45 * rate - 50 < onsets[2] < 45 * rate + 20
