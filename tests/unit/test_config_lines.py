"""One loader, one error type, one line: gateway, worker, scenario and ``[detector]`` mistakes.

Every row writes a file with one mistake and asserts the exact message: the file, the dotted key,
what is wrong, nothing else (no traceback, no second line). The same ``ConfigError`` comes out of
every loader, so the command line handles them all alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dashboard.app.config import load_dashboard_config
from detectors.configfile import ConfigError, format_errors, load_toml
from firmware_sim.scenario import ScenarioError, load_scenario
from ingest.commands.worker import load_worker_config
from ingest.config import load_config

DEVICE = '[[devices]]\nid = "d1"\nport = "/dev/null"\n'
SCENARIO = 'name = "x"\nseed = 1\nduration_s = 10.0\nchannels = ["EMG A", "EMG B"]\n'
Loader = Callable[[Path], Any]
LOADERS: dict[str, tuple[Loader, str]] = {
    "gateway": (load_config, DEVICE),
    "worker": (load_worker_config, ""),
    "scenario": (load_scenario, SCENARIO),
    "dashboard": (lambda p: load_dashboard_config(str(p)), "[dashboard]\n"),
}

CASES = [
    # gateway: sections, lists of tables, moved keys, cross-field checks, [detector]
    ("gateway", "[mqtt]\nprot = 1883\n",
     "mqtt.prot: unknown key (check the spelling against deploy/gateway.example.toml)"),
    ("gateway", "[mqtt]\nport = 70000\n", "mqtt.port: Input should be less than 65536 (got 70000)"),
    ("gateway", "[mqtt]\npublish_frames = true\n",
     "mqtt.publish_frames: moved: set it as scaling.publish_frames (a [scaling] table)"),
    ("gateway", "[mqtt]\nannounce_interval_s = 1.0\n",
     "mqtt.announce_interval_s: moved: set it as scaling.announce_interval_s (a [scaling] table)"),
    ("gateway", "[scaling]\ndetect_locally = false\n",
     "scaling.detect_locally: false needs mqtt.enabled = true and scaling.publish_frames = true: "
     "otherwise nothing would detect spasms"),
    ("gateway", "[scaling]\nannounce_interval_s = 0\n",
     "scaling.announce_interval_s: Input should be greater than 0 (got 0)"),
    ("gateway", "[series]\nraw_emg = 3\n",
     "series.raw_emg: Input should be a valid boolean, unable to interpret input (got 3)"),
    ("gateway", '[[devices]]\nid = "d2"\nport = "/dev/null"\nbaudrate = -1\n',
     "devices[1].baudrate: Input should be greater than 0 (got -1)"),
    ("gateway", "[detector]\nquiet_s = -1\n", "detector.quiet_s: must be > 0, got -1.0"),
    ("gateway", "[detector]\nmains_hz = 55\n", "detector.mains_hz: must be 50, 60 or absent (auto), got 55"),
    ("gateway", '[detector]\nraw = "yes"\n', "detector.raw: unknown key"),
    ("gateway", "[detector]\nactivity_context = 1\n",
     "detector.activity_context: must be true or false, got 1"),
    ("gateway", "[detector]\nband_low_hz = 500\n",
     "detector.band_low_hz: need 0 < low < high, got 500.0/450.0 (with detector.band_high_hz)"),
    # worker: its own sections, the shared [mqtt] and [detector]
    ("worker", '[worker]\nid = "w 1"\n',
     "worker.id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' (got 'w 1')"),
    ("worker", "[worker]\nlease_s = 4.0\nrenew_s = 3.0\n",
     "worker: renew_s must be at most half of lease_s, or one late renewal loses the lease"),
    ("worker", "[mqtt]\npublish_frames = true\n",
     "mqtt.publish_frames: unknown key (check the spelling against deploy/worker.example.toml)"),
    ("worker", "[detector]\non_ratio = 1.5\n",
     "detector.on_ratio: need 1 < off <= on, got 2.0/1.5 (with detector.off_ratio)"),
    ("worker", "[detector]\nbogus = 1\n", "detector.bogus: unknown key"),
    # scenario: the simulator's files, through the same formatter
    ("scenario", "onse_s = 3\n", "onse_s: unknown key"),
    ("scenario", "emg_rate_hz = 100\n",
     "emg_rate_hz: Input should be greater than or equal to 500 (got 100)"),
    ("scenario", '[[events]]\ntype = "spasm"\nchannel = "EMG A"\nonset_s = 1\nduration_s = 1\n',
     "events[0].type: Input should be 'twitch', 'phasic', 'tonic', 'clonus' or 'tremor' (got 'spasm')"),
    ("scenario", "[faults]\nframe_loss_rate = 1.5\n",
     "faults.frame_loss_rate: Input should be less than 1 (got 1.5)"),
    # the dashboard's [dashboard] table, read by the same reader
    ("dashboard", "stale_after = 3\n", "dashboard.stale_after: unknown key"),
    ("dashboard", "[dashboard.mqtt.tls]\nenabled = 2\n",
     "dashboard.mqtt.tls.enabled: Input should be a valid boolean, unable to interpret input (got 2)"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "body", "line"), CASES)
def test_one_line_naming_the_file_and_the_dotted_key(tmp_path: Path, kind: str, body: str, line: str) -> None:
    load, head = LOADERS[kind]
    p = tmp_path / f"{kind}.toml"
    p.write_text(head + body)
    with pytest.raises(ConfigError) as exc:
        load(p)
    assert str(exc.value) == f"{p}: {line}"


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_unreadable_files_fail_alike_for_every_loader(tmp_path: Path, kind: str) -> None:
    load, _ = LOADERS[kind]
    what = "scenario" if kind == "scenario" else "config"
    with pytest.raises(ConfigError) as exc:
        load(tmp_path)
    assert str(exc.value) == f"{tmp_path}: is a directory, not a {what} file"
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'a = "\xff"\n')
    with pytest.raises(ConfigError) as exc:
        load(bad)
    assert str(exc.value) == f"{bad}: not UTF-8 at byte offset 5"
    bad.write_text("a = 1\n[[x]\n")
    with pytest.raises(ConfigError) as exc:
        load(bad)
    assert str(exc.value).startswith(f"{bad}: not valid TOML: ") and "line 2" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_one_error_type_and_one_reader() -> None:
    import detectors
    import ingest.config

    assert issubclass(ScenarioError, ConfigError) and detectors.ConfigError is ConfigError
    assert ingest.config.ConfigError is ConfigError and ingest.config.load_toml is load_toml


def test_format_errors_joins_the_key_a_validator_names() -> None:
    errors = [
        {"loc": ("faults", "function-after[_sorted]", "reboot_at_s", 0), "msg": "Value error, x: bad",
         "type": "value_error", "input": 1},
        {"loc": (), "msg": "Value error, mqtt.port: no", "type": "value_error", "input": {}},
        {"loc": ("a",), "msg": "Value error, two words: kept", "type": "value_error", "input": 1},
    ]  # fmt: skip
    assert format_errors("f.toml", errors).splitlines() == [
        "f.toml: faults.reboot_at_s[0].x: bad",
        "f.toml: mqtt.port: no",
        "f.toml: a: two words: kept",
    ]
