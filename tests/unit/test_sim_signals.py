"""Signal synthesis of the simulated wearable: determinism, spectrum, amplitudes, labels."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from firmware_sim.scenario import Scenario, builtin_scenario, parse_scenario
from firmware_sim.signals import Recording, synthesize


def _scenario(**over: object) -> Scenario:
    base: dict[str, object] = {
        "name": "t",
        "seed": 11,
        "duration_s": 20.0,
        "emg_rate_hz": 2000,
        "acc_rate_hz": 100,
        "channels": ["EMG A", "EMG B", "EMG C"],
        "events": [
            {"type": "phasic", "channel": "EMG A", "onset_s": 2.0, "duration_s": 3.0, "peak_uv": 200.0},
            {"type": "twitch", "channel": "EMG B", "onset_s": 8.0, "duration_s": 0.2, "peak_uv": 300.0},
            {"type": "clonus", "channel": "EMG C", "onset_s": 11.0, "frequency_hz": 6.0, "cycles": 10},
            {"type": "tremor", "channel": "ACC", "onset_s": 14.0, "duration_s": 5.0, "frequency_hz": 5.0},
        ],
    }
    base.update(over)
    return parse_scenario(base)


def test_demo_shape_and_types() -> None:
    rec = synthesize(builtin_scenario("demo"))
    assert isinstance(rec, Recording)
    assert rec.emg_uv.shape == (120_000, 4) and rec.emg_uv.dtype == np.float32
    assert rec.acc_g.shape == (6_000, 3) and rec.acc_g.dtype == np.float32
    assert rec.emg_rate_hz == 2000 and rec.acc_rate_hz == 100
    assert len(rec.labels) == 9
    onsets = [lab["onset_s"] for lab in rec.labels]
    assert onsets == sorted(onsets)
    assert all(4.0 <= b - a <= 8.0 for a, b in itertools.pairwise(onsets))


def test_e2e_short_has_three_separated_phasic_spasms() -> None:
    rec = synthesize(builtin_scenario("e2e_short"))
    assert rec.emg_uv.shape == (12_000, 2)
    assert [lab["type"] for lab in rec.labels] == ["phasic"] * 3
    for a, b in zip(rec.labels, rec.labels[1:], strict=False):
        assert b["onset_s"] - a["offset_s"] >= 2.0
    assert rec.confounders == []


def test_same_seed_same_bytes() -> None:
    sc = _scenario(
        confounders=[{"kind": "mains"}, {"kind": "electrode_pop", "channel": "EMG A", "onset_s": 6.0}]
    )
    a, b = synthesize(sc), synthesize(sc)
    assert a.emg_uv.tobytes() == b.emg_uv.tobytes()
    assert a.acc_g.tobytes() == b.acc_g.tobytes()
    assert a.labels_json() == b.labels_json()


def test_different_seed_differs() -> None:
    a, b = synthesize(_scenario(seed=1)), synthesize(_scenario(seed=2))
    assert a.emg_uv.tobytes() != b.emg_uv.tobytes()
    assert a.acc_g.tobytes() != b.acc_g.tobytes()


def test_labels_json_round_trips() -> None:
    rec = synthesize(_scenario())
    doc = json.loads(rec.labels_json())
    assert doc["schema"] == "neurospasm.sim.labels/1"
    assert doc["channels"] == ["EMG A", "EMG B", "EMG C"]
    assert [e["type"] for e in doc["events"]] == ["phasic", "twitch", "clonus", "tremor"]
    tremor = doc["events"][3]
    assert tremor["channel"] == "ACC" and tremor["frequency_hz"] == 5.0
    clonus = doc["events"][2]
    # 10 cycles at 6 Hz: 9 periods plus the last burst.
    assert 9 / 6 < clonus["offset_s"] - clonus["onset_s"] < 10 / 6 + 0.05


@pytest.mark.parametrize("rate", [500, 1024, 2000, 4000])
def test_spasm_spectrum_peaks_in_emg_band(rate: int) -> None:
    rec = synthesize(
        _scenario(
            emg_rate_hz=rate,
            events=[
                {"type": "tonic", "channel": "EMG A", "onset_s": 2.0, "duration_s": 15.0, "peak_uv": 200.0}
            ],
        )
    )
    seg = rec.emg_uv[int(4 * rate) : int(15 * rate), 0].astype(np.float64)
    f, p = sps.welch(seg, fs=rate, nperseg=rate // 4)
    assert 50.0 <= f[np.argmax(p)] <= 150.0
    in_band = p[(f >= 50) & (f <= 150)].sum() / p.sum()
    # Classic sEMG: the 50-150 Hz band holds the largest share (more than any 100 Hz band elsewhere).
    assert in_band > 0.4


def test_amplitudes_rest_and_spasm() -> None:
    rec = synthesize(_scenario())
    fs = rec.emg_rate_hz
    rest = rec.emg_uv[int(0.2 * fs) : int(1.8 * fs), 0]
    rest_rms = float(np.sqrt(np.mean(rest.astype(np.float64) ** 2)))
    assert 1.5 < rest_rms < 6.0
    spasm = rec.emg_uv[int(3.0 * fs) : int(4.0 * fs), 0]
    spasm_rms = float(np.sqrt(np.mean(spasm.astype(np.float64) ** 2)))
    assert 100.0 < spasm_rms < 300.0
    assert np.abs(rec.emg_uv).max() <= 6000.0


def test_accelerometer_gravity_and_tremor() -> None:
    rec = synthesize(_scenario())
    fa = rec.acc_rate_hz
    norm = np.linalg.norm(rec.acc_g[: int(1.5 * fa)], axis=1)
    assert np.all(np.abs(norm - 1.0) < 0.05)
    seg = rec.acc_g[int(14.5 * fa) : int(18.5 * fa)].astype(np.float64)
    seg = seg - seg.mean(axis=0)
    f, p = sps.welch(seg, fs=fa, nperseg=2 * fa, axis=0)
    assert abs(f[np.argmax(p.sum(axis=1))] - 5.0) <= 0.5


def test_plot_command_writes_png(tmp_path: Path) -> None:
    from firmware_sim.plot import main

    out = tmp_path / "img" / "e2e.png"
    labels = tmp_path / "labels.json"
    assert main(["e2e_short", "-o", str(out), "--end", "6", "--labels", str(labels)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads(labels.read_text())["events"]) == 3
    assert main(["e2e_short", "-o", str(out), "--start", "50"]) == 2  # empty window
    assert main(["no_such_scenario", "-o", str(out)]) == 2
