"""Captures (lossless, crash-tolerant) and the EDF+ export, read back by MNE and pyedflib."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest

from firmware_sim.device import SignalSource
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.commands.cli import main as cli_main
from ingest.commands.record import decode_source, record_sim, simulate_scenario, write_sim
from ingest.files.recording import (
    DATA,
    DOWN,
    RECORD_HEADER_BYTES,
    UP,
    CaptureError,
    CaptureReader,
    CaptureWriter,
    export_edf,
)


def test_capture_round_trip_keeps_bytes_times_and_link_events(tmp_path: Path) -> None:
    p = tmp_path / "c.nsc"
    payloads = [bytes([i % 256]) * (i + 1) for i in range(50)] + [b"\x00" * 300]
    with CaptureWriter(p, device="w-1", note="test") as w:
        w.link(1_700_000_000.0, up=True)
        for i, data in enumerate(payloads):
            w.data(1_700_000_000.123456789 + i * 0.01, data)
        w.link(1_700_000_001.0, up=False)
    r = CaptureReader(p)
    assert r.header["format"] == "neurospasm.capture/2" and r.device == "w-1" and r.header["note"] == "test"
    recs = r.records()
    assert [x.kind for x in recs] == [UP] + [DATA] * len(payloads) + [DOWN]
    assert [x.data for x in recs if x.kind == DATA] == payloads
    # Host times survive to the nanosecond (well below anything the clock model resolves).
    assert abs(recs[1].t_host - 1_700_000_000.123456789) < 1e-6
    assert r.truncated is None


def test_truncated_capture_reads_up_to_the_last_complete_record(tmp_path: Path) -> None:
    p = tmp_path / "c.nsc"
    with CaptureWriter(p, device="w") as w:
        for i in range(10):
            w.data(float(i), b"abc" * (i + 1))
    raw = p.read_bytes()
    p.write_bytes(raw[:-5])  # the writer died inside the last record
    r = CaptureReader(p)
    recs = r.records()
    assert len(recs) == 9 and recs[-1].data == b"abc" * 9
    assert r.truncated == recs[-1].offset + RECORD_HEADER_BYTES + len(recs[-1].data)


def test_malformed_captures_name_the_file_and_offset(tmp_path: Path) -> None:
    p = tmp_path / "bad.nsc"
    p.write_bytes(b"NOTACAPTURE" + b"\x00" * 20)
    with pytest.raises(
        CaptureError, match=r"bad\.nsc: not a neurospasm capture \(bad magic at byte offset 0\)"
    ):
        CaptureReader(p)
    with CaptureWriter(p, device="w") as w:
        w.data(1.0, b"x")
    raw = bytearray(p.read_bytes())
    at = len(raw) - RECORD_HEADER_BYTES - 1  # the one record: v2 header, 1 byte of data
    raw[at + 20] = 9  # its kind (after sync and two u64 times)
    p.write_bytes(bytes(raw))
    r = CaptureReader(p)  # v2: the damaged record is skipped and named (v1: unit/test_capture_resync.py)
    assert r.records() == [] and r.corrupt == [(at, RECORD_HEADER_BYTES + 1)]


def test_record_sim_command_writes_a_capture_with_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "lossy.nsc"
    assert cli_main(["record", "--sim", "faults_lossy", "--out", str(out), "--device-id", "w-9"]) == 0
    r = CaptureReader(out)
    assert r.device == "w-9" and r.header["source"] == {
        "kind": "sim",
        "scenario": "faults_lossy",
        "seed": 601,
    }
    kinds = [x.kind for x in r]
    assert kinds.count(DOWN) == 2 and kinds.count(UP) == 2  # the scenario's two disconnects
    decoded = decode_source(str(out))
    # The gateway's session over the capture reports exactly the gaps the simulator recorded.
    got = sorted((g["domain"], g["cause"], g["samples_missing"]) for g in decoded.gaps)
    want = sorted((g["domain"], g["cause"], g["samples_missing"]) for g in r.header["expected_gaps"])
    assert got == want and len(got) > 10
    assert decoded.decode_errors.get("crc", 0) == sum(1 for t in r.header["truth"] if t["kind"] == "corrupt")


@pytest.fixture(scope="module")
def clean_edf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("edf")
    cap = tmp / "e2e.nsc"
    sim = simulate_scenario("e2e_short", device="w-1", t0_host=1_700_000_000.0)
    with CaptureWriter(cap, device="w-1") as w:
        write_sim(w, sim)
    edf = tmp / "e2e.edf"
    assert cli_main(["export-edf", str(cap), "--out", str(edf)]) == 0
    return cap, edf


def test_edf_export_is_readable_by_mne_with_names_units_and_annotations(clean_edf: tuple[Path, Path]) -> None:
    cap, edf = clean_edf
    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    assert raw.ch_names == ["EMG L quad", "EMG R quad", "ACC X", "ACC Y", "ACC Z"]
    assert raw.info["sfreq"] == 1000.0
    assert raw._orig_units["EMG L quad"] == "µV" and raw._orig_units["EMG R quad"] == "µV"
    assert raw.info["meas_date"].timestamp() == 1_700_000_000.0
    decoded = decode_source(str(cap))
    assert len(decoded.events) == 3  # e2e_short: three phasic spasms
    texts = list(raw.annotations.description)
    assert sorted(t for t in texts if t.startswith("phasic")) == sorted(
        f"phasic {e['channel']}" for e in decoded.events
    )
    onsets = sorted(o for o, t in zip(raw.annotations.onset, texts, strict=True) if t.startswith("phasic"))
    truth = sorted(e["onset_s"] for e in synthesize(builtin_scenario("e2e_short")).labels)
    # Detected onsets within 150 ms of the scripted ones (the stream started ~0 s into the file).
    assert np.allclose(onsets, truth, atol=0.15), (onsets, truth)
    # EMG in MNE (volts) is the device's ADC codes times its scale, to a tenth of one ADC step
    # (MNE's own gain/offset arithmetic), after a short no-data stretch at the start of the file.
    rec = synthesize(builtin_scenario("e2e_short"))
    scale = SignalSource.from_recording(rec).emg_scale_uv
    want = np.clip(np.rint(rec.emg_uv / scale), -32768, 32767)[:5000] * scale * 1e-6
    emg_v = raw.get_data(picks=[0, 1]).T
    shifts = [k for k in range(200) if np.allclose(emg_v[k : k + 5000], want, atol=scale * 1e-7, rtol=0)]
    assert len(shifts) == 1, shifts


def test_edf_export_accelerometer_in_g_at_its_own_rate_via_pyedflib(clean_edf: tuple[Path, Path]) -> None:
    _, edf = clean_edf
    rec = synthesize(builtin_scenario("e2e_short"))
    with pyedflib.EdfReader(str(edf)) as f:
        assert [f.getSampleFrequency(i) for i in range(5)] == [1000, 1000, 50, 50, 50]
        assert [f.getPhysicalDimension(i) for i in range(5)] == ["uV", "uV", "g", "g", "g"]
        acc = np.stack([f.readSignal(i) for i in (2, 3, 4)], axis=1)
        _, _, texts = f.readAnnotations()
    g = SignalSource.from_recording(rec).acc_scale_g
    codes = np.clip(np.rint(rec.acc_g / g), -32768, 32767) * g
    # Physical limits are rounded to EDF's 8 characters: a few parts per million of full scale.
    shifts = [k for k in range(20) if np.allclose(acc[k : k + 300], codes[:300], atol=g / 2, rtol=0)]
    assert len(shifts) == 1, shifts
    assert sum(t.startswith("phasic") for t in texts) == 3


def test_edf_export_annotates_gaps_of_a_faulty_recording(tmp_path: Path) -> None:
    cap = tmp_path / "lossy.nsc"
    record_sim("faults_lossy", cap, duration_s=None, device="w-2")
    decoded = decode_source(str(cap))
    out = tmp_path / "lossy.edf"
    summary = export_edf(decoded, out)
    raw = mne.io.read_raw_edf(out, verbose="error")
    gap_texts = [t for t in raw.annotations.description if t.startswith("gap ")]
    assert len(gap_texts) == len(decoded.gaps) == summary["gaps"]
    assert sum(t.startswith("gap disconnect") for t in gap_texts) == sum(
        g["cause"] == "disconnect" for g in decoded.gaps
    )
    assert raw.n_times / raw.info["sfreq"] == pytest.approx(summary["seconds"])


def test_export_edf_from_a_scenario_name(tmp_path: Path) -> None:
    out = tmp_path / "reboot.edf"
    assert cli_main(["export-edf", "faults_reboot", "--out", str(out)]) == 0
    raw = mne.io.read_raw_edf(out, verbose="error")
    assert raw.ch_names[:2] == ["EMG L quad", "EMG R quad"] and raw.info["sfreq"] == 2000.0
    assert sum(t.startswith("gap reboot") for t in raw.annotations.description) == 4  # 2 reboots x EMG, ACC


def test_export_of_a_file_without_data_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap = tmp_path / "empty.nsc"
    with CaptureWriter(cap, device="w"):
        pass
    assert cli_main(["export-edf", str(cap), "--out", str(tmp_path / "x.edf")]) == 2
    assert "nothing to export" in capsys.readouterr().err


def test_a_captures_vendor_settings_decode_it(tmp_path: Path) -> None:
    """A capture keeps the device's vendor settings (``record --option``) in its header, and the
    export decodes with them: a Cyton recorded at gain 8 is scaled at gain 8, not the default 24."""
    from ingest.commands.record import parse_options
    from ingest.wire.cyton import emg_scale_uv

    # Cyton Data Format: 0xA0, sample number, 8 x 24-bit big-endian, 6 aux bytes, footer 0xC0.
    channels = (1000).to_bytes(3, "big") * 8
    packets = b"".join(bytes([0xA0, n]) + channels + bytes(6) + b"\xc0" for n in range(20))
    path = tmp_path / "cyton.nsc"
    options = parse_options("cyton", ["gain=8", "daisy=false"])
    assert options == {"gain": 8, "daisy": False}
    with CaptureWriter(path, device="wearable-1", kind="cyton", options=options) as w:
        w.write(100.0, UP)
        w.write(100.1, DATA, packets)
    decoded = decode_source(str(path))
    (boot,) = decoded.boots
    assert boot.info.emg_scale_uv == pytest.approx(emg_scale_uv(8))
    assert boot.info.n_channels == 8
    with pytest.raises(ValueError, match=r"^options\.gain: a 'cyton' gain must be one of"):
        parse_options("cyton", ["gain=3"])
    with pytest.raises(ValueError, match=r"expected KEY=VALUE"):
        parse_options("cyton", ["gain"])
    assert parse_options("myo", ["emg_mode=filtered"]) == {"emg_mode": "filtered"}
    assert parse_options("bitalino", ["emg_inputs=[1, 2]"]) == {"emg_inputs": [1, 2]}


def test_replay_of_a_vendor_capture_uses_the_kind_and_settings_it_names(tmp_path: Path) -> None:
    """``neurospasm replay`` without a config decodes a capture as the device kind (and with the
    vendor settings) its header names: a Shimmer capture at 512 Hz is replayed as a Shimmer."""
    import asyncio

    from firmware_sim.personalities import PersonalityDevice, make_device
    from firmware_sim.scenario import parse_scenario
    from ingest.commands.replay import run_replay
    from ingest.wire.kinds import decoder_for

    sc = parse_scenario({"name": "shimmer_replay", "seed": 2, "duration_s": 4.0, "emg_rate_hz": 1000,
                         "acc_rate_hz": 50, "channels": ["EMG L quad"],
                         "events": [{"type": "phasic", "channel": "EMG L quad", "onset_s": 2.0,
                                     "duration_s": 0.8, "peak_uv": 250.0}]}, "<test>")  # fmt: skip
    rec = synthesize(sc)
    dev = make_device("shimmer", SignalSource.from_recording(rec))
    assert isinstance(dev, PersonalityDevice)
    options = {"rate_hz": 512}
    for cmd in decoder_for("shimmer", options).start_commands():
        dev.handle_bytes(cmd.data)
    path = tmp_path / "shimmer.nsc"
    with CaptureWriter(path, device="wearable-1", kind="shimmer", options=options) as w:
        w.write(1000.0, UP)
        for k in range(1, 1 + int(4.0 / 0.02)):
            t = k * 0.02
            data = b"".join(dev.frames_until(t))
            if data:
                w.write(1000.0 + t, DATA, data)
    assert dev.personality.emg_rate_hz == 512
    summary = asyncio.run(run_replay(path, state_dir=tmp_path / "state"))
    assert len(summary.events) == 1, summary.text()  # (read as our own protocol: not one frame)
    from datetime import datetime

    onset = datetime.fromisoformat(summary.events[0]["onset"].replace("Z", "+00:00")).timestamp()
    assert abs(onset - 1002.0) < 0.2 and summary.events[0]["channel"] == "EXG1 CH1"
    assert not summary.gaps, summary.gaps


def _export_e2e(tmp_path: Path) -> Path:
    """``e2e_short`` captured at a host time 0.437 s past a whole second, exported to EDF+."""
    cap, edf = tmp_path / "f.nsc", tmp_path / "f.edf"
    sim = simulate_scenario("e2e_short", device="w-1", t0_host=1_700_000_000.437)
    with CaptureWriter(cap, device="w-1") as w:
        write_sim(w, sim)
    assert cli_main(["export-edf", str(cap), "--out", str(edf)]) == 0
    return edf


def test_edf_reader_skips_the_exporters_no_data_fraction(tmp_path: Path) -> None:
    """The export starts on a whole second; the annotated fraction before the first sample is
    zeros. Read back, the recording starts at its first real sample and its true sub-second time."""
    from ingest.files.readers import read_recording

    edf = _export_e2e(tmp_path)
    with pyedflib.EdfReader(str(edf)) as f:
        raw0 = f.readSignal(0)[:800]
        n_file = f.getNSamples()[0]
        onsets, durations, _ = f.readAnnotations()
    lead = round(float(durations[0]) * 1000)
    assert float(onsets[0]) == 0.0 and 400 <= lead <= 460  # the fraction, as zeros in the file
    assert np.ptp(raw0[: lead - 5]) == 0.0 and np.ptp(raw0[lead + 5 :]) > 1.0
    sf = read_recording(edf)
    assert abs(sf.start.timestamp() - (1_700_000_000.0 + lead / 1000)) < 1e-3
    assert np.ptp(sf.emg_uv[:50, 0]) > 1.0  # real EMG from the first sample
    assert len(sf.emg_uv) <= n_file - lead  # (and the padding at the end is gone: below)
    assert all(o >= 0.0 for o, _, _ in sf.annotations)
    assert any(n.startswith("the first 0.4") for n in sf.notes)


def test_edf_reader_skips_the_exporters_padding_after_the_last_sample(tmp_path: Path) -> None:
    """EDF holds whole one-second records, so the export's last record is zero-padded after each
    domain's last sample. Annotated, the reader ends each domain at its last real sample, and
    detect does not call the end of every exported file a lead-off."""
    from ingest.files.readers import read_recording

    edf = _export_e2e(tmp_path)
    with pyedflib.EdfReader(str(edf)) as f:
        n_file = f.getNSamples()[0]
        raw = f.readSignal(0)
        onsets, _, texts = f.readAnnotations()
        tails = [(o, t) for o, t in zip(onsets, texts, strict=True) if t.startswith("no data (after")]
    assert {t.rsplit(" ", 1)[-1] for _, t in tails} == {"emg", "acc"}
    emg_end = round(next(o for o, t in tails if t.endswith("emg")) * 1000)
    assert np.ptp(raw[emg_end + 2 :]) == 0.0 and np.ptp(raw[emg_end - 50 : emg_end]) > 1.0
    sf = read_recording(edf)
    lead = n_file - emg_end  # the zeros at the end
    assert lead > 0 and len(sf.emg_uv) < n_file - lead + 1
    assert np.ptp(sf.emg_uv[-50:, 0]) > 1.0  # real EMG to the last sample
    assert sf.acc_g is not None and np.ptp(sf.acc_g[-5:], axis=0).max() > 0.0
    assert not any(t.startswith("no data") for _, _, t in sf.annotations)
