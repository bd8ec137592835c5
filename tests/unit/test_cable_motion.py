"""Cable motion shared by every lead (issue 9): one movement of the cable reaches all channels at
once (``firmware_sim``'s ``cable_motion`` with ``channel = "*"``), knocks and swings with most
of their energy below ~20 Hz (De Luca et al., J Biomech 2010). None of it is a spasm, on any
channel; spasms among it are still found.

The independent generator (``bench/bench_unseen_rest.py``) scores the same with its own
taps, tugs and sway at walking cadence.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from detectors import DetectorConfig, SpasmDetector, SpasmEvent
from detectors.detector import feed_interleaved
from detectors.scoring import score
from firmware_sim import scenario, signals

CHANNELS = ["EMG L quad", "EMG L hamstring", "EMG L TA", "EMG L gastroc"]


def _scenario(seed: int, amplitude_uv: float) -> signals.Recording:
    sc = scenario.parse_scenario(
        {
            "name": "ci_cable",
            "seed": seed,
            "duration_s": 240.0,
            "emg_rate_hz": 1000,
            "acc_rate_hz": 50,
            "channels": CHANNELS,
            "profile": {"kind": "sci", "events_per_min": 6.0, "voluntary_per_min": 0.0},
            "confounders": [
                {"kind": "mains", "frequency_hz": 50.0, "amplitude_uv": 5.0},
                {
                    "kind": "cable_motion",
                    "channel": "*",
                    "onset_s": 10.0,
                    "duration_s": 220.0,
                    "count": 40,
                    "amplitude_uv": amplitude_uv,
                },
            ],
        },
        "ci_cable",
    )
    return signals.synthesize(sc)


def test_a_shared_cable_moves_every_channel_with_one_waveform() -> None:
    rec = _scenario(31, 3000.0)
    motion = [x for x in rec.confounders if x["kind"] == "cable_motion"]
    assert {x["channel"] for x in motion} == set(CHANNELS)
    assert len(motion) == 40 * len(CHANNELS)
    emg = np.asarray(rec.emg_uv, dtype=np.float64)
    sos = signal.butter(2, 20.0, fs=1000.0, output="sos")  # the artefact's band
    low = signal.sosfiltfilt(sos, emg, axis=0)
    first = motion[0]
    a, b = int(first["onset_s"] * 1000), int(first["offset_s"] * 1000)
    r = np.corrcoef(low[a:b].T)
    assert np.all(np.abs(r) > 0.9)  # the same movement on all leads (gain and sign their own)


def test_shared_cable_motion_is_no_spasm_on_any_channel() -> None:
    for seed, amp in ((31, 500.0), (32, 3000.0), (33, 3000.0)):
        rec = _scenario(seed, amp)
        det = SpasmDetector(
            DetectorConfig(), emg_rate_hz=1000.0, channel_labels=list(rec.channel_labels), acc_rate_hz=50.0
        )
        out = feed_interleaved(det, np.asarray(rec.emg_uv), np.asarray(rec.acc_g), 1000.0, 50.0)
        rep = score([o for o in out if isinstance(o, SpasmEvent)], rec.labels, rec.duration_s)
        assert rep.n_labels >= 3
        assert rep.false_alarms == 0, rep.false
        assert rep.sensitivity == 1.0, rep.missed
