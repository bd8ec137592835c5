"""Electrode and cable artefacts at rest, for scoring the detector on data it was not built on.

A second independent generator (numpy/scipy plus the motor-unit EMG of ``unseen_sim``; nothing
from ``firmware_sim``), for the artefacts issue 9 says are left at rest: the start and end of a
lead-off, the electrode's settling after reattachment, and cable motion. Each is modelled from
what the electrode-amplifier physics says it does, not from what our detector happens to see:

* **Lead-off begins** (half contact, 0.3-3 s; the electrode peels or the gel dries). The
  electrode-skin impedance rises by orders of magnitude (Z(t) log-linear from ~20 kOhm to
  ~20 MOhm). Through the *potential divider* between that impedance and the amplifier's common-mode
  input impedance, mains common-mode voltage turns into a differential signal proportional to the
  impedance mismatch (Huhta & Webster, IEEE TBME 1973; Spinelli & Haberman, Physiol Meas 2010): the
  hum *rises* with Z(t), and as it grows the input protection and the first stage distort it (odd
  and even harmonics). The amplifier's input bias current through Z(t) pulls the input away
  (V = I_b Z, a *drift* that ends at the rail on a DC-coupled front end). Contact is intermittent
  meanwhile: the half-cell potential jumps (*DC steps* of 0.5-20 mV, Tam & Webster, IEEE TBME 1977).
  The muscle's own EMG fades as the contact area shrinks.
* **Lead-off proper**, one of three front ends per recording: *railed* (DC coupled: the input
  sits at the ADC rail), *floating* (AC coupled: large mains, 0.5-3 mV, plus slow drift) or *zeroed*
  (the amplifier's lead-off detection forces a constant code).
* **Reattachment and settling.** Pressing the electrode back gives a DC step (the double layer
  re-forms: 2-50 mV) that decays exponentially (tau 0.5-4 s) while the gel wets the skin; the
  electrode noise (thermal noise of the still high impedance plus electrochemical noise) starts
  3-12x the channel's rest level and decays over 2-15 s (Huigen, Peper & Grimbergen, Med Biol Eng
  Comput 2002: electrode noise falls over minutes after application), the hum decays with the
  impedance, and for the first 0.5-3 s contact crackles (short spikes of 50-500 uV).
* **Cable motion** (movement artefact: most of its energy below 20 Hz, Conforto et al. / De Luca
  et al., J Biomech 2010; triboelectric charge on a flexed cable): *taps* (a knock on the cable or
  electrode: a fast-rising damped 2-12 Hz oscillation, 0.2-1 s, 100-3000 uV), *tugs* (a pull on the
  lead: a smooth 0.2-1.5 s excursion of 200-5000 uV), and *sway* at walking cadence (the cable
  swinging at 0.7-1.2 Hz for 4-15 s, a half-sine of 50-800 uV per swing). Channels sharing a cable
  see the same waveform (gain 0.3-1, delay <= 5 ms); the accelerometer on the limb sees the
  movement behind sway and tugs (taps barely move the limb).

Spasms (MUAP-train EMG as in ``unseen_sim``) are placed *in and around* all of this: in the
settling window (0.6-3 s after reattachment), just after it (3-8 s), just before a lead-off
begins, during cable motion, and well clear of anything (controls). Labels carry where each
spasm was (``near``) so the bench reports sensitivity per situation, and the lead-offs and cable
motion are labels of their own (``lead_off`` with its half-contact start, ``motion``) so every
false alarm gets a cause and the quality records can be checked against the truth.
"""

# ruff: noqa: E501  (signal recipes read better unwrapped)
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal
from unseen_sim import (
    UnseenRecording,
    _label_span,
    _limb_motion,
    drive_shape,
    make_pool,
    muap_emg,
    pink_noise,
)

FrontEnd = str  # "railed" | "floating" | "zeroed"


@dataclass(frozen=True)
class RestArtefactSpec:
    """One recording: lead-offs per channel and hour, cable motion per minute, front end."""

    name: str
    seed: int
    duration_s: float
    emg_rate_hz: float
    acc_rate_hz: float
    n_channels: int
    front_end: FrontEnd = "floating"
    lead_offs: int = 4  # lead-off episodes in the recording (random channels)
    taps_per_min: float = 0.0
    tugs_per_min: float = 0.0
    sway_per_min: float = 0.0
    mains_hz: float = 50.0
    mains_uv: float = 5.0  # hum at normal contact
    #: ADC: full scale (uV, +-) and bits; None = ideal
    full_scale_uv: float | None = None
    adc_bits: int = 16
    spasms_per_min: float = 3.0
    peak_uv: tuple[float, float] = (50.0, 800.0)
    shared_cable: bool = True  # all channels in one cable (motion coincident on all)


def _mains(rng: np.random.Generator, t: np.ndarray, f0: float) -> tuple[np.ndarray, np.ndarray]:
    """(clean line, distorted line) of unit amplitude; the distorted one has odd and even harmonics."""
    ph = 2 * np.pi * (f0 + rng.uniform(-0.05, 0.05)) * t + rng.uniform(0, 6.3)
    clean = np.sin(ph)
    dist = clean.copy()
    for h, r in ((2, rng.uniform(0.02, 0.08)), (3, rng.uniform(0.05, 0.2)), (5, rng.uniform(0.02, 0.08))):
        dist += r * np.sin(h * ph + rng.uniform(0, 6.3))
    return clean, dist


def _spike_train(rng: np.random.Generator, n: int, fs: float, count: int, amp: float) -> np.ndarray:
    """Contact crackle: ``count`` spikes (1-4 ms, random sign) of up to ``amp`` uV."""
    x = np.zeros(n)
    for _ in range(count):
        i = int(rng.integers(0, max(1, n - 10)))
        w = max(1, int(rng.uniform(0.001, 0.004) * fs))
        x[i : i + w] += rng.choice([-1.0, 1.0]) * amp * rng.uniform(0.2, 1.0)
    return x


def generate_rest(spec: RestArtefactSpec) -> UnseenRecording:
    """Synthesize one recording (deterministic in ``spec.seed``)."""
    rng = np.random.default_rng(spec.seed)
    fs, fa = spec.emg_rate_hz, spec.acc_rate_hz
    n, m = int(spec.duration_s * fs), int(spec.duration_s * fa)
    nch = spec.n_channels
    t_all = np.arange(n) / fs
    labels: list[dict[str, Any]] = []
    rest = rng.uniform(1.5, 6.0, nch)
    pools = [make_pool(rng, fs) for _ in range(nch)]
    muscle = np.zeros((n, nch))
    move = np.zeros((m, 3))
    contact = np.ones((n, nch))  # 1 = good contact, 0 = off (scales the muscle's EMG)
    art = np.zeros((n, nch))  # electrode and cable artefacts (uV)
    hum_gain = np.ones((n, nch))  # multiplies the normal-contact hum
    noise_gain = np.ones((n, nch))
    override: list[tuple[int, int, int, np.ndarray]] = []  # fully off: (ch, i0, i1, signal)
    busy: list[tuple[float, float, int]] = []  # (a, b, channel or -1 for all): no two things overlap

    def free(a: float, b: float, ch: int) -> bool:
        return all(b < x0 or a > x1 or (c >= 0 and ch >= 0 and c != ch) for x0, x1, c in busy)

    full = spec.full_scale_uv if spec.full_scale_uv is not None else 50_000.0

    # ---- lead-offs: half contact, off, reattachment and settling
    lead_offs: list[tuple[int, float, float, float, float]] = []  # ch, begin, off, on, settle end
    for _ in range(spec.lead_offs):
        for _try in range(200):
            ch = int(rng.integers(0, nch))
            half = rng.uniform(0.3, 3.0)
            off_dur = rng.uniform(2.0, 20.0)
            settle = rng.uniform(2.0, 15.0)
            a = rng.uniform(15.0, spec.duration_s - half - off_dur - settle - 15.0)
            if free(a - 8.0, a + half + off_dur + settle + 10.0, ch):
                break
        else:
            continue
        b_off, b_on = a + half, a + half + off_dur
        busy.append((a - 8.0, b_on + settle + 10.0, ch))
        lead_offs.append((ch, a, b_off, b_on, b_on + settle))
        i_a, i_off, i_on = int(a * fs), int(b_off * fs), int(b_on * fs)
        # half contact: log-linear impedance rise; hum ~ Z, bias drift ~ Z, EMG fades, DC steps
        k = i_off - i_a
        u = np.linspace(0.0, 1.0, k)
        z_rel = 10.0 ** (3.0 * u)  # x1000 over the transition
        contact[i_a:i_off, ch] = np.clip(1.0 - u, 0.0, 1.0) ** 2
        hum_gain[i_a:i_off, ch] = z_rel ** rng.uniform(0.5, 1.0)
        noise_gain[i_a:i_off, ch] = np.sqrt(z_rel) ** rng.uniform(0.3, 0.6)
        drift_end = (
            rng.uniform(0.05, 0.5) * full if spec.front_end == "railed" else rng.uniform(200.0, 3000.0)
        )
        art[i_a:i_off, ch] += rng.choice([-1.0, 1.0]) * drift_end * (z_rel - 1.0) / (z_rel[-1] - 1.0)
        for _s in range(int(rng.integers(1, 5))):  # intermittent contact: DC steps
            j = i_a + int(rng.integers(0, k))
            art[j:i_off, ch] += rng.choice([-1.0, 1.0]) * min(rng.uniform(500.0, 20_000.0), 0.3 * full)
        # fully off
        ko = i_on - i_off
        if spec.front_end == "railed":
            lvl = float(np.sign(art[i_off - 1, ch]) or 1.0) * full * 1.5
            sig = np.full(ko, lvl)
        elif spec.front_end == "zeroed":
            sig = np.zeros(ko)
        else:
            clean, dist = _mains(rng, np.arange(ko) / fs, spec.mains_hz)
            w = np.cumsum(rng.standard_normal(ko))
            w = signal.sosfiltfilt(signal.butter(1, 0.5, fs=fs, output="sos"), w)
            sig = rng.uniform(500.0, 3000.0) * dist + 300.0 * w / (np.abs(w).max() + 1e-9)
        override.append((ch, i_off, i_on, sig))
        contact[i_off:i_on, ch] = 0.0
        # reattachment: DC step settling, elevated noise and hum decaying, crackle
        ks = min(n - i_on, int(settle * fs))
        ts = np.arange(ks) / fs
        tau_dc = rng.uniform(0.5, 4.0)
        step = min(rng.uniform(2000.0, 50_000.0), 0.4 * full)  # below the rails: no saturation
        art[i_on : i_on + ks, ch] += rng.choice([-1.0, 1.0]) * step * np.exp(-ts / tau_dc)
        tau_n = settle / 3.0
        noise_gain[i_on : i_on + ks, ch] = 1.0 + (rng.uniform(3.0, 12.0) - 1.0) * np.exp(-ts / tau_n)
        hum_gain[i_on : i_on + ks, ch] = 1.0 + rng.uniform(2.0, 15.0) * np.exp(-ts / rng.uniform(0.5, 3.0))
        kc = min(ks, int(rng.uniform(0.5, 3.0) * fs))
        art[i_on : i_on + kc, ch] += _spike_train(
            rng, kc, fs, int(rng.integers(3, 15)), rng.uniform(50.0, 500.0)
        )
        labels.append({"type": "lead_off", "channel": f"EMG {ch + 1}", "onset_s": b_off, "offset_s": b_on,
                       "begin_s": a, "settle_end_s": b_on + settle})  # fmt: skip

    # ---- cable motion: taps, tugs, sway; coincident on the channels sharing the cable
    def cable(a: float, wave: np.ndarray, kind: str, acc_g: float) -> None:
        i0 = int(a * fs)
        k = min(wave.size, n - i0)
        chans = range(nch) if spec.shared_cable else [int(rng.integers(0, nch))]
        for c in chans:
            gain = rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0])
            d = int(rng.uniform(0.0, 0.005) * fs)
            j0 = min(n, i0 + d)
            kk = min(k, n - j0)
            art[j0 : j0 + kk, c] += gain * wave[:kk]
        ia, ka = int(a * fa), int(k / fs * fa)
        if acc_g > 0 and ka > 2:
            kk = min(ka, m - ia)
            move[ia : ia + kk] += acc_g * np.hanning(ka)[:kk, None] * rng.normal(size=3) / math.sqrt(3)
        labels.append({"type": "motion", "kind": kind, "channel": "*", "onset_s": a, "offset_s": a + k / fs})

    def place(dur: float) -> float | None:
        for _try in range(100):
            a = rng.uniform(5.0, spec.duration_s - dur - 5.0)
            if free(a - 1.0, a + dur + 1.0, -1):
                busy.append((a - 1.0, a + dur + 1.0, -1))
                return a
        return None

    per_min = spec.duration_s / 60.0
    for _ in range(rng.poisson(spec.taps_per_min * per_min)):
        dur = rng.uniform(0.2, 1.0)
        a = place(dur)
        if a is None:
            continue
        tt = np.arange(int(dur * fs)) / fs
        f = rng.uniform(2.0, 12.0)
        rise = rng.uniform(0.003, 0.02)
        w = (
            (1.0 - np.exp(-tt / rise))
            * np.exp(-tt / (dur / 4.0))
            * np.sin(2 * np.pi * f * tt + rng.uniform(0.5, 2.5))
        )
        cable(a, rng.uniform(100.0, 3000.0) * w / (np.abs(w).max() + 1e-12), "tap", 0.0)
    for _ in range(rng.poisson(spec.tugs_per_min * per_min)):
        dur = rng.uniform(0.2, 1.5)
        a = place(dur)
        if a is None:
            continue
        k = int(dur * fs)
        w = np.hanning(k) ** rng.uniform(1.0, 3.0)
        cable(a, rng.uniform(200.0, 5000.0) * w, "tug", rng.uniform(0.02, 0.1))
    for _ in range(rng.poisson(spec.sway_per_min * per_min)):
        dur = rng.uniform(4.0, 15.0)
        a = place(dur)
        if a is None:
            continue
        tt = np.arange(int(dur * fs)) / fs
        f = rng.uniform(0.7, 1.2)
        ph = 2 * np.pi * f * tt
        amp = rng.uniform(50.0, 800.0) * (1.0 + 0.3 * rng.standard_normal(int(dur * f) + 2))
        w = amp[(f * tt).astype(int)] * np.sin(ph) * np.hanning(tt.size) ** 0.3
        cable(a, w, "sway", rng.uniform(0.05, 0.2))

    # ---- spasms: in and around the artefacts, and controls
    kinds = ["twitch", "phasic", "phasic", "clonus", "tonic"]

    def add_spasm(t0: float, ch: int, near: str, kind: str | None = None, dur: float | None = None) -> float:
        kind = kind or str(rng.choice(kinds[:4] if near != "clear" else kinds))
        shape, freq = drive_shape(rng, kind, fs)
        if dur is not None:  # the same shape stretched to ``dur`` (placed to end before a lead-off)
            shape = np.interp(np.linspace(0.0, shape.size - 1.0, int(dur * fs)), np.arange(shape.size), shape)
        i0 = int(t0 * fs)
        if i0 + shape.size + int(0.1 * fs) >= n:
            return t0
        amp = math.exp(rng.uniform(math.log(spec.peak_uv[0]), math.log(spec.peak_uv[1])))
        pad = int(0.05 * fs)
        dd = np.concatenate([np.zeros(pad), shape, np.zeros(pad)])
        e = muap_emg(rng, pools[ch], dd, fs)
        pk = dd >= 0.8 * dd.max()
        e *= amp / (np.sqrt(np.mean(e[pk] ** 2)) + 1e-12)
        lo = i0 - pad
        muscle[lo : lo + dd.size, ch] += e[: n - lo]
        on, off = _label_span(shape, 0.1)
        labels.append({"type": kind, "channel": f"EMG {ch + 1}", "onset_s": (i0 + on) / fs,
                       "offset_s": (i0 + off) / fs, "frequency_hz": freq, "peak_uv": amp,
                       "rest_uv": float(rest[ch]), "near": near})  # fmt: skip
        _limb_motion(rng, shape, i0, fs, fa, move, kind)
        return (i0 + shape.size) / fs

    for ch, a, _off, on, settle_end in lead_offs:
        r = rng.random()
        if r < 0.45:  # in the settling window
            add_spasm(on + rng.uniform(0.6, 3.0), ch, "settling")
        elif r < 0.75:  # just after it
            add_spasm(on + rng.uniform(3.0, 8.0), ch, "after settling")
        if rng.random() < 0.4:  # ending 0.7-4 s before the electrode starts coming off
            kind = "twitch" if rng.random() < 0.5 else "phasic"
            dur = rng.uniform(0.1, 0.4) if kind == "twitch" else rng.uniform(0.6, 3.0)
            add_spasm(max(1.0, a - dur - rng.uniform(0.7, 4.0)), ch, "before lead-off", kind, dur)
        _ = settle_end
    for lab in [x for x in labels if x["type"] == "motion"]:
        if rng.random() < 0.35:  # during cable motion, on one channel
            t0 = lab["onset_s"] + rng.uniform(0.0, max(0.05, lab["offset_s"] - lab["onset_s"] - 0.3))
            add_spasm(
                t0, int(rng.integers(0, nch)), "during motion", "twitch" if rng.random() < 0.5 else "phasic"
            )
    t = rng.uniform(3.0, 10.0)
    while t < spec.duration_s - 45.0:
        ch = int(rng.integers(0, nch))
        if free(t - 2.0, t + 42.0, ch):
            end = add_spasm(t, ch, "clear")
            busy.append((t - 2.0, end + 2.0, ch))
            t = end
        t += 2.0 + rng.exponential(60.0 / spec.spasms_per_min)

    # ---- assemble: muscle x contact + noise x gain + hum x gain + artefacts; then the off spans
    emg = muscle * contact
    hum_amp = spec.mains_uv * rng.uniform(0.5, 1.5, nch)
    clean, dist = _mains(rng, t_all, spec.mains_hz)
    for c in range(nch):
        noise = rest[c] * (rng.standard_normal(n) + rng.uniform(0.5, 1.5) * pink_noise(rng, n))
        emg[:, c] += noise * noise_gain[:, c]
        g = hum_gain[:, c]
        # the front end distorts large hum (harmonics appear as it grows)
        mix = np.clip((g * hum_amp[c] - 200.0) / 2000.0, 0.0, 1.0)
        emg[:, c] += hum_amp[c] * g * ((1.0 - mix) * clean + mix * dist)
    emg += art
    for c, i0, i1, sig in override:
        emg[i0:i1, c] = sig
    if spec.full_scale_uv is not None:
        lsb = 2.0 * spec.full_scale_uv / 2**spec.adc_bits
        emg = np.clip(np.round(emg / lsb) * lsb, -spec.full_scale_uv, spec.full_scale_uv - lsb)
    # accelerometer: gravity, limb movement, sensor noise
    g0 = rng.normal(size=3)
    g0 /= np.linalg.norm(g0)
    acc = g0 + move + rng.normal(0.0, rng.uniform(0.002, 0.006), (m, 3))
    return UnseenRecording(
        name=spec.name, emg_rate_hz=fs, acc_rate_hz=fa, channel_labels=[f"EMG {c + 1}" for c in range(nch)],
        emg_uv=emg, acc_g=acc, labels=sorted(labels, key=lambda x: x["onset_s"]), rest_uv=[float(r) for r in rest],
    )  # fmt: skip
