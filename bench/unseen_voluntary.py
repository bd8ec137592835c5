"""A second, independent generator of voluntary movement with spasms between (issue 9's honest check).

``firmware_sim`` teaches the detector's authors what walking, standing up or exercise look like; this
file models them differently, so a detector tuned to ``firmware_sim`` shows it here. It shares no code
with ``firmware_sim``: EMG is motor-unit action-potential trains under a drive (``unseen_sim``'s model),
spasm drives come from ``unseen_sim.drive_shape``, and everything below is its own model:

* **Sensor placement**: the accelerometer is on the *thigh* (firmware_sim: the shank), axes x along
  the femur, z out of the skin; channels use other names (``VL``, ``BF``, ``GM``, ``BB``, ...).
* **Gait**: stride frequency 0.55-1.0 Hz (slower, a pathological gait), stride-to-stride period CV 5 %;
  thigh angle from a two-harmonic hip flexion-extension curve; step-rate (2 x stride) vertical
  oscillation; heel strikes as 30 Hz damped oscillations. Muscle drives are von Mises bumps over the
  gait phase (concentration 3-8) at phases after Winter (1991), each muscle's timing perturbed by up
  to 5 % of the cycle per recording.
* **Sit-to-stand / stand-to-sit**: the thigh rotates 70-90 deg with a logistic profile over 1-2 s,
  a forward trunk-lean pulse; extensor drives are trapezoids with 0.3-0.7 s linear ramps, tibialis
  anterior leading by 0.1-0.2 s.
* **Cycling** (stationary, 45-75 rpm): thigh oscillates +-15-25 deg; drives are powers (1.5-3) of a
  clipped cosine of the crank angle.
* **Exercise**: repetitions (hip/knee extension against a load) every 2.5-4.5 s: knee extensors
  and calf co-activate with a raised-cosine drive over the repetition; the thigh tilts 25-45 deg.
* **Reaching** (arm channels): a Gaussian agonist drive (sigma 0.1-0.2 s) with a delayed antagonist
  burst (Hallett's triphasic pattern, smoothed), anticipatory postural bursts in the legs 50-100 ms
  earlier; the thigh sensor sees only a 0.02-0.06 g trunk sway.
* **Wheelchair propulsion**: arm push bursts at 0.6-1.1 Hz, forward surges of 0.04-0.1 g per push and
  floor vibration on the thigh sensor.

Spasms (twitch, phasic, tonic, clonus) fall at rest between activities and ~15 % during them; each
spasm jerks the limb (a 5-12 Hz low-passed drive on the accelerometer). Labels: spasms as usual,
voluntary spans as ``{"type": "voluntary", "activity": kind, "channel": "ACC", ...}`` (the scorer
ignores types it does not know, so detections inside them are false alarms).
"""

# ruff: noqa: E501
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal
from unseen_sim import UnseenRecording, drive_shape, mains_wave, make_pool, muap_emg, pink_noise

LEG = ("TA", "GM", "VL", "BF")
#: Gait phase (cycles after ipsilateral heel strike) of each muscle's bursts (Winter 1991): (phase, gain)
_GAIT = {"TA": ((0.02, 0.8), (0.75, 0.6)), "GM": ((0.42, 1.0),), "VL": ((0.05, 1.0), (0.93, 0.4)),
         "BF": ((0.88, 1.0), (0.02, 0.3)), "BB": ((0.25, 0.15), (0.75, 0.15)), "TB": ((0.0, 0.1),)}  # fmt: skip
#: Crank phase of each muscle's pedalling burst (Hug & Dorel 2009, shifted by this generator's own origin)
_PEDAL = {"TA": 0.9, "GM": 0.35, "VL": 0.1, "BF": 0.6, "BB": 0.0, "TB": 0.5}


@dataclass(frozen=True)
class VoluntarySpec:
    """One recording: rates, channels, the activities it contains and its spasm rate."""

    name: str
    seed: int
    duration_s: float
    emg_rate_hz: float
    acc_rate_hz: float
    channels: tuple[str, ...]
    activities: tuple[str, ...]
    spasms_per_min: float = 6.0
    mains_hz: float | None = 50.0
    sitting: bool = True


def _muscle(label: str) -> str:
    return label.split()[-1]


def _von_mises(phase: np.ndarray, mu: float, kappa: float) -> np.ndarray:
    return np.asarray(np.exp(kappa * (np.cos(2 * np.pi * (phase - mu)) - 1.0)))


def _cycle(rng: np.random.Generator, t: np.ndarray, f: float, cv: float) -> np.ndarray:
    """Phase in cycles at times t for a rhythm of mean frequency f with period CV ``cv``."""
    k = int(t[-1] * f) + 4 if t.size else 4
    periods = np.clip(1.0 / f * (1.0 + cv * rng.standard_normal(k)), 0.6 / f, 1.6 / f)
    bounds = np.concatenate([[0.0], np.cumsum(periods)])
    i = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, k - 1)
    return np.asarray(i + (t - bounds[i]) / periods[i])


def _trapezoid(t: np.ndarray, a: float, ramp: float, hold: float) -> np.ndarray:
    up = np.clip((t - a) / ramp, 0.0, 1.0)
    down = np.clip((a + ramp + hold + ramp - t) / ramp, 0.0, 1.0)
    return np.asarray(np.minimum(up, down))


def _rot_y(g: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Rotate gravity (3,) about the sensor's y axis by theta (k,) rad -> (k, 3)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([g[0] * c + g[2] * s, np.full_like(theta, g[1]), -g[0] * s + g[2] * c], axis=1)


def _activity(
    rng: np.random.Generator, kind: str, dur: float, spec: VoluntarySpec, gvec: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drives (n, c) in 0..1, acceleration (m, 3) in g and the gravity vector at the end."""
    fs, fa = spec.emg_rate_hz, spec.acc_rate_hz
    te, ta = np.arange(int(dur * fs)) / fs, np.arange(int(dur * fa)) / fa
    ch = [_muscle(c) for c in spec.channels]
    side = [1 if " R " in f" {c} " else 0 for c in spec.channels]
    drv = np.zeros((te.size, len(ch)))
    theta = np.zeros(ta.size)
    lin = np.zeros((ta.size, 3))
    g_end = gvec
    fade = min(1.0, dur / 4)
    env_e = np.clip(np.minimum(te, dur - te) / fade, 0, 1)
    env_a = np.clip(np.minimum(ta, dur - ta) / fade, 0, 1)
    if kind in ("walk", "cycling", "wheelchair"):
        f = {
            "walk": rng.uniform(0.55, 1.0),
            "cycling": rng.uniform(0.75, 1.25),
            "wheelchair": rng.uniform(0.6, 1.1),
        }[kind]
        seed = int(rng.integers(1 << 30))
        ph_e = _cycle(np.random.default_rng(seed), te, f, 0.05)
        ph_a = _cycle(np.random.default_rng(seed), ta, f, 0.05)
        for j, m in enumerate(ch):
            shift = 0.5 * side[j]
            if kind == "walk":
                level = rng.uniform(0.3, 0.6)
                for mu, gain in _GAIT.get(m, ((0.05, 0.5),)):
                    mu += rng.uniform(-0.05, 0.05)
                    drv[:, j] += level * gain * _von_mises(ph_e + shift, mu, rng.uniform(3, 8))
            elif kind == "cycling":
                p = rng.uniform(1.5, 3.0)
                mu = _PEDAL.get(m, 0.1) + rng.uniform(-0.04, 0.04)
                drv[:, j] += (
                    rng.uniform(0.25, 0.5) * np.clip(np.cos(2 * np.pi * (ph_e + shift - mu)), 0, 1) ** p
                )
            elif m in ("BB", "TB"):  # wheelchair push (both arms together)
                mu = 0.15 if m == "TB" else 0.6
                drv[:, j] += rng.uniform(0.3, 0.6) * _von_mises(ph_e, mu, rng.uniform(4, 8))
        drv *= env_e[:, None]
        if kind == "walk":
            a1, a2 = math.radians(rng.uniform(18, 28)), math.radians(rng.uniform(3, 7))
            theta = (a1 * np.cos(2 * np.pi * ph_a) + a2 * np.cos(4 * np.pi * ph_a + 1.0)) * env_a
            lin[:, 0] += rng.uniform(0.15, 0.3) * np.sin(4 * np.pi * ph_a) * env_a
            strike = rng.uniform(0.8, 2.0)
            for k in range(int(ph_a[-1]) + 1 if ph_a.size else 0):
                for off, gain in ((0.0, 1.0), (0.5, 0.4)):
                    hit = np.flatnonzero(ph_a >= k + off)
                    if hit.size:
                        i0 = int(hit[0])
                        tt = ta[i0 : i0 + max(2, int(0.12 * fa))] - ta[i0]
                        wave = np.exp(-tt / 0.015) * np.cos(2 * np.pi * min(30.0, 0.4 * fa) * tt)
                        lin[i0 : i0 + tt.size, 0] += strike * gain * env_a[i0] * wave
        elif kind == "cycling":
            theta = math.radians(rng.uniform(15, 25)) * np.sin(2 * np.pi * ph_a) * env_a
        else:
            surge = np.clip(np.cos(2 * np.pi * (ph_a - 0.15)), 0, 1) ** 2
            lin[:, 2] += rng.uniform(0.04, 0.1) * (surge - surge.mean()) * env_a
            lin += rng.normal(0, 0.01, lin.shape) * env_a[:, None]
    elif kind in ("sit_to_stand", "stand_to_sit"):
        t_mid, width = dur / 2, rng.uniform(1.0, 2.0)
        angle = math.radians(rng.uniform(70, 90)) * (1 if kind == "sit_to_stand" else -1)
        theta = angle / (1 + np.exp(-(ta - t_mid) / (width / 8)))
        lin[:, 2] += rng.uniform(0.08, 0.2) * np.exp(-0.5 * ((ta - t_mid + 0.3) / 0.3) ** 2)
        ramp, hold = rng.uniform(0.3, 0.7), max(0.2, width - 0.3)
        a0 = t_mid - width / 2 - ramp / 2
        for j, m in enumerate(ch):
            gain = {"VL": 0.6, "GM": 0.3, "TA": 0.5, "BF": 0.3, "BB": 0.2, "TB": 0.3}.get(m, 0.3)
            lead = rng.uniform(0.1, 0.2) if m == "TA" else 0.0
            drv[:, j] += gain * rng.uniform(0.7, 1.0) * _trapezoid(te, a0 - lead, ramp, hold)
        g_end = _rot_y(gvec, np.array([angle]))[0]
    elif kind == "exercise":
        period = rng.uniform(2.5, 4.5)
        depth = math.radians(rng.uniform(25, 45))
        reps = int((dur - 1.0) // period)
        for r in range(reps):
            a = 0.5 + r * period
            ue = np.clip((te - a) / (0.85 * period), 0, 1)
            ua = np.clip((ta - a) / (0.85 * period), 0, 1)
            bell_e = 0.5 - 0.5 * np.cos(2 * np.pi * ue)
            theta += depth * (0.5 - 0.5 * np.cos(2 * np.pi * ua))
            for j, m in enumerate(ch):
                if side[j] == 0 or m in ("VL", "GM"):
                    gain = {"VL": 0.55, "GM": 0.35, "TA": 0.2, "BF": 0.25}.get(m, 0.05)
                    drv[:, j] += gain * rng.uniform(0.85, 1.15) * bell_e
    elif kind == "reach":
        t_peak = rng.uniform(0.6, 1.0)
        sigma = rng.uniform(0.1, 0.2)
        for j, m in enumerate(ch):
            if m == "BB":
                drv[:, j] += rng.uniform(0.35, 0.6) * np.exp(-0.5 * ((te - t_peak) / sigma) ** 2)
            elif m == "TB":
                drv[:, j] += rng.uniform(0.15, 0.3) * np.exp(-0.5 * ((te - t_peak - 0.15) / sigma) ** 2)
            else:  # anticipatory postural adjustment, 50-100 ms before the focal burst
                lead = rng.uniform(0.05, 0.1)
                drv[:, j] += rng.uniform(0.08, 0.2) * np.exp(
                    -0.5 * ((te - t_peak + lead) / (1.3 * sigma)) ** 2
                )
        sway = rng.uniform(0.02, 0.06) * np.exp(-0.5 * ((ta - t_peak) / (2 * sigma)) ** 2)
        lin += np.outer(sway, rng.normal(size=3) / math.sqrt(3))
    else:
        raise ValueError(f"unseen_voluntary: unknown activity {kind!r}")
    acc = _rot_y(gvec, theta) - gvec[None, :] + lin
    return drv, acc, g_end


def generate_voluntary(spec: VoluntarySpec) -> UnseenRecording:
    """Synthesize one recording (deterministic in ``spec.seed``)."""
    rng = np.random.default_rng(spec.seed)
    fs, fa = spec.emg_rate_hz, spec.acc_rate_hz
    n, m, nch = int(spec.duration_s * fs), int(spec.duration_s * fa), len(spec.channels)
    drive = np.zeros((n, nch))
    amp = rng.uniform(150.0, 400.0, nch)  # uV RMS at full drive, per muscle
    spasm_emg = np.zeros((n, nch))
    move = np.zeros((m, 3))
    labels: list[dict[str, Any]] = []
    pools = [make_pool(rng, fs) for _ in range(nch)]
    rest = rng.uniform(1.0, 6.0, nch)
    gvec = np.array([0.0, 0.0, -1.0]) if spec.sitting else np.array([-1.0, 0.0, 0.0])
    gvec = gvec + rng.normal(0, 0.1, 3)
    gvec /= np.linalg.norm(gvec)
    grav = np.tile(gvec, (m, 1))
    # ---- activities, one after another with rest between
    t = rng.uniform(10.0, 20.0)
    spans: list[tuple[float, float]] = []
    acts = list(spec.activities)
    k = 0
    while acts:
        kind = acts[k % len(acts)]
        dur = {"walk": rng.uniform(30, 60), "cycling": rng.uniform(30, 60), "wheelchair": rng.uniform(20, 40),
               "exercise": rng.uniform(25, 45), "reach": rng.uniform(1.2, 1.8),
               "sit_to_stand": rng.uniform(2.0, 3.0), "stand_to_sit": rng.uniform(2.0, 3.0)}[kind]  # fmt: skip
        if t + dur + 5.0 > spec.duration_s:
            break
        d, a, g_end = _activity(rng, kind, dur, spec, grav[min(m - 1, int(t * fa))])
        i0, j0 = int(t * fs), int(t * fa)
        drive[i0 : i0 + d.shape[0]] += d[: n - i0]
        move[j0 : j0 + a.shape[0]] += a[: m - j0]
        if kind in ("sit_to_stand", "stand_to_sit"):
            grav[j0 + a.shape[0] :] = g_end
        labels.append(
            {"type": "voluntary", "activity": kind, "channel": "ACC", "onset_s": t, "offset_s": t + dur}
        )
        spans.append((t, t + dur))
        t += dur + rng.uniform(12.0, 35.0)
        k += 1
    # ---- spasms: Poisson, mostly at rest, ~15 % during an activity
    kinds, w = ("twitch", "phasic", "tonic", "clonus"), np.array([1.0, 1.0, 0.3, 0.8])
    t = rng.uniform(3.0, 8.0)
    while True:
        t += rng.exponential(60.0 / spec.spasms_per_min)
        kind = str(rng.choice(kinds, p=w / w.sum()))
        shape, freq = drive_shape(rng, kind, fs)
        dur = shape.size / fs
        if t + dur + 2.0 > spec.duration_s:
            break
        inside = any(a - 1.0 <= t <= b + 1.0 or a - 1.0 <= t + dur <= b + 1.0 for a, b in spans)
        if inside and rng.random() > 0.15:
            continue
        c = int(rng.integers(nch))
        i0 = int(t * fs)
        level = rng.uniform(0.5, 1.0)
        dd = shape[: n - i0] * level
        e = muap_emg(rng, pools[c], dd, fs)
        pk = dd >= 0.8 * dd.max()
        peak = math.exp(rng.uniform(math.log(60.0), math.log(700.0)))
        e *= peak / (np.sqrt(np.mean(e[pk] ** 2)) + 1e-12)
        spasm_emg[i0 : i0 + e.size, c] += e
        above = np.flatnonzero(dd >= 0.1 * dd.max())
        labels.append({"type": kind, "channel": spec.channels[c], "onset_s": (i0 + above[0]) / fs,
                       "offset_s": (i0 + above[-1]) / fs, "frequency_hz": freq})  # fmt: skip
        # the jerk a spasm gives the limb: a fast (5-12 Hz) low-passed drive, random direction
        ia, ka = int(t * fa), max(2, int(dur * fa))
        x = np.interp(np.arange(ka) / fa, np.arange(dd.size) / fs, dd)
        x = signal.sosfilt(signal.butter(2, min(rng.uniform(5, 12), 0.4 * fa), fs=fa, output="sos"), x)
        direction = rng.normal(size=3)
        kk = min(ka, m - ia)
        move[ia : ia + kk] += rng.uniform(0.05, 0.3) * x[:kk, None] * direction / np.linalg.norm(direction)
        t += dur + 1.0
    # ---- EMG: motor units under the voluntary drive, plus the spasms, noise and hum
    emg = spasm_emg
    for c in range(nch):
        dcol = np.clip(drive[:, c], 0.0, 1.0)
        if dcol.max() > 0.01:
            e = muap_emg(rng, pools[c], dcol, fs)
            # calibrate: RMS where the drive is near 0.5 is half the muscle's full-drive amplitude
            sel = (dcol > 0.4) & (dcol < 0.6)
            ref = (
                float(np.sqrt(np.mean(e[sel] ** 2)))
                if sel.sum() > 10
                else float(np.sqrt(np.mean(e**2)) + 1e-12)
            )
            emg[:, c] += e * (0.5 * amp[c] / (ref + 1e-12))
        emg[:, c] += rest[c] * (rng.standard_normal(n) + rng.uniform(0.5, 1.5) * pink_noise(rng, n))
        if spec.mains_hz:
            emg[:, c] += mains_wave(rng, n, fs, spec.mains_hz, rng.uniform(5.0, 25.0))
    acc = grav + move + rng.normal(0.0, rng.uniform(0.003, 0.008), (m, 3))
    return UnseenRecording(
        name=spec.name, emg_rate_hz=fs, acc_rate_hz=fa, channel_labels=list(spec.channels),
        emg_uv=emg, acc_g=acc, labels=labels, rest_uv=[float(r) for r in rest],
    )  # fmt: skip


_LEGS8 = ("EMG L TA", "EMG L GM", "EMG L VL", "EMG L BF", "EMG R TA", "EMG R GM", "EMG R VL", "EMG R BF")
SPECS: list[VoluntarySpec] = [
    VoluntarySpec("uv_walk_1000 (acc 50, 8 legs)", 201, 480, 1000, 50, _LEGS8,
                  ("sit_to_stand", "walk", "stand_to_sit")),
    VoluntarySpec("uv_cycle_1500 (acc 104, 6 ch, cycling + repetitions)", 202, 480, 1500, 104, _LEGS8[:3] + _LEGS8[4:7],
                  ("cycling", "exercise"), mains_hz=60.0),
    VoluntarySpec("uv_arm_1024 (acc 64, arms + legs, reach + wheelchair)", 203, 480, 1024, 64,
                  ("EMG R BB", "EMG R TB", "EMG L VL", "EMG R VL", "EMG L GM", "EMG R GM"),
                  ("reach", "reach", "wheelchair", "reach")),
    VoluntarySpec("uv_day_1500 (acc 104, 8 legs, mixed)", 204, 600, 1500, 104, _LEGS8,
                  ("sit_to_stand", "walk", "exercise", "stand_to_sit", "cycling"), mains_hz=50.0),
]  # fmt: skip
