"""Hostile and malformed inputs to the offline commands: one line naming the file and the key (or
byte offset) at fault, exit status 2, and nothing else lost (the other files of a run still run).

Found by a sweep of the command line with broken files; each case here failed once with a traceback,
a hang, a misleading message or a silent success."""

# ruff: noqa: E501  (tables of hostile inputs read better one case a line)

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detectors import DetectorConfig
from detectors.config import ConfigError
from ingest.commands.cli import main
from ingest.files.recording import CaptureReader, CaptureWriter

BIOSPPY_HEAD = "# Simple Text Format\n"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if "note:" not in line]
    assert len(lines) == 1, err  # one line, not a traceback
    return lines[0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rate.txt", BIOSPPY_HEAD + "# Sampling Rate (Hz):= abc\n# Labels:= EMG\n1\n2\n",
         "header 'Sampling Rate (Hz)': not a number: 'abc'"),
        ("rate0.txt", BIOSPPY_HEAD + "# Sampling Rate (Hz):= -5\n# Labels:= EMG\n1\n2\n",
         "header 'Sampling Rate (Hz)': need a positive number"),
        ("bits.txt", BIOSPPY_HEAD + "# Sampling Rate (Hz):= 1000\n# Resolution:= x\n# Labels:= EMG\n1\n2\n",
         "header 'Resolution': not a number: 'x'"),
        ("bitsbig.txt", BIOSPPY_HEAD + "# Sampling Rate (Hz):= 1000\n# Resolution:= 5000\n# Labels:= EMG\n1\n2\n",
         "header 'Resolution': need whole bits from 0 to 32"),
        ("nodata.txt", BIOSPPY_HEAD + "# Sampling Rate (Hz):= 1000\n# Labels:= EMG\n", "no data rows"),
        ("old.csv", "# start: 0001-01-01T00:00:00+14:00\ntime_s,EMG L\n0,1\n0.001,2\n", "line 1: bad start time"),
        ("late.csv", "# start: 9999-12-31T23:59:59-12:00\ntime_s,EMG L\n0,1\n0.001,2\n", "line 1: bad start time"),
        ("semi.csv", "time_s;EMG L\n0;1\n0.001;2\n", "line 2: could not convert string '0;1'"),
    ],
)  # fmt: skip
def test_bad_headers_and_rows_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    rc, out, err = _run(capsys, "detect", str(path))
    assert rc == 2 and out == ""
    line = _one_line(err)
    assert str(path) in line and message in line, line


def test_not_utf8_names_the_files_own_byte_offset_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """numpy reads text in blocks and counts the offset of a bad byte from its block: the message
    must give the offset in the file (here past the first 64 KiB) and its line."""
    rows = "".join(f"{i / 1000:.3f},{i % 7}\n" for i in range(9000))
    data = ("time_s,EMG L\n" + rows).encode() + b"\xff\n"
    path = tmp_path / "deep.csv"
    path.write_bytes(data)
    rc, _, err = _run(capsys, "detect", str(path))
    line = _one_line(err)
    assert rc == 2 and f"line 9002: not UTF-8 text at byte offset {len(data) - 2} (0xff)" in line, line
    txt = tmp_path / "deep.txt"
    body = (BIOSPPY_HEAD + "# Sampling Rate (Hz):= 1000\n# Labels:= EMG\n").encode()
    txt.write_bytes(body + b"1\n" * 40000 + b"\xfe\n")
    rc, _, err = _run(capsys, "detect", str(txt))
    assert rc == 2 and f"byte offset {len(body) + 80000} (0xfe)" in _one_line(err)


def test_a_spreadsheets_byte_order_mark_is_no_part_of_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(
        "\ufefftime_s,EMG L\n".encode() + b"".join(b"%.3f,1\n" % (i / 1000) for i in range(3000))
    )
    rc, _, err = _run(capsys, "detect", str(path))
    assert rc == 0 and "3.0 s, 1 EMG channel(s) at 1000 Hz" in err, err


def _capture(tmp_path: Path, name: str, body: bytes | None = None, **meta: object) -> Path:
    """A capture with the given header fields; ``body``: raw bytes after the header instead of
    the e2e_short scenario's records."""
    p = tmp_path / name
    if body is not None:
        with CaptureWriter(p, **meta):
            pass
        with p.open("ab") as f:
            f.write(body)
        return p
    src = tmp_path / "src.nsc"
    if not src.exists():
        assert main(["record", "--sim", "e2e_short", "--out", str(src)]) == 0
    reader = CaptureReader(src)
    with CaptureWriter(p, **{**reader.header, **meta}) as w:
        for r in reader.records():
            w.write(r.t_host, r.kind, r.data)
    return p


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"device": "John Smith"}, "header.device: not a pseudonymous device id"),
        ({"device": 12}, "header.device: not a pseudonymous device id"),
        ({"kind": "nosuchkind"}, "header.kind: unknown device kind 'nosuchkind'"),
        ({"kind": 5}, "header.kind: unknown device kind 5"),
        ({"options": "gain=8"}, "header.options: must be a table of settings"),
        ({"kind": "cyton", "options": {"gain": "huge"}}, "header.options.gain: a 'cyton' gain"),
    ],
)
def test_a_capture_header_is_checked_like_a_devices_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], meta: dict[str, object], message: str
) -> None:
    cap = _capture(tmp_path, "bad.nsc", **meta)
    for cmd in (["detect", str(cap)], ["export-edf", str(cap), "--out", str(tmp_path / "x.edf")],
                ["replay", str(cap), "--no-progress"]):  # fmt: skip
        rc, _, err = _run(capsys, *cmd)
        line = _one_line(err.split("\n", 1)[-1] if "INFO" in err.split("\n", 1)[0] else err)
        assert rc == 2 and str(cap) in line and message in line, (cmd, err)
        assert "John Smith" not in err  # a name in the header is not repeated into logs
    assert not (tmp_path / "x.edf").exists()


def test_a_named_device_overrides_a_bad_header_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = _capture(tmp_path, "named.nsc", device="John Smith")
    rc, out, err = _run(capsys, "detect", str(cap), "--device", "dev-7")
    events = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(events) == 3 and {e["device"] for e in events} == {"dev-7"}, err


def test_a_capture_of_garbage_is_an_error_not_zero_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap = _capture(tmp_path, "garbage.nsc", body=os.urandom(20_000), device="w-1")
    start = CaptureReader(cap).body_offset
    rc, out, err = _run(capsys, "detect", str(cap))
    assert rc == 2 and out == ""
    assert f"no complete record after the header (byte offset {start})" in err, err
    rc, _, err = _run(capsys, "replay", str(cap), "--no-progress")
    assert rc == 2 and "no complete record after the header" in err, err


def test_one_file_that_fails_unforeseen_does_not_stop_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure no reader foresaw (a bug) is named in one line with its type; the files after it
    still run and the exit status is non-zero."""
    from ingest.files import readers

    cap = _capture(tmp_path, "good.nsc")
    odd = tmp_path / "odd.csv"
    odd.write_text("time_s,EMG L\n0,1\n0.001,2\n")
    real = readers.read_recording

    def flaky(path: str | Path) -> readers.SignalFile:
        if Path(path) == odd:
            raise RuntimeError("unforeseen")
        return real(path)

    monkeypatch.setattr(readers, "read_recording", flaky)
    rc, out, err = _run(capsys, "detect", str(odd), str(cap))
    assert rc == 1
    assert f"{odd}: internal error (RuntimeError: unforeseen); skipped" in err, err
    assert len(out.splitlines()) == 3 and "good.nsc: 12.0 s" in err  # the capture after it ran


@pytest.mark.parametrize(
    ("key", "value"),
    [("band_order", 10_000_000_000), ("baseline_window_s", 1e12), ("max_episode_s", 1e9),
     ("block_s", 1000.0), ("block_s", 1e-9)],
)  # fmt: skip
def test_detector_keys_that_size_buffers_have_an_upper_bound(key: str, value: float) -> None:
    """A typo (1e12 for 12) is an error naming the key, not terabytes allocated, nor a block so
    long or short that the detector never decides."""
    with pytest.raises(ConfigError, match=f"'{key}'"):
        DetectorConfig(**{key: value})


def test_export_edf_rejects_a_fifo_and_a_non_capture_at_once(tmp_path: Path) -> None:
    """In a child process with a deadline: opening a FIFO without a writer blocks for ever."""
    fifo = tmp_path / "f.nsc"
    os.mkfifo(fifo)
    edf = tmp_path / "notcap.edf"
    edf.write_bytes(b"0       " + b" " * 300)
    for src, message in ((fifo, "not a regular file"), (edf, "not a capture (no capture magic at byte offset 0)"),
                         (Path("nosuchscenario"), "no built-in scenario of that name")):  # fmt: skip
        p = subprocess.run(
            [sys.executable, "-m", "ingest", "export-edf", str(src), "--out", str(tmp_path / "o.edf")],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_mistyped_scenario_name_fails_before_the_signal_models_are_imported(tmp_path: Path) -> None:
    """The name is checked first: the error is at once, not after a second of importing scipy.signal."""
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ingest", "export-edf", "nosuchscenario", "--out",
         str(tmp_path / "o.edf")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")
    }
    assert p.returncode == 2 and "no built-in scenario of that name" in p.stderr, p.stderr
    assert "firmware_sim.scenario" in imported
    assert not [m for m in imported if m.startswith("scipy.signal")]


def test_replay_checks_every_directory_it_will_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ``run`` does: a local store on a file is one line at the start, not a sink that pauses
    delivery for ever while the replay reports success."""
    cap = _capture(tmp_path, "r.nsc")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for section in (f'[gateway]\nstate_dir = "{blocker}"\n',
                    f'[gateway]\nstate_dir = "{tmp_path / "s"}"\n[local]\nenabled = true\ndirectory = "{blocker}"\n'):  # fmt: skip
        cfg = tmp_path / "gw.toml"
        cfg.write_text(section + '[[devices]]\nid = "w-1"\nport = "replay"\n[mqtt]\nenabled = false\n')
        rc, _, err = _run(capsys, "replay", str(cap), "--no-progress", "--config", str(cfg))
        line = _one_line(err)
        assert rc == 2 and str(cfg) in line and f"{blocker} is not writable" in line, err


def test_annotate_writes_values_too_large_for_microvolts_in_a_larger_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EDF limits hold 8 characters: +-50 V in uV needs 9, and pyedflib cut the limit (samples
    off by up to 45 V, exit 0). Now such a channel is written in mV (the values round-trip), and
    one that fits no unit is one line, exit 2, and no file (no empty one either)."""
    import numpy as np

    from ingest.files.readers import read_recording

    t = np.arange(3000) / 1000.0
    volts = tmp_path / "volts.csv"
    volts.write_text("time_s,EMG a [V]\n" + "".join(f"{x:.3f},{50 * np.sin(40 * x):.6f}\n" for x in t))
    out = tmp_path / "copy.edf"
    rc, _, err = _run(capsys, "detect", str(volts), "--annotate", str(out))
    assert rc == 0, err
    a, b = read_recording(volts).emg_uv[:, 0], read_recording(out).emg_uv[:, 0]
    assert float(np.max(np.abs(a - b))) < 1e-4 * float(np.max(np.abs(a)))
    huge = tmp_path / "huge.csv"
    huge.write_text("time_s,EMG a [V]\n" + "".join(f"{x:.3f},{1e15 * np.sin(40 * x):.6g}\n" for x in t))
    out2 = tmp_path / "huge.edf"
    rc, _, err = _run(capsys, "detect", str(huge), "--annotate", str(out2))
    assert rc == 2 and "do not fit an EDF header's 8-character limits" in err, err
    assert not out2.exists() and not list(tmp_path.glob(".huge.edf*"))


def test_simulator_fault_options_and_long_labels_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fault option out of range names the option (it was a pydantic traceback); a channel label
    longer than the INFO frame holds is a scenario error, not a crash when the device starts."""
    from firmware_sim.cli import scenario_with_fault_overrides
    from firmware_sim.scenario import ScenarioError, builtin_scenario

    sc = builtin_scenario("e2e_short")
    for attr, value, flag in (("frame_loss", 2.0, "--frame-loss"), ("jitter_ms", -5.0, "--jitter-ms")):
        args = argparse.Namespace(**{attr: value})
        with pytest.raises(ScenarioError, match=f"command line: {flag}: "):
            scenario_with_fault_overrides(sc, args)
    long = tmp_path / "long.toml"
    import firmware_sim

    text = (Path(firmware_sim.__file__).parent / "scenarios" / "e2e_short.toml").read_text()
    long.write_text(text.replace('channels = ["', 'channels = ["' + "x" * 40 + '", "', 1))
    rc, _, err = _run(capsys, "record", "--sim", str(long), "--out", str(tmp_path / "r.nsc"))
    assert rc == 2 and "is 40 bytes in UTF-8; the wire protocol allows 16" in _one_line(err), err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--speed", "0"], "argument --speed: must be a number > 0"),
     (["--drift-ppm", "nan"], "argument --drift-ppm: must lie within +-1000 ppm"),
     (["--drift-ppm", "1e9"], "argument --drift-ppm: must lie within +-1000 ppm"),
     (["--labels", "/nonexistent/x.json"], "argument --labels: '/nonexistent/x.json': directory '/nonexistent' does not exist"),
     (["--path-file", "/nonexistent/p"], "argument --path-file:"),
     (["--device-option", "foo"], "--device-option 'foo' is not KEY=VALUE")],
)  # fmt: skip
def test_simulator_options_are_checked_before_it_starts(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Before any pty is opened or anything written: a bad option is exit 2 and one line (``--speed
    0`` was real time without a word; a labels file in a missing directory failed at the end)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["sim", "--serial", *args])
    assert exc.value.code == 2
    assert message in _one_line(capsys.readouterr().err)


def test_messages_name_the_input_at_fault_not_another_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``export-edf`` of a capture without EMG names the capture (it named the output); ``replay``
    with a config without devices names the config (it named the capture)."""
    cap = tmp_path / "link-only.nsc"
    with CaptureWriter(cap, device="w-1") as w:
        w.link(1_800_000_000.0, up=True)
    rc, _, err = _run(capsys, "export-edf", str(cap), "--out", str(tmp_path / "o.edf"))
    assert rc == 2 and _one_line(err).endswith(
        f"{cap}: nothing to export: the recording has no EMG data after an INFO frame"
    )
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    rc, _, err = _run(
        capsys, "replay", str(_capture(tmp_path, "r.nsc")), "--no-progress", "--config", str(empty)
    )
    assert rc == 2 and f"{empty}: devices: no [[devices]] table" in _one_line(err), err


DEEP_JSON = "[" * 100_000
HUGE_INT = "9" * 5000


def test_json_and_toml_nested_too_deeply_or_with_huge_integers_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python's parsers raise RecursionError (arrays 100 000 deep) and ValueError (an integer of
    5000 digits, over its conversion limit), neither of them the parser's own error: each was a
    traceback, and on the gateway's command topic a network input."""
    from ingest.stream.control import CommandError, parse_declare

    good = tmp_path / "g.csv"
    good.write_text("time_s,EMG L\n" + "".join(f"{i / 1000:.3f},1\n" for i in range(2000)))
    for cfg in (DEEP_JSON, '{"on_ratio": ' + HUGE_INT + "}"):
        with pytest.raises(SystemExit) as exc:
            main(["detect", str(good), "--detector-config", cfg])
        assert exc.value.code == 2
        line = _one_line(capsys.readouterr().err)
        assert "argument --detector-config: not usable JSON" in line and len(line) < 400, line
    for name, text in (("deep.toml", "a = " + DEEP_JSON + "\n"), ("int.toml", f"a = {HUGE_INT}\n")):
        path = tmp_path / name
        path.write_text(text)
        rc, _, err = _run(capsys, "run", "--config", str(path))
        assert rc == 2 and f"{path}: not usable TOML" in _one_line(err), err
    for payload in (DEEP_JSON.encode(), b'{"kind": "exercise", "minutes": ' + HUGE_INT.encode() + b"}"):
        with pytest.raises(CommandError, match="not JSON"):
            parse_declare(payload)
    cap = _capture(tmp_path, "deep.nsc", body=b"", note=None)
    raw = cap.read_bytes()
    header = DEEP_JSON.encode()
    cap.write_bytes(raw[:10] + len(header).to_bytes(4, "little") + header)
    rc, _, err = _run(capsys, "detect", str(cap))
    assert rc == 2 and "header JSON at byte offset 14 is invalid: nested too deeply" in _one_line(err), err
