"""Signal synthesis for the simulated wearable: sEMG, accelerometer and ground-truth labels.

Model, in one paragraph (docs/simulator.md has the pictures): each EMG channel is a unit-RMS
Gaussian carrier whose spectrum follows the classic surface-EMG shape (second-order high-pass at
~40 Hz times a second-order low-pass at ~150 Hz: peak near 80 Hz, median frequency ~110 Hz, most
power within 50-150 Hz), amplitude-modulated by an RMS envelope in microvolts: a few uV at rest plus
the envelopes of the spasms and voluntary contractions. Neighbouring channels leak a small fraction
into each other (cross-talk). Confounders (mains, ECG, cable motion, electrode pops, wander,
lead-off, saturation) are added per electrode afterwards, then everything clips at the ADC rails.
The accelerometer carries gravity in the current posture's orientation, posture changes, the
jerk of each spasm and voluntary movement, tremor oscillation and a little sensor noise.

Why spectrally shaped noise rather than motor-unit action potential trains: the detector works on
band-passed RMS envelopes and spectra; a Gaussian carrier with the right spectrum gives those exact
statistics at a cost of one IIR filter per channel, so a 10-minute 8-channel 2 kHz scenario takes
well under a second.

Determinism: every random draw comes from ``numpy.random.default_rng([seed, stream, ...])`` with a
fixed stream id per component, so the same scenario gives byte-identical arrays and labels, and
adding a confounder does not reshuffle the noise of the signal under it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

from firmware_sim.scenario import (
    CLONUS_MIN_CYCLES,
    ConfounderSpec,
    Scenario,
)

__all__ = ["LABELS_SCHEMA", "Recording", "synthesize"]

#: Version tag of the JSON written by :meth:`Recording.labels_json`.
LABELS_SCHEMA = "neurospasm.sim.labels/1"

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

# Stream ids for default_rng([seed, STREAM, ...]): never renumber (it would change every scenario).
_S_CARRIER = 1
_S_AMPNOISE = 2
_S_EVENT = 3
_S_CONF = 4
_S_PROFILE = 5
_S_ACC = 6
_S_POSTURE = 7

#: sEMG spectrum corners (Hz): 2nd-order high-pass x 2nd-order low-pass.
EMG_HP_HZ = 40.0
EMG_LP_HZ = 150.0
#: Share of the resting level that is white amplifier noise (the rest is resting muscle tone).
AMP_NOISE_SHARE = 0.35
ACC_NOISE_G = 0.004
#: Minimum quiet time kept between stochastic events, so each label is one unambiguous episode.
MIN_GAP_S = 1.5

#: Gravity direction (the accelerometer's at-rest reading, in g) per posture, sensor on the thigh:
#: x along the thigh (distal), y lateral, z out of the skin (anterior).
POSTURE_G: dict[str, tuple[float, float, float]] = {
    "standing": (-1.0, 0.0, 0.05),
    "sitting": (-0.15, 0.0, 0.99),
    "supine": (0.0, 0.0, 1.0),
    "prone": (0.0, 0.0, -1.0),
    "left_side": (0.0, 1.0, 0.0),
    "right_side": (0.0, -1.0, 0.0),
}


@dataclass
class Recording:
    """A synthesized recording: arrays in physical units plus the ground truth.

    ``emg_uv`` is (n, n_channels) float32 microvolts, already clipped at ``emg_full_scale_uv``;
    ``acc_g`` is (m, 3) float32 in g. ``labels`` are the spasm events the detector must find;
    ``confounders`` what it must not report (including voluntary movement), each a plain dict
    (schema in docs/simulator.md). ``faults`` is the scenario's fault spec as a dict: the device
    applies it, this module does not.
    """

    emg_uv: F32
    acc_g: F32
    emg_rate_hz: int
    acc_rate_hz: int
    channel_labels: list[str]
    labels: list[dict[str, Any]]
    scenario_name: str
    seed: int
    confounders: list[dict[str, Any]] = field(default_factory=list)
    emg_full_scale_uv: float = 6000.0
    acc_full_scale_g: float = 8.0
    faults: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.emg_uv.shape[0] / self.emg_rate_hz

    def lead_off_intervals(self, channel: str) -> list[tuple[float, float]]:
        """(onset_s, offset_s) stretches when ``channel``'s electrode has no skin contact."""
        return [
            (c["onset_s"], c["offset_s"])
            for c in self.confounders
            if c["kind"] == "lead_off" and c["channel"] == channel
        ]

    def labels_json(self, indent: int | None = 2) -> str:
        """Ground truth as JSON (schema ``neurospasm.sim.labels/1``), deterministic byte for byte."""
        doc = {
            "schema": LABELS_SCHEMA,
            "scenario": self.scenario_name,
            "seed": self.seed,
            "duration_s": round(self.duration_s, 6),
            "emg_rate_hz": self.emg_rate_hz,
            "acc_rate_hz": self.acc_rate_hz,
            "channels": list(self.channel_labels),
            "emg_full_scale_uv": self.emg_full_scale_uv,
            "acc_full_scale_g": self.acc_full_scale_g,
            "events": self.labels,
            "confounders": self.confounders,
            "faults": self.faults,
        }
        return json.dumps(doc, indent=indent, sort_keys=False)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def emg_sos(rate_hz: float, hp_hz: float = EMG_HP_HZ, lp_hz: float = EMG_LP_HZ) -> F64:
    """Second-order sections shaping white noise into a surface-EMG spectrum, unit RMS output.

    Analog prototype s^2 / ((s + wl)^2 (s + wh)^2) (a 2nd-order high-pass times a 2nd-order
    low-pass), bilinear-transformed with the corners pre-warped, then scaled so that unit-variance
    white noise in gives unit-variance EMG out (the envelope then *is* the RMS in uV).
    """
    lp_hz = min(lp_hz, 0.4 * rate_hz)
    wl = 2 * rate_hz * math.tan(math.pi * hp_hz / rate_hz)
    wh = 2 * rate_hz * math.tan(math.pi * lp_hz / rate_hz)
    z, p, k = sps.bilinear_zpk([0.0, 0.0], [-wl, -wl, -wh, -wh], 1.0, rate_hz)
    sos: F64 = sps.zpk2sos(z, p, k)
    impulse = np.zeros(int(rate_hz) * 2)
    impulse[0] = 1.0
    h = sps.sosfilt(sos, impulse)
    sos[0, :3] /= math.sqrt(float(np.sum(h * h)))
    return sos


def _lowpass_noise(rng: np.random.Generator, n: int, rate_hz: float, cutoff_hz: float) -> F64:
    """Unit-RMS Gaussian noise low-passed at ``cutoff_hz`` (slow fluctuations, motion artefacts)."""
    if n == 0:
        return np.zeros(0)
    cutoff = min(cutoff_hz, 0.45 * rate_hz)
    pad = int(rate_hz / cutoff) * 2
    sos = sps.butter(2, cutoff, fs=rate_hz, output="sos")
    x = sps.sosfilt(sos, rng.standard_normal(n + pad))[pad:]
    s = float(np.std(x))
    out: F64 = x / s if s > 0 else x
    return out


def _ramp(n: int) -> F64:
    """Raised-cosine ramp 0 -> 1 over ``n`` samples (a smooth, realistic recruitment)."""
    if n <= 0:
        return np.zeros(0)
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _hann_burst(n: int) -> F64:
    return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2 if n > 0 else np.zeros(0)


# --------------------------------------------------------------------------------------------
# Spasm envelopes (RMS, normalised to peak 1; segment starts at onset)
# --------------------------------------------------------------------------------------------


def _env_twitch(rng: np.random.Generator, n: int) -> F64:
    # A myoclonic jerk: fast recruitment (first ~25 %), slower decay; sometimes a second peak.
    rise = max(2, int(n * rng.uniform(0.15, 0.35)))
    env = np.concatenate([_ramp(rise), _ramp(n - rise)[::-1]])
    if rng.random() < 0.3 and n > 40:
        k = int(n * rng.uniform(0.45, 0.65))
        env[k:] = np.maximum(env[k:], 0.6 * _hann_burst(n - k))
    return env


def _env_sustained(rng: np.random.Generator, n: int, rate: float, tonic: bool) -> F64:
    # Phasic/tonic: ramp up, a plateau that wobbles (recruitment changes, 0.5-3 Hz) and, when
    # tonic, fatigues; ramp down. Ramp times scale with duration but stay physiological.
    d = n / rate
    up_s = rng.uniform(0.08, 0.25) if not tonic else rng.uniform(0.3, 1.0)
    dn_s = rng.uniform(0.15, 0.4) if not tonic else rng.uniform(0.5, 1.5)
    scale = min(1.0, 0.6 * d / (up_s + dn_s))
    up, dn = max(2, int(up_s * scale * rate)), max(2, int(dn_s * scale * rate))
    plateau = max(0, n - up - dn)
    env = np.concatenate([_ramp(up), np.ones(plateau), _ramp(n - up - plateau)[::-1]])
    wobble = 1.0 + 0.12 * _lowpass_noise(rng, n, rate, 2.0)
    if tonic:
        wobble *= np.linspace(1.0, rng.uniform(0.65, 0.85), n)
    env *= np.clip(wobble, 0.5, 1.5)
    return env / max(float(env.max()), 1e-9)


def _clonus_bursts(rng: np.random.Generator, cycles: int, freq: float, rate: float) -> tuple[F64, float]:
    """Rhythmic bursts at ``freq`` (period jitter ~2 %); returns (envelope, duration in s)."""
    period = 1.0 / freq
    starts = np.cumsum(np.r_[0.0, period * (1 + 0.02 * rng.standard_normal(cycles - 1))])
    width = period * rng.uniform(0.35, 0.5)
    total = float(starts[-1] + width)
    n = max(1, round(total * rate))
    env = np.zeros(n)
    bw = max(3, round(width * rate))
    amps = np.clip(1.0 + 0.15 * rng.standard_normal(cycles), 0.6, 1.3)
    # Clonus often builds over the first cycles and fades at the end.
    amps *= np.minimum(1.0, 0.6 + 0.2 * np.arange(cycles))
    for s, a in zip(starts, amps, strict=True):
        i = round(s * rate)
        seg = env[i : i + bw]
        seg[:] = np.maximum(seg, a * _hann_burst(bw)[: len(seg)])
    return env / max(float(env.max()), 1e-9), total


# --------------------------------------------------------------------------------------------
# Planning: scripted + profile events on one timeline
# --------------------------------------------------------------------------------------------


@dataclass
class _Planned:
    type: str
    channel: str
    onset_s: float
    duration_s: float
    peak_uv: float
    frequency_hz: float | None
    acc_g: float
    cycles: int | None
    source: str
    index: int  # per-event RNG sub-stream


_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Spinal cord injury: frequent spasms and clonus (Thomas et al. 2014: unit, tonic, clonus, mixed).
    "sci": {
        "events": 6.0,
        "voluntary": 0.3,
        "posture": 4.0,
        "mix": {"twitch": 0.3, "phasic": 0.4, "clonus": 0.2, "tonic": 0.1},
    },
    # Parkinson's disease: rest tremor episodes at 4-6 Hz, some voluntary movement.
    "parkinson": {"events": 1.0, "voluntary": 1.0, "posture": 6.0, "mix": {"tremor": 1.0}},
    # Healthy wearer: nothing the detector should report.
    "healthy": {"events": 0.0, "voluntary": 2.0, "posture": 10.0, "mix": {"phasic": 1.0}},
    "none": {"events": 0.0, "voluntary": 0.0, "posture": 0.0, "mix": {"phasic": 1.0}},
}


class _Timeline:
    """Occupied stretches of time; stochastic items only go where nothing else happens."""

    def __init__(self) -> None:
        self.busy: list[tuple[float, float]] = []

    def add(self, a: float, b: float) -> None:
        self.busy.append((a, b))

    def place(self, t: float, d: float, end: float, gap: float = MIN_GAP_S) -> float | None:
        """Earliest start >= ``t`` where ``d`` seconds fit with ``gap`` to everything else (or None).

        Deferring rather than dropping keeps the realised rate close to the profile's rate.
        """
        while t + d <= end:
            clash = [e for s, e in self.busy if not (t + d + gap <= s or t >= e + gap)]
            if not clash:
                return t
            t = max(clash) + gap
        return None


def _draw_event(rng: np.random.Generator, kind: str, sc: Scenario, chans: list[str]) -> dict[str, Any]:
    lo, hi = sc.profile.peak_uv
    peak = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    ch = chans[int(rng.integers(len(chans)))]
    ev: dict[str, Any] = {
        "type": kind,
        "channel": ch,
        "peak_uv": peak,
        "frequency_hz": None,
        "acc_g": float(rng.uniform(0.05, 0.3)),
        "cycles": None,
    }
    if kind == "twitch":
        ev["duration_s"] = float(rng.uniform(0.08, 0.45))
    elif kind == "phasic":
        ev["duration_s"] = float(np.clip(rng.lognormal(math.log(2.0), 0.6), 0.6, 9.0))
    elif kind == "tonic":
        ev["duration_s"] = float(rng.uniform(12.0, 40.0))
    elif kind == "clonus":
        f = float(rng.uniform(3.8, 7.0))  # ankle/knee clonus, Wallace 2005; Hidler & Rymer
        ev["frequency_hz"] = f
        ev["cycles"] = int(rng.integers(5, 30))
        ev["duration_s"] = ev["cycles"] / f
    else:  # tremor: weak EMG, the movement is on the accelerometer
        # Parkinsonian rest tremor is 4-6 Hz; otherwise (essential, physiological-enhanced) 3.5-11 Hz.
        lo_f, hi_f = (4.0, 6.0) if sc.profile.kind == "parkinson" else (3.5, 11.0)
        ev["frequency_hz"] = float(rng.uniform(lo_f, hi_f))
        ev["duration_s"] = float(rng.uniform(4.0, 30.0))
        ev["peak_uv"] = float(rng.uniform(5.0, 10.0))
        ev["channel"] = "ACC"
    return ev


def _plan(sc: Scenario) -> tuple[list[_Planned], list[ConfounderSpec]]:
    """Scripted events and confounders, plus the profile's stochastic ones, on one timeline."""
    timeline = _Timeline()
    planned: list[_Planned] = []
    for i, ev in enumerate(sc.events):
        d = ev.effective_duration_s
        peak = ev.peak_uv
        if ev.type == "tremor" and "peak_uv" not in ev.model_fields_set:
            peak = 8.0  # tremor comes with weak EMG unless told otherwise
        planned.append(
            _Planned(
                ev.type, ev.channel, ev.onset_s, d, peak, ev.frequency_hz, ev.acc_g, ev.cycles, "scripted", i
            )
        )
        timeline.add(ev.onset_s, ev.onset_s + d)
    confs = list(sc.confounders)
    for cf in confs:
        # Scripted transient confounders keep stochastic events off them: each label stays one
        # unambiguous thing. Whole-recording ones (no onset: mains, ECG, wander) do not.
        if cf.onset_s is not None:
            timeline.add(cf.onset_s, cf.onset_s + (cf.duration_s or 5.0))
    for act_spec in sc.activities:  # voluntary activities: stochastic spasms go between them
        timeline.add(act_spec.onset_s, act_spec.onset_s + act_spec.effective_duration_s)

    prof = sc.profile
    defaults = _PROFILE_DEFAULTS[prof.kind]
    rate = prof.events_per_min if prof.events_per_min is not None else defaults["events"]
    vrate = prof.voluntary_per_min if prof.voluntary_per_min is not None else defaults["voluntary"]
    prate = (
        prof.posture_changes_per_hour if prof.posture_changes_per_hour is not None else defaults["posture"]
    )
    mix: dict[str, float] = {str(k): v for k, v in (prof.mix or defaults["mix"]).items()}
    chans = list(prof.channels) if prof.channels is not None else list(sc.channels)
    kinds = sorted(k for k, w in mix.items() if w > 0)
    weights = np.array([mix[k] for k in kinds], dtype=float)
    weights /= weights.sum()
    rng = _rng(sc.seed, _S_PROFILE)
    end = sc.duration_s - 0.5

    # Three Poisson processes (spasms, voluntary movement, posture changes), merged in time order.
    arrivals: list[tuple[float, str]] = []
    for what, per_min in (("event", rate), ("voluntary", vrate), ("posture", prate / 60.0)):
        if per_min <= 0:
            continue
        t = prof.start_s
        while True:
            t += float(rng.exponential(60.0 / per_min))
            if t >= end:
                break
            arrivals.append((t, what))
    arrivals.sort()
    k = len(sc.events)
    for t, what in arrivals:
        if what == "event":
            kind = kinds[int(rng.choice(len(kinds), p=weights))]
            drawn = _draw_event(rng, kind, sc, chans)
            at = timeline.place(t, drawn["duration_s"], end)
            if at is None:
                continue
            t = at
            planned.append(
                _Planned(
                    kind,
                    drawn["channel"],
                    t,
                    drawn["duration_s"],
                    drawn["peak_uv"],
                    drawn["frequency_hz"],
                    drawn["acc_g"],
                    drawn["cycles"],
                    "profile",
                    k,
                )
            )
            k += 1
            timeline.add(t, t + drawn["duration_s"])
        elif what == "voluntary":
            d = float(rng.uniform(1.0, 4.0))
            ch = chans[int(rng.integers(len(chans)))]
            amp = float(rng.uniform(60.0, 300.0))
            at = timeline.place(t, d, end)
            if at is None:
                continue
            t = at
            confs.append(
                ConfounderSpec(kind="voluntary", channel=ch, onset_s=t, duration_s=d, amplitude_uv=amp)
            )
            timeline.add(t, t + d)
        else:
            d = float(rng.uniform(1.5, 3.0))
            target = str(rng.choice(sorted(POSTURE_G)))
            at = timeline.place(t, d, end, gap=1.0)
            if at is None:
                continue
            t = at
            confs.append(
                ConfounderSpec.model_validate(
                    {"kind": "posture", "channel": "ACC", "onset_s": t, "duration_s": d, "posture": target}
                )
            )
            timeline.add(t, t + d)
    planned.sort(key=lambda p: (p.onset_s, p.channel))
    return planned, confs


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------


def _to_acc(x: F64, emg_rate: int, acc_rate: int, m: int) -> F64:
    """Sample an EMG-rate envelope at the accelerometer rate (nearest sample; envelopes are smooth)."""
    idx = np.minimum((np.arange(m) * emg_rate) // acc_rate, len(x) - 1)
    out: F64 = x[idx]
    return out


def _unit(v: F64) -> F64:
    out: F64 = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


def synthesize(scenario: Scenario) -> Recording:
    """Turn a scenario into arrays and labels. Deterministic: same scenario, same bytes."""
    sc = scenario
    fs, fa = sc.emg_rate_hz, sc.acc_rate_hz
    n = round(sc.duration_s * fs)
    m = round(sc.duration_s * fa)
    nch = sc.n_channels
    ch_index = {c: i for i, c in enumerate(sc.channels)}
    planned, confs = _plan(sc)

    # Activity envelope (RMS uV above rest) per channel, and the accelerometer's movement (g).
    # Channel-major memory ((nch, n) viewed as (n, nch)): every per-channel addition below reads
    # and writes one contiguous run instead of striding through all channels (the values are the
    # same for any layout: only element-wise operations touch these arrays).
    act = np.zeros((nch, n)).T
    move = np.zeros((m, 3))
    labels: list[dict[str, Any]] = []
    for p in planned:
        rng = _rng(sc.seed, _S_EVENT, p.index, 0 if p.source == "scripted" else 1)
        i0 = round(p.onset_s * fs)
        freq = p.frequency_hz
        if p.type == "twitch":
            env = _env_twitch(rng, max(4, round(p.duration_s * fs)))
        elif p.type in ("phasic", "tonic"):
            env = _env_sustained(rng, max(4, round(p.duration_s * fs)), fs, tonic=p.type == "tonic")
        elif p.type == "clonus":
            assert freq is not None
            cycles = p.cycles if p.cycles is not None else max(CLONUS_MIN_CYCLES, int(p.duration_s * freq))
            env, _ = _clonus_bursts(rng, cycles, freq, fs)
        else:
            env = np.zeros(0)
        env = env[: n - i0]
        onset = i0 / fs
        offset = (i0 + len(env)) / fs
        peak = p.peak_uv
        direction = _unit(rng.standard_normal(3))
        if p.type == "tremor":
            assert freq is not None
            offset = min(p.onset_s + p.duration_s, sc.duration_s)
            peak = _add_tremor(rng, sc, p, act, move, ch_index, freq)
        else:
            ci = ch_index[p.channel]
            act[i0 : i0 + len(env), ci] += p.peak_uv * env
            # The limb moves with the contraction: clonus shakes at its own rhythm, others jerk.
            a0, a1 = round(onset * fa), min(m, round(offset * fa) + 1)
            if a1 > a0:
                e_acc = _to_acc(env, fs, fa, a1 - a0 + 0) if len(env) else np.zeros(a1 - a0)
                e_acc = e_acc[: a1 - a0]
                shake = (
                    e_acc - np.mean(e_acc)
                    if p.type == "clonus"
                    else e_acc * _lowpass_noise(rng, a1 - a0, fa, 4.0)
                )
                move[a0 : a0 + len(shake)] += (
                    np.outer(shake, direction) * p.acc_g * min(2.0, p.peak_uv / 200.0)
                )
        labels.append(
            {
                "type": p.type,
                "channel": "ACC" if p.type == "tremor" else p.channel,
                "onset_s": round(onset, 6),
                "offset_s": round(offset, 6),
                "frequency_hz": None if freq is None else round(freq, 4),
                "peak_uv": round(float(peak), 3),
                "source": p.source,
            }
        )

    # Voluntary contractions shape the activity envelope too (they are EMG the wearer means).
    conf_labels: list[dict[str, Any]] = []
    for j, cf in enumerate(confs):
        if cf.kind == "voluntary":
            conf_labels += _add_voluntary(_rng(sc.seed, _S_CONF, j), sc, cf, act, move, ch_index)
    grav = _gravity(sc, confs, m)
    for j in range(len(sc.activities)):
        conf_labels.append(_add_activity(_rng(sc.seed, _S_ACTIVITY, j), sc, j, act, move, grav))

    # EMG = shaped carrier x (rest tone + activity) + white amplifier noise; then cross-talk.
    # In place where an array is not needed any more: a 40-minute day is ~230 MB per array, and
    # every fresh one costs its page faults (the values are those of the plain expressions).
    carrier = _rng(sc.seed, _S_CARRIER).standard_normal((n, nch))
    sos = emg_sos(fs)
    carrier = sps.sosfilt(sos, carrier, axis=0)
    tone = sc.rest_uv * math.sqrt(1 - AMP_NOISE_SHARE**2)
    act += tone
    emg = np.multiply(carrier, act, out=carrier)  # carrier * (tone + act); sosfilt's output is channel-major
    del act
    if sc.crosstalk > 0 and nch > 1:
        leak = np.zeros_like(emg)
        leak[:, 1:] += emg[:, :-1]
        leak[:, :-1] += emg[:, 1:]
        leak *= sc.crosstalk
        emg += leak  # emg += crosstalk * leak
        del leak
    noise = _rng(sc.seed, _S_AMPNOISE).standard_normal((n, nch))
    noise *= sc.rest_uv * AMP_NOISE_SHARE
    emg += noise
    del noise

    # Accelerometer: gravity in the posture's orientation, movement, noise.
    acc = grav + move + _rng(sc.seed, _S_ACC).standard_normal((m, 3)) * ACC_NOISE_G

    # Confounders on the electrodes (after cross-talk: they are electrode-local).
    for j, cf in enumerate(confs):
        if cf.kind in ("voluntary",):
            continue
        conf_labels += _add_confounder(_rng(sc.seed, _S_CONF, j), sc, cf, emg, acc, ch_index)

    fsu = sc.emg_full_scale_uv
    np.clip(emg, -fsu, fsu, out=emg)
    np.clip(acc, -sc.acc_full_scale_g, sc.acc_full_scale_g, out=acc)
    conf_labels.sort(key=lambda c: (c["onset_s"], c["kind"], c["channel"]))
    return Recording(
        emg_uv=emg.astype(np.float32, order="C"),  # sample-major, as the device reads it
        acc_g=acc.astype(np.float32),
        emg_rate_hz=fs,
        acc_rate_hz=fa,
        channel_labels=list(sc.channels),
        labels=labels,
        scenario_name=sc.name,
        seed=sc.seed,
        confounders=conf_labels,
        emg_full_scale_uv=sc.emg_full_scale_uv,
        acc_full_scale_g=sc.acc_full_scale_g,
        faults=sc.faults.model_dump(mode="json"),
    )


def _add_tremor(
    rng: np.random.Generator,
    sc: Scenario,
    p: _Planned,
    act: F64,
    move: F64,
    ch_index: dict[str, int],
    freq: float,
) -> float:
    """Rest tremor: accelerometer oscillation at ``freq`` (slow amplitude and frequency wander,
    a little 2nd harmonic) and weak EMG bursts alternating between antagonist channels."""
    fs, fa = sc.emg_rate_hz, sc.acc_rate_hz
    a0 = round(p.onset_s * fa)
    a1 = min(move.shape[0], round((p.onset_s + p.duration_s) * fa))
    k = a1 - a0
    t = np.arange(k) / fa
    inst_f = freq * (1 + 0.02 * _lowpass_noise(rng, k, fa, 0.3))
    phase = 2 * np.pi * np.cumsum(inst_f) / fa + rng.uniform(0, 2 * np.pi)
    amp = p.acc_g * np.clip(1 + 0.2 * _lowpass_noise(rng, k, fa, 0.5), 0.4, 1.6)
    taper = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.3) if k > 1 else np.ones(k)
    wave = amp * taper * (np.sin(phase) + 0.15 * np.sin(2 * phase))
    direction = _unit(np.array([0.3, 0.2, 1.0]) + 0.3 * rng.standard_normal(3))
    move[a0:a1] += np.outer(wave, direction)
    # Weak EMG bursts at the tremor rhythm: on the given channel, or alternating on channels 0/1.
    i0 = round(p.onset_s * fs)
    i1 = min(act.shape[0], round((p.onset_s + p.duration_s) * fs))
    te = np.arange(i1 - i0) / fs
    ph = np.interp(te, t, phase) if k > 1 else np.zeros(i1 - i0)
    taper_e = np.minimum(1.0, np.minimum(te, te[-1] - te) / 0.3) if i1 - i0 > 1 else np.ones(i1 - i0)
    burst = np.clip(np.sin(ph), 0, None) ** 2 * taper_e
    anti = np.clip(-np.sin(ph), 0, None) ** 2 * taper_e
    if p.channel in ch_index:
        act[i0:i1, ch_index[p.channel]] += p.peak_uv * burst
    else:
        act[i0:i1, 0] += p.peak_uv * burst
        if act.shape[1] > 1:
            act[i0:i1, 1] += p.peak_uv * anti
    return p.peak_uv


def _interval(sc: Scenario, cf: ConfounderSpec, default_s: float | None) -> tuple[float, float]:
    """(onset, offset) of a confounder; missing onset -> 0, missing duration -> default or to the end."""
    a = cf.onset_s if cf.onset_s is not None else 0.0
    if cf.duration_s is not None:
        d = cf.duration_s
    elif cf.onset_s is None or default_s is None:
        d = sc.duration_s - a
    else:
        d = default_s
    return a, min(sc.duration_s, a + d)


def _targets(sc: Scenario, cf: ConfounderSpec, ch_index: dict[str, int]) -> list[tuple[str, int]]:
    if cf.channel in ("*", "ACC"):
        return [(c, i) for c, i in ch_index.items()]
    return [(cf.channel, ch_index[cf.channel])]


def _conf_label(kind: str, channel: str, a: float, b: float, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind, "channel": channel, "onset_s": round(a, 6), "offset_s": round(b, 6)}
    d.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()})
    return d


def _add_voluntary(
    rng: np.random.Generator, sc: Scenario, cf: ConfounderSpec, act: F64, move: F64, ch_index: dict[str, int]
) -> list[dict[str, Any]]:
    """A deliberate movement: agonist contraction with some antagonist co-activation, slower
    ramps than a spasm, and a large low-frequency limb movement on the accelerometer."""
    fs, fa = sc.emg_rate_hz, sc.acc_rate_hz
    a, b = _interval(sc, cf, 2.0)
    amp = cf.amplitude_uv or 150.0
    i0, i1 = round(a * fs), round(b * fs)
    nn = i1 - i0
    ramp = min(nn // 3, int(rng.uniform(0.3, 0.6) * fs))
    env = np.concatenate([_ramp(ramp), np.ones(nn - 2 * ramp), _ramp(ramp)[::-1]])
    env *= np.clip(1 + 0.1 * _lowpass_noise(rng, nn, fs, 1.5), 0.6, 1.4)
    chans = _targets(sc, cf, ch_index)
    labels = []
    if cf.channel == "*":
        chans = chans[:1]
    for c, i in chans:
        act[i0:i1, i] += amp * env
        labels.append(_conf_label("voluntary", c, a, b, amplitude_uv=amp))
        # Antagonist co-activation at 20-40 %.
        j = i + 1 if i + 1 < act.shape[1] else i - 1
        if 0 <= j != i:
            act[i0:i1, j] += amp * rng.uniform(0.2, 0.4) * env
    a0, a1 = round(a * fa), min(move.shape[0], round(b * fa))
    if a1 > a0:
        t = np.arange(a1 - a0) / fa
        f = rng.uniform(0.4, 1.2)
        swing = np.sin(2 * np.pi * f * t) * _hann_burst(a1 - a0) * rng.uniform(0.2, 0.6)
        move[a0:a1] += np.outer(swing, _unit(rng.standard_normal(3)))
    return labels


def _gravity(sc: Scenario, confs: list[ConfounderSpec], m: int) -> F64:
    """Gravity in the sensor frame over time: the start posture, then each posture change as a
    smooth rotation (slerp-like, renormalised linear blend) with a small random tilt per posture."""
    rng = _rng(sc.seed, _S_POSTURE)
    fa = sc.acc_rate_hz

    def vec(name: str) -> F64:
        return _unit(np.asarray(POSTURE_G[name], dtype=float) + 0.12 * rng.standard_normal(3))

    g = np.empty((m, 3))
    cur = vec(sc.posture)
    t_prev = 0
    # (onset, duration, posture, minimum-jerk?): confounders blend with a raised cosine, the
    # activities' sit-to-stand / stand-to-sit with the minimum-jerk profile of purposeful movement
    changes = [
        (c.onset_s or 0.0, c.duration_s or 2.0, str(c.posture), False) for c in confs if c.kind == "posture"
    ]
    changes += [(t, d, p, True) for t, d, p in activity_posture_changes(sc)]
    changes.sort(key=lambda c: c[0])
    for onset, dur, posture, jerk in changes:
        a0 = min(m, round(onset * fa))
        a1 = min(m, a0 + max(1, round(dur * fa)))
        g[t_prev:a0] = cur
        new = vec(posture)
        k = a1 - a0
        w = (_min_jerk((np.arange(k) + 0.5) / max(k, 1)) if jerk else _ramp(k))[:, None]
        blend = (1 - w) * cur + w * new
        g[a0:a1] = blend / np.linalg.norm(blend, axis=1, keepdims=True)
        cur, t_prev = new, a1
    g[t_prev:] = cur
    return g


def _add_confounder(
    rng: np.random.Generator, sc: Scenario, cf: ConfounderSpec, emg: F64, acc: F64, ch_index: dict[str, int]
) -> list[dict[str, Any]]:
    """Add one confounder to the electrode signals (or the accelerometer) and return its labels."""
    fs, fa = sc.emg_rate_hz, sc.acc_rate_hz
    n = emg.shape[0]
    kind = cf.kind
    out: list[dict[str, Any]] = []
    if kind == "posture":
        a, b = _interval(sc, cf, 2.0)
        # Gravity is handled in _gravity; here only the bump of moving the body.
        a0, a1 = round(a * fa), min(acc.shape[0], round(b * fa))
        if a1 > a0:
            acc[a0:a1] += np.outer(
                _hann_burst(a1 - a0) * _lowpass_noise(rng, a1 - a0, fa, 3.0) * 0.1,
                _unit(rng.standard_normal(3)),
            )
        return [_conf_label("posture", "ACC", a, b, posture=cf.posture)]

    if kind == "mains":
        a, b = _interval(sc, cf, None)
        f0 = cf.frequency_hz or 50.0
        amp = cf.amplitude_uv or 20.0
        i0, i1 = round(a * fs), round(b * fs)
        # Fundamental plus odd harmonics (transformer and rectifier distortion), only below
        # Nyquist. sin(wt + p) = cos(p) sin(wt) + sin(p) cos(wt): one sin/cos basis for all channels.
        harmonics = [(h, rel) for h, rel in ((1, 1.0), (3, 0.3), (5, 0.12)) if h * f0 < 0.5 * fs]
        t = np.arange(i0, i1) / fs
        basis = np.empty((i1 - i0, 2 * len(harmonics)))
        for k, (h, _) in enumerate(harmonics):
            basis[:, 2 * k] = np.sin(2 * np.pi * h * f0 * t)
            basis[:, 2 * k + 1] = np.cos(2 * np.pi * h * f0 * t)
        for c, i in _targets(sc, cf, ch_index):
            gain = rng.uniform(0.6, 1.0)
            ph = rng.uniform(0, 2 * np.pi, 3)
            w = np.zeros(basis.shape[1])
            for k, (_, rel) in enumerate(harmonics):
                w[2 * k], w[2 * k + 1] = rel * np.cos(ph[k]), rel * np.sin(ph[k])
            emg[i0:i1, i] += basis @ (amp * gain * w)
            out.append(_conf_label("mains", c, a, b, frequency_hz=f0, amplitude_uv=amp * gain))
        return out

    if kind == "ecg":
        a, b = _interval(sc, cf, None)
        hr = cf.frequency_hz or rng.uniform(1.0, 1.4)
        amp = cf.amplitude_uv or 60.0
        i0, i1 = round(a * fs), round(b * fs)
        beat = _ecg_beat(fs)
        train = np.zeros(i1 - i0 + len(beat))
        tb = float(rng.uniform(0, 1 / hr))
        while tb * fs < i1 - i0:
            k = round(tb * fs)
            train[k : k + len(beat)] += beat
            tb += (1 / hr) * (1 + 0.04 * float(rng.standard_normal()))
        train = train[: i1 - i0]
        for rank, (c, i) in enumerate(_targets(sc, cf, ch_index)):
            gain = 1.0 if cf.channel != "*" else 0.8**rank
            emg[i0:i1, i] += amp * gain * train
            out.append(_conf_label("ecg", c, a, b, frequency_hz=hr, amplitude_uv=amp * gain))
        return out

    if kind == "baseline_wander":
        a, b = _interval(sc, cf, None)
        amp = cf.amplitude_uv or 150.0
        i0, i1 = round(a * fs), round(b * fs)
        # Sub-hertz: computed on a 100 Hz grid and interpolated (exact enough, 20x cheaper at 2 kHz).
        t = np.arange(i1 - i0) / fs
        tg = np.arange(0.0, (i1 - i0) / fs + 0.02, 0.01)
        for c, i in _targets(sc, cf, ch_index):
            f = cf.frequency_hz or rng.uniform(0.15, 0.4)  # respiration-like
            x = np.sin(2 * np.pi * f * tg + rng.uniform(0, 2 * np.pi))
            x += 0.5 * np.sin(2 * np.pi * rng.uniform(0.03, 0.08) * tg + rng.uniform(0, 2 * np.pi))
            emg[i0:i1, i] += np.interp(t, tg, amp * x / 1.5)
            out.append(_conf_label("baseline_wander", c, a, b, amplitude_uv=amp))
        return out

    if kind in ("cable_motion", "electrode_pop"):
        a, b = _interval(sc, cf, 5.0 if cf.count > 1 else (1.0 if kind == "cable_motion" else 0.5))
        if kind == "cable_motion" and cf.channel == "*" and len(ch_index) > 1:
            # one cable carries every lead: each movement reaches all channels at once
            times = [a] if cf.count == 1 else sorted(rng.uniform(a, max(a, b - 0.5), cf.count).tolist())
            for t0 in times:
                out.extend(_shared_cable(rng, sc, cf, emg, acc, ch_index, t0, b))
            return out
        for c, i in _targets(sc, cf, ch_index) if cf.channel != "*" else list(ch_index.items())[:1]:
            times = [a] if cf.count == 1 else sorted(rng.uniform(a, max(a, b - 0.5), cf.count).tolist())
            for t0 in times:
                out.append(_artefact(rng, sc, kind, cf, emg, acc, c, i, t0, b))
        return out

    if kind == "lead_off":
        # A floating input: no EMG any more, large mains pick-up and drift. The device also clears
        # the channel's contact bit (firmware_sim.device reads these labels).
        a, b = _interval(sc, cf, 5.0)
        for c, i in _targets(sc, cf, ch_index):
            i0, i1 = round(a * fs), min(n, round(b * fs))
            t = np.arange(i1 - i0) / fs
            amp = cf.amplitude_uv or 0.4 * sc.emg_full_scale_uv
            f0 = cf.frequency_hz or 50.0
            drift = 0.3 * sc.emg_full_scale_uv * _lowpass_noise(rng, i1 - i0, fs, 0.5)
            emg[i0:i1, i] = amp * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.3)) + drift
            out.append(_conf_label("lead_off", c, a, b))
        return out

    if kind == "saturation":
        # Amplifier overload: a huge slow excursion that rails at the ADC full scale (clipping later).
        a, b = _interval(sc, cf, 1.0)
        for c, i in _targets(sc, cf, ch_index) if cf.channel != "*" else list(ch_index.items())[:1]:
            i0, i1 = round(a * fs), min(n, round(b * fs))
            amp = cf.amplitude_uv or 3.0 * sc.emg_full_scale_uv
            x = _lowpass_noise(rng, i1 - i0, fs, 3.0)
            x = np.sign(x) * np.maximum(np.abs(x), 0.5)
            emg[i0:i1, i] += amp * x * np.minimum(1.0, _hann_burst(i1 - i0) * 4)
            out.append(_conf_label("saturation", c, a, b))
        return out
    raise AssertionError(f"unhandled confounder kind {kind}")  # pragma: no cover - Literal is exhaustive


def _ecg_beat(fs: int) -> F64:
    """One PQRST complex (unit R wave) as a sum of Gaussians, ~0.7 s long."""
    t = np.arange(round(0.7 * fs)) / fs - 0.25
    waves = (
        (-0.2, 0.025, 0.12),
        (-0.03, 0.008, -0.15),
        (0.0, 0.009, 1.0),
        (0.03, 0.01, -0.3),
        (0.25, 0.045, 0.3),
    )
    x = np.zeros_like(t)
    for mu, sd, h in waves:
        x += h * np.exp(-0.5 * ((t - mu) / sd) ** 2)
    return x


def _artefact(
    rng: np.random.Generator,
    sc: Scenario,
    kind: str,
    cf: ConfounderSpec,
    emg: F64,
    acc: F64,
    channel: str,
    ci: int,
    t0: float,
    t_end: float,
) -> dict[str, Any]:
    fs, fa = sc.emg_rate_hz, sc.acc_rate_hz
    n = emg.shape[0]
    i0 = min(n - 1, round(t0 * fs))
    if kind == "electrode_pop":
        # Sudden change of the electrode-skin half-cell potential: step, then exponential recovery.
        amp = (cf.amplitude_uv or 800.0) * rng.uniform(0.7, 1.0) * (1 if rng.random() < 0.5 else -1)
        tau = rng.uniform(0.05, 0.3)
        k = min(n - i0, round(5 * tau * fs))
        emg[i0 : i0 + k, ci] += amp * np.exp(-np.arange(k) / (tau * fs))
        return _conf_label("electrode_pop", channel, i0 / fs, (i0 + k) / fs, amplitude_uv=abs(amp))
    # Cable motion: large, mostly < 20 Hz, a bump of 0.3-1.5 s; the body moves a little too.
    dur = min(rng.uniform(0.3, 1.5), max(0.1, t_end - t0)) if cf.count > 1 else max(0.1, t_end - t0)
    k = min(n - i0, max(4, round(dur * fs)))
    amp = (cf.amplitude_uv or 300.0) * rng.uniform(0.6, 1.0)
    x = _lowpass_noise(rng, k, fs, rng.uniform(4.0, 15.0)) * _hann_burst(k)
    emg[i0 : i0 + k, ci] += amp * x / max(float(np.max(np.abs(x))), 1e-9)
    a0 = round(t0 * fa)
    ka = min(acc.shape[0] - a0, max(1, round(k / fs * fa)))
    if ka > 0:
        acc[a0 : a0 + ka] += np.outer(_hann_burst(ka) * 0.03, _unit(rng.standard_normal(3)))
    return _conf_label("cable_motion", channel, i0 / fs, (i0 + k) / fs, amplitude_uv=amp)


def _shared_cable(
    rng: np.random.Generator,
    sc: Scenario,
    cf: ConfounderSpec,
    emg: F64,
    acc: F64,
    ch_index: dict[str, int],
    t0: float,
    t_end: float,
) -> list[dict[str, Any]]:
    """Motion of a cable shared by every lead (``channel = "*"``): one waveform on all channels.

    Movement artefact keeps most of its energy below ~20 Hz (De Luca, Gilmore, Kuznetsov & Roy,
    J Biomech 2010): the cable's flexing moves triboelectric charge and the electrodes' double
    layers, and every lead of one cable feels the same movement, each through its own coupling
    (gain 0.3-1, either sign) within a few milliseconds. Half the movements are a *knock* (a tap
    on the cable or an electrode: a fast rise, 3-20 ms, then a damped 2-12 Hz ring, 0.2-1 s), half
    a *swing* (smooth low-passed motion, 4-15 Hz, 0.3-1.5 s, as ``cable_motion`` on one channel).
    The knock's edge is what makes the band-pass and mains notches ring; the detector must see
    neither as a spasm. The limb moves a little with a swing (the accelerometer), barely with a knock.
    """
    fs, fa = sc.emg_rate_hz, sc.acc_rate_hz
    n = emg.shape[0]
    i0 = min(n - 1, round(t0 * fs))
    amp = (cf.amplitude_uv or 300.0) * rng.uniform(0.6, 1.0)
    knock = bool(rng.random() < 0.5)
    dur = min(rng.uniform(0.2, 1.0) if knock else rng.uniform(0.3, 1.5), max(0.1, t_end - t0))
    k = min(n - i0, max(4, round(dur * fs)))
    if knock:
        tt = np.arange(k) / fs
        rise, f = rng.uniform(0.003, 0.02), rng.uniform(2.0, 12.0)
        x = (
            (1.0 - np.exp(-tt / rise))
            * np.exp(-tt / (dur / 4.0))
            * np.sin(2 * np.pi * f * tt + rng.uniform(0.5, 2.5))
        )
    else:
        x = _lowpass_noise(rng, k, fs, rng.uniform(4.0, 15.0)) * _hann_burst(k)
    x = amp * x / max(float(np.max(np.abs(x))), 1e-9)
    out = []
    for c, i in ch_index.items():
        gain = rng.uniform(0.3, 1.0) * (1.0 if rng.random() < 0.5 else -1.0)
        j0 = min(n, i0 + round(rng.uniform(0.0, 0.005) * fs))
        kk = min(k, n - j0)
        emg[j0 : j0 + kk, i] += gain * x[:kk]
        out.append(_conf_label("cable_motion", c, j0 / fs, (j0 + kk) / fs, amplitude_uv=amp * abs(gain)))
    a0 = round(t0 * fa)
    ka = min(acc.shape[0] - a0, max(1, round(k / fs * fa)))
    if ka > 0 and not knock:
        acc[a0 : a0 + ka] += np.outer(_hann_burst(ka) * 0.03, _unit(rng.standard_normal(3)))
    return out


# --------------------------------------------------------------------------------------------
# Voluntary activities (issue 9): walking, posture transitions, reaching/lifting, cycling,
# physiotherapy exercise, wheelchair propulsion, transfers
# --------------------------------------------------------------------------------------------

#: Muscle groups recognised from channel labels (first match wins; hamstring before arm so that
#: "biceps femoris" is a hamstring).
_MUSCLE_NAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ta", ("tib", "dorsiflex", " ta")),
    ("gastroc", ("gastroc", "calf", "soleus", "surae")),
    ("ham", ("ham", "biceps fem", "semiten", "semimem")),
    ("quad", ("quad", "vastus", "rect", "femoris")),
    ("glut", ("glut",)),
    ("arm", ("bicep", "tricep", "delt", "forearm", "arm", "pector", "wrist", "flexor carpi")),
    ("trunk", ("abdom", "erector", "paraspin", "back", "trunk")),
)

#: Gait-phase activation of each group, phase 0 = ipsilateral heel strike: (centre, width, gain)
#: raised-cosine bumps. After Winter (1991) and Perry (1992): tibialis anterior at loading (foot
#: lowering) and through swing (foot clearance); gastrocnemius/soleus in mid-late stance (push
#: off); quadriceps at loading response and terminal swing; hamstrings in terminal swing (braking
#: the shank) into loading; gluteus at loading. Channels of no known group get a quadriceps-like
#: pattern; arms swing lightly.
_GAIT: dict[str, tuple[tuple[float, float, float], ...]] = {
    "ta": ((0.03, 0.16, 0.7), (0.78, 0.40, 1.0)),
    "gastroc": ((0.38, 0.34, 1.0),),
    "quad": ((0.06, 0.22, 1.0), (0.95, 0.12, 0.4)),
    "ham": ((0.90, 0.24, 1.0), (0.05, 0.12, 0.4)),
    "glut": ((0.05, 0.24, 1.0),),
    "arm": ((0.25, 0.3, 0.15), (0.75, 0.3, 0.15)),
    "trunk": ((0.05, 0.2, 0.4), (0.55, 0.2, 0.4)),
    "other": ((0.06, 0.22, 1.0), (0.95, 0.12, 0.4)),
}
_GAIT_GAIN = {"ta": 0.8, "gastroc": 1.0, "quad": 0.7, "ham": 0.6, "glut": 0.5, "arm": 1.0, "trunk": 0.5}
#: Pedalling (Hug & Dorel 2009): knee extensors in the down-stroke, hamstrings in the up-stroke.
_CYCLE: dict[str, tuple[tuple[float, float, float], ...]] = {
    "quad": ((0.15, 0.40, 1.0),),
    "glut": ((0.18, 0.35, 0.6),),
    "ham": ((0.60, 0.40, 0.7),),
    "gastroc": ((0.35, 0.35, 0.6),),
    "ta": ((0.85, 0.35, 0.5),),
    "arm": ((0.0, 0.5, 0.05),),
    "trunk": ((0.15, 0.4, 0.2), (0.65, 0.4, 0.2)),
    "other": ((0.15, 0.40, 1.0),),
}
_S_ACTIVITY = 8


def _muscle(label: str) -> str:
    low = " " + label.lower()
    for group, names in _MUSCLE_NAMES:
        if any(nm in low for nm in names):
            return group
    return "other"


def _side(label: str) -> int:
    """0 for the left (instrumented) leg or an unsided channel, 1 for the right."""
    tokens = [t for t in label.lower().replace("_", " ").replace("-", " ").split() if t]
    return 1 if ("r" in tokens or "right" in tokens) else 0


def _bumps(phase: F64, bumps: tuple[tuple[float, float, float], ...]) -> F64:
    """Sum of raised-cosine bumps over a cyclic phase (in cycles)."""
    out = np.zeros_like(phase)
    for c, w, g in bumps:
        d = (phase - c + 0.5) % 1.0 - 0.5
        inside = np.abs(d) < w / 2
        out[inside] += g * 0.5 * (1 + np.cos(2 * np.pi * d[inside] / w))
    return out


def _min_jerk(tau: F64) -> F64:
    """Minimum-jerk position profile 0 -> 1 (Flash & Hogan 1985), tau clipped to [0, 1]."""
    t = np.clip(tau, 0.0, 1.0)
    out: F64 = 10 * t**3 - 15 * t**4 + 6 * t**5
    return out


def _min_jerk_acc(tau: F64) -> F64:
    """Second derivative of the minimum-jerk profile (per unit duration squared), 0 outside [0, 1]."""
    t = np.clip(tau, 0.0, 1.0)
    out: F64 = (60 * t - 180 * t**2 + 120 * t**3) * ((tau >= 0) & (tau <= 1))
    return out


def _bell(t: F64, centre: float, width: float) -> F64:
    """Smooth unimodal activation (the minimum-jerk speed profile), peak 1 at ``centre``."""
    tau = (t - centre) / width + 0.5
    inside = (tau > 0) & (tau < 1)
    out = np.zeros_like(t)
    out[inside] = 16.0 * tau[inside] ** 2 * (1 - tau[inside]) ** 2
    return out


def _rotate_y(g: F64, theta: F64) -> F64:
    """Rotate gravity vectors (k, 3) about the sensor's lateral (y) axis by ``theta`` (k,) rad."""
    c, s = np.cos(theta), np.sin(theta)
    out = np.empty_like(g)
    out[:, 0] = g[:, 0] * c + g[:, 2] * s
    out[:, 1] = g[:, 1]
    out[:, 2] = -g[:, 0] * s + g[:, 2] * c
    return out


def _cycle_phase(rng: np.random.Generator, dur: float, f0: float, t: F64) -> tuple[F64, F64]:
    """Cyclic phase (in cycles) at times ``t`` with 3 % cycle-to-cycle period jitter, and the
    amplitude of the cycle each time falls in (+-12 %)."""
    k = int(dur * f0) + 4
    periods = np.clip((1.0 / f0) * (1 + 0.03 * rng.standard_normal(k)), 0.5 / f0, 2.0 / f0)
    bounds = np.concatenate([[0.0], np.cumsum(periods)])
    amps = np.clip(1 + 0.12 * rng.standard_normal(k + 1), 0.6, 1.4)
    idx = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, k - 1)
    phase = idx + (t - bounds[idx]) / periods[idx]
    return phase, amps[idx]


def activity_posture_changes(sc: Scenario) -> list[tuple[float, float, str]]:
    """(onset_s, duration_s, target posture) of the activities that change posture."""
    out = []
    for a in sc.activities:
        d = a.effective_duration_s
        if a.kind == "sit_to_stand":
            out.append((a.onset_s + 0.2 * d, 0.7 * d, "standing"))
        elif a.kind == "stand_to_sit":
            out.append((a.onset_s + 0.1 * d, 0.7 * d, "sitting"))
    return out


def _add_activity(
    rng: np.random.Generator,
    sc: Scenario,
    index: int,
    act: F64,
    move: F64,
    grav: F64,
) -> dict[str, Any]:
    """Add one voluntary activity's EMG envelopes (``act``) and movement (``move``, in g, using the
    current gravity ``grav`` for limb tilts); return its label (a ``voluntary`` confounder)."""
    spec = sc.activities[index]
    fs, fa = sc.emg_rate_hz, sc.acc_rate_hz
    n, m = act.shape[0], move.shape[0]
    a = spec.onset_s
    dur = spec.effective_duration_s
    b = min(sc.duration_s, a + dur)
    i0, i1 = round(a * fs), min(n, round(b * fs))
    j0, j1 = round(a * fa), min(m, round(b * fa))
    te = np.arange(i1 - i0) / fs
    ta = np.arange(j1 - j0) / fa
    amp = spec.intensity_uv * float(rng.uniform(0.85, 1.15))
    groups = [(_muscle(c), _side(c)) for c in sc.channels]
    f0 = spec.effective_cadence_hz
    kind = spec.kind
    g0 = grav[j0:j1]
    # start/stop over about one cycle (or 0.3 s): people speed up into and slow out of a rhythm
    ramp_s = 0.3 if f0 is None else min(1.0 / f0, dur / 4)
    taper_e = np.clip(np.minimum(te, te[-1] - te) / ramp_s, 0, 1) if te.size > 1 else np.ones(te.size)
    taper_a = np.clip(np.minimum(ta, ta[-1] - ta) / ramp_s, 0, 1) if ta.size > 1 else np.ones(ta.size)
    tilt = np.zeros(j1 - j0)
    dyn = np.zeros((j1 - j0, 3))
    if kind in ("walk", "cycling", "exercise", "wheelchair"):
        assert f0 is not None
        f = f0 * float(rng.uniform(0.92, 1.08))
        ph_e, amp_e = _cycle_phase(_rng(sc.seed, _S_ACTIVITY, index, 1), dur, f, te)
        ph_a, _ = _cycle_phase(_rng(sc.seed, _S_ACTIVITY, index, 1), dur, f, ta)
        table = _CYCLE if kind == "cycling" else _GAIT
        for ci, (grp, side) in enumerate(groups):
            bumps: tuple[tuple[float, float, float], ...]
            if kind == "wheelchair":
                # push phase (0-0.4 of the cycle) for the arms; the legs only ride along
                bumps = ((0.2, 0.4, 1.0), (0.7, 0.3, 0.3)) if grp == "arm" else ((0.2, 0.4, 0.02),)
                gain = 1.0
            elif kind == "exercise":
                # repeated knee extension against a load, on the instrumented (left) leg
                if side != 0:
                    continue
                bumps = {
                    "quad": ((0.35, 0.55, 1.0),),
                    "ham": ((0.35, 0.55, 0.2),),
                    "ta": ((0.3, 0.5, 0.4),),
                    "other": ((0.35, 0.55, 1.0),),
                }.get(grp, ((0.35, 0.55, 0.15),))
                gain = 1.0
            else:
                bumps = table.get(grp, table["other"])
                gain = _GAIT_GAIN.get(grp, 0.7) if kind == "walk" else 1.0
            env = _bumps(ph_e + 0.5 * side, bumps)
            act[i0:i1, ci] += amp * gain * env * amp_e * taper_e
        if kind == "walk":
            # the instrumented leg swings (+-20 deg about the lateral axis) and strikes the ground
            tilt = 0.35 * np.sin(2 * np.pi * (ph_a - 0.55)) * taper_a
            dyn[:, 2] += 0.25 * np.sin(2 * np.pi * ph_a) * taper_a
            strikes: list[tuple[float, float]] = []
            k_max = int(ph_a[-1]) + 1 if ph_a.size else 0
            for k in range(k_max):
                for off, gain in ((0.0, 1.0), (0.5, 0.25)):
                    hit = np.flatnonzero(ph_a >= k + off)
                    if hit.size:
                        strikes.append((float(ta[hit[0]]), gain))
            peak = float(rng.uniform(1.2, 2.5))
            for t_h, gain in strikes:
                lo = math.floor(t_h * fa)
                hi = min(j1 - j0, lo + max(2, round(0.15 * fa)))
                if lo >= hi:
                    continue
                dt = ta[lo:hi] - t_h
                wave = np.exp(-np.abs(dt) / 0.02) * np.cos(2 * np.pi * 18 * dt)
                s = float(np.interp(t_h, ta, taper_a)) if ta.size > 1 else 1.0
                dyn[lo:hi, 0] += peak * gain * s * wave
        elif kind == "cycling":
            tilt = 0.3 * np.sin(2 * np.pi * ph_a) * taper_a
            dyn[:, 0] += 0.12 * np.cos(2 * np.pi * ph_a) * taper_a
            dyn[:, 2] += 0.12 * np.sin(2 * np.pi * ph_a) * taper_a
        elif kind == "exercise":
            tilt = -1.0 * _bumps(ph_a, ((0.35, 0.6, 1.0),)) * taper_a
        else:  # wheelchair: a forward surge per push, rolling resistance between; floor jolts
            surge = _bumps(ph_a, ((0.2, 0.4, 1.0),))
            surge = (surge - surge.mean()) * 0.08 * taper_a
            dyn[:, 0] += surge
            n_jolts = int(rng.poisson(0.2 * dur))
            for t_j in rng.uniform(0, max(dur - 0.2, 0.01), n_jolts).tolist():
                lo = round(t_j * fa)
                hi = min(j1 - j0, lo + max(2, round(0.1 * fa)))
                dyn[lo:hi, 2] += 0.15 * np.exp(-(ta[lo:hi] - t_j) / 0.02)
    else:
        # discrete movements: graded EMG bells (rises over hundreds of ms) and minimum-jerk kinematics
        plan: dict[str, tuple[float, float, float]]  # group -> (centre fraction, width fraction, gain)
        if kind == "sit_to_stand":
            plan = {"ta": (0.3, 0.5, 0.6), "quad": (0.45, 0.6, 1.0), "glut": (0.5, 0.6, 0.7),
                    "ham": (0.5, 0.6, 0.5), "gastroc": (0.7, 0.5, 0.3), "arm": (0.3, 0.4, 0.5),
                    "trunk": (0.35, 0.5, 0.5), "other": (0.45, 0.6, 1.0)}  # fmt: skip
            dyn[:, 2] += 0.1 * _min_jerk_acc((ta - 0.2 * dur) / (0.7 * dur)) / 5.77
        elif kind == "stand_to_sit":
            plan = {"ta": (0.35, 0.5, 0.5), "quad": (0.55, 0.8, 0.6), "glut": (0.55, 0.7, 0.4),
                    "ham": (0.5, 0.6, 0.4), "gastroc": (0.4, 0.5, 0.2), "arm": (0.7, 0.3, 0.3),
                    "trunk": (0.5, 0.6, 0.4), "other": (0.55, 0.8, 0.6)}  # fmt: skip
            dyn[:, 2] -= 0.08 * _min_jerk_acc((ta - 0.1 * dur) / (0.7 * dur)) / 5.77
            k = round(0.8 * dur * fa)
            if k < j1 - j0:
                hi = min(j1 - j0, k + max(2, round(0.12 * fa)))
                dyn[k:hi, 0] += 0.3 * np.exp(-(ta[k:hi] - ta[k]) / 0.03)
        elif kind in ("reach", "lift"):
            out_s = min(0.8, dur / 2)
            plan = {"arm": (out_s / 2 / dur, out_s / dur, 1.0), "trunk": (0.3, 0.5, 0.5),
                    "gastroc": (0.25, 0.4, 0.3), "ta": (0.2, 0.4, 0.3), "quad": (0.3, 0.5, 0.2),
                    "ham": (0.3, 0.5, 0.25), "glut": (0.3, 0.5, 0.2), "other": (0.3, 0.5, 0.25)}  # fmt: skip
            direction = _unit(rng.standard_normal(3))
            reach_m = float(rng.uniform(0.2, 0.5))
            prof = _min_jerk_acc(ta / out_s) - _min_jerk_acc((ta - (dur - out_s)) / out_s)
            dyn += np.outer(prof * reach_m / out_s**2 / 9.81, direction)
            if kind == "lift":
                # the load is held: sustained, graded co-activation between lifting and lowering
                lift_up = _min_jerk((ta - 0.0) / out_s) * (1 - _min_jerk((ta - (dur - out_s)) / out_s))
                tilt = 0.45 * lift_up
        else:  # transfer: push up on the arms, lean, pivot, sit down
            plan = {"arm": (0.4, 0.5, 1.0), "quad": (0.45, 0.5, 0.5), "glut": (0.45, 0.5, 0.4),
                    "ta": (0.3, 0.4, 0.3), "trunk": (0.4, 0.6, 0.7), "ham": (0.45, 0.5, 0.3),
                    "gastroc": (0.5, 0.4, 0.2), "other": (0.45, 0.5, 0.5)}  # fmt: skip
            lean = _min_jerk((ta - 0.1 * dur) / (0.35 * dur)) * (
                1 - _min_jerk((ta - 0.55 * dur) / (0.35 * dur))
            )
            tilt = 0.6 * lean
            side_m = float(rng.uniform(0.3, 0.6))
            dyn[:, 1] += side_m / (0.4 * dur) ** 2 * _min_jerk_acc((ta - 0.3 * dur) / (0.4 * dur)) / 9.81
            k = round(0.9 * dur * fa)
            if k < j1 - j0:
                hi = min(j1 - j0, k + max(2, round(0.12 * fa)))
                dyn[k:hi, 0] += 0.3 * np.exp(-(ta[k:hi] - ta[k]) / 0.03)
        for ci, (grp, _) in enumerate(groups):
            c, w, g = plan.get(grp, plan["other"])
            env = _bell(te, c * dur, w * dur) * g
            if kind == "lift" and grp != "arm":
                out_s = min(0.8, dur / 2)
                hold = (te > out_s) & (te < dur - out_s)
                env = np.maximum(
                    env, 0.5 * g * hold * np.clip(np.minimum(te - out_s, dur - out_s - te) / 0.3, 0, 1)
                )
            env *= np.clip(1 + 0.08 * _lowpass_noise(rng, te.size, fs, 2.0), 0.7, 1.3)
            act[i0:i1, ci] += amp * env
    if j1 > j0:
        move[j0:j1] += (_rotate_y(g0, tilt) - g0) + dyn
    extra: dict[str, Any] = {"activity": kind, "amplitude_uv": amp}
    if f0 is not None:
        extra["cadence_hz"] = f0
    return _conf_label("voluntary", "ACC", a, b, **extra)
