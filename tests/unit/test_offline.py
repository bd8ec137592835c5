"""``neurospasm detect``: the streaming detector over files (EDF+/BDF+, CSV, BioSPPy text)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest
from support.harness import shared_data

from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.commands.cli import main
from ingest.commands.offline import annotate_edf
from ingest.files.readers import RecordingError, SignalFile, _decode_records, read_recording

BIOSPPY = shared_data("biosppy")
START = datetime(2026, 11, 24, 22, 15, 0, tzinfo=UTC)


def _parsed(rc: int, stdout: str, stderr: str) -> tuple[int, list[dict[str, object]], str]:
    """Exit code, the JSON events of stdout (every non-blank line must be one), stderr."""
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return rc, events, stderr


def detect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, object]], str]:
    """``neurospasm detect ARGS`` in this process (the same ``main`` the console script runs, without
    ~1.5 s of imports per case): its exit code, stdout events and stderr, as a process would show them.
    The console script itself is run once, end to end, by the BioSPPy test."""
    capsys.readouterr()  # what earlier steps of the test printed is not the command's
    rc = main(["detect", *args])
    out = capsys.readouterr()
    return _parsed(rc, out.out, out.err)


def detect_process(*args: str) -> tuple[int, list[dict[str, object]], str]:
    """The installed ``neurospasm`` console script in a child process (entry point, real streams)."""
    script = Path(sys.executable).parent / "neurospasm"
    assert script.exists(), f"{script}: the console script is not installed (pip install -e .)"
    p = subprocess.run([str(script), "detect", *args], capture_output=True, text=True)
    return _parsed(p.returncode, p.stdout, p.stderr)


def onset_s(e: dict[str, object], start: datetime) -> float:
    return datetime.fromisoformat(str(e["onset"]).replace("Z", "+00:00")).timestamp() - start.timestamp()


def test_real_biosppy_recording_finds_the_visible_bursts_and_nothing_else() -> None:
    """Through the installed console script in its own process: the one end-to-end run of the
    entry point (the other cases call the same ``main`` in-process)."""
    path = BIOSPPY / "emg_1.txt"
    rc, events, err = detect_process(str(path))
    assert rc == 0, err
    onsets = [onset_s(e, datetime.fromtimestamp(0, UTC)) for e in events]
    # The README of the data names bursts near 1.5 s, 16 s (about 1.5 s long), 25.5 s and 26.5 s.
    for expected in (1.5, 15.5, 25.5, 26.5):
        assert any(abs(o - expected) < 0.7 for o in onsets), (expected, onsets)
    assert len(events) == 4, onsets
    long_one = next(e for e in events if abs(onset_s(e, datetime.fromtimestamp(0, UTC)) - 15.5) < 0.7)
    assert long_one["type"] == "phasic" and 1.0 < float(long_one["duration_s"]) < 2.0  # type: ignore[arg-type]
    assert "BITalino" in err and "4 events" in err


def scenario_file(tmp_path: Path, name: str = "e2e_short") -> tuple[Path, list[dict[str, object]]]:
    rec = synthesize(builtin_scenario(name))
    sf = SignalFile(
        tmp_path / "in.edf",
        rec.emg_uv.astype(np.float64) / 1000.0,
        float(rec.emg_rate_hz),  # mV on disk
        list(rec.channel_labels),
        rec.acc_g.astype(np.float64),
        float(rec.acc_rate_hz),
        START,
    )
    path = tmp_path / "in.edf"
    signals = [np.ascontiguousarray(sf.emg_uv[:, i]) for i in range(sf.emg_uv.shape[1])]
    headers = [
        {
            "label": lab,
            "dimension": "mV",
            "sample_frequency": sf.emg_rate_hz,
            "physical_min": -7.0,
            "physical_max": 7.0,
            "digital_min": -32768,
            "digital_max": 32767,
            "transducer": "",
            "prefilter": "",
        }
        for lab in sf.channel_labels
    ]
    for i, axis in enumerate("XYZ"):
        signals.append(np.ascontiguousarray(rec.acc_g[:, i], dtype=np.float64) * 9.80665)
        headers.append(
            {
                "label": f"ACC {axis}",
                "dimension": "m/s^2",
                "sample_frequency": sf.acc_rate_hz,
                "physical_min": -80.0,
                "physical_max": 80.0,
                "digital_min": -32768,
                "digital_max": 32767,
                "transducer": "",
                "prefilter": "",
            }
        )
    w = pyedflib.EdfWriter(str(path), len(signals), file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders(headers)
    w.setStartdatetime(START.replace(tzinfo=None))
    w.writeSamples(signals)
    w.close()
    return path, rec.labels


def test_edf_units_are_honoured_and_events_match_the_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, labels = scenario_file(tmp_path)
    sf = read_recording(path)
    assert sf.channel_labels == ["EMG L quad", "EMG R quad"]
    assert 1.0 < float(np.median(np.abs(sf.emg_uv))) < 10.0  # read as microvolts, not millivolts
    assert sf.acc_g is not None and abs(float(np.median(np.linalg.norm(sf.acc_g, axis=1))) - 1.0) < 0.1
    out = tmp_path / "annotated.edf"
    rc, events, err = detect(capsys, str(path), "--annotate", str(out))
    assert rc == 0, err
    assert len(events) == len(labels) == 3
    for e, lab in zip(events, sorted(labels, key=lambda x: float(x["onset_s"])), strict=True):  # type: ignore[arg-type]
        assert abs(onset_s(e, START) - float(lab["onset_s"])) < 0.1  # type: ignore[arg-type]
        assert e["channel"] == lab["channel"] and e["type"] == lab["type"]
    raw = mne.io.read_raw_edf(out, verbose="error")  # an independent reader
    spasms = [a for a in raw.annotations if str(a["description"]).startswith("spasm")]
    assert len(spasms) == 3
    assert raw.ch_names[:2] == ["EMG L quad", "EMG R quad"]


def test_csv_layout_with_start_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = synthesize(builtin_scenario("e2e_short"))
    path = tmp_path / "rec.csv"
    t = np.arange(len(rec.emg_uv)) / rec.emg_rate_hz
    with path.open("w") as fh:
        fh.write(f"# start: {START.isoformat()}\n")
        fh.write("time_s,EMG L quad [uV],EMG R quad [mV]\n")
        np.savetxt(
            fh, np.column_stack([t, rec.emg_uv[:, 0], rec.emg_uv[:, 1] / 1000.0]), delimiter=",", fmt="%.6f"
        )
    rc, events, err = detect(capsys, str(path))
    assert rc == 0, err
    assert len(events) == 3
    assert str(events[0]["onset"]).startswith("2026-11-24T22:15:0")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("hello", "x.dat", "unknown format"),
        (
            "",
            "empty.nsc",
            "not a neurospasm capture: byte offset 0 should hold .* the file is empty",
        ),
        (
            "NSCAX garbage",
            "g.nsc",
            "not a neurospasm capture: .* first bytes are 4e 53 43 41 58",
        ),
        ("t,EMG\n0,1\n", "bad.csv", "the first column must be time_s"),
        ("time_s,EMG a [furlong]\n0,1\n0.001,2\n", "units.csv", "EMG unit 'furlong'"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, name: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RecordingError, match=message):
        read_recording(path)
    rc, events, err = detect(capsys, str(path))
    assert rc == 2 and events == [] and str(path) in err and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1, err  # one line, not a traceback


def test_several_files_in_one_run_each_line_names_its_file_and_a_bad_one_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of recordings in one command: each file's events are the ones it gives alone,
    each line says which file; a bad file is named, the others still run, the exit code says so."""
    path, labels = scenario_file(tmp_path)
    rc, alone, err = detect(capsys, str(path))
    assert rc == 0 and len(alone) == len(labels) == 3, err
    bad = tmp_path / "broken.csv"
    bad.write_text("t,EMG\n0,1\n")
    rc, lines, err = detect(capsys, str(path), str(bad), str(path))
    assert rc == 2  # one file could not be read
    assert [line["file"] for line in lines] == [str(path)] * 6
    assert [line["event"] for line in lines] == alone + alone  # unchanged, file by file
    assert f"{bad}: line 1: the first column must be time_s" in err
    assert err.count(f"{path.name}: 12.0 s") == 2, err  # a summary line per file that ran
    rc, _, err = detect(capsys, str(path), str(path), "--annotate", str(tmp_path / "o.edf"))
    assert rc == 2 and "--annotate takes one recording" in err


def test_detect_pauses_the_collector_only_while_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``detect`` runs without the cyclic collector (start-up's objects frozen, a collection
    between files); the caller's collector is as it was afterwards, even when a file is bad."""
    import gc

    path, _ = scenario_file(tmp_path)
    bad = tmp_path / "broken.csv"
    bad.write_text("t,EMG\n0,1\n")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    rc, lines, _ = detect(capsys, str(path), str(bad), str(path))
    assert rc == 2 and len(lines) == 6
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_detect_makes_no_onset_records_and_the_same_events(tmp_path: Path) -> None:
    """The session ``detect`` runs makes no onset records (only events are written), and its
    events, ids included, are those of a session that makes every record."""
    from detectors import DetectorConfig
    from ingest.commands.offline import detect_signals, signal_frames
    from ingest.stream.session import DeviceSession, Output

    sf = _lead_off_file(tmp_path)
    outs: list[Output] = []
    full = DeviceSession("offline", outs.append, DetectorConfig(), series=False)
    for frame, t in signal_frames(sf, "offline"):
        full.on_frame(frame, t)
    full.finish()
    assert any(o.kind == "onset" for o in outs)
    want = sorted((o.payload for o in outs if o.kind == "event"), key=lambda p: (p["onset"], p["channel"]))  # type: ignore[index]
    assert want
    from ingest.outputs.encoders import to_json

    assert [to_json(e) for e in detect_signals(sf, DetectorConfig())] == want

    lean: list[Output] = []
    s = DeviceSession("offline", lean.append, DetectorConfig(), series=False, onsets=False)
    for frame, t in signal_frames(sf, "offline"):
        s.on_frame(frame, t)
    s.finish()
    assert not any(o.kind == "onset" for o in lean)
    assert s.stats.onsets == full.stats.onsets > 0  # still counted
    assert [o.payload for o in lean if o.kind != "onset"] == [o.payload for o in outs if o.kind != "onset"]


def test_annotate_keeps_signal_units(tmp_path: Path) -> None:
    sf = SignalFile(
        tmp_path / "x", np.random.default_rng(0).normal(0, 5, (2000, 1)), 1000.0, ["EMG a"], None, None, START
    )
    annotate_edf(sf, [], tmp_path / "o.edf")
    back = read_recording(tmp_path / "o.edf")
    assert np.allclose(back.emg_uv[:, 0], sf.emg_uv[:, 0], atol=0.01)
    assert back.start == START


def _lead_off_file(tmp_path: Path) -> SignalFile:
    """Two EMG channels with bursts, a flat (lead-off) stretch and a railed one, plus an accelerometer."""
    rec = synthesize(builtin_scenario("e2e_short"))
    emg = rec.emg_uv.astype(np.float64)
    rate = float(rec.emg_rate_hz)
    a, b = int(4.0 * rate), int(7.0 * rate)
    emg[a:b, 0] = 0.0  # the electrode came off
    c = int(9.0 * rate)
    emg[c : c + int(1.5 * rate), 1] = np.where(np.arange(int(1.5 * rate)) % 2, 6000.0, -6000.0)  # railed
    return SignalFile(
        tmp_path / "x.edf", emg, rate, list(rec.channel_labels),
        rec.acc_g.astype(np.float64), float(rec.acc_rate_hz), START,
    )  # fmt: skip


@pytest.mark.parametrize("block_s", [0.05, 0.37, 2.0, 1e6])
def test_detect_outputs_do_not_depend_on_the_file_block_size(tmp_path: Path, block_s: float) -> None:
    """Every output of the file path (events with ids, onsets, gaps, quality) is the same whatever
    the size of the frames a file is handed to the session in (``neurospasm detect`` uses long
    ones for speed; a device sends 50 ms)."""
    from detectors import DetectorConfig
    from ingest.commands.offline import BLOCK_S, signal_frames
    from ingest.stream.session import DeviceSession, Output

    sf = _lead_off_file(tmp_path)

    def run(size: float) -> list[object]:
        outs: list[Output] = []
        s = DeviceSession("offline", outs.append, DetectorConfig(), series=False)
        for frame, t in signal_frames(sf, "offline", size):
            s.on_frame(frame, t)
        s.finish()
        # the same set: the order in which a session emits them follows its frames
        return sorted(((o.kind, o.payload) for o in outs), key=lambda r: json.dumps(r, sort_keys=True))

    reference = run(BLOCK_S)
    kinds = {k for k, _ in reference}  # type: ignore[misc]
    assert {"onset", "event", "gap"} <= kinds, kinds  # the file exercises bursts and a lead-off
    assert any(p["cause"] == "lead_off" for k, p in reference if k == "gap")  # type: ignore[index, misc]
    assert run(block_s) == reference


def test_edf_samples_are_pyedflibs_bit_for_bit(tmp_path: Path) -> None:
    """The reader decodes EDF/BDF data records itself (fast); the values are pyedflib's exactly,
    for odd physical limits, a unit scale, several rates and both sample widths."""
    rng = np.random.default_rng(3)
    widths = ((pyedflib.FILETYPE_EDFPLUS, "edf", 32767), (pyedflib.FILETYPE_BDFPLUS, "bdf", 8388607))
    for ftype, ext, dmax in widths:
        path = tmp_path / f"odd.{ext}"
        rates, units = (1000, 1000, 100, 100, 100), ("mV", "uV", "g", "g", "g")
        labels = ["EMG a", "EMG b", "ACC X", "ACC Y", "ACC Z"]
        sigs = [rng.normal(0, 0.3 if u != "uV" else 300, 37 * r) for r, u in zip(rates, units, strict=True)]
        w = pyedflib.EdfWriter(str(path), 5, file_type=ftype)
        w.setSignalHeaders([
            {"label": lab, "dimension": u, "sample_frequency": r,
             "physical_min": -6000.18 if u == "uV" else -2.37, "physical_max": 5999.3 if u == "uV" else 3.1,
             "digital_min": -dmax - 1, "digital_max": dmax,
             "transducer": "", "prefilter": ""}
            for lab, u, r in zip(labels, units, rates, strict=True)
        ])  # fmt: skip
        w.setStartdatetime(START.replace(tzinfo=None))
        w.writeSamples(sigs)
        w.writeAnnotation(3.0, 1.0, "marker")
        w.close()
        sf = read_recording(path)
        with pyedflib.EdfReader(str(path)) as f:
            for same_rate in ([0, 1], [2, 3, 4]):  # the fast path, not the fallback
                assert _decode_records(f, path, same_rate) is not None
            emg = np.stack([f.readSignal(0) * 1000.0, f.readSignal(1)], axis=1)
            acc = np.stack([f.readSignal(i) for i in (2, 3, 4)], axis=1)
        assert sf.emg_uv.tobytes() == emg.tobytes()
        assert sf.acc_g is not None and sf.acc_g.tobytes() == acc.tobytes()
        assert sf.annotations == [(3.0, 1.0, "marker")]


def test_finite_samples_whose_sum_overflows_are_finite(tmp_path: Path) -> None:
    """The finiteness check sums the samples (one pass): a sum that overflows is not a NaN in the
    file, so the exact check decides, and a NaN anywhere is still found and placed."""
    from ingest.files.readers import check_signals

    big = np.full((3000, 2), 1e308)
    big[::2] *= -1.0
    big[:10] = 1e308  # the sum runs to inf, every value is finite
    sf = SignalFile(tmp_path / "x.csv", big, 1000.0, ["EMG a", "EMG b"], None, None, START)
    assert check_signals(sf) is sf
    big[1234, 1] = np.nan
    with pytest.raises(RecordingError, match=r"'EMG b' has non-finite values .* first at sample 1234"):
        check_signals(sf)


def test_a_truncated_edf_leaves_the_event_stream_clean(tmp_path: Path) -> None:
    """pyedflib's C library prints its size check to stdout before it raises; stdout is the
    event stream (one JSON object per line), so that text goes into the error's one line.
    In a child process with stdout a pipe: C's buffered stdout would otherwise leak at exit."""
    path, _ = scenario_file(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: len(data) // 2])
    script = Path(sys.executable).parent / "neurospasm"
    p = subprocess.run([str(script), "detect", str(cut)], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stdout == ""
    assert f"{cut}: not a readable EDF/BDF file" in p.stderr
    # ...and the library's own check is part of that one line, not run into it
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "filesize" in p.stderr, p.stderr
