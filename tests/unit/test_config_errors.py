"""Configuration mistakes: one ConfigError line naming the file and the key, at load, not later."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from detectors import ConfigError as DetectorConfigError
from ingest.commands.cli import main
from ingest.commands.worker import load_worker_config
from ingest.config import ConfigError, check_files, check_state_dir, load_config


def write(tmp: Path, body: str, name: str = "gw.toml") -> Path:
    p = tmp / name
    p.write_text('[[devices]]\nid = "d1"\nport = "/dev/null"\n' + body)
    return p


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def test_one_error_type() -> None:
    assert ConfigError is DetectorConfigError


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            "[detector]\non_ration = 3\n",
            "detector.on_ration: unknown key (did you mean one of ['on_min_delta_uv', 'on_ratio']?)",
        ),
        (
            "[detector]\non_ratio = -1\n",
            "detector.on_ratio: need 1 < off <= on, got 2.0/-1.0 (with detector.off_ratio)",
        ),
        ("[detector]\nquiet_s = 0\n", "detector.quiet_s: must be > 0, got 0.0"),
        ("[detector]\nmains_hz = 55\n", "detector.mains_hz: must be 50, 60 or absent (auto), got 55"),
        ('[detector]\nquiet_s = "long"\n', "detector.quiet_s: must be a number, got 'long'"),
    ],
)
def test_detector_section_mistakes_name_file_and_key(tmp_path: Path, body: str, words: str) -> None:
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    line = one_line(exc)
    assert line == f"{p}: {words}"


def test_relative_secret_and_tls_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "pw").write_text("secret\n")
    (conf / "ca.crt").write_text("x")
    p = write(conf, '[mqtt]\npassword_file = "pw"\n[mqtt.tls]\nenabled = true\nca_file = "ca.crt"\n')
    cwd = os.getcwd()
    os.chdir(tmp_path)  # not the config's directory
    try:
        cfg = load_config(p)
    finally:
        os.chdir(cwd)
    assert cfg.mqtt.password_file == conf.resolve() / "pw"
    assert cfg.mqtt.tls.ca_file == conf.resolve() / "ca.crt"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[mqtt]\npassword_file = "missing-pw"\n', "mqtt.password_file"),
        ('[influx]\nenabled = true\ntoken_file = "missing-token"\n', "influx.token_file"),
        ('[influx]\nenabled = true\napi = "v1"\npassword_file = "nope"\n', "influx.password_file"),
        ('[mqtt.tls]\nenabled = true\nca_file = "nope.crt"\n', "mqtt.tls.ca_file"),
    ],
)
def test_missing_secret_file_is_a_config_error_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, key: str
) -> None:
    p = write(tmp_path, body)
    cfg = load_config(p)  # valid as a file (it may be checked on another machine) ...
    with pytest.raises(ConfigError) as exc:
        check_files(cfg, str(p))  # ... but the gateway does not start without its secrets
    line = one_line(exc)
    assert line.startswith(f"{p}: {key}: cannot read ") and "No such file" in line
    assert main(["run", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"neurospasm: {line}"


def test_tls_off_with_a_ca_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ca.crt").write_text("x")
    p = write(tmp_path, '[mqtt.tls]\nenabled = false\nca_file = "ca.crt"\n')
    with caplog.at_level(logging.WARNING, logger="ingest.config"):
        load_config(p)
    assert any("mqtt.tls.ca_file is set but mqtt.tls.enabled = false" in r.message for r in caplog.records)


def test_read_only_state_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            # root ignores permission bits: a read-only bind is the honest alternative, when allowed
            if os.system(f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro}") != 0:
                pytest.skip("cannot make a read-only directory here")
        try:
            with pytest.raises(ConfigError) as exc:
                check_state_dir(ro / "state", "gw.toml")
            assert one_line(exc).startswith(f"gw.toml: gateway.state_dir: {ro / 'state'} is not writable")
            p = write(tmp_path, f'[gateway]\nstate_dir = "{ro / "state"}"\n')
            assert main(["run", "--config", str(p)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "gateway.state_dir" in err[0] and str(p) in err[0]
        finally:
            os.system(f"umount {ro} 2>/dev/null")
    finally:
        ro.chmod(0o700)


def test_worker_config_goes_through_the_same_loader(tmp_path: Path) -> None:
    p = tmp_path / "worker.toml"
    p.write_text('[mqtt]\nprotocol = "5"\n[detector]\nbogus = 1\n')
    with pytest.raises(ConfigError) as exc:
        load_worker_config(p)
    assert one_line(exc).startswith(f"{p}: detector.bogus: unknown key")
    with pytest.raises(ConfigError) as exc:
        load_worker_config(tmp_path)
    assert one_line(exc) == f"{tmp_path}: is a directory, not a config file"


def test_series_keys_live_in_one_place_and_old_keys_still_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = write(tmp_path, "[series]\nenvelope_rate_hz = 25.0\nraw_emg = true\n")
    cfg = load_config(p)
    assert cfg.series.envelope_rate_hz == 25.0 and cfg.series.raw_emg
    p = write(tmp_path, "[influx]\nenvelope_rate_hz = 20.0\n[local]\nraw_emg = true\n", "old.toml")
    with caplog.at_level(logging.WARNING, logger="ingest.config"):
        cfg = load_config(p)
    assert cfg.series.envelope_rate_hz == 20.0 and cfg.series.raw_emg
    assert any("influx.envelope_rate_hz is deprecated: use series.envelope_rate_hz" in r.message
               for r in caplog.records)  # fmt: skip
    p = write(tmp_path, "[series]\nenvelope_rate_hz = 9999\n", "bad.toml")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert one_line(exc).startswith(f"{p}: series.envelope_rate_hz: ")


def test_every_mistake_is_named_the_detectors_beside_the_gateways(tmp_path: Path) -> None:
    """One run names every problem in the file: the gateway's keys and the [detector] table's."""
    p = tmp_path / "gw.toml"
    p.write_text(
        '[gateway]\nsite = "home-0001"\n[[devices]]\nid = "w-1"\nport = "sim"\n[mqtt]\nprot = 1883\n'
        '[detector]\nbogus = 1\non_ratio = "high"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    lines = str(exc.value).splitlines()
    assert f"{p}: mqtt.prot: unknown key" in lines[0]
    assert any(line.startswith(f"{p}: detector.bogus: unknown key") for line in lines), lines
    assert any(line.startswith(f"{p}: detector.on_ratio: ") for line in lines), lines
    assert all(line.startswith(f"{p}: ") for line in lines)
