"""Every bad input the issue lists: exit code 2 and one line naming the input, in-process.

Each case runs ``ingest.commands.cli.main`` (no subprocess: fast), captures stderr and checks:
exit code 2, exactly one non-empty line, and that line names the file, key or argument at fault.
Property tests drive each command's input parsing with generated garbage: "exit 2 + one line
naming the input" or success, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.commands.cli import main
from ingest.files.recording import MAGIC


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: a usage error
        rc = int(exc.code or 0)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return rc, err


def assert_one_line(rc: int, err: list[str], *names: str) -> None:
    assert rc == 2, err
    assert len(err) == 1, err
    for name in names:
        assert name in err[0], (name, err[0])


def csv_file(tmp: Path, name: str, body: str) -> Path:
    p = tmp / name
    p.write_text(body)
    return p


def signal_csv(rate: float, n: int, value: str = "{v}") -> str:
    rows = "".join(f"{i / rate:.9f},{value.format(v=math.sin(i / 3))}\n" for i in range(n))
    return "time_s,EMG a [uV]\n" + rows


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    return csv_file(tmp_path, "good.csv", signal_csv(1000, 3000))


# -- detect ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "words"),
    [
        ("header_only.csv", "time_s,EMG a [uV]\n", "no data rows"),
        (
            "ragged.csv",
            "time_s,EMG a [uV]\n0,1\n0.001,2,3\n0.002,4\n",
            "line 4: the number of columns changed",
        ),
        ("text.csv", "time_s,EMG a [uV]\n0,1\n0.001,abc\n", "line 3: could not convert string 'abc'"),
        ("rate10.csv", signal_csv(10, 300), "unsupported EMG rate 10 Hz"),
        ("rate1M.csv", signal_csv(1e6, 3000), "unsupported EMG rate 1e+06 Hz"),
        ("nan.csv", signal_csv(1000, 3000, "nan"), "non-finite values"),
        ("inf.csv", signal_csv(1000, 3000, "inf"), "non-finite values"),
        ("dup.csv", "time_s,EMG a,EMG a\n0,1,1\n0.001,1,1\n", "duplicate EMG channel labels"),
        ("one.csv", "time_s,EMG a\n0,1\n", "one data row: the sample rate needs at least two"),
        (
            "back.csv",
            "# start: 2026-11-24T22:15:00Z\ntime_s,EMG a\n0,1\n0.001,1\n0.001,1\n",
            "line 5: time_s 0.001 does not increase (the row before has 0.001)",
        ),
        ("nant.csv", "time_s,EMG a\n0,1\nnan,1\n0.002,1\n", "line 3: time_s nan does not increase"),
    ],
)
def test_detect_bad_recordings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, body: str, words: str
) -> None:
    p = csv_file(tmp_path, name, body)
    rc, err = run(["detect", str(p)], capsys)
    assert_one_line(rc, err, str(p), words)


def test_detect_garbage_edf_names_the_file_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "garbage.edf"
    p.write_bytes(bytes(range(256)) * 2)
    rc, err = run(["detect", str(p)], capsys)
    assert_one_line(rc, err, str(p), "not a readable EDF/BDF file")
    assert "".join(err).count(str(p)) == 1, err


def test_detect_on_a_fifo_is_one_line_not_a_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "pipe.edf"
    os.mkfifo(p)  # no writer: opening it for reading would block for ever
    rc, err = run(["detect", str(p)], capsys)
    assert_one_line(rc, err, str(p), "not a regular file")


def test_detect_on_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(["detect", str(tmp_path)], capsys)
    assert_one_line(rc, err, str(tmp_path), "is a directory")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--detector-config", '{"bogus": 1}'], ("--detector-config", "bogus: unknown key")),
        (["--detector-config", '{"on_ratio": -1}'], ("--detector-config", "on_ratio")),
        (["--detector-config", '{"quiet_s": "long"}'], ("--detector-config", "quiet_s")),
        (["--detector-config", "notjson"], ("--detector-config", "not JSON")),
        (["--detector-config", "[1, 2]"], ("--detector-config", "expected a table")),
        (["--annotate", "/nonexistent/dir/out.edf"], ("--annotate", "/nonexistent/dir")),
        (["--device", "John Smith"], ("--device", "'John Smith'", "pseudonym")),
    ],
)
def test_detect_bad_arguments(
    good_csv: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: tuple[str, ...]
) -> None:
    rc, err = run(["detect", str(good_csv), *argv], capsys)
    assert_one_line(rc, err, *words)


def test_detect_good_file_still_works(good_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(["detect", str(good_csv), "--device", "dev-01"], capsys)
    assert rc == 0 and "0 events" in err[-1]


# -- replay, record, sim, demo, run ------------------------------------------------------------


@pytest.mark.parametrize("speed", ["fast", "0", "-1", "nan", "1e999"])
def test_replay_bad_speed(good_csv: Path, capsys: pytest.CaptureFixture[str], speed: str) -> None:
    rc, err = run(["replay", str(good_csv), "--speed", speed], capsys)
    assert_one_line(rc, err, "--speed", repr(speed))


def test_capture_header_not_an_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "h.nsc"
    h = b"[1, 2]"
    p.write_bytes(struct.pack("<8sHI", MAGIC, 2, len(h)) + h)
    for argv in (["replay", str(p)], ["export-edf", str(p), "--out", str(tmp_path / "o.edf")]):
        rc, err = run(argv, capsys)
        assert_one_line(rc, err, str(p), "not an object")


def test_record_on_a_missing_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(tmp_path / "ttyNOPE")
    rc, err = run(["record", "--port", port, "--out", str(tmp_path / "c.nsc"), "--duration", "1"], capsys)
    assert_one_line(rc, err, port, "no such serial port")
    assert not (tmp_path / "c.nsc").exists()  # no empty capture left behind


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--kind", "cytn"], ("kind", "unknown device kind 'cytn'")),
        (["--kind", "myo"], ("transport", "'myo'", "ble")),
        (["--kind", "cyton", "--baudrate", "921600"], ("baudrate", "115200", "921600")),
    ],
)
def test_record_a_kind_it_cannot_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: tuple[str, ...]
) -> None:
    """``record --port --kind`` is checked like a ``[[devices]]`` table: one line, no traceback."""
    argv = ["record", "--port", "/dev/null", *args, "--out", str(tmp_path / "c.nsc"), "--duration", "1"]
    rc, err = run(argv, capsys)
    assert_one_line(rc, err, *words)
    assert not (tmp_path / "c.nsc").exists()


def test_record_takes_the_kinds_baud_rate() -> None:
    """Without ``--baudrate`` the kind's speed, as in a config file (a Cyton refuses 921600)."""
    from ingest.commands.record import record_device

    for kind, baud in (("cyton", 115200), ("shimmer", 115200), ("neurospasm", 921600)):
        dev = record_device("/dev/null", device="w", baudrate=None, kind=kind, options=None)
        assert dev.baudrate == baud, kind


def test_sim_bad_scenario_and_zero_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nseed = 1\nduration_s = "long"\n')
    rc, err = run(["sim", "--serial", "--scenario", str(bad)], capsys)
    assert_one_line(rc, err, str(bad), "duration_s")
    bad.write_text("name = [unclosed\n")
    rc, err = run(["sim", "--serial", "--scenario", str(bad)], capsys)
    assert_one_line(rc, err, str(bad))
    rc, err = run(["sim", "--serial", "--devices", "0"], capsys)
    assert_one_line(rc, err, "--devices")


@pytest.mark.parametrize("duration", ["0", "-5", "nan", "soon"])
def test_demo_bad_duration(capsys: pytest.CaptureFixture[str], duration: str) -> None:
    rc, err = run(["demo", "--duration", duration], capsys)
    assert_one_line(rc, err, "--duration")


def test_demo_unknown_device_kind(capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(["demo", "--device", "nosuch"], capsys)
    assert_one_line(rc, err, "--device", "'nosuch'", "myo", "polar-h10")


def test_demo_recording_that_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.edf"
    rc, err = run(["demo", "--device", "myo", "--recording", str(missing)], capsys)
    assert_one_line(rc, err, str(missing))


def test_sim_ble_kind_points_to_the_ble_bridge(capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("myo", "polar-h10"):
        for extra in ([], ["--serial"]):
            rc, err = run(["sim", "--device", kind, *extra], capsys)
            assert_one_line(rc, err, "is a BLE device", "--ble-socket PATH")


def test_sim_transport_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(tmp_path / "s.sock")
    rc, err = run(["sim", "--device", "cyton", "--ble-socket", sock], capsys)
    assert_one_line(rc, err, "--device cyton is a serial device", "--serial")
    rc, err = run(["sim", "--serial", "--ble-socket", sock], capsys)
    assert_one_line(rc, err, "choose one transport")
    taken = tmp_path / "taken"
    taken.write_text("not a socket")
    rc, err = run(["sim", "--device", "myo", "--ble-socket", str(taken), "--scenario", "e2e_short"], capsys)
    assert_one_line(rc, err, str(taken), "is not a socket")
    assert taken.read_text() == "not a socket"  # never replaced
    rc, err = run(["sim", "--device", "myo", "--ble-socket", "/tmp/" + "x" * 120], capsys)
    assert_one_line(rc, err, "longer than a Unix socket path may be")
    rc, err = run(["sim", "--device", "myo", "--ble-socket", sock, "--ble-address", "C0:FF"], capsys)
    assert_one_line(rc, err, "--ble-address", "not a Bluetooth address")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[detector]\non_ratio = 0.5\n", "detector.on_ratio: need 1 < off <= on"),
        ("[detector]\nbogus = 1\n", "detector.bogus: unknown key"),
        ('[mqtt]\npassword_file = "nope"\n', "mqtt.password_file"),
        ('[influx]\nenabled = true\ntoken_file = "nope"\n', "influx.token_file"),
        ("[gateway]\nstale_after_s = -1\n[mqtt]\nport = 0\n", "gateway.stale_after_s"),
        ("not toml ===\n", "not valid TOML"),
    ],
)
def test_gateway_config_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, words: str
) -> None:
    p = tmp_path / "gw.toml"
    p.write_text('[[devices]]\nid = "d1"\nport = "/dev/null"\n' + body)
    rc, err = run(["run", "--config", str(p)], capsys)
    assert_one_line(rc, err, str(p), words)


@pytest.mark.parametrize(
    ("device", "words"),
    [
        (
            'port = "/dev/null"\nble_bridge = "/tmp/x.sock"',
            "devices[0]: ble_bridge is set but transport = 'serial'",
        ),
        (
            'transport = "ble"\naddress = "C0:FF:EE:00:00:01"\nble_bridge = "/etc/hostname"',
            "devices[0].ble_bridge",
        ),
        ('transport = "ble"\naddress = "C0:FF:EE:00:00:01"\nble_bridge = ""', "devices[0].ble_bridge"),
        ('transport = "ble"\naddress = "C0:FF:EE:00:00:01"\nble_bridge = 7', "devices[0].ble_bridge"),
    ],
)
def test_gateway_config_ble_bridge_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str, words: str
) -> None:
    p = tmp_path / "gw.toml"
    p.write_text(f'[[devices]]\nid = "d1"\n{device}\n[mqtt]\nenabled = false\n')
    rc, err = run(["run", "--config", str(p)], capsys)
    assert_one_line(rc, err, str(p), words)


# -- property tests: garbage in, "exit 2 + one line naming the input" or success out ------------

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
csv_text = st.text(alphabet="0123456789.,-+eE naifEMG_time[]uV\n#:", max_size=300)


@PROPS
@given(body=csv_text)
def test_detect_garbage_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str) -> None:
    p = tmp_path / "g.csv"
    p.write_text(body)
    rc, err = run(["detect", str(p)], capsys)
    if rc != 0:
        assert_one_line(rc, err, str(p))


@PROPS
@given(text=st.one_of(st.text(max_size=40), st.dictionaries(st.text(max_size=12), st.floats(), max_size=3)))
def test_detect_garbage_detector_config(
    good_csv: Path, capsys: pytest.CaptureFixture[str], text: str | dict[str, float]
) -> None:
    arg = text if isinstance(text, str) else json.dumps(text)
    if arg.startswith("-"):
        arg = " " + arg  # argparse would take it for an option
    rc, err = run(["detect", str(good_csv), "--detector-config", arg], capsys)
    if rc != 0:
        assert_one_line(rc, err, "--detector-config")


@PROPS
@given(device=st.text(max_size=70))
def test_detect_garbage_device(good_csv: Path, capsys: pytest.CaptureFixture[str], device: str) -> None:
    if device.startswith("-"):
        device = "x" + device
    rc, err = run(["detect", str(good_csv), "--device", device], capsys)
    if rc != 0:
        assert_one_line(rc, err, "--device")


@PROPS
@given(speed=st.text(max_size=12))
def test_replay_garbage_speed(capsys: pytest.CaptureFixture[str], speed: str) -> None:
    if speed.startswith("-"):
        speed = "x" + speed
    rc, err = run(["replay", "/nonexistent.nsc", "--speed", speed], capsys)
    assert rc == 2
    assert len(err) == 1 and ("--speed" in err[0] or "/nonexistent.nsc" in err[0]), err


@PROPS
@given(header=st.binary(max_size=60), body=st.binary(max_size=200), version=st.sampled_from([1, 2, 3]))
def test_garbage_captures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: bytes, body: bytes, version: int
) -> None:
    p = tmp_path / "g.nsc"
    p.write_bytes(struct.pack("<8sHI", MAGIC, version, len(header)) + header + body)
    rc, err = run(["export-edf", str(p), "--out", str(tmp_path / "g.edf")], capsys)
    assert_one_line(rc, err, str(p))


@PROPS
@given(body=st.text(alphabet='[]=."\n abcdefghijklmnopqrstuvwxyz_0123456789', max_size=200))
def test_garbage_gateway_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str) -> None:
    p = tmp_path / "g.toml"
    p.write_text(body)
    rc, err = run(["run", "--config", str(p)], capsys)
    assert_one_line(rc, err, str(p))


@pytest.mark.parametrize("command", [["replay", "/nonexistent.csv"], ["demo"]])
def test_state_dir_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, err = run([*command, "--state-dir", str(blocker / "state")], capsys)
    assert_one_line(rc, err, "--state-dir", str(blocker / "state"), "not writable")


def _edf_header(**fields: bytes) -> bytes:
    """A fixed 256-byte EDF header for one signal, with the named fields replaced (by offset)."""
    head = bytearray(b" " * 256)
    parts = {0: b"0", 168: b"01.12.26", 176: b"10.00.00", 184: b"512", 236: b"10", 244: b"1", 252: b"1"}
    parts.update({int(k[1:]): v for k, v in fields.items()})
    for off, v in parts.items():
        head[off : off + len(v)] = v
    return bytes(head)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"garbage\n", "the file is 8 bytes, shorter than the 256-byte EDF header"),
        (_edf_header(o0=b"1.0     "), "bytes 0-7 (version) are b'1.0     '"),
        (_edf_header(o168=b"1/12/26 "), "bytes 168-175 (start date (dd.mm.yy)) are b'1/12/26 '"),
        (_edf_header(o236=b"ten     "), "bytes 236-243 (number of data records) are b'ten     '"),
        (_edf_header(o244=b"x       "), "bytes 244-251 (duration of a data record)"),
        (_edf_header(o184=b"768     "), "(number of bytes in the header) say 768, but 1 signals"),
    ],
)
def test_a_bad_edf_header_is_named_by_its_byte_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: bytes, words: str
) -> None:
    """pyedflib says only "a read error occurred" for a bad header; the one line says which field
    (by byte offset, as the EDF specification lays them out) is wrong."""
    p = tmp_path / "bad.edf"
    p.write_bytes(body + b"\0" * 600 if len(body) == 256 else body)
    rc, err = run(["detect", str(p)], capsys)
    assert_one_line(rc, err, str(p), words)


def _small_edf(path: Path, n: int) -> Path:
    """An EDF+C file of one EMG signal at 100 Hz, ``n`` zero samples, written by pyedflib."""
    import pyedflib

    w = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": "EMG a", "dimension": "uV", "sample_frequency": 100, "physical_min": -100.0,
                         "physical_max": 100.0, "digital_min": -32768, "digital_max": 32767,
                         "transducer": "", "prefilter": ""}])  # fmt: skip
    w.writeSamples([np.zeros(n)])
    w.close()
    return path


def test_a_good_edf_header_is_not_blamed(tmp_path: Path) -> None:
    """A file whose fixed header is right (our own export) gets no header complaint: the fault,
    if any, is further on."""
    from ingest.files.readers import edf_header_problem

    p = _small_edf(tmp_path / "ok.edf", 300)
    assert edf_header_problem(p) is None
    data = p.read_bytes()
    (tmp_path / "bad.edf").write_bytes(data[:252] + b"x   " + data[256:])
    assert edf_header_problem(tmp_path / "bad.edf") == "bytes 252-255 (number of signals) are b'x   '"


def test_a_discontinuous_edf_is_refused_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EDF+D (records with their own start times, gaps between them) read as continuous would put
    every event after the first gap at the wrong time: it is refused, and the line says why and
    how to convert it."""

    p = _small_edf(tmp_path / "c.edf", 1000)
    data = bytearray(p.read_bytes())
    assert data[192:197] == b"EDF+C"
    data[192:197] = b"EDF+D"
    d = tmp_path / "d.edf"
    d.write_bytes(bytes(data))
    rc, err = run(["detect", str(d)], capsys)
    assert_one_line(rc, err, str(d), "bytes 192-196 say EDF+D: a discontinuous recording")
    assert "Convert EDF+D to EDF+C" in "".join(err)
