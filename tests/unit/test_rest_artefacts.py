"""Electrode artefacts at rest (issue 9): bursts around a lead-off are not dropped blind (only
those the lead-off closed, or never seen rising from rest after it, are); a contraction clipped
by a 12-bit amplifier is one event, never a gap.

The bench (``bench/bench_unseen_rest.py``) scores the same on a whole independent generator.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from detectors import DetectorConfig, Onset, QualityChange, SpasmDetector, SpasmEvent
from detectors.detector import feed_interleaved
from detectors.emg_quality import crackle_kurtosis, electrode_spectrum
from tests.support.shapes import contraction


def _emg(rate: float, seconds: float, seed: int = 3) -> np.ndarray:
    """Unit-RMS surface-EMG-like noise (40-150 Hz), one channel."""
    rng = np.random.default_rng(seed)
    sos = signal.butter(2, [40, 150], btype="bandpass", fs=rate, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(int(seconds * rate)))
    return np.asarray(x / x.std())


def _events(out: list[object]) -> list[SpasmEvent]:
    return [o for o in out if isinstance(o, SpasmEvent)]


def _reattached(spasm_after_s: float | None, hum_surge: bool) -> np.ndarray:
    """60 s at 2 kHz, rest 3 uV: a lead-off 20-25 s (floating: 2 mV of hum), an electrode coming
    back with a 5 mV step settling (tau 0.3 s); optionally a spasm ``spasm_after_s`` after it,
    and a half-contact hum surge (rising, distorted mains) ending 2 s before the lead-off."""
    rate = 2000.0
    n = int(60 * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(4)
    x = 3.0 * _emg(rate, 60.0, seed=1) + rng.normal(0.0, 1.0, n)
    x += 200.0 * _emg(rate, 60.0, seed=9) * contraction(rate, n, 10.0, 1.0)  # a spasm well clear of it
    i, j = int(20 * rate), int(25 * rate)
    if hum_surge:  # contact failing for 1.2 s, back for 2 s, then lost for good
        k, e = int(1.2 * rate), i - int(2.0 * rate)
        grow = 10.0 ** (2.0 * np.linspace(0, 1, k))  # x100 as the impedance rises
        ph = 2 * np.pi * 50 * t[e - k : e]
        x[e - k : e] += 3.0 * grow * (np.sin(ph) + 0.3 * np.sin(2 * ph) + 0.2 * np.sin(3 * ph))
    x[i:j] = 2000.0 * np.sin(2 * np.pi * 50 * t[i:j]) + rng.normal(0.0, 5.0, j - i)
    x[j:] += 5000.0 * np.exp(-(t[j:] - 25.0) / 0.3)
    if spasm_after_s is not None:
        x += 200.0 * _emg(rate, 60.0, seed=11) * contraction(rate, n, 25.0 + spasm_after_s, 0.8)
    return x


def _run(x: np.ndarray, **cfg: float) -> list[object]:
    det = SpasmDetector(DetectorConfig(mains_hz=50, **cfg), emg_rate_hz=2000.0, channel_labels=["A"])
    return feed_interleaved(det, x[:, None], None, 2000.0, None)


def test_a_spasm_just_after_reattachment_is_published_flagged_not_dropped() -> None:
    # 2.5 s after: the resting level of the new electrode-skin contact has been learnt by then
    out = _run(_reattached(2.5, hum_surge=False))
    q = [(o.state, o.sample / 2000.0) for o in out if isinstance(o, QualityChange)]
    # (a floating input is recognised when two blocks' hum lines agree: 50 ms late)
    assert [s for s, _ in q] == ["lead_off", "ok"]
    assert abs(q[0][1] - 20.0) <= 0.1 and abs(q[1][1] - 25.0) <= 0.1
    evs = _events(out)
    assert [round(e.onset_sample / 2000.0, 1) for e in evs] == [10.0, 27.5]
    clear, settling = evs
    assert not clear.artifact_suspect
    # in the settling window, muscle-like: kept, flagged, its confidence halved
    assert settling.artifact_suspect and settling.confidence <= 0.5 * clear.confidence + 1e-9
    # the same recording without a spasm after reattachment gives no event there
    assert [round(e.onset_sample / 2000.0, 1) for e in _events(_run(_reattached(None, False)))] == [10.0]


def test_a_half_contact_hum_surge_before_a_lead_off_is_dropped_by_its_spectrum() -> None:
    x = _reattached(None, hum_surge=True)
    off = 1e12  # electrode_hum_change that no hum can reach: the hum-change test off
    # without the guard and the hum-change test, the surge's unnotched 2nd harmonic is a burst
    unguarded = _events(
        _run(x, lead_off_guard_before_s=1e-3, lead_off_guard_after_s=1e-3, electrode_hum_change=off)
    )
    assert any(16.5 < e.onset_sample / 2000.0 < 18.0 for e in unguarded)
    # the hum rising x100 in amplitude is the contact's impedance rising: dropped wherever it is,
    # without waiting for the lead-off that follows (no guard)
    no_guard = _run(x, lead_off_guard_before_s=1e-3, lead_off_guard_after_s=1e-3)
    assert [round(e.onset_sample / 2000.0, 1) for e in _events(no_guard)] == [10.0]
    # with a guard reaching 3 s before the lead-off, the burst's raw power is on the mains
    # lines: the electrode, dropped (with the hum-change test off too)
    evs = _events(_run(x, lead_off_guard_before_s=3.0, electrode_hum_change=off))
    assert [round(e.onset_sample / 2000.0, 1) for e in evs] == [10.0]
    # the same surge with both line tests off (share 1.0 can never be reached) is published flagged
    kept = _events(_run(x, lead_off_guard_before_s=3.0, electrode_line_share=0.999999))
    assert [e.artifact_suspect for e in kept if 16.5 < e.onset_sample / 2000.0 < 18.0] == [True]


def test_electrode_spectrum_tells_hum_and_drift_from_muscle() -> None:
    rate, cfg = 2000.0, DetectorConfig()
    t = np.arange(int(0.5 * rate)) / rate
    rng = np.random.default_rng(0)
    ph = 2 * np.pi * 60 * t
    hum = 800 * np.sin(ph) + 60 * np.sin(2 * ph + 1) + 90 * np.sin(3 * ph)
    line, _ = electrode_spectrum(hum + rng.normal(0, 5, t.size), rate, cfg)
    assert line > 0.9
    step = np.where(t > 0.2, 3000.0, 0.0) * np.exp(-np.maximum(t - 0.2, 0) / 0.1)  # a DC step settling
    assert electrode_spectrum(step + rng.normal(0, 5, t.size), rate, cfg)[1] > 0.5
    line, low = electrode_spectrum(200 * _emg(rate, 0.5), rate, cfg)  # muscle-like
    assert line < 0.3 and low < 0.2


def test_a_contraction_clipped_by_a_12_bit_amplifier_is_one_clipped_event() -> None:
    # A 12-bit ADC over +-5 mV (LSB 2.44 uV) with a 400 uV electrode offset; 8 sustained 3 s
    # contractions, the later ones touching the rails in well under 1 % of the recording's samples.
    rate, fs_uv = 2000.0, 5000.0
    n = int(100 * rate)
    x = 4.0 * _emg(rate, 100.0, seed=2)
    starts = [8.0 + 11.0 * k for k in range(8)]
    for k, at in enumerate(starts):
        x += (400.0 + 300.0 * k) * _emg(rate, 100.0, seed=20 + k) * contraction(rate, n, at, 3.0, 0.1)
    lsb = 2 * fs_uv / 4096
    codes = np.clip(np.round((x + 400.0) / lsb), -2048, 2047)
    adc = codes * lsb
    rails = (codes == -2048) | (codes == 2047)
    assert 0.0005 < rails.mean() < 0.01  # < 1 % of all samples clip
    last = slice(int(starts[-1] * rate), int((starts[-1] + 3) * rate))
    assert rails[last].mean() > 0.01  # the strongest one does
    for cfg in (DetectorConfig(), DetectorConfig(full_scale_uv=fs_uv)):
        det = SpasmDetector(cfg, emg_rate_hz=rate, channel_labels=["A"])
        out = feed_interleaved(det, adc[:, None], None, rate, None)
        evs = _events(out)
        assert len(evs) == len(starts), [(e.onset_sample / rate, e.offset_sample / rate) for e in evs]
        assert all(abs(e.onset_sample / rate - at) < 0.15 for e, at in zip(evs, starts, strict=True))
        for e, at in zip(evs, starts, strict=True):
            n_rail = int(rails[int(at * rate) : int((at + 3) * rate)].sum())
            # without a known full scale, a block's extremes are rails when >= 3 samples sit there
            assert e.clipped == (n_rail > 0) or (not e.clipped and n_rail < 6)
            assert abs(e.offset_sample / rate - (at + 3.0)) < 0.15 and not e.artifact_suspect
        assert any(e.clipped for e in evs)
        assert not [o for o in out if isinstance(o, QualityChange)]  # never a quality gap


def _rest_1k(seconds: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """(time, 1 kHz resting EMG ~3 uV with a 150 uV twitch at 5 s), for the short tests below."""
    rate = 1000.0
    n = int(seconds * rate)
    rng = np.random.default_rng(5)
    x = 3.0 * _emg(rate, seconds, seed=1) + rng.normal(0.0, 1.0, n)
    x += 150.0 * _emg(rate, seconds, seed=9) * contraction(rate, n, 5.0, 0.3)
    return np.arange(n) / rate, x


def _run_1k(x: np.ndarray, **cfg: float) -> tuple[list[float], list[float]]:
    """(event onsets, Onset-notice onsets) in seconds."""
    det = SpasmDetector(DetectorConfig(mains_hz=50, **cfg), emg_rate_hz=1000.0, channel_labels=["A"])
    out = feed_interleaved(det, x[:, None], None, 1000.0, None)
    return (
        [round(o.onset_sample / 1000.0, 1) for o in _events(out)],
        [round(o.onset_sample / 1000.0, 1) for o in out if isinstance(o, Onset)],
    )


def test_a_contact_coming_loose_is_not_a_spasm_without_waiting_for_the_lead_off() -> None:
    # Half contact at 12 s for 0.6 s: the impedance rises x1000, the amplifier's bias current
    # drifts the input by 1.5 mV (V = I_b Z), the half-cell potential jumps twice (DC steps) and
    # the electrode's thermal noise grows. The input never reads bad in this recording, so no
    # lead-off guard can see it: the burst itself must say it is no muscle (its raw power over
    # the burst is mostly below 45 Hz; muscle's peaks at 50-150 Hz).
    _, x = _rest_1k()
    rate = 1000.0
    rng = np.random.default_rng(6)
    i, k = int(12 * rate), int(0.6 * rate)
    z = 10.0 ** (3.0 * np.linspace(0.0, 1.0, k))
    x[i : i + k] += 1500.0 * (z - 1.0) / (z[-1] - 1.0) + 3.0 * (z**0.25 - 1.0) * rng.standard_normal(k)
    x[i + 150 : i + k] += 2000.0
    x[i + 400 : i + k] -= 3000.0
    events, onsets = _run_1k(x)
    assert 12.2 in onsets  # it is a burst on the envelope (its Onset notice went out)...
    assert events == [5.0]  # ...but not a spasm event; the twitch is
    # a twitch during a cable tug (a 2 mV excursion under it) is muscle over the burst itself: kept
    _, y = _rest_1k()
    j, kt = int(8.0 * rate), int(0.8 * rate)
    y[j : j + kt] += 2000.0 * np.hanning(kt)
    y += 150.0 * _emg(rate, 20.0, seed=13) * contraction(rate, y.size, 8.3, 0.25)
    assert _run_1k(y)[0] == [5.0, 8.3]


def test_a_changing_mains_hum_is_the_contact_a_steady_one_is_not() -> None:
    t, x = _rest_1k()
    rate, cfg = 1000.0, DetectorConfig()
    hum = np.sin(2 * np.pi * 50.0 * t)
    # a weak spasm (40 uV) on a channel with 100 uV of steady hum: most of its raw power is on
    # the mains line, yet the line keeps its level (the contact did not change): a spasm
    weak = 40.0 * _emg(rate, 20.0, seed=21) * contraction(rate, t.size, 12.0, 0.4)
    steady = x + 100.0 * hum + weak
    assert electrode_spectrum(steady[int(11.9 * rate) : int(12.5 * rate)], rate, cfg)[0] > 0.5
    assert _run_1k(steady)[0] == [5.0, 12.0]
    # the hum growing x8 in 0.15 s (impedance rising: the potential divider), no muscle at all:
    # its change leaks through the notch as a burst, dropped; kept with the test off (and the
    # input-power test too: off the lines the input holds no more than rest)
    rising = x + np.interp(t, [12.0, 12.15], [25.0, 200.0]) * hum
    assert _run_1k(rising)[0] == [5.0]
    assert _run_1k(rising, electrode_hum_change=1e12)[0] == [5.0]
    assert _run_1k(rising, electrode_hum_change=1e12, input_power_ratio=0.0)[0] == [5.0, 12.0]
    # a smaller change, 100 -> 160 uV in 0.1 s (x2.6 in power, the impedance rising by half as
    # a contact starts to fail): dropped at the default (x2), kept at the old x4 (input test off)
    grow = x + np.interp(t, [12.0, 12.1], [100.0, 160.0]) * hum
    assert _run_1k(grow, input_power_ratio=0.0)[0] == [5.0]
    assert _run_1k(grow, input_power_ratio=0.0, electrode_hum_change=4.0)[0] == [5.0, 12.0]


def _settling(spasm_after_s: float | None) -> np.ndarray:
    """``_reattached`` without the hum surge, the new contact noisy as it settles: broadband
    electrode noise 5x the old rest when it comes back, decaying with tau 3 s (Huigen et al. 2002);
    optionally a spasm ``spasm_after_s`` after reattachment."""
    rate = 2000.0
    x = _reattached(None, hum_surge=False)
    t = np.arange(x.size) / rate
    decay = np.where(t >= 25.0, np.exp(-np.maximum(t - 25.0, 0.0) / 3.0), 0.0)
    x += 15.0 * _emg(rate, 60.0, seed=21) * decay
    if spasm_after_s is not None:
        x += 200.0 * _emg(rate, 60.0, seed=11) * contraction(rate, x.size, 25.0 + spasm_after_s, 0.8)
    return x


def test_a_spasm_in_the_first_second_after_reattachment_is_found() -> None:
    # 0.7 s after reattachment: before the new contact's first 0.5 s baseline segment is in
    # (filters settle 0.5 s, the segment grid then gives one at 26.0 s), so only the provisional
    # level (its first clean 0.2 s of blocks) can see it rise
    x = _settling(0.7)
    evs = _events(_run(x))
    assert [round(e.onset_sample / 2000.0, 1) for e in evs] == [10.0, 25.7]
    assert evs[1].artifact_suspect  # in the settling window: published for a clinician to weigh
    # without the provisional level it is learnt as the new contact's rest and lost
    assert [round(e.onset_sample / 2000.0, 1) for e in _events(_run(x, baseline_provisional_s=0.0))] == [10.0]
    # the settling noise alone (decaying from 5x rest) is not a spasm
    assert [round(e.onset_sample / 2000.0, 1) for e in _events(_run(_settling(None)))] == [10.0]


def test_the_provisional_level_is_the_same_whatever_the_chunking() -> None:
    x = _settling(0.7)

    def kinds(out: list[object]) -> tuple[list[object], list[object]]:
        # events in order; onsets and quality changes as a set (one call emits them in another order)
        return _events(out), sorted((o for o in out if not isinstance(o, SpasmEvent)), key=repr)

    det = SpasmDetector(DetectorConfig(mains_hz=50), emg_rate_hz=2000.0, channel_labels=["A"])
    whole = kinds([*det.feed_emg(0, x[:, None]), *det.finish()])
    assert len(whole[0]) == 2
    # one call (the offline path, quiet stretches a segment at a time) == 50 ms chunks
    assert whole == kinds(_run(x))
    det = SpasmDetector(DetectorConfig(mains_hz=50), emg_rate_hz=2000.0, channel_labels=["A"])
    odd: list[object] = []
    for a in range(0, x.size, 1337):  # chunks that cut blocks anywhere
        odd += det.feed_emg(a, x[a : a + 1337, None])
    assert kinds([*odd, *det.finish()]) == whole


def test_a_new_contact_learns_its_rest_from_its_own_first_segment() -> None:
    from detectors.emg_baseline import RestBaseline

    cfg = DetectorConfig()
    bl = RestBaseline(cfg, 2)
    seg = bl.blocks_per_seg
    for _ in range(bl.ring_len):  # 20 s of rest at power 4 (band), 1 (artefact band)
        for _ in range(seg):
            bl.add_blocks(np.array([[4.0], [4.0], [1.0], [1.0]]))
    assert bl.valid.all() and abs(float(bl.on_thr[0, 0]) - max(8 * 3**0.5, 3**0.5 + 8)) < 1e-9
    bl.forget(0)
    for _ in range(seg):  # one segment of the new contact, 9x noisier in power
        bl.add_blocks(np.array([[36.0], [4.0], [9.0], [1.0]]))
    # valid from this one segment, at its own level (not the 4th lowest of a 40-slot ring,
    # which would wait 2 s, nor the old contact's level)
    assert bl.valid[0] and abs(float(bl.base_pow[0]) - 36.0) < 1e-9
    assert abs(float(bl.base_pow[1]) - 4.0) < 1e-9  # the other channel untouched


def test_the_robust_spectrum_reads_what_a_long_burst_is_mostly_made_of() -> None:
    rate, cfg = 2000.0, DetectorConfig()
    n = int(2.0 * rate)
    t = np.arange(n) / rate
    muscle = 200 * _emg(rate, 2.0)
    pop = np.where(t > 1.2, -8000.0, 0.0)  # one 8 mV electrode step inside a 2 s burst
    # one FFT over it all: the step fills the low bins, as a drift would
    assert electrode_spectrum(muscle + pop, rate, cfg)[1] > cfg.artefact_low_fraction
    # the median of 0.25 s periodograms: muscle, as it is before and after the step
    assert electrode_spectrum(muscle + pop, rate, cfg, robust=True)[1] < 0.2
    # a burst that is drift and steps throughout stays low-frequency either way
    rng = np.random.default_rng(5)
    walk = np.cumsum(rng.normal(0.0, 30.0, n))  # a random-walk drift (cable tug, bias current)
    assert electrode_spectrum(walk + 5 * _emg(rate, 2.0), rate, cfg, robust=True)[1] > 0.5


def test_the_filters_ringing_after_a_dc_step_is_not_a_spasm_a_twitch_after_it_is() -> None:
    # A 2 mV step of the electrode-skin potential at 12 s (intermittent contact, Tam & Webster
    # 1977), no muscle: the band-pass and the 50 Hz notch ring after the edge, and the envelope
    # reads that ring as a burst (an event with the input-power test off). The raw samples over
    # it hold only resting noise above 45 Hz off the lines: dropped.
    _, x = _rest_1k()
    x[12000:] += 2000.0
    assert _run_1k(x, input_power_ratio=0.0)[0] == [5.0, 12.1]
    assert _run_1k(x)[0] == [5.0]
    # the same step with a real twitch 1 s later: the twitch is kept
    twitch = 150.0 * _emg(1000.0, 20.0, seed=13)
    assert _run_1k(x + twitch * contraction(1000.0, x.size, 13.0, 0.2))[0] == [5.0, 13.0]
    # 0.6 s later it merges with the ring (the episode has not been quiet for 0.5 s): one event
    # dated at the ring, its input holds the twitch, so it is not dropped (a known limit: the
    # onset is 0.5 s early)
    assert _run_1k(x + twitch * contraction(1000.0, x.size, 12.6, 0.2))[0] == [5.0, 12.1]


def test_input_power_reads_the_band_off_the_lines() -> None:
    from detectors.emg_quality import input_power

    rate, cfg = 1000.0, DetectorConfig()
    rng = np.random.default_rng(2)
    n = int(0.3 * rate)
    t = np.arange(n) / rate
    white = rng.normal(0.0, 10.0, n)
    top = min(cfg.band_high_hz, 0.45 * rate)
    share = (top - cfg.artefact_band_hz) / (rate / 2)  # the band's share of white noise's power
    assert 0.6 < input_power(white, rate, cfg) / (100.0 * share) < 1.4
    # strong hum (harmonics of 50 or 60 Hz, wherever they fall between bins), slow swings: not read
    hum = 1000.0 * np.sin(2 * np.pi * 50 * t) + 800.0 * np.sin(2 * np.pi * 180 * t)
    assert input_power(hum, rate, cfg) < 1.0
    assert input_power(2000.0 * np.sin(2 * np.pi * 4 * t), rate, cfg) < 1.0


def _crackle(x: np.ndarray, start_s: float, seed: int = 5) -> np.ndarray:
    """Contact crackle of an electrode just pressed back: twelve isolated 1-3 ms spikes of
    0.4-1 mV within 0.2 s from ``start_s`` (Huigen et al. 2002), each a smooth click."""
    rate = 2000.0
    rng = np.random.default_rng(seed)
    y = x.copy()
    for t0 in start_s + np.sort(rng.uniform(0.0, 0.2, 12)):
        k = int(rng.uniform(0.001, 0.003) * rate)
        i = int(t0 * rate)
        y[i : i + k] += rng.choice([-1.0, 1.0]) * rng.uniform(400.0, 1000.0) * np.hanning(k + 2)[1:-1]
    return y


def test_crackle_kurtosis_tells_isolated_spikes_from_an_interference_pattern() -> None:
    cfg = DetectorConfig()
    rate = 2000.0
    rng = np.random.default_rng(2)
    emg = 50.0 * _emg(rate, 0.3, seed=7) * np.hanning(600)  # a twitch: the envelope is divided out
    assert crackle_kurtosis(emg + rng.normal(0.0, 1.0, 600), rate, cfg) < 4.0
    clicks = _crackle(rng.normal(0.0, 3.0, 600), 0.02)
    assert crackle_kurtosis(clicks, rate, cfg) > cfg.crackle_kurtosis


def test_contact_crackle_after_reattachment_is_not_a_spasm_a_spasm_there_is() -> None:
    # 1.5 s after the electrode came back (the provisional level is in): crackle on the settling noise
    x = _crackle(_settling(None), 26.5)
    on = [round(e.onset_sample / 2000.0, 1) for e in _events(_run(x, crackle_kurtosis=0.0))]
    assert on[0] == 10.0 and len(on) == 2 and 26.4 <= on[1] <= 26.8  # without the test: an event
    assert [round(e.onset_sample / 2000.0, 1) for e in _events(_run(x))] == [10.0]
    # a real spasm at the same moment is kept (published flagged, as in the settling window)
    evs = _events(_run(_settling(1.5)))
    assert [round(e.onset_sample / 2000.0, 1) for e in evs] == [10.0, 26.5] and evs[1].artifact_suspect
