"""The scenario library and the scenario file format: every shipped file loads and synthesizes
into labels that obey the detector's taxonomy; bad files fail with the file and key named."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from support.recordings import recording

from firmware_sim.scenario import (
    CONFOUNDER_KINDS,
    EVENT_TYPES,
    Scenario,
    ScenarioError,
    builtin_scenario,
    builtin_scenario_names,
    load_scenario,
    parse_scenario,
)
from firmware_sim.signals import MIN_GAP_S, synthesize

NAMES = builtin_scenario_names()
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "firmware_sim" / "scenarios"


def test_library_is_complete() -> None:
    required = {
        "demo",
        "e2e_short",
        "confounders_only",
        "mixed_long",
        "sci_profile",
        "parkinson_profile",
        "healthy_profile",
    }
    required |= {f"{t}_{q}" for t in EVENT_TYPES for q in ("clean", "noisy")}
    assert required <= set(NAMES)
    assert sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_shipped_scenario_loads_and_obeys_taxonomy(name: str) -> None:
    sc = builtin_scenario(name)
    assert sc.name == name, "the name inside the file must match the file name"
    rec = recording(sc)  # shared with the other tests of this process that read the same scenario
    assert rec.emg_uv.shape == (round(sc.duration_s * sc.emg_rate_hz), sc.n_channels)
    assert rec.acc_g.shape == (round(sc.duration_s * sc.acc_rate_hz), 3)
    assert np.isfinite(rec.emg_uv).all() and np.isfinite(rec.acc_g).all()
    for ev in rec.labels:
        d = ev["offset_s"] - ev["onset_s"]
        assert 0 <= ev["onset_s"] < ev["offset_s"] <= sc.duration_s + 1e-9
        assert ev["channel"] in (*sc.channels, "ACC")
        match ev["type"]:
            case "twitch":
                assert 0.05 - 1e-3 <= d <= 0.5 + 1e-3
            case "phasic":
                assert 0.5 - 1e-3 <= d <= 10 + 1e-3
            case "tonic":
                assert d > 10
            case "clonus":
                assert 3 <= ev["frequency_hz"] <= 8
                # At least 4 cycles: 3 periods plus a burst.
                assert d * ev["frequency_hz"] >= 3.3
            case "tremor":
                assert ev["channel"] == "ACC" and 3 <= ev["frequency_hz"] <= 12 and d >= 3
            case other:
                pytest.fail(f"unknown label type {other}")
    for cf in rec.confounders:
        assert cf["kind"] in CONFOUNDER_KINDS
        assert cf["channel"] in (*sc.channels, "ACC")
    # Stochastic events never overlap anything else: each label is one unambiguous episode.
    profile = [e for e in rec.labels if e["source"] == "profile"]
    spans = sorted([(e["onset_s"], e["offset_s"]) for e in rec.labels])
    if profile:
        for (_, b), (c, _) in itertools.pairwise(spans):
            assert c - b >= MIN_GAP_S - 0.01
    json.loads(rec.labels_json())


def test_profiles_generate_what_they_promise() -> None:
    sci = recording("sci_profile")
    types = {e["type"] for e in sci.labels}
    assert {"twitch", "phasic", "clonus"} <= types
    assert len(sci.labels) / (sci.duration_s / 60) > 3  # frequent spasms
    pd = recording("parkinson_profile")
    assert {e["type"] for e in pd.labels} == {"tremor"}
    assert all(4.0 <= e["frequency_hz"] <= 6.0 for e in pd.labels)  # rest tremor
    healthy = recording("healthy_profile")
    assert healthy.labels == []
    kinds = [c["kind"] for c in healthy.confounders]
    assert kinds.count("voluntary") >= 3 and "posture" in kinds


def test_profile_events_follow_the_seed() -> None:
    sc = builtin_scenario("sci_profile").model_copy(update={"duration_s": 90.0})
    other = sc.model_copy(update={"seed": sc.seed + 1})
    a, b = synthesize(sc), synthesize(other)
    assert [e["onset_s"] for e in a.labels] != [e["onset_s"] for e in b.labels]
    assert synthesize(sc).labels_json() == a.labels_json()


def test_fault_spec_is_validated_data() -> None:
    sc = builtin_scenario("faults_lossy")
    f = sc.faults
    assert f.frame_loss_rate == 0.01 and f.clock_drift_ppm == 80.0
    assert [(d.at_s, d.duration_s) for d in f.disconnects] == [(30.0, 3.0), (50.0, 1.0)]
    assert builtin_scenario("faults_reboot").faults.reboot_at_s == [10.0, 28.0]
    # Same scenario, same fault draws; and the labels carry the fault spec.
    assert sc.fault_rng().integers(0, 2**32, 4).tolist() == sc.fault_rng().integers(0, 2**32, 4).tolist()
    assert json.loads(synthesize(sc).labels_json())["faults"]["jitter_ms"] == 15.0


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    return p


HEAD = 'name = "x"\nseed = 1\nduration_s = 10.0\nchannels = ["EMG A", "EMG B"]\n'
EV = '[[events]]\ntype = "{t}"\nchannel = "{c}"\nonset_s = {o}\nduration_s = {d}\n'


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        (
            EV.format(t="phasic", c="EMG A", o=1, d=1)
            + EV.format(t="twitch", c="EMG A", o=3, d=0.2)
            + EV.format(t="spasm", c="EMG A", o=5, d=1),
            "events[2].type",
            "'twitch'",
        ),
        (EV.format(t="twitch", c="EMG A", o=1, d=2), "events[0].duration_s", "0.05-0.5"),
        (EV.format(t="tonic", c="EMG A", o=1, d=5), "events[0].duration_s", "more than 10"),
        (EV.format(t="phasic", c="EMG Z", o=1, d=1), "events[0].channel", "unknown channel 'EMG Z'"),
        (EV.format(t="phasic", c="EMG A", o=9.5, d=1), "events[0].onset_s", "after the end"),
        (
            '[[events]]\ntype = "clonus"\nchannel = "EMG A"\nonset_s = 1\nfrequency_hz = 9.0\ncycles = 6\n',
            "events[0].frequency_hz",
            "3.0-8.0 Hz",
        ),
        (
            '[[events]]\ntype = "clonus"\nchannel = "EMG A"\nonset_s = 1\ncycles = 3\n',
            "events[0].cycles",
            "at least 4",
        ),
        ('[[confounders]]\nkind = "mains"\nfrequency_hz = 55.0\n', "confounders[0].frequency_hz", "50 or 60"),
        ('[[confounders]]\nkind = "hum"\n', "confounders[0].kind", "'ecg'"),
        ("[faults]\nreboot_at_s = [20.0]\n", "faults.reboot_at_s[0]", "after the end"),
        ("[faults]\ndisconnects = [{ at_s = 1.0 }]\n", "faults.disconnects[0].duration_s", "required"),
        ("[faults]\nframe_loss_rate = 1.5\n", "faults.frame_loss_rate", "less than 1"),
        ("emg_rate_hz = 100\n", "emg_rate_hz", "500"),
        ("acc_rate_hz = 1000\n", "acc_rate_hz", "400"),
        ("onse_s = 3\n", "onse_s", "unknown key"),
    ],
)
def test_bad_scenario_names_file_and_key(tmp_path: Path, body: str, key: str, words: str) -> None:
    p = _write(tmp_path, HEAD + body)
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    msg = str(info.value)
    assert f"{p}: {key}: " in msg
    assert words in msg


def test_bad_toml_syntax_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, HEAD + "[[events]\n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML: .*line 5"):
        load_scenario(p)


def test_missing_file_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"nope\.toml: cannot read"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match=r"no built-in scenario 'nope'.*demo"):
        builtin_scenario("nope")


def test_scenario_is_frozen_and_roundtrips() -> None:
    sc = builtin_scenario("demo")
    assert isinstance(sc, Scenario)
    with pytest.raises(ValueError, match="frozen"):
        sc.seed = 3  # type: ignore[misc]
    assert parse_scenario(sc.model_dump()) == sc
