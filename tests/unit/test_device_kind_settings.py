"""``[[devices]]`` settings checked against the device kind: one line naming file and key."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "gateway": {"site": "s", "patient": "p-0001", "state_dir": "/tmp/ns-kinds"},
    "mqtt": {"host": "h"},
}


def _parse(dev: dict[str, Any]) -> Any:
    return parse_config({**BASE, "devices": [{"id": "dev-a", **dev}]}, "gw.toml").devices[0]


def test_cyton_gets_its_baud_rate_by_default() -> None:
    assert _parse({"kind": "cyton", "port": "/dev/ttyUSB0"}).baudrate == 115200
    assert _parse({"kind": "shimmer", "port": "/dev/rfcomm0"}).baudrate == 115200
    assert _parse({"port": "/dev/ttyACM0"}).baudrate == 921600  # our own wearable: unchanged


@pytest.mark.parametrize(
    ("dev", "line"),
    [
        ({"kind": "cyton", "port": "/dev/ttyUSB0", "baudrate": 921600},
         "gw.toml: devices[0].baudrate: a 'cyton' device talks at 115200 baud, not 921600"),
        ({"kind": "cyton", "transport": "ble", "address": "C0:FF:EE:00:00:01"},
         "gw.toml: devices[0].transport: a 'cyton' device connects over serial"),
        ({"kind": "bitalino", "port": "/dev/rfcomm0", "name": "BITalino"},
         "gw.toml: devices[0].name: not a setting of a serial link"),
        ({"transport": "ble", "address": "C0:FF:EE:00:00:01", "port": "/dev/ttyACM0"},
         "gw.toml: devices[0].port: not a setting of a ble link"),
        ({"kind": "openbci", "port": "/dev/ttyUSB0"},
         "gw.toml: devices[0].kind: unknown device kind 'openbci'"),
    ],
)  # fmt: skip
def test_unsupported_settings_are_one_line(dev: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(dev)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(line)
