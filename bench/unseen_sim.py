"""An independent sEMG + accelerometer simulator, for scoring the detector on data it was not built on.

It shares no code with ``firmware_sim`` (which shapes Gaussian noise by a spectrum and an envelope);
only numpy/scipy. Everything is modelled from the physiology instead:

* **EMG** is a sum of motor-unit action-potential trains. Each channel has 20-100 motor units with
  recruitment thresholds spread exponentially (many small, few large units), amplitudes following the
  size principle (a 30-fold range, large units recruited last), biphasic or triphasic MUAPs (first or
  second derivative of a Gaussian, 5-15 ms long) and firing rates from 8 Hz at recruitment up to 30 Hz
  (rate coding, ISI coefficient of variation ~0.15), then a tissue low-pass (150-400 Hz). A spasm is a
  *drive* (excitation level 0..1 over time); its EMG amplitude is calibrated so the RMS at the drive's
  peak is the event's ``peak_uv``.
* **Rest noise**: pink (1/f) plus white noise, per channel 1-8 uV RMS each.
* **ECG**: a PQRST template (five Gaussians) at 50-100 bpm, with respiratory sinus arrhythmia and
  random beat-to-beat variability.
* **Motion artefacts**: smoothed random walks (integrated noise, low-passed at 3-15 Hz), 0.3-3 s.
* **Electrode pops**: a fast step (0.5-2 ms) followed by an exponential return (tau 50-500 ms).
* **Mains**: 50 or 60 Hz with 2nd-5th harmonics (odd ones stronger) and slowly drifting amplitude.
* **Baseline wander**: a few slow sinusoids (0.05-0.5 Hz).
* **Cross-talk**: a fraction (2-10 %) of a channel's EMG, further low-passed, on its neighbours.
* **Accelerometer**: gravity with posture changes (smooth rotations), sensor noise, the movement a
  spasm causes (low-passed drive; clonus shakes the limb at its own rate), and tremor as an
  amplitude- and frequency-modulated sinusoid with harmonics, with weak phase-locked EMG.

Labels follow the issue's definitions: twitch 50-500 ms, phasic 0.5-10 s, tonic > 10 s, clonus >= 4
bursts at 3-8 Hz (one label per episode, with its frequency), tremor 3-12 Hz for >= 3 s (channel
"ACC"). A spasm label spans the time its drive is >= 10 % of its peak (tremor: amplitude >= 50 % of its
plateau). Confounders are exported as labels of other types (the scorer ignores them) so that the
bench can attribute false alarms to a cause. Extra keys (``peak_uv``, ``rest_uv``) are informative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import signal

SPASM_KINDS = ("twitch", "phasic", "tonic", "clonus", "tremor")


@dataclass(frozen=True)
class UnseenSpec:
    """One recording to generate. ``mix`` weights the event types; confounders are switched by name."""

    name: str
    seed: int
    duration_s: float
    emg_rate_hz: float
    acc_rate_hz: float
    n_channels: int
    mix: dict[str, float]
    events_per_min: float = 4.0
    mains_hz: float | None = 50.0
    mains_uv: float = 20.0
    ecg_channels: tuple[int, ...] = ()
    ecg_uv: float = 100.0
    motion_per_min: float = 0.0
    pops_per_min: float = 0.0
    wander_uv: float = 0.0
    crosstalk: float = 0.0
    posture_per_min: float = 0.0
    peak_uv: tuple[float, float] = (50.0, 800.0)


@dataclass
class UnseenRecording:
    """What ``bench_detector.run_recording`` needs, plus labels (spasms and confounders)."""

    name: str
    emg_rate_hz: float
    acc_rate_hz: float
    channel_labels: list[str]
    emg_uv: np.ndarray  # (n, n_channels)
    acc_g: np.ndarray  # (m, 3)
    labels: list[dict[str, Any]] = field(default_factory=list)
    rest_uv: list[float] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.emg_uv.shape[0] / self.emg_rate_hz


# --------------------------------------------------------------------------- noise


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS 1/f noise by spectral shaping of white noise (the amplifier's flicker noise)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (x.std() + 1e-12)


def smooth_walk(rng: np.random.Generator, n: int, fs: float, cutoff_hz: float) -> np.ndarray:
    """A random walk low-passed at ``cutoff_hz``, peak-normalised: the shape of a cable-motion artefact."""
    w = np.cumsum(rng.standard_normal(n))
    w -= np.linspace(w[0], w[-1], n)  # ends at zero so the artefact begins and ends on the baseline
    sos = signal.butter(2, min(cutoff_hz, 0.4 * fs), fs=fs, output="sos")
    w = signal.sosfiltfilt(sos, w) * np.hanning(n)
    return w / (np.abs(w).max() + 1e-12)


# --------------------------------------------------------------------------- motor units


@dataclass
class MotorPool:
    """The motor units under one electrode: thresholds, amplitudes and MUAP shapes."""

    thresholds: np.ndarray
    amplitudes: np.ndarray
    template_of: np.ndarray
    templates: list[np.ndarray]
    tissue_sos: np.ndarray


def make_pool(rng: np.random.Generator, fs: float) -> MotorPool:
    n = int(rng.integers(20, 101))
    i = np.arange(n) / n
    a = 4.0
    thresholds = 0.02 + 0.68 * (np.exp(a * i) - 1.0) / (np.exp(a) - 1.0)  # most units recruited early
    amplitudes = np.exp(np.log(30.0) * i) * rng.uniform(0.7, 1.3, n)  # size principle
    templates: list[np.ndarray] = []
    for _ in range(8):
        dur_s = rng.uniform(0.005, 0.015)
        sigma = dur_s / 6.0
        t = np.arange(-4 * sigma, 4 * sigma + 0.5 / fs, 1.0 / fs)
        g = np.exp(-0.5 * (t / sigma) ** 2)
        tri = rng.random() < 0.5
        w = (t**2 / sigma**2 - 1.0) * g if tri else -t / sigma * g  # triphasic or biphasic
        w = w - w.mean()
        templates.append(w / (np.sqrt(np.sum(w**2)) + 1e-12) * rng.choice([-1.0, 1.0]))
    tissue_hz = min(rng.uniform(150.0, 400.0), 0.45 * fs)
    return MotorPool(
        thresholds=thresholds,
        amplitudes=amplitudes,
        template_of=rng.integers(0, len(templates), n),
        templates=templates,
        tissue_sos=signal.butter(2, tissue_hz, fs=fs, output="sos"),
    )


def muap_emg(rng: np.random.Generator, pool: MotorPool, drive: np.ndarray, fs: float) -> np.ndarray:
    """EMG (arbitrary units) of a pool under a drive in [0, 1]: recruitment and rate coding."""
    n = drive.size
    trains = np.zeros((len(pool.templates), n))
    for k in range(pool.thresholds.size):
        thr = pool.thresholds[k]
        on = drive > thr
        if not on.any():
            continue
        rate = np.where(on, 8.0 + 22.0 * np.clip((drive - thr) / (1.0 - thr), 0.0, 1.0), 0.0)
        phase = np.cumsum(rate) / fs + rng.random()
        idx = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
        if idx.size == 0:
            continue
        isi = fs / np.maximum(rate[idx], 1.0)
        idx = idx + np.round(rng.normal(0.0, 0.15, idx.size) * isi).astype(int)  # ISI variability
        idx = idx[(idx >= 0) & (idx < n)]
        np.add.at(trains[pool.template_of[k]], idx, pool.amplitudes[k])
    out = np.zeros(n)
    for j, tpl in enumerate(pool.templates):
        if trains[j].any():
            out += signal.fftconvolve(trains[j], tpl, mode="same")
    return signal.sosfilt(pool.tissue_sos, out)


# --------------------------------------------------------------------------- drives


def _edge(n: int) -> np.ndarray:
    """A raised-cosine ramp 0 -> 1 over n samples."""
    return 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, max(n, 2)))


def drive_shape(rng: np.random.Generator, kind: str, fs: float) -> tuple[np.ndarray, float | None]:
    """A unit-peak drive for one event (whole array = event, ends near zero) and clonus frequency."""
    if kind == "twitch":
        d = rng.uniform(0.06, 0.45)
        n = int(d * fs)
        rise = max(2, int(rng.uniform(0.15, 0.35) * n))
        x = np.concatenate([_edge(rise), _edge(n - rise)[::-1]])
        return x, None
    if kind in ("phasic", "tonic"):
        d = rng.uniform(0.6, 9.0) if kind == "phasic" else rng.uniform(11.0, 40.0)
        n = int(d * fs)
        rise, fall = int(rng.uniform(0.05, 0.2) * fs), int(rng.uniform(0.1, 0.3) * fs)
        plateau = np.ones(max(n - rise - fall, 1))
        if kind == "tonic":  # slow fluctuation of a sustained contraction
            t = np.arange(plateau.size) / fs
            plateau = 0.8 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
        x = np.concatenate([_edge(rise), plateau, _edge(fall)[::-1]])
        return x / x.max(), None
    if kind == "clonus":
        f = rng.uniform(3.2, 7.8)
        cycles = int(rng.integers(4, 21))
        periods = (1.0 / f) * (1.0 + rng.normal(0.0, 0.04, cycles))
        duty = rng.uniform(0.35, 0.55)
        parts = []
        for k, p in enumerate(periods):
            nb = int(duty * p * fs)
            burst = np.hanning(nb + 2)[1:-1] * rng.uniform(0.8, 1.0)
            gap = np.zeros(int(p * fs) - nb) if k < cycles - 1 else np.zeros(0)
            parts += [burst, gap]
        x = np.concatenate(parts)
        return x / x.max(), float(1.0 / np.mean(periods))
    raise ValueError(f"drive_shape: unknown kind {kind!r}")


def _label_span(x: np.ndarray, frac: float) -> tuple[int, int]:
    above = np.flatnonzero(x >= frac * x.max())
    return int(above[0]), int(above[-1])


# --------------------------------------------------------------------------- artefacts


def ecg_wave(rng: np.random.Generator, n: int, fs: float, amp_uv: float) -> np.ndarray:
    """PQRST beats (sum of Gaussians) at 50-100 bpm with respiratory sinus arrhythmia and HRV."""
    hr = rng.uniform(50.0, 100.0)
    rr0 = 60.0 / hr
    # (offset from R in s, width sigma in s, relative amplitude): P, Q, R, S, T
    waves = [(-0.2, 0.025, 0.12), (-0.03, 0.008, -0.15), (0.0, rng.uniform(0.006, 0.01), 1.0),
             (0.03, 0.009, -0.25), (0.25, 0.045, 0.3)]  # fmt: skip
    half = int(0.45 * fs)
    t = np.arange(-half, half + 1) / fs
    beat = sum(a * np.exp(-0.5 * ((t - m) / s) ** 2) for m, s, a in waves)
    beat = np.asarray(beat) * amp_uv
    out = np.zeros(n)
    tt = rng.uniform(0, rr0)
    resp = rng.uniform(0.2, 0.35)
    while tt < n / fs:
        i = int(tt * fs)
        lo, hi = max(0, i - half), min(n, i + half + 1)
        out[lo:hi] += beat[lo - (i - half) : hi - (i - half)] * rng.uniform(0.9, 1.1)
        tt += rr0 * (1.0 + 0.05 * math.sin(2 * math.pi * resp * tt) + rng.normal(0.0, 0.03))
    return out


def mains_wave(rng: np.random.Generator, n: int, fs: float, f0: float, amp_uv: float) -> np.ndarray:
    """Mains hum with 2nd-5th harmonics (odd ones stronger) below Nyquist and slow amplitude drift."""
    t = np.arange(n) / fs
    f_true = f0 + rng.uniform(-0.05, 0.05)
    drift = 1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.005, 0.05) * t + rng.uniform(0, 6.3))
    x = np.zeros(n)
    rel = {1: 1.0, 2: rng.uniform(0.01, 0.05), 3: rng.uniform(0.1, 0.4), 4: rng.uniform(0.01, 0.03),
           5: rng.uniform(0.05, 0.2)}  # fmt: skip
    for h, r in rel.items():
        if h * f_true < 0.45 * fs:
            x += r * np.sin(2 * np.pi * h * f_true * t + rng.uniform(0, 6.3))
    return amp_uv * drift * x


# --------------------------------------------------------------------------- accelerometer


def _rotate(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = rng.uniform(0.3, 1.2)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    r = np.eye(3) + math.sin(ang) * k + (1 - math.cos(ang)) * k @ k
    out = r @ g
    return np.asarray(out / np.linalg.norm(out))


# --------------------------------------------------------------------------- recording


def generate(spec: UnseenSpec) -> UnseenRecording:
    """Synthesize one recording from its spec (deterministic in ``spec.seed``)."""
    rng = np.random.default_rng(spec.seed)
    fs, fa = spec.emg_rate_hz, spec.acc_rate_hz
    n, m = int(spec.duration_s * fs), int(spec.duration_s * fa)
    nch = spec.n_channels
    labels: list[dict[str, Any]] = []
    clean = np.zeros((n, nch))  # EMG from muscles (spasms, tremor), before cross-talk
    move = np.zeros((m, 3))  # limb movement in g
    pools = [make_pool(rng, fs) for _ in range(nch)]
    rest = rng.uniform(1.0, 8.0, nch)

    # ---- events: scheduled one after another with rest gaps, possibly co-activating a neighbour
    kinds = list(spec.mix)
    weights = np.array([spec.mix[k] for k in kinds], dtype=float)
    weights /= weights.sum()
    t = rng.uniform(3.0, 8.0)
    mean_gap = 60.0 / spec.events_per_min
    while True:
        kind = str(rng.choice(kinds, p=weights))
        if kind == "tremor":
            dur = rng.uniform(4.0, 20.0)
            if t + dur + 2.0 > spec.duration_s:
                break
            _add_tremor(rng, spec, t, dur, clean, move, pools, rest, labels)
        else:
            shape, freq = drive_shape(rng, kind, fs)
            dur = shape.size / fs
            if t + dur + 2.0 > spec.duration_s:
                break
            chans = [int(rng.integers(0, nch))]
            if nch > 1 and rng.random() < 0.3:  # co-contraction of a neighbouring muscle
                chans.append((chans[0] + 1) % nch)
            amp = math.exp(rng.uniform(math.log(spec.peak_uv[0]), math.log(spec.peak_uv[1])))
            for j, c in enumerate(chans):
                lag = 0 if j == 0 else int(rng.uniform(-0.05, 0.05) * fs)
                i0 = max(0, int(t * fs) + lag)
                level = rng.uniform(0.4, 1.0)
                d = shape[: n - i0] * level
                pad = int(0.05 * fs)
                dd = np.concatenate([np.zeros(pad), d, np.zeros(pad)])
                e = muap_emg(rng, pools[c], dd, fs)
                pk = dd >= 0.8 * dd.max()
                a = amp * (1.0 if j == 0 else rng.uniform(0.4, 1.0))
                e *= a / (np.sqrt(np.mean(e[pk] ** 2)) + 1e-12)
                lo = i0 - pad
                s0 = max(0, lo)
                clean[s0 : min(n, lo + dd.size), c] += e[s0 - lo : min(n, lo + dd.size) - lo]
                on, off = _label_span(d, 0.1)
                labels.append({"type": kind, "channel": f"EMG {c + 1}", "onset_s": (i0 + on) / fs,
                               "offset_s": (i0 + off) / fs, "frequency_hz": freq, "peak_uv": a,
                               "rest_uv": float(rest[c])})  # fmt: skip
                _limb_motion(rng, d, i0, fs, fa, move, kind)
        t += dur + 1.5 + rng.exponential(mean_gap)

    # ---- cross-talk: a low-passed fraction of each channel's EMG on its neighbours
    emg = clean.copy()
    if spec.crosstalk > 0 and nch > 1:
        xt_sos = signal.butter(2, min(120.0, 0.4 * fs), fs=fs, output="sos")
        lp = signal.sosfilt(xt_sos, clean, axis=0)
        for c in range(nch):
            for nb in (c - 1, c + 1):
                if 0 <= nb < nch:
                    emg[:, nb] += rng.uniform(0.2, 1.0) * spec.crosstalk * lp[:, c]

    # ---- rest noise (pink + white, per channel)
    for c in range(nch):
        emg[:, c] += rest[c] * (rng.standard_normal(n) + rng.uniform(0.5, 1.5) * pink_noise(rng, n))

    # ---- artefacts
    if spec.mains_hz:
        for c in range(nch):
            emg[:, c] += mains_wave(rng, n, fs, spec.mains_hz, spec.mains_uv * rng.uniform(0.5, 1.5))
        labels.append({"type": "mains", "channel": "*", "onset_s": 0.0, "offset_s": spec.duration_s})
    for c in spec.ecg_channels:
        emg[:, c] += ecg_wave(rng, n, fs, spec.ecg_uv * rng.uniform(0.6, 1.4))
        labels.append({"type": "ecg", "channel": f"EMG {c + 1}", "onset_s": 0.0, "offset_s": spec.duration_s})
    if spec.wander_uv > 0:
        tt = np.arange(n) / fs
        for c in range(nch):
            for _ in range(3):
                f = rng.uniform(0.05, 0.5)
                emg[:, c] += spec.wander_uv / 3 * np.sin(2 * np.pi * f * tt + rng.uniform(0, 6.3))
    for _ in range(rng.poisson(spec.motion_per_min * spec.duration_s / 60.0)):
        dm = rng.uniform(0.3, 3.0)
        i0 = int(rng.uniform(0, spec.duration_s - dm) * fs)
        k = int(dm * fs)
        c = int(rng.integers(0, nch))
        a = rng.uniform(50.0, 2000.0)
        emg[i0 : i0 + k, c] += a * smooth_walk(rng, k, fs, rng.uniform(3.0, 15.0))
        ia = int(i0 / fs * fa)
        move[ia : ia + int(dm * fa), :] += rng.normal(0, 0.05, 3) * np.hanning(int(dm * fa))[:, None]
        labels.append(
            {"type": "motion", "channel": f"EMG {c + 1}", "onset_s": i0 / fs, "offset_s": (i0 + k) / fs}
        )
    for _ in range(rng.poisson(spec.pops_per_min * spec.duration_s / 60.0)):
        c = int(rng.integers(0, nch))
        i0 = int(rng.uniform(0, spec.duration_s - 3.0) * fs)
        tau = rng.uniform(0.05, 0.5)
        k = int(6 * tau * fs)
        rise = max(1, int(rng.uniform(0.0005, 0.002) * fs))
        step = np.minimum(np.arange(k) / rise, 1.0) * np.exp(-np.maximum(np.arange(k) - rise, 0) / (tau * fs))
        emg[i0 : i0 + k, c] += rng.choice([-1.0, 1.0]) * rng.uniform(100.0, 2000.0) * step[: n - i0]
        labels.append(
            {"type": "pop", "channel": f"EMG {c + 1}", "onset_s": i0 / fs, "offset_s": (i0 + k) / fs}
        )

    # ---- accelerometer: gravity with posture changes, movement, noise
    g = np.zeros((m, 3))
    cur = _rotate(np.array([0.0, 0.0, 1.0]), rng)
    changes = sorted(
        rng.uniform(0, spec.duration_s, rng.poisson(spec.posture_per_min * spec.duration_s / 60))
    )
    last = 0
    for tc in changes:
        ic = int(tc * fa)
        g[last:ic] = cur
        new = _rotate(cur, rng)
        k = max(2, int(rng.uniform(0.5, 2.0) * fa))
        w = _edge(k)[:, None]
        seg = (1 - w) * cur + w * new
        seg /= np.linalg.norm(seg, axis=1, keepdims=True)
        g[ic : ic + k] = seg[: max(0, m - ic)]
        labels.append({"type": "posture", "channel": "ACC", "onset_s": tc, "offset_s": tc + k / fa})
        cur, last = new, min(m, ic + k)
    g[last:] = cur
    acc = g + move + rng.normal(0.0, rng.uniform(0.002, 0.008), (m, 3))
    return UnseenRecording(
        name=spec.name, emg_rate_hz=fs, acc_rate_hz=fa, channel_labels=[f"EMG {c + 1}" for c in range(nch)],
        emg_uv=emg, acc_g=acc, labels=labels, rest_uv=[float(r) for r in rest],
    )  # fmt: skip


def _limb_motion(
    rng: np.random.Generator, d: np.ndarray, i0: int, fs: float, fa: float, move: np.ndarray, kind: str
) -> None:
    """The limb movement a contraction causes, on the accelerometer (low-passed drive, random direction)."""
    m = move.shape[0]
    k = int(d.size / fs * fa)
    ia = int(i0 / fs * fa)
    if k < 2 or ia >= m:
        return
    x = np.interp(np.arange(k) / fa, np.arange(d.size) / fs, d)
    cutoff = 10.0 if kind == "clonus" else 3.0  # clonus shakes the limb at its own rate
    sos = signal.butter(2, min(cutoff, 0.4 * fa), fs=fa, output="sos")
    x = signal.sosfilt(sos, x)
    gain = rng.uniform(0.05, 0.4)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    kk = min(k, m - ia)
    move[ia : ia + kk] += gain * x[:kk, None] * direction


def _add_tremor(
    rng: np.random.Generator, spec: UnseenSpec, t0: float, dur: float, clean: np.ndarray, move: np.ndarray,
    pools: list[MotorPool], rest: np.ndarray, labels: list[dict[str, Any]],
) -> None:  # fmt: skip
    """Tremor: AM/FM sinusoid with harmonics on the accelerometer, weak phase-locked EMG on one channel."""
    fs, fa = spec.emg_rate_hz, spec.acc_rate_hz
    f0 = rng.uniform(4.0, 8.0) if rng.random() < 0.7 else rng.uniform(3.5, 11.0)
    f0 = min(f0, 0.4 * fa)
    ramp = rng.uniform(0.2, 0.6)

    def envelope(tt: np.ndarray) -> np.ndarray:
        up = np.clip(tt / ramp, 0, 1)
        down = np.clip((dur - tt) / ramp, 0, 1)
        am = 1.0 + 0.2 * np.sin(2 * np.pi * rng_am * tt)
        return np.asarray((0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down)) * am)

    rng_am = rng.uniform(0.1, 0.5)
    fm = rng.uniform(0.05, 0.3)
    ia = int(t0 * fa)
    ta = np.arange(int(dur * fa)) / fa
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * fm * ta))) / fa
    h2 = rng.uniform(0.1, 0.3)
    amp_g = rng.uniform(0.02, 0.3)
    osc = amp_g * envelope(ta) * (np.sin(phase) + h2 * np.sin(2 * phase + rng.uniform(0, 6.3)))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    k = min(ta.size, move.shape[0] - ia)
    move[ia : ia + k] += osc[:k, None] * direction
    # weak EMG: bursts locked to the tremor phase, 1.5-4x the rest level
    c = int(rng.integers(0, clean.shape[1]))
    te = np.arange(int(dur * fs)) / fs
    ph = np.interp(te, ta, phase)
    d = 0.3 * envelope(te) * np.clip(np.sin(ph), 0, None) ** 2
    e = muap_emg(rng, pools[c], d, fs)
    # "weak": the RMS at the bursts' peaks is 1.5-4x the rest noise *in the EMG band* (20-450 Hz,
    # about 0.6x the broadband rest level of white + pink noise), well short of a spasm's
    pk = d >= 0.8 * d.max()
    e *= rng.uniform(1.5, 4.0) * 0.6 * rest[c] / (np.sqrt(np.mean(e[pk] ** 2)) + 1e-12)
    i0 = int(t0 * fs)
    kk = min(e.size, clean.shape[0] - i0)
    clean[i0 : i0 + kk, c] += e[:kk]
    half = np.flatnonzero(envelope(ta) >= 0.5)
    labels.append({"type": "tremor", "channel": "ACC", "onset_s": t0 + half[0] / fa,
                   "offset_s": t0 + half[-1] / fa, "frequency_hz": float(f0)})  # fmt: skip
